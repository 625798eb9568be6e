/* SPDX-License-Identifier: MPL-2.0 */
/*
 * libcurl multi-socket on libevent (curl's hiperfifo pattern). Curl tells us
 * which sockets to watch (socket callback) and when to wake it (timer
 * callback); libevent tells curl when a socket is ready. Every transfer also
 * has one timer of ours for the deadlines curl cannot express: time to first
 * byte and idle time between chunks (curl's low-speed check would also count
 * time spent paused by our own backpressure).
 *
 * Not done here: retries, failover, parsing. Callers own that.
 */
#include "agent/upstream.h"

#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "agent/fileid.h"
#include "common/log.h"

/* Easy handles kept for reuse (curl_easy_reset): saves an allocation-heavy init per call. */
#define UPSTREAM_POOL_MAX 256
#define UPSTREAM_MAX_IDLE_CONNECTIONS 128L
/* curl's receive buffer (CURLOPT_BUFFERSIZE; curl's default is 16 KiB). */
#define UPSTREAM_RECV_BUFFER 4096L
/* curl's upload buffer (CURLOPT_UPLOAD_BUFFERSIZE; 16 KiB is curl's minimum). */
#define UPSTREAM_SEND_BUFFER 16384L
/* How long one parsed CA file serves new connections before curl reads it again. */
#define UPSTREAM_CA_CACHE_S 3600L
/* How often, at most, a new transfer looks whether the CA file changed (one stat). */
#define UPSTREAM_CA_CHECK_MS 1000

struct upstream {
    struct event_base *base;
    CURL *pool[UPSTREAM_POOL_MAX];
    size_t n_pool;
    CURLM *multi;
    CURLSH *share;
    struct event *timer;
    bool in_timer; /* inside upstream_timer_cb */
    size_t active;
    unsigned long round;
    struct upstream_sock **socks; /* by descriptor: connection sockets curl opened */
    size_t n_socks;
    struct upstream_xfer *xfers; /* doubly linked, for upstream_free */
    int64_t ca_reread_ms;        /* CLOCK_MONOTONIC ms of upstream_ca_reread(), + 1; 0 = never */
    int64_t ca_checked_ms;       /* when upstream_ca_watch last looked; 0 = never */
    char *ca_path;               /* the CA file it looked at (NULL: none yet) */
    struct file_id ca_id;        /* what the CA file looked like then */
};

struct upstream_xfer {
    struct upstream *up;
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    size_t body_len;
    struct event *deadline;
    struct upstream_cbs cbs;
    void *arg;
    long first_byte_ms;
    long idle_ms;
    bool got_status;
    bool got_data;
    bool paused;
    bool in_curl_cb; /* inside a curl callback: curl_multi_remove_handle is forbidden */
    bool cancelled;  /* cancel requested from inside a callback; freed at completion */
    bool timed_out;
    bool send_released; /* upstream_release_send_buffer done */
    bool draining;      /* upstream_xfer_drain: the rest of the body is dropped */
    size_t drained;     /* bytes dropped so far */
    enum err
        failed; /* != ERR_OK: curl failed the transfer inside a resume; ended by the deadline */
    bool sensitive;
    bool client_cert;           /* presents a TLS client certificate (a Vault cert login) */
    bool classify_tls;          /* opts->classify_tls: see upstream_classify */
    bool tls_refused;           /* client_cert: the server sent a fatal TLS alert */
    struct upstream_sock *sock; /* the connection socket it uses, if known */
    struct upstream_xfer *prev, *next;
};

static void upstream_check_done(struct upstream *up);
static void upstream_unlink(struct upstream_xfer *x);

static void upstream_list_remove(struct upstream_xfer *x)
{
    if (x->prev != NULL) {
        x->prev->next = x->next;
    } else {
        x->up->xfers = x->next;
    }
    if (x->next != NULL) {
        x->next->prev = x->prev;
    }
    x->prev = x->next = NULL;
}

static void upstream_body_free(char *body, size_t len)
{
    if (body != NULL) {
        OPENSSL_cleanse(body, len);
        free(body);
    }
}

static void upstream_xfer_destroy(struct upstream_xfer *x)
{
    struct upstream *up = x->up;
    upstream_list_remove(x);
    upstream_unlink(x);
    if (x->deadline != NULL) {
        event_free(x->deadline);
    }
    if (x->client_cert) {
        /*
         * The TLS message callback's argument is x: detached before x goes,
         * for a curl that shuts the connection down after the transfer (8.x
         * may; 7.88 closes it in curl_multi_remove_handle) and reads a last
         * record then.
         */
        struct curl_tlssessioninfo *ti = NULL;
        if (curl_easy_getinfo(x->easy, CURLINFO_TLS_SSL_PTR, &ti) == CURLE_OK && ti != NULL &&
            ti->backend == CURLSSLBACKEND_OPENSSL && ti->internals != NULL) {
            SSL_set_msg_callback_arg((SSL *)ti->internals, NULL);
        }
    }
    curl_multi_remove_handle(up->multi, x->easy);
    if (up->n_pool < UPSTREAM_POOL_MAX && !x->sensitive) {
        curl_easy_reset(x->easy);
        up->pool[up->n_pool++] = x->easy;
    } else {
        curl_easy_cleanup(x->easy);
    }
    upstream_headers_free(x->headers);
    upstream_body_free(x->body, x->body_len);
    up->active--;
    free(x);
}

