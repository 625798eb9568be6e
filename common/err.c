/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Names and messages of enum err, both taken from ERR_MAP so they cannot drift.
 */
#include "common/err.h"

static const char *const err_messages[] = {
#define ERR_MSG_ENTRY(name, msg) [ERR_##name] = (msg),
    ERR_MAP(ERR_MSG_ENTRY)
#undef ERR_MSG_ENTRY
};

static const char *const err_names[] = {
#define ERR_NAME_ENTRY(name, msg) [ERR_##name] = #name,
    ERR_MAP(ERR_NAME_ENTRY)
#undef ERR_NAME_ENTRY
};

const char *err_str(enum err e)
{
    if ((unsigned)e >= ERR__COUNT) {
        return "unknown error";
    }
    return err_messages[e];
}

const char *err_name(enum err e)
{
    if ((unsigned)e >= ERR__COUNT) {
        return "UNKNOWN";
    }
    return err_names[e];
}
