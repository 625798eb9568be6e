/* SPDX-License-Identifier: MPL-2.0 */
/*
 * A provider's error answer read for the app (provider_error.h).
 */
#include "agent/provider_error.h"

#include <jansson.h>
#include <string.h>

#include "common/utf8.h"

/* Of a message, the bytes looked at (redacted, cleaned), at most: the rest is cut anyway. */
#define PE_SCAN 2048

static const char pe_redacted[] = "[redacted]";

/* s is an identifier worth keeping: 1..PROVIDER_ERROR_MAX_IDENT of [A-Za-z0-9_.:-]. */
static bool pe_ident(const char *s, size_t len)
{
    if (len == 0 || len > PROVIDER_ERROR_MAX_IDENT) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '.' || ch == ':' || ch == '-')) {
            return false;
        }
    }
    return true;
}

/*
 * Marks in mask every byte of text that is part of a run of
 * PROVIDER_ERROR_MIN_SECRET bytes (a whole secret when it is shorter) found
 * in a secret.
 */
static void pe_mark(const char *text, size_t len, const struct provider_secret *secrets,
                    size_t nsecrets, bool *mask)
{
    for (size_t k = 0; k < nsecrets; k++) {
        const struct provider_secret *s = &secrets[k];
        if (s->data == NULL || s->len == 0) {
            continue;
        }
        size_t run = s->len < PROVIDER_ERROR_MIN_SECRET ? s->len : PROVIDER_ERROR_MIN_SECRET;
        for (size_t i = 0; i + run <= len; i++) {
            if (memmem(s->data, s->len, text + i, run) != NULL) {
                memset(mask + i, 1, run);
            }
        }
    }
}

/* An identifier field of o (a string, no part of a secret in it) into out, or "". */
static void pe_ident_field(const json_t *o, const char *k, const struct provider_secret *secrets,
                           size_t nsecrets, char *out)
{
    const json_t *v = json_object_get(o, k);
    out[0] = '\0';
    if (!json_is_string(v) || !pe_ident(json_string_value(v), json_string_length(v))) {
        return;
    }
    bool mask[PROVIDER_ERROR_MAX_IDENT] = {false};
    pe_mark(json_string_value(v), json_string_length(v), secrets, nsecrets, mask);
    if (memchr(mask, 1, sizeof(mask)) == NULL) {
        memcpy(out, json_string_value(v), json_string_length(v) + 1);
    }
}

void provider_error_clean(const char *text, size_t len, const struct provider_secret *secrets,
                          size_t nsecrets, char *out)
{
    char in[PE_SCAN + 1];
    bool mask[PE_SCAN] = {false};
    bool cut = len > PE_SCAN;
    len = cut ? PE_SCAN : len;
    memcpy(in, text, len);
    in[len] = '\0';
    /* A secret is matched on the bytes as the provider sent them, before anything is changed. */
    pe_mark(in, len, secrets, nsecrets, mask);
    size_t o = 0, i = 0;
    bool space = true; /* leading white space and runs of it are dropped */
    while (i < len) {
        char piece[sizeof(pe_redacted)];
        size_t plen, step;
        if (mask[i]) {
            for (step = 0; i + step < len && mask[i + step]; step++) {
            }
            memcpy(piece, pe_redacted, sizeof(pe_redacted) - 1);
            plen = sizeof(pe_redacted) - 1;
        } else if ((unsigned char)in[i] < 0x20 || in[i] == 0x7f || in[i] == ' ') {
            step = 1; /* a control character (a NUL of \u0000 too) is a space */
            if (space) {
                i += step;
                continue;
            }
            piece[0] = ' ';
            plen = 1;
        } else if ((step = utf8_char_len(in + i)) > 0) {
            memcpy(piece, in + i, step);
            plen = step;
        } else {
            step = 1;
            plen = utf8_put_replacement(piece);
        }
        if (o + plen > PROVIDER_ERROR_MAX_MESSAGE) {
            cut = true;
            break;
        }
        memcpy(out + o, piece, plen);
        o += plen;
        space = plen == 1 && piece[0] == ' ';
        i += step;
    }
    while (o > 0 && out[o - 1] == ' ') {
        o--;
    }
    if (cut && o > 0) {
        memcpy(out + o, "\xe2\x80\xa6", 3); /* … */
        o += 3;
    }
    out[o] = '\0';
}

/* The message of a parsed error body (see provider_error.h for the shapes), or NULL. */
static const json_t *pe_message(const json_t *root, const json_t **ret_fields)
{
    const json_t *err = json_object_get(root, "error");
    *ret_fields = root;
    if (json_is_string(err)) {
        return err;
    }
    if (json_is_object(err)) {
        *ret_fields = err;
        return json_object_get(err, "message");
    }
    const json_t *m = json_object_get(root, "message");
    if (json_is_string(m)) {
        return m;
    }
    const json_t *d = json_object_get(root, "detail");
    if (json_is_array(d)) {
        return json_object_get(json_array_get(d, 0), "msg");
    }
    return d;
}

bool provider_error_parse(const char *body, size_t len, const struct provider_secret *secrets,
                          size_t nsecrets, struct provider_error *out)
{
    memset(out, 0, sizeof(*out));
    if (body == NULL || len == 0 || len > PROVIDER_ERROR_MAX_BODY) {
        return false;
    }
    json_t *root = json_loadb(body, len, JSON_ALLOW_NUL, NULL);
    const json_t *obj = json_is_array(root) ? json_array_get(root, 0) : root;
    const json_t *fields = NULL;
    const json_t *msg = json_is_object(obj) ? pe_message(obj, &fields) : NULL;
    if (json_is_string(msg)) {
        provider_error_clean(json_string_value(msg), json_string_length(msg), secrets, nsecrets,
                             out->message);
    }
    if (out->message[0] != '\0') {
        pe_ident_field(fields, "type", secrets, nsecrets, out->type);
        if (out->type[0] == '\0') {
            pe_ident_field(fields, "status", secrets, nsecrets,
                           out->type); /* Gemini's INVALID_ARGUMENT */
        }
        pe_ident_field(fields, "code", secrets, nsecrets, out->code);
        pe_ident_field(fields, "param", secrets, nsecrets, out->param);
    }
    json_decref(root);
    return out->message[0] != '\0';
}
