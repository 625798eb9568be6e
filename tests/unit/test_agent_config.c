/* SPDX-License-Identifier: MPL-2.0 */
/* Unit tests for agent/config: defaults, every kind of bad key, limits at and past the edge. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/config.h"

#define BASE_VAULT_NO_END "\"vault\":{\"address\":\"http://127.0.0.1:8200\",\"token_file\":\"/t\""
#define BASE_VAULT BASE_VAULT_NO_END "}"
#define BASE_LISTENER "\"listeners\":[{\"path\":\"/run/byok/a.sock\",\"tenant\":\"acme\"}]"

static struct config *parse_ok(const char *text)
{
    struct config *c = NULL;
    char err[CONFIG_ERR_LEN];
    enum err e = config_parse(text, strlen(text), &c, err);
    if (e != ERR_OK) {
        fprintf(stderr, "unexpected error: %s\n", err);
    }
    assert_int_equal(e, ERR_OK);
    assert_non_null(c);
    return c;
}

/* Parses text expecting failure; the message must start with the key path. */
static void parse_bad(const char *text, const char *key_path)
{
    struct config *c = NULL;
    char err[CONFIG_ERR_LEN];
    assert_int_equal(config_parse(text, strlen(text), &c, err), ERR_CONFIG);
    assert_null(c);
    if (strncmp(err, key_path, strlen(key_path)) != 0) {
        fprintf(stderr, "error \"%s\" does not name \"%s\"\n", err, key_path);
        fail();
    }
}

static void test_minimal_defaults(void **state)
{
    (void)state;
    struct config *c = parse_ok("{" BASE_LISTENER "," BASE_VAULT "}");
    assert_int_equal(c->n_listeners, 1);
    assert_string_equal(c->listeners[0].tenant, "acme");
    assert_string_equal(c->listeners[0].app, "default");
    assert_int_equal(c->listeners[0].mode_bits, 0660);
    assert_false(c->listeners[0].metrics);
    assert_string_equal(c->vault.mount, "byok");
    assert_null(c->vault.ns); /* the root namespace: no X-Vault-Namespace */
    assert_string_equal(c->vault.key_type, "production");
    assert_int_equal(c->limits.max_body_bytes, 1024 * 1024);
    assert_int_equal(c->limits.max_header_bytes, 16 * 1024);
    assert_int_equal(c->keycache.max_ttl_s, 300);
    assert_int_equal(c->upstream.connect_timeout_ms, 5000);
    assert_int_equal(c->upstream.max_host_connections, 1024);
    assert_int_equal(c->upstream.retry_after_max_s, 60);
    assert_int_equal(c->upstream.health_failures, 3);
    assert_int_equal(c->upstream.health_demote_s, 30);
    assert_int_equal(c->budget.lease_percent, 5);
    assert_true(c->limits.shared_rate_limits);
    assert_int_equal(c->limits.rate_lease_percent, 10);
    assert_int_equal(c->router.latency_ttl_s, 300);
    assert_string_equal(c->log_level, "info");
    assert_false(c->log_prompts);
    assert_int_equal(c->sched_slice_us, 100);
    assert_true(c->providers.n > 3);
    assert_string_equal(c->providers.items[0], "openai");
    assert_non_null(c->usage.node_id);
    assert_true(config_name_valid(c->usage.node_id));
    config_unref(&c);
    assert_null(c);
}

static void test_full_config(void **state)
{
    (void)state;
    const char *text =
        "{\"listeners\":[{\"path\":\"/run/byok/a.sock\",\"mode\":\"0600\",\"owner\":\"0\","
        "\"group\":\"0\",\"tenant\":\"acme\",\"app\":\"web\",\"metrics\":true},"
        "{\"path\":\"/run/byok/b.sock\",\"peers\":[{\"uid\":1000,\"tenant\":\"t1\",\"app\":\"a1\"},"
        "{\"gid\":50,\"tenant\":\"t2\"}]}],"
        "\"vault\":{\"address\":\"unix:/run/vault.sock\",\"approle\":{\"role_id_file\":\"/r\","
        "\"secret_id_file\":\"/s\"},\"timeout_ms\":100},"
        "\"upstream\":{\"ca_file\":\"/ca.pem\",\"max_response_bytes\":1024,"
        "\"retry_after_max_s\":0},"
        "\"limits\":{\"max_connections\":1},\"stream\":{\"high_water_bytes\":4096},"
        "\"providers\":[\"openai\",\"anthropic\"],\"forward_headers\":[\"OpenAI-Beta\"],"
        "\"log_level\":\"debug\",\"log_prompts\":true,\"drain_timeout_s\":0,\"sched_slice_us\":0}";
    struct config *c = parse_ok(text);
    assert_int_equal(c->listeners[0].mode_bits, 0600);
    assert_true(c->listeners[0].metrics);
    assert_false(c->listeners[1].metrics);
    assert_null(c->listeners[1].tenant);
    assert_int_equal(c->listeners[1].n_peers, 2);
    assert_int_equal(c->listeners[1].peers[0].uid, 1000);
    assert_int_equal(c->listeners[1].peers[0].gid, -1);
    assert_int_equal(c->listeners[1].peers[1].uid, -1);
    assert_int_equal(c->listeners[1].peers[1].gid, 50);
    assert_string_equal(c->listeners[1].peers[1].app, "default");
    assert_string_equal(c->vault.approle.mount, "approle");
    assert_int_equal(c->vault.timeout_ms, 100);
    assert_int_equal(c->upstream.max_response_bytes, 1024);
    assert_int_equal(c->upstream.retry_after_max_s, 0);
    assert_int_equal(c->providers.n, 2);
    assert_true(c->log_prompts);
    assert_int_equal(c->sched_slice_us, 0);
    struct config *ref = config_ref(c);
    config_unref(&c);
    assert_string_equal(ref->forward_headers.items[0], "OpenAI-Beta");
    config_unref(&ref);
}

