/* SPDX-License-Identifier: MPL-2.0 */
/* Unit tests for plugin/cache.c: hits, misses, generations, invalidation and the entry limit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "plugin/cache.h"

static void test_get_put_invalidate(void **state)
{
    (void)state;
    struct cache *c = cache_new();
    assert_non_null(c);
    uint64_t gen = 99;
    assert_null(cache_get(c, "config", &gen));
    json_t *v = json_pack("{s:i}", "x", 1);
    cache_put(c, "config", v, gen);
    json_t *got = cache_get(c, "config", NULL);
    assert_ptr_equal(got, v);         /* shared by reference, not copied */
    assert_int_equal(v->refcount, 3); /* ours, the cache's, got */
    json_decref(got);
    /* Replacing an entry. */
    json_t *v2 = json_pack("{s:i}", "x", 2);
    cache_get(c, "other", &gen);
    cache_put(c, "config", v2, gen);
    got = cache_get(c, "config", NULL);
    assert_ptr_equal(got, v2);
    json_decref(got);
    assert_int_equal(v->refcount, 1); /* the cache let go of the old value */
    /* Invalidate one key; others stay. */
    cache_put(c, "keep", v, gen);
    cache_invalidate(c, "config");
    assert_null(cache_get(c, "config", NULL));
    got = cache_get(c, "keep", NULL);
    assert_ptr_equal(got, v);
    json_decref(got);
    cache_invalidate(c, "never-there"); /* harmless */
    cache_invalidate(c, NULL);          /* everything */
    assert_null(cache_get(c, "keep", NULL));
    json_decref(v);
    json_decref(v2);
    cache_free(c);
    cache_free(NULL);
}

/* A reader that took the generation before an invalidation must not re-cache a stale value. */
static void test_stale_put_is_dropped(void **state)
{
    (void)state;
    struct cache *c = cache_new();
    uint64_t gen;
    assert_null(cache_get(c, "config", &gen)); /* reader starts, misses */
    cache_invalidate(c, "config");             /* a write lands meanwhile */
    json_t *stale = json_string("stale");
    cache_put(c, "config", stale, gen); /* the slow reader finishes */
    assert_null(cache_get(c, "config", NULL));
    /* An invalidation of an unrelated key also counts (one generation for all). */
    cache_get(c, "config", &gen);
    cache_invalidate(c, "other");
    cache_put(c, "config", stale, gen);
    assert_null(cache_get(c, "config", NULL));
    /* With no invalidation in between it is cached. */
    cache_get(c, "config", &gen);
    cache_put(c, "config", stale, gen);
    json_t *got = cache_get(c, "config", NULL);
    assert_ptr_equal(got, stale);
    json_decref(got);
    json_decref(stale);
    cache_free(c);
}

static void test_entry_limit(void **state)
{
    (void)state;
    struct cache *c = cache_new();
    json_t *v = json_true();
    uint64_t gen;
    cache_get(c, "x", &gen);
    char key[32];
    for (int i = 0; i < CACHE_MAX_ENTRIES; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        cache_put(c, key, v, gen);
    }
    /* At the limit everything is still there. */
    json_t *got = cache_get(c, "k0", NULL);
    assert_non_null(got);
    json_decref(got);
    snprintf(key, sizeof(key), "k%d", CACHE_MAX_ENTRIES - 1);
    got = cache_get(c, key, NULL);
    assert_non_null(got);
    json_decref(got);
    /* One past: the cache empties itself and keeps only the newcomer. */
    cache_put(c, "one-past", v, gen);
    assert_null(cache_get(c, "k0", NULL));
    got = cache_get(c, "one-past", NULL);
    assert_non_null(got);
    json_decref(got);
    cache_free(c);
}

#define THREADS 4
#define ROUNDS 20000

static void *hammer(void *arg)
{
    struct cache *c = arg;
    for (int i = 0; i < ROUNDS; i++) {
        uint64_t gen;
        json_t *v = cache_get(c, "config", &gen);
        if (v == NULL) {
            v = json_integer(i);
            cache_put(c, "config", v, gen);
        }
        json_decref(v);
        if (i % 100 == 0) {
            cache_invalidate(c, "config");
        }
    }
    return NULL;
}

