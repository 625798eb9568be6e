/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The Responses API bridge (responses.h): a Responses request to a chat
 * request, a chat answer to a Responses object, and a chat stream to
 * Responses events, the way LiteLLM bridges it. Field names follow OpenAI's
 * API reference (https://platform.openai.com/docs/api-reference/responses).
 *
 * Deliberately not done: anything that needs state kept between calls
 * (previous_response_id, conversation, background, stored prompts, include,
 * item_reference), OpenAI's built-in tools (web search, file search, code
 * interpreter, computer use, MCP ...), files by id, reasoning summaries.
 * Those are refused with the field named, before anything is sent.
 */
#include "agent/responses.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/sse.h"
#include "common/jsonw.h"

/* ---- refusals ------------------------------------------------------------------------------- */

static enum err rs_bad(struct responses_bad *bad, const char *code, const char *msg,
                       const char *param_fmt, ...) __attribute__((format(printf, 4, 5)));

/* Fills bad: param from param_fmt (indexes only, never a value), the message "<param> <msg>". */
static enum err rs_bad(struct responses_bad *bad, const char *code, const char *msg,
                       const char *param_fmt, ...)
{
    va_list ap;
    va_start(ap, param_fmt);
    vsnprintf(bad->param, sizeof(bad->param), param_fmt, ap);
    va_end(ap);
    bad->code = code;
    snprintf(bad->msg, sizeof(bad->msg), "%s %s", bad->param, msg);
    return ERR_INVAL;
}

static bool rs_null(const json_t *v)
{
    return v == NULL || json_is_null(v);
}

