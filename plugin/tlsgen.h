/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The plugin's AutoMTLS identity (go-plugin's generateCert, in C): a fresh
 * ECDSA P-256 key and a self-signed certificate made once per process. The
 * same pair is the server certificate of the main listener (Vault dials us)
 * and the client certificate of the broker dial (we dial Vault): Vault trusts
 * exactly the certificate printed in field 6 of the handshake line, and
 * nothing else.
 *
 * Certificate: subject CN=localhost, O=byok; SAN DNS:localhost (Go ignores the
 * CN); EKU serverAuth + clientAuth; positive random 127-bit serial; NotBefore
 * now - 30 s (clock skew between Vault and us is zero, but Go and OpenSSL
 * compare with second granularity), NotAfter + 30 years like go-plugin (the
 * process may live as long as Vault does).
 */
#ifndef BYOK_PLUGIN_TLSGEN_H
#define BYOK_PLUGIN_TLSGEN_H

#include <stddef.h>

#include "common/err.h"
#include "common/secret.h"

struct tlsgen {
    struct secret *key_pem; /* PKCS#8 PEM of the private key, in the secure heap */
    char *cert_pem;         /* PEM of the certificate, NUL-terminated */
    char *cert_b64;         /* base64 (standard alphabet, no '=' padding, no newlines) of the DER */
    unsigned char *cert_der;
    size_t cert_der_len;
};

/* Fills *t. The secure heap must be initialised (secret_heap_init). */
MUST_USE enum err tlsgen_make(struct tlsgen *t);

/* Wipes and frees everything tlsgen_make filled; accepts a zeroed struct. */
void tlsgen_done(struct tlsgen *t);

/*
 * Raw standard base64 (Go's base64.RawStdEncoding): what go-plugin decodes
 * field 6 with; padding would make it fail. Returns a malloc'd string or NULL.
 */
char *tlsgen_b64_raw(const unsigned char *data, size_t len);

#endif
