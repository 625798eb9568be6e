/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Access tokens for Vertex service-account keys (gcptoken.h): the JWT bearer
 * grant, made with an upstream transfer, the token kept with its key, and a
 * short memory of the keys the token endpoint refused.
 */
#include "agent/gcptoken.h"

#include <event2/event.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/buf.h"
#include "common/gcpkey.h"

/* The grant, form-encoded (RFC 7523 section 2.1); the JWT's base64url needs no escaping. */
#define GCPTOKEN_GRANT "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion="

struct gcptoken_wait {
    struct keycache_entry *ent;
    gcptoken_cb cb;
    void *arg;
    struct gcptoken_wait *next;
};

/* A salted SHA-256 of the token URL and a key: which key was refused, without the key. */
#define GCPTOKEN_ID_LEN 32

/* What an entry keeps (keycache_entry.aux). */
struct gcptoken_state {
    struct secret *token;
    time_t expires; /* monotonic seconds; the token is not used from then on */
    /*
     * The token this one replaced, kept (not used) so that a call that sent
     * it before the refresh can still redact it from the provider's answer
     * (gcptoken_sent); gen counts the tokens the entry has held.
     */
    struct secret *prev;
    unsigned long gen;
    struct upstream_xfer *xfer;
    struct buf answer;
    bool too_big;
    struct gcptoken_wait *waiters;
    unsigned char id[GCPTOKEN_ID_LEN]; /* of the key and URL of the trade under way */
    bool id_ok;
    struct event *replay; /* a remembered refusal, told to the waiters from the loop */
    long replay_status;
};

/* A key the token endpoint refused, remembered until `until` (monotonic seconds). */
struct gcptoken_refusal {
    unsigned char id[GCPTOKEN_ID_LEN];
    time_t until;
    long status;
};

static struct gcptoken_stats gcptoken_counts;
static struct gcptoken_refusal gcptoken_refused[GCPTOKEN_REFUSED_MAX];
static unsigned char gcptoken_salt[32];
static bool gcptoken_salted;

static time_t gcptoken_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

const struct gcptoken_stats *gcptoken_stats(void)
{
    return &gcptoken_counts;
}

bool gcptoken_wanted(const struct keycache_entry *ent)
{
    return ent != NULL && ent->key != NULL &&
           gcpkey_is_sa((const char *)ent->key->data, ent->key->len);
}

const struct secret *gcptoken_current(const struct keycache_entry *ent)
{
    const struct gcptoken_state *st = ent != NULL ? ent->aux : NULL;
    if (st == NULL || st->token == NULL || ent->key == NULL || gcptoken_now() >= st->expires) {
        return NULL;
    }
    return st->token;
}

unsigned long gcptoken_generation(const struct keycache_entry *ent)
{
    const struct gcptoken_state *st = ent != NULL ? ent->aux : NULL;
    return st != NULL && st->token != NULL ? st->gen : 0;
}

const struct secret *gcptoken_sent(const struct keycache_entry *ent, unsigned long gen)
{
    const struct gcptoken_state *st = ent != NULL ? ent->aux : NULL;
    if (st == NULL || gen == 0 || ent->key == NULL) {
        return NULL;
    }
    if (gen == st->gen) {
        return st->token;
    }
    return gen + 1 == st->gen ? st->prev : NULL;
}

long gcptoken_lifetime(long expires_in)
{
    if (expires_in <= 0) {
        return 0;
    }
    long margin = expires_in > 2L * GCPTOKEN_REFRESH_S ? GCPTOKEN_REFRESH_S : expires_in / 2;
    return expires_in - margin;
}

enum err gcptoken_parse_answer(const char *body, size_t len, struct secret **ret,
                               long *ret_expires_in)
{
    *ret = NULL;
    *ret_expires_in = 0;
    if (len == 0 || len > GCPTOKEN_MAX_ANSWER) {
        return ERR_PROTO;
    }
    json_t *j = json_loadb(body, len, 0, NULL);
    const json_t *tok = json_object_get(j, "access_token");
    const char *t = json_string_value(tok);
    size_t tl = json_string_length(tok);
    const json_t *exp = json_object_get(j, "expires_in");
    const char *type = json_string_value(json_object_get(j, "token_type"));
    enum err e = ERR_PROTO;
    bool ok = json_is_object(j) && t != NULL && tl > 0 && tl <= GCPTOKEN_MAX_TOKEN &&
              json_is_integer(exp) && json_integer_value(exp) > 0 &&
              json_integer_value(exp) <= GCPTOKEN_MAX_EXPIRES_IN &&
              (json_object_get(j, "token_type") == NULL ||
               (type != NULL && strcasecmp(type, "Bearer") == 0));
    for (size_t i = 0; ok && i < tl; i++) {
        ok = t[i] > ' ' && t[i] < 0x7f;
    }
    if (ok) {
        *ret = secret_from(t, tl);
        *ret_expires_in = (long)json_integer_value(exp);
        e = *ret != NULL ? ERR_OK : ERR_NOMEM;
    }
    json_decref(j); /* the allocator wipes what jansson copied of the token */
    return e;
}