/*
 * One libevent event per socket curl watches; curl_multi_assign keeps it for
 * us. curl stops watching a connection's socket at the end of every transfer
 * and watches it again when the next transfer reuses the connection: that was
 * an epoll_ctl pair per request. Connection sockets (opened through
 * upstream_open_cb) therefore stay registered while idle in curl's cache, and
 * their events are freed only when curl closes them (upstream_close_cb),
 * before the descriptor number can be reused. Other sockets (a resolver's
 * wake-up pipe) are unregistered at once, as before.
 */
struct upstream_sock {
    struct upstream *up;
    struct event *ev; /* NULL until first watched */
    curl_socket_t fd;
    short kind;                 /* event flags it is added with; 0 when not added */
    bool lazy;                  /* connection socket: stays registered while idle */
    bool idle;                  /* curl does not watch it now */
    struct upstream_xfer *xfer; /* the transfer curl watches it for; NULL when idle */
};

/* Ends the link between a transfer and the socket it used, on either side. */
static void upstream_unlink(struct upstream_xfer *x)
{
    if (x->sock != NULL) {
        x->sock->xfer = NULL;
        x->sock = NULL;
    }
}

static void upstream_link(struct upstream_sock *us, CURL *easy)
{
    struct upstream_xfer *x = NULL;
    if (us->xfer != NULL) {
        us->xfer->sock = NULL;
        us->xfer = NULL;
    }
    if (easy != NULL && curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x) == CURLE_OK &&
        x != NULL) {
        upstream_unlink(x);
        x->sock = us;
        us->xfer = x;
    }
}

static void upstream_sock_free(struct upstream_sock *us)
{
    if (us != NULL) {
        if (us->xfer != NULL) {
            us->xfer->sock = NULL;
        }
        if (us->ev != NULL) {
            event_free(us->ev);
        }
        free(us);
    }
}

/* The table slot of a descriptor (grown when asked to), or NULL. */
static struct upstream_sock **upstream_slot(struct upstream *up, curl_socket_t fd, bool grow)
{
    if (fd < 0) {
        return NULL;
    }
    if ((size_t)fd >= up->n_socks) {
        if (!grow) {
            return NULL;
        }
        size_t n = up->n_socks > 0 ? up->n_socks : 64;
        while (n <= (size_t)fd) {
            n *= 2;
        }
        struct upstream_sock **t = realloc(up->socks, n * sizeof(struct upstream_sock *));
        if (t == NULL) {
            return NULL;
        }
        memset(t + up->n_socks, 0, (n - up->n_socks) * sizeof(struct upstream_sock *));
        up->socks = t;
        up->n_socks = n;
    }
    return &up->socks[fd];
}

static curl_socket_t upstream_open_cb(void *clientp, curlsocktype purpose,
                                      struct curl_sockaddr *addr)
{
    struct upstream *up = clientp;
    curl_socket_t fd = socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
    if (fd == CURL_SOCKET_BAD || purpose != CURLSOCKTYPE_IPCXN) {
        return fd;
    }
    struct upstream_sock **slot = upstream_slot(up, fd, true);
    struct upstream_sock *us = slot != NULL ? calloc(1, sizeof(*us)) : NULL;
    if (us == NULL) {
        return fd; /* watched the plain way */
    }
    upstream_sock_free(*slot); /* none expected: every close comes through upstream_close_cb */
    us->up = up;
    us->fd = fd;
    us->lazy = true;
    us->idle = true;
    *slot = us;
    return fd;
}

static int upstream_close_cb(void *clientp, curl_socket_t fd)
{
    struct upstream *up = clientp;
    struct upstream_sock **slot = upstream_slot(up, fd, false);
    if (slot != NULL && *slot != NULL) {
        upstream_sock_free(*slot);
        *slot = NULL;
    }
    return close(fd);
}

/*
 * OpenSSL frees a connection's 16.7 KB record read buffer
 * (SSL_MODE_RELEASE_BUFFERS, which curl sets) only after handing out
 * application data; a read that finds nothing keeps it. After a TLS 1.3
 * handshake, curl's read of the server's session tickets is such a read, so
 * every new connection held the buffer until the answer's first bytes: at
 * the start of 1,000 concurrent streams, ~700 buffers (12 MB) at once.
 * SSL_free_buffers() frees the buffers when they hold no data, after curl has
 * handled the socket's event. Not before OpenSSL 3.0.14 (CVE-2024-4741).
 */
static void upstream_trim_tls(struct upstream *up, curl_socket_t fd)
{
    static int usable = -1;
    if (usable < 0) {
        /* Fixed in 3.0.14, 3.1.6, 3.2.2 and 3.3.1. */
        unsigned long v = OpenSSL_version_num();
        usable = (v >= 0x300000e0L && v < 0x30100000L) || (v >= 0x30100060L && v < 0x30200000L) ||
                 (v >= 0x30200020L && v < 0x30300000L) || v >= 0x30300010L;
    }
    struct upstream_sock **slot = usable ? upstream_slot(up, fd, false) : NULL;
    struct upstream_xfer *x = slot != NULL && *slot != NULL ? (*slot)->xfer : NULL;
    struct curl_tlssessioninfo *tls = NULL;
    if (x != NULL && curl_easy_getinfo(x->easy, CURLINFO_TLS_SSL_PTR, &tls) == CURLE_OK &&
        tls != NULL && tls->backend == CURLSSLBACKEND_OPENSSL && tls->internals != NULL) {
        (void)SSL_free_buffers(tls->internals);
    }
}

