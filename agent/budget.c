/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Budget leases (budget.h). The wire format is the plugin's
 * `tenants/<t>/budget-lease` (docs/api.md).
 */
#include "agent/budget.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/jsonw.h"
#include "common/log.h"

#define BUDGET_BUCKETS 8192
/* A lease is taken as ending this much before the plugin says (clock and transit). */
#define BUDGET_MARGIN 0.1

struct budget_wait {
    budget_cb cb;
    void *arg;
    struct budget_wait *next, **prevp;
};

struct btenant {
    char name[CONFIG_MAX_NAME + 1];
    unsigned long long hash;
    double cap;            /* the cap seen at the last take */
    double left;           /* of the lease, not reserved yet (INFINITY: the plugin says no cap) */
    double expires;        /* budget_now() when the lease ends; 0: none */
    char month[8];         /* the lease's month */
    double inflight;       /* reservations of calls in flight */
    double short_until;    /* a lease gave less than asked: until then, calls of */
    double short_need;     /* at least this estimate are refused without asking again */
    double need;           /* the estimate of the call that made the request in flight */
    double err_until;      /* a lease request failed: unavailable until */
    double requested;      /* what the request in flight asked for */
    bool asking;           /* a lease request is in flight */
    struct vault_req *req; /* its handle (NULL while vault_request has not returned) */
    struct budget_wait *waiters;
    struct budget *b;
    struct btenant *next;
};

struct budget {
    struct vault *vault;
    struct usage *usage;
    struct config *cfg;
    struct btenant *buckets[BUDGET_BUCKETS];
    size_t n;
    struct budget_stats stats;
};

/* Monotonic seconds (server_now's clock, without linking the server in). */
static double budget_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void budget_month(long long t, char out[8])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    unsigned year = (unsigned)(tm.tm_year + 1900) % 10000U, mon = (unsigned)tm.tm_mon % 12U + 1U;
    snprintf(out, 8, "%04u-%02u", year, mon);
}

static unsigned long long budget_hash(const char *s)
{
    unsigned long long h = 1469598103934665603ULL;
    for (; *s != '\0'; s++) {
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    }
    return h;
}

struct budget *budget_new(struct vault *v, struct usage *u, struct config *cfg)
{
    struct budget *b = calloc(1, sizeof(*b));
    if (b == NULL) {
        return NULL;
    }
    b->vault = v;
    b->usage = u;
    b->cfg = cfg;
    return b;
}

static void budget_tenant_free(struct btenant *t)
{
    vault_request_cancel(t->req);
    for (struct budget_wait *w = t->waiters; w != NULL;) {
        struct budget_wait *next = w->next;
        free(w);
        w = next;
    }
    free(t);
}

void budget_free(struct budget *b)
{
    if (b == NULL) {
        return;
    }
    for (size_t i = 0; i < BUDGET_BUCKETS; i++) {
        for (struct btenant *t = b->buckets[i]; t != NULL;) {
            struct btenant *next = t->next;
            budget_tenant_free(t);
            t = next;
        }
    }
    free(b);
}

void budget_set_config(struct budget *b, struct config *cfg)
{
    b->cfg = cfg;
}

const struct budget_stats *budget_stats(const struct budget *b)
{
    return &b->stats;
}

/* Drops tenants with nothing going on and no lease left: for room. */
static void budget_sweep(struct budget *b, double now)
{
    for (size_t i = 0; i < BUDGET_BUCKETS; i++) {
        for (struct btenant **pp = &b->buckets[i]; *pp != NULL;) {
            struct btenant *t = *pp;
            if (!t->asking && t->waiters == NULL && t->inflight <= 0 && t->expires <= now) {
                *pp = t->next;
                budget_tenant_free(t);
                b->n--;
            } else {
                pp = &t->next;
            }
        }
    }
}

static struct btenant *budget_tenant(struct budget *b, const char *name, bool create, double now)
{
    unsigned long long h = budget_hash(name);
    struct btenant **head = &b->buckets[h % BUDGET_BUCKETS];
    for (struct btenant *t = *head; t != NULL; t = t->next) {
        if (t->hash == h && strcmp(t->name, name) == 0) {
            return t;
        }
    }
    if (!create || strlen(name) > CONFIG_MAX_NAME) {
        return NULL;
    }
    if (b->n >= BUDGET_MAX_TENANTS) {
        budget_sweep(b, now);
        if (b->n >= BUDGET_MAX_TENANTS) {
            return NULL;
        }
    }
    struct btenant *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return NULL;
    }
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->hash = h;
    t->b = b;
    t->next = *head;
    *head = t;
    b->n++;
    return t;
}

