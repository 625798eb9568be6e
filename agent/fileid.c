/* SPDX-License-Identifier: MPL-2.0 */
#include "agent/fileid.h"

#include <sys/stat.h>

struct file_id file_id_of(const char *path)
{
    struct stat st;
    if (path == NULL || stat(path, &st) != 0) {
        return (struct file_id){0};
    }
    return (struct file_id){true, st.st_dev, st.st_ino, st.st_size, st.st_mtim, st.st_ctim};
}

bool file_id_eq(const struct file_id *a, const struct file_id *b)
{
    return a->exists == b->exists && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtim.tv_sec == b->mtim.tv_sec && a->mtim.tv_nsec == b->mtim.tv_nsec &&
           a->ctim.tv_sec == b->ctim.tv_sec && a->ctim.tv_nsec == b->ctim.tv_nsec;
}
