/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for rate leases (paths_ratelease.c) through fw_handle with
 * in-memory storage and a fake clock: grants of several nodes sum to the
 * limit, the window rolls over on the minute, rpm and tpm count apart, a
 * tenant without the limit is "unlimited" and keeps nothing, a lowered limit
 * applies at once, a key's rate_limit (kind "key") counts per tenant ×
 * provider × key_type and is "unlimited" for a key that is absent, revoked,
 * expired or without one, bad input is a 400 naming the field and changes nothing,
 * a standby's read-only storage gets the read-only error (Vault forwards),
 * one writability probe at a time however many requests come at once, no
 * storage is written, and a failing allocator breaks nothing.
 * tests/vaultsim covers the same path through Vault's HTTP API.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "plugin/byok.h"
#include "plugin/framework.h"
#include "plugin/keystore.h"
#include "plugin/storage.h"
#include "tests/unit/helpers/pluginenv.h"
#include "tests/unit/oom.h"

/* One request with a parsed body (NULL: none). */
static enum fw_status call_data(struct env *e, struct storage *st, enum fw_op op, const char *path,
                                json_t *data, json_t **ret_data, char *msg, size_t msglen)
{
    struct fw_request req = {.op = op, .path = path, .data = data, .storage = st, .backend = e->b};
    struct fw_response resp;
    fw_response_init(&resp);
    enum err rc = fw_handle(byok_path_tables, &req, &resp);
    assert_int_equal(rc != ERR_OK, resp.status == FW_INTERNAL);
    enum fw_status s = resp.status;
    if (ret_data != NULL) {
        *ret_data = json_incref(resp.data);
    }
    if (msg != NULL) {
        snprintf(msg, msglen, "%s", resp.message);
    }
    fw_response_done(&resp);
    return s;
}

static enum fw_status call_on(struct env *e, struct storage *st, enum fw_op op, const char *path,
                              const char *body, json_t **ret_data, char *msg, size_t msglen)
{
    json_t *data = NULL;
    if (body != NULL) {
        json_error_t jerr;
        data = json_loads(body, 0, &jerr);
        if (data == NULL) {
            fail_msg("bad test body %s: %s", body, jerr.text);
        }
    }
    enum fw_status s = call_data(e, st, op, path, data, ret_data, msg, msglen);
    json_decref(data);
    return s;
}

static json_t *ok(struct env *e, enum fw_op op, const char *path, const char *body)
{
    json_t *d = NULL;
    char msg[FW_MAX_MESSAGE];
    enum fw_status s = call_on(e, e->st, op, path, body, &d, msg, sizeof(msg));
    if (s != FW_OK) {
        fail_msg("%s %s: status %d (%s)", fw_op_name(op), path, s, msg);
    }
    return d;
}

static void set_limits(struct env *e, const char *tenant, long long rpm, long long tpm)
{
    char path[128], body[128];
    snprintf(path, sizeof(path), "tenants/%s/settings", tenant);
    snprintf(body, sizeof(body), "{\"rpm_limit\": %lld, \"tpm_limit\": %lld}", rpm, tpm);
    json_decref(ok(e, FW_OP_UPDATE, path, body));
}

static json_t *lease(struct env *e, const char *tenant, const char *kind, long long amount,
                     const char *node)
{
    char path[128], body[256];
    snprintf(path, sizeof(path), "tenants/%s/rate-lease", tenant);
    snprintf(body, sizeof(body), "{\"kind\": \"%s\", \"amount\": %lld, \"node\": \"%s\"}", kind,
             amount, node);
    return ok(e, FW_OP_UPDATE, path, body);
}

static long long num(const json_t *d, const char *k)
{
    json_t *v = json_object_get(d, k);
    if (!json_is_integer(v)) {
        fail_msg("%s is not an integer", k);
    }
    return (long long)json_integer_value(v);
}

