/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for agent/keycache (with agent/vault and agent/upstream under it):
 * one Vault fetch shared by concurrent callers, hits, negative caching, wipe on
 * invalidate and expiry, Vault errors, token refusal, cancellation, and the
 * creds parser's bad-input matrix. Vault is a tiny HTTP server on a Unix
 * socket in a thread of this process, counting the requests it serves.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent/config.h"
#include "agent/jalloc.h"
#include "agent/keycache.h"
#include "agent/upstream.h"
#include "agent/vault.h"
#include "common/secret.h"
#include "tests/unit/helpers/fakevault.h"

#define CANARY "sk-CANARY-keycache-7f3a9"

static struct fakevault fv;
static atomic_int creds_calls[8]; /* by provider index below */
static atomic_int lookups;

static const char *const fake_providers[] = {"openai", "none",  "boom",   "badjson",
                                             "short",  "quota", "denied", NULL};

static int provider_index(const char *p)
{
    for (int i = 0; fake_providers[i] != NULL; i++) {
        if (strcmp(fake_providers[i], p) == 0) {
            return i;
        }
    }
    return 7;
}

static void vault_handle(const struct fakevault_req *r, int *status, char *out)
{
    if (strcmp(r->token, "tok1") != 0) {
        *status = 403;
        snprintf(out, FAKEVAULT_MAX_REPLY, "{\"errors\":[\"permission denied\"]}");
        return;
    }
    if (strcmp(r->path, "/v1/auth/token/lookup-self") == 0) {
        atomic_fetch_add(&lookups, 1);
        *status = 200;
        snprintf(out, FAKEVAULT_MAX_REPLY, "{\"data\":{\"ttl\":0,\"renewable\":false}}");
        return;
    }
    char prov[64] = "";
    if (sscanf(r->path, "/v1/byok/tenants/acme/creds/%63[^?]", prov) != 1) {
        *status = 404;
        return;
    }
    atomic_fetch_add(&creds_calls[provider_index(prov)], 1);
    if (strcmp(prov, "openai") == 0 || strcmp(prov, "short") == 0) {
        *status = 200;
        snprintf(out, FAKEVAULT_MAX_REPLY,
                 "{\"data\":{\"tenant\":\"acme\",\"provider\":{\"name\":\"%s\",\"api_style\":"
                 "\"openai\",\"base_url\":\"https://x\"},\"api_key\":\"" CANARY "\","
                 "\"ttl\":%d,\"settings\":{\"budget_tier\":\"LOW\"},\"metadata\":{}}}",
                 prov, strcmp(prov, "short") == 0 ? 2 : 300);
    } else if (strcmp(prov, "boom") == 0) {
        *status = 500;
        snprintf(out, FAKEVAULT_MAX_REPLY, "{\"errors\":[\"internal\"]}");
    } else if (strcmp(prov, "denied") == 0) {
        *status = 403; /* the agent's policy does not cover this path */
        snprintf(out, FAKEVAULT_MAX_REPLY, "{\"errors\":[\"permission denied\"]}");
    } else if (strcmp(prov, "quota") == 0) {
        *status = 429; /* Vault's rate-limit quota */
        snprintf(out, FAKEVAULT_MAX_REPLY,
                 "{\"errors\":[\"request path: rate limit quota exceeded\"]}");
    } else if (strcmp(prov, "badjson") == 0) {
        *status = 200;
        snprintf(out, FAKEVAULT_MAX_REPLY, "{\"data\":");
    } else {
        *status = 404;
        snprintf(out, FAKEVAULT_MAX_REPLY, "{\"errors\":[\"no active key\"]}");
    }
}

struct env {
    struct event_base *base;
    struct config *cfg;
    struct upstream *up;
    struct vault *vault;
    struct keycache *kc;
};

static struct env E;

