/* SPDX-License-Identifier: MPL-2.0 */
/*
 * malloc + wipe-on-free. OPENSSL_cleanse cannot be elided by the compiler.
 */
#include "agent/jalloc.h"

#include <jansson.h>
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
    OPENSSL_cleanse(ptr, malloc_usable_size(ptr));
    free(ptr);
}

void jalloc_install(void)
{
    json_set_alloc_funcs(jalloc_malloc, jalloc_free);
}
