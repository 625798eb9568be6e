/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Fuzzes the IAM key format (common/awskey.c: a tenant's key_value, checked
 * by the plugin and parsed by the agent) and the SigV4 signer over what it
 * accepts (agent/sigv4.c). Invariants: an accepted value's views lie inside
 * it and have the documented lengths, the session token exactly with an
 * ASIA ID; a refusal gives a reason; a signature over it succeeds and its
 * Authorization header is exactly its fixed parts, the access key ID and 64
 * hex digits (no room for a byte of the secret or the token). Found by the
 * first campaign: a secret sharing a run with the access key ID is no leak,
 * so the check is structural (corpus regress-secret-shares-id).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/sigv4.h"
#include "common/awskey.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *v = (const char *)data;
    struct awskey k;
    const char *why = NULL;
    bool iam = awskey_is_iam(v, size);
    if (!awskey_parse(v, size, &k, &why)) {
        if (why == NULL) {
            abort();
        }
        return 0;
    }
    if (!iam || k.id != v || k.id_len != AWSKEY_ID_LEN || k.secret_len != AWSKEY_SECRET_LEN ||
        k.secret < v || k.secret + k.secret_len > v + size || k.temporary != (k.token_len > 0) ||
        (k.token_len > 0 && k.token + k.token_len != v + size)) {
        abort();
    }
    static const char body[] = "{\"messages\":[]}";
    struct sigv4_request r = {.method = "POST",
                              .host = "bedrock-runtime.us-east-1.amazonaws.com",
                              .path = "/model/m%3A0/converse",
                              .content_type = "application/json",
                              .body = body,
                              .body_len = sizeof(body) - 1,
                              .region = "us-east-1",
                              .service = "bedrock",
                              .now = 1795846500};
    struct sigv4_signed s;
    if (sigv4_sign(&r, &k, &s) != ERR_OK) {
        abort();
    }
    /*
     * The header is exactly its fixed parts, the access key ID and 64 hex
     * digits: there is no room for a byte of the secret or the token.
     */
    char want[SIGV4_MAX_AUTH];
    snprintf(want, sizeof(want),
             "AWS4-HMAC-SHA256 Credential=%.*s/20261128/us-east-1/bedrock/aws4_request, "
             "SignedHeaders=content-type;host;x-amz-date%s, Signature=",
             (int)k.id_len, k.id, k.token_len > 0 ? ";x-amz-security-token" : "");
    size_t wl = strlen(want);
    if (strncmp(s.authorization, want, wl) != 0 || strlen(s.authorization) != wl + 64 ||
        strspn(s.authorization + wl, "0123456789abcdef") != 64) {
        abort();
    }
    return 0;
}
