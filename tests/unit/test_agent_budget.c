/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for agent/budget (with agent/vault and agent/upstream under it):
 * one lease request shared by the calls that need it, reservations and
 * settling, what a request says (node, unreported, request, min), a short
 * lease refusing what it cannot cover without asking again, Vault errors,
 * a plugin without the path, a changed cap, cancellation. Vault is the
 * scripted fake of tests/unit/helpers/fakevault on a Unix socket.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/budget.h"
#include "agent/config.h"
#include "agent/jalloc.h"
#include "agent/upstream.h"
#include "agent/vault.h"
#include "common/secret.h"
#include "tests/unit/helpers/fakevault.h"

static struct fakevault fv;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
/* What the fake answers next, and what it saw. Under mu. */
static struct {
    int status;
    char reply[1024];
    int requests;
    char last_path[256];
    double unreported, request, min;
    char node[160];
} V;

static void vault_handle(const struct fakevault_req *r, int *status, char *out)
{
    if (strcmp(r->path, "/v1/auth/token/lookup-self") == 0) {
        *status = 200;
        snprintf(out, FAKEVAULT_MAX_REPLY, "{\"data\":{\"ttl\":0,\"renewable\":false}}");
        return;
    }
    pthread_mutex_lock(&mu);
    V.requests++;
    snprintf(V.last_path, sizeof(V.last_path), "%s", r->path);
    json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
    V.unreported = json_number_value(json_object_get(j, "unreported_usd"));
    V.request = json_number_value(json_object_get(j, "request_usd"));
    V.min = json_number_value(json_object_get(j, "min_usd"));
    snprintf(V.node, sizeof(V.node), "%s",
             json_string_value(json_object_get(j, "node"))
                 ? json_string_value(json_object_get(j, "node"))
                 : "");
    json_decref(j);
    *status = V.status;
    snprintf(out, FAKEVAULT_MAX_REPLY, "%s", V.reply);
    pthread_mutex_unlock(&mu);
}

/* The next answer: a lease of granted USD (or unlimited) for ttl seconds. */
static void answer_lease(double granted, int ttl, bool unlimited)
{
    pthread_mutex_lock(&mu);
    V.status = 200;
    snprintf(V.reply, sizeof(V.reply),
             "{\"data\":{\"unlimited\":%s,\"month\":\"2026-11\",\"max_monthly_cost\":10.0,"
             "\"granted_usd\":%.6f,\"ttl\":%d}}",
             unlimited ? "true" : "false", granted, ttl);
    pthread_mutex_unlock(&mu);
}

static void answer_status(int status)
{
    pthread_mutex_lock(&mu);
    V.status = status;
    snprintf(V.reply, sizeof(V.reply), "{\"errors\":[\"x\"]}");
    pthread_mutex_unlock(&mu);
}

static int requests(void)
{
    pthread_mutex_lock(&mu);
    int n = V.requests;
    pthread_mutex_unlock(&mu);
    return n;
}

struct env {
    struct event_base *base;
    struct config *cfg;
    struct upstream *up;
    struct vault *vault;
    struct budget *b;
};
static struct env E;

static int setup(void **state)
{
    (void)state;
    memset(&V, 0, sizeof(V));
    fakevault_start(&fv, "tok1\n", vault_handle);
    char text[1024], err[CONFIG_ERR_LEN];
    snprintf(text, sizeof(text),
             "{\"listeners\":[{\"path\":\"/x.sock\",\"tenant\":\"acme\"}],"
             "\"vault\":{\"address\":\"unix:%s\",\"token_file\":\"%s\",\"timeout_ms\":5000},"
             "\"usage\":{\"node_id\":\"node-7\"},\"budget\":{\"lease_percent\":10}}",
             fv.sock_path, fv.token_path);
    assert_int_equal(config_parse(text, strlen(text), &E.cfg, err), ERR_OK);
    E.base = event_base_new();
    E.up = upstream_new(E.base, 16);
    E.vault = vault_new(E.base, E.up, E.cfg);
    E.b = budget_new(E.vault, NULL, E.cfg);
    assert_non_null(E.b);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    budget_free(E.b);
    vault_free(E.vault);
    upstream_free(E.up);
    event_base_free(E.base);
    config_unref(&E.cfg);
    fakevault_stop(&fv);
    return 0;
}

static void woke(void *arg)
{
    (*(int *)arg)++;
}

static void run_until(const int *counter, int want)
{
    while (*counter < want) {
        assert_int_equal(event_base_loop(E.base, EVLOOP_ONCE), 0);
    }
}

