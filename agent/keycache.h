/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Provider keys fetched from the plugin's creds path (docs/api.md), cached per
 * tenant+provider for min(creds ttl, keycache.max_ttl_s, key expiry).
 *
 * - Keys live only in struct secret (secure heap). The rest of the creds reply
 *   (provider catalog entry, tenant settings, metadata) is kept as JSON.
 * - Concurrent requests for the same tenant+provider share ONE Vault fetch:
 *   the first creates a pending entry, later ones wait on it.
 * - A key is wiped when it expires, when Vault answers 4xx for it, when a
 *   provider answers 401 (keycache_invalidate), and at exit. An entry in use
 *   (referenced) is unlinked at once and wiped when the last user lets go.
 * - "No key" answers (404) are remembered for keycache.negative_ttl_s so that
 *   probing every provider for `model: auto` does not hit Vault each time.
 */
#ifndef BYOK_AGENT_KEYCACHE_H
#define BYOK_AGENT_KEYCACHE_H

#include <jansson.h>
#include <stdbool.h>
#include <time.h>

#include "agent/config.h"
#include "agent/vault.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/secret.h"

/* Longest provider key accepted from Vault (docs/api.md: key_value is 8..8192 bytes). */
#define KEYCACHE_MAX_KEY 8192
/* The plugin keeps at most 64 permission names per key. */
#define KEYCACHE_MAX_PERMISSIONS 64

struct keycache;
struct keycache_wait;

/* Read-only for users; valid while referenced. */
struct keycache_entry {
    char *tenant;
    char *provider;
    struct secret *key;  /* NULL for a negative entry */
    json_t *creds;       /* the creds reply without api_key */
    const json_t *entry; /* creds.provider (catalog entry), borrowed from creds */
    const json_t *settings;
    const json_t *metadata;
    const json_t *permissions; /* the key's permissions (array of names; empty = any use) */
    /*
     * State another module keeps with the key and no longer than it (an
     * access token traded for a service-account key: agent/gcptoken.h).
     * aux_wipe is called when the key is wiped (expiry, revocation, a
     * provider 401, exit) while users may still hold the entry; aux_free
     * when the entry is freed (no user left). Either may be NULL.
     */
    void *aux;
    void (*aux_wipe)(struct keycache_entry *e);
    void (*aux_free)(struct keycache_entry *e);
    /* internal */
    int refs;
    bool linked;
    bool pending;
    bool negative;
    /* Fetched under a Vault address, mount or key type no longer configured: no lookup finds it. */
    bool stale;
    time_t expires; /* monotonic seconds */
    struct keycache_wait *waiters;
    struct vault_req *fetch;
    struct keycache *kc;
    struct keycache_entry *next; /* hash chain */
};

/*
 * e: ERR_OK (entry is referenced: call keycache_put), ERR_NOTFOUND (tenant has
 * no active key for the provider), ERR_DENIED (Vault refused the agent),
 * ERR_UNAVAIL / ERR_TIMEOUT (Vault unreachable), ERR_PROTO (bad creds reply).
 */
typedef void (*keycache_cb)(void *arg, enum err e, struct keycache_entry *ent);

struct keycache_stats {
    unsigned long long hits, misses, fetches, shared, wipes;
};

struct keycache *keycache_new(struct event_base *base, struct vault *v, struct config *cfg);
/* Wipes every key; pending callers get no callback. Accepts NULL. */
void keycache_free(struct keycache *kc);
void keycache_set_config(struct keycache *kc, struct config *cfg);

/*
 * Gets the key for tenant+provider. Calls cb synchronously on a cache hit
 * (and returns ERR_OK with *ret_wait NULL); otherwise later, with *ret_wait a
 * handle for keycache_cancel. On error no callback is called.
 */
MUST_USE enum err keycache_get(struct keycache *kc, const char *tenant, const char *provider,
                               keycache_cb cb, void *arg, struct keycache_wait **ret_wait);
void keycache_cancel(struct keycache_wait *w);

/* A fresh entry (positive or negative) without fetching; NULL if none. Not referenced. */
const struct keycache_entry *keycache_peek(struct keycache *kc, const char *tenant,
                                           const char *provider);

void keycache_put(struct keycache_entry **ent);
/*
 * Drops tenant+provider, whatever entry is cached for them now. The request
 * path uses keycache_invalidate_entry (a 401 names the entry it refused);
 * this one is for resetting by name (the unit tests).
 */
void keycache_invalidate(struct keycache *kc, const char *tenant, const char *provider);
/*
 * Drops ent if it is still the cached entry (a provider answered 401 to its
 * key). A newer entry fetched meanwhile for the same tenant+provider (after
 * an earlier 401, e.g. the rotated key) is left alone: a late 401 for the old
 * key must not wipe the new one.
 */
void keycache_invalidate_entry(struct keycache *kc, struct keycache_entry *ent);
const struct keycache_stats *keycache_stats(const struct keycache *kc);

/*
 * Parses a creds reply body into an entry's key and creds JSON. Exposed for
 * unit tests. ERR_PROTO when api_key is missing, not a string, empty, longer
 * than KEYCACHE_MAX_KEY or holds CR/LF/NUL, or when permissions is present and not
 * an array of at most KEYCACHE_MAX_PERMISSIONS strings. *ret_ttl gets the reply's
 * ttl (0 if absent).
 */
MUST_USE enum err keycache_parse_creds(const char *body, size_t len, struct secret **ret_key,
                                       json_t **ret_creds, long *ret_ttl);

#endif