/* The tests' config against the fake Vault, with a key type and a key TTL. */
static struct config *test_config(const char *key_type, int max_ttl_s)
{
    char text[1024], err[CONFIG_ERR_LEN];
    snprintf(text, sizeof(text),
             "{\"listeners\":[{\"path\":\"/x.sock\",\"tenant\":\"acme\"}],"
             "\"vault\":{\"address\":\"unix:%s\",\"token_file\":\"%s\",\"timeout_ms\":5000,"
             "\"key_type\":\"%s\"},\"keycache\":{\"max_ttl_s\":%d,\"negative_ttl_s\":60}}",
             fv.sock_path, fv.token_path, key_type, max_ttl_s);
    struct config *c = NULL;
    assert_int_equal(config_parse(text, strlen(text), &c, err), ERR_OK);
    return c;
}

static int setup(void **state)
{
    (void)state;
    fakevault_start(&fv, "tok1\n", vault_handle);
    E.cfg = test_config("production", 300);
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

static void run_until(const int *counter, int want)
{
    while (*counter < want) {
        assert_int_equal(event_base_loop(E.base, EVLOOP_ONCE), 0);
    }
}

static void get_one(const char *provider, struct got *g)
{
    memset(g, 0, sizeof(*g));
    struct keycache_wait *w = NULL;
    assert_int_equal(keycache_get(E.kc, "acme", provider, got_cb, g, &w), ERR_OK);
    run_until(&g->calls, 1);
}

static void test_single_flight(void **state)
{
    (void)state;
    enum { N = 10 };
    struct got g[N];
    memset(g, 0, sizeof(g));
    int done = 0;
    for (int i = 0; i < N; i++) {
        struct keycache_wait *w = NULL;
        assert_int_equal(keycache_get(E.kc, "acme", "openai", got_cb, &g[i], &w), ERR_OK);
        assert_non_null(w); /* nothing cached yet: every caller waits */
    }
    while (done < N) {
        assert_int_equal(event_base_loop(E.base, EVLOOP_ONCE), 0);
        done = 0;
        for (int i = 0; i < N; i++) {
            done += g[i].calls;
        }
    }
    assert_int_equal(atomic_load(&creds_calls[0]), 1);
    for (int i = 0; i < N; i++) {
        assert_int_equal(g[i].calls, 1);
        assert_int_equal(g[i].e, ERR_OK);
        assert_ptr_equal(g[i].ent, g[0].ent);
    }
    struct keycache_entry *ent = g[0].ent;
    assert_int_equal(ent->key->len, strlen(CANARY));
    assert_memory_equal(ent->key->data, CANARY, strlen(CANARY));
    /* The key is held only as a secret: the JSON kept for routing has no api_key. */
    assert_null(json_object_get(ent->creds, "api_key"));
    char *dump = json_dumps(ent->creds, 0);
    assert_null(strstr(dump, "CANARY"));
    free(dump);
    assert_string_equal(json_string_value(json_object_get(ent->entry, "name")), "openai");
    assert_string_equal(json_string_value(json_object_get(ent->settings, "budget_tier")), "LOW");
    for (int i = 0; i < N; i++) {
        keycache_put(&g[i].ent);
        assert_null(g[i].ent);
    }
    assert_int_equal(keycache_stats(E.kc)->shared, N - 1);
}

static void test_hit_and_invalidate(void **state)
{
    (void)state;
    struct got g = {0};
    struct keycache_wait *w = (struct keycache_wait *)1;
    assert_int_equal(keycache_get(E.kc, "acme", "openai", got_cb, &g, &w), ERR_OK);
    /* A hit answers synchronously. */
    assert_null(w);
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.e, ERR_OK);
    int before = atomic_load(&creds_calls[0]);
    unsigned long long wipes = keycache_stats(E.kc)->wipes;
    /* A provider 401: the key goes at once, even while referenced. */
    keycache_invalidate(E.kc, "acme", "openai");
    assert_null(g.ent->key);
    assert_null(keycache_peek(E.kc, "acme", "openai"));
    assert_int_equal(keycache_stats(E.kc)->wipes, wipes + 1);
    keycache_put(&g.ent);
    get_one("openai", &g);
    assert_int_equal(g.e, ERR_OK);
    assert_non_null(g.ent->key);
    assert_int_equal(atomic_load(&creds_calls[0]), before + 1);
    keycache_put(&g.ent);
}

