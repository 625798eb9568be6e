/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Listeners, connections, the route table and reply helpers.
 *
 * Connections are tracked in an array indexed by file descriptor (sized from
 * RLIMIT_NOFILE) so that a request can find its connection's state (peer
 * credentials, the request in progress) without a hash lookup, and the
 * connection's close callback can cancel the upstream work of a request whose
 * app went away. evhttp detaches, but does not free, a request whose
 * connection fails before the reply was finished; we free it then.
 *
 * A connection is counted from accept to the moment evhttp frees it (its
 * close callback), and its socket is closed then: a closed connection never
 * counts against limits.max_connections. A listener that a reload removed is
 * freed once its last connection has closed.
 *
 * Not done here: anything provider-specific (proxy.c).
 */
#include "agent/server.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <event2/keyvalq_struct.h>
#include <grp.h>
#include <malloc.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "agent/budget.h"
#include "agent/gcptoken.h"
#include "agent/latency.h"
#include "agent/messages.h"
#include "agent/metrics.h"
#include "agent/proxy.h"
#include "agent/ratelease.h"
#include "common/jsonw.h"
#include "common/log.h"

#define SERVER_BACKLOG 4096
/* Bytes past limits.max_body_bytes that evhttp still reads so that we answer the 413. */
#define SERVER_BODY_SLACK (64L * 1024)

struct listener {
    struct server *s;
    char *path;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    const struct config_listener *lc; /* points into cfg */
    struct config *cfg;               /* reference keeping lc valid (retired listeners keep
                                         the config they last had: old connections may still
                                         send requests on them) */
    bool retired; /* removed by a reload (or the drain): freed by server_reap_cb once n_open is 0 */
    size_t n_open;        /* its accepted connections still open (their server_watch entries) */
    struct event *resume; /* re-enables accepting after an accept error (server_accept_error) */
    struct listener *next;
};

/*
 * Every accepted connection, from accept (evhttp's bufferevent callback) to
 * close. evhttp's own timeout is an inactivity timeout, which a client
 * trickling one byte a second never trips; this list gives each connection a
 * deadline to deliver a whole request (limits.client_timeout_s from accept or
 * from the end of the previous answer), checked by a sweep every 500 ms.
 *
 * evhttp 2.1 creates the connection (struct evhttp_connection) only after
 * our bufferevent callback returns, and has no callback for a new
 * connection, so server_adopt_cb (made active at accept: it runs in the same
 * loop turn, before a byte of the connection can be read) finds it as the
 * bufferevent's callback argument and gives it a server_conn, whose close
 * callback (evhttp_connection_free calls it first) removes the watch at once.
 * We hold a reference on each bufferevent so that it stays valid memory
 * until then, even if evhttp freed the connection before adoption
 * (bufferevent_free clears its callback argument, which is how adoption and
 * the sweep learn it is gone); releasing it is what closes the socket
 * (BEV_OPT_CLOSE_ON_FREE: evhttp itself only shuts it down for writing).
 */
struct server_watch {
    struct bufferevent *bev;
    struct listener *l;    /* the listener that accepted it (counted in l->n_open) */
    struct server_conn *c; /* NULL until adopted; its close callback removes the watch */
    double deadline;       /* monotonic seconds; ignored while busy */
    bool busy;             /* a request is being answered */
    bool flush_queued;
    bool adopt_queued;
    struct server_watch *prev, *next;
    struct server_watch *flush_next; /* server.flush queue */
    struct server_watch *adopt_next; /* server.adopt queue */
};

struct server_conn {
    struct server *s;
    struct evhttp_connection *evcon;
    struct listener *l;
    struct server_watch *watch;
    bool have_cred;
    struct ucred cred;
    struct request *active;
};

struct server {
    struct agent_ctx *ctx;
    struct listener *listeners;
    struct server_conn **conns;
    size_t n_slots;
    size_t n_conns;
    struct server_watch *watches;
    size_t n_watches; /* accepted connections still open */
    struct event *sweep;
    struct event *adopt;             /* made active when adopt_head has entries */
    struct server_watch *adopt_head; /* connections accepted this turn, not yet adopted */
    struct server_watch *adopt_tail;
    struct event *reap;              /* made active when a retired listener has no connection */
    struct event *flush;             /* made active when flush_head has entries */
    struct server_watch *flush_head; /* connections with reply bytes to write this turn, */
    struct server_watch *flush_tail; /* in the order they were given them */
    unsigned long long sweep_seq;    /* ctx->req_seq at the last sweep */
    unsigned long long trim_seq;     /* ctx->req_seq at the last malloc_trim */
    double accept_log_at;            /* monotonic seconds: next accept error worth a log line */
    struct server *next_server;      /* server_all */
};

/* Every server, so that an evconnlistener callback (its argument is the evhttp) finds its listener.
 */
static struct server *server_all;

#define SERVER_ACCEPT_PAUSE_S 1
#define SERVER_ACCEPT_LOG_S 10

#define SERVER_SWEEP_MS 500

typedef void (*server_handler)(struct request *r);

static void server_healthz(struct request *r);
static void server_metrics(struct request *r);

/*
 * The routes. needs_tenant: the caller must map to a tenant (403 otherwise).
 * needs_metrics: only on listeners configured with "metrics": true (404
 * elsewhere), because the answer shows every tenant's counters.
 */
static const struct {
    enum evhttp_cmd_type method;
    const char *path;
    server_handler handler;
    bool needs_tenant;
    bool needs_metrics;
    bool prefix; /* path is a prefix: a path segment follows (one label in metrics and logs) */
    const char *label;
} server_routes[] = {
    {EVHTTP_REQ_POST, "/v1/chat/completions", proxy_chat, true, false, false, NULL},
    {EVHTTP_REQ_POST, "/v1/embeddings", proxy_embeddings, true, false, false, NULL},
    {EVHTTP_REQ_GET, "/v1/models", proxy_models, true, false, false, NULL},
    {EVHTTP_REQ_GET, PROXY_MODEL_PREFIX, proxy_model, true, false, true, "/v1/models/{model}"},
    {EVHTTP_REQ_GET, "/v1/byok/usage", proxy_usage, true, false, false, NULL},
    {EVHTTP_REQ_POST, "/api/brain/ai/chat", proxy_brain_chat, true, false, false, NULL},
    {EVHTTP_REQ_POST, "/v1/responses", proxy_responses, true, false, false, NULL},
    {EVHTTP_REQ_POST, MESSAGES_ROUTE, proxy_messages, true, false, false, NULL},
    {EVHTTP_REQ_POST, MESSAGES_COUNT_ROUTE, proxy_messages_count, true, false, false, NULL},
    {EVHTTP_REQ_GET, "/healthz", server_healthz, false, false, false, NULL},
    {EVHTTP_REQ_GET, "/metrics", server_metrics, false, true, false, NULL},
};

