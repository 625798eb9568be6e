/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Paths tenants/ (list), tenants/<t> (read a summary, delete) and
 * tenants/<t>/settings (read, update). A tenant exists as soon as anything is
 * stored under tenants/<t>/ (a key or settings); there is no separate create.
 *
 * Delete is a crypto-shred: the tenant's DEK is destroyed first, so every
 * ciphertext of the tenant, including copies in old snapshots and backups,
 * can never be opened again; then the tenant's records are removed. A marker,
 * deleting/<t>, is stored before the DEK is destroyed and removed after the
 * last record: while it exists the name is not free (writes are refused, reads
 * answer as for a deleted tenant), so a delete cut part-way never hands its
 * leftovers to a new tenant of the same name. Delete again to finish.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "plugin/byok.h"
#include "plugin/catalog.h"
#include "plugin/config.h"
#include "plugin/envelope.h"
#include "plugin/keystore.h"
#include "plugin/paths.h"

#define TENANTS_MAX_COST 1.0e9
#define TENANTS_MAX_LIMIT 1000000000LL
/* Depth of the layout under tenants/<t>/ (keys/<p>/<kt>, usage/batches/<id>). */
#define TENANTS_MAX_DEPTH 4
/* A provider weight (the "weighted" strategy): 0 (never first) .. this. */
#define TENANTS_MAX_WEIGHT 1000
/* speed_weight (the "balanced" strategy): percent of the score that is speed. */
#define TENANTS_MAX_SPEED_WEIGHT 100

static const char *const tenants_tiers[] = {"FREE", "LOW", "MEDIUM", "HIGH", "UNLIMITED", NULL};
static const char *const tenants_residencies[] = {"any", "eu", "us", NULL};
static const char *const tenants_routings[] = {"ordered",  "cheapest", "fastest",
                                               "weighted", "balanced", NULL};
static const char *const tenants_tasks[] = {"chat",     "code",          "analysis",
                                            "creative", "summarization", "embedding",
                                            "vision",   "reasoning",     NULL};

static bool tenants_in(const char *const *set, const char *s)
{
    for (size_t i = 0; set[i] != NULL; i++) {
        if (s != NULL && strcmp(set[i], s) == 0) {
            return true;
        }
    }
    return false;
}

/*
 * Folds a provided enum field to its canonical case (budget_tier upper, as
 * config's default_budget_tier; residency and routing_strategy lower) in the
 * request's fields, so the check and the stored value see one spelling.
 * ERR_NOMEM when it cannot.
 */
static enum err tenants_fold(struct fw_request *req, const char *name, bool upper)
{
    if (!fw_provided(req, name)) {
        return ERR_OK;
    }
    const char *in = fw_str(req, name);
    char out[16];
    size_t i = 0;
    for (; in != NULL && in[i] != '\0'; i++) {
        if (i == sizeof(out) - 1) {
            return ERR_OK; /* longer than any value: refused as it is */
        }
        unsigned char ch = (unsigned char)in[i];
        out[i] = (char)(upper ? toupper(ch) : tolower(ch));
    }
    out[i] = '\0';
    return json_object_set_new(req->fields, name, json_string(out)) == 0 ? ERR_OK : ERR_NOMEM;
}

/* ---- the marker of an unfinished delete ----------------------------------------------- */

/* Outside tenants/<t>/: the walk does not remove it part-way, and one List finds them all. */
#define TENANTS_DELETING_PREFIX "deleting/"

static enum err tenants_deleting_key(char *out, size_t size, const char *tenant)
{
    if (tenant == NULL ||
        (size_t)snprintf(out, size, TENANTS_DELETING_PREFIX "%s", tenant) >= size) {
        return ERR_TOOBIG;
    }
    return ERR_OK;
}

