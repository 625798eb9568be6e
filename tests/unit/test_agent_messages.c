/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for Anthropic's Messages API passthrough (agent/messages.c): the
 * body's checks (each refusal names its field; limits at and past them),
 * the route needs and prompt estimate derived from a body, the model spliced
 * into the app's bytes (replaced, added, escaped keys, nested "model" keys
 * left alone), the anthropic-version and anthropic-beta checks, the upstream
 * request (URL, headers, the key only in x-api-key), usage from answers and
 * stream events, the error shape by status, the catalog's max_output_tokens;
 * Claude on Bedrock: the InvokeModel body (model and stream removed,
 * anthropic_version and anthropic_beta added, the rest as the app wrote
 * it), the request (URL, bearer or SigV4), the binary stream's chunks
 * re-framed as Anthropic's SSE events with their usage (Bedrock's
 * invocation metrics when Anthropic's is missing); Claude on Vertex (the
 * rawPredict body, express keys and count_tokens refused, chat never sent
 * to a Claude model); every JSON-allocating step under a failing allocator.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/messages.h"
#include "agent/provider_vertex.h"
#include "agent/route.h"
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

/* messages_validate of text: ERR_OK, or the refused field's name in param. */
static enum err check(const char *text, bool count, char *param, size_t size)
{
    json_t *j = J(text);
    struct messages_bad bad;
    memset(&bad, 0, sizeof(bad));
    enum err e = messages_validate(j, count, &bad);
    json_decref(j);
    snprintf(param, size, "%s", e == ERR_OK ? "" : bad.param);
    return e;
}

#define MSG "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"

static void test_validate(void **state)
{
    (void)state;
    char p[64];
    assert_int_equal(check("{\"max_tokens\":1," MSG "}", false, p, sizeof(p)), ERR_OK);
    assert_int_equal(check("{\"model\":\"auto\",\"max_tokens\":100000000,\"stream\":true,"
                           "\"system\":[{\"type\":\"text\",\"text\":\"s\"}],\"tools\":[],"
                           "\"unknown\":{\"x\":1}," MSG "}",
                           false, p, sizeof(p)),
                     ERR_OK);
    /* count_tokens takes no max_tokens. */
    assert_int_equal(check("{" MSG "}", true, p, sizeof(p)), ERR_OK);
    static const struct {
        const char *body;
        const char *param;
    } bad[] = {
        {"{" MSG "}", "max_tokens"},
        {"{\"max_tokens\":0," MSG "}", "max_tokens"},
        {"{\"max_tokens\":100000001," MSG "}", "max_tokens"},
        {"{\"max_tokens\":1.5," MSG "}", "max_tokens"},
        {"{\"max_tokens\":\"5\"," MSG "}", "max_tokens"},
        {"{\"max_tokens\":5,\"messages\":[]}", "messages"},
        {"{\"max_tokens\":5}", "messages"},
        {"{\"max_tokens\":5,\"messages\":{}}", "messages"},
        {"{\"max_tokens\":5,\"messages\":[{\"content\":\"hi\"}]}", "messages"},
        {"{\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":5}]}", "messages"},
        {"{\"max_tokens\":5,\"messages\":[\"hi\"]}", "messages"},
        {"{\"model\":5,\"max_tokens\":5," MSG "}", "model"},
        {"{\"stream\":\"yes\",\"max_tokens\":5," MSG "}", "stream"},
        {"{\"system\":5,\"max_tokens\":5," MSG "}", "system"},
        {"{\"tools\":{},\"max_tokens\":5," MSG "}", "tools"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(check(bad[i].body, false, p, sizeof(p)), ERR_INVAL);
        assert_string_equal(p, bad[i].param);
    }
    json_t *arr = J("[]");
    assert_int_equal(messages_validate(arr, false, NULL), ERR_INVAL);
    json_decref(arr);
}

