/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Google service-account keys as a key value (gcpkey.h): the JSON's shape,
 * the private key's type and size, the compact form the plugin stores, and
 * the RS256 JWT the agent trades for an access token. Whether Google knows
 * the key is for Google to say when it is used. Not here: the token fetch
 * (agent/gcptoken.c), masking (plugin/paths_keys.c).
 */
#include "common/gcpkey.h"

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/b64.h"

/* The PEM text of an RSA private key this size is ~1.7 KB (2048 bits) to ~3.3 KB (4096). */
#define GCPKEY_MAX_PEM 4096
/* Its DER: three bytes per four of base64. */
#define GCPKEY_MAX_DER ((size_t)GCPKEY_MAX_PEM / 4 * 3)
_Static_assert(GCPKEY_MAX_DER <= 0xffff, "gcpkey_der_get reads lengths of two octets at most");
/* RFC 7468's armour of a PKCS#8 PrivateKeyInfo (what Google's key files hold). */
#define GCPKEY_PEM_BEGIN "-----BEGIN PRIVATE KEY-----"
#define GCPKEY_PEM_END "-----END PRIVATE KEY-----"
/* RFC 8017 A.1.2 RSAPrivateKey, two-prime (version 0): version and eight integers. */
#define GCPKEY_RSA_FIELDS 9

bool gcpkey_is_sa(const char *v, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (v[i] == ' ' || v[i] == '\t' || v[i] == '\r' || v[i] == '\n') {
            continue;
        }
        return v[i] == '{';
    }
    return false;
}

static bool gcpkey_project_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < GCPKEY_MIN_PROJECT || n > GCPKEY_MAX_PROJECT || s[0] < 'a' || s[0] > 'z' ||
        s[n - 1] == '-') {
        return false;
    }
    return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-") == n;
}

static bool gcpkey_email_ok(const char *s)
{
    size_t n = strlen(s);
    const char *at = strchr(s, '@');
    if (n < 3 || n > GCPKEY_MAX_EMAIL || at == NULL || at == s || at[1] == '\0' ||
        strchr(at + 1, '@') != NULL) {
        return false;
    }
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_+@") == n;
}

static bool gcpkey_key_id_ok(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n <= GCPKEY_MAX_KEY_ID &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") == n;
}

/*
 * The value's JSON object (new reference) or NULL with *why. jansson's error
 * text may quote the input: it is wiped, never read.
 */
static json_t *gcpkey_load(const char *v, size_t len, const char **why)
{
    if (len == 0 || len > GCPKEY_MAX_JSON) {
        *why = "a service-account key is a JSON object of at most 8192 bytes";
        return NULL;
    }
    json_error_t jerr;
    json_t *j = json_loadb(v, len, JSON_REJECT_DUPLICATES, &jerr);
    OPENSSL_cleanse(&jerr, sizeof(jerr));
    if (!json_is_object(j)) {
        json_decref(j);
        *why = "a service-account key must be the JSON object Google's key file holds";
        return NULL;
    }
    return j;
}

