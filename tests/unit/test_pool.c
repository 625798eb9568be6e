/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for plugin/pool.c, the plugin's worker turn-taking. The pool is
 * process-wide, so one pool serves every test: its workers take jobs from a
 * queue while holding the turn, as rpc.c's workers wait in
 * grpc_completion_queue_next. Waits are bounded: a pool that fails to hand
 * the turn on makes a job wait out WAIT_S and fail instead of hanging.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "plugin/pool.h"

#define WAIT_S 5
#define MAX_JOBS 512

typedef void (*job_fn)(void *arg);
struct job {
    job_fn fn;
    void *arg;
};

static pthread_mutex_t q_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_cv = PTHREAD_COND_INITIALIZER;
static struct job q[MAX_JOBS];
static size_t q_head, q_tail;
static int jobs_done;

static void *worker(void *arg)
{
    (void)arg;
    for (;;) {
        pool_turn_take();
        pthread_mutex_lock(&q_mu);
        while (q_head == q_tail) {
            pthread_cond_wait(&q_cv, &q_mu);
        }
        struct job j = q[q_head++ % MAX_JOBS];
        pthread_mutex_unlock(&q_mu);
        j.fn(j.arg);
        pthread_mutex_lock(&q_mu);
        jobs_done++;
        pthread_cond_broadcast(&q_cv);
        pthread_mutex_unlock(&q_mu);
        pool_turn_end();
    }
    return NULL;
}

static void submit(job_fn fn, void *arg)
{
    pthread_mutex_lock(&q_mu);
    q[q_tail++ % MAX_JOBS] = (struct job){fn, arg};
    pthread_cond_broadcast(&q_cv);
    pthread_mutex_unlock(&q_mu);
}

static struct timespec deadline_in(int s)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += s;
    return t;
}

/* Waits until n jobs in all have finished; false after WAIT_S. */
static bool wait_done(int n)
{
    struct timespec until = deadline_in(WAIT_S);
    pthread_mutex_lock(&q_mu);
    while (jobs_done < n) {
        if (pthread_cond_timedwait(&q_cv, &q_mu, &until) != 0) {
            break;
        }
    }
    bool ok = jobs_done >= n;
    pthread_mutex_unlock(&q_mu);
    return ok;
}

/* A flag one job raises and another waits for. */
struct flag {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool up;
};

static void flag_raise(void *arg)
{
    struct flag *f = arg;
    pthread_mutex_lock(&f->mu);
    f->up = true;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static bool flag_wait(struct flag *f)
{
    struct timespec until = deadline_in(WAIT_S);
    pthread_mutex_lock(&f->mu);
    while (!f->up) {
        if (pthread_cond_timedwait(&f->cv, &f->mu, &until) != 0) {
            break;
        }
    }
    bool up = f->up;
    pthread_mutex_unlock(&f->mu);
    return up;
}

/* Waits until exactly one worker holds a turn (the others parked); false after WAIT_S. */
static bool settle(void)
{
    for (int i = 0; i < WAIT_S * 1000; i++) {
        if (pool_active_workers() == 1) {
            return true;
        }
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    return false;
}

/* ---- one holder at a time ---- */

static int in_job, max_in_job, max_active;

static void job_count(void *arg)
{
    (void)arg;
    int n = __atomic_add_fetch(&in_job, 1, __ATOMIC_SEQ_CST);
    if (n > max_in_job) {
        max_in_job = n;
    }
    int a = pool_active_workers();
    if (a > max_active) {
        max_active = a;
    }
    struct timespec ms = {0, 200000};
    nanosleep(&ms, NULL);
    __atomic_sub_fetch(&in_job, 1, __ATOMIC_SEQ_CST);
}

static void test_one_turn_holder(void **state)
{
    (void)state;
    assert_true(settle());
    max_active = max_in_job = 0;
    int before = jobs_done;
    for (int i = 0; i < 50; i++) {
        submit(job_count, NULL);
    }
    assert_true(wait_done(before + 50));
    assert_int_equal(max_in_job, 1);
    assert_int_equal(max_active, 1);
}

/* ---- a waiting job hands the queue on ---- */

struct waiter {
    struct flag *other; /* raised by a job submitted after this one */
    bool saw_other;
    bool overdue;       /* before the wait */
    bool overdue_after; /* after it: true once the job has given its turn up */
    int active_after;   /* workers holding a turn once this job is back */
};

static void job_wait_for_other(void *arg)
{
    struct waiter *w = arg;
    w->overdue = pool_turn_overdue();
    pool_block_begin();
    w->saw_other = flag_wait(w->other); /* the other job runs only if the turn was handed on */
    pool_block_end();
    w->overdue_after = pool_turn_overdue();
    /* Let the worker that took over finish its job and wait for the next one. */
    struct timespec t = {0, 20L * 1000 * 1000};
    nanosleep(&t, NULL);
    w->active_after = pool_active_workers();
}

/* Static: a job that outlives a failed test must not point into a returned stack frame. */
static struct flag other_flag = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false};
static struct waiter waiter;

static void run_waiter(void)
{
    other_flag.up = false;
    waiter.other = &other_flag;
    int before = jobs_done;
    submit(job_wait_for_other, &waiter);
    submit(flag_raise, &other_flag);
    assert_true(wait_done(before + 2));
}

/* The pool starts with one worker: the first wait also makes it grow. */
static void test_wait_hands_turn_on(void **state)
{
    (void)state;
    pool_set_slice_us(60L * 1000 * 1000); /* never past its slice here */
    waiter = (struct waiter){0};
    run_waiter();
    pool_set_slice_us(POOL_SLICE_US);
    struct waiter w = waiter;
    assert_true(w.saw_other);
    assert_false(w.overdue);
    /* Back within its slice, the job holds a turn again (the other worker may still hold one). */
    assert_false(w.overdue_after);
    assert_true(w.active_after == 1 || w.active_after == 2);
    assert_true(settle()); /* after their events one of them parks */
}

/* A job past its slice gives its turn up at its wait and finishes in the background. */
static void test_overdue_gives_turn_up(void **state)
{
    (void)state;
    assert_true(settle());
    pool_set_slice_us(0); /* every turn is past its slice */
    waiter = (struct waiter){0};
    run_waiter();
    pool_set_slice_us(POOL_SLICE_US);
    struct waiter w = waiter;
    assert_true(w.saw_other);
    assert_true(w.overdue);
    assert_true(w.overdue_after);
    assert_int_equal(w.active_after, 1); /* only the worker that took over; never parked by us */
    assert_true(settle());
}

/* A contended engine lock is a wait too. */
static pthread_mutex_t held = PTHREAD_MUTEX_INITIALIZER;

static void job_lock_held(void *arg)
{
    bool *got = arg;
    pool_mutex_lock(&held);
    *got = true;
    pthread_mutex_unlock(&held);
}

static bool lock_got;
static struct flag lock_flag = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false};

