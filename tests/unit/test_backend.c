/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for plugin/backend: framework outcomes become exactly the
 * HandleRequestReply shapes Vault expects (docs/vault-plugin-protocol.md §9):
 * Response.data is always a JSON object text, 400s are error responses,
 * unsupported path/operation and denial are the sentinel ProtoError types,
 * and the request-side limits hold at the limit and one past it.
 * The handlers are called directly with packed protobuf, as rpc.c does.
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

#include "common/log.h"
#include "common/secret.h"
#include "plugin/backend.h"
#include "plugin/byok.h"
#include "plugin/framework.h"
#include "plugin/rpc.h"
#include "sdk/plugin/pb/backend.pb-c.h"

#define CANARY "sk-canary-4f1d2c3b5a69788796a5b4c3d2e1f0aa"

static Pb__HandleRequestReply *pack_unpack(const struct fw_response *resp)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(backend_reply_pack(resp, &buf, &len), ERR_OK);
    Pb__HandleRequestReply *r = pb__handle_request_reply__unpack(NULL, len, buf);
    free(buf);
    assert_non_null(r);
    return r;
}

/* Response.data must parse as a JSON object (Vault unmarshals it into a map). */
static json_t *data_object(const Pb__HandleRequestReply *r)
{
    assert_non_null(r->response);
    json_error_t e;
    json_t *j = json_loads(r->response->data, 0, &e);
    assert_non_null(j);
    assert_true(json_is_object(j));
    return j;
}

static void test_ok_with_data(void **state)
{
    (void)state;
    struct fw_response resp;
    fw_response_init(&resp);
    fw_reply(&resp, json_pack("{sisss[s]}", "ttl", 300, "name", "x", "list", "a"));
    Pb__HandleRequestReply *r = pack_unpack(&resp);
    assert_null(r->err);
    json_t *j = data_object(r);
    assert_int_equal(json_integer_value(json_object_get(j, "ttl")), 300);
    assert_string_equal(json_string_value(json_object_get(j, "name")), "x");
    assert_int_equal(r->response->n_warnings, 0);
    json_decref(j);
    pb__handle_request_reply__free_unpacked(r, NULL);
    fw_response_done(&resp);
}

static void test_ok_without_data_is_nil_response(void **state)
{
    (void)state;
    struct fw_response resp;
    fw_response_init(&resp);
    Pb__HandleRequestReply *r = pack_unpack(&resp);
    /* nil response: Vault answers 404 for read, 204 otherwise */
    assert_null(r->response);
    assert_null(r->err);
    pb__handle_request_reply__free_unpacked(r, NULL);
    fw_response_done(&resp);
}

static void test_warnings_alone_get_an_empty_object(void **state)
{
    (void)state;
    struct fw_response resp;
    fw_response_init(&resp);
    fw_warn(&resp, "Endpoint ignored these unrecognized parameters: [%s]", "foo");
    Pb__HandleRequestReply *r = pack_unpack(&resp);
    assert_null(r->err);
    assert_non_null(r->response);
    assert_string_equal(r->response->data, "{}");
    assert_int_equal(r->response->n_warnings, 1);
    assert_string_equal(r->response->warnings[0],
                        "Endpoint ignored these unrecognized parameters: [foo]");
    pb__handle_request_reply__free_unpacked(r, NULL);
    fw_response_done(&resp);
}

static void test_warnings_capped(void **state)
{
    (void)state;
    for (int n = BACKEND_MAX_WARNINGS; n <= BACKEND_MAX_WARNINGS + 1; n++) {
        struct fw_response resp;
        fw_response_init(&resp);
        fw_reply(&resp, json_object());
        for (int i = 0; i < n; i++) {
            fw_warn(&resp, "w%d", i);
        }
        Pb__HandleRequestReply *r = pack_unpack(&resp);
        assert_int_equal(r->response->n_warnings, BACKEND_MAX_WARNINGS);
        assert_string_equal(r->response->warnings[0], "w0");
        pb__handle_request_reply__free_unpacked(r, NULL);
        fw_response_done(&resp);
    }
}

