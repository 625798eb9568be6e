/* SPDX-License-Identifier: MPL-2.0 */
/* Unit tests for agent/sse: frames split anywhere, CR/LF variants, fields, limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/sse.h"

struct collected {
    char events[16][64];
    char data[16][256];
    size_t n;
    int stop_after; /* 0 = never */
    int end_after;  /* return SSE_END at this event; 0 = never */
};

static int collect(void *arg, const char *event, const char *data, size_t len)
{
    struct collected *c = arg;
    assert_true(c->n < 16);
    snprintf(c->events[c->n], sizeof(c->events[0]), "%s", event);
    assert_true(len < sizeof(c->data[0]));
    memcpy(c->data[c->n], data, len);
    c->data[c->n][len] = '\0';
    c->n++;
    if (c->end_after != 0 && (int)c->n == c->end_after) {
        return SSE_END;
    }
    return c->stop_after != 0 && (int)c->n >= c->stop_after;
}

static const char stream[] = "event: message_start\ndata: {\"a\":1}\n\n"
                             ": keep-alive comment\n\n"
                             "data: line1\r\ndata: line2\r\n\r\n"
                             "id: 7\rretry: 10\rdata:nospace\r\r"
                             "data: [DONE]\n\n";

static void check_stream(const struct collected *c)
{
    assert_int_equal(c->n, 4);
    assert_string_equal(c->events[0], "message_start");
    assert_string_equal(c->data[0], "{\"a\":1}");
    assert_string_equal(c->events[1], "message");
    assert_string_equal(c->data[1], "line1\nline2");
    assert_string_equal(c->data[2], "nospace");
    assert_string_equal(c->data[3], "[DONE]");
}

static void test_whole_stream(void **state)
{
    (void)state;
    struct collected c = {0};
    struct sse p;
    sse_init(&p, 4096, collect, &c);
    assert_int_equal(sse_feed(&p, stream, strlen(stream)), ERR_OK);
    assert_true(sse_idle(&p));
    check_stream(&c);
    sse_done(&p);
}

/* Every split point, and byte by byte: the result must not depend on chunking. */
static void test_split_everywhere(void **state)
{
    (void)state;
    size_t n = strlen(stream);
    for (size_t cut = 0; cut <= n; cut++) {
        struct collected c = {0};
        struct sse p;
        sse_init(&p, 4096, collect, &c);
        assert_int_equal(sse_feed(&p, stream, cut), ERR_OK);
        assert_int_equal(sse_feed(&p, stream + cut, n - cut), ERR_OK);
        check_stream(&c);
        sse_done(&p);
    }
    struct collected c = {0};
    struct sse p;
    sse_init(&p, 4096, collect, &c);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(sse_feed(&p, stream + i, 1), ERR_OK);
    }
    check_stream(&c);
    sse_done(&p);
}

/*
 * A leading UTF-8 BOM is dropped (WHATWG), also split across chunks, and only
 * at the very start; BOM-like bytes that turn out to be text stay text.
 * An empty chunk between a CR and its LF changes nothing.
 */