double server_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void server_header(struct request *r, const char *name, const char *value)
{
    if (r->ev == NULL || strpbrk(value, "\r\n") != NULL) {
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(r->ev), name, value);
}

void server_finish(struct request *r)
{
    if (r->done) {
        return;
    }
    r->done = true;
    struct agent_ctx *ctx = r->ctx;
    double secs = server_now() - r->start;
    char labels[METRICS_MAX_LABELS];
    char status[16];
    snprintf(status, sizeof(status), "%d", r->status);
    metrics_labels(labels, sizeof(labels), "route", r->route, "status", status, NULL);
    metrics_add(M_REQUESTS, 1, labels);
    metrics_labels(labels, sizeof(labels), "route", r->route, NULL);
    metrics_observe(M_REQUEST_SECONDS, secs, labels);
    if (r->error_code != NULL) {
        metrics_labels(labels, sizeof(labels), "code", r->error_code, NULL);
        metrics_add(M_ERRORS, 1, labels);
    }
    enum log_level lvl = r->status >= 500 ? LOGL_WARN : LOGL_INFO;
    if (log_enabled(lvl)) {
        char lat[32], pt[24], ct[24], cached[24], cost[32], att[16];
        snprintf(lat, sizeof(lat), "%.3f", secs * 1000);
        snprintf(pt, sizeof(pt), "%lld", r->prompt_tokens);
        snprintf(ct, sizeof(ct), "%lld", r->completion_tokens);
        snprintf(cached, sizeof(cached), "%lld", r->cached_tokens);
        snprintf(cost, sizeof(cost), "%.8f", r->cost_usd);
        snprintf(att, sizeof(att), "%d", r->attempts);
        log_kv(lvl, "request", "request_id", r->id, "route", r->route, "tenant",
               r->tenant[0] ? r->tenant : NULL, "app", r->app[0] ? r->app : NULL, "provider",
               r->provider[0] ? r->provider : NULL, "model", r->model[0] ? r->model : NULL,
               "status", status, "error", r->error_code, "latency_ms", lat, "attempts", att,
               "prompt_tokens", pt, "completion_tokens", ct, "cached_tokens", cached, "cost_usd",
               cost, "usage_estimated", r->usage_estimated ? "true" : NULL, "prompt", r->prompt_log,
               NULL);
    }
    if (r->conn != NULL && r->conn->active == r) {
        r->conn->active = NULL;
        if (r->conn->watch != NULL) {
            r->conn->watch->busy = false;
            r->conn->watch->deadline = server_now() + (double)ctx->cfg->limits.client_timeout_s;
        }
    }
    free(r->prompt_log);
    config_unref(&r->cfg);
    ctx->inflight--;
    free(r);
}

static void server_common_headers(struct request *r, const char *content_type)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->ev);
    evhttp_add_header(h, "Content-Type", content_type);
    evhttp_add_header(h, "X-BYOK-Request-Id", r->id);
    evhttp_add_header(h, "Cache-Control", "no-store");
}

void server_reply_buf(struct request *r, int status, const char *content_type, struct evbuffer *b)
{
    r->status = status;
    if (r->ev != NULL) {
        server_common_headers(r, content_type);
        /* evhttp would write the body of an answer to HEAD (only 405s: no HEAD route). */
        bool head = evhttp_request_get_command(r->ev) == EVHTTP_REQ_HEAD;
        evhttp_send_reply(r->ev, status, NULL, head ? NULL : b);
        server_flush_soon(r);
    }
    server_finish(r);
}

static void server_free_text(const void *data, size_t len, void *arg)
{
    free((void *)data);
}

void server_reply_json(struct request *r, int status, json_t *body)
{
    struct evbuffer *b = evbuffer_new();
    size_t len = 0;
    char *text = body != NULL ? jsonw_dumps(body, &len) : NULL;
    json_decref(body);
    if (b == NULL || text == NULL) {
        if (b != NULL) {
            evbuffer_free(b);
        }
        free(text);
        r->error_code = "internal";
        r->status = 500;
        if (r->ev != NULL) {
            evhttp_send_error(r->ev, 500, NULL);
            server_flush_soon(r);
        }
        server_finish(r);
        return;
    }
    /* Zero copy: the text is freed when evhttp has written it, not when we return. */
    if (evbuffer_add_reference(b, text, len, server_free_text, NULL) != 0) {
        free(text);
    }
    server_reply_buf(r, status, "application/json", b);
    evbuffer_free(b);
}

void server_reply_error(struct request *r, int status, const char *type, const char *code,
                        const char *message)
{
    r->error_code = code;
    if (messages_route(r->route)) {
        /* Anthropic's SDKs read their own shape; the code is in the request's log line. */
        server_reply_json(r, status, messages_error_json(status, message, r->id));
        return;
    }
    json_t *body = json_pack("{s:{s:s,s:s,s:n,s:s}}", "error", "message", message, "type", type,
                             "param", "code", code);
    server_reply_json(r, status, body);
}

static void server_healthz(struct request *r)
{
    const struct agent_ctx *ctx = r->ctx;
    const char *reason;
    enum vault_health vh = vault_health(ctx->vault, &reason);
    /*
     * vault_reason only when Vault is not ok ("s*" leaves it out when NULL): a
     * short text of the agent's, never a secret. Before inflight, so that the
     * fields that were there keep their order.
     */
    json_t *body = json_pack(
        "{s:s,s:s,s:s,s:s*,s:I,s:I}", "status", ctx->draining ? "draining" : "ok", "version",
        BYOK_VERSION, "vault", vault_health_name(vh), "vault_reason", reason, "inflight",
        (json_int_t)ctx->inflight, "connections", (json_int_t)server_connections(ctx->server));
    server_reply_json(r, ctx->draining ? 503 : 200, body);
}

