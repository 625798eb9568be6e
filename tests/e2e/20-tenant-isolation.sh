#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# The tenant isolation matrix through Vault's HTTP API with the repository's
# policy files, and tenant identities set up the way an operator sets them up
# on a real Vault (policies/README.md): the userpass auth method enabled, an
# identity entity per tenant with metadata tenant=<id> and the byok-tenant
# policy, a user attached to it by an entity alias, and a login. Only
# standard Vault endpoints, so 06-real-vault.sh runs this file unchanged
# against a real Vault (the stand-in's own Go matrix, TestIsolationMatrix,
# uses its entity_id token extension instead).
#
# Tenant A cannot list, read, write, rotate or delete anything of tenant B and
# cannot read creds, even its own, nor take budget or rate leases; a login
# whose entity has no tenant metadata gets nothing; the agent token reads
# creds, reports usage and takes rate leases but writes no key or setting;
# the admin manages config, providers and tenants, never creds. Nothing tenant A tried changed tenant B.
. "$(dirname "$0")/lib.sh"

CASES=("userpass enabled, entities, aliases and logins set up"
    "a login carries its tenant's entity"
    "tenants store their own keys"
    "tenant A on every path of tenant B: 403"
    "a login without tenant metadata on tenant B's paths: 403"
    "tenant A: creds (even its own), budget and rate leases, tenant delete and mount-wide paths: 403"
    "tenant A on its own keys, settings, usage, summary, catalog: allowed"
    "agent: reads creds of each tenant (the right key)"
    "agent: no key, setting, config or provider writes (403)"
    "agent: usage report, rate lease, settings read, key list allowed"
    "admin: config, providers, tenants allowed; creds 403"
    "tenant B's key and settings unchanged by tenant A"
    "byok-tenant on the login alias's custom_metadata: own tenant only"
    "canary: nowhere in the run's files but the mock's")

lib_up || t_block_all
A=acme
B=globex

# check WANT METHOD PATH TOKEN [BODY]: appends "METHOD PATH: got CODE" to BAD
# when the status is not WANT. Responses are never printed (creds hold keys).
BAD=""
check() {
    vault_api "$2" "$3" "${5:-}" "$4" >/dev/null
    [ "$VAULT_CODE" = "$1" ] || BAD+="$2 $3: $VAULT_CODE (want $1); "
}
# verdict NAME: ok when no check since the last verdict failed.
verdict() {
    if [ -z "$BAD" ]; then t_ok "$1"; else t_fail "$1" "$BAD"; fi
    BAD=""
}

# ---- identities ----
for f in admin agent tenant; do
    vault_api PUT "sys/policies/acl/iso-$f" "$(jq -n --rawfile p "$BYOK_ROOT/policies/byok-$f.hcl" '{policy: $p}')"
    [ "$VAULT_CODE" -lt 300 ] || BAD+="policy byok-$f: $VAULT_CODE; "
done
vault_api POST sys/auth/userpass '{"type":"userpass"}'
[ "$VAULT_CODE" -lt 300 ] || BAD+="enable userpass: $VAULT_CODE $VAULT_BODY; "
vault_api GET sys/auth
UP_ACCESSOR=$(echo "$VAULT_BODY" | jq -r '.data["userpass/"].accessor // empty')
[ -n "$UP_ACCESSOR" ] || BAD+="no userpass accessor in sys/auth; "

