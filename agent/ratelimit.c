/*
 * Token buckets for the agent's own rate limits (see ratelimit.h).
 *
 * A chained hash table on a 64-bit hash of the bucket's name: a call looks
 * up its tenant's buckets in constant time however many tenants the node
 * serves (a table scanned in full, as cooldown.c's, cost microseconds per
 * call once thousands of tenants were under limits). A bucket's level is
 * brought up to date only when it is used: level + elapsed × limit / 60,
 * capped at limit. A bucket that is full by now is as good as none: it is
 * removed when a lookup passes it in its chain, by a sweep of a few slots
 * on every lookup (every slot within RATELIMIT_SLOTS / RATELIMIT_SWEEP
 * lookups), and by a sweep of the whole table before a new bucket would
 * find it full. It does not read settings and does not log.
 */
#include "agent/ratelimit.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/config.h"

/* A level within this of what is needed counts as enough (floating-point noise of the refill). */
#define RATELIMIT_EPSILON 1e-9
/* Hash slots (a power of two; the array is allocated with the first bucket). */
#define RATELIMIT_SLOTS 4096
/* Slots swept for full buckets on every lookup. */
#define RATELIMIT_SWEEP 8

struct ratelimit_entry {
    struct ratelimit_entry *next;
    uint64_t hash;
    enum ratelimit_kind kind;
    double level; /* tokens at stamp; < 0: debt */
    double stamp; /* monotonic seconds of the last update */
    double limit; /* capacity, and tokens refilled per 60 s */
    char tenant[CONFIG_MAX_NAME + 1];
    char provider[CONFIG_MAX_NAME + 1];
    char key_id[RATELIMIT_MAX_KEY_ID + 1];
};

struct ratelimit {
    struct ratelimit_entry **slot; /* RATELIMIT_SLOTS chains; NULL until the first bucket */
    size_t n;
    size_t sweep; /* the next slot the sweep looks at */
};

long long ratelimit_limit_of(const json_t *v)
{
    if (!json_is_integer(v) || json_integer_value(v) <= 0) {
        return 0;
    }
    json_int_t l = json_integer_value(v);
    return l > RATELIMIT_MAX_LIMIT ? RATELIMIT_MAX_LIMIT : (long long)l;
}

long long ratelimit_retry_after(double wait)
{
    if (!(wait > 0)) {
        return 0;
    }
    /* No bucket asks for more: one limit of debt, then one limit, at limit per minute. */
    if (wait > 120) {
        return 120;
    }
    double s = wait - 1e-6;
    long long secs = (long long)s;
    if ((double)secs < s) {
        secs++;
    }
    return secs < 1 ? 1 : secs;
}

/* FNV-1a over the kind, tenant, provider and key_id, each ended by a NUL. */
static uint64_t ratelimit_hash(enum ratelimit_kind kind, const char *tenant, const char *provider,
                               const char *key_id)
{
    uint64_t h = (14695981039346656037ULL ^ (uint64_t)kind) * 1099511628211ULL;
    const char *parts[3] = {tenant, provider, key_id};
    for (size_t p = 0; p < 3; p++) {
        size_t max = p == 2 ? RATELIMIT_MAX_KEY_ID : CONFIG_MAX_NAME;
        for (size_t i = 0; i < max && parts[p][i] != '\0'; i++) {
            h = (h ^ (unsigned char)parts[p][i]) * 1099511628211ULL;
        }
        h = h * 1099511628211ULL;
    }
    return h;
}

struct ratelimit *ratelimit_new(void)
{
    return calloc(1, sizeof(struct ratelimit));
}

void ratelimit_free(struct ratelimit *rl)
{
    if (rl == NULL) {
        return;
    }
    for (size_t i = 0; rl->slot != NULL && i < RATELIMIT_SLOTS; i++) {
        struct ratelimit_entry *e = rl->slot[i];
        while (e != NULL) {
            struct ratelimit_entry *next = e->next;
            free(e);
            e = next;
        }
    }
    free(rl->slot);
    free(rl);
}

/* The level at now, before any cap: what the bucket would hold with unbounded capacity. */
static double ratelimit_level_at(const struct ratelimit_entry *e, double now)
{
    double dt = now > e->stamp ? now - e->stamp : 0;
    return e->level + dt * e->limit / 60.0;
}

/* Brings e up to date at now under limit: refilled, capped at the (maybe new) limit. */
static void ratelimit_refill(struct ratelimit_entry *e, double limit, double now)
{
    double level = ratelimit_level_at(e, now);
    e->limit = limit;
    e->level = level > limit ? limit : level;
    if (now > e->stamp) {
        e->stamp = now;
    }
}

/* Removes the full buckets of one chain. */
static void ratelimit_sweep_slot(struct ratelimit *rl, size_t slot, double now)
{
    struct ratelimit_entry **pe = &rl->slot[slot];
    while (*pe != NULL) {
        struct ratelimit_entry *e = *pe;
        if (ratelimit_level_at(e, now) >= e->limit) {
            *pe = e->next;
            free(e);
            rl->n--;
        } else {
            pe = &e->next;
        }
    }
}

/*
 * The bucket's entry, or NULL; removes full buckets on the way: in its chain
 * (the one looked for included: it is then as good as new) and in the next
 * RATELIMIT_SWEEP slots of the sweep.
 */
