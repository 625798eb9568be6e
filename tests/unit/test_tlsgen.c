/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for plugin/tlsgen: the AutoMTLS certificate must satisfy Go's
 * verifier as Vault runs it (SAN DNS:localhost, EKU serverAuth+clientAuth,
 * positive serial, already valid) and field 6 of the handshake must be raw
 * standard base64 (go-plugin decodes with RawStdEncoding: padding fails).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/secret.h"
#include "plugin/tlsgen.h"

/* Runs first, on purpose: without the secure heap the private key has nowhere to live. */
static void test_refuses_without_secure_heap(void **state)
{
    (void)state;
    struct tlsgen t;
    assert_int_equal(tlsgen_make(&t), ERR_NOMEM);
    assert_null(t.key_pem);
    assert_null(t.cert_pem);
    assert_null(t.cert_b64);
    tlsgen_done(&t);
}

static void test_b64_raw_vectors(void **state)
{
    (void)state;
    /* RFC 4648 §10 test vectors, padding removed. */
    static const char *const in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const out[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        char *s = tlsgen_b64_raw((const unsigned char *)in[i], strlen(in[i]));
        assert_non_null(s);
        assert_string_equal(s, out[i]);
        free(s);
    }
    /* The standard alphabet, not the URL one: 0xfb 0xff -> "+/8". */
    static const unsigned char hi[] = {0xfb, 0xff};
    char *s = tlsgen_b64_raw(hi, sizeof(hi));
    assert_string_equal(s, "+/8");
    free(s);
}

static X509 *parse_der(const struct tlsgen *t)
{
    const unsigned char *p = t->cert_der;
    X509 *x = d2i_X509(NULL, &p, (long)t->cert_der_len);
    assert_non_null(x);
    assert_ptr_equal(p, t->cert_der + t->cert_der_len); /* no trailing bytes */
    return x;
}

static void test_cert_properties(void **state)
{
    (void)state;
    struct tlsgen t;
    assert_int_equal(tlsgen_make(&t), ERR_OK);
    X509 *x = parse_der(&t);

    /* SAN: exactly DNS:localhost (Go ignores the CN). */
    GENERAL_NAMES *san = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    assert_non_null(san);
    assert_int_equal(sk_GENERAL_NAME_num(san), 1);
    GENERAL_NAME *gn = sk_GENERAL_NAME_value(san, 0);
    assert_int_equal(gn->type, GEN_DNS);
    assert_string_equal((const char *)ASN1_STRING_get0_data(gn->d.dNSName), "localhost");
    GENERAL_NAMES_free(san);
    assert_int_equal(X509_check_host(x, "localhost", 0, 0, NULL), 1);
    assert_int_not_equal(X509_check_host(x, "example.com", 0, 0, NULL), 1);

    /* EKU: both directions (Vault dials us; we dial Vault's broker). */
    uint32_t xku = X509_get_extended_key_usage(x);
    assert_true(xku & XKU_SSL_SERVER);
    assert_true(xku & XKU_SSL_CLIENT);

    /* Serial: positive and not zero. */
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    assert_non_null(bn);
    assert_false(BN_is_negative(bn));
    assert_false(BN_is_zero(bn));
    BN_free(bn);

    /* Valid now, and backdated (NotBefore at least 20 s in the past). */
    time_t now = time(NULL);
    time_t earlier = now - 20;
    assert_true(X509_cmp_time(X509_get0_notBefore(x), &earlier) < 0);
    assert_true(X509_cmp_time(X509_get0_notAfter(x), &now) > 0);

    /* P-256 key; the PEM private key belongs to this certificate. */
    EVP_PKEY *pub = X509_get0_pubkey(x);
    assert_int_equal(EVP_PKEY_get_base_id(pub), EVP_PKEY_EC);
    assert_int_equal(EVP_PKEY_get_bits(pub), 256);
    BIO *kb = BIO_new_mem_buf(t.key_pem->data, (int)t.key_pem->len);
    EVP_PKEY *priv = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
    assert_non_null(priv);
    assert_int_equal(X509_check_private_key(x, priv), 1);
    EVP_PKEY_free(priv);
    BIO_free(kb);

    /* Self-signed, and it verifies as its own (only) root, as Vault verifies it. */
    assert_int_equal(X509_verify(x, pub), 1);
    X509_STORE *store = X509_STORE_new();
    X509_STORE_add_cert(store, x);
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    X509_STORE_CTX_init(ctx, store, x, NULL);
    X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
    assert_int_equal(X509_verify_cert(ctx), 1);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);

    /* The PEM is the same certificate as the DER. */
    BIO *cb = BIO_new_mem_buf(t.cert_pem, -1);
    X509 *y = PEM_read_bio_X509(cb, NULL, NULL, NULL);
    assert_non_null(y);
    assert_int_equal(X509_cmp(x, y), 0);
    X509_free(y);
    BIO_free(cb);

    X509_free(x);
    tlsgen_done(&t);
    assert_null(t.key_pem);
}

