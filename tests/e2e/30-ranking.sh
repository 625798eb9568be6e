#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# Ranking strategies (docs/agent.md, Ranking: routing_strategy). openai is the
# cheapest provider of the mock catalog (1,000 / 2,000 USD per 1M tokens),
# anthropic the dearest (5,000 / 7,000). Every tenant prefers anthropic (fail:
# azure) and falls back to openai; each has its own tenant-bound socket. The
# agent measures every call whatever its strategy, so "fastest" runs first.
#   fastest   fast (routing_strategy fastest, router.latency_ttl_s 10): both
#             unknown, the first call goes to anthropic (the tenant's order),
#             made 2 s slow by the mock; the next goes to openai, not measured
#             yet; then openai stays first (measured faster). A stream is
#             measured apart: the first goes to anthropic. The averages are in
#             byok_provider_latency_seconds. Past the ttl everything is
#             forgotten: anthropic is tried first again and its new
#             measurement starts a new average. Past it once more, while a
#             (2 s slow) call measures anthropic, another call goes to openai.
#   failing   fail (fastest, keys for azure and openai): azure, not measured,
#             is tried first and answers 503 (failed over to openai); azure
#             having only failed, openai goes first.
#   ordered   acme (no routing_strategy: the default): "auto" goes to anthropic,
#             X-BYOK-Route: ordered; the header X-BYOK-Route: cheapest sends one
#             call to openai; an unknown header value is a 400 with nothing
#             sent; a provider/model call carries no X-BYOK-Route.
#   cheapest  cheap (routing_strategy cheapest): openai first, against the
#             tenant's order; a 503 from openai fails over to anthropic (the
#             ranking is the failover chain); X-BYOK-Route: ordered gives the
#             tenant's order back for one call.
#   weighted  wtd (routing_strategy weighted, provider_weights openai=3,
#             anthropic=1, azure=0): of 200 calls about three quarters go
#             first to openai, the rest to anthropic, none to azure; a 503
#             from the first fails over to the other weighted one, and azure
#             (weight 0) comes after both; X-BYOK-Route: weighted on a tenant
#             without weights keeps the tenant's order.
#   balanced  bal (routing_strategy balanced, speed_weight 50) and balcost
#             (speed_weight 20), past the ttl so nothing is measured: cost
#             alone sends the first call to openai (made 2 s slow); anthropic,
#             not measured, counts as instant and is tried next; measured fast
#             it stays first at 50 (speed: 2 s against milliseconds) while at
#             20 openai's lower price (about a quarter of anthropic's for
#             these calls) outweighs it; X-BYOK-Route: balanced on the
#             cheapest tenant uses the default 50 (anthropic).
# No key anywhere but in the provider requests.
. "$(dirname "$0")/lib.sh"

CASES=("fastest, nothing measured: the tenant's order (anthropic, 2 s slow)"
    "fastest: openai, not measured yet, is tried next"
    "fastest: openai measured faster stays first (three calls)"
    "fastest: streams are measured apart: the first stream goes to anthropic"
    "metrics: byok_provider_latency_seconds holds anthropic's 2 s and openai's speed"
    "ranking logged at debug: candidates ranked by observed speed"
    "fastest: past router.latency_ttl_s anthropic, slow before, is tried first again"
    "fastest: its new measurement starts a new average (not averaged with the old 2 s)"
    "fastest: while a call measures anthropic again, a call starting meanwhile goes to openai"
    "failing: azure, not measured, is tried first; its 503 fails over to openai"
    "failing: azure having only failed, openai goes first"
    "ordered (the default): auto goes to the preferred anthropic, X-BYOK-Route: ordered"
    "X-BYOK-Route: cheapest for one call: openai, X-BYOK-Route: cheapest"
    "X-BYOK-Route with an unknown value: 400 invalid_hint naming the header, nothing sent"
    "provider/model call: no X-BYOK-Route (one candidate, nothing ranked)"
    "cheapest: openai first against the tenant's order, X-BYOK-Attempts 1"
    "cheapest: a 503 from openai fails over to anthropic (X-BYOK-Attempts 2)"
    "cheapest tenant, X-BYOK-Route: ordered: anthropic"
    "weighted: 200 calls split about 3:1 between openai and anthropic, none to azure (weight 0)"
    "weighted: every answer carries X-BYOK-Route: weighted, one attempt each"
    "weighted: a 503 from the first fails over to the other weighted provider"
    "weighted: azure (weight 0) is tried after both weighted providers"
    "X-BYOK-Route: weighted on a tenant without weights: the tenant's order (anthropic)"
    "balanced, nothing measured: cost alone, openai (2 s slow) against the tenant's order"
    "balanced: anthropic, not measured, is tried next"
    "balanced at speed_weight 50: anthropic, measured faster, stays first though dearer"
    "ranking logged at debug: candidates ranked by cost and speed"
    "X-BYOK-Route: balanced on the cheapest tenant: the default speed_weight 50 (anthropic)"
    "balanced at speed_weight 20: openai, cheaper, first though 2 s slow"
    "agent stops cleanly on SIGTERM, no sanitizer report"
    "canary: nowhere but the provider request")

