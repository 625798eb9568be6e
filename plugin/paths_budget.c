/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Path tenants/<t>/budget-lease (update): agents enforce a tenant's
 * max_monthly_cost with leases. Before spending, a node takes a slice of the
 * tenant's remaining monthly budget; the plugin keeps what every node holds,
 * so that all nodes together cannot pass the cap by more than what a node
 * spends beyond its hold after the hold expired, plus the estimate error of
 * the calls in flight (docs/admin-guide.md).
 *
 * A node's hold is what it has spent or has in flight that the usage ledger
 * does not count yet (unreported_usd, as the node says) plus the slice it was
 * granted. Each lease replaces the node's hold (never adds to it) and lasts
 * config.budget_lease_ttl; an expired hold counts no more. Every node's hold
 * is in one document per tenant, tenants/<t>/budget:
 *
 *   {"month": "YYYY-MM", "holds": {"<node>": {"usd": x, "expires": <unix seconds>}}}
 *
 * rewritten under keystore_lock by each lease, so two leases never both see
 * the same available budget. A document of an earlier month holds nothing:
 * the cap is per month and the ledger starts again at zero. A hold of 0 has
 * no entry and a document without holds is deleted, so a node that releases
 * (unreported_usd 0, request_usd 0) leaves nothing behind. With no cap
 * (max_monthly_cost 0) no hold is kept at all.
 *
 * Tenant delete walks tenants/<t>/, which takes the document with it.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "plugin/config.h"
#include "plugin/keystore.h"
#include "plugin/paths.h"

#define BUDGET_MAX_NODE 128
#define BUDGET_MAX_USD 1000000000 /* per request field, USD */
/* Nodes holding budget of one tenant at a time (the document stays small). */
#define BUDGET_MAX_HOLDS 1024

/* The tenant's cap (0: none) from its effective settings. */
static double budget_cap(const json_t *settings)
{
    double cap = json_number_value(json_object_get(settings, "max_monthly_cost"));
    return isfinite(cap) && cap > 0.0 ? cap : 0.0;
}

static double budget_spent(const json_t *usage)
{
    double spent = json_number_value(json_object_get(usage, "cost_usd"));
    return isfinite(spent) && spent > 0.0 ? spent : 0.0;
}

/*
 * The stored document at key (*ret_stored, NULL when there is none) and the
 * holds in it that count now (*ret_live, a new object {node: {usd, expires}}):
 * those of month that expire after now. An entry that is not a hold (written
 * by hand) is left out, as is the whole document when it is not one: a broken
 * document must not lock a tenant out of its budget for good.
 */
static enum err budget_load(struct storage *st, const char *key, const char *month, time_t now,
                            json_t **ret_stored, json_t **ret_live)
{
    json_t *stored = NULL;
    enum err e = storage_get_json(st, key, &stored);
    if (e == ERR_NOTFOUND) {
        e = ERR_OK;
        stored = NULL;
    }
    if (e != ERR_OK) {
        return e;
    }
    json_t *live = json_object();
    if (live == NULL) {
        json_decref(stored);
        return ERR_NOMEM;
    }
    const char *m = json_string_value(json_object_get(stored, "month"));
    json_t *holds = json_object_get(stored, "holds");
    if (m != NULL && strcmp(m, month) == 0 && json_is_object(holds)) {
        const char *node;
        json_t *h;
        json_object_foreach(holds, node, h)
        {
            json_t *usd = json_object_get(h, "usd");
            json_t *exp = json_object_get(h, "expires");
            if (!paths_usage_id_ok(node, BUDGET_MAX_NODE) || !json_is_number(usd) ||
                !isfinite(json_number_value(usd)) || json_number_value(usd) <= 0.0 ||
                !json_is_integer(exp) || json_integer_value(exp) <= (json_int_t)now) {
                continue;
            }
            if (json_object_set(live, node, h) != 0) {
                e = ERR_NOMEM;
                break;
            }
        }
    }
    if (e != ERR_OK) {
        json_decref(stored);
        json_decref(live);
        return e;
    }
    *ret_stored = stored;
    *ret_live = live;
    return ERR_OK;
}

/* Sum of the holds in live, leaving out skip (NULL: none). */
static double budget_held(json_t *live, const char *skip)
{
    double sum = 0.0;
    const char *node;
    json_t *h;
    json_object_foreach(live, node, h)
    {
        if (skip == NULL || strcmp(node, skip) != 0) {
            sum += json_number_value(json_object_get(h, "usd"));
        }
    }
    return sum;
}

