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
#include <limits.h>
#include <math.h>
#include <string.h>

#include "agent/config.h"
#include "agent/latency.h"
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
    /* The plugin's usage ledger takes printable ASCII without spaces as model names. */
    assert_int_equal(route_classify("openai/my model", &plist, &k, &c), ERR_INVAL);
    assert_int_equal(route_classify("mod\xc3\xa8le", &plist, &k, &c), ERR_INVAL);
    assert_int_equal(route_classify("tab\tmodel", &plist, &k, &c), ERR_INVAL);
    char m[ROUTE_MAX_MODEL + 2];
    memset(m, 'm', ROUTE_MAX_MODEL);
    m[ROUTE_MAX_MODEL] = '\0';
    assert_int_equal(route_classify(m, &plist, &k, &c), ERR_OK); /* at the limit */
    m[ROUTE_MAX_MODEL] = 'm';
    m[ROUTE_MAX_MODEL + 1] = '\0';
    assert_int_equal(route_classify(m, &plist, &k, &c), ERR_INVAL); /* one past */
    /* The same limit for the model part of <provider>/<model>. */
    char e[sizeof("openai/") + ROUTE_MAX_MODEL + 1];
    snprintf(e, sizeof(e), "openai/%.*s", ROUTE_MAX_MODEL, m);
    assert_int_equal(route_classify(e, &plist, &k, &c), ERR_OK);
    assert_int_equal(k, ROUTE_EXPLICIT);
    assert_int_equal(strlen(c.model), ROUTE_MAX_MODEL);
    snprintf(e, sizeof(e), "openai/%.*s", ROUTE_MAX_MODEL + 1, m);
    assert_int_equal(route_classify(e, &plist, &k, &c), ERR_INVAL);
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
    f->views[0] = (struct route_view){"openai", f->openai, f->settings, NULL};
    f->views[1] = (struct route_view){"anthropic", f->anthropic, f->settings, NULL};
    f->views[2] = (struct route_view){"mistral", f->mistral, f->settings, NULL};
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
    enum route_refusal why;
    struct route_want w = {"auto", NULL, NULL, PROVIDER_CHAT, 0, 0, 0, ROUTE_ORDERED, 0, NULL};
    assert_int_equal(route_plan(ROUTE_AUTO, &w, f->views, 3, out, &n, &why), ERR_OK);
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
    enum route_refusal why;
    struct route_want w = {"auto", "code", "LOW", PROVIDER_CHAT, 0, 0, 0, ROUTE_ORDERED, 0, NULL};
    assert_int_equal(route_plan(ROUTE_AUTO, &w, f->views, 3, out, &n, &why), ERR_OK);
    assert_string_equal(out[0].model, "claude-haiku");
    /* mistral-small has no capabilities list: chat only, so the code task falls back to chat */
    assert_string_equal(out[1].model, "mistral-small");
    /* openai: gpt-4o has code but is HIGH; falls back to the chat model */
    assert_string_equal(out[2].model, "gpt-4o-mini");
    /* A header cannot raise the tier above the tenant's. */
    struct route_want hi = {"auto", "vision",      "HIGH", PROVIDER_CHAT, 0, 0,
                            0,      ROUTE_ORDERED, 0,      NULL};
    assert_int_equal(route_plan(ROUTE_AUTO, &hi, f->views, 3, out, &n, &why), ERR_OK);
    assert_string_equal(out[2].model, "gpt-4o-mini");
    struct route_want emb = {"auto",        NULL, NULL, PROVIDER_EMBEDDINGS, 0, 0, 0,
                             ROUTE_ORDERED, 0,    NULL};
    assert_int_equal(route_plan(ROUTE_AUTO, &emb, f->views, 3, out, &n, &why), ERR_OK);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].model, "text-embedding-3-small");
    struct route_want badtier = {"auto", NULL,          "PLATINUM", PROVIDER_CHAT, 0, 0,
                                 0,      ROUTE_ORDERED, 0,          NULL};
    assert_int_equal(route_plan(ROUTE_AUTO, &badtier, f->views, 3, out, &n, &why), ERR_INVAL);
    struct route_want badtask = {"auto", "juggling",    NULL, PROVIDER_CHAT, 0, 0,
                                 0,      ROUTE_ORDERED, 0,    NULL};
    assert_int_equal(route_plan(ROUTE_AUTO, &badtask, f->views, 3, out, &n, &why), ERR_INVAL);
}

/*
 * The cheapest strategy: candidates by the call's estimated cost at catalog
 * prices (prompt estimate at the input price, max_tokens or default_output
 * at the output price), each provider's cheapest fitting model rather than
 * its default, equal costs in the tenant's order; the strategy names.
 */
