/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The Bedrock adapter: OpenAI chat completions to and from Amazon Bedrock's
 * Converse API, and OpenAI embeddings through InvokeModel for the embedding
 * models it knows (Titan Text Embeddings V2, Cohere Embed v3). References:
 *   Converse and ConverseStream (request and response syntax, stop reasons,
 *     the stream's events): https://docs.aws.amazon.com/bedrock/latest/APIReference/
 *     API_runtime_Converse.html, API_runtime_ConverseStream.html,
 *     API_runtime_ConverseStreamOutput.html
 *   Bedrock API keys, sent as "Authorization: Bearer <key>":
 *     https://docs.aws.amazon.com/bedrock/latest/userguide/api-keys-use.html
 *   IAM credentials, which sign each request (Signature Version 4, service
 *     "bedrock"): https://docs.aws.amazon.com/IAM/latest/UserGuide/
 *     reference_sigv.html, and Bedrock's endpoints (bedrock-runtime.<region>
 *     .amazonaws.com): https://docs.aws.amazon.com/general/latest/gr/bedrock.html
 * What maps to what is in docs/agent.md ("Bedrock translation"). Not here:
 * the event stream's binary framing (eventstream.c), the signature itself
 * (sigv4.c), choosing a provider, sending. Like every adapter, it never logs
 * and never copies the key anywhere but the (wiped) curl header list; an IAM
 * key's secret access key is not even sent, only the signature made with it.
 */
#include "agent/provider_bedrock.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "agent/provider_util.h"
#include "agent/sigv4.h"
#include "agent/upstream.h"
#include "common/awskey.h"

/*
 * Bedrock's TokenUsage: inputTokens, outputTokens, and with prompt caching
 * cacheReadInputTokens and cacheWriteInputTokens, which inputTokens does not
 * include (totalTokens is their sum with outputTokens). OpenAI's prompt_tokens
 * include cached tokens, so all three are added, as for Anthropic.
 */
static void brk_usage(const json_t *u, struct provider_usage *out)
{
    if (!json_is_object(u)) {
        return;
    }
    long long in = prov_count(json_object_get(u, "inputTokens"));
    long long cr = prov_count(json_object_get(u, "cacheReadInputTokens"));
    long long cw = prov_count(json_object_get(u, "cacheWriteInputTokens"));
    long long prompt = in + cr + cw; /* each at most PROVIDER_MAX_TOKENS: no overflow */
    out->prompt_tokens = prov_min(prompt, PROVIDER_MAX_TOKENS);
    out->cached_tokens = prov_min(cr, out->prompt_tokens);
    out->cache_write_tokens = prov_min(cw, out->prompt_tokens - out->cached_tokens);
    out->cache_write_1h_tokens = 0; /* Converse's cachePoint has one TTL (5 minutes) */
    out->completion_tokens = prov_count(json_object_get(u, "outputTokens"));
    out->seen = true;
}

/* ---- the request -------------------------------------------------------------------------- */

/*
 * An image_url part as an image block. Converse takes the image's bytes
 * (base64 in JSON) or an S3 location, never a URL it would fetch: only data
 * URLs of the four formats it reads translate.
 */
static json_t *brk_image(const json_t *part)
{
    static const char *const formats[] = {"png", "jpeg", "gif", "webp", NULL};
    const json_t *iu = json_object_get(part, "image_url");
    const char *url = json_string_value(json_is_object(iu) ? json_object_get(iu, "url") : iu);
    if (url == NULL || strncmp(url, "data:image/", 11) != 0) {
        return NULL;
    }
    const char *fmt = url + 11;
    const char *semi = strchr(fmt, ';');
    if (semi == NULL || strncmp(semi, ";base64,", 8) != 0) {
        return NULL;
    }
    for (const char *const *f = formats; *f != NULL; f++) {
        if ((size_t)(semi - fmt) == strlen(*f) && strncmp(fmt, *f, strlen(*f)) == 0) {
            return json_pack("{s:{s:s,s:{s:s}}}", "image", "format", *f, "source", "bytes",
                             semi + 8);
        }
    }
    return NULL;
}

/*
 * A cache hint (provider_cache_check has checked it) as Converse's: a
 * cachePoint block after the block it marks, in a message's content, the
 * system list or the tools. Converse's cache point has one type ("default",
 * Bedrock's 5-minute cache): a ttl is not carried. Appended only after a
 * block (a hint on an empty part has nothing to mark).
 */
static enum err brk_cache_point(const json_t *holder, json_t *blocks)
{
    if (!prov_cache_hint(holder) || json_array_size(blocks) == 0) {
        return ERR_OK;
    }
    /* A hint on a message whose last part already put one there is one point. */
    const json_t *last = json_array_get(blocks, json_array_size(blocks) - 1);
    if (json_object_get(last, "cachePoint") != NULL) {
        return ERR_OK;
    }
    return json_array_append_new(blocks, json_pack("{s:{s:s}}", "cachePoint", "type", "default")) ==
                   0
               ? ERR_OK
               : ERR_NOMEM;
}

/*
 * A user or assistant content (a string or an array of text and image_url
 * parts) appended to blocks. Converse refuses a blank text block, so empty
 * text is left out.
 */
static enum err brk_content(const json_t *content, size_t mi, struct provider_bad *bad,
                            json_t *blocks)
{
    if (json_is_string(content)) {
        if (json_string_length(content) > 0 &&
            json_array_append_new(blocks, json_pack("{s:O}", "text", content)) != 0) {
            return ERR_NOMEM;
        }
        return ERR_OK;
    }
    if (content == NULL || json_is_null(content)) {
        return ERR_OK;
    }
    if (!json_is_array(content)) {
        return prov_bad(bad, "must be a string or an array of text and image_url parts",
                        "messages[%zu].content", mi);
    }
    size_t i;
    const json_t *part;
    json_array_foreach(content, i, part)
    {
        const char *type = json_string_value(json_object_get(part, "type"));
        const json_t *text = json_object_get(part, "text");
        json_t *blk = NULL;
        if (type != NULL && strcmp(type, "text") == 0 && json_is_string(text)) {
            if (json_string_length(text) == 0) {
                continue;
            }
            blk = json_pack("{s:O}", "text", text);
        } else if (type != NULL && strcmp(type, "image_url") == 0) {
            blk = brk_image(part);
            if (blk == NULL) {
                return prov_bad(bad,
                                "must be a data: URL of a png, jpeg, gif or webp image (Bedrock "
                                "does not fetch URLs)",
                                "messages[%zu].content[%zu].image_url", mi, i);
            }
        } else {
            return prov_bad(bad, "only text and image_url parts can be translated",
                            "messages[%zu].content[%zu].type", mi, i);
        }
        if (blk == NULL || json_array_append_new(blocks, blk) != 0 ||
            brk_cache_point(part, blocks) != ERR_OK) {
            return ERR_NOMEM;
        }
    }
    return ERR_OK;
}

