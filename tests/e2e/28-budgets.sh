#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# Monthly budgets (docs/agent.md, Budgets): a tenant's max_monthly_cost is
# enforced through budget leases from the plugin. openai costs 1,000 / 2,000
# USD per million tokens in this run, so a call of max_tokens 3 is estimated
# at 0.018 USD (a 12-token prompt estimate, 3 tokens out) and costs 0.01 (the
# mock counts 4 prompt and 3 completion tokens). budget.lease_percent 50.
#   capped  cap 0.10: calls pass until what is left does not cover the next
#           estimate, then 402 budget_exceeded (OpenAI's error shape, nothing
#           sent); the ledger holds the calls answered, never more than the cap.
#   big     cap 1.00: a call whose max_tokens alone costs more than the cap is
#           402 at once, and takes nothing from the budget: a small call of
#           the same tenant passes on another node.
#   shared  cap 0.10, one tenant on two agents (two nodes): calls alternate;
#           both nodes end in 402 and the ledger holds at most the cap
#           (without the plugin counting the other node's hold, each node
#           would spend the whole cap).
#   raise   cap 0.03 on agent B (keycache.max_ttl_s 2): two calls (or one), then 402;
#           the cap raised to 1.00, the next creds fetch brings it and calls
#           pass again.
#   free    no cap: calls pass and take no lease.
#   down    Vault stopped (SIGSTOP) with the tenant's key cached and no lease
#           yet: 503 budget_unavailable with nothing sent; Vault back, 200.
# Metrics byok_budget_refused_total{tenant,reason} and byok_budget_leases_total;
# the tenant summary's budget block; no key anywhere.
. "$(dirname "$0")/lib.sh"

