/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The provider catalog: a static table of the 15 built-in providers, turned
 * into JSON on first use (again on the next use if memory ran out) and shared
 * read-only afterwards, plus admin
 * overrides stored under "providers/<name>" and the `providers/` paths.
 *
 * An override is a whole entry: a write to a built-in provider starts from the
 * built-in entry and replaces the fields given, and the result is stored; a
 * delete of the override brings the built-in entry back. Entries are checked
 * here, field by field, with 400s that name the field, because the agent
 * trusts base_url (it sends tenants' keys there) and the prices (budgets).
 */
#include "plugin/catalog.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/cache.h"
#include "plugin/config.h"
#include "plugin/keystore.h"
#include "plugin/paths.h"

/* The limits on admin-written entries are in catalog.h. */

/* ---- the built-in table -------------------------------------------------------- */

/*
 * Prices are USD per 1M tokens (input / output) from the providers' public
 * pricing pages as of mid-2025 (standard tier, no batch discounts, the
 * smallest context band where a price depends on it: the larger bands and
 * web searches are in catalog_extras below). Prompt-cache prices
 * (cached input, cache write) are the same pages' where they list one:
 * Anthropic (also on Bedrock and OpenRouter) reads 0.1x input, 5-minute
 * writes 1.25x; OpenAI (and Azure) cached input 0.5x (gpt-4.1 0.25x), writes
 * not billed apart (gpt-5.6: reads 0.1x, writes 1.25x); Gemini 2.5 reads 0.1x, 2.0 Flash 0.25x;
 * DeepSeek its cache-hit price; Amazon Nova reads 0.25x. Mistral, Perplexity, Cohere, Hugging Face
 * and Meta's models list none. Vertex AI's Gemini models have none yet (their cached tokens cost
 * input_per_1m); its Claude models Anthropic's. They go stale: admins override entries with `vault
 * write byok/providers/<name> ...`. Local providers cost nothing. Model capabilities and limits are
 * from the providers' model pages of the same date.
 *
 * Models added in November 2026 (read in stored copies of the providers'
 * pages; each block below names its page and what could not be checked):
 * Anthropic's Claude Haiku 4.5, Sonnet 5.5, Opus 5.5 and Haiku 5.5 (also on
 * Bedrock and Vertex AI), OpenAI's gpt-5.6-luna and gpt-5.6-terra. Both bill
 * cache writes (1.25x input) and prompts above 272K tokens at 2x input, 1.5x
 * output (catalog_extras).
 *
 * Removed: OpenAI's o3-mini, shut down on 2026-10-23 (OpenAI's deprecations
 * page, as quoted by several stored copies; replacement gpt-5.6-sol, and
 * gpt-5.6-terra for o4-mini). Its gpt-4o, gpt-4o-mini and gpt-4.1 are to shut
 * down on 2027-01-14 (Azure's later): kept until then, gpt-4o-mini still the
 * openai default (admins override default_model).
 */
#define CATALOG_BUILTIN_MODELS 12
#define CATALOG_BUILTIN_CAPS 8

struct catalog_model_def {
    const char *name;
    long long context_window;
    long long max_output_tokens;
    const char *caps[CATALOG_BUILTIN_CAPS + 1];
    const char *tier;
    double input_per_1m;
    double output_per_1m;
    /*
     * Prompt-cache prices, USD per 1M tokens: cache reads and (5-minute)
     * cache writes. 0 here means the entry has none (left out of its JSON:
     * readers take input_per_1m), so a model without prompt caching, or
     * whose provider does not bill writes apart (OpenAI, Gemini, DeepSeek),
     * costs what it did.
     */
    double cached_input_per_1m;
    double cache_write_per_1m;
};

struct catalog_def {
    const char *name;
    const char *display_name;
    const char *api_style;
    /*
     * {resource}, {region}, {project} mark the per-customer part of the URL
     * (Azure resource, AWS/GCP region, GCP project): an admin override puts
     * the real value in. Azure's is the resource endpoint without "/openai":
     * the agent appends "/openai/deployments/<deployment>/..." itself.
     */
    const char *base_url;
    bool local;
    const char *regions[4];
    const char *key_prefixes[5];
    int key_min_length;
    const char *default_model;
    struct catalog_model_def models[CATALOG_BUILTIN_MODELS];
};

#define CAPS(...)                                                                                  \
    {                                                                                              \
        __VA_ARGS__, NULL                                                                          \
    }

static const struct catalog_def catalog_defs[] = {
    {"openai",
     "OpenAI",
     "openai",
     "https://api.openai.com/v1",
     false,
     {"us"},
     {"sk-"},
     40,
     "gpt-4o-mini",
     {{"gpt-4o", 128000, 16384, CAPS("chat", "vision", "tools", "json", "streaming"), "HIGH", 2.5,
       10.0, 1.25, 0.0},
      {"gpt-4o-mini", 128000, 16384, CAPS("chat", "vision", "tools", "json", "streaming"), "LOW",
       0.15, 0.6, 0.075, 0.0},
      {"gpt-4.1", 1047576, 32768, CAPS("chat", "vision", "tools", "json", "streaming", "code"),
       "HIGH", 2.0, 8.0, 0.5, 0.0},
      {"text-embedding-3-small", 8191, 0, CAPS("embedding"), "LOW", 0.02, 0.0, 0.0, 0.0},
      /*
       * https://developers.openai.com/api/docs/models/gpt-5.6-luna (read 2026-11):
       * 1,050,000 context, 128,000 output, $0.20 input, $0.02 cached input,
       * $1.20 output; cache writes 1.25x input; prompts above 272K tokens at
       * 2x input and 1.5x output for the whole request. GPT-5.6 Terra and
       * Sol are not here: their own pages were not read (third-party
       * listings disagree on Terra's price).
       */
      {"gpt-5.6-luna", 1050000, 128000,
       CAPS("chat", "vision", "tools", "json", "streaming", "reasoning", "code"), "LOW", 0.2, 1.2,
       0.02, 0.25},
      /*
       * https://developers.openai.com/de-DE/api/docs/models/gpt-5.6-terra
       * (read 2026-11; Luna's page quotes the same input price): 1,050,000
       * context, 128,000 output, $2.00 input, $0.20 cached input, $12.00
       * output; cache writes 1.25x input; above 272K prompt tokens 2x input
       * and 1.5x output. GPT-5.6 Sol is not here: its page gives promotional
       * prices "at least until November 21, 2026" and not the price after.
       */
      {"gpt-5.6-terra", 1050000, 128000,
       CAPS("chat", "vision", "tools", "json", "streaming", "reasoning", "code"), "MEDIUM", 2.0,
       12.0, 0.2, 2.5}}},
    {"anthropic",
     "Anthropic",
     "anthropic",
     "https://api.anthropic.com/v1",
     false,
     {"us"},
     {"sk-ant-"},
     40,
     "claude-haiku-4-5-20251001",
     {{"claude-sonnet-4-20250514", 200000, 64000,
       CAPS("chat", "vision", "tools", "streaming", "reasoning", "code"), "HIGH", 3.0, 15.0, 0.3,
       3.75},
      {"claude-opus-4-1-20250805", 200000, 32000,
       CAPS("chat", "vision", "tools", "streaming", "reasoning", "code"), "HIGH", 15.0, 75.0, 1.5,
       18.75},
      {"claude-3-5-haiku-20241022", 200000, 8192, CAPS("chat", "vision", "tools", "streaming"),
       "MEDIUM", 0.8, 4.0, 0.08, 1.0},
      /*
       * https://platform.claude.com/docs/en/models/haiku-4-5/overview and
       * https://platform.claude.com/docs/en/about-claude/pricing (read 2026-11,
       * in their zh-CN copies):
       * Claude Haiku 4.5 (legacy, still served), 200K context, 64K output,
       * $1 / $5, cache hits $0.10, 5-minute writes $1.25.
       */
      {"claude-haiku-4-5-20251001", 200000, 64000,
       CAPS("chat", "vision", "tools", "streaming", "reasoning", "code"), "MEDIUM", 1.0, 5.0, 0.1,
       1.25},
      /*
       * https://platform.claude.com/docs/en/models/haiku-5-5/overview (read
       * 2026-11; its comparison table lists Sonnet 5.5 and Opus 5.5 too): the
       * current models, 1M context, 128K output; Sonnet 5.5 $2 / $10, Opus 5.5
       * $4 / $20, Haiku 5.5 "from" $0.10 / $0.50. Ids per
       * https://platform.claude.com/docs/en/about-claude/models/model-ids-and-versions
       * (dateless from the 4.6 generation on). Unverified (not read on
       * Anthropic's pricing page, only in third-party price lists quoting it):
       * the cache prices (Sonnet 5.5 hits $0.10 and Opus 5.5 hits $0.20, i.e.
       * 0.05x input; 5-minute writes 1.25x input) and Haiku 5.5's upper band
       * (catalog_extras: above 100K prompt tokens $0.50 / $2.50).
       */
      {"claude-sonnet-5-5", 1000000, 128000,
       CAPS("chat", "vision", "tools", "streaming", "reasoning", "code"), "HIGH", 2.0, 10.0, 0.1,
       2.5},
      {"claude-opus-5-5", 1000000, 128000,
       CAPS("chat", "vision", "tools", "streaming", "reasoning", "code"), "HIGH", 4.0, 20.0, 0.2,
       5.0},
      {"claude-haiku-5-5", 1000000, 128000,
       CAPS("chat", "vision", "tools", "streaming", "reasoning", "code"), "LOW", 0.1, 0.5, 0.01,
       0.125}}},
    {"azure",
     "Azure OpenAI",
     "azure",
     "https://{resource}.openai.azure.com",
     false,
     {"eu", "us", "global"},
     {NULL},
     32,
     "gpt-4o-mini",
     {{"gpt-4o", 128000, 16384, CAPS("chat", "vision", "tools", "json", "streaming"), "HIGH", 2.5,
       10.0, 1.25, 0.0},
      {"gpt-4o-mini", 128000, 16384, CAPS("chat", "vision", "tools", "json", "streaming"), "LOW",
       0.15, 0.6, 0.075, 0.0},
      {"gpt-4.1", 1047576, 32768, CAPS("chat", "vision", "tools", "json", "streaming", "code"),
       "HIGH", 2.0, 8.0, 0.5, 0.0},
      {"text-embedding-3-small", 8191, 0, CAPS("embedding"), "LOW", 0.02, 0.0, 0.0, 0.0}}},
    {"bedrock",
     "Amazon Bedrock",
     "bedrock",
     "https://bedrock-runtime.{region}.amazonaws.com",
     false,
     {"eu", "us"},
     /*
      * Bedrock API keys (a bearer token). IAM credentials are stored too, as
      * "<access key id>:<secret access key>[:<session token>]", and the agent
      * signs each request with them (SigV4): their format is checked by its
      * own rule (common/awskey.h, in paths_keys.c and keyvalidate.c), not by
      * these prefixes.
      */
     {"ABSK"},
     20,
     "anthropic.claude-3-5-haiku-20241022-v1:0",
     {{"anthropic.claude-sonnet-4-20250514-v1:0", 200000, 64000,
       CAPS("chat", "vision", "tools", "streaming", "reasoning", "code"), "HIGH", 3.0, 15.0, 0.3,
       3.75},
      {"anthropic.claude-3-5-haiku-20241022-v1:0", 200000, 8192, CAPS("chat", "tools", "streaming"),
       "MEDIUM", 0.8, 4.0, 0.08, 1.0},
      {"amazon.nova-pro-v1:0", 300000, 5000, CAPS("chat", "vision", "tools", "streaming"), "MEDIUM",
       0.8, 3.2, 0.2, 0.0},
      {"amazon.nova-micro-v1:0", 128000, 5000, CAPS("chat", "tools", "streaming"), "LOW", 0.035,
       0.14, 0.00875, 0.0},
      {"meta.llama3-1-70b-instruct-v1:0", 128000, 2048, CAPS("chat", "tools", "streaming"), "LOW",
       0.72, 0.72, 0.0, 0.0},
      /*
       * Embedding models, called through InvokeModel (agent/provider_bedrock.c).
       * Their windows bound each input: Titan V2 8,192 tokens, Cohere 512.
       */
      {"amazon.titan-embed-text-v2:0", 8192, 0, CAPS("embedding"), "LOW", 0.02, 0.0, 0.0, 0.0},
      {"cohere.embed-english-v3", 512, 0, CAPS("embedding"), "LOW", 0.1, 0.0, 0.0, 0.0},
      {"cohere.embed-multilingual-v3", 512, 0, CAPS("embedding"), "LOW", 0.1, 0.0, 0.0, 0.0},
      /*
       * Bedrock ids from Anthropic's models overview and
       * https://platform.claude.com/docs/en/about-claude/models/model-ids-and-versions
       * ("anthropic.claude-{name}-{major}-{minor}" from Sonnet 4.6 on; AWS's
       * model card for Haiku 5.5 lists it, 1M context, 128K output). Prices and
       * Haiku 5.5's upper band assumed Anthropic's: Bedrock's own pricing
       * page was not read (unverified).
       */
      {"anthropic.claude-haiku-4-5-20251001-v1:0", 200000, 64000,
       CAPS("chat", "vision", "tools", "streaming", "reasoning", "code"), "MEDIUM", 1.0, 5.0, 0.1,
       1.25},
      {"anthropic.claude-sonnet-5-5", 1000000, 128000,
       CAPS("chat", "vision", "tools", "streaming", "reasoning", "code"), "HIGH", 2.0, 10.0, 0.1,
       2.5},
      {"anthropic.claude-haiku-5-5", 1000000, 128000,
       CAPS("chat", "vision", "tools", "streaming", "reasoning", "code"), "LOW", 0.1, 0.5, 0.01,
       0.125}}},
    {"vertex",
     "Google Vertex AI",
     "vertex",
     /*
      * Express mode: an API key works on the global endpoint only, without
      * projects or locations (the agent appends /publishers/google/models/...).
      * The global endpoint may serve from any region: no residency guarantee.
      */
     "https://aiplatform.googleapis.com/v1",
     false,
     {"global"},
     /*
      * A Google API key (Vertex AI express mode), or a service-account key
      * file (common/gcpkey.h: checked by its own rule in paths_keys.c and
      * keyvalidate.c, not by these; the agent then calls the regional
      * endpoint of the key's project with an access token).
      */
     {"AIza"},
     39,
     "gemini-2.5-flash",
     {{"gemini-2.5-pro", 1048576, 65536,
       CAPS("chat", "vision", "tools", "json", "streaming", "reasoning", "code"), "HIGH", 1.25,
       10.0, 0.0, 0.0},
      {"gemini-2.5-flash", 1048576, 65536,
       CAPS("chat", "vision", "tools", "json", "streaming", "reasoning"), "MEDIUM", 0.3, 2.5, 0.0,
       0.0},
      {"gemini-2.0-flash-001", 1048576, 8192, CAPS("chat", "vision", "tools", "json", "streaming"),
       "LOW", 0.15, 0.6, 0.0375, 0.0},
      /*
       * Embeddings (:predict), with a service-account key only: express mode
       * has no embeddings endpoint. 2,048 input tokens each. gemini-embedding-001
       * is $0.15 per 1M input tokens. Unverified: Google bills the two
       * text-embedding models per character ($0.025 per 1M characters online);
       * 0.1 per 1M tokens assumes ~4 characters a token.
       */
      {"text-embedding-005", 2048, 0, CAPS("embedding"), "LOW", 0.1, 0.0, 0.0, 0.0},
      {"text-multilingual-embedding-002", 2048, 0, CAPS("embedding"), "LOW", 0.1, 0.0, 0.0, 0.0},
      {"gemini-embedding-001", 2048, 0, CAPS("embedding"), "LOW", 0.15, 0.0, 0.0, 0.0},
      /*
       * Claude, a partner model: Anthropic's Messages API on :rawPredict, for
       * /v1/messages with a service-account key only (never chat, never express
       * mode). Vertex's ids carry an @version; Anthropic's prices (regional
       * endpoints may cost more).
       */
      {"claude-sonnet-4@20250514", 200000, 64000,
       CAPS("chat", "vision", "tools", "streaming", "reasoning", "code"), "HIGH", 3.0, 15.0, 0.3,
       3.75},
      {"claude-3-5-haiku@20241022", 200000, 8192, CAPS("chat", "vision", "tools", "streaming"),
       "MEDIUM", 0.8, 4.0, 0.08, 1.0},
      /*
       * Vertex ids: Haiku 4.5 from Anthropic's models overview; from the 4.6
       * generation on the Claude API's own ids (model-ids-and-versions above;
       * Google's page
       * https://docs.cloud.google.com/gemini-enterprise-agent-platform/models/partner-models/claude/sonnet-5-5
       * names claude-sonnet-5-5, 1,000,000 input tokens). Anthropic's prices,
       * as for the others; Google's own price list for them was not read
       * (unverified), nor Haiku 5.5's upper band there.
       */
      {"claude-haiku-4-5@20251001", 200000, 64000,
       CAPS("chat", "vision", "tools", "streaming", "reasoning", "code"), "MEDIUM", 1.0, 5.0, 0.1,
       1.25},
      {"claude-sonnet-5-5", 1000000, 128000,
       CAPS("chat", "vision", "tools", "streaming", "reasoning", "code"), "HIGH", 2.0, 10.0, 0.1,
       2.5},
      {"claude-haiku-5-5", 1000000, 128000,
       CAPS("chat", "vision", "tools", "streaming", "reasoning", "code"), "LOW", 0.1, 0.5, 0.01,
       0.125}}},
    {"gemini",
     "Google Gemini API",
     "openai",
     "https://generativelanguage.googleapis.com/v1beta/openai",
     false,
     {"global"},
     {"AIza"},
     39,
     "gemini-2.5-flash",
     {{"gemini-2.5-pro", 1048576, 65536,
       CAPS("chat", "vision", "tools", "json", "streaming", "reasoning", "code"), "HIGH", 1.25,
       10.0, 0.125, 0.0},
      {"gemini-2.5-flash", 1048576, 65536,
       CAPS("chat", "vision", "tools", "json", "streaming", "reasoning"), "MEDIUM", 0.3, 2.5, 0.03,
       0.0},
      {"gemini-2.5-flash-lite", 1048576, 65536,
       CAPS("chat", "vision", "tools", "json", "streaming"), "LOW", 0.1, 0.4, 0.01, 0.0},
      {"gemini-2.0-flash", 1048576, 8192, CAPS("chat", "vision", "tools", "json", "streaming"),
       "LOW", 0.1, 0.4, 0.025, 0.0},
      {"text-embedding-004", 2048, 0, CAPS("embedding"), "FREE", 0.0, 0.0, 0.0, 0.0}}},
    {"cohere",
     "Cohere",
     "cohere",
     "https://api.cohere.com/v2",
     false,
     {"us"},
     {NULL},
     40,
     "command-r-08-2024",
     {{"command-a-03-2025", 256000, 8000, CAPS("chat", "tools", "json", "streaming"), "HIGH", 2.5,
       10.0, 0.0, 0.0},
      {"command-r-plus-08-2024", 128000, 4000, CAPS("chat", "tools", "json", "streaming"), "HIGH",
       2.5, 10.0, 0.0, 0.0},
      {"command-r-08-2024", 128000, 4000, CAPS("chat", "tools", "json", "streaming"), "LOW", 0.15,
       0.6, 0.0, 0.0},
      {"command-r7b-12-2024", 128000, 4000, CAPS("chat", "tools", "json", "streaming"), "LOW",
       0.0375, 0.15, 0.0, 0.0},
      {"embed-english-v3.0", 512, 0, CAPS("embedding"), "LOW", 0.1, 0.0, 0.0, 0.0}}},
    {"mistral",
     "Mistral AI",
     "openai",
     "https://api.mistral.ai/v1",
     false,
     {"eu"},
     {NULL},
     32,
     "mistral-small-latest",
     {{"mistral-large-latest", 128000, 8192, CAPS("chat", "tools", "json", "streaming", "code"),
       "HIGH", 2.0, 6.0, 0.0, 0.0},
      {"mistral-medium-latest", 128000, 8192,
       CAPS("chat", "vision", "tools", "json", "streaming", "code"), "MEDIUM", 0.4, 2.0, 0.0, 0.0},
      {"mistral-small-latest", 128000, 8192, CAPS("chat", "vision", "tools", "json", "streaming"),
       "LOW", 0.1, 0.3, 0.0, 0.0},
      {"codestral-latest", 256000, 8192, CAPS("chat", "json", "streaming", "code"), "LOW", 0.3, 0.9,
       0.0, 0.0},
      {"mistral-embed", 8192, 0, CAPS("embedding"), "LOW", 0.1, 0.0, 0.0, 0.0}}},
    {"deepseek",
     "DeepSeek",
     "openai",
     "https://api.deepseek.com/v1",
     false,
     {"global"},
     {"sk-"},
     35,
     "deepseek-chat",
     {{"deepseek-chat", 64000, 8192, CAPS("chat", "tools", "json", "streaming", "code"), "LOW",
       0.27, 1.1, 0.07, 0.0},
      {"deepseek-reasoner", 64000, 64000, CAPS("chat", "json", "streaming", "reasoning", "code"),
       "MEDIUM", 0.55, 2.19, 0.14, 0.0}}},
    {"perplexity",
     "Perplexity",
     "openai",
     "https://api.perplexity.ai",
     false,
     {"us"},
     {"pplx-"},
     40,
     "sonar",
     {{"sonar", 127072, 8000, CAPS("chat", "streaming"), "MEDIUM", 1.0, 1.0, 0.0, 0.0},
      {"sonar-pro", 200000, 8000, CAPS("chat", "streaming"), "HIGH", 3.0, 15.0, 0.0, 0.0},
      {"sonar-reasoning", 127072, 8000, CAPS("chat", "streaming", "reasoning"), "MEDIUM", 1.0, 5.0,
       0.0, 0.0},
      {"sonar-reasoning-pro", 127072, 8000, CAPS("chat", "streaming", "reasoning"), "HIGH", 2.0,
       8.0, 0.0, 0.0}}},
    {"openrouter",
     "OpenRouter",
     "openai",
     "https://openrouter.ai/api/v1",
     false,
     {"global"},
     {"sk-or-"},
     40,
     "openai/gpt-4o-mini",
     {{"openai/gpt-4o-mini", 128000, 16384, CAPS("chat", "vision", "tools", "json", "streaming"),
       "LOW", 0.15, 0.6, 0.075, 0.0},
      {"anthropic/claude-sonnet-4", 200000, 64000,
       CAPS("chat", "vision", "tools", "streaming", "reasoning", "code"), "HIGH", 3.0, 15.0, 0.3,
       3.75},
      {"google/gemini-2.5-flash", 1048576, 65536,
       CAPS("chat", "vision", "tools", "json", "streaming"), "MEDIUM", 0.3, 2.5, 0.03, 0.0},
      {"meta-llama/llama-3.3-70b-instruct", 131072, 16384, CAPS("chat", "tools", "streaming"),
       "LOW", 0.13, 0.4, 0.0, 0.0}}},
    /* Inference Providers bill at the routed provider's price; these are typical figures. */
    {"huggingface",
     "Hugging Face",
     "openai",
     "https://router.huggingface.co/v1",
     false,
     {"global"},
     {"hf_"},
     37,
     "meta-llama/Llama-3.1-8B-Instruct",
     {{"meta-llama/Llama-3.1-8B-Instruct", 131072, 8192, CAPS("chat", "tools", "streaming"), "LOW",
       0.1, 0.1, 0.0, 0.0},
      {"meta-llama/Llama-3.3-70B-Instruct", 131072, 8192, CAPS("chat", "tools", "streaming"),
       "MEDIUM", 0.6, 0.6, 0.0, 0.0},
      {"Qwen/Qwen2.5-Coder-32B-Instruct", 32768, 8192, CAPS("chat", "streaming", "code"), "LOW",
       0.2, 0.2, 0.0, 0.0}}},
    {"ollama",
     "Ollama (local)",
     "openai",
     "http://127.0.0.1:11434/v1",
     true,
     {"eu", "us", "global"},
     {NULL},
     0,
     "llama3.2",
     {{"llama3.2", 131072, 8192, CAPS("chat", "tools", "json", "streaming"), "FREE", 0.0, 0.0, 0.0,
       0.0},
      {"qwen2.5-coder:7b", 32768, 8192, CAPS("chat", "json", "streaming", "code"), "FREE", 0.0, 0.0,
       0.0, 0.0},
      {"nomic-embed-text", 8192, 0, CAPS("embedding"), "FREE", 0.0, 0.0, 0.0, 0.0}}},
    {"lmstudio",
     "LM Studio (local)",
     "openai",
     "http://127.0.0.1:1234/v1",
     true,
     {"eu", "us", "global"},
     {NULL},
     0,
     "qwen2.5-7b-instruct",
     {{"qwen2.5-7b-instruct", 32768, 8192, CAPS("chat", "tools", "json", "streaming"), "FREE", 0.0,
       0.0, 0.0, 0.0},
      {"llama-3.2-3b-instruct", 131072, 8192, CAPS("chat", "streaming"), "FREE", 0.0, 0.0, 0.0,
       0.0}}},
    {"vllm",
     "vLLM (local)",
     "openai",
     "http://127.0.0.1:8000/v1",
     true,
     {"eu", "us", "global"},
     {NULL},
     0,
     "meta-llama/Llama-3.1-8B-Instruct",
     {{"meta-llama/Llama-3.1-8B-Instruct", 131072, 8192, CAPS("chat", "tools", "json", "streaming"),
       "FREE", 0.0, 0.0, 0.0, 0.0},
      {"Qwen/Qwen2.5-7B-Instruct", 32768, 8192, CAPS("chat", "tools", "json", "streaming"), "FREE",
       0.0, 0.0, 0.0, 0.0}}},
};

#define CATALOG_NBUILTIN (sizeof(catalog_defs) / sizeof(catalog_defs[0]))

/*
 * What a few built-in models cost beyond their flat token prices, kept apart
 * from catalog_defs so its ~60 rows need no four more zeros each (a row
 * without them would be refused by -Wmissing-field-initializers). Each row
 * names a model of catalog_defs (test_catalog checks that it does).
 *
 * Long-context tiers: a request whose whole prompt (cache reads and writes
 * included) exceeds the threshold is billed at the long prices for all of its
 * tokens; the agent scales the prompt-cache prices by the same input ratio.
 * Claude Sonnet 4 (1M-context beta) above 200,000 input tokens: $6 input,
 * $22.50 output (2x, 1.5x), Anthropic's figures from its August 2025
 * announcement (as reported, e.g. The New Stack; not checked against the live
 * pricing page), which names Bedrock and Vertex AI as serving it too (their
 * own price lists unverified). Gemini 2.5 Pro above 200,000 prompt tokens:
 * $2.50 input, $15 output, cached input 2x as well ($0.25 on the Gemini API)
 * (Google's Gemini API pricing page as quoted by third parties; Vertex AI's
 * assumed the same, unverified). OpenRouter's Claude Sonnet 4 is left flat:
 * whether OpenRouter passes the tier on is unverified.
 *
 * Web search (Anthropic's server tool, usage.server_tool_use.web_search_requests):
 * $10 per 1,000 searches on Anthropic's API (Anthropic's pricing page, as
 * reported). Vertex AI serves the same tool for its Claude models (Google's
 * "Web search with Anthropic Claude models" page, Preview); its price is
 * assumed to be Anthropic's (unverified). Bedrock does not offer the tool
 * (its Claude models refuse web_search_20250305), so its entries have none.
 * web_fetch costs only its tokens.
 */
struct catalog_model_extra {
    const char *provider;
    const char *model;
    long long long_context_threshold; /* 0: no long-context tier */
    double long_input_per_1m;
    double long_output_per_1m;
    double web_search_per_1k; /* 0: web searches not priced */
};

static const struct catalog_model_extra catalog_extras[] = {
    {"anthropic", "claude-sonnet-4-20250514", 200000, 6.0, 22.5, 10.0},
    {"anthropic", "claude-opus-4-1-20250805", 0, 0.0, 0.0, 10.0},
    {"anthropic", "claude-3-5-haiku-20241022", 0, 0.0, 0.0, 10.0},
    {"bedrock", "anthropic.claude-sonnet-4-20250514-v1:0", 200000, 6.0, 22.5, 0.0},
    {"vertex", "claude-sonnet-4@20250514", 200000, 6.0, 22.5, 10.0},
    {"vertex", "claude-3-5-haiku@20241022", 0, 0.0, 0.0, 10.0},
    {"vertex", "gemini-2.5-pro", 200000, 2.5, 15.0, 0.0},
    {"gemini", "gemini-2.5-pro", 200000, 2.5, 15.0, 0.0},
    /* Added November 2026: see the model comments in catalog_defs for sources. */
    {"openai", "gpt-5.6-luna", 272000, 0.4, 1.8, 0.0},
    {"openai", "gpt-5.6-terra", 272000, 4.0, 18.0, 0.0},
    {"anthropic", "claude-haiku-4-5-20251001", 0, 0.0, 0.0, 10.0},
    {"anthropic", "claude-sonnet-5-5", 0, 0.0, 0.0, 10.0},
    {"anthropic", "claude-opus-5-5", 0, 0.0, 0.0, 10.0},
    {"anthropic", "claude-haiku-5-5", 100000, 0.5, 2.5, 10.0},
    {"bedrock", "anthropic.claude-haiku-5-5", 100000, 0.5, 2.5, 0.0},
    {"vertex", "claude-haiku-4-5@20251001", 0, 0.0, 0.0, 10.0},
    {"vertex", "claude-sonnet-5-5", 0, 0.0, 0.0, 10.0},
    {"vertex", "claude-haiku-5-5", 100000, 0.5, 2.5, 10.0},
};

/* Adds the extra prices of provider's model m to its JSON; false on out of memory. */
static bool catalog_extra_json(const char *provider, const char *model, json_t *m)
{
    for (size_t i = 0; i < sizeof(catalog_extras) / sizeof(catalog_extras[0]); i++) {
        const struct catalog_model_extra *x = &catalog_extras[i];
        if (strcmp(x->provider, provider) != 0 || strcmp(x->model, model) != 0) {
            continue;
        }
        if (x->long_context_threshold > 0 &&
            (json_object_set_new(m, "long_context_threshold",
                                 json_integer((json_int_t)x->long_context_threshold)) != 0 ||
             json_object_set_new(m, "long_input_per_1m", json_real(x->long_input_per_1m)) != 0 ||
             json_object_set_new(m, "long_output_per_1m", json_real(x->long_output_per_1m)) != 0)) {
            return false;
        }
        if (x->web_search_per_1k > 0 &&
            json_object_set_new(m, "web_search_per_1k", json_real(x->web_search_per_1k)) != 0) {
            return false;
        }
    }
    return true;
}

/*
 * The built-in entries as JSON, built on first use, immutable afterwards. A
 * build that runs out of memory keeps nothing and the next use tries again
 * (pthread_once would never run it again: the built-ins would be gone until
 * a restart), so the table is either complete or absent.
 */
static pthread_mutex_t catalog_build_mu = PTHREAD_MUTEX_INITIALIZER;
static atomic_bool catalog_built;
static json_t *catalog_json[CATALOG_NBUILTIN];

/* NULL unless every string made it into the array. */
static json_t *catalog_strings(const char *const *v, size_t max)
{
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && i < max && v[i] != NULL; i++) {
        if (json_array_append_new(a, json_string(v[i])) != 0) {
            json_decref(a);
            a = NULL;
        }
    }
    return a;
}

