/* SPDX-License-Identifier: MPL-2.0 */
/*
 * A tenant's rpm_limit and tpm_limit, and the rate_limit of each of its keys,
 * across every agent node, through rate leases. The plugin counts, per
 * tenant and limit (per tenant × provider × key_type for a key's), what it granted in the
 * current one-minute window (aligned to the wall clock) and grants at most
 * the limit in total; this node takes a slice of it from
 * `tenants/<t>/rate-lease` and takes each call's request (rpm) or token
 * estimate (tpm) from that slice. A slice is sized by this node's demand
 * (what it used in this window so far, or in the window before), so it
 * doubles while the node is busy, up to limits.rate_lease_percent of the
 * limit, and stays near what a quiet node uses: slices are never given back,
 * so many quiet nodes must not hold the minute between them. What is left
 * of a slice when its window ends is dropped; usage beyond a call's estimate
 * is debt the next lease must cover (kept within one limit).
 *
 * One request per tenant × limit at a time; calls that need it meanwhile wait
 * on it. A lease that gave less than asked means the window is used up on
 * every node: calls the slice cannot cover are refused until the window
 * ends, without asking again.
 *
 * When the shared path cannot be used (the policy refuses it: 403; an older
 * plugin: 404/405, or 400 for kind "key", which it does not know; Vault
 * unreachable or failing; a reply that makes no sense), the tenant × limit falls back to this
 * node's own token buckets (ratelimit.h, the caller's job on RATELEASE_LOCAL) for
 * RATELEASE_RETRY_S, then the shared path is tried again. Said at warn once per RATELEASE_RETRY_S
 * for the whole node. A Vault outage neither stops the calls of limited tenants nor lifts their
 * limits.
 *
 * Single-threaded (the event loop).
 */
#ifndef BYOK_AGENT_RATELEASE_H
#define BYOK_AGENT_RATELEASE_H

#include <stdbool.h>
#include <stddef.h>

#include "agent/config.h"
#include "agent/usage.h"
#include "agent/vault.h"

/* Tenant × limit entries at most; past it idle ones are dropped, then new ones are per node. */
#define RATELEASE_MAX_ENTRIES 65536
/* A name: the tenant, or tenant/provider/key_type for RATELEASE_KEY (ratelease_key_name). */
#define RATELEASE_MAX_NAME (3 * CONFIG_MAX_NAME + 2)
/* After the shared path failed: how long this tenant × limit is enforced per node only. */
#define RATELEASE_RETRY_S 60.0

enum ratelease_kind {
    RATELEASE_RPM, /* rpm_limit: requests */
    RATELEASE_TPM, /* tpm_limit: tokens */
    RATELEASE_KEY, /* a key's rate_limit: requests; named by ratelease_key_name */
};

enum ratelease_rc {
    RATELEASE_OK,      /* taken from this node's slice; settle with ratelease_give */
    RATELEASE_WAIT,    /* a lease is being fetched: cb is called, then take again */
    RATELEASE_REFUSED, /* the window is used up across the nodes: *ret_retry_s until it ends */
    RATELEASE_LOCAL,   /* not shared now: the caller applies this node's own bucket */
};

struct ratelease;
struct ratelease_wait;

/* The call waiting on a lease: take again. */
typedef void (*ratelease_cb)(void *arg);

struct ratelease_stats {
    /* Lease requests answered: all asked, less than asked, "unlimited", failed. */
    unsigned long long granted, short_leases, unlimited, errors;
    /* Times a tenant × limit fell back to per-node buckets. */
    unsigned long long fallbacks;
};

/*
 * Leases are asked under usage_lease_node(u), as budget leases; without u
 * (unit tests) under usage.node_id.
 */
struct ratelease *ratelease_new(struct vault *v, struct usage *u, struct config *cfg);
/* Pending callers get no callback. Accepts NULL. */
void ratelease_free(struct ratelease *rl);
void ratelease_set_config(struct ratelease *rl, struct config *cfg);

/*
 * The name of a key's rate_limit for ratelease_take and ratelease_give:
 * tenant/provider/key_type (names never hold '/'). out holds
 * RATELEASE_MAX_NAME + 1 bytes; false when a part is empty or too long.
 */
bool ratelease_key_name(char *out, size_t size, const char *tenant, const char *provider,
                        const char *key_type);

/*
 * Takes n (>= 0) from name's slice of kind (name: the tenant, or for
 * RATELEASE_KEY ratelease_key_name's), whose limit (> 0) is what the
 * call's creds say; a different limit than the last take's keeps the slice
 * (the plugin counted it all the same) and bounds the debt by the new one,
 * and an "unlimited" answer (the plugin has no such limit) makes the tenant ×
 * kind per node for RATELEASE_RETRY_S. Taken when the slice holds min(n, limit): a tpm estimate
 * above the whole limit passes a slice of the whole limit and leaves debt.
 * RATELEASE_OK: *ret_window is the window's end the amount belongs to (for
 * ratelease_give). RATELEASE_WAIT: *ret_wait is a handle for
 * ratelease_cancel, cb comes later. RATELEASE_REFUSED: *ret_retry_s is the
 * whole seconds (>= 1) until the window ends. With
 * limits.shared_rate_limits false, always RATELEASE_LOCAL.
 */
enum ratelease_rc ratelease_take(struct ratelease *rl, const char *name, enum ratelease_kind kind,
                                 long long limit, long long n, ratelease_cb cb, void *arg,
                                 struct ratelease_wait **ret_wait, double *ret_window,
                                 long long *ret_retry_s);
void ratelease_cancel(struct ratelease_wait *w);
/*
 * Settles what a call took in window (ratelease_take's *ret_window): n > 0
 * goes back to the slice while that window lasts (dropped after it); n < 0
 * is debt (used beyond the estimate), kept within one limit.
 */
void ratelease_give(struct ratelease *rl, const char *name, enum ratelease_kind kind,
                    long long limit, long long n, double window);
const struct ratelease_stats *ratelease_stats(const struct ratelease *rl);

/* The wall clock in seconds (unix time); tests replace it (NULL: the real one). */
void ratelease_set_clock(double (*now)(void));

#endif