static void test_cheapest(void **state)
{
    struct fixture *f = *state;
    struct route_candidate out[ROUTE_MAX_CANDIDATES];
    size_t n = 0;
    enum route_refusal why;
    json_object_set_new(f->settings, "budget_tier", json_string("HIGH"));
    struct route_want w = {"auto", NULL, NULL,          PROVIDER_CHAT, 1000,
                           0,      0,    ROUTE_ORDERED, 1000,          NULL};
    assert_int_equal(route_plan(ROUTE_AUTO, &w, f->views, 3, out, &n, &why), ERR_OK);
    assert_int_equal(n, 3);
    /* ordered: the tenant's order, each provider's default_model */
    assert_string_equal(out[0].provider, "anthropic");
    assert_string_equal(out[0].model, "claude-opus");
    assert_string_equal(out[1].provider, "mistral");
    assert_string_equal(out[2].provider, "openai");
    assert_string_equal(out[2].model, "gpt-4o-mini");
    w.strategy = ROUTE_CHEAPEST;
    assert_int_equal(route_plan(ROUTE_AUTO, &w, f->views, 3, out, &n, &why), ERR_OK);
    assert_int_equal(n, 3);
    /* mistral's gpt-4o lists no price (0: its cheapest, not its default mistral-small) <
       gpt-4o-mini 0.15+0.6 < claude-haiku 0.8+4 (per 1M each way) */
    assert_string_equal(out[0].provider, "mistral");
    assert_string_equal(out[0].model, "gpt-4o");
    assert_string_equal(out[1].provider, "openai");
    assert_string_equal(out[1].model, "gpt-4o-mini");
    assert_string_equal(out[2].provider, "anthropic");
    assert_string_equal(out[2].model, "claude-haiku"); /* not its default, claude-opus */

    /* The request decides: a long prompt favours the cheap input, a long answer the cheap output.
     */
    json_t *a = J("{\"models\":[{\"name\":\"in-cheap\",\"input_per_1m\":1,\"output_per_1m\":10}]}");
    json_t *b = J("{\"models\":[{\"name\":\"out-cheap\",\"input_per_1m\":5,\"output_per_1m\":2}]}");
    struct route_view v[2] = {{"pa", a, f->settings, NULL}, {"pb", b, f->settings, NULL}};
    struct route_want lp = {"auto", NULL, NULL,           PROVIDER_CHAT, 1000,
                            100,    0,    ROUTE_CHEAPEST, 4096,          NULL};
    assert_int_equal(route_plan(ROUTE_AUTO, &lp, v, 2, out, &n, &why), ERR_OK);
    assert_string_equal(out[0].provider, "pa"); /* 1000 + 1000 < 5000 + 200 */
    struct route_want la = {"auto", NULL,           NULL, PROVIDER_CHAT, 100, 1000,
                            0,      ROUTE_CHEAPEST, 0,    NULL};
    assert_int_equal(route_plan(ROUTE_AUTO, &la, v, 2, out, &n, &why), ERR_OK);
    assert_string_equal(out[0].provider, "pb"); /* 100 + 10000 > 500 + 2000 */
    /* No max_tokens: the output is priced at default_output. */
    la.max_output = 0;
    la.default_output = 1000;
    assert_int_equal(route_plan(ROUTE_AUTO, &la, v, 2, out, &n, &why), ERR_OK);
    assert_string_equal(out[0].provider, "pb");
    la.default_output = 0;
    assert_int_equal(route_plan(ROUTE_AUTO, &la, v, 2, out, &n, &why), ERR_OK);
    assert_string_equal(out[0].provider, "pa"); /* the prompt alone */
    /* Equal costs (local models, no price) keep the tenant's order. */
    json_t *z = J("{\"models\":[{\"name\":\"m\"}]}");
    struct route_view zv[3] = {
        {"z1", z, f->settings, NULL}, {"z2", z, f->settings, NULL}, {"z3", z, f->settings, NULL}};
    assert_int_equal(route_plan(ROUTE_AUTO, &lp, zv, 3, out, &n, &why), ERR_OK);
    assert_int_equal(n, 3);
    assert_string_equal(out[0].provider, "z1");
    assert_string_equal(out[1].provider, "z2");
    assert_string_equal(out[2].provider, "z3");
    json_decref(a);
    json_decref(b);
    json_decref(z);

    /* A bare model name: the same model at different prices. */
    json_object_set_new(f->settings, "budget_tier", json_string("UNLIMITED"));
    struct route_want bare = {"gpt-4o", NULL,           NULL, PROVIDER_CHAT, 10, 10,
                              0,        ROUTE_CHEAPEST, 0,    NULL};
    assert_int_equal(route_plan(ROUTE_BARE, &bare, f->views, 3, out, &n, &why), ERR_OK);
    assert_int_equal(n, 2);
    assert_string_equal(out[0].provider, "mistral"); /* no price listed: 0 */
    assert_string_equal(out[1].provider, "openai");
    /* Embeddings are priced by their input alone. */
    struct route_want emb = {"auto",         NULL, NULL, PROVIDER_EMBEDDINGS, 10, 0, 0,
                             ROUTE_CHEAPEST, 4096, NULL};
    assert_int_equal(route_plan(ROUTE_AUTO, &emb, f->views, 3, out, &n, &why), ERR_OK);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].model, "text-embedding-3-small");
    json_object_set_new(f->settings, "budget_tier", json_string("MEDIUM"));

    enum route_strategy st = ROUTE_FASTEST;
    assert_int_equal(route_strategy_of("ordered", &st), ERR_OK);
    assert_int_equal(st, ROUTE_ORDERED);
    assert_int_equal(route_strategy_of("cheapest", &st), ERR_OK);
    assert_int_equal(st, ROUTE_CHEAPEST);
    assert_int_equal(route_strategy_of("fastest", &st), ERR_OK);
    assert_int_equal(st, ROUTE_FASTEST);
    assert_int_equal(route_strategy_of("Fastest", &st), ERR_INVAL);
    assert_int_equal(route_strategy_of("", &st), ERR_INVAL);
    assert_int_equal(route_strategy_of(NULL, &st), ERR_INVAL);
    assert_int_equal(route_strategy_of("round-robin", &st), ERR_INVAL);
    assert_int_equal(st, ROUTE_FASTEST); /* unchanged on error */
    assert_string_equal(route_strategy_name(ROUTE_CHEAPEST), "cheapest");
    assert_string_equal(route_strategy_name(ROUTE_FASTEST), "fastest");
    assert_string_equal(route_strategy_name(ROUTE_ORDERED), "ordered");
    assert_int_equal(route_strategy_of("weighted", &st), ERR_OK);
    assert_int_equal(st, ROUTE_WEIGHTED);
    assert_string_equal(route_strategy_name(ROUTE_WEIGHTED), "weighted");
    assert_int_equal(route_strategy_of("balanced", &st), ERR_OK);
    assert_int_equal(st, ROUTE_BALANCED);
    assert_string_equal(route_strategy_name(ROUTE_BALANCED), "balanced");
    assert_string_equal(route_strategy_name((enum route_strategy)ROUTE_STRATEGY_COUNT), "ordered");
}

