/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for the Vertex AI adapter (express mode): the upstream request
 * (URL, key header, body translation, what is refused and how), the answer's
 * translation (text, finish reasons, usage, filtered answers), the stream's
 * (GenerateContentResponse events to chat.completion.chunk frames), and
 * malformed replies, which must give a clean error.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/provider_vertex.h"
#include "agent/providers.h"
#include "common/secret.h"
#include "tests/unit/oom.h"

#define KEY "AIzaSyCanary-0123456789abcdefghijklmnopq"

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

/*
 * Builds one upstream request with the vertex adapter from the table, the
 * catalog entry at base (NULL: the built-in https://aiplatform.googleapis.com/v1/).
 * On ERR_OK the caller frees h with provider_http_done.
 */
static enum err build(enum provider_op op, const char *model, const char *request, bool stream,
                      struct provider_http *h)
{
    const struct provider_adapter *ad = provider_find("vertex");
    assert_non_null(ad);
    assert_false(ad->stream_passthrough);
    json_t *entry = J("{\"base_url\":\"https://aiplatform.googleapis.com/v1/\"}");
    json_t *req = J(request);
    struct secret *key = secret_from(KEY, strlen(KEY));
    assert_non_null(key);
    struct provider_call c = {.op = op,
                              .req = req,
                              .model = model,
                              .stream = stream,
                              .entry = entry,
                              .metadata = NULL,
                              .key = key,
                              .default_max_tokens = 16};
    memset(h, 0, sizeof(*h));
    enum err e = ad->build(&c, h);
    if (e != ERR_OK) {
        provider_http_done(h);
    }
    secret_free(&key);
    json_decref(req);
    json_decref(entry);
    return e;
}

static bool has_header(const struct curl_slist *l, const char *line)
{
    for (; l != NULL; l = l->next) {
        if (strcmp(l->data, line) == 0) {
            return true;
        }
    }
    return false;
}

static const char chat[] =
    "{\"model\":\"vertex/gemini-2.5-flash\",\"messages\":["
    "{\"role\":\"system\",\"content\":\"Be brief.\"},"
    "{\"role\":\"developer\",\"content\":[{\"type\":\"text\",\"text\":\"No lists.\"}]},"
    "{\"role\":\"user\",\"content\":\"Hi\"},{\"role\":\"assistant\",\"content\":\"Yo\"},"
    "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"see\"},"
    "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,AAAA\"}}]}],"
    "\"max_tokens\":50,\"max_completion_tokens\":40,\"temperature\":0.5,\"top_p\":0.9,"
    "\"stop\":\"END\",\"presence_penalty\":0.1,\"seed\":7,\"user\":\"u1\",\"logprobs\":false,"
    "\"response_format\":{\"type\":\"json_object\"},\"stream\":true,"
    "\"stream_options\":{\"include_usage\":true}}";

static void test_build_url_and_key_header(void **state)
{
    (void)state;
    struct provider_http h;
    assert_int_equal(build(PROVIDER_CHAT, "gemini-2.5-flash", chat, false, &h), ERR_OK);
    assert_string_equal(
        h.url, "https://aiplatform.googleapis.com/v1/publishers/google/models/gemini-2.5-flash:"
               "generateContent");
    assert_true(has_header(h.headers, "x-goog-api-key: " KEY));
    assert_true(has_header(h.headers, "Content-Type: application/json"));
    assert_false(has_header(h.headers, "Authorization: Bearer " KEY));
    /* The key is in no URL and no body. */
    assert_null(strstr(h.url, "AIza"));
    assert_null(strstr(h.url, "key="));
    assert_null(memmem(h.body, h.body_len, "AIza", 4));
    provider_http_done(&h);

    assert_int_equal(build(PROVIDER_CHAT, "gemini-2.0-flash-001", chat, true, &h), ERR_OK);
    assert_string_equal(
        h.url, "https://aiplatform.googleapis.com/v1/publishers/google/models/gemini-2.0-flash-001:"
               "streamGenerateContent?alt=sse");
    assert_true(has_header(h.headers, "Accept: text/event-stream"));
    provider_http_done(&h);
}

static void test_build_body(void **state)
{
    (void)state;
    struct provider_http h;
    assert_int_equal(build(PROVIDER_CHAT, "gemini-2.5-flash", chat, true, &h), ERR_OK);
    json_t *b = json_loadb(h.body, h.body_len, 0, NULL);
    assert_non_null(b);
    /* OpenAI's fields never reach Vertex: the mock refuses them, as the real API would. */
    static const char *const gone[] = {
        "model", "messages",    "max_tokens", "stream_options",  "stream", "user",
        "stop",  "temperature", "logprobs",   "response_format", NULL};
    for (const char *const *k = gone; *k != NULL; k++) {
        assert_null(json_object_get(b, *k));
    }
    const json_t *sys = json_object_get(json_object_get(b, "systemInstruction"), "parts");
    assert_int_equal(json_array_size(sys), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(sys, 0), "text")),
                        "Be brief.");
    assert_string_equal(json_string_value(json_object_get(json_array_get(sys, 1), "text")),
                        "No lists.");
    const json_t *contents = json_object_get(b, "contents");
    assert_int_equal(json_array_size(contents), 3);
    static const char *const roles[] = {"user", "model", "user"};
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(json_string_value(json_object_get(json_array_get(contents, i), "role")),
                            roles[i]);
    }
    const json_t *p1 = json_object_get(json_array_get(contents, 1), "parts");
    assert_string_equal(json_string_value(json_object_get(json_array_get(p1, 0), "text")), "Yo");
    const json_t *p2 = json_object_get(json_array_get(contents, 2), "parts");
    const json_t *inl = json_object_get(json_array_get(p2, 1), "inlineData");
    assert_string_equal(json_string_value(json_object_get(inl, "mimeType")), "image/png");
    assert_string_equal(json_string_value(json_object_get(inl, "data")), "AAAA");
    const json_t *gc = json_object_get(b, "generationConfig");
    /* max_completion_tokens wins over the older max_tokens. */
    assert_int_equal(json_integer_value(json_object_get(gc, "maxOutputTokens")), 40);
    assert_true(json_real_value(json_object_get(gc, "temperature")) == 0.5);
    assert_true(json_real_value(json_object_get(gc, "topP")) == 0.9);
    assert_true(json_real_value(json_object_get(gc, "presencePenalty")) == 0.1);
    assert_int_equal(json_integer_value(json_object_get(gc, "seed")), 7);
    assert_string_equal(json_string_value(json_array_get(json_object_get(gc, "stopSequences"), 0)),
                        "END");
    assert_string_equal(json_string_value(json_object_get(gc, "responseMimeType")),
                        "application/json");
    json_decref(b);
    provider_http_done(&h);

    /* A bare request has neither systemInstruction nor generationConfig. */
    json_t *o = J("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}");
    json_t *v = NULL;
    assert_int_equal(provider_vertex_request(o, NULL, &v), ERR_OK);
    assert_null(json_object_get(v, "systemInstruction"));
    assert_null(json_object_get(v, "generationConfig"));
    assert_int_equal(json_object_size(v), 1);
    json_decref(v);
    json_decref(o);
}

