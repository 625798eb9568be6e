/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Vault client state machine. One token at a time; requests that arrive while
 * no token is held wait in a bounded queue until a login finishes. A 403 on a
 * request made with a token since replaced, or past its TTL, is retried once
 * (after a fresh login if needed). A 403 with the current token is either a
 * policy refusal of that path or a revoked token: lookup-self tells (one for
 * every 403 arriving meanwhile); only a refused lookup drops the token for a
 * new login and a retry. A 403 after the retry goes to the caller. Renewal is scheduled at two
 * thirds of the token's TTL as reported by lookup-self, login or renew-self. A token that renewal
 * cannot extend (not renewable, or renewals coming back short because it nears its max TTL) is
 * replaced instead at that time, as Vault's own LifetimeWatcher does: a new login in the background
 * while the current token keeps serving (AppRole, Kubernetes), or a re-read of the token file.
 *
 * Not done here: parsing of path-specific replies (keycache.c, usage.c).
 */
#include "agent/vault.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/fileid.h"
#include "common/log.h"
#include "common/secret.h"

/* Minimum seconds between two "vault unreachable" lines: an outage must not flood the log. */
#define VAULT_LOG_INTERVAL_S 10
/*
 * A 403 on a token set or checked less than this ago is a policy refusal of
 * that path, not an expired or revoked token: no new login (one per denied
 * request would be a login storm, each using up an AppRole secret_id use).
 * Past it a 403 asks lookup-self whether the token is still valid.
 */
#define VAULT_RELOGIN_MIN_AGE_S 10
/*
 * Retry delays of 1, 2, 4 ... seconds, at most this far apart: for a token
 * file's token whose lookup-self failed (Vault not up yet, sealed,
 * unreachable; only a lookup tells its TTL, and so when to renew it), and
 * for a login that failed (Vault refused it, or the credential files could
 * not be read): until that delay ends, requests fail at once without a new
 * login, unless a credential file changed meanwhile.
 */
#define VAULT_MAX_BACKOFF_S 30

enum vault_state { VAULT_NO_TOKEN, VAULT_LOGGING_IN, VAULT_READY };

struct vault_req {
    struct vault *v;
    char method[8];
    char *path;
    char *body; /* kept for a retry; wiped at free */
    size_t body_len;
    vault_cb cb;
    void *arg;
    struct upstream_xfer *xfer;
    struct buf resp;
    unsigned long token_gen;
    bool retried;
    bool no_token; /* login calls */
    bool too_big;
    enum upstream_tls tls;         /* its TLS handshake failed on configuration (on_tls_fail) */
    struct vault_list *list;       /* the queue it waits in, or NULL */
    struct vault_req *prev, *next; /* that queue's links */
    struct vault_req *sent_prev, *sent_next; /* v->sent, while its transfer runs */
};

/* A FIFO of requests: those waiting for a login, or a 403 waiting for the token check. */
struct vault_list {
    struct vault_req *head, *tail;
    size_t n;
};

struct vault {
    struct event_base *base;
    struct upstream *up;
    struct config *cfg;
    struct secret *token;
    unsigned long token_gen;
    /*
     * Monotonic second the token was last known valid: when it was set, or
     * when a lookup-self after a 403 answered 200 (that 403 was a policy
     * refusal). A 403 within VAULT_RELOGIN_MIN_AGE_S of it is not checked.
     */
    time_t token_checked;
    enum vault_state state;
    struct vault_list queue; /* requests waiting for a token (a login) */
    /*
     * 403s on an older token waiting for one lookup-self (v->check) to tell a
     * policy refusal from a revoked token; not sent, so not in v->sent.
     */
    struct vault_list checkq;
    struct vault_req *check; /* that lookup-self, in flight */
    unsigned long check_gen; /* token_gen when it was sent */
    struct vault_req *sent;  /* requests whose transfer runs, for vault_free */
    struct event *renew_timer;
    long lease_first;         /* TTL the current token came with (login, token file lookup) */
    time_t token_expires;     /* monotonic second the current token expires, 0 = unknown/never */
    bool replace_due;         /* the renew timer replaces the token instead of renewing it */
    bool bg_login;            /* the login in flight replaces a token that still works */
    bool warned_expiring;     /* said once that the token file was not refreshed */
    bool lookup_due;          /* the renew timer looks the token up again (a lookup failed) */
    unsigned lookup_failures; /* failed lookups of the current token in a row */
    struct vault_req *login;  /* the login, lookup or renewal in flight */
    unsigned long login_gen;  /* token_gen when that lookup or renewal was sent */
    struct stat token_st;     /* token_file identity when last read */
    unsigned login_failures;  /* failed logins in a row (refused, or files unreadable) */
    long long login_retry_ms; /* monotonic ms before which no new login is tried */
    /* What the credential files looked like when the last login failed: a change allows a new one.
     */
    struct file_id cred_ids[2];
    bool reachable;
    time_t last_unreach_log;
    char unreach_reason[64]; /* why the last call did not reach Vault, for vault_health */
    /*
     * A call made with the token failed in TLS on configuration (Vault's
     * certificate not trusted, the CA file unusable): not an outage, logged
     * as such; cleared by the next call that reaches Vault.
     */
    enum upstream_tls tls_fail;
    char tls_reason[80]; /* "tls: " and its reason, for vault_health */
    time_t last_tls_log;
    enum upstream_tls login_tls; /* the same for the last login's transfer (NONE if it did not) */
    bool token_refused; /* lookup-self answered 403 for the current token, no 200 call since */
    /* What the last failed login makes vault_health say once no usable token is held. */
    enum vault_health login_health;
    char login_reason[96];
    struct vault_stats stats;
};

static void vault_send(struct vault_req *r);
static void vault_login(struct vault *v);

static time_t vault_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

static long long vault_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The delay after the n-th failure in a row (n from 0): 1, 2, 4 ... VAULT_MAX_BACKOFF_S. */
static long vault_backoff_s(unsigned n)
{
    return n < 5 ? 1L << n : VAULT_MAX_BACKOFF_S;
}

/* The configured login method's name, for log lines. */
static const char *vault_method(const struct config *c)
{
    return c->vault.approle.role_id_file != NULL ? "approle"
           : c->vault.cert.cert_file != NULL     ? "cert"
                                                 : "kubernetes";
}

/* What a TLS configuration failure is, for log lines and /healthz (no path, no server text). */
static const char *const vault_tls_reasons[] = {
    [UPSTREAM_TLS_NONE] = "handshake failed",
    [UPSTREAM_TLS_UNTRUSTED] = "Vault's certificate not trusted",
    [UPSTREAM_TLS_CA_FILE] = "vault.ca_file unusable",
    [UPSTREAM_TLS_CLIENT_PAIR] = "client certificate or key unusable",
    [UPSTREAM_TLS_REFUSED] = "Vault refused the client certificate (TLS alert)",
};

