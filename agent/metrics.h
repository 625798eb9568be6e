/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Prometheus text exposition (format 0.0.4) of the agent's counters and
 * histograms. Process-wide state, used from the event loop thread only.
 * Series are created on first use and bounded by METRICS_MAX_SERIES; past it
 * new label sets are counted in byok_metrics_dropped_series_total instead, so
 * a flood of distinct models cannot grow memory without bound. The families
 * labelled by model (tokens, cost) may hold at most METRICS_MAX_MODEL_SERIES
 * of them, so such a flood cannot crowd out the other families' series.
 * Label values are escaped; never pass a secret as a label.
 */
#ifndef BYOK_AGENT_METRICS_H
#define BYOK_AGENT_METRICS_H

#include "common/buf.h"
#include "common/err.h"

#define METRICS_MAX_SERIES 10000
#define METRICS_MAX_MODEL_SERIES 8000
#define METRICS_MAX_LABELS 512
/* Label pairs metrics_labels takes; more are left out. */
#define METRICS_MAX_PAIRS 8

enum metric_id {
    M_REQUESTS,         /* byok_requests_total{route,status} */
    M_REQUEST_SECONDS,  /* byok_request_duration_seconds{route} (histogram) */
    M_UPSTREAM,         /* byok_upstream_requests_total{provider,status} */
    M_UPSTREAM_SECONDS, /* byok_upstream_first_byte_seconds{provider} (histogram) */
    M_ERRORS,           /* byok_errors_total{code} */
    M_FAILOVERS,        /* byok_failovers_total{provider} */
    M_TOKENS,           /* byok_tokens_total{tenant,provider,model,kind} */
    M_COST,             /* byok_cost_usd_total{tenant,provider,model} */
    M_CACHE,            /* byok_keycache_lookups_total{result} */
    M_USAGE_BATCHES,    /* byok_usage_batches_total{result} */
    M_USAGE_ESTIMATED,  /* byok_usage_estimated_total{tenant,provider} */
    M_COOLDOWN_SKIPS,   /* byok_cooldown_skips_total{provider} */
    M_RATE_LIMITED,     /* byok_rate_limited_total{tenant,limit} */
    M_DEMOTIONS,        /* byok_provider_demotions_total{provider} */
    M_BUDGET_REFUSED,   /* byok_budget_refused_total{tenant,reason} */
    M_SERVER_TOOLS,     /* byok_server_tool_requests_total{tenant,provider,model,tool} */
    M_USAGE_CLAMPED,    /* byok_usage_clamped_total{provider,field} */
    M__COUNT
};

void metrics_add(enum metric_id id, double v, const char *labels);
void metrics_observe(enum metric_id id, double seconds, const char *labels);
/*
 * Builds a label string k1="v1",k2="v2" into out (size bytes, NUL included);
 * pairs end with NULL, a NULL value is "". Values are escaped, bytes that are
 * not UTF-8 become U+FFFD, and when they do not all fit the longest are cut
 * between whole characters: every key is always written (unless the keys
 * alone do not fit in size: then out is "").
 */
void metrics_labels(char *out, size_t size, ...) __attribute__((sentinel));
/* Appends the whole exposition. */
MUST_USE enum err metrics_render(struct buf *out);
/* Appends one gauge line with HELP/TYPE. */
MUST_USE enum err metrics_gauge(struct buf *out, const char *name, const char *help, double v);
/* Frees every series (at exit, and between unit tests). */
void metrics_reset(void);

#endif
