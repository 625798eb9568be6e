/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Monthly budgets (a tenant's max_monthly_cost) through budget leases. The
 * plugin keeps the month's ledger and what every agent node holds; this
 * node takes a lease (a slice of what is left) from `tenants/<t>/budget-lease`
 * and reserves each call's estimated cost from it before the call, settling
 * with the counted cost when the call ends.
 *
 * A lease request replaces this node's hold at the plugin with what it has
 * spent but not yet reported (usage rows not acknowledged, reservations of
 * calls in flight) plus the new slice. What was left of the old lease is
 * given back by that replacement, so it is dropped here when the request is
 * sent and calls wait for the answer. One request per tenant at a time;
 * calls that need it meanwhile wait on it.
 *
 * A lease that gave less than asked means the budget is nearly used up: for
 * BUDGET_RECHECK_S after it, calls it cannot cover are refused without
 * asking again. A failed request (Vault unreachable, 5xx) refuses the calls
 * that waited on it, and those of the next second, as unavailable; a lease
 * still valid keeps serving.
 *
 * Single-threaded (the event loop). Tenants without a cap never get here.
 */
#ifndef BYOK_AGENT_BUDGET_H
#define BYOK_AGENT_BUDGET_H

#include <stdbool.h>

#include "agent/config.h"
#include "agent/usage.h"
#include "agent/vault.h"
#include "common/err.h"

/* Tenants with budget state at most; past it idle ones are dropped, then calls are unavailable. */
#define BUDGET_MAX_TENANTS 65536
/* After a lease that gave less than asked: how long calls it cannot cover are refused outright. */
#define BUDGET_RECHECK_S 5.0
/* After a failed lease request: how long calls that need a lease are refused as unavailable. */
#define BUDGET_ERROR_S 1.0
/* Largest amount in USD a lease request or reply may carry (the plugin's bound). */
#define BUDGET_MAX_USD 1.0e9

struct budget;
struct budget_wait;

enum budget_rc {
    BUDGET_OK,          /* reserved: settle with budget_settle when the call ends */
    BUDGET_WAIT,        /* a lease is being fetched: cb is called, then take again */
    BUDGET_EXHAUSTED,   /* what is left of the month's budget does not cover the call */
    BUDGET_UNAVAILABLE, /* no lease could be had (Vault trouble, memory) */
};

/* The call waiting on a lease: take again (the lease may or may not cover it). */
typedef void (*budget_cb)(void *arg);

struct budget_stats {
    unsigned long long leases, short_leases, unlimited, errors;
};

/*
 * Leases are taken under usage_lease_node(u) (usage.node_id and 32 random
 * bits, kept by the journal across restarts); without u (unit tests), under
 * usage.node_id alone.
 */
struct budget *budget_new(struct vault *v, struct usage *u, struct config *cfg);
/* Pending callers get no callback. Accepts NULL. */
void budget_free(struct budget *b);
void budget_set_config(struct budget *b, struct config *cfg);

/*
 * Reserves est USD (>= 0) of the tenant's budget; cap is its max_monthly_cost
 * (> 0) as the creds reply's settings say. A different cap than the last
 * call's (the settings changed) drops the lease: the next call takes a new
 * one. BUDGET_WAIT: *ret_wait is a handle for budget_cancel, cb comes later.
 */
enum budget_rc budget_take(struct budget *b, const char *tenant, double cap, double est,
                           budget_cb cb, void *arg, struct budget_wait **ret_wait);
void budget_cancel(struct budget_wait *w);
/* A call's reservation ends: used USD (its counted cost) replaces the reserved est. */
void budget_settle(struct budget *b, const char *tenant, double reserved, double used);
const struct budget_stats *budget_stats(const struct budget *b);

/* "YYYY-MM" (UTC) of a wall-clock time; exposed for the unit test. */
void budget_month(long long t, char out[8]);

#endif
