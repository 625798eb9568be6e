/* SPDX-License-Identifier: MPL-2.0 */
/*
 * What tells that a file the agent reads was replaced or rewritten since it
 * last looked: its inode and device (replaced by a rename), size and
 * modification time (rewritten in place), change time (also a chmod or
 * chown), and whether it exists at all. Used for the Vault credential files
 * (vault.c: a change allows a new login at once) and the CA files
 * (upstream.c: a change drops curl's parsed store).
 */
#ifndef BYOK_AGENT_FILEID_H
#define BYOK_AGENT_FILEID_H

#include <stdbool.h>
#include <sys/types.h>
#include <time.h>

struct file_id {
    bool exists;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtim, ctim;
};

/* The identity of path now (stat, following links); exists false when it cannot be read. */
struct file_id file_id_of(const char *path);
bool file_id_eq(const struct file_id *a, const struct file_id *b);

#endif
