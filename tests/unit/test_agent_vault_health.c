/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for what the agent's /healthz says of Vault (vault_health) and
 * for how a finished Vault transfer is classified (upstream_classify), with
 * no TLS server and no process: the classification is a pure function of
 * curl's result, and the health states are driven through the fake Vault.
 * - curl's codes as libcurl 7.88 returns them for a TLS failure: our side
 *   rejecting Vault's certificate, the CA file or the client pair unusable,
 *   a server's fatal alert are configuration errors (ERR_CRYPTO, with the
 *   reason); a handshake reset or closed without an alert is ERR_UNAVAIL;
 *   provider transfers (no classify) keep the plain mapping;
 * - an AppRole login refused (400) says login_failed with the status, and
 *   a working login says ok; a login answered 503 says unavailable;
 * - Vault unreachable says unavailable ("unreachable (...)");
 * - a token file whose token lookup-self refuses (403) says login_failed
 *   until a call with the token is answered 200;
 * - a reload while no token is held logs in at once: health turns ok with
 *   no call.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/config.h"
#include "agent/jalloc.h"
#include "agent/upstream.h"
#include "agent/vault.h"
#include "common/log.h"
#include "common/secret.h"
#include "tests/unit/helpers/fakevault.h"

/* ---- upstream_classify ---- */

struct classify_case {
    CURLcode code;
    bool classify;
    bool alert;
    enum err want;
    enum upstream_tls want_tls;
};

static void test_classify_curl_codes(void **state)
{
    (void)state;
    static const struct classify_case cases[] = {
        {CURLE_OK, true, false, ERR_OK, UPSTREAM_TLS_NONE},
        /* Our side rejected Vault's certificate (CA, name): we send the alert, none comes. */
        {CURLE_PEER_FAILED_VERIFICATION, true, false, ERR_CRYPTO, UPSTREAM_TLS_UNTRUSTED},
        {CURLE_SSL_CACERT_BADFILE, true, false, ERR_CRYPTO, UPSTREAM_TLS_CA_FILE},
        /* A key that does not match its certificate: curl fails before any byte is sent. */
        {CURLE_SSL_CERTPROBLEM, true, false, ERR_CRYPTO, UPSTREAM_TLS_CLIENT_PAIR},
        {CURLE_SSL_CLIENTCERT, true, false, ERR_CRYPTO, UPSTREAM_TLS_REFUSED},
        /* A TLS 1.2 server's fatal alert (unknown_ca), and a TLS 1.3 one after our Finished. */
        {CURLE_SSL_CONNECT_ERROR, true, true, ERR_CRYPTO, UPSTREAM_TLS_REFUSED},
        {CURLE_RECV_ERROR, true, true, ERR_CRYPTO, UPSTREAM_TLS_REFUSED},
        /* Reset or closed during the handshake, no alert: Vault restarting, an outage. */
        {CURLE_SSL_CONNECT_ERROR, true, false, ERR_UNAVAIL, UPSTREAM_TLS_NONE},
        {CURLE_RECV_ERROR, true, false, ERR_UPSTREAM, UPSTREAM_TLS_NONE},
        {CURLE_COULDNT_CONNECT, true, false, ERR_UNAVAIL, UPSTREAM_TLS_NONE},
        {CURLE_OPERATION_TIMEDOUT, true, true, ERR_TIMEOUT, UPSTREAM_TLS_NONE},
        /* Provider transfers: the plain mapping, no reason. */
        {CURLE_PEER_FAILED_VERIFICATION, false, false, ERR_CRYPTO, UPSTREAM_TLS_NONE},
        {CURLE_SSL_CONNECT_ERROR, false, false, ERR_CRYPTO, UPSTREAM_TLS_NONE},
        {CURLE_SSL_CONNECT_ERROR, false, true, ERR_CRYPTO, UPSTREAM_TLS_NONE},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct classify_case *c = &cases[i];
        enum upstream_tls tls = UPSTREAM_TLS_REFUSED;
        enum err e = upstream_classify(c->code, c->classify, c->alert, &tls);
        if (e != c->want || tls != c->want_tls) {
            fprintf(stderr, "# case %zu (curl code %d, classify %d, alert %d): %s/%d\n", i,
                    (int)c->code, c->classify, c->alert, err_name(e), (int)tls);
        }
        assert_int_equal(e, c->want);
        assert_int_equal(tls, c->want_tls);
    }
}