/* What the adapter does not translate is ERR_UNSUPPORTED: the proxy tries the next candidate. */
static void test_build_unsupported(void **state)
{
    (void)state;
    static const char *const reqs[] = {
        /* The legacy functions API (tools, tool messages and json_schema are translated). */
        "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"functions\":[{\"name\":\"f\"}]}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":"
        "null,\"function_call\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"function\",\"name\":"
        "\"f\",\"content\":\"1\"}]}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":2}",
        "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":"
        "{\"url\":\"https://x.example/y.png\"}}]}]}",
        "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\","
        "\"input_audio\":{}}]}]}",
        NULL};
    for (const char *const *r = reqs; *r != NULL; r++) {
        struct provider_http h;
        assert_int_equal(build(PROVIDER_CHAT, "gemini-2.5-flash", *r, false, &h), ERR_UNSUPPORTED);
    }
    /* Embeddings (:predict) are not translated. */
    struct provider_http h;
    assert_int_equal(
        build(PROVIDER_EMBEDDINGS, "text-embedding-005", "{\"input\":\"x\"}", false, &h),
        ERR_UNSUPPORTED);
}

/* A request that cannot be translated names the field, never a value from it. */
static void test_build_invalid_names_field(void **state)
{
    (void)state;
    static const struct {
        const char *model, *req, *param;
    } cases[] = {
        {"gemini-2.5-flash", "{\"messages\":{}}", "messages"},
        {"gemini-2.5-flash", "{\"messages\":[{\"content\":\"x\"}]}", "messages[0].role"},
        {"gemini-2.5-flash", "{\"messages\":[{\"role\":\"narrator\",\"content\":\"x\"}]}",
         "messages[0].role"},
        {"gemini-2.5-flash", "{\"messages\":[{\"role\":\"user\",\"content\":7}]}",
         "messages[0].content"},
        {"gemini-2.5-flash", "{\"messages\":[{\"role\":\"user\",\"content\":[]}]}",
         "messages[0].content"},
        {"gemini-2.5-flash",
         "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":1}]}]}",
         "messages[0].content[0].text"},
        {"gemini-2.5-flash",
         "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":"
         "{\"url\":\"data:image/png,AAAA\"}}]}]}",
         "messages[0].content[0].image_url.url"},
        {"gemini-2.5-flash",
         "{\"messages\":[{\"role\":\"system\",\"content\":[{\"type\":\"image_url\",\"image_url\":"
         "{\"url\":\"data:image/png;base64,AAAA\"}}]},{\"role\":\"user\",\"content\":\"x\"}]}",
         "messages[0].content[0]"},
        {"gemini-2.5-flash", "{\"messages\":[{\"role\":\"system\",\"content\":\"x\"}]}",
         "messages"},
        {"gemini-2.5-flash",
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[\"a\",3]}", "stop[1]"},
        {"../../v1/x", "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "model"},
        {"gemini?key=1", "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "model"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct provider_http h;
        const struct provider_adapter *ad = provider_find("vertex");
        json_t *entry = J("{\"base_url\":\"https://aiplatform.googleapis.com/v1\"}");
        json_t *req = J(cases[i].req);
        struct secret *key = secret_from(KEY, strlen(KEY));
        struct provider_call c = {
            .op = PROVIDER_CHAT, .req = req, .model = cases[i].model, .entry = entry, .key = key};
        memset(&h, 0, sizeof(h));
        assert_int_equal(ad->build(&c, &h), ERR_INVAL);
        assert_string_equal(h.bad.param, cases[i].param);
        assert_true(h.bad.msg[0] != '\0');
        assert_null(strstr(h.bad.msg, "AIza"));
        provider_http_done(&h);
        secret_free(&key);
        json_decref(req);
        json_decref(entry);
    }
}

/* base_url must be https (http only for a local entry), as for every adapter. */
static void test_build_base_url(void **state)
{
    (void)state;
    const struct provider_adapter *ad = provider_find("vertex");
    json_t *req = J("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}");
    struct secret *key = secret_from(KEY, strlen(KEY));
    static const struct {
        const char *entry;
        enum err want;
    } cases[] = {
        {"{\"base_url\":\"http://aiplatform.googleapis.com/v1\"}", ERR_CONFIG},
        {"{}", ERR_CONFIG},
        {"{\"base_url\":\"http://127.0.0.1:9/v1\",\"local\":true}", ERR_OK},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *entry = J(cases[i].entry);
        struct provider_call c = {
            .op = PROVIDER_CHAT, .req = req, .model = "m", .entry = entry, .key = key};
        struct provider_http h;
        memset(&h, 0, sizeof(h));
        assert_int_equal(ad->build(&c, &h), cases[i].want);
        provider_http_done(&h);
        json_decref(entry);
    }
    secret_free(&key);
    json_decref(req);
}

/* A 2xx body through the table's response function. */
static json_t *answer(const char *body, enum err want, struct provider_usage *u)
{
    const struct provider_adapter *ad = provider_find("vertex");
    json_t *out = NULL;
    memset(u, 0, sizeof(*u));
    assert_int_equal(ad->response(PROVIDER_CHAT, body, strlen(body), "gemini-2.5-flash", &out, u),
                     want);
    return out;
}

static const char *choice_str(const json_t *a, const char *field)
{
    const json_t *ch = json_array_get(json_object_get(a, "choices"), 0);
    if (strcmp(field, "finish_reason") == 0) {
        return json_string_value(json_object_get(ch, field));
    }
    return json_string_value(json_object_get(json_object_get(ch, "message"), field));
}

static void test_response_text_and_usage(void **state)
{
    (void)state;
    struct provider_usage u;
    json_t *a = answer(
        "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"thinking...\","
        "\"thought\":true},{\"text\":\"Hello\"},{\"text\":\" "
        "there\"}]},\"finishReason\":\"STOP\"}],"
        "\"usageMetadata\":{\"promptTokenCount\":12,\"candidatesTokenCount\":5,"
        "\"thoughtsTokenCount\":3,\"cachedContentTokenCount\":4,\"totalTokenCount\":20},"
        "\"modelVersion\":\"gemini-2.5-flash-001\",\"responseId\":\"abc\"}",
        ERR_OK, &u);
    assert_string_equal(json_string_value(json_object_get(a, "object")), "chat.completion");
    assert_string_equal(json_string_value(json_object_get(a, "id")), "chatcmpl-abc");
    assert_string_equal(json_string_value(json_object_get(a, "model")), "gemini-2.5-flash-001");
    assert_string_equal(choice_str(a, "role"), "assistant");
    /* The thought part is not the answer. */
    assert_string_equal(choice_str(a, "content"), "Hello there");
    assert_string_equal(choice_str(a, "finish_reason"), "stop");
    /* Thinking tokens are billed as output: counted in completion_tokens. */
    assert_true(u.seen);
    assert_int_equal(u.prompt_tokens, 12);
    assert_int_equal(u.completion_tokens, 8);
    assert_int_equal(u.cached_tokens, 4);
    const json_t *usage = json_object_get(a, "usage");
    assert_int_equal(json_integer_value(json_object_get(usage, "prompt_tokens")), 12);
    assert_int_equal(json_integer_value(json_object_get(usage, "completion_tokens")), 8);
    assert_int_equal(json_integer_value(json_object_get(usage, "total_tokens")), 20);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(usage, "prompt_tokens_details"), "cached_tokens")),
                     4);
    json_decref(a);

    /* Counts from a peer are clamped; cached never above prompt. */
    a = answer("{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"x\"}]}}],\"usageMetadata\":{"
               "\"promptTokenCount\":-5,\"candidatesTokenCount\":1e30,"
               "\"cachedContentTokenCount\":9}}",
               ERR_OK, &u);
    assert_int_equal(u.prompt_tokens, 0);
    assert_int_equal(u.completion_tokens, PROVIDER_MAX_TOKENS);
    assert_int_equal(u.cached_tokens, 0);
    /* No finishReason in a whole answer: it ended. */
    assert_string_equal(choice_str(a, "finish_reason"), "stop");
    assert_string_equal(json_string_value(json_object_get(a, "model")), "gemini-2.5-flash");
    json_decref(a);
}

