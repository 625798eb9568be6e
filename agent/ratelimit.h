/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Rate limits the agent enforces itself, per node: token buckets for a
 * tenant's rpm_limit and tpm_limit (settings) and for a key's rate_limit
 * (requests per minute, from creds). A bucket holds at most one minute's
 * worth (its limit) and refills continuously at limit per 60 seconds,
 * computed from the time of its last use (no timer per bucket). A bucket may
 * go into debt (a call used more tokens than it reserved), down to one
 * minute's worth below zero.
 *
 * Bounded: at most RATELIMIT_MAX_ENTRIES buckets. A full bucket is the same
 * as no bucket (a new one starts full), so full ones are dropped as lookups
 * come across them (a few hash slots swept per lookup, and every slot before
 * the table would count as full). When the table is full of buckets in use a
 * new bucket is not recorded and the call passes (the caller logs it): the
 * limit is not enforced rather than every tenant refused. A lookup costs the
 * same whatever the number of buckets.
 *
 * It knows nothing of settings or requests (the caller reads the limits and
 * decides what a refusal means) and does not log. Single-threaded (the
 * event loop); no I/O.
 */
#ifndef BYOK_AGENT_RATELIMIT_H
#define BYOK_AGENT_RATELIMIT_H

#include <jansson.h>
#include <stddef.h>

/* Buckets held at most (~300 bytes each, allocated as they are used). */
#define RATELIMIT_MAX_ENTRIES 4096
/* Bytes of a key_id compared (as COOLDOWN_MAX_KEY_ID). */
#define RATELIMIT_MAX_KEY_ID 128
/*
 * The largest limit applied: the plugin's own bound for rpm_limit and
 * tpm_limit (a key's rate_limit is bounded lower); a larger value from Vault
 * is clamped to it.
 */
#define RATELIMIT_MAX_LIMIT 1000000000LL

/* What a bucket counts; part of its name, so a tenant's rpm and tpm buckets are distinct. */
enum ratelimit_kind {
    RATELIMIT_RPM, /* tenant: requests per minute */
    RATELIMIT_TPM, /* tenant: tokens per minute */
    RATELIMIT_KEY, /* tenant × provider × key_id: requests per minute */
};

struct ratelimit;

/* An empty table; NULL when out of memory. */
struct ratelimit *ratelimit_new(void);
/* Accepts NULL. */
void ratelimit_free(struct ratelimit *rl);

/*
 * The limit a setting from Vault asks for: a positive JSON integer, clamped
 * to RATELIMIT_MAX_LIMIT. 0 (none) for anything else: absent, null, 0,
 * negative, a real, a string. Vault's plugin refuses such values when they
 * are written; a stored one that is bad anyway must not stop every call.
 */
long long ratelimit_limit_of(const json_t *v);

/*
 * Takes n (>= 0) tokens from the bucket of kind for tenant × provider ×
 * key_id (NULL = "") whose limit is limit (> 0; a change of limit applies at
 * once, a level above it is cut to it). Taken when the bucket holds
 * min(n, limit) after its refill: a request larger than the whole limit
 * passes a full bucket and leaves it in debt. Returns 1 when taken, -1 when
 * the table is full of buckets in use (nothing recorded: the call passes), 0
 * when refused: the bucket is unchanged and *ret_wait gets the seconds (> 0)
 * until it would hold enough. *ret_wait is written only on 0. limit <= 0
 * means no limit: returns 1.
 */
int ratelimit_take(struct ratelimit *rl, enum ratelimit_kind kind, const char *tenant,
                   const char *provider, const char *key_id, long long limit, long long n,
                   double now, double *ret_wait);

/*
 * Settles a reservation: puts back n tokens (n < 0 takes -n more, without a
 * check: usage over the reservation), the level capped at limit and at one
 * limit of debt. A bucket dropped meanwhile (it had refilled) starts full.
 * limit <= 0 or n == 0: nothing.
 */
void ratelimit_give(struct ratelimit *rl, enum ratelimit_kind kind, const char *tenant,
                    const char *provider, const char *key_id, long long limit, long long n,
                    double now);

/*
 * Whole seconds for a Retry-After header from a wait in seconds: rounded up,
 * so that a client waiting that long finds the tokens back; a wait within a
 * microsecond of a whole second is that second (floating-point noise must
 * not add one). 0 for a wait <= 0.
 */
long long ratelimit_retry_after(double wait);

/* Buckets held (for tests). */
size_t ratelimit_count(const struct ratelimit *rl);

#endif
