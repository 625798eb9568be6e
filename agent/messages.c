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

#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/provider_bedrock.h"
#include "agent/provider_util.h"
#include "agent/provider_vertex.h"
#include "agent/route.h"
#include "agent/upstream.h"
#include "common/jsonw.h"

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

/*
 * Is there an image or a document block (a PDF, which Claude reads as page
 * images) in content (a string, or an array of blocks), depth levels down?
 */
static bool msg_has_image(const json_t *content, int depth)
{
    size_t i;
    const json_t *blk;
    json_array_foreach(content, i, blk)
    {
        const char *type = json_string_value(json_object_get(blk, "type"));
        if (type != NULL && (strcmp(type, "image") == 0 || strcmp(type, "document") == 0)) {
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
    /* Tools of any kind, and MCP servers (the MCP connector): the tools permission. */
    if (json_array_size(json_object_get(req, "tools")) > 0 ||
        json_array_size(json_object_get(req, "mcp_servers")) > 0) {
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

long long messages_prompt_estimate(const json_t *req)
{
    /* The body is bounded by limits.max_body_bytes: these sums cannot overflow. */
    long long chars = prov_content_chars(json_object_get(req, "system"), 0);
    long long tokens = 0;
    size_t i;
    const json_t *m;
    const json_t *msgs = json_object_get(req, "messages");
    json_array_foreach(msgs, i, m)
    {
        chars += prov_content_chars(json_object_get(m, "content"), MESSAGES_MAX_DEPTH);
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
 * Is the key s[a..b) (quotes included) name, escapes decoded? 1 yes, 0
 * no, -1 out of memory (a key jansson parsed once cannot fail otherwise).
 */
static int msg_key_is(const char *s, size_t a, size_t b, const char *name)
{
    size_t nl = strlen(name);
    if (memchr(s + a, '\\', b - a) == NULL) {
        return b - a == nl + 2 && memcmp(s + a + 1, name, nl) == 0;
    }
    json_t *k = json_loadb(s + a, b - a, JSON_DECODE_ANY, NULL);
    if (k == NULL) {
        return -1;
    }
    int is =
        json_is_string(k) && json_string_length(k) == nl && strcmp(json_string_value(k), name) == 0;
    json_decref(k);
    return is;
}

static int msg_key_is_model(const char *s, size_t a, size_t b)
{
    return msg_key_is(s, a, b, "model");
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
    enum err e = prov_url(out, m->entry, m->count ? "/messages/count_tokens" : "/messages");
    if (e != ERR_OK) {
        return e;
    }
    e = messages_body(m->body, m->len, m->model, &out->body, &out->body_len);
    if (e != ERR_OK) {
        return e;
    }
    e = prov_json_headers(out, m->stream && !m->count ? "Accept: text/event-stream"
                                                      : "Accept: application/json");
    char line[MESSAGES_MAX_BETA + 32];
    if (e == ERR_OK) {
        snprintf(line, sizeof(line), "anthropic-version: %s",
                 m->version != NULL ? m->version : PROVIDER_ANTHROPIC_VERSION);
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
    if (provider_anthropic_error(j)) {
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
    if (prov_stream_error_frame(event, j, type)) {
        st->failed = true; /* never forwarded, its text never read */
    } else if (strcmp(type, "message_start") == 0) {
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

/* ---- Claude on Amazon Bedrock --------------------------------------------------------------- */

/* One member of an object: its key's span (quotes included) and its value's. */
struct msg_member {
    size_t ks, ke, vs, ve;
};

/*
 * The member at *i (whitespace, then a key's quote; or the closing brace):
 * 1 and *i past it and its comma, 0 at the closing brace, -1 malformed.
 */
static int msg_next_member(const char *s, size_t len, size_t *i, struct msg_member *m)
{
    size_t at = msg_ws(s, len, *i);
    if (at >= len || s[at] != '"') {
        return at < len && s[at] == '}' ? 0 : -1;
    }
    m->ks = at;
    m->ke = msg_skip_string(s, len, at);
    at = msg_ws(s, len, m->ke);
    if (at >= len || s[at] != ':') {
        return -1;
    }
    m->vs = msg_ws(s, len, at + 1);
    m->ve = msg_skip_value(s, len, m->vs);
    at = msg_ws(s, len, m->ve);
    if (at < len && s[at] == ',') {
        at++;
    }
    *i = at;
    return 1;
}

/* Is member m's key one of names[0..n)? -1 out of memory. */
static int msg_member_in(const char *s, const struct msg_member *m, const char *const *names,
                         size_t n)
{
    for (size_t k = 0; k < n; k++) {
        int is = msg_key_is(s, m->ks, m->ke, names[k]);
        if (is != 0) {
            return is;
        }
    }
    return 0;
}

/* The members added first: anthropic_version and anthropic_beta (each unless the body has it). */
static enum err msg_invoke_head(struct buf *b, const char *version, const char *beta, bool add_v,
                                bool add_b)
{
    json_t *head = json_object();
    enum err e = head != NULL ? ERR_OK : ERR_NOMEM;
    if (e == ERR_OK && add_v &&
        json_object_set_new(head, "anthropic_version", json_string(version)) != 0) {
        e = ERR_NOMEM;
    }
    json_t *list = add_b && beta != NULL ? json_array() : NULL;
    if (add_b && beta != NULL &&
        (list == NULL || json_object_set_new(head, "anthropic_beta", list) != 0)) {
        e = ERR_NOMEM;
    }
    /* beta is messages_beta_valid: names split at commas, spaces after a comma dropped. */
    for (const char *p = beta; e == ERR_OK && list != NULL && *p != '\0';) {
        size_t n = strcspn(p, ",");
        if (json_array_append_new(list, json_stringn(p, n)) != 0) {
            e = ERR_NOMEM;
        }
        p += n;
        p += strspn(p, ", ");
    }
    size_t hl = 0;
    char *hs = e == ERR_OK ? jsonw_dumps(head, &hl) : NULL;
    json_decref(head);
    if (e == ERR_OK && hs == NULL) {
        e = ERR_NOMEM;
    }
    /* Without its braces: "k":v,"k":v (nothing for an empty object). */
    if (e == ERR_OK && hl > 2) {
        e = buf_append(b, hs + 1, hl - 2);
    }
    free(hs);
    return e;
}

/*
 * The app's body with the top-level members named in drop[0..n_drop)
 * removed and anthropic_version (and anthropic_beta, for a beta) added first
 * unless the body has them; every other byte as it was.
 */
static enum err msg_cloud_body(const char *body, size_t len, const char *const *drop, size_t n_drop,
                               const char *version, const char *beta, char **ret, size_t *ret_len)
{
    static const char *const have_v[] = {"anthropic_version"};
    static const char *const have_b[] = {"anthropic_beta"};
    size_t i = msg_ws(body, len, 0);
    if (i >= len || body[i] != '{') {
        return ERR_PROTO;
    }
    size_t open = i + 1;
    /* First pass: does the body set anthropic_version or anthropic_beta itself? */
    bool add_v = true, add_b = true;
    struct msg_member m;
    int r;
    i = open;
    while ((r = msg_next_member(body, len, &i, &m)) > 0) {
        int v = msg_member_in(body, &m, have_v, 1);
        int bt = msg_member_in(body, &m, have_b, 1);
        if (v < 0 || bt < 0) {
            return ERR_NOMEM;
        }
        add_v = add_v && v == 0;
        add_b = add_b && bt == 0;
    }
    if (r < 0) {
        return ERR_PROTO;
    }
    struct buf b;
    /* The head: the version, and at most MESSAGES_MAX_BETA characters of names, each quoted. */
    buf_init(&b, len + (size_t)MESSAGES_MAX_BETA * 4 + 256);
    enum err e = buf_append(&b, body, open);
    if (e == ERR_OK) {
        e = msg_invoke_head(&b, version, beta, add_v, add_b);
    }
    bool any = b.len > open;
    size_t lead = open, tail = open;
    i = open;
    while (e == ERR_OK && msg_next_member(body, len, &i, &m) > 0) {
        int d = msg_member_in(body, &m, drop, n_drop);
        if (d < 0) {
            e = ERR_NOMEM;
        } else if (d == 0) {
            /* The whitespace before the key stays with it; the comma is ours. */
            if (any) {
                e = buf_append(&b, ",", 1);
            }
            if (e == ERR_OK) {
                e = buf_append(&b, body + lead, m.ve - lead);
            }
            any = true;
        }
        lead = i;
        tail = m.ve;
    }
    if (e == ERR_OK) {
        /* The whitespace and the closing brace after the last member (kept or not). */
        e = buf_append(&b, body + tail, len - tail);
    }
    if (e != ERR_OK) {
        buf_done(&b);
        return e == ERR_TOOBIG ? ERR_NOMEM : e;
    }
    *ret = buf_take(&b, ret_len);
    return *ret != NULL ? ERR_OK : ERR_NOMEM;
}

enum err messages_invoke_body(const char *body, size_t len, const char *version, const char *beta,
                              char **ret, size_t *ret_len)
{
    static const char *const drop[] = {"model", "stream"};
    return msg_cloud_body(body, len, drop, sizeof(drop) / sizeof(drop[0]), version, beta, ret,
                          ret_len);
}

enum err messages_raw_predict_body(const char *body, size_t len, const char *version, char **ret,
                                   size_t *ret_len)
{
    static const char *const drop[] = {"model"};
    return msg_cloud_body(body, len, drop, 1, version, NULL, ret, ret_len);
}

enum err messages_bedrock_build(const struct messages_call *m, struct provider_http *out)
{
    if (m->count) {
        return ERR_UNSUPPORTED; /* count_tokens goes to Anthropic-style providers only */
    }
    char *body = NULL;
    size_t len = 0;
    enum err e =
        messages_invoke_body(m->body, m->len, MESSAGES_BEDROCK_VERSION, m->beta, &body, &len);
    if (e != ERR_OK) {
        return e;
    }
    struct provider_call pc = {
        .op = PROVIDER_CHAT,
        .model = m->model,
        .stream = m->stream,
        .entry = m->entry,
        .metadata = m->metadata,
        .key = m->key,
    };
    return provider_bedrock_invoke(&pc, body, len, out);
}

enum err messages_vertex_build(const struct messages_call *m, struct provider_http *out)
{
    if (m->count) {
        return ERR_UNSUPPORTED; /* count_tokens goes to Anthropic-style providers only */
    }
    char *body = NULL;
    size_t len = 0;
    enum err e = messages_raw_predict_body(m->body, m->len, MESSAGES_VERTEX_VERSION, &body, &len);
    if (e != ERR_OK) {
        return e;
    }
    struct provider_call pc = {
        .op = PROVIDER_CHAT,
        .model = m->model,
        .stream = m->stream,
        .entry = m->entry,
        .metadata = m->metadata,
        .key = m->key,
        .token = m->token,
    };
    e = provider_vertex_claude(&pc, body, len, out);
    if (e == ERR_OK && m->beta != NULL) {
        char line[MESSAGES_MAX_BETA + 32];
        snprintf(line, sizeof(line), "anthropic-beta: %s", m->beta);
        e = upstream_header_add(&out->headers, line);
    }
    return e;
}

/* An SSE event name taken from a provider's event: 1..64 of a-z and '_'. */
static bool msg_event_name_ok(const char *t)
{
    size_t n = strspn(t, "abcdefghijklmnopqrstuvwxyz_");
    return n > 0 && n <= 64 && t[n] == '\0';
}

/* Bedrock's own count, for a stream whose Anthropic usage is missing. */
static void msg_invocation_metrics(struct provider_stream *st, const json_t *ev)
{
    const json_t *mx = json_object_get(ev, "amazon-bedrock-invocationMetrics");
    const json_t *in = json_object_get(mx, "inputTokenCount");
    const json_t *outc = json_object_get(mx, "outputTokenCount");
    if (st->usage_final || !json_is_integer(in) || !json_is_integer(outc) ||
        json_integer_value(in) < 0 || json_integer_value(outc) < 0) {
        return;
    }
    st->usage.prompt_tokens = prov_min(json_integer_value(in), PROVIDER_MAX_TOKENS);
    st->usage.completion_tokens = prov_min(json_integer_value(outc), PROVIDER_MAX_TOKENS);
    st->usage.seen = true;
    st->usage_final = true;
}

enum err messages_bedrock_event(struct provider_stream *st, const char *event, const char *data,
                                size_t len, struct buf *out)
{
    if (event != NULL && strcmp(event, "error") == 0) {
        st->failed = true; /* an exception message: its text is never read */
        return ERR_OK;
    }
    if (event == NULL || strcmp(event, "chunk") != 0) {
        return ERR_OK; /* no other event carries the answer */
    }
    json_t *j = json_loadb(data, len, 0, NULL);
    const char *b64 = json_string_value(json_object_get(j, "bytes"));
    size_t bl = b64 != NULL ? json_string_length(json_object_get(j, "bytes")) : 0;
    if (b64 == NULL || bl == 0 || bl % 4 != 0 || strlen(b64) != bl || bl > (size_t)INT_MAX) {
        json_decref(j);
        return ERR_PROTO;
    }
    unsigned char *raw = malloc(bl / 4 * 3 + 1);
    if (raw == NULL) {
        json_decref(j);
        return ERR_NOMEM;
    }
    int n = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)bl);
    /* EVP_DecodeBlock counts the padding's zero bytes too. */
    size_t rl = n < 0 ? 0 : (size_t)n - (b64[bl - 1] == '=') - (b64[bl - 2] == '=');
    json_decref(j);
    json_t *ev = n > 0 ? json_loadb((const char *)raw, rl, 0, NULL) : NULL;
    const char *type = json_string_value(json_object_get(ev, "type"));
    if (type == NULL || !msg_event_name_ok(type)) {
        json_decref(ev);
        free(raw);
        return ERR_PROTO;
    }
    enum err e = msg_stream_event(st, NULL, (const char *)raw, rl, NULL);
    if (e == ERR_OK && strcmp(type, "message_stop") == 0) {
        msg_invocation_metrics(st, ev);
    }
    /*
     * The event goes to the app as its bytes, on one data line: JSON with a
     * line break in its whitespace is written compact instead.
     */
    char *line = NULL;
    size_t ll = rl;
    if (e == ERR_OK && (memchr(raw, '\n', rl) != NULL || memchr(raw, '\r', rl) != NULL)) {
        line = jsonw_dumps(ev, &ll);
        e = line != NULL ? ERR_OK : ERR_NOMEM;
    }
    if (e == ERR_OK && !st->failed) {
        e = buf_printf(out, "event: %s\ndata: ", type);
        if (e == ERR_OK) {
            e = buf_append(out, line != NULL ? line : (const char *)raw, ll);
        }
        if (e == ERR_OK) {
            e = buf_append(out, "\n\n", 2);
        }
    }
    free(line);
    json_decref(ev);
    free(raw);
    return e;
}

static const struct provider_adapter msg_bedrock_adapter = {
    .api_style = "bedrock",
    .build = msg_no_build,
    .response = msg_response,
    .stream_event = messages_bedrock_event,
    .framing = PROVIDER_FRAMING_EVENTSTREAM,
};

const struct provider_adapter *messages_bedrock_adapter(void)
{
    return &msg_bedrock_adapter;
}
