/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The adapter table and the three adapters. References:
 *   OpenAI chat completions and streaming (stream_options.include_usage):
 *     https://platform.openai.com/docs/api-reference/chat
 *   Azure OpenAI REST: {endpoint}/openai/deployments/{deployment}/chat/completions?api-version=
 *   Anthropic Messages API and its streaming events (message_start,
 *     content_block_delta, message_delta, message_stop):
 *     https://docs.anthropic.com/en/api/messages-streaming
 * Not done here: choosing a provider (route.c), sending (upstream.c).
 */
#include "agent/providers.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/upstream.h"
#include "common/azure.h"

#define ANTHROPIC_VERSION "2023-06-01"
#define AZURE_DEFAULT_API_VERSION "2024-10-21"

void provider_http_done(struct provider_http *h)
{
    if (h->body != NULL) {
        OPENSSL_cleanse(h->body, h->body_len);
        free(h->body);
        h->body = NULL;
    }
    upstream_headers_free(h->headers);
    h->headers = NULL;
}

/* A provider's token count: an integer or a real (truncated), clamped to 0..PROVIDER_MAX_TOKENS. */
static long long prov_count(const json_t *v)
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

static long long prov_min(long long a, long long b)
{
    return a < b ? a : b;
}

/* Characters per token and tokens per chat message of provider_prompt_estimate. */
#define PROV_EST_CHARS_PER_TOKEN 4
#define PROV_EST_TOKENS_PER_MESSAGE 4
#define PROV_EST_TOKENS_REPLY 3

/* Tokens for n characters of text: at least one for any text. */
static long long prov_est_tokens(long long chars)
{
    if (chars <= 0) {
        return 0;
    }
    return prov_min((chars + PROV_EST_CHARS_PER_TOKEN - 1) / PROV_EST_CHARS_PER_TOKEN,
                    PROVIDER_MAX_TOKENS);
}

/* Text characters of a message content: a string, or the text of its parts. */
static long long prov_content_chars(const json_t *content)
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
    }
    return n;
}

long long provider_prompt_estimate(enum provider_op op, const json_t *req)
{
    /* The request is bounded by limits.max_body_bytes: these sums cannot overflow. */
    long long chars = 0, tokens = 0;
    size_t i;
    const json_t *v;
    if (op == PROVIDER_EMBEDDINGS) {
        const json_t *in = json_object_get(req, "input");
        if (json_is_string(in)) {
            chars = (long long)json_string_length(in);
        }
        json_array_foreach(in, i, v)
        {
            if (json_is_string(v)) {
                tokens += prov_est_tokens((long long)json_string_length(v));
            } else if (json_is_integer(v)) {
                tokens++; /* a token id */
            } else if (json_is_array(v)) {
                tokens += (long long)json_array_size(v); /* token ids */
            }
        }
    } else {
        const json_t *msgs = json_object_get(req, "messages");
        json_array_foreach(msgs, i, v)
        {
            chars += prov_content_chars(json_object_get(v, "content"));
            tokens += PROV_EST_TOKENS_PER_MESSAGE;
        }
        if (json_array_size(msgs) > 0) {
            tokens += PROV_EST_TOKENS_REPLY;
        }
    }
    return prov_min(prov_est_tokens(chars) + tokens, PROVIDER_MAX_TOKENS);
}

long long provider_completion_estimate(const json_t *answer)
{
    long long chars = 0;
    size_t i;
    const json_t *choice;
    json_array_foreach(json_object_get(answer, "choices"), i, choice)
    {
        chars += prov_content_chars(json_object_get(json_object_get(choice, "message"), "content"));
    }
    return prov_est_tokens(chars);
}

void provider_usage_from_openai(const json_t *usage, struct provider_usage *u)
{
    if (!json_is_object(usage)) {
        return;
    }
    u->prompt_tokens = prov_count(json_object_get(usage, "prompt_tokens"));
    u->completion_tokens = prov_count(json_object_get(usage, "completion_tokens"));
    const json_t *d = json_object_get(usage, "prompt_tokens_details");
    u->cached_tokens = prov_min(prov_count(json_object_get(d, "cached_tokens")), u->prompt_tokens);
    u->seen = true;
}

