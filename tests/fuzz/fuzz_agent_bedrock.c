/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Fuzzes the Bedrock path (untrusted bytes from Bedrock and from apps). The
 * first byte picks the mode and a split point:
 *   mode 0 (byte % 3 == 0): the rest is a ConverseStream body, fed to the
 *     event stream decoder in two reads split at byte / 3, every message
 *     through the Bedrock stream adapter as the proxy hands it over (its
 *     :event-type, or "error" for an exception). Invariants: no crash, the
 *     adapter writes whole SSE frames, counters never go negative, and an
 *     input the decoder took whole leaves it idle only on a message boundary
 *     (at least 16 bytes per message).
 *   mode 1: the rest is a 2xx Converse body through the adapter's response,
 *     with and without ret_json; an accepted answer is one JSON object with
 *     a choices array and bounded usage. The same bytes as an InvokeModel
 *     embedding answer: an accepted one has a data array and bounded usage.
 *   mode 2: the rest is an app's request body through the request
 *     translation, and through the embeddings translation for Titan and
 *     Cohere; a refusal names a field.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "agent/eventstream.h"
#include "agent/provider_bedrock.h"
#include "agent/providers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fz {
    struct provider_stream st;
    struct buf out;
    size_t messages;
};

static int fz_message(void *arg, const char *mtype, const char *etype, const char *payload,
                      size_t len)
{
    struct fz *f = arg;
    f->messages++;
    size_t before = f->out.len;
    const char *event = strcmp(mtype, "event") == 0 ? etype : "error";
    if (provider_bedrock_stream_event(&f->st, event, payload, len, &f->out) == ERR_OK &&
        f->out.len > before &&
        (f->out.len < 2 || memcmp(f->out.data + f->out.len - 2, "\n\n", 2) != 0)) {
        abort(); /* anything the adapter writes is whole frames */
    }
    buf_reset(&f->out);
    if (f->st.est_completion < 0 || f->st.usage.prompt_tokens < 0 ||
        f->st.usage.completion_tokens < 0 || f->st.usage.prompt_tokens > PROVIDER_MAX_TOKENS ||
        f->st.usage.completion_tokens > PROVIDER_MAX_TOKENS) {
        abort();
    }
    return f->st.done ? EVS_END : 0;
}

static void fz_stream(const char *text, size_t n, size_t cut)
{
    struct fz f;
    memset(&f, 0, sizeof(f));
    buf_init(&f.out, 1 << 20);
    struct evs p;
    evs_init(&p, 1 << 16, fz_message, &f);
    if (evs_feed(&p, text, cut) == ERR_OK && evs_feed(&p, text + cut, n - cut) == ERR_OK &&
        !evs_ended(&p) && evs_idle(&p) && n < f.messages * EVS_OVERHEAD) {
        abort(); /* every message the decoder took is at least its framing */
    }
    evs_done(&p);
    buf_done(&f.out);
}

static void fz_response(const char *text, size_t n)
{
    struct provider_usage u = {0};
    json_t *out = NULL;
    if (provider_bedrock_response(PROVIDER_CHAT, text, n, "m", &out, &u) == ERR_OK) {
        if (!json_is_object(out) || !json_is_array(json_object_get(out, "choices")) ||
            u.prompt_tokens < 0 || u.prompt_tokens > PROVIDER_MAX_TOKENS ||
            u.completion_tokens < 0 || u.completion_tokens > PROVIDER_MAX_TOKENS ||
            u.cached_tokens > u.prompt_tokens) {
            abort();
        }
    }
    json_decref(out);
    /* Usage only (no ret_json), as the proxy may ask: the same outcome, nothing leaked. */
    struct provider_usage u2 = {0};
    enum err e2 = provider_bedrock_response(PROVIDER_CHAT, text, n, "m", NULL, &u2);
    if (e2 == ERR_OK && u2.prompt_tokens != u.prompt_tokens) {
        abort();
    }
    struct provider_usage u3 = {0};
    out = NULL;
    enum err e3 = provider_bedrock_response(PROVIDER_EMBEDDINGS, text, n, "m", &out, &u3);
    if ((e3 == ERR_OK) != (out != NULL) ||
        (e3 == ERR_OK && !json_is_array(json_object_get(out, "data"))) || u3.prompt_tokens < 0 ||
        u3.prompt_tokens > PROVIDER_MAX_TOKENS || u3.completion_tokens != 0) {
        abort();
    }
    json_decref(out);
}

static void fz_request(const char *text, size_t n)
{
    json_t *req = json_loadb(text, n, 0, NULL);
    if (req == NULL) {
        return;
    }
    struct provider_bad bad;
    memset(&bad, 0, sizeof(bad));
    json_t *out = NULL;
    enum err e = provider_bedrock_request(req, 100, &bad, &out);
    if ((e == ERR_OK) != (out != NULL) || (e == ERR_INVAL && bad.param[0] == '\0')) {
        abort();
    }
    json_decref(out);
    static const char *const embed_models[] = {"amazon.titan-embed-text-v2:0",
                                               "cohere.embed-english-v3"};
    for (size_t i = 0; i < sizeof(embed_models) / sizeof(embed_models[0]); i++) {
        memset(&bad, 0, sizeof(bad));
        out = NULL;
        e = provider_bedrock_embed_request(req, embed_models[i], &bad, &out);
        if ((e == ERR_OK) != (out != NULL) || (e == ERR_INVAL && bad.param[0] == '\0') ||
            (e != ERR_OK && e != ERR_INVAL && e != ERR_UNSUPPORTED && e != ERR_NOMEM)) {
            abort();
        }
        json_decref(out);
    }
    json_decref(req);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 65536) {
        return 0;
    }
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    switch (data[0] % 3) {
    case 0: {
        size_t cut = (size_t)(data[0] / 3);
        fz_stream(text, n, cut < n ? cut : n);
        break;
    }
    case 1:
        fz_response(text, n);
        break;
    default:
        fz_request(text, n);
        break;
    }
    return 0;
}
