/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Outgoing HTTP for the agent: libcurl's multi-socket API driven by the same
 * libevent base as the Unix-socket server, so provider calls and Vault calls
 * never block the loop and share one connection cache (keep-alive).
 *
 * A transfer is started with upstream_xfer_start and reports through three
 * callbacks, all called from the event loop:
 *   on_status  once, when the response status is known (before any data)
 *   on_data    for each body chunk as it arrives; may return UPSTREAM_PAUSE
 *              WITHOUT consuming the chunk (curl re-delivers it after
 *              upstream_xfer_resume), UPSTREAM_ABORT to stop the transfer
 *   on_done    exactly once at the end (unless upstream_xfer_cancel was
 *              called first); the transfer is freed right after it returns.
 * Header lists given to a transfer are owned by it and wiped before they are
 * freed, because they may carry a provider key or a Vault token.
 */
#ifndef BYOK_AGENT_UPSTREAM_H
#define BYOK_AGENT_UPSTREAM_H

#include <curl/curl.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"
#include "common/secret.h"

/* Hard ceiling for one buffered response body, whatever the config says. */
#define UPSTREAM_MAX_RESPONSE_CEILING ((size_t)64 * 1024 * 1024)
/* Longest URL we build. */
#define UPSTREAM_MAX_URL 4096
/*
 * What upstream_xfer_drain reads of the rest of a body, and for how long,
 * before it closes the connection instead.
 */
#define UPSTREAM_MAX_DRAIN_BYTES ((size_t)64 * 1024)
#define UPSTREAM_MAX_DRAIN_MS 1000L

enum upstream_data_rc { UPSTREAM_CONTINUE = 0, UPSTREAM_PAUSE = 1, UPSTREAM_ABORT = 2 };

struct upstream_opts {
    long connect_timeout_ms;    /* TCP+TLS connect */
    long first_byte_timeout_ms; /* from start to the first body byte */
    long idle_timeout_ms;       /* between two body chunks (not counted while paused) */
    long total_timeout_ms;      /* whole transfer; 0 = none */
    bool allow_http;            /* plain http allowed (local providers, Vault on loopback) */
    const char *ca_file;        /* NULL = system store; copied by curl */
    const char *unix_socket;    /* connect through this Unix socket (Vault); NULL = TCP */
    const char *proxy;          /* HTTP(S) proxy URL; NULL = none, whatever the environment
                                   (http_proxy, HTTPS_PROXY, ALL_PROXY are never used) */
    bool sensitive;             /* the response carries secrets (Vault): the easy handle is not
                                   pooled (its receive buffer is freed, so wiped) and OpenSSL
                                   releases its record buffers after each use */
    /*
     * Tell a TLS failure that is a configuration problem from a peer gone
     * during the handshake (Vault transfers; provider transfers keep the
     * plain mapping). See upstream_classify.
     */
    bool classify_tls;
    /*
     * A TLS client certificate (PEM, may hold its chain) and its private key
     * to present (Vault cert auth login); NULL = none. Such a transfer runs on
     * a new connection, closed after it, without TLS session resumption: curl
     * reads both files at that handshake (a renewed pair is used at once) and
     * no later transfer reuses the authenticated connection. Its on_done
     * tells a refusal from trouble: ERR_CRYPTO when the pair cannot be loaded,
     * the server's certificate is not trusted or the server refused the
     * handshake with a fatal TLS alert; a connection reset or closed during
     * the handshake (no alert) is ERR_UNAVAIL, as a refused connection is.
     */
    const char *client_cert;
    const char *client_key;
};

/*
 * Why a transfer with classify_tls (or a client certificate) failed in TLS
 * when the failure is a configuration problem: on_done then gets ERR_CRYPTO.
 */
enum upstream_tls {
    UPSTREAM_TLS_NONE = 0,    /* not a TLS configuration failure */
    UPSTREAM_TLS_UNTRUSTED,   /* our side rejected the server's certificate (CA, name, dates) */
    UPSTREAM_TLS_CA_FILE,     /* the CA file could not be read or holds no certificate */
    UPSTREAM_TLS_CLIENT_PAIR, /* our client certificate or key cannot be loaded, or do not match */
    UPSTREAM_TLS_REFUSED,     /* the server refused the handshake with a fatal TLS alert */
};

struct upstream_cbs {
    void (*on_status)(void *arg, long status);
    enum upstream_data_rc (*on_data)(void *arg, const char *data, size_t len);
    void (*on_done)(void *arg, enum err e, long status);
    /* Optional: called just before on_done when e will be ERR_CRYPTO for that reason. */
    void (*on_tls_fail)(void *arg, enum upstream_tls why);
};

/*
 * The outcome of a finished transfer from curl's result (pure; exposed for
 * the unit test). classify: the transfer asked for TLS failures to be told
 * apart (classify_tls or a client certificate); alert: the server sent a
 * fatal TLS alert (seen only on client-certificate transfers). What libcurl
 * 7.88 with OpenSSL 3 returns (measured, Debian 12):
 *   CURLE_PEER_FAILED_VERIFICATION  our side rejected the server's certificate
 *                                   (untrusted CA, name, expired); we send the alert
 *   CURLE_SSL_CACERT_BADFILE        CA file missing or not PEM
 *   CURLE_SSL_CERTPROBLEM           client certificate or key unusable, or a key
 *                                   that does not match (before any byte is sent)
 *   CURLE_SSL_CONNECT_ERROR         a TLS 1.2 server's fatal alert, or the
 *                                   connection reset or closed during the handshake
 *   CURLE_RECV_ERROR                a TLS 1.3 server's alert after our Finished
 * With classify, the first three are ERR_CRYPTO with their reason, any
 * failure after a fatal alert is ERR_CRYPTO (refused), and
 * CURLE_SSL_CONNECT_ERROR without one is ERR_UNAVAIL (the peer went away:
 * Vault restarting). Without classify the plain mapping holds (every TLS
 * failure ERR_CRYPTO, no reason). *ret_tls is always written.
 */
