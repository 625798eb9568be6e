/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for prompt caching: the app's cache hints (cache_control)
 * checked, translated for Anthropic (cache_control on blocks, system blocks,
 * tools) and Bedrock (cachePoint blocks), stripped for OpenAI and Azure and
 * kept for OpenRouter; cache reads and writes read from the providers' usage
 * and priced at the catalog's cache prices (provider_cost), with the
 * long-context tiers and web searches priced there too.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/provider_bedrock.h"
#include "agent/providers.h"
#include "common/secret.h"
#include "tests/unit/oom.h"

static json_t *J(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    if (j == NULL) {
        fprintf(stderr, "bad test JSON: %s\n", e.text);
    }
    assert_non_null(j);
    return j;
}

/* One request with a hint in every place an app may put one. */
static const char *const HINTED =
    "{\"messages\":["
    "{\"role\":\"system\",\"content\":[{\"type\":\"text\",\"text\":\"Rules.\"},"
    "{\"type\":\"text\",\"text\":\"Long document.\",\"cache_control\":{\"type\":\"ephemeral\","
    "\"ttl\":\"1h\"}}]},"
    "{\"role\":\"user\",\"content\":\"First question\",\"cache_control\":{\"type\":\"ephemeral\"}},"
    "{\"role\":\"assistant\",\"content\":\"An answer\"},"
    "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Again\","
    "\"cache_control\":{\"type\":\"ephemeral\",\"ttl\":\"5m\"}},"
    "{\"type\":\"text\",\"text\":\"tail\"}]}],"
    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a\"}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"b\"},"
    "\"cache_control\":{\"type\":\"ephemeral\"}}]}";

/* Does the user message (messages[1]) still carry its hint? */
static bool user_hinted(const json_t *req)
{
    return json_is_object(
        json_object_get(json_array_get(json_object_get(req, "messages"), 1), "cache_control"));
}

static const json_t *cc_of(const json_t *blk)
{
    return json_object_get(blk, "cache_control");
}

static const char *ttl_of(const json_t *blk)
{
    return json_string_value(json_object_get(cc_of(blk), "ttl"));
}

static void test_anthropic_places(void **state)
{
    (void)state;
    json_t *o = J(HINTED);
    json_t *a = NULL;
    assert_int_equal(provider_anthropic_request(o, "m", false, 64, &a), ERR_OK);
    /* A hinted system prompt is a list of text blocks, the hint on its own block. */
    const json_t *sys = json_object_get(a, "system");
    assert_true(json_is_array(sys));
    assert_int_equal(json_array_size(sys), 2);
    assert_null(cc_of(json_array_get(sys, 0)));
    assert_string_equal(json_string_value(json_object_get(cc_of(json_array_get(sys, 1)), "type")),
                        "ephemeral");
    assert_string_equal(ttl_of(json_array_get(sys, 1)), "1h");
    const json_t *msgs = json_object_get(a, "messages");
    assert_int_equal(json_array_size(msgs), 3);
    /* A hint on a whole message of string content: one text block carrying it. */
    const json_t *c0 = json_object_get(json_array_get(msgs, 0), "content");
    assert_true(json_is_array(c0));
    assert_string_equal(json_string_value(json_object_get(json_array_get(c0, 0), "text")),
                        "First question");
    assert_non_null(cc_of(json_array_get(c0, 0)));
    assert_null(ttl_of(json_array_get(c0, 0)));
    /* A message without a hint keeps its string. */
    assert_true(json_is_string(json_object_get(json_array_get(msgs, 1), "content")));
    /* A hint on a part: that block only. */
    const json_t *c2 = json_object_get(json_array_get(msgs, 2), "content");
    assert_string_equal(ttl_of(json_array_get(c2, 0)), "5m");
    assert_null(cc_of(json_array_get(c2, 1)));
    /* A tool's hint on Anthropic's tool. */
    const json_t *tools = json_object_get(a, "tools");
    assert_null(cc_of(json_array_get(tools, 0)));
    assert_non_null(cc_of(json_array_get(tools, 1)));
    /* Nothing of OpenAI's shape left over. */
    assert_null(json_object_get(json_array_get(msgs, 0), "cache_control"));
    json_decref(a);
    json_decref(o);
}

static void test_anthropic_without_hints_unchanged(void **state)
{
    (void)state;
    json_t *o = J("{\"messages\":[{\"role\":\"system\",\"content\":\"S\"},"
                  "{\"role\":\"user\",\"content\":\"Hi\"}]}");
    json_t *a = NULL;
    assert_int_equal(provider_anthropic_request(o, "m", false, 64, &a), ERR_OK);
    assert_string_equal(json_string_value(json_object_get(a, "system")), "S");
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(a, "messages"), 0), "content")),
                        "Hi");
    json_decref(a);
    json_decref(o);
}

