/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The mount's settings (path `config`, see docs/api.md), stored at storage key
 * "config" and cached in memory (dropped by byok_invalidate("config")).
 */
#ifndef BYOK_PLUGIN_CONFIG_H
#define BYOK_PLUGIN_CONFIG_H

#include <jansson.h>
#include <stdint.h>

#include "common/err.h"
#include "plugin/framework.h"
#include "plugin/storage.h"

struct byok;

#define CONFIG_STORAGE_KEY "config"
/* Limits on config writes, each a 400 naming the field. */
#define CONFIG_MAX_LOCAL_HOSTS 32
#define CONFIG_MAX_HOST_LEN 253 /* a DNS name (RFC 1035) */
/* budget_lease_ttl: seconds a budget lease holds without renewal (paths_budget.c). */
#define CONFIG_BUDGET_LEASE_TTL_DEFAULT 300
#define CONFIG_BUDGET_LEASE_TTL_MIN 10
#define CONFIG_BUDGET_LEASE_TTL_MAX 3600

/*
 * The effective config with defaults filled in, as a new reference the caller
 * json_decref's: {creds_ttl (seconds), max_key_versions, default_budget_tier,
 * allowed_providers [], local_hosts []}. It is the cached document itself when
 * warm, shared between threads: never modify it (json_deep_copy to edit).
 */
MUST_USE enum err config_get_shared(struct byok *b, struct storage *st, json_t **ret_config);

/*
 * Whether config (from config_get_shared) lets tenants use provider (key
 * writes, settings): an empty allowed_providers allows every provider.
 */
bool config_provider_allowed(const json_t *config, const char *provider);

/* Paths: config (read, update). */
extern const struct fw_path paths_config[];

#endif
