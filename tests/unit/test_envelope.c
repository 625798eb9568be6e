/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for plugin/envelope.c: the AEAD primitives (round trip, wrong
 * key, every kind of tampering, associated data binding, sizes at and past
 * their limits, base64) and the KEK/DEK state (creation, caching, shred,
 * rotation keeping everything readable, records moved between tenants).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/secret.h"
#include "plugin/envelope.h"
#include "plugin/storage.h"

static int group_setup(void **state)
{
    return secret_heap_init((size_t)1024 * 1024) == ERR_OK ? 0 : -1;
}

static struct secret *key_of(unsigned char fill)
{
    struct secret *k = secret_new(ENVELOPE_KEY_LEN);
    assert_non_null(k);
    for (size_t i = 0; i < k->len; i++) {
        k->data[i] = (unsigned char)(fill + i);
    }
    return k;
}

/* envelope_rotate with no tenant lock; the new or resumed version and the DEKs rewrapped. */
static enum err rotate(struct envelope *env, struct storage *st, int64_t *ret_version,
                       int64_t *ret_rewrapped)
{
    struct envelope_rotate_result r = {0};
    enum err e = envelope_rotate(env, st, NULL, NULL, NULL, &r);
    *ret_version = r.version;
    *ret_rewrapped = r.rewrapped;
    return e;
}

static const char canary[] = "sk-CANARY-envelope-0123456789abcdefghijklmnop";

static void test_round_trip(void **state)
{
    struct secret *k = key_of(1);
    unsigned char *ct = NULL;
    size_t ct_len = 0;
    const char *ad = "acme|openai|production|1";
    assert_int_equal(envelope_seal(k, ad, strlen(ad), (const unsigned char *)canary, strlen(canary),
                                   &ct, &ct_len),
                     ERR_OK);
    assert_int_equal(ct_len, strlen(canary) + ENVELOPE_OVERHEAD);
    assert_null(memmem(ct, ct_len, canary, strlen(canary)));
    struct secret *pt = NULL;
    assert_int_equal(envelope_open(k, ad, strlen(ad), ct, ct_len, &pt), ERR_OK);
    assert_int_equal(pt->len, strlen(canary));
    assert_memory_equal(pt->data, canary, pt->len);
    assert_int_equal(pt->data[pt->len], '\0');
    secret_free(&pt);
    assert_null(pt);

    /* Two seals of the same plaintext differ: the nonce is fresh each time. */
    unsigned char *ct2 = NULL;
    size_t ct2_len = 0;
    assert_int_equal(envelope_seal(k, ad, strlen(ad), (const unsigned char *)canary, strlen(canary),
                                   &ct2, &ct2_len),
                     ERR_OK);
    assert_int_equal(ct2_len, ct_len);
    assert_memory_not_equal(ct + 1, ct2 + 1, ENVELOPE_NONCE_LEN);
    free(ct2);
    free(ct);
    secret_free(&k);
}

static void test_wrong_key(void **state)
{
    struct secret *k = key_of(1), *other = key_of(2);
    unsigned char *ct = NULL;
    size_t ct_len = 0;
    assert_int_equal(
        envelope_seal(k, "a", 1, (const unsigned char *)canary, strlen(canary), &ct, &ct_len),
        ERR_OK);
    struct secret *pt = NULL;
    assert_int_equal(envelope_open(other, "a", 1, ct, ct_len, &pt), ERR_CRYPTO);
    assert_null(pt);
    free(ct);
    secret_free(&k);
    secret_free(&other);
}

static void test_tampering(void **state)
{
    struct secret *k = key_of(7);
    unsigned char *ct = NULL;
    size_t ct_len = 0;
    assert_int_equal(
        envelope_seal(k, "ad", 2, (const unsigned char *)canary, strlen(canary), &ct, &ct_len),
        ERR_OK);
    /* Format byte, first/last nonce byte, first/last body byte, first/last tag byte. */
    size_t body = 1 + ENVELOPE_NONCE_LEN, tag = ct_len - ENVELOPE_TAG_LEN;
    size_t where[] = {0, 1, body - 1, body, tag - 1, tag, ct_len - 1};
    for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
        ct[where[i]] ^= 0x01;
        struct secret *pt = NULL;
        assert_int_equal(envelope_open(k, "ad", 2, ct, ct_len, &pt), ERR_CRYPTO);
        assert_null(pt);
        ct[where[i]] ^= 0x01;
    }
    /* Truncated: one byte short, and shorter than the overhead. */
    struct secret *pt = NULL;
    assert_int_equal(envelope_open(k, "ad", 2, ct, ct_len - 1, &pt), ERR_CRYPTO);
    assert_int_equal(envelope_open(k, "ad", 2, ct, ENVELOPE_OVERHEAD - 1, &pt), ERR_CRYPTO);
    /* Wrong or missing associated data. */
    assert_int_equal(envelope_open(k, "ae", 2, ct, ct_len, &pt), ERR_CRYPTO);
    assert_int_equal(envelope_open(k, NULL, 0, ct, ct_len, &pt), ERR_CRYPTO);
    assert_null(pt);
    /* Untouched it still opens. */
    assert_int_equal(envelope_open(k, "ad", 2, ct, ct_len, &pt), ERR_OK);
    secret_free(&pt);
    free(ct);
    secret_free(&k);
}

