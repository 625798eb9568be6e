/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for the Cohere adapter (v2 Chat and Embed): the request built
 * (fields mapped, dropped or refused, URL and headers), the answer and the
 * stream translated to OpenAI's shapes, and bad provider replies refused
 * cleanly. The key never appears in what a refusal says.
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

#include "agent/providers.h"
#include "agent/sse.h"
#include "common/secret.h"
#include "tests/unit/oom.h"

#define CANARY "sk-canary-cohere-0123456789"

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

static const char *S(const json_t *j, const char *key)
{
    const char *s = json_string_value(json_object_get(j, key));
    assert_non_null(s);
    return s;
}

/* Translates an OpenAI chat request (text) to Cohere's; ERR_OK expected. */
static json_t *chat_request(const char *text, bool stream)
{
    json_t *o = J(text);
    json_t *c = NULL;
    struct provider_bad bad;
    memset(&bad, 0, sizeof(bad));
    enum err e = provider_cohere_request(PROVIDER_CHAT, o, "command-r-08-2024", stream, &bad, &c);
    if (e != ERR_OK) {
        fprintf(stderr, "refused: %s %s\n", bad.param, bad.msg);
    }
    assert_int_equal(e, ERR_OK);
    json_decref(o);
    return c;
}

static void test_request_fields(void **state)
{
    (void)state;
    json_t *c = chat_request(
        "{\"model\":\"cohere/command-r-08-2024\",\"messages\":["
        "{\"role\":\"system\",\"content\":\"Be brief.\"},"
        "{\"role\":\"developer\",\"content\":[{\"type\":\"text\",\"text\":\"No lists.\"}]},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"see\"},"
        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"https://x/y.png\",\"detail\":\"low\"}}]},"
        "{\"role\":\"assistant\",\"content\":\"Yo\"},{\"role\":\"user\",\"content\":\"Again\"}],"
        "\"temperature\":0.5,\"top_p\":0.9,\"top_k\":40,\"seed\":7,\"frequency_penalty\":0.2,"
        "\"presence_penalty\":0,\"stop\":\"END\",\"max_completion_tokens\":33,\"n\":1,"
        "\"user\":\"u1\",\"logprobs\":true,\"stream_options\":{\"include_usage\":true},"
        "\"response_format\":{\"type\":\"json_object\"},\"metadata\":{\"a\":\"b\"}}",
        true);
    assert_string_equal(S(c, "model"), "command-r-08-2024");
    assert_true(json_is_true(json_object_get(c, "stream")));
    const json_t *msgs = json_object_get(c, "messages");
    assert_int_equal(json_array_size(msgs), 5);
    /* Cohere takes system messages in place (developer is OpenAI's newer name for them). */
    assert_string_equal(S(json_array_get(msgs, 0), "role"), "system");
    assert_string_equal(S(json_array_get(msgs, 0), "content"), "Be brief.");
    assert_string_equal(S(json_array_get(msgs, 1), "role"), "system");
    assert_string_equal(S(json_array_get(msgs, 1), "content"), "No lists.");
    const json_t *parts = json_object_get(json_array_get(msgs, 2), "content");
    assert_int_equal(json_array_size(parts), 2);
    assert_string_equal(S(json_array_get(parts, 0), "text"), "see");
    const json_t *iu = json_object_get(json_array_get(parts, 1), "image_url");
    assert_string_equal(S(iu, "url"), "https://x/y.png");
    assert_null(json_object_get(iu, "detail")); /* rebuilt, not copied */
    assert_string_equal(S(json_array_get(msgs, 3), "role"), "assistant");
    assert_string_equal(S(json_array_get(msgs, 3), "content"), "Yo");
    /* Renamed: top_p to p, top_k to k, stop to stop_sequences, max_completion_tokens. */
    assert_true(json_real_value(json_object_get(c, "p")) == 0.9);
    assert_int_equal(json_integer_value(json_object_get(c, "k")), 40);
    assert_int_equal(json_integer_value(json_object_get(c, "seed")), 7);
    assert_int_equal(json_integer_value(json_object_get(c, "max_tokens")), 33);
    assert_true(json_real_value(json_object_get(c, "temperature")) == 0.5);
    assert_true(json_real_value(json_object_get(c, "frequency_penalty")) == 0.2);
    assert_non_null(json_object_get(c, "presence_penalty"));
    assert_string_equal(json_string_value(json_array_get(json_object_get(c, "stop_sequences"), 0)),
                        "END");
    assert_string_equal(S(json_object_get(c, "response_format"), "type"), "json_object");
    /* OpenAI-only fields never reach Cohere. */
    static const char *const gone[] = {"top_p",
                                       "top_k",
                                       "stop",
                                       "user",
                                       "n",
                                       "stream_options",
                                       "logprobs",
                                       "metadata",
                                       "tools",
                                       "tool_choice",
                                       "max_completion_tokens"};
    for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++) {
        if (json_object_get(c, gone[i]) != NULL) {
            fail_msg("%s reached Cohere", gone[i]);
        }
    }
    json_decref(c);

    /* Not streamed: stream false is still sent; no max_tokens when the app set none. */
    c = chat_request("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                     "\"stop\":[\"a\",\"b\"],\"response_format\":{\"type\":\"text\"}}",
                     false);
    assert_true(json_is_false(json_object_get(c, "stream")));
    assert_null(json_object_get(c, "max_tokens"));
    assert_null(json_object_get(c, "response_format"));
    assert_int_equal(json_array_size(json_object_get(c, "stop_sequences")), 2);
    json_decref(c);

    /* json_schema becomes json_object with the schema. */
    c = chat_request("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":"
                     "{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"n\",\"schema\":"
                     "{\"type\":\"object\"}}}}",
                     false);
    const json_t *rf = json_object_get(c, "response_format");
    assert_string_equal(S(rf, "type"), "json_object");
    assert_string_equal(S(json_object_get(rf, "json_schema"), "type"), "object");
    json_decref(c);
}

