/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for plugin/storage.c (argument checks, limits, JSON helpers) over
 * plugin/storage_mem.c (Vault-like List, overwrite, delete, concurrency).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/storage.h"

static int setup(void **state)
{
    *state = storage_mem_new();
    return *state != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    storage_mem_free(*state);
    return 0;
}

static void put_str(struct storage *st, const char *key, const char *val)
{
    assert_int_equal(storage_put(st, key, (const unsigned char *)val, strlen(val), false), ERR_OK);
}

static void test_get_put_overwrite_delete(void **state)
{
    struct storage *st = *state;
    unsigned char *v = NULL;
    size_t len = 0;
    assert_int_equal(storage_get(st, "a", &v, &len), ERR_NOTFOUND);
    put_str(st, "a", "one");
    assert_int_equal(storage_get(st, "a", &v, &len), ERR_OK);
    assert_int_equal(len, 3);
    assert_memory_equal(v, "one", 3);
    free(v);
    put_str(st, "a", "second");
    assert_int_equal(storage_get(st, "a", &v, &len), ERR_OK);
    assert_int_equal(len, 6);
    assert_memory_equal(v, "second", 6);
    free(v);
    /* Empty values are values. */
    assert_int_equal(storage_put(st, "empty", NULL, 0, false), ERR_OK);
    assert_int_equal(storage_get(st, "empty", &v, &len), ERR_OK);
    assert_int_equal(len, 0);
    free(v);
    assert_int_equal(storage_delete(st, "a"), ERR_OK);
    assert_int_equal(storage_get(st, "a", &v, &len), ERR_NOTFOUND);
    /* Deleting what is not there is fine, as in Vault. */
    assert_int_equal(storage_delete(st, "a"), ERR_OK);
}

static void expect_list(struct storage *st, const char *prefix, const char *const *want)
{
    char **keys = NULL;
    size_t n = 0;
    assert_int_equal(storage_list(st, prefix, &keys, &n), ERR_OK);
    size_t nwant = 0;
    while (want[nwant] != NULL) {
        nwant++;
    }
    if (n != nwant) {
        fail_msg("list '%s': %zu keys, want %zu", prefix, n, nwant);
    }
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(keys[i], want[i]);
    }
    storage_keys_free(keys, n);
}

static void test_list_like_vault(void **state)
{
    struct storage *st = *state;
    put_str(st, "tenants/acme/settings", "{}");
    put_str(st, "tenants/acme/keys/openai/prod", "{}");
    put_str(st, "tenants/acme/keys/openai/dev", "{}");
    put_str(st, "tenants/beta/settings", "{}");
    put_str(st, "tenants/a-z", "{}"); /* '-' sorts before '/' */
    put_str(st, "tenants", "{}");     /* a key equal to the folder name */
    put_str(st, "config", "{}");
    put_str(st, "kek/1", "{}");

    expect_list(st, "", (const char *const[]){"config", "kek/", "tenants", "tenants/", NULL});
    expect_list(st, "tenants/", (const char *const[]){"a-z", "acme/", "beta/", NULL});
    expect_list(st, "tenants/acme/", (const char *const[]){"keys/", "settings", NULL});
    expect_list(st, "tenants/acme/keys/openai/", (const char *const[]){"dev", "prod", NULL});
    expect_list(st, "nothing/", (const char *const[]){NULL});
    /* A prefix that is not a folder boundary still works like Vault's physical List. */
    expect_list(st, "tenants/a", (const char *const[]){"-z", "cme/", NULL});
}

