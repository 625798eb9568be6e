/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Anthropic's Messages API passed through (messages.h). The body is checked
 * only as far as the agent relies on it (routing, budgets, limits) and is
 * otherwise the provider's to judge: fields the agent does not know go on
 * untouched. The one change, the model name, is spliced into the app's bytes
 * rather than the body re-serialised, so that what the provider receives is
 * what the app wrote (number formats, escapes, key order).
 */
#include "agent/messages.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/provider_util.h"
#include "agent/route.h"
#include "agent/upstream.h"

/* Tokens per message and per reply of the estimate, as provider_prompt_estimate counts them. */
#define MESSAGES_EST_PER_MESSAGE 4
#define MESSAGES_EST_REPLY 3
/* How deep content blocks are searched for images and text (a tool_result's content: 2). */
#define MESSAGES_MAX_DEPTH 4

static enum err msg_bad(struct messages_bad *bad, const char *param, const char *msg)
{
    if (bad != NULL) {
        snprintf(bad->param, sizeof(bad->param), "%s", param);
        snprintf(bad->msg, sizeof(bad->msg), "%s", msg);
    }
    return ERR_INVAL;
}

enum err messages_validate(const json_t *req, bool count, struct messages_bad *bad)
{
    if (!json_is_object(req)) {
        return msg_bad(bad, "", "request body must be a JSON object");
    }
    const json_t *model = json_object_get(req, "model");
    if (model != NULL && !json_is_string(model)) {
        return msg_bad(bad, "model", "model must be a string");
    }
    const json_t *msgs = json_object_get(req, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
        return msg_bad(bad, "messages", "messages must be a non-empty array");
    }
    size_t i;
    const json_t *m;
    json_array_foreach(msgs, i, m)
    {
        const json_t *content = json_object_get(m, "content");
        if (!json_is_object(m) || !json_is_string(json_object_get(m, "role")) ||
            !(json_is_string(content) || json_is_array(content))) {
            return msg_bad(bad, "messages",
                           "each message needs a string role and string or array content");
        }
    }
    const json_t *mt = json_object_get(req, "max_tokens");
    if (mt == NULL && !count) {
        return msg_bad(bad, "max_tokens", "max_tokens is required");
    }
    if (mt != NULL && (!json_is_integer(mt) || json_integer_value(mt) < 1 ||
                       json_integer_value(mt) > PROVIDER_MAX_TOKENS)) {
        char msg[96];
        snprintf(msg, sizeof(msg), "max_tokens must be an integer from 1 to %lld",
                 PROVIDER_MAX_TOKENS);
        return msg_bad(bad, "max_tokens", msg);
    }
    const json_t *stream = json_object_get(req, "stream");
    if (stream != NULL && !json_is_boolean(stream)) {
        return msg_bad(bad, "stream", "stream must be a boolean");
    }
    const json_t *system = json_object_get(req, "system");
    if (system != NULL && !json_is_string(system) && !json_is_array(system)) {
        return msg_bad(bad, "system", "system must be a string or an array");
    }
    const json_t *tools = json_object_get(req, "tools");
    if (tools != NULL && !json_is_array(tools)) {
        return msg_bad(bad, "tools", "tools must be an array");
    }
    return ERR_OK;
}

/* Is there an image block in content (a string, or an array of blocks), depth levels down? */
static bool msg_has_image(const json_t *content, int depth)
{
    size_t i;
    const json_t *blk;
    json_array_foreach(content, i, blk)
    {
        const char *type = json_string_value(json_object_get(blk, "type"));
        if (type != NULL && strcmp(type, "image") == 0) {
            return true;
        }
        if (depth > 0 && msg_has_image(json_object_get(blk, "content"), depth - 1)) {
            return true;
        }
    }
    return false;
}

unsigned messages_needs(const json_t *req, bool count)
{
    unsigned n = ROUTE_NEED_CHAT;
    if (!count && json_is_true(json_object_get(req, "stream"))) {
        n |= ROUTE_NEED_STREAMING;
    }
    if (json_array_size(json_object_get(req, "tools")) > 0) {
        n |= ROUTE_NEED_TOOLS;
    }
    size_t i;
    const json_t *m;
    json_array_foreach(json_object_get(req, "messages"), i, m)
    {
        if (msg_has_image(json_object_get(m, "content"), MESSAGES_MAX_DEPTH)) {
            n |= ROUTE_NEED_VISION;
            break;
        }
    }
    return n;
}

