/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for plugin/keyvalidate.c: documented prefixes and minimum
 * lengths, entropy, repetition, score bounds, and that nothing the block
 * says contains a byte of the key.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/keyvalidate.h"

static json_t *entry(const char *name, const char *prefixes_json, int min_len)
{
    json_t *e = json_pack("{ss ss so si}", "name", name, "display_name", name, "key_prefixes",
                          json_loads(prefixes_json, 0, NULL), "key_min_length", min_len);
    assert_non_null(e);
    return e;
}

static json_t *check(const char *key, const json_t *e)
{
    json_t *v = keyvalidate_check((const unsigned char *)key, strlen(key), e);
    assert_non_null(v);
    assert_true(json_is_boolean(json_object_get(v, "is_valid")));
    json_int_t score = json_integer_value(json_object_get(v, "strength_score"));
    assert_true(score >= 0 && score <= 100);
    assert_true(json_is_array(json_object_get(v, "issues")));
    assert_true(json_is_array(json_object_get(v, "recommendations")));
    /* The block never repeats the key (nor any 8-byte piece of it). */
    char *text = json_dumps(v, 0);
    size_t klen = strlen(key);
    for (size_t i = 0; klen >= 8 && i + 8 <= klen; i++) {
        char piece[9];
        memcpy(piece, key + i, 8);
        piece[8] = '\0';
        assert_null(strstr(text, piece));
    }
    free(text);
    return v;
}

static bool is_valid(const json_t *v)
{
    return json_is_true(json_object_get(v, "is_valid"));
}

static json_int_t score(const json_t *v)
{
    return json_integer_value(json_object_get(v, "strength_score"));
}

static const char good_openai[] = "sk-proj-Xq7mN2pL9vR4tY8wK3jH6fD1sA5gZ0cB7nM4xQ2eW9rT";

static void test_good_key(void **state)
{
    json_t *e = entry("openai", "[\"sk-\"]", 40);
    json_t *v = check(good_openai, e);
    assert_true(is_valid(v));
    assert_true(score(v) >= 80);
    assert_int_equal(json_array_size(json_object_get(v, "issues")), 0);
    json_decref(v);
    json_decref(e);
}

static void test_wrong_prefix(void **state)
{
    json_t *e = entry("anthropic", "[\"sk-ant-\"]", 40);
    json_t *v = check(good_openai, e);
    assert_false(is_valid(v));
    assert_true(json_array_size(json_object_get(v, "issues")) >= 1);
    assert_true(json_array_size(json_object_get(v, "recommendations")) >= 1);
    /* The prefix point is lost: lower than the same key with its own provider. */
    json_t *e2 = entry("openai", "[\"sk-\"]", 40);
    json_t *v2 = check(good_openai, e2);
    assert_true(score(v) < score(v2));
    json_decref(v2);
    json_decref(e2);
    json_decref(v);
    json_decref(e);
}

/* Minimum length at the limit and one below. */
static void test_min_length(void **state)
{
    json_t *e = entry("p", "[]", 20);
    json_t *v = check("Ab3dE6gH9jK2mN5pQ8sT", e); /* 20 */
    assert_true(is_valid(v));
    json_decref(v);
    v = check("Ab3dE6gH9jK2mN5pQ8s", e); /* 19 */
    assert_false(is_valid(v));
    json_decref(v);
    json_decref(e);
}

static void test_low_entropy_and_runs(void **state)
{
    json_t *e = entry("p", "[]", 8);
    json_t *v = check("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", e);
    assert_false(is_valid(v));
    assert_true(score(v) < 30);
    assert_true(json_array_size(json_object_get(v, "issues")) >= 2); /* entropy, run */
    json_decref(v);
    v = check("abababababababababababab", e);
    assert_false(is_valid(v)); /* 1 bit per char x 24 */
    json_decref(v);
    json_decref(e);
}

static void test_no_entry(void **state)
{
    json_t *v = check(good_openai, NULL);
    assert_true(is_valid(v));
    json_decref(v);
    v = keyvalidate_check(NULL, 0, NULL);
    assert_non_null(v);
    assert_false(is_valid(v));
    json_decref(v);
}

static void test_entropy(void **state)
{
    assert_true(keyvalidate_entropy(NULL, 0) == 0.0);
    assert_true(keyvalidate_entropy((const unsigned char *)"aaaa", 4) == 0.0);
    assert_true(fabs(keyvalidate_entropy((const unsigned char *)"abab", 4) - 1.0) < 1e-9);
    assert_true(fabs(keyvalidate_entropy((const unsigned char *)"abcd", 4) - 2.0) < 1e-9);
}

/* A prefix longer than the key, many prefixes, an 8 KiB key: no overflow, a sane answer. */
static void test_edges(void **state)
{
    json_t *e = entry("p",
                      "[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\",\"j\",\"k\",\"l\","
                      "\"m\",\"n\",\"o\",\"p\",\"q\",\"r\",\"s\",\"t\",\"very-long-prefix-here\"]",
                      8);
    json_t *v = check("ZZZZZZZZ", e);
    assert_false(is_valid(v));
    json_decref(v);
    char *big = malloc(8193);
    for (size_t i = 0; i < 8192; i++) {
        big[i] = (char)('!' + (i * 7919) % 94);
    }
    big[8192] = '\0';
    v = keyvalidate_check((const unsigned char *)big, 8192, e);
    assert_non_null(v);
    json_decref(v);
    free(big);
    json_decref(e);
}

/*
 * A long display name (catalog text, any characters) cuts the sentences it is
 * in: each is still there, cut between whole characters, not dropped.
 */
static void test_long_display_name(void **state)
{
    (void)state;
    for (size_t shift = 0; shift < 3; shift++) {
        char name[700];
        size_t n = 0;
        for (size_t i = 0; i < shift; i++) {
            name[n++] = 'x';
        }
        while (n + 3 < sizeof(name)) {
            memcpy(name + n, "\xe2\x82\xac", 3);
            n += 3;
        }
        name[n] = '\0';
        json_t *e = entry(name, "[\"sk-\"]", 20);
        json_t *v = check("nope", e);
        assert_false(is_valid(v));
        /* Too short, wrong prefix, low entropy (with a recommendation each), one class. */
        assert_int_equal(json_array_size(json_object_get(v, "issues")), 4);
        assert_int_equal(json_array_size(json_object_get(v, "recommendations")), 3);
        json_decref(v);
        json_decref(e);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_key),   cmocka_unit_test(test_wrong_prefix),
        cmocka_unit_test(test_min_length), cmocka_unit_test(test_low_entropy_and_runs),
        cmocka_unit_test(test_no_entry),   cmocka_unit_test(test_entropy),
        cmocka_unit_test(test_edges),      cmocka_unit_test(test_long_display_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