/* A lease of the key tenant/provider/key_type's rate_limit (kind "key"). */
static json_t *key_lease(struct env *e, const char *tenant, const char *provider,
                         const char *key_type, long long amount, const char *node)
{
    char path[128], body[384];
    snprintf(path, sizeof(path), "tenants/%s/rate-lease", tenant);
    snprintf(body, sizeof(body),
             "{\"kind\": \"key\", \"provider\": \"%s\", \"key_type\": \"%s\", \"amount\": "
             "%lld, \"node\": \"%s\"}",
             provider, key_type, amount, node);
    return ok(e, FW_OP_UPDATE, path, body);
}

static long long key_take(struct env *e, const char *tenant, const char *provider,
                          const char *key_type, long long amount, const char *node)
{
    json_t *d = key_lease(e, tenant, provider, key_type, amount, node);
    if (!json_is_false(json_object_get(d, "unlimited"))) {
        fail_msg("key %s/%s/%s: unlimited, want a limit", tenant, provider, key_type);
    }
    long long g = num(d, "granted");
    json_decref(d);
    return g;
}

static bool key_unlimited(struct env *e, const char *tenant, const char *provider,
                          const char *key_type)
{
    json_t *d = key_lease(e, tenant, provider, key_type, 7, "a");
    bool u = json_is_true(json_object_get(d, "unlimited")) && num(d, "granted") == 7;
    json_decref(d);
    return u;
}

/* Writes tenants/<tenant>/keys/<p>/<kt> with a test value and extra members (JSON, or NULL). */
static void put_key(struct env *e, const char *tenant, const char *provider, const char *key_type,
                    const char *extra)
{
    char path[192], body[256];
    snprintf(path, sizeof(path), "tenants/%s/keys/%s/%s", tenant, provider, key_type);
    snprintf(body, sizeof(body), "{\"key_value\": \"sk-abcdefghijklmnop\"%s%s}",
             extra != NULL ? ", " : "", extra != NULL ? extra : "");
    json_decref(ok(e, FW_OP_UPDATE, path, body));
}

/* Granted amount of one lease. */
static long long take(struct env *e, const char *tenant, const char *kind, long long amount,
                      const char *node)
{
    json_t *d = lease(e, tenant, kind, amount, node);
    long long g = num(d, "granted");
    json_decref(d);
    return g;
}

/* A window starting at a whole minute, a few seconds in. */
static void at_minute(long long secs_in)
{
    pluginenv_now = pluginenv_now - pluginenv_now % 60 + 60 + secs_in;
}

/* Grants of several nodes sum to the limit; the reply says the limit and the window's end. */
static void test_grants_sum_to_limit(void **state)
{
    struct env *e = *state;
    set_limits(e, "acme", 6, 0);
    at_minute(5);
    json_t *d = lease(e, "acme", "rpm", 4, "node-a");
    assert_int_equal(num(d, "granted"), 4);
    assert_int_equal(num(d, "limit"), 6);
    assert_int_equal(num(d, "remaining"), 2);
    assert_int_equal(num(d, "window_end"), pluginenv_now - 5 + 60);
    assert_true(json_is_false(json_object_get(d, "unlimited")));
    assert_string_equal(json_string_value(json_object_get(d, "kind")), "rpm");
    json_decref(d);
    assert_int_equal(take(e, "acme", "rpm", 4, "node-b"), 2);
    assert_int_equal(take(e, "acme", "rpm", 1, "node-a"), 0);
    assert_int_equal(take(e, "acme", "rpm", 1, "node-c"), 0);
    /* Another tenant counts apart. */
    set_limits(e, "beta", 3, 0);
    assert_int_equal(take(e, "beta", "rpm", 10, "node-a"), 3);
}

/* The window ends on the minute: the last second still counts, the next starts again. */
static void test_window_rollover(void **state)
{
    struct env *e = *state;
    set_limits(e, "acme", 10, 0);
    at_minute(0);
    assert_int_equal(take(e, "acme", "rpm", 7, "a"), 7);
    pluginenv_now += 59;
    assert_int_equal(take(e, "acme", "rpm", 7, "b"), 3);
    pluginenv_now += 1;
    json_t *d = lease(e, "acme", "rpm", 7, "b");
    assert_int_equal(num(d, "granted"), 7);
    assert_int_equal(num(d, "window_end"), pluginenv_now + 60);
    json_decref(d);
    /* A window long past: the entry starts again too. */
    pluginenv_now += 3600;
    assert_int_equal(take(e, "acme", "rpm", 10, "a"), 10);
}

