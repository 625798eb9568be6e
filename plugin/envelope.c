/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Envelope encryption: AES-256-GCM through OpenSSL's EVP interface, the
 * versioned KEKs, the per-tenant DEKs and their caches.
 *
 * Locking, from outermost to innermost:
 *   rot_mu   serialises KEK rotations;
 *   kek_rw   readers: anything that reads a wrapped DEK and unwraps it, or
 *            creates a DEK with the current KEK; writer: switching the current
 *            version and removing old KEK versions. So a reader that saw a DEK
 *            record wrapped by KEK n always finds KEK n, and a DEK is never
 *            created with a version that a rotation has already left behind.
 *            Writer-preferring (pool_rwlock_init): cold reads arriving all the
 *            time cannot hold a rotation's switch or clean-up back for ever;
 *            no thread takes its read side twice;
 *   cache_mu guards the in-memory caches only and is never held across I/O.
 *
 * This module does not decide who may read which tenant: the path handlers
 * and Vault's ACLs do. It logs only what a rotation could not rewrap (the
 * tenant name and an error name), and a data key naming a KEK version that
 * storage does not hold (the tenant name and the version): the request that
 * ran into either sees a bare 500.
 */
#include "plugin/envelope.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/b64.h"
#include "common/log.h"
#include "plugin/cache.h"
#include "plugin/pool.h"

#define ENVELOPE_FORMAT_V1 0x01
#define ENVELOPE_DEK_BUCKETS 1024
/* Raw KEK record: format byte then the key. Raw (not JSON) so that every copy can be wiped. */
#define ENVELOPE_KEK_RECORD_LEN (1 + ENVELOPE_KEY_LEN)

/* ---- AEAD primitives -------------------------------------------------------------- */

/*
 * OpenSSL 3 looks the algorithm up in its provider tables on every
 * EVP_aes_256_gcm() init (an implicit fetch); fetching it once halves the
 * cost of a seal+open of a short key.
 */
static pthread_once_t envelope_cipher_once = PTHREAD_ONCE_INIT;
static EVP_CIPHER *envelope_cipher_fetched;

static void envelope_cipher_init(void)
{
    envelope_cipher_fetched = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
}

static const EVP_CIPHER *envelope_cipher(void)
{
    pthread_once(&envelope_cipher_once, envelope_cipher_init);
    return envelope_cipher_fetched != NULL ? envelope_cipher_fetched : EVP_aes_256_gcm();
}

static bool envelope_key_ok(const struct secret *key)
{
    return key != NULL && key->len == ENVELOPE_KEY_LEN;
}

enum err envelope_seal(const struct secret *key, const void *ad, size_t ad_len,
                       const unsigned char *pt, size_t pt_len, unsigned char **ret_ct,
                       size_t *ret_ct_len)
{
    if (!envelope_key_ok(key) || (pt == NULL && pt_len != 0) || (ad == NULL && ad_len != 0) ||
        ret_ct == NULL || ret_ct_len == NULL) {
        return ERR_INVAL;
    }
    if (pt_len > ENVELOPE_MAX_PLAINTEXT || ad_len > ENVELOPE_MAX_AD) {
        return ERR_TOOBIG;
    }
    enum err e = ERR_CRYPTO;
    size_t ct_len = pt_len + ENVELOPE_OVERHEAD;
    unsigned char *ct = malloc(ct_len);
    if (ct == NULL) {
        return ERR_NOMEM;
    }
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL) {
        e = ERR_NOMEM;
        goto out_free_ct;
    }
    unsigned char *nonce = ct + 1;
    unsigned char *body = nonce + ENVELOPE_NONCE_LEN;
    unsigned char *tag = body + pt_len;
    ct[0] = ENVELOPE_FORMAT_V1;
    if (RAND_bytes(nonce, ENVELOPE_NONCE_LEN) != 1) {
        goto out_free_ctx;
    }
    int n = 0;
    if (EVP_EncryptInit_ex(ctx, envelope_cipher(), NULL, key->data, nonce) != 1) {
        goto out_free_ctx;
    }
    /* The format byte is authenticated too: a downgrade is a tampered ciphertext. */
    if (EVP_EncryptUpdate(ctx, NULL, &n, ct, 1) != 1 ||
        (ad_len > 0 && EVP_EncryptUpdate(ctx, NULL, &n, ad, (int)ad_len) != 1)) {
        goto out_free_ctx;
    }
    if (pt_len > 0 && EVP_EncryptUpdate(ctx, body, &n, pt, (int)pt_len) != 1) {
        goto out_free_ctx;
    }
    if (EVP_EncryptFinal_ex(ctx, body + pt_len, &n) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, ENVELOPE_TAG_LEN, tag) != 1) {
        goto out_free_ctx;
    }
    EVP_CIPHER_CTX_free(ctx);
    *ret_ct = ct;
    *ret_ct_len = ct_len;
    return ERR_OK;

out_free_ctx:
    EVP_CIPHER_CTX_free(ctx);
out_free_ct:
    free(ct);
    return e;
}

enum err envelope_open(const struct secret *key, const void *ad, size_t ad_len,
                       const unsigned char *ct, size_t ct_len, struct secret **ret_pt)
{
    if (!envelope_key_ok(key) || ct == NULL || (ad == NULL && ad_len != 0) || ret_pt == NULL) {
        return ERR_INVAL;
    }
    if (ad_len > ENVELOPE_MAX_AD || ct_len > ENVELOPE_MAX_PLAINTEXT + ENVELOPE_OVERHEAD) {
        return ERR_TOOBIG;
    }
    if (ct_len < ENVELOPE_OVERHEAD || ct[0] != ENVELOPE_FORMAT_V1) {
        return ERR_CRYPTO;
    }
    size_t pt_len = ct_len - ENVELOPE_OVERHEAD;
    const unsigned char *nonce = ct + 1;
    const unsigned char *body = nonce + ENVELOPE_NONCE_LEN;
    const unsigned char *tag = body + pt_len;
    enum err e = ERR_CRYPTO;
    struct secret *pt = secret_new(pt_len);
    if (pt == NULL) {
        return ERR_NOMEM;
    }
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL) {
        e = ERR_NOMEM;
        goto out_free_pt;
    }
    int n = 0;
    if (EVP_DecryptInit_ex(ctx, envelope_cipher(), NULL, key->data, nonce) != 1 ||
        EVP_DecryptUpdate(ctx, NULL, &n, ct, 1) != 1 ||
        (ad_len > 0 && EVP_DecryptUpdate(ctx, NULL, &n, ad, (int)ad_len) != 1) ||
        (pt_len > 0 && EVP_DecryptUpdate(ctx, pt->data, &n, body, (int)pt_len) != 1) ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, ENVELOPE_TAG_LEN, (void *)tag) != 1 ||
        EVP_DecryptFinal_ex(ctx, pt->data + pt_len, &n) != 1) {
        goto out_free_ctx;
    }
    EVP_CIPHER_CTX_free(ctx);
    *ret_pt = pt;
    return ERR_OK;

