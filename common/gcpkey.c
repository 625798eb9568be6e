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
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The PEM text of an RSA private key this size is ~1.7 KB (2048 bits) to ~3.3 KB (4096). */
#define GCPKEY_MAX_PEM 4096

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

/* Never prompts (an encrypted PEM would make OpenSSL ask on the terminal): no passphrase. */
static int gcpkey_no_pass(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
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

/* The private key of a parsed value (a new EVP_PKEY) or NULL with *why. */
static EVP_PKEY *gcpkey_pkey(const json_t *j, const char **why)
{
    const json_t *pk = json_object_get(j, "private_key");
    const char *pem = json_string_value(pk);
    size_t pem_len = json_string_length(pk);
    if (pem == NULL || pem_len == 0 || pem_len > GCPKEY_MAX_PEM ||
        strstr(pem, "-----BEGIN PRIVATE KEY-----") == NULL) {
        *why = "private_key must be a PEM PKCS#8 private key (-----BEGIN PRIVATE KEY-----)";
        return NULL;
    }
    BIO *bio = BIO_new_mem_buf(pem, (int)pem_len);
    if (bio == NULL) {
        *why = "private_key could not be read";
        return NULL;
    }
    EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, gcpkey_no_pass, NULL);
    BIO_free(bio);
    if (key == NULL) {
        *why = "private_key does not parse as a PEM private key";
        return NULL;
    }
    if (!EVP_PKEY_is_a(key, "RSA")) {
        EVP_PKEY_free(key);
        *why = "private_key must be an RSA key";
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