/* NULL unless the whole entry was built (json_pack frees what "o" was given if it fails). */
static json_t *catalog_def_json(const struct catalog_def *d)
{
    json_t *models = json_array();
    for (size_t i = 0; models != NULL && i < CATALOG_BUILTIN_MODELS && d->models[i].name != NULL;
         i++) {
        const struct catalog_model_def *m = &d->models[i];
        json_t *caps = catalog_strings(m->caps, CATALOG_BUILTIN_CAPS);
        json_t *model =
            caps != NULL
                ? json_pack("{s:s, s:I, s:I, s:o, s:s, s:f, s:f}", "name", m->name,
                            "context_window", (json_int_t)m->context_window, "max_output_tokens",
                            (json_int_t)m->max_output_tokens, "capabilities", caps, "tier", m->tier,
                            "input_per_1m", m->input_per_1m, "output_per_1m", m->output_per_1m)
                : NULL;
        if (model != NULL && ((m->cached_input_per_1m > 0 &&
                               json_object_set_new(model, "cached_input_per_1m",
                                                   json_real(m->cached_input_per_1m)) != 0) ||
                              (m->cache_write_per_1m > 0 &&
                               json_object_set_new(model, "cache_write_per_1m",
                                                   json_real(m->cache_write_per_1m)) != 0) ||
                              !catalog_extra_json(d->name, m->name, model))) {
            json_decref(model);
            model = NULL;
        }
        if (json_array_append_new(models, model) != 0) {
            json_decref(models);
            models = NULL;
        }
    }
    json_t *regions = catalog_strings(d->regions, 4);
    json_t *prefixes = catalog_strings(d->key_prefixes, 5);
    if (models == NULL || regions == NULL || prefixes == NULL) {
        json_decref(models);
        json_decref(regions);
        json_decref(prefixes);
        return NULL;
    }
    return json_pack("{s:s, s:s, s:s, s:s, s:b, s:o, s:o, s:i, s:s, s:o}", "name", d->name,
                     "display_name", d->display_name, "api_style", d->api_style, "base_url",
                     d->base_url, "local", d->local, "regions", regions, "key_prefixes", prefixes,
                     "key_min_length", d->key_min_length, "default_model", d->default_model,
                     "models", models);
}