static void test_bom_and_empty_chunks(void **state)
{
    (void)state;
    static const char bom_stream[] = "\xEF\xBB\xBF"
                                     "data: first\n\ndata: second\n\n";
    size_t n = strlen(bom_stream);
    for (size_t cut = 0; cut <= n; cut++) {
        struct collected c = {0};
        struct sse p;
        sse_init(&p, 4096, collect, &c);
        assert_int_equal(sse_feed(&p, bom_stream, cut), ERR_OK);
        assert_int_equal(sse_feed(&p, "", 0), ERR_OK);
        assert_int_equal(sse_feed(&p, bom_stream + cut, n - cut), ERR_OK);
        assert_int_equal(c.n, 2);
        assert_string_equal(c.data[0], "first");
        assert_string_equal(c.data[1], "second");
        sse_done(&p);
    }
    /*
     * Two bytes of a BOM, then a field name: they belong to the name, which is
     * then no field the stream may hold: refused, nothing dispatched.
     */
    struct collected c = {0};
    struct sse p;
    sse_init(&p, 4096, collect, &c);
    assert_int_equal(sse_feed(&p, "\xEF\xBB", 2), ERR_OK);
    assert_false(sse_idle(&p)); /* the two bytes are held: not idle (found by fuzz_agent_sse) */
    assert_int_equal(sse_feed(&p, "data: x\n\ndata: y\n\n", 18), ERR_PROTO);
    assert_int_equal(c.n, 0);
    sse_done(&p);
    /* A whole BOM and nothing else: an empty stream, idle. */
    memset(&c, 0, sizeof(c));
    sse_init(&p, 4096, collect, &c);
    assert_int_equal(sse_feed(&p, "\xEF\xBB\xBF", 3), ERR_OK);
    assert_true(sse_idle(&p));
    sse_done(&p);
    /* CR, an empty chunk, LF: one line end, not two (no spurious empty event). */
    memset(&c, 0, sizeof(c));
    sse_init(&p, 4096, collect, &c);
    assert_int_equal(sse_feed(&p, "data: a\r", 8), ERR_OK);
    assert_int_equal(sse_feed(&p, "", 0), ERR_OK);
    assert_int_equal(sse_feed(&p, "\ndata: b\n\n", 10), ERR_OK);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.data[0], "a\nb");
    sse_done(&p);
}

static void test_partial_not_dispatched(void **state)
{
    (void)state;
    struct collected c = {0};
    struct sse p;
    sse_init(&p, 4096, collect, &c);
    assert_int_equal(sse_feed(&p, "data: {\"half\":", 14), ERR_OK);
    assert_int_equal(c.n, 0);
    assert_false(sse_idle(&p));
    assert_int_equal(sse_feed(&p, "1}\n", 3), ERR_OK);
    assert_int_equal(c.n, 0); /* a frame ends only at a blank line */
    assert_false(sse_idle(&p));
    assert_int_equal(sse_feed(&p, "\n", 1), ERR_OK);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.data[0], "{\"half\":1}");
    assert_true(sse_idle(&p));
    sse_done(&p);
}

static void test_data_limit(void **state)
{
    (void)state;
    /* max_data counts data bytes plus one newline per data line. */
    char line[64];
    struct collected c = {0};
    struct sse p;
    sse_init(&p, 11, collect, &c);
    snprintf(line, sizeof(line), "data: 0123456789\n\n"); /* 10 + 1 = 11: at the limit */
    assert_int_equal(sse_feed(&p, line, strlen(line)), ERR_OK);
    assert_int_equal(c.n, 1);
    sse_done(&p);
    sse_init(&p, 11, collect, &c);
    snprintf(line, sizeof(line), "data: 0123456789A\n\n"); /* one past */
    assert_int_equal(sse_feed(&p, line, strlen(line)), ERR_TOOBIG);
    sse_done(&p);
}

static void test_line_limit(void **state)
{
    (void)state;
    struct collected c = {0};
    struct sse p;
    sse_init(&p, SSE_MAX_LINE * 2, collect, &c);
    char *big = malloc(SSE_MAX_LINE + 2);
    memset(big, 'x', SSE_MAX_LINE + 1);
    /* NOLINTNEXTLINE(bugprone-not-null-terminated-result): bytes fed by length */
    memcpy(big, "data:", 5);
    /* A partial line of exactly SSE_MAX_LINE bytes is held; one more byte is refused. */
    assert_int_equal(sse_feed(&p, big, SSE_MAX_LINE), ERR_OK);
    assert_int_equal(sse_feed(&p, big, 1), ERR_TOOBIG);
    sse_done(&p);
    free(big);
}