static void test_bad_request_is_error_response(void **state)
{
    (void)state;
    struct fw_response resp;
    fw_response_init(&resp);
    fw_error(&resp, "missing required field '%s'", "key_value");
    fw_warn(&resp, "a warning");
    Pb__HandleRequestReply *r = pack_unpack(&resp);
    /* 400 comes from the error response; a ProtoError without response would be a 500. */
    assert_null(r->err);
    json_t *j = data_object(r);
    assert_int_equal(json_object_size(j), 1);
    assert_string_equal(json_string_value(json_object_get(j, "error")),
                        "missing required field 'key_value'");
    assert_int_equal(r->response->n_warnings, 1);
    json_decref(j);
    pb__handle_request_reply__free_unpacked(r, NULL);
    fw_response_done(&resp);
}

static void test_sentinel_errors(void **state)
{
    (void)state;
    static const struct {
        enum fw_status st;
        uint32_t type;
        const char *msg;
    } cases[] = {
        {FW_UNSUPPORTED_OPERATION, 5, "unsupported operation"},
        {FW_UNSUPPORTED_PATH, 6, "unsupported path"},
        {FW_PERMISSION_DENIED, 8, "permission denied"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fw_response resp;
        fw_response_init(&resp);
        resp.status = cases[i].st;
        Pb__HandleRequestReply *r = pack_unpack(&resp);
        assert_null(r->response);
        assert_non_null(r->err);
        assert_int_equal(r->err->err_type, cases[i].type);
        assert_string_equal(r->err->err_msg, cases[i].msg);
        pb__handle_request_reply__free_unpacked(r, NULL);
        fw_response_done(&resp);
    }
}

static void test_coded_and_internal(void **state)
{
    (void)state;
    struct fw_response resp;
    fw_response_init(&resp);
    fw_error_coded(&resp, 409, "batch %s conflicts", "b1");
    Pb__HandleRequestReply *r = pack_unpack(&resp);
    assert_null(r->response);
    assert_int_equal(r->err->err_type, 3);
    assert_int_equal(r->err->err_code, 409);
    assert_string_equal(r->err->err_msg, "batch b1 conflicts");
    pb__handle_request_reply__free_unpacked(r, NULL);
    fw_response_done(&resp);

    fw_response_init(&resp);
    resp.status = FW_INTERNAL;
    r = pack_unpack(&resp);
    assert_null(r->response);
    assert_int_equal(r->err->err_type, 2);
    assert_true(strlen(r->err->err_msg) > 0);
    pb__handle_request_reply__free_unpacked(r, NULL);
    fw_response_done(&resp);
}

static void test_non_object_data_refused(void **state)
{
    (void)state;
    struct fw_response resp;
    fw_response_init(&resp);
    fw_reply(&resp, json_pack("[i]", 1)); /* Vault cannot unmarshal an array into its map */
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(backend_reply_pack(&resp, &buf, &len), ERR_INTERNAL);
    assert_null(buf);
    fw_response_done(&resp);
}

/* ---- handlers, called with packed requests ---- */

static Pb__HandleRequestReply *call_handle(const char *op, const char *path, const char *data)
{
    Pb__Request rq = PB__REQUEST__INIT;
    rq.operation = (char *)op;
    rq.path = (char *)path;
    rq.data = (char *)data;
    Pb__HandleRequestArgs args = PB__HANDLE_REQUEST_ARGS__INIT;
    args.request = &rq;
    size_t len = pb__handle_request_args__get_packed_size(&args);
    uint8_t *buf = malloc(len);
    pb__handle_request_args__pack(&args, buf);
    struct rpc_reply reply = {.status = GRPC_STATUS_OK};
    backend_handle_request(NULL, buf, len, &reply);
    free(buf);
    assert_int_equal(reply.status, GRPC_STATUS_OK);
    assert_true(reply.has_msg);
    Pb__HandleRequestReply *r = pb__handle_request_reply__unpack(NULL, GRPC_SLICE_LENGTH(reply.msg),
                                                                 GRPC_SLICE_START_PTR(reply.msg));
    grpc_slice_unref(reply.msg);
    assert_non_null(r);
    return r;
}

static void assert_error_response(Pb__HandleRequestReply *r, const char *needle)
{
    assert_null(r->err);
    json_t *j = data_object(r);
    const char *msg = json_string_value(json_object_get(j, "error"));
    assert_non_null(msg);
    assert_non_null(strstr(msg, needle));
    assert_null(strstr(msg, CANARY));
    json_decref(j);
}

static void test_handle_garbage_is_invalid_argument(void **state)
{
    (void)state;
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
    struct rpc_reply reply = {.status = GRPC_STATUS_OK};
    backend_handle_request(NULL, junk, sizeof(junk), &reply);
    assert_int_equal(reply.status, GRPC_STATUS_INVALID_ARGUMENT);
    assert_false(reply.has_msg);
}

static void test_handle_global_operations(void **state)
{
    (void)state;
    /* byok issues no leases: revoke and renew are "unsupported operation" (405). */
    static const char *const ops[] = {"revoke", "renew", "alias-lookahead", "no-such-op"};
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        Pb__HandleRequestReply *r = call_handle(ops[i], "config", "null");
        assert_null(r->response);
        assert_non_null(r->err);
        assert_int_equal(r->err->err_type, 5);
        pb__handle_request_reply__free_unpacked(r, NULL);
    }
}