/* Whether the table is there (built now if it was not). */
static bool catalog_build(void)
{
    if (atomic_load_explicit(&catalog_built, memory_order_acquire)) {
        return true;
    }
    pthread_mutex_lock(&catalog_build_mu);
    bool ok = atomic_load_explicit(&catalog_built, memory_order_relaxed);
    for (size_t i = 0; !ok && i < CATALOG_NBUILTIN; i++) {
        catalog_json[i] = catalog_def_json(&catalog_defs[i]);
        if (catalog_json[i] == NULL) {
            for (size_t j = 0; j < i; j++) {
                json_decref(catalog_json[j]);
                catalog_json[j] = NULL;
            }
            break;
        }
        if (i + 1 == CATALOG_NBUILTIN) {
            ok = true;
            atomic_store_explicit(&catalog_built, true, memory_order_release);
        }
    }
    pthread_mutex_unlock(&catalog_build_mu);
    return ok;
}

static const json_t *catalog_builtin_ref(const char *name)
{
    if (!catalog_build()) {
        return NULL;
    }
    for (size_t i = 0; i < CATALOG_NBUILTIN; i++) {
        if (strcmp(catalog_defs[i].name, name) == 0) {
            return catalog_json[i];
        }
    }
    return NULL;
}

bool catalog_is_builtin(const char *name)
{
    for (size_t i = 0; name != NULL && i < CATALOG_NBUILTIN; i++) {
        if (strcmp(catalog_defs[i].name, name) == 0) {
            return true;
        }
    }
    return false;
}