static void test_request_tools(void **state)
{
    (void)state;
    json_t *c = chat_request(
        "{\"messages\":[{\"role\":\"user\",\"content\":\"weather?\"},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_1\","
        "\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
        "\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}},{\"id\":\"call_2\",\"type\":"
        "\"function\",\"function\":{\"name\":\"now\",\"arguments\":\"\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"sunny\"},"
        "{\"role\":\"tool\",\"tool_call_id\":\"call_2\",\"content\":[{\"type\":\"text\","
        "\"text\":\"noon\"}]}],"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
        "\"description\":\"d\",\"strict\":true,\"parameters\":{\"type\":\"object\"}}},"
        "{\"type\":\"function\",\"function\":{\"name\":\"now\"}}],"
        "\"tool_choice\":\"required\",\"parallel_tool_calls\":false}",
        false);
    const json_t *tools = json_object_get(c, "tools");
    assert_int_equal(json_array_size(tools), 2);
    const json_t *t0 = json_array_get(tools, 0);
    assert_string_equal(S(t0, "type"), "function");
    const json_t *f0 = json_object_get(t0, "function");
    assert_string_equal(S(f0, "name"), "get_weather");
    assert_string_equal(S(f0, "description"), "d");
    assert_string_equal(S(json_object_get(f0, "parameters"), "type"), "object");
    assert_null(json_object_get(f0, "strict"));
    assert_null(
        json_object_get(json_object_get(json_array_get(tools, 1), "function"), "parameters"));
    assert_string_equal(S(c, "tool_choice"), "REQUIRED");
    assert_null(json_object_get(c, "parallel_tool_calls"));
    const json_t *msgs = json_object_get(c, "messages");
    const json_t *a = json_array_get(msgs, 1);
    assert_null(json_object_get(a, "content")); /* null content is left out */
    const json_t *calls = json_object_get(a, "tool_calls");
    assert_int_equal(json_array_size(calls), 2);
    assert_string_equal(S(json_array_get(calls, 0), "id"), "call_1");
    assert_string_equal(S(json_object_get(json_array_get(calls, 0), "function"), "arguments"),
                        "{\"city\":\"Paris\"}");
    /* A call without arguments: an empty object, as Cohere's arguments are a JSON string. */
    assert_string_equal(S(json_object_get(json_array_get(calls, 1), "function"), "arguments"),
                        "{}");
    assert_string_equal(S(json_array_get(msgs, 2), "role"), "tool");
    assert_string_equal(S(json_array_get(msgs, 2), "tool_call_id"), "call_1");
    assert_string_equal(S(json_array_get(msgs, 2), "content"), "sunny");
    assert_string_equal(S(json_array_get(msgs, 3), "content"), "noon");
    json_decref(c);

    /* none and auto; tool_choice without tools sends neither. */
    c = chat_request("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":"
                     "\"function\",\"function\":{\"name\":\"f\"}}],\"tool_choice\":\"none\"}",
                     false);
    assert_string_equal(S(c, "tool_choice"), "NONE");
    json_decref(c);
    c = chat_request("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":"
                     "\"function\",\"function\":{\"name\":\"f\"}}],\"tool_choice\":\"auto\"}",
                     false);
    assert_null(json_object_get(c, "tool_choice"));
    json_decref(c);
    c = chat_request("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[],"
                     "\"tool_choice\":\"required\"}",
                     false);
    assert_null(json_object_get(c, "tools"));
    assert_null(json_object_get(c, "tool_choice"));
    json_decref(c);
}

