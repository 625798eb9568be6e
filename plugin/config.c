/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The mount's settings: the `config` path and config_get_shared for the other
 * path modules. The effective config (stored values over defaults) is cached in
 * the engine's document cache under its storage key, so a warm read of the
 * document does no storage round trip (a `config` read adds the KEK state,
 * kept in memory too: envelope_kek_state); our own writes drop the entry, and so does Vault's
 * InvalidateKey("config") through byok_invalidate. Validation of the
 * individual fields is the framework's (types, ranges); what is left here is
 * the enumerations and name lists.
 */
#include "plugin/config.h"

#include <ctype.h>
#include <string.h>

#include "plugin/cache.h"
#include "plugin/catalog.h"
#include "plugin/keystore.h"
#include "plugin/paths.h"

#define CONFIG_DEFAULT_CREDS_TTL "5m"
#define CONFIG_DEFAULT_MAX_KEY_VERSIONS "10"
#define CONFIG_DEFAULT_TIER "MEDIUM"
#define CONFIG_DEFAULT_LOCAL_HOSTS "127.0.0.1,localhost,::1"
#define CONFIG_DEFAULT_BUDGET_LEASE_TTL "5m"

static const char *const config_tiers[] = {"FREE", "LOW", "MEDIUM", "HIGH", "UNLIMITED", NULL};
/* The agent's ranking strategies (tenant setting routing_strategy; docs/agent.md, Ranking). */
static const char *const config_strategies[] = {"ordered",  "cheapest", "fastest",
                                                "weighted", "balanced", NULL};
#define CONFIG_DEFAULT_STRATEGY "ordered"

static const struct fw_field config_fields[] = {
    {.name = "creds_ttl",
     .type = FW_TYPE_DURATION,
     .def = CONFIG_DEFAULT_CREDS_TTL,
     .description = "How long an agent may cache a key read from creds (1s..24h).",
     .min = 1,
     .max = 86400},
    {.name = "max_key_versions",
     .type = FW_TYPE_INT,
     .def = CONFIG_DEFAULT_MAX_KEY_VERSIONS,
     .description = "Versions kept per key (1..100); older ones are destroyed.",
     .min = 1,
     .max = 100},
    {.name = "default_budget_tier",
     .type = FW_TYPE_STRING,
     .def = CONFIG_DEFAULT_TIER,
     .description = "Budget tier of tenants without settings: FREE, LOW, MEDIUM, HIGH, UNLIMITED.",
     .max_len = 16},
    {.name = "default_routing_strategy",
     .type = FW_TYPE_STRING,
     .def = CONFIG_DEFAULT_STRATEGY,
     .description = "Routing strategy of tenants that set none: ordered, cheapest, fastest, "
                    "weighted, balanced.",
     .max_len = 16},
    {.name = "allowed_providers",
     .type = FW_TYPE_STRINGS,
     .def = "",
     .description = "Providers tenants may store keys for; empty means all."},
    {.name = "local_hosts",
     .type = FW_TYPE_STRINGS,
     .def = CONFIG_DEFAULT_LOCAL_HOSTS,
     .description = "Hosts a local provider may use with plain http.",
     .max_len = CONFIG_MAX_LOCAL_HOSTS},
    {.name = "budget_lease_ttl",
     .type = FW_TYPE_DURATION,
     .def = CONFIG_DEFAULT_BUDGET_LEASE_TTL,
     .description = "How long a node's budget lease holds its slice of a tenant's monthly budget "
                    "without renewal (10s..1h).",
     .min = CONFIG_BUDGET_LEASE_TTL_MIN,
     .max = CONFIG_BUDGET_LEASE_TTL_MAX},
    {.name = NULL},
};