/* What parsing cannot see, checked against the host: owner/group names and CA files. */
static void test_check_host(void **state)
{
    (void)state;
    char err[CONFIG_ERR_LEN];
    struct config *c = parse_ok(
        "{\"listeners\":[{\"path\":\"/run/byok/a.sock\",\"owner\":\"root\",\"group\":\"0\","
        "\"tenant\":\"acme\"}]," BASE_VAULT ",\"upstream\":{\"ca_file\":\"/dev/null\"}}");
    assert_int_equal(config_check_host(c, err), ERR_OK);
    config_unref(&c);
    c = parse_ok("{\"listeners\":[{\"path\":\"/run/byok/a.sock\",\"owner\":\"no-such-user-x\","
                 "\"tenant\":\"acme\"}]," BASE_VAULT "}");
    assert_int_equal(config_check_host(c, err), ERR_CONFIG);
    assert_non_null(strstr(err, "listeners[0].owner: no such user on this host: no-such-user-x"));
    config_unref(&c);
    c = parse_ok("{\"listeners\":[{\"path\":\"/run/byok/a.sock\",\"group\":\"no-such-group-x\","
                 "\"tenant\":\"acme\"}]," BASE_VAULT "}");
    assert_int_equal(config_check_host(c, err), ERR_CONFIG);
    assert_non_null(strstr(err, "listeners[0].group: no such group on this host"));
    config_unref(&c);
    /* Digits are a number; a sign makes it a name, which no host has. */
    c = parse_ok("{\"listeners\":[{\"path\":\"/run/byok/a.sock\",\"owner\":\"-5\","
                 "\"tenant\":\"acme\"}]," BASE_VAULT "}");
    assert_int_equal(config_check_host(c, err), ERR_CONFIG);
    assert_non_null(strstr(err, "listeners[0].owner: no such user on this host: -5"));
    config_unref(&c);
    c = parse_ok("{" BASE_LISTENER "," BASE_VAULT
                 ",\"upstream\":{\"ca_file\":\"/nonexistent/ca.pem\"}}");
    assert_int_equal(config_check_host(c, err), ERR_CONFIG);
    assert_non_null(strstr(err, "upstream.ca_file: cannot read /nonexistent/ca.pem"));
    config_unref(&c);
}

/* A temporary directory for the Vault auth files of test_check_host_vault_files. */
static char auth_dir[64];

