/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for the Anthropic adapter: request, response and stream translation, bad input.
 * Also a whole answer (OpenAI's, or Anthropic's translated) turned into the stream it would
 * have been, for a stream request a server answered without one.
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

static void test_request_system_hoisted(void **state)
{
    (void)state;
    json_t *o =
        J("{\"model\":\"x\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
          "{\"role\":\"developer\",\"content\":[{\"type\":\"text\",\"text\":\"No lists.\"}]},"
          "{\"role\":\"user\",\"content\":\"Hi\"},{\"role\":\"assistant\",\"content\":\"Yo\"},"
          "{\"role\":\"user\",\"content\":\"Again\"}],"
          "\"temperature\":0.5,\"top_p\":0.9,\"stop\":\"END\",\"user\":\"u1\"}");
    json_t *a = NULL;
    assert_int_equal(provider_anthropic_request(o, "claude-x", true, 4096, &a), ERR_OK);
    assert_string_equal(json_string_value(json_object_get(a, "model")), "claude-x");
    assert_string_equal(json_string_value(json_object_get(a, "system")), "Be brief.\n\nNo lists.");
    const json_t *msgs = json_object_get(a, "messages");
    assert_int_equal(json_array_size(msgs), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 0), "role")),
                        "user");
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 1), "content")),
                        "Yo");
    /* max_tokens is required by the Messages API: the configured default fills it. */
    assert_int_equal(json_integer_value(json_object_get(a, "max_tokens")), 4096);
    assert_true(json_is_true(json_object_get(a, "stream")));
    assert_true(json_real_value(json_object_get(a, "temperature")) == 0.5);
    assert_string_equal(json_string_value(json_array_get(json_object_get(a, "stop_sequences"), 0)),
                        "END");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(a, "metadata"), "user_id")), "u1");
    /* OpenAI-only fields never reach Anthropic. */
    assert_null(json_object_get(a, "user"));
    assert_null(json_object_get(a, "stop"));
    json_decref(a);
    json_decref(o);
}

static void test_request_max_tokens_and_parts(void **state)
{
    (void)state;
    json_t *o =
        J("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"see\"},"
          "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,AAAA\"}},"
          "{\"type\":\"image_url\",\"image_url\":{\"url\":\"https://x/y.png\"}}]},"
          "{\"role\":\"tool\",\"tool_call_id\":\"t1\",\"content\":\"42\"}],"
          "\"max_completion_tokens\":77}");
    json_t *a = NULL;
    assert_int_equal(provider_anthropic_request(o, "m", false, 4096, &a), ERR_OK);
    assert_int_equal(json_integer_value(json_object_get(a, "max_tokens")), 77);
    assert_null(json_object_get(a, "stream"));
    assert_null(json_object_get(a, "system"));
    const json_t *parts =
        json_object_get(json_array_get(json_object_get(a, "messages"), 0), "content");
    assert_int_equal(json_array_size(parts), 3);
    const json_t *img = json_object_get(json_array_get(parts, 1), "source");
    assert_string_equal(json_string_value(json_object_get(img, "type")), "base64");
    assert_string_equal(json_string_value(json_object_get(img, "media_type")), "image/png");
    assert_string_equal(json_string_value(json_object_get(img, "data")), "AAAA");
    img = json_object_get(json_array_get(parts, 2), "source");
    assert_string_equal(json_string_value(json_object_get(img, "url")), "https://x/y.png");
    const json_t *tool = json_array_get(json_object_get(a, "messages"), 1);
    assert_string_equal(json_string_value(json_object_get(tool, "role")), "user");
    const json_t *tr = json_array_get(json_object_get(tool, "content"), 0);
    assert_string_equal(json_string_value(json_object_get(tr, "type")), "tool_result");
    assert_string_equal(json_string_value(json_object_get(tr, "tool_use_id")), "t1");
    json_decref(a);
    json_decref(o);
}

static void test_request_bad_input(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "{}",
        "{\"messages\":{}}",
        "{\"messages\":[]}",
        "{\"messages\":[{\"role\":\"system\",\"content\":\"only system\"}]}",
        "{\"messages\":[{\"content\":\"no role\"}]}",
        "{\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}",
        "{\"messages\":[{\"role\":\"user\",\"content\":5}]}",
        "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"audio\"}]}]}",
        /* NOLINTNEXTLINE(bugprone-suspicious-missing-comma): one literal over two lines */
        "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
        "\"image_url\":{\"url\":\"data:image/png,notbase64\"}}]}]}",
        "{\"messages\":[{\"role\":\"tool\",\"content\":\"no id\"}]}",
        NULL,
    };
    for (size_t i = 0; bad[i] != NULL; i++) {
        json_t *o = J(bad[i]);
        json_t *a = NULL;
        assert_int_equal(provider_anthropic_request(o, "m", false, 10, &a), ERR_INVAL);
        assert_null(a);
        json_decref(o);
    }
}

