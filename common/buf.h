/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Owned byte buffer with a hard cap given at init (curl's dynbuf): appending
 * past the cap fails with ERR_TOOBIG and wipes what was there, so a peer can
 * never make us hold more than the cap. Contents are always NUL-terminated.
 * buf_done wipes before freeing: buffers may have held request bodies.
 */
#ifndef BYOK_COMMON_BUF_H
#define BYOK_COMMON_BUF_H

#include <stddef.h>

#include "common/err.h"

struct buf {
    char *data; /* NULL until the first append */
    size_t len;
    size_t alloc;
    size_t max; /* cap on len */
    /*
     * Bytes [0, dirty) may hold data since the last wipe: what buf_reset
     * wipes, so that after one large use each later reset costs its own
     * size, not the whole allocation (also covers a len shortened by hand).
     */
    size_t dirty;
};

void buf_init(struct buf *b, size_t max);
/* Wipes and frees; the buffer may be reused after buf_init. Accepts a zeroed struct. */
void buf_done(struct buf *b);
/* Wipes the contents, keeps the allocation. */
void buf_reset(struct buf *b);

MUST_USE enum err buf_append(struct buf *b, const void *data, size_t len);
MUST_USE enum err buf_append_str(struct buf *b, const char *s);
MUST_USE enum err buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Hands the data to the caller (who frees it); the buffer is left empty. */
char *buf_take(struct buf *b, size_t *ret_len);

#endif