/* The defaults as a config document; a new object. */
static json_t *config_defaults(void)
{
    json_t *hosts = json_pack("[sss]", "127.0.0.1", "localhost", "::1");
    return json_pack("{s:I, s:I, s:s, s:s, s:[], s:o, s:I}", "creds_ttl", (json_int_t)300,
                     "max_key_versions", (json_int_t)10, "default_budget_tier", CONFIG_DEFAULT_TIER,
                     "default_routing_strategy", CONFIG_DEFAULT_STRATEGY, "allowed_providers",
                     "local_hosts", hosts, "budget_lease_ttl",
                     (json_int_t)CONFIG_BUDGET_LEASE_TTL_DEFAULT);
}

/*
 * Fills what a stored document lacks (written by an older version, or by
 * hand) with defaults, and ignores values of the wrong type rather than
 * passing them on to the other modules. NULL on out of memory, never a
 * document with a default where a stored value did not fit: the result is
 * cached, and a stored allowed_providers replaced by the default [] would
 * let tenants use every provider.
 */
static json_t *config_effective(const json_t *stored)
{
    json_t *c = config_defaults();
    if (c == NULL || stored == NULL) {
        return c;
    }
    json_t *v;
    bool ok = true;
    if (json_is_integer(v = json_object_get(stored, "creds_ttl")) && json_integer_value(v) > 0) {
        ok = ok && json_object_set(c, "creds_ttl", v) == 0;
    }
    if (json_is_integer(v = json_object_get(stored, "max_key_versions")) &&
        json_integer_value(v) > 0) {
        ok = ok && json_object_set(c, "max_key_versions", v) == 0;
    }
    /* Out of range (written by hand): the default, not a lease that never or always expires. */
    if (json_is_integer(v = json_object_get(stored, "budget_lease_ttl")) &&
        json_integer_value(v) >= CONFIG_BUDGET_LEASE_TTL_MIN &&
        json_integer_value(v) <= CONFIG_BUDGET_LEASE_TTL_MAX) {
        ok = ok && json_object_set(c, "budget_lease_ttl", v) == 0;
    }
    if (json_is_string(v = json_object_get(stored, "default_budget_tier"))) {
        ok = ok && json_object_set(c, "default_budget_tier", v) == 0;
    }
    if (json_is_string(v = json_object_get(stored, "default_routing_strategy"))) {
        ok = ok && json_object_set(c, "default_routing_strategy", v) == 0;
    }
    if (json_is_array(v = json_object_get(stored, "allowed_providers"))) {
        ok = ok && json_object_set_new(c, "allowed_providers", json_deep_copy(v)) == 0;
    }
    if (json_is_array(v = json_object_get(stored, "local_hosts"))) {
        ok = ok && json_object_set_new(c, "local_hosts", json_deep_copy(v)) == 0;
    }
    if (!ok) {
        json_decref(c);
        c = NULL;
    }
    return c;
}

/* The shared, immutable cached config (new reference). */
static enum err config_load(struct byok *b, struct storage *st, json_t **ret_config)
{
    struct cache *cache = byok_cache(b);
    uint64_t gen = 0;
    json_t *c = cache_get(cache, CONFIG_STORAGE_KEY, &gen);
    if (c != NULL) {
        *ret_config = c;
        return ERR_OK;
    }
    json_t *stored = NULL;
    enum err e = storage_get_json(st, CONFIG_STORAGE_KEY, &stored);
    if (e != ERR_OK && e != ERR_NOTFOUND) {
        return e;
    }
    c = config_effective(stored);
    json_decref(stored);
    if (c == NULL) {
        return ERR_NOMEM;
    }
    cache_put(cache, CONFIG_STORAGE_KEY, c, gen);
    *ret_config = c;
    return ERR_OK;
}

enum err config_get_shared(struct byok *b, struct storage *st, json_t **ret_config)
{
    return config_load(b, st, ret_config);
}

bool config_provider_allowed(const json_t *config, const char *provider)
{
    json_t *allowed = json_object_get(config, "allowed_providers");
    if (json_array_size(allowed) == 0) {
        return true;
    }
    size_t i;
    json_t *v;
    json_array_foreach(allowed, i, v)
    {
        if (json_is_string(v) && provider != NULL && strcmp(json_string_value(v), provider) == 0) {
            return true;
        }
    }
    return false;
}

