/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for agent/provider_error: every provider's error shape read,
 * identifiers kept only when they are identifiers, a key (or a part of it)
 * quoted by the provider redacted, control characters and bad UTF-8
 * cleaned, long messages cut between characters, and bodies that hold no
 * message (not JSON, too large, empty) giving none.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/provider_error.h"

#define CANARY "sk-proj-CANARYabcdefghijklmnopqrstuvwxyz0123456789"

static const struct provider_secret key[] = {{CANARY, sizeof(CANARY) - 1}};

static struct provider_error pe;

static bool parse(const char *body)
{
    return provider_error_parse(body, strlen(body), key, 1, &pe);
}

static void test_shapes(void **state)
{
    (void)state;
    /* OpenAI, Azure */
    assert_true(parse("{\"error\":{\"message\":\"This model's maximum context length is 128000 "
                      "tokens.\",\"type\":\"invalid_request_error\",\"param\":\"messages\","
                      "\"code\":\"context_length_exceeded\"}}"));
    assert_string_equal(pe.message, "This model's maximum context length is 128000 tokens.");
    assert_string_equal(pe.type, "invalid_request_error");
    assert_string_equal(pe.code, "context_length_exceeded");
    assert_string_equal(pe.param, "messages");
    /* Anthropic */
    assert_true(parse("{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\","
                      "\"message\":\"prompt is too long: 215000 tokens > 200000 maximum\"}}"));
    assert_string_equal(pe.message, "prompt is too long: 215000 tokens > 200000 maximum");
    assert_string_equal(pe.type, "invalid_request_error");
    assert_string_equal(pe.code, "");
    /* Gemini / Vertex, also inside an array; the numeric code is not kept */
    assert_true(parse("[{\"error\":{\"code\":400,\"message\":\"Invalid JSON payload received.\","
                      "\"status\":\"INVALID_ARGUMENT\"}}]"));
    assert_string_equal(pe.message, "Invalid JSON payload received.");
    assert_string_equal(pe.type, "INVALID_ARGUMENT");
    assert_string_equal(pe.code, "");
    /* Ollama, LM Studio */
    assert_true(parse("{\"error\":\"model 'llama9' not found, try pulling it first\"}"));
    assert_string_equal(pe.message, "model 'llama9' not found, try pulling it first");
    /* Cohere, Bedrock, vLLM */
    assert_true(parse("{\"message\":\"invalid request: message must not be empty\"}"));
    assert_string_equal(pe.message, "invalid request: message must not be empty");
    assert_true(parse("{\"object\":\"error\",\"message\":\"max_tokens is too large\","
                      "\"type\":\"BadRequestError\",\"param\":null,\"code\":400}"));
    assert_string_equal(pe.message, "max_tokens is too large");
    assert_string_equal(pe.type, "BadRequestError");
    assert_string_equal(pe.code, "");
    /* FastAPI */
    assert_true(parse("{\"detail\":\"Not Found\"}"));
    assert_string_equal(pe.message, "Not Found");
    assert_true(parse("{\"detail\":[{\"loc\":[\"body\",\"messages\"],\"msg\":\"field required\","
                      "\"type\":\"value_error.missing\"}]}"));
    assert_string_equal(pe.message, "field required");
}

static void test_no_message(void **state)
{
    (void)state;
    static const char *const bodies[] = {
        "",
        "not json",
        "<html><body>Bad Gateway</body></html>",
        "{}",
        "{\"error\":{}}",
        "{\"error\":{\"message\":\"\"}}",
        "{\"error\":{\"message\":\"   \\n\\t \"}}",
        "{\"error\":{\"message\":42}}",
        "{\"message\":[\"a\"]}",
        "[]",
        "\"just a string\"",
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        memset(&pe, 'x', sizeof(pe));
        assert_false(parse(bodies[i]));
        assert_string_equal(pe.message, "");
        assert_string_equal(pe.type, "");
        assert_string_equal(pe.code, "");
        assert_string_equal(pe.param, "");
    }
    /* Too large to be an error answer: not read. */
    size_t n = PROVIDER_ERROR_MAX_BODY + 100;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, ' ', n);
    memcpy(big, "{\"error\":\"x\"}", 13);
    big[n] = '\0';
    assert_false(provider_error_parse(big, n, key, 1, &pe));
    free(big);
    assert_false(provider_error_parse(NULL, 0, key, 1, &pe));
}

static void test_identifiers(void **state)
{
    (void)state;
    assert_true(parse("{\"error\":{\"message\":\"m\",\"type\":\"has space\",\"code\":"
                      "\"x\\r\\nSet-Cookie: a=b\",\"param\":\"messages[0].content\"}}"));
    assert_string_equal(pe.type, "");
    assert_string_equal(pe.code, "");
    assert_string_equal(pe.param, "");
    char body[256];
    snprintf(body, sizeof(body), "{\"error\":{\"message\":\"m\",\"code\":\"%065d\"}}", 0);
    assert_true(parse(body));
    assert_string_equal(pe.code, "");
    /* An identifier holding 24 bytes of the key is not kept; 23 are (see test_no_oracle). */
    assert_true(parse("{\"error\":{\"message\":\"m\",\"code\":\"CANARYabcdefghijklmnopqr\"}}"));
    assert_string_equal(pe.code, "");
    assert_true(parse("{\"error\":{\"message\":\"m\",\"code\":\"CANARYabcdefghijklmnopq\"}}"));
    assert_string_equal(pe.code, "CANARYabcdefghijklmnopq");
}

