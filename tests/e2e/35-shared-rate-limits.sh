#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# A tenant's rpm_limit and tpm_limit across agent nodes (docs/agent.md, Rate
# limits): two agents (nodes A and B, their own node_id) on one Vault take
# rate leases from the plugin (tenants/<t>/rate-lease), and the plugin grants
# at most the limit per one-minute window (aligned to the wall clock) in
# total. The cases run within one window: the script waits for the next
# minute when less than 15 s are left of this one (at most once).
#   rpm      rpm_limit 6, calls alternating between the nodes: six answered
#            in total (not twelve), the seventh (on either node) is 429
#            tenant_rpm_exceeded with Retry-After until the window ends, and
#            nothing more is sent.
#   tpm      tpm_limit 60, calls without max_tokens (estimate 12 tokens,
#            counted with 20): three answered across the nodes, the fourth
#            is 429 tenant_tpm_exceeded (each node alone, per node, would
#            have answered three).
#   key      the tenant's openai key with rate_limit 4 (no tenant limits), calls
#            alternating between the nodes: four answered in total (the
#            key's rate lease, kind "key"), the fifth is 429 key_rate_limited
#            on both nodes with Retry-After until the window ends, "across the
#            agents"; the mock saw four.
#   fallback agent C's Vault token has an older agent policy without the
#            rate-lease rule: C logs the fallback at warn (status 403), counts
#            it, and enforces rpm_limit 2 per node with its own bucket.
#   down     Vault stopped (SIGSTOP) after a call of a tenant with rpm_limit 2:
#            the next call's lease request times out (vault.timeout_ms 5 s) and
#            node A falls back to its own bucket: two calls answered, the
#            third 429 "on this agent"; the fallback said at warn.
# Metrics byok_rate_leases_total and byok_rate_lease_fallbacks_total; no key
# in any file of the run but the mock's.
. "$(dirname "$0")/lib.sh"

CASES=("rpm_limit 6 on two nodes: six calls answered in total"
    "rpm_limit 6 on two nodes: the seventh is 429 tenant_rpm_exceeded on both, Retry-After until the window ends"
    "rpm_limit 6 on two nodes: the mock saw six requests"
    "tpm_limit 60 on two nodes: three calls answered, the fourth is 429 tenant_tpm_exceeded, nothing sent"
    "key rate_limit 4 on two nodes: four calls answered in total, the mock saw four"
    "key rate_limit 4 on two nodes: the fifth is 429 key_rate_limited on both, Retry-After until the window ends"
    "leases counted: byok_rate_leases_total on both nodes"
    "fallback: no rate-lease in the policy: warn logged once with status 403, fallback counted"
    "fallback: rpm_limit 2 enforced per node: two answered, the third 429 tenant_rpm_exceeded"
    "down: Vault stopped: calls go on per node (two answered, then 429 on this agent), warn logged"
    "agent B stops cleanly on SIGTERM, no sanitizer report"
    "agent C stops cleanly on SIGTERM, no sanitizer report"
    "agent stops cleanly on SIGTERM, no sanitizer report"
    "canary: nowhere but the provider request")

lib_up && lib_require "$AGENT_BIN" || t_block_all

declare -A KEYS
# tenant_setup TENANT SETTINGS_JSON: a canary openai key, then the settings.
tenant_setup() {
    KEYS[$1]=$(lib_canary)
    key_put "$1" openai "${KEYS[$1]}" || t_diag "$1 key not written"
    vault_api PUT "byok/tenants/$1/settings" "$2" "$ADMIN_TOKEN"
    [ "$VAULT_CODE" -lt 300 ] || t_diag "$1 settings: HTTP $VAULT_CODE $VAULT_BODY"
}
tenant_setup rpm '{"preferred_providers":["openai"],"rpm_limit":6}'
tenant_setup tpm '{"preferred_providers":["openai"],"tpm_limit":60}'
tenant_setup old '{"preferred_providers":["openai"],"rpm_limit":2}'
tenant_setup down '{"preferred_providers":["openai"],"rpm_limit":2}'
tenant_setup key '{"preferred_providers":["openai"]}'
vault_api PUT byok/tenants/key/keys/openai/production '{"rate_limit": 4}' "$ADMIN_TOKEN"
[ "$VAULT_CODE" -lt 300 ] || t_diag "key rate_limit: HTTP $VAULT_CODE $VAULT_BODY"

sock_json() { echo "{\"path\": \"$2/$1.sock\", \"mode\": \"0660\", \"tenant\": \"$1\", \"app\": \"srl\", \"metrics\": true}"; }
agent_config "[$(sock_json rpm "$AGENT_DIR"),$(sock_json tpm "$AGENT_DIR"),$(sock_json down "$AGENT_DIR"),$(sock_json key "$AGENT_DIR")]"
agent_start || t_block_all

