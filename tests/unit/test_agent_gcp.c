/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for Google service-account keys: the key file's parser and its
 * refusals (common/gcpkey.c: the plugin's check and the agent's parse), the
 * compact form the plugin stores, the RS256 JWT (its header and claims, its
 * signature verified with OpenSSL against the key's public half), the token
 * endpoint's answer and the form body (agent/gcptoken.c), and the Vertex
 * adapter with such a key: the regional URL and the bearer token, never the
 * key. The test key is generated here, at test time: no key is committed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/gcptoken.h"
#include "agent/provider_vertex.h"
#include "agent/providers.h"
#include "common/gcpkey.h"
#include "common/secret.h"
#include "tests/unit/oom.h"

#define EMAIL "e2e-agent@byok-test-project.iam.gserviceaccount.com"
#define PROJECT "byok-test-project"
#define KID "0123456789abcdef0123456789abcdef01234567"
#define AUD "https://oauth2.googleapis.com/token"

static EVP_PKEY *test_pkey;
static char *test_pem;

static char *pem_of(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    assert_non_null(b);
    assert_int_equal(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL), 1);
    char *p = NULL;
    long n = BIO_get_mem_data(b, &p);
    char *out = strndup(p, (size_t)n);
    BIO_free(b);
    assert_non_null(out);
    return out;
}

static int setup(void **state)
{
    (void)state;
    if (secret_heap_init(1 << 20) != ERR_OK) {
        return -1;
    }
    test_pkey = EVP_RSA_gen(2048);
    assert_non_null(test_pkey);
    test_pem = pem_of(test_pkey);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(test_pkey);
    free(test_pem);
    return 0;
}

/* A key file as gcloud writes it (indented, the PEM's newlines escaped), with field changed. */
static char *sa_json(const char *field, json_t *value)
{
    json_t *j =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "type",
                  "service_account", "project_id", PROJECT, "private_key_id", KID, "private_key",
                  test_pem, "client_email", EMAIL, "client_id", "123456789012345678901", "auth_uri",
                  "https://accounts.google.com/o/oauth2/auth", "token_uri",
                  "https://oauth2.googleapis.com/token", "auth_provider_x509_cert_url",
                  "https://www.googleapis.com/oauth2/v1/certs", "client_x509_cert_url",
                  "https://www.googleapis.com/robot/v1/metadata/x509/e2e", "universe_domain",
                  "googleapis.com");
    assert_non_null(j);
    if (field != NULL && value == NULL) {
        json_object_del(j, field);
    } else if (field != NULL) {
        json_object_set_new(j, field, value);
    }
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(j);
    assert_non_null(s);
    return s;
}

static void test_is_sa(void **state)
{
    (void)state;
    assert_true(gcpkey_is_sa("{", 1));
    assert_true(gcpkey_is_sa(" \n\t{\"a\":1}", 10));
    assert_false(gcpkey_is_sa("AIzaSyExample", 13));
    assert_false(gcpkey_is_sa("", 0));
    assert_false(gcpkey_is_sa("   ", 3));
    assert_false(gcpkey_is_sa("x{", 2));
}

static void test_parse_ok(void **state)
{
    (void)state;
    char *v = sa_json(NULL, NULL);
    struct gcpkey k;
    const char *why = "unset";
    assert_true(gcpkey_parse(v, strlen(v), &k, &why));
    assert_null(why);
    assert_string_equal(k.project_id, PROJECT);
    assert_string_equal(k.client_email, EMAIL);
    assert_string_equal(k.private_key_id, KID);
    assert_int_equal(k.bits, 2048);
    /* A real key file is ~2.3 KB: well inside the plugin's 8 KiB. */
    assert_true(strlen(v) < GCPKEY_MAX_JSON);
    free(v);
    /* token_uri is never used: any value, or none, parses. */
    v = sa_json("token_uri", json_string("http://169.254.169.254/evil"));
    assert_true(gcpkey_parse(v, strlen(v), &k, NULL));
    free(v);
    v = sa_json("token_uri", NULL);
    assert_true(gcpkey_parse(v, strlen(v), &k, NULL));
    free(v);
}

/* Each refusal names its part with a fixed sentence: never a byte of the value. */
static void expect_refused(const char *v, size_t len, const char *part)
{
    const char *why = NULL;
    struct gcpkey k;
    memset(&k, 0x5a, sizeof(k));
    assert_false(gcpkey_parse(v, len, &k, &why));
    assert_non_null(why);
    if (part != NULL && strstr(why, part) == NULL) {
        fail_msg("reason '%s' does not name %s", why, part);
    }
    assert_null(strstr(why, KID));
    assert_null(strstr(why, "MII"));
    assert_null(strstr(why, "byok-test"));
    char *c = NULL;
    size_t n = 0;
    if (part == NULL || strstr(why, "JSON") != NULL) {
        assert_int_equal(gcpkey_compact(v, len, &c, &n), ERR_INVAL);
        assert_null(c);
    }
    char *jwt = NULL;
    assert_int_equal(gcpkey_jwt(v, len, AUD, GCPTOKEN_SCOPE, 1795846500, &jwt, &n), ERR_INVAL);
    assert_null(jwt);
}

static void refuse_with(const char *field, json_t *value, const char *part)
{
    char *v = sa_json(field, value);
    expect_refused(v, strlen(v), part);
    free(v);
}

static char *pem_of_bits(const char *alg, int bits)
{
    EVP_PKEY *k = strcmp(alg, "RSA") == 0 ? EVP_RSA_gen((unsigned)bits)
                                          : EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(k);
    char *p = pem_of(k);
    EVP_PKEY_free(k);
    return p;
}

