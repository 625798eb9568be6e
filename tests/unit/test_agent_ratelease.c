/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for agent/ratelease (with agent/vault and agent/upstream under
 * it): one lease request shared by the calls that need it, slices sized by
 * demand (a busy node ramping up to its share, twenty quiet nodes not
 * locking the minute up), slices of two "nodes" summing to the tenant's limit, a used-up window
 * refusing until it ends without asking again, the window's end dropping what is left (but not
 * debt), tpm settling (unused back, overuse owed), the fallback to per-node
 * buckets on 403/404/5xx/unreadable replies and the retry after 60 s, an
 * "unlimited" answer, a changed limit, the config switch, cancellation, a
 * key's rate_limit (kind "key": its own slice, provider and key_type sent,
 * an older plugin's 400 falling back per node) and a failing allocator. Vault is
 * tests/unit/helpers/fakevault playing the plugin's window table on a fake clock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/config.h"
#include "agent/ratelease.h"
#include "agent/upstream.h"
#include "agent/vault.h"
#include "common/secret.h"
#include "tests/unit/helpers/fakevault.h"
#include "tests/unit/oom.h"

static struct fakevault fv;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
/*
 * The fake plugin: a limit per kind (rpm, tpm, key: one key's), what it
 * granted in the current window (of the fake clock), or a status/reply to
 * answer instead (status != 0; key_status for kind "key" only: an older
 * plugin). Under mu.
 */
static struct {
    double now;
    long long limit[3], granted[3];
    long long window[3];
    int status, key_status;
    char reply[512];
    bool unlimited;
    int requests;
    long long last_amount;
    char last_kind[8], last_node[160], last_path[256], last_provider[80], last_key_type[80];
} V;

/* The string member "name": of a body, by hand (into out; "" when absent). */
static void body_str(const char *body, const char *name, char *out, size_t size)
{
    char pat[32];
    snprintf(pat, sizeof(pat), "\"%s\":", name);
    const char *v = strstr(body, pat);
    out[0] = '\0';
    if (v != NULL && (v = strchr(v + strlen(pat), '"')) != NULL) {
        size_t len = strcspn(v + 1, "\"");
        snprintf(out, size, "%.*s", (int)len, v + 1);
    }
}

static double fake_now(void)
{
    pthread_mutex_lock(&mu);
    double t = V.now;
    pthread_mutex_unlock(&mu);
    return t;
}

static void advance(double secs)
{
    pthread_mutex_lock(&mu);
    V.now += secs;
    pthread_mutex_unlock(&mu);
}

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
    /* Parsed by hand: jansson's allocator may be the failing one of test_oom. */
    body_str(r->body, "kind", V.last_kind, sizeof(V.last_kind));
    body_str(r->body, "node", V.last_node, sizeof(V.last_node));
    body_str(r->body, "provider", V.last_provider, sizeof(V.last_provider));
    body_str(r->body, "key_type", V.last_key_type, sizeof(V.last_key_type));
    const char *am = strstr(r->body, "\"amount\":");
    V.last_amount = am != NULL ? strtoll(am + 9, NULL, 10) : 0;
    int k = strcmp(V.last_kind, "key") == 0 ? 2 : strcmp(V.last_kind, "tpm") == 0 ? 1 : 0;
    long long t = (long long)V.now;
    long long window = t - t % 60;
    if (V.status != 0) {
        *status = V.status;
        snprintf(out, FAKEVAULT_MAX_REPLY, "%s", V.reply);
    } else if (k == 2 && V.key_status != 0) {
        *status = V.key_status;
        snprintf(out, FAKEVAULT_MAX_REPLY,
                 "{\"errors\":[\"invalid value for field 'kind': must be 'rpm' or 'tpm'\"]}");
    } else if (V.unlimited) {
        *status = 200;
        snprintf(out, FAKEVAULT_MAX_REPLY,
                 "{\"data\":{\"unlimited\":true,\"limit\":0,\"granted\":%lld,\"window_end\":%lld}}",
                 V.last_amount, window + 60);
    } else {
        if (V.window[k] != window) {
            V.window[k] = window;
            V.granted[k] = 0;
        }
        long long left = V.limit[k] - V.granted[k];
        long long g = left <= 0 ? 0 : (V.last_amount < left ? V.last_amount : left);
        V.granted[k] += g;
        *status = 200;
        snprintf(out, FAKEVAULT_MAX_REPLY,
                 "{\"data\":{\"unlimited\":false,\"limit\":%lld,\"granted\":%lld,"
                 "\"window_end\":%lld}}",
                 V.limit[k], g, window + 60);
    }
    pthread_mutex_unlock(&mu);
}

