/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Fuzzes the keys engine's parsers of bytes that come from storage or from
 * requests: envelope_open (a stored ciphertext), envelope_b64_decode (its
 * base64), keystore_time_parse (expires_at, usage timestamps) and
 * keyvalidate_check (a key value). None may crash, read out of bounds or
 * accept a forged ciphertext.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/secret.h"
#include "plugin/envelope.h"
#include "plugin/keystore.h"
#include "plugin/keyvalidate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static struct secret *fz_key;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (secret_heap_init((size_t)1024 * 1024) != ERR_OK) {
        abort();
    }
    fz_key = secret_new(ENVELOPE_KEY_LEN);
    if (fz_key == NULL) {
        abort();
    }
    memset(fz_key->data, 0x42, ENVELOPE_KEY_LEN);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fz_key == NULL) {
        LLVMFuzzerInitialize(NULL, NULL);
    }
    /* A forged ciphertext never opens (the key is fixed, the tag unknown to the fuzzer). */
    struct secret *pt = NULL;
    if (envelope_open(fz_key, "a|b|c|1", 7, data, size, &pt) == ERR_OK) {
        abort();
    }
    if (size > (size_t)64 * 1024) {
        return 0;
    }
    char *text = malloc(size + 1);
    if (text == NULL) {
        return 0;
    }
    memcpy(text, data, size);
    text[size] = '\0';
    unsigned char *raw = NULL;
    size_t raw_len = 0;
    if (envelope_b64_decode(text, &raw, &raw_len) == ERR_OK) {
        char *again = NULL;
        /* Canonical: what decodes re-encodes to the same text. */
        if (envelope_b64_encode(raw, raw_len, &again) != ERR_OK || strcmp(again, text) != 0) {
            abort();
        }
        free(again);
        free(raw);
    }
    time_t t = 0;
    if (keystore_time_parse(text, &t) == ERR_OK) {
        /* What parses formats back to a UTC time that parses to the same instant. */
        char buf[64];
        time_t t2 = 0;
        keystore_time_format(t, buf, sizeof(buf));
        if (strlen(buf) == 20 && (keystore_time_parse(buf, &t2) != ERR_OK || t2 != t)) {
            abort();
        }
    }
    json_t *entry = json_pack("{ss s[ss] si}", "name", "p", "key_prefixes", "sk-", "AKIA",
                              "key_min_length", 20);
    json_t *v = keyvalidate_check(data, size, entry);
    json_decref(v);
    json_decref(entry);
    free(text);
    return 0;
}
