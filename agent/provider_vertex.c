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
 *   Function calling (tools[].functionDeclarations, at most 128;
 *     toolConfig.functionCallingConfig; functionCall and functionResponse
 *     parts):
 *     https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/function-calling
 *   Schema, "a select subset of an OpenAPI 3.0 schema object" (a function's
 *     parameters, generationConfig.responseSchema):
 *     https://cloud.google.com/vertex-ai/generative-ai/docs/reference/rest/v1/Schema
 * The key goes in the x-goog-api-key header, which Google APIs take as they
 * take ?key=: a key in a URL ends up in access logs and proxies' logs.
 *
 * A JSON Schema (a tool's parameters, a json_schema response format) is
 * translated keyword by keyword: what the Schema subset has is passed on,
 * types in its enum's spelling; a type and null becomes nullable; keywords
 * that only annotate are dropped; any other keyword is refused naming the
 * field, never dropped (dropping oneOf or $ref would let the model answer
 * what the app's schema forbids). A refusal's path names keywords of this
 * file's table only, and properties by position ("properties[0]"): a
 * property name, or a key that is no keyword, is the app's text, which an
 * error never holds.
 *
 * Not done here: the legacy functions / function_call fields, several
 * candidates (n > 1), images by URL, and text embeddings (:predict). Those
 * requests are ERR_UNSUPPORTED: the proxy tries the next candidate and, when
 * none is left, answers 400 "unsupported". Choosing a provider is route.c's,
 * sending upstream.c's.
 */
#include "agent/provider_vertex.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "agent/provider_util.h"
#include "agent/upstream.h"
#include "common/gcpkey.h"
#include "common/jsonw.h"

/* The system prompt, and one message's text, are bounded by the app's body cap; this is ours. */
#define VERTEX_MAX_TEXT ((size_t)16 * 1024 * 1024)
#define VERTEX_PATH_MODELS "/publishers/google/models/"
#define VERTEX_PATH_ANTHROPIC "/publishers/anthropic/models/"
/* Gemini's methods on a model: the answer at once, or as server-sent events. */
#define VERTEX_METHOD_GENERATE ":generateContent"
#define VERTEX_METHOD_STREAM ":streamGenerateContent?alt=sse"

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

/* ---- schemas and tools -------------------------------------------------------------------- */

/* A field path for prov_bad ("tools[0].function.parameters.properties.city"), cut when too long. */
struct vx_path {
    char s[sizeof(((struct provider_bad *)0)->param)];
    size_t len;
};

/* Appends to the path; returns the length to go back to. */
__attribute__((format(printf, 2, 3))) static size_t vx_path_push(struct vx_path *p, const char *fmt,
                                                                 ...)
{
    size_t was = p->len;
    if (p->len < sizeof(p->s) - 1) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(p->s + p->len, sizeof(p->s) - p->len, fmt, ap);
        va_end(ap);
        if (n > 0) {
            size_t end = p->len + (size_t)n; /* vsnprintf cut it there */
            p->len = end < sizeof(p->s) - 1 ? end : sizeof(p->s) - 1;
        }
    }
    return was;
}

static void vx_path_pop(struct vx_path *p, size_t len)
{
    p->len = len;
    p->s[len] = '\0';
}

/* What the translation does with one JSON Schema keyword. */
enum vx_kw {
    VX_KW_UNKNOWN, /* not a JSON Schema keyword: refused, named by the schema that has it */
    VX_KW_REFUSE,  /* JSON Schema's, not in Vertex's subset: refused naming it */
    VX_KW_COPY,    /* the same keyword and meaning in Vertex's Schema: passed on as it is */
    VX_KW_DROP,    /* an annotation that constrains nothing: left out */
    VX_KW_TYPE,
    VX_KW_ENUM,
    VX_KW_STRINGS,    /* an array of strings (required, propertyOrdering) */
    VX_KW_SCHEMA,     /* one subschema (items) */
    VX_KW_SCHEMAS,    /* an array of subschemas (anyOf) */
    VX_KW_PROPERTIES, /* a map of name to subschema */
    VX_KW_ADDITIONAL, /* a boolean or a subschema */
};

static enum vx_kw vx_keyword(const char *k)
{
    static const struct {
        const char *name;
        enum vx_kw kind;
    } table[] = {
        {"type", VX_KW_TYPE},
        {"enum", VX_KW_ENUM},
        {"properties", VX_KW_PROPERTIES},
        {"required", VX_KW_STRINGS},
        {"propertyOrdering", VX_KW_STRINGS},
        {"items", VX_KW_SCHEMA},
        {"anyOf", VX_KW_SCHEMAS},
        {"additionalProperties", VX_KW_ADDITIONAL},
        {"title", VX_KW_COPY},
        {"description", VX_KW_COPY},
        {"format", VX_KW_COPY},
        {"nullable", VX_KW_COPY},
        {"pattern", VX_KW_COPY},
        {"minimum", VX_KW_COPY},
        {"maximum", VX_KW_COPY},
        {"minLength", VX_KW_COPY},
        {"maxLength", VX_KW_COPY},
        {"minItems", VX_KW_COPY},
        {"maxItems", VX_KW_COPY},
        {"minProperties", VX_KW_COPY},
        {"maxProperties", VX_KW_COPY},
        {"default", VX_KW_COPY},
        {"example", VX_KW_COPY},
        {"$schema", VX_KW_DROP},
        {"$id", VX_KW_DROP},
        {"$comment", VX_KW_DROP},
        {"examples", VX_KW_DROP},
        {"deprecated", VX_KW_DROP},
        {"readOnly", VX_KW_DROP},
        {"writeOnly", VX_KW_DROP},
        {"contentEncoding", VX_KW_DROP},
        {"contentMediaType", VX_KW_DROP},
        {"oneOf", VX_KW_REFUSE},
        {"allOf", VX_KW_REFUSE},
        {"not", VX_KW_REFUSE},
        {"const", VX_KW_REFUSE},
        {"$ref", VX_KW_REFUSE},
        {"$defs", VX_KW_REFUSE},
        {"definitions", VX_KW_REFUSE},
        {"$anchor", VX_KW_REFUSE},
        {"$dynamicRef", VX_KW_REFUSE},
        {"$dynamicAnchor", VX_KW_REFUSE},
        {"if", VX_KW_REFUSE},
        {"then", VX_KW_REFUSE},
        {"else", VX_KW_REFUSE},
        {"patternProperties", VX_KW_REFUSE},
        {"propertyNames", VX_KW_REFUSE},
        {"unevaluatedProperties", VX_KW_REFUSE},
        {"dependentRequired", VX_KW_REFUSE},
        {"dependentSchemas", VX_KW_REFUSE},
        {"dependencies", VX_KW_REFUSE},
        {"prefixItems", VX_KW_REFUSE},
        {"additionalItems", VX_KW_REFUSE},
        {"unevaluatedItems", VX_KW_REFUSE},
        {"contains", VX_KW_REFUSE},
        {"minContains", VX_KW_REFUSE},
        {"maxContains", VX_KW_REFUSE},
        {"uniqueItems", VX_KW_REFUSE},
        {"exclusiveMinimum", VX_KW_REFUSE},
        {"exclusiveMaximum", VX_KW_REFUSE},
        {"multipleOf", VX_KW_REFUSE},
        {"contentSchema", VX_KW_REFUSE},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        if (strcmp(table[i].name, k) == 0) {
            return table[i].kind;
        }
    }
    return VX_KW_UNKNOWN;
}

/* A JSON Schema type name as Vertex's Type enum spells it; NULL for null and unknown names. */
static const char *vx_type_name(const char *t)
{
    static const char *const names[][2] = {{"string", "STRING"},   {"number", "NUMBER"},
                                           {"integer", "INTEGER"}, {"boolean", "BOOLEAN"},
                                           {"array", "ARRAY"},     {"object", "OBJECT"}};
    for (size_t i = 0; t != NULL && i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcasecmp(names[i][0], t) == 0) {
            return names[i][1];
        }
    }
    return NULL;
}

