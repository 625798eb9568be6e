/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Fuzzes the agent's router on what an app and the catalog give it: the
 * model string, the X-BYOK-Task and X-BYOK-Tier hints, the tenant's settings
 * and one provider's catalog entry (the other two are fixed). Input: byte 0
 * picks the operation (bit 0), the prompt size (bits 1-6, in thousands of
 * tokens) and whether max_tokens is asked (bit 7), then
 * "model\ntask\ntier\nsettings JSON\nentry JSON". The settings JSON is also
 * read as the request (what it uses) and its "permissions" as two of the
 * keys' permissions.
 * Invariants: no crash; an explicit model names a configured provider and a
 * model that fits ROUTE_MAX_MODEL; a plan (auto and bare models) has
 * 1..ROUTE_MAX_CANDIDATES candidates, each a provider of the views with a
 * non-empty model that fits; every candidate the plan or the explicit check
 * lets through serves from the tenant's residency (or is local) and has a key
 * that permits what the request uses.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/config.h"
#include "agent/route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const names[] = {"openai", "anthropic", "mistral"};

/* The tenant's residency (settings) is served by this catalog entry. */
static bool serves(const json_t *settings, const json_t *entry)
{
    const char *res = json_string_value(json_object_get(settings, "residency"));
    if (res == NULL || strcmp(res, "any") == 0 || json_is_true(json_object_get(entry, "local"))) {
        return true;
    }
    size_t i;
    const json_t *v;
    json_array_foreach(json_object_get(entry, "regions"), i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), res) == 0) {
            return true;
        }
    }
    return false;
}

static bool known(const char *p)
{
    for (size_t i = 0; i < 3; i++) {
        if (strcmp(p, names[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* The next line of the input (cut in place); "" once it is used up. */
static char *next_line(char **cur)
{
    char *s = *cur;
    char *nl = strchr(s, '\n');
    if (nl != NULL) {
        *nl = '\0';
        *cur = nl + 1;
    } else {
        *cur = s + strlen(s);
    }
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static json_t *fixed[2];
    if (fixed[0] == NULL) {
        fixed[0] = json_loads("{\"default_model\":\"claude-x\",\"models\":[{\"name\":\"claude-x\","
                              "\"capabilities\":[\"chat\",\"code\"],\"tier\":\"HIGH\"}]}",
                              0, NULL);
        fixed[1] = json_loads("{\"default_model\":\"m-small\",\"models\":[{\"name\":\"m-small\","
                              "\"tier\":\"LOW\"},{\"name\":\"m-embed\",\"capabilities\":"
                              "[\"embedding\"],\"tier\":\"LOW\"}]}",
                              0, NULL);
        if (fixed[0] == NULL || fixed[1] == NULL) {
            abort();
        }
    }
    if (size < 1 || size > 65536) {
        return 0;
    }
    char *text = malloc(size);
    if (text == NULL) {
        return 0;
    }
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    char *cur = text;
    const char *model = next_line(&cur);
    const char *task = next_line(&cur);
    const char *tier = next_line(&cur);
    json_t *settings = json_loads(next_line(&cur), 0, NULL);
    json_t *entry = json_loads(cur, 0, NULL);

    const struct config_strlist plist = {(char **)names, 3};
    enum route_kind kind = ROUTE_AUTO;
    struct route_candidate c;
    memset(&c, 0, sizeof(c));
    bool classified = route_classify(model, &plist, &kind, &c) == ERR_OK;
    if (classified && kind == ROUTE_EXPLICIT &&
        (!known(c.provider) || c.model[0] == '\0' || strlen(c.model) > ROUTE_MAX_MODEL)) {
        abort();
    }
    /*
     * The settings JSON doubles as the request (what it uses: route_needs) and
     * holds the openai and anthropic keys' "permissions"; mistral's key has none.
     */
    const json_t *perms = json_object_get(settings, "permissions");
    struct route_view views[3] = {{"openai", entry, settings, perms},
                                  {"anthropic", fixed[0], settings, perms},
                                  {"mistral", fixed[1], settings, NULL}};
    struct route_want w = {.model = model,
                           .task = task[0] != '\0' ? task : NULL,
                           .tier = tier[0] != '\0' ? tier : NULL,
                           .op = (data[0] & 1) != 0 ? PROVIDER_EMBEDDINGS : PROVIDER_CHAT,
                           .prompt_tokens = (long long)((data[0] >> 1) & 0x3f) * 1000,
                           .max_output = (data[0] & 0x80) != 0 ? 4096 : 0};
    w.needs = route_needs(w.op, settings);
    struct route_candidate out[ROUTE_MAX_CANDIDATES];
    size_t n = 0;
    enum route_refusal why;
    /* As proxy.c: an explicit model is checked on its own; auto and bare ones are planned. */
    if (classified && kind == ROUTE_EXPLICIT) {
        const struct route_view *v = &views[0];
        for (size_t i = 0; i < 3; i++) {
            v = strcmp(views[i].provider, c.provider) == 0 ? &views[i] : v;
        }
        if (route_check(&w, v, c.model, &why) == ERR_OK &&
            (!serves(settings, v->entry) || route_unpermitted(v->permissions, w.needs) != 0)) {
            abort();
        }
    }
    if (classified && kind != ROUTE_EXPLICIT &&
        route_plan(kind, &w, views, 3, out, &n, &why) == ERR_OK) {
        if (n < 1 || n > ROUTE_MAX_CANDIDATES) {
            abort();
        }
        for (size_t i = 0; i < n; i++) {
            if (!known(out[i].provider) || out[i].model[0] == '\0' ||
                strlen(out[i].model) > ROUTE_MAX_MODEL) {
                abort();
            }
            for (size_t k = 0; k < 3; k++) {
                if (strcmp(views[k].provider, out[i].provider) == 0 &&
                    (!serves(settings, views[k].entry) ||
                     route_unpermitted(views[k].permissions, w.needs) != 0)) {
                    abort();
                }
            }
        }
    }
    json_decref(entry);
    json_decref(settings);
    free(text);
    return 0;
}
