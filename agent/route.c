/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Candidate planning. Tasks map to catalog capabilities through a static
 * table; a model without a capabilities list is taken to be a chat model.
 * Not done here: health, observed latency or budget ranking (later issues).
 */
#include "agent/route.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *task;
    const char *capability;
} route_tasks[] = {
    {"chat", "chat"},     {"code", "code"},           {"analysis", "chat"},
    {"creative", "chat"}, {"summarization", "chat"},  {"embedding", "embedding"},
    {"vision", "vision"}, {"reasoning", "reasoning"},
};

static const char *const route_tiers[] = {"FREE", "LOW", "MEDIUM", "HIGH", "UNLIMITED"};

int route_tier_rank(const char *tier)
{
    for (int i = 0; i < 5; i++) {
        if (tier != NULL && strcmp(tier, route_tiers[i]) == 0) {
            return i;
        }
    }
    return -1;
}

static const char *route_task_cap(const char *task)
{
    for (size_t i = 0; i < sizeof(route_tasks) / sizeof(route_tasks[0]); i++) {
        if (strcmp(route_tasks[i].task, task) == 0) {
            return route_tasks[i].capability;
        }
    }
    return NULL;
}

enum err route_task_allowed(const json_t *settings, const char *task)
{
    if (task == NULL) {
        return ERR_OK;
    }
    if (route_task_cap(task) == NULL) {
        return ERR_INVAL;
    }
    const json_t *allowed = json_object_get(settings, "allowed_task_types");
    if (json_array_size(allowed) == 0) {
        return ERR_OK;
    }
    size_t i;
    const json_t *v;
    json_array_foreach(allowed, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), task) == 0) {
            return ERR_OK;
        }
    }
    return ERR_DENIED;
}

enum err route_classify(const char *model, const struct config_strlist *providers,
                        enum route_kind *ret_kind, struct route_candidate *ret)
{
    size_t n = strlen(model);
    if (n == 0 || n > ROUTE_MAX_MODEL) {
        return ERR_INVAL;
    }
    for (const char *p = model; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            return ERR_INVAL;
        }
    }
    if (strcmp(model, "auto") == 0) {
        *ret_kind = ROUTE_AUTO;
        return ERR_OK;
    }
    const char *slash = strchr(model, '/');
    if (slash != NULL && slash != model && slash[1] != '\0' &&
        (size_t)(slash - model) <= CONFIG_MAX_NAME) {
        for (size_t i = 0; i < providers->n; i++) {
            const char *pn = providers->items[i];
            if (strlen(pn) == (size_t)(slash - model) && memcmp(pn, model, strlen(pn)) == 0) {
                snprintf(ret->provider, sizeof(ret->provider), "%s", pn);
                snprintf(ret->model, sizeof(ret->model), "%s", slash + 1);
                *ret_kind = ROUTE_EXPLICIT;
                return ERR_OK;
            }
        }
    }
    snprintf(ret->model, sizeof(ret->model), "%s", model);
    *ret_kind = ROUTE_BARE;
    return ERR_OK;
}

static bool route_has_cap(const json_t *m, const char *cap)
{
    const json_t *caps = json_object_get(m, "capabilities");
    if (!json_is_array(caps) || json_array_size(caps) == 0) {
        return strcmp(cap, "chat") == 0;
    }
    size_t i;
    const json_t *c;
    json_array_foreach(caps, i, c)
    {
        if (json_is_string(c) && strcmp(json_string_value(c), cap) == 0) {
            return true;
        }
    }
    return false;
}

static bool route_fits(const json_t *m, const char *op_cap, const char *task_cap, int tier)
{
    if (!route_has_cap(m, op_cap)) {
        return false;
    }
    if (task_cap != NULL && strcmp(task_cap, op_cap) != 0 && !route_has_cap(m, task_cap)) {
        return false;
    }
    const char *mt = json_string_value(json_object_get(m, "tier"));
    int r = mt != NULL ? route_tier_rank(mt) : 0;
    return r >= 0 && r <= tier;
}

static double route_price(const json_t *m)
{
    return json_number_value(json_object_get(m, "input_per_1m")) +
           json_number_value(json_object_get(m, "output_per_1m"));
}

/*
 * A catalog model's name when it can be a candidate: 1..ROUTE_MAX_MODEL
 * characters. The plugin checks names when the catalog is written; an entry
 * that still holds another (an older plugin, a damaged store) is skipped
 * rather than sent upstream empty or cut short.
 */
static const char *route_model_name(const json_t *m)
{
    const char *name = json_string_value(json_object_get(m, "name"));
    return name != NULL && name[0] != '\0' && strlen(name) <= ROUTE_MAX_MODEL ? name : NULL;
}