/* Requests Cohere cannot take: refused, the field named, no value from the request in the words. */
static void test_request_refused(void **state)
{
    (void)state;
    static const struct {
        const char *req, *param;
    } cases[] = {
        {"{\"messages\":[]}", "messages"},
        {"{\"messages\":\"" CANARY "\"}", "messages"},
        {"{\"messages\":[{\"content\":\"x\"}]}", "messages[0].role"},
        {"{\"messages\":[{\"role\":\"" CANARY "\",\"content\":\"x\"}]}", "messages[0].role"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "messages[0].content"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\"}]}]}",
         "messages[0].content[0]"},
        {"{\"messages\":[{\"role\":\"system\",\"content\":null}]}", "messages[0].content"},
        {"{\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", "messages[0].tool_call_id"},
        {"{\"messages\":[{\"role\":\"assistant\"}]}", "messages[0].content"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"tool_calls\":[]}]}",
         "messages[0].tool_calls"},
        {"{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"a\",\"function\":"
         "{\"name\":\"f\",\"arguments\":{}}}]}]}",
         "messages[0].tool_calls[0].function.arguments"},
        {"{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":"
         "{\"name\":\"f\",\"arguments\":\"{}\"}}]}]}",
         "messages[0].tool_calls[0].id"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":2}", "n"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":{\"type\":"
         "\"function\",\"function\":{\"name\":\"f\"}},\"tools\":[{\"type\":\"function\","
         "\"function\":{\"name\":\"f\"}}]}",
         "tool_choice"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":"
         "\"retrieval\"}]}",
         "tools[0].type"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":{}}", "tools"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":"
         "\"function\",\"function\":{\"name\":\"f\",\"parameters\":[]}}]}",
         "tools[0].function.parameters"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"frequency_penalty\":-1}",
         "frequency_penalty"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"presence_penalty\":1.5}",
         "presence_penalty"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_p\":\"high\"}", "top_p"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"seed\":1.5}", "seed"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[\"" CANARY "\",3]}",
         "stop[1]"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":{}}", "stop"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":"
         "\"xml\"}}",
         "response_format.type"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":"
         "\"json_schema\",\"json_schema\":{}}}",
         "response_format.json_schema.schema"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *o = J(cases[i].req);
        json_t *c = NULL;
        struct provider_bad bad;
        memset(&bad, 0, sizeof(bad));
        enum err e = provider_cohere_request(PROVIDER_CHAT, o, "m", false, &bad, &c);
        if (e != ERR_INVAL || strcmp(bad.param, cases[i].param) != 0) {
            fail_msg("case %zu: err %d param '%s', want '%s'", i, (int)e, bad.param,
                     cases[i].param);
        }
        assert_null(c);
        assert_true(bad.msg[0] != '\0');
        assert_null(strstr(bad.msg, "canary"));
        assert_null(strstr(bad.param, "canary"));
        /* Without a bad to fill, the same refusal. */
        assert_int_equal(provider_cohere_request(PROVIDER_CHAT, o, "m", false, NULL, &c),
                         ERR_INVAL);
        json_decref(o);
    }
}

static json_t *embed_request(const char *text)
{
    json_t *o = J(text);
    json_t *c = NULL;
    assert_int_equal(
        provider_cohere_request(PROVIDER_EMBEDDINGS, o, "embed-english-v3.0", false, NULL, &c),
        ERR_OK);
    json_decref(o);
    return c;
}

static void test_embed_request(void **state)
{
    (void)state;
    json_t *c = embed_request("{\"model\":\"cohere/embed-english-v3.0\",\"input\":\"alpha\","
                              "\"encoding_format\":\"float\",\"user\":\"u\"}");
    assert_string_equal(S(c, "model"), "embed-english-v3.0");
    assert_string_equal(json_string_value(json_array_get(json_object_get(c, "texts"), 0)), "alpha");
    assert_string_equal(S(c, "input_type"), "search_document");
    assert_string_equal(json_string_value(json_array_get(json_object_get(c, "embedding_types"), 0)),
                        "float");
    assert_null(json_object_get(c, "input"));
    assert_null(json_object_get(c, "user"));
    assert_null(json_object_get(c, "encoding_format"));
    assert_null(json_object_get(c, "output_dimension"));
    json_decref(c);
    c = embed_request(
        "{\"input\":[\"a\",\"b\"],\"input_type\":\"search_query\",\"dimensions\":256}");
    assert_int_equal(json_array_size(json_object_get(c, "texts")), 2);
    assert_string_equal(S(c, "input_type"), "search_query");
    assert_int_equal(json_integer_value(json_object_get(c, "output_dimension")), 256);
    json_decref(c);
    /* An input_type Cohere does not know: the default, never the app's text. */
    c = embed_request("{\"input\":[\"a\"],\"input_type\":\"" CANARY "\"}");
    assert_string_equal(S(c, "input_type"), "search_document");
    json_decref(c);

    static const struct {
        const char *req, *param;
    } refused[] = {
        {"{\"input\":[1,2,3]}", "input[0]"},
        {"{\"input\":[\"a\",[1,2]]}", "input[1]"},
        {"{\"input\":[]}", "input"},
        {"{\"input\":5}", "input"},
        {"{\"input\":\"a\",\"encoding_format\":\"base64\"}", "encoding_format"},
        {"{\"input\":\"a\",\"dimensions\":0}", "dimensions"},
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        json_t *o = J(refused[i].req);
        struct provider_bad bad;
        memset(&bad, 0, sizeof(bad));
        assert_int_equal(provider_cohere_request(PROVIDER_EMBEDDINGS, o, "m", false, &bad, &c),
                         ERR_INVAL);
        assert_string_equal(bad.param, refused[i].param);
        json_decref(o);
    }
    /* PROVIDER_COHERE_MAX_TEXTS inputs are taken, one more is refused. */
    json_t *o = J("{\"input\":[]}");
    json_t *in = json_object_get(o, "input");
    for (int i = 0; i < PROVIDER_COHERE_MAX_TEXTS; i++) {
        json_array_append_new(in, json_string("w"));
    }
    assert_int_equal(provider_cohere_request(PROVIDER_EMBEDDINGS, o, "m", false, NULL, &c), ERR_OK);
    json_decref(c);
    json_array_append_new(in, json_string("w"));
    struct provider_bad bad;
    memset(&bad, 0, sizeof(bad));
    assert_int_equal(provider_cohere_request(PROVIDER_EMBEDDINGS, o, "m", false, &bad, &c),
                     ERR_INVAL);
    assert_string_equal(bad.param, "input");
    json_decref(o);
}

/* The whole build: URL under base_url, headers with the key as Bearer, the body. */
static enum err build(enum provider_op op, const char *base, const char *request, bool stream,
                      struct provider_http *h)
{
    const struct provider_adapter *ad = provider_find("cohere");
    assert_non_null(ad);
    json_t *entry = json_pack("{s:s}", "base_url", base);
    json_t *req = J(request);
    struct secret *key = secret_from(CANARY, strlen(CANARY));
    assert_non_null(key);
    struct provider_call c = {.op = op,
                              .req = req,
                              .model = "command-r-08-2024",
                              .stream = stream,
                              .entry = entry,
                              .metadata = NULL,
                              .key = key,
                              .default_max_tokens = 16};
    memset(h, 0, sizeof(*h));
    enum err e = ad->build(&c, h);
    secret_free(&key);
    json_decref(req);
    json_decref(entry);
    return e;
}

static bool header_is(const struct curl_slist *l, const char *want)
{
    for (; l != NULL; l = l->next) {
        if (strcmp(l->data, want) == 0) {
            return true;
        }
    }
    return false;
}

static void test_build(void **state)
{
    (void)state;
    assert_false(provider_find("cohere")->stream_passthrough);
    struct provider_http h;
    assert_int_equal(build(PROVIDER_CHAT, "https://api.cohere.com/v2/",
                           "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", true, &h),
                     ERR_OK);
    assert_string_equal(h.url, "https://api.cohere.com/v2/chat");
    assert_false(h.allow_http);
    assert_true(header_is(h.headers, "Authorization: Bearer " CANARY));
    assert_true(header_is(h.headers, "Content-Type: application/json"));
    assert_true(header_is(h.headers, "Accept: text/event-stream"));
    int creds = 0;
    for (const struct curl_slist *l = h.headers; l != NULL; l = l->next) {
        creds += strstr(l->data, "canary") != NULL;
    }
    assert_int_equal(creds, 1);
    assert_null(memmem(h.body, h.body_len, "canary", 6)); /* the key is in the header only */
    json_t *body = json_loadb(h.body, h.body_len, 0, NULL);
    assert_string_equal(S(body, "model"), "command-r-08-2024");
    json_decref(body);
    provider_http_done(&h);

    assert_int_equal(
        build(PROVIDER_EMBEDDINGS, "https://api.cohere.com/v2", "{\"input\":[\"a\"]}", false, &h),
        ERR_OK);
    assert_string_equal(h.url, "https://api.cohere.com/v2/embed");
    assert_true(header_is(h.headers, "Accept: application/json"));
    provider_http_done(&h);

    /* Refused: the field named in h.bad, neither it nor the reason holding the key. */
    assert_int_equal(build(PROVIDER_CHAT, "https://api.cohere.com/v2",
                           "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":3}", false,
                           &h),
                     ERR_INVAL);
    assert_string_equal(h.bad.param, "n");
    assert_null(strstr(h.bad.msg, "canary"));
    provider_http_done(&h);
    /* Plain http to a provider that is not local: refused before anything is built. */
    assert_int_equal(build(PROVIDER_CHAT, "http://api.cohere.com/v2",
                           "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", false, &h),
                     ERR_CONFIG);
    provider_http_done(&h);
}

/* Translates a Cohere answer (text); its result, *ret and the usage. */
static enum err answer(enum provider_op op, const char *text, json_t **ret,
                       struct provider_usage *u)
{
    const struct provider_adapter *ad = provider_find("cohere");
    memset(u, 0, sizeof(*u));
    *ret = NULL;
    return ad->response(op, text, strlen(text), "command-r-08-2024", ret, u);
}

static void test_response_text(void **state)
{
    (void)state;
    json_t *o;
    struct provider_usage u;
    assert_int_equal(
        answer(
            PROVIDER_CHAT,
            "{\"id\":\"c-1\",\"finish_reason\":\"COMPLETE\",\"message\":{\"role\":\"assistant\","
            "\"content\":[{\"type\":\"thinking\",\"thinking\":\"hmm\"},{\"type\":\"text\","
            "\"text\":\"Hel\"},{\"type\":\"text\",\"text\":\"lo\"}]},\"usage\":{\"billed_units\":"
            "{\"input_tokens\":5,\"output_tokens\":2},\"tokens\":{\"input_tokens\":70,"
            "\"output_tokens\":3},\"cached_tokens\":4}}",
            &o, &u),
        ERR_OK);
    assert_string_equal(S(o, "id"), "c-1");
    assert_string_equal(S(o, "object"), "chat.completion");
    assert_string_equal(S(o, "model"), "command-r-08-2024");
    const json_t *ch = json_array_get(json_object_get(o, "choices"), 0);
    assert_string_equal(S(ch, "finish_reason"), "stop");
    assert_string_equal(S(json_object_get(ch, "message"), "content"), "Hello");
    assert_string_equal(S(json_object_get(ch, "message"), "role"), "assistant");
    /* billed_units is the billed figure; tokens counts Cohere's own prompt template too. */
    assert_true(u.seen);
    assert_int_equal(u.prompt_tokens, 5);
    assert_int_equal(u.completion_tokens, 2);
    assert_int_equal(u.cached_tokens, 4);
    const json_t *usage = json_object_get(o, "usage");
    assert_int_equal(json_integer_value(json_object_get(usage, "prompt_tokens")), 5);
    assert_int_equal(json_integer_value(json_object_get(usage, "completion_tokens")), 2);
    assert_int_equal(json_integer_value(json_object_get(usage, "total_tokens")), 7);
    json_decref(o);

    /* Without billed_units, tokens; absurd counts clamped. */
    assert_int_equal(answer(PROVIDER_CHAT,
                            "{\"id\":\"c\",\"finish_reason\":\"COMPLETE\",\"message\":{\"content\":"
                            "[]},\"usage\":{\"billed_units\":{\"output_tokens\":-3},\"tokens\":"
                            "{\"input_tokens\":1e300,\"output_tokens\":9}}}",
                            &o, &u),
                     ERR_OK);
    assert_int_equal(u.prompt_tokens, PROVIDER_MAX_TOKENS);
    assert_int_equal(u.completion_tokens, 0);
    ch = json_array_get(json_object_get(o, "choices"), 0);
    assert_string_equal(S(json_object_get(ch, "message"), "content"), "");
    json_decref(o);

    static const struct {
        const char *from, *to;
    } finish[] = {{"COMPLETE", "stop"},        {"STOP_SEQUENCE", "stop"}, {"MAX_TOKENS", "length"},
                  {"TOOL_CALL", "tool_calls"}, {"TIMEOUT", "length"},     {"NEW_ONE", "stop"}};
    for (size_t i = 0; i < sizeof(finish) / sizeof(finish[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text),
                 "{\"id\":\"c\",\"finish_reason\":\"%s\",\"message\":{\"content\":[{\"type\":"
                 "\"text\",\"text\":\"x\"}]}}",
                 finish[i].from);
        assert_int_equal(answer(PROVIDER_CHAT, text, &o, &u), ERR_OK);
        ch = json_array_get(json_object_get(o, "choices"), 0);
        assert_string_equal(S(ch, "finish_reason"), finish[i].to);
        json_decref(o);
    }
    /* Usage only (ret NULL). */
    const char *only = "{\"finish_reason\":\"COMPLETE\",\"message\":{},\"usage\":{\"tokens\":"
                       "{\"input_tokens\":3,\"output_tokens\":4}}}";
    memset(&u, 0, sizeof(u));
    assert_int_equal(
        provider_find("cohere")->response(PROVIDER_CHAT, only, strlen(only), "m", NULL, &u),
        ERR_OK);
    assert_int_equal(u.prompt_tokens + u.completion_tokens, 7);
}

static void test_response_tool_calls(void **state)
{
    (void)state;
    json_t *o;
    struct provider_usage u;
    assert_int_equal(
        answer(PROVIDER_CHAT,
               "{\"id\":\"c\",\"finish_reason\":\"TOOL_CALL\",\"message\":{\"role\":\"assistant\","
               "\"tool_plan\":\"I will look it up.\",\"tool_calls\":[{\"id\":\"get_weather_1\","
               "\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":"
               "\"{\\\"city\\\":\\\"Paris\\\"}\"}},{\"id\":\"now_2\",\"type\":\"function\","
               "\"function\":{\"name\":\"now\"}}]},\"usage\":{\"billed_units\":{\"input_tokens\":"
               "9,\"output_tokens\":12}}}",
               &o, &u),
        ERR_OK);
    const json_t *ch = json_array_get(json_object_get(o, "choices"), 0);
    assert_string_equal(S(ch, "finish_reason"), "tool_calls");
    const json_t *msg = json_object_get(ch, "message");
    assert_true(json_is_null(json_object_get(msg, "content"))); /* tool_plan is not the answer */
    const json_t *calls = json_object_get(msg, "tool_calls");
    assert_int_equal(json_array_size(calls), 2);
    assert_string_equal(S(json_array_get(calls, 0), "id"), "get_weather_1");
    assert_string_equal(S(json_array_get(calls, 0), "type"), "function");
    const json_t *fn = json_object_get(json_array_get(calls, 0), "function");
    assert_string_equal(S(fn, "name"), "get_weather");
    assert_string_equal(S(fn, "arguments"), "{\"city\":\"Paris\"}");
    assert_string_equal(S(json_object_get(json_array_get(calls, 1), "function"), "arguments"),
                        "{}");
    assert_int_equal(u.completion_tokens, 12);
    json_decref(o);
}

/* Replies that are not a Cohere answer: a clean error, never a crash or a half answer. */
static void test_response_bad(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        enum err want;
    } cases[] = {
        {"", ERR_PROTO},
        {"{not json", ERR_PROTO},
        {"[1]", ERR_PROTO},
        {"\"text\"", ERR_PROTO},
        {"{}", ERR_PROTO},
        {"{\"message\":[]}", ERR_PROTO},
        {"{\"message\":{\"content\":\"a string\"}}", ERR_PROTO},
        {"{\"message\":{\"content\":[],\"tool_calls\":{}}}", ERR_PROTO},
        {"{\"message\":{\"tool_calls\":[{\"function\":{\"name\":\"f\"}}]}}", ERR_PROTO},
        {"{\"message\":{\"tool_calls\":[{\"id\":\"a\",\"function\":{}}]}}", ERR_PROTO},
        {"{\"message\":{\"tool_calls\":[{\"id\":\"a\",\"function\":{\"name\":\"f\","
         "\"arguments\":{}}}]}}",
         ERR_PROTO},
        {"{\"message\":{\"tool_calls\":[7]}}", ERR_PROTO},
        /* Cohere's error body in a 2xx: the provider's error, its text not read. */
        {"{\"message\":\"invalid api token " CANARY "\"}", ERR_UPSTREAM},
        {"{\"error\":{\"message\":\"x\"}}", ERR_UPSTREAM},
        {"{\"id\":\"c\",\"finish_reason\":\"ERROR\",\"message\":{\"content\":[]}}", ERR_UPSTREAM},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *o = NULL;
        struct provider_usage u;
        enum err e = answer(PROVIDER_CHAT, cases[i].body, &o, &u);
        if (e != cases[i].want) {
            fail_msg("case %zu: err %d, want %d", i, (int)e, (int)cases[i].want);
        }
        assert_null(o);
    }
    /* Wrong types inside an otherwise good answer are skipped, not trusted. */
    json_t *o = NULL;
    struct provider_usage u;
    assert_int_equal(answer(PROVIDER_CHAT,
                            "{\"id\":5,\"finish_reason\":7,\"message\":{\"content\":[1,{\"type\":"
                            "\"text\",\"text\":2},{\"type\":\"text\",\"text\":\"ok\"}]},"
                            "\"usage\":{\"billed_units\":\"lots\",\"tokens\":[]}}",
                            &o, &u),
                     ERR_OK);
    const json_t *ch = json_array_get(json_object_get(o, "choices"), 0);
    assert_string_equal(S(json_object_get(ch, "message"), "content"), "ok");
    assert_string_equal(S(ch, "finish_reason"), "stop");
    assert_int_equal(u.prompt_tokens + u.completion_tokens, 0);
    json_decref(o);
}