/* Calls every waiter once (each takes again, and may wait on a new request). */
static void budget_wake(struct btenant *t)
{
    struct budget_wait *list = t->waiters;
    t->waiters = NULL;
    if (list != NULL) {
        list->prevp = &list;
    }
    while (list != NULL) {
        struct budget_wait *w = list;
        list = w->next;
        if (list != NULL) {
            list->prevp = &list;
        }
        budget_cb cb = w->cb;
        void *arg = w->arg;
        free(w);
        cb(arg);
    }
}

static bool budget_usd_ok(const json_t *v)
{
    double d = json_number_value(v);
    return json_is_number(v) && isfinite(d) && d >= 0 && d <= BUDGET_MAX_USD;
}

static void budget_answered(void *arg, enum err e, long status, struct buf *body)
{
    struct btenant *t = arg;
    struct budget *b = t->b;
    t->asking = false;
    t->req = NULL;
    double now = budget_now();
    json_t *root = NULL;
    if (e == ERR_OK && status == 200 && body != NULL) {
        root = json_loadb((const char *)body->data, body->len, 0, NULL);
    }
    const json_t *data = json_object_get(root, "data");
    const json_t *ttl = json_object_get(data, "ttl");
    const json_t *granted = json_object_get(data, "granted_usd");
    const char *month = json_string_value(json_object_get(data, "month"));
    bool unlimited = json_is_true(json_object_get(data, "unlimited"));
    bool ok = json_is_integer(ttl) && json_integer_value(ttl) > 0 &&
              json_integer_value(ttl) <= 86400 && month != NULL && strlen(month) == 7 &&
              (unlimited || budget_usd_ok(granted));
    if (ok) {
        double life = (double)json_integer_value(ttl);
        t->expires = now + life * (1.0 - BUDGET_MARGIN);
        snprintf(t->month, sizeof(t->month), "%s", month);
        t->err_until = 0;
        b->stats.leases++;
        if (unlimited) {
            t->left = INFINITY;
            b->stats.unlimited++;
        } else {
            t->left = json_number_value(granted);
            /* A millionth of a cent below the ask is rounding, not a short lease. */
            if (t->left < t->requested - 1e-9) {
                /*
                 * The plugin gave all that was left: no call this lease cannot
                 * cover would get more by asking again soon. Or it gave
                 * nothing, since what was left was less than min_usd (the
                 * call's estimate): a smaller call may still ask.
                 */
                t->short_until = now + BUDGET_RECHECK_S;
                t->short_need = t->left > 0 ? 0 : t->need;
                b->stats.short_leases++;
            } else {
                t->short_until = 0;
            }
        }
    } else if (e == ERR_OK && status == 404) {
        /*
         * A plugin without budget leases (older than this agent): caps cannot
         * be enforced. Calls go on, as before the upgrade; said loudly.
         */
        log_kv(LOGL_ERROR,
               "vault has no budget-lease path (plugin older than the agent?); the tenant's "
               "max_monthly_cost is not enforced",
               "tenant", t->name, NULL);
        t->left = INFINITY;
        t->expires = now + 300;
        budget_month((long long)time(NULL), t->month);
        b->stats.errors++;
    } else {
        char st[24];
        snprintf(st, sizeof(st), "%ld", e == ERR_OK ? status : 0L);
        log_kv(LOGL_WARN, "budget lease request failed", "tenant", t->name, "status", st, "error",
               e == ERR_OK ? (status == 200 ? "unreadable reply" : "refused") : err_str(e), NULL);
        t->err_until = now + BUDGET_ERROR_S;
        b->stats.errors++;
    }
    json_decref(root);
    budget_wake(t);
}