static void auth_file(char *path, size_t len, const char *name, const char *text, mode_t mode)
{
    snprintf(path, len, "%s/%s", auth_dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

/* config_check_host on the given "vault" members; the error (or "") in err. */
static enum err check_vault(const char *members, char *err)
{
    char text[1024];
    /* Cert auth needs https (its certificate goes in the TLS handshake). */
    snprintf(text, sizeof(text),
             "{" BASE_LISTENER ",\"vault\":{\"address\":\"%s://127.0.0.1:8200\",%s}}",
             strstr(members, "\"cert\":") != NULL ? "https" : "http", members);
    struct config *c = parse_ok(text);
    err[0] = '\0';
    enum err e = config_check_host(c, err);
    config_unref(&c);
    return e;
}

/* The check refuses: the message names the key and the reason, and holds no file content. */
static void expect_refused(const char *members, const char *key, const char *why)
{
    char err[CONFIG_ERR_LEN];
    assert_int_equal(check_vault(members, err), ERR_CONFIG);
    assert_true(strncmp(err, key, strlen(key)) == 0);
    assert_non_null(strstr(err, why));
    assert_null(strstr(err, "sk-canary"));
}

/*
 * As user nobody (when run as root, where every file opens) or with the file
 * mode 000 (otherwise): the check refuses an auth file this user cannot read.
 */
static void expect_unreadable(const char *members, const char *path, const char *want)
{
    char err[CONFIG_ERR_LEN];
    if (geteuid() != 0) {
        assert_int_equal(chmod(path, 0), 0);
        assert_int_equal(check_vault(members, err), ERR_CONFIG);
        assert_non_null(strstr(err, want));
        assert_int_equal(chmod(path, 0600), 0);
        return;
    }
    /* The other auth files (the role_id for a secret_id test) are nobody's, so readable. */
    assert_int_equal(chmod(auth_dir, 0711), 0);
    DIR *d = opendir(auth_dir);
    assert_non_null(d);
    struct dirent *de;
    char other[340];
    while ((de = readdir(d)) != NULL) {
        snprintf(other, sizeof(other), "%s/%s", auth_dir, de->d_name);
        if (de->d_name[0] != '.' && strcmp(other, path) != 0) {
            assert_int_equal(chown(other, 65534, 65534), 0);
        }
    }
    closedir(d);
    assert_int_equal(chown(path, 0, 0), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (setgid(65534) != 0 || setuid(65534) != 0) {
            _exit(3);
        }
        enum err e = check_vault(members, err);
        if (e != ERR_CONFIG || strstr(err, want) == NULL) {
            fprintf(stderr, "as nobody, want \"%s\", got \"%s\"\n", want, err);
            _exit(1);
        }
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/*
 * The Vault auth files: a missing, unreadable, group-readable, empty or
 * non-regular role_id/secret_id file, and a missing JWT, are refused naming
 * the key and the reason, never the content; a token_file may be absent.
 * Before the fix config_check_host passed all of them (the agent then
 * started and answered every call 503).
 */
static void test_check_host_vault_files(void **state)
{
    (void)state;
    snprintf(auth_dir, sizeof(auth_dir), "/tmp/byok-cfg-XXXXXX");
    assert_non_null(mkdtemp(auth_dir));
    char role[128], secret[128], jwt[128], tok[128], members[600], err[CONFIG_ERR_LEN];
    const char *canary = "sk-canary-secret-id-0123456789";
    auth_file(role, sizeof(role), "role_id", "role-1\n", 0600);
    auth_file(secret, sizeof(secret), "secret_id", canary, 0600);
    auth_file(jwt, sizeof(jwt), "jwt", "eyJhbGciOi.x.y", 0644);
#define APPROLE(r, s)                                                                              \
    snprintf(members, sizeof(members),                                                             \
             "\"approle\":{\"role_id_file\":\"%s\",\"secret_id_file\":\"%s\"}", r, s)
    APPROLE(role, secret);
    assert_int_equal(check_vault(members, err), ERR_OK);

    APPROLE("/nonexistent/role_id", secret);
    assert_int_equal(check_vault(members, err), ERR_CONFIG);
    assert_string_equal(err, "vault.approle.role_id_file: /nonexistent/role_id: missing");

    assert_int_equal(chmod(secret, 0640), 0);
    APPROLE(role, secret);
    expect_refused(members,
                   "vault.approle.secret_id_file: ", ": group/world accessible (chmod 600)");
    assert_int_equal(chmod(secret, 0604), 0);
    expect_refused(members,
                   "vault.approle.secret_id_file: ", ": group/world accessible (chmod 600)");
    assert_int_equal(chmod(secret, 0600), 0);
    expect_unreadable(members, secret, "vault.approle.secret_id_file: ");
    expect_unreadable(members, secret, ": not readable by this user (uid ");

    char empty[128];
    auth_file(empty, sizeof(empty), "empty", "", 0600);
    APPROLE(role, empty);
    expect_refused(members, "vault.approle.secret_id_file: ", ": empty");
    APPROLE(auth_dir, secret);
    expect_refused(members, "vault.approle.role_id_file: ", ": not a regular file");
#undef APPROLE

    /* Kubernetes: the JWT must be there and readable; 0644 is fine (the kubelet's mode). */
    snprintf(members, sizeof(members), "\"kubernetes\":{\"role\":\"r\",\"jwt_file\":\"%s\"}", jwt);
    assert_int_equal(check_vault(members, err), ERR_OK);
    assert_int_equal(chmod(jwt, 0600), 0); /* as root, only the owner bits keep nobody out */
    expect_unreadable(members, jwt, "vault.kubernetes.jwt_file: ");
    assert_int_equal(chmod(jwt, 0644), 0);
    snprintf(members, sizeof(members),
             "\"kubernetes\":{\"role\":\"r\",\"jwt_file\":\"/nonexistent/token\"}");
    assert_int_equal(check_vault(members, err), ERR_CONFIG);
    assert_string_equal(err, "vault.kubernetes.jwt_file: /nonexistent/token: missing");

    /*
     * Cert auth: the key is held to the secret_id rules (0600 or stricter);
     * the certificate is public, 0644 passes; both must be there, not empty.
     */
    char crt[128], key[128];
    auth_file(crt, sizeof(crt), "client.crt", "-----BEGIN CERTIFICATE-----\n", 0644);
    auth_file(key, sizeof(key), "client.key", canary, 0600);
#define CERT(c, k)                                                                                 \
    snprintf(members, sizeof(members), "\"cert\":{\"cert_file\":\"%s\",\"key_file\":\"%s\"}", c, k)
    CERT(crt, key);
    assert_int_equal(check_vault(members, err), ERR_OK);
    assert_int_equal(chmod(key, 0640), 0);
    expect_refused(members, "vault.cert.key_file: ", ": group/world accessible (chmod 600)");
    assert_int_equal(chmod(key, 0604), 0);
    expect_refused(members, "vault.cert.key_file: ", ": group/world accessible (chmod 600)");
    assert_int_equal(chmod(key, 0400), 0);
    assert_int_equal(check_vault(members, err), ERR_OK);
    assert_int_equal(chmod(key, 0600), 0);
    expect_unreadable(members, key, "vault.cert.key_file: ");
    CERT("/nonexistent/client.crt", key);
    assert_int_equal(check_vault(members, err), ERR_CONFIG);
    assert_string_equal(err, "vault.cert.cert_file: /nonexistent/client.crt: missing");
    CERT(crt, "/nonexistent/client.key");
    assert_int_equal(check_vault(members, err), ERR_CONFIG);
    assert_string_equal(err, "vault.cert.key_file: /nonexistent/client.key: missing");
    CERT(empty, key);
    expect_refused(members, "vault.cert.cert_file: ", ": empty");
    CERT(crt, auth_dir);
    expect_refused(members, "vault.cert.key_file: ", ": not a regular file");
#undef CERT

    /* token_file: absent is fine (a Vault Agent sink writes it later); present, the rules hold. */
    snprintf(tok, sizeof(tok), "%s/token", auth_dir);
    snprintf(members, sizeof(members), "\"token_file\":\"%s\"", tok);
    assert_int_equal(check_vault(members, err), ERR_OK);
    auth_file(tok, sizeof(tok), "token", canary, 0644);
    expect_refused(members, "vault.token_file: ", ": group/world accessible (chmod 600)");
    assert_int_equal(chmod(tok, 0600), 0);
    assert_int_equal(check_vault(members, err), ERR_OK);
    expect_unreadable(members, tok, "vault.token_file: ");

    unlink(role);
    unlink(secret);
    unlink(jwt);
    unlink(empty);
    unlink(tok);
    unlink(crt);
    unlink(key);
    assert_int_equal(rmdir(auth_dir), 0);
}

/*
 * vault.address over http:// to a host that is not loopback: the agent warns
 * (the token and keys cross the network in clear). Before, nothing said so.
 */
static void test_vault_cleartext(void **state)
{
    (void)state;
    static const struct {
        const char *address;
        bool cleartext;
    } cases[] = {
        {"http://127.0.0.1:8200", false},   {"http://127.3.4.5", false},
        {"http://localhost:8200/", false},  {"http://LOCALHOST", false},
        {"http://[::1]:8200", false},       {"https://vault.example:8200", false},
        {"unix:/run/vault.sock", false},    {"http://vault.example:8200", true},
        {"http://10.0.0.5:8200", true},     {"http://127.evil.example", true},
        {"http://localhost.example", true}, {"http://[2001:db8::1]:8200", true},
        {"http://128.0.0.1", true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[512];
        snprintf(text, sizeof(text),
                 "{" BASE_LISTENER ",\"vault\":{\"address\":\"%s\",\"token_file\":\"/t\"}}",
                 cases[i].address);
        struct config *c = parse_ok(text);
        if (config_vault_cleartext(c) != cases[i].cleartext) {
            fail_msg("%s: cleartext should be %d", cases[i].address, cases[i].cleartext);
        }
        config_unref(&c);
    }
}

static void test_unknown_keys(void **state)
{
    (void)state;
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"bogus\":1}", "bogus: unknown key");
    parse_bad("{" BASE_LISTENER ",\"vault\":{\"address\":\"http://v\",\"token_file\":\"/t\","
              "\"tokn\":1}}",
              "vault.tokn: unknown key");
    parse_bad("{\"listeners\":[{\"path\":\"/a\",\"tenant\":\"a\",\"port\":80}]," BASE_VAULT "}",
              "listeners[0].port: unknown key");
    parse_bad("{\"listeners\":[{\"path\":\"/"
              "a\",\"peers\":[{\"uid\":1,\"tenant\":\"a\",\"x\":1}]}]," BASE_VAULT "}",
              "listeners[0].peers[0].x: unknown key");
}

static void test_wrong_types(void **state)
{
    (void)state;
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"log_prompts\":\"yes\"}", "log_prompts: must be");
    parse_bad("{\"listeners\":[{\"path\":\"/a\",\"tenant\":\"a\",\"metrics\":1}]," BASE_VAULT "}",
              "listeners[0].metrics: must be true or false");
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"limits\":{\"max_body_bytes\":\"1M\"}}",
              "limits.max_body_bytes: must be an integer");
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"limits\":[]}", "limits: must be an object");
    parse_bad("{\"listeners\":{}," BASE_VAULT "}", "listeners: must be an array");
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"providers\":[1]}", "providers[0]: must be");
    parse_bad("[]", "(top level): must be a JSON object");
    parse_bad("{\"listeners\":", "(file): invalid JSON");
    /* upstream.proxy: an http(s) URL with a host, nothing else. */
    struct config *c = parse_ok("{" BASE_LISTENER "," BASE_VAULT
                                ",\"upstream\":{\"proxy\":\"http://proxy.internal:3128\"}}");
    assert_string_equal(c->upstream.proxy, "http://proxy.internal:3128");
    config_unref(&c);
    c = parse_ok("{" BASE_LISTENER "," BASE_VAULT "}");
    assert_null(c->upstream.proxy); /* none, whatever the environment says */
    config_unref(&c);
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"upstream\":{\"proxy\":\"socks5://p:1080\"}}",
              "upstream.proxy: must be");
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"upstream\":{\"proxy\":\"http://\"}}",
              "upstream.proxy: must be");
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"upstream\":{\"proxy\":\"http://a b:1\"}}",
              "upstream.proxy: must be");
}