static void test_parse_refused(void **state)
{
    (void)state;
    expect_refused("{", 1, "JSON");
    expect_refused("[1,2]", 5, "JSON");
    expect_refused("{\"type\":\"service_account\"} trailing", 35, "JSON");
    expect_refused("", 0, "JSON");
    const char dup[] = "{\"type\":\"service_account\",\"type\":\"service_account\"}";
    expect_refused(dup, sizeof(dup) - 1, "JSON");
    refuse_with("type", json_string("authorized_user"), "type");
    refuse_with("type", NULL, "type");
    refuse_with("type", json_integer(1), "type");
    refuse_with("project_id", NULL, "project_id");
    refuse_with("project_id", json_string("Bad_Project"), "project_id");
    refuse_with("project_id", json_string("short"), "project_id");
    refuse_with("project_id", json_string("a-project-id-that-is-far-too-long-1"), "project_id");
    refuse_with("project_id", json_string("../../x-project"), "project_id");
    refuse_with("project_id", json_string("1project"), "project_id");
    refuse_with("project_id", json_string("project-"), "project_id");
    refuse_with("client_email", NULL, "client_email");
    refuse_with("client_email", json_string("no-at-sign"), "client_email");
    refuse_with("client_email", json_string("a@b@c"), "client_email");
    refuse_with("client_email", json_string("sp ace@x.com"), "client_email");
    refuse_with("private_key_id", NULL, "private_key_id");
    refuse_with("private_key_id", json_string(""), "private_key_id");
    refuse_with("private_key_id", json_string("abc\"def"), "private_key_id");
    char long_kid[GCPKEY_MAX_KEY_ID + 2];
    memset(long_kid, 'a', sizeof(long_kid) - 1);
    long_kid[sizeof(long_kid) - 1] = '\0';
    refuse_with("private_key_id", json_string(long_kid), "private_key_id");
    refuse_with("private_key", NULL, "private_key");
    refuse_with("private_key", json_string("not a pem"), "private_key");
    refuse_with("private_key",
                json_string("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
                "private_key");
    /* A PEM cut when pasted. */
    char *cut = strndup(test_pem, strlen(test_pem) / 2);
    refuse_with("private_key", json_string(cut), "private_key");
    free(cut);
    char *ec = pem_of_bits("EC", 0);
    refuse_with("private_key", json_string(ec), "RSA");
    free(ec);
    char *small = pem_of_bits("RSA", 1024);
    refuse_with("private_key", json_string(small), "2048");
    free(small);
    /* A traditional "BEGIN RSA PRIVATE KEY" is not what Google's key files hold. */
    refuse_with("private_key", json_string("-----BEGIN RSA PRIVATE KEY-----\n"), "PKCS#8");
}

/*
 * The PEM of der (der_len bytes) with the given line length and line break,
 * pre before the BEGIN line and post after the END line; malloc'd.
 */
static char *pem_text(const unsigned char *der, size_t der_len, size_t line, const char *nl,
                      const char *pre, const char *post)
{
    size_t b64_size = 4 * ((der_len + 2) / 3) + 1;
    char *b64 = malloc(b64_size);
    assert_non_null(b64);
    int n = EVP_EncodeBlock((unsigned char *)b64, der, (int)der_len);
    assert_true(n > 0);
    size_t size = strlen(pre) + strlen(post) + 64 + (size_t)n + ((size_t)n / line + 3) * 2;
    char *out = malloc(size);
    assert_non_null(out);
    size_t used = (size_t)snprintf(out, size, "%s-----BEGIN PRIVATE KEY-----%s", pre, nl);
    for (size_t i = 0; i < (size_t)n; i += line) {
        size_t take = (size_t)n - i < line ? (size_t)n - i : line;
        used += (size_t)snprintf(out + used, size - used, "%.*s%s", (int)take, b64 + i, nl);
    }
    snprintf(out + used, size - used, "-----END PRIVATE KEY-----%s", post);
    free(b64);
    return out;
}

/* The test key's PKCS#8 DER; *ret_len bytes, malloc'd. */
static unsigned char *test_der(size_t extra, size_t *ret_len)
{
    unsigned char *der = NULL;
    PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(test_pkey);
    assert_non_null(p8);
    int n = i2d_PKCS8_PRIV_KEY_INFO(p8, NULL);
    assert_true(n > 0);
    der = calloc(1, (size_t)n + extra);
    assert_non_null(der);
    unsigned char *p = der;
    assert_int_equal(i2d_PKCS8_PRIV_KEY_INFO(p8, &p), n);
    PKCS8_PRIV_KEY_INFO_free(p8);
    *ret_len = (size_t)n + extra;
    return der;
}

static void accept_pem(const char *pem)
{
    char *v = sa_json("private_key", json_string(pem));
    struct gcpkey k;
    const char *why = NULL;
    if (!gcpkey_parse(v, strlen(v), &k, &why)) {
        fail_msg("refused: %s", why);
    }
    assert_int_equal(k.bits, 2048);
    char *jwt = NULL;
    size_t n = 0;
    assert_int_equal(gcpkey_jwt(v, strlen(v), AUD, GCPTOKEN_SCOPE, 1795846500, &jwt, &n), ERR_OK);
    free(jwt);
    free(v);
}

/*
 * The PEM is read strictly (RFC 7468): the BEGIN PRIVATE KEY line first, base64
 * lines (any length, \n or \r\n), the END line, then only line breaks; the
 * base64 and the DER exactly, nothing after either. An encrypted key is
 * refused without asking for a passphrase.
 */
static void test_pem_armour(void **state)
{
    (void)state;
    size_t dl = 0;
    unsigned char *der = test_der(0, &dl);
    /* What gcloud writes, and the same with \r\n, one long line, no final newline. */
    char *p = pem_text(der, dl, 64, "\n", "", "\n");
    assert_string_equal(p, test_pem);
    accept_pem(p);
    free(p);
    p = pem_text(der, dl, 64, "\r\n", "", "\r\n");
    accept_pem(p);
    free(p);
    p = pem_text(der, dl, 4096, "\n", "", "");
    accept_pem(p);
    free(p);
    p = pem_text(der, dl, 76, "\n", "", "\n\n");
    accept_pem(p);
    free(p);

    /* Armour: text before BEGIN or after END, another label, a missing or cut line. */
    const char *armour = "PKCS#8";
    p = pem_text(der, dl, 64, "\n", "Bag Attributes\n", "\n");
    refuse_with("private_key", json_string(p), armour);
    free(p);
    p = pem_text(der, dl, 64, "\n", " ", "\n");
    refuse_with("private_key", json_string(p), armour);
    free(p);
    p = pem_text(der, dl, 64, "\n", "", "\ntrailing junk\n");
    refuse_with("private_key", json_string(p), armour);
    free(p);
    p = pem_text(der, dl, 64, "\n", "", " \n");
    refuse_with("private_key", json_string(p), armour);
    free(p);
    p = pem_text(der, dl, 64, "\n", "", "\n-----BEGIN PRIVATE KEY-----\n");
    refuse_with("private_key", json_string(p), armour);
    free(p);
    p = pem_text(der, dl, 64, "\n", "", "\n");
    char *end = strstr(p, "-----END");
    assert_non_null(end);
    end[-1] = 'A'; /* the END line joined to the last base64 line */
    refuse_with("private_key", json_string(p), armour);
    *end = '\0'; /* no END line */
    refuse_with("private_key", json_string(p), armour);
    free(p);
    refuse_with("private_key",
                json_string("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"), "PEM");
    refuse_with("private_key", json_string("-----BEGIN PRIVATE KEY----------END PRIVATE KEY-----"),
                armour);

    /* Base64: a stray character, a space, padding in the middle, a length not a multiple of 4. */
    const char *b64 = "does not parse";
    p = pem_text(der, dl, 64, "\n", "", "\n");
    char *body = strchr(p, '\n') + 1;
    char save = body[100];
    body[100] = '*';
    refuse_with("private_key", json_string(p), b64);
    body[100] = ' ';
    refuse_with("private_key", json_string(p), b64);
    body[100] = '=';
    refuse_with("private_key", json_string(p), b64);
    body[100] = save;
    memmove(body + 100, body + 101, strlen(body + 101) + 1);
    refuse_with("private_key", json_string(p), b64);
    free(p);
    /* A header line (RFC 1421 encryption, which PKCS#8 PEM never has). */
    p = pem_text(der, dl, 64, "\n", "", "\n");
    size_t bl = strlen("-----BEGIN PRIVATE KEY-----\n");
    const char hdr[] =
        "Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n\n";
    char *with_hdr = malloc(strlen(p) + sizeof(hdr));
    assert_non_null(with_hdr);
    snprintf(with_hdr, strlen(p) + sizeof(hdr), "%.*s%s%s", (int)bl, p, hdr, p + bl);
    refuse_with("private_key", json_string(with_hdr), b64);
    free(with_hdr);
    free(p);

    /* DER: bytes after the PrivateKeyInfo, or a PrivateKeyInfo cut short. */
    free(der);
    der = test_der(4, &dl);
    p = pem_text(der, dl, 64, "\n", "", "\n");
    refuse_with("private_key", json_string(p), b64);
    free(p);
    p = pem_text(der, dl - 8, 64, "\n", "", "\n");
    refuse_with("private_key", json_string(p), b64);
    free(p);
    free(der);

    /* An encrypted PKCS#8 key: refused by its label, never a passphrase prompt. */
    BIO *b = BIO_new(BIO_s_mem());
    assert_non_null(b);
    assert_int_equal(
        PEM_write_bio_PKCS8PrivateKey(b, test_pkey, EVP_aes_256_cbc(), "pass", 4, NULL, NULL), 1);
    char *ep = NULL;
    long en = BIO_get_mem_data(b, &ep);
    char *enc = strndup(ep, (size_t)en);
    BIO_free(b);
    assert_non_null(enc);
    assert_non_null(strstr(enc, "-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    refuse_with("private_key", json_string(enc), armour);
    /* The same body under the plain label: its DER is not a PrivateKeyInfo. */
    char *plain = malloc(strlen(enc) + 1);
    assert_non_null(plain);
    const char *eb = strchr(enc, '\n') + 1;
    const char *ee = strstr(eb, "-----END");
    snprintf(plain, strlen(enc) + 1, "-----BEGIN PRIVATE KEY-----\n%.*s-----END PRIVATE KEY-----\n",
             (int)(ee - eb), eb);
    refuse_with("private_key", json_string(plain), b64);
    free(plain);
    free(enc);

    /* Another algorithm in PKCS#8 is named as such. */
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    assert_non_null(ed);
    char *edp = pem_of(ed);
    EVP_PKEY_free(ed);
    refuse_with("private_key", json_string(edp), "RSA");
    free(edp);
}

/* The size cap: a value of exactly GCPKEY_MAX_JSON bytes parses, one more does not. */
static void test_parse_size_limit(void **state)
{
    (void)state;
    char *base = sa_json(NULL, NULL);
    size_t bl = strlen(base);
    char *v = malloc(GCPKEY_MAX_JSON + 2);
    assert_non_null(v);
    /* Pad with spaces before the closing brace: still the same JSON. */
    size_t close = bl - 1;
    assert_int_equal(base[close], '}');
    memcpy(v, base, close);
    memset(v + close, ' ', GCPKEY_MAX_JSON - bl);
    v[GCPKEY_MAX_JSON - 1] = '}';
    assert_true(gcpkey_parse(v, GCPKEY_MAX_JSON, NULL, NULL));
    memcpy(v, base, close);
    memset(v + close, ' ', GCPKEY_MAX_JSON + 1 - bl);
    v[GCPKEY_MAX_JSON] = '}';
    expect_refused(v, GCPKEY_MAX_JSON + 1, "8192");
    free(v);
    free(base);
}

static void test_compact(void **state)
{
    (void)state;
    char *v = sa_json(NULL, NULL);
    char *c = NULL;
    size_t n = 0;
    assert_int_equal(gcpkey_compact(v, strlen(v), &c, &n), ERR_OK);
    assert_int_equal(strlen(c), n);
    assert_null(strchr(c, '\n'));
    assert_null(strchr(c, '\r'));
    assert_null(strchr(c, '\t'));
    assert_true(n < strlen(v));
    assert_true(gcpkey_is_sa(c, n));
    struct gcpkey k;
    assert_true(gcpkey_parse(c, n, &k, NULL));
    assert_string_equal(k.client_email, EMAIL);
    json_t *a = json_loads(v, 0, NULL), *b = json_loads(c, 0, NULL);
    assert_true(json_equal(a, b));
    json_decref(a);
    json_decref(b);
    /* Compact twice: the same bytes. */
    char *c2 = NULL;
    size_t n2 = 0;
    assert_int_equal(gcpkey_compact(c, n, &c2, &n2), ERR_OK);
    assert_int_equal(n, n2);
    assert_memory_equal(c, c2, n);
    free(c);
    free(c2);
    free(v);
}

static json_t *b64url_json(const char *s, size_t n)
{
    char *t = malloc(n + 4);
    assert_non_null(t);
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        t[len++] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
    }
    while (len % 4 != 0) {
        t[len++] = '=';
    }
    unsigned char out[4096];
    int w = EVP_DecodeBlock(out, (unsigned char *)t, (int)len);
    assert_true(w > 0);
    size_t pad = 0;
    while (len > 0 && t[len - 1] == '=') {
        pad++;
        len--;
    }
    free(t);
    return json_loadb((const char *)out, (size_t)w - pad, 0, NULL);
}

static void test_jwt(void **state)
{
    (void)state;
    char *v = sa_json(NULL, NULL);
    char *jwt = NULL;
    size_t n = 0;
    assert_int_equal(gcpkey_jwt(v, strlen(v), AUD, GCPTOKEN_SCOPE, 1795846500, &jwt, &n), ERR_OK);
    assert_int_equal(strlen(jwt), n);
    /* Form-safe: base64url and two dots only. */
    assert_int_equal(
        strspn(jwt, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."), n);
    char *d1 = strchr(jwt, '.');
    assert_non_null(d1);
    char *d2 = strchr(d1 + 1, '.');
    assert_non_null(d2);
    assert_null(strchr(d2 + 1, '.'));
    json_t *h = b64url_json(jwt, (size_t)(d1 - jwt));
    json_t *want_h = json_pack("{ssssss}", "alg", "RS256", "typ", "JWT", "kid", KID);
    assert_true(json_equal(h, want_h));
    json_t *c = b64url_json(d1 + 1, (size_t)(d2 - d1 - 1));
    json_t *want_c =
        json_pack("{sssssssssIsI}", "iss", EMAIL, "sub", EMAIL, "aud", AUD, "scope", GCPTOKEN_SCOPE,
                  "iat", (json_int_t)1795846500, "exp", (json_int_t)(1795846500 + 3600));
    assert_true(json_equal(c, want_c));
    json_decref(h);
    json_decref(want_h);
    json_decref(c);
    json_decref(want_c);
    /* The signature: RS256 over header.claims, verified with the public key. */
    size_t sl = strlen(d2 + 1);
    char *t = malloc(sl + 4);
    size_t tl = 0;
    for (size_t i = 0; i < sl; i++) {
        t[tl++] = d2[1 + i] == '-' ? '+' : d2[1 + i] == '_' ? '/' : d2[1 + i];
    }
    while (tl % 4 != 0) {
        t[tl++] = '=';
    }
    unsigned char sig[512];
    int sw = EVP_DecodeBlock(sig, (unsigned char *)t, (int)tl);
    free(t);
    assert_int_equal(sw - (sw % 256), 256);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, test_pkey), 1);
    assert_int_equal(EVP_DigestVerify(md, sig, 256, (const unsigned char *)jwt, (size_t)(d2 - jwt)),
                     1);
    /* A changed claim fails the check. */
    jwt[(d1 - jwt) + 3] ^= 1;
    assert_int_not_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, test_pkey), 0);
    assert_int_not_equal(
        EVP_DigestVerify(md, sig, 256, (const unsigned char *)jwt, (size_t)(d2 - jwt)), 1);
    EVP_MD_CTX_free(md);
    free(jwt);
    /* Bad audience or scope: refused, nothing made. */
    jwt = (char *)1;
    assert_int_equal(gcpkey_jwt(v, strlen(v), "", GCPTOKEN_SCOPE, 1, &jwt, &n), ERR_INVAL);
    assert_null(jwt);
    assert_int_equal(gcpkey_jwt(v, strlen(v), AUD, NULL, 1, &jwt, &n), ERR_INVAL);
    char big[GCPKEY_MAX_CLAIM + 2];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(gcpkey_jwt(v, strlen(v), big, GCPTOKEN_SCOPE, 1, &jwt, &n), ERR_INVAL);
    /* At the limit it is made. */
    big[GCPKEY_MAX_CLAIM] = '\0';
    assert_int_equal(gcpkey_jwt(v, strlen(v), big, GCPTOKEN_SCOPE, 1, &jwt, &n), ERR_OK);
    free(jwt);
    free(v);
}

