/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The helpers the provider adapters share: one copy of what every adapter
 * that translates OpenAI's shapes does the same way (see provider_util.h).
 * What differs between providers (field names, finish reasons, how usage is
 * counted) stays in the adapter, passed in as a key or a table. Not here:
 * anything one adapter alone needs, choosing a provider, sending.
 */
#include "agent/provider_util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/upstream.h"
#include "common/jsonw.h"

/* The most text prov_text_of gathers from parts (as the request cap). */
#define PROV_MAX_TEXT ((size_t)16 * 1024 * 1024)
/* Characters per token of prov_est_tokens (OpenAI's rule of thumb for English). */
#define PROV_EST_CHARS_PER_TOKEN 4

enum err prov_base_url(const json_t *entry, const char **ret_base, size_t *ret_len, bool *ret_local)
{
    const char *base = json_string_value(json_object_get(entry, "base_url"));
    if (base == NULL) {
        return ERR_CONFIG;
    }
    bool local = json_is_true(json_object_get(entry, "local"));
    if (strncmp(base, "https://", 8) != 0 && !(local && strncmp(base, "http://", 7) == 0)) {
        return ERR_CONFIG;
    }
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/') {
        bl--;
    }
    *ret_base = base;
    *ret_len = bl;
    *ret_local = local;
    return ERR_OK;
}

enum err prov_url(struct provider_http *out, const json_t *entry, const char *suffix)
{
    const char *base;
    size_t bl;
    bool local;
    enum err e = prov_base_url(entry, &base, &bl, &local);
    if (e != ERR_OK) {
        return e;
    }
    if (bl >= sizeof(out->url)) {
        return ERR_TOOBIG;
    }
    memcpy(out->url, base, bl);
    size_t sl = strlen(suffix);
    if (sl >= sizeof(out->url) - bl) {
        return ERR_TOOBIG;
    }
    memcpy(out->url + bl, suffix, sl + 1);
    out->allow_http = local;
    return ERR_OK;
}

enum err prov_dump(const json_t *body, struct provider_http *out)
{
    out->body = jsonw_dumps(body, &out->body_len);
    return out->body != NULL ? ERR_OK : ERR_NOMEM;
}

enum err prov_json_headers(struct provider_http *out, const char *accept)
{
    enum err e = upstream_header_add(&out->headers, "Content-Type: application/json");
    if (e == ERR_OK) {
        e = upstream_header_add(&out->headers, accept);
    }
    if (e == ERR_OK) {
        e = upstream_header_add(&out->headers, "Expect:");
    }
    return e;
}

enum err prov_bad(struct provider_bad *bad, const char *msg, const char *fmt, ...)
{
    if (bad != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(bad->param, sizeof(bad->param), fmt, ap);
        va_end(ap);
        snprintf(bad->msg, sizeof(bad->msg), "%s", msg);
    }
    return ERR_INVAL;
}

json_t *prov_text_of(const json_t *content)
{
    if (json_is_string(content)) {
        return json_incref((json_t *)content);
    }
    struct buf b;
    buf_init(&b, PROV_MAX_TEXT);
    size_t i;
    const json_t *part;
    json_array_foreach(content, i, part)
    {
        const char *t = json_string_value(json_object_get(part, "text"));
        if (t != NULL &&
            ((b.len > 0 && buf_append(&b, "\n", 1) != ERR_OK) || buf_append_str(&b, t) != ERR_OK)) {
            buf_done(&b);
            return NULL;
        }
    }
    json_t *s = json_stringn(b.data != NULL ? b.data : "", b.len);
    buf_done(&b);
    return s;
}

/* Checks tools[i] for prov_tools; borrowed views of its name, description and parameters. */
static enum err prov_tool_check(const json_t *tool, size_t i, bool null_params,
                                struct provider_bad *bad, const json_t **ret_name,
                                const json_t **ret_desc, const json_t **ret_params)
{
    const char *type = json_string_value(json_object_get(tool, "type"));
    const json_t *fn = json_object_get(tool, "function");
    const json_t *name = json_object_get(fn, "name");
    const json_t *desc = json_object_get(fn, "description");
    const json_t *params = json_object_get(fn, "parameters");
    if (type == NULL || strcmp(type, "function") != 0) {
        return prov_bad(bad, "only function tools can be translated", "tools[%zu].type", i);
    }
    if (!json_is_string(name) || json_string_length(name) == 0) {
        return prov_bad(bad, "must be a non-empty string", "tools[%zu].function.name", i);
    }
    if (desc != NULL && !json_is_null(desc) && !json_is_string(desc)) {
        return prov_bad(bad, "must be a string", "tools[%zu].function.description", i);
    }
    if (params != NULL && !(null_params && json_is_null(params)) && !json_is_object(params)) {
        return prov_bad(bad, "must be a JSON Schema object", "tools[%zu].function.parameters", i);
    }
    *ret_name = name;
    *ret_desc = desc;
    *ret_params = params;
    return ERR_OK;
}