double provider_cost(const json_t *entry, const char *model, const struct provider_usage *u)
{
    const json_t *models = json_object_get(entry, "models");
    size_t i;
    const json_t *m;
    json_array_foreach(models, i, m)
    {
        const char *name = json_string_value(json_object_get(m, "name"));
        if (name != NULL && strcmp(name, model) == 0) {
            double in = json_number_value(json_object_get(m, "input_per_1m"));
            double out = json_number_value(json_object_get(m, "output_per_1m"));
            /* The plugin bounds prices when the catalog is written; a creds reply that says
               otherwise costs nothing rather than a cost the usage report would be refused for. */
            if (!(in >= 0 && in <= PROVIDER_MAX_PRICE && out >= 0 && out <= PROVIDER_MAX_PRICE)) {
                return 0;
            }
            return ((double)u->prompt_tokens * in + (double)u->completion_tokens * out) / 1e6;
        }
    }
    return 0;
}

/* base_url without trailing slashes + suffix; refuses non-https unless local. */
static enum err prov_url(struct provider_http *out, const json_t *entry, const char *suffix)
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

static enum err prov_dump(json_t *body, struct provider_http *out)
{
    out->body = json_dumps(body, JSON_COMPACT);
    if (out->body == NULL) {
        return ERR_NOMEM;
    }
    out->body_len = strlen(out->body);
    return ERR_OK;
}

static enum err prov_common_headers(struct provider_http *out, bool stream)
{
    enum err e = upstream_header_add(&out->headers, "Content-Type: application/json");
    if (e == ERR_OK) {
        e = upstream_header_add(&out->headers,
                                stream ? "Accept: text/event-stream" : "Accept: application/json");
    }
    /* curl adds "Expect: 100-continue" for large bodies: a round trip we do not want. */
    if (e == ERR_OK) {
        e = upstream_header_add(&out->headers, "Expect:");
    }
    return e;
}

/* The OpenAI body: the app's request with our model name and usage reporting switched on. */
static enum err prov_openai_body(const struct provider_call *c, bool set_model,
                                 struct provider_http *out)
{
    json_t *req = c->req;
    if (set_model) {
        if (json_object_set_new(req, "model", json_string(c->model)) != 0) {
            return ERR_NOMEM;
        }
    } else {
        json_object_del(req, "model");
    }
    if (c->op == PROVIDER_CHAT && c->stream) {
        json_t *so = json_object_get(req, "stream_options");
        if (!json_is_object(so)) {
            so = json_object();
            if (so == NULL || json_object_set_new(req, "stream_options", so) != 0) {
                return ERR_NOMEM;
            }
        }
        if (json_object_set_new(so, "include_usage", json_true()) != 0) {
            return ERR_NOMEM;
        }
    }
    return prov_dump(req, out);
}

static enum err openai_build(const struct provider_call *c, struct provider_http *out)
{
    enum err e =
        prov_url(out, c->entry, c->op == PROVIDER_CHAT ? "/chat/completions" : "/embeddings");
    if (e == ERR_OK) {
        e = prov_openai_body(c, true, out);
    }
    if (e == ERR_OK) {
        e = prov_common_headers(out, c->stream);
    }
    if (e == ERR_OK) {
        e = upstream_header_secret(&out->headers, "Authorization: Bearer ", c->key);
    }
    return e;
}

/*
 * Azure's deployment for a model: metadata "deployment" may be one name for
 * all models, a JSON object {model: deployment}, or that object as a string
 * (key metadata is a map of strings). Without it the model name is used.
 */
static const char *azure_deployment(const json_t *md, const char *model, json_t **tmp)
{
    const json_t *d = json_object_get(md, "deployment");
    if (json_is_object(d)) {
        const char *s = json_string_value(json_object_get(d, model));
        return s != NULL ? s : model;
    }
    const char *s = json_string_value(d);
    if (s == NULL || s[0] == '\0') {
        return model;
    }
    if (s[0] == '{') {
        *tmp = json_loads(s, 0, NULL);
        const char *m = json_string_value(json_object_get(*tmp, model));
        return m != NULL ? m : model;
    }
    return s;
}

