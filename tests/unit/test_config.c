/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for plugin/config.c: defaults, updates and their validation
 * (every limit at and one past it), the cache and its invalidation, and
 * storage failures, through the framework as the transport would call it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/secret.h"
#include "plugin/byok.h"
#include "plugin/config.h"
#include "plugin/framework.h"
#include "plugin/storage.h"
#include "tests/unit/helpers/pluginenv.h"

static const struct fw_path *const tables[] = {paths_config, NULL};

/* Runs one request; returns the status, leaves data (owned) in *ret_data if asked. */
static enum fw_status run(struct env *e, struct storage *st, enum fw_op op, const char *body,
                          json_t **ret_data, char *msg, size_t msglen)
{
    json_t *data = body != NULL ? json_loads(body, 0, NULL) : NULL;
    if (body != NULL) {
        assert_non_null(data);
    }
    struct fw_request req = {
        .op = op, .path = "config", .data = data, .storage = st, .backend = e->b};
    struct fw_response resp;
    fw_response_init(&resp);
    enum err rc = fw_handle(tables, &req, &resp);
    enum fw_status s = resp.status;
    /* Internal failures and only those come back as an error too. */
    assert_int_equal(rc != ERR_OK, s == FW_INTERNAL);
    if (msg != NULL) {
        snprintf(msg, msglen, "%s", resp.message);
    }
    if (ret_data != NULL) {
        *ret_data = json_incref(resp.data);
    }
    fw_response_done(&resp);
    json_decref(data);
    return s;
}

static json_t *read_config(struct env *e)
{
    json_t *d = NULL;
    assert_int_equal(run(e, e->st, FW_OP_READ, NULL, &d, NULL, 0), FW_OK);
    assert_non_null(d);
    return d;
}

static void expect_400(struct env *e, const char *body, const char *field)
{
    char msg[FW_MAX_MESSAGE];
    enum fw_status s = run(e, e->st, FW_OP_UPDATE, body, NULL, msg, sizeof(msg));
    if (s != FW_BAD_REQUEST) {
        fail_msg("%s: status %d, want 400", body, s);
    }
    char needle[64];
    snprintf(needle, sizeof(needle), "'%s'", field);
    if (strstr(msg, needle) == NULL) {
        fail_msg("%s: message '%s' does not name %s", body, msg, field);
    }
}

static void expect_ok(struct env *e, const char *body)
{
    char msg[FW_MAX_MESSAGE];
    enum fw_status s = run(e, e->st, FW_OP_UPDATE, body, NULL, msg, sizeof(msg));
    if (s != FW_OK) {
        fail_msg("%s: status %d (%s), want OK", body, s, msg);
    }
}

static void test_defaults(void **state)
{
    struct env *e = *state;
    json_t *d = read_config(e);
    assert_int_equal(json_integer_value(json_object_get(d, "creds_ttl")), 300);
    assert_int_equal(json_integer_value(json_object_get(d, "max_key_versions")), 10);
    assert_string_equal(json_string_value(json_object_get(d, "default_budget_tier")), "MEDIUM");
    assert_string_equal(json_string_value(json_object_get(d, "default_routing_strategy")),
                        "ordered");
    assert_int_equal(json_array_size(json_object_get(d, "allowed_providers")), 0);
    json_t *hosts = json_object_get(d, "local_hosts");
    assert_int_equal(json_array_size(hosts), 3);
    assert_string_equal(json_string_value(json_array_get(hosts, 0)), "127.0.0.1");
    assert_string_equal(json_string_value(json_array_get(hosts, 1)), "localhost");
    assert_string_equal(json_string_value(json_array_get(hosts, 2)), "::1");
    assert_int_equal(json_integer_value(json_object_get(d, "budget_lease_ttl")), 300);
    /* From the keys modules' hook: byok_initialize created KEK 1, the only one. */
    assert_int_equal(json_integer_value(json_object_get(d, "kek_version")), 1);
    json_t *versions = json_object_get(d, "kek_versions");
    assert_int_equal(json_array_size(versions), 1);
    assert_int_equal(json_integer_value(json_array_get(versions, 0)), 1);
    assert_true(json_is_false(json_object_get(d, "rotation_incomplete")));
    json_decref(d);
    /* Reading config creates nothing in storage. */
    json_t *stored = NULL;
    assert_int_equal(storage_get_json(e->st, CONFIG_STORAGE_KEY, &stored), ERR_NOTFOUND);
}

