/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for agent/latency: the moving averages (plain and streamed
 * apart), the success share, the ttl after which a measurement is forgotten,
 * failures without an answer, the "fastest" order (unknown first, measured
 * by score in 10 % steps with ties kept as given, failing last), probes, the size
 * bound, a NULL table, and the metrics text.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "agent/latency.h"
#include "agent/route.h"

#define TTL 300.0

static void test_averages(void **state)
{
    (void)state;
    struct latency *l = latency_new();
    assert_non_null(l);
    assert_true(latency_score(l, "openai", "gpt-4o", false, 100, TTL) == LATENCY_UNKNOWN);
    latency_answered(l, "openai", "gpt-4o", false, 2.0, 100, TTL);
    /* The first measurement is taken as it is. */
    assert_true(fabs(latency_score(l, "openai", "gpt-4o", false, 100, TTL) - 2.0) < 1e-9);
    /* A stream is measured apart (time to its first byte): still unknown. */
    assert_true(latency_score(l, "openai", "gpt-4o", true, 100, TTL) == LATENCY_UNKNOWN);
    /* Another model of the same provider is its own. */
    assert_true(latency_score(l, "openai", "gpt-4o-mini", false, 100, TTL) == LATENCY_UNKNOWN);
    latency_answered(l, "openai", "gpt-4o", false, 1.0, 101, TTL);
    /* 2 + 0.25 * (1 - 2) */
    assert_true(fabs(latency_score(l, "openai", "gpt-4o", false, 101, TTL) - 1.75) < 1e-9);
    latency_answered(l, "openai", "gpt-4o", true, 0.2, 102, TTL);
    assert_true(fabs(latency_score(l, "openai", "gpt-4o", true, 102, TTL) - 0.2) < 1e-9);
    assert_int_equal(latency_count(l), 1);
    /* Nonsense measurements are not taken. */
    latency_answered(l, "openai", "gpt-4o", false, -1.0, 103, TTL);
    latency_answered(l, "openai", "gpt-4o", false, NAN, 103, TTL);
    assert_true(fabs(latency_score(l, "openai", "gpt-4o", false, 103, TTL) - 1.75) < 1e-9);
    latency_free(l);
    latency_free(NULL);
}

static void test_ttl(void **state)
{
    (void)state;
    struct latency *l = latency_new();
    latency_answered(l, "openai", "gpt-4o", false, 1.0, 0, TTL);
    /* A measurement at monotonic time 0 counts. */
    assert_true(fabs(latency_score(l, "openai", "gpt-4o", false, 0, TTL) - 1.0) < 1e-9);
    assert_true(fabs(latency_score(l, "openai", "gpt-4o", false, TTL, TTL) - 1.0) < 1e-9);
    /* Past the ttl it is forgotten: unknown, to be measured again. */
    assert_true(latency_score(l, "openai", "gpt-4o", false, TTL + 0.5, TTL) == LATENCY_UNKNOWN);
    /* A new measurement then counts as it is, not averaged with the forgotten one. */
    latency_answered(l, "openai", "gpt-4o", false, 3.0, TTL + 1, TTL);
    assert_true(fabs(latency_score(l, "openai", "gpt-4o", false, TTL + 1, TTL) - 3.0) < 1e-9);
    /* A stream measured long ago is averaged anew too, while the plain one is fresh. */
    latency_answered(l, "openai", "gpt-4o", true, 9.0, 1, TTL);
    latency_answered(l, "openai", "gpt-4o", true, 0.5, TTL + 2, TTL);
    assert_true(fabs(latency_score(l, "openai", "gpt-4o", true, TTL + 2, TTL) - 0.5) < 1e-9);
    /* A record all forgotten starts anew: an old success share counts no more. */
    latency_answered(l, "flaky", "m", false, 1.0, 0, TTL);
    for (int i = 0; i < 20; i++) {
        latency_failed(l, "flaky", "m", 1, TTL);
    }
    assert_true(latency_score(l, "flaky", "m", false, 1, TTL) > 10);
    latency_answered(l, "flaky", "m", false, 1.0, 2 + TTL, TTL);
    assert_true(fabs(latency_score(l, "flaky", "m", false, 2 + TTL, TTL) - 1.0) < 1e-9);
    latency_free(l);
}

