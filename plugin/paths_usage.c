/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Path tenants/<t>/usage: agents report usage in batches (update), tenants
 * read month-to-date totals (read). A batch is idempotent by batch_id: agents
 * resend a batch until it is acknowledged, so a replay is acknowledged again
 * and not counted twice.
 *
 * Seen batch ids live in sets sharded by a hash of the id, per month of the
 * batch's first record: tenants/<t>/usage/<YYYY-MM>/batches/<shard>. The
 * month comes from the records, so a replay finds the same shard; the sets
 * of months before the previous one are deleted when a new shard is first
 * written, so storage does not grow with every batch forever.
 *
 * The set is written after the totals, so a failure in between (a storage
 * error, a crash, a batch whose second month's write fails) leaves a batch
 * counted but not marked; the agent then resends it. So each month document
 * also names the batches whose records it holds, in the same write as the
 * counts: a resent batch skips the months that already have it, completes
 * the others, then is marked. Nothing is counted twice and nothing is lost
 * (agents keep a batch in their journal until it is acknowledged). Reads
 * leave that list out.
 *
 * That list is pruned only of ids that no longer need it, never by count
 * alone: once it holds USAGE_MONTH_BATCHES ids, the next batch reads the
 * shards they belong to and drops the ids found there (confirmed: a resend
 * is answered by the shard) and those of months whose sets are pruned. An id
 * whose shard write failed stays until it is resent, however many batches
 * come first. If USAGE_MONTH_MAX_BATCHES unconfirmed ids are left (a storage
 * that failed every shard write for a while), a new batch gets a 503 and is
 * resent later rather than push one out: the document stays bounded.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/envelope.h"
#include "plugin/keystore.h"
#include "plugin/paths.h"

#define USAGE_MAX_RECORDS 10000
#define USAGE_MAX_BATCH_ID 128
#define USAGE_MAX_MODEL 128
#define USAGE_MAX_TOKENS 1000000000000LL /* per record */
#define USAGE_MAX_COST 1.0e9             /* USD per record */
/* Distinct models tracked per month; the rest is summed under "<provider>/other". */
#define USAGE_MAX_MODELS 1024
/* Distinct providers tracked per month; the rest is summed under "other". */
#define USAGE_MAX_PROVIDERS 256
/* A month's total of any count: far above any real use, far below int64 overflow. */
#define USAGE_MAX_TOTAL 1000000000000000000LL
/* How far ahead of the plugin's clock a record's ts may be (agents' clocks drift). */
#define USAGE_MAX_AHEAD_S ((time_t)24 * 3600)
/* Shards of a month's set of seen batch ids, and ids kept per shard (oldest dropped past it). */
#define USAGE_BATCH_SHARDS 64
#define USAGE_MAX_SHARD_IDS 4096
/*
 * Batch ids a month document keeps of its own before it drops those that
 * their shards confirm, and the most it keeps (all unconfirmed: a new batch
 * is refused with a 503). About 160 bytes an id at most.
 */
#define USAGE_MONTH_BATCHES 128
#define USAGE_MONTH_MAX_BATCHES 512
/* Months one batch may touch (records are ordered by time; a batch spans minutes). */
#define USAGE_MAX_MONTHS 3

/* estimated_requests: of requests, those whose tokens the agent estimated (no provider usage). */
static const char *const usage_counts[] = {
    "requests", "prompt_tokens", "completion_tokens", "cached_tokens", "estimated_requests", NULL};

bool paths_usage_id_ok(const char *s, size_t max)
{
    size_t len = s != NULL ? strlen(s) : 0;
    if (len == 0 || len > max) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || c == '.';
        if (!ok) {
            return false;
        }
    }
    return true;
}

static bool usage_text_ok(const char *s, size_t max)
{
    size_t len = strlen(s);
    if (len == 0 || len > max) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c > 0x7e) {
            return false;
        }
    }
    return true;
}