/* rpm and tpm are counted apart; a lowered limit applies at once, a raised one too. */
static void test_kinds_and_changes(void **state)
{
    struct env *e = *state;
    set_limits(e, "acme", 5, 1000);
    at_minute(1);
    assert_int_equal(take(e, "acme", "tpm", 600, "a"), 600);
    assert_int_equal(take(e, "acme", "rpm", 5, "a"), 5);
    assert_int_equal(take(e, "acme", "tpm", 600, "b"), 400);
    set_limits(e, "acme", 2, 500); /* below what was granted: nothing more */
    assert_int_equal(take(e, "acme", "rpm", 1, "a"), 0);
    assert_int_equal(take(e, "acme", "tpm", 1, "a"), 0);
    set_limits(e, "acme", 8, 1500);
    assert_int_equal(take(e, "acme", "rpm", 10, "a"), 3);
    assert_int_equal(take(e, "acme", "tpm", 1000, "a"), 500);
}

/* No limit of that kind (or no tenant at all): "unlimited", the amount granted, nothing kept. */
static void test_unlimited(void **state)
{
    struct env *e = *state;
    set_limits(e, "acme", 5, 0);
    json_t *d = lease(e, "acme", "tpm", 123, "a");
    assert_true(json_is_true(json_object_get(d, "unlimited")));
    assert_int_equal(num(d, "limit"), 0);
    assert_int_equal(num(d, "granted"), 123);
    json_decref(d);
    d = lease(e, "nobody", "rpm", 2, "a");
    assert_true(json_is_true(json_object_get(d, "unlimited")));
    json_decref(d);
    /* Nothing of this path is in storage. */
    char **keys = NULL;
    size_t n = 0;
    assert_int_equal(storage_list(e->st, "rate-lease/", &keys, &n), ERR_OK);
    assert_int_equal(n, 0);
    storage_keys_free(keys, n);
    assert_int_equal(storage_list(e->st, "tenants/nobody/", &keys, &n), ERR_OK);
    assert_int_equal(n, 0);
    storage_keys_free(keys, n);
}

/*
 * Kind "key": the key's rate_limit, counted per tenant × provider × key_type
 * and apart from the tenant's rpm; a changed rate_limit applies at once.
 */
static void test_key_kind(void **state)
{
    struct env *e = *state;
    set_limits(e, "acme", 5, 0);
    put_key(e, "acme", "openai", "production", "\"rate_limit\": 4");
    put_key(e, "acme", "openai", "batch", "\"rate_limit\": 2");
    put_key(e, "beta", "openai", "production", "\"rate_limit\": 3");
    at_minute(3);
    json_t *d = key_lease(e, "acme", "openai", "production", 3, "node-a");
    assert_int_equal(num(d, "granted"), 3);
    assert_int_equal(num(d, "limit"), 4);
    assert_int_equal(num(d, "remaining"), 1);
    assert_int_equal(num(d, "window_end"), pluginenv_now - 3 + 60);
    assert_string_equal(json_string_value(json_object_get(d, "kind")), "key");
    json_decref(d);
    assert_int_equal(key_take(e, "acme", "openai", "production", 3, "node-b"), 1);
    assert_int_equal(key_take(e, "acme", "openai", "production", 1, "node-a"), 0);
    /* Another key type, another tenant's key and the tenant's rpm count apart. */
    assert_int_equal(key_take(e, "acme", "openai", "batch", 5, "node-a"), 2);
    assert_int_equal(key_take(e, "beta", "openai", "production", 5, "node-a"), 3);
    assert_int_equal(take(e, "acme", "rpm", 9, "node-a"), 5);
    /* A raised rate_limit applies at once; the next window starts again. */
    put_key(e, "acme", "openai", "production", "\"rate_limit\": 6");
    assert_int_equal(key_take(e, "acme", "openai", "production", 9, "node-a"), 2);
    pluginenv_now += 60;
    assert_int_equal(key_take(e, "acme", "openai", "production", 9, "node-b"), 6);
}

