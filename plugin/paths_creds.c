/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Path tenants/<t>/creds/<provider>: the one path that returns a plaintext
 * key, for agents (policies/byok-agent.hcl; tenants' own policy denies it).
 *
 * It is the hot path: an agent calls it whenever its cached copy expires. It
 * makes one storage round trip when warm (the key record); config, the
 * provider entry, the tenant's settings and the unwrapped DEK come from
 * caches that InvalidateKey keeps honest. Usage counting does not write: hits
 * are counted in memory and flushed by byok_periodic.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "plugin/catalog.h"
#include "plugin/config.h"
#include "plugin/envelope.h"
#include "plugin/keystore.h"
#include "plugin/paths.h"

/*
 * Whether obj's time member `name` (absent: no limit) has passed; lowers *ttl
 * to the seconds left when it has not. An unreadable time counts as passed.
 */
static bool creds_until(const json_t *obj, const char *name, time_t now, json_int_t *ttl)
{
    const json_t *v = json_object_get(obj, name);
    time_t t = 0;
    if (v == NULL || json_is_null(v)) {
        return false;
    }
    if (keystore_time_parse(json_string_value(v), &t) != ERR_OK || t <= now) {
        return true;
    }
    if (t - now < *ttl) {
        *ttl = t - now;
    }
    return false;
}

/*
 * Finds the version to open: `want` (0 = current), if live and not past its
 * grace period or its own expiry, and caps *ttl so that an agent caches it no
 * longer than creds would serve it: the key's expiry (the current value's),
 * and for a version in its grace period the end of it and the expiry of that
 * value (kept in its entry by a rotation, keys_grace_end in paths_keys.c).
 */
static const json_t *creds_pick(const json_t *rec, int64_t want, time_t now, json_int_t *ttl)
{
    if (want == 0) {
        want = json_integer_value(json_object_get(rec, "current_version"));
    }
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(rec, "versions"), i, v)
    {
        if (json_integer_value(json_object_get(v, "version")) != want) {
            continue;
        }
        const char *st = json_string_value(json_object_get(v, "status"));
        if (st == NULL || strcmp(st, "active") != 0 || json_object_get(v, "ct") == NULL) {
            return NULL;
        }
        if (creds_until(rec, "expires_at", now, ttl) || creds_until(v, "revoke_at", now, ttl) ||
            creds_until(v, "expires_at", now, ttl)) {
            return NULL;
        }
        return v;
    }
    return NULL;
}

static enum err creds_open(struct fw_request *req, const json_t *ver, int64_t version,
                           struct secret **ret_key)
{
    const char *t = fw_str(req, "tenant"), *p = fw_str(req, "provider"),
               *kt = fw_str(req, "key_type");
    char ad[ENVELOPE_MAX_AD + 1];
    enum err e = envelope_key_ad(t, p, kt, version, ad, sizeof(ad));
    if (e != ERR_OK) {
        return e;
    }
    unsigned char *ct = NULL;
    size_t ct_len = 0;
    e = envelope_b64_decode(json_string_value(json_object_get(ver, "ct")), &ct, &ct_len);
    if (e != ERR_OK) {
        return ERR_PROTO;
    }
    struct secret *dek = NULL;
    e = envelope_tenant_dek(keystore_envelope(keystore_of(req->backend)), req->storage, t, false,
                            &dek, NULL);
    /*
     * ERR_NOTFOUND passes through: a key record without a DEK (the tenant was
     * shredded). A DEK naming a KEK version storage lacks is ERR_STORAGE
     * (envelope_dek_unwrap): a 500 the agent retries, never this 404.
     */
    if (e == ERR_OK) {
        e = envelope_open(dek, ad, strlen(ad), ct, ct_len, ret_key);
        secret_free(&dek);
    }
    free(ct);
    return e;
}