static bool rs_one_of(const char *s, const char *const *set)
{
    for (size_t i = 0; s != NULL && set[i] != NULL; i++) {
        if (strcmp(s, set[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* Sets o[key] = v (taken); false, and v freed, when v is NULL or memory runs out. */
static bool rs_set(json_t *o, const char *key, json_t *v)
{
    return v != NULL && json_object_set_new(o, key, v) == 0;
}

/* rs_set when *ok still holds; v is taken either way. For objects built field by field. */
static void rs_put(json_t *o, const char *key, json_t *v, bool *ok)
{
    if (!*ok) {
        json_decref(v);
        return;
    }
    *ok = rs_set(o, key, v);
}

static bool rs_append(json_t *a, json_t *v)
{
    return v != NULL && json_array_append_new(a, v) == 0;
}

/* ---- request: input items ------------------------------------------------------------------- */

/* One content part of input message i to a chat part (new reference in *ret). */
static enum err rs_part(const json_t *p, size_t i, size_t k, bool user, struct responses_bad *bad,
                        json_t **ret)
{
    const char *type = json_string_value(json_object_get(p, "type"));
    if (!json_is_object(p) || type == NULL) {
        return rs_bad(bad, "invalid_type", "must be an object with a string type",
                      "input[%zu].content[%zu]", i, k);
    }
    static const char *const texts[] = {"input_text", "output_text", NULL};
    if (rs_one_of(type, texts) || strcmp(type, "refusal") == 0) {
        const json_t *t = json_object_get(p, strcmp(type, "refusal") == 0 ? "refusal" : "text");
        if (!json_is_string(t)) {
            return rs_bad(bad, "invalid_type", "must be a string", "input[%zu].content[%zu].%s", i,
                          k, strcmp(type, "refusal") == 0 ? "refusal" : "text");
        }
        *ret = json_pack("{s:s,s:O}", "type", "text", "text", t);
        return *ret != NULL ? ERR_OK : ERR_NOMEM;
    }
    if (strcmp(type, "input_image") == 0) {
        if (!user) {
            return rs_bad(bad, "invalid_value", "is only allowed in user messages",
                          "input[%zu].content[%zu].type", i, k);
        }
        if (!rs_null(json_object_get(p, "file_id"))) {
            return rs_bad(bad, "unsupported_parameter",
                          "is not supported by the agent (it keeps no files): use image_url",
                          "input[%zu].content[%zu].file_id", i, k);
        }
        const json_t *url = json_object_get(p, "image_url");
        if (!json_is_string(url) || json_string_length(url) == 0) {
            return rs_bad(bad, "invalid_type", "must be a URL or a data URL",
                          "input[%zu].content[%zu].image_url", i, k);
        }
        const json_t *detail = json_object_get(p, "detail");
        static const char *const details[] = {"auto", "low", "high", NULL};
        if (!rs_null(detail) && !rs_one_of(json_string_value(detail), details)) {
            return rs_bad(bad, "invalid_value", "must be auto, low or high",
                          "input[%zu].content[%zu].detail", i, k);
        }
        *ret = json_pack("{s:s,s:{s:O,s:O*}}", "type", "image_url", "image_url", "url", url,
                         "detail", rs_null(detail) ? NULL : detail);
        return *ret != NULL ? ERR_OK : ERR_NOMEM;
    }
    return rs_bad(bad, "unsupported_parameter",
                  "is not supported: input_text, input_image (by URL) and output_text only",
                  "input[%zu].content[%zu].type", i, k);
}

/* A message item (type "message" or none) to a chat message (new reference in *ret). */
static enum err rs_message(const json_t *item, size_t i, struct responses_bad *bad, json_t **ret)
{
    static const char *const roles[] = {"user", "assistant", "system", "developer", NULL};
    const char *role = json_string_value(json_object_get(item, "role"));
    if (!rs_one_of(role, roles)) {
        return rs_bad(bad, "invalid_value", "must be user, assistant, system or developer",
                      "input[%zu].role", i);
    }
    const json_t *content = json_object_get(item, "content");
    if (json_is_string(content)) {
        *ret = json_pack("{s:s,s:O}", "role", role, "content", content);
        return *ret != NULL ? ERR_OK : ERR_NOMEM;
    }
    if (!json_is_array(content)) {
        return rs_bad(bad, "invalid_type", "must be a string or an array of content parts",
                      "input[%zu].content", i);
    }
    if (json_array_size(content) > RESPONSES_MAX_PARTS) {
        return rs_bad(bad, "invalid_value", "has more than 1024 parts", "input[%zu].content", i);
    }
    json_t *parts = json_array();
    if (parts == NULL) {
        return ERR_NOMEM;
    }
    size_t k;
    const json_t *p;
    json_array_foreach(content, k, p)
    {
        json_t *cp = NULL;
        enum err e = rs_part(p, i, k, strcmp(role, "user") == 0, bad, &cp);
        if (e == ERR_OK && !rs_append(parts, cp)) {
            e = ERR_NOMEM;
        }
        if (e != ERR_OK) {
            json_decref(parts);
            return e;
        }
    }
    *ret = json_pack("{s:s,s:o}", "role", role, "content", parts);
    return *ret != NULL ? ERR_OK : ERR_NOMEM;
}

/* A function_call item: a tool call of the assistant message at the end of msgs (made if needed).
 */
static enum err rs_function_call(const json_t *item, size_t i, json_t *msgs, bool merge,
                                 struct responses_bad *bad)
{
    static const struct {
        const char *name;
        size_t max;
    } fields[] = {
        {"call_id", PROVIDER_MAX_TOOL_ID}, {"name", PROVIDER_MAX_TOOL_NAME}, {"arguments", 0}};
    for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++) {
        const json_t *v = json_object_get(item, fields[f].name);
        if (!json_is_string(v) || (fields[f].max > 0 && (json_string_length(v) == 0 ||
                                                         json_string_length(v) > fields[f].max))) {
            return rs_bad(bad, "invalid_type",
                          fields[f].max > 0 ? "must be a string of 1 to 256 bytes"
                                            : "must be a string",
                          "input[%zu].%s", i, fields[f].name);
        }
    }
    json_t *tc = json_pack("{s:O,s:s,s:{s:O,s:O}}", "id", json_object_get(item, "call_id"), "type",
                           "function", "function", "name", json_object_get(item, "name"),
                           "arguments", json_object_get(item, "arguments"));
    if (tc == NULL) {
        return ERR_NOMEM;
    }
    json_t *last = json_array_get(msgs, json_array_size(msgs) - 1);
    if (!merge || last == NULL) {
        last = json_pack("{s:s,s:n}", "role", "assistant", "content");
        if (!rs_append(msgs, last)) {
            json_decref(tc);
            return ERR_NOMEM;
        }
    }
    json_t *calls = json_object_get(last, "tool_calls");
    if (calls == NULL) {
        calls = json_array();
        if (!rs_set(last, "tool_calls", calls)) {
            json_decref(tc);
            return ERR_NOMEM;
        }
    }
    return rs_append(calls, tc) ? ERR_OK : ERR_NOMEM;
}

/* A function_call_output item to a tool message. */
static enum err rs_function_output(const json_t *item, size_t i, json_t *msgs,
                                   struct responses_bad *bad)
{
    const json_t *id = json_object_get(item, "call_id");
    if (!json_is_string(id) || json_string_length(id) == 0 ||
        json_string_length(id) > PROVIDER_MAX_TOOL_ID) {
        return rs_bad(bad, "invalid_type", "must be a string of 1 to 256 bytes",
                      "input[%zu].call_id", i);
    }
    const json_t *out = json_object_get(item, "output");
    json_t *content = NULL;
    if (json_is_string(out)) {
        content = json_incref((json_t *)out);
    } else if (json_is_array(out) && json_array_size(out) <= RESPONSES_MAX_PARTS) {
        /* Text parts only (images cannot go into a chat tool message). */
        content = json_array();
        size_t k;
        const json_t *p;
        json_array_foreach(out, k, p)
        {
            const char *type = json_string_value(json_object_get(p, "type"));
            const json_t *t = json_object_get(p, "text");
            if (type == NULL || strcmp(type, "input_text") != 0 || !json_is_string(t)) {
                json_decref(content);
                return rs_bad(bad, "unsupported_parameter", "must be an input_text part",
                              "input[%zu].output[%zu]", i, k);
            }
            if (!rs_append(content, json_pack("{s:s,s:O}", "type", "text", "text", t))) {
                json_decref(content);
                return ERR_NOMEM;
            }
        }
    } else {
        return rs_bad(bad, "invalid_type", "must be a string or an array of input_text parts",
                      "input[%zu].output", i);
    }
    if (content == NULL) {
        return ERR_NOMEM;
    }
    return rs_append(msgs, json_pack("{s:s,s:O,s:o}", "role", "tool", "tool_call_id", id, "content",
                                     content))
               ? ERR_OK
               : ERR_NOMEM;
}

/* input (a string, or an array of items) appended to msgs as chat messages. */
static enum err rs_input(const json_t *input, json_t *msgs, struct responses_bad *bad)
{
    if (json_is_string(input)) {
        return rs_append(msgs, json_pack("{s:s,s:O}", "role", "user", "content", input))
                   ? ERR_OK
                   : ERR_NOMEM;
    }
    if (!json_is_array(input) || json_array_size(input) == 0) {
        return rs_bad(bad, "invalid_type", "must be a string or a non-empty array of items",
                      "input");
    }
    if (json_array_size(input) > RESPONSES_MAX_ITEMS) {
        return rs_bad(bad, "invalid_value", "has more than 4096 items", "input");
    }
    /* A function_call right after an assistant message (or another call) joins it, as chat has it.
     */
    bool merge = false;
    size_t i;
    const json_t *item;
    json_array_foreach(input, i, item)
    {
        if (!json_is_object(item)) {
            return rs_bad(bad, "invalid_type", "must be an object", "input[%zu]", i);
        }
        const json_t *tv = json_object_get(item, "type");
        const char *type = rs_null(tv) ? "message" : json_string_value(tv);
        enum err e = ERR_OK;
        bool assistant = false;
        if (type == NULL) {
            return rs_bad(bad, "invalid_type", "must be a string", "input[%zu].type", i);
        } else if (strcmp(type, "message") == 0) {
            json_t *m = NULL;
            e = rs_message(item, i, bad, &m);
            if (e == ERR_OK && !rs_append(msgs, m)) {
                e = ERR_NOMEM;
            }
            assistant = e == ERR_OK &&
                        strcmp(json_string_value(json_object_get(m, "role")), "assistant") == 0;
        } else if (strcmp(type, "function_call") == 0) {
            e = rs_function_call(item, i, msgs, merge, bad);
            assistant = true;
        } else if (strcmp(type, "function_call_output") == 0) {
            e = rs_function_output(item, i, msgs, bad);
        } else if (strcmp(type, "reasoning") == 0) {
            /*
             * A reasoning item of an earlier answer, replayed with the
             * conversation (the Agents SDK does): chat has no place for it,
             * and the model's reasoning is not part of the prompt. Left out.
             */
            assistant = merge;
        } else if (strcmp(type, "item_reference") == 0) {
            return rs_bad(bad, "unsupported_parameter",
                          "is not supported: the agent stores no items to refer to",
                          "input[%zu].type", i);
        } else {
            return rs_bad(bad, "unsupported_parameter",
                          "is not supported: message, function_call, function_call_output and "
                          "reasoning items only",
                          "input[%zu].type", i);
        }
        if (e != ERR_OK) {
            return e;
        }
        merge = assistant;
    }
    if (json_array_size(msgs) == 0) {
        return rs_bad(bad, "invalid_value", "has no message, only reasoning items", "input");
    }
    return ERR_OK;
}

/* ---- request: the other fields -------------------------------------------------------------- */

/* tools: function tools in chat's nested shape (new reference). */
static enum err rs_tools(const json_t *tools, struct responses_bad *bad, json_t **ret)
{
    if (!json_is_array(tools)) {
        return rs_bad(bad, "invalid_type", "must be an array", "tools");
    }
    if (json_array_size(tools) > RESPONSES_MAX_TOOLS) {
        return rs_bad(bad, "invalid_value", "has more than 512 tools", "tools");
    }
    json_t *out = json_array();
    if (out == NULL) {
        return ERR_NOMEM;
    }
    size_t i;
    const json_t *t;
    enum err e = ERR_OK;
    json_array_foreach(tools, i, t)
    {
        const char *type = json_string_value(json_object_get(t, "type"));
        const json_t *name = json_object_get(t, "name");
        const json_t *desc = json_object_get(t, "description");
        const json_t *params = json_object_get(t, "parameters");
        const json_t *strict = json_object_get(t, "strict");
        if (!json_is_object(t) || type == NULL) {
            e = rs_bad(bad, "invalid_type", "must be an object with a string type", "tools[%zu]",
                       i);
        } else if (strcmp(type, "function") != 0) {
            /* The built-in tools run at OpenAI, on its stored state: not over chat. */
            e = rs_bad(bad, "unsupported_parameter",
                       "holds a built-in tool (web_search, file_search, code_interpreter, mcp, "
                       "...), which the agent does not support: function tools only",
                       "tools");
        } else if (!json_is_string(name) || json_string_length(name) == 0 ||
                   json_string_length(name) > PROVIDER_MAX_TOOL_NAME) {
            e = rs_bad(bad, "invalid_type", "must be a string of 1 to 256 bytes", "tools[%zu].name",
                       i);
        } else if (!rs_null(desc) && !json_is_string(desc)) {
            e = rs_bad(bad, "invalid_type", "must be a string", "tools[%zu].description", i);
        } else if (!rs_null(params) && !json_is_object(params)) {
            e = rs_bad(bad, "invalid_type", "must be an object", "tools[%zu].parameters", i);
        } else if (!rs_null(strict) && !json_is_boolean(strict)) {
            e = rs_bad(bad, "invalid_type", "must be a boolean", "tools[%zu].strict", i);
        } else if (!rs_append(out, json_pack("{s:s,s:{s:O,s:O*,s:O*,s:O*}}", "type", "function",
                                             "function", "name", name, "description",
                                             rs_null(desc) ? NULL : desc, "parameters",
                                             rs_null(params) ? NULL : params, "strict",
                                             rs_null(strict) ? NULL : strict))) {
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

static enum err rs_tool_choice(const json_t *tc, struct responses_bad *bad, json_t **ret)
{
    static const char *const modes[] = {"auto", "none", "required", NULL};
    if (json_is_string(tc)) {
        if (!rs_one_of(json_string_value(tc), modes)) {
            return rs_bad(bad, "invalid_value", "must be auto, none, required or a function",
                          "tool_choice");
        }
        *ret = json_incref((json_t *)tc);
        return ERR_OK;
    }
    const char *type = json_string_value(json_object_get(tc, "type"));
    if (type == NULL) {
        return rs_bad(bad, "invalid_type", "must be a string or an object with a type",
                      "tool_choice");
    }
    if (strcmp(type, "function") != 0) {
        return rs_bad(bad, "unsupported_parameter",
                      "names a built-in tool or allowed_tools, which the agent does not support",
                      "tool_choice");
    }
    const json_t *name = json_object_get(tc, "name");
    if (!json_is_string(name) || json_string_length(name) == 0 ||
        json_string_length(name) > PROVIDER_MAX_TOOL_NAME) {
        return rs_bad(bad, "invalid_type", "must be a string of 1 to 256 bytes",
                      "tool_choice.name");
    }
    *ret = json_pack("{s:s,s:{s:O}}", "type", "function", "function", "name", name);
    return *ret != NULL ? ERR_OK : ERR_NOMEM;
}

/* text: format to response_format (NULL for plain text), verbosity to chat's verbosity. */
static enum err rs_text(const json_t *text, json_t *chat, struct responses_bad *bad)
{
    if (!json_is_object(text)) {
        return rs_bad(bad, "invalid_type", "must be an object", "text");
    }
    const json_t *verb = json_object_get(text, "verbosity");
    static const char *const verbs[] = {"low", "medium", "high", NULL};
    if (!rs_null(verb) && !rs_one_of(json_string_value(verb), verbs)) {
        return rs_bad(bad, "invalid_value", "must be low, medium or high", "text.verbosity");
    }
    if (!rs_null(verb) && !rs_set(chat, "verbosity", json_incref((json_t *)verb))) {
        return ERR_NOMEM;
    }
    const json_t *fmt = json_object_get(text, "format");
    if (rs_null(fmt)) {
        return ERR_OK;
    }
    const char *type = json_string_value(json_object_get(fmt, "type"));
    if (type == NULL) {
        return rs_bad(bad, "invalid_type", "must be an object with a string type", "text.format");
    }
    if (strcmp(type, "text") == 0) {
        return ERR_OK;
    }
    if (strcmp(type, "json_object") == 0) {
        return rs_set(chat, "response_format", json_pack("{s:s}", "type", "json_object"))
                   ? ERR_OK
                   : ERR_NOMEM;
    }
    if (strcmp(type, "json_schema") != 0) {
        return rs_bad(bad, "invalid_value", "must be text, json_object or json_schema",
                      "text.format.type");
    }
    const json_t *name = json_object_get(fmt, "name");
    const json_t *schema = json_object_get(fmt, "schema");
    const json_t *strict = json_object_get(fmt, "strict");
    const json_t *desc = json_object_get(fmt, "description");
    if (!json_is_string(name) || json_string_length(name) == 0 ||
        json_string_length(name) > RESPONSES_MAX_SCHEMA_NAME) {
        return rs_bad(bad, "invalid_type", "must be a string of 1 to 64 bytes", "text.format.name");
    }
    if (!json_is_object(schema)) {
        return rs_bad(bad, "invalid_type", "must be an object", "text.format.schema");
    }
    if (!rs_null(strict) && !json_is_boolean(strict)) {
        return rs_bad(bad, "invalid_type", "must be a boolean", "text.format.strict");
    }
    if (!rs_null(desc) && !json_is_string(desc)) {
        return rs_bad(bad, "invalid_type", "must be a string", "text.format.description");
    }
    return rs_set(chat, "response_format",
                  json_pack("{s:s,s:{s:O,s:O,s:O*,s:O*}}", "type", "json_schema", "json_schema",
                            "name", name, "schema", schema, "strict",
                            rs_null(strict) ? NULL : strict, "description",
                            rs_null(desc) ? NULL : desc))
               ? ERR_OK
               : ERR_NOMEM;
}

static enum err rs_metadata(const json_t *md, struct responses_bad *bad)
{
    if (!json_is_object(md) || json_object_size(md) > RESPONSES_MAX_METADATA) {
        return rs_bad(bad, "invalid_type", "must be an object of at most 16 pairs", "metadata");
    }
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)md, k, v)
    {
        if (strlen(k) > RESPONSES_MAX_METADATA_KEY || !json_is_string(v) ||
            json_string_length(v) > RESPONSES_MAX_METADATA_VALUE) {
            return rs_bad(bad, "invalid_value",
                          "keys must be at most 64 bytes, values strings of at most 512",
                          "metadata");
        }
    }
    return ERR_OK;
}

static enum err rs_reasoning(const json_t *r, json_t *chat, struct responses_bad *bad)
{
    if (!json_is_object(r)) {
        return rs_bad(bad, "invalid_type", "must be an object", "reasoning");
    }
    const json_t *effort = json_object_get(r, "effort");
    static const char *const efforts[] = {"none", "minimal", "low", "medium",
                                          "high", "xhigh",   NULL};
    if (rs_null(effort)) {
        return ERR_OK;
    }
    if (!rs_one_of(json_string_value(effort), efforts)) {
        return rs_bad(bad, "invalid_value", "must be none, minimal, low, medium, high or xhigh",
                      "reasoning.effort");
    }
    return rs_set(chat, "reasoning_effort", json_incref((json_t *)effort)) ? ERR_OK : ERR_NOMEM;
}

/* How the bridge treats a top-level field of a Responses request. */
enum rs_kind {
    RS_MAPPED,    /* translated by responses_request itself */
    RS_STATEFUL,  /* refused when set: it needs state the agent does not keep */
    RS_REFUSED,   /* refused when set: no chat equivalent the agent could honour */
    RS_CHAT_ONLY, /* a chat field the bridge sets itself: refused, the Responses field named */
};

static const struct {
    const char *name;
    enum rs_kind kind;
    const char *instead; /* RS_CHAT_ONLY: the Responses field to use */
} rs_fields[] = {
    {"model", RS_MAPPED, NULL},
    {"input", RS_MAPPED, NULL},
    {"instructions", RS_MAPPED, NULL},
    {"tools", RS_MAPPED, NULL},
    {"tool_choice", RS_MAPPED, NULL},
    {"parallel_tool_calls", RS_MAPPED, NULL},
    {"temperature", RS_MAPPED, NULL},
    {"top_p", RS_MAPPED, NULL},
    {"user", RS_MAPPED, NULL},
    {"metadata", RS_MAPPED, NULL},
    {"max_output_tokens", RS_MAPPED, NULL},
    {"text", RS_MAPPED, NULL},
    {"reasoning", RS_MAPPED, NULL},
    {"stream", RS_MAPPED, NULL},
    {"stream_options", RS_MAPPED, NULL},
    {"store", RS_MAPPED, NULL},
    {"truncation", RS_MAPPED, NULL},
    {"background", RS_MAPPED, NULL},
    {"include", RS_MAPPED, NULL},
    {"previous_response_id", RS_STATEFUL, NULL},
    {"conversation", RS_STATEFUL, NULL},
    {"prompt", RS_STATEFUL, NULL},
    {"max_tool_calls", RS_REFUSED, NULL},
    {"top_logprobs", RS_REFUSED, NULL},
    {"messages", RS_CHAT_ONLY, "input"},
    {"max_tokens", RS_CHAT_ONLY, "max_output_tokens"},
    {"max_completion_tokens", RS_CHAT_ONLY, "max_output_tokens"},
    {"response_format", RS_CHAT_ONLY, "text.format"},
    {"reasoning_effort", RS_CHAT_ONLY, "reasoning.effort"},
    {"verbosity", RS_CHAT_ONLY, "text.verbosity"},
    {"n", RS_CHAT_ONLY, "one response per request"},
    {"functions", RS_CHAT_ONLY, "tools"},
    {"function_call", RS_CHAT_ONLY, "tool_choice"},
    {"logprobs", RS_CHAT_ONLY, "nothing: not supported"},
    {"modalities", RS_CHAT_ONLY, "nothing: text only"},
    {"audio", RS_CHAT_ONLY, "nothing: text only"},
};

/* The table's entry for a field; NULL for a field the bridge does not know. */
static int rs_field(const char *name)
{
    for (size_t i = 0; i < sizeof(rs_fields) / sizeof(rs_fields[0]); i++) {
        if (strcmp(rs_fields[i].name, name) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* Refusals by field kind, and the fields passed on as they are. */
static enum err rs_fields_check(const json_t *rreq, json_t *chat, struct responses_bad *bad)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)rreq, k, v)
    {
        int f = rs_field(k);
        if (f < 0) {
            /* Unknown here: passed on as the chat path passes on what it does not know. */
            if (json_object_set(chat, k, v) != 0) {
                return ERR_NOMEM;
            }
            continue;
        }
        switch (rs_fields[f].kind) {
        case RS_STATEFUL:
            if (!rs_null(v)) {
                return rs_bad(bad, "unsupported_parameter",
                              "is not supported: the agent keeps no state between calls (send "
                              "the whole conversation in input)",
                              "%s", k);
            }
            break;
        case RS_REFUSED:
            if (!rs_null(v)) {
                return rs_bad(bad, "unsupported_parameter",
                              "is not supported by the agent's Responses bridge", "%s", k);
            }
            break;
        case RS_CHAT_ONLY: {
            char msg[96];
            snprintf(msg, sizeof(msg), "is a Chat Completions field; use %s", rs_fields[f].instead);
            return rs_bad(bad, "unsupported_parameter", msg, "%s", k);
        }
        case RS_MAPPED:
        default:
            break;
        }
    }
    return ERR_OK;
}

/* Scalar fields: checked, and passed on under their chat names. */
static enum err rs_scalars(const json_t *rreq, json_t *chat, struct responses_bad *bad)
{
    const json_t *v = json_object_get(rreq, "model");
    if (v != NULL && !json_is_string(v)) {
        return rs_bad(bad, "invalid_type", "must be a string", "model");
    }
    if (v != NULL && !rs_set(chat, "model", json_incref((json_t *)v))) {
        return ERR_NOMEM;
    }
    static const struct {
        const char *name;
        double max;
    } nums[] = {{"temperature", 2.0}, {"top_p", 1.0}};
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
        v = json_object_get(rreq, nums[i].name);
        if (rs_null(v)) {
            continue;
        }
        if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > nums[i].max) {
            return rs_bad(bad, "invalid_value",
                          nums[i].max > 1.0 ? "must be a number from 0 to 2"
                                            : "must be a number from 0 to 1",
                          "%s", nums[i].name);
        }
        if (!rs_set(chat, nums[i].name, json_incref((json_t *)v))) {
            return ERR_NOMEM;
        }
    }
    v = json_object_get(rreq, "max_output_tokens");
    if (!rs_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 ||
            json_integer_value(v) > PROVIDER_MAX_TOKENS) {
            return rs_bad(bad, "invalid_value", "must be an integer from 1 to 100000000",
                          "max_output_tokens");
        }
        if (!rs_set(chat, "max_completion_tokens", json_incref((json_t *)v))) {
            return ERR_NOMEM;
        }
    }
    static const char *const bools[] = {"stream", "store", "background", "parallel_tool_calls"};
    for (size_t i = 0; i < sizeof(bools) / sizeof(bools[0]); i++) {
        v = json_object_get(rreq, bools[i]);
        if (!rs_null(v) && !json_is_boolean(v)) {
            return rs_bad(bad, "invalid_type", "must be a boolean", "%s", bools[i]);
        }
    }
    if (json_is_true(json_object_get(rreq, "background"))) {
        return rs_bad(bad, "unsupported_parameter",
                      "is not supported: the agent keeps no responses to poll", "background");
    }
    if (json_is_true(json_object_get(rreq, "stream")) &&
        !rs_set(chat, "stream", json_incref(json_true()))) {
        return ERR_NOMEM;
    }
    v = json_object_get(rreq, "user");
    if (!rs_null(v) && !json_is_string(v)) {
        return rs_bad(bad, "invalid_type", "must be a string", "user");
    }
    if (!rs_null(v) && !rs_set(chat, "user", json_incref((json_t *)v))) {
        return ERR_NOMEM;
    }
    v = json_object_get(rreq, "include");
    if (!rs_null(v) && !json_is_array(v)) {
        return rs_bad(bad, "invalid_type", "must be an array", "include");
    }
    if (json_array_size(v) > 0) {
        return rs_bad(bad, "unsupported_parameter",
                      "is not supported: the agent adds no extra output (encrypted reasoning, "
                      "tool results, logprobs)",
                      "include");
    }
    v = json_object_get(rreq, "truncation");
    if (!rs_null(v) && !json_is_string(v)) {
        return rs_bad(bad, "invalid_type", "must be a string", "truncation");
    }
    if (!rs_null(v) && strcmp(json_string_value(v), "disabled") != 0) {
        return rs_bad(bad, "unsupported_parameter",
                      "is not supported except \"disabled\": the agent does not cut conversations",
                      "truncation");
    }
    v = json_object_get(rreq, "stream_options");
    if (!rs_null(v) && !json_is_object(v)) {
        return rs_bad(bad, "invalid_type", "must be an object", "stream_options");
    }
    return ERR_OK;
}

/* The fields an answer echoes, with OpenAI's defaults for the ones not given. */
static json_t *rs_echo(const json_t *rreq)
{
    const json_t *effort = json_object_get(json_object_get(rreq, "reasoning"), "effort");
    const json_t *text = json_object_get(rreq, "text");
    const json_t *fmt = json_object_get(text, "format");
    const json_t *verb = json_object_get(text, "verbosity");
    json_t *echo = json_object();
    bool ok = echo != NULL;
    static const char *const copies[] = {"instructions", "max_output_tokens", "temperature",
                                         "top_p", "user"};
    for (size_t i = 0; i < sizeof(copies) / sizeof(copies[0]); i++) {
        const json_t *v = json_object_get(rreq, copies[i]);
        rs_put(echo, copies[i], v != NULL ? json_incref((json_t *)v) : json_null(), &ok);
    }
    const json_t *v = json_object_get(rreq, "model");
    rs_put(echo, "model", v != NULL ? json_incref((json_t *)v) : json_string("auto"), &ok);
    v = json_object_get(rreq, "metadata");
    rs_put(echo, "metadata", !rs_null(v) ? json_incref((json_t *)v) : json_object(), &ok);
    v = json_object_get(rreq, "parallel_tool_calls");
    rs_put(echo, "parallel_tool_calls", json_is_boolean(v) ? json_incref((json_t *)v) : json_true(),
           &ok);
    v = json_object_get(rreq, "tool_choice");
    rs_put(echo, "tool_choice", !rs_null(v) ? json_incref((json_t *)v) : json_string("auto"), &ok);
    v = json_object_get(rreq, "tools");
    rs_put(echo, "tools", !rs_null(v) ? json_incref((json_t *)v) : json_array(), &ok);
    rs_put(
        echo, "text",
        json_pack("{s:o,s:O*}", "format",
                  !rs_null(fmt) ? json_incref((json_t *)fmt) : json_pack("{s:s}", "type", "text"),
                  "verbosity", rs_null(verb) ? NULL : verb),
        &ok);
    rs_put(echo, "reasoning", json_pack("{s:O?,s:n}", "effort", effort, "summary"), &ok);
    if (!ok) {
        json_decref(echo);
        return NULL;
    }
    return echo;
}

enum err responses_request(const json_t *rreq, struct responses_bad *bad, json_t **ret_chat,
                           json_t **ret_echo)
{
    bad->param[0] = '\0';
    bad->msg[0] = '\0';
    bad->code = NULL;
    if (!json_is_object(rreq)) {
        return rs_bad(bad, "invalid_type", "must be a JSON object", "body");
    }
    json_t *chat = json_object();
    json_t *msgs = json_array();
    if (chat == NULL || msgs == NULL) {
        json_decref(chat);
        json_decref(msgs);
        return ERR_NOMEM;
    }
    enum err e = rs_fields_check(rreq, chat, bad);
    if (e == ERR_OK) {
        e = rs_scalars(rreq, chat, bad);
    }
    const json_t *v = json_object_get(rreq, "instructions");
    if (e == ERR_OK && !rs_null(v) && !json_is_string(v)) {
        e = rs_bad(bad, "invalid_type", "must be a string", "instructions");
    }
    if (e == ERR_OK && json_is_string(v) && json_string_length(v) > 0 &&
        !rs_append(msgs, json_pack("{s:s,s:O}", "role", "system", "content", v))) {
        e = ERR_NOMEM;
    }
    v = json_object_get(rreq, "input");
    if (e == ERR_OK && v == NULL) {
        e = rs_bad(bad, "missing_required_parameter", "is required", "input");
    }
    if (e == ERR_OK) {
        e = rs_input(v, msgs, bad);
    }
    if (e == ERR_OK && !rs_set(chat, "messages", json_incref(msgs))) {
        e = ERR_NOMEM;
    }
    v = json_object_get(rreq, "tools");
    bool has_tools = false;
    if (e == ERR_OK && !rs_null(v)) {
        json_t *tools = NULL;
        e = rs_tools(v, bad, &tools);
        has_tools = e == ERR_OK && json_array_size(tools) > 0;
        if (has_tools && !rs_set(chat, "tools", tools)) {
            e = ERR_NOMEM;
        } else if (!has_tools) {
            json_decref(tools);
        }
    }
    v = json_object_get(rreq, "tool_choice");
    if (e == ERR_OK && !rs_null(v)) {
        json_t *tc = NULL;
        e = rs_tool_choice(v, bad, &tc);
        /* Without tools there is nothing to choose (chat refuses tool_choice alone). */
        if (e == ERR_OK && has_tools && !rs_set(chat, "tool_choice", tc)) {
            e = ERR_NOMEM;
        } else if (e == ERR_OK && !has_tools) {
            json_decref(tc);
        }
    }
    v = json_object_get(rreq, "parallel_tool_calls");
    if (e == ERR_OK && has_tools && json_is_boolean(v) &&
        !rs_set(chat, "parallel_tool_calls", json_incref((json_t *)v))) {
        e = ERR_NOMEM;
    }
    v = json_object_get(rreq, "text");
    if (e == ERR_OK && !rs_null(v)) {
        e = rs_text(v, chat, bad);
    }
    v = json_object_get(rreq, "reasoning");
    if (e == ERR_OK && !rs_null(v)) {
        e = rs_reasoning(v, chat, bad);
    }
    v = json_object_get(rreq, "metadata");
    if (e == ERR_OK && !rs_null(v)) {
        e = rs_metadata(v, bad);
    }
    json_decref(msgs);
    json_t *echo = e == ERR_OK ? rs_echo(rreq) : NULL;
    if (e == ERR_OK && echo == NULL) {
        e = ERR_NOMEM;
    }
    if (e != ERR_OK) {
        json_decref(chat);
        return e;
    }
    *ret_chat = chat;
    *ret_echo = echo;
    return ERR_OK;
}

/* ---- the answer ----------------------------------------------------------------------------- */

/* The item id base: the response id without "resp_". */
static const char *rs_base(const char *id)
{
    return strncmp(id, "resp_", 5) == 0 ? id + 5 : id;
}

static json_t *rs_text_part(const char *text, size_t len)
{
    return json_pack("{s:s,s:s%,s:[],s:[]}", "type", "output_text", "text", text, len,
                     "annotations", "logprobs");
}

static json_t *rs_message_item(const char *id, const char *status, json_t *content)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:o}", "id", id, "type", "message", "status", status, "role",
                     "assistant", "content", content);
}

