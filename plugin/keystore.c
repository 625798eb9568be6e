/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The keys engine's shared state (envelope, settings cache, usage counters,
 * write lock), the storage layout documented in keystore.h, and the lifecycle
 * hooks byok.c calls. Path handlers live in paths_*.c; this file holds what
 * more than one of them needs. It never logs (byok.c logs hook failures).
 */
#include "plugin/keystore.h"

#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsonw.h"
#include "plugin/cache.h"
#include "plugin/config.h"
#include "plugin/pool.h"

#define KEYSTORE_COUNTER_BUCKETS 4096

/*
 * A flush token: 16 hex digits drawn when the keystore is made, '-', and a
 * sequence number in hex. The random part keeps a token apart from those a
 * previous process or another node left in records; the sequence from this
 * process's own earlier ones.
 */
#define KEYSTORE_TOKEN_SIZE 40

struct keystore_counter {
    struct keystore_counter *next;
    int64_t hits; /* pending: not known to be in storage; includes doubt_hits */
    time_t last_used;
    /*
     * The last write of these hits that was reported failed: it may have
     * been applied all the same (keystore.h, KEYSTORE_USAGE_TOKEN). Empty
     * when none is in doubt.
     */
    char doubt[KEYSTORE_TOKEN_SIZE];
    int64_t doubt_hits;
    char tenant[64], provider[64], key_type[64];
};

struct keystore {
    struct envelope *env;
    struct cache *settings; /* "tenants/<t>/settings" -> stored document */
    struct cache *records;  /* "tenants/<t>/keys/<p>/<kt>" -> key record */
    pthread_mutex_t write_mu;
    pthread_mutex_t counter_mu;
    char token_prefix[17];
    uint64_t token_seq; /* under write_mu */
    size_t n_counters;
    struct keystore_counter *counters[KEYSTORE_COUNTER_BUCKETS];
};

/* ---- clock and time text ------------------------------------------------------------ */

static time_t (*keystore_clock)(void);

time_t keystore_now(void)
{
    return keystore_clock != NULL ? keystore_clock() : time(NULL);
}

void keystore_set_clock(time_t (*now)(void))
{
    keystore_clock = now;
}

void keystore_time_format(time_t t, char *out, size_t size)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    if (strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0 && size > 0) {
        out[0] = '\0';
    }
}

static bool keystore_digits(const char *s, int n, int *ret)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (s[i] - '0');
    }
    *ret = v;
    return true;
}

enum err keystore_time_parse(const char *s, time_t *ret)
{
    /* RFC 3339 section 5.6: full-date "T" full-time; 't'/'z' accepted as it allows. */
    int y, mo, d, h, mi, sec;
    if (s == NULL || ret == NULL || strlen(s) < 20 || !keystore_digits(s, 4, &y) || s[4] != '-' ||
        !keystore_digits(s + 5, 2, &mo) || s[7] != '-' || !keystore_digits(s + 8, 2, &d) ||
        (s[10] != 'T' && s[10] != 't') || !keystore_digits(s + 11, 2, &h) || s[13] != ':' ||
        !keystore_digits(s + 14, 2, &mi) || s[16] != ':' || !keystore_digits(s + 17, 2, &sec)) {
        return ERR_INVAL;
    }
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) {
        return ERR_INVAL;
    }
    const char *p = s + 19;
    if (*p == '.') {
        p++;
        const char *start = p;
        while (*p >= '0' && *p <= '9') {
            p++;
        }
        if (p == start || p - start > 9) {
            return ERR_INVAL;
        }
    }
    long offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        if (!keystore_digits(p + 1, 2, &oh) || p[3] != ':' || !keystore_digits(p + 4, 2, &om) ||
            oh > 23 || om > 59) {
            return ERR_INVAL;
        }
        offset = (oh * 3600L + om * 60L) * (*p == '+' ? 1 : -1);
        p += 6;
    } else {
        return ERR_INVAL;
    }
    if (*p != '\0') {
        return ERR_INVAL;
    }
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap)) {
        return ERR_INVAL;
    }
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = sec > 59 ? 59 : sec};
    time_t t = timegm(&tm);
    if (t == (time_t)-1) {
        return ERR_INVAL;
    }
    *ret = t - offset;
    return ERR_OK;
}

/* ---- storage keys ------------------------------------------------------------------- */

enum err keystore_path_key(char *out, size_t size, const char *tenant, const char *provider,
                           const char *key_type)
{
    int n = snprintf(out, size, "tenants/%s/keys/%s/%s", tenant, provider, key_type);
    return n > 0 && (size_t)n < size && (size_t)n < STORAGE_MAX_KEY ? ERR_OK : ERR_TOOBIG;
}