static const char *vault_tls_reason(enum upstream_tls t)
{
    return (size_t)t < sizeof(vault_tls_reasons) / sizeof(vault_tls_reasons[0])
               ? vault_tls_reasons[t]
               : vault_tls_reasons[UPSTREAM_TLS_NONE];
}

/*
 * Records what the last login's failure makes /healthz say (VAULT_HEALTH_OK
 * clears it: a login that worked, or one that did not reach Vault and so
 * says nothing of the credentials).
 */
static void vault_login_health(struct vault *v, enum vault_health h, const char *reason)
{
    v->login_health = h;
    snprintf(v->login_reason, sizeof(v->login_reason), "%s", h != VAULT_HEALTH_OK ? reason : "");
}

/*
 * The files the configured auth method reads: token file, role_id +
 * secret_id, the JWT, or the client certificate + key.
 */
static void vault_cred_ids(const struct vault *v, struct file_id out[2])
{
    const struct config *c = v->cfg;
    const char *files[2] = {c->vault.token_file, NULL};
    if (c->vault.token_file == NULL && c->vault.approle.role_id_file != NULL) {
        files[0] = c->vault.approle.role_id_file;
        files[1] = c->vault.approle.secret_id_file;
    } else if (c->vault.token_file == NULL && c->vault.cert.cert_file != NULL) {
        files[0] = c->vault.cert.cert_file;
        files[1] = c->vault.cert.key_file;
    } else if (c->vault.token_file == NULL) {
        files[0] = c->vault.kubernetes.jwt_file;
    }
    for (size_t i = 0; i < 2; i++) {
        out[i] = file_id_of(files[i]);
    }
}

/*
 * A login failed: none again until the backoff ends. retry_in gets the delay
 * in seconds for the failure's log line (one line per step, not per request).
 * background: a replacement login failed while the current token serves; it
 * is tried again by the renew timer (every VAULT_LOG_INTERVAL_S), no backoff.
 */
static void vault_login_failed(struct vault *v, bool background, char *retry_in, size_t len)
{
    if (background) {
        snprintf(retry_in, len, "%d", VAULT_LOG_INTERVAL_S);
        return;
    }
    long delay = vault_backoff_s(v->login_failures);
    if (v->login_failures < 64) {
        v->login_failures++;
    }
    v->login_retry_ms = vault_now_ms() + delay * 1000;
    vault_cred_ids(v, v->cred_ids);
    snprintf(retry_in, len, "%ld", delay);
}

/* True while a failed login's backoff runs and no credential file has changed since. */
static bool vault_login_held(const struct vault *v)
{
    if (v->login_failures == 0 || vault_now_ms() >= v->login_retry_ms) {
        return false;
    }
    struct file_id now[2];
    vault_cred_ids(v, now);
    return file_id_eq(&now[0], &v->cred_ids[0]) && file_id_eq(&now[1], &v->cred_ids[1]);
}

static void vault_req_free(struct vault_req *r)
{
    if (r == NULL) {
        return;
    }
    buf_done(&r->resp);
    if (r->body != NULL) {
        OPENSSL_cleanse(r->body, r->body_len);
        free(r->body);
    }
    free(r->path);
    free(r);
}

static void vault_list_push(struct vault_list *l, struct vault_req *r)
{
    r->list = l;
    r->next = NULL;
    r->prev = l->tail;
    if (l->tail != NULL) {
        l->tail->next = r;
    } else {
        l->head = r;
    }
    l->tail = r;
    l->n++;
}

static void vault_list_remove(struct vault_req *r)
{
    struct vault_list *l = r->list;
    if (r->prev != NULL) {
        r->prev->next = r->next;
    } else {
        l->head = r->next;
    }
    if (r->next != NULL) {
        r->next->prev = r->prev;
    } else {
        l->tail = r->prev;
    }
    r->prev = r->next = NULL;
    r->list = NULL;
    l->n--;
}

/* Unlinks and returns the oldest request of l (the head has no prev), or NULL. */
static struct vault_req *vault_list_pop(struct vault_list *l)
{
    struct vault_req *r = l->head;
    if (r == NULL) {
        return NULL;
    }
    l->head = r->next;
    if (r->next != NULL) {
        r->next->prev = NULL;
    } else {
        l->tail = NULL;
    }
    r->next = NULL;
    r->list = NULL;
    l->n--;
    return r;
}

static void vault_mark_reachable(struct vault *v, bool ok, enum err e)
{
    if (ok) {
        if (!v->reachable && v->last_unreach_log != 0) {
            log_kv(LOGL_INFO, "vault reachable again", "address", v->cfg->vault.address, NULL);
        }
        v->reachable = true;
        v->tls_fail = UPSTREAM_TLS_NONE;
        return;
    }
    v->stats.errors++;
    snprintf(v->unreach_reason, sizeof(v->unreach_reason), "unreachable (%s)",
             e == ERR_UNAVAIL ? "connection failed or reset" : err_str(e));
    time_t now = vault_now();
    if (v->reachable || v->last_unreach_log == 0 ||
        now - v->last_unreach_log >= VAULT_LOG_INTERVAL_S) {
        log_kv(LOGL_ERROR, "vault unreachable", "address", v->cfg->vault.address, "error",
               err_name(e), "detail", err_str(e), NULL);
        v->last_unreach_log = now;
    }
    v->reachable = false;
}

/*
 * A call made with the token failed in its TLS handshake on configuration:
 * no outage ("vault unreachable" is not logged), and no retry can fix it.
 * Logged at error when it starts or changes, then at most once per
 * VAULT_LOG_INTERVAL_S, as an outage is.
 */
static void vault_tls_failed(struct vault *v, enum upstream_tls why)
{
    time_t now = vault_now();
    if (v->tls_fail != why || v->last_tls_log == 0 ||
        now - v->last_tls_log >= VAULT_LOG_INTERVAL_S) {
        log_kv(LOGL_ERROR, "vault tls handshake failed", "address", v->cfg->vault.address, "status",
               vault_tls_reason(why), NULL);
        v->last_tls_log = now;
    }
    v->tls_fail = why;
    snprintf(v->tls_reason, sizeof(v->tls_reason), "tls: %s", vault_tls_reason(why));
}

static void vault_sent_push(struct vault *v, struct vault_req *r)
{
    r->sent_prev = NULL;
    r->sent_next = v->sent;
    if (v->sent != NULL) {
        v->sent->sent_prev = r;
    }
    v->sent = r;
}

static void vault_sent_remove(struct vault *v, struct vault_req *r)
{
    if (r->sent_prev != NULL) {
        r->sent_prev->sent_next = r->sent_next;
    } else {
        v->sent = r->sent_next;
    }
    if (r->sent_next != NULL) {
        r->sent_next->sent_prev = r->sent_prev;
    }
    r->sent_prev = r->sent_next = NULL;
}

