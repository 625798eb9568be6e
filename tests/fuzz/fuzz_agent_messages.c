/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Fuzzes Anthropic's Messages passthrough (agent/messages.c). The first byte
 * picks the case, the rest is the input:
 *   0: an app's body (as jansson parses it, duplicates refused, as the proxy
 *      reads it) through messages_validate, messages_needs,
 *      messages_prompt_estimate and messages_body: the spliced body parses,
 *      its model is the one given, and without "model" it equals the app's
 *      body without it; the estimate stays within 0..PROVIDER_MAX_TOKENS.
 *   1: a provider's 2xx body through the adapter's response: usage counts
 *      within 0..PROVIDER_MAX_TOKENS, cached at most prompt.
 *   2: provider stream events (split at NUL bytes) through stream_event:
 *      nothing written, counts bounded.
 *   3: an anthropic-version or anthropic-beta value: an accepted one holds
 *      no CR, LF or space-only token and fits its bound.
 * No crash, no leak (the replay runs under ASan with leak checking).
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/messages.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_usage(const struct provider_usage *u)
{
    if (u->prompt_tokens < 0 || u->prompt_tokens > PROVIDER_MAX_TOKENS ||
        u->completion_tokens < 0 || u->completion_tokens > PROVIDER_MAX_TOKENS ||
        u->cached_tokens < 0 || u->cached_tokens > u->prompt_tokens) {
        abort();
    }
}

static void check_body(const char *body, size_t n)
{
    json_t *j = json_loadb(body, n, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return;
    }
    struct messages_bad bad;
    enum err ve = messages_validate(j, (n & 1) != 0, &bad);
    if (ve != ERR_OK && ve != ERR_INVAL) {
        abort();
    }
    (void)messages_needs(j, false);
    long long est = messages_prompt_estimate(j);
    if (est < 0 || est > PROVIDER_MAX_TOKENS) {
        abort();
    }
    char *out = NULL;
    size_t len = 0;
    enum err e = messages_body(body, n, "m-\"1", &out, &len);
    if (e == ERR_OK) {
        json_t *o = json_loadb(out, len, JSON_REJECT_DUPLICATES, NULL);
        const char *model = json_string_value(json_object_get(o, "model"));
        if (o == NULL || model == NULL || strcmp(model, "m-\"1") != 0) {
            abort();
        }
        json_object_del(o, "model");
        json_object_del(j, "model");
        if (!json_equal(o, j)) {
            abort();
        }
        json_decref(o);
    } else if (e != ERR_NOMEM) {
        abort();
    }
    free(out);
    json_decref(j);
}

static void check_events(const char *p, size_t n)
{
    const struct provider_adapter *ad = messages_adapter();
    struct provider_stream st;
    memset(&st, 0, sizeof(st));
    struct buf out;
    buf_init(&out, 4096);
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || p[i] == '\0') {
            enum err se = ad->stream_event(&st, "message_delta", p + start, i - start, &out);
            if (se != ERR_OK && se != ERR_PROTO) {
                abort();
            }
            check_usage(&st.usage);
            if (out.len != 0 || st.est_completion < 0) {
                abort();
            }
            start = i + 1;
        }
    }
    buf_done(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    switch (data[0] % 4) {
    case 0:
        check_body(p, n);
        break;
    case 1: {
        struct provider_usage u = {0};
        json_t *ret = NULL;
        enum err re = messages_adapter()->response(PROVIDER_CHAT, p, n, "m", &ret, &u);
        if (ret != NULL || (re != ERR_OK && re != ERR_PROTO && re != ERR_UPSTREAM)) {
            abort();
        }
        check_usage(&u);
        break;
    }
    case 2:
        check_events(p, n);
        break;
    default: {
        char *v = malloc(n + 1);
        if (v == NULL) {
            return 0;
        }
        memcpy(v, p, n);
        v[n] = '\0';
        if (messages_beta_valid(v) &&
            (strpbrk(v, "\r\n;") != NULL || strlen(v) > MESSAGES_MAX_BETA)) {
            abort();
        }
        if (messages_version_valid(v) && strlen(v) != MESSAGES_VERSION_LEN) {
            abort();
        }
        free(v);
        break;
    }
    }
    return 0;
}