static void test_embed_response(void **state)
{
    (void)state;
    json_t *o;
    struct provider_usage u;
    assert_int_equal(
        answer(PROVIDER_EMBEDDINGS,
               "{\"id\":\"e\",\"embeddings\":{\"float\":[[0.1,0.2],[0.3,0.4]]},\"texts\":[\"a\","
               "\"b\"],\"meta\":{\"api_version\":{\"version\":\"2\"},\"billed_units\":"
               "{\"input_tokens\":3}},\"response_type\":\"embeddings_by_type\"}",
               &o, &u),
        ERR_OK);
    assert_string_equal(S(o, "object"), "list");
    assert_string_equal(S(o, "model"), "command-r-08-2024");
    const json_t *data = json_object_get(o, "data");
    assert_int_equal(json_array_size(data), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(data, 1), "index")), 1);
    assert_string_equal(S(json_array_get(data, 1), "object"), "embedding");
    assert_true(json_real_value(json_array_get(
                    json_object_get(json_array_get(data, 1), "embedding"), 0)) == 0.3);
    assert_int_equal(u.prompt_tokens, 3);
    assert_int_equal(u.completion_tokens, 0);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(o, "usage"), "prompt_tokens")), 3);
    json_decref(o);

    static const char *const bad[] = {
        "{}",
        "{\"embeddings\":{}}",
        "{\"embeddings\":{\"float\":{}}}",
        "{\"embeddings\":{\"float\":[1]}}",
        "{\"embeddings\":[[0.1]]}",
        "{\"message\":\"no such model\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        o = NULL;
        assert_int_not_equal(answer(PROVIDER_EMBEDDINGS, bad[i], &o, &u), ERR_OK);
        assert_null(o);
    }
}

