/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Schema-driven JSON config parser. Each object is a static table of fields
 * {name, type, offset, range, sub-schema}; one walker checks them all, so a
 * new key is one table row and can never be silently accepted unvalidated.
 * Semantic rules that span keys (a listener is bound to a tenant XOR maps
 * peers, exactly one Vault auth method) run after the walk.
 */
#include "agent/config.h"

#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <jansson.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* Every provider of the plugin's built-in catalog. */
const char *const config_default_providers[] = {
    "openai",     "anthropic",  "azure",       "gemini", "mistral", "deepseek",
    "openrouter", "perplexity", "huggingface", "cohere", "bedrock", "vertex",
    "ollama",     "vllm",       "lmstudio",    NULL};

enum cfg_type { CFG_STR, CFG_NAME, CFG_INT, CFG_BOOL, CFG_OBJ, CFG_ARRAY, CFG_STRLIST };

struct cfg_field {
    const char *name;
    enum cfg_type type;
    size_t off;
    long min, max;               /* CFG_INT range; CFG_STR/STRLIST max length/count */
    const struct cfg_field *sub; /* CFG_OBJ / CFG_ARRAY element schema */
    size_t elem_size;            /* CFG_ARRAY */
    size_t count_off;            /* CFG_ARRAY: offset of the size_t count */
    bool required;
};

#define F_STR(s, m, req)                                                                           \
    {                                                                                              \
#m, CFG_STR, offsetof(s, m), 0, CONFIG_MAX_STR, NULL, 0, 0, req                            \
    }
#define F_NAME(s, m, req)                                                                          \
    {                                                                                              \
#m, CFG_NAME, offsetof(s, m), 0, CONFIG_MAX_NAME, NULL, 0, 0, req                          \
    }
#define F_INT(s, m, lo, hi)                                                                        \
    {                                                                                              \
#m, CFG_INT, offsetof(s, m), lo, hi, NULL, 0, 0, false                                     \
    }
#define F_BOOL(s, m)                                                                               \
    {                                                                                              \
#m, CFG_BOOL, offsetof(s, m), 0, 0, NULL, 0, 0, false                                      \
    }
#define F_OBJ(s, m, sch)                                                                           \
    {                                                                                              \
#m, CFG_OBJ, offsetof(s, m), 0, 0, sch, 0, 0, false                                        \
    }
#define F_END                                                                                      \
    {                                                                                              \
        NULL, 0, 0, 0, 0, NULL, 0, 0, false                                                        \
    }

static const struct cfg_field schema_peer[] = {
    F_INT(struct config_peer, uid, 0, 0x7fffffffL),
    F_INT(struct config_peer, gid, 0, 0x7fffffffL),
    F_NAME(struct config_peer, tenant, true),
    F_NAME(struct config_peer, app, false),
    F_END,
};

static const struct cfg_field schema_listener[] = {
    F_STR(struct config_listener, path, true),
    F_STR(struct config_listener, mode, false),
    F_STR(struct config_listener, owner, false),
    F_STR(struct config_listener, group, false),
    F_NAME(struct config_listener, tenant, false),
    F_NAME(struct config_listener, app, false),
    {"peers", CFG_ARRAY, offsetof(struct config_listener, peers), 1, CONFIG_MAX_PEERS, schema_peer,
     sizeof(struct config_peer), offsetof(struct config_listener, n_peers), false},
    F_BOOL(struct config_listener, metrics),
    F_END,
};

