/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Per-tenant state: running totals (by provider and by provider/model), open
 * rows receiving new records, and a FIFO of sealed batches awaiting
 * acknowledgement. One batch per tenant is in flight at a time, so batches are
 * acknowledged in order and a retry never races its own original. Open rows
 * are sealed only once every earlier batch is acknowledged: during a Vault
 * outage new calls keep adding to the open rows (one per provider, model,
 * app, key type and status) instead of piling up a new batch every interval.
 *
 * With usage.journal_dir set, every record is also appended to a journal and
 * the whole unacknowledged state is snapshotted at each report (journal.h):
 * a restarted agent loads it and sends what was not acknowledged, batches
 * under the ids they had (the plugin counts a batch once by its id).
 */
#include "agent/usage.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "agent/journal.h"
#include "agent/metrics.h"
#include "common/jsonw.h"
#include "common/log.h"

/*
 * Distinct provider/model totals kept per tenant; past it calls count under
 * "<provider>/other" (the plugin's month ledger folds the same way), so a
 * stream of made-up model names cannot grow memory without bound.
 */
#define USAGE_MAX_MODELS 256
/*
 * A batch's JSON stays within this many bytes (besides usage.batch_records
 * rows): the plugin refuses request data over 1 MiB (400, and a refused batch
 * is dropped), and Vault hands the plugin the body re-encoded, where each of
 * < > & in a string becomes six bytes. Measured as Vault will send it, with
 * the other half of the plugin's limit left as margin.
 */
#define USAGE_BATCH_MAX_BYTES ((size_t)512 * 1024)
/* The batch's own JSON around its records: {"batch_id":"<id up to 127>","records":[...]}. */
#define USAGE_BATCH_FRAME_BYTES ((size_t)256)
/* How much of the plugin's error message a "refused" log line carries. */
#define USAGE_REFUSAL_MAX 300
/*
 * A tenant's batches refused 403 (the agent's policy) or 404 (no such mount)
 * are retried every report until an admin fixes it: one log line per tenant
 * this often, with the attempts since the last, not one per report.
 */
#define USAGE_DENIED_LOG_S 300
/* The plugin's longest batch_id (plugin/paths_usage.c USAGE_MAX_BATCH_ID). */
#define USAGE_MAX_BATCH_ID 128
/* Largest count a journal row may carry (the plugin's month total bound, 10^18). */
#define USAGE_MAX_JOURNAL_COUNT 1000000000000000000LL

struct urow;

/* Rows are kept as structs (JSON is built only to send), oldest first. */
struct ubatch {
    char id[USAGE_MAX_BATCH_ID + 1];
    /*
     * A batch refused 413 (too large for Vault's max_request_size, or a proxy's
     * limit) is split in two halves, and so on: the batch as sealed is node 1
     * and the halves of node k are nodes 2k and 2k+1. A half's id is the sealed
     * id (its first root_len characters) then "." and the node in hex: unique,
     * fixed once made, so a half re-sent after a failure keeps its id. A
     * batch holds at most 10,000 rows (usage.batch_records): 14 halvings reach
     * one row, so a node stays below 2^15 and an id within 118 + 5 characters.
     */
    size_t root_len;
    unsigned long node;
    struct urow *rows;
    size_t n;
    struct ubatch *next;
};

struct utotals {
    long long requests, prompt_tokens, completion_tokens, cached_tokens;
    long long estimated_requests; /* of requests, those counted with estimated tokens */
    /*
     * Prompt-cache writes (part of prompt_tokens): in the totals since start
     * (GET /v1/byok/usage) only; batch rows and the journal do not carry them
     * (their cost_usd does).
     */
    long long cache_write_tokens;
    double cost_usd;
};

/* Totals under a name (a provider, or "provider/model"). */
struct unamed {
    char name[CONFIG_MAX_NAME + 260];
    unsigned long long hash; /* of name: compared before the name */
    struct utotals t;
    struct unamed *next;
};

/*
 * One batch row: requests with the same provider, model, app, key type and
 * status since the last seal are summed into one record ("requests": N), so
 * the hot path adds integers instead of building JSON per request.
 */
struct urow {
    char provider[CONFIG_MAX_NAME + 1];
    char model[257];
    char app[CONFIG_MAX_NAME + 1];
    char key_type[CONFIG_MAX_NAME + 1];
    char status[48];
    char ts[32];
    unsigned long long key; /* hash of the five fields above: compared before them */
    struct utotals t;
    struct urow *next;
};

struct utenant {
    char *name;
    struct utotals totals;
    struct unamed *by_provider, *by_model;
    size_t n_by_provider, n_by_model;
    struct urow *open; /* rows not yet in a batch */
    size_t n_open;
    struct ubatch *sealed, *sealed_tail;
    struct vault_req *inflight;
    bool busy; /* a batch is in flight (set before the call: it may complete synchronously) */
    time_t denied_logged;       /* when a 403/404 of its batches was last logged (0: never) */
    unsigned long denied_since; /* 403/404 answers since that line */
    struct usage *u;
    struct utenant *next;
};

struct usage {
    struct event_base *base;
    struct vault *vault;
    struct config *cfg;
    struct event *timer;
    struct utenant *tenants;
    size_t pending; /* rows not yet acknowledged (open + sealed) */
    size_t inflight;
    unsigned long long seq;
    unsigned long long dropped;
    unsigned long long over_bound; /* requests dropped over the bound since the last warning */
    long boot;
    /*
     * Drawn at start: two agents given the same node_id and started in the same
     * second (or one restarted within a second, or after a clock step) must not
     * reuse a batch_id, or the plugin would acknowledge the second batch as a
     * duplicate and count nothing of it.
     */
    unsigned long long nonce;
    /*
     * This agent's node name for budget leases (budget.c): usage.node_id and
     * 32 random bits drawn at start, or the name the journal kept, so that an
     * agent restarted on its journal replaces its own hold at the plugin.
     */
    char lease_node[CONFIG_MAX_NAME + 16];
    struct journal *journal;    /* NULL: no journal_dir */
    unsigned long long rec_seq; /* of the last record appended to the journal */
    bool dirty;                 /* the state changed since the last snapshot */
};