static void answer_status(int status, const char *reply)
{
    pthread_mutex_lock(&mu);
    V.status = status;
    snprintf(V.reply, sizeof(V.reply), "%s", reply);
    pthread_mutex_unlock(&mu);
}

static int requests(void)
{
    pthread_mutex_lock(&mu);
    int n = V.requests;
    pthread_mutex_unlock(&mu);
    return n;
}

static long long last_amount(void)
{
    pthread_mutex_lock(&mu);
    long long n = V.last_amount;
    pthread_mutex_unlock(&mu);
    return n;
}

struct env {
    struct event_base *base;
    struct config *cfg;
    struct upstream *up;
    struct vault *vault;
    struct ratelease *a, *b; /* two nodes */
};
static struct env E;

static int setup_with(const char *limits)
{
    memset(&V, 0, sizeof(V));
    V.now = 1794999965.0; /* 5 s into a minute (it ends at 1795000020) */
    V.limit[0] = 20;
    V.limit[1] = 1000;
    V.limit[2] = 4;
    ratelease_set_clock(fake_now);
    fakevault_start(&fv, "tok1\n", vault_handle);
    char text[1024], err[CONFIG_ERR_LEN];
    snprintf(text, sizeof(text),
             "{\"listeners\":[{\"path\":\"/x.sock\",\"tenant\":\"acme\"}],"
             "\"vault\":{\"address\":\"unix:%s\",\"token_file\":\"%s\",\"timeout_ms\":5000},"
             "\"usage\":{\"node_id\":\"node-7\"},\"limits\":{%s}}",
             fv.sock_path, fv.token_path, limits);
    assert_int_equal(config_parse(text, strlen(text), &E.cfg, err), ERR_OK);
    E.base = event_base_new();
    E.up = upstream_new(E.base, 16);
    E.vault = vault_new(E.base, E.up, E.cfg);
    E.a = ratelease_new(E.vault, NULL, E.cfg);
    E.b = ratelease_new(E.vault, NULL, E.cfg);
    assert_non_null(E.a);
    assert_non_null(E.b);
    return 0;
}

static int setup(void **state)
{
    (void)state;
    return setup_with("\"rate_lease_percent\":10");
}

static int setup_off(void **state)
{
    (void)state;
    return setup_with("\"shared_rate_limits\":false");
}

