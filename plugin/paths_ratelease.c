/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Path tenants/<t>/rate-lease (update): agents enforce a tenant's rpm_limit
 * and tpm_limit, and the rate_limit of each of its keys, across every node
 * with slices of the current minute. A node asks for `amount` requests (rpm,
 * key) or tokens (tpm); the plugin grants min(amount, limit - granted so far
 * in this window) and says when the window ends. The limit is the tenant's
 * current setting, read as creds reads it (from the settings cache: no
 * storage read when warm); for kind "key" it is the rate_limit of the key
 * record tenants/<t>/keys/<provider>/<key_type>, read as creds reads it too
 * (from the record cache: at most one storage read). A key that is absent,
 * revoked or expired, or has no rate_limit, is "unlimited" here: creds
 * serves no such key, or the agent has no limit of it to apply.
 *
 * Windows are fixed minutes aligned to the wall clock (keystore_now):
 * [t - t % 60, t - t % 60 + 60). A tenant may use its whole limit at the end
 * of one window and again at the start of the next: at most twice its limit
 * within any 60 s, never more than its limit within one window.
 *
 * The table is in memory only, never in storage: this path is on the hot path
 * (every few calls of a limited tenant). A plugin restart or an HA failover
 * forgets the current window's grants, so a tenant may get one more limit's
 * worth in that minute. Memory is bounded: at most RATELEASE_MAX_ENTRIES
 * tenant × kind entries (tenant × provider × key_type for kind "key"); an entry of an earlier
 * window is as good as none and is dropped when room is needed. A table full of current windows
 * answers 503 (the agent then enforces per node).
 *
 * A performance standby has its own memory: a grant there would split the
 * count between nodes. A write on a standby fails with "cannot write to
 * readonly storage" and Vault forwards it to the active node; this path writes
 * nothing, so it probes: a storage delete of RATELEASE_PROBE_KEY (which never
 * exists) at most every RATELEASE_PROBE_S seconds while it succeeds, on every
 * request while it fails. On a standby the probe fails and the request is
 * answered with the same read-only error, so Vault forwards it. One probe at a
 * time: requests that find one in flight take the last answer (writable or
 * read-only) instead of probing too, and wait for the probe only when there is
 * no answer yet (at start, after Cleanup). Otherwise every request that came
 * in while a probe was due would probe at once.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/config.h"
#include "plugin/keystore.h"
#include "plugin/paths.h"
#include "plugin/pool.h"

#define RATELEASE_MAX_NODE 128
/* The plugin's bound on rpm_limit and tpm_limit, and on one request's amount. */
#define RATELEASE_MAX_AMOUNT 1000000000LL
/* Tenant × kind (× provider × key_type) entries held at most (~60 bytes and the name each). */
#define RATELEASE_MAX_ENTRIES 65536
#define RATELEASE_SLOTS 8192
#define RATELEASE_WINDOW_S 60
/* A storage key nothing ever writes: deleting it proves the storage is writable. */
#define RATELEASE_PROBE_KEY "rate-lease/probe"
#define RATELEASE_PROBE_S 10

/* An entry's name: the tenant, or tenant/provider/key_type for kind "key". */
#define RATELEASE_MAX_NAME (3 * FW_NAME_MAX + 2)

enum ratelease_kind { RATELEASE_RPM, RATELEASE_TPM, RATELEASE_KEY };

struct ratelease_entry {
    struct ratelease_entry *next;
    uint64_t hash;
    enum ratelease_kind kind;
    time_t window; /* start of the window granted is of */
    long long granted;
    char name[]; /* the tenant, or tenant/provider/key_type (RATELEASE_MAX_NAME at most) */
};