/* A ciphertext sealed for one tenant/provider/key type/version opens for no other. */
static void test_ad_binding(void **state)
{
    struct secret *k = key_of(3);
    char ad[ENVELOPE_MAX_AD + 1];
    assert_int_equal(envelope_key_ad("acme", "openai", "production", 2, ad, sizeof(ad)), ERR_OK);
    assert_string_equal(ad, "acme|openai|production|2");
    unsigned char *ct = NULL;
    size_t ct_len = 0;
    assert_int_equal(envelope_seal(k, ad, strlen(ad), (const unsigned char *)canary, strlen(canary),
                                   &ct, &ct_len),
                     ERR_OK);
    struct {
        const char *t, *p, *kt;
        int64_t v;
    } moved[] = {
        {"globex", "openai", "production", 2}, {"acme", "anthropic", "production", 2},
        {"acme", "openai", "staging", 2},      {"acme", "openai", "production", 1},
        {"acme", "openai", "production", 3},   {"acmeopenai", "", "production", 2},
    };
    for (size_t i = 0; i < sizeof(moved) / sizeof(moved[0]); i++) {
        char other[ENVELOPE_MAX_AD + 1];
        assert_int_equal(
            envelope_key_ad(moved[i].t, moved[i].p, moved[i].kt, moved[i].v, other, sizeof(other)),
            ERR_OK);
        struct secret *pt = NULL;
        assert_int_equal(envelope_open(k, other, strlen(other), ct, ct_len, &pt), ERR_CRYPTO);
    }
    free(ct);
    secret_free(&k);
}

static void test_limits(void **state)
{
    struct secret *k = key_of(9);
    unsigned char *ct = NULL;
    size_t ct_len = 0;
    /* Plaintext at the limit and one past it. */
    unsigned char *big = malloc(ENVELOPE_MAX_PLAINTEXT + 1);
    assert_non_null(big);
    memset(big, 'x', ENVELOPE_MAX_PLAINTEXT + 1);
    assert_int_equal(envelope_seal(k, NULL, 0, big, ENVELOPE_MAX_PLAINTEXT, &ct, &ct_len), ERR_OK);
    struct secret *pt = NULL;
    assert_int_equal(envelope_open(k, NULL, 0, ct, ct_len, &pt), ERR_OK);
    assert_int_equal(pt->len, ENVELOPE_MAX_PLAINTEXT);
    secret_free(&pt);
    free(ct);
    ct = NULL;
    assert_int_equal(envelope_seal(k, NULL, 0, big, ENVELOPE_MAX_PLAINTEXT + 1, &ct, &ct_len),
                     ERR_TOOBIG);
    assert_null(ct);
    /* A ciphertext longer than any we would make is refused before any work. */
    unsigned char *huge = calloc(1, ENVELOPE_MAX_PLAINTEXT + ENVELOPE_OVERHEAD + 1);
    assert_non_null(huge);
    huge[0] = 1;
    assert_int_equal(
        envelope_open(k, NULL, 0, huge, ENVELOPE_MAX_PLAINTEXT + ENVELOPE_OVERHEAD + 1, &pt),
        ERR_TOOBIG);
    free(huge);
    free(big);

    /* AD at the limit and one past it. */
    char ad[ENVELOPE_MAX_AD + 1];
    memset(ad, 'a', sizeof(ad));
    assert_int_equal(
        envelope_seal(k, ad, ENVELOPE_MAX_AD, (const unsigned char *)"k", 1, &ct, &ct_len), ERR_OK);
    assert_int_equal(envelope_open(k, ad, ENVELOPE_MAX_AD, ct, ct_len, &pt), ERR_OK);
    secret_free(&pt);
    free(ct);
    assert_int_equal(
        envelope_seal(k, ad, ENVELOPE_MAX_AD + 1, (const unsigned char *)"k", 1, &ct, &ct_len),
        ERR_TOOBIG);

    /* An empty plaintext is fine (the tag still authenticates the AD). */
    assert_int_equal(envelope_seal(k, "x", 1, NULL, 0, &ct, &ct_len), ERR_OK);
    assert_int_equal(ct_len, ENVELOPE_OVERHEAD);
    assert_int_equal(envelope_open(k, "x", 1, ct, ct_len, &pt), ERR_OK);
    assert_int_equal(pt->len, 0);
    secret_free(&pt);
    assert_int_equal(envelope_open(k, "y", 1, ct, ct_len, &pt), ERR_CRYPTO);
    free(ct);
    secret_free(&k);

    /* Keys of the wrong size. */
    struct secret *short_key = secret_new(ENVELOPE_KEY_LEN - 1);
    struct secret *long_key = secret_new(ENVELOPE_KEY_LEN + 1);
    assert_int_equal(envelope_seal(short_key, NULL, 0, (const unsigned char *)"k", 1, &ct, &ct_len),
                     ERR_INVAL);
    assert_int_equal(envelope_seal(long_key, NULL, 0, (const unsigned char *)"k", 1, &ct, &ct_len),
                     ERR_INVAL);
    assert_int_equal(envelope_seal(NULL, NULL, 0, (const unsigned char *)"k", 1, &ct, &ct_len),
                     ERR_INVAL);
    secret_free(&short_key);
    secret_free(&long_key);

    /* AD text that does not fit its buffer. */
    char small[8];
    assert_int_equal(envelope_key_ad("acme", "openai", "production", 1, small, sizeof(small)),
                     ERR_TOOBIG);
}