#define VS(m) offsetof(struct config, vault.m)
static const struct cfg_field schema_approle[] = {
    {"role_id_file", CFG_STR, 0, 0, CONFIG_MAX_STR, NULL, 0, 0, true},
    {"secret_id_file", CFG_STR, sizeof(char *), 0, CONFIG_MAX_STR, NULL, 0, 0, true},
    {"mount", CFG_STR, 2 * sizeof(char *), 0, CONFIG_MAX_STR, NULL, 0, 0, false},
    F_END,
};
static const struct cfg_field schema_kubernetes[] = {
    {"role", CFG_STR, 0, 0, CONFIG_MAX_STR, NULL, 0, 0, true},
    {"jwt_file", CFG_STR, sizeof(char *), 0, CONFIG_MAX_STR, NULL, 0, 0, false},
    {"mount", CFG_STR, 2 * sizeof(char *), 0, CONFIG_MAX_STR, NULL, 0, 0, false},
    F_END,
};
static const struct cfg_field schema_cert[] = {
    {"cert_file", CFG_STR, 0, 0, CONFIG_MAX_STR, NULL, 0, 0, true},
    {"key_file", CFG_STR, sizeof(char *), 0, CONFIG_MAX_STR, NULL, 0, 0, true},
    {"name", CFG_STR, 2 * sizeof(char *), 0, 128, NULL, 0, 0, false},
    {"mount", CFG_STR, 3 * sizeof(char *), 0, CONFIG_MAX_STR, NULL, 0, 0, false},
    F_END,
};
/* Offsets below are relative to struct config's vault member. */
#define VO(m) (offsetof(struct config, vault.m) - offsetof(struct config, vault))
static const struct cfg_field schema_vault[] = {
    {"address", CFG_STR, VO(address), 0, CONFIG_MAX_STR, NULL, 0, 0, true},
    {"ca_file", CFG_STR, VO(ca_file), 0, CONFIG_MAX_STR, NULL, 0, 0, false},
    {"mount", CFG_STR, VO(mount), 0, 128, NULL, 0, 0, false},
    {"namespace", CFG_STR, VO(ns), 0, 128, NULL, 0, 0, false},
    {"key_type", CFG_NAME, VO(key_type), 0, CONFIG_MAX_NAME, NULL, 0, 0, false},
    {"timeout_ms", CFG_INT, VO(timeout_ms), 100, 600000, NULL, 0, 0, false},
    {"token_file", CFG_STR, VO(token_file), 0, CONFIG_MAX_STR, NULL, 0, 0, false},
    {"approle", CFG_OBJ, VO(approle), 0, 0, schema_approle, 0, 0, false},
    {"kubernetes", CFG_OBJ, VO(kubernetes), 0, 0, schema_kubernetes, 0, 0, false},
    {"cert", CFG_OBJ, VO(cert), 0, 0, schema_cert, 0, 0, false},
    F_END,
};
#define UO(m) (offsetof(struct config, upstream.m) - offsetof(struct config, upstream))
static const struct cfg_field schema_upstream[] = {
    {"connect_timeout_ms", CFG_INT, UO(connect_timeout_ms), 100, 600000, NULL, 0, 0, false},
    {"first_byte_timeout_ms", CFG_INT, UO(first_byte_timeout_ms), 100, 3600000, NULL, 0, 0, false},
    {"idle_timeout_ms", CFG_INT, UO(idle_timeout_ms), 100, 3600000, NULL, 0, 0, false},
    {"total_timeout_ms", CFG_INT, UO(total_timeout_ms), 0, 86400000, NULL, 0, 0, false},
    {"max_response_bytes", CFG_INT, UO(max_response_bytes), 1024, 64L * 1024 * 1024, NULL, 0, 0,
     false},
    {"max_host_connections", CFG_INT, UO(max_host_connections), 0, 65536, NULL, 0, 0, false},
    {"retry_after_max_s", CFG_INT, UO(retry_after_max_s), 0, CONFIG_MAX_RETRY_AFTER_S, NULL, 0, 0,
     false},
    {"health_failures", CFG_INT, UO(health_failures), 0, CONFIG_MAX_HEALTH_FAILURES, NULL, 0, 0,
     false},
    {"health_demote_s", CFG_INT, UO(health_demote_s), 1, CONFIG_MAX_HEALTH_DEMOTE_S, NULL, 0, 0,
     false},
    {"ca_file", CFG_STR, UO(ca_file), 0, CONFIG_MAX_STR, NULL, 0, 0, false},
    {"proxy", CFG_STR, UO(proxy), 0, CONFIG_MAX_STR, NULL, 0, 0, false},
    {"google_token_url", CFG_STR, UO(google_token_url), 0, CONFIG_MAX_TOKEN_URL, NULL, 0, 0, false},
    F_END,
};
#define LO(m) (offsetof(struct config, limits.m) - offsetof(struct config, limits))
static const struct cfg_field schema_limits[] = {
    {"max_body_bytes", CFG_INT, LO(max_body_bytes), 1024, 64L * 1024 * 1024, NULL, 0, 0, false},
    {"max_header_bytes", CFG_INT, LO(max_header_bytes), 1024, 1024L * 1024, NULL, 0, 0, false},
    {"max_connections", CFG_INT, LO(max_connections), 1, 1000000, NULL, 0, 0, false},
    {"client_timeout_s", CFG_INT, LO(client_timeout_s), 1, 3600, NULL, 0, 0, false},
    {"shared_rate_limits", CFG_BOOL, LO(shared_rate_limits), 0, 0, NULL, 0, 0, false},
    {"rate_lease_percent", CFG_INT, LO(rate_lease_percent), 1, 100, NULL, 0, 0, false},
    F_END,
};
#define KO(m) (offsetof(struct config, keycache.m) - offsetof(struct config, keycache))
static const struct cfg_field schema_keycache[] = {
    {"max_ttl_s", CFG_INT, KO(max_ttl_s), 1, 86400, NULL, 0, 0, false},
    {"negative_ttl_s", CFG_INT, KO(negative_ttl_s), 0, 3600, NULL, 0, 0, false},
    {"max_entries", CFG_INT, KO(max_entries), 1, CONFIG_MAX_KEYCACHE_ENTRIES, NULL, 0, 0, false},
    F_END,
};
#define SO(m) (offsetof(struct config, usage.m) - offsetof(struct config, usage))
static const struct cfg_field schema_usage[] = {
    {"report_interval_s", CFG_INT, SO(report_interval_s), 1, 86400, NULL, 0, 0, false},
    {"max_pending_records", CFG_INT, SO(max_pending_records), 1, 10000000, NULL, 0, 0, false},
    {"batch_records", CFG_INT, SO(batch_records), 1, 10000, NULL, 0, 0, false},
    {"node_id", CFG_NAME, SO(node_id), 0, CONFIG_MAX_NAME, NULL, 0, 0, false},
    {"journal_dir", CFG_STR, SO(journal_dir), 0, CONFIG_MAX_STR, NULL, 0, 0, false},
    F_END,
};
static const struct cfg_field schema_stream[] = {
    {"high_water_bytes", CFG_INT, 0, 4096, 64L * 1024 * 1024, NULL, 0, 0, false},
    F_END,
};

static const struct cfg_field schema_budget[] = {
    {"lease_percent", CFG_INT, 0, 1, 100, NULL, 0, 0, false},
    F_END,
};

static const struct cfg_field schema_router[] = {
    {"latency_ttl_s", CFG_INT, 0, CONFIG_MIN_LATENCY_TTL_S, CONFIG_MAX_LATENCY_TTL_S, NULL, 0, 0,
     false},
    F_END,
};

static const struct cfg_field schema_top[] = {
    {"listeners", CFG_ARRAY, offsetof(struct config, listeners), 1, CONFIG_MAX_LISTENERS,
     schema_listener, sizeof(struct config_listener), offsetof(struct config, n_listeners), true},
    {"vault", CFG_OBJ, offsetof(struct config, vault), 0, 0, schema_vault, 0, 0, true},
    {"upstream", CFG_OBJ, offsetof(struct config, upstream), 0, 0, schema_upstream, 0, 0, false},
    {"limits", CFG_OBJ, offsetof(struct config, limits), 0, 0, schema_limits, 0, 0, false},
    {"keycache", CFG_OBJ, offsetof(struct config, keycache), 0, 0, schema_keycache, 0, 0, false},
    {"usage", CFG_OBJ, offsetof(struct config, usage), 0, 0, schema_usage, 0, 0, false},
    {"stream", CFG_OBJ, offsetof(struct config, stream), 0, 0, schema_stream, 0, 0, false},
    {"budget", CFG_OBJ, offsetof(struct config, budget), 0, 0, schema_budget, 0, 0, false},
    {"router", CFG_OBJ, offsetof(struct config, router), 0, 0, schema_router, 0, 0, false},
    {"providers", CFG_STRLIST, offsetof(struct config, providers), 1, CONFIG_MAX_PROVIDERS, NULL, 0,
     0, false},
    {"forward_headers", CFG_STRLIST, offsetof(struct config, forward_headers), 0, CONFIG_MAX_LIST,
     NULL, 0, 0, false},
    F_STR(struct config, log_level, false),
    F_BOOL(struct config, log_prompts),
    F_INT(struct config, drain_timeout_s, 0, 3600),
    F_INT(struct config, default_max_tokens, 1, 1000000),
    F_INT(struct config, sched_slice_us, 0, 100000),
    F_END,
};