/* Tool results and assistant tool calls: the hint marks the result block, the last block. */
static void test_anthropic_tool_messages(void **state)
{
    (void)state;
    json_t *o = J("{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},"
                  "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\","
                  "\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}],"
                  "\"cache_control\":{\"type\":\"ephemeral\"}},"
                  "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":[{\"type\":\"text\","
                  "\"text\":\"42\",\"cache_control\":{\"type\":\"ephemeral\"}}]}]}");
    json_t *a = NULL;
    assert_int_equal(provider_anthropic_request(o, "m", false, 64, &a), ERR_OK);
    const json_t *msgs = json_object_get(a, "messages");
    const json_t *use = json_array_get(json_object_get(json_array_get(msgs, 1), "content"), 0);
    assert_string_equal(json_string_value(json_object_get(use, "type")), "tool_use");
    assert_non_null(cc_of(use));
    const json_t *res = json_array_get(json_object_get(json_array_get(msgs, 2), "content"), 0);
    assert_string_equal(json_string_value(json_object_get(res, "type")), "tool_result");
    assert_non_null(cc_of(res));
    json_decref(a);
    json_decref(o);
}

/* Malformed hints: refused naming the field, for every adapter, before anything is built. */
static void test_bad_hints(void **state)
{
    (void)state;
    static const struct {
        const char *req;
        const char *param;
    } cases[] = {
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"cache_control\":\"ephemeral\"}]}",
         "messages[0].cache_control"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"cache_control\":{}}]}",
         "messages[0].cache_control.type"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"cache_control\":"
         "{\"type\":\"persistent\"}}]}",
         "messages[0].cache_control.type"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"user\",\"content\":"
         "[{\"type\":\"text\",\"text\":\"y\"},{\"type\":\"text\",\"text\":\"z\","
         "\"cache_control\":{\"type\":\"ephemeral\",\"ttl\":\"2h\"}}]}]}",
         "messages[1].content[1].cache_control.ttl"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"z\","
         "\"cache_control\":{\"type\":\"ephemeral\",\"ttl\":300}}]}]}",
         "messages[0].content[0].cache_control.ttl"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"cache_control\":"
         "{\"type\":\"ephemeral\",\"scope\":\"global\"}}]}",
         "messages[0].cache_control"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\","
         "\"function\":{\"name\":\"a\"},\"cache_control\":[1]}]}",
         "tools[0].cache_control"},
        /* A 5th breakpoint, counted in Anthropic's order: tools, then messages. */
        {"{\"messages\":[{\"role\":\"system\",\"content\":\"s\",\"cache_control\":"
         "{\"type\":\"ephemeral\"}},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":"
         "\"a\",\"cache_control\":{\"type\":\"ephemeral\"}},{\"type\":\"text\",\"text\":\"b\","
         "\"cache_control\":{\"type\":\"ephemeral\"}}],\"cache_control\":{\"type\":"
         "\"ephemeral\"}}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a\"},"
         "\"cache_control\":{\"type\":\"ephemeral\"}}]}",
         "messages[1].cache_control"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *o = J(cases[i].req);
        struct provider_bad bad;
        memset(&bad, 0, sizeof(bad));
        assert_int_equal(provider_cache_check(o, &bad), ERR_INVAL);
        assert_string_equal(bad.param, cases[i].param);
        /* The reason never holds a value from the request. */
        assert_null(strstr(bad.msg, "persistent"));
        assert_null(strstr(bad.msg, "2h"));
        json_t *a = NULL;
        assert_int_equal(provider_anthropic_request(o, "m", false, 64, &a), ERR_INVAL);
        assert_null(a);
        memset(&bad, 0, sizeof(bad));
        assert_int_equal(provider_bedrock_request(o, 64, &bad, &a), ERR_INVAL);
        assert_string_equal(bad.param, cases[i].param);
        assert_null(a);
        json_decref(o);
    }
    /* Four are allowed; null is no hint. */
    json_t *o = J("{\"messages\":[{\"role\":\"system\",\"content\":\"s\",\"cache_control\":"
                  "{\"type\":\"ephemeral\"}},{\"role\":\"user\",\"content\":[{\"type\":\"text\","
                  "\"text\":\"a\",\"cache_control\":{\"type\":\"ephemeral\"}},{\"type\":\"text\","
                  "\"text\":\"b\",\"cache_control\":null}],\"cache_control\":{\"type\":"
                  "\"ephemeral\",\"ttl\":\"5m\"}}],\"tools\":[{\"type\":\"function\",\"function\":"
                  "{\"name\":\"a\"},\"cache_control\":{\"type\":\"ephemeral\",\"ttl\":\"1h\"}}]}");
    assert_int_equal(provider_cache_check(o, NULL), ERR_OK);
    json_t *a = NULL;
    assert_int_equal(provider_anthropic_request(o, "m", false, 64, &a), ERR_OK);
    json_decref(a);
    json_decref(o);
}

static size_t count_points(const json_t *blocks)
{
    size_t n = 0, i;
    const json_t *b;
    json_array_foreach(blocks, i, b)
    {
        const json_t *cp = json_object_get(b, "cachePoint");
        if (cp != NULL) {
            assert_string_equal(json_string_value(json_object_get(cp, "type")), "default");
            assert_int_equal(json_object_size(cp), 1); /* no ttl: Converse has one type */
            n++;
        }
    }
    return n;
}

static void test_bedrock_places(void **state)
{
    (void)state;
    json_t *o = J(HINTED);
    struct provider_bad bad;
    memset(&bad, 0, sizeof(bad));
    json_t *b = NULL;
    assert_int_equal(provider_bedrock_request(o, 64, &bad, &b), ERR_OK);
    /* system: the message's text block, then its cache point. */
    const json_t *sys = json_object_get(b, "system");
    assert_int_equal(json_array_size(sys), 2);
    assert_non_null(json_object_get(json_array_get(sys, 0), "text"));
    assert_non_null(json_object_get(json_array_get(sys, 1), "cachePoint"));
    const json_t *msgs = json_object_get(b, "messages");
    const json_t *c0 = json_object_get(json_array_get(msgs, 0), "content");
    assert_int_equal(json_array_size(c0), 2);
    assert_non_null(json_object_get(json_array_get(c0, 1), "cachePoint"));
    assert_int_equal(count_points(json_object_get(json_array_get(msgs, 1), "content")), 0);
    /* The point follows the marked part, before the part after it. */
    const json_t *c2 = json_object_get(json_array_get(msgs, 2), "content");
    assert_int_equal(json_array_size(c2), 3);
    assert_non_null(json_object_get(json_array_get(c2, 1), "cachePoint"));
    assert_string_equal(json_string_value(json_object_get(json_array_get(c2, 2), "text")), "tail");
    /* Tools: a point after the second toolSpec. */
    const json_t *tools = json_object_get(json_object_get(b, "toolConfig"), "tools");
    assert_int_equal(json_array_size(tools), 3);
    assert_non_null(json_object_get(json_array_get(tools, 1), "toolSpec"));
    assert_non_null(json_object_get(json_array_get(tools, 2), "cachePoint"));
    assert_int_equal(count_points(tools), 1);
    assert_int_equal(count_points(sys), 1);
    json_decref(b);
    json_decref(o);

    /* A hint on a message whose last part has one too is one point; tool results take one. */
    o = J("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\","
          "\"cache_control\":{\"type\":\"ephemeral\"}}],\"cache_control\":{\"type\":"
          "\"ephemeral\"}},{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":"
          "\"c1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},"
          "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"42\",\"cache_control\":"
          "{\"type\":\"ephemeral\"}}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":"
          "\"f\"}}]}");
    assert_int_equal(provider_bedrock_request(o, 64, &bad, &b), ERR_OK);
    msgs = json_object_get(b, "messages");
    assert_int_equal(count_points(json_object_get(json_array_get(msgs, 0), "content")), 1);
    const json_t *c = json_object_get(json_array_get(msgs, 2), "content");
    assert_non_null(json_object_get(json_array_get(c, 0), "toolResult"));
    assert_non_null(json_object_get(json_array_get(c, 1), "cachePoint"));
    /* Tools without hints are as before. */
    assert_int_equal(json_array_size(json_object_get(json_object_get(b, "toolConfig"), "tools")),
                     1);
    json_decref(b);
    json_decref(o);
}

/* Through the adapter: cache points for Claude and Nova models only (Converse refuses others). */
static void test_bedrock_models(void **state)
{
    (void)state;
    const struct provider_adapter *ad = provider_find("bedrock");
    assert_non_null(ad);
    /* points: cache points anywhere; tool_points: in toolConfig (Nova takes none there). */
    static const struct {
        const char *model;
        bool points, tool_points;
    } cases[] = {{"anthropic.claude-3-5-haiku-20241022-v1:0", true, true},
                 {"us.anthropic.claude-sonnet-4-20250514-v1:0", true, true},
                 {"anthropic.claude-opus-4-1-20250805-v1:0", true, true},
                 {"amazon.nova-pro-v1:0", true, false},
                 {"us-gov.anthropic.claude-3-7-sonnet-20250219-v1:0", true, true},
                 {"arn:aws:bedrock:us-east-1::foundation-model/"
                  "anthropic.claude-3-7-sonnet-20250219-v1:0",
                  true, true},
                 {"arn:aws:bedrock:us-east-1:123456789012:inference-profile/"
                  "us.anthropic.claude-sonnet-4-20250514-v1:0",
                  true, true},
                 {"arn:aws:bedrock:us-east-1::foundation-model/"
                  "anthropic.claude-3-haiku-20240307-v1:0",
                  false, false},
                 {"arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123",
                  false, false},
                 {"anthropic.claude-3-haiku-20240307-v1:0", false, false},
                 {"anthropic.claude-3-5-sonnet-20241022-v2:0", false, false},
                 {"meta.llama3-1-70b-instruct-v1:0", false, false},
                 {"mistral.mistral-large-2402-v1:0", false, false}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *entry = json_pack("{s:s,s:s}", "name", "bedrock", "base_url", "https://r.example");
        struct secret *key = secret_from("ABSK-canary-0123456789", 22);
        json_t *req = J(HINTED);
        struct provider_call c = {.op = PROVIDER_CHAT,
                                  .req = req,
                                  .model = cases[i].model,
                                  .entry = entry,
                                  .key = key,
                                  .default_max_tokens = 16};
        struct provider_http h;
        memset(&h, 0, sizeof(h));
        assert_int_equal(ad->build(&c, &h), ERR_OK);
        assert_true((strstr(h.body, "cachePoint") != NULL) == cases[i].points);
        const char *tc = strstr(h.body, "\"toolConfig\"");
        assert_non_null(tc);
        assert_true((strstr(tc, "cachePoint") != NULL) == cases[i].tool_points);
        assert_null(strstr(h.body, "cache_control"));
        assert_non_null(strstr(h.body, "Long document."));
        provider_http_done(&h);
        /* The app's request keeps its hints (a failover to a caching model has them). */
        assert_true(user_hinted(req));
        /* A bad hint is refused whatever the model. */
        json_object_set_new(json_array_get(json_object_get(req, "messages"), 1), "cache_control",
                            json_string("x"));
        memset(&h, 0, sizeof(h));
        assert_int_equal(ad->build(&c, &h), ERR_INVAL);
        assert_string_equal(h.bad.param, "messages[1].cache_control");
        provider_http_done(&h);
        secret_free(&key);
        json_decref(req);
        json_decref(entry);
    }
}

/* Builds an OpenAI-style request for the catalog entry named name; the body in *ret_body. */
static void openai_body(const char *style, const char *name, const json_t *req, json_t **ret_body)
{
    const struct provider_adapter *ad = provider_find(style);
    assert_non_null(ad);
    json_t *entry = json_pack("{s:s,s:s}", "name", name, "base_url", "https://r.example/");
    struct secret *key = secret_from("k-canary-0123456789", 19);
    assert_non_null(key);
    json_t *copy = json_deep_copy(req);
    struct provider_call c = {.op = PROVIDER_CHAT,
                              .req = copy,
                              .model = "m",
                              .entry = entry,
                              .key = key,
                              .default_max_tokens = 16};
    struct provider_http h;
    memset(&h, 0, sizeof(h));
    assert_int_equal(ad->build(&c, &h), ERR_OK);
    *ret_body = json_loadb(h.body, h.body_len, 0, NULL);
    assert_non_null(*ret_body);
    /* The app's request (tried on the next candidate after a failover) keeps its hints. */
    assert_non_null(json_object_get(
        json_array_get(
            json_object_get(json_array_get(json_object_get(copy, "messages"), 0), "content"), 1),
        "cache_control"));
    provider_http_done(&h);
    secret_free(&key);
    json_decref(copy);
    json_decref(entry);
}

static void test_openai_stripped_openrouter_kept(void **state)
{
    (void)state;
    json_t *o = J(HINTED);
    json_t *body = NULL;
    static const char *const stripped[][2] = {
        {"openai", "openai"}, {"openai", "deepseek"}, {"azure", "azure"}};
    for (size_t i = 0; i < sizeof(stripped) / sizeof(stripped[0]); i++) {
        openai_body(stripped[i][0], stripped[i][1], o, &body);
        char *text = json_dumps(body, JSON_COMPACT);
        assert_non_null(text);
        assert_null(strstr(text, "cache_control"));
        /* Nothing else changed: the parts are still there. */
        assert_non_null(strstr(text, "Long document."));
        free(text);
        json_decref(body);
    }
    openai_body("openai", "openrouter", o, &body);
    const json_t *m0 = json_array_get(json_object_get(body, "messages"), 0);
    assert_non_null(
        json_object_get(json_array_get(json_object_get(m0, "content"), 1), "cache_control"));
    assert_non_null(
        json_object_get(json_array_get(json_object_get(body, "tools"), 1), "cache_control"));
    json_decref(body);
    json_decref(o);
}

/* Cohere and Vertex take no hints: dropped, the rest translated as without them. */
static void test_cohere_vertex_dropped(void **state)
{
    (void)state;
    static const char *const styles[] = {"cohere", "vertex"};
    for (size_t i = 0; i < sizeof(styles) / sizeof(styles[0]); i++) {
        const struct provider_adapter *ad = provider_find(styles[i]);
        assert_non_null(ad);
        json_t *entry = json_pack("{s:s,s:s}", "name", styles[i], "base_url", "https://r.example/");
        struct secret *key = secret_from("k-canary-0123456789", 19);
        json_t *req = J(HINTED);
        struct provider_call c = {.op = PROVIDER_CHAT,
                                  .req = req,
                                  .model = "m",
                                  .entry = entry,
                                  .key = key,
                                  .default_max_tokens = 16};
        struct provider_http h;
        memset(&h, 0, sizeof(h));
        assert_int_equal(ad->build(&c, &h), ERR_OK);
        assert_non_null(h.body);
        assert_null(strstr(h.body, "cache_control"));
        assert_null(strstr(h.body, "ephemeral"));
        assert_non_null(strstr(h.body, "Long document."));
        provider_http_done(&h);
        secret_free(&key);
        json_decref(req);
        json_decref(entry);
    }
}

/* Anthropic's usage: writes apart from reads, the 1-hour part of them; LiteLLM's field. */
static void test_anthropic_usage_writes(void **state)
{
    (void)state;
    json_t *m = J("{\"id\":\"x\",\"model\":\"m\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}],"
                  "\"stop_reason\":\"end_turn\",\"usage\":{\"input_tokens\":10,"
                  "\"cache_read_input_tokens\":200,\"cache_creation_input_tokens\":300,"
                  "\"cache_creation\":{\"ephemeral_5m_input_tokens\":100,"
                  "\"ephemeral_1h_input_tokens\":200},\"output_tokens\":7}}");
    json_t *out = NULL;
    struct provider_usage u = {0};
    assert_int_equal(provider_anthropic_response(m, &out, &u), ERR_OK);
    assert_int_equal(u.prompt_tokens, 510);
    assert_int_equal(u.cached_tokens, 200);
    assert_int_equal(u.cache_write_tokens, 300);
    assert_int_equal(u.cache_write_1h_tokens, 200);
    const json_t *ou = json_object_get(out, "usage");
    assert_int_equal(json_integer_value(json_object_get(ou, "prompt_tokens")), 510);
    assert_int_equal(json_integer_value(json_object_get(ou, "cache_creation_input_tokens")), 300);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(ou, "prompt_tokens_details"), "cached_tokens")),
                     200);
    json_decref(out);
    json_decref(m);

    /* Only the split: its sum is the writes. Without writes, no LiteLLM field. */
    m = J(
        "{\"content\":[],\"usage\":{\"input_tokens\":1,\"cache_creation\":"
        "{\"ephemeral_5m_input_tokens\":5,\"ephemeral_1h_input_tokens\":6},\"output_tokens\":1}}");
    memset(&u, 0, sizeof(u));
    assert_int_equal(provider_anthropic_response(m, &out, &u), ERR_OK);
    assert_int_equal(u.prompt_tokens, 12);
    assert_int_equal(u.cache_write_tokens, 11);
    assert_int_equal(u.cache_write_1h_tokens, 6);
    json_decref(out);
    json_decref(m);
    m = J("{\"content\":[],\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}");
    memset(&u, 0, sizeof(u));
    assert_int_equal(provider_anthropic_response(m, &out, &u), ERR_OK);
    assert_null(json_object_get(json_object_get(out, "usage"), "cache_creation_input_tokens"));
    json_decref(out);
    json_decref(m);

    /* OpenRouter's cache_write_tokens in OpenAI's usage; bounded by the prompt. */
    json_t *ou2 = J("{\"prompt_tokens\":100,\"completion_tokens\":1,\"prompt_tokens_details\":"
                    "{\"cached_tokens\":60,\"cache_write_tokens\":90}}");
    memset(&u, 0, sizeof(u));
    provider_usage_from_openai(ou2, &u);
    assert_int_equal(u.cached_tokens, 60);
    assert_int_equal(u.cache_write_tokens, 40);
    json_decref(ou2);
    /* DeepSeek's prompt_cache_hit_tokens when there are no prompt_tokens_details. */
    ou2 = J("{\"prompt_tokens\":100,\"completion_tokens\":1,\"prompt_cache_hit_tokens\":70,"
            "\"prompt_cache_miss_tokens\":30}");
    memset(&u, 0, sizeof(u));
    provider_usage_from_openai(ou2, &u);
    assert_int_equal(u.cached_tokens, 70);
    assert_int_equal(u.cache_write_tokens, 0);
    json_decref(ou2);
}

