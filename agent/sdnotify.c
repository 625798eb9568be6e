/* SPDX-License-Identifier: MPL-2.0 */
#include "agent/sdnotify.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define SDNOTIFY_MAX_STATE 4096

static struct sockaddr_un sdnotify_addr;
static socklen_t sdnotify_addr_len; /* 0: no socket */
static bool sdnotify_read;

bool sdnotify_init(void)
{
    if (sdnotify_read) {
        return sdnotify_addr_len > 0;
    }
    sdnotify_read = true;
    const char *e = getenv("NOTIFY_SOCKET");
    size_t n = e != NULL ? strlen(e) : 0;
    /* An abstract name keeps its leading NUL in sun_path and is not NUL-terminated. */
    if (n >= 2 && n < sizeof(sdnotify_addr.sun_path) && (e[0] == '/' || e[0] == '@')) {
        memset(&sdnotify_addr, 0, sizeof(sdnotify_addr));
        sdnotify_addr.sun_family = AF_UNIX;
        memcpy(sdnotify_addr.sun_path, e, n);
        if (e[0] == '@') {
            sdnotify_addr.sun_path[0] = '\0';
            sdnotify_addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
        } else {
            sdnotify_addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
        }
    }
    unsetenv("NOTIFY_SOCKET");
    return sdnotify_addr_len > 0;
}

enum err sdnotify(const char *state)
{
    if (sdnotify_addr_len == 0) {
        return ERR_OK;
    }
    size_t len = strnlen(state, SDNOTIFY_MAX_STATE + 1);
    if (len == 0 || len > SDNOTIFY_MAX_STATE) {
        return ERR_INVAL;
    }
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return ERR_IO;
    }
    ssize_t w;
    do {
        w = sendto(fd, state, len, MSG_NOSIGNAL, (const struct sockaddr *)&sdnotify_addr,
                   sdnotify_addr_len);
    } while (w < 0 && errno == EINTR);
    int saved = errno;
    close(fd);
    errno = saved;
    return w == (ssize_t)len ? ERR_OK : ERR_IO;
}

enum err sdnotify_reloading(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char msg[96];
    snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000ULL);
    return sdnotify(msg);
}