/*
 * The private key is decoded here rather than by PEM_read_bio_PrivateKey or
 * d2i_AutoPrivateKey: OpenSSL 3's decoders (providers/implementations/
 * encode_decode/decode_pem2der.c and decode_der2key.c) copy the DER into
 * blocks they free without wiping, and the plugin, unlike the agent
 * (agent/jalloc.c), does not make OpenSSL's free wipe (that would cost every
 * TLS buffer of gRPC). OpenSSL's ASN.1 templates (d2i_PKCS8_PRIV_KEY_INFO,
 * d2i_ASN1_SEQUENCE_ANY) are no better on a malformed key: when a decode
 * fails part-way, crypto/asn1/tasn_dec.c frees the INTEGERs it had already
 * copied, and the chunks of a BER constructed OCTET STRING it had collected,
 * without wiping them. So the base64 is decoded into a stack buffer wiped
 * before return, the two DER layers are read in place from that buffer by
 * the small strict DER reader below (X.690 section 10), and each integer
 * goes straight from the buffer into a BIGNUM on the secure heap, from
 * which EVP_PKEY_fromdata makes the key. No copy of a key byte is made
 * anywhere else. tests/unit/test_gcpkey_heap.c checks that no block OpenSSL
 * frees holds a piece of the key, for good keys and malformed ones.
 *
 * What is read, and nothing else (anything else is refused):
 *   PrivateKeyInfo ::= SEQUENCE {                       -- RFC 5208
 *       version INTEGER 0,
 *       AlgorithmIdentifier SEQUENCE { OID rsaEncryption, NULL or absent },
 *       privateKey OCTET STRING (primitive) }            -- no [0] attributes
 *   RSAPrivateKey ::= SEQUENCE {                        -- RFC 8017 A.1.2
 *       version INTEGER 0, n, e, d, p, q, dP, dQ, qInv INTEGER > 0 }
 * Lengths are definite and minimal, integers minimal, and nothing follows
 * an element at any level. Attributes are refused: Google's key files have
 * none, and nothing here would read them. A
 * PKCS#8 version 1 (RFC 5958, with a public key) and a multi-prime
 * RSAPrivateKey (version 1) are refused too: Google makes neither.
 */

/* Strict RFC 7468 armour: BEGIN line, base64 lines, END line, then only line breaks. */
static bool gcpkey_pem_body(const char *pem, size_t len, const char **body, size_t *body_len)
{
    const size_t bl = sizeof(GCPKEY_PEM_BEGIN) - 1, el = sizeof(GCPKEY_PEM_END) - 1;
    size_t i = 0;
    if (len < bl || memcmp(pem, GCPKEY_PEM_BEGIN, bl) != 0) {
        return false;
    }
    i = bl;
    if (i < len && pem[i] == '\r') {
        i++;
    }
    if (i >= len || pem[i] != '\n') {
        return false;
    }
    *body = pem + i + 1;
    /* The END line: the last line that is not empty. */
    size_t end = len;
    while (end > i && (pem[end - 1] == '\n' || pem[end - 1] == '\r')) {
        end--;
    }
    if (end < i + 1 + el || memcmp(pem + end - el, GCPKEY_PEM_END, el) != 0 ||
        pem[end - el - 1] != '\n') {
        return false;
    }
    *body_len = (size_t)(pem + end - el - *body);
    return true;
}

/*
 * Decodes the base64 lines of body (line breaks \n or \r\n, nothing else
 * between characters; '=' padding only at the end, canonical) into der
 * (room for GCPKEY_MAX_DER). false when anything else is there, or nothing.
 */
static bool gcpkey_b64_decode(const char *body, size_t len, unsigned char *der, size_t *ret_len)
{
    return b64_decode(body, len, true, der, GCPKEY_MAX_DER, ret_len) && *ret_len > 0;
}

/* DER tags (X.690 8.1.2): universal class, primitive except SEQUENCE. */
#define GCPKEY_DER_INTEGER 0x02
#define GCPKEY_DER_OCTETS 0x04
#define GCPKEY_DER_NULL 0x05
#define GCPKEY_DER_OID 0x06
#define GCPKEY_DER_SEQUENCE 0x30

/* rsaEncryption, 1.2.840.113549.1.1.1 (RFC 8017 A.1), as an OID's content octets. */
static const unsigned char gcpkey_rsa_oid[] = {0x2a, 0x86, 0x48, 0x86, 0xf7,
                                               0x0d, 0x01, 0x01, 0x01};

/* A borrowed view of DER: the bytes from p up to end, read front to back. */
struct gcpkey_der {
    const unsigned char *p;
    const unsigned char *end;
};

static bool gcpkey_der_done(const struct gcpkey_der *d)
{
    return d->p == d->end;
}

/*
 * Reads the element at d->p, which must have the given tag: *ret is its
 * content, and d moves past it. The length must be definite and minimal
 * (X.690 10.1): the short form below 128, else the long form without a
 * leading zero octet, in at most two octets (GCPKEY_MAX_DER fits in two).
 * false, d unchanged, when the element is not that or runs past d->end.
 */