static void test_limits(void **state)
{
    struct storage *st = *state;
    char key[STORAGE_MAX_KEY + 2];
    memset(key, 'k', sizeof(key));
    key[STORAGE_MAX_KEY] = '\0'; /* at the limit */
    put_str(st, key, "v");
    unsigned char *v = NULL;
    size_t len = 0;
    assert_int_equal(storage_get(st, key, &v, &len), ERR_OK);
    free(v);
    key[STORAGE_MAX_KEY] = 'k';
    key[STORAGE_MAX_KEY + 1] = '\0'; /* one past */
    assert_int_equal(storage_put(st, key, (const unsigned char *)"v", 1, false), ERR_INVAL);
    assert_int_equal(storage_get(st, key, &v, &len), ERR_INVAL);
    assert_int_equal(storage_delete(st, key), ERR_INVAL);
    char **keys;
    size_t n;
    assert_int_equal(storage_list(st, key, &keys, &n), ERR_INVAL);

    unsigned char *big = calloc(1, STORAGE_MAX_VALUE + 1);
    assert_non_null(big);
    assert_int_equal(storage_put(st, "big", big, (size_t)STORAGE_MAX_VALUE, false), ERR_OK);
    assert_int_equal(storage_put(st, "big2", big, STORAGE_MAX_VALUE + 1, false), ERR_TOOBIG);
    assert_int_equal(storage_get(st, "big2", &v, &len), ERR_NOTFOUND);
    free(big);

    /* Empty and NULL keys are refused. */
    assert_int_equal(storage_put(st, "", (const unsigned char *)"v", 1, false), ERR_INVAL);
    assert_int_equal(storage_put(st, NULL, (const unsigned char *)"v", 1, false), ERR_INVAL);
    assert_int_equal(storage_put(st, "x", NULL, 1, false), ERR_INVAL);
    assert_int_equal(storage_get(st, "", &v, &len), ERR_INVAL);
}

/* A backend whose List returns as many keys as list_n says. */
static size_t list_n;
static enum err many_list(void *ctx, const char *prefix, char ***ret_keys, size_t *ret_n)
{
    char **keys = calloc(list_n, sizeof(*keys));
    for (size_t i = 0; i < list_n; i++) {
        keys[i] = strdup("k");
    }
    *ret_keys = keys;
    *ret_n = list_n;
    return ERR_OK;
}

static void test_list_limit(void **state)
{
    (void)state;
    static const struct storage_ops ops = {.list = many_list};
    struct storage st = {.ops = &ops};
    char **keys = NULL;
    size_t n = 0;
    list_n = STORAGE_MAX_LIST; /* at the limit */
    assert_int_equal(storage_list(&st, "", &keys, &n), ERR_OK);
    assert_int_equal(n, STORAGE_MAX_LIST);
    storage_keys_free(keys, n);
    list_n = STORAGE_MAX_LIST + 1; /* one past: refused, and freed (LSan checks) */
    keys = NULL;
    assert_int_equal(storage_list(&st, "", &keys, &n), ERR_TOOBIG);
    assert_null(keys);
}

static void test_json_helpers(void **state)
{
    struct storage *st = *state;
    json_t *doc = json_pack("{s:s, s:i, s:[i,i]}", "b", "x", "a", 1, "c", 1, 2);
    assert_int_equal(storage_put_json(st, "doc", doc, false), ERR_OK);
    unsigned char *raw = NULL;
    size_t len = 0;
    assert_int_equal(storage_get(st, "doc", &raw, &len), ERR_OK);
    /* Compact with sorted keys: stable bytes for equal documents. */
    assert_int_equal(len, strlen("{\"a\":1,\"b\":\"x\",\"c\":[1,2]}"));
    assert_memory_equal(raw, "{\"a\":1,\"b\":\"x\",\"c\":[1,2]}", len);
    free(raw);
    json_t *back = NULL;
    assert_int_equal(storage_get_json(st, "doc", &back), ERR_OK);
    assert_true(json_equal(doc, back));
    json_decref(back);
    json_decref(doc);

    assert_int_equal(storage_get_json(st, "missing", &back), ERR_NOTFOUND);
    put_str(st, "notjson", "{nope");
    assert_int_equal(storage_get_json(st, "notjson", &back), ERR_PROTO);
    put_str(st, "dupkeys", "{\"a\":1,\"a\":2}");
    assert_int_equal(storage_get_json(st, "dupkeys", &back), ERR_PROTO);
    assert_int_equal(storage_put_json(st, "nulldoc", NULL, false), ERR_INVAL);

    /* A document one byte past the value limit is refused before any write. */
    char *s = malloc((size_t)STORAGE_MAX_VALUE);
    memset(s, 'a', STORAGE_MAX_VALUE - 1);
    s[STORAGE_MAX_VALUE - 1] = '\0';
    json_t *huge = json_pack("[s]", s); /* ["aaa..."]: 4 bytes of syntax */
    assert_int_equal(storage_put_json(st, "huge", huge, false), ERR_TOOBIG);
    json_decref(huge);
    s[STORAGE_MAX_VALUE - 4] = '\0';
    huge = json_pack("[s]", s); /* exactly STORAGE_MAX_VALUE bytes */
    assert_int_equal(storage_put_json(st, "huge", huge, false), ERR_OK);
    json_decref(huge);
    free(s);
}