enum err gcptoken_form(const char *jwt, size_t jwt_len, char **ret, size_t *ret_len)
{
    size_t gl = strlen(GCPTOKEN_GRANT);
    char *out = malloc(gl + jwt_len + 1);
    if (out == NULL) {
        *ret = NULL;
        *ret_len = 0;
        return ERR_NOMEM;
    }
    memcpy(out, GCPTOKEN_GRANT, gl);
    memcpy(out + gl, jwt, jwt_len);
    out[gl + jwt_len] = '\0';
    *ret = out;
    *ret_len = gl + jwt_len;
    return ERR_OK;
}

void gcptoken_refusals_clear(void)
{
    memset(gcptoken_refused, 0, sizeof(gcptoken_refused));
}

/*
 * The key's id for the refusal memory: SHA-256 over a per-process random
 * salt, the token URL and the key's bytes. OpenSSL wipes the digest's state
 * (which holds a block of the key) when the context is freed.
 */
static bool gcptoken_key_id(const char *url, const struct secret *key,
                            unsigned char out[GCPTOKEN_ID_LEN])
{
    if (!gcptoken_salted) {
        if (RAND_bytes(gcptoken_salt, sizeof(gcptoken_salt)) != 1) {
            return false;
        }
        gcptoken_salted = true;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned int n = 0;
    bool ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
              EVP_DigestUpdate(md, gcptoken_salt, sizeof(gcptoken_salt)) == 1 &&
              EVP_DigestUpdate(md, url, strlen(url) + 1) == 1 &&
              EVP_DigestUpdate(md, key->data, key->len) == 1 &&
              EVP_DigestFinal_ex(md, out, &n) == 1 && n == GCPTOKEN_ID_LEN;
    EVP_MD_CTX_free(md);
    return ok;
}

/* The remembered refusal of this key, if one has not ended; else NULL. */
static const struct gcptoken_refusal *gcptoken_refusal_find(const unsigned char *id)
{
    time_t now = gcptoken_now();
    for (size_t i = 0; i < GCPTOKEN_REFUSED_MAX; i++) {
        const struct gcptoken_refusal *r = &gcptoken_refused[i];
        if (r->until > now && CRYPTO_memcmp(r->id, id, GCPTOKEN_ID_LEN) == 0) {
            return r;
        }
    }
    return NULL;
}

/* Remembers a refusal, in the slot of an ended one, else of the one ending first. */
static void gcptoken_refusal_add(const unsigned char *id, long status)
{
    struct gcptoken_refusal *slot = &gcptoken_refused[0];
    for (size_t i = 0; i < GCPTOKEN_REFUSED_MAX; i++) {
        struct gcptoken_refusal *r = &gcptoken_refused[i];
        if (CRYPTO_memcmp(r->id, id, GCPTOKEN_ID_LEN) == 0) {
            slot = r;
            break;
        }
        if (r->until < slot->until) {
            slot = r;
        }
    }
    memcpy(slot->id, id, GCPTOKEN_ID_LEN);
    slot->until = gcptoken_now() + GCPTOKEN_REFUSED_S;
    slot->status = status;
}

static void gcptoken_entry_wipe(struct keycache_entry *ent)
{
    struct gcptoken_state *st = ent->aux;
    if (st != NULL) {
        secret_free(&st->token);
        secret_free(&st->prev);
        st->expires = 0;
    }
}

/* The entry is freed: no user is left, so no waiter either (each held a reference). */
static void gcptoken_entry_free(struct keycache_entry *ent)
{
    struct gcptoken_state *st = ent->aux;
    if (st == NULL) {
        return;
    }
    upstream_xfer_cancel(st->xfer);
    if (st->replay != NULL) {
        event_free(st->replay);
    }
    struct gcptoken_wait *w = st->waiters;
    while (w != NULL) {
        struct gcptoken_wait *next = w->next;
        free(w);
        w = next;
    }
    secret_free(&st->token);
    secret_free(&st->prev);
    buf_done(&st->answer);
    free(st);
    ent->aux = NULL;
    ent->aux_wipe = NULL;
    ent->aux_free = NULL;
}

void gcptoken_drop(struct keycache_entry *ent)
{
    if (ent != NULL && ent->aux_wipe == gcptoken_entry_wipe) {
        gcptoken_entry_wipe(ent);
    }
}

static enum upstream_data_rc gcptoken_on_data(void *arg, const char *data, size_t len)
{
    struct keycache_entry *ent = arg;
    struct gcptoken_state *st = ent->aux;
    if (buf_append(&st->answer, data, len) != ERR_OK) {
        st->too_big = true;
        return UPSTREAM_ABORT;
    }
    return UPSTREAM_CONTINUE;
}

/*
 * Tells every waiter, one at a time: a callback may cancel a later wait
 * (gcptoken_cancel finds it in the list) or start another trade. The caller
 * holds the entry across the callbacks.
 */
static void gcptoken_deliver(struct keycache_entry *ent, enum err e, long status)
{
    struct gcptoken_state *st;
    struct gcptoken_wait *w;
    while ((st = ent->aux) != NULL && (w = st->waiters) != NULL) {
        st->waiters = w->next;
        gcptoken_cb cb = w->cb;
        void *arg = w->arg;
        free(w);
        cb(arg, e, status);
    }
}

/* What a finished trade means (gcptoken_cb's e), before its answer is read. */
static enum err gcptoken_classify(enum err e, long status, bool too_big)
{
    if (e == ERR_TIMEOUT) {
        return ERR_TIMEOUT;
    }
    if (e != ERR_OK) {
        return ERR_UNAVAIL; /* not reached, refused connection, TLS */
    }
    if (status == 400 || status == 401 || status == 403) {
        return ERR_DENIED; /* invalid_grant, an unknown or disabled key: the key is refused */
    }
    if (status == 429 || status >= 500) {
        return ERR_UNAVAIL;
    }
    return status == 200 && !too_big ? ERR_OK : ERR_PROTO;
}

static void gcptoken_on_done(void *arg, enum err e, long status)
{
    struct keycache_entry *ent = arg;
    struct gcptoken_state *st = ent->aux;
    st->xfer = NULL;
    e = gcptoken_classify(e, status, st->too_big);
    if (e == ERR_OK) {
        struct secret *tok = NULL;
        long expires_in = 0;
        e = gcptoken_parse_answer(st->answer.data != NULL ? st->answer.data : "", st->answer.len,
                                  &tok, &expires_in);
        if (e == ERR_OK && ent->key == NULL) {
            e = ERR_CANCELLED; /* the key was wiped meanwhile: its token goes with it */
            secret_free(&tok);
        }
        if (e == ERR_OK) {
            secret_free(&st->prev);
            st->prev = st->token; /* NULL after a wipe or drop: gen then skips it */
            st->token = tok;
            st->gen += st->prev != NULL ? 1 : 2;
            st->expires = gcptoken_now() + gcptoken_lifetime(expires_in);
        }
    }
    buf_done(&st->answer);
    if (e != ERR_OK) {
        gcptoken_counts.failures++;
    }
    if (e == ERR_DENIED && st->id_ok) {
        gcptoken_refusal_add(st->id, status);
    }
    ent->refs++;
    gcptoken_deliver(ent, e, status);
    keycache_put(&ent);
}

/* A remembered refusal, told to the waiters as the trade's refusal would have been. */
static void gcptoken_replay_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct keycache_entry *ent = arg;
    struct gcptoken_state *st = ent->aux;
    ent->refs++;
    gcptoken_deliver(ent, ERR_DENIED, st->replay_status);
    keycache_put(&ent);
}

