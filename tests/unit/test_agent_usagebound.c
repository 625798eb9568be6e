/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for agent/usagebound: the reservation estimate counts the whole
 * request (tools, tool call arguments, tool_use input, schemas; media at a
 * fixed cost, their base64 not as text) for chat, Messages and embeddings
 * bodies; a provider's usage is bounded by the model's context window and
 * maximum output, the request's max_tokens and n, and its web search tools'
 * max_uses, and the bits say which counts were lowered.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/providers.h"
#include "agent/usagebound.h"

#define BIG 400000 /* characters of one field: ~100,000 tokens at 4 a token */

/* A string of n 'x's (the caller frees it). */
static char *filler(size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, 'x', n);
    s[n] = '\0';
    return s;
}

static json_t *parse(const char *text)
{
    json_error_t err;
    json_t *j = json_loads(text, 0, &err);
    assert_non_null(j);
    return j;
}

/* ~100,000 tokens, with at most a few hundred for the keys and the request's frame. */
static void assert_about_big(long long tokens)
{
    assert_true(tokens >= BIG / 4);
    assert_true(tokens <= BIG / 4 + 200);
}

static void test_chat_tools_counted(void **state)
{
    (void)state;
    char *big = filler(BIG);
    json_t *req =
        json_pack("{s:s,s:[{s:s,s:s}],s:[{s:s,s:{s:s,s:s,s:{s:s}}}]}", "model", "m", "messages",
                  "role", "user", "content", "hi", "tools", "type", "function", "function", "name",
                  "f", "description", big, "parameters", "type", "object");
    assert_non_null(req);
    /* The router's estimate sees only "hi"; the reservation sees the tool. */
    assert_true(provider_prompt_estimate(PROVIDER_CHAT, req) < 20);
    assert_about_big(usagebound_request_tokens(req));
    json_decref(req);
    free(big);
}

static void test_chat_tool_call_arguments_counted(void **state)
{
    (void)state;
    char *big = filler(BIG);
    json_t *req = json_pack("{s:[{s:s,s:n,s:[{s:s,s:s,s:{s:s,s:s}}]},{s:s,s:s,s:s}]}", "messages",
                            "role", "assistant", "content", "tool_calls", "id", "c1", "type",
                            "function", "function", "name", "f", "arguments", big, "role", "tool",
                            "tool_call_id", "c1", "content", "ok");
    assert_non_null(req);
    assert_true(provider_prompt_estimate(PROVIDER_CHAT, req) < 20);
    assert_about_big(usagebound_request_tokens(req));
    json_decref(req);
    free(big);
}

static void test_response_format_counted(void **state)
{
    (void)state;
    char *big = filler(BIG);
    json_t *req = json_pack("{s:[{s:s,s:s}],s:{s:s,s:{s:s,s:{s:s}}}}", "messages", "role", "user",
                            "content", "hi", "response_format", "type", "json_schema",
                            "json_schema", "name", "s", "schema", "description", big);
    assert_non_null(req);
    assert_about_big(usagebound_request_tokens(req));
    json_decref(req);
    free(big);
}

static void test_messages_tools_and_tool_use_counted(void **state)
{
    (void)state;
    char *big = filler(BIG);
    json_t *tools = json_pack("{s:i,s:[{s:s,s:s}],s:[{s:s,s:{s:s,s:s}}]}", "max_tokens", 10,
                              "messages", "role", "user", "content", "hi", "tools", "name", "f",
                              "input_schema", "type", "object", "description", big);
    json_t *use = json_pack("{s:i,s:[{s:s,s:[{s:s,s:s,s:s,s:{s:s}}]}]}", "max_tokens", 10,
                            "messages", "role", "assistant", "content", "type", "tool_use", "id",
                            "t1", "name", "f", "input", "q", big);
    assert_non_null(tools);
    assert_non_null(use);
    assert_about_big(usagebound_request_tokens(tools));
    assert_about_big(usagebound_request_tokens(use));
    json_decref(tools);
    json_decref(use);
    free(big);
}