static void test_redaction(void **state)
{
    (void)state;
    /* The whole key, quoted. */
    assert_true(parse("{\"error\":{\"message\":\"Incorrect API key provided: " CANARY
                      ". You can find your API key at https://platform.openai.com.\"}}"));
    assert_null(strstr(pe.message, "CANARY"));
    assert_string_equal(pe.message, "Incorrect API key provided: [redacted]. You can find your "
                                    "API key at https://platform.openai.com.");
    /* 24 bytes of it or more, cut short by a mask. */
    assert_true(parse("{\"error\":{\"message\":\"key sk-proj-CANARYabcdefghijklmnop****6789 "
                      "refused\"}}"));
    assert_null(strstr(pe.message, "CANARY"));
    assert_string_equal(pe.message, "key [redacted]****6789 refused");
    /* Escaped in JSON: matched on the decoded text. */
    assert_true(parse("{\"message\":\"\\u0073k-proj-CANARYabcdefghijklmnop\"}"));
    assert_string_equal(pe.message, "[redacted]");
    /* Several secrets (a key and an access token). */
    static const struct provider_secret two[] = {{CANARY, sizeof(CANARY) - 1},
                                                 {"ya29.TOKENxyz123", 16}};
    const char *b = "{\"error\":\"bad token ya29.TOKENxyz123 for " CANARY "\"}";
    assert_true(provider_error_parse(b, strlen(b), two, 2, &pe));
    assert_string_equal(pe.message, "bad token [redacted] for [redacted]");
    /* No secrets given: nothing redacted. */
    b = "{\"error\":\"quoted " CANARY "\"}";
    assert_true(provider_error_parse(b, strlen(b), NULL, 0, &pe));
    assert_non_null(strstr(pe.message, "CANARY"));
}

/*
 * No oracle: an app that sends a guessed fragment of the key (which the
 * provider repeats, "Unrecognized request argument supplied: <it>") gets
 * the same answer whether the guess is right or not, for every fragment
 * shorter than 24 bytes: it cannot slide a window along the key.
 */
static void test_no_oracle(void **state)
{
    (void)state;
    const char *k = CANARY;
    size_t klen = strlen(k);
    for (size_t n = 1; n < PROVIDER_ERROR_MIN_SECRET; n++) {
        for (size_t at = 0; at + n <= klen; at++) {
            char frag[PROVIDER_ERROR_MIN_SECRET + 1], body[256], want[256];
            memcpy(frag, k + at, n);
            frag[n] = '\0';
            snprintf(body, sizeof(body),
                     "{\"error\":{\"message\":\"Unrecognized request argument supplied: %s\","
                     "\"param\":\"%s\"}}",
                     frag, frag);
            assert_true(parse(body));
            snprintf(want, sizeof(want), "Unrecognized request argument supplied: %s", frag);
            assert_string_equal(pe.message, want);
            assert_string_equal(pe.param, frag);
        }
    }
    /* A short secret (an access token under 24 bytes) is redacted whole. */
    static const struct provider_secret tok[] = {{"ya29.short-token", 16}};
    const char *b = "{\"error\":\"bad ya29.short-token and ya29.short\"}";
    assert_true(provider_error_parse(b, strlen(b), tok, 1, &pe));
    assert_string_equal(pe.message, "bad [redacted] and ya29.short");
}

static void test_cleaning(void **state)
{
    (void)state;
    /* Control characters (a header injection too) become one space; runs of space collapse. */
    assert_true(parse("{\"error\":\"line one\\r\\nX-Injected: 1\\u0000\\tend  \"}"));
    assert_string_equal(pe.message, "line one X-Injected: 1 end");
    /* Bad UTF-8 becomes U+FFFD; good multi-byte text stays. */
    char out[PROVIDER_ERROR_MAX_MESSAGE + 4];
    provider_error_clean("caf\xc3\xa9 \xff ok", 10, NULL, 0, out);
    assert_string_equal(out, "caf\xc3\xa9 \xef\xbf\xbd ok");
    /* Long: cut at PROVIDER_ERROR_MAX_MESSAGE bytes between characters, then an ellipsis. */
    char longtext[3000];
    for (size_t i = 0; i + 2 < sizeof(longtext); i += 2) {
        memcpy(longtext + i, "\xc3\xa9", 2);
    }
    longtext[sizeof(longtext) - 1] = '\0';
    provider_error_clean(longtext, strlen(longtext), NULL, 0, out);
    assert_int_equal(strlen(out), PROVIDER_ERROR_MAX_MESSAGE + 3);
    assert_memory_equal(out + PROVIDER_ERROR_MAX_MESSAGE, "\xe2\x80\xa6", 3);
    /* A key past the part that is shown is still never shown (it is cut off). */
    char tail[4096];
    memset(tail, 'a', sizeof(tail));
    memcpy(tail + 3000, CANARY, sizeof(CANARY) - 1);
    tail[sizeof(tail) - 1] = '\0';
    provider_error_clean(tail, strlen(tail), key, 1, out);
    assert_null(strstr(out, "CANARY"));
    /* A key across the cut at PROVIDER_ERROR_MAX_MESSAGE: neither half shown. */
    memset(tail, 'b', sizeof(tail));
    memcpy(tail + PROVIDER_ERROR_MAX_MESSAGE - 10, CANARY, sizeof(CANARY) - 1);
    tail[sizeof(tail) - 1] = '\0';
    provider_error_clean(tail, strlen(tail), key, 1, out);
    assert_null(strstr(out, "sk-proj"));
    assert_null(strstr(out, "CANARY"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shapes),      cmocka_unit_test(test_no_message),
        cmocka_unit_test(test_identifiers), cmocka_unit_test(test_redaction),
        cmocka_unit_test(test_no_oracle),   cmocka_unit_test(test_cleaning),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
