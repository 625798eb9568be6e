/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for agent/upstream.c's transfer lifecycle against a scripted
 * HTTP/1.1 server on loopback (a thread here):
 * - on_data aborting while a paused transfer is resumed (curl 7.88 hands the
 *   held data back inside curl_easy_pause) ends the transfer at once with an
 *   error, instead of leaving it unwatched until a deadline;
 * - a cancel from on_data during that resume: on_done never comes;
 * - a cancel from on_status for a response without a body (204): no use
 *   after free (run under ASan), on_done never comes.
 * Each run is guarded by a timer: a transfer left hanging (or an on_done that
 * comes when it should not) fails the test without any timing measurement.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/upstream.h"

static int srv_fd = -1;
static int srv_port;

/* One connection: the request line's path picks the answer; the socket then stays open. */
static void *srv_conn(void *arg)
{
    int c = (int)(intptr_t)arg;
    char req[4096];
    size_t n = 0;
    while (n < sizeof(req) - 1) {
        ssize_t r = recv(c, req + n, sizeof(req) - 1 - n, 0);
        if (r <= 0) {
            break;
        }
        n += (size_t)r;
        req[n] = '\0';
        if (strstr(req, "\r\n\r\n") != NULL) {
            break;
        }
    }
    static const char two[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                              "Transfer-Encoding: chunked\r\n\r\n"
                              "9\r\ndata: a\n\n\r\n9\r\ndata: b\n\n\r\n";
    static const char empty[] = "HTTP/1.1 204 No Content\r\n\r\n";
    const char *out = strstr(req, "GET /two ") != NULL ? two : empty;
    (void)send(c, out, strlen(out), MSG_NOSIGNAL);
    /* Silence: the client decides when the transfer ends. */
    char sink[256];
    while (recv(c, sink, sizeof(sink), 0) > 0) {
    }
    close(c);
    return NULL;
}

static void *srv_main(void *arg)
{
    (void)arg;
    for (;;) {
        int c = accept(srv_fd, NULL, NULL);
        if (c < 0) {
            return NULL;
        }
        pthread_t t;
        if (pthread_create(&t, NULL, srv_conn, (void *)(intptr_t)c) == 0) {
            pthread_detach(t);
        } else {
            close(c);
        }
    }
}

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    srv_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (srv_fd < 0 || bind(srv_fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        listen(srv_fd, 16) != 0 || getsockname(srv_fd, (struct sockaddr *)&a, &len) != 0) {
        return -1;
    }
    srv_port = ntohs(a.sin_port);
    pthread_t t;
    if (pthread_create(&t, NULL, srv_main, NULL) != 0) {
        return -1;
    }
    pthread_detach(t);
    return 0;
}

enum mode { ABORT_ON_RESUME, CANCEL_ON_RESUME, CANCEL_IN_STATUS };

struct run {
    enum mode mode;
    struct event_base *base;
    struct upstream *up;
    struct upstream_xfer *x;
    struct event *resume;
    int n_data;
    int n_done;
    enum err done_err;
    bool guard_fired;
};

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct run *r = arg;
    upstream_xfer_resume(r->x);
}

static void on_status(void *arg, long status)
{
    struct run *r = arg;
    (void)status;
    if (r->mode == CANCEL_IN_STATUS) {
        upstream_xfer_cancel(r->x);
        r->x = NULL;
    }
}

static enum upstream_data_rc on_data(void *arg, const char *data, size_t len)
{
    struct run *r = arg;
    (void)data;
    (void)len;
    if (++r->n_data == 1) {
        /* Hold the rest back, resume on the next loop turn (as the proxy does on drain). */
        struct timeval tv = {0, 10000};
        evtimer_add(r->resume, &tv);
        return UPSTREAM_PAUSE;
    }
    if (r->mode == CANCEL_ON_RESUME) {
        upstream_xfer_cancel(r->x);
        r->x = NULL;
        return UPSTREAM_CONTINUE;
    }
    return UPSTREAM_ABORT;
}

static void on_done(void *arg, enum err e, long status)
{
    struct run *r = arg;
    (void)status;
    r->n_done++;
    r->done_err = e;
    r->x = NULL;
    event_base_loopexit(r->base, NULL);
}

static void guard_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct run *r = arg;
    r->guard_fired = true;
    event_base_loopexit(r->base, NULL);
}

static void run_one(struct run *r, const char *path, long deadline_ms, int guard_s)
{
    r->base = event_base_new();
    r->up = upstream_new(r->base, 0);
    r->resume = evtimer_new(r->base, resume_cb, r);
    struct event *guard = evtimer_new(r->base, guard_cb, r);
    assert_non_null(r->up);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", srv_port, path);
    struct upstream_opts o = {.connect_timeout_ms = deadline_ms,
                              .first_byte_timeout_ms = deadline_ms,
                              .idle_timeout_ms = deadline_ms,
                              .allow_http = true};
    static const struct upstream_cbs cbs = {on_status, on_data, on_done};
    assert_int_equal(upstream_xfer_start(r->up, "GET", url, NULL, 0, NULL, &o, &cbs, r, &r->x),
                     ERR_OK);
    struct timeval tv = {guard_s, 0};
    evtimer_add(guard, &tv);
    event_base_dispatch(r->base);
    upstream_xfer_cancel(r->x);
    event_free(guard);
    event_free(r->resume);
    upstream_free(r->up);
    event_base_free(r->base);
}

/* Before: the abort inside the resume was lost and the transfer waited for its 30 s deadline. */
static void test_abort_during_resume_ends_transfer(void **state)
{
    (void)state;
    struct run r = {.mode = ABORT_ON_RESUME};
    run_one(&r, "/two", 30000, 5);
    assert_false(r.guard_fired);
    assert_int_equal(r.n_data, 2);
    assert_int_equal(r.n_done, 1);
    assert_int_not_equal(r.done_err, ERR_OK);
    assert_int_not_equal(r.done_err, ERR_TIMEOUT);
}

/*
 * A cancel from on_data during the resume: the transfer ends, on_done never
 * comes, not even when its deadline (1 s, inside the 3 s guard) would have
 * passed. Before, the deadline still fired and called on_done.
 */
static void test_cancel_during_resume_no_done(void **state)
{
    (void)state;
    struct run r = {.mode = CANCEL_ON_RESUME};
    run_one(&r, "/two", 1000, 3);
    assert_int_equal(r.n_data, 2);
    assert_int_equal(r.n_done, 0);
}

/* A cancel from on_status of a response without a body (no on_data): freed once, no on_done. */
static void test_cancel_in_status_without_body(void **state)
{
    (void)state;
    struct run r = {.mode = CANCEL_IN_STATUS};
    run_one(&r, "/empty", 30000, 2);
    assert_int_equal(r.n_done, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_abort_during_resume_ends_transfer),
        cmocka_unit_test(test_cancel_during_resume_no_done),
        cmocka_unit_test(test_cancel_in_status_without_body),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
