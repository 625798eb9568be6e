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
 * Pure functions over catalog JSON: no I/O, no logging.
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
#define ROUTE_MAX_MODEL 256

enum route_kind { ROUTE_AUTO, ROUTE_EXPLICIT, ROUTE_BARE };

struct route_candidate {
    char provider[CONFIG_MAX_NAME + 1];
    char model[ROUTE_MAX_MODEL + 1];
};

/* A provider the tenant has a key for, with its catalog entry and the tenant settings. */
struct route_view {
    const char *provider;
    const json_t *entry;
    const json_t *settings;
};

struct route_want {
    const char *model; /* as the app sent it */
    const char *task;  /* X-BYOK-Task or NULL */
    const char *tier;  /* X-BYOK-Tier or NULL */
    enum provider_op op;
};

/*
 * Classifies model. For ROUTE_EXPLICIT fills ret->provider/model; providers
 * is the configured list of provider names. ERR_INVAL for an empty or too long
 * model name.
 */
MUST_USE enum err route_classify(const char *model, const struct config_strlist *providers,
                                 enum route_kind *ret_kind, struct route_candidate *ret);

/*
 * Plans candidates for ROUTE_AUTO / ROUTE_BARE over views (in configured
 * order). ERR_NOTFOUND: nothing fits (unknown model / no key). ERR_DENIED: the
 * task type is not in the tenant's allowed_task_types. ERR_INVAL: unknown tier or task.
 */
MUST_USE enum err route_plan(enum route_kind kind, const struct route_want *w,
                             const struct route_view *views, size_t n_views,
                             struct route_candidate *out, size_t *ret_n);

/* Is the task allowed by settings.allowed_task_types (empty = all)? ERR_INVAL: unknown task. */
MUST_USE enum err route_task_allowed(const json_t *settings, const char *task);

/* Rank of a tier name (FREE=0 .. UNLIMITED=4) or -1. */
int route_tier_rank(const char *tier);

#endif
