/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for the Responses API bridge (agent/responses.c): requests
 * translated to chat (items, tools, text.format, reasoning) or refused with
 * the field named (every stateful and unsupported field, bad types, limits at
 * and past them); chat answers to Responses objects (text, tool calls,
 * incomplete); chat streams to Responses events (order, sequence numbers,
 * tool calls, the cap, failure); every translation under a failing allocator.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/responses.h"
#include "tests/unit/oom.h"

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

/* Translates text; asserts success; returns the chat request (echo in *echo when not NULL). */
static json_t *chat_of(const char *text, json_t **echo)
{
    json_t *r = J(text);
    struct responses_bad bad;
    json_t *chat = NULL, *e = NULL;
    enum err rc = responses_request(r, &bad, &chat, &e);
    if (rc != ERR_OK) {
        fail_msg("refused: %d %s", (int)rc, bad.msg);
    }
    json_decref(r);
    if (echo != NULL) {
        *echo = e;
    } else {
        json_decref(e);
    }
    return chat;
}

static void assert_json(const json_t *got, const char *want)
{
    json_t *w = J(want);
    if (!json_equal(got, w)) {
        char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
        char *x = json_dumps(w, JSON_COMPACT | JSON_SORT_KEYS);
        fprintf(stderr, "got  %s\nwant %s\n", g, x);
        free(g);
        free(x);
        json_decref(w);
        fail();
    }
    json_decref(w);
}

static void test_request_string_input(void **state)
{
    (void)state;
    json_t *echo = NULL;
    json_t *chat =
        chat_of("{\"model\":\"openai/gpt-4o\",\"input\":\"hi\",\"instructions\":\"be brief\","
                "\"max_output_tokens\":7,\"temperature\":0.5,\"top_p\":0.9,\"user\":\"u1\","
                "\"store\":true,\"metadata\":{\"k\":\"v\"},\"stream\":true,"
                "\"service_tier\":\"flex\",\"truncation\":\"disabled\",\"include\":[],"
                "\"stream_options\":{\"include_obfuscation\":false},\"background\":false,"
                "\"previous_response_id\":null}",
                &echo);
    assert_json(chat, "{\"model\":\"openai/gpt-4o\",\"messages\":[{\"role\":\"system\",\"content\":"
                      "\"be brief\"},{\"role\":\"user\",\"content\":\"hi\"}],"
                      "\"max_completion_tokens\":7,\"temperature\":0.5,\"top_p\":0.9,"
                      "\"user\":\"u1\",\"stream\":true,\"service_tier\":\"flex\"}");
    assert_json(echo, "{\"instructions\":\"be brief\",\"max_output_tokens\":7,\"temperature\":0.5,"
                      "\"top_p\":0.9,\"user\":\"u1\",\"model\":\"openai/gpt-4o\",\"metadata\":"
                      "{\"k\":\"v\"},\"parallel_tool_calls\":true,\"tool_choice\":\"auto\","
                      "\"tools\":[],\"text\":{\"format\":{\"type\":\"text\"}},\"reasoning\":"
                      "{\"effort\":null,\"summary\":null}}");
    json_decref(chat);
    json_decref(echo);
}

/* Items: messages of every role and part, function calls joined to the assistant turn, outputs. */
static void test_request_items(void **state)
{
    (void)state;
    json_t *chat = chat_of(
        "{\"input\":[{\"role\":\"developer\",\"content\":\"dev\"},"
        "{\"type\":\"message\",\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":"
        "\"look\"},{\"type\":\"input_image\",\"image_url\":\"data:image/png;base64,AAAA\","
        "\"detail\":\"low\"},{\"type\":\"input_image\",\"image_url\":\"https://x/y.png\"}]},"
        "{\"type\":\"reasoning\",\"id\":\"rs_1\",\"summary\":[]},"
        "{\"type\":\"message\",\"id\":\"msg_1\",\"status\":\"completed\",\"role\":\"assistant\","
        "\"content\":[{\"type\":\"output_text\",\"text\":\"let me\",\"annotations\":[]}]},"
        "{\"type\":\"function_call\",\"id\":\"fc_1\",\"call_id\":\"c1\",\"name\":\"f\","
        "\"arguments\":\"{\\\"a\\\":1}\"},"
        "{\"type\":\"function_call\",\"call_id\":\"c2\",\"name\":\"g\",\"arguments\":\"{}\"},"
        "{\"type\":\"function_call_output\",\"call_id\":\"c1\",\"output\":\"r1\"},"
        "{\"type\":\"function_call_output\",\"call_id\":\"c2\",\"output\":[{\"type\":"
        "\"input_text\",\"text\":\"r2\"}]},"
        "{\"type\":\"function_call\",\"call_id\":\"c3\",\"name\":\"h\",\"arguments\":\"\"}]}",
        NULL);
    assert_json(
        json_object_get(chat, "messages"),
        "[{\"role\":\"developer\",\"content\":\"dev\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"look\"},{\"type\":"
        "\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,AAAA\",\"detail\":\"low\"}},"
        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"https://x/y.png\"}}]},"
        "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"let me\"}],"
        "\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"f\","
        "\"arguments\":\"{\\\"a\\\":1}\"}},{\"id\":\"c2\",\"type\":\"function\",\"function\":"
        "{\"name\":\"g\",\"arguments\":\"{}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"r1\"},"
        "{\"role\":\"tool\",\"tool_call_id\":\"c2\",\"content\":[{\"type\":\"text\",\"text\":"
        "\"r2\"}]},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c3\",\"type\":"
        "\"function\",\"function\":{\"name\":\"h\",\"arguments\":\"\"}}]}]");
    json_decref(chat);
}