out_free_ctx:
    EVP_CIPHER_CTX_free(ctx);
out_free_pt:
    secret_free(&pt); /* wipes whatever unauthenticated plaintext was written */
    return e;
}

enum err envelope_key_ad(const char *tenant, const char *provider, const char *key_type,
                         int64_t version, char *out, size_t out_size)
{
    if (tenant == NULL || provider == NULL || key_type == NULL || out == NULL) {
        return ERR_INVAL;
    }
    int n = snprintf(out, out_size, "%s|%s|%s|%" PRId64, tenant, provider, key_type, version);
    if (n < 0 || (size_t)n >= out_size || (size_t)n > ENVELOPE_MAX_AD) {
        return ERR_TOOBIG;
    }
    return ERR_OK;
}

enum err envelope_b64_encode(const unsigned char *in, size_t len, char **ret)
{
    if ((in == NULL && len != 0) || ret == NULL || len > INT_MAX / 2) {
        return ERR_INVAL;
    }
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    if (out == NULL) {
        return ERR_NOMEM;
    }
    EVP_EncodeBlock((unsigned char *)out, in, (int)len);
    *ret = out;
    return ERR_OK;
}

enum err envelope_b64_decode(const char *in, unsigned char **ret, size_t *ret_len)
{
    if (in == NULL || ret == NULL || ret_len == NULL) {
        return ERR_INVAL;
    }
    /* Strict (common/b64.h): EVP_DecodeBlock lets stray '=' through. */
    size_t len = strlen(in);
    if (len % 4 != 0 || len > INT_MAX / 2) {
        return ERR_INVAL;
    }
    unsigned char *out = malloc(len / 4 * 3 + 1);
    if (out == NULL) {
        return ERR_NOMEM;
    }
    size_t n = 0;
    if (!b64_decode(in, len, false, out, len / 4 * 3, &n)) {
        free(out);
        return ERR_INVAL;
    }
    *ret = out;
    *ret_len = n;
    return ERR_OK;
}

/* ---- state ------------------------------------------------------------------------ */

struct envelope_dek_entry {
    struct envelope_dek_entry *next;
    struct secret *dek;
    char tenant[64];
};

struct envelope_kek_entry {
    int64_t version; /* 0 = empty slot */
    struct secret *kek;
};

struct envelope {
    pthread_mutex_t rot_mu;
    pthread_rwlock_t kek_rw;
    pthread_mutex_t cache_mu;
    /* under cache_mu: */
    int64_t current; /* current KEK version, 0 = not loaded */
    uint64_t gen;    /* bumped by every DEK invalidation */
    size_t n_dek;
    struct envelope_dek_entry *dek[ENVELOPE_DEK_BUCKETS];
    /* Tenants whose DEK delete was reported failed: not cached a while (cache.h). */
    struct cache_doubts *dek_doubt;
    struct envelope_kek_entry kek[ENVELOPE_KEK_CACHE_MAX];
    size_t kek_next; /* round-robin eviction */
    /*
     * The last KEK state read from storage for `config` reads: valid while
     * kst_ok and younger than the maximum age. Every write to "kek/" (ours,
     * after it returns, whatever it returned) and every InvalidateKey("kek/...")
     * drops it and bumps kst_gen, so a reader that listed before the change
     * does not cache what it saw.
     */
    struct envelope_kek_state kst;
    bool kst_ok;
    uint64_t kst_gen;
    int64_t kst_at_ms; /* CLOCK_MONOTONIC */
};

/* Tests may shorten it (envelope_set_kek_state_max_age_ms). */
static long envelope_kst_max_age_ms = ENVELOPE_KEK_STATE_MAX_AGE_MS;

static size_t envelope_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    return (size_t)(h % ENVELOPE_DEK_BUCKETS);
}

struct envelope *envelope_new(void)
{
    struct envelope *env = calloc(1, sizeof(*env));
    if (env == NULL) {
        return NULL;
    }
    if (pthread_mutex_init(&env->rot_mu, NULL) != 0) {
        goto out_free;
    }
    if (pool_rwlock_init(&env->kek_rw) != 0) {
        goto out_rot;
    }
    if (pthread_mutex_init(&env->cache_mu, NULL) != 0) {
        goto out_rw;
    }
    env->dek_doubt = cache_doubts_new();
    if (env->dek_doubt == NULL) {
        pthread_mutex_destroy(&env->cache_mu);
        goto out_rw;
    }
    return env;

out_rw:
    pthread_rwlock_destroy(&env->kek_rw);
out_rot:
    pthread_mutex_destroy(&env->rot_mu);
out_free:
    free(env);
    return NULL;
}

static void envelope_dek_clear_locked(struct envelope *env)
{
    for (size_t i = 0; i < ENVELOPE_DEK_BUCKETS; i++) {
        struct envelope_dek_entry *e = env->dek[i];
        while (e != NULL) {
            struct envelope_dek_entry *next = e->next;
            secret_free(&e->dek);
            free(e);
            e = next;
        }
        env->dek[i] = NULL;
    }
    env->n_dek = 0;
    env->gen++;
}

static void envelope_kst_drop_locked(struct envelope *env)
{
    envelope_kek_state_done(&env->kst);
    env->kst_ok = false;
    env->kst_gen++;
}

