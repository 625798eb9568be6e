/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The Vertex AI adapter (api_style "vertex"), express mode. References:
 *   Express mode endpoints: the global host aiplatform.googleapis.com, no
 *     projects or locations: POST /v1/publishers/google/models/{model}:generateContent
 *     and :streamGenerateContent, with an express-mode API key
 *     https://cloud.google.com/vertex-ai/generative-ai/docs/start/express-mode/vertex-ai-express-mode-api-reference
 *     https://cloud.google.com/vertex-ai/generative-ai/docs/start/express-mode/overview
 *   The request and response bodies (contents, systemInstruction,
 *     generationConfig; candidates, finishReason, usageMetadata):
 *     https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/inference
 *   Candidate.FinishReason (STOP, MAX_TOKENS, SAFETY, RECITATION, BLOCKLIST,
 *     PROHIBITED_CONTENT, SPII, MALFORMED_FUNCTION_CALL, MODEL_ARMOR ...).
 * The key goes in the x-goog-api-key header, which Google APIs take as they
 * take ?key=: a key in a URL ends up in access logs and proxies' logs.
 *
 * Not done here: tools (functionDeclarations), json_schema response formats,
 * several candidates (n > 1), images by URL, and text embeddings (:predict).
 * Those requests are ERR_UNSUPPORTED: the proxy tries the next candidate and,
 * when none is left, answers 400 "unsupported". Choosing a provider is
 * route.c's, sending upstream.c's.
 */
#include "agent/provider_vertex.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "agent/provider_util.h"
#include "agent/upstream.h"

/* The system prompt, and one message's text, are bounded by the app's body cap; this is ours. */
#define VERTEX_MAX_TEXT ((size_t)16 * 1024 * 1024)
#define VERTEX_PATH_MODELS "/publishers/google/models/"

/* ---- helpers ---------------------------------------------------------------------------- */

/*
 * usageMetadata to OpenAI's counts: promptTokenCount includes cached content
 * (as OpenAI's prompt_tokens do); thoughtsTokenCount (Gemini 2.5's thinking)
 * is billed as output and counted in completion_tokens, as OpenAI counts
 * reasoning tokens. False when it holds no count (a stream's early chunks
 * carry only trafficType).
 */
static bool vx_usage(const json_t *um, struct provider_usage *u)
{
    const json_t *p = json_object_get(um, "promptTokenCount");
    const json_t *c = json_object_get(um, "candidatesTokenCount");
    const json_t *t = json_object_get(um, "thoughtsTokenCount");
    if (!json_is_object(um) || (p == NULL && c == NULL && t == NULL)) {
        return false;
    }
    u->prompt_tokens = prov_count(p);
    long long out = prov_count(c) + prov_count(t); /* each <= PROVIDER_MAX_TOKENS: no overflow */
    u->completion_tokens = prov_min(out, PROVIDER_MAX_TOKENS);
    long long cached = prov_count(json_object_get(um, "cachedContentTokenCount"));
    u->cached_tokens = prov_min(cached, u->prompt_tokens);
    u->seen = true;
    return true;
}

/*
 * Candidate.FinishReason to OpenAI's finish_reason. Every reason that means a
 * filter stopped the answer is content_filter; OTHER, unspecified, a malformed
 * function call and reasons added later are stop (the answer ended, for no
 * reason OpenAI has a word for). NULL: not finished yet.
 */
static const char *vx_finish(const char *reason)
{
    static const struct prov_finish_map map[] = {{"STOP", "stop"},
                                                 {"MAX_TOKENS", "length"},
                                                 {"SAFETY", "content_filter"},
                                                 {"RECITATION", "content_filter"},
                                                 {"BLOCKLIST", "content_filter"},
                                                 {"PROHIBITED_CONTENT", "content_filter"},
                                                 {"SPII", "content_filter"},
                                                 {"IMAGE_SAFETY", "content_filter"},
                                                 {"MODEL_ARMOR", "content_filter"},
                                                 {NULL, NULL}};
    return prov_finish(map, reason);
}

/* A prompt refused before any candidate (promptFeedback.blockReason). */
static bool vx_prompt_blocked(const json_t *resp)
{
    return json_is_string(json_object_get(json_object_get(resp, "promptFeedback"), "blockReason"));
}