static void test_request_tools_and_formats(void **state)
{
    (void)state;
    json_t *echo = NULL;
    json_t *chat = chat_of(
        "{\"input\":\"x\",\"tools\":[{\"type\":\"function\",\"name\":\"get\",\"description\":"
        "\"d\",\"parameters\":{\"type\":\"object\"},\"strict\":true},{\"type\":\"function\","
        "\"name\":\"now\"}],\"tool_choice\":{\"type\":\"function\",\"name\":\"get\"},"
        "\"parallel_tool_calls\":false,\"text\":{\"format\":{\"type\":\"json_schema\",\"name\":"
        "\"s\",\"schema\":{\"type\":\"object\"},\"strict\":true,\"description\":\"dd\"},"
        "\"verbosity\":\"low\"},\"reasoning\":{\"effort\":\"high\",\"summary\":\"auto\"}}",
        &echo);
    json_object_del(chat, "messages");
    assert_json(chat, "{\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get\","
                      "\"description\":\"d\",\"parameters\":{\"type\":\"object\"},\"strict\":"
                      "true}},{\"type\":\"function\",\"function\":{\"name\":\"now\"}}],"
                      "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"get\"}},"
                      "\"parallel_tool_calls\":false,\"verbosity\":\"low\",\"response_format\":"
                      "{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"s\",\"schema\":"
                      "{\"type\":\"object\"},\"strict\":true,\"description\":\"dd\"}},"
                      "\"reasoning_effort\":\"high\"}");
    /* The echo keeps the Responses shapes the app sent. */
    assert_json(json_object_get(echo, "tool_choice"), "{\"type\":\"function\",\"name\":\"get\"}");
    assert_json(json_object_get(echo, "text"),
                "{\"format\":{\"type\":\"json_schema\",\"name\":\"s\",\"schema\":{\"type\":"
                "\"object\"},\"strict\":true,\"description\":\"dd\"},\"verbosity\":\"low\"}");
    assert_json(json_object_get(echo, "reasoning"), "{\"effort\":\"high\",\"summary\":null}");
    json_decref(chat);
    json_decref(echo);

    chat = chat_of("{\"input\":\"x\",\"text\":{\"format\":{\"type\":\"json_object\"}},"
                   "\"tool_choice\":\"required\",\"parallel_tool_calls\":true}",
                   NULL);
    /* No tools: neither tool_choice nor parallel_tool_calls goes (chat refuses them alone). */
    json_object_del(chat, "messages");
    assert_json(chat, "{\"response_format\":{\"type\":\"json_object\"}}");
    json_decref(chat);
    chat =
        chat_of("{\"input\":\"x\",\"text\":{\"format\":{\"type\":\"text\"}},\"tools\":[]}", NULL);
    json_object_del(chat, "messages");
    assert_json(chat, "{}");
    json_decref(chat);
}