# another_agent NAME LISTENERS_JSON [JQ_FILTER]: a second node from AGENT_CONFIG in
# $LIB_TMP/agent-NAME with node_id e2e-NAME; sets NODE_PID.
another_agent() {
    local dir=$LIB_TMP/agent-$1
    mkdir -p "$dir"
    chmod 0711 "$dir"
    jq --argjson l "$2" --arg n "e2e-$1" ".listeners = \$l | .usage.node_id = \$n | ${3:-.}" \
        "$AGENT_CONFIG" >"$dir/agent.json"
    lib_spawn "$dir/agent.log" bash -c 'cd "$1" && exec "$2" -c "$3"' agent "$dir" "$AGENT_BIN" "$dir/agent.json"
    NODE_PID=$LIB_LAST_PID
    local s
    for s in $(echo "$2" | jq -r '.[].path'); do
        lib_wait_proc "$NODE_PID" "$LIB_WAIT_START" test -S "$s" || return 1
    done
}
B_DIR=$LIB_TMP/agent-b
another_agent b "[$(sock_json rpm "$B_DIR"),$(sock_json tpm "$B_DIR"),$(sock_json key "$B_DIR")]" || t_block_all
B_PID=$NODE_PID

# Agent C: a token of an agent policy written before rate-lease existed.
C_DIR=$LIB_TMP/agent-c
OLD_POLICY=$(echo "$AGENT_POLICY" | grep -v rate-lease)
vault_api PUT sys/policies/acl/byok-agent-old "$(jq -n --arg p "$OLD_POLICY" '{policy: $p}')"
vault_api POST auth/token/create '{"policies":["byok-agent-old"],"ttl":"2h","renewable":true}'
C_TOKEN_FILE=$LIB_TMP/agent-c-token
(
    umask 077
    echo "$VAULT_BODY" | jq -r -j .auth.client_token >"$C_TOKEN_FILE"
)
another_agent c "[$(sock_json old "$C_DIR")]" ".vault.token_file = \"$C_TOKEN_FILE\"" || t_block_all
C_PID=$NODE_PID

error_code() { echo "$BODY" | jq -r .error.code 2>/dev/null; }
NOMAX='{"model":"auto","messages":[{"role":"user","content":"one two three four"}]}'

# refusal PATTERN: the last reply as "CODE error-code MATCH RA; ", MATCH whether its message
# matches PATTERN (a jq regex), RA "ra-ok" when its Retry-After is the seconds left of the window
# (window_end; 2 s early to 1 s late allowed), else what it was and what was wanted.
refusal() {
    local ra want
    ra=$(hdr Retry-After)
    want=$((window_end - $(date +%s)))
    if [[ $ra =~ ^[0-9]+$ ]] && [ "$ra" -ge $((want - 2)) ] && [ "$ra" -le $((want + 1)) ]; then
        ra=ra-ok
    else
        ra="ra='$ra' (want about $want)"
    fi
    echo "$CODE $(error_code) $(echo "$BODY" | jq -r --arg p "$1" '.error.message | test($p)' 2>/dev/null) $ra; "
}

# One window for the shared cases (they take about 3 s, under ASan too): at least 15 s of this
# minute left, or wait for the next one.
left=$((60 - $(date +%s) % 60))
if [ "$left" -lt 15 ]; then
    t_diag "waiting $((left + 1)) s for the next minute"
    sleep $((left + 1))
fi
window_end=$(($(date +%s) / 60 * 60 + 60))

# ---- rpm_limit across nodes -------------------------------------------------------------------
since=$(mock_last_seq)
answered=0
for i in 1 2 3 4 5 6; do
    if [ $((i % 2)) = 1 ]; then sock=$AGENT_DIR/rpm.sock; else sock=$B_DIR/rpm.sock; fi
    call "$sock" POST /v1/chat/completions "$(chat_body auto false 3)"
    [ "$CODE" = 200 ] && answered=$((answered + 1))
done
t_eq "${CASES[0]}" "$answered" 6
seventh=""
for sock in "$AGENT_DIR/rpm.sock" "$B_DIR/rpm.sock"; do
    call "$sock" POST /v1/chat/completions "$(chat_body auto false 3)"
    seventh+=$(refusal "rpm_limit of 6 requests per minute is reached across")
done
t_eq "${CASES[1]}" "$seventh" "429 tenant_rpm_exceeded true ra-ok; 429 tenant_rpm_exceeded true ra-ok; "
t_eq "${CASES[2]}" "$(mock_requests_since "$since" | jq length)" 6

