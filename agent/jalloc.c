/* SPDX-License-Identifier: MPL-2.0 */
/*
 * 16-byte prefix (keeps malloc's alignment) holding the usable size; free
 * wipes prefix and payload with OPENSSL_cleanse, which the compiler cannot
 * elide. Measured cost is in the README's benchmark section.
 */
#include "agent/jalloc.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <stdint.h>
#include <stdlib.h>

#define JALLOC_PREFIX 16

void *jalloc_malloc(size_t n)
{
    if (n > SIZE_MAX - JALLOC_PREFIX) {
        return NULL;
    }
    unsigned char *p = malloc(n + JALLOC_PREFIX);
    if (p == NULL) {
        return NULL;
    }
    *(size_t *)p = n;
    return p + JALLOC_PREFIX;
}

void jalloc_free(void *ptr)
{
    if (ptr == NULL) {
        return;
    }
    unsigned char *p = (unsigned char *)ptr - JALLOC_PREFIX;
    size_t n = *(size_t *)p;
    OPENSSL_cleanse(p, n + JALLOC_PREFIX);
    free(p);
}

void jalloc_install(void)
{
    json_set_alloc_funcs(jalloc_malloc, jalloc_free);
}
