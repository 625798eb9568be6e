/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for the Bedrock adapter (provider_bedrock.c) and the AWS event
 * stream decoder (eventstream.c): which model ids are Claude, request building (URL, Bearer header,
 * system and messages, inferenceConfig, tools, refused fields naming the
 * field), answer translation (text, tool use, stop reasons, usage), the
 * decoder (whole messages, split at every byte, several in one read, bad
 * CRCs, oversized lengths, exceptions) and the stream events as OpenAI
 * chunks, with malformed input giving a clean error; embeddings through
 * InvokeModel (Titan Text Embeddings V2 and Cohere Embed v3: bodies, paths,
 * both auth styles, the limits at and one past, refusals, answers, usage).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "agent/eventstream.h"
#include "agent/provider_bedrock.h"
#include "agent/providers.h"
#include "agent/sigv4.h"
#include "common/secret.h"

static json_t *J(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    if (j == NULL) {
        fprintf(stderr, "bad test JSON: %s\n", e.text);
    }
    assert_non_null(j);
    return j;
}

static const char *find_header(const struct curl_slist *l, const char *prefix)
{
    for (; l != NULL; l = l->next) {
        if (strncasecmp(l->data, prefix, strlen(prefix)) == 0) {
            return l->data;
        }
    }
    return NULL;
}

/* ---- Claude models (/v1/messages on Bedrock; the cache rule's first half) ----------------------
 */

static void test_claude_models(void **state)
{
    (void)state;
    assert_true(provider_bedrock_claude("anthropic.claude-3-5-haiku-20241022-v1:0"));
    assert_true(provider_bedrock_claude("us.anthropic.claude-sonnet-4-20250514-v1:0"));
    assert_true(provider_bedrock_claude("global.anthropic.claude-sonnet-4-5-20250929-v1:0"));
    assert_true(provider_bedrock_claude("apac.anthropic.claude-3-haiku-20240307-v1:0"));
    assert_true(provider_bedrock_claude("us-gov.anthropic.claude-3-7-sonnet-20250219-v1:0"));
    assert_false(provider_bedrock_claude("meta.llama3-70b-instruct-v1:0"));
    assert_false(provider_bedrock_claude("us.meta.llama3-2-90b-instruct-v1:0"));
    assert_false(provider_bedrock_claude("amazon.titan-embed-text-v2:0"));
    assert_false(provider_bedrock_claude(".anthropic.claude-x"));
    assert_false(provider_bedrock_claude("-.anthropic.claude-x"));
    assert_false(provider_bedrock_claude("US.anthropic.claude-x"));
    assert_false(provider_bedrock_claude("a.b.anthropic.claude-x"));
    assert_false(provider_bedrock_claude("toolonggeo.anthropic.claude-x"));
    assert_false(provider_bedrock_claude("anthropic.claud"));
    /* An id only: an ARN is the cache rule's to take apart. */
    assert_false(provider_bedrock_claude(
        "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-7-sonnet-20250219-v1:0"));
    assert_false(provider_bedrock_claude(""));
    assert_false(provider_bedrock_claude(NULL));
}

/* ---- request building ----------------------------------------------------------------------- */