static void wcands(struct route_candidate *c, const char *const *provs, size_t n)
{
    memset(c, 0, n * sizeof(*c));
    for (size_t i = 0; i < n; i++) {
        snprintf(c[i].provider, sizeof(c[i].provider), "%s", provs[i]);
        snprintf(c[i].model, sizeof(c[i].model), "m-%s", provs[i]);
    }
}

/* "weighted": the weighted candidates first, drawn in proportion; the rest after, in order. */
static void test_weighted(void **state)
{
    (void)state;
    static const char *const wnames[] = {"openai", "anthropic", "mistral", "ollama"};
    struct route_candidate c[4];
    json_t *w = json_pack("{si si si}", "openai", 3, "anthropic", 1, "mistral", 0);
    unsigned long long rng = 42;
    int first[4] = {0}, second_openai = 0, second_anthropic = 0;
    const int rounds = 40000;
    for (int r = 0; r < rounds; r++) {
        wcands(c, wnames, 4);
        route_rank_weighted(c, 4, w, &rng);
        /* The unweighted ones (mistral: 0, ollama: absent) always last, in the order given. */
        assert_string_equal(c[2].provider, "mistral");
        assert_string_equal(c[3].provider, "ollama");
        assert_string_equal(c[3].model, "m-ollama"); /* whole candidates move */
        for (int i = 0; i < 4; i++) {
            if (strcmp(c[0].provider, wnames[i]) == 0) {
                first[i]++;
            }
        }
        second_openai += strcmp(c[1].provider, "openai") == 0;
        second_anthropic += strcmp(c[1].provider, "anthropic") == 0;
    }
    /* 3:1 -> 30,000 expected first; sd ~87, so 29,500..30,500 fails only for a broken draw. */
    assert_in_range(first[0], 29500, 30500);
    assert_int_equal(first[0] + first[1], rounds);
    assert_int_equal(second_openai, first[1]);
    assert_int_equal(second_anthropic, first[0]);

    /* Same state, same order: the draw depends on the generator alone. */
    unsigned long long a = 7, b = 7;
    struct route_candidate c1[4], c2[4];
    wcands(c1, wnames, 4);
    wcands(c2, wnames, 4);
    route_rank_weighted(c1, 4, w, &a);
    route_rank_weighted(c2, 4, w, &b);
    assert_memory_equal(c1, c2, sizeof(c1));
    assert_true(a == b && a != 7);

    /* No weights (none set, all 0, not integers, out of range): the order as given. */
    json_t *none[] = {NULL, json_object(), json_pack("{si si}", "openai", 0, "anthropic", 0),
                      json_pack("{ss sf}", "openai", "3", "anthropic", 2.0),
                      json_pack("{sI}", "openai", (json_int_t)-5)};
    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
        wcands(c, wnames, 4);
        unsigned long long before = rng;
        route_rank_weighted(c, 4, none[i], &rng);
        for (int k = 0; k < 4; k++) {
            assert_string_equal(c[k].provider, wnames[k]);
        }
        assert_true(rng == before); /* nothing drawn */
        json_decref(none[i]);
    }
    /* One weighted candidate goes first, even when it was last. */
    json_t *one = json_pack("{si}", "ollama", 1);
    wcands(c, wnames, 4);
    route_rank_weighted(c, 4, one, &rng);
    assert_string_equal(c[0].provider, "ollama");
    assert_string_equal(c[1].provider, "openai");
    assert_string_equal(c[3].provider, "mistral");
    json_decref(one);
    /* n of 0 and 1 are fine. */
    route_rank_weighted(c, 0, w, &rng);
    wcands(c, wnames, 1);
    route_rank_weighted(c, 1, w, &rng);
    assert_string_equal(c[0].provider, "openai");
    json_decref(w);
}

/* The providers of c in order, space-separated, into out. */
static const char *border(const struct route_candidate *c, size_t n, char *out, size_t size)
{
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && len < size; i++) {
        int k = snprintf(out + len, size - len, "%s%s", i > 0 ? " " : "", c[i].provider);
        len += k > 0 ? (size_t)k : 0;
    }
    return out;
}

/* Ranks a b c d with the given costs and speeds; the order as a string. */
static const char *brank(const double *cost, const double *speed, size_t n, long long sw, char *out,
                         size_t size)
{
    static const char *const abcd[] = {"a", "b", "c", "d"};
    struct route_candidate c[4];
    wcands(c, abcd, n);
    for (size_t i = 0; i < n; i++) {
        c[i].cost = cost[i];
    }
    route_rank_balanced(c, n, speed, sw);
    for (size_t i = 0; i < n; i++) {
        assert_true(strncmp(c[i].model, "m-", 2) == 0); /* whole candidates move */
        assert_string_equal(c[i].model + 2, c[i].provider);
    }
    return border(c, n, out, size);
}

