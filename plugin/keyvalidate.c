/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Key validation: format checks against the provider's documented prefixes
 * and minimum length, and a strength score from length, character entropy and
 * repetition. The score is a heuristic for people (a hint that a key was cut
 * when pasted, or belongs to another provider), not a security measure; the
 * module does not call providers to check a key works.
 *
 * Score: 70 points from estimated entropy bits (entropy per character x
 * characters after the prefix, full at KEYVALIDATE_FULL_BITS), 15 points for
 * length (full at twice the documented minimum), 15 for a documented prefix
 * (or a provider that documents none); minus 10 for a long run of one
 * character and 10 for a single character class.
 */
#include "plugin/keyvalidate.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/awskey.h"
#include "common/gcpkey.h"
#include "common/utf8.h"

double keyvalidate_entropy(const unsigned char *s, size_t len)
{
    if (s == NULL || len == 0) {
        return 0.0;
    }
    size_t count[256] = {0};
    for (size_t i = 0; i < len; i++) {
        count[s[i]]++;
    }
    double h = 0.0;
    for (size_t c = 0; c < 256; c++) {
        if (count[c] != 0) {
            double p = (double)count[c] / (double)len;
            h -= p * log2(p);
        }
    }
    /* Wipe: the histogram says which characters the key has. */
    memset(count, 0, sizeof(count));
    __asm__ __volatile__("" : : "r"(count) : "memory");
    return h;
}

static size_t keyvalidate_longest_run(const unsigned char *s, size_t len)
{
    size_t best = len > 0 ? 1 : 0, run = 1;
    for (size_t i = 1; i < len; i++) {
        run = s[i] == s[i - 1] ? run + 1 : 1;
        if (run > best) {
            best = run;
        }
    }
    return best;
}

static int keyvalidate_classes(const unsigned char *s, size_t len)
{
    bool lower = false, upper = false, digit = false, other = false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];
        if (c >= 'a' && c <= 'z') {
            lower = true;
        } else if (c >= 'A' && c <= 'Z') {
            upper = true;
        } else if (c >= '0' && c <= '9') {
            digit = true;
        } else {
            other = true;
        }
    }
    return lower + upper + digit + other;
}

/*
 * A sentence built with snprintf may be cut inside a character of the
 * display name (catalog text): json_string refuses text that is not UTF-8,
 * and the sentence would be lost. Its whole characters are kept.
 */
static void keyvalidate_add(json_t *arr, const char *text)
{
    size_t n = 0, c;
    while ((c = utf8_char_len(text + n)) != 0) {
        n += c;
    }
    json_array_append_new(arr, json_stringn(text, n));
}