static void test_build_url_and_key(void **state)
{
    (void)state;
    struct secret *key = secret_from("ABSK-CANARY-build", 17);
    assert_non_null(key);
    json_t *req =
        J("{\"model\":\"bedrock/x\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
    json_t *entry = J("{\"base_url\":\"https://bedrock-runtime.eu-west-1.amazonaws.com/\"}");
    struct provider_call pc = {PROVIDER_CHAT, req,   "anthropic.claude-3-5-haiku-20241022-v1:0",
                               false,         entry, NULL,
                               key,           100,   0,
                               NULL};
    const struct provider_adapter *ad = provider_find("bedrock");
    assert_non_null(ad);
    assert_false(ad->stream_passthrough);
    assert_int_equal(provider_stream_framing(ad), PROVIDER_FRAMING_EVENTSTREAM);
    assert_int_equal(provider_stream_framing(provider_find("anthropic")), PROVIDER_FRAMING_SSE);
    struct provider_http h;
    memset(&h, 0, sizeof(h));
    assert_int_equal(ad->build(&pc, &h), ERR_OK);
    /* The model id is one path segment: ':' percent-encoded, as the AWS SDKs send it. */
    assert_string_equal(h.url, "https://bedrock-runtime.eu-west-1.amazonaws.com/model/"
                               "anthropic.claude-3-5-haiku-20241022-v1%3A0/converse");
    assert_string_equal(find_header(h.headers, "Authorization:"),
                        "Authorization: Bearer ABSK-CANARY-build");
    assert_string_equal(find_header(h.headers, "Accept:"), "Accept: application/json");
    json_t *body = json_loadb(h.body, h.body_len, 0, NULL);
    assert_non_null(body);
    /* The model rides the URL; nothing OpenAI-only is in the body. */
    assert_null(json_object_get(body, "model"));
    assert_null(json_object_get(body, "stream"));
    json_decref(body);
    provider_http_done(&h);

    /* Streamed: converse-stream, and an inference profile ARN's '/' and ':' are encoded too. */
    pc.stream = true;
    pc.model = "arn:aws:bedrock:us-east-1:1:inference-profile/us.x";
    memset(&h, 0, sizeof(h));
    assert_int_equal(ad->build(&pc, &h), ERR_OK);
    assert_string_equal(h.url, "https://bedrock-runtime.eu-west-1.amazonaws.com/model/"
                               "arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fus.x/"
                               "converse-stream");
    assert_string_equal(find_header(h.headers, "Accept:"),
                        "Accept: application/vnd.amazon.eventstream");
    provider_http_done(&h);

    /* Embeddings: not this adapter's (the agent then tries the next candidate). */
    pc.op = PROVIDER_EMBEDDINGS;
    memset(&h, 0, sizeof(h));
    assert_int_equal(ad->build(&pc, &h), ERR_UNSUPPORTED);
    provider_http_done(&h);
    pc.op = PROVIDER_CHAT;

    /* The catalog's {region} never replaced; http without local; a model id past its bound. */
    json_t *placeholder = J("{\"base_url\":\"https://bedrock-runtime.{region}.amazonaws.com\"}");
    pc.entry = placeholder;
    memset(&h, 0, sizeof(h));
    assert_int_equal(ad->build(&pc, &h), ERR_CONFIG);
    provider_http_done(&h);
    json_t *plain = J("{\"base_url\":\"http://127.0.0.1:9\"}");
    pc.entry = plain;
    memset(&h, 0, sizeof(h));
    assert_int_equal(ad->build(&pc, &h), ERR_CONFIG);
    provider_http_done(&h);
    pc.entry = entry;
    char longid[BEDROCK_MAX_MODEL_ID + 2];
    memset(longid, 'm', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    pc.model = longid;
    memset(&h, 0, sizeof(h));
    assert_int_equal(ad->build(&pc, &h), ERR_CONFIG);
    provider_http_done(&h);
    longid[BEDROCK_MAX_MODEL_ID] = '\0'; /* at the bound: accepted */
    memset(&h, 0, sizeof(h));
    assert_int_equal(ad->build(&pc, &h), ERR_OK);
    provider_http_done(&h);

    /* A request that cannot be translated names its field. */
    json_object_set_new(req, "n", json_integer(2));
    memset(&h, 0, sizeof(h));
    assert_int_equal(ad->build(&pc, &h), ERR_INVAL);
    assert_string_equal(h.bad.param, "n");
    provider_http_done(&h);

    json_decref(placeholder);
    json_decref(plain);
    json_decref(entry);
    json_decref(req);
    secret_free(&key);
}

/*
 * An IAM key signs the request (SigV4, service bedrock): the signature of
 * this exact body, host and time was computed with botocore 1.43 (an
 * independent implementation; tests/unit/test_agent_sigv4.c has the same
 * request). The secret is AWS's documentation example.
 */
#define IAM_SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define IAM_TOKEN "FwoGZXIvYXdzEXAMPLEtokenAQoDYXdzEPT//////////wEXAMPLE+test/token=="

static void test_build_iam(void **state)
{
    (void)state;
    static const char akey[] = "AKIAIOSFODNN7EXAMPLE:" IAM_SECRET;
    struct secret *key = secret_from(akey, strlen(akey));
    json_t *req =
        J("{\"model\":\"bedrock/x\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
    json_t *entry = J("{\"base_url\":\"https://bedrock-runtime.eu-west-1.amazonaws.com\"}");
    struct provider_call pc = {.op = PROVIDER_CHAT,
                               .req = req,
                               .model = "anthropic.claude-3-5-haiku-20241022-v1:0",
                               .entry = entry,
                               .key = key,
                               .default_max_tokens = 5,
                               .now = 1795846500 /* 20261128T061500Z */};
    const struct provider_adapter *ad = provider_find("bedrock");
    struct provider_http h;
    memset(&h, 0, sizeof(h));
    assert_int_equal(ad->build(&pc, &h), ERR_OK);
    assert_string_equal(h.url, "https://bedrock-runtime.eu-west-1.amazonaws.com/model/"
                               "anthropic.claude-3-5-haiku-20241022-v1%3A0/converse");
    assert_int_equal(h.body_len, strlen(h.body));
    assert_string_equal(h.body,
                        "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"hi\"}]}],"
                        "\"inferenceConfig\":{\"maxTokens\":5}}");
    assert_string_equal(find_header(h.headers, "Host:"),
                        "Host: bedrock-runtime.eu-west-1.amazonaws.com");
    assert_string_equal(find_header(h.headers, "X-Amz-Date:"), "X-Amz-Date: 20261128T061500Z");
    assert_string_equal(find_header(h.headers, "Content-Type:"), "Content-Type: application/json");
    assert_string_equal(
        find_header(h.headers, "Authorization:"),
        "Authorization: AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261128/eu-west-1/"
        "bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date, "
        "Signature=dec07009336565edeca6f90a17858bba3048cb86a7920730c910fe6680870c60");
    assert_null(find_header(h.headers, "X-Amz-Security-Token:"));
    /* The secret access key is in no header: only the signature made with it. */
    for (const struct curl_slist *l = h.headers; l != NULL; l = l->next) {
        assert_null(strstr(l->data, "EXAMPLEKEY"));
    }
    provider_http_done(&h);

    /* Temporary credentials: the token is sent and signed. */
    static const char tkey[] = "ASIAIOSFODNN7EXAMPLE:" IAM_SECRET ":" IAM_TOKEN;
    struct secret *temp = secret_from(tkey, strlen(tkey));
    pc.key = temp;
    memset(&h, 0, sizeof(h));
    assert_int_equal(ad->build(&pc, &h), ERR_OK);
    assert_string_equal(find_header(h.headers, "X-Amz-Security-Token:"),
                        "X-Amz-Security-Token: " IAM_TOKEN);
    assert_string_equal(
        find_header(h.headers, "Authorization:"),
        "Authorization: AWS4-HMAC-SHA256 Credential=ASIAIOSFODNN7EXAMPLE/20261128/eu-west-1/"
        "bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, "
        "Signature=85554f44ffea3abb2cc62e1be77f0c266647749d48fd71bf19ad9c470970fb99");
    provider_http_done(&h);

    /* A host that names no region: the key's metadata says, else the call is not made. */
    json_t *local = J("{\"base_url\":\"http://127.0.0.1:8080\",\"local\":true}");
    json_t *md = J("{\"region\":\"us-west-2\"}");
    pc.entry = local;
    pc.key = key;
    memset(&h, 0, sizeof(h));
    assert_int_equal(ad->build(&pc, &h), ERR_CONFIG);
    provider_http_done(&h);
    pc.metadata = md;
    memset(&h, 0, sizeof(h));
    assert_int_equal(ad->build(&pc, &h), ERR_OK);
    assert_string_equal(find_header(h.headers, "Host:"), "Host: 127.0.0.1:8080");
    assert_non_null(strstr(find_header(h.headers, "Authorization:"), "/us-west-2/bedrock/"));
    provider_http_done(&h);

    /* A malformed IAM value (the plugin refuses it at write time) is never sent. */
    struct secret *bad = secret_from("AKIAIOSFODNN7EXAMPLE:short", 26);
    pc.key = bad;
    memset(&h, 0, sizeof(h));
    assert_int_equal(ad->build(&pc, &h), ERR_CONFIG);
    assert_null(h.headers);
    provider_http_done(&h);

    secret_free(&bad);
    secret_free(&temp);
    secret_free(&key);
    json_decref(md);
    json_decref(local);
    json_decref(entry);
    json_decref(req);
}

static void test_region(void **state)
{
    (void)state;
    char r[SIGV4_MAX_REGION + 1];
    static const struct {
        const char *host, *want;
    } cases[] = {
        {"bedrock-runtime.eu-west-1.amazonaws.com", "eu-west-1"},
        {"bedrock-runtime-fips.us-east-1.amazonaws.com", "us-east-1"},
        {"bedrock-runtime.cn-north-1.amazonaws.com.cn", "cn-north-1"},
        {"vpce-0a1b-c2d3.bedrock-runtime.ap-south-1.vpce.amazonaws.com", "ap-south-1"},
        {"bedrock-runtime.eu-central-1.amazonaws.com:443", "eu-central-1"},
        {"xbedrock-runtime.eu-west-1.amazonaws.com", NULL}, /* not the label */
        {"bedrock-runtime.eu-west-1.example.com", NULL},    /* not AWS's */
        {"bedrock-runtime.EU.amazonaws.com", NULL},
        {"127.0.0.1:9", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum err e = provider_bedrock_region(cases[i].host, NULL, r, sizeof(r));
        if (cases[i].want != NULL) {
            assert_int_equal(e, ERR_OK);
            assert_string_equal(r, cases[i].want);
        } else {
            assert_int_equal(e, ERR_CONFIG);
        }
    }
    json_t *md = J("{\"region\":\"eu-north-1\"}");
    assert_int_equal(provider_bedrock_region("proxy.internal", md, r, sizeof(r)), ERR_OK);
    assert_string_equal(r, "eu-north-1");
    /* The endpoint's own region wins over the metadata's. */
    assert_int_equal(
        provider_bedrock_region("bedrock-runtime.us-east-2.amazonaws.com", md, r, sizeof(r)),
        ERR_OK);
    assert_string_equal(r, "us-east-2");
    json_decref(md);
    md = J("{\"region\":\"eu/north\"}");
    assert_int_equal(provider_bedrock_region("proxy.internal", md, r, sizeof(r)), ERR_CONFIG);
    json_decref(md);
}

static void test_request_mapping(void **state)
{
    (void)state;
    json_t *o =
        J("{\"model\":\"x\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
          "{\"role\":\"developer\",\"content\":[{\"type\":\"text\",\"text\":\"No lists.\"}]},"
          "{\"role\":\"user\",\"content\":\"Hi\"},"
          "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"there\"},"
          "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,AAAA\"}}]},"
          "{\"role\":\"assistant\",\"content\":\"Yo\"},{\"role\":\"user\",\"content\":\"Again\"}],"
          "\"temperature\":0.5,\"top_p\":0.9,\"stop\":\"END\",\"max_tokens\":33,\"user\":\"u1\","
          "\"stream_options\":{\"include_usage\":true},\"seed\":4}");
    json_t *b = NULL;
    assert_int_equal(provider_bedrock_request(o, 4096, NULL, &b), ERR_OK);
    json_t *want =
        J("{\"system\":[{\"text\":\"Be brief.\"},{\"text\":\"No lists.\"}],"
          "\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"Hi\"},{\"text\":\"there\"},"
          "{\"image\":{\"format\":\"png\",\"source\":{\"bytes\":\"AAAA\"}}}]},"
          "{\"role\":\"assistant\",\"content\":[{\"text\":\"Yo\"}]},"
          "{\"role\":\"user\",\"content\":[{\"text\":\"Again\"}]}],"
          "\"inferenceConfig\":{\"maxTokens\":33,\"temperature\":0.5,\"topP\":0.9,"
          "\"stopSequences\":[\"END\"]}}");
    /* Consecutive user messages merge (Converse requires turns to alternate); OpenAI-only
       fields (user, seed, stream_options, max_tokens at the top) are not sent. */
    assert_true(json_equal(b, want));
    json_decref(want);
    json_decref(b);

    /* Without max_tokens the agent's default fills maxTokens; max_completion_tokens counts. */
    json_object_del(o, "max_tokens");
    assert_int_equal(provider_bedrock_request(o, 4096, NULL, &b), ERR_OK);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(b, "inferenceConfig"), "maxTokens")),
        4096);
    json_decref(b);
    json_object_set_new(o, "max_completion_tokens", json_integer(9));
    assert_int_equal(provider_bedrock_request(o, 4096, NULL, &b), ERR_OK);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(b, "inferenceConfig"), "maxTokens")), 9);
    assert_null(json_object_get(b, "toolConfig"));
    json_decref(b);
    json_decref(o);
}

