/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The plugin's view of Vault storage (the mount's private, barrier-encrypted
 * key space). Implementations: storage_grpc (pb.Storage over the broker
 * connection, the real one) and storage_mem (in memory, for unit tests and
 * benchmarks). Keys are relative to the mount; List returns immediate children,
 * sub-folders suffixed by "/". Every call may block on a round trip to Vault;
 * on a worker of the gRPC server's pool it hands the server's queue on while
 * it waits (broker.c, pool.h).
 */
#ifndef BYOK_PLUGIN_STORAGE_H
#define BYOK_PLUGIN_STORAGE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"

/* Largest value we write or accept back (Vault's Raft default max entry is 1 MiB). */
#define STORAGE_MAX_VALUE (1024 * 1024)
/* Longest key we build. */
#define STORAGE_MAX_KEY 512
/* Most keys one List may return before we refuse it. */
#define STORAGE_MAX_LIST 1000000

struct storage_ops {
    /* *ret_val is malloc'd (caller frees, wiping if sensitive); ERR_NOTFOUND when absent. */
    enum err (*get)(void *ctx, const char *key, unsigned char **ret_val, size_t *ret_len);
    enum err (*put)(void *ctx, const char *key, const unsigned char *val, size_t len,
                    bool seal_wrap);
    enum err (*del)(void *ctx, const char *key);
    /* *ret_keys is a malloc'd array of malloc'd strings; free with storage_keys_free. */
    enum err (*list)(void *ctx, const char *prefix, char ***ret_keys, size_t *ret_n);
};

struct storage {
    const struct storage_ops *ops;
    void *ctx;
};

MUST_USE enum err storage_get(struct storage *st, const char *key, unsigned char **ret_val,
                              size_t *ret_len);
MUST_USE enum err storage_put(struct storage *st, const char *key, const unsigned char *val,
                              size_t len, bool seal_wrap);
MUST_USE enum err storage_delete(struct storage *st, const char *key);
MUST_USE enum err storage_list(struct storage *st, const char *prefix, char ***ret_keys,
                               size_t *ret_n);
void storage_keys_free(char **keys, size_t n);

/*
 * JSON helpers: the value is a JSON document. get: ERR_NOTFOUND when absent, ERR_PROTO if not JSON,
 * ERR_NOMEM when jansson ran out of memory while parsing it (see storage_json_malloc).
 */
MUST_USE enum err storage_get_json(struct storage *st, const char *key, json_t **ret_json);
MUST_USE enum err storage_put_json(struct storage *st, const char *key, const json_t *json,
                                   bool seal_wrap);

/*
 * jansson's allocator for the plugin (main.c): malloc that counts its failures
 * per thread. jansson 2.14's parser does not always fail when an allocation
 * inside a string fails: it drops the byte and goes on (a stored
 * "allowed_providers" came back as "allowed_providrs"), so storage_get_json
 * refuses a document parsed while an allocation failed. An allocator of a
 * test that fails on purpose calls storage_json_alloc_failed.
 */
void *storage_json_malloc(size_t size);
void storage_json_alloc_failed(void);
/*
 * How many jansson allocations failed on this thread so far: a parse or a
 * coercion during which it moved may have lost a byte (request bodies too).
 */
unsigned long storage_json_failures_seen(void);

/* In-memory storage (thread-safe). storage_mem_free accepts NULL. */
struct storage *storage_mem_new(void);
void storage_mem_free(struct storage *st);
/* Storage that is unreachable: every call fails with ERR_UNAVAIL (tests: {.ops = &...}). */
extern const struct storage_ops storage_down_ops;
/* Calls fn for every stored (key, value): tests scan raw storage for canaries. */
void storage_mem_foreach(struct storage *st,
                         void (*fn)(const char *key, const unsigned char *val, size_t len,
                                    void *arg),
                         void *arg);

#endif