/* An assistant message's tool calls appended to blocks as toolUse blocks. */
static enum err brk_tool_uses(const json_t *calls, size_t mi, struct provider_bad *bad,
                              json_t *blocks)
{
    size_t j;
    const json_t *call;
    json_array_foreach(calls, j, call)
    {
        const json_t *id, *name, *args;
        json_t *input = NULL;
        enum err e = prov_call_check(call, mi, j, bad, &id, &name, &args);
        if (e == ERR_OK) {
            e = prov_call_input(args, mi, j, bad, &input);
        }
        if (e != ERR_OK) {
            return e;
        }
        if (json_array_append_new(blocks, json_pack("{s:{s:O,s:O,s:o}}", "toolUse", "toolUseId", id,
                                                    "name", name, "input", input)) != 0) {
            return ERR_NOMEM;
        }
    }
    return ERR_OK;
}

/* A tool message as a toolResult block (its text as one text block). */
static enum err brk_tool_result(const json_t *m, size_t mi, struct provider_bad *bad,
                                json_t *blocks)
{
    const json_t *id = NULL;
    json_t *t = NULL;
    enum err e = prov_tool_result(m, mi, bad, &id, &t);
    if (e != ERR_OK) {
        return e;
    }
    json_t *parts = json_array();
    /* An empty result has no content block (Converse refuses a blank text block). */
    if (parts == NULL || (json_string_length(t) > 0 &&
                          json_array_append_new(parts, json_pack("{s:O}", "text", t)))) {
        json_decref(parts);
        json_decref(t);
        return ERR_NOMEM;
    }
    json_decref(t);
    if (json_array_append_new(blocks, json_pack("{s:{s:O,s:o}}", "toolResult", "toolUseId", id,
                                                "content", parts)) != 0) {
        return ERR_NOMEM;
    }
    /* The result's text is one block: a hint on a part marks the whole result. */
    size_t i;
    const json_t *part;
    json_array_foreach(json_object_get(m, "content"), i, part)
    {
        if (brk_cache_point(part, blocks) != ERR_OK) {
            return ERR_NOMEM;
        }
    }
    return ERR_OK;
}

/*
 * blocks (taken) as a message of role. Converse requires user and assistant
 * turns to alternate: blocks for the role of the last message join it (the
 * results of consecutive tool messages, a user message after them).
 */
static enum err brk_push(json_t *msgs, const char *role, json_t *blocks)
{
    json_t *last = json_array_get(msgs, json_array_size(msgs) - 1);
    const char *lrole = json_string_value(json_object_get(last, "role"));
    if (lrole != NULL && strcmp(lrole, role) == 0) {
        enum err e =
            json_array_extend(json_object_get(last, "content"), blocks) == 0 ? ERR_OK : ERR_NOMEM;
        json_decref(blocks);
        return e;
    }
    return json_array_append_new(msgs, json_pack("{s:s,s:o}", "role", role, "content", blocks)) == 0
               ? ERR_OK
               : ERR_NOMEM;
}

/* The messages: system and developer text into system, the rest into msgs. */
static enum err brk_messages(const json_t *omsgs, json_t *system, json_t *msgs,
                             struct provider_bad *bad)
{
    size_t i;
    const json_t *m;
    json_array_foreach(omsgs, i, m)
    {
        const char *role = json_string_value(json_object_get(m, "role"));
        const json_t *content = json_object_get(m, "content");
        const json_t *calls = json_object_get(m, "tool_calls");
        if (role == NULL) {
            return prov_bad(bad, "is missing", "messages[%zu].role", i);
        }
        if (calls != NULL && !json_is_null(calls) &&
            (!json_is_array(calls) || strcmp(role, "assistant") != 0)) {
            return prov_bad(bad, "must be an array, in an assistant message",
                            "messages[%zu].tool_calls", i);
        }
        if (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0) {
            /* Converse takes system prompts as a top-level list of text blocks. */
            json_t *t = NULL;
            enum err e = prov_message_text(content, i, bad, &t);
            if (e != ERR_OK) {
                return e;
            }
            size_t tlen = json_string_length(t);
            if (tlen > 0 && json_array_append_new(system, json_pack("{s:O}", "text", t)) != 0) {
                e = ERR_NOMEM;
            }
            json_decref(t);
            /* The message is one system block: a hint on it or a part of it follows it. */
            if (e == ERR_OK && tlen > 0 && (prov_cache_hint(m) || prov_cache_in_content(content)) &&
                json_array_append_new(
                    system, json_pack("{s:{s:s}}", "cachePoint", "type", "default")) != 0) {
                e = ERR_NOMEM;
            }
            if (e != ERR_OK) {
                return e;
            }
            continue;
        }
        json_t *blocks = json_array();
        if (blocks == NULL) {
            return ERR_NOMEM;
        }
        enum err e;
        const char *to = role;
        if (strcmp(role, "tool") == 0) {
            e = brk_tool_result(m, i, bad, blocks);
            to = "user";
        } else if (strcmp(role, "user") == 0 || strcmp(role, "assistant") == 0) {
            e = brk_content(content, i, bad, blocks);
            if (e == ERR_OK && strcmp(role, "assistant") == 0 && json_is_array(calls)) {
                e = brk_tool_uses(calls, i, bad, blocks);
            }
            if (e == ERR_OK && json_array_size(blocks) == 0) {
                e = prov_bad(bad, "is empty, which Bedrock refuses", "messages[%zu].content", i);
            }
        } else {
            e = prov_bad(bad, "must be system, developer, user, assistant or tool",
                         "messages[%zu].role", i);
        }
        if (e == ERR_OK) {
            e = brk_cache_point(m, blocks);
        }
        if (e == ERR_OK) {
            e = brk_push(msgs, to, blocks);
        } else {
            json_decref(blocks);
        }
        if (e != ERR_OK) {
            return e;
        }
    }
    if (json_array_size(msgs) == 0) {
        return prov_bad(bad, "has no user or assistant message", "messages");
    }
    return ERR_OK;
}