static void server_metrics(struct request *r)
{
    struct agent_ctx *ctx = r->ctx;
    struct buf b;
    buf_init(&b, (size_t)64 * 1024 * 1024);
    const struct keycache_stats *ks = keycache_stats(ctx->keys);
    const struct vault_stats *vs = vault_stats(ctx->vault);
    enum err e = metrics_render(&b);
    if (e == ERR_OK) {
        e = buf_printf(&b,
                       "# HELP byok_keycache_total Key cache events.\n"
                       "# TYPE byok_keycache_total counter\n"
                       "byok_keycache_total{event=\"hit\"} %llu\n"
                       "byok_keycache_total{event=\"miss\"} %llu\n"
                       "byok_keycache_total{event=\"shared\"} %llu\n"
                       "byok_keycache_total{event=\"fetch\"} %llu\n"
                       "byok_keycache_total{event=\"wipe\"} %llu\n"
                       "# HELP byok_vault_calls_total Vault client events.\n"
                       "# TYPE byok_vault_calls_total counter\n"
                       "byok_vault_calls_total{event=\"request\"} %llu\n"
                       "byok_vault_calls_total{event=\"error\"} %llu\n"
                       "byok_vault_calls_total{event=\"login\"} %llu\n"
                       "byok_vault_calls_total{event=\"renewal\"} %llu\n",
                       ks->hits, ks->misses, ks->shared, ks->fetches, ks->wipes, vs->requests,
                       vs->errors, vs->logins, vs->renewals);
    }
    if (e == ERR_OK) {
        const struct gcptoken_stats *gs = gcptoken_stats();
        e = buf_printf(&b,
                       "# HELP byok_google_token_total Access tokens for Vertex service-account "
                       "keys: fetch (a trade with the token endpoint started), shared (a call "
                       "joined a trade under way), failure (a trade that gave no token).\n"
                       "# TYPE byok_google_token_total counter\n"
                       "byok_google_token_total{event=\"fetch\"} %llu\n"
                       "byok_google_token_total{event=\"shared\"} %llu\n"
                       "byok_google_token_total{event=\"failure\"} %llu\n",
                       gs->fetches, gs->shared, gs->failures);
    }
    if (e == ERR_OK) {
        const struct budget_stats *bs = budget_stats(ctx->budget);
        e = buf_printf(&b,
                       "# HELP byok_budget_leases_total Budget lease requests to Vault, by "
                       "result: granted (as asked), short (less than asked: the budget is nearly "
                       "used up), unlimited (no cap), error (unreachable, refused, unreadable).\n"
                       "# TYPE byok_budget_leases_total counter\n"
                       "byok_budget_leases_total{result=\"granted\"} %llu\n"
                       "byok_budget_leases_total{result=\"short\"} %llu\n"
                       "byok_budget_leases_total{result=\"unlimited\"} %llu\n"
                       "byok_budget_leases_total{result=\"error\"} %llu\n",
                       bs->leases - bs->short_leases - bs->unlimited, bs->short_leases,
                       bs->unlimited, bs->errors);
    }
    if (e == ERR_OK && ctx->ratelease != NULL) {
        const struct ratelease_stats *rs = ratelease_stats(ctx->ratelease);
        e = buf_printf(&b,
                       "# HELP byok_rate_leases_total Rate lease requests to Vault (a tenant's "
                       "rpm_limit/tpm_limit shared across the nodes), by result: granted (as "
                       "asked), short (less than asked: the minute is used up), unlimited (no "
                       "such limit), error (refused, unreachable, unreadable).\n"
                       "# TYPE byok_rate_leases_total counter\n"
                       "byok_rate_leases_total{result=\"granted\"} %llu\n"
                       "byok_rate_leases_total{result=\"short\"} %llu\n"
                       "byok_rate_leases_total{result=\"unlimited\"} %llu\n"
                       "byok_rate_leases_total{result=\"error\"} %llu\n"
                       "# HELP byok_rate_lease_fallbacks_total Times a tenant's rpm_limit or "
                       "tpm_limit fell back to per-node enforcement for 60 s (the rate-lease path "
                       "refused or unreachable).\n"
                       "# TYPE byok_rate_lease_fallbacks_total counter\n"
                       "byok_rate_lease_fallbacks_total %llu\n",
                       rs->granted, rs->short_leases, rs->unlimited, rs->errors, rs->fallbacks);
    }
    if (e == ERR_OK) {
        e = metrics_gauge(&b, "byok_inflight_requests", "Requests being answered.",
                          (double)ctx->inflight);
    }
    if (e == ERR_OK) {
        e = metrics_gauge(&b, "byok_connections", "Open app connections.",
                          (double)server_connections(ctx->server));
    }
    if (e == ERR_OK) {
        e = metrics_gauge(&b, "byok_upstream_transfers", "Provider and Vault transfers in flight.",
                          (double)(upstream_active(ctx->up) + upstream_active(ctx->vault_up)));
    }
    if (e == ERR_OK) {
        e = metrics_gauge(&b, "byok_vault_up",
                          "1 when /healthz says vault ok (a usable token, Vault reached).",
                          vault_ok(ctx->vault) ? 1 : 0);
    }
    if (e == ERR_OK) {
        e = metrics_gauge(&b, "byok_usage_pending_records", "Usage records not yet acknowledged.",
                          (double)usage_pending(ctx->usage));
    }
    if (e == ERR_OK) {
        e = metrics_gauge(&b, "byok_usage_dropped_records", "Usage records dropped over the bound.",
                          (double)usage_dropped(ctx->usage));
    }
    if (e == ERR_OK) {
        e = latency_render(ctx->latency, &b, server_now(), (double)r->cfg->router.latency_ttl_s);
    }
    if (e != ERR_OK) {
        buf_done(&b);
        server_reply_error(r, 500, "server_error", "internal", "metrics unavailable");
        return;
    }
    struct evbuffer *eb = evbuffer_new();
    if (eb == NULL) {
        buf_done(&b);
        server_reply_error(r, 500, "server_error", "internal", "out of memory");
        return;
    }
    evbuffer_add(eb, b.data, b.len);
    buf_done(&b);
    server_reply_buf(r, 200, "text/plain; version=0.0.4", eb);
    evbuffer_free(eb);
}

/* ---- connections ------------------------------------------------------------------------- */

/* Takes w off the server's flush queue (see server_flush_one). */
static void server_flush_unqueue(struct server *s, struct server_watch *w)
{
    struct server_watch *prev = NULL;
    for (struct server_watch *q = s->flush_head; q != NULL; prev = q, q = q->flush_next) {
        if (q != w) {
            continue;
        }
        if (prev != NULL) {
            prev->flush_next = w->flush_next;
        } else {
            s->flush_head = w->flush_next;
        }
        if (s->flush_tail == w) {
            s->flush_tail = prev;
        }
        w->flush_next = NULL;
        w->flush_queued = false;
        return;
    }
}

/* Takes w off the server's adopt queue (see server_adopt_cb). */
static void server_adopt_unqueue(struct server *s, struct server_watch *w)
{
    struct server_watch *prev = NULL;
    for (struct server_watch *q = s->adopt_head; q != NULL; prev = q, q = q->adopt_next) {
        if (q != w) {
            continue;
        }
        if (prev != NULL) {
            prev->adopt_next = w->adopt_next;
        } else {
            s->adopt_head = w->adopt_next;
        }
        if (s->adopt_tail == w) {
            s->adopt_tail = prev;
        }
        w->adopt_next = NULL;
        w->adopt_queued = false;
        return;
    }
}

/*
 * The connection is gone (or being freed by evhttp): forget it and release
 * our bufferevent reference, which closes its socket once evhttp has freed
 * the bufferevent too. The last connection of a retired listener lets the
 * listener go; not here, since evhttp may still be inside that listener's
 * evhttp (this runs from its close callback): server_reap_cb does it later
 * in this loop turn.
 */
