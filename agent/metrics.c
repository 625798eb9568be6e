/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Series live in one chained hash table keyed by (metric, labels). The
 * families table below is the single place that names and documents them.
 */
#include "agent/metrics.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "common/utf8.h"

static const double metrics_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                         0.25,   0.5,   1,      2.5,   5,    10,    30,   60};
#define METRICS_NBUCKETS (sizeof(metrics_buckets) / sizeof(metrics_buckets[0]))
#define METRICS_HASH 4096

static const struct {
    const char *name;
    const char *type;
    const char *help;
} metrics_families[M__COUNT] = {
    [M_REQUESTS] = {"byok_requests_total", "counter", "Requests answered, by route and status."},
    [M_REQUEST_SECONDS] = {"byok_request_duration_seconds", "histogram",
                           "Time from request to the end of the response, by route."},
    [M_UPSTREAM] = {"byok_upstream_requests_total", "counter",
                    "Provider calls, by provider and HTTP status (0: no answer)."},
    [M_UPSTREAM_SECONDS] = {"byok_upstream_first_byte_seconds", "histogram",
                            "Time from sending to a provider until its first byte."},
    [M_ERRORS] = {"byok_errors_total", "counter", "Error responses, by error code."},
    [M_FAILOVERS] = {"byok_failovers_total", "counter",
                     "Attempts that failed over to the next candidate, by provider."},
    [M_TOKENS] =
        {"byok_tokens_total", "counter",
         "Tokens by tenant, provider, model and kind (prompt, completion, cached, cache_write)."},
    [M_COST] = {"byok_cost_usd_total", "counter", "Cost in USD from catalog prices."},
    [M_CACHE] = {"byok_keycache_lookups_total", "counter",
                 "Key lookups that failed (result=error: the key could not be held); hits, "
                 "misses and fetches are in byok_keycache_total."},
    [M_USAGE_BATCHES] = {"byok_usage_batches_total", "counter",
                         "Usage batches sent to Vault by result: ok, retry (unreachable, "
                         "5xx, 429), denied (403) and not_found (404) (kept and retried), "
                         "refused (400, dropped), split (413, or 400 naming one record: sent "
                         "as two halves), too_large (413 on one row, dropped)."},
    [M_USAGE_ESTIMATED] = {"byok_usage_estimated_total", "counter",
                           "Calls counted with estimated tokens (no final usage from the "
                           "provider: the app left, the stream was cut, or usage not sent)."},
    [M_COOLDOWN_SKIPS] = {"byok_cooldown_skips_total", "counter",
                          "Candidates not called because the provider's Retry-After for the "
                          "tenant's key had not passed, by provider."},
    [M_RATE_LIMITED] = {"byok_rate_limited_total", "counter",
                        "Calls refused (rpm_limit, tpm_limit) and candidates skipped (rate_limit: "
                        "the key's) by this agent's own rate limits, by tenant and limit."},
    [M_DEMOTIONS] = {"byok_provider_demotions_total", "counter",
                     "Providers demoted after upstream.health_failures consecutive connect errors, "
                     "TLS failures, timeouts or 5xx (tried after the healthy candidates for "
                     "upstream.health_demote_s), by provider."},
    [M_BUDGET_REFUSED] = {"byok_budget_refused_total", "counter",
                          "Candidates not called because the tenant's monthly budget "
                          "(max_monthly_cost) did not cover their estimate (reason=exceeded) or "
                          "no budget lease could be had (reason=unavailable), by tenant."},
    [M_SERVER_TOOLS] = {"byok_server_tool_requests_total", "counter",
                        "Provider-side tool calls billed apart from tokens, by tenant, provider, "
                        "model and tool (web_search: Anthropic's web search requests)."},
    [M_USAGE_CLAMPED] = {"byok_usage_clamped_total", "counter",
                         "Calls whose provider-reported usage exceeded what the request and the "
                         "model allow and was lowered to it, by provider and field (prompt, "
                         "completion, web_search)."},
};

struct mseries {
    enum metric_id id;
    char *labels;
    double value;             /* counters; histogram sum */
    unsigned long long count; /* histogram count */
    unsigned long long *buckets;
    struct mseries *next;  /* hash chain */
    struct mseries *order; /* creation order, for rendering */
};

static struct mseries *metrics_table[METRICS_HASH];
static struct mseries *metrics_first, *metrics_last;
static size_t metrics_nseries;
static size_t metrics_nmodel; /* of them, in families labelled by model */
static unsigned long long metrics_dropped;

