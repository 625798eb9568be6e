/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Storage front end: argument checks and limits shared by every backend, plus
 * the JSON helpers the path modules use. Backends (storage_grpc, storage_mem)
 * only move bytes; this file does not cache (caching is the callers' business,
 * because only they know what InvalidateKey drops).
 */
#include "plugin/storage.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

static bool storage_key_ok(const char *key)
{
    /* Empty keys are refused: Vault's physical layer rejects them too. */
    return key != NULL && key[0] != '\0' && strnlen(key, STORAGE_MAX_KEY + 1) <= STORAGE_MAX_KEY;
}

enum err storage_get(struct storage *st, const char *key, unsigned char **ret_val, size_t *ret_len)
{
    if (st == NULL || ret_val == NULL || ret_len == NULL || !storage_key_ok(key)) {
        return ERR_INVAL;
    }
    unsigned char *val = NULL;
    size_t len = 0;
    enum err e = st->ops->get(st->ctx, key, &val, &len);
    if (e != ERR_OK) {
        return e;
    }
    /* Vault could hand back anything; never hold more than we would write. */
    if (len > (size_t)STORAGE_MAX_VALUE) {
        OPENSSL_cleanse(val, len);
        free(val);
        return ERR_TOOBIG;
    }
    *ret_val = val;
    *ret_len = len;
    return ERR_OK;
}

enum err storage_put(struct storage *st, const char *key, const unsigned char *val, size_t len,
                     bool seal_wrap)
{
    if (st == NULL || !storage_key_ok(key) || (val == NULL && len != 0)) {
        return ERR_INVAL;
    }
    if (len > (size_t)STORAGE_MAX_VALUE) {
        return ERR_TOOBIG;
    }
    return st->ops->put(st->ctx, key, val, len, seal_wrap);
}

enum err storage_delete(struct storage *st, const char *key)
{
    if (st == NULL || !storage_key_ok(key)) {
        return ERR_INVAL;
    }
    return st->ops->del(st->ctx, key);
}

enum err storage_list(struct storage *st, const char *prefix, char ***ret_keys, size_t *ret_n)
{
    /* The empty prefix is legal here: it lists the root of the mount. */
    if (st == NULL || prefix == NULL || ret_keys == NULL || ret_n == NULL ||
        strnlen(prefix, STORAGE_MAX_KEY + 1) > STORAGE_MAX_KEY) {
        return ERR_INVAL;
    }
    char **keys = NULL;
    size_t n = 0;
    enum err e = st->ops->list(st->ctx, prefix, &keys, &n);
    if (e != ERR_OK) {
        return e;
    }
    if (n > STORAGE_MAX_LIST) {
        storage_keys_free(keys, n);
        return ERR_TOOBIG;
    }
    *ret_keys = keys;
    *ret_n = n;
    return ERR_OK;
}

void storage_keys_free(char **keys, size_t n)
{
    if (keys == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        free(keys[i]);
    }
    free(keys);
}

/* jansson allocations that failed on this thread (storage_json_malloc). */
static _Thread_local unsigned long storage_json_failures;

void storage_json_alloc_failed(void)
{
    storage_json_failures++;
}

unsigned long storage_json_failures_seen(void)
{
    return storage_json_failures;
}

void *storage_json_malloc(size_t size)
{
    void *p = malloc(size);
    if (p == NULL) {
        storage_json_alloc_failed();
    }
    return p;
}

enum err storage_get_json(struct storage *st, const char *key, json_t **ret_json)
{
    if (ret_json == NULL) {
        return ERR_INVAL;
    }
    unsigned char *val = NULL;
    size_t len = 0;
    enum err e = storage_get(st, key, &val, &len);
    if (e != ERR_OK) {
        return e;
    }
    json_error_t jerr;
    unsigned long failures = storage_json_failures;
    json_t *j = json_loadb((const char *)val, len, JSON_REJECT_DUPLICATES, &jerr);
    /* Stored documents may hold wrapped key material: wipe the raw bytes (and any quote of them).
     */
    OPENSSL_cleanse(val, len);
    OPENSSL_cleanse(&jerr, sizeof(jerr));
    free(val);
    if (storage_json_failures != failures) {
        json_decref(j); /* maybe parsed with a byte missing: never hand it on */
        return ERR_NOMEM;
    }
    if (j == NULL) {
        return ERR_PROTO;
    }
    *ret_json = j;
    return ERR_OK;
}

enum err storage_put_json(struct storage *st, const char *key, const json_t *json, bool seal_wrap)
{
    if (json == NULL) {
        return ERR_INVAL;
    }
    size_t need = json_dumpb(json, NULL, 0, JSON_COMPACT | JSON_SORT_KEYS);
    if (need == 0) {
        return ERR_INVAL;
    }
    if (need > (size_t)STORAGE_MAX_VALUE) {
        return ERR_TOOBIG;
    }
    char *text = malloc(need);
    if (text == NULL) {
        return ERR_NOMEM;
    }
    size_t got = json_dumpb(json, text, need, JSON_COMPACT | JSON_SORT_KEYS);
    enum err e = got == need ? storage_put(st, key, (const unsigned char *)text, got, seal_wrap)
                             : ERR_INTERNAL;
    OPENSSL_cleanse(text, need);
    free(text);
    return e;
}
