/* SPDX-License-Identifier: MPL-2.0 */
/*
 * AWS Signature Version 4 (sigv4.h). References: "Create a signed AWS API
 * request" and "Elements of an AWS API request signature" (IAM User Guide),
 * and AWS's Signature Version 4 test suite, whose vectors
 * tests/unit/test_agent_sigv4.c checks. Only header signing of one request
 * with a known body; the module never logs, and wipes every buffer that held
 * the secret, a key derived from it, or the session token.
 */
#include "agent/sigv4.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/buf.h"

/* The longest secret access key signed with: AWS's are 40 characters. */
#define SIGV4_MAX_SECRET 128

static const char sigv4_hex[] = "0123456789abcdef";

static void sigv4_to_hex(const unsigned char *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = sigv4_hex[d[i] >> 4];
        out[2 * i + 1] = sigv4_hex[d[i] & 0xf];
    }
    out[2 * n] = '\0';
}

/* Hex SHA-256 of d (65 bytes out). */
static enum err sigv4_sha256_hex(const void *d, size_t n, char out[65])
{
    unsigned char md[32];
    unsigned int ml = 0;
    static const unsigned char none = 0;
    if (EVP_Digest(d != NULL ? d : &none, n, md, &ml, EVP_sha256(), NULL) != 1 || ml != 32) {
        return ERR_CRYPTO;
    }
    sigv4_to_hex(md, 32, out);
    return ERR_OK;
}

static enum err sigv4_hmac(const unsigned char *key, size_t key_len, const void *d, size_t n,
                           unsigned char out[32])
{
    unsigned int ol = 0;
    if (HMAC(EVP_sha256(), key, (int)key_len, d, n, out, &ol) == NULL || ol != 32) {
        OPENSSL_cleanse(out, 32);
        return ERR_CRYPTO;
    }
    return ERR_OK;
}

/* 1..max of a-z 0-9 -: a region or service name, which goes into the scope unescaped. */
static bool sigv4_name_ok(const char *s, size_t max)
{
    size_t n = s != NULL ? strlen(s) : 0;
    if (n == 0 || n > max) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-')) {
            return false;
        }
    }
    return true;
}

enum err sigv4_signing_key(const char *secret, size_t secret_len, const char *date,
                           const char *region, const char *service, unsigned char ret_key[32])
{
    if (secret_len == 0 || secret_len > SIGV4_MAX_SECRET) {
        return ERR_INVAL;
    }
    unsigned char ksecret[4 + SIGV4_MAX_SECRET];
    unsigned char k1[32], k2[32];
    static const unsigned char aws4[4] = {'A', 'W', 'S', '4'};
    memcpy(ksecret, aws4, sizeof(aws4));
    memcpy(ksecret + 4, secret, secret_len);
    enum err e = sigv4_hmac(ksecret, 4 + secret_len, date, strlen(date), k1);
    if (e == ERR_OK) {
        e = sigv4_hmac(k1, 32, region, strlen(region), k2);
    }
    if (e == ERR_OK) {
        e = sigv4_hmac(k2, 32, service, strlen(service), k1);
    }
    if (e == ERR_OK) {
        e = sigv4_hmac(k1, 32, "aws4_request", 12, ret_key);
    }
    OPENSSL_cleanse(ksecret, sizeof(ksecret));
    OPENSSL_cleanse(k1, sizeof(k1));
    OPENSSL_cleanse(k2, sizeof(k2));
    return e;
}

/*
 * The canonical URI: for every service but S3 the path is URI-encoded again,
 * segment by segment ('/' kept), although it was already encoded once for
 * the request: "%3A" in a Bedrock model id becomes "%253A". Encoding is
 * RFC 3986's: everything but the unreserved characters, upper-case hex.
 */
static enum err sigv4_canonical_uri(struct buf *b, const char *path)
{
    if (path == NULL || path[0] == '\0') {
        return buf_append(b, "/", 1);
    }
    enum err e = ERR_OK;
    for (const char *p = path; e == ERR_OK && *p != '\0'; p++) {
        unsigned char ch = (unsigned char)*p;
        bool keep = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                    (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.' || ch == '~' ||
                    ch == '/';
        e = keep ? buf_append(b, p, 1) : buf_printf(b, "%%%02X", ch);
    }
    return e;
}

/* A header value as canonical: leading and trailing spaces trimmed, inner runs as one space. */
static enum err sigv4_header(struct buf *b, const char *name, const char *v, size_t n)
{
    while (n > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        n--;
    }
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t')) {
        n--;
    }
    enum err e = buf_printf(b, "%s:", name);
    bool space = false;
    for (size_t i = 0; e == ERR_OK && i < n; i++) {
        if (v[i] == ' ' || v[i] == '\t') {
            space = true;
            continue;
        }
        if (space) {
            e = buf_append(b, " ", 1);
            space = false;
        }
        if (e == ERR_OK) {
            e = buf_append(b, &v[i], 1);
        }
    }
    return e == ERR_OK ? buf_append(b, "\n", 1) : e;
}