/* A JSON value's compact text, for comparing translated shapes whole. */
static void assert_json(const json_t *got, const char *want)
{
    char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    json_t *w = J(want);
    char *ws = json_dumps(w, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    assert_non_null(g);
    assert_non_null(ws);
    assert_string_equal(g, ws);
    free(g);
    free(ws);
    json_decref(w);
}

/*
 * OpenAI tools, a tool-calling assistant turn and its results: tools get
 * input_schema, the assistant's tool_calls become tool_use blocks (input
 * parsed from arguments), consecutive tool messages one user message of
 * tool_result blocks answering them in order.
 */
static void test_request_tools(void **state)
{
    (void)state;
    json_t *o =
        J("{\"messages\":[{\"role\":\"user\",\"content\":\"weather in Paris and Rome?\"},"
          "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":["
          "{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
          "\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}},"
          "{\"id\":\"call_2\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
          "\"arguments\":\"{\\\"city\\\":\\\"Rome\\\"}\"}}]},"
          "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"sunny\"},"
          "{\"role\":\"tool\",\"tool_call_id\":\"call_2\",\"content\":[{\"type\":\"text\","
          "\"text\":\"rain\"}]},"
          "{\"role\":\"assistant\",\"content\":\"Checking the time.\",\"tool_calls\":["
          "{\"id\":\"call_3\",\"type\":\"function\",\"function\":{\"name\":\"now\","
          "\"arguments\":\"\"}}]},"
          "{\"role\":\"tool\",\"tool_call_id\":\"call_3\",\"content\":\"\"},"
          "{\"role\":\"user\",\"content\":\"thanks\"}],"
          "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
          "\"description\":\"Weather now\",\"strict\":true,\"parameters\":{\"type\":\"object\","
          "\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}}},"
          "{\"type\":\"function\",\"function\":{\"name\":\"now\"}}],"
          "\"tool_choice\":\"auto\"}");
    json_t *a = NULL;
    assert_int_equal(provider_anthropic_request(o, "m", false, 64, &a), ERR_OK);
    assert_json(json_object_get(a, "tools"),
                "[{\"name\":\"get_weather\",\"description\":\"Weather now\",\"input_schema\":"
                "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},"
                "\"required\":[\"city\"]}},"
                "{\"name\":\"now\",\"input_schema\":{\"type\":\"object\",\"properties\":{}}}]");
    assert_json(json_object_get(a, "tool_choice"), "{\"type\":\"auto\"}");
    assert_json(json_object_get(a, "messages"),
                "[{\"role\":\"user\",\"content\":\"weather in Paris and Rome?\"},"
                "{\"role\":\"assistant\",\"content\":["
                "{\"type\":\"tool_use\",\"id\":\"call_1\",\"name\":\"get_weather\","
                "\"input\":{\"city\":\"Paris\"}},"
                "{\"type\":\"tool_use\",\"id\":\"call_2\",\"name\":\"get_weather\","
                "\"input\":{\"city\":\"Rome\"}}]},"
                "{\"role\":\"user\",\"content\":["
                "{\"type\":\"tool_result\",\"tool_use_id\":\"call_1\",\"content\":\"sunny\"},"
                "{\"type\":\"tool_result\",\"tool_use_id\":\"call_2\",\"content\":\"rain\"}]},"
                "{\"role\":\"assistant\",\"content\":["
                "{\"type\":\"text\",\"text\":\"Checking the time.\"},"
                "{\"type\":\"tool_use\",\"id\":\"call_3\",\"name\":\"now\",\"input\":{}}]},"
                "{\"role\":\"user\",\"content\":["
                "{\"type\":\"tool_result\",\"tool_use_id\":\"call_3\"}]},"
                "{\"role\":\"user\",\"content\":\"thanks\"}]");
    /* OpenAI-only fields never reach Anthropic. */
    assert_null(json_object_get(a, "parallel_tool_calls"));
    json_decref(a);
    json_decref(o);
}

/* tool_choice and parallel_tool_calls to Anthropic's tool_choice. */
static void test_request_tool_choice(void **state)
{
    (void)state;
    static const struct {
        const char *extra, *want; /* want NULL: no tool_choice */
    } cases[] = {
        {"", NULL},
        {",\"tool_choice\":null", NULL},
        {",\"tool_choice\":\"auto\"", "{\"type\":\"auto\"}"},
        {",\"tool_choice\":\"none\"", "{\"type\":\"none\"}"},
        {",\"tool_choice\":\"required\"", "{\"type\":\"any\"}"},
        {",\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"f\"}}",
         "{\"type\":\"tool\",\"name\":\"f\"}"},
        {",\"parallel_tool_calls\":false",
         "{\"type\":\"auto\",\"disable_parallel_tool_use\":true}"},
        {",\"parallel_tool_calls\":true", NULL},
        {",\"parallel_tool_calls\":false,\"tool_choice\":\"required\"",
         "{\"type\":\"any\",\"disable_parallel_tool_use\":true}"},
        {",\"parallel_tool_calls\":false,\"tool_choice\":{\"type\":\"function\",\"function\":"
         "{\"name\":\"f\"}}",
         "{\"type\":\"tool\",\"name\":\"f\",\"disable_parallel_tool_use\":true}"},
        /* none takes no other field */
        {",\"parallel_tool_calls\":false,\"tool_choice\":\"none\"", "{\"type\":\"none\"}"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[512];
        snprintf(text, sizeof(text),
                 "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":"
                 "\"function\",\"function\":{\"name\":\"f\"}}]%s}",
                 cases[i].extra);
        json_t *o = J(text);
        json_t *a = NULL;
        assert_int_equal(provider_anthropic_request(o, "m", false, 64, &a), ERR_OK);
        if (cases[i].want == NULL) {
            assert_null(json_object_get(a, "tool_choice"));
        } else {
            assert_json(json_object_get(a, "tool_choice"), cases[i].want);
        }
        json_decref(a);
        json_decref(o);
    }
    /* Without tools neither is sent (Anthropic refuses a tool_choice without tools). */
    json_t *o = J("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[],"
                  "\"tool_choice\":\"required\",\"parallel_tool_calls\":false}");
    json_t *a = NULL;
    assert_int_equal(provider_anthropic_request(o, "m", false, 64, &a), ERR_OK);
    assert_null(json_object_get(a, "tools"));
    assert_null(json_object_get(a, "tool_choice"));
    json_decref(a);
    json_decref(o);
}

static void test_request_tools_bad(void **state)
{
    (void)state;
    static const char *const bad[] = {
        /* arguments that are not a JSON object */
        "{\"messages\":[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c\","
        "\"function\":{\"name\":\"f\",\"arguments\":\"{oops\"}}]}]}",
        "{\"messages\":[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c\","
        "\"function\":{\"name\":\"f\",\"arguments\":\"42\"}}]}]}",
        "{\"messages\":[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c\","
        "\"function\":{\"name\":\"f\",\"arguments\":{\"a\":1}}}]}]}",
        /* no id, no name */
        "{\"messages\":[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{"
        "\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}]}",
        "{\"messages\":[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c\","
        "\"function\":{\"arguments\":\"{}\"}}]}]}",
        /* tool_calls not an array, or not in an assistant message */
        "{\"messages\":[{\"role\":\"assistant\",\"content\":\"x\",\"tool_calls\":{}}]}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"tool_calls\":[]}]}",
        /* a tool message without content */
        "{\"messages\":[{\"role\":\"tool\",\"tool_call_id\":\"c\"}]}",
        /* tools */
        "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":{}}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\","
        "\"function\":{\"name\":\"\"}}]}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\","
        "\"function\":{\"name\":\"f\",\"description\":5}}]}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\","
        "\"function\":{\"name\":\"f\"}}],\"tool_choice\":{\"type\":\"function\"}}",
        NULL,
    };
    for (size_t i = 0; bad[i] != NULL; i++) {
        json_t *o = J(bad[i]);
        json_t *a = NULL;
        assert_int_equal(provider_anthropic_request(o, "m", false, 10, &a), ERR_INVAL);
        assert_null(a);
        json_decref(o);
    }
}

/* An answer that is only tool calls: content null, as OpenAI's. */
static void test_response_tool_only(void **state)
{
    (void)state;
    json_t *m =
        J("{\"id\":\"msg_2\",\"model\":\"c\",\"content\":["
          "{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get_weather\","
          "\"input\":{\"city\":\"Paris\"}},"
          "{\"type\":\"tool_use\",\"id\":\"toolu_2\",\"name\":\"now\",\"input\":{}}],"
          "\"stop_reason\":\"tool_use\",\"usage\":{\"input_tokens\":3,\"output_tokens\":4}}");
    json_t *o = NULL;
    struct provider_usage u = {0};
    assert_int_equal(provider_anthropic_response(m, &o, &u), ERR_OK);
    const json_t *ch = json_array_get(json_object_get(o, "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(ch, "finish_reason")), "tool_calls");
    assert_json(json_object_get(ch, "message"),
                "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":["
                "{\"id\":\"toolu_1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
                "\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}},"
                "{\"id\":\"toolu_2\",\"type\":\"function\",\"function\":{\"name\":\"now\","
                "\"arguments\":\"{}\"}}]}");
    json_decref(o);
    json_decref(m);
    /* A tool call the app could not use is a bad answer, not a silently dropped call. */
    static const char *const bad[] = {
        "{\"content\":[{\"type\":\"tool_use\",\"name\":\"f\",\"input\":{}}]}",
        "{\"content\":[{\"type\":\"tool_use\",\"id\":\"t\",\"input\":{}}]}",
        "{\"content\":[{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"f\",\"input\":[1]}]}",
        NULL,
    };
    for (size_t i = 0; bad[i] != NULL; i++) {
        m = J(bad[i]);
        o = NULL;
        assert_int_equal(provider_anthropic_response(m, &o, &u), ERR_PROTO);
        assert_null(o);
        json_decref(m);
    }
}

static void test_response(void **state)
{
    (void)state;
    json_t *m =
        J("{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\","
          "\"content\":[{\"type\":\"text\",\"text\":\"Hello "
          "\"},{\"type\":\"text\",\"text\":\"world\"},"
          "{\"type\":\"tool_use\",\"id\":\"tu1\",\"name\":\"calc\",\"input\":{\"a\":1}}],"
          "\"stop_reason\":\"tool_use\",\"usage\":{\"input_tokens\":10,"
          "\"cache_read_input_tokens\":4,\"cache_creation_input_tokens\":1,\"output_tokens\":6}}");
    json_t *o = NULL;
    struct provider_usage u = {0};
    assert_int_equal(provider_anthropic_response(m, &o, &u), ERR_OK);
    assert_string_equal(json_string_value(json_object_get(o, "object")), "chat.completion");
    assert_string_equal(json_string_value(json_object_get(o, "id")), "msg_1");
    const json_t *ch = json_array_get(json_object_get(o, "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(ch, "finish_reason")), "tool_calls");
    const json_t *msg = json_object_get(ch, "message");
    assert_string_equal(json_string_value(json_object_get(msg, "content")), "Hello world");
    const json_t *tc = json_array_get(json_object_get(msg, "tool_calls"), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(tc, "function"), "name")),
                        "calc");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(tc, "function"), "arguments")),
        "{\"a\":1}");
    /* OpenAI's prompt_tokens include cached input; Anthropic's input_tokens do not. */
    assert_int_equal(u.prompt_tokens, 15);
    assert_int_equal(u.cached_tokens, 4);
    assert_int_equal(u.completion_tokens, 6);
    const json_t *usage = json_object_get(o, "usage");
    assert_int_equal(json_integer_value(json_object_get(usage, "total_tokens")), 21);
    json_decref(o);
    json_decref(m);

    static const struct {
        const char *stop, *finish;
    } map[] = {{"end_turn", "stop"}, {"max_tokens", "length"}, {"stop_sequence", "stop"}};
    for (size_t i = 0; i < 3; i++) {
        char text[256];
        snprintf(text, sizeof(text),
                 "{\"content\":[],\"stop_reason\":\"%s\",\"usage\":{\"input_tokens\":1,"
                 "\"output_tokens\":1}}",
                 map[i].stop);
        m = J(text);
        assert_int_equal(provider_anthropic_response(m, &o, &u), ERR_OK);
        ch = json_array_get(json_object_get(o, "choices"), 0);
        assert_string_equal(json_string_value(json_object_get(ch, "finish_reason")), map[i].finish);
        json_decref(o);
        json_decref(m);
    }
    m = J("{\"type\":\"error\",\"error\":{}}");
    assert_int_equal(provider_anthropic_response(m, &o, &u), ERR_PROTO);
    json_decref(m);
}

/* Feeds Anthropic events through the adapter and re-parses the OpenAI SSE it produced. */
struct replay {
    json_t *chunks;
    bool done;
};

static int replay_cb(void *arg, const char *event, const char *data, size_t len)
{
    struct replay *r = arg;
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        r->done = true;
        return 0;
    }
    json_t *j = json_loadb(data, len, 0, NULL);
    assert_non_null(j);
    json_array_append_new(r->chunks, j);
    return 0;
}

/* Feeds events[n] through the Anthropic adapter into st and replays the OpenAI SSE it wrote. */
static struct replay run_stream(const char *const (*events)[2], size_t n,
                                struct provider_stream *st)
{
    const struct provider_adapter *ad = provider_find("anthropic");
    assert_non_null(ad);
    memset(st, 0, sizeof(*st));
    struct buf out;
    buf_init(&out, 1 << 20);
    for (size_t i = 0; i < n; i++) {
        assert_false(st->done);
        assert_int_equal(
            ad->stream_event(st, events[i][0], events[i][1], strlen(events[i][1]), &out), ERR_OK);
    }
    assert_true(st->done);
    struct replay r = {json_array(), false};
    struct sse p;
    sse_init(&p, 1 << 20, replay_cb, &r);
    assert_int_equal(sse_feed(&p, out.data, out.len), ERR_OK);
    assert_true(sse_idle(&p));
    sse_done(&p);
    buf_done(&out);
    assert_true(r.done);
    return r;
}

static void test_stream_events(void **state)
{
    (void)state;
    assert_false(provider_find("anthropic")->stream_passthrough);
    static const char *const events[][2] = {
        {"message_start",
         "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_9\",\"model\":"
         "\"claude-x\",\"usage\":{\"input_tokens\":12,\"cache_read_input_tokens\":3,"
         "\"output_tokens\":1}}}"},
        {"content_block_start", "{\"type\":\"content_block_start\",\"index\":0,"
                                "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}"},
        {"ping", "{\"type\":\"ping\"}"},
        {"content_block_delta", "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
                                "{\"type\":\"text_delta\",\"text\":\"Hel\"}}"},
        {"content_block_delta", "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
                                "{\"type\":\"text_delta\",\"text\":\"lo\"}}"},
        {"content_block_stop", "{\"type\":\"content_block_stop\",\"index\":0}"},
        {"message_delta", "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\"},"
                          "\"usage\":{\"output_tokens\":9}}"},
        {"message_stop", "{\"type\":\"message_stop\"}"},
    };
    struct provider_stream st;
    struct replay r = run_stream(events, sizeof(events) / sizeof(events[0]), &st);
    assert_false(st.failed);
    assert_int_equal(st.usage.prompt_tokens, 15);
    assert_int_equal(st.usage.cached_tokens, 3);
    assert_int_equal(st.usage.completion_tokens, 9);
    /* role chunk, two text chunks, finish chunk, usage chunk */
    assert_int_equal(json_array_size(r.chunks), 5);
    size_t i;
    const json_t *c;
    json_array_foreach(r.chunks, i, c)
    {
        assert_string_equal(json_string_value(json_object_get(c, "object")),
                            "chat.completion.chunk");
        assert_string_equal(json_string_value(json_object_get(c, "id")), "msg_9");
        assert_string_equal(json_string_value(json_object_get(c, "model")), "claude-x");
    }
    const json_t *d0 = json_object_get(
        json_array_get(json_object_get(json_array_get(r.chunks, 0), "choices"), 0), "delta");
    assert_string_equal(json_string_value(json_object_get(d0, "role")), "assistant");
    const json_t *d1 = json_object_get(
        json_array_get(json_object_get(json_array_get(r.chunks, 1), "choices"), 0), "delta");
    assert_string_equal(json_string_value(json_object_get(d1, "content")), "Hel");
    const json_t *fin = json_array_get(json_object_get(json_array_get(r.chunks, 3), "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(fin, "finish_reason")), "length");
    const json_t *last = json_array_get(r.chunks, 4);
    assert_int_equal(json_array_size(json_object_get(last, "choices")), 0);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(last, "usage"), "completion_tokens")),
        9);
    json_decref(r.chunks);
}

