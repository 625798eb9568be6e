/* SPDX-License-Identifier: MPL-2.0 */
/*
 * pb.Backend over the path framework. This file is the only place that knows
 * both Vault's protobuf shapes and the framework's structs; it holds no state
 * of its own beyond the engine pointer. It does not route (framework.c) and
 * does not move bytes (rpc.c).
 *
 * Error mapping (docs/vault-plugin-protocol.md §9.4): a 400 is an error
 * response {"error": msg} with no ProtoError, because Vault turns a ProtoError
 * without a response into a 500; unknown path/operation and denial are the
 * sentinel ProtoErrors 6/5/8, which Vault compares by type (an existence
 * check answering 6 means "no check"; a rollback answering 5 is ignored).
 */
#include "plugin/backend.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsonw.h"
#include "common/log.h"
#include "plugin/broker.h"
#include "plugin/byok.h"
#include "plugin/storage.h"
#include "plugin/storage_grpc.h"
#include "sdk/plugin/pb/backend.pb-c.h"

/* ProtoError.err_type values (Vault sdk/plugin/pb/translation.go). */
enum backend_errtype {
    ERRTYPE_UNKNOWN = 0, /* errors.New(msg) */
    ERRTYPE_USER = 1,
    ERRTYPE_INTERNAL = 2,
    ERRTYPE_CODED = 3,
    ERRTYPE_UNSUPPORTED_OPERATION = 5,
    ERRTYPE_UNSUPPORTED_PATH = 6,
    ERRTYPE_PERMISSION_DENIED = 8,
};

/* logical.TypeLogical: a secrets engine (2 would be an auth method). */
#define BACKEND_TYPE_LOGICAL 1

static struct byok *be_state;

void backend_init(struct byok *b)
{
    be_state = b;
}

/* ---- reply construction ---- */

struct be_out {
    Pb__HandleRequestReply reply;
    Pb__Response response;
    Pb__ProtoError perr;
    char *data; /* compact JSON text, wiped on free: may hold a provider key */
    size_t data_len;
    char **warnings;
};

static void be_out_done(struct be_out *o)
{
    if (o->data != NULL) {
        OPENSSL_cleanse(o->data, o->data_len);
        free(o->data);
    }
    free(o->warnings);
    o->data = NULL;
    o->warnings = NULL;
}

static void be_proto_error(struct be_out *o, uint32_t type, const char *msg, int64_t code)
{
    o->perr.err_type = type;
    o->perr.err_msg = (char *)msg;
    o->perr.err_code = code;
    o->reply.err = &o->perr;
}

static size_t be_warning_count(const struct fw_response *resp)
{
    return json_is_array(resp->warnings) ? json_array_size(resp->warnings) : 0;
}

/* Response.data = text of obj (which must be an object), plus warnings. */
static enum err be_response(struct be_out *o, const struct fw_response *resp, const json_t *obj)
{
    if (!json_is_object(obj)) {
        return ERR_INTERNAL;
    }
    o->data = jsonw_dumps(obj, &o->data_len);
    if (o->data == NULL) {
        return ERR_NOMEM;
    }
    o->response.data = o->data;
    size_t n = be_warning_count(resp);
    if (n > BACKEND_MAX_WARNINGS) {
        n = BACKEND_MAX_WARNINGS;
    }
    if (n > 0) {
        o->warnings = calloc(n, sizeof(*o->warnings));
        if (o->warnings == NULL) {
            return ERR_NOMEM;
        }
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            const char *w = json_string_value(json_array_get(resp->warnings, i));
            if (w != NULL) {
                o->warnings[k++] = (char *)w;
            }
        }
        o->response.n_warnings = k;
        o->response.warnings = o->warnings;
    }
    o->reply.response = &o->response;
    return ERR_OK;
}

/* An empty reply: nothing allocated, nothing for be_out_done to free. */
static void be_out_init(struct be_out *o)
{
    *o = (struct be_out){
        .reply = PB__HANDLE_REQUEST_REPLY__INIT,
        .response = PB__RESPONSE__INIT,
        .perr = PB__PROTO_ERROR__INIT,
    };
}