/* Fails every queued request (login failed), also any a callback queues meanwhile. */
static void vault_fail_queue(struct vault *v, enum err e)
{
    struct vault_req *r;
    while ((r = vault_list_pop(&v->queue)) != NULL) {
        vault_cb cb = r->cb;
        void *arg = r->arg;
        vault_req_free(r);
        cb(arg, e, 0, NULL);
    }
}

static void vault_flush_queue(struct vault *v)
{
    struct vault_req *r;
    while (v->state == VAULT_READY && (r = vault_list_pop(&v->queue)) != NULL) {
        vault_send(r);
    }
}

/*
 * Reads a credential file into the secure heap, trimming trailing whitespace.
 * check_mode: refuse group/world-accessible files (house rule for credential
 * files); a Kubernetes service-account token is mounted 0644 by the kubelet
 * and is checked by Vault against the TokenReview API instead.
 */
static enum err vault_read_file(const char *path, bool check_mode, struct secret **ret,
                                struct stat *ret_st)
{
    enum err e = ERR_IO;
    /*
     * Non-blocking: a FIFO put in the file's place (the start-up checks refuse
     * one, but the file is replaced at run time) would otherwise wait for a
     * writer, and the whole event loop with it. Regular files read as ever.
     */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        return ERR_IO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        goto out_close;
    }
    if (check_mode && !CONFIG_CRED_MODE_OK(st.st_mode)) {
        e = ERR_DENIED;
        goto out_close;
    }
    char *tmp = malloc(VAULT_MAX_CRED_FILE + 1);
    if (tmp == NULL) {
        e = ERR_NOMEM;
        goto out_close;
    }
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, tmp + len, VAULT_MAX_CRED_FILE + 1 - len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            goto out_wipe;
        }
        if (n == 0) {
            break;
        }
        len += (size_t)n;
        if (len > VAULT_MAX_CRED_FILE) {
            e = ERR_TOOBIG;
            goto out_wipe;
        }
    }
    while (len > 0 && (tmp[len - 1] == '\n' || tmp[len - 1] == '\r' || tmp[len - 1] == ' ' ||
                       tmp[len - 1] == '\t')) {
        len--;
    }
    if (len == 0) {
        e = ERR_INVAL;
        goto out_wipe;
    }
    struct secret *s = secret_from(tmp, len);
    if (s == NULL) {
        e = ERR_NOMEM;
        goto out_wipe;
    }
    *ret = s;
    if (ret_st != NULL) {
        *ret_st = st;
    }
    e = ERR_OK;
out_wipe:
    OPENSSL_cleanse(tmp, VAULT_MAX_CRED_FILE + 1);
    free(tmp);
out_close:
    close(fd);
    return e;
}

static void vault_set_token(struct vault *v, struct secret *tok)
{
    secret_free(&v->token);
    v->token = tok;
    v->token_gen++;
    v->token_checked = vault_now();
    v->state = tok != NULL ? VAULT_READY : VAULT_NO_TOKEN;
    v->lease_first = 0;
    v->token_expires = 0;
    v->replace_due = false;
    v->warned_expiring = false;
    v->lookup_due = false;
    v->lookup_failures = 0;
}

/*
 * Arms the renew timer at 2/3 of the TTL the current token has left. first:
 * ttl is the token's whole lease (login, token file lookup); later TTLs come
 * from renewals. Renewing is pointless for a token that is not renewable, or
 * whose renewal came back with less than a third of its first lease (Vault
 * caps renewals at the token's max TTL): the timer then replaces the token.
 */
static void vault_schedule_renew(struct vault *v, long ttl, bool renewable, bool first)
{
    evtimer_del(v->renew_timer);
    if (first) {
        v->lease_first = ttl;
    }
    if (ttl <= 0) {
        v->token_expires = 0;
        return; /* root-like token without expiry */
    }
    v->token_expires = vault_now() + ttl;
    v->replace_due = !renewable || ttl * 3 < v->lease_first;
    long at = ttl * 2 / 3;
    if (at < 1) {
        at = 1;
    }
    struct timeval tv = {at, 0};
    evtimer_add(v->renew_timer, &tv);
}

/* Seconds the current token has left (0 once expired), or -1 when it does not expire. */
static long vault_token_left(const struct vault *v)
{
    if (v->token_expires == 0) {
        return -1;
    }
    time_t now = vault_now();
    return now >= v->token_expires ? 0 : (long)(v->token_expires - now);
}

/* Checks again in a while, for as long as the current token lasts. */
static void vault_replace_later(struct vault *v)
{
    long left = vault_token_left(v);
    if (left == 0) {
        return; /* expired: the next request's 403 logs in */
    }
    struct timeval tv = {left > 0 && left < VAULT_LOG_INTERVAL_S ? left : VAULT_LOG_INTERVAL_S, 0};
    evtimer_add(v->renew_timer, &tv);
}

void vault_parse_lease(const char *body, size_t len, struct secret **ret_token, long *ret_ttl,
                       bool *ret_renewable)
{
    *ret_ttl = 0;
    *ret_renewable = false;
    if (body == NULL || len == 0) {
        return;
    }
    json_t *root = json_loadb(body, len, 0, NULL);
    if (root == NULL) {
        return;
    }
    json_t *auth = json_object_get(root, "auth");
    if (json_is_object(auth)) {
        json_t *tok = json_object_get(auth, "client_token");
        if (ret_token != NULL && json_is_string(tok) && json_string_length(tok) > 0) {
            *ret_token = secret_from(json_string_value(tok), json_string_length(tok));
        }
        *ret_ttl = (long)json_integer_value(json_object_get(auth, "lease_duration"));
        *ret_renewable = json_is_true(json_object_get(auth, "renewable"));
    } else {
        json_t *data = json_object_get(root, "data");
        *ret_ttl = (long)json_integer_value(json_object_get(data, "ttl"));
        *ret_renewable = json_is_true(json_object_get(data, "renewable"));
    }
    /* A peer's number: bounded before the renewal time is computed from it (ttl * 2 / 3). */
    if (*ret_ttl < 0) {
        *ret_ttl = 0;
    } else if (*ret_ttl > VAULT_MAX_LEASE_S) {
        *ret_ttl = VAULT_MAX_LEASE_S;
    }
    json_decref(root);
}

static void vault_parse_lease_buf(const struct buf *body, struct secret **ret_token, long *ret_ttl,
                                  bool *ret_renewable)
{
    vault_parse_lease(body != NULL ? body->data : NULL, body != NULL ? body->len : 0, ret_token,
                      ret_ttl, ret_renewable);
}

static enum err vault_internal(struct vault *v, const char *method, const char *path, char *body,
                               bool no_token, vault_cb cb, struct vault_req **ret);

/*
 * After a failed lookup: the renew timer looks the token up again, 1, 2, 4 ...
 * VAULT_LOOKUP_MAX_BACKOFF_S seconds later. The token keeps serving meanwhile.
 */
