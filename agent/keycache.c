/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Key cache: a small chained hash table of entries keyed "tenant/provider".
 * An entry is pending (one Vault fetch in flight, callers queued on it),
 * positive (key held) or negative (no key). Expired entries are unlinked
 * lazily on lookup and by a sweep timer set for the earliest expiry, so an
 * idle agent wipes each key when its TTL ends even when no request comes.
 *
 * Not done here: choosing providers (route.c) or using keys (providers.c).
 */
#include "agent/keycache.h"

#include <event2/event.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEYCACHE_BUCKETS 1024

struct keycache_wait {
    struct keycache_entry *ent;
    keycache_cb cb;
    void *arg;
    struct keycache_wait *next;
};

struct keycache {
    struct event_base *base;
    struct vault *vault;
    struct config *cfg;
    struct keycache_entry *buckets[KEYCACHE_BUCKETS];
    size_t count;
    struct event *sweep; /* one-shot, for the earliest expiry */
    time_t sweep_at;     /* when it is set for (kc_now seconds); 0: not set */
    struct keycache_stats stats;
};

static time_t kc_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

static unsigned kc_hash(const char *tenant, const char *provider)
{
    /* FNV-1a: keys are our own validated names, not attacker-chosen at scale. */
    unsigned h = 2166136261u;
    for (const char *p = tenant; *p; p++) {
        h = (h ^ (unsigned char)*p) * 16777619u;
    }
    h = (h ^ '/') * 16777619u;
    for (const char *p = provider; *p; p++) {
        h = (h ^ (unsigned char)*p) * 16777619u;
    }
    return h % KEYCACHE_BUCKETS;
}

static void kc_entry_destroy(struct keycache_entry *e)
{
    if (e->key != NULL) {
        e->kc->stats.wipes++;
    }
    secret_free(&e->key);
    if (e->aux_free != NULL) {
        e->aux_free(e);
    }
    json_decref(e->creds);
    free(e->tenant);
    free(e->provider);
    free(e);
}

static void kc_unlink(struct keycache *kc, struct keycache_entry *e)
{
    if (!e->linked) {
        return;
    }
    struct keycache_entry **pp = &kc->buckets[kc_hash(e->tenant, e->provider)];
    while (*pp != NULL && *pp != e) {
        pp = &(*pp)->next;
    }
    if (*pp == e) {
        *pp = e->next;
    }
    e->next = NULL;
    e->linked = false;
    kc->count--;
    if (e->refs == 0) {
        kc_entry_destroy(e);
        return;
    }
    /* Wipe the key at once even if a request still references the entry's JSON. */
    if (e->key != NULL) {
        kc->stats.wipes++;
        secret_free(&e->key);
    }
    if (e->aux_wipe != NULL) {
        e->aux_wipe(e);
    }
}

void keycache_put(struct keycache_entry **ep)
{
    if (ep == NULL || *ep == NULL) {
        return;
    }
    struct keycache_entry *e = *ep;
    *ep = NULL;
    if (--e->refs == 0 && !e->linked) {
        kc_entry_destroy(e);
    }
}

/*
 * A stale entry (a fetch from before a reload that moved the keys) stays in
 * its chain until its fetch ends, for keycache_free, but is never found: a
 * caller after the reload starts a fetch of its own under the new config.
 */
static struct keycache_entry *kc_find(struct keycache *kc, const char *tenant, const char *provider)
{
    for (struct keycache_entry *e = kc->buckets[kc_hash(tenant, provider)]; e != NULL;
         e = e->next) {
        if (!e->stale && strcmp(e->tenant, tenant) == 0 && strcmp(e->provider, provider) == 0) {
            return e;
        }
    }
    return NULL;
}

/*
 * Sets the sweep for the moment at (kc_now seconds) begins, unless it is set
 * for earlier already. Timed on the same monotonic clock, to the millisecond.
 */
