/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Rate leases (ratelease.h). The wire format is the plugin's
 * `tenants/<t>/rate-lease` (docs/api.md).
 */
#include "agent/ratelease.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/ratelimit.h"
#include "common/jsonw.h"
#include "common/log.h"

#define RATELEASE_BUCKETS 8192
/* A reply's window_end further than this from our clock is not believed (unreadable). */
#define RATELEASE_MAX_SKEW_S 3600.0

struct ratelease_wait {
    ratelease_cb cb;
    void *arg;
    long long need; /* what the call needs (ratelease_take's min(n, limit)) */
    struct ratelease_wait *next, **prevp;
};

struct rlslot {
    unsigned long long hash;
    enum ratelease_kind kind;
    long long limit;   /* the limit seen at the last take (debt is kept within it) */
    long long left;    /* of the slice, not taken yet; < 0: debt */
    double window_id;  /* the plugin's window_end of the slice (as it said it); 0: none */
    double window_end; /* when the slice ends on our clock (a second from now at least) */
    long long used;    /* taken in window_id (net of what went back) */
    double last_id;    /* the window before: its window_id and what it used */
    long long last_used;
    double short_until;     /* the plugin gave less than asked: the window is used up until */
    double fallback_until;  /* the shared path failed: per node until */
    double unlimited_until; /* the plugin knows no such limit: per node until */
    long long woken;        /* while waiters are called back: what those left need in all */
    int waking;             /* ratelease_wake calls back (nested depth): not to be swept */
    bool asking;            /* a lease request is in flight */
    long long asked;        /* what it asked for */
    struct vault_req *req;  /* its handle (NULL while vault_request has not returned) */
    struct ratelease_wait *waiters;
    struct ratelease *rl;
    struct rlslot *next;
    char name[]; /* the tenant, or tenant/provider/key_type (RATELEASE_MAX_NAME at most) */
};

struct ratelease {
    struct vault *vault;
    struct usage *usage;
    struct config *cfg;
    struct rlslot *buckets[RATELEASE_BUCKETS];
    size_t n;
    double warned_until; /* the fallback warning is said once per RATELEASE_RETRY_S */
    struct ratelease_stats stats;
};

static double ratelease_real_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double (*ratelease_now)(void) = ratelease_real_now;

void ratelease_set_clock(double (*now)(void))
{
    ratelease_now = now != NULL ? now : ratelease_real_now;
}

static unsigned long long ratelease_hash(const char *s, enum ratelease_kind kind)
{
    unsigned long long h = (1469598103934665603ULL ^ (unsigned)kind) * 1099511628211ULL;
    for (; *s != '\0'; s++) {
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    }
    return h;
}

/* The kinds: their wire name and the limit they share, as logs name it. */
static const struct {
    const char *wire, *limit;
} ratelease_kinds[] = {
    [RATELEASE_RPM] = {"rpm", "rpm_limit"},
    [RATELEASE_TPM] = {"tpm", "tpm_limit"},
    [RATELEASE_KEY] = {"key", "rate_limit"},
};

bool ratelease_key_name(char *out, size_t size, const char *tenant, const char *provider,
                        const char *key_type)
{
    const char *parts[] = {tenant, provider, key_type};
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        size_t len = parts[i] != NULL ? strlen(parts[i]) : 0;
        if (len == 0 || len > CONFIG_MAX_NAME || strchr(parts[i], '/') != NULL) {
            return false;
        }
    }
    int n = snprintf(out, size, "%s/%s/%s", tenant, provider, key_type);
    return n > 0 && (size_t)n < size;
}

/*
 * The parts of a slot's name: the tenant, and for RATELEASE_KEY the provider
 * and key_type (else empty). Each out holds CONFIG_MAX_NAME + 1 bytes.
 */