static void test_request_tools(void **state)
{
    (void)state;
    json_t *o = J(
        "{\"messages\":[{\"role\":\"user\",\"content\":\"weather?\"},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"t1\",\"type\":"
        "\"function\",\"function\":{\"name\":\"wx\",\"arguments\":\"{\\\"city\\\":\\\"Oslo\\\"}\"}}"
        ","
        "{\"id\":\"t2\",\"type\":\"function\",\"function\":{\"name\":\"wx\",\"arguments\":\"\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"t1\",\"content\":\"rain\"},"
        "{\"role\":\"tool\",\"tool_call_id\":\"t2\",\"content\":\"\"}],"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"wx\",\"description\":\"d\","
        "\"parameters\":{\"type\":\"object\"}}},{\"type\":\"function\",\"function\":{\"name\":"
        "\"now\"}}],\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"wx\"}},"
        "\"parallel_tool_calls\":false}");
    json_t *b = NULL;
    assert_int_equal(provider_bedrock_request(o, 100, NULL, &b), ERR_OK);
    json_t *want =
        J("{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"weather?\"}]},"
          "{\"role\":\"assistant\",\"content\":[{\"toolUse\":{\"toolUseId\":\"t1\",\"name\":\"wx\","
          "\"input\":{\"city\":\"Oslo\"}}},{\"toolUse\":{\"toolUseId\":\"t2\",\"name\":\"wx\","
          "\"input\":{}}}]},"
          "{\"role\":\"user\",\"content\":[{\"toolResult\":{\"toolUseId\":\"t1\",\"content\":"
          "[{\"text\":\"rain\"}]}},{\"toolResult\":{\"toolUseId\":\"t2\",\"content\":[]}}]}],"
          "\"inferenceConfig\":{\"maxTokens\":100},"
          "\"toolConfig\":{\"tools\":[{\"toolSpec\":{\"name\":\"wx\",\"description\":\"d\","
          "\"inputSchema\":{\"json\":{\"type\":\"object\"}}}},{\"toolSpec\":{\"name\":\"now\","
          "\"inputSchema\":{\"json\":{\"type\":\"object\",\"properties\":{}}}}}],"
          "\"toolChoice\":{\"tool\":{\"name\":\"wx\"}}}}");
    assert_true(json_equal(b, want));
    json_decref(want);
    json_decref(b);
    json_object_set_new(o, "tool_choice", json_string("required"));
    assert_int_equal(provider_bedrock_request(o, 100, NULL, &b), ERR_OK);
    assert_non_null(
        json_object_get(json_object_get(json_object_get(b, "toolConfig"), "toolChoice"), "any"));
    json_decref(b);
    json_object_set_new(o, "tool_choice", json_string("auto"));
    assert_int_equal(provider_bedrock_request(o, 100, NULL, &b), ERR_OK);
    assert_null(json_object_get(json_object_get(b, "toolConfig"), "toolChoice"));
    json_decref(b);
    json_decref(o);
}

/* Each request that cannot be translated, and the field its error names. */
static void test_request_refused(void **state)
{
    (void)state;
    static const struct {
        const char *req, *param;
    } cases[] = {
        {"{}", "messages"},
        {"{\"messages\":[]}", "messages"},
        {"{\"messages\":[{\"role\":\"system\",\"content\":\"only\"}]}", "messages"},
        {"{\"messages\":[{\"content\":\"x\"}]}", "messages[0].role"},
        {"{\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}", "messages[0].role"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"\"}]}", "messages[0].content"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":42}]}", "messages[0].content"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\"}]}]}",
         "messages[0].content[0].type"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":"
         "{\"url\":\"https://x/y.png\"}}]}]}",
         "messages[0].content[0].image_url"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":"
         "{\"url\":\"data:image/bmp;base64,AA\"}}]}]}",
         "messages[0].content[0].image_url"},
        {"{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"a\",\"function\":"
         "{\"name\":\"f\",\"arguments\":\"[1]\"}}]}]}",
         "messages[0].tool_calls[0].function.arguments"},
        {"{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"name\":\"f\","
         "\"arguments\":\"{}\"}}]}]}",
         "messages[0].tool_calls[0].id"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"tool_calls\":[]}]}",
         "messages[0].tool_calls"},
        {"{\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", "messages[0].tool_call_id"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":3}", "n"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":true}", "logprobs"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":"
         "{\"type\":\"json_object\"}}",
         "response_format.type"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[\"a\",1]}", "stop[1]"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":5}", "stop"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":{}}", "tools"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"web\"}]}",
         "tools[0].type"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\","
         "\"function\":{\"name\":\"f\",\"parameters\":[]}}]}",
         "tools[0].function.parameters"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\","
         "\"function\":{\"name\":\"f\"}}],\"tool_choice\":\"none\"}",
         "tool_choice"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\","
         "\"function\":{\"name\":\"f\"}}],\"tool_choice\":{\"type\":\"x\"}}",
         "tool_choice"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *o = J(cases[i].req);
        struct provider_bad bad = {{0}, {0}};
        json_t *b = NULL;
        enum err e = provider_bedrock_request(o, 100, &bad, &b);
        if (e != ERR_INVAL || strcmp(bad.param, cases[i].param) != 0) {
            fprintf(stderr, "case %zu: err %d param '%s', want '%s'\n", i, (int)e, bad.param,
                    cases[i].param);
        }
        assert_int_equal(e, ERR_INVAL);
        assert_string_equal(bad.param, cases[i].param);
        assert_true(bad.msg[0] != '\0');
        assert_null(b);
        json_decref(o);
    }
}

/* ---- the answer ------------------------------------------------------------------------------ */

static json_t *answer_of(const char *body, enum err want, struct provider_usage *u)
{
    json_t *out = NULL;
    enum err e =
        provider_find("bedrock")->response(PROVIDER_CHAT, body, strlen(body), "m1", &out, u);
    assert_int_equal(e, want);
    return out;
}

static void test_answer_text_and_usage(void **state)
{
    (void)state;
    struct provider_usage u = {0};
    json_t *a = answer_of(
        "{\"output\":{\"message\":{\"role\":\"assistant\",\"content\":[{\"text\":\"w0 w1\"},"
        "{\"reasoningContent\":{\"reasoningText\":{\"text\":\"hidden\"}}},{\"text\":\" w2\"}]}},"
        "\"stopReason\":\"end_turn\",\"usage\":{\"inputTokens\":4,\"outputTokens\":3,"
        "\"totalTokens\":11,\"cacheReadInputTokens\":2,\"cacheWriteInputTokens\":2},"
        "\"metrics\":{\"latencyMs\":5}}",
        ERR_OK, &u);
    assert_string_equal(json_string_value(json_object_get(a, "object")), "chat.completion");
    assert_string_equal(json_string_value(json_object_get(a, "model")), "m1");
    assert_int_equal(strncmp(json_string_value(json_object_get(a, "id")), "chatcmpl-bedrock-", 17),
                     0);
    const json_t *ch = json_array_get(json_object_get(a, "choices"), 0);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(ch, "message"), "content")), "w0 w1 w2");
    assert_string_equal(json_string_value(json_object_get(ch, "finish_reason")), "stop");
    /* Cached tokens are part of OpenAI's prompt_tokens, not of Bedrock's inputTokens. */
    assert_true(u.seen);
    assert_int_equal(u.prompt_tokens, 8);
    assert_int_equal(u.cached_tokens, 2);
    assert_int_equal(u.completion_tokens, 3);
    const json_t *usage = json_object_get(a, "usage");
    assert_int_equal(json_integer_value(json_object_get(usage, "total_tokens")), 11);
    json_decref(a);
}