/*
 * type: one type name, or an array of one type and "null" (JSON Schema's
 * nullable, as OpenAI's strict mode writes optional fields), which is
 * Vertex's type + nullable. A union of two real types needs anyOf: refused.
 */
static enum err vx_schema_type(const json_t *v, json_t *out, struct vx_path *p,
                               struct provider_bad *bad)
{
    const char *name = NULL;
    bool nullable = false;
    if (json_is_string(v)) {
        name = vx_type_name(json_string_value(v));
    } else if (json_is_array(v) && json_array_size(v) == 2) {
        const char *a = json_string_value(json_array_get(v, 0));
        const char *b = json_string_value(json_array_get(v, 1));
        if (a != NULL && b != NULL) {
            nullable = strcmp(a, "null") == 0 || strcmp(b, "null") == 0;
            name = vx_type_name(strcmp(a, "null") == 0 ? b : a);
        }
    }
    if (name == NULL || (json_is_array(v) && !nullable)) {
        return prov_bad(bad,
                        "must be string, number, integer, boolean, array or object, or one of "
                        "them and null",
                        "%s", p->s);
    }
    if (json_object_set_new(out, "type", json_string(name)) != 0 ||
        (nullable && json_object_set_new(out, "nullable", json_true()) != 0)) {
        return ERR_NOMEM;
    }
    return ERR_OK;
}

static enum err vx_schema(const json_t *in, int depth, struct vx_path *p, struct provider_bad *bad,
                          json_t **ret);

/* One keyword of a schema (its path already pushed) into out. */
static enum err vx_schema_keyword(const char *k, const json_t *v, int depth, json_t *out,
                                  struct vx_path *p, struct provider_bad *bad)
{
    json_t *sub = NULL;
    enum err e = ERR_OK;
    size_t i;
    const json_t *x;
    switch (vx_keyword(k)) {
    case VX_KW_UNKNOWN:
        return prov_bad(bad, "has a keyword that neither JSON Schema nor Vertex's subset has", "%s",
                        p->s);
    case VX_KW_REFUSE:
        return prov_bad(bad, "is a JSON Schema keyword Vertex's schema subset does not have", "%s",
                        p->s);
    case VX_KW_DROP:
        return ERR_OK;
    case VX_KW_COPY:
        return json_object_set(out, k, (json_t *)v) == 0 ? ERR_OK : ERR_NOMEM;
    case VX_KW_TYPE:
        return vx_schema_type(v, out, p, bad);
    case VX_KW_ENUM:
    case VX_KW_STRINGS:
        json_array_foreach(v, i, x)
        {
            if (!json_is_string(x)) {
                return prov_bad(bad, "must hold strings only (Vertex's enum values are strings)",
                                "%s[%zu]", p->s, i);
            }
        }
        if (!json_is_array(v)) {
            return prov_bad(bad, "must be an array of strings", "%s", p->s);
        }
        return json_object_set(out, k, (json_t *)v) == 0 ? ERR_OK : ERR_NOMEM;
    case VX_KW_ADDITIONAL:
        if (json_is_boolean(v)) {
            return json_object_set(out, k, (json_t *)v) == 0 ? ERR_OK : ERR_NOMEM;
        }
        /* else a subschema */
        __attribute__((fallthrough));
    case VX_KW_SCHEMA:
        if (json_is_array(v)) {
            return prov_bad(bad, "must be one schema (Vertex has no tuple arrays)", "%s", p->s);
        }
        e = vx_schema(v, depth + 1, p, bad, &sub);
        break;
    case VX_KW_SCHEMAS:
        if (!json_is_array(v) || json_array_size(v) == 0) {
            return prov_bad(bad, "must be a non-empty array of schemas", "%s", p->s);
        }
        sub = json_array();
        e = sub != NULL ? ERR_OK : ERR_NOMEM;
        json_array_foreach(v, i, x)
        {
            json_t *one = NULL;
            size_t back = vx_path_push(p, "[%zu]", i);
            if (e == ERR_OK) {
                e = vx_schema(x, depth + 1, p, bad, &one);
            }
            vx_path_pop(p, back);
            if (e == ERR_OK && json_array_append_new(sub, one) != 0) {
                e = ERR_NOMEM;
            }
        }
        break;
    case VX_KW_PROPERTIES:
        if (!json_is_object(v)) {
            return prov_bad(bad, "must be an object of schemas", "%s", p->s);
        }
        sub = json_object();
        e = sub != NULL ? ERR_OK : ERR_NOMEM;
        const char *name;
        i = 0;
        json_object_foreach((json_t *)v, name, x)
        {
            json_t *one = NULL;
            /* By position, not name: a name is the app's text, never put in an error. */
            size_t back = vx_path_push(p, "[%zu]", i++);
            if (e == ERR_OK) {
                e = vx_schema(x, depth + 1, p, bad, &one);
            }
            vx_path_pop(p, back);
            if (e == ERR_OK && json_object_set_new(sub, name, one) != 0) {
                e = ERR_NOMEM;
            }
        }
        break;
    }
    if (e == ERR_OK && json_object_set_new(out, k, sub) != 0) {
        return ERR_NOMEM; /* set_new took sub */
    }
    if (e != ERR_OK) {
        json_decref(sub);
    }
    return e;
}