/* The delta of chunk i of a replay. */
static const json_t *delta_of(const struct replay *r, size_t i)
{
    return json_object_get(
        json_array_get(json_object_get(json_array_get(r->chunks, i), "choices"), 0), "delta");
}

/*
 * Text, then two tool_use blocks: each opens OpenAI tool call 0, 1 (the
 * ordinal among tool calls, not Anthropic's block index 1, 2) with its id and
 * name, its input_json_delta fragments become that call's arguments, and the
 * answer finishes with tool_calls.
 */
static void test_stream_tool_calls(void **state)
{
    (void)state;
    static const char *const events[][2] = {
        {"message_start", "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_t\",\"model\":"
                          "\"claude-x\",\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}"},
        {"content_block_start", "{\"type\":\"content_block_start\",\"index\":0,"
                                "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}"},
        {"content_block_delta", "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
                                "{\"type\":\"text_delta\",\"text\":\"Let me check.\"}}"},
        {"content_block_stop", "{\"type\":\"content_block_stop\",\"index\":0}"},
        {"content_block_start",
         "{\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":"
         "\"tool_use\",\"id\":\"toolu_a\",\"name\":\"get_weather\",\"input\":{}}}"},
        {"content_block_delta", "{\"type\":\"content_block_delta\",\"index\":1,\"delta\":"
                                "{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}"},
        {"content_block_delta", "{\"type\":\"content_block_delta\",\"index\":1,\"delta\":"
                                "{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"ci\"}}"},
        {"ping", "{\"type\":\"ping\"}"},
        {"content_block_delta",
         "{\"type\":\"content_block_delta\",\"index\":1,\"delta\":"
         "{\"type\":\"input_json_delta\",\"partial_json\":\"ty\\\": \\\"Paris\\\"}\"}}"},
        {"content_block_stop", "{\"type\":\"content_block_stop\",\"index\":1}"},
        {"content_block_start",
         "{\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":"
         "\"tool_use\",\"id\":\"toolu_b\",\"name\":\"now\",\"input\":{}}}"},
        {"content_block_delta", "{\"type\":\"content_block_delta\",\"index\":2,\"delta\":"
                                "{\"type\":\"input_json_delta\",\"partial_json\":\"{}\"}}"},
        /* a fragment for a block that is not the open tool call carries nothing */
        {"content_block_delta", "{\"type\":\"content_block_delta\",\"index\":1,\"delta\":"
                                "{\"type\":\"input_json_delta\",\"partial_json\":\"x\"}}"},
        {"content_block_stop", "{\"type\":\"content_block_stop\",\"index\":2}"},
        {"message_delta", "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},"
                          "\"usage\":{\"output_tokens\":30}}"},
        {"message_stop", "{\"type\":\"message_stop\"}"},
    };
    struct provider_stream st;
    struct replay r = run_stream(events, sizeof(events) / sizeof(events[0]), &st);
    assert_false(st.failed);
    assert_int_equal(st.tool_calls, 2);
    /* role, text, call 0 opens, 2 fragments, call 1 opens, 1 fragment, finish, usage */
    assert_int_equal(json_array_size(r.chunks), 9);
    assert_json(delta_of(&r, 1), "{\"content\":\"Let me check.\"}");
    assert_json(delta_of(&r, 2), "{\"tool_calls\":[{\"index\":0,\"id\":\"toolu_a\",\"type\":"
                                 "\"function\",\"function\":{\"name\":\"get_weather\","
                                 "\"arguments\":\"\"}}]}");
    assert_json(delta_of(&r, 3),
                "{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"ci\"}}]}");
    assert_json(delta_of(&r, 4), "{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":"
                                 "\"ty\\\": \\\"Paris\\\"}\"}}]}");
    assert_json(delta_of(&r, 5), "{\"tool_calls\":[{\"index\":1,\"id\":\"toolu_b\",\"type\":"
                                 "\"function\",\"function\":{\"name\":\"now\",\"arguments\":"
                                 "\"\"}}]}");
    assert_json(delta_of(&r, 6), "{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":"
                                 "\"{}\"}}]}");
    const json_t *fin = json_array_get(json_object_get(json_array_get(r.chunks, 7), "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(fin, "finish_reason")), "tool_calls");
    assert_int_equal(st.usage.completion_tokens, 30);
    json_decref(r.chunks);

    /* A tool_use block without a usable id or name ends the stream as a bad answer. */
    const struct provider_adapter *ad = provider_find("anthropic");
    struct buf out;
    buf_init(&out, 1 << 20);
    memset(&st, 0, sizeof(st));
    const char *noid = "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":"
                       "{\"type\":\"tool_use\",\"name\":\"f\",\"input\":{}}}";
    assert_int_equal(ad->stream_event(&st, "content_block_start", noid, strlen(noid), &out),
                     ERR_PROTO);
    buf_done(&out);
}

static void test_stream_error_and_garbage(void **state)
{
    (void)state;
    const struct provider_adapter *ad = provider_find("anthropic");
    struct provider_stream st;
    memset(&st, 0, sizeof(st));
    struct buf out;
    buf_init(&out, 1 << 20);
    const char *err =
        "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"x\"}}";
    assert_int_equal(ad->stream_event(&st, "error", err, strlen(err), &out), ERR_OK);
    assert_true(st.failed);
    assert_false(st.done);
    assert_int_equal(out.len, 0); /* the proxy writes the error event; the adapter only flags it */
    assert_int_equal(ad->stream_event(&st, "message_start", "{not json", 9, &out), ERR_PROTO);
    assert_int_equal(ad->stream_event(&st, "message_start", "[1]", 3, &out), ERR_PROTO);
    buf_done(&out);
}

static void test_openai_stream_usage(void **state)
{
    (void)state;
    const struct provider_adapter *ad = provider_find("openai");
    assert_true(ad->stream_passthrough);
    struct provider_stream st;
    memset(&st, 0, sizeof(st));
    struct buf out;
    buf_init(&out, 1024);
    const char *c1 = "{\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}";
    const char *c2 = "{\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,"
                     "\"prompt_tokens_details\":{\"cached_tokens\":1}}}";
    assert_int_equal(ad->stream_event(&st, "message", c1, strlen(c1), &out), ERR_OK);
    assert_false(st.usage.seen);
    assert_int_equal(ad->stream_event(&st, "message", c2, strlen(c2), &out), ERR_OK);
    assert_true(st.usage.seen);
    assert_int_equal(st.usage.prompt_tokens, 5);
    assert_int_equal(st.usage.cached_tokens, 1);
    assert_false(st.done);
    assert_int_equal(ad->stream_event(&st, "message", "[DONE]", 6, &out), ERR_OK);
    assert_true(st.done);
    assert_int_equal(out.len, 0); /* passthrough adapters never rewrite the stream */
    const char *e = "{\"error\":{\"type\":\"server_error\",\"message\":\"x\"}}";
    assert_int_equal(ad->stream_event(&st, "message", e, strlen(e), &out), ERR_OK);
    assert_true(st.failed);
    buf_done(&out);
}

/* Replays the SSE provider_stream_from_answer wrote for answer; chunks in r.chunks. */
static struct replay run_answer(const json_t *answer, bool include_usage)
{
    struct buf out;
    buf_init(&out, 1 << 20);
    assert_int_equal(provider_stream_from_answer(answer, include_usage, &out), ERR_OK);
    struct replay r = {json_array(), false};
    struct sse p;
    sse_init(&p, 1 << 20, replay_cb, &r);
    assert_int_equal(sse_feed(&p, out.data, out.len), ERR_OK);
    assert_true(sse_idle(&p));
    sse_done(&p);
    /* [DONE] is the last frame */
    assert_true(out.len > 14 && strcmp(out.data + out.len - 14, "data: [DONE]\n\n") == 0);
    buf_done(&out);
    assert_true(r.done);
    return r;
}

static const json_t *chunk_choice(const struct replay *r, size_t i)
{
    return json_array_get(json_object_get(json_array_get(r->chunks, i), "choices"), 0);
}

static void test_answer_as_stream(void **state)
{
    (void)state;
    json_t *a = J("{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1700000000,"
                  "\"model\":\"gpt-x\",\"system_fingerprint\":\"fp_1\",\"choices\":["
                  "{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hello\","
                  "\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"stop\"},"
                  "{\"index\":1,\"message\":{\"role\":\"assistant\",\"content\":null,"
                  "\"tool_calls\":[{\"id\":\"call_a\",\"type\":\"function\",\"function\":"
                  "{\"name\":\"f\",\"arguments\":\"{}\"}},{\"id\":\"call_b\",\"type\":"
                  "\"function\",\"function\":{\"name\":\"g\",\"arguments\":\"{\\\"x\\\":1}\"}}]},"
                  "\"finish_reason\":\"tool_calls\"}],"
                  "\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3,\"total_tokens\":10}}");
    struct replay r = run_answer(a, true);
    /* per choice its message and its finish, then the usage chunk */
    assert_int_equal(json_array_size(r.chunks), 5);
    size_t i;
    const json_t *c;
    json_array_foreach(r.chunks, i, c)
    {
        assert_string_equal(json_string_value(json_object_get(c, "object")),
                            "chat.completion.chunk");
        assert_string_equal(json_string_value(json_object_get(c, "id")), "chatcmpl-1");
        assert_string_equal(json_string_value(json_object_get(c, "model")), "gpt-x");
        assert_string_equal(json_string_value(json_object_get(c, "system_fingerprint")), "fp_1");
        assert_int_equal(json_integer_value(json_object_get(c, "created")), 1700000000);
    }
    const json_t *d = json_object_get(chunk_choice(&r, 0), "delta");
    assert_string_equal(json_string_value(json_object_get(d, "role")), "assistant");
    assert_string_equal(json_string_value(json_object_get(d, "content")), "Hello");
    assert_true(json_is_null(json_object_get(d, "refusal")));
    assert_true(json_is_null(json_object_get(chunk_choice(&r, 0), "finish_reason")));
    assert_int_equal(json_object_size(json_object_get(chunk_choice(&r, 1), "delta")), 0);
    assert_string_equal(json_string_value(json_object_get(chunk_choice(&r, 1), "finish_reason")),
                        "stop");
    assert_int_equal(json_integer_value(json_object_get(chunk_choice(&r, 2), "index")), 1);
    d = json_object_get(chunk_choice(&r, 2), "delta");
    assert_true(json_is_null(json_object_get(d, "content")));
    const json_t *tcs = json_object_get(d, "tool_calls");
    assert_int_equal(json_array_size(tcs), 2);
    for (size_t k = 0; k < 2; k++) {
        const json_t *tc = json_array_get(tcs, k);
        assert_int_equal(json_integer_value(json_object_get(tc, "index")), (json_int_t)k);
        assert_string_equal(json_string_value(json_object_get(tc, "id")),
                            k == 0 ? "call_a" : "call_b");
    }
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_array_get(tcs, 1), "function"), "arguments")),
                        "{\"x\":1}");
    /* the answer's tool calls are left as they were: no index */
    assert_null(json_object_get(
        json_array_get(
            json_object_get(
                json_object_get(json_array_get(json_object_get(a, "choices"), 1), "message"),
                "tool_calls"),
            0),
        "index"));
    assert_string_equal(json_string_value(json_object_get(chunk_choice(&r, 3), "finish_reason")),
                        "tool_calls");
    const json_t *u = json_array_get(r.chunks, 4);
    assert_int_equal(json_array_size(json_object_get(u, "choices")), 0);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(u, "usage"), "completion_tokens")), 3);
    json_decref(r.chunks);
    /* The app did not ask for the usage chunk. */
    r = run_answer(a, false);
    assert_int_equal(json_array_size(r.chunks), 4);
    json_array_foreach(r.chunks, i, c)
    {
        assert_null(json_object_get(c, "usage"));
        assert_int_equal(json_array_size(json_object_get(c, "choices")), 1);
    }
    json_decref(r.chunks);
    json_decref(a);
}