/* jansson failing at each allocation: a clean error, or the whole result. */
static void test_oom(void **state)
{
    (void)state;
    char *v = sa_json(NULL, NULL);
    size_t vl = strlen(v);
    char *ref = NULL;
    size_t ref_n = 0;
    assert_int_equal(gcpkey_compact(v, vl, &ref, &ref_n), ERR_OK);
    json_t *ereq = json_loads("{\"input\":[\"a b\",\"c\"],\"dimensions\":64,\"task_type\":"
                              "\"CLUSTERING\"}",
                              0, NULL);
    json_t *eans = json_loads("{\"predictions\":[{\"embeddings\":{\"statistics\":{\"token_count\":"
                              "2},\"values\":[0.5,1]}},{\"embeddings\":{\"values\":[2]}}]}",
                              0, NULL);
    json_t *eref[2] = {NULL, NULL};
    struct provider_usage eu;
    assert_int_equal(provider_vertex_embed_request(ereq, "text-embedding-005", NULL, &eref[0]),
                     ERR_OK);
    assert_int_equal(provider_vertex_embed_answer(eans, "m", &eref[1], &eu), ERR_OK);
    bool fired = true;
    for (long n = 1; fired && n < 100000; n++) {
        oom_fired = false;
        oom_countdown = n;
        json_set_alloc_funcs(oom_malloc, free);
        struct gcpkey k;
        bool ok = gcpkey_parse(v, vl, &k, NULL);
        char *c = NULL, *jwt = NULL;
        size_t cn = 0, jn = 0;
        enum err ce = gcpkey_compact(v, vl, &c, &cn);
        enum err je = gcpkey_jwt(v, vl, AUD, GCPTOKEN_SCOPE, 1795846500, &jwt, &jn);
        struct secret *tok = NULL;
        long exp = 0;
        const char ans[] =
            "{\"access_token\":\"ya29.x\",\"expires_in\":3599,\"token_type\":\"Bearer\"}";
        enum err te = gcptoken_parse_answer(ans, sizeof(ans) - 1, &tok, &exp);
        json_t *eg[2] = {NULL, NULL};
        enum err ee[2];
        ee[0] = provider_vertex_embed_request(ereq, "text-embedding-005", NULL, &eg[0]);
        ee[1] = provider_vertex_embed_answer(eans, "m", &eg[1], &eu);
        fired = oom_fired;
        json_set_alloc_funcs(malloc, free);
        oom_countdown = 0;
        if (ok) {
            assert_string_equal(k.client_email, EMAIL);
        }
        assert_true(ce == ERR_OK || ce == ERR_NOMEM || ce == ERR_INVAL);
        if (ce == ERR_OK) {
            assert_int_equal(cn, ref_n);
            assert_memory_equal(c, ref, cn);
        } else {
            assert_null(c);
        }
        assert_true(je == ERR_OK || je == ERR_NOMEM || je == ERR_INVAL);
        if (je != ERR_OK) {
            assert_null(jwt);
        }
        assert_true(te == ERR_OK || te == ERR_PROTO);
        if (te == ERR_OK) {
            assert_int_equal(exp, 3599);
            assert_memory_equal(tok->data, "ya29.x", 6);
        } else {
            assert_null(tok);
        }
        secret_free(&tok);
        free(c);
        free(jwt);
        for (int i = 0; i < 2; i++) {
            assert_true(ee[i] == ERR_OK || ee[i] == ERR_NOMEM);
            if (ee[i] == ERR_OK) {
                assert_true(json_equal(eg[i], eref[i]));
            } else {
                assert_null(eg[i]);
            }
            json_decref(eg[i]);
        }
    }
    assert_false(fired);
    json_decref(eref[0]);
    json_decref(eref[1]);
    json_decref(ereq);
    json_decref(eans);
    free(ref);
    free(v);
}