static void test_bedrock_usage_writes(void **state)
{
    (void)state;
    const struct provider_adapter *ad = provider_find("bedrock");
    assert_non_null(ad);
    const char *body = "{\"output\":{\"message\":{\"role\":\"assistant\",\"content\":[{\"text\":"
                       "\"hi\"}]}},\"stopReason\":\"end_turn\",\"usage\":{\"inputTokens\":10,"
                       "\"outputTokens\":3,\"cacheReadInputTokens\":20,\"cacheWriteInputTokens\":"
                       "30,\"totalTokens\":63}}";
    json_t *out = NULL;
    struct provider_usage u = {0};
    assert_int_equal(ad->response(PROVIDER_CHAT, body, strlen(body), "m", &out, &u), ERR_OK);
    assert_int_equal(u.prompt_tokens, 60);
    assert_int_equal(u.cached_tokens, 20);
    assert_int_equal(u.cache_write_tokens, 30);
    assert_int_equal(u.cache_write_1h_tokens, 0);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(out, "usage"),
                                                        "cache_creation_input_tokens")),
                     30);
    json_decref(out);
}

static void test_cost_formula(void **state)
{
    (void)state;
    json_t *entry = J("{\"models\":[{\"name\":\"c\",\"input_per_1m\":3,\"output_per_1m\":15,"
                      "\"cached_input_per_1m\":0.3,\"cache_write_per_1m\":3.75},"
                      "{\"name\":\"plain\",\"input_per_1m\":2,\"output_per_1m\":8},"
                      "{\"name\":\"nul\",\"input_per_1m\":2,\"output_per_1m\":8,"
                      "\"cached_input_per_1m\":null},"
                      "{\"name\":\"bad\",\"input_per_1m\":2,\"output_per_1m\":8,"
                      "\"cached_input_per_1m\":-1},"
                      "{\"name\":\"huge\",\"input_per_1m\":2,\"output_per_1m\":8,"
                      "\"cache_write_per_1m\":1e9},"
                      "{\"name\":\"str\",\"input_per_1m\":2,\"output_per_1m\":8,"
                      "\"cache_write_per_1m\":\"1\"}]}");
    /* 1M prompt: 200k read, 300k written (100k of them for 1 hour), 500k plain; 100k output. */
    struct provider_usage u = {.prompt_tokens = 1000000,
                               .completion_tokens = 100000,
                               .cached_tokens = 200000,
                               .cache_write_tokens = 300000,
                               .cache_write_1h_tokens = 100000};
    double want = 0.5 * 3 + 0.2 * 0.3 + 0.2 * 3.75 + 0.1 * 2 * 3 + 0.1 * 15;
    assert_true(fabs(provider_cost(entry, "c", &u) - want) < 1e-9);
    /* A model without cache prices: every prompt token at the input price, as before. */
    assert_true(fabs(provider_cost(entry, "plain", &u) - (1.0 * 2 + 0.1 * 2 + 0.1 * 8)) < 1e-9);
    u.cache_write_1h_tokens = 0;
    assert_true(fabs(provider_cost(entry, "plain", &u) - (1.0 * 2 + 0.1 * 8)) < 1e-9);
    assert_true(fabs(provider_cost(entry, "nul", &u) - (1.0 * 2 + 0.1 * 8)) < 1e-9);
    /* A cache price the plugin would not have stored: costs nothing, as for input/output. */
    assert_true(provider_cost(entry, "bad", &u) == 0);
    assert_true(provider_cost(entry, "huge", &u) == 0);
    assert_true(provider_cost(entry, "str", &u) == 0);
    /* Parts that do not fit the prompt are clamped: never a negative uncached part. */
    struct provider_usage odd = {.prompt_tokens = 100,
                                 .cached_tokens = 80,
                                 .cache_write_tokens = 80,
                                 .cache_write_1h_tokens = 500};
    double c = provider_cost(entry, "c", &odd);
    assert_true(fabs(c - (80 * 0.3 + 20 * 2 * 3) / 1e6) < 1e-12);
    struct provider_usage neg = {
        .prompt_tokens = 10, .cached_tokens = -5, .cache_write_tokens = -5};
    assert_true(fabs(provider_cost(entry, "c", &neg) - 10 * 3 / 1e6) < 1e-12);
    /* The largest call stays finite and under the plugin's per-record bound. */
    json_t *dear = J("{\"models\":[{\"name\":\"d\",\"input_per_1m\":100000,\"output_per_1m\":"
                     "100000,\"cached_input_per_1m\":100000,\"cache_write_per_1m\":100000}]}");
    struct provider_usage max = {.prompt_tokens = PROVIDER_MAX_TOKENS,
                                 .completion_tokens = PROVIDER_MAX_TOKENS,
                                 .cache_write_tokens = PROVIDER_MAX_TOKENS,
                                 .cache_write_1h_tokens = PROVIDER_MAX_TOKENS};
    c = provider_cost(dear, "d", &max);
    assert_true(isfinite(c) && c > 0 && c <= 1e8);
    json_decref(dear);
    json_decref(entry);
}

