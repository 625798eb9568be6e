/* SPDX-License-Identifier: MPL-2.0 */
/* The agent tests' fake Vault: see fakevault.h. */
#include "tests/unit/helpers/fakevault.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int fv_listen_fd = -1;
static pthread_t fv_thread;
static fakevault_handler fv_fn;

static void fv_reply(int fd, int status, const char *body)
{
    char head[256];
    int n =
        snprintf(head, sizeof(head),
                 "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                 status, strlen(body));
    (void)!write(fd, head, (size_t)n);
    (void)!write(fd, body, strlen(body));
}

/* Answers every complete request at the start of buf; returns the bytes consumed. */
static size_t fv_serve_buffered(int fd, char *buf, size_t len)
{
    size_t used = 0;
    for (;;) {
        char *req = buf + used;
        char *end = strstr(req, "\r\n\r\n");
        if (end == NULL) {
            return used;
        }
        size_t head = (size_t)(end + 4 - req);
        size_t cl = 0;
        const char *h = strcasestr(req, "Content-Length: ");
        if (h != NULL && h < end) {
            cl = strtoul(h + 16, NULL, 10);
        }
        if (len - used < head + cl) {
            return used; /* body incomplete: read more */
        }
        char method[16] = "";
        char path[512] = "";
        char token[128] = "";
        sscanf(req, "%15s %511s", method, path);
        const char *t = strcasestr(req, "X-Vault-Token: ");
        if (t != NULL && t < end) {
            sscanf(t + 15, "%127[^\r]", token);
        }
        char *body = malloc(cl + 1);
        if (body == NULL) {
            abort();
        }
        memcpy(body, req + head, cl);
        body[cl] = '\0';
        struct fakevault_req r = {method, path, token, body, cl};
        int status = 404;
        char reply[FAKEVAULT_MAX_REPLY + 1] = "{\"errors\":[]}";
        fv_fn(&r, &status, reply);
        reply[FAKEVAULT_MAX_REPLY] = '\0';
        free(body);
        fv_reply(fd, status, reply);
        used += head + cl;
    }
}

#define FV_CONN_BUF (1 << 20)

/*
 * One thread per connection: curl may open a second connection while the
 * first stays in its pool, and a fake that served one connection until EOF
 * would leave the second in the backlog until the client's timeout. Handlers
 * run one at a time (fv_mu), as the tests wrote them.
 */
static pthread_mutex_t fv_mu = PTHREAD_MUTEX_INITIALIZER;

static void *fv_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char *buf = malloc(FV_CONN_BUF);
    size_t len = 0;
    while (buf != NULL) {
        ssize_t n = read(fd, buf + len, FV_CONN_BUF - 1 - len);
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
        buf[len] = '\0';
        pthread_mutex_lock(&fv_mu);
        size_t used = fv_serve_buffered(fd, buf, len);
        pthread_mutex_unlock(&fv_mu);
        memmove(buf, buf + used, len - used);
        len -= used;
        buf[len] = '\0';
    }
    free(buf);
    close(fd);
    return NULL;
}

static void *fv_main(void *arg)
{
    (void)arg;
    for (;;) {
        int fd = accept(fv_listen_fd, NULL, NULL);
        if (fd < 0) {
            return NULL;
        }
        pthread_t t;
        if (pthread_create(&t, NULL, fv_conn, (void *)(intptr_t)fd) != 0) {
            close(fd);
            continue;
        }
        pthread_detach(t);
    }
}

void fakevault_write_token(struct fakevault *fv, const char *token)
{
    char tmp[160];
    snprintf(tmp, sizeof(tmp), "%s.new", fv->token_path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, token, strlen(token)) != (ssize_t)strlen(token)) {
        abort();
    }
    close(fd);
    if (rename(tmp, fv->token_path) != 0) {
        abort();
    }
}

void fakevault_start(struct fakevault *fv, const char *token, fakevault_handler fn)
{
    snprintf(fv->dir, sizeof(fv->dir), "/tmp/byok-fv-XXXXXX");
    if (mkdtemp(fv->dir) == NULL) {
        abort();
    }
    snprintf(fv->sock_path, sizeof(fv->sock_path), "%s/vault.sock", fv->dir);
    snprintf(fv->token_path, sizeof(fv->token_path), "%s/token", fv->dir);
    fakevault_write_token(fv, token);
    fv_fn = fn;
    fv_listen_fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", fv->sock_path);
    if (fv_listen_fd < 0 || bind(fv_listen_fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(fv_listen_fd, 64) != 0 || pthread_create(&fv_thread, NULL, fv_main, NULL) != 0) {
        abort();
    }
}

void fakevault_stop(struct fakevault *fv)
{
    shutdown(fv_listen_fd, SHUT_RDWR);
    close(fv_listen_fd);
    pthread_join(fv_thread, NULL);
    fv_listen_fd = -1;
    unlink(fv->sock_path);
    unlink(fv->token_path);
    rmdir(fv->dir);
}