static void test_message_text_as_before(void **state)
{
    (void)state;
    char *big = filler(BIG);
    json_t *req = json_pack("{s:[{s:s,s:s}]}", "messages", "role", "user", "content", big);
    assert_non_null(req);
    long long text = provider_prompt_estimate(PROVIDER_CHAT, req);
    long long all = usagebound_request_tokens(req);
    assert_true(all >= text);
    assert_true(all <= text + 10); /* the keys and the role: a few tokens */
    json_decref(req);
    free(big);
}

/* A plain chat body: the frame (names, model, role) is what the per-message tokens stand for. */
static void test_frame_not_counted(void **state)
{
    (void)state;
    json_t *req = parse("{\"model\": \"auto\", \"stream\": false, \"max_tokens\": 3, \"messages\":"
                        " [{\"role\": \"user\", \"content\": \"one two three four\"}]}");
    assert_int_equal(provider_prompt_estimate(PROVIDER_CHAT, req), 12);
    assert_int_equal(usagebound_request_tokens(req), 12);
    json_decref(req);
    /* A role or model longer than USAGEBOUND_TAG_CHARS is counted: no bulk hides there. */
    char *big = filler(BIG);
    json_t *role =
        json_pack("{s:s,s:[{s:s,s:s}]}", "model", big, "messages", "role", big, "content", "hi");
    assert_non_null(role);
    assert_true(usagebound_request_tokens(role) >= 2LL * (BIG / 4));
    json_decref(role);
    free(big);
}

/* An image's base64 counts its fixed cost, not 250,000 tokens of text. */
static void test_media_fixed_cost(void **state)
{
    (void)state;
    char *b64 = filler(1000000);
    size_t n = strlen("data:image/png;base64,") + 1000000 + 1;
    char *url = malloc(n);
    assert_non_null(url);
    snprintf(url, n, "data:image/png;base64,%s", b64);
    json_t *chat = json_pack("{s:[{s:s,s:[{s:s,s:{s:s}},{s:s,s:{s:s,s:s}}]}]}", "messages", "role",
                             "user", "content", "type", "image_url", "image_url", "url", url,
                             "type", "input_audio", "input_audio", "data", b64, "format", "wav");
    json_t *msgs = json_pack("{s:[{s:s,s:[{s:s,s:{s:s,s:s,s:s}}]}]}", "messages", "role", "user",
                             "content", "type", "image", "source", "type", "base64", "media_type",
                             "image/png", "data", b64);
    assert_non_null(chat);
    assert_non_null(msgs);
    long long c = usagebound_request_tokens(chat);
    assert_true(c >= 2LL * USAGEBOUND_MEDIA_TOKENS && c < 2LL * USAGEBOUND_MEDIA_TOKENS + 100);
    long long m = usagebound_request_tokens(msgs);
    assert_true(m >= USAGEBOUND_MEDIA_TOKENS && m < USAGEBOUND_MEDIA_TOKENS + 100);
    json_decref(chat);
    json_decref(msgs);
    free(url);
    free(b64);
}

/*
 * Media-looking text outside a content part is text: a tool description
 * beginning "data:", or a "data" beside a "format" in a schema (review: each
 * reserved a few tokens for 400 KB). A media part elsewhere than in a content
 * array (a tool's schema shaped like one) is no media part either.
 */
static void test_media_only_in_content_parts(void **state)
{
    (void)state;
    char *big = filler(BIG);
    size_t n = BIG + 6;
    char *url = malloc(n);
    assert_non_null(url);
    snprintf(url, n, "data:%s", big);
    json_t *desc =
        json_pack("{s:[{s:s,s:s}],s:[{s:s,s:{s:s,s:s}}]}", "messages", "role", "user", "content",
                  "hi", "tools", "type", "function", "function", "name", "f", "description", url);
    json_t *fmt = json_pack("{s:[{s:s,s:s}],s:{s:s,s:s}}", "messages", "role", "user", "content",
                            "hi", "metadata", "format", "x", "data", big);
    json_t *fake =
        json_pack("{s:[{s:s,s:s}],s:[{s:s,s:{s:s,s:s}}]}", "messages", "role", "user", "content",
                  "hi", "tools", "type", "image", "source", "media_type", "image/png", "data", big);
    assert_non_null(desc);
    assert_non_null(fmt);
    assert_non_null(fake);
    assert_about_big(usagebound_request_tokens(desc));
    assert_about_big(usagebound_request_tokens(fmt));
    assert_about_big(usagebound_request_tokens(fake));
    json_decref(desc);
    json_decref(fmt);
    json_decref(fake);
    free(url);
    free(big);
}

