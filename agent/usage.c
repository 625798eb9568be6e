/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Per-tenant state: running totals (by provider and by provider/model), an
 * open batch receiving new records, and a FIFO of sealed batches awaiting
 * acknowledgement. One batch per tenant is in flight at a time, so batches are
 * acknowledged in order and a retry never races its own original.
 *
 * Not done here: a crash-safe journal (records are in memory only).
 */
#include "agent/usage.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/metrics.h"
#include "common/log.h"

struct ubatch {
    char id[128];
    json_t *records;
    struct ubatch *next;
};

struct utenant {
    char *name;
    json_t *totals; /* {requests, prompt_tokens, ..., by_provider: {}, by_model: {}} */
    json_t *open;   /* records not yet in a batch */
    struct ubatch *sealed, *sealed_tail;
    struct vault_req *inflight;
    bool busy; /* a batch is in flight (set before the call: it may complete synchronously) */
    struct usage *u;
    struct utenant *next;
};

struct usage {
    struct event_base *base;
    struct vault *vault;
    struct config *cfg;
    struct event *timer;
    struct utenant *tenants;
    size_t pending;
    size_t inflight;
    unsigned long long seq;
    unsigned long long dropped;
    long boot;
};

static struct utenant *usage_tenant(struct usage *u, const char *name, bool create)
{
    for (struct utenant *t = u->tenants; t != NULL; t = t->next) {
        if (strcmp(t->name, name) == 0) {
            return t;
        }
    }
    if (!create) {
        return NULL;
    }
    struct utenant *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return NULL;
    }
    t->name = strdup(name);
    t->totals = json_pack("{s:i,s:i,s:i,s:i,s:f,s:{},s:{}}", "requests", 0, "prompt_tokens", 0,
                          "completion_tokens", 0, "cached_tokens", 0, "cost_usd", 0.0,
                          "by_provider", "by_model");
    t->open = json_array();
    if (t->name == NULL || t->totals == NULL || t->open == NULL) {
        free(t->name);
        json_decref(t->totals);
        json_decref(t->open);
        free(t);
        return NULL;
    }
    t->u = u;
    t->next = u->tenants;
    u->tenants = t;
    return t;
}

static void usage_add_int(json_t *o, const char *k, long long v)
{
    json_object_set_new(o, k, json_integer(json_integer_value(json_object_get(o, k)) + v));
}

static void usage_add_totals(json_t *o, const struct usage_record *r)
{
    usage_add_int(o, "requests", 1);
    usage_add_int(o, "prompt_tokens", r->tokens.prompt_tokens);
    usage_add_int(o, "completion_tokens", r->tokens.completion_tokens);
    usage_add_int(o, "cached_tokens", r->tokens.cached_tokens);
    json_object_set_new(o, "cost_usd",
                        json_real(json_number_value(json_object_get(o, "cost_usd")) + r->cost_usd));
}

static json_t *usage_sub(json_t *parent, const char *key)
{
    json_t *o = json_object_get(parent, key);
    if (o == NULL) {
        o = json_pack("{s:i,s:i,s:i,s:i,s:f}", "requests", 0, "prompt_tokens", 0,
                      "completion_tokens", 0, "cached_tokens", 0, "cost_usd", 0.0);
        if (o == NULL || json_object_set_new(parent, key, o) != 0) {
            return NULL;
        }
    }
    return o;
}

/* Drops the oldest unsent records of any tenant until we are under the bound. */
static void usage_enforce_bound(struct usage *u)
{
    size_t max = (size_t)u->cfg->usage.max_pending_records;
    while (u->pending > max) {
        bool dropped = false;
        for (struct utenant *t = u->tenants; t != NULL && u->pending > max; t = t->next) {
            if (json_array_size(t->open) > 0) {
                json_array_remove(t->open, 0);
                u->pending--;
                u->dropped++;
                dropped = true;
            }
        }
        if (!dropped) {
            break; /* everything left is sealed; sealed batches are never dropped */
        }
    }
}

