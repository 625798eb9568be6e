/* SPDX-License-Identifier: MPL-2.0 */
/* Skeleton: replaced by the full module shortly. */
#include "plugin/catalog.h"

enum err catalog_get(struct byok *b, struct storage *st, const char *name, json_t **ret_entry)
{
    return ERR_NOTFOUND;
}

bool catalog_is_builtin(const char *name)
{
    return false;
}

json_t *catalog_builtin(const char *name)
{
    return NULL;
}

enum err catalog_price(const json_t *entry, const char *model, long long prompt_tokens,
                       long long completion_tokens, double *ret_usd)
{
    return ERR_NOTFOUND;
}

const struct fw_path paths_providers[] = {
    {.pattern = "providers/", .synopsis = "Provider catalog."},
    {.pattern = NULL},
};
