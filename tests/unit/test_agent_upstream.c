/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for agent/upstream.c's transfer lifecycle against a scripted
 * HTTP/1.1 server on loopback (a thread here):
 * - on_data aborting while a paused transfer is resumed (curl 7.88 hands the
 *   held data back inside curl_easy_pause) ends the transfer at once with an
 *   error, instead of leaving it unwatched until a deadline;
 * - a cancel from on_data during that resume: on_done never comes;
 * - a cancel from on_status for a response without a body (204): no use
 *   after free (run under ASan), on_done never comes;
 * - a drain from on_data (a stream's end marker): on_done never comes, the
 *   rest of the body is read so that the next transfer reuses the
 *   connection, and a body that does not end is dropped within
 *   UPSTREAM_MAX_DRAIN_MS;
 * - every request asks for identity (Accept-Encoding), and a reply's
 *   Content-Encoding other than identity is named by upstream_xfer_coding.
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
static pthread_mutex_t srv_mu = PTHREAD_MUTEX_INITIALIZER;
static int srv_accepts;           /* connections accepted so far */
static bool srv_identity_missing; /* a request came without Accept-Encoding: identity */

/* The scripted answers, by request path; keep: the connection serves another request after. */
static const struct {
    const char *path;
    const char *answer;
    bool keep;
} srv_answers[] = {
    {"/two",
     "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
     "9\r\ndata: a\n\n\r\n9\r\ndata: b\n\n\r\n",
     false},
    /* A whole stream: the end marker, then (a separate send) the body's last chunk. */
    {"/done",
     "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
     "9\r\ndata: a\n\n\r\ne\r\ndata: [DONE]\n\n\r\n",
     true},
    {"/gzip",
     "HTTP/1.1 200 OK\r\nContent-Encoding: identity\r\nContent-Encoding: GZIP\r\n"
     "Content-Length: 2\r\n\r\nxx",
     true},
    {"/identity", "HTTP/1.1 200 OK\r\nContent-Encoding: identity\r\nContent-Length: 2\r\n\r\nxx",
     true},
    {"/other", "HTTP/1.1 200 OK\r\nContent-Encoding: x-secret-sauce\r\nContent-Length: 2\r\n\r\nxx",
     true},
    {"/empty", "HTTP/1.1 204 No Content\r\n\r\n", false},
};

/* One connection: each request line's path picks the answer; the socket then stays open. */
static void *srv_conn(void *arg)
{
    int c = (int)(intptr_t)arg;
    bool keep = true;
    while (keep) {
        char req[4096];
        size_t n = 0;
        req[0] = '\0';
        while (n < sizeof(req) - 1 && strstr(req, "\r\n\r\n") == NULL) {
            ssize_t r = recv(c, req + n, sizeof(req) - 1 - n, 0);
            if (r <= 0) {
                close(c);
                return NULL;
            }
            n += (size_t)r;
            req[n] = '\0';
        }
        size_t i = 0;
        while (i + 1 < sizeof(srv_answers) / sizeof(srv_answers[0])) {
            char line[64];
            snprintf(line, sizeof(line), "GET %s ", srv_answers[i].path);
            if (strstr(req, line) != NULL) {
                break;
            }
            i++;
        }
        pthread_mutex_lock(&srv_mu);
        srv_identity_missing |= strstr(req, "\r\nAccept-Encoding: identity\r\n") == NULL;
        pthread_mutex_unlock(&srv_mu);
        const char *out = srv_answers[i].answer;
        (void)send(c, out, strlen(out), MSG_NOSIGNAL);
        keep = srv_answers[i].keep;
        if (strcmp(srv_answers[i].path, "/done") == 0) {
            usleep(20000);
            (void)send(c, "0\r\n\r\n", 5, MSG_NOSIGNAL);
        }
    }
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
        pthread_mutex_lock(&srv_mu);
        srv_accepts++;
        pthread_mutex_unlock(&srv_mu);
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

enum mode { ABORT_ON_RESUME, CANCEL_ON_RESUME, CANCEL_IN_STATUS, DRAIN, PLAIN };

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
    const char *coding; /* upstream_xfer_coding in on_status */
    struct event *poll; /* DRAIN: ends the loop once no transfer is left */
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
    r->coding = upstream_xfer_coding(r->x);
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
    if (r->mode == PLAIN) {
        return UPSTREAM_CONTINUE;
    }
    if (r->mode == DRAIN) {
        r->n_data++;
        upstream_xfer_drain(r->x);
        r->x = NULL;
        struct timeval tv = {0, 5000};
        evtimer_add(r->poll, &tv);
        return UPSTREAM_CONTINUE;
    }
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

/* DRAIN: the loop ends when the drained transfer has ended. */
static void poll_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct run *r = arg;
    if (upstream_active(r->up) == 0) {
        event_base_loopexit(r->base, NULL);
        return;
    }
    struct timeval tv = {0, 5000};
    evtimer_add(r->poll, &tv);
}

/* Runs one transfer on r->up (made when NULL, kept for the caller when keep). */
static void run_on(struct run *r, const char *path, long deadline_ms, int guard_s, bool keep)
{
    if (r->up == NULL) {
        r->base = event_base_new();
        r->up = upstream_new(r->base, 0);
    }
    r->resume = evtimer_new(r->base, resume_cb, r);
    r->poll = evtimer_new(r->base, poll_cb, r);
    struct event *guard = evtimer_new(r->base, guard_cb, r);
    assert_non_null(r->up);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", srv_port, path);
    struct upstream_opts o = {.connect_timeout_ms = deadline_ms,
                              .first_byte_timeout_ms = deadline_ms,
                              .idle_timeout_ms = deadline_ms,
                              .allow_http = true};
    static const struct upstream_cbs cbs = {on_status, on_data, on_done, NULL};
    assert_int_equal(upstream_xfer_start(r->up, "GET", url, NULL, 0, NULL, &o, &cbs, r, &r->x),
                     ERR_OK);
    struct timeval tv = {guard_s, 0};
    evtimer_add(guard, &tv);
    event_base_dispatch(r->base);
    upstream_xfer_cancel(r->x);
    r->x = NULL;
    event_free(guard);
    event_free(r->resume);
    event_free(r->poll);
    if (!keep) {
        upstream_free(r->up);
        event_base_free(r->base);
        r->up = NULL;
    }
}

static void run_one(struct run *r, const char *path, long deadline_ms, int guard_s)
{
    run_on(r, path, deadline_ms, guard_s, false);
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

static int accepts(void)
{
    pthread_mutex_lock(&srv_mu);
    int n = srv_accepts;
    pthread_mutex_unlock(&srv_mu);
    return n;
}

/*
 * A drain at the end marker: no on_done; the body's last chunk (sent 20 ms
 * later) is read, so the next transfer to the server reuses the connection.
 */
static void test_drain_keeps_the_connection(void **state)
{
    (void)state;
    int before = accepts();
    struct run r = {.mode = DRAIN};
    run_on(&r, "/done", 30000, 3, true);
    assert_false(r.guard_fired);
    assert_int_equal(r.n_data, 1);
    assert_int_equal(r.n_done, 0);
    assert_int_equal(upstream_active(r.up), 0);
    r.mode = PLAIN;
    run_on(&r, "/done", 30000, 3, false);
    assert_int_equal(r.n_done, 1);
    assert_int_equal(r.done_err, ERR_OK);
    assert_int_equal(accepts() - before, 1);
}

/* A drained body that does not end (the server stalls): dropped within UPSTREAM_MAX_DRAIN_MS. */
static void test_drain_of_a_stall_ends(void **state)
{
    (void)state;
    struct run r = {.mode = DRAIN};
    run_one(&r, "/two", 30000, (int)(UPSTREAM_MAX_DRAIN_MS / 1000) + 2);
    assert_false(r.guard_fired);
    assert_int_equal(r.n_done, 0);
}

/* Identity asked for; a coding other than identity named, one not in the table as "". */
static void test_coding(void **state)
{
    (void)state;
    static const struct {
        const char *path;
        const char *coding;
    } cases[] = {{"/gzip", "gzip"}, {"/identity", NULL}, {"/other", ""}, {"/done", NULL}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct run r = {.mode = PLAIN};
        run_one(&r, cases[i].path, 30000, 3);
        assert_int_equal(r.n_done, 1);
        assert_int_equal(r.done_err, ERR_OK);
        if (cases[i].coding == NULL) {
            assert_null(r.coding);
        } else {
            assert_non_null(r.coding);
            assert_string_equal(r.coding, cases[i].coding);
        }
    }
    pthread_mutex_lock(&srv_mu);
    bool missing = srv_identity_missing;
    pthread_mutex_unlock(&srv_mu);
    assert_false(missing);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_abort_during_resume_ends_transfer),
        cmocka_unit_test(test_cancel_during_resume_no_done),
        cmocka_unit_test(test_cancel_in_status_without_body),
        cmocka_unit_test(test_drain_keeps_the_connection),
        cmocka_unit_test(test_drain_of_a_stall_ends),
        cmocka_unit_test(test_coding),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
