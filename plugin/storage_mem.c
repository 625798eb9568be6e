/* SPDX-License-Identifier: MPL-2.0 */
/*
 * In-memory storage for unit tests and benchmarks: a sorted array of entries
 * under one rwlock, so List is a binary search plus a scan of the contiguous
 * run of keys sharing the prefix. It mimics Vault's List (immediate children,
 * sub-folders once each with a trailing "/", sorted). It is not meant to be
 * fast for huge key counts; inserts are O(n).
 */
#include "plugin/storage.h"

#include <openssl/crypto.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct mem_entry {
    char *key;
    unsigned char *val;
    size_t len;
};

struct mem_store {
    struct storage st; /* first: storage_mem_free gets back here from the storage pointer */
    pthread_rwlock_t lock;
    struct mem_entry *v;
    size_t n, cap;
};

static void mem_entry_clear(struct mem_entry *e)
{
    free(e->key);
    if (e->val != NULL) {
        OPENSSL_cleanse(e->val, e->len);
        free(e->val);
    }
}

/* Index of key, or of where it would be inserted; *found says which. */
static size_t mem_find(const struct mem_store *m, const char *key, bool *found)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(m->v[mid].key, key);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    *found = false;
    return lo;
}

static unsigned char *mem_dup(const unsigned char *val, size_t len)
{
    unsigned char *p = malloc(len + 1);
    if (p == NULL) {
        return NULL;
    }
    if (len != 0) {
        memcpy(p, val, len);
    }
    p[len] = '\0';
    return p;
}

static enum err mem_get(void *ctx, const char *key, unsigned char **ret_val, size_t *ret_len)
{
    struct mem_store *m = ctx;
    enum err e = ERR_NOTFOUND;
    bool found;
    pthread_rwlock_rdlock(&m->lock);
    size_t i = mem_find(m, key, &found);
    if (found) {
        unsigned char *p = mem_dup(m->v[i].val, m->v[i].len);
        if (p == NULL) {
            e = ERR_NOMEM;
        } else {
            *ret_val = p;
            *ret_len = m->v[i].len;
            e = ERR_OK;
        }
    }
    pthread_rwlock_unlock(&m->lock);
    return e;
}

static enum err mem_put(void *ctx, const char *key, const unsigned char *val, size_t len,
                        bool seal_wrap)
{
    struct mem_store *m = ctx;
    (void)seal_wrap; /* seal wrapping is an Enterprise storage feature; memory has no barrier */
    unsigned char *copy = mem_dup(val, len);
    if (copy == NULL) {
        return ERR_NOMEM;
    }
    enum err e = ERR_OK;
    bool found;
    pthread_rwlock_wrlock(&m->lock);
    size_t i = mem_find(m, key, &found);
    if (found) {
        OPENSSL_cleanse(m->v[i].val, m->v[i].len);
        free(m->v[i].val);
        m->v[i].val = copy;
        m->v[i].len = len;
        copy = NULL;
        goto out_unlock;
    }
    if (m->n == m->cap) {
        size_t ncap = m->cap != 0 ? m->cap * 2 : 16;
        struct mem_entry *nv = realloc(m->v, ncap * sizeof(*nv));
        if (nv == NULL) {
            e = ERR_NOMEM;
            goto out_unlock;
        }
        m->v = nv;
        m->cap = ncap;
    }
    char *kcopy = strdup(key);
    if (kcopy == NULL) {
        e = ERR_NOMEM;
        goto out_unlock;
    }
    memmove(&m->v[i + 1], &m->v[i], (m->n - i) * sizeof(m->v[0]));
    m->v[i] = (struct mem_entry){.key = kcopy, .val = copy, .len = len};
    m->n++;
    copy = NULL;
out_unlock:
    pthread_rwlock_unlock(&m->lock);
    if (copy != NULL) {
        OPENSSL_cleanse(copy, len);
        free(copy);
    }
    return e;
}