static void test_handle_unknown_path(void **state)
{
    (void)state;
    Pb__HandleRequestReply *r = call_handle("read", "no/such/path", "null");
    assert_null(r->response);
    assert_int_equal(r->err->err_type, 6);
    pb__handle_request_reply__free_unpacked(r, NULL);
}

static void test_handle_bad_data(void **state)
{
    (void)state;
    Pb__HandleRequestReply *r = call_handle("update", "config", "[1,2]");
    assert_error_response(r, "JSON object");
    pb__handle_request_reply__free_unpacked(r, NULL);
    /* The parser's message would quote the input; the reply must not echo a key. */
    r = call_handle("update", "config", "{\"key_value\": \"" CANARY "\" oops}");
    assert_error_response(r, "not valid JSON");
    pb__handle_request_reply__free_unpacked(r, NULL);
    /* A NUL in a string (a key value pasted with one) is named as such; nothing is echoed. */
    r = call_handle("update", "config", "{\"key_value\": \"" CANARY "\\u0000x\"}");
    assert_error_response(r, "a string holds \\u0000 (NUL)");
    pb__handle_request_reply__free_unpacked(r, NULL);
}

/* jansson's allocator failing its nth call from now, counted as the plugin's allocator does. */
static long oom_countdown;

static void *oom_malloc(size_t size)
{
    if (oom_countdown > 0 && --oom_countdown == 0) {
        storage_json_alloc_failed();
        return NULL;
    }
    return malloc(size);
}

/*
 * Out of memory while the request's data is parsed: a 500, never a 400 (the
 * caller did nothing wrong; an agent drops a usage batch answered 400) nor a
 * document with a byte dropped.
 */
static void test_handle_data_out_of_memory(void **state)
{
    (void)state;
    oom_countdown = 1;
    json_set_alloc_funcs(oom_malloc, free);
    Pb__HandleRequestReply *r =
        call_handle("update", "config", "{\"default_budget_tier\": \"LOW\"}");
    json_set_alloc_funcs(malloc, free);
    oom_countdown = 0;
    assert_null(r->response);
    assert_non_null(r->err);
    assert_int_equal(r->err->err_type, 2);
    pb__handle_request_reply__free_unpacked(r, NULL);
}

