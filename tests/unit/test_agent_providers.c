/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for the usage counts the adapters take from provider replies:
 * whatever a provider reports (negative, fractional, absurd, not a number),
 * the counts stay in 0..PROVIDER_MAX_TOKENS, cached tokens never exceed
 * prompt tokens, and the cost stays finite and non-negative. A count outside
 * the plugin's bounds would get a whole usage batch refused (and dropped).
 * Also the estimates used when a provider never reports usage: prompt tokens
 * from the request text, completion tokens from the stream events forwarded.
 * And what an adapter builds: Azure's stream_options by api-version, the
 * field an untranslatable Anthropic request is refused for.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "agent/providers.h"
#include "common/secret.h"

/* An OpenAI chat answer whose usage object is the given JSON text. */
static char *openai_body(const char *usage)
{
    static char b[1024];
    snprintf(b, sizeof(b),
             "{\"id\":\"c1\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,"
             "\"message\":{\"role\":\"assistant\",\"content\":\"hi\"},\"finish_reason\":\"stop\"}],"
             "\"usage\":%s}",
             usage);
    return b;
}

static void check_bounded(const struct provider_usage *u)
{
    assert_true(u->prompt_tokens >= 0 && u->prompt_tokens <= PROVIDER_MAX_TOKENS);
    assert_true(u->completion_tokens >= 0 && u->completion_tokens <= PROVIDER_MAX_TOKENS);
    assert_true(u->cached_tokens >= 0 && u->cached_tokens <= u->prompt_tokens);
}

/* Both ways an OpenAI-style body is read: the passthrough scan and the full parse. */
static void openai_usage(const char *usage, struct provider_usage *scan,
                         struct provider_usage *full)
{
    const struct provider_adapter *ad = provider_find("openai");
    assert_non_null(ad);
    const char *body = openai_body(usage);
    memset(scan, 0, sizeof(*scan));
    memset(full, 0, sizeof(*full));
    assert_int_equal(ad->response(PROVIDER_CHAT, body, strlen(body), "m", NULL, scan), ERR_OK);
    json_t *out = NULL;
    assert_int_equal(ad->response(PROVIDER_CHAT, body, strlen(body), "m", &out, full), ERR_OK);
    json_decref(out);
    check_bounded(scan);
    check_bounded(full);
    assert_memory_equal(scan, full, sizeof(*scan));
}

static void test_openai_counts_clamped(void **state)
{
    (void)state;
    struct provider_usage s, f;
    openai_usage("{\"prompt_tokens\":12,\"completion_tokens\":5,"
                 "\"prompt_tokens_details\":{\"cached_tokens\":4}}",
                 &s, &f);
    assert_int_equal(s.prompt_tokens, 12);
    assert_int_equal(s.completion_tokens, 5);
    assert_int_equal(s.cached_tokens, 4);
    assert_true(s.seen);

    openai_usage("{\"prompt_tokens\":-1000000,\"completion_tokens\":-1}", &s, &f);
    assert_int_equal(s.prompt_tokens, 0);
    assert_int_equal(s.completion_tokens, 0);

    openai_usage("{\"prompt_tokens\":9223372036854775807,\"completion_tokens\":1e300}", &s, &f);
    assert_int_equal(s.prompt_tokens, PROVIDER_MAX_TOKENS);
    assert_int_equal(s.completion_tokens, PROVIDER_MAX_TOKENS);

    openai_usage("{\"prompt_tokens\":12.0,\"completion_tokens\":\"7\","
                 "\"prompt_tokens_details\":{\"cached_tokens\":50}}",
                 &s, &f);
    assert_int_equal(s.prompt_tokens, 12);
    assert_int_equal(s.completion_tokens, 0); /* a string is not a count */
    assert_int_equal(s.cached_tokens, 12);    /* never more than the prompt */

    openai_usage("{\"prompt_tokens\":null,\"completion_tokens\":[3],\"prompt_tokens_details\":7}",
                 &s, &f);
    assert_int_equal(s.prompt_tokens, 0);
    assert_int_equal(s.completion_tokens, 0);
    assert_int_equal(s.cached_tokens, 0);
}