/* Long-context tiers: the whole call at the long prices once the prompt exceeds the threshold. */
static void test_cost_long_context(void **state)
{
    (void)state;
    json_t *entry = J("{\"models\":[{\"name\":\"s\",\"input_per_1m\":3,\"output_per_1m\":15,"
                      "\"cached_input_per_1m\":0.3,\"cache_write_per_1m\":3.75,"
                      "\"long_context_threshold\":200000,\"long_input_per_1m\":6,"
                      "\"long_output_per_1m\":22.5},"
                      "{\"name\":\"g\",\"input_per_1m\":1.25,\"output_per_1m\":10,"
                      "\"long_context_threshold\":200000,\"long_input_per_1m\":2.5,"
                      "\"long_output_per_1m\":15},"
                      "{\"name\":\"free\",\"input_per_1m\":0,\"output_per_1m\":0,"
                      "\"cached_input_per_1m\":0,\"long_context_threshold\":10,"
                      "\"long_input_per_1m\":4,\"long_output_per_1m\":8},"
                      "{\"name\":\"part\",\"input_per_1m\":3,\"output_per_1m\":15,"
                      "\"long_context_threshold\":10,\"long_input_per_1m\":6},"
                      "{\"name\":\"badt\",\"input_per_1m\":3,\"output_per_1m\":15,"
                      "\"long_context_threshold\":0,\"long_input_per_1m\":6,"
                      "\"long_output_per_1m\":22.5},"
                      "{\"name\":\"badp\",\"input_per_1m\":3,\"output_per_1m\":15,"
                      "\"long_context_threshold\":10,\"long_input_per_1m\":1e9,"
                      "\"long_output_per_1m\":22.5},"
                      "{\"name\":\"strt\",\"input_per_1m\":3,\"output_per_1m\":15,"
                      "\"long_context_threshold\":\"10\",\"long_input_per_1m\":6,"
                      "\"long_output_per_1m\":22.5}]}");
    /* Under and exactly at the threshold: the flat prices. */
    struct provider_usage u = {.prompt_tokens = 199999, .completion_tokens = 1000};
    assert_true(fabs(provider_cost(entry, "s", &u) - (199999 * 3.0 + 1000 * 15.0) / 1e6) < 1e-12);
    u.prompt_tokens = 200000;
    assert_true(fabs(provider_cost(entry, "s", &u) - (200000 * 3.0 + 1000 * 15.0) / 1e6) < 1e-12);
    /* One past it: every token at the long prices. */
    u.prompt_tokens = 200001;
    assert_true(fabs(provider_cost(entry, "s", &u) - (200001 * 6.0 + 1000 * 22.5) / 1e6) < 1e-12);
    u.prompt_tokens = 250000;
    u.completion_tokens = 2000;
    assert_true(fabs(provider_cost(entry, "g", &u) - (250000 * 2.5 + 2000 * 15.0) / 1e6) < 1e-12);
    /* Cache reads and writes count toward the threshold and scale by long/input (2x here). */
    struct provider_usage c = {.prompt_tokens = 300000,
                               .completion_tokens = 1000,
                               .cached_tokens = 150000,
                               .cache_write_tokens = 100000,
                               .cache_write_1h_tokens = 40000};
    double want = (50000 * 6.0 + 150000 * 0.6 + 60000 * 7.5 + 40000 * 2 * 6.0 + 1000 * 22.5) / 1e6;
    assert_true(fabs(provider_cost(entry, "s", &c) - want) < 1e-9);
    /* A model without cache prices: its cached tokens at the long input price. */
    want = (300000 * 2.5 - 40000 * 2.5 + 40000 * 2 * 2.5 + 1000 * 15.0) / 1e6;
    assert_true(fabs(provider_cost(entry, "g", &c) - want) < 1e-9);
    /* Below the threshold the same parts cost the flat prices. */
    c.prompt_tokens = 200000;
    c.cached_tokens = 100000;
    c.cache_write_tokens = 50000;
    c.cache_write_1h_tokens = 0;
    want = (50000 * 3.0 + 100000 * 0.3 + 50000 * 3.75 + 1000 * 15.0) / 1e6;
    assert_true(fabs(provider_cost(entry, "s", &c) - want) < 1e-9);
    /* An input price of 0 has no ratio: the cache prices are the long input price. */
    struct provider_usage f = {.prompt_tokens = 100, .completion_tokens = 10, .cached_tokens = 50};
    assert_true(fabs(provider_cost(entry, "free", &f) - (100 * 4.0 + 10 * 8.0) / 1e6) < 1e-12);
    /* A tier not given whole, or out of the plugin's bounds: the flat prices, as before. */
    struct provider_usage p = {.prompt_tokens = 1000, .completion_tokens = 100};
    double flat = (1000 * 3.0 + 100 * 15.0) / 1e6;
    assert_true(fabs(provider_cost(entry, "part", &p) - flat) < 1e-12);
    assert_true(fabs(provider_cost(entry, "badt", &p) - flat) < 1e-12);
    assert_true(fabs(provider_cost(entry, "badp", &p) - flat) < 1e-12);
    assert_true(fabs(provider_cost(entry, "strt", &p) - flat) < 1e-12);
    /* The largest call at the dearest long prices stays under the plugin's per-record bound. */
    json_t *dear = J("{\"models\":[{\"name\":\"d\",\"input_per_1m\":0.0001,\"output_per_1m\":"
                     "100000,\"cached_input_per_1m\":100000,\"cache_write_per_1m\":100000,"
                     "\"long_context_threshold\":1,\"long_input_per_1m\":100000,"
                     "\"long_output_per_1m\":100000,\"web_search_per_1k\":1000}]}");
    struct provider_usage max = {.prompt_tokens = PROVIDER_MAX_TOKENS,
                                 .completion_tokens = PROVIDER_MAX_TOKENS,
                                 .cached_tokens = PROVIDER_MAX_TOKENS / 2,
                                 .cache_write_tokens = PROVIDER_MAX_TOKENS / 2,
                                 .cache_write_1h_tokens = PROVIDER_MAX_TOKENS / 4,
                                 .web_search_requests = PROVIDER_MAX_TOKENS};
    double cmax = provider_cost(dear, "d", &max);
    assert_true(isfinite(cmax) && cmax > 0 && cmax < 1e9);
    json_decref(dear);
    json_decref(entry);
}

