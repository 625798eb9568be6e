/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The one check for well-formed UTF-8 (RFC 3629 section 4: no overlong
 * forms, no surrogates, nothing past U+10FFFF) in text we write for strict
 * readers: JSON log lines (common/log) and Prometheus label values
 * (agent/metrics), where one bad byte makes the reader refuse the whole line
 * or scrape. Writers replace a byte that starts no well-formed sequence with
 * U+FFFD, as Go's encoding/json does, and cut text only between
 * whole sequences.
 */
#ifndef BYOK_COMMON_UTF8_H
#define BYOK_COMMON_UTF8_H

#include <stddef.h>

/* Writes U+FFFD REPLACEMENT CHARACTER (3 bytes, no NUL) to out; returns 3. */
size_t utf8_put_replacement(char *out);

/*
 * Length (1..4) of the well-formed sequence s starts with, 0 when it starts
 * none (or with the NUL). s is NUL-terminated: nothing past its NUL is read.
 */
size_t utf8_char_len(const char *s);

#endif
