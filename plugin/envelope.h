/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Envelope encryption for provider keys (DESIGN 3.4).
 *
 *   KEK (256-bit, versioned)  storage "kek/<n>" (seal-wrapped), "kek/current"
 *     wraps
 *   DEK (256-bit, one per tenant)  storage "tenants/<t>/dek": {kek_version, wrapped}
 *     seals
 *   key versions (AES-256-GCM, random 96-bit nonce, AD = "tenant|provider|key_type|version")
 *
 * Two layers of API: the pure AEAD primitives (envelope_seal/envelope_open,
 * no state, no I/O) and struct envelope, which owns the KEK and DEK caches and
 * the locks that make KEK rotation safe under concurrent reads. Unwrapped keys
 * live only in struct secret (secure heap) and are wiped when dropped.
 *
 * Thread-safe. Functions taking a storage may block on I/O; envelope_invalidate
 * and envelope_drop_all never do.
 */
#ifndef BYOK_PLUGIN_ENVELOPE_H
#define BYOK_PLUGIN_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/secret.h"
#include "plugin/storage.h"

#define ENVELOPE_KEY_LEN 32   /* AES-256 */
#define ENVELOPE_NONCE_LEN 12 /* 96-bit GCM nonce (NIST SP 800-38D 8.2.2, random) */
#define ENVELOPE_TAG_LEN 16
/* Format byte, nonce, tag: a ciphertext is this much longer than its plaintext. */
#define ENVELOPE_OVERHEAD (1 + ENVELOPE_NONCE_LEN + ENVELOPE_TAG_LEN)
/* Largest plaintext we seal (a provider key or a service-account JSON). */
#define ENVELOPE_MAX_PLAINTEXT ((size_t)SECRET_MAX_LEN)
/* Largest associated data. */
#define ENVELOPE_MAX_AD 512
/* Unwrapped tenant DEKs cached at most; past it the cache is emptied. */
#define ENVELOPE_DEK_CACHE_MAX 8192
/* KEK versions held in memory at most (older ones are re-read on demand). */
#define ENVELOPE_KEK_CACHE_MAX 16
/*
 * envelope_kek_state's memory copy is read again after this long even if
 * nothing dropped it: a "kek/" write reported failed (the request's deadline)
 * may land after the drop that followed it.
 */
#define ENVELOPE_KEK_STATE_MAX_AGE_MS 5000

#define ENVELOPE_KEK_PREFIX "kek/"
#define ENVELOPE_KEK_CURRENT "kek/current"

/*
 * AES-256-GCM with a fresh random nonce. key must be ENVELOPE_KEY_LEN bytes.
 * *ret_ct is malloc'd (ciphertext is not secret): format byte 1 | nonce | ct | tag.
 * ERR_TOOBIG past ENVELOPE_MAX_PLAINTEXT / ENVELOPE_MAX_AD; ERR_INVAL on a bad key.
 */
MUST_USE enum err envelope_seal(const struct secret *key, const void *ad, size_t ad_len,
                                const unsigned char *pt, size_t pt_len, unsigned char **ret_ct,
                                size_t *ret_ct_len);

/*
 * Opens what envelope_seal made. Any tampering (format byte, nonce, ciphertext,
 * tag, AD, wrong key) is ERR_CRYPTO; *ret_pt is a secret only on success.
 */
MUST_USE enum err envelope_open(const struct secret *key, const void *ad, size_t ad_len,
                                const unsigned char *ct, size_t ct_len, struct secret **ret_pt);

/* The AD of a key version: "tenant|provider|key_type|version". ERR_TOOBIG if it does not fit. */
MUST_USE enum err envelope_key_ad(const char *tenant, const char *provider, const char *key_type,
                                  int64_t version, char *out, size_t out_size);

/* Standard base64 with padding. *ret is malloc'd and NUL-terminated. */
MUST_USE enum err envelope_b64_encode(const unsigned char *in, size_t len, char **ret);
/* Decodes into malloc'd bytes; ERR_INVAL on anything that is not canonical base64. */
MUST_USE enum err envelope_b64_decode(const char *in, unsigned char **ret, size_t *ret_len);

struct envelope;

/* NULL on out of memory. envelope_free wipes and accepts NULL. */
struct envelope *envelope_new(void);
void envelope_free(struct envelope *env);