static void test_handshake_field_is_raw_b64_of_der(void **state)
{
    (void)state;
    struct tlsgen t;
    assert_int_equal(tlsgen_make(&t), ERR_OK);
    size_t n = strlen(t.cert_b64);
    /* go-plugin uses field 6 only when longer than 50 characters. */
    assert_true(n > 50);
    assert_null(strchr(t.cert_b64, '='));
    assert_null(strchr(t.cert_b64, '\n'));
    assert_int_equal(strspn(t.cert_b64, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                        "0123456789+/"),
                     n);
    assert_int_equal(n, (t.cert_der_len * 4 + 2) / 3);

    /* Decode with padding restored: the bytes are the DER. */
    char *padded = calloc(n + 4, 1);
    memcpy(padded, t.cert_b64, n);
    for (size_t plen = strlen(padded); plen % 4 != 0; plen++) {
        padded[plen] = '='; /* calloc'd: the byte after stays NUL */
    }
    unsigned char *der = malloc(strlen(padded));
    int len = EVP_DecodeBlock(der, (const unsigned char *)padded, (int)strlen(padded));
    assert_true(len >= (int)t.cert_der_len);
    assert_memory_equal(der, t.cert_der, t.cert_der_len);
    free(der);
    free(padded);
    tlsgen_done(&t);
}

static void test_each_process_gets_a_fresh_identity(void **state)
{
    (void)state;
    struct tlsgen a;
    struct tlsgen b;
    assert_int_equal(tlsgen_make(&a), ERR_OK);
    assert_int_equal(tlsgen_make(&b), ERR_OK);
    assert_string_not_equal(a.cert_b64, b.cert_b64);
    assert_false(secret_equal(a.key_pem, b.key_pem));
    X509 *x = parse_der(&a);
    X509 *y = parse_der(&b);
    assert_int_not_equal(ASN1_INTEGER_cmp(X509_get0_serialNumber(x), X509_get0_serialNumber(y)), 0);
    X509_free(x);
    X509_free(y);
    tlsgen_done(&a);
    tlsgen_done(&b);
    tlsgen_done(&b); /* idempotent */
}

static int group_setup(void **state)
{
    (void)state;
    return 0;
}

static int heap_setup(void **state)
{
    (void)state;
    return secret_heap_init((size_t)64 * 1024) == ERR_OK ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest before_heap[] = {
        cmocka_unit_test(test_refuses_without_secure_heap),
        cmocka_unit_test(test_b64_raw_vectors),
    };
    const struct CMUnitTest with_heap[] = {
        cmocka_unit_test(test_cert_properties),
        cmocka_unit_test(test_handshake_field_is_raw_b64_of_der),
        cmocka_unit_test(test_each_process_gets_a_fresh_identity),
    };
    int failed = cmocka_run_group_tests(before_heap, group_setup, NULL);
    failed += cmocka_run_group_tests(with_heap, heap_setup, NULL);
    return failed;
}
