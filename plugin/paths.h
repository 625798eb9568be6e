/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The path tables of the byok engine and the lifecycle hooks of the modules
 * that own them. byok.c builds byok_path_tables from these at start-up.
 *
 * Ordinary (strong) references on purpose: the plugin links libplugin.a, and
 * only an undefined strong reference makes the linker pull a module's object
 * out of the archive.
 */
#ifndef BYOK_PLUGIN_PATHS_H
#define BYOK_PLUGIN_PATHS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "common/err.h"
#include "plugin/envelope.h"
#include "plugin/framework.h"
#include "plugin/storage.h"

struct byok;
struct keystore;

/* config.c, catalog.c (always present). */
extern const struct fw_path paths_config[];
extern const struct fw_path paths_providers[];

/* The keys modules (paths_rotate.c, paths_tenants.c, paths_keys.c, paths_creds.c, paths_usage.c).
 */
extern const struct fw_path paths_rotate_root[]; /* config/rotate-root */
extern const struct fw_path paths_tenants[];
extern const struct fw_path paths_keys[];
extern const struct fw_path paths_creds[];
extern const struct fw_path paths_usage[];
extern const struct fw_path paths_budget[]; /* paths_budget.c: tenants/<t>/budget-lease */
/* paths_ratelease.c: tenants/<t>/rate-lease */
extern const struct fw_path paths_ratelease[];

/*
 * paths_usage.c: the tenant's totals for the current month (UTC) as
 * `tenants/<t>/usage` reads them, without the by-model breakdown (all zero if
 * nothing was reported). For the tenant summary.
 */
enum err paths_usage_month_to_date(struct storage *st, const char *tenant, json_t **ret);

/*
 * paths_usage.c: true when s is 1..max characters of [A-Za-z0-9._-] (a usage
 * batch_id, a budget lease's node).
 */
bool paths_usage_id_ok(const char *s, size_t max);
/*
 * paths_usage.c: "YYYY-MM" (UTC, zero-padded) of t: the month of the usage
 * ledger's keys and of the budget holds.
 */
void paths_usage_month_of(time_t t, char month[8]);

/*
 * paths_usage.c: ERR_OK if the tenant exists for writers that must not bring
 * a deleted tenant back (usage, budget-lease): it has a data key or stored
 * settings. ERR_NOTFOUND if neither. Call it under keystore_lock, the lock
 * tenant delete holds.
 */
MUST_USE enum err paths_usage_tenant_exists(struct keystore *ks, struct storage *st,
                                            const char *tenant);

/*
 * paths_tenants.c: the marker of a tenant delete that has not finished,
 * deleting/<t> (written before the data key is destroyed, removed after the
 * last record: docs/internals/keys-engine.md "Tenant delete"). ERR_EXISTS
 * while it is stored, ERR_OK when not, or the storage error. Writers that
 * would store something for the tenant (a key's first data key, settings,
 * usage, budget leases) call it under keystore_lock, which the delete holds
 * from writing the marker to removing it, and refuse with
 * PATHS_TENANT_DELETING (one %s: the tenant).
 */
MUST_USE enum err paths_tenant_deleting(struct storage *st, const char *tenant);
#define PATHS_TENANT_DELETING "tenant '%s': an earlier delete did not finish; delete it again"

/*
 * paths_budget.c: the `budget` object of the tenant summary, from the
 * tenant's effective settings and its month-to-date usage (as
 * paths_usage_month_to_date gives it) plus the budget holds in storage.
 */
MUST_USE enum err paths_budget_summary(struct storage *st, const char *tenant,
                                       const json_t *settings, const json_t *usage, json_t **ret);

/*
 * Lifecycle hooks a path module may export (every member optional). byok.c
 * calls them in order from the matching byok_* function. `state` is a per-
 * struct-byok slot the module owns: create it in init, free it in free; get it
 * back in handlers with byok_hooks_state(req->backend, &your_hooks).
 */
struct byok_hooks {
    enum err (*init)(struct byok *b, void **ret_state);         /* byok_new; no storage */
    void (*free)(void *state);                                  /* byok_free; accepts NULL */
    enum err (*initialize)(struct byok *b, struct storage *st); /* byok_initialize */
    void (*invalidate)(struct byok *b, const char *key);        /* byok_invalidate; never block */
    enum err (*periodic)(struct byok *b, struct storage *st);   /* byok_periodic */
    void (*cleanup)(struct byok *b); /* byok_cleanup: drop caches, wipe */
    /* KEK version and stored versions for `config` read; absent hook: a zeroed state. */
    enum err (*kek_state)(struct byok *b, struct storage *st, struct envelope_kek_state *ret);
};

/* The keys modules' hooks (keystore.c: envelope, caches, grace-period revocations). */
extern const struct byok_hooks byok_hooks_keys;
/* The rate-lease windows (paths_ratelease.c: an in-memory table, dropped by cleanup). */
extern const struct byok_hooks byok_hooks_ratelease;
/* paths_tenants.c: periodic finishes tenant deletes that did not finish. */
extern const struct byok_hooks byok_hooks_tenants;

/* A module's state slot (what its init returned), or NULL. */
void *byok_hooks_state(struct byok *b, const struct byok_hooks *hooks);

/* The engine's document cache (plugin/cache.h); byok_invalidate drops keys from it. */
struct cache *byok_cache(struct byok *b);

/* The mount options given to byok_setup (borrowed; an empty object before Setup). */
const json_t *byok_mount_config(const struct byok *b);

/*
 * The KEK state (envelope.h: current version, stored versions, whether a
 * rotation is incomplete) via byok_hooks_keys.kek_state; zeroed when that
 * hook is absent. Free with envelope_kek_state_done.
 */
MUST_USE enum err byok_kek_state(struct byok *b, struct storage *st,
                                 struct envelope_kek_state *ret);

#endif