static void test_b64(void **state)
{
    const unsigned char in[] = {0x00, 0xff, 0x10, 0x20, 0x30};
    for (size_t n = 0; n <= sizeof(in); n++) {
        char *enc = NULL;
        assert_int_equal(envelope_b64_encode(in, n, &enc), ERR_OK);
        unsigned char *dec = NULL;
        size_t dec_len = 0;
        assert_int_equal(envelope_b64_decode(enc, &dec, &dec_len), ERR_OK);
        assert_int_equal(dec_len, n);
        if (n > 0) {
            assert_memory_equal(dec, in, n);
        }
        free(dec);
        free(enc);
    }
    const char *bad[] = {"abc",  "a===", "ab!d",     "abcd=", "@@@@",
                         "ab=c", "=abc", "ab==abcd", "sA1=",  "sB=="};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        unsigned char *dec = NULL;
        size_t dec_len = 0;
        assert_int_equal(envelope_b64_decode(bad[i], &dec, &dec_len), ERR_INVAL);
    }
}

/* ---- state ------------------------------------------------------------------------- */

struct scan {
    const char *needle;
    bool found;
};

static void scan_fn(const char *key, const unsigned char *val, size_t len, void *arg)
{
    struct scan *s = arg;
    if (memmem(val, len, s->needle, strlen(s->needle)) != NULL) {
        s->found = true;
    }
}

static struct secret *must_dek(struct envelope *env, struct storage *st, const char *t, bool create)
{
    struct secret *dek = NULL;
    assert_int_equal(envelope_tenant_dek(env, st, t, create, &dek, NULL), ERR_OK);
    assert_non_null(dek);
    assert_int_equal(dek->len, ENVELOPE_KEY_LEN);
    return dek;
}

