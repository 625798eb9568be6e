/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Fuzzes cooldown_parse, the reader of a provider's Retry-After and
 * retry-after-ms headers. Input: the Retry-After value, then optionally a
 * newline and the retry-after-ms value (either may hold any byte but NUL).
 * Invariant: a value is accepted only within 0..COOLDOWN_SANE_MAX_MS, and
 * *ret_ms is written only when it is.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/cooldown.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 512) {
        return 0;
    }
    char s[513];
    memcpy(s, data, size);
    s[size] = '\0';
    if (strlen(s) != size) {
        return 0; /* a header value holds no NUL */
    }
    char *ms_value = strchr(s, '\n');
    if (ms_value != NULL) {
        *ms_value++ = '\0';
    }
    /* RFC 9110's example date, so that dates around it are taken as near. */
    const time_t now = (time_t)784111777;
    long long ms = -1;
    enum err e = cooldown_parse(s, ms_value, now, &ms);
    if (e == ERR_OK && (ms < 0 || ms > COOLDOWN_SANE_MAX_MS)) {
        abort();
    }
    if (e != ERR_OK && ms != -1) {
        abort();
    }
    return 0;
}