/* After a write to "kek/" returns (landed or not): the next `config` read lists again. */
static void envelope_kst_drop(struct envelope *env)
{
    pthread_mutex_lock(&env->cache_mu);
    envelope_kst_drop_locked(env);
    pthread_mutex_unlock(&env->cache_mu);
}

static void envelope_kek_clear_locked(struct envelope *env)
{
    for (size_t i = 0; i < ENVELOPE_KEK_CACHE_MAX; i++) {
        secret_free(&env->kek[i].kek);
        env->kek[i].version = 0;
    }
}

void envelope_drop_all(struct envelope *env)
{
    if (env == NULL) {
        return;
    }
    pthread_mutex_lock(&env->cache_mu);
    envelope_dek_clear_locked(env);
    envelope_kek_clear_locked(env);
    envelope_kst_drop_locked(env);
    env->current = 0;
    pthread_mutex_unlock(&env->cache_mu);
}

void envelope_free(struct envelope *env)
{
    if (env == NULL) {
        return;
    }
    envelope_drop_all(env);
    cache_doubts_free(env->dek_doubt);
    pthread_mutex_destroy(&env->cache_mu);
    pthread_rwlock_destroy(&env->kek_rw);
    pthread_mutex_destroy(&env->rot_mu);
    free(env);
}

static void envelope_dek_drop_locked(struct envelope *env, const char *tenant)
{
    env->gen++;
    for (struct envelope_dek_entry **pe = &env->dek[envelope_hash(tenant)]; *pe != NULL;
         pe = &(*pe)->next) {
        if (strcmp((*pe)->tenant, tenant) == 0) {
            struct envelope_dek_entry *old = *pe;
            *pe = old->next;
            secret_free(&old->dek);
            free(old);
            env->n_dek--;
            return;
        }
    }
}

void envelope_invalidate(struct envelope *env, const char *key)
{
    if (env == NULL || key == NULL) {
        return;
    }
    pthread_mutex_lock(&env->cache_mu);
    if (strncmp(key, ENVELOPE_KEK_PREFIX, strlen(ENVELOPE_KEK_PREFIX)) == 0) {
        /* A KEK changed on another node (rotation): forget them all, they are few. */
        envelope_kek_clear_locked(env);
        envelope_kst_drop_locked(env);
        env->current = 0;
    } else if (strncmp(key, "tenants/", 8) == 0) {
        const char *t = key + 8;
        const char *slash = strchr(t, '/');
        if (slash != NULL && strcmp(slash, "/dek") == 0 && (size_t)(slash - t) < 64) {
            char tenant[64];
            memcpy(tenant, t, (size_t)(slash - t));
            tenant[slash - t] = '\0';
            envelope_dek_drop_locked(env, tenant);
        }
    }
    pthread_mutex_unlock(&env->cache_mu);
}

/* ---- KEKs ------------------------------------------------------------------------- */

static enum err envelope_kek_key(int64_t version, char *out, size_t size)
{
    int n = snprintf(out, size, ENVELOPE_KEK_PREFIX "%" PRId64, version);
    return n > 0 && (size_t)n < size ? ERR_OK : ERR_TOOBIG;
}

/* A copy of KEK `version` (cache, else storage). Caller holds kek_rw (either side). */
static enum err envelope_kek_get(struct envelope *env, struct storage *st, int64_t version,
                                 struct secret **ret_kek)
{
    if (version <= 0) {
        return ERR_NOTFOUND;
    }
    struct secret *copy = NULL;
    pthread_mutex_lock(&env->cache_mu);
    for (size_t i = 0; i < ENVELOPE_KEK_CACHE_MAX; i++) {
        if (env->kek[i].version == version) {
            copy = secret_from(env->kek[i].kek->data, env->kek[i].kek->len);
            break;
        }
    }
    pthread_mutex_unlock(&env->cache_mu);
    if (copy != NULL) {
        *ret_kek = copy;
        return ERR_OK;
    }
    char key[64];
    enum err e = envelope_kek_key(version, key, sizeof(key));
    if (e != ERR_OK) {
        return e;
    }
    unsigned char *raw = NULL;
    size_t len = 0;
    e = storage_get(st, key, &raw, &len);
    if (e != ERR_OK) {
        return e;
    }
    if (len != ENVELOPE_KEK_RECORD_LEN || raw[0] != ENVELOPE_FORMAT_V1) {
        e = ERR_PROTO;
        goto out_wipe;
    }
    struct secret *kek = secret_from(raw + 1, ENVELOPE_KEY_LEN);
    copy = kek != NULL ? secret_from(kek->data, kek->len) : NULL;
    if (copy == NULL) {
        secret_free(&kek);
        e = ERR_NOMEM;
        goto out_wipe;
    }
    pthread_mutex_lock(&env->cache_mu);
    struct envelope_kek_entry *slot = &env->kek[env->kek_next];
    env->kek_next = (env->kek_next + 1) % ENVELOPE_KEK_CACHE_MAX;
    secret_free(&slot->kek);
    slot->kek = kek;
    slot->version = version;
    pthread_mutex_unlock(&env->cache_mu);
    *ret_kek = copy;
    e = ERR_OK;
out_wipe:
    OPENSSL_cleanse(raw, len);
    free(raw);
    return e;
}

static enum err envelope_kek_create(struct storage *st, int64_t version)
{
    unsigned char raw[ENVELOPE_KEK_RECORD_LEN];
    char key[64];
    enum err e = envelope_kek_key(version, key, sizeof(key));
    if (e != ERR_OK) {
        return e;
    }
    raw[0] = ENVELOPE_FORMAT_V1;
    if (RAND_priv_bytes(raw + 1, ENVELOPE_KEY_LEN) != 1) {
        e = ERR_CRYPTO;
        goto out_wipe;
    }
    /* kek/ is in SpecialPaths.seal_wrap_storage; seal_wrap asks Vault to wrap it with its seal too.
     */
    e = storage_put(st, key, raw, sizeof(raw), true);
out_wipe:
    OPENSSL_cleanse(raw, sizeof(raw));
    return e;
}