struct ratelease {
    pthread_mutex_t mu; /* held for table work only, never across I/O */
    struct ratelease_entry *slot[RATELEASE_SLOTS];
    size_t n;
    time_t writable_until; /* the last probe succeeded: no probe before then */
    pthread_cond_t probed; /* signalled when a probe ends */
    bool probing;          /* a probe is in flight: others take last instead */
    bool answered;         /* last holds a probe's answer */
    enum err last;         /* ERR_OK (writable) or ERR_READONLY, when answered */
};

static uint64_t ratelease_hash(enum ratelease_kind kind, const char *name)
{
    uint64_t h = (14695981039346656037ULL ^ (uint64_t)kind) * 1099511628211ULL;
    for (const char *s = name; *s != '\0'; s++) {
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    }
    return h;
}

static enum err ratelease_init(struct byok *b, void **ret_state)
{
    (void)b;
    struct ratelease *rl = calloc(1, sizeof(*rl));
    if (rl == NULL) {
        return ERR_NOMEM;
    }
    if (pthread_mutex_init(&rl->mu, NULL) != 0) {
        free(rl);
        return ERR_NOMEM;
    }
    if (pthread_cond_init(&rl->probed, NULL) != 0) {
        pthread_mutex_destroy(&rl->mu);
        free(rl);
        return ERR_NOMEM;
    }
    *ret_state = rl;
    return ERR_OK;
}

static void ratelease_clear(struct ratelease *rl)
{
    for (size_t i = 0; i < RATELEASE_SLOTS; i++) {
        struct ratelease_entry *e = rl->slot[i];
        while (e != NULL) {
            struct ratelease_entry *next = e->next;
            free(e);
            e = next;
        }
        rl->slot[i] = NULL;
    }
    rl->n = 0;
}

static void ratelease_free(void *state)
{
    struct ratelease *rl = state;
    if (rl == NULL) {
        return;
    }
    ratelease_clear(rl);
    pthread_cond_destroy(&rl->probed);
    pthread_mutex_destroy(&rl->mu);
    free(rl);
}

/* Cleanup (unmount, plugin reload): the windows are forgotten, as on a restart. */
static void ratelease_cleanup(struct byok *b)
{
    struct ratelease *rl = byok_hooks_state(b, &byok_hooks_ratelease);
    if (rl != NULL) {
        pthread_mutex_lock(&rl->mu);
        ratelease_clear(rl);
        rl->writable_until = 0;
        rl->answered = false; /* a probe in flight still ends and answers */
        pthread_mutex_unlock(&rl->mu);
    }
}

const struct byok_hooks byok_hooks_ratelease = {
    .init = ratelease_init,
    .free = ratelease_free,
    .cleanup = ratelease_cleanup,
};

/* Drops the entries of windows before window. Under mu. */
static void ratelease_sweep(struct ratelease *rl, time_t window)
{
    for (size_t i = 0; i < RATELEASE_SLOTS; i++) {
        for (struct ratelease_entry **pe = &rl->slot[i]; *pe != NULL;) {
            struct ratelease_entry *e = *pe;
            if (e->window < window) {
                *pe = e->next;
                free(e);
                rl->n--;
            } else {
                pe = &e->next;
            }
        }
    }
}

/*
 * The entry of name × kind for window (a new one, or one of an earlier
 * window reset to it), or NULL when the table is full of this window's
 * entries or out of memory. Under mu.
 */
static struct ratelease_entry *ratelease_entry(struct ratelease *rl, enum ratelease_kind kind,
                                               const char *name, time_t window)
{
    uint64_t h = ratelease_hash(kind, name);
    struct ratelease_entry **head = &rl->slot[h % RATELEASE_SLOTS];
    for (struct ratelease_entry *e = *head; e != NULL; e = e->next) {
        if (e->hash == h && e->kind == kind && strcmp(e->name, name) == 0) {
            if (e->window != window) {
                e->window = window;
                e->granted = 0;
            }
            return e;
        }
    }
    if (rl->n >= RATELEASE_MAX_ENTRIES) {
        ratelease_sweep(rl, window);
        if (rl->n >= RATELEASE_MAX_ENTRIES) {
            return NULL;
        }
    }
    size_t len = strlen(name);
    struct ratelease_entry *e = calloc(1, sizeof(*e) + len + 1);
    if (e == NULL) {
        return NULL;
    }
    e->hash = h;
    e->kind = kind;
    e->window = window;
    memcpy(e->name, name, len + 1);
    e->next = *head;
    *head = e;
    rl->n++;
    return e;
}