static void vault_lookup_retry(struct vault *v, const char *why)
{
    if (v->lookup_failures == 0) {
        log_kv(LOGL_WARN, "vault token lookup failed; retrying (renewal waits for it)", "error",
               why, NULL);
    }
    long delay = vault_backoff_s(v->lookup_failures);
    v->lookup_failures++;
    v->lookup_due = true;
    struct timeval tv = {delay, 0};
    evtimer_add(v->renew_timer, &tv);
}

static void vault_lookup_done(void *arg, enum err e, long status, struct buf *body)
{
    struct vault *v = arg;
    v->login = NULL;
    if (v->login_gen != v->token_gen) {
        return; /* about a token that has been replaced since */
    }
    if (e != ERR_OK || status != 200) {
        char st[32];
        snprintf(st, sizeof(st), "http status %ld", status);
        if (e == ERR_OK && status == 403) {
            v->token_refused = true; /* revoked, expired, or of another namespace */
        }
        vault_lookup_retry(v, e != ERR_OK ? err_name(e) : st);
        return;
    }
    v->lookup_due = false;
    v->lookup_failures = 0;
    long ttl;
    bool renewable;
    vault_parse_lease_buf(body, NULL, &ttl, &renewable);
    vault_schedule_renew(v, ttl, renewable, true);
}

/* Asks Vault the current token's TTL (lookup-self); the answer schedules its renewal. */
static void vault_lookup_start(struct vault *v)
{
    v->login_gen = v->token_gen;
    if (vault_internal(v, "GET", "auth/token/lookup-self", NULL, false, vault_lookup_done,
                       &v->login) != ERR_OK) {
        v->login = NULL;
        vault_lookup_retry(v, "request not sent");
    }
}

static void vault_token_file_load(struct vault *v)
{
    struct secret *tok = NULL;
    struct stat st;
    enum err e = vault_read_file(v->cfg->vault.token_file, true, &tok, &st);
    if (e != ERR_OK) {
        char retry_in[24];
        vault_login_failed(v, false, retry_in, sizeof(retry_in));
        log_kv(LOGL_ERROR, "vault token file unusable", "file", v->cfg->vault.token_file, "error",
               err_name(e), "detail", e == ERR_DENIED ? CONFIG_CRED_MODE_HINT : err_str(e),
               "retry_in_s", retry_in, NULL);
        vault_login_health(v, VAULT_HEALTH_LOGIN_FAILED, "token file unusable");
        vault_set_token(v, NULL);
        vault_fail_queue(v, ERR_AUTH);
        return;
    }
    v->token_st = st;
    vault_set_token(v, tok);
    v->login_failures = 0;
    /* token_refused stays until a call with this token is answered 200 (the lookup just below). */
    vault_login_health(v, VAULT_HEALTH_OK, NULL);
    v->stats.logins++;
    vault_flush_queue(v);
    /* A lookup or renewal in flight was about the previous token. */
    vault_request_cancel(v->login);
    v->login = NULL;
    vault_lookup_start(v);
}

/* The token file was rewritten (Vault Agent's sink renewed or replaced it). */
static bool vault_token_file_changed(struct vault *v)
{
    struct stat st;
    if (stat(v->cfg->vault.token_file, &st) != 0) {
        return false;
    }
    return st.st_ino != v->token_st.st_ino || st.st_size != v->token_st.st_size ||
           st.st_mtim.tv_sec != v->token_st.st_mtim.tv_sec ||
           st.st_mtim.tv_nsec != v->token_st.st_mtim.tv_nsec;
}

static void vault_login_done(void *arg, enum err e, long status, struct buf *body)
{
    struct vault *v = arg;
    v->login = NULL;
    bool bg = v->bg_login;
    v->bg_login = false;
    struct secret *tok = NULL;
    long ttl = 0;
    bool renewable = false;
    if (e == ERR_OK && status == 200) {
        vault_parse_lease_buf(body, &tok, &ttl, &renewable);
    }
    if (tok == NULL) {
        bool keep = bg && v->state == VAULT_READY;
        /*
         * Vault sealed, a standby without an active node, rate limited: not a
         * refusal of these credentials. Held back one step only (1 s), never
         * the growing backoff, so calls work again soon after Vault does.
         */
        bool trouble = e == ERR_OK && (status >= 500 || status == 429);
        if (trouble) {
            v->login_failures = 0;
        }
        /*
         * A login whose TLS handshake failed on configuration (upstream.c
         * tells which): Vault's certificate not trusted by vault.ca_file, the
         * CA file unusable, a cert login's key that does not match its
         * certificate or a file that is not PEM, a Vault that verifies client
         * certificates in the handshake refusing this one with a TLS alert.
         * Retrying at once cannot help: a refusal like a 400, with the same
         * backoff, ended early by a change to a credential file or a reload.
         * A connection reset or closed during the handshake (Vault
         * restarting) is not one: upstream.c makes it ERR_UNAVAIL, Vault
         * unreachable, tried again by the next batch of waiting calls.
         */
        if (e == ERR_CRYPTO && v->login_tls != UPSTREAM_TLS_NONE) {
            char st[128], reason[96], retry_in[24];
            snprintf(st, sizeof(st), "tls handshake failed (%s)", vault_tls_reason(v->login_tls));
            snprintf(reason, sizeof(reason), "tls: %s", vault_tls_reason(v->login_tls));
            vault_login_failed(v, keep, retry_in, sizeof(retry_in));
            log_kv(LOGL_ERROR, "vault login failed", "address", v->cfg->vault.address, "method",
                   vault_method(v->cfg), "status", st, "retry_in_s", retry_in, NULL);
            vault_login_health(v, VAULT_HEALTH_LOGIN_FAILED, reason);
            e = ERR_OK;
        } else if (e == ERR_OK) {
            /* Refused (not unreachable): no new login before the backoff ends. */
            char st[32], retry_in[24];
            if (status == 200) {
                snprintf(st, sizeof(st), "200 without client_token");
            } else {
                snprintf(st, sizeof(st), "%ld", status);
            }
            vault_login_failed(v, keep, retry_in, sizeof(retry_in));
            log_kv(LOGL_ERROR, "vault login failed", "address", v->cfg->vault.address, "method",
                   vault_method(v->cfg), "status", st, "retry_in_s", retry_in, NULL);
            char reason[64];
            snprintf(reason, sizeof(reason), "%s (HTTP %s)",
                     trouble ? "login not answered" : "login refused", st);
            vault_login_health(v, trouble ? VAULT_HEALTH_UNAVAILABLE : VAULT_HEALTH_LOGIN_FAILED,
                               reason);
        } else {
            /* Vault not reached: nothing learnt about the credentials. */
            vault_login_health(v, VAULT_HEALTH_OK, NULL);
        }
        if (keep) {
            /* The current token still works: keep it and try again in a while. */
            vault_replace_later(v);
            return;
        }
        vault_set_token(v, NULL);
        vault_fail_queue(v, e != ERR_OK ? e : (trouble ? ERR_UNAVAIL : ERR_AUTH));
        return;
    }
    v->stats.logins++;
    v->login_failures = 0;
    v->token_refused = false;
    vault_login_health(v, VAULT_HEALTH_OK, NULL);
    vault_set_token(v, tok);
    vault_schedule_renew(v, ttl, renewable, true);
    log_kv(LOGL_INFO, "vault login ok", "address", v->cfg->vault.address, NULL);
    vault_flush_queue(v);
}