static json_t *rs_call_item(const char *id, const char *status, const char *call_id,
                            const char *name, const char *args, size_t len)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s%}", "id", id, "type", "function_call", "status",
                     status, "call_id", call_id, "name", name, "arguments", args, len);
}

/* usage in the Responses shape. */
static json_t *rs_usage(const struct provider_usage *u, long long reasoning)
{
    return json_pack("{s:I,s:{s:I},s:I,s:{s:I},s:I}", "input_tokens", (json_int_t)u->prompt_tokens,
                     "input_tokens_details", "cached_tokens", (json_int_t)u->cached_tokens,
                     "output_tokens", (json_int_t)u->completion_tokens, "output_tokens_details",
                     "reasoning_tokens", (json_int_t)reasoning, "total_tokens",
                     (json_int_t)(u->prompt_tokens + u->completion_tokens));
}

/* The status and incomplete_details reason of a chat finish_reason (NULL reason: completed). */
static const char *rs_incomplete_reason(const char *finish)
{
    if (finish == NULL) {
        return NULL;
    }
    if (strcmp(finish, "length") == 0) {
        return "max_output_tokens";
    }
    if (strcmp(finish, "content_filter") == 0) {
        return "content_filter";
    }
    return NULL;
}

/*
 * The Response object: status "completed", "incomplete" (with reason),
 * "in_progress" or "failed"; output, usage and error taken (json null for
 * none: NULL is a failed allocation, and so is the whole object).
 */