/* Past USAGEBOUND_MAX_DEPTH a value still counts (its JSON text). */
static void test_deep_nesting_counted(void **state)
{
    (void)state;
    char *big = filler(BIG);
    json_t *inner = json_pack("{s:s}", "d", big);
    for (int i = 0; i < USAGEBOUND_MAX_DEPTH * 2; i++) {
        inner = json_pack("{s:o}", "x", inner);
        assert_non_null(inner);
    }
    json_t *req = json_pack("{s:o}", "tools", inner);
    assert_non_null(req);
    long long t = usagebound_request_tokens(req);
    assert_true(t >= BIG / 4);
    assert_true(t <= BIG / 4 + 2 * USAGEBOUND_MAX_DEPTH);
    json_decref(req);
    free(big);
}

static void test_embeddings_and_edges(void **state)
{
    (void)state;
    json_t *req = parse("{\"model\": \"e\", \"input\": [\"abcd\", \"efgh\"]}");
    long long t = usagebound_request_tokens(req);
    assert_true(t >= provider_prompt_estimate(PROVIDER_EMBEDDINGS, req));
    json_decref(req);
    assert_int_equal(usagebound_request_tokens(NULL), 0);
    json_t *arr = parse("[1, 2]");
    assert_int_equal(usagebound_request_tokens(arr), 0);
    json_decref(arr);
}

/* ---- usagebound_clamp ---------------------------------------------------------------------- */

static json_t *catalog(void)
{
    return parse("{\"models\": ["
                 "{\"name\": \"small\", \"context_window\": 128000, \"max_output_tokens\": 4096,"
                 " \"input_per_1m\": 3.0, \"output_per_1m\": 15.0, \"web_search_per_1k\": 1000},"
                 "{\"name\": \"tiered\", \"context_window\": 200000, \"max_output_tokens\": 64000,"
                 " \"long_context_threshold\": 200000, \"input_per_1m\": 3.0,"
                 " \"output_per_1m\": 15.0},"
                 "{\"name\": \"embed\", \"context_window\": 8192, \"input_per_1m\": 0.02,"
                 " \"output_per_1m\": 0},"
                 "{\"name\": \"bare\", \"input_per_1m\": 1.0, \"output_per_1m\": 1.0}]}");
}

static void test_clamp_absurd_prompt(void **state)
{
    (void)state;
    json_t *entry = catalog();
    json_t *req = parse("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}");
    struct provider_usage u = {.prompt_tokens = PROVIDER_MAX_TOKENS,
                               .completion_tokens = 10,
                               .cached_tokens = PROVIDER_MAX_TOKENS,
                               .seen = true};
    double before = provider_cost(entry, "small", &u);
    assert_true(before > 100.0); /* what the finding booked: hundreds of dollars a call */
    assert_int_equal(usagebound_clamp(entry, "small", PROVIDER_CHAT, req, false, &u),
                     USAGEBOUND_PROMPT);
    assert_int_equal(u.prompt_tokens, 128000);
    assert_int_equal(u.cached_tokens, 128000);
    assert_int_equal(u.completion_tokens, 10);
    assert_true(provider_cost(entry, "small", &u) < 1.0);
    json_decref(req);
    json_decref(entry);
}