/* Web searches: web_search_requests x web_search_per_1k / 1000, on top of the tokens. */
static void test_cost_web_search(void **state)
{
    (void)state;
    json_t *entry = J("{\"models\":[{\"name\":\"w\",\"input_per_1m\":3,\"output_per_1m\":15,"
                      "\"web_search_per_1k\":10},"
                      "{\"name\":\"none\",\"input_per_1m\":3,\"output_per_1m\":15},"
                      "{\"name\":\"neg\",\"input_per_1m\":3,\"output_per_1m\":15,"
                      "\"web_search_per_1k\":-1},"
                      "{\"name\":\"huge\",\"input_per_1m\":3,\"output_per_1m\":15,"
                      "\"web_search_per_1k\":1000.5},"
                      "{\"name\":\"str\",\"input_per_1m\":3,\"output_per_1m\":15,"
                      "\"web_search_per_1k\":\"10\"}]}");
    struct provider_usage u = {
        .prompt_tokens = 1000, .completion_tokens = 100, .web_search_requests = 3};
    double tokens = (1000 * 3.0 + 100 * 15.0) / 1e6;
    assert_true(fabs(provider_cost(entry, "w", &u) - (tokens + 0.03)) < 1e-12);
    /* Not priced, or priced out of the plugin's bounds: the tokens only. */
    assert_true(fabs(provider_cost(entry, "none", &u) - tokens) < 1e-12);
    assert_true(fabs(provider_cost(entry, "neg", &u) - tokens) < 1e-12);
    assert_true(fabs(provider_cost(entry, "huge", &u) - tokens) < 1e-12);
    assert_true(fabs(provider_cost(entry, "str", &u) - tokens) < 1e-12);
    u.web_search_requests = -4;
    assert_true(fabs(provider_cost(entry, "w", &u) - tokens) < 1e-12);
    json_decref(entry);
}

