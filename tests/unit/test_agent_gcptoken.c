/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for agent/gcptoken (with agent/keycache, agent/vault and
 * agent/upstream under it): a Vertex service-account key fetched from a fake
 * Vault is traded for an access token at a fake token endpoint (the same
 * scripted HTTP server on a Unix socket, path /token) on the event loop; one
 * trade shared by concurrent callers, the token kept and reused, wiped with
 * the key, dropped, expired; the endpoint's refusal (400), 503 and a
 * malformed answer; a wait cancelled while the trade goes on; a key wiped
 * during the trade; a refused key remembered (no new trade for a while). The service account's RSA
 * key is made at test time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>
#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/config.h"
#include "agent/gcptoken.h"
#include "agent/keycache.h"
#include "agent/upstream.h"
#include "agent/vault.h"
#include "common/gcpkey.h"
#include "common/secret.h"
#include "tests/unit/helpers/fakevault.h"

#define TOKEN "ya29.CANARY-gcptoken-unit"

static struct fakevault fv;
static char *sa_compact; /* the key file, compacted, as the plugin serves it */
static atomic_int token_calls;
static atomic_int token_mode;    /* 0: a token, 1: 400 invalid_grant, 2: 503, 3: junk */
static atomic_int token_expires; /* expires_in of the answers */
static atomic_int bad_form;      /* requests whose body was not the JWT bearer grant */

static void handle(const struct fakevault_req *r, int *status, char *out)
{
    if (strcmp(r->path, "/token") == 0) {
        atomic_fetch_add(&token_calls, 1);
        const char grant[] = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
                             "&assertion=";
        if (strcmp(r->method, "POST") != 0 || strncmp(r->body, grant, sizeof(grant) - 1) != 0) {
            atomic_fetch_add(&bad_form, 1);
        }
        switch (atomic_load(&token_mode)) {
        case 1:
            *status = 400;
            snprintf(out, FAKEVAULT_MAX_REPLY, "{\"error\":\"invalid_grant\"}");
            break;
        case 2:
            *status = 503;
            snprintf(out, FAKEVAULT_MAX_REPLY, "{\"error\":\"unavailable\"}");
            break;
        case 3:
            *status = 200;
            snprintf(out, FAKEVAULT_MAX_REPLY, "{\"access_token\":\"has space\",\"expires_in\":9}");
            break;
        default:
            *status = 200;
            snprintf(out, FAKEVAULT_MAX_REPLY,
                     "{\"access_token\":\"" TOKEN "\",\"expires_in\":%d,\"token_type\":\"Bearer\"}",
                     atomic_load(&token_expires));
        }
        return;
    }
    if (strcmp(r->path, "/v1/auth/token/lookup-self") == 0) {
        *status = 200;
        snprintf(out, FAKEVAULT_MAX_REPLY, "{\"data\":{\"ttl\":0,\"renewable\":false}}");
        return;
    }
    if (strncmp(r->path, "/v1/byok/tenants/acme/creds/vertex", 34) != 0) {
        *status = 404;
        snprintf(out, FAKEVAULT_MAX_REPLY, "{\"errors\":[\"no active key\"]}");
        return;
    }
    json_t *j = json_pack("{s:{s:s,s:{s:s,s:s,s:s},s:s,s:i,s:{},s:{}}}", "data", "tenant", "acme",
                          "provider", "name", "vertex", "api_style", "vertex", "base_url",
                          "https://aiplatform.googleapis.com/v1", "api_key", sa_compact, "ttl", 300,
                          "settings", "metadata");
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    *status = s != NULL && strlen(s) < FAKEVAULT_MAX_REPLY ? 200 : 500;
    snprintf(out, FAKEVAULT_MAX_REPLY, "%s", *status == 200 ? s : "{}");
    free(s);
}

struct env {
    struct event_base *base;
    struct config *cfg;
    struct upstream *up;
    struct vault *vault;
    struct keycache *kc;
    struct gcptoken_opts o;
};
static struct env E;