static void test_state_lifecycle(void **state)
{
    struct storage *st = storage_mem_new();
    struct envelope *env = envelope_new();
    int64_t v = -1;
    assert_int_equal(envelope_kek_version(env, st, &v), ERR_OK);
    assert_int_equal(v, 0);
    assert_int_equal(envelope_initialize(env, st), ERR_OK);
    assert_int_equal(envelope_kek_version(env, st, &v), ERR_OK);
    assert_int_equal(v, 1);
    /* Initialize again (a reload) keeps the KEK. */
    assert_int_equal(envelope_initialize(env, st), ERR_OK);
    assert_int_equal(envelope_kek_version(env, st, &v), ERR_OK);
    assert_int_equal(v, 1);

    struct secret *dek = NULL;
    assert_int_equal(envelope_tenant_dek(env, st, "acme", false, &dek, NULL), ERR_NOTFOUND);
    struct secret *a = must_dek(env, st, "acme", true);
    struct secret *a2 = must_dek(env, st, "acme", false);
    assert_true(secret_equal(a, a2));
    struct secret *g = must_dek(env, st, "globex", true);
    assert_false(secret_equal(a, g));

    /* A fresh envelope (another node, a restart) unwraps the same DEK from storage. */
    struct envelope *env2 = envelope_new();
    struct secret *a3 = must_dek(env2, st, "acme", false);
    assert_true(secret_equal(a, a3));

    /* The unwrapped DEK never sits in storage. */
    char *b64 = NULL;
    assert_int_equal(envelope_b64_encode(a->data, a->len, &b64), ERR_OK);
    struct scan s = {.needle = b64};
    storage_mem_foreach(st, scan_fn, &s);
    assert_false(s.found);
    free(b64);

    /* Seal something with acme's DEK, rotate the KEK twice: everything still opens. */
    unsigned char *ct = NULL;
    size_t ct_len = 0;
    assert_int_equal(
        envelope_seal(a, "x", 1, (const unsigned char *)canary, strlen(canary), &ct, &ct_len),
        ERR_OK);
    int64_t rewrapped = 0;
    assert_int_equal(rotate(env, st, &v, &rewrapped), ERR_OK);
    assert_int_equal(v, 2);
    assert_int_equal(rewrapped, 2);
    /* KEK 1 is gone from storage: nothing uses it. */
    unsigned char *raw = NULL;
    size_t raw_len = 0;
    assert_int_equal(storage_get(st, "kek/1", &raw, &raw_len), ERR_NOTFOUND);
    assert_int_equal(storage_get(st, "kek/2", &raw, &raw_len), ERR_OK);
    free(raw);
    /* The other node still has KEK 1 in its cache only if it never dropped it; after the
       InvalidateKey Vault sends, it reads the rewrapped record with KEK 2. */
    envelope_invalidate(env2, "kek/current");
    envelope_invalidate(env2, "tenants/acme/dek");
    struct secret *a4 = must_dek(env2, st, "acme", false);
    assert_true(secret_equal(a, a4));
    struct secret *pt = NULL;
    assert_int_equal(envelope_open(a4, "x", 1, ct, ct_len, &pt), ERR_OK);
    assert_memory_equal(pt->data, canary, strlen(canary));
    secret_free(&pt);

    assert_int_equal(rotate(env, st, &v, &rewrapped), ERR_OK);
    assert_int_equal(v, 3);
    envelope_drop_all(env);
    struct secret *a5 = must_dek(env, st, "acme", false);
    assert_true(secret_equal(a, a5));

    /* Shred: the DEK is gone; a new one is different and the old ciphertext is dead. */
    assert_int_equal(envelope_tenant_shred(env, st, "acme"), ERR_OK);
    assert_int_equal(envelope_tenant_dek(env, st, "acme", false, &dek, NULL), ERR_NOTFOUND);
    struct secret *fresh = must_dek(env, st, "acme", true);
    assert_false(secret_equal(a, fresh));
    assert_int_equal(envelope_open(fresh, "x", 1, ct, ct_len, &pt), ERR_CRYPTO);
    /* globex is untouched. */
    struct secret *g2 = must_dek(env, st, "globex", false);
    assert_true(secret_equal(g, g2));

    free(ct);
    secret_free(&a);
    secret_free(&a2);
    secret_free(&a3);
    secret_free(&a4);
    secret_free(&a5);
    secret_free(&g);
    secret_free(&g2);
    secret_free(&fresh);
    envelope_free(env2);
    envelope_free(env);
    storage_mem_free(st);
}