static void server_watch_remove(struct server *s, struct server_watch *w)
{
    if (w->prev != NULL) {
        w->prev->next = w->next;
    } else {
        s->watches = w->next;
    }
    if (w->next != NULL) {
        w->next->prev = w->prev;
    }
    s->n_watches--;
    if (w->flush_queued) {
        server_flush_unqueue(s, w);
    }
    if (w->adopt_queued) {
        server_adopt_unqueue(s, w);
    }
    if (w->c != NULL) {
        w->c->watch = NULL;
    }
    struct listener *l = w->l;
    l->n_open--;
    if (l->retired && l->n_open == 0) {
        event_active(s->reap, EV_TIMEOUT, 0);
    }
    bufferevent_decref(w->bev);
    free(w);
}

/* ---- writing a reply in the turn it is made ---------------------------------------------- */

/*
 * evhttp leaves a reply in the connection's bufferevent until epoll next
 * reports the socket writable: one more loop turn, and three epoll_ctl calls
 * per request (reading off when the request arrives, reading and writing on
 * for the reply, writing off once it is out). Instead, a reply (or stream
 * chunk) made during a turn is queued here and written when the turn's
 * callbacks are done (one event made active: no system call), so that frames
 * curl delivers together still leave in one write. When all of it is written,
 * evhttp's write-done callback runs at once and the bufferevent's write
 * interest, added and removed within the turn, never reaches epoll. A partial
 * write leaves the rest to the bufferevent as before (a slow app's
 * backpressure). server_gencb keeps the socket readable while the request is
 * answered (no read callback, as evhttp itself does while it writes), so the
 * connection's epoll interest does not change at all across a request, and an
 * app that disconnects mid-call is noticed (its upstream call is cancelled).
 */
static void server_flush_one(struct bufferevent *bev)
{
    void *cbarg = NULL;
    bufferevent_getcb(bev, NULL, NULL, NULL, &cbarg);
    struct evbuffer *out = bufferevent_get_output(bev);
    evutil_socket_t fd = bufferevent_getfd(bev);
    if (cbarg == NULL || fd < 0 || (bufferevent_get_enabled(bev) & EV_WRITE) == 0 ||
        evbuffer_get_length(out) == 0) {
        return; /* closed, or nothing evhttp is waiting to write */
    }
    /* The socket bufferevent freezes its output's front; it unfreezes it the same way to write. */
    evbuffer_unfreeze(out, 1);
    int n = evbuffer_write(out, fd);
    evbuffer_freeze(out, 1);
    if (n <= 0 || evbuffer_get_length(out) > 0) {
        return; /* the write event, still enabled, finishes or reports the error */
    }
    bufferevent_disable(bev, EV_WRITE);
    /* What the bufferevent does once its output is empty: evhttp's write-done callback. */
    bufferevent_trigger(bev, EV_WRITE, 0);
}

static void server_flush_cb(evutil_socket_t fd, short what, void *arg)
{
    struct server *s = arg;
    struct server_watch *w;
    /* A callback may queue more (a resumed stream's next chunk): served too, in order. */
    while ((w = s->flush_head) != NULL) {
        s->flush_head = w->flush_next;
        if (s->flush_head == NULL) {
            s->flush_tail = NULL;
        }
        w->flush_next = NULL;
        w->flush_queued = false;
        server_flush_one(w->bev);
    }
}

/* Queues the connection of a request whose reply bytes evhttp has just been given. */
static void server_queue_flush(struct server *s, struct server_watch *w)
{
    if (w == NULL || w->flush_queued) {
        return;
    }

    w->flush_queued = true;
    w->flush_next = NULL;
    if (s->flush_tail != NULL) {
        s->flush_tail->flush_next = w;
    } else {
        s->flush_head = w;
    }
    s->flush_tail = w;
    event_active(s->flush, EV_WRITE, 0);
}

void server_flush_soon(struct request *r)
{
    if (r->conn != NULL) {
        server_queue_flush(r->ctx->server, r->conn->watch);
    }
}

/*
 * While a request is answered (maybe for minutes: a long completion, a stream
 * with long pauses), the socket stays readable with no read callback and no
 * read timeout: an app waiting for its answer sends nothing. Bytes an app
 * pipelines wait in the input buffer (bounded by the read high-water mark set
 * at accept), and its EOF reaches evhttp's error callback, which closes the
 * connection and so aborts the call. Only the write timeout runs, and only
 * while reply bytes wait to be written: an app that stops reading is dropped
 * after limits.client_timeout_s without progress.
 */
static void server_keep_reading(struct server_conn *c, long timeout_s)
{
    if (c->watch == NULL) {
        return;
    }
    struct bufferevent *bev = evhttp_connection_get_bufferevent(c->evcon);
    bufferevent_data_cb wcb = NULL;
    bufferevent_event_cb ecb = NULL;
    void *arg = NULL;
    bufferevent_getcb(bev, NULL, &wcb, &ecb, &arg);
    bufferevent_setcb(bev, NULL, wcb, ecb, arg);
    struct timeval tv = {timeout_s, 0};
    bufferevent_set_timeouts(bev, NULL, &tv);
    bufferevent_enable(bev, EV_READ);
}

/*
 * evhttp has written the whole reply (its send-done callback; not called for
 * a connection that failed first): the connection waits for the app's next
 * request again, so the read timeout is back and its idle deadline starts.
 */
static void server_reply_written(struct evhttp_request *ev, void *arg)
{
    struct server_conn *c = arg;
    if (c->watch == NULL) {
        return;
    }
    long timeout_s = c->s->ctx->cfg->limits.client_timeout_s;
    struct timeval tv = {timeout_s, 0};
    bufferevent_set_timeouts(c->watch->bev, &tv, &tv);
    c->watch->deadline = server_now() + (double)timeout_s;
}

static struct bufferevent *server_bevcb(struct event_base *base, void *arg)
{
    struct listener *l = arg;
    struct server *s = l->s;
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        return NULL;
    }
    struct server_watch *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return bev; /* served without a deadline; evhttp's inactivity timeout still applies */
    }
    bufferevent_incref(bev);
    /*
     * Reading stops when this much waits unparsed, so that bytes an app sends
     * while its request is answered (server_keep_reading) are not read without
     * bound. evhttp frames a body with a Content-Length only once all of it is
     * in, so the mark is one whole request at the limits plus a margin that
     * lets evhttp see an over-long one and refuse it.
     */
    const struct config *cfg = s->ctx->cfg;
    bufferevent_setwatermark(bev, EV_READ, 0,
                             (size_t)cfg->limits.max_header_bytes +
                                 (size_t)cfg->limits.max_body_bytes + 2 * SERVER_BODY_SLACK);
    w->bev = bev;
    w->l = l;
    w->deadline = server_now() + (double)s->ctx->cfg->limits.client_timeout_s;
    w->next = s->watches;
    if (s->watches != NULL) {
        s->watches->prev = w;
    }
    s->watches = w;
    s->n_watches++;
    l->n_open++;
    /* evhttp makes the connection when we return: adopted later in this turn. */
    w->adopt_queued = true;
    if (s->adopt_tail != NULL) {
        s->adopt_tail->adopt_next = w;
    } else {
        s->adopt_head = w;
    }
    s->adopt_tail = w;
    event_active(s->adopt, EV_TIMEOUT, 0);
    return bev;
}