lib_up && lib_require "$AGENT_BIN" || t_block_all
declare -A KEYS
# tenant KEY_PROVIDERS SETTINGS_JSON: stores canary keys and settings for tenant $T.
tenant() {
    local p k
    for p in $1; do
        k=$(lib_canary)
        KEYS[$T/$p]=$k
        key_put "$T" "$p" "$k" || t_diag "$T/$p key not written"
    done
    vault_api PUT "byok/tenants/$T/settings" "$2" "$ADMIN_TOKEN"
    [ "$VAULT_CODE" -lt 300 ] || t_diag "$T settings: HTTP $VAULT_CODE $VAULT_BODY"
}
ORDER='"preferred_providers":["anthropic"],"fallback_providers":["openai"],"budget_tier":"HIGH"'
T=acme tenant "openai anthropic" "{$ORDER}"
T=cheap tenant "openai anthropic" "{$ORDER,\"routing_strategy\":\"cheapest\"}"
T=fast tenant "openai anthropic" "{$ORDER,\"routing_strategy\":\"fastest\"}"
T=wtd tenant "openai anthropic azure" \
    "{$ORDER,\"routing_strategy\":\"weighted\",\"provider_weights\":{\"openai\":3,\"anthropic\":1,\"azure\":0}}"
T=bal tenant "openai anthropic" "{$ORDER,\"routing_strategy\":\"balanced\",\"speed_weight\":50}"
T=balcost tenant "openai anthropic" "{$ORDER,\"routing_strategy\":\"balanced\",\"speed_weight\":20}"
T=fail tenant "azure openai" \
    '{"preferred_providers":["azure"],"fallback_providers":["openai"],"budget_tier":"HIGH","routing_strategy":"fastest"}'
L=""
for t in acme cheap fast fail wtd bal balcost; do
    L+="${L:+,}{\"path\": \"$AGENT_DIR/$t.sock\", \"mode\": \"0660\", \"tenant\": \"$t\", \"app\": \"rank\", \"metrics\": true}"
done
agent_config "[$L]" '.router.latency_ttl_s = 10 | .providers = ["openai", "azure", "anthropic"]'
agent_start || t_block_all

# attempt SCENARIO TENANT [MODEL] [STREAM] [CURL ARGS...]: one call; unless
# SCENARIO is "-", the mock answers its next request (the call's first
# attempt) with SCENARIO. GOT: "status provider attempts route style:scenario,..."
# (the requests the mock saw since SINCE, its last sequence number before the call).
attempt() {
    local sc=$1 t=$2 model=${3:-auto} stream=${4:-false}
    shift 4 2>/dev/null || shift $#
    [ "$sc" = - ] || mock_ctl POST /_mock/scenario "{\"scenario\":\"$sc\",\"count\":1}" >/dev/null
    SINCE=$(mock_last_seq)
    call "$AGENT_DIR/$t.sock" POST /v1/chat/completions "$(chat_body "$model" "$stream" 3)" -N "$@"
    [ "$sc" = - ] || mock_ctl DELETE /_mock/scenario >/dev/null
    GOT="$CODE $(hdr X-BYOK-Provider) $(hdr X-BYOK-Attempts) $(hdr X-BYOK-Route) $(mock_requests_since "$SINCE" |
        jq -r 'map(.style + ":" + .scenario) | join(",")')"
}

# ---- fastest ----------------------------------------------------------------------------------
# First: nothing is measured yet (the agent measures every call, whatever its strategy).
attempt slow fast
t_eq "fastest, nothing measured: the tenant's order (anthropic, 2 s slow)" "$GOT" \
    "200 anthropic 1 fastest anthropic:slow"
attempt - fast
t_eq "fastest: openai, not measured yet, is tried next" "$GOT" "200 openai 1 fastest openai:normal"
got3=""
for i in 1 2 3; do
    attempt - fast
    got3+="${got3:+; }$GOT"
done
t_eq "fastest: openai measured faster stays first (three calls)" "$got3" \
    "200 openai 1 fastest openai:normal; 200 openai 1 fastest openai:normal; 200 openai 1 fastest openai:normal"