/* A JSON object of exactly n bytes: {"p":"xxxx..."} padded. */
static char *object_of_size(size_t n)
{
    char *s = malloc(n + 1);
    memset(s, 'x', n);
    memcpy(s, "{\"p\":\"", 6);
    s[n - 2] = '"';
    s[n - 1] = '}';
    s[n] = '\0';
    return s;
}

static void test_handle_data_limit(void **state)
{
    (void)state;
    char *at = object_of_size((size_t)FW_MAX_DATA);
    /* At the limit the body is accepted and routed (an unknown path then gives 6). */
    Pb__HandleRequestReply *r = call_handle("update", "no/such/path", at);
    assert_non_null(r->err);
    assert_int_equal(r->err->err_type, 6);
    pb__handle_request_reply__free_unpacked(r, NULL);
    free(at);
    char *past = object_of_size(FW_MAX_DATA + 1);
    r = call_handle("update", "no/such/path", past);
    assert_error_response(r, "too large");
    pb__handle_request_reply__free_unpacked(r, NULL);
    free(past);
}

static void test_handle_path_limit(void **state)
{
    (void)state;
    char *path = malloc(FW_MAX_PATH + 2);
    memset(path, 'a', FW_MAX_PATH + 1);
    path[FW_MAX_PATH] = '\0';
    Pb__HandleRequestReply *r = call_handle("read", path, "null");
    assert_non_null(r->err);
    assert_int_equal(r->err->err_type, 6);
    pb__handle_request_reply__free_unpacked(r, NULL);
    path[FW_MAX_PATH] = 'a';
    path[FW_MAX_PATH + 1] = '\0';
    r = call_handle("read", path, "null");
    assert_error_response(r, "path too long");
    pb__handle_request_reply__free_unpacked(r, NULL);
    free(path);
}

static void test_existence_check_unknown_path(void **state)
{
    (void)state;
    Pb__Request rq = PB__REQUEST__INIT;
    rq.operation = (char *)"update";
    rq.path = (char *)"no/such/path";
    rq.data = (char *)"null";
    Pb__HandleExistenceCheckArgs args = PB__HANDLE_EXISTENCE_CHECK_ARGS__INIT;
    args.request = &rq;
    uint8_t buf[256];
    size_t len = pb__handle_existence_check_args__pack(&args, buf);
    struct rpc_reply reply = {.status = GRPC_STATUS_OK};
    backend_handle_existence_check(NULL, buf, len, &reply);
    assert_true(reply.has_msg);
    Pb__HandleExistenceCheckReply *r = pb__handle_existence_check_reply__unpack(
        NULL, GRPC_SLICE_LENGTH(reply.msg), GRPC_SLICE_START_PTR(reply.msg));
    grpc_slice_unref(reply.msg);
    assert_non_null(r);
    /* Vault treats type 6 as "no existence check", not as a failure. */
    assert_non_null(r->err);
    assert_int_equal(r->err->err_type, 6);
    pb__handle_existence_check_reply__free_unpacked(r, NULL);
}

static void test_type_and_special_paths(void **state)
{
    (void)state;
    struct rpc_reply reply = {.status = GRPC_STATUS_OK};
    backend_type(NULL, NULL, 0, &reply);
    Pb__TypeReply *t =
        pb__type_reply__unpack(NULL, GRPC_SLICE_LENGTH(reply.msg), GRPC_SLICE_START_PTR(reply.msg));
    grpc_slice_unref(reply.msg);
    assert_int_equal(t->type, 1); /* logical: a secrets engine */
    pb__type_reply__free_unpacked(t, NULL);

    reply = (struct rpc_reply){.status = GRPC_STATUS_OK};
    backend_special_paths(NULL, NULL, 0, &reply);
    Pb__SpecialPathsReply *sp = pb__special_paths_reply__unpack(NULL, GRPC_SLICE_LENGTH(reply.msg),
                                                                GRPC_SLICE_START_PTR(reply.msg));
    grpc_slice_unref(reply.msg);
    assert_non_null(sp->paths);
    assert_int_equal(sp->paths->n_seal_wrap_storage, 1);
    assert_string_equal(sp->paths->seal_wrap_storage[0], "kek/");
    pb__special_paths_reply__free_unpacked(sp, NULL);
}

