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
 */
#ifndef BYOK_PLUGIN_CACHE_H
#define BYOK_PLUGIN_CACHE_H

#include <jansson.h>
#include <stdint.h>

/* Entries held at most; past it the cache is emptied (simple and bounded). */
#define CACHE_MAX_ENTRIES 65536

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

#endif