/* An OpenAI function tool as Converse's {toolSpec: {name, inputSchema: {json}, description}}. */
static json_t *brk_tool_spec(const json_t *name, const json_t *desc, const json_t *params)
{
    /* Converse requires inputSchema; OpenAI's default is a function without parameters. */
    json_t *schema = params != NULL ? json_incref((json_t *)params)
                                    : json_pack("{s:s,s:{}}", "type", "object", "properties");
    json_t *spec = json_pack("{s:O,s:{s:o}}", "name", name, "inputSchema", "json", schema);
    if (spec == NULL ||
        (json_is_string(desc) && json_object_set(spec, "description", (json_t *)desc) != 0)) {
        json_decref(spec);
        return NULL;
    }
    return json_pack("{s:o}", "toolSpec", spec);
}

/*
 * OpenAI's tools and tool_choice as Converse's toolConfig. Converse has no
 * "none": a request that forbids tools while defining them is refused
 * rather than sent as one that allows them. parallel_tool_calls has no
 * Converse equivalent and is dropped.
 */
static enum err brk_tool_config(const json_t *oreq, struct provider_bad *bad, json_t *out)
{
    const json_t *tools = json_object_get(oreq, "tools");
    if (tools == NULL || json_is_null(tools) ||
        (json_is_array(tools) && json_array_size(tools) == 0)) {
        return ERR_OK;
    }
    json_t *specs = NULL;
    enum err e = prov_tools(tools, false, brk_tool_spec, bad, &specs);
    if (e != ERR_OK) {
        return e;
    }
    if (prov_cache_present(oreq)) {
        /* A tool's hint: a cachePoint after its toolSpec in toolConfig.tools. */
        json_t *marked = json_array();
        size_t i;
        const json_t *t;
        json_array_foreach(tools, i, t)
        {
            if (marked != NULL && (json_array_append(marked, json_array_get(specs, i)) != 0 ||
                                   brk_cache_point(t, marked) != ERR_OK)) {
                json_decref(marked);
                marked = NULL;
            }
        }
        json_decref(specs);
        if (marked == NULL) {
            return ERR_NOMEM;
        }
        specs = marked;
    }
    json_t *cfg = json_pack("{s:o}", "tools", specs);
    if (cfg == NULL) {
        return ERR_NOMEM;
    }
    const json_t *name = NULL;
    json_t *choice = NULL;
    switch (prov_tool_choice(oreq, &name)) {
    case PROV_CHOICE_UNSET:
    case PROV_CHOICE_AUTO:
        break; /* Converse's default is auto */
    case PROV_CHOICE_REQUIRED:
        choice = json_pack("{s:{}}", "any");
        break;
    case PROV_CHOICE_NONE:
        e = prov_bad(bad,
                     "none cannot be translated: Bedrock's Converse API has no way to forbid "
                     "the tools it is given",
                     "tool_choice");
        break;
    case PROV_CHOICE_FUNCTION:
        choice = json_pack("{s:{s:O}}", "tool", "name", name);
        break;
    case PROV_CHOICE_INVALID:
        e = prov_bad(bad,
                     "must be auto, required or {\"type\":\"function\","
                     "\"function\":{\"name\":...}}",
                     "tool_choice");
        break;
    }
    if (e == ERR_OK && choice != NULL && json_object_set_new(cfg, "toolChoice", choice) != 0) {
        e = ERR_NOMEM;
    }
    if (e == ERR_OK && json_object_set_new(out, "toolConfig", cfg) != 0) {
        return ERR_NOMEM;
    }
    if (e != ERR_OK) {
        json_decref(cfg);
    }
    return e;
}

/*
 * inferenceConfig: maxTokens (max_tokens, max_completion_tokens or the
 * agent's default), temperature, top_p as topP, stop as stopSequences.
 */
static enum err brk_inference(const json_t *oreq, long default_max_tokens, struct provider_bad *bad,
                              json_t *out)
{
    json_t *ic = json_object();
    if (ic == NULL || json_object_set_new(out, "inferenceConfig", ic) != 0) {
        return ERR_NOMEM;
    }
    json_int_t max_tokens = default_max_tokens;
    if (prov_max_output(oreq) > 0) {
        max_tokens = (json_int_t)prov_max_output(oreq);
    }
    if (max_tokens > 0 && json_object_set_new(ic, "maxTokens", json_integer(max_tokens)) != 0) {
        return ERR_NOMEM;
    }
    static const struct {
        const char *from, *to;
    } numbers[] = {{"temperature", "temperature"}, {"top_p", "topP"}};
    for (size_t i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++) {
        json_t *v = json_object_get(oreq, numbers[i].from);
        if (json_is_number(v) && json_object_set(ic, numbers[i].to, v) != 0) {
            return ERR_NOMEM;
        }
    }
    return prov_stop_sequences(oreq, "stopSequences", bad, ic);
}

/*
 * OpenAI fields whose meaning would be lost if dropped: refused, naming the
 * field. Others with no Converse equivalent (user, seed, penalties,
 * parallel_tool_calls, stream_options ...) are dropped, as the Anthropic
 * translation drops them.
 */
static enum err brk_refused(const json_t *oreq, struct provider_bad *bad)
{
    const json_t *n = json_object_get(oreq, "n");
    if (json_is_integer(n) && json_integer_value(n) > 1) {
        return prov_bad(bad, "must be 1: Bedrock returns one choice", "n");
    }
    if (json_is_true(json_object_get(oreq, "logprobs"))) {
        return prov_bad(bad, "cannot be translated: Bedrock returns no log probabilities",
                        "logprobs");
    }
    const char *rf =
        json_string_value(json_object_get(json_object_get(oreq, "response_format"), "type"));
    if (rf != NULL && strcmp(rf, "text") != 0) {
        return prov_bad(bad, "only text can be translated for Bedrock", "response_format.type");
    }
    return ERR_OK;
}

enum err provider_bedrock_request(const json_t *oreq, long default_max_tokens,
                                  struct provider_bad *bad, json_t **ret)
{
    const json_t *omsgs = json_object_get(oreq, "messages");
    if (!json_is_array(omsgs)) {
        return prov_bad(bad, "must be an array", "messages");
    }
    enum err e = brk_refused(oreq, bad);
    if (e != ERR_OK) {
        return e;
    }
    e = provider_cache_check(oreq, bad);
    if (e != ERR_OK) {
        return e;
    }
    json_t *system = json_array();
    json_t *msgs = json_array();
    json_t *out = json_object();
    e = system != NULL && msgs != NULL && out != NULL ? ERR_OK : ERR_NOMEM;
    if (e == ERR_OK) {
        e = brk_messages(omsgs, system, msgs, bad);
    }
    if (e == ERR_OK && json_object_set(out, "messages", msgs) != 0) {
        e = ERR_NOMEM;
    }
    if (e == ERR_OK && json_array_size(system) > 0 && json_object_set(out, "system", system) != 0) {
        e = ERR_NOMEM;
    }
    if (e == ERR_OK) {
        e = brk_inference(oreq, default_max_tokens, bad, out);
    }
    if (e == ERR_OK) {
        e = brk_tool_config(oreq, bad, out);
    }
    json_decref(system);
    json_decref(msgs);
    if (e != ERR_OK) {
        json_decref(out);
        return e;
    }
    *ret = out;
    return ERR_OK;
}

