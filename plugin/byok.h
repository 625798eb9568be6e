/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The byok secrets engine as the transport sees it: one state object per
 * plugin process (byok does not multiplex mounts), the path tables the
 * framework routes through, and the hooks for Vault's lifecycle RPCs.
 * Thread-safe: HandleRequest calls arrive concurrently from worker threads.
 */
#ifndef BYOK_PLUGIN_BYOK_H
#define BYOK_PLUGIN_BYOK_H

#include <jansson.h>

#include "common/err.h"
#include "plugin/framework.h"
#include "plugin/storage.h"

struct byok;

/* NULL on out of memory. */
struct byok *byok_new(void);
void byok_free(struct byok *b);

/* Every path of the engine, NULL-terminated: what fw_handle routes through. */
extern const struct fw_path *const byok_path_tables[];

/* SpecialPaths.seal_wrap_storage, NULL-terminated ("kek/"). */
extern const char *const byok_seal_wrap_storage[];

/*
 * Setup: the mount's options (SetupArgs.Config) as a JSON object of strings;
 * borrowed. Must not touch storage (registration has none; mount is read-only).
 */
MUST_USE enum err byok_setup(struct byok *b, const json_t *mount_config);

/* Initialize: storage is writable from here on (may create the first KEK). */
MUST_USE enum err byok_initialize(struct byok *b, struct storage *st);

/* InvalidateKey: drop whatever is cached for this storage key. Never blocks on I/O. */
void byok_invalidate(struct byok *b, const char *key);

/* The periodic rollback tick (about once a minute): housekeeping such as grace-period revocations.
 */
MUST_USE enum err byok_periodic(struct byok *b, struct storage *st);

/* Cleanup: drop caches and wipe key material. */
void byok_cleanup(struct byok *b);

#endif
