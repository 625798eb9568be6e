/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for agent/usage: rows aggregated per (provider, model, app, key
 * type, status), totals, batches posted to an in-process Vault with unique
 * batch ids, a failed batch re-sent with the SAME id, a refused batch dropped,
 * and the bound on unsent rows at the limit and one past it; a batch refused
 * 413 split into halves with derived ids (one row still refused: dropped);
 * a 400 naming one record split the same way, only that row dropped;
 * 403 and 404 kept and retried, with their own metric results and a rate
 * limited log line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/config.h"
#include "agent/jalloc.h"
#include "agent/metrics.h"
#include "agent/upstream.h"
#include "agent/usage.h"
#include "agent/vault.h"
#include "common/log.h"
#include "common/secret.h"
#include "tests/unit/helpers/fakevault.h"

static struct fakevault fv;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static json_t *posts;          /* every usage body received, under mu */
static atomic_int next_status; /* status for the next usage POST (200 default) */
/* A usage POST with more records than this is answered 413 (-1: no limit); next_status waits. */
static atomic_int too_large_over = -1;

static void vault_handle(const struct fakevault_req *r, int *status, char *out)
{
    if (strncmp(r->path, "/v1/auth/token/lookup-self", 26) == 0) {
        *status = 200;
        snprintf(out, FAKEVAULT_MAX_REPLY, "{\"data\":{\"ttl\":0}}");
    } else if (strstr(r->path, "/usage") != NULL) {
        json_t *b = json_loadb(r->body, r->body_len, 0, NULL);
        int over = atomic_load(&too_large_over);
        int st = 413; /* Vault's max_request_size, or a proxy's body limit */
        if (over < 0 || json_array_size(json_object_get(b, "records")) <= (size_t)over) {
            st = atomic_exchange(&next_status, 200);
        }
        /* The plugin's refusal of one record, as usage_update words it. */
        long bad = -1;
        size_t k;
        const json_t *r1;
        json_array_foreach(json_object_get(b, "records"), k, r1)
        {
            const char *m = json_string_value(json_object_get(r1, "model"));
            if (bad < 0 && m != NULL && strcmp(m, "bad") == 0) {
                bad = (long)k;
            }
        }
        if (st == 200 && bad >= 0) {
            st = 400;
        }
        pthread_mutex_lock(&mu);
        json_array_append_new(posts, json_pack("{s:i,s:o*}", "status", st, "body", b));
        pthread_mutex_unlock(&mu);
        *status = st;
        if (st == 200) {
            snprintf(out, FAKEVAULT_MAX_REPLY, "{\"data\":{\"accepted\":1}}");
        } else if (bad >= 0) {
            snprintf(out, FAKEVAULT_MAX_REPLY,
                     "{\"errors\":[\"invalid value for field 'records': record %ld: invalid "
                     "value for 'model'\"]}",
                     bad);
        } else {
            snprintf(out, FAKEVAULT_MAX_REPLY, "{\"errors\":[\"x\"]}");
        }
    } else {
        *status = 404;
    }
}

struct env {
    struct event_base *base;
    struct config *cfg;
    struct upstream *up;
    struct vault *vault;
    struct usage *u;
    bool estimated_next;        /* the next rec() is an estimated call */
    long long cache_write_next; /* the next rec()'s prompt-cache writes */
    char journal[64];           /* usage.journal_dir of the next env_start ("" for none) */
};
static struct env E;

static void env_start(long max_pending, long batch_records)
{
    char text[1024];
    snprintf(text, sizeof(text),
             "{\"listeners\":[{\"path\":\"/x.sock\",\"tenant\":\"acme\"}],"
             "\"vault\":{\"address\":\"unix:%s\",\"token_file\":\"%s\"},"
             "\"usage\":{\"report_interval_s\":3600,\"max_pending_records\":%ld,"
             "\"batch_records\":%ld,\"node_id\":\"n1\"%s%s%s}}",
             fv.sock_path, fv.token_path, max_pending, batch_records,
             E.journal[0] ? ",\"journal_dir\":\"" : "", E.journal, E.journal[0] ? "\"" : "");
    char err[CONFIG_ERR_LEN];
    assert_int_equal(config_parse(text, strlen(text), &E.cfg, err), ERR_OK);
    E.base = event_base_new();
    E.up = upstream_new(E.base, 4);
    E.vault = vault_new(E.base, E.up, E.cfg);
    E.u = usage_new(E.base, E.vault, E.cfg);
    assert_non_null(E.u);
    if (E.journal[0] != '\0') {
        assert_int_equal(usage_journal_open(E.u, E.journal, err, sizeof(err)), ERR_OK);
    }
    pthread_mutex_lock(&mu);
    json_array_clear(posts);
    pthread_mutex_unlock(&mu);
    atomic_store(&too_large_over, -1);
    metrics_reset();
}

static void env_stop(void)
{
    usage_free(E.u);
    vault_free(E.vault);
    upstream_free(E.up);
    event_base_free(E.base);
    config_unref(&E.cfg);
}

static int setup(void **state)
{
    (void)state;
    posts = json_array();
    fakevault_start(&fv, "tok", vault_handle);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fakevault_stop(&fv);
    json_decref(posts);
    return 0;
}

static void rec(const char *provider, const char *model, const char *status, long long p,
                long long c, double cost)
{
    struct usage_record r = {
        .tenant = "acme",
        .app = "web",
        .provider = provider,
        .model = model,
        .key_type = "production",
        .status = status,
        .tokens = {.prompt_tokens = p,
                   .completion_tokens = c,
                   .cached_tokens = 1,
                   .cache_write_tokens = E.cache_write_next,
                   .seen = true},
        .cost_usd = cost,
        .estimated = E.estimated_next,
    };
    E.estimated_next = false;
    E.cache_write_next = 0;
    usage_record(E.u, &r);
}

static size_t n_posts(void)
{
    pthread_mutex_lock(&mu);
    size_t n = json_array_size(posts);
    pthread_mutex_unlock(&mu);
    return n;
}

