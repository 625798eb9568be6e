/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Usage accounting: every finished provider call is counted (tokens from the
 * provider's usage fields, cost from the catalog price) in memory (GET
 * /v1/byok/usage, metrics) and in a batch row. Calls with the same provider,
 * model, app, key type and status between two reports share one row
 * ("requests": N), so the hot path adds integers and builds no JSON. Rows are
 * shipped to the plugin's tenants/<tenant>/usage path in batches with a unique
 * batch_id; a batch that fails (no answer, 5xx, 429, 403, 404) is kept and
 * re-sent later with the SAME batch_id (the plugin is idempotent by batch_id);
 * one answered 400 is dropped; one answered 413 (too large for Vault) is split
 * into halves with ids derived from its own, a single row still refused
 * dropped. While a tenant has a batch
 * not acknowledged, its new calls keep adding to its open rows (no new batch
 * per interval). Unsent rows are bounded by usage.max_pending_records; past it
 * the oldest not in flight are dropped (waiting batches' first, then open
 * rows), their requests counted (usage_dropped) and logged at the next report.
 */
#ifndef BYOK_AGENT_USAGE_H
#define BYOK_AGENT_USAGE_H

#include <event2/event.h>
#include <jansson.h>

#include "agent/config.h"
#include "agent/providers.h"
#include "agent/vault.h"
#include "common/err.h"

struct usage;

struct usage_record {
    const char *tenant;
    const char *app;
    const char *provider;
    const char *model;
    const char *key_type;
    const char *status; /* "ok" or an error code */
    struct provider_usage tokens;
    double cost_usd;
    bool estimated; /* tokens partly estimated (the provider reported no final usage) */
};

struct usage *usage_new(struct event_base *base, struct vault *v, struct config *cfg);
void usage_free(struct usage *u);
void usage_set_config(struct usage *u, struct config *cfg);
/*
 * Opens the journal in dir (journal.h), loads what it holds (rows and the
 * batches not acknowledged before a crash or restart, batches with their
 * ids) and keeps it from now on. Call once, before any record. ERR_CONFIG
 * with why in errbuf when the directory cannot be used.
 */
MUST_USE enum err usage_journal_open(struct usage *u, const char *dir, char *errbuf, size_t errlen);
/* Counts and queues one record. Out of memory drops the record (counted). */
void usage_record(struct usage *u, const struct usage_record *r);
/* Totals since start for one tenant (new reference, never NULL unless out of memory). */
json_t *usage_tenant_json(struct usage *u, const char *tenant);
/*
 * Cost in USD of the tenant's rows not yet acknowledged by the plugin (open
 * and sealed): spent, but not in the plugin's ledger yet (budget.c).
 */
double usage_unreported_usd(struct usage *u, const char *tenant);
/*
 * Sends each tenant's first waiting batch now, or seals its open rows into
 * batches and sends the first when none waits (every report interval, and
 * during the SIGTERM drain until nothing is left). A tenant with a batch in
 * flight is left alone.
 */
void usage_flush(struct usage *u);
/*
 * The node name this agent takes budget leases under (budget.c): node_id and
 * 32 random bits drawn at start, or, with a journal, the name the journal
 * kept, so that a restarted agent replaces its own hold instead of leaving it
 * to expire.
 */
const char *usage_lease_node(const struct usage *u);
/* Batches in flight to Vault. */
size_t usage_inflight(const struct usage *u);
/* Rows not yet acknowledged by Vault, the requests they count, and requests dropped. */
size_t usage_pending(const struct usage *u);
unsigned long long usage_pending_requests(const struct usage *u);
unsigned long long usage_dropped(const struct usage *u);

#endif
