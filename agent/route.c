/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Candidate planning. Tasks map to catalog capabilities through a static
 * table; a model without a capabilities list is taken to be a chat model.
 * Residency: a provider serves a tenant whose residency is eu or us when its
 * catalog regions list that region ("global" is no residency guarantee), or
 * when it is local (on the node). Not done here: provider health, which the
 * proxy applies to the planned order (health.c: a demoted provider is moved
 * last, never dropped), and the "fastest" strategy's ranking by observed
 * speed (latency.c), which needs the node's measurements, and of "balanced"
 * (route_rank_balanced, given those measurements). The "cheapest" strategy
 * is done here: it needs only the catalog's prices.
 */
#include "agent/route.h"

#include "agent/latency.h"

#include <limits.h>
#include <math.h>
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

static const char *const route_strategies[ROUTE_STRATEGY_COUNT] = {"ordered", "cheapest", "fastest",
                                                                   "weighted", "balanced"};

enum err route_strategy_of(const char *name, enum route_strategy *ret)
{
    for (size_t i = 0; name != NULL && i < ROUTE_STRATEGY_COUNT; i++) {
        if (strcmp(name, route_strategies[i]) == 0) {
            *ret = (enum route_strategy)i;
            return ERR_OK;
        }
    }
    return ERR_INVAL;
}

const char *route_strategy_name(enum route_strategy s)
{
    return (unsigned)s < ROUTE_STRATEGY_COUNT ? route_strategies[s] : "ordered";
}

/* splitmix64: a uniform 64-bit value per step; enough to spread calls, not for secrets. */
static unsigned long long route_next(unsigned long long *state)
{
    unsigned long long z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void route_rank_weighted(struct route_candidate *cands, size_t n, const json_t *weights,
                         unsigned long long *rng)
{
    if (n > ROUTE_MAX_CANDIDATES) {
        n = ROUTE_MAX_CANDIDATES;
    }
    struct route_candidate out[ROUTE_MAX_CANDIDATES];
    unsigned long long w[ROUTE_MAX_CANDIDATES];
    bool taken[ROUTE_MAX_CANDIDATES] = {false};
    unsigned long long total = 0;
    for (size_t i = 0; i < n; i++) {
        json_int_t v = json_integer_value(json_object_get(weights, cands[i].provider));
        /* The plugin stores 0..1000; anything else counts as unweighted. */
        w[i] = v > 0 && v <= 1000000 ? (unsigned long long)v : 0;
        total += w[i];
    }
    size_t k = 0;
    while (total > 0) {
        /* Modulo bias: at most 1e6 * 64 / 2^64, nothing a split of calls can show. */
        unsigned long long x = route_next(rng) % total;
        size_t pick = 0;
        for (size_t i = 0; i < n; i++) {
            if (taken[i] || w[i] == 0) {
                continue;
            }
            pick = i;
            if (x < w[i]) {
                break;
            }
            x -= w[i];
        }
        out[k++] = cands[pick];
        taken[pick] = true;
        total -= w[pick];
    }
    if (k == 0) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (!taken[i]) {
            out[k++] = cands[i];
        }
    }
    memcpy(cands, out, n * sizeof(*cands));
}

