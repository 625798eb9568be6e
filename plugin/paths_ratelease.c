/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Path tenants/<t>/rate-lease (update): agents enforce a tenant's rpm_limit
 * and tpm_limit across every node with slices of the current minute. A node
 * asks for `amount` requests (rpm) or tokens (tpm); the plugin grants
 * min(amount, limit - granted so far in this window) and says when the window
 * ends. The limit is the tenant's current setting, read as creds reads it
 * (from the settings cache: no storage read when warm).
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
 * tenant × kind entries; an entry of an earlier window is as good as none and
 * is dropped when room is needed. A table full of current windows answers 503
 * (the agent then enforces per node).
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
/* Tenant × kind entries held at most (~100 bytes each). */
#define RATELEASE_MAX_ENTRIES 65536
#define RATELEASE_SLOTS 8192
#define RATELEASE_WINDOW_S 60
/* A storage key nothing ever writes: deleting it proves the storage is writable. */
#define RATELEASE_PROBE_KEY "rate-lease/probe"
#define RATELEASE_PROBE_S 10

enum ratelease_kind { RATELEASE_RPM, RATELEASE_TPM };

struct ratelease_entry {
    struct ratelease_entry *next;
    uint64_t hash;
    enum ratelease_kind kind;
    time_t window; /* start of the window granted is of */
    long long granted;
    char tenant[FW_NAME_MAX + 1];
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

static uint64_t ratelease_hash(enum ratelease_kind kind, const char *tenant)
{
    uint64_t h = (14695981039346656037ULL ^ (uint64_t)kind) * 1099511628211ULL;
    for (const char *s = tenant; *s != '\0'; s++) {
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
 * The entry of tenant × kind for window (a new one, or one of an earlier
 * window reset to it), or NULL when the table is full of this window's
 * entries or out of memory. Under mu.
 */
static struct ratelease_entry *ratelease_entry(struct ratelease *rl, enum ratelease_kind kind,
                                               const char *tenant, time_t window)
{
    uint64_t h = ratelease_hash(kind, tenant);
    struct ratelease_entry **head = &rl->slot[h % RATELEASE_SLOTS];
    for (struct ratelease_entry *e = *head; e != NULL; e = e->next) {
        if (e->hash == h && e->kind == kind && strcmp(e->tenant, tenant) == 0) {
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
    struct ratelease_entry *e = calloc(1, sizeof(*e));
    if (e == NULL) {
        return NULL;
    }
    e->hash = h;
    e->kind = kind;
    e->window = window;
    snprintf(e->tenant, sizeof(e->tenant), "%s", tenant);
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
    enum ratelease_kind kind;
    if (kind_s != NULL && strcmp(kind_s, "rpm") == 0) {
        kind = RATELEASE_RPM;
    } else if (kind_s != NULL && strcmp(kind_s, "tpm") == 0) {
        kind = RATELEASE_TPM;
    } else {
        fw_error(resp, "invalid value for field 'kind': must be 'rpm' or 'tpm'");
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
    json_t *settings = NULL;
    /* Cached: no storage read when warm (the creds path reads it the same way). */
    e = keystore_settings_get(req->backend, req->storage, t, &settings);
    if (e != ERR_OK) {
        return e;
    }
    json_t *lv = json_object_get(settings, kind == RATELEASE_RPM ? "rpm_limit" : "tpm_limit");
    long long limit =
        json_is_integer(lv) && json_integer_value(lv) > 0 ? (long long)json_integer_value(lv) : 0;
    json_decref(settings);
    if (limit > RATELEASE_MAX_AMOUNT) {
        limit = RATELEASE_MAX_AMOUNT;
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
    struct ratelease_entry *ent = ratelease_entry(rl, kind, t, window);
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
                       "rate-lease table full (%d tenant windows this minute); the agent "
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
     .description = "Which limit: 'rpm' (rpm_limit, requests) or 'tpm' (tpm_limit, tokens)."},
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
        .synopsis = "Lease a slice of a tenant's rpm_limit or tpm_limit for this minute (agents).",
        .description = "Grants min(amount, limit - granted) of the current one-minute window "
                       "(aligned to the wall clock; window_end in unix seconds). Kept in memory "
                       "only: a restart or failover forgets the current window. A tenant "
                       "without that limit gets 'unlimited'.",
    },
    {.pattern = NULL},
};