/* upstream.google_token_url: https, or http to the node itself; never from a key. */
static void test_google_token_url(void **state)
{
    (void)state;
    struct config *c = parse_ok("{" BASE_LISTENER "," BASE_VAULT "}");
    assert_null(c->upstream.google_token_url); /* CONFIG_GOOGLE_TOKEN_URL */
    config_unref(&c);
    static const char *const good[] = {
        "https://oauth2.googleapis.com/token", "https://private.googleapis.com:8443/token",
        "http://127.0.0.1:8080/token", "http://localhost/token", "http://[::1]:9/token"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char text[512];
        snprintf(text, sizeof(text),
                 "{" BASE_LISTENER "," BASE_VAULT ",\"upstream\":{\"google_token_url\":\"%s\"}}",
                 good[i]);
        c = parse_ok(text);
        assert_string_equal(c->upstream.google_token_url, good[i]);
        config_unref(&c);
    }
    static const char *const bad[] = {
        "http://169.254.169.254/token", "http://127.0.0.1.evil/x",
        "ftp://oauth2.googleapis.com/token", "https://", "https:///token", "https://a b/token",
        "oauth2.googleapis.com",
        /* userinfo: the host is the one after '@' */
        "http://localhost:@evil.example/token", "http://127.0.0.1:80@evil.example/",
        "https://user@oauth2.googleapis.com/token"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[512];
        snprintf(text, sizeof(text),
                 "{" BASE_LISTENER "," BASE_VAULT ",\"upstream\":{\"google_token_url\":\"%s\"}}",
                 bad[i]);
        parse_bad(text, "upstream.google_token_url: must be");
    }
    /* The length bound: 1024 bytes, and one past it. */
    char url[CONFIG_MAX_TOKEN_URL + 2];
    char text[CONFIG_MAX_TOKEN_URL + 256];
    memset(url, 'a', sizeof(url));
    memcpy(url, "https://x/", 10);
    url[CONFIG_MAX_TOKEN_URL] = '\0';
    snprintf(text, sizeof(text),
             "{" BASE_LISTENER "," BASE_VAULT ",\"upstream\":{\"google_token_url\":\"%s\"}}", url);
    c = parse_ok(text);
    config_unref(&c);
    url[CONFIG_MAX_TOKEN_URL] = 'a';
    url[CONFIG_MAX_TOKEN_URL + 1] = '\0';
    snprintf(text, sizeof(text),
             "{" BASE_LISTENER "," BASE_VAULT ",\"upstream\":{\"google_token_url\":\"%s\"}}", url);
    parse_bad(text, "upstream.google_token_url");
}