/* Every refused request: the field named, code, nothing built. */
static void test_request_refused(void **state)
{
    (void)state;
    static const struct {
        const char *req;
        const char *param;
        const char *code;
    } cases[] = {
        {"{\"input\":\"x\",\"previous_response_id\":\"resp_1\"}", "previous_response_id",
         "unsupported_parameter"},
        {"{\"input\":\"x\",\"conversation\":\"conv_1\"}", "conversation", "unsupported_parameter"},
        {"{\"input\":\"x\",\"conversation\":{\"id\":\"conv_1\"}}", "conversation",
         "unsupported_parameter"},
        {"{\"input\":\"x\",\"background\":true}", "background", "unsupported_parameter"},
        {"{\"input\":\"x\",\"prompt\":{\"id\":\"pmpt_1\"}}", "prompt", "unsupported_parameter"},
        {"{\"input\":\"x\",\"include\":[\"reasoning.encrypted_content\"]}", "include",
         "unsupported_parameter"},
        {"{\"input\":\"x\",\"include\":\"x\"}", "include", "invalid_type"},
        {"{\"input\":\"x\",\"truncation\":\"auto\"}", "truncation", "unsupported_parameter"},
        {"{\"input\":\"x\",\"max_tool_calls\":3}", "max_tool_calls", "unsupported_parameter"},
        {"{\"input\":\"x\",\"top_logprobs\":3}", "top_logprobs", "unsupported_parameter"},
        {"{\"input\":\"x\",\"tools\":[{\"type\":\"web_search\"}]}", "tools",
         "unsupported_parameter"},
        {"{\"input\":\"x\",\"tools\":[{\"type\":\"function\",\"name\":\"f\"},{\"type\":"
         "\"file_search\",\"vector_store_ids\":[]}]}",
         "tools", "unsupported_parameter"},
        {"{\"input\":\"x\",\"tools\":[{\"type\":\"code_interpreter\"}]}", "tools",
         "unsupported_parameter"},
        {"{\"input\":\"x\",\"tools\":[{\"type\":\"mcp\",\"server_label\":\"s\"}]}", "tools",
         "unsupported_parameter"},
        {"{\"input\":\"x\",\"tools\":[{\"type\":\"computer_use_preview\"}]}", "tools",
         "unsupported_parameter"},
        {"{\"input\":\"x\",\"tools\":{}}", "tools", "invalid_type"},
        {"{\"input\":\"x\",\"tools\":[{\"type\":\"function\"}]}", "tools[0].name", "invalid_type"},
        {"{\"input\":\"x\",\"tools\":[{\"type\":\"function\",\"name\":\"f\",\"parameters\":1}]}",
         "tools[0].parameters", "invalid_type"},
        {"{\"input\":\"x\",\"tools\":[{\"type\":\"function\",\"name\":\"f\",\"strict\":1}]}",
         "tools[0].strict", "invalid_type"},
        {"{\"input\":\"x\",\"tool_choice\":\"sometimes\"}", "tool_choice", "invalid_value"},
        {"{\"input\":\"x\",\"tool_choice\":{\"type\":\"file_search\"}}", "tool_choice",
         "unsupported_parameter"},
        {"{\"input\":\"x\",\"tool_choice\":{\"type\":\"function\"}}", "tool_choice.name",
         "invalid_type"},
        {"{}", "input", "missing_required_parameter"},
        {"{\"input\":[]}", "input", "invalid_type"},
        {"{\"input\":5}", "input", "invalid_type"},
        {"{\"input\":[5]}", "input[0]", "invalid_type"},
        {"{\"input\":[{\"role\":\"tool\",\"content\":\"x\"}]}", "input[0].role", "invalid_value"},
        {"{\"input\":[{\"role\":\"user\",\"content\":5}]}", "input[0].content", "invalid_type"},
        {"{\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_file\",\"file_id\":"
         "\"f\"}]}]}",
         "input[0].content[0].type", "unsupported_parameter"},
        {"{\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\"}]}]}",
         "input[0].content[0].type", "unsupported_parameter"},
        {"{\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_image\",\"file_id\":"
         "\"f\"}]}]}",
         "input[0].content[0].file_id", "unsupported_parameter"},
        {"{\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_image\"}]}]}",
         "input[0].content[0].image_url", "invalid_type"},
        {"{\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_image\",\"image_url\":"
         "\"https://x\",\"detail\":\"huge\"}]}]}",
         "input[0].content[0].detail", "invalid_value"},
        {"{\"input\":[{\"role\":\"system\",\"content\":[{\"type\":\"input_image\",\"image_url\":"
         "\"https://x\"}]}]}",
         "input[0].content[0].type", "invalid_value"},
        {"{\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_text\"}]}]}",
         "input[0].content[0].text", "invalid_type"},
        {"{\"input\":[{\"role\":\"user\",\"content\":\"a\"},{\"type\":\"item_reference\","
         "\"id\":\"msg_1\"}]}",
         "input[1].type", "unsupported_parameter"},
        {"{\"input\":[{\"type\":\"web_search_call\",\"id\":\"ws\"}]}", "input[0].type",
         "unsupported_parameter"},
        {"{\"input\":[{\"type\":\"function_call\",\"name\":\"f\",\"arguments\":\"{}\"}]}",
         "input[0].call_id", "invalid_type"},
        {"{\"input\":[{\"type\":\"function_call\",\"call_id\":\"c\",\"arguments\":\"{}\"}]}",
         "input[0].name", "invalid_type"},
        {"{\"input\":[{\"type\":\"function_call\",\"call_id\":\"c\",\"name\":\"f\","
         "\"arguments\":{}}]}",
         "input[0].arguments", "invalid_type"},
        {"{\"input\":[{\"type\":\"function_call_output\",\"output\":\"r\"}]}", "input[0].call_id",
         "invalid_type"},
        {"{\"input\":[{\"type\":\"function_call_output\",\"call_id\":\"c\",\"output\":5}]}",
         "input[0].output", "invalid_type"},
        {"{\"input\":[{\"type\":\"function_call_output\",\"call_id\":\"c\",\"output\":[{\"type\":"
         "\"input_image\"}]}]}",
         "input[0].output[0]", "unsupported_parameter"},
        {"{\"input\":[{\"type\":\"reasoning\",\"summary\":[]}]}", "input", "invalid_value"},
        {"{\"input\":\"x\",\"instructions\":5}", "instructions", "invalid_type"},
        {"{\"input\":\"x\",\"model\":5}", "model", "invalid_type"},
        {"{\"input\":\"x\",\"stream\":\"yes\"}", "stream", "invalid_type"},
        {"{\"input\":\"x\",\"store\":1}", "store", "invalid_type"},
        {"{\"input\":\"x\",\"parallel_tool_calls\":1}", "parallel_tool_calls", "invalid_type"},
        {"{\"input\":\"x\",\"temperature\":3}", "temperature", "invalid_value"},
        {"{\"input\":\"x\",\"temperature\":\"hot\"}", "temperature", "invalid_value"},
        {"{\"input\":\"x\",\"top_p\":1.5}", "top_p", "invalid_value"},
        {"{\"input\":\"x\",\"max_output_tokens\":0}", "max_output_tokens", "invalid_value"},
        {"{\"input\":\"x\",\"max_output_tokens\":100000001}", "max_output_tokens", "invalid_value"},
        {"{\"input\":\"x\",\"max_output_tokens\":1.5}", "max_output_tokens", "invalid_value"},
        {"{\"input\":\"x\",\"user\":5}", "user", "invalid_type"},
        {"{\"input\":\"x\",\"metadata\":[]}", "metadata", "invalid_type"},
        {"{\"input\":\"x\",\"metadata\":{\"k\":1}}", "metadata", "invalid_value"},
        {"{\"input\":\"x\",\"text\":5}", "text", "invalid_type"},
        {"{\"input\":\"x\",\"text\":{\"format\":{\"type\":\"xml\"}}}", "text.format.type",
         "invalid_value"},
        {"{\"input\":\"x\",\"text\":{\"format\":{}}}", "text.format", "invalid_type"},
        {"{\"input\":\"x\",\"text\":{\"format\":{\"type\":\"json_schema\",\"schema\":{}}}}",
         "text.format.name", "invalid_type"},
        {"{\"input\":\"x\",\"text\":{\"format\":{\"type\":\"json_schema\",\"name\":\"n\"}}}",
         "text.format.schema", "invalid_type"},
        {"{\"input\":\"x\",\"text\":{\"format\":{\"type\":\"json_schema\",\"name\":\"n\","
         "\"schema\":{},\"strict\":\"yes\"}}}",
         "text.format.strict", "invalid_type"},
        {"{\"input\":\"x\",\"text\":{\"verbosity\":\"loud\"}}", "text.verbosity", "invalid_value"},
        {"{\"input\":\"x\",\"reasoning\":5}", "reasoning", "invalid_type"},
        {"{\"input\":\"x\",\"reasoning\":{\"effort\":\"max\"}}", "reasoning.effort",
         "invalid_value"},
        {"{\"input\":\"x\",\"stream_options\":5}", "stream_options", "invalid_type"},
        {"{\"input\":\"x\",\"messages\":[]}", "messages", "unsupported_parameter"},
        {"{\"input\":\"x\",\"max_tokens\":5}", "max_tokens", "unsupported_parameter"},
        {"{\"input\":\"x\",\"max_completion_tokens\":5}", "max_completion_tokens",
         "unsupported_parameter"},
        {"{\"input\":\"x\",\"response_format\":{}}", "response_format", "unsupported_parameter"},
        {"{\"input\":\"x\",\"reasoning_effort\":\"low\"}", "reasoning_effort",
         "unsupported_parameter"},
        {"{\"input\":\"x\",\"n\":2}", "n", "unsupported_parameter"},
        {"{\"input\":\"x\",\"functions\":[]}", "functions", "unsupported_parameter"},
        {"{\"input\":\"x\",\"verbosity\":\"low\"}", "verbosity", "unsupported_parameter"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *r = J(cases[i].req);
        struct responses_bad bad;
        json_t *chat = NULL, *echo = NULL;
        enum err e = responses_request(r, &bad, &chat, &echo);
        json_decref(r);
        if (e != ERR_INVAL || strcmp(bad.param, cases[i].param) != 0 ||
            strcmp(bad.code, cases[i].code) != 0) {
            fail_msg("case %zu (%s): err %d param '%s' code '%s', want '%s' '%s'", i, cases[i].req,
                     (int)e, bad.param, e == ERR_INVAL ? bad.code : "", cases[i].param,
                     cases[i].code);
        }
        assert_null(chat);
        assert_null(echo);
        /* The message names the field and holds nothing of the request's values. */
        assert_int_equal(strncmp(bad.msg, bad.param, strlen(bad.param)), 0);
    }
}

/* Limits: at the limit accepted, one past it refused. */
static void test_request_limits(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        size_t limit;
        const char *param;
    } lims[] = {{"items", RESPONSES_MAX_ITEMS, "input"},
                {"parts", RESPONSES_MAX_PARTS, "input[0].content"},
                {"tools", RESPONSES_MAX_TOOLS, "tools"},
                {"metadata", RESPONSES_MAX_METADATA, "metadata"},
                {"name", PROVIDER_MAX_TOOL_NAME, "tools[0].name"},
                {"key", RESPONSES_MAX_METADATA_KEY, "metadata"},
                {"value", RESPONSES_MAX_METADATA_VALUE, "metadata"},
                {"schema", RESPONSES_MAX_SCHEMA_NAME, "text.format.name"}};
    for (size_t l = 0; l < sizeof(lims) / sizeof(lims[0]); l++) {
        for (size_t n = lims[l].limit; n <= lims[l].limit + 1; n++) {
            json_t *r = json_pack("{s:s}", "input", "x");
            char *s = calloc(1, n + 1);
            assert_non_null(s);
            memset(s, 'a', n);
            if (strcmp(lims[l].what, "items") == 0) {
                json_t *a = json_array();
                for (size_t i = 0; i < n; i++) {
                    json_array_append_new(a,
                                          json_pack("{s:s,s:s}", "role", "user", "content", "x"));
                }
                json_object_set_new(r, "input", a);
            } else if (strcmp(lims[l].what, "parts") == 0) {
                json_t *a = json_array();
                for (size_t i = 0; i < n; i++) {
                    json_array_append_new(
                        a, json_pack("{s:s,s:s}", "type", "input_text", "text", "x"));
                }
                json_object_set_new(r, "input",
                                    json_pack("[{s:s,s:o}]", "role", "user", "content", a));
            } else if (strcmp(lims[l].what, "tools") == 0) {
                json_t *a = json_array();
                for (size_t i = 0; i < n; i++) {
                    json_array_append_new(a,
                                          json_pack("{s:s,s:s}", "type", "function", "name", "f"));
                }
                json_object_set_new(r, "tools", a);
            } else if (strcmp(lims[l].what, "metadata") == 0) {
                json_t *m = json_object();
                for (size_t i = 0; i < n; i++) {
                    char k[16];
                    snprintf(k, sizeof(k), "k%u", (unsigned)i);
                    json_object_set_new(m, k, json_string("v"));
                }
                json_object_set_new(r, "metadata", m);
            } else if (strcmp(lims[l].what, "name") == 0) {
                json_object_set_new(r, "tools",
                                    json_pack("[{s:s,s:s}]", "type", "function", "name", s));
            } else if (strcmp(lims[l].what, "key") == 0) {
                json_object_set_new(r, "metadata", json_pack("{s:s}", s, "v"));
            } else if (strcmp(lims[l].what, "value") == 0) {
                json_object_set_new(r, "metadata", json_pack("{s:s}", "k", s));
            } else {
                json_object_set_new(r, "text",
                                    json_pack("{s:{s:s,s:s,s:{}}}", "format", "type", "json_schema",
                                              "name", s, "schema"));
            }
            struct responses_bad bad;
            json_t *chat = NULL, *echo = NULL;
            enum err e = responses_request(r, &bad, &chat, &echo);
            if (n == lims[l].limit && e != ERR_OK) {
                fail_msg("%s at the limit %zu refused: %s", lims[l].what, n, bad.msg);
            }
            if (n > lims[l].limit && (e != ERR_INVAL || strcmp(bad.param, lims[l].param) != 0)) {
                fail_msg("%s past the limit: err %d param %s", lims[l].what, (int)e, bad.param);
            }
            json_decref(chat);
            json_decref(echo);
            json_decref(r);
            free(s);
        }
    }
}

