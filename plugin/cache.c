/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Chained hash table (FNV-1a) under one rwlock: reads take the shared lock, so
 * concurrent HandleRequest threads reading `config` do not serialise. The
 * table does not grow; with CACHE_BUCKETS buckets and CACHE_MAX_ENTRIES the
 * chains stay short. It never touches storage. Keys in doubt (cache.h) are a
 * small array of hashes with their end times under a mutex of their own,
 * behind an atomic "latest end" that is 0 while nothing is in doubt, so the
 * lookup pays for them only when there are some.
 */
#include "plugin/cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CACHE_BUCKETS 4096

struct cache_doubt_entry {
    uint64_t hash;
    int64_t until_ms; /* CLOCK_MONOTONIC */
};

struct cache_doubts {
    pthread_mutex_t mu;
    /*
     * The latest end of any doubt, 0 when none is in doubt. Written under mu,
     * read without it (atomically) by the lookup's fast path.
     */
    int64_t until_ms;
    bool all; /* under mu: the array overflowed, every key is in doubt until until_ms */
    size_t n; /* under mu */
    struct cache_doubt_entry e[CACHE_DOUBT_MAX];
};

struct cache_entry {
    struct cache_entry *next;
    json_t *val;
    char key[]; /* NUL-terminated */
};

struct cache {
    pthread_rwlock_t lock;
    struct cache_doubts doubts;
    uint64_t gen; /* under lock */
    size_t n;
    struct cache_entry *buckets[CACHE_BUCKETS];
};

static uint64_t cache_fnv(const char *key)
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)key; *p != '\0'; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    return h;
}

static size_t cache_hash(const char *key)
{
    return (size_t)(cache_fnv(key) % CACHE_BUCKETS);
}

/* ---- keys in doubt -------------------------------------------------------------------- */

/* Tests may shorten it (cache_set_doubt_ms). */
static long cache_doubt_ms = CACHE_DOUBT_MS;

void cache_set_doubt_ms(long ms)
{
    cache_doubt_ms = ms > 0 ? ms : CACHE_DOUBT_MS;
}

bool cache_write_may_land(enum err e)
{
    return e != ERR_OK && e != ERR_READONLY && e != ERR_NOTFOUND && e != ERR_INVAL &&
           e != ERR_TOOBIG && e != ERR_DENIED;
}

/* Tests move the doubt windows' clock forward instead of sleeping (cache_advance_ms). */
static int64_t cache_skew_ms;

void cache_advance_ms(int64_t ms)
{
    cache_skew_ms += ms;
}

static int64_t cache_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + cache_skew_ms;
}

static int cache_doubts_init(struct cache_doubts *d)
{
    d->until_ms = 0;
    d->all = false;
    d->n = 0;
    return pthread_mutex_init(&d->mu, NULL);
}

static void cache_doubts_add_hash(struct cache_doubts *d, uint64_t hash)
{
    int64_t now = cache_now_ms();
    int64_t until = now + cache_doubt_ms;
    pthread_mutex_lock(&d->mu);
    /* Drop the entries that ended, and this key's own (renewed below). */
    size_t kept = 0;
    for (size_t i = 0; i < d->n; i++) {
        if (d->e[i].until_ms > now && d->e[i].hash != hash) {
            d->e[kept++] = d->e[i];
        }
    }
    d->n = kept;
    if (d->all && d->until_ms <= now) {
        d->all = false;
    }
    if (d->n < CACHE_DOUBT_MAX) {
        d->e[d->n].hash = hash;
        d->e[d->n].until_ms = until;
        d->n++;
    } else {
        d->all = true; /* bounded: doubt everything rather than forget a key */
    }
    if (until > d->until_ms) {
        __atomic_store_n(&d->until_ms, until, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&d->mu);
}

static bool cache_doubts_has_hash(struct cache_doubts *d, uint64_t hash)
{
    if (__atomic_load_n(&d->until_ms, __ATOMIC_ACQUIRE) == 0) {
        return false; /* the hot path: nothing in doubt */
    }
    int64_t now = cache_now_ms();
    bool in = false;
    pthread_mutex_lock(&d->mu);
    if (d->until_ms != 0 && d->until_ms <= now) {
        /* Every doubt ended: back to the fast path. */
        d->n = 0;
        d->all = false;
        __atomic_store_n(&d->until_ms, 0, __ATOMIC_RELEASE);
    } else if (d->until_ms != 0) {
        in = d->all;
        for (size_t i = 0; !in && i < d->n; i++) {
            in = d->e[i].hash == hash && d->e[i].until_ms > now;
        }
    }
    pthread_mutex_unlock(&d->mu);
    return in;
}

struct cache_doubts *cache_doubts_new(void)
{
    struct cache_doubts *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        return NULL;
    }
    if (cache_doubts_init(d) != 0) {
        free(d);
        return NULL;
    }
    return d;
}