static void ratelease_name_split(const struct rlslot *s, char *tenant, char *provider,
                                 char *key_type)
{
    char *outs[] = {tenant, provider, key_type};
    /* Only a key's name has parts: a tenant's is its first part, whole. */
    const char *sep = s->kind == RATELEASE_KEY ? "/" : "";
    const char *p = s->name;
    for (size_t i = 0; i < sizeof(outs) / sizeof(outs[0]); i++) {
        size_t len = strcspn(p, sep);
        size_t keep = len > CONFIG_MAX_NAME ? CONFIG_MAX_NAME : len;
        memcpy(outs[i], p, keep);
        outs[i][keep] = '\0';
        p += len;
        if (*p == '/') {
            p++;
        }
    }
}

struct ratelease *ratelease_new(struct vault *v, struct usage *u, struct config *cfg)
{
    struct ratelease *rl = calloc(1, sizeof(*rl));
    if (rl == NULL) {
        return NULL;
    }
    rl->vault = v;
    rl->usage = u;
    rl->cfg = cfg;
    return rl;
}

static void ratelease_slot_free(struct rlslot *s)
{
    vault_request_cancel(s->req);
    for (struct ratelease_wait *w = s->waiters; w != NULL;) {
        struct ratelease_wait *next = w->next;
        free(w);
        w = next;
    }
    free(s);
}

void ratelease_free(struct ratelease *rl)
{
    if (rl == NULL) {
        return;
    }
    for (size_t i = 0; i < RATELEASE_BUCKETS; i++) {
        for (struct rlslot *s = rl->buckets[i]; s != NULL;) {
            struct rlslot *next = s->next;
            ratelease_slot_free(s);
            s = next;
        }
    }
    free(rl);
}

void ratelease_set_config(struct ratelease *rl, struct config *cfg)
{
    rl->cfg = cfg;
}

const struct ratelease_stats *ratelease_stats(const struct ratelease *rl)
{
    return &rl->stats;
}

/* An entry with nothing going on and nothing to remember (no slice, debt or fallback). */
static bool ratelease_idle(const struct rlslot *s, double now)
{
    return !s->asking && s->waiters == NULL && s->waking == 0 &&
           (s->window_end <= now || s->left == 0) && s->left >= 0 && s->fallback_until <= now &&
           s->short_until <= now && s->unlimited_until <= now;
}

static void ratelease_sweep(struct ratelease *rl, double now)
{
    for (size_t i = 0; i < RATELEASE_BUCKETS; i++) {
        for (struct rlslot **pp = &rl->buckets[i]; *pp != NULL;) {
            struct rlslot *s = *pp;
            if (ratelease_idle(s, now)) {
                *pp = s->next;
                ratelease_slot_free(s);
                rl->n--;
            } else {
                pp = &s->next;
            }
        }
    }
}

static struct rlslot *ratelease_slot(struct ratelease *rl, const char *name,
                                     enum ratelease_kind kind, bool create, double now)
{
    unsigned long long h = ratelease_hash(name, kind);
    struct rlslot **head = &rl->buckets[h % RATELEASE_BUCKETS];
    for (struct rlslot *s = *head; s != NULL; s = s->next) {
        if (s->hash == h && s->kind == kind && strcmp(s->name, name) == 0) {
            return s;
        }
    }
    size_t len = strlen(name);
    if (!create || len > (kind == RATELEASE_KEY ? RATELEASE_MAX_NAME : CONFIG_MAX_NAME)) {
        return NULL;
    }
    if (rl->n >= RATELEASE_MAX_ENTRIES) {
        ratelease_sweep(rl, now);
        if (rl->n >= RATELEASE_MAX_ENTRIES) {
            return NULL;
        }
    }
    struct rlslot *s = calloc(1, sizeof(*s) + len + 1);
    if (s == NULL) {
        return NULL;
    }
    memcpy(s->name, name, len + 1);
    s->hash = h;
    s->kind = kind;
    s->rl = rl;
    s->next = *head;
    *head = s;
    rl->n++;
    return s;
}

/*
 * Calls every waiter once (each takes again, and may wait on a new request).
 * s stays (waking keeps the sweep off it) while they run.
 */