/* Runs the loop until Vault has seen `want` usage posts and nothing is in flight. */
static void flush_until(size_t want)
{
    usage_flush(E.u);
    while (n_posts() < want || usage_inflight(E.u) > 0) {
        assert_int_equal(event_base_loop(E.base, EVLOOP_ONCE), 0);
    }
}

static json_t *post_body(size_t i)
{
    pthread_mutex_lock(&mu);
    json_t *b = json_object_get(json_array_get(posts, i), "body");
    pthread_mutex_unlock(&mu);
    return b;
}

/* Reports now; the records of the first batch posted, checked to be n. */
static const json_t *first_batch(size_t n)
{
    flush_until(1);
    const json_t *recs = json_object_get(post_body(0), "records");
    assert_int_equal(json_array_size(recs), n);
    return recs;
}

static void test_aggregation_and_totals(void **state)
{
    (void)state;
    env_start(1000, 500);
    rec("openai", "gpt-4o", "ok", 10, 5, 0.5);
    rec("openai", "gpt-4o", "ok", 20, 5, 0.25);
    rec("openai", "gpt-4o", "stream_truncated", 1, 0, 0.0);
    rec("anthropic", "claude", "ok", 7, 3, 1.0);
    assert_int_equal(usage_pending(E.u), 3); /* rows, not requests */
    json_t *t = usage_tenant_json(E.u, "acme");
    assert_int_equal(json_integer_value(json_object_get(t, "requests")), 4);
    assert_int_equal(json_integer_value(json_object_get(t, "prompt_tokens")), 38);
    assert_int_equal(json_integer_value(json_object_get(t, "completion_tokens")), 13);
    assert_int_equal(json_integer_value(json_object_get(t, "cached_tokens")), 4);
    assert_true(json_real_value(json_object_get(t, "cost_usd")) == 1.75);
    assert_int_equal(json_integer_value(json_object_get(t, "pending_requests")), 4);
    const json_t *bp = json_object_get(json_object_get(t, "by_provider"), "openai");
    assert_int_equal(json_integer_value(json_object_get(bp, "requests")), 3);
    const json_t *bm = json_object_get(json_object_get(t, "by_model"), "anthropic/claude");
    assert_int_equal(json_integer_value(json_object_get(bm, "prompt_tokens")), 7);
    json_decref(t);
    t = usage_tenant_json(E.u, "nobody");
    assert_int_equal(json_integer_value(json_object_get(t, "requests")), 0);
    json_decref(t);

    flush_until(1);
    json_t *b = post_body(0);
    const char *id = json_string_value(json_object_get(b, "batch_id"));
    assert_non_null(id);
    assert_true(strncmp(id, "n1-", 3) == 0);
    const json_t *recs = json_object_get(b, "records");
    assert_int_equal(json_array_size(recs), 3);
    long long reqs = 0;
    size_t i;
    const json_t *r;
    json_array_foreach(recs, i, r)
    {
        reqs += json_integer_value(json_object_get(r, "requests"));
        assert_string_equal(json_string_value(json_object_get(r, "app")), "web");
        assert_string_equal(json_string_value(json_object_get(r, "key_type")), "production");
        assert_non_null(json_string_value(json_object_get(r, "ts")));
        if (strcmp(json_string_value(json_object_get(r, "status")), "ok") == 0 &&
            strcmp(json_string_value(json_object_get(r, "provider")), "openai") == 0) {
            assert_int_equal(json_integer_value(json_object_get(r, "requests")), 2);
            assert_int_equal(json_integer_value(json_object_get(r, "prompt_tokens")), 30);
        }
    }
    assert_int_equal(reqs, 4);
    assert_int_equal(usage_pending(E.u), 0);
    /* Totals are since start, not since the last report. */
    t = usage_tenant_json(E.u, "acme");
    assert_int_equal(json_integer_value(json_object_get(t, "requests")), 4);
    assert_int_equal(json_integer_value(json_object_get(t, "pending_requests")), 0);
    json_decref(t);
    env_stop();
}

/* Calls counted with estimated tokens are counted as such in totals and in each row. */
static void test_estimated_requests(void **state)
{
    (void)state;
    env_start(1000, 500);
    rec("openai", "gpt-4o", "ok", 10, 5, 0.5);
    E.estimated_next = true;
    rec("openai", "gpt-4o", "ok", 12, 3, 0.1);
    E.estimated_next = true;
    rec("openai", "gpt-4o", "client_closed", 12, 0, 0.01);
    json_t *t = usage_tenant_json(E.u, "acme");
    assert_int_equal(json_integer_value(json_object_get(t, "requests")), 3);
    assert_int_equal(json_integer_value(json_object_get(t, "estimated_requests")), 2);
    const json_t *bm = json_object_get(json_object_get(t, "by_model"), "openai/gpt-4o");
    assert_int_equal(json_integer_value(json_object_get(bm, "estimated_requests")), 2);
    json_decref(t);
    size_t i;
    const json_t *r;
    json_array_foreach(first_batch(2), i, r)
    {
        bool ok = strcmp(json_string_value(json_object_get(r, "status")), "ok") == 0;
        assert_int_equal(json_integer_value(json_object_get(r, "requests")), ok ? 2 : 1);
        assert_int_equal(json_integer_value(json_object_get(r, "estimated_requests")), 1);
    }
    env_stop();
}

/*
 * Prompt-cache writes: in the totals since start (by provider and model too)
 * and in the tokens metric, not in the rows reported to the plugin (their
 * cost carries them).
 */
