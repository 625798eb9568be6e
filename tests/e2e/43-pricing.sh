#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# Billing beyond flat token prices, end to end: app -> agent socket -> Vault
# -> plugin creds -> mock provider. The catalog's anthropic and openai entries
# get a long-context tier (long_context_threshold 200,000, long_input_per_1m
# 2x input, long_output_per_1m 1.5x output) and anthropic's models a web
# search price (web_search_per_1k 10), as the built-in Claude Sonnet 4 has.
# The mock's "websearch" scenario reports usage.server_tool_use
# {web_search_requests: 3, web_fetch_requests: 1} (Anthropic's shape, also in
# a stream's message_start and message_delta); its "longprompt" scenario
# reports 250,000 prompt tokens (tests/mockprovider/pricing.go). Each call's
# cost (X-BYOK-Cost-USD, the stream's closing comment, the agent's usage and
# the plugin's ledger) is checked exactly against the prices read back from
# the plugin: tokens at the flat or long prices + searches x web_search_per_1k
# / 1000, web fetches free. A model without a tier costs what it did; the
# searches are counted in byok_server_tool_requests_total. The plugin refuses a
# tier not given whole, naming the missing field. The "hugeusage" scenario's
# absurd prompt count is counted at the model's context window.
. "$(dirname "$0")/lib.sh"

CASES=("catalog: a long-context tier without long_output_per_1m is a 400 naming it"
    "messages + web search: usage server_tool_use, cost = tokens + 3 searches x web_search_per_1k / 1000"
    "messages stream + web search: the closing comment's cost counts the searches"
    "chat via Anthropic + web search: usage.server_tool_use in the answer, cost counts the searches"
    "chat via OpenAI, 250,000 prompt tokens: every token at the long prices"
    "chat via Anthropic, 250,000 prompt tokens: every token at the long prices"
    "chat stream via OpenAI, 250,000 prompt tokens: comment cost at the long prices"
    "a model without a tier, 250,000 prompt tokens: the flat prices, as before"
    "absurd provider usage: counted at the model's context window, warned"
    "a short prompt on a model with a tier: the flat prices"
    "agent usage endpoint: cost per provider = sum of the calls"
    "usage reported to Vault: cost per provider = sum of the calls"
    "metrics: byok_server_tool_requests_total{tool=\"web_search\"} counts the searches"
    "metrics: byok_usage_clamped_total{field=\"prompt\"} counts the clamped call"
    "agent alive" "agent stops cleanly on SIGTERM, no sanitizer report"
    "canary: nowhere but the provider request")

MOCK_MODELS+=(mock-websearch mock-longprompt)

lib_up && lib_require "$AGENT_BIN" || t_block_all

# The tier on every model of the entry but gpt-4o-mini (the model without one, not a mock
# scenario's name: the mock's scenario control then picks its answer; its window takes the
# longprompt scenario's 250,000 prompt tokens, which the agent bounds by it); web searches priced
# on anthropic's.
with_tier() {
    jq --argjson ws "$1" '.models |= map(if .name == "gpt-4o-mini" then . + {context_window: 400000} else
        . + {long_context_threshold: 200000, long_input_per_1m: (.input_per_1m * 2),
             long_output_per_1m: (.output_per_1m * 1.5)} end
        + (if $ws > 0 then {web_search_per_1k: $ws} else {} end))'
}
vault_api GET byok/providers/anthropic "" "$ADMIN_TOKEN"
AURL=$(echo "$VAULT_BODY" | jq -r .data.base_url)
vault_api GET byok/providers/openai "" "$ADMIN_TOKEN"
OURL=$(echo "$VAULT_BODY" | jq -r .data.base_url)

# A tier not given whole: 400 naming the missing field, nothing stored.
vault_api PUT byok/providers/anthropic \
    "$(provider_entry anthropic anthropic "$AURL" | with_tier 10 | jq '.models[0] |= del(.long_output_per_1m)')" \
    "$ADMIN_TOKEN" >/dev/null
t_eq "catalog: a long-context tier without long_output_per_1m is a 400 naming it" \
    "$VAULT_CODE $(echo "$VAULT_BODY" | jq -r '.errors[0]' | grep -o "'long_output_per_1m' is missing")" \
    "400 'long_output_per_1m' is missing"

vault_api PUT byok/providers/anthropic "$(provider_entry anthropic anthropic "$AURL" | with_tier 10)" \
    "$ADMIN_TOKEN" >/dev/null
[ "$VAULT_CODE" -lt 300 ] || { LIB_BLOCKED_REASON="anthropic override: HTTP $VAULT_CODE"; t_block_all; }
vault_api PUT byok/providers/openai "$(provider_entry openai openai "$OURL" | with_tier 0)" \
    "$ADMIN_TOKEN" >/dev/null
