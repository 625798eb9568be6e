/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The keys engine's state and storage layout, shared by the path modules
 * paths_tenants, paths_keys, paths_creds, paths_usage and paths_rotate.
 *
 * Storage layout (keys relative to the mount; every value is JSON unless said):
 *
 *   kek/current                        {"version": n}                      seal-wrapped
 *   kek/<n>                            raw: 0x01 | 32-byte KEK             seal-wrapped
 *   tenants/<t>/dek                    {"kek_version", "wrapped" (b64 of envelope_seal(KEK,
 *                                       AD "dek|<t>|<kek_version>", DEK)), "created_at"}
 *   tenants/<t>/settings               the settings fields the tenant set (defaults are not
 *                                       stored: they follow `config`)
 *   tenants/<t>/keys/<p>/<kt>          key record: metadata, "versions" [{version, status,
 *                                       created_at, revoked_at?, revoke_at?, expires_at?, ct?}],
 *                                       where a version in its grace period has revoke_at (the
 *                                       earlier of the grace end and its value's expiry) and
 *                                       expires_at if its value had one (the record's
 *                                       expires_at is the current value's; records written
 *                                       before 2026-11 lack it), and ct
 *                                       (b64 of envelope_seal(DEK, AD "<t>|<p>|<kt>|<version>",
 *                                       key)) exists only while the version is not revoked.
 *                                       A revoked key keeps its record (tombstone, for audit).
 *                                       "usage_flush" names the last write that added pending
 *                                       usage to the record (KEYSTORE_USAGE_TOKEN); never shown.
 *   tenants/<t>/usage/<YYYY-MM>        month totals: requests, tokens, cost, by_provider, by_model
 *   tenants/<t>/usage/<YYYY-MM>/batches/<xx>   {"ids": {batch_id: accepted}}: batch ids seen,
 *                                       64 shards (hash of the id) per month of the batch's
 *                                       first record; months before the previous one pruned
 *   tenants/<t>/budget                 {"month", "holds": {node: {"usd", "expires"}}}: the budget
 *                                       leases of the month (paths_budget.c); deleted when none
 *                                       is held
 *   rate-lease/probe                   never exists: tenants/<t>/rate-lease deletes it to learn
 *                                       whether this node's storage takes writes (a standby's
 *                                       does not); the rate-lease windows are in memory only
 *                                       (paths_ratelease.c)
 *   grace/<t>:<p>:<kt>                 {} while a version of that key waits for its grace period
 *                                       to end; byok_periodic revokes and removes it
 *   deleting/<t>                       {"started_at"}: a tenant delete under way or cut part-way
 *                                       (paths_tenants.c); written before the DEK is shredded,
 *                                       removed after the last record; writers refuse the tenant
 *                                       while it exists; byok_periodic finishes the delete
 *
 * Everything of one tenant lives under tenants/<t>/, so a tenant delete is the
 * DEK shred plus a walk of that prefix (and its grace/ marks), between writing
 * and removing deleting/<t>.
 */
#ifndef BYOK_PLUGIN_KEYSTORE_H
#define BYOK_PLUGIN_KEYSTORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "common/err.h"
#include "plugin/envelope.h"
#include "plugin/paths.h"
#include "plugin/storage.h"

struct byok;
struct keystore;

/*
 * Usage counters held in memory between flushes, at most. Past it a hit on a
 * key without a counter is dropped (usage_count is advisory; a creds read
 * must not fail or write storage); keys that have a counter keep counting.
 */
#define KEYSTORE_MAX_COUNTERS 65536
/* Longest key value accepted on a write (docs/api.md: 8..8192 printable ASCII). */
#define KEYSTORE_KEY_MIN 8
#define KEYSTORE_KEY_MAX 8192
/* Metadata: entries and bytes per value. */
#define KEYSTORE_MAX_METADATA 64
#define KEYSTORE_MAX_METADATA_VALUE 1024
/* Storage walk per tenant delete: keys deleted at most per list level. */
#define KEYSTORE_GRACE_PREFIX "grace/"

