/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Fuzzes the keys engine on a damaged store: the input is the stored bytes
 * of one key record (as a bad restore or a corrupted backend could leave
 * them), and every path that reads a record then runs over it: the key read,
 * the list, the tenant summary, creds, an update, a rotation and a delete,
 * with the existence check Vault sends before a write. Invariants: no crash,
 * no sanitizer report, an internal failure is reported in the response, and
 * every response serialises. Each input gets a fresh key type, so the record
 * cache never answers from an earlier input; the record is deleted after.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/secret.h"
#include "plugin/byok.h"
#include "plugin/framework.h"
#include "plugin/keystore.h"
#include "plugin/storage.h"
#include "tests/fuzz/fz_plugin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static struct byok *fz_byok;
static struct storage *fz_storage;
static unsigned long fz_n;

static void fz_call(enum fw_op op, const char *path, const char *body)
{
    json_t *jdata = body != NULL ? json_loads(body, 0, NULL) : NULL;
    fz_plugin_request(fz_byok, fz_storage, op, path, jdata);
    json_decref(jdata);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_plugin_start(&fz_byok, &fz_storage);
    /* A real key first, so the tenant has a data key and a summary to build. */
    fz_call(FW_OP_UPDATE, "tenants/t/keys/openai/production",
            "{\"key_value\": \"sk-fuzz0123456789abcdef0123456789abcdef0123456789\"}");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fz_byok == NULL) {
        LLVMFuzzerInitialize(NULL, NULL);
    }
    if (size > 65536) {
        return 0;
    }
    char kt[32], path[128], skey[STORAGE_MAX_KEY], body[160];
    snprintf(kt, sizeof(kt), "k%lu", fz_n++);
    if (keystore_path_key(skey, sizeof(skey), "t", "openai", kt) != ERR_OK ||
        storage_put(fz_storage, skey, data, size, false) != ERR_OK) {
        abort();
    }
    snprintf(path, sizeof(path), "tenants/t/keys/openai/%s", kt);
    fz_call(FW_OP_READ, path, NULL);
    fz_call(FW_OP_LIST, "tenants/t/keys/openai/", NULL);
    fz_call(FW_OP_READ, "tenants/t", NULL);
    snprintf(body, sizeof(body), "{\"key_type\": \"%s\"}", kt);
    fz_call(FW_OP_READ, "tenants/t/creds/openai", body);
    fz_call(FW_OP_UPDATE, path, "{\"name\": \"renamed\"}");
    snprintf(path, sizeof(path), "tenants/t/keys/openai/%s/rotate", kt);
    /* No grace period: a grace entry would outlive the input and slow every later one. */
    fz_call(FW_OP_UPDATE, path,
            "{\"key_value\": \"sk-fuzz1123456789abcdef0123456789abcdef0123456789\"}");
    snprintf(path, sizeof(path), "tenants/t/keys/openai/%s", kt);
    fz_call(FW_OP_DELETE, path, NULL);
    if (storage_delete(fz_storage, skey) != ERR_OK) {
        abort();
    }
    return 0;
}
