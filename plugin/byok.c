/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The engine's state object and its lifecycle: the document cache, the mount
 * options, and the per-module state slots of the path modules' hooks
 * (plugin/paths.h). This file routes nothing itself (plugin/framework.c does)
 * and knows nothing of gRPC (plugin/backend.c does).
 */
#include "plugin/byok.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/cache.h"
#include "plugin/catalog.h"
#include "plugin/paths.h"

/* Routing order: fixed paths before patterns that could shadow them. */
const struct fw_path *const byok_path_tables[] = {
    paths_config, paths_rotate_root, paths_providers, paths_tenants,   paths_keys,
    paths_creds,  paths_usage,       paths_budget,    paths_ratelease, NULL,
};

const char *const byok_seal_wrap_storage[] = {"kek/", NULL};

/* The modules with lifecycle hooks, in call order. */
#define BYOK_MAX_HOOKS 4

struct byok {
    struct cache *cache;
    pthread_mutex_t mount_lock; /* guards mount_config replacement */
    json_t *mount_config;
    size_t nhooks;
    const struct byok_hooks *hooks[BYOK_MAX_HOOKS];
    void *state[BYOK_MAX_HOOKS];
};

struct byok *byok_new(void)
{
    struct byok *b = calloc(1, sizeof(*b));
    if (b == NULL) {
        return NULL;
    }
    if (pthread_mutex_init(&b->mount_lock, NULL) != 0) {
        free(b);
        return NULL;
    }
    b->cache = cache_new();
    b->mount_config = json_object();
    if (b->cache == NULL || b->mount_config == NULL) {
        goto out_free;
    }
    b->hooks[b->nhooks++] = &byok_hooks_keys;
    b->hooks[b->nhooks++] = &byok_hooks_ratelease;
    b->hooks[b->nhooks++] = &byok_hooks_tenants;
    for (size_t i = 0; i < b->nhooks; i++) {
        if (b->hooks[i]->init != NULL && b->hooks[i]->init(b, &b->state[i]) != ERR_OK) {
            goto out_free;
        }
    }
    /*
     * Build the shared read-only documents now (the built-in catalog as JSON,
     * the root OpenAPI document) so that no request pays for them. Failure
     * here is not fatal: they are built on first use instead.
     */
    json_decref(catalog_builtin("openai"));
    json_decref(fw_openapi(byok_path_tables));
    return b;
out_free:
    byok_free(b);
    return NULL;
}

void byok_free(struct byok *b)
{
    if (b == NULL) {
        return;
    }
    for (size_t i = b->nhooks; i-- > 0;) {
        if (b->hooks[i]->free != NULL) {
            b->hooks[i]->free(b->state[i]);
        }
    }
    cache_free(b->cache);
    json_decref(b->mount_config);
    pthread_mutex_destroy(&b->mount_lock);
    free(b);
}

void *byok_hooks_state(struct byok *b, const struct byok_hooks *hooks)
{
    for (size_t i = 0; i < b->nhooks; i++) {
        if (b->hooks[i] == hooks) {
            return b->state[i];
        }
    }
    return NULL;
}

struct cache *byok_cache(struct byok *b)
{
    return b->cache;
}

const json_t *byok_mount_config(const struct byok *b)
{
    /* Replaced only by Setup, which Vault calls before any request. */
    return b->mount_config;
}

enum err byok_kek_state(struct byok *b, struct storage *st, struct envelope_kek_state *ret)
{
    for (size_t i = 0; i < b->nhooks; i++) {
        if (b->hooks[i]->kek_state != NULL) {
            return b->hooks[i]->kek_state(b, st, ret);
        }
    }
    *ret = (struct envelope_kek_state){0};
    return ERR_OK;
}

enum err byok_setup(struct byok *b, const json_t *mount_config)
{
    if (mount_config != NULL && !json_is_object(mount_config)) {
        return ERR_INVAL;
    }
    json_t *copy = mount_config != NULL ? json_deep_copy(mount_config) : json_object();
    if (copy == NULL) {
        return ERR_NOMEM;
    }
    pthread_mutex_lock(&b->mount_lock);
    json_t *old = b->mount_config;
    b->mount_config = copy;
    pthread_mutex_unlock(&b->mount_lock);
    json_decref(old);
    return ERR_OK;
}

enum err byok_initialize(struct byok *b, struct storage *st)
{
    for (size_t i = 0; i < b->nhooks; i++) {
        if (b->hooks[i]->initialize != NULL) {
            enum err e = b->hooks[i]->initialize(b, st);
            if (e != ERR_OK) {
                return e;
            }
        }
    }
    return ERR_OK;
}

void byok_invalidate(struct byok *b, const char *key)
{
    if (key == NULL) {
        return;
    }
    cache_invalidate(b->cache, key);
    for (size_t i = 0; i < b->nhooks; i++) {
        if (b->hooks[i]->invalidate != NULL) {
            b->hooks[i]->invalidate(b, key);
        }
    }
}

enum err byok_periodic(struct byok *b, struct storage *st)
{
    enum err first = ERR_OK;
    /* Every module gets its tick even if an earlier one failed. */
    for (size_t i = 0; i < b->nhooks; i++) {
        if (b->hooks[i]->periodic != NULL) {
            enum err e = b->hooks[i]->periodic(b, st);
            if (e != ERR_OK && first == ERR_OK) {
                first = e;
            }
        }
    }
    return first;
}

void byok_cleanup(struct byok *b)
{
    for (size_t i = 0; i < b->nhooks; i++) {
        if (b->hooks[i]->cleanup != NULL) {
            b->hooks[i]->cleanup(b);
        }
    }
    cache_invalidate(b->cache, NULL);
}