static void test_response_finish_reasons(void **state)
{
    (void)state;
    static const struct {
        const char *reason, *want;
    } cases[] = {
        {"STOP", "stop"},
        {"MAX_TOKENS", "length"},
        {"SAFETY", "content_filter"},
        {"RECITATION", "content_filter"},
        {"BLOCKLIST", "content_filter"},
        {"PROHIBITED_CONTENT", "content_filter"},
        {"SPII", "content_filter"},
        {"OTHER", "stop"},
        {"FINISH_REASON_UNSPECIFIED", "stop"},
        {"SOMETHING_NEW", "stop"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char body[256];
        snprintf(body, sizeof(body),
                 "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"x\"}]},"
                 "\"finishReason\":\"%s\"}]}",
                 cases[i].reason);
        struct provider_usage u;
        json_t *a = answer(body, ERR_OK, &u);
        assert_string_equal(choice_str(a, "finish_reason"), cases[i].want);
        assert_false(u.seen); /* no usageMetadata: the proxy estimates */
        json_decref(a);
    }
}

/* Filtered answers are answers: empty content and content_filter, not an error to retry. */
static void test_response_blocked(void **state)
{
    (void)state;
    struct provider_usage u;
    /* A candidate stopped by the safety filter, with no content at all. */
    json_t *a = answer("{\"candidates\":[{\"finishReason\":\"SAFETY\",\"safetyRatings\":[]}],"
                       "\"usageMetadata\":{\"promptTokenCount\":7,\"totalTokenCount\":7}}",
                       ERR_OK, &u);
    assert_string_equal(choice_str(a, "content"), "");
    assert_string_equal(choice_str(a, "finish_reason"), "content_filter");
    assert_int_equal(u.prompt_tokens, 7);
    assert_int_equal(u.completion_tokens, 0);
    json_decref(a);
    /* The prompt itself blocked: no candidates, promptFeedback.blockReason. */
    a = answer("{\"promptFeedback\":{\"blockReason\":\"SAFETY\"},"
               "\"usageMetadata\":{\"promptTokenCount\":3}}",
               ERR_OK, &u);
    assert_int_equal(json_array_size(json_object_get(a, "choices")), 1);
    assert_string_equal(choice_str(a, "content"), "");
    assert_string_equal(choice_str(a, "finish_reason"), "content_filter");
    json_decref(a);
}

static void test_response_malformed(void **state)
{
    (void)state;
    struct provider_usage u;
    static const char *const proto[] = {"",
                                        "not json",
                                        "[1]",
                                        "{}",
                                        "{\"candidates\":[]}",
                                        "{\"candidates\":{}}",
                                        "{\"candidates\":[1]}",
                                        "{\"candidates\":[{}],\"x\":",
                                        NULL};
    for (const char *const *b = proto; *b != NULL; b++) {
        assert_null(answer(*b, ERR_PROTO, &u));
    }
    /* Google's error object in a 2xx: the provider's error, its text never read. */
    assert_null(answer("{\"error\":{\"code\":400,\"message\":\"API key not valid " KEY "\","
                       "\"status\":\"INVALID_ARGUMENT\"}}",
                       ERR_UPSTREAM, &u));
    /* Usage only (ret_json NULL). */
    const struct provider_adapter *ad = provider_find("vertex");
    const char *ok = "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"x\"}]}}],"
                     "\"usageMetadata\":{\"promptTokenCount\":2,\"candidatesTokenCount\":1}}";
    memset(&u, 0, sizeof(u));
    assert_int_equal(ad->response(PROVIDER_CHAT, ok, strlen(ok), "m", NULL, &u), ERR_OK);
    assert_int_equal(u.prompt_tokens, 2);
}

/* Feeds events to the adapter; returns the OpenAI bytes. */
static void feed(struct provider_stream *st, const char *const *events, struct buf *out)
{
    const struct provider_adapter *ad = provider_find("vertex");
    for (const char *const *ev = events; *ev != NULL; ev++) {
        assert_false(st->done);
        assert_int_equal(ad->stream_event(st, "", *ev, strlen(*ev), out), ERR_OK);
    }
}

/* The "data: " frames of out, parsed (a JSON array; [DONE] as the string "[DONE]"). */
static json_t *frames(const struct buf *out)
{
    json_t *arr = json_array();
    const char *p = out->data;
    while (p != NULL && *p != '\0') {
        assert_int_equal(strncmp(p, "data: ", 6), 0);
        const char *end = strstr(p, "\n\n");
        assert_non_null(end);
        size_t n = (size_t)(end - p - 6);
        if (n == 6 && memcmp(p + 6, "[DONE]", 6) == 0) {
            json_array_append_new(arr, json_string("[DONE]"));
        } else {
            json_t *j = json_loadb(p + 6, n, 0, NULL);
            assert_non_null(j);
            json_array_append_new(arr, j);
        }
        p = end + 2;
    }
    return arr;
}

static const json_t *delta_of(const json_t *frame)
{
    return json_object_get(json_array_get(json_object_get(frame, "choices"), 0), "delta");
}

static const char *finish_of(const json_t *frame)
{
    return json_string_value(
        json_object_get(json_array_get(json_object_get(frame, "choices"), 0), "finish_reason"));
}

static const char *const stream_events[] = {
    "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"w0\"}]}}],"
    "\"usageMetadata\":{\"trafficType\":\"ON_DEMAND\"},\"modelVersion\":\"gemini-2.5-flash\","
    "\"responseId\":\"r1\"}",
    "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\" w1\"}]}}],"
    "\"usageMetadata\":{\"trafficType\":\"ON_DEMAND\"},\"responseId\":\"r1\"}",
    "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\" w2\"},"
    "{\"text\":\"\",\"thoughtSignature\":\"AY89\"}]},\"finishReason\":\"MAX_TOKENS\"}],"
    "\"usageMetadata\":{\"promptTokenCount\":4,\"candidatesTokenCount\":3,"
    "\"totalTokenCount\":7},\"responseId\":\"r1\"}",
    NULL};

static void test_stream_in_order_with_usage(void **state)
{
    (void)state;
    struct provider_stream st;
    memset(&st, 0, sizeof(st));
    snprintf(st.model, sizeof(st.model), "%s", "gemini-2.5-flash");
    struct buf out;
    buf_init(&out, 1 << 20);
    feed(&st, stream_events, &out);
    assert_true(st.done);
    assert_false(st.failed);
    assert_true(st.usage_final);
    assert_int_equal(st.usage.prompt_tokens, 4);
    assert_int_equal(st.usage.completion_tokens, 3);
    json_t *f = frames(&out);
    /* role, w0, w1, w2, finish, usage, [DONE] */
    assert_int_equal(json_array_size(f), 7);
    assert_string_equal(json_string_value(json_object_get(delta_of(json_array_get(f, 0)), "role")),
                        "assistant");
    static const char *const words[] = {"w0", " w1", " w2"};
    for (size_t i = 0; i < 3; i++) {
        const json_t *fr = json_array_get(f, i + 1);
        assert_string_equal(json_string_value(json_object_get(fr, "object")),
                            "chat.completion.chunk");
        assert_string_equal(json_string_value(json_object_get(fr, "id")), "chatcmpl-r1");
        assert_string_equal(json_string_value(json_object_get(delta_of(fr), "content")), words[i]);
        assert_null(finish_of(fr));
    }
    assert_string_equal(finish_of(json_array_get(f, 4)), "length");
    const json_t *uf = json_array_get(f, 5);
    assert_int_equal(json_array_size(json_object_get(uf, "choices")), 0);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(uf, "usage"), "completion_tokens")), 3);
    assert_string_equal(json_string_value(json_array_get(f, 6)), "[DONE]");
    json_decref(f);
    buf_done(&out);

    /* Without include_usage the usage chunk is left out; usage is still read. */
    memset(&st, 0, sizeof(st));
    st.skip_usage_chunk = true;
    buf_init(&out, 1 << 20);
    feed(&st, stream_events, &out);
    f = frames(&out);
    assert_int_equal(json_array_size(f), 6);
    assert_string_equal(finish_of(json_array_get(f, 4)), "length");
    assert_string_equal(json_string_value(json_array_get(f, 5)), "[DONE]");
    assert_int_equal(st.usage.prompt_tokens, 4);
    json_decref(f);
    buf_done(&out);
}

