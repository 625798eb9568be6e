/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The plugin's side of go-plugin's GRPCBroker: Vault announces, over the
 * StartStream bidi stream, the Unix socket where it serves pb.Storage and
 * pb.SystemView for one Setup (ConnInfo{service_id, network, address}); Setup
 * names that id in SetupArgs.broker_id. ConnInfos may arrive before or after
 * Setup, so they are buffered by id. Setup dials the announced address once,
 * with the same certificate and key as our server (Vault's broker trusts only
 * the certificate of the handshake line) and PLUGIN_CLIENT_CERT as the only
 * root; every storage call reuses that one channel.
 *
 * Threads: broker_conninfo_put runs on whichever worker drains the server's
 * queue and never blocks. broker_connect (Setup) may wait BROKER_WAIT_MS for
 * its ConnInfo, which arrives on that same queue, so it hands the queue to
 * another worker first (pool.h). broker_call blocks for one round trip to
 * Vault on a completion queue of its own, handing the server's queue on past
 * BROKER_GRACE_US; callable from any thread.
 */
#ifndef BYOK_PLUGIN_BROKER_H
#define BYOK_PLUGIN_BROKER_H

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "plugin/tlsgen.h"

/* ConnInfos buffered while nobody claims them; the oldest is dropped past this. */
#define BROKER_MAX_PENDING 32
/* Longest announced address we accept (a Unix socket path is < 108 bytes; host:port is short). */
#define BROKER_MAX_ADDRESS 255
/* How long Setup waits for its ConnInfo (go-plugin: 5 s). */
#define BROKER_WAIT_MS 5000
/* Deadline of one storage call; Vault's own storage (Raft, Consul) answers far sooner. */
#define BROKER_CALL_TIMEOUT_MS 60000
/* A worker waits this long for a storage reply while holding its turn (pool.h), then hands the
   server's queue to another worker: most replies come sooner, and a hand-off costs a wake-up. */
#define BROKER_GRACE_US 250
/* Largest reply we unpack from Vault: a storage value (1 MiB) plus framing, or a long List. */
#define BROKER_MAX_REPLY ((size_t)64 * 1024 * 1024)
/* Longest gRPC status message kept for the caller. */
#define BROKER_MAX_DETAIL 256

/*
 * Remembers the identity used to dial (borrowed: both must outlive the
 * broker). client_root_pem is PLUGIN_CLIENT_CERT.
 */
MUST_USE enum err broker_init(const struct tlsgen *tls, const char *client_root_pem);

/*
 * Records one announcement. ERR_INVAL for a network other than unix/tcp, an
 * empty address or one longer than BROKER_MAX_ADDRESS (the caller logs it).
 * Non-blocking.
 */
MUST_USE enum err broker_conninfo_put(uint32_t service_id, const char *network,
                                      const char *address);

/*
 * Setup: waits up to wait_ms for the ConnInfo of service_id, then creates the
 * channel (replacing and closing a previous one). ERR_TIMEOUT when nothing was
 * announced in time; ERR_NOMEM; ERR_CRYPTO when credentials cannot be built.
 */
MUST_USE enum err broker_connect(uint32_t service_id, int wait_ms);

/* Is a channel up (i.e. storage reachable, as far as we know)? */
int broker_connected(void);

/* Cleanup: closes the channel after in-flight calls finish. Idempotent. */
void broker_close(void);

/*
 * One unary call to Vault over the broker channel: packs req, unpacks the
 * reply with reply_desc into *ret_reply (free with protobuf_c_message_free_unpacked).
 *
 * parent is the incoming server call being handled (rpc.c), or NULL outside
 * one (Setup, Initialize, Cleanup, tests). With a parent the call is its
 * child with GRPC_PROPAGATE_DEFAULTS: its deadline is the earlier of
 * BROKER_CALL_TIMEOUT_MS and the parent's (Vault's request deadline, sent
 * as grpc-timeout), and it is cancelled when the parent is (Vault gave up on
 * the request, or the parent's deadline passed): once Vault has answered the
 * request, no storage call starts for it and the one in flight is cancelled
 * (a write Vault had already applied stays applied). The parent must stay
 * alive (not unref'd) until this returns; rpc.c holds it for the whole
 * handler.
 *
 * ERR_UNAVAIL when there is no channel or the call failed at the gRPC level
 * (the parent was cancelled included; ret_detail, if given, receives gRPC's
 * status message, cut at BROKER_MAX_DETAIL), ERR_TIMEOUT past the deadline
 * (BROKER_CALL_TIMEOUT_MS or the parent's), ERR_PROTO for an undecodable or
 * oversized reply, ERR_NOMEM.
 */
MUST_USE enum err broker_call(grpc_call *parent, const char *method, const ProtobufCMessage *req,
                              const ProtobufCMessageDescriptor *reply_desc,
                              ProtobufCMessage **ret_reply, char ret_detail[BROKER_MAX_DETAIL]);

/* Frees the ConnInfo buffer (tests). */
void broker_reset(void);

#endif