/* The hooks byok.c calls (declared weak in plugin/paths.h). */
extern const struct byok_hooks byok_hooks_keys;

/* The state hanging off struct byok (NULL if byok.c did not create it). */
struct keystore *keystore_of(struct byok *b);
struct envelope *keystore_envelope(struct keystore *ks);

/*
 * The write lock: every read-modify-write of a tenant's records (keys,
 * settings, usage, delete, DEK creation, a rotation's per-tenant rewrap) runs
 * under it, so two writers never lose each other's update. Creds reads never take it.
 */
void keystore_lock(struct keystore *ks);
void keystore_unlock(struct keystore *ks);
/*
 * The same lock for writers outside the keys engine (config, provider
 * catalog): takes it if b has a keystore and returns that keystore (or NULL)
 * for keystore_write_end.
 */
struct keystore *keystore_write_begin(struct byok *b);
void keystore_write_end(struct keystore *ks);
/* The same as callbacks for envelope_rotate (arg: struct keystore *). */
void keystore_lock_cb(void *ks);
void keystore_unlock_cb(void *ks);

/* Wall clock in seconds; tests replace it to step over expiry and grace periods. */
time_t keystore_now(void);
void keystore_set_clock(time_t (*now)(void));
/* RFC 3339 UTC "2026-11-25T20:00:00Z"; out must hold 32 bytes. */
void keystore_time_format(time_t t, char *out, size_t size);
/* RFC 3339 with 'Z' or an offset, optional fraction. ERR_INVAL otherwise. */
MUST_USE enum err keystore_time_parse(const char *s, time_t *ret);

/* Storage key builders; ERR_TOOBIG when it would not fit STORAGE_MAX_KEY. */
MUST_USE enum err keystore_path_key(char *out, size_t size, const char *tenant,
                                    const char *provider, const char *key_type);
MUST_USE enum err keystore_path_tenant(char *out, size_t size, const char *tenant,
                                       const char *rest);

/*
 * Settings of a tenant with defaults from `config` filled in (new reference).
 * Served from an in-memory cache dropped by InvalidateKey.
 */
MUST_USE enum err keystore_settings_get(struct byok *b, struct storage *st, const char *tenant,
                                        json_t **ret_settings);
/* The same with the effective config already in hand (the creds hot path). */
MUST_USE enum err keystore_settings_with(struct byok *b, struct storage *st, const char *tenant,
                                         const json_t *config, json_t **ret_settings);
/* Stores the tenant's own settings document (without defaults) and drops the cache entry. */
MUST_USE enum err keystore_settings_put(struct byok *b, struct storage *st, const char *tenant,
                                        const json_t *stored);
/* A private copy of the stored settings document, through the cache; {} when none. */
MUST_USE enum err keystore_settings_cached(struct byok *b, struct storage *st, const char *tenant,
                                           json_t **ret_copy);
/* The stored settings document only (new reference); an empty object when none. */
MUST_USE enum err keystore_settings_stored(struct storage *st, const char *tenant,
                                           json_t **ret_stored);

/*
 * Key records (tenants/<t>/keys/<p>/<kt>) through an in-memory cache, so a
 * warm creds read and a key write's existence check need no storage round
 * trip. InvalidateKey drops entries (Vault sends it when another node
 * writes); every local write goes through keystore_record_put, which drops
 * the entry too, and after a write reported failed keeps the key out of the
 * cache for CACHE_DOUBT_MS (it may land later: cache.h). record_get returns a SHARED document:
 * never modify it (json_deep_copy first). ERR_NOTFOUND when absent. record_put caches rec itself (a
 * new reference): the caller must not modify rec afterwards.
 */
MUST_USE enum err keystore_record_get(struct keystore *ks, struct storage *st, const char *key,
                                      json_t **ret_shared);
MUST_USE enum err keystore_record_put(struct keystore *ks, struct storage *st, const char *key,
                                      const json_t *rec);
