/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Strict base64 decoding (b64.h).
 */
#include "common/b64.h"

int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '+') {
        return 62;
    }
    return c == '/' ? 63 : -1;
}

/* Writes the bytes of one group (v: four 6-bit values, pad: its '=' count) to out at *n. */
static bool b64_group(const int v[4], size_t pad, unsigned char *out, size_t cap, size_t *n)
{
    /* Canonical only: the bits that padding drops must be zero. */
    if ((pad == 1 && (v[2] & 0x3) != 0) || (pad == 2 && (v[1] & 0xf) != 0)) {
        return false;
    }
    if (*n + 3 - pad > cap) {
        return false;
    }
    unsigned long w = ((unsigned long)v[0] << 18) | ((unsigned long)v[1] << 12) |
                      ((unsigned long)v[2] << 6) | (unsigned long)v[3];
    out[(*n)++] = (unsigned char)(w >> 16);
    if (pad < 2) {
        out[(*n)++] = (unsigned char)(w >> 8);
    }
    if (pad < 1) {
        out[(*n)++] = (unsigned char)w;
    }
    return true;
}

bool b64_decode(const char *in, size_t len, bool lines, unsigned char *out, size_t cap,
                size_t *ret_len)
{
    size_t n = 0, k = 0, pad = 0;
    int v[4];
    bool done = false; /* a padded group ended the input */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (lines && (c == '\n' || (c == '\r' && i + 1 < len && in[i + 1] == '\n'))) {
            continue;
        }
        if (done) {
            return false; /* anything after the padding */
        }
        if (c == '=') {
            /* xx== or xxx=: never in the first two places (a character after it fails below) */
            if (k < 2) {
                return false;
            }
            v[k++] = 0;
            pad++;
        } else {
            int x = b64_value(c);
            if (x < 0 || pad > 0) {
                return false; /* not base64, or a character after '=' */
            }
            v[k++] = x;
        }
        if (k == 4) {
            if (!b64_group(v, pad, out, cap, &n)) {
                return false;
            }
            done = pad > 0;
            k = 0;
        }
    }
    if (k != 0) {
        return false; /* a group cut short */
    }
    *ret_len = n;
    return true;
}
