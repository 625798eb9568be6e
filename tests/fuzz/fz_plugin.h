/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The keys engine on in-memory storage, as the plugin fuzz targets start it.
 * A header (not a .c) because libFuzzer builds compile one target file.
 */
#ifndef BYOK_TESTS_FUZZ_FZ_PLUGIN_H
#define BYOK_TESTS_FUZZ_FZ_PLUGIN_H

#include <openssl/rand.h>
#include <stdlib.h>

#include "common/log.h"
#include "common/secret.h"
#include "plugin/byok.h"
#include "plugin/storage.h"

/* Aborts on failure: a target that cannot start has nothing to fuzz. */
static inline void fz_plugin_start(struct byok **ret_byok, struct storage **ret_storage)
{
    log_init(NULL, LOGL_OFF);
    /*
     * OpenSSL's DRBGs first: made after the secure heap exists, they are
     * reachable only through it (an mmap'ed arena LeakSanitizer does not
     * scan), and libFuzzer's leak check reports them as leaked.
     */
    unsigned char b[16];
    if (RAND_bytes(b, sizeof(b)) != 1 || RAND_priv_bytes(b, sizeof(b)) != 1) {
        abort();
    }
    if (secret_heap_init((size_t)4 * 1024 * 1024) != ERR_OK) {
        abort();
    }
    *ret_byok = byok_new();
    *ret_storage = storage_mem_new();
    if (*ret_byok == NULL || *ret_storage == NULL ||
        byok_initialize(*ret_byok, *ret_storage) != ERR_OK) {
        abort();
    }
}

#endif