static void test_update_and_partial_update(void **state)
{
    struct env *e = *state;
    expect_ok(e, "{\"creds_ttl\": \"1h\", \"allowed_providers\": \"openai, anthropic\"}");
    json_t *d = read_config(e);
    assert_int_equal(json_integer_value(json_object_get(d, "creds_ttl")), 3600);
    assert_int_equal(json_array_size(json_object_get(d, "allowed_providers")), 2);
    json_decref(d);
    /* A later update of one field keeps the others. */
    expect_ok(e, "{\"max_key_versions\": \"20\", \"default_budget_tier\": \"high\"}");
    d = read_config(e);
    assert_int_equal(json_integer_value(json_object_get(d, "creds_ttl")), 3600);
    assert_int_equal(json_integer_value(json_object_get(d, "max_key_versions")), 20);
    assert_string_equal(json_string_value(json_object_get(d, "default_budget_tier")), "HIGH");
    assert_int_equal(json_array_size(json_object_get(d, "allowed_providers")), 2);
    json_decref(d);
    /* It is in storage, in the documented shape. */
    json_t *stored = NULL;
    assert_int_equal(storage_get_json(e->st, CONFIG_STORAGE_KEY, &stored), ERR_OK);
    assert_int_equal(json_integer_value(json_object_get(stored, "creds_ttl")), 3600);
    assert_null(json_object_get(stored, "kek_version"));
    json_decref(stored);
    /* config_get_shared for other modules: same values, the one cached document. */
    json_t *c = NULL, *c2 = NULL;
    assert_int_equal(config_get_shared(e->b, e->st, &c), ERR_OK);
    assert_int_equal(json_integer_value(json_object_get(c, "max_key_versions")), 20);
    assert_int_equal(config_get_shared(e->b, e->st, &c2), ERR_OK);
    assert_ptr_equal(c, c2);
    json_decref(c2);
    json_decref(c);
}

static void test_validation_limits(void **state)
{
    struct env *e = *state;
    expect_ok(e, "{\"creds_ttl\": \"1s\"}");  /* lower bound */
    expect_ok(e, "{\"creds_ttl\": \"24h\"}"); /* upper bound */
    expect_ok(e, "{\"creds_ttl\": 86400}");
    expect_400(e, "{\"creds_ttl\": \"0s\"}", "creds_ttl");
    expect_400(e, "{\"creds_ttl\": \"86401\"}", "creds_ttl");
    expect_400(e, "{\"creds_ttl\": \"25h\"}", "creds_ttl");
    expect_400(e, "{\"creds_ttl\": \"forever\"}", "creds_ttl");
    expect_ok(e, "{\"budget_lease_ttl\": \"10s\"}"); /* lower bound */
    expect_ok(e, "{\"budget_lease_ttl\": \"1h\"}");  /* upper bound */
    expect_ok(e, "{\"budget_lease_ttl\": 90}");
    expect_400(e, "{\"budget_lease_ttl\": \"9s\"}", "budget_lease_ttl");
    expect_400(e, "{\"budget_lease_ttl\": 3601}", "budget_lease_ttl");
    expect_400(e, "{\"budget_lease_ttl\": \"soon\"}", "budget_lease_ttl");
    expect_ok(e, "{\"max_key_versions\": 1}");
    expect_ok(e, "{\"max_key_versions\": 100}");
    expect_400(e, "{\"max_key_versions\": 0}", "max_key_versions");
    expect_400(e, "{\"max_key_versions\": 101}", "max_key_versions");
    expect_400(e, "{\"max_key_versions\": \"lots\"}", "max_key_versions");
    expect_400(e, "{\"default_budget_tier\": \"PLATINUM\"}", "default_budget_tier");
    expect_400(e, "{\"default_budget_tier\": \"\"}", "default_budget_tier");
    expect_ok(e, "{\"default_budget_tier\": \"UNLIMITED\"}");
    expect_400(e, "{\"default_routing_strategy\": \"random\"}", "default_routing_strategy");
    expect_400(e, "{\"default_routing_strategy\": \"\"}", "default_routing_strategy");
    expect_400(e, "{\"default_routing_strategy\": \"cheapest-first-please\"}",
               "default_routing_strategy");
    expect_ok(e, "{\"default_routing_strategy\": \"Cheapest\"}"); /* stored lower case */
    expect_400(e, "{\"allowed_providers\": [\"openai\", \"Bad Name\"]}", "allowed_providers");
    expect_400(e, "{\"allowed_providers\": [{}]}", "allowed_providers");
    expect_400(e, "{\"allowed_providers\": [\"openai\", \"nosuch\"]}", "allowed_providers");
    expect_400(e, "{\"local_hosts\": [\"gpu box\"]}", "local_hosts");
    expect_400(e, "{\"local_hosts\": [\"\"]}", "local_hosts");
    /* A host name of CONFIG_MAX_HOST_LEN bytes, then one more. */
    for (int past = 0; past <= 1; past++) {
        char host[CONFIG_MAX_HOST_LEN + 2];
        memset(host, 'h', CONFIG_MAX_HOST_LEN + past);
        host[CONFIG_MAX_HOST_LEN + past] = '\0';
        json_t *b = json_pack("{s:[s]}", "local_hosts", host);
        char *t = json_dumps(b, 0);
        if (past) {
            expect_400(e, t, "local_hosts");
        } else {
            expect_ok(e, t);
        }
        free(t);
        json_decref(b);
    }

    /* local_hosts: CONFIG_MAX_LOCAL_HOSTS at the limit, one more past it. */
    json_t *hosts = json_array();
    for (int i = 0; i < CONFIG_MAX_LOCAL_HOSTS; i++) {
        char h[32];
        snprintf(h, sizeof(h), "host%d", i);
        json_array_append_new(hosts, json_string(h));
    }
    json_t *body = json_pack("{s:O}", "local_hosts", hosts);
    char *text = json_dumps(body, 0);
    expect_ok(e, text);
    free(text);
    json_decref(body);
    json_array_append_new(hosts, json_string("one-more"));
    body = json_pack("{s:O}", "local_hosts", hosts);
    text = json_dumps(body, 0);
    expect_400(e, text, "local_hosts");
    free(text);
    json_decref(body);
    json_decref(hosts);

    /* Nothing invalid reached storage. */
    json_t *d = read_config(e);
    assert_int_equal(json_integer_value(json_object_get(d, "creds_ttl")), 86400);
    assert_int_equal(json_integer_value(json_object_get(d, "max_key_versions")), 100);
    assert_string_equal(json_string_value(json_object_get(d, "default_budget_tier")), "UNLIMITED");
    assert_string_equal(json_string_value(json_object_get(d, "default_routing_strategy")),
                        "cheapest");
    assert_int_equal(json_array_size(json_object_get(d, "local_hosts")), CONFIG_MAX_LOCAL_HOSTS);
    json_decref(d);
}

