/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for plugin/framework.c: routing (table order, list paths, named
 * segments and their validation), field coercion for every type, required
 * fields and defaults, warnings, operation statuses, help and OpenAPI, and
 * every limit at and one past it.
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

#include "plugin/framework.h"

#define CANARY "sk-CANARY-framework-0123456789abcdef"

/* ---- a test engine ---------------------------------------------------------------- */

static int calls_first, calls_second;

/* Replies {"fields": <fields>, "provided": <provided>}: what the handler saw. */
static enum err echo(struct fw_request *req, struct fw_response *resp)
{
    fw_reply(resp, json_pack("{s:O, s:O}", "fields", req->fields, "provided", req->provided));
    return ERR_OK;
}

static enum err first(struct fw_request *req, struct fw_response *resp)
{
    calls_first++;
    return echo(req, resp);
}

static enum err second(struct fw_request *req, struct fw_response *resp)
{
    calls_second++;
    return echo(req, resp);
}

static enum err fails(struct fw_request *req, struct fw_response *resp)
{
    fw_reply(resp, json_pack("{s:s}", "partial", "data"));
    return ERR_STORAGE;
}

static enum err list_items(struct fw_request *req, struct fw_response *resp)
{
    fw_reply(resp, json_pack("{s:[ss]}", "keys", "a", "b/"));
    return ERR_OK;
}

static bool exists_answer;
static enum err exists_fn(struct fw_request *req, bool *ret_exists)
{
    /* The check sees validated fields too. */
    assert_non_null(fw_str(req, "name"));
    *ret_exists = exists_answer;
    return ERR_OK;
}

static const struct fw_field typed_fields[] = {
    {.name = "s", .type = FW_TYPE_STRING, .description = "a string"},
    {.name = "short", .type = FW_TYPE_STRING, .max_len = 4},
    {.name = "secret", .type = FW_TYPE_SECRET, .max_len = 40},
    {.name = "i", .type = FW_TYPE_INT},
    {.name = "ranged", .type = FW_TYPE_INT, .min = 1, .max = 100},
    {.name = "f", .type = FW_TYPE_FLOAT},
    {.name = "b", .type = FW_TYPE_BOOL},
    {.name = "d", .type = FW_TYPE_DURATION},
    {.name = "dr", .type = FW_TYPE_DURATION, .min = 1, .max = 86400},
    {.name = "l", .type = FW_TYPE_STRINGS},
    {.name = "l2", .type = FW_TYPE_STRINGS, .max_len = 2},
    {.name = "m", .type = FW_TYPE_MAP},
    {.name = "kv", .type = FW_TYPE_KVPAIRS},
    {.name = "j", .type = FW_TYPE_JSON},
    {.name = "def_s", .type = FW_TYPE_STRING, .def = "hello"},
    {.name = "def_d", .type = FW_TYPE_DURATION, .def = "5m"},
    {.name = "def_l", .type = FW_TYPE_STRINGS, .def = "x,y"},
    {.name = NULL},
};

static const struct fw_field req_fields[] = {
    {.name = "must", .type = FW_TYPE_STRING, .required = true},
    {.name = "name", .type = FW_TYPE_STRING},
    {.name = NULL},
};

static const struct fw_path table_a[] = {
    {.pattern = "typed",
     .fields = typed_fields,
     .handlers = {[FW_OP_READ] = echo, [FW_OP_UPDATE] = echo},
     .synopsis = "Typed fields.",
     .description = "Every field type."},
    {.pattern = "items/", .handlers = {[FW_OP_LIST] = list_items}, .synopsis = "List items."},
    {.pattern = "items/{name}",
     .fields = req_fields,
     .handlers = {[FW_OP_READ] = first, [FW_OP_UPDATE] = echo, [FW_OP_CREATE] = echo},
     .exists = exists_fn,
     .synopsis = "One item."},
    {.pattern = NULL},
};

static const struct fw_path table_b[] = {
    /* Shadowed by items/{name} in table_a: must never be called for valid names. */
    {.pattern = "items/{other}", .handlers = {[FW_OP_READ] = second}},
    {.pattern = "raw/{blob:any}", .handlers = {[FW_OP_READ] = echo}, .takes_arbitrary_input = true},
    {.pattern = "t/{tenant}/k/{provider}/{key_type}", .handlers = {[FW_OP_READ] = echo}},
    {.pattern = "t/{tenant}/k/", .handlers = {[FW_OP_LIST] = list_items}},
    {.pattern = "broken", .handlers = {[FW_OP_READ] = fails}},
    /* FW_MAX_SEGMENTS named segments: usable; one more: the entry never matches. */
    {.pattern = "s8/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}", .handlers = {[FW_OP_READ] = echo}},
    {.pattern = "s9/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}", .handlers = {[FW_OP_READ] = echo}},
    {.pattern = NULL},
};

static const struct fw_path *const tables[] = {table_a, table_b, NULL};

struct call {
    struct fw_request req;
    struct fw_response resp;
    enum err rc;
    json_t *data;
};

static void call_run(struct call *c, enum fw_op op, const char *path, const char *data_json)
{
    memset(&c->req, 0, sizeof(c->req));
    c->data =
        data_json != NULL ? json_loads(data_json, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL) : NULL;
    if (data_json != NULL) {
        assert_non_null(c->data);
    }
    c->req.op = op;
    c->req.path = path;
    c->req.data = c->data;
    fw_response_init(&c->resp);
    c->rc = fw_handle(tables, &c->req, &c->resp);
}

static void call_done(struct call *c)
{
    fw_response_done(&c->resp);
    json_decref(c->data);
    /* The framework owns and drops fields/provided before returning. */
    assert_null(c->req.fields);
    assert_null(c->req.provided);
}

static json_t *field(struct call *c, const char *name)
{
    return json_object_get(json_object_get(c->resp.data, "fields"), name);
}

static bool warned(const struct call *c, const char *text)
{
    size_t i;
    json_t *w;
    json_array_foreach(c->resp.warnings, i, w)
    {
        if (strcmp(json_string_value(w), text) == 0) {
            return true;
        }
    }
    return false;
}

/* ---- names, ops, durations -------------------------------------------------------- */