/* The stream state after events {name, data}... (usage bounded, est_completion kept). */
static struct provider_stream stream_state(const char *style, const char *const (*events)[2],
                                           size_t n)
{
    const struct provider_adapter *ad = provider_find(style);
    assert_non_null(ad);
    struct provider_stream st;
    memset(&st, 0, sizeof(st));
    struct buf out;
    buf_init(&out, 1 << 16);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(
            ad->stream_event(&st, events[i][0], events[i][1], strlen(events[i][1]), &out), ERR_OK);
    }
    buf_done(&out);
    check_bounded(&st.usage);
    assert_true(st.est_completion >= 0 && st.est_completion <= PROVIDER_MAX_TOKENS);
    return st;
}

/* The usage a style's stream adapter has after events {name, data}..., checked bounded. */
static struct provider_usage stream_usage(const char *style, const char *const (*events)[2],
                                          size_t n)
{
    return stream_state(style, events, n).usage;
}

static void test_openai_stream_counts_clamped(void **state)
{
    (void)state;
    static const char *const ev[][2] = {{"", "{\"choices\":[],\"usage\":{\"prompt_tokens\":-5,"
                                             "\"completion_tokens\":123456789012,"
                                             "\"prompt_tokens_details\":{\"cached_tokens\":-2}}}"}};
    struct provider_usage u = stream_usage("openai", ev, 1);
    assert_int_equal(u.prompt_tokens, 0);
    assert_int_equal(u.completion_tokens, PROVIDER_MAX_TOKENS);
    assert_int_equal(u.cached_tokens, 0);
}

/*
 * The app did not ask for the usage chunk: include_usage's own chunk (empty
 * choices) is read for its usage and marked usage_tail, for the proxy to end
 * the stream before it; a content chunk that also carries usage is not; and
 * Anthropic's translation leaves the chunk out, [DONE] still last.
 */
static void test_usage_chunk_skipped(void **state)
{
    (void)state;
    const struct provider_adapter *oa = provider_find("openai");
    struct provider_stream st;
    struct buf out;
    buf_init(&out, 1 << 16);
    static const char content_with_usage[] =
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}],"
        "\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":1}}";
    static const char usage_only[] =
        "{\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3}}";
    for (int skip = 0; skip <= 1; skip++) {
        memset(&st, 0, sizeof(st));
        st.skip_usage_chunk = skip == 1;
        assert_int_equal(
            oa->stream_event(&st, "", content_with_usage, strlen(content_with_usage), &out),
            ERR_OK);
        assert_false(st.usage_tail);
        assert_int_equal(oa->stream_event(&st, "", usage_only, strlen(usage_only), &out), ERR_OK);
        assert_int_equal(st.usage_tail, skip == 1);
        assert_true(st.usage_final);
        assert_int_equal(st.usage.completion_tokens, 3);
    }

    const struct provider_adapter *an = provider_find("anthropic");
    static const char *const ev[][2] = {
        {"message_start", "{\"type\":\"message_start\",\"message\":{\"id\":\"m1\","
                          "\"model\":\"claude\",\"usage\":{\"input_tokens\":4}}}"},
        {"message_delta", "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
                          "\"end_turn\"},\"usage\":{\"output_tokens\":2}}"},
        {"message_stop", "{\"type\":\"message_stop\"}"},
    };
    for (int skip = 0; skip <= 1; skip++) {
        memset(&st, 0, sizeof(st));
        st.skip_usage_chunk = skip == 1;
        buf_reset(&out);
        for (size_t i = 0; i < sizeof(ev) / sizeof(ev[0]); i++) {
            assert_int_equal(an->stream_event(&st, ev[i][0], ev[i][1], strlen(ev[i][1]), &out),
                             ERR_OK);
        }
        assert_true(st.done);
        assert_int_equal(st.usage.completion_tokens, 2);
        assert_int_equal(strstr(out.data, "\"choices\":[]") != NULL, skip == 0);
        const char *done = "data: [DONE]\n\n";
        assert_true(out.len >= strlen(done));
        assert_string_equal(out.data + out.len - strlen(done), done);
    }
    buf_done(&out);
}