static void test_token_answer(void **state)
{
    (void)state;
    struct secret *t = NULL;
    long exp = 0;
#define ANS(s) gcptoken_parse_answer(s, strlen(s), &t, &exp)
    assert_int_equal(
        ANS("{\"access_token\":\"ya29.abc\",\"expires_in\":3599,\"token_type\":\"Bearer\"}"),
        ERR_OK);
    assert_int_equal(t->len, 8);
    assert_memory_equal(t->data, "ya29.abc", 8);
    assert_int_equal(exp, 3599);
    secret_free(&t);
    assert_int_equal(ANS("{\"access_token\":\"ya29.abc\",\"expires_in\":1}"), ERR_OK);
    secret_free(&t);
    static const char *const bad[] = {
        "",
        "not json",
        "[]",
        "{\"expires_in\":3599}",
        "{\"access_token\":\"\",\"expires_in\":3599}",
        "{\"access_token\":\"ya29 abc\",\"expires_in\":3599}",
        "{\"access_token\":\"ya29\\nabc\",\"expires_in\":3599}",
        "{\"access_token\":\"ya29\\u00e9\",\"expires_in\":3599}",
        "{\"access_token\":7,\"expires_in\":3599}",
        "{\"access_token\":\"ya29.abc\"}",
        "{\"access_token\":\"ya29.abc\",\"expires_in\":0}",
        "{\"access_token\":\"ya29.abc\",\"expires_in\":-5}",
        "{\"access_token\":\"ya29.abc\",\"expires_in\":86401}",
        "{\"access_token\":\"ya29.abc\",\"expires_in\":\"3599\"}",
        "{\"access_token\":\"ya29.abc\",\"expires_in\":3599,\"token_type\":\"mac\"}",
        "{\"access_token\":\"ya29.abc\",\"expires_in\":3599,\"token_type\":1}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(ANS(bad[i]), ERR_PROTO);
        assert_null(t);
    }
    /* The longest token, and one past it. */
    char *big = malloc(GCPTOKEN_MAX_TOKEN + 100);
    int n = snprintf(big, GCPTOKEN_MAX_TOKEN + 100, "{\"access_token\":\"%0*d\",\"expires_in\":9}",
                     GCPTOKEN_MAX_TOKEN, 0);
    assert_true(n > 0);
    assert_int_equal(ANS(big), ERR_OK);
    assert_int_equal(t->len, GCPTOKEN_MAX_TOKEN);
    secret_free(&t);
    snprintf(big, GCPTOKEN_MAX_TOKEN + 100, "{\"access_token\":\"%0*d\",\"expires_in\":9}",
             GCPTOKEN_MAX_TOKEN + 1, 0);
    assert_int_equal(ANS(big), ERR_PROTO);
    free(big);
    /* An answer past GCPTOKEN_MAX_ANSWER is not read. */
    assert_int_equal(gcptoken_parse_answer("{}", GCPTOKEN_MAX_ANSWER + 1, &t, &exp), ERR_PROTO);
#undef ANS
}

