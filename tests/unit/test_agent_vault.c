/* SPDX-License-Identifier: MPL-2.0 */
/* Unit tests for the agent's reading of Vault's login and token-lookup replies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "agent/vault.h"
#include "common/secret.h"

static long lease(const char *body, bool *ret_renewable, struct secret **ret_token)
{
    long ttl = -1;
    bool renewable = false;
    vault_parse_lease(body, body != NULL ? strlen(body) : 0, ret_token, &ttl, &renewable);
    if (ret_renewable != NULL) {
        *ret_renewable = renewable;
    }
    return ttl;
}

static void test_login_reply(void **state)
{
    (void)state;
    struct secret *tok = NULL;
    bool renewable = false;
    assert_int_equal(lease("{\"auth\":{\"client_token\":\"hvs.abc\",\"lease_duration\":3600,"
                           "\"renewable\":true}}",
                           &renewable, &tok),
                     3600);
    assert_true(renewable);
    assert_non_null(tok);
    assert_int_equal(tok->len, 7);
    assert_memory_equal(tok->data, "hvs.abc", 7);
    secret_free(&tok);
    /* A lookup reply: data.ttl, no token. */
    assert_int_equal(lease("{\"data\":{\"ttl\":90,\"renewable\":false}}", &renewable, NULL), 90);
    assert_false(renewable);
}

static void test_lease_bounded(void **state)
{
    (void)state;
    /* Vault is a peer too: its numbers are bounded before ttl * 2 / 3 is taken. */
    assert_int_equal(lease("{\"auth\":{\"client_token\":\"t\",\"lease_duration\":"
                           "9223372036854775807}}",
                           NULL, NULL),
                     VAULT_MAX_LEASE_S);
    assert_int_equal(lease("{\"data\":{\"ttl\":-5}}", NULL, NULL), 0);
    assert_int_equal(lease("{\"data\":{\"ttl\":\"3600\"}}", NULL, NULL), 0);
    assert_int_equal(lease("not json", NULL, NULL), 0);
    assert_int_equal(lease(NULL, NULL, NULL), 0);
    struct secret *tok = NULL;
    assert_int_equal(lease("{\"auth\":{\"client_token\":\"\",\"lease_duration\":60}}", NULL, &tok),
                     60);
    assert_null(tok); /* an empty token is no token */
}

static int setup(void **state)
{
    (void)state;
    return secret_heap_init((size_t)64 * 1024) == ERR_OK ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_login_reply),
        cmocka_unit_test(test_lease_bounded),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