static void test_answer_stop_reasons(void **state)
{
    (void)state;
    static const struct {
        const char *stop, *finish;
    } map[] = {{"end_turn", "stop"},
               {"stop_sequence", "stop"},
               {"max_tokens", "length"},
               {"model_context_window_exceeded", "length"},
               {"tool_use", "tool_calls"},
               {"guardrail_intervened", "content_filter"},
               {"content_filtered", "content_filter"},
               {"something_new", "stop"}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        char body[256];
        snprintf(
            body, sizeof(body),
            "{\"output\":{\"message\":{\"content\":[{\"text\":\"x\"}]}},\"stopReason\":\"%s\"}",
            map[i].stop);
        struct provider_usage u = {0};
        json_t *a = answer_of(body, ERR_OK, &u);
        assert_string_equal(json_string_value(json_object_get(
                                json_array_get(json_object_get(a, "choices"), 0), "finish_reason")),
                            map[i].finish);
        /* No usage in the answer: the agent estimates it. */
        assert_false(u.seen);
        json_decref(a);
    }
}

static void test_answer_tool_use(void **state)
{
    (void)state;
    struct provider_usage u = {0};
    json_t *a = answer_of(
        "{\"output\":{\"message\":{\"role\":\"assistant\",\"content\":[{\"toolUse\":{\"toolUseId\":"
        "\"tooluse_1\",\"name\":\"wx\",\"input\":{\"city\":\"Oslo\"}}}]}},\"stopReason\":"
        "\"tool_use\",\"usage\":{\"inputTokens\":1,\"outputTokens\":2}}",
        ERR_OK, &u);
    const json_t *msg =
        json_object_get(json_array_get(json_object_get(a, "choices"), 0), "message");
    assert_true(json_is_null(json_object_get(msg, "content")));
    const json_t *tc = json_array_get(json_object_get(msg, "tool_calls"), 0);
    assert_string_equal(json_string_value(json_object_get(tc, "id")), "tooluse_1");
    assert_string_equal(json_string_value(json_object_get(tc, "type")), "function");
    const json_t *fn = json_object_get(tc, "function");
    assert_string_equal(json_string_value(json_object_get(fn, "name")), "wx");
    assert_string_equal(json_string_value(json_object_get(fn, "arguments")), "{\"city\":\"Oslo\"}");
    json_decref(a);
}

/* Malformed answers: a clean error, never a crash; a 2xx error body is the provider's. */
static void test_answer_malformed(void **state)
{
    (void)state;
    static const char *const proto[] = {
        "",
        "[]",
        "not json",
        "{}",
        "{\"output\":{}}",
        "{\"output\":{\"message\":{\"content\":\"x\"}}}",
        "{\"output\":{\"message\":{\"content\":[{\"toolUse\":{\"name\":\"f\"}}]}}}",
        /* NOLINTNEXTLINE(bugprone-suspicious-missing-comma): one literal over two lines */
        "{\"output\":{\"message\":{\"content\":[{\"toolUse\":{\"toolUseId\":\"\",\"name\":\"f\"}}]}"
        "}}",
    };
    for (size_t i = 0; i < sizeof(proto) / sizeof(proto[0]); i++) {
        struct provider_usage u = {0};
        assert_null(answer_of(proto[i], ERR_PROTO, &u));
    }
    struct provider_usage u = {0};
    assert_null(
        answer_of("{\"message\":\"The security token ABSK... is invalid\"}", ERR_UPSTREAM, &u));
    assert_null(answer_of("{\"Message\":\"x\"}", ERR_UPSTREAM, &u));
    /* Absurd counts are clamped. */
    json_t *a =
        answer_of("{\"output\":{\"message\":{\"content\":[]}},\"usage\":{\"inputTokens\":-5,"
                  "\"outputTokens\":1e300}}",
                  ERR_OK, &u);
    assert_int_equal(u.prompt_tokens, 0);
    assert_int_equal(u.completion_tokens, PROVIDER_MAX_TOKENS);
    json_decref(a);
}

/* ---- the event stream decoder ------------------------------------------------------------------
 */

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Appends one string header to h at *n. */
static void put_header(unsigned char *h, size_t *n, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value);
    h[(*n)++] = (unsigned char)nl;
    /* NOLINTNEXTLINE(bugprone-not-null-terminated-result): bytes of a frame, by length */
    memcpy(h + *n, name, nl);
    *n += nl;
    h[(*n)++] = 7;
    h[(*n)++] = (unsigned char)(vl >> 8);
    h[(*n)++] = (unsigned char)vl;
    /* NOLINTNEXTLINE(bugprone-not-null-terminated-result): bytes of a frame, by length */
    memcpy(h + *n, value, vl);
    *n += vl;
}

/*
 * One message into out (at most cap bytes); its length. type is the
 * :message-type; name the :event-type (or :exception-type). A few headers of
 * other types come first, as AWS sends them and the decoder must skip.
 */
static size_t frame(unsigned char *out, size_t cap, const char *type, const char *name,
                    const char *payload)
{
    unsigned char h[512];
    size_t hn = 0;
    /* A uuid, an int32, a bool and a timestamp header, skipped by their sizes. */
    h[hn++] = 3;
    memcpy(h + hn, "uid", 3);
    hn += 3;
    h[hn++] = 9;
    memset(h + hn, 0xAB, 16);
    hn += 16;
    h[hn++] = 1;
    h[hn++] = 'n';
    h[hn++] = 4;
    put32(h + hn, 7);
    hn += 4;
    h[hn++] = 1;
    h[hn++] = 'b';
    h[hn++] = 0;
    h[hn++] = 2;
    memcpy(h + hn, "ts", 2);
    hn += 2;
    h[hn++] = 8;
    memset(h + hn, 0, 8);
    hn += 8;
    put_header(h, &hn, ":message-type", type);
    put_header(h, &hn, strcmp(type, "exception") == 0 ? ":exception-type" : ":event-type", name);
    put_header(h, &hn, ":content-type", "application/json");
    size_t pl = strlen(payload);
    size_t total = EVS_OVERHEAD + hn + pl;
    assert_true(total <= cap);
    put32(out, (uint32_t)total);
    put32(out + 4, (uint32_t)hn);
    put32(out + 8, evs_crc32(0, out, 8));
    memcpy(out + EVS_PRELUDE_LEN, h, hn);
    /* NOLINTNEXTLINE(bugprone-not-null-terminated-result): bytes of a frame, by length */
    memcpy(out + EVS_PRELUDE_LEN + hn, payload, pl);
    put32(out + total - 4, evs_crc32(0, out, total - 4));
    return total;
}

struct seen {
    char log[4096];
    int calls;
    int stop_at; /* the call that returns stop_rc, 0 for none */
    int stop_rc;
};

static int on_message(void *arg, const char *mtype, const char *etype, const char *payload,
                      size_t len)
{
    struct seen *s = arg;
    size_t n = strlen(s->log);
    snprintf(s->log + n, sizeof(s->log) - n, "%s/%s:%.*s|", mtype, etype, (int)len, payload);
    s->calls++;
    return s->calls == s->stop_at ? s->stop_rc : 0;
}

static void test_crc32(void **state)
{
    (void)state;
    /* The standard check value of CRC-32/IEEE, and continuation across pieces. */
    assert_int_equal(evs_crc32(0, "123456789", 9), 0xCBF43926u);
    assert_int_equal(evs_crc32(evs_crc32(0, "1234", 4), "56789", 5), 0xCBF43926u);
}