/* A key absent, without rate_limit, expired or revoked: "unlimited", nothing kept. */
static void test_key_unlimited(void **state)
{
    struct env *e = *state;
    at_minute(4);
    assert_true(key_unlimited(e, "acme", "openai", "production"));
    assert_true(key_unlimited(e, "nobody", "openai", "production"));
    put_key(e, "acme", "openai", "production", NULL);
    assert_true(key_unlimited(e, "acme", "openai", "production"));
    put_key(e, "acme", "openai", "production", "\"rate_limit\": 0");
    assert_true(key_unlimited(e, "acme", "openai", "production"));
    put_key(e, "acme", "openai", "production", "\"rate_limit\": 2");
    assert_int_equal(key_take(e, "acme", "openai", "production", 1, "a"), 1);
    json_decref(ok(e, FW_OP_DELETE, "tenants/acme/keys/openai/production", NULL));
    assert_true(key_unlimited(e, "acme", "openai", "production"));
    /* Expired: a key whose expires_at the clock passes. */
    char exp[32], extra[96];
    keystore_time_format(pluginenv_now + 30, exp, sizeof(exp));
    snprintf(extra, sizeof(extra), "\"rate_limit\": 2, \"expires_at\": \"%s\"", exp);
    put_key(e, "acme", "openai", "batch", extra);
    assert_int_equal(key_take(e, "acme", "openai", "batch", 1, "a"), 1);
    pluginenv_now += 31;
    assert_true(key_unlimited(e, "acme", "openai", "batch"));
    /* Nothing of this path is in storage. */
    char **keys = NULL;
    size_t n = 0;
    assert_int_equal(storage_list(e->st, "rate-lease/", &keys, &n), ERR_OK);
    assert_int_equal(n, 0);
    storage_keys_free(keys, n);
}

