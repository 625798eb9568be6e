/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Fuzzes the Google service-account key format (common/gcpkey.c: a tenant's
 * Vertex key_value, checked by the plugin and parsed by the agent) and the
 * token endpoint's answer (agent/gcptoken.c). The first byte picks the case:
 *   0: the rest is a key value as a tenant sent it;
 *   1: the rest is a key value whose "private_key", when it is a JSON
 *      object, is replaced by an RSA key this target made at start-up (no key
 *      is committed), so the accepted paths (compaction, the JWT) are reached;
 *   2: the rest is a token endpoint answer.
 * Invariants: a refusal gives a reason; an accepted value starts (after
 * whitespace) with '{', its parts are NUL-terminated within their bounds,
 * and its compact form holds no raw whitespace outside strings and no raw
 * control character at all, is no longer, and parses to the same parts; a
 * JWT is three base64url parts; an accepted token is 1..GCPTOKEN_MAX_TOKEN
 * printable bytes without spaces, with expires_in in range.
 */
#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/gcptoken.h"
#include "common/gcpkey.h"
#include "common/secret.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *fz_pem;

static void fz_init(void)
{
    if (fz_pem != NULL) {
        return;
    }
    /*
     * Random bytes (and the key) before the secure heap: OpenSSL's DRBGs made
     * afterwards are reachable only through that arena, which LeakSanitizer
     * does not scan (tests/fuzz/README.md).
     */
    unsigned char seed[16];
    if (RAND_bytes(seed, sizeof(seed)) != 1) {
        abort();
    }
    EVP_PKEY *k = EVP_RSA_gen(2048);
    BIO *b = BIO_new(BIO_s_mem());
    if (k == NULL || b == NULL || PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) != 1) {
        abort();
    }
    char *p = NULL;
    long n = BIO_get_mem_data(b, &p);
    fz_pem = strndup(p, (size_t)n);
    BIO_free(b);
    EVP_PKEY_free(k);
    if (fz_pem == NULL || secret_heap_init(1 << 16) != ERR_OK) {
        abort();
    }
}

static void fz_key(const char *v, size_t n)
{
    struct gcpkey k;
    const char *why = NULL;
    if (!gcpkey_parse(v, n, &k, &why)) {
        if (why == NULL) {
            abort();
        }
        return;
    }
    if (!gcpkey_is_sa(v, n) || why != NULL || n > GCPKEY_MAX_JSON ||
        strnlen(k.project_id, sizeof(k.project_id)) == sizeof(k.project_id) ||
        strnlen(k.client_email, sizeof(k.client_email)) == sizeof(k.client_email) ||
        strnlen(k.private_key_id, sizeof(k.private_key_id)) == sizeof(k.private_key_id) ||
        k.bits < GCPKEY_MIN_BITS || k.bits > GCPKEY_MAX_BITS) {
        abort();
    }
    char *c = NULL;
    size_t cn = 0;
    if (gcpkey_compact(v, n, &c, &cn) != ERR_OK) {
        abort();
    }
    struct gcpkey k2;
    if (cn > n || strlen(c) != cn || !gcpkey_parse(c, cn, &k2, NULL) ||
        strcmp(k.project_id, k2.project_id) != 0 || strcmp(k.client_email, k2.client_email) != 0 ||
        strcmp(k.private_key_id, k2.private_key_id) != 0) {
        abort();
    }
    for (size_t i = 0; i < cn; i++) {
        if ((unsigned char)c[i] < 0x20) {
            abort();
        }
    }
    free(c);
    char *jwt = NULL;
    size_t jn = 0;
    if (gcpkey_jwt(v, n, "https://oauth2.googleapis.com/token", GCPTOKEN_SCOPE, 1795846500, &jwt,
                   &jn) != ERR_OK) {
        abort();
    }
    size_t dots = 0;
    for (size_t i = 0; i < jn; i++) {
        dots += jwt[i] == '.';
    }
    if (dots != 2 ||
        strspn(jwt, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") != jn) {
        abort();
    }
    free(jwt);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    fz_init();
    const char *v = (const char *)data + 1;
    size_t n = size - 1;
    switch (data[0] % 3) {
    case 0:
        fz_key(v, n);
        break;
    case 1: {
        json_t *j = json_loadb(v, n, 0, NULL);
        if (json_is_object(j)) {
            json_object_set_new(j, "private_key", json_string(fz_pem));
            char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
            if (s != NULL) {
                fz_key(s, strlen(s));
            }
            free(s);
        }
        json_decref(j);
        break;
    }
    default: {
        struct secret *t = NULL;
        long exp = 0;
        if (gcptoken_parse_answer(v, n, &t, &exp) == ERR_OK) {
            if (t == NULL || t->len == 0 || t->len > GCPTOKEN_MAX_TOKEN || exp < 1 ||
                exp > GCPTOKEN_MAX_EXPIRES_IN) {
                abort();
            }
            for (size_t i = 0; i < t->len; i++) {
                if (t->data[i] <= ' ' || t->data[i] >= 0x7f) {
                    abort();
                }
            }
        } else if (t != NULL) {
            abort();
        }
        secret_free(&t);
        break;
    }
    }
    return 0;
}