enum err keystore_path_tenant(char *out, size_t size, const char *tenant, const char *rest)
{
    int n = snprintf(out, size, "tenants/%s/%s", tenant, rest);
    return n > 0 && (size_t)n < size && (size_t)n < STORAGE_MAX_KEY ? ERR_OK : ERR_TOOBIG;
}

/* ---- state and hooks ---------------------------------------------------------------- */

static struct keystore *keystore_new(void)
{
    struct keystore *ks = calloc(1, sizeof(*ks));
    if (ks == NULL) {
        return NULL;
    }
    ks->env = envelope_new();
    ks->settings = cache_new();
    ks->records = cache_new();
    if (ks->env == NULL || ks->settings == NULL || ks->records == NULL) {
        goto out_free;
    }
    if (pthread_mutex_init(&ks->write_mu, NULL) != 0) {
        goto out_free;
    }
    if (pthread_mutex_init(&ks->counter_mu, NULL) != 0) {
        pthread_mutex_destroy(&ks->write_mu);
        goto out_free;
    }
    return ks;

out_free:
    envelope_free(ks->env);
    cache_free(ks->settings);
    cache_free(ks->records);
    free(ks);
    return NULL;
}

static void keystore_counters_clear_locked(struct keystore *ks)
{
    for (size_t i = 0; i < KEYSTORE_COUNTER_BUCKETS; i++) {
        struct keystore_counter *c = ks->counters[i];
        while (c != NULL) {
            struct keystore_counter *next = c->next;
            free(c);
            c = next;
        }
        ks->counters[i] = NULL;
    }
    ks->n_counters = 0;
}

static void keystore_free(void *state)
{
    struct keystore *ks = state;
    if (ks == NULL) {
        return;
    }
    keystore_counters_clear_locked(ks);
    envelope_free(ks->env);
    cache_free(ks->settings);
    cache_free(ks->records);
    pthread_mutex_destroy(&ks->counter_mu);
    pthread_mutex_destroy(&ks->write_mu);
    free(ks);
}

static enum err keystore_hook_init(struct byok *b, void **ret_state)
{
    struct keystore *ks = keystore_new();
    if (ks == NULL) {
        return ERR_NOMEM;
    }
    unsigned char r[8];
    if (RAND_bytes(r, sizeof(r)) != 1) {
        keystore_free(ks);
        return ERR_CRYPTO;
    }
    for (size_t i = 0; i < sizeof(r); i++) {
        snprintf(ks->token_prefix + 2 * i, 3, "%02x", r[i]);
    }
    *ret_state = ks;
    return ERR_OK;
}

struct keystore *keystore_of(struct byok *b)
{
    return b != NULL ? byok_hooks_state(b, &byok_hooks_keys) : NULL;
}

struct envelope *keystore_envelope(struct keystore *ks)
{
    return ks->env;
}

static enum err keystore_hook_initialize(struct byok *b, struct storage *st)
{
    struct keystore *ks = keystore_of(b);
    return ks != NULL ? envelope_initialize(ks->env, st) : ERR_INTERNAL;
}

static void keystore_hook_invalidate(struct byok *b, const char *key)
{
    struct keystore *ks = keystore_of(b);
    if (ks == NULL || key == NULL) {
        return;
    }
    envelope_invalidate(ks->env, key);
    if (strncmp(key, "tenants/", 8) == 0) {
        cache_invalidate(ks->settings, key);
        cache_invalidate(ks->records, key);
    }
}

static enum err keystore_hook_periodic(struct byok *b, struct storage *st)
{
    struct keystore *ks = keystore_of(b);
    if (ks == NULL) {
        return ERR_INTERNAL;
    }
    enum err e = keystore_usage_flush(ks, st);
    enum err e2 = keystore_grace_sweep(ks, st);
    return e != ERR_OK ? e : e2;
}

static void keystore_hook_cleanup(struct byok *b)
{
    struct keystore *ks = keystore_of(b);
    if (ks == NULL) {
        return;
    }
    envelope_drop_all(ks->env);
    cache_invalidate(ks->settings, NULL);
    cache_invalidate(ks->records, NULL);
    pthread_mutex_lock(&ks->counter_mu);
    keystore_counters_clear_locked(ks);
    pthread_mutex_unlock(&ks->counter_mu);
}

