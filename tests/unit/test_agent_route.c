/* SPDX-License-Identifier: MPL-2.0 */
/* Unit tests for agent/route (model classification, auto/bare planning) and provider request
 * building. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <jansson.h>
#include <string.h>

#include "agent/config.h"
#include "agent/providers.h"
#include "agent/route.h"
#include "common/secret.h"

static json_t *J(const char *text)
{
    json_t *j = json_loads(text, 0, NULL);
    assert_non_null(j);
    return j;
}

static const char *const names[] = {"openai", "anthropic", "mistral", "openrouter"};
static const struct config_strlist plist = {(char **)names, 4};

static void test_classify(void **state)
{
    (void)state;
    enum route_kind k;
    struct route_candidate c;
    assert_int_equal(route_classify("auto", &plist, &k, &c), ERR_OK);
    assert_int_equal(k, ROUTE_AUTO);
    assert_int_equal(route_classify("openai/gpt-4o", &plist, &k, &c), ERR_OK);
    assert_int_equal(k, ROUTE_EXPLICIT);
    assert_string_equal(c.provider, "openai");
    assert_string_equal(c.model, "gpt-4o");
    /* Only the first slash splits: OpenRouter model ids contain slashes. */
    assert_int_equal(route_classify("openrouter/meta-llama/llama-3-8b", &plist, &k, &c), ERR_OK);
    assert_int_equal(k, ROUTE_EXPLICIT);
    assert_string_equal(c.model, "meta-llama/llama-3-8b");
    /* A prefix that is not a configured provider is part of a bare model name. */
    assert_int_equal(route_classify("meta-llama/llama-3-8b", &plist, &k, &c), ERR_OK);
    assert_int_equal(k, ROUTE_BARE);
    assert_string_equal(c.model, "meta-llama/llama-3-8b");
    assert_int_equal(route_classify("gpt-4o", &plist, &k, &c), ERR_OK);
    assert_int_equal(k, ROUTE_BARE);
    assert_int_equal(route_classify("", &plist, &k, &c), ERR_INVAL);
    assert_int_equal(route_classify("bad\nmodel", &plist, &k, &c), ERR_INVAL);
    char m[ROUTE_MAX_MODEL + 2];
    memset(m, 'm', ROUTE_MAX_MODEL);
    m[ROUTE_MAX_MODEL] = '\0';
    assert_int_equal(route_classify(m, &plist, &k, &c), ERR_OK); /* at the limit */
    m[ROUTE_MAX_MODEL] = 'm';
    m[ROUTE_MAX_MODEL + 1] = '\0';
    assert_int_equal(route_classify(m, &plist, &k, &c), ERR_INVAL); /* one past */
}

struct fixture {
    json_t *settings, *openai, *anthropic, *mistral;
    struct route_view views[3];
};

static int fx_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    f->settings = J("{\"preferred_providers\":[\"anthropic\"],\"fallback_providers\":[\"mistral\"],"
                    "\"budget_tier\":\"MEDIUM\",\"allowed_task_types\":[]}");
    f->openai =
        J("{\"default_model\":\"gpt-4o-mini\",\"models\":["
          "{\"name\":\"gpt-4o\",\"capabilities\":[\"chat\",\"code\",\"vision\"],\"tier\":\"HIGH\","
          "\"input_per_1m\":2.5,\"output_per_1m\":10},"
          "{\"name\":\"gpt-4o-mini\",\"capabilities\":[\"chat\"],\"tier\":\"LOW\","
          "\"input_per_1m\":0.15,\"output_per_1m\":0.6},"
          "{\"name\":\"text-embedding-3-small\",\"capabilities\":[\"embedding\"],\"tier\":\"FREE\","
          "\"input_per_1m\":0.02,\"output_per_1m\":0}]}");
    f->anthropic =
        J("{\"default_model\":\"claude-opus\",\"models\":["
          "{\"name\":\"claude-opus\",\"capabilities\":[\"chat\",\"code\"],\"tier\":\"HIGH\","
          "\"input_per_1m\":15,\"output_per_1m\":75},"
          "{\"name\":\"claude-haiku\",\"capabilities\":[\"chat\",\"code\"],\"tier\":\"LOW\","
          "\"input_per_1m\":0.8,\"output_per_1m\":4},"
          "{\"name\":\"claude-sonnet\",\"capabilities\":[\"chat\",\"code\"],\"tier\":\"MEDIUM\","
          "\"input_per_1m\":3,\"output_per_1m\":15}]}");
    f->mistral = J(
        "{\"default_model\":\"mistral-small\",\"models\":["
        "{\"name\":\"mistral-small\",\"tier\":\"LOW\",\"input_per_1m\":0.2,\"output_per_1m\":0.6},"
        "{\"name\":\"gpt-4o\",\"capabilities\":[\"chat\"],\"tier\":\"LOW\"}]}");
    f->views[0] = (struct route_view){"openai", f->openai, f->settings};
    f->views[1] = (struct route_view){"anthropic", f->anthropic, f->settings};
    f->views[2] = (struct route_view){"mistral", f->mistral, f->settings};
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fixture *f = *state;
    json_decref(f->settings);
    json_decref(f->openai);
    json_decref(f->anthropic);
    json_decref(f->mistral);
    free(f);
    return 0;
}

