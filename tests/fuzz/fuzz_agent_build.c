/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Fuzzes how the agent builds a provider request from peer input: the app's
 * request body (any JSON) and the key's metadata (the tenant's: Azure puts
 * its deployment and api_version into the URL), through every adapter's
 * build, chat and embeddings, streamed and not. The first byte picks the
 * case; the rest is "metadata JSON \n request JSON". Invariants: no crash; a
 * built request has a URL of printable non-space ASCII on the catalog's host,
 * whose path has no dot segment, header lines without CR or LF, and a body
 * that is one JSON object.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/providers.h"
#include "common/secret.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define BASE "https://r.example.com/v1"

static void check_built(const struct provider_http *h)
{
    if (strncmp(h->url, BASE "/", sizeof(BASE)) != 0) {
        abort();
    }
    for (const char *p = h->url; *p != '\0'; p++) {
        if (*p <= 0x20 || *p >= 0x7f) {
            abort();
        }
    }
    const char *q = strchr(h->url, '?');
    size_t path_end = q != NULL ? (size_t)(q - h->url) : strlen(h->url);
    for (size_t i = 0; i + 1 < path_end; i++) {
        /* "/." followed by "/", "?", the end, or ".": a dot segment. */
        if (h->url[i] == '/' && h->url[i + 1] == '.') {
            char n = i + 2 < path_end ? h->url[i + 2] : '/';
            if (n == '/' || (n == '.' && (i + 3 >= path_end || h->url[i + 3] == '/'))) {
                abort();
            }
        }
    }
    for (const struct curl_slist *l = h->headers; l != NULL; l = l->next) {
        if (strpbrk(l->data, "\r\n") != NULL) {
            abort();
        }
    }
    json_t *b = json_loadb(h->body, h->body_len, 0, NULL);
    if (!json_is_object(b)) {
        abort();
    }
    json_decref(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const styles[] = {"openai", "azure", "anthropic"};
    static json_t *entry;
    static struct secret *key;
    if (entry == NULL) {
        if (secret_heap_init(1 << 16) != ERR_OK) {
            abort();
        }
        entry = json_pack("{s:s}", "base_url", BASE);
        key = secret_from("sk-fuzz-0123456789abcdef", 24);
        if (entry == NULL || key == NULL) {
            abort();
        }
    }
    if (size < 1 || size > 65536) {
        return 0;
    }
    const struct provider_adapter *ad = provider_find(styles[data[0] % 3]);
    if (ad == NULL) {
        abort();
    }
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    const char *nl = memchr(text, '\n', n);
    size_t mlen = nl != NULL ? (size_t)(nl - text) : 0;
    json_t *md = mlen > 0 ? json_loadb(text, mlen, 0, NULL) : NULL;
    size_t off = nl != NULL ? mlen + 1 : 0;
    json_t *req = json_loadb(text + off, n - off, 0, NULL);
    if (json_is_object(req)) {
        struct provider_call c = {.op = (data[0] & 4) != 0 ? PROVIDER_EMBEDDINGS : PROVIDER_CHAT,
                                  .req = req,
                                  .model = "gpt-4o",
                                  .stream = (data[0] & 8) != 0,
                                  .entry = entry,
                                  .metadata = md,
                                  .key = key,
                                  .default_max_tokens = 16};
        struct provider_http h;
        memset(&h, 0, sizeof(h));
        if (ad->build(&c, &h) == ERR_OK) {
            check_built(&h);
        }
        provider_http_done(&h);
    }
    json_decref(req);
    json_decref(md);
    return 0;
}
