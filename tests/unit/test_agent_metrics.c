/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for agent/metrics: label escaping and cutting (every label kept,
 * values valid UTF-8), cumulative histograms, the series limit, and an
 * exposition a Prometheus text parser accepts line by line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/metrics.h"

/* One label value as the text format allows it: escapes \\ \" \n only, valid UTF-8 after. */
static const char *check_value(const char *p, char *val, size_t size)
{
    size_t n = 0;
    while (*p != '"') {
        assert_true(*p != '\0' && *p != '\n');
        char c = *p++;
        if (c == '\\') {
            assert_true(*p == '\\' || *p == '"' || *p == 'n');
            c = *p == 'n' ? '\n' : *p;
            p++;
        }
        assert_true(n + 1 < size);
        val[n++] = c;
    }
    val[n] = '\0';
    json_t *s = json_stringn(val, n); /* NULL for invalid UTF-8 */
    assert_non_null(s);
    json_decref(s);
    return p + 1;
}

/*
 * A sample line: name{k="v",...} value. Writes the label names, each followed
 * by ',', into keys, and the value of label want into want_val (if present).
 */
static void check_sample(const char *line, char *keys, size_t ksize, const char *want,
                         char *want_val, size_t vsize)
{
    const char *p = line;
    while (*p == '_' || *p == ':' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
           (*p >= '0' && *p <= '9')) {
        p++;
    }
    assert_true(p > line);
    keys[0] = '\0';
    if (*p == '{') {
        p++;
        while (*p != '}') {
            const char *k = p;
            while ((*p >= 'a' && *p <= 'z') || *p == '_') {
                p++;
            }
            assert_true(p > k);
            assert_int_equal(*p, '=');
            size_t used = strlen(keys);
            assert_true(used + (size_t)(p - k) + 2 < ksize);
            memcpy(keys + used, k, (size_t)(p - k));
            keys[used + (size_t)(p - k)] = ',';
            keys[used + (size_t)(p - k) + 1] = '\0';
            bool is_want = want != NULL && strlen(want) == (size_t)(p - k) &&
                           memcmp(k, want, (size_t)(p - k)) == 0;
            p++;
            assert_int_equal(*p, '"');
            char val[1024];
            p = check_value(p + 1, val, sizeof(val));
            if (is_want) {
                size_t vl = strlen(val) < vsize - 1 ? strlen(val) : vsize - 1;
                memcpy(want_val, val, vl);
                want_val[vl] = '\0';
            }
            if (*p == ',') {
                p++;
            } else {
                assert_int_equal(*p, '}');
            }
        }
        p++;
    }
    assert_int_equal(*p, ' ');
    char *end;
    strtod(p + 1, &end);
    assert_true(end > p + 1);
    assert_int_equal(*end, '\0');
}

/* The label names of every sample of family name, one "name:k1,k2,\n" line each. */
static void render_keys(const char *family, char *out, size_t size)
{
    struct buf b;
    buf_init(&b, 64 << 20);
    assert_int_equal(metrics_render(&b), ERR_OK);
    out[0] = '\0';
    size_t fl = strlen(family);
    for (char *line = strtok(b.data, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        if (line[0] == '#') {
            continue;
        }
        char keys[256];
        char unused[8];
        check_sample(line, keys, sizeof(keys), NULL, unused, sizeof(unused));
        if (strncmp(line, family, fl) == 0 && line[fl] == '{') {
            size_t used = strlen(out);
            snprintf(out + used, size - used, "%s\n", keys);
        }
    }
    buf_done(&b);
}

static void test_escapes(void **state)
{
    (void)state;
    char labels[METRICS_MAX_LABELS];
    metrics_labels(labels, sizeof(labels), "tenant", "a\"b\\c\nd", "model", NULL, NULL);
    assert_string_equal(labels, "tenant=\"a\\\"b\\\\c\\nd\",model=\"\"");
    metrics_labels(labels, sizeof(labels), NULL);
    assert_string_equal(labels, "");
}

/*
 * A long model name (an app may name any model of a provider whose catalog
 * entry lists none) is cut between whole characters, and every label after
 * it is kept: the three kinds stay three series.
 */
static void test_long_value_keeps_every_label(void **state)
{
    (void)state;
    metrics_reset();
    char model[2000];
    const char *units[] = {"\xc3\xa9", "\xe2\x82\xac", "\"", "\\", "\n", "x"};
    for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
        for (size_t shift = 0; shift < 3; shift++) {
            size_t n = 0;
            for (size_t i = 0; i < shift; i++) {
                model[n++] = 'm';
            }
            size_t ul = strlen(units[u]);
            while (n + ul < sizeof(model)) {
                memcpy(model + n, units[u], ul);
                n += ul;
            }
            model[n] = '\0';
            static const char *const kinds[] = {"prompt", "completion", "cached"};
            for (size_t k = 0; k < 3; k++) {
                char labels[METRICS_MAX_LABELS];
                metrics_labels(labels, sizeof(labels), "tenant", "acme", "provider", "openai",
                               "model", model, "kind", kinds[k], NULL);
                assert_true(strlen(labels) < sizeof(labels));
                char line[METRICS_MAX_LABELS + 64];
                snprintf(line, sizeof(line), "byok_tokens_total{%s} 1", labels);
                char keys[256];
                char kind[32];
                kind[0] = '\0';
                check_sample(line, keys, sizeof(keys), "kind", kind, sizeof(kind));
                assert_string_equal(keys, "tenant,provider,model,kind,");
                assert_string_equal(kind, kinds[k]);
                metrics_add(M_TOKENS, 1, labels);
            }
        }
    }
    char keys[65536];
    render_keys("byok_tokens_total", keys, sizeof(keys));
    size_t lines = 0;
    for (char *p = keys; (p = strchr(p, '\n')) != NULL; p++) {
        lines++;
    }
    /* Each model differs from the others within the first characters: 3 kinds each. */
    assert_int_equal(lines, (size_t)3 * 3 * (sizeof(units) / sizeof(units[0])));
    metrics_reset();
}

