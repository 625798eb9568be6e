/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The one rule for an AWS IAM credential stored as a Bedrock key value:
 * "<access_key_id>:<secret_access_key>" or, for temporary credentials,
 * "<access_key_id>:<secret_access_key>:<session_token>". The plugin checks a
 * value with it when a key is written (a malformed one is a 400); the agent
 * parses the value it fetched with it to sign a call (agent/sigv4.h).
 *
 * The formats are AWS's (IAM User Guide, "Manage access keys for IAM users";
 * STS API reference, Credentials): an access key ID is 20 characters, "AKIA"
 * (long-term, an IAM user's) or "ASIA" (temporary, from STS) then 16 of the
 * base32 alphabet [A-Z2-7]; a secret access key is 40 of [A-Za-z0-9/+]; a
 * session token is base64. A session token belongs to an ASIA ID only, and an
 * ASIA ID is useless without one.
 *
 * Nothing here copies, logs or formats a byte of the value: the parse hands
 * back views into the caller's buffer, and the reasons are fixed sentences.
 */
#ifndef BYOK_COMMON_AWSKEY_H
#define BYOK_COMMON_AWSKEY_H

#include <stdbool.h>
#include <stddef.h>

#define AWSKEY_ID_LEN 20
#define AWSKEY_SECRET_LEN 40
/* A session token this short cannot be one AWS issued (they are hundreds of characters). */
#define AWSKEY_MIN_TOKEN 16
/* The longest session token: what is left of the plugin's key size cap (8192) after ID and secret.
 */
#define AWSKEY_MAX_TOKEN (8192 - AWSKEY_ID_LEN - AWSKEY_SECRET_LEN - 2)

/* Views into the parsed value (borrowed: they live as long as it does). token_len 0: none. */
struct awskey {
    const char *id;
    size_t id_len;
    const char *secret;
    size_t secret_len;
    const char *token;
    size_t token_len;
    bool temporary; /* an ASIA ID */
};

/*
 * Whether v is meant as an IAM credential rather than a Bedrock API key: it
 * starts with AKIA or ASIA, or holds a ':' (which neither an API key, base64
 * after "ABSK", nor any other provider's key does). Such a value must then
 * parse, or it is refused.
 */
bool awskey_is_iam(const char *v, size_t len);

/*
 * Parses v (len bytes, no NUL needed). true with *ret filled when it follows
 * the rule above; false with *ret_why (when not NULL) a sentence saying which
 * part is wrong, never quoting it.
 */
bool awskey_parse(const char *v, size_t len, struct awskey *ret, const char **ret_why);

#endif
