/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The path framework (see framework.h and docs/internals/framework.md): route a
 * request through static path tables, validate and coerce its fields once,
 * answer help with help text and an OpenAPI document built from the same
 * tables, and normalise handler outcomes into Vault's error shapes.
 *
 * Matching is segment by segment, not by regular expression: patterns are a
 * handful of literal and {named} segments, so a byte comparison per segment is
 * both simpler to audit and cheaper than compiling RE2-like expressions (the
 * hot `config` read must stay near the transport floor). This module does not
 * touch storage or gRPC and never logs: handler failures come back to the
 * transport, which logs once per request.
 */
#include "plugin/framework.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "plugin/storage.h"

#ifndef BYOK_VERSION
#define BYOK_VERSION "0.0.0"
#endif

/* ---- names, operations ---------------------------------------------------------- */

bool fw_name_valid(const char *s)
{
    if (s == NULL) {
        return false;
    }
    size_t i = 0;
    for (; s[i] != '\0'; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (i > FW_NAME_MAX - 1 || !(alnum || (i > 0 && (c == '_' || c == '-')))) {
            return false;
        }
    }
    return i > 0;
}

const char *fw_name_quote(char out[FW_ECHO_NAME_BUF], const char *name)
{
    size_t n = strlen(name);
    if (n < FW_ECHO_NAME_MAX) {
        snprintf(out, FW_ECHO_NAME_BUF, "'%s'", name);
    } else {
        snprintf(out, FW_ECHO_NAME_BUF, "(a name of %zu characters, not quoted)", n);
    }
    return out;
}

bool fw_text_ok(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            return false;
        }
        if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
            return false; /* C1 */
        }
        if (p[0] == 0xe2 && p[1] == 0x80 &&
            (p[2] == 0x8e || p[2] == 0x8f || (p[2] >= 0xa8 && p[2] <= 0xae))) {
            return false; /* LRM, RLM, LS, PS, LRE..RLO */
        }
        if (p[0] == 0xe2 && p[1] == 0x81 && p[2] >= 0xa6 && p[2] <= 0xa9) {
            return false; /* LRI..PDI */
        }
    }
    return true;
}

static const char *const fw_op_names[FW_OP__COUNT] = {
    [FW_OP_READ] = "read",     [FW_OP_CREATE] = "create", [FW_OP_UPDATE] = "update",
    [FW_OP_DELETE] = "delete", [FW_OP_LIST] = "list",     [FW_OP_PATCH] = "patch",
    [FW_OP_HELP] = "help",
};

int fw_op_parse(const char *s)
{
    if (s == NULL) {
        return -1;
    }
    for (int i = 0; i < FW_OP__COUNT; i++) {
        if (strcmp(s, fw_op_names[i]) == 0) {
            return i;
        }
    }
    return -1;
}

const char *fw_op_name(enum fw_op op)
{
    return (unsigned)op < FW_OP__COUNT ? fw_op_names[op] : "unknown";
}

/* ---- typed getters -------------------------------------------------------------- */

static json_t *fw_field_value(const struct fw_request *req, const char *name)
{
    return req->fields != NULL ? json_object_get(req->fields, name) : NULL;
}

const char *fw_str(const struct fw_request *req, const char *name)
{
    return json_string_value(fw_field_value(req, name));
}

int64_t fw_int(const struct fw_request *req, const char *name)
{
    return json_integer_value(fw_field_value(req, name));
}

double fw_float(const struct fw_request *req, const char *name)
{
    return json_number_value(fw_field_value(req, name));
}

bool fw_bool(const struct fw_request *req, const char *name)
{
    return json_is_true(fw_field_value(req, name));
}

json_t *fw_json(const struct fw_request *req, const char *name)
{
    return fw_field_value(req, name);
}

bool fw_provided(const struct fw_request *req, const char *name)
{
    return req->provided != NULL && json_object_get(req->provided, name) != NULL;
}

/* ---- responses ------------------------------------------------------------------ */

void fw_response_init(struct fw_response *resp)
{
    memset(resp, 0, sizeof(*resp));
    resp->status = FW_OK;
}

void fw_response_done(struct fw_response *resp)
{
    json_decref(resp->data);
    json_decref(resp->warnings);
    resp->data = NULL;
    resp->warnings = NULL;
}

