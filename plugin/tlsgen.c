/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Generates the AutoMTLS key and certificate with OpenSSL 3 EVP/X509. It does
 * not configure TLS itself: rpc.c and broker.c hand the PEMs to gRPC's SSL
 * credentials, which keep TLS 1.3 and ALPN h2 (both required by newer Vault).
 */
#include "plugin/tlsgen.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>

/* go-plugin: NotBefore = now - 30 s, NotAfter = now + 262980 h (about 30 years). */
#define TLSGEN_BACKDATE_SECONDS 30L
#define TLSGEN_LIFETIME_SECONDS (262980L * 3600L)
#define TLSGEN_SERIAL_BYTES 16

char *tlsgen_b64_raw(const unsigned char *data, size_t len)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((len + 2) / 3 * 4 + 1);
    if (out == NULL) {
        return NULL;
    }
    size_t o = 0;
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        unsigned long v =
            (unsigned long)data[i] << 16 | (unsigned long)data[i + 1] << 8 | data[i + 2];
        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
        out[o++] = alphabet[v & 63];
    }
    /* The tail is written without '=': RawStdEncoding rejects padding. */
    if (len - i == 1) {
        unsigned long v = (unsigned long)data[i] << 16;
        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
    } else if (len - i == 2) {
        unsigned long v = (unsigned long)data[i] << 16 | (unsigned long)data[i + 1] << 8;
        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
    }
    out[o] = '\0';
    return out;
}

static int tlsgen_add_ext(X509 *cert, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL) {
        return 0;
    }
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

/* A positive, non-zero serial: Go >= 1.23 rejects negative serials. */
static int tlsgen_set_serial(X509 *cert)
{
    unsigned char raw[TLSGEN_SERIAL_BYTES];
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        return 0;
    }
    raw[0] &= 0x7f; /* the DER INTEGER stays positive without a leading zero byte */
    raw[0] |= 0x01; /* and never zero */
    BIGNUM *bn = BN_bin2bn(raw, sizeof(raw), NULL);
    if (bn == NULL) {
        return 0;
    }
    int ok = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) != NULL;
    BN_free(bn);
    return ok;
}

static char *tlsgen_bio_string(BIO *bio, size_t *ret_len)
{
    char *mem = NULL;
    long n = BIO_get_mem_data(bio, &mem);
    if (n <= 0) {
        return NULL;
    }
    char *s = malloc((size_t)n + 1);
    if (s == NULL) {
        return NULL;
    }
    memcpy(s, mem, (size_t)n);
    s[n] = '\0';
    *ret_len = (size_t)n;
    return s;
}

enum err tlsgen_make(struct tlsgen *t)
{
    enum err rc = ERR_CRYPTO;
    EVP_PKEY *pkey = NULL;
    X509 *cert = NULL;
    BIO *kbio = NULL;
    BIO *cbio = NULL;
    memset(t, 0, sizeof(*t));

    pkey = EVP_EC_gen("P-256");
    if (pkey == NULL) {
        goto out;
    }
    cert = X509_new();
    if (cert == NULL || X509_set_version(cert, 2) != 1 || !tlsgen_set_serial(cert)) {
        goto out;
    }
    if (X509_gmtime_adj(X509_getm_notBefore(cert), -TLSGEN_BACKDATE_SECONDS) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(cert), TLSGEN_LIFETIME_SECONDS) == NULL) {
        goto out;
    }
    X509_NAME *name = X509_get_subject_name(cert);
    if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"byok", -1, -1,
                                   0) != 1 ||
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1,
                                   -1, 0) != 1 ||
        X509_set_issuer_name(cert, name) != 1 || X509_set_pubkey(cert, pkey) != 1) {
        goto out;
    }
    /*
     * Mirrors go-plugin's generateCert: Vault verifies our certificate with a
     * pool holding only itself, so it acts as its own CA; EKU must allow both
     * directions (Vault dials us; we dial Vault's broker).
     */
    if (!tlsgen_add_ext(cert, NID_basic_constraints, "critical,CA:TRUE") ||
        !tlsgen_add_ext(cert, NID_key_usage,
                        "critical,digitalSignature,keyEncipherment,keyAgreement,keyCertSign") ||
        !tlsgen_add_ext(cert, NID_ext_key_usage, "serverAuth,clientAuth") ||
        !tlsgen_add_ext(cert, NID_subject_alt_name, "DNS:localhost") ||
        !tlsgen_add_ext(cert, NID_subject_key_identifier, "hash")) {
        goto out;
    }
    if (X509_sign(cert, pkey, EVP_sha256()) <= 0) {
        goto out;
    }

    rc = ERR_NOMEM;
    int der_len = i2d_X509(cert, NULL);
    if (der_len <= 0) {
        rc = ERR_CRYPTO;
        goto out;
    }
    t->cert_der = malloc((size_t)der_len);
    if (t->cert_der == NULL) {
        goto out;
    }
    unsigned char *p = t->cert_der;
    if (i2d_X509(cert, &p) != der_len) {
        rc = ERR_CRYPTO;
        goto out;
    }
    t->cert_der_len = (size_t)der_len;
    t->cert_b64 = tlsgen_b64_raw(t->cert_der, t->cert_der_len);
    if (t->cert_b64 == NULL) {
        goto out;
    }

    cbio = BIO_new(BIO_s_mem());
    kbio = BIO_new(BIO_s_secmem());
    if (cbio == NULL || kbio == NULL) {
        goto out;
    }
    size_t n = 0;
    if (PEM_write_bio_X509(cbio, cert) != 1 ||
        (t->cert_pem = tlsgen_bio_string(cbio, &n)) == NULL) {
        goto out;
    }
    if (PEM_write_bio_PrivateKey(kbio, pkey, NULL, NULL, 0, NULL, NULL) != 1) {
        rc = ERR_CRYPTO;
        goto out;
    }
    char *kmem = NULL;
    long klen = BIO_get_mem_data(kbio, &kmem);
    if (klen <= 0 || (t->key_pem = secret_from(kmem, (size_t)klen)) == NULL) {
        goto out;
    }
    rc = ERR_OK;

out:
    BIO_free(cbio);
    BIO_free(kbio); /* secmem BIO: wiped on free */
    X509_free(cert);
    EVP_PKEY_free(pkey);
    if (rc != ERR_OK) {
        tlsgen_done(t);
    }
    return rc;
}

void tlsgen_done(struct tlsgen *t)
{
    secret_free(&t->key_pem);
    free(t->cert_pem);
    free(t->cert_b64);
    free(t->cert_der);
    memset(t, 0, sizeof(*t));
}
