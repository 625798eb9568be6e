/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Paths tenants/<t>/keys/...: store, describe, rotate and revoke a tenant's
 * provider keys (docs/api.md). The value is write-only: a read returns
 * metadata, a masked value, the version history and the validation block,
 * never the key (only paths_creds.c opens a ciphertext).
 *
 * Every check on caller input happens before the first storage write, so a
 * refused request leaves storage exactly as it was. Deleting a key revokes it:
 * the record stays as a tombstone for audit, every version's ciphertext is
 * destroyed, and a later write starts a new version.
 */
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/awskey.h"
#include "common/gcpkey.h"
#include "common/azure.h"
#include "common/log.h"
#include "plugin/catalog.h"
#include "plugin/config.h"
#include "plugin/envelope.h"
#include "plugin/keystore.h"
#include "plugin/keyvalidate.h"
#include "plugin/paths.h"

/* The name (free text) and the number of permissions (capability names). */
#define KEYS_MAX_NAME 256
#define KEYS_MAX_PERMISSIONS 64
#define KEYS_MAX_RATE_LIMIT 100000000
/* Longest expiry or grace period we accept: ten years / ninety days. */
#define KEYS_MAX_EXPIRES_IN (10LL * 365 * 86400)
#define KEYS_MAX_GRACE (90LL * 86400)
/* The longest AWS region name in Bedrock key metadata (agent/sigv4.h's SIGV4_MAX_REGION). */
#define KEYS_MAX_REGION 32

/* ---- input checks ------------------------------------------------------------------ */

/* 8..8192 printable ASCII without whitespace. The message never shows the value. */
static bool keys_value_ok(const char *v, size_t len)
{
    if (len < KEYSTORE_KEY_MIN || len > KEYSTORE_KEY_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c < 0x21 || c > 0x7e) {
            return false;
        }
    }
    return true;
}

static bool keys_text_ok(const char *s, size_t max)
{
    return strlen(s) <= max && fw_text_ok(s);
}

static bool keys_names_ok(struct fw_request *req, struct fw_response *resp)
{
    static const char *const segs[] = {"tenant", "provider", "key_type"};
    for (size_t i = 0; i < 3; i++) {
        const char *v = fw_str(req, segs[i]);
        if (v != NULL && !fw_name_valid(v)) {
            fw_error(resp, "invalid value for field '%s': must match [a-z0-9][a-z0-9_-]{0,62}",
                     segs[i]);
            return false;
        }
    }
    return true;
}

/*
 * Azure key metadata: "deployment" is a name or a JSON object of model -> name;
 * "api_version". The agent puts both into the request URL, so a bad one is
 * refused here, when the key is written, with the agent's own rule
 * (common/azure.h), rather than failing every call.
 */
static bool keys_azure_meta_ok(struct fw_request *req, struct fw_response *resp)
{
    const json_t *md = fw_json(req, "metadata");
    const char *dep = json_string_value(json_object_get(md, "deployment"));
    const char *ver = json_string_value(json_object_get(md, "api_version"));
    bool ok = ver == NULL || azure_name_ok(ver);
    if (ok && dep != NULL && dep[0] == '{') {
        json_t *map = json_loads(dep, 0, NULL);
        const char *k;
        json_t *v;
        ok = json_is_object(map) && json_object_size(map) > 0;
        json_object_foreach(map, k, v)
        {
            ok = ok && azure_name_ok(json_string_value(v));
        }
        json_decref(map);
    } else if (ok && dep != NULL) {
        ok = azure_name_ok(dep);
    }
    if (!ok) {
        fw_error(resp, "invalid value for field 'metadata': an Azure deployment (a name, or a JSON "
                       "object of model to name) and api_version are 1..128 of A-Z a-z 0-9 . _ - "
                       "and do not start with a dot");
    }
    return ok;
}

/* A region name (Bedrock key metadata "region"): 1..32 of a-z 0-9 -, not starting with '-'. */
static bool keys_region_ok(const char *r)
{
    size_t n = r != NULL ? strlen(r) : 0;
    if (n == 0 || n > KEYS_MAX_REGION || r[0] == '-') {
        return false;
    }
    return strspn(r, "abcdefghijklmnopqrstuvwxyz0123456789-") == n;
}

/*
 * Bedrock (api_style "bedrock") keys: a value meant as IAM credentials (it
 * starts with AKIA or ASIA, or holds a ':') must follow common/awskey.h, or
 * the agent could not sign with it; the reason names the part, never shows
 * it. The metadata "region" the agent signs for when the catalog's host names
 * none (agent/provider_bedrock.h) must be a region name.
 */
static bool keys_bedrock_ok(struct fw_request *req, struct fw_response *resp)
{
    const char *v = fw_provided(req, "key_value") ? fw_str(req, "key_value") : NULL;
    const char *why = NULL;
    struct awskey k;
    if (v != NULL && awskey_is_iam(v, strlen(v)) && !awskey_parse(v, strlen(v), &k, &why)) {
        fw_error(resp,
                 "invalid value for field 'key_value': %s (an IAM key for Bedrock is "
                 "<access_key_id>:<secret_access_key>[:<session_token>])",
                 why);
        return false;
    }
    const json_t *md = fw_provided(req, "metadata") ? fw_json(req, "metadata") : NULL;
    const json_t *region = json_object_get(md, "region");
    if (region != NULL && !keys_region_ok(json_string_value(region))) {
        fw_error(resp, "invalid value for field 'metadata': region must be an AWS region name "
                       "(1..32 of a-z 0-9 -, such as eu-west-1)");
        return false;
    }
    return true;
}

/*
 * A key value that is a JSON object (common/gcpkey.h: its first byte that is
 * not whitespace is '{'): for Vertex (api_style "vertex") a Google
 * service-account key, parsed, checked (the fields the agent needs, an RSA
 * private key) and replaced in the request by its compact form (one line, the
 * PEM's newlines as \n escapes), which is what is sealed, validated and
 * masked. For any other provider such a value is refused as before: it would
 * go into a header. The reason names the part, never shows it.
 */