/* Whether storage holds KEK `version` (its value wiped at once). */
static enum err envelope_kek_exists(struct storage *st, int64_t version, bool *ret)
{
    char key[64];
    enum err e = envelope_kek_key(version, key, sizeof(key));
    if (e != ERR_OK) {
        return e;
    }
    unsigned char *raw = NULL;
    size_t len = 0;
    e = storage_get(st, key, &raw, &len);
    if (raw != NULL) {
        OPENSSL_cleanse(raw, len);
        free(raw);
    }
    if (e == ERR_NOTFOUND) {
        *ret = false;
        return ERR_OK;
    }
    if (e != ERR_OK) {
        return e;
    }
    *ret = true;
    return ERR_OK;
}

/*
 * The first KEK version after cur that storage does not hold. A KEK is never
 * overwritten: a version left by a rotation that failed half-way may already
 * wrap data keys (written by a node that read its kek/current), and the
 * rotation rewraps those too before pruning it.
 */
#define ENVELOPE_KEK_SKIP_MAX 16

static enum err envelope_kek_next_free(struct storage *st, int64_t cur, int64_t *ret)
{
    for (int64_t v = cur + 1; v <= cur + ENVELOPE_KEK_SKIP_MAX; v++) {
        char key[64];
        enum err e = envelope_kek_key(v, key, sizeof(key));
        if (e != ERR_OK) {
            return e;
        }
        unsigned char *raw = NULL;
        size_t len = 0;
        e = storage_get(st, key, &raw, &len);
        if (e == ERR_NOTFOUND) {
            *ret = v;
            return ERR_OK;
        }
        if (raw != NULL) {
            OPENSSL_cleanse(raw, len);
            free(raw);
        }
        if (e != ERR_OK) {
            return e;
        }
        char ver[24];
        (void)snprintf(ver, sizeof(ver), "%" PRId64, v);
        log_kv(LOGL_WARN, "rotate-root: KEK version already in storage, kept and skipped",
               "version", ver, NULL);
    }
    log_kv(LOGL_ERROR, "rotate-root: no free KEK version after the current one", NULL);
    return ERR_EXISTS;
}

static enum err envelope_current_put(struct storage *st, int64_t version)
{
    json_t *doc = json_pack("{sI}", "version", (json_int_t)version);
    if (doc == NULL) {
        return ERR_NOMEM;
    }
    enum err e = storage_put_json(st, ENVELOPE_KEK_CURRENT, doc, true);
    json_decref(doc);
    return e;
}

/* kek/current from storage (no cache); 0 when the mount has no KEK. */
static enum err envelope_current_read(struct storage *st, int64_t *ret)
{
    json_t *doc = NULL;
    enum err e = storage_get_json(st, ENVELOPE_KEK_CURRENT, &doc);
    if (e == ERR_NOTFOUND) {
        *ret = 0;
        return ERR_OK;
    }
    if (e != ERR_OK) {
        return e;
    }
    json_t *v = json_object_get(doc, "version");
    if (!json_is_integer(v) || json_integer_value(v) <= 0) {
        json_decref(doc);
        return ERR_PROTO;
    }
    *ret = json_integer_value(v);
    json_decref(doc);
    return ERR_OK;
}

/* Reads kek/current into env->current if not loaded; 0 when the mount has no KEK. */
static enum err envelope_current_load(struct envelope *env, struct storage *st, int64_t *ret)
{
    pthread_mutex_lock(&env->cache_mu);
    int64_t cur = env->current;
    pthread_mutex_unlock(&env->cache_mu);
    if (cur > 0) {
        *ret = cur;
        return ERR_OK;
    }
    enum err e = envelope_current_read(st, &cur);
    if (e != ERR_OK) {
        return e;
    }
    if (cur == 0) {
        *ret = 0;
        return ERR_OK;
    }
    pthread_mutex_lock(&env->cache_mu);
    env->current = cur;
    pthread_mutex_unlock(&env->cache_mu);
    *ret = cur;
    return ERR_OK;
}

enum err envelope_kek_version(struct envelope *env, struct storage *st, int64_t *ret_version)
{
    if (env == NULL || ret_version == NULL) {
        return ERR_INVAL;
    }
    return envelope_current_load(env, st, ret_version);
}

enum err envelope_initialize(struct envelope *env, struct storage *st)
{
    if (env == NULL || st == NULL) {
        return ERR_INVAL;
    }
    pool_mutex_lock(&env->rot_mu);
    pool_rwlock_wrlock(&env->kek_rw);
    int64_t cur = 0;
    enum err e = envelope_current_load(env, st, &cur);
    if (e == ERR_OK && cur == 0) {
        /*
         * A KEK is never overwritten. kek/1 without kek/current is a first
         * initialize cut between its two writes (or a restore that lost
         * kek/current): data keys may already be wrapped by it, so it is
         * adopted as the current version, not replaced.
         */
        bool exists = false;
        e = envelope_kek_exists(st, 1, &exists);
        if (e == ERR_OK && exists) {
            log_kv(LOGL_WARN, "initialize: KEK version 1 found without kek/current; adopted", NULL);
        } else if (e == ERR_OK) {
            e = envelope_kek_create(st, 1);
        }
        if (e == ERR_OK) {
            e = envelope_current_put(st, 1);
        }
        if (e == ERR_OK) {
            pthread_mutex_lock(&env->cache_mu);
            env->current = 1;
            pthread_mutex_unlock(&env->cache_mu);
        }
        envelope_kst_drop(env);
    }
    pthread_rwlock_unlock(&env->kek_rw);
    pthread_mutex_unlock(&env->rot_mu);
    return e;
}

/* ---- DEKs ------------------------------------------------------------------------- */

static enum err envelope_dek_key(const char *tenant, char *out, size_t size)
{
    int n = snprintf(out, size, "tenants/%s/dek", tenant);
    return n > 0 && (size_t)n < size ? ERR_OK : ERR_TOOBIG;
}

static enum err envelope_dek_ad(const char *tenant, int64_t kek_version, char *out, size_t size)
{
    /* "dek|" cannot collide with a key version's AD: tenant names have no '|'. */
    int n = snprintf(out, size, "dek|%s|%" PRId64, tenant, kek_version);
    return n > 0 && (size_t)n < size ? ERR_OK : ERR_TOOBIG;
}