/*
 * A JSON Schema (at path p, nesting level depth) to Vertex's Schema (new
 * reference): see the top of this file. ERR_INVAL naming the field, ERR_NOMEM.
 */
static enum err vx_schema(const json_t *in, int depth, struct vx_path *p, struct provider_bad *bad,
                          json_t **ret)
{
    if (!json_is_object(in)) {
        return prov_bad(bad, "must be a JSON Schema object", "%s", p->s);
    }
    if (depth > VERTEX_MAX_SCHEMA_DEPTH) {
        return prov_bad(bad, "nests more than 32 schemas deep", "%s", p->s);
    }
    json_t *out = json_object();
    if (out == NULL) {
        return ERR_NOMEM;
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)in, k, v)
    {
        /* A keyword of the table is named; any other key is the app's text, never echoed. */
        size_t back = vx_keyword(k) != VX_KW_UNKNOWN ? vx_path_push(p, ".%s", k) : p->len;
        enum err e = vx_schema_keyword(k, v, depth, out, p, bad);
        vx_path_pop(p, back);
        if (e != ERR_OK) {
            json_decref(out);
            return e;
        }
    }
    *ret = out;
    return ERR_OK;
}

/*
 * FunctionDeclaration.name: a letter or '_' first, then letters, digits,
 * '_', '.' and '-', at most VERTEX_MAX_FUNCTION_NAME bytes (OpenAI also
 * takes a digit or '-' first, which Vertex refuses).
 */
static bool vx_function_name_ok(const char *name, size_t len)
{
    if (len == 0 || len > VERTEX_MAX_FUNCTION_NAME) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char ch = name[i];
        bool alpha = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_';
        bool more = (ch >= '0' && ch <= '9') || ch == '.' || ch == '-';
        if (!(alpha || (i > 0 && more))) {
            return false;
        }
    }
    return true;
}

/* An OpenAI function tool as a FunctionDeclaration; its parameters are translated after. */
static json_t *vx_declaration(const json_t *name, const json_t *desc, const json_t *params)
{
    json_t *d = json_pack("{s:O}", "name", name);
    if (d != NULL &&
        ((json_is_string(desc) && json_object_set(d, "description", (json_t *)desc)) ||
         (json_is_object(params) && json_object_set(d, "parameters", (json_t *)params)))) {
        json_decref(d);
        return NULL;
    }
    return d;
}

/*
 * Whether a translated parameters schema takes no argument at all: an object
 * without properties, no other property allowed (additionalProperties missing,
 * as OpenAI's "no parameters" is written, or false), nothing else but words.
 */
static bool vx_no_arguments(const json_t *schema)
{
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)schema, k, v)
    {
        bool none = (strcmp(k, "properties") == 0 && json_object_size(v) == 0) ||
                    (strcmp(k, "required") == 0 && json_array_size(v) == 0) ||
                    (strcmp(k, "additionalProperties") == 0 && json_is_false(v)) ||
                    strcmp(k, "type") == 0 || strcmp(k, "title") == 0 ||
                    strcmp(k, "description") == 0;
        if (!none) {
            return false;
        }
    }
    return true;
}

/*
 * Declaration i's name checked and its parameters translated. A function's
 * parameters are an object schema; one that takes no argument (OpenAI's
 * {"type":"object","properties":{}} for a function of no arguments) is left
 * out: Vertex refuses an OBJECT without properties there, and a declaration
 * without parameters means the same. Any other object without properties
 * (a free-form map, anyOf branches) is sent as it is, for Vertex to judge.
 */
static enum err vx_declaration_finish(json_t *d, size_t i, struct provider_bad *bad)
{
    const json_t *name = json_object_get(d, "name");
    if (!vx_function_name_ok(json_string_value(name), json_string_length(name))) {
        return prov_bad(bad,
                        "must start with a letter or _ and hold only letters, digits, _ . - "
                        "(at most 64) for Vertex",
                        "tools[%zu].function.name", i);
    }
    const json_t *params = json_object_get(d, "parameters");
    if (params == NULL) {
        return ERR_OK;
    }
    struct vx_path p = {.len = 0};
    vx_path_push(&p, "tools[%zu].function.parameters", i);
    if (vx_type_name(json_string_value(json_object_get(params, "type"))) == NULL ||
        strcasecmp(json_string_value(json_object_get(params, "type")), "object") != 0) {
        return prov_bad(bad, "must be an object schema", "%s", p.s);
    }
    json_t *schema = NULL;
    enum err e = vx_schema(params, 1, &p, bad, &schema);
    if (e != ERR_OK) {
        return e;
    }
    if (vx_no_arguments(schema)) {
        json_decref(schema);
        return json_object_del(d, "parameters") == 0 ? ERR_OK : ERR_NOMEM;
    }
    return json_object_set_new(d, "parameters", schema) == 0 ? ERR_OK : ERR_NOMEM;
}

/* tools as [{functionDeclarations: [...]}] (new reference); NULL in *ret when there are none. */
static enum err vx_tools(const json_t *tools, struct provider_bad *bad, json_t **ret)
{
    *ret = NULL;
    if (tools == NULL || json_is_null(tools) ||
        (json_is_array(tools) && json_array_size(tools) == 0)) {
        return ERR_OK;
    }
    if (json_array_size(tools) > VERTEX_MAX_TOOLS) {
        return prov_bad(bad, "has more than 128 functions, Vertex's limit", "tools");
    }
    json_t *decls = NULL;
    /* null parameters are a function without any, as OpenAI's missing ones. */
    enum err e = prov_tools(tools, true, vx_declaration, bad, &decls);
    size_t i;
    json_t *d;
    json_array_foreach(decls, i, d)
    {
        if (e == ERR_OK) {
            e = vx_declaration_finish(d, i, bad);
        }
    }
    if (e != ERR_OK) {
        json_decref(decls);
        return e;
    }
    *ret = json_pack("[{s:o}]", "functionDeclarations", decls);
    return *ret != NULL ? ERR_OK : ERR_NOMEM;
}