static struct utenant *usage_tenant(struct usage *u, const char *name, bool create)
{
    for (struct utenant *t = u->tenants; t != NULL; t = t->next) {
        if (strcmp(t->name, name) == 0) {
            return t;
        }
    }
    if (!create) {
        return NULL;
    }
    struct utenant *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return NULL;
    }
    t->name = strdup(name);
    if (t->name == NULL) {
        free(t);
        return NULL;
    }
    t->u = u;
    t->next = u->tenants;
    u->tenants = t;
    return t;
}

static void usage_add(struct utotals *t, const struct usage_record *r)
{
    t->requests++;
    t->estimated_requests += r->estimated ? 1 : 0;
    t->prompt_tokens += r->tokens.prompt_tokens;
    t->completion_tokens += r->tokens.completion_tokens;
    t->cached_tokens += r->tokens.cached_tokens;
    t->cache_write_tokens += r->tokens.cache_write_tokens;
    t->cost_usd += r->cost_usd;
}

/* FNV-1a over s and its terminating NUL, continuing from h. */
static unsigned long long usage_hash(unsigned long long h, const char *s)
{
    do {
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    } while (*s++ != '\0');
    return h;
}

#define USAGE_HASH_SEED 0xcbf29ce484222325ULL

static struct unamed *usage_find(struct unamed *n, const char *name, unsigned long long h)
{
    for (; n != NULL; n = n->next) {
        if (n->hash == h && strcmp(n->name, name) == 0) {
            return n;
        }
    }
    return NULL;
}

/*
 * The totals under "a" or "a/b", made on first use. Past `cap` names in the
 * list a new "a/b" counts under "a/other" instead (made past the cap: one per a).
 */
static struct unamed *usage_named(struct unamed **list, size_t *count, size_t cap, const char *a,
                                  const char *b)
{
    char name[sizeof(((struct unamed *)0)->name)];
    snprintf(name, sizeof(name), "%s%s%s", a, b != NULL ? "/" : "", b != NULL ? b : "");
    unsigned long long h = usage_hash(USAGE_HASH_SEED, name);
    struct unamed *n = usage_find(*list, name, h);
    if (n == NULL && b != NULL && *count >= cap) {
        snprintf(name, sizeof(name), "%s/other", a);
        h = usage_hash(USAGE_HASH_SEED, name);
        n = usage_find(*list, name, h);
    }
    if (n != NULL) {
        return n;
    }
    n = calloc(1, sizeof(*n));
    if (n == NULL) {
        return NULL;
    }
    memcpy(n->name, name, sizeof(name));
    n->hash = h;
    n->next = *list;
    *list = n;
    (*count)++;
    return n;
}

static json_t *usage_totals_json(const struct utotals *t)
{
    return json_pack("{s:I,s:I,s:I,s:I,s:I,s:f,s:I}", "requests", (json_int_t)t->requests,
                     "prompt_tokens", (json_int_t)t->prompt_tokens, "completion_tokens",
                     (json_int_t)t->completion_tokens, "cached_tokens",
                     (json_int_t)t->cached_tokens, "cache_write_tokens",
                     (json_int_t)t->cache_write_tokens, "cost_usd", t->cost_usd,
                     "estimated_requests", (json_int_t)t->estimated_requests);
}

static void usage_row_drop(struct usage *u, struct urow *r)
{
    u->dirty = true;
    u->dropped += (unsigned long long)r->t.requests;
    u->over_bound += (unsigned long long)r->t.requests;
    u->pending--;
    free(r);
}

/*
 * Drops a tenant's oldest row not in flight: the first of its first waiting
 * batch (the one in flight, if any, is left alone: Vault may be counting it),
 * else its oldest open row. False when it has none.
 */
static bool usage_drop_oldest(struct usage *u, struct utenant *t)
{
    struct ubatch **pb = &t->sealed;
    if (t->busy && *pb != NULL) {
        pb = &(*pb)->next;
    }
    struct ubatch *b = *pb;
    if (b != NULL) {
        struct urow *r = b->rows;
        b->rows = r->next;
        b->n--;
        usage_row_drop(u, r);
        if (b->n == 0) {
            *pb = b->next;
            if (t->sealed_tail == b) {
                t->sealed_tail = pb == &t->sealed ? NULL : t->sealed;
            }
            free(b);
        }
        return true;
    }
    /* The open list is newest first: its last row is the oldest. */
    struct urow **pp = &t->open;
    if (*pp == NULL) {
        return false;
    }
    while ((*pp)->next != NULL) {
        pp = &(*pp)->next;
    }
    usage_row_drop(u, *pp);
    *pp = NULL;
    t->n_open--;
    return true;
}

/* Drops the oldest unsent rows, a tenant at a time, until we are under the bound. */
static void usage_enforce_bound(struct usage *u)
{
    size_t max = (size_t)u->cfg->usage.max_pending_records;
    while (u->pending > max) {
        bool dropped = false;
        for (struct utenant *t = u->tenants; t != NULL && u->pending > max; t = t->next) {
            dropped |= usage_drop_oldest(u, t);
        }
        if (!dropped) {
            break; /* everything left is in flight */
        }
    }
}

static const char *usage_field(const char *s)
{
    return s != NULL ? s : "";
}