bool provider_bedrock_claude(const char *model)
{
    static const char claude[] = "anthropic.claude";
    if (model == NULL) {
        return false;
    }
    if (strncmp(model, claude, sizeof(claude) - 1) == 0) {
        return true;
    }
    /* An inference profile: one label (us, eu, apac, global, us-gov ...), a dot, the id. */
    size_t geo = strspn(model, "abcdefghijklmnopqrstuvwxyz-");
    return geo > 0 && geo <= 8 && model[0] != '-' && model[geo] == '.' &&
           strncmp(model + geo + 1, claude, sizeof(claude) - 1) == 0;
}

/*
 * Does Bedrock take prompt-cache points for this model? Claude and Amazon
 * Nova models do (Bedrock's prompt caching page); Converse refuses a
 * cachePoint for the others (Llama, Mistral, Titan ...), so their requests
 * go without one: a hint is a hint, not a reason to fail the call. The id
 * is matched by name, so a cross-region inference profile
 * ("us.anthropic.claude-...", or its ARN) counts; an application inference
 * profile's ARN names no model and goes without.
 */
static bool brk_model_caches(const char *model)
{
    /*
     * Bedrock's prompt caching: Claude 3.5 Haiku, 3.7 Sonnet and the Claude 4
     * family, and Amazon Nova. The older Claude models refuse a cachePoint
     * (as do models of other makers): listed by what they are not, so a newer
     * Claude keeps its hints.
     */
    static const char *const old_claude[] = {"claude-3-haiku", "claude-3-sonnet",
                                             "claude-3-opus",  "claude-3-5-sonnet",
                                             "claude-v2",      "claude-instant"};
    if (model == NULL) {
        return false;
    }
    if (strstr(model, "amazon.nova") != NULL) {
        return true;
    }
    /* A foundation model's or an inference profile's ARN names its id after the last '/'. */
    const char *id = strrchr(model, '/');
    if (!provider_bedrock_claude(id != NULL ? id + 1 : model)) {
        return false;
    }
    for (size_t i = 0; i < sizeof(old_claude) / sizeof(old_claude[0]); i++) {
        if (strstr(model, old_claude[i]) != NULL) {
            return false;
        }
    }
    return true;
}

/* Nova takes cache points in system and messages, not in toolConfig: its tools' hints go. */
static bool brk_model_caches_tools(const char *model)
{
    return model != NULL && strstr(model, "amazon.nova") == NULL;
}

/* Does a tool of the request carry a cache hint? */
static bool brk_tools_hinted(const json_t *req)
{
    size_t i;
    const json_t *t;
    json_array_foreach(json_object_get(req, "tools"), i, t)
    {
        if (json_object_get(t, "cache_control") != NULL) {
            return true;
        }
    }
    return false;
}

/* The Converse body for the call, cache hints dropped for a model that takes none. */
static enum err brk_chat_request(const struct provider_call *c, struct provider_bad *bad,
                                 json_t **ret)
{
    if (brk_model_caches(c->model) && !brk_model_caches_tools(c->model) &&
        brk_tools_hinted(c->req)) {
        /* The tools' hints go on a copy; those in system and messages stay. */
        json_t *copy = json_deep_copy(c->req);
        if (copy == NULL) {
            return ERR_NOMEM;
        }
        size_t i;
        json_t *t;
        json_array_foreach(json_object_get(copy, "tools"), i, t)
        {
            json_object_del(t, "cache_control");
        }
        enum err e = provider_bedrock_request(copy, c->default_max_tokens, bad, ret);
        json_decref(copy);
        return e;
    }
    if (brk_model_caches(c->model) || !prov_cache_present(c->req)) {
        return provider_bedrock_request(c->req, c->default_max_tokens, bad, ret);
    }
    /* Bad hints are refused as for any model (the proxy checked them already); a copy goes
       without the good ones. */
    enum err e = provider_cache_check(c->req, bad);
    if (e != ERR_OK) {
        return e;
    }
    json_t *copy = json_deep_copy(c->req);
    if (copy == NULL) {
        return ERR_NOMEM;
    }
    (void)prov_cache_strip(copy);
    e = provider_bedrock_request(copy, c->default_max_tokens, bad, ret);
    json_decref(copy);
    return e;
}

/*
 * base_url + "/model/" + the model id percent-encoded + op ("/converse",
 * "/converse-stream" or InvokeModel's "/invoke"). The model id is
 * one path segment: everything but RFC 3986's unreserved characters is
 * encoded, as the AWS SDKs encode the modelId label (":" as %3A, and an
 * inference profile ARN's "/" as %2F).
 */
