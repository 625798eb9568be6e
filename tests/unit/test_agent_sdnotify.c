/* SPDX-License-Identifier: MPL-2.0 */
/* Unit tests for agent/sdnotify: systemd's notification datagrams, as a notify socket sees them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/sdnotify.h"

/* A datagram socket bound at name ("@x": abstract); -1 on failure. */
static int notify_socket(const char *name)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    size_t n = strlen(name);
    memcpy(a.sun_path, name, n);
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    if (name[0] == '@') {
        a.sun_path[0] = '\0';
        len--;
    }
    if (bind(fd, (struct sockaddr *)&a, len) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* The next datagram on fd, NUL-terminated, or "" when none is waiting. */
static const char *notify_recv(int fd)
{
    static char buf[8192];
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

/*
 * sdnotify keeps what it read from the environment for the process's life,
 * as the agent needs; each case runs in a child of its own.
 */
static void in_child(void (*body)(const char *), const char *arg)
{
    fflush(NULL);
    pid_t p = fork();
    assert_true(p >= 0);
    if (p == 0) {
        body(arg);
        _exit(0);
    }
    int st = 0;
    assert_int_equal(waitpid(p, &st, 0), p);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

#define CHILD_CHECK(c)                                                                             \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #c);                                \
            _exit(1);                                                                              \
        }                                                                                          \
    } while (0)

static void body_unset(const char *arg)
{
    (void)arg;
    unsetenv("NOTIFY_SOCKET");
    CHILD_CHECK(!sdnotify_init());
    CHILD_CHECK(sdnotify("READY=1") == ERR_OK);
    CHILD_CHECK(sdnotify_reloading() == ERR_OK);
}

/* Not under systemd: nothing to do, and no error. */
static void test_no_socket(void **state)
{
    (void)state;
    in_child(body_unset, NULL);
}

static void body_socket(const char *name)
{
    int fd = notify_socket(name);
    CHILD_CHECK(fd >= 0);
    setenv("NOTIFY_SOCKET", name, 1);
    CHILD_CHECK(sdnotify_init());
    /* Gone from the environment: nothing the agent starts can notify in its name. */
    CHILD_CHECK(getenv("NOTIFY_SOCKET") == NULL);
    CHILD_CHECK(sdnotify_init()); /* idempotent */
    CHILD_CHECK(sdnotify("READY=1\nSTATUS=serving 2 listeners") == ERR_OK);
    CHILD_CHECK(strcmp(notify_recv(fd), "READY=1\nSTATUS=serving 2 listeners") == 0);
    CHILD_CHECK(sdnotify_reloading() == ERR_OK);
    regex_t re;
    CHILD_CHECK(regcomp(&re, "^RELOADING=1\nMONOTONIC_USEC=[1-9][0-9]*$", REG_EXTENDED) == 0);
    CHILD_CHECK(regexec(&re, notify_recv(fd), 0, NULL, 0) == 0);
    regfree(&re);
    CHILD_CHECK(strcmp(notify_recv(fd), "") == 0);
    /* Empty and oversized states are refused, nothing sent. */
    CHILD_CHECK(sdnotify("") == ERR_INVAL);
    char big[5000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    CHILD_CHECK(sdnotify(big) == ERR_INVAL);
    CHILD_CHECK(strcmp(notify_recv(fd), "") == 0);
    close(fd);
    if (name[0] == '/') {
        unlink(name);
        /* The socket gone: an error the caller can log, not a crash or a hang. */
        CHILD_CHECK(sdnotify("READY=1") == ERR_IO);
    }
}

/* A socket path, as systemd passes it (/run/systemd/notify). */
static void test_path_socket(void **state)
{
    (void)state;
    char dir[] = "/tmp/byok-sdnotify.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof(path), "%s/notify", dir);
    in_child(body_socket, path);
    unlink(path);
    rmdir(dir);
}

/* An abstract socket ("@name"), as systemd-nspawn and some supervisors pass it. */
static void test_abstract_socket(void **state)
{
    (void)state;
    char name[64];
    snprintf(name, sizeof(name), "@byok-sdnotify-%ld", (long)getpid());
    in_child(body_socket, name);
}

static void body_ignored(const char *value)
{
    setenv("NOTIFY_SOCKET", value, 1);
    CHILD_CHECK(!sdnotify_init());
    CHILD_CHECK(getenv("NOTIFY_SOCKET") == NULL);
    CHILD_CHECK(sdnotify("READY=1") == ERR_OK);
}

/* What is not an absolute path or an abstract name is ignored (no socket). */
static void test_bad_values_ignored(void **state)
{
    (void)state;
    char long_path[200];
    memset(long_path, 'a', sizeof(long_path) - 1);
    long_path[0] = '/';
    long_path[sizeof(long_path) - 1] = '\0';
    const char *bad[] = {"", "relative/notify", "@", "/", long_path, "vsock:2:1234"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        in_child(body_ignored, bad[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_socket),
        cmocka_unit_test(test_path_socket),
        cmocka_unit_test(test_abstract_socket),
        cmocka_unit_test(test_bad_values_ignored),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
