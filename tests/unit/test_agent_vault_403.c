/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for the agent's Vault client on a 403 with a token older than
 * VAULT_RELOGIN_MIN_AGE_S (10 s), against the fake Vault. Several clients
 * share one event loop and one fake Vault, each with its own AppRole role
 * (so its own tokens "tok-<role>-<n>"), and age together (one 11 s wait):
 * - "pol": a path its policy does not cover; a burst of 403s asks one
 *   lookup-self, gets 200, delivers every 403 and keeps the token: no new
 *   login (before: a login per 10 s of refused calls, each using up a
 *   secret_id use), and no second lookup for the next 10 s;
 * - "rev": its token revoked; lookup-self is refused, so one login and each
 *   call retried once with the new token succeeds;
 * - "down": lookup-self answered 503, then not answered in time; the 403
 *   goes to the caller and the token is kept (no login);
 * - "file": a token file's token follows the same rule (no re-read);
 * - "free": vault_free while the lookup-self and its waiting 403s are
 *   pending: no callback, nothing leaked or touched after (ASan build).
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
#include <stdbool.h>
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

enum role { R_POL, R_REV, R_DOWN, R_FILE, R_FREE, R__COUNT };
static const char *const role_names[R__COUNT] = {"pol", "rev", "down", "file", "free"};

/* How lookup-self answers a role's valid token. */
enum lookup_mode { LOOKUP_OK, LOOKUP_503, LOOKUP_HANG, LOOKUP_BLOCK };

static struct fakevault fv;
static atomic_int logins[R__COUNT], lookups[R__COUNT], reads[R__COUNT];
/* Tokens "tok-<role>-<n>" with n up to this are refused everywhere (revoked). */
static atomic_int revoked_upto[R__COUNT];
static atomic_int lookup_mode[R__COUNT];
/* LOOKUP_BLOCK: the handler says it has the lookup, then waits to be let go. */
static atomic_int block_seen, block_release;
/* The token of each role's last successful read (its number). */
static atomic_int read_token_n[R__COUNT];

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int role_index(const char *name)
{
    for (int i = 0; i < R__COUNT; i++) {
        if (strcmp(role_names[i], name) == 0) {
            return i;
        }
    }
    return -1;
}

static void deny(int *status, char *out)
{
    *status = 403;
    snprintf(out, FAKEVAULT_MAX_REPLY, "{\"errors\":[\"permission denied\"]}");
}

static void vault_handle(const struct fakevault_req *r, int *status, char *out)
{
    char role[16] = "";
    if (strcmp(r->path, "/v1/auth/approle/login") == 0) {
        const char *p = strstr(r->body, "\"role_id\":\"");
        int i = p != NULL && sscanf(p + 11, "%15[^\"]", role) == 1 ? role_index(role) : -1;
        if (i < 0) {
            *status = 400;
            return;
        }
        int n = atomic_fetch_add(&logins[i], 1) + 1;
        *status = 200;
        snprintf(out, FAKEVAULT_MAX_REPLY,
                 "{\"auth\":{\"client_token\":\"tok-%s-%d\",\"lease_duration\":3600,"
                 "\"renewable\":true}}",
                 role_names[i], n);
        return;
    }
    /* "tok-<role>-<n>" */
    const char *dash = strrchr(r->token, '-');
    long n = dash != NULL ? strtol(dash + 1, NULL, 10) : 0;
    int i = -1;
    if (strncmp(r->token, "tok-", 4) == 0 && dash != NULL && dash - r->token - 4 < 16) {
        snprintf(role, sizeof(role), "%.*s", (int)(dash - r->token - 4), r->token + 4);
        i = role_index(role);
    }
    bool lookup = strcmp(r->path, "/v1/auth/token/lookup-self") == 0;
    if (i >= 0 && lookup) {
        atomic_fetch_add(&lookups[i], 1); /* asked, whether the token is valid or not */
    }
    if (i < 0 || n <= atomic_load(&revoked_upto[i])) {
        deny(status, out);
        return;
    }
    if (lookup) {
        int mode = atomic_load(&lookup_mode[i]);
        if (mode == LOOKUP_503) {
            *status = 503;
            snprintf(out, FAKEVAULT_MAX_REPLY, "{\"errors\":[\"Vault is sealed\"]}");
            return;
        }
        if (mode == LOOKUP_HANG) {
            sleep_ms(1500); /* past that client's 1 s timeout */
        }
        if (mode == LOOKUP_BLOCK) {
            atomic_store(&block_seen, 1);
            for (int k = 0; k < 10000 && atomic_load(&block_release) == 0; k++) {
                sleep_ms(1);
            }
        }
        *status = 200;
        snprintf(out, FAKEVAULT_MAX_REPLY, "{\"data\":{\"ttl\":3600,\"renewable\":true}}");
        return;
    }
    if (strstr(r->path, "/denied/") != NULL) {
        deny(status, out); /* the agent's policy does not cover this tenant */
        return;
    }
    atomic_fetch_add(&reads[i], 1);
    atomic_store(&read_token_n[i], (int)n);
    *status = 200;
    snprintf(out, FAKEVAULT_MAX_REPLY, "{\"data\":{}}");
}