static void test_token_lifetime_and_form(void **state)
{
    (void)state;
    assert_int_equal(gcptoken_lifetime(3599), 3599 - GCPTOKEN_REFRESH_S);
    assert_int_equal(gcptoken_lifetime(601), 601 - GCPTOKEN_REFRESH_S);
    assert_int_equal(gcptoken_lifetime(600), 300);
    assert_int_equal(gcptoken_lifetime(4), 2);
    assert_int_equal(gcptoken_lifetime(1), 1);
    assert_int_equal(gcptoken_lifetime(0), 0);
    char *f = NULL;
    size_t n = 0;
    assert_int_equal(gcptoken_form("a.b.c", 5, &f, &n), ERR_OK);
    assert_string_equal(
        f, "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion="
           "a.b.c");
    assert_int_equal(n, strlen(f));
    free(f);
}

static void prefix_is(const char *entry, const char *metadata, const char *want, bool local)
{
    json_t *e = json_loads(entry, 0, NULL);
    json_t *m = metadata != NULL ? json_loads(metadata, 0, NULL) : NULL;
    char out[UPSTREAM_MAX_URL];
    bool l = !local;
    assert_int_equal(provider_vertex_sa_prefix(e, m, PROJECT, out, sizeof(out), &l), ERR_OK);
    assert_string_equal(out, want);
    assert_int_equal(l, local);
    json_decref(e);
    json_decref(m);
}

