/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for agent/cooldown: the Retry-After / retry-after-ms parser
 * (delta-seconds, HTTP-dates in the three forms, milliseconds, garbage,
 * negative, huge, missing) and the table (keyed by tenant × provider × key,
 * expiry, the size bound, a reload's cap).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "agent/cooldown.h"

/* Sun, 06 Nov 1994 08:49:37 GMT (RFC 9110's example). */
#define T_1994 ((time_t)784111777)

static long long parse_ok(const char *ra, const char *ra_ms, time_t now)
{
    long long ms = -42;
    assert_int_equal(cooldown_parse(ra, ra_ms, now, &ms), ERR_OK);
    return ms;
}

static void parse_bad(const char *ra, const char *ra_ms)
{
    long long ms = -42;
    assert_int_equal(cooldown_parse(ra, ra_ms, T_1994, &ms), ERR_INVAL);
    assert_int_equal(ms, -42); /* untouched */
}

static void test_delta_seconds(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("0", NULL, T_1994), 0);
    assert_int_equal(parse_ok("1", NULL, T_1994), 1000);
    assert_int_equal(parse_ok("120", NULL, T_1994), 120000);
    assert_int_equal(parse_ok("  7\t", NULL, T_1994), 7000);
    assert_int_equal(parse_ok("007", NULL, T_1994), 7000);
    /* A fraction is tolerated and rounded up to the millisecond. */
    assert_int_equal(parse_ok("1.5", NULL, T_1994), 1500);
    assert_int_equal(parse_ok("0.0001", NULL, T_1994), 1);
    assert_int_equal(parse_ok("2.000", NULL, T_1994), 2000);
    assert_int_equal(parse_ok("0.0000000001", NULL, T_1994), 1);
    /* The limit: a day is believed, a second more is not. */
    assert_int_equal(parse_ok("86400", NULL, T_1994), 86400000LL);
    parse_bad("86401", NULL);
}

static void test_http_date(void **state)
{
    (void)state;
    /* The three forms of RFC 9110 section 5.6.7, 30 s after now. */
    time_t now = T_1994 - 30;
    assert_int_equal(parse_ok("Sun, 06 Nov 1994 08:49:37 GMT", NULL, now), 30000);
    assert_int_equal(parse_ok("Sunday, 06-Nov-94 08:49:37 GMT", NULL, now), 30000);
    assert_int_equal(parse_ok("Sun Nov  6 08:49:37 1994", NULL, now), 30000);
    /* A date in the past: retry now. */
    assert_int_equal(parse_ok("Sun, 06 Nov 1994 08:49:37 GMT", NULL, T_1994 + 3600), 0);
    /* More than a day ahead: not believed. */
    long long ms = -42;
    assert_int_equal(cooldown_parse("Sun, 06 Nov 1994 08:49:37 GMT", NULL, T_1994 - 86401, &ms),
                     ERR_INVAL);
    assert_int_equal(cooldown_parse("Sun, 06 Nov 1994 08:49:37 GMT", NULL, T_1994 - 86400, &ms),
                     ERR_OK);
    assert_int_equal(ms, 86400000LL);
    assert_int_equal(cooldown_parse("Fri, 31 Dec 9999 23:59:59 GMT", NULL, T_1994, &ms), ERR_INVAL);
}

static void test_retry_after_ms(void **state)
{
    (void)state;
    /* OpenAI's retry-after-ms wins over Retry-After. */
    assert_int_equal(parse_ok("20", "250", T_1994), 250);
    assert_int_equal(parse_ok(NULL, "250", T_1994), 250);
    assert_int_equal(parse_ok(NULL, "0", T_1994), 0);
    assert_int_equal(parse_ok(NULL, "12.5", T_1994), 13);
    assert_int_equal(parse_ok(NULL, " 86400000 ", T_1994), 86400000LL);
    /* A bad retry-after-ms falls back to Retry-After. */
    assert_int_equal(parse_ok("3", "soon", T_1994), 3000);
    assert_int_equal(parse_ok("3", "-5", T_1994), 3000);
    assert_int_equal(parse_ok("3", "86400001", T_1994), 3000);
    parse_bad(NULL, "-1");
    parse_bad(NULL, "1e3");
    parse_bad(NULL, "");
    parse_bad("garbage", "garbage");
}

static void test_garbage(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "   ",
        "-1",
        "-0",
        "+5",
        "1e3",
        "0x10",
        "5 s",
        "5s",
        "1.",
        ".5",
        "1.2.3",
        "1,5",
        "soon",
        "Sun",
        "Sun, 06 Nov 1994 08:49:37 GMT; x",
        "Sun, 06 Nov 1994 08:49:37 GMT\r\nX-Evil: 1",
        "Sun, 06 Nov 1994 08:49:37 GMT\"",
        "\xff\xfe",
        "99999999999999999999999999999999",
        "9223372036854775807",
        "18446744073709551617",
        "1234567890123456789012345678901234567890123456789012345678901234567890",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        long long ms = -42;
        enum err e = cooldown_parse(bad[i], NULL, T_1994, &ms);
        if (e != ERR_INVAL) {
            fail_msg("Retry-After case %zu accepted (%lld ms)", i, ms);
        }
    }
}

