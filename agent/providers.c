/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The adapter table and the adapters. References:
 *   OpenAI chat completions and streaming (stream_options.include_usage):
 *     https://platform.openai.com/docs/api-reference/chat
 *   Azure OpenAI REST: {endpoint}/openai/deployments/{deployment}/chat/completions?api-version=
 *   Anthropic Messages API and its streaming events (message_start,
 *     content_block_delta, message_delta, message_stop):
 *     https://docs.anthropic.com/en/api/messages-streaming
 *   Cohere v2 Chat and Embed, and the chat stream's events (message-start,
 *     content-delta, tool-call-start, message-end):
 *     https://docs.cohere.com/reference/chat, /reference/chat-stream,
 *     /reference/embed, https://docs.cohere.com/v2/docs/streaming
 * Not done here: choosing a provider (route.c), sending (upstream.c).
 */
#include "agent/providers.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/provider_bedrock.h"
#include "agent/provider_util.h"
#include "agent/provider_vertex.h"
#include "agent/upstream.h"
#include "common/azure.h"

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

/* Tokens per chat message of provider_prompt_estimate (prov_est_tokens counts the text). */
#define PROV_EST_TOKENS_PER_MESSAGE 4
#define PROV_EST_TOKENS_REPLY 3

size_t provider_embed_inputs(const json_t *req)
{
    const json_t *in = json_object_get(req, "input");
    if (json_is_string(in)) {
        return 1;
    }
    if (!json_is_array(in) || json_array_size(in) == 0) {
        return 0;
    }
    return json_is_integer(json_array_get(in, 0)) ? 1 : json_array_size(in);
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
            chars += prov_content_chars(json_object_get(v, "content"), 0);
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
        chars +=
            prov_content_chars(json_object_get(json_object_get(choice, "message"), "content"), 0);
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
    const json_t *cached = json_object_get(d, "cached_tokens");
    if (cached == NULL) {
        /* DeepSeek's name for its cache hits (part of prompt_tokens, as OpenAI's). */
        cached = json_object_get(usage, "prompt_cache_hit_tokens");
    }
    u->cached_tokens = prov_min(prov_count(cached), u->prompt_tokens);
    /*
     * OpenAI bills no cache writes; OpenRouter reports an Anthropic model's
     * as prompt_tokens_details.cache_write_tokens (part of prompt_tokens).
     */
    u->cache_write_tokens = prov_min(prov_count(json_object_get(d, "cache_write_tokens")),
                                     u->prompt_tokens - u->cached_tokens);
    u->cache_write_1h_tokens = 0;
    u->seen = true;
}

/*
 * A model's price under key: *ret the price, or fallback when the model has
 * none (absent or null). false when it is there but not a price the plugin
 * would have stored.
 */
static bool prov_price(const json_t *m, const char *key, double fallback, double *ret)
{
    const json_t *v = json_object_get(m, key);
    if (v == NULL || json_is_null(v)) {
        *ret = fallback;
        return true;
    }
    double p = json_number_value(v);
    *ret = p;
    return json_is_number(v) && p >= 0 && p <= PROVIDER_MAX_PRICE;
}

/*
 * The model's long-context prices when its tier applies to a prompt of that
 * many tokens (more than long_context_threshold); false when it does not or
 * the model has no valid tier (each field as the plugin bounds it).
 */
static bool prov_long_tier(const json_t *m, long long prompt, double *ret_in, double *ret_out)
{
    const json_t *t = json_object_get(m, "long_context_threshold");
    const json_t *li = json_object_get(m, "long_input_per_1m");
    const json_t *lo = json_object_get(m, "long_output_per_1m");
    if (!json_is_integer(t) || json_integer_value(t) < 1 ||
        json_integer_value(t) > PROVIDER_MAX_TOKENS || prompt <= json_integer_value(t) ||
        !json_is_number(li) || !json_is_number(lo)) {
        return false;
    }
    double in = json_number_value(li), out = json_number_value(lo);
    if (!(in >= 0 && in <= PROVIDER_MAX_PRICE && out >= 0 && out <= PROVIDER_MAX_PRICE)) {
        return false;
    }
    *ret_in = in;
    *ret_out = out;
    return true;
}

/* A cache price at the long-context tier: scaled by the tier's input ratio, bounded. */
static double prov_long_scaled(double price, double in, double long_in)
{
    if (!(in > 0)) {
        return long_in; /* no base to scale from: the tier's input price */
    }
    double p = price * (long_in / in);
    return p < PROVIDER_MAX_PRICE ? p : PROVIDER_MAX_PRICE;
}

/* USD for u's web searches at the model's web_search_per_1k; 0 without a valid one. */
static double prov_search_cost(const json_t *m, const struct provider_usage *u)
{
    const json_t *v = json_object_get(m, "web_search_per_1k");
    double p = json_number_value(v);
    if (!json_is_number(v) || !(p >= 0 && p <= PROVIDER_MAX_SEARCH_PRICE) ||
        u->web_search_requests <= 0) {
        return 0;
    }
    return (double)prov_min(u->web_search_requests, PROVIDER_MAX_TOKENS) * p / 1000.0;
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
            double cin = 0, cw = 0;
            /* The plugin bounds prices when the catalog is written; a creds reply that says
               otherwise costs nothing rather than a cost the usage report would be refused for. */
            if (!(in >= 0 && in <= PROVIDER_MAX_PRICE && out >= 0 && out <= PROVIDER_MAX_PRICE) ||
                !prov_price(m, "cached_input_per_1m", in, &cin) ||
                !prov_price(m, "cache_write_per_1m", in, &cw)) {
                return 0;
            }
            /* The parts within the whole, whatever the adapter was given (each is clamped). */
            long long prompt =
                prov_min(u->prompt_tokens > 0 ? u->prompt_tokens : 0, PROVIDER_MAX_TOKENS);
            long long cached = prov_min(u->cached_tokens > 0 ? u->cached_tokens : 0, prompt);
            long long writes =
                prov_min(u->cache_write_tokens > 0 ? u->cache_write_tokens : 0, prompt - cached);
            long long w1h =
                prov_min(u->cache_write_1h_tokens > 0 ? u->cache_write_1h_tokens : 0, writes);
            /* A long prompt is billed at the long prices for all its tokens (Anthropic's
               1M-context beta, Gemini 2.5 Pro), the cache prices by the same multiplier. */
            double lin, lout;
            if (prov_long_tier(m, prompt, &lin, &lout)) {
                cin = prov_long_scaled(cin, in, lin);
                cw = prov_long_scaled(cw, in, lin);
                in = lin;
                out = lout;
            }
            /* Anthropic bills 1-hour cache writes at 2x the input price (one catalog price:
               cache_write_per_1m is the 5-minute one, 1.25x there). */
            double usd = (double)(prompt - cached - writes) * in + (double)cached * cin +
                         (double)(writes - w1h) * cw + (double)w1h * 2.0 * in +
                         (double)u->completion_tokens * out;
            return usd / 1e6 + prov_search_cost(m, u);
        }
    }
    return 0;
}

/* The JSON request headers, accepting an SSE stream or a JSON answer. */
static enum err prov_common_headers(struct provider_http *out, bool stream)
{
    return prov_json_headers(out,
                             stream ? "Accept: text/event-stream" : "Accept: application/json");
}

/*
 * Prompt-cache hints (cache_control) are Anthropic's: OpenAI and Azure cache
 * prompts by themselves and refuse the unknown member (400), as may other
 * OpenAI-compatible servers, so they are left out of what is sent. OpenRouter
 * (the catalog's "openrouter" entry) takes them in OpenAI's shape and passes
 * them to the Anthropic and Gemini models it routes to: kept there. The
 * request may be tried on another candidate next, so a copy is stripped,
 * made only when there is a hint.
 */
static enum err prov_openai_dump(const struct provider_call *c, json_t *req,
                                 struct provider_http *out)
{
    const char *name = json_string_value(json_object_get(c->entry, "name"));
    if (c->op != PROVIDER_CHAT || (name != NULL && strcmp(name, "openrouter") == 0) ||
        !prov_cache_present(req)) {
        return prov_dump(req, out);
    }
    json_t *copy = json_deep_copy(req);
    if (copy == NULL) {
        return ERR_NOMEM;
    }
    (void)prov_cache_strip(copy);
    enum err e = prov_dump(copy, out);
    json_decref(copy);
    return e;
}

