/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for the agent's Vault login backoff, against the fake Vault:
 * - cert auth: a group-readable key file is refused at login (logged once,
 *   never its content), and chmod 600 ends the backoff;
 * - a refused AppRole login (wrong secret_id) is not tried again by every
 *   request: requests fail fast (ERR_AUTH, as the key cache turns into 503
 *   vault_unavailable) until the backoff (1 s, then 2 s ...) ends, with one
 *   log line per failed login; a rewritten secret_id file is tried at once,
 *   and a success resets the backoff;
 * - credential files that cannot be read are logged once per backoff step,
 *   not once per request;
 * - a token file that is not there yet is picked up at once when it appears;
 * - a renewal that Vault answers 503 (sealed, or a standby in a failover) or
 *   429 is tried again while the token lasts: no new login;
 * - a login answered 503 holds the next one back 1 s, never a growing backoff;
 * - a credential file replaced by a FIFO is refused without blocking the
 *   event loop (open would wait for a writer);
 * - a reload that changes the auth settings logs in again at once.
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

static struct fakevault fv;
static atomic_int logins, reads, renewals, renewals_to_fail, logins_to_fail;
/* The first login is answered this late (ms), with token "tok-old"; later ones give "tok-a". */
static atomic_int first_login_delay_ms;
/* The token of the last read. */
static char read_token[64];
/* The TTL login and renew-self give (seconds). */
static atomic_int lease_s = 3600;
static char role_path[160], secret_path[160];

static void vault_handle(const struct fakevault_req *r, int *status, char *out)
{
    if (strcmp(r->path, "/v1/auth/approle/login") == 0) {
        int nth = atomic_fetch_add(&logins, 1) + 1;
        if (nth == 1 && atomic_load(&first_login_delay_ms) > 0) {
            long ms = atomic_load(&first_login_delay_ms);
            struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
            *status = 200;
            snprintf(out, FAKEVAULT_MAX_REPLY,
                     "{\"auth\":{\"client_token\":\"tok-old\",\"lease_duration\":3600,"
                     "\"renewable\":true}}");
            return;
        }
        if (atomic_load(&logins_to_fail) > 0) {
            atomic_fetch_sub(&logins_to_fail, 1);
            *status = 503;
            snprintf(out, FAKEVAULT_MAX_REPLY, "{\"errors\":[\"Vault is sealed\"]}");
            return;
        }
        if (strstr(r->body, "\"secret_id\":\"good\"") == NULL) {
            *status = 400;
            snprintf(out, FAKEVAULT_MAX_REPLY, "{\"errors\":[\"invalid role or secret ID\"]}");
            return;
        }
        *status = 200;
        snprintf(out, FAKEVAULT_MAX_REPLY,
                 "{\"auth\":{\"client_token\":\"tok-a\",\"lease_duration\":%d,"
                 "\"renewable\":true}}",
                 atomic_load(&lease_s));
        return;
    }
    if (strcmp(r->path, "/v1/auth/token/renew-self") == 0) {
        atomic_fetch_add(&renewals, 1);
        if (atomic_load(&renewals_to_fail) > 0) {
            atomic_fetch_sub(&renewals_to_fail, 1);
            *status = 503;
            snprintf(out, FAKEVAULT_MAX_REPLY, "{\"errors\":[\"Vault is sealed\"]}");
            return;
        }
        *status = 200;
        snprintf(out, FAKEVAULT_MAX_REPLY,
                 "{\"auth\":{\"client_token\":\"tok-a\",\"lease_duration\":%d,"
                 "\"renewable\":true}}",
                 atomic_load(&lease_s));
        return;
    }
    if (strcmp(r->path, "/v1/auth/token/lookup-self") == 0) {
        *status = 200;
        snprintf(out, FAKEVAULT_MAX_REPLY, "{\"data\":{\"ttl\":3600,\"renewable\":true}}");
        return;
    }
    if (strncmp(r->token, "tok", 3) != 0) {
        *status = 403;
        snprintf(out, FAKEVAULT_MAX_REPLY, "{\"errors\":[\"permission denied\"]}");
        return;
    }
    atomic_fetch_add(&reads, 1);
    snprintf(read_token, sizeof(read_token), "%s", r->token);
    *status = 200;
    snprintf(out, FAKEVAULT_MAX_REPLY, "{\"data\":{}}");
}

