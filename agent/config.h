/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The agent's configuration: one JSON file (docs/agent.md lists every key).
 * Parsing is driven by static schema tables; every key is checked for type and
 * range, unknown keys are refused, and an error names the key path and the
 * reason ("listeners[0].mode: must be an octal string like \"0660\"").
 * A parsed config is immutable and reference counted, so that a SIGHUP reload
 * can swap it while requests that started under the old one finish with it.
 */
#ifndef BYOK_AGENT_CONFIG_H
#define BYOK_AGENT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "common/err.h"

#define CONFIG_MAX_FILE ((size_t)1024 * 1024)
#define CONFIG_MAX_LISTENERS 64
#define CONFIG_MAX_PEERS 4096
#define CONFIG_MAX_LIST 256
/* providers: each is probed for a key on `auto` and bare model names. */
#define CONFIG_MAX_PROVIDERS 64
#define CONFIG_MAX_STR 1024
#define CONFIG_MAX_NAME 63 /* tenant, app and provider names: [a-z0-9][a-z0-9_-]{0,62} */
#define CONFIG_ERR_LEN 256

struct config_peer {
    long uid; /* -1 = any */
    long gid; /* -1 = any */
    char *tenant;
    char *app;
};

struct config_listener {
    char *path;
    char *mode; /* octal text; mode_bits is the parsed value */
    unsigned mode_bits;
    char *owner;
    char *group;
    char *tenant; /* bound tenant, or NULL when peers maps callers */
    char *app;
    struct config_peer *peers;
    size_t n_peers;
    bool metrics; /* serve GET /metrics here (it shows every tenant's counters) */
};

struct config_strlist {
    char **items;
    size_t n;
};

struct config {
    int refs;
    struct config_listener *listeners;
    size_t n_listeners;
    struct {
        char *address; /* http(s)://host[:port] or unix:/path */
        char *ca_file;
        char *mount;
        char *ns; /* namespace (Vault Enterprise, HCP Vault, OpenBao); NULL: the root one */
        char *key_type;
        long timeout_ms;
        char *token_file;
        struct {
            char *role_id_file;
            char *secret_id_file;
            char *mount;
        } approle;
        struct {
            char *role;
            char *jwt_file;
            char *mount;
        } kubernetes;
        /*
         * TLS certificate auth: the client certificate (PEM, may hold its
         * chain) and private key presented at each login; name: the Vault
         * role (NULL: Vault tries every role).
         */
        struct {
            char *cert_file;
            char *key_file;
            char *name;
            char *mount;
        } cert;
    } vault;
    struct {
        long connect_timeout_ms;
        long first_byte_timeout_ms;
        long idle_timeout_ms;
        long total_timeout_ms;
        long max_response_bytes;
        long max_host_connections;
        /*
         * Longest cooldown after a provider's 429 (or 503 with Retry-After): the
         * provider's Retry-After is capped by it; 0 = no cooldown (Retry-After is
         * still passed on to the app, capped by CONFIG_DEFAULT_RETRY_AFTER_MAX_S).
         */
        long retry_after_max_s;
        /*
         * Provider health (health.h): consecutive transport-level failures that
         * demote a provider (0 = off) and how long a demotion lasts.
         */
        long health_failures;
        long health_demote_s;
        char *ca_file;
        char *proxy; /* http(s)://host:port for provider calls, or NULL: no proxy at all */
        /*
         * Where Vertex service-account keys are traded for access tokens
         * (agent/gcptoken.h); NULL: CONFIG_GOOGLE_TOKEN_URL. Never the key's
         * own token_uri.
         */
        char *google_token_url;
    } upstream;
    struct {
        long max_body_bytes;
        long max_header_bytes;
        long max_connections;
        long client_timeout_s;
        /*
         * A tenant's rpm_limit and tpm_limit hold across every agent node
         * (rate leases from the plugin, ratelease.h); false: per node only.
         */
        bool shared_rate_limits;
        /* A rate lease asks for this percentage of the limit (at least what the call needs). */
        long rate_lease_percent;
    } limits;
    struct {
        long max_ttl_s;
        long negative_ttl_s;
        long max_entries;
    } keycache;
    struct {
        long report_interval_s;
        long max_pending_records;
        long batch_records;
        char *node_id;
        char *journal_dir; /* NULL: usage is kept in memory only (journal.h) */
    } usage;
    struct {
        long high_water_bytes;
    } stream;
    struct {
        /* A budget lease asks for this percentage of the tenant's max_monthly_cost (budget.h). */
        long lease_percent;
    } budget;
    struct {
        /* A provider/model's measured speed counts this long (latency.h); then it is measured anew.
         */
        long latency_ttl_s;
    } router;
    struct config_strlist providers;
    struct config_strlist forward_headers;
    char *log_level;
    bool log_prompts;
    long drain_timeout_s;
    long default_max_tokens;
    long sched_slice_us; /* 0: the kernel's default slice */
};

/*
 * Parses JSON text. On error returns ERR_CONFIG (or ERR_NOMEM) and writes a
 * message naming the key into errbuf (CONFIG_ERR_LEN bytes).
 */
MUST_USE enum err config_parse(const char *text, size_t len, struct config **ret_cfg, char *errbuf);
/* Reads and parses a file (at most CONFIG_MAX_FILE bytes). */
MUST_USE enum err config_load(const char *path, struct config **ret_cfg, char *errbuf);