/*
 * "YYYY-MM" of t, the form of the month keys and of the read path's month
 * field, zero-padded (glibc's strftime %Y is not: year 1 gives "1-01"). The
 * modulos only bound the widths for the compiler: t is 1970 or later and
 * keystore_time_parse reads four-digit years.
 */
void paths_usage_month_of(time_t t, char month[8])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    unsigned year = (unsigned)(tm.tm_year + 1900) % 10000U, mon = (unsigned)tm.tm_mon % 12U + 1U;
    snprintf(month, 8, "%04u-%02u", year, mon);
}

/* Checks one record; writes why into msg. Sets *ret_month "YYYY-MM". */
static bool usage_record_ok(const json_t *r, char *msg, size_t size, char *ret_month)
{
    if (!json_is_object(r)) {
        snprintf(msg, size, "each record must be an object");
        return false;
    }
    const char *ts = json_string_value(json_object_get(r, "ts"));
    time_t t = 0;
    if (ts == NULL || keystore_time_parse(ts, &t) != ERR_OK) {
        snprintf(msg, size, "ts must be RFC 3339");
        return false;
    }
    /* A month far ahead would also prune the batch ids that make replays idempotent. */
    if (t > keystore_now() + USAGE_MAX_AHEAD_S) {
        snprintf(msg, size, "ts must not be more than a day ahead of the plugin's clock");
        return false;
    }
    /* The read path takes months from 1970 on: earlier totals could never be read. */
    if (t < 0) {
        snprintf(msg, size, "ts must not be before 1970-01-01T00:00:00Z");
        return false;
    }
    paths_usage_month_of(t, ret_month);
    const char *p = json_string_value(json_object_get(r, "provider"));
    if (p == NULL || !fw_name_valid(p)) {
        snprintf(msg, size, "provider must match [a-z0-9][a-z0-9_-]{0,62}");
        return false;
    }
    const char *model = json_string_value(json_object_get(r, "model"));
    if (model == NULL || !usage_text_ok(model, USAGE_MAX_MODEL)) {
        snprintf(msg, size, "model must be 1..%d printable characters", USAGE_MAX_MODEL);
        return false;
    }
    for (size_t i = 0; usage_counts[i] != NULL; i++) {
        json_t *v = json_object_get(r, usage_counts[i]);
        if (v != NULL && (!json_is_integer(v) || json_integer_value(v) < 0 ||
                          json_integer_value(v) > USAGE_MAX_TOKENS)) {
            snprintf(msg, size, "%s must be an integer between 0 and %lld", usage_counts[i],
                     (long long)USAGE_MAX_TOKENS);
            return false;
        }
    }
    json_t *est = json_object_get(r, "estimated_requests");
    if (est != NULL &&
        json_integer_value(est) > json_integer_value(json_object_get(r, "requests"))) {
        snprintf(msg, size, "estimated_requests must not exceed requests");
        return false;
    }
    json_t *cost = json_object_get(r, "cost_usd");
    if (cost != NULL && (!json_is_number(cost) || !isfinite(json_number_value(cost)) ||
                         json_number_value(cost) < 0 || json_number_value(cost) > USAGE_MAX_COST)) {
        snprintf(msg, size, "cost_usd must be a number between 0 and %.0f", USAGE_MAX_COST);
        return false;
    }
    return true;
}

static json_t *usage_zero(void)
{
    return json_pack("{sIsIsIsIsfsI}", "requests", (json_int_t)0, "prompt_tokens", (json_int_t)0,
                     "completion_tokens", (json_int_t)0, "cached_tokens", (json_int_t)0, "cost_usd",
                     0.0, "estimated_requests", (json_int_t)0);
}

/*
 * Adds record r to the totals tot (NULL: a bucket that could not be made).
 * ERR_NOMEM when a count could not be replaced: the document is then not
 * stored, since a total left behind would lose the record for good once the
 * batch is acknowledged.
 */