/* Log lines by message, counted through the log sink. */
static int lines_failed, lines_unreadable, lines_token, lines_canary;

static void count_sink(enum log_level level, const char *line, size_t len, void *arg)
{
    (void)level;
    (void)len;
    (void)arg;
    lines_failed += strstr(line, "\"@message\":\"vault login failed\"") != NULL;
    lines_unreadable += strstr(line, "\"@message\":\"vault login credentials unreadable\"") != NULL;
    lines_token += strstr(line, "\"@message\":\"vault token file unusable\"") != NULL;
    lines_canary += strstr(line, "sk-canary") != NULL;
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

static void start(const char *vault_members)
{
    char text[1024], err[CONFIG_ERR_LEN];
    snprintf(text, sizeof(text),
             "{\"listeners\":[{\"path\":\"/x.sock\",\"tenant\":\"acme\"}],"
             "\"vault\":{\"address\":\"unix:%s\",\"timeout_ms\":5000,%s}}",
             fv.sock_path, vault_members);
    assert_int_equal(config_parse(text, strlen(text), &cfg, err), ERR_OK);
    base = event_base_new();
    up = upstream_new(base, 16);
    vault = vault_new(base, up, cfg);
    assert_non_null(vault);
}

/* AppRole: role_id and secret_id files (the secret_id's text and mode given). */
static void start_approle(const char *secret_id, mode_t mode)
{
    write_file(role_path, "role\n", 0600);
    write_file(secret_path, secret_id, mode);
    char members[512];
    snprintf(members, sizeof(members),
             "\"approle\":{\"role_id_file\":\"%s\",\"secret_id_file\":\"%s\"}", role_path,
             secret_path);
    start(members);
}

static int setup(void **state)
{
    (void)state;
    atomic_store(&logins, 0);
    atomic_store(&reads, 0);
    atomic_store(&renewals, 0);
    atomic_store(&renewals_to_fail, 0);
    atomic_store(&logins_to_fail, 0);
    atomic_store(&first_login_delay_ms, 0);
    read_token[0] = '\0';
    atomic_store(&lease_s, 3600);
    lines_failed = lines_unreadable = lines_token = lines_canary = 0;
    fakevault_start(&fv, "unused\n", vault_handle);
    snprintf(role_path, sizeof(role_path), "%s/role_id", fv.dir);
    snprintf(secret_path, sizeof(secret_path), "%s/secret_id", fv.dir);
    log_set_sink(count_sink, NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    log_set_sink(NULL, NULL);
    vault_free(vault);
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

/* One creds-like read; runs the loop until it is answered. */
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

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/*
 * A wrong secret_id: one login, then 20 requests (as 20 app calls, or one
 * `auto` call probing many providers) without another; after the 1 s backoff
 * one more login, then none for the next 2 s step. A new secret_id file is
 * tried at once, and works. Before the fix each request logged in (21 logins
 * and 21 log lines for the first 21 requests).
 */
static void test_refused_login_backs_off(void **state)
{
    (void)state;
    start_approle("wrong\n", 0600);
    for (int i = 0; i < 21; i++) {
        assert_int_equal(one_request(), ERR_AUTH);
    }
    fprintf(stderr, "# 21 requests: %d login(s), %d log line(s)\n", atomic_load(&logins),
            lines_failed);
    assert_int_equal(atomic_load(&logins), 1);
    assert_int_equal(lines_failed, 1);
    assert_int_equal(vault_stats(vault)->requests, 1);

    sleep_ms(1100); /* the first step: 1 s */
    assert_int_equal(one_request(), ERR_AUTH);
    assert_int_equal(atomic_load(&logins), 2);
    sleep_ms(1100); /* the second step is 2 s: still held */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(one_request(), ERR_AUTH);
    }
    assert_int_equal(atomic_load(&logins), 2);
    assert_int_equal(lines_failed, 2);

    /* The secret_id file rewritten (rotation): tried at once, and a success resets the backoff. */
    write_file(secret_path, "good\n", 0600);
    assert_int_equal(one_request(), ERR_OK);
    assert_int_equal(atomic_load(&logins), 3);
    assert_int_equal(atomic_load(&reads), 1);
    assert_int_equal(vault_stats(vault)->logins, 1);
}

/*
 * Logins answered 503 (Vault sealed): each holds the next back 1 s, not a
 * growing backoff, and requests meanwhile fail as Vault unavailable. Before,
 * the second 503 held logins for 2 s, the third 4 s ... (up to 30 s of failed
 * calls after Vault was back).
 */
static void test_login_5xx_holds_one_step(void **state)
{
    (void)state;
    atomic_store(&logins_to_fail, 2);
    start_approle("good\n", 0600);
    assert_int_equal(one_request(), ERR_UNAVAIL);
    assert_int_equal(one_request(), ERR_AUTH); /* held: fails fast, no login */
    assert_int_equal(atomic_load(&logins), 1);
    sleep_ms(1100);
    assert_int_equal(one_request(), ERR_UNAVAIL);
    assert_int_equal(atomic_load(&logins), 2);
    sleep_ms(1100); /* a growing backoff would still hold the login here */
    assert_int_equal(one_request(), ERR_OK);
    assert_int_equal(atomic_load(&logins), 3);
}

/*
 * A reload that moves vault.address while a login is in flight: that login
 * (against the old address) is dropped, a new one runs against the new
 * address, and the waiting request goes out with its token. Before, the old
 * login's token was installed and used against the new Vault. Both addresses
 * reach the fake Vault here (the second through a symlink to its socket); its
 * first login answers late with "tok-old".
 */
static void test_reload_moving_address_drops_login_in_flight(void **state)
{
    (void)state;
    atomic_store(&first_login_delay_ms, 600);
    start_approle("good\n", 0600);
    char link[200];
    snprintf(link, sizeof(link), "%s/moved.sock", fv.dir);
    assert_int_equal(symlink(fv.sock_path, link), 0);
    struct got g = {0};
    struct vault_req *r = NULL;
    assert_int_equal(
        vault_request(vault, "GET", "byok/tenants/acme/creds/openai", NULL, got_cb, &g, &r),
        ERR_OK);
    /* Let the first login reach the fake Vault, then reload. */
    for (int i = 0; i < 20 && atomic_load(&logins) == 0; i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        sleep_ms(10);
    }
    assert_int_equal(atomic_load(&logins), 1);
    char text[1024], err[CONFIG_ERR_LEN];
    snprintf(text, sizeof(text),
             "{\"listeners\":[{\"path\":\"/x.sock\",\"tenant\":\"acme\"}],"
             "\"vault\":{\"address\":\"unix:%s\",\"timeout_ms\":5000,"
             "\"approle\":{\"role_id_file\":\"%s\",\"secret_id_file\":\"%s\"}}}",
             link, role_path, secret_path);
    struct config *next = NULL;
    assert_int_equal(config_parse(text, strlen(text), &next, err), ERR_OK);
    vault_set_config(vault, next);
    config_unref(&next);
    while (g.calls == 0) {
        assert_int_equal(event_base_loop(base, EVLOOP_ONCE), 0);
    }
    assert_int_equal(g.e, ERR_OK);
    assert_int_equal(g.status, 200);
    assert_string_equal(read_token, "tok-a");
    assert_int_equal(atomic_load(&logins), 2);
    unlink(link);
}

/* Reloads the agent's config with these AppRole files (the fake Vault's address kept). */
static void reload_approle(const char *role_id_file, const char *secret_id_file)
{
    char text[1024], err[CONFIG_ERR_LEN];
    snprintf(text, sizeof(text),
             "{\"listeners\":[{\"path\":\"/x.sock\",\"tenant\":\"acme\"}],"
             "\"vault\":{\"address\":\"unix:%s\",\"timeout_ms\":5000,"
             "\"approle\":{\"role_id_file\":\"%s\",\"secret_id_file\":\"%s\"}}}",
             fv.sock_path, role_id_file, secret_id_file);
    struct config *next = NULL;
    assert_int_equal(config_parse(text, strlen(text), &next, err), ERR_OK);
    vault_set_config(vault, next);
    config_unref(&next);
}

/*
 * A reload that changes the auth method's settings (here AppRole's secret_id
 * file; the cert auth files, role name and mount, Kubernetes' role, JWT file
 * and mount are compared the same way) logs in again at once, with no request
 * waiting, and the next request uses that token. A reload that changes none
 * of them keeps the token. Before, the token of the old settings was kept
 * until it needed renewing.
 */
static void test_reload_changing_credentials_logs_in_at_once(void **state)
{
    (void)state;
    start_approle("good\n", 0600);
    assert_int_equal(one_request(), ERR_OK);
    assert_int_equal(atomic_load(&logins), 1);
    /* The same settings: nothing happens. */
    reload_approle(role_path, secret_path);
    for (int i = 0; i < 20; i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        sleep_ms(10);
    }
    assert_int_equal(atomic_load(&logins), 1);
    /* Another secret_id file: a login at once, before any request. */
    char other[200];
    snprintf(other, sizeof(other), "%s/secret_id.2", fv.dir);
    write_file(other, "good\n", 0600);
    reload_approle(role_path, other);
    for (int i = 0; i < 200 && atomic_load(&logins) < 2; i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        sleep_ms(10);
    }
    assert_int_equal(atomic_load(&logins), 2);
    assert_int_equal(one_request(), ERR_OK);
    assert_int_equal(atomic_load(&logins), 2);
    assert_string_equal(read_token, "tok-a");
    unlink(other);
}

/*
 * A secret_id file that is group readable: logged once, not once per request;
 * chmod 600 (the inode changes: ctime) lets the next request log in at once.
 */
static void test_unreadable_credentials_logged_once_per_step(void **state)
{
    (void)state;
    start_approle("good\n", 0640);
    vault_start(vault); /* as main() does: the first attempt, at start */
    for (int i = 0; i < 13; i++) {
        assert_int_equal(one_request(), ERR_AUTH);
    }
    fprintf(stderr, "# start + 13 requests: %d 'credentials unreadable' line(s)\n",
            lines_unreadable);
    assert_int_equal(lines_unreadable, 1);
    assert_int_equal(atomic_load(&logins), 0);
    assert_int_equal(chmod(secret_path, 0600), 0);
    assert_int_equal(one_request(), ERR_OK);
    assert_int_equal(atomic_load(&logins), 1);
    assert_int_equal(lines_unreadable, 1);
}

/*
 * Cert auth: the key file is checked again at each login (it may be
 * replaced at run time by cert-manager): group-readable, the login is not
 * attempted (nothing reaches the network; the https address is a closed
 * port), it is logged once for many requests naming the file, and its
 * content never. Fixed (chmod 600), the backoff ends at once and a login is
 * attempted (here: the port is closed, so Vault is unreachable).
 */
static void test_cert_key_mode_checked_at_login(void **state)
{
    (void)state;
    char crt[200], key[200], members[600], text[1024], err[CONFIG_ERR_LEN];
    snprintf(crt, sizeof(crt), "%s/node.crt", fv.dir);
    snprintf(key, sizeof(key), "%s/node.key", fv.dir);
    write_file(crt, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", 0644);
    write_file(key, "-----BEGIN PRIVATE KEY-----\nsk-canary-key-line\n-----END PRIVATE KEY-----\n",
               0640);
    snprintf(members, sizeof(members), "\"cert\":{\"cert_file\":\"%s\",\"key_file\":\"%s\"}", crt,
             key);
    snprintf(text, sizeof(text),
             "{\"listeners\":[{\"path\":\"/x.sock\",\"tenant\":\"acme\"}],"
             "\"vault\":{\"address\":\"https://127.0.0.1:1\",\"timeout_ms\":2000,%s}}",
             members);
    assert_int_equal(config_parse(text, strlen(text), &cfg, err), ERR_OK);
    assert_string_equal(cfg->vault.cert.mount, "cert");
    base = event_base_new();
    up = upstream_new(base, 16);
    vault = vault_new(base, up, cfg);
    assert_non_null(vault);
    vault_start(vault);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(one_request(), ERR_AUTH);
    }
    assert_int_equal(lines_unreadable, 1);
    assert_int_equal(lines_failed, 0);
    assert_int_equal(chmod(key, 0600), 0);
    enum err e = one_request();
    assert_true(e == ERR_UNAVAIL || e == ERR_TIMEOUT);
    assert_int_equal(lines_unreadable, 1);
    assert_int_equal(lines_canary, 0);
    unlink(crt);
    unlink(key);
}

/*
 * A token file that Vault Agent's sink has not written yet: one log line for
 * many requests, and the file is read as soon as it appears (no waiting out
 * the backoff).
 */
static void test_token_file_appears(void **state)
{
    (void)state;
    char path[200], members[512];
    snprintf(path, sizeof(path), "%s/sink-token", fv.dir);
    snprintf(members, sizeof(members), "\"token_file\":\"%s\"", path);
    start(members);
    vault_start(vault);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(one_request(), ERR_AUTH);
    }
    assert_int_equal(lines_token, 1);
    write_file(path, "tok-sink\n", 0600);
    assert_int_equal(one_request(), ERR_OK);
    assert_int_equal(atomic_load(&reads), 1);
    unlink(path);
}

/*
 * A token with a 3 s TTL: renewal at 2 s gets a 503 (Vault sealed for a
 * moment), so it is tried again while the token lasts (1 s later), and
 * answers. One login in all. Before the fix the 503 dropped the token and
 * logged in again (each AppRole login uses up a secret_id use).
 */
static void test_renewal_5xx_retried_without_login(void **state)
{
    (void)state;
    atomic_store(&lease_s, 3);
    atomic_store(&renewals_to_fail, 1);
    start_approle("good\n", 0600);
    vault_start(vault);
    time_t t0 = time(NULL);
    while (atomic_load(&renewals) < 2 && time(NULL) - t0 < 8) {
        struct timeval tv = {0, 100000};
        event_base_loopexit(base, &tv);
        assert_int_equal(event_base_dispatch(base), 0);
    }
    fprintf(stderr, "# %d renewal(s), %d login(s)\n", atomic_load(&renewals), atomic_load(&logins));
    assert_int_equal(atomic_load(&renewals), 2);
    assert_int_equal(atomic_load(&logins), 1);
    assert_int_equal(vault_stats(vault)->renewals, 1);
    assert_int_equal(one_request(), ERR_OK);
    assert_int_equal(atomic_load(&logins), 1);
}

static void watchdog(int sig)
{
    (void)sig;
    static const char msg[] = "# the event loop blocked reading a credential file\n";
    (void)!write(2, msg, sizeof(msg) - 1);
    _exit(1);
}

/*
 * The token file is a FIFO with no writer (replaced after the start-up
 * checks, which refuse one): reading it must not block the agent. Before
 * the fix open() waited for a writer forever, the whole agent with it.
 */
static void test_fifo_credential_file_does_not_block(void **state)
{
    (void)state;
    char path[200], members[512];
    snprintf(path, sizeof(path), "%s/sink-fifo", fv.dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    snprintf(members, sizeof(members), "\"token_file\":\"%s\"", path);
    start(members);
    signal(SIGALRM, watchdog);
    alarm(10);
    vault_start(vault);
    assert_int_equal(one_request(), ERR_AUTH);
    alarm(0);
    assert_int_equal(lines_token, 1);
    unlink(path);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    jalloc_install();
    if (secret_heap_init((size_t)1 << 20) != ERR_OK) {
        return 1;
    }
    log_init(NULL, LOGL_INFO);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_refused_login_backs_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_login_5xx_holds_one_step, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_moving_address_drops_login_in_flight, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reload_changing_credentials_logs_in_at_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unreadable_credentials_logged_once_per_step, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_token_file_appears, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cert_key_mode_checked_at_login, setup, teardown),
        cmocka_unit_test_setup_teardown(test_renewal_5xx_retried_without_login, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fifo_credential_file_does_not_block, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
