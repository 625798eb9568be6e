/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Passive provider health, per node: the consecutive transport-level
 * failures of each provider's attempts (connect errors, TLS failures,
 * timeouts, 5xx), counted from what the calls see; nothing is probed. After
 * `threshold` of them in a row the provider is demoted for `demote_s`
 * seconds: the router moves it behind the healthy candidates of a call, it
 * never drops it (a call whose candidates are all demoted still tries them).
 * When the period has passed the provider is back in its place, on
 * probation: its next failure demotes it again at once (half-open). Any
 * answer that shows the provider is up (2xx, or a 4xx other than 429)
 * clears its record.
 *
 * Keyed by provider (the catalog name): an outage is the provider's, not a
 * tenant's key's (401/403 are the key's, a 429 the account's: cooldown.c).
 * Bounded: at most HEALTH_MAX_ENTRIES records; a provider with a clean
 * record holds none. When the table is full the record touched longest ago
 * is dropped (the configured providers are fewer, so only a provider a
 * reload removed can be). Single-threaded (the event loop); no I/O, no
 * logging.
 */
#ifndef BYOK_AGENT_HEALTH_H
#define BYOK_AGENT_HEALTH_H

#include <stddef.h>

#include "agent/config.h"

/* Records held at most: twice the providers a config may list (a reload may name new ones). */
#define HEALTH_MAX_ENTRIES ((size_t)2 * CONFIG_MAX_PROVIDERS)

/* What a recorded outcome changed, for the caller to log and count. */
enum health_event {
    HEALTH_SAME,      /* nothing worth telling */
    HEALTH_DEMOTED,   /* the provider was not demoted and is now */
    HEALTH_RECOVERED, /* the provider was demoted, or on probation after it, and answered */
};

struct health;

/* An empty table; NULL when out of memory. */
struct health *health_new(void);
/* Accepts NULL. */
void health_free(struct health *h);

/*
 * An attempt of provider failed at the transport level at now (monotonic
 * seconds, as server_now). threshold: consecutive failures that demote
 * (upstream.health_failures; 0 = health tracking off: nothing is recorded);
 * demote_s: how long a demotion lasts. A failure while demoted extends the
 * demotion to now + demote_s. *ret_failures (may be NULL) gets the
 * consecutive failures counted, the one just recorded included.
 */
enum health_event health_failure(struct health *h, const char *provider, unsigned threshold,
                                 double demote_s, double now, unsigned *ret_failures);

/* The provider answered: its record is cleared. */
enum health_event health_success(struct health *h, const char *provider);

/* Seconds provider stays demoted at now; 0 when it is not. */
double health_demoted(const struct health *h, const char *provider, double now);

/*
 * The order to try n providers (names) in: those not demoted at now first,
 * then the demoted ones, each group in the order given (stable). Writes n
 * indexes into names to ret_order; returns how many are demoted.
 */
size_t health_order(const struct health *h, const char *const *names, size_t n, double now,
                    size_t *ret_order);

/*
 * A reload: threshold 0 (tracking off) drops every record; otherwise
 * records are kept (the providers' state, not the config's) but no
 * demotion lasts past now + demote_s.
 */
void health_configure(struct health *h, unsigned threshold, double demote_s, double now);

/* Records held (for tests, and to skip lookups when there is none). */
size_t health_count(const struct health *h);

#endif
