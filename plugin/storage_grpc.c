/* SPDX-License-Identifier: MPL-2.0 */
/*
 * pb.Storage client. Messages only: the transport is broker_call. Keys and
 * values are passed through untouched; the limits (key length, value size)
 * are enforced by storage.c in front of every backend, and again here on
 * what Vault sends back.
 */
#include "plugin/storage_grpc.h"

#include <openssl/crypto.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "plugin/broker.h"
#include "sdk/plugin/pb/backend.pb-c.h"

/* Repeated identical failures are logged at most once per this many seconds. */
#define STORAGE_GRPC_LOG_INTERVAL 60

static pthread_mutex_t sg_log_mu = PTHREAD_MUTEX_INITIALIZER;
static char sg_last_msg[BROKER_MAX_DETAIL];
static time_t sg_last_time;

static void sg_log(const char *op, const char *key, enum err e, const char *detail)
{
    char msg[BROKER_MAX_DETAIL];
    snprintf(msg, sizeof(msg), "%s", detail != NULL && detail[0] != '\0' ? detail : err_str(e));
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    pthread_mutex_lock(&sg_log_mu);
    int quiet =
        strcmp(msg, sg_last_msg) == 0 && now.tv_sec - sg_last_time < STORAGE_GRPC_LOG_INTERVAL;
    if (!quiet) {
        memcpy(sg_last_msg, msg, sizeof(msg));
        sg_last_time = now.tv_sec;
    }
    pthread_mutex_unlock(&sg_log_mu);
    if (!quiet) {
        /* Keys name tenants and providers, never secrets; values are never logged. */
        log_kv(LOGL_WARN, "vault storage call failed", "op", op, "key", key, "error", err_name(e),
               "detail", msg, NULL);
    }
}

/* Runs one call; an `err` string in the reply becomes ERR_STORAGE (ERR_READONLY on a standby). */
static enum err sg_call(grpc_call *parent, const char *op, const char *method, const char *key,
                        const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
                        ProtobufCMessage **ret_reply, size_t err_offset)
{
    char detail[BROKER_MAX_DETAIL];
    ProtobufCMessage *reply = NULL;
    enum err e = broker_call(parent, method, req, desc, &reply, detail);
    if (e != ERR_OK) {
        sg_log(op, key, e, detail);
        return e;
    }
    const char *verr = *(char **)((char *)reply + err_offset);
    if (verr != NULL && verr[0] != '\0') {
        /*
         * A standby (OpenBao HA reads, Vault performance standbys) refuses
         * writes with logical.ErrReadOnly: kept apart so the request's error
         * says so, and Vault forwards the request to the active node.
         */
        enum err se = strstr(verr, err_str(ERR_READONLY)) != NULL ? ERR_READONLY : ERR_STORAGE;
        snprintf(detail, sizeof(detail), "%s", verr);
        protobuf_c_message_free_unpacked(reply, NULL);
        if (se != ERR_READONLY) { /* expected on a standby: not worth a warning */
            sg_log(op, key, se, detail);
        }
        return se;
    }
    *ret_reply = reply;
    return ERR_OK;
}

