/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Wiping allocator for jansson. Creds replies carry a provider key and login
 * replies a Vault token; jansson copies strings into its own allocations, so
 * every jansson free must wipe.
 *
 * jansson's free callback gets no size. A size prefix in front of each block
 * would make every json_dumps() result a pointer that plain free() must never
 * see (one slip is heap corruption), so the size comes from glibc's
 * malloc_usable_size() instead: blocks stay ordinary malloc blocks, and the
 * whole usable size (>= the requested size) is wiped.
 */
#ifndef BYOK_AGENT_JALLOC_H
#define BYOK_AGENT_JALLOC_H

#include <stddef.h>

/* Installs the allocator (json_set_alloc_funcs). Call before any jansson use. */
void jalloc_install(void);

/*
 * The same wipe-on-free for OpenSSL (CRYPTO_set_mem_functions: TLS buffers
 * hold Vault replies in plaintext after decryption) and libcurl
 * (curl_global_init_mem: request buffers hold the credential header, receive
 * buffers the creds reply). Call first thing in main, before any OpenSSL or
 * curl use; it also performs curl_global_init. Returns 0 on success.
 */
int jalloc_install_libs(void);
/* Exposed for tests. */
void *jalloc_malloc(size_t n);
void jalloc_free(void *p);

#endif
