/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Wiping allocator for jansson. Creds replies carry a provider key and login
 * replies a Vault token; jansson copies strings into its own allocations, so
 * every jansson free must wipe. jansson's free callback gets no size, hence
 * a size prefix in front of each block.
 */
#ifndef BYOK_AGENT_JALLOC_H
#define BYOK_AGENT_JALLOC_H

#include <stddef.h>

/* Installs the allocator (json_set_alloc_funcs). Call before any jansson use. */
void jalloc_install(void);
/* Exposed for tests. */
void *jalloc_malloc(size_t n);
void jalloc_free(void *p);

#endif