enum err paths_tenant_deleting(struct storage *st, const char *tenant)
{
    char key[STORAGE_MAX_KEY];
    enum err e = tenants_deleting_key(key, sizeof(key), tenant);
    unsigned char *val = NULL;
    size_t len = 0;
    if (e == ERR_OK) {
        e = storage_get(st, key, &val, &len);
    }
    free(val);
    if (e == ERR_OK) {
        return ERR_EXISTS;
    }
    return e == ERR_NOTFOUND ? ERR_OK : e;
}

/* ---- list, summary ------------------------------------------------------------------ */

static enum err tenants_list(struct fw_request *req, struct fw_response *resp)
{
    char **names = NULL;
    size_t n = 0;
    enum err e = storage_list(req->storage, "tenants/", &names, &n);
    if (e == ERR_NOTFOUND) {
        return ERR_OK;
    }
    if (e != ERR_OK) {
        return e;
    }
    /*
     * A tenant whose delete did not finish is listed while records of it are
     * left, marked in key_info ("deleting": true) so that the operator can
     * finish it; its read answers 404.
     */
    char **gone = NULL;
    size_t ng = 0;
    e = storage_list(req->storage, TENANTS_DELETING_PREFIX, &gone, &ng);
    if (e != ERR_OK && e != ERR_NOTFOUND) {
        storage_keys_free(names, n);
        return e;
    }
    json_t *keys = json_array(), *info = json_object();
    for (size_t i = 0; i < n && keys != NULL && info != NULL; i++) {
        size_t len = strlen(names[i]);
        if (len > 1 && names[i][len - 1] == '/') {
            names[i][len - 1] = '\0';
            json_array_append_new(keys, json_string(names[i]));
            for (size_t j = 0; j < ng; j++) {
                if (strcmp(gone[j], names[i]) == 0) {
                    json_object_set_new(info, names[i], json_pack("{sb}", "deleting", true));
                }
            }
        }
    }
    storage_keys_free(names, n);
    storage_keys_free(gone, ng);
    if (keys == NULL || info == NULL) {
        json_decref(keys);
        json_decref(info);
        return ERR_NOMEM;
    }
    if (json_array_size(keys) == 0) {
        json_decref(keys);
        json_decref(info);
        return ERR_OK;
    }
    if (json_object_size(info) == 0) {
        json_decref(info);
        fw_reply(resp, json_pack("{so}", "keys", keys));
    } else {
        fw_reply(resp, json_pack("{soso}", "keys", keys, "key_info", info));
    }
    return ERR_OK;
}

static enum err tenants_exists_in_storage(struct storage *st, const char *tenant, bool *ret)
{
    char prefix[STORAGE_MAX_KEY];
    enum err e = keystore_path_tenant(prefix, sizeof(prefix), tenant, "");
    if (e != ERR_OK) {
        return e;
    }
    char **names = NULL;
    size_t n = 0;
    e = storage_list(st, prefix, &names, &n);
    if (e == ERR_NOTFOUND) {
        *ret = false;
        return ERR_OK;
    }
    if (e == ERR_OK) {
        *ret = n > 0;
        storage_keys_free(names, n);
    }
    return e;
}