static bool keys_value_style_ok(struct fw_request *req, struct fw_response *resp, const char *style)
{
    const char *v = fw_provided(req, "key_value") ? fw_str(req, "key_value") : NULL;
    if (v == NULL || !gcpkey_is_sa(v, strlen(v))) {
        return true;
    }
    if (style == NULL || strcmp(style, "vertex") != 0) {
        fw_error(resp,
                 "invalid value for field 'key_value': must be %d..%d printable ASCII "
                 "characters without whitespace",
                 KEYSTORE_KEY_MIN, KEYSTORE_KEY_MAX);
        return false;
    }
    const char *why = NULL;
    struct gcpkey k;
    if (!gcpkey_parse(v, strlen(v), &k, &why)) {
        fw_error(resp,
                 "invalid value for field 'key_value': %s (a Vertex key is a Google API key or "
                 "a service-account key JSON)",
                 why);
        return false;
    }
    char *compact = NULL;
    size_t n = 0;
    if (gcpkey_compact(v, strlen(v), &compact, &n) != ERR_OK) {
        fw_error(resp, "invalid value for field 'key_value': the service-account key could not "
                       "be read");
        return false;
    }
    bool ok = n >= KEYSTORE_KEY_MIN && n <= KEYSTORE_KEY_MAX &&
              json_object_set_new(req->fields, "key_value", json_string(compact)) == 0;
    OPENSSL_cleanse(compact, n);
    free(compact);
    if (!ok) {
        fw_error(resp,
                 "invalid value for field 'key_value': the service-account key is over %d "
                 "bytes",
                 KEYSTORE_KEY_MAX);
    }
    return ok;
}

/* A region name (Vertex key metadata "region"): as for Bedrock (keys_region_ok). */
static bool keys_vertex_ok(struct fw_request *req, struct fw_response *resp)
{
    const json_t *md = fw_provided(req, "metadata") ? fw_json(req, "metadata") : NULL;
    const json_t *region = json_object_get(md, "region");
    if (region != NULL && !keys_region_ok(json_string_value(region))) {
        fw_error(resp, "invalid value for field 'metadata': region must be a Google Cloud "
                       "location (1..32 of a-z 0-9 -, such as us-central1 or europe-west4)");
        return false;
    }
    return true;
}

/* The provider must be in the catalog and allowed by config. */
static enum err keys_provider_check(struct fw_request *req, struct fw_response *resp,
                                    const json_t *config, json_t **ret_entry, bool *ret_ok)
{
    const char *p = fw_str(req, "provider");
    json_t *entry = NULL;
    *ret_ok = false;
    enum err e = catalog_get_shared(req->backend, req->storage, p, &entry);
    if (e == ERR_NOTFOUND) {
        fw_error(resp, "invalid value for field 'provider': unknown provider '%s'", p);
        return ERR_OK;
    }
    if (e != ERR_OK) {
        return e;
    }
    if (!config_provider_allowed(config, p)) {
        json_decref(entry);
        fw_error(resp, "invalid value for field 'provider': '%s' is not in allowed_providers", p);
        return ERR_OK;
    }
    *ret_entry = entry;
    *ret_ok = true;
    return ERR_OK;
}

/*
 * A key stored for a provider whose catalog base_url still holds a
 * placeholder ({resource}, {region}, {project}: the built-in Azure and
 * Bedrock entries until an operator sets them) cannot be used yet: the agents
 * refuse to call such an entry. Said as a warning on the write, not an error:
 * the key is valid, and storing it before the catalog is set is a fine order.
 */
static void keys_warn_placeholder(struct fw_response *resp, const json_t *entry, const char *p)
{
    const char *base = json_string_value(json_object_get(entry, "base_url"));
    if (base != NULL && strchr(base, '{') != NULL) {
        fw_warn(resp,
                "provider '%s': the catalog's base_url still holds a placeholder; agents will not "
                "call it until an operator sets base_url (vault write byok/providers/%s "
                "base_url=...)",
                p, p);
    }
}

/* Checks the metadata fields of a write; *ret_expires (0 = none) when given. */
static bool keys_meta_ok(struct fw_request *req, struct fw_response *resp, time_t now,
                         bool *ret_has_expiry, time_t *ret_expires)
{
    if (fw_provided(req, "key_value")) {
        const char *v = fw_str(req, "key_value");
        /* A service-account JSON is checked once the provider is known (keys_value_style_ok). */
        if (v == NULL || (!keys_value_ok(v, strlen(v)) && !gcpkey_is_sa(v, strlen(v)))) {
            fw_error(resp,
                     "invalid value for field 'key_value': must be %d..%d printable ASCII "
                     "characters without whitespace",
                     KEYSTORE_KEY_MIN, KEYSTORE_KEY_MAX);
            return false;
        }
    }
    if (fw_provided(req, "name") && !keys_text_ok(fw_str(req, "name"), KEYS_MAX_NAME)) {
        fw_error(resp,
                 "invalid value for field 'name': at most %d characters, no control "
                 "characters",
                 KEYS_MAX_NAME);
        return false;
    }
    if (fw_provided(req, "permissions")) {
        json_t *perms = fw_json(req, "permissions");
        size_t i;
        json_t *v;
        if (json_array_size(perms) > KEYS_MAX_PERMISSIONS) {
            fw_error(resp, "invalid value for field 'permissions': at most %d entries",
                     KEYS_MAX_PERMISSIONS);
            return false;
        }
        json_array_foreach(perms, i, v)
        {
            /*
             * The catalog's capability names: a typo is an error, not a silent
             * no-op. The entry is named by position, never echoed (it could be
             * a key pasted into the wrong field).
             */
            if (!catalog_capability_valid(json_string_value(v))) {
                fw_error(resp,
                         "invalid value for field 'permissions': entry %zu is not one "
                         "of " CATALOG_CAPABILITIES,
                         i + 1);
                return false;
            }
        }
    }
    if (fw_provided(req, "rate_limit") &&
        (fw_int(req, "rate_limit") < 0 || fw_int(req, "rate_limit") > KEYS_MAX_RATE_LIMIT)) {
        fw_error(resp, "invalid value for field 'rate_limit': must be between 0 and %d",
                 KEYS_MAX_RATE_LIMIT);
        return false;
    }
    if (fw_provided(req, "metadata")) {
        json_t *md = fw_json(req, "metadata");
        const char *k;
        json_t *v;
        if (!json_is_object(md) || json_object_size(md) > KEYSTORE_MAX_METADATA) {
            fw_error(resp, "invalid value for field 'metadata': an object of at most %d strings",
                     KEYSTORE_MAX_METADATA);
            return false;
        }
        json_object_foreach(md, k, v)
        {
            if (strlen(k) == 0 || !keys_text_ok(k, 128)) {
                fw_error(resp, "invalid value for field 'metadata': keys are 1 to 128 characters, "
                               "no control characters");
                return false;
            }
            if (!json_is_string(v) ||
                !keys_text_ok(json_string_value(v), KEYSTORE_MAX_METADATA_VALUE)) {
                fw_error(resp,
                         "invalid value for field 'metadata': values are strings of at "
                         "most %d characters, no control characters",
                         KEYSTORE_MAX_METADATA_VALUE);
                return false;
            }
        }
    }
    bool in = fw_provided(req, "expires_in"), at = fw_provided(req, "expires_at");
    *ret_has_expiry = in || at;
    *ret_expires = 0;
    if (in && at) {
        fw_error(resp, "invalid value for field 'expires_at': give expires_in or expires_at, "
                       "not both");
        return false;
    }
    if (in) {
        int64_t secs = fw_int(req, "expires_in");
        if (secs <= 0 || secs > KEYS_MAX_EXPIRES_IN) {
            fw_error(resp, "invalid value for field 'expires_in': must be between 1s and %llds",
                     (long long)KEYS_MAX_EXPIRES_IN);
            return false;
        }
        *ret_expires = now + (time_t)secs;
    }
    if (at) {
        const char *s = fw_str(req, "expires_at");
        time_t t = 0;
        if (s == NULL || (s[0] != '\0' && keystore_time_parse(s, &t) != ERR_OK)) {
            fw_error(resp, "invalid value for field 'expires_at': expected RFC 3339 such as "
                           "2026-12-31T00:00:00Z");
            return false;
        }
        if (s[0] != '\0' && t <= now) {
            fw_error(resp, "invalid value for field 'expires_at': in the past");
            return false;
        }
        *ret_expires = t; /* "" clears the expiry */
    }
    return true;
}