static json_t *rs_object(const json_t *echo, const char *id, long long created_at,
                         const char *model, const char *status, const char *reason, json_t *output,
                         json_t *usage, json_t *error)
{
    json_t *o = json_pack("{s:s,s:s,s:I,s:s,s:b}", "id", id, "object", "response", "created_at",
                          (json_int_t)created_at, "status", status, "background", 0);
    bool ok = o != NULL;
    rs_put(o, "error", error, &ok);
    rs_put(o, "incomplete_details",
           reason != NULL ? json_pack("{s:s}", "reason", reason) : json_null(), &ok);
    static const char *const before[] = {"instructions", "max_output_tokens"};
    for (size_t i = 0; i < sizeof(before) / sizeof(before[0]); i++) {
        rs_put(o, before[i], json_incref(json_object_get(echo, before[i])), &ok);
    }
    rs_put(o, "max_tool_calls", json_null(), &ok);
    rs_put(o, "model", json_string(model != NULL ? model : ""), &ok);
    rs_put(o, "output", output, &ok);
    rs_put(o, "previous_response_id", json_null(), &ok);
    static const char *const after[] = {
        "parallel_tool_calls", "reasoning", "metadata", "temperature", "text",
        "tool_choice",         "tools",     "top_p",    "user"};
    for (size_t i = 0; i < sizeof(after) / sizeof(after[0]); i++) {
        rs_put(o, after[i], json_incref(json_object_get(echo, after[i])), &ok);
    }
    rs_put(o, "store", json_false(), &ok);
    rs_put(o, "truncation", json_string("disabled"), &ok);
    rs_put(o, "usage", usage, &ok);
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* A chat answer's message content as one text (string content, or its text parts joined). */
static enum err rs_answer_text(const json_t *content, struct buf *text)
{
    if (json_is_string(content)) {
        return buf_append(text, json_string_value(content), json_string_length(content));
    }
    size_t i;
    const json_t *p;
    json_array_foreach(content, i, p)
    {
        const json_t *t = json_object_get(p, "text");
        if (json_is_string(t)) {
            enum err e = buf_append(text, json_string_value(t), json_string_length(t));
            if (e != ERR_OK) {
                return e;
            }
        }
    }
    return ERR_OK;
}

/* The output items of a chat answer's message (new array in *ret). */
static enum err rs_answer_output(const json_t *msg, const char *base, const char *status,
                                 json_t **ret)
{
    const json_t *content = json_object_get(msg, "content");
    const json_t *refusal = json_object_get(msg, "refusal");
    const json_t *calls = json_object_get(msg, "tool_calls");
    if (json_array_size(calls) > PROVIDER_MAX_TOOL_CALLS) {
        return ERR_PROTO;
    }
    json_t *out = json_array();
    if (out == NULL) {
        return ERR_NOMEM;
    }
    char id[RESPONSES_MAX_ID + 32];
    enum err e = ERR_OK;
    struct buf text;
    buf_init(&text, SIZE_MAX / 2);
    e = rs_answer_text(content, &text);
    bool has_text = text.len > 0 || json_is_string(content);
    if (e == ERR_OK && (has_text || json_is_string(refusal) || json_array_size(calls) == 0)) {
        json_t *parts = json_array();
        if (parts != NULL && (has_text || !json_is_string(refusal))) {
            if (!rs_append(parts, rs_text_part(text.data != NULL ? text.data : "", text.len))) {
                json_decref(parts);
                parts = NULL;
            }
        }
        if (parts != NULL && json_is_string(refusal) &&
            !rs_append(parts, json_pack("{s:s,s:O}", "type", "refusal", "refusal", refusal))) {
            json_decref(parts);
            parts = NULL;
        }
        snprintf(id, sizeof(id), "msg_%s", base);
        if (parts == NULL || !rs_append(out, rs_message_item(id, status, parts))) {
            e = ERR_NOMEM;
        }
    }
    buf_done(&text);
    size_t i;
    const json_t *tc;
    json_array_foreach(calls, i, tc)
    {
        if (e != ERR_OK) {
            break;
        }
        const json_t *fn = json_object_get(tc, "function");
        const char *call_id = json_string_value(json_object_get(tc, "id"));
        const char *name = json_string_value(json_object_get(fn, "name"));
        const json_t *args = json_object_get(fn, "arguments");
        if (call_id == NULL || name == NULL || !(args == NULL || json_is_string(args))) {
            e = ERR_PROTO;
            break;
        }
        snprintf(id, sizeof(id), "fc_%s_%zu", base, i);
        if (!rs_append(out, rs_call_item(id, "completed", call_id, name,
                                         args != NULL ? json_string_value(args) : "",
                                         args != NULL ? json_string_length(args) : 0))) {
            e = ERR_NOMEM;
        }
    }
    if (e != ERR_OK) {
        json_decref(out);
        return e;
    }
    *ret = out;
    return ERR_OK;
}

enum err responses_answer(const json_t *echo, const json_t *chat, const struct provider_usage *u,
                          const char *id, long long created_at, const char *model, json_t **ret)
{
    const json_t *choice = json_array_get(json_object_get(chat, "choices"), 0);
    const json_t *msg = json_object_get(choice, "message");
    if (!json_is_object(msg)) {
        return ERR_PROTO;
    }
    const char *reason =
        rs_incomplete_reason(json_string_value(json_object_get(choice, "finish_reason")));
    json_t *output = NULL;
    enum err e =
        rs_answer_output(msg, rs_base(id), reason != NULL ? "incomplete" : "completed", &output);
    if (e != ERR_OK) {
        return e;
    }
    const json_t *rt = json_object_get(
        json_object_get(json_object_get(chat, "usage"), "completion_tokens_details"),
        "reasoning_tokens");
    long long reasoning = json_is_integer(rt) && json_integer_value(rt) > 0 &&
                                  json_integer_value(rt) <= u->completion_tokens
                              ? (long long)json_integer_value(rt)
                              : 0;
    const char *m = json_string_value(json_object_get(chat, "model"));
    json_t *o = rs_object(echo, id, created_at, m != NULL ? m : model,
                          reason != NULL ? "incomplete" : "completed", reason, output,
                          rs_usage(u, reasoning), json_null());
    if (o == NULL) {
        return ERR_NOMEM;
    }
    *ret = o;
    return ERR_OK;
}

/* ---- the stream ----------------------------------------------------------------------------- */

struct rs_call {
    long long index; /* the chat tool call's index */
    size_t output_index;
    char call_id[PROVIDER_MAX_TOOL_ID + 1];
    char name[PROVIDER_MAX_TOOL_NAME + 1];
    struct buf args;
};

struct responses_stream {
    json_t *echo;
    char id[RESPONSES_MAX_ID + 1];
    char model[PROVIDER_MAX_TOOL_NAME + 4];
    long long created_at;
    size_t cap, held; /* held: text and arguments bytes together, at most cap */
    struct sse sse;
    long long seq;
    bool started;
    bool broken; /* a feed failed: nothing more is taken */
    enum err err;
    struct buf *out; /* during a feed */
    bool has_msg;
    size_t msg_index;
    /*
     * The message's content parts, in the order they began: its text
     * (output_text) and its refusal, each at its content_index, -1 until it
     * begins.
     */
    struct buf text, refusal;
    int text_ci, refusal_ci, n_parts;
    struct rs_call *calls;
    size_t n_calls, alloc_calls;
    size_t n_items;
    char finish[32];
    long long reasoning;
};

/* Appends "event: <type>\ndata: <json>\n\n" (ev taken) and counts the sequence number. */
static enum err rs_emit(struct responses_stream *s, struct buf *out, const char *type, json_t *ev)
{
    if (ev == NULL) {
        return ERR_NOMEM;
    }
    size_t len = 0;
    char *d = jsonw_dumps(ev, &len);
    json_decref(ev);
    if (d == NULL) {
        return ERR_NOMEM;
    }
    enum err e = buf_printf(out, "event: %s\ndata: ", type);
    if (e == ERR_OK) {
        e = buf_append(out, d, len);
    }
    if (e == ERR_OK) {
        e = buf_append(out, "\n\n", 2);
    }
    free(d);
    if (e == ERR_OK) {
        s->seq++;
    }
    return e;
}

/* An event of the shape {type, sequence_number, response}: created, in_progress, the end. */
static enum err rs_emit_response(struct responses_stream *s, struct buf *out, const char *type,
                                 json_t *response)
{
    if (response == NULL) {
        return ERR_NOMEM;
    }
    return rs_emit(s, out, type,
                   json_pack("{s:s,s:I,s:o}", "type", type, "sequence_number", (json_int_t)s->seq,
                             "response", response));
}

static const char *rs_model(const struct responses_stream *s)
{
    return s->model[0] != '\0' ? s->model : json_string_value(json_object_get(s->echo, "model"));
}

static enum err rs_start(struct responses_stream *s, struct buf *out)
{
    if (s->started) {
        return ERR_OK;
    }
    s->started = true;
    static const char *const types[] = {"response.created", "response.in_progress"};
    enum err e = ERR_OK;
    for (size_t i = 0; e == ERR_OK && i < 2; i++) {
        e = rs_emit_response(s, out, types[i],
                             rs_object(s->echo, s->id, s->created_at, rs_model(s), "in_progress",
                                       NULL, json_array(), json_null(), json_null()));
    }
    return e;
}

/* Takes n more bytes of text or arguments, within cap. */
static enum err rs_hold(struct responses_stream *s, size_t n)
{
    if (n > s->cap - s->held) {
        return ERR_TOOBIG;
    }
    s->held += n;
    return ERR_OK;
}

/* The message item, and its part (text or refusal) at *ci, begun as needed. */
static enum err rs_part_begin(struct responses_stream *s, const char *id, bool refusal, int *ci,
                              struct buf *out)
{
    enum err e = ERR_OK;
    if (!s->has_msg) {
        s->has_msg = true;
        s->msg_index = s->n_items++;
        e = rs_emit(s, out, "response.output_item.added",
                    json_pack("{s:s,s:I,s:I,s:o}", "type", "response.output_item.added",
                              "sequence_number", (json_int_t)s->seq, "output_index",
                              (json_int_t)s->msg_index, "item",
                              rs_message_item(id, "in_progress", json_array())));
    }
    if (e == ERR_OK && *ci < 0) {
        *ci = s->n_parts++;
        e = rs_emit(s, out, "response.content_part.added",
                    json_pack("{s:s,s:I,s:s,s:I,s:i,s:o}", "type", "response.content_part.added",
                              "sequence_number", (json_int_t)s->seq, "item_id", id, "output_index",
                              (json_int_t)s->msg_index, "content_index", *ci, "part",
                              refusal ? json_pack("{s:s,s:s}", "type", "refusal", "refusal", "")
                                      : rs_text_part("", 0)));
    }
    return e;
}

/* A chunk's delta.content (refusal false) or delta.refusal (true). */
static enum err rs_text_delta(struct responses_stream *s, const json_t *delta, bool refusal,
                              struct buf *out)
{
    char id[RESPONSES_MAX_ID + 32];
    snprintf(id, sizeof(id), "msg_%s", rs_base(s->id));
    int *ci = refusal ? &s->refusal_ci : &s->text_ci;
    enum err e = rs_part_begin(s, id, refusal, ci, out);
    size_t len = json_string_length(delta);
    if (e == ERR_OK) {
        e = rs_hold(s, len);
    }
    if (e == ERR_OK) {
        e = buf_append(refusal ? &s->refusal : &s->text, json_string_value(delta), len);
    }
    if (e == ERR_OK && refusal) {
        e = rs_emit(s, out, "response.refusal.delta",
                    json_pack("{s:s,s:I,s:s,s:I,s:i,s:O}", "type", "response.refusal.delta",
                              "sequence_number", (json_int_t)s->seq, "item_id", id, "output_index",
                              (json_int_t)s->msg_index, "content_index", *ci, "delta", delta));
    } else if (e == ERR_OK) {
        e = rs_emit(s, out, "response.output_text.delta",
                    json_pack("{s:s,s:I,s:s,s:I,s:i,s:O,s:[]}", "type",
                              "response.output_text.delta", "sequence_number", (json_int_t)s->seq,
                              "item_id", id, "output_index", (json_int_t)s->msg_index,
                              "content_index", *ci, "delta", delta, "logprobs"));
    }
    return e;
}

static void rs_call_id(const struct responses_stream *s, size_t k, char *id, size_t n)
{
    snprintf(id, n, "fc_%s_%zu", rs_base(s->id), k);
}

/* One tool call fragment of a chunk's delta.tool_calls. */
static enum err rs_tool_delta(struct responses_stream *s, const json_t *tc, struct buf *out)
{
    const json_t *ix = json_object_get(tc, "index");
    long long index = json_is_integer(ix) ? (long long)json_integer_value(ix) : 0;
    const json_t *fn = json_object_get(tc, "function");
    size_t k = 0;
    while (k < s->n_calls && s->calls[k].index != index) {
        k++;
    }
    char id[RESPONSES_MAX_ID + 32];
    enum err e = ERR_OK;
    if (k == s->n_calls) {
        const char *call_id = json_string_value(json_object_get(tc, "id"));
        const char *name = json_string_value(json_object_get(fn, "name"));
        if (name == NULL || name[0] == '\0' || strlen(name) > PROVIDER_MAX_TOOL_NAME ||
            (call_id != NULL && strlen(call_id) > PROVIDER_MAX_TOOL_ID)) {
            return ERR_PROTO; /* a tool call's first fragment names it */
        }
        if (s->n_calls >= PROVIDER_MAX_TOOL_CALLS) {
            return ERR_TOOBIG;
        }
        if (s->n_calls == s->alloc_calls) {
            size_t n = s->alloc_calls > 0 ? s->alloc_calls * 2 : 4;
            struct rs_call *c = realloc(s->calls, n * sizeof(*c));
            if (c == NULL) {
                return ERR_NOMEM;
            }
            s->calls = c;
            s->alloc_calls = n;
        }
        struct rs_call *c = &s->calls[s->n_calls];
        memset(c, 0, sizeof(*c));
        c->index = index;
        c->output_index = s->n_items;
        if (call_id != NULL && call_id[0] != '\0') {
            snprintf(c->call_id, sizeof(c->call_id), "%s", call_id);
        } else {
            /* A server that sends no id: one made up, for the app's function_call_output. */
            snprintf(c->call_id, sizeof(c->call_id), "call_%s_%zu", rs_base(s->id), s->n_calls);
        }
        snprintf(c->name, sizeof(c->name), "%s", name);
        buf_init(&c->args, s->cap);
        s->n_calls++;
        s->n_items++;
        rs_call_id(s, k, id, sizeof(id));
        e = rs_emit(s, out, "response.output_item.added",
                    json_pack("{s:s,s:I,s:I,s:o}", "type", "response.output_item.added",
                              "sequence_number", (json_int_t)s->seq, "output_index",
                              (json_int_t)c->output_index, "item",
                              rs_call_item(id, "in_progress", c->call_id, c->name, "", 0)));
    }
    struct rs_call *c = &s->calls[k];
    const json_t *args = json_object_get(fn, "arguments");
    size_t len = json_string_length(args);
    if (e != ERR_OK || len == 0) {
        return e;
    }
    rs_call_id(s, k, id, sizeof(id));
    e = rs_hold(s, len);
    if (e == ERR_OK) {
        e = buf_append(&c->args, json_string_value(args), len);
    }
    if (e == ERR_OK) {
        e = rs_emit(s, out, "response.function_call_arguments.delta",
                    json_pack("{s:s,s:I,s:s,s:I,s:O}", "type",
                              "response.function_call_arguments.delta", "sequence_number",
                              (json_int_t)s->seq, "item_id", id, "output_index",
                              (json_int_t)c->output_index, "delta", args));
    }
    return e;
}

/* One chat.completion.chunk (parsed). */
static enum err rs_chunk(struct responses_stream *s, const json_t *j, struct buf *out)
{
    const char *model = json_string_value(json_object_get(j, "model"));
    if (s->model[0] == '\0' && model != NULL && strlen(model) < sizeof(s->model)) {
        snprintf(s->model, sizeof(s->model), "%s", model);
    }
    enum err e = rs_start(s, out);
    const json_t *rt =
        json_object_get(json_object_get(json_object_get(j, "usage"), "completion_tokens_details"),
                        "reasoning_tokens");
    if (json_is_integer(rt) && json_integer_value(rt) > 0 &&
        json_integer_value(rt) <= PROVIDER_MAX_TOKENS) {
        s->reasoning = (long long)json_integer_value(rt);
    }
    size_t i;
    const json_t *ch;
    json_array_foreach(json_object_get(j, "choices"), i, ch)
    {
        const json_t *ix = json_object_get(ch, "index");
        if (e != ERR_OK || (json_is_integer(ix) && json_integer_value(ix) != 0)) {
            continue; /* one answer: choice 0 (n is refused) */
        }
        const json_t *delta = json_object_get(ch, "delta");
        const json_t *content = json_object_get(delta, "content");
        if (json_string_length(content) > 0) {
            e = rs_text_delta(s, content, false, out);
        }
        const json_t *refusal = json_object_get(delta, "refusal");
        if (e == ERR_OK && json_string_length(refusal) > 0) {
            e = rs_text_delta(s, refusal, true, out);
        }
        size_t k;
        const json_t *tc;
        json_array_foreach(json_object_get(delta, "tool_calls"), k, tc)
        {
            if (e == ERR_OK) {
                e = rs_tool_delta(s, tc, out);
            }
        }
        const char *finish = json_string_value(json_object_get(ch, "finish_reason"));
        if (e == ERR_OK && finish != NULL) {
            snprintf(s->finish, sizeof(s->finish), "%s", finish);
        }
    }
    return e;
}

static int rs_sse_event(void *arg, const char *event, const char *data, size_t len)
{
    struct responses_stream *s = arg;
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        return 0; /* the end: responses_stream_finish */
    }
    /*
     * What the frame's events announce is taken back with them when it
     * fails, so that response.failed follows what the app saw: the sequence
     * numbers go on from the last event sent, response.created goes out if
     * it did not, and the items listed are the ones the app saw added.
     */
    size_t before = s->out->len;
    long long seq = s->seq;
    bool started = s->started, has_msg = s->has_msg;
    size_t n_items = s->n_items, n_calls = s->n_calls;
    int text_ci = s->text_ci, refusal_ci = s->refusal_ci, n_parts = s->n_parts;
    json_t *j = json_loadb(data, len, 0, NULL);
    enum err e = json_is_object(j) ? rs_chunk(s, j, s->out) : ERR_PROTO;
    json_decref(j);
    if (e == ERR_OK) {
        return 0;
    }
    if (s->out->len > before) { /* nothing of the failing frame goes out */
        s->out->len = before;
        s->out->data[before] = '\0';
    }
    s->seq = seq;
    s->started = started;
    s->has_msg = has_msg;
    s->n_items = n_items;
    s->text_ci = text_ci;
    s->refusal_ci = refusal_ci;
    s->n_parts = n_parts;
    while (s->n_calls > n_calls) {
        buf_done(&s->calls[--s->n_calls].args);
    }
    s->err = e;
    return 1;
}