static void test_needs_and_estimate(void **state)
{
    (void)state;
    json_t *j = J("{\"max_tokens\":5," MSG "}");
    assert_int_equal(messages_needs(j, false), ROUTE_NEED_CHAT);
    /* 2 characters: 1 token, + 4 for the message + 3. */
    assert_int_equal(messages_prompt_estimate(j), 8);
    json_decref(j);
    j = J("{\"stream\":true,\"tools\":[{\"name\":\"f\"}],\"system\":\"12345678\","
          "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"1234\"},"
          "{\"type\":\"tool_result\",\"tool_use_id\":\"t\",\"content\":[{\"type\":\"text\","
          "\"text\":\"1234\"},{\"type\":\"image\",\"source\":{\"data\":\"AAAAAAAAAAAAAAAA\"}}]}]},"
          "{\"role\":\"assistant\",\"content\":\"1234\"}]}");
    assert_int_equal(messages_needs(j, false),
                     ROUTE_NEED_CHAT | ROUTE_NEED_STREAMING | ROUTE_NEED_TOOLS | ROUTE_NEED_VISION);
    /* count_tokens never streams. */
    assert_int_equal(messages_needs(j, true),
                     ROUTE_NEED_CHAT | ROUTE_NEED_TOOLS | ROUTE_NEED_VISION);
    /* 8 + 4 + 4 + 4 = 20 characters: 5 tokens; 2 messages: 8; reply 3. Image data not counted. */
    assert_int_equal(messages_prompt_estimate(j), 16);
    json_decref(j);
    j = J("{\"tools\":[],\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\"}]}]}");
    assert_int_equal(messages_needs(j, false), ROUTE_NEED_CHAT | ROUTE_NEED_VISION);
    json_decref(j);
}

/* messages_body of text with model; asserts success; returns the bytes (free them). */
static char *spliced(const char *text, const char *model)
{
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(messages_body(text, strlen(text), model, &out, &len), ERR_OK);
    assert_int_equal(strlen(out), len);
    return out;
}

static void test_body_splice(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        const char *want;
    } cases[] = {
        {"{\"model\": \"auto\", \"max_tokens\": 5}", "{\"model\": \"m-1\", \"max_tokens\": 5}"},
        {" {\"a\":{\"model\":\"x\"},\"b\":[1,\"}\\\"\",{}], \"model\" :\"auto\" ,\"c\":1.50}\n",
         " {\"a\":{\"model\":\"x\"},\"b\":[1,\"}\\\"\",{}], \"model\" :\"m-1\" ,\"c\":1.50}\n"},
        /* An escaped key is the same key to JSON (and to jansson, which refused a duplicate). */
        {"{\"mod\\u0065l\":\"auto\",\"x\":\"caf\\u00e9\"}",
         "{\"mod\\u0065l\":\"m-1\",\"x\":\"caf\\u00e9\"}"},
        {"{\"modelx\":1,\"max_tokens\":5}", "{\"model\":\"m-1\",\"modelx\":1,\"max_tokens\":5}"},
        {"{ }", "{\"model\":\"m-1\" }"},
        {"{\"x\":true,\"model\":null}", "{\"x\":true,\"model\":\"m-1\"}"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out = spliced(cases[i].in, "m-1");
        assert_string_equal(out, cases[i].want);
        json_t *j = J(out);
        assert_string_equal(json_string_value(json_object_get(j, "model")), "m-1");
        json_decref(j);
        free(out);
    }
    /* A model name with characters JSON escapes. */
    char *out = spliced("{\"model\":\"a\"}", "q\"\\");
    assert_string_equal(out, "{\"model\":\"q\\\"\\\\\"}");
    free(out);
    char *o = NULL;
    size_t n = 0;
    assert_int_equal(messages_body("[1]", 3, "m", &o, &n), ERR_PROTO);
    assert_int_equal(messages_body("", 0, "m", &o, &n), ERR_PROTO);
    assert_null(o);
}

static void test_headers(void **state)
{
    (void)state;
    assert_true(messages_version_valid("2023-06-01"));
    assert_false(messages_version_valid("2023-6-01"));
    assert_false(messages_version_valid("2023-06-011"));
    assert_false(messages_version_valid("2023/06/01"));
    assert_false(messages_version_valid(""));
    assert_false(messages_version_valid(NULL));
    assert_true(messages_beta_valid("prompt-caching-2024-07-31"));
    assert_true(messages_beta_valid("a-1,b_2, c-3"));
    assert_false(messages_beta_valid("a,,b"));
    assert_false(messages_beta_valid(",a"));
    assert_false(messages_beta_valid("a,"));
    assert_false(messages_beta_valid("a b"));
    assert_false(messages_beta_valid("a;b"));
    assert_false(messages_beta_valid("a\r\nx-api-key: k"));
    assert_false(messages_beta_valid(""));
    char at[MESSAGES_MAX_BETA + 2];
    memset(at, 'a', MESSAGES_MAX_BETA);
    at[MESSAGES_MAX_BETA] = '\0';
    assert_true(messages_beta_valid(at));
    at[MESSAGES_MAX_BETA] = 'a';
    at[MESSAGES_MAX_BETA + 1] = '\0';
    assert_false(messages_beta_valid(at));
}

