/* SPDX-License-Identifier: MPL-2.0 */
/*
 * gRPC C core server with generic call requests. The core only hands us
 * calls we asked for; we ask for "any method" (grpc_server_request_call), so
 * an unknown method is seen and answered UNIMPLEMENTED here instead of
 * hanging. Dispatch is the static table below.
 *
 * One completion queue for everything Vault calls, drained by one worker at a
 * time (pool.h): the worker that holds the turn takes a completion and runs
 * its handler right there, then takes the next. The other RPC_WORKERS - 1
 * are parked outside gRPC. With several threads inside the queue, gRPC
 * core's epoll1 poller handed its role to another one (a futex wake-up and a
 * context switch) every time it left with a message, several times per key
 * write; one drainer reads, runs and replies on one thread. A handler that
 * waits (a storage round trip past its grace in broker.c, a contended engine
 * lock, Setup waiting for the broker's ConnInfo) first hands the turn to a
 * parked worker (or a new one, up to POOL_MAX_WORKERS waiting at once), so a
 * slow Vault does not stall the other calls, and what a handler waits for
 * (its storage reply on the call's own pluck queue, a ConnInfo on the broker
 * stream) has a thread to receive it.
 *
 * Every call is a small state object; a reference count (one per outstanding
 * batch) decides when it is freed. It is atomic because two completions of
 * one call may be taken by two workers at once.
 *
 * Deliberately not here: message contents (backend.c), broker addresses
 * (broker.c), process start-up and exit (main.c).
 */
#include "plugin/rpc.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "grpc/health/v1/health.pb-c.h"
#include "plugin/backend.h"
#include "plugin/broker.h"
#include "plugin/grpc_broker.pb-c.h"
#include "plugin/grpc_controller.pb-c.h"
#include "plugin/pool.h"
#include "sdk/helper/pluginutil/multiplexing.pb-c.h"
#include "sdk/logical/version.pb-c.h"

enum rpc_kind {
    RPC_UNARY,    /* unary, runs on a worker (may block on Vault) */
    RPC_SHUTDOWN, /* unary, registered; once the reply is sent, rpc_wait returns */
    RPC_BROKER,   /* GRPCBroker/StartStream, registered: bidi stream of ConnInfo */
};

struct rpc_method {
    const char *name;
    rpc_handler_fn fn;
    enum rpc_kind kind;
};

static void rpc_health_check(grpc_call *call, const uint8_t *req, size_t len,
                             struct rpc_reply *reply);
static void rpc_multiplexing(grpc_call *call, const uint8_t *req, size_t len,
                             struct rpc_reply *reply);
static void rpc_version(grpc_call *call, const uint8_t *req, size_t len, struct rpc_reply *reply);
static void rpc_empty(grpc_call *call, const uint8_t *req, size_t len, struct rpc_reply *reply);

/*
 * Everything Vault calls. GRPCStdio/StreamStdio is absent on purpose: Vault
 * accepts UNIMPLEMENTED ("stdio service not available") and discards plugin
 * stdio anyway. Setup waits for the broker's ConnInfo on the StartStream
 * stream; it hands its turn to another worker first (broker_connect), so the
 * ConnInfo is received meanwhile.
 */
static const struct rpc_method rpc_methods[] = {
    {"/grpc.health.v1.Health/Check", rpc_health_check, RPC_UNARY},
    {"/plugin.GRPCBroker/StartStream", NULL, RPC_BROKER},
    {"/plugin.GRPCController/Shutdown", rpc_empty, RPC_SHUTDOWN},
    {"/pluginutil.multiplexing.PluginMultiplexing/MultiplexingSupport", rpc_multiplexing,
     RPC_UNARY},
    {"/logical.PluginVersion/Version", rpc_version, RPC_UNARY},
    {"/pb.Backend/HandleRequest", backend_handle_request, RPC_UNARY},
    {"/pb.Backend/HandleExistenceCheck", backend_handle_existence_check, RPC_UNARY},
    {"/pb.Backend/SpecialPaths", backend_special_paths, RPC_UNARY},
    {"/pb.Backend/Type", backend_type, RPC_UNARY},
    {"/pb.Backend/Setup", backend_setup, RPC_UNARY},
    {"/pb.Backend/Initialize", backend_initialize, RPC_UNARY},
    {"/pb.Backend/Cleanup", backend_cleanup, RPC_UNARY},
    {"/pb.Backend/InvalidateKey", backend_invalidate_key, RPC_UNARY},
};
#define RPC_NMETHODS (sizeof(rpc_methods) / sizeof(rpc_methods[0]))