enum err responses_stream_new(const json_t *echo, const char *id, long long created_at,
                              const char *model, size_t cap, struct responses_stream **ret)
{
    if (strlen(id) > RESPONSES_MAX_ID) {
        return ERR_INVAL;
    }
    struct responses_stream *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return ERR_NOMEM;
    }
    s->echo = json_incref((json_t *)echo);
    snprintf(s->id, sizeof(s->id), "%s", id);
    if (model != NULL && strlen(model) < sizeof(s->model)) {
        snprintf(s->model, sizeof(s->model), "%s", model);
    }
    s->created_at = created_at;
    s->cap = cap;
    /* A chunk repeats its delta with JSON's escapes (up to 6 bytes a byte) and the chunk's fields.
     */
    sse_init(&s->sse, cap < SIZE_MAX / 8 ? 6 * cap + RESPONSES_CHUNK_SLACK : SIZE_MAX / 2,
             rs_sse_event, s);
    buf_init(&s->text, cap);
    buf_init(&s->refusal, cap);
    s->text_ci = -1;
    s->refusal_ci = -1;
    *ret = s;
    return ERR_OK;
}

void responses_stream_free(struct responses_stream **sp)
{
    struct responses_stream *s = sp != NULL ? *sp : NULL;
    if (s == NULL) {
        return;
    }
    for (size_t k = 0; k < s->n_calls; k++) {
        buf_done(&s->calls[k].args);
    }
    free(s->calls);
    buf_done(&s->text);
    buf_done(&s->refusal);
    sse_done(&s->sse);
    json_decref(s->echo);
    free(s);
    *sp = NULL;
}

