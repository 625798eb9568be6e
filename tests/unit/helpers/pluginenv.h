/* SPDX-License-Identifier: MPL-2.0 */
/*
 * cmocka fixtures for path-module tests: a fresh engine (struct byok) over
 * in-memory storage, initialised as the transport does after Setup, and the
 * secure heap the keys modules need.
 */
#ifndef BYOK_TESTS_PLUGINENV_H
#define BYOK_TESTS_PLUGINENV_H

#include <time.h>

#include "plugin/byok.h"
#include "plugin/storage.h"

struct env {
    struct byok *b;
    struct storage *st;
};

/* cmocka setup/teardown: *state is a struct env *. */
int pluginenv_setup(void **state);
int pluginenv_teardown(void **state);
/*
 * pluginenv_setup with the engine's clock (keystore_set_clock) on
 * pluginenv_now, which starts at 1795000000 (2026-11-18T08:26:40Z) and moves
 * only when the test sets it. pluginenv_teardown gives the real clock back.
 */
extern time_t pluginenv_now;
int pluginenv_setup_clock(void **state);
/* cmocka group setup: the secure heap (1 MiB). */
int pluginenv_group_setup(void **state);

/*
 * A storage over inner that concurrent threads may share (each operation under
 * one mutex), whose reads and writes of keys starting with slow_prefix sleep
 * usec first (outside the mutex): two read-modify-writes started together
 * overlap. One at a time (static state).
 */
void pluginenv_slow_storage(struct storage *out, struct storage *inner, const char *slow_prefix,
                            long usec);

#endif