enum err paths_budget_summary(struct storage *st, const char *tenant, const json_t *settings,
                              const json_t *usage, json_t **ret)
{
    double cap = budget_cap(settings), spent = budget_spent(usage);
    if (cap == 0.0) {
        *ret = json_pack("{sfsfsb}", "max_monthly_cost", 0.0, "spent_usd", spent, "unlimited", 1);
        return *ret != NULL ? ERR_OK : ERR_NOMEM;
    }
    char key[STORAGE_MAX_KEY], month[8];
    enum err e = keystore_path_tenant(key, sizeof(key), tenant, "budget");
    if (e != ERR_OK) {
        return e;
    }
    time_t now = keystore_now();
    paths_usage_month_of(now, month);
    json_t *stored = NULL, *live = NULL;
    e = budget_load(st, key, month, now, &stored, &live);
    if (e != ERR_OK) {
        return e;
    }
    double held = budget_held(live, NULL);
    *ret = json_pack("{sfsfsfsfsIsb}", "max_monthly_cost", cap, "spent_usd", spent, "held_usd",
                     held, "remaining_usd", fmax(0.0, cap - spent - held), "leases",
                     (json_int_t)json_object_size(live), "unlimited", 0);
    json_decref(stored);
    json_decref(live);
    return *ret != NULL ? ERR_OK : ERR_NOMEM;
}

/* Stores {month, holds}, or deletes the document when no hold is left; skips a write that
 * would change nothing. */
static enum err budget_store(struct storage *st, const char *key, const json_t *stored,
                             const char *month, json_t *holds)
{
    if (json_object_size(holds) == 0) {
        if (stored == NULL) {
            return ERR_OK;
        }
        enum err e = storage_delete(st, key);
        return e == ERR_NOTFOUND ? ERR_OK : e;
    }
    json_t *doc = json_pack("{sssO}", "month", month, "holds", holds);
    if (doc == NULL) {
        return ERR_NOMEM;
    }
    enum err e =
        stored != NULL && json_equal(stored, doc) ? ERR_OK : storage_put_json(st, key, doc, false);
    json_decref(doc);
    return e;
}

static enum err budget_lease(struct fw_request *req, struct fw_response *resp)
{
    struct keystore *ks = keystore_of(req->backend);
    if (ks == NULL) {
        return ERR_INTERNAL;
    }
    const char *t = fw_str(req, "tenant");
    const char *node = fw_str(req, "node");
    /* The framework checked the numbers (finite, 0..BUDGET_MAX_USD); the node is ours. */
    double unreported = fw_float(req, "unreported_usd");
    double request = fw_float(req, "request_usd");
    double min = fw_float(req, "min_usd");
    if (!paths_usage_id_ok(node, BUDGET_MAX_NODE)) {
        fw_error(resp, "invalid value for field 'node': 1..%d characters of [A-Za-z0-9._-]",
                 BUDGET_MAX_NODE);
        return ERR_OK;
    }
    char key[STORAGE_MAX_KEY];
    enum err e = keystore_path_tenant(key, sizeof(key), t, "budget");
    if (e != ERR_OK) {
        return e;
    }
    json_t *config = NULL;
    e = config_get_shared(req->backend, req->storage, &config);
    if (e != ERR_OK) {
        return e;
    }
    json_int_t ttl = json_integer_value(json_object_get(config, "budget_lease_ttl"));
    json_decref(config);
    if (ttl < CONFIG_BUDGET_LEASE_TTL_MIN || ttl > CONFIG_BUDGET_LEASE_TTL_MAX) {
        ttl = CONFIG_BUDGET_LEASE_TTL_DEFAULT;
    }