static void test_name_valid(void **state)
{
    (void)state;
    char max[FW_NAME_MAX + 2];
    memset(max, 'a', FW_NAME_MAX);
    max[FW_NAME_MAX] = '\0';
    assert_true(fw_name_valid(max)); /* at the limit */
    max[FW_NAME_MAX] = 'a';
    max[FW_NAME_MAX + 1] = '\0';
    assert_false(fw_name_valid(max)); /* one past */
    const char *good[] = {"a", "0", "acme", "acme-1_x", "9z"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_true(fw_name_valid(good[i]));
    }
    const char *bad[] = {"", "A", "-a", "_a", "a.b", "a/b", "a b", "acmé", "a\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_false(fw_name_valid(bad[i]));
    }
    assert_false(fw_name_valid(NULL));
}

/* Free text for people: no control, separator or bidirectional characters; other Unicode is fine.
 */
static void test_text_ok(void **state)
{
    (void)state;
    const char *good[] = {"",
                          "OpenAI (EU project)",
                          "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac",
                          "emoji \xf0\x9f\x94\x91",
                          "\xc2\xa0nbsp",
                          "dash \xe2\x80\x94"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_true(fw_text_ok(good[i]));
    }
    const char *bad[] = {
        "tab\tx",           "nl\nx",
        "del\x7fx",         "nel\xc2\x85x", /* C1 */
        "c1\xc2\x9fx",      "ls\xe2\x80\xa8x",
        "ps\xe2\x80\xa9x", /* separators */
        "rlo\xe2\x80\xaex", "lre\xe2\x80\xaax",
        "rlm\xe2\x80\x8fx", /* bidi */
        "lri\xe2\x81\xa6x", "pdi\xe2\x81\xa9x",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_false(fw_text_ok(bad[i]));
    }
    /* A lead byte at the end of the string is read safely. */
    assert_true(fw_text_ok("x\xc2"));
    assert_true(fw_text_ok("x\xe2\x80"));
}

static void test_op_names(void **state)
{
    (void)state;
    for (int op = 0; op < FW_OP__COUNT; op++) {
        assert_int_equal(fw_op_parse(fw_op_name((enum fw_op)op)), op);
    }
    assert_int_equal(fw_op_parse("read"), FW_OP_READ);
    assert_int_equal(fw_op_parse("list"), FW_OP_LIST);
    assert_int_equal(fw_op_parse("revoke"), -1);
    assert_int_equal(fw_op_parse("renew"), -1);
    assert_int_equal(fw_op_parse("rollback"), -1);
    assert_int_equal(fw_op_parse(""), -1);
    assert_int_equal(fw_op_parse(NULL), -1);
}

static void test_duration_parse(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int64_t want;
    } good[] = {
        {"30d", INT64_C(30) * 86400},
        {"720h", INT64_C(720) * 3600},
        {"90", 90},
        {"90s", 90},
        {"15m", 900},
        {"1h30m", 5400},
        {"0", 0},
        {"1d1s", 86401},
        {"9223372036854775807", INT64_MAX},
        {"1.5h", 5400},
        {"0.5d", 43200},
        {"1h0.5m", 3630},
        {".5m", 30},
        {"5.m", 300},
        {"2h45m30.5s", 9930},
        {"1500ms", 1},
        {"500ms", 0},
        {"999999999ns", 0},
        {"1000000000ns", 1},
        {"1000000us", 1},
        {"1000000\xc2\xb5s", 1},
        {"0.0000000001s", 0},
        {"0.5s0.5s", 1},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        int64_t got = -1;
        assert_int_equal(fw_duration_parse(good[i].in, &got), ERR_OK);
        assert_int_equal(got, good[i].want);
    }
    const char *bad[] = {"",
                         "-5",
                         "1.5",
                         ".",
                         ".h",
                         "1..5h",
                         "5mss",
                         "10x",
                         "h",
                         "1h30",
                         " 5",
                         "5 ",
                         "+5",
                         "1e3",
                         "d30",
                         "30dd",
                         "9223372036854775808",
                         "106751991167301d",
                         NULL};
    for (size_t i = 0; bad[i] != NULL; i++) {
        int64_t got = 77;
        assert_int_equal(fw_duration_parse(bad[i], &got), ERR_INVAL);
        assert_int_equal(got, 77); /* out-parameter untouched on failure */
    }
    int64_t got;
    assert_int_equal(fw_duration_parse(NULL, &got), ERR_INVAL);
}

/* ---- routing ------------------------------------------------------------------------ */

static void test_route_list_path_trailing_slash(void **state)
{
    (void)state;
    const char *paths[] = {"items", "items/"};
    for (size_t i = 0; i < 2; i++) {
        struct call c;
        call_run(&c, FW_OP_LIST, paths[i], NULL);
        assert_int_equal(c.rc, ERR_OK);
        assert_int_equal(c.resp.status, FW_OK);
        assert_int_equal(json_array_size(json_object_get(c.resp.data, "keys")), 2);
        call_done(&c);
    }
    /* Only one trailing slash, and the literal must match exactly. */
    const char *nomatch[] = {"items//", "item", "itemsx", "/items", "", "typed/"};
    for (size_t i = 0; i < sizeof(nomatch) / sizeof(nomatch[0]); i++) {
        struct call c;
        call_run(&c, FW_OP_LIST, nomatch[i], NULL);
        assert_int_equal(c.resp.status, FW_UNSUPPORTED_PATH);
        assert_null(c.resp.data);
        call_done(&c);
    }
}