static void test_sa_prefix(void **state)
{
    (void)state;
    const char *builtin = "{\"base_url\":\"https://aiplatform.googleapis.com/v1\"}";
    prefix_is(builtin, NULL,
              "https://us-central1-aiplatform.googleapis.com/v1/projects/" PROJECT
              "/locations/us-central1",
              false);
    prefix_is(builtin, "{\"region\":\"europe-west4\"}",
              "https://europe-west4-aiplatform.googleapis.com/v1/projects/" PROJECT
              "/locations/europe-west4",
              false);
    prefix_is(builtin, "{\"region\":\"global\"}",
              "https://aiplatform.googleapis.com/v1/projects/" PROJECT "/locations/global", false);
    /* A region that is no location name is not put into a URL: the default instead. */
    prefix_is(builtin, "{\"region\":\"../evil\"}",
              "https://us-central1-aiplatform.googleapis.com/v1/projects/" PROJECT
              "/locations/us-central1",
              false);
    prefix_is("{\"base_url\":\"https://us-east5-aiplatform.googleapis.com/v1/projects/fixed/"
              "locations/us-east5/\"}",
              NULL,
              "https://us-east5-aiplatform.googleapis.com/v1/projects/fixed/locations/us-east5",
              false);
    prefix_is("{\"base_url\":\"http://127.0.0.1:8080/v1/\",\"local\":true}",
              "{\"region\":\"asia-northeast1\"}",
              "http://127.0.0.1:8080/v1/projects/" PROJECT "/locations/asia-northeast1", true);
    /* A host that merely starts like Google's is not rewritten. */
    prefix_is("{\"base_url\":\"https://aiplatform.googleapis.com.evil.example/v1\"}", NULL,
              "https://aiplatform.googleapis.com.evil.example/v1/projects/" PROJECT
              "/locations/us-central1",
              false);
    json_t *e = json_loads("{\"base_url\":\"http://example.com/v1\"}", 0, NULL);
    char out[64];
    bool l;
    assert_int_equal(provider_vertex_sa_prefix(e, NULL, PROJECT, out, sizeof(out), &l), ERR_CONFIG);
    json_decref(e);
    e = json_loads("{\"base_url\":\"https://aiplatform.googleapis.com/v1\"}", 0, NULL);
    assert_int_equal(provider_vertex_sa_prefix(e, NULL, PROJECT, out, 20, &l), ERR_TOOBIG);
    json_decref(e);
}

static bool has_line(const struct curl_slist *l, const char *prefix)
{
    for (; l != NULL; l = l->next) {
        if (strncmp(l->data, prefix, strlen(prefix)) == 0) {
            return true;
        }
    }
    return false;
}

static void test_build_with_sa_key(void **state)
{
    (void)state;
    char *v = sa_json(NULL, NULL);
    char *c = NULL;
    size_t n = 0;
    assert_int_equal(gcpkey_compact(v, strlen(v), &c, &n), ERR_OK);
    struct secret *key = secret_from(c, n);
    struct secret *tok = secret_from("ya29.canary-token", 17);
    free(c);
    free(v);
    json_t *entry = json_loads("{\"base_url\":\"https://aiplatform.googleapis.com/v1/\"}", 0, NULL);
    json_t *md = json_loads("{\"region\":\"europe-west1\"}", 0, NULL);
    json_t *req = json_loads("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", 0, NULL);
    const struct provider_adapter *ad = provider_find("vertex");
    for (int s = 0; s < 2; s++) {
        struct provider_call pc = {.op = PROVIDER_CHAT,
                                   .req = req,
                                   .model = "gemini-2.5-flash",
                                   .stream = s == 1,
                                   .entry = entry,
                                   .metadata = md,
                                   .key = key,
                                   .token = tok,
                                   .default_max_tokens = 16};
        struct provider_http h;
        memset(&h, 0, sizeof(h));
        assert_int_equal(ad->build(&pc, &h), ERR_OK);
        assert_string_equal(h.url, s == 0 ? "https://europe-west1-aiplatform.googleapis.com/v1/"
                                            "projects/" PROJECT "/locations/europe-west1/"
                                            "publishers/google/models/gemini-2.5-flash:"
                                            "generateContent"
                                          : "https://europe-west1-aiplatform.googleapis.com/v1/"
                                            "projects/" PROJECT "/locations/europe-west1/"
                                            "publishers/google/models/gemini-2.5-flash:"
                                            "streamGenerateContent?alt=sse");
        assert_true(has_line(h.headers, "Authorization: Bearer ya29.canary-token"));
        assert_false(has_line(h.headers, "x-goog-api-key"));
        /* Nothing of the key in the URL, the body or a header. */
        for (const struct curl_slist *l = h.headers; l != NULL; l = l->next) {
            assert_null(strstr(l->data, "PRIVATE"));
            assert_null(strstr(l->data, KID));
        }
        assert_null(memmem(h.body, h.body_len, "PRIVATE", 7));
        assert_null(strstr(h.url, KID));
        provider_http_done(&h);
    }
    /* Without a token (never traded): a configuration error, nothing built. */
    struct provider_call pc = {.op = PROVIDER_CHAT,
                               .req = req,
                               .model = "gemini-2.5-flash",
                               .entry = entry,
                               .key = key,
                               .default_max_tokens = 16};
    struct provider_http h;
    memset(&h, 0, sizeof(h));
    assert_int_equal(ad->build(&pc, &h), ERR_CONFIG);
    provider_http_done(&h);
    secret_free(&key);
    secret_free(&tok);
    json_decref(entry);
    json_decref(md);
    json_decref(req);
}