static void test_clamp_completion(void **state)
{
    (void)state;
    json_t *entry = catalog();
    json_t *capped = parse("{\"max_tokens\": 100, \"messages\": []}");
    json_t *newer = parse("{\"max_completion_tokens\": 200, \"n\": 3, \"messages\": []}");
    json_t *none = parse("{\"messages\": []}");
    struct provider_usage u = {.prompt_tokens = 10, .completion_tokens = 100};
    /* At the bound: unchanged. */
    assert_int_equal(usagebound_clamp(entry, "small", PROVIDER_CHAT, capped, false, &u), 0);
    assert_int_equal(u.completion_tokens, 100);
    /* One past: lowered. */
    u.completion_tokens = 101;
    assert_int_equal(usagebound_clamp(entry, "small", PROVIDER_CHAT, capped, false, &u),
                     USAGEBOUND_COMPLETION);
    assert_int_equal(u.completion_tokens, 100);
    /*
     * Reported by the provider: the model's maximum, not the request's cap (a
     * provider may bill reasoning tokens beyond it; they are not cut).
     */
    u.completion_tokens = 101;
    assert_int_equal(usagebound_clamp(entry, "small", PROVIDER_CHAT, capped, true, &u), 0);
    assert_int_equal(u.completion_tokens, 101);
    u.completion_tokens = 5000;
    assert_int_equal(usagebound_clamp(entry, "small", PROVIDER_CHAT, capped, true, &u),
                     USAGEBOUND_COMPLETION);
    assert_int_equal(u.completion_tokens, 4096);
    /* Reported, for a model the catalog gives no maximum: not cut to the request's cap. */
    struct provider_usage r = {.prompt_tokens = 10, .completion_tokens = 400};
    assert_int_equal(usagebound_clamp(entry, "nosuch", PROVIDER_CHAT, capped, true, &r), 0);
    assert_int_equal(r.completion_tokens, 400);
    /* n completions of max_completion_tokens each. */
    u.completion_tokens = 600;
    assert_int_equal(usagebound_clamp(entry, "small", PROVIDER_CHAT, newer, false, &u), 0);
    u.completion_tokens = 601;
    assert_int_equal(usagebound_clamp(entry, "small", PROVIDER_CHAT, newer, false, &u),
                     USAGEBOUND_COMPLETION);
    assert_int_equal(u.completion_tokens, 600);
    /* No max_tokens: the model's maximum output. */
    u.completion_tokens = 99999999;
    assert_int_equal(usagebound_clamp(entry, "small", PROVIDER_CHAT, none, false, &u),
                     USAGEBOUND_COMPLETION);
    assert_int_equal(u.completion_tokens, 4096);
    /* A max_tokens above the model's maximum: the model's. */
    json_t *over = parse("{\"max_tokens\": 1000000, \"messages\": []}");
    u.completion_tokens = 5000;
    assert_int_equal(usagebound_clamp(entry, "small", PROVIDER_CHAT, over, false, &u),
                     USAGEBOUND_COMPLETION);
    assert_int_equal(u.completion_tokens, 4096);
    json_decref(over);
    json_decref(capped);
    json_decref(newer);
    json_decref(none);
    json_decref(entry);
}

static void test_clamp_web_searches(void **state)
{
    (void)state;
    json_t *entry = catalog();
    json_t *limited =
        parse("{\"max_tokens\": 100, \"messages\": [], \"tools\": [{\"type\":"
              " \"web_search_20250305\", \"name\": \"web_search\", \"max_uses\": 5}]}");
    json_t *open = parse("{\"max_tokens\": 100, \"messages\": [], \"tools\": [{\"type\":"
                         " \"web_search_20250305\", \"name\": \"web_search\"}]}");
    struct provider_usage u = {
        .prompt_tokens = 10, .completion_tokens = 1, .web_search_requests = 5};
    assert_int_equal(usagebound_clamp(entry, "small", PROVIDER_CHAT, limited, false, &u), 0);
    u.web_search_requests = 6;
    assert_int_equal(usagebound_clamp(entry, "small", PROVIDER_CHAT, limited, false, &u),
                     USAGEBOUND_SEARCHES);
    assert_int_equal(u.web_search_requests, 5);
    u.web_search_requests = PROVIDER_MAX_TOKENS;
    assert_int_equal(usagebound_clamp(entry, "small", PROVIDER_CHAT, open, false, &u),
                     USAGEBOUND_SEARCHES);
    assert_int_equal(u.web_search_requests, USAGEBOUND_MAX_WEB_SEARCHES);
    /* $1000 per 1k searches: at most $100, not $100,000. */
    assert_true(provider_cost(entry, "small", &u) <= 100.01);
    /* Each search turn reads the conversation again: the bounds grow with them. */
    u.web_search_requests = 5;
    u.prompt_tokens = 6LL * 128000;
    u.completion_tokens = 600;
    assert_int_equal(usagebound_clamp(entry, "small", PROVIDER_CHAT, limited, false, &u), 0);
    u.prompt_tokens = 6LL * 128000 + 1;
    u.completion_tokens = 601;
    assert_int_equal(usagebound_clamp(entry, "small", PROVIDER_CHAT, limited, false, &u),
                     USAGEBOUND_PROMPT | USAGEBOUND_COMPLETION);
    assert_int_equal(u.prompt_tokens, 6LL * 128000);
    assert_int_equal(u.completion_tokens, 600);
    json_decref(limited);
    json_decref(open);
    json_decref(entry);
}

