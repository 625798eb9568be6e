/* SPDX-License-Identifier: MPL-2.0 */
/* Compact JSON encoder equal to json_dumps(JSON_COMPACT): see jsonw.h. */
#include "common/jsonw.h"

#include <stdint.h>
#include <openssl/crypto.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct jw {
    char *data;
    size_t len;
    size_t alloc;
    bool failed;
};

/* Grows the buffer for n more bytes plus the NUL; copies and wipes the old block. */
static bool jw_grow(struct jw *w, size_t n)
{
    if (w->failed) {
        return false;
    }
    size_t want = w->alloc != 0 ? w->alloc : 1024;
    while (want - w->len <= n) {
        if (want > SIZE_MAX / 2) {
            w->failed = true;
            return false;
        }
        want *= 2;
    }
    char *p = malloc(want);
    if (p == NULL) {
        w->failed = true;
        return false;
    }
    if (w->data != NULL) {
        memcpy(p, w->data, w->len);
        OPENSSL_cleanse(w->data, w->alloc);
        free(w->data);
    }
    w->data = p;
    w->alloc = want;
    return true;
}

/* Room for n more bytes plus the NUL; false when the buffer cannot grow (the dump fails). */
static inline bool jw_room(struct jw *w, size_t n)
{
    return n < w->alloc - w->len || jw_grow(w, n);
}

static void jw_put(struct jw *w, const char *s, size_t n)
{
    if (jw_room(w, n)) {
        memcpy(w->data + w->len, s, n);
        w->len += n;
    }
}

static void jw_byte(struct jw *w, char c)
{
    if (jw_room(w, 1)) {
        w->data[w->len++] = c;
    }
}

/*
 * 0: copied as is; 1: \uXXXX; otherwise the letter after the backslash.
 * jansson escapes '"', '\\' and every byte below 0x20 (with the short forms
 * for \b \f \n \r \t); '/' and bytes from 0x7f up are written as they are.
 */
static const unsigned char jw_esc[256] = {
    [0x00] = 1, [0x01] = 1,   [0x02] = 1,   [0x03] = 1,   [0x04] = 1,  [0x05] = 1,    [0x06] = 1,
    [0x07] = 1, [0x08] = 'b', [0x09] = 't', [0x0a] = 'n', [0x0b] = 1,  [0x0c] = 'f',  [0x0d] = 'r',
    [0x0e] = 1, [0x0f] = 1,   [0x10] = 1,   [0x11] = 1,   [0x12] = 1,  [0x13] = 1,    [0x14] = 1,
    [0x15] = 1, [0x16] = 1,   [0x17] = 1,   [0x18] = 1,   [0x19] = 1,  [0x1a] = 1,    [0x1b] = 1,
    [0x1c] = 1, [0x1d] = 1,   [0x1e] = 1,   [0x1f] = 1,   ['"'] = '"', ['\\'] = '\\',
};

/*
 * Does any of the 8 bytes in x need escaping (below 0x20, '"' or '\\')?
 * The word-at-a-time tests hasless(x, 0x20) and haszero(x ^ c) of "Bit
 * Twiddling Hacks": a borrow can mark a byte above one that matches, never a
 * word where none does, so the answer for the word is exact.
 */
static inline bool jw_word_clean(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t lt20 = (x - ones * 0x20) & ~x & highs;
    uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
    uint64_t has_q = (q - ones) & ~q & highs, has_b = (b - ones) & ~b & highs;
    return (lt20 | has_q | has_b) == 0;
}

static void jw_string(struct jw *w, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    jw_byte(w, '"');
    size_t run = 0, i = 0;
    while (i < n) {
        if (n - i >= 8) {
            uint64_t x;
            memcpy(&x, p + i, 8);
            if (jw_word_clean(x)) {
                i += 8;
                continue;
            }
        }
        unsigned char e = jw_esc[p[i]];
        if (e == 0) {
            i++;
            continue;
        }
        jw_put(w, s + run, i - run);
        if (e == 1) {
            static const char hex[] = "0123456789ABCDEF";
            char u[6] = {'\\', 'u', '0', '0', hex[p[i] >> 4], hex[p[i] & 15]};
            jw_put(w, u, 6);
        } else {
            char esc[2] = {'\\', (char)e};
            jw_put(w, esc, 2);
        }
        run = ++i;
    }
    jw_put(w, s + run, n - run);
    jw_byte(w, '"');
}

/* Decimal text of an integer, as printf's %lld (json_dumps' format). */
static void jw_int(struct jw *w, json_int_t v)
{
    char num[24];
    char *end = num + sizeof(num), *q = end;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do {
        *--q = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0) {
        *--q = '-';
    }
    jw_put(w, q, (size_t)(end - q));
}

static int jw_real_cb(const char *buffer, size_t size, void *data)
{
    jw_put(data, buffer, size);
    return 0;
}

static void jw_value(struct jw *w, const json_t *v, int depth)
{
    if (depth > JSONW_MAX_DEPTH) {
        w->failed = true;
        return;
    }
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        jw_byte(w, '{');
        bool first = true;
        const char *k;
        size_t klen;
        json_t *m;
        json_object_keylen_foreach((json_t *)v, k, klen, m)
        {
            if (!first) {
                jw_byte(w, ',');
            }
            first = false;
            jw_string(w, k, klen);
            jw_byte(w, ':');
            jw_value(w, m, depth + 1);
        }
        jw_byte(w, '}');
        break;
    }
    case JSON_ARRAY: {
        jw_byte(w, '[');
        size_t i;
        json_t *m;
        json_array_foreach(v, i, m)
        {
            if (i > 0) {
                jw_byte(w, ',');
            }
            jw_value(w, m, depth + 1);
        }
        jw_byte(w, ']');
        break;
    }
    case JSON_STRING:
        jw_string(w, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        jw_int(w, json_integer_value(v));
        break;
    case JSON_REAL:
        if (json_dump_callback(v, jw_real_cb, w, JSON_COMPACT | JSON_ENCODE_ANY) != 0) {
            w->failed = true;
        }
        break;
    case JSON_TRUE:
        jw_put(w, "true", 4);
        break;
    case JSON_FALSE:
        jw_put(w, "false", 5);
        break;
    case JSON_NULL:
        jw_put(w, "null", 4);
        break;
    default:
        w->failed = true;
        break;
    }
}

char *jsonw_dumps(const json_t *v, size_t *ret_len)
{
    if (!json_is_object(v) && !json_is_array(v)) {
        return NULL;
    }
    struct jw w = {0};
    jw_value(&w, v, 0);
    if (w.failed || !jw_room(&w, 0)) {
        if (w.data != NULL) {
            OPENSSL_cleanse(w.data, w.alloc);
            free(w.data);
        }
        return NULL;
    }
    w.data[w.len] = '\0';
    if (ret_len != NULL) {
        *ret_len = w.len;
    }
    return w.data;
}
