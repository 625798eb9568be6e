/* SPDX-License-Identifier: MPL-2.0 */
/*
 * AWS Signature Version 4 for one request whose body is known when it is
 * built (the Bedrock adapter signs Converse and ConverseStream calls with a
 * tenant's IAM credentials: provider_bedrock.c). The algorithm is AWS's
 * ("Create a signed AWS API request", IAM User Guide, and the Signature
 * Version 4 test suite): a canonical request, a string to sign scoped to
 * date/region/service/aws4_request, a signing key derived from the secret
 * access key by an HMAC-SHA256 chain, and the Authorization header.
 *
 * Not here: presigned URLs (query-string signing), S3's rules (single URI
 * encoding, x-amz-content-sha256), chunked payload signing, path
 * normalisation (callers sign paths they built, without dot segments or
 * empty segments). Nothing here logs; every buffer that held the secret, a
 * derived key or the session token is wiped before returning.
 */
#ifndef BYOK_AGENT_SIGV4_H
#define BYOK_AGENT_SIGV4_H

#include <stddef.h>
#include <time.h>

#include "common/awskey.h"
#include "common/err.h"

#define SIGV4_MAX_REGION 32
#define SIGV4_MAX_SERVICE 32
#define SIGV4_MAX_HOST 256
/* The canonical request: the path twice encoded, headers and the session token. */
#define SIGV4_MAX_CANONICAL 32768
/* "AWS4-HMAC-SHA256 Credential=<20>/<8>/<region>/<service>/aws4_request, SignedHeaders=...,
 * Signature=<64>" */
#define SIGV4_MAX_AUTH 512

/* What is signed. All borrowed; strings NUL-terminated. */
struct sigv4_request {
    const char *method;       /* "POST" */
    const char *host;         /* the Host header's value exactly as sent (host[:port]) */
    const char *path;         /* the request path as sent: already percent-encoded once */
    const char *query;        /* the canonical query string ("" or NULL: none) */
    const char *content_type; /* signed as content-type when not NULL */
    const void *body;         /* the exact body bytes sent (NULL with body_len 0: none) */
    size_t body_len;
    const char *region;  /* "us-east-1": 1..SIGV4_MAX_REGION of a-z 0-9 - */
    const char *service; /* "bedrock": 1..SIGV4_MAX_SERVICE of a-z 0-9 - */
    time_t now;          /* the signing time (the caller's clock: injectable for tests) */
};

/* The headers to send beside the request's own (plus X-Amz-Security-Token with a session token). */
struct sigv4_signed {
    char amz_date[17]; /* X-Amz-Date: YYYYMMDDTHHMMSSZ */
    char authorization[SIGV4_MAX_AUTH];
};

/*
 * Signs r with k (a parsed IAM credential whose views stay valid through the
 * call). Signed headers: content-type (when given), host, x-amz-date and,
 * with a session token, x-amz-security-token, which the caller must send
 * with the token as its value. ERR_INVAL for a region, service, host or
 * method that cannot be signed (empty, too long, characters outside their
 * rule); ERR_TOOBIG past SIGV4_MAX_CANONICAL; ERR_CRYPTO when OpenSSL fails;
 * ERR_NOMEM. *ret is written only on success.
 */
MUST_USE enum err sigv4_sign(const struct sigv4_request *r, const struct awskey *k,
                             struct sigv4_signed *ret);

/*
 * Exposed for tests: the signing key for a date ("YYYYMMDD"), region and
 * service, HMAC-SHA256("AWS4" + secret, date) then region, service,
 * "aws4_request". The caller wipes ret_key.
 */
MUST_USE enum err sigv4_signing_key(const char *secret, size_t secret_len, const char *date,
                                    const char *region, const char *service,
                                    unsigned char ret_key[32]);

#endif
