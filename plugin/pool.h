/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The worker pool's turn-taking (docs/internals/transport.md, "Threads and
 * queues"). gRPC core's epoll1 engine hands the poller role to another
 * waiting thread whenever the polling thread leaves with an event: with
 * eight workers in grpc_completion_queue_next, every message cost a futex
 * wake-up and a context switch, several per key write. So one worker at a
 * time drains the queue (it holds the turn) and the rest are parked here.
 *
 * A handler that is about to wait (a storage round trip past its grace, a
 * contended engine lock, the broker's ConnInfo) gives the turn away first,
 * waking a parked worker if nobody else holds one; when it is done it takes
 * a turn again, and a worker that finds another turn-holder after its event
 * parks. A handler that has run longer than POOL_SLICE_US (rotate-root, a
 * round trip per tenant) gives its turn up for good at its next wait and
 * finishes in the background, so that a long run of fast storage calls does
 * not keep everything else waiting. No lock here is held while anyone waits
 * on Vault. When every worker waits and none is parked, the pool starts one
 * more, up to POOL_MAX_WORKERS; past that, new calls (Vault's Shutdown
 * included) wait until a waiting handler returns.
 *
 * Threads that are not pool workers (tests, benchmarks, the main thread)
 * may call every function: the blocking hints are then no-ops.
 */
#ifndef BYOK_PLUGIN_POOL_H
#define BYOK_PLUGIN_POOL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

/* Most workers the pool starts (a waiting one holds a thread; its stack is mostly untouched). */
#define POOL_MAX_WORKERS 256
/* How long a handler may hold its turn before its next wait gives the turn up for good. */
#define POOL_SLICE_US 1000

/*
 * Starts n workers running fn (which loops on pool_turn_take / pool_turn_end)
 * with the given stack size; fn is also what the pool starts when it grows.
 * Returns 0, or -1 if not even one thread could be started.
 */
int pool_start(int n, void *(*fn)(void *), size_t stack);
/* Marks the calling thread as a pool worker and parks it until no other worker holds a turn. */
void pool_turn_take(void);
/* The worker finished one event; it takes its next turn with pool_turn_take. */
void pool_turn_end(void);
/*
 * Whether a wait should hand the turn on at once instead of after a grace: the
 * handler has held it past POOL_SLICE_US, or already gave it up. False off
 * the pool.
 */
bool pool_turn_overdue(void);

/* Around a wait inside a handler: give the turn away, then take it back (or not, see above). */
void pool_block_begin(void);
void pool_block_end(void);

/*
 * A read-write lock held across storage round trips: writer-preferring, so a
 * writer waits only for the readers already in (glibc's default lets new
 * readers in ahead of a waiting writer, which a steady flow of overlapping
 * readers starves). A thread must not take its read side twice. 0 or an errno.
 */
int pool_rwlock_init(pthread_rwlock_t *rw);

/* Locks that may be held across a storage round trip: blocking hints when contended. */
void pool_mutex_lock(pthread_mutex_t *mu);
void pool_rwlock_rdlock(pthread_rwlock_t *rw);
void pool_rwlock_wrlock(pthread_rwlock_t *rw);

/* Workers holding a turn now (tests and diagnostics). */
int pool_active_workers(void);
/* Replaces POOL_SLICE_US (tests: 0 makes every wait give the turn up). */
void pool_set_slice_us(long us);

#endif
