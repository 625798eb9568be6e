/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for the agent's Vault token and its secure heap:
 * - a token file's token whose first lookup-self fails (Vault sealed or not
 *   up when the agent starts) is looked up again, so it is still renewed;
 * - the secure heap sized from keycache.max_entries (config_secure_heap_bytes,
 *   as agent/main.c does at start) holds max_entries cached keys of up to 503
 *   bytes and still the Vault token read again after a rotation; the sizes
 *   and the cap; a reload needing a larger heap than the running one refused.
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
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/config.h"
#include "agent/jalloc.h"
#include "agent/keycache.h"
#include "agent/upstream.h"
#include "agent/vault.h"
#include "common/secret.h"
#include "tests/unit/helpers/fakevault.h"

/* The longest key that takes one CONFIG_KEY_SLOT block (with its length and NUL). */
#define W1_KEY_LEN 503

static struct fakevault fv;
static atomic_int lookups, renewals, lookups_to_fail;
/* The length of the keys the fake Vault serves (W1_KEY_LEN unless a test says). */
static atomic_int key_len = W1_KEY_LEN;

static void vault_handle(const struct fakevault_req *r, int *status, char *out)
{
    if (strncmp(r->token, "tok", 3) != 0) {
        *status = 403;
        snprintf(out, FAKEVAULT_MAX_REPLY, "{\"errors\":[\"permission denied\"]}");
        return;
    }
    if (strcmp(r->path, "/v1/auth/token/lookup-self") == 0) {
        atomic_fetch_add(&lookups, 1);
        if (atomic_load(&lookups_to_fail) > 0) {
            atomic_fetch_sub(&lookups_to_fail, 1);
            *status = 503; /* sealed: Vault not ready when the agent starts */
            snprintf(out, FAKEVAULT_MAX_REPLY, "{\"errors\":[\"Vault is sealed\"]}");
            return;
        }
        *status = 200;
        snprintf(out, FAKEVAULT_MAX_REPLY, "{\"data\":{\"ttl\":3,\"renewable\":true}}");
        return;
    }
    if (strcmp(r->path, "/v1/auth/token/renew-self") == 0) {
        atomic_fetch_add(&renewals, 1);
        *status = 200;
        snprintf(out, FAKEVAULT_MAX_REPLY, "{\"auth\":{\"lease_duration\":3,\"renewable\":true}}");
        return;
    }
    char tenant[64] = "", prov[64] = "";
    if (sscanf(r->path, "/v1/byok/tenants/%63[^/]/creds/%63[^?]", tenant, prov) != 2) {
        *status = 404;
        return;
    }
    char key[3600];
    int kl = atomic_load(&key_len);
    memset(key, 'k', (size_t)kl);
    key[kl] = '\0';
    *status = 200;
    snprintf(out, FAKEVAULT_MAX_REPLY,
             "{\"data\":{\"provider\":{\"name\":\"%s\",\"api_style\":\"openai\"},"
             "\"api_key\":\"%s\",\"ttl\":300,\"settings\":{},\"metadata\":{}}}",
             prov, key);
}

struct env {
    struct event_base *base;
    struct config *cfg;
    struct upstream *up;
    struct vault *vault;
    struct keycache *kc;
};
static struct env E;

/* The tests' config against the fake Vault; keycache is a JSON object's members. */
static struct config *test_config(const char *keycache)
{
    char text[1024], err[CONFIG_ERR_LEN];
    snprintf(text, sizeof(text),
             "{\"listeners\":[{\"path\":\"/x.sock\",\"tenant\":\"acme\"}],"
             "\"vault\":{\"address\":\"unix:%s\",\"token_file\":\"%s\",\"timeout_ms\":5000},"
             "\"keycache\":{%s}}",
             fv.sock_path, fv.token_path, keycache);
    struct config *c = NULL;
    assert_int_equal(config_parse(text, strlen(text), &c, err), ERR_OK);
    return c;
}

static int setup(void **state)
{
    (void)state;
    atomic_store(&lookups, 0);
    atomic_store(&renewals, 0);
    atomic_store(&lookups_to_fail, 0);
    atomic_store(&key_len, W1_KEY_LEN);
    fakevault_start(&fv, "tok1\n", vault_handle);
    E.cfg = test_config("\"max_ttl_s\":300");
    E.base = event_base_new();
    E.up = upstream_new(E.base, 16);
    E.vault = vault_new(E.base, E.up, E.cfg);
    E.kc = keycache_new(E.base, E.vault, E.cfg);
    assert_non_null(E.kc);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    keycache_free(E.kc);
    vault_free(E.vault);
    upstream_free(E.up);
    event_base_free(E.base);
    config_unref(&E.cfg);
    fakevault_stop(&fv);
    return 0;
}

/* Runs the loop until *counter reaches want or `seconds` pass. */
static void run_for(atomic_int *counter, int want, int seconds)
{
    time_t t0 = time(NULL);
    while (atomic_load(counter) < want && time(NULL) - t0 < seconds) {
        struct timeval tv = {0, 100000};
        event_base_loopexit(E.base, &tv);
        assert_int_equal(event_base_dispatch(E.base), 0);
    }
}

/*
 * Two failed lookups (at 0 s and, retried, at 1 s), the third answers at 3 s
 * with a TTL of 3 s: renewal follows at 2/3 of it. Before the fix the token
 * was never looked up again and never renewed.
 */
static void test_lookup_retried_until_renewed(void **state)
{
    (void)state;
    atomic_store(&lookups_to_fail, 2);
    vault_start(E.vault);
    run_for(&renewals, 1, 12);
    fprintf(stderr, "# lookups %d, renewals %d\n", atomic_load(&lookups), atomic_load(&renewals));
    assert_int_equal(atomic_load(&lookups), 3);
    assert_true(atomic_load(&renewals) >= 1);
}