static void test_contended_lock_hands_turn_on(void **state)
{
    (void)state;
    pthread_mutex_lock(&held);
    int before = jobs_done;
    submit(job_lock_held, &lock_got);
    /* The main thread holds the lock until the next job runs: only another worker can run it. */
    submit(flag_raise, &lock_flag);
    bool ran = flag_wait(&lock_flag);
    pthread_mutex_unlock(&held);
    assert_true(ran);
    assert_true(wait_done(before + 2));
    assert_true(lock_got);
}

/* Off the pool the hints do nothing and the locks still lock. */
static void test_off_pool_noops(void **state)
{
    (void)state;
    assert_false(pool_turn_overdue());
    int active = pool_active_workers();
    pool_block_begin();
    pool_block_begin();
    pool_block_end();
    pool_block_end();
    assert_int_equal(pool_active_workers(), active);
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pool_mutex_lock(&mu);
    assert_int_not_equal(pthread_mutex_trylock(&mu), 0);
    pthread_mutex_unlock(&mu);
    pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
    pool_rwlock_rdlock(&rw);
    pool_rwlock_rdlock(&rw); /* readers share */
    assert_int_not_equal(pthread_rwlock_trywrlock(&rw), 0);
    pthread_rwlock_unlock(&rw);
    pthread_rwlock_unlock(&rw);
    pool_rwlock_wrlock(&rw);
    assert_int_not_equal(pthread_rwlock_tryrdlock(&rw), 0);
    pthread_rwlock_unlock(&rw);
}

static void *writer_thread(void *arg)
{
    pthread_rwlock_t *rw = arg;
    pool_rwlock_wrlock(rw);
    pthread_rwlock_unlock(rw);
    return NULL;
}

/*
 * pool_rwlock_init's lock is writer-preferring: once a writer waits, a new
 * reader is held back (glibc's default lets it in, and overlapping readers
 * starve the writer: a rotate-root switch or clean-up under steady cold reads).
 */
static void test_rwlock_writer_preferred(void **state)
{
    (void)state;
    pthread_rwlock_t rw;
    assert_int_equal(pool_rwlock_init(&rw), 0);
    pool_rwlock_rdlock(&rw);
    pthread_t w;
    assert_int_equal(pthread_create(&w, NULL, writer_thread, &rw), 0);
    /* Until the writer is queued a new reader gets in; after, never. Up to 10 s for it to queue. */
    bool held_back = false;
    for (int i = 0; i < 10000 && !held_back; i++) {
        if (pthread_rwlock_tryrdlock(&rw) == 0) {
            pthread_rwlock_unlock(&rw);
            struct timespec ms = {0, 1000000L};
            nanosleep(&ms, NULL);
        } else {
            held_back = true;
        }
    }
    pthread_rwlock_unlock(&rw);
    assert_int_equal(pthread_join(w, NULL), 0);
    assert_true(held_back);
    pthread_rwlock_destroy(&rw);
}

static int setup(void **state)
{
    (void)state;
    return pool_start(1, worker, (size_t)256 * 1024);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_off_pool_noops),
        cmocka_unit_test(test_rwlock_writer_preferred),
        cmocka_unit_test(test_one_turn_holder),
        cmocka_unit_test(test_wait_hands_turn_on),
        cmocka_unit_test(test_overdue_gives_turn_up),
        cmocka_unit_test(test_contended_lock_hands_turn_on),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