enum rpc_ev { EV_NEW, EV_RECV, EV_SEND, EV_INITMD, EV_CLOSE, EV_SERVER_DOWN };

struct rpc_call;
struct rpc_tag {
    struct rpc_call *call;
    enum rpc_ev ev;
};

struct rpc_call {
    struct rpc_tag t_new, t_recv, t_send, t_initmd, t_close;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array md;
    grpc_byte_buffer *recv_bb;
    grpc_byte_buffer *send_bb;
    grpc_slice status_detail; /* static text: no unref needed */
    int cancelled;
    int initmd_sent; /* headers go out once: with the reply, or at stream start */
    int refs;
    const struct rpc_method *m;
    const struct rpc_method *registered; /* requested as this registered method, or NULL */
    gpr_timespec deadline;               /* filled by registered requests */
};

static grpc_server *rpc_server;
static grpc_completion_queue *rpc_cq; /* every call's completions */
/* Handles of the registered methods (StartStream, Shutdown), by index in rpc_methods. */
static void *rpc_registered[RPC_NMETHODS];
static struct rpc_tag rpc_down_tag = {NULL, EV_SERVER_DOWN};

static pthread_mutex_t rpc_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t rpc_state_cv = PTHREAD_COND_INITIALIZER;
static bool rpc_stop_requested;
static bool rpc_shutting_down;
static bool rpc_server_down;

/* Replies may carry a provider key (the creds path): wipe the packed bytes when gRPC is done. */
static void rpc_wipe_free(void *p, size_t len)
{
    OPENSSL_cleanse(p, len);
    free(p);
}

void rpc_reply_pack(struct rpc_reply *reply, const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(len > 0 ? len : 1);
    if (buf == NULL) {
        rpc_reply_status(reply, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    protobuf_c_message_pack(m, buf);
    reply->msg = grpc_slice_new_with_len(buf, len, rpc_wipe_free);
    reply->has_msg = 1;
}

void rpc_reply_status(struct rpc_reply *reply, grpc_status_code status, const char *detail)
{
    reply->status = status;
    reply->detail = detail;
}

/* ---- small handlers that belong to the transport ---- */

static void rpc_health_check(grpc_call *call, const uint8_t *req, size_t len,
                             struct rpc_reply *reply)
{
    Grpc__Health__V1__HealthCheckRequest *in =
        grpc__health__v1__health_check_request__unpack(NULL, len, req);
    if (in == NULL) {
        rpc_reply_status(reply, GRPC_STATUS_INVALID_ARGUMENT, "cannot decode HealthCheckRequest");
        return;
    }
    /* go-plugin's Ping checks "plugin"; grpc-go's health server also reports "" as the server. */
    bool known = strcmp(in->service, "plugin") == 0 || in->service[0] == '\0';
    grpc__health__v1__health_check_request__free_unpacked(in, NULL);
    if (!known) {
        rpc_reply_status(reply, GRPC_STATUS_NOT_FOUND, "unknown service");
        return;
    }
    Grpc__Health__V1__HealthCheckResponse out = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    out.status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    rpc_reply_pack(reply, &out.base);
}

static void rpc_multiplexing(grpc_call *call, const uint8_t *req, size_t len,
                             struct rpc_reply *reply)
{
    /* One process per mount: byok keeps per-mount state and caches in process memory. */
    Pluginutil__Multiplexing__MultiplexingSupportResponse out =
        PLUGINUTIL__MULTIPLEXING__MULTIPLEXING_SUPPORT_RESPONSE__INIT;
    out.supported = 0;
    rpc_reply_pack(reply, &out.base);
}

static void rpc_version(grpc_call *call, const uint8_t *req, size_t len, struct rpc_reply *reply)
{
    Logical__VersionReply out = LOGICAL__VERSION_REPLY__INIT;
    out.plugin_version = (char *)"v" BYOK_VERSION;
    rpc_reply_pack(reply, &out.base);
}

static void rpc_empty(grpc_call *call, const uint8_t *req, size_t len, struct rpc_reply *reply)
{
    Plugin__Empty out = PLUGIN__EMPTY__INIT;
    rpc_reply_pack(reply, &out.base);
}

/* ---- call state ---- */

static void rpc_call_unref(struct rpc_call *c)
{
    if (__atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) != 0) {
        return;
    }
    if (c->recv_bb != NULL) {
        grpc_byte_buffer_destroy(c->recv_bb);
    }
    if (c->send_bb != NULL) {
        grpc_byte_buffer_destroy(c->send_bb);
    }
    if (c->call != NULL) {
        grpc_call_unref(c->call);
    }
    grpc_call_details_destroy(&c->details);
    grpc_metadata_array_destroy(&c->md);
    free(c);
}

static void rpc_call_ref(struct rpc_call *c)
{
    __atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
}

/*
 * Starts a batch that holds a reference until it completes. The caller holds a
 * reference of its own across the call, so the batch's is never the last one.
 */
static void rpc_batch(struct rpc_call *c, const grpc_op *ops, size_t n, struct rpc_tag *tag)
{
    rpc_call_ref(c);
    grpc_call_error e = grpc_call_start_batch(c->call, ops, n, tag, NULL);
    if (e != GRPC_CALL_OK) {
        /* Only a programming error gets here (two batches of one kind): drop the batch's ref. */
        log_kv(LOGL_ERROR, "grpc_call_start_batch failed", "error", grpc_call_error_to_string(e),
               NULL);
        __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL); /* not the last: the caller's stays */
    }
}