# login_for USER PASSWORD [TENANT]: a userpass user; with TENANT, attached by an
# alias to a new entity with metadata tenant=TENANT and policy iso-tenant
# (without, the user has the policy itself and no tenant metadata). Sets LOGIN
# (the token) and LOGIN_ENTITY (the entity the login got), WANT_ENTITY.
login_for() {
    local user=$1 pw=$2 tenant=${3:-} eid=""
    if [ -n "$tenant" ]; then
        vault_api POST identity/entity "$(jq -n --arg n "$tenant-admins" --arg t "$tenant" \
            '{name: $n, metadata: {tenant: $t}, policies: ["iso-tenant"]}')"
        eid=$(echo "$VAULT_BODY" | jq -r '.data.id // empty')
        vault_api POST identity/entity-alias "$(jq -n --arg n "$user" --arg c "$eid" --arg a "$UP_ACCESSOR" \
            '{name: $n, canonical_id: $c, mount_accessor: $a}')"
        [ "$VAULT_CODE" -lt 300 ] || BAD+="alias $user: $VAULT_CODE $VAULT_BODY; "
        vault_api POST "auth/userpass/users/$user" "$(jq -n --arg p "$pw" '{password: $p}')"
    else
        vault_api POST "auth/userpass/users/$user" "$(jq -n --arg p "$pw" '{password: $p, token_policies: ["iso-tenant"]}')"
    fi
    [ "$VAULT_CODE" -lt 300 ] || BAD+="user $user: $VAULT_CODE $VAULT_BODY; "
    vault_api POST "auth/userpass/login/$user" "$(jq -n --arg p "$pw" '{password: $p}')"
    [ "$VAULT_CODE" = 200 ] || BAD+="login $user: $VAULT_CODE $VAULT_BODY; "
    LOGIN=$(echo "$VAULT_BODY" | jq -r '.auth.client_token // empty')
    LOGIN_ENTITY=$(echo "$VAULT_BODY" | jq -r '.auth.entity_id // empty')
    WANT_ENTITY=$eid
}
login_for alice "pw-$(lib_random_hex 8)" "$A"
TOK_A=$LOGIN
entity_ok="$([ -n "$LOGIN_ENTITY" ] && [ "$LOGIN_ENTITY" = "$WANT_ENTITY" ] && echo yes)"
login_for bob "pw-$(lib_random_hex 8)" "$B"
TOK_B=$LOGIN
[ -n "$LOGIN_ENTITY" ] && [ "$LOGIN_ENTITY" = "$WANT_ENTITY" ] || entity_ok=""
login_for mallory "pw-$(lib_random_hex 8)"
TOK_NONE=$LOGIN
vault_api POST auth/token/create '{"policies":["iso-admin"],"ttl":"1h"}'
TOK_ADMIN=$(echo "$VAULT_BODY" | jq -r '.auth.client_token // empty')
vault_api POST auth/token/create '{"policies":["iso-agent"],"ttl":"1h"}'
TOK_AGENT=$(echo "$VAULT_BODY" | jq -r '.auth.client_token // empty')
for v in TOK_A TOK_B TOK_NONE TOK_ADMIN TOK_AGENT; do [ -n "${!v}" ] || BAD+="no token $v; "; done
[ -z "$BAD" ] || { LIB_BLOCKED_REASON="identity set-up failed: $BAD"; t_block_all; }
verdict "${CASES[0]}"
t_eq "${CASES[1]}" "${entity_ok:-no}" "yes"

# ---- keys ----
KEY_A=$(lib_canary)
KEY_A2=$(lib_canary)
KEY_B=$(lib_canary)
for k in "$KEY_A" "$KEY_A2" "$KEY_B"; do mock_accept "$k"; done
kbody() { K=$1 jq -n '{key_value: env.K}'; }
check 200 PUT "byok/tenants/$A/keys/openai/production" "$TOK_A" "$(kbody "$KEY_A")"
check 200 PUT "byok/tenants/$A/keys/anthropic/production" "$TOK_A" "$(kbody "$KEY_A2")"
check 200 PUT "byok/tenants/$B/keys/openai/production" "$TOK_B" "$(kbody "$KEY_B")"
verdict "${CASES[2]}"

# ---- tenant A and a login without metadata against tenant B ----
INTRUDER=$(jq -n '{key_value: "sk-INTRUDER0000000000000000000000000000000000", rpm_limit: 1}')
B_PATHS=("LIST byok/tenants/$B/keys" "LIST byok/tenants/$B/keys/openai"
    "GET byok/tenants/$B/keys/openai/production" "PUT byok/tenants/$B/keys/openai/production"
    "PUT byok/tenants/$B/keys/openai/staging" "PUT byok/tenants/$B/keys/openai/production/rotate"
    "DELETE byok/tenants/$B/keys/openai/production" "GET byok/tenants/$B/settings"
    "PUT byok/tenants/$B/settings" "GET byok/tenants/$B/usage" "PUT byok/tenants/$B/usage"
    "GET byok/tenants/$B" "DELETE byok/tenants/$B" "GET byok/tenants/$B/creds/openai"
    "PUT byok/tenants/$B/budget-lease" "PUT byok/tenants/$B/rate-lease")