enum err prov_tools(const json_t *tools, bool null_params,
                    json_t *(*convert)(const json_t *name, const json_t *desc,
                                       const json_t *params),
                    struct provider_bad *bad, json_t **ret)
{
    if (!json_is_array(tools)) {
        return prov_bad(bad, "must be an array of tools", "tools");
    }
    json_t *out = json_array();
    if (out == NULL) {
        return ERR_NOMEM;
    }
    size_t i;
    const json_t *t;
    json_array_foreach(tools, i, t)
    {
        const json_t *name = NULL, *desc = NULL, *params = NULL;
        enum err e = prov_tool_check(t, i, null_params, bad, &name, &desc, &params);
        if (e == ERR_OK && json_array_append_new(out, convert(name, desc, params)) != 0) {
            e = ERR_NOMEM;
        }
        if (e != ERR_OK) {
            json_decref(out);
            return e;
        }
    }
    *ret = out;
    return ERR_OK;
}

enum prov_choice prov_tool_choice(const json_t *oreq, const json_t **ret_name)
{
    const json_t *tc = json_object_get(oreq, "tool_choice");
    const char *s = json_string_value(tc);
    if (tc == NULL || json_is_null(tc)) {
        return PROV_CHOICE_UNSET;
    }
    static const struct {
        const char *name;
        enum prov_choice choice;
    } words[] = {
        {"auto", PROV_CHOICE_AUTO}, {"none", PROV_CHOICE_NONE}, {"required", PROV_CHOICE_REQUIRED}};
    for (size_t i = 0; s != NULL && i < sizeof(words) / sizeof(words[0]); i++) {
        if (strcmp(s, words[i].name) == 0) {
            return words[i].choice;
        }
    }
    const char *type = json_string_value(json_object_get(tc, "type"));
    const json_t *name = json_object_get(json_object_get(tc, "function"), "name");
    if (type == NULL || strcmp(type, "function") != 0 || !json_is_string(name)) {
        return PROV_CHOICE_INVALID;
    }
    *ret_name = name;
    return PROV_CHOICE_FUNCTION;
}

enum err prov_call_check(const json_t *call, size_t mi, size_t j, struct provider_bad *bad,
                         const json_t **ret_id, const json_t **ret_name, const json_t **ret_args)
{
    const json_t *id = json_object_get(call, "id");
    const json_t *fn = json_object_get(call, "function");
    const json_t *name = json_object_get(fn, "name");
    const json_t *args = json_object_get(fn, "arguments");
    if (!json_is_string(id) || json_string_length(id) == 0) {
        return prov_bad(bad, "must be a non-empty string", "messages[%zu].tool_calls[%zu].id", mi,
                        j);
    }
    if (!json_is_string(name) || json_string_length(name) == 0) {
        return prov_bad(bad, "must be a non-empty string",
                        "messages[%zu].tool_calls[%zu].function.name", mi, j);
    }
    if (!json_is_string(args)) {
        return prov_bad(bad, "must be a string holding a JSON object",
                        "messages[%zu].tool_calls[%zu].function.arguments", mi, j);
    }
    *ret_id = id;
    *ret_name = name;
    *ret_args = args;
    return ERR_OK;
}

enum err prov_call_input(const json_t *args, size_t mi, size_t j, struct provider_bad *bad,
                         json_t **ret_input)
{
    json_t *input;
    if (json_string_length(args) == 0) {
        input = json_object(); /* a call without arguments */
        if (input == NULL) {
            return ERR_NOMEM;
        }
    } else {
        input = json_loadb(json_string_value(args), json_string_length(args), 0, NULL);
        if (!json_is_object(input)) {
            json_decref(input);
            return prov_bad(bad, "is not a JSON object",
                            "messages[%zu].tool_calls[%zu].function.arguments", mi, j);
        }
    }
    *ret_input = input;
    return ERR_OK;
}

