/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Fuzzes common/jsonw against jansson: any JSON text jansson parses (NUL
 * escapes allowed), wrapped in an array, must encode to exactly the bytes
 * json_dumps(JSON_COMPACT) gives. Invariant: equal output, no crash.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsonw.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536) {
        return 0;
    }
    json_t *v = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (v == NULL) {
        return 0;
    }
    json_t *a = json_pack("[o]", v);
    char *want = a != NULL ? json_dumps(a, JSON_COMPACT) : NULL;
    size_t len = 0;
    char *got = a != NULL ? jsonw_dumps(a, &len) : NULL;
    if ((want == NULL) != (got == NULL) ||
        (want != NULL && (strcmp(want, got) != 0 || len != strlen(want)))) {
        abort();
    }
    free(want);
    free(got);
    json_decref(a);
    return 0;
}