static enum err usage_add(json_t *tot, const json_t *r)
{
    if (tot == NULL) {
        return ERR_NOMEM;
    }
    for (size_t i = 0; usage_counts[i] != NULL; i++) {
        json_int_t add = json_integer_value(json_object_get(r, usage_counts[i]));
        json_int_t cur = json_integer_value(json_object_get(tot, usage_counts[i]));
        if (json_object_set_new(tot, usage_counts[i], json_integer(cur + add)) != 0) {
            return ERR_NOMEM;
        }
    }
    double c = json_number_value(json_object_get(tot, "cost_usd")) +
               json_number_value(json_object_get(r, "cost_usd"));
    return json_object_set_new(tot, "cost_usd", json_real(c)) == 0 ? ERR_OK : ERR_NOMEM;
}

/* The bucket name of map, made (all zero) if missing; NULL on out of memory. */
static json_t *usage_bucket(json_t *map, const char *name)
{
    json_t *b = json_object_get(map, name);
    if (b == NULL) {
        b = usage_zero();
        if (b == NULL || json_object_set_new(map, name, b) != 0) {
            return NULL; /* set_new has dropped b */
        }
    }
    return b;
}

static json_t *usage_month_new(const char *month)
{
    json_t *m = usage_zero();
    if (m != NULL && (json_object_set_new(m, "month", json_string(month)) != 0 ||
                      json_object_set_new(m, "by_provider", json_object()) != 0 ||
                      json_object_set_new(m, "by_model", json_object()) != 0)) {
        json_decref(m);
        m = NULL;
    }
    return m;
}

static enum err usage_month_load(struct storage *st, const char *tenant, const char *month,
                                 json_t **ret)
{
    char rest[32], key[STORAGE_MAX_KEY];
    snprintf(rest, sizeof(rest), "usage/%s", month);
    enum err e = keystore_path_tenant(key, sizeof(key), tenant, rest);
    if (e != ERR_OK) {
        return e;
    }
    e = storage_get_json(st, key, ret);
    if (e == ERR_NOTFOUND) {
        *ret = usage_month_new(month);
        return *ret != NULL ? ERR_OK : ERR_NOMEM;
    }
    if (e == ERR_OK && (!json_is_object(json_object_get(*ret, "by_provider")) ||
                        !json_is_object(json_object_get(*ret, "by_model")))) {
        json_decref(*ret);
        *ret = NULL;
        return ERR_PROTO; /* not a month document */
    }
    return e;
}

/* A month document as readers see it: the month's own batch ids are bookkeeping for resends. */
static void usage_month_public(json_t *doc)
{
    json_object_del(doc, "batches");
    json_object_del(doc, "batch_seq");
}

enum err paths_usage_month_to_date(struct storage *st, const char *tenant, json_t **ret)
{
    char month[8];
    paths_usage_month_of(keystore_now(), month);
    json_t *doc = NULL;
    enum err e = usage_month_load(st, tenant, month, &doc);
    if (e != ERR_OK) {
        return e;
    }
    usage_month_public(doc);
    json_object_del(doc, "by_model");
    *ret = doc;
    return ERR_OK;
}

/* The month a batch belongs to: its first record's, or the current one for an empty batch. */
static void usage_batch_month(const json_t *records, char month[8])
{
    char msg[8];
    if (json_array_size(records) == 0 ||
        !usage_record_ok(json_array_get(records, 0), msg, 0, month)) {
        paths_usage_month_of(keystore_now(), month);
    }
}

/*
 * Whether a month's totals can take the batch's records of that month
 * without passing USAGE_MAX_TOTAL (each record is bounded, so these sums
 * cannot overflow). Provider and model buckets are parts of the totals.
 * On false, resp holds the 400.
 */
