# SPDX-License-Identifier: MPL-2.0
#
# byok-admin: operators of the byok mount. Manages the mount's config, KEK
# rotation, the provider catalog and every tenant's keys, settings and usage.
# It deliberately does NOT grant tenants/<t>/creds/*: administering keys never
# needs their plaintext (only agents read creds, see byok-agent.hcl), nor
# tenants/<t>/budget-lease or rate-lease (agents take leases; the summary
# shows the budget's).
# Assumes the engine is mounted at byok/; render another mount with
#   sed 's#"byok/#"<mount>/#' byok-admin.hcl

path "byok/config" {
  capabilities = ["create", "read", "update"]
}

# New KEK version; rewraps every tenant data key.
path "byok/config/rotate-root" {
  capabilities = ["create", "update"]
}

path "byok/providers" {
  capabilities = ["list"]
}

path "byok/providers/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}

path "byok/tenants" {
  capabilities = ["list"]
}

# Summary; delete crypto-shreds the tenant.
path "byok/tenants/+" {
  capabilities = ["read", "delete"]
}

path "byok/tenants/+/settings" {
  capabilities = ["create", "read", "update"]
}

path "byok/tenants/+/keys" {
  capabilities = ["list"]
}

path "byok/tenants/+/keys/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}

path "byok/tenants/+/usage" {
  capabilities = ["read"]
}