/* ---- Streams ---- */

struct replay {
    json_t *chunks;
    bool done;
};

static int replay_cb(void *arg, const char *event, const char *data, size_t len)
{
    (void)event;
    struct replay *r = arg;
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        r->done = true;
        return 0;
    }
    assert_false(r->done); /* nothing after [DONE] */
    json_t *j = json_loadb(data, len, 0, NULL);
    assert_non_null(j);
    json_array_append_new(r->chunks, j);
    return 0;
}

/* Feeds events[n] (name, data) through the adapter into st; replays the OpenAI SSE it wrote. */
static struct replay run_stream(const char *const (*events)[2], size_t n,
                                struct provider_stream *st)
{
    const struct provider_adapter *ad = provider_find("cohere");
    struct buf out;
    buf_init(&out, 1 << 20);
    for (size_t i = 0; i < n; i++) {
        assert_false(st->done);
        assert_int_equal(
            ad->stream_event(st, events[i][0], events[i][1], strlen(events[i][1]), &out), ERR_OK);
    }
    struct replay r = {json_array(), false};
    struct sse p;
    sse_init(&p, 1 << 20, replay_cb, &r);
    assert_int_equal(sse_feed(&p, out.data != NULL ? out.data : "", out.len), ERR_OK);
    assert_true(sse_idle(&p));
    sse_done(&p);
    buf_done(&out);
    return r;
}

static const json_t *delta_of(const json_t *chunks, size_t i)
{
    const json_t *ch = json_array_get(json_object_get(json_array_get(chunks, i), "choices"), 0);
    assert_non_null(ch);
    return json_object_get(ch, "delta");
}

static const char *finish_of(const json_t *chunks, size_t i)
{
    const json_t *ch = json_array_get(json_object_get(json_array_get(chunks, i), "choices"), 0);
    return json_string_value(json_object_get(ch, "finish_reason"));
}