static void test_failures(void **state)
{
    (void)state;
    struct latency *l = latency_new();
    /* Only failures: failing (ranked last), until the ttl forgets them too. */
    latency_failed(l, "down", "m", 10, TTL);
    assert_true(latency_score(l, "down", "m", false, 11, TTL) == LATENCY_FAILING);
    assert_true(latency_score(l, "down", "m", true, 11, TTL) == LATENCY_FAILING);
    assert_true(latency_score(l, "down", "m", false, 10 + TTL + 1, TTL) == LATENCY_UNKNOWN);
    /* Failures lower the success share: the expected time grows. */
    latency_answered(l, "flaky", "m", false, 1.0, 20, TTL);
    latency_failed(l, "flaky", "m", 21, TTL);
    double s = latency_score(l, "flaky", "m", false, 21, TTL);
    /* success 1 -> 1 (answer) -> 0.75 (failure): 1 / 0.75 */
    assert_true(fabs(s - 1.0 / 0.75) < 1e-9);
    latency_answered(l, "flaky", "m", false, 1.0, 22, TTL);
    assert_true(latency_score(l, "flaky", "m", false, 22, TTL) < s);
    /* However many failures, the share stops at LATENCY_MIN_SUCCESS: the score stays finite. */
    for (int i = 0; i < 200; i++) {
        latency_failed(l, "flaky", "m", 23, TTL);
    }
    double worst = latency_score(l, "flaky", "m", false, 23, TTL);
    assert_true(isfinite(worst) && worst < LATENCY_FAILING);
    assert_true(worst <= 1.0 / LATENCY_MIN_SUCCESS + 1e-9);
    latency_free(l);
}

static void test_rank(void **state)
{
    (void)state;
    struct latency *l = latency_new();
    latency_answered(l, "slow", "m", false, 2.0, 100, TTL);
    latency_answered(l, "fast", "m", false, 0.5, 100, TTL);
    latency_answered(l, "fast2", "m", false, 0.52, 100, TTL); /* within the 10 % step of fast */
    latency_failed(l, "down", "m", 100, TTL);
    const char *p[] = {"down", "slow", "fast2", "new", "fast"};
    const char *m[] = {"m", "m", "m", "m", "m"};
    size_t order[5];
    latency_rank(l, p, m, 5, false, 101, TTL, order);
    /* unknown first; then by score, near-equal ones in the order given; failing last */
    assert_string_equal(p[order[0]], "new");
    assert_string_equal(p[order[1]], "fast2");
    assert_string_equal(p[order[2]], "fast");
    assert_string_equal(p[order[3]], "slow");
    assert_string_equal(p[order[4]], "down");
    /* The order given decides between near-equal ones, the other way round too. */
    const char *q[] = {"fast", "fast2"};
    latency_rank(l, q, m, 2, false, 101, TTL, order);
    assert_int_equal(order[0], 0);
    assert_int_equal(order[1], 1);
    /* Streams: nothing measured, the order given. */
    latency_rank(l, p, m, 5, true, 101, TTL, order);
    assert_string_equal(p[order[0]], "slow");
    assert_string_equal(p[order[4]], "down"); /* a failure counts for both kinds */
    /* A NULL table: everything unknown, the order given. */
    latency_rank(NULL, p, m, 5, false, 101, TTL, order);
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(order[i], i);
    }
    latency_free(l);
}

/*
 * A probe: an unknown pair a call is measuring is not unknown for the calls
 * that start meanwhile: its expired average if it had one, else behind the
 * measured ones; the measurement (or the ttl) ends the probe.
 */
static void test_probe(void **state)
{
    (void)state;
    struct latency *l = latency_new();
    latency_answered(l, "slow", "m", false, 4.0, 0, TTL);
    latency_answered(l, "fast", "m", false, 0.5, 0, TTL);
    /* Later both are forgotten, then fast is measured again: slow is unknown, tried first. */
    latency_answered(l, "fast", "m", false, 0.5, TTL + 10, TTL);
    const char *p[] = {"slow", "fast", "new"};
    const char *m[] = {"m", "m", "m"};
    size_t order[3];
    double now = TTL + 11;
    assert_true(latency_score(l, "slow", "m", false, now, TTL) == LATENCY_UNKNOWN);
    latency_rank(l, p, m, 3, false, now, TTL, order);
    assert_string_equal(p[order[0]], "slow");
    /* A call sets out to measure slow and new: meanwhile slow ranks by its old 4 s, behind fast,
       and new (never measured) behind both. */
    latency_probe(l, "slow", "m", false, now, TTL);
    latency_probe(l, "new", "m", false, now, TTL);
    assert_true(fabs(latency_score(l, "slow", "m", false, now + 1, TTL) - 4.0) < 1e-9);
    assert_true(latency_score(l, "new", "m", false, now + 1, TTL) == LATENCY_PROBING);
    latency_rank(l, p, m, 3, false, now + 1, TTL, order);
    assert_string_equal(p[order[0]], "fast");
    assert_string_equal(p[order[1]], "slow");
    assert_string_equal(p[order[2]], "new");
    /* A probe of the plain kind leaves streams unknown. */
    assert_true(latency_score(l, "slow", "m", true, now + 1, TTL) == LATENCY_UNKNOWN);
    /* The measurement ends the probe: the new average, not the old one. */
    latency_answered(l, "slow", "m", false, 0.1, now + 2, TTL);
    assert_true(fabs(latency_score(l, "slow", "m", false, now + 2, TTL) - 0.1) < 1e-9);
    /* A probe whose call never ended (the app left) lasts the ttl, then it is unknown again. */
    assert_true(latency_score(l, "new", "m", false, now + TTL, TTL) == LATENCY_PROBING);
    assert_true(latency_score(l, "new", "m", false, now + TTL + 1, TTL) == LATENCY_UNKNOWN);
    /* A failed probe: failing, ranked last. */
    latency_probe(l, "new", "m", false, now + TTL + 2, TTL);
    latency_failed(l, "new", "m", now + TTL + 3, TTL);
    assert_true(latency_score(l, "new", "m", false, now + TTL + 3, TTL) == LATENCY_FAILING);
    latency_probe(NULL, "p", "m", false, 1, TTL); /* a NULL table: nothing */
    latency_free(l);
}