static void test_cache_writes(void **state)
{
    (void)state;
    env_start(1000, 500);
    E.cache_write_next = 40;
    rec("anthropic", "claude", "ok", 100, 5, 0.5);
    rec("anthropic", "claude", "ok", 10, 5, 0.25);
    json_t *t = usage_tenant_json(E.u, "acme");
    assert_int_equal(json_integer_value(json_object_get(t, "cache_write_tokens")), 40);
    const json_t *bm = json_object_get(json_object_get(t, "by_model"), "anthropic/claude");
    assert_int_equal(json_integer_value(json_object_get(bm, "cache_write_tokens")), 40);
    json_decref(t);
    struct buf b;
    buf_init(&b, 64 << 20);
    assert_int_equal(metrics_render(&b), ERR_OK);
    assert_int_equal(buf_append(&b, "", 1), ERR_OK);
    assert_non_null(strstr(b.data, "kind=\"cache_write\"} 40"));
    buf_done(&b);
    const json_t *recs = first_batch(1);
    assert_null(json_object_get(json_array_get(recs, 0), "cache_write_tokens"));
    assert_int_equal(json_integer_value(json_object_get(json_array_get(recs, 0), "prompt_tokens")),
                     110);
    env_stop();
}

static void test_retry_keeps_batch_id(void **state)
{
    (void)state;
    env_start(1000, 500);
    rec("openai", "gpt-4o", "ok", 1, 1, 0.1);
    atomic_store(&next_status, 503);
    flush_until(1);
    assert_int_equal(usage_pending(E.u), 1);  /* kept */
    rec("openai", "gpt-4o", "ok", 1, 1, 0.1); /* goes to a new open row, not the sealed batch */
    flush_until(2);                           /* the waiting batch first, alone */
    assert_int_equal(json_array_size(json_object_get(post_body(1), "records")), 1);
    flush_until(3);
    const char *first = json_string_value(json_object_get(post_body(0), "batch_id"));
    const char *again = json_string_value(json_object_get(post_body(1), "batch_id"));
    const char *next = json_string_value(json_object_get(post_body(2), "batch_id"));
    assert_string_equal(first, again);
    assert_string_not_equal(first, next);
    assert_int_equal(usage_pending(E.u), 0);
    env_stop();
}

static void test_refused_batch_dropped(void **state)
{
    (void)state;
    env_start(1000, 500);
    rec("openai", "gpt-4o", "ok", 1, 1, 0.1);
    rec("openai", "gpt-4o", "ok", 1, 1, 0.1);
    atomic_store(&next_status, 400);
    flush_until(1);
    assert_int_equal(usage_pending(E.u), 0);
    assert_int_equal(usage_dropped(E.u), 2); /* counted in requests */
    usage_flush(E.u);
    assert_int_equal(n_posts(), 1); /* nothing left to send */
    env_stop();
}

static void test_batches_split(void **state)
{
    (void)state;
    env_start(1000, 1);
    rec("openai", "a", "ok", 1, 1, 0);
    rec("openai", "b", "ok", 1, 1, 0);
    flush_until(2);
    const char *id0 = json_string_value(json_object_get(post_body(0), "batch_id"));
    const char *id1 = json_string_value(json_object_get(post_body(1), "batch_id"));
    assert_string_not_equal(id0, id1);
    assert_int_equal(json_array_size(json_object_get(post_body(0), "records")), 1);
    env_stop();
}

/*
 * Reports now and waits until nothing is in flight (every batch answered, or
 * one failed): unlike flush_until it returns when a batch never arrives.
 */
static void flush_all(void)
{
    usage_flush(E.u);
    while (usage_inflight(E.u) > 0) {
        assert_int_equal(event_base_loop(E.base, EVLOOP_ONCE), 0);
    }
}

/*
 * Checks the posts against the plugin's 1 MiB request data limit with the
 * agent's margin (512 KiB of JSON as Vault re-encodes it: < > & take six
 * bytes), and that all `rows` records arrived under distinct batch ids.
 */
static size_t check_batches_bounded(size_t rows)
{
    size_t n = n_posts(), total = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *b = post_body(i);
        char *text = json_dumps(b, JSON_COMPACT);
        assert_non_null(text);
        size_t bytes = 0;
        for (const char *p = text; *p != '\0'; p++) {
            bytes += *p == '<' || *p == '>' || *p == '&' ? 6 : 1;
        }
        free(text);
        assert_true(bytes <= (size_t)512 * 1024);
        total += json_array_size(json_object_get(b, "records"));
        for (size_t j = 0; j < i; j++) {
            assert_string_not_equal(json_string_value(json_object_get(b, "batch_id")),
                                    json_string_value(json_object_get(post_body(j), "batch_id")));
        }
    }
    assert_int_equal(total, rows);
    assert_int_equal(usage_pending(E.u), 0);
    assert_int_equal(usage_dropped(E.u), 0);
    return n;
}

/*
 * 4,500 rows of ~250 bytes with usage.batch_records 10,000: one batch would be
 * ~1.1 MB, past the plugin's 1 MiB (it answered 400 and the batch was dropped).
 * Sealed by size too, they go as several batches of at most 512 KiB.
 */
static void test_batches_bounded_by_bytes(void **state)
{
    (void)state;
    env_start(100000, 10000);
    for (int i = 0; i < 4500; i++) {
        char model[32];
        snprintf(model, sizeof(model), "model-%05d", i);
        rec("openai", model, "ok", 1234, 567, 0.000123456);
    }
    flush_all();
    assert_true(check_batches_bounded(4500) >= 3);
    env_stop();
}

/* Models full of < > &, which Vault's encoder writes as six bytes each, count as such. */
static void test_batch_bytes_count_escapes(void **state)
{
    (void)state;
    env_start(100000, 10000);
    char model[128];
    memset(model, '<', 100);
    for (int i = 0; i < 1000; i++) {
        snprintf(model + 100, sizeof(model) - 100, "%04d", i);
        rec("openai", model, "ok", 1, 1, 0);
    }
    flush_all();
    assert_true(check_batches_bounded(1000) >= 2);
    env_stop();
}

