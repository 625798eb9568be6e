/* SPDX-License-Identifier: MPL-2.0 */
/* Well-formed UTF-8 per RFC 3629's table (section 4); no decoding to code points. */
#include "common/utf8.h"

size_t utf8_char_len(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    unsigned char lo = 0x80, hi = 0xBF;
    size_t n;
    if (p[0] != 0 && p[0] < 0x80) {
        return 1;
    }
    if (p[0] >= 0xC2 && p[0] <= 0xDF) {
        n = 2;
    } else if (p[0] >= 0xE0 && p[0] <= 0xEF) {
        n = 3;
        lo = p[0] == 0xE0 ? 0xA0 : 0x80; /* E0 80..9F would be overlong */
        hi = p[0] == 0xED ? 0x9F : 0xBF; /* ED A0..BF would be a surrogate */
    } else if (p[0] >= 0xF0 && p[0] <= 0xF4) {
        n = 4;
        lo = p[0] == 0xF0 ? 0x90 : 0x80; /* F0 80..8F would be overlong */
        hi = p[0] == 0xF4 ? 0x8F : 0xBF; /* F4 90.. would pass U+10FFFF */
    } else {
        return 0;
    }
    /* A NUL is never a continuation byte, so the loop stops at the end of s. */
    if (p[1] < lo || p[1] > hi) {
        return 0;
    }
    for (size_t i = 2; i < n; i++) {
        if (p[i] < 0x80 || p[i] > 0xBF) {
            return 0;
        }
    }
    return n;
}

size_t utf8_put_replacement(char *out)
{
    out[0] = '\xef';
    out[1] = '\xbf';
    out[2] = '\xbd';
    return 3;
}