/* ---- answers -------------------------------------------------------------------------------- */

static const struct provider_usage USAGE = {
    .prompt_tokens = 11, .completion_tokens = 7, .cached_tokens = 3, .seen = true};

static json_t *answer_of(const char *echo_req, const char *chat_text, enum err want)
{
    json_t *echo = NULL;
    json_t *chat = chat_of(echo_req, &echo);
    json_decref(chat);
    json_t *ans = J(chat_text);
    json_t *out = NULL;
    enum err e = responses_answer(echo, ans, &USAGE, "resp_0123", 1700000000, "fallback", &out);
    assert_int_equal(e, want);
    json_decref(ans);
    json_decref(echo);
    return out;
}

static void test_answer_text(void **state)
{
    (void)state;
    json_t *o = answer_of("{\"input\":\"x\",\"instructions\":\"i\",\"metadata\":{\"a\":\"b\"},"
                          "\"max_output_tokens\":50}",
                          "{\"id\":\"c\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,"
                          "\"message\":{\"role\":\"assistant\",\"content\":\"hello\"},"
                          "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":11,"
                          "\"completion_tokens\":7,\"completion_tokens_details\":"
                          "{\"reasoning_tokens\":2}}}",
                          ERR_OK);
    assert_json(
        o, "{\"id\":\"resp_0123\",\"object\":\"response\",\"created_at\":1700000000,\"status\":"
           "\"completed\",\"background\":false,\"error\":null,\"incomplete_details\":null,"
           "\"instructions\":\"i\",\"max_output_tokens\":50,\"max_tool_calls\":null,\"model\":"
           "\"gpt-4o-mini\",\"output\":[{\"id\":\"msg_0123\",\"type\":\"message\",\"status\":"
           "\"completed\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":"
           "\"hello\",\"annotations\":[],\"logprobs\":[]}]}],\"previous_response_id\":null,"
           "\"parallel_tool_calls\":true,\"reasoning\":{\"effort\":null,\"summary\":null},"
           "\"metadata\":{\"a\":\"b\"},\"temperature\":null,\"text\":{\"format\":{\"type\":"
           "\"text\"}},\"tool_choice\":\"auto\",\"tools\":[],\"top_p\":null,\"user\":null,"
           "\"store\":false,\"truncation\":\"disabled\",\"usage\":{\"input_tokens\":11,"
           "\"input_tokens_details\":{\"cached_tokens\":3},\"output_tokens\":7,"
           "\"output_tokens_details\":{\"reasoning_tokens\":2},\"total_tokens\":18}}");
    json_decref(o);
}