/* ---- records ----------------------------------------------------------------------- */

/*
 * What a read shows of a value: first 7 + "..." + last 3, less for short keys.
 * A Bedrock IAM key shows its access key ID and nothing of the rest
 * ("AKIAIOSFODNN7EXAMPLE:..."): the ID is not secret (AWS shows it in the
 * console and in CloudTrail, and it is what a tenant matches the key by),
 * while the last 3 characters would be the secret access key's or the
 * session token's.
 */
static void keys_mask(const char *v, size_t len, const json_t *entry, char *out, size_t size)
{
    const char *style = json_string_value(json_object_get(entry, "api_style"));
    struct awskey k;
    if (style != NULL && strcmp(style, "bedrock") == 0 && awskey_is_iam(v, len) &&
        awskey_parse(v, len, &k, NULL)) {
        snprintf(out, size, "%.*s:...", (int)k.id_len, k.id);
        return;
    }
    /*
     * A service-account key shows its client_email (truncated to fit):
     * not secret (it is the account's name, shown in the console and in
     * audit logs, and what a tenant matches the key by), unlike anything
     * else of the JSON, the private_key_id included.
     */
    struct gcpkey g;
    if (style != NULL && strcmp(style, "vertex") == 0 && gcpkey_is_sa(v, len) &&
        gcpkey_parse_fields(v, len, &g, NULL)) {
        snprintf(out, size, "sa:%s", g.client_email);
        return;
    }
    /* Never reveal more than a third of the value. */
    size_t head = 7, tail = 3;
    while (head + tail > len / 3 && head > 0) {
        if (head > tail * 2 || tail == 0) {
            head--;
        } else {
            tail--;
        }
    }
    snprintf(out, size, "%.*s...%.*s", (int)head, v, (int)tail, v + len - tail);
}

/*
 * The key record, to modify: a private copy, or with take (a write that saves
 * it) the record itself when nobody else holds it (keystore_record_take,
 * which also drops it from the cache). NULL with *ret_e set otherwise.
 */
static json_t *keys_load(struct fw_request *req, bool take, enum err *ret_e)
{
    char key[STORAGE_MAX_KEY];
    struct keystore *ks = keystore_of(req->backend);
    json_t *shared = NULL, *rec = NULL;
    *ret_e = keystore_path_key(key, sizeof(key), fw_str(req, "tenant"), fw_str(req, "provider"),
                               fw_str(req, "key_type"));
    if (*ret_e == ERR_OK && take) {
        *ret_e = keystore_record_take(ks, req->storage, key, &rec);
        return rec;
    }
    if (*ret_e == ERR_OK) {
        *ret_e = keystore_record_get(ks, req->storage, key, &shared);
    }
    if (*ret_e == ERR_OK) {
        rec = keystore_record_clone(shared);
        json_decref(shared);
        *ret_e = rec != NULL ? ERR_OK : ERR_NOMEM;
    }
    return rec;
}

static enum err keys_save(struct fw_request *req, const json_t *rec)
{
    char key[STORAGE_MAX_KEY];
    enum err e = keystore_path_key(key, sizeof(key), fw_str(req, "tenant"), fw_str(req, "provider"),
                                   fw_str(req, "key_type"));
    return e == ERR_OK ? keystore_record_put(keystore_of(req->backend), req->storage, key, rec) : e;
}

/* The read shape: the record without ciphertexts, with the status computed now. */
static json_t *keys_view(const json_t *rec, time_t now)
{
    json_t *out = keystore_record_clone(rec);
    if (out == NULL) {
        return NULL;
    }
    keystore_versions_revoke_due(out, now);
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(out, "versions"), i, v)
    {
        json_object_del(v, "ct");
    }
    /* Bookkeeping of the usage flush (keystore.h), meaningless to a reader. */
    json_object_del(out, KEYSTORE_USAGE_TOKEN);
    json_object_set_new(out, "status", json_string(keystore_key_status(rec, now)));
    return out;
}

/*
 * Where the grace period of the version being replaced ends: after grace
 * seconds, or at the replaced value's own expiry if that comes first (an
 * expired value is never served, grace or not: SECURITY.md). The record's
 * expires_at belongs to the current value and moves on to the new one, so
 * the replaced version keeps its expiry in its own entry: *ret_old_exp gets
 * it ("" when the value has none) and *ret_revoke the end of the grace
 * period, both RFC 3339 in 32 bytes.
 */