CASES=("capped: calls answered until the budget does not cover the next one"
    "capped: then 402 budget_exceeded, OpenAI's error shape, nothing sent"
    "capped: the ledger holds the answered calls, at most the cap"
    "capped: the tenant summary shows the budget (cap, spent, what is left)"
    "big: max_tokens costing more than the cap: 402 at once, nothing sent"
    "big: it took nothing: a small call on another node passes"
    "shared: two nodes both end in 402"
    "shared: both nodes answered calls, and the ledger holds at most the cap"
    "raise: cap 0.03: at most two calls, then 402"
    "raise: cap raised to 1.00: calls pass again once the creds are fetched again"
    "free: no cap: calls pass and take no lease"
    "down: Vault stopped, no lease yet: 503 budget_unavailable, nothing sent"
    "down: Vault back: 200"
    "refusals counted: byok_budget_refused_total{tenant,reason}"
    "agent B stops cleanly on SIGTERM, no sanitizer report"
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
for t in capped shared; do
    tenant_setup $t '{"preferred_providers":["openai"],"max_monthly_cost":0.1}'
done
tenant_setup big '{"preferred_providers":["openai"],"max_monthly_cost":1}'
tenant_setup raise '{"preferred_providers":["openai"],"max_monthly_cost":0.03}'
tenant_setup free '{"preferred_providers":["openai"]}'
tenant_setup down '{"preferred_providers":["openai"],"max_monthly_cost":1}'

sock_json() { echo "{\"path\": \"$AGENT_DIR/$1.sock\", \"mode\": \"0660\", \"tenant\": \"$2\", \"app\": \"budget\", \"metrics\": true}"; }
listeners=""
for t in capped big shared free down; do
    listeners+="${listeners:+,}$(sock_json "$t" "$t")"
done
agent_config "[$listeners]" '.budget.lease_percent = 50'
agent_start || t_block_all
# Agent B: another node (its own node_id), short key cache so that settings changes arrive soon.
B_DIR=$LIB_TMP/agent-b
mkdir -p "$B_DIR"
chmod 0711 "$B_DIR"
jq --argjson l "[$(sock_json shared-b shared | sed "s#$AGENT_DIR#$B_DIR#"),$(sock_json raise raise | sed "s#$AGENT_DIR#$B_DIR#"),$(sock_json big-b big | sed "s#$AGENT_DIR#$B_DIR#")]" \
    '.listeners = $l | .usage.node_id = "e2e-b" | .keycache.max_ttl_s = 2' "$AGENT_CONFIG" >"$B_DIR/agent.json"
lib_spawn "$B_DIR/agent.log" bash -c 'cd "$1" && exec "$2" -c "$3"' agent "$B_DIR" "$AGENT_BIN" "$B_DIR/agent.json"
B_PID=$LIB_LAST_PID
lib_wait_proc "$B_PID" "$LIB_WAIT_START" test -S "$B_DIR/big-b.sock" || t_block_all

SMALL=$(chat_body openai/gpt-4o-mini false 3)
# calls_until_402 SOCKET MAX: calls until a 402 (or MAX calls); sets ANSWERED.
calls_until_402() {
    ANSWERED=0
    local i
    for ((i = 0; i < $2; i++)); do
        call "$1" POST /v1/chat/completions "$SMALL"
        [ "$CODE" = 200 ] || break
        ANSWERED=$((ANSWERED + 1))
    done
}
error_of() { echo "$BODY" | jq -r '.error | "\(.code) \(.type) \(if (.message | length) > 0 then "msg" else "no-msg" end)"' 2>/dev/null; }
# ledger_cost TENANT: the ledger's month-to-date cost once every answered call is in it.
ledger_cost() {
    local i
    for i in $(seq 50); do
        [ "$(usage_ledger "$1" .requests)" = "$2" ] && break
        sleep 0.2
    done
    usage_ledger "$1" .cost_usd
}
# le A B: "yes" when A <= B (+ a rounding margin).
le() { awk -v a="$1" -v b="$2" 'BEGIN { print (a != "" && a + 0 <= b + 1e-9) ? "yes" : "no (" a " > " b ")" }'; }

# ---- capped -----------------------------------------------------------------------------------
calls_until_402 "$AGENT_DIR/capped.sock" 20
n=$ANSWERED
t_eq "capped: calls answered until the budget does not cover the next one" \
    "$([ "$n" -ge 6 ] && [ "$n" -le 10 ] && echo 6-10 || echo "answered $n")" 6-10
since=$(mock_last_seq)
call "$AGENT_DIR/capped.sock" POST /v1/chat/completions "$SMALL"
t_eq "capped: then 402 budget_exceeded, OpenAI's error shape, nothing sent" \
    "$CODE $(error_of) $(mock_requests_since "$since" | jq length)" \
    "402 budget_exceeded insufficient_quota msg 0"
cost=$(ledger_cost capped "$n")
t_eq "capped: the ledger holds the answered calls, at most the cap" \
    "$(usage_ledger capped .requests) $(le "$cost" 0.1) $(awk -v c="$cost" -v n="$n" 'BEGIN { print (c - n * 0.01 < 1e-9 && n * 0.01 - c < 1e-9) ? "exact" : "cost " c }')" \
    "$n yes exact"
vault_api GET byok/tenants/capped "" "$ADMIN_TOKEN"
t_eq "capped: the tenant summary shows the budget (cap, spent, what is left)" \
    "$(echo "$VAULT_BODY" | jq -c --argjson c "$cost" '.data.budget | [.max_monthly_cost, ((.spent_usd - $c) | fabs < 1e-9), .remaining_usd <= 0.1 - $c + 1e-9]' 2>/dev/null)" \
    "[0.1,true,true]"

# ---- big --------------------------------------------------------------------------------------
since=$(mock_last_seq)
call "$AGENT_DIR/big.sock" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini false 1000)"
t_eq "big: max_tokens costing more than the cap: 402 at once, nothing sent" \
    "$CODE $(echo "$BODY" | jq -r .error.code 2>/dev/null) $(mock_requests_since "$since" | jq length)" \
    "402 budget_exceeded 0"
call "$B_DIR/big-b.sock" POST /v1/chat/completions "$SMALL"
t_eq "big: it took nothing: a small call on another node passes" "$CODE" 200

# ---- shared -----------------------------------------------------------------------------------
na=0 nb=0 last_a="" last_b=""
for i in $(seq 15); do
    call "$AGENT_DIR/shared.sock" POST /v1/chat/completions "$SMALL"
    last_a=$CODE
    [ "$CODE" = 200 ] && na=$((na + 1))
    call "$B_DIR/shared-b.sock" POST /v1/chat/completions "$SMALL"
    last_b=$CODE
    [ "$CODE" = 200 ] && nb=$((nb + 1))