static void test_answer_tool_calls_and_incomplete(void **state)
{
    (void)state;
    json_t *o = answer_of(
        "{\"input\":\"x\",\"tools\":[{\"type\":\"function\",\"name\":\"f\"}]}",
        "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":"
        "[{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":"
        "\"{\\\"a\\\":1}\"}},{\"id\":\"call_2\",\"type\":\"function\",\"function\":{\"name\":"
        "\"g\",\"arguments\":\"{}\"}}]},\"finish_reason\":\"tool_calls\"}]}",
        ERR_OK);
    assert_string_equal(json_string_value(json_object_get(o, "model")), "fallback");
    assert_string_equal(json_string_value(json_object_get(o, "status")), "completed");
    assert_json(json_object_get(o, "output"),
                "[{\"id\":\"fc_0123_0\",\"type\":\"function_call\",\"status\":\"completed\","
                "\"call_id\":\"call_1\",\"name\":\"f\",\"arguments\":\"{\\\"a\\\":1}\"},"
                "{\"id\":\"fc_0123_1\",\"type\":\"function_call\",\"status\":\"completed\","
                "\"call_id\":\"call_2\",\"name\":\"g\",\"arguments\":\"{}\"}]");
    assert_json(json_object_get(o, "tools"), "[{\"type\":\"function\",\"name\":\"f\"}]");
    json_decref(o);

    static const struct {
        const char *finish;
        const char *reason;
    } cut[] = {{"length", "max_output_tokens"}, {"content_filter", "content_filter"}};
    for (size_t i = 0; i < 2; i++) {
        char ans[256];
        snprintf(ans, sizeof(ans),
                 "{\"choices\":[{\"message\":{\"content\":\"par\"},\"finish_reason\":\"%s\"}]}",
                 cut[i].finish);
        o = answer_of("{\"input\":\"x\"}", ans, ERR_OK);
        assert_string_equal(json_string_value(json_object_get(o, "status")), "incomplete");
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(o, "incomplete_details"), "reason")),
            cut[i].reason);
        assert_string_equal(json_string_value(json_object_get(
                                json_array_get(json_object_get(o, "output"), 0), "status")),
                            "incomplete");
        json_decref(o);
    }
    /* A refusal is its own content part. */
    o = answer_of("{\"input\":\"x\"}",
                  "{\"choices\":[{\"message\":{\"content\":null,\"refusal\":\"no\"},"
                  "\"finish_reason\":\"stop\"}]}",
                  ERR_OK);
    assert_json(json_object_get(json_array_get(json_object_get(o, "output"), 0), "content"),
                "[{\"type\":\"refusal\",\"refusal\":\"no\"}]");
    json_decref(o);
    /* Not an answer. */
    assert_null(answer_of("{\"input\":\"x\"}", "{\"choices\":[]}", ERR_PROTO));
    assert_null(answer_of("{\"input\":\"x\"}",
                          "{\"choices\":[{\"message\":{\"tool_calls\":[{\"function\":{}}]}}]}",
                          ERR_PROTO));
}

/* ---- the stream ----------------------------------------------------------------------------- */

/* The events of an SSE text: their types joined by spaces; checks sequence numbers 0, 1, ... */
static void events_of(const struct buf *out, char *types, size_t n, json_t **last)
{
    types[0] = '\0';
    const char *p = out->data != NULL ? out->data : "";
    long long seq = 0;
    *last = NULL;
    while ((p = strstr(p, "event: ")) != NULL) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl);
        char type[96];
        snprintf(type, sizeof(type), "%.*s", (int)(nl - p - 7), p + 7);
        assert_int_equal(strncmp(nl + 1, "data: ", 6), 0);
        const char *end = strstr(nl + 1, "\n\n");
        assert_non_null(end);
        json_t *j = json_loadb(nl + 7, (size_t)(end - nl - 7), 0, NULL);
        assert_non_null(j);
        assert_string_equal(json_string_value(json_object_get(j, "type")), type);
        assert_int_equal(json_integer_value(json_object_get(j, "sequence_number")), seq);
        seq++;
        json_decref(*last);
        *last = j;
        size_t l = strlen(types);
        snprintf(types + l, n - l, "%s%s", l > 0 ? " " : "", type + 9); /* without "response." */
        p = end + 2;
    }
}

static enum err feed_str(struct responses_stream *s, const char *text, struct buf *out)
{
    return responses_stream_feed(s, text, strlen(text), out);
}