static void test_anthropic_counts_clamped(void **state)
{
    (void)state;
    json_t *m = json_loads(
        "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"c\","
        "\"content\":[{\"type\":\"text\",\"text\":\"hi\"}],\"stop_reason\":\"end_turn\","
        "\"usage\":{\"input_tokens\":-10,\"cache_read_input_tokens\":9000000000000000000,"
        "\"cache_creation_input_tokens\":99999999,\"output_tokens\":-3}}",
        0, NULL);
    assert_non_null(m);
    json_t *o = NULL;
    struct provider_usage u = {0};
    assert_int_equal(provider_anthropic_response(m, &o, &u), ERR_OK);
    check_bounded(&u);
    assert_int_equal(u.prompt_tokens, PROVIDER_MAX_TOKENS); /* the sum, clamped, no overflow */
    assert_int_equal(u.cached_tokens, PROVIDER_MAX_TOKENS);
    assert_int_equal(u.completion_tokens, 0);
    const json_t *ou = json_object_get(o, "usage");
    assert_int_equal(json_integer_value(json_object_get(ou, "total_tokens")), PROVIDER_MAX_TOKENS);
    json_decref(o);
    json_decref(m);

    static const char *const ev[][2] = {
        {"message_start", "{\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":"
                          "\"c\",\"usage\":{\"input_tokens\":-1,\"output_tokens\":1}}}"},
        {"message_delta", "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
                          "\"end_turn\"},\"usage\":{\"output_tokens\":1e30}}"}};
    struct provider_usage su = stream_usage("anthropic", ev, 2);
    assert_int_equal(su.prompt_tokens, 0);
    assert_int_equal(su.completion_tokens, PROVIDER_MAX_TOKENS);
}

/*
 * A passthrough body (usage only, ret_json NULL) must be one JSON document,
 * like a parsed one: two objects back to back, the second a usage block, are
 * refused; and its usage is the top-level one, not a "usage" nested after it.
 */
static void test_openai_passthrough_whole_document(void **state)
{
    (void)state;
    const struct provider_adapter *ad = provider_find("openai");
    static const char *const bad[] = {
        "{\"id\":\"x\",\"choices\":[]}{\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}",
        "{\"id\":\"x\",\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}",
        "{\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}, \"x\": tru}",
        "{\"a\":\"\\q\",\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct provider_usage u = {0};
        assert_int_equal(ad->response(PROVIDER_CHAT, bad[i], strlen(bad[i]), "m", NULL, &u),
                         ERR_PROTO);
        assert_false(u.seen);
    }
    static const char nested[] =
        "{\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":5},\"choices\":[{\"index\":0,"
        "\"message\":{\"role\":\"assistant\",\"content\":\"hi\"},"
        "\"tool_meta\":{\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":99999}}}]}";
    struct provider_usage u = {0};
    assert_int_equal(ad->response(PROVIDER_CHAT, nested, strlen(nested), "m", NULL, &u), ERR_OK);
    assert_int_equal(u.prompt_tokens, 12);
    assert_int_equal(u.completion_tokens, 5);
}

/*
 * A 2xx that is the provider's error (OpenAI's error object, or an older
 * server's error string) is never an answer: its text may echo the key, so
 * passthrough adapters refuse it, asked for the answer or for usage only.
 */
