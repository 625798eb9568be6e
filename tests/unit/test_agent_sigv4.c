/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for agent/sigv4 and common/awskey: AWS's published Signature
 * Version 4 vectors (the test suite's get-vanilla, post-vanilla,
 * get-vanilla-query-order-key-case, post-x-www-form-urlencoded; the IAM
 * ListUsers example and the signing-key example of "Create a signed AWS API
 * request"), Bedrock-shaped requests with and without a session token whose
 * signatures were computed with botocore 1.43 (an independent
 * implementation), and the IAM key format, good and bad. The secrets are
 * AWS's documentation examples, never real keys.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <dlfcn.h>
#include <jansson.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

#include "agent/provider_bedrock.h"
#include "agent/providers.h"
#include "agent/sigv4.h"
#include "common/awskey.h"
#include "common/secret.h"

/*
 * Failure injection: the nth curl_slist_append (header list) or HMAC call
 * from here on fails (0: none). Interposed over libcurl's and libcrypto's,
 * which the static agent library calls through these definitions.
 */
static int slist_fail_at, hmac_fail_at;

struct curl_slist *curl_slist_append(struct curl_slist *list, const char *data);
struct curl_slist *curl_slist_append(struct curl_slist *list, const char *data)
{
    if (slist_fail_at > 0 && --slist_fail_at == 0) {
        return NULL;
    }
    struct curl_slist *(*real)(struct curl_slist *, const char *) =
        (struct curl_slist * (*)(struct curl_slist *, const char *))
            dlsym(RTLD_NEXT, "curl_slist_append");
    return real(list, data);
}

unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len, const unsigned char *d,
                    size_t n, unsigned char *md, unsigned int *md_len);
unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len, const unsigned char *d,
                    size_t n, unsigned char *md, unsigned int *md_len)
{
    if (hmac_fail_at > 0 && --hmac_fail_at == 0) {
        return NULL;
    }
    unsigned char *(*real)(const EVP_MD *, const void *, int, const unsigned char *, size_t,
                           unsigned char *, unsigned int *) =
        (unsigned char *(*)(const EVP_MD *, const void *, int, const unsigned char *, size_t,
                            unsigned char *, unsigned int *))dlsym(RTLD_NEXT, "HMAC");
    return real(evp_md, key, key_len, d, n, md, md_len);
}

#define SUITE_SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define SUITE_TIME 1440938160   /* 20150830T123600Z */
#define BEDROCK_TIME 1795846500 /* 20261128T061500Z */
#define BEDROCK_BODY                                                                               \
    "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"hi\"}]}],\"inferenceConfig\":{"    \
    "\"maxTokens\":5}}"
#define TOKEN "FwoGZXIvYXdzEXAMPLEtokenAQoDYXdzEPT//////////wEXAMPLE+test/token=="

static const struct awskey suite_key = {.id = "AKIDEXAMPLE",
                                        .id_len = 11,
                                        .secret = SUITE_SECRET,
                                        .secret_len = sizeof(SUITE_SECRET) - 1};

static void sign_expect(const struct sigv4_request *r, const struct awskey *k, const char *want)
{
    struct sigv4_signed s;
    memset(&s, 0, sizeof(s));
    assert_int_equal(sigv4_sign(r, k, &s), ERR_OK);
    assert_string_equal(s.authorization, want);
}