static void server_sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    struct server *s = arg;
    double now = server_now();
    struct server_watch *w = s->watches;
    while (w != NULL) {
        struct server_watch *next = w->next;
        void *cbarg = NULL;
        bufferevent_getcb(w->bev, NULL, NULL, NULL, &cbarg);
        /*
         * evhttp keeps its connection as the callback argument for the whole
         * life of the connection (the read callback alone is cleared while a
         * reply is written); bufferevent_free clears them all.
         */
        if (w->adopt_queued) {
            /* Accepted this turn: server_adopt_cb, already due, deals with it. */
        } else if (cbarg == NULL) {
            /* evhttp closed it without our close callback (never adopted): not expected. */
            server_watch_remove(s, w);
        } else if (!w->busy && now >= w->deadline &&
                   evbuffer_get_length(bufferevent_get_output(w->bev)) == 0) {
            /*
             * No whole request within client_timeout_s: slowloris or idle
             * keep-alive. A reply still being written (a slow reader of a
             * large answer) is not idle: the deadline starts when evhttp has
             * written it (server_reply_written), and a write without
             * progress is bounded by the write timeout. The watch is
             * detached first so that the close callback leaves it to us.
             */
            if (w->c != NULL) {
                w->c->watch = NULL;
                w->c = NULL;
            }
            evhttp_connection_free((struct evhttp_connection *)cbarg);
            server_watch_remove(s, w);
        }
        w = next;
    }
    /*
     * Quiet for a whole sweep after some traffic: hand freed heap pages back
     * to the kernel. A burst (1,000 TLS streams) leaves tens of MB free inside
     * the heap that glibc keeps otherwise, since live blocks pin its top.
     */
    struct agent_ctx *ctx = s->ctx;
    if (ctx->inflight == 0 && ctx->req_seq == s->sweep_seq && ctx->req_seq != s->trim_seq) {
        malloc_trim(0);
        s->trim_seq = ctx->req_seq;
    }
    s->sweep_seq = ctx->req_seq;
}

static struct server_watch *server_watch_find(struct server *s, struct bufferevent *bev)
{
    for (struct server_watch *w = s->watches; w != NULL; w = w->next) {
        if (w->bev == bev) {
            return w;
        }
    }
    return NULL;
}

static void server_conn_closed(struct evhttp_connection *evcon, void *arg)
{
    struct server_conn *c = arg;
    struct server *s = c->s;
    struct request *r = c->active;
    int fd = bufferevent_getfd(evhttp_connection_get_bufferevent(evcon));
    if (r != NULL) {
        c->active = NULL;
        r->conn = NULL;
        struct evhttp_request *ev = r->ev;
        r->ev = NULL;
        /* evhttp detached the unfinished request from the dying connection: it is ours to free. */
        if (ev != NULL && evhttp_request_get_connection(ev) == NULL) {
            evhttp_request_free(ev);
        }
        if (r->abort != NULL) {
            r->abort(r);
        } else {
            r->status = 499;
            r->error_code = "client_closed";
            server_finish(r);
        }
    }
    if (fd >= 0 && (size_t)fd < s->n_slots && s->conns[fd] == c) {
        s->conns[fd] = NULL;
    }
    if (c->watch != NULL) {
        /*
         * evhttp frees the bufferevent right after this callback: dropping
         * our reference now lets that close the socket, and the connection
         * stops counting now.
         */
        c->watch->c = NULL;
        server_watch_remove(s, c->watch);
    }
    s->n_conns--;
    free(c);
}

/* A server_conn for evhttp's connection evcon (watch w, or NULL if it has none); NULL if out of
 * memory. */
static struct server_conn *server_conn_new(struct server *s, struct listener *l,
                                           struct evhttp_connection *evcon, struct server_watch *w)
{
    struct server_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    int fd = bufferevent_getfd(evhttp_connection_get_bufferevent(evcon));
    c->s = s;
    c->evcon = evcon;
    c->l = l;
    c->watch = w;
    if (w != NULL) {
        w->c = c;
    }
    socklen_t len = sizeof(c->cred);
    c->have_cred = fd >= 0 && getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c->cred, &len) == 0;
    /* Beyond the table (RLIMIT_NOFILE raised after start): counted, but its requests get 503. */
    if (fd >= 0 && (size_t)fd < s->n_slots) {
        s->conns[fd] = c;
    }
    s->n_conns++;
    evhttp_connection_set_closecb(evcon, server_conn_closed, c);
    return c;
}

/*
 * The connections accepted this turn (server_bevcb), now that evhttp has made
 * them: each gets its server_conn, and so the close callback that ends its
 * count and closes its socket the moment evhttp frees it.
 */
static void server_adopt_cb(evutil_socket_t fd, short what, void *arg)
{
    struct server *s = arg;
    struct server_watch *w;
    while ((w = s->adopt_head) != NULL) {
        s->adopt_head = w->adopt_next;
        if (s->adopt_head == NULL) {
            s->adopt_tail = NULL;
        }
        w->adopt_next = NULL;
        w->adopt_queued = false;
        void *cbarg = NULL;
        bufferevent_getcb(w->bev, NULL, NULL, NULL, &cbarg);
        if (cbarg == NULL) {
            server_watch_remove(s, w); /* evhttp could not set it up and freed it */
            continue;
        }
        struct evhttp_connection *evcon = cbarg; /* evhttp's argument for the connection's life */
        if (w->c == NULL && server_conn_new(s, w->l, evcon, w) == NULL) {
            /* Out of memory: refused rather than served without a count or a close callback. */
            evhttp_connection_free(evcon);
            server_watch_remove(s, w);
        }
    }
}

static struct server_conn *server_conn_get(struct server *s, struct listener *l,
                                           struct evhttp_request *ev)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(ev);
    if (evcon == NULL) {
        return NULL;
    }
    int fd = bufferevent_getfd(evhttp_connection_get_bufferevent(evcon));
    if (fd < 0 || (size_t)fd >= s->n_slots) {
        return NULL;
    }
    struct server_conn *c = s->conns[fd];
    if (c != NULL && c->evcon == evcon) {
        return c;
    }
    /*
     * Not adopted: a connection that got no watch (out of memory at accept).
     * A watch still waiting for adoption is taken over here.
     */
    struct server_watch *w = server_watch_find(s, evhttp_connection_get_bufferevent(evcon));
    return server_conn_new(s, l, evcon, w != NULL && w->c == NULL ? w : NULL);
}