static enum err azure_build(const struct provider_call *c, struct provider_http *out)
{
    json_t *tmp = NULL;
    const char *dep = azure_deployment(c->metadata, c->model, &tmp);
    const char *ver = json_string_value(json_object_get(c->metadata, "api_version"));
    if (ver == NULL) {
        ver = AZURE_DEFAULT_API_VERSION;
    }
    enum err e = ERR_CONFIG;
    /* Both go into the URL: a strict charset keeps it one path segment and one query value. */
    if (azure_name_ok(dep) && azure_name_ok(ver)) {
        char suffix[512];
        snprintf(suffix, sizeof(suffix), "/openai/deployments/%s/%s?api-version=%s", dep,
                 c->op == PROVIDER_CHAT ? "chat/completions" : "embeddings", ver);
        e = prov_url(out, c->entry, suffix);
    }
    json_decref(tmp);
    if (e == ERR_OK) {
        e = prov_openai_body(c, false, out);
    }
    if (e == ERR_OK) {
        e = prov_common_headers(out, c->stream);
    }
    if (e == ERR_OK) {
        e = upstream_header_secret(&out->headers, "api-key: ", c->key);
    }
    return e;
}

/*
 * The "usage" object of an OpenAI response without parsing the whole body.
 * The byte sequence "usage" followed by ':' can only be an object key: inside
 * a JSON string every quote is escaped. The last such key is the top-level one
 * (nested objects come before it in every provider's output we know, and a
 * wrong pick only costs accounting, which the full parse below then does).
 */
static bool openai_usage_scan(const char *body, size_t len, struct provider_usage *u)
{
    static const char key[] = "\"usage\"";
    const char *hit = NULL;
    for (const char *p = body; (p = memmem(p, len - (size_t)(p - body), key, 7)) != NULL; p += 7) {
        hit = p;
    }
    if (hit == NULL) {
        return false;
    }
    const char *v = hit + 7;
    const char *end = body + len;
    while (v < end && (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r')) {
        v++;
    }
    if (v >= end || *v != ':') {
        return false;
    }
    v++;
    json_t *j = json_loadb(v, (size_t)(end - v), JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return false;
    }
    provider_usage_from_openai(j, u);
    json_decref(j);
    return true;
}

static enum err openai_response(enum provider_op op, const char *body, size_t len,
                                const char *model, json_t **ret_json,
                                struct provider_usage *ret_usage)
{
    if (ret_json == NULL) {
        /* Passthrough: the body goes to the app as it is; only usage is needed. */
        if (openai_usage_scan(body, len, ret_usage)) {
            return ERR_OK;
        }
    }
    json_t *j = json_loadb(body, len, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return ERR_PROTO;
    }
    provider_usage_from_openai(json_object_get(j, "usage"), ret_usage);
    if (ret_json != NULL) {
        *ret_json = j;
    } else {
        json_decref(j);
    }
    return ERR_OK;
}

static bool prov_contains(const char *data, size_t len, const char *needle)
{
    return memmem(data, len, needle, strlen(needle)) != NULL;
}

static enum err openai_stream_event(struct provider_stream *st, const char *event, const char *data,
                                    size_t len, struct buf *out)
{
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        st->done = true;
        return ERR_OK;
    }
    /*
     * Only chunks that may carry usage or an error are parsed: the rest is
     * forwarded unread. With include_usage OpenAI puts "usage":null in every
     * chunk but the last; quotes inside strings are escaped, so neither
     * pattern can match message text.
     */
    bool has_usage =
        prov_contains(data, len, "\"usage\"") && !prov_contains(data, len, "\"usage\":null");
    bool has_error = prov_contains(data, len, "\"error\"");
    if (!has_usage && !has_error) {
        st->est_completion++;
        return ERR_OK;
    }
    json_t *j = json_loadb(data, len, 0, NULL);
    if (j == NULL) {
        st->est_completion++;
        return ERR_OK;
    }
    json_t *err = json_object_get(j, "error");
    if (json_is_object(err)) {
        st->failed = true;
        const char *t = json_string_value(json_object_get(err, "type"));
        snprintf(st->error_type, sizeof(st->error_type), "%s", t != NULL ? t : "provider_error");
    }
    if (json_is_object(json_object_get(j, "usage"))) {
        provider_usage_from_openai(json_object_get(j, "usage"), &st->usage);
        st->usage_final = true;
    } else if (!json_is_object(err)) {
        st->est_completion++;
    }
    json_decref(j);
    return ERR_OK;
}

/* ---- Anthropic ---------------------------------------------------------------------------- */