/* vsnprintf behind a function: names are cut at the buffer size, on purpose. */
static void cfg_fmt(char *out, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void cfg_fmt(char *out, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, size, fmt, ap);
    va_end(ap);
}

static void cfg_err(char *errbuf, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void cfg_err(char *errbuf, const char *path, const char *fmt, ...)
{
    char msg[CONFIG_ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cfg_fmt(errbuf, CONFIG_ERR_LEN, "%s: %s", path[0] != '\0' ? path : "(top level)", msg);
}

bool config_name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CONFIG_MAX_NAME) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok =
            (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (i > 0 && (c == '_' || c == '-'));
        if (!ok) {
            return false;
        }
    }
    return true;
}

static void cfg_free_fields(const struct cfg_field *schema, void *base);

static void cfg_free_strlist(struct config_strlist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->items[i]);
    }
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

static void cfg_free_fields(const struct cfg_field *schema, void *base)
{
    for (const struct cfg_field *f = schema; f->name != NULL; f++) {
        char *p = (char *)base + f->off;
        switch (f->type) {
        case CFG_STR:
        case CFG_NAME:
            free(*(char **)p);
            *(char **)p = NULL;
            break;
        case CFG_OBJ:
            cfg_free_fields(f->sub, p);
            break;
        case CFG_ARRAY: {
            char *arr = *(char **)p;
            size_t *count = (size_t *)((char *)base + f->count_off);
            for (size_t i = 0; arr != NULL && i < *count; i++) {
                cfg_free_fields(f->sub, arr + i * f->elem_size);
            }
            free(arr);
            *(char **)p = NULL;
            *count = 0;
            break;
        }
        case CFG_STRLIST:
            cfg_free_strlist((struct config_strlist *)p);
            break;
        default:
            break;
        }
    }
}

static enum err cfg_walk(const json_t *obj, const struct cfg_field *schema, void *base,
                         const char *path, char *errbuf);

static enum err cfg_field_parse(const json_t *v, const struct cfg_field *f, void *base,
                                const char *path, char *errbuf)
{
    char *p = (char *)base + f->off;
    switch (f->type) {
    case CFG_STR:
    case CFG_NAME: {
        if (!json_is_string(v)) {
            cfg_err(errbuf, path, "must be a string");
            return ERR_CONFIG;
        }
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        if (n > (size_t)f->max || strlen(s) != n) {
            cfg_err(errbuf, path, "must be at most %ld bytes without NUL", f->max);
            return ERR_CONFIG;
        }
        if (f->type == CFG_NAME && !config_name_valid(s)) {
            cfg_err(errbuf, path, "must match [a-z0-9][a-z0-9_-]{0,62}");
            return ERR_CONFIG;
        }
        char *dup = strdup(s);
        if (dup == NULL) {
            return ERR_NOMEM;
        }
        free(*(char **)p);
        *(char **)p = dup;
        return ERR_OK;
    }
    case CFG_INT: {
        if (!json_is_integer(v)) {
            cfg_err(errbuf, path, "must be an integer");
            return ERR_CONFIG;
        }
        json_int_t i = json_integer_value(v);
        if (i < f->min || i > f->max) {
            cfg_err(errbuf, path, "must be between %ld and %ld", f->min, f->max);
            return ERR_CONFIG;
        }
        *(long *)p = (long)i;
        return ERR_OK;
    }
    case CFG_BOOL:
        if (!json_is_boolean(v)) {
            cfg_err(errbuf, path, "must be true or false");
            return ERR_CONFIG;
        }
        *(bool *)p = json_is_true(v);
        return ERR_OK;
    case CFG_OBJ:
        if (!json_is_object(v)) {
            cfg_err(errbuf, path, "must be an object");
            return ERR_CONFIG;
        }
        return cfg_walk(v, f->sub, p, path, errbuf);
    case CFG_ARRAY: {
        if (!json_is_array(v)) {
            cfg_err(errbuf, path, "must be an array");
            return ERR_CONFIG;
        }
        size_t n = json_array_size(v);
        if (n < (size_t)f->min || n > (size_t)f->max) {
            cfg_err(errbuf, path, "must have between %ld and %ld entries", f->min, f->max);
            return ERR_CONFIG;
        }
        char *arr = calloc(n, f->elem_size);
        if (arr == NULL) {
            return ERR_NOMEM;
        }
        *(char **)p = arr;
        size_t *count = (size_t *)((char *)base + f->count_off);
        *count = n;
        for (size_t i = 0; i < n; i++) {
            char sub[CONFIG_ERR_LEN];
            cfg_fmt(sub, sizeof(sub), "%s[%zu]", path, i);
            const json_t *e = json_array_get(v, i);
            if (!json_is_object(e)) {
                cfg_err(errbuf, sub, "must be an object");
                return ERR_CONFIG;
            }
            if (f->sub == schema_peer) {
                struct config_peer *peer = (struct config_peer *)(arr + i * f->elem_size);
                peer->uid = -1;
                peer->gid = -1;
            }
            enum err e2 = cfg_walk(e, f->sub, arr + i * f->elem_size, sub, errbuf);
            if (e2 != ERR_OK) {
                return e2;
            }
        }
        return ERR_OK;
    }
    case CFG_STRLIST: {
        struct config_strlist *l = (struct config_strlist *)p;
        if (!json_is_array(v)) {
            cfg_err(errbuf, path, "must be an array of strings");
            return ERR_CONFIG;
        }
        size_t n = json_array_size(v);
        if (n < (size_t)f->min || n > (size_t)f->max) {
            cfg_err(errbuf, path, "must have between %ld and %ld entries", f->min, f->max);
            return ERR_CONFIG;
        }
        cfg_free_strlist(l);
        l->items = calloc(n + 1, sizeof(char *));
        if (l->items == NULL) {
            return ERR_NOMEM;
        }
        for (size_t i = 0; i < n; i++) {
            const json_t *e = json_array_get(v, i);
            if (!json_is_string(e) || json_string_length(e) == 0 ||
                json_string_length(e) > CONFIG_MAX_NAME ||
                strlen(json_string_value(e)) != json_string_length(e)) {
                char sub[CONFIG_ERR_LEN];
                cfg_fmt(sub, sizeof(sub), "%s[%zu]", path, i);
                cfg_err(errbuf, sub, "must be a non-empty string of at most %d bytes",
                        CONFIG_MAX_NAME);
                return ERR_CONFIG;
            }
            l->items[i] = strdup(json_string_value(e));
            if (l->items[i] == NULL) {
                return ERR_NOMEM;
            }
            l->n = i + 1;
        }
        return ERR_OK;
    }
    }
    return ERR_INTERNAL;
}