/* A wrapped DEK record copied to another tenant does not unwrap there. */
static void test_dek_record_moved(void **state)
{
    struct storage *st = storage_mem_new();
    struct envelope *env = envelope_new();
    assert_int_equal(envelope_initialize(env, st), ERR_OK);
    struct secret *a = must_dek(env, st, "acme", true);
    unsigned char *raw = NULL;
    size_t len = 0;
    assert_int_equal(storage_get(st, "tenants/acme/dek", &raw, &len), ERR_OK);
    assert_int_equal(storage_put(st, "tenants/evil/dek", raw, len, false), ERR_OK);
    free(raw);
    struct secret *dek = NULL;
    assert_int_equal(envelope_tenant_dek(env, st, "evil", false, &dek, NULL), ERR_CRYPTO);
    assert_null(dek);
    /* A corrupt record is a protocol error, never a crash. */
    assert_int_equal(storage_put(st, "tenants/bad/dek", (const unsigned char *)"{}", 2, false),
                     ERR_OK);
    assert_int_equal(envelope_tenant_dek(env, st, "bad", false, &dek, NULL), ERR_PROTO);
    assert_int_equal(storage_put(st, "kek/1", (const unsigned char *)"short", 5, true), ERR_OK);
    envelope_drop_all(env);
    assert_int_equal(envelope_tenant_dek(env, st, "acme", false, &dek, NULL), ERR_PROTO);
    /* Bad arguments. */
    char longname[80];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(envelope_tenant_dek(env, st, longname, true, &dek, NULL), ERR_INVAL);
    secret_free(&a);
    envelope_free(env);
    storage_mem_free(st);
}

/* Whether a call created the DEK: only the one that stored it, never a cached or stored one. */
static void test_dek_created(void **state)
{
    struct storage *st = storage_mem_new();
    struct envelope *env = envelope_new();
    assert_int_equal(envelope_initialize(env, st), ERR_OK);
    struct secret *dek = NULL;
    bool created = true;
    assert_int_equal(envelope_tenant_dek(env, st, "acme", false, &dek, &created), ERR_NOTFOUND);
    assert_true(created); /* untouched on failure */
    created = false;
    assert_int_equal(envelope_tenant_dek(env, st, "acme", true, &dek, &created), ERR_OK);
    assert_true(created);
    secret_free(&dek);
    assert_int_equal(envelope_tenant_dek(env, st, "acme", true, &dek, &created), ERR_OK);
    assert_false(created); /* from the cache */
    secret_free(&dek);
    envelope_drop_all(env);
    created = true;
    assert_int_equal(envelope_tenant_dek(env, st, "acme", true, &dek, &created), ERR_OK);
    assert_false(created); /* from storage */
    secret_free(&dek);
    envelope_free(env);
    storage_mem_free(st);
}

/*
 * A rotation never overwrites a KEK version in storage: not when this node's
 * cached kek/current is stale (another node rotated and wrapped a data key with
 * the new version), nor when a version was left by a rotation that failed
 * after creating it.
 */
