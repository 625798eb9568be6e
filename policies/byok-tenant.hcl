# SPDX-License-Identifier: MPL-2.0
#
# byok-tenant: a tenant's administrators, through an identity entity whose
# metadata has tenant=<tenant id> (set by the auth method's alias or by
# `vault write identity/entity ... metadata=tenant=acme`). Vault resolves the
# template per request; a token without that metadata gets nothing from the
# templated rules (Vault drops a rule whose template cannot be resolved).
#
# Grants: the tenant's own summary, keys (store, describe, rotate, revoke),
# settings and usage, and read access to the provider catalog.
# Never: creds (plaintext is for agents only), another tenant, config,
# rotate-root, deleting the tenant itself (a crypto-shred is an admin act).
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

# Even combined with a policy that grants it, a tenant token never reads plaintext.
path "byok/tenants/+/creds/*" {
  capabilities = ["deny"]
}

path "byok/providers" {
  capabilities = ["list"]
}

path "byok/providers/*" {
  capabilities = ["read", "list"]
}