static enum err cfg_walk(const json_t *obj, const struct cfg_field *schema, void *base,
                         const char *path, char *errbuf)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        char sub[CONFIG_ERR_LEN];
        cfg_fmt(sub, sizeof(sub), "%s%s%s", path, path[0] != '\0' ? "." : "", key);
        const struct cfg_field *f = schema;
        while (f->name != NULL && strcmp(f->name, key) != 0) {
            f++;
        }
        if (f->name == NULL) {
            cfg_err(errbuf, sub, "unknown key");
            return ERR_CONFIG;
        }
        enum err e = cfg_field_parse(v, f, base, sub, errbuf);
        if (e != ERR_OK) {
            return e;
        }
    }
    for (const struct cfg_field *f = schema; f->name != NULL; f++) {
        if (f->required && json_object_get(obj, f->name) == NULL) {
            char sub[CONFIG_ERR_LEN];
            cfg_fmt(sub, sizeof(sub), "%s%s%s", path, path[0] != '\0' ? "." : "", f->name);
            cfg_err(errbuf, sub, "is required");
            return ERR_CONFIG;
        }
    }
    return ERR_OK;
}

static enum err cfg_strdup_default(char **p, const char *def)
{
    if (*p != NULL) {
        return ERR_OK;
    }
    *p = strdup(def);
    return *p != NULL ? ERR_OK : ERR_NOMEM;
}

static void cfg_defaults(struct config *c)
{
    c->vault.timeout_ms = 5000;
    c->upstream.connect_timeout_ms = 5000;
    c->upstream.first_byte_timeout_ms = 60000;
    c->upstream.idle_timeout_ms = 60000;
    c->upstream.total_timeout_ms = 600000;
    c->upstream.max_response_bytes = 16L * 1024 * 1024;
    /*
     * HTTP/1.1: one connection per concurrent stream, so 1,000 streams must
     * not queue behind a small cap; each TLS connection costs ~60 KiB in
     * OpenSSL 3 (curl makes an SSL_CTX per connection), which bounds memory.
     */
    c->upstream.max_host_connections = 1024;
    c->upstream.retry_after_max_s = CONFIG_DEFAULT_RETRY_AFTER_MAX_S;
    c->upstream.health_failures = CONFIG_DEFAULT_HEALTH_FAILURES;
    c->upstream.health_demote_s = CONFIG_DEFAULT_HEALTH_DEMOTE_S;
    c->limits.max_body_bytes = 1024L * 1024;
    c->limits.max_header_bytes = 16L * 1024;
    c->limits.max_connections = 4096;
    c->limits.client_timeout_s = 60;
    c->limits.shared_rate_limits = true;
    c->limits.rate_lease_percent = CONFIG_DEFAULT_RATE_LEASE_PERCENT;
    c->keycache.max_ttl_s = 300;
    c->keycache.negative_ttl_s = 30;
    c->keycache.max_entries = 10000;
    c->usage.report_interval_s = 10;
    c->usage.max_pending_records = 100000;
    c->usage.batch_records = 500;
    c->stream.high_water_bytes = 256L * 1024;
    c->budget.lease_percent = CONFIG_DEFAULT_LEASE_PERCENT;
    c->router.latency_ttl_s = CONFIG_DEFAULT_LATENCY_TTL_S;
    c->drain_timeout_s = 30;
    c->default_max_tokens = 4096;
    c->sched_slice_us = CONFIG_DEFAULT_SCHED_SLICE_US;
}

/*
 * A mount path as it goes into request URLs (/v1/<mount>/...): nothing that
 * would end the path (?, #), change it (., .., //) or break the URL (spaces,
 * controls), nor an empty one.
 */
static bool cfg_mount_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128 || s[0] == '/' || s[n - 1] == '/' || strstr(s, "//") != NULL) {
        return false;
    }
    for (const char *p = s; *p != '\0'; p++) {
        bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' || *p == '.' || *p == '/';
        if (!ok) {
            return false;
        }
    }
    /* No "." or ".." segment: curl would resolve it to another path. */
    for (const char *seg = s; seg != NULL;
         seg = strchr(seg, '/') != NULL ? strchr(seg, '/') + 1 : NULL) {
        size_t len = strcspn(seg, "/");
        if ((len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.')) {
            return false;
        }
    }
    return true;
}

/*
 * upstream.google_token_url: https, or plain http to the node itself only (a
 * test double); printable, no spaces. Service-account keys' JWTs go there.
 */