static bool usage_month_room(const json_t *doc, const json_t *records, const char *month,
                             struct fw_response *resp)
{
    long long sums[sizeof(usage_counts) / sizeof(usage_counts[0])] = {0};
    size_t i;
    const json_t *r;
    json_array_foreach(records, i, r)
    {
        char m[8], msg[8];
        if (!usage_record_ok(r, msg, 0, m) || strcmp(m, month) != 0) {
            continue;
        }
        for (size_t c = 0; usage_counts[c] != NULL; c++) {
            sums[c] += json_integer_value(json_object_get(r, usage_counts[c]));
        }
    }
    for (size_t c = 0; usage_counts[c] != NULL; c++) {
        long long total = json_integer_value(json_object_get(doc, usage_counts[c]));
        if (total < 0 || total > USAGE_MAX_TOTAL - sums[c]) {
            fw_error(resp, "invalid value for field 'records': the %s total of %s would pass %lld",
                     usage_counts[c], month, (long long)USAGE_MAX_TOTAL);
            return false;
        }
    }
    return true;
}

/*
 * Each seen id maps to [records, seq]; the shard's "seq" counts insertions.
 * Past max ids the ids with the lowest seq go (storage writes
 * object keys sorted, so an object's order after a reload is alphabetical,
 * not the order of arrival). A bare integer (sets written before seq) is
 * older than any sequenced id.
 */
static void usage_ids_evict(json_t *ids, size_t max)
{
    while (json_object_size(ids) >= max) {
        const char *oldest = NULL;
        json_int_t min = 0;
        const char *k;
        json_t *v;
        json_object_foreach(ids, k, v)
        {
            json_int_t q = json_is_array(v) ? json_integer_value(json_array_get(v, 1)) : -1;
            if (oldest == NULL || q < min) {
                oldest = k;
                min = q;
            }
        }
        json_object_del(ids, oldest);
    }
}

/*
 * Names batch (its record count in this month, and the month of its shard)
 * in a month document's own list. usage_month_ids_room has made room.
 */
static enum err usage_month_mark(json_t *doc, const char *batch, size_t records,
                                 const char *shard_month)
{
    json_t *ids = json_object_get(doc, "batches");
    if (!json_is_object(ids)) {
        ids = json_object();
        if (ids == NULL || json_object_set_new(doc, "batches", ids) != 0) {
            return ERR_NOMEM;
        }
    }
    json_int_t seq = json_integer_value(json_object_get(doc, "batch_seq")) + 1;
    if (json_object_set_new(doc, "batch_seq", json_integer(seq)) != 0 ||
        json_object_set_new(ids, batch,
                            json_pack("[IIs]", (json_int_t)records, seq, shard_month)) != 0) {
        return ERR_NOMEM;
    }
    return ERR_OK;
}

static enum err usage_shard_key(const char *tenant, const char *month, const char *batch, char *out,
                                size_t size)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)batch; *p != '\0'; p++) {
        h = (h ^ *p) * 16777619u;
    }
    char rest[64];
    snprintf(rest, sizeof(rest), "usage/%s/batches/%02x", month,
             (unsigned)(h % USAGE_BATCH_SHARDS));
    return keystore_path_tenant(out, size, tenant, rest);
}

/* "YYYY-MM" as a month count, for comparisons; -1 if malformed. */
static long usage_month_index(const char *m)
{
    if (strlen(m) < 7 || m[4] != '-') {
        return -1;
    }
    long y = 0, mo = 0;
    for (int i = 0; i < 7; i++) {
        if (i == 4) {
            continue;
        }
        if (m[i] < '0' || m[i] > '9') {
            return -1;
        }
        if (i < 4) {
            y = y * 10 + (m[i] - '0');
        } else {
            mo = mo * 10 + (m[i] - '0');
        }
    }
    return y * 12 + mo - 1;
}

/*
 * Makes room in month document doc's own list of batch ids for one more
 * (see the top of this file). Below USAGE_MONTH_BATCHES ids it does
 * nothing. Else it drops the ids that their shard holds (a resend is
 * answered there) and those whose shard month is before the one preceding
 * now_month (usage_prune deletes those sets: the replay window has closed),
 * reading each shard once. Ids written before the shard month was recorded
 * ([records, seq]) are looked up under the document's own month. Sets
 * *ret_full when USAGE_MONTH_MAX_BATCHES ids remain: none may be dropped.
 */
