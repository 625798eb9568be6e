#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# Vault namespaces (Vault Enterprise, HCP Vault, OpenBao): the stand-in runs
# with everything (the byok mount, token and AppRole auth, policies) in the
# namespace "admin/team-a", and answers only requests that name it
# (X-Vault-Namespace, a path prefix or both), refusing the others 403 as Vault
# refuses a token from another namespace.
#   namespace   an agent with vault.namespace "admin/team-a" reads creds, calls
#               the provider and reports usage (the ledger has the call); its
#               token lookup works; an agent logging in with AppRole does too
#               (the login carries the namespace).
#   none        the same agent without vault.namespace gets nothing from Vault:
#               503 vault_unavailable, nothing sent upstream, and its log says
#               its token lookup failed.
#   reload      a SIGHUP adding the namespace makes it work, with no restart.
#   config      --check-config refuses a namespace that is not a path of
#               segments (leading or trailing '/', '..', spaces, a CR/LF that
#               would add a header) naming vault.namespace.
# A real Vault in dev mode has no namespaces (Enterprise only): this script
# runs against the stand-in only.
. "$(dirname "$0")/lib.sh"

CASES=("namespace: a keyless call through an agent with vault.namespace succeeds"
    "namespace: the provider saw the tenant's key"
    "namespace: usage reaches the plugin's ledger in the namespace"
    "namespace: the token check (lookup-self) works in the namespace"
    "namespace agent stops cleanly on SIGTERM, no sanitizer report"
    "namespace: an AppRole login in the namespace works and the call succeeds"
    "none: without vault.namespace: 503 vault_unavailable, nothing sent upstream"
    "none: the agent logs that Vault refused it"
    "reload: a SIGHUP adding vault.namespace makes the next call succeed"
    "config: --check-config refuses bad namespaces naming vault.namespace"
    "agent stops cleanly on SIGTERM, no sanitizer report"
    "canary: nowhere but the provider request")

if [ "${BYOK_VAULT:-sim}" = real ]; then
    for c in "${CASES[@]}"; do t_skip "$c" "a real Vault in dev mode has no namespaces (Enterprise only)"; done
    t_done
    exit 0
fi
export VAULT_NAMESPACE=admin/team-a
VAULTSIM_FLAGS="-namespace $VAULT_NAMESPACE"
lib_up && lib_require "$AGENT_BIN" || t_block_all
KEY=$(lib_canary)
key_put acme openai "$KEY" || t_diag "key not written"
SOCK=$AGENT_DIR/acme.sock
LISTENERS="[{\"path\": \"$SOCK\", \"mode\": \"0660\", \"tenant\": \"acme\", \"app\": \"ns\"}]"
BODY_CHAT=$(chat_body "openai/$CHAT_MODEL" false 4)

# ---- with the namespace ----------------------------------------------------------------------
agent_config "$LISTENERS" ".vault.namespace = \"$VAULT_NAMESPACE\" | .keycache.max_ttl_s = 1"
agent_start || t_block_all
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$BODY_CHAT"
t_eq "namespace: a keyless call through an agent with vault.namespace succeeds" \
    "$CODE $(hdr X-BYOK-Provider)" "200 openai"
seen=$(mock_requests_since "$since" | K="Bearer $KEY" jq -r \
    '"\(length) request(s), \([.[] | select(.headers.Authorization[0] == env.K)] | length) with the tenant key"')
t_eq "namespace: the provider saw the tenant's key" "$seen" "1 request(s), 1 with the tenant key"
ledger() {
    vault_api GET byok/tenants/acme/usage "" "$ADMIN_TOKEN"
    [ "$(echo "$VAULT_BODY" | jq -r '.data.requests // 0' 2>/dev/null)" -ge 1 ]
}
lib_wait_for 10 ledger
t_eq "namespace: usage reaches the plugin's ledger in the namespace" \
    "$VAULT_CODE $(echo "$VAULT_BODY" | jq -c '.data.by_model | map_values(.requests)' 2>/dev/null)" \
    "200 {\"openai/$CHAT_MODEL\":1}"
