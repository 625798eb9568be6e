# SPDX-License-Identifier: MPL-2.0
#
# byok-agent: the node agents (byok-agent), logged in with AppRole, Kubernetes
# auth or a token file. They read a tenant's key when that tenant's app makes
# a call, report usage and take budget and rate leases. They cannot write keys,
# settings or config: a compromised node can use keys (which it must, to make
# calls) but cannot plant, rotate or revoke them.
#
# Scope agents per tenant group by replacing "+" with tenant ids (or use one
# role per node pool with its own copy of this policy).

# The only plaintext path.
path "byok/tenants/+/creds/*" {
  capabilities = ["read"]
}

path "byok/tenants/+/usage" {
  capabilities = ["create", "update"]
}

# Budget leases: a node takes a slice of a tenant's remaining monthly budget
# (max_monthly_cost) before spending. An agent token can hold budget of every
# tenant this rule covers (and so starve a tenant's other nodes), but cannot
# raise a cap: settings stay read-only below.
path "byok/tenants/+/budget-lease" {
  capabilities = ["create", "update"]
}

# Rate leases: a node takes a slice of the current minute of a tenant's
# rpm_limit or tpm_limit, so that the limit holds across every node. An agent
# token can take a tenant's whole minute (and so refuse its calls on the other
# nodes for up to a minute), but cannot raise a limit. Without this rule the
# agent enforces the limits per node (docs/admin-guide.md).
path "byok/tenants/+/rate-lease" {
  capabilities = ["create", "update"]
}

# Routing needs the tenant's settings and which keys exist (names only).
path "byok/tenants/+/settings" {
  capabilities = ["read"]
}

path "byok/tenants/+/keys" {
  capabilities = ["list"]
}

path "byok/tenants/+/keys/+" {
  capabilities = ["list"]
}

path "byok/providers" {
  capabilities = ["list"]
}

path "byok/providers/*" {
  capabilities = ["read"]
}

# The agent's own token: it reads its TTL and renews it before it expires, and
# after a 403 it asks lookup-self whether the token is gone or the path was
# refused. Vault's "default" policy grants both; they are here so that a role
# with token_no_default_policy (or a token made with -no-default-policy) works.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}

path "auth/token/renew-self" {
  capabilities = ["update"]
}
