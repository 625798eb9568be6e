/* SPDX-License-Identifier: MPL-2.0 */
/*
 * No piece of a service-account private key is left in memory OpenSSL frees
 * while common/gcpkey.c reads the key (the plugin's check of a written key,
 * its validation, the agent's JWT). The plugin does not make OpenSSL's free
 * wipe (agent/jalloc.c does, for the agent only), so this program installs an
 * OpenSSL allocator that, before freeing a block, scans it for windows of the
 * key's private integers (as DER bytes and byte-reversed, as BIGNUM limbs hold
 * them on little-endian machines) and of the PEM's base64. jansson's blocks
 * are wiped on free, as the plugin's allocator does (plugin/main.c). A block
 * freed unwiped on purpose shows the scan finds what it looks for.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <malloc.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/gcptoken.h"
#include "common/gcpkey.h"
#include "common/secret.h"

#define HEAP_WINDOW 16
/* Windows looked for: per private integer, and of the base64. */
#define HEAP_MAX_WINDOWS 512

static unsigned char windows[HEAP_MAX_WINDOWS][HEAP_WINDOW];
static size_t n_windows;
static bool armed;
static int hits;

static void scan(void *p)
{
    if (!armed || p == NULL) {
        return;
    }
    size_t n = malloc_usable_size(p);
    for (size_t i = 0; i < n_windows; i++) {
        if (memmem(p, n, windows[i], HEAP_WINDOW) != NULL) {
            hits++;
            return;
        }
    }
}

static void *heap_malloc(size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    return malloc(n);
}

/* Never realloc in place past the block: the old block is scanned as it is freed. */
static void *heap_realloc(void *p, size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    if (p == NULL) {
        return malloc(n);
    }
    size_t old = malloc_usable_size(p);
    if (n <= old && n > 0) {
        return p;
    }
    void *q = n > 0 ? malloc(n) : NULL;
    if (n > 0 && q == NULL) {
        return NULL;
    }
    if (q != NULL) {
        memcpy(q, p, old);
    }
    scan(p);
    free(p);
    return q;
}

static void heap_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    scan(p);
    free(p);
}

static void json_wipe_free(void *p)
{
    if (p != NULL) {
        OPENSSL_cleanse(p, malloc_usable_size(p));
        free(p);
    }
}

static void add_window(const unsigned char *w)
{
    assert_true(n_windows < HEAP_MAX_WINDOWS);
    memcpy(windows[n_windows++], w, HEAP_WINDOW);
}

/* Windows of a private integer's big-endian bytes, forwards and reversed. */
static void add_bn(EVP_PKEY *k, const char *name)
{
    BIGNUM *bn = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(k, name, &bn), 1);
    unsigned char buf[512];
    int n = BN_bn2bin(bn, buf);
    BN_clear_free(bn);
    assert_true(n > HEAP_WINDOW && n <= (int)sizeof(buf));
    for (int off = 0; off + HEAP_WINDOW <= n; off += HEAP_WINDOW) {
        unsigned char rev[HEAP_WINDOW];
        for (int i = 0; i < HEAP_WINDOW; i++) {
            rev[i] = buf[off + HEAP_WINDOW - 1 - i];
        }
        add_window(buf + off);
        add_window(rev);
    }
    OPENSSL_cleanse(buf, sizeof(buf));
}

static EVP_PKEY *test_pkey;
static char *test_pem;
static char *test_json;