static enum err tenants_read(struct fw_request *req, struct fw_response *resp)
{
    const char *t = fw_str(req, "tenant");
    bool exists = false;
    enum err e = paths_tenant_deleting(req->storage, t);
    if (e == ERR_EXISTS) {
        /* What is left of it belongs to nobody: answered as for a deleted tenant. */
        fw_error_coded(resp, 404, PATHS_TENANT_DELETING, t);
        return ERR_OK;
    }
    if (e == ERR_OK) {
        e = tenants_exists_in_storage(req->storage, t, &exists);
    }
    if (e != ERR_OK || !exists) {
        return e; /* no data: 404 */
    }
    char prefix[STORAGE_MAX_KEY];
    e = keystore_path_tenant(prefix, sizeof(prefix), t, "keys/");
    if (e != ERR_OK) {
        return e;
    }
    json_t *providers = json_array();
    json_int_t total = 0, active = 0, revoked = 0, expired = 0;
    char **pnames = NULL;
    size_t np = 0;
    e = storage_list(req->storage, prefix, &pnames, &np);
    if (e == ERR_NOTFOUND) {
        e = ERR_OK;
    }
    time_t now = keystore_now();
    for (size_t i = 0; e == ERR_OK && i < np; i++) {
        char pprefix[STORAGE_MAX_KEY];
        if ((size_t)snprintf(pprefix, sizeof(pprefix), "%s%s", prefix, pnames[i]) >=
            sizeof(pprefix)) {
            continue;
        }
        char pname[64];
        snprintf(pname, sizeof(pname), "%.*s", (int)strcspn(pnames[i], "/"), pnames[i]);
        json_array_append_new(providers, json_string(pname));
        char **kts = NULL;
        size_t nk = 0;
        /* A storage error is a 500: a summary that leaves keys out would read as their absence. */
        e = storage_list(req->storage, pprefix, &kts, &nk);
        if (e == ERR_NOTFOUND) {
            e = ERR_OK;
            continue;
        }
        for (size_t j = 0; e == ERR_OK && j < nk; j++) {
            char key[STORAGE_MAX_KEY];
            json_t *rec = NULL;
            if ((size_t)snprintf(key, sizeof(key), "%s%s", pprefix, kts[j]) >= sizeof(key)) {
                continue;
            }
            e = storage_get_json(req->storage, key, &rec);
            if (e == ERR_NOTFOUND) {
                e = ERR_OK; /* a folder, or a key deleted since the list */
                continue;
            }
            if (e != ERR_OK) {
                break;
            }
            const char *st = keystore_key_status(rec, now);
            total++;
            active += strcmp(st, "active") == 0;
            revoked += strcmp(st, "revoked") == 0;
            expired += strcmp(st, "expired") == 0;
            json_decref(rec);
        }
        storage_keys_free(kts, nk);
    }
    storage_keys_free(pnames, np);
    json_t *settings = NULL;
    if (e == ERR_OK) {
        e = keystore_settings_get(req->backend, req->storage, t, &settings);
    }
    json_t *usage = NULL;
    if (e == ERR_OK) {
        e = paths_usage_month_to_date(req->storage, t, &usage);
    }
    json_t *budget = NULL;
    if (e == ERR_OK) {
        e = paths_budget_summary(req->storage, t, settings, usage, &budget);
    }
    bool has_dek = false;
    if (e == ERR_OK) {
        char dek_key[STORAGE_MAX_KEY];
        unsigned char *raw = NULL;
        size_t raw_len = 0;
        e = keystore_path_tenant(dek_key, sizeof(dek_key), t, "dek");
        if (e == ERR_OK) {
            e = storage_get(req->storage, dek_key, &raw, &raw_len);
        }
        free(raw); /* the wrapped DEK: ciphertext under the KEK */
        has_dek = e == ERR_OK;
        if (e == ERR_NOTFOUND) {
            e = ERR_OK;
        }
    }
    if (e != ERR_OK) {
        json_decref(providers);
        json_decref(settings);
        json_decref(usage);
        json_decref(budget);
        return e;
    }
    fw_reply(resp, json_pack("{ss so s{sIsIsIsI} so so so sb}", "tenant", t, "providers", providers,
                             "keys", "total", total, "active", active, "revoked", revoked,
                             "expired", expired, "settings", settings, "usage", usage, "budget",
                             budget, "has_data_key", has_dek));
    return ERR_OK;
}

/* ---- delete (crypto-shred) ------------------------------------------------------------ */

static enum err tenants_delete_tree(struct storage *st, const char *prefix, int depth)
{
    if (depth > TENANTS_MAX_DEPTH) {
        return ERR_OK;
    }
    char **names = NULL;
    size_t n = 0;
    enum err e = storage_list(st, prefix, &names, &n);
    if (e == ERR_NOTFOUND) {
        return ERR_OK;
    }
    if (e != ERR_OK) {
        return e;
    }
    for (size_t i = 0; i < n; i++) {
        char key[STORAGE_MAX_KEY];
        if ((size_t)snprintf(key, sizeof(key), "%s%s", prefix, names[i]) >= sizeof(key)) {
            continue;
        }
        size_t len = strlen(key);
        enum err de =
            key[len - 1] == '/' ? tenants_delete_tree(st, key, depth + 1) : storage_delete(st, key);
        if (de != ERR_OK && de != ERR_NOTFOUND) {
            e = de;
        }
    }
    storage_keys_free(names, n);
    return e;
}