void usage_record(struct usage *u, const struct usage_record *r)
{
    char labels[METRICS_MAX_LABELS];
    static const char *const kinds[] = {"prompt", "completion", "cached"};
    const long long vals[] = {r->tokens.prompt_tokens, r->tokens.completion_tokens,
                              r->tokens.cached_tokens};
    for (size_t i = 0; i < 3; i++) {
        metrics_labels(labels, sizeof(labels), "tenant", r->tenant, "provider", r->provider,
                       "model", r->model, "kind", kinds[i], NULL);
        metrics_add(M_TOKENS, (double)vals[i], labels);
    }
    metrics_labels(labels, sizeof(labels), "tenant", r->tenant, "provider", r->provider, "model",
                   r->model, NULL);
    metrics_add(M_COST, r->cost_usd, labels);

    struct utenant *t = usage_tenant(u, r->tenant, true);
    if (t == NULL) {
        u->dropped++;
        return;
    }
    usage_add_totals(t->totals, r);
    json_t *bp = usage_sub(json_object_get(t->totals, "by_provider"), r->provider);
    if (bp != NULL) {
        usage_add_totals(bp, r);
    }
    char pm[256];
    snprintf(pm, sizeof(pm), "%s/%s", r->provider, r->model);
    json_t *bm = usage_sub(json_object_get(t->totals, "by_model"), pm);
    if (bm != NULL) {
        usage_add_totals(bm, r);
    }
    char ts[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_t *rec = json_pack("{s:s,s:s,s:s,s:s,s:s,s:i,s:I,s:I,s:I,s:f,s:s}", "ts", ts, "provider",
                            r->provider, "model", r->model, "key_type", r->key_type, "app", r->app,
                            "requests", 1, "prompt_tokens", (json_int_t)r->tokens.prompt_tokens,
                            "completion_tokens", (json_int_t)r->tokens.completion_tokens,
                            "cached_tokens", (json_int_t)r->tokens.cached_tokens, "cost_usd",
                            r->cost_usd, "status", r->status);
    if (rec == NULL || json_array_append_new(t->open, rec) != 0) {
        u->dropped++;
        return;
    }
    u->pending++;
    usage_enforce_bound(u);
}

json_t *usage_tenant_json(struct usage *u, const char *tenant)
{
    struct utenant *t = usage_tenant(u, tenant, false);
    size_t pending = 0;
    if (t != NULL) {
        pending = json_array_size(t->open);
        for (struct ubatch *b = t->sealed; b != NULL; b = b->next) {
            pending += json_array_size(b->records);
        }
    }
    json_t *out = t != NULL ? json_deep_copy(t->totals)
                            : json_pack("{s:i,s:i,s:i,s:i,s:f,s:{},s:{}}", "requests", 0,
                                        "prompt_tokens", 0, "completion_tokens", 0, "cached_tokens",
                                        0, "cost_usd", 0.0, "by_provider", "by_model");
    if (out != NULL) {
        json_object_set_new(out, "tenant", json_string(tenant));
        json_object_set_new(out, "since", json_integer(u->boot));
        json_object_set_new(out, "pending_records", json_integer((json_int_t)pending));
    }
    return out;
}

static void usage_seal(struct usage *u, struct utenant *t)
{
    while (json_array_size(t->open) > 0) {
        struct ubatch *b = calloc(1, sizeof(*b));
        if (b == NULL) {
            return;
        }
        size_t n = json_array_size(t->open);
        size_t take =
            n < (size_t)u->cfg->usage.batch_records ? n : (size_t)u->cfg->usage.batch_records;
        if (take == n) {
            b->records = t->open;
            t->open = json_array();
        } else {
            b->records = json_array();
            for (size_t i = 0; i < take; i++) {
                json_array_append(b->records, json_array_get(t->open, 0));
                json_array_remove(t->open, 0);
            }
        }
        snprintf(b->id, sizeof(b->id), "%s-%lx-%06llu", u->cfg->usage.node_id,
                 (unsigned long)u->boot, ++u->seq);
        if (t->sealed_tail != NULL) {
            t->sealed_tail->next = b;
        } else {
            t->sealed = b;
        }
        t->sealed_tail = b;
        if (t->open == NULL) {
            return;
        }
    }
}

static void usage_send(struct usage *u, struct utenant *t);

static void usage_sent(void *arg, enum err e, long status, struct buf *body)
{
    struct utenant *t = arg;
    struct usage *u = t->u;
    t->inflight = NULL;
    t->busy = false;
    u->inflight--;
    struct ubatch *b = t->sealed;
    if (b == NULL) {
        return;
    }
    if (e == ERR_OK && (status == 200 || status == 204 || status == 400)) {
        if (status == 400) {
            /* The plugin refused the batch's shape: re-sending it would fail forever. */
            log_kv(LOGL_ERROR, "usage batch refused by vault; dropped", "tenant", t->name,
                   "batch_id", b->id, NULL);
            metrics_add(M_USAGE_BATCHES, 1, "result=\"refused\"");
            u->dropped += json_array_size(b->records);
        } else {
            metrics_add(M_USAGE_BATCHES, 1, "result=\"ok\"");
        }
        u->pending -= json_array_size(b->records);
        t->sealed = b->next;
        if (t->sealed == NULL) {
            t->sealed_tail = NULL;
        }
        json_decref(b->records);
        free(b);
        if (t->sealed != NULL) {
            usage_send(u, t);
        }
        return;
    }
    metrics_add(M_USAGE_BATCHES, 1, "result=\"retry\"");
    log_kv(LOGL_WARN, "usage batch not acknowledged; will retry", "tenant", t->name, "batch_id",
           b->id, "error", e != ERR_OK ? err_name(e) : "http status", NULL);
}

static void usage_send(struct usage *u, struct utenant *t)
{
    struct ubatch *b = t->sealed;
    if (b == NULL || t->busy) {
        return;
    }
    json_t *body = json_pack("{s:s,s:O}", "batch_id", b->id, "records", b->records);
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (text == NULL) {
        return;
    }
    char path[512];
    snprintf(path, sizeof(path), "%s/tenants/%s/usage", u->cfg->vault.mount, t->name);
    u->inflight++;
    t->busy = true;
    struct vault_req *req = NULL;
    if (vault_request(u->vault, "POST", path, text, usage_sent, t, &req) != ERR_OK) {
        u->inflight--;
        t->busy = false;
        return;
    }
    if (t->busy) {
        t->inflight = req;
    }
}

static void usage_tick(evutil_socket_t fd, short what, void *arg)
{
    usage_flush(arg);
}

void usage_flush(struct usage *u)
{
    for (struct utenant *t = u->tenants; t != NULL; t = t->next) {
        if (!t->busy) {
            usage_seal(u, t);
            usage_send(u, t);
        }
    }
}

struct usage *usage_new(struct event_base *base, struct vault *v, struct config *cfg)
{
    struct usage *u = calloc(1, sizeof(*u));
    if (u == NULL) {
        return NULL;
    }
    u->base = base;
    u->vault = v;
    u->cfg = config_ref(cfg);
    u->boot = (long)time(NULL);
    u->timer = event_new(base, -1, EV_PERSIST, usage_tick, u);
    if (u->timer == NULL) {
        usage_free(u);
        return NULL;
    }
    struct timeval tv = {cfg->usage.report_interval_s, 0};
    event_add(u->timer, &tv);
    return u;
}

void usage_set_config(struct usage *u, struct config *cfg)
{
    config_unref(&u->cfg);
    u->cfg = config_ref(cfg);
    struct timeval tv = {cfg->usage.report_interval_s, 0};
    event_add(u->timer, &tv);
}

void usage_free(struct usage *u)
{
    if (u == NULL) {
        return;
    }
    struct utenant *t = u->tenants;
    while (t != NULL) {
        struct utenant *n = t->next;
        vault_request_cancel(t->inflight);
        struct ubatch *b = t->sealed;
        while (b != NULL) {
            struct ubatch *bn = b->next;
            json_decref(b->records);
            free(b);
            b = bn;
        }
        json_decref(t->open);
        json_decref(t->totals);
        free(t->name);
        free(t);
        t = n;
    }
    if (u->timer != NULL) {
        event_free(u->timer);
    }
    config_unref(&u->cfg);
    free(u);
}

size_t usage_inflight(const struct usage *u)
{
    return u->inflight;
}

size_t usage_pending(const struct usage *u)
{
    return u->pending;
}

unsigned long long usage_dropped(const struct usage *u)
{
    return u->dropped;
}