/* Now, as a row's ts: RFC 3339, UTC, to the second. */
static void usage_now_ts(char ts[32])
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(ts, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/*
 * Adds totals to the tenant's open row for these five fields, made (with ts,
 * the time of its first call; NULL: now) when there is none. False when out
 * of memory.
 */
static bool usage_row_add(struct usage *u, struct utenant *t, const char *provider,
                          const char *model, const char *app, const char *key_type,
                          const char *status, const char *ts, const struct utotals *add)
{
    unsigned long long key = USAGE_HASH_SEED;
    const char *const fields[] = {provider, model, app, key_type, status};
    for (size_t i = 0; i < 5; i++) {
        key = usage_hash(key, fields[i]);
    }
    struct urow *row = t->open;
    while (row != NULL &&
           !(row->key == key && strcmp(row->provider, provider) == 0 &&
             strcmp(row->model, model) == 0 && strcmp(row->app, app) == 0 &&
             strcmp(row->key_type, key_type) == 0 && strcmp(row->status, status) == 0)) {
        row = row->next;
    }
    if (row == NULL) {
        row = calloc(1, sizeof(*row));
        if (row == NULL) {
            return false;
        }
        snprintf(row->provider, sizeof(row->provider), "%s", provider);
        snprintf(row->model, sizeof(row->model), "%s", model);
        snprintf(row->app, sizeof(row->app), "%s", app);
        snprintf(row->key_type, sizeof(row->key_type), "%s", key_type);
        snprintf(row->status, sizeof(row->status), "%s", status);
        if (ts != NULL) {
            snprintf(row->ts, sizeof(row->ts), "%s", ts);
        } else {
            usage_now_ts(row->ts);
        }
        row->key = key;
        row->next = t->open;
        t->open = row;
        t->n_open++;
        u->pending++;
    }
    row->t.requests += add->requests;
    row->t.estimated_requests += add->estimated_requests;
    row->t.prompt_tokens += add->prompt_tokens;
    row->t.completion_tokens += add->completion_tokens;
    row->t.cached_tokens += add->cached_tokens;
    row->t.cost_usd += add->cost_usd;
    return true;
}

static json_t *usage_row_json(const struct urow *r);

void usage_record(struct usage *u, const struct usage_record *r)
{
    char labels[METRICS_MAX_LABELS];
    static const char *const kinds[] = {"prompt", "completion", "cached", "cache_write"};
    const long long vals[] = {r->tokens.prompt_tokens, r->tokens.completion_tokens,
                              r->tokens.cached_tokens, r->tokens.cache_write_tokens};
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        metrics_labels(labels, sizeof(labels), "tenant", r->tenant, "provider", r->provider,
                       "model", r->model, "kind", kinds[i], NULL);
        metrics_add(M_TOKENS, (double)vals[i], labels);
    }
    metrics_labels(labels, sizeof(labels), "tenant", r->tenant, "provider", r->provider, "model",
                   r->model, NULL);
    metrics_add(M_COST, r->cost_usd, labels);
    if (r->tokens.web_search_requests > 0) {
        metrics_labels(labels, sizeof(labels), "tenant", r->tenant, "provider", r->provider,
                       "model", r->model, "tool", "web_search", NULL);
        metrics_add(M_SERVER_TOOLS, (double)r->tokens.web_search_requests, labels);
    }

    struct utenant *t = usage_tenant(u, r->tenant, true);
    if (t == NULL) {
        u->dropped++;
        return;
    }
    usage_add(&t->totals, r);
    /* Providers are few (the configured ones); models are capped. */
    struct unamed *bp =
        usage_named(&t->by_provider, &t->n_by_provider, (size_t)-1, r->provider, NULL);
    if (bp != NULL) {
        usage_add(&bp->t, r);
    }
    struct unamed *bm =
        usage_named(&t->by_model, &t->n_by_model, USAGE_MAX_MODELS, r->provider, r->model);
    if (bm != NULL) {
        usage_add(&bm->t, r);
    }
    struct utotals add = {0};
    usage_add(&add, r);
    if (!usage_row_add(u, t, usage_field(r->provider), usage_field(r->model), usage_field(r->app),
                       usage_field(r->key_type), usage_field(r->status), NULL, &add)) {
        u->dropped++;
        return;
    }
    if (u->journal != NULL) {
        char ts[32];
        usage_now_ts(ts);
        struct urow one = {.t = add};
        snprintf(one.provider, sizeof(one.provider), "%s", usage_field(r->provider));
        snprintf(one.model, sizeof(one.model), "%s", usage_field(r->model));
        snprintf(one.app, sizeof(one.app), "%s", usage_field(r->app));
        snprintf(one.key_type, sizeof(one.key_type), "%s", usage_field(r->key_type));
        snprintf(one.status, sizeof(one.status), "%s", usage_field(r->status));
        memcpy(one.ts, ts, sizeof(ts));
        json_t *j = usage_row_json(&one);
        if (j != NULL && json_object_set_new(j, "tenant", json_string(t->name)) == 0) {
            journal_append(u->journal, j, ++u->rec_seq);
        }
        json_decref(j);
    }
    u->dirty = true;
    usage_enforce_bound(u);
}

/* Requests in a tenant's rows not yet acknowledged. */
static unsigned long long usage_tenant_pending(const struct utenant *t)
{
    unsigned long long n = 0;
    for (const struct urow *r = t->open; r != NULL; r = r->next) {
        n += (unsigned long long)r->t.requests;
    }
    for (const struct ubatch *b = t->sealed; b != NULL; b = b->next) {
        for (const struct urow *r = b->rows; r != NULL; r = r->next) {
            n += (unsigned long long)r->t.requests;
        }
    }
    return n;
}

double usage_unreported_usd(struct usage *u, const char *tenant)
{
    const struct utenant *t = u != NULL ? usage_tenant(u, tenant, false) : NULL;
    double usd = 0;
    if (t == NULL) {
        return 0;
    }
    for (const struct urow *r = t->open; r != NULL; r = r->next) {
        usd += r->t.cost_usd;
    }
    for (const struct ubatch *b = t->sealed; b != NULL; b = b->next) {
        for (const struct urow *r = b->rows; r != NULL; r = r->next) {
            usd += r->t.cost_usd;
        }
    }
    return usd;
}