static void ratelease_wake(struct rlslot *s)
{
    struct ratelease_wait *list = s->waiters;
    s->waiters = NULL;
    if (list != NULL) {
        list->prevp = &list;
    }
    /* The first of them to ask again asks for all of them (ratelease_amount): a burst. */
    s->woken = 0;
    for (const struct ratelease_wait *w = list; w != NULL; w = w->next) {
        s->woken += w->need;
    }
    if (s->woken > RATELIMIT_MAX_LIMIT) {
        s->woken = RATELIMIT_MAX_LIMIT;
    }
    while (list != NULL) {
        struct ratelease_wait *w = list;
        list = w->next;
        if (list != NULL) {
            list->prevp = &list;
        }
        ratelease_cb cb = w->cb;
        void *arg = w->arg;
        long long need = w->need;
        free(w);
        s->waking++;
        cb(arg);
        s->waking--;
        s->woken -= need < s->woken ? need : s->woken;
    }
    s->woken = 0;
}

/* The shared path failed for s: per node for RATELEASE_RETRY_S, said once per that for the node. */
static void ratelease_fall_back(struct rlslot *s, const char *why, long status, double now)
{
    struct ratelease *rl = s->rl;
    s->fallback_until = now + RATELEASE_RETRY_S;
    rl->stats.fallbacks++;
    if (now >= rl->warned_until) {
        rl->warned_until = now + RATELEASE_RETRY_S;
        char st[24];
        snprintf(st, sizeof(st), "%ld", status);
        char tenant[CONFIG_MAX_NAME + 1], provider[CONFIG_MAX_NAME + 1],
            key_type[CONFIG_MAX_NAME + 1];
        ratelease_name_split(s, tenant, provider, key_type);
        if (s->kind == RATELEASE_KEY) {
            log_kv(LOGL_WARN,
                   "rate lease failed; the tenant's key rate_limit is enforced per node for 60 s",
                   "tenant", tenant, "provider", provider, "key_type", key_type, "limit",
                   "rate_limit", "status", st, "error", why, NULL);
        } else {
            log_kv(LOGL_WARN,
                   "rate lease failed; the tenant's rpm_limit/tpm_limit is enforced per node for "
                   "60 s",
                   "tenant", tenant, "limit", ratelease_kinds[s->kind].limit, "status", st, "error",
                   why, NULL);
        }
    }
}

/* A reply's integer field in lo..hi, or -1. */
static long long ratelease_int(const json_t *data, const char *k, long long lo, long long hi)
{
    const json_t *v = json_object_get(data, k);
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        return -1;
    }
    return (long long)json_integer_value(v);
}

/*
 * The slice's window is over (or the plugin moved to another one): its rest
 * is dropped, its debt kept, and what it used sizes the next window's first
 * lease.
 */
static void ratelease_roll(struct rlslot *s)
{
    if (s->window_id > 0) {
        s->last_id = s->window_id;
        s->last_used = s->used;
    }
    s->left = s->left < 0 ? s->left : 0;
    s->window_id = 0;
    s->window_end = 0;
    s->used = 0;
    s->short_until = 0;
}

static void ratelease_answered(void *arg, enum err e, long status, struct buf *body)
{
    struct rlslot *s = arg;
    struct ratelease *rl = s->rl;
    s->asking = false;
    s->req = NULL;
    double now = ratelease_now();
    json_t *root = NULL;
    if (e == ERR_OK && status == 200 && body != NULL) {
        root = json_loadb((const char *)body->data, body->len, 0, NULL);
    }
    const json_t *data = json_object_get(root, "data");
    long long granted = ratelease_int(data, "granted", 0, s->asked);
    long long end = ratelease_int(data, "window_end", (long long)(now - RATELEASE_MAX_SKEW_S),
                                  (long long)(now + RATELEASE_MAX_SKEW_S));
    const json_t *unlimited = json_object_get(data, "unlimited");
    if (e == ERR_OK && status == 200 && json_is_true(unlimited)) {
        /*
         * The plugin knows no such limit (changed since these creds, or
         * removed): per node for a while, then asked again.
         */
        s->unlimited_until = now + RATELEASE_RETRY_S;
        rl->stats.unlimited++;
    } else if (e == ERR_OK && status == 200 && json_is_false(unlimited) && granted >= 0 &&
               end > 0) {
        if (s->window_id != (double)end) {
            ratelease_roll(s); /* a new window */
            s->window_id = (double)end;
            /* A clock ahead of Vault's must not make every slice end at once: a second at least. */
            s->window_end = s->window_id > now + 1 ? s->window_id : now + 1;
        }
        s->left += granted;
        if (granted < s->asked) {
            /* The plugin gave all the window had left: no more until it ends. */
            s->short_until = s->window_end;
            rl->stats.short_leases++;
        } else {
            rl->stats.granted++;
        }
    } else {
        rl->stats.errors++;
        /* An older plugin answers 400 to a kind it does not know ('key'): not supported. */
        bool no_kind = status == 400 && s->kind == RATELEASE_KEY;
        const char *why = e != ERR_OK                      ? err_str(e)
                          : status == 403                  ? "refused by the agent's policy"
                          : status == 404 || status == 405 ? "vault has no rate-lease path"
                          : no_kind                        ? "vault has no key rate leases"
                          : status == 200                  ? "unreadable reply"
                                                           : "vault error";
        ratelease_fall_back(s, why, e == ERR_OK ? status : 0L, now);
    }
    json_decref(root);
    ratelease_wake(s);
}