    json_t *settings = NULL, *usage = NULL, *stored = NULL, *live = NULL;
    keystore_lock(ks);
    /* As for usage: a lease must not bring back a deleted tenant's tree, nor make one up. */
    e = paths_tenant_deleting(req->storage, t);
    if (e == ERR_EXISTS) {
        /* A 400 as for a deleted tenant: the agent drops it rather than retrying for ever. */
        fw_error(resp,
                 "invalid value for field 'tenant': " PATHS_TENANT_DELETING
                 "; no budget is leased for it",
                 t);
        e = ERR_OK;
        goto out_unlock;
    }
    if (e == ERR_OK) {
        e = paths_usage_tenant_exists(ks, req->storage, t);
    }
    if (e == ERR_NOTFOUND) {
        fw_error(resp,
                 "invalid value for field 'tenant': tenant '%s' does not exist (deleted, or it "
                 "never stored a key or settings); no budget is leased for it",
                 t);
        e = ERR_OK;
        goto out_unlock;
    }
    if (e == ERR_OK) {
        e = keystore_settings_get(req->backend, req->storage, t, &settings);
    }
    if (e == ERR_OK) {
        e = paths_usage_month_to_date(req->storage, t, &usage);
    }
    if (e != ERR_OK) {
        goto out_unlock;
    }
    time_t now = keystore_now();
    char month[8];
    paths_usage_month_of(now, month);
    double cap = budget_cap(settings), spent = budget_spent(usage);
    if (cap == 0.0) {
        e = storage_delete(req->storage, key); /* a hold left from when there was a cap */
        if (e == ERR_NOTFOUND) {
            e = ERR_OK;
        }
        if (e == ERR_OK) {
            fw_reply(resp,
                     json_pack("{sbsssfsfsfsI}", "unlimited", 1, "month", month, "max_monthly_cost",
                               0.0, "spent_usd", spent, "granted_usd", request, "ttl", ttl));
        }
        goto out_unlock;
    }
    e = budget_load(req->storage, key, month, now, &stored, &live);
    if (e != ERR_OK) {
        goto out_unlock;
    }
    double others = budget_held(live, node);
    double available = cap - spent - others - unreported;
    /*
     * Less than min_usd left: nothing. A slice smaller than the call that
     * asks is no use to it, and would keep what is left from the other nodes.
     */
    double granted = available >= min ? fmax(0.0, fmin(request, available)) : 0.0;
    double hold = unreported + granted;
    time_t expires = now + (time_t)ttl;
    if (hold > 0.0) {
        if (json_object_get(live, node) == NULL && json_object_size(live) >= BUDGET_MAX_HOLDS) {
            fw_error(resp,
                     "invalid value for field 'node': %d nodes already hold budget of tenant "
                     "'%s'; try again when a lease has expired",
                     BUDGET_MAX_HOLDS, t);
            goto out_unlock;
        }
        if (json_object_set_new(live, node,
                                json_pack("{sfsI}", "usd", hold, "expires", (json_int_t)expires)) !=
            0) {
            e = ERR_NOMEM;
            goto out_unlock;
        }
    } else {
        json_object_del(live, node);
    }
    e = budget_store(req->storage, key, stored, month, live);
    if (e == ERR_OK) {
        char expires_at[32];
        keystore_time_format(expires, expires_at, sizeof(expires_at));
        fw_reply(resp, json_pack("{sbsssfsfsfsfsfsfsIss}", "unlimited", 0, "month", month,
                                 "max_monthly_cost", cap, "spent_usd", spent, "held_usd", others,
                                 "hold_usd", hold, "granted_usd", granted, "remaining_usd",
                                 fmax(0.0, cap - spent - others - hold), "ttl", ttl, "expires_at",
                                 expires_at));
    }
out_unlock:
    keystore_unlock(ks);
    json_decref(settings);
    json_decref(usage);
    json_decref(stored);
    json_decref(live);
    return e;
}

static const struct fw_field budget_fields[] = {
    {.name = "node",
     .type = FW_TYPE_STRING,
     .required = true,
     .max_len = BUDGET_MAX_NODE,
     .description = "The agent node's identity: 1..128 characters of [A-Za-z0-9._-]."},
    {.name = "unreported_usd",
     .type = FW_TYPE_FLOAT,
     .def = "0",
     .min = 0,
     .max = BUDGET_MAX_USD,
     .description = "USD the node has spent or has in flight that its usage reports acknowledged "
                    "so far do not hold."},
    {.name = "request_usd",
     .type = FW_TYPE_FLOAT,
     .def = "0",
     .min = 0,
     .max = BUDGET_MAX_USD,
     .description = "USD of fresh budget the node asks for (0: refresh, or release with "
                    "unreported_usd 0)."},
    {.name = "min_usd",
     .type = FW_TYPE_FLOAT,
     .def = "0",
     .min = 0,
     .max = BUDGET_MAX_USD,
     .description = "Grant nothing unless at least this much is available (the estimate of the "
                    "call that asks)."},
    {.name = NULL},
};

const struct fw_path paths_budget[] = {
    {
        .pattern = "tenants/{tenant}/budget-lease",
        .fields = budget_fields,
        .handlers = {[FW_OP_UPDATE] = budget_lease, [FW_OP_CREATE] = budget_lease},
        .synopsis = "Lease a slice of a tenant's remaining monthly budget (agents).",
        .description = "The node's hold becomes unreported_usd plus what is granted of "
                       "request_usd, at most max_monthly_cost less the month's reported cost and "
                       "the other nodes' unexpired holds. A hold lasts config.budget_lease_ttl "
                       "unless renewed. With no cap (max_monthly_cost 0) nothing is held.",
    },
    {.pattern = NULL},
};