static void test_auto_order_and_models(void **state)
{
    struct fixture *f = *state;
    struct route_candidate out[ROUTE_MAX_CANDIDATES];
    size_t n = 0;
    struct route_want w = {"auto", NULL, NULL, PROVIDER_CHAT};
    assert_int_equal(route_plan(ROUTE_AUTO, &w, f->views, 3, out, &n), ERR_OK);
    assert_int_equal(n, 3);
    /* preferred, then fallback, then the rest */
    assert_string_equal(out[0].provider, "anthropic");
    assert_string_equal(out[1].provider, "mistral");
    assert_string_equal(out[2].provider, "openai");
    /* default_model claude-opus is HIGH, above the tenant's MEDIUM: the cheapest fitting model */
    assert_string_equal(out[0].model, "claude-haiku");
    assert_string_equal(out[1].model, "mistral-small");
    assert_string_equal(out[2].model, "gpt-4o-mini");
}

static void test_auto_task_and_tier(void **state)
{
    struct fixture *f = *state;
    struct route_candidate out[ROUTE_MAX_CANDIDATES];
    size_t n = 0;
    struct route_want w = {"auto", "code", "LOW", PROVIDER_CHAT};
    assert_int_equal(route_plan(ROUTE_AUTO, &w, f->views, 3, out, &n), ERR_OK);
    assert_string_equal(out[0].model, "claude-haiku");
    /* mistral-small has no capabilities list: chat only, so the code task falls back to chat */
    assert_string_equal(out[1].model, "mistral-small");
    /* openai: gpt-4o has code but is HIGH; falls back to the chat model */
    assert_string_equal(out[2].model, "gpt-4o-mini");
    /* A header cannot raise the tier above the tenant's. */
    struct route_want hi = {"auto", "vision", "HIGH", PROVIDER_CHAT};
    assert_int_equal(route_plan(ROUTE_AUTO, &hi, f->views, 3, out, &n), ERR_OK);
    assert_string_equal(out[2].model, "gpt-4o-mini");
    struct route_want emb = {"auto", NULL, NULL, PROVIDER_EMBEDDINGS};
    assert_int_equal(route_plan(ROUTE_AUTO, &emb, f->views, 3, out, &n), ERR_OK);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].model, "text-embedding-3-small");
    struct route_want badtier = {"auto", NULL, "PLATINUM", PROVIDER_CHAT};
    assert_int_equal(route_plan(ROUTE_AUTO, &badtier, f->views, 3, out, &n), ERR_INVAL);
    struct route_want badtask = {"auto", "juggling", NULL, PROVIDER_CHAT};
    assert_int_equal(route_plan(ROUTE_AUTO, &badtask, f->views, 3, out, &n), ERR_INVAL);
}