static bool metrics_is_hist(enum metric_id id)
{
    return strcmp(metrics_families[id].type, "histogram") == 0;
}

/* Families whose label sets grow with the model names apps and providers use. */
static bool metrics_by_model(enum metric_id id)
{
    return id == M_TOKENS || id == M_COST || id == M_SERVER_TOOLS;
}

static struct mseries *metrics_get(enum metric_id id, const char *labels)
{
    unsigned h = 2166136261u ^ (unsigned)id;
    for (const char *p = labels; *p; p++) {
        h = (h ^ (unsigned char)*p) * 16777619u;
    }
    h %= METRICS_HASH;
    for (struct mseries *s = metrics_table[h]; s != NULL; s = s->next) {
        if (s->id == id && strcmp(s->labels, labels) == 0) {
            return s;
        }
    }
    bool by_model = metrics_by_model(id);
    if (metrics_nseries >= METRICS_MAX_SERIES ||
        (by_model && metrics_nmodel >= METRICS_MAX_MODEL_SERIES)) {
        metrics_dropped++;
        return NULL;
    }
    struct mseries *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    s->id = id;
    s->labels = strdup(labels);
    if (metrics_is_hist(id)) {
        s->buckets = calloc(METRICS_NBUCKETS, sizeof(*s->buckets));
    }
    if (s->labels == NULL || (metrics_is_hist(id) && s->buckets == NULL)) {
        free(s->labels);
        free(s->buckets);
        free(s);
        return NULL;
    }
    s->next = metrics_table[h];
    metrics_table[h] = s;
    if (metrics_last != NULL) {
        metrics_last->order = s;
    } else {
        metrics_first = s;
    }
    metrics_last = s;
    metrics_nseries++;
    metrics_nmodel += by_model;
    return s;
}

void metrics_add(enum metric_id id, double v, const char *labels)
{
    struct mseries *s = metrics_get(id, labels != NULL ? labels : "");
    if (s != NULL) {
        s->value += v;
    }
}

void metrics_observe(enum metric_id id, double seconds, const char *labels)
{
    struct mseries *s = metrics_get(id, labels != NULL ? labels : "");
    if (s == NULL || s->buckets == NULL) {
        return;
    }
    s->value += seconds;
    s->count++;
    for (size_t i = 0; i < METRICS_NBUCKETS; i++) {
        if (seconds <= metrics_buckets[i]) {
            s->buckets[i]++;
        }
    }
}

/*
 * The text of the character at p in a label value (at most 3 bytes): the
 * text format's escapes for '\\', '"' and newline, U+FFFD for a byte that
 * starts no well-formed UTF-8 (a scraper refuses the whole exposition for
 * one invalid value), else the character. Sets *ret_in to the bytes of p it
 * stands for.
 */
static size_t metrics_value_char(const char *p, char out[4], size_t *ret_in)
{
    *ret_in = 1;
    if (*p == '"' || *p == '\\' || *p == '\n') {
        out[0] = '\\';
        out[1] = *p == '\n' ? 'n' : *p;
        return 2;
    }
    size_t n = utf8_char_len(p);
    if (n == 0) {
        return utf8_put_replacement(out);
    }
    memcpy(out, p, n);
    *ret_in = n;
    return n;
}

static size_t metrics_value_len(const char *v)
{
    size_t total = 0, in;
    char c[4];
    for (; *v != '\0'; v += in) {
        if (*v >= 0x20 && *v < 0x7f && *v != '"' && *v != '\\') {
            total++;
            in = 1;
        } else {
            total += metrics_value_char(v, c, &in);
        }
    }
    return total;
}

/*
 * The cap on each value's text when the values do not fit in room together:
 * shorter values keep their whole text, the longer ones share what is left
 * equally (so a long model name never pushes out the labels after it).
 */
static size_t metrics_value_cap(const size_t *len, size_t n, size_t room)
{
    bool capped[METRICS_MAX_PAIRS] = {false};
    size_t left = n;
    for (;;) {
        size_t cap = room / left;
        bool changed = false;
        for (size_t i = 0; i < n; i++) {
            if (!capped[i] && len[i] <= cap) {
                capped[i] = true;
                room -= len[i];
                left--;
                changed = true;
            }
        }
        if (left == 0) {
            return SIZE_MAX;
        }
        if (!changed) {
            return cap;
        }
    }
}