/* Fills o from resp; strings in o borrow from resp. */
static enum err be_out_build(const struct fw_response *resp, struct be_out *o)
{
    be_out_init(o);
    enum err rc = ERR_OK;

    switch (resp->status) {
    case FW_OK:
        if (resp->data == NULL && be_warning_count(resp) == 0) {
            return ERR_OK; /* nil response: 404 on read, 204 otherwise */
        }
        if (resp->data == NULL) {
            json_t *empty = json_object();
            if (empty == NULL) {
                return ERR_NOMEM;
            }
            rc = be_response(o, resp, empty);
            json_decref(empty);
            return rc;
        }
        return be_response(o, resp, resp->data);
    case FW_BAD_REQUEST: {
        /* logical.ErrorResponse: "error" must be a string (Vault asserts .(string)). */
        json_t *err = json_pack("{ss}", "error",
                                resp->message[0] != '\0' ? resp->message : "invalid request");
        if (err == NULL) {
            return ERR_NOMEM;
        }
        rc = be_response(o, resp, err);
        json_decref(err);
        return rc;
    }
    case FW_UNSUPPORTED_PATH:
        be_proto_error(o, ERRTYPE_UNSUPPORTED_PATH, "unsupported path", 0);
        return ERR_OK;
    case FW_UNSUPPORTED_OPERATION:
        be_proto_error(o, ERRTYPE_UNSUPPORTED_OPERATION, "unsupported operation", 0);
        return ERR_OK;
    case FW_PERMISSION_DENIED:
        be_proto_error(o, ERRTYPE_PERMISSION_DENIED, "permission denied", 0);
        return ERR_OK;
    case FW_CODED:
        be_proto_error(o, ERRTYPE_CODED, resp->message, resp->http_code);
        return ERR_OK;
    case FW_INTERNAL:
        be_proto_error(o, ERRTYPE_INTERNAL,
                       resp->message[0] != '\0' ? resp->message : err_str(ERR_INTERNAL), 0);
        return ERR_OK;
    case FW_READONLY:
        /* Exactly logical.ErrReadOnly's text: Vault matches it to forward the request. */
        be_proto_error(o, ERRTYPE_UNKNOWN, err_str(ERR_READONLY), 0);
        return ERR_OK;
    }
    return ERR_INTERNAL;
}

/* Builds the reply for resp, falling back to a bare InternalError if that fails. */
static void be_out_build_safe(const struct fw_response *resp, struct be_out *o)
{
    enum err rc = be_out_build(resp, o);
    if (rc != ERR_OK) {
        log_kv(LOGL_ERROR, "cannot encode the response", "error", err_name(rc), NULL);
        be_out_done(o);
        be_out_init(o);
        be_proto_error(o, ERRTYPE_INTERNAL, err_str(ERR_INTERNAL), 0);
    }
}

enum err backend_reply_pack(const struct fw_response *resp, uint8_t **ret_buf, size_t *ret_len)
{
    struct be_out o;
    enum err rc = be_out_build(resp, &o);
    if (rc != ERR_OK) {
        be_out_done(&o);
        return rc;
    }
    size_t len = protobuf_c_message_get_packed_size(&o.reply.base);
    uint8_t *buf = malloc(len > 0 ? len : 1);
    if (buf == NULL) {
        be_out_done(&o);
        return ERR_NOMEM;
    }
    protobuf_c_message_pack(&o.reply.base, buf);
    be_out_done(&o);
    *ret_buf = buf;
    *ret_len = len;
    return ERR_OK;
}

/* ---- request conversion ---- */

/*
 * Parses Request.data into a JSON object (NULL for Vault's "null", i.e. no
 * body and no query). Fills resp with a 400 and returns false on bad input.
 */