static void test_allowed_tasks(void **state)
{
    struct fixture *f = *state;
    json_object_set_new(f->settings, "allowed_task_types", json_pack("[s]", "chat"));
    struct route_candidate out[ROUTE_MAX_CANDIDATES];
    size_t n = 0;
    struct route_want w = {"auto", "code", NULL, PROVIDER_CHAT};
    assert_int_equal(route_plan(ROUTE_AUTO, &w, f->views, 3, out, &n), ERR_DENIED);
    w.task = "chat";
    assert_int_equal(route_plan(ROUTE_AUTO, &w, f->views, 3, out, &n), ERR_OK);
    json_object_set_new(f->settings, "allowed_task_types", json_array());
}

static void test_bare_model(void **state)
{
    struct fixture *f = *state;
    struct route_candidate out[ROUTE_MAX_CANDIDATES];
    size_t n = 0;
    struct route_want w = {"gpt-4o", NULL, NULL, PROVIDER_CHAT};
    assert_int_equal(route_plan(ROUTE_BARE, &w, f->views, 3, out, &n), ERR_OK);
    /* Every provider listing the model, in preference order (mistral is the fallback). */
    assert_int_equal(n, 2);
    assert_string_equal(out[0].provider, "mistral");
    assert_string_equal(out[1].provider, "openai");
    w.model = "no-such-model";
    assert_int_equal(route_plan(ROUTE_BARE, &w, f->views, 3, out, &n), ERR_NOTFOUND);
    assert_int_equal(route_plan(ROUTE_AUTO, &w, f->views, 0, out, &n), ERR_NOTFOUND);
}

/* ---- provider request building ---- */

static const char *find_header(const struct curl_slist *l, const char *prefix)
{
    for (; l != NULL; l = l->next) {
        if (strncasecmp(l->data, prefix, strlen(prefix)) == 0) {
            return l->data;
        }
    }
    return NULL;
}

/* A catalog model without a usable name (empty, too long) is never a candidate. */
static void test_unnamed_models_skipped(void **state)
{
    (void)state;
    char longname[ROUTE_MAX_MODEL + 2];
    memset(longname, 'm', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    json_t *entry = json_pack("{s:s,s:[{s:s,s:f},{s:s,s:f},{s:s,s:f}]}", "default_model", "",
                              "models", "name", "", "input_per_1m", 0.0, "name", longname,
                              "input_per_1m", 0.0, "name", "ok-model", "input_per_1m", 5.0);
    json_t *settings = json_object();
    assert_non_null(entry);
    struct route_view v = {"openai", entry, settings};
    struct route_want w = {.model = "auto", .op = PROVIDER_CHAT};
    struct route_candidate out[ROUTE_MAX_CANDIDATES];
    size_t n = 0;
    assert_int_equal(route_plan(ROUTE_AUTO, &w, &v, 1, out, &n), ERR_OK);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].model, "ok-model");
    /* Asked for by name, an empty one is not found either. */
    struct route_want bare = {.model = "", .op = PROVIDER_CHAT};
    assert_int_equal(route_plan(ROUTE_BARE, &bare, &v, 1, out, &n), ERR_NOTFOUND);
    json_decref(settings);
    json_decref(entry);
}