static json_t *anth_text_of(const json_t *content)
{
    if (json_is_string(content)) {
        return json_incref((json_t *)content);
    }
    struct buf b;
    buf_init(&b, (size_t)16 * 1024 * 1024);
    size_t i;
    const json_t *part;
    json_array_foreach(content, i, part)
    {
        const char *t = json_string_value(json_object_get(part, "text"));
        if (t != NULL) {
            if ((b.len > 0 && buf_append(&b, "\n", 1) != ERR_OK) ||
                buf_append_str(&b, t) != ERR_OK) {
                buf_done(&b);
                return NULL;
            }
        }
    }
    json_t *s = json_stringn(b.data != NULL ? b.data : "", b.len);
    buf_done(&b);
    return s;
}

/* An OpenAI content part to an Anthropic content block (text and images). */
static json_t *anth_part(const json_t *part)
{
    const char *type = json_string_value(json_object_get(part, "type"));
    if (type == NULL) {
        return NULL;
    }
    if (strcmp(type, "text") == 0) {
        return json_pack("{s:s,s:O}", "type", "text", "text", json_object_get(part, "text"));
    }
    if (strcmp(type, "image_url") == 0) {
        const json_t *iu = json_object_get(part, "image_url");
        const char *url = json_string_value(json_is_object(iu) ? json_object_get(iu, "url") : iu);
        if (url == NULL) {
            return NULL;
        }
        if (strncmp(url, "data:", 5) == 0) {
            const char *semi = strchr(url, ';');
            const char *comma = strchr(url, ',');
            if (semi == NULL || comma == NULL || semi > comma ||
                strncmp(semi, ";base64,", 8) != 0) {
                return NULL;
            }
            return json_pack("{s:s,s:{s:s,s:s%,s:s}}", "type", "image", "source", "type", "base64",
                             "media_type", url + 5, (size_t)(semi - url - 5), "data", comma + 1);
        }
        return json_pack("{s:s,s:{s:s,s:s}}", "type", "image", "source", "type", "url", "url", url);
    }
    return NULL;
}