static bool budget_request(struct budget *b, struct btenant *t, double want, double need)
{
    double unreported = usage_unreported_usd(b->usage, t->name) + t->inflight;
    if (!(unreported >= 0)) {
        unreported = 0;
    }
    if (unreported > BUDGET_MAX_USD) {
        unreported = BUDGET_MAX_USD;
    }
    if (want > BUDGET_MAX_USD) {
        want = BUDGET_MAX_USD;
    }
    /*
     * min_usd: a slice smaller than the call that asks is no use to it, and
     * would keep the rest of the budget from other nodes for the lease's
     * life (a call whose max_tokens alone costs more than the cap would take
     * it all): the plugin then grants nothing.
     */
    /*
     * The node's name at the plugin (usage_lease_node): node_id and 32 random
     * bits, kept by the journal across restarts. Two agents given one node_id
     * never replace each other's hold; without a journal a restarted agent is
     * a new node, and its old hold ends with its lease.
     */
    const char *node = b->usage != NULL ? usage_lease_node(b->usage) : b->cfg->usage.node_id;
    json_t *j = json_pack("{s:s,s:f,s:f,s:f}", "node", node, "unreported_usd", unreported,
                          "request_usd", want, "min_usd", need < want ? need : want);
    char *text = j != NULL ? jsonw_dumps(j, NULL) : NULL;
    json_decref(j);
    if (text == NULL) {
        return false;
    }
    char path[512];
    snprintf(path, sizeof(path), "%s/tenants/%s/budget-lease", b->cfg->vault.mount, t->name);
    /* The old lease's rest goes back with this request (it replaces the hold). */
    t->left = 0;
    t->expires = 0;
    t->requested = want;
    t->need = need;
    t->asking = true; /* before the call: Vault may answer at once (a failed login) */
    struct vault_req *req = NULL;
    if (vault_request(b->vault, "POST", path, text, budget_answered, t, &req) != ERR_OK) {
        t->asking = false;
        return false;
    }
    if (t->asking) {
        t->req = req;
    }
    return true;
}

enum budget_rc budget_take(struct budget *b, const char *tenant, double cap, double est,
                           budget_cb cb, void *arg, struct budget_wait **ret_wait)
{
    *ret_wait = NULL;
    double now = budget_now();
    struct btenant *t = budget_tenant(b, tenant, true, now);
    if (t == NULL) {
        b->stats.errors++;
        return BUDGET_UNAVAILABLE;
    }
    if (!(est >= 0)) {
        est = 0;
    }
    if (t->cap != cap) {
        /* The settings changed: a new lease under the new cap. */
        t->cap = cap;
        if (!t->asking) {
            t->left = 0;
            t->expires = 0;
        }
        t->short_until = 0;
        t->err_until = 0;
    }
    char month[8];
    budget_month((long long)time(NULL), month);
    bool valid = !t->asking && t->expires > now && strcmp(t->month, month) == 0;
    /* A trillionth of a dollar of slack: sums of reals are not exact. */
    if (valid && t->left + 1e-12 >= est) {
        t->left -= est;
        t->inflight += est;
        return BUDGET_OK;
    }
    if (!t->asking) {
        if (t->short_until > now && est >= t->short_need) {
            return BUDGET_EXHAUSTED;
        }
        if (t->err_until > now) {
            return BUDGET_UNAVAILABLE;
        }
        double slice = cap * (double)b->cfg->budget.lease_percent / 100.0;
        if (!budget_request(b, t, est > slice ? est : slice, est)) {
            t->err_until = now + BUDGET_ERROR_S;
            b->stats.errors++;
            return BUDGET_UNAVAILABLE;
        }
        if (!t->asking) {
            /* Answered at once (an error before any I/O): take again with that answer. */
            return budget_take(b, tenant, cap, est, cb, arg, ret_wait);
        }
    }
    struct budget_wait *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return BUDGET_UNAVAILABLE;
    }
    w->cb = cb;
    w->arg = arg;
    w->next = t->waiters;
    if (w->next != NULL) {
        w->next->prevp = &w->next;
    }
    w->prevp = &t->waiters;
    t->waiters = w;
    *ret_wait = w;
    return BUDGET_WAIT;
}

void budget_cancel(struct budget_wait *w)
{
    if (w == NULL) {
        return;
    }
    *w->prevp = w->next;
    if (w->next != NULL) {
        w->next->prevp = w->prevp;
    }
    free(w);
}

void budget_settle(struct budget *b, const char *tenant, double reserved, double used)
{
    struct btenant *t = budget_tenant(b, tenant, false, 0);
    if (t == NULL) {
        return;
    }
    t->inflight -= reserved;
    if (t->inflight < 1e-12) {
        t->inflight = 0;
    }
    /*
     * The hold at the plugin counted the reservation; what the call did not
     * use of it is this node's to spend again (or, used beyond it, owed).
     */
    if (!t->asking && t->expires > 0 && isfinite(t->left)) {
        t->left += reserved - used;
    }
}