/* The provider's model for this want: default_model if it fits, else the cheapest that does. */
static const char *route_pick_model(const json_t *entry, const char *op_cap, const char *task_cap,
                                    int tier)
{
    const json_t *models = json_object_get(entry, "models");
    const char *def = json_string_value(json_object_get(entry, "default_model"));
    const json_t *best = NULL;
    size_t i;
    const json_t *m;
    json_array_foreach(models, i, m)
    {
        const char *name = route_model_name(m);
        if (name == NULL || !route_fits(m, op_cap, task_cap, tier)) {
            continue;
        }
        if (def != NULL && strcmp(name, def) == 0) {
            return name;
        }
        if (best == NULL || route_price(m) < route_price(best)) {
            best = m;
        }
    }
    return best != NULL ? route_model_name(best) : NULL;
}

static bool route_has_model(const json_t *entry, const char *model)
{
    size_t i;
    const json_t *m;
    json_array_foreach(json_object_get(entry, "models"), i, m)
    {
        const char *name = route_model_name(m);
        if (name != NULL && strcmp(name, model) == 0) {
            return true;
        }
    }
    return false;
}

static bool route_in_list(const json_t *list, const char *name)
{
    size_t i;
    const json_t *v;
    json_array_foreach(list, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), name) == 0) {
            return true;
        }
    }
    return false;
}

enum err route_plan(enum route_kind kind, const struct route_want *w,
                    const struct route_view *views, size_t n_views, struct route_candidate *out,
                    size_t *ret_n)
{
    const json_t *settings = n_views > 0 ? views[0].settings : NULL;
    const char *op_cap = w->op == PROVIDER_EMBEDDINGS ? "embedding" : "chat";
    const char *task_cap = NULL;
    if (w->task != NULL) {
        enum err e = route_task_allowed(settings, w->task);
        if (e != ERR_OK) {
            return e;
        }
        task_cap = route_task_cap(w->task);
    }
    int tier = 4;
    const char *tenant_tier = json_string_value(json_object_get(settings, "budget_tier"));
    if (tenant_tier != NULL && route_tier_rank(tenant_tier) >= 0) {
        tier = route_tier_rank(tenant_tier);
    }
    if (w->tier != NULL) {
        int r = route_tier_rank(w->tier);
        if (r < 0) {
            return ERR_INVAL;
        }
        /* A header may ask for a cheaper tier than the tenant's, never a dearer one. */
        if (r < tier) {
            tier = r;
        }
    }
    /* Order: preferred, then fallback, then the rest in configured order. */
    const json_t *pref = json_object_get(settings, "preferred_providers");
    const json_t *fall = json_object_get(settings, "fallback_providers");
    size_t order[64];
    size_t n_order = 0;
    const json_t *lists[2] = {pref, fall};
    for (size_t l = 0; l < 2; l++) {
        size_t i;
        const json_t *v;
        json_array_foreach(lists[l], i, v)
        {
            for (size_t k = 0; k < n_views && n_order < 64; k++) {
                if (json_is_string(v) && strcmp(json_string_value(v), views[k].provider) == 0) {
                    bool dup = false;
                    for (size_t d = 0; d < n_order; d++) {
                        dup = dup || order[d] == k;
                    }
                    if (!dup) {
                        order[n_order++] = k;
                    }
                }
            }
        }
    }
    for (size_t k = 0; k < n_views && n_order < 64; k++) {
        if (!route_in_list(pref, views[k].provider) && !route_in_list(fall, views[k].provider)) {
            order[n_order++] = k;
        }
    }
    size_t n = 0;
    for (size_t i = 0; i < n_order && n < ROUTE_MAX_CANDIDATES; i++) {
        const struct route_view *v = &views[order[i]];
        const char *model = NULL;
        if (kind == ROUTE_AUTO) {
            model = route_pick_model(v->entry, op_cap, task_cap, tier);
            if (model == NULL && task_cap != NULL) {
                /* No model with the task's capability: any model of the right kind will do. */
                model = route_pick_model(v->entry, op_cap, NULL, tier);
            }
        } else if (route_has_model(v->entry, w->model)) {
            model = w->model;
        }
        if (model == NULL || strlen(model) > ROUTE_MAX_MODEL) {
            continue;
        }
        snprintf(out[n].provider, sizeof(out[n].provider), "%s", v->provider);
        snprintf(out[n].model, sizeof(out[n].model), "%s", model);
        n++;
    }
    if (n == 0) {
        return ERR_NOTFOUND;
    }
    *ret_n = n;
    return ERR_OK;
}