/* Text characters of content: a string, or the text of its blocks and of their content. */
static long long msg_chars(const json_t *content, int depth)
{
    if (json_is_string(content)) {
        return (long long)json_string_length(content);
    }
    long long n = 0;
    size_t i;
    const json_t *blk;
    json_array_foreach(content, i, blk)
    {
        const json_t *text = json_object_get(blk, "text");
        if (json_is_string(text)) {
            n += (long long)json_string_length(text);
        }
        if (depth > 0) {
            n += msg_chars(json_object_get(blk, "content"), depth - 1);
        }
    }
    return n;
}

long long messages_prompt_estimate(const json_t *req)
{
    /* The body is bounded by limits.max_body_bytes: these sums cannot overflow. */
    long long chars = msg_chars(json_object_get(req, "system"), 0);
    long long tokens = 0;
    size_t i;
    const json_t *m;
    const json_t *msgs = json_object_get(req, "messages");
    json_array_foreach(msgs, i, m)
    {
        chars += msg_chars(json_object_get(m, "content"), MESSAGES_MAX_DEPTH);
        tokens += MESSAGES_EST_PER_MESSAGE;
    }
    if (json_array_size(msgs) > 0) {
        tokens += MESSAGES_EST_REPLY;
    }
    return prov_min(prov_est_tokens(chars) + tokens, PROVIDER_MAX_TOKENS);
}

/* ---- the body, with the model spliced in ---------------------------------------------------- */

static size_t msg_ws(const char *s, size_t len, size_t i)
{
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) {
        i++;
    }
    return i;
}

/* s[i] is a string's opening quote: the index after its closing one. */
static size_t msg_skip_string(const char *s, size_t len, size_t i)
{
    for (i++; i < len; i++) {
        if (s[i] == '\\') {
            i++;
        } else if (s[i] == '"') {
            return i + 1;
        }
    }
    return len;
}

/* s[i] starts a value: the index after it (the body is valid JSON: jansson parsed it). */
static size_t msg_skip_value(const char *s, size_t len, size_t i)
{
    if (i >= len) {
        return len;
    }
    if (s[i] == '"') {
        return msg_skip_string(s, len, i);
    }
    if (s[i] == '{' || s[i] == '[') {
        size_t depth = 0;
        while (i < len) {
            char ch = s[i];
            if (ch == '"') {
                i = msg_skip_string(s, len, i);
                continue;
            }
            if (ch == '{' || ch == '[') {
                depth++;
            } else if ((ch == '}' || ch == ']') && --depth == 0) {
                return i + 1;
            }
            i++;
        }
        return len;
    }
    while (i < len && strchr(",}] \t\r\n", s[i]) == NULL) {
        i++;
    }
    return i;
}

/*
 * Is the key s[a..b) (quotes included) "model", escapes decoded? 1 yes, 0
 * no, -1 out of memory (a key jansson parsed once cannot fail otherwise).
 */
static int msg_key_is_model(const char *s, size_t a, size_t b)
{
    if (memchr(s + a, '\\', b - a) == NULL) {
        return b - a == 7 && memcmp(s + a + 1, "model", 5) == 0;
    }
    json_t *k = json_loadb(s + a, b - a, JSON_DECODE_ANY, NULL);
    if (k == NULL) {
        return -1;
    }
    int is = json_is_string(k) && strcmp(json_string_value(k), "model") == 0 &&
             json_string_length(k) == 5;
    json_decref(k);
    return is;
}