/* Every bad field is a 400 that names it, and changes nothing. */
static void test_bad_input(void **state)
{
    struct env *e = *state;
    set_limits(e, "acme", 4, 0);
    at_minute(2);
    static const struct {
        const char *body, *field;
    } bad[] = {
        {"{\"kind\": \"rpd\", \"amount\": 1, \"node\": \"a\"}", "'kind'"},
        {"{\"kind\": \"\", \"amount\": 1, \"node\": \"a\"}", "'kind'"},
        {"{\"kind\": \"rpm-and-more-than-eight\", \"amount\": 1, \"node\": \"a\"}", "'kind'"},
        {"{\"amount\": 1, \"node\": \"a\"}", "'kind'"},
        {"{\"kind\": \"rpm\", \"amount\": 0, \"node\": \"a\"}", "'amount'"},
        {"{\"kind\": \"rpm\", \"amount\": -3, \"node\": \"a\"}", "'amount'"},
        {"{\"kind\": \"rpm\", \"amount\": 1000000001, \"node\": \"a\"}", "'amount'"},
        {"{\"kind\": \"rpm\", \"amount\": 1.5, \"node\": \"a\"}", "'amount'"},
        {"{\"kind\": \"rpm\", \"amount\": \"x\", \"node\": \"a\"}", "'amount'"},
        {"{\"kind\": \"rpm\", \"node\": \"a\"}", "'amount'"},
        {"{\"kind\": \"rpm\", \"amount\": 1, \"node\": \"a b\"}", "'node'"},
        {"{\"kind\": \"rpm\", \"amount\": 1, \"node\": \"\"}", "'node'"},
        {"{\"kind\": \"rpm\", \"amount\": 1}", "'node'"},
        /* Kind "key": provider and key_type required, named as the keys paths name them. */
        {"{\"kind\": \"key\", \"key_type\": \"production\", \"amount\": 1, \"node\": \"a\"}",
         "'provider'"},
        {"{\"kind\": \"key\", \"provider\": \"Open AI\", \"key_type\": \"production\", "
         "\"amount\": 1, \"node\": \"a\"}",
         "'provider'"},
        {"{\"kind\": \"key\", \"provider\": \"_openai\", \"key_type\": \"production\", "
         "\"amount\": 1, \"node\": \"a\"}",
         "'provider'"},
        {"{\"kind\": \"key\", \"provider\": \"openai\", \"amount\": 1, \"node\": \"a\"}",
         "'key_type'"},
        {"{\"kind\": \"key\", \"provider\": \"openai\", \"key_type\": \"a/b\", \"amount\": 1, "
         "\"node\": \"a\"}",
         "'key_type'"},
        {"{\"kind\": \"key\", \"provider\": \"openai\", \"key_type\": "
         "\"k234567890123456789012345678901234567890123456789012345678901234\", \"amount\": 1, "
         "\"node\": \"a\"}",
         "'key_type'"},
        {"{\"kind\": \"key\", \"provider\": \"openai\", \"key_type\": \"production\", "
         "\"amount\": 1, \"node\": \"a b\"}",
         "'node'"},
        /* On the tenant's limits, a key is a mistake. */
        {"{\"kind\": \"rpm\", \"provider\": \"openai\", \"amount\": 1, \"node\": \"a\"}",
         "'provider'"},
        {"{\"kind\": \"tpm\", \"key_type\": \"production\", \"amount\": 1, \"node\": \"a\"}",
         "'key_type'"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char msg[FW_MAX_MESSAGE];
        enum fw_status s = call_on(e, e->st, FW_OP_UPDATE, "tenants/acme/rate-lease", bad[i].body,
                                   NULL, msg, sizeof(msg));
        if (s != FW_BAD_REQUEST || strstr(msg, bad[i].field) == NULL) {
            fail_msg("%s: status %d, message %s (want 400 naming %s)", bad[i].body, s, msg,
                     bad[i].field);
        }
    }
    char node[200];
    memset(node, 'n', sizeof(node) - 1);
    node[sizeof(node) - 1] = '\0';
    char body[300], msg[FW_MAX_MESSAGE];
    snprintf(body, sizeof(body), "{\"kind\": \"rpm\", \"amount\": 1, \"node\": \"%s\"}", node);
    assert_int_equal(
        call_on(e, e->st, FW_OP_UPDATE, "tenants/acme/rate-lease", body, NULL, msg, sizeof(msg)),
        FW_BAD_REQUEST);
    assert_non_null(strstr(msg, "'node'"));
    /* A bad tenant name in the path. */
    assert_int_equal(call_on(e, e->st, FW_OP_UPDATE, "tenants/Bad!/rate-lease",
                             "{\"kind\": \"rpm\", \"amount\": 1, \"node\": \"a\"}", NULL, msg,
                             sizeof(msg)),
                     FW_BAD_REQUEST);
    /* Read and delete are not operations of this path. */
    assert_int_equal(
        call_on(e, e->st, FW_OP_READ, "tenants/acme/rate-lease", NULL, NULL, msg, sizeof(msg)),
        FW_UNSUPPORTED_OPERATION);
    assert_int_equal(
        call_on(e, e->st, FW_OP_DELETE, "tenants/acme/rate-lease", NULL, NULL, msg, sizeof(msg)),
        FW_UNSUPPORTED_OPERATION);
    /* Nothing was counted. */
    assert_int_equal(take(e, "acme", "rpm", 10, "a"), 4);
    put_key(e, "acme", "openai", "production", "\"rate_limit\": 3");
    assert_int_equal(key_take(e, "acme", "openai", "production", 10, "a"), 3);
}

/* A standby's storage: writes refused. The probe sees it, the request gets the read-only error. */
struct ro {
    struct storage *inner;
    bool readonly;
    int deletes;
};

static enum err ro_get(void *ctx, const char *key, unsigned char **v, size_t *n)
{
    struct ro *r = ctx;
    return storage_get(r->inner, key, v, n);
}

static enum err ro_put(void *ctx, const char *key, const unsigned char *v, size_t n, bool sw)
{
    struct ro *r = ctx;
    return r->readonly ? ERR_READONLY : storage_put(r->inner, key, v, n, sw);
}

static enum err ro_del(void *ctx, const char *key)
{
    struct ro *r = ctx;
    r->deletes++;
    return r->readonly ? ERR_READONLY : storage_delete(r->inner, key);
}

static enum err ro_list(void *ctx, const char *prefix, char ***keys, size_t *n)
{
    struct ro *r = ctx;
    return storage_list(r->inner, prefix, keys, n);
}

static const struct storage_ops ro_ops = {ro_get, ro_put, ro_del, ro_list};

static void test_standby(void **state)
{
    struct env *e = *state;
    set_limits(e, "acme", 4, 0);
    at_minute(3);
    byok_cleanup(e->b); /* a fresh table: the next request probes */
    struct ro r = {.inner = e->st, .readonly = true};
    struct storage st = {.ops = &ro_ops, .ctx = &r};
    const char *body = "{\"kind\": \"rpm\", \"amount\": 3, \"node\": \"a\"}";
    char msg[FW_MAX_MESSAGE];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(
            call_on(e, &st, FW_OP_UPDATE, "tenants/acme/rate-lease", body, NULL, msg, sizeof(msg)),
            FW_READONLY);
    }
    assert_int_equal(r.deletes, 3); /* every request on a standby probes */
    /* Promoted: the next request probes, succeeds, and later ones within 10 s do not probe. */
    r.readonly = false;
    json_t *d = NULL;
    assert_int_equal(
        call_on(e, &st, FW_OP_UPDATE, "tenants/acme/rate-lease", body, &d, msg, sizeof(msg)),
        FW_OK);
    assert_int_equal(num(d, "granted"), 3);
    json_decref(d);
    assert_int_equal(
        call_on(e, &st, FW_OP_UPDATE, "tenants/acme/rate-lease", body, &d, msg, sizeof(msg)),
        FW_OK);
    assert_int_equal(num(d, "granted"), 1);
    json_decref(d);
    assert_int_equal(r.deletes, 4);
    pluginenv_now += 10;
    assert_int_equal(
        call_on(e, &st, FW_OP_UPDATE, "tenants/acme/rate-lease", body, NULL, msg, sizeof(msg)),
        FW_OK);
    assert_int_equal(r.deletes, 5);
    /* Demoted: within 10 s of the last probe it is not seen; after it, refused again. */
    r.readonly = true;
    pluginenv_now += 10;
    assert_int_equal(
        call_on(e, &st, FW_OP_UPDATE, "tenants/acme/rate-lease", body, NULL, msg, sizeof(msg)),
        FW_READONLY);
}

