# SPDX-License-Identifier: MPL-2.0
#
# byok-tenant: a tenant's administrators, through an identity entity whose
# own metadata has tenant=<tenant id> (`vault write identity/entity ...
# metadata=tenant=acme`). Auth-method mappings such as OIDC claim_mappings set
# alias metadata, which identity.entity.metadata does not see; to use them,
# template on identity.entity.aliases.<mount accessor>.metadata.tenant
# instead (policies/README.md). Vault resolves the
# template per request; a token without that metadata key gets nothing from the
# templated rules (Vault drops a rule whose template cannot be resolved; an
# empty value is substituted as "" and reaches no tenant, policies/README.md).
# The metadata value must be a valid tenant id, [a-z0-9][a-z0-9_-]{0,62}:
# Vault releases before the 2026 templating change substitute a "*" or "+"
# verbatim, and such a value widens every rule below to other tenants
# (policies/README.md).
#
# Grants: the tenant's own summary, keys (store, describe, rotate, revoke),
# settings and usage, and read access to the provider catalog.
# Never: creds (plaintext is for agents only), budget and rate leases (agents
# only: a tenant could take its own allowance away from its nodes),
# another tenant, config, rotate-root, deleting the tenant itself (a
# crypto-shred is an admin act).
# For setups without identity metadata, render-tenant-policy.sh writes a
# concrete copy of this policy for one tenant.

path "byok/tenants/{{identity.entity.metadata.tenant}}" {
  capabilities = ["read"]
}

path "byok/tenants/{{identity.entity.metadata.tenant}}/settings" {
  capabilities = ["create", "read", "update"]
}

path "byok/tenants/{{identity.entity.metadata.tenant}}/keys" {
  capabilities = ["list"]
}

# keys/<provider>/<key_type> and keys/<provider>/<key_type>/rotate
path "byok/tenants/{{identity.entity.metadata.tenant}}/keys/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}

path "byok/tenants/{{identity.entity.metadata.tenant}}/usage" {
  capabilities = ["read"]
}

# Creds (plaintext) are denied at the tenant's own id. Vault applies one rule
# per request, the most specific by its priority order (an exact path, else
# the longest "*" prefix against the "+" patterns: later first wildcard, then
# non-glob over glob, then fewer "+"), and a deny wins over a grant only when
# both are written with the same pattern. These two rules are the most specific
# shapes that cover creds, so another policy on the same token that grants
# byok/*, tenants/*, tenants/<id>/*, tenants/<id>/creds/*, tenants/<id>/creds/+
# or any "+" form of them does not reach plaintext. A grant naming a path
# inside creds/ more precisely (tenants/<id>/creds/openai, .../creds/op*)
# still wins: Vault has no rule that outranks it, so never write one for a
# tenant token.
path "byok/tenants/{{identity.entity.metadata.tenant}}/creds/*" {
  capabilities = ["deny"]
}

path "byok/tenants/{{identity.entity.metadata.tenant}}/creds/+" {
  capabilities = ["deny"]
}

# For a token without tenant metadata (the templated rules above are dropped).
path "byok/tenants/+/creds/*" {
  capabilities = ["deny"]
}

path "byok/providers" {
  capabilities = ["list"]
}

path "byok/providers/*" {
  capabilities = ["read", "list"]
}
