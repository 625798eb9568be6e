/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Unit tests for agent/config's listener owner and group lookups: a group
 * (or user) whose database entry does not fit the first buffer (a group with
 * many members: getgrnam_r answers ERANGE) is still found, at start, in
 * --check-config and at a reload, instead of being called unknown.
 *
 * getgrnam_r and getpwnam_r are replaced here: "bigteam" and "biguser"
 * answer ERANGE below 64 KiB of buffer, as glibc does for an entry that
 * large; other names go to the C library.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>

#include "agent/config.h"

#define BIG_ENTRY 65536

int getgrnam_r(const char *name, struct group *grp, char *buf, size_t buflen,
               struct group **result);
int getgrnam_r(const char *name, struct group *grp, char *buf, size_t buflen, struct group **result)
{
    if (strcmp(name, "bigteam") != 0) {
        int (*real)(const char *, struct group *, char *, size_t, struct group **) =
            (int (*)(const char *, struct group *, char *, size_t, struct group **))dlsym(
                RTLD_NEXT, "getgrnam_r");
        return real(name, grp, buf, buflen, result);
    }
    *result = NULL;
    if (buflen < BIG_ENTRY) {
        return ERANGE;
    }
    memset(grp, 0, sizeof(*grp));
    snprintf(buf, buflen, "bigteam");
    grp->gr_name = buf;
    grp->gr_gid = 4242;
    *result = grp;
    return 0;
}

int getpwnam_r(const char *name, struct passwd *pwd, char *buf, size_t buflen,
               struct passwd **result);
int getpwnam_r(const char *name, struct passwd *pwd, char *buf, size_t buflen,
               struct passwd **result)
{
    if (strcmp(name, "biguser") != 0) {
        int (*real)(const char *, struct passwd *, char *, size_t, struct passwd **) =
            (int (*)(const char *, struct passwd *, char *, size_t, struct passwd **))dlsym(
                RTLD_NEXT, "getpwnam_r");
        return real(name, pwd, buf, buflen, result);
    }
    *result = NULL;
    if (buflen < BIG_ENTRY) {
        return ERANGE;
    }
    memset(pwd, 0, sizeof(*pwd));
    snprintf(buf, buflen, "biguser");
    pwd->pw_name = buf;
    pwd->pw_uid = 4343;
    *result = pwd;
    return 0;
}

static struct config *parse(const char *owner, const char *group)
{
    char text[512], err[CONFIG_ERR_LEN];
    snprintf(text, sizeof(text),
             "{\"listeners\":[{\"path\":\"/run/byok/a.sock\",\"tenant\":\"acme\","
             "\"owner\":\"%s\",\"group\":\"%s\"}],"
             "\"vault\":{\"address\":\"http://127.0.0.1:8200\",\"token_file\":\"/nonexistent\"}}",
             owner, group);
    struct config *c = NULL;
    assert_int_equal(config_parse(text, strlen(text), &c, err), ERR_OK);
    return c;
}

static void test_large_entries_found(void **state)
{
    (void)state;
    struct config *c = parse("biguser", "bigteam");
    char err[CONFIG_ERR_LEN] = "";
    enum err e = config_check_host(c, err);
    if (e != ERR_OK) {
        fprintf(stderr, "# config_check_host: %s\n", err);
    }
    assert_int_equal(e, ERR_OK);
    uid_t uid;
    gid_t gid;
    assert_int_equal(config_listener_ids(&c->listeners[0], &uid, &gid, err, sizeof(err)), ERR_OK);
    assert_int_equal(uid, 4343);
    assert_int_equal(gid, 4242);
    config_unref(&c);
    /* A name that really is unknown is still refused, naming the key. */
    c = parse("biguser", "no-such-group-here");
    assert_int_equal(config_check_host(c, err), ERR_CONFIG);
    assert_non_null(strstr(err, "listeners[0].group: no such group on this host"));
    config_unref(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_large_entries_found),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