static void keys_grace_end(const json_t *rec, time_t now, int64_t grace, char ret_old_exp[32],
                           char ret_revoke[32])
{
    const char *exp_s = json_string_value(json_object_get(rec, "expires_at"));
    time_t end = now + (time_t)grace, exp = 0;
    ret_old_exp[0] = '\0';
    if (exp_s != NULL && keystore_time_parse(exp_s, &exp) == ERR_OK) {
        keystore_time_format(exp, ret_old_exp, 32);
        if (exp < end) {
            end = exp;
        }
    }
    keystore_time_format(end, ret_revoke, 32);
}

static bool keys_grace_pending(const json_t *rec)
{
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(rec, "versions"), i, v)
    {
        if (json_object_get(v, "revoke_at") != NULL) {
            return true;
        }
    }
    return false;
}

/* Revokes every version except keep_a and keep_b (-1: none), destroying ciphertexts. */
/*
 * Removes the key's grace mark after a save that left no version in grace.
 * Best effort: the record is saved, so the write has happened and answers
 * 200 (a 500 would invite a retry that adds another version); a mark left
 * with nothing pending is harmless, the sweep drops it. Logged by path only.
 */
static void keys_grace_unmark(struct fw_request *req)
{
    const char *t = fw_str(req, "tenant"), *p = fw_str(req, "provider"),
               *kt = fw_str(req, "key_type");
    enum err e = keystore_grace_mark(req->storage, t, p, kt, false);
    if (e != ERR_OK && e != ERR_NOTFOUND) {
        log_kv(LOGL_WARN, "key saved; its grace mark was not removed (the grace sweep drops it)",
               "tenant", t, "provider", p, "key_type", kt, "error", err_name(e), NULL);
    }
}

static void keys_revoke_versions(json_t *rec, const char *now_s, int64_t keep_a, int64_t keep_b)
{
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(rec, "versions"), i, v)
    {
        int64_t n = json_integer_value(json_object_get(v, "version"));
        if (n == keep_a || n == keep_b) {
            continue;
        }
        const char *st = json_string_value(json_object_get(v, "status"));
        if (st == NULL || strcmp(st, "revoked") != 0) {
            json_object_set_new(v, "status", json_string("revoked"));
            json_object_set_new(v, "revoked_at", json_string(now_s));
        }
        json_object_del(v, "ct");
        json_object_del(v, "revoke_at");
    }
}

/*
 * Adds a sealed version of the request's key_value; stores validation and
 * mask. *dek_created becomes true when this created the tenant's data key
 * (see keys_dek_undo), even if a later step fails.
 */
static enum err keys_add_version(struct fw_request *req, struct fw_response *resp, json_t *rec,
                                 const json_t *entry, const char *now_s, bool *dek_created,
                                 int64_t *ret_version)
{
    struct keystore *ks = keystore_of(req->backend);
    const char *t = fw_str(req, "tenant"), *p = fw_str(req, "provider"),
               *kt = fw_str(req, "key_type");
    const char *value = fw_str(req, "key_value");
    size_t len = strlen(value);
    int64_t version = json_integer_value(json_object_get(rec, "current_version")) + 1;
    char ad[ENVELOPE_MAX_AD + 1];
    enum err e = envelope_key_ad(t, p, kt, version, ad, sizeof(ad));
    if (e != ERR_OK) {
        return e;
    }
    struct secret *dek = NULL;
    e = envelope_tenant_dek(keystore_envelope(ks), req->storage, t, true, &dek, dek_created);
    if (e != ERR_OK) {
        return e;
    }
    unsigned char *ct = NULL;
    size_t ct_len = 0;
    e = envelope_seal(dek, ad, strlen(ad), (const unsigned char *)value, len, &ct, &ct_len);
    secret_free(&dek);
    if (e != ERR_OK) {
        return e;
    }
    char *b64 = NULL;
    e = envelope_b64_encode(ct, ct_len, &b64);
    free(ct);
    if (e != ERR_OK) {
        return e;
    }
    json_t *ver = json_pack("{sIssssss}", "version", (json_int_t)version, "status", "active",
                            "created_at", now_s, "ct", b64);
    free(b64);
    json_t *validation = keyvalidate_check((const unsigned char *)value, len, entry);
    char masked[8 + GCPKEY_MAX_EMAIL];
    keys_mask(value, len, entry, masked, sizeof(masked));
    if (ver == NULL || validation == NULL) {
        json_decref(ver);
        json_decref(validation);
        return ERR_NOMEM;
    }
    if (!json_is_array(json_object_get(rec, "versions"))) {
        json_object_set_new(rec, "versions", json_array());
    }
    json_array_append_new(json_object_get(rec, "versions"), ver);
    json_object_set_new(rec, "current_version", json_integer(version));
    json_object_set_new(rec, "masked_value", json_string(masked));
    if (!json_is_true(json_object_get(validation, "is_valid"))) {
        fw_warn(resp, "key_value does not look like a key of %s; see validation.issues",
                json_string_value(json_object_get(entry, "name")) != NULL
                    ? json_string_value(json_object_get(entry, "name"))
                    : p);
    }
    json_object_set_new(rec, "validation", validation);
    *ret_version = version;
    return ERR_OK;
}

/*
 * Whether a key write may store for the tenant, under the write lock: not
 * while an earlier tenant delete is unfinished (paths_tenant_deleting), since
 * the data key the write would make would pass the records that delete left
 * off as the new tenant's. The marker is looked up only when the tenant has
 * no data key: a delete destroys it right after writing the marker, so a
 * write to a tenant that has one (the DEK cache: no storage round trip when
 * warm) costs nothing more. false with a 409 in resp when refused.
 */
static enum err keys_tenant_open(struct fw_request *req, struct fw_response *resp, bool *ret_ok)
{
    struct keystore *ks = keystore_of(req->backend);
    const char *t = fw_str(req, "tenant");
    struct secret *dek = NULL;
    enum err e = envelope_tenant_dek(keystore_envelope(ks), req->storage, t, false, &dek, NULL);
    secret_free(&dek);
    if (e == ERR_NOTFOUND) {
        e = paths_tenant_deleting(req->storage, t);
    }
    if (e == ERR_EXISTS) {
        fw_error_coded(resp, 409, PATHS_TENANT_DELETING, t);
        *ret_ok = false;
        return ERR_OK;
    }
    *ret_ok = e == ERR_OK;
    return e;
}

