/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Provider cooldowns and the Retry-After parser (see cooldown.h).
 *
 * The table is a dense array scanned in full: it is empty nearly always (a
 * lookup is then one comparison), and holds one entry per tenant × provider
 * key that a provider rate-limited in the last retry_after_max_s seconds, so
 * a scan compares 64-bit hashes of a few entries. Expired entries are
 * removed (swapped with the last) by every scan. It does not decide how long
 * to cool (the caller caps the provider's wait by upstream.retry_after_max_s)
 * and does not log.
 */
#include "agent/cooldown.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/config.h"

struct cooldown_entry {
    uint64_t hash;
    double until; /* monotonic seconds */
    char tenant[CONFIG_MAX_NAME + 1];
    char provider[CONFIG_MAX_NAME + 1];
    char key_id[COOLDOWN_MAX_KEY_ID + 1];
};

struct cooldown {
    struct cooldown_entry *e;
    size_t n, cap;
};

/* ---- Retry-After ---------------------------------------------------------------------------- */

static bool cooldown_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

/* s without the OWS (spaces, tabs) around it: *ret_len bytes from the returned pointer. */
static const char *cooldown_trim(const char *s, size_t *ret_len)
{
    size_t len = strlen(s);
    while (len > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        len--;
    }
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t')) {
        len--;
    }
    *ret_len = len;
    return s;
}

/*
 * 1*DIGIT [ "." 1*DIGIT ] in units of unit_ms milliseconds, rounded up to a
 * whole millisecond. ERR_INVAL for anything else (a sign, an exponent, hex,
 * spaces inside) and past COOLDOWN_SANE_MAX_MS.
 */
static enum err cooldown_number(const char *s, size_t len, long long unit_ms, long long *ret_ms)
{
    size_t i = 0;
    long long whole = 0;
    while (i < len && cooldown_digit(s[i])) {
        whole = whole * 10 + (s[i] - '0');
        if (whole > COOLDOWN_SANE_MAX_MS) {
            return ERR_INVAL;
        }
        i++;
    }
    if (i == 0) {
        return ERR_INVAL;
    }
    long long ms = whole * unit_ms;
    if (i < len) {
        if (s[i] != '.' || i + 1 == len) {
            return ERR_INVAL;
        }
        /* The fraction: its first six digits count, any later non-zero one rounds up. */
        long long frac = 0, scale = 1;
        bool rest = false;
        for (i++; i < len; i++) {
            if (!cooldown_digit(s[i])) {
                return ERR_INVAL;
            }
            if (scale < 1000000) {
                frac = frac * 10 + (s[i] - '0');
                scale *= 10;
            } else if (s[i] != '0') {
                rest = true;
            }
        }
        long long part = frac * unit_ms;
        ms += part / scale + ((part % scale != 0 || rest) ? 1 : 0);
    }
    if (ms > COOLDOWN_SANE_MAX_MS) {
        return ERR_INVAL;
    }
    *ret_ms = ms;
    return ERR_OK;
}

/*
 * An HTTP-date (RFC 9110 section 5.6.7: IMF-fixdate, RFC 850, asctime).
 * curl_getdate reads all three but also much else, so only the characters
 * these forms use are let through, starting with the day name.
 */
static enum err cooldown_date(const char *s, size_t len, time_t now, long long *ret_ms)
{
    char buf[COOLDOWN_MAX_HEADER + 1];
    if (len == 0 || len >= sizeof(buf) ||
        !((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z'))) {
        return ERR_INVAL;
    }
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || cooldown_digit(ch) ||
              ch == ' ' || ch == ',' || ch == ':' || ch == '-')) {
            return ERR_INVAL;
        }
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    time_t t = curl_getdate(buf, NULL);
    if (t == (time_t)-1) {
        return ERR_INVAL;
    }
    long long delta = (long long)t - (long long)now;
    if (delta > COOLDOWN_SANE_MAX_MS / 1000) {
        return ERR_INVAL;
    }
    *ret_ms = delta > 0 ? delta * 1000 : 0;
    return ERR_OK;
}

enum err cooldown_parse(const char *retry_after, const char *retry_after_ms, time_t now,
                        long long *ret_ms)
{
    size_t len;
    const char *v;
    long long ms;
    if (retry_after_ms != NULL) {
        v = cooldown_trim(retry_after_ms, &len);
        if (len <= COOLDOWN_MAX_HEADER && cooldown_number(v, len, 1, &ms) == ERR_OK) {
            *ret_ms = ms;
            return ERR_OK;
        }
    }
    if (retry_after == NULL) {
        return retry_after_ms != NULL ? ERR_INVAL : ERR_NOTFOUND;
    }
    v = cooldown_trim(retry_after, &len);
    if (len == 0 || len > COOLDOWN_MAX_HEADER) {
        return ERR_INVAL;
    }
    enum err e =
        cooldown_digit(v[0]) ? cooldown_number(v, len, 1000, &ms) : cooldown_date(v, len, now, &ms);
    if (e != ERR_OK) {
        return e;
    }
    *ret_ms = ms;
    return ERR_OK;
}