static void test_openai_error_in_2xx_refused(void **state)
{
    (void)state;
    static const char *const errs[] = {
        "{\"error\":{\"message\":\"Incorrect API key provided: sk-canary-0123456789abcdef\","
        "\"type\":\"invalid_request_error\",\"code\":\"invalid_api_key\"}}",
        "{\"error\":\"upstream failed for key sk-canary-0123456789abcdef\","
        "\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}",
    };
    static const char *const styles[] = {"openai", "azure", "gemini"};
    for (size_t s = 0; s < sizeof(styles) / sizeof(styles[0]); s++) {
        const struct provider_adapter *ad = provider_find(styles[s]);
        assert_non_null(ad);
        for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
            struct provider_usage u = {0};
            json_t *out = NULL;
            assert_int_equal(ad->response(PROVIDER_CHAT, errs[i], strlen(errs[i]), "m", NULL, &u),
                             ERR_UPSTREAM);
            assert_int_equal(ad->response(PROVIDER_CHAT, errs[i], strlen(errs[i]), "m", &out, &u),
                             ERR_UPSTREAM);
            assert_null(out);
            assert_false(u.seen);
        }
    }
    /* "error": null (some servers send it in every answer) is not an error. */
    static const char ok[] = "{\"error\":null,\"choices\":[],"
                             "\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}";
    struct provider_usage u = {0};
    assert_int_equal(
        provider_find("openai")->response(PROVIDER_CHAT, ok, strlen(ok), "m", NULL, &u), ERR_OK);
    assert_int_equal(u.completion_tokens, 2);
}

/*
 * Anthropic's error object in a 2xx ({"type":"error",...}, or an "error"
 * object) is the provider's error too, never an answer: as OpenAI's, it is
 * refused whether the answer or only usage is asked for.
 */
static void test_anthropic_error_in_2xx_refused(void **state)
{
    (void)state;
    static const char *const errs[] = {
        "{\"type\":\"error\",\"error\":{\"type\":\"authentication_error\","
        "\"message\":\"invalid x-api-key sk-ant-canary-0123456789abcdef\"}}",
        "{\"type\":\"error\"}",
        "{\"error\":{\"message\":\"upstream failed for key sk-ant-canary-0123456789abcdef\"}}",
    };
    const struct provider_adapter *ad = provider_find("anthropic");
    assert_non_null(ad);
    for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
        struct provider_usage u = {0};
        json_t *out = NULL;
        assert_int_equal(ad->response(PROVIDER_CHAT, errs[i], strlen(errs[i]), "m", NULL, &u),
                         ERR_UPSTREAM);
        assert_int_equal(ad->response(PROVIDER_CHAT, errs[i], strlen(errs[i]), "m", &out, &u),
                         ERR_UPSTREAM);
        assert_null(out);
        assert_false(u.seen);
    }
}

/* ret_json NULL asks for usage only: every adapter must honour it, translating ones too. */
static void test_usage_only(void **state)
{
    (void)state;
    static const char anth[] = "{\"id\":\"m\",\"type\":\"message\",\"content\":[{\"type\":"
                               "\"text\",\"text\":\"hi\"}],\"stop_reason\":\"end_turn\","
                               "\"usage\":{\"input_tokens\":3,\"output_tokens\":2}}";
    const struct provider_adapter *ad = provider_find("anthropic");
    assert_non_null(ad);
    struct provider_usage u = {0};
    assert_int_equal(ad->response(PROVIDER_CHAT, anth, strlen(anth), "m", NULL, &u), ERR_OK);
    assert_int_equal(u.prompt_tokens, 3);
    assert_int_equal(u.completion_tokens, 2);
    /* Not an object: refused whether or not the answer is wanted. */
    json_t *out = NULL;
    assert_int_equal(ad->response(PROVIDER_CHAT, "[1]", 3, "m", &out, &u), ERR_PROTO);
    assert_null(out);
    assert_int_equal(ad->response(PROVIDER_CHAT, "[1]", 3, "m", NULL, &u), ERR_PROTO);
}

/*
 * Builds one upstream request with an adapter: style's adapter, catalog entry
 * at https://r.example/, key metadata (JSON text or NULL), the app's request.
 * On ERR_OK the caller frees h with provider_http_done.
 */