static void test_decoder_whole_split_and_joined(void **state)
{
    (void)state;
    unsigned char buf[2048];
    size_t a = frame(buf, sizeof(buf), "event", "contentBlockDelta", "{\"i\":1}");
    size_t b = frame(buf + a, sizeof(buf) - a, "event", "messageStop", "{\"i\":2}");
    const char *want = "event/contentBlockDelta:{\"i\":1}|event/messageStop:{\"i\":2}|";

    /* Two messages in one read. */
    struct seen s = {.log = ""};
    struct evs p;
    evs_init(&p, 1 << 20, on_message, &s);
    assert_int_equal(evs_feed(&p, (const char *)buf, a + b), ERR_OK);
    assert_string_equal(s.log, want);
    assert_true(evs_idle(&p));
    evs_done(&p);

    /* Split at every byte boundary (two reads), and byte by byte. */
    for (size_t cut = 0; cut <= a + b; cut++) {
        memset(&s, 0, sizeof(s));
        evs_init(&p, 1 << 20, on_message, &s);
        assert_int_equal(evs_feed(&p, (const char *)buf, cut), ERR_OK);
        assert_int_equal(evs_feed(&p, (const char *)buf + cut, a + b - cut), ERR_OK);
        assert_string_equal(s.log, want);
        assert_true(evs_idle(&p));
        evs_done(&p);
    }
    memset(&s, 0, sizeof(s));
    evs_init(&p, 1 << 20, on_message, &s);
    for (size_t i = 0; i < a + b; i++) {
        assert_int_equal(evs_feed(&p, (const char *)buf + i, 1), ERR_OK);
        assert_true(evs_idle(&p) == (i + 1 == a || i + 1 == a + b));
    }
    assert_string_equal(s.log, want);
    evs_done(&p);

    /* An exception message reaches the callback with its :exception-type. */
    size_t x = frame(buf, sizeof(buf), "exception", "throttlingException", "{\"message\":\"m\"}");
    memset(&s, 0, sizeof(s));
    evs_init(&p, 1 << 20, on_message, &s);
    assert_int_equal(evs_feed(&p, (const char *)buf, x), ERR_OK);
    assert_string_equal(s.log, "exception/throttlingException:{\"message\":\"m\"}|");
    evs_done(&p);
}

static void test_decoder_end_and_cancel(void **state)
{
    (void)state;
    unsigned char buf[2048];
    size_t a = frame(buf, sizeof(buf), "event", "metadata", "{}");
    size_t b = frame(buf + a, sizeof(buf) - a, "event", "messageStop", "{}");
    struct seen s = {.log = "", .stop_at = 1, .stop_rc = EVS_END};
    struct evs p;
    evs_init(&p, 1 << 20, on_message, &s);
    /* After EVS_END nothing more is read, in this chunk or later ones. */
    assert_int_equal(evs_feed(&p, (const char *)buf, a + b), ERR_OK);
    assert_true(evs_ended(&p));
    assert_int_equal(evs_feed(&p, (const char *)buf, a), ERR_OK);
    assert_int_equal(s.calls, 1);
    evs_done(&p);
    memset(&s, 0, sizeof(s));
    s.stop_at = 1;
    s.stop_rc = 1;
    evs_init(&p, 1 << 20, on_message, &s);
    assert_int_equal(evs_feed(&p, (const char *)buf, a + b), ERR_CANCELLED);
    assert_int_equal(evs_feed(&p, (const char *)buf, a), ERR_CANCELLED);
    assert_int_equal(s.calls, 1);
    evs_done(&p);
}

/* Feeds bytes in one read and in two; both must fail with want and call nothing. */
static void decoder_refuses(const unsigned char *bytes, size_t len, size_t max, enum err want)
{
    for (size_t cut = 0; cut <= len; cut += (len > 40 ? len / 7 : 1)) {
        struct seen s = {.log = ""};
        struct evs p;
        evs_init(&p, max, on_message, &s);
        enum err e = evs_feed(&p, (const char *)bytes, cut);
        if (e == ERR_OK) {
            e = evs_feed(&p, (const char *)bytes + cut, len - cut);
        }
        assert_int_equal(e, want);
        assert_int_equal(s.calls, 0);
        /* Once failed, always failed. */
        assert_int_equal(evs_feed(&p, "", 0), want);
        evs_done(&p);
    }
}

static void test_decoder_refusals(void **state)
{
    (void)state;
    unsigned char good[1024], bad[1024];
    size_t n = frame(good, sizeof(good), "event", "contentBlockDelta", "{\"delta\":{}}");

    /* A bad prelude CRC. */
    memcpy(bad, good, n);
    bad[9] ^= 1;
    decoder_refuses(bad, n, 1 << 20, ERR_PROTO);
    /* A bad message CRC, and a payload byte changed under a good one. */
    memcpy(bad, good, n);
    bad[n - 1] ^= 1;
    decoder_refuses(bad, n, 1 << 20, ERR_PROTO);
    memcpy(bad, good, n);
    bad[n - 6] ^= 1;
    decoder_refuses(bad, n, 1 << 20, ERR_PROTO);

    /* At the cap the message is taken; one byte under it, refused from its prelude. */
    struct seen s = {.log = ""};
    struct evs p;
    evs_init(&p, n, on_message, &s);
    assert_int_equal(evs_feed(&p, (const char *)good, n), ERR_OK);
    assert_int_equal(s.calls, 1);
    evs_done(&p);
    decoder_refuses(good, n, n - 1, ERR_TOOBIG);

    /* An oversized length with a valid prelude CRC: refused before any byte is waited for. */
    memcpy(bad, good, n);
    put32(bad, 0x7FFFFFF0u);
    put32(bad + 8, evs_crc32(0, bad, 8));
    decoder_refuses(bad, EVS_PRELUDE_LEN, 1 << 20, ERR_TOOBIG);
    /* Headers longer than the message, and a total below the framing's own overhead. */
    memcpy(bad, good, n);
    put32(bad + 4, (uint32_t)n);
    put32(bad + 8, evs_crc32(0, bad, 8));
    decoder_refuses(bad, n, 1 << 20, ERR_PROTO);
    memcpy(bad, good, n);
    put32(bad, 15);
    put32(bad + 4, 0);
    put32(bad + 8, evs_crc32(0, bad, 8));
    decoder_refuses(bad, 15, 1 << 20, ERR_PROTO);

    /* A header of an unknown type, and a header running past the headers. */
    unsigned char m[64];
    static const unsigned char h1[] = {1, 'x', 42};
    static const unsigned char h2[] = {1, 'x', 7, 0, 50, 'a'};
    const unsigned char *hs[] = {h1, h2};
    size_t hl[] = {sizeof(h1), sizeof(h2)};
    for (size_t i = 0; i < 2; i++) {
        size_t total = EVS_OVERHEAD + hl[i];
        put32(m, (uint32_t)total);
        put32(m + 4, (uint32_t)hl[i]);
        put32(m + 8, evs_crc32(0, m, 8));
        memcpy(m + EVS_PRELUDE_LEN, hs[i], hl[i]);
        put32(m + total - 4, evs_crc32(0, m, total - 4));
        decoder_refuses(m, total, 1 << 20, ERR_PROTO);
    }
}

/*
 * A message whose headers are exactly hlen bytes (two byte-array headers):
 * EVS_MAX_HEADERS is taken, one more byte refused from the prelude.
 */
static void test_decoder_header_limit(void **state)
{
    (void)state;
    const size_t sizes[] = {EVS_MAX_HEADERS, EVS_MAX_HEADERS + 1};
    for (size_t k = 0; k < 2; k++) {
        size_t hlen = sizes[k];
        size_t total = EVS_OVERHEAD + hlen;
        unsigned char *m = calloc(1, total);
        assert_non_null(m);
        /* Each header: name length, name, type, 2-byte value length, value. */
        const size_t head = 5;
        size_t v1 = 65535, v2 = hlen - head - head - v1;
        unsigned char *h = m + EVS_PRELUDE_LEN;
        h[0] = 1;
        h[1] = 'a';
        h[2] = 6;
        h[3] = (unsigned char)(v1 >> 8);
        h[4] = (unsigned char)v1;
        h += 5 + v1;
        h[0] = 1;
        h[1] = 'b';
        h[2] = 6;
        h[3] = (unsigned char)(v2 >> 8);
        h[4] = (unsigned char)v2;
        put32(m, (uint32_t)total);
        put32(m + 4, (uint32_t)hlen);
        put32(m + 8, evs_crc32(0, m, 8));
        put32(m + total - 4, evs_crc32(0, m, total - 4));
        struct seen s = {.log = ""};
        struct evs p;
        evs_init(&p, 1 << 20, on_message, &s);
        assert_int_equal(evs_feed(&p, (const char *)m, total), k == 0 ? ERR_OK : ERR_TOOBIG);
        assert_int_equal(s.calls, k == 0 ? 1 : 0);
        evs_done(&p);
        free(m);
    }
}

/* ---- stream events as OpenAI chunks ------------------------------------------------------------
 */

/* Feeds one event (as the proxy does with a decoded message) and checks its result. */
static void ev(struct provider_stream *st, const char *event, const char *payload, struct buf *out,
               enum err want)
{
    assert_int_equal(provider_bedrock_stream_event(st, event, payload, strlen(payload), out), want);
}