static char *setup_with_options(size_t n)
{
    Pb__SetupArgs args = PB__SETUP_ARGS__INIT;
    size_t alloc_n = n > 0 ? n : 1; /* calloc(0) may return NULL */
    Pb__SetupArgs__ConfigEntry *entries = calloc(alloc_n, sizeof(*entries));
    Pb__SetupArgs__ConfigEntry **ptrs = calloc(alloc_n, sizeof(Pb__SetupArgs__ConfigEntry *));
    char(*keys)[32] = calloc(alloc_n, sizeof(*keys));
    for (size_t i = 0; i < n; i++) {
        entries[i] = (Pb__SetupArgs__ConfigEntry)PB__SETUP_ARGS__CONFIG_ENTRY__INIT;
        snprintf(keys[i], sizeof(keys[i]), "opt%zu", i);
        entries[i].key = keys[i];
        entries[i].value = (char *)"v";
        ptrs[i] = &entries[i];
    }
    args.n_config = n;
    args.config = ptrs;
    args.broker_id = 0; /* no broker: registration-like, must still succeed */
    size_t len = pb__setup_args__get_packed_size(&args);
    uint8_t *buf = malloc(len);
    pb__setup_args__pack(&args, buf);
    struct rpc_reply reply = {.status = GRPC_STATUS_OK};
    backend_setup(NULL, buf, len, &reply);
    free(buf);
    free(entries);
    free(ptrs);
    free(keys);
    assert_true(reply.has_msg);
    Pb__SetupReply *r = pb__setup_reply__unpack(NULL, GRPC_SLICE_LENGTH(reply.msg),
                                                GRPC_SLICE_START_PTR(reply.msg));
    grpc_slice_unref(reply.msg);
    assert_non_null(r);
    char *err = strdup(r->err);
    pb__setup_reply__free_unpacked(r, NULL);
    return err;
}

static void test_setup_option_limit(void **state)
{
    (void)state;
    char *err = setup_with_options(0);
    assert_string_equal(err, "");
    free(err);
    err = setup_with_options(BACKEND_MAX_CONFIG);
    assert_string_equal(err, "");
    free(err);
    err = setup_with_options(BACKEND_MAX_CONFIG + 1);
    assert_non_null(strstr(err, "too many mount options"));
    free(err);
}

static int group_setup(void **state)
{
    (void)state;
    log_init(stderr, LOGL_OFF);
    if (secret_heap_init((size_t)64 * 1024) != ERR_OK) {
        return -1;
    }
    struct byok *b = byok_new();
    if (b == NULL) {
        return -1;
    }
    backend_init(b);
    *state = b;
    return 0;
}

static int group_teardown(void **state)
{
    byok_free(*state);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ok_with_data),
        cmocka_unit_test(test_ok_without_data_is_nil_response),
        cmocka_unit_test(test_warnings_alone_get_an_empty_object),
        cmocka_unit_test(test_warnings_capped),
        cmocka_unit_test(test_bad_request_is_error_response),
        cmocka_unit_test(test_sentinel_errors),
        cmocka_unit_test(test_coded_and_internal),
        cmocka_unit_test(test_non_object_data_refused),
        cmocka_unit_test(test_handle_garbage_is_invalid_argument),
        cmocka_unit_test(test_handle_global_operations),
        cmocka_unit_test(test_handle_unknown_path),
        cmocka_unit_test(test_handle_bad_data),
        cmocka_unit_test(test_handle_data_out_of_memory),
        cmocka_unit_test(test_handle_data_limit),
        cmocka_unit_test(test_handle_path_limit),
        cmocka_unit_test(test_existence_check_unknown_path),
        cmocka_unit_test(test_type_and_special_paths),
        cmocka_unit_test(test_setup_option_limit),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