/* Posts one accept slot: for any method, or for one registered method. */
static void rpc_request_one(const struct rpc_method *registered)
{
    struct rpc_call *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        log_kv(LOGL_ERROR, "out of memory accepting a call", NULL);
        return;
    }
    c->t_new = (struct rpc_tag){c, EV_NEW};
    c->t_recv = (struct rpc_tag){c, EV_RECV};
    c->t_send = (struct rpc_tag){c, EV_SEND};
    c->t_initmd = (struct rpc_tag){c, EV_INITMD};
    c->t_close = (struct rpc_tag){c, EV_CLOSE};
    c->status_detail = grpc_empty_slice();
    grpc_call_details_init(&c->details);
    grpc_metadata_array_init(&c->md);
    c->refs = 1; /* the accept slot */
    grpc_call_error e;
    if (registered != NULL) {
        c->registered = registered;
        c->m = registered;
        e = grpc_server_request_registered_call(
            rpc_server, rpc_registered[registered - rpc_methods], &c->call, &c->deadline, &c->md,
            NULL, rpc_cq, rpc_cq, &c->t_new);
    } else {
        e = grpc_server_request_call(rpc_server, &c->call, &c->details, &c->md, rpc_cq, rpc_cq,
                                     &c->t_new);
    }
    if (e != GRPC_CALL_OK) {
        log_kv(LOGL_ERROR, "grpc_server_request_call failed", "error", grpc_call_error_to_string(e),
               NULL);
        rpc_call_unref(c);
    }
}

/* Sends the final status (and message), with a reference transferred or taken. */
static void rpc_finish(struct rpc_call *c, struct rpc_reply *r)
{
    grpc_op ops[3];
    size_t n = 0;
    memset(ops, 0, sizeof(ops));
    if (!c->initmd_sent) {
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        c->initmd_sent = 1;
    }
    if (r->has_msg) {
        if (r->status == GRPC_STATUS_OK) {
            c->send_bb = grpc_raw_byte_buffer_create(&r->msg, 1);
            ops[n].op = GRPC_OP_SEND_MESSAGE;
            ops[n++].data.send_message.send_message = c->send_bb;
        }
        grpc_slice_unref(r->msg);
        r->has_msg = 0;
    }
    c->status_detail =
        r->detail != NULL ? grpc_slice_from_static_string(r->detail) : grpc_empty_slice();
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = r->status;
    ops[n].data.send_status_from_server.status_details = &c->status_detail;
    n++;
    rpc_batch(c, ops, n, &c->t_send);
}

/* Wipes every slice of a received message in place: we are its last reader. */
static void rpc_wipe_message(grpc_byte_buffer *bb)
{
    grpc_byte_buffer_reader reader;
    if (!grpc_byte_buffer_reader_init(&reader, bb)) {
        return;
    }
    grpc_slice *s = NULL;
    while (grpc_byte_buffer_reader_peek(&reader, &s)) {
        OPENSSL_cleanse(GRPC_SLICE_START_PTR(*s), GRPC_SLICE_LENGTH(*s));
    }
    grpc_byte_buffer_reader_destroy(&reader);
}