static int setup(void **state)
{
    (void)state;
    unsigned char seed[16];
    if (RAND_bytes(seed, sizeof(seed)) != 1 || secret_heap_init(1 << 20) != ERR_OK) {
        return -1;
    }
    EVP_PKEY *k = EVP_RSA_gen(2048);
    BIO *b = BIO_new(BIO_s_mem());
    assert_true(k != NULL && b != NULL &&
                PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) == 1);
    char *p = NULL;
    long n = BIO_get_mem_data(b, &p);
    char *pem = strndup(p, (size_t)n);
    BIO_free(b);
    EVP_PKEY_free(k);
    json_t *sa = json_pack("{s:s,s:s,s:s,s:s,s:s}", "type", "service_account", "project_id",
                           "byok-unit-project", "private_key_id", "abcdef0123456789", "private_key",
                           pem, "client_email", "unit@byok-unit-project.iam.gserviceaccount.com");
    free(pem);
    sa_compact = json_dumps(sa, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(sa);
    assert_non_null(sa_compact);
    atomic_store(&token_expires, 3599);
    fakevault_start(&fv, "tok1\n", handle);
    char text[1024], err[CONFIG_ERR_LEN];
    snprintf(text, sizeof(text),
             "{\"listeners\":[{\"path\":\"/x.sock\",\"tenant\":\"acme\"}],"
             "\"vault\":{\"address\":\"unix:%s\",\"token_file\":\"%s\",\"timeout_ms\":5000},"
             "\"keycache\":{\"max_ttl_s\":300}}",
             fv.sock_path, fv.token_path);
    assert_int_equal(config_parse(text, strlen(text), &E.cfg, err), ERR_OK);
    E.base = event_base_new();
    E.up = upstream_new(E.base, 16);
    E.vault = vault_new(E.base, E.up, E.cfg);
    E.kc = keycache_new(E.base, E.vault, E.cfg);
    assert_non_null(E.kc);
    E.o.token_url = "http://localhost/token";
    E.o.http.connect_timeout_ms = 5000;
    E.o.http.first_byte_timeout_ms = 5000;
    E.o.http.idle_timeout_ms = 5000;
    E.o.http.unix_socket = fv.sock_path;
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
    free(sa_compact);
    return 0;
}

struct got {
    int calls;
    enum err e;
    long status;
    struct keycache_entry *ent;
};

static void key_cb(void *arg, enum err e, struct keycache_entry *ent)
{
    struct got *g = arg;
    g->calls++;
    g->e = e;
    g->ent = ent;
}

static void token_cb(void *arg, enum err e, long status)
{
    struct got *g = arg;
    g->calls++;
    g->e = e;
    g->status = status;
}

static void run_until(const int *counter, int want)
{
    for (int i = 0; *counter < want && i < 10000; i++) {
        assert_int_equal(event_base_loop(E.base, EVLOOP_ONCE), 0);
    }
    assert_true(*counter >= want);
}

/* The vertex key (a fresh fetch after an invalidation), referenced. */
static struct keycache_entry *get_key(void)
{
    struct got g = {0};
    struct keycache_wait *w = NULL;
    assert_int_equal(keycache_get(E.kc, "acme", "vertex", key_cb, &g, &w), ERR_OK);
    run_until(&g.calls, 1);
    assert_int_equal(g.e, ERR_OK);
    assert_true(gcptoken_wanted(g.ent));
    return g.ent;
}

static void trade(struct keycache_entry *ent, struct got *g)
{
    memset(g, 0, sizeof(*g));
    struct gcptoken_wait *w = NULL;
    assert_int_equal(gcptoken_get(E.up, &E.o, ent, token_cb, g, &w), ERR_OK);
    assert_non_null(w);
    assert_int_equal(g->calls, 0); /* never called from gcptoken_get */
    run_until(&g->calls, 1);
}

static void test_shared_and_reused(void **state)
{
    (void)state;
    keycache_invalidate(E.kc, "acme", "vertex");
    struct keycache_entry *ent = get_key();
    assert_null(gcptoken_current(ent));
    int before = atomic_load(&token_calls);
    unsigned long long shared = gcptoken_stats()->shared;
    struct got a = {0}, b = {0};
    struct gcptoken_wait *wa = NULL, *wb = NULL;
    assert_int_equal(gcptoken_get(E.up, &E.o, ent, token_cb, &a, &wa), ERR_OK);
    assert_int_equal(gcptoken_get(E.up, &E.o, ent, token_cb, &b, &wb), ERR_OK);
    run_until(&a.calls, 1);
    run_until(&b.calls, 1);
    assert_int_equal(a.e, ERR_OK);
    assert_int_equal(b.e, ERR_OK);
    assert_int_equal(atomic_load(&token_calls), before + 1);
    assert_int_equal(gcptoken_stats()->shared, shared + 1);
    assert_int_equal(atomic_load(&bad_form), 0);
    const struct secret *t = gcptoken_current(ent);
    assert_non_null(t);
    assert_int_equal(t->len, strlen(TOKEN));
    assert_memory_equal(t->data, TOKEN, t->len);
    /* Another call for the same key: the token held, no trade. */
    struct keycache_entry *again = get_key();
    assert_true(again == ent);
    assert_non_null(gcptoken_current(again));
    assert_int_equal(atomic_load(&token_calls), before + 1);
    keycache_put(&again);
    /* Dropped (Vertex refused it): traded again. */
    gcptoken_drop(ent);
    assert_null(gcptoken_current(ent));
    struct got c;
    trade(ent, &c);
    assert_int_equal(c.e, ERR_OK);
    assert_int_equal(atomic_load(&token_calls), before + 2);
    /* Wiped with the key (a provider 401) while the call still holds the entry. */
    keycache_invalidate_entry(E.kc, ent);
    assert_null(gcptoken_current(ent));
    keycache_put(&ent);
}

