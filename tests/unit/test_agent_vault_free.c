/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for the end of the agent's Vault client: vault_free with a
 * request sent and not yet answered (the agent exiting at its drain timeout
 * with Vault slow) cancels that transfer too. Its callback is never called,
 * its memory is freed (LeakSanitizer), and the answer coming in later (the
 * event loop still running, the upstream not freed yet) touches nothing
 * freed (AddressSanitizer).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "agent/config.h"
#include "agent/jalloc.h"
#include "agent/upstream.h"
#include "agent/vault.h"
#include "common/log.h"
#include "common/secret.h"
#include "tests/unit/helpers/fakevault.h"

static struct fakevault fv;
/* The slow path: the handler says it has the request, then waits to be let go. */
static atomic_int slow_seen, slow_release;

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void vault_handle(const struct fakevault_req *r, int *status, char *out)
{
    if (strcmp(r->path, "/v1/auth/token/lookup-self") == 0) {
        *status = 200;
        snprintf(out, FAKEVAULT_MAX_REPLY, "{\"data\":{\"ttl\":3600,\"renewable\":true}}");
        return;
    }
    if (strcmp(r->path, "/v1/byok/slow") == 0) {
        atomic_store(&slow_seen, 1);
        for (int i = 0; i < 10000 && atomic_load(&slow_release) == 0; i++) {
            sleep_ms(1);
        }
    }
    *status = 200;
    snprintf(out, FAKEVAULT_MAX_REPLY, "{\"data\":{\"key\":\"sk-test\"}}");
}

static int calls;

static void count_cb(void *arg, enum err e, long status, struct buf *body)
{
    (void)arg;
    (void)e;
    (void)status;
    (void)body;
    calls++;
}

/* Runs the loop without blocking for about ms milliseconds, or until *flag is set. */
static void spin(struct event_base *base, long ms, atomic_int *flag)
{
    for (long i = 0; i < ms && (flag == NULL || atomic_load(flag) == 0); i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        sleep_ms(1);
    }
}

static void test_free_cancels_sent_requests(void **state)
{
    (void)state;
    atomic_store(&slow_seen, 0);
    atomic_store(&slow_release, 0);
    calls = 0;
    fakevault_start(&fv, "tok-a\n", vault_handle);
    char text[1024], err[CONFIG_ERR_LEN];
    snprintf(text, sizeof(text),
             "{\"listeners\":[{\"path\":\"/x.sock\",\"tenant\":\"acme\"}],"
             "\"vault\":{\"address\":\"unix:%s\",\"timeout_ms\":5000,\"token_file\":\"%s\"}}",
             fv.sock_path, fv.token_path);
    struct config *cfg = NULL;
    assert_int_equal(config_parse(text, strlen(text), &cfg, err), ERR_OK);
    struct event_base *base = event_base_new();
    struct upstream *up = upstream_new(base, 16);
    struct vault *v = vault_new(base, up, cfg);
    assert_non_null(v);

    /* Two requests: one answered, one that Vault holds. */
    struct vault_req *fast = NULL, *slow = NULL;
    assert_int_equal(vault_request(v, "GET", "byok/fast", NULL, count_cb, NULL, &fast), ERR_OK);
    spin(base, 5000, NULL);
    assert_int_equal(calls, 1);
    assert_int_equal(vault_request(v, "GET", "byok/slow", NULL, count_cb, NULL, &slow), ERR_OK);
    spin(base, 5000, &slow_seen);
    assert_int_equal(atomic_load(&slow_seen), 1);
    assert_int_equal(upstream_active(up), 1);

    vault_free(v);
    /* The transfer went with it: nothing left in flight, nothing called back. */
    fprintf(stderr, "# after vault_free: %zu transfer(s) in flight\n", upstream_active(up));
    assert_int_equal(upstream_active(up), 0);
    atomic_store(&slow_release, 1);
    spin(base, 300, NULL);
    assert_int_equal(calls, 1);

    upstream_free(up);
    event_base_free(base);
    config_unref(&cfg);
    fakevault_stop(&fv);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    jalloc_install();
    if (secret_heap_init((size_t)1 << 20) != ERR_OK) {
        return 1;
    }
    log_init(NULL, LOGL_ERROR);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_free_cancels_sent_requests),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