static bool ratelease_request(struct ratelease *rl, struct rlslot *s, long long amount)
{
    const char *node = rl->usage != NULL ? usage_lease_node(rl->usage) : rl->cfg->usage.node_id;
    char tenant[CONFIG_MAX_NAME + 1], provider[CONFIG_MAX_NAME + 1], key_type[CONFIG_MAX_NAME + 1];
    ratelease_name_split(s, tenant, provider, key_type);
    json_t *j = json_pack("{s:s,s:I,s:s}", "kind", ratelease_kinds[s->kind].wire, "amount",
                          (json_int_t)amount, "node", node);
    /* A key's rate_limit names the key; the tenant's limits send no such fields. */
    if (j != NULL && s->kind == RATELEASE_KEY &&
        (json_object_set_new(j, "provider", json_string(provider)) != 0 ||
         json_object_set_new(j, "key_type", json_string(key_type)) != 0)) {
        json_decref(j);
        j = NULL;
    }
    char *text = j != NULL ? jsonw_dumps(j, NULL) : NULL;
    json_decref(j);
    if (text == NULL) {
        return false;
    }
    char path[512];
    snprintf(path, sizeof(path), "%s/tenants/%s/rate-lease", rl->cfg->vault.mount, tenant);
    s->asked = amount;
    s->asking = true; /* before the call: Vault may answer at once (a failed login) */
    struct vault_req *req = NULL;
    if (vault_request(rl->vault, "POST", path, text, ratelease_answered, s, &req) != ERR_OK) {
        s->asking = false;
        return false;
    }
    if (s->asking) {
        s->req = req;
    }
    return true;
}

/* Whole seconds until t, at least 1 (a Retry-After). */
static long long ratelease_secs_until(double t, double now)
{
    long long secs = ratelimit_retry_after(t - now);
    return secs < 1 ? 1 : secs;
}

/*
 * What a lease asks for: what the call is missing, or more, as the node's
 * demand says: what it took so far in this window, or in the window before
 * (a node that used k last minute starts this one with k), or what the
 * calls woken with this one need (a burst that waited on the last lease),
 * at least 1 and at most rate_lease_percent of the limit. So a quiet node
 * holds about what it uses, and a busy one doubles its holding with every
 * lease until it asks for a whole share: many quiet nodes of a tenant do
 * not lock the minute up between them.
 */
static long long ratelease_amount(const struct ratelease *rl, const struct rlslot *s,
                                  long long need, double now)
{
    long long share = s->limit * rl->cfg->limits.rate_lease_percent / 100;
    long long demand = s->used > s->woken ? s->used : s->woken;
    if (s->last_id > 0 && now < s->last_id + 60 && s->last_used > demand) {
        demand = s->last_used; /* the window right before this one */
    }
    if (demand > share) {
        demand = share;
    }
    long long missing = need - s->left;
    long long amount = demand > missing ? demand : missing;
    if (amount < 1) {
        amount = 1;
    }
    return amount > RATELIMIT_MAX_LIMIT ? RATELIMIT_MAX_LIMIT : amount;
}