static void kc_sweep_at(struct keycache *kc, time_t at)
{
    if (kc->sweep == NULL || (kc->sweep_at != 0 && kc->sweep_at <= at)) {
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long long ms = ((long long)at - (long long)ts.tv_sec) * 1000LL - ts.tv_nsec / 1000000L;
    if (ms < 0) {
        ms = 0;
    }
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    if (event_add(kc->sweep, &tv) == 0) {
        kc->sweep_at = at;
    }
}

static void kc_sweep(struct keycache *kc, bool all)
{
    time_t now = kc_now();
    time_t next_at = 0;
    for (size_t i = 0; i < KEYCACHE_BUCKETS; i++) {
        struct keycache_entry *e = kc->buckets[i];
        while (e != NULL) {
            struct keycache_entry *next = e->next;
            if (!e->pending && (all || e->expires <= now)) {
                kc_unlink(kc, e);
            } else if (!e->pending && (next_at == 0 || e->expires < next_at)) {
                next_at = e->expires;
            }
            e = next;
        }
    }
    if (next_at != 0) {
        kc_sweep_at(kc, next_at);
    }
}

static void kc_sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    struct keycache *kc = arg;
    kc->sweep_at = 0;
    kc_sweep(kc, false);
}

enum err keycache_parse_creds(const char *body, size_t len, struct secret **ret_key,
                              json_t **ret_creds, long *ret_ttl)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    if (root == NULL) {
        return ERR_PROTO;
    }
    /* Through Vault's HTTP API the reply is wrapped in "data". */
    json_t *data = json_object_get(root, "data");
    if (json_is_object(data) && json_object_get(data, "api_key") != NULL) {
        json_incref(data);
        json_decref(root);
        root = data;
    }
    enum err e = ERR_PROTO;
    json_t *k = json_object_get(root, "api_key");
    if (!json_is_string(k)) {
        goto out;
    }
    size_t kl = json_string_length(k);
    const char *ks = json_string_value(k);
    if (kl == 0 || kl > KEYCACHE_MAX_KEY || strlen(ks) != kl || strpbrk(ks, "\r\n") != NULL) {
        goto out;
    }
    json_t *prov = json_object_get(root, "provider");
    if (prov != NULL && !json_is_object(prov)) {
        goto out;
    }
    /* The key's permissions: absent (an older plugin), or at most 64 names. */
    json_t *perms = json_object_get(root, "permissions");
    if (perms != NULL && !json_is_null(perms) &&
        (!json_is_array(perms) || json_array_size(perms) > KEYCACHE_MAX_PERMISSIONS)) {
        goto out;
    }
    size_t pi;
    json_t *pv;
    json_array_foreach(perms, pi, pv)
    {
        if (!json_is_string(pv)) {
            goto out;
        }
    }
    /*
     * Keys never take the heap's last CONFIG_HEAP_RESERVE bytes: those are
     * for the Vault token and credential files, so a heap full of keys never
     * stops the agent from logging in again.
     */
    struct secret *key =
        secret_heap_free() >= 2 * (kl + sizeof(struct secret) + 1) + CONFIG_HEAP_RESERVE
            ? secret_from(ks, kl)
            : NULL;
    if (key == NULL) {
        e = ERR_NOMEM;
        goto out;
    }
    /* The jansson allocator wipes on free: the key's JSON copy does not linger. */
    json_object_del(root, "api_key");
    json_t *ttl = json_object_get(root, "ttl");
    *ret_ttl = json_is_integer(ttl) ? (long)json_integer_value(ttl) : 0;
    *ret_key = key;
    *ret_creds = root;
    return ERR_OK;
out:
    json_decref(root);
    return e;
}

/*
 * Calls every waiter, taking each off the list before its callback: a
 * callback may cancel a later wait (keycache_cancel finds and frees it there)
 * or invalidate the entry. No waiter is added meanwhile: only a pending entry
 * takes waiters, and this one is no longer pending.
 */
static void kc_deliver(struct keycache_entry *ent, enum err e)
{
    /* The caller (kc_fetch_done) holds the entry across the callbacks. */
    struct keycache_wait *w;
    while ((w = ent->waiters) != NULL) {
        ent->waiters = w->next;
        if (e == ERR_OK) {
            ent->refs++;
            w->cb(w->arg, ERR_OK, ent);
        } else {
            w->cb(w->arg, e, NULL);
        }
        free(w);
    }
}