size_t server_connections(const struct server *s)
{
    return s->n_watches > s->n_conns ? s->n_watches : s->n_conns;
}

/* The caller's tenant: the listener's bound tenant or the first peers entry matching uid/gid. */
static bool server_map_tenant(const struct listener *l, const struct server_conn *c,
                              struct request *r)
{
    const struct config_listener *lc = l->lc;
    if (lc->tenant != NULL) {
        snprintf(r->tenant, sizeof(r->tenant), "%s", lc->tenant);
        snprintf(r->app, sizeof(r->app), "%s", lc->app);
        return true;
    }
    if (!c->have_cred) {
        return false;
    }
    for (size_t i = 0; i < lc->n_peers; i++) {
        const struct config_peer *p = &lc->peers[i];
        if ((p->uid < 0 || (uid_t)p->uid == c->cred.uid) &&
            (p->gid < 0 || (gid_t)p->gid == c->cred.gid)) {
            snprintf(r->tenant, sizeof(r->tenant), "%s", p->tenant);
            snprintf(r->app, sizeof(r->app), "%s", p->app);
            return true;
        }
    }
    return false;
}

static void server_gencb(struct evhttp_request *ev, void *arg)
{
    struct listener *l = arg;
    struct server *s = l->s;
    struct agent_ctx *ctx = s->ctx;
    struct server_conn *c = server_conn_get(s, l, ev);
    struct request *r = calloc(1, sizeof(*r));
    if (c == NULL || r == NULL) {
        free(r);
        evhttp_send_error(ev, 503, "Service Unavailable");
        return;
    }
    server_keep_reading(c, ctx->cfg->limits.client_timeout_s);
    evhttp_request_set_on_complete_cb(ev, server_reply_written, c);
    r->ctx = ctx;
    r->cfg = config_ref(ctx->cfg);
    r->ev = ev;
    r->conn = c;
    r->start = server_now();
    r->route = "unknown";
    ctx->inflight++;
    c->active = r;
    if (c->watch != NULL) {
        c->watch->busy = true;
    }
    unsigned long long seq = ++ctx->req_seq;
    snprintf(r->id, sizeof(r->id), "req_%08llx%016llx", ctx->req_seed & 0xffffffffULL,
             seq ^ (ctx->req_seed >> 32));
    if (server_connections(s) > (size_t)r->cfg->limits.max_connections) {
        evhttp_add_header(evhttp_request_get_output_headers(ev), "Connection", "close");
        server_reply_error(r, 503, "server_error", "too_many_connections",
                           "the agent has too many open connections; retry later");
        return;
    }
    if (l->retired) {
        /* Its socket left the config: answer with the mapping it had, then close. */
        evhttp_add_header(evhttp_request_get_output_headers(ev), "Connection", "close");
    }
    const char *uri = evhttp_request_get_uri(ev);
    size_t plen = strcspn(uri, "?");
    if (ctx->draining) {
        /* Still answered while draining: /healthz, whose 503 says "draining". */
        evhttp_add_header(evhttp_request_get_output_headers(ev), "Connection", "close");
        if (plen != strlen("/healthz") || memcmp(uri, "/healthz", plen) != 0) {
            server_reply_error(r, 503, "server_error", "shutting_down",
                               "the agent is shutting down");
            return;
        }
    }
    /*
     * Two Content-Length headers are a request-smuggling vector (RFC 9112
     * 6.3): evhttp used one of them to frame the body, the rest of the bytes
     * would be read as another request. Refuse and close.
     */
    int n_cl = 0;
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, evhttp_request_get_input_headers(ev), next)
    {
        n_cl += evutil_ascii_strcasecmp(kv->key, "Content-Length") == 0;
    }
    if (n_cl > 1) {
        evhttp_add_header(evhttp_request_get_output_headers(ev), "Connection", "close");
        server_reply_error(r, 400, "invalid_request_error", "bad_framing",
                           "more than one Content-Length header");
        return;
    }
    enum evhttp_cmd_type method = evhttp_request_get_command(ev);
    char allow[32] = ""; /* the methods of the path, for a 405's Allow header */
    for (size_t i = 0; i < sizeof(server_routes) / sizeof(server_routes[0]); i++) {
        size_t rlen = strlen(server_routes[i].path);
        if ((server_routes[i].prefix ? plen <= rlen : plen != rlen) ||
            memcmp(server_routes[i].path, uri, rlen) != 0 ||
            (server_routes[i].needs_metrics && !l->lc->metrics)) {
            continue;
        }
        if (server_routes[i].method != method) {
            size_t n = strlen(allow);
            snprintf(allow + n, sizeof(allow) - n, "%s%s", n > 0 ? ", " : "",
                     server_routes[i].method == EVHTTP_REQ_GET ? "GET" : "POST");
            continue;
        }
        r->route = server_routes[i].label != NULL ? server_routes[i].label : server_routes[i].path;
        if (server_routes[i].needs_tenant && !server_map_tenant(l, c, r)) {
            server_reply_error(r, 403, "permission_error", "no_tenant",
                               "this caller is not mapped to a tenant");
            return;
        }
        server_routes[i].handler(r);
        return;
    }
    struct evkeyvalq *h = evhttp_request_get_output_headers(ev);
    if (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_POST) {
        /*
         * evhttp reads no body for DELETE, OPTIONS, HEAD or TRACE: bytes an
         * app sent as one must not be parsed as its next request.
         */
        evhttp_add_header(h, "Connection", "close");
    }
    if (allow[0] != '\0') {
        evhttp_add_header(h, "Allow", allow);
        server_reply_error(r, 405, "invalid_request_error", "method_not_allowed",
                           "method not allowed on this path");
        return;
    }
    server_reply_error(r, 404, "invalid_request_error", "unknown_route", "unknown route");
}

/* ---- listeners ----------------------------------------------------------------------------- */

static void server_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    struct listener *l = arg;
    if (l->bound != NULL) {
        evconnlistener_enable(evhttp_bound_socket_get_listener(l->bound));
    }
}

/*
 * accept failed with something other than "try again": out of file
 * descriptors (EMFILE, ENFILE) or memory. The socket stays readable, so
 * libevent would call accept again at once, forever, warning each time:
 * stop accepting on this listener for a second instead (the kernel queues
 * new connections meanwhile) and say so at most every SERVER_ACCEPT_LOG_S.
 */
