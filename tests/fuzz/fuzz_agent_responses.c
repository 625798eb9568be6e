/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Fuzzes the Responses API bridge (agent/responses.c). The first byte picks
 * the case, the rest is the input:
 *   0: an app's Responses request body through responses_request. Accepted:
 *      a chat request whose messages are a non-empty array, and an echo
 *      object; refused: ERR_INVAL with the field named and a message that
 *      starts with it, and nothing built.
 *   1: provider chat stream bytes (as the proxy queues them) through the
 *      stream translator, split at the second byte's offset, with a small
 *      cap, then finish or fail. Every frame made is "event: <type>" and a
 *      JSON object of that type with sequence_number 0, 1, ...; a finished
 *      stream's last event is response.completed or response.incomplete, a
 *      failed one's response.failed.
 *   2: a chat answer through responses_answer: a Response object or an error
 *      with nothing built.
 * No crash, no leak (the replay runs under ASan with leak checking).
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/responses.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_request(const char *body, size_t n)
{
    json_t *j = json_loadb(body, n, 0, NULL);
    if (j == NULL) {
        return;
    }
    struct responses_bad bad;
    json_t *chat = NULL, *echo = NULL;
    enum err e = responses_request(j, &bad, &chat, &echo);
    if (e == ERR_OK) {
        const json_t *msgs = json_object_get(chat, "messages");
        if (!json_is_array(msgs) || json_array_size(msgs) == 0 || !json_is_object(echo)) {
            abort();
        }
    } else if (e == ERR_INVAL) {
        if (chat != NULL || echo != NULL || bad.param[0] == '\0' || bad.code == NULL ||
            strncmp(bad.msg, bad.param, strlen(bad.param)) != 0) {
            abort();
        }
    } else if (e != ERR_NOMEM) {
        abort();
    }
    json_decref(chat);
    json_decref(echo);
    json_decref(j);
}

/* Every frame of out: "event: T\ndata: {...T, sequence_number}\n\n"; the last type in last. */
static void check_events(const struct buf *out, char *last, size_t last_len)
{
    const char *p = out->data != NULL ? out->data : "";
    const char *end = p + out->len;
    long long seq = 0;
    last[0] = '\0';
    while (p < end) {
        if (strncmp(p, "event: ", 7) != 0) {
            abort();
        }
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl != NULL ? strstr(nl, "\n\n") : NULL;
        if (nl == NULL || stop == NULL || strncmp(nl + 1, "data: ", 6) != 0) {
            abort();
        }
        json_t *j = json_loadb(nl + 7, (size_t)(stop - nl - 7), 0, NULL);
        const char *type = json_string_value(json_object_get(j, "type"));
        size_t tl = (size_t)(nl - p - 7);
        if (type == NULL || strlen(type) != tl || strncmp(type, p + 7, tl) != 0 ||
            json_integer_value(json_object_get(j, "sequence_number")) != seq || tl >= last_len) {
            abort();
        }
        memcpy(last, type, tl);
        last[tl] = '\0';
        json_decref(j);
        seq++;
        p = stop + 2;
    }
}

static void check_stream(const char *bytes, size_t n, uint8_t flags)
{
    json_t *echo =
        json_pack("{s:n,s:n,s:n,s:n,s:n,s:s,s:{},s:b,s:s,s:[],s:{s:{s:s}},s:{s:n,s:n}}",
                  "instructions", "max_output_tokens", "temperature", "top_p", "user", "model",
                  "auto", "metadata", "parallel_tool_calls", 1, "tool_choice", "auto", "tools",
                  "text", "format", "type", "text", "reasoning", "effort", "summary");
    struct responses_stream *s = NULL;
    if (echo == NULL || responses_stream_new(echo, "resp_f", 1, NULL, 4096, &s) != ERR_OK) {
        abort();
    }
    struct buf out;
    buf_init(&out, 1 << 22);
    size_t cut = n > 0 ? (size_t)bytes[0] % (n + 1) : 0;
    enum err e = responses_stream_feed(s, bytes, cut, &out);
    if (e == ERR_OK) {
        e = responses_stream_feed(s, bytes + cut, n - cut, &out);
    }
    struct provider_usage u = {.prompt_tokens = 1, .completion_tokens = 2, .seen = true};
    bool fail = e != ERR_OK || (flags & 1) != 0;
    enum err fe = fail ? responses_stream_fail(s, "stream_parse_error", "m", &u, &out)
                       : responses_stream_finish(s, &u, &out);
    if (fe == ERR_OK) {
        char last[64];
        check_events(&out, last, sizeof(last));
        if (fail ? strcmp(last, "response.failed") != 0
                 : strcmp(last, "response.completed") != 0 &&
                       strcmp(last, "response.incomplete") != 0) {
            abort();
        }
    }
    buf_done(&out);
    responses_stream_free(&s);
    if (s != NULL) {
        abort();
    }
    json_decref(echo);
}

static void check_answer(const char *body, size_t n)
{
    json_t *chat = json_loadb(body, n, 0, NULL);
    json_t *echo =
        json_pack("{s:n,s:n,s:n,s:n,s:n,s:s,s:{},s:b,s:s,s:[],s:{},s:{}}", "instructions",
                  "max_output_tokens", "temperature", "top_p", "user", "model", "auto", "metadata",
                  "parallel_tool_calls", 1, "tool_choice", "auto", "tools", "text", "reasoning");
    struct provider_usage u = {.prompt_tokens = 3, .completion_tokens = 4, .seen = true};
    json_t *out = NULL;
    enum err e = responses_answer(echo, chat, &u, "resp_f", 1, "m", &out);
    if ((e == ERR_OK) != (out != NULL) ||
        (e == ERR_OK && !json_is_array(json_object_get(out, "output")))) {
        abort();
    }
    json_decref(out);
    json_decref(echo);
    json_decref(chat);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 65536) {
        return 0;
    }
    const char *rest = (const char *)data + 1;
    switch (data[0] % 3) {
    case 0:
        check_request(rest, size - 1);
        break;
    case 1:
        check_stream(rest, size - 1, data[0] >> 2);
        break;
    default:
        check_answer(rest, size - 1);
        break;
    }
    return 0;
}