/* ---- vault_health through the fake Vault ---- */

static struct fakevault fv;
static atomic_int logins, login_status, lookup_status;
static char role_path[160], secret_path[160];

static void vault_handle(const struct fakevault_req *r, int *status, char *out)
{
    if (strcmp(r->path, "/v1/auth/approle/login") == 0) {
        atomic_fetch_add(&logins, 1);
        if (atomic_load(&login_status) != 200) {
            *status = atomic_load(&login_status);
            snprintf(out, FAKEVAULT_MAX_REPLY, "{\"errors\":[\"no\"]}");
            return;
        }
        if (strstr(r->body, "\"secret_id\":\"good\"") == NULL) {
            *status = 400;
            snprintf(out, FAKEVAULT_MAX_REPLY, "{\"errors\":[\"invalid role or secret ID\"]}");
            return;
        }
        *status = 200;
        snprintf(out, FAKEVAULT_MAX_REPLY,
                 "{\"auth\":{\"client_token\":\"tok-a\",\"lease_duration\":3600,"
                 "\"renewable\":true}}");
        return;
    }
    if (strcmp(r->path, "/v1/auth/token/lookup-self") == 0) {
        *status = atomic_load(&lookup_status);
        snprintf(out, FAKEVAULT_MAX_REPLY,
                 *status == 200 ? "{\"data\":{\"ttl\":3600,\"renewable\":true}}"
                                : "{\"errors\":[\"permission denied\"]}");
        return;
    }
    *status = atomic_load(&lookup_status) == 200 ? 200 : 403;
    snprintf(out, FAKEVAULT_MAX_REPLY, *status == 200 ? "{\"data\":{}}" : "{\"errors\":[]}");
}

static struct event_base *base;
static struct upstream *up;
static struct vault *vault;
static struct config *cfg;

