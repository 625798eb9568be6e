/* SPDX-License-Identifier: MPL-2.0 */
/* Unit tests for common/: err, buf (caps, wiping), secret (secure heap), log (JSON shape), utf8. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/azure.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"
#include "common/secret.h"
#include "common/utf8.h"

static void test_err_names(void **state)
{
    (void)state;
    assert_string_equal(err_name(ERR_NOMEM), "NOMEM");
    assert_string_equal(err_str(ERR_OK), "success");
    assert_string_equal(err_name((enum err)9999), "UNKNOWN");
    for (int e = 0; e < ERR__COUNT; e++) {
        assert_non_null(err_str((enum err)e));
        assert_true(strlen(err_name((enum err)e)) > 0);
    }
}

static void test_buf_cap_at_and_past_limit(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 16);
    assert_int_equal(buf_append(&b, "0123456789abcdef", 16), ERR_OK); /* at the limit */
    assert_int_equal(b.len, 16);
    assert_int_equal(b.data[16], '\0');
    assert_int_equal(buf_append(&b, "x", 1), ERR_TOOBIG); /* one past */
    assert_int_equal(b.len, 0);
    assert_null(b.data);
    buf_done(&b);
}

static void test_buf_printf_grows(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 4096);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(buf_printf(&b, "%d,", i), ERR_OK);
    }
    assert_true(strncmp(b.data, "0,1,2,", 6) == 0);
    char big[1000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(buf_printf(&b, "%s", big), ERR_OK);
    assert_int_equal(b.data[b.len - 1], 'a');
    size_t len = 0;
    char *p = buf_take(&b, &len);
    assert_non_null(p);
    assert_int_equal(strlen(p), len);
    free(p);
    assert_null(b.data);
    buf_done(&b);
}

static void test_buf_printf_past_cap(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 300);
    char big[400];
    memset(big, 'b', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(buf_printf(&b, "%s", big), ERR_TOOBIG);
    buf_done(&b);
}

/* True when none of the n bytes at p is set. */
static bool all_zero(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != 0) {
            return false;
        }
    }
    return true;
}

/*
 * buf_reset wipes every byte that held data since the last wipe, also when
 * len was shortened by hand (proxy.c keeps only an unfinished frame), and no
 * more: after one 1 MiB event, each later small reset must not wipe the
 * whole allocation again (it did: every SSE event paid a 1-16 MiB memset).
 */
static void test_buf_reset_wipes_what_was_used(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 4u << 20);
    static char big[1 << 20];
    memset(big, 'k', sizeof(big));
    assert_int_equal(buf_append(&b, big, sizeof(big)), ERR_OK);
    size_t alloc = b.alloc;
    b.len = 10; /* shortened by hand, as a caller keeping a tail does */
    buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_true(all_zero(b.data, alloc));
    /* A small use after the large one: only its own bytes are wiped. */
    assert_int_equal(buf_append(&b, "tail", 4), ERR_OK);
    b.data[alloc - 1] = 'S'; /* a sentinel past anything used since the wipe */
    buf_reset(&b);
    assert_true(all_zero(b.data, 5));
    assert_int_equal(b.data[alloc - 1], 'S');
    b.data[alloc - 1] = 0;
    /* Growth copies to a fresh block: its unused part is not counted. */
    assert_int_equal(buf_append(&b, big, sizeof(big)), ERR_OK);
    assert_int_equal(buf_append(&b, big, sizeof(big)), ERR_OK);
    assert_true(b.alloc > alloc);
    buf_reset(&b);
    assert_true(all_zero(b.data, b.alloc));
    buf_done(&b);
}

static void test_secret_roundtrip(void **state)
{
    (void)state;
    assert_int_equal(secret_heap_init(1 << 20), ERR_OK);
    struct secret *a = secret_from("sk-canary-123", 13);
    struct secret *b = secret_from("sk-canary-123", 13);
    struct secret *c = secret_from("sk-canary-124", 13);
    assert_non_null(a);
    assert_int_equal(a->len, 13);
    assert_int_equal(a->data[13], '\0');
    assert_true(secret_equal(a, b));
    assert_false(secret_equal(a, c));
    secret_free(&a);
    assert_null(a);
    secret_free(&a); /* idempotent */
    secret_free(&b);
    secret_free(&c);
}

static void test_secret_limits(void **state)
{
    (void)state;
    assert_int_equal(secret_heap_init(1 << 20), ERR_OK);
    struct secret *s = secret_new((size_t)SECRET_MAX_LEN); /* at the limit */
    assert_non_null(s);
    secret_free(&s);
    assert_null(secret_new(SECRET_MAX_LEN + 1)); /* one past */
}