static void test_concurrent(void **state)
{
    (void)state;
    struct cache *c = cache_new();
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, hammer, c), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
    }
    cache_free(c); /* ASan/LSan runs of this test catch reference-count mistakes */
}

/*
 * A key whose write was reported failed is neither served nor stored until
 * the doubt window ends, whatever is put meanwhile; other keys are not
 * affected; after the window it caches again.
 */
static void test_doubt(void **state)
{
    (void)state;
    cache_set_doubt_ms(10000);
    struct cache *c = cache_new();
    assert_non_null(c);
    json_t *v = json_pack("{s:i}", "x", 1);
    uint64_t gen = 0;
    assert_null(cache_get(c, "k", &gen));
    cache_put(c, "k", v, gen);
    cache_put(c, "other", v, gen);
    json_t *got = cache_get(c, "k", NULL);
    assert_ptr_equal(got, v);
    json_decref(got);

    /* A reader that missed before the doubt cannot put after it (generation). */
    uint64_t old_gen = 0;
    json_decref(cache_get(c, "k2", &old_gen));
    cache_doubt(c, "k");
    cache_put(c, "k2", v, old_gen);
    assert_null(cache_get(c, "k2", NULL));

    /* In doubt: dropped, misses, and a put with a current generation is refused. */
    assert_null(cache_get(c, "k", &gen));
    cache_put(c, "k", v, gen);
    assert_null(cache_get(c, "k", &gen));
    got = cache_get(c, "other", NULL);
    assert_ptr_equal(got, v);
    json_decref(got);

    /* The window ends: cached again. */
    cache_advance_ms(10001);
    assert_null(cache_get(c, "k", &gen));
    cache_put(c, "k", v, gen);
    got = cache_get(c, "k", NULL);
    assert_ptr_equal(got, v);
    json_decref(got);

    /* A second failure renews the window. */
    cache_doubt(c, "k");
    cache_advance_ms(6000);
    cache_doubt(c, "k");
    cache_advance_ms(6000);
    assert_null(cache_get(c, "k", &gen));
    cache_put(c, "k", v, gen);
    assert_null(cache_get(c, "k", NULL));

    json_decref(v);
    cache_free(c);
    cache_set_doubt_ms(0);
}

/* Past CACHE_DOUBT_MAX keys in doubt, every key is, until the window of the last one ends. */
static void test_doubt_limit(void **state)
{
    (void)state;
    cache_set_doubt_ms(10000);
    struct cache *c = cache_new();
    json_t *v = json_pack("{s:i}", "x", 1);
    char key[32];
    for (int i = 0; i < CACHE_DOUBT_MAX; i++) {
        snprintf(key, sizeof(key), "d%d", i);
        cache_doubt(c, key);
    }
    uint64_t gen = 0;
    json_decref(cache_get(c, "free", &gen));
    cache_put(c, "free", v, gen); /* at the limit: other keys still cache */
    json_t *got = cache_get(c, "free", NULL);
    assert_ptr_equal(got, v);
    json_decref(got);
    cache_doubt(c, "one-past"); /* one past: everything is in doubt */
    assert_null(cache_get(c, "free", &gen));
    cache_put(c, "free", v, gen);
    assert_null(cache_get(c, "free", NULL));
    cache_advance_ms(10001);
    json_decref(cache_get(c, "free", &gen));
    cache_put(c, "free", v, gen);
    got = cache_get(c, "free", NULL);
    assert_ptr_equal(got, v);
    json_decref(got);

    /* The standalone set (envelope.c's DEKs). */
    struct cache_doubts *d = cache_doubts_new();
    assert_non_null(d);
    assert_false(cache_doubts_has(d, "acme"));
    cache_doubts_add(d, "acme");
    assert_true(cache_doubts_has(d, "acme"));
    assert_false(cache_doubts_has(d, "globex"));
    cache_advance_ms(10001);
    assert_false(cache_doubts_has(d, "acme"));
    cache_doubts_free(d);
    cache_doubts_free(NULL);

    json_decref(v);
    cache_free(c);
    cache_set_doubt_ms(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_put_invalidate),
        cmocka_unit_test(test_stale_put_is_dropped),
        cmocka_unit_test(test_entry_limit),
        cmocka_unit_test(test_concurrent),
        cmocka_unit_test(test_doubt),
        cmocka_unit_test(test_doubt_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
