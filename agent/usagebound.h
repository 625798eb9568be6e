/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Bounds on what one call is counted with, before and after it is made.
 *
 * Before: what the tenant's tpm_limit and monthly budget reserve must cover
 * the whole request. The router's prompt estimate (provider_prompt_estimate,
 * messages_prompt_estimate) counts message and system text only, which is
 * right for checking a context window but lets an app put its bulk where
 * nothing is reserved for it (tools, tool call arguments, tool_use input,
 * response_format schemas). usagebound_request_tokens counts every string and
 * key of the request instead, media at a fixed cost.
 *
 * After: a provider's reported usage is bounded by what the request and the
 * model allow (usagebound_clamp), so that a buggy or hostile reply cannot book
 * a call at an absurd cost.
 *
 * Pure functions of their arguments: no logging, no metrics (the proxy does).
 */
#ifndef BYOK_AGENT_USAGEBOUND_H
#define BYOK_AGENT_USAGEBOUND_H

#include <jansson.h>

#include "agent/providers.h"

/*
 * Tokens one inline or linked image, audio clip or file (a content part of type
 * image_url, image, input_image, input_audio, document, file or input_file)
 * counts in usagebound_request_tokens, its base64 data not counted as text.
 * About what Anthropic bills for an image at its largest size (1568 px long
 * edge, ~1,600 tokens) and twice OpenAI's high-detail 1024x1024 image (765).
 */
#define USAGEBOUND_MEDIA_TOKENS 1600
/* Tokens per chat message and per reply, as provider_prompt_estimate counts them. */
#define USAGEBOUND_TOKENS_PER_MESSAGE 4
#define USAGEBOUND_TOKENS_REPLY 3
/* The longest value of model, role or type not counted (the request's frame). */
#define USAGEBOUND_TAG_CHARS 64
/* Nesting walked key by key; deeper values count their compact JSON text. */
#define USAGEBOUND_MAX_DEPTH 64
/*
 * The prompt tokens one call may be counted with on a model whose catalog
 * entry has a long-context tier (long_context_threshold): its context_window
 * is the standard one, and the long window (Anthropic's 1M-token beta,
 * Gemini's 1,048,576) is not in the catalog.
 */
#define USAGEBOUND_LONG_CONTEXT_WINDOW 1048576LL
/*
 * The web searches one call may be counted with when the request's web search
 * tools do not all set max_uses (or it declares none: a provider may search
 * on its own, e.g. OpenRouter's :online models).
 */
#define USAGEBOUND_MAX_WEB_SEARCHES 100
/* The most completions (OpenAI's n) a completion bound is multiplied by. */
#define USAGEBOUND_MAX_CHOICES 128

/*
 * Prompt tokens a request is reserved at (tpm_limit, monthly budget): the
 * characters of every key and string value of req / 4 (rounded up, the rate
 * of provider_prompt_estimate), except base64 media (data: URLs, "data" of
 * an object with a media_type or format) and the request's frame (the names
 * model, messages, role, content, text, type, stream and max_tokens, and
 * values of model, role and type up to USAGEBOUND_TAG_CHARS, which the
 * per-message tokens stand for), plus USAGEBOUND_MEDIA_TOKENS per
 * media part, USAGEBOUND_TOKENS_PER_MESSAGE per element of messages,
 * USAGEBOUND_TOKENS_REPLY when there is one. For any shape of
 * request (chat, Messages, the Responses API's chat translation,
 * embeddings). At most PROVIDER_MAX_TOKENS; 0 for NULL. Never less than
 * the text alone: the caller takes the larger of this and its prompt
 * estimate (token-id inputs count in that one).
 */
long long usagebound_request_tokens(const json_t *req);

/* Which counts usagebound_clamp lowered (a bit set). */
enum usagebound_field {
    USAGEBOUND_PROMPT = 1U << 0,     /* prompt_tokens (cached and cache writes follow it) */
    USAGEBOUND_COMPLETION = 1U << 1, /* completion_tokens */
    USAGEBOUND_SEARCHES = 1U << 2,   /* web_search_requests */
};
#define USAGEBOUND_FIELDS 3

/* The metric and log name of one bit of enum usagebound_field ("prompt", ...); "" for others. */
const char *usagebound_field_name(unsigned bit);

/*
 * Bounds u, the usage a call of op (req, the request as the adapter got it,
 * OpenAI- or Messages-shaped) is counted with, on catalog model model of
 * entry:
 *   web_search_requests <= the sum of max_uses of the request's tools whose
 *     type starts with "web_search", when every one sets it; else
 *     USAGEBOUND_MAX_WEB_SEARCHES;
 *   prompt_tokens <= the model's context_window (at least
 *     USAGEBOUND_LONG_CONTEXT_WINDOW with a long-context tier) x (1 + the
 *     searches: each server-tool turn reads the conversation again) x the
 *     number of inputs for embeddings; cached, cache-write and 1-hour
 *     cache-write tokens <= what is left of it;
 *   completion_tokens <= the request's max_completion_tokens or max_tokens,
 *     else the model's max_output_tokens, else its context_window, x n
 *     (at most USAGEBOUND_MAX_CHOICES) x (1 + the searches). For a count the
 *     provider reported (reported true), never the request's cap: the model's
 *     max_output_tokens, else its context_window (a provider may count
 *     reasoning or thinking tokens beyond the cap, and what it bills must not
 *     be cut to it; the agent's own estimates, reported false, are).
 * A bound the catalog does not give (no such model, no context_window) is
 * PROVIDER_MAX_TOKENS, the parsers' own. Returns the enum usagebound_field
 * bits of the counts it lowered (0: u unchanged).
 */
unsigned usagebound_clamp(const json_t *entry, const char *model, enum provider_op op,
                          const json_t *req, bool reported, struct provider_usage *u);

#endif