static void fw_vset(struct fw_response *resp, enum fw_status status, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void fw_vset(struct fw_response *resp, enum fw_status status, const char *fmt, va_list ap)
{
    /* An error replaces any data a handler may have set before failing. */
    json_decref(resp->data);
    resp->data = NULL;
    resp->status = status;
    vsnprintf(resp->message, sizeof(resp->message), fmt, ap); /* cut at FW_MAX_MESSAGE */
}

void fw_error(struct fw_response *resp, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fw_vset(resp, FW_BAD_REQUEST, fmt, ap);
    va_end(ap);
}

void fw_error_coded(struct fw_response *resp, int http_code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fw_vset(resp, FW_CODED, fmt, ap);
    va_end(ap);
    resp->http_code = http_code;
}

static void fw_status_set(struct fw_response *resp, enum fw_status status, const char *msg)
{
    json_decref(resp->data);
    resp->data = NULL;
    resp->status = status;
    snprintf(resp->message, sizeof(resp->message), "%s", msg);
}

void fw_reply(struct fw_response *resp, json_t *data)
{
    json_decref(resp->data);
    resp->data = data;
}

void fw_warn(struct fw_response *resp, const char *fmt, ...)
{
    char msg[FW_MAX_MESSAGE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (resp->warnings == NULL) {
        resp->warnings = json_array();
        if (resp->warnings == NULL) {
            return; /* a lost warning is not worth failing the request */
        }
    }
    json_array_append_new(resp->warnings, json_string(msg));
}

/* ---- durations ------------------------------------------------------------------ */

#define FW_NS INT64_C(1000000000)

/* Go's units (time.ParseDuration) and "d"; longest first, so that "ms" wins over "m". */
static const struct {
    const char *unit;
    int64_t ns;
} fw_duration_units[] = {
    {"ns", 1},    {"us", 1000},      {"\xc2\xb5s", 1000}, {"\xce\xbcs", 1000},  {"ms", 1000000},
    {"s", FW_NS}, {"m", 60 * FW_NS}, {"h", 3600 * FW_NS}, {"d", 86400 * FW_NS},
};

/* Adds n to *sec unless that overflows. */
static bool fw_add_seconds(int64_t *sec, int64_t n)
{
    if (n < 0 || *sec > INT64_MAX - n) {
        return false;
    }
    *sec += n;
    return true;
}

enum err fw_duration_parse(const char *s, int64_t *ret_seconds)
{
    /*
     * Like Vault's parseutil.ParseDurationSecond: a bare integer is seconds,
     * otherwise terms of a number (fractions allowed, "1.5h") and a unit of
     * Go's time.ParseDuration (ns, us, ms, s, m, h), plus "d" because admins
     * write "30d" (Vault takes "d" alone; we also take it in a sum, "1d12h").
     * Sub-second parts truncate toward zero, as Vault's int(d.Seconds()).
     * Negative values, exponents and signs are refused.
     */
    if (s == NULL || *s == '\0' || strlen(s) > 64) {
        return ERR_INVAL;
    }
    int64_t sec = 0, nsec = 0; /* nsec stays below FW_NS between terms */
    const char *p = s;
    bool bare = true;
    while (*p != '\0') {
        int64_t n = 0, frac = 0, den = 1;
        bool digits = false, point = false;
        for (; *p >= '0' && *p <= '9'; p++, digits = true) {
            if (n > (INT64_MAX - (*p - '0')) / 10) {
                return ERR_INVAL;
            }
            n = n * 10 + (*p - '0');
        }
        if (*p == '.') {
            point = true;
            for (p++; *p >= '0' && *p <= '9'; p++, digits = true) {
                if (den <
                    FW_NS) { /* nanoseconds are the finest unit: later digits change nothing */
                    frac = frac * 10 + (*p - '0');
                    den *= 10;
                }
            }
        }
        if (!digits) {
            return ERR_INVAL;
        }
        if (*p == '\0') {
            if (!bare || point) {
                return ERR_INVAL; /* "1h30", "1.5": a unitless number is seconds only alone */
            }
            sec = n;
            break;
        }
        int64_t unit = 0;
        size_t ulen = 0;
        for (size_t i = 0; i < sizeof(fw_duration_units) / sizeof(fw_duration_units[0]); i++) {
            size_t l = strlen(fw_duration_units[i].unit);
            if (l > ulen && strncmp(p, fw_duration_units[i].unit, l) == 0) {
                unit = fw_duration_units[i].ns;
                ulen = l;
            }
        }
        if (unit == 0) {
            return ERR_INVAL;
        }
        p += ulen;
        bare = false;
        if (unit >= FW_NS) {
            int64_t us = unit / FW_NS; /* whole seconds per unit */
            int64_t q = frac * us;     /* at most 999999999 * 86400 */
            if (n > INT64_MAX / us || !fw_add_seconds(&sec, n * us) ||
                !fw_add_seconds(&sec, q / den)) {
                return ERR_INVAL;
            }
            nsec += (q % den) * (FW_NS / den);
        } else {
            int64_t per = FW_NS / unit; /* units per second */
            if (!fw_add_seconds(&sec, n / per)) {
                return ERR_INVAL;
            }
            nsec += (n % per) * unit + frac * unit / den;
        }
        if (!fw_add_seconds(&sec, nsec / FW_NS)) {
            return ERR_INVAL;
        }
        nsec %= FW_NS;
    }
    *ret_seconds = sec;
    return ERR_OK;
}

/* ---- field coercion ------------------------------------------------------------- */

static const char *const fw_type_names[] = {
    [FW_TYPE_STRING] = "string",   [FW_TYPE_SECRET] = "string", [FW_TYPE_INT] = "int",
    [FW_TYPE_FLOAT] = "float",     [FW_TYPE_BOOL] = "bool",     [FW_TYPE_DURATION] = "duration",
    [FW_TYPE_STRINGS] = "list",    [FW_TYPE_MAP] = "map",       [FW_TYPE_JSON] = "json",
    [FW_TYPE_KVPAIRS] = "keypair",
};

/* The first non-blank character of a JSON string ('{' or '[': JSON text), or 0. */
static char fw_text_start(const json_t *v)
{
    const char *s = json_string_value(v);
    while (s != NULL && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')) {
        s++;
    }
    return s != NULL ? *s : '\0';
}

/* A value as text for string-like types: strings as they are, numbers and bools printed. */
static json_t *fw_stringify(json_t *v)
{
    char tmp[64];
    switch (json_typeof(v)) {
    case JSON_STRING:
        return json_incref(v);
    case JSON_INTEGER:
        snprintf(tmp, sizeof(tmp), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return json_string(tmp);
    case JSON_REAL:
        /* The shortest text that reads back as the same double: 0.1, not 0.10000000000000001. */
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(tmp, sizeof(tmp), "%.*g", prec, json_real_value(v));
            if (strtod(tmp, NULL) == json_real_value(v)) {
                break;
            }
        }
        return json_string(tmp);
    case JSON_TRUE:
        return json_string("true");
    case JSON_FALSE:
        return json_string("false");
    default:
        return NULL;
    }
}

static bool fw_parse_int(const char *s, int64_t *ret)
{
    if (*s == '\0' || strlen(s) > 32) {
        return false;
    }
    char *end = NULL;
    errno = 0;
    long long n = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || end == s || (s[0] != '-' && (s[0] < '0' || s[0] > '9'))) {
        return false;
    }
    *ret = n;
    return true;
}

static const struct {
    const char *text;
    bool value;
} fw_bool_words[] = {
    /* Go's strconv.ParseBool, which Vault's FieldData uses for strings. */
    {"1", true},  {"t", true},  {"T", true},  {"true", true},   {"TRUE", true},   {"True", true},
    {"0", false}, {"f", false}, {"F", false}, {"false", false}, {"FALSE", false}, {"False", false},
};

static bool fw_string_ok(const json_t *s, size_t max, char *why, size_t whylen)
{
    size_t len = json_string_length(s);
    if (len > max) {
        snprintf(why, whylen, "longer than %zu bytes", max);
        return false;
    }
    if (memchr(json_string_value(s), '\0', len) != NULL) {
        snprintf(why, whylen, "contains a NUL byte");
        return false;
    }
    return true;
}

/* Splits "a, b,,c" into ["a","b","c"] (parseutil.ParseCommaStringSlice). */
static json_t *fw_split_commas(const char *s, size_t max_items, size_t max_len, char *why,
                               size_t whylen)
{
    json_t *arr = json_array();
    if (arr == NULL) {
        return NULL;
    }
    const char *p = s;
    while (*p != '\0') {
        const char *comma = strchr(p, ',');
        const char *end = comma != NULL ? comma : p + strlen(p);
        const char *a = p, *b = end;
        while (a < b && (*a == ' ' || *a == '\t')) {
            a++;
        }
        while (b > a && (b[-1] == ' ' || b[-1] == '\t')) {
            b--;
        }
        if (b > a) {
            if ((size_t)(b - a) > max_len) {
                snprintf(why, whylen, "an item is longer than %zu bytes", max_len);
                goto out_fail;
            }
            if (json_array_size(arr) >= max_items) {
                snprintf(why, whylen, "more than %zu items", max_items);
                goto out_fail;
            }
            if (json_array_append_new(arr, json_stringn(a, (size_t)(b - a))) != 0) {
                snprintf(why, whylen, "out of memory");
                goto out_fail;
            }
        }
        p = comma != NULL ? comma + 1 : end;
    }
    return arr;
out_fail:
    json_decref(arr);
    return NULL;
}

/*
 * key=value pairs as Vault's TypeKVPairs takes them: a list of "k=v"
 * strings, or one string of comma-separated pairs. Split at the first '=';
 * the key may not be empty; a later pair overrides an earlier one.
 */
static json_t *fw_kv_pairs(json_t *v, size_t max_items, char *why, size_t whylen)
{
    json_t *items = NULL;
    if (json_is_string(v)) {
        if (!fw_string_ok(v, (size_t)FW_MAX_DATA, why, whylen)) {
            return NULL;
        }
        items = fw_split_commas(json_string_value(v), max_items, FW_MAX_STRING, why, whylen);
        if (items == NULL) {
            return NULL;
        }
    } else if (json_is_array(v) && json_array_size(v) <= max_items) {
        items = json_incref(v);
    } else if (json_is_array(v)) {
        snprintf(why, whylen, "more than %zu items", max_items);
        return NULL;
    } else {
        snprintf(why, whylen, "expected an object or key=value pairs");
        return NULL;
    }
    json_t *out = json_object();
    if (out == NULL) {
        snprintf(why, whylen, "out of memory");
        goto out_fail;
    }
    size_t i;
    json_t *item;
    json_array_foreach(items, i, item)
    {
        const char *pair = json_string_value(item);
        if (pair != NULL && !fw_string_ok(item, FW_MAX_STRING, why, whylen)) {
            goto out_fail;
        }
        const char *eq = pair != NULL ? strchr(pair, '=') : NULL;
        if (eq == NULL || eq == pair) {
            snprintf(why, whylen, "item %zu is not key=value", i + 1);
            goto out_fail;
        }
        char *key = strndup(pair, (size_t)(eq - pair));
        if (key == NULL || json_object_set_new(out, key, json_string(eq + 1)) != 0) {
            free(key);
            snprintf(why, whylen, "out of memory");
            goto out_fail;
        }
        free(key);
    }
    if (json_object_size(out) > max_items) {
        snprintf(why, whylen, "more than %zu entries", max_items);
        goto out_fail;
    }
    json_decref(items);
    return out;
out_fail:
    json_decref(items);
    json_decref(out);
    return NULL;
}

/*
 * A plain decimal number: [+-]digits[.digits][e[+-]digits], either side of
 * the point may be empty but not both. No spaces, no hex, no inf/nan, which
 * strtod would all take. Stricter than Go's strconv.ParseFloat (what Vault
 * uses for a float in a query string), which also takes hex floats such as
 * "0x1p4", "Inf" and "NaN": none of them is a sensible limit or price.
 */
static bool fw_decimal_syntax(const char *s)
{
    size_t i = (s[0] == '+' || s[0] == '-') ? 1 : 0;
    size_t digits = 0;
    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        digits++;
    }
    if (s[i] == '.') {
        for (i++; s[i] >= '0' && s[i] <= '9'; i++) {
            digits++;
        }
    }
    if (digits == 0) {
        return false;
    }
    if (s[i] == 'e' || s[i] == 'E') {
        i++;
        i += (s[i] == '+' || s[i] == '-') ? 1 : 0;
        size_t exp = 0;
        for (; s[i] >= '0' && s[i] <= '9'; i++) {
            exp++;
        }
        if (exp == 0) {
            return false;
        }
    }
    return s[i] == '\0';
}