/*
 * Storage whose delete (the probe) takes PROBE_MS: requests that arrive while
 * it is in flight must not probe too (single-flight), whatever the answer.
 */
#define PROBE_MS 100
#define PROBE_THREADS 8

struct slow {
    struct storage *inner;
    atomic_bool readonly;
    atomic_int deletes;
};

static enum err slow_get(void *ctx, const char *key, unsigned char **v, size_t *n)
{
    struct slow *r = ctx;
    return storage_get(r->inner, key, v, n);
}

static enum err slow_put(void *ctx, const char *key, const unsigned char *v, size_t n, bool sw)
{
    struct slow *r = ctx;
    return atomic_load(&r->readonly) ? ERR_READONLY : storage_put(r->inner, key, v, n, sw);
}

static enum err slow_del(void *ctx, const char *key)
{
    struct slow *r = ctx;
    atomic_fetch_add(&r->deletes, 1);
    struct timespec ts = {.tv_sec = 0, .tv_nsec = PROBE_MS * 1000000L};
    nanosleep(&ts, NULL);
    return atomic_load(&r->readonly) ? ERR_READONLY : storage_delete(r->inner, key);
}

static enum err slow_list(void *ctx, const char *prefix, char ***keys, size_t *n)
{
    struct slow *r = ctx;
    return storage_list(r->inner, prefix, keys, n);
}