static void test_stream_blocked(void **state)
{
    (void)state;
    static const char *const blocked[] = {
        "{\"promptFeedback\":{\"blockReason\":\"PROHIBITED_CONTENT\"},"
        "\"usageMetadata\":{\"promptTokenCount\":5}}",
        NULL};
    struct provider_stream st;
    memset(&st, 0, sizeof(st));
    struct buf out;
    buf_init(&out, 1 << 20);
    feed(&st, blocked, &out);
    assert_true(st.done);
    json_t *f = frames(&out);
    assert_int_equal(json_array_size(f), 4); /* role, finish, usage, [DONE] */
    assert_string_equal(finish_of(json_array_get(f, 1)), "content_filter");
    json_decref(f);
    buf_done(&out);

    /* A candidate stopped by a filter mid-stream: its content is empty when streaming. */
    static const char *const safety[] = {
        "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}]}",
        "{\"candidates\":[{\"finishReason\":\"SAFETY\"}],\"usageMetadata\":"
        "{\"promptTokenCount\":2,\"candidatesTokenCount\":1}}",
        NULL};
    memset(&st, 0, sizeof(st));
    buf_init(&out, 1 << 20);
    feed(&st, safety, &out);
    f = frames(&out);
    assert_int_equal(json_array_size(f), 5); /* role, a, finish, usage, [DONE] */
    assert_string_equal(finish_of(json_array_get(f, 2)), "content_filter");
    json_decref(f);
    buf_done(&out);
}

static void test_stream_error_and_garbage(void **state)
{
    (void)state;
    const struct provider_adapter *ad = provider_find("vertex");
    struct provider_stream st;
    memset(&st, 0, sizeof(st));
    struct buf out;
    buf_init(&out, 1 << 20);
    const char *err = "{\"error\":{\"code\":429,\"message\":\"" KEY "\",\"status\":"
                      "\"RESOURCE_EXHAUSTED\"}}";
    assert_int_equal(ad->stream_event(&st, "", err, strlen(err), &out), ERR_OK);
    assert_true(st.failed);
    assert_int_equal(out.len, 0);
    static const char *const bad[] = {"", "[DONE]", "{", "[]", "\"x\"", NULL};
    for (const char *const *b = bad; *b != NULL; b++) {
        memset(&st, 0, sizeof(st));
        assert_int_equal(ad->stream_event(&st, "", *b, strlen(*b), &out), ERR_PROTO);
        assert_false(st.done);
    }
    /* Odd shapes that parse are skipped without a crash, and without an end. */
    static const char *const odd[] = {
        "{}",
        "{\"candidates\":7}",
        "{\"candidates\":[7]}",
        "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":5},7,null]}}]}",
        "{\"candidates\":[{\"finishReason\":7}],\"usageMetadata\":[]}",
        NULL};
    memset(&st, 0, sizeof(st));
    buf_reset(&out);
    for (const char *const *b = odd; *b != NULL; b++) {
        assert_int_equal(ad->stream_event(&st, "", *b, strlen(*b), &out), ERR_OK);
    }
    assert_false(st.done);
    assert_false(st.usage_final);
    buf_done(&out);
}

/* ---- tools and schemas ------------------------------------------------------------------- */

/* J() for JSON written with ' for " (test readability). */
static json_t *JQ(const char *text)
{
    char *t = strdup(text);
    assert_non_null(t);
    for (char *c = t; *c != '\0'; c++) {
        if (*c == '\'') {
            *c = '"';
        }
    }
    json_t *j = J(t);
    free(t);
    return j;
}

/* provider_vertex_request on a JQ request; *ret set on ERR_OK, bad filled on ERR_INVAL. */
static enum err vreq(const char *q, struct provider_bad *bad, json_t **ret)
{
    json_t *o = JQ(q);
    json_t *v = NULL;
    memset(bad, 0, sizeof(*bad));
    enum err e = provider_vertex_request(o, bad, &v);
    json_decref(o);
    if (e != ERR_OK) {
        assert_null(v); /* nothing half-built comes out */
    }
    *ret = v;
    return e;
}

/* Asserts that j serialises (sorted keys) to the JQ text want. */
static void assert_json(const json_t *j, const char *want)
{
    json_t *w = JQ(want);
    if (!json_equal(j, w)) {
        char *got = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
        char *exp = json_dumps(w, JSON_SORT_KEYS | JSON_COMPACT);
        fprintf(stderr, "got  %s\nwant %s\n", got, exp);
        free(got);
        free(exp);
        fail();
    }
    json_decref(w);
}

#define USER_X "'messages':[{'role':'user','content':'x'}]"