# ---- tpm_limit across nodes -------------------------------------------------------------------
since=$(mock_last_seq)
codes=""
for sock in "$AGENT_DIR/tpm.sock" "$B_DIR/tpm.sock" "$AGENT_DIR/tpm.sock" "$B_DIR/tpm.sock"; do
    call "$sock" POST /v1/chat/completions "$NOMAX"
    codes+="$CODE "
done
t_eq "${CASES[3]}" "$codes$(error_code) $(mock_requests_since "$since" | jq length)" \
    "200 200 200 429 tenant_tpm_exceeded 3"

# ---- a key's rate_limit across nodes ----------------------------------------------------------
since=$(mock_last_seq)
answered=0
for i in 1 2 3 4; do
    if [ $((i % 2)) = 1 ]; then sock=$AGENT_DIR/key.sock; else sock=$B_DIR/key.sock; fi
    call "$sock" POST /v1/chat/completions "$(chat_body auto false 3)"
    [ "$CODE" = 200 ] && answered=$((answered + 1))
done
t_eq "${CASES[4]}" "$answered $(mock_requests_since "$since" | jq length)" "4 4"
fifth=""
for sock in "$AGENT_DIR/key.sock" "$B_DIR/key.sock"; do
    call "$sock" POST /v1/chat/completions "$(chat_body auto false 3)"
    fifth+=$(refusal "rate_limit across the agents")
done
t_eq "${CASES[5]}" "$fifth$(mock_requests_since "$since" | jq length)" \
    "429 key_rate_limited true ra-ok; 429 key_rate_limited true ra-ok; 4"
t_diag "done $(($(date +%s) - window_end + 60)) s into the window"

# leases NODE_SOCKET: the node's rate leases answered (granted + short).
leases() {
    curl -s -m 5 --unix-socket "$1" http://localhost/metrics |
        awk '/^byok_rate_leases_total\{result="(granted|short)"\}/ { s += $2 } END { print s + 0 }'
}
la=$(leases "$AGENT_DIR/rpm.sock")
lb=$(leases "$B_DIR/rpm.sock")
t_eq "${CASES[6]}" "$([ "$la" -ge 2 ] && [ "$lb" -ge 2 ] && echo both)" both
t_diag "rate leases: node A $la, node B $lb"

# ---- fallback: an agent policy without rate-lease ---------------------------------------------
codes=""
for i in 1 2 3; do
    call "$C_DIR/old.sock" POST /v1/chat/completions "$(chat_body auto false 3)"
    codes+="$CODE "
done
codes+=$(error_code)
warns=$(grep -c '"rate lease failed; the tenant' "$C_DIR/agent.log")
status=$(grep -m1 '"rate lease failed; the tenant' "$C_DIR/agent.log" | jq -r '"\(.["@level"]) \(.status) \(.tenant)"' 2>/dev/null)
fallbacks=$(curl -s -m 5 --unix-socket "$C_DIR/old.sock" http://localhost/metrics |
    awk '/^byok_rate_lease_fallbacks_total / { print $2 }')
t_eq "${CASES[7]}" "$warns $status $fallbacks" "1 warn 403 old 1"
t_eq "${CASES[8]}" "$codes" "200 200 429 tenant_rpm_exceeded"

# ---- down: Vault unreachable ------------------------------------------------------------------
call "$AGENT_DIR/down.sock" POST /v1/chat/completions "$(chat_body auto false 3)"
codes="$CODE "
kill -STOP "$VAULT_PID"
for i in 1 2 3; do
    call "$AGENT_DIR/down.sock" POST /v1/chat/completions "$(chat_body auto false 3)"
    codes+="$CODE "
done
kill -CONT "$VAULT_PID"
codes+="$(echo "$BODY" | jq -r '.error.message | test("on this agent")' 2>/dev/null) "
codes+=$(grep '"rate lease failed; the tenant' "$AGENT_LOG" | jq -r 'select(.tenant == "down") | .["@level"]' 2>/dev/null | head -1)
t_eq "${CASES[9]}" "$codes" "200 200 200 429 true warn"

SAVED_PID=$AGENT_PID SAVED_LOG=$AGENT_LOG
AGENT_PID=$B_PID AGENT_LOG=$B_DIR/agent.log
agent_stop_check "${CASES[10]}"
AGENT_PID=$C_PID AGENT_LOG=$C_DIR/agent.log
agent_stop_check "${CASES[11]}"
AGENT_PID=$SAVED_PID AGENT_LOG=$SAVED_LOG
agent_stop_check "${CASES[12]}"
canary_scan "${CASES[13]}" "${KEYS[@]}"
t_done
[ "$T_FAILED" -eq 0 ]
