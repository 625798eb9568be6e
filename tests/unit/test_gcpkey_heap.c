/* SPDX-License-Identifier: MPL-2.0 */
/*
 * No piece of a service-account private key is left in memory OpenSSL frees
 * while common/gcpkey.c reads the key (the plugin's check of a written key,
 * its validation, the agent's JWT), nor while it refuses a malformed one.
 * The plugin does not make OpenSSL's free wipe (agent/jalloc.c does, for the
 * agent only), so this program installs an OpenSSL allocator that, before
 * freeing a block, scans it for windows of the key's private integers (as
 * DER bytes and byte-reversed, as BIGNUM limbs hold them on little-endian
 * machines) and of the PEM's base64. jansson's blocks are wiped on free, as
 * the plugin's allocator does (plugin/main.c). A block freed unwiped on
 * purpose shows the scan finds what it looks for.
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

/*
 * Malformed keys. Each case is built from the test key's own integers, so a
 * decoder that copied some of them before giving up would leave them in the
 * blocks it frees; each must be refused with the right reason and leave none.
 * With OpenSSL's ASN.1 templates (what gcpkey.c used before its DER reader)
 * six of them left pieces of the key in freed blocks (d2i_ASN1_SEQUENCE_ANY
 * frees the integers it had read unwiped, crypto/asn1/tasn_dec.c, and so do
 * BER constructed strings cut short), and thirteen were accepted.
 */
#define DER_MAX 4096
struct der {
    unsigned char b[DER_MAX];
    size_t n;
};

/* RSAPrivateKey's nine INTEGERs (RFC 8017 A.1.2) as DER TLVs, from the test key. */
#define RSA_ELEMS 9
static struct der rsa_elem[RSA_ELEMS];

static void der_add(struct der *d, const void *p, size_t n)
{
    assert_true(n <= sizeof(d->b) - d->n);
    memcpy(d->b + d->n, p, n);
    d->n += n;
}

static unsigned char hex_digit(char c)
{
    static const char digits[] = "0123456789abcdef";
    const char *at = c != '\0' ? strchr(digits, c) : NULL;
    assert_non_null(at);
    return (unsigned char)(at - digits);
}

static void der_hex(struct der *d, const char *hex)
{
    for (; hex[0] != '\0'; hex += 2) {
        unsigned char c = (unsigned char)(hex_digit(hex[0]) << 4 | hex_digit(hex[1]));
        der_add(d, &c, 1);
    }
}

/*
 * Prepends tag and length to d's content: DER's minimal length, or one
 * octet longer than needed (lead), or BER's indefinite form followed by
 * end-of-contents (indef; eoc false leaves it out).
 */
static void der_wrap(struct der *d, unsigned char tag, bool lead, bool indef, bool eoc)
{
    unsigned char h[5] = {tag};
    size_t hn = 2;
    size_t n = d->n;
    if (indef) {
        h[1] = 0x80;
    } else if (n < 0x80 && !lead) {
        h[1] = (unsigned char)n;
    } else {
        size_t octets = n < 0x80 ? 0 : n < 0x100 ? 1 : 2;
        octets += lead ? 1 : 0;
        h[1] = (unsigned char)(0x80 | octets);
        for (size_t i = 0; i < octets; i++) {
            h[2 + i] = (unsigned char)(n >> (8 * (octets - 1 - i)));
        }
        hn += octets;
    }
    assert_true(n + hn + 2 <= sizeof(d->b));
    memmove(d->b + hn, d->b, n);
    memcpy(d->b, h, hn);
    d->n += hn;
    if (indef && eoc) {
        der_hex(d, "0000");
    }
}