static enum err keystore_hook_kek_state(struct byok *b, struct storage *st,
                                        struct envelope_kek_state *ret)
{
    struct keystore *ks = keystore_of(b);
    return ks != NULL ? envelope_kek_state(ks->env, st, ret) : ERR_INTERNAL;
}

const struct byok_hooks byok_hooks_keys = {
    .init = keystore_hook_init,
    .free = keystore_free,
    .initialize = keystore_hook_initialize,
    .invalidate = keystore_hook_invalidate,
    .periodic = keystore_hook_periodic,
    .cleanup = keystore_hook_cleanup,
    .kek_state = keystore_hook_kek_state,
};

void keystore_lock(struct keystore *ks)
{
    /* Held across storage round trips: a waiter hands its worker turn on (pool.h). */
    pool_mutex_lock(&ks->write_mu);
}

void keystore_unlock(struct keystore *ks)
{
    pthread_mutex_unlock(&ks->write_mu);
}

struct keystore *keystore_write_begin(struct byok *b)
{
    struct keystore *ks = keystore_of(b);
    if (ks != NULL) {
        keystore_lock(ks);
    }
    return ks;
}

void keystore_write_end(struct keystore *ks)
{
    if (ks != NULL) {
        keystore_unlock(ks);
    }
}

void keystore_lock_cb(void *ks)
{
    keystore_lock(ks);
}

void keystore_unlock_cb(void *ks)
{
    keystore_unlock(ks);
}

/* ---- settings ------------------------------------------------------------------------ */

enum err keystore_settings_stored(struct storage *st, const char *tenant, json_t **ret_stored)
{
    char key[STORAGE_MAX_KEY];
    enum err e = keystore_path_tenant(key, sizeof(key), tenant, "settings");
    if (e != ERR_OK) {
        return e;
    }
    json_t *doc = NULL;
    e = storage_get_json(st, key, &doc);
    if (e == ERR_NOTFOUND) {
        doc = json_object();
        e = doc != NULL ? ERR_OK : ERR_NOMEM;
    } else if (e == ERR_OK && !json_is_object(doc)) {
        json_decref(doc);
        e = ERR_PROTO;
    }
    if (e == ERR_OK) {
        *ret_stored = doc;
    }
    return e;
}

/* The stored settings document (shared, read-only) from the cache or storage. */
static enum err keystore_settings_shared(struct keystore *ks, struct storage *st,
                                         const char *tenant, const char *key, json_t **ret)
{
    uint64_t gen = 0;
    json_t *stored = cache_get(ks->settings, key, &gen);
    if (stored == NULL) {
        enum err e = keystore_settings_stored(st, tenant, &stored);
        if (e != ERR_OK) {
            return e;
        }
        cache_put(ks->settings, key, stored, gen);
    }
    *ret = stored;
    return ERR_OK;
}

enum err keystore_settings_cached(struct byok *b, struct storage *st, const char *tenant,
                                  json_t **ret_copy)
{
    struct keystore *ks = keystore_of(b);
    if (ks == NULL) {
        return ERR_INTERNAL;
    }
    char key[STORAGE_MAX_KEY];
    json_t *stored = NULL;
    enum err e = keystore_path_tenant(key, sizeof(key), tenant, "settings");
    if (e == ERR_OK) {
        e = keystore_settings_shared(ks, st, tenant, key, &stored);
    }
    if (e == ERR_OK) {
        *ret_copy = json_deep_copy(stored);
        json_decref(stored);
        e = *ret_copy != NULL ? ERR_OK : ERR_NOMEM;
    }
    return e;
}

enum err keystore_settings_with(struct byok *b, struct storage *st, const char *tenant,
                                const json_t *config, json_t **ret_settings)
{
    struct keystore *ks = keystore_of(b);
    if (ks == NULL) {
        return ERR_INTERNAL;
    }
    char key[STORAGE_MAX_KEY];
    enum err e = keystore_path_tenant(key, sizeof(key), tenant, "settings");
    if (e != ERR_OK) {
        return e;
    }
    json_t *stored = NULL;
    e = keystore_settings_shared(ks, st, tenant, key, &stored);
    if (e != ERR_OK) {
        return e;
    }
    const char *tier = json_string_value(json_object_get(config, "default_budget_tier"));
    const char *strategy = json_string_value(json_object_get(config, "default_routing_strategy"));
    json_t *out = json_pack(
        "{ss s[] s[] sf ss s[] sI sI ss s{} sI}", "budget_tier", tier != NULL ? tier : "MEDIUM",
        "preferred_providers", "fallback_providers", "max_monthly_cost", 0.0, "residency", "any",
        "allowed_task_types", "rpm_limit", (json_int_t)0, "tpm_limit", (json_int_t)0,
        "routing_strategy", strategy != NULL ? strategy : "ordered", "provider_weights",
        "speed_weight", (json_int_t)50);
    if (out == NULL) {
        json_decref(stored);
        return ERR_NOMEM;
    }
    /* The cached value is shared: copy from it, never into it. */
    const char *k;
    json_t *v;
    json_object_foreach(stored, k, v)
    {
        json_object_set_new(out, k, json_deep_copy(v));
    }
    json_decref(stored);
    *ret_settings = out;
    return ERR_OK;
}