static enum err brk_url(const struct provider_call *c, const char *op, struct provider_http *out)
{
    const char *base;
    size_t bl;
    bool local;
    enum err e = prov_base_url(c->entry, &base, &bl, &local);
    if (e != ERR_OK) {
        return e;
    }
    /* The catalog's "{region}" was never replaced (docs/admin-guide.md): no such host. */
    if (strchr(base, '{') != NULL || strchr(base, '}') != NULL) {
        return ERR_CONFIG;
    }
    size_t ml = strlen(c->model);
    if (ml == 0 || ml > BEDROCK_MAX_MODEL_ID || strcmp(c->model, ".") == 0 ||
        strcmp(c->model, "..") == 0) {
        return ERR_CONFIG; /* a dot segment, which curl would resolve away (RFC 3986 5.2.4) */
    }
    struct buf u;
    buf_init(&u, sizeof(out->url) - 1);
    e = buf_append(&u, base, bl);
    if (e == ERR_OK) {
        e = buf_append_str(&u, "/model/");
    }
    for (size_t i = 0; e == ERR_OK && i < ml; i++) {
        unsigned char ch = (unsigned char)c->model[i];
        bool unreserved = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                          (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.' ||
                          ch == '~';
        e = unreserved ? buf_append(&u, &c->model[i], 1) : buf_printf(&u, "%%%02X", ch);
    }
    if (e == ERR_OK) {
        e = buf_append_str(&u, op);
    }
    if (e == ERR_OK) {
        memcpy(out->url, u.data, u.len + 1);
        out->allow_http = local;
    }
    buf_done(&u);
    return e;
}

/* ---- embeddings (InvokeModel) ------------------------------------------------------------- */

/*
 * Bedrock's embedding models are not behind Converse: each takes its own body
 * through InvokeModel (POST /model/{modelId}/invoke, the same host, key and
 * signature as Converse). References:
 *   InvokeModel: https://docs.aws.amazon.com/bedrock/latest/APIReference/
 *     API_runtime_InvokeModel.html
 *   Titan Text Embeddings V2 ({"inputText", "dimensions", "normalize"} ->
 *     {"embedding", "inputTextTokenCount"}): https://docs.aws.amazon.com/bedrock/
 *     latest/userguide/model-parameters-titan-embed-text.html
 *   Cohere Embed v3 ({"texts", "input_type", "truncate"} -> {"embeddings",
 *     "id", "response_type", "texts"}): https://docs.aws.amazon.com/bedrock/
 *     latest/userguide/model-parameters-embed.html
 */
enum brk_embed_family { BRK_EMBED_TITAN, BRK_EMBED_COHERE };

static const struct {
    const char *id; /* found anywhere in the model id: "us." and "eu." profiles included */
    enum brk_embed_family family;
} brk_embed_models[] = {
    {"amazon.titan-embed-text-v2", BRK_EMBED_TITAN},
    {"cohere.embed-english-v3", BRK_EMBED_COHERE},
    {"cohere.embed-multilingual-v3", BRK_EMBED_COHERE},
};

/* The embedding family of a model id; false for a model this translation does not know. */
static bool brk_embed_family_of(const char *model, enum brk_embed_family *ret)
{
    for (size_t i = 0; i < sizeof(brk_embed_models) / sizeof(brk_embed_models[0]); i++) {
        if (strstr(model, brk_embed_models[i].id) != NULL) {
            *ret = brk_embed_models[i].family;
            return true;
        }
    }
    return false;
}

/* Cohere's input_type values (Bedrock's model parameters page); images are not translated. */
static const char *const brk_input_types[] = {"search_document", "search_query", "classification",
                                              "clustering", NULL};

/* Characters (UTF-8 code points) of a string, as Cohere's per-text limit counts them. */
static size_t brk_chars(const json_t *s)
{
    const unsigned char *p = (const unsigned char *)json_string_value(s);
    size_t n = 0;
    for (size_t i = 0; i < json_string_length(s); i++) {
        n += (p[i] & 0xC0) != 0x80;
    }
    return n;
}

/*
 * OpenAI's input as an array of texts (new reference in *ret): a string, or
 * an array of strings. Token ids (integers, or arrays of them) are text only
 * OpenAI's tokenizer reads: ERR_UNSUPPORTED, so that another candidate (one
 * that takes them) gets the request.
 */
static enum err brk_embed_texts(const json_t *oreq, struct provider_bad *bad, json_t **ret)
{
    const json_t *in = json_object_get(oreq, "input");
    if (json_is_string(in)) {
        *ret = json_pack("[O]", in);
        return *ret != NULL ? ERR_OK : ERR_NOMEM;
    }
    if (!json_is_array(in) || json_array_size(in) == 0) {
        return prov_bad(bad, "must be a string or a non-empty array of strings", "input");
    }
    size_t i;
    const json_t *s;
    json_array_foreach(in, i, s)
    {
        if (!json_is_string(s)) {
            return ERR_UNSUPPORTED;
        }
    }
    *ret = json_incref((json_t *)in);
    return ERR_OK;
}

/*
 * Titan Text Embeddings V2: one text per call. A batch would be several
 * upstream calls, which one adapter build does not make (one request per
 * candidate): an array of more than one string is ERR_UNSUPPORTED, and the
 * router offers it to another candidate. dimensions must be one of the three
 * sizes Titan makes; normalize is true, as OpenAI's embeddings are
 * normalised.
 */
static enum err brk_titan_request(const json_t *oreq, const json_t *texts, struct provider_bad *bad,
                                  json_t **ret)
{
    if (json_array_size(texts) != 1) {
        return ERR_UNSUPPORTED;
    }
    const json_t *dims = json_object_get(oreq, "dimensions");
    if (dims != NULL && !json_is_null(dims)) {
        json_int_t d = json_is_integer(dims) ? json_integer_value(dims) : 0;
        if (d != 256 && d != 512 && d != 1024) {
            return prov_bad(bad, "must be 256, 512 or 1024 for Titan Text Embeddings V2",
                            "dimensions");
        }
    }
    json_t *out = json_pack("{s:O,s:b}", "inputText", json_array_get(texts, 0), "normalize", 1);
    if (out == NULL ||
        (json_is_integer(dims) && json_object_set(out, "dimensions", (json_t *)dims) != 0)) {
        json_decref(out);
        return ERR_NOMEM;
    }
    *ret = out;
    return ERR_OK;
}

/*
 * Cohere Embed v3 on Bedrock: at most BEDROCK_COHERE_MAX_TEXTS texts of at
 * most BEDROCK_COHERE_MAX_CHARS characters each; its vectors have 1024
 * dimensions, and no other size. input_type as the Cohere adapter picks it
 * (the app's when Cohere knows it, else search_document); truncate NONE: an
 * input too long is Bedrock's error, never silently cut.
 */
static enum err brk_cohere_request(const json_t *oreq, json_t *texts, struct provider_bad *bad,
                                   json_t **ret)
{
    if (json_array_size(texts) > BEDROCK_COHERE_MAX_TEXTS) {
        return prov_bad(bad, "has more inputs than Cohere on Bedrock embeds in one call (96)",
                        "input");
    }
    size_t i;
    const json_t *s;
    json_array_foreach(texts, i, s)
    {
        if (brk_chars(s) > BEDROCK_COHERE_MAX_CHARS) {
            return prov_bad(bad, "is longer than Cohere on Bedrock embeds (2048 characters)",
                            json_is_string(json_object_get(oreq, "input")) ? "input" : "input[%zu]",
                            i);
        }
    }
    const json_t *dims = json_object_get(oreq, "dimensions");
    if (dims != NULL && !json_is_null(dims) &&
        !(json_is_integer(dims) && json_integer_value(dims) == BEDROCK_COHERE_DIMENSIONS)) {
        return prov_bad(bad, "must be 1024 for Cohere Embed v3 on Bedrock", "dimensions");
    }
    const char *it = json_string_value(json_object_get(oreq, "input_type"));
    const char *input_type = "search_document";
    for (size_t k = 0; it != NULL && brk_input_types[k] != NULL; k++) {
        if (strcmp(it, brk_input_types[k]) == 0) {
            input_type = brk_input_types[k];
        }
    }
    json_t *out =
        json_pack("{s:O,s:s,s:s}", "texts", texts, "input_type", input_type, "truncate", "NONE");
    if (out == NULL) {
        return ERR_NOMEM;
    }
    *ret = out;
    return ERR_OK;
}

enum err provider_bedrock_embed_request(const json_t *oreq, const char *model,
                                        struct provider_bad *bad, json_t **ret)
{
    enum brk_embed_family fam;
    if (model == NULL || !brk_embed_family_of(model, &fam)) {
        return ERR_UNSUPPORTED;
    }
    /* Base64 is refused, as the Cohere adapter refuses it: the vectors come back as floats. */
    const char *fmt = json_string_value(json_object_get(oreq, "encoding_format"));
    if (fmt != NULL && strcmp(fmt, "float") != 0) {
        return prov_bad(bad, "must be float for Bedrock", "encoding_format");
    }
    json_t *texts = NULL;
    enum err e = brk_embed_texts(oreq, bad, &texts);
    if (e != ERR_OK) {
        return e;
    }
    e = fam == BRK_EMBED_TITAN ? brk_titan_request(oreq, texts, bad, ret)
                               : brk_cohere_request(oreq, texts, bad, ret);
    json_decref(texts);
    return e;
}

/*
 * The Host header's value for url ("scheme://authority/..."): the authority,
 * without the scheme's default port (libcurl leaves that out too, and the
 * signed value must be the one sent). ERR_CONFIG when there is none.
 */
static enum err brk_host(const char *url, char *out, size_t n, const char **ret_path)
{
    const char *a = strstr(url, "://");
    if (a == NULL) {
        return ERR_CONFIG;
    }
    bool https = strncmp(url, "https://", 8) == 0;
    a += 3;
    size_t al = strcspn(a, "/?#");
    const char *path = a + al;
    if (al == 0 || memchr(a, '@', al) != NULL || *path != '/') {
        return ERR_CONFIG; /* no userinfo: credentials are never in a URL */
    }
    if (https && al > 4 && strncmp(a + al - 4, ":443", 4) == 0) {
        al -= 4;
    } else if (!https && al > 3 && strncmp(a + al - 3, ":80", 3) == 0) {
        al -= 3;
    }
    if (al >= n || strchr(path, '?') != NULL || strchr(path, '#') != NULL) {
        return ERR_CONFIG;
    }
    memcpy(out, a, al);
    out[al] = '\0';
    *ret_path = path;
    return ERR_OK;
}

/* A region name: 1..SIGV4_MAX_REGION of a-z 0-9 -, not starting with '-'. */
static bool brk_region_ok(const char *s, size_t len)
{
    if (len == 0 || len > SIGV4_MAX_REGION || s[0] == '-') {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-')) {
            return false;
        }
    }
    return true;
}