static void test_pending_bound(void **state)
{
    (void)state;
    env_start(2, 500);
    rec("openai", "a", "ok", 1, 1, 0);
    rec("openai", "b", "ok", 1, 1, 0);
    assert_int_equal(usage_pending(E.u), 2); /* at the limit */
    assert_int_equal(usage_dropped(E.u), 0);
    rec("openai", "b", "ok", 1, 1, 0); /* same row: no growth */
    assert_int_equal(usage_pending(E.u), 2);
    rec("openai", "c", "ok", 1, 1, 0); /* one past: the oldest row goes */
    assert_int_equal(usage_pending(E.u), 2);
    assert_int_equal(usage_dropped(E.u), 1);
    size_t i;
    const json_t *r;
    json_array_foreach(first_batch(2), i, r)
    {
        assert_string_not_equal(json_string_value(json_object_get(r, "model")), "a");
    }
    env_stop();
}

/* The batch id of the first batch a fresh instance posts, copied into id (64 bytes). */
static void fresh_batch_id(char *id)
{
    env_start(1000, 500);
    rec("openai", "gpt-4o", "ok", 1, 1, 0.1);
    flush_until(1);
    snprintf(id, 64, "%s", json_string_value(json_object_get(post_body(0), "batch_id")));
    env_stop();
}

/*
 * Two agents with the same node_id started in the same second (or a restart
 * within it) post different batch ids: the plugin would take the second for a
 * duplicate of the first. The id stays within the plugin's rules.
 */
static void test_batch_id_unique_per_start(void **state)
{
    (void)state;
    char a[64], b[64];
    fresh_batch_id(a);
    fresh_batch_id(b);
    assert_string_not_equal(a, b);
    /* n1-<start second hex>-<16 random hex digits>-<seq>, [A-Za-z0-9._-] only */
    assert_true(strncmp(a, "n1-", 3) == 0);
    char *end = NULL;
    assert_true(strtoul(a + 3, &end, 16) > 0 && *end == '-');
    const char *nonce = end + 1;
    assert_int_equal(strspn(nonce, "0123456789abcdef"), 16);
    assert_true(nonce[16] == '-' && strtoull(nonce + 17, &end, 10) == 1 && *end == '\0');
    assert_true(strlen(a) <= 128 - (63 - 2)); /* room for a 63-character node_id */
}

/* How many usage posts carried batch id `id`. */
static size_t posts_with_id(const char *id)
{
    size_t n = 0;
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < json_array_size(posts); i++) {
        const json_t *b = json_object_get(json_array_get(posts, i), "body");
        n += strcmp(json_string_value(json_object_get(b, "batch_id")), id) == 0;
    }
    pthread_mutex_unlock(&mu);
    return n;
}

/*
 * A long Vault outage: one call per report interval, every post refused with
 * a 503. The batch waiting for its acknowledgement is re-sent as it was, and
 * new calls add to one open row rather than a new batch per interval: nothing
 * multiplies, nothing is dropped, and once Vault is back every call arrives.
 */
static void test_outage_aggregates(void **state)
{
    (void)state;
    env_start(5, 500);
    for (size_t i = 1; i <= 8; i++) {
        rec("openai", "gpt-4o", "ok", 10, 5, 0.001);
        atomic_store(&next_status, 503);
        flush_until(i);
        assert_true(usage_pending(E.u) <= 2); /* the waiting batch's row + one open row */
        assert_int_equal(usage_dropped(E.u), 0);
    }
    const char *id = json_string_value(json_object_get(post_body(0), "batch_id"));
    assert_int_equal(posts_with_id(id), 8);
    assert_int_equal(json_array_size(json_object_get(post_body(7), "records")), 1);
    json_t *t = usage_tenant_json(E.u, "acme");
    assert_int_equal(json_integer_value(json_object_get(t, "pending_requests")), 8);
    json_decref(t);
    /* Vault is back: the waiting batch, then one row for the 7 calls made meanwhile. */
    flush_until(9);
    flush_until(10);
    const json_t *recs = json_object_get(post_body(9), "records");
    assert_int_equal(json_array_size(recs), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(recs, 0), "requests")), 7);
    assert_int_equal(usage_pending(E.u), 0);
    assert_int_equal(usage_dropped(E.u), 0);
    env_stop();
}

/*
 * Past max_pending_records the OLDEST rows go, the rows of a batch waiting
 * for its acknowledgement included, not the newest calls; the drop is counted.
 */
static void test_bound_drops_oldest_waiting(void **state)
{
    (void)state;
    env_start(2, 500);
    rec("openai", "a", "ok", 1, 1, 0);
    rec("openai", "b", "ok", 1, 1, 0);
    atomic_store(&next_status, 503);
    flush_until(1); /* [a, b] waits for Vault */
    assert_int_equal(usage_pending(E.u), 2);
    rec("openai", "c", "ok", 1, 1, 0); /* one past the bound: a, the oldest, goes */
    assert_int_equal(usage_pending(E.u), 2);
    assert_int_equal(usage_dropped(E.u), 1);
    rec("openai", "d", "ok", 1, 1, 0); /* then b: the waiting batch is empty and gone */
    assert_int_equal(usage_pending(E.u), 2);
    assert_int_equal(usage_dropped(E.u), 2);
    flush_until(2); /* Vault is back: the newest rows arrive */
    const json_t *recs = json_object_get(post_body(1), "records");
    assert_int_equal(json_array_size(recs), 2);
    size_t i;
    const json_t *r;
    json_array_foreach(recs, i, r)
    {
        const char *m = json_string_value(json_object_get(r, "model"));
        assert_true(strcmp(m, "c") == 0 || strcmp(m, "d") == 0);
    }
    assert_int_equal(usage_pending(E.u), 0);
    env_stop();
}

/*
 * Rows sealed in several batches at once go out oldest first, and the bound
 * drops from the oldest batch: with one row per batch, a (the oldest) goes,
 * and b, c, then d arrive in that order.
 */
