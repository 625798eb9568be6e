/* SPDX-License-Identifier: MPL-2.0 */
/* The worker pool's turn-taking; see pool.h for why. */
#include "plugin/pool.h"

#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "common/log.h"

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cv = PTHREAD_COND_INITIALIZER;
static int pool_active; /* workers holding a turn: draining or running a handler */
static int pool_parked; /* workers waiting in pool_turn_take */
static int pool_total;  /* workers started */
static bool pool_grow_failed_logged;
static long pool_slice_us = POOL_SLICE_US;
static void *(*pool_fn)(void *);
static size_t pool_stack;

static __thread bool pool_worker;           /* the calling thread is a pool worker */
static __thread bool pool_counted;          /* ... and holds a turn (counted in pool_active) */
static __thread int pool_blocked;           /* nesting depth of pool_block_begin */
static __thread struct timespec pool_since; /* when this thread took its turn */

static int pool_spawn(void)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, pool_stack);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t th;
    int rc = pthread_create(&th, &attr, pool_fn, NULL);
    pthread_attr_destroy(&attr);
    return rc;
}

int pool_start(int n, void *(*fn)(void *), size_t stack)
{
    if (n > POOL_MAX_WORKERS) {
        n = POOL_MAX_WORKERS;
    }
    pool_fn = fn;
    pool_stack = stack;
    pthread_mutex_lock(&pool_mu);
    pool_total += n; /* counted first: a worker may already grow the pool */
    pthread_mutex_unlock(&pool_mu);
    int started = 0;
    for (int i = 0; i < n; i++) {
        if (pool_spawn() == 0) {
            started++;
        }
    }
    pthread_mutex_lock(&pool_mu);
    pool_total -= n - started;
    pthread_mutex_unlock(&pool_mu);
    return started > 0 ? 0 : -1;
}

void pool_turn_take(void)
{
    pool_worker = true;
    pthread_mutex_lock(&pool_mu);
    while (pool_active > 0) {
        pool_parked++;
        pthread_cond_wait(&pool_cv, &pool_mu);
        pool_parked--;
    }
    pool_active++;
    pthread_mutex_unlock(&pool_mu);
    pool_counted = true;
    pool_blocked = 0;
    clock_gettime(CLOCK_MONOTONIC, &pool_since);
}

void pool_turn_end(void)
{
    if (!pool_counted) {
        return; /* gave its turn up while it waited (pool_block_end) */
    }
    pool_counted = false;
    pthread_mutex_lock(&pool_mu);
    pool_active--;
    pthread_mutex_unlock(&pool_mu);
}

bool pool_turn_overdue(void)
{
    if (!pool_worker) {
        return false;
    }
    if (!pool_counted) {
        return true;
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long us = (long long)(now.tv_sec - pool_since.tv_sec) * 1000000LL +
                   (now.tv_nsec - pool_since.tv_nsec) / 1000;
    return us >= __atomic_load_n(&pool_slice_us, __ATOMIC_RELAXED);
}

void pool_block_begin(void)
{
    if (!pool_worker || !pool_counted || pool_blocked++ > 0) {
        return;
    }
    bool grow = false;
    pthread_mutex_lock(&pool_mu);
    /* Nobody else drains: hand the queue to a parked worker, or a new one, before we wait. */
    if (--pool_active == 0) {
        if (pool_parked > 0) {
            pthread_cond_signal(&pool_cv);
        } else if (pool_total < POOL_MAX_WORKERS) {
            pool_total++;
            grow = true;
        }
    }
    pthread_mutex_unlock(&pool_mu);
    int rc = grow ? pool_spawn() : 0;
    if (rc != 0) {
        pthread_mutex_lock(&pool_mu);
        pool_total--;
        bool first = !pool_grow_failed_logged;
        pool_grow_failed_logged = true;
        pthread_mutex_unlock(&pool_mu);
        if (first) {
            log_kv(LOGL_ERROR,
                   "worker pool cannot grow: calls wait until a handler waiting on Vault returns",
                   "error", strerror(rc), NULL);
        }
    }
}

void pool_block_end(void)
{
    if (!pool_worker || !pool_counted || --pool_blocked > 0) {
        return;
    }
    if (pool_turn_overdue()) {
        /*
         * A long handler (rotate-root: a storage round trip per tenant) gives
         * its turn up for good once it waits past its slice: the worker that
         * took over keeps draining, and this one finishes in the background.
         */
        pool_counted = false;
        return;
    }
    /* Back with a turn: if another worker took over meanwhile, one of us parks after its event. */
    pthread_mutex_lock(&pool_mu);
    pool_active++;
    pthread_mutex_unlock(&pool_mu);
}

void pool_set_slice_us(long us)
{
    __atomic_store_n(&pool_slice_us, us, __ATOMIC_RELAXED);
}

int pool_active_workers(void)
{
    pthread_mutex_lock(&pool_mu);
    int n = pool_active;
    pthread_mutex_unlock(&pool_mu);
    return n;
}

void pool_mutex_lock(pthread_mutex_t *mu)
{
    if (pthread_mutex_trylock(mu) == 0) {
        return;
    }
    pool_block_begin();
    pthread_mutex_lock(mu);
    pool_block_end();
}

int pool_rwlock_init(pthread_rwlock_t *rw)
{
    pthread_rwlockattr_t attr;
    int rc = pthread_rwlockattr_init(&attr);
    if (rc != 0) {
        return rc;
    }
    rc = pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    if (rc == 0) {
        rc = pthread_rwlock_init(rw, &attr);
    }
    pthread_rwlockattr_destroy(&attr);
    return rc;
}

void pool_rwlock_rdlock(pthread_rwlock_t *rw)
{
    if (pthread_rwlock_tryrdlock(rw) == 0) {
        return;
    }
    pool_block_begin();
    pthread_rwlock_rdlock(rw);
    pool_block_end();
}

void pool_rwlock_wrlock(pthread_rwlock_t *rw)
{
    if (pthread_rwlock_trywrlock(rw) == 0) {
        return;
    }
    pool_block_begin();
    pthread_rwlock_wrlock(rw);
    pool_block_end();
}
