/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The router: turns the request's `model` (and X-BYOK-Task / X-BYOK-Tier)
 * into an ordered list of (provider, model) candidates to try.
 *   "auto"              tenant's preferred_providers, then fallback_providers,
 *                       then any other provider with a key; per provider its
 *                       default_model if it fits the task and tier, else the
 *                       cheapest model that does
 *   "<provider>/<model>" exactly that (provider must be a configured name)
 *   "<model>"           every provider whose catalog lists the model
 * Whatever the mode, the tenant's settings bind: residency (the provider's
 * catalog regions, local providers always), budget_tier (lowered further by
 * X-BYOK-Tier), allowed_task_types, and the model's capability for the
 * operation; and so do the permissions of the tenant's key for the provider
 * (what the request uses: chat or embedding, streaming, tools, vision, json). auto and bare names
 * also skip models whose context window or max output cannot hold the request (an estimate: an
 * explicit choice is sent as asked and the provider says if it does not fit). The strategy
 * (enum route_strategy) may then rank the candidates by cost. Pure functions over catalog JSON:
 * no I/O, no logging.
 */
#ifndef BYOK_AGENT_ROUTE_H
#define BYOK_AGENT_ROUTE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "agent/config.h"
#include "agent/providers.h"
#include "common/err.h"

#define ROUTE_MAX_CANDIDATES 16
/* A model name the plugin's usage ledger accepts: 1..128 printable ASCII, no spaces. */
#define ROUTE_MAX_MODEL 128

enum route_kind { ROUTE_AUTO, ROUTE_EXPLICIT, ROUTE_BARE };

/*
 * How candidates are ranked (the tenant's routing_strategy, or X-BYOK-Route):
 *   ordered   the tenant's order (preferred, fallback, the rest)
 *   cheapest  by the call's estimated cost at catalog prices (route_plan; with
 *             "auto" each provider's cheapest fitting model, not its default)
 *   fastest   by the speed this node observed (latency.h; applied by the proxy)
 *   weighted  drawn at random by the tenant's provider_weights (route_rank_weighted;
 *             applied by the proxy), the unweighted ones after them
 *   balanced  by a mix of estimated cost and observed speed, the tenant's
 *             speed_weight percent of it speed (route_rank_balanced; applied by the proxy)
 * Ties keep the tenant's order. Whatever the strategy, demoted providers go last.
 */
enum route_strategy {
    ROUTE_ORDERED,
    ROUTE_CHEAPEST,
    ROUTE_FASTEST,
    ROUTE_WEIGHTED,
    ROUTE_BALANCED
};
#define ROUTE_STRATEGY_COUNT 5
/* The balanced strategy's share of speed, in percent, when the tenant set none. */
#define ROUTE_DEFAULT_SPEED_WEIGHT 50

struct route_candidate {
    char provider[CONFIG_MAX_NAME + 1];
    char model[ROUTE_MAX_MODEL + 1];
    double cost; /* the call's estimated cost on it, USD at catalog prices (route_plan) */
};

/* A provider the tenant has a key for, with its catalog entry and the tenant settings. */
struct route_view {
    const char *provider;
    const json_t *entry;
    const json_t *settings;
    const json_t *permissions; /* the key's (creds "permissions"); NULL or [] = any use */
};

/* What a request uses, as key permission names (a key's "permissions" must hold each). */
enum route_need {
    ROUTE_NEED_CHAT = 1 << 0,      /* "chat": /v1/chat/completions (and the platform's chat) */
    ROUTE_NEED_EMBEDDING = 1 << 1, /* "embedding": /v1/embeddings */
    ROUTE_NEED_STREAMING = 1 << 2, /* "streaming": "stream": true */
    ROUTE_NEED_TOOLS = 1 << 3,     /* "tools": non-empty tools or functions */
    ROUTE_NEED_VISION = 1 << 4,    /* "vision": an image part in a message */
    ROUTE_NEED_JSON = 1 << 5,      /* "json": response_format json_object or json_schema */
};
#define ROUTE_NEED_COUNT 6

struct route_want {
    const char *model; /* as the app sent it */
    const char *task;  /* X-BYOK-Task or NULL */
    const char *tier;  /* X-BYOK-Tier or NULL */
    enum provider_op op;
    long long prompt_tokens; /* estimate of the request's prompt, 0 = unknown */
    long long max_output;    /* max_tokens / max_completion_tokens asked, 0 = none */
    unsigned needs;          /* enum route_need bits (route_needs) */
    enum route_strategy strategy;
    long long default_output; /* output tokens a chat without max_output is priced at (cheapest) */
    /*
     * May a catalog model of entry serve the request at all? NULL: any. The
     * Messages API's filter (Claude models only on Bedrock): a model it
     * refuses is left out without a reason, as one not listed is.
     */
    bool (*model_ok)(const json_t *entry, const char *model);
};