/* Anthropic's answer, as the adapter translates it, streams as OpenAI's does. */
static void test_anthropic_answer_as_stream(void **state)
{
    (void)state;
    static const char body[] =
        "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\","
        "\"content\":[{\"type\":\"text\",\"text\":\"hi\"},{\"type\":\"tool_use\",\"id\":"
        "\"toolu_1\",\"name\":\"f\",\"input\":{\"a\":1}}],\"stop_reason\":\"tool_use\","
        "\"usage\":{\"input_tokens\":5,\"output_tokens\":4}}";
    const struct provider_adapter *ad = provider_find("anthropic");
    json_t *a = NULL;
    struct provider_usage u = {0};
    assert_int_equal(ad->response(PROVIDER_CHAT, body, strlen(body), "claude-x", &a, &u), ERR_OK);
    struct replay r = run_answer(a, true);
    assert_int_equal(json_array_size(r.chunks), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(r.chunks, 0), "id")),
                        "msg_1");
    const json_t *d = json_object_get(chunk_choice(&r, 0), "delta");
    assert_string_equal(json_string_value(json_object_get(d, "content")), "hi");
    const json_t *tc = json_array_get(json_object_get(d, "tool_calls"), 0);
    assert_int_equal(json_integer_value(json_object_get(tc, "index")), 0);
    assert_string_equal(json_string_value(json_object_get(tc, "id")), "toolu_1");
    assert_string_equal(json_string_value(json_object_get(chunk_choice(&r, 1), "finish_reason")),
                        "tool_calls");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(json_array_get(r.chunks, 2), "usage"),
                                           "completion_tokens")),
        4);
    json_decref(r.chunks);
    json_decref(a);
}

