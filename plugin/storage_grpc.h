/* SPDX-License-Identifier: MPL-2.0 */
/*
 * struct storage over Vault's pb.Storage service (Get, Put, Delete, List),
 * reached through the broker channel dialed at Setup. Every call blocks for
 * one round trip to Vault on the calling thread: use it from worker threads
 * only (see broker.h).
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

#include "plugin/storage.h"

/* The one process-wide instance (its state is the broker's channel). */
struct storage *storage_grpc(void);

#endif
