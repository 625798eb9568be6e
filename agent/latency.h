/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Observed provider speed, per node: for each provider/model this agent
 * called, the time from sending an attempt to the first byte of its answer
 * (the status line: for a stream its start, for a plain answer nearly all of
 * it), as a moving average kept apart for streamed and plain calls, and the
 * share of recent attempts that were answered. The router's "fastest"
 * strategy ranks candidates by it (proxy.c); every call feeds it, whatever
 * its strategy, so switching a tenant to "fastest" starts informed.
 *
 * A measurement older than the caller's ttl is forgotten: the provider/model
 * is then "unknown" again and ranked first, so that it is measured again (a
 * provider that was slow is tried once per ttl, and its new speed counts,
 * not averaged with the old one).
 * Keyed by provider and model (an outage or a slow model is the
 * provider's, not a tenant's key's). Bounded: at most LATENCY_MAX_ENTRIES
 * records, the one touched longest ago replaced when full. Single-threaded
 * (the event loop); no I/O, no logging. Every function accepts a NULL
 * table (nothing is recorded, everything is unknown).
 */
#ifndef BYOK_AGENT_LATENCY_H
#define BYOK_AGENT_LATENCY_H

#include <stdbool.h>
#include <stddef.h>

#include "common/buf.h"
#include "common/err.h"

/* Provider/model pairs tracked at most (a config lists at most 64 providers). */
#define LATENCY_MAX_ENTRIES 256
/* Weight of a new measurement in the moving averages (latency and success). */
#define LATENCY_ALPHA 0.25
/* The success share never counts below this: a score stays finite. */
#define LATENCY_MIN_SUCCESS 0.05
/* Scores closer than this ratio may rank as equal (latency_rank). */
#define LATENCY_STEP 1.1
/* latency_score: no measurement within ttl. */
#define LATENCY_UNKNOWN (-1.0)
/* latency_score: no measurement within ttl, but a failure. */
#define LATENCY_FAILING 1e30
/* latency_score: never measured, and its first measurement is under way. */
#define LATENCY_PROBING 1e29

struct latency;

/* An empty table; NULL when out of memory. */
struct latency *latency_new(void);
/* Accepts NULL. */
void latency_free(struct latency *l);

/*
 * An attempt of provider/model (stream or not) answered with a 2xx after
 * secs, at now (monotonic seconds, as server_now). ttl is the caller's (as
 * for latency_score): an average whose last measurement is older starts
 * anew, and so does the whole record when nothing in it is younger.
 */
void latency_answered(struct latency *l, const char *provider, const char *model, bool stream,
                      double secs, double now, double ttl);

/* An attempt of provider/model failed at the transport level (health.h's kinds) at now. */
void latency_failed(struct latency *l, const char *provider, const char *model, double now,
                    double ttl);

/*
 * A call is about to measure provider/model (stream or not) at now: it was
 * unknown and is tried first. Until that measurement (or ttl) the pair is
 * not unknown any more, so the calls that start meanwhile do not all go to
 * it: it ranks by its last, expired average when it had one, else behind
 * the measured ones (LATENCY_PROBING). A busy tenant thus sends one call,
 * not every call of a slow provider's answer time, to measure it again.
 */
void latency_probe(struct latency *l, const char *provider, const char *model, bool stream,
                   double now, double ttl);

/*
 * The expected seconds to an answer of provider/model for a stream or not:
 * the moving average divided by the success share. Without a measurement of
 * that kind taken within ttl seconds of now: during a probe (latency_probe)
 * the expired average so divided, or LATENCY_PROBING when it never had one;
 * else LATENCY_FAILING when it failed within ttl, LATENCY_UNKNOWN when not.
 */
double latency_score(const struct latency *l, const char *provider, const char *model, bool stream,
                     double now, double ttl);

/*
 * The order to try n candidates (providers[i] / models[i]) in, for the
 * "fastest" strategy: the unknown ones first (to be measured), then the
 * measured ones by score, then those being measured for the first time,
 * then the failing ones. Scores are compared in
 * steps of LATENCY_STEP (10 %, on a logarithmic scale), so nearly equal ones
 * count as equal; equal ones keep the order given (stable). Writes n
 * indexes to ret_order.
 */
void latency_rank(const struct latency *l, const char *const *providers, const char *const *models,
                  size_t n, bool stream, double now, double ttl, size_t *ret_order);

/*
 * Appends byok_provider_latency_seconds{provider,model,stream} (the moving
 * averages measured within ttl of now) and byok_provider_success_ratio{provider,model}
 * to out, with HELP/TYPE lines even when empty.
 */
MUST_USE enum err latency_render(const struct latency *l, struct buf *out, double now, double ttl);

/* Records held. */
size_t latency_count(const struct latency *l);

#endif