/* The data: frames of out as JSON (an array), [DONE] as the string "[DONE]". */
static json_t *frames_of(const struct buf *out)
{
    json_t *arr = json_array();
    const char *p = out->data != NULL ? out->data : "";
    while ((p = strstr(p, "data: ")) != NULL) {
        p += 6;
        const char *end = strstr(p, "\n\n");
        assert_non_null(end);
        json_t *j = strncmp(p, "[DONE]", 6) == 0 ? json_string("[DONE]")
                                                 : json_loadb(p, (size_t)(end - p), 0, NULL);
        assert_non_null(j);
        json_array_append_new(arr, j);
        p = end;
    }
    return arr;
}

static void test_stream_text_and_usage(void **state)
{
    (void)state;
    struct provider_stream st;
    memset(&st, 0, sizeof(st));
    snprintf(st.model, sizeof(st.model), "%s", "m1");
    struct buf out;
    buf_init(&out, 1 << 20);
    ev(&st, "messageStart", "{\"role\":\"assistant\",\"p\":\"abc\"}", &out, ERR_OK);
    ev(&st, "contentBlockDelta", "{\"contentBlockIndex\":0,\"delta\":{\"text\":\"w0\"}}", &out,
       ERR_OK);
    ev(&st, "contentBlockDelta", "{\"contentBlockIndex\":0,\"delta\":{\"text\":\" w1\"}}", &out,
       ERR_OK);
    ev(&st, "contentBlockStop", "{\"contentBlockIndex\":0}", &out, ERR_OK);
    ev(&st, "messageStop", "{\"stopReason\":\"max_tokens\"}", &out, ERR_OK);
    assert_false(st.done);
    ev(&st, "metadata",
       "{\"usage\":{\"inputTokens\":5,\"outputTokens\":2,\"totalTokens\":7},"
       "\"metrics\":{\"latencyMs\":10}}",
       &out, ERR_OK);
    assert_true(st.done);
    assert_true(st.usage_final);
    assert_int_equal(st.usage.prompt_tokens, 5);
    assert_int_equal(st.usage.completion_tokens, 2);
    json_t *f = frames_of(&out);
    assert_int_equal(json_array_size(f), 6);
    const json_t *c0 = json_array_get(f, 0);
    assert_string_equal(json_string_value(json_object_get(c0, "object")), "chat.completion.chunk");
    assert_string_equal(json_string_value(json_object_get(c0, "model")), "m1");
    const json_t *d0 = json_object_get(json_array_get(json_object_get(c0, "choices"), 0), "delta");
    assert_string_equal(json_string_value(json_object_get(d0, "role")), "assistant");
    for (size_t i = 1; i <= 2; i++) {
        const json_t *d = json_object_get(
            json_array_get(json_object_get(json_array_get(f, i), "choices"), 0), "delta");
        assert_string_equal(json_string_value(json_object_get(d, "content")),
                            i == 1 ? "w0" : " w1");
        /* Every chunk carries the stream's one id. */
        assert_string_equal(json_string_value(json_object_get(json_array_get(f, i), "id")),
                            json_string_value(json_object_get(c0, "id")));
    }
    const json_t *fin = json_array_get(json_object_get(json_array_get(f, 3), "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(fin, "finish_reason")), "length");
    const json_t *uc = json_array_get(f, 4);
    assert_int_equal(json_array_size(json_object_get(uc, "choices")), 0);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(uc, "usage"), "total_tokens")), 7);
    assert_string_equal(json_string_value(json_array_get(f, 5)), "[DONE]");
    json_decref(f);

    /* The app did not ask for usage: no usage chunk, [DONE] all the same. */
    memset(&st, 0, sizeof(st));
    st.skip_usage_chunk = true;
    buf_reset(&out);
    ev(&st, "metadata", "{\"usage\":{\"inputTokens\":5,\"outputTokens\":2}}", &out, ERR_OK);
    assert_true(st.usage_final);
    f = frames_of(&out);
    assert_int_equal(json_array_size(f), 1);
    assert_string_equal(json_string_value(json_array_get(f, 0)), "[DONE]");
    json_decref(f);
    buf_done(&out);
}

