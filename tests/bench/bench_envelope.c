/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Benchmark: AES-256-GCM seal + open of one provider key with the key
 * version's associated data, as a creds read (open) and a key write (seal)
 * do it. Prints nanoseconds per seal+open; never asserts a time.
 *
 *   build/tests/bench/bench_envelope [iterations]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/secret.h"
#include "plugin/envelope.h"

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

#define BENCH_ROUNDS 5

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int run(size_t key_len, long iters)
{
    struct secret *dek = secret_new(ENVELOPE_KEY_LEN);
    unsigned char *pt = malloc(key_len);
    if (dek == NULL || pt == NULL) {
        fprintf(stderr, "out of memory\n");
        free(pt);
        secret_free(&dek);
        return 1;
    }
    for (size_t i = 0; i < ENVELOPE_KEY_LEN; i++) {
        dek->data[i] = (unsigned char)(i * 7 + 1);
    }
    for (size_t i = 0; i < key_len; i++) {
        pt[i] = (unsigned char)('a' + i % 26);
    }
    char ad[ENVELOPE_MAX_AD + 1];
    if (envelope_key_ad("acme", "openai", "production", 3, ad, sizeof(ad)) != ERR_OK) {
        free(pt);
        secret_free(&dek);
        return 1;
    }
    size_t ad_len = strlen(ad);
    long failures = 0;
    /* Rounds, best and median: the machine may be shared, the best round is the code's cost. */
    double rounds[BENCH_ROUNDS];
    for (int r = 0; r < BENCH_ROUNDS; r++) {
        double t0 = now_ns();
        for (long i = 0; i < iters; i++) {
            unsigned char *ct = NULL;
            size_t ct_len = 0;
            struct secret *out = NULL;
            if (envelope_seal(dek, ad, ad_len, pt, key_len, &ct, &ct_len) != ERR_OK ||
                envelope_open(dek, ad, ad_len, ct, ct_len, &out) != ERR_OK) {
                failures++;
            }
            secret_free(&out);
            free(ct);
        }
        rounds[r] = (now_ns() - t0) / (double)iters;
    }
    qsort(rounds, BENCH_ROUNDS, sizeof(rounds[0]), cmp_double);
    printf("envelope seal+open  key %5zu bytes  %d x %7ld iterations  best %6.0f ns  median %6.0f "
           "ns per seal+open%s\n",
           key_len, BENCH_ROUNDS, iters, rounds[0], rounds[BENCH_ROUNDS / 2],
           failures != 0 ? "  (FAILURES)" : "");
    free(pt);
    secret_free(&dek);
    return failures != 0;
}

/* A positive count from the command line, or -1. */
static long bench_arg(const char *s)
{
    char *end = NULL;
    long v = strtol(s, &end, 10);
    return end != s && *end == '\0' && v > 0 ? v : -1;
}

int main(int argc, char **argv)
{
    long iters = argc > 1 ? bench_arg(argv[1]) : 50000;
    if (iters <= 0) {
        fprintf(stderr, "usage: %s [iterations]\n", argv[0]);
        return 2;
    }
    if (secret_heap_init((size_t)1024 * 1024) != ERR_OK) {
        fprintf(stderr, "secure heap unavailable\n");
        return 1;
    }
    int rc = 0;
    rc |= run(51, iters);        /* an OpenAI project key */
    rc |= run(108, iters);       /* an Anthropic key */
    rc |= run(2400, iters / 4);  /* a Vertex service-account JSON */
    rc |= run(8192, iters / 10); /* the largest key_value accepted */
    return rc;
}