/* usage.server_tool_use.web_search_requests, in a whole answer and in a stream. */
static void test_anthropic_usage_searches(void **state)
{
    (void)state;
    json_t *m = J("{\"id\":\"x\",\"model\":\"m\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}],"
                  "\"stop_reason\":\"end_turn\",\"usage\":{\"input_tokens\":10,"
                  "\"output_tokens\":7,\"server_tool_use\":{\"web_search_requests\":3,"
                  "\"web_fetch_requests\":2}}}");
    json_t *out = NULL;
    struct provider_usage u = {0};
    assert_int_equal(provider_anthropic_response(m, &out, &u), ERR_OK);
    assert_int_equal(u.web_search_requests, 3);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_object_get(out, "usage"), "server_tool_use"),
                         "web_search_requests")),
                     3);
    json_decref(out);
    json_decref(m);
    /* None: no field in the translated usage; a bad count is 0. */
    m = J("{\"content\":[],\"usage\":{\"input_tokens\":1,\"output_tokens\":1,"
          "\"server_tool_use\":{\"web_search_requests\":-2}}}");
    memset(&u, 0, sizeof(u));
    assert_int_equal(provider_anthropic_response(m, &out, &u), ERR_OK);
    assert_int_equal(u.web_search_requests, 0);
    assert_null(json_object_get(json_object_get(out, "usage"), "server_tool_use"));
    json_decref(out);
    json_decref(m);

    /* A stream: message_delta's count (the whole answer's) replaces message_start's. */
    const struct provider_adapter *ad = provider_find("anthropic");
    assert_non_null(ad);
    struct provider_stream st;
    memset(&st, 0, sizeof(st));
    struct buf b;
    buf_init(&b, 1 << 16);
    static const char start[] =
        "{\"type\":\"message_start\",\"message\":{\"id\":\"m1\",\"model\":\"c\",\"usage\":"
        "{\"input_tokens\":5,\"output_tokens\":1,\"server_tool_use\":{\"web_search_requests\":0}}}"
        "}";
    static const char delta[] =
        "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},"
        "\"usage\":{\"output_tokens\":9,\"server_tool_use\":"
        "{\"web_search_requests\":2}}}";
    assert_int_equal(ad->stream_event(&st, "message_start", start, strlen(start), &b), ERR_OK);
    assert_int_equal(st.usage.web_search_requests, 0);
    assert_int_equal(ad->stream_event(&st, "message_delta", delta, strlen(delta), &b), ERR_OK);
    assert_int_equal(st.usage.web_search_requests, 2);
    assert_int_equal(st.usage.prompt_tokens, 5);
    assert_int_equal(st.usage.completion_tokens, 9);
    /* The Messages passthrough's reader (agent/messages.c) takes the same object. */
    json_t *mu = J("{\"input_tokens\":1,\"server_tool_use\":{\"web_search_requests\":4}}");
    memset(&u, 0, sizeof(u));
    provider_anthropic_usage(mu, &u, true);
    assert_int_equal(u.web_search_requests, 4);
    json_decref(mu);
    buf_done(&b);
}