/* Takes est; when it waits, runs the loop until woken and takes again. */
static enum budget_rc take(const char *tenant, double cap, double est)
{
    int n = 0;
    struct budget_wait *w = NULL;
    enum budget_rc rc = budget_take(E.b, tenant, cap, est, woke, &n, &w);
    if (rc != BUDGET_WAIT) {
        return rc;
    }
    assert_non_null(w);
    run_until(&n, 1);
    rc = budget_take(E.b, tenant, cap, est, woke, &n, &w);
    assert_int_not_equal(rc, BUDGET_WAIT);
    return rc;
}

static void test_one_request_for_many(void **state)
{
    (void)state;
    answer_lease(1.0, 300, false);
    enum { N = 8 };
    int woken = 0;
    struct budget_wait *w[N];
    for (int i = 0; i < N; i++) {
        assert_int_equal(budget_take(E.b, "acme", 10.0, 0.1, woke, &woken, &w[i]), BUDGET_WAIT);
    }
    run_until(&woken, N);
    assert_int_equal(requests(), 1);
    for (int i = 0; i < N; i++) {
        assert_int_equal(budget_take(E.b, "acme", 10.0, 0.1, woke, &woken, &w[i]), BUDGET_OK);
    }
    /* 0.8 reserved of 1.0: 0.2 left, a call of 0.3 needs a new lease. */
    pthread_mutex_lock(&mu);
    assert_string_equal(V.last_path, "/v1/byok/tenants/acme/budget-lease");
    /* lease_percent 10 of a 10 USD cap; min is the call's estimate; nothing unreported. */
    assert_true(fabs(V.request - 1.0) < 1e-9);
    assert_true(fabs(V.min - 0.1) < 1e-9);
    assert_true(V.unreported == 0);
    /* Without a usage module, node_id (with one, usage_lease_node: test_agent_usage). */
    assert_string_equal(V.node, "node-7");
    pthread_mutex_unlock(&mu);
    answer_lease(1.0, 300, false);
    assert_int_equal(take("acme", 10.0, 0.3), BUDGET_OK);
    assert_int_equal(requests(), 2);
    pthread_mutex_lock(&mu);
    /* The eight calls in flight hold 0.8: unreported, so the plugin counts them. */
    assert_true(fabs(V.unreported - 0.8) < 1e-9);
    pthread_mutex_unlock(&mu);
}

static void test_settle_gives_back(void **state)
{
    (void)state;
    answer_lease(1.0, 300, false);
    assert_int_equal(take("acme", 10.0, 0.6), BUDGET_OK);
    /* 0.4 left: a second 0.6 would need a lease; the first call used 0.1 only. */
    budget_settle(E.b, "acme", 0.6, 0.1);
    int n = 0;
    struct budget_wait *w = NULL;
    assert_int_equal(budget_take(E.b, "acme", 10.0, 0.6, woke, &n, &w), BUDGET_OK);
    assert_int_equal(budget_take(E.b, "acme", 10.0, 0.3, woke, &n, &w), BUDGET_OK);
    assert_int_equal(requests(), 1);
    /* Used beyond its reservation: owed (0.0 left, then -0.5). */
    budget_settle(E.b, "acme", 0.3, 0.8);
    answer_lease(0.5, 300, false);
    assert_int_equal(take("acme", 10.0, 0.01), BUDGET_OK);
    assert_int_equal(requests(), 2);
}

static void test_short_lease(void **state)
{
    (void)state;
    /* Less than min: the plugin grants nothing. */
    answer_lease(0.0, 300, false);
    assert_int_equal(take("acme", 10.0, 2.0), BUDGET_EXHAUSTED);
    assert_int_equal(requests(), 1);
    /* Calls as large are refused without asking again... */
    int n = 0;
    struct budget_wait *w = NULL;
    assert_int_equal(budget_take(E.b, "acme", 10.0, 2.0, woke, &n, &w), BUDGET_EXHAUSTED);
    assert_int_equal(budget_take(E.b, "acme", 10.0, 5.0, woke, &n, &w), BUDGET_EXHAUSTED);
    assert_int_equal(requests(), 1);
    /* ... a smaller one may ask: the plugin gives what is left (0.3). */
    answer_lease(0.3, 300, false);
    assert_int_equal(take("acme", 10.0, 0.2), BUDGET_OK);
    assert_int_equal(requests(), 2);
    /* That was all: 0.1 left, anything past it is refused without asking. */
    assert_int_equal(budget_take(E.b, "acme", 10.0, 0.15, woke, &n, &w), BUDGET_EXHAUSTED);
    assert_int_equal(budget_take(E.b, "acme", 10.0, 0.1, woke, &n, &w), BUDGET_OK);
    assert_int_equal(requests(), 2);
}

