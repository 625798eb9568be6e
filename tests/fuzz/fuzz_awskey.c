/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Fuzzes the IAM key format (common/awskey.c: a tenant's key_value, checked
 * by the plugin and parsed by the agent) and the SigV4 signer over what it
 * accepts (agent/sigv4.c). Invariants: an accepted value's views lie inside
 * it and have the documented lengths, the session token exactly with an
 * ASIA ID; a refusal gives a reason; a signature over it succeeds and its
 * Authorization header holds the access key ID but no byte run of the
 * secret.
 */
#include <stdint.h>
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
    if (sigv4_sign(&r, &k, &s) != ERR_OK || strncmp(s.authorization + 28, k.id, k.id_len) != 0) {
        abort();
    }
    char piece[9];
    memcpy(piece, k.secret + 16, 8);
    piece[8] = '\0';
    if (strstr(s.authorization, piece) != NULL) {
        abort();
    }
    return 0;
}
