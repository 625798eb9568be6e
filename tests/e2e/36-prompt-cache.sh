#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# Prompt caching through app -> agent socket -> Vault -> plugin creds -> mock
# provider. The app marks cache breakpoints in OpenAI's shape (cache_control
# on a system part with ttl 1h, on a whole user message, on a tool), as
# LiteLLM and OpenRouter take them: the mock records where each reached
# Anthropic (cache_control on the system text block, the message's text
# block, the tool) and Bedrock's Claude model (cachePoint blocks after them;
# a model without prompt caching gets none), and that none reached OpenAI
# (which refuses the member). The mock's "cache" scenario
# answers with cache reads and writes (tests/mockprovider/cache.go: 1,000
# read, 2,000 written, 500 of them for one hour when asked); the cost of each
# call (header, stream comment, the agent's and the plugin's usage) is the
# formula with the prices read back from the plugin: uncached x input_per_1m
# + reads x cached_input_per_1m + 5-minute writes x cache_write_per_1m +
# 1-hour writes x 2 x input_per_1m + completion x output_per_1m. A model
# without cache prices (openai) costs what it did. Malformed hints and a
# 5th breakpoint are 400s naming the field with nothing sent to any provider.
. "$(dirname "$0")/lib.sh"

CASES=("anthropic: HTTP 200, usage with cache reads and writes"
    "anthropic: hints on the system block (1h), the message's block and the tool"
    "anthropic: cost header = cache formula with the plugin's prices"
    "anthropic stream: usage chunk with cache_creation_input_tokens, comment cost"
    "bedrock: HTTP 200, usage with cache reads and writes"
    "bedrock: cachePoint after the system block, the message's block and the tool"
    "bedrock: cost header = cache formula with the plugin's prices"
    "bedrock stream: comment cost and cache_write_tokens"
    "bedrock, a model without prompt caching (not Claude or Nova): no cachePoint, 200"
    "openai: hints stripped (none reached the provider), 200"
    "malformed hints: 400 invalid_cache_control naming the field, nothing sent"
    "5 breakpoints: 400 naming the 5th, nothing sent"
    "agent usage endpoint: cost per provider = sum of the calls, cache writes"
    "usage reported to Vault: cost per provider = sum of the calls"
    "agent alive" "agent stops cleanly on SIGTERM, no sanitizer report"
    "canary: nowhere but the provider request")

MOCK_MODELS+=(mock-cache)
BMODEL=anthropic.claude-3-5-haiku-20241022-v1:0
PROVIDER_MODEL[bedrock]=$BMODEL
PRICE_IN[bedrock]=6000
PRICE_OUT[bedrock]=9000

lib_up && lib_require "$AGENT_BIN" || t_block_all

# Cache prices on every model of the mock's anthropic and bedrock entries (0.1x reads, 1.25x
# writes, as Anthropic's); openai's have none.
with_cache_prices() { jq '.models |= map(. + {cached_input_per_1m: (.input_per_1m / 10),
    cache_write_per_1m: (.input_per_1m * 1.25)})'; }
vault_api GET byok/providers/anthropic "" "$ADMIN_TOKEN"
AURL=$(echo "$VAULT_BODY" | jq -r .data.base_url)
vault_api PUT byok/providers/anthropic "$(provider_entry anthropic anthropic "$AURL" | with_cache_prices)" \
    "$ADMIN_TOKEN" >/dev/null
[ "$VAULT_CODE" -lt 300 ] || { LIB_BLOCKED_REASON="anthropic override: HTTP $VAULT_CODE"; t_block_all; }
vault_api PUT byok/providers/bedrock \
    "$(provider_entry bedrock bedrock "$MOCK_URL" | with_cache_prices | jq '.key_prefixes = ["ABSK"]')" \
    "$ADMIN_TOKEN" >/dev/null
[ "$VAULT_CODE" -lt 300 ] || { LIB_BLOCKED_REASON="bedrock override: HTTP $VAULT_CODE"; t_block_all; }

# PRICE[provider/field]: the prices of the model called with cache usage (anthropic's
# mock-cache, bedrock's Claude model) as the plugin has them.
declare -A PRICE CACHE_MODEL=([anthropic]=mock-cache [bedrock]=$BMODEL [openai]=mock-cache)
for p in anthropic bedrock openai; do
    vault_api GET "byok/providers/$p" "" "$ADMIN_TOKEN"
    for f in input_per_1m output_per_1m cached_input_per_1m cache_write_per_1m; do
        PRICE[$p/$f]=$(echo "$VAULT_BODY" | jq -r --arg f "$f" --arg m "${CACHE_MODEL[$p]}" \
            '.data.models[] | select(.name == $m) | .[$f] // .input_per_1m')
    done