static enum err usage_month_ids_room(struct storage *st, const char *tenant, json_t *doc,
                                     const char *now_month, bool *ret_full)
{
    json_t *ids = json_object_get(doc, "batches");
    if (!json_is_object(ids) || json_object_size(ids) < USAGE_MONTH_BATCHES) {
        *ret_full = false;
        return ERR_OK;
    }
    const char *doc_month = json_string_value(json_object_get(doc, "month"));
    long keep_from = usage_month_index(now_month) - 1;
    json_t *shards = json_object(); /* shard key -> that shard's document ({} if none) */
    if (shards == NULL) {
        return ERR_NOMEM;
    }
    enum err e = ERR_OK;
    const char *id;
    json_t *v, *tmp;
    json_object_foreach_safe(ids, tmp, id, v)
    {
        const char *m = json_string_value(json_array_get(v, 2));
        if (m == NULL) {
            m = doc_month;
        }
        if (m == NULL || usage_month_index(m) < keep_from) {
            json_object_del(ids, id);
            continue;
        }
        char key[STORAGE_MAX_KEY];
        e = usage_shard_key(tenant, m, id, key, sizeof(key));
        if (e != ERR_OK) {
            break;
        }
        json_t *shard = json_object_get(shards, key);
        if (shard == NULL) {
            e = storage_get_json(st, key, &shard);
            if (e == ERR_NOTFOUND) {
                shard = json_object();
                e = shard != NULL ? ERR_OK : ERR_NOMEM;
            }
            if (e != ERR_OK) {
                break;
            }
            if (json_object_set_new(shards, key, shard) != 0) {
                e = ERR_NOMEM;
                break;
            }
        }
        if (json_object_get(json_object_get(shard, "ids"), id) != NULL) {
            json_object_del(ids, id); /* confirmed */
        }
    }
    json_decref(shards);
    if (e != ERR_OK) {
        return e;
    }
    *ret_full = json_object_size(ids) >= USAGE_MONTH_MAX_BATCHES;
    return ERR_OK;
}

/*
 * Deletes the batch-id sets of months before the one preceding `month`:
 * replays arrive within minutes or hours, never months. Month totals stay.
 */
static enum err usage_prune(struct storage *st, const char *tenant, const char *month)
{
    char prefix[STORAGE_MAX_KEY];
    enum err e = keystore_path_tenant(prefix, sizeof(prefix), tenant, "usage/");
    if (e != ERR_OK) {
        return e;
    }
    long keep_from = usage_month_index(month) - 1;
    char **names = NULL;
    size_t n = 0;
    e = storage_list(st, prefix, &names, &n);
    if (e == ERR_NOTFOUND) {
        return ERR_OK;
    }
    if (e != ERR_OK) {
        return e;
    }
    for (size_t i = 0; i < n; i++) {
        long idx = usage_month_index(names[i]);
        if (strlen(names[i]) != 8 || names[i][7] != '/' || idx < 0 || idx >= keep_from) {
            continue; /* a totals document, the sets we keep, or something else */
        }
        char sets[STORAGE_MAX_KEY];
        if ((size_t)snprintf(sets, sizeof(sets), "%s%sbatches/", prefix, names[i]) >=
            sizeof(sets)) {
            continue;
        }
        char **shards = NULL;
        size_t ns = 0;
        if (storage_list(st, sets, &shards, &ns) != ERR_OK) {
            continue;
        }
        for (size_t j = 0; j < ns; j++) {
            char key[STORAGE_MAX_KEY];
            if ((size_t)snprintf(key, sizeof(key), "%s%s", sets, shards[j]) < sizeof(key)) {
                enum err de = storage_delete(st, key);
                if (de != ERR_OK && de != ERR_NOTFOUND) {
                    e = de;
                }
            }
        }
        storage_keys_free(shards, ns);
    }
    storage_keys_free(names, n);
    return e;
}