static enum err build_call(const char *style, const char *metadata, const char *request,
                           bool stream, struct provider_http *h)
{
    const struct provider_adapter *ad = provider_find(style);
    assert_non_null(ad);
    json_t *entry = json_loads("{\"base_url\":\"https://r.openai.azure.com/\"}", 0, NULL);
    json_t *md = metadata != NULL ? json_loads(metadata, 0, NULL) : NULL;
    json_t *req = json_loads(request, 0, NULL);
    struct secret *key = secret_from("k-canary-0123456789", 19);
    assert_non_null(entry);
    assert_true(metadata == NULL || md != NULL);
    assert_non_null(req);
    assert_non_null(key);
    struct provider_call c = {.op = PROVIDER_CHAT,
                              .req = req,
                              .model = "gpt-4o",
                              .stream = stream,
                              .entry = entry,
                              .metadata = md,
                              .key = key,
                              .default_max_tokens = 16};
    memset(h, 0, sizeof(*h));
    enum err e = ad->build(&c, h);
    if (e != ERR_OK) {
        provider_http_done(h);
    }
    secret_free(&key);
    json_decref(req);
    json_decref(md);
    json_decref(entry);
    return e;
}

static const char one_message[] = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}";

/* Azure puts the deployment and api_version from key metadata into the URL. */
static enum err azure_url(const char *metadata, char *url, size_t size)
{
    struct provider_http h;
    enum err e = build_call("azure", metadata, one_message, false, &h);
    snprintf(url, size, "%s", e == ERR_OK ? h.url : "");
    if (e == ERR_OK) {
        provider_http_done(&h);
    }
    return e;
}

/* The stream_options an Azure stream request carries for an api-version ("" when none). */
static void azure_stream_options(const char *version, const char *request, char *got, size_t size)
{
    char md[256];
    snprintf(md, sizeof(md), "{\"deployment\":\"d\",\"api_version\":\"%s\"}", version);
    struct provider_http h;
    assert_int_equal(build_call("azure", md, request, true, &h), ERR_OK);
    json_t *body = json_loadb(h.body, h.body_len, 0, NULL);
    assert_non_null(body);
    char *so = json_dumps(json_object_get(body, "stream_options"), JSON_COMPACT | JSON_ENCODE_ANY);
    snprintf(got, size, "%s", so != NULL ? so : "");
    free(so);
    json_decref(body);
    provider_http_done(&h);
}

/*
 * Azure refuses stream_options before api-version 2024-09-01-preview (400
 * "Unrecognized request argument supplied: stream_options"): it is left out
 * for those (also when the app sent it), and asked for from that date on.
 */
static void test_azure_stream_options_by_version(void **state)
{
    (void)state;
    static const struct {
        const char *version;
        bool takes;
    } v[] = {
        {"2023-05-15", false}, {"2024-02-01", false},
        {"2024-06-01", false}, {"2024-08-01-preview", false},
        {"2024-09-01", true},  {"2024-09-01-preview", true},
        {"2024-10-21", true},  {"2025-04-01-preview", true},
        {"preview", true}, /* the v1 API's versions are not dates: newer than any */
        {"latest", true},      {"2024", true},
        {"2024-9-01", true},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        assert_int_equal(provider_azure_stream_options(v[i].version), v[i].takes);
    }
    char got[256];
    azure_stream_options("2024-06-01", one_message, got, sizeof(got));
    assert_string_equal(got, "");
    azure_stream_options("2024-06-01",
                         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                         "\"stream_options\":{\"include_usage\":true}}",
                         got, sizeof(got));
    assert_string_equal(got, "");
    azure_stream_options("2024-10-21", one_message, got, sizeof(got));
    assert_string_equal(got, "{\"include_usage\":true}");
    azure_stream_options("2024-09-01-preview", one_message, got, sizeof(got));
    assert_string_equal(got, "{\"include_usage\":true}");
}