/*
 * Coerces one input value to the field's type. On failure returns NULL with a
 * reason in why that never quotes the value (it may be a secret, and quoting
 * peer text into messages invites log injection).
 */
/*
 * A JSON object or array given as a string, as `vault write path
 * field='{...}'` sends it: parsed (it lies within the request's data, so it is
 * bounded by FW_MAX_DATA). A new reference; NULL with why when it does not parse.
 */
static json_t *fw_json_text(json_t *v, char *why, size_t whylen)
{
    const char *t = json_string_value(v);
    size_t i = 0;
    while (t[i] == ' ' || t[i] == '\t' || t[i] == '\n' || t[i] == '\r') {
        i++;
    }
    if (t[i] != '{' && t[i] != '[') {
        return json_incref(v);
    }
    json_error_t err;
    json_t *parsed = json_loadb(t, json_string_length(v), JSON_REJECT_DUPLICATES, &err);
    if (parsed == NULL) {
        /* Line and column only: err.text may quote the input. */
        snprintf(why, whylen, "not valid JSON (line %d, column %d)", err.line, err.column);
    }
    OPENSSL_cleanse(&err, sizeof(err)); /* nor may it stay on the stack */
    return parsed;
}

static json_t *fw_coerce(const struct fw_field *f, json_t *v, char *why, size_t whylen)
{
    size_t max_str = f->max_len != 0 ? f->max_len : FW_MAX_STRING;
    size_t max_items = f->max_len != 0 ? f->max_len : FW_MAX_LIST;
    bool ranged = f->min < f->max;
    json_t *out = NULL;
    int64_t n = 0;

    switch (f->type) {
    case FW_TYPE_STRING:
        out = fw_stringify(v);
        if (out == NULL) {
            snprintf(why, whylen, "expected a string");
            return NULL;
        }
        if (!fw_string_ok(out, max_str, why, whylen)) {
            json_decref(out);
            return NULL;
        }
        return out;
    case FW_TYPE_SECRET:
        if (!json_is_string(v)) {
            snprintf(why, whylen, "expected a string");
            return NULL;
        }
        if (!fw_string_ok(v, max_str, why, whylen)) {
            return NULL;
        }
        return json_incref(v);
    case FW_TYPE_INT:
    case FW_TYPE_DURATION:
        if (json_is_integer(v)) {
            n = json_integer_value(v);
        } else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
                   fabs(json_real_value(v)) < 9.0e15) {
            n = (int64_t)json_real_value(v); /* 10.0 from a Go float64 round trip */
        } else if (json_is_string(v) &&
                   (f->type == FW_TYPE_INT
                        ? fw_parse_int(json_string_value(v), &n) /* "10" from a query string */
                        : fw_duration_parse(json_string_value(v), &n) == ERR_OK)) {
            /* parsed into n */
        } else {
            snprintf(why, whylen, "%s",
                     f->type == FW_TYPE_INT
                         ? "expected an integer"
                         : "expected a duration such as 90, 90s, 15m, 1.5h, 720h or 30d");
            return NULL;
        }
        if (f->type == FW_TYPE_DURATION && n < 0) {
            snprintf(why, whylen, "a duration cannot be negative");
            return NULL;
        }
        if (ranged && (n < f->min || n > f->max)) {
            snprintf(why, whylen, "must be between %lld and %lld%s", (long long)f->min,
                     (long long)f->max, f->type == FW_TYPE_DURATION ? " seconds" : "");
            return NULL;
        }
        return json_integer(n);
    case FW_TYPE_FLOAT: {
        double d = 0;
        if (json_is_number(v)) {
            d = json_number_value(v);
        } else if (json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) < 64) {
            char *end = NULL;
            errno = 0;
            const char *text = json_string_value(v);
            d = fw_decimal_syntax(text) ? strtod(text, &end) : 0;
            if (end == NULL || errno != 0 || *end != '\0') {
                snprintf(why, whylen, "expected a number");
                return NULL;
            }
        } else {
            snprintf(why, whylen, "expected a number");
            return NULL;
        }
        if (!isfinite(d)) {
            snprintf(why, whylen, "expected a finite number");
            return NULL;
        }
        if (ranged && (d < (double)f->min || d > (double)f->max)) {
            snprintf(why, whylen, "must be between %lld and %lld", (long long)f->min,
                     (long long)f->max);
            return NULL;
        }
        return json_real(d);
    }
    case FW_TYPE_BOOL:
        if (json_is_boolean(v)) {
            return json_incref(v);
        }
        if (json_is_integer(v) && (json_integer_value(v) == 0 || json_integer_value(v) == 1)) {
            return json_boolean(json_integer_value(v) == 1);
        }
        if (json_is_string(v)) {
            for (size_t i = 0; i < sizeof(fw_bool_words) / sizeof(fw_bool_words[0]); i++) {
                if (strcmp(json_string_value(v), fw_bool_words[i].text) == 0) {
                    return json_boolean(fw_bool_words[i].value);
                }
            }
        }
        snprintf(why, whylen, "expected a boolean");
        return NULL;
    case FW_TYPE_STRINGS:
        if (json_is_string(v)) {
            if (!fw_string_ok(v, (size_t)FW_MAX_DATA, why, whylen)) {
                return NULL;
            }
            return fw_split_commas(json_string_value(v), max_items, FW_MAX_STRING, why, whylen);
        }
        if (!json_is_array(v)) {
            snprintf(why, whylen, "expected a list of strings");
            return NULL;
        }
        if (json_array_size(v) > max_items) {
            snprintf(why, whylen, "more than %zu items", max_items);
            return NULL;
        }
        out = json_array();
        if (out == NULL) {
            snprintf(why, whylen, "out of memory");
            return NULL;
        }
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item)
        {
            json_t *s = fw_stringify(item);
            if (s == NULL) {
                snprintf(why, whylen, "item %zu is not a string", i);
                goto out_fail;
            }
            if (!fw_string_ok(s, FW_MAX_STRING, why, whylen)) {
                json_decref(s);
                goto out_fail;
            }
            json_array_append_new(out, s);
        }
        return out;
    case FW_TYPE_KVPAIRS:
        if (fw_text_start(v) == '[') {
            /* The JSON text of a list of pairs, as `field='["k=v"]'` sends it. */
            json_t *list = fw_json_text(v, why, whylen);
            out = list != NULL ? fw_kv_pairs(list, max_items, why, whylen) : NULL;
            json_decref(list);
            return out;
        }
        if (!json_is_object(v) && fw_text_start(v) != '{') {
            return fw_kv_pairs(v, max_items, why, whylen);
        }
        /* An object, or the JSON text of one: as a map. */
        __attribute__((fallthrough));
    case FW_TYPE_MAP:
        out = json_is_string(v) ? fw_json_text(v, why, whylen) : json_incref(v);
        if (out == NULL) {
            return NULL;
        }
        if (!json_is_object(out)) {
            snprintf(why, whylen, "expected an object");
            goto out_fail;
        }
        if (json_object_size(out) > max_items) {
            snprintf(why, whylen, "more than %zu entries", max_items);
            goto out_fail;
        }
        return out;
    case FW_TYPE_JSON:
        return json_is_string(v) ? fw_json_text(v, why, whylen) : json_incref(v);
    }
    snprintf(why, whylen, "unsupported field type");
    return NULL;