static bool gcpkey_der_get(struct gcpkey_der *d, unsigned char tag, struct gcpkey_der *ret)
{
    const unsigned char *p = d->p;
    if (d->end - p < 2 || p[0] != tag) {
        return false;
    }
    size_t len = p[1];
    p += 2;
    if (len >= 0x80) {
        size_t octets = len & 0x7f; /* 0 is BER's indefinite length */
        if (octets == 0 || octets > 2 || (size_t)(d->end - p) < octets || p[0] == 0) {
            return false;
        }
        len = 0;
        for (size_t i = 0; i < octets; i++) {
            len = len << 8 | p[i];
        }
        p += octets;
        if (len < 0x80) {
            return false;
        }
    }
    if (len > (size_t)(d->end - p)) {
        return false;
    }
    ret->p = p;
    ret->end = p + len;
    d->p = p + len;
    return true;
}

/*
 * Reads an INTEGER that is not negative, in minimal form (X.690 8.3.2): *ret
 * is its magnitude, big-endian without the leading zero octet (empty for 0).
 */
static bool gcpkey_der_uint(struct gcpkey_der *d, struct gcpkey_der *ret)
{
    struct gcpkey_der v;
    if (!gcpkey_der_get(d, GCPKEY_DER_INTEGER, &v)) {
        return false;
    }
    size_t n = (size_t)(v.end - v.p);
    if (n == 0 || (v.p[0] & 0x80) != 0 || (n > 1 && v.p[0] == 0 && (v.p[1] & 0x80) == 0)) {
        return false; /* empty, negative, or a leading zero octet not needed */
    }
    if (v.p[0] == 0) {
        v.p++;
    }
    *ret = v;
    return true;
}

/* The OSSL_PARAM names of RSAPrivateKey's integers after its version (RFC 8017 A.1.2). */
static const char *const gcpkey_rsa_params[GCPKEY_RSA_FIELDS] = {
    NULL,
    OSSL_PKEY_PARAM_RSA_N,
    OSSL_PKEY_PARAM_RSA_E,
    OSSL_PKEY_PARAM_RSA_D,
    OSSL_PKEY_PARAM_RSA_FACTOR1,
    OSSL_PKEY_PARAM_RSA_FACTOR2,
    OSSL_PKEY_PARAM_RSA_EXPONENT1,
    OSSL_PKEY_PARAM_RSA_EXPONENT2,
    OSSL_PKEY_PARAM_RSA_COEFFICIENT1,
};

/*
 * The RSA key of an RSAPrivateKey DER that fills rsa exactly, or NULL. Its
 * integers go from the DER to BIGNUMs on the secure heap (BN_bin2bn,
 * BN_clear_free), and from there through OSSL_PARAM_BLD (which puts secure
 * BIGNUMs in its secure block, wiped by OSSL_PARAM_free) to EVP_PKEY_fromdata.
 */
static EVP_PKEY *gcpkey_rsa_from(struct gcpkey_der rsa)
{
    struct gcpkey_der seq, v;
    EVP_PKEY *key = NULL;
    BIGNUM *bn[GCPKEY_RSA_FIELDS] = {NULL};
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    if (!gcpkey_der_get(&rsa, GCPKEY_DER_SEQUENCE, &seq) || !gcpkey_der_done(&rsa) ||
        !gcpkey_der_uint(&seq, &v) || v.p != v.end) {
        goto out; /* version 1 is multi-prime, which Google does not make */
    }
    bld = OSSL_PARAM_BLD_new();
    if (bld == NULL) {
        goto out;
    }
    for (int i = 1; i < GCPKEY_RSA_FIELDS; i++) {
        if (!gcpkey_der_uint(&seq, &v) || v.p == v.end) {
            goto out; /* each integer of a key is positive */
        }
        bn[i] = BN_secure_new();
        if (bn[i] == NULL || BN_bin2bn(v.p, (int)(v.end - v.p), bn[i]) == NULL) {
            goto out;
        }
        BN_set_flags(bn[i], BN_FLG_CONSTTIME);
        if (OSSL_PARAM_BLD_push_BN(bld, gcpkey_rsa_params[i], bn[i]) != 1) {
            goto out;
        }
    }
    if (!gcpkey_der_done(&seq)) {
        goto out;
    }
    params = OSSL_PARAM_BLD_to_param(bld);
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_KEYPAIR, params) != 1) {
        EVP_PKEY_free(key);
        key = NULL;
    }