/* Unwraps a DEK record; caller holds kek_rw. */
static enum err envelope_dek_unwrap(struct envelope *env, struct storage *st, const char *tenant,
                                    const json_t *rec, int64_t *ret_kek_version,
                                    struct secret **ret_dek)
{
    json_t *jv = json_object_get(rec, "kek_version");
    const char *wrapped = json_string_value(json_object_get(rec, "wrapped"));
    if (!json_is_integer(jv) || wrapped == NULL) {
        return ERR_PROTO;
    }
    int64_t kv = json_integer_value(jv);
    char ad[128];
    enum err e = envelope_dek_ad(tenant, kv, ad, sizeof(ad));
    if (e != ERR_OK) {
        return e;
    }
    unsigned char *ct = NULL;
    size_t ct_len = 0;
    e = envelope_b64_decode(wrapped, &ct, &ct_len);
    if (e != ERR_OK) {
        return ERR_PROTO;
    }
    struct secret *kek = NULL;
    e = envelope_kek_get(env, st, kv, &kek);
    if (e == ERR_NOTFOUND) {
        /*
         * The data key is there but the KEK it names is not: storage is
         * inconsistent (a partial restore, or a performance standby whose
         * replica saw a rotation's prune before its rewrap). That is not "no
         * data key": ERR_NOTFOUND would read as a deleted tenant to the
         * callers (creds answer 404 and agents cache it, a usage batch is
         * refused and dropped). A storage error is a 500: callers retry.
         */
        char ver[24];
        (void)snprintf(ver, sizeof(ver), "%" PRId64, kv);
        log_kv(LOGL_ERROR, "KEK version named by the tenant's data key is missing from storage",
               "tenant", tenant, "kek_version", ver, NULL);
        e = ERR_STORAGE;
    }
    if (e != ERR_OK) {
        goto out_free_ct;
    }
    struct secret *dek = NULL;
    e = envelope_open(kek, ad, strlen(ad), ct, ct_len, &dek);
    secret_free(&kek);
    if (e != ERR_OK) {
        goto out_free_ct;
    }
    if (dek->len != ENVELOPE_KEY_LEN) {
        secret_free(&dek);
        e = ERR_PROTO;
        goto out_free_ct;
    }
    *ret_kek_version = kv;
    *ret_dek = dek;
out_free_ct:
    free(ct);
    return e;
}

/* Wraps dek with KEK `kv` and stores the record; caller holds kek_rw. */
static enum err envelope_dek_store(struct envelope *env, struct storage *st, const char *tenant,
                                   const struct secret *dek, int64_t kv, const char *created_at)
{
    char ad[128], key[STORAGE_MAX_KEY];
    enum err e = envelope_dek_ad(tenant, kv, ad, sizeof(ad));
    if (e == ERR_OK) {
        e = envelope_dek_key(tenant, key, sizeof(key));
    }
    if (e != ERR_OK) {
        return e;
    }
    struct secret *kek = NULL;
    e = envelope_kek_get(env, st, kv, &kek);
    if (e != ERR_OK) {
        return e;
    }
    unsigned char *ct = NULL;
    size_t ct_len = 0;
    e = envelope_seal(kek, ad, strlen(ad), dek->data, dek->len, &ct, &ct_len);
    secret_free(&kek);
    if (e != ERR_OK) {
        return e;
    }
    char *b64 = NULL;
    e = envelope_b64_encode(ct, ct_len, &b64);
    free(ct);
    if (e != ERR_OK) {
        return e;
    }
    json_t *rec = json_pack("{sIss}", "kek_version", (json_int_t)kv, "wrapped", b64);
    free(b64);
    if (rec == NULL) {
        return ERR_NOMEM;
    }
    if (created_at != NULL) {
        json_object_set_new(rec, "created_at", json_string(created_at));
    }
    e = storage_put_json(st, key, rec, false);
    json_decref(rec);
    return e;
}

static void envelope_now(char *out, size_t size)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void envelope_dek_cache_put(struct envelope *env, const char *tenant,
                                   const struct secret *dek, uint64_t gen)
{
    struct envelope_dek_entry *ne = malloc(sizeof(*ne));
    if (ne == NULL) {
        return;
    }
    ne->dek = secret_from(dek->data, dek->len);
    if (ne->dek == NULL) {
        free(ne); /* the secure heap is full: an uncached DEK is still correct */
        return;
    }
    snprintf(ne->tenant, sizeof(ne->tenant), "%s", tenant);
    pthread_mutex_lock(&env->cache_mu);
    if (gen != env->gen || cache_doubts_has(env->dek_doubt, tenant)) {
        goto out_unlock; /* invalidated (shred, rotation on another node) while we read */
    }
    size_t h = envelope_hash(tenant);
    for (struct envelope_dek_entry *e = env->dek[h]; e != NULL; e = e->next) {
        if (strcmp(e->tenant, tenant) == 0) {
            goto out_unlock;
        }
    }
    if (env->n_dek >= ENVELOPE_DEK_CACHE_MAX) {
        envelope_dek_clear_locked(env);
        env->gen--; /* our own clear must not stop this insert */
    }
    ne->next = env->dek[h];
    env->dek[h] = ne;
    env->n_dek++;
    ne = NULL;
out_unlock:
    pthread_mutex_unlock(&env->cache_mu);
    if (ne != NULL) {
        secret_free(&ne->dek);
        free(ne);
    }
}

