/* SPDX-License-Identifier: MPL-2.0 */
/*
 * fail-addref.so, an LD_PRELOAD shim for the agent: libevent's
 * evbuffer_add_reference fails (returns -1, as when libevent cannot allocate
 * the chain that holds the reference) for every buffer whose bytes contain
 * one of the needles in FAIL_ADDREF_NEEDLES ('|'-separated, read once at
 * load), and is libevent's own for every other buffer. It reaches the
 * agent's out-of-memory path for one chosen reply (a provider's answer) and
 * leaves the rest of the agent, its error replies included, working.
 * Built by the e2e test that uses it (41-passthrough-oom.sh).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAIL_ADDREF_MAX_NEEDLES 512

typedef int (*addref_fn)(struct evbuffer *, const void *, size_t, evbuffer_ref_cleanup_cb, void *);

static char fail_needles[FAIL_ADDREF_MAX_NEEDLES];

__attribute__((constructor)) static void fail_addref_init(void)
{
    const char *v = getenv("FAIL_ADDREF_NEEDLES");
    if (v != NULL) {
        snprintf(fail_needles, sizeof(fail_needles), "%s", v);
    }
}

static int fail_addref_match(const void *data, size_t len)
{
    const char *n = fail_needles;
    while (*n != '\0') {
        const char *end = strchr(n, '|');
        size_t nl = end != NULL ? (size_t)(end - n) : strlen(n);
        if (nl > 0 && data != NULL && memmem(data, len, n, nl) != NULL) {
            return 1;
        }
        n += nl;
        if (*n == '|') {
            n++;
        }
    }
    return 0;
}

int evbuffer_add_reference(struct evbuffer *outbuf, const void *data, size_t datlen,
                           evbuffer_ref_cleanup_cb cleanupfn, void *cleanupfn_arg)
{
    static addref_fn real;
    if (fail_addref_match(data, datlen)) {
        return -1; /* like libevent's own failure: cleanupfn is not called */
    }
    if (real == NULL) {
        real = (addref_fn)dlsym(RTLD_NEXT, "evbuffer_add_reference");
        if (real == NULL) {
            return -1;
        }
    }
    return real(outbuf, data, datlen, cleanupfn, cleanupfn_arg);
}