static void test_build_tools(void **state)
{
    (void)state;
    struct provider_bad bad;
    json_t *v = NULL;
    assert_int_equal(
        vreq("{" USER_X ",'tools':[{'type':'function','function':{'name':'get_weather',"
             "'description':'Weather now','strict':true,'parameters':{'$schema':'x',"
             "'type':'object','additionalProperties':false,'required':['city','days'],"
             "'properties':{'city':{'type':'string','description':'City','examples':['Paris']},"
             "'unit':{'type':['string','null'],'enum':['C','F']},"
             "'days':{'type':'integer','minimum':1,'maximum':7,'format':'int32'},"
             "'tags':{'type':'array','items':{'type':'string'},'maxItems':3},"
             "'where':{'anyOf':[{'type':'string'},{'type':'object','properties':{"
             "'lat':{'type':'number'}},'propertyOrdering':['lat']}]}}}}},"
             "{'type':'function','function':{'name':'now','parameters':{'type':'object',"
             "'properties':{}}}},"
             "{'type':'function','function':{'name':'ping','parameters':null}}],"
             "'tool_choice':'required','parallel_tool_calls':false}",
             &bad, &v),
        ERR_OK);
    assert_json(json_object_get(v, "tools"),
                "[{'functionDeclarations':[{'name':'get_weather','description':'Weather now',"
                "'parameters':{'type':'OBJECT','additionalProperties':false,"
                "'required':['city','days'],'properties':{"
                "'city':{'type':'STRING','description':'City'},"
                "'unit':{'type':'STRING','nullable':true,'enum':['C','F']},"
                "'days':{'type':'INTEGER','minimum':1,'maximum':7,'format':'int32'},"
                "'tags':{'type':'ARRAY','items':{'type':'STRING'},'maxItems':3},"
                "'where':{'anyOf':[{'type':'STRING'},{'type':'OBJECT','properties':{"
                "'lat':{'type':'NUMBER'}},'propertyOrdering':['lat']}]}}}},"
                "{'name':'now'},{'name':'ping'}]}]");
    assert_json(json_object_get(v, "toolConfig"), "{'functionCallingConfig':{'mode':'ANY'}}");
    /* OpenAI's tool fields never reach Vertex. */
    assert_null(json_object_get(v, "tool_choice"));
    assert_null(json_object_get(v, "parallel_tool_calls"));
    json_decref(v);

    static const struct {
        const char *choice, *want;
    } choices[] = {
        {"'auto'", "{'functionCallingConfig':{'mode':'AUTO'}}"},
        {"'none'", "{'functionCallingConfig':{'mode':'NONE'}}"},
        {"'required'", "{'functionCallingConfig':{'mode':'ANY'}}"},
        {"{'type':'function','function':{'name':'g'}}",
         "{'functionCallingConfig':{'mode':'ANY','allowedFunctionNames':['g']}}"},
        {"null", NULL},
    };
    for (size_t i = 0; i < sizeof(choices) / sizeof(choices[0]); i++) {
        char q[512];
        snprintf(q, sizeof(q),
                 "{" USER_X ",'tools':[{'type':'function','function':{'name':'f'}},"
                 "{'type':'function','function':{'name':'g'}}],'tool_choice':%s}",
                 choices[i].choice);
        assert_int_equal(vreq(q, &bad, &v), ERR_OK);
        if (choices[i].want == NULL) {
            assert_null(json_object_get(v, "toolConfig"));
        } else {
            assert_json(json_object_get(v, "toolConfig"), choices[i].want);
        }
        json_decref(v);
    }
    /*
     * Parameters that take no argument are left out (Vertex refuses an OBJECT
     * without properties there); other objects without properties are sent.
     */
    assert_int_equal(
        vreq("{" USER_X ",'tools':[{'type':'function','function':{'name':'a','parameters':"
             "{'type':'object','required':[],'additionalProperties':false,'title':'t'}}},"
             "{'type':'function','function':{'name':'b','parameters':{'type':'object'}}},"
             "{'type':'function','function':{'name':'c','parameters':{'type':'object',"
             "'additionalProperties':{'type':'string'}}}},"
             "{'type':'function','function':{'name':'d','parameters':{'type':'object',"
             "'properties':{},'additionalProperties':true}}}]}",
             &bad, &v),
        ERR_OK);
    assert_json(json_object_get(v, "tools"),
                "[{'functionDeclarations':[{'name':'a'},{'name':'b'},{'name':'c','parameters':"
                "{'type':'OBJECT','additionalProperties':{'type':'STRING'}}},{'name':'d',"
                "'parameters':{'type':'OBJECT','properties':{},'additionalProperties':true}}]}]");
    json_decref(v);
    /* Without tools, auto and none mean nothing: neither tools nor toolConfig is sent. */
    assert_int_equal(vreq("{" USER_X ",'tools':[],'tool_choice':'none'}", &bad, &v), ERR_OK);
    assert_int_equal(json_object_size(v), 1);
    json_decref(v);
}

/* Tool calls and their results as functionCall and functionResponse turns. */
static void test_build_tool_turns(void **state)
{
    (void)state;
    struct provider_bad bad;
    json_t *v = NULL;
    assert_int_equal(
        vreq("{'messages':[{'role':'user','content':'weather?'},"
             "{'role':'assistant','content':null,'tool_calls':["
             "{'id':'call_a','type':'function','function':{'name':'get_weather',"
             "'arguments':'{\\'city\\':\\'Paris\\'}'}},"
             "{'id':'call_b','type':'function','function':{'name':'now','arguments':''}}]},"
             "{'role':'tool','tool_call_id':'call_b','content':'noon'},"
             "{'role':'tool','tool_call_id':'call_a','content':[{'type':'text','text':'sunny'}]},"
             "{'role':'assistant','content':'Checking.','tool_calls':["
             "{'id':'call_c','type':'function','function':{'name':'now','arguments':'{}'}}]},"
             "{'role':'tool','tool_call_id':'call_c','content':'1pm'},"
             "{'role':'user','content':'thanks'}],"
             "'tools':[{'type':'function','function':{'name':'get_weather'}},"
             "{'type':'function','function':{'name':'now'}}]}",
             &bad, &v),
        ERR_OK);
    assert_json(json_object_get(v, "contents"),
                "[{'role':'user','parts':[{'text':'weather?'}]},"
                "{'role':'model','parts':[{'functionCall':{'name':'get_weather',"
                "'args':{'city':'Paris'}}},{'functionCall':{'name':'now','args':{}}}]},"
                "{'role':'user','parts':[{'functionResponse':{'name':'now','response':"
                "{'output':'noon'}}},{'functionResponse':{'name':'get_weather','response':"
                "{'output':'sunny'}}}]},"
                "{'role':'model','parts':[{'text':'Checking.'},{'functionCall':{'name':'now',"
                "'args':{}}}]},"
                "{'role':'user','parts':[{'functionResponse':{'name':'now','response':"
                "{'output':'1pm'}}}]},"
                "{'role':'user','parts':[{'text':'thanks'}]}]");
    json_decref(v);
}

static void test_build_json_schema(void **state)
{
    (void)state;
    struct provider_bad bad;
    json_t *v = NULL;
    assert_int_equal(
        vreq("{" USER_X ",'response_format':{'type':'json_schema','json_schema':{'name':'r',"
             "'strict':true,'schema':{'type':'object','properties':{'n':{'type':'integer'},"
             "'xs':{'type':'array','items':{'type':['null','string']}}},"
             "'required':['n','xs'],'additionalProperties':false}}}}",
             &bad, &v),
        ERR_OK);
    assert_json(json_object_get(v, "generationConfig"),
                "{'responseMimeType':'application/json','responseSchema':{'type':'OBJECT',"
                "'properties':{'n':{'type':'INTEGER'},'xs':{'type':'ARRAY','items':"
                "{'type':'STRING','nullable':true}}},'required':['n','xs'],"
                "'additionalProperties':false}}");
    json_decref(v);
    /* An array at the top is fine for an answer (not for parameters). */
    assert_int_equal(vreq("{" USER_X ",'response_format':{'type':'json_schema','json_schema':{"
                          "'name':'r','schema':{'type':'array','items':{'type':'number'}}}}}",
                          &bad, &v),
                     ERR_OK);
    assert_json(json_object_get(json_object_get(v, "generationConfig"), "responseSchema"),
                "{'type':'ARRAY','items':{'type':'NUMBER'}}");
    json_decref(v);
}

/* n function tools named f0.., as a request (caller frees). */
static char *n_tools(size_t n)
{
    size_t cap = 64 + n * 64;
    char *q = malloc(cap);
    assert_non_null(q);
    size_t len = (size_t)snprintf(q, cap, "{" USER_X ",'tools':[");
    for (size_t i = 0; i < n; i++) {
        len +=
            (size_t)snprintf(q + len, cap - len, "%s{'type':'function','function':{'name':'f%zu'}}",
                             i > 0 ? "," : "", i);
    }
    snprintf(q + len, cap - len, "]}");
    return q;
}

/* A function whose parameters nest depth schemas: object in object ... in a string. */
static char *deep_params(int depth)
{
    size_t cap = 128 + (size_t)depth * 48;
    char *q = malloc(cap);
    assert_non_null(q);
    size_t len = (size_t)snprintf(q, cap,
                                  "{" USER_X ",'tools':[{'type':'function','function':{'name':"
                                  "'f','parameters':");
    for (int i = 1; i < depth; i++) {
        len += (size_t)snprintf(q + len, cap - len, "{'type':'object','properties':{'a':");
    }
    len += (size_t)snprintf(q + len, cap - len, "{'type':'string'}");
    for (int i = 1; i < depth; i++) {
        len += (size_t)snprintf(q + len, cap - len, "}}");
    }
    snprintf(q + len, cap - len, "}}]}");
    return q;
}

