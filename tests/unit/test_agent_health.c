/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for agent/health: consecutive failures counted per provider,
 * the threshold, the demotion period, half-open (a failure after the period
 * demotes again at once), a success clearing the record, the stable order
 * (healthy first, then demoted, each as given), tracking off at threshold 0,
 * a reload's cap and the size bound.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "agent/health.h"

static void test_threshold(void **state)
{
    (void)state;
    struct health *h = health_new();
    assert_non_null(h);
    unsigned n = 0;
    assert_int_equal(health_failure(h, "openai", 3, 30, 100, &n), HEALTH_SAME);
    assert_int_equal(n, 1);
    assert_int_equal(health_failure(h, "openai", 3, 30, 101, &n), HEALTH_SAME);
    assert_int_equal(n, 2);
    assert_true(health_demoted(h, "openai", 101) == 0);
    /* Another provider's failures are its own. */
    assert_int_equal(health_failure(h, "anthropic", 3, 30, 101, &n), HEALTH_SAME);
    assert_int_equal(n, 1);
    assert_int_equal(health_failure(h, "openai", 3, 30, 102, &n), HEALTH_DEMOTED);
    assert_int_equal(n, 3);
    assert_true(health_demoted(h, "openai", 102) == 30);
    assert_true(health_demoted(h, "anthropic", 102) == 0);
    assert_true(health_demoted(h, "azure", 102) == 0);
    assert_int_equal(health_count(h), 2);
    health_free(h);
    health_free(NULL);
}

static void test_period_and_half_open(void **state)
{
    (void)state;
    struct health *h = health_new();
    assert_int_equal(health_failure(h, "openai", 2, 10, 0, NULL), HEALTH_SAME);
    assert_int_equal(health_failure(h, "openai", 2, 10, 1, NULL), HEALTH_DEMOTED);
    assert_true(health_demoted(h, "openai", 5) == 6);
    assert_true(health_demoted(h, "openai", 10.999) > 0);
    /* The period is over: back in its place. */
    assert_true(health_demoted(h, "openai", 11) == 0);
    assert_true(health_demoted(h, "openai", 50) == 0);
    /* On probation: its next failure demotes it again at once (half-open). */
    unsigned n = 0;
    assert_int_equal(health_failure(h, "openai", 2, 10, 50, &n), HEALTH_DEMOTED);
    assert_int_equal(n, 3);
    assert_true(health_demoted(h, "openai", 55) == 5);
    /* A failure while demoted (tried last) keeps it demoted, from then on; no new event. */
    assert_int_equal(health_failure(h, "openai", 2, 10, 58, NULL), HEALTH_SAME);
    assert_true(health_demoted(h, "openai", 65) == 3);
    /* An answer while demoted clears it at once, and says so. */
    assert_int_equal(health_success(h, "openai"), HEALTH_RECOVERED);
    assert_true(health_demoted(h, "openai", 65) == 0);
    assert_int_equal(health_count(h), 0);
    /* Cleared: the count starts again, no probation. */
    assert_int_equal(health_failure(h, "openai", 2, 10, 70, NULL), HEALTH_SAME);
    assert_true(health_demoted(h, "openai", 70) == 0);
    health_free(h);
}

static void test_success_resets(void **state)
{
    (void)state;
    struct health *h = health_new();
    assert_int_equal(health_failure(h, "openai", 3, 30, 0, NULL), HEALTH_SAME);
    assert_int_equal(health_failure(h, "openai", 3, 30, 0, NULL), HEALTH_SAME);
    /* Not demoted: a success is no recovery, but it clears the count. */
    assert_int_equal(health_success(h, "openai"), HEALTH_SAME);
    assert_int_equal(health_count(h), 0);
    unsigned n = 0;
    assert_int_equal(health_failure(h, "openai", 3, 30, 1, &n), HEALTH_SAME);
    assert_int_equal(n, 1);
    assert_int_equal(health_failure(h, "openai", 3, 30, 1, NULL), HEALTH_SAME);
    assert_true(health_demoted(h, "openai", 1) == 0);
    /* Successes of providers with no record change nothing. */
    assert_int_equal(health_success(h, "anthropic"), HEALTH_SAME);
    assert_int_equal(health_count(h), 1);
    /* A recovery after the period (on probation, not demoted) is told too. */
    assert_int_equal(health_failure(h, "openai", 3, 30, 2, NULL), HEALTH_DEMOTED);
    assert_int_equal(health_success(h, "openai"), HEALTH_RECOVERED);
    health_free(h);
}

