/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Provider cooldowns: a provider that answers 429 (or 503 with Retry-After)
 * says when it will take the tenant's key again. Until then the router skips
 * that tenant's key for that provider and tries the other candidates; when
 * every candidate is cooling the call is answered 429 without a provider
 * call. A rate limit belongs to the provider account behind a key, not to a
 * model, so a cooldown is keyed by tenant × provider × the key's key_id
 * (from creds): a different key for the same provider (a new key record)
 * is not cooling.
 *
 * Also the parser of the provider's Retry-After (RFC 9110 section 10.2.3:
 * delta-seconds or an HTTP-date) and OpenAI's retry-after-ms.
 *
 * Bounded: at most COOLDOWN_MAX_ENTRIES live cooldowns; expired ones are
 * removed whenever the table is read or written. When it is full of live
 * ones a new cooldown is not recorded (the provider is then called and
 * answers 429 again). A lookup on an empty table is one comparison.
 * Single-threaded (the event loop); no I/O, no logging.
 */
#ifndef BYOK_AGENT_COOLDOWN_H
#define BYOK_AGENT_COOLDOWN_H

#include <stddef.h>
#include <time.h>

#include "common/err.h"

/* Live cooldowns held at most (~280 bytes each, allocated as they are used). */
#define COOLDOWN_MAX_ENTRIES 4096
/* Bytes of a key_id compared (a longer one is compared by its first 128 bytes). */
#define COOLDOWN_MAX_KEY_ID 128
/* A Retry-After (or retry-after-ms) value longer than this is refused unread. */
#define COOLDOWN_MAX_HEADER 64
/* A wait over a day is not believed: the value is refused as garbage. */
#define COOLDOWN_SANE_MAX_MS (86400LL * 1000)
/* The wait assumed for a 429 without a usable Retry-After. */
#define COOLDOWN_DEFAULT_MS 5000LL

/*
 * The provider's wait in milliseconds from its headers (NULL = absent):
 * retry_after_ms (OpenAI: milliseconds, digits with an optional fraction)
 * when valid, else retry_after: delta-seconds (digits, an optional fraction
 * tolerated) or an HTTP-date (IMF-fixdate, RFC 850 or asctime, read with
 * curl_getdate) taken against now (wall clock); a date in the past is 0.
 * Surrounding spaces and tabs are allowed. ERR_NOTFOUND: neither is given;
 * ERR_INVAL: what is given is garbage, negative, longer than
 * COOLDOWN_MAX_HEADER or over COOLDOWN_SANE_MAX_MS. *ret_ms is written only
 * on ERR_OK.
 */
MUST_USE enum err cooldown_parse(const char *retry_after, const char *retry_after_ms, time_t now,
                                 long long *ret_ms);

struct cooldown;

/* An empty table; NULL when out of memory. */
struct cooldown *cooldown_new(void);
/* Accepts NULL. */
void cooldown_free(struct cooldown *cd);

/*
 * tenant × provider × key_id (NULL = "") cools until `until` (monotonic
 * seconds, as server_now), or later if it already does. Returns 1 when a
 * cooldown starts, 0 when one was extended or already lasted longer, -1
 * when the table is full of live cooldowns (nothing recorded).
 */
int cooldown_start(struct cooldown *cd, const char *tenant, const char *provider,
                   const char *key_id, double until, double now);

/* Seconds tenant × provider × key_id still cools at now; 0 when it does not. */
double cooldown_left(struct cooldown *cd, const char *tenant, const char *provider,
                     const char *key_id, double now);

/*
 * A reload: cooldowns are kept (they are the providers' word, not the
 * config's), but none may last past now + max_s; max_s 0 drops them all.
 */
void cooldown_cap(struct cooldown *cd, double now, long max_s);

/* Live and expired entries held (for tests). */
size_t cooldown_count(const struct cooldown *cd);

#endif
