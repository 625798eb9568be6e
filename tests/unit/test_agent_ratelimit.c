/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for agent/ratelimit: the bucket math (a new bucket is full,
 * continuous refill at limit per minute, capacity, a request over the whole
 * limit, debt and its bound, reservations given back), Retry-After rounding,
 * the limits read from Vault's JSON (bad values are none, huge ones
 * clamped), buckets keyed by kind × tenant × provider × key, the table's
 * bound and the removal of full buckets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "agent/ratelimit.h"

/* A wait compared to the microsecond. */
#define assert_wait(got, want) assert_true((got) > (want)-1e-6 && (got) < (want) + 1e-6)

static int take(struct ratelimit *rl, long long limit, long long n, double now, double *wait)
{
    return ratelimit_take(rl, RATELIMIT_RPM, "acme", NULL, NULL, limit, n, now, wait);
}

static void test_new_bucket_full(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_new();
    double wait = -42;
    /* rpm 3: three calls at once pass, the fourth waits 20 s (one token at 3 a minute). */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(take(rl, 3, 1, 100.0, &wait), 1);
    }
    assert_true(wait == -42); /* untouched when taken */
    assert_int_equal(take(rl, 3, 1, 100.0, &wait), 0);
    assert_wait(wait, 20.0);
    assert_int_equal(ratelimit_retry_after(wait), 20);
    /* A refusal takes nothing: still 20 s from the same moment. */
    assert_int_equal(take(rl, 3, 1, 100.0, &wait), 0);
    assert_wait(wait, 20.0);
    ratelimit_free(rl);
}

static void test_refill(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_new();
    double wait = 0;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(take(rl, 3, 1, 100.0, &wait), 1);
    }
    /* Continuous: 5 s later a quarter of a token is back, 15 s are left. */
    assert_int_equal(take(rl, 3, 1, 105.0, &wait), 0);
    assert_wait(wait, 15.0);
    /* 20 s after: exactly one token, taken; none for the next. */
    assert_int_equal(take(rl, 3, 1, 120.0, &wait), 1);
    assert_int_equal(take(rl, 3, 1, 120.0, &wait), 0);
    assert_wait(wait, 20.0);
    /* A clock that goes back refills nothing (and empties nothing). */
    assert_int_equal(take(rl, 3, 1, 90.0, &wait), 0);
    assert_wait(wait, 20.0);
    ratelimit_free(rl);
}

static void test_capacity(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_new();
    double wait = 0;
    /* An hour idle fills the bucket to one minute's worth, not more. */
    assert_int_equal(take(rl, 60, 1, 0.0, &wait), 1);
    for (int i = 0; i < 60; i++) {
        assert_int_equal(take(rl, 60, 1, 3600.0, &wait), 1);
    }
    assert_int_equal(take(rl, 60, 1, 3600.0, &wait), 0);
    assert_wait(wait, 1.0);
    /* A limit lowered: the level is cut to it at once. */
    assert_int_equal(ratelimit_take(rl, RATELIMIT_RPM, "b", NULL, NULL, 10, 1, 0.0, &wait), 1);
    assert_int_equal(ratelimit_take(rl, RATELIMIT_RPM, "b", NULL, NULL, 2, 2, 0.0, &wait), 1);
    assert_int_equal(ratelimit_take(rl, RATELIMIT_RPM, "b", NULL, NULL, 2, 1, 0.0, &wait), 0);
    assert_wait(wait, 30.0);
    ratelimit_free(rl);
}