static void test_build_tool_limits(void **state)
{
    (void)state;
    struct provider_bad bad;
    json_t *v = NULL;
    char *q = n_tools(VERTEX_MAX_TOOLS);
    assert_int_equal(vreq(q, &bad, &v), ERR_OK);
    assert_int_equal(json_array_size(json_object_get(json_array_get(json_object_get(v, "tools"), 0),
                                                     "functionDeclarations")),
                     VERTEX_MAX_TOOLS);
    json_decref(v);
    free(q);
    q = n_tools(VERTEX_MAX_TOOLS + 1);
    assert_int_equal(vreq(q, &bad, &v), ERR_INVAL);
    assert_string_equal(bad.param, "tools");
    free(q);

    q = deep_params(VERTEX_MAX_SCHEMA_DEPTH);
    assert_int_equal(vreq(q, &bad, &v), ERR_OK);
    json_decref(v);
    free(q);
    q = deep_params(VERTEX_MAX_SCHEMA_DEPTH + 1);
    assert_int_equal(vreq(q, &bad, &v), ERR_INVAL);
    assert_int_equal(strncmp(bad.param, "tools[0].function.parameters.properties[0]", 42), 0);
    assert_non_null(strstr(bad.msg, "deep"));
    free(q);

    /* A name of VERTEX_MAX_FUNCTION_NAME bytes is taken, one more is refused. */
    char name[VERTEX_MAX_FUNCTION_NAME + 2];
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    char r[256];
    snprintf(r, sizeof(r), "{" USER_X ",'tools':[{'type':'function','function':{'name':'%.*s'}}]}",
             VERTEX_MAX_FUNCTION_NAME, name);
    assert_int_equal(vreq(r, &bad, &v), ERR_OK);
    json_decref(v);
    snprintf(r, sizeof(r), "{" USER_X ",'tools':[{'type':'function','function':{'name':'%s'}}]}",
             name);
    assert_int_equal(vreq(r, &bad, &v), ERR_INVAL);
    assert_string_equal(bad.param, "tools[0].function.name");
}

/* Tools, tool turns and schemas Vertex cannot take as asked: 400 naming the field. */
static void test_build_tools_invalid(void **state)
{
    (void)state;
#define TOOL(params) "'tools':[{'type':'function','function':{'name':'f','parameters':" params "}}]"
#define PROP(s) TOOL("{'type':'object','properties':{'x':" s "}}")
#define CALL(args)                                                                                 \
    "{'messages':[{'role':'user','content':'x'},{'role':'assistant','content':null,"               \
    "'tool_calls':[{'id':'c1','type':'function','function':{'name':'f','arguments':" args          \
    "}}]},{'role':'tool','tool_call_id':'c1','content':'r'}]}"
    static const struct {
        const char *req, *param;
    } cases[] = {
        /* tool turns */
        {CALL("'{not json'"), "messages[1].tool_calls[0].function.arguments"},
        {CALL("'[1,2]'"), "messages[1].tool_calls[0].function.arguments"},
        {CALL("{}"), "messages[1].tool_calls[0].function.arguments"},
        {"{'messages':[{'role':'user','content':'x'},{'role':'assistant','content':null,"
         "'tool_calls':[{'id':'c1','type':'function','function':{'name':'f','arguments':'{}'}}]},"
         "{'role':'tool','tool_call_id':'c2','content':'r'}]}",
         "messages[2].tool_call_id"},
        /* a result before the call it answers */
        {"{'messages':[{'role':'user','content':'x'},{'role':'tool','tool_call_id':'c1',"
         "'content':'r'},{'role':'assistant','content':null,'tool_calls':[{'id':'c1',"
         "'type':'function','function':{'name':'f','arguments':'{}'}}]}]}",
         "messages[1].tool_call_id"},
        {"{'messages':[{'role':'user','content':'x','tool_calls':[]}]}", "messages[0].tool_calls"},
        {"{'messages':[{'role':'user','content':'x'},{'role':'tool','content':'r'}]}",
         "messages[1].tool_call_id"},
        {"{'messages':[{'role':'user','content':'x'},{'role':'assistant','content':7,"
         "'tool_calls':[{'id':'c1','type':'function','function':{'name':'f','arguments':'{}'}}]}]}",
         "messages[1].content"},
        /* tools */
        {"{" USER_X ",'tools':{}}", "tools"},
        {"{" USER_X ",'tools':[{'type':'web_search'}]}", "tools[0].type"},
        {"{" USER_X ",'tools':[{'type':'function','function':{'name':'9lives'}}]}",
         "tools[0].function.name"},
        {"{" USER_X ",'tools':[{'type':'function','function':{'name':'a b'}}]}",
         "tools[0].function.name"},
        {"{" USER_X "," TOOL("{'type':'string'}") "}", "tools[0].function.parameters"},
        {"{" USER_X "," TOOL("[]") "}", "tools[0].function.parameters"},
        {"{" USER_X "," PROP("{'oneOf':[{'type':'string'}]}") "}",
         "tools[0].function.parameters.properties[0].oneOf"},
        {"{" USER_X "," PROP("{'$ref':'#/$defs/a'}") "}",
         "tools[0].function.parameters.properties[0].$ref"},
        {"{" USER_X "," PROP("{'type':'string','const':'a'}") "}",
         "tools[0].function.parameters.properties[0].const"},
        {"{" USER_X "," PROP("{'type':['string','integer']}") "}",
         "tools[0].function.parameters.properties[0].type"},
        {"{" USER_X "," PROP("{'type':'null'}") "}",
         "tools[0].function.parameters.properties[0].type"},
        {"{" USER_X "," PROP("{'type':'integer','enum':[1,2]}") "}",
         "tools[0].function.parameters.properties[0].enum[0]"},
        {"{" USER_X "," PROP("{'type':'array','items':[{'type':'string'}]}") "}",
         "tools[0].function.parameters.properties[0].items"},
        {"{" USER_X "," PROP("{'anyOf':[]}") "}",
         "tools[0].function.parameters.properties[0].anyOf"},
        {"{" USER_X "," PROP("{'anyOf':[{'type':'string'},{'not':{}}]}") "}",
         "tools[0].function.parameters.properties[0].anyOf[1].not"},
        {"{" USER_X "," PROP("7") "}", "tools[0].function.parameters.properties[0]"},
        {"{" USER_X "," TOOL("{'type':'object','properties':{'x':{'type':'string'}},"
                             "'required':[1]}") "}",
         "tools[0].function.parameters.required[0]"},
        /* tool_choice */
        {"{" USER_X "," TOOL("null") ",'tool_choice':'any'}", "tool_choice"},
        {"{" USER_X "," TOOL("null") ",'tool_choice':{'type':'function','function':{'name':'g'}}}",
         "tool_choice.function.name"},
        {"{" USER_X ",'tool_choice':'required'}", "tool_choice"},
        /* response_format */
        {"{" USER_X ",'response_format':{'type':'json_schema','json_schema':{'name':'r'}}}",
         "response_format.json_schema.schema"},
        {"{" USER_X ",'response_format':{'type':'json_schema','json_schema':{'name':'r',"
         "'schema':{'type':'object','patternProperties':{}}}}}",
         "response_format.json_schema.schema.patternProperties"},
        {"{" USER_X ",'response_format':{'type':'yaml'}}", "response_format.type"},
        /* A key that is no keyword, and property names, are never echoed: by position. */
        {"{" USER_X "," TOOL("{'type':'object','properties':{'a':{'type':'string'},"
                             "'AIzaName':{'AIzaKey':1}}}") "}",
         "tools[0].function.parameters.properties[1]"},
    };
#undef CALL
#undef PROP
#undef TOOL
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct provider_bad bad;
        json_t *v = NULL;
        enum err e = vreq(cases[i].req, &bad, &v);
        if (e != ERR_INVAL || strcmp(bad.param, cases[i].param) != 0) {
            fprintf(stderr, "case %zu: err %d param '%s' (want '%s')\n", i, (int)e, bad.param,
                    cases[i].param);
            fail();
        }
        assert_true(bad.msg[0] != '\0');
        json_decref(v);
    }
    /* Through the table: no body, no header, nothing to send. */
    struct provider_http h;
    const struct provider_adapter *ad = provider_find("vertex");
    json_t *entry = J("{\"base_url\":\"https://aiplatform.googleapis.com/v1\"}");
    json_t *req = JQ("{'messages':[{'role':'user','content':'x'},{'role':'assistant','content':"
                     "null,'tool_calls':[{'id':'c1','type':'function','function':{'name':'f',"
                     "'arguments':'{'}}]}]}");
    struct secret *key = secret_from(KEY, strlen(KEY));
    struct provider_call c = {
        .op = PROVIDER_CHAT, .req = req, .model = "gemini-2.5-flash", .entry = entry, .key = key};
    memset(&h, 0, sizeof(h));
    assert_int_equal(ad->build(&c, &h), ERR_INVAL);
    assert_string_equal(h.bad.param, "messages[1].tool_calls[0].function.arguments");
    assert_null(h.body);
    assert_null(h.headers);
    provider_http_done(&h);
    secret_free(&key);
    json_decref(req);
    json_decref(entry);
}