out:
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    for (int i = 0; i < GCPKEY_RSA_FIELDS; i++) {
        BN_clear_free(bn[i]);
    }
    return key;
}

/*
 * The RSA key of a PKCS#8 PrivateKeyInfo DER (RFC 5208), or NULL with *why:
 * the whole DER is one PrivateKeyInfo as the comment above gcpkey_pem_body
 * says. Its algorithm is checked before its parameters, so that another
 * kind of key (EC, Ed25519) is named as such.
 */
static EVP_PKEY *gcpkey_pkcs8(const unsigned char *der, size_t der_len, const char **why)
{
    struct gcpkey_der d = {der, der + der_len}, info, v, alg, oid, rsa;
    *why = "private_key does not parse as a PEM private key";
    if (!gcpkey_der_get(&d, GCPKEY_DER_SEQUENCE, &info) || !gcpkey_der_done(&d) ||
        !gcpkey_der_uint(&info, &v) || v.p != v.end ||
        !gcpkey_der_get(&info, GCPKEY_DER_SEQUENCE, &alg) ||
        !gcpkey_der_get(&alg, GCPKEY_DER_OID, &oid)) {
        return NULL;
    }
    if ((size_t)(oid.end - oid.p) != sizeof(gcpkey_rsa_oid) ||
        memcmp(oid.p, gcpkey_rsa_oid, sizeof(gcpkey_rsa_oid)) != 0) {
        *why = "private_key must be an RSA key";
        return NULL;
    }
    /*
     * RFC 8017 A.1: the parameters "shall" be NULL. Absent is taken too: they
     * carry nothing for this OID, and OpenSSL's own RSA decoder does not look
     * at them (crypto/rsa/rsa_ameth.c, rsa_param_decode).
     */
    if (!gcpkey_der_done(&alg) &&
        (!gcpkey_der_get(&alg, GCPKEY_DER_NULL, &v) || v.p != v.end || !gcpkey_der_done(&alg))) {
        return NULL;
    }
    if (!gcpkey_der_get(&info, GCPKEY_DER_OCTETS, &rsa) || !gcpkey_der_done(&info)) {
        return NULL;
    }
    EVP_PKEY *key = gcpkey_rsa_from(rsa);
    if (key != NULL) {
        *why = NULL;
    }
    return key;
}

/* The private key of a parsed value (a new EVP_PKEY) or NULL with *why. */
static EVP_PKEY *gcpkey_pkey(const json_t *j, const char **why)
{
    const json_t *pk = json_object_get(j, "private_key");
    const char *pem = json_string_value(pk);
    size_t pem_len = json_string_length(pk);
    const char *body = NULL;
    size_t body_len = 0;
    if (pem == NULL || pem_len == 0 || pem_len > GCPKEY_MAX_PEM ||
        !gcpkey_pem_body(pem, pem_len, &body, &body_len)) {
        *why = "private_key must be a PEM PKCS#8 private key (-----BEGIN PRIVATE KEY-----)";
        return NULL;
    }
    unsigned char der[GCPKEY_MAX_DER];
    size_t der_len = 0;
    EVP_PKEY *key = NULL;
    if (!gcpkey_b64_decode(body, body_len, der, &der_len)) {
        *why = "private_key does not parse as a PEM private key";
    } else {
        key = gcpkey_pkcs8(der, der_len, why);
    }
    OPENSSL_cleanse(der, sizeof(der));
    if (key == NULL) {
        return NULL;
    }
    int bits = EVP_PKEY_get_bits(key);
    if (bits < GCPKEY_MIN_BITS || bits > GCPKEY_MAX_BITS) {
        EVP_PKEY_free(key);
        *why = "private_key must be an RSA key of 2048 to 4096 bits";
        return NULL;
    }
    return key;
}