static void test_tokens_and_debt(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_new();
    double wait = 0;
    const long long lim = 600; /* 10 tokens a second */
    /* A reservation of 100, then the call used 150: 50 more taken without a check. */
    assert_int_equal(ratelimit_take(rl, RATELIMIT_TPM, "acme", NULL, NULL, lim, 100, 0.0, &wait),
                     1);
    ratelimit_give(rl, RATELIMIT_TPM, "acme", NULL, NULL, lim, 100 - 150, 0.0);
    /* 450 left: 450 passes, 451 waits 0.1 s. */
    assert_int_equal(ratelimit_take(rl, RATELIMIT_TPM, "acme", NULL, NULL, lim, 451, 0.0, &wait),
                     0);
    assert_wait(wait, 0.1);
    /* A call that used less gives the rest back, never past the capacity. */
    assert_int_equal(ratelimit_take(rl, RATELIMIT_TPM, "acme", NULL, NULL, lim, 450, 0.0, &wait),
                     1);
    ratelimit_give(rl, RATELIMIT_TPM, "acme", NULL, NULL, lim, 10000, 0.0);
    assert_int_equal(ratelimit_take(rl, RATELIMIT_TPM, "acme", NULL, NULL, lim, 601, 0.0, &wait),
                     1); /* full again: a request over the limit passes a full bucket ... */
    /* ... and leaves it one token in debt: a token needs (1 + 1) / 10 s. */
    assert_int_equal(ratelimit_take(rl, RATELIMIT_TPM, "acme", NULL, NULL, lim, 1, 0.0, &wait), 0);
    assert_wait(wait, 0.2);
    /* Over the limit but the bucket not full: refused until it is full. */
    assert_int_equal(ratelimit_take(rl, RATELIMIT_TPM, "acme", NULL, NULL, lim, 5000, 0.0, &wait),
                     0);
    assert_wait(wait, 60.1);
    ratelimit_free(rl);
}

static void test_debt_bound(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_new();
    double wait = 0;
    /* tpm 60 and a call that used a million tokens: at most one minute of debt. */
    assert_int_equal(ratelimit_take(rl, RATELIMIT_TPM, "acme", NULL, NULL, 60, 10, 0.0, &wait), 1);
    ratelimit_give(rl, RATELIMIT_TPM, "acme", NULL, NULL, 60, 10 - 1000000, 0.0);
    assert_int_equal(ratelimit_take(rl, RATELIMIT_TPM, "acme", NULL, NULL, 60, 60, 0.0, &wait), 0);
    assert_wait(wait, 120.0);
    assert_int_equal(ratelimit_retry_after(wait), 120);
    /* Debt on a bucket that was dropped (full): it starts full, then pays. */
    ratelimit_give(rl, RATELIMIT_TPM, "other", NULL, NULL, 60, -90, 0.0);
    assert_int_equal(ratelimit_take(rl, RATELIMIT_TPM, "other", NULL, NULL, 60, 1, 0.0, &wait), 0);
    assert_wait(wait, 31.0);
    /* Giving back to a bucket that is gone (full) records nothing. */
    ratelimit_give(rl, RATELIMIT_TPM, "third", NULL, NULL, 60, 30, 0.0);
    assert_int_equal(ratelimit_count(rl), 2);
    ratelimit_free(rl);
}

static void test_retry_after(void **state)
{
    (void)state;
    assert_int_equal(ratelimit_retry_after(0), 0);
    assert_int_equal(ratelimit_retry_after(-3), 0);
    assert_int_equal(ratelimit_retry_after(0.001), 1);
    assert_int_equal(ratelimit_retry_after(0.999), 1);
    assert_int_equal(ratelimit_retry_after(1.0), 1);
    assert_int_equal(ratelimit_retry_after(1.0000000001), 1); /* noise, not a second more */
    assert_int_equal(ratelimit_retry_after(1.01), 2);
    assert_int_equal(ratelimit_retry_after(19.5), 20);
    assert_int_equal(ratelimit_retry_after(120.0), 120);
    assert_int_equal(ratelimit_retry_after(1e30), 120);
}

static void test_limit_of(void **state)
{
    (void)state;
    json_t *v = json_loads("[null, 0, -1, 3, 1000000000, 1000000001, 9223372036854775807, 2.5, "
                           "\"60\", true, [], {}]",
                           0, NULL);
    assert_non_null(v);
    static const long long want[] = {0, 0, 0, 3, 1000000000, 1000000000, 1000000000, 0, 0, 0, 0, 0};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        if (ratelimit_limit_of(json_array_get(v, i)) != want[i]) {
            fail_msg("case %zu: %lld", i, ratelimit_limit_of(json_array_get(v, i)));
        }
    }
    assert_int_equal(ratelimit_limit_of(NULL), 0);
    json_decref(v);
}