static void test_route_named_segments(void **state)
{
    (void)state;
    struct call c;
    calls_first = calls_second = 0;
    call_run(&c, FW_OP_READ, "items/widget-1", NULL);
    assert_int_equal(c.resp.status, FW_OK);
    assert_string_equal(json_string_value(field(&c, "name")), "widget-1");
    assert_true(json_is_true(json_object_get(json_object_get(c.resp.data, "provided"), "name")));
    assert_int_equal(calls_first, 1); /* table order: first match wins */
    assert_int_equal(calls_second, 0);
    call_done(&c);

    call_run(&c, FW_OP_READ, "t/acme/k/openai/production", NULL);
    assert_int_equal(c.resp.status, FW_OK);
    assert_string_equal(json_string_value(field(&c, "tenant")), "acme");
    assert_string_equal(json_string_value(field(&c, "provider")), "openai");
    assert_string_equal(json_string_value(field(&c, "key_type")), "production");
    call_done(&c);

    call_run(&c, FW_OP_LIST, "t/acme/k/", NULL);
    assert_int_equal(c.resp.status, FW_OK);
    call_done(&c);

    /* Too many or too few segments. */
    const char *nomatch[] = {"items/a/b", "t/acme/k/openai", "t/acme/k/openai/p/x", "t//k/a/b"};
    for (size_t i = 0; i < sizeof(nomatch) / sizeof(nomatch[0]); i++) {
        call_run(&c, FW_OP_READ, nomatch[i], NULL);
        assert_int_equal(c.resp.status, FW_UNSUPPORTED_PATH);
        call_done(&c);
    }
}

static void test_route_invalid_name_is_400_naming_field(void **state)
{
    (void)state;
    struct call c;
    calls_first = calls_second = 0;
    call_run(&c, FW_OP_READ, "t/Acme/k/openai/production", NULL);
    assert_int_equal(c.resp.status, FW_BAD_REQUEST);
    assert_non_null(strstr(c.resp.message, "'tenant'"));
    call_done(&c);

    call_run(&c, FW_OP_READ, "t/acme/k/openai/prod.uction", NULL);
    assert_int_equal(c.resp.status, FW_BAD_REQUEST);
    assert_non_null(strstr(c.resp.message, "'key_type'"));
    call_done(&c);

    char longname[FW_NAME_MAX + 8];
    memset(longname, 'a', sizeof(longname));
    memcpy(longname, "items/", 6);
    longname[6 + FW_NAME_MAX] = '\0'; /* a name of exactly FW_NAME_MAX */
    call_run(&c, FW_OP_READ, longname, NULL);
    assert_int_equal(c.resp.status, FW_OK);
    call_done(&c);
    longname[6 + FW_NAME_MAX] = 'a';
    longname[6 + FW_NAME_MAX + 1] = '\0'; /* one past */
    call_run(&c, FW_OP_READ, longname, NULL);
    assert_int_equal(c.resp.status, FW_BAD_REQUEST);
    assert_non_null(strstr(c.resp.message, "'name'"));
    call_done(&c);
    assert_int_equal(calls_second, 0);
}

static void test_route_any_segment(void **state)
{
    (void)state;
    struct call c;
    call_run(&c, FW_OP_READ, "raw/Any.Thing@1", NULL);
    assert_int_equal(c.resp.status, FW_OK);
    assert_string_equal(json_string_value(field(&c, "blob")), "Any.Thing@1");
    call_done(&c);
    call_run(&c, FW_OP_READ, "raw/", NULL); /* empty segment never matches */
    assert_int_equal(c.resp.status, FW_UNSUPPORTED_PATH);
    call_done(&c);
}

static void test_route_segment_limit(void **state)
{
    (void)state;
    _Static_assert(FW_MAX_SEGMENTS == 8, "the s8/s9 test patterns assume 8");
    struct call c;
    call_run(&c, FW_OP_READ, "s8/a/b/c/d/e/f/g/h", NULL);
    assert_int_equal(c.resp.status, FW_OK);
    assert_string_equal(json_string_value(field(&c, "h")), "h");
    call_done(&c);
    call_run(&c, FW_OP_READ, "s9/a/b/c/d/e/f/g/h/i", NULL);
    assert_int_equal(c.resp.status, FW_UNSUPPORTED_PATH);
    call_done(&c);
}

static void test_list_parameter_is_not_unknown(void **state)
{
    (void)state;
    /* Some Vault versions pass ?list=true through as data on list requests. */
    struct call c;
    call_run(&c, FW_OP_LIST, "items/", "{\"list\": \"true\"}");
    assert_int_equal(c.resp.status, FW_OK);
    assert_null(c.resp.warnings);
    call_done(&c);
}

static void test_route_path_limit(void **state)
{
    (void)state;
    char *path = malloc(FW_MAX_PATH + 2);
    assert_non_null(path);
    memcpy(path, "raw/", 4);
    memset(path + 4, 'x', FW_MAX_PATH - 4);
    path[FW_MAX_PATH] = '\0'; /* at the limit */
    struct call c;
    call_run(&c, FW_OP_READ, path, NULL);
    assert_int_equal(c.resp.status, FW_OK);
    call_done(&c);
    path[FW_MAX_PATH] = 'x';
    path[FW_MAX_PATH + 1] = '\0'; /* one past */
    call_run(&c, FW_OP_READ, path, NULL);
    assert_int_equal(c.resp.status, FW_BAD_REQUEST);
    assert_non_null(strstr(c.resp.message, "path"));
    call_done(&c);
    free(path);
}

static void test_unsupported_operation_and_path(void **state)
{
    (void)state;
    struct call c;
    call_run(&c, FW_OP_DELETE, "items/x", NULL);
    assert_int_equal(c.rc, ERR_OK);
    assert_int_equal(c.resp.status, FW_UNSUPPORTED_OPERATION);
    call_done(&c);
    call_run(&c, FW_OP_PATCH, "typed", NULL);
    assert_int_equal(c.resp.status, FW_UNSUPPORTED_OPERATION);
    call_done(&c);
    call_run(&c, FW_OP_READ, "nowhere", NULL);
    assert_int_equal(c.resp.status, FW_UNSUPPORTED_PATH);
    call_done(&c);
    call_run(&c, (enum fw_op)99, "typed", NULL);
    assert_int_equal(c.resp.status, FW_UNSUPPORTED_OPERATION);
    call_done(&c);
}

static void test_handler_failure_is_internal(void **state)
{
    (void)state;
    struct call c;
    call_run(&c, FW_OP_READ, "broken", NULL);
    assert_int_equal(c.rc, ERR_STORAGE);
    assert_int_equal(c.resp.status, FW_INTERNAL);
    assert_null(c.resp.data); /* partial data is dropped */
    assert_string_equal(c.resp.message, "internal error");
    call_done(&c);
}

/* ---- fields ------------------------------------------------------------------------- */

struct coerce_case {
    const char *body; /* JSON object */
    const char *name;
    const char *want; /* JSON of the coerced value, or NULL for a 400 naming the field */
};