static void test_header_length(void **state)
{
    (void)state;
    /* COOLDOWN_MAX_HEADER bytes are read (leading zeros included), one more is refused. */
    char v[COOLDOWN_MAX_HEADER + 2];
    memset(v, '0', COOLDOWN_MAX_HEADER);
    v[COOLDOWN_MAX_HEADER - 1] = '7';
    v[COOLDOWN_MAX_HEADER] = '\0';
    assert_int_equal(parse_ok(v, NULL, T_1994), 7000);
    assert_int_equal(parse_ok(NULL, v, T_1994), 7);
    memmove(v + 1, v, COOLDOWN_MAX_HEADER + 1);
    v[0] = '0';
    parse_bad(v, NULL);
    parse_bad(NULL, v);
}

static void test_missing(void **state)
{
    (void)state;
    long long ms = -42;
    assert_int_equal(cooldown_parse(NULL, NULL, T_1994, &ms), ERR_NOTFOUND);
    assert_int_equal(ms, -42);
}

static void test_table_keys(void **state)
{
    (void)state;
    struct cooldown *cd = cooldown_new();
    assert_non_null(cd);
    assert_true(cooldown_left(cd, "acme", "openai", "k1", 100.0) == 0);
    assert_int_equal(cooldown_start(cd, "acme", "openai", "k1", 110.0, 100.0), 1);
    assert_true(cooldown_left(cd, "acme", "openai", "k1", 100.0) == 10.0);
    /* Another tenant, provider or key is not cooling. */
    assert_true(cooldown_left(cd, "beta", "openai", "k1", 100.0) == 0);
    assert_true(cooldown_left(cd, "acme", "anthropic", "k1", 100.0) == 0);
    assert_true(cooldown_left(cd, "acme", "openai", "k2", 100.0) == 0);
    assert_true(cooldown_left(cd, "acme", "openai", NULL, 100.0) == 0);
    /* Extended, never shortened. */
    assert_int_equal(cooldown_start(cd, "acme", "openai", "k1", 105.0, 101.0), 0);
    assert_true(cooldown_left(cd, "acme", "openai", "k1", 101.0) == 9.0);
    assert_int_equal(cooldown_start(cd, "acme", "openai", "k1", 120.0, 101.0), 0);
    assert_true(cooldown_left(cd, "acme", "openai", "k1", 101.0) == 19.0);
    /* A wait already over is not recorded. */
    assert_int_equal(cooldown_start(cd, "acme", "azure", "", 100.0, 100.0), 0);
    assert_int_equal(cooldown_count(cd), 1);
    /* Expiry: over at the instant it ends, and the entry is gone. */
    assert_true(cooldown_left(cd, "acme", "openai", "k1", 120.0) == 0);
    assert_int_equal(cooldown_count(cd), 0);
    /* A missing key_id is its own key. */
    assert_int_equal(cooldown_start(cd, "acme", "openai", NULL, 110.0, 100.0), 1);
    assert_true(cooldown_left(cd, "acme", "openai", "", 100.0) == 10.0);
    cooldown_free(cd);
    cooldown_free(NULL);
    assert_true(cooldown_left(NULL, "acme", "openai", "k1", 100.0) == 0);
    assert_int_equal(cooldown_start(NULL, "acme", "openai", "k1", 110.0, 100.0), -1);
}

static void test_table_full(void **state)
{
    (void)state;
    struct cooldown *cd = cooldown_new();
    char tenant[32];
    for (int i = 0; i < COOLDOWN_MAX_ENTRIES; i++) {
        snprintf(tenant, sizeof(tenant), "t%d", i);
        assert_int_equal(cooldown_start(cd, tenant, "openai", "k", 200.0 + i, 100.0), 1);
    }
    assert_int_equal(cooldown_count(cd), COOLDOWN_MAX_ENTRIES);
    /* Full of live cooldowns: a new one is not kept, the others stay. */
    assert_int_equal(cooldown_start(cd, "late", "openai", "k", 300.0, 100.0), -1);
    assert_true(cooldown_left(cd, "late", "openai", "k", 100.0) == 0);
    assert_true(cooldown_left(cd, "t0", "openai", "k", 100.0) == 100.0);
    /* An existing one can still be extended. */
    assert_int_equal(cooldown_start(cd, "t0", "openai", "k", 250.0, 100.0), 0);
    /* Once some expire there is room again. */
    assert_int_equal(cooldown_start(cd, "late", "openai", "k", 400.0, 210.5), 1);
    assert_true(cooldown_left(cd, "late", "openai", "k", 210.5) == 189.5);
    assert_int_equal(cooldown_count(cd), COOLDOWN_MAX_ENTRIES - 10 + 1); /* t1..t10 gone */
    cooldown_free(cd);
}

static void test_table_cap(void **state)
{
    (void)state;
    struct cooldown *cd = cooldown_new();
    assert_int_equal(cooldown_start(cd, "acme", "openai", "k", 160.0, 100.0), 1);
    assert_int_equal(cooldown_start(cd, "acme", "anthropic", "k", 105.0, 100.0), 1);
    /* A reload to retry_after_max_s 10: the longer one is cut, the shorter kept. */
    cooldown_cap(cd, 100.0, 10);
    assert_true(cooldown_left(cd, "acme", "openai", "k", 100.0) == 10.0);
    assert_true(cooldown_left(cd, "acme", "anthropic", "k", 100.0) == 5.0);
    /* 0: cooldowns off, every one dropped. */
    cooldown_cap(cd, 100.0, 0);
    assert_int_equal(cooldown_count(cd), 0);
    cooldown_cap(NULL, 100.0, 0);
    cooldown_free(cd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delta_seconds),  cmocka_unit_test(test_http_date),
        cmocka_unit_test(test_retry_after_ms), cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_header_length),  cmocka_unit_test(test_missing),
        cmocka_unit_test(test_table_keys),     cmocka_unit_test(test_table_full),
        cmocka_unit_test(test_table_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