static void test_event_name_limit(void **state)
{
    (void)state;
    char text[256];
    char name[SSE_MAX_EVENT_NAME + 2];
    memset(name, 'e', SSE_MAX_EVENT_NAME);
    name[SSE_MAX_EVENT_NAME] = '\0';
    struct collected c = {0};
    struct sse p;
    sse_init(&p, 4096, collect, &c);
    snprintf(text, sizeof(text), "event: %s\ndata: x\n\n", name);
    assert_int_equal(sse_feed(&p, text, strlen(text)), ERR_OK);
    assert_int_equal(c.n, 1);
    sse_done(&p);
    name[SSE_MAX_EVENT_NAME] = 'e';
    name[SSE_MAX_EVENT_NAME + 1] = '\0';
    sse_init(&p, 4096, collect, &c);
    snprintf(text, sizeof(text), "event: %s\ndata: x\n\n", name);
    assert_int_equal(sse_feed(&p, text, strlen(text)), ERR_TOOBIG);
    sse_done(&p);
}

static void test_callback_stops(void **state)
{
    (void)state;
    struct collected c = {.stop_after = 1};
    struct sse p;
    sse_init(&p, 4096, collect, &c);
    assert_int_equal(sse_feed(&p, "data: a\n\ndata: b\n\n", 18), ERR_CANCELLED);
    assert_int_equal(c.n, 1);
    sse_done(&p);
}

static void test_blank_without_data(void **state)
{
    (void)state;
    struct collected c = {0};
    struct sse p;
    sse_init(&p, 4096, collect, &c);
    /* An event name with no data dispatches nothing, and does not leak into the next frame. */
    assert_int_equal(sse_feed(&p, "event: ping\n\n\n\ndata: x\n\n", 24), ERR_OK);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.events[0], "message");
    sse_done(&p);
}

/*
 * sse_frame_end, as a passthrough uses it: forwarding the bytes up to it and
 * holding the rest, at every split of the stream in two chunks, forwards
 * exactly the stream up to its last blank line.
 */
static void test_frame_end_split_everywhere(void **state)
{
    (void)state;
    size_t n = strlen(stream);
    static const char tail[] = "data: part"; /* an unfinished frame after the last one */
    char all[512];
    snprintf(all, sizeof(all), "%s%s", stream, tail);
    size_t total = strlen(all);
    for (size_t cut = 0; cut <= total; cut++) {
        struct collected c = {0};
        struct sse p;
        sse_init(&p, 4096, collect, &c);
        char fwd[512];
        size_t fwd_len = 0, held = 0;
        const char *chunks[2] = {all, all + cut};
        size_t lens[2] = {cut, total - cut};
        for (size_t k = 0; k < 2; k++) {
            assert_int_equal(sse_feed(&p, chunks[k], lens[k]), ERR_OK);
            size_t end = sse_frame_end(&p);
            assert_true(end <= lens[k]);
            if (end > 0) { /* the held bytes, then the chunk up to its last frame end */
                memcpy(fwd + fwd_len, chunks[k] - held, held + end);
                fwd_len += held + end;
                held = 0;
            }
            held += lens[k] - end;
        }
        /* Forwarded: the whole frames (a CRLF's LF split off may wait with the tail). */
        assert_true(fwd_len == n || (fwd_len == n - 1 && all[n - 1] == '\n'));
        assert_memory_equal(fwd, all, fwd_len);
        assert_int_equal(held, total - fwd_len);
        check_stream(&c);
        sse_done(&p);
    }
}