/* Does the header list hold exactly this line? */
static bool has_header(const struct curl_slist *h, const char *line)
{
    for (; h != NULL; h = h->next) {
        if (strcmp(h->data, line) == 0) {
            return true;
        }
    }
    return false;
}

static void test_build(void **state)
{
    (void)state;
    json_t *entry = J("{\"base_url\":\"https://api.anthropic.com/v1/\"}");
    struct secret *key = secret_from("k-canary-0123456789", 19);
    assert_non_null(key);
    const char *body = "{\"model\":\"auto\",\"max_tokens\":5}";
    struct messages_call m = {.body = body,
                              .len = strlen(body),
                              .model = "claude-x",
                              .stream = true,
                              .entry = entry,
                              .key = key};
    struct provider_http h;
    memset(&h, 0, sizeof(h));
    assert_int_equal(messages_build(&m, &h), ERR_OK);
    assert_string_equal(h.url, "https://api.anthropic.com/v1/messages");
    assert_string_equal(h.body, "{\"model\":\"claude-x\",\"max_tokens\":5}");
    assert_true(has_header(h.headers, "anthropic-version: 2023-06-01"));
    assert_true(has_header(h.headers, "x-api-key: k-canary-0123456789"));
    assert_true(has_header(h.headers, "Accept: text/event-stream"));
    provider_http_done(&h);
    m.count = true;
    m.version = "2024-01-01";
    m.beta = "b-1";
    memset(&h, 0, sizeof(h));
    assert_int_equal(messages_build(&m, &h), ERR_OK);
    assert_string_equal(h.url, "https://api.anthropic.com/v1/messages/count_tokens");
    assert_true(has_header(h.headers, "anthropic-version: 2024-01-01"));
    assert_true(has_header(h.headers, "anthropic-beta: b-1"));
    assert_true(has_header(h.headers, "Accept: application/json"));
    provider_http_done(&h);
    json_decref(entry);
    /* http only for a local entry. */
    entry = J("{\"base_url\":\"http://127.0.0.1:1/v1\"}");
    m.entry = entry;
    memset(&h, 0, sizeof(h));
    assert_int_not_equal(messages_build(&m, &h), ERR_OK);
    provider_http_done(&h);
    json_decref(entry);
    secret_free(&key);
}

static void test_answers_and_events(void **state)
{
    (void)state;
    const struct provider_adapter *ad = messages_adapter();
    assert_true(ad->stream_passthrough);
    struct provider_usage u = {0};
    const char *ans = "{\"type\":\"message\",\"usage\":{\"input_tokens\":3,"
                      "\"cache_read_input_tokens\":2,\"output_tokens\":7}}";
    assert_int_equal(ad->response(PROVIDER_CHAT, ans, strlen(ans), "m", NULL, &u), ERR_OK);
    assert_true(u.seen);
    assert_int_equal(u.prompt_tokens, 5);
    assert_int_equal(u.cached_tokens, 2);
    assert_int_equal(u.completion_tokens, 7);
    memset(&u, 0, sizeof(u));
    const char *count = "{\"input_tokens\":9}";
    assert_int_equal(ad->response(PROVIDER_CHAT, count, strlen(count), "m", NULL, &u), ERR_OK);
    assert_false(u.seen);
    const char *err = "{\"type\":\"error\",\"error\":{\"type\":\"x\",\"message\":\"k-canary\"}}";
    assert_int_equal(ad->response(PROVIDER_CHAT, err, strlen(err), "m", NULL, &u), ERR_UPSTREAM);
    assert_int_equal(ad->response(PROVIDER_CHAT, "[1]", 3, "m", NULL, &u), ERR_PROTO);
    assert_int_equal(ad->response(PROVIDER_CHAT, "{", 1, "m", NULL, &u), ERR_PROTO);

    struct provider_stream st;
    memset(&st, 0, sizeof(st));
    struct buf out;
    buf_init(&out, 1024);
    static const char *const evs[] = {
        "{\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":4,"
        "\"output_tokens\":1}}}",
        "{\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"12345\"}}",
        "{\"type\":\"ping\"}",
        "{\"type\":\"message_delta\",\"usage\":{\"output_tokens\":6}}",
    };
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++) {
        assert_int_equal(ad->stream_event(&st, "x", evs[i], strlen(evs[i]), &out), ERR_OK);
        assert_false(st.done);
    }
    assert_int_equal(st.est_completion, 2);
    assert_true(st.usage_final);
    assert_int_equal(st.usage.prompt_tokens, 4);
    assert_int_equal(st.usage.completion_tokens, 6);
    const char *stop = "{\"type\":\"message_stop\"}";
    assert_int_equal(ad->stream_event(&st, "message_stop", stop, strlen(stop), &out), ERR_OK);
    assert_true(st.done);
    assert_int_equal(out.len, 0); /* passthrough: the adapter forwards nothing itself */
    memset(&st, 0, sizeof(st));
    assert_int_equal(ad->stream_event(&st, "error", err, strlen(err), &out), ERR_OK);
    assert_true(st.failed);
    assert_int_equal(ad->stream_event(&st, "x", "nope", 4, &out), ERR_PROTO);
    buf_done(&out);
}