void route_rank_balanced(struct route_candidate *cands, size_t n, const double *speed,
                         long long speed_weight)
{
    if (n > ROUTE_MAX_CANDIDATES) {
        n = ROUTE_MAX_CANDIDATES;
    }
    if (n < 2) {
        return;
    }
    double ws = (speed_weight >= 0 && speed_weight <= 100 ? (double)speed_weight
                                                          : ROUTE_DEFAULT_SPEED_WEIGHT) /
                100.0;
    double max_cost = 0, max_speed = 0, sum_speed = 0;
    size_t measured = 0;
    for (size_t i = 0; i < n; i++) {
        double c = cands[i].cost;
        if (isfinite(c) && c > max_cost) {
            max_cost = c;
        }
        double s = speed[i];
        if (s >= 0 && s < LATENCY_PROBING) {
            measured++;
            sum_speed += s;
            max_speed = s > max_speed ? s : max_speed;
        }
    }
    double neutral = measured > 0 ? sum_speed / (double)measured : 0;
    if (measured == 0) {
        ws = 0; /* no speed to compare: cost alone, whatever the weight */
    }
    double score[ROUTE_MAX_CANDIDATES];
    for (size_t i = 0; i < n; i++) {
        double c = cands[i].cost;
        double cn = max_cost > 0 && isfinite(c) && c > 0 ? c / max_cost : 0;
        double s = speed[i];
        if (s >= LATENCY_FAILING) {
            score[i] = HUGE_VAL; /* only failed within the ttl: last */
            continue;
        }
        if (s == LATENCY_UNKNOWN) {
            s = 0; /* to be measured: as fast as can be, so it gets its turn */
        } else if (!(s >= 0 && s < LATENCY_PROBING)) {
            s = neutral; /* being measured by another call */
        }
        double sn = max_speed > 0 ? s / max_speed : 0;
        score[i] = (1.0 - ws) * cn + ws * sn;
    }
    /* Stable insertion sort: equal scores keep the order given (the tenant's). */
    for (size_t i = 1; i < n; i++) {
        struct route_candidate cv = cands[i];
        double v = score[i];
        size_t j = i;
        while (j > 0 && score[j - 1] > v) {
            cands[j] = cands[j - 1];
            score[j] = score[j - 1];
            j--;
        }
        cands[j] = cv;
        score[j] = v;
    }
}

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

bool route_hints_valid(const char *task, const char *tier)
{
    return (task == NULL || route_task_cap(task) != NULL) &&
           (tier == NULL || route_tier_rank(tier) >= 0);
}