enum err responses_stream_feed(struct responses_stream *s, const char *data, size_t len,
                               struct buf *out)
{
    if (s->broken) {
        return ERR_PROTO;
    }
    s->out = out;
    s->err = ERR_OK;
    enum err e = sse_feed(&s->sse, data, len);
    s->out = NULL;
    if (e == ERR_CANCELLED) {
        e = s->err;
    }
    if (e != ERR_OK) {
        s->broken = true;
    }
    return e;
}

/* The message's content parts in content_index order (new array; NULL when out of memory). */
static json_t *rs_parts(const struct responses_stream *s)
{
    json_t *parts = json_array();
    for (int k = 0; parts != NULL && k < s->n_parts; k++) {
        json_t *p = k == s->text_ci
                        ? rs_text_part(s->text.data != NULL ? s->text.data : "", s->text.len)
                        : json_pack("{s:s,s:s%}", "type", "refusal", "refusal",
                                    s->refusal.data != NULL ? s->refusal.data : "", s->refusal.len);
        if (!rs_append(parts, p)) {
            json_decref(parts);
            parts = NULL;
        }
    }
    return parts;
}

/* The items as far as they came, with their status (new array; NULL when out of memory). */
static json_t *rs_items(const struct responses_stream *s, const char *status)
{
    json_t *items = json_array();
    char id[RESPONSES_MAX_ID + 32];
    size_t k = 0;
    for (size_t i = 0; items != NULL && i < s->n_items; i++) {
        json_t *item;
        if (s->has_msg && s->msg_index == i) {
            snprintf(id, sizeof(id), "msg_%s", rs_base(s->id));
            item = rs_message_item(id, status, rs_parts(s));
        } else {
            const struct rs_call *c = &s->calls[k];
            rs_call_id(s, k, id, sizeof(id));
            item = rs_call_item(id, status, c->call_id, c->name,
                                c->args.data != NULL ? c->args.data : "", c->args.len);
            k++;
        }
        if (!rs_append(items, item)) {
            json_decref(items);
            items = NULL;
        }
    }
    return items;
}