static void test_errors(void **state)
{
    (void)state;
    static const struct {
        int status;
        const char *type;
    } map[] = {{400, "invalid_request_error"},
               {401, "authentication_error"},
               {402, "invalid_request_error"},
               {403, "permission_error"},
               {404, "not_found_error"},
               {405, "invalid_request_error"},
               {413, "request_too_large"},
               {429, "rate_limit_error"},
               {500, "api_error"},
               {502, "api_error"},
               {503, "overloaded_error"},
               {504, "api_error"}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        assert_string_equal(messages_error_type(map[i].status), map[i].type);
    }
    json_t *e = messages_error_json(404, "no such model", "req_1");
    char *s = json_dumps(e, JSON_COMPACT);
    assert_string_equal(s,
                        "{\"type\":\"error\",\"error\":{\"type\":\"not_found_error\",\"message\":"
                        "\"no such model\"},\"request_id\":\"req_1\"}");
    free(s);
    json_decref(e);
    e = messages_error_json(500, "x", NULL);
    assert_true(json_is_null(json_object_get(e, "request_id")));
    json_decref(e);
    assert_true(messages_route("/v1/messages"));
    assert_true(messages_route("/v1/messages/count_tokens"));
    assert_false(messages_route("/v1/chat/completions"));
    assert_false(messages_route(NULL));
}

static void test_output_fits(void **state)
{
    (void)state;
    json_t *entry = J("{\"models\":[{\"name\":\"a\",\"max_output_tokens\":100},{\"name\":\"b\"}]}");
    json_t *at = J("{\"max_tokens\":100}");
    json_t *past = J("{\"max_tokens\":101}");
    json_t *none = J("{}");
    assert_true(messages_output_fits(at, entry, "a"));
    assert_false(messages_output_fits(past, entry, "a"));
    assert_true(messages_output_fits(past, entry, "b"));
    assert_true(messages_output_fits(past, entry, "c"));
    assert_true(messages_output_fits(none, entry, "a"));
    json_decref(entry);
    json_decref(at);
    json_decref(past);
    json_decref(none);
}

/* Every step that allocates through jansson, under a failing allocator: an error or the same. */
static void test_out_of_memory(void **state)
{
    (void)state;
    const char *text = "{\"mod\\u0065l\":\"auto\",\"max_tokens\":5,\"system\":\"s\"," MSG "}";
    const char *ev = "{\"type\":\"message_delta\",\"usage\":{\"output_tokens\":6}}";
    for (long n = 1; n < 100000; n++) {
        oom_fired = false;
        oom_countdown = n;
        json_set_alloc_funcs(oom_malloc, free);
        json_t *j = json_loads(text, 0, NULL);
        enum err ev1 = j != NULL ? messages_validate(j, false, NULL) : ERR_NOMEM;
        long long est = j != NULL ? messages_prompt_estimate(j) : 8;
        char *out = NULL;
        size_t len = 0;
        enum err e2 = messages_body(text, strlen(text), "m", &out, &len);
        json_t *err = messages_error_json(429, "slow down", "req_1");
        struct provider_usage u = {0};
        enum err e3 = messages_adapter()->response(PROVIDER_CHAT, ev, strlen(ev), "m", NULL, &u);
        json_set_alloc_funcs(malloc, free);
        oom_countdown = 0;
        assert_true(ev1 == ERR_OK || ev1 == ERR_NOMEM);
        assert_int_equal(est, 8);
        assert_true(e2 == ERR_OK || e2 == ERR_NOMEM);
        if (e2 == ERR_OK) {
            assert_string_equal(out, "{\"mod\\u0065l\":\"m\",\"max_tokens\":5,\"system\":\"s\"," MSG
                                     "}");
        }
        assert_true(e3 == ERR_OK || e3 == ERR_PROTO);
        if (err != NULL) {
            assert_string_equal(
                json_string_value(json_object_get(json_object_get(err, "error"), "type")),
                "rate_limit_error");
        }
        free(out);
        json_decref(err);
        json_decref(j);
        if (!oom_fired) {
            assert_int_equal(e2, ERR_OK);
            assert_int_equal(e3, ERR_OK);
            assert_non_null(err);
            break;
        }
    }
    assert_false(oom_fired);
}