static const struct coerce_case coerce_cases[] = {
    {"{\"s\": \"text\"}", "s", "\"text\""},
    {"{\"s\": 42}", "s", "\"42\""},
    {"{\"s\": true}", "s", "\"true\""},
    {"{\"s\": 1.5}", "s", "\"1.5\""},
    {"{\"s\": 0.1}", "s", "\"0.1\""},
    {"{\"s\": [1]}", "s", NULL},
    {"{\"s\": {}}", "s", NULL},
    {"{\"s\": \"a\\u0000b\"}", "s", NULL},
    {"{\"short\": \"abcd\"}", "short", "\"abcd\""}, /* at max_len */
    {"{\"short\": \"abcde\"}", "short", NULL},      /* one past */
    {"{\"i\": 10}", "i", "10"},
    {"{\"i\": \"10\"}", "i", "10"},
    {"{\"i\": \"-3\"}", "i", "-3"},
    {"{\"i\": 10.0}", "i", "10"},
    {"{\"i\": 10.5}", "i", NULL},
    {"{\"i\": \"10.5\"}", "i", NULL},
    {"{\"i\": \"ten\"}", "i", NULL},
    {"{\"i\": \"\"}", "i", NULL},
    {"{\"i\": \"99999999999999999999\"}", "i", NULL},
    {"{\"i\": true}", "i", NULL},
    {"{\"ranged\": 1}", "ranged", "1"},
    {"{\"ranged\": 100}", "ranged", "100"},
    {"{\"ranged\": 0}", "ranged", NULL},
    {"{\"ranged\": 101}", "ranged", NULL},
    {"{\"f\": 1.5}", "f", "1.5"},
    {"{\"f\": 2}", "f", "2.0"},
    {"{\"f\": \"2.25\"}", "f", "2.25"},
    {"{\"f\": \"nan\"}", "f", NULL},
    {"{\"f\": \"inf\"}", "f", NULL},
    {"{\"f\": \"x\"}", "f", NULL},
    /* Go's ParseFloat syntax for decimals only: what strtod adds beyond it is refused. */
    {"{\"f\": \"-1.5e3\"}", "f", "-1500.0"},
    {"{\"f\": \".5\"}", "f", "0.5"},
    {"{\"f\": \"5.\"}", "f", "5.0"},
    {"{\"f\": \"+7E-1\"}", "f", "0.7"},
    {"{\"f\": \"0x10\"}", "f", NULL},
    {"{\"f\": \"0x1p4\"}", "f", NULL},
    {"{\"f\": \" 5\"}", "f", NULL},
    {"{\"f\": \"5 \"}", "f", NULL},
    {"{\"f\": \"infinity\"}", "f", NULL},
    {"{\"f\": \"-NaN\"}", "f", NULL},
    {"{\"f\": \".\"}", "f", NULL},
    {"{\"f\": \"1e\"}", "f", NULL},
    {"{\"f\": \"1e+\"}", "f", NULL},
    {"{\"f\": \"1_000\"}", "f", NULL},
    {"{\"f\": false}", "f", NULL},
    {"{\"b\": true}", "b", "true"},
    {"{\"b\": false}", "b", "false"},
    {"{\"b\": \"true\"}", "b", "true"},
    {"{\"b\": \"false\"}", "b", "false"},
    {"{\"b\": \"1\"}", "b", "true"},
    {"{\"b\": \"0\"}", "b", "false"},
    {"{\"b\": 1}", "b", "true"},
    {"{\"b\": \"yes\"}", "b", NULL},
    {"{\"b\": 2}", "b", NULL},
    {"{\"d\": \"30d\"}", "d", "2592000"},
    {"{\"d\": \"720h\"}", "d", "2592000"},
    {"{\"d\": \"90\"}", "d", "90"},
    {"{\"d\": 90}", "d", "90"},
    {"{\"d\": \"15m\"}", "d", "900"},
    {"{\"d\": \"1.5h\"}", "d", "5400"},
    {"{\"d\": \"1.5\"}", "d", NULL},
    {"{\"d\": \"soon\"}", "d", NULL},
    {"{\"d\": -1}", "d", NULL},
    {"{\"d\": \"-1\"}", "d", NULL},
    {"{\"dr\": \"24h\"}", "dr", "86400"},
    {"{\"dr\": \"1s\"}", "dr", "1"},
    {"{\"dr\": \"86401\"}", "dr", NULL},
    {"{\"dr\": 0}", "dr", NULL},
    {"{\"l\": [\"a\", \"b\"]}", "l", "[\"a\", \"b\"]"},
    {"{\"l\": \"a, b,,c \"}", "l", "[\"a\", \"b\", \"c\"]"},
    {"{\"l\": \"\"}", "l", "[]"},
    {"{\"l\": [1, \"x\"]}", "l", "[\"1\", \"x\"]"},
    {"{\"l\": [[\"nested\"]]}", "l", NULL},
    {"{\"l\": {}}", "l", NULL},
    {"{\"l2\": [\"a\", \"b\"]}", "l2", "[\"a\", \"b\"]"}, /* at max_len items */
    {"{\"l2\": [\"a\", \"b\", \"c\"]}", "l2", NULL},      /* one past */
    {"{\"l2\": \"a,b,c\"}", "l2", NULL},
    {"{\"m\": {\"k\": \"v\"}}", "m", "{\"k\": \"v\"}"},
    {"{\"m\": [\"k\"]}", "m", NULL},
    {"{\"m\": \"k=v\"}", "m", NULL},
    /* An object or array as a JSON string, as `vault write path m='{...}'` sends it. */
    {"{\"m\": \" {\\\"k\\\": \\\"v\\\"}\"}", "m", "{\"k\": \"v\"}"},
    {"{\"m\": \"[\\\"k\\\"]\"}", "m", NULL},
    {"{\"m\": \"{\\\"k\\\": \"}", "m", NULL},
    {"{\"m\": \"{\\\"k\\\": 1, \\\"k\\\": 2}\"}", "m", NULL}, /* duplicate key */
    /* key=value pairs as the CLI sends `kv=a=1` (Vault's TypeKVPairs), or an object. */
    {"{\"kv\": \"a=1\"}", "kv", "{\"a\": \"1\"}"},
    {"{\"kv\": \"a=1, b=x=y,a=2\"}", "kv", "{\"a\": \"2\", \"b\": \"x=y\"}"},
    {"{\"kv\": [\"a=1,2\", \"b=\"]}", "kv", "{\"a\": \"1,2\", \"b\": \"\"}"},
    {"{\"kv\": {\"a\": \"1\"}}", "kv", "{\"a\": \"1\"}"},
    {"{\"kv\": \" {\\\"a\\\": \\\"1\\\"}\"}", "kv", "{\"a\": \"1\"}"},
    {"{\"kv\": \"\"}", "kv", "{}"},
    {"{\"kv\": \" [\\\"a=1,2\\\", \\\"b=2\\\"]\"}", "kv", "{\"a\": \"1,2\", \"b\": \"2\"}"},
    {"{\"kv\": \"[\\\"a=1\\\"\"}", "kv", NULL},
    {"{\"kv\": \"a\"}", "kv", NULL},
    {"{\"kv\": \"=1\"}", "kv", NULL},
    {"{\"kv\": [\"a=1\", 2]}", "kv", NULL},
    {"{\"kv\": 5}", "kv", NULL},
    {"{\"j\": [1, {\"a\": null}]}", "j", "[1, {\"a\": null}]"},
    {"{\"j\": \"[1, {\\\"a\\\": null}]\"}", "j", "[1, {\"a\": null}]"},
    {"{\"j\": \"plain text\"}", "j", "\"plain text\""},
};