static void test_ranges_at_and_past_limit(void **state)
{
    (void)state;
    /* max_body_bytes: 1024 .. 64 MiB */
    struct config *c =
        parse_ok("{" BASE_LISTENER "," BASE_VAULT ",\"limits\":{\"max_body_bytes\":67108864}}");
    assert_int_equal(c->limits.max_body_bytes, 67108864);
    config_unref(&c);
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"limits\":{\"max_body_bytes\":67108865}}",
              "limits.max_body_bytes: must be between");
    c = parse_ok("{" BASE_LISTENER "," BASE_VAULT ",\"limits\":{\"max_body_bytes\":1024}}");
    config_unref(&c);
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"limits\":{\"max_body_bytes\":1023}}",
              "limits.max_body_bytes: must be between");
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"keycache\":{\"max_ttl_s\":0}}",
              "keycache.max_ttl_s: must be between");
    /* Rate leases: a share of 1..100 %, shared or not. */
    c = parse_ok("{" BASE_LISTENER "," BASE_VAULT
                 ",\"limits\":{\"rate_lease_percent\":100,\"shared_rate_limits\":false}}");
    assert_int_equal(c->limits.rate_lease_percent, 100);
    assert_false(c->limits.shared_rate_limits);
    config_unref(&c);
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"limits\":{\"rate_lease_percent\":0}}",
              "limits.rate_lease_percent: must be between");
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"limits\":{\"rate_lease_percent\":101}}",
              "limits.rate_lease_percent: must be between");
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"limits\":{\"shared_rate_limits\":\"yes\"}}",
              "limits.shared_rate_limits: must be true or false");
    /* Name length: 63 accepted, 64 refused. */
    char text[1024];
    char name[80];
    memset(name, 'a', 63);
    name[63] = '\0';
    snprintf(text, sizeof(text),
             "{\"listeners\":[{\"path\":\"/a\",\"tenant\":\"%s\"}]," BASE_VAULT "}", name);
    c = parse_ok(text);
    config_unref(&c);
    memset(name, 'a', 64);
    name[64] = '\0';
    snprintf(text, sizeof(text),
             "{\"listeners\":[{\"path\":\"/a\",\"tenant\":\"%s\"}]," BASE_VAULT "}", name);
    parse_bad(text, "listeners[0].tenant: must be");
    /* Listener count: 64 accepted, 65 refused. */
    size_t cap = 65 * 64 + 256;
    char *big = malloc(cap);
    for (int n = 64; n <= 65; n++) {
        size_t len = (size_t)snprintf(big, cap, "{\"listeners\":[");
        for (int i = 0; i < n; i++) {
            len += (size_t)snprintf(big + len, cap - len, "%s{\"path\":\"/s%d\",\"tenant\":\"a\"}",
                                    i ? "," : "", i);
        }
        snprintf(big + len, cap - len, "]," BASE_VAULT "}");
        if (n == 64) {
            c = parse_ok(big);
            assert_int_equal(c->n_listeners, 64);
            config_unref(&c);
        } else {
            parse_bad(big, "listeners: must have between 1 and 64");
        }
    }
    free(big);
    /* Path: 107 bytes fit sun_path, 108 do not. */
    char path[120];
    path[0] = '/';
    memset(path + 1, 'p', 106);
    path[107] = '\0';
    snprintf(text, sizeof(text),
             "{\"listeners\":[{\"path\":\"%s\",\"tenant\":\"a\"}]," BASE_VAULT "}", path);
    c = parse_ok(text);
    config_unref(&c);
    path[107] = 'p';
    path[108] = '\0';
    snprintf(text, sizeof(text),
             "{\"listeners\":[{\"path\":\"%s\",\"tenant\":\"a\"}]," BASE_VAULT "}", path);
    parse_bad(text, "listeners[0]: path must be absolute");
}