static void test_sealed_oldest_first(void **state)
{
    (void)state;
    env_start(3, 1);
    rec("openai", "a", "ok", 1, 1, 0);
    rec("openai", "b", "ok", 1, 1, 0);
    rec("openai", "c", "ok", 1, 1, 0);
    atomic_store(&next_status, 503);
    flush_until(1); /* [a] [b] [c] sealed; [a] is tried and refused */
    const json_t *first = json_array_get(json_object_get(post_body(0), "records"), 0);
    assert_string_equal(json_string_value(json_object_get(first, "model")), "a");
    rec("openai", "d", "ok", 1, 1, 0); /* one past the bound: a goes */
    assert_int_equal(usage_dropped(E.u), 1);
    atomic_store(&next_status, 200);
    for (size_t n = 2; n <= 4; n++) {
        flush_until(n); /* one batch per report */
    }
    static const char *const want[] = {"b", "c", "d"};
    for (size_t i = 0; i < 3; i++) {
        const json_t *r = json_array_get(json_object_get(post_body(i + 1), "records"), 0);
        assert_string_equal(json_string_value(json_object_get(r, "model")), want[i]);
    }
    assert_int_equal(usage_pending(E.u), 0);
    env_stop();
}

/*
 * Per-tenant totals by model are capped at 256 names: past it a new model
 * counts under "<provider>/other", a known one still under its own name, and
 * the by_model totals still add up to the tenant's. Rows keep the real names.
 */
static void test_by_model_capped(void **state)
{
    (void)state;
    env_start(100000, 500);
    char m[32];
    for (int i = 0; i < 300; i++) {
        snprintf(m, sizeof(m), "model-%d", i);
        rec("vllm", m, "client_closed", 10, 0, 0);
    }
    rec("vllm", "model-0", "ok", 10, 0, 0);  /* known: its own name */
    rec("openai", "gpt-4o", "ok", 10, 0, 0); /* another provider past the cap: its own other */
    rec("openai", "gpt-4o", "ok", 10, 0, 0);
    json_t *t = usage_tenant_json(E.u, "acme");
    const json_t *bm = json_object_get(t, "by_model");
    assert_int_equal(json_object_size(bm), 256 + 2);
    const json_t *other = json_object_get(bm, "vllm/other");
    assert_int_equal(json_integer_value(json_object_get(other, "requests")), 300 - 256);
    assert_int_equal(json_integer_value(json_object_get(other, "prompt_tokens")), 10 * (300 - 256));
    other = json_object_get(bm, "openai/other");
    assert_int_equal(json_integer_value(json_object_get(other, "requests")), 2);
    const json_t *m0 = json_object_get(bm, "vllm/model-0");
    assert_int_equal(json_integer_value(json_object_get(m0, "requests")), 2);
    long long sum = 0;
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)bm, k, v)
    {
        sum += json_integer_value(json_object_get(v, "requests"));
    }
    assert_int_equal(sum, json_integer_value(json_object_get(t, "requests")));
    assert_int_equal(sum, 303);
    const json_t *bp = json_object_get(json_object_get(t, "by_provider"), "vllm");
    assert_int_equal(json_integer_value(json_object_get(bp, "requests")), 301);
    json_decref(t);
    assert_int_equal(usage_pending(E.u), 302); /* rows: 300 models + model-0 ok + gpt-4o */
    env_stop();
}

/*
 * Reloads (SIGHUP) more often than usage.report_interval_s, with the same
 * interval: usage is still reported every interval. Before the fix each
 * reload restarted the timer, so reloads every second kept a 2 s report
 * from ever being sent.
 */
static void test_reload_keeps_report_schedule(void **state)
{
    (void)state;
    char text[1024], err[CONFIG_ERR_LEN];
    snprintf(text, sizeof(text),
             "{\"listeners\":[{\"path\":\"/x.sock\",\"tenant\":\"acme\"}],"
             "\"vault\":{\"address\":\"unix:%s\",\"token_file\":\"%s\"},"
             "\"usage\":{\"report_interval_s\":2,\"node_id\":\"n1\"}}",
             fv.sock_path, fv.token_path);
    assert_int_equal(config_parse(text, strlen(text), &E.cfg, err), ERR_OK);
    E.base = event_base_new();
    E.up = upstream_new(E.base, 4);
    E.vault = vault_new(E.base, E.up, E.cfg);
    E.u = usage_new(E.base, E.vault, E.cfg);
    assert_non_null(E.u);
    pthread_mutex_lock(&mu);
    json_array_clear(posts);
    pthread_mutex_unlock(&mu);
    rec("openai", "gpt-4o", "ok", 10, 5, 0.001);
    for (int i = 0; i < 10 && n_posts() == 0; i++) {
        struct timeval tv = {0, 500000};
        event_base_loopexit(E.base, &tv);
        assert_int_equal(event_base_dispatch(E.base), 0);
        /* A reload: a new config, the same interval. */
        struct config *next = NULL;
        assert_int_equal(config_parse(text, strlen(text), &next, err), ERR_OK);
        usage_set_config(E.u, next);
        config_unref(&next);
    }
    fprintf(stderr, "# 5 s of reloads every 0.5 s: %zu report(s)\n", n_posts());
    assert_true(n_posts() >= 1);
    env_stop();
}

/* The value of byok_usage_batches_total{result="<result>"} (0 when absent). */
static long batches_metric(const char *result)
{
    struct buf b;
    buf_init(&b, 64 << 20);
    assert_int_equal(metrics_render(&b), ERR_OK);
    assert_int_equal(buf_append(&b, "", 1), ERR_OK);
    char want[96];
    snprintf(want, sizeof(want), "byok_usage_batches_total{result=\"%s\"} ", result);
    const char *p = strstr(b.data, want);
    long n = p != NULL ? strtol(p + strlen(want), NULL, 10) : 0;
    buf_done(&b);
    return n;
}

/* The batch id of post i. */
static const char *post_id(size_t i)
{
    return json_string_value(json_object_get(post_body(i), "batch_id"));
}