static void test_field_coercion_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(coerce_cases) / sizeof(coerce_cases[0]); i++) {
        const struct coerce_case *tc = &coerce_cases[i];
        struct call c;
        call_run(&c, FW_OP_UPDATE, "typed", tc->body);
        if (tc->want == NULL) {
            if (c.resp.status != FW_BAD_REQUEST) {
                fail_msg("case %zu (%s): expected a 400", i, tc->body);
            }
            char needle[64];
            snprintf(needle, sizeof(needle), "invalid value for field '%s': ", tc->name);
            if (strstr(c.resp.message, needle) == NULL) {
                fail_msg("case %zu: message '%s' does not name field %s", i, c.resp.message,
                         tc->name);
            }
        } else {
            if (c.resp.status != FW_OK) {
                fail_msg("case %zu (%s): status %d message %s", i, tc->body, c.resp.status,
                         c.resp.message);
            }
            json_t *want = json_loads(tc->want, JSON_DECODE_ANY, NULL);
            assert_non_null(want);
            json_t *got = field(&c, tc->name);
            if (!json_equal(want, got)) {
                char *g = json_dumps(got, JSON_ENCODE_ANY);
                fail_msg("case %zu (%s): got %s want %s", i, tc->body, g, tc->want);
            }
            json_decref(want);
            assert_true(
                json_is_true(json_object_get(json_object_get(c.resp.data, "provided"), tc->name)));
        }
        call_done(&c);
    }
}

static void test_field_string_default_limit(void **state)
{
    (void)state;
    /* FW_MAX_STRING applies when the field sets no max_len. */
    char *body = malloc(FW_MAX_STRING + 32);
    assert_non_null(body);
    int n = snprintf(body, FW_MAX_STRING + 32, "{\"s\": \"");
    memset(body + n, 'a', FW_MAX_STRING);
    memcpy(body + n + FW_MAX_STRING, "\"}", sizeof("\"}"));
    struct call c;
    call_run(&c, FW_OP_UPDATE, "typed", body);
    assert_int_equal(c.resp.status, FW_OK);
    assert_int_equal(json_string_length(field(&c, "s")), FW_MAX_STRING);
    call_done(&c);
    n = snprintf(body, FW_MAX_STRING + 32, "{\"s\": \"");
    memset(body + n, 'a', FW_MAX_STRING + 1);
    memcpy(body + n + FW_MAX_STRING + 1, "\"}", sizeof("\"}"));
    call_run(&c, FW_OP_UPDATE, "typed", body);
    assert_int_equal(c.resp.status, FW_BAD_REQUEST);
    assert_non_null(strstr(c.resp.message, "'s'"));
    call_done(&c);
    free(body);
}

static void test_field_list_default_limit(void **state)
{
    (void)state;
    for (int extra = 0; extra <= 1; extra++) {
        json_t *arr = json_array();
        for (int i = 0; i < FW_MAX_LIST + extra; i++) {
            json_array_append_new(arr, json_string("x"));
        }
        json_t *body = json_pack("{s:o}", "l", arr);
        char *text = json_dumps(body, 0);
        struct call c;
        call_run(&c, FW_OP_UPDATE, "typed", text);
        if (extra == 0) {
            assert_int_equal(c.resp.status, FW_OK);
            assert_int_equal(json_array_size(field(&c, "l")), FW_MAX_LIST);
        } else {
            assert_int_equal(c.resp.status, FW_BAD_REQUEST);
            assert_non_null(strstr(c.resp.message, "'l'"));
        }
        call_done(&c);
        free(text);
        json_decref(body);
    }
}

static void test_field_defaults_and_provided(void **state)
{
    (void)state;
    struct call c;
    call_run(&c, FW_OP_READ, "typed", NULL);
    assert_int_equal(c.resp.status, FW_OK);
    assert_string_equal(json_string_value(field(&c, "def_s")), "hello");
    assert_int_equal(json_integer_value(field(&c, "def_d")), 300);
    assert_int_equal(json_array_size(field(&c, "def_l")), 2);
    assert_null(field(&c, "s")); /* no default, not sent: absent */
    json_t *prov = json_object_get(c.resp.data, "provided");
    assert_int_equal(json_object_size(prov), 0);
    call_done(&c);

    /* A sent value wins over the default and is marked provided; null means not sent. */
    call_run(&c, FW_OP_UPDATE, "typed", "{\"def_s\": \"bye\", \"def_d\": null}");
    assert_string_equal(json_string_value(field(&c, "def_s")), "bye");
    assert_int_equal(json_integer_value(field(&c, "def_d")), 300);
    prov = json_object_get(c.resp.data, "provided");
    assert_true(json_is_true(json_object_get(prov, "def_s")));
    assert_null(json_object_get(prov, "def_d"));
    call_done(&c);
}