json_t *catalog_builtin(const char *name)
{
    const json_t *e = name != NULL ? catalog_builtin_ref(name) : NULL;
    return e != NULL ? json_deep_copy(e) : NULL;
}

/* ---- effective entries ---------------------------------------------------------- */

/*
 * The effective entry for name from its stored override (NULL: none): a new
 * object with "name", "builtin" and "overridden" set, or JSON null for an
 * unknown provider. NULL on out of memory.
 */
static json_t *catalog_effective(const char *name, const json_t *over)
{
    bool builtin = catalog_is_builtin(name);
    json_t *entry = over != NULL ? json_deep_copy(over) : catalog_builtin(name);
    if (entry == NULL) {
        return builtin || over != NULL ? NULL : json_null();
    }
    if (json_object_set_new(entry, "name", json_string(name)) != 0 ||
        json_object_set_new(entry, "builtin", json_boolean(builtin)) != 0 ||
        json_object_set_new(entry, "overridden", json_boolean(builtin && over != NULL)) != 0) {
        json_decref(entry);
        return NULL;
    }
    return entry;
}

/*
 * The effective entry, shared and immutable, cached under the override's
 * storage key: our writes and deletes and Vault's InvalidateKey("providers/<name>")
 * drop exactly that key. A new reference; JSON null (cached too, so misses are
 * cheap) when the provider is unknown. Building the entry per call (a deep
 * copy of a built-in's models) cost a key write and a creds read more than the
 * rest of their catalog work together.
 */