/*
 * A request that created the tenant's data key and then stored no record
 * sealed with it takes the key back: a stored DEK alone makes the tenant
 * exist (listed, has_data_key, usage batches accepted), so a failed first
 * write would leave a tenant behind. Runs under the write lock, which
 * serialises DEK creation. A failed Put may still have reached storage (its
 * reply lost): the record is read back first, and the DEK is shredded only
 * when storage says it is absent. Found, or unknown (storage failing), the
 * DEK stays: shredding it would make that version unopenable for good. The
 * request's own error is what the caller reports.
 */
static void keys_dek_undo(struct fw_request *req)
{
    struct keystore *ks = keystore_of(req->backend);
    const char *t = fw_str(req, "tenant");
    char key[STORAGE_MAX_KEY];
    enum err e =
        keystore_path_key(key, sizeof(key), t, fw_str(req, "provider"), fw_str(req, "key_type"));
    unsigned char *raw = NULL;
    size_t len = 0;
    if (e == ERR_OK) {
        e = storage_get(req->storage, key, &raw, &len);
    }
    if (raw != NULL) {
        OPENSSL_cleanse(raw, len);
        free(raw);
    }
    if (e == ERR_OK) {
        log_kv(LOGL_WARN, "key write failed but its record reached storage: data key kept",
               "tenant", t, NULL);
        return;
    }
    if (e != ERR_NOTFOUND) {
        log_kv(LOGL_WARN,
               "key write failed and storage cannot say whether its record was saved: data key "
               "kept",
               "tenant", t, "error", err_name(e), NULL);
        return;
    }
    e = envelope_tenant_shred(keystore_envelope(ks), req->storage, t);
    (void)e;
}

/*
 * Keeps at most max versions, dropping the oldest revoked ones (their
 * ciphertext is already gone); a version still live (current or in grace) is
 * never dropped, so the list may exceed max by one during a grace period.
 */
static void keys_trim(json_t *rec, int64_t max)
{
    json_t *vs = json_object_get(rec, "versions");
    size_t i = 0;
    while (max > 0 && (int64_t)json_array_size(vs) > max && i < json_array_size(vs)) {
        const char *st = json_string_value(json_object_get(json_array_get(vs, i), "status"));
        if (st != NULL && strcmp(st, "revoked") == 0) {
            json_array_remove(vs, i);
        } else {
            i++;
        }
    }
}

static void keys_apply_meta(struct fw_request *req, json_t *rec, bool has_expiry, time_t expires)
{
    if (fw_provided(req, "name")) {
        json_object_set_new(rec, "name", json_string(fw_str(req, "name")));
    }
    if (fw_provided(req, "permissions")) {
        json_object_set_new(rec, "permissions", json_deep_copy(fw_json(req, "permissions")));
    }
    if (fw_provided(req, "rate_limit")) {
        json_object_set_new(rec, "rate_limit", json_integer(fw_int(req, "rate_limit")));
    }
    if (fw_provided(req, "metadata")) {
        json_object_set_new(rec, "metadata", json_deep_copy(fw_json(req, "metadata")));
    }
    if (has_expiry) {
        if (expires == 0) {
            json_object_set_new(rec, "expires_at", json_null());
        } else {
            char buf[32];
            keystore_time_format(expires, buf, sizeof(buf));
            json_object_set_new(rec, "expires_at", json_string(buf));
        }
    }
}

static json_t *keys_new_record(struct fw_request *req, const char *now_s)
{
    unsigned char id[8];
    char key_id[20];
    if (RAND_bytes(id, sizeof(id)) != 1) {
        return NULL;
    }
    snprintf(key_id, sizeof(key_id), "k_%02x%02x%02x%02x%02x%02x%02x%02x", id[0], id[1], id[2],
             id[3], id[4], id[5], id[6], id[7]);
    return json_pack("{ss ss ss ss ss ss s[] sI ss ss sn sn sI sI s[] s{}}", "key_id", key_id,
                     "tenant", fw_str(req, "tenant"), "provider", fw_str(req, "provider"),
                     "key_type", fw_str(req, "key_type"), "name", "", "status", "active",
                     "permissions", "rate_limit", (json_int_t)0, "created_at", now_s, "updated_at",
                     now_s, "expires_at", "last_used_at", "usage_count", (json_int_t)0,
                     "current_version", (json_int_t)0, "versions", "metadata");
}

/* ---- handlers ---------------------------------------------------------------------- */

static enum err keys_reply_view(struct fw_request *req, struct fw_response *resp, const json_t *rec,
                                time_t now)
{
    struct keystore *ks = keystore_of(req->backend);
    json_t *view = keys_view(rec, now);
    if (view == NULL) {
        return ERR_NOMEM;
    }
    keystore_usage_merge(ks, fw_str(req, "tenant"), fw_str(req, "provider"),
                         fw_str(req, "key_type"), rec, view);
    fw_reply(resp, view);
    return ERR_OK;
}

/*
 * What a write answers: the key's identity, state and validation, without the
 * version history (read the key for it). Writes are frequent in automation;
 * serialising the history on each one is wasted work.
 */
static enum err keys_reply_summary(struct fw_response *resp, const json_t *rec, time_t now)
{
    static const char *const members[] = {
        "key_id",       "tenant",     "provider",   "key_type",   "name", "current_version",
        "masked_value", "validation", "expires_at", "updated_at", NULL};
    json_t *out = json_object();
    if (out == NULL) {
        return ERR_NOMEM;
    }
    for (size_t i = 0; members[i] != NULL; i++) {
        json_t *v = json_object_get(rec, members[i]);
        if (v != NULL && json_object_set(out, members[i], v) != 0) {
            json_decref(out);
            return ERR_NOMEM;
        }
    }
    json_object_set_new(out, "status", json_string(keystore_key_status(rec, now)));
    fw_reply(resp, out);
    return ERR_OK;
}