enum err paths_usage_tenant_exists(struct keystore *ks, struct storage *st, const char *t)
{
    struct secret *dek = NULL;
    enum err e = envelope_tenant_dek(keystore_envelope(ks), st, t, false, &dek, NULL);
    secret_free(&dek);
    if (e != ERR_NOTFOUND) {
        return e;
    }
    char key[STORAGE_MAX_KEY];
    e = keystore_path_tenant(key, sizeof(key), t, "settings");
    if (e != ERR_OK) {
        return e;
    }
    unsigned char *val = NULL;
    size_t len = 0;
    e = storage_get(st, key, &val, &len);
    free(val);
    return e;
}

static enum err usage_update(struct fw_request *req, struct fw_response *resp)
{
    struct keystore *ks = keystore_of(req->backend);
    if (ks == NULL) {
        return ERR_INTERNAL;
    }
    const char *t = fw_str(req, "tenant");
    const char *batch = fw_str(req, "batch_id");
    json_t *records = fw_json(req, "records");
    if (!paths_usage_id_ok(batch, USAGE_MAX_BATCH_ID)) {
        fw_error(resp, "invalid value for field 'batch_id': 1..%d characters of [A-Za-z0-9._-]",
                 USAGE_MAX_BATCH_ID);
        return ERR_OK;
    }
    if (!json_is_array(records) || json_array_size(records) > USAGE_MAX_RECORDS) {
        fw_error(resp, "invalid value for field 'records': an array of at most %d records",
                 USAGE_MAX_RECORDS);
        return ERR_OK;
    }
    char months[USAGE_MAX_MONTHS][8];
    size_t n_months = 0;
    size_t i;
    json_t *r;
    json_array_foreach(records, i, r)
    {
        char msg[160], month[8];
        if (!usage_record_ok(r, msg, sizeof(msg), month)) {
            /* Before any write; the agent splits a batch refused in these words (usage.c). */
            fw_error(resp, "invalid value for field 'records': record %zu: %s", i, msg);
            return ERR_OK;
        }
        size_t m = 0;
        while (m < n_months && strcmp(months[m], month) != 0) {
            m++;
        }
        if (m == n_months) {
            if (n_months == USAGE_MAX_MONTHS) {
                fw_error(resp,
                         "invalid value for field 'records': a batch spans at most %d "
                         "months",
                         USAGE_MAX_MONTHS);
                return ERR_OK;
            }
            memcpy(months[n_months++], month, sizeof(month));
        }
    }