/*
 * Runs a unary handler on the call's received message. The receive batch's
 * reference (rpc_on_recv) keeps c->call alive until after rpc_finish, so the
 * handler may make it the parent of its storage calls (broker.h). The core
 * gives those children the call's deadline (grpc-timeout) when it is the
 * earlier, and cancels them when Vault cancels the call;
 * RECV_CLOSE_ON_SERVER, posted first by rpc_on_new, is what lets the core
 * see that end.
 */
static void rpc_run(struct rpc_call *c)
{
    struct rpc_reply r = {.status = GRPC_STATUS_OK};
    grpc_byte_buffer_reader reader;
    if (c->recv_bb == NULL || !grpc_byte_buffer_reader_init(&reader, c->recv_bb)) {
        rpc_reply_status(&r, GRPC_STATUS_INVALID_ARGUMENT, "missing request message");
        rpc_finish(c, &r);
        return;
    }
    /* A message in one slice (the usual case) is read in place; only a split one is copied. */
    grpc_slice *first = NULL;
    grpc_slice *second = NULL;
    int whole = grpc_byte_buffer_reader_peek(&reader, &first);
    if (whole && !grpc_byte_buffer_reader_peek(&reader, &second)) {
        c->m->fn(c->call, GRPC_SLICE_START_PTR(*first), GRPC_SLICE_LENGTH(*first), &r);
        grpc_byte_buffer_reader_destroy(&reader);
    } else {
        grpc_byte_buffer_reader_destroy(&reader);
        if (!grpc_byte_buffer_reader_init(&reader, c->recv_bb)) {
            rpc_reply_status(&r, GRPC_STATUS_INVALID_ARGUMENT, "cannot read request message");
            rpc_finish(c, &r);
            return;
        }
        grpc_slice in = grpc_byte_buffer_reader_readall(&reader);
        grpc_byte_buffer_reader_destroy(&reader);
        c->m->fn(c->call, GRPC_SLICE_START_PTR(in), GRPC_SLICE_LENGTH(in), &r);
        OPENSSL_cleanse(GRPC_SLICE_START_PTR(in), GRPC_SLICE_LENGTH(in));
        grpc_slice_unref(in);
    }
    /* Requests may carry a provider key (key writes). */
    rpc_wipe_message(c->recv_bb);
    rpc_finish(c, &r);
}

/* ---- workers ---- */

static const struct rpc_method *rpc_lookup(grpc_slice method)
{
    for (size_t i = 0; i < sizeof(rpc_methods) / sizeof(rpc_methods[0]); i++) {
        if (grpc_slice_str_cmp(method, rpc_methods[i].name) == 0) {
            return &rpc_methods[i];
        }
    }
    return NULL;
}

static void rpc_post_recv(struct rpc_call *c)
{
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->recv_bb;
    rpc_batch(c, &op, 1, &c->t_recv);
}

static void rpc_on_new(struct rpc_call *c, bool ok)
{
    if (!ok) {
        rpc_call_unref(c); /* server shutting down: the slot was never used */
        return;
    }
    pthread_mutex_lock(&rpc_mu);
    bool down = rpc_shutting_down;
    pthread_mutex_unlock(&rpc_mu);
    if (!down) {
        rpc_request_one(c->registered);
    }

    if (c->registered == NULL) {
        c->m = rpc_lookup(c->details.method);
    }
    grpc_op ops[3];
    memset(ops, 0, sizeof(ops));
    if (c->m == NULL) {
        if (log_enabled(LOGL_DEBUG)) {
            char *name = grpc_slice_to_c_string(c->details.method);
            log_kv(LOGL_DEBUG, "unimplemented method", "method", name, NULL);
            gpr_free(name);
        }
        c->status_detail = grpc_slice_from_static_string("method not implemented by this plugin");
        ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[1].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
        ops[1].data.send_status_from_server.status = GRPC_STATUS_UNIMPLEMENTED;
        ops[1].data.send_status_from_server.status_details = &c->status_detail;
        ops[2].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        ops[2].data.recv_close_on_server.cancelled = &c->cancelled;
        rpc_batch(c, ops, 3, &c->t_close);
        rpc_call_unref(c); /* the accept slot's reference */
        return;
    }
    /* Close first and on its own, so a cancellation is always noticed. */
    ops[0].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[0].data.recv_close_on_server.cancelled = &c->cancelled;
    rpc_batch(c, ops, 1, &c->t_close);
    if (c->m->kind == RPC_BROKER) {
        /* Headers now: the stream lives as long as the plugin and we never send on it. */
        memset(ops, 0, sizeof(ops));
        ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
        c->initmd_sent = 1;
        rpc_batch(c, ops, 1, &c->t_initmd);
    }
    rpc_post_recv(c);
    rpc_call_unref(c); /* the accept slot's reference */
}