static void upstream_event_cb(evutil_socket_t fd, short what, void *arg)
{
    struct upstream_sock *us = arg;
    struct upstream *up = us->up;
    int flags = 0;
    int running = 0;
    if (us->idle) {
        /*
         * A cached connection became readable while no transfer uses it (the
         * server closed it): stop watching. curl checks a cached connection
         * before it reuses one.
         */
        event_del(us->ev);
        us->kind = 0;
        return;
    }
    if (what & EV_READ) {
        flags |= CURL_CSELECT_IN;
    }
    if (what & EV_WRITE) {
        flags |= CURL_CSELECT_OUT;
    }
    up->round++;
    /* us may be freed in here (curl closes the socket): not used after. */
    curl_multi_socket_action(up->multi, fd, flags, &running);
    upstream_trim_tls(up, fd);
    upstream_check_done(up);
}

static void upstream_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct upstream *up = arg;
    int running = 0;
    up->round++;
    up->in_timer = true;
    curl_multi_socket_action(up->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    up->in_timer = false;
    upstream_check_done(up);
}

/*
 * curl 7.88 keeps its upload buffer until the transfer ends, and over TLS it
 * copies the whole request into it, Authorization header included. A stream
 * can last minutes. Once the request is out (request bytes written, every
 * body byte counted as sent), setting the buffer size again frees the buffer
 * (setopt.c), and our allocator wipes it: the key leaves the heap at once,
 * and a call in flight holds 16 KiB less. Tried when curl turns to reading
 * the socket only (a reused connection) and at the first body bytes (a new
 * one: curl was already reading for the TLS handshake, so it says nothing).
 */
static void upstream_release_send_buffer(struct upstream_xfer *x)
{
    long request_bytes = 0;
    curl_off_t sent = -1;
    if (x->send_released ||
        curl_easy_getinfo(x->easy, CURLINFO_REQUEST_SIZE, &request_bytes) != CURLE_OK ||
        request_bytes <= 0 ||
        curl_easy_getinfo(x->easy, CURLINFO_SIZE_UPLOAD_T, &sent) != CURLE_OK ||
        sent != (curl_off_t)x->body_len) {
        return;
    }
    curl_easy_setopt(x->easy, CURLOPT_UPLOAD_BUFFERSIZE, UPSTREAM_SEND_BUFFER);
    x->send_released = true;
}

static int upstream_socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct upstream *up = userp;
    struct upstream_sock *us = socketp;
    if (us == NULL) {
        struct upstream_sock **slot = upstream_slot(up, s, false);
        us = slot != NULL ? *slot : NULL;
    }
    if (what == CURL_POLL_REMOVE) {
        if (us != NULL) {
            upstream_link(us, NULL);
            curl_multi_assign(up->multi, s, NULL);
            if (us->lazy) {
                us->idle = true; /* stays registered until it is closed or wakes up */
            } else {
                upstream_sock_free(us);
            }
        }
        return 0;
    }
    short kind = EV_PERSIST;
    if (what & CURL_POLL_IN) {
        kind |= EV_READ;
    }
    if (what & CURL_POLL_OUT) {
        kind |= EV_WRITE;
    }
    if (us == NULL) {
        us = calloc(1, sizeof(*us));
        if (us == NULL) {
            return -1;
        }
        us->up = up;
        us->fd = s;
    }
    us->idle = false;
    if (us->xfer == NULL || us->xfer->easy != easy) {
        upstream_link(us, easy);
    }
    if (what == CURL_POLL_IN && us->xfer != NULL) {
        upstream_release_send_buffer(us->xfer);
    }
    curl_multi_assign(up->multi, s, us);
    if (us->kind == kind) {
        return 0; /* unchanged, or still registered from the last transfer: no epoll_ctl */
    }
    if (us->ev == NULL) {
        us->ev = event_new(up->base, s, kind, upstream_event_cb, us);
        if (us->ev == NULL) {
            curl_multi_assign(up->multi, s, NULL);
            upstream_link(us, NULL);
            if (!us->lazy) {
                free(us);
            }
            return -1;
        }
    } else {
        /* Re-arm in place rather than free/new: curl flips IN/OUT on every request. */
        if (us->kind != 0) {
            event_del(us->ev);
        }
        event_assign(us->ev, up->base, s, kind, upstream_event_cb, us);
    }
    us->kind = kind;
    event_add(us->ev, NULL);
    return 0;
}

static int upstream_timerfn_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct upstream *up = userp;
    if (timeout_ms < 0) {
        evtimer_del(up->timer);
        return 0;
    }
    if (timeout_ms == 0 && !up->in_timer) {
        /*
         * "Now" (a transfer was just added: curl sends from its timeout): run
         * after this turn's callbacks rather than in a turn of its own, which
         * would cost an epoll_wait per request. From inside the timer callback
         * a zero timeout goes through the timer, so the loop still polls.
         */
        evtimer_del(up->timer);
        event_active(up->timer, EV_TIMEOUT, 0);
        return 0;
    }
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    evtimer_add(up->timer, &tv);
    return 0;
}

static void upstream_arm_deadline(struct upstream_xfer *x, long ms)
{
    if (ms <= 0) {
        evtimer_del(x->deadline);
        return;
    }
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(x->deadline, &tv);
}