/*
 * ERR_OK when this node's storage takes writes (the active node), probed at
 * most every RATELEASE_PROBE_S while it does; ERR_READONLY on a standby.
 * Single-flight: while one request probes, the others take the last answer,
 * or, when there is none yet, wait for the probe (a pool blocking wait: the
 * probe is a storage round trip). An answer is only what tells writable from
 * read-only: a probe that failed otherwise (a deadline, a lost connection)
 * answers its own request only, and a waiter then probes itself.
 */
static enum err ratelease_probe(struct ratelease *rl, struct storage *st, time_t now)
{
    bool waited = false;
    pthread_mutex_lock(&rl->mu);
    for (;;) {
        if (rl->writable_until > now) {
            pthread_mutex_unlock(&rl->mu);
            return ERR_OK;
        }
        /* After a wait, the answer is the awaited probe's (or a later one's). */
        if (rl->answered && (rl->probing || waited)) {
            enum err last = rl->last;
            pthread_mutex_unlock(&rl->mu);
            return last;
        }
        if (!rl->probing) {
            break;
        }
        pool_block_begin();
        pthread_cond_wait(&rl->probed, &rl->mu);
        pool_block_end();
        waited = true;
    }
    rl->probing = true;
    pthread_mutex_unlock(&rl->mu);
    enum err e = storage_delete(st, RATELEASE_PROBE_KEY);
    if (e == ERR_NOTFOUND) {
        e = ERR_OK;
    }
    pthread_mutex_lock(&rl->mu);
    rl->writable_until = e == ERR_OK ? now + RATELEASE_PROBE_S : 0;
    if (e == ERR_OK || e == ERR_READONLY) {
        rl->last = e;
        rl->answered = true;
    }
    rl->probing = false;
    pthread_cond_broadcast(&rl->probed);
    pthread_mutex_unlock(&rl->mu);
    return e;
}

/* The kinds by their wire name; setting: the tenant setting that is the limit (NULL: the key's). */
static const struct {
    const char *name;
    enum ratelease_kind kind;
    const char *setting;
} ratelease_kinds[] = {
    {"rpm", RATELEASE_RPM, "rpm_limit"},
    {"tpm", RATELEASE_TPM, "tpm_limit"},
    {"key", RATELEASE_KEY, NULL},
};

/* A positive integer member of obj, capped at RATELEASE_MAX_AMOUNT; 0 when absent or not one. */
static long long ratelease_limit_of(const json_t *obj, const char *member)
{
    const json_t *lv = json_object_get(obj, member);
    if (!json_is_integer(lv) || json_integer_value(lv) <= 0) {
        return 0;
    }
    json_int_t v = json_integer_value(lv);
    return v > RATELEASE_MAX_AMOUNT ? RATELEASE_MAX_AMOUNT : (long long)v;
}

/*
 * The rate_limit of the tenant's key for provider × key_type, read as creds
 * reads the record (the shared record cache: no storage read when warm, one
 * otherwise); 0 when there is no such key, it is revoked or expired (creds
 * serves none), or it has no rate_limit.
 */