/* functionCall parts to OpenAI tool calls. */
static void test_response_tool_calls(void **state)
{
    (void)state;
    struct provider_usage u;
    json_t *a = answer(
        "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"Checking.\"},"
        "{\"functionCall\":{\"name\":\"get_weather\",\"args\":{\"city\":\"Paris\"}}},"
        "{\"functionCall\":{\"id\":\"vx-7\",\"name\":\"now\"}}]},\"finishReason\":\"STOP\"}],"
        "\"responseId\":\"r9\",\"usageMetadata\":{\"promptTokenCount\":3,"
        "\"candidatesTokenCount\":4}}",
        ERR_OK, &u);
    const json_t *ch = json_array_get(json_object_get(a, "choices"), 0);
    assert_json(json_object_get(ch, "message"),
                "{'role':'assistant','content':'Checking.','tool_calls':["
                "{'id':'call_r9_0','type':'function','function':{'name':'get_weather',"
                "'arguments':'{\\'city\\':\\'Paris\\'}'}},"
                "{'id':'vx-7','type':'function','function':{'name':'now','arguments':'{}'}}]}");
    assert_string_equal(choice_str(a, "finish_reason"), "tool_calls");
    json_decref(a);

    /* Only calls: content null, as OpenAI's. Cut by the token cap: length, calls kept. */
    a = answer("{\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"f\","
               "\"args\":{}}}]},\"finishReason\":\"MAX_TOKENS\"}]}",
               ERR_OK, &u);
    const json_t *msg =
        json_object_get(json_array_get(json_object_get(a, "choices"), 0), "message");
    assert_true(json_is_null(json_object_get(msg, "content")));
    assert_int_equal(json_array_size(json_object_get(msg, "tool_calls")), 1);
    assert_string_equal(choice_str(a, "finish_reason"), "length");
    json_decref(a);

    /* A call the app could not use: no answer at all, not half of one. */
    static const char *const bad[] = {
        "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"},{\"functionCall\":"
        "{\"args\":{}}}]},\"finishReason\":\"STOP\"}]}",
        "{\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"\"}}]}}]}",
        "{\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":7}]}}]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_null(answer(bad[i], ERR_PROTO, &u));
    }
}

static void test_stream_tool_calls(void **state)
{
    (void)state;
    static const char *const events[] = {
        "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"Let me.\"}]}}],"
        "\"responseId\":\"r5\"}",
        "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":["
        "{\"functionCall\":{\"name\":\"get_weather\",\"args\":{\"city\":\"Paris\"}}},"
        "{\"functionCall\":{\"name\":\"now\",\"args\":{}}}]},\"finishReason\":\"STOP\"}],"
        "\"usageMetadata\":{\"promptTokenCount\":4,\"candidatesTokenCount\":6},"
        "\"responseId\":\"r5\"}",
        NULL};
    struct provider_stream st;
    memset(&st, 0, sizeof(st));
    struct buf out;
    buf_init(&out, 1 << 20);
    feed(&st, events, &out);
    assert_true(st.done);
    json_t *f = frames(&out);
    /* role, text, call 0 opened, its arguments, call 1 opened, its arguments, finish, usage, DONE
     */
    assert_int_equal(json_array_size(f), 9);
    assert_string_equal(
        json_string_value(json_object_get(delta_of(json_array_get(f, 1)), "content")), "Let me.");
    assert_json(delta_of(json_array_get(f, 2)),
                "{'tool_calls':[{'index':0,'id':'call_r5_0','type':'function','function':"
                "{'name':'get_weather','arguments':''}}]}");
    assert_json(delta_of(json_array_get(f, 3)), "{'tool_calls':[{'index':0,'function':{'arguments':"
                                                "'{\\'city\\':\\'Paris\\'}'}}]}");
    assert_json(delta_of(json_array_get(f, 4)),
                "{'tool_calls':[{'index':1,'id':'call_r5_1','type':'function','function':"
                "{'name':'now','arguments':''}}]}");
    assert_json(delta_of(json_array_get(f, 5)),
                "{'tool_calls':[{'index':1,'function':{'arguments':'{}'}}]}");
    assert_string_equal(finish_of(json_array_get(f, 6)), "tool_calls");
    assert_string_equal(json_string_value(json_array_get(f, 8)), "[DONE]");
    json_decref(f);
    buf_done(&out);

    /* A call without a name: ERR_PROTO, and nothing of that event reaches the app. */
    const struct provider_adapter *ad = provider_find("vertex");
    static const char *const broken[] = {
        "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"t\"},{\"functionCall\":"
        "{\"name\":\"f\",\"args\":{}}},{\"functionCall\":{\"args\":{}}}]}}]}",
        "{\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":[]}]}}]}",
    };
    for (size_t i = 0; i < sizeof(broken) / sizeof(broken[0]); i++) {
        /* First event of the stream: not even the role chunk goes out. */
        memset(&st, 0, sizeof(st));
        buf_init(&out, 1 << 20);
        assert_int_equal(ad->stream_event(&st, "", broken[i], strlen(broken[i]), &out), ERR_PROTO);
        assert_int_equal(out.len, 0);
        /* After a good event: out keeps what it had, no more. */
        memset(&st, 0, sizeof(st));
        feed(&st, (const char *const[]){events[0], NULL}, &out);
        size_t had = out.len;
        assert_int_equal(ad->stream_event(&st, "", broken[i], strlen(broken[i]), &out), ERR_PROTO);
        assert_int_equal(out.len, had);
        assert_false(st.done);
        buf_done(&out);
    }
}

/*
 * The tool translations (request, answer, stream) with their n-th JSON
 * allocation failing, for each n until one runs without reaching it: each
 * returns an error (ERR_NOMEM, or the ERR_INVAL / ERR_PROTO a NULL from
 * jansson reads as) or the whole translation; nothing leaks (ASan), and a
 * failed stream event writes nothing.
 */