enum err upstream_classify(CURLcode c, bool classify, bool alert, enum upstream_tls *ret_tls);

struct upstream;
struct upstream_xfer;

/* max_host_connections: CURLMOPT_MAX_HOST_CONNECTIONS (0 = unlimited). NULL on failure. */
struct upstream *upstream_new(struct event_base *base, long max_host_connections);
/*
 * Sets CURLMOPT_MAX_HOST_CONNECTIONS (0 = unlimited) on the running multi
 * handle (a reload): transfers already connected keep their connections;
 * new transfers wait or connect by the new limit.
 */
void upstream_set_max_host_connections(struct upstream *up, long max_host_connections);
/* Cancels every transfer (no callbacks) and frees. Accepts NULL. */
void upstream_free(struct upstream *up);
/* The event loop the transfers run on (for a caller's own deferred callbacks). */
struct event_base *upstream_base(const struct upstream *up);
/* Transfers in flight (0 for NULL). */
size_t upstream_active(const struct upstream *up);
/*
 * New connections parse the CA file once and share it for an hour. After
 * this call (SIGHUP: the file may have changed in place) they read it again.
 */
void upstream_ca_reread(struct upstream *up);

/*
 * A number that changes every time libevent hands curl a socket or timer
 * event. Data callbacks that see the same round came from one read loop of
 * curl (which reads for as long as the socket has data, without returning to
 * the event loop).
 */
unsigned long upstream_round(const struct upstream *up);

/*
 * The answer's Content-Type as the server sent it, or NULL (none, or its
 * headers have not all come). Valid until the transfer ends; from a callback
 * of the transfer (on_status, on_data) its headers are complete.
 */
const char *upstream_xfer_content_type(const struct upstream_xfer *x);

/*
 * Appends "<prefix><secret>" to *list, building the line in a buffer that is
 * wiped before return. ERR_NOMEM on failure (the list is left as it was).
 */
MUST_USE enum err upstream_header_secret(struct curl_slist **list, const char *prefix,
                                         const struct secret *s);
/*
 * The same for len bytes of a secret held elsewhere (a part of one: the
 * session token inside an IAM credential). ERR_INVAL when they hold CR or LF.
 */
MUST_USE enum err upstream_header_secret_bytes(struct curl_slist **list, const char *prefix,
                                               const void *data, size_t len);
/* Appends a plain header line; refuses CR/LF (ERR_INVAL). */
MUST_USE enum err upstream_header_add(struct curl_slist **list, const char *line);
/* Wipes every line and frees the list. Accepts NULL. */
void upstream_headers_free(struct curl_slist *list);

/*
 * Starts a transfer. method is "GET" or "POST". body (malloc'd, may be NULL)
 * and headers are taken over in every case (also on error) and wiped when the
 * transfer ends: curl reads the body in place (no copy), and bodies may hold
 * a Vault secret_id or a prompt. On error no callback is called.
 */
MUST_USE enum err upstream_xfer_start(struct upstream *up, const char *method, const char *url,
                                      char *body, size_t body_len, struct curl_slist *headers,
                                      const struct upstream_opts *opts,
                                      const struct upstream_cbs *cbs, void *arg,
                                      struct upstream_xfer **ret_xfer);
/* Stops a transfer without calling on_done; safe from inside its callbacks. Accepts NULL. */
void upstream_xfer_cancel(struct upstream_xfer *x);
/* Resumes a transfer whose on_data returned UPSTREAM_PAUSE. */
void upstream_xfer_resume(struct upstream_xfer *x);
/*
 * The caller has what it wanted of the body (a stream's end marker): no
 * callback is called any more, and the rest of the body is read and dropped
 * so that the connection can serve another transfer. Past
 * UPSTREAM_MAX_DRAIN_BYTES or UPSTREAM_MAX_DRAIN_MS the transfer is dropped
 * and the connection closed instead. For a transfer that is not paused;
 * safe from inside on_data (return UPSTREAM_CONTINUE). Accepts NULL.
 */
void upstream_xfer_drain(struct upstream_xfer *x);
/*
 * The content coding the response declares (Content-Encoding) when it is
 * not identity, else NULL. Transfers ask for identity (Accept-Encoding) and
 * decode nothing, so such a body is not what the caller can read. A coding
 * the table knows is named ("gzip", "br", ...); any other is "" (the
 * provider's own string is never handed out). A static string; from
 * on_status on.
 */
const char *upstream_xfer_coding(struct upstream_xfer *x);
/*
 * The value of response header name (case-insensitive) copied into out (size
 * bytes, NUL included), from on_status on. False when the header is absent,
 * appears more than once, or does not fit: out is then "". For small
 * informational headers (Retry-After); never for a header that may carry a
 * secret.
 */
bool upstream_xfer_header(struct upstream_xfer *x, const char *name, char *out, size_t size);

#endif
