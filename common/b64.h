/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Strict base64 decoding (RFC 4648 section 4, the standard alphabet): the
 * one decoder of the plugin's stored ciphertexts (plugin/envelope.c) and of
 * a service-account key's PEM body (common/gcpkey.c). OpenSSL's
 * EVP_DecodeBlock lets stray '=' through and its EVP_Decode* context keeps
 * the text in a block it frees unwiped; this writes only into the caller's
 * buffer and keeps no copy.
 */
#ifndef BYOK_COMMON_B64_H
#define BYOK_COMMON_B64_H

#include <stdbool.h>
#include <stddef.h>

/* 0..63 for a character of the standard alphabet, -1 for anything else ('=' included). */
int b64_value(unsigned char c);

/*
 * Decodes in (len bytes) into out (cap bytes): groups of four characters,
 * '=' padding only in the last group (xx== or xxx=), canonical (the bits the
 * padding drops are zero, RFC 4648 section 3.5). With lines, a line break
 * ("\n" or "\r\n") may stand between any two characters (a PEM body). false
 * on anything else or a result longer than cap; out may then hold part of
 * the result (the caller wipes it when it is secret). *ret_len: the bytes
 * written (0 for an empty input).
 */
bool b64_decode(const char *in, size_t len, bool lines, unsigned char *out, size_t cap,
                size_t *ret_len);

#endif
