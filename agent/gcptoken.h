/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Access tokens for Vertex service-account keys (common/gcpkey.h). A
 * service-account key is never sent to Vertex: the agent signs a JWT with it
 * (RS256) and trades that at Google's OAuth 2.0 token endpoint for an access
 * token (the JWT bearer grant, RFC 7523), which Vertex takes as
 * "Authorization: Bearer". The trade is an ordinary upstream transfer on the
 * event loop (agent/upstream.h), never a blocking call.
 *
 * - The token is kept with the key it came from (keycache_entry.aux), in a
 *   struct secret (secure heap), and no longer than the key: it is wiped when
 *   the key is (expiry, a Vault 4xx, a provider 401, exit), and when it
 *   nears its own expiry (GCPTOKEN_REFRESH_S before expires_in), after which
 *   the next call trades again.
 * - Concurrent calls for the same key share one trade: the first starts it,
 *   later ones wait on it (as the key cache shares one Vault fetch).
 * - The token URL is the agent's config (upstream.google_token_url, default
 *   Google's), never the key's token_uri: a tenant's key cannot point the
 *   agent at another service.
 * - A refusal of a key (400/401/403: invalid_grant for a clock too far off,
 *   a deleted or disabled key) is remembered for GCPTOKEN_REFUSED_S by a
 *   salted SHA-256 of the token URL and the key (never the key): the caller
 *   drops the refused key and reads it from Vault again, but the same key
 *   is then refused without being parsed, signed and traded again. A key
 *   rotated in Vault (other bytes) is traded at once.
 * - Nothing here logs; the caller logs outcomes without the token, the JWT
 *   or any of the key.
 */
#ifndef BYOK_AGENT_GCPTOKEN_H
#define BYOK_AGENT_GCPTOKEN_H

#include <stdbool.h>
#include <stddef.h>

#include "agent/keycache.h"
#include "agent/upstream.h"
#include "common/err.h"
#include "common/secret.h"

/* The scope asked for: Vertex AI takes cloud-platform. */
#define GCPTOKEN_SCOPE "https://www.googleapis.com/auth/cloud-platform"
/* A token is traded again this long before its expires_in ends (half of it for short ones). */
#define GCPTOKEN_REFRESH_S 300
/* The longest access token taken (Google's are ~1 KB to 2 KB); it goes into a header. */
#define GCPTOKEN_MAX_TOKEN 4096
/* The longest token endpoint answer read. */
#define GCPTOKEN_MAX_ANSWER ((size_t)64 * 1024)
/* The longest expires_in taken (Google's is 3599 s). */
#define GCPTOKEN_MAX_EXPIRES_IN 86400L
/*
 * A key the token endpoint refused (400/401/403) is not traded again for
 * this long: the same key signs the same kind of JWT, and a clock too far
 * off, a deleted or disabled key is refused again. Calls meanwhile get the
 * refusal, from the event loop, without signing or a request.
 */
#define GCPTOKEN_REFUSED_S 30
/* How many refused keys are remembered (the oldest is forgotten first). */
#define GCPTOKEN_REFUSED_MAX 256

struct gcptoken_wait;

/*
 * e: ERR_OK (the entry now holds a token: gcptoken_current), ERR_DENIED (the
 * token endpoint refused the key: 400/401/403, Google's invalid_grant),
 * ERR_UNAVAIL / ERR_TIMEOUT (the endpoint unreachable, 429 or 5xx), ERR_PROTO
 * (an answer that is not a token), ERR_CANCELLED (the key was wiped
 * meanwhile), ERR_INVAL (the key does not parse or sign), ERR_NOMEM.
 * status: the endpoint's HTTP status, 0 for none.
 */
typedef void (*gcptoken_cb)(void *arg, enum err e, long status);

/* Where and how the trade is made. Borrowed for the call. */
struct gcptoken_opts {
    const char *token_url;     /* upstream.google_token_url or CONFIG_GOOGLE_TOKEN_URL */
    struct upstream_opts http; /* timeouts, ca_file, proxy; allow_http and sensitive are set here */
};

/* Whether the entry's key is a service-account JSON (not an API key). */
bool gcptoken_wanted(const struct keycache_entry *ent);

/* The entry's access token when it holds one that is not near its expiry; else NULL. */
const struct secret *gcptoken_current(const struct keycache_entry *ent);
/*
 * Which token the entry holds (a number that changes with every new token; 0
 * for none), taken when a call sends it: gcptoken_sent(ent, gen) gives that
 * token back while the entry still has it (the current one, or the one the
 * last refresh replaced), else NULL (replaced twice, dropped or wiped). For
 * redacting a provider's answer with the token the call sent (proxy.c).
 */
unsigned long gcptoken_generation(const struct keycache_entry *ent);
const struct secret *gcptoken_sent(const struct keycache_entry *ent, unsigned long gen);

/*
 * Trades the entry's key for a token, or joins the trade under way. cb is
 * always called later, from the event loop (never from here); *ret_wait is a
 * handle for gcptoken_cancel. On error no callback is called. The caller
 * holds a reference on ent until cb has run or it cancelled. A key refused
 * less than GCPTOKEN_REFUSED_S ago gets ERR_DENIED with the refusal's status
 * through cb, with no trade.
 */
MUST_USE enum err gcptoken_get(struct upstream *up, const struct gcptoken_opts *o,
                               struct keycache_entry *ent, gcptoken_cb cb, void *arg,
                               struct gcptoken_wait **ret_wait);
/* Forgets a wait (no callback); the trade goes on for the others. Accepts NULL. */
void gcptoken_cancel(struct gcptoken_wait *w);
/* Wipes the entry's token (Vertex refused it): the next call trades again. */
void gcptoken_drop(struct keycache_entry *ent);

/*
 * Trades started, calls that joined one under way, trades that gave no token
 * (metrics), and calls answered with a remembered refusal (no trade).
 */
struct gcptoken_stats {
    unsigned long long fetches, shared, failures, refused_remembered;
};
const struct gcptoken_stats *gcptoken_stats(void);
/* Exposed for tests: forgets every remembered refusal. */
void gcptoken_refusals_clear(void);

/*
 * Exposed for tests. The token endpoint's 200 answer: access_token (1..
 * GCPTOKEN_MAX_TOKEN printable ASCII without spaces) into *ret (secure heap),
 * expires_in (1..GCPTOKEN_MAX_EXPIRES_IN) into *ret_expires_in, token_type
 * Bearer when given. ERR_PROTO otherwise, ERR_NOMEM when the secure heap is
 * full.
 */
MUST_USE enum err gcptoken_parse_answer(const char *body, size_t len, struct secret **ret,
                                        long *ret_expires_in);
/* How long a token with this expires_in is used: GCPTOKEN_REFRESH_S less, or half of it. */
long gcptoken_lifetime(long expires_in);
/*
 * The form body of the JWT bearer grant for a signed JWT (malloc'd, to be
 * wiped: upstream_xfer_start does). ERR_NOMEM.
 */
MUST_USE enum err gcptoken_form(const char *jwt, size_t jwt_len, char **ret, size_t *ret_len);

#endif