/*
 * Vault answers 413 to a batch of more than 2 rows (its max_request_size set
 * low, or a proxy's body limit): the batch is split in halves, each under a
 * derived id (the sealed id, ".", the half's node), until the parts go
 * through; every row is acknowledged, none dropped. Before, the batch was
 * re-sent as it was for ever, holding the tenant's later batches back.
 */
static void test_413_batch_split(void **state)
{
    (void)state;
    env_start(1000, 500);
    atomic_store(&too_large_over, 2);
    const char *models[] = {"m1", "m2", "m3", "m4", "m5", "m6", "m7"};
    for (size_t i = 0; i < 7; i++) {
        rec("openai", models[i], "ok", 1, 1, 0.1);
        rec("openai", models[i], "ok", 1, 1, 0.1);
    }
    flush_all();
    size_t n = n_posts();
    /* 7 -> 4 + 3; 4 -> 2 + 2; 3 -> 2 + 1: 3 refused, 4 accepted. */
    assert_int_equal(n, 7);
    assert_int_equal(usage_pending(E.u), 0);
    assert_int_equal(usage_dropped(E.u), 0);
    char root[130];
    snprintf(root, sizeof(root), "%s", post_id(0));
    static const char *const want[] = {"", ".2", ".4", ".5", ".3", ".6", ".7"};
    size_t acked = 0;
    long long requests = 0;
    for (size_t i = 0; i < n; i++) {
        char id[140];
        snprintf(id, sizeof(id), "%s%s", root, want[i]);
        assert_string_equal(post_id(i), id);
        assert_true(strlen(post_id(i)) <= 128);
        const json_t *recs = json_object_get(post_body(i), "records");
        if (json_array_size(recs) <= 2) {
            size_t k;
            const json_t *r;
            json_array_foreach(recs, k, r)
            {
                requests += json_integer_value(json_object_get(r, "requests"));
            }
            acked += json_array_size(recs);
        }
    }
    assert_int_equal(acked, 7);
    assert_int_equal(requests, 14);
    assert_int_equal(batches_metric("split"), 3);
    assert_int_equal(batches_metric("ok"), 4);

    env_stop();
}

/*
 * A half refused 413 and re-sent after a 503: the same derived id both times.
 */
static void test_413_half_retried_with_its_id(void **state)
{
    (void)state;
    env_start(1000, 500);
    atomic_store(&too_large_over, 1);
    rec("openai", "a", "ok", 1, 1, 0);
    rec("openai", "b", "ok", 1, 1, 0);
    atomic_store(&next_status, 503); /* for the first post that is not too large: a half */
    flush_all();
    assert_int_equal(n_posts(), 2);
    assert_int_equal(usage_pending(E.u), 2);
    flush_all(); /* the first half again, then the second */
    assert_int_equal(n_posts(), 4);
    assert_string_equal(post_id(1), post_id(2));
    assert_string_not_equal(post_id(2), post_id(3));
    assert_int_equal(usage_pending(E.u), 0);
    assert_int_equal(usage_dropped(E.u), 0);
    env_stop();
}

/*
 * One row still refused 413 cannot be split: dropped, its requests counted
 * as dropped, nothing sent again. Two rows: split, and each dropped.
 */
static void test_413_one_row_dropped(void **state)
{
    (void)state;
    env_start(1000, 500);
    atomic_store(&too_large_over, 0);
    rec("openai", "a", "ok", 1, 1, 0);
    rec("openai", "a", "ok", 1, 1, 0);
    rec("openai", "a", "ok", 1, 1, 0);
    flush_all();
    assert_int_equal(n_posts(), 1);
    assert_int_equal(usage_pending(E.u), 0);
    assert_int_equal(usage_dropped(E.u), 3);
    assert_int_equal(batches_metric("too_large"), 1);
    flush_all();
    assert_int_equal(n_posts(), 1); /* not sent again */

    rec("openai", "b", "ok", 1, 1, 0);
    rec("openai", "c", "ok", 1, 1, 0);
    rec("openai", "c", "ok", 1, 1, 0);
    flush_all();
    assert_int_equal(n_posts(), 4); /* 2 rows, then each alone */
    assert_int_equal(usage_pending(E.u), 0);
    assert_int_equal(usage_dropped(E.u), 6);
    assert_int_equal(batches_metric("split"), 1);
    assert_int_equal(batches_metric("too_large"), 3);
    env_stop();
}

/*
 * A 400 naming one record: the batch is split in halves until that row is
 * alone, and only it is dropped; the other rows are acknowledged. Before,
 * the whole batch was dropped. A 400 that names no record still drops the
 * whole batch (test_refused_batch_dropped).
 */
static void test_400_one_record_split(void **state)
{
    (void)state;
    env_start(1000, 500);
    const char *models[] = {"m1", "m2", "bad", "m4", "m5"};
    for (size_t i = 0; i < 5; i++) {
        rec("openai", models[i], "ok", 1, 1, 0.1);
        rec("openai", models[i], "ok", 1, 1, 0.1);
    }
    flush_all();
    /* 5 rows (400) -> 3 (400) + 2; 3 -> 2 + 1 (400, alone: dropped); both pairs go through. */
    size_t n = n_posts();
    assert_int_equal(n, 5);
    assert_int_equal(usage_pending(E.u), 0);
    assert_int_equal(usage_dropped(E.u), 2); /* the bad row's two requests */
    size_t acked = 0;
    long long requests = 0;
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&mu);
        json_int_t st = json_integer_value(json_object_get(json_array_get(posts, i), "status"));
        pthread_mutex_unlock(&mu);
        if (st != 200) {
            continue;
        }
        size_t k;
        const json_t *r;
        json_array_foreach(json_object_get(post_body(i), "records"), k, r)
        {
            assert_string_not_equal(json_string_value(json_object_get(r, "model")), "bad");
            requests += json_integer_value(json_object_get(r, "requests"));
            acked++;
        }
    }
    assert_int_equal(acked, 4);
    assert_int_equal(requests, 8);
    assert_int_equal(batches_metric("refused"), 1);
    assert_int_equal(batches_metric("split"), 2);
    flush_all();
    assert_int_equal(n_posts(), n); /* nothing left to send */
    env_stop();
}