static enum err tenants_delete_grace(struct storage *st, const char *tenant)
{
    char **names = NULL;
    size_t n = 0;
    enum err e = storage_list(st, KEYSTORE_GRACE_PREFIX, &names, &n);
    if (e == ERR_NOTFOUND) {
        return ERR_OK;
    }
    if (e != ERR_OK) {
        return e;
    }
    size_t tl = strlen(tenant);
    for (size_t i = 0; i < n; i++) {
        if (strncmp(names[i], tenant, tl) == 0 && names[i][tl] == ':') {
            char key[STORAGE_MAX_KEY];
            if ((size_t)snprintf(key, sizeof(key), KEYSTORE_GRACE_PREFIX "%s", names[i]) <
                sizeof(key)) {
                enum err de = storage_delete(st, key);
                if (de != ERR_OK && de != ERR_NOTFOUND) {
                    e = de;
                }
            }
        }
    }
    storage_keys_free(names, n);
    return e;
}

/*
 * The whole delete of tenant t: marker, shred, walk, grace marks, marker
 * removal, under the write lock. Run by DELETE tenants/<t> and, for a delete
 * that did not finish, by the periodic function.
 */
static enum err tenants_delete_run(struct byok *b, struct storage *st, const char *t)
{
    struct keystore *ks = keystore_of(b);
    if (ks == NULL) {
        return ERR_INTERNAL;
    }
    char prefix[STORAGE_MAX_KEY], settings_key[STORAGE_MAX_KEY], marker[STORAGE_MAX_KEY];
    enum err e = keystore_path_tenant(prefix, sizeof(prefix), t, "");
    if (e == ERR_OK) {
        e = keystore_path_tenant(settings_key, sizeof(settings_key), t, "settings");
    }
    if (e == ERR_OK) {
        e = tenants_deleting_key(marker, sizeof(marker), t);
    }
    if (e != ERR_OK) {
        return e;
    }
    char now_s[32];
    keystore_time_format(keystore_now(), now_s, sizeof(now_s));
    json_t *mark = json_pack("{ss}", "started_at", now_s);
    if (mark == NULL) {
        return ERR_NOMEM;
    }
    keystore_lock(ks);
    /*
     * The marker before anything is destroyed, removed after the last record:
     * a delete cut anywhere in between (a failed Delete, the deadline, a
     * crash) leaves the name refused to writers until a delete completes, so
     * the records left never appear under a new tenant of the same name.
     * Written again by a repeated delete (the same document).
     */
    e = storage_put_json(st, marker, mark, false);
    if (e == ERR_READONLY) {
        /* A standby (Vault forwards the request; the periodic function leaves it to the active
         * node). */
        keystore_unlock(ks);
        json_decref(mark);
        return e;
    }
    /* The shred next: if anything below fails, the ciphertexts left are already useless. */
    if (e == ERR_OK) {
        e = envelope_tenant_shred(keystore_envelope(ks), st, t);
    }
    if (e == ERR_OK) {
        e = tenants_delete_tree(st, prefix, 0);
    }
    /*
     * Drop the cached settings (InvalidateKey does the same on other nodes)
     * before the lock goes: a settings write waiting on it merges into the
     * cached document, and would store the deleted tenant's settings again.
     */
    byok_invalidate(b, settings_key);
    if (e == ERR_OK) {
        e = tenants_delete_grace(st, t);
    }
    if (e == ERR_OK) {
        e = storage_delete(st, marker);
        e = e == ERR_NOTFOUND ? ERR_OK : e;
    }
    keystore_usage_forget(ks, t, NULL, NULL);
    keystore_record_forget(ks, NULL); /* rare: simpler than walking the cache by prefix */
    keystore_unlock(ks);
    json_decref(mark);
    if (e != ERR_OK) {
        log_kv(LOGL_WARN,
               "tenant delete did not finish; writes to the tenant are refused until it is "
               "deleted again (the periodic function retries it)",
               "tenant", t, "error", err_name(e), NULL);
    }
    return e;
}