static int teardown(void **state)
{
    (void)state;
    ratelease_free(E.a);
    ratelease_free(E.b);
    vault_free(E.vault);
    upstream_free(E.up);
    event_base_free(E.base);
    config_unref(&E.cfg);
    fakevault_stop(&fv);
    ratelease_set_clock(NULL);
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

static double last_window;
static long long last_retry;

/* Takes n of name's limit; when it waits, runs the loop until woken and takes again. */
static enum ratelease_rc take_of(struct ratelease *rl, const char *name, enum ratelease_kind kind,
                                 long long limit, long long n)
{
    int woken = 0;
    struct ratelease_wait *w = NULL;
    enum ratelease_rc rc =
        ratelease_take(rl, name, kind, limit, n, woke, &woken, &w, &last_window, &last_retry);
    if (rc != RATELEASE_WAIT) {
        return rc;
    }
    assert_non_null(w);
    run_until(&woken, 1);
    rc = ratelease_take(rl, name, kind, limit, n, woke, &woken, &w, &last_window, &last_retry);
    assert_int_not_equal(rc, RATELEASE_WAIT);
    return rc;
}

/* The same of tenant acme's rpm_limit or tpm_limit. */
static enum ratelease_rc take(struct ratelease *rl, enum ratelease_kind kind, long long limit,
                              long long n)
{
    return take_of(rl, "acme", kind, limit, n);
}

static void test_one_request_for_many(void **state)
{
    (void)state;
    enum { N = 3 };
    int woken = 0;
    struct ratelease_wait *w[N];
    double win;
    long long retry;
    for (int i = 0; i < N; i++) {
        assert_int_equal(
            ratelease_take(E.a, "acme", RATELEASE_RPM, 20, 1, woke, &woken, &w[i], &win, &retry),
            RATELEASE_WAIT);
    }
    run_until(&woken, N);
    assert_int_equal(requests(), 1);
    pthread_mutex_lock(&mu);
    assert_string_equal(V.last_path, "/v1/byok/tenants/acme/rate-lease");
    assert_string_equal(V.last_kind, "rpm");
    assert_string_equal(V.last_node, "node-7");
    assert_int_equal(V.last_amount, 1); /* nothing used yet: what the call needs */
    pthread_mutex_unlock(&mu);
    /* The first woken call takes it; the next asks again, for what the node used (1). */
    assert_int_equal(
        ratelease_take(E.a, "acme", RATELEASE_RPM, 20, 1, woke, &woken, &w[0], &win, &retry),
        RATELEASE_OK);
    assert_true(win == 1795000020.0); /* the minute's end */
    assert_int_equal(take(E.a, RATELEASE_RPM, 20, 1), RATELEASE_OK);
    assert_int_equal(requests(), 2);
    assert_int_equal(last_amount(), 1);
    /* Two used: a slice of 2, the share (10 % of 20), which covers the next two calls. */
    assert_int_equal(take(E.a, RATELEASE_RPM, 20, 1), RATELEASE_OK);
    assert_int_equal(last_amount(), 2);
    assert_int_equal(take(E.a, RATELEASE_RPM, 20, 1), RATELEASE_OK);
    assert_int_equal(requests(), 3);
    assert_int_equal(ratelease_stats(E.a)->granted, 3);
}

/* A busy node doubles what it holds with every lease, up to its share (10 % of 1000). */
static void test_busy_node_ramps_to_the_share(void **state)
{
    (void)state;
    pthread_mutex_lock(&mu);
    V.limit[0] = 1000;
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < 300; i++) {
        assert_int_equal(take(E.a, RATELEASE_RPM, 1000, 1), RATELEASE_OK);
    }
    /* Asked 1, 1, 2, 4, 8, 16, 32, 64 (128 held), then 100 twice (328). */
    assert_int_equal(requests(), 10);
    assert_int_equal(last_amount(), 100);
    pthread_mutex_lock(&mu);
    assert_int_equal(V.granted[0], 328);
    pthread_mutex_unlock(&mu);
    /* The next minute starts with what this one used, within the share. */
    advance(60);
    assert_int_equal(take(E.a, RATELEASE_RPM, 1000, 1), RATELEASE_OK);
    assert_int_equal(last_amount(), 100);
    /* A minute with nothing used in between: the history is too old, it starts at 1 again. */
    advance(120);
    assert_int_equal(take(E.a, RATELEASE_RPM, 1000, 1), RATELEASE_OK);
    assert_int_equal(last_amount(), 1);
}

/* A call of the burst test: takes again from its callback, as proxy.c does. */
struct burst_call {
    struct ratelease_wait *w;
    bool served;
    int *served_count;
};

static void burst_retake(void *arg)
{
    struct burst_call *bc = arg;
    double win;
    long long retry;
    enum ratelease_rc rc =
        ratelease_take(E.a, "acme", RATELEASE_RPM, 1000, 1, burst_retake, bc, &bc->w, &win, &retry);
    assert_true(rc == RATELEASE_OK || rc == RATELEASE_WAIT);
    if (rc == RATELEASE_OK) {
        bc->served = true;
        (*bc->served_count)++;
    }
}

