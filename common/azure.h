/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The one rule for an Azure OpenAI deployment name or api-version, both of
 * which the agent puts into a request URL (a path segment and a query value):
 * 1..AZURE_NAME_MAX of A-Z a-z 0-9 . _ -, not starting with a dot ("." and
 * ".." would be dot segments, which curl resolves, RFC 3986 5.2.4, and the call
 * would leave the deployment's path). The plugin checks key metadata with it
 * when a key is written; the agent checks again when it builds a call.
 */
#ifndef BYOK_COMMON_AZURE_H
#define BYOK_COMMON_AZURE_H

#include <stdbool.h>

#define AZURE_NAME_MAX 128

/* s (NULL is refused) follows the rule above. */
bool azure_name_ok(const char *s);

#endif