/* ---- the table ------------------------------------------------------------------------------ */

/* FNV-1a over tenant, provider and key_id, each ended by a NUL. */
static uint64_t cooldown_hash(const char *tenant, const char *provider, const char *key_id)
{
    uint64_t h = 14695981039346656037ULL;
    const char *parts[3] = {tenant, provider, key_id};
    for (size_t p = 0; p < 3; p++) {
        size_t max = p == 2 ? COOLDOWN_MAX_KEY_ID : CONFIG_MAX_NAME;
        for (size_t i = 0; i < max && parts[p][i] != '\0'; i++) {
            h = (h ^ (unsigned char)parts[p][i]) * 1099511628211ULL;
        }
        h = h * 1099511628211ULL;
    }
    return h;
}

struct cooldown *cooldown_new(void)
{
    return calloc(1, sizeof(struct cooldown));
}

void cooldown_free(struct cooldown *cd)
{
    if (cd == NULL) {
        return;
    }
    free(cd->e);
    free(cd);
}

/*
 * The live entry for the key, or NULL; removes every expired entry on the
 * way (the scan is whole, so the table never holds more dead entries than
 * arrived since the last scan).
 */
static struct cooldown_entry *cooldown_find(struct cooldown *cd, const char *tenant,
                                            const char *provider, const char *key_id, double now)
{
    uint64_t h = cooldown_hash(tenant, provider, key_id);
    struct cooldown_entry *found = NULL;
    size_t i = 0;
    while (i < cd->n) {
        struct cooldown_entry *e = &cd->e[i];
        if (e->until <= now) {
            cd->e[i] = cd->e[--cd->n];
            continue;
        }
        if (e->hash == h && strncmp(e->tenant, tenant, sizeof(e->tenant) - 1) == 0 &&
            strncmp(e->provider, provider, sizeof(e->provider) - 1) == 0 &&
            strncmp(e->key_id, key_id, COOLDOWN_MAX_KEY_ID) == 0) {
            found = e;
        }
        i++;
    }
    return found;
}

int cooldown_start(struct cooldown *cd, const char *tenant, const char *provider,
                   const char *key_id, double until, double now)
{
    if (cd == NULL) {
        return -1;
    }
    if (key_id == NULL) {
        key_id = "";
    }
    if (until <= now) {
        return 0;
    }
    struct cooldown_entry *e = cooldown_find(cd, tenant, provider, key_id, now);
    if (e != NULL) {
        if (until > e->until) {
            e->until = until;
        }
        return 0;
    }
    if (cd->n == cd->cap) {
        if (cd->cap >= COOLDOWN_MAX_ENTRIES) {
            return -1;
        }
        size_t cap = cd->cap == 0 ? 16 : cd->cap * 2;
        struct cooldown_entry *grown = realloc(cd->e, cap * sizeof(*grown));
        if (grown == NULL) {
            return -1;
        }
        cd->e = grown;
        cd->cap = cap;
    }
    e = &cd->e[cd->n++];
    memset(e, 0, sizeof(*e));
    e->hash = cooldown_hash(tenant, provider, key_id);
    e->until = until;
    snprintf(e->tenant, sizeof(e->tenant), "%s", tenant);
    snprintf(e->provider, sizeof(e->provider), "%s", provider);
    snprintf(e->key_id, sizeof(e->key_id), "%s", key_id);
    return 1;
}

double cooldown_left(struct cooldown *cd, const char *tenant, const char *provider,
                     const char *key_id, double now)
{
    if (cd == NULL || cd->n == 0) {
        return 0;
    }
    const struct cooldown_entry *e =
        cooldown_find(cd, tenant, provider, key_id != NULL ? key_id : "", now);
    return e != NULL ? e->until - now : 0;
}

void cooldown_cap(struct cooldown *cd, double now, long max_s)
{
    if (cd == NULL) {
        return;
    }
    double limit = now + (double)max_s;
    size_t i = 0;
    while (i < cd->n) {
        struct cooldown_entry *e = &cd->e[i];
        if (e->until > limit) {
            e->until = limit;
        }
        if (e->until <= now) {
            cd->e[i] = cd->e[--cd->n];
            continue;
        }
        i++;
    }
}

size_t cooldown_count(const struct cooldown *cd)
{
    return cd != NULL ? cd->n : 0;
}