/* The .done events of item i of items (the final ones). */
static enum err rs_item_done(struct responses_stream *s, const json_t *items, size_t i,
                             struct buf *out)
{
    const json_t *item = json_array_get(items, i);
    const json_t *id = json_object_get(item, "id");
    enum err e = ERR_OK;
    if (strcmp(json_string_value(json_object_get(item, "type")), "message") == 0) {
        size_t k;
        const json_t *part;
        json_array_foreach(json_object_get(item, "content"), k, part)
        {
            bool refusal = strcmp(json_string_value(json_object_get(part, "type")), "refusal") == 0;
            if (e == ERR_OK && refusal) {
                e = rs_emit(s, out, "response.refusal.done",
                            json_pack("{s:s,s:I,s:O,s:I,s:I,s:O}", "type", "response.refusal.done",
                                      "sequence_number", (json_int_t)s->seq, "item_id", id,
                                      "output_index", (json_int_t)i, "content_index", (json_int_t)k,
                                      "refusal", json_object_get(part, "refusal")));
            } else if (e == ERR_OK) {
                e = rs_emit(s, out, "response.output_text.done",
                            json_pack("{s:s,s:I,s:O,s:I,s:I,s:O,s:[]}", "type",
                                      "response.output_text.done", "sequence_number",
                                      (json_int_t)s->seq, "item_id", id, "output_index",
                                      (json_int_t)i, "content_index", (json_int_t)k, "text",
                                      json_object_get(part, "text"), "logprobs"));
            }
            if (e == ERR_OK) {
                e = rs_emit(s, out, "response.content_part.done",
                            json_pack("{s:s,s:I,s:O,s:I,s:I,s:O}", "type",
                                      "response.content_part.done", "sequence_number",
                                      (json_int_t)s->seq, "item_id", id, "output_index",
                                      (json_int_t)i, "content_index", (json_int_t)k, "part", part));
            }
        }
    } else {
        e = rs_emit(s, out, "response.function_call_arguments.done",
                    json_pack("{s:s,s:I,s:O,s:I,s:O,s:O}", "type",
                              "response.function_call_arguments.done", "sequence_number",
                              (json_int_t)s->seq, "item_id", id, "output_index", (json_int_t)i,
                              "name", json_object_get(item, "name"), "arguments",
                              json_object_get(item, "arguments")));
    }
    if (e == ERR_OK) {
        e = rs_emit(s, out, "response.output_item.done",
                    json_pack("{s:s,s:I,s:I,s:O}", "type", "response.output_item.done",
                              "sequence_number", (json_int_t)s->seq, "output_index", (json_int_t)i,
                              "item", item));
    }
    return e;
}

