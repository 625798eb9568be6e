/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for budget leases (paths_budget.c) through fw_handle with
 * in-memory storage and a fake clock: a hold's expiry to the second, the
 * month rollover (holds and spent start again), the bound on nodes per
 * tenant, the summary's budget block, that a lease that changes nothing
 * writes nothing, and a storage failure. tests/vaultsim/budget_test.go
 * covers the same path through Vault's HTTP API.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/secret.h"
#include "plugin/byok.h"
#include "plugin/framework.h"
#include "plugin/keystore.h"
#include "plugin/storage.h"
#include "tests/unit/helpers/pluginenv.h"

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

static void set_cap(struct env *e, const char *tenant, double cap)
{
    char path[128], body[64];
    snprintf(path, sizeof(path), "tenants/%s/settings", tenant);
    snprintf(body, sizeof(body), "{\"max_monthly_cost\": %.6f}", cap);
    json_decref(ok(e, FW_OP_UPDATE, path, body));
}

static json_t *lease(struct env *e, const char *tenant, const char *node, double unreported,
                     double request)
{
    char path[128], body[256];
    snprintf(path, sizeof(path), "tenants/%s/budget-lease", tenant);
    snprintf(body, sizeof(body),
             "{\"node\": \"%s\", \"unreported_usd\": %.9f, \"request_usd\": %.9f}", node,
             unreported, request);
    return ok(e, FW_OP_UPDATE, path, body);
}

static double num(const json_t *d, const char *k)
{
    json_t *v = json_object_get(d, k);
    if (!json_is_number(v)) {
        fail_msg("%s is not a number", k);
    }
    return json_number_value(v);
}

static void assert_usd(const json_t *d, const char *k, double want)
{
    double got = num(d, k);
    if (fabs(got - want) > 1e-9) {
        fail_msg("%s = %.9f, want %.9f", k, got, want);
    }
}

static void report(struct env *e, const char *tenant, const char *batch, const char *ts,
                   double cost)
{
    char path[128], body[512];
    snprintf(path, sizeof(path), "tenants/%s/usage", tenant);
    snprintf(body, sizeof(body),
             "{\"batch_id\": \"%s\", \"records\": [{\"ts\": \"%s\", \"provider\": \"openai\", "
             "\"model\": \"m\", \"requests\": 1, \"cost_usd\": %.6f}]}",
             batch, ts, cost);
    json_decref(ok(e, FW_OP_UPDATE, path, body));
}

static json_t *summary_budget(struct env *e, const char *tenant)
{
    char path[128];
    snprintf(path, sizeof(path), "tenants/%s", tenant);
    json_t *d = ok(e, FW_OP_READ, path, NULL);
    json_t *b = json_incref(json_object_get(d, "budget"));
    json_decref(d);
    assert_non_null(b);
    return b;
}

static json_t *hold_doc(struct env *e, const char *tenant)
{
    char key[STORAGE_MAX_KEY];
    snprintf(key, sizeof(key), "tenants/%s/budget", tenant);
    json_t *doc = NULL;
    enum err rc = storage_get_json(e->st, key, &doc);
    assert_true(rc == ERR_OK || rc == ERR_NOTFOUND);
    return doc;
}

/* A hold counts up to its expires, exclusive, and its ttl follows config. */
static void test_expiry_to_the_second(void **state)
{
    struct env *e = *state;
    json_decref(ok(e, FW_OP_UPDATE, "config", "{\"budget_lease_ttl\": \"30s\"}"));
    set_cap(e, "acme", 10);
    json_t *d = lease(e, "acme", "a", 0, 10);
    assert_int_equal(json_integer_value(json_object_get(d, "ttl")), 30);
    char want[32];
    keystore_time_format(pluginenv_now + 30, want, sizeof(want));
    assert_string_equal(json_string_value(json_object_get(d, "expires_at")), want);
    json_decref(d);
    pluginenv_now += 29;
    d = lease(e, "acme", "b", 0, 10);
    assert_usd(d, "granted_usd", 0);
    assert_usd(d, "held_usd", 10);
    json_decref(d);
    json_t *b = summary_budget(e, "acme");
    assert_int_equal(json_integer_value(json_object_get(b, "leases")), 1);
    json_decref(b);
    pluginenv_now += 1; /* a's expires: it counts no more */
    b = summary_budget(e, "acme");
    assert_int_equal(json_integer_value(json_object_get(b, "leases")), 0);
    assert_usd(b, "held_usd", 0);
    assert_usd(b, "remaining_usd", 10);
    json_decref(b);
    d = lease(e, "acme", "b", 0, 10);
    assert_usd(d, "granted_usd", 10);
    json_decref(d);
    /* The expired entry is gone from the stored document. */
    json_t *doc = hold_doc(e, "acme");
    assert_non_null(json_object_get(json_object_get(doc, "holds"), "b"));
    assert_null(json_object_get(json_object_get(doc, "holds"), "a"));
    json_decref(doc);
}