/*
 * The text of a candidate's parts, thought parts left out (a thinking summary
 * is not the answer); *ret_any tells whether there was a text part at all.
 */
static enum err vx_candidate_text(const json_t *cand, struct buf *b, bool *ret_any)
{
    const json_t *parts = json_object_get(json_object_get(cand, "content"), "parts");
    size_t i;
    const json_t *p;
    *ret_any = false;
    json_array_foreach(parts, i, p)
    {
        const json_t *t = json_object_get(p, "text");
        if (!json_is_string(t) || json_is_true(json_object_get(p, "thought"))) {
            continue;
        }
        *ret_any = true;
        enum err e = buf_append(b, json_string_value(t), json_string_length(t));
        if (e != ERR_OK) {
            return e;
        }
    }
    return ERR_OK;
}

/* ---- request ------------------------------------------------------------------------------ */

/* An OpenAI content part to a Vertex part: text, or an image as a data: URL (inlineData). */
static enum err vx_part(const json_t *part, size_t mi, size_t pi, struct provider_bad *bad,
                        json_t **ret)
{
    const char *type = json_string_value(json_object_get(part, "type"));
    if (type == NULL) {
        return prov_bad(bad, "is missing", "messages[%zu].content[%zu].type", mi, pi);
    }
    if (strcmp(type, "text") == 0) {
        const json_t *text = json_object_get(part, "text");
        if (!json_is_string(text)) {
            return prov_bad(bad, "must be a string", "messages[%zu].content[%zu].text", mi, pi);
        }
        *ret = json_pack("{s:O}", "text", text);
        return *ret != NULL ? ERR_OK : ERR_NOMEM;
    }
    if (strcmp(type, "image_url") != 0) {
        return ERR_UNSUPPORTED; /* audio, files: another provider may take them */
    }
    const json_t *iu = json_object_get(part, "image_url");
    const char *url = json_string_value(json_is_object(iu) ? json_object_get(iu, "url") : iu);
    if (url == NULL) {
        return prov_bad(bad, "must be a string", "messages[%zu].content[%zu].image_url.url", mi,
                        pi);
    }
    if (strncmp(url, "data:", 5) != 0) {
        /* fileData takes gs:// and needs the MIME type the agent does not know: not sent. */
        return ERR_UNSUPPORTED;
    }
    const char *semi = strchr(url, ';');
    const char *comma = strchr(url, ',');
    if (semi == NULL || comma == NULL || semi > comma || strncmp(semi, ";base64,", 8) != 0 ||
        semi == url + 5) {
        return prov_bad(bad, "must be a data:<type>;base64, URL",
                        "messages[%zu].content[%zu].image_url.url", mi, pi);
    }
    *ret = json_pack("{s:{s:s%,s:s}}", "inlineData", "mimeType", url + 5, (size_t)(semi - url - 5),
                     "data", comma + 1);
    return *ret != NULL ? ERR_OK : ERR_NOMEM;
}

/* A message's content (a string or an array of parts) to a Vertex parts array. */
static enum err vx_parts(const json_t *content, size_t mi, bool text_only, struct provider_bad *bad,
                         json_t **ret)
{
    if (json_is_string(content)) {
        *ret = json_pack("[{s:O}]", "text", content);
        return *ret != NULL ? ERR_OK : ERR_NOMEM;
    }
    if (!json_is_array(content)) {
        return prov_bad(bad, "must be a string or an array of parts", "messages[%zu].content", mi);
    }
    json_t *parts = json_array();
    if (parts == NULL) {
        return ERR_NOMEM;
    }
    size_t i;
    const json_t *part;
    json_array_foreach(content, i, part)
    {
        json_t *p = NULL;
        const char *type = json_string_value(json_object_get(part, "type"));
        enum err e = text_only && (type == NULL || strcmp(type, "text") != 0)
                         ? prov_bad(bad, "must be a text part", "messages[%zu].content[%zu]", mi, i)
                         : vx_part(part, mi, i, bad, &p);
        if (e == ERR_OK && json_array_append_new(parts, p) != 0) {
            e = ERR_NOMEM;
        }
        if (e != ERR_OK) {
            json_decref(parts);
            return e;
        }
    }
    if (json_array_size(parts) == 0) {
        json_decref(parts);
        return prov_bad(bad, "must not be empty", "messages[%zu].content", mi);
    }
    *ret = parts;
    return ERR_OK;
}