static void test_bound_and_names(void **state)
{
    (void)state;
    struct latency *l = latency_new();
    char model[32];
    for (int i = 0; i < LATENCY_MAX_ENTRIES + 40; i++) {
        snprintf(model, sizeof(model), "m%d", i);
        latency_answered(l, "p", model, false, 1.0, (double)i, TTL);
    }
    assert_int_equal(latency_count(l), LATENCY_MAX_ENTRIES);
    /* The records touched longest ago were replaced; the newest are there. */
    assert_true(latency_score(l, "p", "m0", false, 400, 1e9) == LATENCY_UNKNOWN);
    snprintf(model, sizeof(model), "m%d", LATENCY_MAX_ENTRIES + 39);
    assert_true(latency_score(l, "p", model, false, 400, 1e9) == 1.0);
    /* Names longer than the router plans are not recorded. */
    char longm[ROUTE_MAX_MODEL + 2];
    memset(longm, 'x', sizeof(longm) - 1);
    longm[sizeof(longm) - 1] = '\0';
    latency_answered(l, "q", longm, false, 1.0, 500, TTL);
    assert_true(latency_score(l, "q", longm, false, 500, TTL) == LATENCY_UNKNOWN);
    latency_free(l);
    /* A NULL table records nothing and knows nothing. */
    latency_answered(NULL, "p", "m", false, 1.0, 1, TTL);
    latency_failed(NULL, "p", "m", 1, TTL);
    assert_true(latency_score(NULL, "p", "m", false, 1, TTL) == LATENCY_UNKNOWN);
    assert_int_equal(latency_count(NULL), 0);
}

static void test_render(void **state)
{
    (void)state;
    struct latency *l = latency_new();
    struct buf b;
    buf_init(&b, 1 << 20);
    /* Empty: the families are still described. */
    assert_int_equal(latency_render(l, &b, 0, TTL), ERR_OK);
    assert_non_null(strstr(b.data, "# TYPE byok_provider_latency_seconds gauge\n"));
    assert_non_null(strstr(b.data, "# TYPE byok_provider_success_ratio gauge\n"));
    assert_null(strstr(b.data, "byok_provider_latency_seconds{"));
    buf_done(&b);
    buf_init(&b, 1 << 20);
    latency_answered(l, "openai", "gpt-4o", true, 0.25, 10, TTL);
    latency_answered(l, "openrouter", "meta\"llama", false, 1.5, 10, TTL);
    assert_int_equal(latency_render(l, &b, 11, TTL), ERR_OK);
    const char *t = b.data;
    assert_non_null(strstr(
        t, "byok_provider_latency_seconds{provider=\"openai\",model=\"gpt-4o\",stream=\"true\"} "
           "0.250000\n"));
    /* Label values are escaped. */
    assert_non_null(strstr(t, "model=\"meta\\\"llama\",stream=\"false\"} 1.500000\n"));
    assert_null(strstr(t, "model=\"gpt-4o\",stream=\"false\""));
    assert_non_null(strstr(t, "byok_provider_success_ratio{provider=\"openai\",model=\"gpt-4o\"}"));
    buf_done(&b);
    /* Past the ttl the averages are not shown. */
    buf_init(&b, 1 << 20);
    assert_int_equal(latency_render(l, &b, 10 + TTL + 1, TTL), ERR_OK);
    assert_null(strstr(b.data, "byok_provider_latency_seconds{"));
    buf_done(&b);
    latency_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_averages), cmocka_unit_test(test_ttl),
        cmocka_unit_test(test_failures), cmocka_unit_test(test_rank),
        cmocka_unit_test(test_probe),    cmocka_unit_test(test_bound_and_names),
        cmocka_unit_test(test_render),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