enum err keystore_settings_get(struct byok *b, struct storage *st, const char *tenant,
                               json_t **ret_settings)
{
    json_t *config = NULL;
    enum err e = config_get_shared(b, st, &config);
    if (e == ERR_OK) {
        e = keystore_settings_with(b, st, tenant, config, ret_settings);
        json_decref(config);
    }
    return e;
}

enum err keystore_settings_put(struct byok *b, struct storage *st, const char *tenant,
                               const json_t *stored)
{
    struct keystore *ks = keystore_of(b);
    char key[STORAGE_MAX_KEY];
    enum err e = keystore_path_tenant(key, sizeof(key), tenant, "settings");
    if (e != ERR_OK) {
        return e;
    }
    if (ks != NULL) {
        cache_invalidate(ks->settings, key);
    }
    e = storage_put_json(st, key, stored, false);
    if (ks != NULL && cache_write_may_land(e)) {
        cache_doubt(ks->settings, key); /* it may land later: keystore_record_put */
    } else if (ks != NULL) {
        /* As keystore_record_put: drop, write, drop, then cache what was written. */
        cache_invalidate(ks->settings, key);
        json_t *copy = e == ERR_OK ? json_deep_copy(stored) : NULL;
        if (copy != NULL) {
            uint64_t gen = 0;
            json_t *none = cache_get(ks->settings, key, &gen);
            json_decref(none);
            cache_put(ks->settings, key, copy, gen);
            json_decref(copy);
        }
    }
    return e;
}

/* ---- key records ------------------------------------------------------------------------ */

enum err keystore_record_get(struct keystore *ks, struct storage *st, const char *key,
                             json_t **ret_shared)
{
    uint64_t gen = 0;
    json_t *rec = cache_get(ks->records, key, &gen);
    if (rec != NULL) {
        *ret_shared = rec;
        return ERR_OK;
    }
    enum err e = storage_get_json(st, key, &rec);
    if (e != ERR_OK) {
        return e;
    }
    if (!json_is_object(rec)) {
        json_decref(rec);
        return ERR_PROTO;
    }
    cache_put(ks->records, key, rec, gen);
    *ret_shared = rec;
    return ERR_OK;
}

enum err keystore_record_put(struct keystore *ks, struct storage *st, const char *key,
                             const json_t *rec)
{
    /*
     * Drop before the write, drop again after it, and cache the new record
     * under the generation taken after the second drop: a reader that loaded
     * the old record meanwhile holds an older generation and cannot re-cache
     * it. The next existence check and write then need no storage read.
     */
    cache_invalidate(ks->records, key);
    /*
     * One compact dump (storage_put_json sizes and sorts in two passes), by
     * jsonw: json_dumps' bytes in a quarter of its instructions, which were
     * the largest part of a key write's own. Wiped after the write.
     */
    enum err e = ERR_NOMEM;
    size_t len = 0;
    char *text = jsonw_dumps(rec, &len);
    if (text != NULL) {
        e = storage_put(st, key, (const unsigned char *)text, len, false);
        OPENSSL_cleanse(text, len);
        free(text);
    }
    if (e != ERR_OK) {
        /*
         * Reported failed, it may be applied all the same, later (a timeout
         * or cancellation: transport.md, "ambiguous writes"), and no
         * InvalidateKey follows our own writes on the active node: a reader
         * caching the old record before it lands would serve it for good
         * (a revoked key from creds, a later write starting from it). So the
         * key stays out of the cache for a while (cache.h, writes in doubt).
         * A refusal (a read-only standby) wrote nothing: dropped only.
         */
        if (cache_write_may_land(e)) {
            cache_doubt(ks->records, key);
        } else {
            cache_invalidate(ks->records, key);
        }
        return e;
    }
    cache_invalidate(ks->records, key);
    uint64_t gen = 0;
    json_t *none = cache_get(ks->records, key, &gen);
    json_decref(none);
    cache_put(ks->records, key, (json_t *)rec, gen); /* shared from now on: see keystore.h */
    return ERR_OK;
}