/*
 * The messages to contents (user, and assistant as "model") and the system
 * and developer messages to systemInstruction's parts, in order. A tool
 * message or an assistant's tool_calls needs the tools this adapter does not
 * translate: ERR_UNSUPPORTED.
 */
static enum err vx_messages(const json_t *msgs, json_t *contents, json_t *system,
                            struct provider_bad *bad)
{
    size_t i;
    const json_t *m;
    json_array_foreach(msgs, i, m)
    {
        const char *role = json_string_value(json_object_get(m, "role"));
        const json_t *content = json_object_get(m, "content");
        if (role == NULL) {
            return prov_bad(bad, "is missing", "messages[%zu].role", i);
        }
        bool sys = strcmp(role, "system") == 0 || strcmp(role, "developer") == 0;
        const char *vrole = strcmp(role, "user") == 0        ? "user"
                            : strcmp(role, "assistant") == 0 ? "model"
                                                             : NULL;
        if (strcmp(role, "tool") == 0 || strcmp(role, "function") == 0 ||
            json_array_size(json_object_get(m, "tool_calls")) > 0 ||
            json_is_object(json_object_get(m, "function_call"))) {
            return ERR_UNSUPPORTED;
        }
        if (!sys && vrole == NULL) {
            return prov_bad(bad, "must be system, developer, user or assistant",
                            "messages[%zu].role", i);
        }
        json_t *parts = NULL;
        enum err e = vx_parts(content, i, sys, bad, &parts);
        if (e != ERR_OK) {
            return e;
        }
        if (sys) {
            /* systemInstruction takes text parts only: each system message's parts, in order. */
            e = json_array_extend(system, parts) == 0 ? ERR_OK : ERR_NOMEM;
            json_decref(parts);
        } else {
            e = json_array_append_new(contents,
                                      json_pack("{s:s,s:o}", "role", vrole, "parts", parts)) == 0
                    ? ERR_OK
                    : ERR_NOMEM;
        }
        if (e != ERR_OK) {
            return e;
        }
    }
    if (json_array_size(contents) == 0) {
        return prov_bad(bad, "has no user or assistant message", "messages");
    }
    return ERR_OK;
}

/*
 * OpenAI's sampling fields to generationConfig. max_completion_tokens wins
 * over the older max_tokens; stop (a string or an array) is stopSequences;
 * response_format json_object is responseMimeType application/json (text is
 * the default; json_schema is not translated: ERR_UNSUPPORTED).
 */
static enum err vx_generation_config(const json_t *oreq, struct provider_bad *bad, json_t **ret)
{
    json_t *gc = json_object();
    if (gc == NULL) {
        return ERR_NOMEM;
    }
    static const struct {
        const char *from, *to;
    } numbers[] = {{"temperature", "temperature"},
                   {"top_p", "topP"},
                   {"top_k", "topK"},
                   {"presence_penalty", "presencePenalty"},
                   {"frequency_penalty", "frequencyPenalty"},
                   {"seed", "seed"},
                   {NULL, NULL}};
    enum err e = ERR_OK;
    for (size_t i = 0; numbers[i].from != NULL && e == ERR_OK; i++) {
        json_t *v = json_object_get(oreq, numbers[i].from);
        if (json_is_number(v) && json_object_set(gc, numbers[i].to, v) != 0) {
            e = ERR_NOMEM;
        }
    }
    long long mt = prov_max_output(oreq);
    if (e == ERR_OK && mt > 0 &&
        json_object_set_new(gc, "maxOutputTokens", json_integer((json_int_t)mt)) != 0) {
        e = ERR_NOMEM;
    }
    const json_t *stop = json_object_get(oreq, "stop");
    if (e == ERR_OK && json_is_string(stop)) {
        e = json_object_set_new(gc, "stopSequences", json_pack("[O]", stop)) == 0 ? ERR_OK
                                                                                  : ERR_NOMEM;
    } else if (e == ERR_OK && json_is_array(stop) && json_array_size(stop) > 0) {
        size_t i;
        const json_t *s;
        json_array_foreach(stop, i, s)
        {
            if (!json_is_string(s)) {
                e = prov_bad(bad, "must be a string", "stop[%zu]", i);
                break;
            }
        }
        if (e == ERR_OK && json_object_set(gc, "stopSequences", (json_t *)stop) != 0) {
            e = ERR_NOMEM;
        }
    }
    const json_t *rf = json_object_get(oreq, "response_format");
    const char *rft = json_string_value(json_object_get(rf, "type"));
    if (e == ERR_OK && rft != NULL && strcmp(rft, "json_object") == 0) {
        e = json_object_set_new(gc, "responseMimeType", json_string("application/json")) == 0
                ? ERR_OK
                : ERR_NOMEM;
    } else if (e == ERR_OK && rft != NULL && strcmp(rft, "text") != 0) {
        e = ERR_UNSUPPORTED; /* json_schema: responseSchema is an OpenAPI subset, not translated */
    }
    if (e != ERR_OK) {
        json_decref(gc);
        return e;
    }
    *ret = gc;
    return ERR_OK;
}

