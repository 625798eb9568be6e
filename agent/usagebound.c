/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The reservation estimate of a request and the bounds on a provider's
 * reported usage (see usagebound.h). The estimate is deliberately crude and
 * generous (every key and string of the request, media at a fixed cost): it
 * only decides how much of a limit is held while the call runs, and the
 * call's real usage replaces it. It is not the router's prompt estimate,
 * which checks context windows and must not refuse calls that fit.
 */
#include "agent/usagebound.h"

#include <string.h>

#include "agent/provider_util.h"

/* Content part types that carry an image, audio clip or file (OpenAI chat and Responses,
   Anthropic Messages). */
static bool usagebound_media_part(const json_t *obj)
{
    static const char *const types[] = {"image_url", "image", "input_image", "input_audio",
                                        "document",  "file",  "input_file"};
    const char *t = json_string_value(json_object_get(obj, "type"));
    if (t == NULL) {
        return false;
    }
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (strcmp(t, types[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* Media bytes inside a media part, counted by the part's fixed cost rather than as text:
   a data: URL (OpenAI's image_url.url, file.file_data), or "data" beside a media_type
   (Anthropic's base64 source) or a format (OpenAI's input_audio). Elsewhere (a tool's
   description, a schema) such strings are text like any other. */
static bool usagebound_media_data(const json_t *obj, const char *key, const json_t *v)
{
    const char *s = json_string_value(v);
    if (strncmp(s, "data:", 5) == 0) {
        return true;
    }
    return strcmp(key, "data") == 0 &&
           (json_object_get(obj, "media_type") != NULL || json_object_get(obj, "format") != NULL);
}

/*
 * The request's frame, which the per-message and per-reply tokens stand for
 * (provider_prompt_estimate's): these names are not counted, nor a value of
 * model, role or type up to USAGEBOUND_TAG_CHARS (a longer one is: it could
 * hold anything). All are short constants, so no bulk can hide in them.
 */
static bool usagebound_frame_key(const char *key)
{
    static const char *const names[] = {"model", "messages", "role",   "content",
                                        "text",  "type",     "stream", "max_tokens"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(key, names[i]) == 0) {
            return true;
        }
    }
    return false;
}

static bool usagebound_frame_value(const char *key, const json_t *v)
{
    return (strcmp(key, "model") == 0 || strcmp(key, "role") == 0 || strcmp(key, "type") == 0) &&
           json_string_length(v) <= USAGEBOUND_TAG_CHARS;
}

struct usagebound_count {
    long long chars;
    long long media;
};

/*
 * part: v is an element of a "content" array (a content part: only there is
 * a media part one); in_media: v lies inside a media part.
 */
static void usagebound_walk(const json_t *v, int depth, bool part, bool in_media,
                            struct usagebound_count *n)
{
    if (json_is_string(v)) {
        n->chars += (long long)json_string_length(v);
        return;
    }
    if (!json_is_object(v) && !json_is_array(v)) {
        return; /* numbers, booleans, null: a few characters at most */
    }
    if (depth <= 0) {
        /* Its compact JSON text's size (jansson computes it without writing). */
        n->chars += (long long)json_dumpb(v, NULL, 0, JSON_COMPACT);
        return;
    }
    size_t i;
    const json_t *e;
    if (json_is_array(v)) {
        json_array_foreach(v, i, e)
        {
            usagebound_walk(e, depth - 1, part, in_media, n); /* part: this is a content array */
        }
        return;
    }
    if (part && !in_media && usagebound_media_part(v)) {
        n->media++;
        in_media = true;
    }
    const char *key;
    json_object_foreach((json_t *)v, key, e)
    {
        if (!usagebound_frame_key(key)) {
            n->chars += (long long)strlen(key);
        }
        if (json_is_string(e) &&
            ((in_media && usagebound_media_data(v, key, e)) || usagebound_frame_value(key, e))) {
            continue;
        }
        usagebound_walk(e, depth - 1, json_is_array(e) && strcmp(key, "content") == 0, in_media, n);
    }
}

long long usagebound_request_tokens(const json_t *req)
{
    if (!json_is_object(req)) {
        return 0;
    }
    /* The request is bounded by limits.max_body_bytes: these sums cannot overflow. */
    struct usagebound_count n = {0, 0};
    usagebound_walk(req, USAGEBOUND_MAX_DEPTH, false, false, &n);
    const json_t *msgs = json_object_get(req, "messages");
    long long turns = json_is_array(msgs) ? (long long)json_array_size(msgs) : 0;
    long long tokens = prov_est_tokens(n.chars) + n.media * USAGEBOUND_MEDIA_TOKENS +
                       turns * USAGEBOUND_TOKENS_PER_MESSAGE +
                       (turns > 0 ? USAGEBOUND_TOKENS_REPLY : 0);
    return prov_min(tokens, PROVIDER_MAX_TOKENS);
}

const char *usagebound_field_name(unsigned bit)
{
    switch (bit) {
    case USAGEBOUND_PROMPT:
        return "prompt";
    case USAGEBOUND_COMPLETION:
        return "completion";
    case USAGEBOUND_SEARCHES:
        return "web_search";
    default:
        return "";
    }
}

/* A catalog model's positive integer field; 0 when absent or not one. */
static long long usagebound_count_of(const json_t *m, const char *field)
{
    const json_t *v = json_object_get(m, field);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (long long)json_integer_value(v) : 0;
}

static const json_t *usagebound_model(const json_t *entry, const char *model)
{
    size_t i;
    const json_t *m;
    json_array_foreach(json_object_get(entry, "models"), i, m)
    {
        const char *name = json_string_value(json_object_get(m, "name"));
        if (name != NULL && model != NULL && strcmp(name, model) == 0) {
            return m;
        }
    }
    return NULL;
}

/* The web searches the request allows: the sum of its web search tools' max_uses when each
   sets one, else USAGEBOUND_MAX_WEB_SEARCHES. */
static long long usagebound_searches(const json_t *req)
{
    long long sum = 0;
    size_t i;
    const json_t *t;
    json_array_foreach(json_object_get(req, "tools"), i, t)
    {
        const char *type = json_string_value(json_object_get(t, "type"));
        if (type == NULL || strncmp(type, "web_search", 10) != 0) {
            continue;
        }
        long long uses = usagebound_count_of(t, "max_uses");
        if (uses == 0) {
            return USAGEBOUND_MAX_WEB_SEARCHES;
        }
        sum += prov_min(uses, USAGEBOUND_MAX_WEB_SEARCHES);
    }
    return sum > 0 ? prov_min(sum, USAGEBOUND_MAX_WEB_SEARCHES) : USAGEBOUND_MAX_WEB_SEARCHES;
}

/* a x b, at most PROVIDER_MAX_TOKENS (both are 1..PROVIDER_MAX_TOKENS: no overflow). */
static long long usagebound_mul(long long a, long long b)
{
    return a > PROVIDER_MAX_TOKENS / b ? PROVIDER_MAX_TOKENS : a * b;
}

/* Lowers *v to at most max (and to at least 0); true when it did. */
static bool usagebound_cap(long long *v, long long max)
{
    if (*v < 0) {
        *v = 0;
    }
    if (*v <= max) {
        return false;
    }
    *v = max;
    return true;
}

unsigned usagebound_clamp(const json_t *entry, const char *model, enum provider_op op,
                          const json_t *req, bool reported, struct provider_usage *u)
{
    unsigned clamped = 0;
    const json_t *m = usagebound_model(entry, model);
    if (usagebound_cap(&u->web_search_requests, usagebound_searches(req))) {
        clamped |= USAGEBOUND_SEARCHES;
    }
    long long turns = 1 + u->web_search_requests;

    long long window = usagebound_count_of(m, "context_window");
    if (window > 0 && usagebound_count_of(m, "long_context_threshold") > 0 &&
        window < USAGEBOUND_LONG_CONTEXT_WINDOW) {
        window = USAGEBOUND_LONG_CONTEXT_WINDOW;
    }
    long long prompt_max = PROVIDER_MAX_TOKENS;
    if (window > 0) {
        long long inputs = op == PROVIDER_EMBEDDINGS ? (long long)provider_embed_inputs(req) : 1;
        prompt_max = usagebound_mul(usagebound_mul(window, turns), inputs > 0 ? inputs : 1);
    }
    if (usagebound_cap(&u->prompt_tokens, prompt_max)) {
        clamped |= USAGEBOUND_PROMPT;
    }
    /* The parts within the whole (provider_cost bounds them the same way). */
    bool parts = usagebound_cap(&u->cached_tokens, u->prompt_tokens);
    parts |= usagebound_cap(&u->cache_write_tokens, u->prompt_tokens - u->cached_tokens);
    parts |= usagebound_cap(&u->cache_write_1h_tokens, u->cache_write_tokens);
    if (parts) {
        clamped |= USAGEBOUND_PROMPT;
    }

    long long out = prov_max_output(req);
    long long model_out = usagebound_count_of(m, "max_output_tokens");
    /* A reported count: never the request's cap (usagebound.h). */
    if (reported || out <= 0 || (model_out > 0 && model_out < out)) {
        out = model_out > 0 ? model_out : window;
    }
    long long completion_max = PROVIDER_MAX_TOKENS;
    if (out > 0) {
        long long n = usagebound_count_of(req, "n");
        n = n > 0 ? prov_min(n, USAGEBOUND_MAX_CHOICES) : 1;
        completion_max =
            usagebound_mul(usagebound_mul(prov_min(out, PROVIDER_MAX_TOKENS), n), turns);
    }
    if (usagebound_cap(&u->completion_tokens, completion_max)) {
        clamped |= USAGEBOUND_COMPLETION;
    }
    return clamped;
}
