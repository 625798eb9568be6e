/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Fuzzes what the agent reads from a provider's 2xx answer: the body through
 * every adapter's response function (OpenAI-compatible, Azure, Anthropic),
 * chat and embeddings, with and without the full parse, and the body as one
 * stream event through every adapter's stream_event. The first byte picks the
 * case. Invariants: no crash; usage counts stay in 0..PROVIDER_MAX_TOKENS with
 * cached <= prompt (the plugin refuses a usage batch with a count outside its
 * bounds); an answer read in full is a JSON object, and a refused one leaves
 * no output behind; an answer accepted, also without the full parse (it is
 * then forwarded to the app as it is), is one JSON object. A chat answer read
 * in full is also turned into the stream a stream request gets for it: when
 * it is, its frames are "data: {...}" and the last is [DONE].
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/providers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A whole answer as a stream (a stream request the provider answered without one). */
static void check_answer_stream(const json_t *answer, bool include_usage)
{
    static const char done[] = "data: [DONE]\n\n";
    struct buf out;
    buf_init(&out, 1 << 20);
    if (provider_stream_from_answer(answer, include_usage, &out) == ERR_OK &&
        (out.len < sizeof(done) - 1 || memcmp(out.data, "data: {", 7) != 0 ||
         strcmp(out.data + out.len - (sizeof(done) - 1), done) != 0)) {
        abort();
    }
    buf_done(&out);
}

static void check_usage(const struct provider_usage *u)
{
    if (u->prompt_tokens < 0 || u->prompt_tokens > PROVIDER_MAX_TOKENS ||
        u->completion_tokens < 0 || u->completion_tokens > PROVIDER_MAX_TOKENS ||
        u->cached_tokens < 0 || u->cached_tokens > u->prompt_tokens) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const styles[] = {"openai", "azure", "anthropic"};
    if (size < 1 || size > 65536) {
        return 0;
    }
    const struct provider_adapter *ad = provider_find(styles[data[0] % 3]);
    if (ad == NULL) {
        abort();
    }
    enum provider_op op = (data[0] & 4) != 0 ? PROVIDER_EMBEDDINGS : PROVIDER_CHAT;
    const char *body = (const char *)data + 1;
    size_t n = size - 1;
    if ((data[0] & 8) == 0) {
        struct provider_usage u = {0};
        json_t *out = NULL;
        bool full = (data[0] & 16) != 0;
        if (ad->response(op, body, n, "m", full ? &out : NULL, &u) == ERR_OK) {
            if (full && !json_is_object(out)) {
                abort();
            }
            json_t *whole = json_loadb(body, n, 0, NULL);
            if (!json_is_object(whole)) {
                abort(); /* a body that is not one JSON document went to the app as a 2xx */
            }
            json_decref(whole);
            if (full && op == PROVIDER_CHAT) {
                check_answer_stream(out, (data[0] & 32) != 0);
            }
        } else if (out != NULL) {
            abort();
        }
        json_decref(out);
        check_usage(&u);
    } else {
        struct provider_stream st;
        memset(&st, 0, sizeof(st));
        struct buf out;
        buf_init(&out, 1 << 20);
        static const char *const events[] = {"", "message_start", "message_delta",
                                             "content_block_delta", "error"};
        enum err e = ad->stream_event(&st, events[(data[0] >> 4) % 5], body, n, &out);
        (void)e; /* refusing an event is fine; the invariant is the usage */
        check_usage(&st.usage);
        buf_done(&out);
    }
    return 0;
}