enum err provider_vertex_request(const json_t *oreq, struct provider_bad *bad, json_t **ret)
{
    const json_t *msgs = json_object_get(oreq, "messages");
    if (!json_is_array(msgs)) {
        return prov_bad(bad, "must be an array", "messages");
    }
    /* Tools are not translated yet: another candidate may serve the request. */
    if (json_array_size(json_object_get(oreq, "tools")) > 0 ||
        json_array_size(json_object_get(oreq, "functions")) > 0) {
        return ERR_UNSUPPORTED;
    }
    const json_t *n = json_object_get(oreq, "n");
    if (json_is_integer(n) && json_integer_value(n) > 1) {
        return ERR_UNSUPPORTED; /* one candidate per answer: candidateCount is not used */
    }
    json_t *out = json_object();
    json_t *contents = json_array();
    json_t *system = json_array();
    json_t *gc = NULL;
    enum err e = ERR_NOMEM;
    if (out == NULL || contents == NULL || system == NULL) {
        goto out_free;
    }
    e = vx_messages(msgs, contents, system, bad);
    if (e == ERR_OK) {
        e = vx_generation_config(oreq, bad, &gc);
    }
    if (e != ERR_OK) {
        goto out_free;
    }
    e = ERR_NOMEM;
    if (json_object_set(out, "contents", contents) != 0) {
        goto out_free;
    }
    if (json_array_size(system) > 0 &&
        json_object_set_new(out, "systemInstruction", json_pack("{s:O}", "parts", system)) != 0) {
        goto out_free;
    }
    if (json_object_size(gc) > 0 && json_object_set(out, "generationConfig", gc) != 0) {
        goto out_free;
    }
    json_decref(gc);
    json_decref(system);
    json_decref(contents);
    *ret = out;
    return ERR_OK;
out_free:
    json_decref(gc);
    json_decref(system);
    json_decref(contents);
    json_decref(out);
    return e;
}

/* A model name that stays one path segment: letters, digits, '.', '-', '_' and '@'. */
static bool vx_model_ok(const char *model)
{
    size_t len = strlen(model);
    if (len == 0 || len > VERTEX_MAX_MODEL) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char ch = model[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == '_' || ch == '@';
        if (!ok) {
            return false;
        }
    }
    return strcmp(model, ".") != 0 && strcmp(model, "..") != 0;
}

/* base_url (https, or http for a local entry) + the model's method path. */
static enum err vx_url(const struct provider_call *c, struct provider_http *out)
{
    const char *base;
    size_t bl;
    bool local;
    enum err e = prov_base_url(c->entry, &base, &bl, &local);
    if (e != ERR_OK) {
        return e;
    }
    if (bl > INT32_MAX) {
        return ERR_TOOBIG;
    }
    int n = snprintf(out->url, sizeof(out->url), "%.*s" VERTEX_PATH_MODELS "%s%s", (int)bl, base,
                     c->model, c->stream ? ":streamGenerateContent?alt=sse" : ":generateContent");
    if (n < 0 || (size_t)n >= sizeof(out->url)) {
        return ERR_TOOBIG;
    }
    out->allow_http = local;
    return ERR_OK;
}