static void test_tools_out_of_memory(void **state)
{
    (void)state;
    json_t *req =
        JQ("{'messages':[{'role':'system','content':'s'},{'role':'user','content':'w?'},"
           "{'role':'assistant','content':'c','tool_calls':[{'id':'a','type':'function',"
           "'function':{'name':'f','arguments':'{\\'x\\':1}'}},{'id':'b','type':'function',"
           "'function':{'name':'g','arguments':''}}]},{'role':'tool','tool_call_id':'b',"
           "'content':'r1'},{'role':'tool','tool_call_id':'a','content':'r2'},"
           "{'role':'user','content':'ok'}],'tools':[{'type':'function','function':{'name':'f',"
           "'description':'d','parameters':{'type':'object','properties':{'x':{'type':"
           "['integer','null'],'enum':['1']},'y':{'anyOf':[{'type':'string'},{'type':'array',"
           "'items':{'type':'number'}}]}},'required':['x'],'additionalProperties':false}}},"
           "{'type':'function','function':{'name':'g','parameters':{'type':'object',"
           "'properties':{}}}}],'tool_choice':{'type':'function','function':{'name':'g'}},"
           "'response_format':{'type':'json_schema','json_schema':{'name':'r','schema':"
           "{'type':'object','properties':{'n':{'type':'integer'}}}}}}");
    json_t *ans = J("{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"t\"},{\"functionCall\":"
                    "{\"name\":\"f\",\"args\":{\"x\":1}}},{\"functionCall\":{\"id\":\"i\","
                    "\"name\":\"g\"}}]},\"finishReason\":\"STOP\"}],\"responseId\":\"r\","
                    "\"usageMetadata\":{\"promptTokenCount\":1,\"candidatesTokenCount\":2}}");
    static const char *const events[] = {
        "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"t\"}]}}],\"responseId\":\"r\"}",
        "{\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"f\",\"args\":"
        "{\"x\":1}}},{\"functionCall\":{\"name\":\"g\"}}]},\"finishReason\":\"STOP\"}],"
        "\"usageMetadata\":{\"promptTokenCount\":1,\"candidatesTokenCount\":2}}",
    };
    const struct provider_adapter *ad = provider_find("vertex");
    json_t *ref[2] = {NULL, NULL};
    for (long n = 0; n < 100000; n++) {
        oom_fired = false;
        oom_countdown = n;
        json_set_alloc_funcs(oom_malloc, free);
        json_t *got[2] = {NULL, NULL};
        struct provider_usage u;
        memset(&u, 0, sizeof(u));
        enum err e[2];
        e[0] = provider_vertex_request(req, NULL, &got[0]);
        e[1] = provider_vertex_answer(ans, "m", &got[1], &u);
        struct provider_stream st;
        memset(&st, 0, sizeof(st));
        struct buf out;
        buf_init(&out, 1 << 20);
        enum err se = ERR_OK;
        for (size_t i = 0; i < sizeof(events) / sizeof(events[0]) && se == ERR_OK; i++) {
            size_t before = out.len;
            se = ad->stream_event(&st, "", events[i], strlen(events[i]), &out);
            if (se != ERR_OK) {
                assert_int_equal(out.len, before);
            }
        }
        buf_done(&out);
        json_set_alloc_funcs(malloc, free);
        oom_countdown = 0;
        for (size_t i = 0; i < 2; i++) {
            if (n == 0) {
                assert_int_equal(e[i], ERR_OK);
                ref[i] = got[i];
                continue;
            }
            assert_true(e[i] == ERR_OK || e[i] == ERR_NOMEM || e[i] == ERR_INVAL ||
                        e[i] == ERR_PROTO);
            /* An ERR_OK is the whole translation, never a part of it ("created" aside). */
            if (e[i] == ERR_OK) {
                json_object_del(got[i], "created");
                json_object_del(ref[i], "created");
                assert_true(json_equal(got[i], ref[i]));
            } else {
                assert_null(got[i]);
            }
            json_decref(got[i]);
        }
        if (n == 0) {
            assert_int_equal(se, ERR_OK);
            assert_true(st.done);
        } else if (!oom_fired) {
            assert_int_equal(se, ERR_OK);
            break;
        }
    }
    for (size_t i = 0; i < 2; i++) {
        json_decref(ref[i]);
    }
    assert_false(oom_fired);
    json_decref(req);
    json_decref(ans);
}

static int setup(void **state)
{
    (void)state;
    return secret_heap_init((size_t)64 * 1024) == ERR_OK ? 0 : -1;
}

/* Google's 400 for an API key it does not know is a refused key; other 400s, and bad bodies, not.
 */
static void test_key_refused(void **state)
{
    (void)state;
    static const char invalid[] =
        "{\"error\":{\"code\":400,\"message\":\"API key not valid. Please pass a valid API "
        "key.\",\"status\":\"INVALID_ARGUMENT\",\"details\":[{\"@type\":\"type.googleapis.com/"
        "google.rpc.ErrorInfo\",\"reason\":\"API_KEY_INVALID\",\"domain\":\"googleapis.com\"}]}}";
    static const char other[] =
        "{\"error\":{\"code\":400,\"message\":\"Invalid JSON payload received.\","
        "\"status\":\"INVALID_ARGUMENT\",\"details\":[{\"reason\":\"BAD_REQUEST\"}]}}";
    const struct provider_adapter *ad = provider_find("vertex");
    assert_non_null(ad);
    assert_non_null(ad->key_refused);
    assert_true(ad->key_refused(400, invalid, strlen(invalid)));
    assert_false(ad->key_refused(400, other, strlen(other)));
    /* Another status: the status says (401/403 always refuse the key; 500 never). */
    assert_false(ad->key_refused(500, invalid, strlen(invalid)));
    /* Not JSON, cut short, empty, wrong shapes. */
    assert_false(ad->key_refused(400, "API_KEY_INVALID", 15));
    assert_false(ad->key_refused(400, invalid, strlen(invalid) / 2));
    assert_false(ad->key_refused(400, "", 0));
    assert_false(ad->key_refused(400, NULL, 0));
    static const char *const shapes[] = {
        "{\"error\":{\"details\":{\"reason\":\"API_KEY_INVALID\"}}}", /* details not a list */
        "{\"error\":{\"details\":[{\"reason\":7}]}}",                 /* reason not a string */
        "{\"details\":[{\"reason\":\"API_KEY_INVALID\"}]}",           /* not under error */
        "[\"API_KEY_INVALID\"]"};
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        assert_false(ad->key_refused(400, shapes[i], strlen(shapes[i])));
    }
    /* The other styles read the status alone. */
    assert_null(provider_find("openai")->key_refused);
    assert_null(provider_find("anthropic")->key_refused);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_url_and_key_header),
        cmocka_unit_test(test_build_body),
        cmocka_unit_test(test_build_unsupported),
        cmocka_unit_test(test_build_invalid_names_field),
        cmocka_unit_test(test_build_base_url),
        cmocka_unit_test(test_response_text_and_usage),
        cmocka_unit_test(test_response_finish_reasons),
        cmocka_unit_test(test_response_blocked),
        cmocka_unit_test(test_response_malformed),
        cmocka_unit_test(test_stream_in_order_with_usage),
        cmocka_unit_test(test_stream_blocked),
        cmocka_unit_test(test_stream_error_and_garbage),
        cmocka_unit_test(test_key_refused),
        cmocka_unit_test(test_build_tools),
        cmocka_unit_test(test_build_tool_turns),
        cmocka_unit_test(test_build_json_schema),
        cmocka_unit_test(test_build_tool_limits),
        cmocka_unit_test(test_build_tools_invalid),
        cmocka_unit_test(test_response_tool_calls),
        cmocka_unit_test(test_stream_tool_calls),
        cmocka_unit_test(test_tools_out_of_memory),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