static bool cfg_token_url_ok(const char *u)
{
    static const char *const loopback[] = {"http://127.0.0.1:", "http://127.0.0.1/",
                                           "http://localhost:", "http://localhost/",
                                           "http://[::1]:",     "http://[::1]/"};
    bool ok = strncmp(u, "https://", 8) == 0 && u[8] != '\0' && u[8] != '/';
    for (size_t i = 0; !ok && i < sizeof(loopback) / sizeof(loopback[0]); i++) {
        ok = strncmp(u, loopback[i], strlen(loopback[i])) == 0;
    }
    for (const char *p = u; ok && *p != '\0'; p++) {
        ok = *p > ' ' && *p < 0x7f;
    }
    /* No user:password@: "http://localhost:@elsewhere/" is a remote host, not the loopback. */
    const char *auth = ok ? strstr(u, "://") + 3 : NULL;
    return ok && memchr(auth, '@', strcspn(auth, "/?#")) == NULL;
}
static enum err cfg_validate(struct config *c, char *errbuf)
{
    char path[CONFIG_ERR_LEN];
    for (size_t i = 0; i < c->n_listeners; i++) {
        struct config_listener *l = &c->listeners[i];
        cfg_fmt(path, sizeof(path), "listeners[%zu]", i);
        if (l->path[0] != '/' || strlen(l->path) >= 108) {
            cfg_err(errbuf, path, "path must be absolute and shorter than 108 bytes");
            return ERR_CONFIG;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(c->listeners[j].path, l->path) == 0) {
                cfg_err(errbuf, path, "path is used by listeners[%zu] too", j);
                return ERR_CONFIG;
            }
        }
        if ((l->tenant != NULL) == (l->n_peers > 0)) {
            cfg_err(errbuf, path, "needs exactly one of \"tenant\" or \"peers\"");
            return ERR_CONFIG;
        }
        if (l->mode == NULL) {
            l->mode_bits = 0660;
        } else {
            char *end = NULL;
            errno = 0;
            unsigned long m = strtoul(l->mode, &end, 8);
            if (l->mode[0] == '\0' || *end != '\0' || errno != 0 || m > 0777) {
                cfg_fmt(path, sizeof(path), "listeners[%zu].mode", i);
                cfg_err(errbuf, path, "must be an octal string like \"0660\"");
                return ERR_CONFIG;
            }
            l->mode_bits = (unsigned)m;
        }
        for (size_t j = 0; j < l->n_peers; j++) {
            if (l->peers[j].uid < 0 && l->peers[j].gid < 0) {
                cfg_fmt(path, sizeof(path), "listeners[%zu].peers[%zu]", i, j);
                cfg_err(errbuf, path, "needs \"uid\" or \"gid\"");
                return ERR_CONFIG;
            }
            if (cfg_strdup_default(&l->peers[j].app, "default") != ERR_OK) {
                return ERR_NOMEM;
            }
        }
        if (cfg_strdup_default(&l->app, "default") != ERR_OK) {
            return ERR_NOMEM;
        }
    }
    const char *a = c->vault.address;
    if (strncmp(a, "https://", 8) != 0 && strncmp(a, "http://", 7) != 0 &&
        !(strncmp(a, "unix:/", 6) == 0 && strlen(a) < 6 + 108)) {
        cfg_err(errbuf, "vault.address", "must start with https://, http:// or unix:/");
        return ERR_CONFIG;
    }
    for (const char *p = a; *p != '\0'; p++) {
        if (*p <= ' ' || *p >= 0x7f) {
            cfg_err(errbuf, "vault.address", "must not hold spaces or control characters");
            return ERR_CONFIG;
        }
    }
    if (strncmp(a, "unix:", 5) != 0) {
        /* The address is logged: credentials in it (userinfo@) would be too. Vault needs none. */
        const char *auth = strstr(a, "://") + 3;
        if (memchr(auth, '@', strcspn(auth, "/?#")) != NULL) {
            cfg_err(errbuf, "vault.address",
                    "must not hold user:password@ (the agent logs in with vault.token_file, "
                    "approle, kubernetes or cert; the address appears in its logs)");
            return ERR_CONFIG;
        }
    }
    if (c->vault.ns != NULL && !cfg_mount_valid(c->vault.ns)) {
        cfg_err(errbuf, "vault.namespace",
                "must be a Vault namespace path: '/'-separated segments of letters, digits, "
                "'_', '-' and '.' (not . or ..), no leading or trailing '/', at most 128 bytes");
        return ERR_CONFIG;
    }
    const char *const mounts[][2] = {{"vault.mount", c->vault.mount},
                                     {"vault.approle.mount", c->vault.approle.mount},
                                     {"vault.kubernetes.mount", c->vault.kubernetes.mount},
                                     {"vault.cert.mount", c->vault.cert.mount}};
    for (size_t i = 0; i < sizeof(mounts) / sizeof(mounts[0]); i++) {
        if (mounts[i][1] != NULL && !cfg_mount_valid(mounts[i][1])) {
            cfg_err(errbuf, mounts[i][0],
                    "must be a Vault mount path: '/'-separated segments of letters, digits, "
                    "'_', '-' and '.' (not . or ..), at most 128 bytes");
            return ERR_CONFIG;
        }
    }
    const char *px = c->upstream.proxy;
    if (px != NULL) {
        const char *host = strncmp(px, "http://", 7) == 0    ? px + 7
                           : strncmp(px, "https://", 8) == 0 ? px + 8
                                                             : NULL;
        bool ok = host != NULL && host[0] != '\0' && host[0] != '/';
        for (const char *p = px; ok && *p != '\0'; p++) {
            ok = *p > ' ' && *p < 0x7f;
        }
        if (!ok) {
            cfg_err(errbuf, "upstream.proxy",
                    "must be http://host:port or https://host:port (printable, no spaces)");
            return ERR_CONFIG;
        }
    }
    if (c->upstream.google_token_url != NULL && !cfg_token_url_ok(c->upstream.google_token_url)) {
        cfg_err(errbuf, "upstream.google_token_url",
                "must be an https:// URL (http:// only to 127.0.0.1, [::1] or localhost), "
                "printable, no spaces, at most 1024 bytes");
        return ERR_CONFIG;
    }
    int methods = (c->vault.token_file != NULL) + (c->vault.approle.role_id_file != NULL) +
                  (c->vault.kubernetes.role != NULL) + (c->vault.cert.cert_file != NULL);
    if (methods != 1) {
        cfg_err(errbuf, "vault",
                "needs exactly one of \"token_file\", \"approle\", \"kubernetes\" or \"cert\"");
        return ERR_CONFIG;
    }
    if (c->vault.cert.cert_file != NULL) {
        /* The certificate goes in the TLS handshake: none over http or a Unix socket. */
        if (strncmp(a, "https://", 8) != 0) {
            cfg_err(errbuf, "vault.address",
                    "must be https:// with vault.cert (the client certificate is presented in "
                    "the TLS handshake)");
            return ERR_CONFIG;
        }
        const char *nm = c->vault.cert.name;
        bool ok = nm == NULL || nm[0] != '\0';
        for (const char *p = nm; ok && nm != NULL && *p != '\0'; p++) {
            ok = *p > ' ' && *p < 0x7f;
        }
        if (!ok) {
            cfg_err(errbuf, "vault.cert.name",
                    "must be a Vault cert role name (printable, no spaces, not empty)");
            return ERR_CONFIG;
        }
    }
    if (c->log_level != NULL && log_level_parse(c->log_level) < 0) {
        cfg_err(errbuf, "log_level", "must be one of trace, debug, info, warn, error, off");
        return ERR_CONFIG;
    }
    if (c->sched_slice_us > 0 && c->sched_slice_us < CONFIG_MIN_SCHED_SLICE_US) {
        cfg_err(errbuf, "sched_slice_us",
                "must be 0 (the kernel's default) or 100..100000 (the kernel's range)");
        return ERR_CONFIG;
    }
    for (size_t i = 0; i < c->providers.n; i++) {
        if (!config_name_valid(c->providers.items[i])) {
            cfg_fmt(path, sizeof(path), "providers[%zu]", i);
            cfg_err(errbuf, path, "must match [a-z0-9][a-z0-9_-]{0,62}");
            return ERR_CONFIG;
        }
    }
    for (size_t i = 0; i < c->forward_headers.n; i++) {
        const char *h = c->forward_headers.items[i];
        for (const char *p = h; *p != '\0'; p++) {
            bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                      (*p >= '0' && *p <= '9') || *p == '-';
            if (!ok) {
                cfg_fmt(path, sizeof(path), "forward_headers[%zu]", i);
                cfg_err(errbuf, path, "must be a header name (letters, digits, '-')");
                return ERR_CONFIG;
            }
        }
        /*
         * Credentials, and headers that frame or steer the connection, the
         * body's encoding or the proxy hop: the agent sets or refuses those.
         * The x-amz- ones are part of a Bedrock IAM key's signature
         * (agent/sigv4.h): a second copy would break or alter it.
         */
        static const char *const forbidden[] = {"authorization",
                                                "x-api-key",
                                                "api-key",
                                                "x-goog-api-key",
                                                "host",
                                                "content-length",
                                                "transfer-encoding",
                                                "connection",
                                                "cookie",
                                                "x-vault-token",
                                                "proxy-authorization",
                                                "proxy-connection",
                                                "expect",
                                                "te",
                                                "trailer",
                                                "upgrade",
                                                "keep-alive",
                                                "content-type",
                                                "content-encoding",
                                                "accept-encoding",
                                                "x-amz-date",
                                                "x-amz-security-token",
                                                "x-amz-content-sha256",
                                                NULL};
        for (const char *const *fb = forbidden; *fb != NULL; fb++) {
            if (strcasecmp(h, *fb) == 0) {
                cfg_fmt(path, sizeof(path), "forward_headers[%zu]", i);
                cfg_err(errbuf, path, "may not forward credential or framing header %s", *fb);
                return ERR_CONFIG;
            }
        }
    }
    if (cfg_strdup_default(&c->vault.mount, "byok") != ERR_OK ||
        cfg_strdup_default(&c->vault.key_type, "production") != ERR_OK ||
        cfg_strdup_default(&c->log_level, "info") != ERR_OK) {
        return ERR_NOMEM;
    }
    if (c->vault.approle.role_id_file != NULL &&
        cfg_strdup_default(&c->vault.approle.mount, "approle") != ERR_OK) {
        return ERR_NOMEM;
    }
    if (c->vault.kubernetes.role != NULL &&
        (cfg_strdup_default(&c->vault.kubernetes.mount, "kubernetes") != ERR_OK ||
         cfg_strdup_default(&c->vault.kubernetes.jwt_file,
                            "/var/run/secrets/kubernetes.io/serviceaccount/token") != ERR_OK)) {
        return ERR_NOMEM;
    }
    if (c->vault.cert.cert_file != NULL &&
        cfg_strdup_default(&c->vault.cert.mount, "cert") != ERR_OK) {
        return ERR_NOMEM;
    }
    if (c->usage.node_id == NULL) {
        char host[256] = "node";
        (void)gethostname(host, sizeof(host) - 1);
        host[sizeof(host) - 1] = '\0';
        /* Hostnames may hold upper case and dots; node_id must be a name. */
        char id[CONFIG_MAX_NAME + 1];
        size_t n = 0;
        for (const char *p = host; *p != '\0' && n < CONFIG_MAX_NAME; p++) {
            char ch = *p;
            if (ch >= 'A' && ch <= 'Z') {
                ch = (char)(ch - 'A' + 'a');
            }
            if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9'))) {
                ch = '-';
            }
            id[n++] = ch;
        }
        id[n] = '\0';
        if (n == 0 || id[0] == '-') {
            cfg_fmt(id, sizeof(id), "node");
        }
        c->usage.node_id = strdup(id);
        if (c->usage.node_id == NULL) {
            return ERR_NOMEM;
        }
    }
    if (c->providers.n == 0) {
        size_t n = 0;
        while (config_default_providers[n] != NULL) {
            n++;
        }
        c->providers.items = calloc(n + 1, sizeof(char *));
        if (c->providers.items == NULL) {
            return ERR_NOMEM;
        }
        for (size_t i = 0; i < n; i++) {
            c->providers.items[i] = strdup(config_default_providers[i]);
            if (c->providers.items[i] == NULL) {
                return ERR_NOMEM;
            }
            c->providers.n = i + 1;
        }
    }
    return ERR_OK;
}