/* create and update: a key_value makes a new version; other fields update metadata. */
static enum err keys_write(struct fw_request *req, struct fw_response *resp)
{
    struct keystore *ks = keystore_of(req->backend);
    if (ks == NULL) {
        return ERR_INTERNAL;
    }
    if (!keys_names_ok(req, resp)) {
        return ERR_OK;
    }
    time_t now = keystore_now();
    bool has_expiry = false;
    time_t expires = 0;
    if (!keys_meta_ok(req, resp, now, &has_expiry, &expires)) {
        return ERR_OK;
    }
    json_t *config = NULL, *entry = NULL, *rec = NULL;
    enum err e = config_get_shared(req->backend, req->storage, &config);
    if (e != ERR_OK) {
        return e;
    }
    bool ok = false;
    e = keys_provider_check(req, resp, config, &entry, &ok);
    if (e != ERR_OK || !ok) {
        goto out_config;
    }
    const char *style = json_string_value(json_object_get(entry, "api_style"));
    if ((fw_provided(req, "metadata") && style != NULL && strcmp(style, "azure") == 0 &&
         !keys_azure_meta_ok(req, resp)) ||
        (style != NULL && strcmp(style, "bedrock") == 0 && !keys_bedrock_ok(req, resp)) ||
        (style != NULL && strcmp(style, "vertex") == 0 && !keys_vertex_ok(req, resp)) ||
        !keys_value_style_ok(req, resp, style)) {
        json_decref(entry);
        goto out_config;
    }
    char now_s[32];
    keystore_time_format(now, now_s, sizeof(now_s));
    bool has_value = fw_provided(req, "key_value");
    bool dek_created = false, saved = false, open = false;

    keystore_lock(ks);
    e = keys_tenant_open(req, resp, &open);
    if (e != ERR_OK || !open) {
        goto out_unlock;
    }
    rec = keys_load(req, true, &e);
    if (e == ERR_NOTFOUND) {
        if (!has_value) {
            fw_error(resp, "missing required field 'key_value'");
            e = ERR_OK;
            goto out_unlock;
        }
        rec = keys_new_record(req, now_s);
        e = rec != NULL ? ERR_OK : ERR_NOMEM;
    }
    if (e != ERR_OK) {
        goto out_unlock;
    }
    bool revoked = strcmp(keystore_key_status(rec, now), "revoked") == 0;
    if (revoked && !has_value) {
        fw_error(resp, "key is revoked: write key_value to store a new version");
        goto out_unlock;
    }
    bool had_grace = false;
    if (has_value) {
        int64_t version = 0;
        e = keys_add_version(req, resp, rec, entry, now_s, &dek_created, &version);
        if (e != ERR_OK) {
            goto out_unlock;
        }
        /* A plain write replaces the value at once; rotate is the path with a grace period. */
        had_grace = keys_grace_pending(rec);
        keys_revoke_versions(rec, now_s, version, -1);
        keys_trim(rec, json_integer_value(json_object_get(config, "max_key_versions")));
        json_object_set_new(rec, "status", json_string("active"));
        json_object_del(rec, "revoked_at");
    }
    /*
     * An expiry belongs to the value it was given with: a new value without
     * one has none (it does not inherit the old value's date, passed or not).
     */
    if (has_value && !has_expiry) {
        has_expiry = true;
        expires = 0;
    }
    keys_apply_meta(req, rec, has_expiry, expires);
    json_object_set_new(rec, "updated_at", json_string(now_s));
    e = keys_save(req, rec);
    saved = e == ERR_OK;
    /*
     * A grace period cut short: its mark goes only once the record no longer
     * holds it (removed first, a failed save would leave a grace version the
     * sweep never revokes). No extra round trip otherwise.
     */
    if (e == ERR_OK && had_grace) {
        keys_grace_unmark(req);
    }
    if (e == ERR_OK) {
        e = keys_reply_summary(resp, rec, now);
    }
    if (e == ERR_OK && saved) {
        keys_warn_placeholder(resp, entry, fw_str(req, "provider"));
    }
out_unlock:
    if (dek_created && !saved) {
        keys_dek_undo(req);
    }
    keystore_unlock(ks);
    json_decref(rec);
    json_decref(entry);
out_config:
    json_decref(config);
    return e;
}

static enum err keys_read(struct fw_request *req, struct fw_response *resp)
{
    struct keystore *ks = keystore_of(req->backend);
    if (ks == NULL) {
        return ERR_INTERNAL;
    }
    enum err e;
    /*
     * Under the write lock: a concurrent usage flush is then either all in
     * storage or all pending, and a flush in doubt is settled against the
     * record read here (keystore.h).
     */
    keystore_lock(ks);
    json_t *rec = keys_load(req, false, &e);
    if (e == ERR_OK) {
        e = keys_reply_view(req, resp, rec, keystore_now());
    } else if (e == ERR_NOTFOUND) {
        e = ERR_OK; /* no data: 404 */
    }
    keystore_unlock(ks);
    json_decref(rec);
    return e;
}

static enum err keys_delete(struct fw_request *req, struct fw_response *resp)
{
    struct keystore *ks = keystore_of(req->backend);
    if (ks == NULL) {
        return ERR_INTERNAL;
    }
    if (!keys_names_ok(req, resp)) {
        return ERR_OK;
    }
    const char *t = fw_str(req, "tenant"), *p = fw_str(req, "provider"),
               *kt = fw_str(req, "key_type");
    enum err e;
    keystore_lock(ks);
    json_t *rec = keys_load(req, false, &e);
    if (e == ERR_NOTFOUND) {
        e = ERR_OK; /* deleting what is not there succeeds, as in Vault */
        goto out_unlock;
    }
    if (e != ERR_OK) {
        goto out_unlock;
    }
    char now_s[32];
    keystore_time_format(keystore_now(), now_s, sizeof(now_s));
    bool had_grace = keys_grace_pending(rec);
    keys_revoke_versions(rec, now_s, -1, -1);
    const char *status = json_string_value(json_object_get(rec, "status"));
    if (status == NULL || strcmp(status, "revoked") != 0) {
        json_object_set_new(rec, "revoked_at", json_string(now_s));
    }
    json_object_set_new(rec, "status", json_string("revoked"));
    json_object_set_new(rec, "updated_at", json_string(now_s));
    /*
     * The tombstone keeps the key's whole use for audit: creds reads counted
     * in memory go into it. Kept pending if it was not saved (the key is still
     * live), in doubt as a flush's if storage may have it after all; reads
     * racing the delete stay pending and are flushed into it.
     */
    int64_t hits = keystore_usage_save_begin(ks, t, p, kt, rec);
    e = keys_save(req, rec);
    keystore_usage_save_end(ks, t, p, kt, rec, hits, e);
    if (e == ERR_OK && had_grace) {
        keys_grace_unmark(req);
    }
out_unlock:
    keystore_unlock(ks);
    json_decref(rec);
    return e;
}

