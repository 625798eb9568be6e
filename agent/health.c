/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Passive provider health (see health.h).
 *
 * A dense array scanned in full: it holds a record only for a provider whose
 * last attempt failed (a success removes it), so it is empty nearly always
 * and a lookup is then one comparison; at worst it holds a few dozen
 * providers. It does not decide what a failure is (the caller classifies
 * the attempt's outcome), does not reorder candidates itself (it gives the
 * order) and does not log.
 */
#include "agent/health.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct health_entry {
    char provider[CONFIG_MAX_NAME + 1];
    unsigned failures; /* consecutive, since the last answer */
    double until;      /* demoted until (monotonic seconds); in the past: not demoted */
    /*
     * Demoted at least once since the last answer: back in its place after
     * the period, but its next failure demotes it again at once.
     */
    bool probation;
    double touched; /* the last failure recorded, for eviction */
};

struct health {
    struct health_entry e[HEALTH_MAX_ENTRIES];
    size_t n;
};

struct health *health_new(void)
{
    return calloc(1, sizeof(struct health));
}

void health_free(struct health *h)
{
    free(h);
}

/* The index of provider's record, or h->n when it has none. */
static size_t health_find(const struct health *h, const char *provider)
{
    size_t i = 0;
    while (i < h->n && strncmp(h->e[i].provider, provider, CONFIG_MAX_NAME) != 0) {
        i++;
    }
    return i;
}

/* A new clean record for provider; when the table is full it replaces the stalest one. */
static struct health_entry *health_add(struct health *h, const char *provider)
{
    struct health_entry *e;
    if (h->n < HEALTH_MAX_ENTRIES) {
        e = &h->e[h->n++];
    } else {
        e = &h->e[0];
        for (size_t i = 1; i < h->n; i++) {
            if (h->e[i].touched < e->touched) {
                e = &h->e[i];
            }
        }
    }
    memset(e, 0, sizeof(*e));
    snprintf(e->provider, sizeof(e->provider), "%s", provider);
    return e;
}

enum health_event health_failure(struct health *h, const char *provider, unsigned threshold,
                                 double demote_s, double now, unsigned *ret_failures)
{
    if (ret_failures != NULL) {
        *ret_failures = 0;
    }
    if (h == NULL || threshold == 0) {
        return HEALTH_SAME;
    }
    size_t i = health_find(h, provider);
    struct health_entry *e = i < h->n ? &h->e[i] : health_add(h, provider);
    if (e->failures < UINT_MAX) {
        e->failures++;
    }
    e->touched = now;
    if (ret_failures != NULL) {
        *ret_failures = e->failures;
    }
    if (e->until > now) {
        /* Tried while demoted (every healthy candidate failed too): it stays demoted. */
        e->until = now + demote_s;
        return HEALTH_SAME;
    }
    if (e->failures >= threshold || e->probation) {
        e->until = now + demote_s;
        e->probation = true;
        return HEALTH_DEMOTED;
    }
    return HEALTH_SAME;
}

enum health_event health_success(struct health *h, const char *provider)
{
    if (h == NULL || h->n == 0) {
        return HEALTH_SAME;
    }
    size_t i = health_find(h, provider);
    if (i == h->n) {
        return HEALTH_SAME;
    }
    bool was = h->e[i].probation;
    h->e[i] = h->e[--h->n];
    return was ? HEALTH_RECOVERED : HEALTH_SAME;
}

double health_demoted(const struct health *h, const char *provider, double now)
{
    if (h == NULL || h->n == 0) {
        return 0;
    }
    size_t i = health_find(h, provider);
    return i < h->n && h->e[i].until > now ? h->e[i].until - now : 0;
}

size_t health_order(const struct health *h, const char *const *names, size_t n, double now,
                    size_t *ret_order)
{
    size_t k = 0, n_demoted = 0;
    for (size_t pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < n; i++) {
            bool demoted = health_demoted(h, names[i], now) > 0;
            if (demoted == (pass == 1)) {
                ret_order[k++] = i;
                n_demoted += demoted ? 1 : 0;
            }
        }
    }
    return n_demoted;
}

void health_configure(struct health *h, unsigned threshold, double demote_s, double now)
{
    if (h == NULL) {
        return;
    }
    if (threshold == 0) {
        h->n = 0;
        return;
    }
    for (size_t i = 0; i < h->n; i++) {
        if (h->e[i].until > now + demote_s) {
            h->e[i].until = now + demote_s;
        }
    }
}

size_t health_count(const struct health *h)
{
    return h != NULL ? h->n : 0;
}