static void upstream_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct upstream_xfer *x = arg;
    struct upstream_cbs cbs = x->cbs;
    void *cb_arg = x->arg;
    bool cancelled = x->cancelled;
    enum err e = x->failed != ERR_OK ? x->failed : ERR_TIMEOUT;
    x->timed_out = x->failed == ERR_OK;
    long status = 0;
    if (x->failed != ERR_OK) {
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    }
    upstream_xfer_destroy(x);
    if (!cancelled && cbs.on_done != NULL) {
        cbs.on_done(cb_arg, e, status);
    }
}

static void upstream_emit_status(struct upstream_xfer *x)
{
    if (x->got_status) {
        return;
    }
    x->got_status = true;
    long code = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
    if (x->cbs.on_status != NULL) {
        x->cbs.on_status(x->arg, code);
    }
}

static size_t upstream_write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
    struct upstream_xfer *x = userp;
    size_t len = size * nmemb;
    if (x->cancelled) {
        return 0;
    }
    if (x->draining) {
        /* Past the cap the connection is not worth keeping: the transfer is dropped. */
        x->drained += len;
        return x->drained > UPSTREAM_MAX_DRAIN_BYTES ? 0 : len;
    }
    x->in_curl_cb = true;
    upstream_emit_status(x);
    if (x->cancelled) {
        x->in_curl_cb = false;
        return 0;
    }
    upstream_release_send_buffer(x);
    if (x->headers != NULL) {
        /*
         * The answer has begun, so curl will not send the request again (it
         * does only when a reused connection gave no byte back): the header
         * list, with the key or Vault token in it, is not needed any more.
         * Wiped now rather than when a minutes-long stream ends.
         */
        curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, NULL);
        upstream_headers_free(x->headers);
        x->headers = NULL;
    }
    enum upstream_data_rc rc = UPSTREAM_CONTINUE;
    if (x->cbs.on_data != NULL && len > 0) {
        rc = x->cbs.on_data(x->arg, data, len);
    }
    x->in_curl_cb = false;
    if (x->cancelled || rc == UPSTREAM_ABORT) {
        return 0;
    }
    if (rc == UPSTREAM_PAUSE) {
        x->paused = true;
        evtimer_del(x->deadline);
        return CURL_WRITEFUNC_PAUSE;
    }
    x->got_data = true;
    if (!x->draining) { /* a drain keeps its own deadline */
        upstream_arm_deadline(x, x->idle_ms);
    }
    return len;
}

/*
 * On Vault connections the decrypted creds reply must not linger in OpenSSL's
 * read buffer: release the record buffers after each use, so that our
 * allocator wipes them. (curl asks for this on every connection already; we
 * make sure for the connections that matter.)
 */
static CURLcode upstream_ssl_ctx_sensitive(CURL *easy, void *ssl_ctx, void *arg)
{
    SSL_CTX_set_mode((SSL_CTX *)ssl_ctx, SSL_MODE_RELEASE_BUFFERS);
    return CURLE_OK;
}

/*
 * A transfer that presents a client certificate: notes a fatal TLS alert
 * from the server (bad_certificate, unknown_ca, certificate_required,
 * handshake_failure ...), which is how a server that verifies client
 * certificates in the handshake refuses one (RFC 8446 section 6.2, RFC 5246
 * section 7.2.2). Alerts the client sends are not counted: OpenSSL also sends
 * one when the peer simply went away (an unexpected EOF). Called by OpenSSL
 * inside curl, while the transfer's connection lives (it is never reused:
 * CURLOPT_FORBID_REUSE), so x is valid; it only sets a flag.
 */
static void upstream_tls_msg(int write_p, int version, int content_type, const void *buf,
                             size_t len, SSL *ssl, void *arg)
{
    (void)version;
    (void)ssl;
    const unsigned char *b = buf;
    if (arg != NULL && !write_p && content_type == SSL3_RT_ALERT && len >= 2 &&
        b[0] == SSL3_AL_FATAL) {
        struct upstream_xfer *x = arg;
        x->tls_refused = true; /* arg is NULL once x is gone (upstream_xfer_destroy) */
    }
}

