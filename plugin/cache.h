/* SPDX-License-Identifier: MPL-2.0 */
/*
 * A process-wide cache of decoded storage documents keyed by storage key
 * ("config", "providers/openai", "tenants/acme/settings"), so that hot reads
 * are served from memory. Values are immutable JSON shared by reference:
 * never modify a value you got from the cache (json_deep_copy it first).
 * Thread-safe (jansson's reference counts are atomic since 2.11).
 *
 * Staleness: every invalidation bumps a generation; a value read from storage
 * is only cached if no invalidation happened since the reader took the
 * generation from cache_get, so a slow reader never re-caches a value that a
 * concurrent write or InvalidateKey has made stale.
 *
 * Writes in doubt: a storage write reported failed (a timeout, a
 * cancellation, an error string from Vault) may still be applied later
 * (docs/internals/transport.md, "ambiguous writes"), and on the active node
 * Vault sends no InvalidateKey for the plugin's own writes. A reader between
 * the failure and the landing would cache the old value for good. So after
 * such a failure the writer calls cache_doubt: for CACHE_DOUBT_MS the key is
 * neither served nor stored (every read of it goes to storage), whatever is
 * written meanwhile. At most CACHE_DOUBT_MAX keys are tracked (by a 64-bit
 * hash: a collision only costs a miss); past it every key is in doubt until
 * the window of the last one ends. With nothing in doubt, cache_get costs one
 * atomic load more than a plain lookup.
 */
#ifndef BYOK_PLUGIN_CACHE_H
#define BYOK_PLUGIN_CACHE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

/* Entries held at most; past it the cache is emptied (simple and bounded). */
#define CACHE_MAX_ENTRIES 65536

/* How long a key stays in doubt after a write of it was reported failed. */
#define CACHE_DOUBT_MS 120000
/* Keys in doubt tracked one by one, per cache; past it the whole cache is in doubt. */
#define CACHE_DOUBT_MAX 1024

struct cache;

/* NULL on out of memory. cache_free accepts NULL. */
struct cache *cache_new(void);
void cache_free(struct cache *c);

/* New reference to the cached value, or NULL; *ret_gen (if not NULL) gets the generation to pass to
 * cache_put. */
json_t *cache_get(struct cache *c, const char *key, uint64_t *ret_gen);
/* Caches val (takes a new reference; caller keeps its own) unless invalidated since gen. */
void cache_put(struct cache *c, const char *key, json_t *val, uint64_t gen);
/* Drops key (NULL: everything). */
void cache_invalidate(struct cache *c, const char *key);
/*
 * A write of key was reported failed: drops key and keeps it out of the cache
 * (cache_get misses, cache_put refuses) for CACHE_DOUBT_MS. Call it after
 * every failed write or delete of key, instead of cache_invalidate.
 */
void cache_doubt(struct cache *c, const char *key);

/*
 * The same bookkeeping for a cache of another shape (envelope.c's DEKs): a
 * set of keys in doubt. Thread-safe; never touches storage. new returns NULL
 * on out of memory; free accepts NULL.
 */
struct cache_doubts;
struct cache_doubts *cache_doubts_new(void);
void cache_doubts_free(struct cache_doubts *d);
void cache_doubts_add(struct cache_doubts *d, const char *key);
bool cache_doubts_has(struct cache_doubts *d, const char *key);
/*
 * Whether a storage write or delete that failed with e may still be applied
 * later (a timeout, a cancellation, a broken connection: cache_doubt), or
 * surely was not (refused: a read-only standby, a bad or too large request,
 * denied; a delete of nothing): then cache_invalidate is enough. A standby
 * refuses every write, and its caches must go on working.
 */
bool cache_write_may_land(enum err e);

/* Tests: shortens the doubt window (ms > 0), or restores CACHE_DOUBT_MS (0). */
void cache_set_doubt_ms(long ms);
/* Tests: moves the doubt windows' clock forward by ms (no sleeping, no race with the machine). */
void cache_advance_ms(int64_t ms);

#endif