static enum err catalog_load(struct byok *b, struct storage *st, const char *name,
                             json_t **ret_entry)
{
    char key[STORAGE_MAX_KEY];
    snprintf(key, sizeof(key), "%s%s", CATALOG_STORAGE_PREFIX, name);
    struct cache *cache = b != NULL ? byok_cache(b) : NULL;
    uint64_t gen = 0;
    json_t *v = cache != NULL ? cache_get(cache, key, &gen) : NULL;
    if (v != NULL) {
        *ret_entry = v;
        return ERR_OK;
    }
    json_t *over = NULL;
    enum err e = storage_get_json(st, key, &over);
    if (e != ERR_OK && e != ERR_NOTFOUND) {
        return e;
    }
    if (e == ERR_OK && !json_is_object(over)) {
        json_decref(over);
        return ERR_PROTO;
    }
    v = catalog_effective(name, over);
    json_decref(over);
    if (v == NULL) {
        return ERR_NOMEM;
    }
    if (cache != NULL) {
        cache_put(cache, key, v, gen);
    }
    *ret_entry = v;
    return ERR_OK;
}

enum err catalog_get_shared(struct byok *b, struct storage *st, const char *name,
                            json_t **ret_entry)
{
    if (!fw_name_valid(name)) {
        return ERR_NOTFOUND;
    }
    json_t *v = NULL;
    enum err e = catalog_load(b, st, name, &v);
    if (e != ERR_OK) {
        return e;
    }
    if (json_is_null(v)) {
        json_decref(v);
        return ERR_NOTFOUND;
    }
    *ret_entry = v;
    return ERR_OK;
}

enum err catalog_get(struct byok *b, struct storage *st, const char *name, json_t **ret_entry)
{
    json_t *shared = NULL;
    enum err e = catalog_get_shared(b, st, name, &shared);
    if (e != ERR_OK) {
        return e;
    }
    /* Callers may edit what they get; the cached entry must stay untouched. */
    json_t *entry = json_deep_copy(shared);
    json_decref(shared);
    if (entry == NULL) {
        return ERR_NOMEM;
    }
    *ret_entry = entry;
    return ERR_OK;
}

enum err catalog_price(const json_t *entry, const char *model, long long prompt_tokens,
                       long long completion_tokens, double *ret_usd)
{
    if (entry == NULL || model == NULL || prompt_tokens < 0 || completion_tokens < 0) {
        return ERR_INVAL;
    }
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(entry, "models"), i, m)
    {
        if (json_is_string(json_object_get(m, "name")) &&
            strcmp(json_string_value(json_object_get(m, "name")), model) == 0) {
            const char *in_key = "input_per_1m", *out_key = "output_per_1m";
            const json_t *t = json_object_get(m, "long_context_threshold");
            if (json_is_integer(t) && json_integer_value(t) > 0 &&
                prompt_tokens > json_integer_value(t)) {
                in_key = "long_input_per_1m";
                out_key = "long_output_per_1m";
            }
            double in = json_number_value(json_object_get(m, in_key));
            double out = json_number_value(json_object_get(m, out_key));
            *ret_usd = ((double)prompt_tokens * in + (double)completion_tokens * out) / 1e6;
            return ERR_OK;
        }
    }
    return ERR_NOTFOUND;
}

/* ---- validation of admin writes --------------------------------------------------- */

static const char *const catalog_api_styles[] = {"openai", "azure",  "anthropic", "bedrock",
                                                 "vertex", "gemini", "cohere",    NULL};
static const char *const catalog_regions[] = {"eu", "us", "global", NULL};
static const char *const catalog_caps[] = {"chat",      "embedding", "vision", "tools", "json",
                                           "streaming", "reasoning", "code",   NULL};
static const char *const catalog_tiers[] = {"FREE", "LOW", "MEDIUM", "HIGH", NULL};
/* Placeholders for the per-customer part of a URL (see docs/admin-guide.md). */
static const char *const catalog_placeholders[] = {"{resource}", "{region}", "{project}", NULL};

static bool catalog_in(const char *s, const char *const *set)
{
    for (size_t i = 0; s != NULL && set[i] != NULL; i++) {
        if (strcmp(s, set[i]) == 0) {
            return true;
        }
    }
    return false;
}

bool catalog_capability_valid(const char *s)
{
    return catalog_in(s, catalog_caps);
}

/*
 * Model names as providers spell them: "gpt-4.1", "claude-3-5-haiku-20241022",
 * "anthropic.claude-3-5-haiku-20241022-v1:0", "meta-llama/Llama-3.1-8B-Instruct",
 * "qwen2.5-coder:7b". Stricter than that they cannot be; no spaces, quotes,
 * control characters or path tricks.
 */
static bool catalog_model_name_valid(const char *s)
{
    size_t len = s != NULL ? strlen(s) : 0;
    if (len == 0 || len > CATALOG_MAX_MODEL_NAME || !isalnum((unsigned char)s[0])) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(isalnum(c) || c == '.' || c == '_' || c == '-' || c == ':' || c == '/' || c == '@')) {
            return false;
        }
    }
    return strstr(s, "..") == NULL && strstr(s, "//") == NULL;
}

/* Host part of a URL: DNS-ish characters, an IPv6 literal in brackets, or a placeholder. */
static bool catalog_host_chars_ok(const char *h, size_t len)
{
    size_t i = 0;
    while (i < len) {
        bool matched = false;
        for (size_t p = 0; catalog_placeholders[p] != NULL; p++) {
            size_t pl = strlen(catalog_placeholders[p]);
            if (len - i >= pl && memcmp(h + i, catalog_placeholders[p], pl) == 0) {
                i += pl;
                matched = true;
                break;
            }
        }
        if (matched) {
            continue;
        }
        unsigned char c = (unsigned char)h[i];
        if (!(isalnum(c) || c == '.' || c == '-')) {
            return false;
        }
        i++;
    }
    return true;
}

/*
 * Checks base_url. https:// with a host for everyone; http:// only for local
 * providers and only to a host in config.local_hosts. No credentials, query
 * or fragment in the URL: keys go in headers, never in URLs.
 */