static void server_accept_error(struct evconnlistener *lev, void *arg)
{
    int err = EVUTIL_SOCKET_ERROR();
    evconnlistener_disable(lev);
    for (struct server *s = server_all; s != NULL; s = s->next_server) {
        for (struct listener *l = s->listeners; l != NULL; l = l->next) {
            if (l->http != arg || l->bound == NULL) {
                continue;
            }
            struct timeval tv = {SERVER_ACCEPT_PAUSE_S, 0};
            if (event_add(l->resume, &tv) != 0) {
                evconnlistener_enable(lev); /* never leave a listener off for good */
            }
            double now = server_now();
            if (now >= s->accept_log_at) {
                s->accept_log_at = now + SERVER_ACCEPT_LOG_S;
                char open[24];
                snprintf(open, sizeof(open), "%zu", server_connections(s));
                log_kv(LOGL_WARN, "accept failed; listener paused for 1 s", "path", l->path,
                       "error", strerror(err), "connections", open, NULL);
            }
            return;
        }
    }
    evconnlistener_enable(lev); /* not one of ours: leave it as it was */
}

static enum err server_socket_perms(const struct config_listener *lc, char *errbuf, size_t errlen)
{
    uid_t uid;
    gid_t gid;
    enum err e = config_listener_ids(lc, &uid, &gid, errbuf, errlen);
    if (e != ERR_OK) {
        return e;
    }
    if ((uid != (uid_t)-1 || gid != (gid_t)-1) && chown(lc->path, uid, gid) != 0) {
        snprintf(errbuf, errlen, "listener %s: chown: %s", lc->path, strerror(errno));
        return ERR_IO;
    }
    if (chmod(lc->path, lc->mode_bits) != 0) {
        snprintf(errbuf, errlen, "listener %s: chmod: %s", lc->path, strerror(errno));
        return ERR_IO;
    }
    return ERR_OK;
}

/* Puts back a socket's owner and mode as stat found them (best effort: a failed reload's undo). */
static void server_socket_restore(const char *path, const struct stat *st)
{
    if (chown(path, st->st_uid, st->st_gid) != 0 || chmod(path, st->st_mode & 07777) != 0) {
        log_kv(LOGL_ERROR, "listener permissions could not be restored", "path", path, "error",
               strerror(errno), NULL);
    }
}

static void server_http_limits(struct evhttp *http, const struct config *cfg)
{
    /*
     * evhttp answers a body over its limit itself, with an HTML page. With a
     * little slack, a body just over limits.max_body_bytes reaches us and gets
     * the JSON 413; only grossly oversized bodies get evhttp's (still 413).
     */
    evhttp_set_max_body_size(http, cfg->limits.max_body_bytes + SERVER_BODY_SLACK);
    evhttp_set_max_headers_size(http, cfg->limits.max_header_bytes);
    /* Read and write timeout per connection: a slowloris client is dropped after this. */
    evhttp_set_timeout(http, (int)cfg->limits.client_timeout_s);
    /*
     * These methods reach the route table, which answers the ones a path
     * does not take with a JSON 405 (evhttp would answer 501 with HTML).
     * Only GET and POST routes exist: a HEAD or OPTIONS is never served by a
     * handler (server_reply_buf leaves out the body of a HEAD's answer).
     * CONNECT keeps evhttp's 501: evhttp frames no answer to it.
     */
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                         EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                                         EVHTTP_REQ_TRACE | EVHTTP_REQ_PATCH);
}

static struct listener *server_listener_new(struct server *s, const struct config_listener *lc,
                                            const struct config *cfg, char *errbuf, size_t errlen)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(errbuf, errlen, "listener %s: socket: %s", lc->path, strerror(errno));
        return NULL;
    }
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", lc->path);
    /* A stale socket from a previous run is replaced; any other file is left alone. */
    struct stat st;
    if (lstat(lc->path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        unlink(lc->path);
    }
    /* Bind with a closed mode so nobody can connect before chmod/chown. */
    mode_t old = umask(0177);
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (rc != 0) {
        snprintf(errbuf, errlen, "listener %s: bind: %s", lc->path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (server_socket_perms(lc, errbuf, errlen) != ERR_OK) {
        unlink(lc->path);
        close(fd);
        return NULL;
    }
    if (listen(fd, SERVER_BACKLOG) != 0) {
        snprintf(errbuf, errlen, "listener %s: listen: %s", lc->path, strerror(errno));
        unlink(lc->path);
        close(fd);
        return NULL;
    }
    struct listener *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        unlink(lc->path);
        close(fd);
        return NULL;
    }
    l->s = s;
    l->lc = lc;
    l->cfg = config_ref((struct config *)cfg);
    l->path = strdup(lc->path);
    l->http = evhttp_new(s->ctx->base);
    l->resume = event_new(s->ctx->base, -1, 0, server_accept_resume, l);
    if (l->path == NULL || l->http == NULL || l->resume == NULL) {
        goto fail;
    }
    server_http_limits(l->http, cfg);
    evhttp_set_gencb(l->http, server_gencb, l);
    evhttp_set_bevcb(l->http, server_bevcb, l);
    l->bound = evhttp_accept_socket_with_handle(l->http, fd);
    if (l->bound == NULL) {
        goto fail;
    }
    evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(l->bound), server_accept_error);
    return l;
fail:
    snprintf(errbuf, errlen, "listener %s: cannot start", lc->path);
    if (l->http != NULL) {
        evhttp_free(l->http);
    }
    if (l->resume != NULL) {
        event_free(l->resume);
    }
    unlink(lc->path);
    close(fd);
    config_unref(&l->cfg);
    free(l->path);
    free(l);
    return NULL;
}

static void server_listener_stop(struct listener *l)
{
    event_del(l->resume);
    if (l->bound != NULL) {
        evhttp_del_accept_socket(l->http, l->bound);
        l->bound = NULL;
    }
}

/* Frees a stopped listener (not in s->listeners); evhttp_free closes any connection left on it. */
static void server_listener_free(struct listener *l)
{
    if (l->http != NULL) {
        evhttp_free(l->http);
    }
    event_free(l->resume);
    config_unref(&l->cfg);
    free(l->path);
    free(l);
}

/* Stops accepting on l and removes its socket; it is freed once its last connection closes. */
static void server_listener_retire(struct server *s, struct listener *l)
{
    server_listener_stop(l);
    unlink(l->path);
    l->retired = true;
    if (l->n_open == 0) {
        event_active(s->reap, EV_TIMEOUT, 0);
    }
}

/*
 * Frees the retired listeners whose connections have all closed (their
 * evhttp, config reference and resume event): without it every reload that
 * removes a socket would keep a whole parsed config until exit. Made active,
 * never added: it runs after the close callback that found the last one.
 */
static void server_reap_cb(evutil_socket_t fd, short what, void *arg)
{
    struct server *s = arg;
    struct listener **p = &s->listeners;
    while (*p != NULL) {
        struct listener *l = *p;
        if (l->retired && l->n_open == 0) {
            *p = l->next;
            log_kv(LOGL_INFO, "retired listener freed", "path", l->path, NULL);
            server_listener_free(l);
        } else {
            p = &l->next;
        }
    }
}