[ "$VAULT_CODE" -lt 300 ] || { LIB_BLOCKED_REASON="openai override: HTTP $VAULT_CODE"; t_block_all; }

# PRICE[provider/model/field]: the prices as the plugin has them (0 when absent).
declare -A PRICE
for p in anthropic openai; do
    vault_api GET "byok/providers/$p" "" "$ADMIN_TOKEN"
    for m in mock-websearch mock-longprompt gpt-4o-mini; do
        for f in input_per_1m output_per_1m long_context_threshold long_input_per_1m \
            long_output_per_1m web_search_per_1k; do
            PRICE[$p/$m/$f]=$(echo "$VAULT_BODY" | jq -r --arg f "$f" --arg m "$m" \
                '.data.models[] | select(.name == $m) | .[$f] // 0')
        done
    done
done
t_diag "anthropic mock-longprompt: ${PRICE[anthropic/mock-longprompt/input_per_1m]} -> ${PRICE[anthropic/mock-longprompt/long_input_per_1m]} above ${PRICE[anthropic/mock-longprompt/long_context_threshold]}; web search ${PRICE[anthropic/mock-websearch/web_search_per_1k]}"

canary_keys acme openai anthropic || { LIB_BLOCKED_REASON="key write failed"; t_block_all; }

SOCK=$AGENT_DIR/acme.sock
agent_config "[{\"path\": \"$SOCK\", \"mode\": \"0660\", \"tenant\": \"acme\", \"app\": \"e2e\", \"metrics\": true}]" \
    '.providers = ["openai", "anthropic"] | .upstream.health_failures = 0'
agent_start || t_block_all

SEARCHES=3
LONG=250000

# cost PROVIDER MODEL PROMPT COMPLETION SEARCHES: the catalog formula, from PRICE.
cost() {
    local k="$1/$2"
    awk -v p="$3" -v c="$4" -v s="$5" -v pi="${PRICE[$k/input_per_1m]}" -v po="${PRICE[$k/output_per_1m]}" \
        -v t="${PRICE[$k/long_context_threshold]}" -v li="${PRICE[$k/long_input_per_1m]}" \
        -v lo="${PRICE[$k/long_output_per_1m]}" -v ws="${PRICE[$k/web_search_per_1k]}" \
        'BEGIN { if (t > 0 && p > t) { pi = li; po = lo }
                 printf "%.10f", (p * pi + c * po) / 1e6 + s * ws / 1000 }'
}

usage_comment() { echo "$BODY" | sed -n 's/^: x-byok-usage //p' | tail -n 1; }
near() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a == a + 0 && d <= 1e-8) }'; }

declare -A SUM_COST
SUM_COST[anthropic]=0 SUM_COST[openai]=0
add_cost() { SUM_COST[$1]=$(awk -v a="${SUM_COST[$1]}" -v b="$2" 'BEGIN { printf "%.10f", a + b }'); }

NTOK=5
mbody() { # MODEL STREAM
    jq -cn --arg m "$1" --argjson s "$2" --argjson n "$NTOK" \
        '{model: $m, max_tokens: $n, stream: $s, messages: [{role: "user", content: "one two three four"}],
          tools: [{type: "web_search_20250305", name: "web_search", max_uses: 5}]}'
}

# ---- web search: the Messages API ---------------------------------------------------------------
call "$SOCK" POST /v1/messages "$(mbody anthropic/mock-websearch false)"
in=$(echo "$BODY" | jq -r .usage.input_tokens 2>/dev/null)
out=$(echo "$BODY" | jq -r .usage.output_tokens 2>/dev/null)
got=$(echo "$BODY" | jq -r '.usage.server_tool_use | "\(.web_search_requests)/\(.web_fetch_requests)"' 2>/dev/null)
want=$(cost anthropic mock-websearch "$in" "$out" $SEARCHES)
if [ "$CODE" = 200 ] && [ "$got" = "$SEARCHES/1" ] && [ "$out" = "$NTOK" ] && near "$(hdr X-BYOK-Cost-USD)" "$want" &&
    ! near "$want" "$(cost anthropic mock-websearch "$in" "$out" 0)"; then
    t_ok "messages + web search: usage server_tool_use, cost = tokens + 3 searches x web_search_per_1k / 1000"
else
    t_fail "messages + web search: usage server_tool_use, cost = tokens + 3 searches x web_search_per_1k / 1000" \
        "code $CODE server_tool_use $got usage $in/$out cost $(hdr X-BYOK-Cost-USD), want $want"
fi
add_cost anthropic "$want"