static bool be_parse_data(const char *text, json_t **ret_data, struct fw_response *resp)
{
    *ret_data = NULL;
    size_t len = strlen(text);
    if (len > (size_t)FW_MAX_DATA) {
        fw_error(resp, "request data too large (limit %d bytes)", FW_MAX_DATA);
        return false;
    }
    if (len == 0 || strcmp(text, "null") == 0) {
        return true;
    }
    json_error_t jerr;
    unsigned long failures = storage_json_failures_seen();
    json_t *data = json_loadb(text, len, JSON_DECODE_ANY, &jerr);
    enum json_error_code jcode = json_error_code(&jerr);
    /* jerr.text may quote the input (a key_value, say): it must not stay on the stack. */
    OPENSSL_cleanse(&jerr, sizeof(jerr));
    if (storage_json_failures_seen() != failures) {
        /* jansson may have parsed it with a byte dropped: not the caller's fault, not usable. */
        json_decref(data);
        log_kv(LOGL_ERROR, "out of memory while parsing a request's data", NULL);
        resp->status = FW_INTERNAL;
        snprintf(resp->message, sizeof(resp->message), "internal error");
        return false;
    }
    if (data == NULL || json_is_null(data)) {
        json_decref(data);
        if (data == NULL) {
            /* jerr.text may quote the input, which may hold a key: keep it out of the reply. */
            if (jcode == json_error_null_character) {
                fw_error(resp, "request data is not valid JSON: a string holds \\u0000 (NUL), "
                               "which no field accepts");
            } else {
                fw_error(resp, "request data is not valid JSON");
            }
            return false;
        }
        return true;
    }
    if (!json_is_object(data)) {
        json_decref(data);
        fw_error(resp, "request data must be a JSON object");
        return false;
    }
    *ret_data = data;
    return true;
}

static bool be_request_init(const Pb__Request *r, enum fw_op op, struct storage *st,
                            struct fw_request *fr, struct fw_response *resp)
{
    memset(fr, 0, sizeof(*fr));
    if (strlen(r->path) > FW_MAX_PATH) {
        fw_error(resp, "path too long (limit %d bytes)", FW_MAX_PATH);
        return false;
    }
    json_t *data = NULL;
    if (!be_parse_data(r->data, &data, resp)) {
        return false;
    }
    fr->op = op;
    fr->path = r->path;
    fr->data = data;
    fr->storage = st;
    fr->backend = be_state;
    fr->request_id = r->id;
    fr->entity_id = r->entity_id;
    fr->display_name = r->display_name;
    fr->mount_point = r->mount_point;
    return true;
}

static void be_request_done(struct fw_request *fr)
{
    json_decref(fr->data);
    fr->data = NULL;
}

/* The request body may hold a provider key: wipe the unpacked copy before freeing it. */
static void be_request_wipe(Pb__Request *r)
{
    if (r != NULL && r->data != NULL && r->data != protobuf_c_empty_string) {
        OPENSSL_cleanse(r->data, strlen(r->data));
    }
}

/* Operations outside the framework's routing (global ones in Vault's terms). */
static bool be_global_op(const char *op, struct storage *st, struct fw_response *resp)
{
    if (strcmp(op, "rollback") == 0) {
        /*
         * Vault's periodic tick (about once a minute, also during unmount):
         * housekeeping, bounded by the rollback request's deadline like any
         * request; what it did not get to stays pending for the next tick.
         */
        enum err e = byok_periodic(be_state, st);
        /* A standby cannot write: housekeeping is the active node's job. */
        if (e != ERR_OK && e != ERR_READONLY) {
            log_kv(LOGL_WARN, "periodic housekeeping failed", "error", err_name(e), NULL);
        }
        return true; /* nil response either way: the next tick retries */
    }
    /* byok issues no leases, so Vault never has anything of ours to revoke or renew. */
    resp->status = FW_UNSUPPORTED_OPERATION;
    return true;
}

/*
 * The one log line of a request that ends in a 500: the path's pattern (never
 * the path itself, which names a tenant and could be anything on no match),
 * the operation and the error name. Never request data.
 */