json_t *keystore_record_clone(const json_t *rec)
{
    json_t *out = json_copy((json_t *)rec);
    json_t *vs = json_array();
    if (out == NULL || vs == NULL) {
        json_decref(out);
        json_decref(vs);
        return NULL;
    }
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(rec, "versions"), i, v)
    {
        if (json_array_append_new(vs, json_copy(v)) != 0) {
            json_decref(out);
            json_decref(vs);
            return NULL;
        }
    }
    json_object_set_new(out, "versions", vs);
    return out;
}

static bool keystore_only_ref(const json_t *j)
{
    /* Pairs with jansson's release decrement: a reader's last use happened before. */
    return __atomic_load_n(&j->refcount, __ATOMIC_ACQUIRE) == 1;
}

/* Is rec, with the parts a clone would copy, referenced by its holder only? */
static bool keystore_record_exclusive(const json_t *rec)
{
    if (!keystore_only_ref(rec)) {
        return false;
    }
    const json_t *vs = json_object_get(rec, "versions");
    if (vs == NULL) {
        return true;
    }
    if (!keystore_only_ref(vs)) {
        return false;
    }
    size_t i;
    const json_t *v;
    json_array_foreach(vs, i, v)
    {
        if (!keystore_only_ref(v)) {
            return false;
        }
    }
    return true;
}

enum err keystore_record_take(struct keystore *ks, struct storage *st, const char *key,
                              json_t **ret_own)
{
    json_t *shared = NULL;
    enum err e = keystore_record_get(ks, st, key, &shared);
    if (e != ERR_OK) {
        return e;
    }
    /*
     * Out of the cache, the record can gain references only from holders
     * that still have it; with none left (checked after the drop), it is
     * ours alone. This saves the clone and freeing the old record: about a
     * quarter of a key write's own instructions.
     */
    cache_invalidate(ks->records, key);
    if (keystore_record_exclusive(shared)) {
        *ret_own = shared;
        return ERR_OK;
    }
    json_t *own = keystore_record_clone(shared);
    json_decref(shared);
    if (own == NULL) {
        return ERR_NOMEM;
    }
    *ret_own = own;
    return ERR_OK;
}

void keystore_record_forget(struct keystore *ks, const char *key)
{
    cache_invalidate(ks->records, key);
}

/* ---- usage counters ------------------------------------------------------------------- */

static size_t keystore_counter_hash(const char *t, const char *p, const char *kt)
{
    uint64_t h = 1469598103934665603ULL;
    const char *parts[3] = {t, p, kt};
    for (int i = 0; i < 3; i++) {
        for (const unsigned char *c = (const unsigned char *)parts[i]; *c != '\0'; c++) {
            h ^= *c;
            h *= 1099511628211ULL;
        }
        h ^= '/';
        h *= 1099511628211ULL;
    }
    return (size_t)(h % KEYSTORE_COUNTER_BUCKETS);
}

static bool keystore_counter_is(const struct keystore_counter *c, const char *t, const char *p,
                                const char *kt)
{
    return strcmp(c->tenant, t) == 0 && strcmp(c->provider, p) == 0 && strcmp(c->key_type, kt) == 0;
}

void keystore_usage_hit(struct keystore *ks, const char *tenant, const char *provider,
                        const char *key_type, time_t now)
{
    if (strlen(tenant) >= 64 || strlen(provider) >= 64 || strlen(key_type) >= 64) {
        return;
    }
    size_t h = keystore_counter_hash(tenant, provider, key_type);
    pthread_mutex_lock(&ks->counter_mu);
    struct keystore_counter *c = ks->counters[h];
    while (c != NULL && !keystore_counter_is(c, tenant, provider, key_type)) {
        c = c->next;
    }
    if (c == NULL && ks->n_counters < KEYSTORE_MAX_COUNTERS) {
        c = calloc(1, sizeof(*c));
        if (c != NULL) {
            snprintf(c->tenant, sizeof(c->tenant), "%s", tenant);
            snprintf(c->provider, sizeof(c->provider), "%s", provider);
            snprintf(c->key_type, sizeof(c->key_type), "%s", key_type);
            c->next = ks->counters[h];
            ks->counters[h] = c;
            ks->n_counters++;
        }
    }
    /* A full table drops the hit: usage_count is advisory, the creds read must not fail. */
    if (c != NULL) {
        c->hits++;
        if (now > c->last_used) {
            c->last_used = now;
        }
    }
    pthread_mutex_unlock(&ks->counter_mu);
}

