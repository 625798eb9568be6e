/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Fuzzes provider_error_parse and provider_error_clean, which read a
 * provider's error answer for the app and redact the tenant's key from it
 * (agent/provider_error.h). Input: two length bytes L1 and L2, then L1 and L2
 * bytes made into two secrets (mapped onto the characters provider keys and
 * access tokens are made of: letters, digits, "-_.~+/="; a key value with
 * whitespace or control characters is refused on write), then the body.
 * Invariants, for the parse and for the clean of the body as text:
 * - a body without a message leaves every field empty;
 * - the message is at most PROVIDER_ERROR_MAX_MESSAGE bytes plus the "…",
 *   valid UTF-8, without control characters; type, code and param are
 *   identifiers within their bound;
 * - no field holds a run of PROVIDER_ERROR_MIN_SECRET bytes of a secret (of
 *   the whole secret when it is shorter), secrets that occur in the
 *   "[redacted]" marker itself aside.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/provider_error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_MARK "[redacted]"

static const char fz_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~+/=";

/* Whether text (len bytes) holds a run of a secret that should have been redacted. */
static int fz_leaks(const char *text, size_t len, const struct provider_secret *s)
{
    if (s->len == 0) {
        return 0;
    }
    size_t w = s->len < PROVIDER_ERROR_MIN_SECRET ? s->len : PROVIDER_ERROR_MIN_SECRET;
    for (size_t i = 0; i + w <= s->len; i++) {
        if (memmem(text, len, s->data + i, w) != NULL) {
            return 1;
        }
    }
    return 0;
}

/* Whether a secret's run could be read in the marker (a short secret such as "red"). */
static int fz_in_marker(const struct provider_secret *s)
{
    const size_t ml = sizeof(FZ_MARK) - 1;
    return s->len > 0 && s->len < PROVIDER_ERROR_MIN_SECRET && s->len <= ml &&
           memmem(FZ_MARK, ml, s->data, s->len) != NULL;
}

static void fz_check_message(const char *m, const struct provider_secret *s, size_t ns)
{
    size_t len = strlen(m);
    if (len > PROVIDER_ERROR_MAX_MESSAGE + 3) {
        abort();
    }
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)m[i];
        if (c < 0x20 || c == 0x7f) {
            abort();
        }
        size_t n = 1;
        if (c >= 0x80) {
            n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
            if (n == 0 || c > 0xf4 || i + n > len) {
                abort();
            }
            for (size_t k = 1; k < n; k++) {
                if (((unsigned char)m[i + k] & 0xc0) != 0x80) {
                    abort();
                }
            }
        }
        i += n;
    }
    for (size_t k = 0; k < ns; k++) {
        if (fz_leaks(m, len, &s[k])) {
            abort();
        }
    }
}

static void fz_check_ident(const char *id, const struct provider_secret *s, size_t ns)
{
    size_t len = strlen(id);
    if (len > PROVIDER_ERROR_MAX_IDENT) {
        abort();
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)id[i];
        if (c <= 0x20 || c >= 0x7f) {
            abort();
        }
    }
    for (size_t k = 0; k < ns; k++) {
        if (fz_leaks(id, len, &s[k])) {
            abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > PROVIDER_ERROR_MAX_BODY + 512) {
        return 0;
    }
    size_t l1 = data[0], l2 = data[1];
    if (2 + l1 + l2 > size) {
        return 0;
    }
    char sec[2][256];
    struct provider_secret s[2];
    const uint8_t *p = data + 2;
    for (int k = 0; k < 2; k++) {
        size_t l = k == 0 ? l1 : l2;
        for (size_t i = 0; i < l; i++) {
            sec[k][i] = fz_alphabet[p[i] % (sizeof(fz_alphabet) - 1)];
        }
        s[k].data = sec[k];
        s[k].len = l;
        p += l;
        if (fz_in_marker(&s[k])) {
            return 0;
        }
    }
    const char *body = (const char *)p;
    size_t blen = size - 2 - l1 - l2;

    struct provider_error pe;
    memset(&pe, 0x5a, sizeof(pe));
    bool got = provider_error_parse(body, blen, s, 2, &pe);
    if (!got && (pe.message[0] != '\0' || pe.type[0] != '\0' || pe.code[0] != '\0' ||
                 pe.param[0] != '\0')) {
        abort();
    }
    if (got && pe.message[0] == '\0') {
        abort();
    }
    if (memchr(pe.message, '\0', sizeof(pe.message)) == NULL ||
        memchr(pe.type, '\0', sizeof(pe.type)) == NULL ||
        memchr(pe.code, '\0', sizeof(pe.code)) == NULL ||
        memchr(pe.param, '\0', sizeof(pe.param)) == NULL) {
        abort();
    }
    fz_check_message(pe.message, s, 2);
    fz_check_ident(pe.type, s, 2);
    fz_check_ident(pe.code, s, 2);
    fz_check_ident(pe.param, s, 2);

    /* The last step alone, over the body as text (any bytes). */
    char out[PROVIDER_ERROR_MAX_MESSAGE + 4];
    provider_error_clean(body, blen, s, 2, out);
    if (memchr(out, '\0', sizeof(out)) == NULL) {
        abort();
    }
    fz_check_message(out, s, 2);
    return 0;
}
