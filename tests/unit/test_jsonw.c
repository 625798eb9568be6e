/* SPDX-License-Identifier: MPL-2.0 */
/* Unit tests for common/jsonw: the same bytes as json_dumps(JSON_COMPACT), and its limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsonw.h"

/* jsonw_dumps(v) equals json_dumps(v, JSON_COMPACT), length included. */
static void assert_same(const json_t *v)
{
    char *want = json_dumps(v, JSON_COMPACT);
    size_t len = 0;
    char *got = jsonw_dumps(v, &len);
    assert_non_null(want);
    assert_non_null(got);
    assert_string_equal(got, want);
    assert_int_equal(len, strlen(want));
    free(want);
    free(got);
}

static void test_jsonw_scalars_and_containers(void **state)
{
    (void)state;
    json_t *v = json_pack("{s:[], s:{}, s:[n,b,b], s:I, s:I, s:I, s:s, s:[{}, [[]]]}", "a", "o",
                          "lits", 0, 1, "zero", (json_int_t)0, "min", (json_int_t)INT64_MIN, "max",
                          (json_int_t)INT64_MAX, "s", "", "nest");
    assert_non_null(v);
    assert_same(v);
    json_decref(v);
    json_t *a = json_array();
    assert_same(a);
    json_decref(a);
}

static void test_jsonw_string_escapes(void **state)
{
    (void)state;
    json_t *o = json_object();
    char all[128];
    for (int i = 0; i < 128; i++) {
        all[i] = (char)i; /* every ASCII byte, NUL included */
    }
    json_object_set_new(o, "ascii", json_stringn(all, sizeof(all)));
    json_object_set_new(o, "slash/quote\"back\\", json_string("a/b\"c\\d"));
    json_object_set_new(o, "utf8", json_string("gr\xc3\xbc\xc3\x9f \xe2\x82\xac \xf0\x9f\x94\x91"));
    json_object_set_new(o, "tail\n", json_string("ends with a control\x1f"));
    json_object_setn_new(o, "nul\0key", 7, json_string("k"));
    assert_same(o);
    json_decref(o);
    /* One byte to escape at every offset of a long run (the 8-byte scan and its tail). */
    const char specials[] = {'"', '\\', '\x1f', '\0', '\n', '\x7f', '\x20', '!', '#', '['};
    for (size_t k = 0; k < sizeof(specials); k++) {
        for (size_t at = 0; at < 40; at++) {
            char s[41];
            memset(s, 'A', sizeof(s));
            s[at] = specials[k];
            json_t *a = json_pack("[s%]", s, at + 1 + (k % 2));
            assert_non_null(a);
            assert_same(a);
            json_decref(a);
        }
    }
}

static void test_jsonw_reals_are_janssons(void **state)
{
    (void)state;
    json_t *a = json_pack("[f,f,f,f,f,f]", 0.0, -0.5, 1e300, 0.1 + 0.2, 3.0, 1.5e-7);
    assert_non_null(a);
    assert_same(a);
    json_decref(a);
}

/* Random trees: every shape jansson can hold, with strings drawn from awkward bytes. */
static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

static json_t *rnd_string(void)
{
    static const char *pieces[] = {
        "a", "\"",  "\\", "/", "\n", "\x01", "\x7f", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x94\x91",
        " ", "sk-", "\t", "\r"};
    char s[64];
    size_t n = 0;
    for (uint32_t k = rnd(12); k > 0; k--) {
        const char *p = pieces[rnd(sizeof(pieces) / sizeof(pieces[0]))];
        size_t len = strlen(p);
        if (n + len >= sizeof(s)) {
            break;
        }
        memcpy(s + n, p, len + 1); /* with its NUL; json_stringn takes the length */
        n += len;
    }
    return json_stringn(s, n);
}

static json_t *rnd_tree(int depth)
{
    switch (depth > 4 ? 2 + rnd(5) : rnd(7)) {
    case 0: {
        json_t *o = json_object();
        for (uint32_t k = rnd(6); k > 0; k--) {
            json_t *key = rnd_string();
            json_object_setn_new(o, json_string_value(key), json_string_length(key),
                                 rnd_tree(depth + 1));
            json_decref(key);
        }
        return o;
    }
    case 1: {
        json_t *a = json_array();
        for (uint32_t k = rnd(6); k > 0; k--) {
            json_array_append_new(a, rnd_tree(depth + 1));
        }
        return a;
    }
    case 2:
        return rnd_string();
    case 3:
        return json_integer((json_int_t)rng - (json_int_t)rnd(1000));
    case 4:
        return json_real((double)rnd(1000000) / 1024.0);
    case 5:
        return rnd(2) ? json_true() : json_false();
    default:
        return json_null();
    }
}

static void test_jsonw_random_trees(void **state)
{
    (void)state;
    for (int i = 0; i < 2000; i++) {
        json_t *v = json_array();
        json_array_append_new(v, rnd_tree(0));
        assert_same(v);
        json_decref(v);
    }
}

/*
 * What jansson parses (up to 2048 levels) is wrapped in a few levels of our
 * own before it is written: an app's tool-call arguments (a JSON text in a
 * string) become the "input" of an Anthropic content block, five levels
 * down. That must encode as json_dumps does, not fail as out of memory.
 */
static void test_jsonw_parsed_then_wrapped(void **state)
{
    (void)state;
    size_t levels = 2047; /* the deepest text json_loads takes, with a scalar inside */
    char *text = malloc(2 * levels + 2);
    assert_non_null(text);
    for (size_t i = 0; i < levels; i++) {
        text[i] = '[';
        text[levels + 1 + i] = ']';
    }
    text[levels] = '1';
    text[2 * levels + 1] = '\0';
    json_t *args = json_loads(text, 0, NULL);
    free(text);
    assert_non_null(args);
    json_t *body = json_pack("{s:[{s:s,s:[{s:s,s:o}]}]}", "messages", "role", "assistant",
                             "content", "type", "tool_use", "input", args);
    assert_non_null(body);
    assert_same(body);
    json_decref(body);
}

static void test_jsonw_refuses(void **state)
{
    (void)state;
    json_t *s = json_string("x");
    assert_null(jsonw_dumps(s, NULL)); /* not a container: as json_dumps without ENCODE_ANY */
    assert_null(json_dumps(s, JSON_COMPACT));
    json_decref(s);
    assert_null(jsonw_dumps(NULL, NULL));
    /* Deeper than the limit fails instead of recursing without bound. */
    json_t *top = json_array(), *cur = top;
    for (int i = 0; i < JSONW_MAX_DEPTH + 1; i++) {
        json_t *next = json_array();
        json_array_append_new(cur, next);
        cur = next;
    }
    assert_null(jsonw_dumps(top, NULL));
    json_decref(top);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jsonw_scalars_and_containers),
        cmocka_unit_test(test_jsonw_string_escapes),
        cmocka_unit_test(test_jsonw_reals_are_janssons),
        cmocka_unit_test(test_jsonw_random_trees),
        cmocka_unit_test(test_jsonw_parsed_then_wrapped),
        cmocka_unit_test(test_jsonw_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