static enum err sg_get(void *ctx, const char *key, unsigned char **ret_val, size_t *ret_len)
{
    Pb__StorageGetArgs args = PB__STORAGE_GET_ARGS__INIT;
    args.key = (char *)key;
    ProtobufCMessage *m = NULL;
    enum err e =
        sg_call(ctx, "get", "/pb.Storage/Get", key, &args.base, &pb__storage_get_reply__descriptor,
                &m, offsetof(Pb__StorageGetReply, err));
    if (e != ERR_OK) {
        return e;
    }
    Pb__StorageGetReply *r = (Pb__StorageGetReply *)m;
    if (r->entry == NULL) {
        protobuf_c_message_free_unpacked(m, NULL);
        return ERR_NOTFOUND;
    }
    size_t len = r->entry->value.len;
    if (len > (size_t)STORAGE_MAX_VALUE) {
        e = ERR_TOOBIG;
        goto out;
    }
    /* One byte more so text values can be handed to parsers as C strings. */
    unsigned char *val = malloc(len + 1);
    if (val == NULL) {
        e = ERR_NOMEM;
        goto out;
    }
    if (len > 0) {
        memcpy(val, r->entry->value.data, len);
    }
    val[len] = '\0';
    *ret_val = val;
    *ret_len = len;
out:
    /* The unpacked copy may hold sealed key material: wipe before freeing. */
    if (r->entry->value.data != NULL) {
        OPENSSL_cleanse(r->entry->value.data, r->entry->value.len);
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return e;
}

static enum err sg_put(void *ctx, const char *key, const unsigned char *val, size_t len,
                       bool seal_wrap)
{
    Pb__StorageEntry entry = PB__STORAGE_ENTRY__INIT;
    entry.key = (char *)key;
    entry.value.data = (uint8_t *)val;
    entry.value.len = len;
    entry.seal_wrap = seal_wrap;
    Pb__StoragePutArgs args = PB__STORAGE_PUT_ARGS__INIT;
    args.entry = &entry;
    ProtobufCMessage *m = NULL;
    enum err e =
        sg_call(ctx, "put", "/pb.Storage/Put", key, &args.base, &pb__storage_put_reply__descriptor,
                &m, offsetof(Pb__StoragePutReply, err));
    if (e == ERR_OK) {
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return e;
}

static enum err sg_del(void *ctx, const char *key)
{
    Pb__StorageDeleteArgs args = PB__STORAGE_DELETE_ARGS__INIT;
    args.key = (char *)key;
    ProtobufCMessage *m = NULL;
    enum err e =
        sg_call(ctx, "delete", "/pb.Storage/Delete", key, &args.base,
                &pb__storage_delete_reply__descriptor, &m, offsetof(Pb__StorageDeleteReply, err));
    if (e == ERR_OK) {
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return e;
}

static enum err sg_list(void *ctx, const char *prefix, char ***ret_keys, size_t *ret_n)
{
    Pb__StorageListArgs args = PB__STORAGE_LIST_ARGS__INIT;
    args.prefix = (char *)prefix;
    ProtobufCMessage *m = NULL;
    enum err e =
        sg_call(ctx, "list", "/pb.Storage/List", prefix, &args.base,
                &pb__storage_list_reply__descriptor, &m, offsetof(Pb__StorageListReply, err));
    if (e != ERR_OK) {
        return e;
    }
    Pb__StorageListReply *r = (Pb__StorageListReply *)m;
    if (r->n_keys > STORAGE_MAX_LIST) {
        protobuf_c_message_free_unpacked(m, NULL);
        return ERR_TOOBIG;
    }
    /* Steal the unpacked strings: they were malloc'd by protobuf-c's default allocator. */
    char **keys = calloc(r->n_keys + 1, sizeof(*keys));
    if (keys == NULL) {
        protobuf_c_message_free_unpacked(m, NULL);
        return ERR_NOMEM;
    }
    for (size_t i = 0; i < r->n_keys; i++) {
        keys[i] = r->keys[i];
        r->keys[i] = NULL;
    }
    size_t n = r->n_keys;
    r->n_keys = 0;
    protobuf_c_message_free_unpacked(m, NULL);
    *ret_keys = keys;
    *ret_n = n;
    return ERR_OK;
}

static const struct storage_ops sg_ops = {
    .get = sg_get,
    .put = sg_put,
    .del = sg_del,
    .list = sg_list,
};

/* ctx is the parent call (grpc_call *), or NULL for none. */
static struct storage sg_storage = {.ops = &sg_ops, .ctx = NULL};

struct storage *storage_grpc(void)
{
    return &sg_storage;
}

void storage_grpc_for_call(struct storage *ret_st, grpc_call *call)
{
    *ret_st = (struct storage){.ops = &sg_ops, .ctx = call};
}