static json_t *JL(const char *t)
{
    json_t *j = json_loads(t, 0, NULL);
    assert_non_null(j);
    return j;
}

static void embed_is(const char *model, const char *req, const char *want)
{
    json_t *r = JL(req);
    json_t *got = NULL;
    struct provider_bad bad;
    memset(&bad, 0, sizeof(bad));
    assert_int_equal(provider_vertex_embed_request(r, model, &bad, &got), ERR_OK);
    json_t *w = JL(want);
    if (!json_equal(got, w)) {
        char *g = json_dumps(got, JSON_SORT_KEYS);
        fail_msg("got %s", g);
    }
    json_decref(w);
    json_decref(got);
    json_decref(r);
}

static void embed_refused(const char *model, const char *req, enum err want, const char *param)
{
    json_t *r = JL(req);
    json_t *got = NULL;
    struct provider_bad bad;
    memset(&bad, 0, sizeof(bad));
    assert_int_equal(provider_vertex_embed_request(r, model, &bad, &got), want);
    assert_null(got);
    if (param != NULL) {
        assert_string_equal(bad.param, param);
        assert_true(bad.msg[0] != '\0');
    }
    json_decref(r);
}

static void test_embed_request(void **state)
{
    (void)state;
    embed_is(
        "text-embedding-005", "{\"input\":\"alpha beta\"}",
        "{\"instances\":[{\"content\":\"alpha beta\"}],\"parameters\":{\"autoTruncate\":false}}");
    embed_is("text-multilingual-embedding-002",
             "{\"input\":[\"a\",\"b c\"],\"dimensions\":256,\"task_type\":\"RETRIEVAL_DOCUMENT\","
             "\"encoding_format\":\"float\",\"model\":\"x\",\"user\":\"u\"}",
             "{\"instances\":[{\"content\":\"a\",\"task_type\":\"RETRIEVAL_DOCUMENT\"},"
             "{\"content\":\"b c\",\"task_type\":\"RETRIEVAL_DOCUMENT\"}],"
             "\"parameters\":{\"autoTruncate\":false,\"outputDimensionality\":256}}");
    embed_is("gemini-embedding-001", "{\"input\":[\"one\"],\"dimensions\":3072}",
             "{\"instances\":[{\"content\":\"one\"}],\"parameters\":{\"autoTruncate\":false,"
             "\"outputDimensionality\":3072}}");
    embed_is("text-embedding-005", "{\"input\":\"x\",\"dimensions\":null,\"task_type\":null}",
             "{\"instances\":[{\"content\":\"x\"}],\"parameters\":{\"autoTruncate\":false}}");
    /* gemini-embedding takes one text: a batch goes to another candidate. */
    embed_refused("gemini-embedding-001", "{\"input\":[\"a\",\"b\"]}", ERR_UNSUPPORTED, NULL);
    embed_refused("text-embedding-005", "{\"input\":[1,2,3]}", ERR_UNSUPPORTED, NULL);
    embed_refused("text-embedding-005", "{\"input\":[[1,2]]}", ERR_UNSUPPORTED, NULL);
    embed_refused("text-embedding-005", "{\"input\":[]}", ERR_INVAL, "input");
    embed_refused("text-embedding-005", "{\"input\":7}", ERR_INVAL, "input");
    embed_refused("text-embedding-005", "{}", ERR_INVAL, "input");
    embed_refused("text-embedding-005", "{\"input\":\"x\",\"encoding_format\":\"base64\"}",
                  ERR_INVAL, "encoding_format");
    embed_refused("text-embedding-005", "{\"input\":\"x\",\"dimensions\":769}", ERR_INVAL,
                  "dimensions");
    embed_refused("text-embedding-005", "{\"input\":\"x\",\"dimensions\":0}", ERR_INVAL,
                  "dimensions");
    embed_refused("text-embedding-005", "{\"input\":\"x\",\"dimensions\":\"256\"}", ERR_INVAL,
                  "dimensions");
    embed_refused("gemini-embedding-001", "{\"input\":\"x\",\"dimensions\":3073}", ERR_INVAL,
                  "dimensions");
    embed_refused("text-embedding-005", "{\"input\":\"x\",\"task_type\":\"retrieval_query\"}",
                  ERR_INVAL, "task_type");
    embed_refused("text-embedding-005", "{\"input\":\"x\",\"task_type\":3}", ERR_INVAL,
                  "task_type");
    /* 250 texts, and one past. */
    json_t *r = json_pack("{s:[]}", "input");
    for (int i = 0; i < VERTEX_MAX_EMBED_TEXTS; i++) {
        json_array_append_new(json_object_get(r, "input"), json_string("t"));
    }
    json_t *got = NULL;
    struct provider_bad bad;
    memset(&bad, 0, sizeof(bad));
    assert_int_equal(provider_vertex_embed_request(r, "text-embedding-005", &bad, &got), ERR_OK);
    assert_int_equal(json_array_size(json_object_get(got, "instances")), VERTEX_MAX_EMBED_TEXTS);
    json_decref(got);
    json_array_append_new(json_object_get(r, "input"), json_string("t"));
    got = NULL;
    assert_int_equal(provider_vertex_embed_request(r, "text-embedding-005", &bad, &got), ERR_INVAL);
    assert_string_equal(bad.param, "input");
    assert_null(got);
    json_decref(r);
}