/*
 * A private copy of a record to modify: the object and its "versions" (array
 * and entries) are new, every other member is shared with rec. So replace
 * members (json_object_set_new), never edit a nested value in place.
 */
json_t *keystore_record_clone(const json_t *rec);
/*
 * The record at key to modify and put back, for a writer holding the
 * keystore lock: the cache entry is dropped first, so no reader can get the
 * shared document any more; when no reader still holds it (the record, its
 * "versions" and every entry referenced once: ours), it is returned itself
 * and modified in place, otherwise as keystore_record_clone. The same rules
 * as for a clone apply. A write that fails leaves no cache entry: the next
 * read loads the stored record.
 */
MUST_USE enum err keystore_record_take(struct keystore *ks, struct storage *st, const char *key,
                                       json_t **ret_own);
/* Drops cached records: one key, or every one (key NULL; tenant delete). */
void keystore_record_forget(struct keystore *ks, const char *key);

/*
 * Usage counters: creds reads count in memory; metadata reads merge; byok_periodic flushes.
 *
 * A write that adds pending hits to a key record also stores a token unique
 * to that write in the record's KEYSTORE_USAGE_TOKEN member. When the write
 * is reported failed, Vault may have applied it all the same (a reply lost,
 * a timeout or cancellation after the write: docs/internals/transport.md),
 * so the counter keeps the token with the hits, which stay pending. The next
 * one to read the record under the write lock (a flush, a key read, a delete)
 * settles it: the token in the record means the write landed and those hits
 * are already counted; any other token means they are still to add. Every
 * other writer of key records keeps the member as it loaded it, so the
 * answer survives a key update, rotation or grace sweep in between.
 */
#define KEYSTORE_USAGE_TOKEN "usage_flush"

void keystore_usage_hit(struct keystore *ks, const char *tenant, const char *provider,
                        const char *key_type, time_t now);
/*
 * For a read reply, under the write lock: adds the key's pending hits to
 * view's usage_count / last_used_at and returns how many it added. stored is
 * the record as storage holds it, which settles a write in doubt (above).
 * view may be stored itself.
 */
int64_t keystore_usage_merge(struct keystore *ks, const char *tenant, const char *provider,
                             const char *key_type, const json_t *stored, json_t *view);
/*
 * For a writer saving pending hits with the record, under the write lock:
 * rec is the record as loaded from storage (usage members and token as
 * stored). save_begin settles a write in doubt against it, adds the pending
 * hits and a new token to rec, and returns how many hits it added (0: rec
 * unchanged). Pass that and the save's result to save_end: ERR_OK settles
 * the hits (those counted since stay pending); any failure keeps them
 * pending, in doubt until the record is read again.
 */
int64_t keystore_usage_save_begin(struct keystore *ks, const char *tenant, const char *provider,
                                  const char *key_type, json_t *rec);
void keystore_usage_save_end(struct keystore *ks, const char *tenant, const char *provider,
                             const char *key_type, const json_t *rec, int64_t hits, enum err e);
/* Forgets pending hits of one key (key_type != NULL) or of a whole tenant. */
void keystore_usage_forget(struct keystore *ks, const char *tenant, const char *provider,
                           const char *key_type);
/* Writes pending hits into the key records. Takes the write lock. */
MUST_USE enum err keystore_usage_flush(struct keystore *ks, struct storage *st);

/*
 * Revokes versions of rec whose grace period ended at or before now (drops
 * their ciphertext). Returns true when rec changed.
 */
bool keystore_versions_revoke_due(json_t *rec, time_t now);
/* Grace index entries (see layout). */
MUST_USE enum err keystore_grace_mark(struct storage *st, const char *tenant, const char *provider,
                                      const char *key_type, bool pending);
/* Revokes due grace versions everywhere. Takes the write lock per key. */
MUST_USE enum err keystore_grace_sweep(struct keystore *ks, struct storage *st);

/* Status of a key record now: "active", "expired" or "revoked". */
const char *keystore_key_status(const json_t *rec, time_t now);

#endif