static void test_getters(void **state)
{
    (void)state;
    json_t *fields = json_pack("{s:s, s:I, s:f, s:b, s:[s]}", "s", "v", "i", (json_int_t)7, "f",
                               2.5, "b", 1, "l", "x");
    json_t *provided = json_pack("{s:b}", "s", 1);
    struct fw_request req = {.fields = fields, .provided = provided};
    assert_string_equal(fw_str(&req, "s"), "v");
    assert_int_equal(fw_int(&req, "i"), 7);
    assert_true(fw_float(&req, "f") == 2.5);
    assert_true(fw_bool(&req, "b"));
    assert_int_equal(json_array_size(fw_json(&req, "l")), 1);
    assert_true(fw_provided(&req, "s"));
    assert_false(fw_provided(&req, "i"));
    /* Absent fields give zero values. */
    assert_null(fw_str(&req, "nope"));
    assert_int_equal(fw_int(&req, "nope"), 0);
    assert_false(fw_bool(&req, "nope"));
    assert_null(fw_json(&req, "nope"));
    json_decref(fields);
    json_decref(provided);
    struct fw_request empty = {0};
    assert_null(fw_str(&empty, "s"));
    assert_false(fw_provided(&empty, "s"));
}

static void test_required_fields(void **state)
{
    (void)state;
    struct call c;
    call_run(&c, FW_OP_UPDATE, "items/x", "{}");
    assert_int_equal(c.resp.status, FW_BAD_REQUEST);
    assert_string_equal(c.resp.message, "missing required field 'must'");
    call_done(&c);
    call_run(&c, FW_OP_CREATE, "items/x", "{\"must\": null}");
    assert_int_equal(c.resp.status, FW_BAD_REQUEST);
    call_done(&c);
    call_run(&c, FW_OP_UPDATE, "items/x", "{\"must\": \"here\"}");
    assert_int_equal(c.resp.status, FW_OK);
    call_done(&c);
    /* Only create/update require. */
    call_run(&c, FW_OP_READ, "items/x", NULL);
    assert_int_equal(c.resp.status, FW_OK);
    call_done(&c);
}

static void test_data_null_and_non_object(void **state)
{
    (void)state;
    struct call c;
    call_run(&c, FW_OP_READ, "typed", "null");
    assert_int_equal(c.resp.status, FW_OK);
    call_done(&c);
    call_run(&c, FW_OP_UPDATE, "typed", "[1,2]");
    assert_int_equal(c.resp.status, FW_BAD_REQUEST);
    call_done(&c);
    call_run(&c, FW_OP_UPDATE, "typed", "\"x\"");
    assert_int_equal(c.resp.status, FW_BAD_REQUEST);
    call_done(&c);
}

static void test_unknown_parameter_warning(void **state)
{
    (void)state;
    struct call c;
    call_run(&c, FW_OP_UPDATE, "typed", "{\"b\": true, \"zeta\": 1, \"alpha\": 2}");
    assert_int_equal(c.resp.status, FW_OK);
    assert_int_equal(json_array_size(c.resp.warnings), 1);
    assert_true(warned(&c, "Endpoint ignored these unrecognized parameters: [alpha zeta]"));
    call_done(&c);
    /*
     * A name that could be a secret pasted as a key (long, or with other
     * characters) is counted, never echoed.
     */
    call_run(&c, FW_OP_UPDATE, "typed",
             "{\"b\": true, \"key_vaule\": 1, \"sk-proj-CANARYabcdefghijklmnop\": 1, \"a b\": 2}");
    assert_int_equal(c.resp.status, FW_OK);
    assert_true(warned(&c, "Endpoint ignored these unrecognized parameters: [key_vaule] and 2 more "
                           "not shown (longer than 24 characters, not letters, digits, '_' and "
                           "'-', or past the first 3)"));
    call_done(&c);
    /* More unknown names than collected: the rest are counted too. */
    char body[4096];
    size_t off = (size_t)snprintf(body, sizeof(body), "{\"b\": true");
    for (int i = 0; i < 70; i++) {
        off += (size_t)snprintf(body + off, sizeof(body) - off, ", \"u%02d\": 1", i);
    }
    snprintf(body + off, sizeof(body) - off, "}");
    call_run(&c, FW_OP_UPDATE, "typed", body);
    assert_int_equal(c.resp.status, FW_OK);
    const char *w = json_string_value(json_array_get(c.resp.warnings, 0));
    assert_non_null(w);
    assert_non_null(strstr(w, "and 6 more not shown"));
    call_done(&c);
    /* No unknown parameters: no warning at all. */
    call_run(&c, FW_OP_UPDATE, "typed", "{\"b\": true}");
    assert_null(c.resp.warnings);
    call_done(&c);
    /* takes_arbitrary_input: none either. */
    call_run(&c, FW_OP_READ, "raw/x", "{\"zeta\": 1}");
    assert_int_equal(c.resp.status, FW_OK);
    assert_null(c.resp.warnings);
    call_done(&c);
}

static long oom_countdown;
static bool oom_fired;

/* jansson's allocator failing its nth call from now, counted as the plugin's allocator does. */
static void *oom_malloc(size_t size)
{
    if (oom_countdown > 0 && --oom_countdown == 0) {
        oom_fired = true;
        storage_json_alloc_failed();
        return NULL;
    }
    return malloc(size);
}

/*
 * A field given as a JSON string (as `vault write path j='{...}'` sends it),
 * each allocation of the request failing in turn: the value is whole or the
 * request is an internal error, never a 400 (out of memory is not the
 * caller's fault) nor a value with a byte dropped.
 */