static void test_vault_errors(void **state)
{
    (void)state;
    answer_status(500);
    assert_int_equal(take("acme", 10.0, 0.1), BUDGET_UNAVAILABLE);
    int n = 0;
    struct budget_wait *w = NULL;
    /* Within a second: refused without a request. */
    assert_int_equal(budget_take(E.b, "acme", 10.0, 0.1, woke, &n, &w), BUDGET_UNAVAILABLE);
    assert_int_equal(requests(), 1);
    usleep(1100 * 1000);
    answer_lease(1.0, 300, false);
    assert_int_equal(take("acme", 10.0, 0.1), BUDGET_OK);
    /* A reply that does not parse is an error too. */
    pthread_mutex_lock(&mu);
    V.status = 200;
    snprintf(V.reply, sizeof(V.reply), "{\"data\":{\"granted_usd\":\"lots\",\"ttl\":60}}");
    pthread_mutex_unlock(&mu);
    assert_int_equal(take("beta", 10.0, 0.1), BUDGET_UNAVAILABLE);
    pthread_mutex_lock(&mu);
    V.status = 200;
    snprintf(V.reply, sizeof(V.reply),
             "{\"data\":{\"granted_usd\":-1,\"ttl\":60,\"month\":\"2026-11\"}}");
    pthread_mutex_unlock(&mu);
    assert_int_equal(take("gamma", 10.0, 0.1), BUDGET_UNAVAILABLE);
    /* acme's lease is still there. */
    assert_int_equal(budget_take(E.b, "acme", 10.0, 0.1, woke, &n, &w), BUDGET_OK);
    assert_int_equal(budget_stats(E.b)->errors, 3);
}

static void test_unlimited_and_no_path(void **state)
{
    (void)state;
    answer_lease(0, 300, true);
    assert_int_equal(take("acme", 10.0, 1e6), BUDGET_OK);
    int n = 0;
    struct budget_wait *w = NULL;
    assert_int_equal(budget_take(E.b, "acme", 10.0, 1e6, woke, &n, &w), BUDGET_OK);
    assert_int_equal(requests(), 1);
    /* A plugin without the path: not enforced (and said). */
    answer_status(404);
    assert_int_equal(take("beta", 10.0, 1e6), BUDGET_OK);
    assert_int_equal(budget_take(E.b, "beta", 10.0, 1e6, woke, &n, &w), BUDGET_OK);
    assert_int_equal(requests(), 2);
}

static void test_cap_change_and_cancel(void **state)
{
    (void)state;
    answer_lease(1.0, 300, false);
    assert_int_equal(take("acme", 10.0, 0.1), BUDGET_OK);
    /* The settings changed: a new lease, even with 0.9 left. */
    answer_lease(2.0, 300, false);
    assert_int_equal(take("acme", 20.0, 0.1), BUDGET_OK);
    assert_int_equal(requests(), 2);
    pthread_mutex_lock(&mu);
    assert_true(fabs(V.request - 2.0) < 1e-9); /* 10 % of the new cap */
    pthread_mutex_unlock(&mu);
    /* A cancelled wait is never called back. */
    int n = 0, m = 0;
    struct budget_wait *w1 = NULL, *w2 = NULL;
    answer_lease(1.0, 300, false);
    assert_int_equal(budget_take(E.b, "beta", 10.0, 0.1, woke, &n, &w1), BUDGET_WAIT);
    assert_int_equal(budget_take(E.b, "beta", 10.0, 0.1, woke, &m, &w2), BUDGET_WAIT);
    budget_cancel(w1);
    run_until(&m, 1);
    assert_int_equal(n, 0);
}

static void test_month(void **state)
{
    (void)state;
    char m[8];
    budget_month(0, m);
    assert_string_equal(m, "1970-01");
    budget_month(1796083199LL, m); /* 2026-11-30T23:59:59Z */
    assert_string_equal(m, "2026-11");
    budget_month(1796083200LL, m);
    assert_string_equal(m, "2026-12");
}

int main(void)
{
    /* The in-process Vault writes to sockets the client may have closed. */
    signal(SIGPIPE, SIG_IGN);
    jalloc_install();
    if (secret_heap_init(1 << 20) != ERR_OK) {
        return 1;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_one_request_for_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_settle_gives_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_lease, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vault_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unlimited_and_no_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cap_change_and_cancel, setup, teardown),
        cmocka_unit_test(test_month),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