static void test_build_requests(void **state)
{
    (void)state;
    struct secret *key = secret_from("sk-CANARY-build", 15);
    assert_non_null(key);
    json_t *req = J("{\"model\":\"openai/gpt-4o\",\"stream\":true,\"messages\":[{\"role\":\"user\","
                    "\"content\":\"hi\"}]}");
    json_t *entry = J("{\"api_style\":\"openai\",\"base_url\":\"https://api.openai.com/v1/\"}");
    struct provider_call pc = {PROVIDER_CHAT, req, "gpt-4o", true, entry, NULL, key, 100};
    struct provider_http h;
    memset(&h, 0, sizeof(h));
    assert_int_equal(provider_find("openai")->build(&pc, &h), ERR_OK);
    assert_string_equal(h.url, "https://api.openai.com/v1/chat/completions");
    assert_false(h.allow_http);
    assert_string_equal(find_header(h.headers, "Authorization:"),
                        "Authorization: Bearer sk-CANARY-build");
    json_t *body = json_loads(h.body, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(body, "model")), "gpt-4o");
    assert_true(
        json_is_true(json_object_get(json_object_get(body, "stream_options"), "include_usage")));
    json_decref(body);
    provider_http_done(&h);

    /* http is refused unless the catalog marks the provider local */
    json_t *plain = J("{\"base_url\":\"http://127.0.0.1:11434/v1\"}");
    pc.entry = plain;
    memset(&h, 0, sizeof(h));
    assert_int_equal(provider_find("openai")->build(&pc, &h), ERR_CONFIG);
    provider_http_done(&h);
    json_object_set_new(plain, "local", json_true());
    memset(&h, 0, sizeof(h));
    assert_int_equal(provider_find("openai")->build(&pc, &h), ERR_OK);
    assert_true(h.allow_http);
    provider_http_done(&h);

    /* Azure: deployment map from metadata (a JSON object sent as a string), api-key header. */
    json_t *az = J("{\"base_url\":\"https://r.openai.azure.com\"}");
    json_t *md =
        J("{\"api_version\":\"2024-06-01\",\"deployment\":\"{\\\"gpt-4o\\\":\\\"dep-4o\\\"}\"}");
    pc.entry = az;
    pc.metadata = md;
    memset(&h, 0, sizeof(h));
    assert_int_equal(provider_find("azure")->build(&pc, &h), ERR_OK);
    assert_string_equal(h.url,
                        "https://r.openai.azure.com/openai/deployments/dep-4o/chat/completions"
                        "?api-version=2024-06-01");
    assert_non_null(find_header(h.headers, "api-key: sk-CANARY-build"));
    assert_null(find_header(h.headers, "Authorization:"));
    provider_http_done(&h);
    /* A deployment name that would leave its URL segment is refused. */
    json_object_set_new(md, "deployment", json_string("../../x?y"));
    memset(&h, 0, sizeof(h));
    assert_int_equal(provider_find("azure")->build(&pc, &h), ERR_CONFIG);
    provider_http_done(&h);

    /* Anthropic: x-api-key, version header, Messages URL; embeddings unsupported. */
    json_t *an = J("{\"base_url\":\"https://api.anthropic.com/v1\"}");
    pc.entry = an;
    pc.metadata = NULL;
    memset(&h, 0, sizeof(h));
    assert_int_equal(provider_find("anthropic")->build(&pc, &h), ERR_OK);
    assert_string_equal(h.url, "https://api.anthropic.com/v1/messages");
    assert_non_null(find_header(h.headers, "x-api-key: sk-CANARY-build"));
    assert_non_null(find_header(h.headers, "anthropic-version: 2023-06-01"));
    provider_http_done(&h);
    pc.op = PROVIDER_EMBEDDINGS;
    memset(&h, 0, sizeof(h));
    assert_int_equal(provider_find("anthropic")->build(&pc, &h), ERR_UNSUPPORTED);
    provider_http_done(&h);
    assert_null(provider_find("bedrock"));
    assert_null(provider_find(NULL));

    json_decref(an);
    json_decref(az);
    json_decref(md);
    json_decref(plain);
    json_decref(entry);
    json_decref(req);
    secret_free(&key);
}

static void test_cost(void **state)
{
    (void)state;
    json_t *e = J("{\"models\":[{\"name\":\"m\",\"input_per_1m\":2.0,\"output_per_1m\":8.0}]}");
    struct provider_usage u = {1000000, 500000, 0, true};
    assert_true(provider_cost(e, "m", &u) == 6.0);
    assert_true(provider_cost(e, "other", &u) == 0.0);
    json_decref(e);
}

int main(void)
{
    if (secret_heap_init(1 << 16) != ERR_OK) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify),
        cmocka_unit_test_setup_teardown(test_auto_order_and_models, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_auto_task_and_tier, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_allowed_tasks, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_bare_model, fx_setup, fx_teardown),
        cmocka_unit_test(test_unnamed_models_skipped),
        cmocka_unit_test(test_build_requests),
        cmocka_unit_test(test_cost),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