/*
 * Logs in. background: the current token still works and keeps serving
 * requests until the new one arrives (a failed login keeps it).
 */
static void vault_login_start(struct vault *v, bool background)
{
    if (v->state == VAULT_LOGGING_IN) {
        return;
    }
    /*
     * A lookup, renewal or background login still in flight is about the
     * token being replaced: its answer must not drop the new one or start a
     * second login.
     */
    vault_request_cancel(v->login);
    v->login = NULL;
    v->bg_login = false;
    const struct config *c = v->cfg;
    if (c->vault.token_file != NULL) {
        vault_token_file_load(v);
        return;
    }
    struct secret *a = NULL, *b = NULL;
    char path[256];
    json_t *req = NULL;
    enum err e;
    const char *file;
    if (c->vault.approle.role_id_file != NULL) {
        file = c->vault.approle.role_id_file;
        e = vault_read_file(file, true, &a, NULL);
        if (e == ERR_OK) {
            file = c->vault.approle.secret_id_file;
            e = vault_read_file(file, true, &b, NULL);
        }
        if (e == ERR_OK) {
            req = json_pack("{s:s%,s:s%}", "role_id", (const char *)a->data, a->len, "secret_id",
                            (const char *)b->data, b->len);
        }
        snprintf(path, sizeof(path), "auth/%s/login", c->vault.approle.mount);
    } else if (c->vault.cert.cert_file != NULL) {
        /*
         * curl reads both files itself at the login's handshake (a new
         * connection each time, upstream.h): these reads check them first
         * (present, not empty, the key not group/world readable) so a bad
         * file is a clear log line; the copies are wiped at once.
         */
        file = c->vault.cert.cert_file;
        e = vault_read_file(file, false, &a, NULL);
        if (e == ERR_OK) {
            file = c->vault.cert.key_file;
            e = vault_read_file(file, true, &b, NULL);
        }
        if (e == ERR_OK) {
            req = c->vault.cert.name != NULL ? json_pack("{s:s}", "name", c->vault.cert.name)
                                             : json_object();
        }
        snprintf(path, sizeof(path), "auth/%s/login", c->vault.cert.mount);
    } else {
        file = c->vault.kubernetes.jwt_file;
        e = vault_read_file(file, false, &a, NULL);
        if (e == ERR_OK) {
            req = json_pack("{s:s%,s:s}", "jwt", (const char *)a->data, a->len, "role",
                            c->vault.kubernetes.role);
        }
        snprintf(path, sizeof(path), "auth/%s/login", c->vault.kubernetes.mount);
    }
    secret_free(&a);
    secret_free(&b);
    if (e != ERR_OK || req == NULL) {
        char retry_in[24];
        vault_login_failed(v, background, retry_in, sizeof(retry_in));
        log_kv(LOGL_ERROR, "vault login credentials unreadable", "file", file, "error",
               err_name(e != ERR_OK ? e : ERR_NOMEM), "detail",
               e == ERR_DENIED ? CONFIG_CRED_MODE_HINT : err_str(e != ERR_OK ? e : ERR_NOMEM),
               "retry_in_s", retry_in, NULL);
        vault_login_health(v, VAULT_HEALTH_LOGIN_FAILED, "login credentials unreadable");
        json_decref(req);
        if (background) {
            vault_replace_later(v); /* the current token still serves; the file may be back */
        } else {
            vault_fail_queue(v, ERR_AUTH);
        }
        return;
    }
    /* The dump holds the secret_id/JWT: the upstream transfer wipes it when done. */
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (body == NULL) {
        if (background) {
            vault_replace_later(v);
        } else {
            vault_fail_queue(v, ERR_NOMEM);
        }
        return;
    }
    if (background) {
        v->bg_login = true;
        if (vault_internal(v, "POST", path, body, true, vault_login_done, &v->login) != ERR_OK) {
            v->bg_login = false;
            vault_replace_later(v);
        }
        return;
    }
    v->state = VAULT_LOGGING_IN;
    e = vault_internal(v, "POST", path, body, true, vault_login_done, &v->login);
    if (e != ERR_OK) {
        v->state = VAULT_NO_TOKEN;
        vault_fail_queue(v, e);
    }
}

static void vault_login(struct vault *v)
{
    if (vault_login_held(v)) {
        /* A login failed moments ago and nothing changed: fail fast, no login, no log line. */
        vault_fail_queue(v, ERR_AUTH);
        return;
    }
    vault_login_start(v, false);
}

/*
 * The renew timer, for a token renewal cannot extend: a new login while the
 * current token serves, or the token file again (Vault Agent rewrites it).
 */
static void vault_replace_token(struct vault *v)
{
    char left[24];
    snprintf(left, sizeof(left), "%ld", vault_token_left(v));
    if (v->cfg->vault.token_file == NULL) {
        log_kv(LOGL_INFO, "vault token cannot be renewed further; logging in again", "expires_in_s",
               left, NULL);
        vault_login_start(v, true);
        return;
    }
    if (vault_token_file_changed(v)) {
        vault_request_cancel(v->login);
        v->login = NULL;
        vault_token_file_load(v);
        return;
    }
    if (!v->warned_expiring) {
        log_kv(LOGL_WARN, "vault token cannot be renewed and the token file has not changed",
               "file", v->cfg->vault.token_file, "expires_in_s", left, NULL);
        v->warned_expiring = true;
    }
    vault_replace_later(v);
}

static void vault_renew_done(void *arg, enum err e, long status, struct buf *body)
{
    struct vault *v = arg;
    v->login = NULL;
    if (v->login_gen != v->token_gen) {
        return; /* the token changed meanwhile (token file re-read): this answer is stale */
    }
    if (e != ERR_OK || status == 429 || status >= 500) {
        /*
         * Unreachable, sealed, a standby without an active node, rate
         * limited: not a refusal, the token may still be valid. Tried again
         * while it lasts (Vault's LifetimeWatcher ignores renewal errors too);
         * a new login now would use up a secret_id use for nothing.
         */
        if (e == ERR_OK) {
            char st[24];
            snprintf(st, sizeof(st), "%ld", status);
            log_kv(LOGL_WARN, "vault token renewal failed; retrying", "status", st, NULL);
        }
        vault_replace_later(v);
        return;
    }
    if (status != 200) {
        log_kv(LOGL_WARN, "vault token renewal refused; logging in again", NULL);
        vault_set_token(v, NULL);
        vault_login(v);
        return;
    }
    long ttl;
    bool renewable;
    vault_parse_lease_buf(body, NULL, &ttl, &renewable);
    v->stats.renewals++;
    vault_schedule_renew(v, ttl, renewable, false);
}