/* A client-certificate transfer (always a Vault login, so sensitive too). */
static CURLcode upstream_ssl_ctx_client_cert(CURL *easy, void *ssl_ctx, void *arg)
{
    SSL_CTX_set_mode((SSL_CTX *)ssl_ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_msg_callback((SSL_CTX *)ssl_ctx, upstream_tls_msg);
    SSL_CTX_set_msg_callback_arg((SSL_CTX *)ssl_ctx, arg);
    return CURLE_OK;
}

static enum err upstream_map_code(CURLcode c)
{
    switch (c) {
    case CURLE_OK:
        return ERR_OK;
    case CURLE_OPERATION_TIMEDOUT:
        return ERR_TIMEOUT;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return ERR_UNAVAIL;
    case CURLE_FILESIZE_EXCEEDED:
        return ERR_TOOBIG;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
        return ERR_CRYPTO;
    case CURLE_UNSUPPORTED_PROTOCOL:
        return ERR_UNSUPPORTED;
    default:
        return ERR_UPSTREAM;
    }
}

enum err upstream_classify(CURLcode c, bool classify, bool alert, enum upstream_tls *ret_tls)
{
    *ret_tls = UPSTREAM_TLS_NONE;
    if (!classify || c == CURLE_OK || c == CURLE_OPERATION_TIMEDOUT) {
        return upstream_map_code(c);
    }
    switch (c) {
    case CURLE_PEER_FAILED_VERIFICATION:
        *ret_tls = UPSTREAM_TLS_UNTRUSTED;
        return ERR_CRYPTO;
    case CURLE_SSL_CACERT_BADFILE:
        *ret_tls = UPSTREAM_TLS_CA_FILE;
        return ERR_CRYPTO;
    case CURLE_SSL_CERTPROBLEM:
        *ret_tls = UPSTREAM_TLS_CLIENT_PAIR;
        return ERR_CRYPTO;
    case CURLE_SSL_CLIENTCERT: /* OpenSSL's "certificate required" alert, in the handshake */
        *ret_tls = UPSTREAM_TLS_REFUSED;
        return ERR_CRYPTO;
    default:
        break;
    }
    /*
     * Any other failure after a fatal alert from the server is its refusal
     * (TLS 1.3 servers verify a client certificate after the client's
     * Finished, so the alert comes where curl expects the answer: measured
     * CURLE_RECV_ERROR).
     */
    if (alert) {
        *ret_tls = UPSTREAM_TLS_REFUSED;
        return ERR_CRYPTO;
    }
    /*
     * No alert either way: the connection was reset or closed during the
     * handshake (measured: "Connection reset by peer", SSL_ERROR_SYSCALL):
     * Vault restarting or a load balancer dropping it, as a refused
     * connection is. A plain-http server at an https address ends the same
     * way (OpenSSL's "wrong version number", no alert sent either way) and
     * is counted the same: curl's code cannot tell them apart.
     */
    if (c == CURLE_SSL_CONNECT_ERROR) {
        return ERR_UNAVAIL;
    }
    return upstream_map_code(c);
}

/*
 * A transfer's result. Transfers that present a client certificate, or ask
 * with classify_tls (Vault's), tell a TLS configuration problem (ERR_CRYPTO,
 * its reason in *ret_tls) from a peer gone during the handshake
 * (ERR_UNAVAIL). Only client-certificate transfers see the server's alerts:
 * the message callback is installed on their connections alone, which are
 * never reused, so its argument cannot outlive the transfer.
 */
static enum err upstream_result(const struct upstream_xfer *x, CURLcode c,
                                enum upstream_tls *ret_tls)
{
    return upstream_classify(c, x->client_cert || x->classify_tls, x->tls_refused, ret_tls);
}

static void upstream_check_done(struct upstream *up)
{
    CURLMsg *msg;
    int left = 0;
    while ((msg = curl_multi_info_read(up->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE) {
            continue;
        }
        struct upstream_xfer *x = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        CURLcode code = msg->data.result;
        if (x == NULL) {
            continue;
        }
        bool cancelled = x->cancelled;
        struct upstream_cbs cbs = x->cbs;
        void *arg = x->arg;
        long status = 0;
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
        if (!cancelled && code == CURLE_OK) {
            /*
             * A response without a body still reports its status first. As a
             * callback: a cancel from on_status only marks the transfer, which
             * is freed just below (freeing it there would be a use after free).
             */
            x->in_curl_cb = true;
            upstream_emit_status(x);
            x->in_curl_cb = false;
            cancelled = x->cancelled;
        }
        enum upstream_tls tls;
        enum err e = upstream_result(x, code, &tls);
        upstream_xfer_destroy(x);
        if (!cancelled && tls != UPSTREAM_TLS_NONE && cbs.on_tls_fail != NULL) {
            cbs.on_tls_fail(arg, tls);
        }
        if (!cancelled && cbs.on_done != NULL) {
            cbs.on_done(arg, e, status);
        }
    }
}

struct upstream *upstream_new(struct event_base *base, long max_host_connections)
{
    struct upstream *up = calloc(1, sizeof(*up));
    if (up == NULL) {
        return NULL;
    }
    up->base = base;
    up->multi = curl_multi_init();
    up->timer = evtimer_new(base, upstream_timer_cb, up);
    up->share = curl_share_init();
    if (up->multi == NULL || up->timer == NULL || up->share == NULL) {
        upstream_free(up);
        return NULL;
    }
    /* Single-threaded loop: no share locks needed. DNS and TLS sessions are reused. */
    curl_share_setopt(up->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(up->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    curl_multi_setopt(up->multi, CURLMOPT_SOCKETFUNCTION, upstream_socket_cb);
    curl_multi_setopt(up->multi, CURLMOPT_SOCKETDATA, up);
    curl_multi_setopt(up->multi, CURLMOPT_TIMERFUNCTION, upstream_timerfn_cb);
    curl_multi_setopt(up->multi, CURLMOPT_TIMERDATA, up);
    curl_multi_setopt(up->multi, CURLMOPT_MAX_HOST_CONNECTIONS, max_host_connections);
    /* Idle connections kept for reuse. */
    curl_multi_setopt(up->multi, CURLMOPT_MAXCONNECTS, UPSTREAM_MAX_IDLE_CONNECTIONS);
    return up;
}

struct event_base *upstream_base(const struct upstream *up)
{
    return up->base;
}

void upstream_set_max_host_connections(struct upstream *up, long max_host_connections)
{
    curl_multi_setopt(up->multi, CURLMOPT_MAX_HOST_CONNECTIONS, max_host_connections);
}

void upstream_free(struct upstream *up)
{
    if (up == NULL) {
        return;
    }
    struct upstream_xfer *x = up->xfers;
    while (x != NULL) {
        struct upstream_xfer *next = x->next; /* destroying x touches no other transfer */
        upstream_xfer_destroy(x);
        x = next;
    }
    while (up->n_pool > 0) {
        curl_easy_cleanup(up->pool[--up->n_pool]);
    }
    if (up->multi != NULL) {
        curl_multi_cleanup(up->multi);
    }
    for (size_t i = 0; i < up->n_socks; i++) {
        upstream_sock_free(up->socks[i]);
    }
    free(up->socks);
    if (up->share != NULL) {
        curl_share_cleanup(up->share);
    }
    if (up->timer != NULL) {
        event_free(up->timer);
    }
    free(up->ca_path);
    free(up);
}

size_t upstream_active(const struct upstream *up)
{
    return up != NULL ? up->active : 0;
}

unsigned long upstream_round(const struct upstream *up)
{
    return up->round;
}

const char *upstream_xfer_content_type(const struct upstream_xfer *x)
{
    char *ct = NULL;
    if (x == NULL || curl_easy_getinfo(x->easy, CURLINFO_CONTENT_TYPE, &ct) != CURLE_OK) {
        return NULL;
    }
    return ct;
}

enum err upstream_header_secret(struct curl_slist **list, const char *prefix,
                                const struct secret *s)
{
    if (s == NULL) {
        return ERR_INVAL;
    }
    return upstream_header_secret_bytes(list, prefix, s->data, s->len);
}

enum err upstream_header_secret_bytes(struct curl_slist **list, const char *prefix,
                                      const void *data, size_t len)
{
    size_t plen = strlen(prefix);
    if (data == NULL || memchr(data, '\r', len) != NULL || memchr(data, '\n', len) != NULL) {
        return ERR_INVAL;
    }
    size_t n = plen + len + 1;
    char *line = malloc(n);
    if (line == NULL) {
        return ERR_NOMEM;
    }
    memcpy(line, prefix, plen);
    memcpy(line + plen, data, len);
    line[n - 1] = '\0';
    struct curl_slist *nl = curl_slist_append(*list, line);
    OPENSSL_cleanse(line, n);
    free(line);
    if (nl == NULL) {
        return ERR_NOMEM;
    }
    *list = nl;
    return ERR_OK;
}

enum err upstream_header_add(struct curl_slist **list, const char *line)
{
    if (strpbrk(line, "\r\n") != NULL) {
        return ERR_INVAL;
    }
    struct curl_slist *nl = curl_slist_append(*list, line);
    if (nl == NULL) {
        return ERR_NOMEM;
    }
    *list = nl;
    return ERR_OK;
}

void upstream_headers_free(struct curl_slist *list)
{
    for (struct curl_slist *l = list; l != NULL; l = l->next) {
        if (l->data != NULL) {
            OPENSSL_cleanse(l->data, strlen(l->data));
        }
    }
    curl_slist_free_all(list);
}

static int64_t upstream_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void upstream_ca_reread(struct upstream *up)
{
    /* + 1: never 0, which means "never" (a boot-time clock can read 0). */
    up->ca_reread_ms = upstream_now_ms() + 1;
}

/*
 * A CA file replaced or rewritten (a ca-certificates upgrade removing a root,
 * a rotated private CA) is read again by the next new connection, not an
 * hour later: a new HTTPS transfer looks at the file at most once a second
 * (one stat) and, when it changed, drops curl's parsed store as a SIGHUP
 * does. Connections already open are not verified again.
 */
static void upstream_ca_watch(struct upstream *up, const char *ca_file)
{
    const char *path = ca_file;
    if (path == NULL) {
        path = curl_version_info(CURLVERSION_NOW)->cainfo; /* the library's default bundle */
    }
    if (path == NULL) {
        return;
    }
    int64_t now = upstream_now_ms();
    bool same_path = up->ca_path != NULL && strcmp(up->ca_path, path) == 0;
    if (same_path && now - up->ca_checked_ms < UPSTREAM_CA_CHECK_MS && now >= up->ca_checked_ms) {
        return;
    }
    up->ca_checked_ms = now;
    struct file_id id = file_id_of(path);
    if (!same_path) {
        /* A first look, or a reload naming another file (which rereads anyway). */
        char *copy = strdup(path);
        if (copy != NULL) {
            free(up->ca_path);
            up->ca_path = copy;
            up->ca_id = id;
        }
        return;
    }
    if (!file_id_eq(&id, &up->ca_id)) {
        up->ca_id = id;
        upstream_ca_reread(up);
        log_kv(LOGL_INFO, "CA file changed; new connections read it again", "path", path, NULL);
    }
}

/*
 * CURLOPT_CA_CACHE_TIMEOUT for a new transfer. curl drops its cached store
 * once the store's age in milliseconds reaches this many seconds; the whole
 * seconds elapsed since the reread, rounded down, are always less than the
 * age of a store parsed before it, so every such store is dropped. In the
 * first second that is 0, which curl takes as "no cache".
 */
static long upstream_ca_cache_s(const struct upstream *up)
{
    if (up->ca_reread_ms == 0) {
        return UPSTREAM_CA_CACHE_S;
    }
    int64_t since_s = (upstream_now_ms() + 1 - up->ca_reread_ms) / 1000;
    return since_s < UPSTREAM_CA_CACHE_S ? (long)since_s : UPSTREAM_CA_CACHE_S;
}

enum err upstream_xfer_start(struct upstream *up, const char *method, const char *url, char *body,
                             size_t body_len, struct curl_slist *headers,
                             const struct upstream_opts *opts, const struct upstream_cbs *cbs,
                             void *arg, struct upstream_xfer **ret_xfer)
{
    enum err e = ERR_NOMEM;
    if (strlen(url) > UPSTREAM_MAX_URL) {
        upstream_headers_free(headers);
        upstream_body_free(body, body_len);
        return ERR_TOOBIG;
    }
    struct upstream_xfer *x = calloc(1, sizeof(*x));
    if (x == NULL) {
        upstream_headers_free(headers);
        upstream_body_free(body, body_len);
        return ERR_NOMEM;
    }
    x->up = up;
    x->headers = headers;
    x->body = body;
    x->body_len = body_len;
    /*
     * Bodies reach the caller as the server sent them (no decoding, below),
     * so the server is asked for them unencoded: a request without
     * Accept-Encoding accepts any coding (RFC 9110 12.5.3). A header line,
     * not CURLOPT_ACCEPT_ENCODING: with that option curl 7.88 also reads the
     * reply's Content-Encoding itself and fails a transfer that lists more
     * than five codings before its status is reported. upstream_xfer_coding
     * says what came instead.
     */
    struct curl_slist *hl = curl_slist_append(headers, "Accept-Encoding: identity");
    if (hl == NULL) {
        goto out_free;
    }
    x->headers = hl;
    x->cbs = *cbs;
    x->arg = arg;
    x->first_byte_ms = opts->first_byte_timeout_ms;
    x->sensitive = opts->sensitive;
    x->classify_tls = opts->classify_tls;
    x->idle_ms = opts->idle_timeout_ms;
    x->easy = up->n_pool > 0 ? up->pool[--up->n_pool] : curl_easy_init();
    x->deadline = evtimer_new(up->base, upstream_deadline_cb, x);
    if (x->easy == NULL || x->deadline == NULL) {
        goto out_free;
    }
    CURL *h = x->easy;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PRIVATE, x);
    curl_easy_setopt(h, CURLOPT_SHARE, up->share);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, upstream_write_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, upstream_open_cb);
    curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, up);
    curl_easy_setopt(h, CURLOPT_CLOSESOCKETFUNCTION, upstream_close_cb);
    curl_easy_setopt(h, CURLOPT_CLOSESOCKETDATA, up);
    /* Credentials are bound to their origin: never follow a redirect (curl CREDENTIALS.md). */
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, opts->allow_http ? "http,https" : "https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "https");
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (opts->ca_file != NULL) {
        curl_easy_setopt(h, CURLOPT_CAINFO, opts->ca_file);
    }
    /*
     * The CA file alone, never also a CA directory. curl (7.87+) parses the
     * CA file once per multi handle and shares the store with every new
     * connection, but only when no directory is set, and Debian's libcurl
     * sets /etc/ssl/certs by default. With it, every new TLS connection parsed
     * the whole system bundle again (144 certificates: about 20 ms of CPU on
     * the event loop and 830 KB held for the connection's life), and a
     * configured ca_file trusted that directory's CAs as well.
     */
    curl_easy_setopt(h, CURLOPT_CAPATH, NULL);
    if (strncasecmp(url, "https:", 6) == 0) {
        upstream_ca_watch(up, opts->ca_file);
    }
    curl_easy_setopt(h, CURLOPT_CA_CACHE_TIMEOUT, upstream_ca_cache_s(up));
    if (opts->unix_socket != NULL) {
        curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, opts->unix_socket);
    }
    /*
     * Only the configured proxy, never one from the environment: libcurl
     * would otherwise send Vault tokens, creds replies and keys over plain
     * http to whatever http_proxy names. Set on every use: handles are pooled.
     */
    curl_easy_setopt(h, CURLOPT_PROXY, opts->proxy != NULL ? opts->proxy : "");
    if (opts->sensitive) {
        curl_easy_setopt(h, CURLOPT_SSL_CTX_FUNCTION, upstream_ssl_ctx_sensitive);
    }
    if (opts->client_cert != NULL) {
        x->client_cert = true;
        curl_easy_setopt(h, CURLOPT_SSL_CTX_FUNCTION, upstream_ssl_ctx_client_cert);
        curl_easy_setopt(h, CURLOPT_SSL_CTX_DATA, x);
        curl_easy_setopt(h, CURLOPT_SSLCERT, opts->client_cert);
        curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
        curl_easy_setopt(h, CURLOPT_SSLKEY, opts->client_key);
        curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
        /*
         * An empty passphrase: without one OpenSSL would prompt on the
         * terminal (or stdin) for an encrypted key and stall the event loop.
         * An encrypted key thus fails its login like a key that does not
         * match its certificate.
         */
        curl_easy_setopt(h, CURLOPT_KEYPASSWD, "");
        curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, 1L);
        curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
        curl_easy_setopt(h, CURLOPT_SSL_SESSIONID_CACHE, 0L);
    }
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, opts->connect_timeout_ms);
    if (opts->total_timeout_ms > 0) {
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, opts->total_timeout_ms);
    }
    /*
     * HTTP/1.1 only: HTTP/2's HPACK dynamic table (nghttp2, as curl 7.88 sends
     * every header indexable) would keep "authorization: Bearer <key>" in
     * memory for the life of the connection, out of reach of any wipe.
     */
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    /*
     * curl allocates its receive buffer per transfer and frees it at the end;
     * our allocator wipes every free, so its size is paid twice per call.
     * Provider answers arrive in small chunks anyway.
     */
    curl_easy_setopt(h, CURLOPT_BUFFERSIZE, UPSTREAM_RECV_BUFFER);
    /* Same for the upload buffer (64 KiB by default, allocated for every POST). */
    curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, UPSTREAM_SEND_BUFFER);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    /*
     * Bodies are passed through as the provider sent them; no transparent
     * decoding (a small compressed body can inflate past every limit).
     */
    curl_easy_setopt(h, CURLOPT_HTTP_CONTENT_DECODING, 0L);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body != NULL ? body : "");
    } else if (strcmp(method, "GET") != 0) {
        e = ERR_INVAL;
        goto out_free;
    }
    if (curl_multi_add_handle(up->multi, h) != CURLM_OK) {
        goto out_free;
    }
    x->next = up->xfers;
    if (up->xfers != NULL) {
        up->xfers->prev = x;
    }
    up->xfers = x;
    up->active++;
    upstream_arm_deadline(x, x->first_byte_ms);
    *ret_xfer = x;
    return ERR_OK;