static void test_embed_answer(void **state)
{
    (void)state;
    json_t *a = JL("{\"predictions\":[{\"embeddings\":{\"statistics\":{\"truncated\":false,"
                   "\"token_count\":6},\"values\":[0.1,-0.2,3]}},{\"embeddings\":{\"statistics\":"
                   "{\"token_count\":4.0},\"values\":[1,2,3]}}],\"metadata\":{"
                   "\"billableCharacterCount\":20}}");
    json_t *out = NULL;
    struct provider_usage u;
    memset(&u, 0, sizeof(u));
    assert_int_equal(provider_vertex_embed_answer(a, "text-embedding-005", &out, &u), ERR_OK);
    json_t *want = JL("{\"object\":\"list\",\"model\":\"text-embedding-005\",\"data\":["
                      "{\"object\":\"embedding\",\"index\":0,\"embedding\":[0.1,-0.2,3]},"
                      "{\"object\":\"embedding\",\"index\":1,\"embedding\":[1,2,3]}],"
                      "\"usage\":{\"prompt_tokens\":10,\"total_tokens\":10}}");
    assert_true(json_equal(out, want));
    assert_true(u.seen);
    assert_int_equal(u.prompt_tokens, 10);
    assert_int_equal(u.completion_tokens, 0);
    json_decref(want);
    json_decref(out);
    json_decref(a);
    /* Counts from a peer are bounded; a missing count is 0. */
    a = JL("{\"predictions\":[{\"embeddings\":{\"statistics\":{\"token_count\":-5},\"values\":[]}},"
           "{\"embeddings\":{\"statistics\":{\"token_count\":1e300},\"values\":[1]}},"
           "{\"embeddings\":{\"values\":[1]}}]}");
    memset(&u, 0, sizeof(u));
    assert_int_equal(provider_vertex_embed_answer(a, "m", &out, &u), ERR_OK);
    assert_int_equal(u.prompt_tokens, PROVIDER_MAX_TOKENS);
    json_decref(out);
    json_decref(a);
    static const char *const bad[] = {
        "{}",
        "{\"predictions\":[]}",
        "{\"predictions\":{}}",
        "{\"predictions\":[{}]}",
        "{\"predictions\":[{\"embeddings\":{\"values\":{}}}]}",
        "{\"predictions\":[{\"embeddings\":{\"values\":[\"x\"]}}]}",
        "{\"predictions\":[{\"embeddings\":{\"values\":[1]}}, 7]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        a = JL(bad[i]);
        out = NULL;
        assert_int_equal(provider_vertex_embed_answer(a, "m", &out, &u), ERR_PROTO);
        assert_null(out);
        json_decref(a);
    }
    a = JL(
        "{\"error\":{\"code\":400,\"message\":\"AIza-canary\",\"status\":\"INVALID_ARGUMENT\"}}");
    assert_int_equal(provider_vertex_embed_answer(a, "m", &out, &u), ERR_UPSTREAM);
    assert_null(out);
    json_decref(a);
    /* Through the adapter's response function, as the proxy calls it. */
    const struct provider_adapter *ad = provider_find("vertex");
    const char body[] = "{\"predictions\":[{\"embeddings\":{\"statistics\":{\"token_count\":2},"
                        "\"values\":[0.5]}}]}";
    memset(&u, 0, sizeof(u));
    assert_int_equal(ad->response(PROVIDER_EMBEDDINGS, body, sizeof(body) - 1, "m", &out, &u),
                     ERR_OK);
    assert_int_equal(json_array_size(json_object_get(out, "data")), 1);
    assert_int_equal(u.prompt_tokens, 2);
    json_decref(out);
}

static void test_embed_build(void **state)
{
    (void)state;
    char *v = sa_json(NULL, NULL);
    char *c = NULL;
    size_t n = 0;
    assert_int_equal(gcpkey_compact(v, strlen(v), &c, &n), ERR_OK);
    struct secret *key = secret_from(c, n);
    struct secret *api = secret_from("AIzaSyCanary-0123456789abcdefghijklmnopq", 40);
    struct secret *tok = secret_from("ya29.canary-token", 17);
    free(c);
    free(v);
    json_t *entry = JL("{\"base_url\":\"https://aiplatform.googleapis.com/v1\"}");
    json_t *req = JL("{\"model\":\"vertex/text-embedding-005\",\"input\":\"alpha\"}");
    const struct provider_adapter *ad = provider_find("vertex");
    struct provider_call pc = {.op = PROVIDER_EMBEDDINGS,
                               .req = req,
                               .model = "text-embedding-005",
                               .entry = entry,
                               .key = key,
                               .token = tok,
                               .default_max_tokens = 16};
    struct provider_http h;
    memset(&h, 0, sizeof(h));
    assert_int_equal(ad->build(&pc, &h), ERR_OK);
    assert_string_equal(h.url, "https://us-central1-aiplatform.googleapis.com/v1/projects/" PROJECT
                               "/locations/us-central1/publishers/google/models/"
                               "text-embedding-005:predict");
    assert_true(has_line(h.headers, "Authorization: Bearer ya29.canary-token"));
    json_t *body = json_loadb(h.body, h.body_len, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(body, "instances"), 0), "content")),
                        "alpha");
    json_decref(body);
    provider_http_done(&h);
    /* A bad field is named; nothing built. */
    json_object_set_new(req, "dimensions", json_integer(99999));
    memset(&h, 0, sizeof(h));
    assert_int_equal(ad->build(&pc, &h), ERR_INVAL);
    assert_string_equal(h.bad.param, "dimensions");
    provider_http_done(&h);
    json_object_del(req, "dimensions");
    /* An express-mode API key has no embeddings endpoint: unsupported, for the next candidate. */
    pc.key = api;
    pc.token = NULL;
    memset(&h, 0, sizeof(h));
    assert_int_equal(ad->build(&pc, &h), ERR_UNSUPPORTED);
    provider_http_done(&h);
    secret_free(&key);
    secret_free(&api);
    secret_free(&tok);
    json_decref(entry);
    json_decref(req);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_is_sa),
        cmocka_unit_test(test_parse_ok),
        cmocka_unit_test(test_parse_refused),
        cmocka_unit_test(test_pem_armour),
        cmocka_unit_test(test_parse_size_limit),
        cmocka_unit_test(test_compact),
        cmocka_unit_test(test_jwt),
        cmocka_unit_test(test_oom),
        cmocka_unit_test(test_token_answer),
        cmocka_unit_test(test_token_lifetime_and_form),
        cmocka_unit_test(test_sa_prefix),
        cmocka_unit_test(test_build_with_sa_key),
        cmocka_unit_test(test_embed_request),
        cmocka_unit_test(test_embed_answer),
        cmocka_unit_test(test_embed_build),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