static void test_unknown_parameter_and_operations(void **state)
{
    struct env *e = *state;
    json_t *body = json_pack("{s:s, s:s}", "creds_ttl", "10m", "ttl", "1h");
    struct fw_request req = {
        .op = FW_OP_UPDATE, .path = "config", .data = body, .storage = e->st, .backend = e->b};
    struct fw_response resp;
    fw_response_init(&resp);
    assert_int_equal(fw_handle(tables, &req, &resp), ERR_OK);
    assert_int_equal(resp.status, FW_OK);
    assert_string_equal(json_string_value(json_array_get(resp.warnings, 0)),
                        "Endpoint ignored these unrecognized parameters: [ttl]");
    fw_response_done(&resp);
    json_decref(body);
    assert_int_equal(run(e, e->st, FW_OP_DELETE, NULL, NULL, NULL, 0), FW_UNSUPPORTED_OPERATION);
    assert_int_equal(run(e, e->st, FW_OP_LIST, NULL, NULL, NULL, 0), FW_UNSUPPORTED_OPERATION);
}

static void test_cache_and_invalidate(void **state)
{
    struct env *e = *state;
    json_t *d = read_config(e); /* warms the cache with defaults */
    json_decref(d);
    /* Another node writes storage underneath us. */
    json_t *other = json_pack("{s:i, s:i}", "creds_ttl", 42, "max_key_versions", 3);
    assert_int_equal(storage_put_json(e->st, CONFIG_STORAGE_KEY, other, false), ERR_OK);
    json_decref(other);
    d = read_config(e);
    assert_int_equal(json_integer_value(json_object_get(d, "creds_ttl")), 300); /* cached */
    json_decref(d);
    byok_invalidate(e->b, "some/other/key");
    d = read_config(e);
    assert_int_equal(json_integer_value(json_object_get(d, "creds_ttl")), 300);
    json_decref(d);
    byok_invalidate(e->b, CONFIG_STORAGE_KEY);
    d = read_config(e);
    assert_int_equal(json_integer_value(json_object_get(d, "creds_ttl")), 42);
    assert_int_equal(json_integer_value(json_object_get(d, "max_key_versions")), 3);
    /* Missing stored fields come from the defaults. */
    assert_string_equal(json_string_value(json_object_get(d, "default_budget_tier")), "MEDIUM");
    json_decref(d);
    /* Cleanup drops the cache as well. */
    other = json_pack("{s:i}", "creds_ttl", 7);
    assert_int_equal(storage_put_json(e->st, CONFIG_STORAGE_KEY, other, false), ERR_OK);
    json_decref(other);
    byok_cleanup(e->b);
    d = read_config(e);
    assert_int_equal(json_integer_value(json_object_get(d, "creds_ttl")), 7);
    json_decref(d);
}