#define MSG_START                                                                                  \
    {                                                                                              \
        "message-start", "{\"id\":\"c-9\",\"type\":\"message-start\",\"delta\":{\"message\":"      \
                         "{\"role\":\"assistant\",\"content\":[],\"tool_plan\":\"\","              \
                         "\"tool_calls\":[],\"citations\":[]}}}"                                   \
    }

static void test_stream_text(void **state)
{
    (void)state;
    static const char *const events[][2] = {
        MSG_START,
        {"content-start", "{\"type\":\"content-start\",\"index\":0,\"delta\":{\"message\":"
                          "{\"content\":{\"type\":\"text\",\"text\":\"\"}}}}"},
        {"content-delta", "{\"type\":\"content-delta\",\"index\":0,\"delta\":{\"message\":"
                          "{\"content\":{\"text\":\"Hel\"}}}}"},
        {"content-delta", "{\"type\":\"content-delta\",\"index\":0,\"delta\":{\"message\":"
                          "{\"content\":{\"thinking\":\"not this\"}}}}"},
        {"content-delta", "{\"type\":\"content-delta\",\"index\":0,\"delta\":{\"message\":"
                          "{\"content\":{\"text\":\"lo\"}}}}"},
        {"content-end", "{\"type\":\"content-end\",\"index\":0}"},
        {"citation-start", "{\"type\":\"citation-start\",\"index\":0,\"delta\":{}}"},
        {"message-end", "{\"type\":\"message-end\",\"delta\":{\"finish_reason\":\"MAX_TOKENS\","
                        "\"usage\":{\"billed_units\":{\"input_tokens\":4,\"output_tokens\":2},"
                        "\"tokens\":{\"input_tokens\":60,\"output_tokens\":3}}}}"},
    };
    struct provider_stream st;
    memset(&st, 0, sizeof(st));
    snprintf(st.model, sizeof(st.model), "command-r-08-2024");
    struct replay r = run_stream(events, sizeof(events) / sizeof(events[0]), &st);
    assert_true(st.done);
    assert_false(st.failed);
    assert_true(r.done);
    /* role, "Hel", "lo", finish, usage: in that order. */
    assert_int_equal(json_array_size(r.chunks), 5);
    for (size_t i = 0; i < 5; i++) {
        const json_t *c = json_array_get(r.chunks, i);
        assert_string_equal(S(c, "id"), "c-9");
        assert_string_equal(S(c, "object"), "chat.completion.chunk");
        assert_string_equal(S(c, "model"), "command-r-08-2024");
    }
    assert_string_equal(S(delta_of(r.chunks, 0), "role"), "assistant");
    assert_string_equal(S(delta_of(r.chunks, 1), "content"), "Hel");
    assert_string_equal(S(delta_of(r.chunks, 2), "content"), "lo");
    assert_null(finish_of(r.chunks, 2));
    assert_string_equal(finish_of(r.chunks, 3), "length");
    const json_t *last = json_array_get(r.chunks, 4);
    assert_int_equal(json_array_size(json_object_get(last, "choices")), 0);
    const json_t *usage = json_object_get(last, "usage");
    assert_int_equal(json_integer_value(json_object_get(usage, "prompt_tokens")), 4);
    assert_int_equal(json_integer_value(json_object_get(usage, "completion_tokens")), 2);
    assert_true(st.usage_final);
    assert_int_equal(st.usage.prompt_tokens, 4);
    assert_int_equal(st.usage.completion_tokens, 2);
    assert_int_equal(st.est_completion, 2); /* "Hel" and "lo": one token each by bytes / 4 */
    json_decref(r.chunks);

    /* The app did not ask for include_usage: no chunk of empty choices; usage still read. */
    memset(&st, 0, sizeof(st));
    st.skip_usage_chunk = true;
    r = run_stream(events, sizeof(events) / sizeof(events[0]), &st);
    assert_int_equal(json_array_size(r.chunks), 4);
    assert_true(r.done);
    assert_true(st.usage_final);
    assert_int_equal(st.usage.prompt_tokens, 4);
    json_decref(r.chunks);
}

static void test_stream_tool_calls(void **state)
{
    (void)state;
    static const char *const events[][2] = {
        MSG_START,
        {"tool-plan-delta", "{\"type\":\"tool-plan-delta\",\"delta\":{\"message\":"
                            "{\"tool_plan\":\"I will check the weather.\"}}}"},
        {"tool-call-start", "{\"type\":\"tool-call-start\",\"index\":0,\"delta\":{\"message\":"
                            "{\"tool_calls\":{\"id\":\"get_weather_a\",\"type\":\"function\","
                            "\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}}}}"},
        {"tool-call-delta", "{\"type\":\"tool-call-delta\",\"index\":0,\"delta\":{\"message\":"
                            "{\"tool_calls\":{\"function\":{\"arguments\":\"{\\\"city\\\"\"}}}}}"},
        {"tool-call-delta",
         "{\"type\":\"tool-call-delta\",\"index\":0,\"delta\":{\"message\":"
         "{\"tool_calls\":{\"function\":{\"arguments\":\":\\\"Paris\\\"}\"}}}}}"},
        {"tool-call-end", "{\"type\":\"tool-call-end\",\"index\":0}"},
        {"tool-call-start", "{\"type\":\"tool-call-start\",\"index\":1,\"delta\":{\"message\":"
                            "{\"tool_calls\":{\"id\":\"now_b\",\"type\":\"function\","
                            "\"function\":{\"name\":\"now\",\"arguments\":\"{}\"}}}}}"},
        /* A delta for a call that is not the open one: not forwarded. */
        {"tool-call-delta", "{\"type\":\"tool-call-delta\",\"index\":0,\"delta\":{\"message\":"
                            "{\"tool_calls\":{\"function\":{\"arguments\":\"x\"}}}}}"},
        {"tool-call-end", "{\"type\":\"tool-call-end\",\"index\":1}"},
        {"message-end",
         "{\"type\":\"message-end\",\"delta\":{\"finish_reason\":\"TOOL_CALL\","
         "\"usage\":{\"billed_units\":{\"input_tokens\":20,\"output_tokens\":30}}}}"},
    };
    struct provider_stream st;
    memset(&st, 0, sizeof(st));
    struct replay r = run_stream(events, sizeof(events) / sizeof(events[0]), &st);
    assert_true(st.done);
    /* role, start 0, two fragments, start 1, finish, usage. */
    assert_int_equal(json_array_size(r.chunks), 7);
    const json_t *tc = json_array_get(json_object_get(delta_of(r.chunks, 1), "tool_calls"), 0);
    assert_int_equal(json_integer_value(json_object_get(tc, "index")), 0);
    assert_string_equal(S(tc, "id"), "get_weather_a");
    assert_string_equal(S(tc, "type"), "function");
    assert_string_equal(S(json_object_get(tc, "function"), "name"), "get_weather");
    assert_string_equal(S(json_object_get(tc, "function"), "arguments"), "");
    tc = json_array_get(json_object_get(delta_of(r.chunks, 2), "tool_calls"), 0);
    assert_int_equal(json_integer_value(json_object_get(tc, "index")), 0);
    assert_string_equal(S(json_object_get(tc, "function"), "arguments"), "{\"city\"");
    tc = json_array_get(json_object_get(delta_of(r.chunks, 3), "tool_calls"), 0);
    assert_string_equal(S(json_object_get(tc, "function"), "arguments"), ":\"Paris\"}");
    tc = json_array_get(json_object_get(delta_of(r.chunks, 4), "tool_calls"), 0);
    assert_int_equal(json_integer_value(json_object_get(tc, "index")), 1);
    assert_string_equal(S(tc, "id"), "now_b");
    assert_string_equal(S(json_object_get(tc, "function"), "arguments"), "{}");
    assert_string_equal(finish_of(r.chunks, 5), "tool_calls");
    assert_int_equal(st.usage.completion_tokens, 30);
    /* The plan was generated (billed) though not forwarded: it counts in the estimate. */
    assert_true(st.est_completion >= 6);
    json_decref(r.chunks);
}