static enum err ratelease_key_limit(struct fw_request *req, const char *t, const char *p,
                                    const char *kt, time_t now, long long *ret_limit)
{
    struct keystore *ks = keystore_of(req->backend);
    if (ks == NULL) {
        return ERR_INTERNAL;
    }
    char skey[STORAGE_MAX_KEY];
    enum err e = keystore_path_key(skey, sizeof(skey), t, p, kt);
    json_t *rec = NULL;
    if (e == ERR_OK) {
        e = keystore_record_get(ks, req->storage, skey, &rec);
    }
    if (e == ERR_NOTFOUND) {
        *ret_limit = 0;
        return ERR_OK;
    }
    if (e != ERR_OK) {
        return e;
    }
    long long limit = 0;
    if (strcmp(keystore_key_status(rec, now), "active") == 0) {
        limit = ratelease_limit_of(rec, "rate_limit");
    }
    json_decref(rec);
    *ret_limit = limit;
    return ERR_OK;
}

/*
 * provider and key_type name the key of kind "key" (the keys paths' name
 * rules) and are absent for the tenant's limits: a request that names a key
 * for rpm or tpm is a mistake better answered than ignored. False with a 400
 * in resp naming the field when not so.
 */
static bool ratelease_key_fields_ok(struct fw_request *req, struct fw_response *resp,
                                    enum ratelease_kind kind)
{
    static const char *const fields[] = {"provider", "key_type"};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        const char *v = fw_str(req, fields[i]);
        if (kind != RATELEASE_KEY && v != NULL) {
            fw_error(resp, "invalid value for field '%s': only with kind 'key'", fields[i]);
            return false;
        }
        if (kind == RATELEASE_KEY && !fw_name_valid(v)) {
            fw_error(resp,
                     "invalid value for field '%s': with kind 'key', required and must match "
                     "[a-z0-9][a-z0-9_-]{0,62}",
                     fields[i]);
            return false;
        }
    }
    return true;
}

static enum err ratelease_lease(struct fw_request *req, struct fw_response *resp)
{
    struct ratelease *rl = byok_hooks_state(req->backend, &byok_hooks_ratelease);
    if (rl == NULL) {
        return ERR_INTERNAL;
    }
    const char *t = fw_str(req, "tenant");
    const char *kind_s = fw_str(req, "kind");
    const char *node = fw_str(req, "node");
    /* The framework checked the range (1..RATELEASE_MAX_AMOUNT). */
    long long amount = (long long)fw_int(req, "amount");
    size_t k = 0;
    while (k < sizeof(ratelease_kinds) / sizeof(ratelease_kinds[0]) &&
           (kind_s == NULL || strcmp(kind_s, ratelease_kinds[k].name) != 0)) {
        k++;
    }
    if (k == sizeof(ratelease_kinds) / sizeof(ratelease_kinds[0])) {
        fw_error(resp, "invalid value for field 'kind': must be 'rpm', 'tpm' or 'key'");
        return ERR_OK;
    }
    enum ratelease_kind kind = ratelease_kinds[k].kind;
    if (!ratelease_key_fields_ok(req, resp, kind)) {
        return ERR_OK;
    }
    if (!paths_usage_id_ok(node, RATELEASE_MAX_NODE)) {
        fw_error(resp, "invalid value for field 'node': 1..%d characters of [A-Za-z0-9._-]",
                 RATELEASE_MAX_NODE);
        return ERR_OK;
    }
    time_t now = keystore_now();
    enum err e = ratelease_probe(rl, req->storage, now);
    if (e != ERR_OK) {
        return e; /* ERR_READONLY on a standby: Vault forwards to the active node */
    }
    const char *p = fw_str(req, "provider"), *kt = fw_str(req, "key_type");
    long long limit = 0;
    char name[RATELEASE_MAX_NAME + 1];
    if (kind == RATELEASE_KEY) {
        e = ratelease_key_limit(req, t, p, kt, now, &limit);
        /* Names are [a-z0-9_-], never '/': the name is one key's alone. */
        snprintf(name, sizeof(name), "%s/%s/%s", t, p, kt);
    } else {
        json_t *settings = NULL;
        /* Cached: no storage read when warm (the creds path reads it the same way). */
        e = keystore_settings_get(req->backend, req->storage, t, &settings);
        if (e == ERR_OK) {
            limit = ratelease_limit_of(settings, ratelease_kinds[k].setting);
            json_decref(settings);
        }
        snprintf(name, sizeof(name), "%s", t);
    }
    if (e != ERR_OK) {
        return e;
    }
    time_t window = now - now % RATELEASE_WINDOW_S;
    json_int_t window_end = (json_int_t)window + RATELEASE_WINDOW_S;
    if (limit == 0) {
        /* No limit of this kind (or no such tenant): nothing counted, nothing kept. */
        fw_reply(resp,
                 json_pack("{sbsssIsIsI}", "unlimited", 1, "kind", kind_s, "limit", (json_int_t)0,
                           "granted", (json_int_t)amount, "window_end", window_end));
        return ERR_OK;
    }
    pthread_mutex_lock(&rl->mu);
    struct ratelease_entry *ent = ratelease_entry(rl, kind, name, window);
    long long granted = 0, total = 0;
    if (ent != NULL) {
        /* A limit lowered within the window below what was granted leaves nothing. */
        long long left = limit - ent->granted;
        granted = left <= 0 ? 0 : (amount < left ? amount : left);
        ent->granted += granted;
        total = ent->granted;
    }
    pthread_mutex_unlock(&rl->mu);
    if (ent == NULL) {
        fw_error_coded(resp, 503,
                       "rate-lease table full (%d limit windows this minute); the agent "
                       "enforces the limit per node",
                       RATELEASE_MAX_ENTRIES);
        return ERR_OK;
    }
    long long remaining = limit > total ? limit - total : 0;
    fw_reply(resp, json_pack("{sbsssIsIsIsI}", "unlimited", 0, "kind", kind_s, "limit",
                             (json_int_t)limit, "granted", (json_int_t)granted, "remaining",
                             (json_int_t)remaining, "window_end", window_end));
    return ERR_OK;
}

