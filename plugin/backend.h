/* SPDX-License-Identifier: MPL-2.0 */
/*
 * pb.Backend: converts Vault's protobuf requests into the path framework's
 * structs and the framework's outcome back into exactly what Vault expects
 * (docs/vault-plugin-protocol.md §6, §8, §9): Response.data is always valid
 * JSON object text, 400s are error responses {"error": msg}, unknown paths,
 * operations and denials are the ProtoError sentinels Vault compares by type.
 *
 * The handlers follow rpc_handler_fn and are listed in rpc.c's method table;
 * Type and SpecialPaths never block; every other handler may reach Vault's
 * storage. All run on the pool worker that took the call's message (rpc.c).
 */
#ifndef BYOK_PLUGIN_BACKEND_H
#define BYOK_PLUGIN_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "plugin/framework.h"
#include "plugin/rpc.h"

struct byok;

/* Entries accepted in SetupArgs.Config (mount options plus plugin_name/type/version). */
#define BACKEND_MAX_CONFIG 256
/* Warnings copied into one Response; more are dropped. */
#define BACKEND_MAX_WARNINGS 64

/* The engine state the handlers use (borrowed; lives as long as the process). */
void backend_init(struct byok *b);

/* pb.Backend RPCs. */
void backend_handle_request(grpc_call *call, const uint8_t *req, size_t len,
                            struct rpc_reply *reply);
void backend_handle_existence_check(grpc_call *call, const uint8_t *req, size_t len,
                                    struct rpc_reply *reply);
void backend_setup(grpc_call *call, const uint8_t *req, size_t len, struct rpc_reply *reply);
void backend_initialize(grpc_call *call, const uint8_t *req, size_t len, struct rpc_reply *reply);
void backend_cleanup(grpc_call *call, const uint8_t *req, size_t len, struct rpc_reply *reply);
void backend_invalidate_key(grpc_call *call, const uint8_t *req, size_t len,
                            struct rpc_reply *reply);
void backend_type(grpc_call *call, const uint8_t *req, size_t len, struct rpc_reply *reply);
void backend_special_paths(grpc_call *call, const uint8_t *req, size_t len,
                           struct rpc_reply *reply);

/*
 * The HandleRequestReply for a framework outcome, packed (what
 * backend_handle_request sends; exposed for unit tests). *ret_buf is
 * malloc'd. ERR_NOMEM; ERR_INTERNAL if resp->data is not a JSON object.
 */
MUST_USE enum err backend_reply_pack(const struct fw_response *resp, uint8_t **ret_buf,
                                     size_t *ret_len);

#endif