/* Arms the replay of a remembered refusal on the next loop turn. */
static enum err gcptoken_replay(struct upstream *up, struct keycache_entry *ent,
                                struct gcptoken_state *st, long status)
{
    if (st->replay == NULL) {
        st->replay = evtimer_new(upstream_base(up), gcptoken_replay_cb, ent);
        if (st->replay == NULL) {
            return ERR_NOMEM;
        }
    }
    struct timeval now = {0, 0};
    if (evtimer_add(st->replay, &now) != 0) {
        return ERR_NOMEM;
    }
    st->replay_status = status;
    gcptoken_counts.refused_remembered++;
    return ERR_OK;
}

/* Signs the JWT and starts the trade. */
static enum err gcptoken_start(struct upstream *up, const struct gcptoken_opts *o,
                               struct keycache_entry *ent, struct gcptoken_state *st)
{
    char *jwt = NULL;
    size_t jwt_len = 0;
    enum err e = gcpkey_jwt((const char *)ent->key->data, ent->key->len, o->token_url,
                            GCPTOKEN_SCOPE, (long long)time(NULL), &jwt, &jwt_len);
    if (e != ERR_OK) {
        return e;
    }
    char *body = NULL;
    size_t body_len = 0;
    e = gcptoken_form(jwt, jwt_len, &body, &body_len);
    OPENSSL_cleanse(jwt, jwt_len);
    free(jwt);
    if (e != ERR_OK) {
        return e;
    }
    struct curl_slist *h = NULL;
    e = upstream_header_add(&h, "Content-Type: application/x-www-form-urlencoded");
    if (e == ERR_OK) {
        e = upstream_header_add(&h, "Accept: application/json");
    }
    if (e != ERR_OK) {
        upstream_headers_free(h);
        OPENSSL_cleanse(body, body_len);
        free(body);
        return e;
    }
    struct upstream_opts uo = o->http;
    uo.allow_http = strncmp(o->token_url, "http://", 7) == 0; /* loopback only: config.c */
    uo.sensitive = true;                                      /* the answer is a credential */
    buf_done(&st->answer);
    buf_init(&st->answer, GCPTOKEN_MAX_ANSWER);
    st->too_big = false;
    static const struct upstream_cbs cbs = {NULL, gcptoken_on_data, gcptoken_on_done, NULL};
    /* Body and headers are taken over (and wiped) in every case. */
    e = upstream_xfer_start(up, "POST", o->token_url, body, body_len, h, &uo, &cbs, ent, &st->xfer);
    if (e == ERR_OK) {
        gcptoken_counts.fetches++;
    }
    return e;
}