static const struct storage_ops slow_ops = {slow_get, slow_put, slow_del, slow_list};

struct burst {
    struct env *e;
    struct storage *st;
    enum fw_status status;
};

static void *burst_one(void *arg)
{
    struct burst *b = arg;
    json_t *data = json_pack("{sssIss}", "kind", "rpm", "amount", (json_int_t)1, "node", "a");
    struct fw_request req = {.op = FW_OP_UPDATE,
                             .path = "tenants/acme/rate-lease",
                             .data = data,
                             .storage = b->st,
                             .backend = b->e->b};
    struct fw_response resp;
    fw_response_init(&resp);
    enum err rc = fw_handle(byok_path_tables, &req, &resp);
    b->status = rc == ERR_OK ? resp.status : FW_INTERNAL;
    fw_response_done(&resp);
    json_decref(data);
    return NULL;
}

/* PROBE_THREADS rate-lease requests at once; each must end with want. */
static void burst(struct env *e, struct storage *st, enum fw_status want)
{
    pthread_t th[PROBE_THREADS];
    struct burst b[PROBE_THREADS];
    for (int i = 0; i < PROBE_THREADS; i++) {
        b[i] = (struct burst){.e = e, .st = st, .status = FW_INTERNAL};
        assert_int_equal(pthread_create(&th[i], NULL, burst_one, &b[i]), 0);
    }
    for (int i = 0; i < PROBE_THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(b[i].status, want);
    }
}

static void test_probe_single_flight(void **state)
{
    struct env *e = *state;
    set_limits(e, "acme", 1000, 0);
    at_minute(5);
    struct slow r = {.inner = e->st};
    atomic_init(&r.readonly, false);
    atomic_init(&r.deletes, 0);
    struct storage st = {.ops = &slow_ops, .ctx = &r};
    /* No answer yet: one probes, the others wait for its answer. */
    byok_cleanup(e->b);
    burst(e, &st, FW_OK);
    assert_int_equal(atomic_load(&r.deletes), 1);
    /* The answer is due again: one probes, the others take the last answer (writable). */
    pluginenv_now += 10;
    burst(e, &st, FW_OK);
    assert_int_equal(atomic_load(&r.deletes), 2);
    /* Within 10 s of it: none probes. */
    burst(e, &st, FW_OK);
    assert_int_equal(atomic_load(&r.deletes), 2);
    /* A standby from the start: one probe, every request gets the read-only error. */
    byok_cleanup(e->b);
    atomic_store(&r.readonly, true);
    burst(e, &st, FW_READONLY);
    assert_int_equal(atomic_load(&r.deletes), 3);
    /* Read-only was the last answer: the next burst probes once and all take it again. */
    burst(e, &st, FW_READONLY);
    assert_int_equal(atomic_load(&r.deletes), 4);
}

/* A failing allocator at every step: an internal error or a good answer, never more granted. */
static void test_oom(void **state)
{
    struct env *e = *state;
    set_limits(e, "acme", 1000000, 0);
    put_key(e, "acme", "openai", "production", "\"rate_limit\": 1000000");
    at_minute(4);
    json_t *bodies[] = {
        json_pack("{sssIss}", "kind", "rpm", "amount", (json_int_t)1, "node", "a"),
        json_pack("{sssssssIss}", "kind", "key", "provider", "openai", "key_type", "production",
                  "amount", (json_int_t)1, "node", "a"),
    };
    for (size_t k = 0; k < sizeof(bodies) / sizeof(bodies[0]); k++) {
        assert_non_null(bodies[k]);
        long long total = 0;
        bool fired = true;
        for (long n = 1; fired && n < 500; n++) {
            json_t *d = NULL;
            char msg[FW_MAX_MESSAGE];
            oom_fired = false;
            oom_countdown = n;
            json_set_alloc_funcs(oom_malloc, free);
            enum fw_status s = call_data(e, e->st, FW_OP_UPDATE, "tenants/acme/rate-lease",
                                         bodies[k], &d, msg, sizeof(msg));
            json_set_alloc_funcs(malloc, free);
            oom_countdown = 0;
            fired = oom_fired;
            assert_true(s == FW_OK || s == FW_INTERNAL || s == FW_BAD_REQUEST);
            if (s == FW_OK && d != NULL) {
                total += num(d, "granted");
            }
            json_decref(d);
        }
        json_decref(bodies[k]);
        assert_false(fired);
        /* What was granted (answered or not) is never more than was asked. */
        long long left = k == 0 ? take(e, "acme", "rpm", 1000000, "a")
                                : key_take(e, "acme", "openai", "production", 1000000, "a");
        assert_true(left + total <= 1000000);
        assert_true(left >= 1000000 - 500);
    }
}