/* A burst that waited on one lease is asked for in one go by the first that asks again. */
static void test_burst_asked_at_once(void **state)
{
    (void)state;
    pthread_mutex_lock(&mu);
    V.limit[0] = 1000;
    pthread_mutex_unlock(&mu);
    enum { N = 10 };
    struct burst_call bc[N];
    int served = 0;
    double win;
    long long retry;
    for (int i = 0; i < N; i++) {
        bc[i] = (struct burst_call){.served_count = &served};
        assert_int_equal(ratelease_take(E.a, "acme", RATELEASE_RPM, 1000, 1, burst_retake, &bc[i],
                                        &bc[i].w, &win, &retry),
                         RATELEASE_WAIT);
    }
    run_until(&served, N);
    /* Asked 1 (the first call alone), then 9 for the rest as one: two requests in all. */
    assert_int_equal(requests(), 2);
    assert_int_equal(last_amount(), 9);
}

/*
 * Many quiet nodes of one tenant (sidecars of many pods): each takes about
 * what it uses, so together they never lock the minute up. With a fixed
 * slice of 10 % the first ten would hold all 20 and the others be refused.
 */
static void test_quiet_nodes_do_not_hold_the_minute(void **state)
{
    (void)state;
    enum { NODES = 20 };
    struct ratelease *node[NODES];
    for (int i = 0; i < NODES; i++) {
        node[i] = ratelease_new(E.vault, NULL, E.cfg);
        assert_non_null(node[i]);
    }
    for (int minute = 0; minute < 3; minute++) {
        for (int i = 0; i < NODES; i++) {
            assert_int_equal(take(node[i], RATELEASE_RPM, 20, 1), RATELEASE_OK);
        }
        pthread_mutex_lock(&mu);
        assert_int_equal(V.granted[0], NODES); /* one each: nothing held unused */
        pthread_mutex_unlock(&mu);
        advance(60);
    }
    for (int i = 0; i < NODES; i++) {
        ratelease_free(node[i]);
    }
}

/* Two nodes together get the limit, no more; then both refuse until the window ends. */
static void test_two_nodes_share_the_limit(void **state)
{
    (void)state;
    int ok = 0;
    for (int i = 0; i < 30; i++) {
        ok += take(i % 2 ? E.b : E.a, RATELEASE_RPM, 20, 1) == RATELEASE_OK;
    }
    assert_int_equal(ok, 20);
    int asked = requests();
    /* Used up: refused without asking, Retry-After until the minute ends (55 s). */
    assert_int_equal(take(E.a, RATELEASE_RPM, 20, 1), RATELEASE_REFUSED);
    assert_int_equal(last_retry, 55);
    assert_int_equal(take(E.b, RATELEASE_RPM, 20, 1), RATELEASE_REFUSED);
    assert_int_equal(requests(), asked);
    assert_true(ratelease_stats(E.a)->short_leases >= 1);
    advance(54.5);
    assert_int_equal(take(E.a, RATELEASE_RPM, 20, 1), RATELEASE_REFUSED);
    assert_int_equal(last_retry, 1);
    /* The next minute: granted again. */
    advance(0.5);
    assert_int_equal(take(E.a, RATELEASE_RPM, 20, 1), RATELEASE_OK);
    assert_int_equal(take(E.b, RATELEASE_RPM, 20, 1), RATELEASE_OK);
    assert_int_equal(requests(), asked + 2);
}