/* A request the Anthropic adapter cannot translate: its build names the field and the reason. */
static void test_anthropic_bad_field_named(void **state)
{
    (void)state;
    static const struct {
        const char *request, *param;
    } cases[] = {
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"w\"},{\"role\":\"assistant\","
         "\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\",\"function\":"
         "{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":1}\"}},{\"id\":\"c2\",\"type\":\"function\","
         "\"function\":{\"name\":\"f\",\"arguments\":\"not json\"}}]}]}",
         "messages[1].tool_calls[1].function.arguments"},
        {"{\"messages\":[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\","
         "\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"[1]\"}}]}]}",
         "messages[0].tool_calls[0].function.arguments"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"w\"}],\"tools\":[{\"type\":\"function\","
         "\"function\":{\"name\":\"f\"}},{\"type\":\"function\",\"function\":{\"name\":\"g\","
         "\"parameters\":\"x\"}}]}",
         "tools[1].function.parameters"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"w\"}],\"tools\":[{\"type\":\"custom\","
         "\"custom\":{\"name\":\"f\"}}]}",
         "tools[0].type"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"w\"}],\"tools\":[{\"type\":\"function\","
         "\"function\":{\"name\":\"f\"}}],\"tool_choice\":\"sometimes\"}",
         "tool_choice"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"w\"},{\"role\":\"tool\",\"content\":"
         "\"r\"}]}",
         "messages[1].tool_call_id"},
        {"{\"messages\":[{\"role\":\"wizard\",\"content\":\"w\"}]}", "messages[0].role"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct provider_http h;
        assert_int_equal(build_call("anthropic", NULL, cases[i].request, false, &h), ERR_INVAL);
        assert_string_equal(h.bad.param, cases[i].param);
        assert_true(h.bad.msg[0] != '\0');
        assert_null(strstr(h.bad.msg, "not json")); /* no value from the request */
    }
}

static void test_azure_url_segments(void **state)
{
    (void)state;
    char url[4096];
    assert_int_equal(
        azure_url("{\"deployment\":\"dep-1.5\",\"api_version\":\"2024-06-01\"}", url, sizeof(url)),
        ERR_OK);
    assert_string_equal(url,
                        "https://r.openai.azure.com/openai/deployments/dep-1.5/chat/completions"
                        "?api-version=2024-06-01");
    /* The model's own name when no deployment is given; one map entry per model. */
    assert_int_equal(azure_url("{\"deployment\":{\"gpt-4o\":\"d4o\"}}", url, sizeof(url)), ERR_OK);
    assert_non_null(strstr(url, "/openai/deployments/d4o/chat/completions?api-version="));
    static const char *const bad[] = {
        "{\"deployment\":\"..\"}",
        "{\"deployment\":\".\"}",
        "{\"deployment\":\".hidden\"}",
        "{\"deployment\":\"a/b\"}",
        "{\"deployment\":\"a?b\"}",
        "{\"deployment\":\"a b\"}",
        "{\"deployment\":\"{\\\"gpt-4o\\\":\\\"..\\\"}\"}",
        "{\"api_version\":\"..\"}",
        "{\"api_version\":\"1&x=y\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(azure_url(bad[i], url, sizeof(url)), ERR_CONFIG);
    }
}

static void test_cost_finite(void **state)
{
    (void)state;
    json_t *entry = json_loads("{\"models\":[{\"name\":\"m\",\"input_per_1m\":100000,"
                               "\"output_per_1m\":100000}]}",
                               0, NULL);
    assert_non_null(entry);
    struct provider_usage u = {.prompt_tokens = PROVIDER_MAX_TOKENS,
                               .completion_tokens = PROVIDER_MAX_TOKENS};
    double c = provider_cost(entry, "m", &u);
    assert_true(isfinite(c) && c > 0);
    /* The plugin refuses a usage record above 1e9 USD; one call stays far below. */
    assert_true(c <= 1e8);
    json_decref(entry);
    /* A price above the plugin's bound (or negative) costs nothing rather than infinity. */
    entry = json_loads("{\"models\":[{\"name\":\"m\",\"input_per_1m\":1e308,"
                       "\"output_per_1m\":1}]}",
                       0, NULL);
    assert_non_null(entry);
    assert_true(provider_cost(entry, "m", &u) == 0);
    json_decref(entry);
}