struct seen {
    int n;
    bool saw_canary;
};

static void count_cb(const char *key, const unsigned char *val, size_t len, void *arg)
{
    struct seen *s = arg;
    s->n++;
    if (len >= 6 && memmem(val, len, "CANARY", 6) != NULL) {
        s->saw_canary = true;
    }
}

static void test_foreach(void **state)
{
    struct storage *st = *state;
    put_str(st, "x/1", "plain");
    put_str(st, "x/2", "has CANARY inside");
    struct seen s = {0};
    storage_mem_foreach(st, count_cb, &s);
    assert_int_equal(s.n, 2);
    assert_true(s.saw_canary);
    storage_mem_free(NULL); /* accepts NULL */
}

#define THREADS 4
#define PER_THREAD 500

static void *writer(void *arg)
{
    struct storage *st = arg;
    static int next;
    int id = __atomic_fetch_add(&next, 1, __ATOMIC_SEQ_CST);
    for (int i = 0; i < PER_THREAD; i++) {
        char key[64];
        snprintf(key, sizeof(key), "t%d/k%04d", id, i);
        if (storage_put(st, key, (const unsigned char *)key, strlen(key), false) != ERR_OK) {
            return (void *)1;
        }
        char **keys;
        size_t n;
        if (storage_list(st, "", &keys, &n) != ERR_OK) {
            return (void *)1;
        }
        storage_keys_free(keys, n);
    }
    return NULL;
}

static void test_concurrent_writers(void **state)
{
    struct storage *st = *state;
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, writer, st), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        void *rc;
        pthread_join(t[i], &rc);
        assert_null(rc);
    }
    struct seen s = {0};
    storage_mem_foreach(st, count_cb, &s);
    assert_int_equal(s.n, THREADS * PER_THREAD);
    char **keys;
    size_t n;
    assert_int_equal(storage_list(st, "", &keys, &n), ERR_OK);
    assert_int_equal(n, THREADS);
    storage_keys_free(keys, n);
}

/* jansson's allocator for the test below: the nth allocation from now fails (0: none). */
static long oom_countdown;
static bool oom_fired;

static void *oom_malloc(size_t size)
{
    if (oom_countdown > 0 && --oom_countdown == 0) {
        oom_fired = true;
        storage_json_alloc_failed(); /* as storage_json_malloc does */
        return NULL;
    }
    return malloc(size);
}

/*
 * A document read while jansson runs out of memory (each allocation of the
 * parse in turn) is an error or the document itself: jansson 2.14's parser
 * may drop a byte of a string and succeed (a key "allowed_providers" read back
 * as "allowed_providrs", so a config would allow every provider).
 */
static void test_get_json_out_of_memory(void **state)
{
    struct storage *st = *state;
    json_t *want = json_pack("{s:[s,s], s:s, s:s, s:{s:s}}", "allowed_providers", "openai",
                             "anthropic", "status", "revoked", "expires_at", "2026-11-18T10:00:00Z",
                             "versions", "ct", "c2VhbGVkIGtleQ==");
    assert_int_equal(storage_put_json(st, "doc", want, false), ERR_OK);
    for (long n = 1; n < 100000; n++) {
        json_t *got = NULL;
        oom_fired = false;
        oom_countdown = n;
        json_set_alloc_funcs(oom_malloc, free);
        enum err e = storage_get_json(st, "doc", &got);
        json_set_alloc_funcs(malloc, free);
        oom_countdown = 0;
        if (e == ERR_OK && !json_equal(got, want)) {
            char *text = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
            fail_msg("allocation %ld failed: read back %s", n, text);
        }
        assert_true(e == ERR_OK || e == ERR_NOMEM);
        json_decref(got);
        if (!oom_fired) {
            assert_int_equal(e, ERR_OK);
            break;
        }
    }
    json_decref(want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get_put_overwrite_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_like_vault, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_helpers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_json_out_of_memory, setup, teardown),
        cmocka_unit_test(test_list_limit),
        cmocka_unit_test_setup_teardown(test_foreach, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_writers, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
