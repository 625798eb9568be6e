/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The usage journal's files (journal.h).
 */
#include "agent/journal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/jsonw.h"
#include "common/log.h"

#define JOURNAL_LOG "usage.log"
#define JOURNAL_SNAP "usage.snapshot"
#define JOURNAL_TMP "usage.snapshot.tmp"
#define JOURNAL_BAD "usage.snapshot.bad"
/* Errors of appends and syncs are logged at most this often. */
#define JOURNAL_ERROR_LOG_S 60

struct journal {
    int dirfd;
    int logfd;
    char dir[PATH_MAX];
    time_t error_logged;
    unsigned long long errors; /* since the last line */
};

static void journal_error(struct journal *j, const char *what, int err)
{
    j->errors++;
    time_t now = time(NULL);
    if (j->error_logged != 0 && now - j->error_logged < JOURNAL_ERROR_LOG_S &&
        now >= j->error_logged) {
        return;
    }
    char n[24];
    snprintf(n, sizeof(n), "%llu", j->errors);
    log_kv(LOGL_ERROR,
           "usage journal write failed; usage is kept in memory only until it works again", "dir",
           j->dir, "operation", what, "error", strerror(err), "failures", n, NULL);
    j->error_logged = now;
    j->errors = 0;
}

enum err journal_open(const char *dir, struct journal **ret, char *errbuf, size_t errlen)
{
    *ret = NULL;
    struct journal *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        return ERR_NOMEM;
    }
    j->logfd = -1;
    snprintf(j->dir, sizeof(j->dir), "%s", dir);
    j->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (j->dirfd < 0) {
        snprintf(errbuf, errlen, "usage.journal_dir: %s: %s", dir, strerror(errno));
        free(j);
        return ERR_CONFIG;
    }
    j->logfd =
        openat(j->dirfd, JOURNAL_LOG, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (j->logfd < 0) {
        snprintf(errbuf, errlen, "usage.journal_dir: %s/%s: %s", dir, JOURNAL_LOG, strerror(errno));
        journal_close(j);
        return ERR_CONFIG;
    }
    if (flock(j->logfd, LOCK_EX | LOCK_NB) != 0) {
        snprintf(errbuf, errlen,
                 "usage.journal_dir: %s is in use by another process (two agents must not share "
                 "a journal)",
                 dir);
        journal_close(j);
        return ERR_CONFIG;
    }
    *ret = j;
    return ERR_OK;
}

void journal_close(struct journal *j)
{
    if (j == NULL) {
        return;
    }
    if (j->logfd >= 0) {
        (void)fdatasync(j->logfd);
        close(j->logfd);
    }
    if (j->dirfd >= 0) {
        close(j->dirfd);
    }
    free(j);
}

/* The whole file name in the directory (NULL data when it does not exist). */
static enum err journal_read(struct journal *j, int fd, char **ret, size_t *ret_len)
{
    *ret = NULL;
    *ret_len = 0;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        return ERR_IO;
    }
    if ((size_t)st.st_size > JOURNAL_MAX_FILE) {
        char big[32];
        snprintf(big, sizeof(big), "%lld", (long long)st.st_size);
        log_kv(LOGL_ERROR, "usage journal file too large; not read", "dir", j->dir, "bytes", big,
               NULL);
        return ERR_TOOBIG;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        return ERR_NOMEM;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = pread(fd, buf + got, (size_t)st.st_size - got, (off_t)got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        got += (size_t)n;
    }
    buf[got] = '\0';
    *ret = buf;
    *ret_len = got;
    return ERR_OK;
}