out_fail:
    json_decref(out);
    return NULL;
}

/* ---- matching ------------------------------------------------------------------- */

struct fw_match {
    const struct fw_path *path;
    size_t nseg;
    struct {
        const char *name; /* points into the pattern */
        size_t name_len;
        const char *value; /* points into the request path */
        size_t value_len;
        bool any;
    } seg[FW_MAX_SEGMENTS];
};

/*
 * Matches path against pattern structurally: literal segments byte for byte,
 * named segments against one non-empty path segment. A trailing "/" on the
 * pattern makes it a list path, matching with or without the slash.
 */
static bool fw_match_one(const struct fw_path *p, const char *path, struct fw_match *m)
{
    const char *pat = p->pattern;
    size_t plen = strlen(pat);
    size_t slen = strlen(path);
    bool list = plen > 0 && pat[plen - 1] == '/';
    if (list) {
        plen--;
        if (slen > 0 && path[slen - 1] == '/') {
            slen--;
        }
    }
    m->path = p;
    m->nseg = 0;
    size_t i = 0, j = 0;
    while (i < plen) {
        if (pat[i] == '{') {
            const char *close = memchr(pat + i, '}', plen - i);
            if (close == NULL || m->nseg == FW_MAX_SEGMENTS) {
                return false; /* malformed table entry: never matches */
            }
            size_t k = j;
            while (k < slen && path[k] != '/') {
                k++;
            }
            if (k == j) {
                return false;
            }
            const char *name = pat + i + 1;
            size_t nlen = (size_t)(close - name);
            bool any = false;
            const char *colon = memchr(name, ':', nlen);
            if (colon != NULL) {
                any = strncmp(colon, ":any", 4) == 0;
                nlen = (size_t)(colon - name);
            }
            m->seg[m->nseg].name = name;
            m->seg[m->nseg].name_len = nlen;
            m->seg[m->nseg].value = path + j;
            m->seg[m->nseg].value_len = k - j;
            m->seg[m->nseg].any = any;
            m->nseg++;
            i = (size_t)(close - pat) + 1;
            j = k;
            continue;
        }
        if (j >= slen || pat[i] != path[j]) {
            return false;
        }
        i++;
        j++;
    }
    return j == slen;
}