/* A new month (UTC) starts with no holds and nothing spent. */
static void test_month_rollover(void **state)
{
    struct env *e = *state;
    set_cap(e, "acme", 10);
    pluginenv_now = 1796083140; /* 2026-11-30T23:59:00Z */
    report(e, "acme", "nov-1", "2026-11-30T23:58:00Z", 4);
    json_t *d = lease(e, "acme", "a", 0, 10);
    assert_string_equal(json_string_value(json_object_get(d, "month")), "2026-11");
    assert_usd(d, "spent_usd", 4);
    assert_usd(d, "granted_usd", 6);
    json_decref(d);
    pluginenv_now += 120; /* 2026-12-01T00:01:00Z, a's hold has not expired */
    d = lease(e, "acme", "b", 0, 10);
    assert_string_equal(json_string_value(json_object_get(d, "month")), "2026-12");
    assert_usd(d, "spent_usd", 0);
    assert_usd(d, "held_usd", 0);
    assert_usd(d, "granted_usd", 10);
    json_decref(d);
    json_t *doc = hold_doc(e, "acme");
    assert_string_equal(json_string_value(json_object_get(doc, "month")), "2026-12");
    assert_int_equal(json_object_size(json_object_get(doc, "holds")), 1);
    json_decref(doc);
}

/* At most 1024 nodes hold budget of a tenant; holders and empty leases are still served. */
static void test_node_bound(void **state)
{
    struct env *e = *state;
    set_cap(e, "acme", 1000000);
    char node[32];
    for (int i = 0; i < 1024; i++) {
        snprintf(node, sizeof(node), "n%d", i);
        json_decref(lease(e, "acme", node, 0, 1));
    }
    json_t *d = NULL;
    char msg[FW_MAX_MESSAGE];
    const char *more = "{\"node\": \"n1024\", \"request_usd\": 1}";
    assert_int_equal(
        call_on(e, e->st, FW_OP_UPDATE, "tenants/acme/budget-lease", more, &d, msg, sizeof(msg)),
        FW_BAD_REQUEST);
    assert_null(d);
    assert_non_null(strstr(msg, "'node'"));
    json_decref(lease(e, "acme", "n7", 0, 2));    /* a holder renews */
    json_decref(lease(e, "acme", "n1024", 0, 0)); /* holds nothing: served */
    json_decref(lease(e, "acme", "n3", 0, 0));    /* a release makes room */
    json_decref(lease(e, "acme", "n1024", 0, 1));
    json_t *b = summary_budget(e, "acme");
    assert_int_equal(json_integer_value(json_object_get(b, "leases")), 1024);
    assert_usd(b, "held_usd", 1025);
    json_decref(b);
}

/* A storage over the env's that counts writes and deletes, and can fail them. */
struct counting {
    struct storage *inner;
    int writes;
    bool fail_writes;
};

static enum err counting_get(void *ctx, const char *key, unsigned char **ret_val, size_t *ret_len)
{
    struct counting *c = ctx;
    return storage_get(c->inner, key, ret_val, ret_len);
}

static enum err counting_put(void *ctx, const char *key, const unsigned char *val, size_t len,
                             bool seal_wrap)
{
    struct counting *c = ctx;
    c->writes++;
    return c->fail_writes ? ERR_UNAVAIL : storage_put(c->inner, key, val, len, seal_wrap);
}

static enum err counting_del(void *ctx, const char *key)
{
    struct counting *c = ctx;
    c->writes++;
    return c->fail_writes ? ERR_UNAVAIL : storage_delete(c->inner, key);
}

static enum err counting_list(void *ctx, const char *prefix, char ***ret_keys, size_t *ret_n)
{
    struct counting *c = ctx;
    return storage_list(c->inner, prefix, ret_keys, ret_n);
}