enum err journal_load(struct journal *j, json_t **ret_snapshot, json_t **ret_records,
                      unsigned long long *ret_seq)
{
    *ret_snapshot = NULL;
    *ret_records = NULL;
    *ret_seq = 0;
    unsigned long long after = 0;
    int sfd = openat(j->dirfd, JOURNAL_SNAP, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (sfd >= 0) {
        char *text = NULL;
        size_t len = 0;
        enum err e = journal_read(j, sfd, &text, &len);
        close(sfd);
        json_t *snap = e == ERR_OK ? json_loadb(text, len, 0, NULL) : NULL;
        free(text);
        const json_t *seq = json_object_get(snap, "rec_seq");
        if (!json_is_integer(seq) || json_integer_value(seq) < 0) {
            log_kv(LOGL_ERROR,
                   "usage journal snapshot unreadable; kept as usage.snapshot.bad, its usage "
                   "is not sent",
                   "dir", j->dir, NULL);
            json_decref(snap);
            snap = NULL;
            (void)renameat(j->dirfd, JOURNAL_SNAP, j->dirfd, JOURNAL_BAD);
        } else {
            after = (unsigned long long)json_integer_value(seq);
            *ret_snapshot = snap;
        }
    }
    *ret_seq = after;
    json_t *records = json_array();
    char *text = NULL;
    size_t len = 0;
    enum err e = records != NULL ? journal_read(j, j->logfd, &text, &len) : ERR_NOMEM;
    if (e != ERR_OK) {
        json_decref(records);
        json_decref(*ret_snapshot);
        *ret_snapshot = NULL;
        return e;
    }
    size_t bad = 0;
    for (char *line = text; line != NULL && line < text + len;) {
        char *end = memchr(line, '\n', (size_t)(text + len - line));
        size_t n = end != NULL ? (size_t)(end - line) : (size_t)(text + len - line);
        json_t *r = n > 0 ? json_loadb(line, n, 0, NULL) : NULL;
        const json_t *s = json_object_get(r, "s");
        if (r != NULL && json_is_integer(s) && json_integer_value(s) > 0) {
            unsigned long long seq = (unsigned long long)json_integer_value(s);
            if (seq > after) {
                json_object_del(r, "s");
                if (json_array_append(records, r) != 0) {
                    e = ERR_NOMEM;
                }
                if (seq > *ret_seq) {
                    *ret_seq = seq;
                }
            }
        } else if (n > 0) {
            bad++; /* a torn last line after a crash; anything else is said below */
        }
        json_decref(r);
        line = end != NULL ? end + 1 : NULL;
    }
    free(text);
    if (bad > 0) {
        char nb[24];
        snprintf(nb, sizeof(nb), "%zu", bad);
        log_kv(LOGL_WARN, "usage journal lines unreadable; skipped (a write cut by a crash)", "dir",
               j->dir, "lines", nb, NULL);
    }
    if (e != ERR_OK) {
        json_decref(records);
        json_decref(*ret_snapshot);
        *ret_snapshot = NULL;
        return e;
    }
    *ret_records = records;
    return ERR_OK;
}

void journal_append(struct journal *j, json_t *record, unsigned long long seq)
{
    if (j == NULL || json_object_set_new(record, "s", json_integer((json_int_t)seq)) != 0) {
        return;
    }
    char *text = jsonw_dumps(record, NULL);
    json_object_del(record, "s");
    if (text == NULL) {
        journal_error(j, "append", ENOMEM);
        return;
    }
    size_t len = strlen(text);
    text[len] = '\n'; /* the NUL becomes the line's end: one write(2) */
    size_t off = 0;
    while (off < len + 1) {
        ssize_t n = write(j->logfd, text + off, len + 1 - off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            journal_error(j, "append", n < 0 ? errno : EIO);
            break;
        }
        off += (size_t)n;
    }
    free(text);
}

static enum err journal_write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return ERR_IO;
        }
        p += n;
        len -= (size_t)n;
    }
    return ERR_OK;
}

enum err journal_snapshot(struct journal *j, const json_t *doc)
{
    char *text = jsonw_dumps(doc, NULL);
    if (text == NULL) {
        return ERR_NOMEM;
    }
    int fd =
        openat(j->dirfd, JOURNAL_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    enum err e = fd >= 0 ? journal_write_all(fd, text, strlen(text)) : ERR_IO;
    int err = errno;
    free(text);
    if (e == ERR_OK && fsync(fd) != 0) {
        err = errno;
        e = ERR_IO;
    }
    if (fd >= 0) {
        close(fd);
    }
    if (e == ERR_OK && renameat(j->dirfd, JOURNAL_TMP, j->dirfd, JOURNAL_SNAP) != 0) {
        err = errno;
        e = ERR_IO;
    }
    if (e == ERR_OK && fsync(j->dirfd) != 0) {
        err = errno;
        e = ERR_IO;
    }
    if (e != ERR_OK) {
        journal_error(j, "snapshot", err);
        return e;
    }
    /*
     * The log's records are in the snapshot now. Emptied after the rename:
     * a crash in between leaves lines the snapshot's rec_seq skips.
     */
    if (ftruncate(j->logfd, 0) != 0) {
        journal_error(j, "truncate", errno);
    }
    return ERR_OK;
}

void journal_sync(struct journal *j)
{
    if (j != NULL && fdatasync(j->logfd) != 0) {
        journal_error(j, "fdatasync", errno);
    }
}