enum err provider_bedrock_region(const char *host, const json_t *metadata, char *out, size_t n)
{
    /*
     * An AWS endpoint names its region: bedrock-runtime[-fips].<region>
     * .amazonaws.com[.cn], or a VPC endpoint's vpce-....bedrock-runtime
     * .<region>.vpce.amazonaws.com. Signing for another region always fails.
     */
    size_t hl = strcspn(host, ":");
    bool aws = (hl > 14 && strncmp(host + hl - 14, ".amazonaws.com", 14) == 0) ||
               (hl > 17 && strncmp(host + hl - 17, ".amazonaws.com.cn", 17) == 0);
    static const char *const labels[] = {"bedrock-runtime.", "bedrock-runtime-fips.", NULL};
    for (const char *const *l = labels; aws && *l != NULL; l++) {
        for (const char *p = host; (p = strstr(p, *l)) != NULL && p < host + hl; p++) {
            if (p != host && p[-1] != '.') {
                continue;
            }
            const char *r = p + strlen(*l);
            size_t rl = strcspn(r, ".:");
            if (r[rl] == '.' && brk_region_ok(r, rl) && rl < n) {
                memcpy(out, r, rl);
                out[rl] = '\0';
                return ERR_OK;
            }
        }
    }
    /* Any other host (a proxy, a test double): the key's metadata "region" says. */
    const char *md = json_string_value(json_object_get(metadata, "region"));
    if (md != NULL && brk_region_ok(md, strlen(md)) && strlen(md) < n) {
        memcpy(out, md, strlen(md) + 1);
        return ERR_OK;
    }
    return ERR_CONFIG;
}

/*
 * The IAM credential's headers: Host (set here, so that the value signed is
 * the value sent), X-Amz-Date, X-Amz-Security-Token with temporary
 * credentials, and the Authorization header, signed over the body exactly
 * as it is sent. Called once per attempt, so every retry or failover
 * candidate is signed afresh at the time it goes out.
 */
static enum err brk_sign(const struct provider_call *c, const struct awskey *k,
                         struct provider_http *out)
{
    char host[SIGV4_MAX_HOST + 1];
    char region[SIGV4_MAX_REGION + 1];
    const char *path = NULL;
    enum err e = brk_host(out->url, host, sizeof(host), &path);
    if (e == ERR_OK) {
        e = provider_bedrock_region(host, c->metadata, region, sizeof(region));
    }
    if (e != ERR_OK) {
        return e;
    }
    struct sigv4_request r = {.method = "POST",
                              .host = host,
                              .path = path,
                              .query = "",
                              .content_type = "application/json",
                              .body = out->body,
                              .body_len = out->body_len,
                              .region = region,
                              .service = "bedrock",
                              .now = c->now != 0 ? c->now : time(NULL)};
    struct sigv4_signed sig;
    e = sigv4_sign(&r, k, &sig);
    if (e != ERR_OK) {
        return e == ERR_INVAL ? ERR_CONFIG : e;
    }
    char line[sizeof(sig.authorization) + SIGV4_MAX_HOST + 32];
    snprintf(line, sizeof(line), "Host: %s", host);
    e = upstream_header_add(&out->headers, line);
    if (e == ERR_OK) {
        snprintf(line, sizeof(line), "X-Amz-Date: %s", sig.amz_date);
        e = upstream_header_add(&out->headers, line);
    }
    if (e == ERR_OK && k->token_len > 0) {
        e = upstream_header_secret_bytes(&out->headers, "X-Amz-Security-Token: ", k->token,
                                         k->token_len);
    }
    if (e == ERR_OK) {
        snprintf(line, sizeof(line), "Authorization: %s", sig.authorization);
        e = upstream_header_add(&out->headers, line);
    }
    OPENSSL_cleanse(line, sizeof(line));
    OPENSSL_cleanse(&sig, sizeof(sig));
    return e;
}