/* "balanced": cost and speed, each relative to the largest, mixed by speed_weight. */
static void test_balanced(void **state)
{
    (void)state;
    char o[64];
    /* a: cheap and slow; b: 10 % dearer and twice as fast; c: dear and fast; d: dearest. */
    const double cost[] = {1.0, 1.1, 4.0, 8.0};
    const double speed[] = {2.0, 1.0, 0.9, 1.5};
    /* Speed alone (100) and cost alone (0) rank like fastest and cheapest. */
    assert_string_equal(brank(cost, speed, 4, 100, o, sizeof(o)), "c b d a");
    assert_string_equal(brank(cost, speed, 4, 0, o, sizeof(o)), "a b c d");
    /* Half each: a = .5 * 1/8 + .5 * 2/2 = .5625; b = .06875 + .25 = .31875;
       c = .25 + .225 = .475; d = .5 + .375 = .875. */
    assert_string_equal(brank(cost, speed, 4, 50, o, sizeof(o)), "b c a d");
    /* Out of range is the default (50). */
    assert_string_equal(brank(cost, speed, 4, 101, o, sizeof(o)), "b c a d");
    assert_string_equal(brank(cost, speed, 4, -1, o, sizeof(o)), "b c a d");
    /* Not measured within the ttl counts as instant, so that it gets measured: d, the dearest,
       goes before a at 50 (.5 + 0 against .0625 + .5), not at 20 (.8 against .1 + .2). */
    const double unknown[] = {2.0, 1.0, 0.9, LATENCY_UNKNOWN};
    assert_string_equal(brank(cost, unknown, 4, 50, o, sizeof(o)), "b c d a");
    assert_string_equal(brank(cost, unknown, 4, 20, o, sizeof(o)), "b a c d");
    /* Being measured by another call counts the measured ones' mean: at 100, a unknown is
       first; a being measured counts (1 + .9 + 1.5) / 3 = 1.13 against c .9, b 1, d 1.5. */
    const double fresh[] = {LATENCY_UNKNOWN, 1.0, 0.9, 1.5};
    assert_string_equal(brank(cost, fresh, 4, 100, o, sizeof(o)), "a c b d");
    const double probing[] = {LATENCY_PROBING, 1.0, 0.9, 1.5};
    assert_string_equal(brank(cost, probing, 4, 100, o, sizeof(o)), "c b a d");
    /* Nothing measured: cost alone, whatever the weight. */
    const double none[] = {LATENCY_UNKNOWN, LATENCY_UNKNOWN, LATENCY_PROBING, LATENCY_UNKNOWN};
    const double rcost[] = {8.0, 4.0, 1.1, 1.0};
    assert_string_equal(brank(rcost, none, 4, 100, o, sizeof(o)), "d c b a");
    /* Failing ones go last, in the order given, however cheap. */
    const double failing[] = {LATENCY_FAILING, 1.0, LATENCY_FAILING, 1.5};
    assert_string_equal(brank(cost, failing, 4, 50, o, sizeof(o)), "b d a c");
    /* No prices (local servers): speed alone decides; equal scores keep the order. */
    const double free_[] = {0, 0, 0, 0};
    assert_string_equal(brank(free_, speed, 4, 50, o, sizeof(o)), "c b d a");
    const double same[] = {1.0, 1.0, 1.0, 1.0};
    assert_string_equal(brank(free_, same, 4, 50, o, sizeof(o)), "a b c d");
    /* A cost that is not a finite non-negative number counts as 0. */
    const double odd[] = {NAN, -1.0, HUGE_VAL, 2.0};
    assert_string_equal(brank(odd, same, 4, 0, o, sizeof(o)), "a b c d");
    /* n of 0 and 1 are fine. */
    assert_string_equal(brank(cost, speed, 1, 50, o, sizeof(o)), "a");
    assert_string_equal(brank(cost, speed, 0, 50, o, sizeof(o)), "");
}

static void test_allowed_tasks(void **state)
{
    struct fixture *f = *state;
    json_object_set_new(f->settings, "allowed_task_types", json_pack("[s]", "chat"));
    struct route_candidate out[ROUTE_MAX_CANDIDATES];
    size_t n = 0;
    enum route_refusal why;
    struct route_want w = {"auto", "code", NULL, PROVIDER_CHAT, 0, 0, 0, ROUTE_ORDERED, 0, NULL};
    assert_int_equal(route_plan(ROUTE_AUTO, &w, f->views, 3, out, &n, &why), ERR_DENIED);
    w.task = "chat";
    assert_int_equal(route_plan(ROUTE_AUTO, &w, f->views, 3, out, &n, &why), ERR_OK);
    json_object_set_new(f->settings, "allowed_task_types", json_array());
}