json_t *usage_tenant_json(struct usage *u, const char *tenant)
{
    struct utenant *t = usage_tenant(u, tenant, false);
    struct utotals zero = {0};
    json_t *out = usage_totals_json(t != NULL ? &t->totals : &zero);
    json_t *bp = json_object();
    json_t *bm = json_object();
    if (out == NULL || bp == NULL || bm == NULL) {
        json_decref(out);
        json_decref(bp);
        json_decref(bm);
        return NULL;
    }
    unsigned long long pending = 0;
    if (t != NULL) {
        for (struct unamed *n = t->by_provider; n != NULL; n = n->next) {
            json_object_set_new(bp, n->name, usage_totals_json(&n->t));
        }
        for (struct unamed *n = t->by_model; n != NULL; n = n->next) {
            json_object_set_new(bm, n->name, usage_totals_json(&n->t));
        }
        pending = usage_tenant_pending(t);
    }
    json_object_set_new(out, "by_provider", bp);
    json_object_set_new(out, "by_model", bm);
    json_object_set_new(out, "tenant", json_string(tenant));
    json_object_set_new(out, "since", json_integer(u->boot));
    json_object_set_new(out, "pending_requests", json_integer((json_int_t)pending));
    return out;
}

static json_t *usage_row_json(const struct urow *r)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:f,s:s,s:I}", "ts", r->ts, "provider",
                     r->provider, "model", r->model, "key_type", r->key_type, "app", r->app,
                     "requests", (json_int_t)r->t.requests, "prompt_tokens",
                     (json_int_t)r->t.prompt_tokens, "completion_tokens",
                     (json_int_t)r->t.completion_tokens, "cached_tokens",
                     (json_int_t)r->t.cached_tokens, "cost_usd", r->t.cost_usd, "status", r->status,
                     "estimated_requests", (json_int_t)r->t.estimated_requests);
}

/* Reverses a row list (the open list is newest first). */
static struct urow *usage_rows_reverse(struct urow *r)
{
    struct urow *out = NULL;
    while (r != NULL) {
        struct urow *next = r->next;
        r->next = out;
        out = r;
        r = next;
    }
    return out;
}

/*
 * The bytes a row takes in the body Vault passes to the plugin: its JSON plus
 * five for each < > & (Go's encoder writes them as \u003c ...). A row that
 * cannot be encoded counts as a whole batch, so it goes alone.
 */
static size_t usage_row_bytes(const struct urow *r)
{
    json_t *j = usage_row_json(r);
    char *text = j != NULL ? jsonw_dumps(j, NULL) : NULL;
    json_decref(j);
    if (text == NULL) {
        return USAGE_BATCH_MAX_BYTES;
    }
    size_t n = 0;
    for (const char *p = text; *p != '\0'; p++) {
        n += *p == '<' || *p == '>' || *p == '&' ? 6 : 1;
    }
    free(text);
    return n + 1; /* the comma after it */
}

/*
 * Moves open rows into sealed batches, each with a new id, of at most
 * usage.batch_records rows and USAGE_BATCH_MAX_BYTES of JSON (a batch is
 * sealed once: a retry sends the same rows under the same id).
 */
static void usage_seal(struct usage *u, struct utenant *t)
{
    /* Oldest first, so that the first batch holds the oldest rows (sent first, dropped first). */
    struct urow *old = usage_rows_reverse(t->open);
    t->open = NULL;
    while (old != NULL) {
        struct ubatch *b = calloc(1, sizeof(*b));
        if (b == NULL) {
            t->open = usage_rows_reverse(old); /* what is left waits, newest first again */
            return;
        }
        struct urow **tail = &b->rows;
        size_t bytes = USAGE_BATCH_FRAME_BYTES;
        while (old != NULL && b->n < (size_t)u->cfg->usage.batch_records) {
            size_t rb = usage_row_bytes(old);
            if (b->n > 0 && bytes + rb > USAGE_BATCH_MAX_BYTES) {
                break;
            }
            bytes += rb;
            struct urow *r = old;
            old = r->next;
            r->next = NULL;
            *tail = r;
            tail = &r->next;
            t->n_open--;
            b->n++;
        }
        /* At most 63 + 1 + 16 + 1 + 16 + 1 + 20 characters: within the plugin's 128. */
        snprintf(b->id, sizeof(b->id), "%s-%lx-%016llx-%06llu", u->cfg->usage.node_id,
                 (unsigned long)u->boot, u->nonce, ++u->seq);
        b->root_len = strlen(b->id);
        b->node = 1;
        u->dirty = true;
        if (t->sealed_tail != NULL) {
            t->sealed_tail->next = b;
        } else {
            t->sealed = b;
        }
        t->sealed_tail = b;
    }
}

static void usage_batch_free(struct ubatch *b)
{
    while (b->rows != NULL) {
        struct urow *r = b->rows;
        b->rows = r->next;
        free(r);
    }
    free(b);
}

static void usage_send(struct usage *u, struct utenant *t);

/* How the plugin's 400 names one refused record (plugin/paths_usage.c, usage_update). */
#define USAGE_RECORD_REFUSAL "invalid value for field 'records': record "

/*
 * The first message of Vault's {"errors": [...]} reply, cut to fit `out`
 * (usage data and field names only: the plugin never puts a key in it).
 */
static void usage_refusal(const struct buf *body, char *out, size_t size)
{
    snprintf(out, size, "(no message)");
    json_t *root = body != NULL ? json_loadb(body->data, body->len, 0, NULL) : NULL;
    const char *msg = json_string_value(json_array_get(json_object_get(root, "errors"), 0));
    if (msg != NULL && msg[0] != '\0') {
        snprintf(out, size, "%s", msg);
    }
    json_decref(root);
}

/* Removes a tenant's first waiting batch (acknowledged, or dropped) and frees it. */
static void usage_batch_done(struct usage *u, struct utenant *t)
{
    struct ubatch *b = t->sealed;
    t->u->dirty = true;
    u->pending -= b->n;
    t->sealed = b->next;
    if (t->sealed == NULL) {
        t->sealed_tail = NULL;
    }
    usage_batch_free(b);
}