    char marker[STORAGE_MAX_KEY], batch_month[8], now_month[8];
    usage_batch_month(records, batch_month);
    paths_usage_month_of(keystore_now(), now_month);
    enum err e = usage_shard_key(t, batch_month, batch, marker, sizeof(marker));
    if (e != ERR_OK) {
        return e;
    }
    keystore_lock(ks);
    json_t *shard = NULL;
    /*
     * Only a tenant that exists takes usage: one with a data key (it stored a
     * key, which creds needs before any call) or settings. A batch replayed
     * after the tenant was deleted, or naming a tenant that never existed, must
     * not bring back a ledger under tenants/<t>/. Checked under the lock tenant
     * delete holds. A data key naming a KEK version storage lacks is not "no
     * data key" (envelope_dek_unwrap: ERR_STORAGE): a 500, which the agent
     * resends, where this 400 would make it drop the batch.
     */
    e = paths_tenant_deleting(req->storage, t);
    if (e == ERR_EXISTS) {
        /* A 400 as for a deleted tenant: the agent drops it rather than retrying for ever. */
        fw_error(resp,
                 "invalid value for field 'tenant': " PATHS_TENANT_DELETING
                 "; usage for it is not recorded",
                 t);
        e = ERR_OK;
        goto out_unlock;
    }
    if (e == ERR_OK) {
        e = paths_usage_tenant_exists(ks, req->storage, t);
    }
    if (e == ERR_NOTFOUND) {
        fw_error(resp,
                 "invalid value for field 'tenant': tenant '%s' does not exist (deleted, or it "
                 "never stored a key or settings); usage for it is not recorded",
                 t);
        e = ERR_OK;
        goto out_unlock;
    }
    if (e != ERR_OK) {
        goto out_unlock;
    }
    e = storage_get_json(req->storage, marker, &shard);
    bool new_shard = e == ERR_NOTFOUND;
    if (new_shard) {
        shard = json_pack("{s{}}", "ids");
        e = shard != NULL ? ERR_OK : ERR_NOMEM;
    }
    if (e != ERR_OK) {
        goto out_unlock;
    }
    json_t *ids = json_object_get(shard, "ids");
    if (!json_is_object(ids)) {
        e = ERR_PROTO;
        goto out_unlock;
    }
    json_t *seen = json_object_get(ids, batch);
    if (seen != NULL) {
        fw_reply(resp,
                 json_pack("{sssOsb}", "batch_id", batch, "accepted",
                           json_is_array(seen) ? json_array_get(seen, 0) : seen, "duplicate", 1));
        goto out_unlock;
    }
    e = ERR_OK; /* not seen: count the batch, in each month that does not hold it yet */
    json_t *docs[USAGE_MAX_MONTHS] = {NULL};
    bool done[USAGE_MAX_MONTHS] = {false};
    bool refused = false; /* resp says why; nothing written */
    for (size_t m = 0; m < n_months && e == ERR_OK && !refused; m++) {
        e = usage_month_load(req->storage, t, months[m], &docs[m]);
        done[m] =
            e == ERR_OK && json_object_get(json_object_get(docs[m], "batches"), batch) != NULL;
        refused = e == ERR_OK && !done[m] && !usage_month_room(docs[m], records, months[m], resp);
        if (e == ERR_OK && !done[m] && !refused) {
            bool full = false;
            e = usage_month_ids_room(req->storage, t, docs[m], now_month, &full);
            if (e == ERR_OK && full) {
                /* Retryable: the agent resends; the batches named are resent meanwhile. */
                fw_error_coded(resp, 503,
                               "usage for %s cannot be recorded now: %d batches counted in it "
                               "are not yet marked seen (storage writes failed); retry later",
                               months[m], USAGE_MONTH_MAX_BATCHES);
                refused = true;
            }
        }
    }
    for (size_t m = 0; m < n_months && e == ERR_OK && !refused; m++) {
        if (done[m]) {
            continue; /* an earlier attempt wrote this month, then failed before the mark */
        }
        json_t *doc = docs[m];
        size_t in_month = 0;
        json_array_foreach(records, i, r)
        {
            char month[8], msg[8];
            (void)usage_record_ok(r, msg, 0, month);
            if (strcmp(month, months[m]) != 0) {
                continue;
            }
            in_month++;
            const char *p = json_string_value(json_object_get(r, "provider"));
            const char *model = json_string_value(json_object_get(r, "model"));
            json_t *by_provider = json_object_get(doc, "by_provider");
            if (json_object_get(by_provider, p) == NULL &&
                json_object_size(by_provider) >= USAGE_MAX_PROVIDERS) {
                p = "other";
            }
            char mkey[200];
            snprintf(mkey, sizeof(mkey), "%s/%s", p, model);
            json_t *by_model = json_object_get(doc, "by_model");
            if (json_object_get(by_model, mkey) == NULL &&
                json_object_size(by_model) >= USAGE_MAX_MODELS) {
                snprintf(mkey, sizeof(mkey), "%s/other", p);
            }
            e = usage_add(doc, r);
            if (e == ERR_OK) {
                e = usage_add(usage_bucket(by_provider, p), r);
            }
            if (e == ERR_OK) {
                e = usage_add(usage_bucket(by_model, mkey), r);
            }
            if (e != ERR_OK) {
                break; /* this month is not stored: the agent resends the batch */
            }
        }
        if (e == ERR_OK) {
            e = usage_month_mark(doc, batch, in_month, batch_month);
        }
        char mrest[32], key[STORAGE_MAX_KEY];
        snprintf(mrest, sizeof(mrest), "usage/%s", months[m]);
        if (e == ERR_OK) {
            e = keystore_path_tenant(key, sizeof(key), t, mrest);
        }
        if (e == ERR_OK) {
            e = storage_put_json(req->storage, key, doc, false);
        }
    }
    for (size_t m = 0; m < n_months; m++) {
        json_decref(docs[m]);
    }
    if (refused) {
        goto out_unlock;
    }
    if (e == ERR_OK) {
        usage_ids_evict(ids, USAGE_MAX_SHARD_IDS);
        json_int_t seq = json_integer_value(json_object_get(shard, "seq")) + 1;
        if (json_object_set_new(shard, "seq", json_integer(seq)) != 0 ||
            json_object_set_new(
                ids, batch, json_pack("[II]", (json_int_t)json_array_size(records), seq)) != 0) {
            e = ERR_NOMEM; /* a shard without the id would not answer the resend */
        }
    }
    if (e == ERR_OK) {
        e = storage_put_json(req->storage, marker, shard, false);
    }
    if (e == ERR_OK && new_shard) {
        e = usage_prune(req->storage, t,
                        usage_month_index(batch_month) < usage_month_index(now_month) ? batch_month
                                                                                      : now_month);
    }
    if (e == ERR_OK) {
        fw_reply(resp, json_pack("{sssIsb}", "batch_id", batch, "accepted",
                                 (json_int_t)json_array_size(records), "duplicate", 0));
    }
out_unlock:
    keystore_unlock(ks);
    json_decref(shard);
    return e;
}