static void test_log_json_shape(void **state)
{
    (void)state;
    char path[] = "/tmp/byok-logtest-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w+");
    assert_non_null(f);
    log_init(f, LOGL_INFO);
    log_kv(LOGL_DEBUG, "hidden", NULL);
    log_kv(LOGL_INFO, "hello \"world\"\n", "key", "va\x01lue", "nothing", NULL, NULL);
    fflush(f);
    rewind(f);
    char line[LOG_MAX_LINE + 8];
    assert_non_null(fgets(line, sizeof(line), f));
    json_error_t jerr;
    json_t *j = json_loads(line, 0, &jerr);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "@level")), "info");
    assert_string_equal(json_string_value(json_object_get(j, "@message")), "hello \"world\"\n");
    assert_string_equal(json_string_value(json_object_get(j, "key")), "va\x01lue");
    assert_true(json_is_null(json_object_get(j, "nothing")));
    const char *ts = json_string_value(json_object_get(j, "@timestamp"));
    /* 2006-01-02T15:04:05.000000Z07:00 with Z for UTC: 27 characters. */
    assert_int_equal(strlen(ts), 27);
    assert_int_equal(ts[26], 'Z');
    json_decref(j);
    assert_null(fgets(line, sizeof(line), f)); /* the debug line was not written */

    /* A line over the cap is cut but stays one valid JSON object. */
    rewind(f);
    assert_int_equal(ftruncate(fd, 0), 0);
    char *big = malloc((size_t)LOG_MAX_LINE * 2);
    assert_non_null(big);
    memset(big, 'x', LOG_MAX_LINE * 2 - 1);
    big[LOG_MAX_LINE * 2 - 1] = '\0';
    log_kv(LOGL_ERROR, big, NULL);
    free(big);
    fflush(f);
    rewind(f);
    char *buf2 = malloc((size_t)LOG_MAX_LINE * 2);
    assert_non_null(fgets(buf2, LOG_MAX_LINE * 2, f));
    j = json_loads(buf2, 0, &jerr);
    assert_non_null(j);
    json_decref(j);
    free(buf2);
    fclose(f);
    unlink(path);
    log_init(NULL, LOGL_INFO);
}

/* Writes one line at info level through a temporary file and returns it parsed (NULL: not JSON). */
static json_t *log_one(const char *msg, const char *k1, const char *v1, const char *k2,
                       const char *v2)
{
    char path[] = "/tmp/byok-logtest-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w+");
    assert_non_null(f);
    log_init(f, LOGL_INFO);
    log_kv(LOGL_INFO, msg, k1, v1, k2, v2, NULL);
    log_init(NULL, LOGL_INFO);
    fflush(f);
    rewind(f);
    char *line = malloc((size_t)LOG_MAX_LINE * 2);
    assert_non_null(line);
    assert_non_null(fgets(line, LOG_MAX_LINE * 2, f));
    size_t n = strlen(line);
    assert_true(n <= LOG_MAX_LINE);
    assert_int_equal(line[n - 1], '\n');
    json_t *j = json_loads(line, 0, NULL); /* jansson refuses invalid UTF-8 */
    free(line);
    fclose(f);
    unlink(path);
    return j;
}

/* Invalid UTF-8 in a value (a provider's error text, a header) is written as U+FFFD. */
static void test_log_invalid_utf8(void **state)
{
    (void)state;
    json_t *j = log_one("m\xff", "detail",
                        "a\xc3(b\xed\xa0\x80"
                        "c\xf4\x90\x80\x80\xc3",
                        "ok", "\xc3\xa9\xe2\x80\xa8\xf0\x9f\x98\x80");
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "@message")), "m\xef\xbf\xbd");
    assert_string_equal(json_string_value(json_object_get(j, "detail")),
                        "a\xef\xbf\xbd(b\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                        "c\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    assert_string_equal(json_string_value(json_object_get(j, "ok")),
                        "\xc3\xa9\xe2\x80\xa8\xf0\x9f\x98\x80");
    json_decref(j);
}