static void vault_renew_cb(evutil_socket_t fd, short what, void *arg)
{
    struct vault *v = arg;
    if (v->state != VAULT_READY || v->login != NULL) {
        return;
    }
    if (v->lookup_due) {
        vault_lookup_start(v);
        return;
    }
    if (v->replace_due) {
        vault_replace_token(v);
        return;
    }
    char *body = strdup("{}");
    if (body == NULL) {
        return;
    }
    v->login_gen = v->token_gen;
    (void)vault_internal(v, "POST", "auth/token/renew-self", body, false, vault_renew_done,
                         &v->login);
}

static void vault_on_tls_fail(void *arg, enum upstream_tls why)
{
    struct vault_req *r = arg;
    r->tls = why;
}

static enum upstream_data_rc vault_on_data(void *arg, const char *data, size_t len)
{
    struct vault_req *r = arg;
    if (buf_append(&r->resp, data, len) != ERR_OK) {
        r->too_big = true;
        return UPSTREAM_ABORT;
    }
    return UPSTREAM_CONTINUE;
}

/* Hands r's answer to its caller and frees r. */
static void vault_deliver(struct vault_req *r, enum err e, long status)
{
    vault_cb cb = r->cb;
    void *cb_arg = r->arg;
    struct buf resp = r->resp;
    buf_init(&r->resp, 0);
    vault_req_free(r);
    cb(cb_arg, e, status, &resp);
    buf_done(&resp);
}

/*
 * r got a 403 with a token that is gone or no longer valid: it goes out once
 * more with the current token, after a new login (or a re-read of the token
 * file) if the one it used is still held (then dropped). The waiting queue
 * full: the 403 goes to the caller (its body dropped with the retry).
 */
static void vault_retry(struct vault *v, struct vault_req *r)
{
    r->retried = true;
    buf_reset(&r->resp);
    if (r->token_gen == v->token_gen) {
        vault_set_token(v, NULL);
    }
    if (v->queue.n >= VAULT_MAX_QUEUED) {
        vault_deliver(r, ERR_OK, 403);
        return;
    }
    vault_list_push(&v->queue, r);
    if (v->state == VAULT_NO_TOKEN) {
        vault_login(v);
    } else if (v->state == VAULT_READY) {
        vault_flush_queue(v);
    }
}

/*
 * The lookup-self asked after a 403 answered: 200, the token is valid and the
 * 403s were the policy's (delivered; no new check for VAULT_RELOGIN_MIN_AGE_S);
 * 403, the token was revoked or has expired (dropped, a new login, each 403
 * retried once). Any other outcome (Vault unreachable, sealed, 5xx, 429)
 * says nothing about the token: the 403s go to their callers and the token
 * is kept, since a login then could not be told from a useless one (each
 * AppRole login uses up a secret_id use) and a token really revoked gets its
 * 403 checked again by the next call.
 */
static void vault_check_done(void *arg, enum err e, long status, struct buf *body)
{
    (void)body;
    struct vault *v = arg;
    v->check = NULL;
    struct vault_req *r;
    if (v->check_gen != v->token_gen) {
        /* The token changed meanwhile: each 403 goes out again with the new one. */
        while ((r = vault_list_pop(&v->checkq)) != NULL) {
            vault_retry(v, r);
        }
        return;
    }
    if (e == ERR_OK && status == 403) {
        log_kv(LOGL_WARN, "vault token no longer valid (lookup-self refused); logging in again",
               NULL);
        v->token_refused = true; /* until a call is answered 200, or a login gives a new token */
        while ((r = vault_list_pop(&v->checkq)) != NULL) {
            vault_retry(v, r);
        }
        return;
    }
    if (e == ERR_OK && status == 200) {
        v->token_checked = vault_now();
        if (v->checkq.head != NULL) {
            log_kv(LOGL_WARN, "vault refused a path the agent's policy does not cover; token valid",
                   "path", v->checkq.head->path, NULL);
        }
    } else {
        char st[24];
        snprintf(st, sizeof(st), "%ld", status);
        log_kv(LOGL_WARN, "vault token check after a 403 failed; token kept", "error",
               e != ERR_OK ? err_name(e) : "http status", "status", e == ERR_OK ? st : NULL, NULL);
    }
    while ((r = vault_list_pop(&v->checkq)) != NULL) {
        vault_deliver(r, ERR_OK, 403);
    }
}

/*
 * A 403 on a token older than VAULT_RELOGIN_MIN_AGE_S: r waits for one
 * lookup-self shared by every such 403 (a burst of refused calls asks once).
 * False when the wait is full: the 403 is then the caller's.
 */
static bool vault_check_wait(struct vault *v, struct vault_req *r)
{
    if (v->checkq.n >= VAULT_MAX_QUEUED) {
        return false;
    }
    vault_list_push(&v->checkq, r);
    if (v->check == NULL) {
        v->check_gen = v->token_gen;
        /* A request that could not be sent calls vault_check_done at once: r is answered there. */
        if (vault_internal(v, "GET", "auth/token/lookup-self", NULL, false, vault_check_done,
                           &v->check) != ERR_OK) {
            /* Out of memory before a request was made: no callback came. */
            struct vault_req *w;
            while ((w = vault_list_pop(&v->checkq)) != NULL) {
                vault_deliver(w, ERR_OK, 403);
            }
        }
    }
    return true;
}

static void vault_on_done(void *arg, enum err e, long status)
{
    struct vault_req *r = arg;
    struct vault *v = r->v;
    r->xfer = NULL;
    vault_sent_remove(v, r);
    if (r->too_big) {
        e = ERR_TOOBIG;
    }
    if (r->no_token) {
        v->login_tls = r->tls; /* read by vault_login_done, just below */
    }
    if (e == ERR_CRYPTO && r->tls != UPSTREAM_TLS_NONE) {
        /*
         * A TLS handshake that failed on configuration (either side's
         * certificate, the CA file, a refusal by TLS alert): no outage, and
         * not logged as one. vault_login_done logs a failed login (and its
         * backoff); any other call is logged here.
         */
        v->stats.errors++;
        if (!r->no_token) {
            vault_tls_failed(v, r->tls);
        }
    } else {
        vault_mark_reachable(v, e == ERR_OK || e == ERR_TOOBIG, e);
    }
    if (e == ERR_OK && status == 200 && !r->no_token && r->token_gen == v->token_gen) {
        v->token_refused = false; /* Vault took the current token */
    }
    if (e == ERR_OK && status == 403 && !r->no_token && !r->retried) {
        if (r->token_gen != v->token_gen || vault_token_left(v) == 0) {
            /* Sent with a token since replaced, or the token's TTL has run out: retry once. */
            vault_retry(v, r);
            return;
        }
        /*
         * The current token, still within its TTL: a policy refusal of this
         * path, or a token revoked. Younger than VAULT_RELOGIN_MIN_AGE_S since
         * set or checked, it is taken as a refusal; else lookup-self tells.
         */
        if (vault_now() - v->token_checked >= VAULT_RELOGIN_MIN_AGE_S && vault_check_wait(v, r)) {
            return;
        }
    }
    vault_deliver(r, e, status);
}