/*
 * tool_choice as toolConfig.functionCallingConfig (NULL in *ret: none given,
 * Vertex's default AUTO): auto AUTO, none NONE (the declarations stay: earlier
 * functionCall turns refer to them), required ANY, one named function ANY
 * limited to it by allowedFunctionNames. Without tools, auto and none mean
 * nothing and are left out; required or a named function cannot be met.
 *
 * parallel_tool_calls has no Gemini counterpart (the model may answer with
 * several function calls): false is not translated, as in the Bedrock adapter.
 */
static enum err vx_tool_config(const json_t *oreq, const json_t *vtools, struct provider_bad *bad,
                               json_t **ret)
{
    const json_t *name = NULL;
    const char *mode = NULL;
    *ret = NULL;
    switch (prov_tool_choice(oreq, &name)) {
    case PROV_CHOICE_UNSET:
        return ERR_OK;
    case PROV_CHOICE_AUTO:
        mode = "AUTO";
        break;
    case PROV_CHOICE_NONE:
        mode = "NONE";
        break;
    case PROV_CHOICE_REQUIRED:
    case PROV_CHOICE_FUNCTION:
        mode = "ANY";
        break;
    case PROV_CHOICE_INVALID:
        return prov_bad(bad,
                        "must be auto, none, required or {\"type\":\"function\","
                        "\"function\":{\"name\":...}}",
                        "tool_choice");
    }
    if (vtools == NULL) {
        if (strcmp(mode, "ANY") == 0) {
            return prov_bad(bad, "asks for a tool call but the request has no tools",
                            "tool_choice");
        }
        return ERR_OK;
    }
    if (name != NULL) {
        bool found = false;
        size_t i;
        const json_t *d;
        json_array_foreach(json_object_get(json_array_get(vtools, 0), "functionDeclarations"), i, d)
        {
            found = found || json_equal(json_object_get(d, "name"), name);
        }
        if (!found) {
            return prov_bad(bad, "names no function of tools", "tool_choice.function.name");
        }
    }
    *ret = name != NULL ? json_pack("{s:{s:s,s:[O]}}", "functionCallingConfig", "mode", mode,
                                    "allowedFunctionNames", name)
                        : json_pack("{s:{s:s}}", "functionCallingConfig", "mode", mode);
    return *ret != NULL ? ERR_OK : ERR_NOMEM;
}

/*
 * An assistant message's tool_calls as functionCall parts appended to parts
 * (the args parsed from each call's arguments string), each id recorded in
 * ids with its function name for the tool messages that answer it.
 */
static enum err vx_function_calls(const json_t *calls, size_t mi, json_t *parts, json_t *ids,
                                  struct provider_bad *bad)
{
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
            (json_array_append_new(parts, json_pack("{s:{s:O,s:o}}", "functionCall", "name", name,
                                                    "args", input)) != 0 ||
             json_object_set(ids, json_string_value(id), (json_t *)name) != 0)) {
            e = ERR_NOMEM;
        }
        if (e != ERR_OK) {
            return e;
        }
    }
    return ERR_OK;
}

/*
 * A tool message as a functionResponse part. OpenAI's tool message names the
 * call (tool_call_id), Vertex's the function: the name comes from the earlier
 * assistant tool_calls of this request (ids); an id none of them has is
 * refused. The text is the response's "output", which Vertex reads as the
 * function's output.
 */
static enum err vx_function_response(const json_t *m, size_t mi, const json_t *ids,
                                     struct provider_bad *bad, json_t **ret)
{
    const json_t *id = NULL;
    json_t *text = NULL;
    enum err e = prov_tool_result(m, mi, bad, &id, &text);
    if (e != ERR_OK) {
        return e;
    }
    const json_t *name = json_object_get(ids, json_string_value(id));
    if (name == NULL) {
        json_decref(text);
        return prov_bad(bad, "answers no tool call of an earlier assistant message",
                        "messages[%zu].tool_call_id", mi);
    }
    *ret = json_pack("{s:{s:O,s:{s:o}}}", "functionResponse", "name", name, "response", "output",
                     text);
    return *ret != NULL ? ERR_OK : ERR_NOMEM;
}

/*
 * An assistant message with tool_calls: its text (when there is any) and one
 * functionCall part per call.
 */
static enum err vx_assistant_calls(const json_t *m, size_t mi, json_t *ids,
                                   struct provider_bad *bad, json_t **ret)
{
    const json_t *content = json_object_get(m, "content");
    json_t *parts = NULL;
    enum err e = ERR_OK;
    if ((json_is_string(content) && json_string_length(content) > 0) ||
        json_array_size(content) > 0) {
        e = vx_parts(content, mi, false, bad, &parts);
    } else if (content == NULL || json_is_null(content) || json_is_string(content) ||
               json_is_array(content)) {
        parts = json_array(); /* content is optional next to tool calls */
        e = parts != NULL ? ERR_OK : ERR_NOMEM;
    } else {
        e = prov_bad(bad, "must be a string, an array of parts or null", "messages[%zu].content",
                     mi);
    }
    if (e == ERR_OK) {
        e = vx_function_calls(json_object_get(m, "tool_calls"), mi, parts, ids, bad);
    }
    if (e != ERR_OK) {
        json_decref(parts);
        return e;
    }
    *ret = parts;
    return ERR_OK;
}

/*
 * The messages to contents (user, and assistant as "model") and the system
 * and developer messages to systemInstruction's parts, in order. An
 * assistant's tool_calls are functionCall parts of its "model" turn; tool
 * messages are functionResponse parts of a "user" turn, those of consecutive
 * tool messages in one turn (Vertex wants every call of a turn answered in
 * the next). The legacy function role and function_call are ERR_UNSUPPORTED.
 */