/*
 * The effective config plus the KEK state: kek_version, kek_versions and
 * rotation_incomplete (envelope_kek_state: from memory while warm), so an
 * admin sees a rotation cut short without calling rotate-root.
 */
static enum err config_read(struct fw_request *req, struct fw_response *resp)
{
    json_t *shared = NULL;
    enum err e = config_load(req->backend, req->storage, &shared);
    if (e != ERR_OK) {
        return e;
    }
    struct envelope_kek_state kek = {0};
    e = byok_kek_state(req->backend, req->storage, &kek);
    if (e != ERR_OK) {
        json_decref(shared);
        return e;
    }
    /* A shallow copy: the arrays are shared read-only with the cache. */
    json_t *out = json_copy(shared);
    json_decref(shared);
    json_t *versions = json_array();
    bool ok = out != NULL && versions != NULL;
    for (size_t i = 0; ok && i < kek.n_versions; i++) {
        ok = json_array_append_new(versions, json_integer(kek.versions[i])) == 0;
    }
    ok = ok && json_object_set_new(out, "kek_version", json_integer(kek.current)) == 0;
    ok = ok && json_object_set(out, "kek_versions", versions) == 0;
    ok = ok && json_object_set_new(out, "rotation_incomplete",
                                   json_boolean(kek.rotation_incomplete)) == 0;
    json_decref(versions);
    envelope_kek_state_done(&kek);
    if (!ok) {
        json_decref(out);
        return ERR_NOMEM;
    }
    fw_reply(resp, out);
    return ERR_OK;
}

static bool config_host_valid(const char *h)
{
    size_t len = strlen(h);
    if (len == 0 || len > CONFIG_MAX_HOST_LEN) {
        return false;
    }
    /* DNS names, IPv4 and IPv6 literals (without brackets). */
    for (const char *p = h; *p != '\0'; p++) {
        if (!(isalnum((unsigned char)*p) || *p == '.' || *p == '-' || *p == ':')) {
            return false;
        }
    }
    return true;
}

/*
 * A provided field whose value is one of set (any case: folded to upper or
 * lower case, as set holds them) into next. False when it is not one of
 * them (a 400 in resp naming the field and the set) or does not fit
 * (*e = ERR_NOMEM); true when stored or not provided.
 */
static bool config_set_enum(struct fw_request *req, struct fw_response *resp, json_t *next,
                            const char *field, const char *const *set, bool upper, enum err *e)
{
    if (!fw_provided(req, field)) {
        return true;
    }
    char v[17]; /* both fields' max_len is 16 */
    const char *in = fw_str(req, field);
    size_t i = 0;
    for (; in[i] != '\0' && i < sizeof(v) - 1; i++) {
        v[i] = (char)(upper ? toupper((unsigned char)in[i]) : tolower((unsigned char)in[i]));
    }
    v[i] = '\0';
    char names[128] = "";
    bool ok = false;
    for (size_t t = 0; set[t] != NULL; t++) {
        ok = ok || strcmp(v, set[t]) == 0;
        size_t len = strlen(names);
        snprintf(names + len, sizeof(names) - len, "%s%s", t > 0 ? ", " : "", set[t]);
    }
    if (!ok) {
        fw_error(resp, "invalid value for field '%s': must be one of %s", field, names);
        return false;
    }
    if (json_object_set_new(next, field, json_string(v)) != 0) {
        *e = ERR_NOMEM;
        return false;
    }
    return true;
}

static enum err config_write_unlocked(struct fw_request *req, struct fw_response *resp)
{
    struct byok *b = req->backend;
    json_t *cur = NULL;
    enum err e = config_load(b, req->storage, &cur);
    if (e != ERR_OK) {
        return e;
    }
    json_t *next = json_deep_copy(cur);
    json_decref(cur);
    if (next == NULL) {
        return ERR_NOMEM;
    }