/*
 * A stream cut before its usage chunk: one token per OpenAI chunk forwarded,
 * "usage":null chunks (OpenAI with include_usage) counted as content, the
 * final usage chunk marks the usage final and is not counted, [DONE] neither,
 * and message text that spells "usage" or "error" changes nothing.
 */
static void test_openai_stream_estimate(void **state)
{
    (void)state;
    static const char *const ev[][2] = {
        {"", "{\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],"
             "\"usage\":null}"},
        {"", "{\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}"},
        {"", "{\"choices\":[{\"delta\":{\"content\":\"\\\"usage\\\":{} \\\"error\\\"\"}}]}"},
        {"", "{\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}"}};
    struct provider_stream st = stream_state("openai", ev, 4);
    assert_int_equal(st.est_completion, 4);
    assert_false(st.usage_final);
    assert_false(st.failed);
    assert_int_equal(st.usage.completion_tokens, 0);

    static const char *const full[][2] = {
        {"", "{\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}"},
        {"", "{\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":1}}"},
        {"", "[DONE]"}};
    st = stream_state("openai", full, 3);
    assert_true(st.usage_final);
    assert_true(st.done);
    assert_int_equal(st.est_completion, 1);
    assert_int_equal(st.usage.prompt_tokens, 7);

    /* An error event is neither content nor usage. */
    static const char *const err[][2] = {
        {"", "{\"error\":{\"type\":\"server_error\",\"message\":\"x\"}}"}};
    st = stream_state("openai", err, 1);
    assert_true(st.failed);
    assert_int_equal(st.est_completion, 0);
}

/*
 * Every shape of a provider's mid-stream error fails the stream, so that its
 * text (which may echo the request, even the key) is never passed through:
 * a top-level "error" object (OpenAI) or string (older TGI), and an
 * "event: error" whatever its data. "error" elsewhere does not.
 */
static void test_openai_stream_error_shapes(void **state)
{
    (void)state;
    static const char *const shapes[][2] = {
        {"message", "{\"error\":{\"message\":\"k-canary\",\"type\":\"server_error\"}}"},
        {"message", "{\"error\":\"upstream failed: k-canary\"}"},
        {"error", "{\"message\":\"k-canary\",\"type\":\"server_error\"}"},
        {"error", "not json k-canary"},
        {"error", "{\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}"},
    };
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        struct provider_stream st = stream_state("openai", &shapes[i], 1);
        assert_true(st.failed);
        assert_false(st.usage_final);
        assert_int_equal(st.est_completion, 0);
    }
    /* Not errors: "error" nested in a frame (Azure's content filter), or null. */
    static const char *const fine[][2] = {
        {"message", "{\"choices\":[{\"delta\":{\"content\":\"a\"},\"content_filter_results\":"
                    "{\"error\":{\"code\":\"content_filter_error\"}}}]}"},
        {"message", "{\"choices\":[{\"delta\":{\"content\":\"b\"}}],\"error\":null}"},
    };
    struct provider_stream st = stream_state("openai", fine, 2);
    assert_false(st.failed);
    assert_int_equal(st.est_completion, 2);
}

/* Anthropic: prompt from message_start, completion from delta text (4 bytes a token). */
static void test_anthropic_stream_estimate(void **state)
{
    (void)state;
    static const char *const ev[][2] = {
        {"message_start", "{\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":"
                          "\"c\",\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}"},
        {"content_block_delta", "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
                                "{\"type\":\"text_delta\",\"text\":\"Hello world\"}}"},
        {"content_block_delta", "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
                                "{\"type\":\"text_delta\",\"text\":\"!\"}}"},
        {"ping", "{\"type\":\"ping\"}"}};
    struct provider_stream st = stream_state("anthropic", ev, 4);
    assert_false(st.usage_final); /* message_start's usage is not the answer's */
    assert_int_equal(st.usage.prompt_tokens, 25);
    assert_int_equal(st.est_completion, 3 + 1); /* 11 bytes -> 3, 1 byte -> 1 */

    static const char *const end[][2] = {{"message_delta",
                                          "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
                                          "\"end_turn\"},\"usage\":{\"output_tokens\":9}}"}};
    st = stream_state("anthropic", end, 1);
    assert_true(st.usage_final);
    assert_int_equal(st.usage.completion_tokens, 9);
}