static void test_bare_model(void **state)
{
    struct fixture *f = *state;
    struct route_candidate out[ROUTE_MAX_CANDIDATES];
    size_t n = 0;
    enum route_refusal why;
    struct route_want w = {"gpt-4o", NULL, NULL, PROVIDER_CHAT, 0, 0, 0, ROUTE_ORDERED, 0, NULL};
    assert_int_equal(route_plan(ROUTE_BARE, &w, f->views, 3, out, &n, &why), ERR_OK);
    /* Every provider listing the model within the tenant's tier (MEDIUM): openai's gpt-4o is
       HIGH, mistral's LOW. */
    assert_int_equal(n, 1);
    assert_string_equal(out[0].provider, "mistral");
    json_object_set_new(f->settings, "budget_tier", json_string("UNLIMITED"));
    assert_int_equal(route_plan(ROUTE_BARE, &w, f->views, 3, out, &n, &why), ERR_OK);
    /* in preference order (mistral is the fallback) */
    assert_int_equal(n, 2);
    assert_string_equal(out[0].provider, "mistral");
    assert_string_equal(out[1].provider, "openai");
    /* Only HIGH left: refused for the tier, and said so. */
    json_object_set_new(f->settings, "budget_tier", json_string("MEDIUM"));
    w.model = "claude-opus";
    assert_int_equal(route_plan(ROUTE_BARE, &w, f->views, 3, out, &n, &why), ERR_NOTFOUND);
    assert_int_equal(why, ROUTE_TIER);
    /* A chat model asked for embeddings. */
    struct route_want emb = {"gpt-4o-mini", NULL, NULL, PROVIDER_EMBEDDINGS, 0, 0, 0,
                             ROUTE_ORDERED, 0,    NULL};
    assert_int_equal(route_plan(ROUTE_BARE, &emb, f->views, 3, out, &n, &why), ERR_NOTFOUND);
    assert_int_equal(why, ROUTE_CAPABILITY);
    w.model = "no-such-model";
    assert_int_equal(route_plan(ROUTE_BARE, &w, f->views, 3, out, &n, &why), ERR_NOTFOUND);
    assert_int_equal(why, ROUTE_FITS);
    assert_int_equal(route_plan(ROUTE_AUTO, &w, f->views, 0, out, &n, &why), ERR_NOTFOUND);
}

/* Residency: regions must list the tenant's (global is no guarantee); local providers serve all. */
static void test_residency(void **state)
{
    struct fixture *f = *state;
    struct route_candidate out[ROUTE_MAX_CANDIDATES];
    size_t n = 0;
    enum route_refusal why;
    json_object_set_new(f->openai, "regions", json_pack("[s]", "us"));
    json_object_set_new(f->anthropic, "regions", json_pack("[s,s]", "global", "us"));
    json_object_set_new(f->mistral, "regions", json_pack("[s]", "eu"));
    json_object_set_new(f->settings, "residency", json_string("eu"));
    struct route_want w = {"auto", NULL, NULL, PROVIDER_CHAT, 0, 0, 0, ROUTE_ORDERED, 0, NULL};
    assert_int_equal(route_plan(ROUTE_AUTO, &w, f->views, 3, out, &n, &why), ERR_OK);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].provider, "mistral");
    json_object_set_new(f->settings, "residency", json_string("us"));
    assert_int_equal(route_plan(ROUTE_AUTO, &w, f->views, 3, out, &n, &why), ERR_OK);
    assert_int_equal(n, 2);
    assert_string_equal(out[0].provider, "anthropic");
    assert_string_equal(out[1].provider, "openai");
    json_object_set_new(f->settings, "residency", json_string("any"));
    assert_int_equal(route_plan(ROUTE_AUTO, &w, f->views, 3, out, &n, &why), ERR_OK);
    assert_int_equal(n, 3);
    /* Nothing in the tenant's region: refused for residency. */
    json_object_set_new(f->mistral, "regions", json_pack("[s]", "us"));
    json_object_set_new(f->settings, "residency", json_string("eu"));
    assert_int_equal(route_plan(ROUTE_AUTO, &w, f->views, 3, out, &n, &why), ERR_NOTFOUND);
    assert_int_equal(why, ROUTE_RESIDENCY);
    struct route_want bare = {"gpt-4o", NULL, NULL, PROVIDER_CHAT, 0, 0, 0, ROUTE_ORDERED, 0, NULL};
    assert_int_equal(route_plan(ROUTE_BARE, &bare, f->views, 3, out, &n, &why), ERR_NOTFOUND);
    assert_int_equal(why, ROUTE_RESIDENCY);
    /* An explicit choice is held to it too; a local provider (on the node) always serves. */
    assert_int_equal(route_check(&w, &f->views[0], "gpt-4o-mini", &why), ERR_NOTFOUND);
    assert_int_equal(why, ROUTE_RESIDENCY);
    json_object_set_new(f->openai, "local", json_true());
    assert_int_equal(route_check(&w, &f->views[0], "gpt-4o-mini", &why), ERR_OK);
    assert_int_equal(route_plan(ROUTE_AUTO, &w, f->views, 3, out, &n, &why), ERR_OK);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].provider, "openai");
}