done
t_diag "anthropic prices: ${PRICE[anthropic/input_per_1m]} ${PRICE[anthropic/cached_input_per_1m]} ${PRICE[anthropic/cache_write_per_1m]}"

declare -gA KEY
KEY[anthropic]=$(lib_canary)
KEY[openai]=$(lib_canary)
KEY[bedrock]="ABSK-canary-$(lib_random_hex 16)"
for p in anthropic openai bedrock; do
    key_put acme "$p" "${KEY[$p]}" || { LIB_BLOCKED_REASON="key write failed"; t_block_all; }
done

SOCK=$AGENT_DIR/acme.sock
agent_config "[{\"path\": \"$SOCK\", \"mode\": \"0660\", \"tenant\": \"acme\", \"app\": \"e2e\"}]" \
    '.providers = ["openai", "anthropic", "bedrock"] | .upstream.health_failures = 0'
agent_start || t_block_all

NTOK=5
# The request: a tool marked (1 hour), a system message of two parts (the second marked,
# 1 hour), a user message marked as a whole (5 minutes): Anthropic takes 1-hour breakpoints
# before 5-minute ones in its order (tools, system, messages). The mock counts 2 + 2 + 4 = 8 uncached prompt words.
hinted() {
    jq -cn --arg m "$1" --argjson s "$2" --argjson n "$NTOK" \
        '{model: $m, stream: $s, max_tokens: $n,
          messages: [{role: "system", content: [{type: "text", text: "Be brief."},
                       {type: "text", text: "Long document.", cache_control: {type: "ephemeral", ttl: "1h"}}]},
                     {role: "user", content: "one two three four", cache_control: {type: "ephemeral"}}],
          tools: [{type: "function", function: {name: "lookup", parameters: {type: "object", properties: {}}},
                   cache_control: {type: "ephemeral", ttl: "1h"}}]}
         + (if $s then {stream_options: {include_usage: true}} else {} end)'
}
UNCACHED=8
READ=1000
WRITE=2000

# cache_cost PROVIDER UNCACHED READ WRITE WRITE_1H COMPLETION: the formula, from PRICE.
cache_cost() {
    awk -v u="$2" -v r="$3" -v w="$4" -v h="$5" -v c="$6" -v pi="${PRICE[$1/input_per_1m]}" \
        -v po="${PRICE[$1/output_per_1m]}" -v pr="${PRICE[$1/cached_input_per_1m]}" \
        -v pw="${PRICE[$1/cache_write_per_1m]}" \
        'BEGIN { printf "%.10f", (u * pi + r * pr + (w - h) * pw + h * 2 * pi + c * po) / 1e6 }'
}

# upstream_cache SINCE: the cache hints the one request since SINCE carried (mock's record).
upstream_cache() {
    local reqs
    reqs=$(mock_requests_since "$1")
    [ "$(echo "$reqs" | jq length)" = 1 ] || { echo "requests: $(echo "$reqs" | jq length)"; return; }
    echo "$reqs" | jq -r '.[0].cache // [] | join(",")'
}

# usage_comment: the JSON of the stream's ": x-byok-usage" comment in BODY.
usage_comment() { echo "$BODY" | sed -n 's/^: x-byok-usage //p' | tail -n 1; }

declare -A SUM_COST
SUM_COST[anthropic]=0 SUM_COST[bedrock]=0 SUM_COST[openai]=0
add_cost() { SUM_COST[$1]=$(awk -v a="${SUM_COST[$1]}" -v b="$2" 'BEGIN { printf "%.10f", a + b }'); }

# ---- Anthropic ----------------------------------------------------------------------------
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(hinted anthropic/mock-cache false)"
t_eq "anthropic: HTTP 200, usage with cache reads and writes" \
    "$CODE $(echo "$BODY" | jq -r '.usage | "\(.prompt_tokens)/\(.prompt_tokens_details.cached_tokens)/\(.cache_creation_input_tokens)/\(.completion_tokens)"' 2>/dev/null)" \
    "200 $((UNCACHED + READ + WRITE))/$READ/$WRITE/$NTOK"
t_eq "anthropic: hints on the system block (1h), the message's block and the tool" \
    "$(upstream_cache "$since")" "tools[0]@1h,system[1]@1h,messages[0].content[0]"