/* A failing frame: sse_frame_end is where it starts, after the frames handled before it. */
static void test_frame_end_at_failure(void **state)
{
    (void)state;
    static const char three[] = "data: one\n\n: comment\n\ndata: two\n\ndata: three\n\n";
    struct collected c = {.stop_after = 2};
    struct sse p;
    sse_init(&p, 4096, collect, &c);
    assert_int_equal(sse_feed(&p, three, strlen(three)), ERR_CANCELLED);
    assert_int_equal(c.n, 2);
    /* "one" and the comment frame were handled; the frame of "two" failed. */
    assert_int_equal(sse_frame_end(&p), strstr(three, "data: two") - three);
    sse_done(&p);

    /* A line over SSE_MAX_LINE after a whole frame: the frame before it is complete. */
    size_t big = SSE_MAX_LINE + 64;
    char *b = malloc(big);
    assert_non_null(b);
    static const char head[] = "data: ok\r\n\r\ndata: ";
    memcpy(b, head, sizeof(head) - 1); /* not a C string: fed with its length */
    memset(b + (sizeof(head) - 1), 'x', big - (sizeof(head) - 1));
    struct collected d = {0};
    sse_init(&p, SSE_MAX_LINE * 2, collect, &d);
    assert_int_equal(sse_feed(&p, b, big), ERR_TOOBIG);
    assert_int_equal(sse_frame_end(&p), strlen("data: ok\r\n\r\n"));
    assert_int_equal(d.n, 1);
    sse_done(&p);
    free(b);

    /*
     * A bare JSON line (a provider's error written without "data:", echoing
     * the key) is no SSE: refused, also split across chunks, and its frame is
     * not among those before sse_frame_end, so a passthrough never forwards it.
     */
    static const char raw[] = "data: w0\n\n{\"error\":{\"message\":\"sk-canary\"}}\n\n";
    for (size_t cut = 0; cut < sizeof(raw) - 1; cut++) {
        struct collected r = {0};
        sse_init(&p, 4096, collect, &r);
        enum err e = sse_feed(&p, raw, cut);
        size_t end = sse_frame_end(&p); /* in the stream, as a passthrough counts it */
        if (e == ERR_OK) {
            e = sse_feed(&p, raw + cut, sizeof(raw) - 1 - cut);
            if (sse_frame_end(&p) > 0) {
                end = cut + sse_frame_end(&p);
            }
        }
        assert_int_equal(e, ERR_PROTO);
        assert_int_equal(r.n, 1);
        assert_string_equal(r.data[0], "w0");
        assert_int_equal(end, strlen("data: w0\n\n"));
        sse_done(&p);
    }
    struct collected arr = {0};
    sse_init(&p, 4096, collect, &arr);
    assert_int_equal(sse_feed(&p, "[1]\n\n", 5), ERR_PROTO);
    assert_int_equal(arr.n, 0);
    sse_done(&p);

    /*
     * Nor any other line that is no comment and no data, event, id or retry
     * field: a proxy's HTML page mid-stream (which the spec would ignore and a
     * passthrough would forward, echoed header and all), an unknown field.
     */
    static const char *const not_fields[] = {
        "data: w0\n\n<html><body>Authorization: Bearer sk-canary</body></html>\n\n",
        "data: w0\n\n<html>\n\n",
        "data: w0\n\nfoo: bar\n\n",
        "data: w0\n\nData: x\n\n",
        "data: w0\n\ndata: w1\nidx: 1\n\n",
    };
    for (size_t i = 0; i < sizeof(not_fields) / sizeof(not_fields[0]); i++) {
        struct collected h = {0};
        sse_init(&p, 4096, collect, &h);
        assert_int_equal(sse_feed(&p, not_fields[i], strlen(not_fields[i])), ERR_PROTO);
        assert_int_equal(h.n, 1);
        assert_string_equal(h.data[0], "w0");
        assert_int_equal(sse_frame_end(&p), strlen("data: w0\n\n"));
        sse_done(&p);
    }

    /* No frame ends in a chunk: 0, also for the LF of a CRLF split from its CR. */
    struct collected e = {0};
    sse_init(&p, 4096, collect, &e);
    assert_int_equal(sse_feed(&p, "data: a\r\n\r", 10), ERR_OK);
    assert_int_equal(sse_frame_end(&p), 10);
    assert_int_equal(sse_feed(&p, "\ndata: b", 8), ERR_OK);
    assert_int_equal(sse_frame_end(&p), 0);
    sse_done(&p);
}