static void write_file(const char *path, const char *text, mode_t mode)
{
    char tmp[200];
    snprintf(tmp, sizeof(tmp), "%s.new", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    assert_int_equal(chmod(tmp, mode), 0);
    assert_int_equal(rename(tmp, path), 0);
}

static void start(const char *address, const char *vault_members)
{
    char text[1024], err[CONFIG_ERR_LEN];
    snprintf(text, sizeof(text),
             "{\"listeners\":[{\"path\":\"/x.sock\",\"tenant\":\"acme\"}],"
             "\"vault\":{\"address\":\"unix:%s\",\"timeout_ms\":5000,%s}}",
             address, vault_members);
    assert_int_equal(config_parse(text, strlen(text), &cfg, err), ERR_OK);
    base = event_base_new();
    up = upstream_new(base, 16);
    vault = vault_new(base, up, cfg);
    assert_non_null(vault);
}

static void start_approle(const char *secret_id)
{
    write_file(role_path, "role\n", 0600);
    write_file(secret_path, secret_id, 0600);
    char members[512];
    snprintf(members, sizeof(members),
             "\"approle\":{\"role_id_file\":\"%s\",\"secret_id_file\":\"%s\"}", role_path,
             secret_path);
    start(fv.sock_path, members);
}

static int setup(void **state)
{
    (void)state;
    atomic_store(&logins, 0);
    atomic_store(&login_status, 200);
    atomic_store(&lookup_status, 200);
    fakevault_start(&fv, "tok-file\n", vault_handle);
    snprintf(role_path, sizeof(role_path), "%s/role_id", fv.dir);
    snprintf(secret_path, sizeof(secret_path), "%s/secret_id", fv.dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    vault_free(vault);
    vault = NULL;
    upstream_free(up);
    event_base_free(base);
    config_unref(&cfg);
    unlink(role_path);
    unlink(secret_path);
    fakevault_stop(&fv);
    return 0;
}

struct got {
    int calls;
    enum err e;
    long status;
};

static void got_cb(void *arg, enum err e, long status, struct buf *body)
{
    (void)body;
    struct got *g = arg;
    g->calls++;
    g->e = e;
    g->status = status;
}

static enum err one_request(void)
{
    struct got g = {0};
    struct vault_req *r = NULL;
    assert_int_equal(
        vault_request(vault, "GET", "byok/tenants/acme/creds/openai", NULL, got_cb, &g, &r),
        ERR_OK);
    while (g.calls == 0) {
        assert_int_equal(event_base_loop(base, EVLOOP_ONCE), 0);
    }
    return g.e == ERR_OK && g.status != 200 ? ERR_PROTO : g.e;
}

/* Asserts vault_health's answer; want_reason NULL for none, else its prefix. */
static void assert_health(enum vault_health want, const char *want_reason)
{
    const char *reason = "unset";
    enum vault_health h = vault_health(vault, &reason);
    fprintf(stderr, "# health %s, reason %s\n", vault_health_name(h),
            reason != NULL ? reason : "(none)");
    assert_int_equal(h, want);
    if (want_reason == NULL) {
        assert_null(reason);
    } else {
        /* One assertion: the analyzer does not know that a failed cmocka assertion returns not. */
        assert_true(reason != NULL && strncmp(reason, want_reason, strlen(want_reason)) == 0);
    }
    assert_int_equal(vault_ok(vault), want == VAULT_HEALTH_OK);
}

static void test_health_login_refused_then_ok(void **state)
{
    (void)state;
    start_approle("wrong\n");
    assert_health(VAULT_HEALTH_UNAVAILABLE, "no token yet");
    assert_int_equal(one_request(), ERR_AUTH);
    assert_health(VAULT_HEALTH_LOGIN_FAILED, "login refused (HTTP 400)");
    assert_int_equal(one_request(), ERR_AUTH); /* held by the backoff: the same answer */
    assert_health(VAULT_HEALTH_LOGIN_FAILED, "login refused (HTTP 400)");
    write_file(secret_path, "good\n", 0600); /* a rotated secret_id ends the wait */
    assert_int_equal(one_request(), ERR_OK);
    assert_health(VAULT_HEALTH_OK, NULL);
    assert_string_equal(vault_health_name(VAULT_HEALTH_LOGIN_FAILED), "login_failed");
}

static void test_health_login_503_is_unavailable(void **state)
{
    (void)state;
    atomic_store(&login_status, 503);
    start_approle("good\n");
    assert_int_equal(one_request(), ERR_UNAVAIL);
    assert_health(VAULT_HEALTH_UNAVAILABLE, "login not answered (HTTP 503)");
}

static void test_health_unreachable(void **state)
{
    (void)state;
    char members[256];
    snprintf(members, sizeof(members), "\"token_file\":\"%s\"", fv.token_path);
    start("/nonexistent/vault.sock", members);
    assert_int_not_equal(one_request(), ERR_OK);
    assert_health(VAULT_HEALTH_UNAVAILABLE, "unreachable (");
}

/* Runs the loop until fn says so (at most ~5 s). */
static void loop_until(bool (*fn)(void))
{
    for (int i = 0; i < 500 && !fn(); i++) {
        struct timeval tv = {0, 10000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
    assert_true(fn());
}

static bool health_not_ok(void)
{
    const char *reason;
    return vault_health(vault, &reason) == VAULT_HEALTH_LOGIN_FAILED;
}

static bool health_ok(void)
{
    return vault_ok(vault);
}

static void test_health_token_refused(void **state)
{
    (void)state;
    atomic_store(&lookup_status, 403); /* a revoked token in the token file */
    char members[256];
    snprintf(members, sizeof(members), "\"token_file\":\"%s\"", fv.token_path);
    start(fv.sock_path, members);
    vault_start(vault);
    loop_until(health_not_ok);
    assert_health(VAULT_HEALTH_LOGIN_FAILED, "token refused by Vault (403)");
    /* Vault takes the token again (a new one in the file): the next call answered 200 clears it. */
    atomic_store(&lookup_status, 200);
    fakevault_write_token(&fv, "tok-new");
    assert_int_equal(one_request(), ERR_OK);
    assert_health(VAULT_HEALTH_OK, NULL);
}

static void test_health_reload_logs_in_at_once(void **state)
{
    (void)state;
    start_approle("wrong\n");
    assert_int_equal(one_request(), ERR_AUTH);
    assert_health(VAULT_HEALTH_LOGIN_FAILED, "login refused");
    write_file(secret_path, "good\n", 0600);
    int before = atomic_load(&logins);
    vault_set_config(vault, cfg); /* a SIGHUP: the same settings */
    loop_until(health_ok);
    assert_int_equal(atomic_load(&logins), before + 1);
    assert_health(VAULT_HEALTH_OK, NULL);
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
        cmocka_unit_test(test_classify_curl_codes),
        cmocka_unit_test_setup_teardown(test_health_login_refused_then_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_health_login_503_is_unavailable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_health_unreachable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_health_token_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_health_reload_logs_in_at_once, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