enum err responses_stream_finish(struct responses_stream *s, const struct provider_usage *u,
                                 struct buf *out)
{
    enum err e = rs_start(s, out);
    const char *reason = rs_incomplete_reason(s->finish[0] != '\0' ? s->finish : NULL);
    const char *status = reason != NULL ? "incomplete" : "completed";
    json_t *items = e == ERR_OK ? rs_items(s, status) : NULL;
    if (e == ERR_OK && items == NULL) {
        e = ERR_NOMEM;
    }
    for (size_t i = 0; e == ERR_OK && i < json_array_size(items); i++) {
        e = rs_item_done(s, items, i, out);
    }
    if (e == ERR_OK) {
        const char *type = reason != NULL ? "response.incomplete" : "response.completed";
        e = rs_emit_response(s, out, type,
                             rs_object(s->echo, s->id, s->created_at, rs_model(s), status, reason,
                                       json_incref(items), rs_usage(u, s->reasoning), json_null()));
    }
    json_decref(items);
    return e;
}

enum err responses_stream_fail(struct responses_stream *s, const char *code, const char *message,
                               const struct provider_usage *u, struct buf *out)
{
    enum err e = rs_start(s, out);
    json_t *items = e == ERR_OK ? rs_items(s, "incomplete") : NULL;
    if (e == ERR_OK && items == NULL) {
        e = ERR_NOMEM;
    }
    if (e == ERR_OK) {
        e = rs_emit_response(s, out, "response.failed",
                             rs_object(s->echo, s->id, s->created_at, rs_model(s), "failed", NULL,
                                       json_incref(items), rs_usage(u, s->reasoning),
                                       json_pack("{s:s,s:s}", "code", code, "message", message)));
    }
    json_decref(items);
    return e;
}