static void be_log_internal(const char *msg, const struct fw_response *resp, const char *op,
                            enum err e)
{
    log_kv(LOGL_ERROR, msg, "path", resp->pattern != NULL ? resp->pattern : "-", "operation",
           fw_op_parse(op) >= 0 ? op : "-", "error", err_name(e), NULL);
}

void backend_handle_request(grpc_call *call, const uint8_t *req, size_t len,
                            struct rpc_reply *reply)
{
    Pb__HandleRequestArgs *args = pb__handle_request_args__unpack(NULL, len, req);
    if (args == NULL || args->request == NULL) {
        if (args != NULL) {
            pb__handle_request_args__free_unpacked(args, NULL);
        }
        rpc_reply_status(reply, GRPC_STATUS_INVALID_ARGUMENT, "cannot decode HandleRequestArgs");
        return;
    }
    Pb__Request *r = args->request;
    struct fw_response resp;
    fw_response_init(&resp);
    /* Storage calls made for this request end with it (storage_grpc_for_call). */
    struct storage st;
    storage_grpc_for_call(&st, call);

    int op = fw_op_parse(r->operation);
    if (op < 0) {
        (void)be_global_op(r->operation, &st, &resp);
    } else {
        struct fw_request fr;
        if (be_request_init(r, (enum fw_op)op, &st, &fr, &resp)) {
            /* The framework never logs: a handler failure arrives here as FW_INTERNAL. */
            enum err e = fw_handle(byok_path_tables, &fr, &resp);
            if (e != ERR_OK && resp.status == FW_OK) {
                resp.status = FW_INTERNAL;
            }
            if (resp.status == FW_INTERNAL) {
                be_log_internal("request failed", &resp, r->operation, e);
            }
            be_request_done(&fr);
        }
    }
    be_request_wipe(r);
    pb__handle_request_args__free_unpacked(args, NULL);

    struct be_out o;
    be_out_build_safe(&resp, &o);
    rpc_reply_pack(reply, &o.reply.base);
    be_out_done(&o);
    fw_response_done(&resp);
}

static uint32_t be_errtype_for(enum fw_status st)
{
    switch (st) {
    case FW_BAD_REQUEST:
        return ERRTYPE_USER; /* Vault passes a UserError through as a 400 */
    case FW_UNSUPPORTED_PATH:
        return ERRTYPE_UNSUPPORTED_PATH;
    case FW_UNSUPPORTED_OPERATION:
        return ERRTYPE_UNSUPPORTED_OPERATION;
    case FW_PERMISSION_DENIED:
        return ERRTYPE_PERMISSION_DENIED;
    case FW_CODED:
        return ERRTYPE_CODED;
    case FW_READONLY:
        return ERRTYPE_UNKNOWN;
    default:
        return ERRTYPE_INTERNAL;
    }
}

void backend_handle_existence_check(grpc_call *call, const uint8_t *req, size_t len,
                                    struct rpc_reply *reply)
{
    Pb__HandleExistenceCheckArgs *args = pb__handle_existence_check_args__unpack(NULL, len, req);
    if (args == NULL || args->request == NULL) {
        if (args != NULL) {
            pb__handle_existence_check_args__free_unpacked(args, NULL);
        }
        rpc_reply_status(reply, GRPC_STATUS_INVALID_ARGUMENT,
                         "cannot decode HandleExistenceCheckArgs");
        return;
    }
    Pb__Request *r = args->request;
    Pb__HandleExistenceCheckReply out = PB__HANDLE_EXISTENCE_CHECK_REPLY__INIT;
    Pb__ProtoError perr = PB__PROTO_ERROR__INIT;
    struct fw_response resp;
    fw_response_init(&resp);
    struct storage st;
    storage_grpc_for_call(&st, call);