for who in TOK_A TOK_NONE; do
    for mp in "${B_PATHS[@]}"; do
        # shellcheck disable=SC2086 # "METHOD PATH"
        check 403 ${mp% *} "${mp#* }" "${!who}" "$INTRUDER"
    done
    [ "$who" = TOK_A ] && verdict "${CASES[3]}"
done
verdict "${CASES[4]}"

EVIL=$(jq -n '{base_url: "https://evil.example"}')
for mp in "GET byok/tenants/$A/creds/openai" "GET byok/tenants/$A/creds/anthropic" \
    "PUT byok/tenants/$A/budget-lease" "PUT byok/tenants/$A/rate-lease" "DELETE byok/tenants/$A" \
    "LIST byok/tenants" "PUT byok/config" "GET byok/config" \
    "PUT byok/config/rotate-root" "PUT byok/providers/evil" "DELETE byok/providers/openai"; do
    # shellcheck disable=SC2086
    check 403 ${mp% *} "${mp#* }" "$TOK_A" "$EVIL"
done
verdict "${CASES[5]}"

check 200 GET "byok/tenants/$A/keys/openai/production" "$TOK_A"
check 200 LIST "byok/tenants/$A/keys" "$TOK_A"
check 200 LIST "byok/tenants/$A/keys/openai" "$TOK_A"
check 200 PUT "byok/tenants/$A/settings" "$TOK_A" '{"rpm_limit": 30}'
check 200 GET "byok/tenants/$A/settings" "$TOK_A"
check 200 GET "byok/tenants/$A/usage" "$TOK_A"
check 200 GET "byok/tenants/$A" "$TOK_A"
check 200 GET byok/providers/openai "$TOK_A"
check 200 PUT "byok/tenants/$A/keys/anthropic/production/rotate" "$TOK_A" "$(kbody "$KEY_A2")"
check 204 DELETE "byok/tenants/$A/keys/anthropic/production" "$TOK_A"
verdict "${CASES[6]}"

# ---- the agent ----
# creds_is TENANT KEY: "TENANT ok" when the agent's creds read returns KEY
# (compared inside jq: no key is printed).
creds_is() {
    vault_api GET "byok/tenants/$1/creds/openai" "" "$TOK_AGENT" >/dev/null
    echo "$1 $VAULT_CODE $(echo "$VAULT_BODY" | K=$2 jq -r 'if .data.api_key == env.K then "right key" else "wrong key" end' 2>/dev/null)"
}
t_eq "${CASES[7]}" "$(creds_is "$A" "$KEY_A"), $(creds_is "$B" "$KEY_B")" "$A 200 right key, $B 200 right key"
for mp in "PUT byok/tenants/$A/keys/openai/production" "PUT byok/tenants/$A/keys/openai/new" \
    "PUT byok/tenants/$A/keys/openai/production/rotate" "DELETE byok/tenants/$A/keys/openai/production" \
    "GET byok/tenants/$A/keys/openai/production" "PUT byok/tenants/$A/settings" "DELETE byok/tenants/$A" \
    "PUT byok/config" "PUT byok/config/rotate-root" "PUT byok/providers/openai"; do
    # shellcheck disable=SC2086
    check 403 ${mp% *} "${mp#* }" "$TOK_AGENT" "$INTRUDER"
done
verdict "${CASES[8]}"
check 200 PUT "byok/tenants/$A/usage" "$TOK_AGENT" "$(jq -n '{batch_id: "iso-1", records: [{ts: (now | todate),
    provider: "openai", model: "gpt-4o-mini", requests: 1}]}')"
check 200 PUT "byok/tenants/$A/rate-lease" "$TOK_AGENT" '{"kind": "rpm", "amount": 1, "node": "iso-1"}'
check 200 GET "byok/tenants/$A/settings" "$TOK_AGENT"
check 200 LIST "byok/tenants/$A/keys" "$TOK_AGENT"
verdict "${CASES[9]}"