static enum err keys_rotate(struct fw_request *req, struct fw_response *resp)
{
    struct keystore *ks = keystore_of(req->backend);
    if (ks == NULL) {
        return ERR_INTERNAL;
    }
    if (!keys_names_ok(req, resp)) {
        return ERR_OK;
    }
    const char *value = fw_str(req, "key_value");
    if (value == NULL ||
        (!keys_value_ok(value, strlen(value)) && !gcpkey_is_sa(value, strlen(value)))) {
        fw_error(resp,
                 "invalid value for field 'key_value': must be %d..%d printable ASCII characters "
                 "without whitespace",
                 KEYSTORE_KEY_MIN, KEYSTORE_KEY_MAX);
        return ERR_OK;
    }
    int64_t grace = fw_int(req, "grace_period");
    if (grace < 0 || grace > KEYS_MAX_GRACE) {
        fw_error(resp, "invalid value for field 'grace_period': must be between 0 and %llds",
                 (long long)KEYS_MAX_GRACE);
        return ERR_OK;
    }
    time_t now = keystore_now();
    bool has_expiry = false;
    time_t expires = 0;
    if (!keys_meta_ok(req, resp, now, &has_expiry, &expires)) {
        return ERR_OK;
    }
    json_t *config = NULL, *entry = NULL, *rec = NULL;
    enum err e = config_get_shared(req->backend, req->storage, &config);
    if (e != ERR_OK) {
        return e;
    }
    bool ok = false;
    e = keys_provider_check(req, resp, config, &entry, &ok);
    if (e != ERR_OK || !ok) {
        goto out_config;
    }
    const char *style = json_string_value(json_object_get(entry, "api_style"));
    if ((style != NULL && strcmp(style, "bedrock") == 0 && !keys_bedrock_ok(req, resp)) ||
        (style != NULL && strcmp(style, "vertex") == 0 && !keys_vertex_ok(req, resp)) ||
        !keys_value_style_ok(req, resp, style)) {
        json_decref(entry);
        goto out_config;
    }
    char now_s[32];
    keystore_time_format(now, now_s, sizeof(now_s));

    bool dek_created = false, saved = false, open = false;
    keystore_lock(ks);
    e = keys_tenant_open(req, resp, &open);
    if (e != ERR_OK || !open) {
        goto out_unlock;
    }
    rec = keys_load(req, false, &e);
    if (e == ERR_NOTFOUND) {
        fw_error_coded(resp, 404, "no key to rotate");
        e = ERR_OK;
        goto out_unlock;
    }
    if (e != ERR_OK) {
        goto out_unlock;
    }
    if (strcmp(keystore_key_status(rec, now), "revoked") == 0) {
        fw_error(resp, "key is revoked: write key_value to the key path to store a new version");
        goto out_unlock;
    }
    /*
     * An expired key's value is past its life: it gets no grace period (creds
     * would serve it again by version). The expiry belonged to the old value:
     * the new one has the expiry given with it, or none.
     */
    bool expired = strcmp(keystore_key_status(rec, now), "expired") == 0;
    bool keep_old = grace > 0 && !expired;
    char old_exp_s[32] = "", revoke_s[32];
    keys_grace_end(rec, now, grace, old_exp_s, revoke_s);
    keys_apply_meta(req, rec, true, has_expiry ? expires : 0);
    int64_t old = json_integer_value(json_object_get(rec, "current_version"));
    int64_t version = 0;
    e = keys_add_version(req, resp, rec, entry, now_s, &dek_created, &version);
    if (e != ERR_OK) {
        goto out_unlock;
    }
    /*
     * Only the version being replaced gets the grace period; a version still
     * in grace from an earlier rotation is revoked now, so at most two values
     * are ever live.
     */
    keys_revoke_versions(rec, now_s, version, keep_old ? old : -1);
    if (keep_old) {
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(rec, "versions"), i, v)
        {
            if (json_integer_value(json_object_get(v, "version")) == old &&
                json_object_get(v, "ct") != NULL) {
                json_object_set_new(v, "revoke_at", json_string(revoke_s));
                if (old_exp_s[0] != '\0') {
                    json_object_set_new(v, "expires_at", json_string(old_exp_s));
                }
            }
        }
    }
    keys_trim(rec, json_integer_value(json_object_get(config, "max_key_versions")));
    json_object_set_new(rec, "updated_at", json_string(now_s));
    /*
     * The sweep's mark is written before the record that needs it and removed
     * only after the record that no longer does: a failed save then leaves at
     * most a mark with nothing pending (the sweep drops it), never a grace
     * version the sweep cannot find, and a retried rotate starts from the
     * record as it was.
     */
    const char *t = fw_str(req, "tenant"), *p = fw_str(req, "provider"),
               *kt = fw_str(req, "key_type");
    if (keep_old) {
        e = keystore_grace_mark(req->storage, t, p, kt, true);
    }
    if (e == ERR_OK) {
        e = keys_save(req, rec);
        saved = e == ERR_OK;
    }
    if (e == ERR_OK && !keep_old) {
        keys_grace_unmark(req);
    }
    if (e == ERR_OK) {
        e = keys_reply_view(req, resp, rec, now);
    }
    if (e == ERR_OK) {
        keys_warn_placeholder(resp, entry, p);
    }
out_unlock:
    if (dek_created && !saved) {
        keys_dek_undo(req);
    }
    keystore_unlock(ks);
    json_decref(rec);
    json_decref(entry);
out_config:
    json_decref(config);
    return e;
}

static enum err keys_exists(struct fw_request *req, bool *ret_exists)
{
    char key[STORAGE_MAX_KEY];
    json_t *shared = NULL;
    enum err e = keystore_path_key(key, sizeof(key), fw_str(req, "tenant"), fw_str(req, "provider"),
                                   fw_str(req, "key_type"));
    if (e == ERR_OK) {
        e = keystore_record_get(keystore_of(req->backend), req->storage, key, &shared);
    }
    json_decref(shared);
    *ret_exists = e == ERR_OK;
    return e == ERR_NOTFOUND ? ERR_OK : e;
}