static void test_stream_tool_use(void **state)
{
    (void)state;
    struct provider_stream st;
    memset(&st, 0, sizeof(st));
    struct buf out;
    buf_init(&out, 1 << 20);
    ev(&st, "messageStart", "{\"role\":\"assistant\"}", &out, ERR_OK);
    ev(&st, "contentBlockStart",
       "{\"contentBlockIndex\":1,\"start\":{\"toolUse\":{\"toolUseId\":\"tu1\",\"name\":\"wx\"}}}",
       &out, ERR_OK);
    ev(&st, "contentBlockDelta",
       "{\"contentBlockIndex\":1,\"delta\":{\"toolUse\":{\"input\":\"{\\\"city\\\"\"}}}", &out,
       ERR_OK);
    /* A fragment for a block that is not the open tool call is not forwarded. */
    ev(&st, "contentBlockDelta",
       "{\"contentBlockIndex\":7,\"delta\":{\"toolUse\":{\"input\":\"x\"}}}", &out, ERR_OK);
    ev(&st, "contentBlockDelta",
       "{\"contentBlockIndex\":1,\"delta\":{\"toolUse\":{\"input\":\":\\\"Oslo\\\"}\"}}}", &out,
       ERR_OK);
    ev(&st, "contentBlockStop", "{\"contentBlockIndex\":1}", &out, ERR_OK);
    assert_false(st.tool_open);
    ev(&st, "messageStop", "{\"stopReason\":\"tool_use\"}", &out, ERR_OK);
    json_t *f = frames_of(&out);
    assert_int_equal(json_array_size(f), 5);
    const json_t *open = json_array_get(
        json_object_get(
            json_object_get(json_array_get(json_object_get(json_array_get(f, 1), "choices"), 0),
                            "delta"),
            "tool_calls"),
        0);
    assert_int_equal(json_integer_value(json_object_get(open, "index")), 0);
    assert_string_equal(json_string_value(json_object_get(open, "id")), "tu1");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(open, "function"), "name")), "wx");
    const json_t *frag = json_array_get(
        json_object_get(
            json_object_get(json_array_get(json_object_get(json_array_get(f, 3), "choices"), 0),
                            "delta"),
            "tool_calls"),
        0);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(frag, "function"), "arguments")),
        ":\"Oslo\"}");
    const json_t *fin = json_array_get(json_object_get(json_array_get(f, 4), "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(fin, "finish_reason")), "tool_calls");
    json_decref(f);
    buf_done(&out);
}

/* Exceptions, unknown events and malformed payloads: a flag or a clean error, never a crash. */
static void test_stream_errors_and_garbage(void **state)
{
    (void)state;
    struct provider_stream st;
    memset(&st, 0, sizeof(st));
    struct buf out;
    buf_init(&out, 1 << 20);
    ev(&st, "error", "{\"message\":\"throttled, key ABSK...\"}", &out, ERR_OK);
    assert_true(st.failed);
    assert_int_equal(out.len, 0);
    memset(&st, 0, sizeof(st));
    ev(&st, "someFutureEvent", "{\"x\":1}", &out, ERR_OK);
    assert_int_equal(out.len, 0);
    ev(&st, "contentBlockDelta", "not json", &out, ERR_PROTO);
    ev(&st, "contentBlockDelta", "[1]", &out, ERR_PROTO);
    ev(&st, "contentBlockDelta", "", &out, ERR_PROTO);
    ev(&st, "contentBlockDelta", "{\"delta\":{\"text\":5}}", &out, ERR_OK);
    ev(&st, "contentBlockStart",
       "{\"contentBlockIndex\":0,\"start\":{\"toolUse\":{\"name\":\"f\"}}}", &out, ERR_PROTO);
    ev(&st, "contentBlockStart", "{\"start\":{\"toolUse\":{\"toolUseId\":\"a\",\"name\":\"f\"}}}",
       &out, ERR_PROTO);
    ev(&st, "messageStop", "{}", &out, ERR_OK);
    ev(&st, "metadata", "{\"usage\":\"none\"}", &out, ERR_OK);
    assert_true(st.done);
    assert_false(st.usage_final);
    buf_done(&out);
}

/* The Titan request's SigV4 signature (test_embed_build_titan), computed with Python. */
#define TITAN_SIGNATURE "cbf6e771fb20c1f514817f969e072132ff107c14ca7459d212744db7127c6f05"

/* ---- embeddings (InvokeModel) ------------------------------------------------------------- */

/* Builds an embeddings request for model with key; the caller frees h. */
static enum err embed_build(const char *req_text, const char *model, struct secret *key,
                            const json_t *entry, struct provider_http *h)
{
    json_t *req = J(req_text);
    struct provider_call pc = {.op = PROVIDER_EMBEDDINGS,
                               .req = req,
                               .model = model,
                               .entry = entry,
                               .key = key,
                               .default_max_tokens = 100,
                               .now = 1795846500 /* 20261128T061500Z */};
    memset(h, 0, sizeof(*h));
    enum err e = provider_find("bedrock")->build(&pc, h);
    json_decref(req);
    return e;
}

static void test_embed_build_titan(void **state)
{
    (void)state;
    json_t *entry = J("{\"base_url\":\"https://bedrock-runtime.eu-west-1.amazonaws.com\"}");
    struct secret *key = secret_from("ABSK-CANARY-embed", 17);
    struct provider_http h;
    assert_int_equal(embed_build("{\"model\":\"x\",\"input\":\"hello there\",\"dimensions\":256}",
                                 "amazon.titan-embed-text-v2:0", key, entry, &h),
                     ERR_OK);
    /* The model id encoded as Converse encodes it; InvokeModel's /invoke. */
    assert_string_equal(h.url, "https://bedrock-runtime.eu-west-1.amazonaws.com/model/"
                               "amazon.titan-embed-text-v2%3A0/invoke");
    assert_string_equal(h.body,
                        "{\"inputText\":\"hello there\",\"normalize\":true,\"dimensions\":256}");
    assert_string_equal(find_header(h.headers, "Authorization:"),
                        "Authorization: Bearer ABSK-CANARY-embed");
    assert_string_equal(find_header(h.headers, "Accept:"), "Accept: application/json");
    assert_string_equal(find_header(h.headers, "Content-Type:"), "Content-Type: application/json");
    provider_http_done(&h);

    /* A one-string array is one text; no dimensions: Titan's default (1024). */
    assert_int_equal(embed_build("{\"input\":[\"hello there\"],\"encoding_format\":\"float\"}",
                                 "amazon.titan-embed-text-v2:0", key, entry, &h),
                     ERR_OK);
    assert_string_equal(h.body, "{\"inputText\":\"hello there\",\"normalize\":true}");
    provider_http_done(&h);

    /*
     * IAM credentials sign the InvokeModel request like Converse's. The
     * signature was computed independently (Python's hmac and hashlib, SigV4
     * as the IAM user guide gives it) over this exact body and path.
     */
    static const char akey[] = "AKIAIOSFODNN7EXAMPLE:" IAM_SECRET;
    struct secret *iam = secret_from(akey, strlen(akey));
    assert_int_equal(embed_build("{\"input\":\"hello there\",\"dimensions\":256}",
                                 "amazon.titan-embed-text-v2:0", iam, entry, &h),
                     ERR_OK);
    assert_string_equal(h.url, "https://bedrock-runtime.eu-west-1.amazonaws.com/model/"
                               "amazon.titan-embed-text-v2%3A0/invoke");
    assert_string_equal(find_header(h.headers, "Host:"),
                        "Host: bedrock-runtime.eu-west-1.amazonaws.com");
    assert_string_equal(find_header(h.headers, "X-Amz-Date:"), "X-Amz-Date: 20261128T061500Z");
    assert_string_equal(find_header(h.headers, "Authorization:"),
                        "Authorization: AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261128/"
                        "eu-west-1/bedrock/aws4_request, SignedHeaders=content-type;host;"
                        "x-amz-date, Signature=" TITAN_SIGNATURE);
    for (const struct curl_slist *l = h.headers; l != NULL; l = l->next) {
        assert_null(strstr(l->data, "EXAMPLEKEY"));
    }
    provider_http_done(&h);
    secret_free(&iam);
    secret_free(&key);
    json_decref(entry);
}

static void test_embed_build_cohere(void **state)
{
    (void)state;
    json_t *entry = J("{\"base_url\":\"https://bedrock-runtime.us-east-1.amazonaws.com\"}");
    struct secret *key = secret_from("ABSK-CANARY-embed", 17);
    struct provider_http h;
    assert_int_equal(embed_build("{\"input\":[\"a b\",\"c\",\"d e f\"],\"dimensions\":1024}",
                                 "cohere.embed-english-v3", key, entry, &h),
                     ERR_OK);
    assert_string_equal(h.url, "https://bedrock-runtime.us-east-1.amazonaws.com/model/"
                               "cohere.embed-english-v3/invoke");
    /* search_document by default; truncate NONE: a long input is refused, never cut. */
    assert_string_equal(h.body, "{\"texts\":[\"a b\",\"c\",\"d e f\"],\"input_type\":"
                                "\"search_document\",\"truncate\":\"NONE\"}");
    provider_http_done(&h);

    /* The app's input_type when Cohere knows it; a cross-region profile id is the same model. */
    assert_int_equal(embed_build("{\"input\":\"q\",\"input_type\":\"search_query\"}",
                                 "us.cohere.embed-multilingual-v3", key, entry, &h),
                     ERR_OK);
    assert_string_equal(
        h.body, "{\"texts\":[\"q\"],\"input_type\":\"search_query\",\"truncate\":\"NONE\"}");
    provider_http_done(&h);
    assert_int_equal(embed_build("{\"input\":\"q\",\"input_type\":\"image\"}",
                                 "cohere.embed-english-v3", key, entry, &h),
                     ERR_OK);
    assert_non_null(strstr(h.body, "\"search_document\""));
    provider_http_done(&h);

    /* At the limits: 96 texts, and a text of 2048 characters (two-byte ones: counted once). */
    json_t *req = json_pack("{s:[]}", "input");
    for (int i = 0; i < BEDROCK_COHERE_MAX_TEXTS; i++) {
        json_array_append_new(json_object_get(req, "input"), json_string("t"));
    }
    static char long_text[2 * BEDROCK_COHERE_MAX_CHARS + 3];
    for (size_t i = 0; i < BEDROCK_COHERE_MAX_CHARS; i++) {
        memcpy(long_text + 2 * i, "\xc3\xa9", 2);
    }
    long_text[2 * (size_t)BEDROCK_COHERE_MAX_CHARS] = '\0';
    json_array_set_new(json_object_get(req, "input"), 1, json_string(long_text));
    json_t *body = NULL;
    struct provider_bad bad = {0};
    assert_int_equal(provider_bedrock_embed_request(req, "cohere.embed-english-v3", &bad, &body),
                     ERR_OK);
    assert_int_equal(json_array_size(json_object_get(body, "texts")), BEDROCK_COHERE_MAX_TEXTS);
    json_decref(body);

    /* One past each: refused, naming the field. */
    long_text[2 * (size_t)BEDROCK_COHERE_MAX_CHARS] = 'x';
    long_text[2 * (size_t)BEDROCK_COHERE_MAX_CHARS + 1] = '\0';
    json_array_set_new(json_object_get(req, "input"), 1, json_string(long_text));
    assert_int_equal(provider_bedrock_embed_request(req, "cohere.embed-english-v3", &bad, &body),
                     ERR_INVAL);
    assert_string_equal(bad.param, "input[1]");
    json_array_set_new(json_object_get(req, "input"), 1, json_string("t"));
    json_array_append_new(json_object_get(req, "input"), json_string("t"));
    memset(&bad, 0, sizeof(bad));
    assert_int_equal(provider_bedrock_embed_request(req, "cohere.embed-english-v3", &bad, &body),
                     ERR_INVAL);
    assert_string_equal(bad.param, "input");
    json_decref(req);
    secret_free(&key);
    json_decref(entry);
}

/* An embeddings request build refuses with want, sending nothing; param is the field named. */
static void embed_refused(const char *req_text, const char *model, enum err want, const char *param)
{
    json_t *entry = J("{\"base_url\":\"https://bedrock-runtime.us-east-1.amazonaws.com\"}");
    struct secret *key = secret_from("ABSK-CANARY-embed", 17);
    struct provider_http h;
    assert_int_equal(embed_build(req_text, model, key, entry, &h), want);
    assert_null(h.body);
    assert_null(h.headers);
    if (param != NULL) {
        assert_string_equal(h.bad.param, param);
        assert_null(strstr(h.bad.msg, "CANARY"));
    }
    provider_http_done(&h);
    secret_free(&key);
    json_decref(entry);
}

static void test_embed_refused(void **state)
{
    (void)state;
    const char *titan = "amazon.titan-embed-text-v2:0";
    const char *cohere = "cohere.embed-english-v3";
    /* 400s naming the field: a size Titan or Cohere does not make, base64, no input. */
    embed_refused("{\"input\":\"CANARY\",\"dimensions\":300}", titan, ERR_INVAL, "dimensions");
    embed_refused("{\"input\":\"CANARY\",\"dimensions\":0}", titan, ERR_INVAL, "dimensions");
    embed_refused("{\"input\":\"CANARY\",\"dimensions\":\"256\"}", titan, ERR_INVAL, "dimensions");
    embed_refused("{\"input\":\"CANARY\",\"dimensions\":512}", cohere, ERR_INVAL, "dimensions");
    embed_refused("{\"input\":\"CANARY\",\"encoding_format\":\"base64\"}", titan, ERR_INVAL,
                  "encoding_format");
    embed_refused("{\"input\":\"CANARY\",\"encoding_format\":\"base64\"}", cohere, ERR_INVAL,
                  "encoding_format");
    embed_refused("{\"input\":[]}", cohere, ERR_INVAL, "input");
    embed_refused("{\"input\":7}", titan, ERR_INVAL, "input");
    /*
     * Unsupported, so that another candidate gets the request: more than one
     * text for Titan (one per call), token ids, an embedding model this
     * translation does not know.
     */
    embed_refused("{\"input\":[\"a\",\"b\"]}", titan, ERR_UNSUPPORTED, NULL);
    embed_refused("{\"input\":[1,2,3]}", titan, ERR_UNSUPPORTED, NULL);
    embed_refused("{\"input\":[[1,2],[3]]}", cohere, ERR_UNSUPPORTED, NULL);
    embed_refused("{\"input\":\"a\"}", "amazon.titan-embed-image-v1", ERR_UNSUPPORTED, NULL);
    embed_refused("{\"input\":\"a\"}", "anthropic.claude-3-5-haiku-20241022-v1:0", ERR_UNSUPPORTED,
                  NULL);
}

static json_t *embed_answer_of(const char *body, enum err want, struct provider_usage *u)
{
    json_t *out = NULL;
    enum err e =
        provider_find("bedrock")->response(PROVIDER_EMBEDDINGS, body, strlen(body), "m1", &out, u);
    assert_int_equal(e, want);
    return out;
}

static void test_embed_answer(void **state)
{
    (void)state;
    /* Titan: one vector and its token count. */
    struct provider_usage u = {0};
    json_t *a = embed_answer_of("{\"embedding\":[0.5,-0.25,1],\"inputTextTokenCount\":7,"
                                "\"embeddingsByType\":{\"float\":[0.5,-0.25,1]}}",
                                ERR_OK, &u);
    assert_string_equal(json_string_value(json_object_get(a, "object")), "list");
    assert_string_equal(json_string_value(json_object_get(a, "model")), "m1");
    const json_t *d0 = json_array_get(json_object_get(a, "data"), 0);
    assert_int_equal(json_array_size(json_object_get(a, "data")), 1);
    assert_string_equal(json_string_value(json_object_get(d0, "object")), "embedding");
    assert_int_equal(json_integer_value(json_object_get(d0, "index")), 0);
    assert_int_equal(json_array_size(json_object_get(d0, "embedding")), 3);
    assert_true(json_real_value(json_array_get(json_object_get(d0, "embedding"), 1)) == -0.25);
    assert_true(u.seen);
    assert_int_equal(u.prompt_tokens, 7);
    assert_int_equal(u.completion_tokens, 0);
    const json_t *usage = json_object_get(a, "usage");
    assert_int_equal(json_integer_value(json_object_get(usage, "prompt_tokens")), 7);
    assert_int_equal(json_integer_value(json_object_get(usage, "total_tokens")), 7);
    json_decref(a);

    /* A negative count from the peer is clamped, never lowering spend below zero. */
    memset(&u, 0, sizeof(u));
    a = embed_answer_of("{\"embedding\":[1],\"inputTextTokenCount\":-5}", ERR_OK, &u);
    assert_int_equal(u.prompt_tokens, 0);
    json_decref(a);

    /*
     * Cohere: a vector per text, in order. Its body has no usage: the answer
     * carries the estimate of its texts, and the usage is left unseen for
     * the proxy to count as estimated.
     */
    memset(&u, 0, sizeof(u));
    a = embed_answer_of("{\"embeddings\":[[0.1,0.2],[0.3,0.4],[0.5,0.6]],\"id\":\"e1\","
                        "\"response_type\":\"embeddings_floats\",\"texts\":[\"abcdefgh\","
                        "\"abcd\",\"abcdefghijkl\"]}",
                        ERR_OK, &u);
    assert_int_equal(json_array_size(json_object_get(a, "data")), 3);
    const json_t *d2 = json_array_get(json_object_get(a, "data"), 2);
    assert_int_equal(json_integer_value(json_object_get(d2, "index")), 2);
    assert_true(json_real_value(json_array_get(json_object_get(d2, "embedding"), 0)) == 0.5);
    assert_false(u.seen);
    json_t *est = J("{\"input\":[\"abcdefgh\",\"abcd\",\"abcdefghijkl\"]}");
    long long want = provider_prompt_estimate(PROVIDER_EMBEDDINGS, est);
    assert_true(want > 0);
    usage = json_object_get(a, "usage");
    assert_int_equal(json_integer_value(json_object_get(usage, "prompt_tokens")), want);
    assert_int_equal(json_integer_value(json_object_get(usage, "total_tokens")), want);
    json_decref(est);
    json_decref(a);

    /* embeddings_by_type: the float vectors. */
    memset(&u, 0, sizeof(u));
    a = embed_answer_of("{\"embeddings\":{\"float\":[[1],[2]]},\"response_type\":"
                        "\"embeddings_by_type\",\"texts\":[\"a\",\"b\"]}",
                        ERR_OK, &u);
    assert_int_equal(json_array_size(json_object_get(a, "data")), 2);
    json_decref(a);

    /* Not an embedding answer: ERR_PROTO; Bedrock's error in a 2xx: ERR_UPSTREAM. */
    static const char *const bad[] = {"[]",
                                      "{}",
                                      "{\"embedding\":\"x\"}",
                                      "{\"embeddings\":[1,2]}",
                                      "{\"embeddings\":{\"int8\":[[1]]}}",
                                      "{\"output\":{\"message\":{\"content\":[]}}}",
                                      "nope"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&u, 0, sizeof(u));
        assert_null(embed_answer_of(bad[i], ERR_PROTO, &u));
        assert_false(u.seen);
    }
    assert_null(embed_answer_of("{\"message\":\"The security token ABSK-CANARY is invalid\"}",
                                ERR_UPSTREAM, &u));
}