/*
 * Hand-written rather than snprintf: this runs several times per request.
 * Every key is written; when the values do not all fit, the longest are cut
 * between whole characters and escapes (metrics_value_cap).
 */
void metrics_labels(char *out, size_t size, ...)
{
    const char *keys[METRICS_MAX_PAIRS], *vals[METRICS_MAX_PAIRS];
    size_t vlen[METRICS_MAX_PAIRS];
    size_t n = 0, fixed = 0, total = 0;
    va_list ap;
    va_start(ap, size);
    const char *k;
    while (n < METRICS_MAX_PAIRS && (k = va_arg(ap, const char *)) != NULL) {
        const char *v = va_arg(ap, const char *);
        keys[n] = k;
        vals[n] = v != NULL ? v : "";
        vlen[n] = metrics_value_len(vals[n]);
        fixed += strlen(k) + 4; /* [,]k="" */
        total += vlen[n];
        n++;
    }
    va_end(ap);
    out[0] = '\0';
    /* fixed counts one ',' too many: that byte is the NUL's. */
    if (n == 0 || fixed > size) {
        return; /* the keys alone do not fit: a caller's buffer is too small */
    }
    size_t room = size - fixed;
    size_t cap = total <= room ? SIZE_MAX : metrics_value_cap(vlen, n, room);
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            out[len++] = ',';
        }
        size_t kl = strlen(keys[i]);
        memcpy(out + len, keys[i], kl);
        len += kl;
        out[len++] = '=';
        out[len++] = '"';
        size_t used = 0, in;
        char c[4];
        for (const char *p = vals[i]; *p != '\0'; p += in) {
            if (*p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\') {
                /* Printable ASCII: the common case, copied as is. */
                if (used + 1 > cap) {
                    break;
                }
                out[len++] = *p;
                used++;
                in = 1;
                continue;
            }
            size_t cl = metrics_value_char(p, c, &in);
            if (used + cl > cap) {
                break;
            }
            memcpy(out + len, c, cl);
            len += cl;
            used += cl;
        }
        out[len++] = '"';
    }
    out[len] = '\0';
}

enum err metrics_gauge(struct buf *out, const char *name, const char *help, double v)
{
    return buf_printf(out, "# HELP %s %s\n# TYPE %s gauge\n%s %.17g\n", name, help, name, name, v);
}

enum err metrics_render(struct buf *out)
{
    enum err e = ERR_OK;
    for (int id = 0; id < M__COUNT && e == ERR_OK; id++) {
        const char *name = metrics_families[id].name;
        e = buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, metrics_families[id].help, name,
                       metrics_families[id].type);
        for (struct mseries *s = metrics_first; s != NULL && e == ERR_OK; s = s->order) {
            if (s->id != (enum metric_id)id) {
                continue;
            }
            const char *sep = s->labels[0] != '\0' ? "," : "";
            if (s->buckets == NULL) {
                e = buf_printf(out, "%s{%s} %.17g\n", name, s->labels, s->value);
                continue;
            }
            /* Prometheus histograms are cumulative: bucket i counts observations <= le. */
            for (size_t i = 0; i < METRICS_NBUCKETS && e == ERR_OK; i++) {
                e = buf_printf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, s->labels, sep,
                               metrics_buckets[i], s->buckets[i]);
            }
            if (e == ERR_OK) {
                e = buf_printf(out,
                               "%s_bucket{%s%sle=\"+Inf\"} %llu\n%s_sum{%s} %.17g\n"
                               "%s_count{%s} %llu\n",
                               name, s->labels, sep, s->count, name, s->labels, s->value, name,
                               s->labels, s->count);
            }
        }
    }
    if (e == ERR_OK) {
        e = buf_printf(out,
                       "# HELP byok_metrics_dropped_series_total Observations dropped because "
                       "the series limit was reached.\n# TYPE byok_metrics_dropped_series_total "
                       "counter\nbyok_metrics_dropped_series_total %llu\n",
                       metrics_dropped);
    }
    return e;
}

void metrics_reset(void)
{
    struct mseries *s = metrics_first;
    while (s != NULL) {
        struct mseries *n = s->order;
        free(s->labels);
        free(s->buckets);
        free(s);
        s = n;
    }
    memset(metrics_table, 0, sizeof(metrics_table));
    metrics_first = metrics_last = NULL;
    metrics_nseries = 0;
    metrics_nmodel = 0;
    metrics_dropped = 0;
}