/* The provider's error in a stream: the stream fails, its text unread, the usage still read. */
static void test_stream_errors(void **state)
{
    (void)state;
    const struct provider_adapter *ad = provider_find("cohere");
    static const char *const ends[] = {
        "{\"type\":\"message-end\",\"delta\":{\"error\":\"key " CANARY " refused\","
        "\"usage\":{\"billed_units\":{\"input_tokens\":3,\"output_tokens\":1}}}}",
        "{\"type\":\"message-end\",\"delta\":{\"finish_reason\":\"ERROR\","
        "\"usage\":{\"billed_units\":{\"input_tokens\":3,\"output_tokens\":1}}}}",
    };
    for (size_t i = 0; i < sizeof(ends) / sizeof(ends[0]); i++) {
        struct provider_stream st;
        memset(&st, 0, sizeof(st));
        struct buf out;
        buf_init(&out, 1 << 20);
        assert_int_equal(ad->stream_event(&st, "message-end", ends[i], strlen(ends[i]), &out),
                         ERR_OK);
        assert_true(st.failed);
        assert_false(st.done);
        assert_int_equal(out.len, 0); /* nothing of it goes to the app */
        assert_true(st.usage_final);
        assert_int_equal(st.usage.prompt_tokens, 3);
        buf_done(&out);
    }
    /* A gateway's error event. */
    struct provider_stream st;
    memset(&st, 0, sizeof(st));
    struct buf out;
    buf_init(&out, 1 << 20);
    const char *err = "{\"message\":\"bad key " CANARY "\"}";
    assert_int_equal(ad->stream_event(&st, "error", err, strlen(err), &out), ERR_OK);
    assert_true(st.failed);
    assert_int_equal(out.len, 0);

    /* Malformed events: ERR_PROTO, nothing written. */
    memset(&st, 0, sizeof(st));
    static const char *const garbage[][2] = {
        {"content-delta", "{not json"},
        {"content-delta", "[1]"},
        {"message-start", ""},
        /* tool-call-start without an id, with a name of the wrong type, without an index */
        {"tool-call-start", "{\"type\":\"tool-call-start\",\"index\":0,\"delta\":{\"message\":"
                            "{\"tool_calls\":{\"function\":{\"name\":\"f\"}}}}}"},
        {"tool-call-start", "{\"type\":\"tool-call-start\",\"index\":0,\"delta\":{\"message\":"
                            "{\"tool_calls\":{\"id\":\"a\",\"function\":{\"name\":5}}}}}"},
        {"tool-call-start", "{\"type\":\"tool-call-start\",\"delta\":{\"message\":"
                            "{\"tool_calls\":{\"id\":\"a\",\"function\":{\"name\":\"f\"}}}}}"},
    };
    for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
        assert_int_equal(
            ad->stream_event(&st, garbage[i][0], garbage[i][1], strlen(garbage[i][1]), &out),
            ERR_PROTO);
        assert_int_equal(out.len, 0);
    }
    /* Wrong types in a well-formed event: nothing forwarded, no crash. */
    static const char *const odd[] = {
        "{\"type\":\"content-delta\",\"delta\":{\"message\":{\"content\":{\"text\":5}}}}",
        "{\"type\":\"content-delta\",\"delta\":\"x\"}",
        "{\"type\":\"tool-call-delta\",\"index\":0,\"delta\":{\"message\":{\"tool_calls\":[]}}}",
        "{\"type\":\"tool-plan-delta\",\"delta\":{\"message\":{\"tool_plan\":{}}}}",
        "{\"type\":7}",
        "{\"type\":\"debug\"}",
    };
    for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
        assert_int_equal(ad->stream_event(&st, "message", odd[i], strlen(odd[i]), &out), ERR_OK);
        assert_int_equal(out.len, 0);
    }
    assert_false(st.failed);
    buf_done(&out);

    /* Without "type" the SSE event name says what it is. */
    memset(&st, 0, sizeof(st));
    buf_init(&out, 1 << 20);
    const char *delta = "{\"delta\":{\"message\":{\"content\":{\"text\":\"hi\"}}}}";
    assert_int_equal(ad->stream_event(&st, "content-delta", delta, strlen(delta), &out), ERR_OK);
    assert_non_null(memmem(out.data, out.len, "\"content\":\"hi\"", 14));
    /* A message-end without a finish_reason still ends the stream, as stop. */
    const char *end = "{\"type\":\"message-end\",\"delta\":{}}";
    assert_int_equal(ad->stream_event(&st, "message-end", end, strlen(end), &out), ERR_OK);
    assert_true(st.done);
    assert_false(st.usage_final);
    assert_non_null(memmem(out.data, out.len, "\"finish_reason\":\"stop\"", 22));
    buf_done(&out);
}

