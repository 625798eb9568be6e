/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The validation block of a key read (docs/api.md): whether a key value looks
 * like what its provider documents (prefixes, minimum length from the catalog
 * entry) and how strong it is (length, character entropy, repetition). It is
 * advice, computed once when a value is written: a key that fails it is still
 * stored (providers change formats; local providers take anything) and the
 * write answers with a warning.
 *
 * Nothing produced here contains a byte of the key: issues and
 * recommendations are fixed sentences plus the provider's public data.
 */
#ifndef BYOK_PLUGIN_KEYVALIDATE_H
#define BYOK_PLUGIN_KEYVALIDATE_H

#include <jansson.h>
#include <stddef.h>

/* Entropy (bits) at which the strength part of the score is full. */
#define KEYVALIDATE_FULL_BITS 192
/* Below this many bits of estimated entropy a value cannot be a real key. */
#define KEYVALIDATE_MIN_BITS 64
/* A run of the same character at least this long is an issue. */
#define KEYVALIDATE_MAX_RUN 6
/* Default minimum length when the catalog entry documents none. */
#define KEYVALIDATE_DEFAULT_MIN 16
/* Prefixes looked at per entry. */
#define KEYVALIDATE_MAX_PREFIXES 16

/*
 * {"is_valid": bool, "strength_score": 0..100, "issues": [..], "recommendations": [..]}
 * as a new object, or NULL on out of memory. entry is the provider's catalog
 * entry (borrowed; may be NULL: no format checks).
 */
json_t *keyvalidate_check(const unsigned char *key, size_t len, const json_t *entry);

/* Shannon entropy of the bytes in bits per byte (0 for len 0). */
double keyvalidate_entropy(const unsigned char *s, size_t len);

#endif
