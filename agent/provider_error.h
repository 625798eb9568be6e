/* SPDX-License-Identifier: MPL-2.0 */
/*
 * A provider's error answer, read for the app: the provider's own reason
 * ("This model's maximum context length is 128000 tokens…", "prompt is too
 * long: 215000 tokens > 200000 maximum", "Unsupported parameter:
 * 'temperature'") is what an app or an SDK needs to fix its request, and
 * what some act on (Claude Code compacts on "prompt is too long"; OpenAI's
 * SDK users test error.code == "context_length_exceeded").
 *
 * Every shape the catalog's API styles answer with is read: OpenAI's and
 * Azure's {"error":{"message","type","code","param"}}, Anthropic's
 * {"type":"error","error":{"type","message"}}, Gemini's and Vertex's
 * {"error":{"code","message","status"}} (also inside a one-element array),
 * {"error":"…"} (Ollama, LM Studio), {"message":"…"} (Cohere, Bedrock,
 * Mistral, vLLM's {"object":"error",…}) and {"detail":"…"} or FastAPI's
 * {"detail":[{"msg":"…"}]}.
 *
 * What comes out is safe to show: the message is cut to
 * PROVIDER_ERROR_MAX_MESSAGE bytes between whole UTF-8 sequences, control
 * characters become spaces, bytes that are not UTF-8 become U+FFFD, and any
 * run of PROVIDER_ERROR_MIN_SECRET or more bytes (the whole secret when it is
 * shorter) that also occurs in one of the secrets given (the tenant's key, an
 * access token) becomes "[redacted]": a provider that quotes a key in its
 * error never gets it to the app. type, code and param are kept only when
 * they are short identifiers holding no such run.
 *
 * Why 24 and not less: providers repeat what the app sent ("Unrecognized
 * request argument supplied: <field>"), so redaction is an oracle: an app
 * sending a guessed fragment learns from "[redacted]" whether it is part of
 * the key, and can slide a known window along the key one character at a
 * time. Starting needs PROVIDER_ERROR_MIN_SECRET - 1 known characters; the
 * longest public key prefix is about 13 ("sk-ant-api03-"), so the first
 * window alone is ~62^10 guesses. The price: a provider quoting fewer than 24
 * characters of a key (a masked "sk-proj-****abcd") passes as it is, as it
 * would reach an app calling the provider directly. Never pass text a
 * guessable secret is around (a service-account key file's JSON: its
 * "-----BEGIN PRIVATE KEY-----" is 28 known characters): the caller gives
 * the access token, or passes nothing on.
 */
#ifndef BYOK_AGENT_PROVIDER_ERROR_H
#define BYOK_AGENT_PROVIDER_ERROR_H

#include <stdbool.h>
#include <stddef.h>

/* The message shown, at most (bytes, then "…"). */
#define PROVIDER_ERROR_MAX_MESSAGE 512
/* An identifier kept (type, code, param), at most. */
#define PROVIDER_ERROR_MAX_IDENT 64
/* Bodies larger than this are not read (an error answer is small). */
#define PROVIDER_ERROR_MAX_BODY 65536
/* The shortest run of a secret's bytes that is redacted (a shorter secret: all of it). */
#define PROVIDER_ERROR_MIN_SECRET 24

struct provider_error {
    char message[PROVIDER_ERROR_MAX_MESSAGE + 4]; /* "" when the body had none */
    char type[PROVIDER_ERROR_MAX_IDENT + 1];      /* "" when none or not an identifier */
    char code[PROVIDER_ERROR_MAX_IDENT + 1];
    char param[PROVIDER_ERROR_MAX_IDENT + 1];
};

/* A secret to redact (not NUL-terminated; len 0: none). */
struct provider_secret {
    const char *data;
    size_t len;
};

/*
 * Reads body (len bytes, any shape above) into out. False when it holds no
 * message (not JSON, no known field, an empty one, or too large); out is
 * then all empty. Never fails otherwise: no allocation but jansson's parse,
 * and a failed parse is "no message".
 */
bool provider_error_parse(const char *body, size_t len, const struct provider_secret *secrets,
                          size_t nsecrets, struct provider_error *out);

/*
 * The safe form of text (len bytes) as above into out (PROVIDER_ERROR_MAX_MESSAGE
 * + 4 bytes): the parse's last step, for tests and other callers.
 */
void provider_error_clean(const char *text, size_t len, const struct provider_secret *secrets,
                          size_t nsecrets, char *out);

#endif