/* What a request uses, as key permission names. */
static void test_needs(void **state)
{
    (void)state;
    static const struct {
        const char *req;
        unsigned needs;
    } cases[] = {
        {"{}", ROUTE_NEED_CHAT},
        {"{\"stream\":false,\"tools\":[],\"functions\":[]}", ROUTE_NEED_CHAT},
        {"{\"stream\":true}", ROUTE_NEED_CHAT | ROUTE_NEED_STREAMING},
        {"{\"tools\":[{\"type\":\"function\"}]}", ROUTE_NEED_CHAT | ROUTE_NEED_TOOLS},
        {"{\"functions\":[{\"name\":\"f\"}]}", ROUTE_NEED_CHAT | ROUTE_NEED_TOOLS},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"image_url\"},"
         "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
         "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:,\"}}]}]}",
         ROUTE_NEED_CHAT | ROUTE_NEED_VISION},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":"
         "\"image_url\"}]}]}",
         ROUTE_NEED_CHAT},
        {"{\"response_format\":{\"type\":\"json_object\"}}", ROUTE_NEED_CHAT | ROUTE_NEED_JSON},
        {"{\"response_format\":{\"type\":\"json_schema\"}}", ROUTE_NEED_CHAT | ROUTE_NEED_JSON},
        {"{\"response_format\":{\"type\":\"text\"}}", ROUTE_NEED_CHAT},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *req = J(cases[i].req);
        if (route_needs(PROVIDER_CHAT, req) != cases[i].needs) {
            fail_msg("case %zu: needs %#x, want %#x", i, route_needs(PROVIDER_CHAT, req),
                     cases[i].needs);
        }
        json_decref(req);
    }
    json_t *emb = J("{\"input\":\"a\",\"stream\":true}");
    assert_int_equal(route_needs(PROVIDER_EMBEDDINGS, emb), ROUTE_NEED_EMBEDDING);
    json_decref(emb);
    assert_string_equal(route_need_name(ROUTE_NEED_STREAMING), "streaming");
    assert_string_equal(route_need_name(ROUTE_NEED_JSON), "json");
    assert_string_equal(route_need_name(3), "?");

    json_t *none = J("[]"), *chat = J("[\"chat\", 7, \"code\"]"),
           *chat_stream = J("[\"streaming\",\"chat\"]"), *emb_only = J("[\"embedding\"]");
    unsigned cs = ROUTE_NEED_CHAT | ROUTE_NEED_STREAMING;
    assert_int_equal(route_unpermitted(NULL, cs), 0);
    assert_int_equal(route_unpermitted(none, cs), 0);
    assert_int_equal(route_unpermitted(chat, ROUTE_NEED_CHAT), 0);
    assert_int_equal(route_unpermitted(chat, cs), ROUTE_NEED_STREAMING);
    assert_int_equal(route_unpermitted(chat_stream, cs), 0);
    assert_int_equal(route_unpermitted(emb_only, cs), ROUTE_NEED_CHAT);
    assert_int_equal(route_unpermitted(emb_only, ROUTE_NEED_EMBEDDING), 0);
    json_t *m_chat = J("{\"capabilities\":[\"chat\",\"vision\"]}"), *m_plain = J("{}"),
           *m_emb = J("{\"capabilities\":[\"embedding\"]}");
    assert_true(route_model_permitted(NULL, m_chat));
    assert_true(route_model_permitted(chat, m_plain)); /* no capabilities listed: chat */
    assert_false(route_model_permitted(emb_only, m_chat));
    assert_true(route_model_permitted(emb_only, m_emb));
    assert_false(route_model_permitted(chat, m_emb));
    json_decref(m_chat);
    json_decref(m_plain);
    json_decref(m_emb);
    json_decref(none);
    json_decref(chat);
    json_decref(chat_stream);
    json_decref(emb_only);
}

/* A key's permissions bind every way of naming a model, as the tenant's settings do. */
static void test_key_permissions(void **state)
{
    struct fixture *f = *state;
    struct route_candidate out[ROUTE_MAX_CANDIDATES];
    size_t n = 0;
    enum route_refusal why;
    json_t *emb_only = J("[\"embedding\"]"), *chat = J("[\"chat\"]");
    f->views[1].permissions = emb_only; /* anthropic, the preferred provider */
    f->views[2].permissions = chat;     /* mistral */
    struct route_want w = {"auto",          NULL,          NULL, PROVIDER_CHAT, 0, 0,
                           ROUTE_NEED_CHAT, ROUTE_ORDERED, 0,    NULL};
    assert_int_equal(route_plan(ROUTE_AUTO, &w, f->views, 3, out, &n, &why), ERR_OK);
    assert_int_equal(n, 2);
    assert_string_equal(out[0].provider, "mistral");
    assert_string_equal(out[1].provider, "openai");
    /* A stream: mistral's key permits chat only; openai's key has no list (any use). */
    w.needs = ROUTE_NEED_CHAT | ROUTE_NEED_STREAMING;
    assert_int_equal(route_plan(ROUTE_AUTO, &w, f->views, 3, out, &n, &why), ERR_OK);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].provider, "openai");
    /* Nothing left: refused for the key's permissions, over any other reason. */
    f->views[0].permissions = chat;
    json_object_set_new(f->settings, "budget_tier", json_string("FREE"));
    assert_int_equal(route_plan(ROUTE_AUTO, &w, f->views, 3, out, &n, &why), ERR_NOTFOUND);
    assert_int_equal(why, ROUTE_PERMISSION);
    json_object_set_new(f->settings, "budget_tier", json_string("MEDIUM"));
    struct route_want bare = {"gpt-4o",        NULL,          NULL, PROVIDER_CHAT, 0, 0,
                              ROUTE_NEED_CHAT, ROUTE_ORDERED, 0,    NULL};
    assert_int_equal(route_plan(ROUTE_BARE, &bare, f->views, 3, out, &n, &why), ERR_OK);
    assert_int_equal(n, 1); /* mistral's gpt-4o (openai's is HIGH, over MEDIUM) */
    bare.needs |= ROUTE_NEED_STREAMING;
    assert_int_equal(route_plan(ROUTE_BARE, &bare, f->views, 3, out, &n, &why), ERR_NOTFOUND);
    assert_int_equal(why, ROUTE_PERMISSION);
    /* Explicit: the same check. */
    assert_int_equal(route_check(&w, &f->views[1], "claude-haiku", &why), ERR_NOTFOUND);
    assert_int_equal(why, ROUTE_PERMISSION);
    w.needs = ROUTE_NEED_CHAT;
    assert_int_equal(route_check(&w, &f->views[2], "mistral-small", &why), ERR_OK);
    struct route_want we = {"openai/text-embedding-3-small",
                            NULL,
                            NULL,
                            PROVIDER_EMBEDDINGS,
                            0,
                            0,
                            ROUTE_NEED_EMBEDDING,
                            ROUTE_ORDERED,
                            0,
                            NULL};
    f->views[0].permissions = emb_only;
    assert_int_equal(route_check(&we, &f->views[0], "text-embedding-3-small", &why), ERR_OK);
    f->views[0].permissions = chat;
    assert_int_equal(route_check(&we, &f->views[0], "text-embedding-3-small", &why), ERR_NOTFOUND);
    assert_int_equal(why, ROUTE_PERMISSION);
    json_decref(emb_only);
    json_decref(chat);
}