static void test_json_field_out_of_memory(void **state)
{
    (void)state;
    const char *body = "{\"j\": \"{\\\"allowed_providers\\\": [\\\"openai\\\"]}\"}";
    json_t *want = json_pack("{s[s]}", "allowed_providers", "openai");
    for (long n = 1, fired = 1; fired; n++) {
        assert_true(n < 10000);
        struct call c;
        memset(&c.req, 0, sizeof(c.req));
        c.data = json_loads(body, 0, NULL);
        assert_non_null(c.data);
        c.req.op = FW_OP_UPDATE;
        c.req.path = "typed";
        c.req.data = c.data;
        fw_response_init(&c.resp);
        oom_fired = false;
        oom_countdown = n;
        json_set_alloc_funcs(oom_malloc, free);
        c.rc = fw_handle(tables, &c.req, &c.resp);
        json_set_alloc_funcs(malloc, free);
        oom_countdown = 0;
        fired = oom_fired;
        if (c.resp.status == FW_BAD_REQUEST) {
            fail_msg("allocation %ld failed: 400 (%s)", n, c.resp.message);
        }
        if (c.resp.status == FW_OK && c.resp.data != NULL) {
            assert_true(json_equal(field(&c, "j"), want));
        } else if (c.resp.status == FW_OK) {
            assert_true(fired); /* the echo handler's own reply could not be built */
        } else {
            assert_int_equal(c.resp.status, FW_INTERNAL);
        }
        call_done(&c);
    }
    json_decref(want);
}

static void test_path_segment_overrides_body(void **state)
{
    (void)state;
    struct call c;
    call_run(&c, FW_OP_UPDATE, "items/fromthepath", "{\"must\": \"m\", \"name\": \"frombody\"}");
    assert_int_equal(c.resp.status, FW_OK);
    assert_string_equal(json_string_value(field(&c, "name")), "fromthepath");
    assert_true(warned(&c, "Endpoint replaced the value of these parameters with the values "
                           "captured from the endpoint's path: [name]"));
    call_done(&c);
}

static void test_secret_never_in_messages(void **state)
{
    (void)state;
    const char *bodies[] = {
        "{\"secret\": \"" CANARY CANARY "\"}", /* too long */
        "{\"secret\": [\"" CANARY "\"]}",      /* wrong type */
        "{\"secret\": {\"" CANARY "\": 1}}",
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        struct call c;
        call_run(&c, FW_OP_UPDATE, "typed", bodies[i]);
        assert_int_equal(c.resp.status, FW_BAD_REQUEST);
        assert_non_null(strstr(c.resp.message, "'secret'"));
        assert_null(strstr(c.resp.message, "CANARY"));
        call_done(&c);
    }
    /* An unknown parameter's value is never echoed either; its name is. */
    struct call c;
    call_run(&c, FW_OP_UPDATE, "typed", "{\"k\": \"" CANARY "\"}");
    char *w = json_dumps(c.resp.warnings, 0);
    assert_null(strstr(w, "CANARY"));
    free(w);
    call_done(&c);
    /* The secret at its limit is accepted and reaches the handler intact. */
    call_run(&c, FW_OP_UPDATE, "typed", "{\"secret\": \"" CANARY "\"}");
    assert_int_equal(c.resp.status, FW_OK);
    assert_string_equal(json_string_value(field(&c, "secret")), CANARY);
    call_done(&c);
}

