/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for plugin/broker and plugin/storage_grpc without a Vault: the
 * ConnInfo table (limits, replacement, overflow, arrival after Setup started
 * waiting), the registration-mode behaviour (no channel: every storage call
 * is ERR_UNAVAIL with an explanation) and a dial to a socket nobody serves
 * (the call fails instead of hanging).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <grpc/grpc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/secret.h"
#include "plugin/broker.h"
#include "plugin/storage.h"
#include "plugin/storage_grpc.h"
#include "sdk/plugin/pb/backend.pb-c.h"

static struct tlsgen tls;

static void test_conninfo_bad_input(void **state)
{
    (void)state;
    char addr[BROKER_MAX_ADDRESS + 2];
    memset(addr, 'a', sizeof(addr));
    addr[0] = '/';
    addr[BROKER_MAX_ADDRESS] = '\0'; /* at the limit */
    assert_int_equal(broker_conninfo_put(7, "unix", addr), ERR_OK);
    addr[BROKER_MAX_ADDRESS] = 'a';
    addr[BROKER_MAX_ADDRESS + 1] = '\0'; /* one past */
    assert_int_equal(broker_conninfo_put(8, "unix", addr), ERR_INVAL);
    assert_int_equal(broker_conninfo_put(9, "udp", "/tmp/x"), ERR_INVAL);
    assert_int_equal(broker_conninfo_put(9, "unix", ""), ERR_INVAL);
    assert_int_equal(broker_conninfo_put(9, NULL, "/tmp/x"), ERR_INVAL);
    assert_int_equal(broker_conninfo_put(9, "unix", NULL), ERR_INVAL);
    /* Refused entries were not stored. */
    assert_int_equal(broker_connect(8, 0), ERR_TIMEOUT);
    assert_int_equal(broker_connect(9, 0), ERR_TIMEOUT);
    broker_reset();
}

static void test_connect_unknown_id_times_out(void **state)
{
    (void)state;
    assert_int_equal(broker_connect(12345, 0), ERR_TIMEOUT);
    assert_false(broker_connected());
}

static void test_pending_table_drops_oldest(void **state)
{
    (void)state;
    char addr[64];
    for (uint32_t id = 1; id <= BROKER_MAX_PENDING + 1; id++) {
        snprintf(addr, sizeof(addr), "/nonexistent/broker-%u", id);
        assert_int_equal(broker_conninfo_put(id, "unix", addr), ERR_OK);
    }
    /* At the limit every entry is kept; one past it, the oldest (id 1) is gone. */
    assert_int_equal(broker_connect(1, 0), ERR_TIMEOUT);
    assert_int_equal(broker_connect(2, 0), ERR_OK);
    assert_int_equal(broker_connect(BROKER_MAX_PENDING + 1, 0), ERR_OK);
    assert_true(broker_connected());
    /* An entry is claimed once. */
    assert_int_equal(broker_connect(2, 0), ERR_TIMEOUT);
    broker_close();
    broker_close(); /* idempotent */
    assert_false(broker_connected());
    broker_reset();
}

struct late {
    uint32_t id;
    enum err rc;
};

static void *announce_late(void *arg)
{
    struct late *l = arg;
    usleep(50 * 1000);
    l->rc = broker_conninfo_put(l->id, "unix", "/nonexistent/late");
    return NULL;
}

static void test_conninfo_after_setup_started(void **state)
{
    (void)state;
    /* Vault may send the ConnInfo after Setup arrived: Setup waits for it. */
    struct late l = {.id = 77, .rc = ERR_INTERNAL};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, announce_late, &l), 0);
    assert_int_equal(broker_connect(77, BROKER_WAIT_MS), ERR_OK);
    pthread_join(th, NULL);
    assert_int_equal(l.rc, ERR_OK);
    assert_true(broker_connected());
    broker_close();
    broker_reset();
}

static void test_storage_without_broker_is_unavailable(void **state)
{
    (void)state;
    /* A request's storage with no parent call (handlers run by tests) is the process-wide one. */
    struct storage for_call;
    storage_grpc_for_call(&for_call, NULL);
    struct storage *all[] = {storage_grpc(), &for_call};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        struct storage *st = all[i];
        unsigned char *val = NULL;
        size_t len = 0;
        assert_int_equal(storage_get(st, "config", &val, &len), ERR_UNAVAIL);
        assert_null(val);
        assert_int_equal(storage_put(st, "config", (const unsigned char *)"{}", 2, false),
                         ERR_UNAVAIL);
        assert_int_equal(storage_delete(st, "config"), ERR_UNAVAIL);
        char **keys = NULL;
        size_t n = 0;
        assert_int_equal(storage_list(st, "tenants/", &keys, &n), ERR_UNAVAIL);
        assert_null(keys);
    }

    char detail[BROKER_MAX_DETAIL];
    Pb__StorageGetArgs args = PB__STORAGE_GET_ARGS__INIT;
    args.key = (char *)"config";
    ProtobufCMessage *reply = NULL;
    assert_int_equal(broker_call(NULL, "/pb.Storage/Get", &args.base,
                                 &pb__storage_get_reply__descriptor, &reply, detail),
                     ERR_UNAVAIL);
    assert_null(reply);
    assert_non_null(strstr(detail, "no broker connection"));
}

static void test_call_to_dead_socket_fails(void **state)
{
    (void)state;
    char path[] = "/tmp/byok-test-broker-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    unlink(path); /* nobody listens there */
    assert_int_equal(broker_conninfo_put(5, "unix", path), ERR_OK);
    assert_int_equal(broker_connect(5, 0), ERR_OK);
    char detail[BROKER_MAX_DETAIL];
    Pb__StorageGetArgs args = PB__STORAGE_GET_ARGS__INIT;
    args.key = (char *)"config";
    ProtobufCMessage *reply = NULL;
    /* Not wait-for-ready: a dead broker is an error at once, not a hang until the deadline. */
    assert_int_equal(broker_call(NULL, "/pb.Storage/Get", &args.base,
                                 &pb__storage_get_reply__descriptor, &reply, detail),
                     ERR_UNAVAIL);
    assert_null(reply);
    unsigned char *val = NULL;
    size_t len = 0;
    assert_int_equal(storage_get(storage_grpc(), "config", &val, &len), ERR_UNAVAIL);
    broker_close();
    broker_reset();
}

static int group_setup(void **state)
{
    (void)state;
    log_init(stderr, LOGL_OFF);
    if (secret_heap_init((size_t)64 * 1024) != ERR_OK || tlsgen_make(&tls) != ERR_OK) {
        return -1;
    }
    grpc_init();
    /* Our own certificate stands in for Vault's as the trusted root. */
    return broker_init(&tls, tls.cert_pem) == ERR_OK ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    broker_close();
    grpc_shutdown();
    tlsgen_done(&tls);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conninfo_bad_input),
        cmocka_unit_test(test_connect_unknown_id_times_out),
        cmocka_unit_test(test_pending_table_drops_oldest),
        cmocka_unit_test(test_conninfo_after_setup_started),
        cmocka_unit_test(test_storage_without_broker_is_unavailable),
        cmocka_unit_test(test_call_to_dead_socket_fails),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