want=$(cache_cost anthropic $UNCACHED $READ $WRITE 500 $NTOK)
t_num_eq "anthropic: cost header = cache formula with the plugin's prices" "$(hdr X-BYOK-Cost-USD)" "$want" 1e-9
add_cost anthropic "$want"

since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(hinted anthropic/mock-cache true)"
uc=$(usage_comment)
chunk=$(echo "$BODY" | sed -n 's/^data: //p' | grep -v '^\[DONE\]$' | jq -c 'select(.usage != null) | .usage' 2>/dev/null | tail -n 1)
if [ "$CODE" = 200 ] && [ "$(echo "$chunk" | jq -r .cache_creation_input_tokens)" = "$WRITE" ] &&
    [ "$(echo "$uc" | jq -r '"\(.cached_tokens)/\(.cache_write_tokens)"')" = "$READ/$WRITE" ] &&
    awk -v a="$(echo "$uc" | jq -r .cost_usd)" -v b="$want" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-9) }'; then
    t_ok "anthropic stream: usage chunk with cache_creation_input_tokens, comment cost"
else
    t_fail "anthropic stream: usage chunk with cache_creation_input_tokens, comment cost" \
        "code $CODE chunk $chunk comment $uc want cost $want"
fi
add_cost anthropic "$want"

# ---- Bedrock ------------------------------------------------------------------------------
# Cache points go to Claude and Nova models only: the Claude model, with the mock's cache
# scenario set through its control API for the next call.
cache_next() { mock_ctl POST /_mock/scenario '{"scenario": "cache", "count": 1}' >/dev/null; }
since=$(mock_last_seq)
cache_next
call "$SOCK" POST /v1/chat/completions "$(hinted "bedrock/$BMODEL" false)"
t_eq "bedrock: HTTP 200, usage with cache reads and writes" \
    "$CODE $(echo "$BODY" | jq -r '.usage | "\(.prompt_tokens)/\(.prompt_tokens_details.cached_tokens)/\(.cache_creation_input_tokens)/\(.completion_tokens)"' 2>/dev/null)" \
    "200 $((UNCACHED + READ + WRITE))/$READ/$WRITE/$NTOK"
t_eq "bedrock: cachePoint after the system block, the message's block and the tool" \
    "$(upstream_cache "$since")" "system[1],messages[0].content[1],toolConfig.tools[1]"
# Converse has one cache TTL: no 1-hour writes.
want=$(cache_cost bedrock $UNCACHED $READ $WRITE 0 $NTOK)
t_num_eq "bedrock: cost header = cache formula with the plugin's prices" "$(hdr X-BYOK-Cost-USD)" "$want" 1e-9
add_cost bedrock "$want"

cache_next
call "$SOCK" POST /v1/chat/completions "$(hinted "bedrock/$BMODEL" true)"
uc=$(usage_comment)
if [ "$CODE" = 200 ] && [ "$(echo "$uc" | jq -r '"\(.prompt_tokens)/\(.cached_tokens)/\(.cache_write_tokens)"')" = "$((UNCACHED + READ + WRITE))/$READ/$WRITE" ] &&
    awk -v a="$(echo "$uc" | jq -r .cost_usd)" -v b="$want" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-9) }'; then
    t_ok "bedrock stream: comment cost and cache_write_tokens"
else
    t_fail "bedrock stream: comment cost and cache_write_tokens" "code $CODE comment $uc want cost $want"
fi
add_cost bedrock "$want"

since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(hinted bedrock/mock-normal false)"
t_eq "bedrock, a model without prompt caching (not Claude or Nova): no cachePoint, 200" \
    "$CODE [$(upstream_cache "$since")]" "200 []"
add_cost bedrock "$(hdr X-BYOK-Cost-USD)"

# ---- OpenAI: stripped ---------------------------------------------------------------------
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(hinted openai/mock-normal false)"
t_eq "openai: hints stripped (none reached the provider), 200" "$CODE [$(upstream_cache "$since")]" "200 []"
add_cost openai "$(hdr X-BYOK-Cost-USD)"

# ---- refused before any provider ----------------------------------------------------------
why=""
since=$(mock_last_seq)
while IFS='|' read -r filter param; do
    for m in anthropic/mock-cache "bedrock/$BMODEL" openai/mock-normal auto; do
        call "$SOCK" POST /v1/chat/completions "$(hinted "$m" false | jq -c "$filter")"
        got="$CODE $(echo "$BODY" | jq -r '.error.code + " " + .error.param' 2>/dev/null)"
        [ "$got" = "400 invalid_cache_control $param" ] || why+="$m $filter: $got; "
        # The answer never quotes the bad value.
        [[ $BODY != *persistent* && $BODY != *2h* ]] || why+="$m $filter: the value is quoted; "
    done
