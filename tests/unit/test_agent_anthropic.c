/* SPDX-License-Identifier: MPL-2.0 */
/* Unit tests for the Anthropic adapter: request, response and stream translation, bad input. */
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

static void test_stream_events(void **state)
{
    (void)state;
    const struct provider_adapter *ad = provider_find("anthropic");
    assert_non_null(ad);
    assert_false(ad->stream_passthrough);
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
    memset(&st, 0, sizeof(st));
    struct buf out;
    buf_init(&out, 1 << 20);
    for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++) {
        assert_false(st.done);
        assert_int_equal(
            ad->stream_event(&st, events[i][0], events[i][1], strlen(events[i][1]), &out), ERR_OK);
    }
    assert_true(st.done);
    assert_false(st.failed);
    assert_int_equal(st.usage.prompt_tokens, 15);
    assert_int_equal(st.usage.cached_tokens, 3);
    assert_int_equal(st.usage.completion_tokens, 9);

    struct replay r = {json_array(), false};
    struct sse p;
    sse_init(&p, 1 << 20, replay_cb, &r);
    assert_int_equal(sse_feed(&p, out.data, out.len), ERR_OK);
    assert_true(sse_idle(&p));
    sse_done(&p);
    assert_true(r.done);
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
    assert_string_equal(st.error_type, "overloaded_error");
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_system_hoisted),
        cmocka_unit_test(test_request_max_tokens_and_parts),
        cmocka_unit_test(test_request_bad_input),
        cmocka_unit_test(test_response),
        cmocka_unit_test(test_stream_events),
        cmocka_unit_test(test_stream_error_and_garbage),
        cmocka_unit_test(test_openai_stream_usage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