/* Loads the current KEK version, creating KEK 1 when the mount has none. */
MUST_USE enum err envelope_initialize(struct envelope *env, struct storage *st);

/* The current KEK version (0 if none yet). */
MUST_USE enum err envelope_kek_version(struct envelope *env, struct storage *st,
                                       int64_t *ret_version);

/* What storage holds of the KEKs, for `config` read. */
struct envelope_kek_state {
    int64_t current;          /* the current KEK version, as envelope_kek_version */
    int64_t *versions;        /* every version under "kek/", ascending; malloc'd, NULL if none */
    size_t n_versions;        /* entries in versions */
    bool rotation_incomplete; /* a version below current is stored: envelope_rotate resumes */
};

/*
 * The KEK state as storage holds it: kek/current and the versions under
 * "kek/". rotation_incomplete is exactly the condition under which
 * envelope_rotate resumes instead of making a new version; a version above
 * current (left by a rotation cut before its switch) is listed but wraps
 * nothing and does not count. Reads no tenant. Served from memory (no storage
 * round trip) until something under "kek/" changes (this node's rotation, or
 * envelope_invalidate for another node's) or for ENVELOPE_KEK_STATE_MAX_AGE_MS
 * at most; otherwise one Get and one List. Free with envelope_kek_state_done;
 * *ret is filled only on ERR_OK.
 */
MUST_USE enum err envelope_kek_state(struct envelope *env, struct storage *st,
                                     struct envelope_kek_state *ret);
/* Frees what envelope_kek_state allocated; accepts a zeroed state. */
void envelope_kek_state_done(struct envelope_kek_state *state);
/* Tests: replaces ENVELOPE_KEK_STATE_MAX_AGE_MS (0: every call reads storage). */
void envelope_set_kek_state_max_age_ms(long ms);

/*
 * The tenant's DEK as a new secret the caller frees. With create, a tenant
 * without one gets a fresh DEK wrapped by the current KEK (the caller must
 * serialise creation per tenant, e.g. under keystore's write lock);
 * without it, ERR_NOTFOUND. Served from the DEK cache when warm.
 * *ret_created (ret_created may be NULL) tells whether this call created and
 * stored the DEK: a caller that then stores nothing sealed with it shreds it,
 * since a stored DEK alone makes the tenant exist.
 */
MUST_USE enum err envelope_tenant_dek(struct envelope *env, struct storage *st, const char *tenant,
                                      bool create, struct secret **ret_dek, bool *ret_created);

/*
 * Crypto-shred: deletes the tenant's wrapped DEK from storage and the cache.
 * After it, nothing sealed for the tenant can be opened again.
 */
MUST_USE enum err envelope_tenant_shred(struct envelope *env, struct storage *st,
                                        const char *tenant);

/* What envelope_rotate did. */
struct envelope_rotate_result {
    int64_t version;         /* the current KEK version when it finished */
    int64_t rewrapped;       /* tenant DEKs this call rewrapped */
    int64_t already_current; /* tenant DEKs found already wrapped by that version */
    bool resumed;            /* true: an incomplete rotation was finished, no new version */
};

/*
 * KEK rotation. When no KEK version older than the current one is left in
 * storage, a new rotation: KEK n+1 is created and becomes current. Otherwise
 * a previous rotation is incomplete (cut by the request's deadline, a storage
 * error, a crash) and this call resumes it: no new version, the current one
 * stays. Either way every tenant DEK not yet wrapped by the current version is
 * rewrapped with it (tenants listed from storage and handled one at a time; a
 * DEK already on it costs one storage read) and, if none failed, KEK versions
 * older than the current one are removed. each_lock/each_unlock (may be NULL)
 * bracket the rewrap of one tenant so callers can exclude a concurrent tenant
 * delete or creation. Concurrent envelope_tenant_dek calls keep working.
 * *ret is filled only on ERR_OK.
 */
MUST_USE enum err envelope_rotate(struct envelope *env, struct storage *st,
                                  void (*each_lock)(void *), void (*each_unlock)(void *),
                                  void *lock_arg, struct envelope_rotate_result *ret);

/* InvalidateKey: drops the cached DEK for "tenants/<t>/dek", KEKs for "kek/..." */
void envelope_invalidate(struct envelope *env, const char *key);

/* Drops and wipes every cached key (Cleanup). */
void envelope_drop_all(struct envelope *env);

#endif
