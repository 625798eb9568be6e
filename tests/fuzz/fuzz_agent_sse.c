/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Fuzzes the agent's stream path: provider bytes (split at a point taken from
 * the input) through the SSE parser, and every event through the OpenAI and
 * Anthropic stream adapters. Invariants: no crash, the translated output is
 * whole SSE frames, and usage counters and the completion estimate never go
 * negative.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/providers.h"
#include "agent/sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fz {
    const struct provider_adapter *ad[2];
    struct provider_stream st[2];
    struct buf out;
};

static int fz_event(void *arg, const char *event, const char *d, size_t len)
{
    struct fz *f = arg;
    for (int i = 0; i < 2; i++) {
        size_t before = f->out.len;
        if (f->ad[i]->stream_event(&f->st[i], event, d, len, &f->out) == ERR_OK &&
            f->out.len > before) {
            /* Anything an adapter writes is whole frames: it ends with a blank line. */
            if (f->out.len < 2 || memcmp(f->out.data + f->out.len - 2, "\n\n", 2) != 0) {
                abort();
            }
        }
    }
    buf_reset(&f->out);
    for (int i = 0; i < 2; i++) {
        if (f->st[i].est_completion < 0 || f->st[i].usage.prompt_tokens < 0 ||
            f->st[i].usage.completion_tokens < 0) {
            abort();
        }
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 65536) {
        return 0;
    }
    struct fz f;
    memset(&f, 0, sizeof(f));
    f.ad[0] = provider_find("openai");
    f.ad[1] = provider_find("anthropic");
    buf_init(&f.out, 1 << 20);
    struct sse p;
    sse_init(&p, 1 << 16, fz_event, &f);
    size_t cut = data[0] % size;
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    if (cut > n) {
        cut = n;
    }
    /* A leading UTF-8 BOM is not part of the stream: a stream of only a BOM is empty. */
    size_t bom = n >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
    if (sse_feed(&p, text, cut) == ERR_OK && sse_feed(&p, text + cut, n - cut) == ERR_OK &&
        sse_idle(&p) && n > bom && text[n - 1] != '\n' && text[n - 1] != '\r') {
        abort(); /* input not ending a line cannot leave the parser idle */
    }
    sse_done(&p);
    buf_done(&f.out);
    return 0;
}