int main(void)
{
    if (secret_heap_init(1 << 16) != ERR_OK) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_claude_models),
        cmocka_unit_test(test_build_url_and_key),
        cmocka_unit_test(test_build_iam),
        cmocka_unit_test(test_region),
        cmocka_unit_test(test_request_mapping),
        cmocka_unit_test(test_request_tools),
        cmocka_unit_test(test_request_refused),
        cmocka_unit_test(test_answer_text_and_usage),
        cmocka_unit_test(test_answer_stop_reasons),
        cmocka_unit_test(test_answer_tool_use),
        cmocka_unit_test(test_answer_malformed),
        cmocka_unit_test(test_crc32),
        cmocka_unit_test(test_decoder_whole_split_and_joined),
        cmocka_unit_test(test_decoder_end_and_cancel),
        cmocka_unit_test(test_decoder_refusals),
        cmocka_unit_test(test_decoder_header_limit),
        cmocka_unit_test(test_stream_text_and_usage),
        cmocka_unit_test(test_stream_tool_use),
        cmocka_unit_test(test_stream_errors_and_garbage),
        cmocka_unit_test(test_embed_build_titan),
        cmocka_unit_test(test_embed_build_cohere),
        cmocka_unit_test(test_embed_refused),
        cmocka_unit_test(test_embed_answer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
