#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# The agent's other Vault auth methods and the original platform's endpoint.
# AppRole: the agent logs in with role_id/secret_id files and reads creds with
# the token it got. Kubernetes: a service-account JWT (RS256, signed here with a
# throwaway key whose public half Vault's kubernetes auth is configured with)
# logs in; a JWT signed by another key is refused and the agent answers 503
# without calling the provider. POST /api/brain/ai/chat answers in the
# platform's shape with the same routing and accounting.
. "$(dirname "$0")/lib.sh"

CASES=("approle: agent logs in and the call succeeds"
    "approle: the provider saw the tenant's key"
    "brain chat: platform shape (response, provider, model, usage, cost_usd)"
    "brain chat: cost is tokens x catalog price"
    "approle agent stops cleanly on SIGTERM, no sanitizer report"
    "kubernetes: agent logs in with a service-account JWT and the call succeeds"
    "kubernetes agent stops cleanly on SIGTERM, no sanitizer report"
    "kubernetes: a JWT from another signer is refused (503, nothing sent upstream)"
    "kubernetes (bad signer) agent stops cleanly on SIGTERM, no sanitizer report"
    "canary: nowhere but the provider request")

lib_up && lib_require "$AGENT_BIN" || t_block_all
KEY=$(lib_canary)
key_put acme openai "$KEY"
SOCK=$AGENT_DIR/acme.sock
LISTENERS="[{\"path\": \"$SOCK\", \"mode\": \"0660\", \"tenant\": \"acme\", \"app\": \"auth\"}]"

# ---- AppRole ----
vault_api POST auth/approle/role/byok-agent '{"token_policies":["byok-agent"],"token_ttl":"1h"}'
[ "$VAULT_CODE" -lt 300 ] || t_diag "approle role: HTTP $VAULT_CODE $VAULT_BODY"
vault_api GET auth/approle/role/byok-agent/role-id
ROLE_ID=$(echo "$VAULT_BODY" | jq -r .data.role_id)
vault_api POST auth/approle/role/byok-agent/secret-id
SECRET_ID=$(echo "$VAULT_BODY" | jq -r .data.secret_id)
(
    umask 077
    printf '%s' "$ROLE_ID" >"$LIB_TMP/role_id"
    printf '%s' "$SECRET_ID" >"$LIB_TMP/secret_id"
)
agent_config "$LISTENERS" ".vault |= (del(.token_file) | .approle = {role_id_file: \"$LIB_TMP/role_id\", secret_id_file: \"$LIB_TMP/secret_id\"})"
if agent_start; then
    since=$(mock_last_seq)
    call "$SOCK" POST /v1/chat/completions "$(chat_body "openai/$CHAT_MODEL" false 4)"
    t_eq "approle: agent logs in and the call succeeds" "$CODE $(hdr X-BYOK-Provider)" "200 openai"
    # Compared in jq so that a failure never prints the key.
    seen=$(mock_requests_since "$since" | K="Bearer $KEY" jq -r \
        '"\(length) request(s), \([.[] | select(.headers.Authorization[0] == env.K)] | length) with the tenant key"')
    t_eq "approle: the provider saw the tenant's key" "$seen" "1 request(s), 1 with the tenant key"

    call "$SOCK" POST /api/brain/ai/chat '{"message":"hello platform","task_type":"chat","model_preference":"openai/gpt-4o-mini"}'
    shape=$(echo "$BODY" | jq -r '[(.response|type), .provider, .model, (.usage.prompt_tokens|type), (.usage.completion_tokens|type), (.cost_usd|type)] | join(" ")' 2>/dev/null)
    t_eq "brain chat: platform shape (response, provider, model, usage, cost_usd)" \
        "$CODE $shape" "200 string openai gpt-4o-mini number number number"
    p=$(echo "$BODY" | jq -r .usage.prompt_tokens 2>/dev/null)
    c=$(echo "$BODY" | jq -r .usage.completion_tokens 2>/dev/null)
    want=$(cost_of openai "$p" "$c")
    got=$(echo "$BODY" | jq -r .cost_usd 2>/dev/null)
    t_num_eq "brain chat: cost is tokens x catalog price" "$got" "$want"
    agent_stop_check "approle agent stops cleanly on SIGTERM, no sanitizer report"