enum err messages_body(const char *body, size_t len, const char *model, char **ret, size_t *ret_len)
{
    size_t i = msg_ws(body, len, 0);
    if (i >= len || body[i] != '{') {
        return ERR_PROTO;
    }
    size_t open = i + 1;
    size_t vs = 0, ve = 0; /* the model value's span; both 0: none */
    i = msg_ws(body, len, open);
    while (i < len && body[i] == '"') {
        size_t ks = i;
        size_t ke = msg_skip_string(body, len, i);
        i = msg_ws(body, len, ke);
        if (i >= len || body[i] != ':') {
            return ERR_PROTO;
        }
        i = msg_ws(body, len, i + 1);
        size_t end = msg_skip_value(body, len, i);
        int is = msg_key_is_model(body, ks, ke);
        if (is < 0) {
            return ERR_NOMEM;
        }
        if (is > 0) {
            vs = i;
            ve = end;
            break;
        }
        i = msg_ws(body, len, end);
        if (i < len && body[i] == ',') {
            i = msg_ws(body, len, i + 1);
        }
    }
    json_t *ms = json_string(model);
    char *mj = ms != NULL ? json_dumps(ms, JSON_ENCODE_ANY) : NULL;
    json_decref(ms);
    if (mj == NULL) {
        return ERR_NOMEM;
    }
    size_t ml = strlen(mj);
    bool insert = ve == 0;
    bool empty = insert && msg_ws(body, len, open) < len && body[msg_ws(body, len, open)] == '}';
    /* "model": <mj> and a comma when other members follow. */
    size_t add = insert ? ml + 9 + (empty ? 0 : 1) : ml;
    size_t keep = insert ? len : len - (ve - vs);
    char *out = malloc(keep + add + 1);
    if (out == NULL) {
        free(mj);
        return ERR_NOMEM;
    }
    size_t at = insert ? open : vs;
    size_t tail = insert ? open : ve;
    memcpy(out, body, at);
    size_t n = at;
    if (insert) {
        memcpy(out + n, "\"model\":", 8);
        n += 8;
    }
    memcpy(out + n, mj, ml);
    n += ml;
    if (insert && !empty) {
        out[n++] = ',';
    }
    memcpy(out + n, body + tail, len - tail);
    n += len - tail;
    out[n] = '\0';
    free(mj);
    *ret = out;
    *ret_len = n;
    return ERR_OK;
}

/* ---- the app's headers ---------------------------------------------------------------------- */

bool messages_version_valid(const char *v)
{
    if (v == NULL || strlen(v) != MESSAGES_VERSION_LEN) {
        return false;
    }
    for (size_t i = 0; i < MESSAGES_VERSION_LEN; i++) {
        bool dash = i == 4 || i == 7;
        if (dash ? v[i] != '-' : (v[i] < '0' || v[i] > '9')) {
            return false;
        }
    }
    return true;
}

bool messages_beta_valid(const char *v)
{
    size_t len = v != NULL ? strlen(v) : 0;
    if (len == 0 || len > MESSAGES_MAX_BETA) {
        return false;
    }
    size_t token = 0; /* characters of the current token */
    for (size_t i = 0; i < len; i++) {
        char ch = v[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '_') {
            token++;
        } else if (ch == ',' && token > 0) {
            token = 0;
            while (i + 1 < len && v[i + 1] == ' ') {
                i++;
            }
        } else {
            return false;
        }
    }
    return token > 0;
}

/* ---- the upstream request ------------------------------------------------------------------- */

enum err messages_build(const struct messages_call *m, struct provider_http *out)
{
    const char *base;
    size_t bl;
    bool local;
    enum err e = prov_base_url(m->entry, &base, &bl, &local);
    if (e != ERR_OK) {
        return e;
    }
    const char *suffix = m->count ? "/messages/count_tokens" : "/messages";
    int n = snprintf(out->url, sizeof(out->url), "%.*s%s", (int)bl, base, suffix);
    if (n < 0 || (size_t)n >= sizeof(out->url)) {
        return ERR_TOOBIG;
    }
    out->allow_http = local;
    e = messages_body(m->body, m->len, m->model, &out->body, &out->body_len);
    if (e != ERR_OK) {
        return e;
    }
    e = prov_json_headers(out, m->stream && !m->count ? "Accept: text/event-stream"
                                                      : "Accept: application/json");
    char line[MESSAGES_MAX_BETA + 32];
    if (e == ERR_OK) {
        snprintf(line, sizeof(line), "anthropic-version: %s",
                 m->version != NULL ? m->version : MESSAGES_DEFAULT_VERSION);
        e = upstream_header_add(&out->headers, line);
    }
    if (e == ERR_OK && m->beta != NULL) {
        snprintf(line, sizeof(line), "anthropic-beta: %s", m->beta);
        e = upstream_header_add(&out->headers, line);
    }
    if (e == ERR_OK) {
        e = upstream_header_secret(&out->headers, "x-api-key: ", m->key);
    }
    return e;
}

/* ---- answers and events --------------------------------------------------------------------- */

/* Anthropic's error object: {"type":"error",...} or an "error" object. */
static bool msg_is_error(const json_t *j)
{
    const char *type = json_string_value(json_object_get(j, "type"));
    return (type != NULL && strcmp(type, "error") == 0) ||
           json_is_object(json_object_get(j, "error"));
}