static void keystore_rec_add_usage(json_t *rec, int64_t hits, time_t last_used)
{
    json_int_t count = json_integer_value(json_object_get(rec, "usage_count"));
    json_object_set_new(rec, "usage_count", json_integer(count + hits));
    time_t prev = 0;
    const char *s = json_string_value(json_object_get(rec, "last_used_at"));
    if (s == NULL || keystore_time_parse(s, &prev) != ERR_OK || last_used > prev) {
        char buf[32];
        keystore_time_format(last_used, buf, sizeof(buf));
        json_object_set_new(rec, "last_used_at", json_string(buf));
    }
}

/* The link to the counter of a key, or NULL. Caller holds counter_mu. */
static struct keystore_counter **keystore_counter_find_locked(struct keystore *ks,
                                                              const char *tenant,
                                                              const char *provider,
                                                              const char *key_type)
{
    size_t h = keystore_counter_hash(tenant, provider, key_type);
    for (struct keystore_counter **pc = &ks->counters[h]; *pc != NULL; pc = &(*pc)->next) {
        if (keystore_counter_is(*pc, tenant, provider, key_type)) {
            return pc;
        }
    }
    return NULL;
}

/* Frees the counter at *pc once nothing is pending. Caller holds counter_mu. */
static void keystore_counter_drop_empty_locked(struct keystore *ks, struct keystore_counter **pc)
{
    struct keystore_counter *c = *pc;
    if (c->hits <= 0) {
        *pc = c->next;
        free(c);
        ks->n_counters--;
    }
}

/*
 * Settles the write in doubt against stored, the record as storage holds it
 * (NULL: absent), read after that write was reported failed: its token there
 * means the write landed, so its hits are in usage_count already; any other
 * token (a later write replaces it, and every later writer of the record
 * keeps what it loaded) means it did not, and they stay pending. Caller
 * holds counter_mu and the write lock (no write can land between the read
 * and this).
 */
static void keystore_counter_resolve_locked(struct keystore_counter *c, const json_t *stored)
{
    if (c->doubt[0] == '\0') {
        return;
    }
    const char *token = json_string_value(json_object_get(stored, KEYSTORE_USAGE_TOKEN));
    if (token != NULL && strcmp(token, c->doubt) == 0) {
        c->hits -= c->doubt_hits;
    }
    c->doubt[0] = '\0';
    c->doubt_hits = 0;
}

int64_t keystore_usage_merge(struct keystore *ks, const char *tenant, const char *provider,
                             const char *key_type, const json_t *stored, json_t *view)
{
    int64_t hits = 0;
    pthread_mutex_lock(&ks->counter_mu);
    struct keystore_counter **pc = keystore_counter_find_locked(ks, tenant, provider, key_type);
    if (pc != NULL) {
        struct keystore_counter *c = *pc;
        keystore_counter_resolve_locked(c, stored);
        if (c->hits > 0) {
            keystore_rec_add_usage(view, c->hits, c->last_used);
            hits = c->hits;
        }
        keystore_counter_drop_empty_locked(ks, pc);
    }
    pthread_mutex_unlock(&ks->counter_mu);
    return hits;
}

int64_t keystore_usage_save_begin(struct keystore *ks, const char *tenant, const char *provider,
                                  const char *key_type, json_t *rec)
{
    int64_t hits = 0;
    pthread_mutex_lock(&ks->counter_mu);
    struct keystore_counter **pc = keystore_counter_find_locked(ks, tenant, provider, key_type);
    if (pc != NULL) {
        struct keystore_counter *c = *pc;
        keystore_counter_resolve_locked(c, rec);
        if (c->hits > 0) {
            keystore_rec_add_usage(rec, c->hits, c->last_used);
            hits = c->hits;
        }
        keystore_counter_drop_empty_locked(ks, pc);
    }
    pthread_mutex_unlock(&ks->counter_mu);
    if (hits > 0) {
        /* A new token for each write, so that it names this write alone. */
        char token[KEYSTORE_TOKEN_SIZE];
        snprintf(token, sizeof(token), "%s-%" PRIx64, ks->token_prefix, ks->token_seq++);
        json_object_set_new(rec, KEYSTORE_USAGE_TOKEN, json_string(token));
    }
    return hits;
}