enum err config_parse(const char *text, size_t len, struct config **ret_cfg, char *errbuf)
{
    errbuf[0] = '\0';
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        cfg_fmt(errbuf, CONFIG_ERR_LEN, "(file): invalid JSON at line %d column %d: %s", jerr.line,
                jerr.column, jerr.text);
        return ERR_CONFIG;
    }
    enum err e = ERR_NOMEM;
    struct config *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        goto out_root;
    }
    c->refs = 1;
    cfg_defaults(c);
    if (!json_is_object(root)) {
        cfg_err(errbuf, "", "must be a JSON object");
        e = ERR_CONFIG;
        goto out_cfg;
    }
    e = cfg_walk(root, schema_top, c, "", errbuf);
    if (e != ERR_OK) {
        goto out_cfg;
    }
    e = cfg_validate(c, errbuf);
    if (e != ERR_OK) {
        goto out_cfg;
    }
    json_decref(root);
    *ret_cfg = c;
    return ERR_OK;

out_cfg:
    config_unref(&c);
out_root:
    json_decref(root);
    if (e == ERR_NOMEM && errbuf[0] == '\0') {
        cfg_fmt(errbuf, CONFIG_ERR_LEN, "(file): out of memory");
    }
    return e;
}

/* Largest user or group database entry looked up (a group listing thousands of members). */
#define CONFIG_MAX_ID_ENTRY ((size_t)1024 * 1024)