static void test_semantic_rules(void **state)
{
    (void)state;
    parse_bad("{\"listeners\":[{\"path\":\"/a\"}]," BASE_VAULT "}",
              "listeners[0]: needs exactly one of");
    parse_bad("{\"listeners\":[{\"path\":\"/a\",\"tenant\":\"x\",\"peers\":[{\"uid\":1,"
              "\"tenant\":\"y\"}]}]," BASE_VAULT "}",
              "listeners[0]: needs exactly one of");
    parse_bad("{\"listeners\":[{\"path\":\"/a\",\"peers\":[{\"tenant\":\"y\"}]}]," BASE_VAULT "}",
              "listeners[0].peers[0]: needs \"uid\" or \"gid\"");
    parse_bad("{\"listeners\":[{\"path\":\"/a\",\"tenant\":\"x\"},{\"path\":\"/"
              "a\",\"tenant\":\"y\"}]," BASE_VAULT "}",
              "listeners[1]: path is used");
    parse_bad("{\"listeners\":[{\"path\":\"rel.sock\",\"tenant\":\"x\"}]," BASE_VAULT "}",
              "listeners[0]: path must be absolute");
    parse_bad("{\"listeners\":[{\"path\":\"/a\",\"tenant\":\"x\",\"mode\":\"0999\"}]," BASE_VAULT
              "}",
              "listeners[0].mode: must be an octal");
    parse_bad("{\"listeners\":[{\"path\":\"/a\",\"tenant\":\"Acme\"}]," BASE_VAULT "}",
              "listeners[0].tenant: must match");
    parse_bad("{" BASE_LISTENER ",\"vault\":{\"address\":\"ftp://v\",\"token_file\":\"/t\"}}",
              "vault.address: must start with");
    /* Credentials in the address would be logged with it; spaces and controls never belong. */
    parse_bad("{" BASE_LISTENER
              ",\"vault\":{\"address\":\"https://u:pw@v:8200\",\"token_file\":\"/t\"}}",
              "vault.address: must not hold user:password@");
    parse_bad("{" BASE_LISTENER
              ",\"vault\":{\"address\":\"http://vault.example@127.0.0.1\",\"token_file\":\"/t\"}}",
              "vault.address: must not hold user:password@");
    parse_bad("{" BASE_LISTENER ",\"vault\":{\"address\":\"https://v /x\",\"token_file\":\"/t\"}}",
              "vault.address: must not hold spaces");
    parse_bad("{" BASE_LISTENER
              ",\"vault\":{\"address\":\"https://v\\r\\nX: y\",\"token_file\":\"/t\"}}",
              "vault.address: must not hold spaces");
    /* An '@' past the authority (in the path) is no userinfo. */
    struct config *at = parse_ok("{" BASE_LISTENER ",\"vault\":{\"address\":\"https://v/a@b\","
                                 "\"token_file\":\"/t\"}}");
    config_unref(&at);
    parse_bad("{" BASE_LISTENER ",\"vault\":{\"address\":\"http://v\"}}",
              "vault: needs exactly one of");
    parse_bad("{" BASE_LISTENER ",\"vault\":{\"address\":\"http://v\",\"token_file\":\"/t\","
              "\"kubernetes\":{\"role\":\"r\"}}}",
              "vault: needs exactly one of");
    parse_bad("{" BASE_LISTENER ",\"vault\":{\"token_file\":\"/t\"}}",
              "vault.address: is required");
    /* Cert auth: both files required, https only, one method, a sane role name and mount. */
    parse_bad(
        "{" BASE_LISTENER ",\"vault\":{\"address\":\"https://v\",\"token_file\":\"/t\","
        "\"cert\":{\"cert_file\":\"/c\",\"key_file\":\"/k\"}}}",
        "vault: needs exactly one of \"token_file\", \"approle\", \"kubernetes\" or \"cert\"");
    parse_bad("{" BASE_LISTENER
              ",\"vault\":{\"address\":\"https://v\",\"cert\":{\"cert_file\":\"/c\"}}}",
              "vault.cert.key_file: is required");
    parse_bad("{" BASE_LISTENER
              ",\"vault\":{\"address\":\"https://v\",\"cert\":{\"key_file\":\"/k\"}}}",
              "vault.cert.cert_file: is required");
    parse_bad("{" BASE_LISTENER ",\"vault\":{\"address\":\"http://127.0.0.1:8200\","
              "\"cert\":{\"cert_file\":\"/c\",\"key_file\":\"/k\"}}}",
              "vault.address: must be https:// with vault.cert");
    parse_bad("{" BASE_LISTENER ",\"vault\":{\"address\":\"unix:/run/vault.sock\","
              "\"cert\":{\"cert_file\":\"/c\",\"key_file\":\"/k\"}}}",
              "vault.address: must be https:// with vault.cert");
    parse_bad("{" BASE_LISTENER
              ",\"vault\":{\"address\":\"https://v\",\"cert\":{\"cert_file\":\"/c\","
              "\"key_file\":\"/k\",\"name\":\"a b\"}}}",
              "vault.cert.name: must be a Vault cert role name");
    parse_bad("{" BASE_LISTENER
              ",\"vault\":{\"address\":\"https://v\",\"cert\":{\"cert_file\":\"/c\","
              "\"key_file\":\"/k\",\"name\":\"\"}}}",
              "vault.cert.name: must be a Vault cert role name");
    parse_bad("{" BASE_LISTENER
              ",\"vault\":{\"address\":\"https://v\",\"cert\":{\"cert_file\":\"/c\","
              "\"key_file\":\"/k\",\"mount\":\"cert/../sys\"}}}",
              "vault.cert.mount: must be a Vault mount path");
    parse_bad("{" BASE_LISTENER
              ",\"vault\":{\"address\":\"https://v\",\"cert\":{\"cert_file\":\"/c\","
              "\"key_file\":\"/k\",\"pem\":\"x\"}}}",
              "vault.cert.pem: ");
    struct config *cc =
        parse_ok("{" BASE_LISTENER ",\"vault\":{\"address\":\"https://v\",\"cert\":{"
                 "\"cert_file\":\"/c\",\"key_file\":\"/k\"}}}");
    assert_string_equal(cc->vault.cert.mount, "cert");
    assert_null(cc->vault.cert.name);
    assert_null(cc->vault.approle.mount);
    config_unref(&cc);
    cc = parse_ok("{" BASE_LISTENER ",\"vault\":{\"address\":\"https://v\",\"cert\":{"
                  "\"cert_file\":\"/c\",\"key_file\":\"/"
                  "k\",\"name\":\"node-fleet\",\"mount\":\"pki-cert\"}}}");
    assert_string_equal(cc->vault.cert.name, "node-fleet");
    assert_string_equal(cc->vault.cert.mount, "pki-cert");
    config_unref(&cc);
    parse_bad("{" BASE_VAULT "}", "listeners: is required");
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"log_level\":\"loud\"}",
              "log_level: must be one");
    /* The kernel's custom slices are 100 us .. 100 ms; 0 keeps the kernel's default. */
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"sched_slice_us\":99}",
              "sched_slice_us: must be 0 (the kernel's default) or 100..100000");
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"sched_slice_us\":100001}", "sched_slice_us: ");
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"sched_slice_us\":-1}", "sched_slice_us: ");
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"sched_slice_us\":\"100\"}", "sched_slice_us: ");
    /* The cap on a provider's Retry-After: 0 (no cooldown) .. an hour. */
    struct config *ra =
        parse_ok("{" BASE_LISTENER "," BASE_VAULT ",\"upstream\":{\"retry_after_max_s\":3600}}");
    assert_int_equal(ra->upstream.retry_after_max_s, 3600);
    config_unref(&ra);
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"upstream\":{\"retry_after_max_s\":3601}}",
              "upstream.retry_after_max_s: ");
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"upstream\":{\"retry_after_max_s\":-1}}",
              "upstream.retry_after_max_s: ");
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"upstream\":{\"retry_after_max_s\":\"60\"}}",
              "upstream.retry_after_max_s: ");
    /* Provider health: 0 failures turns it off; a demotion lasts 1 s .. an hour. */
    struct config *hc = parse_ok("{" BASE_LISTENER "," BASE_VAULT
                                 ",\"upstream\":{\"health_failures\":0,\"health_demote_s\":1}}");
    assert_int_equal(hc->upstream.health_failures, 0);
    assert_int_equal(hc->upstream.health_demote_s, 1);
    config_unref(&hc);
    hc = parse_ok("{" BASE_LISTENER "," BASE_VAULT
                  ",\"upstream\":{\"health_failures\":1000,\"health_demote_s\":3600}}");
    assert_int_equal(hc->upstream.health_failures, 1000);
    assert_int_equal(hc->upstream.health_demote_s, 3600);
    config_unref(&hc);
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"upstream\":{\"health_failures\":1001}}",
              "upstream.health_failures: must be between 0 and 1000");
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"upstream\":{\"health_failures\":-1}}",
              "upstream.health_failures: ");
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"upstream\":{\"health_failures\":\"3\"}}",
              "upstream.health_failures: must be an integer");
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"upstream\":{\"health_failures\":2.5}}",
              "upstream.health_failures: ");
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"upstream\":{\"health_demote_s\":0}}",
              "upstream.health_demote_s: must be between 1 and 3600");
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"upstream\":{\"health_demote_s\":3601}}",
              "upstream.health_demote_s: ");
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"upstream\":{\"health_demote_s\":null}}",
              "upstream.health_demote_s: ");
    /* A budget lease asks for 1 .. 100 % of the tenant's monthly cap. */
    struct config *bc =
        parse_ok("{" BASE_LISTENER "," BASE_VAULT ",\"budget\":{\"lease_percent\":100}}");
    assert_int_equal(bc->budget.lease_percent, 100);
    config_unref(&bc);
    bc = parse_ok("{" BASE_LISTENER "," BASE_VAULT ",\"budget\":{\"lease_percent\":1}}");
    assert_int_equal(bc->budget.lease_percent, 1);
    config_unref(&bc);
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"budget\":{\"lease_percent\":0}}",
              "budget.lease_percent: must be between 1 and 100");
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"budget\":{\"lease_percent\":101}}",
              "budget.lease_percent: ");
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"budget\":{\"lease_percent\":2.5}}",
              "budget.lease_percent: ");
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"budget\":{\"lease\":5}}", "budget.lease");
    /* A measured speed counts 10 s .. 1 day. */
    bc = parse_ok("{" BASE_LISTENER "," BASE_VAULT ",\"router\":{\"latency_ttl_s\":10}}");
    assert_int_equal(bc->router.latency_ttl_s, 10);
    config_unref(&bc);
    bc = parse_ok("{" BASE_LISTENER "," BASE_VAULT ",\"router\":{\"latency_ttl_s\":86400}}");
    assert_int_equal(bc->router.latency_ttl_s, 86400);
    config_unref(&bc);
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"router\":{\"latency_ttl_s\":9}}",
              "router.latency_ttl_s: must be between 10 and 86400");
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"router\":{\"latency_ttl_s\":86401}}",
              "router.latency_ttl_s: ");
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"router\":{\"latency_ttl_s\":\"300\"}}",
              "router.latency_ttl_s: ");
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"router\":{\"strategy\":\"fastest\"}}",
              "router.strategy");
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"router\":[]}", "router");
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"forward_headers\":[\"Authorization\"]}",
              "forward_headers[0]: may not forward");
    /*
     * Hop, proxy and encoding headers too, in any case, those a SigV4 signature
     * covers, and Vertex express mode's key header.
     */
    static const char *const hop[] = {
        "Proxy-Authorization",  "expect",        "TE",         "Upgrade",
        "Accept-Encoding",      "content-type",  "X-Amz-Date", "x-amz-security-token",
        "X-Amz-Content-Sha256", "X-Goog-Api-Key"};
    for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++) {
        char text[512];
        snprintf(text, sizeof(text),
                 "{" BASE_LISTENER "," BASE_VAULT ",\"forward_headers\":[\"OpenAI-Beta\",\"%s\"]}",
                 hop[i]);
        parse_bad(text, "forward_headers[1]: may not forward");
    }
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"forward_headers\":[\"X-A:b\"]}",
              "forward_headers[0]: must be a header name");
    /*
     * Mounts go into request URLs: an empty one, a query or fragment, a dot
     * segment, a space or a control would send calls to another path.
     */
    static const char *const bad_mounts[] = {"",      "byok?x=1", "byok#f", "a/../sys", "./byok",
                                             "/byok", "byok/",    "a//b",   "by ok",    "by\\nok"};
    char text[512];
    for (size_t i = 0; i < sizeof(bad_mounts) / sizeof(bad_mounts[0]); i++) {
        snprintf(text, sizeof(text), "{" BASE_LISTENER "," BASE_VAULT_NO_END ",\"mount\":\"%s\"}}",
                 bad_mounts[i]);
        parse_bad(text, "vault.mount: must be a Vault mount path");
    }
    snprintf(text, sizeof(text),
             "{" BASE_LISTENER ",\"vault\":{\"address\":\"http://v\",\"approle\":{"
             "\"role_id_file\":\"/r\",\"secret_id_file\":\"/s\",\"mount\":\"app role\"}}}");
    parse_bad(text, "vault.approle.mount: must be a Vault mount path");
    snprintf(text, sizeof(text),
             "{" BASE_LISTENER ",\"vault\":{\"address\":\"http://v\",\"kubernetes\":{"
             "\"role\":\"r\",\"mount\":\"k8s?\"}}}");
    parse_bad(text, "vault.kubernetes.mount: must be a Vault mount path");
    struct config *c =
        parse_ok("{" BASE_LISTENER "," BASE_VAULT_NO_END ",\"mount\":\"team-a/byok_v2.1\"}}");
    assert_string_equal(c->vault.mount, "team-a/byok_v2.1");
    config_unref(&c);
    /* A namespace goes into a header: the same rule, and no CR/LF can reach it. */
    for (size_t i = 0; i < sizeof(bad_mounts) / sizeof(bad_mounts[0]); i++) {
        snprintf(text, sizeof(text),
                 "{" BASE_LISTENER "," BASE_VAULT_NO_END ",\"namespace\":\"%s\"}}", bad_mounts[i]);
        parse_bad(text, "vault.namespace: must be a Vault namespace path");
    }
    parse_bad("{" BASE_LISTENER "," BASE_VAULT_NO_END
              ",\"namespace\":\"a\\r\\nX-Vault-Token: t\"}}",
              "vault.namespace: must be a Vault namespace path");
    parse_bad("{" BASE_LISTENER "," BASE_VAULT_NO_END ",\"namespace\":7}}", "vault.namespace");
    c = parse_ok("{" BASE_LISTENER "," BASE_VAULT_NO_END ",\"namespace\":\"admin/team-a\"}}");
    assert_string_equal(c->vault.ns, "admin/team-a");
    config_unref(&c);
    /* Duplicate keys are refused rather than silently last-one-wins. */
    parse_bad("{" BASE_LISTENER "," BASE_VAULT ",\"log_level\":\"info\",\"log_level\":\"off\"}",
              "(file): invalid JSON");
}

