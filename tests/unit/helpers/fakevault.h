/* SPDX-License-Identifier: MPL-2.0 */
/*
 * A scripted stand-in for Vault's HTTP API on a Unix socket, for the agent's
 * unit tests (keycache, usage). One thread accepts connections and answers
 * keep-alive HTTP/1.1 requests (Content-Length bodies only) by calling the
 * test's handler. Test-only code: minimal parsing, no limits beyond a 1 MiB
 * request buffer.
 */
#ifndef BYOK_TESTS_FAKEVAULT_H
#define BYOK_TESTS_FAKEVAULT_H

#include <stddef.h>

#define FAKEVAULT_MAX_REPLY 4096

struct fakevault_req {
    const char *method;
    const char *path;  /* with the query string */
    const char *token; /* X-Vault-Token, "" when absent */
    const char *body;  /* NUL-terminated copy of the body */
    size_t body_len;
};

/* Fills *status and reply (at most FAKEVAULT_MAX_REPLY bytes, NUL-terminated). */
typedef void (*fakevault_handler)(const struct fakevault_req *req, int *status, char *reply);

struct fakevault {
    char dir[48];
    char sock_path[96];
    char token_path[128];
};

/*
 * Makes a temporary directory holding the socket and a 0600 token file with
 * `token`, and starts serving. Aborts the test on failure.
 */
void fakevault_start(struct fakevault *fv, const char *token, fakevault_handler fn);
/* Replaces the token file atomically (a new inode, so the client notices). */
void fakevault_write_token(struct fakevault *fv, const char *token);
/* Stops the thread and removes the directory. */
void fakevault_stop(struct fakevault *fv);

#endif