/* A cut line keeps whole characters and escapes, every key whole, and the timestamp. */
static void test_log_cut_whole(void **state)
{
    (void)state;
    size_t big = (size_t)LOG_MAX_LINE * 2;
    char *s = malloc(big + 1);
    assert_non_null(s);
    for (int shift = 0; shift < 6; shift++) {
        /* Two- and three-byte characters and 6-byte escapes at every alignment. */
        const char *units[] = {"\xc3\xa9", "\xe2\x82\xac", "\x01", "\""};
        for (size_t u = 0; u < 4; u++) {
            size_t n = 0;
            for (int i = 0; i < shift; i++) {
                s[n++] = 'x';
            }
            size_t ul = strlen(units[u]);
            while (n + ul <= big) {
                memcpy(s + n, units[u], ul);
                n += ul;
            }
            s[n] = '\0';
            json_t *j = log_one("m", "detail", s, "after", "v");
            assert_non_null(j);
            assert_int_equal(strlen(json_string_value(json_object_get(j, "@timestamp"))), 27);
            assert_null(json_object_get(j, "after"));
            json_decref(j);
            j = log_one(s, "after", "v", NULL, NULL);
            assert_non_null(j);
            assert_int_equal(strlen(json_string_value(json_object_get(j, "@timestamp"))), 27);
            json_decref(j);
        }
    }
    /* A value that ends just at the cap: the next key is left out, not written cut or empty. */
    for (size_t fill = 16200; fill < 16300; fill++) {
        memset(s, 'x', fill);
        s[fill] = '\0';
        json_t *j = log_one("m", "k", s, "key2", "v");
        assert_non_null(j);
        const char *key;
        json_t *v;
        json_object_foreach(j, key, v)
        {
            assert_true(strcmp(key, "@level") == 0 || strcmp(key, "@message") == 0 ||
                        strcmp(key, "@timestamp") == 0 || strcmp(key, "k") == 0 ||
                        strcmp(key, "key2") == 0);
        }
        if (json_object_get(j, "key2") != NULL) {
            assert_string_equal(json_string_value(json_object_get(j, "key2")), "v");
        }
        json_decref(j);
    }
    free(s);
}

/* RFC 3629's table: the edges of each row, and one past them. */
/* A pipe whose write end is non-blocking and full; its read end is drained by the tests. */
struct full_pipe {
    int fds[2];
    FILE *w;
    size_t filled; /* bytes written to fill it */
};

static void full_pipe_open(struct full_pipe *fp)
{
    assert_int_equal(pipe(fp->fds), 0);
    assert_int_equal(fcntl(fp->fds[1], F_SETFL, O_NONBLOCK), 0);
    char block[4096];
    memset(block, 'f', sizeof(block));
    fp->filled = 0;
    ssize_t n;
    while ((n = write(fp->fds[1], block, sizeof(block))) > 0) {
        fp->filled += (size_t)n;
    }
    assert_int_equal(errno, EAGAIN);
    fp->w = fdopen(fp->fds[1], "w");
    assert_non_null(fp->w);
    log_init(fp->w, LOGL_INFO);
}

/* Reads the pipe until it is empty (non-blocking); returns the bytes read into out. */
static size_t drain_pipe(int fd, char *out, size_t size)
{
    int fl = fcntl(fd, F_GETFL);
    (void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    size_t got = 0;
    char tmp[4096];
    for (;;) {
        ssize_t n = read(fd, tmp, sizeof(tmp));
        if (n <= 0) {
            break;
        }
        size_t keep = (size_t)n < size - got ? (size_t)n : size - got;
        memcpy(out + got, tmp, keep);
        got += keep;
    }
    (void)fcntl(fd, F_SETFL, fl);
    return got;
}

/* Reads exactly the filler, 20 ms later: the line written meanwhile stays for the test. */
static void *drain_later(void *arg)
{
    struct full_pipe *fp = arg;
    usleep(20 * 1000);
    char tmp[4096];
    for (size_t left = fp->filled; left > 0;) {
        ssize_t n = read(fp->fds[0], tmp, left < sizeof(tmp) ? left : sizeof(tmp));
        if (n <= 0) {
            break;
        }
        left -= (size_t)n;
    }
    return NULL;
}

/*
 * A full non-blocking log fd (a parent's pipe) is waited for: the line
 * arrives whole. It was dropped at the first EAGAIN.
 */
static void test_log_waits_for_full_pipe(void **state)
{
    (void)state;
    struct full_pipe fp;
    full_pipe_open(&fp);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, drain_later, &fp), 0);
    errno = ENOENT;
    log_write_raw("whole line\n", 11);
    assert_int_equal(errno, ENOENT); /* kept for the caller */
    assert_int_equal(pthread_join(th, NULL), 0);
    char got[64];
    size_t n = drain_pipe(fp.fds[0], got, sizeof(got));
    assert_int_equal(n, 11);
    assert_memory_equal(got, "whole line\n", 11);
    log_init(NULL, LOGL_INFO);
    fclose(fp.w);
    close(fp.fds[0]);
}