/* Is every named segment a valid name? Sets field on failure. */
static bool fw_match_names_ok(const struct fw_match *m, size_t *ret_bad)
{
    for (size_t s = 0; s < m->nseg; s++) {
        if (m->seg[s].any) {
            continue;
        }
        char tmp[FW_NAME_MAX + 2];
        if (m->seg[s].value_len > FW_NAME_MAX) {
            *ret_bad = s;
            return false;
        }
        memcpy(tmp, m->seg[s].value, m->seg[s].value_len);
        tmp[m->seg[s].value_len] = '\0';
        if (!fw_name_valid(tmp)) {
            *ret_bad = s;
            return false;
        }
    }
    return true;
}

enum fw_route {
    FW_ROUTE_OK,
    FW_ROUTE_NONE,
    FW_ROUTE_BAD_NAME,
};

/*
 * First structurally matching path whose names are valid wins. If paths match
 * only with an invalid name, the first of them is reported (a 400 naming the
 * field) rather than a 404, as docs/api.md promises.
 */
static enum fw_route fw_route(const struct fw_path *const *tables, const char *path,
                              struct fw_match *m, size_t *ret_bad)
{
    struct fw_match cand;
    bool have_bad = false;
    for (size_t t = 0; tables[t] != NULL; t++) {
        for (const struct fw_path *p = tables[t]; p->pattern != NULL; p++) {
            if (!fw_match_one(p, path, &cand)) {
                continue;
            }
            size_t bad = 0;
            if (fw_match_names_ok(&cand, &bad)) {
                *m = cand;
                return FW_ROUTE_OK;
            }
            if (!have_bad) {
                *m = cand;
                *ret_bad = bad;
                have_bad = true;
            }
        }
    }
    return have_bad ? FW_ROUTE_BAD_NAME : FW_ROUTE_NONE;
}

static bool fw_is_segment(const struct fw_match *m, const char *name)
{
    size_t len = strlen(name);
    for (size_t s = 0; s < m->nseg; s++) {
        if (m->seg[s].name_len == len && memcmp(m->seg[s].name, name, len) == 0) {
            return true;
        }
    }
    return false;
}

static const struct fw_field *fw_field_find(const struct fw_path *p, const char *name)
{
    for (const struct fw_field *f = p->fields; f != NULL && f->name != NULL; f++) {
        if (strcmp(f->name, name) == 0) {
            return f;
        }
    }
    return NULL;
}

static int fw_strcmp_qsort(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * A parameter name short and plain enough to echo in a warning. A name is the
 * caller's text and may be a secret pasted into the wrong place (a JSON body
 * whose key is the key value); provider keys are at least FW_ECHO_NAME_MAX.
 */
static bool fw_name_echoable(const char *name)
{
    size_t n = 0;
    for (; name[n] != '\0'; n++) {
        unsigned char ch = (unsigned char)name[n];
        if (n >= FW_ECHO_NAME_MAX || !(isalnum(ch) || ch == '_' || ch == '-')) {
            return false;
        }
    }
    return n > 0;
}

/*
 * Adds "<prefix>[a b c]" with the names sorted, as Go prints a []string with
 * %v; names that are not echoable, and those past the n collected of total,
 * are counted after it instead.
 */
static void fw_warn_names(struct fw_response *resp, const char *prefix, const char **names,
                          size_t n, size_t total)
{
    char msg[FW_MAX_MESSAGE];
    qsort(names, n, sizeof(*names), fw_strcmp_qsort);
    size_t off = (size_t)snprintf(msg, sizeof(msg), "%s[", prefix);
    size_t shown = 0;
    for (size_t i = 0; i < n && off < sizeof(msg); i++) {
        if (fw_name_echoable(names[i])) {
            off += (size_t)snprintf(msg + off, sizeof(msg) - off, "%s%s", shown > 0 ? " " : "",
                                    names[i]);
            shown++;
        }
    }
    if (off < sizeof(msg)) {
        off += (size_t)snprintf(msg + off, sizeof(msg) - off, "]");
    }
    if (shown < total && off < sizeof(msg)) {
        snprintf(msg + off, sizeof(msg) - off,
                 " and %zu more not shown (longer than %d characters, not letters, digits, "
                 "'_' and '-', or past the first %zu)",
                 total - shown, FW_ECHO_NAME_MAX, n);
    }
    fw_warn(resp, "%s", msg);
}

/*
 * Builds req->fields and req->provided from the body, the defaults and the
 * path segments. *ret_ok = false with resp set to a 400 on a validation
 * failure. lenient (for existence checks): skip required fields and bad values.
 */
static enum err fw_fields_build(const struct fw_match *m, struct fw_request *req,
                                struct fw_response *resp, bool lenient, bool *ret_ok)
{
    const struct fw_path *p = m->path;
    json_t *data = json_is_object(req->data) ? req->data : NULL;
    char why[256];
    *ret_ok = false;

    if (req->data != NULL && !json_is_object(req->data) && !json_is_null(req->data) && !lenient) {
        fw_error(resp, "request data must be a JSON object");
        return ERR_OK;
    }
    req->fields = json_object();
    req->provided = json_object();
    if (req->fields == NULL || req->provided == NULL) {
        return ERR_NOMEM;
    }