enum err prov_stop_sequences(const json_t *oreq, const char *key, struct provider_bad *bad,
                             json_t *out)
{
    const json_t *stop = json_object_get(oreq, "stop");
    if (json_is_string(stop)) {
        return json_object_set_new(out, key, json_pack("[O]", stop)) == 0 ? ERR_OK : ERR_NOMEM;
    }
    if (json_is_array(stop)) {
        size_t i;
        const json_t *s;
        json_array_foreach(stop, i, s)
        {
            if (!json_is_string(s)) {
                return prov_bad(bad, "must be a string", "stop[%zu]", i);
            }
        }
        return json_object_set(out, key, (json_t *)stop) == 0 ? ERR_OK : ERR_NOMEM;
    }
    if (stop != NULL && !json_is_null(stop)) {
        return prov_bad(bad, "must be a string or an array of strings", "stop");
    }
    return ERR_OK;
}

enum err prov_message_text(const json_t *content, size_t mi, struct provider_bad *bad,
                           json_t **ret_text)
{
    if (!json_is_string(content) && !json_is_array(content)) {
        return prov_bad(bad, "must be a string or an array of text parts", "messages[%zu].content",
                        mi);
    }
    json_t *t = prov_text_of(content);
    if (t == NULL) {
        return ERR_NOMEM;
    }
    *ret_text = t;
    return ERR_OK;
}

enum err prov_tool_result(const json_t *m, size_t mi, struct provider_bad *bad,
                          const json_t **ret_id, json_t **ret_text)
{
    const json_t *id = json_object_get(m, "tool_call_id");
    const json_t *content = json_object_get(m, "content");
    if (!json_is_string(id) || json_string_length(id) == 0) {
        return prov_bad(bad, "must be a non-empty string", "messages[%zu].tool_call_id", mi);
    }
    json_t *t = NULL;
    enum err e = prov_message_text(content, mi, bad, &t);
    if (e != ERR_OK) {
        return e;
    }
    *ret_id = id;
    *ret_text = t;
    return ERR_OK;
}

long long prov_count(const json_t *v)
{
    if (json_is_integer(v)) {
        json_int_t n = json_integer_value(v);
        return n <= 0 ? 0 : n >= PROVIDER_MAX_TOKENS ? PROVIDER_MAX_TOKENS : (long long)n;
    }
    double d = json_real_value(v); /* 0 for anything but a real */
    if (!(d > 0)) {
        return 0; /* also NaN */
    }
    return d >= (double)PROVIDER_MAX_TOKENS ? PROVIDER_MAX_TOKENS : (long long)d;
}

long long prov_min(long long a, long long b)
{
    return a < b ? a : b;
}

long long prov_max_output(const json_t *oreq)
{
    static const char *const names[] = {"max_completion_tokens", "max_tokens"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const json_t *v = json_object_get(oreq, names[i]);
        if (json_is_integer(v)) {
            return json_integer_value(v) > 0 ? (long long)json_integer_value(v) : 0;
        }
    }
    return 0;
}

long long prov_content_chars(const json_t *content, int depth)
{
    if (json_is_string(content)) {
        return (long long)json_string_length(content);
    }
    long long n = 0;
    size_t i;
    const json_t *part;
    json_array_foreach(content, i, part)
    {
        const json_t *text = json_object_get(part, "text");
        if (json_is_string(text)) {
            n += (long long)json_string_length(text);
        }
        if (depth > 0) {
            n += prov_content_chars(json_object_get(part, "content"), depth - 1);
        }
    }
    return n;
}

long long prov_est_tokens(long long chars)
{
    if (chars <= 0) {
        return 0;
    }
    return prov_min((chars + PROV_EST_CHARS_PER_TOKEN - 1) / PROV_EST_CHARS_PER_TOKEN,
                    PROVIDER_MAX_TOKENS);
}

