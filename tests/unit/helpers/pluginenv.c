/* SPDX-License-Identifier: MPL-2.0 */
/* Fixtures for path-module tests: see pluginenv.h. */
#include "tests/unit/helpers/pluginenv.h"

#include <stdlib.h>

#include "common/secret.h"

int pluginenv_setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    if (e == NULL) {
        return -1;
    }
    e->b = byok_new();
    e->st = storage_mem_new();
    *state = e;
    if (e->b == NULL || e->st == NULL) {
        return -1;
    }
    /* As the transport does after Setup: the keys modules create KEK 1 here. */
    return byok_initialize(e->b, e->st) == ERR_OK ? 0 : -1;
}

int pluginenv_teardown(void **state)
{
    struct env *e = *state;
    if (e != NULL) {
        byok_free(e->b);
        storage_mem_free(e->st);
        free(e);
    }
    return 0;
}

int pluginenv_group_setup(void **state)
{
    (void)state;
    return secret_heap_init((size_t)1024 * 1024) == ERR_OK ? 0 : -1;
}