static enum err tenants_delete(struct fw_request *req, struct fw_response *resp)
{
    (void)resp;
    return tenants_delete_run(req->backend, req->storage, fw_str(req, "tenant"));
}

/*
 * Vault's periodic function: finishes the deletes left unfinished (a failed
 * Delete, the request's deadline, a crash); one List of deleting/ when there
 * are none. Every pending tenant is tried; the first error is returned.
 */
static enum err tenants_periodic(struct byok *b, struct storage *st)
{
    char **names = NULL;
    size_t n = 0;
    enum err e = storage_list(st, TENANTS_DELETING_PREFIX, &names, &n);
    if (e == ERR_NOTFOUND) {
        return ERR_OK;
    }
    if (e != ERR_OK) {
        return e;
    }
    for (size_t i = 0; i < n; i++) {
        /* Only what a delete writes: a tenant name (the paths' rule), never a folder. */
        if (!fw_name_valid(names[i])) {
            continue;
        }
        enum err de = tenants_delete_run(b, st, names[i]);
        if (de == ERR_READONLY) {
            break; /* a standby: the active node finishes them */
        }
        if (de == ERR_OK) {
            log_kv(LOGL_INFO, "finished an unfinished tenant delete", "tenant", names[i], NULL);
        } else if (e == ERR_OK) {
            e = de;
        }
    }
    storage_keys_free(names, n);
    return e;
}

const struct byok_hooks byok_hooks_tenants = {.periodic = tenants_periodic};

/* ---- settings ------------------------------------------------------------------------- */

/*
 * Provider p of field `field` is valid, in the catalog and in
 * config.allowed_providers (as for key writes): false with a 400 in resp
 * naming the field (or *ret_e set on a storage error) when not.
 */
static bool tenants_provider_ok(struct fw_request *req, struct fw_response *resp,
                                const json_t *config, const char *field, const char *p,
                                enum err *ret_e)
{
    if (p == NULL || !fw_name_valid(p)) {
        fw_error(resp,
                 "invalid value for field '%s': provider names must match "
                 "[a-z0-9][a-z0-9_-]{0,62}",
                 field);
        return false;
    }
    json_t *entry = NULL;
    enum err e = catalog_get_shared(req->backend, req->storage, p, &entry);
    json_decref(entry);
    if (e == ERR_NOTFOUND) {
        char q[FW_ECHO_NAME_BUF];
        fw_error(resp, "invalid value for field '%s': unknown provider %s", field,
                 fw_name_quote(q, p));
        return false;
    }
    if (e != ERR_OK) {
        *ret_e = e;
        return false;
    }
    if (!config_provider_allowed(config, p)) {
        char q[FW_ECHO_NAME_BUF];
        fw_error(resp, "invalid value for field '%s': %s is not in allowed_providers", field,
                 fw_name_quote(q, p));
        return false;
    }
    return true;
}

/*
 * The providers of list field `field` are catalog entries the mount allows:
 * false with a 400 in resp naming the field (or *ret_e set) when one is not.
 */
static bool tenants_providers_ok(struct fw_request *req, struct fw_response *resp,
                                 const json_t *config, const char *field, enum err *ret_e)
{
    size_t i;
    json_t *v;
    *ret_e = ERR_OK;
    json_array_foreach(fw_json(req, field), i, v)
    {
        if (!tenants_provider_ok(req, resp, config, field, json_string_value(v), ret_e)) {
            return false;
        }
    }
    return true;
}