    for (const struct fw_field *f = p->fields; f != NULL && f->name != NULL; f++) {
        if (fw_is_segment(m, f->name)) {
            continue; /* the path wins; set below */
        }
        json_t *v = data != NULL ? json_object_get(data, f->name) : NULL;
        bool from_default = false;
        json_t *def = NULL;
        if (v == NULL || json_is_null(v)) {
            if (f->def == NULL) {
                if (f->required && !lenient &&
                    (req->op == FW_OP_CREATE || req->op == FW_OP_UPDATE)) {
                    fw_error(resp, "missing required field '%s'", f->name);
                    return ERR_OK;
                }
                continue;
            }
            def = json_string(f->def);
            if (def == NULL) {
                return ERR_NOMEM;
            }
            v = def;
            from_default = true;
        }
        unsigned long failures = storage_json_failures_seen();
        why[0] = '\0';
        json_t *c = fw_coerce(f, v, why, sizeof(why));
        json_decref(def);
        if (storage_json_failures_seen() != failures || (c == NULL && why[0] == '\0')) {
            /*
             * Out of memory, maybe with a byte dropped from a parsed value, or
             * an allocation that failed with no reason given: never a 400.
             */
            json_decref(c);
            return ERR_NOMEM;
        }
        if (c == NULL) {
            if (from_default) {
                /* A broken table is our bug, not the caller's. */
                return ERR_INTERNAL;
            }
            if (lenient) {
                continue; /* the request itself will report it */
            }
            fw_error(resp, "invalid value for field '%s': %s", f->name, why);
            return ERR_OK;
        }
        if (json_object_set_new(req->fields, f->name, c) != 0) {
            return ERR_NOMEM;
        }
        if (!from_default && json_object_set_new(req->provided, f->name, json_true()) != 0) {
            return ERR_NOMEM;
        }
    }

    const char *replaced[FW_MAX_SEGMENTS];
    size_t nreplaced = 0;
    for (size_t s = 0; s < m->nseg; s++) {
        char name[FW_NAME_MAX + 1];
        size_t nlen = m->seg[s].name_len < FW_NAME_MAX ? m->seg[s].name_len : FW_NAME_MAX;
        memcpy(name, m->seg[s].name, nlen);
        name[nlen] = '\0';
        json_t *v = json_stringn(m->seg[s].value, m->seg[s].value_len);
        if (v == NULL || json_object_set_new(req->fields, name, v) != 0 ||
            json_object_set_new(req->provided, name, json_true()) != 0) {
            return ERR_NOMEM;
        }
        if (data != NULL && json_object_get(data, name) != NULL) {
            /* Keep the table's own key pointer: name is on this stack frame. */
            replaced[nreplaced++] = json_object_iter_key(json_object_iter_at(data, name));
        }
    }
    if (nreplaced > 0) {
        fw_warn_names(resp,
                      "Endpoint replaced the value of these parameters with the values captured "
                      "from the endpoint's path: ",
                      replaced, nreplaced, nreplaced);
    }

    if (data != NULL && !p->takes_arbitrary_input) {
        const char *ignored[64];
        size_t nignored = 0;
        size_t nunknown = 0;
        const char *key;
        json_t *v;
        json_object_foreach(data, key, v)
        {
            if (fw_field_find(p, key) != NULL || fw_is_segment(m, key)) {
                continue;
            }
            /* "?list=true" arrives as data on some Vault versions. */
            if (req->op == FW_OP_LIST && strcmp(key, "list") == 0) {
                continue;
            }
            nunknown++;
            if (nignored < sizeof(ignored) / sizeof(ignored[0])) {
                ignored[nignored++] = key;
            }
        }
        if (nignored > 0) {
            fw_warn_names(resp, "Endpoint ignored these unrecognized parameters: ", ignored,
                          nignored, nunknown);
        }
    }
    *ret_ok = true;
    return ERR_OK;
}

/* ---- help and OpenAPI ------------------------------------------------------------ */

static const char *const fw_oas_types[] = {
    [FW_TYPE_STRING] = "string",  [FW_TYPE_SECRET] = "string", [FW_TYPE_INT] = "integer",
    [FW_TYPE_FLOAT] = "number",   [FW_TYPE_BOOL] = "boolean",  [FW_TYPE_DURATION] = "string",
    [FW_TYPE_STRINGS] = "array",  [FW_TYPE_MAP] = "object",    [FW_TYPE_JSON] = "object",
    [FW_TYPE_KVPAIRS] = "object",
};

/* "tenants/{tenant:any}/keys/" -> "/tenants/{tenant}/keys/" */
static void fw_oas_path_name(const char *pattern, char *out, size_t outlen)
{
    size_t o = 0;
    if (o + 1 < outlen) {
        out[o++] = '/';
    }
    bool in_name = false, skip = false;
    for (const char *p = pattern; *p != '\0' && o + 1 < outlen; p++) {
        if (*p == '{') {
            in_name = true;
            skip = false;
        } else if (*p == '}') {
            in_name = false;
            skip = false;
        } else if (in_name && *p == ':') {
            skip = true;
            continue;
        }
        if (!skip) {
            out[o++] = *p;
        }
    }
    out[o] = '\0';
}

static json_t *fw_oas_schema(const struct fw_field *f)
{
    json_t *s = json_pack("{s:s, s:s}", "type", fw_oas_types[f->type], "description",
                          f->description != NULL ? f->description : "");
    if (s == NULL) {
        return NULL;
    }
    if (f->type == FW_TYPE_STRINGS) {
        json_object_set_new(s, "items", json_pack("{s:s}", "type", "string"));
    }
    if (f->type == FW_TYPE_DURATION) {
        json_object_set_new(s, "format", json_string("duration"));
    }
    if (f->type == FW_TYPE_SECRET) {
        json_object_set_new(s, "format", json_string("password"));
    }
    if (f->def != NULL && f->type != FW_TYPE_SECRET) {
        json_object_set_new(s, "default", json_string(f->def));
    }
    return s;
}

