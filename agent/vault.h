/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The agent's Vault client: authenticates with a token file (re-read when it
 * changes), AppRole, Kubernetes or TLS certificate auth (the client
 * certificate and key are read again at each login); renews its token before it expires;
 * logs in again on a 403 that lookup-self shows was a token no longer valid
 * (not a policy refusal) and retries the request once. All calls go through
 * the shared curl multi (upstream.h), so nothing blocks the event loop.
 *
 * The token lives in a struct secret; it reaches curl only through a wiped
 * header list. Response bodies handed to callbacks are wiped after the
 * callback returns (creds responses carry a provider key).
 */
#ifndef BYOK_AGENT_VAULT_H
#define BYOK_AGENT_VAULT_H

#include <event2/event.h>
#include <stdbool.h>

#include "agent/config.h"
#include "agent/upstream.h"
#include "common/buf.h"
#include "common/err.h"

/* Largest Vault response we read (a creds reply with a 512-model catalog entry fits). */
#define VAULT_MAX_RESPONSE ((size_t)1024 * 1024)
/* Largest credential file (token, role_id, secret_id, JWT, client certificate, key). */
#define VAULT_MAX_CRED_FILE CONFIG_MAX_CRED_FILE
/* Requests waiting for a login at most; past it new ones fail with ERR_BUSY. */
#define VAULT_MAX_QUEUED 10000

struct vault;
struct vault_req;

/*
 * e: ERR_OK when Vault answered (any status), ERR_UNAVAIL/ERR_TIMEOUT when it
 * could not be reached, ERR_AUTH when no token could be obtained.
 * body: the response (may be empty); borrowed, wiped after the callback.
 */
typedef void (*vault_cb)(void *arg, enum err e, long status, struct buf *body);

struct vault *vault_new(struct event_base *base, struct upstream *up, struct config *cfg);
/*
 * Cancels every request, queued or in flight (its transfer stopped), without
 * callbacks; wipes the token. Handles from vault_request are invalid after
 * it. Accepts NULL.
 */
void vault_free(struct vault *v);
/* A reloaded config: new auth settings take effect at the next login. */
void vault_set_config(struct vault *v, struct config *cfg);
/* Starts authentication now (at start-up) rather than at the first request. */
void vault_start(struct vault *v);

/*
 * method "GET" or "POST"; path below /v1/ (e.g. "byok/tenants/acme/creds/openai");
 * body (malloc'd JSON or NULL) is taken over. On error no callback is called.
 */
MUST_USE enum err vault_request(struct vault *v, const char *method, const char *path, char *body,
                                vault_cb cb, void *arg, struct vault_req **ret_req);
/* No callback after this. Accepts NULL. */
void vault_request_cancel(struct vault_req *r);

/*
 * What /healthz says of Vault. OK: a token is held that has not expired and
 * that Vault has not refused, and the last call reached Vault (TLS included).
 * UNAVAILABLE: Vault cannot be used now for a reason that is not the
 * credentials: unreachable (refused, reset, timed out), a TLS configuration
 * problem on a call made with the token (Vault's certificate not trusted),
 * a login answered 5xx or 429, or no login finished yet. LOGIN_FAILED: no
 * usable token, and the last login failed for a reason a retry alone will
 * not fix: refused by Vault, credential or token files unusable, a TLS
 * handshake failing on configuration (either side's certificate), a token
 * Vault refused (lookup-self 403) or one that expired without a
 * replacement.
 */
enum vault_health { VAULT_HEALTH_OK, VAULT_HEALTH_UNAVAILABLE, VAULT_HEALTH_LOGIN_FAILED };
/*
 * *ret_reason: why it is not OK, a short text for operators (never a
 * secret, a path or a server's text), owned by v and valid until the next
 * call into it; NULL when OK.
 */
enum vault_health vault_health(const struct vault *v, const char **ret_reason);
/* "ok", "unavailable", "login_failed". */
const char *vault_health_name(enum vault_health h);
/* vault_health(v) == VAULT_HEALTH_OK. */
bool vault_ok(const struct vault *v);
/* Counters for metrics. */
struct vault_stats {
    unsigned long long requests;
    unsigned long long errors;
    unsigned long long logins;
    unsigned long long renewals;
};
const struct vault_stats *vault_stats(const struct vault *v);

/* Longest token lease we schedule a renewal for (ten years; Vault's own max_lease_ttl is less). */
#define VAULT_MAX_LEASE_S (10L * 365 * 86400)
/*
 * Reads a login or token-lookup reply: {"auth": {"client_token",
 * "lease_duration", "renewable"}} or {"data": {"ttl", "renewable"}}. The
 * token (when ret_token is given and one is there) goes to secure memory;
 * the TTL is clamped to 0..VAULT_MAX_LEASE_S. Exposed for the unit test.
 */
void vault_parse_lease(const char *body, size_t len, struct secret **ret_token, long *ret_ttl,
                       bool *ret_renewable);

#endif