static enum err creds_read(struct fw_request *req, struct fw_response *resp)
{
    struct keystore *ks = keystore_of(req->backend);
    if (ks == NULL) {
        return ERR_INTERNAL;
    }
    const char *t = fw_str(req, "tenant"), *p = fw_str(req, "provider"),
               *kt = fw_str(req, "key_type");
    if (kt == NULL || !fw_name_valid(kt)) {
        fw_error(resp, "invalid value for field 'key_type': must match [a-z0-9][a-z0-9_-]{0,62}");
        return ERR_OK;
    }
    int64_t want = fw_int(req, "version");
    if (want < 0) {
        fw_error(resp, "invalid value for field 'version': cannot be negative");
        return ERR_OK;
    }
    time_t now = keystore_now();
    json_t *config = NULL, *rec = NULL, *entry = NULL, *settings = NULL, *out = NULL;
    struct secret *key = NULL;
    enum err e = config_get_shared(req->backend, req->storage, &config);
    if (e != ERR_OK) {
        return e;
    }
    if (!config_provider_allowed(config, p)) {
        /* Narrowing allowed_providers keeps tenants off a provider: its keys too. */
        fw_error_coded(resp, 404, "provider '%s' is not in allowed_providers", p);
        goto out;
    }
    char skey[STORAGE_MAX_KEY];
    e = keystore_path_key(skey, sizeof(skey), t, p, kt);
    if (e == ERR_OK) {
        /* Shared, read-only: at most one storage round trip, none when warm. */
        e = keystore_record_get(ks, req->storage, skey, &rec);
    }
    if (e == ERR_NOTFOUND) {
        /*
         * Still a 404 (agents cache "no key" answers), but one that says why
         * when the provider itself is unknown. The catalog lookup is cached.
         */
        e = catalog_get_shared(req->backend, req->storage, p, &entry);
        if (e == ERR_NOTFOUND) {
            fw_error_coded(resp, 404, "no active key: unknown provider '%s' (not in the catalog)",
                           p);
        } else if (e == ERR_OK) {
            fw_error_coded(resp, 404, "no active key");
        }
        e = e == ERR_NOTFOUND ? ERR_OK : e;
        goto out;
    }
    if (e != ERR_OK) {
        goto out;
    }
    const json_t *ver = NULL;
    json_int_t ttl = json_integer_value(json_object_get(config, "creds_ttl"));
    if (strcmp(keystore_key_status(rec, now), "active") != 0 ||
        (ver = creds_pick(rec, want, now, &ttl)) == NULL) {
        /* Revoked, expired, or a version past its grace: never returned. */
        fw_error_coded(resp, 404, "no active key");
        goto out;
    }
    int64_t version = json_integer_value(json_object_get(ver, "version"));
    e = creds_open(req, ver, version, &key);
    if (e == ERR_NOTFOUND) {
        /*
         * The tenant's data key is gone while a key record is still seen: a
         * tenant delete that shredded the DEK but could not remove every
         * record (it is retried by deleting again). Nothing can be served.
         */
        fw_error_coded(resp, 404, "no active key (the tenant's data key was destroyed)");
        e = ERR_OK;
        goto out;
    }
    if (e != ERR_OK) {
        goto out;
    }
    e = catalog_get_shared(req->backend, req->storage, p, &entry);
    if (e == ERR_NOTFOUND) {
        fw_error_coded(resp, 404, "provider '%s' is no longer in the catalog", p);
        e = ERR_OK;
        goto out;
    }
    if (e == ERR_OK) {
        e = keystore_settings_with(req->backend, req->storage, t, config, &settings);
    }
    if (e != ERR_OK) {
        goto out;
    }
    json_t *metadata = json_object_get(rec, "metadata");
    json_t *expires = json_object_get(rec, "expires_at");
    /*
     * docs/api.md shows "provider" twice (name and entry); JSON keeps one, so
     * "provider" is the entry (which carries "name") and "provider_name" the name.
     */
    out = json_pack("{ss ss ss sO sI sO sI sO sO sO}", "tenant", t, "provider_name", p, "key_type",
                    kt, "key_id", json_object_get(rec, "key_id"), "version", (json_int_t)version,
                    "expires_at", expires != NULL ? expires : json_null(), "ttl", ttl, "provider",
                    entry, "settings", settings, "metadata",
                    metadata != NULL ? metadata : json_null());
    /* The key's permissions and rate limit, for the agent to apply ([] and 0: none). */
    json_t *perms = json_object_get(rec, "permissions");
    json_t *rate = json_object_get(rec, "rate_limit");
    if (out == NULL ||
        json_object_set_new(out, "permissions",
                            json_is_array(perms) ? json_incref(perms) : json_array()) != 0 ||
        json_object_set_new(out, "rate_limit",
                            json_is_integer(rate) ? json_incref(rate) : json_integer(0)) != 0 ||
        json_object_set_new(out, "api_key", json_stringn((const char *)key->data, key->len)) != 0) {
        e = ERR_NOMEM;
        goto out;
    }
    keystore_usage_hit(ks, t, p, kt, now);
    fw_reply(resp, out);
    out = NULL;
out:
    secret_free(&key);
    json_decref(out);
    json_decref(settings);
    json_decref(entry);
    json_decref(rec);
    json_decref(config);
    return e;
}

static const struct fw_field creds_fields[] = {
    {.name = "key_type",
     .type = FW_TYPE_STRING,
     .def = "production",
     .max_len = FW_NAME_MAX,
     .description = "Which of the tenant's keys for the provider."},
    {.name = "version",
     .type = FW_TYPE_INT,
     .def = "0",
     .description = "A specific live version (one in its grace period); 0 = current."},
    {.name = NULL},
};

const struct fw_path paths_creds[] = {
    {
        .pattern = "tenants/{tenant}/creds/{provider}",
        .fields = creds_fields,
        .handlers = {[FW_OP_READ] = creds_read},
        .synopsis = "Read a tenant's provider key in plaintext (agents only).",
        .description = "Returns the active key with its TTL, the provider's catalog entry and "
                       "the tenant's settings. Revoked or expired keys are never returned.",
    },
    {.pattern = NULL},
};
