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
        "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\","
        "\"function\":{\"name\":\"f\"}}]}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"functions\":[{\"name\":\"f\"}]}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":"
        "null,\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\",\"function\":{\"name\":\"f\","
        "\"arguments\":\"{}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"c\",\"content\":\"1\"}]}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":"
        "\"json_schema\",\"json_schema\":{\"name\":\"s\",\"schema\":{}}}}",
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
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