/* The fields the agent needs, checked; ret filled. false with *why. */
static bool gcpkey_fields(const json_t *j, struct gcpkey *ret, const char **why)
{
    const char *type = json_string_value(json_object_get(j, "type"));
    const char *project = json_string_value(json_object_get(j, "project_id"));
    const char *email = json_string_value(json_object_get(j, "client_email"));
    const char *kid = json_string_value(json_object_get(j, "private_key_id"));
    if (type == NULL || strcmp(type, "service_account") != 0) {
        *why = "type must be \"service_account\"";
    } else if (project == NULL || !gcpkey_project_ok(project)) {
        *why = "project_id must be a Google Cloud project id (6..30 of a-z 0-9 -, starting with "
               "a letter)";
    } else if (email == NULL || !gcpkey_email_ok(email)) {
        *why = "client_email must be the service account's e-mail address";
    } else if (kid == NULL || !gcpkey_key_id_ok(kid)) {
        *why = "private_key_id must be 1..64 letters and digits";
    } else {
        memset(ret, 0, sizeof(*ret));
        snprintf(ret->project_id, sizeof(ret->project_id), "%s", project);
        snprintf(ret->client_email, sizeof(ret->client_email), "%s", email);
        snprintf(ret->private_key_id, sizeof(ret->private_key_id), "%s", kid);
        return true;
    }
    return false;
}

bool gcpkey_parse(const char *v, size_t len, struct gcpkey *ret, const char **ret_why)
{
    const char *why = NULL;
    struct gcpkey k;
    json_t *j = gcpkey_load(v, len, &why);
    bool ok = j != NULL && gcpkey_fields(j, &k, &why);
    if (ok) {
        EVP_PKEY *key = gcpkey_pkey(j, &why);
        ok = key != NULL;
        if (ok) {
            k.bits = EVP_PKEY_get_bits(key);
        }
        EVP_PKEY_free(key);
    }
    json_decref(j);
    if (ok && ret != NULL) {
        *ret = k;
    }
    OPENSSL_cleanse(&k, sizeof(k));
    if (ret_why != NULL) {
        *ret_why = ok ? NULL : why;
    }
    return ok;
}

bool gcpkey_parse_fields(const char *v, size_t len, struct gcpkey *ret, const char **ret_why)
{
    const char *why = NULL;
    struct gcpkey k;
    json_t *j = gcpkey_load(v, len, &why);
    bool ok = j != NULL && gcpkey_fields(j, &k, &why);
    json_decref(j);
    if (ok && ret != NULL) {
        k.bits = 0;
        *ret = k;
    }
    OPENSSL_cleanse(&k, sizeof(k));
    if (ret_why != NULL) {
        *ret_why = ok ? NULL : why;
    }
    return ok;
}

enum err gcpkey_compact(const char *v, size_t len, char **ret, size_t *ret_len)
{
    *ret = NULL;
    *ret_len = 0;
    const char *why = NULL;
    json_t *j = gcpkey_load(v, len, &why);
    if (j == NULL) {
        return ERR_INVAL;
    }
    json_decref(j);
    /*
     * Valid JSON holds no raw control character inside a string, so dropping
     * the whitespace outside strings is the whole compaction. Done on the
     * bytes, not by re-serialising a parse: every byte of every string is
     * kept as the tenant wrote it (jansson's loader can lose a byte of a
     * string when an allocation fails, and a key cut that way would be
     * stored).
     */
    char *out = malloc(len + 1);
    if (out == NULL) {
        return ERR_NOMEM;
    }
    size_t n = 0;
    bool in_str = false, esc = false;
    for (size_t i = 0; i < len; i++) {
        char c = v[i];
        if (in_str) {
            if (esc) {
                esc = false;
            } else if (c == '\\') {
                esc = true;
            } else if (c == '"') {
                in_str = false;
            }
        } else if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            continue;
        } else if (c == '"') {
            in_str = true;
        }
        out[n++] = c;
    }
    out[n] = '\0';
    *ret = out;
    *ret_len = n;
    return ERR_OK;
}