struct got {
    int calls;
    enum err e;
    struct keycache_entry *ent;
};

static void got_cb(void *arg, enum err e, struct keycache_entry *ent)
{
    struct got *g = arg;
    g->calls++;
    g->e = e;
    g->ent = ent;
}

static enum err fetch(const char *tenant)
{
    struct got g = {0};
    struct keycache_wait *w = NULL;
    enum err e = keycache_get(E.kc, tenant, "openai", got_cb, &g, &w);
    if (e != ERR_OK) {
        return e;
    }
    while (g.calls == 0) {
        assert_int_equal(event_base_loop(E.base, EVLOOP_ONCE), 0);
    }
    if (g.ent != NULL) {
        keycache_put(&g.ent);
    }
    return g.e;
}

/*
 * The default keycache.max_entries (10,000) of 503-byte keys, all cached at
 * once in the heap main() sized from that config; then the token file is
 * rotated and the new token read into the same heap. Before the fix the 1 MiB
 * heap ran out near 2,000 such keys (ERR_NOMEM), and then had no room for the
 * token either.
 */
static void test_heap_holds_max_entries(void **state)
{
    (void)state;
    long n = E.cfg->keycache.max_entries;
    assert_int_equal(n, 10000);
    for (long i = 0; i < n - 1; i++) {
        char tenant[32];
        snprintf(tenant, sizeof(tenant), "t%ld", i);
        enum err e = fetch(tenant);
        if (e != ERR_OK) {
            fail_msg("key %ld of %ld: %s", i + 1, n, err_name(e));
        }
    }
    unsigned long logins = vault_stats(E.vault)->logins;
    fakevault_write_token(&fv, "tok2"); /* read again at the next request */
    assert_int_equal(fetch("last"), ERR_OK);
    assert_int_equal(vault_stats(E.vault)->logins, logins + 1);
}

/*
 * Keys (3,500 bytes: 4 KiB blocks) fetched until the heap refuses one; the
 * token file is then rotated and the new token must still be read in: keys
 * leave CONFIG_HEAP_RESERVE for it. Before, keys took the heap to its last
 * block and a token change stopped every Vault call.
 */
static void test_heap_full_leaves_token_room(void **state)
{
    (void)state;
    atomic_store(&key_len, 3500);
    long held = 0;
    enum err e = ERR_OK;
    for (; held < 5000 && e == ERR_OK; held++) {
        char tenant[32];
        snprintf(tenant, sizeof(tenant), "h%ld", held);
        e = fetch(tenant);
    }
    fprintf(stderr, "# keys held before the heap refused one: %ld; free %zu\n", held - 1,
            secret_heap_free());
    assert_int_equal(e, ERR_NOMEM);
    assert_true(secret_heap_free() >= CONFIG_HEAP_RESERVE);
    unsigned long logins = vault_stats(E.vault)->logins;
    fakevault_write_token(&fv, "tok3");
    assert_int_equal(fetch("after-rotation"), ERR_NOMEM);       /* the key: still no room */
    assert_int_equal(vault_stats(E.vault)->logins, logins + 1); /* the token: read in */
}

static void test_heap_sizes(void **state)
{
    (void)state;
    struct config *c = test_config("\"max_entries\":1");
    assert_int_equal(config_secure_heap_bytes(c), CONFIG_HEAP_MIN);
    config_unref(&c);
    c = test_config("\"max_entries\":1000");
    assert_int_equal(config_secure_heap_bytes(c), (size_t)1 << 20);
    config_unref(&c);
    c = test_config("\"max_entries\":10000");
    size_t h10k = config_secure_heap_bytes(c);
    assert_int_equal(h10k, (size_t)8 << 20);
    config_unref(&c);
    c = test_config("\"max_entries\":100000");
    assert_int_equal(config_secure_heap_bytes(c), (size_t)64 << 20);
    char err[CONFIG_ERR_LEN];
    /* A reload cannot grow the heap: refused, naming the field. */
    assert_int_equal(config_check_heap(c, h10k, err), ERR_CONFIG);
    assert_non_null(strstr(err, "keycache.max_entries"));
    assert_int_equal(config_check_heap(c, (size_t)64 << 20, err), ERR_OK);
    config_unref(&c);
    /* Over the cap: refused by --check-config and at reload. */
    char text[256];
    snprintf(text, sizeof(text),
             "{\"listeners\":[{\"path\":\"/x.sock\",\"tenant\":\"acme\"}],"
             "\"vault\":{\"address\":\"unix:/v.sock\",\"token_file\":\"/t\"},"
             "\"keycache\":{\"max_entries\":%ld}}",
             CONFIG_MAX_KEYCACHE_ENTRIES + 1);
    assert_int_equal(config_parse(text, strlen(text), &c, err), ERR_CONFIG);
    assert_non_null(strstr(err, "max_entries"));
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    jalloc_install();
    /* As agent/main.c: the heap sized from the config, here the default max_entries. */
    char err[CONFIG_ERR_LEN];
    const char *text = "{\"listeners\":[{\"path\":\"/x.sock\",\"tenant\":\"acme\"}],"
                       "\"vault\":{\"address\":\"unix:/v.sock\",\"token_file\":\"/t\"}}";
    struct config *c = NULL;
    if (config_parse(text, strlen(text), &c, err) != ERR_OK ||
        secret_heap_init(config_secure_heap_bytes(c)) != ERR_OK) {
        return 1;
    }
    config_unref(&c);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lookup_retried_until_renewed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heap_holds_max_entries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heap_full_leaves_token_room, setup, teardown),
        cmocka_unit_test(test_heap_sizes),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