static enum err usage_read(struct fw_request *req, struct fw_response *resp)
{
    char month[16];
    const char *want = fw_str(req, "month");
    if (want != NULL && want[0] != '\0') {
        bool digits = strlen(want) == 7 && want[4] == '-';
        for (size_t i = 0; digits && i < 7; i++) {
            digits = i == 4 || (want[i] >= '0' && want[i] <= '9');
        }
        int y = digits ? (want[0] - '0') * 1000 + (want[1] - '0') * 100 + (want[2] - '0') * 10 +
                             (want[3] - '0')
                       : 0;
        int m = digits ? (want[5] - '0') * 10 + (want[6] - '0') : 0;
        if (!digits || m < 1 || m > 12 || y < 1970) {
            fw_error(resp, "invalid value for field 'month': expected YYYY-MM");
            return ERR_OK;
        }
        snprintf(month, sizeof(month), "%04d-%02d", y, m);
    } else {
        time_t now = keystore_now();
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(month, sizeof(month), "%Y-%m", &tm);
    }
    json_t *doc = NULL;
    enum err e = usage_month_load(req->storage, fw_str(req, "tenant"), month, &doc);
    if (e == ERR_OK) {
        usage_month_public(doc);
        fw_reply(resp, doc);
    }
    return e;
}

static const struct fw_field usage_fields[] = {
    {.name = "batch_id",
     .type = FW_TYPE_STRING,
     .max_len = USAGE_MAX_BATCH_ID,
     .description = "Idempotency key of the batch (update)."},
    {.name = "records",
     .type = FW_TYPE_JSON,
     .description = "Usage records (update); see docs/api.md."},
    {.name = "month",
     .type = FW_TYPE_STRING,
     .max_len = 16,
     .description = "YYYY-MM to read (default: the current month, UTC)."},
    {.name = NULL},
};

const struct fw_path paths_usage[] = {
    {
        .pattern = "tenants/{tenant}/usage",
        .fields = usage_fields,
        .handlers = {[FW_OP_READ] = usage_read,
                     [FW_OP_UPDATE] = usage_update,
                     [FW_OP_CREATE] = usage_update},
        .synopsis = "Report usage (agents) or read month-to-date totals.",
        .description = "Update is idempotent by batch_id. Read returns requests, tokens and cost "
                       "for the month, by provider and by provider/model.",
    },
    {.pattern = NULL},
};