/* base64url without padding of in (n bytes), appended at out (room for 4 * (n + 2) / 3 + 1). */
static size_t gcpkey_b64url(const unsigned char *in, size_t n, char *out)
{
    int w = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    size_t len = w > 0 ? (size_t)w : 0;
    while (len > 0 && out[len - 1] == '=') {
        len--;
    }
    for (size_t i = 0; i < len; i++) {
        if (out[i] == '+') {
            out[i] = '-';
        } else if (out[i] == '/') {
            out[i] = '_';
        }
    }
    out[len] = '\0';
    return len;
}

/* Appends base64url(JSON of j) to out at *used (out has room: see gcpkey_jwt). */
static enum err gcpkey_part(const json_t *j, char *out, size_t size, size_t *used)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (s == NULL) {
        return ERR_NOMEM;
    }
    size_t n = strlen(s);
    enum err e = ERR_TOOBIG;
    if (4 * (n + 2) / 3 + 1 <= size - *used) {
        *used += gcpkey_b64url((const unsigned char *)s, n, out + *used);
        e = ERR_OK;
    }
    OPENSSL_cleanse(s, n);
    free(s);
    return e;
}

enum err gcpkey_jwt(const char *v, size_t len, const char *aud, const char *scope, long long now,
                    char **ret, size_t *ret_len)
{
    *ret = NULL;
    *ret_len = 0;
    if (aud == NULL || scope == NULL || aud[0] == '\0' || scope[0] == '\0' ||
        strlen(aud) > GCPKEY_MAX_CLAIM || strlen(scope) > GCPKEY_MAX_CLAIM) {
        return ERR_INVAL;
    }
    const char *why = NULL;
    struct gcpkey k;
    json_t *j = gcpkey_load(v, len, &why);
    if (j == NULL || !gcpkey_fields(j, &k, &why)) {
        json_decref(j);
        return ERR_INVAL;
    }
    EVP_PKEY *key = gcpkey_pkey(j, &why);
    json_decref(j); /* wiped by the allocator: the PEM text is gone from here on */
    if (key == NULL) {
        return ERR_INVAL;
    }
    enum err e = ERR_NOMEM;
    json_t *hdr = json_pack("{ssssss}", "alg", "RS256", "typ", "JWT", "kid", k.private_key_id);
    json_t *claims = json_pack("{sssssssssIsI}", "iss", k.client_email, "sub", k.client_email,
                               "aud", aud, "scope", scope, "iat", (json_int_t)now, "exp",
                               (json_int_t)(now + GCPKEY_JWT_LIFETIME));
    /* Header + claims (each at most ~2.5 KB of JSON) + a 4096-bit signature, base64url. */
    size_t size = 4 * (2 * 1024 + 3 * GCPKEY_MAX_CLAIM + GCPKEY_MAX_BITS / 8) / 3 + 16;
    char *out = malloc(size);
    size_t used = 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char sig[GCPKEY_MAX_BITS / 8];
    size_t sig_len = sizeof(sig);
    if (hdr == NULL || claims == NULL || out == NULL || md == NULL) {
        goto out_free;
    }
    e = gcpkey_part(hdr, out, size, &used);
    if (e != ERR_OK) {
        goto out_free;
    }
    out[used++] = '.';
    e = gcpkey_part(claims, out, size, &used);
    if (e != ERR_OK) {
        goto out_free;
    }
    e = ERR_CRYPTO;
    if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
        EVP_DigestSign(md, sig, &sig_len, (const unsigned char *)out, used) != 1 ||
        4 * (sig_len + 2) / 3 + 2 > size - used) {
        goto out_free;
    }
    out[used++] = '.';
    used += gcpkey_b64url(sig, sig_len, out + used);
    *ret = out;
    *ret_len = used;
    out = NULL;
    e = ERR_OK;
out_free:
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(key); /* RSA's private parts are cleared as they are freed */
    if (out != NULL) {
        OPENSSL_cleanse(out, size);
        free(out);
    }
    json_decref(hdr);
    json_decref(claims);
    OPENSSL_cleanse(&k, sizeof(k));
    return e;
}