/* What is no chat answer is not streamed; the chunks are bounded by the buffer's cap. */
static void test_answer_as_stream_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "{}",
        "{\"choices\":[]}",
        "{\"choices\":{}}",
        "{\"choices\":[{\"index\":0,\"finish_reason\":\"stop\"}]}",
        "{\"choices\":[{\"message\":\"hi\"}]}",
        "{\"choices\":[{\"message\":{\"content\":\"x\",\"tool_calls\":[1]}}]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *a = J(bad[i]);
        struct buf out;
        buf_init(&out, 1 << 20);
        assert_int_equal(provider_stream_from_answer(a, true, &out), ERR_PROTO);
        buf_done(&out);
        json_decref(a);
    }
    /* A message with neither role nor content still streams, as the assistant's, content null. */
    json_t *a = J("{\"choices\":[{\"message\":{}}]}");
    struct replay r = run_answer(a, true);
    assert_int_equal(json_array_size(r.chunks), 2); /* no usage in the answer: no usage chunk */
    const json_t *d = json_object_get(chunk_choice(&r, 0), "delta");
    assert_string_equal(json_string_value(json_object_get(d, "role")), "assistant");
    assert_true(json_is_null(json_object_get(d, "content")));
    assert_int_equal(json_integer_value(json_object_get(chunk_choice(&r, 0), "index")), 0);
    json_decref(r.chunks);
    json_decref(a);
    /* Many choices under a long id: past the cap, refused rather than grown. */
    a = J("{\"id\":\""
          "0123456789012345678901234567890123456789012345678901234567890123"
          "\",\"choices\":[{\"message\":{}},{\"message\":{}},{\"message\":{}}]}");
    struct buf out;
    buf_init(&out, 512);
    assert_int_equal(provider_stream_from_answer(a, true, &out), ERR_TOOBIG);
    buf_done(&out);
    json_decref(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_system_hoisted),
        cmocka_unit_test(test_request_max_tokens_and_parts),
        cmocka_unit_test(test_request_bad_input),
        cmocka_unit_test(test_request_tools),
        cmocka_unit_test(test_request_tool_choice),
        cmocka_unit_test(test_request_tools_bad),
        cmocka_unit_test(test_response),
        cmocka_unit_test(test_response_tool_only),
        cmocka_unit_test(test_stream_events),
        cmocka_unit_test(test_stream_tool_calls),
        cmocka_unit_test(test_stream_error_and_garbage),
        cmocka_unit_test(test_openai_stream_usage),
        cmocka_unit_test(test_answer_as_stream),
        cmocka_unit_test(test_anthropic_answer_as_stream),
        cmocka_unit_test(test_answer_as_stream_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