    /* Vault asks with the operation it would run (normally update); the check ignores it. */
    int op = fw_op_parse(r->operation);
    struct fw_request fr;
    bool found = false;
    bool exists = false;
    if (be_request_init(r, op >= 0 ? (enum fw_op)op : FW_OP_UPDATE, &st, &fr, &resp)) {
        enum err e = fw_exists(byok_path_tables, &fr, &found, &exists, &resp);
        if (e != ERR_OK && resp.status == FW_OK) {
            resp.status = FW_INTERNAL;
        }
        if (resp.status == FW_INTERNAL) {
            be_log_internal("existence check failed", &resp, r->operation, e);
        }
        be_request_done(&fr);
    }
    if (resp.status == FW_BAD_REQUEST) {
        /*
         * Vault turns any existence-check error other than "unsupported path"
         * into a 500 (request_handling.go). Bad input (a body over the limit,
         * malformed data) is the caller's fault: answer "no check" so Vault
         * runs the request as an update, and HandleRequest gives the 400.
         */
        out.check_found = false;
        out.exists = false;
    } else if (resp.status != FW_OK) {
        perr.err_type = be_errtype_for(resp.status);
        switch (resp.status) {
        case FW_UNSUPPORTED_PATH:
            perr.err_msg = (char *)"unsupported path";
            break;
        case FW_UNSUPPORTED_OPERATION:
            perr.err_msg = (char *)"unsupported operation";
            break;
        case FW_PERMISSION_DENIED:
            perr.err_msg = (char *)"permission denied";
            break;
        default:
            perr.err_msg = resp.message[0] != '\0' ? resp.message : (char *)err_str(ERR_INTERNAL);
            perr.err_code = resp.status == FW_CODED ? resp.http_code : 0;
            break;
        }
        out.err = &perr;
    } else {
        out.check_found = found;
        out.exists = found && exists;
    }
    be_request_wipe(r);
    rpc_reply_pack(reply, &out.base);
    pb__handle_existence_check_args__free_unpacked(args, NULL);
    fw_response_done(&resp);
}

void backend_setup(grpc_call *call, const uint8_t *req, size_t len, struct rpc_reply *reply)
{
    Pb__SetupArgs *args = pb__setup_args__unpack(NULL, len, req);
    if (args == NULL) {
        rpc_reply_status(reply, GRPC_STATUS_INVALID_ARGUMENT, "cannot decode SetupArgs");
        return;
    }
    Pb__SetupReply out = PB__SETUP_REPLY__INIT;
    char msg[160] = "";
    json_t *cfg = json_object();
    if (cfg == NULL) {
        snprintf(msg, sizeof(msg), "byok setup: %s", err_str(ERR_NOMEM));
        goto out;
    }
    if (args->n_config > BACKEND_MAX_CONFIG) {
        snprintf(msg, sizeof(msg), "byok setup: too many mount options (limit %d)",
                 BACKEND_MAX_CONFIG);
        goto out;
    }
    for (size_t i = 0; i < args->n_config; i++) {
        const Pb__SetupArgs__ConfigEntry *kv = args->config[i];
        json_t *v = json_string(kv->value);
        if (v == NULL || json_object_set_new(cfg, kv->key, v) != 0) {
            snprintf(msg, sizeof(msg), "byok setup: mount option is not valid UTF-8");
            goto out;
        }
    }
    /* No storage here: registration has none and at mount time it is read-only. */
    enum err e = byok_setup(be_state, cfg);
    if (e != ERR_OK) {
        snprintf(msg, sizeof(msg), "byok setup: %s", err_str(e));
        goto out;
    }
    if (args->broker_id != 0) {
        e = broker_connect(args->broker_id, BROKER_WAIT_MS);
        char id[16];
        snprintf(id, sizeof(id), "%u", args->broker_id);
        if (e == ERR_TIMEOUT) {
            /*
             * Vault starts serving the broker before it calls Setup, at
             * registration too (with a storage that refuses every call), so
             * no announcement means no storage for this process's life. The
             * Go SDK fails Setup here (broker.Dial's timeout); so do we, and
             * Vault refuses the mount with this text.
             */
            snprintf(msg, sizeof(msg),
                     "byok setup: Vault announced no broker connection for broker_id %s within "
                     "%d ms; storage would be unreachable",
                     id, BROKER_WAIT_MS);
            goto out;
        } else if (e != ERR_OK) {
            snprintf(msg, sizeof(msg), "byok setup: cannot dial Vault's broker: %s", err_str(e));
            goto out;
        } else {
            log_kv(LOGL_DEBUG, "broker connected", "broker_id", id, NULL);
        }
    } else {
        log_kv(LOGL_WARN, "setup without a broker id; storage unavailable", NULL);
    }
out:
    if (msg[0] != '\0') {
        log_kv(LOGL_ERROR, "setup failed", "error", msg, NULL);
        out.err = msg;
    }
    rpc_reply_pack(reply, &out.base);
    json_decref(cfg);
    pb__setup_args__free_unpacked(args, NULL);
}

