/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for plugin/byok.c: lifecycle, mount options, and that every path
 * of docs/api.md routes to a handler through byok_path_tables in the right
 * order (no pattern shadows another).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/secret.h"
#include "plugin/byok.h"
#include "plugin/cache.h"
#include "plugin/paths.h"

static void test_setup_mount_config(void **state)
{
    (void)state;
    struct byok *b = byok_new();
    assert_non_null(b);
    assert_true(json_is_object(byok_mount_config(b)));
    assert_int_equal(json_object_size(byok_mount_config(b)), 0);
    json_t *opts = json_pack("{s:s}", "region", "eu");
    assert_int_equal(byok_setup(b, opts), ERR_OK);
    json_object_set_new(opts, "region", json_string("us")); /* we hold a copy */
    assert_string_equal(json_string_value(json_object_get(byok_mount_config(b), "region")), "eu");
    json_decref(opts);
    json_t *bad = json_array();
    assert_int_equal(byok_setup(b, bad), ERR_INVAL);
    json_decref(bad);
    assert_int_equal(byok_setup(b, NULL), ERR_OK);
    assert_int_equal(json_object_size(byok_mount_config(b)), 0);
    assert_non_null(byok_cache(b));
    byok_invalidate(b, NULL); /* ignored, no crash */
    byok_free(b);
    byok_free(NULL);
}

static void test_seal_wrap_paths(void **state)
{
    (void)state;
    assert_string_equal(byok_seal_wrap_storage[0], "kek/");
    assert_null(byok_seal_wrap_storage[1]);
}

struct route_case {
    enum fw_op op;
    const char *path;
    const char *pattern; /* the table entry that must answer */
};

static const struct route_case routes[] = {
    {FW_OP_READ, "config", "config"},
    {FW_OP_UPDATE, "config", "config"},
    {FW_OP_UPDATE, "config/rotate-root", "config/rotate-root"},
    {FW_OP_LIST, "providers/", "providers/"},
    {FW_OP_READ, "providers/openai", "providers/{name}"},
    {FW_OP_LIST, "tenants/", "tenants/"},
    {FW_OP_READ, "tenants/acme", "tenants/{tenant}"},
    {FW_OP_READ, "tenants/acme/settings", "tenants/{tenant}/settings"},
    {FW_OP_LIST, "tenants/acme/keys/", "tenants/{tenant}/keys/"},
    {FW_OP_LIST, "tenants/acme/keys/openai/", "tenants/{tenant}/keys/{provider}/"},
    {FW_OP_READ, "tenants/acme/keys/openai/production",
     "tenants/{tenant}/keys/{provider}/{key_type}"},
    {FW_OP_UPDATE, "tenants/acme/keys/openai/production/rotate",
     "tenants/{tenant}/keys/{provider}/{key_type}/rotate"},
    {FW_OP_READ, "tenants/acme/creds/openai", "tenants/{tenant}/creds/{provider}"},
    {FW_OP_UPDATE, "tenants/acme/usage", "tenants/{tenant}/usage"},
};

static void test_every_documented_path_routes(void **state)
{
    (void)state;
    struct byok *b = byok_new();
    struct storage *st = storage_mem_new();
    assert_int_equal(byok_initialize(b, st), ERR_OK);
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        /* Help names the matching route: proves which entry answered. */
        struct fw_request req = {
            .op = FW_OP_HELP, .path = routes[i].path, .storage = st, .backend = b};
        struct fw_response resp;
        fw_response_init(&resp);
        assert_int_equal(fw_handle(byok_path_tables, &req, &resp), ERR_OK);
        if (resp.status != FW_OK) {
            fail_msg("%s: status %d", routes[i].path, resp.status);
        }
        char want[256];
        snprintf(want, sizeof(want), "Matching Route: %s\n", routes[i].pattern);
        const char *help = json_string_value(json_object_get(resp.data, "help"));
        if (help == NULL || strstr(help, want) == NULL) {
            fail_msg("%s routed elsewhere: %.200s", routes[i].path, help ? help : "(no help)");
        }
        fw_response_done(&resp);
        /* And the operation has a handler there. */
        bool has = false;
        for (size_t t = 0; byok_path_tables[t] != NULL; t++) {
            for (const struct fw_path *p = byok_path_tables[t]; p->pattern != NULL; p++) {
                if (strcmp(p->pattern, routes[i].pattern) == 0) {
                    has = p->handlers[routes[i].op] != NULL;
                }
            }
        }
        if (!has) {
            fail_msg("%s: no %s handler", routes[i].pattern, fw_op_name(routes[i].op));
        }
    }
    /* Root help answers, with an OpenAPI document covering every table. */
    struct fw_request req = {.op = FW_OP_HELP, .path = "", .storage = st, .backend = b};
    struct fw_response resp;
    fw_response_init(&resp);
    assert_int_equal(fw_handle(byok_path_tables, &req, &resp), ERR_OK);
    json_t *paths = json_object_get(json_object_get(resp.data, "openapi"), "paths");
    assert_non_null(json_object_get(paths, "/config"));
    assert_non_null(json_object_get(paths, "/tenants/{tenant}/creds/{provider}"));
    fw_response_done(&resp);
    byok_free(b);
    storage_mem_free(st);
}

static void test_invalidate_drops_cache(void **state)
{
    (void)state;
    struct byok *b = byok_new();
    json_t *v = json_true();
    uint64_t gen;
    cache_get(byok_cache(b), "providers/openai", &gen);
    cache_put(byok_cache(b), "providers/openai", v, gen);
    json_t *got = cache_get(byok_cache(b), "providers/openai", NULL);
    assert_non_null(got);
    json_decref(got);
    byok_invalidate(b, "providers/openai");
    assert_null(cache_get(byok_cache(b), "providers/openai", NULL));
    byok_free(b);
}

static int group_setup(void **state)
{
    return secret_heap_init((size_t)1024 * 1024) == ERR_OK ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_setup_mount_config),
        cmocka_unit_test(test_seal_wrap_paths),
        cmocka_unit_test(test_every_documented_path_routes),
        cmocka_unit_test(test_invalidate_drops_cache),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