static void rpc_on_conninfo(struct rpc_call *c)
{
    grpc_byte_buffer_reader reader;
    if (grpc_byte_buffer_length(c->recv_bb) > RPC_MAX_CONNINFO ||
        !grpc_byte_buffer_reader_init(&reader, c->recv_bb)) {
        log_kv(LOGL_WARN, "broker: oversized or unreadable ConnInfo ignored", NULL);
        return;
    }
    grpc_slice in = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    Plugin__ConnInfo *ci =
        plugin__conn_info__unpack(NULL, GRPC_SLICE_LENGTH(in), GRPC_SLICE_START_PTR(in));
    grpc_slice_unref(in);
    if (ci == NULL) {
        log_kv(LOGL_WARN, "broker: undecodable ConnInfo ignored", NULL);
        return;
    }
    char id[16];
    snprintf(id, sizeof(id), "%u", ci->service_id);
    if (ci->knock != NULL) {
        /* Knocks belong to go-plugin's broker multiplexing, which we never advertise. */
        log_kv(LOGL_WARN, "broker: multiplexing knock ignored", "service_id", id, NULL);
    } else if (broker_conninfo_put(ci->service_id, ci->network, ci->address) != ERR_OK) {
        log_kv(LOGL_WARN, "broker: ConnInfo refused", "service_id", id, "network", ci->network,
               NULL);
    } else {
        log_kv(LOGL_DEBUG, "broker: connection announced", "service_id", id, "network", ci->network,
               "address", ci->address, NULL);
    }
    plugin__conn_info__free_unpacked(ci, NULL);
}

static void rpc_on_recv(struct rpc_call *c, bool ok)
{
    if (c->m->kind == RPC_BROKER) {
        if (ok && c->recv_bb != NULL) {
            rpc_on_conninfo(c);
            grpc_byte_buffer_destroy(c->recv_bb);
            c->recv_bb = NULL;
            rpc_post_recv(c);
        } else if (ok) {
            /* Vault half-closed the stream (it does so before Shutdown): end it cleanly. */
            struct rpc_reply r = {.status = GRPC_STATUS_OK};
            rpc_finish(c, &r);
        }
        rpc_call_unref(c);
        return;
    }
    rpc_run(c);
    rpc_call_unref(c); /* the receive batch's reference */
}

static void rpc_on_send(struct rpc_call *c, bool ok)
{
    if (c->m != NULL && c->m->kind == RPC_SHUTDOWN) {
        log_kv(LOGL_INFO, "shutdown requested by Vault", NULL);
        rpc_request_stop();
    }
    rpc_call_unref(c);
}

/* A worker: one completion per turn (pool.h). */
static void *rpc_worker_main(void *arg)
{
    for (;;) {
        pool_turn_take();
        grpc_event ev =
            grpc_completion_queue_next(rpc_cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) {
            pool_turn_end();
            break;
        }
        if (ev.type != GRPC_OP_COMPLETE) {
            pool_turn_end();
            continue;
        }
        struct rpc_tag *t = ev.tag;
        bool ok = ev.success != 0;
        switch (t->ev) {
        case EV_NEW:
            rpc_on_new(t->call, ok);
            break;
        case EV_RECV:
            rpc_on_recv(t->call, ok);
            break;
        case EV_SEND:
            rpc_on_send(t->call, ok);
            break;
        case EV_INITMD:
        case EV_CLOSE:
            rpc_call_unref(t->call);
            break;
        case EV_SERVER_DOWN:
            pthread_mutex_lock(&rpc_mu);
            rpc_server_down = true;
            pthread_cond_broadcast(&rpc_state_cv);
            pthread_mutex_unlock(&rpc_mu);
            break;
        }
        pool_turn_end();
    }
    return NULL;
}

/* ---- lifecycle ---- */

