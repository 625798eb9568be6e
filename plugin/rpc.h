/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The gRPC server Vault talks to: gRPC C core on a Unix socket with AutoMTLS
 * (our certificate as server certificate; PLUGIN_CLIENT_CERT as the only
 * trusted client), every method dispatched from one static table, every
 * other method answered UNIMPLEMENTED at once (the C core would otherwise
 * leave it hanging, and Vault waits on GRPCController/Shutdown without a
 * deadline).
 *
 * Threads (docs/internals/transport.md): RPC_WORKERS workers share one
 * completion queue, one at a time (pool.h), and run each handler where its
 * message arrives; handlers may block on a storage round trip to Vault (on a
 * queue of the call's own, broker.c), handing the queue to another worker.
 * Handlers are called concurrently from several workers.
 */
#ifndef BYOK_PLUGIN_RPC_H
#define BYOK_PLUGIN_RPC_H

#include <grpc/grpc.h>
#include <grpc/slice.h>
#include <grpc/status.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* Workers started with the server: one drains, the rest stand in for handlers waiting on Vault
   (the pool grows past this when all of them wait, pool.h). */
#define RPC_WORKERS 8
/* Stack of each thread we create: handlers use jansson and OpenSSL, no deep recursion. */
#define RPC_THREAD_STACK ((size_t)512 * 1024)
/* Calls requested from the core ahead of time (each is an accept slot). */
#define RPC_PREPOSTED_CALLS 32
/* Accept slots per control method (StartStream, Shutdown): Vault opens one of each. */
#define RPC_PREPOSTED_CONTROL 2
/* Longest Unix socket path (sockaddr_un.sun_path is 108 bytes with the NUL). */
#define RPC_MAX_SOCKET_PATH 107
/* Largest ConnInfo we unpack from the broker stream. */
#define RPC_MAX_CONNINFO 4096

/* What a handler returns: a packed message, or a non-OK status with a static detail. */
struct rpc_reply {
    grpc_status_code status; /* GRPC_STATUS_OK unless set */
    const char *detail;      /* static text for a non-OK status; NULL = none */
    grpc_slice msg;          /* packed reply, set by rpc_reply_pack */
    int has_msg;
};

/*
 * A unary handler: call is the incoming server call, req/len the packed
 * request (both borrowed for the handler's run: the call is not unref'd
 * before the handler returns). Calls the handler makes to Vault for this
 * request pass call as their parent (storage_grpc_for_call), so Vault's
 * deadline and cancellation reach them. Runs on a worker thread, start to
 * end on that one thread; may block; called concurrently.
 */
typedef void (*rpc_handler_fn)(grpc_call *call, const uint8_t *req, size_t len,
                               struct rpc_reply *reply);

/* Packs m as the reply (status stays OK). */
void rpc_reply_pack(struct rpc_reply *reply, const ProtobufCMessage *m);
/* Sets a non-OK status; detail must be static text (it outlives the handler). */
void rpc_reply_status(struct rpc_reply *reply, grpc_status_code status, const char *detail);

struct rpc_config {
    const char *socket_path;     /* absolute, < RPC_MAX_SOCKET_PATH bytes; must not exist */
    const char *key_pem;         /* our private key (borrowed during rpc_start) */
    const char *cert_pem;        /* our certificate */
    const char *client_root_pem; /* PLUGIN_CLIENT_CERT */
};

/*
 * grpc_init must have been called. Creates the server, binds the socket,
 * starts it and the threads. On return the socket is listening (the
 * handshake line may be printed). ERR_IO if the socket cannot be bound.
 */
MUST_USE enum err rpc_start(const struct rpc_config *cfg);

/* Blocks until GRPCController/Shutdown was answered or rpc_request_stop was called. */
void rpc_wait(void);

/* Asks rpc_wait to return (thread-safe; not async-signal-safe). */
void rpc_request_stop(void);

/*
 * Stops accepting, lets in-flight calls finish for a short grace, cancels the
 * rest; returns within about timeout_ms. Does not join workers: a worker
 * blocked on Vault is abandoned (the process exits right after).
 */
void rpc_stop(int timeout_ms);

#endif