static json_t *fw_oas_path_item(const struct fw_path *p)
{
    json_t *item = json_object();
    json_t *params = json_array();
    json_t *props = json_object();
    json_t *required = json_array();
    if (item == NULL || params == NULL || props == NULL || required == NULL) {
        goto out_fail;
    }
    json_object_set_new(item, "description", json_string(p->synopsis != NULL ? p->synopsis : ""));
    /* Named segments are path parameters. */
    for (const char *c = strchr(p->pattern, '{'); c != NULL; c = strchr(c + 1, '{')) {
        const char *end = strpbrk(c, ":}");
        if (end == NULL) {
            break;
        }
        json_array_append_new(params, json_pack("{s:s%, s:s, s:s, s:{s:s}, s:b}", "name", c + 1,
                                                (size_t)(end - c - 1), "description", "", "in",
                                                "path", "schema", "type", "string", "required", 1));
    }
    for (const struct fw_field *f = p->fields; f != NULL && f->name != NULL; f++) {
        if (strstr(p->pattern, f->name) != NULL && strchr(p->pattern, '{') != NULL) {
            char needle[FW_NAME_MAX + 3];
            snprintf(needle, sizeof(needle), "{%s", f->name);
            if (strstr(p->pattern, needle) != NULL) {
                continue;
            }
        }
        json_object_set_new(props, f->name, fw_oas_schema(f));
        if (f->required) {
            json_array_append_new(required, json_string(f->name));
        }
    }
    if (json_array_size(params) > 0) {
        json_object_set(item, "parameters", params);
    }
    static const struct {
        enum fw_op op;
        const char *method;
    } methods[] = {
        {FW_OP_READ, "get"},    {FW_OP_LIST, "get"},      {FW_OP_UPDATE, "post"},
        {FW_OP_CREATE, "post"}, {FW_OP_DELETE, "delete"}, {FW_OP_PATCH, "patch"},
    };
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        if (p->handlers[methods[i].op] == NULL || json_object_get(item, methods[i].method)) {
            continue;
        }
        json_t *op =
            json_pack("{s:s, s:{s:{s:s}}}", "summary", p->synopsis != NULL ? p->synopsis : "",
                      "responses", "200", "description", "OK");
        if (op == NULL) {
            goto out_fail;
        }
        if (methods[i].op == FW_OP_LIST) {
            json_object_set_new(op, "parameters",
                                json_pack("[{s:s, s:s, s:s, s:{s:s, s:[s]}, s:b}]", "name", "list",
                                          "description", "Must be set to `true`", "in", "query",
                                          "schema", "type", "string", "enum", "true", "required",
                                          1));
        }
        if (methods[i].op == FW_OP_UPDATE || methods[i].op == FW_OP_CREATE ||
            methods[i].op == FW_OP_PATCH) {
            json_t *schema = json_pack("{s:s, s:O}", "type", "object", "properties", props);
            if (schema != NULL && json_array_size(required) > 0) {
                json_object_set(schema, "required", required);
            }
            json_object_set_new(op, "requestBody",
                                json_pack("{s:b, s:{s:{s:o}}}", "required", 1, "content",
                                          "application/json", "schema", schema));
        }
        json_object_set_new(item, methods[i].method, op);
    }
    json_decref(params);
    json_decref(props);
    json_decref(required);
    return item;
out_fail:
    json_decref(item);
    json_decref(params);
    json_decref(props);
    json_decref(required);
    return NULL;
}

static json_t *fw_oas_doc(void)
{
    return json_pack("{s:s, s:{s:s, s:s, s:s, s:{s:s, s:s}}, s:{}, s:{s:{}}}", "openapi", "3.0.2",
                     "info", "title", "byok", "description",
                     "Bring-your-own-key secrets engine for AI provider API keys", "version",
                     BYOK_VERSION, "license", "name", "Mozilla Public License 2.0", "url",
                     "https://www.mozilla.org/en-US/MPL/2.0", "paths", "components", "schemas");
}

static enum err fw_oas_add(json_t *doc, const struct fw_path *p)
{
    char name[FW_MAX_PATH];
    fw_oas_path_name(p->pattern, name, sizeof(name));
    json_t *paths = json_object_get(doc, "paths");
    json_t *item = fw_oas_path_item(p);
    if (item == NULL) {
        return ERR_NOMEM;
    }
    json_t *have = json_object_get(paths, name);
    if (have != NULL) {
        /* Two table entries for one OpenAPI path: merge their methods. */
        json_object_update_missing(have, item);
        json_decref(item);
        return ERR_OK;
    }
    return json_object_set_new(paths, name, item) == 0 ? ERR_OK : ERR_NOMEM;
}

/* The root document is built once per tables list: the tables are static. */
static pthread_mutex_t fw_oas_lock = PTHREAD_MUTEX_INITIALIZER;
static const struct fw_path *const *fw_oas_tables;
static json_t *fw_oas_root;

json_t *fw_openapi(const struct fw_path *const *tables)
{
    json_t *out = NULL;
    pthread_mutex_lock(&fw_oas_lock);
    if (fw_oas_root == NULL || fw_oas_tables != tables) {
        json_t *doc = fw_oas_doc();
        for (size_t t = 0; doc != NULL && tables[t] != NULL; t++) {
            for (const struct fw_path *p = tables[t]; p->pattern != NULL; p++) {
                if (fw_oas_add(doc, p) != ERR_OK) {
                    json_decref(doc);
                    doc = NULL;
                    break;
                }
            }
        }
        if (doc != NULL) {
            json_decref(fw_oas_root);
            fw_oas_root = doc;
            fw_oas_tables = tables;
        }
    }
    /* A copy: the caller owns and may serialise it concurrently with others. */
    if (fw_oas_root != NULL) {
        out = json_deep_copy(fw_oas_root);
    }
    pthread_mutex_unlock(&fw_oas_lock);
    return out;
}

static const char *fw_field_type_name(const struct fw_field *f)
{
    return fw_type_names[f->type];
}

static json_t *fw_help_path(const struct fw_path *p, const char *req_path)
{
    char text[8192];
    size_t off = 0;
    off += (size_t)snprintf(text + off, sizeof(text) - off,
                            "Request:        %.256s\nMatching Route: %s\n\n%s\n\n## PARAMETERS\n",
                            req_path, p->pattern, p->synopsis != NULL ? p->synopsis : "");
    for (const struct fw_field *f = p->fields; f != NULL && f->name != NULL && off < sizeof(text);
         f++) {
        off +=
            (size_t)snprintf(text + off, sizeof(text) - off, "\n%s (%s)\n\n    %s\n", f->name,
                             fw_field_type_name(f), f->description != NULL ? f->description : "");
    }
    if (off < sizeof(text)) {
        snprintf(text + off, sizeof(text) - off, "\n## DESCRIPTION\n\n%s\n",
                 p->description != NULL ? p->description : "");
    }
    json_t *doc = fw_oas_doc();
    if (doc == NULL || fw_oas_add(doc, p) != ERR_OK) {
        json_decref(doc);
        return NULL;
    }
    return json_pack("{s:s, s:n, s:o}", "help", text, "see_also", "openapi", doc);
}

