/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Chained hash table (FNV-1a) under one rwlock: reads take the shared lock, so
 * concurrent HandleRequest threads reading `config` do not serialise. The
 * table does not grow; with CACHE_BUCKETS buckets and CACHE_MAX_ENTRIES the
 * chains stay short. It never touches storage.
 */
#include "plugin/cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_BUCKETS 4096

struct cache_entry {
    struct cache_entry *next;
    json_t *val;
    char key[]; /* NUL-terminated */
};

struct cache {
    pthread_rwlock_t lock;
    uint64_t gen; /* under lock */
    size_t n;
    struct cache_entry *buckets[CACHE_BUCKETS];
};

static size_t cache_hash(const char *key)
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)key; *p != '\0'; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    return (size_t)(h % CACHE_BUCKETS);
}

struct cache *cache_new(void)
{
    struct cache *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    if (pthread_rwlock_init(&c->lock, NULL) != 0) {
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
    free(c);
}

json_t *cache_get(struct cache *c, const char *key, uint64_t *ret_gen)
{
    json_t *val = NULL;
    size_t h = cache_hash(key);
    pthread_rwlock_rdlock(&c->lock);
    for (struct cache_entry *e = c->buckets[h]; e != NULL; e = e->next) {
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
    size_t h = cache_hash(key);
    pthread_rwlock_wrlock(&c->lock);
    if (gen != c->gen) {
        goto out_unlock; /* invalidated while the caller was reading storage */
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
