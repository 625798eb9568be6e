/* SPDX-License-Identifier: MPL-2.0 */
/* Fixtures for path-module tests: see pluginenv.h. */
#include "tests/unit/helpers/pluginenv.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/secret.h"
#include "plugin/keystore.h"

int pluginenv_setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    if (e == NULL) {
        return -1;
    }
    e->b = byok_new();
    e->st = storage_mem_new();
    *state = e;
    if (e->b == NULL || e->st == NULL) {
        return -1;
    }
    /* As the transport does after Setup: the keys modules create KEK 1 here. */
    return byok_initialize(e->b, e->st) == ERR_OK ? 0 : -1;
}

time_t pluginenv_now;

static time_t pluginenv_clock(void)
{
    return pluginenv_now;
}

int pluginenv_setup_clock(void **state)
{
    pluginenv_now = 1795000000; /* 2026-11-18T08:26:40Z */
    keystore_set_clock(pluginenv_clock);
    return pluginenv_setup(state);
}

int pluginenv_teardown(void **state)
{
    struct env *e = *state;
    if (e != NULL) {
        byok_cleanup(e->b);
        byok_free(e->b);
        storage_mem_free(e->st);
        free(e);
    }
    keystore_set_clock(NULL);
    return 0;
}

int pluginenv_group_setup(void **state)
{
    (void)state;
    return secret_heap_init((size_t)1024 * 1024) == ERR_OK ? 0 : -1;
}

static struct storage *slow_inner;
static const char *slow_prefix;
static long slow_usec;
static pthread_mutex_t slow_mu = PTHREAD_MUTEX_INITIALIZER;

static void slow_wait(const char *key)
{
    if (strncmp(key, slow_prefix, strlen(slow_prefix)) == 0) {
        struct timespec ts = {slow_usec / 1000000, (slow_usec % 1000000) * 1000};
        nanosleep(&ts, NULL);
    }
}

static enum err slow_get(void *ctx, const char *key, unsigned char **ret_val, size_t *ret_len)
{
    (void)ctx;
    slow_wait(key);
    pthread_mutex_lock(&slow_mu);
    enum err e = storage_get(slow_inner, key, ret_val, ret_len);
    pthread_mutex_unlock(&slow_mu);
    return e;
}

static enum err slow_put(void *ctx, const char *key, const unsigned char *val, size_t len,
                         bool seal_wrap)
{
    (void)ctx;
    slow_wait(key);
    pthread_mutex_lock(&slow_mu);
    enum err e = storage_put(slow_inner, key, val, len, seal_wrap);
    pthread_mutex_unlock(&slow_mu);
    return e;
}

static enum err slow_del(void *ctx, const char *key)
{
    (void)ctx;
    pthread_mutex_lock(&slow_mu);
    enum err e = storage_delete(slow_inner, key);
    pthread_mutex_unlock(&slow_mu);
    return e;
}

static enum err slow_list(void *ctx, const char *prefix, char ***ret_keys, size_t *ret_n)
{
    (void)ctx;
    pthread_mutex_lock(&slow_mu);
    enum err e = storage_list(slow_inner, prefix, ret_keys, ret_n);
    pthread_mutex_unlock(&slow_mu);
    return e;
}

static const struct storage_ops slow_ops = {slow_get, slow_put, slow_del, slow_list};

void pluginenv_slow_storage(struct storage *out, struct storage *inner, const char *prefix,
                            long usec)
{
    slow_inner = inner;
    slow_prefix = prefix;
    slow_usec = usec;
    out->ops = &slow_ops;
    out->ctx = NULL;
}