/* What is left of a slice when its window ends is gone; a new window asks again. */
static void test_window_end_drops_the_rest(void **state)
{
    (void)state;
    pthread_mutex_lock(&mu);
    V.limit[0] = 100;
    pthread_mutex_unlock(&mu);
    /* Asked 1, 1, 2 (rpm 100: a share of 10): 4 held, 1 left. */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(take(E.a, RATELEASE_RPM, 100, 1), RATELEASE_OK);
    }
    assert_int_equal(requests(), 3);
    advance(55);
    /* The 1 left is gone; the new window's first lease is what the last one used (3). */
    assert_int_equal(take(E.a, RATELEASE_RPM, 100, 1), RATELEASE_OK);
    assert_int_equal(requests(), 4);
    pthread_mutex_lock(&mu);
    assert_int_equal(V.granted[0], 3);
    pthread_mutex_unlock(&mu);
    assert_int_equal(take(E.a, RATELEASE_RPM, 100, 1), RATELEASE_OK);
    assert_int_equal(take(E.a, RATELEASE_RPM, 100, 1), RATELEASE_OK);
    assert_int_equal(requests(), 4);
}

/* tpm: an estimate above the share asks for the estimate; unused goes back; overuse is owed. */
static void test_tpm_settle_and_debt(void **state)
{
    (void)state;
    assert_int_equal(take(E.a, RATELEASE_TPM, 1000, 300), RATELEASE_OK);
    assert_int_equal(last_amount(), 300); /* more than 10 % of 1000 */
    double win = last_window;
    /* It used 100: 200 back, enough for a call of 150 without asking. */
    ratelease_give(E.a, "acme", RATELEASE_TPM, 1000, 200, win);
    assert_int_equal(take(E.a, RATELEASE_TPM, 1000, 150), RATELEASE_OK);
    assert_int_equal(requests(), 1);
    /* 50 left; the call used 450 (300 more than reserved): 250 owed. */
    ratelease_give(E.a, "acme", RATELEASE_TPM, 1000, -300, win);
    assert_int_equal(take(E.a, RATELEASE_TPM, 1000, 10), RATELEASE_OK);
    assert_int_equal(last_amount(), 260); /* the call's 10 and the 250 owed */
    /* A give for an ended window is dropped; debt is not. */
    advance(60);
    ratelease_give(E.a, "acme", RATELEASE_TPM, 1000, 500, win);
    assert_int_equal(take(E.a, RATELEASE_TPM, 1000, 50), RATELEASE_OK);
    assert_int_equal(last_amount(), 100);
    /* An estimate above the whole limit passes a grant of the whole limit, and leaves debt. */
    advance(60);
    assert_int_equal(take(E.a, RATELEASE_TPM, 1000, 5000), RATELEASE_OK);
    assert_int_equal(last_amount(), 1000);
    advance(60);
    /* One limit of debt at most, and the call: more than a minute has, so that minute is gone. */
    assert_int_equal(take(E.a, RATELEASE_TPM, 1000, 1), RATELEASE_REFUSED);
    assert_int_equal(last_amount(), 1001);
}

/* A refused or failing path: per node (LOCAL) for 60 s without asking, then the shared path again.
 */