static void test_load_file(void **state)
{
    (void)state;
    char path[] = "/tmp/byok-test-config-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "{" BASE_LISTENER "," BASE_VAULT "}";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    struct config *c = NULL;
    char err[CONFIG_ERR_LEN];
    assert_int_equal(config_load(path, &c, err), ERR_OK);
    config_unref(&c);
    unlink(path);
    assert_int_equal(config_load(path, &c, err), ERR_IO);
    assert_non_null(strstr(err, "cannot open"));
    /* A file of CONFIG_MAX_FILE + 1 bytes is refused before parsing. */
    strcpy(path, "/tmp/byok-test-config-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    char *big = malloc(CONFIG_MAX_FILE + 1);
    memset(big, ' ', CONFIG_MAX_FILE + 1);
    assert_int_equal(write(fd, big, CONFIG_MAX_FILE + 1), CONFIG_MAX_FILE + 1);
    close(fd);
    free(big);
    assert_int_equal(config_load(path, &c, err), ERR_CONFIG);
    assert_non_null(strstr(err, "larger than"));
    unlink(path);
}

/* The shipped example must stay valid (run from the repository root, as tests/run-all.sh does). */
static void test_example_config(void **state)
{
    (void)state;
    struct config *c = NULL;
    char err[CONFIG_ERR_LEN];
    if (access("agent/example-config.json", R_OK) != 0) {
        skip();
    }
    enum err e = config_load("agent/example-config.json", &c, err);
    if (e != ERR_OK) {
        fprintf(stderr, "%s\n", err);
    }
    assert_int_equal(e, ERR_OK);
    assert_int_equal(c->n_listeners, 3);
    /* only the scraper's socket serves /metrics (every tenant's counters) */
    assert_false(c->listeners[0].metrics);
    assert_true(c->listeners[1].metrics);
    assert_false(c->listeners[2].metrics);
    assert_non_null(c->vault.approle.role_id_file);
    config_unref(&c);
}

/* Every provider listed is probed, so the list is bounded where the probe is. */
static void test_providers_bound(void **state)
{
    (void)state;
    char text[8192];
    for (int n = CONFIG_MAX_PROVIDERS; n <= CONFIG_MAX_PROVIDERS + 1; n++) {
        size_t len = (size_t)snprintf(text, sizeof(text),
                                      "{" BASE_LISTENER "," BASE_VAULT ",\"providers\":[");
        for (int i = 0; i < n; i++) {
            len += (size_t)snprintf(text + len, sizeof(text) - len, "%s\"p%d\"", i ? "," : "", i);
        }
        snprintf(text + len, sizeof(text) - len, "]}");
        if (n == CONFIG_MAX_PROVIDERS) {
            struct config *c = parse_ok(text);
            assert_int_equal(c->providers.n, CONFIG_MAX_PROVIDERS);
            assert_string_equal(c->providers.items[CONFIG_MAX_PROVIDERS - 1], "p63");
            config_unref(&c);
        } else {
            parse_bad(text, "providers: must have between 1 and 64 entries");
        }
    }
}

static void test_name_valid(void **state)
{
    (void)state;
    assert_true(config_name_valid("acme"));
    assert_true(config_name_valid("a-b_c9"));
    assert_false(config_name_valid(""));
    assert_false(config_name_valid("-a"));
    assert_false(config_name_valid("_a"));
    assert_false(config_name_valid("a/b"));
    assert_false(config_name_valid("a b"));
    assert_false(config_name_valid("A"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal_defaults),
        cmocka_unit_test(test_full_config),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_google_token_url),
        cmocka_unit_test(test_ranges_at_and_past_limit),
        cmocka_unit_test(test_semantic_rules),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_example_config),
        cmocka_unit_test(test_name_valid),
        cmocka_unit_test(test_providers_bound),
        cmocka_unit_test(test_check_host),
        cmocka_unit_test(test_check_host_vault_files),
        cmocka_unit_test(test_vault_cleartext),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