static void test_clamp_long_tier_embeddings_unknown(void **state)
{
    (void)state;
    json_t *entry = catalog();
    json_t *req = parse("{\"messages\": []}");
    /* A long-context tier: the 1M window, not the catalog's standard one. */
    struct provider_usage u = {.prompt_tokens = 250000};
    assert_int_equal(usagebound_clamp(entry, "tiered", PROVIDER_CHAT, req, false, &u), 0);
    u.prompt_tokens = USAGEBOUND_LONG_CONTEXT_WINDOW + 1;
    assert_int_equal(usagebound_clamp(entry, "tiered", PROVIDER_CHAT, req, false, &u),
                     USAGEBOUND_PROMPT);
    assert_int_equal(u.prompt_tokens, USAGEBOUND_LONG_CONTEXT_WINDOW);
    /* Embeddings: the window per input. */
    json_t *emb = parse("{\"input\": [\"a\", \"b\", \"c\"]}");
    struct provider_usage e = {.prompt_tokens = 3LL * 8192};
    assert_int_equal(usagebound_clamp(entry, "embed", PROVIDER_EMBEDDINGS, emb, false, &e), 0);
    e.prompt_tokens = 3LL * 8192 + 1;
    assert_int_equal(usagebound_clamp(entry, "embed", PROVIDER_EMBEDDINGS, emb, false, &e),
                     USAGEBOUND_PROMPT);
    /* No window in the catalog, or no such model: the parsers' own bound only. */
    struct provider_usage b = {.prompt_tokens = PROVIDER_MAX_TOKENS,
                               .completion_tokens = PROVIDER_MAX_TOKENS};
    assert_int_equal(usagebound_clamp(entry, "bare", PROVIDER_CHAT, req, false, &b), 0);
    assert_int_equal(usagebound_clamp(entry, "nosuch", PROVIDER_CHAT, req, false, &b), 0);
    assert_int_equal(usagebound_clamp(NULL, NULL, PROVIDER_CHAT, NULL, false, &b), 0);
    assert_int_equal(b.prompt_tokens, PROVIDER_MAX_TOKENS);
    /* Negative counts become 0 (not a clamp). */
    struct provider_usage n = {.prompt_tokens = -5, .completion_tokens = -1};
    assert_int_equal(usagebound_clamp(entry, "small", PROVIDER_CHAT, req, false, &n), 0);
    assert_int_equal(n.prompt_tokens, 0);
    assert_int_equal(n.completion_tokens, 0);
    assert_string_equal(usagebound_field_name(USAGEBOUND_PROMPT), "prompt");
    assert_string_equal(usagebound_field_name(USAGEBOUND_COMPLETION), "completion");
    assert_string_equal(usagebound_field_name(USAGEBOUND_SEARCHES), "web_search");
    assert_string_equal(usagebound_field_name(0), "");
    json_decref(emb);
    json_decref(req);
    json_decref(entry);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat_tools_counted),
        cmocka_unit_test(test_chat_tool_call_arguments_counted),
        cmocka_unit_test(test_response_format_counted),
        cmocka_unit_test(test_messages_tools_and_tool_use_counted),
        cmocka_unit_test(test_message_text_as_before),
        cmocka_unit_test(test_frame_not_counted),
        cmocka_unit_test(test_media_fixed_cost),
        cmocka_unit_test(test_media_only_in_content_parts),
        cmocka_unit_test(test_deep_nesting_counted),
        cmocka_unit_test(test_embeddings_and_edges),
        cmocka_unit_test(test_clamp_absurd_prompt),
        cmocka_unit_test(test_clamp_completion),
        cmocka_unit_test(test_clamp_web_searches),
        cmocka_unit_test(test_clamp_long_tier_embeddings_unknown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