static bool catalog_url_ok(const char *url, bool local, const json_t *local_hosts, char *why,
                           size_t whylen)
{
    size_t len = strlen(url);
    if (len > CATALOG_MAX_URL) {
        snprintf(why, whylen, "longer than %d bytes", CATALOG_MAX_URL);
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c <= 0x20 || c >= 0x7f || c == '@' || c == '?' || c == '#' || c == '\\') {
            snprintf(why, whylen, "must not contain spaces, credentials, a query or a fragment");
            return false;
        }
    }
    bool https = strncmp(url, "https://", 8) == 0;
    bool http = strncmp(url, "http://", 7) == 0;
    if (!https && !(http && local)) {
        snprintf(why, whylen, "%s",
                 http ? "must be https:// (plain http:// only for local providers)"
                      : "must be an https:// URL");
        return false;
    }
    const char *host = url + (https ? 8 : 7);
    const char *end;
    size_t hlen;
    char hostbuf[CATALOG_MAX_URL + 1];
    if (host[0] == '[') {
        end = strchr(host, ']');
        if (end == NULL) {
            snprintf(why, whylen, "has an unterminated IPv6 address");
            return false;
        }
        hlen = (size_t)(end - host - 1);
        memcpy(hostbuf, host + 1, hlen);
        hostbuf[hlen] = '\0';
        /* Brackets hold an IPv6 literal and nothing else (no zone id, no path). */
        struct in6_addr a6;
        if (inet_pton(AF_INET6, hostbuf, &a6) != 1) {
            snprintf(why, whylen, "has an invalid IPv6 address");
            return false;
        }
        end++;
    } else {
        end = host + strcspn(host, ":/");
        hlen = (size_t)(end - host);
        memcpy(hostbuf, host, hlen);
        if (!catalog_host_chars_ok(host, hlen)) {
            snprintf(why, whylen, "has an invalid host");
            return false;
        }
    }
    hostbuf[hlen] = '\0';
    if (hlen == 0) {
        snprintf(why, whylen, "has no host");
        return false;
    }
    if (*end == ':') {
        const char *p = end + 1;
        size_t digits = strspn(p, "0123456789");
        long port = digits > 0 && digits <= 5 ? strtol(p, NULL, 10) : 0;
        if (port < 1 || port > 65535 || (p[digits] != '\0' && p[digits] != '/')) {
            snprintf(why, whylen, "has an invalid port");
            return false;
        }
        end = p + digits;
    }
    if (*end != '\0' && *end != '/') {
        snprintf(why, whylen, "has an invalid host");
        return false;
    }
    if (http) {
        bool allowed = false;
        size_t i;
        json_t *h;
        json_array_foreach(local_hosts, i, h)
        {
            allowed = allowed || (json_is_string(h) && strcmp(json_string_value(h), hostbuf) == 0);
        }
        if (!allowed) {
            snprintf(why, whylen, "may use http:// only to a host in config local_hosts");
            return false;
        }
    }
    return true;
}

/*
 * The long-context tier (long_context_threshold, long_input_per_1m,
 * long_output_per_1m: all three or none, the prices already checked) and
 * web_search_per_1k; on failure sets resp naming the field and item.
 */
static bool catalog_model_extra_ok(const json_t *m, size_t idx, struct fw_response *resp)
{
    static const char *const tier[] = {"long_context_threshold", "long_input_per_1m",
                                       "long_output_per_1m"};
    const json_t *v = json_object_get(m, "long_context_threshold");
    if (v != NULL && (!json_is_integer(v) || json_integer_value(v) < 1 ||
                      json_integer_value(v) > CATALOG_MAX_TOKENS)) {
        fw_error(resp,
                 "invalid value for field 'models': item %zu 'long_context_threshold' must be "
                 "an integer 1..%d (prompt tokens)",
                 idx, CATALOG_MAX_TOKENS);
        return false;
    }
    size_t given = 0;
    for (size_t i = 0; i < 3; i++) {
        given += json_object_get(m, tier[i]) != NULL;
    }
    for (size_t i = 0; given > 0 && given < 3 && i < 3; i++) {
        if (json_object_get(m, tier[i]) == NULL) {
            fw_error(resp,
                     "invalid value for field 'models': item %zu '%s' is missing: "
                     "long_context_threshold, long_input_per_1m and long_output_per_1m go "
                     "together",
                     idx, tier[i]);
            return false;
        }
    }
    v = json_object_get(m, "web_search_per_1k");
    if (v != NULL &&
        (!json_is_number(v) || !isfinite(json_number_value(v)) || json_number_value(v) < 0 ||
         json_number_value(v) > CATALOG_MAX_SEARCH_PRICE)) {
        fw_error(resp,
                 "invalid value for field 'models': item %zu 'web_search_per_1k' must be a "
                 "number 0..%.0f (USD per 1,000 web searches)",
                 idx, CATALOG_MAX_SEARCH_PRICE);
        return false;
    }
    return true;
}

/* Validates one model object; on failure sets resp naming the field and item. */
static bool catalog_model_ok(const json_t *m, size_t idx, struct fw_response *resp)
{
    static const char *const keys[] = {"name",
                                       "context_window",
                                       "max_output_tokens",
                                       "capabilities",
                                       "tier",
                                       "input_per_1m",
                                       "output_per_1m",
                                       "cached_input_per_1m",
                                       "cache_write_per_1m",
                                       "long_context_threshold",
                                       "long_input_per_1m",
                                       "long_output_per_1m",
                                       "web_search_per_1k",
                                       NULL};
    if (!json_is_object(m)) {
        fw_error(resp, "invalid value for field 'models': item %zu is not an object", idx);
        return false;
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)m, k, v)
    {
        if (!catalog_in(k, keys)) {
            fw_error(resp, "invalid value for field 'models': item %zu has an unknown key", idx);
            return false;
        }
    }
    if (!catalog_model_name_valid(json_string_value(json_object_get(m, "name")))) {
        fw_error(resp,
                 "invalid value for field 'models': item %zu 'name' must be 1..%d characters of "
                 "letters, digits and . _ - : / @",
                 idx, CATALOG_MAX_MODEL_NAME);
        return false;
    }
    static const char *const counts[] = {"context_window", "max_output_tokens", NULL};
    for (size_t i = 0; counts[i] != NULL; i++) {
        v = json_object_get(m, counts[i]);
        if (v != NULL && (!json_is_integer(v) || json_integer_value(v) < 0 ||
                          json_integer_value(v) > CATALOG_MAX_TOKENS)) {
            fw_error(resp,
                     "invalid value for field 'models': item %zu '%s' must be an integer "
                     "0..%d",
                     idx, counts[i], CATALOG_MAX_TOKENS);
            return false;
        }
    }
    /*
     * The prompt-cache prices are optional: a model without them has
     * input_per_1m there. So are the long-context ones (checked together below).
     */
    static const struct {
        const char *name;
        bool optional;
    } prices[] = {{"input_per_1m", false},       {"output_per_1m", false},
                  {"cached_input_per_1m", true}, {"cache_write_per_1m", true},
                  {"long_input_per_1m", true},   {"long_output_per_1m", true}};
    for (size_t i = 0; i < sizeof(prices) / sizeof(prices[0]); i++) {
        v = json_object_get(m, prices[i].name);
        if (v == NULL && prices[i].optional) {
            continue;
        }
        if (v == NULL || !json_is_number(v) || !isfinite(json_number_value(v)) ||
            json_number_value(v) < 0 || json_number_value(v) > CATALOG_MAX_PRICE) {
            fw_error(resp,
                     "invalid value for field 'models': item %zu '%s' must be a non-negative "
                     "number (USD per 1M tokens)",
                     idx, prices[i].name);
            return false;
        }
    }
    if (!catalog_model_extra_ok(m, idx, resp)) {
        return false;
    }
    v = json_object_get(m, "tier");
    if (v != NULL && !catalog_in(json_string_value(v), catalog_tiers)) {
        fw_error(resp,
                 "invalid value for field 'models': item %zu 'tier' must be FREE, LOW, MEDIUM or "
                 "HIGH",
                 idx);
        return false;
    }
    v = json_object_get(m, "capabilities");
    if (v != NULL) {
        size_t i;
        json_t *c;
        bool ok = json_is_array(v) && json_array_size(v) <= CATALOG_BUILTIN_CAPS;
        json_array_foreach(v, i, c)
        {
            ok = ok && catalog_in(json_string_value(c), catalog_caps);
        }
        if (!ok) {
            fw_error(resp,
                     "invalid value for field 'models': item %zu 'capabilities' must be a list "
                     "of " CATALOG_CAPABILITIES,
                     idx);
            return false;
        }
    }
    return true;
}

/*
 * Normalised copy of a valid model: defaults for the optional keys. NULL on
 * out of memory, never a model with a default or a price type left out.
 */
static json_t *catalog_model_norm(const json_t *m)
{
    json_t *n = json_deep_copy(m);
    bool ok = n != NULL;
    if (ok && json_object_get(n, "context_window") == NULL) {
        ok = json_object_set_new(n, "context_window", json_integer(0)) == 0;
    }
    if (ok && json_object_get(n, "max_output_tokens") == NULL) {
        ok = json_object_set_new(n, "max_output_tokens", json_integer(0)) == 0;
    }
    if (ok && json_object_get(n, "capabilities") == NULL) {
        ok = json_object_set_new(n, "capabilities", json_pack("[s]", "chat")) == 0;
    }
    if (ok && json_object_get(n, "tier") == NULL) {
        ok = json_object_set_new(n, "tier", json_string("MEDIUM")) == 0;
    }
    /* Prices as reals so every reader sees one type. */
    ok = ok &&
         json_object_set_new(n, "input_per_1m",
                             json_real(json_number_value(json_object_get(m, "input_per_1m")))) == 0;
    ok = ok && json_object_set_new(
                   n, "output_per_1m",
                   json_real(json_number_value(json_object_get(m, "output_per_1m")))) == 0;
    /*
     * The prompt-cache prices stay absent when not given rather than being
     * stored as input_per_1m: every reader (the agent's cost) takes the input
     * price for an absent one, as for entries stored before they existed, and
     * a later change of input_per_1m then applies to them too. The
     * long-context and web-search prices stay absent too: not priced.
     */
    static const char *const optional_prices[] = {"cached_input_per_1m", "cache_write_per_1m",
                                                  "long_input_per_1m",   "long_output_per_1m",
                                                  "web_search_per_1k",   NULL};
    for (size_t i = 0; ok && optional_prices[i] != NULL; i++) {
        const json_t *v = json_object_get(m, optional_prices[i]);
        if (v != NULL) {
            ok = json_object_set_new(n, optional_prices[i], json_real(json_number_value(v))) == 0;
        }
    }
    if (!ok) {
        json_decref(n);
        n = NULL;
    }
    return n;
}