/* Drops a tenant's first waiting batch for good, its requests counted as dropped. */
static void usage_batch_drop(struct usage *u, struct utenant *t)
{
    for (struct urow *r = t->sealed->rows; r != NULL; r = r->next) {
        u->dropped += (unsigned long long)r->t.requests;
    }
    usage_batch_done(u, t);
}

/*
 * Splits b (n >= 2 rows) into two halves in its place, each with its own id
 * derived from the sealed one (see struct ubatch). False when out of memory
 * or the id would not fit (not with batch_records <= 10,000).
 */
static bool usage_batch_split(struct utenant *t, struct ubatch *b)
{
    struct ubatch *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        return false;
    }
    unsigned long node = b->node * 2;
    char first[sizeof(b->id)];
    int n1 = snprintf(first, sizeof(first), "%.*s.%lx", (int)b->root_len, b->id, node);
    int n2 = snprintf(h->id, sizeof(h->id), "%.*s.%lx", (int)b->root_len, b->id, node + 1);
    if (node < b->node || n1 < 0 || n2 < 0 || (size_t)n2 >= sizeof(h->id)) {
        free(h); /* b keeps its id: it is tried again as it is */
        return false;
    }
    memcpy(b->id, first, sizeof(first));
    t->u->dirty = true;
    h->root_len = b->root_len;
    h->node = node + 1;
    b->node = node;
    size_t keep = (b->n + 1) / 2;
    struct urow *r = b->rows;
    for (size_t i = 1; i < keep; i++) {
        r = r->next;
    }
    h->rows = r->next;
    r->next = NULL;
    h->n = b->n - keep;
    b->n = keep;
    h->next = b->next;
    b->next = h;
    if (t->sealed_tail == b) {
        t->sealed_tail = h;
    }
    return true;
}

static void usage_sent(void *arg, enum err e, long status, struct buf *body)
{
    struct utenant *t = arg;
    struct usage *u = t->u;
    t->inflight = NULL;
    t->busy = false;
    u->inflight--;
    struct ubatch *b = t->sealed;
    if (b == NULL) {
        return;
    }
    char why[USAGE_REFUSAL_MAX + 1];
    char st[16];
    snprintf(st, sizeof(st), "%ld", status);
    if (e == ERR_OK && (status == 200 || status == 204)) {
        metrics_add(M_USAGE_BATCHES, 1, "result=\"ok\"");
        t->denied_logged = 0; /* a 403 or 404 after this one is logged at once */
        t->denied_since = 0;
        usage_batch_done(u, t);
        usage_send(u, t);
        return;
    }
    if (e == ERR_OK && status == 400) {
        /*
         * The plugin refused the batch: re-sending it as it is would fail for
         * ever. When it names one record (an agent newer than the plugin, say),
         * the other rows are good: the batch is split in halves as for a 413
         * until the refused row is alone, and only that row is dropped. The
         * plugin checks every record before it writes anything, so the halves'
         * new ids count nothing twice. Any other refusal (the tenant does not
         * exist, the batch id) holds for every row: the batch is dropped.
         */
        usage_refusal(body, why, sizeof(why));
        char rows[24], id[sizeof(b->id)];
        snprintf(rows, sizeof(rows), "%zu", b->n);
        memcpy(id, b->id, sizeof(id));
        if (b->n > 1 && strncmp(why, USAGE_RECORD_REFUSAL, strlen(USAGE_RECORD_REFUSAL)) == 0) {
            if (!usage_batch_split(t, b)) {
                metrics_add(M_USAGE_BATCHES, 1, "result=\"retry\"");
                return; /* out of memory: tried again at the next report */
            }
            log_kv(LOGL_WARN, "usage batch refused by vault for one record; split in two", "tenant",
                   t->name, "batch_id", id, "rows", rows, "first", b->id, "second", b->next->id,
                   "error", why, NULL);
            metrics_add(M_USAGE_BATCHES, 1, "result=\"split\"");
            usage_send(u, t);
            return;
        }
        log_kv(LOGL_ERROR, "usage batch refused by vault; dropped", "tenant", t->name, "batch_id",
               id, "rows", rows, "error", why, NULL);
        metrics_add(M_USAGE_BATCHES, 1, "result=\"refused\"");
        usage_batch_drop(u, t);
        usage_send(u, t);
        return;
    }
    if (e == ERR_OK && status == 413) {
        /*
         * Too large for Vault's max_request_size (or a proxy's body limit): as
         * it is it never goes through. Its halves are sent at once, each under
         * an id of its own (the plugin never saw this one); one row still
         * refused is dropped.
         */
        char rows[24], id[sizeof(b->id)];
        snprintf(rows, sizeof(rows), "%zu", b->n);
        memcpy(id, b->id, sizeof(id));
        if (b->n == 1) {
            usage_refusal(body, why, sizeof(why));
            log_kv(LOGL_ERROR, "usage batch too large for vault (413); dropped", "tenant", t->name,
                   "batch_id", id, "rows", rows, "error", why, NULL);
            metrics_add(M_USAGE_BATCHES, 1, "result=\"too_large\"");
            usage_batch_drop(u, t);
        } else if (usage_batch_split(t, b)) {
            log_kv(LOGL_WARN, "usage batch too large for vault (413); split in two", "tenant",
                   t->name, "batch_id", id, "rows", rows, "first", b->id, "second", b->next->id,
                   NULL);
            metrics_add(M_USAGE_BATCHES, 1, "result=\"split\"");
        } else {
            metrics_add(M_USAGE_BATCHES, 1, "result=\"retry\"");
            return; /* out of memory: tried again at the next report */
        }
        usage_send(u, t);
        return;
    }
    if (e == ERR_OK && (status == 403 || status == 404)) {
        /*
         * The agent's policy does not grant update on this tenant's usage path
         * (403), or vault.mount names no mount (404): an admin's fix, after
         * which the batch goes through as it is. Kept and retried every
         * report; logged once per USAGE_DENIED_LOG_S per tenant.
         */
        metrics_add(M_USAGE_BATCHES, 1,
                    status == 403 ? "result=\"denied\"" : "result=\"not_found\"");
        t->denied_since++;
        time_t now = time(NULL);
        if (t->denied_logged == 0 || now - t->denied_logged >= USAGE_DENIED_LOG_S ||
            now < t->denied_logged) {
            char path[512], n[24];
            snprintf(path, sizeof(path), "%s/tenants/%s/usage", u->cfg->vault.mount, t->name);
            snprintf(n, sizeof(n), "%lu", t->denied_since);
            usage_refusal(body, why, sizeof(why));
            log_kv(LOGL_ERROR,
                   status == 403
                       ? "usage batch denied by vault policy (403); kept and retried: grant the "
                         "agent's policy update on the path"
                       : "usage path not found in vault (404); kept and retried: check "
                         "vault.mount and that the plugin is mounted there",
                   "tenant", t->name, "path", path, "batch_id", b->id, "status", st, "error", why,
                   "attempts", n, NULL);
            t->denied_logged = now;
            t->denied_since = 0;
        }
        return;
    }
    metrics_add(M_USAGE_BATCHES, 1, "result=\"retry\"");
    log_kv(LOGL_WARN, "usage batch not acknowledged; will retry", "tenant", t->name, "batch_id",
           b->id, "error", e != ERR_OK ? err_name(e) : "http status", "status",
           e == ERR_OK ? st : NULL, NULL);
}

