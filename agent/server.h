/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The Unix-socket HTTP server (libevent evhttp). One evhttp per listener so a
 * request knows which listener (and so which tenant mapping) it came in on.
 * Routes are a static table. Callers are mapped to a tenant by the listener's
 * bound tenant or by SO_PEERCRED uid/gid; no mapping is a 403.
 *
 * Reload: server_apply binds new listeners first and only then retires
 * removed ones, so an invalid reload leaves the running set untouched.
 * Retired listeners stop accepting; each of their open connections is closed
 * after the answer to its current (or next) request, and a retired listener
 * is freed (its evhttp and config reference) once its last one has closed.
 */
#ifndef BYOK_AGENT_SERVER_H
#define BYOK_AGENT_SERVER_H

#include <event2/http.h>
#include <jansson.h>
#include <stdbool.h>

#include "agent/config.h"
#include "agent/ctx.h"
#include "common/buf.h"
#include "common/err.h"

/* Request ids are "req_" + 24 hex digits. */
#define SERVER_REQUEST_ID_LEN 28

/* One request being answered: owned by server.c, extended by handlers through `call`. */
struct request {
    struct agent_ctx *ctx;
    struct config *cfg;        /* reference taken at start */
    struct evhttp_request *ev; /* NULL once the app has gone */
    struct server_conn *conn;
    const char *route;
    char tenant[CONFIG_MAX_NAME + 1];
    char app[CONFIG_MAX_NAME + 1];
    char id[SERVER_REQUEST_ID_LEN + 1];
    double start; /* monotonic seconds */
    int status;   /* answered status, for logs and metrics */
    const char *error_code;
    /* Filled by handlers for the request's log line. */
    char provider[CONFIG_MAX_NAME + 1];
    char model[257];
    int attempts;
    long long prompt_tokens, completion_tokens, cached_tokens;
    double cost_usd;
    bool usage_estimated; /* tokens partly estimated: the provider reported no (final) usage */
    char *prompt_log;     /* only with log_prompts: true; freed at finish */
    bool done;
    void *call;                       /* the handler's state (proxy.c) */
    void (*abort)(struct request *r); /* called when the app disconnects first */
};

struct server;

struct server *server_new(struct agent_ctx *ctx);
/* Binds/updates listeners for cfg. On error nothing changes and errbuf says why. */
MUST_USE enum err server_apply(struct server *s, struct config *cfg, char *errbuf, size_t errlen);
/* Stops accepting on every listener (SIGTERM drain). */
void server_stop_accepting(struct server *s);
/* Closes listeners, unlinks socket files and frees. Accepts NULL. */
void server_free(struct server *s);
size_t server_connections(const struct server *s);

/* Monotonic seconds. */
double server_now(void);

/* Reply helpers; each finishes the request (server_finish is implied). */
void server_reply_json(struct request *r, int status, json_t *body);
void server_reply_buf(struct request *r, int status, const char *content_type, struct evbuffer *b);
/* OpenAI's error shape {"error": {message, type, param, code}}. */
void server_reply_error(struct request *r, int status, const char *type, const char *code,
                        const char *message);
/*
 * After giving evhttp reply bytes for r by other means (a stream's start,
 * chunks, end): writes them at the end of this loop turn instead of the next.
 */
void server_flush_soon(struct request *r);
/* Ends a request whose reply was sent by other means (streaming); logs and counts it. */
void server_finish(struct request *r);
/* Adds a response header (no CR/LF allowed; silently dropped otherwise). */
void server_header(struct request *r, const char *name, const char *value);

#endif