enum err envelope_tenant_dek(struct envelope *env, struct storage *st, const char *tenant,
                             bool create, struct secret **ret_dek, bool *ret_created)
{
    if (env == NULL || tenant == NULL || ret_dek == NULL || strlen(tenant) >= 64) {
        return ERR_INVAL;
    }
    struct secret *dek = NULL;
    bool doubt = cache_doubts_has(env->dek_doubt, tenant); /* a shred that may land later */
    pthread_mutex_lock(&env->cache_mu);
    uint64_t gen = env->gen;
    for (struct envelope_dek_entry *e = doubt ? NULL : env->dek[envelope_hash(tenant)]; e != NULL;
         e = e->next) {
        if (strcmp(e->tenant, tenant) == 0) {
            dek = secret_from(e->dek->data, e->dek->len);
            break;
        }
    }
    pthread_mutex_unlock(&env->cache_mu);
    if (dek != NULL) {
        *ret_dek = dek;
        if (ret_created != NULL) {
            *ret_created = false;
        }
        return ERR_OK;
    }

    bool created = false;
    char key[STORAGE_MAX_KEY];
    enum err e = envelope_dek_key(tenant, key, sizeof(key));
    if (e != ERR_OK) {
        return e;
    }
    pool_rwlock_rdlock(&env->kek_rw);
    json_t *rec = NULL;
    int64_t kv = 0;
    e = storage_get_json(st, key, &rec);
    if (e == ERR_OK) {
        e = envelope_dek_unwrap(env, st, tenant, rec, &kv, &dek);
        json_decref(rec);
    } else if (e == ERR_NOTFOUND && create) {
        e = envelope_current_load(env, st, &kv);
        if (e == ERR_OK && kv == 0) {
            e = ERR_CONFIG; /* not initialized: no KEK */
        }
        if (e == ERR_OK) {
            dek = secret_new(ENVELOPE_KEY_LEN);
            e = dek == NULL ? ERR_NOMEM : ERR_OK;
        }
        if (e == ERR_OK && RAND_priv_bytes(dek->data, ENVELOPE_KEY_LEN) != 1) {
            e = ERR_CRYPTO;
        }
        if (e == ERR_OK) {
            char now[32];
            envelope_now(now, sizeof(now));
            e = envelope_dek_store(env, st, tenant, dek, kv, now);
            created = e == ERR_OK;
        }
        if (e != ERR_OK) {
            secret_free(&dek);
        }
    }
    pthread_rwlock_unlock(&env->kek_rw);
    if (e != ERR_OK) {
        return e;
    }
    envelope_dek_cache_put(env, tenant, dek, gen);
    *ret_dek = dek;
    if (ret_created != NULL) {
        *ret_created = created;
    }
    return ERR_OK;
}

enum err envelope_tenant_shred(struct envelope *env, struct storage *st, const char *tenant)
{
    if (env == NULL || tenant == NULL || strlen(tenant) >= 64) {
        return ERR_INVAL;
    }
    char key[STORAGE_MAX_KEY];
    enum err e = envelope_dek_key(tenant, key, sizeof(key));
    if (e != ERR_OK) {
        return e;
    }
    pthread_mutex_lock(&env->cache_mu);
    envelope_dek_drop_locked(env, tenant);
    pthread_mutex_unlock(&env->cache_mu);
    e = storage_delete(st, key);
    if (cache_write_may_land(e)) {
        cache_doubts_add(env->dek_doubt, tenant); /* it may land later: before the drop */
    }
    /* Again: a reader that fetched the record before the delete must not re-cache it. */
    pthread_mutex_lock(&env->cache_mu);
    envelope_dek_drop_locked(env, tenant);
    pthread_mutex_unlock(&env->cache_mu);
    return e == ERR_NOTFOUND ? ERR_OK : e;
}

/* ---- rotation ---------------------------------------------------------------------- */

enum envelope_rewrap {
    ENVELOPE_REWRAPPED, /* was wrapped by another version, now by nv */
    ENVELOPE_CURRENT,   /* already wrapped by nv: left alone */
    ENVELOPE_NO_DEK,    /* no DEK: a tenant with settings only, or shredded meanwhile */
};

static enum err envelope_rewrap_one(struct envelope *env, struct storage *st, const char *tenant,
                                    int64_t nv, enum envelope_rewrap *ret)
{
    char key[STORAGE_MAX_KEY];
    enum err e = envelope_dek_key(tenant, key, sizeof(key));
    if (e != ERR_OK) {
        return e;
    }
    json_t *rec = NULL;
    e = storage_get_json(st, key, &rec);
    if (e == ERR_NOTFOUND) {
        *ret = ENVELOPE_NO_DEK;
        return ERR_OK;
    }
    if (e != ERR_OK) {
        return e;
    }
    /*
     * The record names the version that wraps it, so a DEK already on nv
     * (created after the switch, or rewrapped by the call this one resumes)
     * costs this one read and no unwrap.
     */
    json_t *jv = json_object_get(rec, "kek_version");
    if (json_is_integer(jv) && json_integer_value(jv) == nv) {
        json_decref(rec);
        *ret = ENVELOPE_CURRENT;
        return ERR_OK;
    }
    struct secret *dek = NULL;
    int64_t old = 0;
    pool_rwlock_rdlock(&env->kek_rw);
    e = envelope_dek_unwrap(env, st, tenant, rec, &old, &dek);
    if (e == ERR_OK) {
        const char *created = json_string_value(json_object_get(rec, "created_at"));
        e = envelope_dek_store(env, st, tenant, dek, nv, created);
    }
    pthread_rwlock_unlock(&env->kek_rw);
    secret_free(&dek);
    json_decref(rec);
    *ret = ENVELOPE_REWRAPPED;
    return e;
}

/* A KEK version under "kek/" (the part after the prefix), or 0 ("current", anything else). */
static int64_t envelope_kek_listed_version(const char *name)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(name, &end, 10);
    if (errno != 0 || end == name || *end != '\0' || v <= 0) {
        return 0;
    }
    return (int64_t)v;
}

static int envelope_version_cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Every KEK version stored under "kek/", ascending; *ret_versions is malloc'd (NULL if none). */
static enum err envelope_kek_list(struct storage *st, int64_t **ret_versions, size_t *ret_n)
{
    char **keys = NULL;
    size_t n = 0;
    enum err e = storage_list(st, ENVELOPE_KEK_PREFIX, &keys, &n);
    if (e != ERR_OK) {
        return e;
    }
    int64_t *versions = NULL;
    size_t nv = 0;
    if (n > 0) {
        versions = calloc(n, sizeof(*versions));
        if (versions == NULL) {
            storage_keys_free(keys, n);
            return ERR_NOMEM;
        }
    }
    for (size_t i = 0; i < n; i++) {
        int64_t v = envelope_kek_listed_version(keys[i]);
        if (v > 0) {
            versions[nv++] = v;
        }
    }
    storage_keys_free(keys, n);
    if (nv == 0) {
        free(versions);
        versions = NULL;
    } else {
        qsort(versions, nv, sizeof(*versions), envelope_version_cmp);
    }
    *ret_versions = versions;
    *ret_n = nv;
    return ERR_OK;
}