/*
 * An IAM credential (AKIA/ASIA..., or any value with a ':') signs the
 * request; anything else is a Bedrock API key, sent as a bearer token. The
 * plugin refused malformed IAM values when they were written: one that does
 * not parse here is a configuration error, never sent.
 */
static enum err brk_key(const struct provider_call *c, struct awskey *k, bool *iam)
{
    if (c->key == NULL) {
        return ERR_INVAL;
    }
    *iam = awskey_is_iam((const char *)c->key->data, c->key->len);
    if (*iam && !awskey_parse((const char *)c->key->data, c->key->len, k, NULL)) {
        return ERR_CONFIG;
    }
    return ERR_OK;
}

/* The JSON headers and the credential, for out's URL and body as they will be sent. */
static enum err brk_auth(const struct provider_call *c, const struct awskey *k, bool iam,
                         bool stream, struct provider_http *out)
{
    enum err e = prov_json_headers(out, stream ? "Accept: application/vnd.amazon.eventstream"
                                               : "Accept: application/json");
    if (e == ERR_OK && iam) {
        e = brk_sign(c, k, out);
    } else if (e == ERR_OK) {
        e = upstream_header_secret(&out->headers, "Authorization: Bearer ", c->key);
    }
    return e;
}

enum err provider_bedrock_build(const struct provider_call *c, struct provider_http *out)
{
    bool embed = c->op == PROVIDER_EMBEDDINGS;
    struct awskey k;
    bool iam = false;
    enum err e = brk_key(c, &k, &iam);
    if (e != ERR_OK) {
        return e;
    }
    json_t *body = NULL;
    e = embed ? provider_bedrock_embed_request(c->req, c->model, &out->bad, &body) : ERR_OK;
    if (e == ERR_OK) {
        e = brk_url(c, embed ? "/invoke" : c->stream ? "/converse-stream" : "/converse", out);
    }
    if (e == ERR_OK && !embed) {
        e = brk_chat_request(c, &out->bad, &body);
    }
    if (e == ERR_OK) {
        e = prov_dump(body, out);
    }
    json_decref(body);
    if (e == ERR_OK) {
        e = brk_auth(c, &k, iam, c->stream && !embed, out);
    }
    OPENSSL_cleanse(&k, sizeof(k));
    return e;
}

enum err provider_bedrock_invoke(const struct provider_call *c, char *body, size_t len,
                                 struct provider_http *out)
{
    out->body = body;
    out->body_len = len;
    struct awskey k;
    bool iam = false;
    enum err e = brk_key(c, &k, &iam);
    if (e == ERR_OK) {
        e = brk_url(c, c->stream ? "/invoke-with-response-stream" : "/invoke", out);
    }
    if (e == ERR_OK) {
        e = brk_auth(c, &k, iam, c->stream, out);
    }
    OPENSSL_cleanse(&k, sizeof(k));
    return e;
}

/* ---- the answer --------------------------------------------------------------------------- */

/* Converse's stopReason as OpenAI's finish_reason. */
static const char *brk_finish(const char *stop_reason)
{
    static const struct prov_finish_map map[] = {{"end_turn", "stop"},
                                                 {"stop_sequence", "stop"},
                                                 {"max_tokens", "length"},
                                                 {"model_context_window_exceeded", "length"},
                                                 {"tool_use", "tool_calls"},
                                                 {"guardrail_intervened", "content_filter"},
                                                 {"content_filtered", "content_filter"},
                                                 {NULL, NULL}};
    return prov_finish(map, stop_reason);
}

/* A completion id: Converse's answer has none (its request id is a response header). */
static void brk_id(char *out, size_t n)
{
    static unsigned long seq;
    snprintf(out, n, "chatcmpl-bedrock-%lld-%lu", (long long)time(NULL), ++seq);
}

enum err provider_bedrock_answer(const json_t *j, const char *model, json_t **ret,
                                 struct provider_usage *ret_usage)
{
    const json_t *msg = json_object_get(json_object_get(j, "output"), "message");
    const json_t *content = json_object_get(msg, "content");
    if (!json_is_array(content)) {
        return ERR_PROTO;
    }
    struct buf text;
    buf_init(&text, UPSTREAM_MAX_RESPONSE_CEILING);
    json_t *tool_calls = json_array();
    enum err e = tool_calls != NULL ? ERR_OK : ERR_NOMEM;
    size_t i;
    const json_t *blk;
    json_array_foreach(content, i, blk)
    {
        const json_t *t = json_object_get(blk, "text");
        const json_t *tu = json_object_get(blk, "toolUse");
        if (e != ERR_OK) {
            break;
        }
        if (json_is_string(t)) {
            e = buf_append(&text, json_string_value(t), json_string_length(t));
        } else if (tu != NULL) {
            /* Any JSON value as input: Converse's is a JSON document, serialised as it is. */
            e = prov_tool_calls_add(tool_calls, prov_tool_call(tu, "toolUseId"));
        }
        /* reasoningContent, citations and guard content carry nothing an OpenAI answer has. */
    }
    if (e != ERR_OK) {
        buf_done(&text);
        json_decref(tool_calls);
        return e;
    }
    brk_usage(json_object_get(j, "usage"), ret_usage);
    const char *finish = brk_finish(json_string_value(json_object_get(j, "stopReason")));
    json_t *message = prov_answer_message(&text, tool_calls);
    buf_done(&text);
    char id[64];
    brk_id(id, sizeof(id));
    json_t *out = json_pack("{s:s,s:s,s:I,s:s,s:[{s:i,s:o,s:s?}],s:o}", "id", id, "object",
                            "chat.completion", "created", (json_int_t)time(NULL), "model", model,
                            "choices", "index", 0, "message", message, "finish_reason",
                            finish != NULL ? finish : "stop", "usage", prov_usage_json(ret_usage));
    if (out == NULL) {
        return ERR_NOMEM;
    }
    *ret = out;
    return ERR_OK;
}

/*
 * An InvokeModel embedding answer to OpenAI's list. Titan's {"embedding",
 * "inputTextTokenCount"} carries its usage. Cohere's {"embeddings": [[...]],
 * "texts", ...} carries none in its body (Bedrock sends the count in the
 * X-Amzn-Bedrock-Input-Token-Count header, which adapters are not given): the
 * answer's usage is the agent's estimate of its texts, the one the proxy makes
 * from the request, and ret_usage stays unseen, so that the call is counted as
 * estimated.
 */