/*
 * Initialize and Cleanup use storage_grpc(), with no parent: the KEK created
 * at first Initialize and Cleanup's final flush are each a few writes that
 * finish or fail on their own deadline, whatever Vault does with its call.
 */
void backend_initialize(grpc_call *call, const uint8_t *req, size_t len, struct rpc_reply *reply)
{
    Pb__InitializeReply out = PB__INITIALIZE_REPLY__INIT;
    Pb__ProtoError perr = PB__PROTO_ERROR__INIT;
    char msg[96];
    enum err e = byok_initialize(be_state, storage_grpc());
    if (e != ERR_OK) {
        snprintf(msg, sizeof(msg), "byok initialize: %s", err_str(e));
        log_kv(LOGL_ERROR, "initialize failed", "error", err_name(e), NULL);
        perr.err_type = ERRTYPE_INTERNAL;
        perr.err_msg = msg;
        out.err = &perr;
    }
    rpc_reply_pack(reply, &out.base);
}

void backend_cleanup(grpc_call *call, const uint8_t *req, size_t len, struct rpc_reply *reply)
{
    /*
     * Cleanup precedes a reload, a seal or an unmount. Flush what the periodic
     * tick would have written (pending usage counters) while the broker is still
     * there; on a seal or unmount storage may refuse, which loses nothing more
     * than not trying would.
     */
    if (byok_periodic(be_state, storage_grpc()) != ERR_OK) {
        log_kv(LOGL_WARN, "final flush before cleanup failed", NULL);
    }
    byok_cleanup(be_state);
    broker_close();
    Pb__Empty out = PB__EMPTY__INIT;
    rpc_reply_pack(reply, &out.base);
}

void backend_invalidate_key(grpc_call *call, const uint8_t *req, size_t len,
                            struct rpc_reply *reply)
{
    Pb__InvalidateKeyArgs *args = pb__invalidate_key_args__unpack(NULL, len, req);
    if (args == NULL) {
        rpc_reply_status(reply, GRPC_STATUS_INVALID_ARGUMENT, "cannot decode InvalidateKeyArgs");
        return;
    }
    byok_invalidate(be_state, args->key);
    pb__invalidate_key_args__free_unpacked(args, NULL);
    Pb__Empty out = PB__EMPTY__INIT;
    rpc_reply_pack(reply, &out.base);
}

void backend_type(grpc_call *call, const uint8_t *req, size_t len, struct rpc_reply *reply)
{
    Pb__TypeReply out = PB__TYPE_REPLY__INIT;
    out.type = BACKEND_TYPE_LOGICAL;
    rpc_reply_pack(reply, &out.base);
}

void backend_special_paths(grpc_call *call, const uint8_t *req, size_t len, struct rpc_reply *reply)
{
    size_t n = 0;
    while (byok_seal_wrap_storage[n] != NULL) {
        n++;
    }
    Pb__Paths paths = PB__PATHS__INIT;
    paths.n_seal_wrap_storage = n;
    paths.seal_wrap_storage = (char **)byok_seal_wrap_storage;
    Pb__SpecialPathsReply out = PB__SPECIAL_PATHS_REPLY__INIT;
    out.paths = &paths;
    rpc_reply_pack(reply, &out.base);
}