done <<'EOF'
.messages[1].cache_control.type = "persistent"|messages[1].cache_control.type
.messages[0].content[1].cache_control.ttl = "2h"|messages[0].content[1].cache_control.ttl
.tools[0].cache_control = "ephemeral"|tools[0].cache_control
.messages[1].cache_control.extra = 1|messages[1].cache_control
EOF
n=$(mock_requests_since "$since" | jq length)
[ "$n" = 0 ] || why+="$n requests reached the mock; "
if [ -z "$why" ]; then t_ok "malformed hints: 400 invalid_cache_control naming the field, nothing sent"; else
    t_fail "malformed hints: 400 invalid_cache_control naming the field, nothing sent" "$why"
fi

why=""
since=$(mock_last_seq)
five='.messages[0].content[0].cache_control = {type: "ephemeral", ttl: "1h"} |
      .messages[1].content = [{type: "text", text: "one two", cache_control: {type: "ephemeral"}},
                              {type: "text", text: "three four"}]'
for m in anthropic/mock-cache "bedrock/$BMODEL" openai/mock-normal; do
    call "$SOCK" POST /v1/chat/completions "$(hinted "$m" false | jq -c "$five")"
    got="$CODE $(echo "$BODY" | jq -r '.error.code + " " + .error.param' 2>/dev/null)"
    [ "$got" = "400 invalid_cache_control messages[1].cache_control" ] || why+="$m: $got; "
done
# Four are fine.
call "$SOCK" POST /v1/chat/completions "$(hinted anthropic/mock-normal false | jq -c "$five | del(.tools[0].cache_control)")"
[ "$CODE" = 200 ] || why+="4 breakpoints: $CODE $BODY; "
n=$(mock_requests_since "$since" | jq length)
[ "$n" = 1 ] || why+="$n requests reached the mock (want the one with 4); "
if [ -z "$why" ]; then t_ok "5 breakpoints: 400 naming the 5th, nothing sent"; else
    t_fail "5 breakpoints: 400 naming the 5th, nothing sent" "$why"
fi
add_cost anthropic "$(hdr X-BYOK-Cost-USD)"

# ---- the usage ledgers --------------------------------------------------------------------
call "$SOCK" GET /v1/byok/usage ""
why=""
for p in anthropic bedrock openai; do
    got=$(echo "$BODY" | jq -r --arg p "$p" '.by_provider[$p].cost_usd' 2>/dev/null)
    awk -v a="$got" -v b="${SUM_COST[$p]}" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-8) }' ||
        why+="$p $got, want ${SUM_COST[$p]}; "
done
# Two cached calls each through anthropic and bedrock wrote 2,000 tokens each.
got=$(echo "$BODY" | jq -r '[.by_provider.anthropic.cache_write_tokens, .by_provider.bedrock.cache_write_tokens,
    .by_provider.openai.cache_write_tokens] | map(tostring) | join("/")' 2>/dev/null)
[ "$got" = "$((2 * WRITE))/$((2 * WRITE))/0" ] || why+="cache_write_tokens $got; "
if [ -z "$why" ]; then t_ok "agent usage endpoint: cost per provider = sum of the calls, cache writes"; else
    t_fail "agent usage endpoint: cost per provider = sum of the calls, cache writes" "$why"
fi

usage_matches() {
    vault_api GET byok/tenants/acme/usage "" "$ADMIN_TOKEN"
    USAGE=$VAULT_BODY
    [ "$VAULT_CODE" = 200 ] || return 1
    local p
    for p in anthropic bedrock openai; do
        awk -v a="$(echo "$USAGE" | jq -r --arg p "$p" '.data.by_provider[$p].cost_usd // 0')" \
            -v b="${SUM_COST[$p]}" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-8) }' || return 1
    done
}
if lib_wait_for 15 usage_matches; then t_ok "usage reported to Vault: cost per provider = sum of the calls"; else
    t_fail "usage reported to Vault: cost per provider = sum of the calls" \
        "want ${SUM_COST[*]}, Vault has: ${USAGE:0:400}"
fi

t_check "agent alive" kill -0 "$AGENT_PID"
agent_stop_check "agent stops cleanly on SIGTERM, no sanitizer report"
canary_scan "canary: nowhere but the provider request" "${KEY[@]}"
t_done
[ "$T_FAILED" -eq 0 ]