static void test_error_message_limit(void **state)
{
    (void)state;
    struct fw_response resp;
    fw_response_init(&resp);
    char big[FW_MAX_MESSAGE * 2];
    memset(big, 'e', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    fw_error(&resp, "%s", big);
    assert_int_equal(resp.status, FW_BAD_REQUEST);
    assert_int_equal(strlen(resp.message), FW_MAX_MESSAGE - 1);
    fw_error_coded(&resp, 409, "conflict on %s", "x");
    assert_int_equal(resp.status, FW_CODED);
    assert_int_equal(resp.http_code, 409);
    assert_string_equal(resp.message, "conflict on x");
    fw_warn(&resp, "w%d", 1);
    fw_warn(&resp, "w%d", 2);
    assert_int_equal(json_array_size(resp.warnings), 2);
    fw_reply(&resp, json_object());
    fw_reply(&resp, json_object()); /* replacing data frees the old one */
    fw_response_done(&resp);
    fw_response_done(&resp); /* idempotent */
}

/* ---- existence check ---------------------------------------------------------------- */

static void test_exists(void **state)
{
    (void)state;
    struct fw_request req = {.op = FW_OP_UPDATE, .path = "items/x"};
    struct fw_response resp;
    bool found = true, ex = true;
    fw_response_init(&resp);
    exists_answer = true;
    assert_int_equal(fw_exists(tables, &req, &found, &ex, &resp), ERR_OK);
    assert_true(found);
    assert_true(ex);
    /* Required fields and bad values are the request's business, not the check's. */
    json_t *bad = json_pack("{s:[i]}", "must", 1);
    req.data = bad;
    exists_answer = false;
    assert_int_equal(fw_exists(tables, &req, &found, &ex, &resp), ERR_OK);
    assert_true(found);
    assert_false(ex);
    assert_int_equal(resp.status, FW_OK);
    assert_null(resp.warnings);
    req.data = NULL;
    json_decref(bad);
    /* No exists function: not found (Vault then uses update). */
    req.path = "typed";
    assert_int_equal(fw_exists(tables, &req, &found, &ex, &resp), ERR_OK);
    assert_false(found);
    assert_int_equal(resp.status, FW_OK);
    /* A bad name is not the check's to refuse (Vault would make it a 500): no check. */
    req.path = "items/Bad.Name";
    assert_int_equal(fw_exists(tables, &req, &found, &ex, &resp), ERR_OK);
    assert_false(found);
    assert_int_equal(resp.status, FW_OK);
    /* No path at all. */
    req.path = "nowhere";
    assert_int_equal(fw_exists(tables, &req, &found, &ex, &resp), ERR_OK);
    assert_false(found);
    assert_int_equal(resp.status, FW_UNSUPPORTED_PATH);
    fw_response_done(&resp);
    assert_null(req.fields);
}

/* ---- help and OpenAPI ---------------------------------------------------------------- */

static void assert_oas_doc(json_t *oas)
{
    assert_true(json_is_object(oas));
    assert_string_equal(json_string_value(json_object_get(oas, "openapi")), "3.0.2");
    json_t *info = json_object_get(oas, "info");
    assert_true(json_is_string(json_object_get(info, "title")));
    assert_true(json_is_string(json_object_get(info, "description")));
    assert_true(json_is_string(json_object_get(info, "version")));
    assert_true(json_is_string(json_object_get(json_object_get(info, "license"), "name")));
    assert_true(json_is_string(json_object_get(json_object_get(info, "license"), "url")));
    assert_true(json_is_object(json_object_get(oas, "paths")));
    assert_true(json_is_object(json_object_get(json_object_get(oas, "components"), "schemas")));
}

static void test_help_on_path(void **state)
{
    (void)state;
    struct call c;
    call_run(&c, FW_OP_HELP, "items/x", NULL);
    assert_int_equal(c.resp.status, FW_OK);
    const char *help = json_string_value(json_object_get(c.resp.data, "help"));
    assert_non_null(help);
    assert_non_null(strstr(help, "One item."));
    assert_non_null(strstr(help, "must"));
    assert_true(json_is_null(json_object_get(c.resp.data, "see_also")));
    json_t *oas = json_object_get(c.resp.data, "openapi");
    assert_oas_doc(oas);
    json_t *item = json_object_get(json_object_get(oas, "paths"), "/items/{name}");
    assert_non_null(item);
    assert_non_null(json_object_get(item, "get"));
    assert_non_null(json_object_get(item, "post"));
    assert_null(json_object_get(item, "delete"));
    json_t *param = json_array_get(json_object_get(item, "parameters"), 0);
    assert_string_equal(json_string_value(json_object_get(param, "name")), "name");
    assert_string_equal(json_string_value(json_object_get(param, "in")), "path");
    /* Responses keyed by status code as a string: Vault's decode hook turns it back. */
    assert_non_null(
        json_object_get(json_object_get(json_object_get(item, "get"), "responses"), "200"));
    json_t *props = json_object_get(
        json_object_get(
            json_object_get(
                json_object_get(json_object_get(json_object_get(item, "post"), "requestBody"),
                                "content"),
                "application/json"),
            "schema"),
        "properties");
    assert_non_null(json_object_get(props, "must"));
    assert_null(json_object_get(props, "name")); /* a path parameter, not a body field */
    call_done(&c);

    /* help on an unknown path: unsupported path, like Vault. */
    call_run(&c, FW_OP_HELP, "nowhere", NULL);
    assert_int_equal(c.resp.status, FW_UNSUPPORTED_PATH);
    call_done(&c);
}

static void test_help_root(void **state)
{
    (void)state;
    struct call c;
    /* Vault's OpenAPI endpoint sends this with requestResponsePrefix in data. */
    call_run(&c, FW_OP_HELP, "", "{\"requestResponsePrefix\": \"byok\"}");
    assert_int_equal(c.rc, ERR_OK);
    assert_int_equal(c.resp.status, FW_OK);
    assert_non_null(c.resp.data);
    assert_true(json_is_string(json_object_get(c.resp.data, "help")));
    assert_non_null(strstr(json_string_value(json_object_get(c.resp.data, "help")), "items/"));
    json_t *oas = json_object_get(c.resp.data, "openapi");
    assert_oas_doc(oas);
    json_t *paths = json_object_get(oas, "paths");
    const char *want[] = {"/typed",
                          "/items/",
                          "/items/{name}",
                          "/raw/{blob}",
                          "/t/{tenant}/k/{provider}/{key_type}",
                          "/t/{tenant}/k/",
                          "/broken"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        if (json_object_get(paths, want[i]) == NULL) {
            fail_msg("root OpenAPI lacks %s", want[i]);
        }
    }
    /* A list path documents the list=true query parameter. */
    json_t *lp = json_array_get(
        json_object_get(json_object_get(json_object_get(paths, "/items/"), "get"), "parameters"),
        0);
    assert_string_equal(json_string_value(json_object_get(lp, "name")), "list");
    assert_string_equal(json_string_value(json_object_get(lp, "in")), "query");
    /* The secret field is documented without any value, as a password. */
    json_t *sec = json_object_get(
        json_object_get(
            json_object_get(
                json_object_get(
                    json_object_get(json_object_get(json_object_get(paths, "/typed"), "post"),
                                    "requestBody"),
                    "content"),
                "application/json"),
            "schema"),
        "properties");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(sec, "secret"), "format")), "password");
    assert_string_equal(json_string_value(json_object_get(json_object_get(sec, "d"), "type")),
                        "string");
    assert_string_equal(json_string_value(json_object_get(json_object_get(sec, "i"), "type")),
                        "integer");
    call_done(&c);

    /* Repeated calls give equal, independent documents. */
    json_t *a = fw_openapi(tables);
    json_t *b = fw_openapi(tables);
    assert_true(json_equal(a, b));
    assert_ptr_not_equal(a, b);
    json_object_set_new(a, "openapi", json_string("mutated"));
    json_t *d = fw_openapi(tables);
    assert_string_equal(json_string_value(json_object_get(d, "openapi")), "3.0.2");
    json_decref(a);
    json_decref(b);
    json_decref(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_valid),
        cmocka_unit_test(test_text_ok),
        cmocka_unit_test(test_op_names),
        cmocka_unit_test(test_duration_parse),
        cmocka_unit_test(test_route_list_path_trailing_slash),
        cmocka_unit_test(test_route_named_segments),
        cmocka_unit_test(test_route_invalid_name_is_400_naming_field),
        cmocka_unit_test(test_route_any_segment),
        cmocka_unit_test(test_route_path_limit),
        cmocka_unit_test(test_route_segment_limit),
        cmocka_unit_test(test_list_parameter_is_not_unknown),
        cmocka_unit_test(test_unsupported_operation_and_path),
        cmocka_unit_test(test_handler_failure_is_internal),
        cmocka_unit_test(test_field_coercion_table),
        cmocka_unit_test(test_field_string_default_limit),
        cmocka_unit_test(test_field_list_default_limit),
        cmocka_unit_test(test_field_defaults_and_provided),
        cmocka_unit_test(test_getters),
        cmocka_unit_test(test_required_fields),
        cmocka_unit_test(test_data_null_and_non_object),
        cmocka_unit_test(test_unknown_parameter_warning),
        cmocka_unit_test(test_json_field_out_of_memory),
        cmocka_unit_test(test_path_segment_overrides_body),
        cmocka_unit_test(test_secret_never_in_messages),
        cmocka_unit_test(test_error_message_limit),
        cmocka_unit_test(test_exists),
        cmocka_unit_test(test_help_on_path),
        cmocka_unit_test(test_help_root),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