    /* Every set is checked: a write answered 204 must have stored every field it was given. */
    static const char *const plain[] = {"creds_ttl", "max_key_versions", "budget_lease_ttl"};
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
        if (fw_provided(req, plain[i]) &&
            json_object_set(next, plain[i], fw_json(req, plain[i])) != 0) {
            e = ERR_NOMEM;
            goto out;
        }
    }
    if (!config_set_enum(req, resp, next, "default_budget_tier", config_tiers, true, &e) ||
        !config_set_enum(req, resp, next, "default_routing_strategy", config_strategies, false,
                         &e)) {
        goto out;
    }
    if (fw_provided(req, "allowed_providers")) {
        size_t i;
        json_t *v;
        json_array_foreach(fw_json(req, "allowed_providers"), i, v)
        {
            const char *p = json_string_value(v);
            if (!fw_name_valid(p)) {
                fw_error(resp,
                         "invalid value for field 'allowed_providers': item %zu must match "
                         "[a-z0-9][a-z0-9_-]{0,62}",
                         i);
                goto out;
            }
            json_t *entry = NULL;
            e = catalog_get_shared(b, req->storage, p, &entry);
            json_decref(entry);
            if (e == ERR_NOTFOUND) {
                e = ERR_OK;
                char q[FW_ECHO_NAME_BUF];
                fw_error(resp, "invalid value for field 'allowed_providers': unknown provider %s",
                         fw_name_quote(q, p));
                goto out;
            }
            if (e != ERR_OK) {
                goto out;
            }
        }
        if (json_object_set(next, "allowed_providers", fw_json(req, "allowed_providers")) != 0) {
            e = ERR_NOMEM;
            goto out;
        }
    }
    if (fw_provided(req, "local_hosts")) {
        size_t i;
        json_t *v;
        json_array_foreach(fw_json(req, "local_hosts"), i, v)
        {
            if (!config_host_valid(json_string_value(v))) {
                fw_error(resp,
                         "invalid value for field 'local_hosts': item %zu is not a host name or "
                         "IP address",
                         i);
                goto out;
            }
        }
        if (json_object_set(next, "local_hosts", fw_json(req, "local_hosts")) != 0) {
            e = ERR_NOMEM;
            goto out;
        }
    }

    e = storage_put_json(req->storage, CONFIG_STORAGE_KEY, next, false);
    /* On failure the write may land later: keep config out of the cache a while (cache.h). */
    if (cache_write_may_land(e)) {
        cache_doubt(byok_cache(b), CONFIG_STORAGE_KEY);
    } else {
        cache_invalidate(byok_cache(b), CONFIG_STORAGE_KEY);
    }
out:
    json_decref(next);
    return e;
}

/* Under the engine's write lock: two concurrent writes must not lose each other's fields. */
static enum err config_write(struct fw_request *req, struct fw_response *resp)
{
    struct keystore *ks = keystore_write_begin(req->backend);
    enum err e = config_write_unlocked(req, resp);
    keystore_write_end(ks);
    return e;
}

const struct fw_path paths_config[] = {
    {
        .pattern = "config",
        .fields = config_fields,
        .handlers = {[FW_OP_READ] = config_read, [FW_OP_UPDATE] = config_write},
        .synopsis = "Configure the byok secrets engine.",
        .description = "Mount-wide settings: how long agents may cache credentials, how many "
                       "versions of a key are kept, the default budget tier, which providers "
                       "tenants may use, which hosts local providers may reach over http and how "
                       "long a budget lease lasts. "
                       "Read also returns the key-encryption key state: kek_version (the current "
                       "version), kek_versions (the versions in storage) and rotation_incomplete "
                       "(true while a version older than the current one is kept: a rotation cut "
                       "short; write config/rotate-root again to finish it).",
    },
    {.pattern = NULL},
};