/*
 * The table holds 65,536 tenant × kind windows: past it, entries of earlier
 * windows make room; a table full of this minute's answers 503 and counts
 * nothing.
 */
static void test_table_bound(void **state)
{
    struct env *e = *state;
    enum { MAX = 65536 };
    at_minute(0);
    char path[64];
    for (int i = 0; i < MAX; i++) {
        char tenant[16];
        snprintf(tenant, sizeof(tenant), "t%d", i);
        /* Settings straight into storage: 65,536 settings writes through paths would be slow. */
        snprintf(path, sizeof(path), "tenants/%s/settings", tenant);
        json_t *doc = json_pack("{sI}", "rpm_limit", (json_int_t)5);
        assert_int_equal(storage_put_json(e->st, path, doc, false), ERR_OK);
        json_decref(doc);
        assert_int_equal(take(e, tenant, "rpm", 1, "a"), 1);
    }
    set_limits(e, "late", 5, 0);
    char msg[FW_MAX_MESSAGE];
    const char *body = "{\"kind\": \"rpm\", \"amount\": 1, \"node\": \"a\"}";
    assert_int_equal(
        call_on(e, e->st, FW_OP_UPDATE, "tenants/late/rate-lease", body, NULL, msg, sizeof(msg)),
        FW_CODED);
    assert_non_null(strstr(msg, "table full"));
    /* A tenant already in the table is still served. */
    assert_int_equal(take(e, "t7", "rpm", 9, "b"), 4);
    /* The next minute: the old windows make room. */
    pluginenv_now += 60;
    assert_int_equal(take(e, "late", "rpm", 9, "a"), 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_grants_sum_to_limit, pluginenv_setup_clock,
                                        pluginenv_teardown),
        cmocka_unit_test_setup_teardown(test_window_rollover, pluginenv_setup_clock,
                                        pluginenv_teardown),
        cmocka_unit_test_setup_teardown(test_kinds_and_changes, pluginenv_setup_clock,
                                        pluginenv_teardown),
        cmocka_unit_test_setup_teardown(test_unlimited, pluginenv_setup_clock, pluginenv_teardown),
        cmocka_unit_test_setup_teardown(test_key_kind, pluginenv_setup_clock, pluginenv_teardown),
        cmocka_unit_test_setup_teardown(test_key_unlimited, pluginenv_setup_clock,
                                        pluginenv_teardown),
        cmocka_unit_test_setup_teardown(test_bad_input, pluginenv_setup_clock, pluginenv_teardown),
        cmocka_unit_test_setup_teardown(test_standby, pluginenv_setup_clock, pluginenv_teardown),
        cmocka_unit_test_setup_teardown(test_probe_single_flight, pluginenv_setup_clock,
                                        pluginenv_teardown),
        cmocka_unit_test_setup_teardown(test_oom, pluginenv_setup_clock, pluginenv_teardown),
        cmocka_unit_test_setup_teardown(test_table_bound, pluginenv_setup_clock,
                                        pluginenv_teardown),
    };
    return cmocka_run_group_tests(tests, pluginenv_group_setup, NULL);
}