static void vault_send(struct vault_req *r)
{
    struct vault *v = r->v;
    const struct config *c = v->cfg;
    enum err e = ERR_NOMEM;
    char url[UPSTREAM_MAX_URL + 1];
    const char *addr = c->vault.address;
    struct upstream_opts o = {
        .connect_timeout_ms = c->vault.timeout_ms,
        .first_byte_timeout_ms = c->vault.timeout_ms,
        .idle_timeout_ms = c->vault.timeout_ms,
        .total_timeout_ms = c->vault.timeout_ms,
        .allow_http = strncmp(addr, "https://", 8) != 0,
        .ca_file = c->vault.ca_file,
        .unix_socket = NULL,
        .sensitive = true,
        .classify_tls = true,
        /*
         * Only logins present the client certificate (cert auth): Vault reads
         * it there alone, and other calls keep reusing their connections.
         */
        .client_cert = r->no_token ? c->vault.cert.cert_file : NULL,
        .client_key = r->no_token ? c->vault.cert.key_file : NULL,
    };
    int n;
    if (strncmp(addr, "unix:", 5) == 0) {
        o.unix_socket = addr + 5;
        n = snprintf(url, sizeof(url), "http://localhost/v1/%s", r->path);
    } else {
        size_t al = strlen(addr);
        while (al > 0 && addr[al - 1] == '/') {
            al--;
        }
        n = snprintf(url, sizeof(url), "%.*s/v1/%s", (int)al, addr, r->path);
    }
    if (n < 0 || (size_t)n >= sizeof(url)) {
        e = ERR_TOOBIG;
        goto fail;
    }
    struct curl_slist *h = NULL;
    if (!r->no_token) {
        if (v->token == NULL || upstream_header_secret(&h, "X-Vault-Token: ", v->token) != ERR_OK) {
            e = ERR_AUTH;
            goto fail;
        }
        r->token_gen = v->token_gen;
    }
    if (upstream_header_add(&h, "Accept: application/json") != ERR_OK) {
        upstream_headers_free(h);
        goto fail;
    }
    if (c->vault.ns != NULL) {
        /* Every request, logins included: a namespace's mounts, auth methods and tokens. */
        char nsh[160];
        int hn = snprintf(nsh, sizeof(nsh), "X-Vault-Namespace: %s", c->vault.ns);
        if (hn < 0 || (size_t)hn >= sizeof(nsh) || upstream_header_add(&h, nsh) != ERR_OK) {
            upstream_headers_free(h);
            goto fail;
        }
    }
    char *body = NULL;
    if (r->body != NULL) {
        body = malloc(r->body_len + 1);
        if (body == NULL) {
            upstream_headers_free(h);
            goto fail;
        }
        memcpy(body, r->body, r->body_len + 1);
        if (upstream_header_add(&h, "Content-Type: application/json") != ERR_OK) {
            upstream_headers_free(h);
            OPENSSL_cleanse(body, r->body_len); /* a login body: secret_id or JWT */
            free(body);
            goto fail;
        }
    }
    static const struct upstream_cbs cbs = {NULL, vault_on_data, vault_on_done, vault_on_tls_fail};
    buf_done(&r->resp);
    buf_init(&r->resp, VAULT_MAX_RESPONSE);
    r->too_big = false;
    r->tls = UPSTREAM_TLS_NONE;
    v->stats.requests++;
    e = upstream_xfer_start(v->up, r->method, url, body, r->body_len, h, &o, &cbs, r, &r->xfer);
    if (e != ERR_OK) {
        goto fail;
    }
    vault_sent_push(v, r);
    return;
fail:;
    vault_cb cb = r->cb;
    void *arg = r->arg;
    vault_req_free(r);
    cb(arg, e, 0, NULL);
}

static struct vault_req *vault_req_new(struct vault *v, const char *method, const char *path,
                                       char *body, vault_cb cb, void *arg)
{
    struct vault_req *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        goto fail;
    }
    r->v = v;
    snprintf(r->method, sizeof(r->method), "%s", method);
    r->path = strdup(path);
    if (r->path == NULL) {
        free(r);
        goto fail;
    }
    r->body = body;
    r->body_len = body != NULL ? strlen(body) : 0;
    r->cb = cb;
    r->arg = arg;
    buf_init(&r->resp, VAULT_MAX_RESPONSE);
    return r;
fail:
    if (body != NULL) {
        OPENSSL_cleanse(body, strlen(body));
        free(body);
    }
    return NULL;
}

static enum err vault_internal(struct vault *v, const char *method, const char *path, char *body,
                               bool no_token, vault_cb cb, struct vault_req **ret)
{
    struct vault_req *r = vault_req_new(v, method, path, body, cb, v);
    if (r == NULL) {
        return ERR_NOMEM;
    }
    r->no_token = no_token;
    r->retried = true; /* internal calls handle their own 403 */
    *ret = r;
    vault_send(r);
    return ERR_OK;
}

enum err vault_request(struct vault *v, const char *method, const char *path, char *body,
                       vault_cb cb, void *arg, struct vault_req **ret_req)
{
    if (v->queue.n >= VAULT_MAX_QUEUED) {
        if (body != NULL) {
            OPENSSL_cleanse(body, strlen(body));
            free(body);
        }
        return ERR_BUSY;
    }
    struct vault_req *r = vault_req_new(v, method, path, body, cb, arg);
    if (r == NULL) {
        return ERR_NOMEM;
    }
    *ret_req = r;
    if (v->cfg->vault.token_file != NULL && v->state == VAULT_READY &&
        vault_token_file_changed(v)) {
        vault_set_token(v, NULL);
    }
    if (v->state == VAULT_READY) {
        vault_send(r);
        return ERR_OK;
    }
    vault_list_push(&v->queue, r);
    if (v->state == VAULT_NO_TOKEN) {
        vault_login(v);
    }
    return ERR_OK;
}

void vault_request_cancel(struct vault_req *r)
{
    if (r == NULL) {
        return;
    }
    if (r->list != NULL) {
        vault_list_remove(r);
    }
    if (r->xfer != NULL) {
        vault_sent_remove(r->v, r);
        upstream_xfer_cancel(r->xfer);
        r->xfer = NULL;
    }
    vault_req_free(r);
}