static void test_keys(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_new();
    double wait = 0;
    /* Kind, tenant, provider and key_id each name a distinct bucket. */
    assert_int_equal(ratelimit_take(rl, RATELIMIT_KEY, "acme", "openai", "k1", 1, 1, 0.0, &wait),
                     1);
    assert_int_equal(ratelimit_take(rl, RATELIMIT_KEY, "acme", "openai", "k1", 1, 1, 0.0, &wait),
                     0);
    assert_wait(wait, 60.0);
    assert_int_equal(ratelimit_take(rl, RATELIMIT_KEY, "acme", "openai", "k2", 1, 1, 0.0, &wait),
                     1);
    assert_int_equal(ratelimit_take(rl, RATELIMIT_KEY, "acme", "anthropic", "k1", 1, 1, 0.0, &wait),
                     1);
    assert_int_equal(ratelimit_take(rl, RATELIMIT_KEY, "beta", "openai", "k1", 1, 1, 0.0, &wait),
                     1);
    assert_int_equal(ratelimit_take(rl, RATELIMIT_RPM, "acme", NULL, NULL, 1, 1, 0.0, &wait), 1);
    assert_int_equal(ratelimit_take(rl, RATELIMIT_TPM, "acme", NULL, NULL, 1, 1, 0.0, &wait), 1);
    assert_int_equal(ratelimit_count(rl), 6);
    /* No limit: always taken, nothing recorded; NULL table likewise. */
    assert_int_equal(ratelimit_take(rl, RATELIMIT_RPM, "free", NULL, NULL, 0, 1, 0.0, &wait), 1);
    assert_int_equal(ratelimit_take(rl, RATELIMIT_RPM, "free", NULL, NULL, -5, 1, 0.0, &wait), 1);
    assert_int_equal(ratelimit_take(NULL, RATELIMIT_RPM, "free", NULL, NULL, 1, 1, 0.0, &wait), 1);
    ratelimit_give(NULL, RATELIMIT_RPM, "free", NULL, NULL, 1, -1, 0.0);
    /* Taking nothing from a bucket not held records nothing. */
    assert_int_equal(ratelimit_take(rl, RATELIMIT_TPM, "zero", NULL, NULL, 5, 0, 0.0, &wait), 1);
    assert_int_equal(ratelimit_count(rl), 6);
    ratelimit_free(rl);
    ratelimit_free(NULL);
}

static void test_table_bound(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_new();
    double wait = 0;
    char t[32];
    /* RATELIMIT_MAX_ENTRIES buckets in use (rpm 2, one token taken each). */
    for (int i = 0; i < RATELIMIT_MAX_ENTRIES; i++) {
        snprintf(t, sizeof(t), "t%d", i);
        assert_int_equal(ratelimit_take(rl, RATELIMIT_RPM, t, NULL, NULL, 2, 1, 0.0, &wait), 1);
    }
    assert_int_equal(ratelimit_count(rl), RATELIMIT_MAX_ENTRIES);
    /* One more is not recorded: the call passes (-1), the table does not grow. */
    assert_int_equal(ratelimit_take(rl, RATELIMIT_RPM, "late", NULL, NULL, 2, 1, 1.0, &wait), -1);
    assert_int_equal(ratelimit_count(rl), RATELIMIT_MAX_ENTRIES);
    /* Buckets already held still work. */
    assert_int_equal(ratelimit_take(rl, RATELIMIT_RPM, "t7", NULL, NULL, 2, 1, 1.0, &wait), 1);
    assert_int_equal(ratelimit_take(rl, RATELIMIT_RPM, "t7", NULL, NULL, 2, 1, 1.0, &wait), 0);
    /*
     * 30 s later every bucket but t7's is full again: the table has room, and
     * the sweep drops the full ones within 4096 / 8 lookups.
     */
    assert_int_equal(ratelimit_take(rl, RATELIMIT_RPM, "late", NULL, NULL, 2, 1, 30.0, &wait), 1);
    for (int i = 0; i < 512; i++) {
        assert_int_equal(ratelimit_take(rl, RATELIMIT_RPM, "probe", NULL, NULL, 2, 0, 30.0, &wait),
                         1);
    }
    assert_int_equal(ratelimit_count(rl), 2);
    /* Full of buckets in use, then all full by now: a new one is recorded, never refused. */
    for (int i = 0; ratelimit_count(rl) < RATELIMIT_MAX_ENTRIES; i++) {
        snprintf(t, sizeof(t), "u%d", i);
        assert_int_equal(ratelimit_take(rl, RATELIMIT_RPM, t, NULL, NULL, 2, 1, 31.0, &wait), 1);
    }
    assert_int_equal(ratelimit_take(rl, RATELIMIT_RPM, "later", NULL, NULL, 2, 1, 100.0, &wait), 1);
    assert_true(ratelimit_count(rl) < RATELIMIT_MAX_ENTRIES);
    ratelimit_free(rl);
}