enum err route_classify(const char *model, const struct config_strlist *providers,
                        enum route_kind *ret_kind, struct route_candidate *ret)
{
    size_t n = strlen(model);
    if (n == 0 || n > CONFIG_MAX_NAME + 1 + ROUTE_MAX_MODEL) {
        return ERR_INVAL;
    }
    /* What the plugin's usage ledger accepts as a model name: no spaces or controls. */
    for (const char *p = model; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e) {
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
                if (strlen(slash + 1) > ROUTE_MAX_MODEL) {
                    return ERR_INVAL;
                }
                snprintf(ret->provider, sizeof(ret->provider), "%s", pn);
                snprintf(ret->model, sizeof(ret->model), "%s", slash + 1);
                *ret_kind = ROUTE_EXPLICIT;
                return ERR_OK;
            }
        }
    }
    if (n > ROUTE_MAX_MODEL) {
        return ERR_INVAL;
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

/* What binds every candidate of one request. */
struct route_limits {
    const char *op_cap;
    int tier;              /* highest tier rank allowed */
    const char *residency; /* NULL: any */
    long long need;        /* prompt estimate + max output, 0 = unknown */
    long long max_output;
};

static long long route_count(const json_t *m, const char *field)
{
    const json_t *v = json_object_get(m, field);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (long long)json_integer_value(v) : 0;
}

/*
 * Why the model m cannot serve this request, or ROUTE_FITS. task_cap: a
 * capability it must also have (NULL: none). context: also check the window.
 */
static enum route_refusal route_refuse(const json_t *m, const struct route_limits *l,
                                       const char *task_cap, bool context)
{
    const char *mt = json_string_value(json_object_get(m, "tier"));
    int r = mt != NULL ? route_tier_rank(mt) : 0;
    if (r < 0 || r > l->tier) {
        return ROUTE_TIER;
    }
    if (!route_has_cap(m, l->op_cap)) {
        return ROUTE_CAPABILITY;
    }
    if (task_cap != NULL && strcmp(task_cap, l->op_cap) != 0 && !route_has_cap(m, task_cap)) {
        return ROUTE_CAPABILITY;
    }
    if (context) {
        long long window = route_count(m, "context_window");
        long long out = route_count(m, "max_output_tokens");
        if ((window > 0 && l->need > window) || (out > 0 && l->max_output > out)) {
            return ROUTE_CONTEXT;
        }
    }
    return ROUTE_FITS;
}

static void route_note(enum route_refusal *why, enum route_refusal r)
{
    if (r > *why) {
        *why = r;
    }
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

/*
 * What want w would cost on catalog model m, in USD: its prompt estimate
 * at the input price, plus for a chat the output it capped (or
 * w->default_output) at the output price. Only compared, never charged.
 */
static double route_estimate(const struct route_want *w, const json_t *m)
{
    double in = json_number_value(json_object_get(m, "input_per_1m"));
    double out = json_number_value(json_object_get(m, "output_per_1m"));
    long long tokens_out = 0;
    if (w->op == PROVIDER_CHAT) {
        tokens_out = w->max_output > 0 ? w->max_output : w->default_output;
    }
    return ((double)w->prompt_tokens * in + (double)tokens_out * out) / 1e6;
}

/*
 * The provider's model for want w: default_model if it fits, else the
 * cheapest that does (input + output price). With the cheapest strategy,
 * always the one whose estimate for w is lowest.
 */
static const char *route_pick_model(const json_t *entry, const struct route_want *w,
                                    const struct route_limits *l, const char *task_cap,
                                    enum route_refusal *why)
{
    const json_t *models = json_object_get(entry, "models");
    bool cheapest = w->strategy == ROUTE_CHEAPEST;
    const char *def = cheapest ? NULL : json_string_value(json_object_get(entry, "default_model"));
    const json_t *best = NULL;
    size_t i;
    const json_t *m;
    json_array_foreach(models, i, m)
    {
        const char *name = route_model_name(m);
        if (name == NULL || (w->model_ok != NULL && !w->model_ok(entry, name))) {
            continue;
        }
        enum route_refusal r = route_refuse(m, l, task_cap, true);
        if (r != ROUTE_FITS) {
            route_note(why, r);
            continue;
        }
        if (def != NULL && strcmp(name, def) == 0) {
            return name;
        }
        if (best == NULL || (cheapest ? route_estimate(w, m) < route_estimate(w, best)
                                      : route_price(m) < route_price(best))) {
            best = m;
        }
    }
    return best != NULL ? route_model_name(best) : NULL;
}

static const json_t *route_find_model(const json_t *entry, const char *model)
{
    size_t i;
    const json_t *m;
    json_array_foreach(json_object_get(entry, "models"), i, m)
    {
        const char *name = route_model_name(m);
        if (name != NULL && strcmp(name, model) == 0) {
            return m;
        }
    }
    return NULL;
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

/* The limits of want w under the tenant's settings; ERR_INVAL / ERR_DENIED as route_plan. */
static enum err route_limits_of(const struct route_want *w, const json_t *settings,
                                struct route_limits *l, const char **ret_task_cap)
{
    l->op_cap = w->op == PROVIDER_EMBEDDINGS ? "embedding" : "chat";
    *ret_task_cap = NULL;
    if (w->task != NULL) {
        enum err e = route_task_allowed(settings, w->task);
        if (e != ERR_OK) {
            return e;
        }
        *ret_task_cap = route_task_cap(w->task);
    }
    l->tier = 4;
    const char *tenant_tier = json_string_value(json_object_get(settings, "budget_tier"));
    if (tenant_tier != NULL && route_tier_rank(tenant_tier) >= 0) {
        l->tier = route_tier_rank(tenant_tier);
    }
    if (w->tier != NULL) {
        int r = route_tier_rank(w->tier);
        if (r < 0) {
            return ERR_INVAL;
        }
        /* A header may ask for a cheaper tier than the tenant's, never a dearer one. */
        if (r < l->tier) {
            l->tier = r;
        }
    }
    const char *res = json_string_value(json_object_get(settings, "residency"));
    l->residency = res != NULL && strcmp(res, "any") != 0 ? res : NULL;
    l->max_output = w->max_output > 0 ? w->max_output : 0;
    /*
     * An embedding model's window bounds each input, not the sum of a batch
     * (the estimate adds them all up): embeddings are not filtered by it.
     */
    l->need = 0;
    if (w->op == PROVIDER_CHAT && w->prompt_tokens > 0 &&
        __builtin_add_overflow(w->prompt_tokens, l->max_output, &l->need)) {
        l->need = LLONG_MAX; /* saturates: fits no window (the proxy bounds both anyway) */
    }
    return ERR_OK;
}

static bool route_serves(const json_t *entry, const char *residency)
{
    return residency == NULL || json_is_true(json_object_get(entry, "local")) ||
           route_in_list(json_object_get(entry, "regions"), residency);
}

bool route_usable(const json_t *settings, const json_t *entry, const json_t *m)
{
    struct route_want w = {.model = "auto", .op = PROVIDER_CHAT};
    struct route_limits l;
    const char *task_cap;
    if (route_limits_of(&w, settings, &l, &task_cap) != ERR_OK ||
        !route_serves(entry, l.residency)) {
        return false;
    }
    const char *mt = json_string_value(json_object_get(m, "tier"));
    int r = mt != NULL ? route_tier_rank(mt) : 0;
    return r >= 0 && r <= l.tier;
}

static const char *const route_need_names[ROUTE_NEED_COUNT] = {
    "chat", "embedding", "streaming", "tools", "vision", "json",
};

const char *route_need_name(unsigned need)
{
    for (unsigned i = 0; i < ROUTE_NEED_COUNT; i++) {
        if (need == 1U << i) {
            return route_need_names[i];
        }
    }
    return "?";
}

/* Does any message of a chat request carry an image part (OpenAI's image_url)? */
static bool route_has_image(const json_t *req)
{
    size_t i, k;
    const json_t *msg, *part;
    json_array_foreach(json_object_get(req, "messages"), i, msg)
    {
        json_array_foreach(json_object_get(msg, "content"), k, part)
        {
            const char *type = json_string_value(json_object_get(part, "type"));
            if (type != NULL && strcmp(type, "image_url") == 0) {
                return true;
            }
        }
    }
    return false;
}

unsigned route_needs(enum provider_op op, const json_t *req)
{
    if (op == PROVIDER_EMBEDDINGS) {
        return ROUTE_NEED_EMBEDDING;
    }
    unsigned n = ROUTE_NEED_CHAT;
    if (json_is_true(json_object_get(req, "stream"))) {
        n |= ROUTE_NEED_STREAMING;
    }
    if (json_array_size(json_object_get(req, "tools")) > 0 ||
        json_array_size(json_object_get(req, "functions")) > 0) {
        n |= ROUTE_NEED_TOOLS;
    }
    if (route_has_image(req)) {
        n |= ROUTE_NEED_VISION;
    }
    const char *rf =
        json_string_value(json_object_get(json_object_get(req, "response_format"), "type"));
    if (rf != NULL && (strcmp(rf, "json_object") == 0 || strcmp(rf, "json_schema") == 0)) {
        n |= ROUTE_NEED_JSON;
    }
    return n;
}

unsigned route_unpermitted(const json_t *permissions, unsigned needs)
{
    if (json_array_size(permissions) == 0) {
        return 0;
    }
    for (unsigned i = 0; i < ROUTE_NEED_COUNT; i++) {
        if ((needs & (1U << i)) == 0) {
            continue;
        }
        bool held = false;
        size_t k;
        const json_t *p;
        json_array_foreach(permissions, k, p)
        {
            const char *s = json_string_value(p);
            held = held || (s != NULL && strcmp(s, route_need_names[i]) == 0);
        }
        if (!held) {
            return 1U << i;
        }
    }
    return 0;
}

bool route_model_permitted(const json_t *permissions, const json_t *m)
{
    return (route_has_cap(m, "chat") && route_unpermitted(permissions, ROUTE_NEED_CHAT) == 0) ||
           (route_has_cap(m, "embedding") &&
            route_unpermitted(permissions, ROUTE_NEED_EMBEDDING) == 0);
}

enum err route_check(const struct route_want *w, const struct route_view *v, const char *model,
                     enum route_refusal *ret_why)
{
    *ret_why = ROUTE_FITS;
    struct route_limits l;
    const char *task_cap;
    enum err e = route_limits_of(w, v->settings, &l, &task_cap);
    if (e != ERR_OK) {
        return e;
    }
    if (!route_serves(v->entry, l.residency)) {
        *ret_why = ROUTE_RESIDENCY;
        return ERR_NOTFOUND;
    }
    if (route_unpermitted(v->permissions, w->needs) != 0) {
        *ret_why = ROUTE_PERMISSION;
        return ERR_NOTFOUND;
    }
    const json_t *m = route_find_model(v->entry, model);
    if (m != NULL) {
        /* The task is a hint here: the app chose the model. */
        *ret_why = route_refuse(m, &l, NULL, false);
    }
    return *ret_why == ROUTE_FITS ? ERR_OK : ERR_NOTFOUND;
}

/* Stable sort of n candidates by cost (equal costs keep the tenant's order). */
static void route_by_cost(struct route_candidate *c, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        struct route_candidate cv = c[i];
        size_t j = i;
        while (j > 0 && c[j - 1].cost > cv.cost) {
            c[j] = c[j - 1];
            j--;
        }
        c[j] = cv;
    }
}

enum err route_plan(enum route_kind kind, const struct route_want *w,
                    const struct route_view *views, size_t n_views, struct route_candidate *out,
                    size_t *ret_n, enum route_refusal *ret_why)
{
    *ret_why = ROUTE_FITS;
    const json_t *settings = n_views > 0 ? views[0].settings : NULL;
    struct route_limits l;
    const char *task_cap;
    enum err e = route_limits_of(w, settings, &l, &task_cap);
    if (e != ERR_OK) {
        return e;
    }
    /* Order: preferred, then fallback, then the rest in configured order. */
    const json_t *pref = json_object_get(settings, "preferred_providers");
    const json_t *fall = json_object_get(settings, "fallback_providers");
    size_t order[CONFIG_MAX_PROVIDERS];
    size_t n_order = 0;
    const json_t *lists[2] = {pref, fall};
    for (size_t li = 0; li < 2; li++) {
        size_t i;
        const json_t *v;
        json_array_foreach(lists[li], i, v)
        {
            for (size_t k = 0; k < n_views && n_order < CONFIG_MAX_PROVIDERS; k++) {
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
    for (size_t k = 0; k < n_views && n_order < CONFIG_MAX_PROVIDERS; k++) {
        if (!route_in_list(pref, views[k].provider) && !route_in_list(fall, views[k].provider)) {
            order[n_order++] = k;
        }
    }
    size_t n = 0;
    enum route_refusal why = ROUTE_FITS;
    for (size_t i = 0; i < n_order && n < ROUTE_MAX_CANDIDATES; i++) {
        const struct route_view *v = &views[order[i]];
        const char *model = NULL;
        const json_t *m = kind == ROUTE_AUTO ? NULL : route_find_model(v->entry, w->model);
        if (kind != ROUTE_AUTO &&
            (m == NULL || (w->model_ok != NULL && !w->model_ok(v->entry, w->model)))) {
            continue; /* does not serve that model: no reason to give */
        }
        if (!route_serves(v->entry, l.residency)) {
            route_note(&why, ROUTE_RESIDENCY);
            continue;
        }
        if (route_unpermitted(v->permissions, w->needs) != 0) {
            route_note(&why, ROUTE_PERMISSION);
            continue;
        }
        if (kind == ROUTE_AUTO) {
            model = route_pick_model(v->entry, w, &l, task_cap, &why);
            if (model == NULL && task_cap != NULL) {
                /* No model with the task's capability: any model of the right kind will do. */
                model = route_pick_model(v->entry, w, &l, NULL, &why);
            }
        } else {
            enum route_refusal r = route_refuse(m, &l, NULL, true);
            route_note(&why, r);
            model = r == ROUTE_FITS ? w->model : NULL;
        }
        if (model == NULL || strlen(model) > ROUTE_MAX_MODEL) {
            continue;
        }
        snprintf(out[n].provider, sizeof(out[n].provider), "%s", v->provider);
        snprintf(out[n].model, sizeof(out[n].model), "%s", model);
        out[n].cost = route_estimate(w, route_find_model(v->entry, model));
        n++;
    }
    if (n == 0) {
        *ret_why = why;
        return ERR_NOTFOUND;
    }
    if (w->strategy == ROUTE_CHEAPEST) {
        route_by_cost(out, n);
    }
    *ret_n = n;
    return ERR_OK;
}