static void test_refused_unavailable_malformed(void **state)
{
    (void)state;
    static const struct {
        int mode;
        enum err want;
        long status;
    } cases[] = {{1, ERR_DENIED, 400}, {2, ERR_UNAVAIL, 503}, {3, ERR_PROTO, 200}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        keycache_invalidate(E.kc, "acme", "vertex");
        struct keycache_entry *ent = get_key();
        atomic_store(&token_mode, cases[i].mode);
        unsigned long long failures = gcptoken_stats()->failures;
        struct got g;
        trade(ent, &g);
        assert_int_equal(g.e, cases[i].want);
        assert_int_equal(g.status, cases[i].status);
        assert_null(gcptoken_current(ent));
        assert_int_equal(gcptoken_stats()->failures, failures + 1);
        atomic_store(&token_mode, 0);
        keycache_put(&ent);
        gcptoken_refusals_clear(); /* the 400 is remembered: the next case trades again */
    }
}

/*
 * A refused key (400 invalid_grant, as for a clock too far off) is remembered
 * for GCPTOKEN_REFUSED_S: the caller drops it and reads it from Vault again,
 * and the same key is then refused from the event loop with the same status,
 * without signing or a request; calls waiting together share the answer. A
 * key with other bytes, and the same key once forgotten, are traded.
 */
static void test_refusal_remembered(void **state)
{
    (void)state;
    keycache_invalidate(E.kc, "acme", "vertex");
    struct keycache_entry *ent = get_key();
    atomic_store(&token_mode, 1);
    int before = atomic_load(&token_calls);
    struct got g;
    trade(ent, &g);
    assert_int_equal(g.e, ERR_DENIED);
    assert_int_equal(g.status, 400);
    assert_int_equal(atomic_load(&token_calls), before + 1);
    /* As the proxy does: the refused key is dropped, the next call reads Vault again. */
    keycache_invalidate_entry(E.kc, ent);
    keycache_put(&ent);
    ent = get_key();
    unsigned long long remembered = gcptoken_stats()->refused_remembered;
    struct got a = {0}, b = {0};
    struct gcptoken_wait *wa = NULL, *wb = NULL;
    assert_int_equal(gcptoken_get(E.up, &E.o, ent, token_cb, &a, &wa), ERR_OK);
    assert_int_equal(gcptoken_get(E.up, &E.o, ent, token_cb, &b, &wb), ERR_OK);
    assert_int_equal(a.calls + b.calls, 0); /* never from gcptoken_get */
    run_until(&a.calls, 1);
    run_until(&b.calls, 1);
    assert_int_equal(a.e, ERR_DENIED);
    assert_int_equal(a.status, 400);
    assert_int_equal(b.e, ERR_DENIED);
    assert_int_equal(b.status, 400);
    assert_int_equal(atomic_load(&token_calls), before + 1);
    assert_int_equal(gcptoken_stats()->refused_remembered, remembered + 1);
    /* A wait cancelled before the remembered refusal is told: no callback. */
    struct got c = {0};
    struct gcptoken_wait *wc = NULL;
    assert_int_equal(gcptoken_get(E.up, &E.o, ent, token_cb, &c, &wc), ERR_OK);
    gcptoken_cancel(wc);
    for (int i = 0; i < 5; i++) {
        event_base_loop(E.base, EVLOOP_NONBLOCK);
    }
    assert_int_equal(c.calls, 0);
    /* Another token URL is another trade (the memory is per URL and key). */
    struct gcptoken_opts other = E.o;
    char url[512];
    snprintf(url, sizeof(url), "%s?other", E.o.token_url);
    other.token_url = url;
    memset(&c, 0, sizeof(c));
    assert_int_equal(gcptoken_get(E.up, &other, ent, token_cb, &c, &wc), ERR_OK);
    run_until(&c.calls, 1);
    /* The fake server has no such path: a 404, but a request was made. */
    assert_int_equal(c.e, ERR_PROTO);
    assert_int_equal(gcptoken_stats()->refused_remembered, remembered + 2); /* a/b, then c */
    /* Forgotten (as after GCPTOKEN_REFUSED_S): traded again, and the clock fixed, a token. */
    atomic_store(&token_mode, 0);
    gcptoken_refusals_clear();
    trade(ent, &g);
    assert_int_equal(g.e, ERR_OK);
    assert_non_null(gcptoken_current(ent));
    assert_int_equal(atomic_load(&token_calls), before + 2);
    keycache_put(&ent);
    keycache_invalidate(E.kc, "acme", "vertex");
}