enum err server_apply(struct server *s, struct config *cfg, char *errbuf, size_t errlen)
{
    struct listener *fresh[CONFIG_MAX_LISTENERS] = {0};
    struct listener *kept[CONFIG_MAX_LISTENERS] = {0};
    struct stat before[CONFIG_MAX_LISTENERS]; /* kept sockets' owner and mode, for a failure */
    size_t changed = 0;
    /* Pass 1: bind what is new; on failure undo only what this call bound. */
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct config_listener *lc = &cfg->listeners[i];
        for (struct listener *l = s->listeners; l != NULL; l = l->next) {
            if (!l->retired && strcmp(l->path, lc->path) == 0) {
                kept[i] = l;
            }
        }
        if (kept[i] != NULL) {
            uid_t uid;
            gid_t gid;
            if (config_listener_ids(lc, &uid, &gid, errbuf, errlen) != ERR_OK) {
                goto undo;
            }
            continue;
        }
        fresh[i] = server_listener_new(s, lc, cfg, errbuf, errlen);
        if (fresh[i] == NULL) {
            goto undo;
        }
    }
    /*
     * Every new socket is bound: now the kept ones get their (possibly new)
     * owner and mode. A failure puts back the ones already changed, so a
     * failed reload leaves every socket as it was.
     */
    for (; changed < cfg->n_listeners; changed++) {
        const struct config_listener *lc = &cfg->listeners[changed];
        if (kept[changed] == NULL) {
            continue;
        }
        if (stat(lc->path, &before[changed]) != 0) {
            snprintf(errbuf, errlen, "listener %s: stat: %s", lc->path, strerror(errno));
            goto restore;
        }
        if (server_socket_perms(lc, errbuf, errlen) != ERR_OK) {
            server_socket_restore(lc->path, &before[changed]);
            goto restore;
        }
    }
    /* Pass 2: commit. Retire listeners that are gone; point kept ones at the new config. */
    for (struct listener *l = s->listeners; l != NULL; l = l->next) {
        bool keep = false;
        for (size_t i = 0; i < cfg->n_listeners; i++) {
            keep = keep || kept[i] == l;
        }
        if (!keep && !l->retired) {
            server_listener_retire(s, l);
            log_kv(LOGL_INFO, "listener retired", "path", l->path, NULL);
        }
    }
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        struct listener *l = kept[i] != NULL ? kept[i] : fresh[i];
        if (l == NULL) {
            abort(); /* pass 1 gave every entry a listener or jumped to undo */
        }
        l->lc = &cfg->listeners[i];
        if (l->cfg != cfg) {
            config_unref(&l->cfg);
            l->cfg = config_ref(cfg);
        }
        server_http_limits(l->http, cfg);
        if (fresh[i] != NULL) {
            l->next = s->listeners;
            s->listeners = l;
            log_kv(LOGL_INFO, "listening", "path", l->path, "tenant", l->lc->tenant, NULL);
        }
    }
    return ERR_OK;
restore:
    for (size_t i = 0; i < changed; i++) {
        if (kept[i] != NULL) {
            server_socket_restore(cfg->listeners[i].path, &before[i]);
        }
    }
undo:
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        if (fresh[i] != NULL) {
            server_listener_stop(fresh[i]);
            unlink(fresh[i]->path);
            server_listener_free(fresh[i]);
        }
    }
    return ERR_CONFIG;
}

void server_stop_accepting(struct server *s)
{
    for (struct listener *l = s->listeners; l != NULL; l = l->next) {
        if (!l->retired) {
            server_listener_retire(s, l);
        }
    }
}

struct server *server_new(struct agent_ctx *ctx)
{
    struct server *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    s->ctx = ctx;
    struct rlimit rl;
    size_t slots = 65536;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        slots = (size_t)rl.rlim_cur;
    }
    if (slots > 1u << 20) {
        slots = 1u << 20;
    }
    s->conns = calloc(slots, sizeof(struct server_conn *)); /* an array of pointers */
    if (s->conns == NULL) {
        free(s);
        return NULL;
    }
    s->n_slots = slots;
    /* Never added, only made active: it runs after the callbacks already due this turn. */
    s->flush = event_new(ctx->base, -1, 0, server_flush_cb, s);
    s->adopt = event_new(ctx->base, -1, 0, server_adopt_cb, s);
    s->reap = event_new(ctx->base, -1, 0, server_reap_cb, s);
    s->sweep = event_new(ctx->base, -1, EV_PERSIST, server_sweep_cb, s);
    struct timeval tv = {0, SERVER_SWEEP_MS * 1000L};
    if (s->flush == NULL || s->adopt == NULL || s->reap == NULL || s->sweep == NULL ||
        event_add(s->sweep, &tv) != 0) {
        struct event *evs[] = {s->sweep, s->flush, s->adopt, s->reap};
        for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++) {
            if (evs[i] != NULL) {
                event_free(evs[i]);
            }
        }
        free(s->conns);
        free(s);
        return NULL;
    }
    s->next_server = server_all;
    server_all = s;
    return s;
}

void server_free(struct server *s)
{
    if (s == NULL) {
        return;
    }
    /*
     * evhttp_free frees a connection's requests before its close callback
     * runs: abort requests in progress first, leaving their evhttp requests
     * to evhttp.
     */
    for (size_t fd = 0; fd < s->n_slots; fd++) {
        struct server_conn *c = s->conns[fd];
        if (c != NULL && c->active != NULL) {
            struct request *r = c->active;
            c->active = NULL;
            r->conn = NULL;
            r->ev = NULL;
            if (r->abort != NULL) {
                r->abort(r);
            } else {
                server_finish(r);
            }
        }
    }
    for (struct listener *l = s->listeners; l != NULL; l = l->next) {
        if (!l->retired) {
            server_listener_stop(l);
            unlink(l->path);
        }
        /* Closes the listener's open connections (their close callbacks run now). */
        evhttp_free(l->http);
        l->http = NULL;
    }
    /*
     * The connections are gone; watches left (not yet adopted) still point
     * at their listener: drop our references (this closes their sockets)
     * before the listeners go.
     */
    while (s->watches != NULL) {
        server_watch_remove(s, s->watches);
    }
    struct listener *l = s->listeners;
    while (l != NULL) {
        struct listener *n = l->next;
        server_listener_free(l);
        l = n;
    }
    event_free(s->sweep);
    event_free(s->flush);
    event_free(s->adopt);
    event_free(s->reap);
    free(s->conns);
    for (struct server **p = &server_all; *p != NULL; p = &(*p)->next_server) {
        if (*p == s) {
            *p = s->next_server;
            break;
        }
    }
    free(s);
}