/* ---- paths -------------------------------------------------------------------------- */

static const struct fw_field catalog_fields[] = {
    {.name = "display_name",
     .type = FW_TYPE_STRING,
     .description = "Human name of the provider.",
     .max_len = CATALOG_MAX_DISPLAY_NAME},
    {.name = "api_style",
     .type = FW_TYPE_STRING,
     .description = "Wire protocol: openai, azure, anthropic, bedrock, vertex, gemini or cohere.",
     .max_len = 16},
    {.name = "base_url",
     .type = FW_TYPE_STRING,
     .description = "API base URL; https:// (http:// only for local providers to "
                    "config local_hosts). {resource}, {region}, {project} mark the per-customer "
                    "part that an override fills in.",
     .max_len = CATALOG_MAX_URL},
    {.name = "local",
     .type = FW_TYPE_BOOL,
     .description = "A provider on the node itself (ollama, lmstudio, vllm)."},
    {.name = "regions",
     .type = FW_TYPE_STRINGS,
     .description = "Residency the provider serves from: eu, us, global.",
     .max_len = 3},
    {.name = "key_prefixes",
     .type = FW_TYPE_STRINGS,
     .description = "Documented key prefixes, used to validate key writes.",
     .max_len = CATALOG_MAX_PREFIXES},
    {.name = "key_min_length",
     .type = FW_TYPE_INT,
     .description = "Shortest plausible key.",
     .min = 0,
     .max = CATALOG_MAX_KEY_MIN_LENGTH},
    {.name = "default_model",
     .type = FW_TYPE_STRING,
     .description = "Model used when a request names none; must be one of models.",
     .max_len = CATALOG_MAX_MODEL_NAME},
    {.name = "models",
     .type = FW_TYPE_JSON,
     .description = "List of models: name, context_window, max_output_tokens, capabilities, "
                    "tier, input_per_1m, output_per_1m (USD per 1M tokens), and optionally "
                    "cached_input_per_1m (prompt-cache reads) and cache_write_per_1m "
                    "(prompt-cache writes), which are input_per_1m when absent; "
                    "long_context_threshold (prompt tokens), long_input_per_1m and "
                    "long_output_per_1m (all three or none: the prices of a request whose "
                    "prompt exceeds the threshold); web_search_per_1k (USD per 1,000 web "
                    "searches)."},
    {.name = NULL},
};

static int catalog_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static enum err catalog_list(struct fw_request *req, struct fw_response *resp)
{
    char **keys = NULL;
    size_t n = 0;
    const char **names = NULL;
    json_t *out_keys = NULL, *out_info = NULL;
    enum err e = storage_list(req->storage, CATALOG_STORAGE_PREFIX, &keys, &n);
    if (e != ERR_OK) {
        return e;
    }
    size_t cap = CATALOG_NBUILTIN + (n < CATALOG_MAX_PROVIDERS ? n : CATALOG_MAX_PROVIDERS);
    names = calloc(cap, sizeof(*names));
    out_keys = json_array();
    out_info = json_object();
    if (names == NULL || out_keys == NULL || out_info == NULL) {
        e = ERR_NOMEM;
        goto out;
    }
    size_t nn = 0;
    for (size_t i = 0; i < CATALOG_NBUILTIN; i++) {
        names[nn++] = catalog_defs[i].name;
    }
    for (size_t i = 0; i < n && nn < cap; i++) {
        /* Sub-folders and foreign keys are not entries; built-ins are listed once. */
        if (fw_name_valid(keys[i]) && !catalog_is_builtin(keys[i])) {
            names[nn++] = keys[i];
        }
    }
    qsort(names, nn, sizeof(*names), catalog_cmp);
    for (size_t i = 0; i < nn; i++) {
        json_t *entry = NULL;
        e = catalog_get_shared(req->backend, req->storage, names[i], &entry);
        if (e == ERR_NOTFOUND) {
            continue; /* deleted between the list and the read */
        }
        if (e != ERR_OK) {
            goto out;
        }
        json_t *ki = json_pack(
            "{s:O, s:O, s:O, s:O}", "display_name", json_object_get(entry, "display_name"),
            "api_style", json_object_get(entry, "api_style"), "builtin",
            json_object_get(entry, "builtin"), "overridden", json_object_get(entry, "overridden"));
        json_decref(entry);
        if (ki == NULL || json_array_append_new(out_keys, json_string(names[i])) != 0 ||
            json_object_set_new(out_info, names[i], ki) != 0) {
            e = ERR_NOMEM;
            goto out;
        }
    }
    fw_reply(resp, json_pack("{s:O, s:O}", "keys", out_keys, "key_info", out_info));
    e = resp->data != NULL ? ERR_OK : ERR_NOMEM;
out:
    free(names);
    storage_keys_free(keys, n);
    json_decref(out_keys);
    json_decref(out_info);
    return e;
}

static enum err catalog_read(struct fw_request *req, struct fw_response *resp)
{
    json_t *entry = NULL;
    enum err e = catalog_get(req->backend, req->storage, fw_str(req, "name"), &entry);
    if (e == ERR_NOTFOUND) {
        return ERR_OK; /* no data: Vault answers 404 */
    }
    if (e != ERR_OK) {
        return e;
    }
    fw_reply(resp, entry);
    return ERR_OK;
}

static enum err catalog_exists(struct fw_request *req, bool *ret_exists)
{
    json_t *entry = NULL;
    enum err e = catalog_get_shared(req->backend, req->storage, fw_str(req, "name"), &entry);
    if (e == ERR_NOTFOUND) {
        *ret_exists = false;
        return ERR_OK;
    }
    if (e != ERR_OK) {
        return e;
    }
    json_decref(entry);
    *ret_exists = true;
    return ERR_OK;
}

/* Copies the provided scalar fields of the request over the entry. */
static enum err catalog_apply(struct fw_request *req, json_t *entry)
{
    static const char *const names[] = {"display_name",   "api_style",     "base_url",
                                        "local",          "regions",       "key_prefixes",
                                        "key_min_length", "default_model", NULL};
    for (size_t i = 0; names[i] != NULL; i++) {
        if (fw_provided(req, names[i]) &&
            json_object_set(entry, names[i], fw_json(req, names[i])) != 0) {
            return ERR_NOMEM;
        }
    }
    return ERR_OK;
}

/*
 * Validates the merged entry (so that an update cannot leave an entry that a
 * create would refuse). Returns false with a 400 in resp.
 */
static bool catalog_entry_ok(const json_t *entry, const json_t *local_hosts,
                             struct fw_response *resp)
{
    char why[160];
    const char *s = json_string_value(json_object_get(entry, "display_name"));
    if (s == NULL || s[0] == '\0') {
        fw_error(resp, "missing required field 'display_name'");
        return false;
    }
    if (!fw_text_ok(s)) {
        fw_error(resp, "invalid value for field 'display_name': must not contain control, line "
                       "separator or bidirectional characters");
        return false;
    }
    s = json_string_value(json_object_get(entry, "api_style"));
    if (s == NULL) {
        fw_error(resp, "missing required field 'api_style'");
        return false;
    }
    if (!catalog_in(s, catalog_api_styles)) {
        fw_error(resp, "invalid value for field 'api_style': must be one of openai, azure, "
                       "anthropic, bedrock, vertex, gemini, cohere");
        return false;
    }
    s = json_string_value(json_object_get(entry, "base_url"));
    if (s == NULL) {
        fw_error(resp, "missing required field 'base_url'");
        return false;
    }
    if (!catalog_url_ok(s, json_is_true(json_object_get(entry, "local")), local_hosts, why,
                        sizeof(why))) {
        fw_error(resp, "invalid value for field 'base_url': %s", why);
        return false;
    }
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(entry, "regions"), i, v)
    {
        if (!catalog_in(json_string_value(v), catalog_regions)) {
            fw_error(resp, "invalid value for field 'regions': item %zu must be eu, us or global",
                     i);
            return false;
        }
    }
    json_array_foreach(json_object_get(entry, "key_prefixes"), i, v)
    {
        const char *p = json_string_value(v);
        size_t len = p != NULL ? strlen(p) : 0;
        bool ok = len > 0 && len <= CATALOG_MAX_PREFIX_LEN;
        for (size_t c = 0; ok && c < len; c++) {
            ok = p[c] > 0x20 && p[c] < 0x7f;
        }
        if (!ok) {
            fw_error(resp,
                     "invalid value for field 'key_prefixes': item %zu must be 1..%d printable "
                     "characters",
                     i, CATALOG_MAX_PREFIX_LEN);
            return false;
        }
    }
    json_t *models = json_object_get(entry, "models");
    if (!json_is_array(models)) {
        fw_error(resp, "invalid value for field 'models': expected a list of model objects");
        return false;
    }
    if (json_array_size(models) > CATALOG_MAX_MODELS) {
        fw_error(resp, "invalid value for field 'models': more than %d models", CATALOG_MAX_MODELS);
        return false;
    }
    json_array_foreach(models, i, v)
    {
        if (!catalog_model_ok(v, i, resp)) {
            return false;
        }
        const char *name = json_string_value(json_object_get(v, "name"));
        for (size_t j = 0; j < i; j++) {
            if (strcmp(json_string_value(json_object_get(json_array_get(models, j), "name")),
                       name) == 0) {
                fw_error(resp,
                         "invalid value for field 'models': item %zu repeats the name of "
                         "item %zu",
                         i, j);
                return false;
            }
        }
    }
    s = json_string_value(json_object_get(entry, "default_model"));
    if (s != NULL && s[0] != '\0') {
        bool found = false;
        json_array_foreach(models, i, v)
        {
            found = found || strcmp(json_string_value(json_object_get(v, "name")), s) == 0;
        }
        if (!found) {
            fw_error(resp, "invalid value for field 'default_model': not one of the models");
            return false;
        }
    }
    return true;
}

