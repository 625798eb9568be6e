/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Observed provider speed (see latency.h).
 *
 * A dense array scanned in full, grown on demand up to LATENCY_MAX_ENTRIES:
 * it holds a record for each provider/model this node called, which is a
 * handful in practice (a tenant's "auto" uses one model a provider). The
 * averages are exponential (LATENCY_ALPHA); the first measurement of a kind
 * is taken as it is. A record never expires by itself: its measurements do
 * (the caller's ttl), and a full table replaces the record touched longest
 * ago.
 */
#include "agent/latency.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/config.h"
#include "agent/metrics.h"
#include "agent/route.h"

struct latency_entry {
    char provider[CONFIG_MAX_NAME + 1];
    char model[ROUTE_MAX_MODEL + 1];
    double avg[2];     /* seconds to the first byte: [0] plain calls, [1] streams */
    double sampled[2]; /* when avg[k] last took a measurement; 0: never */
    double probing[2]; /* when a call set out to measure it again (latency_probe); 0: none */
    bool ever[2];      /* avg[k] holds a measurement, however old */
    double success;    /* moving share of attempts answered, 0..1 */
    double failed;     /* the last transport-level failure; 0: none */
    double touched;    /* the last update, for replacement */
};

struct latency {
    struct latency_entry *e;
    size_t n, cap;
};

struct latency *latency_new(void)
{
    return calloc(1, sizeof(struct latency));
}

void latency_free(struct latency *l)
{
    if (l != NULL) {
        free(l->e);
        free(l);
    }
}

size_t latency_count(const struct latency *l)
{
    return l != NULL ? l->n : 0;
}

static struct latency_entry *latency_find(const struct latency *l, const char *provider,
                                          const char *model)
{
    for (size_t i = 0; l != NULL && i < l->n; i++) {
        if (strcmp(l->e[i].provider, provider) == 0 && strcmp(l->e[i].model, model) == 0) {
            return &l->e[i];
        }
    }
    return NULL;
}

/* Was a time stamp (0: never) taken within ttl of now? */
static bool latency_fresh(double at, double now, double ttl)
{
    return at > 0 && now - at <= ttl;
}

/* A free slot (the table grown if it may), or the record touched longest ago; NULL: no memory. */
static struct latency_entry *latency_slot(struct latency *l)
{
    if (l->n == l->cap && l->cap < LATENCY_MAX_ENTRIES) {
        size_t cap = l->cap == 0 ? 8 : l->cap * 2;
        cap = cap < LATENCY_MAX_ENTRIES ? cap : LATENCY_MAX_ENTRIES;
        struct latency_entry *grown = realloc(l->e, cap * sizeof(*grown));
        if (grown == NULL) {
            return NULL;
        }
        l->e = grown;
        l->cap = cap;
    }
    if (l->n < l->cap) {
        return &l->e[l->n++];
    }
    struct latency_entry *e = &l->e[0];
    for (size_t i = 1; i < l->n; i++) {
        if (l->e[i].touched < e->touched) {
            e = &l->e[i];
        }
    }
    return e;
}

/*
 * provider/model's record, new when it has none or when all it held was
 * forgotten (ttl: an old success share or failure says nothing now); NULL
 * when out of memory or a name is too long (the router never plans such a
 * candidate).
 */
static struct latency_entry *latency_get(struct latency *l, const char *provider, const char *model,
                                         double now, double ttl)
{
    if (l == NULL || strlen(provider) > CONFIG_MAX_NAME || strlen(model) > ROUTE_MAX_MODEL) {
        return NULL;
    }
    struct latency_entry *e = latency_find(l, provider, model);
    if (e != NULL &&
        (latency_fresh(e->sampled[0], now, ttl) || latency_fresh(e->sampled[1], now, ttl) ||
         latency_fresh(e->failed, now, ttl))) {
        e->touched = now;
        return e;
    }
    if (e == NULL && (e = latency_slot(l)) == NULL) {
        return NULL;
    }
    memset(e, 0, sizeof(*e));
    snprintf(e->provider, sizeof(e->provider), "%s", provider);
    snprintf(e->model, sizeof(e->model), "%s", model);
    e->success = 1.0;
    e->touched = now;
    return e;
}

void latency_answered(struct latency *l, const char *provider, const char *model, bool stream,
                      double secs, double now, double ttl)
{
    if (!isfinite(secs) || secs < 0) {
        return;
    }
    struct latency_entry *e = latency_get(l, provider, model, now, ttl);
    if (e == NULL) {
        return;
    }
    int k = stream ? 1 : 0;
    /* A forgotten average is not moved: the measurement starts a new one. */
    e->avg[k] = latency_fresh(e->sampled[k], now, ttl)
                    ? e->avg[k] + LATENCY_ALPHA * (secs - e->avg[k])
                    : secs;
    /* A measurement at monotonic time 0 must still count as taken. */
    e->sampled[k] = now > 0 ? now : 1e-9;
    e->ever[k] = true;
    e->probing[k] = 0;
    e->success += LATENCY_ALPHA * (1.0 - e->success);
}

void latency_failed(struct latency *l, const char *provider, const char *model, double now,
                    double ttl)
{
    struct latency_entry *e = latency_get(l, provider, model, now, ttl);
    if (e == NULL) {
        return;
    }
    e->success -= LATENCY_ALPHA * e->success;
    e->failed = now > 0 ? now : 1e-9;
}

void latency_probe(struct latency *l, const char *provider, const char *model, bool stream,
                   double now, double ttl)
{
    /* Not latency_get first: a record all forgotten keeps its old average for the probe's time. */
    struct latency_entry *e = latency_find(l, provider, model);
    if (e == NULL && (e = latency_get(l, provider, model, now, ttl)) == NULL) {
        return;
    }
    e->probing[stream ? 1 : 0] = now > 0 ? now : 1e-9;
    e->touched = now;
}

double latency_score(const struct latency *l, const char *provider, const char *model, bool stream,
                     double now, double ttl)
{
    const struct latency_entry *e = latency_find(l, provider, model);
    if (e == NULL) {
        return LATENCY_UNKNOWN;
    }
    int k = stream ? 1 : 0;
    double s = e->success > LATENCY_MIN_SUCCESS ? e->success : LATENCY_MIN_SUCCESS;
    if (latency_fresh(e->sampled[k], now, ttl)) {
        return e->avg[k] / s;
    }
    if (latency_fresh(e->probing[k], now, ttl)) {
        return e->ever[k] ? e->avg[k] / s : LATENCY_PROBING;
    }
    return latency_fresh(e->failed, now, ttl) ? LATENCY_FAILING : LATENCY_UNKNOWN;
}

/*
 * The sort key of a score: unknown first, then measured ones by 10 % step,
 * then those being measured for the first time, then failing ones.
 */
static long long latency_key(double score)
{
    if (score == LATENCY_UNKNOWN) {
        return LLONG_MIN;
    }
    if (score >= LATENCY_FAILING) {
        return LLONG_MAX;
    }
    if (score >= LATENCY_PROBING) {
        return LLONG_MAX - 1;
    }
    /* Below a millisecond every score is as good: the step count starts there. */
    double ms = score * 1000.0 > 1.0 ? score * 1000.0 : 1.0;
    return (long long)floor(log(ms) / log(LATENCY_STEP));
}

void latency_rank(const struct latency *l, const char *const *providers, const char *const *models,
                  size_t n, bool stream, double now, double ttl, size_t *ret_order)
{
    long long key[ROUTE_MAX_CANDIDATES];
    for (size_t i = 0; i < n; i++) {
        ret_order[i] = i;
    }
    /* A call has at most ROUTE_MAX_CANDIDATES; more are left in the order given. */
    size_t m = n < ROUTE_MAX_CANDIDATES ? n : ROUTE_MAX_CANDIDATES;
    for (size_t i = 0; i < m; i++) {
        key[i] = latency_key(latency_score(l, providers[i], models[i], stream, now, ttl));
    }
    /* Insertion sort: stable, and m is small. */
    for (size_t i = 1; i < m; i++) {
        size_t v = ret_order[i];
        size_t j = i;
        while (j > 0 && key[ret_order[j - 1]] > key[v]) {
            ret_order[j] = ret_order[j - 1];
            j--;
        }
        ret_order[j] = v;
    }
}

enum err latency_render(const struct latency *l, struct buf *out, double now, double ttl)
{
    enum err e = buf_printf(out, "# HELP byok_provider_latency_seconds Moving average of the time "
                                 "to a provider's first byte, as this agent measured it.\n"
                                 "# TYPE byok_provider_latency_seconds gauge\n");
    for (size_t i = 0; e == ERR_OK && l != NULL && i < l->n; i++) {
        const struct latency_entry *en = &l->e[i];
        for (int k = 0; k < 2 && e == ERR_OK; k++) {
            if (!latency_fresh(en->sampled[k], now, ttl)) {
                continue;
            }
            char labels[METRICS_MAX_LABELS];
            metrics_labels(labels, sizeof(labels), "provider", en->provider, "model", en->model,
                           "stream", k == 1 ? "true" : "false", NULL);
            e = buf_printf(out, "byok_provider_latency_seconds{%s} %.6f\n", labels, en->avg[k]);
        }
    }
    if (e == ERR_OK) {
        e = buf_printf(out, "# HELP byok_provider_success_ratio Moving share of a provider's "
                            "attempts answered, as this agent saw them.\n"
                            "# TYPE byok_provider_success_ratio gauge\n");
    }
    for (size_t i = 0; e == ERR_OK && l != NULL && i < l->n; i++) {
        const struct latency_entry *en = &l->e[i];
        char labels[METRICS_MAX_LABELS];
        metrics_labels(labels, sizeof(labels), "provider", en->provider, "model", en->model, NULL);
        e = buf_printf(out, "byok_provider_success_ratio{%s} %.4f\n", labels, en->success);
    }
    return e;
}