enum err gcptoken_get(struct upstream *up, const struct gcptoken_opts *o,
                      struct keycache_entry *ent, gcptoken_cb cb, void *arg,
                      struct gcptoken_wait **ret_wait)
{
    *ret_wait = NULL;
    if (ent == NULL || ent->key == NULL) {
        return ERR_CANCELLED;
    }
    if (ent->aux != NULL && ent->aux_wipe != gcptoken_entry_wipe) {
        return ERR_INTERNAL; /* another module's state: not ours to touch */
    }
    struct gcptoken_state *st = ent->aux;
    if (st == NULL) {
        st = calloc(1, sizeof(*st));
        if (st == NULL) {
            return ERR_NOMEM;
        }
        ent->aux = st;
        ent->aux_wipe = gcptoken_entry_wipe;
        ent->aux_free = gcptoken_entry_free;
    }
    struct gcptoken_wait *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return ERR_NOMEM;
    }
    w->ent = ent;
    w->cb = cb;
    w->arg = arg;
    if (st->xfer == NULL && (st->replay == NULL || !evtimer_pending(st->replay, NULL))) {
        st->id_ok = gcptoken_key_id(o->token_url, ent->key, st->id);
        const struct gcptoken_refusal *r = st->id_ok ? gcptoken_refusal_find(st->id) : NULL;
        enum err e =
            r != NULL ? gcptoken_replay(up, ent, st, r->status) : gcptoken_start(up, o, ent, st);
        if (e != ERR_OK) {
            free(w);
            return e;
        }
    } else {
        gcptoken_counts.shared++;
    }
    w->next = st->waiters;
    st->waiters = w;
    *ret_wait = w;
    return ERR_OK;
}

void gcptoken_cancel(struct gcptoken_wait *w)
{
    if (w == NULL) {
        return;
    }
    struct gcptoken_state *st = w->ent->aux;
    struct gcptoken_wait **pp = st != NULL ? &st->waiters : NULL;
    while (pp != NULL && *pp != NULL && *pp != w) {
        pp = &(*pp)->next;
    }
    if (pp != NULL && *pp == w) {
        *pp = w->next;
        free(w);
    }
    /* The trade goes on: its token serves the next call. */
}