static enum err vx_messages(const json_t *msgs, json_t *contents, json_t *system,
                            struct provider_bad *bad)
{
    /* tool_call_id -> function name, from the assistant messages so far. */
    json_t *ids = json_object();
    /* The parts of the "user" turn holding the tool results just before, or NULL. */
    json_t *results = NULL;
    enum err e = ids != NULL ? ERR_OK : ERR_NOMEM;
    size_t i;
    const json_t *m;
    json_array_foreach(msgs, i, m)
    {
        if (e != ERR_OK) {
            break;
        }
        const char *role = json_string_value(json_object_get(m, "role"));
        const json_t *content = json_object_get(m, "content");
        const json_t *calls = json_object_get(m, "tool_calls");
        if (role == NULL) {
            e = prov_bad(bad, "is missing", "messages[%zu].role", i);
            break;
        }
        if (strcmp(role, "function") == 0 || json_is_object(json_object_get(m, "function_call"))) {
            e = ERR_UNSUPPORTED; /* the legacy functions API */
            break;
        }
        if (calls != NULL && !json_is_null(calls) &&
            (!json_is_array(calls) || strcmp(role, "assistant") != 0)) {
            e = prov_bad(bad, "must be an array, in an assistant message",
                         "messages[%zu].tool_calls", i);
            break;
        }
        bool sys = strcmp(role, "system") == 0 || strcmp(role, "developer") == 0;
        const char *vrole = strcmp(role, "user") == 0        ? "user"
                            : strcmp(role, "assistant") == 0 ? "model"
                                                             : NULL;
        json_t *parts = NULL;
        if (strcmp(role, "tool") == 0) {
            json_t *part = NULL;
            e = vx_function_response(m, i, ids, bad, &part);
            if (e == ERR_OK && results != NULL) {
                e = json_array_append_new(results, part) == 0 ? ERR_OK : ERR_NOMEM;
                continue;
            }
            parts = e == ERR_OK ? json_pack("[o]", part) : NULL;
            if (e == ERR_OK && parts == NULL) {
                e = ERR_NOMEM;
            }
            results = parts;
            vrole = "user";
        } else if (!sys && vrole == NULL) {
            e = prov_bad(bad, "must be system, developer, user, assistant or tool",
                         "messages[%zu].role", i);
        } else if (json_array_size(calls) > 0) {
            results = NULL;
            e = vx_assistant_calls(m, i, ids, bad, &parts);
        } else {
            results = NULL;
            e = vx_parts(content, i, sys, bad, &parts);
        }
        if (e != ERR_OK) {
            break;
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
    }
    json_decref(ids);
    if (e == ERR_OK && json_array_size(contents) == 0) {
        e = prov_bad(bad, "has no user or assistant message", "messages");
    }
    return e;
}

/* response_format json_schema: its schema as responseSchema, translated as the tools' are. */
static enum err vx_response_schema(const json_t *rf, json_t *gc, struct provider_bad *bad)
{
    const json_t *schema = json_object_get(json_object_get(rf, "json_schema"), "schema");
    struct vx_path p = {.len = 0};
    vx_path_push(&p, "response_format.json_schema.schema");
    if (!json_is_object(schema)) {
        return prov_bad(bad, "must be a JSON Schema object", "%s", p.s);
    }
    json_t *vs = NULL;
    enum err e = vx_schema(schema, 1, &p, bad, &vs);
    if (e != ERR_OK) {
        return e;
    }
    if (json_object_set_new(gc, "responseSchema", vs) != 0 ||
        json_object_set_new(gc, "responseMimeType", json_string("application/json")) != 0) {
        return ERR_NOMEM;
    }
    return ERR_OK;
}

/*
 * OpenAI's sampling fields to generationConfig. max_completion_tokens wins
 * over the older max_tokens; stop (a string or an array) is stopSequences;
 * response_format json_object is responseMimeType application/json, and
 * json_schema that with its schema as responseSchema (text is the default).
 * OpenAI's strict is not sent: Vertex holds the answer to responseSchema.
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
    } else if (e == ERR_OK && rft != NULL && strcmp(rft, "json_schema") == 0) {
        e = vx_response_schema(rf, gc, bad);
    } else if (e == ERR_OK && rf != NULL && !json_is_null(rf) &&
               (rft == NULL || strcmp(rft, "text") != 0)) {
        e = prov_bad(bad, "must be text, json_object or json_schema", "response_format.type");
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
    /* The legacy functions API is not translated: another candidate may serve the request. */
    if (json_array_size(json_object_get(oreq, "functions")) > 0) {
        return ERR_UNSUPPORTED;
    }
    const json_t *n = json_object_get(oreq, "n");
    if (json_is_integer(n) && json_integer_value(n) > 1) {
        return ERR_UNSUPPORTED; /* one candidate per answer: candidateCount is not used */
    }
    json_t *out = json_object();
    json_t *contents = json_array();
    json_t *system = json_array();
    json_t *gc = NULL, *tools = NULL, *tool_config = NULL;
    enum err e = ERR_NOMEM;
    if (out == NULL || contents == NULL || system == NULL) {
        goto out_free;
    }
    e = vx_messages(msgs, contents, system, bad);
    if (e == ERR_OK) {
        e = vx_tools(json_object_get(oreq, "tools"), bad, &tools);
    }
    if (e == ERR_OK) {
        e = vx_tool_config(oreq, tools, bad, &tool_config);
    }
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
    if ((tools != NULL && json_object_set(out, "tools", tools) != 0) ||
        (tool_config != NULL && json_object_set(out, "toolConfig", tool_config) != 0)) {
        goto out_free;
    }
    json_decref(tool_config);
    json_decref(tools);
    json_decref(gc);
    json_decref(system);
    json_decref(contents);
    *ret = out;
    return ERR_OK;
out_free:
    json_decref(tool_config);
    json_decref(tools);
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

/*
 * base_url (https, or http for a local entry) + the model's method path. The
 * model is checked first (vx_model_ok), so the path always fits its buffer.
 */
static enum err vx_url(const struct provider_call *c, struct provider_http *out)
{
    char path[sizeof(VERTEX_PATH_MODELS) + VERTEX_MAX_MODEL + sizeof(VERTEX_METHOD_STREAM)];
    int n = snprintf(path, sizeof(path), VERTEX_PATH_MODELS "%s%s", c->model,
                     c->stream ? VERTEX_METHOD_STREAM : VERTEX_METHOD_GENERATE);
    if (n < 0 || (size_t)n >= sizeof(path)) {
        return ERR_TOOBIG;
    }
    return prov_url(out, c->entry, path);
}

/* ---- embeddings (:predict) ------------------------------------------------------------------ */

/* Vertex's embedding task types (EmbeddingTaskType), as the app may name one in task_type. */
static const char *const vx_task_types[] = {
    "RETRIEVAL_QUERY",   "RETRIEVAL_DOCUMENT",   "SEMANTIC_SIMILARITY",
    "CLASSIFICATION",    "CLUSTERING",           "QUESTION_ANSWERING",
    "FACT_VERIFICATION", "CODE_RETRIEVAL_QUERY", NULL};

/* gemini-embedding-* takes one instance per request; the text-embedding models a batch. */
static bool vx_embed_single(const char *model)
{
    return strncmp(model, "gemini-embedding", 16) == 0;
}

enum err provider_vertex_embed_request(const json_t *oreq, const char *model,
                                       struct provider_bad *bad, json_t **ret)
{
    *ret = NULL;
    /* Base64 is refused, as the Cohere and Bedrock adapters refuse it: the vectors are floats. */
    const char *fmt = json_string_value(json_object_get(oreq, "encoding_format"));
    if (fmt != NULL && strcmp(fmt, "float") != 0) {
        return prov_bad(bad, "must be float for Vertex", "encoding_format");
    }
    const json_t *in = json_object_get(oreq, "input");
    size_t n = json_is_string(in) ? 1 : json_array_size(in);
    if (!json_is_string(in) && (!json_is_array(in) || n == 0)) {
        return prov_bad(bad, "must be a string or a non-empty array of strings", "input");
    }
    for (size_t i = 0; json_is_array(in) && i < n; i++) {
        if (!json_is_string(json_array_get(in, i))) {
            return ERR_UNSUPPORTED; /* token ids: another candidate may take them */
        }
    }
    bool single = vx_embed_single(model);
    if (single && n > 1) {
        return ERR_UNSUPPORTED; /* one request per candidate: a batch goes elsewhere */
    }
    if (n > VERTEX_MAX_EMBED_TEXTS) {
        return prov_bad(bad, "has more inputs than Vertex embeds in one call (250)", "input");
    }
    const json_t *dims = json_object_get(oreq, "dimensions");
    json_int_t max_dims = single ? VERTEX_MAX_GEMINI_DIMENSIONS : VERTEX_MAX_TEXT_DIMENSIONS;
    if (dims != NULL && !json_is_null(dims) &&
        (!json_is_integer(dims) || json_integer_value(dims) < 1 ||
         json_integer_value(dims) > max_dims)) {
        return prov_bad(bad,
                        single ? "must be 1..3072 for gemini-embedding on Vertex"
                               : "must be 1..768 for this Vertex embedding model",
                        "dimensions");
    }
    const json_t *tt = json_object_get(oreq, "task_type");
    const char *task = NULL;
    if (tt != NULL && !json_is_null(tt)) {
        for (size_t k = 0; json_is_string(tt) && vx_task_types[k] != NULL; k++) {
            if (strcmp(json_string_value(tt), vx_task_types[k]) == 0) {
                task = vx_task_types[k];
            }
        }
        if (task == NULL) {
            return prov_bad(bad,
                            "must be one of Vertex's task types (RETRIEVAL_QUERY, "
                            "RETRIEVAL_DOCUMENT, SEMANTIC_SIMILARITY, CLASSIFICATION, ...)",
                            "task_type");
        }
    }
    /* autoTruncate false: an input too long is Vertex's 400, never silently cut. */
    json_t *out = json_pack("{s:[],s:{s:b}}", "instances", "parameters", "autoTruncate", 0);
    if (out == NULL) {
        return ERR_NOMEM;
    }
    json_t *instances = json_object_get(out, "instances");
    json_t *params = json_object_get(out, "parameters");
    for (size_t i = 0; i < n; i++) {
        const json_t *text = json_is_string(in) ? in : json_array_get(in, i);
        json_t *inst = json_pack("{s:O}", "content", text);
        if (inst == NULL || json_array_append_new(instances, inst) != 0 ||
            (task != NULL && json_object_set_new(inst, "task_type", json_string(task)) != 0)) {
            json_decref(out); /* inst: appended (freed with out), or freed by the append */
            return ERR_NOMEM;
        }
    }
    if (json_is_integer(dims) &&
        json_object_set(params, "outputDimensionality", (json_t *)dims) != 0) {
        json_decref(out);
        return ERR_NOMEM;
    }
    *ret = out;
    return ERR_OK;
}

enum err provider_vertex_embed_answer(const json_t *resp, const char *model, json_t **ret,
                                      struct provider_usage *ret_usage)
{
    *ret = NULL;
    if (json_object_get(resp, "error") != NULL) {
        return ERR_UPSTREAM;
    }
    const json_t *preds = json_object_get(resp, "predictions");
    if (!json_is_array(preds) || json_array_size(preds) == 0) {
        return ERR_PROTO;
    }
    json_t *data = json_array();
    if (data == NULL) {
        return ERR_NOMEM;
    }
    long long prompt = 0;
    size_t i;
    const json_t *p;
    json_array_foreach(preds, i, p)
    {
        const json_t *emb = json_object_get(p, "embeddings");
        const json_t *vals = json_object_get(emb, "values");
        if (!json_is_array(vals)) {
            json_decref(data);
            return ERR_PROTO;
        }
        size_t k;
        const json_t *x;
        json_array_foreach(vals, k, x)
        {
            if (!json_is_number(x)) {
                json_decref(data);
                return ERR_PROTO;
            }
        }
        long long tc =
            prov_count(json_object_get(json_object_get(emb, "statistics"), "token_count"));
        prompt = prompt + tc > PROVIDER_MAX_TOKENS ? PROVIDER_MAX_TOKENS : prompt + tc;
        if (json_array_append_new(data, json_pack("{s:s,s:I,s:O}", "object", "embedding", "index",
                                                  (json_int_t)i, "embedding", vals)) != 0) {
            json_decref(data);
            return ERR_NOMEM;
        }
    }
    json_t *out =
        json_pack("{s:s,s:s,s:{s:I,s:I}}", "object", "list", "model", model != NULL ? model : "",
                  "usage", "prompt_tokens", (json_int_t)prompt, "total_tokens", (json_int_t)prompt);
    if (out == NULL || json_object_set_new(out, "data", data) != 0) {
        json_decref(out); /* data: set_new took it, or it is freed on failure */
        if (out == NULL) {
            json_decref(data);
        }
        return ERR_NOMEM;
    }
    ret_usage->prompt_tokens = prompt;
    ret_usage->completion_tokens = 0;
    ret_usage->cached_tokens = 0;
    ret_usage->seen = true;
    *ret = out;
    return ERR_OK;
}

/* The key metadata's region (a Google Cloud location), or VERTEX_DEFAULT_REGION. */
static const char *vx_region(const json_t *metadata)
{
    const char *r = json_string_value(json_object_get(metadata, "region"));
    size_t n = r != NULL ? strlen(r) : 0;
    if (n == 0 || n > VERTEX_MAX_REGION || r[0] == '-' ||
        strspn(r, "abcdefghijklmnopqrstuvwxyz0123456789-") != n) {
        return VERTEX_DEFAULT_REGION;
    }
    return r;
}

enum err provider_vertex_sa_prefix(const json_t *entry, const json_t *metadata, const char *project,
                                   char *out, size_t size, bool *ret_local)
{
    const char *base;
    size_t bl;
    bool local;
    enum err e = prov_base_url(entry, &base, &bl, &local);
    if (e != ERR_OK) {
        return e;
    }
    if (bl > INT32_MAX) {
        return ERR_TOOBIG;
    }
    *ret_local = local;
    int n;
    if (memmem(base, bl, "/projects/", 10) != NULL) {
        /* An admin's base_url with its own project and location: used as it is. */
        n = snprintf(out, size, "%.*s", (int)bl, base);
    } else {
        const char *region = vx_region(metadata);
        static const char global[] = "https://aiplatform.googleapis.com";
        size_t gl = sizeof(global) - 1;
        if (bl >= gl && memcmp(base, global, gl) == 0 && (bl == gl || base[gl] == '/') &&
            strcmp(region, "global") != 0) {
            /* The built-in global host: the location's own host serves its models. */
            n = snprintf(out, size,
                         "https://%s-aiplatform.googleapis.com%.*s/projects/%s/locations/%s",
                         region, (int)(bl - gl), base + gl, project, region);
        } else {
            n = snprintf(out, size, "%.*s/projects/%s/locations/%s", (int)bl, base, project,
                         region);
        }
    }
    return n < 0 || (size_t)n >= size ? ERR_TOOBIG : ERR_OK;
}

/*
 * A service-account key: the regional URL for its project, and the access
 * token traded for it as a bearer token. The key itself is never sent.
 */
static enum err vx_sa_url_at(const struct provider_call *c, struct provider_http *out,
                             const char *publisher, const char *method)
{
    struct gcpkey k;
    /* The fields only: the key was checked when it was written, and its RSA part is not needed. */
    if (c->token == NULL ||
        !gcpkey_parse_fields((const char *)c->key->data, c->key->len, &k, NULL)) {
        return ERR_CONFIG;
    }
    char prefix[UPSTREAM_MAX_URL];
    bool local = false;
    enum err e = provider_vertex_sa_prefix(c->entry, c->metadata, k.project_id, prefix,
                                           sizeof(prefix), &local);
    if (e != ERR_OK) {
        return e;
    }
    int n = snprintf(out->url, sizeof(out->url), "%s%s%s%s", prefix, publisher, c->model, method);
    if (n < 0 || (size_t)n >= sizeof(out->url)) {
        return ERR_TOOBIG;
    }
    out->allow_http = local;
    return ERR_OK;
}

static enum err vx_sa_url(const struct provider_call *c, struct provider_http *out,
                          const char *method)
{
    return vx_sa_url_at(c, out, VERTEX_PATH_MODELS, method);
}

bool provider_vertex_claude_model(const char *model)
{
    return model != NULL && strncmp(model, "claude-", 7) == 0;
}

enum err provider_vertex_claude(const struct provider_call *c, char *body, size_t len,
                                struct provider_http *out)
{
    out->body = body;
    out->body_len = len;
    /* Express mode's API keys cannot call partner models: a service-account key only. */
    if (c->key == NULL || !gcpkey_is_sa((const char *)c->key->data, c->key->len)) {
        return ERR_UNSUPPORTED;
    }
    if (!vx_model_ok(c->model) || !provider_vertex_claude_model(c->model)) {
        return ERR_CONFIG;
    }
    enum err e = vx_sa_url_at(c, out, VERTEX_PATH_ANTHROPIC,
                              c->stream ? ":streamRawPredict" : ":rawPredict");
    if (e == ERR_OK) {
        e = prov_json_headers(out,
                              c->stream ? "Accept: text/event-stream" : "Accept: application/json");
    }
    if (e == ERR_OK) {
        e = upstream_header_secret(&out->headers, "Authorization: Bearer ", c->token);
    }
    return e;
}

/*
 * Embeddings: :predict on the regional endpoint, for a service-account key
 * only (express mode has no embeddings endpoint: ERR_UNSUPPORTED, the router
 * tries the next candidate).
 */
static enum err vx_embed_build(const struct provider_call *c, bool sa, struct provider_http *out)
{
    if (!sa) {
        return ERR_UNSUPPORTED;
    }
    if (!vx_model_ok(c->model)) {
        return prov_bad(&out->bad, "cannot be put in a Vertex URL", "model");
    }
    json_t *body = NULL;
    enum err e = provider_vertex_embed_request(c->req, c->model, &out->bad, &body);
    if (e == ERR_OK) {
        e = vx_sa_url(c, out, ":predict");
    }
    if (e == ERR_OK) {
        e = prov_dump(body, out);
    }
    json_decref(body);
    if (e == ERR_OK) {
        e = prov_json_headers(out, "Accept: application/json");
    }
    if (e == ERR_OK) {
        e = upstream_header_secret(&out->headers, "Authorization: Bearer ", c->token);
    }
    return e;
}

enum err provider_vertex_build(const struct provider_call *c, struct provider_http *out)
{
    bool sa = gcpkey_is_sa((const char *)c->key->data, c->key->len);
    if (c->op == PROVIDER_EMBEDDINGS) {
        return vx_embed_build(c, sa, out);
    }
    if (c->op != PROVIDER_CHAT || provider_vertex_claude_model(c->model)) {
        return ERR_UNSUPPORTED; /* Claude speaks Anthropic's Messages API only (messages.h) */
    }
    if (!vx_model_ok(c->model)) {
        return prov_bad(&out->bad, "cannot be put in a Vertex URL", "model");
    }
    enum err e = sa ? vx_sa_url(c, out, c->stream ? VERTEX_METHOD_STREAM : VERTEX_METHOD_GENERATE)
                    : vx_url(c, out);
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
        e = sa ? upstream_header_secret(&out->headers, "Authorization: Bearer ", c->token)
               : upstream_header_secret(&out->headers, "x-goog-api-key: ", c->key);
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

/*
 * Function call n of an answer as a block for prov_tool_call (new reference):
 * its id is functionCall.id when Vertex gives a usable one, else
 * "call_<answer>_<n>", unique per answer and the same in its stream; its
 * name; its args (an object) as the input. NULL when out of memory.
 */
static json_t *vx_call_block(const json_t *fc, const char *answer_id, int n)
{
    char id[PROVIDER_MAX_TOOL_ID + 1];
    const json_t *fid = json_object_get(fc, "id");
    if (json_is_string(fid) && json_string_length(fid) > 0 &&
        json_string_length(fid) <= PROVIDER_MAX_TOOL_ID) {
        snprintf(id, sizeof(id), "%s", json_string_value(fid));
    } else {
        const char *rid = strncmp(answer_id, "chatcmpl-", 9) == 0 ? answer_id + 9 : answer_id;
        snprintf(id, sizeof(id), "call_%.*s_%d", VERTEX_MAX_ID + 16, rid, n);
    }
    return json_pack("{s:s,s:O*,s:O*}", "id", id, "name", json_object_get(fc, "name"), "input",
                     json_object_get(fc, "args"));
}

/*
 * A candidate's functionCall parts as OpenAI tool calls appended to
 * tool_calls. ERR_PROTO for one without a usable name, ERR_NOMEM.
 */
static enum err vx_candidate_calls(const json_t *cand, const char *answer_id, json_t *tool_calls)
{
    const json_t *parts = json_object_get(json_object_get(cand, "content"), "parts");
    size_t i;
    const json_t *p;
    json_array_foreach(parts, i, p)
    {
        const json_t *fc = json_object_get(p, "functionCall");
        if (fc == NULL) {
            continue;
        }
        json_t *blk = json_is_object(fc)
                          ? vx_call_block(fc, answer_id, (int)json_array_size(tool_calls))
                          : NULL;
        enum err e = prov_tool_calls_add(tool_calls, prov_tool_call(blk, "id"));
        json_decref(blk);
        if (e != ERR_OK) {
            return e;
        }
    }
    return ERR_OK;
}

/*
 * The finish_reason of a candidate that made tool calls: tool_calls when it
 * stopped to have them run (not when it ran out of tokens or was filtered).
 */
static const char *vx_finish_calls(const char *finish, bool calls)
{
    return calls && finish != NULL && strcmp(finish, "stop") == 0 ? "tool_calls" : finish;
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
    char id[sizeof("chatcmpl-") + VERTEX_MAX_ID + 32];
    vx_id(resp, id, sizeof(id));
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
        json_t *tool_calls = e == ERR_OK ? json_array() : NULL;
        if (e == ERR_OK) {
            e = tool_calls != NULL ? vx_candidate_calls(cand, id, tool_calls) : ERR_NOMEM;
        }
        if (e != ERR_OK) {
            json_decref(tool_calls);
            break;
        }
        /* A candidate stopped by a filter may have no content at all: empty text, not null. */
        const char *finish = vx_finish(json_string_value(json_object_get(cand, "finishReason")));
        finish = vx_finish_calls(finish != NULL ? finish : "stop", json_array_size(tool_calls) > 0);
        const json_t *idx = json_object_get(cand, "index");
        json_int_t index = json_is_integer(idx) ? json_integer_value(idx) : (json_int_t)i;
        json_t *message = prov_answer_message(&text, tool_calls);
        if (message == NULL ||
            json_array_append_new(choices,
                                  json_pack("{s:I,s:o,s:n,s:s}", "index", index, "message", message,
                                            "logprobs", "finish_reason", finish)) != 0) {
            e = ERR_NOMEM;
        }
    }
    buf_done(&text);
    if (e != ERR_OK) {
        json_decref(choices);
        return e;
    }
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
    json_t *j = json_loadb(body, len, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return ERR_PROTO;
    }
    /* ret_json may be NULL (usage only): the translation is still how usage is read. */
    json_t *out = NULL;
    enum err e = op == PROVIDER_EMBEDDINGS ? provider_vertex_embed_answer(j, model, &out, ret_usage)
                                           : provider_vertex_answer(j, model, &out, ret_usage);
    json_decref(j);
    if (ret_json != NULL) {
        *ret_json = out;
    } else {
        json_decref(out);
    }
    return e;
}

/* ---- stream ------------------------------------------------------------------------------- */

/*
 * A chunk's functionCall parts: Gemini sends each call whole, so each opens
 * the next OpenAI tool call (id and name) and gives all its arguments at once.
 */
static enum err vx_stream_calls(struct provider_stream *st, const json_t *cand, struct buf *out)
{
    const json_t *parts = json_object_get(json_object_get(cand, "content"), "parts");
    size_t i;
    const json_t *p;
    json_array_foreach(parts, i, p)
    {
        const json_t *fc = json_object_get(p, "functionCall");
        if (fc == NULL) {
            continue;
        }
        if (!json_is_object(fc)) {
            return ERR_PROTO;
        }
        long long index = st->tool_calls;
        json_t *blk = vx_call_block(fc, st->id, st->tool_calls);
        if (blk == NULL) {
            return ERR_NOMEM;
        }
        enum err e = prov_stream_tool_start(st, blk, "id", index, out);
        json_decref(blk);
        const json_t *args = json_object_get(fc, "args");
        size_t n = 0;
        char *text = e == ERR_OK && args != NULL ? jsonw_dumps(args, &n) : NULL;
        if (e == ERR_OK && args != NULL && text == NULL) {
            e = ERR_NOMEM;
        }
        json_t *frag =
            e == ERR_OK ? (text != NULL ? json_stringn(text, n) : json_string("{}")) : NULL;
        free(text);
        if (e == ERR_OK) {
            e = frag != NULL ? prov_stream_tool_args(st, frag, index, out) : ERR_NOMEM;
        }
        json_decref(frag);
        prov_stream_tool_stop(st, index);
        if (e != ERR_OK) {
            return e;
        }
    }
    return ERR_OK;
}

/* One event's frames into out (see provider_vertex_stream_event). */
static enum err vx_stream_frames(struct provider_stream *st, const json_t *j, struct buf *out)
{
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
    if (e == ERR_OK && json_is_object(cand)) {
        e = vx_stream_calls(st, cand, out);
    }
    const char *finish = vx_finish_calls(
        vx_finish(json_string_value(json_object_get(cand, "finishReason"))), st->tool_calls > 0);
    if (finish == NULL && cand == NULL && vx_prompt_blocked(j)) {
        finish = "content_filter"; /* the prompt was blocked: no candidate will come */
    }
    if (e == ERR_OK && finish != NULL) {
        e = prov_stream_end(st, finish, out);
    }
    return e;
}

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
    /* The event's frames go to out whole or not at all: no half tool call on an error. */
    struct buf ev;
    buf_init(&ev, out->max);
    enum err e = vx_stream_frames(st, j, &ev);
    if (e == ERR_OK && ev.len > 0) {
        e = buf_append(out, ev.data, ev.len);
    }
    buf_done(&ev);
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
