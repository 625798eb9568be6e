/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The provider catalog: built-in entries for the 15 providers byok knows,
 * overridable by admin writes stored under "providers/<name>" (see docs/api.md
 * for the entry shape). A delete of an override restores the built-in entry.
 */
#ifndef BYOK_PLUGIN_CATALOG_H
#define BYOK_PLUGIN_CATALOG_H

#include <jansson.h>
#include <stdbool.h>

#include "common/err.h"
#include "plugin/framework.h"
#include "plugin/storage.h"

struct byok;

#define CATALOG_STORAGE_PREFIX "providers/"
#define CATALOG_MAX_MODELS 512

/* Limits on admin-written entries (docs/api.md), each a 400 naming the field. */
#define CATALOG_MAX_DISPLAY_NAME 128
#define CATALOG_MAX_URL 512
#define CATALOG_MAX_MODEL_NAME 128
#define CATALOG_MAX_PREFIXES 16
#define CATALOG_MAX_PREFIX_LEN 32
#define CATALOG_MAX_KEY_MIN_LENGTH 8192
#define CATALOG_MAX_TOKENS 100000000    /* context window / output tokens */
#define CATALOG_MAX_PRICE 100000.0      /* USD per 1M tokens: above it is a typo, not a price */
#define CATALOG_MAX_SEARCH_PRICE 1000.0 /* USD per 1,000 web searches ($1 a search) */
#define CATALOG_MAX_PROVIDERS 1024      /* admin entries (new providers and overrides) */

/*
 * The effective entry for a provider (override if any, else built-in) as a new
 * reference, with "builtin" and "overridden" set. ERR_NOTFOUND for an unknown provider.
 */
MUST_USE enum err catalog_get(struct byok *b, struct storage *st, const char *name,
                              json_t **ret_entry);

/*
 * As catalog_get, but the cached entry itself: shared and immutable (never
 * modify it), cheap enough for every key write and creds read.
 */
MUST_USE enum err catalog_get_shared(struct byok *b, struct storage *st, const char *name,
                                     json_t **ret_entry);

/* Is this a built-in provider name? */
bool catalog_is_builtin(const char *name);

/* The capability names a model may list (and a key's permissions): CATALOG_CAPABILITIES. */
#define CATALOG_CAPABILITIES "chat, embedding, vision, tools, json, streaming, reasoning, code"
bool catalog_capability_valid(const char *s);

/* The built-in entry (new reference) or NULL. */
json_t *catalog_builtin(const char *name);

/*
 * Price of a call in USD from an entry's model list: tokens x price per 1M,
 * every prompt token at input_per_1m, or at long_input_per_1m (and output at
 * long_output_per_1m) when prompt_tokens exceed the model's
 * long_context_threshold (no prompt-cache parts or web searches: the agent
 * prices those, agent/providers.h provider_cost). ERR_NOTFOUND when the model
 * is not in the entry.
 */
MUST_USE enum err catalog_price(const json_t *entry, const char *model, long long prompt_tokens,
                                long long completion_tokens, double *ret_usd);

/* Paths: providers/ (list), providers/<name> (read, create, update, delete). */
extern const struct fw_path paths_providers[];

#endif