static long long estimate(enum provider_op op, const char *json)
{
    json_t *req = json_loads(json, 0, NULL);
    assert_non_null(req);
    long long n = provider_prompt_estimate(op, req);
    json_decref(req);
    return n;
}

/* Prompt estimate: ceil(chars / 4) + 4 per message + 3; token ids count one each. */
static void test_prompt_estimate(void **state)
{
    (void)state;
    /* 8 + 9 characters of text (parts: text only) in 2 messages: ceil(17/4) + 8 + 3 */
    assert_int_equal(estimate(PROVIDER_CHAT, "{\"messages\":[{\"role\":\"system\",\"content\":"
                                             "\"Be brief\"},{\"role\":\"user\",\"content\":"
                                             "[{\"type\":\"text\",\"text\":\"Hi there!\"},"
                                             "{\"type\":\"image_url\",\"image_url\":{}}]}]}"),
                     5 + 8 + 3);
    assert_int_equal(estimate(PROVIDER_CHAT, "{\"messages\":[]}"), 0);
    assert_int_equal(estimate(PROVIDER_CHAT, "{\"messages\":\"not an array\"}"), 0);
    assert_int_equal(estimate(PROVIDER_EMBEDDINGS, "{\"input\":\"abcdefgh\"}"), 2);
    assert_int_equal(estimate(PROVIDER_EMBEDDINGS, "{\"input\":[\"abc\",\"abcde\"]}"), 1 + 2);
    assert_int_equal(estimate(PROVIDER_EMBEDDINGS, "{\"input\":[1,2,3]}"), 3);
    assert_int_equal(estimate(PROVIDER_EMBEDDINGS, "{\"input\":[[1,2],[3]]}"), 3);
    assert_int_equal(estimate(PROVIDER_EMBEDDINGS, "{}"), 0);

    /* Completion: the answer's message text (string or parts) / 4, rounded up. */
    json_t *a = json_loads("{\"choices\":[{\"message\":{\"content\":\"w0 w1 w2\"}},"
                           "{\"message\":{\"content\":[{\"type\":\"text\",\"text\":\"ab\"}]}}]}",
                           0, NULL);
    assert_non_null(a);
    assert_int_equal(provider_completion_estimate(a), 3); /* 8 + 2 characters */
    json_decref(a);
    assert_int_equal(provider_completion_estimate(NULL), 0);
}

static int setup(void **state)
{
    (void)state;
    return secret_heap_init((size_t)64 * 1024) == ERR_OK ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openai_counts_clamped),
        cmocka_unit_test(test_openai_stream_counts_clamped),
        cmocka_unit_test(test_usage_chunk_skipped),
        cmocka_unit_test(test_anthropic_counts_clamped),
        cmocka_unit_test(test_usage_only),
        cmocka_unit_test(test_openai_passthrough_whole_document),
        cmocka_unit_test(test_openai_error_in_2xx_refused),
        cmocka_unit_test(test_anthropic_error_in_2xx_refused),
        cmocka_unit_test(test_azure_url_segments),
        cmocka_unit_test(test_azure_stream_options_by_version),
        cmocka_unit_test(test_anthropic_bad_field_named),
        cmocka_unit_test(test_cost_finite),
        cmocka_unit_test(test_openai_stream_estimate),
        cmocka_unit_test(test_openai_stream_error_shapes),
        cmocka_unit_test(test_anthropic_stream_estimate),
        cmocka_unit_test(test_prompt_estimate),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