/* ---- Claude on Bedrock ---------------------------------------------------------------------- */

static char *invoked(const char *in, const char *beta)
{
    char *out = NULL;
    size_t n = 0;
    assert_int_equal(messages_invoke_body(in, strlen(in), MESSAGES_BEDROCK_VERSION, beta, &out, &n),
                     ERR_OK);
    assert_int_equal(strlen(out), n);
    return out;
}

#define BV "\"anthropic_version\":\"bedrock-2023-05-31\""

static void test_invoke_body(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        const char *beta;
        const char *want;
    } cases[] = {
        {"{\"model\": \"auto\", \"max_tokens\": 5}", NULL, "{" BV ", \"max_tokens\": 5}"},
        {"{\"max_tokens\":5,\"stream\":true,\"model\":\"x\"}", NULL, "{" BV ",\"max_tokens\":5}"},
        /* Whitespace and formatting of the members kept; a nested "model" stays. */
        {"{\n  \"model\" : \"auto\",\n  \"a\": {\"model\":\"x\", \"stream\":1},\n  \"c\": "
         "1.50\n}\n",
         NULL, "{" BV ",\n  \"a\": {\"model\":\"x\", \"stream\":1},\n  \"c\": 1.50\n}\n"},
        /* Escaped keys are the same keys. */
        {"{\"mod\\u0065l\":\"auto\",\"x\":\"caf\\u00e9\",\"str\\u0065am\":false}", NULL,
         "{" BV ",\"x\":\"caf\\u00e9\"}"},
        {"{ }", NULL, "{" BV " }"},
        {"{\"model\":\"m\"}", NULL, "{" BV "}"},
        /* The app's own anthropic_version and anthropic_beta win. */
        {"{\"anthropic_version\":\"v\",\"model\":\"m\",\"max_tokens\":1}", "b-1",
         "{\"anthropic_beta\":[\"b-1\"],\"anthropic_version\":\"v\",\"max_tokens\":1}"},
        {"{\"anthropic_beta\":[],\"max_tokens\":1}", "b-1",
         "{" BV ",\"anthropic_beta\":[],\"max_tokens\":1}"},
        {"{\"max_tokens\":1}", "b-1,  b_2,c",
         "{" BV ",\"anthropic_beta\":[\"b-1\",\"b_2\",\"c\"],"
         "\"max_tokens\":1}"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out = invoked(cases[i].in, cases[i].beta);
        assert_string_equal(out, cases[i].want);
        json_t *j = J(out);
        assert_null(json_object_get(j, "model"));
        assert_null(json_object_get(j, "stream"));
        json_decref(j);
        free(out);
    }
    char *o = NULL;
    size_t n = 0;
    assert_int_equal(messages_invoke_body("[1]", 3, "v", NULL, &o, &n), ERR_PROTO);
    assert_int_equal(messages_invoke_body("", 0, "v", NULL, &o, &n), ERR_PROTO);
    assert_int_equal(messages_invoke_body("{\"a\" 1}", 7, "v", NULL, &o, &n), ERR_PROTO);
    assert_null(o);
}