static struct event_base *base;
static struct upstream *up;
static struct config *cfgs[R__COUNT];
static struct vault *vaults[R__COUNT];

static void write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

/* A client of role i: AppRole with role_id <role>, or the token file for R_FILE. */
static void client_new(int i, int timeout_ms)
{
    char members[512], text[1024], err[CONFIG_ERR_LEN];
    if (i == R_FILE) {
        snprintf(members, sizeof(members), "\"token_file\":\"%s\"", fv.token_path);
    } else {
        char role_path[160], secret_path[160];
        snprintf(role_path, sizeof(role_path), "%s/role_id-%s", fv.dir, role_names[i]);
        snprintf(secret_path, sizeof(secret_path), "%s/secret_id", fv.dir);
        write_file(role_path, role_names[i]);
        write_file(secret_path, "sid\n");
        snprintf(members, sizeof(members),
                 "\"approle\":{\"role_id_file\":\"%s\",\"secret_id_file\":\"%s\"}", role_path,
                 secret_path);
    }
    snprintf(text, sizeof(text),
             "{\"listeners\":[{\"path\":\"/x.sock\",\"tenant\":\"acme\"}],"
             "\"vault\":{\"address\":\"unix:%s\",\"timeout_ms\":%d,%s}}",
             fv.sock_path, timeout_ms, members);
    assert_int_equal(config_parse(text, strlen(text), &cfgs[i], err), ERR_OK);
    vaults[i] = vault_new(base, up, cfgs[i]);
    assert_non_null(vaults[i]);
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

#define BURST 20

/* n calls at once on client i (tenant "denied" or "acme"); runs the loop until all are answered. */
static void burst(int i, const char *tenant, int n, struct got *g)
{
    char path[128];
    snprintf(path, sizeof(path), "byok/tenants/%s/creds/openai", tenant);
    for (int k = 0; k < n; k++) {
        struct vault_req *r = NULL;
        g[k] = (struct got){0};
        assert_int_equal(vault_request(vaults[i], "GET", path, NULL, got_cb, &g[k], &r), ERR_OK);
    }
    for (int k = 0; k < n; k++) {
        while (g[k].calls == 0) {
            assert_int_equal(event_base_loop(base, EVLOOP_ONCE), 0);
        }
        assert_int_equal(g[k].calls, 1);
    }
}

/* One call; its status (0 when Vault was not reached). */
static long one(int i, const char *tenant)
{
    struct got g;
    burst(i, tenant, 1, &g);
    return g.e == ERR_OK ? g.status : 0;
}

static int setup(void **state)
{
    (void)state;
    for (int i = 0; i < R__COUNT; i++) {
        atomic_store(&logins[i], 0);
        atomic_store(&lookups[i], 0);
        atomic_store(&reads[i], 0);
        atomic_store(&revoked_upto[i], 0);
        atomic_store(&lookup_mode[i], LOOKUP_OK);
        atomic_store(&read_token_n[i], 0);
    }
    atomic_store(&block_seen, 0);
    atomic_store(&block_release, 0);
    fakevault_start(&fv, "tok-file-1\n", vault_handle);
    base = event_base_new();
    up = upstream_new(base, 64);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < R__COUNT; i++) {
        vault_free(vaults[i]);
        vaults[i] = NULL;
        config_unref(&cfgs[i]);
    }
    upstream_free(up);
    event_base_free(base);
    char path[160];
    for (int i = 0; i < R__COUNT; i++) {
        snprintf(path, sizeof(path), "%s/role_id-%s", fv.dir, role_names[i]);
        unlink(path);
    }
    snprintf(path, sizeof(path), "%s/secret_id", fv.dir);
    unlink(path);
    fakevault_stop(&fv);
    return 0;
}

/* Runs the loop without blocking for about ms milliseconds, or until *flag is set. */
static void spin(long ms, atomic_int *flag)
{
    for (long k = 0; k < ms && (flag == NULL || atomic_load(flag) == 0); k++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        sleep_ms(1);
    }
}