/* A stream request Cohere answered whole (a server that ignored "stream"): the answer as a stream.
 */
static void test_answer_as_stream(void **state)
{
    (void)state;
    json_t *o;
    struct provider_usage u;
    assert_int_equal(answer(PROVIDER_CHAT,
                            "{\"id\":\"c\",\"finish_reason\":\"COMPLETE\",\"message\":{\"content\":"
                            "[{\"type\":\"text\",\"text\":\"w0 w1\"}]},\"usage\":{\"billed_units\":"
                            "{\"input_tokens\":2,\"output_tokens\":2}}}",
                            &o, &u),
                     ERR_OK);
    struct buf out;
    buf_init(&out, 1 << 20);
    assert_int_equal(provider_stream_from_answer(o, true, &out), ERR_OK);
    assert_non_null(memmem(out.data, out.len, "\"content\":\"w0 w1\"", 17));
    assert_non_null(memmem(out.data, out.len, "data: [DONE]", 12));
    buf_done(&out);
    json_decref(o);
}

/*
 * Every translation with its n-th JSON allocation failing, for each n until
 * one runs without reaching it: each returns an error (ERR_NOMEM, or the
 * ERR_INVAL / ERR_PROTO a NULL from jansson reads as) or the whole
 * translation, never a part of it, and leaks nothing (LeakSanitizer in the
 * ASan build).
 */
static void test_out_of_memory(void **state)
{
    (void)state;
    json_t *req =
        J("{\"messages\":[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"user\","
          "\"content\":[{\"type\":\"text\",\"text\":\"t\"},{\"type\":\"image_url\","
          "\"image_url\":{\"url\":\"https://x\"}}]},{\"role\":\"assistant\",\"content\":"
          "\"a\",\"tool_calls\":[{\"id\":\"c\",\"function\":{\"name\":\"f\",\"arguments\":"
          "\"{}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"c\",\"content\":\"r\"}],"
          "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"description\":"
          "\"d\",\"parameters\":{}}}],\"tool_choice\":\"required\",\"stop\":\"x\","
          "\"top_p\":0.5,\"max_tokens\":3,\"response_format\":{\"type\":\"json_object\"}}");
    json_t *ereq = J("{\"input\":[\"a\",\"b\"],\"dimensions\":8}");
    json_t *ans =
        J("{\"id\":\"c\",\"finish_reason\":\"TOOL_CALL\",\"message\":{\"content\":"
          "[{\"type\":\"text\",\"text\":\"x\"}],\"tool_calls\":[{\"id\":\"i\",\"function\":"
          "{\"name\":\"f\",\"arguments\":\"{}\"}}]},\"usage\":{\"billed_units\":"
          "{\"input_tokens\":1,\"output_tokens\":2}}}");
    json_t *eans = J("{\"embeddings\":{\"float\":[[0.1],[0.2]]},\"meta\":{\"billed_units\":"
                     "{\"input_tokens\":2}}}");
    static const char *const events[][2] = {
        MSG_START,
        {"content-delta", "{\"type\":\"content-delta\",\"delta\":{\"message\":{\"content\":"
                          "{\"text\":\"hi\"}}}}"},
        {"tool-call-start", "{\"type\":\"tool-call-start\",\"index\":0,\"delta\":{\"message\":"
                            "{\"tool_calls\":{\"id\":\"i\",\"function\":{\"name\":\"f\"}}}}}"},
        {"tool-call-delta", "{\"type\":\"tool-call-delta\",\"index\":0,\"delta\":{\"message\":"
                            "{\"tool_calls\":{\"function\":{\"arguments\":\"{}\"}}}}}"},
        {"message-end", "{\"type\":\"message-end\",\"delta\":{\"finish_reason\":\"COMPLETE\","
                        "\"usage\":{\"billed_units\":{\"input_tokens\":1}}}}"},
    };
    const struct provider_adapter *ad = provider_find("cohere");
    /* The four translations, without and then with a failing allocator. */
    json_t *ref[4] = {NULL, NULL, NULL, NULL};
    for (long n = 0; n < 100000; n++) {
        oom_fired = false;
        oom_countdown = n;
        json_set_alloc_funcs(oom_malloc, free);
        json_t *got[4] = {NULL, NULL, NULL, NULL};
        struct provider_usage u;
        memset(&u, 0, sizeof(u));
        enum err e[4];
        e[0] = provider_cohere_request(PROVIDER_CHAT, req, "m", true, NULL, &got[0]);
        e[1] = provider_cohere_request(PROVIDER_EMBEDDINGS, ereq, "m", false, NULL, &got[1]);
        e[2] = provider_cohere_response(PROVIDER_CHAT, ans, "m", &got[2], &u);
        e[3] = provider_cohere_response(PROVIDER_EMBEDDINGS, eans, "m", &got[3], &u);
        struct provider_stream st;
        memset(&st, 0, sizeof(st));
        struct buf out;
        buf_init(&out, 1 << 20);
        enum err se = ERR_OK;
        for (size_t i = 0; i < sizeof(events) / sizeof(events[0]) && se == ERR_OK; i++) {
            se = ad->stream_event(&st, events[i][0], events[i][1], strlen(events[i][1]), &out);
        }
        buf_done(&out);
        json_set_alloc_funcs(malloc, free);
        oom_countdown = 0;
        for (size_t i = 0; i < 4; i++) {
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
    for (size_t i = 0; i < 4; i++) {
        json_decref(ref[i]);
    }
    assert_false(oom_fired);
    json_decref(req);
    json_decref(ereq);
    json_decref(ans);
    json_decref(eans);
}

static int setup(void **state)
{
    (void)state;
    return secret_heap_init((size_t)64 * 1024) == ERR_OK ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_fields),
        cmocka_unit_test(test_request_tools),
        cmocka_unit_test(test_request_refused),
        cmocka_unit_test(test_embed_request),
        cmocka_unit_test(test_build),
        cmocka_unit_test(test_response_text),
        cmocka_unit_test(test_response_tool_calls),
        cmocka_unit_test(test_response_bad),
        cmocka_unit_test(test_embed_response),
        cmocka_unit_test(test_stream_text),
        cmocka_unit_test(test_stream_tool_calls),
        cmocka_unit_test(test_stream_errors),
        cmocka_unit_test(test_answer_as_stream),
        cmocka_unit_test(test_out_of_memory),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
