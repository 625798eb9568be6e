/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for common/b64: RFC 4648's test vectors, PEM line breaks, and
 * every non-strict form refused: padding in the wrong place or not at the
 * end, a group cut short, non-canonical last characters, characters outside
 * the alphabet, line breaks where none are allowed, a result larger than
 * the buffer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "common/b64.h"

static bool dec(const char *in, bool lines, char *out, size_t cap, size_t *n)
{
    memset(out, 0, cap);
    return b64_decode(in, strlen(in), lines, (unsigned char *)out, cap, n);
}

static void test_vectors(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } v[] = {{"", ""},
             {"Zg==", "f"},
             {"Zm8=", "fo"},
             {"Zm9v", "foo"},
             {"Zm9vYg==", "foob"},
             {"Zm9vYmE=", "fooba"},
             {"Zm9vYmFy", "foobar"}};
    char out[16];
    size_t n = 99;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        assert_true(dec(v[i].in, false, out, sizeof(out), &n));
        assert_int_equal(n, strlen(v[i].out));
        assert_memory_equal(out, v[i].out, n);
    }
    /* PEM lines: \n or \r\n between any two characters. */
    assert_true(dec("Zm9v\nYmFy\r\n", true, out, sizeof(out), &n));
    assert_int_equal(n, 6);
    assert_memory_equal(out, "foobar", 6);
    assert_true(dec("Zm\n9vYg=\r\n=\n", true, out, sizeof(out), &n));
    assert_int_equal(n, 4);
    assert_int_equal(b64_value('A'), 0);
    assert_int_equal(b64_value('/'), 63);
    assert_int_equal(b64_value('='), -1);
    assert_int_equal(b64_value('-'), -1);
}

static void test_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "Zg=",      /* a group cut short */
        "Zg",       /* no padding */
        "Z===",     /* padding in the second place */
        "=Zg=",     /* padding first */
        "Zg=a",     /* a character after '=' */
        "Zg==Zg==", /* anything after the padding */
        "Zh==",     /* non-canonical: bits the padding drops are set */
        "Zm9=",     /* the same for one '=' */
        "Zm 9v",    /* a space */
        "Zm9v\n",   /* a line break where none is allowed */
        "Zm-v",     /* base64url's alphabet */
    };
    char out[16];
    size_t n;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_false(dec(bad[i], false, out, sizeof(out), &n));
    }
    /* With lines: a lone CR, a space, a break in a group cut short. */
    assert_false(dec("Zm9v\rYmFy", true, out, sizeof(out), &n));
    assert_false(dec("Zm9v YmFy", true, out, sizeof(out), &n));
    assert_false(dec("Zm9\n", true, out, sizeof(out), &n));
    assert_false(dec("Zg==\nZg==", true, out, sizeof(out), &n));
    /* The result must fit: 6 bytes into 5. */
    assert_false(dec("Zm9vYmFy", false, out, 5, &n));
    assert_true(dec("Zm9vYmFy", false, out, 6, &n));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