/*
 * The one definition of an incomplete rotation (envelope_rotate resumes on it,
 * `config` read reports it): a stored KEK version older than cur. Only a
 * rotation that has not completed leaves one: a DEK may still be wrapped by it
 * (cut before its tenant was rewrapped) or not (cut after the last rewrap, or
 * a failed prune). Versions above cur (created by a rotation cut before its
 * switch) wrap nothing and do not count: the next new rotation skips and
 * prunes them.
 */
static bool envelope_kek_incomplete(const int64_t *versions, size_t n, int64_t cur)
{
    return cur > 0 && n > 0 && versions[0] < cur; /* ascending */
}

/* Whether storage holds a KEK version older than cur (envelope_kek_incomplete). */
static enum err envelope_kek_older(struct storage *st, int64_t cur, bool *ret)
{
    int64_t *versions = NULL;
    size_t n = 0;
    enum err e = envelope_kek_list(st, &versions, &n);
    if (e != ERR_OK) {
        return e;
    }
    *ret = envelope_kek_incomplete(versions, n, cur);
    free(versions);
    return ERR_OK;
}

static int64_t envelope_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A deep copy of src into *ret (versions malloc'd); *ret is written only on success. */
static enum err envelope_kek_state_copy(const struct envelope_kek_state *src,
                                        struct envelope_kek_state *ret)
{
    struct envelope_kek_state copy = *src;
    copy.versions = NULL;
    if (src->n_versions > 0) {
        copy.versions = malloc(src->n_versions * sizeof(*copy.versions));
        if (copy.versions == NULL) {
            return ERR_NOMEM;
        }
        memcpy(copy.versions, src->versions, src->n_versions * sizeof(*copy.versions));
    }
    *ret = copy;
    return ERR_OK;
}

/*
 * kek/current and the "kek/" listing, both from storage (not from this node's
 * cached current version: resume reads storage too), under the read side of
 * kek_rw: a rotation switches the version and prunes under the write side,
 * so the two are one state, never a switch seen without its older version or
 * the reverse. A version being created before its switch is above current and
 * does not count.
 */
static enum err envelope_kek_state_read(struct envelope *env, struct storage *st,
                                        struct envelope_kek_state *ret)
{
    int64_t cur = 0;
    int64_t *versions = NULL;
    size_t n = 0;
    pool_rwlock_rdlock(&env->kek_rw);
    enum err e = envelope_current_read(st, &cur);
    if (e == ERR_OK) {
        e = envelope_kek_list(st, &versions, &n);
    }
    pthread_rwlock_unlock(&env->kek_rw);
    if (e != ERR_OK) {
        return e;
    }
    *ret = (struct envelope_kek_state){.current = cur,
                                       .versions = versions,
                                       .n_versions = n,
                                       .rotation_incomplete =
                                           envelope_kek_incomplete(versions, n, cur)};
    return ERR_OK;
}

enum err envelope_kek_state(struct envelope *env, struct storage *st,
                            struct envelope_kek_state *ret)
{
    if (env == NULL || st == NULL || ret == NULL) {
        return ERR_INVAL;
    }
    /*
     * Served from memory while nothing under "kek/" changed (every change
     * drops it, ours and other nodes' through InvalidateKey) and for at most
     * the maximum age: a write reported failed can still land after the drop.
     */
    enum err e = ERR_OK;
    pthread_mutex_lock(&env->cache_mu);
    uint64_t gen = env->kst_gen;
    bool hit = env->kst_ok && envelope_now_ms() - env->kst_at_ms <
                                  __atomic_load_n(&envelope_kst_max_age_ms, __ATOMIC_RELAXED);
    if (hit) {
        e = envelope_kek_state_copy(&env->kst, ret);
    }
    pthread_mutex_unlock(&env->cache_mu);
    if (hit) {
        return e;
    }
    struct envelope_kek_state fresh = {0};
    e = envelope_kek_state_read(env, st, &fresh);
    if (e != ERR_OK) {
        return e;
    }
    struct envelope_kek_state keep = {0};
    if (envelope_kek_state_copy(&fresh, &keep) == ERR_OK) {
        pthread_mutex_lock(&env->cache_mu);
        if (gen == env->kst_gen) { /* nothing changed under "kek/" since we started */
            envelope_kek_state_done(&env->kst);
            env->kst = keep;
            env->kst_ok = true;
            env->kst_at_ms = envelope_now_ms();
            keep = (struct envelope_kek_state){0};
        }
        pthread_mutex_unlock(&env->cache_mu);
        envelope_kek_state_done(&keep);
    }
    *ret = fresh;
    return ERR_OK;
}

void envelope_set_kek_state_max_age_ms(long ms)
{
    __atomic_store_n(&envelope_kst_max_age_ms, ms, __ATOMIC_RELAXED);
}

void envelope_kek_state_done(struct envelope_kek_state *state)
{
    if (state == NULL) {
        return;
    }
    free(state->versions);
    state->versions = NULL;
    state->n_versions = 0;
}

/* Removes every KEK version below keep; caller holds kek_rw for writing. */
static enum err envelope_kek_prune(struct envelope *env, struct storage *st, int64_t keep)
{
    char **keys = NULL;
    size_t n = 0;
    enum err e = storage_list(st, ENVELOPE_KEK_PREFIX, &keys, &n);
    if (e != ERR_OK) {
        return e;
    }
    for (size_t i = 0; i < n; i++) {
        int64_t v = envelope_kek_listed_version(keys[i]);
        if (v <= 0 || v >= keep) {
            continue; /* "current", or a version still in use */
        }
        char key[64];
        if (envelope_kek_key(v, key, sizeof(key)) == ERR_OK) {
            enum err de = storage_delete(st, key);
            if (de != ERR_OK && de != ERR_NOTFOUND) {
                e = de;
            }
        }
        pthread_mutex_lock(&env->cache_mu);
        for (size_t j = 0; j < ENVELOPE_KEK_CACHE_MAX; j++) {
            if (env->kek[j].version == v) {
                secret_free(&env->kek[j].kek);
                env->kek[j].version = 0;
            }
        }
        pthread_mutex_unlock(&env->cache_mu);
    }
    storage_keys_free(keys, n);
    return e;
}

enum err envelope_rotate(struct envelope *env, struct storage *st, void (*each_lock)(void *),
                         void (*each_unlock)(void *), void *lock_arg,
                         struct envelope_rotate_result *ret)
{
    if (env == NULL || st == NULL || ret == NULL) {
        return ERR_INVAL;
    }
    pool_mutex_lock(&env->rot_mu);
    int64_t cur = 0, rewrapped = 0, current = 0;
    size_t failed = 0;
    /*
     * The current version is read from storage, not from the cache: another
     * node (or a rotation whose kek/current write failed here but landed) may
     * have moved it on.
     */
    pthread_mutex_lock(&env->cache_mu);
    env->current = 0;
    pthread_mutex_unlock(&env->cache_mu);
    enum err e = envelope_current_load(env, st, &cur);
    if (e != ERR_OK) {
        goto out_unlock;
    }
    /*
     * An older version still in storage: the previous rotation did not
     * complete (its request's deadline, a storage error, a crash), so this one
     * resumes it with the current version instead of adding a version per
     * attempt and starting over.
     */
    bool resume = false;
    if (cur > 0) {
        e = envelope_kek_older(st, cur, &resume);
        if (e != ERR_OK) {
            goto out_unlock;
        }
    }
    int64_t nv = cur;
    if (resume) {
        char ver[24];
        (void)snprintf(ver, sizeof(ver), "%" PRId64, cur);
        log_kv(LOGL_INFO, "rotate-root resumes an incomplete rotation: no new KEK version",
               "version", ver, NULL);
    } else {
        e = envelope_kek_next_free(st, cur, &nv);
        if (e == ERR_OK) {
            e = envelope_kek_create(st, nv);
            envelope_kst_drop(env);
        }
        if (e != ERR_OK) {
            goto out_unlock;
        }
    }
    /*
     * Switch under the writer side and the caller's tenant lock: a DEK being
     * created right now either finishes before the switch (and is listed
     * below) or starts after it (and uses nv). A resumed rotation writes
     * nothing here but takes the same locks, so that a DEK created with a
     * version this node had cached (a kek/current write reported failed that
     * landed) is in storage before the listing too.
     */
    if (each_lock != NULL) {
        each_lock(lock_arg);
    }
    pool_rwlock_wrlock(&env->kek_rw);
    if (!resume) {
        e = envelope_current_put(st, nv);
        envelope_kst_drop(env);
    }
    if (e == ERR_OK) {
        pthread_mutex_lock(&env->cache_mu);
        env->current = nv;
        pthread_mutex_unlock(&env->cache_mu);
    }
    pthread_rwlock_unlock(&env->kek_rw);
    if (each_unlock != NULL) {
        each_unlock(lock_arg);
    }
    if (e != ERR_OK) {
        goto out_unlock;
    }

    /*
     * Storage.List has no paging in our storage API, so the tenant names come
     * in one list; the DEKs themselves are handled one at a time and wiped.
     */
    char **names = NULL;
    size_t n = 0;
    e = storage_list(st, "tenants/", &names, &n);
    if (e != ERR_OK) {
        goto out_unlock;
    }
    char ver[24];
    (void)snprintf(ver, sizeof(ver), "%" PRId64, nv);
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(names[i]);
        if (len < 2 || names[i][len - 1] != '/' || len - 1 >= 64) {
            continue;
        }
        names[i][len - 1] = '\0';
        enum envelope_rewrap what = ENVELOPE_NO_DEK;
        if (each_lock != NULL) {
            each_lock(lock_arg);
        }
        enum err re = envelope_rewrap_one(env, st, names[i], nv, &what);
        if (each_unlock != NULL) {
            each_unlock(lock_arg);
        }
        if (re == ERR_TIMEOUT || re == ERR_UNAVAIL) {
            /*
             * Storage is out of reach, or the request that runs this rotation
             * is over (its deadline passed or Vault cancelled it: every later
             * call would fail at once, storage_grpc.h). Stop here instead of
             * failing each remaining tenant in turn; this tenant and the rest
             * keep their DEK wrapped by a KEK that stays (nothing is pruned),
             * and the next rotate-root resumes from the current version.
             */
            char left[24];
            (void)snprintf(left, sizeof(left), "%zu", n - i);
            log_kv(LOGL_ERROR,
                   "rotate-root stopped: storage unreachable or the request ended; "
                   "config/rotate-root again resumes it",
                   "tenant", names[i], "error", err_name(re), "version", ver, "tenants_left", left,
                   NULL);
            failed++;
            e = re;
            break;
        }
        if (re != ERR_OK) {
            log_kv(LOGL_ERROR, "rotate-root: cannot rewrap the tenant's data key", "tenant",
                   names[i], "error", err_name(re), NULL);
            failed++;
            e = re;
        } else if (what == ENVELOPE_REWRAPPED) {
            rewrapped++;
        } else if (what == ENVELOPE_CURRENT) {
            current++;
        }
    }
    storage_keys_free(names, n);
    if (failed > 0) {
        char nfailed[24];
        (void)snprintf(nfailed, sizeof(nfailed), "%zu", failed);
        log_kv(LOGL_ERROR,
               "rotate-root incomplete: old KEK versions kept; config/rotate-root again resumes it",
               "version", ver, "failed_tenants", nfailed, NULL);
    }
    if (failed == 0) {
        /*
         * Every DEK listed is on nv now, and every DEK created since the
         * switch above uses nv, so nothing uses a version below it. Readers
         * hold kek_rw while unwrapping: none is half-way through an old KEK.
         */
        pool_rwlock_wrlock(&env->kek_rw);
        e = envelope_kek_prune(env, st, nv);
        envelope_kst_drop(env);
        pthread_rwlock_unlock(&env->kek_rw);
    }
    if (e == ERR_OK) {
        *ret = (struct envelope_rotate_result){
            .version = nv, .rewrapped = rewrapped, .already_current = current, .resumed = resume};
    }
out_unlock:
    pthread_mutex_unlock(&env->rot_mu);
    return e;
}