/*
 * A callback ending the stream (the [DONE] frame): its frame is counted in
 * sse_frame_end, nothing after it is parsed or counted, in this chunk or in
 * later ones, at every split of the stream in two chunks.
 */
static void test_end_ignores_the_rest(void **state)
{
    (void)state;
    static const char all[] =
        "data: a\n\ndata: [DONE]\r\n\r\ndata: late\n\nevent: error\ndata: x\n\n";
    size_t total = strlen(all);
    size_t done_end = (size_t)(strstr(all, "data: late") - all);
    for (size_t cut = 0; cut <= total; cut++) {
        struct collected c = {.end_after = 2};
        struct sse p;
        sse_init(&p, 4096, collect, &c);
        size_t fwd_len = 0, held = 0;
        const char *chunks[2] = {all, all + cut};
        size_t lens[2] = {cut, total - cut};
        for (size_t k = 0; k < 2; k++) {
            assert_int_equal(sse_feed(&p, chunks[k], lens[k]), ERR_OK);
            size_t end = sse_frame_end(&p);
            if (end > 0) {
                fwd_len += held + end;
                held = 0;
            }
            held += lens[k] - end;
        }
        assert_true(sse_ended(&p));
        assert_int_equal(c.n, 2);
        assert_string_equal(c.data[1], "[DONE]");
        /* Up to the [DONE] frame's blank line; a CRLF's LF split off is not part of it. */
        assert_true(fwd_len == done_end || (fwd_len == done_end - 1 && cut == done_end - 1));
        assert_int_equal(sse_feed(&p, "data: more\n\n", 12), ERR_OK);
        assert_int_equal(sse_frame_end(&p), 0);
        assert_int_equal(c.n, 2);
        assert_true(sse_idle(&p));
        sse_done(&p);
    }
}

/* What a passthrough forwards: comments without their text, no id or retry line, the rest as it
 * came. */
static void test_scrub(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
        bool changes;
    } v[] = {
        {"data: {\"a\":1}\n\n", "data: {\"a\":1}\n\n", false},
        {"event: x\r\ndata: 1\r\n\r\n", "event: x\r\ndata: 1\r\n\r\n", false},
        {":\n\n", ":\n\n", false},
        {": OPENROUTER PROCESSING\n\n", ":\n\n", true},
        {": x-byok-usage {\"cost_usd\":0}\r\ndata: 1\r\n\r\n", ":\r\ndata: 1\r\n\r\n", true},
        {"id: sk-secret\ndata: 1\n\n", "data: 1\n\n", true},
        {"retry: 10\rdata: 1\r\r", "data: 1\r\r", true},
        {"id\ndata: 2\n\n", "data: 2\n\n", true},
        {"idx: 1\ndata: 3\n\n", "idx: 1\ndata: 3\n\n", false},
        {"\ndata: 4\n\n", "\ndata: 4\n\n", false},
        {"data: :not a comment\n\n", "data: :not a comment\n\n", false},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        size_t len = strlen(v[i].in);
        assert_int_equal(sse_needs_scrub(v[i].in, len), v[i].changes);
        char out[128];
        size_t n = sse_scrub(v[i].in, len, out);
        assert_int_equal(n, strlen(v[i].out));
        assert_memory_equal(out, v[i].out, n);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole_stream),
        cmocka_unit_test(test_split_everywhere),
        cmocka_unit_test(test_partial_not_dispatched),
        cmocka_unit_test(test_bom_and_empty_chunks),
        cmocka_unit_test(test_data_limit),
        cmocka_unit_test(test_line_limit),
        cmocka_unit_test(test_event_name_limit),
        cmocka_unit_test(test_callback_stops),
        cmocka_unit_test(test_blank_without_data),
        cmocka_unit_test(test_frame_end_split_everywhere),
        cmocka_unit_test(test_frame_end_at_failure),
        cmocka_unit_test(test_end_ignores_the_rest),
        cmocka_unit_test(test_scrub),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
