/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The Amazon Bedrock adapter (api_style "bedrock"): OpenAI's chat completion
 * translated to and from Bedrock's Converse API, authenticated with a Bedrock
 * API key (Authorization: Bearer) or IAM credentials ("<access key id>:<secret
 * access key>[:<session token>]", common/awskey.h), which sign each request
 * with AWS Signature Version 4 (agent/sigv4.h). Streams are ConverseStream's
 * binary event stream (agent/eventstream.h), whose messages reach
 * provider_bedrock_stream_event one by one. Embeddings go through InvokeModel
 * for Titan Text Embeddings V2 (one text per call) and Cohere Embed v3;
 * other embedding models are ERR_UNSUPPORTED. InvokeModel also carries Anthropic's Messages API
 * for Claude (messages.h), built with provider_bedrock_invoke so that it is authenticated by the
 * same code. providers.c registers the adapter; this header is its
 * whole API plus the translations, exposed for tests.
 */
#ifndef BYOK_AGENT_PROVIDER_BEDROCK_H
#define BYOK_AGENT_PROVIDER_BEDROCK_H

#include <jansson.h>
#include <stdbool.h>

#include "agent/providers.h"
#include "common/buf.h"
#include "common/err.h"

/*
 * Cohere Embed v3 on Bedrock (its model parameters page): at most 96 texts per
 * call, each at most 2048 characters; vectors of 1024 dimensions only.
 */
#define BEDROCK_COHERE_MAX_TEXTS 96
#define BEDROCK_COHERE_MAX_CHARS 2048
#define BEDROCK_COHERE_DIMENSIONS 1024

/* The longest model id (or inference profile ARN) put into a URL path, before encoding. */
#define BEDROCK_MAX_MODEL_ID 512

/*
 * Is the Bedrock model id a Claude model: "anthropic.claude..." or a
 * system-defined inference profile "<geo>.anthropic.claude..." (us., eu.,
 * apac., jp., global., us-gov. ...: one label of lowercase letters and
 * hyphens, at most 8)? Only an id, not an ARN. Claude takes Anthropic's
 * Messages API through InvokeModel (/v1/messages on Bedrock), and the newer
 * ones prompt-cache points (the adapter's own, narrower rule).
 */
bool provider_bedrock_claude(const char *model);

/*
 * The region an IAM key signs for: the one an AWS endpoint's host names
 * (bedrock-runtime[-fips].<region>.amazonaws.com[.cn], VPC endpoints
 * included), else the key's metadata "region" (a host that names none: a
 * proxy, a test double). ERR_CONFIG when neither does. Exposed for tests.
 */
MUST_USE enum err provider_bedrock_region(const char *host, const json_t *metadata, char *out,
                                          size_t n);

/*
 * The upstream request: POST {base_url}/model/{model id, percent-encoded}/converse
 * (or /converse-stream) with the Converse body, or for embeddings /invoke with
 * the model's own body (provider_bedrock_embed_request); then the key as a bearer token or,
 * for an IAM key, Host, X-Amz-Date, X-Amz-Security-Token (temporary
 * credentials) and a SigV4 Authorization signed at c->now (0: the clock).
 * ERR_UNSUPPORTED for embeddings the translation cannot make (below); ERR_CONFIG for a base_url
 * that is not https (unless local) or still holds a catalog placeholder ("{region}"), an IAM key
 * that does not parse, or no region to sign for; ERR_INVAL (with out->bad) for a request that
 * cannot be translated.
 */
MUST_USE enum err provider_bedrock_build(const struct provider_call *c, struct provider_http *out);
/*
 * InvokeModel with a body the caller made (Claude's Messages body for
 * /v1/messages: messages.h): out takes body (malloc'd, len bytes) whatever
 * the outcome, then POST {base_url}/model/{c->model, encoded}/invoke (or
 * /invoke-with-response-stream for c->stream) with the JSON headers and the
 * key as provider_bedrock_build sends it (bearer, or SigV4 over this body).
 * Errors as provider_bedrock_build's.
 */
MUST_USE enum err provider_bedrock_invoke(const struct provider_call *c, char *body, size_t len,
                                          struct provider_http *out);
/*
 * A 2xx Converse body to OpenAI's chat.completion, or an InvokeModel
 * embedding body to OpenAI's embeddings list (see struct provider_adapter).
 */
MUST_USE enum err provider_bedrock_response(enum provider_op op, const char *body, size_t len,
                                            const char *model, json_t **ret_json,
                                            struct provider_usage *ret_usage);
/*
 * One event stream message: event is its :event-type (messageStart,
 * contentBlockStart, contentBlockDelta, contentBlockStop, messageStop,
 * metadata), or "error" for an exception or error message (st->failed is
 * set; its payload is never read). Appends OpenAI chunks to out; metadata,
 * the last event, adds the usage chunk (unless st->skip_usage_chunk) and
 * [DONE] and sets st->done. ERR_PROTO for a payload that is not a JSON
 * object or a tool call the app could not use.
 */
MUST_USE enum err provider_bedrock_stream_event(struct provider_stream *st, const char *event,
                                                const char *data, size_t len, struct buf *out);

/* Exposed for tests: the Converse body for an OpenAI request; bad may be NULL. */
MUST_USE enum err provider_bedrock_request(const json_t *openai_req, long default_max_tokens,
                                           struct provider_bad *bad, json_t **ret);
/* Exposed for tests: a parsed Converse answer to OpenAI's shape. */
MUST_USE enum err provider_bedrock_answer(const json_t *converse, const char *model, json_t **ret,
                                          struct provider_usage *ret_usage);

/*
 * Exposed for tests: the InvokeModel body for an OpenAI embeddings request to
 * model; bad may be NULL. ERR_UNSUPPORTED (another candidate may serve it)
 * for a model that is neither Titan Text Embeddings V2 nor Cohere Embed v3,
 * token-id input, or more than one text for Titan (one text per call, and
 * an adapter makes one call); ERR_INVAL naming the field for encoding_format
 * other than float, dimensions Titan (256, 512, 1024) or Cohere (1024) does
 * not make, an empty input, more than BEDROCK_COHERE_MAX_TEXTS texts or one
 * longer than BEDROCK_COHERE_MAX_CHARS for Cohere.
 */
MUST_USE enum err provider_bedrock_embed_request(const json_t *openai_req, const char *model,
                                                 struct provider_bad *bad, json_t **ret);
/*
 * Exposed for tests: a parsed InvokeModel embedding answer (Titan's or
 * Cohere's) to OpenAI's list. Titan's usage is read (ret_usage seen);
 * Cohere's body has none: the answer's usage is estimated from its texts and
 * ret_usage is left unseen (the proxy then counts the call as estimated).
 * ERR_PROTO for anything else.
 */
MUST_USE enum err provider_bedrock_embed_answer(const json_t *answer, const char *model,
                                                json_t **ret, struct provider_usage *ret_usage);

#endif