struct vault *vault_new(struct event_base *base, struct upstream *up, struct config *cfg)
{
    struct vault *v = calloc(1, sizeof(*v));
    if (v == NULL) {
        return NULL;
    }
    v->base = base;
    v->up = up;
    v->cfg = config_ref(cfg);
    v->reachable = true;
    v->renew_timer = evtimer_new(base, vault_renew_cb, v);
    if (v->renew_timer == NULL) {
        vault_free(v);
        return NULL;
    }
    return v;
}

void vault_start(struct vault *v)
{
    if (v->state == VAULT_NO_TOKEN) {
        vault_login(v);
    }
}

/* Two optional config strings differ (NULL is "not set"). */
static bool vault_str_differ(const char *a, const char *b)
{
    return (a == NULL) != (b == NULL) || (a != NULL && strcmp(a, b) != 0);
}

/*
 * Whether a reload changed which Vault the agent talks to or who it is
 * there: the address, the namespace, the auth method, or any setting of it
 * (a token file, AppRole's files and mount, Kubernetes' role, JWT file and
 * mount, the certificate, key, role name and mount of cert auth). The token
 * held was issued to the old identity (its policies, its role's TTLs): it is
 * not the one the operator configured any more.
 */
static bool vault_auth_changed(const struct config *o, const struct config *n)
{
    const char *before[] = {
        o->vault.address,
        o->vault.ns,
        o->vault.token_file,
        o->vault.approle.role_id_file,
        o->vault.approle.secret_id_file,
        o->vault.approle.mount,
        o->vault.kubernetes.role,
        o->vault.kubernetes.jwt_file,
        o->vault.kubernetes.mount,
        o->vault.cert.cert_file,
        o->vault.cert.key_file,
        o->vault.cert.name,
        o->vault.cert.mount,
    };
    const char *after[] = {
        n->vault.address,
        n->vault.ns,
        n->vault.token_file,
        n->vault.approle.role_id_file,
        n->vault.approle.secret_id_file,
        n->vault.approle.mount,
        n->vault.kubernetes.role,
        n->vault.kubernetes.jwt_file,
        n->vault.kubernetes.mount,
        n->vault.cert.cert_file,
        n->vault.cert.key_file,
        n->vault.cert.name,
        n->vault.cert.mount,
    };
    for (size_t i = 0; i < sizeof(before) / sizeof(before[0]); i++) {
        if (vault_str_differ(before[i], after[i])) {
            return true;
        }
    }
    return false;
}

void vault_set_config(struct vault *v, struct config *cfg)
{
    struct config *old = v->cfg;
    v->cfg = config_ref(cfg);
    bool auth_changed = vault_auth_changed(old, cfg);
    config_unref(&old);
    v->login_failures = 0; /* a reload may have fixed the credentials: the next request logs in */
    if (!auth_changed) {
        /*
         * No token held (the last login failed, e.g. Vault's certificate
         * not trusted and vault.ca_file fixed since): log in now rather than
         * at the next call, so /healthz turns ok without traffic.
         */
        if (v->state == VAULT_NO_TOKEN) {
            vault_login_start(v, false);
        }
        return;
    }
    /*
     * A login, lookup or renewal still in flight is against the old address
     * or about the old token: its answer must not install a token the new
     * Vault does not know. The token held is dropped and the agent logs in
     * (or reads the token file) at once with the new settings, so a refused
     * new credential shows in the log at the reload, not at the next call;
     * the calls waiting on a login get this one.
     */
    vault_request_cancel(v->login);
    v->login = NULL;
    v->bg_login = false;
    if (v->state == VAULT_READY) {
        vault_set_token(v, NULL);
    }
    v->state = VAULT_NO_TOKEN;
    log_kv(LOGL_INFO, "vault settings changed; logging in again", "address", v->cfg->vault.address,
           "method", v->cfg->vault.token_file != NULL ? "token_file" : vault_method(v->cfg), NULL);
    vault_login_start(v, false);
}

void vault_free(struct vault *v)
{
    if (v == NULL) {
        return;
    }
    struct vault_req *r;
    while ((r = vault_list_pop(&v->queue)) != NULL || (r = vault_list_pop(&v->checkq)) != NULL) {
        vault_req_free(r);
    }
    /*
     * Every transfer still running, the callers' and the login, lookup or
     * renewal (v->login is one of them): an answer arriving after this would
     * reach freed memory, and the requests would never be freed.
     */
    struct vault_req *s = v->sent;
    v->sent = NULL;
    while (s != NULL) {
        struct vault_req *next = s->sent_next;
        upstream_xfer_cancel(s->xfer);
        vault_req_free(s);
        s = next;
    }
    v->login = NULL;
    v->check = NULL; /* freed above with the transfers: its lookup-self was one */
    if (v->renew_timer != NULL) {
        event_free(v->renew_timer);
    }
    secret_free(&v->token);
    config_unref(&v->cfg);
    free(v);
}

enum vault_health vault_health(const struct vault *v, const char **ret_reason)
{
    *ret_reason = NULL;
    if (v->state == VAULT_READY && vault_token_left(v) != 0 && !v->token_refused) {
        if (v->tls_fail != UPSTREAM_TLS_NONE) {
            *ret_reason = v->tls_reason;
            return VAULT_HEALTH_UNAVAILABLE;
        }
        if (!v->reachable) {
            *ret_reason = v->unreach_reason;
            return VAULT_HEALTH_UNAVAILABLE;
        }
        return VAULT_HEALTH_OK;
    }
    if (v->state == VAULT_READY && v->token_refused) {
        *ret_reason = "token refused by Vault (403)";
        return VAULT_HEALTH_LOGIN_FAILED;
    }
    if (v->login_health != VAULT_HEALTH_OK) {
        *ret_reason = v->login_reason;
        return v->login_health;
    }
    if (v->state == VAULT_READY) {
        *ret_reason = "token expired";
        return VAULT_HEALTH_LOGIN_FAILED;
    }
    if (v->tls_fail != UPSTREAM_TLS_NONE) {
        *ret_reason = v->tls_reason;
        return VAULT_HEALTH_UNAVAILABLE;
    }
    if (!v->reachable) {
        *ret_reason = v->unreach_reason;
        return VAULT_HEALTH_UNAVAILABLE;
    }
    *ret_reason = v->state == VAULT_LOGGING_IN ? "logging in" : "no token yet";
    return VAULT_HEALTH_UNAVAILABLE;
}

const char *vault_health_name(enum vault_health h)
{
    static const char *const names[] = {
        [VAULT_HEALTH_OK] = "ok",
        [VAULT_HEALTH_UNAVAILABLE] = "unavailable",
        [VAULT_HEALTH_LOGIN_FAILED] = "login_failed",
    };
    return (size_t)h < sizeof(names) / sizeof(names[0]) ? names[h] : "unavailable";
}

bool vault_ok(const struct vault *v)
{
    const char *reason;
    return vault_health(v, &reason) == VAULT_HEALTH_OK;
}

const struct vault_stats *vault_stats(const struct vault *v)
{
    return &v->stats;
}