static int denied_lines, not_found_lines;

static void usage_sink(enum log_level level, const char *line, size_t len, void *arg)
{
    (void)level;
    (void)len;
    (void)arg;
    denied_lines += strstr(line, "usage batch denied by vault policy (403)") != NULL;
    not_found_lines += strstr(line, "usage path not found in vault (404)") != NULL;
}

/*
 * 403 (the agent's policy does not cover the tenant's usage path) and 404
 * (wrong vault.mount) are fixed by an admin, after which the batch goes
 * through as it is: kept and re-sent with its id, counted under their own
 * results, and logged once per tenant per 5 minutes, not per report.
 */
static void test_403_404_retried(void **state)
{
    (void)state;
    env_start(1000, 500);
    denied_lines = not_found_lines = 0;
    log_set_sink(usage_sink, NULL);
    rec("openai", "a", "ok", 1, 1, 0);
    for (int i = 0; i < 3; i++) {
        atomic_store(&next_status, 403);
        flush_all();
    }
    atomic_store(&next_status, 404);
    flush_all();
    atomic_store(&next_status, 404);
    flush_all();
    assert_int_equal(n_posts(), 5);
    assert_int_equal(usage_pending(E.u), 1);
    assert_int_equal(usage_dropped(E.u), 0);
    for (size_t i = 1; i < 5; i++) {
        assert_string_equal(post_id(i), post_id(0));
    }
    assert_int_equal(batches_metric("denied"), 3);
    assert_int_equal(batches_metric("not_found"), 2);
    assert_int_equal(denied_lines + not_found_lines, 1); /* rate limited per tenant */
    flush_all();                                         /* fixed */
    assert_int_equal(n_posts(), 6);
    assert_string_equal(post_id(5), post_id(0));
    assert_int_equal(usage_pending(E.u), 0);
    /* After a success the next 404 is logged at once. */
    rec("openai", "a", "ok", 1, 1, 0);
    atomic_store(&next_status, 404);
    flush_all();
    assert_int_equal(denied_lines, 1);
    assert_int_equal(not_found_lines, 1);
    log_set_sink(NULL, NULL);
    env_stop();
}

/* ---- the journal (usage.journal_dir) ----------------------------------------------------------
 */

static void journal_dir_new(void)
{
    snprintf(E.journal, sizeof(E.journal), "/tmp/byok-journal-XXXXXX");
    assert_non_null(mkdtemp(E.journal));
}

static void journal_dir_rm(void)
{
    char p[128];
    static const char *const names[] = {"usage.log", "usage.snapshot", "usage.snapshot.tmp",
                                        "usage.snapshot.bad"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(p, sizeof(p), "%s/%s", E.journal, names[i]);
        unlink(p);
    }
    rmdir(E.journal);
    E.journal[0] = '\0';
}

static long long posted_requests(size_t i)
{
    long long n = 0;
    size_t k;
    const json_t *r;
    json_array_foreach(json_object_get(post_body(i), "records"), k, r)
    {
        n += json_integer_value(json_object_get(r, "requests"));
    }
    return n;
}

/* Unacknowledged usage is sent by the next start; acknowledged usage is not sent again. */
static void test_journal_restart(void **state)
{
    (void)state;
    journal_dir_new();
    env_start(1000, 500);
    rec("openai", "gpt-4o", "ok", 10, 5, 0.5);
    rec("openai", "gpt-4o", "ok", 20, 5, 0.25);
    rec("anthropic", "claude", "ok", 7, 3, 1.0);
    env_stop();
    env_start(1000, 500);
    assert_int_equal(usage_pending(E.u), 2);
    assert_true(usage_unreported_usd(E.u, "acme") == 1.75);
    flush_until(1);
    assert_int_equal(posted_requests(0), 3);
    assert_int_equal(usage_pending(E.u), 0);
    env_stop();
    env_start(1000, 500);
    assert_int_equal(usage_pending(E.u), 0);
    usage_flush(E.u);
    assert_int_equal(n_posts(), 0);
    env_stop();
    journal_dir_rm();
}

/* A batch sent but not acknowledged is sent again by the next start under the same id. */
static void test_journal_keeps_batch_id(void **state)
{
    (void)state;
    journal_dir_new();
    env_start(1000, 500);
    rec("openai", "gpt-4o", "ok", 1, 1, 0.1);
    atomic_store(&next_status, 503);
    flush_until(1);
    char id[160];
    snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(post_body(0), "batch_id")));
    rec("openai", "gpt-4o", "ok", 1, 1, 0.1); /* an open row besides the waiting batch */
    env_stop();
    env_start(1000, 500);
    assert_int_equal(usage_pending(E.u), 2);
    flush_until(1);
    assert_string_equal(json_string_value(json_object_get(post_body(0), "batch_id")), id);
    assert_int_equal(posted_requests(0), 1);
    flush_until(2);
    assert_string_not_equal(json_string_value(json_object_get(post_body(1), "batch_id")), id);
    assert_int_equal(posted_requests(1), 1);
    env_stop();
    journal_dir_rm();
}

/* A crash (no snapshot, no clean-up): every record appended before it is sent by the next start. */
static void test_journal_crash(void **state)
{
    (void)state;
    journal_dir_new();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        env_start(1000, 500);
        rec("openai", "gpt-4o", "ok", 10, 5, 0.5);
        rec("openai", "gpt-4o", "client_closed", 3, 0, 0.01);
        _exit(0);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    env_start(1000, 500);
    assert_int_equal(usage_pending(E.u), 2); /* (flush_until would wait for ever) */
    flush_until(1);
    assert_int_equal(json_array_size(json_object_get(post_body(0), "records")), 2);
    assert_int_equal(posted_requests(0), 2);
    env_stop();
    journal_dir_rm();
}

