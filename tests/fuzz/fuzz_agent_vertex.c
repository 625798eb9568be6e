/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Fuzzes the Vertex adapter (provider_vertex.c), which reads what Vertex
 * sends and what apps send. The first byte picks the case:
 *   0: the rest is a 2xx body through the adapter's response function, with
 *      and without the full parse;
 *   1: the rest is provider stream bytes through the SSE parser and the
 *      adapter's stream_event, one stream;
 *   2: the rest is an app's chat request through the adapter's build,
 *      streamed or not.
 * Invariants: no crash; usage counts in 0..PROVIDER_MAX_TOKENS with cached <=
 * prompt; an accepted answer read in full is a chat.completion object with a
 * non-empty choices array, and turns into a stream ending in [DONE]; what a
 * stream event writes is whole frames, and nothing is written after the
 * frame that ends the stream, and nothing at all by an event that fails; a
 * built request carries the key in its header only (never in the URL, nor in
 * the body unless the app's text held it), and a refusal that names a field
 * holds no "AIza".
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/provider_vertex.h"
#include "agent/providers.h"
#include "agent/sse.h"
#include "common/secret.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_KEY "AIzaFuzzCanary0123456789abcdefghijklmnop"

static void check_usage(const struct provider_usage *u)
{
    if (u->prompt_tokens < 0 || u->prompt_tokens > PROVIDER_MAX_TOKENS ||
        u->completion_tokens < 0 || u->completion_tokens > PROVIDER_MAX_TOKENS ||
        u->cached_tokens < 0 || u->cached_tokens > u->prompt_tokens) {
        abort();
    }
}

static void fz_response(const char *body, size_t n, bool full)
{
    const struct provider_adapter *ad = provider_find("vertex");
    struct provider_usage u = {0};
    json_t *out = NULL;
    enum err e = ad->response(PROVIDER_CHAT, body, n, "m", full ? &out : NULL, &u);
    check_usage(&u);
    if (e != ERR_OK || !full) {
        if (out != NULL) {
            abort(); /* a refused answer leaves nothing behind */
        }
        return;
    }
    const json_t *choices = json_object_get(out, "choices");
    if (!json_is_object(out) || !json_is_array(choices) || json_array_size(choices) == 0) {
        abort();
    }
    static const char done[] = "data: [DONE]\n\n";
    struct buf s;
    buf_init(&s, 1 << 20);
    if (provider_stream_from_answer(out, true, &s) == ERR_OK &&
        (s.len < sizeof(done) - 1 || strcmp(s.data + s.len - (sizeof(done) - 1), done) != 0)) {
        abort();
    }
    buf_done(&s);
    json_decref(out);
}

struct fz {
    struct provider_stream st;
    struct buf out;
};

static int fz_event(void *arg, const char *event, const char *d, size_t len)
{
    struct fz *f = arg;
    const struct provider_adapter *ad = provider_find("vertex");
    if (f->st.done) {
        return SSE_END; /* as the proxy: nothing after the end is read */
    }
    size_t before = f->out.len;
    enum err e = ad->stream_event(&f->st, event, d, len, &f->out);
    if (e == ERR_OK && f->out.len > before &&
        (f->out.len < 2 || memcmp(f->out.data + f->out.len - 2, "\n\n", 2) != 0)) {
        abort();
    }
    if (e != ERR_OK && f->out.len != before) {
        abort(); /* an event that fails writes nothing: no half tool call */
    }
    if (f->st.done && strstr(f->out.data != NULL ? f->out.data : "", "data: [DONE]\n\n") == NULL) {
        abort(); /* the end is [DONE] */
    }
    buf_reset(&f->out);
    check_usage(&f->st.usage);
    if (f->st.est_completion < 0) {
        abort();
    }
    return f->st.done ? SSE_END : 0;
}

static void fz_stream(const char *text, size_t n)
{
    struct fz f;
    memset(&f, 0, sizeof(f));
    f.st.skip_usage_chunk = n > 0 && (text[0] & 1) != 0;
    buf_init(&f.out, 1 << 20);
    struct sse p;
    sse_init(&p, 1 << 16, fz_event, &f);
    enum err e = sse_feed(&p, text, n);
    /* fz_event never stops the parser: only its own limits and refusals may fail it. */
    if (e != ERR_OK && e != ERR_TOOBIG && e != ERR_PROTO && e != ERR_NOMEM) {
        abort();
    }
    sse_done(&p);
    buf_done(&f.out);
}

static void fz_build(const char *text, size_t n, bool stream)
{
    static json_t *entry;
    static struct secret *key;
    if (entry == NULL) {
        if (secret_heap_init(1 << 16) != ERR_OK) {
            abort();
        }
        entry = json_pack("{s:s}", "base_url", "https://aiplatform.googleapis.com/v1");
        key = secret_from(FZ_KEY, sizeof(FZ_KEY) - 1);
        if (entry == NULL || key == NULL) {
            abort();
        }
    }
    json_t *req = json_loadb(text, n, 0, NULL);
    if (json_is_object(req)) {
        struct provider_call c = {.op = PROVIDER_CHAT,
                                  .req = req,
                                  .model = "gemini-2.5-flash",
                                  .stream = stream,
                                  .entry = entry,
                                  .key = key};
        struct provider_http h;
        memset(&h, 0, sizeof(h));
        enum err e = provider_find("vertex")->build(&c, &h);
        if (strstr(h.url, "AIza") != NULL || strstr(h.bad.param, "AIza") != NULL ||
            strstr(h.bad.msg, "AIza") != NULL ||
            (h.body != NULL && memmem(h.body, h.body_len, FZ_KEY, sizeof(FZ_KEY) - 1) != NULL &&
             memmem(text, n, FZ_KEY, sizeof(FZ_KEY) - 1) == NULL)) {
            abort();
        }
        if (e == ERR_OK && (h.body == NULL || h.headers == NULL)) {
            abort();
        }
        provider_http_done(&h);
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
    case 0:
        fz_response(text, n, (data[0] & 8) != 0);
        break;
    case 1:
        fz_stream(text, n);
        break;
    default:
        fz_build(text, n, (data[0] & 8) != 0);
        break;
    }
    return 0;
}
