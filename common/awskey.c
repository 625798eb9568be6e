/* SPDX-License-Identifier: MPL-2.0 */
/*
 * AWS IAM credentials as a key value (awskey.h). Only the shape is checked:
 * whether AWS knows the key is for AWS to say when it is used. Not here:
 * signing (agent/sigv4.c), masking (plugin/paths_keys.c).
 */
#include "common/awskey.h"

#include <string.h>

static bool awskey_base32(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= '2' && c <= '7');
}

static bool awskey_b64(char c, bool pad)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '/' ||
           c == '+' || (pad && c == '=');
}

bool awskey_is_iam(const char *v, size_t len)
{
    return (len >= 4 && (memcmp(v, "AKIA", 4) == 0 || memcmp(v, "ASIA", 4) == 0)) ||
           memchr(v, ':', len) != NULL;
}

bool awskey_parse(const char *v, size_t len, struct awskey *ret, const char **ret_why)
{
    const char *why = NULL;
    const char *c1 = memchr(v, ':', len);
    const char *c2 = c1 != NULL ? memchr(c1 + 1, ':', len - (size_t)(c1 + 1 - v)) : NULL;
    const char *end = v + len;
    size_t id_len = c1 != NULL ? (size_t)(c1 - v) : len;
    bool temporary = id_len >= 4 && memcmp(v, "ASIA", 4) == 0;
    if (c1 == NULL) {
        why = "an IAM key is <access_key_id>:<secret_access_key>, with :<session_token> for "
              "temporary (ASIA) credentials";
    } else if (id_len != AWSKEY_ID_LEN || (memcmp(v, "AKIA", 4) != 0 && !temporary)) {
        why = "the access key ID must be AKIA or ASIA and 16 more of A-Z 2-7 (20 characters)";
    }
    for (size_t i = 4; why == NULL && i < AWSKEY_ID_LEN; i++) {
        if (!awskey_base32(v[i])) {
            why = "the access key ID must be AKIA or ASIA and 16 more of A-Z 2-7 (20 characters)";
        }
    }
    const char *sec = c1 != NULL ? c1 + 1 : end;
    size_t sec_len = (size_t)((c2 != NULL ? c2 : end) - sec);
    if (why == NULL && sec_len != AWSKEY_SECRET_LEN) {
        why = "the secret access key must be 40 characters of A-Z a-z 0-9 / +";
    }
    for (size_t i = 0; why == NULL && i < sec_len; i++) {
        if (!awskey_b64(sec[i], false)) {
            why = "the secret access key must be 40 characters of A-Z a-z 0-9 / +";
        }
    }
    const char *tok = c2 != NULL ? c2 + 1 : end;
    size_t tok_len = (size_t)(end - tok);
    if (why == NULL && temporary && c2 == NULL) {
        why = "temporary credentials (an ASIA access key ID) need their session token: "
              "<access_key_id>:<secret_access_key>:<session_token>";
    } else if (why == NULL && !temporary && c2 != NULL) {
        why = "a session token goes with temporary credentials (an ASIA access key ID) only";
    } else if (why == NULL && c2 != NULL &&
               (tok_len < AWSKEY_MIN_TOKEN || tok_len > AWSKEY_MAX_TOKEN)) {
        why = "the session token must be 16..8130 base64 characters (A-Z a-z 0-9 / + =)";
    }
    for (size_t i = 0; why == NULL && i < tok_len; i++) {
        if (!awskey_b64(tok[i], true)) {
            why = "the session token must be 16..8130 base64 characters (A-Z a-z 0-9 / + =)";
        }
    }
    if (why != NULL) {
        if (ret_why != NULL) {
            *ret_why = why;
        }
        return false;
    }
    ret->id = v;
    ret->id_len = AWSKEY_ID_LEN;
    ret->secret = sec;
    ret->secret_len = sec_len;
    ret->token = c2 != NULL ? tok : NULL;
    ret->token_len = c2 != NULL ? tok_len : 0;
    ret->temporary = temporary;
    return true;
}