static void test_bedrock_build(void **state)
{
    (void)state;
    json_t *entry = J("{\"base_url\":\"https://bedrock-runtime.eu-west-1.amazonaws.com\"}");
    struct secret *key = secret_from("ABSKbedrockcanary0123456789", 27);
    assert_non_null(key);
    const char *body = "{\"model\":\"auto\",\"max_tokens\":5,\"stream\":true}";
    struct messages_call m = {.body = body,
                              .len = strlen(body),
                              .model = "us.anthropic.claude-x-v1:0",
                              .stream = true,
                              .beta = "b-1",
                              .entry = entry,
                              .key = key};
    struct provider_http h;
    memset(&h, 0, sizeof(h));
    assert_int_equal(messages_bedrock_build(&m, &h), ERR_OK);
    assert_string_equal(h.url, "https://bedrock-runtime.eu-west-1.amazonaws.com/model/"
                               "us.anthropic.claude-x-v1%3A0/invoke-with-response-stream");
    assert_string_equal(h.body, "{" BV ",\"anthropic_beta\":[\"b-1\"],\"max_tokens\":5}");
    assert_true(has_header(h.headers, "Authorization: Bearer ABSKbedrockcanary0123456789"));
    assert_true(has_header(h.headers, "Accept: application/vnd.amazon.eventstream"));
    assert_false(has_header(h.headers, "anthropic-beta: b-1"));
    provider_http_done(&h);
    secret_free(&key);
    /* An IAM key signs the body as sent (SigV4), the secret never in a header. */
    key = secret_from("AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", 61);
    assert_non_null(key);
    m.key = key;
    m.stream = false;
    memset(&h, 0, sizeof(h));
    assert_int_equal(messages_bedrock_build(&m, &h), ERR_OK);
    assert_string_equal(h.url, "https://bedrock-runtime.eu-west-1.amazonaws.com/model/"
                               "us.anthropic.claude-x-v1%3A0/invoke");
    assert_true(has_header(h.headers, "Host: bedrock-runtime.eu-west-1.amazonaws.com"));
    bool signed_ok = false;
    for (struct curl_slist *l = h.headers; l != NULL; l = l->next) {
        assert_null(strstr(l->data, "wJalrXUtnFEMI"));
        signed_ok = signed_ok || strncmp(l->data,
                                         "Authorization: AWS4-HMAC-SHA256 Credential="
                                         "AKIAIOSFODNN7EXAMPLE/",
                                         63) == 0;
    }
    assert_true(signed_ok);
    provider_http_done(&h);
    /* count_tokens is not Bedrock's; a catalog placeholder is never sent. */
    m.count = true;
    memset(&h, 0, sizeof(h));
    assert_int_equal(messages_bedrock_build(&m, &h), ERR_UNSUPPORTED);
    provider_http_done(&h);
    m.count = false;
    json_decref(entry);
    entry = J("{\"base_url\":\"https://bedrock-runtime.{region}.amazonaws.com\"}");
    m.entry = entry;
    memset(&h, 0, sizeof(h));
    assert_int_equal(messages_bedrock_build(&m, &h), ERR_CONFIG);
    provider_http_done(&h);
    json_decref(entry);
    secret_free(&key);
}

/* A chunk event's payload: {"bytes": base64 of ev, "p": padding}. */
static char *chunk_of(const char *ev)
{
    size_t n = strlen(ev);
    unsigned char b64[2048];
    assert_true(n < sizeof(b64) / 4 * 3 - 4);
    EVP_EncodeBlock(b64, (const unsigned char *)ev, (int)n);
    char *out = malloc(strlen((char *)b64) + 32);
    assert_non_null(out);
    sprintf(out, "{\"bytes\":\"%s\",\"p\":\"abcd\"}", (char *)b64);
    return out;
}

static enum err feed(struct provider_stream *st, const char *event, const char *ev, struct buf *out)
{
    char *c = chunk_of(ev);
    enum err e = messages_bedrock_event(st, event, c, strlen(c), out);
    free(c);
    return e;
}