/* auto and bare names skip models the request does not fit; an explicit choice is sent as asked. */
static void test_context_window(void **state)
{
    (void)state;
    json_t *entry = J("{\"default_model\":\"small\",\"models\":["
                      "{\"name\":\"small\",\"context_window\":1000,\"max_output_tokens\":100,"
                      "\"input_per_1m\":1,\"output_per_1m\":1},"
                      "{\"name\":\"big\",\"context_window\":100000,\"max_output_tokens\":4000,"
                      "\"input_per_1m\":5,\"output_per_1m\":5},"
                      "{\"name\":\"unknown\",\"input_per_1m\":9,\"output_per_1m\":9}]}");
    json_t *settings = json_object();
    struct route_view v = {"openai", entry, settings, NULL};
    struct route_candidate out[ROUTE_MAX_CANDIDATES];
    size_t n = 0;
    enum route_refusal why;
    struct route_want w = {"auto", NULL, NULL, PROVIDER_CHAT, 950, 50, 0, ROUTE_ORDERED, 0, NULL};
    assert_int_equal(route_plan(ROUTE_AUTO, &w, &v, 1, out, &n, &why), ERR_OK);
    assert_string_equal(out[0].model, "small"); /* 950 + 50 fits 1,000 */
    w.max_output = 51;
    assert_int_equal(route_plan(ROUTE_AUTO, &w, &v, 1, out, &n, &why), ERR_OK);
    assert_string_equal(out[0].model, "big"); /* the cheapest that fits */
    w.prompt_tokens = 10;
    w.max_output = 101; /* over small's max output */
    assert_int_equal(route_plan(ROUTE_AUTO, &w, &v, 1, out, &n, &why), ERR_OK);
    assert_string_equal(out[0].model, "big");
    w.prompt_tokens = 200000; /* no known window holds it; a model without one may */
    assert_int_equal(route_plan(ROUTE_AUTO, &w, &v, 1, out, &n, &why), ERR_OK);
    assert_string_equal(out[0].model, "unknown");
    struct route_want bare = {"big", NULL,          NULL, PROVIDER_CHAT, 200000, 0,
                              0,     ROUTE_ORDERED, 0,    NULL};
    assert_int_equal(route_plan(ROUTE_BARE, &bare, &v, 1, out, &n, &why), ERR_NOTFOUND);
    assert_int_equal(why, ROUTE_CONTEXT);
    assert_int_equal(route_check(&bare, &v, "big", &why), ERR_OK);
    /* An embedding model's window bounds each input, not a batch's sum: not filtered. */
    json_t *emb = J("{\"models\":[{\"name\":\"e\",\"capabilities\":[\"embedding\"],"
                    "\"context_window\":8191}]}");
    struct route_view ev = {"openai", emb, settings, NULL};
    struct route_want batch = {"auto",        NULL, NULL, PROVIDER_EMBEDDINGS, 100000, 0, 0,
                               ROUTE_ORDERED, 0,    NULL};
    assert_int_equal(route_plan(ROUTE_AUTO, &batch, &ev, 1, out, &n, &why), ERR_OK);
    assert_string_equal(out[0].model, "e");
    batch.model = "e";
    assert_int_equal(route_plan(ROUTE_BARE, &batch, &ev, 1, out, &n, &why), ERR_OK);
    json_decref(emb);
    json_decref(settings);
    json_decref(entry);
}

/*
 * prompt + max output saturates: a max_tokens near LLONG_MAX (bounded by the
 * proxy, but the router must not rely on it) never wraps negative and
 * slips past a window. "win" has a window and no max_output_tokens, so only
 * the sum can refuse it.
 */
static void test_context_sum_saturates(void **state)
{
    (void)state;
    json_t *entry = J("{\"default_model\":\"win\",\"models\":["
                      "{\"name\":\"win\",\"context_window\":1000,"
                      "\"input_per_1m\":1,\"output_per_1m\":1}]}");
    json_t *settings = json_object();
    struct route_view v = {"openai", entry, settings, NULL};
    struct route_candidate out[ROUTE_MAX_CANDIDATES];
    size_t n = 0;
    enum route_refusal why = ROUTE_FITS;
    struct route_want w = {"auto", NULL,          NULL, PROVIDER_CHAT, 10, LLONG_MAX,
                           0,      ROUTE_ORDERED, 0,    NULL};
    assert_int_equal(route_plan(ROUTE_AUTO, &w, &v, 1, out, &n, &why), ERR_NOTFOUND);
    assert_int_equal(why, ROUTE_CONTEXT);
    w.prompt_tokens = LLONG_MAX;
    w.max_output = LLONG_MAX;
    assert_int_equal(route_plan(ROUTE_AUTO, &w, &v, 1, out, &n, &why), ERR_NOTFOUND);
    assert_int_equal(why, ROUTE_CONTEXT);
    w.prompt_tokens = 10;
    w.max_output = 990; /* at the window: fits */
    assert_int_equal(route_plan(ROUTE_AUTO, &w, &v, 1, out, &n, &why), ERR_OK);
    assert_string_equal(out[0].model, "win");
    json_decref(settings);
    json_decref(entry);
}