call "$SOCK" POST /v1/messages "$(mbody anthropic/mock-websearch true)"
uc=$(usage_comment)
want=$(cost anthropic mock-websearch "$(echo "$uc" | jq -r .prompt_tokens)" "$(echo "$uc" | jq -r .completion_tokens)" $SEARCHES)
if [ "$CODE" = 200 ] && [ "$(echo "$uc" | jq -r .completion_tokens)" = "$NTOK" ] &&
    near "$(echo "$uc" | jq -r .cost_usd)" "$want"; then
    t_ok "messages stream + web search: the closing comment's cost counts the searches"
else
    t_fail "messages stream + web search: the closing comment's cost counts the searches" \
        "code $CODE comment $uc want cost $want"
fi
add_cost anthropic "$want"

# ---- web search: chat completions translated to Anthropic ---------------------------------------
call "$SOCK" POST /v1/chat/completions "$(chat_body anthropic/mock-websearch false $NTOK)"
p=$(echo "$BODY" | jq -r .usage.prompt_tokens 2>/dev/null)
want=$(cost anthropic mock-websearch "$p" $NTOK $SEARCHES)
if [ "$CODE" = 200 ] && [ "$(echo "$BODY" | jq -r .usage.server_tool_use.web_search_requests)" = $SEARCHES ] &&
    near "$(hdr X-BYOK-Cost-USD)" "$want"; then
    t_ok "chat via Anthropic + web search: usage.server_tool_use in the answer, cost counts the searches"
else
    t_fail "chat via Anthropic + web search: usage.server_tool_use in the answer, cost counts the searches" \
        "code $CODE usage $(echo "$BODY" | jq -c .usage 2>/dev/null) cost $(hdr X-BYOK-Cost-USD), want $want"
fi
add_cost anthropic "$want"

# ---- long prompts ---------------------------------------------------------------------------------
# long_case NAME PROVIDER: a chat call reporting 250,000 prompt tokens, at the long prices.
long_case() {
    call "$SOCK" POST /v1/chat/completions "$(chat_body "$2/mock-longprompt" false $NTOK)"
    local want flat
    want=$(cost "$2" mock-longprompt $LONG $NTOK 0)
    flat=$(awk -v p=$LONG -v c=$NTOK -v pi="${PRICE[$2/mock-longprompt/input_per_1m]}" \
        -v po="${PRICE[$2/mock-longprompt/output_per_1m]}" 'BEGIN { printf "%.10f", (p * pi + c * po) / 1e6 }')
    if [ "$CODE" = 200 ] && [ "$(echo "$BODY" | jq -r .usage.prompt_tokens)" = $LONG ] &&
        near "$(hdr X-BYOK-Cost-USD)" "$want" && ! near "$want" "$flat"; then
        t_ok "$1"
    else
        t_fail "$1" "code $CODE usage $(echo "$BODY" | jq -c .usage 2>/dev/null) cost $(hdr X-BYOK-Cost-USD), want $want (flat $flat)"
    fi
    add_cost "$2" "$want"
}
long_case "chat via OpenAI, 250,000 prompt tokens: every token at the long prices" openai
long_case "chat via Anthropic, 250,000 prompt tokens: every token at the long prices" anthropic

call "$SOCK" POST /v1/chat/completions "$(chat_body openai/mock-longprompt true $NTOK)"
uc=$(usage_comment)
want=$(cost openai mock-longprompt $LONG "$(echo "$uc" | jq -r .completion_tokens)" 0)
if [ "$CODE" = 200 ] && [ "$(echo "$uc" | jq -r .prompt_tokens)" = $LONG ] && near "$(echo "$uc" | jq -r .cost_usd)" "$want"; then
    t_ok "chat stream via OpenAI, 250,000 prompt tokens: comment cost at the long prices"
else
    t_fail "chat stream via OpenAI, 250,000 prompt tokens: comment cost at the long prices" "code $CODE comment $uc want $want"
fi
add_cost openai "$want"

# gpt-4o-mini has no tier: the mock's longprompt scenario set for the next call.
mock_ctl POST /_mock/scenario '{"scenario": "longprompt", "count": 1}' >/dev/null
call "$SOCK" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini false $NTOK)"
want=$(cost openai gpt-4o-mini $LONG $NTOK 0)
if [ "$CODE" = 200 ] && [ "$(echo "$BODY" | jq -r .usage.prompt_tokens)" = $LONG ] && near "$(hdr X-BYOK-Cost-USD)" "$want" &&
    near "$want" "$(awk -v pi="${PRICE[openai/gpt-4o-mini/input_per_1m]}" -v po="${PRICE[openai/gpt-4o-mini/output_per_1m]}" \
        -v p=$LONG -v c=$NTOK 'BEGIN { printf "%.10f", (p * pi + c * po) / 1e6 }')"; then
    t_ok "a model without a tier, 250,000 prompt tokens: the flat prices, as before"