static void test_rotate_never_overwrites_kek(void **state)
{
    struct storage *st = storage_mem_new();
    struct envelope *env = envelope_new();
    struct envelope *env2 = envelope_new();
    assert_int_equal(envelope_initialize(env, st), ERR_OK);
    struct secret *a = must_dek(env, st, "acme", true);
    int64_t v = 0, rewrapped = 0;
    /* The other node rotates to 2 and creates globex's DEK under KEK 2; env's cache says 1. */
    assert_int_equal(rotate(env2, st, &v, &rewrapped), ERR_OK);
    assert_int_equal(v, 2);
    struct secret *g = must_dek(env2, st, "globex", true);
    assert_int_equal(rotate(env, st, &v, &rewrapped), ERR_OK);
    assert_int_equal(v, 3);
    assert_int_equal(rewrapped, 2);
    struct envelope *fresh = envelope_new();
    struct secret *a2 = must_dek(fresh, st, "acme", false);
    struct secret *g2 = must_dek(fresh, st, "globex", false);
    assert_true(secret_equal(a, a2));
    assert_true(secret_equal(g, g2));

    /* A version already in storage after the current one is skipped, then pruned. */
    static const unsigned char orphan[] = "left by a failed rotation";
    assert_int_equal(storage_put(st, "kek/4", orphan, sizeof(orphan), true), ERR_OK);
    assert_int_equal(rotate(env, st, &v, &rewrapped), ERR_OK);
    assert_int_equal(v, 5);
    unsigned char *raw = NULL;
    size_t raw_len = 0;
    assert_int_equal(storage_get(st, "kek/4", &raw, &raw_len), ERR_NOTFOUND);
    envelope_drop_all(fresh);
    struct secret *g3 = must_dek(fresh, st, "globex", false);
    assert_true(secret_equal(g, g3));

    secret_free(&a);
    secret_free(&a2);
    secret_free(&g);
    secret_free(&g2);
    secret_free(&g3);
    envelope_free(fresh);
    envelope_free(env2);
    envelope_free(env);
    storage_mem_free(st);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* envelope_kek_state into *ks (freed first), which must succeed. */
static void kek_state(struct envelope *env, struct storage *st, struct envelope_kek_state *ks)
{
    envelope_kek_state_done(ks);
    assert_int_equal(envelope_kek_state(env, st, ks), ERR_OK);
}

/*
 * envelope_kek_state: the stored versions in numeric order ("current" is not
 * one), and incomplete exactly when one is below the current version, as
 * envelope_rotate decides to resume: versions above it do not count. Kept in
 * memory until "kek/" changes (InvalidateKey, a rotation) or it is too old.
 */
static void test_kek_state(void **state)
{
    struct storage *st = storage_mem_new();
    struct storage down = {.ops = &storage_down_ops};
    struct envelope *env = envelope_new();
    struct envelope_kek_state ks = {0};
    kek_state(env, st, &ks);
    assert_int_equal(ks.current, 0); /* a new mount before Initialize */
    assert_int_equal(ks.n_versions, 0);
    assert_false(ks.rotation_incomplete);
    assert_int_equal(envelope_initialize(env, st), ERR_OK); /* drops what was kept */
    kek_state(env, st, &ks);
    assert_int_equal(ks.current, 1);
    assert_int_equal(ks.n_versions, 1);
    assert_int_equal(ks.versions[0], 1);
    assert_false(ks.rotation_incomplete);
    kek_state(env, &down, &ks); /* from memory: no storage call */
    assert_int_equal(ks.current, 1);
    assert_int_equal(ks.n_versions, 1);

    /* Versions above the current one (rotations cut before their switch): complete. */
    static const unsigned char orphan[] = "left by a rotation cut before its switch";
    assert_int_equal(storage_put(st, "kek/10", orphan, sizeof(orphan), true), ERR_OK);
    assert_int_equal(storage_put(st, "kek/2", orphan, sizeof(orphan), true), ERR_OK);
    kek_state(env, st, &ks);
    assert_int_equal(ks.n_versions, 1); /* not told yet */
    envelope_invalidate(env, "kek/2");
    kek_state(env, st, &ks);
    assert_int_equal(ks.n_versions, 3);
    assert_int_equal(ks.versions[0], 1);
    assert_int_equal(ks.versions[1], 2); /* numeric order, not the listing's "10" < "2" */
    assert_int_equal(ks.versions[2], 10);
    assert_false(ks.rotation_incomplete);

    /* The current version moves to 2 (another node): 1 is below it. */
    const char *cur2 = "{\"version\": 2}";
    assert_int_equal(
        storage_put(st, "kek/current", (const unsigned char *)cur2, strlen(cur2), true), ERR_OK);
    envelope_invalidate(env, "kek/current");
    kek_state(env, st, &ks);
    assert_int_equal(ks.current, 2);
    assert_int_equal(ks.n_versions, 3);
    assert_true(ks.rotation_incomplete);

    /* A change nobody told us of (a write that landed after its drop) shows after the max age. */
    assert_int_equal(storage_delete(st, "kek/1"), ERR_OK);
    envelope_set_kek_state_max_age_ms(50);
    kek_state(env, st, &ks);
    assert_true(ks.rotation_incomplete);
    sleep_ms(60);
    kek_state(env, st, &ks);
    assert_false(ks.rotation_incomplete);
    assert_int_equal(ks.n_versions, 2);
    envelope_set_kek_state_max_age_ms(ENVELOPE_KEK_STATE_MAX_AGE_MS);

    /* Storage down and nothing kept: the error, and *ret untouched. */
    envelope_drop_all(env);
    struct envelope_kek_state untouched = {.current = -7};
    assert_int_equal(envelope_kek_state(env, &down, &untouched), ERR_UNAVAIL);
    assert_int_equal(untouched.current, -7);
    envelope_kek_state_done(&ks);
    envelope_kek_state_done(&ks); /* twice, and on a zeroed state: a no-op */
    envelope_kek_state_done(NULL);
    assert_int_equal(envelope_kek_state(env, st, NULL), ERR_INVAL);

    envelope_free(env);
    storage_mem_free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),      cmocka_unit_test(test_wrong_key),
        cmocka_unit_test(test_tampering),       cmocka_unit_test(test_ad_binding),
        cmocka_unit_test(test_limits),          cmocka_unit_test(test_b64),
        cmocka_unit_test(test_state_lifecycle), cmocka_unit_test(test_dek_record_moved),
        cmocka_unit_test(test_dek_created),     cmocka_unit_test(test_rotate_never_overwrites_kek),
        cmocka_unit_test(test_kek_state),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
