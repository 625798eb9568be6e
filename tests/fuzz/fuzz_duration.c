/* SPDX-License-Identifier: MPL-2.0 */
/* Fuzzes fw_duration_parse: any text either parses to a non-negative number of seconds or fails. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/framework.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 256) {
        return 0;
    }
    char s[257];
    memcpy(s, data, size);
    s[size] = '\0';
    int64_t secs = -1;
    if (fw_duration_parse(s, &secs) == ERR_OK && secs < 0) {
        abort();
    }
    return 0;
}