static enum err catalog_write_unlocked(struct fw_request *req, struct fw_response *resp)
{
    const char *name = fw_str(req, "name");
    json_t *entry = NULL, *config = NULL;
    enum err e = catalog_get(req->backend, req->storage, name, &entry);
    if (e == ERR_NOTFOUND) {
        char **keys = NULL;
        size_t n = 0;
        e = storage_list(req->storage, CATALOG_STORAGE_PREFIX, &keys, &n);
        storage_keys_free(keys, n);
        if (e != ERR_OK) {
            return e;
        }
        /* Overrides of built-ins count too: a bound on what list has to read. */
        if (n >= CATALOG_MAX_PROVIDERS) {
            fw_error(resp,
                     "invalid value for field 'name': the catalog already holds %d admin "
                     "entries; delete one first",
                     CATALOG_MAX_PROVIDERS);
            return ERR_OK;
        }
        /* A new provider: start empty; required fields are checked on the result. */
        entry = json_pack("{s:s, s:b, s:[], s:[], s:i, s:s, s:[]}", "display_name", name, "local",
                          0, "regions", "key_prefixes", "key_min_length", 0, "default_model", "",
                          "models");
        e = entry != NULL ? ERR_OK : ERR_NOMEM;
    }
    if (e != ERR_OK) {
        return e;
    }
    json_object_del(entry, "name");
    json_object_del(entry, "builtin");
    json_object_del(entry, "overridden");
    e = catalog_apply(req, entry);
    if (e != ERR_OK) {
        goto out;
    }
    if (fw_provided(req, "models")) {
        const json_t *in = fw_json(req, "models");
        if (!json_is_array(in)) {
            fw_error(resp, "invalid value for field 'models': expected a list of model objects");
            goto out;
        }
        if (json_array_size(in) > CATALOG_MAX_MODELS) {
            fw_error(resp, "invalid value for field 'models': more than %d models",
                     CATALOG_MAX_MODELS);
            goto out;
        }
        json_t *norm = json_array();
        size_t i;
        json_t *m;
        json_array_foreach(in, i, m)
        {
            if (!catalog_model_ok(m, i, resp)) {
                json_decref(norm);
                goto out;
            }
            if (json_array_append_new(norm, catalog_model_norm(m)) != 0) {
                json_decref(norm);
                e = ERR_NOMEM; /* never store the entry short of a model */
                goto out;
            }
        }
        if (json_object_set_new(entry, "models", norm) != 0) {
            e = ERR_NOMEM;
            goto out;
        }
    }
    if (fw_provided(req, "models") && !fw_provided(req, "default_model")) {
        /*
         * New models without a new default: keep the old default if it is still
         * there, else take the first model, rather than refusing the write
         * over a field the admin did not touch.
         */
        const char *def = json_string_value(json_object_get(entry, "default_model"));
        bool found = false;
        size_t i;
        json_t *m;
        json_array_foreach(json_object_get(entry, "models"), i, m)
        {
            found = found || (def != NULL &&
                              strcmp(json_string_value(json_object_get(m, "name")), def) == 0);
        }
        if (!found) {
            json_t *first =
                json_object_get(json_array_get(json_object_get(entry, "models"), 0), "name");
            if (json_object_set_new(entry, "default_model",
                                    json_string(first != NULL ? json_string_value(first) : "")) !=
                0) {
                e = ERR_NOMEM;
                goto out;
            }
        }
    }
    e = config_get_shared(req->backend, req->storage, &config);
    if (e != ERR_OK) {
        goto out;
    }
    if (!catalog_entry_ok(entry, json_object_get(config, "local_hosts"), resp)) {
        goto out;
    }
    char key[STORAGE_MAX_KEY];
    snprintf(key, sizeof(key), "%s%s", CATALOG_STORAGE_PREFIX, name);
    e = storage_put_json(req->storage, key, entry, false);
    /* A failed write may land later: keep the entry out of the cache a while (cache.h). */
    if (cache_write_may_land(e)) {
        cache_doubt(byok_cache(req->backend), key);
    } else {
        cache_invalidate(byok_cache(req->backend), key);
    }
out:
    json_decref(config);
    json_decref(entry);
    return e;
}

/* Under the engine's write lock: two concurrent writes must not lose each other's fields. */
static enum err catalog_write(struct fw_request *req, struct fw_response *resp)
{
    struct keystore *ks = keystore_write_begin(req->backend);
    enum err e = catalog_write_unlocked(req, resp);
    keystore_write_end(ks);
    return e;
}

static enum err catalog_delete_unlocked(struct fw_request *req, struct fw_response *resp)
{
    const char *name = fw_str(req, "name");
    json_t *entry = NULL;
    enum err e = catalog_get_shared(req->backend, req->storage, name, &entry);
    if (e != ERR_OK && e != ERR_NOTFOUND) {
        return e;
    }
    /* An admin entry exists: an override of a built-in, or a provider of its own. */
    bool stored = entry != NULL && (json_is_true(json_object_get(entry, "overridden")) ||
                                    !json_is_true(json_object_get(entry, "builtin")));
    json_decref(entry);
    if (!stored) {
        if (catalog_is_builtin(name)) {
            fw_error(resp,
                     "invalid value for field 'name': '%s' is a built-in provider without an "
                     "override; there is nothing to delete",
                     name);
        }
        return ERR_OK; /* deleting what does not exist is not an error in Vault */
    }
    char key[STORAGE_MAX_KEY];
    snprintf(key, sizeof(key), "%s%s", CATALOG_STORAGE_PREFIX, name);
    e = storage_delete(req->storage, key);
    if (cache_write_may_land(e)) {
        cache_doubt(byok_cache(req->backend), key); /* it may land later (cache.h) */
    } else {
        cache_invalidate(byok_cache(req->backend), key);
    }
    return e;
}

/*
 * Under the write lock too: a delete between a write's read and its put
 * would be undone by the put (the old entry stored again after a 204).
 */
static enum err catalog_delete(struct fw_request *req, struct fw_response *resp)
{
    struct keystore *ks = keystore_write_begin(req->backend);
    enum err e = catalog_delete_unlocked(req, resp);
    keystore_write_end(ks);
    return e;
}

const struct fw_path paths_providers[] = {
    {
        .pattern = "providers/",
        .handlers = {[FW_OP_LIST] = catalog_list},
        .synopsis = "List the provider catalog.",
        .description = "Lists built-in and admin-defined providers, with display name, API "
                       "style and whether a built-in entry is overridden.",
    },
    {
        .pattern = "providers/{name}",
        .fields = catalog_fields,
        .handlers = {[FW_OP_READ] = catalog_read,
                     [FW_OP_CREATE] = catalog_write,
                     [FW_OP_UPDATE] = catalog_write,
                     [FW_OP_DELETE] = catalog_delete},
        .exists = catalog_exists,
        .synopsis = "Read, override or delete a provider catalog entry.",
        .description = "A write to a built-in provider stores an override (the fields given "
                       "replace the built-in ones); deleting the override restores the built-in "
                       "entry. A write to a new name creates a provider: api_style and base_url "
                       "are then required. base_url must be https:// unless "
                       "the provider is local and the host is in config local_hosts; at most "
                       "512 models; prices are non-negative USD per 1M tokens.",
    },
    {.pattern = NULL},
};