static void test_stream_text(void **state)
{
    (void)state;
    json_t *echo = NULL;
    json_decref(chat_of("{\"input\":\"x\",\"model\":\"auto\",\"stream\":true}", &echo));
    struct responses_stream *s = NULL;
    assert_int_equal(responses_stream_new(echo, "resp_ab", 1, NULL, 1 << 20, &s), ERR_OK);
    struct buf out;
    buf_init(&out, 1 << 22);
    /* Split mid-frame, a role-only chunk, two words, finish, the usage chunk, [DONE]. */
    const char *stream =
        "data: {\"id\":\"c\",\"model\":\"gpt-x\",\"choices\":[{\"index\":0,\"delta\":{\"role\":"
        "\"assistant\",\"content\":\"\"}}]}\n\n"
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n"
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}]}\n\n"
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,"
        "\"completion_tokens_details\":{\"reasoning_tokens\":1}}}\n\n"
        "data: [DONE]\n\n";
    size_t len = strlen(stream);
    for (size_t i = 0; i < len; i += 7) {
        assert_int_equal(responses_stream_feed(s, stream + i, len - i < 7 ? len - i : 7, &out),
                         ERR_OK);
    }
    struct provider_usage u = {.prompt_tokens = 3, .completion_tokens = 2, .seen = true};
    assert_int_equal(responses_stream_finish(s, &u, &out), ERR_OK);
    char types[1024];
    json_t *last = NULL;
    events_of(&out, types, sizeof(types), &last);
    assert_string_equal(types, "created in_progress output_item.added content_part.added "
                               "output_text.delta output_text.delta output_text.done "
                               "content_part.done output_item.done completed");
    json_t *r = json_object_get(last, "response");
    assert_string_equal(json_string_value(json_object_get(r, "status")), "completed");
    assert_string_equal(json_string_value(json_object_get(r, "model")), "gpt-x");
    assert_json(json_object_get(r, "output"),
                "[{\"id\":\"msg_ab\",\"type\":\"message\",\"status\":\"completed\",\"role\":"
                "\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"Hello\","
                "\"annotations\":[],\"logprobs\":[]}]}]");
    assert_json(json_object_get(r, "usage"),
                "{\"input_tokens\":3,\"input_tokens_details\":{\"cached_tokens\":0},"
                "\"output_tokens\":2,\"output_tokens_details\":{\"reasoning_tokens\":1},"
                "\"total_tokens\":5}");
    /* A delta event's fields. */
    const char *d = strstr(out.data, "event: response.output_text.delta\ndata: ");
    assert_non_null(d);
    assert_non_null(strstr(d, "\"item_id\":\"msg_ab\",\"output_index\":0,\"content_index\":0,"
                              "\"delta\":\"Hel\""));
    assert_null(strstr(out.data, "[DONE]"));
    json_decref(last);
    buf_done(&out);
    responses_stream_free(&s);
    assert_null(s);
    responses_stream_free(&s); /* NULL is fine */
    json_decref(echo);
}

static void test_stream_tool_calls_and_incomplete(void **state)
{
    (void)state;
    json_t *echo = NULL;
    json_decref(chat_of("{\"input\":\"x\"}", &echo));
    struct responses_stream *s = NULL;
    assert_int_equal(responses_stream_new(echo, "resp_t", 1, "m", 1 << 20, &s), ERR_OK);
    struct buf out;
    buf_init(&out, 1 << 22);
    assert_int_equal(
        feed_str(s,
                 "data: {\"choices\":[{\"delta\":{\"content\":\"Let me.\"}}]}\n\n"
                 "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\","
                 "\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]}}]}\n\n"
                 "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
                 "{\"arguments\":\"{\\\"a\\\"\"}}]}}]}\n\n"
                 "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_b\","
                 "\"function\":{\"name\":\"g\",\"arguments\":\"{}\"}}]}}]}\n\n"
                 "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
                 "{\"arguments\":\":1}\"}}]}}]}\n\n"
                 "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"length\"}]}\n\n",
                 &out),
        ERR_OK);
    struct provider_usage u = {.prompt_tokens = 1, .completion_tokens = 9, .seen = true};
    assert_int_equal(responses_stream_finish(s, &u, &out), ERR_OK);
    char types[2048];
    json_t *last = NULL;
    events_of(&out, types, sizeof(types), &last);
    assert_string_equal(
        types, "created in_progress output_item.added content_part.added output_text.delta "
               "output_item.added function_call_arguments.delta output_item.added "
               "function_call_arguments.delta function_call_arguments.delta output_text.done "
               "content_part.done output_item.done function_call_arguments.done "
               "output_item.done function_call_arguments.done output_item.done incomplete");
    json_t *r = json_object_get(last, "response");
    assert_string_equal(json_string_value(json_object_get(r, "status")), "incomplete");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(r, "incomplete_details"), "reason")),
        "max_output_tokens");
    assert_string_equal(json_string_value(json_object_get(r, "model")), "m");
    assert_json(json_object_get(r, "output"),
                "[{\"id\":\"msg_t\",\"type\":\"message\",\"status\":\"incomplete\",\"role\":"
                "\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"Let me.\","
                "\"annotations\":[],\"logprobs\":[]}]},"
                "{\"id\":\"fc_t_0\",\"type\":\"function_call\",\"status\":\"incomplete\","
                "\"call_id\":\"call_a\",\"name\":\"f\",\"arguments\":\"{\\\"a\\\":1}\"},"
                "{\"id\":\"fc_t_1\",\"type\":\"function_call\",\"status\":\"incomplete\","
                "\"call_id\":\"call_b\",\"name\":\"g\",\"arguments\":\"{}\"}]");
    assert_non_null(strstr(out.data, "\"type\":\"response.function_call_arguments.done\","));
    json_decref(last);
    buf_done(&out);
    responses_stream_free(&s);
    json_decref(echo);
}

