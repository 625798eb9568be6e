/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The provider-facing request handlers: chat completions (streamed or not),
 * embeddings, the model list, the tenant's usage, the original platform's
 * /api/brain/ai/chat, and OpenAI's Responses API bridged onto chat. A call resolves candidates
 * (route.c), gets keys (keycache.c), calls providers (providers.c over upstream.c) with failover
 * before the first byte, streams SSE with backpressure, and accounts usage.
 * Each handler owns its request until it calls one of server.h's replies.
 */
#ifndef BYOK_AGENT_PROXY_H
#define BYOK_AGENT_PROXY_H

#include "agent/server.h"

/* Cap on a provider's error body we read (to classify it; it is never forwarded). */
#define PROXY_MAX_ERROR_BODY ((size_t)64 * 1024)
/* Longest X-BYOK-Task / X-BYOK-Tier value. */
#define PROXY_MAX_HINT 32

void proxy_chat(struct request *r);
void proxy_embeddings(struct request *r);
void proxy_models(struct request *r);
/*
 * GET /v1/models/{model}: one model of the list, as OpenAI's models.retrieve
 * takes it ({model} percent-encoded or not; "provider/model" or a bare name,
 * the first provider serving it); 404 model_not_found when the tenant cannot use it.
 */
#define PROXY_MODEL_PREFIX "/v1/models/"
void proxy_model(struct request *r);
void proxy_usage(struct request *r);
void proxy_brain_chat(struct request *r);
/* POST /v1/responses: the Responses API bridged onto chat (responses.h). */
void proxy_responses(struct request *r);
/*
 * POST /v1/messages: Anthropic's Messages API passed through to
 * Anthropic-style providers (messages.h); POST /v1/messages/count_tokens
 * likewise, counting no usage.
 */
void proxy_messages(struct request *r);
void proxy_messages_count(struct request *r);

#endif