static struct ratelimit_entry *ratelimit_find(struct ratelimit *rl, enum ratelimit_kind kind,
                                              const char *tenant, const char *provider,
                                              const char *key_id, double now)
{
    if (rl->slot == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < RATELIMIT_SWEEP; i++) {
        ratelimit_sweep_slot(rl, rl->sweep, now);
        rl->sweep = (rl->sweep + 1) & (RATELIMIT_SLOTS - 1);
    }
    uint64_t h = ratelimit_hash(kind, tenant, provider, key_id);
    size_t slot = (size_t)(h & (RATELIMIT_SLOTS - 1));
    ratelimit_sweep_slot(rl, slot, now);
    for (struct ratelimit_entry *e = rl->slot[slot]; e != NULL; e = e->next) {
        if (e->hash == h && e->kind == kind &&
            strncmp(e->tenant, tenant, sizeof(e->tenant) - 1) == 0 &&
            strncmp(e->provider, provider, sizeof(e->provider) - 1) == 0 &&
            strncmp(e->key_id, key_id, RATELIMIT_MAX_KEY_ID) == 0) {
            return e;
        }
    }
    return NULL;
}

/*
 * A new full bucket, or NULL when the table holds RATELIMIT_MAX_ENTRIES
 * buckets in use (after a sweep of every slot) or out of memory.
 */
static struct ratelimit_entry *ratelimit_add(struct ratelimit *rl, enum ratelimit_kind kind,
                                             const char *tenant, const char *provider,
                                             const char *key_id, double limit, double now)
{
    if (rl->slot == NULL) {
        rl->slot = calloc(RATELIMIT_SLOTS, sizeof(struct ratelimit_entry *));
        if (rl->slot == NULL) {
            return NULL;
        }
    }
    if (rl->n >= RATELIMIT_MAX_ENTRIES) {
        for (size_t i = 0; i < RATELIMIT_SLOTS; i++) {
            ratelimit_sweep_slot(rl, i, now);
        }
        if (rl->n >= RATELIMIT_MAX_ENTRIES) {
            return NULL;
        }
    }
    struct ratelimit_entry *e = calloc(1, sizeof(*e));
    if (e == NULL) {
        return NULL;
    }
    e->hash = ratelimit_hash(kind, tenant, provider, key_id);
    e->kind = kind;
    e->level = limit;
    e->stamp = now;
    e->limit = limit;
    snprintf(e->tenant, sizeof(e->tenant), "%s", tenant);
    snprintf(e->provider, sizeof(e->provider), "%s", provider);
    snprintf(e->key_id, sizeof(e->key_id), "%s", key_id);
    size_t slot = (size_t)(e->hash & (RATELIMIT_SLOTS - 1));
    e->next = rl->slot[slot];
    rl->slot[slot] = e;
    rl->n++;
    return e;
}

/*
 * Removes n tokens, keeping the debt within one limit (bounded waits, bounded
 * arithmetic). Deliberate: a call reserves its whole request (usagebound.h),
 * so only answers without max_tokens go past their reservation, and those are
 * bounded by the model (usagebound_clamp); deeper debt would turn one long
 * answer into a lock-out longer than Retry-After can tell (docs/agent.md,
 * "Why the debt stops at one limit").
 */
static void ratelimit_spend(struct ratelimit_entry *e, double n)
{
    e->level -= n;
    if (e->level < -e->limit) {
        e->level = -e->limit;
    }
}

int ratelimit_take(struct ratelimit *rl, enum ratelimit_kind kind, const char *tenant,
                   const char *provider, const char *key_id, long long limit, long long n,
                   double now, double *ret_wait)
{
    if (rl == NULL || limit <= 0 || n < 0) {
        return 1;
    }
    provider = provider != NULL ? provider : "";
    key_id = key_id != NULL ? key_id : "";
    double lim = (double)(limit > RATELIMIT_MAX_LIMIT ? RATELIMIT_MAX_LIMIT : limit);
    struct ratelimit_entry *e = ratelimit_find(rl, kind, tenant, provider, key_id, now);
    if (e == NULL) {
        if (n == 0) {
            return 1; /* a full bucket stays full: nothing to record */
        }
        e = ratelimit_add(rl, kind, tenant, provider, key_id, lim, now);
        if (e == NULL) {
            return -1;
        }
    }
    ratelimit_refill(e, lim, now);
    double need = (double)n < lim ? (double)n : lim;
    if (e->level + RATELIMIT_EPSILON >= need) {
        ratelimit_spend(e, (double)n);
        return 1;
    }
    *ret_wait = (need - e->level) * 60.0 / lim;
    return 0;
}

void ratelimit_give(struct ratelimit *rl, enum ratelimit_kind kind, const char *tenant,
                    const char *provider, const char *key_id, long long limit, long long n,
                    double now)
{
    if (rl == NULL || limit <= 0 || n == 0) {
        return;
    }
    provider = provider != NULL ? provider : "";
    key_id = key_id != NULL ? key_id : "";
    double lim = (double)(limit > RATELIMIT_MAX_LIMIT ? RATELIMIT_MAX_LIMIT : limit);
    struct ratelimit_entry *e = ratelimit_find(rl, kind, tenant, provider, key_id, now);
    if (e == NULL) {
        if (n > 0) {
            return; /* gone because full: it stays full */
        }
        e = ratelimit_add(rl, kind, tenant, provider, key_id, lim, now);
        if (e == NULL) {
            return;
        }
    }
    ratelimit_refill(e, lim, now);
    if (n > 0) {
        e->level += (double)n;
        if (e->level > lim) {
            e->level = lim;
        }
    } else {
        ratelimit_spend(e, -(double)n);
    }
}

size_t ratelimit_count(const struct ratelimit *rl)
{
    return rl != NULL ? rl->n : 0;
}
