/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Thin layer over OpenSSL's secure heap (CRYPTO_secure_malloc_init). It adds
 * what the heap lacks: refusal to silently fall back to normal malloc, and the
 * process-wide hardening that makes locked memory meaningful (a core dump or
 * ptrace attach would otherwise read it).
 */
#include "common/secret.h"

#include <openssl/crypto.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

/* The arena's size, from the first successful secret_heap_init. */
static size_t secret_heap_size;
/* CRYPTO_secure_malloc_init returned 1: mlock and MADV_DONTDUMP both took. */
static bool secret_heap_is_locked;

enum err secret_heap_init(size_t size)
{
    size_t n = (size_t)64 * 1024;
    while (n < size) {
        n *= 2;
    }
    struct rlimit rl = {0, 0};
    (void)setrlimit(RLIMIT_CORE, &rl);
    (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    if (CRYPTO_secure_malloc_initialized()) {
        return ERR_OK;
    }
    /* Returns 2 when the arena works but mlock or madvise(MADV_DONTDUMP) failed. */
    int rc = CRYPTO_secure_malloc_init(n, 32);
    if (rc == 0) {
        return ERR_NOMEM;
    }
    secret_heap_size = n;
    secret_heap_is_locked = rc == 1;
    return ERR_OK;
}

bool secret_heap_locked(void)
{
    return secret_heap_is_locked;
}

size_t secret_heap_free(void)
{
    size_t used = CRYPTO_secure_used();
    return secret_heap_size > used ? secret_heap_size - used : 0;
}

struct secret *secret_new(size_t len)
{
    if (len > (size_t)SECRET_MAX_LEN || !CRYPTO_secure_malloc_initialized()) {
        return NULL;
    }
    struct secret *s = OPENSSL_secure_zalloc(sizeof(*s) + len + 1);
    if (s == NULL) {
        return NULL;
    }
    if (!CRYPTO_secure_allocated(s)) {
        /* The heap fell back to malloc: refuse rather than hold a key in swappable memory. */
        OPENSSL_clear_free(s, sizeof(*s) + len + 1);
        return NULL;
    }
    s->len = len;
    return s;
}

struct secret *secret_from(const void *data, size_t len)
{
    struct secret *s = secret_new(len);
    if (s != NULL && len > 0) {
        memcpy(s->data, data, len);
    }
    return s;
}

void secret_free(struct secret **s)
{
    if (s == NULL || *s == NULL) {
        return;
    }
    OPENSSL_secure_clear_free(*s, sizeof(**s) + (*s)->len + 1);
    *s = NULL;
}

int secret_equal(const struct secret *a, const struct secret *b)
{
    if (a == NULL || b == NULL || a->len != b->len) {
        return 0;
    }
    return CRYPTO_memcmp(a->data, b->data, a->len) == 0;
}