enum ratelease_rc ratelease_take(struct ratelease *rl, const char *name, enum ratelease_kind kind,
                                 long long limit, long long n, ratelease_cb cb, void *arg,
                                 struct ratelease_wait **ret_wait, double *ret_window,
                                 long long *ret_retry_s)
{
    *ret_wait = NULL;
    if (rl == NULL || !rl->cfg->limits.shared_rate_limits || limit <= 0 || n < 0) {
        return RATELEASE_LOCAL;
    }
    if (limit > RATELIMIT_MAX_LIMIT) {
        limit = RATELIMIT_MAX_LIMIT;
    }
    double now = ratelease_now();
    struct rlslot *s = ratelease_slot(rl, name, kind, true, now);
    if (s == NULL) {
        return RATELEASE_LOCAL; /* table full or out of memory: per node rather than nothing */
    }
    if (s->limit != limit) {
        /*
         * The settings changed (or two cached creds of the tenant carry the
         * old and the new limit for a while). What this node holds was
         * granted in the plugin's count all the same: kept. The plugin's
         * next answer says whether the limit is still there.
         */
        s->limit = limit;
        s->unlimited_until = 0;
        if (s->left < -limit) {
            s->left = -limit;
        }
    }
    if (s->unlimited_until > now || s->fallback_until > now) {
        return RATELEASE_LOCAL;
    }
    if (s->window_end > 0 && s->window_end <= now) {
        ratelease_roll(s);
    }
    long long need = n < limit ? n : limit;
    if (need == 0 || (s->window_end > now && s->left >= need)) {
        s->left -= n;
        s->used += n;
        if (s->left < -limit) {
            s->left = -limit;
        }
        *ret_window = s->window_id;
        return RATELEASE_OK;
    }
    if (!s->asking) {
        if (s->short_until > now) {
            *ret_retry_s = ratelease_secs_until(s->short_until, now);
            return RATELEASE_REFUSED;
        }
        if (!ratelease_request(rl, s, ratelease_amount(rl, s, need, now))) {
            rl->stats.errors++;
            ratelease_fall_back(s, "out of memory", 0, now);
            return RATELEASE_LOCAL;
        }
        if (!s->asking) {
            /* Answered at once (an error before any I/O): take again with that answer. */
            return ratelease_take(rl, name, kind, limit, n, cb, arg, ret_wait, ret_window,
                                  ret_retry_s);
        }
    }
    struct ratelease_wait *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return RATELEASE_LOCAL;
    }
    w->cb = cb;
    w->arg = arg;
    w->need = need;
    w->next = s->waiters;
    if (w->next != NULL) {
        w->next->prevp = &w->next;
    }
    w->prevp = &s->waiters;
    s->waiters = w;
    *ret_wait = w;
    return RATELEASE_WAIT;
}

void ratelease_cancel(struct ratelease_wait *w)
{
    if (w == NULL) {
        return;
    }
    *w->prevp = w->next;
    if (w->next != NULL) {
        w->next->prevp = w->prevp;
    }
    free(w);
}

void ratelease_give(struct ratelease *rl, const char *name, enum ratelease_kind kind,
                    long long limit, long long n, double window)
{
    (void)limit; /* the slice's own limit bounds the debt (the settings may have changed) */
    if (rl == NULL || n == 0) {
        return;
    }
    struct rlslot *s = ratelease_slot(rl, name, kind, false, 0);
    if (s == NULL) {
        return; /* gone with everything it held */
    }
    double now = ratelease_now();
    bool same = window > 0 && s->window_id == window && s->window_end > now;
    if (n > 0) {
        /* Back to the slice while its window lasts; a slice of an ended window is gone. */
        if (same) {
            s->left += n;
            s->used -= n < s->used ? n : s->used;
        }
        return;
    }
    s->left += n;
    if (same) {
        s->used -= n;
    }
    if (s->left < -s->limit) {
        s->left = -s->limit;
    }
}