static void test_off(void **state)
{
    (void)state;
    struct health *h = health_new();
    unsigned n = 42;
    for (int i = 0; i < 10; i++) {
        assert_int_equal(health_failure(h, "openai", 0, 30, i, &n), HEALTH_SAME);
        assert_int_equal(n, 0);
    }
    assert_int_equal(health_count(h), 0);
    assert_true(health_demoted(h, "openai", 5) == 0);
    /* A NULL table (not created) is no table. */
    assert_int_equal(health_failure(NULL, "openai", 1, 30, 0, &n), HEALTH_SAME);
    assert_int_equal(health_success(NULL, "openai"), HEALTH_SAME);
    assert_true(health_demoted(NULL, "openai", 0) == 0);
    assert_int_equal(health_count(NULL), 0);
    /* threshold 1: the first failure demotes. */
    assert_int_equal(health_failure(h, "openai", 1, 30, 0, NULL), HEALTH_DEMOTED);
    health_free(h);
}

static void test_order_stable(void **state)
{
    (void)state;
    struct health *h = health_new();
    const char *names[] = {"a", "b", "c", "d", "e"};
    size_t order[5];
    /* Nobody demoted: the order given. */
    assert_int_equal(health_order(h, names, 5, 0, order), 0);
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(order[i], i);
    }
    assert_int_equal(health_failure(h, "d", 1, 10, 0, NULL), HEALTH_DEMOTED);
    assert_int_equal(health_failure(h, "a", 1, 10, 0, NULL), HEALTH_DEMOTED);
    /* A failing provider under the threshold keeps its place. */
    assert_int_equal(health_failure(h, "b", 2, 10, 0, NULL), HEALTH_SAME);
    assert_int_equal(health_order(h, names, 5, 1, order), 2);
    const size_t want[] = {1, 2, 4, 0, 3};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(order[i], want[i]);
    }
    /* Only demoted ones: still all of them, in the order given (never fewer candidates). */
    const char *only[] = {"d", "a"};
    size_t o2[2];
    assert_int_equal(health_order(h, only, 2, 1, o2), 2);
    assert_int_equal(o2[0], 0);
    assert_int_equal(o2[1], 1);
    /* After the period the order is the one given again. */
    assert_int_equal(health_order(h, names, 5, 10, order), 0);
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(order[i], i);
    }
    /* A single candidate, demoted or not, stays. */
    assert_int_equal(health_failure(h, "e", 1, 10, 20, NULL), HEALTH_DEMOTED);
    assert_int_equal(health_order(h, &names[4], 1, 21, o2), 1);
    assert_int_equal(o2[0], 0);
    assert_int_equal(health_order(h, names, 0, 21, order), 0);
    health_free(h);
}

static void test_configure(void **state)
{
    (void)state;
    struct health *h = health_new();
    assert_int_equal(health_failure(h, "openai", 1, 60, 0, NULL), HEALTH_DEMOTED);
    assert_int_equal(health_failure(h, "anthropic", 1, 5, 0, NULL), HEALTH_DEMOTED);
    /* A reload to a shorter period cuts running demotions to it, keeps shorter ones. */
    health_configure(h, 1, 10, 1);
    assert_true(health_demoted(h, "openai", 1) == 10);
    assert_true(health_demoted(h, "anthropic", 1) == 4);
    assert_int_equal(health_count(h), 2);
    /* Tracking turned off: every record goes. */
    health_configure(h, 0, 10, 2);
    assert_int_equal(health_count(h), 0);
    assert_true(health_demoted(h, "openai", 2) == 0);
    health_configure(NULL, 0, 10, 2);
    health_free(h);
}

static void test_bound(void **state)
{
    (void)state;
    struct health *h = health_new();
    char name[32];
    for (size_t i = 0; i < HEALTH_MAX_ENTRIES; i++) {
        snprintf(name, sizeof(name), "p%zu", i);
        assert_int_equal(health_failure(h, name, 1, 10000, (double)i, NULL), HEALTH_DEMOTED);
    }
    assert_int_equal(health_count(h), HEALTH_MAX_ENTRIES);
    /* Full: the record touched longest ago (p0) makes room. */
    assert_int_equal(health_failure(h, "newcomer", 1, 100, 1000, NULL), HEALTH_DEMOTED);
    assert_int_equal(health_count(h), HEALTH_MAX_ENTRIES);
    assert_true(health_demoted(h, "p0", 1000) == 0);
    assert_true(health_demoted(h, "p1", 1000) > 0);
    assert_true(health_demoted(h, "newcomer", 1000) > 0);
    /* A name longer than a provider name is compared by its first CONFIG_MAX_NAME bytes. */
    char longname[CONFIG_MAX_NAME + 10];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(health_failure(h, longname, 1, 100, 2000, NULL), HEALTH_DEMOTED);
    assert_true(health_demoted(h, longname, 2000) > 0);
    health_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threshold),      cmocka_unit_test(test_period_and_half_open),
        cmocka_unit_test(test_success_resets), cmocka_unit_test(test_off),
        cmocka_unit_test(test_order_stable),   cmocka_unit_test(test_configure),
        cmocka_unit_test(test_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