enum err rpc_start(const struct rpc_config *cfg)
{
    if (cfg->socket_path == NULL || strlen(cfg->socket_path) > RPC_MAX_SOCKET_PATH) {
        return ERR_INVAL;
    }
    grpc_arg args[] = {
        /* Vault sends and accepts up to MaxInt32; gRPC core's default receive cap is 4 MiB. */
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, .value.integer = -1},
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, .value.integer = -1},
    };
    grpc_channel_args sargs = {.num_args = sizeof(args) / sizeof(args[0]), .args = args};
    rpc_server = grpc_server_create(&sargs, NULL);
    rpc_cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(rpc_server, rpc_cq, NULL);
    for (size_t i = 0; i < RPC_NMETHODS; i++) {
        if (rpc_methods[i].kind != RPC_UNARY) {
            /* Registered methods win over generic requests: these never reach rpc_lookup. */
            rpc_registered[i] = grpc_server_register_method(rpc_server, rpc_methods[i].name, NULL,
                                                            GRPC_SRM_PAYLOAD_NONE, 0);
            if (rpc_registered[i] == NULL) {
                return ERR_INTERNAL;
            }
        }
    }

    /* Vault presents its AutoMTLS certificate; nothing else may connect. Never cap TLS at 1.2:
       the core then refuses Vault's P-521 certificate ("wrong curve"). */
    grpc_ssl_pem_key_cert_pair pair = {.private_key = cfg->key_pem, .cert_chain = cfg->cert_pem};
    grpc_server_credentials *creds = grpc_ssl_server_credentials_create_ex(
        cfg->client_root_pem, &pair, 1, GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY,
        NULL);
    if (creds == NULL) {
        return ERR_CRYPTO;
    }
    char addr[RPC_MAX_SOCKET_PATH + 8];
    snprintf(addr, sizeof(addr), "unix:%s", cfg->socket_path);
    int port = grpc_server_add_http2_port(rpc_server, addr, creds);
    grpc_server_credentials_release(creds);
    if (port == 0) {
        return ERR_IO;
    }
    grpc_server_start(rpc_server);
    for (int i = 0; i < RPC_PREPOSTED_CALLS; i++) {
        rpc_request_one(NULL);
    }
    for (size_t i = 0; i < RPC_NMETHODS; i++) {
        if (rpc_registered[i] != NULL) {
            for (int k = 0; k < RPC_PREPOSTED_CONTROL; k++) {
                rpc_request_one(&rpc_methods[i]);
            }
        }
    }
    return pool_start(RPC_WORKERS, rpc_worker_main, RPC_THREAD_STACK) == 0 ? ERR_OK : ERR_NOMEM;
}

void rpc_request_stop(void)
{
    pthread_mutex_lock(&rpc_mu);
    rpc_stop_requested = true;
    pthread_cond_broadcast(&rpc_state_cv);
    pthread_mutex_unlock(&rpc_mu);
}

void rpc_wait(void)
{
    pthread_mutex_lock(&rpc_mu);
    while (!rpc_stop_requested) {
        pthread_cond_wait(&rpc_state_cv, &rpc_mu);
    }
    pthread_mutex_unlock(&rpc_mu);
}

/* Waits until the server reported it is down or until deadline (realtime). */
static bool rpc_wait_down(const struct timespec *deadline)
{
    pthread_mutex_lock(&rpc_mu);
    while (!rpc_server_down) {
        if (pthread_cond_timedwait(&rpc_state_cv, &rpc_mu, deadline) != 0) {
            break;
        }
    }
    bool down = rpc_server_down;
    pthread_mutex_unlock(&rpc_mu);
    return down;
}

void rpc_stop(int timeout_ms)
{
    pthread_mutex_lock(&rpc_mu);
    rpc_shutting_down = true;
    pthread_mutex_unlock(&rpc_mu);
    if (rpc_server == NULL) {
        return;
    }
    /* Graceful first, so the Shutdown reply and in-flight replies reach Vault. */
    grpc_server_shutdown_and_notify(rpc_server, rpc_cq, &rpc_down_tag);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    long grace_ms = timeout_ms / 4;
    struct timespec grace = now;
    grace.tv_sec += grace_ms / 1000;
    grace.tv_nsec += (grace_ms % 1000) * 1000000L;
    if (grace.tv_nsec >= 1000000000L) {
        grace.tv_sec++;
        grace.tv_nsec -= 1000000000L;
    }
    if (rpc_wait_down(&grace)) {
        return;
    }
    /* The broker stream and any call blocked on Vault never end by themselves. */
    grpc_server_cancel_all_calls(rpc_server);
    struct timespec end = now;
    end.tv_sec += timeout_ms / 1000;
    end.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (end.tv_nsec >= 1000000000L) {
        end.tv_sec++;
        end.tv_nsec -= 1000000000L;
    }
    (void)rpc_wait_down(&end);
}