out_free:
    if (x->deadline != NULL) {
        event_free(x->deadline);
    }
    if (x->easy != NULL) {
        curl_easy_cleanup(x->easy);
    }
    upstream_headers_free(x->headers);
    upstream_body_free(x->body, x->body_len);
    free(x);
    return e;
}

void upstream_xfer_cancel(struct upstream_xfer *x)
{
    if (x == NULL) {
        return;
    }
    if (x->in_curl_cb) {
        x->cancelled = true;
        return;
    }
    upstream_xfer_destroy(x);
}

void upstream_xfer_resume(struct upstream_xfer *x)
{
    if (x == NULL || !x->paused) {
        return;
    }
    x->paused = false;
    upstream_arm_deadline(x, x->got_data ? x->idle_ms : x->first_byte_ms);
    /*
     * curl 7.88 hands the held data to on_data inside curl_easy_pause. If
     * on_data aborts (or cancels) there, curl fails the call and neither
     * finishes the transfer nor watches its socket again: end it here, on the
     * next loop turn (the deadline at 0 ms), not from inside the caller.
     */
    x->in_curl_cb = true;
    CURLcode rc = curl_easy_pause(x->easy, CURLPAUSE_CONT);
    x->in_curl_cb = false;
    if (rc != CURLE_OK || x->cancelled) {
        x->failed = rc != CURLE_OK ? upstream_map_code(rc) : ERR_CANCELLED;
        if (x->failed == ERR_OK) {
            x->failed = ERR_UPSTREAM;
        }
        struct timeval now = {0, 0};
        evtimer_add(x->deadline, &now);
    }
}