/*
 * State another module keeps with a key (a Vertex access token: gcptoken.h)
 * goes with it: aux_wipe when the key is wiped while the entry is still
 * referenced, aux_free when the entry is freed; each once.
 */
static int aux_wipes, aux_frees;
static void aux_wipe_cb(struct keycache_entry *e)
{
    assert_null(e->key); /* the key is already gone */
    aux_wipes++;
}
static void aux_free_cb(struct keycache_entry *e)
{
    aux_frees++;
    free(e->aux);
    e->aux = NULL;
}

static void test_aux_goes_with_the_key(void **state)
{
    (void)state;
    keycache_invalidate(E.kc, "acme", "openai");
    struct got g;
    get_one("openai", &g);
    assert_int_equal(g.e, ERR_OK);
    aux_wipes = aux_frees = 0;
    g.ent->aux = malloc(16);
    g.ent->aux_wipe = aux_wipe_cb;
    g.ent->aux_free = aux_free_cb;
    keycache_invalidate_entry(E.kc, g.ent); /* a provider 401 while the call holds it */
    assert_int_equal(aux_wipes, 1);
    assert_int_equal(aux_frees, 0);
    keycache_put(&g.ent);
    assert_int_equal(aux_wipes, 1);
    assert_int_equal(aux_frees, 1);
    /* Unreferenced: unlinked and freed at once (expiry, exit). */
    get_one("openai", &g);
    g.ent->aux = malloc(16);
    g.ent->aux_wipe = aux_wipe_cb;
    g.ent->aux_free = aux_free_cb;
    keycache_put(&g.ent);
    keycache_invalidate(E.kc, "acme", "openai");
    assert_int_equal(aux_frees, 2);
}

/*
 * Two calls used the same key and both get a 401: the first drops it, a third
 * call fetches the new one, then the second call's late 401 (for the old key)
 * must leave the new entry and its key alone.
 */
static void test_late_401_keeps_newer_key(void **state)
{
    (void)state;
    keycache_invalidate(E.kc, "acme", "openai");
    struct got a, b, c;
    get_one("openai", &a);
    get_one("openai", &b);
    assert_int_equal(a.e, ERR_OK);
    assert_true(a.ent == b.ent);
    keycache_invalidate_entry(E.kc, a.ent); /* call A's 401 */
    get_one("openai", &c);                  /* call C fetches the (rotated) key */
    assert_int_equal(c.e, ERR_OK);
    assert_true(c.ent != a.ent);
    keycache_invalidate_entry(E.kc, b.ent); /* call B's late 401, for the old key */
    assert_non_null(c.ent->key);
    assert_true(keycache_peek(E.kc, "acme", "openai") == c.ent);
    keycache_put(&a.ent);
    keycache_put(&b.ent);
    keycache_put(&c.ent);
}

/*
 * A path the agent's policy does not cover answers 403 to a fresh token:
 * every such request is refused, without a new login (or token-file read
 * and lookup) per request.
 */
static void test_denied_path_no_login_storm(void **state)
{
    (void)state;
    int before = atomic_load(&lookups);
    for (int i = 0; i < 5; i++) {
        struct got g;
        get_one("denied", &g);
        assert_int_equal(g.e, ERR_DENIED);
    }
    assert_true(atomic_load(&lookups) - before <= 1);
    struct got g;
    get_one("openai", &g); /* the token still works */
    assert_int_equal(g.e, ERR_OK);
    keycache_put(&g.ent);
}

/* Reload: keys of another key type are dropped; a lower max_ttl_s shortens cached entries. */
static void test_reload_moves_or_shortens(void **state)
{
    (void)state;
    struct got g;
    get_one("openai", &g);
    assert_int_equal(g.e, ERR_OK);
    keycache_put(&g.ent);
    assert_non_null(keycache_peek(E.kc, "acme", "openai"));
    struct config *c2 = test_config("production", 1);
    keycache_set_config(E.kc, c2); /* same Vault and key type, max_ttl_s 300 -> 1 */
    const struct keycache_entry *ent = keycache_peek(E.kc, "acme", "openai");
    assert_non_null(ent);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    assert_true(ent->expires <= ts.tv_sec + 1);
    config_unref(&c2);
    c2 = test_config("staging", 300);
    keycache_set_config(E.kc, c2); /* another key type: nothing cached is its key */
    assert_null(keycache_peek(E.kc, "acme", "openai"));
    keycache_set_config(E.kc, E.cfg); /* back, for the tests after this one */
    config_unref(&c2);
}