static enum err mem_del(void *ctx, const char *key)
{
    struct mem_store *m = ctx;
    bool found;
    pthread_rwlock_wrlock(&m->lock);
    size_t i = mem_find(m, key, &found);
    if (found) {
        mem_entry_clear(&m->v[i]);
        memmove(&m->v[i], &m->v[i + 1], (m->n - i - 1) * sizeof(m->v[0]));
        m->n--;
    }
    pthread_rwlock_unlock(&m->lock);
    /* Vault's Delete of a missing key is not an error. */
    return ERR_OK;
}

static enum err mem_list(void *ctx, const char *prefix, char ***ret_keys, size_t *ret_n)
{
    struct mem_store *m = ctx;
    size_t plen = strlen(prefix);
    char **out = NULL;
    size_t n = 0, cap = 0;
    enum err e = ERR_OK;
    bool found;
    pthread_rwlock_rdlock(&m->lock);
    /* Every key with the prefix sorts at or after the prefix itself, contiguously. */
    for (size_t i = mem_find(m, prefix, &found); i < m->n; i++) {
        const char *k = m->v[i].key;
        if (strncmp(k, prefix, plen) != 0) {
            break;
        }
        const char *rest = k + plen;
        if (rest[0] == '\0') {
            continue; /* the prefix itself is not its own child */
        }
        const char *slash = strchr(rest, '/');
        size_t clen = slash != NULL ? (size_t)(slash - rest) + 1 : strlen(rest);
        /* Keys under one folder are contiguous, so a folder repeats only back to back. */
        if (n > 0 && strlen(out[n - 1]) == clen && memcmp(out[n - 1], rest, clen) == 0) {
            continue;
        }
        if (n == cap) {
            size_t ncap = cap != 0 ? cap * 2 : 16;
            char **nv = realloc(out, ncap * sizeof(*nv));
            if (nv == NULL) {
                e = ERR_NOMEM;
                goto out_unlock;
            }
            out = nv;
            cap = ncap;
        }
        out[n] = strndup(rest, clen);
        if (out[n] == NULL) {
            e = ERR_NOMEM;
            goto out_unlock;
        }
        n++;
    }
out_unlock:
    pthread_rwlock_unlock(&m->lock);
    if (e != ERR_OK) {
        storage_keys_free(out, n);
        return e;
    }
    *ret_keys = out;
    *ret_n = n;
    return ERR_OK;
}

static const struct storage_ops mem_ops = {
    .get = mem_get,
    .put = mem_put,
    .del = mem_del,
    .list = mem_list,
};

static enum err down_get(void *ctx, const char *key, unsigned char **ret_val, size_t *ret_len)
{
    return ERR_UNAVAIL;
}

static enum err down_put(void *ctx, const char *key, const unsigned char *val, size_t len,
                         bool seal_wrap)
{
    return ERR_UNAVAIL;
}

static enum err down_del(void *ctx, const char *key)
{
    return ERR_UNAVAIL;
}

static enum err down_list(void *ctx, const char *prefix, char ***ret_keys, size_t *ret_n)
{
    return ERR_UNAVAIL;
}

const struct storage_ops storage_down_ops = {
    .get = down_get,
    .put = down_put,
    .del = down_del,
    .list = down_list,
};

struct storage *storage_mem_new(void)
{
    struct mem_store *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        return NULL;
    }
    if (pthread_rwlock_init(&m->lock, NULL) != 0) {
        free(m);
        return NULL;
    }
    m->st.ops = &mem_ops;
    m->st.ctx = m;
    return &m->st;
}

void storage_mem_free(struct storage *st)
{
    if (st == NULL) {
        return;
    }
    struct mem_store *m = st->ctx;
    for (size_t i = 0; i < m->n; i++) {
        mem_entry_clear(&m->v[i]);
    }
    free(m->v);
    pthread_rwlock_destroy(&m->lock);
    free(m);
}

void storage_mem_foreach(struct storage *st,
                         void (*fn)(const char *key, const unsigned char *val, size_t len,
                                    void *arg),
                         void *arg)
{
    struct mem_store *m = st->ctx;
    pthread_rwlock_rdlock(&m->lock);
    for (size_t i = 0; i < m->n; i++) {
        fn(m->v[i].key, m->v[i].val, m->v[i].len, arg);
    }
    pthread_rwlock_unlock(&m->lock);
}
