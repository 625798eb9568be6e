/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The one rule for a Google service-account key stored as a Vertex key value:
 * the JSON file `gcloud iam service-accounts keys create` writes (type
 * "service_account", project_id, private_key_id, private_key as a PEM PKCS#8
 * RSA key, client_email, ...). The plugin checks a value with it when a key
 * is written (a malformed one is a 400) and stores it compacted (one line:
 * the PEM's newlines as \n escapes); the agent parses the value it fetched
 * with it to sign the JWT it trades for an access token (agent/gcptoken.h).
 *
 * The token URL is never taken from the key: its token_uri is ignored (a
 * tenant could otherwise point the agent at an internal service).
 *
 * Nothing here logs or formats a byte of the value: the reasons are fixed
 * sentences naming the field, never its content (not even private_key_id).
 * Parsed JSON is freed through jansson's allocator, which the agent and the
 * plugin both make wipe every block it frees.
 */
#ifndef BYOK_COMMON_GCPKEY_H
#define BYOK_COMMON_GCPKEY_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"

/* The longest service-account JSON taken: the plugin's key value cap (a real one is ~2.3 KB). */
#define GCPKEY_MAX_JSON 8192
/* Google's project ids: 6..30 of a-z 0-9 -, starting with a letter, not ending with '-'. */
#define GCPKEY_MIN_PROJECT 6
#define GCPKEY_MAX_PROJECT 30
/* An e-mail address (RFC 5321's path limit). */
#define GCPKEY_MAX_EMAIL 254
/* private_key_id: Google's are 40 hex digits; at most 64 of A-Z a-z 0-9 taken. */
#define GCPKEY_MAX_KEY_ID 64
/* RSA sizes taken: Google makes 2048-bit keys; a smaller one is weak, a larger one slow. */
#define GCPKEY_MIN_BITS 2048
#define GCPKEY_MAX_BITS 4096
/* The JWT's lifetime: Google's maximum, one hour. */
#define GCPKEY_JWT_LIFETIME 3600
/* The longest audience or scope put into a JWT. */
#define GCPKEY_MAX_CLAIM 1024

/* What a parse keeps of the key: the parts that are not secret. */
struct gcpkey {
    char project_id[GCPKEY_MAX_PROJECT + 1];
    char client_email[GCPKEY_MAX_EMAIL + 1];
    char private_key_id[GCPKEY_MAX_KEY_ID + 1];
    int bits;
};

/*
 * Whether v is meant as a service-account JSON rather than an API key: its
 * first byte that is not whitespace is '{' (no API key holds one). Such a
 * value must then parse, or it is refused.
 */
bool gcpkey_is_sa(const char *v, size_t len);

/*
 * Parses v (len bytes, no NUL needed) and checks its private key is an RSA
 * key of GCPKEY_MIN_BITS..GCPKEY_MAX_BITS (OpenSSL). true with *ret filled
 * when it follows the rule above; false with *ret_why (when not NULL) a
 * sentence naming the wrong part, never quoting it.
 */
bool gcpkey_parse(const char *v, size_t len, struct gcpkey *ret, const char **ret_why);

/*
 * gcpkey_parse without the private key (ret->bits is 0): the JSON and its
 * fields only. For a value that passed gcpkey_parse before (the agent's
 * cached key) when only the project or the e-mail is wanted: decoding the
 * RSA key costs ~300 µs, more than the request it would serve.
 */
bool gcpkey_parse_fields(const char *v, size_t len, struct gcpkey *ret, const char **ret_why);

/*
 * The value as one line of compact JSON: the whitespace outside strings
 * dropped, every other byte kept (keys in their order, strings as written),
 * so no raw newline or tab is left (the PEM's are \n escapes).
 * *ret is malloc'd, NUL-terminated; the caller wipes it before freeing.
 * ERR_INVAL when v does not parse (check with gcpkey_parse first).
 */
MUST_USE enum err gcpkey_compact(const char *v, size_t len, char **ret, size_t *ret_len);

/*
 * A signed JWT for Google's OAuth 2.0 JWT bearer grant: header
 * {"alg":"RS256","typ":"JWT","kid":<private_key_id>}, claims iss = sub =
 * client_email, aud, scope, iat = now, exp = now + GCPKEY_JWT_LIFETIME,
 * signed RS256 with OpenSSL's EVP. *ret is malloc'd, NUL-terminated; the
 * caller wipes it before freeing (a bearer credential for an hour). The
 * private key's buffers and EVP_PKEY are wiped and freed before return.
 * ERR_INVAL when v does not parse or aud/scope are empty or too long;
 * ERR_CRYPTO when signing fails; ERR_NOMEM.
 */
MUST_USE enum err gcpkey_jwt(const char *v, size_t len, const char *aud, const char *scope,
                             long long now, char **ret, size_t *ret_len);

#endif