/* A weight as given (a JSON integer, or digits as the CLI's provider=3 sends); -1 if neither. */
static long long tenants_weight_of(const json_t *v)
{
    if (json_is_integer(v)) {
        return json_integer_value(v);
    }
    const char *s = json_string_value(v);
    if (s == NULL || s[0] == '\0' || strlen(s) > 7) {
        return -1;
    }
    long long n = 0;
    for (size_t i = 0; s[i] != '\0'; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }
        n = n * 10 + (s[i] - '0');
    }
    return n;
}

/*
 * provider_weights: each key a provider as for preferred_providers, each
 * value an integer 0..TENANTS_MAX_WEIGHT. On success the request's field is
 * replaced by the same map with integer values, the form stored.
 */
static bool tenants_weights_ok(struct fw_request *req, struct fw_response *resp,
                               const json_t *config, enum err *ret_e)
{
    const char *field = "provider_weights";
    json_t *out = json_object();
    const char *p;
    json_t *v;
    *ret_e = out != NULL ? ERR_OK : ERR_NOMEM;
    json_object_foreach(fw_json(req, field), p, v)
    {
        if (out == NULL || !tenants_provider_ok(req, resp, config, field, p, ret_e)) {
            json_decref(out);
            return false;
        }
        long long w = tenants_weight_of(v);
        if (w < 0 || w > TENANTS_MAX_WEIGHT) {
            char q[FW_ECHO_NAME_BUF];
            fw_error(resp,
                     "invalid value for field '%s': the weight of %s must be an integer between "
                     "0 and %d",
                     field, fw_name_quote(q, p), TENANTS_MAX_WEIGHT);
            json_decref(out);
            return false;
        }
        if (json_object_set_new(out, p, json_integer((json_int_t)w)) != 0) {
            json_decref(out);
            *ret_e = ERR_NOMEM;
            return false;
        }
    }
    if (out == NULL || json_object_set_new(req->fields, field, out) != 0) {
        *ret_e = ERR_NOMEM;
        return false;
    }
    return true;
}

static enum err tenants_settings_read(struct fw_request *req, struct fw_response *resp)
{
    json_t *settings = NULL;
    const char *t = fw_str(req, "tenant");
    enum err e = paths_tenant_deleting(req->storage, t);
    if (e == ERR_EXISTS) {
        fw_error_coded(resp, 404, PATHS_TENANT_DELETING, t);
        return ERR_OK;
    }
    if (e == ERR_OK) {
        e = keystore_settings_get(req->backend, req->storage, t, &settings);
    }
    if (e == ERR_OK) {
        fw_reply(resp, settings);
    }
    return e;
}

