/* SPDX-License-Identifier: MPL-2.0 */
#include "common/azure.h"

#include <string.h>

bool azure_name_ok(const char *s)
{
    if (s == NULL || s[0] == '\0' || s[0] == '.') {
        return false;
    }
    size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-");
    return s[n] == '\0' && n <= AZURE_NAME_MAX;
}
