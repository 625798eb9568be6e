/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Token buckets for the agent's own rate limits (see ratelimit.h).
 *
 * The table is a dense array scanned in full, as cooldown.c's: it holds one
 * bucket per tenant (and key) that made a call in the last minute under a
 * limit, and a scan compares 64-bit hashes. A bucket's level is brought up
 * to date only when it is used: level + elapsed × limit / 60, capped at
 * limit. A bucket that would be full by now is removed (swapped with the
 * last) by every scan, so the table holds only tenants that are using up
 * their limits. It does not read settings and does not log.
 */
#include "agent/ratelimit.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/config.h"

/* A level within this of what is needed counts as enough (floating-point noise of the refill). */
#define RATELIMIT_EPSILON 1e-9

struct ratelimit_entry {
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
    struct ratelimit_entry *e;
    size_t n, cap;
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
    free(rl->e);
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

/*
 * The bucket's entry, or NULL; removes every bucket that is full by now on
 * the way (the one looked for included: it is then as good as new).
 */
static struct ratelimit_entry *ratelimit_find(struct ratelimit *rl, enum ratelimit_kind kind,
                                              const char *tenant, const char *provider,
                                              const char *key_id, double now)
{
    uint64_t h = ratelimit_hash(kind, tenant, provider, key_id);
    size_t found = SIZE_MAX;
    size_t i = 0;
    while (i < rl->n) {
        struct ratelimit_entry *e = &rl->e[i];
        if (ratelimit_level_at(e, now) >= e->limit) {
            rl->e[i] = rl->e[--rl->n];
            continue;
        }
        if (e->hash == h && e->kind == kind &&
            strncmp(e->tenant, tenant, sizeof(e->tenant) - 1) == 0 &&
            strncmp(e->provider, provider, sizeof(e->provider) - 1) == 0 &&
            strncmp(e->key_id, key_id, RATELIMIT_MAX_KEY_ID) == 0) {
            found = i;
        }
        i++;
    }
    return found != SIZE_MAX ? &rl->e[found] : NULL;
}

/* A new full bucket, or NULL when the table is full (of buckets in use) or out of memory. */
static struct ratelimit_entry *ratelimit_add(struct ratelimit *rl, enum ratelimit_kind kind,
                                             const char *tenant, const char *provider,
                                             const char *key_id, double limit, double now)
{
    if (rl->n == rl->cap) {
        if (rl->cap >= RATELIMIT_MAX_ENTRIES) {
            return NULL;
        }
        size_t cap = rl->cap == 0 ? 16 : rl->cap * 2;
        struct ratelimit_entry *grown = realloc(rl->e, cap * sizeof(*grown));
        if (grown == NULL) {
            return NULL;
        }
        rl->e = grown;
        rl->cap = cap;
    }
    struct ratelimit_entry *e = &rl->e[rl->n++];
    memset(e, 0, sizeof(*e));
    e->hash = ratelimit_hash(kind, tenant, provider, key_id);
    e->kind = kind;
    e->level = limit;
    e->stamp = now;
    e->limit = limit;
    snprintf(e->tenant, sizeof(e->tenant), "%s", tenant);
    snprintf(e->provider, sizeof(e->provider), "%s", provider);
    snprintf(e->key_id, sizeof(e->key_id), "%s", key_id);
    return e;
}

/* Removes n tokens, keeping the debt within one limit (bounded waits, bounded arithmetic). */
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
