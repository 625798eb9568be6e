/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Capped, wiping dynamic buffer. Growth doubles; every reallocation copies to a
 * fresh block and wipes the old one, because realloc may leave request bytes
 * (possibly keys) behind in freed memory.
 */
#include "common/buf.h"

#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(struct buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->alloc = 0;
    b->max = max;
    b->dirty = 0;
}

void buf_done(struct buf *b)
{
    if (b->data != NULL) {
        OPENSSL_cleanse(b->data, b->alloc);
        free(b->data);
    }
    b->data = NULL;
    b->len = 0;
    b->alloc = 0;
    b->dirty = 0;
}

/* Notes that [0, len] now holds data (the contents and their NUL). */
static void buf_mark(struct buf *b)
{
    if (b->len + 1 > b->dirty) {
        b->dirty = b->len + 1;
    }
}

void buf_reset(struct buf *b)
{
    if (b->data != NULL) {
        OPENSSL_cleanse(b->data, b->dirty < b->alloc ? b->dirty : b->alloc);
        b->data[0] = '\0';
    }
    b->len = 0;
    b->dirty = 0;
}

static enum err buf_grow(struct buf *b, size_t need)
{
    if (need > b->max) {
        buf_done(b);
        return ERR_TOOBIG;
    }
    if (need + 1 <= b->alloc) {
        return ERR_OK;
    }
    size_t n = b->alloc != 0 ? b->alloc : 64;
    while (n < need + 1) {
        n *= 2;
    }
    if (n > b->max + 1) {
        n = b->max + 1;
    }
    char *p = malloc(n);
    if (p == NULL) {
        return ERR_NOMEM;
    }
    if (b->data != NULL) {
        memcpy(p, b->data, b->len + 1);
        OPENSSL_cleanse(b->data, b->alloc);
        free(b->data);
    } else {
        p[0] = '\0';
    }
    b->data = p;
    b->alloc = n;
    b->dirty = b->len + 1; /* the rest of the new block never held data */
    return ERR_OK;
}

enum err buf_append(struct buf *b, const void *data, size_t len)
{
    if (len > b->max || b->len > b->max - len) {
        buf_done(b);
        return ERR_TOOBIG;
    }
    enum err e = buf_grow(b, b->len + len);
    if (e != ERR_OK) {
        return e;
    }
    if (len > 0) {
        memcpy(b->data + b->len, data, len);
    }
    b->len += len;
    b->data[b->len] = '\0';
    buf_mark(b);
    return ERR_OK;
}

enum err buf_append_str(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

enum err buf_printf(struct buf *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    enum err e = ERR_INVAL;
    if (n < 0) {
        goto out; /* the scratch may hold part of the output: wiped below */
    }
    if ((size_t)n < sizeof(small)) {
        e = buf_append(b, small, (size_t)n);
        goto out;
    }
    e = buf_grow(b, b->len + (size_t)n);
    if (e != ERR_OK) {
        goto out;
    }
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    buf_mark(b);
out:
    OPENSSL_cleanse(small, sizeof(small));
    return e;
}

char *buf_take(struct buf *b, size_t *ret_len)
{
    char *p = b->data;
    if (ret_len != NULL) {
        *ret_len = b->len;
    }
    b->data = NULL;
    b->len = 0;
    b->alloc = 0;
    b->dirty = 0;
    return p;
}