/* An explicit <provider>/<model> is held to the tenant's tier, tasks, hints and capability. */
static void test_explicit_check(void **state)
{
    struct fixture *f = *state;
    enum route_refusal why;
    struct route_want w = {"openai/gpt-4o", NULL, NULL, PROVIDER_CHAT, 0, 0, 0,
                           ROUTE_ORDERED,   0,    NULL};
    assert_int_equal(route_check(&w, &f->views[0], "gpt-4o", &why), ERR_NOTFOUND);
    assert_int_equal(why, ROUTE_TIER); /* HIGH, the tenant is MEDIUM */
    assert_int_equal(route_check(&w, &f->views[0], "gpt-4o-mini", &why), ERR_OK);
    w.tier = "FREE"; /* the app's own hint lowers it further */
    assert_int_equal(route_check(&w, &f->views[0], "gpt-4o-mini", &why), ERR_NOTFOUND);
    assert_int_equal(why, ROUTE_TIER);
    w.tier = "GOLD";
    assert_int_equal(route_check(&w, &f->views[0], "gpt-4o-mini", &why), ERR_INVAL);
    w.tier = NULL;
    w.task = "bogus";
    assert_int_equal(route_check(&w, &f->views[0], "gpt-4o-mini", &why), ERR_INVAL);
    json_object_set_new(f->settings, "allowed_task_types", json_pack("[s]", "chat"));
    w.task = "reasoning";
    assert_int_equal(route_check(&w, &f->views[0], "gpt-4o-mini", &why), ERR_DENIED);
    w.task = "chat";
    assert_int_equal(route_check(&w, &f->views[0], "gpt-4o-mini", &why), ERR_OK);
    w.task = NULL;
    w.op = PROVIDER_EMBEDDINGS;
    assert_int_equal(route_check(&w, &f->views[0], "gpt-4o-mini", &why), ERR_NOTFOUND);
    assert_int_equal(why, ROUTE_CAPABILITY);
    assert_int_equal(route_check(&w, &f->views[0], "text-embedding-3-small", &why), ERR_OK);
    /* A model the catalog does not list (a local server's) has nothing to check but residency. */
    assert_int_equal(route_check(&w, &f->views[0], "llama3:8b", &why), ERR_OK);
    /* GET /v1/models lists what the tenant may use: within its tier and residency. */
    const json_t *models = json_object_get(f->openai, "models");
    assert_false(route_usable(f->settings, f->openai, json_array_get(models, 0))); /* HIGH */
    assert_true(route_usable(f->settings, f->openai, json_array_get(models, 1)));  /* LOW */
    json_object_set_new(f->settings, "residency", json_string("eu"));
    json_object_set_new(f->openai, "regions", json_pack("[s]", "us"));
    assert_false(route_usable(f->settings, f->openai, json_array_get(models, 1)));
    assert_true(route_hints_valid("code", "LOW"));
    assert_true(route_hints_valid(NULL, NULL));
    assert_false(route_hints_valid("juggling", NULL));
    assert_false(route_hints_valid(NULL, "PLATINUM"));
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
    struct route_view v = {"openai", entry, settings, NULL};
    struct route_want w = {.model = "auto", .op = PROVIDER_CHAT, 0, 0};
    struct route_candidate out[ROUTE_MAX_CANDIDATES];
    size_t n = 0;
    enum route_refusal why;
    assert_int_equal(route_plan(ROUTE_AUTO, &w, &v, 1, out, &n, &why), ERR_OK);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].model, "ok-model");
    /* Asked for by name, an empty one is not found either. */
    struct route_want bare = {.model = "", .op = PROVIDER_CHAT, 0, 0};
    assert_int_equal(route_plan(ROUTE_BARE, &bare, &v, 1, out, &n, &why), ERR_NOTFOUND);
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
    struct provider_call pc = {PROVIDER_CHAT, req, "gpt-4o", true, entry, NULL, key, 100, 0, NULL};
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
    assert_non_null(provider_find("bedrock"));
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
    struct provider_usage u = {.prompt_tokens = 1000000, .completion_tokens = 500000, .seen = true};
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
        cmocka_unit_test_setup_teardown(test_residency, fx_setup, fx_teardown),
        cmocka_unit_test(test_needs),
        cmocka_unit_test_setup_teardown(test_key_permissions, fx_setup, fx_teardown),
        cmocka_unit_test(test_context_window),
        cmocka_unit_test(test_context_sum_saturates),
        cmocka_unit_test_setup_teardown(test_explicit_check, fx_setup, fx_teardown),
        cmocka_unit_test(test_unnamed_models_skipped),
        cmocka_unit_test(test_build_requests),
        cmocka_unit_test(test_cost),
        cmocka_unit_test_setup_teardown(test_cheapest, fx_setup, fx_teardown),
        cmocka_unit_test(test_weighted),
        cmocka_unit_test(test_balanced),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