/* A value that is not UTF-8 would make a scraper refuse the whole exposition. */
static void test_invalid_utf8_value(void **state)
{
    (void)state;
    metrics_reset();
    char labels[METRICS_MAX_LABELS];
    metrics_labels(labels, sizeof(labels), "model",
                   "a\xff"
                   "b\xc3",
                   NULL);
    assert_string_equal(labels, "model=\"a\xef\xbf\xbd"
                                "b\xef\xbf\xbd\"");
    metrics_add(M_TOKENS, 1, labels);
    char keys[1024];
    render_keys("byok_tokens_total", keys, sizeof(keys));
    assert_string_equal(keys, "model,\n");
    metrics_reset();
}

static void test_histogram_cumulative(void **state)
{
    (void)state;
    metrics_reset();
    metrics_observe(M_REQUEST_SECONDS, 0.003, "route=\"chat\"");
    metrics_observe(M_REQUEST_SECONDS, 100, "route=\"chat\"");
    struct buf b;
    buf_init(&b, 1 << 20);
    assert_int_equal(metrics_render(&b), ERR_OK);
    assert_non_null(
        strstr(b.data, "byok_request_duration_seconds_bucket{route=\"chat\",le=\"0.0025\"} 0\n"));
    assert_non_null(
        strstr(b.data, "byok_request_duration_seconds_bucket{route=\"chat\",le=\"0.005\"} 1\n"));
    assert_non_null(
        strstr(b.data, "byok_request_duration_seconds_bucket{route=\"chat\",le=\"60\"} 1\n"));
    assert_non_null(
        strstr(b.data, "byok_request_duration_seconds_bucket{route=\"chat\",le=\"+Inf\"} 2\n"));
    assert_non_null(strstr(b.data, "byok_request_duration_seconds_count{route=\"chat\"} 2\n"));
    buf_done(&b);
    metrics_reset();
}

static void test_series_limit(void **state)
{
    (void)state;
    metrics_reset();
    char labels[METRICS_MAX_LABELS];
    for (int i = 0; i < METRICS_MAX_SERIES + 5; i++) {
        char model[32];
        snprintf(model, sizeof(model), "m%d", i);
        metrics_labels(labels, sizeof(labels), "model", model, NULL);
        metrics_add(M_COST, 1, labels);
    }
    /* The model-labelled families stop at their own cap: other families still get series. */
    metrics_add(M_UPSTREAM, 1, "provider=\"openai\",status=\"200\"");
    struct buf b;
    buf_init(&b, 64 << 20);
    assert_int_equal(metrics_render(&b), ERR_OK);
    char want[64];
    snprintf(want, sizeof(want), "\nbyok_metrics_dropped_series_total %d\n",
             METRICS_MAX_SERIES + 5 - METRICS_MAX_MODEL_SERIES);
    assert_non_null(strstr(b.data, want));
    assert_non_null(
        strstr(b.data, "\nbyok_upstream_requests_total{provider=\"openai\",status=\"200\"} 1\n"));
    buf_done(&b);
    metrics_reset();

    /* The whole table's cap still holds for the others. */
    for (int i = 0; i < METRICS_MAX_SERIES + 5; i++) {
        snprintf(labels, sizeof(labels), "provider=\"p%d\",status=\"200\"", i);
        metrics_add(M_UPSTREAM, 1, labels);
    }
    buf_init(&b, 64 << 20);
    assert_int_equal(metrics_render(&b), ERR_OK);
    assert_non_null(strstr(b.data, "\nbyok_metrics_dropped_series_total 5\n"));
    buf_done(&b);
    metrics_reset();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_long_value_keeps_every_label),
        cmocka_unit_test(test_invalid_utf8_value),
        cmocka_unit_test(test_histogram_cumulative),
        cmocka_unit_test(test_series_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