attempt - fast auto true
t_eq "fastest: streams are measured apart: the first stream goes to anthropic" \
    "$GOT $(echo "$BODY" | sse_content)" "200 anthropic 1 fastest anthropic:normal $(words 3)"
call "$AGENT_DIR/fast.sock" GET /metrics
lat() {
    echo "$BODY" | awk -v p="$1" -v s="$2" '$1 ~ "^byok_provider_latency_seconds[{]provider=\"" p "\"" &&
        $1 ~ "stream=\"" s "\"" { print $2 }'
}
t_check "metrics: byok_provider_latency_seconds holds anthropic's 2 s and openai's speed" \
    awk -v a="$(lat anthropic false)" -v o="$(lat openai false)" -v as="$(lat anthropic true)" \
    'BEGIN { exit !(a >= 1.9 && a < 10 && o > 0 && o < 1.9 && as > 0 && as < 1.9) }'
t_check "ranking logged at debug: candidates ranked by observed speed" \
    grep -q '"candidates ranked by observed speed".*"first":"openai"' "$AGENT_LOG"
# Past the 10 s ttl every measurement is forgotten: anthropic, slow before, is
# tried first again (the tenant's order among unknown ones) and measured anew.
sleep 11
attempt - fast
t_eq "fastest: past router.latency_ttl_s anthropic, slow before, is tried first again" \
    "$GOT" "200 anthropic 1 fastest anthropic:normal"
call "$AGENT_DIR/fast.sock" GET /metrics
t_check "fastest: its new measurement starts a new average (not averaged with the old 2 s)" \
    awk -v a="$(lat anthropic false)" 'BEGIN { exit !(a > 0 && a < 1.0) }'
# A probe: once more past the ttl, a call measuring anthropic again (2 s slow)
# is under way; a call that starts meanwhile does not go to anthropic too
# (unknown, and first in the tenant's order, it would without the probe mark).
sleep 11
mock_ctl POST /_mock/scenario '{"scenario":"slow","count":1}' >/dev/null
SINCE=$(mock_last_seq)
curl -sS -m 20 --unix-socket "$AGENT_DIR/fast.sock" -H 'Content-Type: application/json' \
    -d "$(chat_body auto false 3)" -D "$LIB_TMP/probe.hdrs" -o "$LIB_TMP/probe.body" \
    http://localhost/v1/chat/completions 2>"$LIB_TMP/probe.err" &
PROBE=$!
probe_sent() { [ "$(mock_requests_since "$SINCE" | jq length)" -ge 1 ]; }
lib_wait_for 5 probe_sent || t_diag "the probe's request did not reach the mock"
attempt - fast
wait "$PROBE"
mock_ctl DELETE /_mock/scenario >/dev/null
cat "$LIB_TMP/probe.hdrs" "$LIB_TMP/probe.body" "$LIB_TMP/probe.err" >>"$LIB_RESP_LOG"
t_eq "fastest: while a call measures anthropic again, a call starting meanwhile goes to openai" \
    "$GOT | $(tr -d '\r' <"$LIB_TMP/probe.hdrs" | awk -F': ' 'tolower($1) == "x-byok-provider" { print $2 }')" \
    "200 openai 1 fastest openai:normal | anthropic"

# ---- failing ----------------------------------------------------------------------------------
attempt 503 fail
t_eq "failing: azure, not measured, is tried first; its 503 fails over to openai" "$GOT" \
    "200 openai 2 fastest azure:503,openai:normal"
attempt - fail
t_eq "failing: azure having only failed, openai goes first" "$GOT" "200 openai 1 fastest openai:normal"

# ---- ordered ----------------------------------------------------------------------------------
attempt - acme
t_eq "ordered (the default): auto goes to the preferred anthropic, X-BYOK-Route: ordered" "$GOT" \
    "200 anthropic 1 ordered anthropic:normal"
attempt - acme auto false -H 'X-BYOK-Route: cheapest'
t_eq "X-BYOK-Route: cheapest for one call: openai, X-BYOK-Route: cheapest" "$GOT" \
    "200 openai 1 cheapest openai:normal"
attempt - acme auto false -H 'X-BYOK-Route: Round-Robin'
t_eq "X-BYOK-Route with an unknown value: 400 invalid_hint naming the header, nothing sent" \
    "$CODE $(echo "$BODY" | jq -r '.error.code + " " + .error.message') $(mock_requests_since "$SINCE" | jq length)" \
    "400 invalid_hint X-BYOK-Route has an unknown value: it must be ordered, cheapest, fastest, weighted or balanced 0"