/* A refusal streamed: its own content part after the text, refusal.delta and refusal.done. */
static void test_stream_refusal(void **state)
{
    (void)state;
    json_t *echo = NULL;
    json_decref(chat_of("{\"input\":\"x\"}", &echo));
    struct responses_stream *s = NULL;
    assert_int_equal(responses_stream_new(echo, "resp_r", 1, "m", 1024, &s), ERR_OK);
    struct buf out;
    buf_init(&out, 1 << 20);
    assert_int_equal(feed_str(s,
                              "data: {\"choices\":[{\"delta\":{\"content\":\"I\"}}]}\n\n"
                              "data: {\"choices\":[{\"delta\":{\"refusal\":\"can't \"}}]}\n\n"
                              "data: {\"choices\":[{\"delta\":{\"refusal\":\"help\"},"
                              "\"finish_reason\":\"stop\"}]}\n\n",
                              &out),
                     ERR_OK);
    struct provider_usage u = {0};
    assert_int_equal(responses_stream_finish(s, &u, &out), ERR_OK);
    char types[1024];
    json_t *last = NULL;
    events_of(&out, types, sizeof(types), &last);
    assert_string_equal(types, "created in_progress output_item.added content_part.added "
                               "output_text.delta content_part.added refusal.delta refusal.delta "
                               "output_text.done content_part.done refusal.done content_part.done "
                               "output_item.done completed");
    assert_non_null(strstr(out.data, "\"type\":\"response.refusal.done\",\"sequence_number\":10,"
                                     "\"item_id\":\"msg_r\",\"output_index\":0,\"content_index\":1,"
                                     "\"refusal\":\"can't help\""));
    assert_json(json_object_get(
                    json_array_get(json_object_get(json_object_get(last, "response"), "output"), 0),
                    "content"),
                "[{\"type\":\"output_text\",\"text\":\"I\",\"annotations\":[],\"logprobs\":[]},"
                "{\"type\":\"refusal\",\"refusal\":\"can't help\"}]");
    json_decref(last);
    buf_done(&out);
    responses_stream_free(&s);
    json_decref(echo);
}

