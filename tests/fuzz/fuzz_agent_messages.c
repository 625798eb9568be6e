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
 *   4: an app's body through messages_invoke_body (Claude on Bedrock): the
 *      result parses, has no "model" or "stream", anthropic_version is the
 *      app's or Bedrock's, and it equals the app's body otherwise; and
 *      through messages_raw_predict_body (Vertex): parses, no "model".
 *   5: Bedrock event stream chunk payloads (split at NUL bytes) through
 *      messages_bedrock_event: what it writes is whole SSE frames
 *      ("event: <name>\ndata: <one line>\n\n"), counts bounded.
 * No crash, no leak (the replay runs under ASan with leak checking).
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/messages.h"
#include "common/buf.h"

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

static void check_invoke_body(const char *body, size_t n)
{
    json_t *j = json_loadb(body, n, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return;
    }
    char *out = NULL;
    size_t len = 0;
    enum err e = messages_invoke_body(body, n, MESSAGES_BEDROCK_VERSION, "b-1, b2", &out, &len);
    if (e == ERR_OK) {
        json_t *o = json_loadb(out, len, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(o) || json_object_get(o, "model") != NULL ||
            json_object_get(o, "stream") != NULL ||
            !json_is_string(json_object_get(o, "anthropic_version"))) {
            abort();
        }
        json_object_del(j, "model");
        json_object_del(j, "stream");
        if (json_object_get(j, "anthropic_version") == NULL) {
            json_object_set_new(j, "anthropic_version", json_string(MESSAGES_BEDROCK_VERSION));
        }
        if (json_object_get(j, "anthropic_beta") == NULL) {
            json_object_set_new(j, "anthropic_beta", json_pack("[ss]", "b-1", "b2"));
        }
        if (!json_equal(o, j)) {
            abort();
        }
        json_decref(o);
    } else if (e != ERR_NOMEM) {
        abort();
    }
    free(out);
    /* Vertex's rawPredict body: only the model goes; stream stays the app's. */
    out = NULL;
    e = messages_raw_predict_body(body, n, MESSAGES_VERTEX_VERSION, &out, &len);
    if (e == ERR_OK) {
        json_t *o = json_loadb(out, len, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(o) || json_object_get(o, "model") != NULL ||
            !json_is_string(json_object_get(o, "anthropic_version"))) {
            abort();
        }
        json_decref(o);
    } else if (e != ERR_NOMEM) {
        abort();
    }
    free(out);
    json_decref(j);
}

static void check_bedrock_events(const char *p, size_t n)
{
    struct provider_stream st;
    memset(&st, 0, sizeof(st));
    struct buf out;
    buf_init(&out, 1 << 16);
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || p[i] == '\0') {
            size_t before = out.len;
            enum err se = messages_bedrock_event(&st, (i & 1) != 0 ? "chunk" : "error", p + start,
                                                 i - start, &out);
            if (se != ERR_OK && se != ERR_PROTO && se != ERR_TOOBIG) {
                abort();
            }
            check_usage(&st.usage);
            if (se == ERR_OK && out.len > before) {
                /* One frame: "event: ", a name line, "data: ", one line, a blank line. */
                const char *f = out.data + before;
                size_t fl = out.len - before;
                const char *nl = memchr(f, '\n', fl);
                if (strncmp(f, "event: ", 7) != 0 || nl == NULL ||
                    strncmp(nl + 1, "data: ", 6) != 0 || fl < 2 || f[fl - 1] != '\n' ||
                    f[fl - 2] != '\n' ||
                    memchr(nl + 1, '\n', fl - (size_t)(nl + 1 - f)) != f + fl - 2 ||
                    memchr(f, '\r', fl) != NULL) {
                    abort();
                }
            }
            buf_reset(&out);
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
    switch (data[0] % 6) {
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
    case 4:
        check_invoke_body(p, n);
        break;
    case 5:
        check_bedrock_events(p, n);
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