enum err provider_vertex_build(const struct provider_call *c, struct provider_http *out)
{
    if (c->op != PROVIDER_CHAT) {
        return ERR_UNSUPPORTED; /* text embeddings are :predict, not translated */
    }
    if (!vx_model_ok(c->model)) {
        return prov_bad(&out->bad, "cannot be put in a Vertex URL", "model");
    }
    enum err e = vx_url(c, out);
    if (e != ERR_OK) {
        return e;
    }
    json_t *body = NULL;
    e = provider_vertex_request(c->req, &out->bad, &body);
    if (e != ERR_OK) {
        return e;
    }
    e = prov_dump(body, out);
    json_decref(body);
    if (e == ERR_OK) {
        e = prov_json_headers(out,
                              c->stream ? "Accept: text/event-stream" : "Accept: application/json");
    }
    if (e == ERR_OK) {
        e = upstream_header_secret(&out->headers, "x-goog-api-key: ", c->key);
    }
    return e;
}

/* ---- response ----------------------------------------------------------------------------- */

/* The answer's id: Vertex's responseId when usable, else one of ours. */
static void vx_id(const json_t *resp, char *id, size_t size)
{
    const json_t *rid = json_object_get(resp, "responseId");
    if (json_is_string(rid) && json_string_length(rid) > 0 &&
        json_string_length(rid) <= VERTEX_MAX_ID) {
        snprintf(id, size, "chatcmpl-%s", json_string_value(rid));
    } else {
        snprintf(id, size, "chatcmpl-vertex-%lld", (long long)time(NULL));
    }
}

/* The model that answered (modelVersion), else the one asked for. */
static const char *vx_model(const json_t *resp, const char *model)
{
    const json_t *mv = json_object_get(resp, "modelVersion");
    if (json_is_string(mv) && json_string_length(mv) > 0 &&
        json_string_length(mv) <= VERTEX_MAX_MODEL) {
        return json_string_value(mv);
    }
    return model != NULL ? model : "";
}

enum err provider_vertex_answer(const json_t *resp, const char *model, json_t **ret,
                                struct provider_usage *ret_usage)
{
    if (!json_is_object(resp)) {
        return ERR_PROTO;
    }
    /* Google's error object ({"error":{"code","message","status"}}): its text is never read. */
    if (json_is_object(json_object_get(resp, "error"))) {
        return ERR_UPSTREAM;
    }
    const json_t *cands = json_object_get(resp, "candidates");
    bool blocked = vx_prompt_blocked(resp);
    if (!(json_is_array(cands) && json_array_size(cands) > 0) && !blocked) {
        return ERR_PROTO;
    }
    vx_usage(json_object_get(resp, "usageMetadata"), ret_usage);
    json_t *choices = json_array();
    if (choices == NULL) {
        return ERR_NOMEM;
    }
    struct buf text;
    buf_init(&text, VERTEX_MAX_TEXT);
    enum err e = ERR_OK;
    if (json_array_size(cands) == 0) {
        /*
         * The prompt was blocked: no candidate. An answer with empty content
         * and finish_reason content_filter, as OpenAI reports a filtered
         * completion, rather than an error the app would retry.
         */
        if (json_array_append_new(choices,
                                  json_pack("{s:i,s:{s:s,s:s},s:n,s:s}", "index", 0, "message",
                                            "role", "assistant", "content", "", "logprobs",
                                            "finish_reason", "content_filter")) != 0) {
            e = ERR_NOMEM;
        }
    }
    size_t i;
    const json_t *cand;
    json_array_foreach(cands, i, cand)
    {
        if (e != ERR_OK) {
            break;
        }
        if (!json_is_object(cand)) {
            e = ERR_PROTO;
            break;
        }
        bool any = false;
        buf_reset(&text);
        e = vx_candidate_text(cand, &text, &any);
        if (e != ERR_OK) {
            break;
        }
        /* A candidate stopped by a filter may have no content at all: empty text, not null. */
        const char *finish = vx_finish(json_string_value(json_object_get(cand, "finishReason")));
        const json_t *idx = json_object_get(cand, "index");
        json_int_t index = json_is_integer(idx) ? json_integer_value(idx) : (json_int_t)i;
        if (json_array_append_new(choices, json_pack("{s:I,s:{s:s,s:s%},s:n,s:s}", "index", index,
                                                     "message", "role", "assistant", "content",
                                                     text.data != NULL ? text.data : "", text.len,
                                                     "logprobs", "finish_reason",
                                                     finish != NULL ? finish : "stop")) != 0) {
            e = ERR_NOMEM;
        }
    }
    buf_done(&text);
    if (e != ERR_OK) {
        json_decref(choices);
        return e;
    }
    char id[sizeof("chatcmpl-") + VERTEX_MAX_ID + 32];
    vx_id(resp, id, sizeof(id));
    json_t *out = json_pack("{s:s,s:s,s:I,s:s,s:o,s:o}", "id", id, "object", "chat.completion",
                            "created", (json_int_t)time(NULL), "model", vx_model(resp, model),
                            "choices", choices, "usage", prov_usage_json(ret_usage));
    if (out == NULL) {
        return ERR_NOMEM;
    }
    *ret = out;
    return ERR_OK;
}

