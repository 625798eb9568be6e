/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Compact JSON text of a jansson value, byte for byte what
 * json_dumps(v, JSON_COMPACT) gives, at a fraction of its cost.
 *
 * jansson's encoder decodes every character of every string as UTF-8, calls
 * back per run of characters, and keeps a hash table of every container it
 * enters (keyed by a printf'd pointer) to find cycles: a 1.7 KB key record took
 * ~157,000 instructions, the largest single part of a key write. Here strings
 * are copied in runs between the bytes JSON must escape (found eight at a
 * time), so the same record takes ~36,000. The output is checked against
 * json_dumps in the unit tests and by a fuzz target.
 *
 * Strings are not re-validated as UTF-8: jansson validates every string it
 * creates (json_string, json_loads); json_string_nocheck is not used in this
 * project. Reals are formatted by jansson itself (json_dump_callback), so
 * their text is jansson's. Nesting deeper than JSONW_MAX_DEPTH fails, where
 * jansson would fail on a cycle.
 *
 * Every intermediate buffer is wiped when it grows and the result is a plain
 * malloc block: callers wipe and free() it, as they did json_dumps text.
 */
#ifndef BYOK_COMMON_JSONW_H
#define BYOK_COMMON_JSONW_H

#include <jansson.h>
#include <stddef.h>

/*
 * jansson's parser takes 2048 levels (JSON_PARSER_MAX_DEPTH, private to it);
 * parsed values are then placed a few levels down in what we write (an app's
 * tool-call arguments become an Anthropic block's "input", five levels
 * down), so the limit leaves room above the parser's.
 */
#define JSONW_MAX_DEPTH (2048 + 64)

/*
 * Compact text of v (an object or an array, as json_dumps without
 * JSON_ENCODE_ANY), NUL-terminated; *ret_len (may be NULL) gets its length.
 * NULL when v is not an object or array, nests too deep, or memory runs out.
 */
char *jsonw_dumps(const json_t *v, size_t *ret_len);

#endif