static void kc_fetch_finish(struct keycache_entry *ent, enum err e, long status, struct buf *body)
{
    struct keycache *kc = ent->kc;
    ent->fetch = NULL;
    ent->pending = false;
    const struct config *c = kc->cfg;
    time_t now = kc_now();
    if (e != ERR_OK) {
        /* Unreachable or timed out: keep nothing, the next request asks again. */
        kc_unlink(kc, ent);
        kc_deliver(ent,
                   e == ERR_TIMEOUT ? ERR_TIMEOUT : (e == ERR_AUTH ? ERR_DENIED : ERR_UNAVAIL));
        return;
    }
    if (status == 404) {
        ent->negative = true;
        ent->expires = now + c->keycache.negative_ttl_s;
        kc_sweep_at(kc, ent->expires);
        if (c->keycache.negative_ttl_s == 0 || ent->stale) {
            kc_unlink(kc, ent);
        }
        kc_deliver(ent, ERR_NOTFOUND);
        return;
    }
    if (status != 200) {
        kc_unlink(kc, ent);
        /* 429: Vault's rate-limit quota; like a 5xx, Vault is not serving us now. */
        kc_deliver(ent, status == 403                      ? ERR_DENIED
                        : (status >= 500 || status == 429) ? ERR_UNAVAIL
                                                           : ERR_PROTO);
        return;
    }
    long ttl = 0;
    e = keycache_parse_creds(body->data, body->len, &ent->key, &ent->creds, &ttl);
    if (e != ERR_OK) {
        kc_unlink(kc, ent);
        kc_deliver(ent, e);
        return;
    }
    ent->entry = json_object_get(ent->creds, "provider");
    ent->settings = json_object_get(ent->creds, "settings");
    ent->metadata = json_object_get(ent->creds, "metadata");
    ent->permissions = json_object_get(ent->creds, "permissions");
    if (ttl <= 0 || ttl > c->keycache.max_ttl_s) {
        ttl = c->keycache.max_ttl_s;
    }
    ent->expires = now + ttl;
    kc_sweep_at(kc, ent->expires);
    kc_deliver(ent, ERR_OK);
    if (ent->stale) {
        /* A fetch from before a reload that moved the keys: its callers used it, nobody after. */
        kc_unlink(kc, ent);
    }
}

static void kc_fetch_done(void *arg, enum err e, long status, struct buf *body)
{
    struct keycache_entry *ent = arg;
    /* Unlinking may free the entry: hold it until the waiters have been told. */
    ent->refs++;
    kc_fetch_finish(ent, e, status, body);
    keycache_put(&ent);
}

enum err keycache_get(struct keycache *kc, const char *tenant, const char *provider, keycache_cb cb,
                      void *arg, struct keycache_wait **ret_wait)
{
    *ret_wait = NULL;
    struct keycache_entry *ent = kc_find(kc, tenant, provider);
    if (ent != NULL && !ent->pending && ent->expires <= kc_now()) {
        kc_unlink(kc, ent);
        ent = NULL;
    }
    if (ent != NULL && !ent->pending) {
        kc->stats.hits++;
        if (ent->negative) {
            cb(arg, ERR_NOTFOUND, NULL);
        } else {
            ent->refs++;
            cb(arg, ERR_OK, ent);
        }
        return ERR_OK;
    }
    struct keycache_wait *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return ERR_NOMEM;
    }
    w->cb = cb;
    w->arg = arg;
    if (ent != NULL) {
        kc->stats.shared++;
        w->ent = ent;
        w->next = ent->waiters;
        ent->waiters = w;
        *ret_wait = w;
        return ERR_OK;
    }
    kc->stats.misses++;
    if (kc->count >= (size_t)kc->cfg->keycache.max_entries) {
        kc_sweep(kc, false);
        if (kc->count >= (size_t)kc->cfg->keycache.max_entries) {
            free(w);
            return ERR_BUSY;
        }
    }
    ent = calloc(1, sizeof(*ent));
    if (ent == NULL) {
        free(w);
        return ERR_NOMEM;
    }
    ent->kc = kc;
    ent->tenant = strdup(tenant);
    ent->provider = strdup(provider);
    if (ent->tenant == NULL || ent->provider == NULL) {
        free(ent->tenant);
        free(ent->provider);
        free(ent);
        free(w);
        return ERR_NOMEM;
    }
    ent->pending = true;
    unsigned h = kc_hash(tenant, provider);
    ent->next = kc->buckets[h];
    kc->buckets[h] = ent;
    ent->linked = true;
    kc->count++;
    w->ent = ent;
    ent->waiters = w;
    char path[512];
    int n = snprintf(path, sizeof(path), "%s/tenants/%s/creds/%s?key_type=%s", kc->cfg->vault.mount,
                     tenant, provider, kc->cfg->vault.key_type);
    enum err e = ERR_TOOBIG;
    /* vault_request may fail synchronously and deliver (and unlink) before it returns. */
    ent->refs++;
    if (n > 0 && (size_t)n < sizeof(path)) {
        kc->stats.fetches++;
        e = vault_request(kc->vault, "GET", path, NULL, kc_fetch_done, ent, &ent->fetch);
    }
    if (e != ERR_OK) {
        ent->waiters = NULL;
        free(w);
        ent->pending = false;
        kc_unlink(kc, ent);
        keycache_put(&ent);
        return e;
    }
    *ret_wait = ent->waiters == w ? w : NULL;
    keycache_put(&ent);
    return ERR_OK;
}