attempt - acme "anthropic/${PROVIDER_MODEL[anthropic]}" false -H 'X-BYOK-Route: cheapest'
t_eq "provider/model call: no X-BYOK-Route (one candidate, nothing ranked)" "$GOT" \
    "200 anthropic 1  anthropic:normal"

# ---- cheapest ---------------------------------------------------------------------------------
attempt - cheap
t_eq "cheapest: openai first against the tenant's order, X-BYOK-Attempts 1" "$GOT" \
    "200 openai 1 cheapest openai:normal"
attempt 503 cheap
t_eq "cheapest: a 503 from openai fails over to anthropic (X-BYOK-Attempts 2)" "$GOT" \
    "200 anthropic 2 cheapest openai:503,anthropic:normal"
attempt - cheap auto false -H 'X-BYOK-Route: ordered'
t_eq "cheapest tenant, X-BYOK-Route: ordered: anthropic" "$GOT" "200 anthropic 1 ordered anthropic:normal"

# ---- weighted ---------------------------------------------------------------------------------
# 3:1 over 200 calls: openai first in 150 expected (sd 6.1); 120..180 fails only for a broken draw.
declare -A FIRST=()
routes="" attempts=""
for i in $(seq 200); do
    call "$AGENT_DIR/wtd.sock" POST /v1/chat/completions "$(chat_body auto false 1)"
    p=$(hdr X-BYOK-Provider)
    FIRST[${p:-none}]=$((${FIRST[${p:-none}]:-0} + 1))
    routes+=" $CODE:$(hdr X-BYOK-Route)"
    attempts+=" $(hdr X-BYOK-Attempts)"
done
t_check "weighted: 200 calls split about 3:1 between openai and anthropic, none to azure (weight 0)" \
    awk -v o="${FIRST[openai]:-0}" -v a="${FIRST[anthropic]:-0}" -v n="${#FIRST[@]}" \
    'BEGIN { exit !(o >= 120 && o <= 180 && o + a == 200 && n == 2) }'
t_diag "weighted split: openai ${FIRST[openai]:-0}, anthropic ${FIRST[anthropic]:-0}"
t_eq "weighted: every answer carries X-BYOK-Route: weighted, one attempt each" \
    "$(echo "$routes" | tr ' ' '\n' | sort -u | xargs) $(echo "$attempts" | tr ' ' '\n' | sort -u | xargs)" \
    "200:weighted 1"
attempt 503 wtd
t_check "weighted: a 503 from the first fails over to the other weighted provider" \
    grep -Eqx '200 (openai 2 weighted anthropic:503,openai:normal|anthropic 2 weighted openai:503,anthropic:normal)' <<<"$GOT"
mock_ctl POST /_mock/scenario '{"scenario":"503","count":2}' >/dev/null
attempt - wtd
mock_ctl DELETE /_mock/scenario >/dev/null
t_check "weighted: azure (weight 0) is tried after both weighted providers" \
    grep -Eqx '200 azure 3 weighted (openai:503,anthropic|anthropic:503,openai):503,azure:normal' <<<"$GOT"
attempt - acme auto false -H 'X-BYOK-Route: weighted'
t_eq "X-BYOK-Route: weighted on a tenant without weights: the tenant's order (anthropic)" "$GOT" \
    "200 anthropic 1 weighted anthropic:normal"

# ---- balanced ---------------------------------------------------------------------------------
# Past the 10 s ttl nothing is measured (the calls above measured both providers).
sleep 11
attempt slow bal
t_eq "balanced, nothing measured: cost alone, openai (2 s slow) against the tenant's order" "$GOT" \
    "200 openai 1 balanced openai:slow"
attempt - bal
t_eq "balanced: anthropic, not measured, is tried next" "$GOT" "200 anthropic 1 balanced anthropic:normal"
attempt - bal
t_eq "balanced at speed_weight 50: anthropic, measured faster, stays first though dearer" "$GOT" \
    "200 anthropic 1 balanced anthropic:normal"
t_check "ranking logged at debug: candidates ranked by cost and speed" \
    grep -q '"candidates ranked by cost and speed".*"first":"anthropic"' "$AGENT_LOG"
attempt - cheap auto false -H 'X-BYOK-Route: balanced'
t_eq "X-BYOK-Route: balanced on the cheapest tenant: the default speed_weight 50 (anthropic)" "$GOT" \
    "200 anthropic 1 balanced anthropic:normal"
attempt - balcost
t_eq "balanced at speed_weight 20: openai, cheaper, first though 2 s slow" "$GOT" \
    "200 openai 1 balanced openai:normal"

agent_stop_check "agent stops cleanly on SIGTERM, no sanitizer report"
canary_scan "canary: nowhere but the provider request" "${KEYS[@]}"
t_done