/* The agent's scheduler slice (Linux 6.12+ EEVDF custom slice); the kernel allows 100..100000. */
#define CONFIG_DEFAULT_SCHED_SLICE_US 100L
#define CONFIG_MIN_SCHED_SLICE_US 100L

/* Google's OAuth 2.0 token endpoint, the default of upstream.google_token_url. */
#define CONFIG_GOOGLE_TOKEN_URL "https://oauth2.googleapis.com/token"
/* The longest upstream.google_token_url. */
#define CONFIG_MAX_TOKEN_URL 1024
/* upstream.retry_after_max_s: default and largest value. */
#define CONFIG_DEFAULT_RETRY_AFTER_MAX_S 60L
#define CONFIG_MAX_RETRY_AFTER_S 3600L

/* upstream.health_failures and upstream.health_demote_s: defaults and largest values. */
#define CONFIG_DEFAULT_HEALTH_FAILURES 3L
#define CONFIG_MAX_HEALTH_FAILURES 1000L
#define CONFIG_DEFAULT_HEALTH_DEMOTE_S 30L
#define CONFIG_MAX_HEALTH_DEMOTE_S 3600L
/* budget.lease_percent: a lease asks for this share of the monthly cap (20 nodes can hold it all).
 */
#define CONFIG_DEFAULT_LEASE_PERCENT 5L

/* limits.rate_lease_percent: a rate lease asks for this share of the tenant's rpm/tpm limit. */
#define CONFIG_DEFAULT_RATE_LEASE_PERCENT 10L

/* router.latency_ttl_s: default and bounds. */
#define CONFIG_DEFAULT_LATENCY_TTL_S 300L
#define CONFIG_MIN_LATENCY_TTL_S 10L
#define CONFIG_MAX_LATENCY_TTL_S 86400L

/*
 * Largest Vault credential file (token, role_id, secret_id, service-account
 * JWT, client certificate with its chain, private key).
 */
#define CONFIG_MAX_CRED_FILE ((size_t)16 * 1024)
/*
 * The mode rule for the token, role_id, secret_id and client key files, at
 * login and in config_check_host: no group or world access bits. (The
 * service-account JWT is exempt: the kubelet mounts it 0644; so is the
 * client certificate, which is public.)
 */
#define CONFIG_CRED_MODE_OK(mode) (((mode)&077) == 0)
#define CONFIG_CRED_MODE_HINT "group/world accessible (chmod 600)"

/*
 * What parsing cannot see: each listener's owner and group resolve to ids,
 * the CA files can be read, and the Vault auth files are usable: the AppRole
 * role_id and secret_id files, the Kubernetes JWT file and the cert auth's
 * cert_file and key_file exist, are regular files this user can open, are
 * neither empty nor over CONFIG_MAX_CRED_FILE, and pass CONFIG_CRED_MODE_OK
 * (not the JWT, not the certificate); a token_file may be absent or
 * empty (Vault Agent's sink writes it later), else the same rules hold. No
 * file's content is read. ERR_CONFIG with a message naming the key in errbuf
 * (CONFIG_ERR_LEN bytes). Run at start, by --check-config and on reload.
 */
MUST_USE enum err config_check_host(const struct config *c, char *errbuf);
/*
 * True when vault.address is http:// to a host that is not loopback
 * (127.0.0.0/8, ::1, localhost): the token and keys then cross the network in
 * clear. The agent warns about it at start and on reload.
 */
bool config_vault_cleartext(const struct config *c);
/* A listener's owner and group as ids ((uid_t)-1 / (gid_t)-1 when unset): names or numbers. */
MUST_USE enum err config_listener_ids(const struct config_listener *lc, uid_t *uid, gid_t *gid,
                                      char *errbuf, size_t errlen);

struct config *config_ref(struct config *c);
/* Drops a reference; frees at zero; sets *c to NULL. Accepts NULL. */
void config_unref(struct config **c);

/* Is s a valid tenant/provider/app name ([a-z0-9][a-z0-9_-]{0,62})? */
bool config_name_valid(const char *s);

/*
 * The secure (locked) heap holding cached provider keys and the Vault token
 * is fixed when the agent starts, so it is sized from keycache.max_entries:
 * CONFIG_KEY_SLOT bytes an entry (the heap hands out power-of-two blocks; a
 * key of up to 503 bytes takes one 512-byte block with its 8-byte length
 * and NUL), a quarter more for keys replaced while requests still use the
 * old ones, and CONFIG_HEAP_RESERVE for the Vault token and credential
 * files; then rounded up to a power of two, at least CONFIG_HEAP_MIN.
 * keycache.max_entries is capped at CONFIG_MAX_KEYCACHE_ENTRIES (64 MiB).
 */
#define CONFIG_KEY_SLOT ((size_t)512)
#define CONFIG_HEAP_RESERVE ((size_t)256 * 1024)
#define CONFIG_HEAP_MIN ((size_t)1024 * 1024)
#define CONFIG_MAX_KEYCACHE_ENTRIES 100000L

/* The secure heap size (a power of two) the config's keycache.max_entries needs. */
size_t config_secure_heap_bytes(const struct config *c);
/*
 * ERR_CONFIG (message naming keycache.max_entries in errbuf, CONFIG_ERR_LEN
 * bytes) when the config needs a larger secure heap than heap_bytes, the one
 * set up at start (a reload cannot grow it).
 */
MUST_USE enum err config_check_heap(const struct config *c, size_t heap_bytes, char *errbuf);

/* The built-in provider names probed when "providers" is not set. */
extern const char *const config_default_providers[];

#endif