json_t *prov_usage_json(const struct provider_usage *u)
{
    json_t *j = json_pack("{s:I,s:I,s:I,s:{s:I}}", "prompt_tokens", (json_int_t)u->prompt_tokens,
                          "completion_tokens", (json_int_t)u->completion_tokens, "total_tokens",
                          (json_int_t)(u->prompt_tokens + u->completion_tokens),
                          "prompt_tokens_details", "cached_tokens", (json_int_t)u->cached_tokens);
    /*
     * Cache writes (part of prompt_tokens) have no field in OpenAI's usage:
     * LiteLLM's name for them, only when there were some.
     */
    if (j != NULL && u->cache_write_tokens > 0 &&
        json_object_set_new(j, "cache_creation_input_tokens",
                            json_integer((json_int_t)u->cache_write_tokens)) != 0) {
        json_decref(j);
        j = NULL;
    }
    /* Anthropic's server-tool count, in its own shape (LiteLLM passes it so too). */
    if (j != NULL && u->web_search_requests > 0 &&
        json_object_set_new(
            j, "server_tool_use",
            json_pack("{s:I}", "web_search_requests", (json_int_t)u->web_search_requests)) != 0) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

const char *prov_finish(const struct prov_finish_map *map, const char *reason)
{
    if (reason == NULL) {
        return NULL;
    }
    for (size_t i = 0; map[i].from != NULL; i++) {
        if (strcmp(map[i].from, reason) == 0) {
            return map[i].to;
        }
    }
    return "stop";
}

bool prov_tool_ident(const json_t *blk, const char *id_key, const char **ret_id,
                     const char **ret_name)
{
    const json_t *i = json_object_get(blk, id_key);
    const json_t *n = json_object_get(blk, "name");
    if (!json_is_string(i) || json_string_length(i) == 0 ||
        json_string_length(i) > PROVIDER_MAX_TOOL_ID || !json_is_string(n) ||
        json_string_length(n) == 0 || json_string_length(n) > PROVIDER_MAX_TOOL_NAME) {
        return false;
    }
    *ret_id = json_string_value(i);
    *ret_name = json_string_value(n);
    return true;
}

json_t *prov_tool_call(const json_t *blk, const char *id_key)
{
    const char *id, *name;
    const json_t *input = json_object_get(blk, "input");
    if (!prov_tool_ident(blk, id_key, &id, &name)) {
        return NULL;
    }
    char *args = input != NULL ? jsonw_dumps(input, NULL) : NULL;
    json_t *tc = json_pack("{s:s,s:s,s:{s:s,s:s}}", "id", id, "type", "function", "function",
                           "name", name, "arguments", args != NULL ? args : "{}");
    free(args);
    return tc;
}

enum err prov_tool_calls_add(json_t *tool_calls, json_t *tc)
{
    if (tc == NULL || json_array_size(tool_calls) >= PROVIDER_MAX_TOOL_CALLS) {
        json_decref(tc);
        return ERR_PROTO;
    }
    return json_array_append_new(tool_calls, tc) == 0 ? ERR_OK : ERR_NOMEM;
}

json_t *prov_answer_message(const struct buf *text, json_t *tool_calls)
{
    json_t *message;
    if (json_array_size(tool_calls) > 0) {
        message = json_pack("{s:s,s:o,s:O}", "role", "assistant", "content",
                            text->len > 0 ? json_stringn(text->data, text->len) : json_null(),
                            "tool_calls", tool_calls);
    } else {
        message = json_pack("{s:s,s:s%}", "role", "assistant", "content",
                            text->data != NULL ? text->data : "", text->len);
    }
    json_decref(tool_calls);
    return message;
}

enum err prov_emit(struct buf *out, json_t *chunk)
{
    if (chunk == NULL) {
        return ERR_NOMEM;
    }
    size_t len = 0;
    char *s = jsonw_dumps(chunk, &len);
    json_decref(chunk);
    if (s == NULL) {
        return ERR_NOMEM;
    }
    enum err e = buf_append(out, "data: ", 6);
    if (e == ERR_OK) {
        e = buf_append(out, s, len);
    }
    if (e == ERR_OK) {
        e = buf_append(out, "\n\n", 2);
    }
    free(s);
    return e;
}

json_t *prov_chunk(const struct provider_stream *st, json_t *delta, const char *finish)
{
    return json_pack("{s:s,s:s,s:I,s:s,s:[{s:i,s:o,s:s?}]}", "id", st->id, "object",
                     "chat.completion.chunk", "created", (json_int_t)st->created, "model",
                     st->model, "choices", "index", 0, "delta", delta, "finish_reason", finish);
}

long long prov_block_index(const json_t *ev, const char *key)
{
    const json_t *i = json_object_get(ev, key);
    return json_is_integer(i) && json_integer_value(i) >= 0 ? (long long)json_integer_value(i) : -1;
}

enum err prov_stream_role(struct provider_stream *st, struct buf *out)
{
    return prov_emit(
        out, prov_chunk(st, json_pack("{s:s,s:s}", "role", "assistant", "content", ""), NULL));
}

enum err prov_stream_text(struct provider_stream *st, const json_t *text, struct buf *out)
{
    st->est_completion += prov_est_tokens((long long)json_string_length(text));
    return prov_emit(out, prov_chunk(st, json_pack("{s:O}", "content", text), NULL));
}

enum err prov_stream_tool_start(struct provider_stream *st, const json_t *blk, const char *id_key,
                                long long index, struct buf *out)
{
    const char *id, *name;
    if (!prov_tool_ident(blk, id_key, &id, &name) || index < 0 ||
        st->tool_calls >= PROVIDER_MAX_TOOL_CALLS) {
        return ERR_PROTO;
    }
    json_t *delta =
        json_pack("{s:[{s:i,s:s,s:s,s:{s:s,s:s}}]}", "tool_calls", "index", st->tool_calls, "id",
                  id, "type", "function", "function", "name", name, "arguments", "");
    st->tool_calls++;
    st->tool_open = true;
    st->tool_block = index;
    return prov_emit(out, prov_chunk(st, delta, NULL));
}

enum err prov_stream_tool_args(struct provider_stream *st, const json_t *frag, long long index,
                               struct buf *out)
{
    if (!json_is_string(frag) || json_string_length(frag) == 0 || !st->tool_open ||
        index != st->tool_block) {
        return ERR_OK;
    }
    st->est_completion += prov_est_tokens((long long)json_string_length(frag));
    return prov_emit(out, prov_chunk(st,
                                     json_pack("{s:[{s:i,s:{s:O}}]}", "tool_calls", "index",
                                               st->tool_calls - 1, "function", "arguments", frag),
                                     NULL));
}

void prov_stream_tool_stop(struct provider_stream *st, long long index)
{
    if (st->tool_open && index == st->tool_block) {
        st->tool_open = false;
    }
}

enum err prov_stream_end(struct provider_stream *st, const char *finish, struct buf *out)
{
    enum err e = ERR_OK;
    if (finish != NULL) {
        e = prov_emit(out, prov_chunk(st, json_object(), finish));
    }
    if (e == ERR_OK && !st->skip_usage_chunk) {
        /* OpenAI's include_usage shape: a last chunk with empty choices. */
        e = prov_emit(out, json_pack("{s:s,s:s,s:I,s:s,s:[],s:o}", "id", st->id, "object",
                                     "chat.completion.chunk", "created", (json_int_t)st->created,
                                     "model", st->model, "choices", "usage",
                                     prov_usage_json(&st->usage)));
    }
    if (e == ERR_OK) {
        e = buf_append_str(out, "data: [DONE]\n\n");
    }
    st->done = true;
    return e;
}

/* ---- prompt-cache hints --------------------------------------------------------------- */

/*
 * One cache_control at path (a printf-made field name): absent or null is
 * no hint; else it must be {"type": "ephemeral"} with an optional "ttl" of
 * "5m" or "1h" and nothing else (what Anthropic takes; LiteLLM and
 * OpenRouter accept the same in OpenAI's shape). *points counts the hints.
 */
static enum err prov_cache_one(const json_t *holder, const char *path, int *points,
                               struct provider_bad *bad)
{
    const json_t *cc = json_object_get(holder, "cache_control");
    if (cc == NULL || json_is_null(cc)) {
        return ERR_OK;
    }
    static const char *const why =
        "must be {\"type\":\"ephemeral\"} with an optional \"ttl\" of \"5m\" or \"1h\"";
    if (!json_is_object(cc)) {
        return prov_bad(bad, why, "%s.cache_control", path);
    }
    const char *type = json_string_value(json_object_get(cc, "type"));
    const json_t *ttl = json_object_get(cc, "ttl");
    const char *ttl_s = json_string_value(ttl);
    if (type == NULL || strcmp(type, "ephemeral") != 0) {
        return prov_bad(bad, why, "%s.cache_control.type", path);
    }
    if (ttl != NULL && (ttl_s == NULL || (strcmp(ttl_s, "5m") != 0 && strcmp(ttl_s, "1h") != 0))) {
        return prov_bad(bad, why, "%s.cache_control.ttl", path);
    }
    if (json_object_size(cc) != (ttl != NULL ? 2U : 1U)) {
        return prov_bad(bad, why, "%s.cache_control", path);
    }
    if (++*points > PROVIDER_MAX_CACHE_POINTS) {
        return prov_bad(bad, "is one cache breakpoint too many: at most 4 may be set",
                        "%s.cache_control", path);
    }
    return ERR_OK;
}

enum err provider_cache_check(const json_t *req, struct provider_bad *bad)
{
    char path[64];
    int points = 0;
    size_t i, j;
    const json_t *m, *part, *tool;
    enum err e = ERR_OK;
    /* Anthropic's order (tools, system, messages), so a 5th breakpoint is named as it counts. */
    json_array_foreach(json_object_get(req, "tools"), i, tool)
    {
        snprintf(path, sizeof(path), "tools[%zu]", i);
        if ((e = prov_cache_one(tool, path, &points, bad)) != ERR_OK) {
            return e;
        }
    }
    json_array_foreach(json_object_get(req, "messages"), i, m)
    {
        json_array_foreach(json_object_get(m, "content"), j, part)
        {
            snprintf(path, sizeof(path), "messages[%zu].content[%zu]", i, j);
            if ((e = prov_cache_one(part, path, &points, bad)) != ERR_OK) {
                return e;
            }
        }
        snprintf(path, sizeof(path), "messages[%zu]", i);
        if ((e = prov_cache_one(m, path, &points, bad)) != ERR_OK) {
            return e;
        }
    }
    return ERR_OK;
}

bool prov_cache_hint(const json_t *holder)
{
    return json_is_object(json_object_get(holder, "cache_control"));
}

bool prov_cache_in_content(const json_t *content)
{
    size_t i;
    const json_t *part;
    json_array_foreach(content, i, part)
    {
        if (prov_cache_hint(part)) {
            return true;
        }
    }
    return false;
}

json_t *prov_cache_anthropic(const json_t *holder)
{
    const json_t *cc = json_object_get(holder, "cache_control");
    const json_t *ttl = json_object_get(cc, "ttl");
    json_t *out = json_pack("{s:s}", "type", "ephemeral");
    if (out != NULL && json_is_string(ttl) && json_object_set(out, "ttl", (json_t *)ttl) != 0) {
        json_decref(out);
        return NULL;
    }
    return out;
}

bool prov_cache_strip(json_t *req)
{
    bool any = false;
    size_t i, j;
    json_t *m, *part, *tool;
    json_array_foreach(json_object_get(req, "tools"), i, tool)
    {
        if (json_object_del(tool, "cache_control") == 0) {
            any = true;
        }
    }
    json_array_foreach(json_object_get(req, "messages"), i, m)
    {
        json_array_foreach(json_object_get(m, "content"), j, part)
        {
            if (json_object_del(part, "cache_control") == 0) {
                any = true;
            }
        }
        if (json_object_del(m, "cache_control") == 0) {
            any = true;
        }
    }
    return any;
}

bool prov_cache_present(const json_t *req)
{
    size_t i;
    const json_t *m, *tool;
    json_array_foreach(json_object_get(req, "tools"), i, tool)
    {
        if (json_object_get(tool, "cache_control") != NULL) {
            return true;
        }
    }
    json_array_foreach(json_object_get(req, "messages"), i, m)
    {
        if (json_object_get(m, "cache_control") != NULL) {
            return true;
        }
        size_t j;
        const json_t *part;
        json_array_foreach(json_object_get(m, "content"), j, part)
        {
            if (json_object_get(part, "cache_control") != NULL) {
                return true;
            }
        }
    }
    return false;
}

bool prov_stream_error_frame(const char *event, const json_t *j, const char *type)
{
    const json_t *err = json_object_get(j, "error");
    return (event != NULL && strcmp(event, "error") == 0) ||
           (type != NULL && strcmp(type, "error") == 0) || json_is_object(err) ||
           json_is_string(err);
}