static void test_fallback(void **state)
{
    (void)state;
    static const struct {
        int status;
        const char *reply;
    } bad[] = {
        {403, "{\"errors\":[\"permission denied\"]}"},
        {404, "{\"errors\":[\"unsupported path\"]}"},
        {405, "{\"errors\":[\"unsupported operation\"]}"},
        {500, "{\"errors\":[\"internal error\"]}"},
        {503, "{\"errors\":[\"rate-lease table full\"]}"},
        {200, "{\"data\":{\"granted\":\"lots\",\"window_end\":1795000060,\"unlimited\":false}}"},
        {200, "{\"data\":{\"granted\":99,\"window_end\":1795000060,\"unlimited\":false}}"},
        {200, "{\"data\":{\"granted\":1,\"window_end\":17950000600,\"unlimited\":false}}"},
        {200, "not json"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        answer_status(bad[i].status, bad[i].reply);
        int before = requests();
        assert_int_equal(take(E.a, RATELEASE_RPM, 20, 1), RATELEASE_LOCAL);
        assert_int_equal(requests(), before + 1);
        /* Within 60 s: per node, no request. */
        advance(59);
        assert_int_equal(take(E.a, RATELEASE_RPM, 20, 1), RATELEASE_LOCAL);
        assert_int_equal(requests(), before + 1);
        advance(1);
    }
    assert_int_equal(ratelease_stats(E.a)->fallbacks, sizeof(bad) / sizeof(bad[0]));
    assert_int_equal(ratelease_stats(E.a)->errors, sizeof(bad) / sizeof(bad[0]));
    /* Vault is back: shared again. */
    answer_status(0, "");
    assert_int_equal(take(E.a, RATELEASE_RPM, 20, 1), RATELEASE_OK);
    /* The other kind and the other node were not affected. */
    answer_status(403, "{}");
    assert_int_equal(take(E.a, RATELEASE_TPM, 1000, 1), RATELEASE_LOCAL);
    answer_status(0, "");
    assert_int_equal(take(E.b, RATELEASE_TPM, 1000, 1), RATELEASE_OK);
}

/*
 * "unlimited": per node for 60 s, then asked again. A changed limit keeps the
 * slice (the plugin counted it): two creds with the old and the new limit
 * during a change do not throw slices away.
 */
static void test_unlimited_and_limit_change(void **state)
{
    (void)state;
    pthread_mutex_lock(&mu);
    V.unlimited = true;
    pthread_mutex_unlock(&mu);
    assert_int_equal(take(E.a, RATELEASE_RPM, 20, 1), RATELEASE_LOCAL);
    advance(59);
    assert_int_equal(take(E.a, RATELEASE_RPM, 20, 1), RATELEASE_LOCAL);
    assert_int_equal(requests(), 1);
    assert_int_equal(ratelease_stats(E.a)->unlimited, 1);
    pthread_mutex_lock(&mu);
    V.unlimited = false;
    V.limit[0] = 100;
    pthread_mutex_unlock(&mu);
    advance(1);
    assert_int_equal(take(E.a, RATELEASE_RPM, 20, 1), RATELEASE_OK);
    assert_int_equal(requests(), 2);
    /* Asked 1, 1, 2: 4 held, 3 used, 1 left. */
    assert_int_equal(take(E.a, RATELEASE_RPM, 20, 1), RATELEASE_OK);
    assert_int_equal(take(E.a, RATELEASE_RPM, 20, 1), RATELEASE_OK);
    assert_int_equal(requests(), 4);
    /* The new limit's creds and the old one's alternate: the slice serves both. */
    assert_int_equal(take(E.a, RATELEASE_RPM, 100, 1), RATELEASE_OK);
    assert_int_equal(requests(), 4);
    assert_int_equal(take(E.a, RATELEASE_RPM, 20, 1), RATELEASE_OK);
    assert_int_equal(requests(), 5);
    /* A limit seen again after an "unlimited" answer asks at once. */
    pthread_mutex_lock(&mu);
    V.unlimited = true;
    pthread_mutex_unlock(&mu);
    advance(60);
    assert_int_equal(take(E.a, RATELEASE_RPM, 20, 1), RATELEASE_LOCAL);
    pthread_mutex_lock(&mu);
    V.unlimited = false;
    pthread_mutex_unlock(&mu);
    assert_int_equal(take(E.a, RATELEASE_RPM, 30, 1), RATELEASE_OK);
    assert_int_equal(requests(), 7);
}

/* limits.shared_rate_limits false: always per node, Vault never asked. */
static void test_config_off(void **state)
{
    (void)state;
    assert_int_equal(take(E.a, RATELEASE_RPM, 20, 1), RATELEASE_LOCAL);
    assert_int_equal(take(E.a, RATELEASE_TPM, 1000, 10), RATELEASE_LOCAL);
    assert_int_equal(requests(), 0);
}

/* A cancelled wait is never called back; the others are. */
static void test_cancel(void **state)
{
    (void)state;
    int n = 0, m = 0;
    struct ratelease_wait *w1 = NULL, *w2 = NULL;
    double win;
    long long retry;
    assert_int_equal(ratelease_take(E.a, "acme", RATELEASE_RPM, 20, 1, woke, &n, &w1, &win, &retry),
                     RATELEASE_WAIT);
    assert_int_equal(ratelease_take(E.a, "acme", RATELEASE_RPM, 20, 1, woke, &m, &w2, &win, &retry),
                     RATELEASE_WAIT);
    ratelease_cancel(w1);
    run_until(&m, 1);
    assert_int_equal(n, 0);
    /* Freed with a request in flight and a waiter: no callback, no leak (teardown). */
    int k = 0;
    struct ratelease_wait *w3 = NULL;
    assert_int_equal(
        ratelease_take(E.b, "beta", RATELEASE_TPM, 1000, 1, woke, &k, &w3, &win, &retry),
        RATELEASE_WAIT);
}

/* A failing allocator at every step of a take and its answer: a result, never a crash. */
/* ratelease_key_name: tenant/provider/key_type, each part 1..63 characters without '/'. */
static void test_key_name(void **state)
{
    (void)state;
    char name[RATELEASE_MAX_NAME + 1], long63[CONFIG_MAX_NAME + 1], long64[CONFIG_MAX_NAME + 2];
    memset(long63, 'a', CONFIG_MAX_NAME);
    long63[CONFIG_MAX_NAME] = '\0';
    memset(long64, 'a', CONFIG_MAX_NAME + 1);
    long64[CONFIG_MAX_NAME + 1] = '\0';
    assert_true(ratelease_key_name(name, sizeof(name), "acme", "openai", "production"));
    assert_string_equal(name, "acme/openai/production");
    assert_true(ratelease_key_name(name, sizeof(name), long63, long63, long63));
    assert_int_equal(strlen(name), RATELEASE_MAX_NAME);
    assert_false(ratelease_key_name(name, sizeof(name), long64, "openai", "production"));
    assert_false(ratelease_key_name(name, sizeof(name), "acme", long64, "production"));
    assert_false(ratelease_key_name(name, sizeof(name), "acme", "openai", long64));
    assert_false(ratelease_key_name(name, sizeof(name), "acme", "", "production"));
    assert_false(ratelease_key_name(name, sizeof(name), "acme", "openai", NULL));
    assert_false(ratelease_key_name(name, sizeof(name), "acme", "open/ai", "production"));
    assert_false(ratelease_key_name(name, 8, "acme", "openai", "production"));
}

/*
 * A key's rate_limit (RATELEASE_KEY): the request names the key (provider,
 * key_type) under the tenant's path, two nodes together get the key's limit,
 * and the key's slice is apart from the tenant's rpm and from another key's.
 */
static void test_key_kind(void **state)
{
    (void)state;
    char key[RATELEASE_MAX_NAME + 1], other[RATELEASE_MAX_NAME + 1];
    assert_true(ratelease_key_name(key, sizeof(key), "acme", "openai", "production"));
    assert_true(ratelease_key_name(other, sizeof(other), "acme", "openai", "batch"));
    int ok = 0;
    for (int i = 0; i < 10; i++) {
        ok += take_of(i % 2 ? E.b : E.a, key, RATELEASE_KEY, 4, 1) == RATELEASE_OK;
    }
    assert_int_equal(ok, 4);
    assert_string_equal(V.last_path, "/v1/byok/tenants/acme/rate-lease");
    assert_string_equal(V.last_kind, "key");
    assert_string_equal(V.last_provider, "openai");
    assert_string_equal(V.last_key_type, "production");
    assert_int_equal(take_of(E.a, key, RATELEASE_KEY, 4, 1), RATELEASE_REFUSED);
    assert_int_equal(last_retry, 55);
    assert_int_equal(take_of(E.b, key, RATELEASE_KEY, 4, 1), RATELEASE_REFUSED);
    /* The tenant's rpm is its own slice: its lease sends no key. */
    assert_int_equal(take(E.a, RATELEASE_RPM, 20, 1), RATELEASE_OK);
    assert_string_equal(V.last_kind, "rpm");
    assert_string_equal(V.last_provider, "");
    assert_string_equal(V.last_key_type, "");
    /* Another key is another slice (the fake counts every key together: it has none left). */
    assert_int_equal(take_of(E.a, other, RATELEASE_KEY, 4, 1), RATELEASE_REFUSED);
    assert_string_equal(V.last_key_type, "batch");
    /* The next minute: the key is granted again. */
    advance(55);
    assert_int_equal(take_of(E.a, key, RATELEASE_KEY, 4, 1), RATELEASE_OK);
}

/*
 * An older plugin answers 400 to kind "key": the key's rate_limit is per
 * node for RATELEASE_RETRY_S (no request meanwhile), then asked again; the
 * tenant's limits stay shared.
 */
static void test_key_older_plugin(void **state)
{
    (void)state;
    char key[RATELEASE_MAX_NAME + 1];
    assert_true(ratelease_key_name(key, sizeof(key), "acme", "openai", "production"));
    pthread_mutex_lock(&mu);
    V.key_status = 400;
    pthread_mutex_unlock(&mu);
    int before = requests();
    assert_int_equal(take_of(E.a, key, RATELEASE_KEY, 4, 1), RATELEASE_LOCAL);
    assert_int_equal(requests(), before + 1);
    assert_int_equal(ratelease_stats(E.a)->fallbacks, 1);
    advance(59);
    assert_int_equal(take_of(E.a, key, RATELEASE_KEY, 4, 1), RATELEASE_LOCAL);
    assert_int_equal(requests(), before + 1);
    assert_int_equal(take(E.a, RATELEASE_RPM, 20, 1), RATELEASE_OK);
    assert_int_equal(ratelease_stats(E.a)->fallbacks, 1);
    /* After RATELEASE_RETRY_S: asked again, and a plugin that knows the kind shares it. */
    advance(1);
    pthread_mutex_lock(&mu);
    V.key_status = 0;
    pthread_mutex_unlock(&mu);
    before = requests();
    assert_int_equal(take_of(E.a, key, RATELEASE_KEY, 4, 1), RATELEASE_OK);
    assert_int_equal(requests(), before + 1);
}

static void test_oom(void **state)
{
    (void)state;
    pthread_mutex_lock(&mu);
    V.limit[0] = 1000000; /* one fake window for every tenant of the loop */
    pthread_mutex_unlock(&mu);
    bool fired = true;
    for (long n = 1; fired && n < 400; n++) {
        char tenant[32];
        snprintf(tenant, sizeof(tenant), "t%ld", n);
        int woken = 0;
        struct ratelease_wait *w = NULL;
        double win;
        long long retry;
        oom_fired = false;
        oom_countdown = n;
        json_set_alloc_funcs(oom_malloc, free);
        enum ratelease_rc rc =
            ratelease_take(E.a, tenant, RATELEASE_RPM, 20, 1, woke, &woken, &w, &win, &retry);
        if (rc == RATELEASE_WAIT) {
            run_until(&woken, 1);
            rc = ratelease_take(E.a, tenant, RATELEASE_RPM, 20, 1, woke, &woken, &w, &win, &retry);
        }
        json_set_alloc_funcs(malloc, free);
        oom_countdown = 0;
        fired = oom_fired;
        assert_true(rc == RATELEASE_OK || rc == RATELEASE_LOCAL);
    }
    assert_false(fired);
}

int main(void)
{
    /* The in-process Vault writes to sockets the client may have closed. */
    signal(SIGPIPE, SIG_IGN);
    if (secret_heap_init(1 << 20) != ERR_OK) {
        return 1;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_one_request_for_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy_node_ramps_to_the_share, setup, teardown),
        cmocka_unit_test_setup_teardown(test_burst_asked_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quiet_nodes_do_not_hold_the_minute, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_nodes_share_the_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_window_end_drops_the_rest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tpm_settle_and_debt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fallback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unlimited_and_limit_change, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_off, setup_off, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_kind, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_older_plugin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oom, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
