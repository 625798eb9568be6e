/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The path framework: the C counterpart of Vault's sdk/framework. Each path is
 * a static table entry: a pattern with named segments, typed fields, handlers
 * per operation, an existence check and help text. The framework matches the
 * request path, validates and coerces every field once (Vault-style 400s that
 * name the field), warns about unknown parameters, answers `help` (help text +
 * OpenAPI) from the same tables, and maps outcomes to Vault's error shapes.
 *
 * It knows nothing of gRPC or protobuf: plugin/backend.c converts pb.Request
 * into struct fw_request and struct fw_response back into pb.Response.
 */
#ifndef BYOK_PLUGIN_FRAMEWORK_H
#define BYOK_PLUGIN_FRAMEWORK_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "plugin/storage.h"

/* Limits on what Vault (i.e. a client) may send us. */
#define FW_MAX_PATH 1024          /* bytes in Request.path */
#define FW_MAX_DATA (1024 * 1024) /* bytes of Request.data JSON */
#define FW_MAX_STRING 4096        /* default cap on a string field, unless the field sets max_len */
#define FW_MAX_LIST 256           /* items in a list field */
#define FW_MAX_SEGMENTS 8         /* named segments in one pattern */
#define FW_MAX_MESSAGE 1024       /* bytes in an error message */

/*
 * Names of tenants, providers, key types and models in paths:
 * [a-z0-9][a-z0-9_-]{0,62}. A named segment is checked against this unless its
 * name appears in a pattern as {name:any} (then any non-empty segment).
 */
#define FW_NAME_MAX 63
bool fw_name_valid(const char *s);

/*
 * A valid name from a request body quoted in an error ('name') when it is
 * shorter than FW_ECHO_NAME_MAX, else described by its length only: a
 * provider key pasted into a name field by mistake can be a valid name
 * (DeepSeek's sk-<32 hex>), and an error's text reaches Vault's audit log
 * unhashed. Provider names are far shorter; keys are longer (the same bound
 * keeps unknown parameter names out of warnings). out has FW_ECHO_NAME_BUF
 * bytes.
 */
#define FW_ECHO_NAME_MAX 24
#define FW_ECHO_NAME_BUF 64
const char *fw_name_quote(char out[FW_ECHO_NAME_BUF], const char *name);

/*
 * Free text shown to people (display names, key names, metadata values): no
 * control characters, ASCII (below 0x20, 0x7f) or Unicode C1 (U+0080-U+009F),
 * no line or paragraph separators (U+2028, U+2029) and no bidirectional
 * controls (U+200E, U+200F, U+202A-U+202E, U+2066-U+2069), which could make a
 * name read differently in a UI or a log. s is UTF-8 (jansson checks that).
 */
bool fw_text_ok(const char *s);

enum fw_op {
    FW_OP_READ,
    FW_OP_CREATE,
    FW_OP_UPDATE,
    FW_OP_DELETE,
    FW_OP_LIST,
    FW_OP_PATCH,
    FW_OP_HELP,
    FW_OP__COUNT
};

/* "read" -> FW_OP_READ; -1 for operations the framework does not route (revoke, renew, rollback,
 * ...). */
int fw_op_parse(const char *s);
const char *fw_op_name(enum fw_op op);

enum fw_type {
    FW_TYPE_STRING,   /* JSON string; numbers and bools are accepted and stringified (like Vault) */
    FW_TYPE_SECRET,   /* string that is write-only: never echoed in errors, help or warnings */
    FW_TYPE_INT,      /* integer; "10" accepted */
    FW_TYPE_FLOAT,    /* number; "1.5" accepted */
    FW_TYPE_BOOL,     /* true/false, "true"/"false"/"1"/"0" */
    FW_TYPE_DURATION, /* seconds as an integer, "90", "90s", "15m", "720h", "30d"; stored as seconds
                       */
    FW_TYPE_STRINGS,  /* list of strings: JSON array or comma-separated string */
    FW_TYPE_MAP,      /* JSON object (string keys) */
    FW_TYPE_JSON,     /* any JSON value, validated by the handler */
    FW_TYPE_KVPAIRS,  /* Vault's TypeKVPairs: a JSON object, or key=value pairs (a list, or one
                         comma-separated string, as the CLI's `field=k=v` sends) */
};

struct fw_field {
    const char *name; /* NULL ends the table */
    enum fw_type type;
    bool required;   /* on create/update; a 400 "missing required field 'x'" otherwise */
    const char *def; /* default, as text parsed like input; NULL = none */
    const char *description;
    size_t max_len;   /* strings: bytes; lists: items; 0 = FW_MAX_STRING / FW_MAX_LIST */
    int64_t min, max; /* ints and durations: inclusive range when min < max */
};