static void usage_send(struct usage *u, struct utenant *t)
{
    struct ubatch *b = t->sealed;
    if (b == NULL || t->busy) {
        return;
    }
    json_t *records = json_array();
    for (struct urow *r = b->rows; r != NULL && records != NULL; r = r->next) {
        if (json_array_append_new(records, usage_row_json(r)) != 0) {
            json_decref(records);
            records = NULL;
        }
    }
    json_t *body =
        records != NULL ? json_pack("{s:s,s:o}", "batch_id", b->id, "records", records) : NULL;
    char *text = body != NULL ? jsonw_dumps(body, NULL) : NULL;
    json_decref(body);
    if (text == NULL) {
        return;
    }
    char path[512];
    snprintf(path, sizeof(path), "%s/tenants/%s/usage", u->cfg->vault.mount, t->name);
    u->inflight++;
    t->busy = true;
    struct vault_req *req = NULL;
    if (vault_request(u->vault, "POST", path, text, usage_sent, t, &req) != ERR_OK) {
        u->inflight--;
        t->busy = false;
        return;
    }
    if (t->busy) {
        t->inflight = req;
    }
}

static void usage_tick(evutil_socket_t fd, short what, void *arg)
{
    usage_flush(arg);
}

/* ---- journal ----------------------------------------------------------------------------- */

#define USAGE_SNAPSHOT_VERSION 1

static json_t *usage_rows_json(const struct urow *r)
{
    json_t *a = json_array();
    for (; r != NULL && a != NULL; r = r->next) {
        if (json_array_append_new(a, usage_row_json(r)) != 0) {
            json_decref(a);
            a = NULL;
        }
    }
    return a;
}

/* The whole unacknowledged state: each tenant's open rows (oldest first) and waiting batches. */
static json_t *usage_snapshot_json(struct usage *u)
{
    json_t *tenants = json_array();
    for (struct utenant *t = u->tenants; t != NULL && tenants != NULL; t = t->next) {
        if (t->open == NULL && t->sealed == NULL) {
            continue;
        }
        t->open = usage_rows_reverse(t->open);
        json_t *open = usage_rows_json(t->open);
        t->open = usage_rows_reverse(t->open);
        json_t *sealed = json_array();
        for (const struct ubatch *b = t->sealed; b != NULL && sealed != NULL; b = b->next) {
            if (json_array_append_new(sealed, json_pack("{s:s,s:I,s:I,s:o}", "id", b->id,
                                                        "root_len", (json_int_t)b->root_len, "node",
                                                        (json_int_t)b->node, "rows",
                                                        usage_rows_json(b->rows))) != 0) {
                json_decref(sealed);
                sealed = NULL;
            }
        }
        json_t *tj = open != NULL && sealed != NULL ? json_pack("{s:s,s:O,s:O}", "name", t->name,
                                                                "open", open, "sealed", sealed)
                                                    : NULL;
        json_decref(open);
        json_decref(sealed);
        if (tj == NULL || json_array_append_new(tenants, tj) != 0) {
            json_decref(tenants);
            tenants = NULL;
        }
    }
    if (tenants == NULL) {
        return NULL;
    }
    return json_pack("{s:i,s:I,s:s,s:o}", "v", USAGE_SNAPSHOT_VERSION, "rec_seq",
                     (json_int_t)u->rec_seq, "lease_node", u->lease_node, "tenants", tenants);
}

/*
 * Snapshots the state when it changed since the last snapshot (which empties
 * the log), else syncs the log to disk. A failed snapshot leaves the journal
 * consistent (the old snapshot and the log) and is tried again next time.
 */
static void usage_journal_save(struct usage *u)
{
    if (u->journal == NULL) {
        return;
    }
    if (!u->dirty) {
        journal_sync(u->journal);
        return;
    }
    json_t *doc = usage_snapshot_json(u);
    if (doc != NULL && journal_snapshot(u->journal, doc) == ERR_OK) {
        u->dirty = false;
    }
    json_decref(doc);
}

static bool usage_count_ok(const json_t *v)
{
    return json_is_integer(v) && json_integer_value(v) >= 0 &&
           json_integer_value(v) <= USAGE_MAX_JOURNAL_COUNT;
}