static enum err keys_list_storage(struct fw_request *req, struct fw_response *resp,
                                  const char *prefix, bool with_info)
{
    char **names = NULL;
    size_t n = 0;
    enum err e = storage_list(req->storage, prefix, &names, &n);
    if (e == ERR_NOTFOUND) {
        return ERR_OK;
    }
    if (e != ERR_OK) {
        return e;
    }
    json_t *keys = json_array();
    json_t *info = json_object();
    time_t now = keystore_now();
    for (size_t i = 0; i < n && keys != NULL; i++) {
        json_array_append_new(keys, json_string(names[i]));
        if (!with_info || strchr(names[i], '/') != NULL) {
            continue;
        }
        char key[STORAGE_MAX_KEY];
        json_t *rec = NULL;
        if ((size_t)snprintf(key, sizeof(key), "%s%s", prefix, names[i]) < sizeof(key) &&
            storage_get_json(req->storage, key, &rec) == ERR_OK) {
            json_object_set_new(info, names[i],
                                json_pack("{sOsssOsO}", "name", json_object_get(rec, "name"),
                                          "status", keystore_key_status(rec, now),
                                          "current_version",
                                          json_object_get(rec, "current_version"), "key_id",
                                          json_object_get(rec, "key_id")));
            json_decref(rec);
        }
    }
    storage_keys_free(names, n);
    if (keys == NULL || info == NULL) {
        json_decref(keys);
        json_decref(info);
        return ERR_NOMEM;
    }
    if (json_array_size(keys) == 0) {
        json_decref(keys);
        json_decref(info);
        return ERR_OK; /* Vault answers an empty list with 404 */
    }
    json_t *out = json_pack("{so}", "keys", keys);
    if (with_info) {
        json_object_set_new(out, "key_info", info);
    } else {
        json_decref(info);
    }
    fw_reply(resp, out);
    return ERR_OK;
}

static enum err keys_list_tenant(struct fw_request *req, struct fw_response *resp)
{
    char prefix[STORAGE_MAX_KEY];
    enum err e = keystore_path_tenant(prefix, sizeof(prefix), fw_str(req, "tenant"), "keys/");
    return e == ERR_OK ? keys_list_storage(req, resp, prefix, false) : e;
}

static enum err keys_list_provider(struct fw_request *req, struct fw_response *resp)
{
    char prefix[STORAGE_MAX_KEY];
    int n = snprintf(prefix, sizeof(prefix), "tenants/%s/keys/%s/", fw_str(req, "tenant"),
                     fw_str(req, "provider"));
    if (n < 0 || (size_t)n >= sizeof(prefix)) {
        return ERR_TOOBIG;
    }
    return keys_list_storage(req, resp, prefix, true);
}

static const struct fw_field keys_fields[] = {
    {.name = "key_value",
     .type = FW_TYPE_SECRET,
     .max_len = KEYSTORE_KEY_MAX + 1, /* one past: refused below with our own message */
     .description = "The provider key (write-only): 8..8192 printable ASCII, no whitespace. For "
                    "Bedrock, an API key or IAM credentials <access_key_id>:<secret_access_key>"
                    "[:<session_token>]. For Vertex, a Google API key or a service-account key "
                    "file (JSON, stored compacted)."},
    {.name = "name", .type = FW_TYPE_STRING, .description = "A label for people."},
    {.name = "permissions",
     .type = FW_TYPE_STRINGS,
     .description =
         "What the key is meant for, as catalog capability names: " CATALOG_CAPABILITIES "."},
    {.name = "rate_limit", .type = FW_TYPE_INT, .description = "Requests per minute (0 = none)."},
    {.name = "expires_in", .type = FW_TYPE_DURATION, .description = "Expiry from now."},
    {.name = "expires_at",
     .type = FW_TYPE_STRING,
     .description = "Expiry as RFC 3339 (\"\" clears it)."},
    {.name = "metadata",
     .type = FW_TYPE_KVPAIRS,
     .description =
         "Provider extras (Azure api_version, deployment; Bedrock or Vertex region...)."},
    {.name = NULL},
};

static const struct fw_field keys_rotate_fields[] = {
    {.name = "key_value",
     .type = FW_TYPE_SECRET,
     .required = true,
     .max_len = KEYSTORE_KEY_MAX + 1,
     .description = "The new provider key (write-only)."},
    {.name = "grace_period",
     .type = FW_TYPE_DURATION,
     .def = "0",
     .description = "How long the replaced version stays usable (0 = revoke at once)."},
    {.name = "expires_in",
     .type = FW_TYPE_DURATION,
     .description = "Expiry of the new value from now (none if neither is given)."},
    {.name = "expires_at",
     .type = FW_TYPE_STRING,
     .description = "Expiry of the new value as RFC 3339."},
    {.name = NULL},
};

const struct fw_path paths_keys[] = {
    {
        .pattern = "tenants/{tenant}/keys/",
        .handlers = {[FW_OP_LIST] = keys_list_tenant},
        .synopsis = "List the providers a tenant has keys for.",
        .description = "Returns provider folders (\"openai/\").",
    },
    {
        .pattern = "tenants/{tenant}/keys/{provider}/",
        .handlers = {[FW_OP_LIST] = keys_list_provider},
        .synopsis = "List a tenant's key types for one provider.",
        .description = "Returns key types with key_info (name, status, current_version).",
    },
    {
        .pattern = "tenants/{tenant}/keys/{provider}/{key_type}/rotate",
        .fields = keys_rotate_fields,
        .handlers = {[FW_OP_UPDATE] = keys_rotate, [FW_OP_CREATE] = keys_rotate},
        .synopsis = "Rotate a key: the new value becomes active.",
        .description = "The replaced version is revoked at once, or after grace_period.",
    },
    {
        .pattern = "tenants/{tenant}/keys/{provider}/{key_type}",
        .fields = keys_fields,
        .handlers = {[FW_OP_READ] = keys_read,
                     [FW_OP_CREATE] = keys_write,
                     [FW_OP_UPDATE] = keys_write,
                     [FW_OP_DELETE] = keys_delete},
        .exists = keys_exists,
        .synopsis = "Store, describe or revoke a tenant's provider key.",
        .description = "The value is write-only; reads return metadata, a masked value, "
                       "versions and validation. Delete revokes and keeps a tombstone.",
    },
    {.pattern = NULL},
};