/*
 * A reload to another key type while a fetch is in flight: the fetch serves
 * only the caller already waiting; a caller after the reload starts a fetch
 * of its own (the old code let it join the stale one and get the old key
 * type's key), and that fetch is what is cached.
 */
static void test_stale_fetch_not_shared_after_reload(void **state)
{
    (void)state;
    keycache_invalidate(E.kc, "acme", "openai");
    int fetches = atomic_load(&creds_calls[0]);
    struct got before = {0}, after = {0};
    struct keycache_wait *w = NULL;
    assert_int_equal(keycache_get(E.kc, "acme", "openai", got_cb, &before, &w), ERR_OK);
    assert_non_null(w);
    struct config *c2 = test_config("staging", 300);
    keycache_set_config(E.kc, c2);
    assert_int_equal(keycache_get(E.kc, "acme", "openai", got_cb, &after, &w), ERR_OK);
    assert_non_null(w); /* not a hit on anything of the old key type */
    run_until(&before.calls, 1);
    run_until(&after.calls, 1);
    assert_int_equal(before.e, ERR_OK);
    assert_int_equal(after.e, ERR_OK);
    assert_int_equal(atomic_load(&creds_calls[0]), fetches + 2);
    assert_true(after.ent != before.ent);
    assert_true(keycache_peek(E.kc, "acme", "openai") == after.ent);
    /* The stale fetch's key served its caller and is not kept: nobody after it uses it. */
    assert_null(before.ent->key);
    assert_non_null(after.ent->key);
    keycache_put(&before.ent);
    keycache_put(&after.ent);
    keycache_set_config(E.kc, E.cfg); /* back, for the tests after this one */
    keycache_invalidate(E.kc, "acme", "openai");
    config_unref(&c2);
}

static void test_negative_and_errors(void **state)
{
    (void)state;
    struct got g;
    get_one("none", &g);
    assert_int_equal(g.e, ERR_NOTFOUND);
    assert_null(g.ent);
    get_one("none", &g);
    assert_int_equal(g.e, ERR_NOTFOUND);
    assert_int_equal(atomic_load(&creds_calls[1]), 1); /* remembered */
    get_one("boom", &g);
    assert_int_equal(g.e, ERR_UNAVAIL);
    get_one("boom", &g);
    assert_int_equal(atomic_load(&creds_calls[2]), 2); /* errors are not cached */
    get_one("quota", &g); /* Vault's 429: unavailable for now, not "no key" */
    assert_int_equal(g.e, ERR_UNAVAIL);
    assert_null(keycache_peek(E.kc, "acme", "quota"));
    get_one("badjson", &g);
    assert_int_equal(g.e, ERR_PROTO);
    assert_null(keycache_peek(E.kc, "acme", "badjson"));
}

static void test_token_refused_then_fixed(void **state)
{
    (void)state;
    keycache_invalidate(E.kc, "acme", "openai");
    fakevault_write_token(&fv, "wrong-token");
    struct got g;
    get_one("openai", &g);
    /* The 403 made the client re-read its token file and retry once; still refused. */
    assert_int_equal(g.e, ERR_DENIED);
    fakevault_write_token(&fv, "tok1");
    get_one("openai", &g);
    assert_int_equal(g.e, ERR_OK);
    keycache_put(&g.ent);
}

static void test_cancel(void **state)
{
    (void)state;
    keycache_invalidate(E.kc, "acme", "openai");
    int before = atomic_load(&creds_calls[0]);
    struct got cancelled = {0}, other = {0};
    struct keycache_wait *w1 = NULL, *w2 = NULL;
    assert_int_equal(keycache_get(E.kc, "acme", "openai", got_cb, &cancelled, &w1), ERR_OK);
    assert_int_equal(keycache_get(E.kc, "acme", "openai", got_cb, &other, &w2), ERR_OK);
    keycache_cancel(w1);
    run_until(&other.calls, 1);
    assert_int_equal(cancelled.calls, 0);
    assert_int_equal(other.e, ERR_OK);
    assert_int_equal(atomic_load(&creds_calls[0]), before + 1);
    keycache_put(&other.ent);
    /* The fetch outlived the cancelled caller and serves the next one from the cache. */
    assert_non_null(keycache_peek(E.kc, "acme", "openai"));
}