/* A row as the journal holds it, checked; false for anything else (it is skipped). */
static bool usage_row_from_json(const json_t *j, struct urow *out)
{
    static const char *const counts[] = {"requests", "prompt_tokens", "completion_tokens",
                                         "cached_tokens", "estimated_requests"};
    for (size_t i = 0; i < 5; i++) {
        if (!usage_count_ok(json_object_get(j, counts[i]))) {
            return false;
        }
    }
    const json_t *cost = json_object_get(j, "cost_usd");
    double c = json_number_value(cost);
    const char *ts = json_string_value(json_object_get(j, "ts"));
    const char *text[] = {json_string_value(json_object_get(j, "provider")),
                          json_string_value(json_object_get(j, "model")),
                          json_string_value(json_object_get(j, "app")),
                          json_string_value(json_object_get(j, "key_type")),
                          json_string_value(json_object_get(j, "status"))};
    char *dst[] = {out->provider, out->model, out->app, out->key_type, out->status};
    const size_t size[] = {sizeof(out->provider), sizeof(out->model), sizeof(out->app),
                           sizeof(out->key_type), sizeof(out->status)};
    if (!json_is_number(cost) || !(c >= 0 && c <= 1e12) || ts == NULL ||
        strlen(ts) >= sizeof(out->ts)) {
        return false;
    }
    for (size_t i = 0; i < 5; i++) {
        if (text[i] == NULL || strlen(text[i]) >= size[i]) {
            return false;
        }
        memcpy(dst[i], text[i], strlen(text[i]) + 1);
    }
    memcpy(out->ts, ts, strlen(ts) + 1);
    out->t.requests = (long long)json_integer_value(json_object_get(j, "requests"));
    out->t.prompt_tokens = (long long)json_integer_value(json_object_get(j, "prompt_tokens"));
    out->t.completion_tokens =
        (long long)json_integer_value(json_object_get(j, "completion_tokens"));
    out->t.cached_tokens = (long long)json_integer_value(json_object_get(j, "cached_tokens"));
    out->t.estimated_requests =
        (long long)json_integer_value(json_object_get(j, "estimated_requests"));
    out->t.cost_usd = c;
    return true;
}

/* A node name the plugin's budget-lease path takes: 1..128 of [A-Za-z0-9._-]. */
static bool usage_lease_node_ok(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    if (n == 0 || n > 128) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.')) {
            return false;
        }
    }
    return true;
}

/* Adds a journal row to the tenant's open rows; false when it is not one (skipped). */
static bool usage_replay_row(struct usage *u, const char *tenant, const json_t *j)
{
    struct urow r;
    memset(&r, 0, sizeof(r));
    struct utenant *t =
        tenant != NULL && config_name_valid(tenant) ? usage_tenant(u, tenant, true) : NULL;
    return t != NULL && usage_row_from_json(j, &r) &&
           usage_row_add(u, t, r.provider, r.model, r.app, r.key_type, r.status, r.ts, &r.t);
}

/* A waiting batch from the snapshot, appended to the tenant's list with its id. */
static bool usage_replay_batch(struct usage *u, struct utenant *t, const json_t *j)
{
    const char *id = json_string_value(json_object_get(j, "id"));
    const json_t *rows = json_object_get(j, "rows");
    json_int_t root_len = json_integer_value(json_object_get(j, "root_len"));
    json_int_t node = json_integer_value(json_object_get(j, "node"));
    struct ubatch *b = NULL;
    if (id == NULL || strlen(id) == 0 || strlen(id) > USAGE_MAX_BATCH_ID || root_len <= 0 ||
        (size_t)root_len > strlen(id) || node < 1 || node >= (1L << 20) || !json_is_array(rows) ||
        json_array_size(rows) == 0 || (b = calloc(1, sizeof(*b))) == NULL) {
        return false;
    }
    snprintf(b->id, sizeof(b->id), "%s", id);
    b->root_len = (size_t)root_len;
    b->node = (unsigned long)node;
    struct urow **tail = &b->rows;
    size_t i;
    const json_t *rj;
    json_array_foreach(rows, i, rj)
    {
        struct urow *r = calloc(1, sizeof(*r));
        if (r == NULL || !usage_row_from_json(rj, r)) {
            free(r);
            usage_batch_free(b);
            return false;
        }
        *tail = r;
        tail = &r->next;
        b->n++;
    }
    if (t->sealed_tail != NULL) {
        t->sealed_tail->next = b;
    } else {
        t->sealed = b;
    }
    t->sealed_tail = b;
    u->pending += b->n;
    return true;
}

enum err usage_journal_open(struct usage *u, const char *dir, char *errbuf, size_t errlen)
{
    struct journal *j = NULL;
    enum err e = journal_open(dir, &j, errbuf, errlen);
    if (e != ERR_OK) {
        return e;
    }
    json_t *snap = NULL, *records = NULL;
    unsigned long long seq = 0;
    e = journal_load(j, &snap, &records, &seq);
    if (e != ERR_OK) {
        snprintf(errbuf, errlen, "usage.journal_dir: %s: cannot read the journal: %s", dir,
                 err_str(e));
        journal_close(j);
        return e == ERR_NOMEM ? e : ERR_CONFIG;
    }
    const char *node = json_string_value(json_object_get(snap, "lease_node"));
    if (usage_lease_node_ok(node) && strlen(node) < sizeof(u->lease_node)) {
        memcpy(u->lease_node, node, strlen(node) + 1);
    }
    size_t skipped = 0, rows = 0, batches = 0;
    size_t i, k;
    const json_t *tj, *v;
    json_array_foreach(json_object_get(snap, "tenants"), i, tj)
    {
        const char *name = json_string_value(json_object_get(tj, "name"));
        struct utenant *t =
            name != NULL && config_name_valid(name) ? usage_tenant(u, name, true) : NULL;
        json_array_foreach(json_object_get(tj, "sealed"), k, v)
        {
            if (t != NULL && usage_replay_batch(u, t, v)) {
                batches++;
            } else {
                skipped++;
            }
        }
        json_array_foreach(json_object_get(tj, "open"), k, v)
        {
            if (t != NULL && usage_replay_row(u, name, v)) {
                rows++;
            } else {
                skipped++;
            }
        }
    }
    json_array_foreach(records, i, v)
    {
        if (usage_replay_row(u, json_string_value(json_object_get(v, "tenant")), v)) {
            rows++;
        } else {
            skipped++;
        }
    }
    json_decref(snap);
    json_decref(records);
    u->journal = j;
    u->rec_seq = seq;
    if (rows + batches + skipped > 0) {
        char nr[24], nb[24], ns[24];
        snprintf(nr, sizeof(nr), "%zu", rows);
        snprintf(nb, sizeof(nb), "%zu", batches);
        snprintf(ns, sizeof(ns), "%zu", skipped);
        log_kv(skipped > 0 ? LOGL_WARN : LOGL_INFO,
               "usage journal loaded: unacknowledged usage will be sent", "dir", dir, "records", nr,
               "batches", nb, "skipped", ns, NULL);
    }
    /* One snapshot of what was loaded: the log starts empty. */
    u->dirty = true;
    usage_journal_save(u);
    return ERR_OK;
}