enum err provider_vertex_response(enum provider_op op, const char *body, size_t len,
                                  const char *model, json_t **ret_json,
                                  struct provider_usage *ret_usage)
{
    (void)op; /* chat only: build refuses embeddings */
    json_t *j = json_loadb(body, len, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return ERR_PROTO;
    }
    /* ret_json may be NULL (usage only): the translation is still how usage is read. */
    json_t *out = NULL;
    enum err e = provider_vertex_answer(j, model, &out, ret_usage);
    json_decref(j);
    if (ret_json != NULL) {
        *ret_json = out;
    } else {
        json_decref(out);
    }
    return e;
}

/* ---- stream ------------------------------------------------------------------------------- */

enum err provider_vertex_stream_event(struct provider_stream *st, const char *event,
                                      const char *data, size_t len, struct buf *out)
{
    (void)event; /* alt=sse sends data lines only */
    json_t *j = json_loadb(data, len, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return ERR_PROTO;
    }
    if (json_is_object(json_object_get(j, "error"))) {
        st->failed = true; /* its text is never read: it may echo the request */
        json_decref(j);
        return ERR_OK;
    }
    enum err e = ERR_OK;
    if (!st->started) {
        char id[sizeof(st->id)];
        vx_id(j, id, sizeof(id));
        snprintf(st->id, sizeof(st->id), "%s", id);
        const char *model = vx_model(j, st->model);
        if (model != st->model) {
            snprintf(st->model, sizeof(st->model), "%s", model);
        }
        st->created = (long long)time(NULL);
        st->started = true;
        e = prov_stream_role(st, out);
    }
    /* The running totals: the last chunk, which has finishReason, holds the answer's. */
    if (vx_usage(json_object_get(j, "usageMetadata"), &st->usage)) {
        st->usage_final = true;
    }
    const json_t *cand = json_array_get(json_object_get(j, "candidates"), 0);
    struct buf text;
    buf_init(&text, VERTEX_MAX_TEXT);
    bool any = false;
    if (e == ERR_OK && json_is_object(cand)) {
        e = vx_candidate_text(cand, &text, &any);
    }
    if (e == ERR_OK && text.len > 0) {
        st->est_completion += prov_est_tokens((long long)text.len);
        e = prov_emit(out,
                      prov_chunk(st, json_pack("{s:s%}", "content", text.data, text.len), NULL));
    }
    buf_done(&text);
    const char *finish = vx_finish(json_string_value(json_object_get(cand, "finishReason")));
    if (finish == NULL && cand == NULL && vx_prompt_blocked(j)) {
        finish = "content_filter"; /* the prompt was blocked: no candidate will come */
    }
    if (e == ERR_OK && finish != NULL) {
        e = prov_stream_end(st, finish, out);
    }
    json_decref(j);
    return e;
}

bool provider_vertex_key_refused(long status, const char *body, size_t len)
{
    if (status != 400 || body == NULL || len == 0) {
        return false;
    }
    json_t *j = json_loadb(body, len, 0, NULL);
    bool refused = false;
    size_t i;
    const json_t *d;
    json_array_foreach(json_object_get(json_object_get(j, "error"), "details"), i, d)
    {
        const char *reason = json_string_value(json_object_get(d, "reason"));
        refused = refused || (reason != NULL && strcmp(reason, "API_KEY_INVALID") == 0);
    }
    json_decref(j);
    return refused;
}