static void test_full_dropped(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_new();
    double wait = 0;
    assert_int_equal(take(rl, 60, 30, 0.0, &wait), 1);
    assert_int_equal(ratelimit_take(rl, RATELIMIT_RPM, "b", NULL, NULL, 60, 1, 0.0, &wait), 1);
    assert_int_equal(ratelimit_count(rl), 2);
    /* At 1 s b is full: a lookup of it drops it; acme is not (29 + 1 of 60). */
    assert_int_equal(ratelimit_take(rl, RATELIMIT_RPM, "b", NULL, NULL, 60, 0, 1.0, &wait), 1);
    assert_int_equal(ratelimit_count(rl), 1); /* acme */
    assert_int_equal(ratelimit_take(rl, RATELIMIT_RPM, "c", NULL, NULL, 60, 60, 1.0, &wait), 1);
    /* A dropped bucket comes back full: b takes all 60 at once. */
    assert_int_equal(ratelimit_take(rl, RATELIMIT_RPM, "b", NULL, NULL, 60, 60, 1.0, &wait), 1);
    assert_int_equal(ratelimit_count(rl), 3);
    /*
     * acme at 30 s: full, dropped by the sweep, which passes every slot within
     * slots / slots-per-lookup lookups (4096 / 8), whichever buckets they ask
     * for; b and c, whose 60 are back only at 61 s, stay.
     */
    for (int i = 0; i < 512; i++) {
        assert_int_equal(ratelimit_take(rl, RATELIMIT_RPM, "probe", NULL, NULL, 60, 0, 30.0, &wait),
                         1);
    }
    assert_int_equal(ratelimit_count(rl), 2);
    assert_int_equal(ratelimit_take(rl, RATELIMIT_RPM, "b", NULL, NULL, 60, 60, 30.0, &wait), 0);
    assert_wait(wait, 31.0);
    ratelimit_free(rl);
}

/*
 * Many buckets in use: every one is found (constant-time lookup in its hash
 * chain) and keeps its own level.
 */
static void test_many_buckets(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_new();
    double wait = 0;
    char t[32];
    for (int i = 0; i < 3000; i++) {
        snprintf(t, sizeof(t), "tenant-%d", i);
        assert_int_equal(ratelimit_take(rl, RATELIMIT_RPM, t, NULL, NULL, 2, 2, 0.0, &wait), 1);
    }
    assert_int_equal(ratelimit_count(rl), 3000);
    for (int i = 0; i < 3000; i++) {
        snprintf(t, sizeof(t), "tenant-%d", i);
        assert_int_equal(ratelimit_take(rl, RATELIMIT_RPM, t, NULL, NULL, 2, 1, 0.0, &wait), 0);
        assert_wait(wait, 30.0);
    }
    assert_int_equal(ratelimit_count(rl), 3000);
    ratelimit_free(rl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_bucket_full), cmocka_unit_test(test_refill),
        cmocka_unit_test(test_capacity),        cmocka_unit_test(test_tokens_and_debt),
        cmocka_unit_test(test_debt_bound),      cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_limit_of),        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_table_bound),     cmocka_unit_test(test_full_dropped),
        cmocka_unit_test(test_many_buckets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