/*
 * A user (group) given by number or by name: the id, or false when this host
 * has no such one. A string of digits is a number; anything else ("-5"
 * included) is looked up as a name.
 */
static bool cfg_lookup_id(const char *name, bool group, unsigned long *ret)
{
    char *end = NULL;
    errno = 0;
    unsigned long n = name[0] >= '0' && name[0] <= '9' ? strtoul(name, &end, 10) : 0;
    if (end != NULL && *end == '\0' && errno == 0 && n < (unsigned long)(uid_t)-1) {
        *ret = n;
        return true;
    }
    /* A group with many members does not fit a small buffer (ERANGE): grow it. */
    bool found = false;
    for (size_t size = 4096; size <= CONFIG_MAX_ID_ENTRY; size *= 2) {
        char *tmp = malloc(size);
        if (tmp == NULL) {
            return false;
        }
        int rc;
        if (group) {
            struct group gr, *res = NULL;
            rc = getgrnam_r(name, &gr, tmp, size, &res);
            if (rc == 0 && res != NULL) {
                *ret = gr.gr_gid;
                found = true;
            }
        } else {
            struct passwd pw, *res = NULL;
            rc = getpwnam_r(name, &pw, tmp, size, &res);
            if (rc == 0 && res != NULL) {
                *ret = pw.pw_uid;
                found = true;
            }
        }
        free(tmp);
        if (rc != ERANGE) {
            break;
        }
    }
    return found;
}

enum err config_listener_ids(const struct config_listener *lc, uid_t *uid, gid_t *gid, char *errbuf,
                             size_t errlen)
{
    unsigned long id = 0;
    *uid = (uid_t)-1;
    *gid = (gid_t)-1;
    if (lc->owner != NULL) {
        if (!cfg_lookup_id(lc->owner, false, &id)) {
            snprintf(errbuf, errlen, "listener %s: owner: unknown user %s", lc->path, lc->owner);
            return ERR_CONFIG;
        }
        *uid = (uid_t)id;
    }
    if (lc->group != NULL) {
        if (!cfg_lookup_id(lc->group, true, &id)) {
            snprintf(errbuf, errlen, "listener %s: group: unknown group %s", lc->path, lc->group);
            return ERR_CONFIG;
        }
        *gid = (gid_t)id;
    }
    return ERR_OK;
}

/* A file the agent will read later (a CA bundle): it must open now. */
static enum err cfg_check_readable(const char *file, const char *key, char *errbuf)
{
    if (file == NULL) {
        return ERR_OK;
    }
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        cfg_err(errbuf, key, "cannot read %s: %s", file, strerror(errno));
        return ERR_CONFIG;
    }
    close(fd);
    return ERR_OK;
}

/*
 * A Vault credential file the agent reads at login (see config_check_host).
 * Opened (non-blocking, so a FIFO cannot hang the check) but never read.
 * missing_ok: a token file that is absent or empty passes.
 */
static enum err cfg_check_cred_file(const char *file, const char *key, bool check_mode,
                                    bool missing_ok, char *errbuf)
{
    if (file == NULL) {
        return ERR_OK;
    }
    int fd = open(file, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        int err = errno;
        if (err == ENOENT && missing_ok) {
            return ERR_OK;
        }
        if (err == ENOENT) {
            cfg_err(errbuf, key, "%s: missing", file);
        } else if (err == EACCES) {
            cfg_err(errbuf, key, "%s: not readable by this user (uid %u)", file,
                    (unsigned)geteuid());
        } else {
            cfg_err(errbuf, key, "%s: cannot open: %s", file, strerror(err));
        }
        return ERR_CONFIG;
    }
    struct stat st;
    const char *why = NULL;
    char big[48];
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        why = "not a regular file";
    } else if (check_mode && !CONFIG_CRED_MODE_OK(st.st_mode)) {
        why = CONFIG_CRED_MODE_HINT;
    } else if (st.st_size == 0 && !missing_ok) {
        why = "empty";
    } else if ((size_t)st.st_size > CONFIG_MAX_CRED_FILE) {
        cfg_fmt(big, sizeof(big), "larger than %zu bytes", CONFIG_MAX_CRED_FILE);
        why = big;
    }
    close(fd);
    if (why != NULL) {
        cfg_err(errbuf, key, "%s: %s", file, why);
        return ERR_CONFIG;
    }
    return ERR_OK;
}

