/* SPDX-License-Identifier: MPL-2.0 */
/* Skeleton: replaced by the full module shortly. */
#include "plugin/config.h"

enum err config_get(struct byok *b, struct storage *st, json_t **ret_config)
{
    json_t *c = json_pack("{s:i, s:i, s:s, s:[], s:[sss]}", "creds_ttl", 300, "max_key_versions",
                          10, "default_budget_tier", "MEDIUM", "allowed_providers", "local_hosts",
                          "127.0.0.1", "localhost", "::1");
    if (c == NULL) {
        return ERR_NOMEM;
    }
    *ret_config = c;
    return ERR_OK;
}

const struct fw_path paths_config[] = {
    {.pattern = "config", .synopsis = "Mount settings."},
    {.pattern = NULL},
};