void usage_flush(struct usage *u)
{
    if (u->over_bound > 0) {
        char n[32], max[32];
        snprintf(n, sizeof(n), "%llu", u->over_bound);
        snprintf(max, sizeof(max), "%ld", u->cfg->usage.max_pending_records);
        log_kv(LOGL_WARN, "usage rows over usage.max_pending_records; the oldest were dropped",
               "requests", n, "max_pending_records", max, NULL);
        u->over_bound = 0;
    }
    for (struct utenant *t = u->tenants; t != NULL; t = t->next) {
        /* Waiting batches go first (re-sent with their ids); then the open rows get theirs. */
        if (!t->busy && t->sealed == NULL) {
            usage_seal(u, t);
        }
    }
    /* A batch id reaches Vault only once the journal holds it: a restart re-sends it as it is. */
    usage_journal_save(u);
    for (struct utenant *t = u->tenants; t != NULL; t = t->next) {
        if (!t->busy) {
            usage_send(u, t);
        }
    }
}

/* 64 random bits; without a kernel source (no getrandom), the clock and pid, mixed. */
static unsigned long long usage_nonce(void)
{
    unsigned long long n = 0;
    if (getrandom(&n, sizeof(n), 0) == (ssize_t)sizeof(n)) {
        return n;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    n = ((unsigned long long)ts.tv_sec << 30) ^ (unsigned long long)ts.tv_nsec ^
        ((unsigned long long)getpid() << 40);
    n ^= n >> 33;
    n *= 0xff51afd7ed558ccdULL;
    n ^= n >> 33;
    return n;
}

struct usage *usage_new(struct event_base *base, struct vault *v, struct config *cfg)
{
    struct usage *u = calloc(1, sizeof(*u));
    if (u == NULL) {
        return NULL;
    }
    u->base = base;
    u->vault = v;
    u->cfg = config_ref(cfg);
    u->boot = (long)time(NULL);
    u->nonce = usage_nonce();
    snprintf(u->lease_node, sizeof(u->lease_node), "%s-%08llx", cfg->usage.node_id,
             usage_nonce() & 0xffffffffULL);
    u->timer = event_new(base, -1, EV_PERSIST, usage_tick, u);
    if (u->timer == NULL) {
        usage_free(u);
        return NULL;
    }
    struct timeval tv = {cfg->usage.report_interval_s, 0};
    event_add(u->timer, &tv);
    return u;
}

void usage_set_config(struct usage *u, struct config *cfg)
{
    struct config *old = u->cfg;
    u->cfg = config_ref(cfg); /* before the unref: cfg may be the one held */
    /*
     * Only a new interval restarts the timer: re-adding it on every reload
     * would push the next report back each time, and reloads more often
     * than the interval would keep usage from ever being sent.
     */
    if (old->usage.report_interval_s != cfg->usage.report_interval_s) {
        struct timeval tv = {cfg->usage.report_interval_s, 0};
        event_add(u->timer, &tv);
    }
    config_unref(&old);
}

void usage_free(struct usage *u)
{
    if (u == NULL) {
        return;
    }
    /* What is left unacknowledged (a drain that timed out) is sent by the next start. */
    usage_journal_save(u);
    journal_close(u->journal);
    struct utenant *t = u->tenants;
    while (t != NULL) {
        struct utenant *n = t->next;
        vault_request_cancel(t->inflight);
        struct ubatch *b = t->sealed;
        while (b != NULL) {
            struct ubatch *bn = b->next;
            usage_batch_free(b);
            b = bn;
        }
        while (t->open != NULL) {
            struct urow *r = t->open;
            t->open = r->next;
            free(r);
        }
        struct unamed *lists[2] = {t->by_provider, t->by_model};
        for (size_t i = 0; i < 2; i++) {
            while (lists[i] != NULL) {
                struct unamed *n2 = lists[i]->next;
                free(lists[i]);
                lists[i] = n2;
            }
        }
        free(t->name);
        free(t);
        t = n;
    }
    if (u->timer != NULL) {
        event_free(u->timer);
    }
    config_unref(&u->cfg);
    free(u);
}

const char *usage_lease_node(const struct usage *u)
{
    return u->lease_node;
}

size_t usage_inflight(const struct usage *u)
{
    return u->inflight;
}

size_t usage_pending(const struct usage *u)
{
    return u->pending;
}

unsigned long long usage_pending_requests(const struct usage *u)
{
    unsigned long long n = 0;
    for (const struct utenant *t = u->tenants; t != NULL; t = t->next) {
        n += usage_tenant_pending(t);
    }
    return n;
}

unsigned long long usage_dropped(const struct usage *u)
{
    return u->dropped;
}