static enum err msg_response(enum provider_op op, const char *body, size_t len, const char *model,
                             json_t **ret_json, struct provider_usage *ret_usage)
{
    (void)op;
    (void)model;
    if (ret_json != NULL) {
        *ret_json = NULL;
    }
    json_t *j = json_loadb(body, len, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return ERR_PROTO;
    }
    if (msg_is_error(j)) {
        /* Its text is never read: it may echo the key. */
        json_decref(j);
        return ERR_UPSTREAM;
    }
    const json_t *u = json_object_get(j, "usage");
    if (json_is_object(u)) {
        provider_anthropic_usage(u, ret_usage, true);
    }
    json_decref(j);
    return ERR_OK;
}

static enum err msg_stream_event(struct provider_stream *st, const char *event, const char *data,
                                 size_t len, struct buf *out)
{
    (void)out; /* passthrough: proxy.c forwards the provider's frames */
    json_t *j = json_loadb(data, len, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return ERR_PROTO;
    }
    const char *type = json_string_value(json_object_get(j, "type"));
    if (type == NULL) {
        type = event != NULL ? event : "";
    }
    if (strcmp(type, "message_start") == 0) {
        st->started = true;
        provider_anthropic_usage(json_object_get(json_object_get(j, "message"), "usage"),
                                 &st->usage, true);
    } else if (strcmp(type, "content_block_delta") == 0) {
        const json_t *d = json_object_get(j, "delta");
        static const char *const fields[] = {"text", "partial_json", "thinking"};
        for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
            const json_t *t = json_object_get(d, fields[i]);
            if (json_is_string(t)) {
                st->est_completion += prov_est_tokens((long long)json_string_length(t));
            }
        }
    } else if (strcmp(type, "message_delta") == 0) {
        if (json_is_object(json_object_get(j, "usage"))) {
            provider_anthropic_usage(json_object_get(j, "usage"), &st->usage, false);
            st->usage_final = true;
        }
    } else if (strcmp(type, "message_stop") == 0) {
        st->done = true;
    } else if (strcmp(type, "error") == 0) {
        st->failed = true; /* its text is never read */
    }
    json_decref(j);
    return ERR_OK;
}

static enum err msg_no_build(const struct provider_call *c, struct provider_http *out)
{
    (void)c;
    (void)out;
    return ERR_UNSUPPORTED; /* messages_build is called instead */
}

static const struct provider_adapter msg_adapter = {
    .api_style = "anthropic",
    .stream_passthrough = true,
    .build = msg_no_build,
    .response = msg_response,
    .stream_event = msg_stream_event,
};

const struct provider_adapter *messages_adapter(void)
{
    return &msg_adapter;
}

bool messages_output_fits(const json_t *req, const json_t *entry, const char *model)
{
    const json_t *mt = json_object_get(req, "max_tokens");
    size_t i;
    const json_t *m;
    json_array_foreach(json_object_get(entry, "models"), i, m)
    {
        const char *name = json_string_value(json_object_get(m, "name"));
        const json_t *max = json_object_get(m, "max_output_tokens");
        if (name != NULL && strcmp(name, model) == 0 && json_is_integer(mt) &&
            json_is_integer(max) && json_integer_value(max) > 0) {
            return json_integer_value(mt) <= json_integer_value(max);
        }
    }
    return true;
}

/* ---- errors --------------------------------------------------------------------------------- */

const char *messages_error_type(int status)
{
    switch (status) {
    case 401:
        return "authentication_error";
    case 403:
        return "permission_error";
    case 404:
        return "not_found_error";
    case 413:
        return "request_too_large";
    case 429:
        return "rate_limit_error";
    case 503:
    case 529:
        return "overloaded_error";
    default:
        /* Anthropic's own rule: other 4xx are invalid_request_error; 5xx api_error. */
        return status >= 400 && status < 500 ? "invalid_request_error" : "api_error";
    }
}

json_t *messages_error_json(int status, const char *message, const char *request_id)
{
    return json_pack("{s:s,s:{s:s,s:s},s:s?}", "type", "error", "error", "type",
                     messages_error_type(status), "message", message, "request_id", request_id);
}

bool messages_route(const char *route)
{
    return route != NULL &&
           (strcmp(route, MESSAGES_ROUTE) == 0 || strcmp(route, MESSAGES_COUNT_ROUTE) == 0);
}