/* The cap on held text: at it accepted, past it ERR_TOOBIG, the events before it kept whole. */
static void test_stream_cap_and_failure(void **state)
{
    (void)state;
    json_t *echo = NULL;
    json_decref(chat_of("{\"input\":\"x\"}", &echo));
    for (size_t extra = 0; extra <= 1; extra++) {
        struct responses_stream *s = NULL;
        assert_int_equal(responses_stream_new(echo, "resp_c", 1, NULL, 8, &s), ERR_OK);
        struct buf out;
        buf_init(&out, 1 << 20);
        assert_int_equal(
            feed_str(s, "data: {\"choices\":[{\"delta\":{\"content\":\"abcd\"}}]}\n\n", &out),
            ERR_OK);
        size_t before = out.len;
        char frame[128];
        snprintf(frame, sizeof(frame), "data: {\"choices\":[{\"delta\":{\"content\":\"%s\"}}]}\n\n",
                 extra ? "efghi" : "efgh");
        enum err e = feed_str(s, frame, &out);
        if (extra == 0) {
            assert_int_equal(e, ERR_OK);
        } else {
            assert_int_equal(e, ERR_TOOBIG);
            assert_int_equal(out.len, before); /* nothing of the failing frame */
            /* Broken: nothing more is taken; the failure still ends the stream. */
            assert_int_equal(feed_str(s, "data: {\"choices\":[]}\n\n", &out), ERR_PROTO);
            struct provider_usage u = {0};
            assert_int_equal(responses_stream_fail(s, "response_too_large", "too large", &u, &out),
                             ERR_OK);
            char types[1024];
            json_t *last = NULL;
            events_of(&out, types, sizeof(types), &last);
            assert_string_equal(types, "created in_progress output_item.added "
                                       "content_part.added output_text.delta failed");
            json_t *r = json_object_get(last, "response");
            assert_string_equal(json_string_value(json_object_get(r, "status")), "failed");
            assert_json(json_object_get(r, "error"),
                        "{\"code\":\"response_too_large\",\"message\":\"too large\"}");
            assert_string_equal(json_string_value(json_object_get(
                                    json_array_get(json_object_get(r, "output"), 0), "status")),
                                "incomplete");
            json_decref(last);
        }
        buf_done(&out);
        responses_stream_free(&s);
    }
    /* A frame adding a tool call, then failing past the cap: the call is taken back. */
    {
        struct responses_stream *s = NULL;
        assert_int_equal(responses_stream_new(echo, "resp_c", 1, NULL, 4, &s), ERR_OK);
        struct buf out;
        buf_init(&out, 1 << 20);
        assert_int_equal(feed_str(s,
                                  "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,"
                                  "\"id\":\"a\",\"function\":{\"name\":\"f\",\"arguments\":"
                                  "\"{}\"}},{\"index\":1,\"id\":\"b\",\"function\":{\"name\":"
                                  "\"g\",\"arguments\":\"{123}\"}}]}}]}\n\n",
                                  &out),
                         ERR_TOOBIG);
        assert_int_equal(out.len, 0);
        struct provider_usage u = {0};
        assert_int_equal(responses_stream_fail(s, "response_too_large", "m", &u, &out), ERR_OK);
        char types[256];
        json_t *last = NULL;
        events_of(&out, types, sizeof(types), &last);
        assert_string_equal(types, "created in_progress failed");
        json_decref(last);
        buf_done(&out);
        responses_stream_free(&s);
    }
    /* Not a chunk; a tool call without a name; an empty stream still completes. */
    static const char *const bad[] = {
        "data: {nope\n\n", "data: [1]\n\n",
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":"
        "[{\"index\":0,\"function\":{\"arguments\":\"{}\"}}]}}]}\n\n"};
    for (size_t i = 0; i < 3; i++) {
        struct responses_stream *s = NULL;
        assert_int_equal(responses_stream_new(echo, "resp_c", 1, NULL, 1024, &s), ERR_OK);
        struct buf out;
        buf_init(&out, 1 << 20);
        assert_int_equal(feed_str(s, bad[i], &out), ERR_PROTO);
        /* What the failing frame announced (response.created) was taken back: sent now. */
        assert_int_equal(out.len, 0);
        struct provider_usage u = {0};
        assert_int_equal(responses_stream_fail(s, "stream_parse_error", "m", &u, &out), ERR_OK);
        char types[256];
        json_t *last = NULL;
        events_of(&out, types, sizeof(types), &last);
        assert_string_equal(types, "created in_progress failed");
        assert_int_equal(
            json_array_size(json_object_get(json_object_get(last, "response"), "output")), 0);
        json_decref(last);
        buf_done(&out);
        responses_stream_free(&s);
    }
    struct responses_stream *s = NULL;
    assert_int_equal(responses_stream_new(echo, "resp_c", 1, NULL, 1024, &s), ERR_OK);
    struct buf out;
    buf_init(&out, 1 << 20);
    struct provider_usage u = {0};
    assert_int_equal(responses_stream_finish(s, &u, &out), ERR_OK);
    char types[256];
    json_t *last = NULL;
    events_of(&out, types, sizeof(types), &last);
    assert_string_equal(types, "created in_progress completed");
    json_decref(last);
    buf_done(&out);
    responses_stream_free(&s);
    /* An id longer than the limit is refused. */
    char id[RESPONSES_MAX_ID + 2];
    memset(id, 'a', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    assert_int_equal(responses_stream_new(echo, id, 1, NULL, 1024, &s), ERR_INVAL);
    json_decref(echo);
}

/* ---- out of memory -------------------------------------------------------------------------- */

/*
 * Every translation with its n-th JSON allocation failing, for each n until
 * one runs without reaching it: an error or the whole result, never a part
 * of it, and no leak (LeakSanitizer in the ASan build).
 */
static void test_out_of_memory(void **state)
{
    (void)state;
    json_t *req = J(
        "{\"model\":\"m\",\"instructions\":\"i\",\"metadata\":{\"a\":\"b\"},\"input\":[{\"role\":"
        "\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"t\"},{\"type\":\"input_image\","
        "\"image_url\":\"https://x\"}]},{\"type\":\"function_call\",\"call_id\":\"c\",\"name\":"
        "\"f\",\"arguments\":\"{}\"},{\"type\":\"function_call_output\",\"call_id\":\"c\","
        "\"output\":\"r\"}],\"tools\":[{\"type\":\"function\",\"name\":\"f\",\"parameters\":{}}],"
        "\"tool_choice\":{\"type\":\"function\",\"name\":\"f\"},\"text\":{\"format\":{\"type\":"
        "\"json_schema\",\"name\":\"n\",\"schema\":{}}},\"reasoning\":{\"effort\":\"low\"},"
        "\"max_output_tokens\":9,\"stream\":true,\"seed\":1}");
    json_t *ans = J("{\"model\":\"x\",\"choices\":[{\"message\":{\"content\":\"hi\",\"tool_calls\":"
                    "[{\"id\":\"c\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},"
                    "\"finish_reason\":\"tool_calls\"}]}");
    const char *stream =
        "data: {\"model\":\"x\",\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n"
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":"
        "\"c\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},"
        "\"finish_reason\":\"tool_calls\"}]}\n\n";
    json_t *ref_chat = NULL, *ref_echo = NULL, *ref_resp = NULL;
    char *ref_events = NULL;
    for (long n = 0; n < 100000; n++) {
        oom_fired = false;
        oom_countdown = n;
        json_set_alloc_funcs(oom_malloc, free);
        struct responses_bad bad;
        json_t *chat = NULL, *echo = NULL, *resp = NULL;
        enum err e1 = responses_request(req, &bad, &chat, &echo);
        enum err e2 =
            e1 == ERR_OK ? responses_answer(echo, ans, &USAGE, "resp_x", 1, "m", &resp) : ERR_NOMEM;
        struct buf out;
        buf_init(&out, 1 << 20);
        struct responses_stream *s = NULL;
        enum err e3 =
            e1 == ERR_OK ? responses_stream_new(echo, "resp_x", 1, NULL, 4096, &s) : ERR_NOMEM;
        if (e3 == ERR_OK) {
            e3 = feed_str(s, stream, &out);
        }
        if (e3 == ERR_OK) {
            e3 = responses_stream_finish(s, &USAGE, &out);
        }
        responses_stream_free(&s);
        json_set_alloc_funcs(malloc, free);
        oom_countdown = 0;
        if (n == 0) {
            assert_int_equal(e1, ERR_OK);
            assert_int_equal(e2, ERR_OK);
            assert_int_equal(e3, ERR_OK);
            ref_chat = chat;
            ref_echo = echo;
            ref_resp = resp;
            ref_events = strdup(out.data);
            buf_done(&out);
            continue;
        }
        assert_true(e1 == ERR_OK || e1 == ERR_NOMEM || e1 == ERR_INVAL);
        assert_true(e2 == ERR_OK || e2 == ERR_NOMEM || e2 == ERR_PROTO);
        assert_true(e3 == ERR_OK || e3 == ERR_NOMEM || e3 == ERR_PROTO);
        if (e1 == ERR_OK) {
            assert_true(json_equal(chat, ref_chat));
            assert_true(json_equal(echo, ref_echo));
        }
        if (e2 == ERR_OK && !json_equal(resp, ref_resp)) {
            char *g = json_dumps(resp, JSON_COMPACT);
            fprintf(stderr, "n=%ld got %s\n", n, g);
            free(g);
            fail();
        }
        if (e3 == ERR_OK) {
            assert_string_equal(out.data, ref_events);
        }
        json_decref(chat);
        json_decref(echo);
        json_decref(resp);
        buf_done(&out);
        if (!oom_fired) {
            assert_int_equal(e1, ERR_OK);
            assert_int_equal(e2, ERR_OK);
            assert_int_equal(e3, ERR_OK);
            break;
        }
    }
    assert_false(oom_fired);
    json_decref(ref_chat);
    json_decref(ref_echo);
    json_decref(ref_resp);
    free(ref_events);
    json_decref(req);
    json_decref(ans);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_string_input),
        cmocka_unit_test(test_request_items),
        cmocka_unit_test(test_request_tools_and_formats),
        cmocka_unit_test(test_request_refused),
        cmocka_unit_test(test_request_limits),
        cmocka_unit_test(test_answer_text),
        cmocka_unit_test(test_answer_tool_calls_and_incomplete),
        cmocka_unit_test(test_stream_text),
        cmocka_unit_test(test_stream_tool_calls_and_incomplete),
        cmocka_unit_test(test_stream_refusal),
        cmocka_unit_test(test_stream_cap_and_failure),
        cmocka_unit_test(test_out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
