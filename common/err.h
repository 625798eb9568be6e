/* SPDX-License-Identifier: MPL-2.0 */
/*
 * One error enum for the whole project, generated from one table of name and
 * message (libuv's UV_ERRNO_MAP) so that names and messages never drift.
 * Messages are generic on purpose: they never carry peer data or secrets.
 */
#ifndef BYOK_COMMON_ERR_H
#define BYOK_COMMON_ERR_H

#define MUST_USE __attribute__((warn_unused_result))

#define ERR_MAP(X)                                                                                 \
    X(OK, "success")                                                                               \
    X(NOMEM, "out of memory")                                                                      \
    X(INVAL, "invalid argument")                                                                   \
    X(TOOBIG, "too large")                                                                         \
    X(NOTFOUND, "not found")                                                                       \
    X(EXISTS, "already exists")                                                                    \
    X(IO, "input/output error")                                                                    \
    X(CRYPTO, "cryptographic operation failed")                                                    \
    X(AUTH, "authentication failed")                                                               \
    X(DENIED, "permission denied")                                                                 \
    X(TIMEOUT, "timed out")                                                                        \
    X(UNAVAIL, "service unavailable")                                                              \
    X(PROTO, "protocol error")                                                                     \
    X(STORAGE, "storage error")                                                                    \
    X(UNSUPPORTED, "unsupported")                                                                  \
    X(RANGE, "out of range")                                                                       \
    X(CONFIG, "configuration error")                                                               \
    X(BUSY, "busy")                                                                                \
    X(LIMIT, "rate limit exceeded")                                                                \
    X(BUDGET, "budget exceeded")                                                                   \
    X(UPSTREAM, "upstream error")                                                                  \
    X(CANCELLED, "cancelled")                                                                      \
    X(READONLY, "cannot write to readonly storage")                                                \
    X(INTERNAL, "internal error")

enum err {
#define ERR_ENUM_ENTRY(name, msg) ERR_##name,
    ERR_MAP(ERR_ENUM_ENTRY)
#undef ERR_ENUM_ENTRY
        ERR__COUNT
};

/* Human message for an error ("out of memory"); never NULL. */
const char *err_str(enum err e);

/* Symbolic name without the prefix ("NOMEM"); never NULL. */
const char *err_name(enum err e);

#endif