static void test_cancel_and_wiped_during_trade(void **state)
{
    (void)state;
    keycache_invalidate(E.kc, "acme", "vertex");
    struct keycache_entry *ent = get_key();
    /* A wait cancelled: no callback, the trade goes on and its token is kept. */
    struct got g = {0};
    struct gcptoken_wait *w = NULL;
    int before = atomic_load(&token_calls);
    assert_int_equal(gcptoken_get(E.up, &E.o, ent, token_cb, &g, &w), ERR_OK);
    gcptoken_cancel(w);
    for (int i = 0; gcptoken_current(ent) == NULL && i < 10000; i++) {
        assert_int_equal(event_base_loop(E.base, EVLOOP_ONCE), 0);
    }
    assert_non_null(gcptoken_current(ent));
    assert_int_equal(g.calls, 0);
    assert_int_equal(atomic_load(&token_calls), before + 1);
    /* The key wiped while a trade runs: the token is not kept, the waiter told so. */
    gcptoken_drop(ent);
    struct got h = {0};
    assert_int_equal(gcptoken_get(E.up, &E.o, ent, token_cb, &h, &w), ERR_OK);
    keycache_invalidate_entry(E.kc, ent);
    run_until(&h.calls, 1);
    assert_int_equal(h.e, ERR_CANCELLED);
    assert_null(gcptoken_current(ent));
    /* And a wiped key is not traded at all. */
    assert_int_equal(gcptoken_get(E.up, &E.o, ent, token_cb, &h, &w), ERR_CANCELLED);
    keycache_put(&ent);
    /* An entry freed with a trade under way (its last user gone): the trade is dropped. */
    ent = get_key();
    gcptoken_drop(ent);
    assert_int_equal(gcptoken_get(E.up, &E.o, ent, token_cb, &h, &w), ERR_OK);
    gcptoken_cancel(w);
    keycache_put(&ent);
    keycache_invalidate(E.kc, "acme", "vertex");
}

static void test_expiry(void **state)
{
    (void)state;
    keycache_invalidate(E.kc, "acme", "vertex");
    struct keycache_entry *ent = get_key();
    atomic_store(&token_expires, 2); /* used for 1 s */
    struct got g;
    trade(ent, &g);
    assert_int_equal(g.e, ERR_OK);
    assert_non_null(gcptoken_current(ent));
    unsigned long g1 = gcptoken_generation(ent);
    assert_true(g1 != 0);
    assert_ptr_equal(gcptoken_sent(ent, g1), gcptoken_current(ent));
    sleep(2);
    assert_null(gcptoken_current(ent));
    int before = atomic_load(&token_calls);
    atomic_store(&token_expires, 3599);
    trade(ent, &g);
    assert_int_equal(g.e, ERR_OK);
    assert_non_null(gcptoken_current(ent));
    assert_int_equal(atomic_load(&token_calls), before + 1);
    /*
     * A call that sent the replaced token still has it for redacting the
     * provider's answer (proxy.c); one replaced twice, dropped or wiped is
     * gone, and then nothing of the answer is shown.
     */
    unsigned long g2 = gcptoken_generation(ent);
    assert_int_equal(g2, g1 + 1);
    const struct secret *old = gcptoken_sent(ent, g1);
    assert_non_null(old);
    assert_ptr_not_equal(old, gcptoken_current(ent));
    assert_memory_equal(old->data, TOKEN, old->len);
    assert_ptr_equal(gcptoken_sent(ent, g2), gcptoken_current(ent));
    assert_null(gcptoken_sent(ent, 0));
    assert_null(gcptoken_sent(ent, g2 + 1));
    gcptoken_drop(ent);
    assert_null(gcptoken_sent(ent, g1));
    assert_null(gcptoken_sent(ent, g2));
    assert_int_equal(gcptoken_generation(ent), 0);
    trade(ent, &g);
    assert_int_equal(g.e, ERR_OK);
    unsigned long g3 = gcptoken_generation(ent);
    assert_true(g3 > g2 + 1); /* the dropped token's successor is not "one refresh later" */
    assert_null(gcptoken_sent(ent, g2));
    assert_ptr_equal(gcptoken_sent(ent, g3), gcptoken_current(ent));
    keycache_invalidate_entry(E.kc, ent);
    assert_null(gcptoken_sent(ent, g3));
    keycache_put(&ent);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_and_reused),
        cmocka_unit_test(test_refused_unavailable_malformed),
        cmocka_unit_test(test_cancel_and_wiped_during_trade),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_refusal_remembered),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
