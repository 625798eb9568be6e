/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Fuzzes the plugin's request path below the transport: the framework's
 * routing, field coercion and every path handler, over in-memory storage.
 * Input: "<operation>\n<path>\n<request data JSON>". State persists across
 * inputs on purpose (a write followed by a read reaches more code).
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/secret.h"
#include "plugin/byok.h"
#include "plugin/framework.h"
#include "plugin/storage.h"
#include "tests/fuzz/fz_plugin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static struct byok *fz_byok;
static struct storage *fz_storage;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_plugin_start(&fz_byok, &fz_storage);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fz_byok == NULL) {
        LLVMFuzzerInitialize(NULL, NULL);
    }
    if (size > (size_t)FW_MAX_DATA) {
        return 0;
    }
    char *text = malloc(size + 1);
    if (text == NULL) {
        return 0;
    }
    memcpy(text, data, size);
    text[size] = '\0';

    char *op = text;
    char *path = strchr(op, '\n');
    char *body = NULL;
    if (path != NULL) {
        *path++ = '\0';
        body = strchr(path, '\n');
        if (body != NULL) {
            *body++ = '\0';
        }
    } else {
        path = "";
    }
    int opn = fw_op_parse(op);
    if (opn < 0) {
        opn = FW_OP_READ;
    }
    json_t *jdata = NULL;
    if (body != NULL && *body != '\0') {
        jdata = json_loads(body, JSON_DECODE_ANY, NULL);
    }
    fz_plugin_request(fz_byok, fz_storage, (enum fw_op)opn, path, jdata);
    json_decref(jdata);
    free(text);
    return 0;
}