/*
 * A line written in part before the reader stopped is ended by the next
 * write, so the next line starts on its own line.
 */
static void test_log_torn_line_ended(void **state)
{
    (void)state;
    struct full_pipe fp;
    full_pipe_open(&fp);
    char page[4096];
    assert_int_equal(read(fp.fds[0], page, sizeof(page)), (ssize_t)sizeof(page));
    static char line[3 * 4096];
    memset(line, 'L', sizeof(line) - 1);
    line[sizeof(line) - 1] = '\n';
    log_write_raw(line, sizeof(line)); /* one page fits, then the reader never comes */
    /* Still full: after that give-up this write is tried once, without another 0.5 s wait. */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    log_write_raw(line, sizeof(line));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long waited_ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(waited_ms < 400);
    static char got[1 << 17];
    drain_pipe(fp.fds[0], got, sizeof(got));
    log_write_raw("next\n", 5);
    size_t n = drain_pipe(fp.fds[0], got, sizeof(got));
    assert_int_equal(n, 6);
    assert_memory_equal(got, "\nnext\n", 6);
    log_init(NULL, LOGL_INFO);
    fclose(fp.w);
    close(fp.fds[0]);
}

static void test_utf8_char_len(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t len;
    } cases[] = {
        {"", 0},
        {"a", 1},
        {"\x7f", 1},
        {"\x80", 0},
        {"\xc1\xbf", 0}, /* overlong */
        {"\xc2\x80", 2},
        {"\xdf\xbf", 2},
        {"\xc2", 0},
        {"\xc2x", 0},
        {"\xe0\x9f\xbf", 0}, /* overlong */
        {"\xe0\xa0\x80", 3},
        {"\xed\x9f\xbf", 3},
        {"\xed\xa0\x80", 0}, /* surrogate */
        {"\xef\xbf\xbf", 3},
        {"\xe1\x80", 0},
        {"\xf0\x8f\xbf\xbf", 0}, /* overlong */
        {"\xf0\x90\x80\x80", 4},
        {"\xf4\x8f\xbf\xbf", 4},
        {"\xf4\x90\x80\x80", 0}, /* past U+10FFFF */
        {"\xf5\x80\x80\x80", 0},
        {"\xf0\x90\x80", 0},
        {"\xff", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(utf8_char_len(cases[i].s), cases[i].len);
    }
    char out[3];
    assert_int_equal(utf8_put_replacement(out), 3);
    assert_memory_equal(out, "\xef\xbf\xbd", 3);
}

/* The rule the plugin (key metadata) and the agent (request URL) share. */
static void test_azure_name(void **state)
{
    (void)state;
    char max[AZURE_NAME_MAX + 2];
    memset(max, 'a', AZURE_NAME_MAX);
    max[AZURE_NAME_MAX] = '\0';
    const char *good[] = {"gpt-4o", "prod_east.v2", "2024-10-21", "a", "A.", max};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_true(azure_name_ok(good[i]));
    }
    max[AZURE_NAME_MAX] = 'a';
    max[AZURE_NAME_MAX + 1] = '\0';
    const char *bad[] = {NULL,  "",      ".",    "..",    ".hidden",    "a/b",
                         "a b", "a?x=1", "a%2e", "a\r\n", "d\xc3\xa9p", max};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_false(azure_name_ok(bad[i]));
    }
}

static void test_log_level_parse(void **state)
{
    (void)state;
    assert_int_equal(log_level_parse("warn"), LOGL_WARN);
    assert_int_equal(log_level_parse("off"), LOGL_OFF);
    assert_int_equal(log_level_parse("WARN"), -1);
    assert_int_equal(log_level_parse(NULL), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_err_names),
        cmocka_unit_test(test_buf_cap_at_and_past_limit),
        cmocka_unit_test(test_buf_printf_grows),
        cmocka_unit_test(test_buf_printf_past_cap),
        cmocka_unit_test(test_buf_reset_wipes_what_was_used),
        cmocka_unit_test(test_secret_roundtrip),
        cmocka_unit_test(test_secret_limits),
        cmocka_unit_test(test_log_json_shape),
        cmocka_unit_test(test_log_level_parse),
        cmocka_unit_test(test_log_invalid_utf8),
        cmocka_unit_test(test_log_cut_whole),
        cmocka_unit_test(test_log_waits_for_full_pipe),
        cmocka_unit_test(test_log_torn_line_ended),
        cmocka_unit_test(test_utf8_char_len),
        cmocka_unit_test(test_azure_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