enum err config_check_host(const struct config *c, char *errbuf)
{
    for (size_t i = 0; i < c->n_listeners; i++) {
        const struct config_listener *lc = &c->listeners[i];
        unsigned long id;
        const char *bad = lc->owner != NULL && !cfg_lookup_id(lc->owner, false, &id)  ? "owner"
                          : lc->group != NULL && !cfg_lookup_id(lc->group, true, &id) ? "group"
                                                                                      : NULL;
        if (bad != NULL) {
            char key[64];
            cfg_fmt(key, sizeof(key), "listeners[%zu].%s", i, bad);
            cfg_err(errbuf, key, "no such %s on this host: %s", bad[0] == 'o' ? "user" : "group",
                    bad[0] == 'o' ? lc->owner : lc->group);
            return ERR_CONFIG;
        }
    }
    if (c->usage.journal_dir != NULL) {
        struct stat st;
        const char *d = c->usage.journal_dir;
        if (stat(d, &st) != 0) {
            cfg_err(errbuf, "usage.journal_dir", "%s: %s", d, strerror(errno));
            return ERR_CONFIG;
        }
        if (!S_ISDIR(st.st_mode)) {
            cfg_err(errbuf, "usage.journal_dir", "%s: not a directory", d);
            return ERR_CONFIG;
        }
        if (access(d, W_OK | X_OK) != 0) {
            cfg_err(errbuf, "usage.journal_dir", "%s: not writable by this user (uid %u)", d,
                    (unsigned)geteuid());
            return ERR_CONFIG;
        }
    }
    if (cfg_check_readable(c->vault.ca_file, "vault.ca_file", errbuf) != ERR_OK ||
        cfg_check_readable(c->upstream.ca_file, "upstream.ca_file", errbuf) != ERR_OK) {
        return ERR_CONFIG;
    }
    if (cfg_check_cred_file(c->vault.token_file, "vault.token_file", true, true, errbuf) !=
            ERR_OK ||
        cfg_check_cred_file(c->vault.approle.role_id_file, "vault.approle.role_id_file", true,
                            false, errbuf) != ERR_OK ||
        cfg_check_cred_file(c->vault.approle.secret_id_file, "vault.approle.secret_id_file", true,
                            false, errbuf) != ERR_OK ||
        cfg_check_cred_file(c->vault.kubernetes.jwt_file, "vault.kubernetes.jwt_file", false, false,
                            errbuf) != ERR_OK ||
        cfg_check_cred_file(c->vault.cert.cert_file, "vault.cert.cert_file", false, false,
                            errbuf) != ERR_OK ||
        cfg_check_cred_file(c->vault.cert.key_file, "vault.cert.key_file", true, false, errbuf) !=
            ERR_OK) {
        return ERR_CONFIG;
    }
    return ERR_OK;
}

bool config_vault_cleartext(const struct config *c)
{
    const char *a = c->vault.address;
    if (strncmp(a, "http://", 7) != 0) {
        return false;
    }
    const char *host = a + 7;
    size_t n = strcspn(host, "/?#");
    const char *at = memchr(host, '@', n);
    while (at != NULL) { /* userinfo@host */
        n -= (size_t)(at + 1 - host);
        host = at + 1;
        at = memchr(host, '@', n);
    }
    size_t hl;
    if (n > 0 && host[0] == '[') {
        const char *rb = memchr(host, ']', n);
        if (rb == NULL) {
            return true;
        }
        host++;
        hl = (size_t)(rb - host);
    } else {
        hl = strcspn(host, ":/?#");
        hl = hl < n ? hl : n;
    }
    if ((hl == 9 && strncasecmp(host, "localhost", 9) == 0) ||
        (hl == 3 && memcmp(host, "::1", 3) == 0)) {
        return false;
    }
    /* 127.0.0.0/8 as a dotted quad: "127." then digits and dots only. */
    if (hl > 4 && memcmp(host, "127.", 4) == 0) {
        for (size_t i = 4; i < hl; i++) {
            if (!(host[i] == '.' || (host[i] >= '0' && host[i] <= '9'))) {
                return true;
            }
        }
        return false;
    }
    return true;
}

enum err config_load(const char *path, struct config **ret_cfg, char *errbuf)
{
    errbuf[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        cfg_fmt(errbuf, CONFIG_ERR_LEN, "%s: cannot open: %s", path, strerror(errno));
        return ERR_IO;
    }
    char *text = malloc(CONFIG_MAX_FILE + 1);
    if (text == NULL) {
        close(fd);
        return ERR_NOMEM;
    }
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, text + len, CONFIG_MAX_FILE + 1 - len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            cfg_fmt(errbuf, CONFIG_ERR_LEN, "%s: read failed: %s", path, strerror(errno));
            close(fd);
            free(text);
            return ERR_IO;
        }
        if (n == 0) {
            break;
        }
        len += (size_t)n;
        if (len > CONFIG_MAX_FILE) {
            cfg_fmt(errbuf, CONFIG_ERR_LEN, "%s: larger than %zu bytes", path, CONFIG_MAX_FILE);
            close(fd);
            free(text);
            return ERR_CONFIG;
        }
    }
    close(fd);
    enum err e = config_parse(text, len, ret_cfg, errbuf);
    free(text);
    return e;
}

struct config *config_ref(struct config *c)
{
    c->refs++;
    return c;
}

void config_unref(struct config **cp)
{
    if (cp == NULL || *cp == NULL) {
        return;
    }
    struct config *c = *cp;
    *cp = NULL;
    if (--c->refs > 0) {
        return;
    }
    cfg_free_fields(schema_top, c);
    free(c);
}

size_t config_secure_heap_bytes(const struct config *c)
{
    size_t entries = (size_t)c->keycache.max_entries;
    size_t need = entries * CONFIG_KEY_SLOT + entries * CONFIG_KEY_SLOT / 4 + CONFIG_HEAP_RESERVE;
    size_t n = CONFIG_HEAP_MIN;
    while (n < need) {
        n *= 2;
    }
    return n;
}

enum err config_check_heap(const struct config *c, size_t heap_bytes, char *errbuf)
{
    size_t need = config_secure_heap_bytes(c);
    if (need <= heap_bytes) {
        return ERR_OK;
    }
    cfg_fmt(errbuf, CONFIG_ERR_LEN,
            "keycache.max_entries: %ld needs a %zu MiB secure heap; the running agent has %zu MiB "
            "(fixed at start: restart to apply)",
            c->keycache.max_entries, need >> 20, heap_bytes >> 20);
    return ERR_CONFIG;
}
