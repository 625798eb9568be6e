/* SPDX-License-Identifier: MPL-2.0 */
/*
 * A malloc that fails once, for the out-of-memory tests: set oom_countdown to
 * n and the n-th allocation from then on returns NULL (0: none fails);
 * oom_fired says whether it did. Install it with json_set_alloc_funcs
 * (oom_malloc, free). Header-only: each test program has its own counter.
 */
#ifndef BYOK_TESTS_UNIT_OOM_H
#define BYOK_TESTS_UNIT_OOM_H

#include <stdbool.h>
#include <stdlib.h>

static long oom_countdown;
static bool oom_fired;

static inline void *oom_malloc(size_t size)
{
    if (oom_countdown > 0 && --oom_countdown == 0) {
        oom_fired = true;
        return NULL;
    }
    return malloc(size);
}

#endif