/* Out of memory at every allocation of a hinted translation: an error, never a crash or leak. */
static void test_out_of_memory(void **state)
{
    (void)state;
    json_t *o = J(HINTED);
    bool done_a = false, done_b = false;
    json_set_alloc_funcs(oom_malloc, free);
    for (long n = 1; n < 2000 && !(done_a && done_b); n++) {
        json_t *a = NULL;
        if (!done_a) {
            oom_countdown = n;
            oom_fired = false;
            enum err e = provider_anthropic_request(o, "m", false, 64, &a);
            if (!oom_fired) {
                assert_int_equal(e, ERR_OK);
                done_a = true;
            } else if (e == ERR_OK) {
                json_decref(a);
                a = NULL;
            }
            json_decref(a);
        }
        if (!done_b) {
            oom_countdown = n;
            oom_fired = false;
            a = NULL;
            enum err e = provider_bedrock_request(o, 64, NULL, &a);
            if (!oom_fired) {
                assert_int_equal(e, ERR_OK);
                done_b = true;
            }
            json_decref(a);
        }
    }
    oom_countdown = 0;
    json_set_alloc_funcs(malloc, free);
    assert_true(done_a && done_b);
    json_decref(o);
}

static int setup(void **state)
{
    (void)state;
    return secret_heap_init((size_t)64 * 1024) == ERR_OK ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_anthropic_places),
        cmocka_unit_test(test_anthropic_without_hints_unchanged),
        cmocka_unit_test(test_anthropic_tool_messages),
        cmocka_unit_test(test_bad_hints),
        cmocka_unit_test(test_bedrock_places),
        cmocka_unit_test(test_bedrock_models),
        cmocka_unit_test(test_openai_stripped_openrouter_kept),
        cmocka_unit_test(test_cohere_vertex_dropped),
        cmocka_unit_test(test_anthropic_usage_writes),
        cmocka_unit_test(test_bedrock_usage_writes),
        cmocka_unit_test(test_cost_formula),
        cmocka_unit_test(test_cost_long_context),
        cmocka_unit_test(test_cost_web_search),
        cmocka_unit_test(test_anthropic_usage_searches),
        cmocka_unit_test(test_out_of_memory),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