/* Writes name in the journal directory. */
static void journal_file(const char *name, const char *text)
{
    char p[128];
    snprintf(p, sizeof(p), "%s/%s", E.journal, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

#define JROW(seq, req)                                                                             \
    "{\"s\":" #seq ",\"tenant\":\"acme\",\"ts\":\"2026-11-27T10:00:00Z\",\"provider\":"            \
    "\"openai\",\"model\":\"gpt-4o\",\"key_type\":\"production\",\"app\":\"web\","                 \
    "\"requests\":" #req ",\"prompt_tokens\":1,\"completion_tokens\":1,\"cached_tokens\":0,"       \
    "\"cost_usd\":0.5,\"status\":\"ok\",\"estimated_requests\":0}\n"

/*
 * Log lines the snapshot already holds (its rec_seq) are skipped; a torn
 * last line and rows that are not rows are skipped; an unreadable snapshot
 * is set aside.
 */
static void test_journal_replay_edges(void **state)
{
    (void)state;
    journal_dir_new();
    journal_file("usage.snapshot", "{\"v\":1,\"rec_seq\":5,\"tenants\":[]}");
    journal_file("usage.log", JROW(4, 100) JROW(5, 100)
                                  JROW(6, 2) "{\"s\":7,\"tenant\":\"Bad Tenant\",\"requests\":1}\n"
                                             "{\"s\":8,\"tenant\":\"acme\",\"requests\":-1}\n"
                                             "{\"s\":9,\"requests\":1}\n"
                                             "{\"s\":10,\"tenant\":\"ac");
    env_start(1000, 500);
    assert_int_equal(usage_pending(E.u), 1);
    flush_until(1);
    assert_int_equal(posted_requests(0), 2);
    env_stop();
    /* The snapshot written at start holds what was loaded, and the next start finds it sent. */
    journal_file("usage.snapshot", "{not json");
    journal_file("usage.log", JROW(1, 3));
    env_start(1000, 500);
    assert_int_equal(usage_pending(E.u), 1);
    flush_until(1);
    assert_int_equal(posted_requests(0), 3);
    char p[128];
    snprintf(p, sizeof(p), "%s/usage.snapshot.bad", E.journal);
    assert_int_equal(access(p, F_OK), 0);
    env_stop();
    journal_dir_rm();
}

/*
 * The budget lease node name: node_id and random bits, new at every start
 * without a journal, kept by the journal (a restarted agent replaces its own
 * hold at the plugin).
 */
static void test_journal_keeps_lease_node(void **state)
{
    (void)state;
    env_start(1000, 500);
    char first[160];
    snprintf(first, sizeof(first), "%s", usage_lease_node(E.u));
    assert_int_equal(strncmp(first, "n1-", 3), 0);
    assert_int_equal(strlen(first), strlen("n1-") + 8);
    env_stop();
    env_start(1000, 500);
    assert_string_not_equal(usage_lease_node(E.u), first);
    env_stop();
    journal_dir_new();
    env_start(1000, 500);
    snprintf(first, sizeof(first), "%s", usage_lease_node(E.u));
    env_stop();
    env_start(1000, 500);
    assert_string_equal(usage_lease_node(E.u), first);
    env_stop();
    journal_dir_rm();
}

/* Two agents must not share a journal. */
static void test_journal_locked(void **state)
{
    (void)state;
    journal_dir_new();
    env_start(1000, 500);
    struct usage *other = usage_new(E.base, E.vault, E.cfg);
    char err[256];
    assert_int_equal(usage_journal_open(other, E.journal, err, sizeof(err)), ERR_CONFIG);
    assert_non_null(strstr(err, "in use by another process"));
    usage_free(other);
    other = usage_new(E.base, E.vault, E.cfg);
    assert_int_equal(usage_journal_open(other, "/nonexistent/dir", err, sizeof(err)), ERR_CONFIG);
    assert_non_null(strstr(err, "usage.journal_dir: /nonexistent/dir"));
    usage_free(other);
    env_stop();
    journal_dir_rm();
}

int main(void)
{
    /* The in-process Vault writes to sockets the client may have closed. */
    signal(SIGPIPE, SIG_IGN);
    jalloc_install();
    if (secret_heap_init(1 << 16) != ERR_OK) {
        return 1;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    atomic_store(&next_status, 200);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aggregation_and_totals),
        cmocka_unit_test(test_estimated_requests),
        cmocka_unit_test(test_cache_writes),
        cmocka_unit_test(test_retry_keeps_batch_id),
        cmocka_unit_test(test_refused_batch_dropped),
        cmocka_unit_test(test_batches_split),
        cmocka_unit_test(test_batches_bounded_by_bytes),
        cmocka_unit_test(test_batch_bytes_count_escapes),
        cmocka_unit_test(test_pending_bound),
        cmocka_unit_test(test_batch_id_unique_per_start),
        cmocka_unit_test(test_outage_aggregates),
        cmocka_unit_test(test_bound_drops_oldest_waiting),
        cmocka_unit_test(test_sealed_oldest_first),
        cmocka_unit_test(test_by_model_capped),
        cmocka_unit_test(test_reload_keeps_report_schedule),
        cmocka_unit_test(test_413_batch_split),
        cmocka_unit_test(test_413_half_retried_with_its_id),
        cmocka_unit_test(test_413_one_row_dropped),
        cmocka_unit_test(test_400_one_record_split),
        cmocka_unit_test(test_403_404_retried),
        cmocka_unit_test(test_journal_restart),
        cmocka_unit_test(test_journal_keeps_batch_id),
        cmocka_unit_test(test_journal_crash),
        cmocka_unit_test(test_journal_replay_edges),
        cmocka_unit_test(test_journal_locked),
        cmocka_unit_test(test_journal_keeps_lease_node),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    curl_global_cleanup();
    return rc;
}