/* A waiter's callback cancelling another wait on the same fetch: that one is not called. */
struct canceller {
    struct got got;
    struct keycache_wait **victim;
};

static void cancel_cb(void *arg, enum err e, struct keycache_entry *ent)
{
    struct canceller *c = arg;
    got_cb(&c->got, e, ent);
    keycache_cancel(*c->victim);
    *c->victim = NULL;
}

static void test_cancel_during_delivery(void **state)
{
    (void)state;
    keycache_invalidate(E.kc, "acme", "openai");
    struct got victim = {0};
    struct keycache_wait *wv = NULL, *wc = NULL;
    struct canceller c = {.victim = &wv};
    /* Waiters are called newest first: the canceller runs before its victim. */
    assert_int_equal(keycache_get(E.kc, "acme", "openai", got_cb, &victim, &wv), ERR_OK);
    assert_int_equal(keycache_get(E.kc, "acme", "openai", cancel_cb, &c, &wc), ERR_OK);
    assert_non_null(wv);
    assert_non_null(wc);
    run_until(&c.got.calls, 1);
    assert_int_equal(c.got.e, ERR_OK);
    assert_int_equal(victim.calls, 0);
    keycache_put(&c.got.ent);
}

static void test_expiry(void **state)
{
    (void)state;
    struct got g;
    get_one("short", &g);
    assert_int_equal(g.e, ERR_OK);
    keycache_put(&g.ent);
    assert_non_null(keycache_peek(E.kc, "acme", "short"));
    /* ttl 2 s: after four seconds the entry must be gone (TTL semantics, not a speed check). */
    sleep(4);
    assert_null(keycache_peek(E.kc, "acme", "short"));
    get_one("short", &g);
    assert_int_equal(atomic_load(&creds_calls[4]), 2);
    keycache_put(&g.ent);
}

static void loop_for_ms(long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    assert_int_equal(event_base_loopexit(E.base, &tv), 0);
    assert_int_equal(event_base_dispatch(E.base), 0);
}

/*
 * An idle agent wipes a key when its TTL ends, not at some later sweep (the
 * sweep ran every 5 s, so a key could outlive its TTL by up to 5 s): with no
 * lookup at all, a key with a TTL of 2 s is wiped within 3 s of its fetch.
 */
static void test_idle_key_wiped_at_ttl(void **state)
{
    (void)state;
    struct keycache *kc = keycache_new(E.base, E.vault, E.cfg);
    assert_non_null(kc);
    struct got g = {0};
    struct keycache_wait *w = NULL;
    assert_int_equal(keycache_get(kc, "acme", "short", got_cb, &g, &w), ERR_OK);
    run_until(&g.calls, 1);
    assert_int_equal(g.e, ERR_OK);
    keycache_put(&g.ent);
    assert_int_equal(keycache_stats(kc)->wipes, 0);
    loop_for_ms(3000);
    assert_int_equal(keycache_stats(kc)->wipes, 1);
    assert_null(keycache_peek(kc, "acme", "short"));
    keycache_free(kc);
}