void cache_doubts_free(struct cache_doubts *d)
{
    if (d == NULL) {
        return;
    }
    pthread_mutex_destroy(&d->mu);
    free(d);
}

void cache_doubts_add(struct cache_doubts *d, const char *key)
{
    cache_doubts_add_hash(d, cache_fnv(key));
}

bool cache_doubts_has(struct cache_doubts *d, const char *key)
{
    return cache_doubts_has_hash(d, cache_fnv(key));
}

/* ---- the cache ------------------------------------------------------------------------ */

struct cache *cache_new(void)
{
    struct cache *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    if (cache_doubts_init(&c->doubts) != 0) {
        free(c);
        return NULL;
    }
    if (pthread_rwlock_init(&c->lock, NULL) != 0) {
        pthread_mutex_destroy(&c->doubts.mu);
        free(c);
        return NULL;
    }
    return c;
}

static void cache_clear_locked(struct cache *c)
{
    for (size_t i = 0; i < CACHE_BUCKETS; i++) {
        struct cache_entry *e = c->buckets[i];
        while (e != NULL) {
            struct cache_entry *next = e->next;
            json_decref(e->val);
            free(e);
            e = next;
        }
        c->buckets[i] = NULL;
    }
    c->n = 0;
}

void cache_free(struct cache *c)
{
    if (c == NULL) {
        return;
    }
    cache_clear_locked(c);
    pthread_rwlock_destroy(&c->lock);
    pthread_mutex_destroy(&c->doubts.mu);
    free(c);
}

json_t *cache_get(struct cache *c, const char *key, uint64_t *ret_gen)
{
    json_t *val = NULL;
    uint64_t fnv = cache_fnv(key);
    size_t h = (size_t)(fnv % CACHE_BUCKETS);
    bool doubt = cache_doubts_has_hash(&c->doubts, fnv);
    pthread_rwlock_rdlock(&c->lock);
    for (struct cache_entry *e = doubt ? NULL : c->buckets[h]; e != NULL; e = e->next) {
        if (strcmp(e->key, key) == 0) {
            val = json_incref(e->val);
            break;
        }
    }
    if (ret_gen != NULL) {
        *ret_gen = c->gen;
    }
    pthread_rwlock_unlock(&c->lock);
    return val;
}

void cache_put(struct cache *c, const char *key, json_t *val, uint64_t gen)
{
    size_t klen = strlen(key);
    struct cache_entry *ne = malloc(sizeof(*ne) + klen + 1);
    if (ne == NULL) {
        return; /* a cache that cannot grow is still correct */
    }
    memcpy(ne->key, key, klen + 1);
    ne->val = json_incref(val);
    uint64_t fnv = cache_fnv(key);
    size_t h = (size_t)(fnv % CACHE_BUCKETS);
    pthread_rwlock_wrlock(&c->lock);
    if (gen != c->gen) {
        goto out_unlock; /* invalidated while the caller was reading storage */
    }
    if (cache_doubts_has_hash(&c->doubts, fnv)) {
        goto out_unlock; /* a failed write of key may still land: keep it out */
    }
    for (struct cache_entry **pe = &c->buckets[h]; *pe != NULL; pe = &(*pe)->next) {
        if (strcmp((*pe)->key, key) == 0) {
            struct cache_entry *old = *pe;
            ne->next = old->next;
            *pe = ne;
            ne = old; /* freed after unlocking */
            goto out_unlock;
        }
    }
    if (c->n >= CACHE_MAX_ENTRIES) {
        cache_clear_locked(c);
        h = cache_hash(key);
    }
    ne->next = c->buckets[h];
    c->buckets[h] = ne;
    c->n++;
    ne = NULL;
out_unlock:
    pthread_rwlock_unlock(&c->lock);
    if (ne != NULL) {
        json_decref(ne->val);
        free(ne);
    }
}

void cache_invalidate(struct cache *c, const char *key)
{
    struct cache_entry *old = NULL;
    pthread_rwlock_wrlock(&c->lock);
    c->gen++;
    if (key == NULL) {
        cache_clear_locked(c);
        goto out_unlock;
    }
    for (struct cache_entry **pe = &c->buckets[cache_hash(key)]; *pe != NULL; pe = &(*pe)->next) {
        if (strcmp((*pe)->key, key) == 0) {
            old = *pe;
            *pe = old->next;
            c->n--;
            break;
        }
    }
out_unlock:
    pthread_rwlock_unlock(&c->lock);
    /* Freeing a large document (a key record) need not hold readers up. */
    if (old != NULL) {
        json_decref(old->val);
        free(old);
    }
}

void cache_doubt(struct cache *c, const char *key)
{
    /*
     * In doubt before the drop bumps the generation: a reader that took its
     * generation after the bump finds the key in doubt when it puts, one that
     * took it before fails the generation check.
     */
    cache_doubts_add_hash(&c->doubts, cache_fnv(key));
    cache_invalidate(c, key);
}
