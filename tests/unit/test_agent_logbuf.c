/* SPDX-License-Identifier: MPL-2.0 */
/* Unit tests for agent/logbuf: info lines wait for the loop turn, warn lines flush, order kept. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/logbuf.h"
#include "common/log.h"

static char out_text[65536];

/* The log file's whole content, as text. */
static const char *out_read(FILE *f)
{
    fflush(f);
    long n = ftell(f);
    rewind(f);
    size_t got = fread(out_text, 1, sizeof(out_text) - 1, f);
    out_text[got] = '\0';
    fseek(f, n, SEEK_SET);
    return out_text;
}

/* Each test: a log file and an event base with the log sink started on it. */
struct fixture {
    FILE *f;
    struct event_base *base;
};

static int fixture_setup(void **state)
{
    static struct fixture fx;
    fx.f = tmpfile();
    fx.base = event_base_new();
    if (fx.f == NULL || fx.base == NULL) {
        return -1;
    }
    log_init(fx.f, LOGL_DEBUG);
    if (logbuf_start(fx.base) != ERR_OK) {
        return -1;
    }
    *state = &fx;
    return 0;
}

static int fixture_teardown(void **state)
{
    struct fixture *fx = *state;
    logbuf_stop();
    event_base_free(fx->base);
    log_init(NULL, LOGL_INFO);
    fclose(fx->f);
    return 0;
}

static void test_batched_per_turn(void **state)
{
    struct fixture *fx = *state;
    FILE *f = fx->f;
    log_kv(LOGL_INFO, "first", NULL);
    log_kv(LOGL_DEBUG, "second", NULL);
    assert_string_equal(out_read(f), ""); /* nothing written before the loop turn */
    event_base_loop(fx->base, EVLOOP_NONBLOCK);
    const char *t = out_read(f);
    const char *a = strstr(t, "\"first\"");
    const char *b = strstr(t, "\"second\"");
    assert_non_null(a);
    assert_non_null(b);
    assert_true(a < b);
}

/* libevent's own warnings become JSON lines (not "[warn]" text), at most one a second. */
static void test_libevent_warnings(void **state)
{
    struct fixture *fx = *state;
    /* A public call that makes libevent warn: fcntl on fd -1. */
    assert_int_equal(evutil_make_socket_nonblocking(-1), -1);
    assert_int_equal(evutil_make_socket_nonblocking(-1), -1);
    const char *t = out_read(fx->f);
    const char *a = strstr(t, "\"@message\":\"libevent\"");
    assert_non_null(a);
    assert_non_null(strstr(t, "\"@level\":\"warn\""));
    assert_non_null(strstr(t, "fcntl"));
    assert_null(strstr(a + 1, "\"@message\":\"libevent\"")); /* the second one held back */
    assert_null(strstr(t, "[warn]"));
}

static void test_warn_flushes_in_order(void **state)
{
    struct fixture *fx = *state;
    FILE *f = fx->f;
    log_kv(LOGL_INFO, "before", NULL);
    log_kv(LOGL_WARN, "alarm", NULL);
    const char *t = out_read(f); /* no loop turn: the warn line wrote both */
    const char *a = strstr(t, "\"before\"");
    const char *b = strstr(t, "\"alarm\"");
    assert_non_null(a);
    assert_non_null(b);
    assert_true(a < b);
    log_kv(LOGL_INFO, "at stop", NULL);
    logbuf_stop(); /* writes what is pending */
    assert_non_null(strstr(out_read(f), "\"at stop\""));
    log_kv(LOGL_INFO, "direct", NULL); /* no sink any more: written at once */
    assert_non_null(strstr(out_read(f), "\"direct\""));
}

static void test_stop_without_start(void **state)
{
    (void)state;
    logbuf_stop();
    logbuf_stop();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_batched_per_turn, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_warn_flushes_in_order, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_libevent_warnings, fixture_setup, fixture_teardown),
        cmocka_unit_test(test_stop_without_start),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