static json_t *anth_content(const json_t *content)
{
    if (json_is_string(content)) {
        return json_incref((json_t *)content);
    }
    if (!json_is_array(content)) {
        return NULL;
    }
    json_t *arr = json_array();
    size_t i;
    const json_t *part;
    json_array_foreach(content, i, part)
    {
        json_t *blk = anth_part(part);
        if (blk == NULL || json_array_append_new(arr, blk) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

enum err provider_anthropic_request(const json_t *oreq, const char *model, bool stream,
                                    long default_max_tokens, json_t **ret)
{
    const json_t *msgs = json_object_get(oreq, "messages");
    if (!json_is_array(msgs)) {
        return ERR_INVAL;
    }
    json_t *out = json_object();
    json_t *amsgs = json_array();
    struct buf system;
    buf_init(&system, (size_t)16 * 1024 * 1024);
    enum err e = ERR_NOMEM;
    if (out == NULL || amsgs == NULL) {
        goto fail;
    }
    size_t i;
    const json_t *m;
    json_array_foreach(msgs, i, m)
    {
        const char *role = json_string_value(json_object_get(m, "role"));
        const json_t *content = json_object_get(m, "content");
        if (role == NULL) {
            e = ERR_INVAL;
            goto fail;
        }
        if (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0) {
            /* Anthropic takes the system prompt as a top-level field, not a message. */
            json_t *t = anth_text_of(content);
            if (t == NULL) {
                e = ERR_INVAL;
                goto fail;
            }
            enum err ae = ERR_OK;
            if (system.len > 0) {
                ae = buf_append(&system, "\n\n", 2);
            }
            if (ae == ERR_OK) {
                ae = buf_append(&system, json_string_value(t), json_string_length(t));
            }
            json_decref(t);
            if (ae != ERR_OK) {
                e = ae;
                goto fail;
            }
            continue;
        }
        json_t *am = NULL;
        if (strcmp(role, "user") == 0 || strcmp(role, "assistant") == 0) {
            json_t *c = anth_content(content);
            if (c == NULL) {
                e = ERR_INVAL;
                goto fail;
            }
            am = json_pack("{s:s,s:o}", "role", role, "content", c);
        } else if (strcmp(role, "tool") == 0) {
            json_t *t = anth_text_of(content);
            const char *id = json_string_value(json_object_get(m, "tool_call_id"));
            if (t == NULL || id == NULL) {
                json_decref(t);
                e = ERR_INVAL;
                goto fail;
            }
            am = json_pack("{s:s,s:[{s:s,s:s,s:o}]}", "role", "user", "content", "type",
                           "tool_result", "tool_use_id", id, "content", t);
        } else {
            e = ERR_INVAL;
            goto fail;
        }
        if (am == NULL || json_array_append_new(amsgs, am) != 0) {
            goto fail;
        }
    }
    if (json_array_size(amsgs) == 0) {
        e = ERR_INVAL;
        goto fail;
    }
    json_int_t max_tokens = default_max_tokens;
    const json_t *mt = json_object_get(oreq, "max_tokens");
    if (!json_is_integer(mt)) {
        mt = json_object_get(oreq, "max_completion_tokens");
    }
    if (json_is_integer(mt) && json_integer_value(mt) > 0) {
        max_tokens = json_integer_value(mt);
    }
    if (json_object_set_new(out, "model", json_string(model)) != 0 ||
        json_object_set_new(out, "max_tokens", json_integer(max_tokens)) != 0 ||
        json_object_set(out, "messages", amsgs) != 0) {
        goto fail;
    }
    if (system.len > 0 &&
        json_object_set_new(out, "system", json_stringn(system.data, system.len)) != 0) {
        goto fail;
    }
    static const char *const passthrough[] = {"temperature", "top_p", "top_k", NULL};
    for (const char *const *k = passthrough; *k != NULL; k++) {
        json_t *v = json_object_get(oreq, *k);
        if (json_is_number(v) && json_object_set(out, *k, v) != 0) {
            goto fail;
        }
    }
    const json_t *stop = json_object_get(oreq, "stop");
    if (json_is_string(stop)) {
        json_object_set_new(out, "stop_sequences", json_pack("[O]", stop));
    } else if (json_is_array(stop)) {
        json_object_set(out, "stop_sequences", (json_t *)stop);
    }
    const json_t *user = json_object_get(oreq, "user");
    if (json_is_string(user)) {
        json_object_set_new(out, "metadata", json_pack("{s:O}", "user_id", user));
    }
    if (stream) {
        json_object_set_new(out, "stream", json_true());
    }
    json_decref(amsgs);
    buf_done(&system);
    *ret = out;
    return ERR_OK;
fail:
    json_decref(amsgs);
    json_decref(out);
    buf_done(&system);
    return e;
}

static const char *anth_finish(const char *stop_reason)
{
    static const struct {
        const char *from, *to;
    } map[] = {{"end_turn", "stop"},       {"stop_sequence", "stop"},     {"max_tokens", "length"},
               {"tool_use", "tool_calls"}, {"refusal", "content_filter"}, {NULL, NULL}};
    if (stop_reason == NULL) {
        return NULL;
    }
    for (size_t i = 0; map[i].from != NULL; i++) {
        if (strcmp(map[i].from, stop_reason) == 0) {
            return map[i].to;
        }
    }
    return "stop";
}

static void anth_usage(const json_t *u, struct provider_usage *out, bool input_side)
{
    if (!json_is_object(u)) {
        return;
    }
    if (input_side || json_object_get(u, "input_tokens") != NULL) {
        /* Each is at most PROVIDER_MAX_TOKENS, so the sum cannot overflow. */
        long long in = prov_count(json_object_get(u, "input_tokens"));
        long long cr = prov_count(json_object_get(u, "cache_read_input_tokens"));
        long long cc = prov_count(json_object_get(u, "cache_creation_input_tokens"));
        /* OpenAI's prompt_tokens include cached ones; Anthropic's input_tokens do not. */
        if (in + cr + cc > 0 || input_side) {
            out->prompt_tokens = prov_min(in + cr + cc, PROVIDER_MAX_TOKENS);
            out->cached_tokens = prov_min(cr, out->prompt_tokens);
        }
    }
    if (json_object_get(u, "output_tokens") != NULL) {
        out->completion_tokens = prov_count(json_object_get(u, "output_tokens"));
    }
    out->seen = true;
}

static json_t *prov_usage_json(const struct provider_usage *u)
{
    return json_pack("{s:I,s:I,s:I,s:{s:I}}", "prompt_tokens", (json_int_t)u->prompt_tokens,
                     "completion_tokens", (json_int_t)u->completion_tokens, "total_tokens",
                     (json_int_t)(u->prompt_tokens + u->completion_tokens), "prompt_tokens_details",
                     "cached_tokens", (json_int_t)u->cached_tokens);
}

enum err provider_anthropic_response(const json_t *msg, json_t **ret,
                                     struct provider_usage *ret_usage)
{
    if (!json_is_object(msg) || !json_is_array(json_object_get(msg, "content"))) {
        return ERR_PROTO;
    }
    struct buf text;
    buf_init(&text, UPSTREAM_MAX_RESPONSE_CEILING);
    json_t *tool_calls = json_array();
    size_t i;
    const json_t *blk;
    json_array_foreach(json_object_get(msg, "content"), i, blk)
    {
        const char *type = json_string_value(json_object_get(blk, "type"));
        if (type != NULL && strcmp(type, "text") == 0) {
            const char *t = json_string_value(json_object_get(blk, "text"));
            if (t != NULL && buf_append_str(&text, t) != ERR_OK) {
                buf_done(&text);
                json_decref(tool_calls);
                return ERR_NOMEM;
            }
        } else if (type != NULL && strcmp(type, "tool_use") == 0) {
            char *args = json_dumps(json_object_get(blk, "input"), JSON_COMPACT);
            json_array_append_new(tool_calls,
                                  json_pack("{s:O?,s:s,s:{s:O?,s:s}}", "id",
                                            json_object_get(blk, "id"), "type", "function",
                                            "function", "name", json_object_get(blk, "name"),
                                            "arguments", args != NULL ? args : "{}"));
            free(args);
        }
    }
    anth_usage(json_object_get(msg, "usage"), ret_usage, true);
    const char *finish = anth_finish(json_string_value(json_object_get(msg, "stop_reason")));
    json_t *message = json_pack("{s:s,s:s#}", "role", "assistant", "content",
                                text.data != NULL ? text.data : "", text.len);
    buf_done(&text);
    if (message != NULL && json_array_size(tool_calls) > 0) {
        json_object_set(message, "tool_calls", tool_calls);
    }
    json_decref(tool_calls);
    json_t *out =
        json_pack("{s:O?,s:s,s:I,s:O?,s:[{s:i,s:o,s:s?}],s:o}", "id", json_object_get(msg, "id"),
                  "object", "chat.completion", "created", (json_int_t)time(NULL), "model",
                  json_object_get(msg, "model"), "choices", "index", 0, "message", message,
                  "finish_reason", finish, "usage", prov_usage_json(ret_usage));
    if (out == NULL) {
        return ERR_NOMEM;
    }
    *ret = out;
    return ERR_OK;
}

static enum err anthropic_build(const struct provider_call *c, struct provider_http *out)
{
    if (c->op != PROVIDER_CHAT) {
        return ERR_UNSUPPORTED;
    }
    enum err e = prov_url(out, c->entry, "/messages");
    if (e != ERR_OK) {
        return e;
    }
    json_t *areq = NULL;
    e = provider_anthropic_request(c->req, c->model, c->stream, c->default_max_tokens, &areq);
    if (e != ERR_OK) {
        return e;
    }
    e = prov_dump(areq, out);
    json_decref(areq);
    if (e == ERR_OK) {
        e = prov_common_headers(out, c->stream);
    }
    if (e == ERR_OK) {
        e = upstream_header_add(&out->headers, "anthropic-version: " ANTHROPIC_VERSION);
    }
    if (e == ERR_OK) {
        e = upstream_header_secret(&out->headers, "x-api-key: ", c->key);
    }
    return e;
}

static enum err anthropic_response(enum provider_op op, const char *body, size_t len,
                                   const char *model, json_t **ret_json,
                                   struct provider_usage *ret_usage)
{
    json_t *j = json_loadb(body, len, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return ERR_PROTO;
    }
    /* ret_json may be NULL (usage only): the translation is still how usage is read. */
    json_t *out = NULL;
    enum err e = provider_anthropic_response(j, &out, ret_usage);
    json_decref(j);
    if (ret_json != NULL) {
        *ret_json = out;
    } else {
        json_decref(out);
    }
    return e;
}

/* Appends "data: <json>\n\n" for one chunk. */
static enum err anth_emit(struct buf *out, json_t *chunk)
{
    if (chunk == NULL) {
        return ERR_NOMEM;
    }
    char *s = json_dumps(chunk, JSON_COMPACT);
    json_decref(chunk);
    if (s == NULL) {
        return ERR_NOMEM;
    }
    enum err e = buf_append(out, "data: ", 6);
    if (e == ERR_OK) {
        e = buf_append_str(out, s);
    }
    if (e == ERR_OK) {
        e = buf_append(out, "\n\n", 2);
    }
    free(s);
    return e;
}

static json_t *anth_chunk(const struct provider_stream *st, json_t *delta, const char *finish)
{
    return json_pack("{s:s,s:s,s:I,s:s,s:[{s:i,s:o,s:s?}]}", "id", st->id, "object",
                     "chat.completion.chunk", "created", (json_int_t)st->created, "model",
                     st->model, "choices", "index", 0, "delta", delta, "finish_reason", finish);
}

static enum err anthropic_stream_event(struct provider_stream *st, const char *event,
                                       const char *data, size_t len, struct buf *out)
{
    json_t *j = json_loadb(data, len, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return ERR_PROTO;
    }
    const char *type = json_string_value(json_object_get(j, "type"));
    if (type == NULL) {
        type = event;
    }
    enum err e = ERR_OK;
    if (strcmp(type, "message_start") == 0) {
        const json_t *m = json_object_get(j, "message");
        const char *id = json_string_value(json_object_get(m, "id"));
        const char *model = json_string_value(json_object_get(m, "model"));
        if (id != NULL) {
            snprintf(st->id, sizeof(st->id), "%s", id);
        }
        if (model != NULL) {
            snprintf(st->model, sizeof(st->model), "%s", model);
        }
        st->created = (long long)time(NULL);
        st->started = true;
        anth_usage(json_object_get(m, "usage"), &st->usage, true);
        e = anth_emit(
            out, anth_chunk(st, json_pack("{s:s,s:s}", "role", "assistant", "content", ""), NULL));
    } else if (strcmp(type, "content_block_delta") == 0) {
        const json_t *d = json_object_get(j, "delta");
        const char *dt = json_string_value(json_object_get(d, "type"));
        const json_t *text = json_object_get(d, "text");
        if (dt != NULL && strcmp(dt, "text_delta") == 0 && json_is_string(text)) {
            st->est_completion += prov_est_tokens((long long)json_string_length(text));
            e = anth_emit(out, anth_chunk(st, json_pack("{s:O}", "content", text), NULL));
        }
    } else if (strcmp(type, "message_delta") == 0) {
        const json_t *d = json_object_get(j, "delta");
        if (json_is_object(json_object_get(j, "usage"))) {
            anth_usage(json_object_get(j, "usage"), &st->usage, false);
            st->usage_final = true;
        }
        const char *finish = anth_finish(json_string_value(json_object_get(d, "stop_reason")));
        if (finish != NULL) {
            e = anth_emit(out, anth_chunk(st, json_object(), finish));
        }
    } else if (strcmp(type, "message_stop") == 0) {
        /* OpenAI's include_usage shape: a last chunk with empty choices, then [DONE]. */
        e = anth_emit(out, json_pack("{s:s,s:s,s:I,s:s,s:[],s:o}", "id", st->id, "object",
                                     "chat.completion.chunk", "created", (json_int_t)st->created,
                                     "model", st->model, "choices", "usage",
                                     prov_usage_json(&st->usage)));
        if (e == ERR_OK) {
            e = buf_append_str(out, "data: [DONE]\n\n");
        }
        st->done = true;
    } else if (strcmp(type, "error") == 0) {
        const char *et = json_string_value(json_object_get(json_object_get(j, "error"), "type"));
        snprintf(st->error_type, sizeof(st->error_type), "%s", et != NULL ? et : "provider_error");
        st->failed = true;
    }
    /* ping, content_block_start, content_block_stop carry nothing OpenAI clients need. */
    json_decref(j);
    return e;
}

static const struct provider_adapter provider_table[] = {
    {"openai", true, openai_build, openai_response, openai_stream_event},
    /* Gemini through its OpenAI-compatible endpoint (base_url .../v1beta/openai). */
    {"gemini", true, openai_build, openai_response, openai_stream_event},
    {"azure", true, azure_build, openai_response, openai_stream_event},
    {"anthropic", false, anthropic_build, anthropic_response, anthropic_stream_event},
};

const struct provider_adapter *provider_find(const char *api_style)
{
    if (api_style == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < sizeof(provider_table) / sizeof(provider_table[0]); i++) {
        if (strcmp(provider_table[i].api_style, api_style) == 0) {
            return &provider_table[i];
        }
    }
    return NULL;
}