static void test_parse_creds_matrix(void **state)
{
    (void)state;
    struct secret *k = NULL;
    json_t *c = NULL;
    long ttl = -1;
    const char *ok = "{\"api_key\":\"abc\",\"ttl\":5,\"provider\":{}}";
    assert_int_equal(keycache_parse_creds(ok, strlen(ok), &k, &c, &ttl), ERR_OK);
    assert_int_equal(ttl, 5);
    assert_null(json_object_get(c, "api_key"));
    secret_free(&k);
    json_decref(c);
    /* The key's permissions: a list of names, empty or null. */
    static const char *const perms_ok[] = {
        "{\"api_key\":\"abc\",\"permissions\":[\"chat\",\"streaming\"]}",
        "{\"api_key\":\"abc\",\"permissions\":[]}",
        "{\"api_key\":\"abc\",\"permissions\":null}",
        NULL,
    };
    for (size_t i = 0; perms_ok[i] != NULL; i++) {
        assert_int_equal(keycache_parse_creds(perms_ok[i], strlen(perms_ok[i]), &k, &c, &ttl),
                         ERR_OK);
        secret_free(&k);
        json_decref(c);
    }
    static const char *const bad[] = {
        "",
        "{",
        "[]",
        "{\"ttl\":5}",
        "{\"api_key\":5}",
        "{\"api_key\":\"\"}",
        "{\"api_key\":\"a\\r\\nX-Injected: 1\"}",
        "{\"api_key\":\"a\\u0000b\"}",
        "{\"api_key\":\"abc\",\"provider\":\"openai\"}",
        "{\"api_key\":\"abc\",\"permissions\":\"chat\"}",
        "{\"api_key\":\"abc\",\"permissions\":[\"chat\",1]}",
        "{\"api_key\":\"abc\",\"permissions\":[\"p\",\"p\",\"p\",\"p\",\"p\",\"p\",\"p\",\"p\","
        "\"p\",\"p\","
        "\"p\",\"p\",\"p\",\"p\",\"p\",\"p\",\"p\",\"p\",\"p\",\"p\",\"p\",\"p\",\"p\",\"p\",\"p\","
        "\"p\",\"p\","
        "\"p\",\"p\",\"p\",\"p\",\"p\",\"p\",\"p\",\"p\",\"p\",\"p\",\"p\",\"p\",\"p\",\"p\",\"p\","
        "\"p\",\"p\","
        "\"p\",\"p\",\"p\",\"p\",\"p\",\"p\",\"p\",\"p\",\"p\",\"p\",\"p\",\"p\",\"p\",\"p\",\"p\","
        "\"p\",\"p\","
        "\"p\",\"p\",\"p\",\"p\"]}", /* 65 names */
        NULL,
    };
    for (size_t i = 0; bad[i] != NULL; i++) {
        k = NULL;
        c = NULL;
        assert_int_equal(keycache_parse_creds(bad[i], strlen(bad[i]), &k, &c, &ttl), ERR_PROTO);
        assert_null(k);
        assert_null(c);
    }
    /* Key length: KEYCACHE_MAX_KEY accepted, one more refused. */
    size_t cap = KEYCACHE_MAX_KEY + 64;
    char *text = malloc(cap);
    for (size_t n = KEYCACHE_MAX_KEY; n <= KEYCACHE_MAX_KEY + 1; n++) {
        size_t len = (size_t)snprintf(text, cap, "{\"api_key\":\"");
        memset(text + len, 'k', n);
        len += n;
        len += (size_t)snprintf(text + len, cap - len, "\"}");
        enum err e = keycache_parse_creds(text, len, &k, &c, &ttl);
        if (n == KEYCACHE_MAX_KEY) {
            assert_int_equal(e, ERR_OK);
            assert_int_equal(k->len, KEYCACHE_MAX_KEY);
            secret_free(&k);
            json_decref(c);
        } else {
            assert_int_equal(e, ERR_PROTO);
        }
    }
    free(text);
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
        cmocka_unit_test(test_single_flight),
        cmocka_unit_test(test_hit_and_invalidate),
        cmocka_unit_test(test_late_401_keeps_newer_key),
        cmocka_unit_test(test_aux_goes_with_the_key),
        cmocka_unit_test(test_denied_path_no_login_storm),
        cmocka_unit_test(test_reload_moves_or_shortens),
        cmocka_unit_test(test_stale_fetch_not_shared_after_reload),
        cmocka_unit_test(test_negative_and_errors),
        cmocka_unit_test(test_token_refused_then_fixed),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_cancel_during_delivery),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_idle_key_wiped_at_ttl),
        cmocka_unit_test(test_parse_creds_matrix),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    curl_global_cleanup();
    return rc;
}