struct fw_request {
    enum fw_op op;
    const char *path; /* relative to the mount, e.g. "tenants/acme/keys/openai/production" */
    json_t *data;     /* request body object as Vault sent it (borrowed; may be NULL) */
    json_t *fields;   /* validated, coerced values by field name (owned by the framework):
                         strings, integers (durations in seconds), reals, booleans,
                         arrays of strings, objects; defaults filled in; path segments too */
    json_t *provided; /* object: field name -> true for fields the caller sent */
    /* This request's storage (borrowed; its calls end with the request: storage_grpc.h).
       Valid only while the handler runs: never keep it. */
    struct storage *storage;
    void *backend; /* the plugin's state (struct byok *), passed through */
    const char *request_id;
    const char *entity_id;
    const char *display_name;
    const char *mount_point;
};

/* Typed getters over req->fields. Absent fields return the zero value / NULL. */
const char *fw_str(const struct fw_request *req, const char *name);
int64_t fw_int(const struct fw_request *req, const char *name);
double fw_float(const struct fw_request *req, const char *name);
bool fw_bool(const struct fw_request *req, const char *name);
json_t *fw_json(const struct fw_request *req, const char *name); /* borrowed */
/* Did the caller send this field (as opposed to it being defaulted)? */
bool fw_provided(const struct fw_request *req, const char *name);

enum fw_status {
    FW_OK,                    /* data (may be NULL: 404 on read, 204 otherwise) */
    FW_BAD_REQUEST,           /* error response {"error": message}: HTTP 400 */
    FW_UNSUPPORTED_PATH,      /* ProtoError 6: 404 */
    FW_UNSUPPORTED_OPERATION, /* ProtoError 5: 405 */
    FW_PERMISSION_DENIED,     /* ProtoError 8: 403 */
    FW_CODED,                 /* ProtoError 3 with http_code (e.g. 409, 412, 429) */
    FW_INTERNAL,              /* ProtoError 2, message is generic: 500 */
    FW_READONLY, /* ProtoError 0 "cannot write to readonly storage": Vault forwards to the active */
};

struct fw_response {
    enum fw_status status;
    json_t *data;     /* owned: response data object, or NULL */
    json_t *warnings; /* owned: array of strings, or NULL */
    int http_code;    /* for FW_CODED */
    char message[FW_MAX_MESSAGE];
    const char *pattern; /* the matched path's pattern (static), NULL before a match; for logs */
};

void fw_response_init(struct fw_response *resp);
void fw_response_done(struct fw_response *resp);
/* Sets a 400 error response with a printf message. Never put a secret in it. */
void fw_error(struct fw_response *resp, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fw_error_coded(struct fw_response *resp, int http_code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Takes ownership of data. */
void fw_reply(struct fw_response *resp, json_t *data);
void fw_warn(struct fw_response *resp, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * A handler fills resp and returns ERR_OK, or returns an error for failures
 * that are not the caller's fault (storage down, crypto failure): the framework
 * turns those into FW_INTERNAL with a generic message and logs them once.
 */
typedef enum err (*fw_handler_fn)(struct fw_request *req, struct fw_response *resp);
/* Existence check: sets *ret_exists. */
typedef enum err (*fw_exists_fn)(struct fw_request *req, bool *ret_exists);

struct fw_path {
    const char *pattern; /* NULL ends a table. "config", "providers/",
                            "tenants/{tenant}/keys/{provider}/{key_type}". A trailing "/" means a
                            list path: it matches "x" and "x/". */
    const struct fw_field
        *fields; /* may be NULL; path segments are fields implicitly (type string) */
    fw_handler_fn
        handlers[FW_OP__COUNT]; /* indexed by enum fw_op; FW_OP_HELP is answered by the framework */
    fw_exists_fn exists;
    const char *synopsis;
    const char *description;
    bool takes_arbitrary_input; /* no "unrecognized parameters" warning */
};

/*
 * Routes one request through a NULL-terminated list of path tables, first match
 * wins. Fills resp; returns ERR_OK unless something internal failed (then resp
 * already says FW_INTERNAL). Help on path "" answers the root help with an
 * OpenAPI document for every path.
 */
MUST_USE enum err fw_handle(const struct fw_path *const *tables, struct fw_request *req,
                            struct fw_response *resp);

/*
 * Existence check for create/update: *ret_found = false when the path has no
 * exists function; FW_UNSUPPORTED_PATH in resp when no path matches. Like
 * Vault's, the check does not validate: fields are built without the required
 * check and bad values are skipped, and a bad name in the path gives
 * *ret_found = false (HandleRequest then answers the 400), because Vault turns
 * any other error from a check into a 500.
 */
MUST_USE enum err fw_exists(const struct fw_path *const *tables, struct fw_request *req,
                            bool *ret_found, bool *ret_exists, struct fw_response *resp);

/*
 * The OpenAPI 3.0.2 document for every path in the tables, as a new reference
 * (the same document root help returns under "openapi"). Built once per tables
 * list and copied; NULL on out of memory.
 */
json_t *fw_openapi(const struct fw_path *const *tables);

/* Parses "30d", "720h", "1.5h", "15m", "90s", "90" into seconds (Vault's rules, fw_duration_parse
   in framework.c). ERR_INVAL on bad text or overflow. */
MUST_USE enum err fw_duration_parse(const char *s, int64_t *ret_seconds);

#endif