/* Why a candidate was left out (larger = reported first when nothing is left). */
enum route_refusal {
    ROUTE_FITS,       /* not refused */
    ROUTE_CAPABILITY, /* the model cannot do this operation (chat, embeddings) */
    ROUTE_CONTEXT, /* prompt + max_tokens over its context window, or max_tokens over its max output
                    */
    ROUTE_TIER,    /* above the tenant's budget_tier or X-BYOK-Tier */
    ROUTE_RESIDENCY,  /* the provider does not serve from the tenant's residency */
    ROUTE_PERMISSION, /* the tenant's key for the provider does not permit what the request uses */
};

/*
 * Classifies model. For ROUTE_EXPLICIT fills ret->provider/model; providers
 * is the configured list of provider names. ERR_INVAL for an empty name, a
 * model part over ROUTE_MAX_MODEL, or a character outside printable ASCII
 * (spaces included).
 */
MUST_USE enum err route_classify(const char *model, const struct config_strlist *providers,
                                 enum route_kind *ret_kind, struct route_candidate *ret);

/*
 * Plans candidates for ROUTE_AUTO / ROUTE_BARE over views (in configured
 * order). ERR_NOTFOUND: nothing fits; *ret_why says why the last candidates
 * were left out (ROUTE_FITS: no provider with a key lists such a model).
 * ERR_DENIED: the task type is not in the tenant's allowed_task_types.
 * ERR_INVAL: unknown tier or task.
 */
MUST_USE enum err route_plan(enum route_kind kind, const struct route_want *w,
                             const struct route_view *views, size_t n_views,
                             struct route_candidate *out, size_t *ret_n,
                             enum route_refusal *ret_why);

/*
 * Checks an explicit <provider>/<model> against the tenant's settings in
 * v->settings: ERR_INVAL unknown hint, ERR_DENIED task not allowed,
 * ERR_NOTFOUND refused with *ret_why (residency, tier, capability; the
 * context window is not checked here). A model the catalog does not list
 * (a local server's, with an empty model list) is checked for residency only.
 */
MUST_USE enum err route_check(const struct route_want *w, const struct route_view *v,
                              const char *model, enum route_refusal *ret_why);

/*
 * May the tenant (settings) use catalog model m of provider entry at all:
 * residency and budget_tier (for GET /v1/models).
 */
bool route_usable(const json_t *settings, const json_t *entry, const json_t *m);

/* What request req (already validated for op) uses: enum route_need bits. */
unsigned route_needs(enum provider_op op, const json_t *req);

/* The name of need bit (one of enum route_need), e.g. "streaming". */
const char *route_need_name(unsigned need);

/*
 * The first of needs that permissions (a key's list of names; NULL or empty:
 * any use) does not hold, as an enum route_need bit; 0 when it permits all.
 */
unsigned route_unpermitted(const json_t *permissions, unsigned needs);

/* May a key with permissions be used for catalog model m at all (chat or embedding)? */
bool route_model_permitted(const json_t *permissions, const json_t *m);

/* Are X-BYOK-Task / X-BYOK-Tier (NULL = absent) known values? */
bool route_hints_valid(const char *task, const char *tier);

/* Is the task allowed by settings.allowed_task_types (empty = all)? ERR_INVAL: unknown task. */
MUST_USE enum err route_task_allowed(const json_t *settings, const char *task);

/*
 * The strategy named name ("ordered", "cheapest", "fastest", "weighted", "balanced"):
 * ERR_INVAL for any other (NULL included).
 */
MUST_USE enum err route_strategy_of(const char *name, enum route_strategy *ret);

/* The strategy's name. */
const char *route_strategy_name(enum route_strategy s);

/*
 * The "weighted" strategy: reorders the n candidates so that those whose
 * provider has a weight above 0 in weights (the tenant's provider_weights,
 * {provider: integer}) come first, in a weighted random order (each next one
 * drawn from those left with probability weight / sum of the weights left),
 * followed by the others in the order given. With no weighted candidate the
 * order is unchanged. *rng is the generator's state (any value; advanced).
 */
void route_rank_weighted(struct route_candidate *cands, size_t n, const json_t *weights,
                         unsigned long long *rng);

/*
 * The "balanced" strategy: reorders the n candidates by a score mixing each
 * one's estimated cost (cands[i].cost) and expected seconds to an answer
 * (speed[i], as latency_score gives it), each relative to the largest among
 * the candidates: (100 - speed_weight)% of cost / max cost plus
 * speed_weight% of speed / max speed; lower first, ties in the order given.
 * A candidate not measured within the ttl (LATENCY_UNKNOWN) counts as
 * instant, so that a call goes to it and measures it unless its cost rules
 * it out; one being measured by another call (LATENCY_PROBING) counts the
 * mean speed of the measured ones; with none measured, cost alone ranks.
 * One that only failed (LATENCY_FAILING) goes last. A
 * speed_weight outside 0..100 counts as ROUTE_DEFAULT_SPEED_WEIGHT.
 */
void route_rank_balanced(struct route_candidate *cands, size_t n, const double *speed,
                         long long speed_weight);

/* Rank of a tier name (FREE=0 .. UNLIMITED=4) or -1. */
int route_tier_rank(const char *tier);

#endif