static json_t *fw_help_root(const struct fw_path *const *tables)
{
    char text[16384];
    size_t off = (size_t)snprintf(text, sizeof(text),
                                  "## DESCRIPTION\n\nThe byok secrets engine stores tenants' AI "
                                  "provider API keys under envelope encryption and hands them to "
                                  "agents.\n\n## PATHS\n\nThe following paths are supported by "
                                  "this backend. To view help for any of the paths below, use the "
                                  "help command with any route matching the path pattern.\n");
    for (size_t t = 0; tables[t] != NULL; t++) {
        for (const struct fw_path *p = tables[t]; p->pattern != NULL && off < sizeof(text); p++) {
            off += (size_t)snprintf(text + off, sizeof(text) - off, "\n    %s\n        %s\n",
                                    p->pattern, p->synopsis != NULL ? p->synopsis : "");
        }
    }
    json_t *doc = fw_openapi(tables);
    if (doc == NULL) {
        return NULL;
    }
    return json_pack("{s:s, s:n, s:o}", "help", text, "see_also", "openapi", doc);
}

/* ---- dispatch -------------------------------------------------------------------- */

static void fw_request_reset(struct fw_request *req)
{
    json_decref(req->fields);
    json_decref(req->provided);
    req->fields = NULL;
    req->provided = NULL;
}

/* Common front half of fw_handle and fw_exists: limits, routing, names. */
static bool fw_front(const struct fw_path *const *tables, struct fw_request *req,
                     struct fw_response *resp, struct fw_match *m)
{
    if (req->path == NULL || strnlen(req->path, FW_MAX_PATH + 1) > FW_MAX_PATH) {
        fw_error(resp, "path longer than %d bytes", FW_MAX_PATH);
        return false;
    }
    size_t bad = 0;
    switch (fw_route(tables, req->path, m, &bad)) {
    case FW_ROUTE_OK:
        return true;
    case FW_ROUTE_BAD_NAME:
        fw_error(resp, "invalid value for field '%.*s': must match [a-z0-9][a-z0-9_-]{0,62}",
                 (int)m->seg[bad].name_len, m->seg[bad].name);
        return false;
    case FW_ROUTE_NONE:
        break;
    }
    fw_status_set(resp, FW_UNSUPPORTED_PATH, "unsupported path");
    return false;
}

enum err fw_handle(const struct fw_path *const *tables, struct fw_request *req,
                   struct fw_response *resp)
{
    struct fw_match m;
    enum err e = ERR_OK;

    if (req->path == NULL) {
        req->path = ""; /* Vault sends "" for the mount root; treat a missing path alike */
    }
    if ((unsigned)req->op >= FW_OP__COUNT) {
        fw_status_set(resp, FW_UNSUPPORTED_OPERATION, "unsupported operation");
        return ERR_OK;
    }
    if (req->op == FW_OP_HELP && req->path != NULL && req->path[0] == '\0') {
        /* Vault's OpenAPI endpoint dereferences this response: never leave it empty. */
        json_t *h = fw_help_root(tables);
        if (h == NULL) {
            h = json_pack("{s:s, s:n}", "help", "byok secrets engine", "see_also");
        }
        fw_reply(resp, h);
        return h != NULL ? ERR_OK : ERR_NOMEM;
    }
    if (!fw_front(tables, req, resp, &m)) {
        return ERR_OK;
    }
    resp->pattern = m.path->pattern;
    if (req->op == FW_OP_HELP) {
        json_t *h = fw_help_path(m.path, req->path);
        if (h == NULL) {
            fw_status_set(resp, FW_INTERNAL, "internal error");
            return ERR_NOMEM;
        }
        fw_reply(resp, h);
        return ERR_OK;
    }
    fw_handler_fn fn = m.path->handlers[req->op];
    if (fn == NULL) {
        fw_status_set(resp, FW_UNSUPPORTED_OPERATION, "unsupported operation");
        return ERR_OK;
    }
    bool ok = false;
    e = fw_fields_build(&m, req, resp, false, &ok);
    if (e != ERR_OK) {
        goto out_internal;
    }
    if (!ok) {
        goto out;
    }
    e = fn(req, resp);
    if (e != ERR_OK) {
        goto out_internal;
    }
out:
    fw_request_reset(req);
    return ERR_OK;
out_internal:
    fw_request_reset(req);
    if (e == ERR_READONLY) {
        /* Not a failure of ours: a standby's storage; Vault retries on the active node. */
        fw_status_set(resp, FW_READONLY, err_str(ERR_READONLY));
        return ERR_OK;
    }
    /* Keep the warnings, drop anything else: the message stays generic. */
    fw_status_set(resp, FW_INTERNAL, "internal error");
    return e;
}

enum err fw_exists(const struct fw_path *const *tables, struct fw_request *req, bool *ret_found,
                   bool *ret_exists, struct fw_response *resp)
{
    struct fw_match m;
    *ret_found = false;
    *ret_exists = false;
    if (!fw_front(tables, req, resp, &m)) {
        /*
         * Only "no such path" is an answer here (Vault reads ProtoError 6 as
         * "no check"). Any other error from a check becomes a 500 in Vault,
         * so a bad name or an overlong path is left for HandleRequest to
         * refuse with its 400.
         */
        if (resp->status == FW_BAD_REQUEST) {
            fw_response_done(resp);
            fw_response_init(resp);
        }
        return ERR_OK;
    }
    resp->pattern = m.path->pattern;
    if (m.path->exists == NULL) {
        return ERR_OK;
    }
    bool ok = false;
    /*
     * Vault's existence check sees the raw data without validation: a missing
     * or bad field is reported by the request that follows, not here.
     */
    enum err e = fw_fields_build(&m, req, resp, true, &ok);
    if (e == ERR_OK && ok) {
        bool exists = false;
        e = m.path->exists(req, &exists);
        if (e == ERR_OK) {
            *ret_found = true;
            *ret_exists = exists;
        }
    }
    fw_request_reset(req);
    /* A check must not leave the field warnings behind: the real request adds them again. */
    json_decref(resp->warnings);
    resp->warnings = NULL;
    if (e != ERR_OK) {
        fw_status_set(resp, FW_INTERNAL, "internal error");
    }
    return e;
}