json_t *keyvalidate_check(const unsigned char *key, size_t len, const json_t *entry)
{
    json_t *issues = json_array();
    json_t *recs = json_array();
    if (issues == NULL || recs == NULL) {
        json_decref(issues);
        json_decref(recs);
        return NULL;
    }
    if (key == NULL) {
        len = 0;
    }
    bool valid = true;
    char msg[256];
    const char *display = json_string_value(json_object_get(entry, "display_name"));
    if (display == NULL) {
        display = json_string_value(json_object_get(entry, "name"));
    }
    if (display == NULL) {
        display = "this provider";
    }

    /*
     * A Vertex service-account key (common/gcpkey.h; paths_keys.c refused one
     * that does not parse): no prefix, length or character statistics mean
     * anything for a JSON document; its strength is its RSA key's, which
     * Google generates (2048 bits: the full score). What matters is its age:
     * such keys do not expire unless told to.
     */
    struct gcpkey gk;
    const char *vstyle = json_string_value(json_object_get(entry, "api_style"));
    if (key != NULL && vstyle != NULL && strcmp(vstyle, "vertex") == 0 &&
        gcpkey_is_sa((const char *)key, len) && gcpkey_parse((const char *)key, len, &gk, NULL)) {
        keyvalidate_add(recs, "service-account keys do not expire: set expires_at and rotate the "
                              "key regularly (Google recommends 90 days)");
        json_int_t sa_score = gk.bits >= 2048 ? 100 : 50;
        return json_pack("{sbsIsoso}", "is_valid", true, "strength_score", sa_score, "issues",
                         issues, "recommendations", recs);
    }

    /*
     * A Bedrock IAM key (common/awskey.h; paths_keys.c refused one that does
     * not parse): its format is exact, so length and prefix are not in
     * question, and only its secret access key is secret: the strength is
     * that of the secret alone (the access key ID is public and fixed-form).
     */
    struct awskey ak;
    const char *style = json_string_value(json_object_get(entry, "api_style"));
    bool iam = key != NULL && style != NULL && strcmp(style, "bedrock") == 0 &&
               awskey_is_iam((const char *)key, len) &&
               awskey_parse((const char *)key, len, &ak, NULL);
    if (iam && ak.temporary) {
        keyvalidate_add(recs, "temporary credentials (ASIA) expire within hours to days: set "
                              "expires_at to their expiry and rotate before it, or store a "
                              "long-term access key or a Bedrock API key");
    }

    json_int_t min_len = json_integer_value(json_object_get(entry, "key_min_length"));
    if (min_len <= 0) {
        min_len = KEYVALIDATE_DEFAULT_MIN;
    }
    if (iam) {
        min_len = AWSKEY_SECRET_LEN / 2;
    } else if ((json_int_t)len < min_len) {
        valid = false;
        snprintf(msg, sizeof(msg), "shorter than the %lld characters documented for %s",
                 (long long)min_len, display);
        keyvalidate_add(issues, msg);
        keyvalidate_add(recs, "check that the whole key was copied");
    }

    /* Prefix: the longest documented prefix the key starts with. */
    json_t *prefixes = json_object_get(entry, "key_prefixes");
    size_t n_prefixes = iam ? 0 : json_array_size(prefixes);
    size_t prefix_len = 0;
    bool prefix_ok = n_prefixes == 0;
    for (size_t i = 0; i < n_prefixes && i < KEYVALIDATE_MAX_PREFIXES; i++) {
        const char *p = json_string_value(json_array_get(prefixes, i));
        size_t pl = p != NULL ? strlen(p) : 0;
        if (pl > 0 && pl <= len && memcmp(key, p, pl) == 0) {
            prefix_ok = true;
            if (pl > prefix_len) {
                prefix_len = pl;
            }
        }
    }
    if (!prefix_ok) {
        valid = false;
        char list[128] = "";
        size_t used = 0;
        for (size_t i = 0; i < n_prefixes && i < 4; i++) {
            const char *p = json_string_value(json_array_get(prefixes, i));
            if (p == NULL) {
                continue;
            }
            int n = snprintf(list + used, sizeof(list) - used, "%s%s", used > 0 ? ", " : "", p);
            if (n < 0 || (size_t)n >= sizeof(list) - used) {
                list[used] = '\0'; /* does not fit: leave it out rather than cut it */
                break;
            }
            used += (size_t)n;
        }
        snprintf(msg, sizeof(msg), "does not start with a prefix documented for %s (%s)", display,
                 list);
        keyvalidate_add(issues, msg);
        snprintf(msg, sizeof(msg), "check that this key was issued by %s", display);
        keyvalidate_add(recs, msg);
    }

    const unsigned char *body = key != NULL ? key + prefix_len : NULL;
    size_t body_len = len - prefix_len;
    if (iam) {
        body = (const unsigned char *)ak.secret;
        body_len = ak.secret_len;
        len = ak.secret_len;
    }
    double bits = keyvalidate_entropy(body, body_len) * (double)body_len;
    if (bits < KEYVALIDATE_MIN_BITS) {
        valid = false;
        snprintf(msg, sizeof(msg), "low entropy: about %d bits", (int)bits);
        keyvalidate_add(issues, msg);
        keyvalidate_add(recs, "generate a new key in the provider's console");
    }
    size_t run = keyvalidate_longest_run(body, body_len);
    int classes = keyvalidate_classes(body, body_len);

    double score = fmin(70.0, bits * 70.0 / KEYVALIDATE_FULL_BITS);
    double want_len = 2.0 * (double)min_len;
    score += fmin(15.0, 15.0 * (double)len / want_len);
    score += prefix_ok ? 15.0 : 0.0;
    if (run >= KEYVALIDATE_MAX_RUN) {
        score -= 10.0;
        snprintf(msg, sizeof(msg), "repeats one character %zu times in a row", run);
        keyvalidate_add(issues, msg);
    }
    if (body_len > 0 && classes == 1) {
        score -= 10.0;
        keyvalidate_add(issues, "uses a single character class");
    }
    if (score < 0.0) {
        score = 0.0;
    }
    if (score > 100.0) {
        score = 100.0;
    }
    json_t *out = json_pack("{sbsIsoso}", "is_valid", valid, "strength_score",
                            (json_int_t)lround(score), "issues", issues, "recommendations", recs);
    return out;
}