# The agent looks its token up (lookup-self) once it has read it; outside the
# namespace that is refused and logged (see "none" below).
t_check "namespace: the token check (lookup-self) works in the namespace" \
    test "$(grep -c '"vault token lookup failed' "$AGENT_LOG")" = 0
agent_stop_check "namespace agent stops cleanly on SIGTERM, no sanitizer report"

# AppRole: the login itself must carry the namespace (the auth method is in it).
vault_api POST sys/auth/approle '{"type":"approle"}'
[ "$VAULT_CODE" -lt 300 ] || t_diag "enabling approle: HTTP $VAULT_CODE $VAULT_BODY"
vault_api POST auth/approle/role/agent '{"token_policies":["byok-agent"],"token_ttl":"1h"}'
vault_api GET auth/approle/role/agent/role-id
role_id=$(echo "$VAULT_BODY" | jq -r .data.role_id)
vault_api POST auth/approle/role/agent/secret-id
secret_id=$(echo "$VAULT_BODY" | jq -r .data.secret_id)
(
    umask 077
    printf '%s' "$role_id" >"$LIB_TMP/role_id"
    printf '%s' "$secret_id" >"$LIB_TMP/secret_id"
)
agent_config "$LISTENERS" ".vault.namespace = \"$VAULT_NAMESPACE\" | .vault |= (del(.token_file) |
    .approle = {role_id_file: \"$LIB_TMP/role_id\", secret_id_file: \"$LIB_TMP/secret_id\"})"
if agent_start; then
    call "$SOCK" POST /v1/chat/completions "$BODY_CHAT"
    t_eq "namespace: an AppRole login in the namespace works and the call succeeds" \
        "$CODE $(hdr X-BYOK-Provider) $(grep -c '"vault login failed"' "$AGENT_LOG")" "200 openai 0"
    kill -TERM "$AGENT_PID" 2>/dev/null
    wait "$AGENT_PID" 2>/dev/null
else
    t_fail "namespace: an AppRole login in the namespace works and the call succeeds" "agent did not start"
fi

# ---- without it ------------------------------------------------------------------------------
agent_config "$LISTENERS"
agent_start || t_block_all
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$BODY_CHAT"
t_eq "none: without vault.namespace: 503 vault_unavailable, nothing sent upstream" \
    "$CODE $(echo "$BODY" | jq -r .error.code) $(mock_requests_since "$since" | jq length)" \
    "503 vault_unavailable 0"
t_check "none: the agent logs that Vault refused it" grep -q '"vault token lookup failed' "$AGENT_LOG"

# ---- reload adds it --------------------------------------------------------------------------
agent_config "$LISTENERS" ".vault.namespace = \"$VAULT_NAMESPACE\""
kill -HUP "$AGENT_PID"
reloaded() { grep -q '"config reloaded"' "$AGENT_LOG"; }
lib_wait_for 5 reloaded || t_diag "no 'config reloaded' line"
call "$SOCK" POST /v1/chat/completions "$BODY_CHAT"
t_eq "reload: a SIGHUP adding vault.namespace makes the next call succeed" \
    "$CODE $(hdr X-BYOK-Provider)" "200 openai"

# ---- config ----------------------------------------------------------------------------------
bad=""
for ns in "/admin" "admin/" "admin//a" "admin/../sys" "ad min" $'admin\r\nX-Vault-Token: x' ""; do
    jq --arg ns "$ns" '.vault.namespace = $ns' "$AGENT_CONFIG" >"$LIB_TMP/bad.json"
    out=$("$AGENT_BIN" --check-config -c "$LIB_TMP/bad.json" 2>&1)
    rc=$?
    if [ "$rc" = 0 ] || ! grep -q 'vault.namespace: must be a Vault namespace path' <<<"$out"; then
        bad+=" [$(printf '%q' "$ns")]: rc $rc"
    fi
done
t_eq "config: --check-config refuses bad namespaces naming vault.namespace" "${bad:-all refused}" "all refused"

agent_stop_check "agent stops cleanly on SIGTERM, no sanitizer report"
canary_scan "canary: nowhere but the provider request" "$KEY"
t_done