void keycache_cancel(struct keycache_wait *w)
{
    if (w == NULL) {
        return;
    }
    struct keycache_entry *ent = w->ent;
    struct keycache_wait **pp = &ent->waiters;
    while (*pp != NULL && *pp != w) {
        pp = &(*pp)->next;
    }
    if (*pp == w) {
        *pp = w->next;
        free(w);
    }
    /* The fetch goes on: its result serves the next caller. */
}

const struct keycache_entry *keycache_peek(struct keycache *kc, const char *tenant,
                                           const char *provider)
{
    struct keycache_entry *ent = kc_find(kc, tenant, provider);
    if (ent == NULL || ent->pending || ent->expires <= kc_now()) {
        return NULL;
    }
    return ent;
}

void keycache_invalidate(struct keycache *kc, const char *tenant, const char *provider)
{
    keycache_invalidate_entry(kc, kc_find(kc, tenant, provider));
}

void keycache_invalidate_entry(struct keycache *kc, struct keycache_entry *ent)
{
    if (ent != NULL && ent->linked && !ent->pending) {
        kc_unlink(kc, ent);
    }
}

struct keycache *keycache_new(struct event_base *base, struct vault *v, struct config *cfg)
{
    struct keycache *kc = calloc(1, sizeof(*kc));
    if (kc == NULL) {
        return NULL;
    }
    kc->base = base;
    kc->vault = v;
    kc->cfg = config_ref(cfg);
    kc->sweep = event_new(base, -1, 0, kc_sweep_cb, kc);
    if (kc->sweep == NULL) {
        keycache_free(kc);
        return NULL;
    }
    return kc;
}

static bool kc_str_eq(const char *a, const char *b)
{
    return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

void keycache_set_config(struct keycache *kc, struct config *cfg)
{
    struct config *old = kc->cfg;
    kc->cfg = config_ref(cfg); /* before the unref: cfg may be the one held */
    /*
     * Keys fetched from another Vault, mount or key type are not this
     * config's: drop them (fetches in flight serve only their own callers).
     * Otherwise a lower max_ttl_s / negative_ttl_s shortens what is cached.
     */
    bool moved = old == NULL || !kc_str_eq(old->vault.address, cfg->vault.address) ||
                 !kc_str_eq(old->vault.mount, cfg->vault.mount) ||
                 !kc_str_eq(old->vault.ns, cfg->vault.ns) ||
                 !kc_str_eq(old->vault.key_type, cfg->vault.key_type);
    time_t now = kc_now();
    for (size_t i = 0; i < KEYCACHE_BUCKETS; i++) {
        struct keycache_entry *e = kc->buckets[i];
        while (e != NULL) {
            struct keycache_entry *next = e->next;
            time_t cap =
                now + (e->negative ? cfg->keycache.negative_ttl_s : cfg->keycache.max_ttl_s);
            if (e->pending) {
                e->stale = e->stale || moved;
            } else if (moved) {
                kc_unlink(kc, e);
            } else if (e->expires > cap) {
                e->expires = cap;
                kc_sweep_at(kc, cap);
            }
            e = next;
        }
    }
    config_unref(&old);
}

void keycache_free(struct keycache *kc)
{
    if (kc == NULL) {
        return;
    }
    for (size_t i = 0; i < KEYCACHE_BUCKETS; i++) {
        struct keycache_entry *e = kc->buckets[i];
        while (e != NULL) {
            struct keycache_entry *next = e->next;
            struct keycache_wait *w = e->waiters;
            while (w != NULL) {
                struct keycache_wait *wn = w->next;
                free(w);
                w = wn;
            }
            e->waiters = NULL;
            vault_request_cancel(e->fetch);
            e->fetch = NULL;
            e->pending = false;
            /* Referenced entries are owned by their users from here on. */
            kc_unlink(kc, e);
            e = next;
        }
    }
    if (kc->sweep != NULL) {
        event_free(kc->sweep);
    }
    config_unref(&kc->cfg);
    free(kc);
}

const struct keycache_stats *keycache_stats(const struct keycache *kc)
{
    return &kc->stats;
}