/* The OpenAI body: the app's request with our model name and usage reporting switched on. */
static enum err prov_openai_body(const struct provider_call *c, bool set_model, bool usage_option,
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
    if (c->op == PROVIDER_CHAT && c->stream && !usage_option) {
        /* The API would refuse the whole request for it; the agent estimates the usage. */
        json_object_del(req, "stream_options");
    } else if (c->op == PROVIDER_CHAT && c->stream) {
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
    return prov_openai_dump(c, req, out);
}

static enum err openai_build(const struct provider_call *c, struct provider_http *out)
{
    enum err e =
        prov_url(out, c->entry, c->op == PROVIDER_CHAT ? "/chat/completions" : "/embeddings");
    if (e == ERR_OK) {
        e = prov_openai_body(c, true, true, out);
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

/*
 * Azure takes stream_options (and so reports a stream's usage) from
 * api-version 2024-09-01-preview on (GA 2024-10-21); older versions answer
 * 400 "Unrecognized request argument supplied: stream_options". A version is
 * compared by its date prefix, a preview counting as its date; one that does
 * not start with a date ("preview", "latest" of the v1 API) is newer.
 */
bool provider_azure_stream_options(const char *ver)
{
    static const char first[] = "2024-09-01";
    for (size_t i = 0; i < sizeof(first) - 1; i++) {
        bool digit = ver[i] >= '0' && ver[i] <= '9';
        if (first[i] == '-' ? ver[i] != '-' : !digit) {
            return true;
        }
    }
    return strncmp(ver, first, sizeof(first) - 1) >= 0;
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
        e = prov_openai_body(c, false, provider_azure_stream_options(ver), out);
    }
    if (e == ERR_OK) {
        e = prov_common_headers(out, c->stream);
    }
    if (e == ERR_OK) {
        e = upstream_header_secret(&out->headers, "api-key: ", c->key);
    }
    return e;
}

static enum err openai_response(enum provider_op op, const char *body, size_t len,
                                const char *model, json_t **ret_json,
                                struct provider_usage *ret_usage)
{
    /*
     * Parsed whole even when the body is passed through as it is (ret_json
     * NULL): only a full parse proves it is one JSON document, and finds the
     * top-level "usage" rather than one nested in it. A byte scan for "usage"
     * forwarded two objects back to back, or miscounted a nested usage, as a
     * 200. It costs ~12,000 instructions for a short answer (docs/agent.md,
     * Performance).
     */
    json_t *j = json_loadb(body, len, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return ERR_PROTO;
    }
    /*
     * A 2xx that is an error (gateways and some OpenAI-compatible servers
     * answer 200 with OpenAI's error object, or older TGI's error string):
     * never an answer, and its text, like a stream's error event, may echo
     * the request's key ("Incorrect API key provided: sk-..."). Not passed on.
     */
    json_t *err = json_object_get(j, "error");
    if (json_is_object(err) || json_is_string(err)) {
        json_decref(j);
        return ERR_UPSTREAM;
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
     * An error event: "event: error" whatever its data (some servers send
     * {"message": ...} under it), or a top-level "error" that is an object
     * (OpenAI, vLLM) or a string (older TGI). Its text is never read: it may
     * echo the request, even the key.
     */
    if (strcmp(event, "error") == 0) {
        st->failed = true;
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
    if (json_is_object(err) || json_is_string(err)) {
        st->failed = true;
        json_decref(j);
        return ERR_OK;
    }
    if (json_is_object(json_object_get(j, "usage"))) {
        provider_usage_from_openai(json_object_get(j, "usage"), &st->usage);
        st->usage_final = true;
        const json_t *choices = json_object_get(j, "choices");
        /* include_usage's own chunk (empty choices), not a content chunk that also has usage. */
        st->usage_tail =
            st->skip_usage_chunk && json_is_array(choices) && json_array_size(choices) == 0;
    } else {
        st->est_completion++;
    }
    json_decref(j);
    return ERR_OK;
}

/* ---- Anthropic ---------------------------------------------------------------------------- */

static json_t *anth_part_block(const json_t *part);

/*
 * Sets holder's cache hint (a message, a part, a tool: provider_cache_check
 * has checked it) on an Anthropic block or tool, which Anthropic takes on
 * each: the cached prefix ends there. false when out of memory.
 */
static bool anth_mark(json_t *blk, const json_t *holder)
{
    if (!prov_cache_hint(holder)) {
        return true;
    }
    return json_object_set_new(blk, "cache_control", prov_cache_anthropic(holder)) == 0;
}

/* An OpenAI content part to an Anthropic content block (text and images), its hint kept. */
static json_t *anth_part(const json_t *part)
{
    json_t *blk = anth_part_block(part);
    if (blk != NULL && !anth_mark(blk, part)) {
        json_decref(blk);
        return NULL;
    }
    return blk;
}

static json_t *anth_part_block(const json_t *part)
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

/*
 * A message's own cache hint (m.cache_control) on its translated content *c:
 * a string becomes one text block carrying it, an array's last block takes
 * it (LiteLLM's reading of a hint on a whole message). false when out of memory.
 */
static bool anth_mark_message(json_t **c, const json_t *m)
{
    if (!prov_cache_hint(m)) {
        return true;
    }
    if (json_is_string(*c)) {
        json_t *arr = json_pack("[{s:s,s:O}]", "type", "text", "text", *c);
        if (arr == NULL) {
            return false;
        }
        json_decref(*c);
        *c = arr;
    }
    json_t *last = json_array_get(*c, json_array_size(*c) - 1);
    return last == NULL || anth_mark(last, m);
}

/*
 * The system and developer messages as Anthropic's system text blocks, for a
 * request whose system prompt carries a cache hint (a plain string cannot):
 * a string content is one block, an array one per text part, each with its
 * part's hint and the message's own on its last block. Empty text is left
 * out (Anthropic refuses an empty text block).
 */
static enum err anth_system_blocks(const json_t *m, json_t *blocks)
{
    const json_t *content = json_object_get(m, "content");
    size_t first = json_array_size(blocks);
    if (json_is_string(content) && json_string_length(content) > 0) {
        if (json_array_append_new(blocks,
                                  json_pack("{s:s,s:O}", "type", "text", "text", content)) != 0) {
            return ERR_NOMEM;
        }
    }
    size_t i;
    const json_t *part;
    json_array_foreach(content, i, part)
    {
        const json_t *text = json_object_get(part, "text");
        if (!json_is_string(text) || json_string_length(text) == 0) {
            continue;
        }
        json_t *blk = json_pack("{s:s,s:O}", "type", "text", "text", text);
        if (blk == NULL || !anth_mark(blk, part) || json_array_append_new(blocks, blk) != 0) {
            json_decref(blk);
            return ERR_NOMEM;
        }
    }
    json_t *last = json_array_size(blocks) > first
                       ? json_array_get(blocks, json_array_size(blocks) - 1)
                       : NULL;
    if (last != NULL && !anth_mark(last, m)) {
        return ERR_NOMEM;
    }
    return ERR_OK;
}

/* An OpenAI function tool as Anthropic's {name, input_schema, description}. */
static json_t *anth_tool(const json_t *name, const json_t *desc, const json_t *params)
{
    /* Anthropic requires input_schema; OpenAI's default is a function without parameters. */
    json_t *at = params != NULL ? json_pack("{s:O,s:O}", "name", name, "input_schema", params)
                                : json_pack("{s:O,s:{s:s,s:{}}}", "name", name, "input_schema",
                                            "type", "object", "properties");
    if (at != NULL && json_is_string(desc) &&
        json_object_set(at, "description", (json_t *)desc) != 0) {
        json_decref(at);
        return NULL;
    }
    return at;
}

/*
 * OpenAI's tool_choice ("auto", "none", "required", {type: function, function:
 * {name}}) and parallel_tool_calls: false to Anthropic's tool_choice; NULL
 * when neither was given (Anthropic's default is auto, parallel allowed).
 */
static enum err anth_tool_choice(const json_t *oreq, struct provider_bad *bad, json_t **ret)
{
    bool one = json_is_false(json_object_get(oreq, "parallel_tool_calls"));
    const json_t *name = NULL;
    json_t *out = NULL;
    *ret = NULL;
    switch (prov_tool_choice(oreq, &name)) {
    case PROV_CHOICE_UNSET:
        if (!one) {
            return ERR_OK;
        }
        out = json_pack("{s:s}", "type", "auto");
        break;
    case PROV_CHOICE_AUTO:
        out = json_pack("{s:s}", "type", "auto");
        break;
    case PROV_CHOICE_NONE:
        /* Tools stay defined (earlier tool_use blocks need them); none takes no other field. */
        one = false;
        out = json_pack("{s:s}", "type", "none");
        break;
    case PROV_CHOICE_REQUIRED:
        out = json_pack("{s:s}", "type", "any");
        break;
    case PROV_CHOICE_FUNCTION:
        out = json_pack("{s:s,s:O}", "type", "tool", "name", name);
        break;
    case PROV_CHOICE_INVALID:
        return prov_bad(bad,
                        "must be auto, none, required or {\"type\":\"function\","
                        "\"function\":{\"name\":...}}",
                        "tool_choice");
    }
    if (out == NULL ||
        (one && json_object_set_new(out, "disable_parallel_tool_use", json_true()) != 0)) {
        json_decref(out);
        return ERR_NOMEM;
    }
    *ret = out;
    return ERR_OK;
}

/*
 * An assistant message with tool_calls: its text (if any), then one tool_use
 * block per call, the input parsed from the call's arguments string.
 */
static enum err anth_assistant_tools(const json_t *m, size_t mi, struct provider_bad *bad,
                                     json_t **ret)
{
    const json_t *content = json_object_get(m, "content");
    const json_t *calls = json_object_get(m, "tool_calls");
    json_t *blocks = NULL;
    if (json_is_array(content)) {
        blocks = anth_content(content);
        if (blocks == NULL) {
            return prov_bad(bad, "has a part that cannot be translated", "messages[%zu].content",
                            mi);
        }
    } else if (content == NULL || json_is_null(content) || json_is_string(content)) {
        blocks = json_array();
        /* Anthropic refuses an empty text block. */
        if (blocks != NULL && json_string_length(content) > 0 &&
            json_array_append_new(blocks,
                                  json_pack("{s:s,s:O}", "type", "text", "text", content)) != 0) {
            json_decref(blocks);
            return ERR_NOMEM;
        }
    } else {
        return prov_bad(bad, "must be a string, an array of parts or null", "messages[%zu].content",
                        mi);
    }
    if (blocks == NULL) {
        return ERR_NOMEM;
    }
    size_t j;
    const json_t *call;
    json_array_foreach(calls, j, call)
    {
        const json_t *id = NULL, *name = NULL, *args = NULL;
        json_t *input = NULL;
        enum err e = prov_call_check(call, mi, j, bad, &id, &name, &args);
        if (e == ERR_OK) {
            e = prov_call_input(args, mi, j, bad, &input);
        }
        if (e == ERR_OK &&
            json_array_append_new(blocks, json_pack("{s:s,s:O,s:O,s:o}", "type", "tool_use", "id",
                                                    id, "name", name, "input", input)) != 0) {
            e = ERR_NOMEM;
        }
        if (e != ERR_OK) {
            json_decref(blocks);
            return e;
        }
    }
    *ret = blocks;
    return ERR_OK;
}

/* A tool message to a tool_result block. */
static enum err anth_tool_result(const json_t *m, size_t mi, struct provider_bad *bad, json_t **ret)
{
    const json_t *id = NULL;
    json_t *t = NULL;
    enum err e = prov_tool_result(m, mi, bad, &id, &t);
    if (e != ERR_OK) {
        return e;
    }
    json_t *blk = json_pack("{s:s,s:O}", "type", "tool_result", "tool_use_id", id);
    /* content is optional in a tool_result; an empty one is left out. */
    if (blk == NULL || (json_string_length(t) > 0 && json_object_set(blk, "content", t) != 0)) {
        json_decref(blk);
        json_decref(t);
        return ERR_NOMEM;
    }
    json_decref(t);
    *ret = blk;
    return ERR_OK;
}

/*
 * The messages: system text into *system (and as blocks into sysblocks, used
 * when *sys_hint: a system message carries a cache hint), the rest into amsgs.
 */
static enum err anth_messages(const json_t *msgs, struct buf *system, json_t *sysblocks,
                              bool *sys_hint, json_t *amsgs, struct provider_bad *bad)
{
    /* The content array of the user message holding the tool results just before, or NULL. */
    json_t *results = NULL;
    size_t i;
    const json_t *m;
    json_array_foreach(msgs, i, m)
    {
        const char *role = json_string_value(json_object_get(m, "role"));
        const json_t *content = json_object_get(m, "content");
        if (role == NULL) {
            return prov_bad(bad, "is missing", "messages[%zu].role", i);
        }
        enum err e = ERR_OK;
        if (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0) {
            /* Anthropic takes the system prompt as a top-level field, not a message. */
            json_t *t = NULL;
            e = prov_message_text(content, i, bad, &t);
            if (e != ERR_OK) {
                return e;
            }
            if (system->len > 0) {
                e = buf_append(system, "\n\n", 2);
            }
            if (e == ERR_OK) {
                e = buf_append(system, json_string_value(t), json_string_length(t));
            }
            json_decref(t);
            if (e == ERR_OK) {
                e = anth_system_blocks(m, sysblocks);
            }
            if (e != ERR_OK) {
                return e;
            }
            if (prov_cache_hint(m) || prov_cache_in_content(content)) {
                *sys_hint = true;
            }
            continue;
        }
        const json_t *calls = json_object_get(m, "tool_calls");
        if (calls != NULL && !json_is_null(calls) &&
            (!json_is_array(calls) || strcmp(role, "assistant") != 0)) {
            return prov_bad(bad, "must be an array, in an assistant message",
                            "messages[%zu].tool_calls", i);
        }
        json_t *c = NULL;
        if (strcmp(role, "tool") == 0) {
            e = anth_tool_result(m, i, bad, &c);
            if (e != ERR_OK) {
                return e;
            }
            /* The result's text is one block: a hint on the message or a part marks it. */
            const json_t *holder = m;
            size_t j;
            const json_t *part;
            json_array_foreach(content, j, part)
            {
                if (prov_cache_hint(part)) {
                    holder = part;
                }
            }
            if (!anth_mark(c, holder)) {
                json_decref(c);
                return ERR_NOMEM;
            }
            /*
             * Every tool_use must be answered in the next message: the results
             * of consecutive tool messages go into one user message.
             */
            if (results != NULL) {
                if (json_array_append_new(results, c) != 0) {
                    return ERR_NOMEM;
                }
                continue;
            }
            results = json_array();
            if (results == NULL || json_array_append_new(results, c) != 0) {
                json_decref(results);
                return ERR_NOMEM;
            }
            c = results;
            role = "user";
        } else if (strcmp(role, "assistant") == 0 &&
                   json_array_size(json_object_get(m, "tool_calls")) > 0) {
            results = NULL;
            e = anth_assistant_tools(m, i, bad, &c);
        } else if (strcmp(role, "user") == 0 || strcmp(role, "assistant") == 0) {
            results = NULL;
            c = anth_content(content);
            if (c == NULL) {
                e = prov_bad(bad, "must be a string or an array of text and image_url parts",
                             "messages[%zu].content", i);
            }
        } else {
            e = prov_bad(bad, "must be system, developer, user, assistant or tool",
                         "messages[%zu].role", i);
        }
        if (e != ERR_OK) {
            return e;
        }
        if (!anth_mark_message(&c, m)) {
            json_decref(c);
            return ERR_NOMEM;
        }
        if (json_array_append_new(amsgs, json_pack("{s:s,s:o}", "role", role, "content", c)) != 0) {
            return ERR_NOMEM;
        }
    }
    if (json_array_size(amsgs) == 0) {
        return prov_bad(bad, "has no user or assistant message", "messages");
    }
    return ERR_OK;
}

/* tools, tool_choice and parallel_tool_calls into out (a request without tools takes neither). */
static enum err anth_set_tools(const json_t *oreq, json_t *out, struct provider_bad *bad)
{
    const json_t *tools = json_object_get(oreq, "tools");
    if (tools == NULL || json_is_null(tools) ||
        (json_is_array(tools) && json_array_size(tools) == 0)) {
        return ERR_OK;
    }
    json_t *at = NULL, *tc = NULL;
    enum err e = prov_tools(tools, false, anth_tool, bad, &at);
    size_t i;
    const json_t *t;
    json_array_foreach(tools, i, t)
    {
        if (e == ERR_OK && !anth_mark(json_array_get(at, i), t)) {
            e = ERR_NOMEM;
        }
    }
    if (e == ERR_OK) {
        e = anth_tool_choice(oreq, bad, &tc);
    }
    if (e != ERR_OK) {
        json_decref(at);
        json_decref(tc);
        return e;
    }
    if (json_object_set_new(out, "tools", at) != 0) {
        json_decref(tc);
        return ERR_NOMEM;
    }
    if (tc != NULL && json_object_set_new(out, "tool_choice", tc) != 0) {
        return ERR_NOMEM;
    }
    return ERR_OK;
}

static enum err anth_request(const json_t *oreq, const char *model, bool stream,
                             long default_max_tokens, struct provider_bad *bad, json_t **ret)
{
    const json_t *msgs = json_object_get(oreq, "messages");
    if (!json_is_array(msgs)) {
        return prov_bad(bad, "must be an array", "messages");
    }
    enum err e = provider_cache_check(oreq, bad);
    if (e != ERR_OK) {
        return e;
    }
    json_t *out = json_object();
    json_t *amsgs = json_array();
    json_t *sysblocks = json_array();
    bool sys_hint = false;
    struct buf system;
    buf_init(&system, (size_t)16 * 1024 * 1024);
    e = ERR_NOMEM;
    if (out == NULL || amsgs == NULL || sysblocks == NULL) {
        goto fail;
    }
    e = anth_messages(msgs, &system, sysblocks, &sys_hint, amsgs, bad);
    if (e == ERR_OK) {
        e = anth_set_tools(oreq, out, bad);
    }
    if (e != ERR_OK) {
        goto fail;
    }
    e = ERR_NOMEM;
    json_int_t max_tokens = default_max_tokens;
    if (prov_max_output(oreq) > 0) {
        max_tokens = (json_int_t)prov_max_output(oreq);
    }
    if (json_object_set_new(out, "model", json_string(model)) != 0 ||
        json_object_set_new(out, "max_tokens", json_integer(max_tokens)) != 0 ||
        json_object_set(out, "messages", amsgs) != 0) {
        goto fail;
    }
    if (sys_hint && json_array_size(sysblocks) > 0) {
        /* Text blocks: the only shape of system that takes a cache hint. */
        if (json_object_set(out, "system", sysblocks) != 0) {
            goto fail;
        }
    } else if (system.len > 0 &&
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
    json_decref(sysblocks);
    buf_done(&system);
    *ret = out;
    return ERR_OK;
fail:
    json_decref(amsgs);
    json_decref(sysblocks);
    json_decref(out);
    buf_done(&system);
    return e;
}

enum err provider_anthropic_request(const json_t *oreq, const char *model, bool stream,
                                    long default_max_tokens, json_t **ret)
{
    return anth_request(oreq, model, stream, default_max_tokens, NULL, ret);
}

static const char *anth_finish(const char *stop_reason)
{
    static const struct prov_finish_map map[] = {
        {"end_turn", "stop"},       {"stop_sequence", "stop"},     {"max_tokens", "length"},
        {"tool_use", "tool_calls"}, {"refusal", "content_filter"}, {NULL, NULL}};
    return prov_finish(map, stop_reason);
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
        /*
         * cache_creation splits the writes by TTL; the 1-hour ones are dearer.
         * Without cache_creation_input_tokens the split's sum is the writes.
         */
        const json_t *split = json_object_get(u, "cache_creation");
        long long w5m = prov_count(json_object_get(split, "ephemeral_5m_input_tokens"));
        long long w1h = prov_count(json_object_get(split, "ephemeral_1h_input_tokens"));
        if (cc == 0) {
            cc = prov_min(w5m + w1h, PROVIDER_MAX_TOKENS);
        }
        /* OpenAI's prompt_tokens include cached ones; Anthropic's input_tokens do not. */
        if (in + cr + cc > 0 || input_side) {
            out->prompt_tokens = prov_min(in + cr + cc, PROVIDER_MAX_TOKENS);
            out->cached_tokens = prov_min(cr, out->prompt_tokens);
            out->cache_write_tokens = prov_min(cc, out->prompt_tokens - out->cached_tokens);
            out->cache_write_1h_tokens = prov_min(w1h, out->cache_write_tokens);
        }
    }
    if (json_object_get(u, "output_tokens") != NULL) {
        out->completion_tokens = prov_count(json_object_get(u, "output_tokens"));
    }
    /*
     * Server tools billed apart from tokens: web search ($10 per 1,000 on
     * Anthropic's price list). message_delta's count is the whole answer's
     * so far, as its output_tokens is: it replaces message_start's.
     */
    const json_t *searches =
        json_object_get(json_object_get(u, "server_tool_use"), "web_search_requests");
    if (searches != NULL) {
        out->web_search_requests = prov_count(searches);
    }
    out->seen = true;
}

void provider_anthropic_usage(const json_t *usage, struct provider_usage *u, bool input_side)
{
    anth_usage(usage, u, input_side);
}

/*
 * A tool_use block to an OpenAI tool call {id, type: function, function: {name,
 * arguments}}; NULL when its input is not an object (Anthropic's always is).
 */
static json_t *anth_tool_call(const json_t *blk)
{
    const json_t *input = json_object_get(blk, "input");
    if (input != NULL && !json_is_object(input)) {
        return NULL;
    }
    return prov_tool_call(blk, "id");
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
    enum err e = tool_calls != NULL ? ERR_OK : ERR_NOMEM;
    size_t i;
    const json_t *blk;
    json_array_foreach(json_object_get(msg, "content"), i, blk)
    {
        const char *type = json_string_value(json_object_get(blk, "type"));
        if (e != ERR_OK || type == NULL) {
            continue;
        }
        if (strcmp(type, "text") == 0) {
            const char *t = json_string_value(json_object_get(blk, "text"));
            if (t != NULL) {
                e = buf_append_str(&text, t);
            }
        } else if (strcmp(type, "tool_use") == 0) {
            e = prov_tool_calls_add(tool_calls, anth_tool_call(blk));
        }
    }
    if (e != ERR_OK) {
        buf_done(&text);
        json_decref(tool_calls);
        return e;
    }
    anth_usage(json_object_get(msg, "usage"), ret_usage, true);
    const char *finish = anth_finish(json_string_value(json_object_get(msg, "stop_reason")));
    json_t *message = prov_answer_message(&text, tool_calls);
    buf_done(&text);
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
    e = anth_request(c->req, c->model, c->stream, c->default_max_tokens, &out->bad, &areq);
    if (e != ERR_OK) {
        return e;
    }
    e = prov_dump(areq, out);
    json_decref(areq);
    if (e == ERR_OK) {
        e = prov_common_headers(out, c->stream);
    }
    if (e == ERR_OK) {
        e = upstream_header_add(&out->headers, "anthropic-version: " PROVIDER_ANTHROPIC_VERSION);
    }
    if (e == ERR_OK) {
        e = upstream_header_secret(&out->headers, "x-api-key: ", c->key);
    }
    return e;
}

bool provider_anthropic_error(const json_t *answer)
{
    const char *type = json_string_value(json_object_get(answer, "type"));
    return (type != NULL && strcmp(type, "error") == 0) ||
           json_is_object(json_object_get(answer, "error"));
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
    /* The provider's error in a 2xx, as in openai_response; its text is not read. */
    if (provider_anthropic_error(j)) {
        json_decref(j);
        return ERR_UPSTREAM;
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

/* A stream event's content block index (Anthropic's and Cohere's "index"); -1 when it has none. */
static long long prov_index(const json_t *ev)
{
    return prov_block_index(ev, "index");
}

/*
 * content_block_start of a tool_use block: a chunk that opens OpenAI tool call
 * number st->tool_calls (its ordinal among the answer's tool calls, not the
 * Anthropic block index) with its id and name and empty arguments.
 */
static enum err anth_block_start(struct provider_stream *st, const json_t *ev, struct buf *out)
{
    const json_t *blk = json_object_get(ev, "content_block");
    const char *type = json_string_value(json_object_get(blk, "type"));
    if (type == NULL || strcmp(type, "tool_use") != 0) {
        return ERR_OK;
    }
    return prov_stream_tool_start(st, blk, "id", prov_index(ev), out);
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
        type = event != NULL ? event : "";
    }
    enum err e = ERR_OK;
    if (prov_stream_error_frame(event, j, type)) {
        st->failed = true; /* its text is never read: it may echo the request */
    } else if (strcmp(type, "message_start") == 0) {
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
        e = prov_stream_role(st, out);
    } else if (strcmp(type, "content_block_start") == 0) {
        e = anth_block_start(st, j, out);
    } else if (strcmp(type, "content_block_delta") == 0) {
        const json_t *d = json_object_get(j, "delta");
        const char *dt = json_string_value(json_object_get(d, "type"));
        const json_t *text = json_object_get(d, "text");
        const json_t *partial = json_object_get(d, "partial_json");
        if (dt != NULL && strcmp(dt, "text_delta") == 0 && json_is_string(text)) {
            e = prov_stream_text(st, text, out);
        } else if (dt != NULL && strcmp(dt, "input_json_delta") == 0) {
            /* A fragment of the open tool call's arguments. */
            e = prov_stream_tool_args(st, partial, prov_index(j), out);
        }
    } else if (strcmp(type, "content_block_stop") == 0) {
        prov_stream_tool_stop(st, prov_index(j));
    } else if (strcmp(type, "message_delta") == 0) {
        const json_t *d = json_object_get(j, "delta");
        if (json_is_object(json_object_get(j, "usage"))) {
            anth_usage(json_object_get(j, "usage"), &st->usage, false);
            st->usage_final = true;
        }
        const char *finish = anth_finish(json_string_value(json_object_get(d, "stop_reason")));
        if (finish != NULL) {
            e = prov_emit(out, prov_chunk(st, json_object(), finish));
        }
    } else if (strcmp(type, "message_stop") == 0) {
        /* OpenAI's include_usage shape: a last chunk with empty choices, then [DONE]. */
        e = prov_stream_end(st, NULL, out);
    }
    /* ping, and the start and stop of text blocks, carry nothing OpenAI clients need. */
    json_decref(j);
    return e;
}

/* ---- Cohere ------------------------------------------------------------------------------- */

/*
 * Cohere's v2 Chat API is OpenAI-like in its messages and tools and unlike it
 * in everything around them: p for top_p, stop_sequences, an answer whose
 * content is a list of parts, upper-case finish reasons, usage split into
 * billed_units and tokens, and a stream of typed events. The request is built
 * field by field from the ones below: anything else the app sent is dropped,
 * never forwarded, and what Cohere cannot do (n > 1, a named tool_choice,
 * penalties outside 0..1, base64 embeddings) is refused with the field named.
 */

/* A text or image_url content part, rebuilt with only the fields Cohere takes. */
static json_t *coh_part(const json_t *part)
{
    const char *type = json_string_value(json_object_get(part, "type"));
    if (type == NULL) {
        return NULL;
    }
    if (strcmp(type, "text") == 0) {
        const json_t *text = json_object_get(part, "text");
        return json_is_string(text) ? json_pack("{s:s,s:O}", "type", "text", "text", text) : NULL;
    }
    if (strcmp(type, "image_url") == 0) {
        const json_t *iu = json_object_get(part, "image_url");
        const json_t *url = json_is_object(iu) ? json_object_get(iu, "url") : iu;
        return json_is_string(url)
                   ? json_pack("{s:s,s:{s:O}}", "type", "image_url", "image_url", "url", url)
                   : NULL;
    }
    return NULL;
}

/* A user message's content: a string as it is, parts rebuilt (text and image_url only). */
static enum err coh_user_content(const json_t *content, size_t mi, struct provider_bad *bad,
                                 json_t **ret)
{
    if (json_is_string(content)) {
        *ret = json_incref((json_t *)content);
        return ERR_OK;
    }
    if (!json_is_array(content) || json_array_size(content) == 0) {
        return prov_bad(bad, "must be a string or a non-empty array of text and image_url parts",
                        "messages[%zu].content", mi);
    }
    json_t *arr = json_array();
    if (arr == NULL) {
        return ERR_NOMEM;
    }
    size_t i;
    const json_t *part;
    json_array_foreach(content, i, part)
    {
        json_t *p = coh_part(part);
        if (p == NULL) {
            json_decref(arr);
            return prov_bad(bad, "must be a text or image_url part", "messages[%zu].content[%zu]",
                            mi, i);
        }
        if (json_array_append_new(arr, p) != 0) {
            json_decref(arr);
            return ERR_NOMEM;
        }
    }
    *ret = arr;
    return ERR_OK;
}

/* An assistant message's tool_calls, rebuilt: id, type function, name, arguments (a string). */
static enum err coh_tool_calls(const json_t *calls, size_t mi, struct provider_bad *bad,
                               json_t **ret)
{
    json_t *out = json_array();
    if (out == NULL) {
        return ERR_NOMEM;
    }
    size_t j;
    const json_t *call;
    json_array_foreach(calls, j, call)
    {
        const json_t *id = NULL, *name = NULL, *args = NULL;
        enum err e = prov_call_check(call, mi, j, bad, &id, &name, &args);
        if (e == ERR_OK && json_array_append_new(
                               out, json_pack("{s:O,s:s,s:{s:O,s:s}}", "id", id, "type", "function",
                                              "function", "name", name, "arguments",
                                              json_string_length(args) > 0 ? json_string_value(args)
                                                                           : "{}")) != 0) {
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

/* One OpenAI message to Cohere's: system/developer to system, the rest by role. */
static enum err coh_message(const json_t *m, size_t mi, struct provider_bad *bad, json_t **ret)
{
    const char *role = json_string_value(json_object_get(m, "role"));
    const json_t *content = json_object_get(m, "content");
    if (role == NULL) {
        return prov_bad(bad, "is missing", "messages[%zu].role", mi);
    }
    const json_t *calls = json_object_get(m, "tool_calls");
    bool has_calls = json_is_array(calls) && json_array_size(calls) > 0;
    if (calls != NULL && !json_is_null(calls) &&
        (!json_is_array(calls) || strcmp(role, "assistant") != 0)) {
        return prov_bad(bad, "must be an array, in an assistant message",
                        "messages[%zu].tool_calls", mi);
    }
    json_t *out = NULL, *c = NULL;
    enum err e = ERR_OK;
    if (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0) {
        e = prov_message_text(content, mi, bad, &c);
        out = e == ERR_OK ? json_pack("{s:s,s:o}", "role", "system", "content", c) : NULL;
    } else if (strcmp(role, "user") == 0) {
        e = coh_user_content(content, mi, bad, &c);
        out = e == ERR_OK ? json_pack("{s:s,s:o}", "role", "user", "content", c) : NULL;
    } else if (strcmp(role, "tool") == 0) {
        const json_t *id = NULL;
        e = prov_tool_result(m, mi, bad, &id, &c);
        out = e == ERR_OK
                  ? json_pack("{s:s,s:O,s:o}", "role", "tool", "tool_call_id", id, "content", c)
                  : NULL;
    } else if (strcmp(role, "assistant") == 0) {
        out = json_pack("{s:s}", "role", "assistant");
        if (out == NULL) {
            return ERR_NOMEM;
        }
        /* Content is optional next to tool calls; an empty text is left out. */
        if (json_is_string(content) || json_is_array(content)) {
            e = prov_message_text(content, mi, bad, &c);
            if (e == ERR_OK && json_string_length(c) > 0 &&
                json_object_set(out, "content", c) != 0) {
                e = ERR_NOMEM;
            }
            json_decref(c);
        } else if (content != NULL && !json_is_null(content)) {
            e = prov_bad(bad, "must be a string, an array of text parts or null",
                         "messages[%zu].content", mi);
        } else if (!has_calls) {
            e = prov_bad(bad, "must be given when there are no tool_calls", "messages[%zu].content",
                         mi);
        }
        json_t *tc = NULL;
        if (e == ERR_OK && has_calls) {
            e = coh_tool_calls(calls, mi, bad, &tc);
            if (e == ERR_OK && json_object_set_new(out, "tool_calls", tc) != 0) {
                e = ERR_NOMEM;
            }
        }
        if (e != ERR_OK) {
            json_decref(out);
            return e;
        }
    } else {
        return prov_bad(bad, "must be system, developer, user, assistant or tool",
                        "messages[%zu].role", mi);
    }
    if (e != ERR_OK) {
        return e;
    }
    if (out == NULL) {
        return ERR_NOMEM;
    }
    *ret = out;
    return ERR_OK;
}

/* An OpenAI function tool rebuilt as Cohere's (the same shape, without "strict"). */
static json_t *coh_tool(const json_t *name, const json_t *desc, const json_t *params)
{
    json_t *f = json_pack("{s:O}", "name", name);
    json_t *tool = NULL;
    if (f != NULL &&
        (!json_is_string(desc) || json_object_set(f, "description", (json_t *)desc) == 0) &&
        (!json_is_object(params) || json_object_set(f, "parameters", (json_t *)params) == 0)) {
        tool = json_pack("{s:s,s:O}", "type", "function", "function", f);
    }
    json_decref(f);
    return tool;
}

/*
 * tools and tool_choice: auto is Cohere's default (left out), none and
 * required are NONE and REQUIRED. Cohere cannot force one named function:
 * refused rather than widened to "any tool".
 */
static enum err coh_set_tools(const json_t *oreq, json_t *out, struct provider_bad *bad)
{
    const json_t *tools = json_object_get(oreq, "tools");
    const json_t *name = NULL;
    bool any = json_is_array(tools) && json_array_size(tools) > 0;
    const char *choice = NULL;
    switch (prov_tool_choice(oreq, &name)) {
    case PROV_CHOICE_UNSET:
    case PROV_CHOICE_AUTO:
        break;
    case PROV_CHOICE_NONE:
        choice = "NONE";
        break;
    case PROV_CHOICE_REQUIRED:
        choice = "REQUIRED";
        break;
    case PROV_CHOICE_FUNCTION:
    case PROV_CHOICE_INVALID:
        return prov_bad(bad, "must be auto, none or required: Cohere cannot force one function",
                        "tool_choice");
    }
    if (tools == NULL || json_is_null(tools) || (json_is_array(tools) && !any)) {
        return ERR_OK; /* no tools: no choice to make either */
    }
    json_t *ct = NULL;
    /* Cohere takes null parameters as none (Anthropic and Bedrock refuse them). */
    enum err e = prov_tools(tools, true, coh_tool, bad, &ct);
    if (e != ERR_OK) {
        return e;
    }
    if (json_object_set_new(out, "tools", ct) != 0 ||
        (choice != NULL && json_object_set_new(out, "tool_choice", json_string(choice)) != 0)) {
        return ERR_NOMEM;
    }
    return ERR_OK;
}

/* response_format: json_object as it is, json_schema as json_object with its schema, text left out.
 */
static enum err coh_response_format(const json_t *oreq, json_t *out, struct provider_bad *bad)
{
    const json_t *rf = json_object_get(oreq, "response_format");
    if (rf == NULL || json_is_null(rf)) {
        return ERR_OK;
    }
    const char *type = json_string_value(json_object_get(rf, "type"));
    json_t *c = NULL;
    if (type != NULL && strcmp(type, "text") == 0) {
        return ERR_OK;
    } else if (type != NULL && strcmp(type, "json_object") == 0) {
        c = json_pack("{s:s}", "type", "json_object");
    } else if (type != NULL && strcmp(type, "json_schema") == 0) {
        const json_t *schema = json_object_get(json_object_get(rf, "json_schema"), "schema");
        if (!json_is_object(schema)) {
            return prov_bad(bad, "must be a JSON Schema object",
                            "response_format.json_schema.schema");
        }
        c = json_pack("{s:s,s:O}", "type", "json_object", "json_schema", schema);
    } else {
        return prov_bad(bad, "must be text, json_object or json_schema", "response_format.type");
    }
    return c != NULL && json_object_set_new(out, "response_format", c) == 0 ? ERR_OK : ERR_NOMEM;
}

/* The sampling fields: renamed, range-checked where Cohere's range is narrower than OpenAI's. */
static enum err coh_sampling(const json_t *oreq, json_t *out, struct provider_bad *bad)
{
    static const struct {
        const char *from, *to;
        bool integer;
        double min, max; /* checked when min < max */
    } map[] = {
        {"temperature", "temperature", false, 0, 0},
        {"top_p", "p", false, 0, 0},
        {"top_k", "k", true, 0, 0},
        {"seed", "seed", true, 0, 0},
        /* OpenAI takes -2..2; Cohere 0..1 and answers 400 otherwise: said here, by name. */
        {"frequency_penalty", "frequency_penalty", false, 0, 1},
        {"presence_penalty", "presence_penalty", false, 0, 1},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        const json_t *v = json_object_get(oreq, map[i].from);
        if (v == NULL || json_is_null(v)) {
            continue;
        }
        if (map[i].integer ? !json_is_integer(v) : !json_is_number(v)) {
            return prov_bad(bad, map[i].integer ? "must be an integer" : "must be a number", "%s",
                            map[i].from);
        }
        double d = json_number_value(v);
        if (map[i].min < map[i].max && !(d >= map[i].min && d <= map[i].max)) {
            return prov_bad(bad, "must be from 0 to 1 for Cohere", "%s", map[i].from);
        }
        if (json_object_set(out, map[i].to, (json_t *)v) != 0) {
            return ERR_NOMEM;
        }
    }
    return prov_stop_sequences(oreq, "stop_sequences", bad, out);
}

static enum err coh_chat_request(const json_t *oreq, const char *model, bool stream,
                                 struct provider_bad *bad, json_t **ret)
{
    const json_t *msgs = json_object_get(oreq, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
        return prov_bad(bad, "must be a non-empty array", "messages");
    }
    const json_t *n = json_object_get(oreq, "n");
    if (json_is_integer(n) && json_integer_value(n) != 1) {
        return prov_bad(bad, "must be 1: Cohere answers with one choice", "n");
    }
    json_t *cmsgs = json_array();
    /* stream is always sent: the API reference lists it as required. */
    json_t *out = json_pack("{s:s,s:b}", "model", model, "stream", stream);
    enum err e = cmsgs != NULL && out != NULL ? ERR_OK : ERR_NOMEM;
    size_t i;
    const json_t *m;
    json_array_foreach(msgs, i, m)
    {
        json_t *cm = NULL;
        if (e == ERR_OK) {
            e = coh_message(m, i, bad, &cm);
        }
        if (e == ERR_OK && json_array_append_new(cmsgs, cm) != 0) {
            e = ERR_NOMEM;
        }
    }
    if (e == ERR_OK && json_object_set(out, "messages", cmsgs) != 0) {
        e = ERR_NOMEM;
    }
    /* Not filled in when the app set none: Cohere's default is the model's limit, as OpenAI's. */
    long long mt = prov_max_output(oreq);
    if (e == ERR_OK && mt > 0 &&
        json_object_set_new(out, "max_tokens", json_integer((json_int_t)mt)) != 0) {
        e = ERR_NOMEM;
    }
    if (e == ERR_OK) {
        e = coh_sampling(oreq, out, bad);
    }
    if (e == ERR_OK) {
        e = coh_response_format(oreq, out, bad);
    }
    if (e == ERR_OK) {
        e = coh_set_tools(oreq, out, bad);
    }
    json_decref(cmsgs);
    if (e != ERR_OK) {
        json_decref(out);
        return e;
    }
    *ret = out;
    return ERR_OK;
}

/* Cohere's embed input_type values (required for v3 models and later). */
static const char *const coh_input_types[] = {"search_document", "search_query", "classification",
                                              "clustering", NULL};

/*
 * OpenAI's embeddings request to Cohere's /v2/embed: input (a string or an
 * array of strings; Cohere embeds text, not token ids) as texts, float
 * embeddings, dimensions as output_dimension. input_type is the app's when it
 * sends one Cohere knows (an extension OpenAI's API does not have), else
 * search_document: text embedded to be found, the use OpenAI's embeddings
 * serve most.
 */
static enum err coh_embed_request(const json_t *oreq, const char *model, struct provider_bad *bad,
                                  json_t **ret)
{
    const json_t *in = json_object_get(oreq, "input");
    json_t *texts = NULL;
    if (json_is_string(in)) {
        texts = json_pack("[O]", in);
    } else if (json_is_array(in) && json_array_size(in) > 0) {
        if (json_array_size(in) > PROVIDER_COHERE_MAX_TEXTS) {
            return prov_bad(bad, "has more inputs than Cohere embeds in one call (96)", "input");
        }
        size_t i;
        const json_t *s;
        json_array_foreach(in, i, s)
        {
            if (!json_is_string(s)) {
                return prov_bad(bad, "must be a string: Cohere embeds text, not token ids",
                                "input[%zu]", i);
            }
        }
        texts = json_incref((json_t *)in);
    } else {
        return prov_bad(bad, "must be a string or a non-empty array of strings", "input");
    }
    const char *fmt = json_string_value(json_object_get(oreq, "encoding_format"));
    const json_t *dims = json_object_get(oreq, "dimensions");
    const char *it = json_string_value(json_object_get(oreq, "input_type"));
    enum err e = ERR_OK;
    if (fmt != NULL && strcmp(fmt, "float") != 0) {
        e = prov_bad(bad, "must be float for Cohere", "encoding_format");
    } else if (dims != NULL && !json_is_null(dims) &&
               (!json_is_integer(dims) || json_integer_value(dims) < 1)) {
        e = prov_bad(bad, "must be a positive integer", "dimensions");
    }
    const char *input_type = "search_document";
    for (size_t i = 0; e == ERR_OK && it != NULL && coh_input_types[i] != NULL; i++) {
        if (strcmp(it, coh_input_types[i]) == 0) {
            input_type = coh_input_types[i];
        }
    }
    json_t *out = e == ERR_OK ? json_pack("{s:s,s:O,s:s,s:[s]}", "model", model, "texts", texts,
                                          "input_type", input_type, "embedding_types", "float")
                              : NULL;
    json_decref(texts);
    if (e != ERR_OK) {
        return e;
    }
    if (out == NULL ||
        (json_is_integer(dims) && json_object_set(out, "output_dimension", (json_t *)dims) != 0)) {
        json_decref(out);
        return ERR_NOMEM;
    }
    *ret = out;
    return ERR_OK;
}

enum err provider_cohere_request(enum provider_op op, const json_t *oreq, const char *model,
                                 bool stream, struct provider_bad *bad, json_t **ret)
{
    return op == PROVIDER_CHAT ? coh_chat_request(oreq, model, stream, bad, ret)
                               : coh_embed_request(oreq, model, bad, ret);
}

static enum err cohere_build(const struct provider_call *c, struct provider_http *out)
{
    enum err e = prov_url(out, c->entry, c->op == PROVIDER_CHAT ? "/chat" : "/embed");
    if (e != ERR_OK) {
        return e;
    }
    json_t *creq = NULL;
    e = provider_cohere_request(c->op, c->req, c->model, c->stream, &out->bad, &creq);
    if (e != ERR_OK) {
        return e;
    }
    e = prov_dump(creq, out);
    json_decref(creq);
    if (e == ERR_OK) {
        e = prov_common_headers(out, c->stream);
    }
    if (e == ERR_OK) {
        e = upstream_header_secret(&out->headers, "Authorization: Bearer ", c->key);
    }
    return e;
}

/*
 * Cohere's finish_reason to OpenAI's; NULL for none. ERROR is not a finish:
 * the callers treat it as the provider's error. TIMEOUT (the generation was
 * cut by Cohere's time limit) is a truncated answer, as length is.
 */
static const char *coh_finish(const char *reason)
{
    static const struct prov_finish_map map[] = {
        {"COMPLETE", "stop"},        {"STOP_SEQUENCE", "stop"}, {"MAX_TOKENS", "length"},
        {"TOOL_CALL", "tool_calls"}, {"TIMEOUT", "length"},     {NULL, NULL}};
    return prov_finish(map, reason);
}

/*
 * Cohere's usage: billed_units is what Cohere charges for (tokens also counts
 * the prompt template Cohere adds, which is not billed), and the catalog's
 * prices are its billing prices, so each count comes from billed_units and
 * from tokens only when billed_units lacks it. cached_tokens (the prompt
 * tokens that hit Cohere's cache) is kept, at most the prompt.
 */
static void coh_usage(const json_t *u, const char *in_name, struct provider_usage *out)
{
    if (!json_is_object(u)) {
        return;
    }
    const json_t *billed = json_object_get(u, "billed_units");
    const json_t *tokens = json_object_get(u, "tokens");
    const char *names[2] = {in_name, "output_tokens"};
    long long *counts[2] = {&out->prompt_tokens, &out->completion_tokens};
    for (size_t i = 0; i < 2; i++) {
        const json_t *v = json_object_get(billed, names[i]);
        if (v == NULL) {
            v = json_object_get(tokens, names[i]);
        }
        *counts[i] = prov_count(v);
    }
    out->cached_tokens =
        prov_min(prov_count(json_object_get(u, "cached_tokens")), out->prompt_tokens);
    out->seen = true;
}

/* A Cohere tool call to OpenAI's: id and name bounded, arguments a string ("{}" when missing). */
static json_t *coh_tool_call(const json_t *call)
{
    const json_t *fn = json_object_get(call, "function");
    const json_t *id = json_object_get(call, "id");
    const json_t *name = json_object_get(fn, "name");
    const json_t *args = json_object_get(fn, "arguments");
    if (!json_is_string(id) || json_string_length(id) == 0 ||
        json_string_length(id) > PROVIDER_MAX_TOOL_ID || !json_is_string(name) ||
        json_string_length(name) == 0 || json_string_length(name) > PROVIDER_MAX_TOOL_NAME ||
        (args != NULL && !json_is_null(args) && !json_is_string(args))) {
        return NULL;
    }
    return json_pack("{s:O,s:s,s:{s:O,s:s}}", "id", id, "type", "function", "function", "name",
                     name, "arguments",
                     json_string_length(args) > 0 ? json_string_value(args) : "{}");
}

static enum err coh_chat_answer(const json_t *j, const char *model, json_t **ret,
                                struct provider_usage *ret_usage)
{
    const json_t *msg = json_object_get(j, "message");
    const json_t *content = json_object_get(msg, "content");
    const json_t *calls = json_object_get(msg, "tool_calls");
    const char *reason = json_string_value(json_object_get(j, "finish_reason"));
    if (!json_is_object(msg) ||
        (content != NULL && !json_is_null(content) && !json_is_array(content)) ||
        (calls != NULL && !json_is_null(calls) && !json_is_array(calls))) {
        return ERR_PROTO;
    }
    /* Read before the ERROR check: a failed generation may still be billed. */
    coh_usage(json_object_get(j, "usage"), "input_tokens", ret_usage);
    if (reason != NULL && strcmp(reason, "ERROR") == 0) {
        return ERR_UPSTREAM;
    }
    struct buf text;
    buf_init(&text, UPSTREAM_MAX_RESPONSE_CEILING);
    json_t *tool_calls = json_array();
    enum err e = tool_calls != NULL ? ERR_OK : ERR_NOMEM;
    size_t i;
    const json_t *part;
    json_array_foreach(content, i, part)
    {
        /* Text parts only: a reasoning model's "thinking" parts are not the answer. */
        const char *type = json_string_value(json_object_get(part, "type"));
        const char *t = json_string_value(json_object_get(part, "text"));
        if (e == ERR_OK && type != NULL && strcmp(type, "text") == 0 && t != NULL) {
            e = buf_append(&text, t, json_string_length(json_object_get(part, "text")));
        }
    }
    const json_t *call;
    json_array_foreach(calls, i, call)
    {
        if (e != ERR_OK) {
            break;
        }
        e = prov_tool_calls_add(tool_calls, coh_tool_call(call));
    }
    /* tool_plan is not the answer: content is null when the answer is only tool calls. */
    json_t *message = NULL;
    if (e == ERR_OK) {
        message = prov_answer_message(&text, tool_calls);
    } else {
        json_decref(tool_calls);
    }
    buf_done(&text);
    if (e != ERR_OK) {
        return e;
    }
    const char *finish = coh_finish(reason);
    json_t *out =
        message == NULL
            ? NULL
            : json_pack("{s:O?,s:s,s:I,s:s,s:[{s:i,s:o,s:s?}],s:o}", "id", json_object_get(j, "id"),
                        "object", "chat.completion", "created", (json_int_t)time(NULL), "model",
                        model, "choices", "index", 0, "message", message, "finish_reason",
                        finish != NULL ? finish : "stop", "usage", prov_usage_json(ret_usage));
    if (out == NULL) {
        return ERR_NOMEM;
    }
    *ret = out;
    return ERR_OK;
}

/* Cohere's embed answer ({"embeddings": {"float": [[...]]}, "meta": {...}}) to OpenAI's list. */
static enum err coh_embed_answer(const json_t *j, const char *model, json_t **ret,
                                 struct provider_usage *ret_usage)
{
    const json_t *vecs = json_object_get(json_object_get(j, "embeddings"), "float");
    if (!json_is_array(vecs)) {
        return ERR_PROTO;
    }
    json_t *data = json_array();
    if (data == NULL) {
        return ERR_NOMEM;
    }
    size_t i;
    const json_t *v;
    json_array_foreach(vecs, i, v)
    {
        if (!json_is_array(v)) {
            json_decref(data);
            return ERR_PROTO;
        }
        if (json_array_append_new(data, json_pack("{s:s,s:I,s:O}", "object", "embedding", "index",
                                                  (json_int_t)i, "embedding", v)) != 0) {
            json_decref(data);
            return ERR_NOMEM;
        }
    }
    /* Embeddings bill input tokens only; their meta carries billed_units like chat's usage. */
    coh_usage(json_object_get(j, "meta"), "input_tokens", ret_usage);
    ret_usage->completion_tokens = 0;
    json_t *out = json_pack("{s:s,s:o,s:s,s:{s:I,s:I}}", "object", "list", "data", data, "model",
                            model, "usage", "prompt_tokens", (json_int_t)ret_usage->prompt_tokens,
                            "total_tokens", (json_int_t)ret_usage->prompt_tokens);
    if (out == NULL) {
        return ERR_NOMEM;
    }
    *ret = out;
    return ERR_OK;
}

enum err provider_cohere_response(enum provider_op op, const json_t *j, const char *model,
                                  json_t **ret, struct provider_usage *ret_usage)
{
    if (!json_is_object(j)) {
        return ERR_PROTO;
    }
    /*
     * Cohere's error body is {"message": "..."}; an answer's "message" is an
     * object. The error in a 2xx (a gateway's) is the provider's, and its
     * text, which may echo the request, is not read.
     */
    if (json_is_string(json_object_get(j, "message")) ||
        json_is_object(json_object_get(j, "error"))) {
        return ERR_UPSTREAM;
    }
    return op == PROVIDER_CHAT ? coh_chat_answer(j, model, ret, ret_usage)
                               : coh_embed_answer(j, model, ret, ret_usage);
}

static enum err cohere_response(enum provider_op op, const char *body, size_t len,
                                const char *model, json_t **ret_json,
                                struct provider_usage *ret_usage)
{
    json_t *j = json_loadb(body, len, 0, NULL);
    json_t *out = NULL;
    enum err e = provider_cohere_response(op, j, model, &out, ret_usage);
    json_decref(j);
    if (ret_json != NULL && e == ERR_OK) {
        *ret_json = out;
    } else {
        json_decref(out);
    }
    return e;
}

/* The "delta"."message" object of a Cohere stream event (NULL when missing). */
static const json_t *coh_delta_message(const json_t *ev)
{
    return json_object_get(json_object_get(ev, "delta"), "message");
}

/* tool-call-start: opens OpenAI tool call number st->tool_calls with its id, name and arguments. */
static enum err coh_tool_start(struct provider_stream *st, const json_t *ev, struct buf *out)
{
    const json_t *call = json_object_get(coh_delta_message(ev), "tool_calls");
    json_t *tc = coh_tool_call(call);
    long long index = prov_index(ev);
    if (tc == NULL || index < 0 || st->tool_calls >= PROVIDER_MAX_TOOL_CALLS) {
        json_decref(tc);
        return ERR_PROTO;
    }
    /* The start carries the arguments so far, usually none: "{}" only for a whole answer's. */
    const json_t *args = json_object_get(json_object_get(call, "function"), "arguments");
    json_t *fn = json_object_get(tc, "function");
    if (json_object_set_new(fn, "arguments",
                            json_string(json_is_string(args) ? json_string_value(args) : "")) !=
            0 ||
        json_object_set_new(tc, "index", json_integer(st->tool_calls)) != 0) {
        json_decref(tc);
        return ERR_NOMEM;
    }
    st->est_completion += prov_est_tokens((long long)json_string_length(args));
    st->tool_calls++;
    st->tool_open = true;
    st->tool_block = index;
    return prov_emit(out, prov_chunk(st, json_pack("{s:[o]}", "tool_calls", tc), NULL));
}

/*
 * message-end: its usage, then the finish chunk, include_usage's chunk of
 * empty choices (when the app asked for it) and [DONE]. An error in it
 * (delta.error, or finish_reason ERROR) fails the stream after the usage is read.
 */
static enum err coh_message_end(struct provider_stream *st, const json_t *ev, struct buf *out)
{
    const json_t *d = json_object_get(ev, "delta");
    const char *reason = json_string_value(json_object_get(d, "finish_reason"));
    if (json_is_object(json_object_get(d, "usage"))) {
        coh_usage(json_object_get(d, "usage"), "input_tokens", &st->usage);
        st->usage_final = true;
    }
    const json_t *err = json_object_get(d, "error");
    if ((err != NULL && !json_is_null(err)) || (reason != NULL && strcmp(reason, "ERROR") == 0)) {
        st->failed = true; /* its text is never read: it may echo the request */
        return ERR_OK;
    }
    const char *finish = coh_finish(reason);
    return prov_stream_end(st, finish != NULL ? finish : "stop", out);
}

static enum err cohere_stream_event(struct provider_stream *st, const char *event, const char *data,
                                    size_t len, struct buf *out)
{
    json_t *j = json_loadb(data, len, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return ERR_PROTO;
    }
    const char *type = json_string_value(json_object_get(j, "type"));
    if (type == NULL) {
        type = event != NULL ? event : "";
    }
    const json_t *dm = coh_delta_message(j);
    enum err e = ERR_OK;
    if (prov_stream_error_frame(event, j, type)) {
        st->failed = true; /* a gateway's error event: its text is never read */
    } else if (strcmp(type, "message-start") == 0) {
        const char *id = json_string_value(json_object_get(j, "id"));
        if (id != NULL) {
            snprintf(st->id, sizeof(st->id), "%s", id);
        }
        st->created = (long long)time(NULL);
        st->started = true;
        e = prov_stream_role(st, out);
    } else if (strcmp(type, "content-start") == 0 || strcmp(type, "content-delta") == 0) {
        /* Text only: a reasoning model's "thinking" content is not the answer. */
        const json_t *text = json_object_get(json_object_get(dm, "content"), "text");
        if (json_is_string(text) && json_string_length(text) > 0) {
            e = prov_stream_text(st, text, out);
        }
    } else if (strcmp(type, "tool-plan-delta") == 0) {
        /* Not forwarded (OpenAI has no place for it), but generated, so billed. */
        const json_t *plan = json_object_get(dm, "tool_plan");
        st->est_completion += prov_est_tokens((long long)json_string_length(plan));
    } else if (strcmp(type, "tool-call-start") == 0) {
        e = coh_tool_start(st, j, out);
    } else if (strcmp(type, "tool-call-delta") == 0) {
        const json_t *args = json_object_get(
            json_object_get(json_object_get(dm, "tool_calls"), "function"), "arguments");
        e = prov_stream_tool_args(st, args, prov_index(j), out);
    } else if (strcmp(type, "tool-call-end") == 0) {
        prov_stream_tool_stop(st, prov_index(j));
    } else if (strcmp(type, "message-end") == 0) {
        e = coh_message_end(st, j, out);
    }
    /* content-end, citation-start/end, debug: nothing an OpenAI client needs. */
    json_decref(j);
    return e;
}

/* ---- A whole answer as a stream ----------------------------------------------------------- */

/*
 * One chunk of the answer's stream: the fields every chunk repeats (id,
 * object, created, model, system_fingerprint when the answer has it), then
 * choices (taken) and, for the usage chunk, usage (borrowed).
 */
static json_t *prov_answer_chunk(const json_t *answer, json_t *choices, const json_t *usage)
{
    json_t *chunk = json_object();
    if (chunk == NULL || choices == NULL) {
        json_decref(chunk);
        json_decref(choices);
        return NULL;
    }
    static const char *const head[] = {"id", "object", "created", "model", "system_fingerprint"};
    for (size_t i = 0; i < sizeof(head) / sizeof(head[0]); i++) {
        json_t *v = i == 1 ? json_string("chat.completion.chunk")
                           : json_incref(json_object_get(answer, head[i]));
        if (v == NULL ? i == 1 : json_object_set_new(chunk, head[i], v) != 0) {
            json_decref(chunk);
            json_decref(choices);
            return NULL;
        }
    }
    if (json_object_set_new(chunk, "choices", choices) != 0 ||
        (usage != NULL && json_object_set(chunk, "usage", (json_t *)usage) != 0)) {
        json_decref(chunk);
        return NULL;
    }
    return chunk;
}

/*
 * A choice's message as the delta of its first chunk: role first, as OpenAI's
 * first chunk has it ("assistant" when missing), content (null when missing,
 * as in the first chunk of a tool-call answer), every other field as it is
 * (refusal, annotations ...), and each tool call with its "index", which a
 * streamed tool call carries and an answer's does not (the SDKs assemble
 * tool calls by it).
 */
static enum err prov_answer_delta(const json_t *msg, json_t **ret_delta)
{
    const json_t *role = json_object_get(msg, "role");
    json_t *d =
        json_pack("{s:s}", "role", json_is_string(role) ? json_string_value(role) : "assistant");
    if (d == NULL) {
        return ERR_NOMEM;
    }
    enum err e = json_object_update_missing(d, (json_t *)msg) == 0 ? ERR_OK : ERR_NOMEM;
    if (e == ERR_OK && json_object_get(d, "content") == NULL &&
        json_object_set_new(d, "content", json_null()) != 0) {
        e = ERR_NOMEM;
    }
    const json_t *tcs = json_object_get(msg, "tool_calls");
    if (e == ERR_OK && json_is_array(tcs)) {
        json_t *indexed = json_array();
        e = indexed != NULL ? ERR_OK : ERR_NOMEM;
        size_t i;
        const json_t *tc;
        json_array_foreach(tcs, i, tc)
        {
            if (e != ERR_OK) {
                break;
            }
            if (!json_is_object(tc)) {
                e = ERR_PROTO;
                break;
            }
            json_t *t = json_pack("{s:I}", "index", (json_int_t)i);
            if (t != NULL && json_object_update_missing(t, (json_t *)tc) != 0) {
                json_decref(t);
                t = NULL;
            }
            if (t == NULL || json_array_append_new(indexed, t) != 0) {
                e = ERR_NOMEM;
            }
        }
        if (e == ERR_OK && json_object_set_new(d, "tool_calls", indexed) != 0) {
            e = ERR_NOMEM;
        } else if (e != ERR_OK) {
            json_decref(indexed);
        }
    }
    if (e != ERR_OK) {
        json_decref(d);
        return e;
    }
    *ret_delta = d;
    return ERR_OK;
}

enum err provider_stream_from_answer(const json_t *answer, bool include_usage, struct buf *out)
{
    const json_t *choices = json_object_get(answer, "choices");
    if (!json_is_array(choices) || json_array_size(choices) == 0) {
        return ERR_PROTO;
    }
    enum err e = ERR_OK;
    size_t i;
    const json_t *ch;
    json_array_foreach(choices, i, ch)
    {
        const json_t *msg = json_object_get(ch, "message");
        if (!json_is_object(msg)) {
            return ERR_PROTO;
        }
        const json_t *idx = json_object_get(ch, "index");
        json_int_t index = json_is_integer(idx) ? json_integer_value(idx) : (json_int_t)i;
        json_t *delta = NULL;
        e = prov_answer_delta(msg, &delta);
        if (e == ERR_OK) {
            /* The answer's logprobs cover the whole message, as the chunk's content does. */
            e = prov_emit(
                out, prov_answer_chunk(answer,
                                       json_pack("[{s:I,s:o,s:O?,s:n}]", "index", index, "delta",
                                                 delta, "logprobs", json_object_get(ch, "logprobs"),
                                                 "finish_reason"),
                                       NULL));
        }
        if (e == ERR_OK) {
            e = prov_emit(out, prov_answer_chunk(answer,
                                                 json_pack("[{s:I,s:{},s:n,s:O?}]", "index", index,
                                                           "delta", "logprobs", "finish_reason",
                                                           json_object_get(ch, "finish_reason")),
                                                 NULL));
        }
        if (e != ERR_OK) {
            return e;
        }
    }
    const json_t *usage = json_object_get(answer, "usage");
    if (include_usage && json_is_object(usage)) {
        e = prov_emit(out, prov_answer_chunk(answer, json_array(), usage));
    }
    return e == ERR_OK ? buf_append_str(out, "data: [DONE]\n\n") : e;
}

static const struct provider_adapter provider_table[] = {
    {.api_style = "openai",
     .stream_passthrough = true,
     .build = openai_build,
     .response = openai_response,
     .stream_event = openai_stream_event},
    /* Gemini through its OpenAI-compatible endpoint (base_url .../v1beta/openai). */
    {.api_style = "gemini",
     .stream_passthrough = true,
     .build = openai_build,
     .response = openai_response,
     .stream_event = openai_stream_event},
    {.api_style = "azure",
     .stream_passthrough = true,
     .build = azure_build,
     .response = openai_response,
     .stream_event = openai_stream_event},
    {.api_style = "anthropic",
     .build = anthropic_build,
     .response = anthropic_response,
     .stream_event = anthropic_stream_event},
    {.api_style = "cohere",
     .build = cohere_build,
     .response = cohere_response,
     .stream_event = cohere_stream_event},
    /* Vertex AI express mode (provider_vertex.c). */
    {.api_style = "vertex",
     .build = provider_vertex_build,
     .response = provider_vertex_response,
     .stream_event = provider_vertex_stream_event,
     .key_refused = provider_vertex_key_refused},
    /* Bedrock's Converse API (provider_bedrock.c). */
    {.api_style = "bedrock",
     .build = provider_bedrock_build,
     .response = provider_bedrock_response,
     .stream_event = provider_bedrock_stream_event,
     .framing = PROVIDER_FRAMING_EVENTSTREAM},
};

enum provider_framing provider_stream_framing(const struct provider_adapter *ad)
{
    return ad != NULL ? ad->framing : PROVIDER_FRAMING_SSE;
}

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