else
    LIB_BLOCKED_REASON="byok-agent with approle did not start (see $AGENT_LOG)"
    t_blocked "${CASES[@]:0:5}"
fi

# ---- Kubernetes ----
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
make_jwt() { # make_jwt KEYFILE: a service-account token for byok/byok-agent, valid 10 minutes
    local now header payload sig
    now=$(date +%s)
    header=$(printf '{"alg":"RS256","typ":"JWT"}' | b64url)
    payload=$(printf '{"iss":"kubernetes/serviceaccount","sub":"system:serviceaccount:byok:byok-agent","kubernetes.io/serviceaccount/namespace":"byok","kubernetes.io/serviceaccount/service-account.name":"byok-agent","iat":%d,"exp":%d}' \
        "$now" $((now + 600)) | b64url)
    sig=$(printf '%s.%s' "$header" "$payload" | openssl dgst -sha256 -sign "$1" -binary | b64url)
    printf '%s.%s.%s' "$header" "$payload" "$sig"
}
openssl genrsa -out "$LIB_TMP/sa.key" 2048 2>/dev/null
openssl rsa -in "$LIB_TMP/sa.key" -pubout -out "$LIB_TMP/sa.pub" 2>/dev/null
openssl genrsa -out "$LIB_TMP/other.key" 2048 2>/dev/null
vault_api POST auth/kubernetes/config "$(jq -n --rawfile k "$LIB_TMP/sa.pub" '{pem_keys: [$k]}')"
[ "$VAULT_CODE" -lt 300 ] || t_diag "kubernetes config: HTTP $VAULT_CODE $VAULT_BODY"
vault_api POST auth/kubernetes/role/byok-agent \
    '{"bound_service_account_names":["byok-agent"],"bound_service_account_namespaces":["byok"],"token_policies":["byok-agent"],"token_ttl":"1h"}'
[ "$VAULT_CODE" -lt 300 ] || t_diag "kubernetes role: HTTP $VAULT_CODE $VAULT_BODY"
make_jwt "$LIB_TMP/sa.key" >"$LIB_TMP/sa.jwt"
agent_config "$LISTENERS" ".vault |= (del(.token_file) | .kubernetes = {role: \"byok-agent\", jwt_file: \"$LIB_TMP/sa.jwt\"})"
if agent_start; then
    call "$SOCK" POST /v1/chat/completions "$(chat_body "openai/$CHAT_MODEL" false 4)"
    t_eq "kubernetes: agent logs in with a service-account JWT and the call succeeds" \
        "$CODE $(hdr X-BYOK-Provider)" "200 openai"
    agent_stop_check "kubernetes agent stops cleanly on SIGTERM, no sanitizer report"
else
    t_fail "kubernetes: agent logs in with a service-account JWT and the call succeeds" "agent did not start"
    t_fail "kubernetes agent stops cleanly on SIGTERM, no sanitizer report" "agent did not start"
fi

make_jwt "$LIB_TMP/other.key" >"$LIB_TMP/sa.jwt"
if agent_start; then
    since=$(mock_last_seq)
    call "$SOCK" POST /v1/chat/completions "$(chat_body "openai/$CHAT_MODEL" false 4)"
    n=$(mock_requests_since "$since" | jq length)
    t_eq "kubernetes: a JWT from another signer is refused (503, nothing sent upstream)" \
        "$CODE $(echo "$BODY" | jq -r '.error | type' 2>/dev/null) $n" "503 object 0"
    agent_stop_check "kubernetes (bad signer) agent stops cleanly on SIGTERM, no sanitizer report"
else
    t_fail "kubernetes: a JWT from another signer is refused (503, nothing sent upstream)" "agent did not start"
    t_fail "kubernetes (bad signer) agent stops cleanly on SIGTERM, no sanitizer report" "agent did not start"
fi

canary_scan "canary: nowhere but the provider request" "$KEY"
t_done
