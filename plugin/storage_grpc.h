/* SPDX-License-Identifier: MPL-2.0 */
/*
 * struct storage over Vault's pb.Storage service (Get, Put, Delete, List),
 * reached through the broker channel dialed at Setup. Every call blocks for
 * one round trip to Vault on the calling thread: use it from worker threads
 * only (see broker.h). What bounds a call (its own deadline, or the incoming
 * request's deadline and cancellation too) depends on the instance, below.
 *
 * Errors: no broker channel (Setup had broker id 0, or after Cleanup) ->
 * ERR_UNAVAIL with a logged explanation; a gRPC failure (e.g. registration's
 * "missing storage implementation", a gRPC error in Vault) -> ERR_UNAVAIL (or
 * ERR_TIMEOUT); an `err` string in Vault's reply (e.g. "cannot write to
 * storage during setup") -> ERR_STORAGE, or ERR_READONLY for a standby's
 * "cannot write to readonly storage".
 * The failure is logged here, once per distinct message per minute, so that
 * Vault's minute-by-minute rollback in registration mode does not flood the
 * log; callers do not log it again.
 */
#ifndef BYOK_PLUGIN_STORAGE_GRPC_H
#define BYOK_PLUGIN_STORAGE_GRPC_H

#include <grpc/grpc.h>

#include "plugin/storage.h"

/*
 * The process-wide instance, for storage calls made outside an incoming
 * request (Setup, Initialize, Cleanup): each call has its own
 * BROKER_CALL_TIMEOUT_MS deadline and nothing else ends it.
 */
struct storage *storage_grpc(void);

/*
 * The storage of one incoming request: every call made through *ret_st is a
 * child of the server call `call` (broker_call), so it ends at Vault's
 * deadline for the request and when Vault cancels it, and fails at once
 * after that (ERR_TIMEOUT or ERR_UNAVAIL). Fills *ret_st, allocates nothing;
 * valid while call is (rpc.c keeps it for the whole handler). A NULL call
 * gives the process-wide behaviour (handlers run by unit tests).
 */
void storage_grpc_for_call(struct storage *ret_st, grpc_call *call);

#endif