else
    t_fail "a model without a tier, 250,000 prompt tokens: the flat prices, as before" \
        "code $CODE usage $(echo "$BODY" | jq -c .usage 2>/dev/null) cost $(hdr X-BYOK-Cost-USD), want $want"
fi
add_cost openai "$want"

# A buggy provider's absurd prompt count: the call is counted at the model's context window
# (400,000 here), logged and counted in byok_usage_clamped_total, not at 10^17 tokens.
mock_ctl POST /_mock/scenario '{"scenario": "hugeusage", "count": 1}' >/dev/null
call "$SOCK" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini false $NTOK)"
want=$(cost openai gpt-4o-mini 400000 $NTOK 0)
warned=$(grep '"provider usage above what the request and model allow' "$AGENT_LOG" |
    jq -r 'select(.provider == "openai" and .model == "gpt-4o-mini") | .field' 2>/dev/null | tail -n 1)
if [ "$CODE" = 200 ] && near "$(hdr X-BYOK-Cost-USD)" "$want" && [ "$warned" = prompt ]; then
    t_ok "absurd provider usage: counted at the model's context window, warned"
else
    t_fail "absurd provider usage: counted at the model's context window, warned" \
        "code $CODE usage $(echo "$BODY" | jq -c .usage 2>/dev/null) cost $(hdr X-BYOK-Cost-USD), want $want; warned '$warned'"
fi
add_cost openai "$want"

call "$SOCK" POST /v1/chat/completions "$(chat_body openai/mock-websearch false $NTOK)"
p=$(echo "$BODY" | jq -r .usage.prompt_tokens 2>/dev/null)
want=$(cost openai mock-websearch "$p" $NTOK 0)
if [ "$CODE" = 200 ] && [ "$p" -lt 200000 ] 2>/dev/null && near "$(hdr X-BYOK-Cost-USD)" "$want" &&
    near "$want" "$(awk -v pi="${PRICE[openai/mock-websearch/input_per_1m]}" -v po="${PRICE[openai/mock-websearch/output_per_1m]}" \
        -v p="$p" -v c=$NTOK 'BEGIN { printf "%.10f", (p * pi + c * po) / 1e6 }')"; then
    t_ok "a short prompt on a model with a tier: the flat prices"
else
    t_fail "a short prompt on a model with a tier: the flat prices" "code $CODE prompt $p cost $(hdr X-BYOK-Cost-USD), want $want"
fi
add_cost openai "$want"

# ---- the usage ledgers and metrics ----------------------------------------------------------------
call "$SOCK" GET /v1/byok/usage ""
why=""
for p in anthropic openai; do
    got=$(echo "$BODY" | jq -r --arg p "$p" '.by_provider[$p].cost_usd' 2>/dev/null)
    near "$got" "${SUM_COST[$p]}" || why+="$p $got, want ${SUM_COST[$p]}; "
done
if [ -z "$why" ]; then t_ok "agent usage endpoint: cost per provider = sum of the calls"; else
    t_fail "agent usage endpoint: cost per provider = sum of the calls" "$why"
fi

usage_matches() {
    vault_api GET byok/tenants/acme/usage "" "$ADMIN_TOKEN"
    USAGE=$VAULT_BODY
    [ "$VAULT_CODE" = 200 ] || return 1
    local p
    for p in anthropic openai; do
        near "$(echo "$USAGE" | jq -r --arg p "$p" '.data.by_provider[$p].cost_usd // 0')" "${SUM_COST[$p]}" || return 1
    done
}
if lib_wait_for 15 usage_matches; then t_ok "usage reported to Vault: cost per provider = sum of the calls"; else
    t_fail "usage reported to Vault: cost per provider = sum of the calls" \
        "want ${SUM_COST[*]}, Vault has: ${USAGE:0:400}"
fi

call "$SOCK" GET /metrics
got=$(echo "$BODY" | grep '^byok_server_tool_requests_total{' | grep 'tenant="acme"' | grep 'provider="anthropic"' |
    grep 'model="mock-websearch"' | grep 'tool="web_search"' | awk '{ print $NF }')
t_num_eq "metrics: byok_server_tool_requests_total{tool=\"web_search\"} counts the searches" "$got" $((3 * SEARCHES)) 0
got=$(echo "$BODY" | grep '^byok_usage_clamped_total{' | grep 'provider="openai"' | grep 'field="prompt"' |
    awk '{ print $NF }')
t_num_eq "metrics: byok_usage_clamped_total{field=\"prompt\"} counts the clamped call" "$got" 1 0

t_check "agent alive" kill -0 "$AGENT_PID"
agent_stop_check "agent stops cleanly on SIGTERM, no sanitizer report"
canary_scan "canary: nowhere but the provider request" "${KEY[@]}"
t_done
[ "$T_FAILED" -eq 0 ]