void keystore_usage_save_end(struct keystore *ks, const char *tenant, const char *provider,
                             const char *key_type, const json_t *rec, int64_t hits, enum err e)
{
    if (hits <= 0) {
        return;
    }
    const char *token = json_string_value(json_object_get(rec, KEYSTORE_USAGE_TOKEN));
    pthread_mutex_lock(&ks->counter_mu);
    struct keystore_counter **pc = keystore_counter_find_locked(ks, tenant, provider, key_type);
    if (pc != NULL && e == ERR_OK) {
        /* Hits counted during the write stay pending for the next flush. */
        (*pc)->hits -= hits;
        keystore_counter_drop_empty_locked(ks, pc);
    } else if (pc != NULL && token != NULL) {
        /*
         * Failed, or so it was reported (a timeout or a cancellation may
         * come after Vault applied the write): the hits stay pending, and
         * the next reader of the stored record tells which it was.
         */
        snprintf((*pc)->doubt, sizeof((*pc)->doubt), "%s", token);
        (*pc)->doubt_hits = hits;
    }
    pthread_mutex_unlock(&ks->counter_mu);
}

void keystore_usage_forget(struct keystore *ks, const char *tenant, const char *provider,
                           const char *key_type)
{
    pthread_mutex_lock(&ks->counter_mu);
    for (size_t i = 0; i < KEYSTORE_COUNTER_BUCKETS; i++) {
        struct keystore_counter **pc = &ks->counters[i];
        while (*pc != NULL) {
            struct keystore_counter *c = *pc;
            bool match = strcmp(c->tenant, tenant) == 0 &&
                         (provider == NULL || strcmp(c->provider, provider) == 0) &&
                         (key_type == NULL || strcmp(c->key_type, key_type) == 0);
            if (match) {
                *pc = c->next;
                free(c);
                ks->n_counters--;
            } else {
                pc = &c->next;
            }
        }
    }
    pthread_mutex_unlock(&ks->counter_mu);
}

struct keystore_counter_name {
    char tenant[64], provider[64], key_type[64];
};

/* Flushes one key's pending hits; caller holds the write lock. */
static enum err keystore_counter_flush(struct keystore *ks, struct storage *st,
                                       const struct keystore_counter_name *n)
{
    int64_t before = 0;
    pthread_mutex_lock(&ks->counter_mu);
    struct keystore_counter **pc =
        keystore_counter_find_locked(ks, n->tenant, n->provider, n->key_type);
    if (pc != NULL) {
        before = (*pc)->hits;
    }
    pthread_mutex_unlock(&ks->counter_mu);
    if (before <= 0) {
        return ERR_OK; /* forgotten meanwhile (key revoked, tenant deleted) */
    }
    char key[STORAGE_MAX_KEY];
    json_t *rec = NULL;
    enum err e = keystore_path_key(key, sizeof(key), n->tenant, n->provider, n->key_type);
    if (e == ERR_OK) {
        e = storage_get_json(st, key, &rec);
    }
    if (e == ERR_NOTFOUND) {
        /* The key or tenant was deleted since: drop its hits, those in doubt too. */
        pthread_mutex_lock(&ks->counter_mu);
        pc = keystore_counter_find_locked(ks, n->tenant, n->provider, n->key_type);
        if (pc != NULL) {
            keystore_counter_resolve_locked(*pc, NULL);
            (*pc)->hits -= before;
            keystore_counter_drop_empty_locked(ks, pc);
        }
        pthread_mutex_unlock(&ks->counter_mu);
        return ERR_OK;
    }
    if (e != ERR_OK) {
        return e; /* a write in doubt stays so: nothing was learnt */
    }
    int64_t hits = keystore_usage_save_begin(ks, n->tenant, n->provider, n->key_type, rec);
    if (hits > 0) {
        e = keystore_record_put(ks, st, key, rec);
        keystore_usage_save_end(ks, n->tenant, n->provider, n->key_type, rec, hits, e);
    }
    json_decref(rec);
    return e;
}