static const struct storage_ops counting_ops = {
    .get = counting_get, .put = counting_put, .del = counting_del, .list = counting_list};

static enum fw_status lease_on(struct env *e, struct storage *st, const char *body, json_t **ret)
{
    return call_on(e, st, FW_OP_UPDATE, "tenants/acme/budget-lease", body, ret, NULL, 0);
}

/*
 * A renewal that changes nothing (same second, same hold) does not write; a
 * release of nothing neither; a failed write is a 500 with no grant.
 */
static void test_writes(void **state)
{
    struct env *e = *state;
    set_cap(e, "acme", 10);
    struct counting c = {.inner = e->st};
    struct storage st = {.ops = &counting_ops, .ctx = &c};
    const char *a12 = "{\"node\": \"a\", \"unreported_usd\": 1, \"request_usd\": 2}";
    json_t *d = NULL;
    assert_int_equal(lease_on(e, &st, a12, &d), FW_OK);
    json_decref(d);
    assert_int_equal(c.writes, 1);
    assert_int_equal(lease_on(e, &st, a12, &d), FW_OK);
    json_decref(d);
    assert_int_equal(c.writes, 1); /* the same hold, the same expiry */
    pluginenv_now++;
    assert_int_equal(lease_on(e, &st, a12, &d), FW_OK);
    json_decref(d);
    assert_int_equal(c.writes, 2); /* a later expiry */
    const char *z0 = "{\"node\": \"z\"}";
    assert_int_equal(lease_on(e, &st, z0, &d), FW_OK);
    assert_usd(d, "hold_usd", 0);
    json_decref(d);
    assert_int_equal(c.writes, 2); /* z held nothing and holds nothing */

    /* A write that fails: a 500, nothing granted; what was stored stays. */
    json_t *before = hold_doc(e, "acme");
    c.fail_writes = true;
    const char *b5 = "{\"node\": \"b\", \"request_usd\": 5}";
    assert_int_equal(lease_on(e, &st, b5, &d), FW_INTERNAL);
    assert_null(d);
    json_t *after = hold_doc(e, "acme");
    assert_true(json_equal(before, after));
    json_decref(before);
    json_decref(after);

    /* The last release deletes the document. */
    c.fail_writes = false;
    assert_int_equal(lease_on(e, &st, "{\"node\": \"a\"}", &d), FW_OK);
    json_decref(d);
    assert_int_equal(c.writes, 4);
    assert_null(hold_doc(e, "acme"));
}

/* A hold document that is not one (written by hand) does not lock the tenant out. */
static void test_broken_document(void **state)
{
    struct env *e = *state;
    set_cap(e, "acme", 10);
    json_t *bad = json_pack("{sss[i]}", "month", "2026-11", "holds", 5);
    assert_int_equal(storage_put_json(e->st, "tenants/acme/budget", bad, false), ERR_OK);
    json_decref(bad);
    json_t *d = lease(e, "acme", "a", 0, 3);
    assert_usd(d, "granted_usd", 3);
    json_decref(d);
    bad = json_pack("{ss s{s{ss si} s{sf si} s{sf}}}", "month", "2026-11", "holds", "x", "usd",
                    "lots", "expires", 1900000000, "bad node", "usd", 5.0, "expires", 1900000000,
                    "y", "usd", 5.0);
    assert_int_equal(storage_put_json(e->st, "tenants/acme/budget", bad, false), ERR_OK);
    json_decref(bad);
    d = lease(e, "acme", "a", 0, 3);
    assert_usd(d, "held_usd", 0);
    assert_usd(d, "granted_usd", 3);
    json_decref(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_expiry_to_the_second, pluginenv_setup_clock,
                                        pluginenv_teardown),
        cmocka_unit_test_setup_teardown(test_month_rollover, pluginenv_setup_clock,
                                        pluginenv_teardown),
        cmocka_unit_test_setup_teardown(test_node_bound, pluginenv_setup_clock, pluginenv_teardown),
        cmocka_unit_test_setup_teardown(test_writes, pluginenv_setup_clock, pluginenv_teardown),
        cmocka_unit_test_setup_teardown(test_broken_document, pluginenv_setup_clock,
                                        pluginenv_teardown),
    };
    return cmocka_run_group_tests(tests, pluginenv_group_setup, NULL);
}
