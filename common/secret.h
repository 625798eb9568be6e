/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Secrets (provider keys, data keys, KEKs) live only in OpenSSL's secure heap:
 * one mlock'ed, MADV_DONTDUMP'ed arena with guard pages. secret_new refuses to
 * fall back to ordinary memory: if the arena is full the caller gets NULL.
 * Freeing wipes. There is no accessor that returns a secret as a C string for
 * formatting; code that needs the bytes reads s->data / s->len directly and
 * must not copy them anywhere that is not wiped.
 */
#ifndef BYOK_COMMON_SECRET_H
#define BYOK_COMMON_SECRET_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"

/* Largest secret we hold (a provider key or a service-account JSON). */
#define SECRET_MAX_LEN (64 * 1024)

struct secret {
    size_t len;
    unsigned char data[]; /* len bytes, then one NUL so text keys can be passed to libraries */
};

/*
 * Sets up the secure heap (size rounded up to a power of two, at least 64 KiB)
 * and hardens the process: not dumpable, RLIMIT_CORE 0. Call once at start-up,
 * before threads. ERR_NOMEM if the arena cannot be mapped. An arena that
 * could not be locked in memory or kept out of core files (mlock or
 * MADV_DONTDUMP refused: RLIMIT_MEMLOCK, a seccomp filter) still works:
 * secret_heap_locked says so, for the caller to warn.
 */
MUST_USE enum err secret_heap_init(size_t size);

/* Whether the arena is locked in memory and excluded from core dumps. */
bool secret_heap_locked(void);

/*
 * Bytes of the arena not handed out (0 before secret_heap_init). Blocks are
 * powers of two: a secret of n bytes takes the next one above n + 9.
 */
size_t secret_heap_free(void);

/* A zeroed secret of len bytes, or NULL (arena full, len too large). */
struct secret *secret_new(size_t len);
/* A copy of data into the secure heap, or NULL. */
struct secret *secret_from(const void *data, size_t len);
/* Wipes and frees *s, sets it to NULL. Accepts NULL and *s == NULL. */
void secret_free(struct secret **s);
/* Constant-time equality. */
int secret_equal(const struct secret *a, const struct secret *b);

#endif