enum err keystore_usage_flush(struct keystore *ks, struct storage *st)
{
    enum err result = ERR_OK;
    /*
     * One key at a time under the write lock: key reads merge pending hits
     * under it too, so a reader never sees a hit both in storage and in
     * memory, and writers wait for one key's flush at most, not the whole
     * table's. The table is walked bucket by bucket (names copied out, the
     * counter mutex never held across I/O).
     */
    for (size_t b = 0; b < KEYSTORE_COUNTER_BUCKETS; b++) {
        struct keystore_counter_name *names = NULL;
        size_t n = 0;
        pthread_mutex_lock(&ks->counter_mu);
        for (struct keystore_counter *c = ks->counters[b]; c != NULL; c = c->next) {
            n++;
        }
        if (n > 0) {
            names = calloc(n, sizeof(*names));
        }
        size_t i = 0;
        for (struct keystore_counter *c = ks->counters[b]; names != NULL && c != NULL;
             c = c->next, i++) {
            memcpy(names[i].tenant, c->tenant, sizeof(c->tenant));
            memcpy(names[i].provider, c->provider, sizeof(c->provider));
            memcpy(names[i].key_type, c->key_type, sizeof(c->key_type));
        }
        pthread_mutex_unlock(&ks->counter_mu);
        if (n > 0 && names == NULL) {
            result = ERR_NOMEM; /* try again next tick */
            continue;
        }
        for (i = 0; i < n; i++) {
            keystore_lock(ks);
            enum err e = keystore_counter_flush(ks, st, &names[i]);
            keystore_unlock(ks);
            if (e != ERR_OK) {
                result = e;
            }
        }
        free(names);
    }
    return result;
}

/* ---- versions, status, grace ------------------------------------------------------------ */

const char *keystore_key_status(const json_t *rec, time_t now)
{
    const char *status = json_string_value(json_object_get(rec, "status"));
    if (status != NULL && strcmp(status, "revoked") == 0) {
        return "revoked";
    }
    const char *exp = json_string_value(json_object_get(rec, "expires_at"));
    time_t t = 0;
    if (exp != NULL && keystore_time_parse(exp, &t) == ERR_OK && t <= now) {
        return "expired";
    }
    return "active";
}

bool keystore_versions_revoke_due(json_t *rec, time_t now)
{
    bool changed = false;
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(rec, "versions"), i, v)
    {
        const char *at = json_string_value(json_object_get(v, "revoke_at"));
        time_t t = 0;
        if (at == NULL || keystore_time_parse(at, &t) != ERR_OK || t > now) {
            continue;
        }
        json_object_set_new(v, "status", json_string("revoked"));
        json_object_set_new(v, "revoked_at", json_string(at));
        json_object_del(v, "revoke_at");
        json_object_del(v, "ct");
        changed = true;
    }
    return changed;
}

enum err keystore_grace_mark(struct storage *st, const char *tenant, const char *provider,
                             const char *key_type, bool pending)
{
    char key[STORAGE_MAX_KEY];
    int n =
        snprintf(key, sizeof(key), KEYSTORE_GRACE_PREFIX "%s:%s:%s", tenant, provider, key_type);
    if (n < 0 || (size_t)n >= sizeof(key)) {
        return ERR_TOOBIG;
    }
    if (!pending) {
        enum err e = storage_delete(st, key);
        return e == ERR_NOTFOUND ? ERR_OK : e;
    }
    json_t *doc = json_object();
    if (doc == NULL) {
        return ERR_NOMEM;
    }
    enum err e = storage_put_json(st, key, doc, false);
    json_decref(doc);
    return e;
}

static bool keystore_has_pending_grace(const json_t *rec)
{
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(rec, "versions"), i, v)
    {
        if (json_object_get(v, "revoke_at") != NULL) {
            return true;
        }
    }
    return false;
}

enum err keystore_grace_sweep(struct keystore *ks, struct storage *st)
{
    char **names = NULL;
    size_t n = 0;
    enum err e = storage_list(st, KEYSTORE_GRACE_PREFIX, &names, &n);
    if (e != ERR_OK) {
        return e == ERR_NOTFOUND ? ERR_OK : e;
    }
    time_t now = keystore_now();
    for (size_t i = 0; i < n; i++) {
        char t[64], p[64], kt[64];
        if (sscanf(names[i], "%63[a-z0-9_-]:%63[a-z0-9_-]:%63[a-z0-9_-]", t, p, kt) != 3) {
            continue;
        }
        char key[STORAGE_MAX_KEY];
        if (keystore_path_key(key, sizeof(key), t, p, kt) != ERR_OK) {
            continue;
        }
        keystore_lock(ks);
        json_t *rec = NULL;
        enum err ge = storage_get_json(st, key, &rec);
        if (ge == ERR_OK) {
            if (keystore_versions_revoke_due(rec, now)) {
                ge = keystore_record_put(ks, st, key, rec);
            }
            if (ge == ERR_OK && !keystore_has_pending_grace(rec)) {
                ge = keystore_grace_mark(st, t, p, kt, false);
            }
            json_decref(rec);
        } else if (ge == ERR_NOTFOUND) {
            ge = keystore_grace_mark(st, t, p, kt, false);
        }
        keystore_unlock(ks);
        if (ge != ERR_OK) {
            e = ge;
        }
    }
    storage_keys_free(names, n);
    return e;
}