/* An INTEGER TLV of bn, with the leading zero octet a positive one needs. */
static void rsa_elem_set(struct der *d, const BIGNUM *bn)
{
    unsigned char buf[520] = {0};
    int n = BN_bn2bin(bn, buf + 1);
    assert_true(n > 0 && n < (int)sizeof(buf));
    bool pad = (buf[1] & 0x80) != 0;
    d->n = 0;
    der_add(d, pad ? buf : buf + 1, (size_t)n + (pad ? 1 : 0));
    der_wrap(d, 0x02, false, false, false);
    OPENSSL_cleanse(buf, sizeof(buf));
}

static void rsa_elems_init(void)
{
    const char *names[RSA_ELEMS] = {
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
    der_hex(&rsa_elem[0], "020100");
    for (int i = 1; i < RSA_ELEMS; i++) {
        BIGNUM *bn = NULL;
        assert_int_equal(EVP_PKEY_get_bn_param(test_pkey, names[i], &bn), 1);
        rsa_elem_set(&rsa_elem[i], bn);
        BN_clear_free(bn);
    }
}

/* The levels of the DER, outermost first. */
enum { AT_P8 = 1, AT_ALG = 2, AT_OCTETS = 4, AT_RSA = 8 };

#define RSA_OID "06092a864886f70d010101"

struct bad_key {
    const char *name;
    const char *why; /* words of the reason; NULL: accepted */
    /* RSAPrivateKey: its first elems elements whole, then part bytes of the next one's TLV. */
    int elems, part;
    /* Element at replaced by elem: hex, or "neg" (no leading zero), "pad" (a second one),
     * "long" (its length in one octet more). */
    int at;
    const char *elem;
    unsigned indef, no_eoc, lead; /* AT_* levels: BER indefinite, without EOC, long length */
    const char *version, *alg;    /* PKCS#8's version TLV, AlgorithmIdentifier's content */
    const char *in_rsa, *after_rsa, *after_octets, *after_p8; /* hex appended there */
    size_t cut;                                               /* bytes cut off the DER's end */
};

#define NOPARSE "does not parse"
/* clang-format off */
static const struct bad_key bad_keys[] = {
    {.name = "the test key, rebuilt", .why = NULL},
    {.name = "parameters absent", .why = NULL, .alg = RSA_OID},
    {.name = "cut in the 4th integer's header", .why = NOPARSE, .elems = 3, .part = 2},
    {.name = "cut in d", .why = NOPARSE, .elems = 3, .part = 100},
    {.name = "5th integer runs past the end", .why = NOPARSE, .elems = 4, .part = 40},
    {.name = "cut in the 9th integer", .why = NOPARSE, .elems = 8, .part = 20},
    {.name = "cut after the 8th integer", .why = NOPARSE, .elems = 8},
    {.name = "DER cut short by 8", .why = NOPARSE, .cut = 8},
    {.name = "DER cut in d", .why = NOPARSE, .cut = 800},
    {.name = "NULL with content as 6th element", .why = NOPARSE, .at = 5, .elem = "050100"},
    {.name = "OCTET STRING as 6th element", .why = NOPARSE, .at = 5, .elem = "0401ff"},
    {.name = "SEQUENCE as 9th element", .why = NOPARSE, .at = 8, .elem = "3000"},
    {.name = "indefinite PrivateKeyInfo", .why = NOPARSE, .indef = AT_P8},
    {.name = "indefinite AlgorithmIdentifier", .why = NOPARSE, .indef = AT_ALG},
    {.name = "constructed indefinite OCTET STRING", .why = NOPARSE, .indef = AT_OCTETS},
    {.name = "constructed OCTET STRING without EOC", .why = NOPARSE, .indef = AT_OCTETS,
     .no_eoc = AT_OCTETS},
    {.name = "indefinite RSAPrivateKey", .why = NOPARSE, .indef = AT_RSA},
    {.name = "indefinite RSAPrivateKey without EOC", .why = NOPARSE, .indef = AT_RSA,
     .no_eoc = AT_RSA},
    {.name = "PKCS#8 version 1", .why = NOPARSE, .version = "020101"},
    {.name = "PKCS#8 version 1 with a public key", .why = NOPARSE, .version = "020101",
     .after_octets = "810100"},
    {.name = "PKCS#8 version 0 in two octets", .why = NOPARSE, .version = "02020000"},
    {.name = "PKCS#8 version missing", .why = NOPARSE, .version = ""},
    {.name = "RSAPrivateKey version 1 (multi-prime)", .why = NOPARSE, .at = 0, .elem = "020101"},
    {.name = "RSASSA-PSS OID", .why = "RSA", .alg = "06092a864886f70d01010a0500"},
    {.name = "EC OID", .why = "RSA", .alg = "06072a8648ce3d020106082a8648ce3d030107"},
    {.name = "OID runs past its SEQUENCE", .why = NOPARSE, .alg = "06092a864886f70d0101"},
    {.name = "parameters an INTEGER", .why = NOPARSE, .alg = RSA_OID "020100"},
    {.name = "parameters NULL with content", .why = NOPARSE, .alg = RSA_OID "050100"},
    {.name = "bytes after the parameters", .why = NOPARSE, .alg = RSA_OID "05000500"},
    {.name = "a 10th integer", .why = NOPARSE, .in_rsa = "020100"},
    {.name = "bytes after RSAPrivateKey", .why = NOPARSE, .after_rsa = "0000"},
    {.name = "attributes", .why = NOPARSE, .after_octets = "a000"},
    {.name = "bytes after PrivateKeyInfo", .why = NOPARSE, .after_p8 = "000000"},
    {.name = "long length: PrivateKeyInfo", .why = NOPARSE, .lead = AT_P8},
    {.name = "long length: AlgorithmIdentifier", .why = NOPARSE, .lead = AT_ALG},
    {.name = "long length: OCTET STRING", .why = NOPARSE, .lead = AT_OCTETS},
    {.name = "long length: RSAPrivateKey", .why = NOPARSE, .lead = AT_RSA},
    {.name = "long length: p", .why = NOPARSE, .at = 4, .elem = "long"},
    {.name = "negative p", .why = NOPARSE, .at = 4, .elem = "neg"},
    {.name = "p with a second leading zero", .why = NOPARSE, .at = 4, .elem = "pad"},
    {.name = "negative e", .why = NOPARSE, .at = 2, .elem = "0203810001"},
    {.name = "e with a leading zero", .why = NOPARSE, .at = 2, .elem = "020400010001"},
    {.name = "e zero", .why = NOPARSE, .at = 2, .elem = "020100"},
    {.name = "e empty", .why = NOPARSE, .at = 2, .elem = "0200"},
    {.name = "e a BER constructed INTEGER", .why = NOPARSE, .at = 2, .elem = "22050203010001"},
};
/* clang-format on */

/* Element i of RSAPrivateKey as case c has it. */
static void bad_elem(const struct bad_key *c, int i, struct der *out)
{
    const struct der *e = &rsa_elem[i];
    out->n = 0;
    if (c->elem == NULL || c->at != i) {
        der_add(out, e->b, e->n);
        return;
    }
    /* The forms below are for an element with a one-octet long length and a leading zero. */
    bool shaped = e->n > 4 && e->b[1] == 0x81 && e->b[3] == 0x00;
    if (strcmp(c->elem, "neg") == 0 || strcmp(c->elem, "pad") == 0) {
        assert_true(shaped);
        der_add(out, strcmp(c->elem, "neg") == 0 ? e->b + 4 : e->b + 3,
                strcmp(c->elem, "neg") == 0 ? e->n - 4 : e->n - 3);
        if (strcmp(c->elem, "pad") == 0) {
            memmove(out->b + 1, out->b, out->n);
            out->b[0] = 0x00;
            out->n++;
        }
        der_wrap(out, 0x02, false, false, false);
    } else if (strcmp(c->elem, "long") == 0) {
        assert_true(shaped);
        der_add(out, e->b + 3, e->n - 3);
        der_wrap(out, 0x02, true, false, false);
    } else {
        der_hex(out, c->elem);
    }
}

/* The DER of case c. */
static void bad_der(const struct bad_key *c, struct der *out)
{
    static struct der rsa, alg, el;
    rsa.n = 0;
    int whole = c->elems > 0 || c->part > 0 ? c->elems : RSA_ELEMS;
    for (int i = 0; i < whole; i++) {
        bad_elem(c, i, &el);
        der_add(&rsa, el.b, el.n);
    }
    if (c->part > 0) {
        bad_elem(c, whole, &el);
        assert_true((size_t)c->part < el.n);
        der_add(&rsa, el.b, (size_t)c->part);
    }
    der_hex(&rsa, c->in_rsa != NULL ? c->in_rsa : "");
    der_wrap(&rsa, 0x30, c->lead & AT_RSA, c->indef & AT_RSA, !(c->no_eoc & AT_RSA));
    der_hex(&rsa, c->after_rsa != NULL ? c->after_rsa : "");
    if (c->indef & AT_OCTETS) {
        /* BER: a constructed OCTET STRING of one primitive chunk. */
        der_wrap(&rsa, 0x04, false, false, false);
        der_wrap(&rsa, 0x24, false, true, !(c->no_eoc & AT_OCTETS));
    } else {
        der_wrap(&rsa, 0x04, c->lead & AT_OCTETS, false, false);
    }
    alg.n = 0;
    der_hex(&alg, c->alg != NULL ? c->alg : RSA_OID "0500");
    der_wrap(&alg, 0x30, c->lead & AT_ALG, c->indef & AT_ALG, true);
    out->n = 0;
    der_hex(out, c->version != NULL ? c->version : "020100");
    der_add(out, alg.b, alg.n);
    der_add(out, rsa.b, rsa.n);
    der_hex(out, c->after_octets != NULL ? c->after_octets : "");
    der_wrap(out, 0x30, c->lead & AT_P8, c->indef & AT_P8, true);
    der_hex(out, c->after_p8 != NULL ? c->after_p8 : "");
    assert_true(c->cut < out->n);
    out->n -= c->cut;
    OPENSSL_cleanse(&rsa, sizeof(rsa));
    OPENSSL_cleanse(&el, sizeof(el));
}

/* A service-account JSON whose private_key is the PEM of der (malloc'd; wipe and free). */
static char *sa_of_der(const struct der *d)
{
    static char b64[4 * DER_MAX / 3 + 8];
    static char pem[sizeof(b64) + 64];
    assert_true(EVP_EncodeBlock((unsigned char *)b64, d->b, (int)d->n) > 0);
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
    return v;
}

static void test_malformed_wipes(void **state)
{
    (void)state;
    rsa_elems_init();
    static struct der der;
    int failed = 0;
    for (size_t i = 0; i < sizeof(bad_keys) / sizeof(bad_keys[0]); i++) {
        const struct bad_key *c = &bad_keys[i];
        bad_der(c, &der);
        char *v = sa_of_der(&der);
        OPENSSL_cleanse(&der, sizeof(der));
        hits = 0;
        armed = true;
        const char *why = NULL;
        struct gcpkey k;
        bool ok = gcpkey_parse(v, strlen(v), &k, &why);
        armed = false;
        OPENSSL_cleanse(v, strlen(v));
        free(v);
        bool right = c->why == NULL ? ok && k.bits == 2048
                                    : !ok && why != NULL && strstr(why, c->why) != NULL;
        if (!right || hits != 0) {
            print_error("%s: %s (%s), %d blocks freed with a piece of the key\n", c->name,
                        ok ? "accepted" : "refused", ok ? "-" : why, hits);
            failed++;
        }
    }
    for (int i = 0; i < RSA_ELEMS; i++) {
        OPENSSL_cleanse(&rsa_elem[i], sizeof(rsa_elem[i]));
    }
    assert_int_equal(failed, 0);
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
        cmocka_unit_test(test_malformed_wipes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