# ---- the admin ----
check 204 PUT byok/config "$TOK_ADMIN" '{"creds_ttl": "10m"}'
check 200 GET byok/config "$TOK_ADMIN"
check 204 PUT byok/providers/custom1 "$TOK_ADMIN" '{"display_name": "Custom", "api_style": "openai",
    "base_url": "https://llm.example.com/v1", "regions": ["eu"], "models": []}'
check 200 LIST byok/tenants "$TOK_ADMIN"
check 200 GET "byok/tenants/$B/keys/openai/production" "$TOK_ADMIN"
check 200 PUT byok/config/rotate-root "$TOK_ADMIN"
check 403 GET "byok/tenants/$A/creds/openai" "$TOK_ADMIN"
check 200 PUT byok/tenants/doomed/keys/openai/production "$TOK_ADMIN" "$(kbody "sk-doomed$(lib_random_hex 20)")"
check 204 DELETE byok/tenants/doomed "$TOK_ADMIN"
verdict "${CASES[10]}"

# ---- nothing of B changed ----
vault_api GET "byok/tenants/$B/creds/openai" "" "$TOK_AGENT" >/dev/null
b_key=$(echo "$VAULT_BODY" | K=$KEY_B jq -r 'if .data.api_key == env.K then "key v\(.data.version)" else "other key" end' 2>/dev/null)
vault_api GET "byok/tenants/$B/settings" "" "$TOK_B" >/dev/null
b_rpm=$(echo "$VAULT_BODY" | jq -r '.data.rpm_limit' 2>/dev/null)
vault_api GET "byok/tenants/$B/keys/openai/staging" "" "$TOK_ADMIN" >/dev/null
t_eq "${CASES[11]}" "$b_key, rpm_limit $b_rpm, staging $VAULT_CODE" "key v1, rpm_limit 0, staging 404"

# ---- the alias variant of byok-tenant (policies/README.md) ----
# The tenant read from the login's alias on the userpass mount, set by an
# admin as the alias's custom_metadata, instead of from the entity.
vault_api PUT sys/policies/acl/iso-tenant-alias "$(jq -n --rawfile p "$BYOK_ROOT/policies/byok-tenant.hcl" \
    --arg t "{{identity.entity.aliases.$UP_ACCESSOR.custom_metadata.tenant}}" \
    '{policy: ($p | gsub("\\{\\{identity\\.entity\\.metadata\\.tenant\\}\\}"; $t))}')"
[ "$VAULT_CODE" -lt 300 ] || BAD+="policy iso-tenant-alias: $VAULT_CODE; "
PW_C="pw-$(lib_random_hex 8)"
vault_api POST auth/userpass/users/carol "$(jq -n --arg p "$PW_C" '{password: $p, token_policies: ["iso-tenant-alias"]}')"
vault_api POST auth/userpass/login/carol "$(jq -n --arg p "$PW_C" '{password: $p}')"
TOK_C=$(echo "$VAULT_BODY" | jq -r '.auth.client_token // empty')
ENT_C=$(echo "$VAULT_BODY" | jq -r '.auth.entity_id // empty')
# Before the alias carries a tenant, carol's login reaches nothing.
check 403 GET "byok/tenants/$A" "$TOK_C"
vault_api POST identity/entity-alias "$(jq -n --arg c "$ENT_C" --arg a "$UP_ACCESSOR" --arg t "$A" \
    '{name: "carol", canonical_id: $c, mount_accessor: $a, custom_metadata: {tenant: $t}}')"
[ "$VAULT_CODE" = 200 ] || BAD+="alias custom_metadata: $VAULT_CODE $VAULT_BODY; "
check 200 GET "byok/tenants/$A/keys/openai/production" "$TOK_C"
check 200 GET "byok/tenants/$A" "$TOK_C"
check 200 PUT "byok/tenants/$A/settings" "$TOK_C" '{"rpm_limit": 40}'
for mp in "GET byok/tenants/$A/creds/openai" "GET byok/tenants/$B" \
    "GET byok/tenants/$B/keys/openai/production" "PUT byok/tenants/$B/settings" "LIST byok/tenants"; do
    # shellcheck disable=SC2086
    check 403 ${mp% *} "${mp#* }" "$TOK_C" "$INTRUDER"
done
verdict "${CASES[12]}"

canary_scan "${CASES[13]}" "$KEY_A" "$KEY_A2" "$KEY_B"
t_done
