/* SPDX-License-Identifier: MPL-2.0 */
/*
 * malloc + wipe-on-free (explicit_bzero cannot be elided by the compiler).
 */
#include "agent/jalloc.h"

#include <curl/curl.h>
#include <jansson.h>
#include <string.h>
#include <malloc.h>
#include <openssl/crypto.h>
#include <stdlib.h>

void *jalloc_malloc(size_t n)
{
    return malloc(n);
}

void jalloc_free(void *ptr)
{
    if (ptr == NULL) {
        return;
    }
    /*
     * explicit_bzero, not OPENSSL_cleanse: both survive the optimiser, but
     * glibc's is a vectorised memset and OpenSSL's a plain store loop; this
     * runs on every free of curl, OpenSSL and jansson, record buffers included.
     */
    explicit_bzero(ptr, malloc_usable_size(ptr));
    free(ptr);
}

void jalloc_install(void)
{
    json_set_alloc_funcs(jalloc_malloc, jalloc_free);
}

/* realloc that never leaves the old block's bytes behind in freed memory. */
static void *jalloc_realloc(void *ptr, size_t n)
{
    if (ptr == NULL) {
        return malloc(n);
    }
    if (n == 0) {
        jalloc_free(ptr);
        return NULL;
    }
    size_t old = malloc_usable_size(ptr);
    if (n <= old) {
        return ptr;
    }
    void *p = malloc(n);
    if (p == NULL) {
        return NULL;
    }
    memcpy(p, ptr, old);
    jalloc_free(ptr);
    return p;
}

static char *jalloc_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p != NULL) {
        memcpy(p, s, n);
    }
    return p;
}

static void *jalloc_calloc(size_t n, size_t size)
{
    return calloc(n, size);
}

static void *jalloc_ossl_malloc(size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    return malloc(n);
}

static void *jalloc_ossl_realloc(void *p, size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    return jalloc_realloc(p, n);
}

static void jalloc_ossl_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    jalloc_free(p);
}

int jalloc_install_libs(void)
{
    /* Fails only if OpenSSL already allocated: then main's order is wrong. */
    if (CRYPTO_set_mem_functions(jalloc_ossl_malloc, jalloc_ossl_realloc, jalloc_ossl_free) != 1) {
        return -1;
    }
    if (curl_global_init_mem(CURL_GLOBAL_DEFAULT, jalloc_malloc, jalloc_free, jalloc_realloc,
                             jalloc_strdup, jalloc_calloc) != CURLE_OK) {
        return -1;
    }
    return 0;
}