static enum err tenants_settings_write(struct fw_request *req, struct fw_response *resp)
{
    struct keystore *ks = keystore_of(req->backend);
    if (ks == NULL) {
        return ERR_INTERNAL;
    }
    const char *t = fw_str(req, "tenant");
    enum err e = tenants_fold(req, "budget_tier", true);
    if (e == ERR_OK) {
        e = tenants_fold(req, "residency", false);
    }
    if (e == ERR_OK) {
        e = tenants_fold(req, "routing_strategy", false);
    }
    if (e != ERR_OK) {
        return e;
    }
    /* Every check before the first write. */
    if (fw_provided(req, "budget_tier") && !tenants_in(tenants_tiers, fw_str(req, "budget_tier"))) {
        fw_error(resp, "invalid value for field 'budget_tier': must be one of FREE, LOW, MEDIUM, "
                       "HIGH, UNLIMITED");
        return ERR_OK;
    }
    if (fw_provided(req, "residency") &&
        !tenants_in(tenants_residencies, fw_str(req, "residency"))) {
        fw_error(resp, "invalid value for field 'residency': must be one of any, eu, us");
        return ERR_OK;
    }
    if (fw_provided(req, "routing_strategy") &&
        !tenants_in(tenants_routings, fw_str(req, "routing_strategy"))) {
        fw_error(resp, "invalid value for field 'routing_strategy': must be one of ordered, "
                       "cheapest, fastest, weighted, balanced");
        return ERR_OK;
    }
    if (fw_provided(req, "max_monthly_cost")) {
        double c = fw_float(req, "max_monthly_cost");
        if (!isfinite(c) || c < 0.0 || c > TENANTS_MAX_COST) {
            fw_error(resp, "invalid value for field 'max_monthly_cost': must be between 0 and %.0f",
                     TENANTS_MAX_COST);
            return ERR_OK;
        }
    }
    if (fw_provided(req, "speed_weight") &&
        (fw_int(req, "speed_weight") < 0 ||
         fw_int(req, "speed_weight") > TENANTS_MAX_SPEED_WEIGHT)) {
        fw_error(resp, "invalid value for field 'speed_weight': must be between 0 and %d",
                 TENANTS_MAX_SPEED_WEIGHT);
        return ERR_OK;
    }
    static const char *const limits[] = {"rpm_limit", "tpm_limit"};
    for (size_t i = 0; i < 2; i++) {
        if (fw_provided(req, limits[i]) &&
            (fw_int(req, limits[i]) < 0 || fw_int(req, limits[i]) > TENANTS_MAX_LIMIT)) {
            fw_error(resp, "invalid value for field '%s': must be between 0 and %lld", limits[i],
                     (long long)TENANTS_MAX_LIMIT);
            return ERR_OK;
        }
    }
    if (fw_provided(req, "allowed_task_types")) {
        size_t i;
        json_t *v;
        json_array_foreach(fw_json(req, "allowed_task_types"), i, v)
        {
            if (!tenants_in(tenants_tasks, json_string_value(v))) {
                fw_error(resp, "invalid value for field 'allowed_task_types': must be among chat, "
                               "code, analysis, creative, summarization, embedding, vision, "
                               "reasoning");
                return ERR_OK;
            }
        }
    }
    static const char *const plists[] = {"preferred_providers", "fallback_providers"};
    bool weights = fw_provided(req, "provider_weights");
    if (fw_provided(req, plists[0]) || fw_provided(req, plists[1]) || weights) {
        json_t *config = NULL;
        e = config_get_shared(req->backend, req->storage, &config);
        if (e != ERR_OK) {
            return e;
        }
        bool ok = true;
        for (size_t i = 0; i < 2 && ok; i++) {
            ok = !fw_provided(req, plists[i]) ||
                 tenants_providers_ok(req, resp, config, plists[i], &e);
        }
        ok = ok && (!weights || tenants_weights_ok(req, resp, config, &e));
        json_decref(config);
        if (!ok) {
            return e;
        }
    }

    static const char *const fields[] = {
        "budget_tier",      "preferred_providers", "fallback_providers", "max_monthly_cost",
        "residency",        "allowed_task_types",  "rpm_limit",          "tpm_limit",
        "routing_strategy", "provider_weights",    "speed_weight"};
    keystore_lock(ks);
    json_t *stored = NULL, *settings = NULL;
    e = paths_tenant_deleting(req->storage, t);
    if (e == ERR_EXISTS) {
        fw_error_coded(resp, 409, PATHS_TENANT_DELETING, t);
        e = ERR_OK;
        goto out_unlock;
    }
    if (e == ERR_OK) {
        e = keystore_settings_cached(req->backend, req->storage, t, &stored);
    }
    if (e != ERR_OK) {
        goto out_unlock;
    }
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        /* A field that did not fit is a 500, never settings stored without it and a 200. */
        if (fw_provided(req, fields[i]) &&
            json_object_set_new(stored, fields[i], json_deep_copy(fw_json(req, fields[i]))) != 0) {
            e = ERR_NOMEM;
            goto out_unlock;
        }
    }
    e = keystore_settings_put(req->backend, req->storage, t, stored);
    if (e == ERR_OK) {
        e = keystore_settings_get(req->backend, req->storage, t, &settings);
    }
    if (e == ERR_OK) {
        fw_reply(resp, settings);
    }
out_unlock:
    keystore_unlock(ks);
    json_decref(stored);
    return e;
}

