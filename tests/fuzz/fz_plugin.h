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
#include "plugin/framework.h"
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

/*
 * Runs one request as Vault does (the existence check first for writes) and
 * checks what every reply must hold: an internal failure is reported in the
 * response, and the response serialises (Vault needs valid JSON). Aborts
 * otherwise. data stays the caller's.
 */
static inline void fz_plugin_request(struct byok *b, struct storage *st, enum fw_op op,
                                     const char *path, json_t *data)
{
    struct fw_request req = {
        .op = op, .path = path, .data = data, .storage = st, .backend = b, .request_id = "fuzz"};
    struct fw_response resp;
    if (op == FW_OP_CREATE || op == FW_OP_UPDATE) {
        bool found = false, exists = false;
        fw_response_init(&resp);
        if (fw_exists(byok_path_tables, &req, &found, &exists, &resp) != ERR_OK) {
            found = false;
        }
        fw_response_done(&resp);
    }
    fw_response_init(&resp);
    if (fw_handle(byok_path_tables, &req, &resp) != ERR_OK && resp.status == FW_OK) {
        abort();
    }
    if (resp.data != NULL) {
        char *s = json_dumps(resp.data, JSON_COMPACT);
        if (s == NULL) {
            abort();
        }
        free(s);
    }
    fw_response_done(&resp);
}

#endif