static void test_storage_down(void **state)
{
    struct env *e = *state;
    struct storage down = {.ops = &storage_down_ops};
    char msg[FW_MAX_MESSAGE];
    assert_int_equal(run(e, &down, FW_OP_READ, NULL, NULL, msg, sizeof(msg)), FW_INTERNAL);
    assert_string_equal(msg, "internal error");
    assert_int_equal(run(e, &down, FW_OP_UPDATE, "{\"creds_ttl\": 60}", NULL, NULL, 0),
                     FW_INTERNAL);
    json_t *c = NULL;
    assert_int_equal(config_get_shared(e->b, &down, &c), ERR_UNAVAIL);
    /* Once cached (the document and the KEK state), reads no longer need storage. */
    json_t *d = read_config(e);
    json_decref(d);
    assert_int_equal(run(e, &down, FW_OP_READ, NULL, NULL, NULL, 0), FW_OK);
}

/*
 * Two admins writing different fields at once: each write is a read-modify-
 * write of one document, so both fields must survive. Storage here is slow on
 * reads of the config (2 ms) and both writes start together, so without the
 * engine's write lock the second Put would carry the first write's old value.
 */
struct writer {
    struct env *e;
    struct storage *st;
    pthread_barrier_t *go;
    const char *field;
    int base;
    int failures;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    for (int i = 0; i < 5; i++) {
        char body[64];
        snprintf(body, sizeof(body), "{\"%s\": %d}", w->field, w->base + i);
        pthread_barrier_wait(w->go);
        /* cmocka asserts are not thread-safe: count here, assert in the test. */
        w->failures += run(w->e, w->st, FW_OP_UPDATE, body, NULL, NULL, 0) != FW_OK;
    }
    return NULL;
}

static void test_concurrent_writes_keep_both_fields(void **state)
{
    struct env *e = *state;
    struct storage slow;
    pluginenv_slow_storage(&slow, e->st, CONFIG_STORAGE_KEY, 2000);
    pthread_barrier_t go;
    assert_int_equal(pthread_barrier_init(&go, NULL, 2), 0);
    struct writer a = {e, &slow, &go, "creds_ttl", 100, 0};
    struct writer b = {e, &slow, &go, "max_key_versions", 20, 0};
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, writer_main, &a), 0);
    assert_int_equal(pthread_create(&tb, NULL, writer_main, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    pthread_barrier_destroy(&go);
    assert_int_equal(a.failures + b.failures, 0);
    json_t *d = read_config(e);
    assert_int_equal(json_integer_value(json_object_get(d, "creds_ttl")), 104);
    assert_int_equal(json_integer_value(json_object_get(d, "max_key_versions")), 24);
    json_decref(d);
}

static void test_corrupt_stored_config(void **state)
{
    struct env *e = *state;
    assert_int_equal(
        storage_put(e->st, CONFIG_STORAGE_KEY, (const unsigned char *)"{oops", 5, false), ERR_OK);
    assert_int_equal(run(e, e->st, FW_OP_READ, NULL, NULL, NULL, 0), FW_INTERNAL);
    /* Wrongly typed stored values fall back to defaults instead of leaking through. */
    json_t *odd = json_pack("{s:s, s:i, s:i, s:i}", "creds_ttl", "x", "local_hosts", 3,
                            "max_key_versions", -4, "budget_lease_ttl", 0);
    assert_int_equal(storage_put_json(e->st, CONFIG_STORAGE_KEY, odd, false), ERR_OK);
    json_decref(odd);
    json_t *d = read_config(e);
    assert_int_equal(json_integer_value(json_object_get(d, "creds_ttl")), 300);
    assert_int_equal(json_integer_value(json_object_get(d, "max_key_versions")), 10);
    assert_int_equal(json_array_size(json_object_get(d, "local_hosts")), 3);
    /* Out of range (a lease that would never last or never end): the default. */
    assert_int_equal(json_integer_value(json_object_get(d, "budget_lease_ttl")), 300);
    json_decref(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, pluginenv_setup, pluginenv_teardown),
        cmocka_unit_test_setup_teardown(test_update_and_partial_update, pluginenv_setup,
                                        pluginenv_teardown),
        cmocka_unit_test_setup_teardown(test_validation_limits, pluginenv_setup,
                                        pluginenv_teardown),
        cmocka_unit_test_setup_teardown(test_unknown_parameter_and_operations, pluginenv_setup,
                                        pluginenv_teardown),
        cmocka_unit_test_setup_teardown(test_cache_and_invalidate, pluginenv_setup,
                                        pluginenv_teardown),
        cmocka_unit_test_setup_teardown(test_storage_down, pluginenv_setup, pluginenv_teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_stored_config, pluginenv_setup,
                                        pluginenv_teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_writes_keep_both_fields, pluginenv_setup,
                                        pluginenv_teardown),
    };
    return cmocka_run_group_tests(tests, pluginenv_group_setup, NULL);
}