enum err provider_bedrock_embed_answer(const json_t *j, const char *model, json_t **ret,
                                       struct provider_usage *ret_usage)
{
    const json_t *one = json_object_get(j, "embedding");
    const json_t *vecs = json_object_get(j, "embeddings");
    if (json_is_object(vecs)) {
        vecs = json_object_get(vecs, "float"); /* embeddings_by_type */
    }
    json_t *data = json_array();
    if (data == NULL) {
        return ERR_NOMEM;
    }
    enum err e = ERR_OK;
    long long prompt = 0;
    if (json_is_array(one)) {
        if (json_array_append_new(data, json_pack("{s:s,s:i,s:O}", "object", "embedding", "index",
                                                  0, "embedding", one)) != 0) {
            e = ERR_NOMEM;
        }
        prompt = prov_count(json_object_get(j, "inputTextTokenCount"));
        ret_usage->prompt_tokens = prompt;
        ret_usage->completion_tokens = 0;
        ret_usage->cached_tokens = 0;
        ret_usage->seen = true;
    } else if (json_is_array(vecs)) {
        size_t i;
        const json_t *v;
        json_array_foreach(vecs, i, v)
        {
            if (!json_is_array(v)) {
                e = ERR_PROTO;
                break;
            }
            if (json_array_append_new(data, json_pack("{s:s,s:I,s:O}", "object", "embedding",
                                                      "index", (json_int_t)i, "embedding", v)) !=
                0) {
                e = ERR_NOMEM;
                break;
            }
        }
        json_t *est = json_pack("{s:O?}", "input", json_object_get(j, "texts"));
        prompt = est != NULL ? provider_prompt_estimate(PROVIDER_EMBEDDINGS, est) : 0;
        json_decref(est);
    } else {
        e = ERR_PROTO;
    }
    if (e != ERR_OK) {
        json_decref(data);
        return e;
    }
    json_t *out =
        json_pack("{s:s,s:o,s:s,s:{s:I,s:I}}", "object", "list", "data", data, "model", model,
                  "usage", "prompt_tokens", (json_int_t)prompt, "total_tokens", (json_int_t)prompt);
    if (out == NULL) {
        return ERR_NOMEM;
    }
    *ret = out;
    return ERR_OK;
}

enum err provider_bedrock_response(enum provider_op op, const char *body, size_t len,
                                   const char *model, json_t **ret_json,
                                   struct provider_usage *ret_usage)
{
    json_t *j = json_loadb(body, len, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return ERR_PROTO;
    }
    /*
     * Bedrock's error body ({"message": ...}, its type in a header) in a 2xx,
     * as a gateway may send it: the provider's error, and its text, which may
     * echo the request, is never read.
     */
    if (json_object_get(j, "output") == NULL && json_object_get(j, "embedding") == NULL &&
        json_object_get(j, "embeddings") == NULL &&
        (json_object_get(j, "message") != NULL || json_object_get(j, "Message") != NULL)) {
        json_decref(j);
        return ERR_UPSTREAM;
    }
    json_t *out = NULL;
    enum err e = op == PROVIDER_EMBEDDINGS
                     ? provider_bedrock_embed_answer(j, model != NULL ? model : "", &out, ret_usage)
                     : provider_bedrock_answer(j, model != NULL ? model : "", &out, ret_usage);
    json_decref(j);
    if (ret_json != NULL) {
        *ret_json = out;
    } else {
        json_decref(out);
    }
    return e;
}

/* ---- the stream --------------------------------------------------------------------------- */

/* The stream's id and time, at its first event (messageStart, or whatever came first). */
static void brk_stream_start(struct provider_stream *st)
{
    if (!st->started) {
        brk_id(st->id, sizeof(st->id));
        st->created = (long long)time(NULL);
        st->started = true;
    }
}

/* An event's contentBlockIndex; -1 when it has none. */
static long long brk_block_index(const json_t *ev)
{
    return prov_block_index(ev, "contentBlockIndex");
}

/* contentBlockStart of a toolUse block: opens OpenAI tool call number st->tool_calls. */
static enum err brk_block_start(struct provider_stream *st, const json_t *ev, struct buf *out)
{
    const json_t *tu = json_object_get(json_object_get(ev, "start"), "toolUse");
    if (tu == NULL) {
        return ERR_OK;
    }
    return prov_stream_tool_start(st, tu, "toolUseId", brk_block_index(ev), out);
}

/* contentBlockDelta: text, or a fragment of the open tool call's input. */
static enum err brk_block_delta(struct provider_stream *st, const json_t *ev, struct buf *out)
{
    const json_t *d = json_object_get(ev, "delta");
    const json_t *text = json_object_get(d, "text");
    const json_t *input = json_object_get(json_object_get(d, "toolUse"), "input");
    if (json_is_string(text)) {
        return prov_stream_text(st, text, out);
    }
    /* Else a fragment of the open tool call's input; reasoningContent and the like: nothing. */
    return prov_stream_tool_args(st, input, brk_block_index(ev), out);
}

/* metadata, the stream's last event: its usage, then the usage chunk and [DONE]. */
static enum err brk_metadata(struct provider_stream *st, const json_t *ev, struct buf *out)
{
    if (json_is_object(json_object_get(ev, "usage"))) {
        brk_usage(json_object_get(ev, "usage"), &st->usage);
        st->usage_final = true;
    }
    return prov_stream_end(st, NULL, out);
}

enum err provider_bedrock_stream_event(struct provider_stream *st, const char *event,
                                       const char *data, size_t len, struct buf *out)
{
    if (strcmp(event, "error") == 0) {
        st->failed = true; /* its text is never read: it may echo the request */
        return ERR_OK;
    }
    json_t *j = json_loadb(data, len, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return ERR_PROTO;
    }
    brk_stream_start(st);
    enum err e = ERR_OK;
    if (strcmp(event, "messageStart") == 0) {
        e = prov_stream_role(st, out);
    } else if (strcmp(event, "contentBlockStart") == 0) {
        e = brk_block_start(st, j, out);
    } else if (strcmp(event, "contentBlockDelta") == 0) {
        e = brk_block_delta(st, j, out);
    } else if (strcmp(event, "contentBlockStop") == 0) {
        prov_stream_tool_stop(st, brk_block_index(j));
    } else if (strcmp(event, "messageStop") == 0) {
        const char *finish = brk_finish(json_string_value(json_object_get(j, "stopReason")));
        e = prov_emit(out, prov_chunk(st, json_object(), finish != NULL ? finish : "stop"));
    } else if (strcmp(event, "metadata") == 0) {
        e = brk_metadata(st, j, out);
    }
    /* Any other event type is one this translation does not know: nothing of it goes out. */
    json_decref(j);
    return e;
}