static const struct fw_field ratelease_fields[] = {
    {.name = "kind",
     .type = FW_TYPE_STRING,
     .required = true,
     .max_len = 8,
     .description = "Which limit: 'rpm' (rpm_limit, requests), 'tpm' (tpm_limit, tokens) or "
                    "'key' (the rate_limit of the key named by provider and key_type, requests)."},
    {.name = "provider",
     .type = FW_TYPE_STRING,
     .max_len = FW_NAME_MAX,
     .description = "kind 'key' only (required there): the key's provider."},
    {.name = "key_type",
     .type = FW_TYPE_STRING,
     .max_len = FW_NAME_MAX,
     .description = "kind 'key' only (required there): the key's key_type."},
    {.name = "amount",
     .type = FW_TYPE_INT,
     .required = true,
     .min = 1,
     .max = RATELEASE_MAX_AMOUNT,
     .description = "Requests or tokens the node asks for in the current minute (1..10^9)."},
    {.name = "node",
     .type = FW_TYPE_STRING,
     .required = true,
     .max_len = RATELEASE_MAX_NODE,
     .description = "The agent node's identity: 1..128 characters of [A-Za-z0-9._-]."},
    {.name = NULL},
};

const struct fw_path paths_ratelease[] = {
    {
        .pattern = "tenants/{tenant}/rate-lease",
        .fields = ratelease_fields,
        .handlers = {[FW_OP_UPDATE] = ratelease_lease, [FW_OP_CREATE] = ratelease_lease},
        .synopsis = "Lease a slice of a tenant's rpm_limit, tpm_limit or a key's rate_limit for "
                    "this minute (agents).",
        .description = "Grants min(amount, limit - granted) of the current one-minute window "
                       "(aligned to the wall clock; window_end in unix seconds). Kept in memory "
                       "only: a restart or failover forgets the current window. A tenant "
                       "without that limit, or a key that is absent, not active or without a "
                       "rate_limit, gets 'unlimited'.",
    },
    {.pattern = NULL},
};