static void test_403_on_old_token(void **state)
{
    (void)state;
    for (int i = 0; i < R__COUNT; i++) {
        client_new(i, i == R_DOWN ? 1000 : 5000);
        assert_int_equal(one(i, "acme"), 200); /* logged in (token file read), token works */
    }
    /* A 403 on a young token is the policy's: no lookup, no login. */
    assert_int_equal(one(R_POL, "denied"), 403);
    assert_int_equal(atomic_load(&lookups[R_POL]), 0);

    sleep_ms(11000); /* every token is now older than VAULT_RELOGIN_MIN_AGE_S */

    /* pol: a burst of refused calls shares one lookup-self; the token stays. */
    struct got g[BURST];
    burst(R_POL, "denied", BURST, g);
    for (int k = 0; k < BURST; k++) {
        assert_int_equal(g[k].e, ERR_OK);
        assert_int_equal(g[k].status, 403);
    }
    fprintf(stderr, "# pol: %d refused calls: %d login(s), %d lookup(s)\n", BURST,
            atomic_load(&logins[R_POL]), atomic_load(&lookups[R_POL]));
    assert_int_equal(atomic_load(&logins[R_POL]), 1);
    assert_int_equal(atomic_load(&lookups[R_POL]), 1);
    /* Checked just now: the next refusals within 10 s ask nothing. */
    burst(R_POL, "denied", BURST, g);
    assert_int_equal(g[BURST - 1].status, 403);
    assert_int_equal(atomic_load(&lookups[R_POL]), 1);
    assert_int_equal(one(R_POL, "acme"), 200);
    assert_int_equal(atomic_load(&read_token_n[R_POL]), 1);
    assert_int_equal(vault_stats(vaults[R_POL])->logins, 1);

    /* rev: the token revoked; lookup-self refused; one login, every call retried and served. */
    atomic_store(&revoked_upto[R_REV], 1);
    burst(R_REV, "acme", 5, g);
    for (int k = 0; k < 5; k++) {
        assert_int_equal(g[k].status, 200);
    }
    fprintf(stderr, "# rev: %d login(s), %d lookup(s)\n", atomic_load(&logins[R_REV]),
            atomic_load(&lookups[R_REV]));
    assert_int_equal(atomic_load(&logins[R_REV]), 2);
    assert_int_equal(atomic_load(&lookups[R_REV]), 1); /* one for the five 403s: refused */
    assert_int_equal(atomic_load(&read_token_n[R_REV]), 2);

    /* down: lookup-self 503, then no answer in time: the 403 goes out, the token stays. */
    atomic_store(&lookup_mode[R_DOWN], LOOKUP_503);
    assert_int_equal(one(R_DOWN, "denied"), 403);
    assert_int_equal(atomic_load(&lookups[R_DOWN]), 1);
    atomic_store(&lookup_mode[R_DOWN], LOOKUP_HANG);
    assert_int_equal(one(R_DOWN, "denied"), 403);
    assert_int_equal(atomic_load(&lookups[R_DOWN]), 2);
    fprintf(stderr, "# down: %d login(s)\n", atomic_load(&logins[R_DOWN]));
    assert_int_equal(atomic_load(&logins[R_DOWN]), 1);
    atomic_store(&lookup_mode[R_DOWN], LOOKUP_OK);
    assert_int_equal(one(R_DOWN, "acme"), 200);
    assert_int_equal(atomic_load(&read_token_n[R_DOWN]), 1);

    /*
     * file: a refusal with a valid token read from the file: no re-read. The
     * count is taken now: the TTL lookup after reading the file runs in the
     * background and, on a loaded machine, may not have been made when the
     * first call returned.
     */
    int file_lookups = atomic_load(&lookups[R_FILE]);
    assert_int_equal(one(R_FILE, "denied"), 403);
    assert_int_equal(atomic_load(&lookups[R_FILE]), file_lookups + 1);
    assert_int_equal(vault_stats(vaults[R_FILE])->logins, 1);

    /* free: vault_free with the lookup-self in flight and 403s waiting for it. */
    atomic_store(&lookup_mode[R_FREE], LOOKUP_BLOCK);
    struct got fg[3] = {{0}};
    for (int k = 0; k < 3; k++) {
        struct vault_req *r = NULL;
        assert_int_equal(vault_request(vaults[R_FREE], "GET", "byok/tenants/denied/creds/openai",
                                       NULL, got_cb, &fg[k], &r),
                         ERR_OK);
    }
    spin(5000, &block_seen);
    assert_int_equal(atomic_load(&block_seen), 1);
    spin(200, NULL); /* the other two 403s come in and wait behind the lookup */
    vault_free(vaults[R_FREE]);
    vaults[R_FREE] = NULL;
    atomic_store(&block_release, 1);
    spin(300, NULL);
    for (int k = 0; k < 3; k++) {
        assert_int_equal(fg[k].calls, 0);
    }
    assert_int_equal(atomic_load(&lookups[R_FREE]), 1);
    assert_int_equal(atomic_load(&logins[R_FREE]), 1);
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
        cmocka_unit_test_setup_teardown(test_403_on_old_token, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
