/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The agent's process-wide context: the event base and the long-lived
 * modules, plus the current config. Plain data, owned by main.c; every
 * request borrows it. Single-threaded: touched only from the event loop.
 */
#ifndef BYOK_AGENT_CTX_H
#define BYOK_AGENT_CTX_H

#include <event2/event.h>
#include <stdbool.h>

#include "agent/config.h"
#include "agent/keycache.h"
#include "agent/upstream.h"
#include "agent/usage.h"
#include "agent/vault.h"

struct server;
struct cooldown;
struct ratelimit;
struct health;
struct latency;
struct budget;
struct ratelease;

struct agent_ctx {
    struct event_base *base;
    struct config *cfg;        /* current; requests take a reference at start */
    struct upstream *up;       /* provider calls */
    struct upstream *vault_up; /* Vault calls: own connections and CA store */
    struct vault *vault;
    struct keycache *keys;
    struct usage *usage;
    struct cooldown *cool;   /* providers' Retry-After: tenant keys not to call yet */
    struct ratelimit *rl;    /* the agent's own rpm/tpm/rate_limit buckets (this node's share) */
    struct health *health;   /* providers failing at the transport level: tried last for a while */
    struct latency *latency; /* providers' observed speed: the "fastest" strategy ranks by it */
    struct budget *budget;   /* tenants' monthly budgets: leases from the plugin */
    struct ratelease *ratelease; /* tenants' rpm/tpm limits across the nodes: rate leases */
    struct server *server;
    size_t inflight; /* requests being answered */
    bool draining;   /* SIGTERM: no new connections; exit when inflight reaches 0 */
    unsigned long long req_seq;
    unsigned long long req_seed;
    unsigned long long route_rng; /* the "weighted" strategy's draws (route_rank_weighted) */
};

#endif