static int setup(void **state)
{
    (void)state;
    if (secret_heap_init(1 << 20) != ERR_OK) {
        return -1;
    }
    json_set_alloc_funcs(malloc, json_wipe_free);
    test_pkey = EVP_RSA_gen(2048);
    assert_non_null(test_pkey);
    const char *priv[] = {OSSL_PKEY_PARAM_RSA_D,         OSSL_PKEY_PARAM_RSA_FACTOR1,
                          OSSL_PKEY_PARAM_RSA_FACTOR2,   OSSL_PKEY_PARAM_RSA_EXPONENT1,
                          OSSL_PKEY_PARAM_RSA_EXPONENT2, OSSL_PKEY_PARAM_RSA_COEFFICIENT1};
    for (size_t i = 0; i < sizeof(priv) / sizeof(priv[0]); i++) {
        add_bn(test_pkey, priv[i]);
    }
    BIO *b = BIO_new(BIO_s_mem());
    assert_non_null(b);
    assert_int_equal(PEM_write_bio_PrivateKey(b, test_pkey, NULL, NULL, 0, NULL, NULL), 1);
    char *p = NULL;
    long n = BIO_get_mem_data(b, &p);
    test_pem = strndup(p, (size_t)n);
    BIO_free(b);
    assert_non_null(test_pem);
    /* The base64 of the private half: the PEM's last 13 lines of 64 + '\n', before END. */
    const char *end = strstr(test_pem, "-----END");
    assert_non_null(end);
    for (const char *w = end - (ptrdiff_t)(13 * 65); w + HEAP_WINDOW < end; w += 65) {
        add_window((const unsigned char *)w);
    }
    json_t *j =
        json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", "service_account", "project_id",
                  "byok-test-project", "private_key_id", "0123456789abcdef", "private_key",
                  test_pem, "client_email", "e2e-agent@byok-test-project.iam.gserviceaccount.com");
    assert_non_null(j);
    test_json = json_dumps(j, JSON_INDENT(2));
    json_decref(j);
    assert_non_null(test_json);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    armed = false;
    EVP_PKEY_free(test_pkey);
    free(test_pem);
    free(test_json);
    return 0;
}

/* The scan finds a copy of the key freed unwiped (so zero hits below means something). */
static void test_scan_finds(void **state)
{
    (void)state;
    hits = 0;
    armed = true;
    char *copy = OPENSSL_strdup(test_pem);
    assert_non_null(copy);
    OPENSSL_free(copy);
    armed = false;
    assert_int_equal(hits, 1);
}

static void test_parse_wipes(void **state)
{
    (void)state;
    hits = 0;
    armed = true;
    struct gcpkey k;
    const char *why = NULL;
    bool ok = gcpkey_parse(test_json, strlen(test_json), &k, &why);
    armed = false;
    assert_true(ok);
    assert_int_equal(k.bits, 2048);
    assert_int_equal(hits, 0);
}

static void test_jwt_wipes(void **state)
{
    (void)state;
    hits = 0;
    armed = true;
    char *jwt = NULL;
    size_t n = 0;
    enum err e = gcpkey_jwt(test_json, strlen(test_json), "https://oauth2.googleapis.com/token",
                            GCPTOKEN_SCOPE, 1795846500, &jwt, &n);
    armed = false;
    assert_int_equal(e, ERR_OK);
    free(jwt);
    assert_int_equal(hits, 0);
}

/* A key refused after its DER was read (three bytes after it): the same. */
static void test_refused_wipes(void **state)
{
    (void)state;
    PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(test_pkey);
    assert_non_null(p8);
    unsigned char der[4096] = {0};
    unsigned char *p = der;
    int n = i2d_PKCS8_PRIV_KEY_INFO(p8, &p);
    PKCS8_PRIV_KEY_INFO_free(p8);
    assert_true(n > 0 && n + 3 <= (int)sizeof(der));
    char b64[4 * sizeof(der) / 3 + 8];
    assert_true(EVP_EncodeBlock((unsigned char *)b64, der, n + 3) > 0);
    OPENSSL_cleanse(der, sizeof(der));
    char pem[sizeof(b64) + 64];
    snprintf(pem, sizeof(pem), "-----BEGIN PRIVATE KEY-----\n%s\n-----END PRIVATE KEY-----\n", b64);
    OPENSSL_cleanse(b64, sizeof(b64));
    json_t *j =
        json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", "service_account", "project_id",
                  "byok-test-project", "private_key_id", "0123456789abcdef", "private_key", pem,
                  "client_email", "e2e-agent@byok-test-project.iam.gserviceaccount.com");
    OPENSSL_cleanse(pem, sizeof(pem));
    assert_non_null(j);
    char *v = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    assert_non_null(v);
    hits = 0;
    armed = true;
    const char *why = NULL;
    bool ok = gcpkey_parse(v, strlen(v), NULL, &why);
    armed = false;
    assert_false(ok);
    assert_non_null(strstr(why, "does not parse"));
    assert_int_equal(hits, 0);
    free(v);
}

int main(void)
{
    /* Before anything makes OpenSSL allocate: it refuses new functions after that. */
    if (CRYPTO_set_mem_functions(heap_malloc, heap_realloc, heap_free) != 1) {
        fprintf(stderr, "CRYPTO_set_mem_functions refused\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scan_finds),
        cmocka_unit_test(test_parse_wipes),
        cmocka_unit_test(test_jwt_wipes),
        cmocka_unit_test(test_refused_wipes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