static void test_bedrock_stream(void **state)
{
    (void)state;
    const struct provider_adapter *ad = messages_bedrock_adapter();
    assert_false(ad->stream_passthrough);
    assert_int_equal(ad->framing, PROVIDER_FRAMING_EVENTSTREAM);
    struct provider_stream st;
    memset(&st, 0, sizeof(st));
    struct buf out;
    buf_init(&out, 4096);
    const char *start = "{\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":4,"
                        "\"output_tokens\":1}}}";
    const char *delta = "{\"type\":\"content_block_delta\",\"index\":0,"
                        "\"delta\":{\"type\":\"text_delta\",\"text\":\"12345\"}}";
    const char *mdelta = "{\"type\":\"message_delta\",\"usage\":{\"output_tokens\":6}}";
    const char *stop = "{\"type\":\"message_stop\",\"amazon-bedrock-invocationMetrics\":"
                       "{\"inputTokenCount\":40,\"outputTokenCount\":60}}";
    assert_int_equal(feed(&st, "chunk", start, &out), ERR_OK);
    assert_int_equal(feed(&st, "chunk", delta, &out), ERR_OK);
    assert_int_equal(feed(&st, "chunk", mdelta, &out), ERR_OK);
    assert_false(st.done);
    assert_int_equal(feed(&st, "chunk", stop, &out), ERR_OK);
    assert_true(st.done);
    /* Anthropic's usage wins over the metrics. */
    assert_int_equal(st.usage.prompt_tokens, 4);
    assert_int_equal(st.usage.completion_tokens, 6);
    assert_int_equal(st.est_completion, 2);
    char want[1024];
    snprintf(want, sizeof(want),
             "event: message_start\ndata: %s\n\nevent: content_block_delta\ndata: %s\n\n"
             "event: message_delta\ndata: %s\n\nevent: message_stop\ndata: %s\n\n",
             start, delta, mdelta, stop);
    assert_string_equal(out.data, want);
    /* Without Anthropic's usage: the invocation metrics. */
    memset(&st, 0, sizeof(st));
    buf_reset(&out);
    assert_int_equal(feed(&st, "chunk", "{\"type\":\"message_start\",\"message\":{}}", &out),
                     ERR_OK);
    assert_int_equal(feed(&st, "chunk", stop, &out), ERR_OK);
    assert_true(st.usage.seen);
    assert_true(st.usage_final);
    assert_int_equal(st.usage.prompt_tokens, 40);
    assert_int_equal(st.usage.completion_tokens, 60);
    /* An event with line breaks goes out compact, on one data line. */
    buf_reset(&out);
    assert_int_equal(feed(&st, "chunk", "{\"type\":\n\"ping\"}", &out), ERR_OK);
    assert_string_equal(out.data, "event: ping\ndata: {\"type\":\"ping\"}\n\n");
    /* An exception, an error event in a chunk: failed, nothing forwarded. */
    buf_reset(&out);
    memset(&st, 0, sizeof(st));
    assert_int_equal(messages_bedrock_event(&st, "error", "{\"message\":\"k\"}", 15, &out), ERR_OK);
    assert_true(st.failed);
    memset(&st, 0, sizeof(st));
    assert_int_equal(feed(&st, "chunk",
                          "{\"type\":\"error\",\"error\":{\"type\":\"x\",\"message\":\"k\"}}",
                          &out),
                     ERR_OK);
    assert_true(st.failed);
    assert_int_equal(out.len, 0);
    /* Another event type is not the answer's. */
    memset(&st, 0, sizeof(st));
    assert_int_equal(messages_bedrock_event(&st, "other", "x", 1, &out), ERR_OK);
    assert_int_equal(out.len, 0);
    /* Unreadable chunks. */
    static const char *const bad[] = {
        "nope",
        "{}",
        "{\"bytes\":1}",
        "{\"bytes\":\"\"}",
        "{\"bytes\":\"abc\"}",
        "{\"bytes\":\"!!!!\"}",
        "{\"bytes\":\"e30=\"}",                 /* {} : no type */
        "{\"bytes\":\"WzFd\"}",                 /* [1] */
        "{\"bytes\":\"eyJ0eXBlIjoiYVxuYiJ9\"}", /* a type that is no event name */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&st, 0, sizeof(st));
        assert_int_equal(messages_bedrock_event(&st, "chunk", bad[i], strlen(bad[i]), &out),
                         ERR_PROTO);
        assert_int_equal(out.len, 0);
    }
    /* Past out's cap: ERR_TOOBIG. */
    struct buf small;
    buf_init(&small, 8);
    memset(&st, 0, sizeof(st));
    assert_int_equal(feed(&st, "chunk", delta, &small), ERR_TOOBIG);
    buf_done(&small);
    buf_done(&out);
}