static enum err tenants_settings_exists(struct fw_request *req, bool *ret_exists)
{
    /* From the cache: a write's existence check costs no storage round trip when warm. */
    json_t *stored = NULL;
    enum err e =
        keystore_settings_cached(req->backend, req->storage, fw_str(req, "tenant"), &stored);
    *ret_exists = e == ERR_OK && json_object_size(stored) > 0;
    json_decref(stored);
    return e;
}

static const struct fw_field tenants_settings_fields[] = {
    {.name = "budget_tier",
     .type = FW_TYPE_STRING,
     .max_len = 16,
     .description = "FREE, LOW, MEDIUM, HIGH or UNLIMITED (default: config.default_budget_tier)."},
    {.name = "preferred_providers",
     .type = FW_TYPE_STRINGS,
     .max_len = 64,
     .description = "Providers tried first, in order."},
    {.name = "fallback_providers",
     .type = FW_TYPE_STRINGS,
     .max_len = 64,
     .description = "Providers tried when the preferred ones fail."},
    {.name = "max_monthly_cost",
     .type = FW_TYPE_FLOAT,
     .description = "Monthly cap in USD (0 = no cap)."},
    {.name = "residency", .type = FW_TYPE_STRING, .max_len = 8, .description = "any, eu or us."},
    {.name = "routing_strategy",
     .type = FW_TYPE_STRING,
     .max_len = 16,
     .description = "How the agent ranks candidate providers: ordered (the tenant's order, the "
                    "default), cheapest (estimated cost at catalog prices), fastest (latency "
                    "the agent observed), weighted (first provider drawn by provider_weights) "
                    "or balanced (a mix of cost and speed, speed_weight)."},
    {.name = "provider_weights",
     .type = FW_TYPE_KVPAIRS,
     .max_len = 64,
     .description = "For the weighted strategy: provider=weight pairs (integers 0..1000); a "
                    "call goes first to a provider drawn with probability proportional to its "
                    "weight. Unlisted providers weigh 0."},
    {.name = "speed_weight",
     .type = FW_TYPE_INT,
     .description = "For the balanced strategy: how much of the ranking is observed speed, in "
                    "percent (0..100, default 50); the rest is estimated cost."},
    {.name = "allowed_task_types",
     .type = FW_TYPE_STRINGS,
     .max_len = 16,
     .description = "Task types the tenant may use ([] = all)."},
    {.name = "rpm_limit", .type = FW_TYPE_INT, .description = "Requests per minute (0 = none)."},
    {.name = "tpm_limit", .type = FW_TYPE_INT, .description = "Tokens per minute (0 = none)."},
    {.name = NULL},
};

const struct fw_path paths_tenants[] = {
    {
        .pattern = "tenants/",
        .handlers = {[FW_OP_LIST] = tenants_list},
        .synopsis = "List tenants.",
        .description = "Every tenant with a key or settings stored.",
    },
    {
        .pattern = "tenants/{tenant}/settings",
        .fields = tenants_settings_fields,
        .handlers = {[FW_OP_READ] = tenants_settings_read,
                     [FW_OP_CREATE] = tenants_settings_write,
                     [FW_OP_UPDATE] = tenants_settings_write},
        .exists = tenants_settings_exists,
        .synopsis = "A tenant's routing and budget settings.",
        .description = "Budget tier, preferred and fallback providers, monthly cost cap, "
                       "residency, routing strategy, allowed task types and rate limits. Unset "
                       "fields follow config.",
    },
    {
        .pattern = "tenants/{tenant}",
        .handlers = {[FW_OP_READ] = tenants_read, [FW_OP_DELETE] = tenants_delete},
        .synopsis = "A tenant's summary; delete crypto-shreds the tenant.",
        .description = "Delete destroys the tenant's data key first, then its keys, settings and "
                       "usage: nothing sealed for the tenant can be opened again. A delete that "
                       "did not finish leaves the name refused to writers until it is deleted "
                       "again.",
    },
    {.pattern = NULL},
};