static void test_get_vanilla(void **state)
{
    (void)state;
    struct sigv4_request r = {.method = "GET",
                              .host = "example.amazonaws.com",
                              .path = "/",
                              .region = "us-east-1",
                              .service = "service",
                              .now = SUITE_TIME};
    sign_expect(&r, &suite_key,
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
                "SignedHeaders=host;x-amz-date, "
                "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
    struct sigv4_signed s;
    assert_int_equal(sigv4_sign(&r, &suite_key, &s), ERR_OK);
    assert_string_equal(s.amz_date, "20150830T123600Z");
}

static void test_post_vanilla(void **state)
{
    (void)state;
    struct sigv4_request r = {.method = "POST",
                              .host = "example.amazonaws.com",
                              .path = "/",
                              .region = "us-east-1",
                              .service = "service",
                              .now = SUITE_TIME};
    sign_expect(&r, &suite_key,
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
                "SignedHeaders=host;x-amz-date, "
                "Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b");
}

static void test_query_order(void **state)
{
    (void)state;
    struct sigv4_request r = {.method = "GET",
                              .host = "example.amazonaws.com",
                              .path = "/",
                              .query = "Param1=value1&Param2=value2",
                              .region = "us-east-1",
                              .service = "service",
                              .now = SUITE_TIME};
    sign_expect(&r, &suite_key,
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
                "SignedHeaders=host;x-amz-date, "
                "Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
}

static void test_post_form_body(void **state)
{
    (void)state;
    struct sigv4_request r = {.method = "POST",
                              .host = "example.amazonaws.com",
                              .path = "/",
                              .content_type = "application/x-www-form-urlencoded",
                              .body = "Param1=value1",
                              .body_len = 13,
                              .region = "us-east-1",
                              .service = "service",
                              .now = SUITE_TIME};
    sign_expect(&r, &suite_key,
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
                "SignedHeaders=content-type;host;x-amz-date, "
                "Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a");
    /* One byte of the body changed: another signature. */
    r.body = "Param1=value2";
    struct sigv4_signed s;
    assert_int_equal(sigv4_sign(&r, &suite_key, &s), ERR_OK);
    assert_null(strstr(s.authorization, "ff11897932ad3f4e8b18135d722051e5"));
}

/* The IAM User Guide's ListUsers example (content-type with a parameter, canonical query). */
static void test_iam_list_users(void **state)
{
    (void)state;
    struct sigv4_request r = {.method = "GET",
                              .host = "iam.amazonaws.com",
                              .path = "/",
                              .query = "Action=ListUsers&Version=2010-05-08",
                              .content_type = "application/x-www-form-urlencoded; charset=utf-8",
                              .region = "us-east-1",
                              .service = "iam",
                              .now = SUITE_TIME};
    sign_expect(&r, &suite_key,
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, "
                "SignedHeaders=content-type;host;x-amz-date, "
                "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7");
}

static void test_signing_key(void **state)
{
    (void)state;
    unsigned char k[32];
    char hex[65];
    assert_int_equal(
        sigv4_signing_key(SUITE_SECRET, strlen(SUITE_SECRET), "20120215", "us-east-1", "iam", k),
        ERR_OK);
    for (size_t i = 0; i < 32; i++) {
        snprintf(hex + 2 * i, 3, "%02x", k[i]);
    }
    assert_string_equal(hex, "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d");
    assert_int_equal(sigv4_signing_key(SUITE_SECRET, 0, "20120215", "us-east-1", "iam", k),
                     ERR_INVAL);
}

/*
 * A Converse call as the Bedrock adapter sends it: the model id's ':' is
 * %3A in the path, and %253A in the canonical URI (botocore agrees).
 */
static void test_bedrock_converse(void **state)
{
    (void)state;
    static const char key[] = "AKIAIOSFODNN7EXAMPLE:" SUITE_SECRET;
    struct awskey k;
    assert_true(awskey_parse(key, strlen(key), &k, NULL));
    struct sigv4_request r = {.method = "POST",
                              .host = "bedrock-runtime.eu-west-1.amazonaws.com",
                              .path = "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse",
                              .content_type = "application/json",
                              .body = BEDROCK_BODY,
                              .body_len = strlen(BEDROCK_BODY),
                              .region = "eu-west-1",
                              .service = "bedrock",
                              .now = BEDROCK_TIME};
    sign_expect(&r, &k,
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261128/eu-west-1/bedrock/"
                "aws4_request, SignedHeaders=content-type;host;x-amz-date, "
                "Signature=dec07009336565edeca6f90a17858bba3048cb86a7920730c910fe6680870c60");
}

static void test_bedrock_session_token(void **state)
{
    (void)state;
    static const char key[] = "ASIAIOSFODNN7EXAMPLE:" SUITE_SECRET ":" TOKEN;
    struct awskey k;
    assert_true(awskey_parse(key, strlen(key), &k, NULL));
    assert_true(k.temporary);
    assert_int_equal(k.token_len, strlen(TOKEN));
    struct sigv4_request r = {.method = "POST",
                              .host = "bedrock-runtime.eu-west-1.amazonaws.com",
                              .path = "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse",
                              .content_type = "application/json",
                              .body = BEDROCK_BODY,
                              .body_len = strlen(BEDROCK_BODY),
                              .region = "eu-west-1",
                              .service = "bedrock",
                              .now = BEDROCK_TIME};
    sign_expect(&r, &k,
                "AWS4-HMAC-SHA256 Credential=ASIAIOSFODNN7EXAMPLE/20261128/eu-west-1/bedrock/"
                "aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, "
                "Signature=85554f44ffea3abb2cc62e1be77f0c266647749d48fd71bf19ad9c470970fb99");
}

/* Neither the secret nor the token is in what the caller sends, only the ID and the signature. */
static void test_no_secret_in_output(void **state)
{
    (void)state;
    static const char key[] = "ASIAIOSFODNN7EXAMPLE:" SUITE_SECRET ":" TOKEN;
    struct awskey k;
    assert_true(awskey_parse(key, strlen(key), &k, NULL));
    struct sigv4_request r = {.method = "POST",
                              .host = "h",
                              .path = "/",
                              .region = "us-east-1",
                              .service = "bedrock",
                              .now = BEDROCK_TIME};
    struct sigv4_signed s;
    assert_int_equal(sigv4_sign(&r, &k, &s), ERR_OK);
    assert_null(strstr(s.authorization, "EXAMPLEKEY"));
    assert_null(strstr(s.authorization, "EXAMPLEtoken"));
}

static void test_bad_requests(void **state)
{
    (void)state;
    struct sigv4_signed s;
    struct sigv4_request good = {.method = "POST",
                                 .host = "h",
                                 .path = "/",
                                 .region = "us-east-1",
                                 .service = "bedrock",
                                 .now = BEDROCK_TIME};
    assert_int_equal(sigv4_sign(&good, &suite_key, &s), ERR_OK);
    struct sigv4_request r = good;
    r.region = "us-east-1/x";
    assert_int_equal(sigv4_sign(&r, &suite_key, &s), ERR_INVAL);
    r.region = "";
    assert_int_equal(sigv4_sign(&r, &suite_key, &s), ERR_INVAL);
    r.region = "abcdefghijklmnopqrstuvwxyz0123456"; /* SIGV4_MAX_REGION + 1 */
    assert_int_equal(sigv4_sign(&r, &suite_key, &s), ERR_INVAL);
    r.region = "abcdefghijklmnopqrstuvwxyz012345"; /* at the limit */
    assert_int_equal(sigv4_sign(&r, &suite_key, &s), ERR_OK);
    r = good;
    r.service = "Bedrock";
    assert_int_equal(sigv4_sign(&r, &suite_key, &s), ERR_INVAL);
    r = good;
    r.host = "h\r\nx-evil: 1";
    assert_int_equal(sigv4_sign(&r, &suite_key, &s), ERR_INVAL);
    r = good;
    r.host = NULL;
    assert_int_equal(sigv4_sign(&r, &suite_key, &s), ERR_INVAL);
    r = good;
    r.content_type = "a\nb";
    assert_int_equal(sigv4_sign(&r, &suite_key, &s), ERR_INVAL);
    r = good;
    r.body_len = 3; /* no body */
    assert_int_equal(sigv4_sign(&r, &suite_key, &s), ERR_INVAL);
    struct awskey k = suite_key;
    k.id = "AKID/EXAMPLE";
    k.id_len = 12;
    assert_int_equal(sigv4_sign(&good, &k, &s), ERR_INVAL);
    k = suite_key;
    k.token = "a\nb";
    k.token_len = 3;
    assert_int_equal(sigv4_sign(&good, &k, &s), ERR_INVAL);
}

/* The canonical request is capped: a path past SIGV4_MAX_CANONICAL is refused, not truncated. */
static void test_canonical_cap(void **state)
{
    (void)state;
    static char path[SIGV4_MAX_CANONICAL / 3 + 2];
    path[0] = '/';
    memset(path + 1, ':', sizeof(path) - 2); /* each ':' is "%3A" in the canonical URI */
    path[sizeof(path) - 1] = '\0';
    struct sigv4_request r = {.method = "POST",
                              .host = "h",
                              .path = path,
                              .region = "us-east-1",
                              .service = "bedrock",
                              .now = BEDROCK_TIME};
    struct sigv4_signed s;
    assert_int_equal(sigv4_sign(&r, &suite_key, &s), ERR_TOOBIG);
}

/*
 * Every failure on the signing path is an error, never a request sent with
 * a partial set of headers: each header append of a Bedrock build with
 * temporary credentials fails in turn (ERR_NOMEM; the caller frees what was
 * built, ASan sees no leak), then each of the five HMACs (ERR_CRYPTO).
 */
static void test_failures(void **state)
{
    (void)state;
    static const char key[] = "ASIAIOSFODNN7EXAMPLE:" SUITE_SECRET ":" TOKEN;
    struct secret *k = secret_from(key, strlen(key));
    assert_non_null(k);
    json_t *req = json_loads("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", 0, NULL);
    json_t *entry =
        json_loads("{\"base_url\":\"https://bedrock-runtime.eu-west-1.amazonaws.com\"}", 0, NULL);
    struct provider_call pc = {.op = PROVIDER_CHAT,
                               .req = req,
                               .model = "m:0",
                               .entry = entry,
                               .key = k,
                               .default_max_tokens = 5,
                               .now = BEDROCK_TIME};
    const struct provider_adapter *ad = provider_find("bedrock");
    int n;
    for (n = 1; n < 64; n++) {
        struct provider_http h;
        memset(&h, 0, sizeof(h));
        slist_fail_at = n;
        enum err e = ad->build(&pc, &h);
        bool fired = slist_fail_at == 0;
        slist_fail_at = 0;
        provider_http_done(&h);
        if (!fired) {
            assert_int_equal(e, ERR_OK);
            break;
        }
        assert_int_equal(e, ERR_NOMEM);
    }
    assert_true(n > 7); /* Content-Type, Accept, Expect, Host, X-Amz-Date, token, Authorization */
    for (n = 1; n <= 5; n++) {
        struct provider_http h;
        memset(&h, 0, sizeof(h));
        hmac_fail_at = n;
        assert_int_equal(ad->build(&pc, &h), ERR_CRYPTO);
        assert_int_equal(hmac_fail_at, 0);
        provider_http_done(&h);
    }
    secret_free(&k);
    json_decref(entry);
    json_decref(req);
}

/* ---- common/awskey ---------------------------------------------------------------------- */

static void test_awskey_good(void **state)
{
    (void)state;
    static const char *const good[] = {
        "AKIAIOSFODNN7EXAMPLE:" SUITE_SECRET,
        "AKIA234567ABCDEFGHIJ:abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0+/9",
        "ASIAIOSFODNN7EXAMPLE:" SUITE_SECRET ":" TOKEN,
        "ASIAIOSFODNN7EXAMPLE:" SUITE_SECRET ":0123456789abcdef", /* AWSKEY_MIN_TOKEN */
        NULL};
    for (const char *const *g = good; *g != NULL; g++) {
        struct awskey k;
        const char *why = NULL;
        assert_true(awskey_is_iam(*g, strlen(*g)));
        assert_true(awskey_parse(*g, strlen(*g), &k, &why));
        assert_int_equal(k.id_len, AWSKEY_ID_LEN);
        assert_memory_equal(k.id, *g, AWSKEY_ID_LEN);
        assert_int_equal(k.secret_len, AWSKEY_SECRET_LEN);
    }
}

static void test_awskey_bad(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "AKIAIOSFODNN7EXAMPLE",                   /* no secret */
        "AKIAIOSFODNN7EXAMPL:" SUITE_SECRET,      /* ID one short */
        "AKIAIOSFODNN7EXAMPLEX:" SUITE_SECRET,    /* ID one long */
        "AKIAIOSFODNN7EXAMPL1:" SUITE_SECRET,     /* '1' is not base32 */
        "AKIAiosfodnn7example:" SUITE_SECRET,     /* lower case */
        "AIDAIOSFODNN7EXAMPLE:" SUITE_SECRET,     /* a user ID, not an access key ID */
        "AKIAIOSFODNN7EXAMPLE:" SUITE_SECRET "x", /* secret one long */
        "AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKE",  /* one short */
        "AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI/K7MDENG-bPxRfiCYEXAMPLEKEY", /* '-' */
        "AKIAIOSFODNN7EXAMPLE:" SUITE_SECRET ":" TOKEN,          /* a token with a long-term ID */
        "ASIAIOSFODNN7EXAMPLE:" SUITE_SECRET,                    /* temporary without its token */
        "ASIAIOSFODNN7EXAMPLE:" SUITE_SECRET ":",                /* empty token */
        "ASIAIOSFODNN7EXAMPLE:" SUITE_SECRET ":0123456789abcde", /* token one short */
        "ASIAIOSFODNN7EXAMPLE:" SUITE_SECRET ":" TOKEN ":x",     /* a fourth part */
        "ASIAIOSFODNN7EXAMPLE:" SUITE_SECRET ":abc-defghijklmnopq", /* '-' in the token */
        ":" SUITE_SECRET,
        NULL};
    for (const char *const *b = bad; *b != NULL; b++) {
        struct awskey k;
        const char *why = NULL;
        assert_true(awskey_is_iam(*b, strlen(*b)));
        assert_false(awskey_parse(*b, strlen(*b), &k, &why));
        assert_non_null(why);
        /* The reason never quotes the value. */
        assert_null(strstr(why, "EXAMPLE"));
    }
    /* A token at AWSKEY_MAX_TOKEN is taken, one past it is not. */
    static char big[AWSKEY_ID_LEN + 1 + AWSKEY_SECRET_LEN + 1 + AWSKEY_MAX_TOKEN + 2];
    int n = snprintf(big, sizeof(big), "ASIAIOSFODNN7EXAMPLE:%s:", SUITE_SECRET);
    memset(big + n, 'A', AWSKEY_MAX_TOKEN);
    struct awskey k;
    assert_true(awskey_parse(big, (size_t)n + AWSKEY_MAX_TOKEN, &k, NULL));
    big[n + AWSKEY_MAX_TOKEN] = 'A';
    assert_false(awskey_parse(big, (size_t)n + AWSKEY_MAX_TOKEN + 1, &k, NULL));
}

/* Bedrock API keys and other providers' keys are not IAM credentials. */
static void test_awskey_not_iam(void **state)
{
    (void)state;
    static const char *const other[] = {"ABSKQmVkcm9ja0FQSUtleS1jYW5hcnk=", "sk-proj-abc", "AKI",
                                        "", NULL};
    for (const char *const *o = other; *o != NULL; o++) {
        assert_false(awskey_is_iam(*o, strlen(*o)));
    }
}

int main(void)
{
    if (secret_heap_init(1 << 16) != ERR_OK) {
        fprintf(stderr, "secure heap unavailable\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_vanilla),         cmocka_unit_test(test_post_vanilla),
        cmocka_unit_test(test_query_order),         cmocka_unit_test(test_post_form_body),
        cmocka_unit_test(test_iam_list_users),      cmocka_unit_test(test_signing_key),
        cmocka_unit_test(test_bedrock_converse),    cmocka_unit_test(test_bedrock_session_token),
        cmocka_unit_test(test_no_secret_in_output), cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_canonical_cap),       cmocka_unit_test(test_failures),
        cmocka_unit_test(test_awskey_good),         cmocka_unit_test(test_awskey_bad),
        cmocka_unit_test(test_awskey_not_iam),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
