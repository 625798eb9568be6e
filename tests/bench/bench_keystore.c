/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Benchmark: the keys engine through fw_handle on in-memory storage, without
 * the transport: create T tenants x K keys, read creds for each (cold DEK
 * cache, then warm), rotate the KEK (rewrapping every tenant DEK), read again.
 * Prints wall-clock figures; never asserts a time. Defaults: 10,000 x 3.
 *
 *   build/tests/bench/bench_keystore [tenants] [keys-per-tenant]
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/secret.h"
#include "plugin/byok.h"
#include "plugin/framework.h"
#include "plugin/storage.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *const providers[] = {"openai", "anthropic", "mistral", "deepseek", "groq"};

static int request(struct byok *b, struct storage *st, enum fw_op op, const char *path,
                   json_t *data, char *api_key_out)
{
    struct fw_request req = {.op = op, .path = path, .data = data, .storage = st, .backend = b};
    struct fw_response resp;
    fw_response_init(&resp);
    enum err e = fw_handle(byok_path_tables, &req, &resp);
    int ok = e == ERR_OK && resp.status == FW_OK;
    if (ok && api_key_out != NULL) {
        const char *k = json_string_value(json_object_get(resp.data, "api_key"));
        ok = k != NULL;
        if (ok) {
            snprintf(api_key_out, 128, "%s", k);
        }
    }
    if (!ok) {
        fprintf(stderr, "%s %s: status %d %s\n", fw_op_name(op), path, resp.status, resp.message);
    }
    fw_response_done(&resp);
    return ok ? 0 : 1;
}

static long read_all(struct byok *b, struct storage *st, long tenants, long keys)
{
    long failures = 0;
    for (long t = 0; t < tenants; t++) {
        for (long k = 0; k < keys; k++) {
            char path[128], key[128], want[128];
            snprintf(path, sizeof(path), "tenants/t%ld/creds/%s", t, providers[k % 5]);
            snprintf(want, sizeof(want), "sk-bench-%ld-%ld-abcdefghijklmnopqrstuvwxyz0123456789", t,
                     k);
            if (request(b, st, FW_OP_READ, path, NULL, key) != 0 || strcmp(key, want) != 0) {
                failures++;
            }
        }
    }
    return failures;
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
    long tenants = argc > 1 ? bench_arg(argv[1]) : 10000;
    long keys = argc > 2 ? bench_arg(argv[2]) : 3;
    if (tenants <= 0 || keys <= 0 || keys > 5) {
        fprintf(stderr, "usage: %s [tenants] [keys-per-tenant (1..5)]\n", argv[0]);
        return 2;
    }
    if (secret_heap_init((size_t)8 * 1024 * 1024) != ERR_OK) {
        fprintf(stderr, "secure heap unavailable\n");
        return 1;
    }
    struct byok *b = byok_new();
    struct storage *st = storage_mem_new();
    if (b == NULL || st == NULL || byok_initialize(b, st) != ERR_OK) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }
    long failures = 0;
    double t0 = now_s();
    for (long t = 0; t < tenants; t++) {
        for (long k = 0; k < keys; k++) {
            char path[128], value[128];
            snprintf(path, sizeof(path), "tenants/t%ld/keys/%s/production", t, providers[k % 5]);
            snprintf(value, sizeof(value), "sk-bench-%ld-%ld-abcdefghijklmnopqrstuvwxyz0123456789",
                     t, k);
            json_t *data = json_pack("{ss}", "key_value", value);
            failures += request(b, st, FW_OP_CREATE, path, data, NULL);
            json_decref(data);
        }
    }
    double t1 = now_s();
    long n = tenants * keys;
    printf("create   %6ld tenants x %ld keys  %8.2f s  %7.1f us per key write\n", tenants, keys,
           t1 - t0, (t1 - t0) * 1e6 / (double)n);

    byok_cleanup(b); /* cold DEK cache */
    double t2 = now_s();
    failures += read_all(b, st, tenants, keys);
    double t3 = now_s();
    failures += read_all(b, st, tenants, keys);
    double t4 = now_s();
    printf("creds    %6ld reads (cold)            %8.2f s  %7.1f us per read\n", n, t3 - t2,
           (t3 - t2) * 1e6 / (double)n);
    printf("creds    %6ld reads (warm)            %8.2f s  %7.1f us per read\n", n, t4 - t3,
           (t4 - t3) * 1e6 / (double)n);

    double t5 = now_s();
    failures += request(b, st, FW_OP_UPDATE, "config/rotate-root", NULL, NULL);
    double t6 = now_s();
    printf("rotate   KEK, %6ld tenant DEKs rewrapped  %8.2f s\n", tenants, t6 - t5);
    byok_cleanup(b);
    failures += read_all(b, st, tenants, keys);
    double t7 = now_s();
    printf("creds    %6ld reads after rotation    %8.2f s\n", n, t7 - t6);
    printf("total    create + rotate-root          %8.2f s%s\n", (t1 - t0) + (t6 - t5),
           failures != 0 ? "  (FAILURES)" : "");
    if (failures != 0) {
        fprintf(stderr, "%ld failures\n", failures);
    }
    byok_free(b);
    storage_mem_free(st);
    return failures != 0;
}