done
t_eq "shared: two nodes both end in 402" "$last_a $last_b" "402 402"
cost=$(ledger_cost shared $((na + nb)))
t_eq "shared: both nodes answered calls, and the ledger holds at most the cap" \
    "$([ $na -ge 1 ] && [ $nb -ge 1 ] && echo both) $(le "$cost" 0.1)" "both yes"
t_diag "shared: node A answered $na, node B $nb, ledger $cost USD"

# ---- raise ------------------------------------------------------------------------------------
# Two estimates (0.036) are more than the cap, so one call is refused after at most two; it may
# be after one when a usage batch is acknowledged while a lease request is on its way (the
# batch's cost then counts twice until the next lease: the safe side).
calls_until_402 "$B_DIR/raise.sock" 5
t_eq "raise: cap 0.03: at most two calls, then 402" "$([ "$ANSWERED" -ge 1 ] && [ "$ANSWERED" -le 2 ] && echo 1-2 || echo "$ANSWERED") $CODE" "1-2 402"
vault_api PUT byok/tenants/raise/settings '{"max_monthly_cost":1}' "$ADMIN_TOKEN"
sleep 2.5
call "$B_DIR/raise.sock" POST /v1/chat/completions "$SMALL"
t_eq "raise: cap raised to 1.00: calls pass again once the creds are fetched again" "$CODE" 200

# ---- free -------------------------------------------------------------------------------------
leases() { curl -s -m 5 --unix-socket "$AGENT_DIR/free.sock" http://localhost/metrics |
    awk '/^byok_budget_leases_total/ { s += $2 } END { print s + 0 }'; }
before=$(leases)
codes=""
for i in 1 2 3; do
    call "$AGENT_DIR/free.sock" POST /v1/chat/completions "$SMALL"
    codes+="$CODE "
done
t_eq "free: no cap: calls pass and take no lease" "$codes$(($(leases) - before))" "200 200 200 0"

# ---- down -------------------------------------------------------------------------------------
call "$AGENT_DIR/down.sock" GET /v1/models # fetches the key (and the settings), takes no lease
since=$(mock_last_seq)
kill -STOP "$VAULT_PID"
call "$AGENT_DIR/down.sock" POST /v1/chat/completions "$SMALL"
kill -CONT "$VAULT_PID"
t_eq "down: Vault stopped, no lease yet: 503 budget_unavailable, nothing sent" \
    "$CODE $(echo "$BODY" | jq -r .error.code 2>/dev/null) $(mock_requests_since "$since" | jq length)" \
    "503 budget_unavailable 0"
sleep 1.2
call "$AGENT_DIR/down.sock" POST /v1/chat/completions "$SMALL"
t_eq "down: Vault back: 200" "$CODE" 200

# ---- metrics ----------------------------------------------------------------------------------
metrics=$(curl -s -m 5 --unix-socket "$AGENT_DIR/free.sock" http://localhost/metrics |
    grep '^byok_budget_refused_total' | sed 's/ [0-9]*$//' | sort | tr '\n' ' ')
t_eq "refusals counted: byok_budget_refused_total{tenant,reason}" "$metrics" \
    'byok_budget_refused_total{tenant="big",reason="exceeded"} byok_budget_refused_total{tenant="capped",reason="exceeded"} byok_budget_refused_total{tenant="down",reason="unavailable"} byok_budget_refused_total{tenant="shared",reason="exceeded"} '

SAVED_PID=$AGENT_PID SAVED_LOG=$AGENT_LOG
AGENT_PID=$B_PID AGENT_LOG=$B_DIR/agent.log
agent_stop_check "agent B stops cleanly on SIGTERM, no sanitizer report"
AGENT_PID=$SAVED_PID AGENT_LOG=$SAVED_LOG
agent_stop_check "agent stops cleanly on SIGTERM, no sanitizer report"
canary_scan "canary: nowhere but the provider request" "${KEYS[@]}"
t_done
[ "$T_FAILED" -eq 0 ]