void upstream_xfer_drain(struct upstream_xfer *x)
{
    if (x == NULL) {
        return;
    }
    if (x->paused) {
        /* Its held data would come back through curl_easy_pause: not worth it. */
        upstream_xfer_cancel(x);
        return;
    }
    x->draining = true;
    memset(&x->cbs, 0, sizeof(x->cbs));
    x->arg = NULL;
    upstream_arm_deadline(x, UPSTREAM_MAX_DRAIN_MS);
}

const char *upstream_xfer_coding(struct upstream_xfer *x)
{
    /* Content codings in IANA's registry (and the x- aliases RFC 9110 keeps). */
    static const char *const known[] = {"gzip",         "x-gzip",     "deflate", "br",
                                        "compress",     "x-compress", "zstd",    "exi",
                                        "pack200-gzip", "aes128gcm",  "dcb",     "dcz"};
    struct curl_header *h = NULL;
    size_t amount = 1;
    for (size_t n = 0; n < amount; n++) {
        if (curl_easy_header(x->easy, "Content-Encoding", n, CURLH_HEADER, -1, &h) != CURLHE_OK) {
            return NULL;
        }
        amount = h->amount;
        /* A list of codings (RFC 9110 8.4): any one but identity is a coding. */
        for (const char *v = h->value; *v != '\0';) {
            v += strspn(v, " \t,");
            size_t len = strcspn(v, " \t,");
            if (len == 0 || (len == 8 && strncasecmp(v, "identity", 8) == 0)) {
                v += len;
                continue;
            }
            for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
                if (strlen(known[i]) == len && strncasecmp(v, known[i], len) == 0) {
                    return known[i];
                }
            }
            return "";
        }
    }
    return NULL;
}

bool upstream_xfer_header(struct upstream_xfer *x, const char *name, char *out, size_t size)
{
    struct curl_header *h = NULL;
    if (size == 0) {
        return false;
    }
    out[0] = '\0';
    if (x == NULL || curl_easy_header(x->easy, name, 0, CURLH_HEADER, -1, &h) != CURLHE_OK ||
        h->amount != 1) {
        return false;
    }
    size_t len = strlen(h->value);
    if (len >= size) {
        return false;
    }
    memcpy(out, h->value, len + 1);
    return true;
}
