/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Fuzzes the agent's JSON inputs from peers: a creds reply from Vault
 * (keycache_parse_creds), an app request translated for Anthropic, an
 * Anthropic response translated back (with the usage estimates), and the config parser. The first
 * byte picks the parser. Invariants: no crash; a parsed creds reply never keeps api_key in its
 * JSON; a refused input leaves no outputs behind.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/config.h"
#include "agent/keycache.h"
#include "agent/providers.h"
#include "common/secret.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        if (secret_heap_init(1 << 16) != ERR_OK) {
            abort();
        }
        ready = 1;
    }
    if (size < 1 || size > 65536) {
        return 0;
    }
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    switch (data[0] % 4) {
    case 0: {
        struct secret *k = NULL;
        json_t *c = NULL;
        long ttl = 0;
        if (keycache_parse_creds(text, n, &k, &c, &ttl) == ERR_OK) {
            if (k == NULL || c == NULL || json_object_get(c, "api_key") != NULL) {
                abort();
            }
            secret_free(&k);
            json_decref(c);
        } else if (k != NULL || c != NULL) {
            abort();
        }
        break;
    }
    case 1: {
        json_t *req = json_loadb(text, n, 0, NULL);
        json_t *out = NULL;
        /* Estimates (for calls without provider usage) stay within the plugin's bounds. */
        long long est[3] = {provider_prompt_estimate(PROVIDER_CHAT, req),
                            provider_prompt_estimate(PROVIDER_EMBEDDINGS, req),
                            provider_completion_estimate(req)};
        for (int i = 0; i < 3; i++) {
            if (est[i] < 0 || est[i] > PROVIDER_MAX_TOKENS) {
                abort();
            }
        }
        if (req != NULL && provider_anthropic_request(req, "m", (n & 1) != 0, 16, &out) == ERR_OK) {
            if (json_integer_value(json_object_get(out, "max_tokens")) < 1) {
                abort();
            }
            json_decref(out);
        }
        json_decref(req);
        break;
    }
    case 2: {
        json_t *msg = json_loadb(text, n, 0, NULL);
        json_t *out = NULL;
        struct provider_usage u = {0};
        if (msg != NULL && provider_anthropic_response(msg, &out, &u) == ERR_OK) {
            json_decref(out);
        }
        json_decref(msg);
        break;
    }
    default: {
        struct config *c = NULL;
        char err[CONFIG_ERR_LEN];
        if (config_parse(text, n, &c, err) == ERR_OK) {
            if (c->n_listeners == 0) {
                abort();
            }
            config_unref(&c);
        } else if (c != NULL || err[0] == '\0') {
            abort();
        }
        break;
    }
    }
    return 0;
}