/* The Bedrock steps under a failing allocator: an error or the same result. */
static void test_bedrock_out_of_memory(void **state)
{
    (void)state;
    const char *text = "{\"mod\\u0065l\":\"auto\",\"max_tokens\":5,\"stream\":true," MSG "}";
    char *chunk = chunk_of("{\"type\":\n\"message_stop\",\"amazon-bedrock-invocationMetrics\":"
                           "{\"inputTokenCount\":4,\"outputTokenCount\":6}}");
    for (long n = 1; n < 100000; n++) {
        oom_fired = false;
        oom_countdown = n;
        json_set_alloc_funcs(oom_malloc, free);
        char *out = NULL;
        size_t len = 0;
        enum err e1 =
            messages_invoke_body(text, strlen(text), MESSAGES_BEDROCK_VERSION, "a, b", &out, &len);
        struct provider_stream st;
        memset(&st, 0, sizeof(st));
        struct buf sse;
        buf_init(&sse, 4096);
        enum err e2 = messages_bedrock_event(&st, "chunk", chunk, strlen(chunk), &sse);
        json_set_alloc_funcs(malloc, free);
        oom_countdown = 0;
        assert_true(e1 == ERR_OK || e1 == ERR_NOMEM);
        if (e1 == ERR_OK) {
            assert_string_equal(out, "{" BV
                                     ",\"anthropic_beta\":[\"a\",\"b\"],\"max_tokens\":5," MSG "}");
        }
        /* A failed allocation in the parse is an unreadable event. */
        assert_true(e2 == ERR_OK || e2 == ERR_NOMEM || e2 == ERR_PROTO);
        if (e2 == ERR_OK) {
            /*
             * The event's one data line. Its text is not compared: jansson's
             * lexer drops a character whose buffer cannot grow and goes on.
             */
            assert_memory_equal(sse.data, "event: message_stop\ndata: {", 27);
            assert_true(strchr(sse.data + 27, '\n') == sse.data + sse.len - 2);
        }
        free(out);
        buf_done(&sse);
        if (!oom_fired) {
            assert_int_equal(e1, ERR_OK);
            assert_int_equal(e2, ERR_OK);
            break;
        }
    }
    assert_false(oom_fired);
    free(chunk);
}

/* Claude on Vertex: the rawPredict body, the model names, what is refused before a request. */
static void test_vertex(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        const char *want;
    } cases[] = {
        {"{\"model\": \"auto\", \"max_tokens\": 5, \"stream\": true}",
         "{\"anthropic_version\":\"vertex-2023-10-16\", \"max_tokens\": 5, \"stream\": true}"},
        {"{\"max_tokens\":5,\"model\":\"x\"}",
         "{\"anthropic_version\":\"vertex-2023-10-16\",\"max_tokens\":5}"},
        {"{\"anthropic_version\":\"v\",\"model\":\"x\"}", "{\"anthropic_version\":\"v\"}"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out = NULL;
        size_t n = 0;
        assert_int_equal(messages_raw_predict_body(cases[i].in, strlen(cases[i].in),
                                                   MESSAGES_VERTEX_VERSION, &out, &n),
                         ERR_OK);
        assert_string_equal(out, cases[i].want);
        free(out);
    }
    assert_true(provider_vertex_claude_model("claude-sonnet-4@20250514"));
    assert_false(provider_vertex_claude_model("gemini-2.5-flash"));
    assert_false(provider_vertex_claude_model(NULL));
    /* An express-mode API key cannot call a partner model; count_tokens is not Vertex's. */
    json_t *entry = J("{\"base_url\":\"https://aiplatform.googleapis.com/v1\"}");
    struct secret *key = secret_from("AIzaSy-canary-0123456789abcdef0123456", 37);
    assert_non_null(key);
    const char *body = "{\"model\":\"auto\",\"max_tokens\":5}";
    struct messages_call m = {.body = body,
                              .len = strlen(body),
                              .model = "claude-3-5-haiku@20241022",
                              .entry = entry,
                              .key = key};
    struct provider_http h;
    memset(&h, 0, sizeof(h));
    assert_int_equal(messages_vertex_build(&m, &h), ERR_UNSUPPORTED);
    assert_null(h.headers);
    provider_http_done(&h);
    m.count = true;
    memset(&h, 0, sizeof(h));
    assert_int_equal(messages_vertex_build(&m, &h), ERR_UNSUPPORTED);
    provider_http_done(&h);
    /* Chat never sends a Claude model to generateContent. */
    struct provider_call pc = {
        .op = PROVIDER_CHAT, .model = "claude-3-5-haiku@20241022", .entry = entry, .key = key};
    memset(&h, 0, sizeof(h));
    assert_int_equal(provider_vertex_build(&pc, &h), ERR_UNSUPPORTED);
    provider_http_done(&h);
    json_decref(entry);
    secret_free(&key);
}

static int setup(void **state)
{
    (void)state;
    return secret_heap_init((size_t)64 * 1024) == ERR_OK ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_needs_and_estimate),
        cmocka_unit_test(test_body_splice),
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_build),
        cmocka_unit_test(test_answers_and_events),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_output_fits),
        cmocka_unit_test(test_out_of_memory),
        cmocka_unit_test(test_invoke_body),
        cmocka_unit_test(test_bedrock_build),
        cmocka_unit_test(test_bedrock_stream),
        cmocka_unit_test(test_bedrock_out_of_memory),
        cmocka_unit_test(test_vertex),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