static bool sigv4_request_ok(const struct sigv4_request *r)
{
    size_t hl = r->host != NULL ? strlen(r->host) : 0;
    if (hl == 0 || hl > SIGV4_MAX_HOST || strpbrk(r->host, " \t\r\n") != NULL ||
        r->method == NULL || r->method[0] == '\0' || strlen(r->method) > 16 ||
        strpbrk(r->method, " \t\r\n") != NULL || (r->body == NULL && r->body_len != 0)) {
        return false;
    }
    if (r->content_type != NULL && strpbrk(r->content_type, "\r\n") != NULL) {
        return false;
    }
    return sigv4_name_ok(r->region, SIGV4_MAX_REGION) &&
           sigv4_name_ok(r->service, SIGV4_MAX_SERVICE);
}

/* The canonical request (into b) and the signed headers' names (into signed_headers). */
static enum err sigv4_canonical(const struct sigv4_request *r, const struct awskey *k,
                                const char *amz_date, struct buf *b, char *signed_headers,
                                size_t sh_size)
{
    char payload[65];
    enum err e = sigv4_sha256_hex(r->body, r->body_len, payload);
    if (e == ERR_OK) {
        e = buf_printf(b, "%s\n", r->method);
    }
    if (e == ERR_OK) {
        e = sigv4_canonical_uri(b, r->path);
    }
    if (e == ERR_OK) {
        e = buf_printf(b, "\n%s\n", r->query != NULL ? r->query : "");
    }
    /* Canonical headers, sorted by lower-case name. */
    if (e == ERR_OK && r->content_type != NULL) {
        e = sigv4_header(b, "content-type", r->content_type, strlen(r->content_type));
    }
    if (e == ERR_OK) {
        e = sigv4_header(b, "host", r->host, strlen(r->host));
    }
    if (e == ERR_OK) {
        e = sigv4_header(b, "x-amz-date", amz_date, strlen(amz_date));
    }
    if (e == ERR_OK && k->token_len > 0) {
        e = sigv4_header(b, "x-amz-security-token", k->token, k->token_len);
    }
    int n = snprintf(signed_headers, sh_size, "%shost;x-amz-date%s",
                     r->content_type != NULL ? "content-type;" : "",
                     k->token_len > 0 ? ";x-amz-security-token" : "");
    if (e == ERR_OK && (n < 0 || (size_t)n >= sh_size)) {
        e = ERR_INTERNAL;
    }
    if (e == ERR_OK) {
        e = buf_printf(b, "\n%s\n%s", signed_headers, payload);
    }
    return e;
}

enum err sigv4_sign(const struct sigv4_request *r, const struct awskey *k, struct sigv4_signed *ret)
{
    if (!sigv4_request_ok(r) || k == NULL || k->id == NULL || k->id_len == 0 || k->id_len > 128 ||
        memchr(k->id, '/', k->id_len) != NULL || k->secret == NULL ||
        (k->token_len > 0 && k->token == NULL) ||
        (k->token != NULL && memchr(k->token, '\n', k->token_len) != NULL)) {
        return ERR_INVAL;
    }
    struct tm tm;
    char amz_date[17], date[9];
    if (gmtime_r(&r->now, &tm) == NULL ||
        strftime(amz_date, sizeof(amz_date), "%Y%m%dT%H%M%SZ", &tm) != 16) {
        return ERR_INVAL;
    }
    memcpy(date, amz_date, 8);
    date[8] = '\0';

    char signed_headers[64];
    char creq_hash[65];
    struct buf b;
    buf_init(&b, SIGV4_MAX_CANONICAL);
    /* The canonical request holds the session token: buf_done wipes it. */
    enum err e = sigv4_canonical(r, k, amz_date, &b, signed_headers, sizeof(signed_headers));
    if (e == ERR_OK) {
        e = sigv4_sha256_hex(b.data, b.len, creq_hash);
    }
    buf_reset(&b);
    if (e == ERR_OK) {
        e = buf_printf(&b, "AWS4-HMAC-SHA256\n%s\n%s/%s/%s/aws4_request\n%s", amz_date, date,
                       r->region, r->service, creq_hash);
    }
    unsigned char key[32], sig[32];
    char sig_hex[65];
    if (e == ERR_OK) {
        e = sigv4_signing_key(k->secret, k->secret_len, date, r->region, r->service, key);
    }
    if (e == ERR_OK) {
        e = sigv4_hmac(key, sizeof(key), b.data, b.len, sig);
    }
    OPENSSL_cleanse(key, sizeof(key));
    buf_done(&b);
    if (e != ERR_OK) {
        return e;
    }
    sigv4_to_hex(sig, sizeof(sig), sig_hex);
    OPENSSL_cleanse(sig, sizeof(sig));
    struct sigv4_signed out;
    int n = snprintf(out.authorization, sizeof(out.authorization),
                     "AWS4-HMAC-SHA256 Credential=%.*s/%s/%s/%s/aws4_request, SignedHeaders=%s, "
                     "Signature=%s",
                     (int)k->id_len, k->id, date, r->region, r->service, signed_headers, sig_hex);
    if (n < 0 || (size_t)n >= sizeof(out.authorization)) {
        return ERR_INTERNAL;
    }
    memcpy(out.amz_date, amz_date, sizeof(out.amz_date));
    *ret = out;
    OPENSSL_cleanse(&out, sizeof(out));
    return ERR_OK;
}
