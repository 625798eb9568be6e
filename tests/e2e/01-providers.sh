#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# Each provider style (OpenAI, Azure OpenAI, Anthropic), streamed and not,
# through app -> agent socket -> Vault -> plugin creds -> mock provider:
# the answer, the usage, the X-BYOK-* headers, the cost against the catalog
# price, and what the provider received (the tenant's key in the style's auth
# header, nothing else). Then embeddings, models, health, metrics, and the
# usage the agent reported to the plugin (month-to-date totals per provider).
. "$(dirname "$0")/lib.sh"

PROVIDERS=(openai azure anthropic)
CASES=()
for p in "${PROVIDERS[@]}"; do
    for s in false true; do
        for c in "HTTP 200" "answer text" "usage tokens" "provider and model headers" \
            "cost" "upstream request"; do
            CASES+=("$p stream=$s: $c")
        done
    done
done
CASES+=("embeddings" "models list" "healthz" "metrics" "metrics: tokens and cost per provider"
    "metrics: key cache and Vault calls" "agent usage endpoint: totals per provider" "usage reported to Vault"
    "usage cost per provider" "agent alive" "agent stops cleanly on SIGTERM, no sanitizer report"
    "proxy variables in the agent's environment ignored: nothing reached the proxy they name"
    "canary: nowhere but the provider request")

lib_up && lib_require "$AGENT_BIN" || t_block_all

TENANT=acme
canary_keys "$TENANT" "${PROVIDERS[@]}" || { LIB_BLOCKED_REASON="key write failed"; t_block_all; }

SOCK=$AGENT_DIR/acme.sock
agent_config "[{\"path\": \"$SOCK\", \"mode\": \"0660\", \"tenant\": \"$TENANT\", \"app\": \"e2e\", \"metrics\": true}]"
# Every proxy variable libcurl reads points at a catcher that records what it
# gets: the agent (Vault over plain http here, providers over https) must use
# none of them (only upstream.proxy, unset here).
PROXY_SEEN=$LIB_TMP/proxy-seen.bin
: >"$PROXY_SEEN"
PX=$(lib_free_port)
lib_spawn "$LIB_TMP/proxy-catcher.log" "$PY" -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16)
while True:
    c, _ = s.accept()
    with open(sys.argv[2], "ab") as f:
        f.write(c.recv(65536) or b"(connection)")
    c.close()' "$PX" "$PROXY_SEEN"
http_proxy=http://127.0.0.1:$PX HTTPS_PROXY=http://127.0.0.1:$PX ALL_PROXY=http://127.0.0.1:$PX \
    HTTP_PROXY=http://127.0.0.1:$PX https_proxy=http://127.0.0.1:$PX agent_start || t_block_all

declare -A SUM_REQ SUM_PT SUM_CT
for p in "${PROVIDERS[@]}"; do SUM_REQ[$p]=0 SUM_PT[$p]=0 SUM_CT[$p]=0; done

# check_upstream PROVIDER STREAM SEQ: the one request the mock got since SEQ.
check_upstream() {
    local p=$1 s=$2 since=$3 reqs n r why=""
    reqs=$(mock_requests_since "$since")
    n=$(echo "$reqs" | jq length)
    if [ "$n" != 1 ]; then
        t_fail "$p stream=$s: upstream request" "mock saw $n requests, want 1"
        return
    fi
    r=$(echo "$reqs" | jq -c '.[0]')
    local auth_hdr want_style=$p
    case $p in
    openai) auth_hdr=Authorization ;;
    azure) auth_hdr=Api-Key ;;
    anthropic) auth_hdr=X-Api-Key ;;
    esac
    local got_key
    got_key=$(echo "$r" | jq -r --arg h "$auth_hdr" '.headers[$h][0] // ""')
    [ "$p" = openai ] && got_key=${got_key#Bearer }
    [ "$got_key" == "${KEY[$p]}" ] || why+="auth header $auth_hdr does not carry the tenant's key; "
    [ "$(echo "$r" | jq -r .auth)" = ok ] || why+="mock auth=$(echo "$r" | jq -r .auth); "
    [ "$(echo "$r" | jq -r .style)" = "$want_style" ] || why+="style $(echo "$r" | jq -r .style); "
    [ "$(echo "$r" | jq -r .stream)" = "$s" ] || why+="stream flag $(echo "$r" | jq -r .stream); "
    # Exactly one credential header, and never the app's own Authorization.
    local creds
    creds=$(echo "$r" | jq '[.headers | to_entries[] | select(.key | test("^(authorization|api-key|x-api-key)$"; "i"))] | length')
    [ "$creds" = 1 ] || why+="$creds credential headers; "
    case $p in
    openai) [ "$(echo "$r" | jq -r .path)" = /v1/chat/completions ] || why+="path $(echo "$r" | jq -r .path); "
        [ "$(echo "$r" | jq -r .model)" = gpt-4o-mini ] || why+="model $(echo "$r" | jq -r .model); " ;;
    azure) [ "$(echo "$r" | jq -r .path)" = /openai/deployments/dep-gpt-4o-mini/chat/completions ] ||
        why+="path $(echo "$r" | jq -r .path); "
        [[ $(echo "$r" | jq -r .query) == *api-version=2024-10-21* ]] || why+="query $(echo "$r" | jq -r .query); " ;;
    anthropic) [ "$(echo "$r" | jq -r .path)" = /v1/messages ] || why+="path $(echo "$r" | jq -r .path); "
        [ -n "$(echo "$r" | jq -r '.headers["Anthropic-Version"][0] // ""')" ] || why+="no anthropic-version; "
        [ "$(echo "$r" | jq -r '.body | fromjson | .max_tokens')" = 5 ] || why+="max_tokens not passed; " ;;
    esac
    if [ -z "$why" ]; then t_ok "$p stream=$s: upstream request"; else t_fail "$p stream=$s: upstream request" "$why"; fi
}

PROMPT="one two three four" # 4 words: the mock counts 4 prompt tokens
NTOK=5
for p in "${PROVIDERS[@]}"; do
    model=${PROVIDER_MODEL[$p]}
    for s in false true; do
        since=$(mock_last_seq)
        call "$SOCK" POST /v1/chat/completions "$(chat_body "$p/$model" "$s" "$NTOK" "$PROMPT")"
        t_eq "$p stream=$s: HTTP 200" "$CODE" 200
        if [ "$s" = false ]; then
            text=$(echo "$BODY" | jq -r '.choices[0].message.content // empty' 2>/dev/null)
            pt=$(echo "$BODY" | jq -r '.usage.prompt_tokens // empty' 2>/dev/null)
            ct=$(echo "$BODY" | jq -r '.usage.completion_tokens // empty' 2>/dev/null)
        else
            text=$(echo "$BODY" | sse_content)
            usage=$(echo "$BODY" | sed -n 's/^data: //p' | grep -v '^\[DONE\]$' | jq -c 'select(.usage != null) | .usage' 2>/dev/null | tail -1)
            pt=$(echo "$usage" | jq -r '.prompt_tokens // empty' 2>/dev/null)
            ct=$(echo "$usage" | jq -r '.completion_tokens // empty' 2>/dev/null)
            if ! grep -qx 'data: \[DONE\]' <<<"$BODY"; then text="$text (no [DONE])"; fi
        fi
        t_eq "$p stream=$s: answer text" "$text" "$(words $NTOK)"
        t_eq "$p stream=$s: usage tokens" "$pt/$ct" "4/$NTOK"
        prov=$(hdr X-BYOK-Provider)
        mod=$(hdr X-BYOK-Model)
        if [ "$prov" = "$p" ] && [[ $mod =~ ^($p/)?$model$ ]]; then
            t_ok "$p stream=$s: provider and model headers"
        else
            t_fail "$p stream=$s: provider and model headers" "X-BYOK-Provider='$prov' X-BYOK-Model='$mod'"
        fi
        want=$(cost_of "$p" 4 "$NTOK")
        if [ "$s" = false ]; then
            t_num_eq "$p stream=$s: cost" "$(hdr X-BYOK-Cost-USD)" "$want" 1e-9
        else
            # A stream's cost is known only at its end, after the headers: the
            # stream closes with the SSE comment ": x-byok-usage {json}".
            u=$(echo "$BODY" | sed -n 's/^: x-byok-usage //p' | tail -1)
            got=$(echo "$u" | jq -r '"\(.request_id)/\(.provider)/\(.prompt_tokens)/\(.completion_tokens)"' 2>/dev/null)
            if [ "$got" != "$(hdr X-BYOK-Request-Id)/$p/4/$NTOK" ]; then
                t_fail "$p stream=$s: cost" "usage comment '$u'"
            else
                t_num_eq "$p stream=$s: cost" "$(echo "$u" | jq -r .cost_usd)" "$want" 1e-9
            fi
        fi
        check_upstream "$p" "$s" "$since"
        SUM_REQ[$p]=$((SUM_REQ[$p] + 1))
        SUM_PT[$p]=$((SUM_PT[$p] + 4))
        SUM_CT[$p]=$((SUM_CT[$p] + NTOK))
    done
done

# Embeddings: 3 words in two inputs -> 2 vectors, 3 prompt tokens.
call "$SOCK" POST /v1/embeddings '{"model":"openai/text-embedding-3-small","input":["alpha beta","gamma"]}'
t_eq "embeddings" "$CODE/$(echo "$BODY" | jq -r '(.data | length | tostring) + "/" + (.usage.prompt_tokens | tostring)' 2>/dev/null)" "200/2/3"
SUM_REQ[openai]=$((SUM_REQ[openai] + 1))
SUM_PT[openai]=$((SUM_PT[openai] + 3))

call "$SOCK" GET /v1/models ""
t_match "models list" "$CODE $(echo "$BODY" | jq -r '.object + " " + ([.data[].id] | join(","))' 2>/dev/null)" \
    "^200 list .*gpt-4o-mini"
call "$SOCK" GET /healthz ""
t_eq "healthz" "$CODE" 200
call "$SOCK" GET /metrics ""
t_match "metrics" "$CODE $(echo "$BODY" | grep -c '^[a-z_]\+.* [0-9]')" "^200 [1-9]"
METRICS=$BODY
# Sum of a family's samples whose labels contain every given label="value".
metric_sum() {
    local name=$1
    shift
    echo "$METRICS" | awk -v n="$name" -v want="$*" '
        index($0, n "{") == 1 {
            k = split(want, w, " "); ok = 1
            for (i = 1; i <= k; i++) if (index($0, w[i]) == 0) ok = 0
            if (ok) s += $NF
        }
        END { printf "%.10g", s + 0 }'
}
why=""
for p in "${PROVIDERS[@]}"; do
    pt=$(metric_sum byok_tokens_total "tenant=\"$TENANT\"" "provider=\"$p\"" 'kind="prompt"')
    ct=$(metric_sum byok_tokens_total "tenant=\"$TENANT\"" "provider=\"$p\"" 'kind="completion"')
    cost=$(metric_sum byok_cost_usd_total "tenant=\"$TENANT\"" "provider=\"$p\"")
    want=$(cost_of "$p" "${SUM_PT[$p]}" "${SUM_CT[$p]}")
    [ "$pt/$ct" = "${SUM_PT[$p]}/${SUM_CT[$p]}" ] || why+="$p tokens $pt/$ct, want ${SUM_PT[$p]}/${SUM_CT[$p]}; "
    awk -v a="$cost" -v b="$want" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-9 + 1e-6 * b) }' ||
        why+="$p cost $cost, want $want; "
done
if [ -z "$why" ]; then t_ok "metrics: tokens and cost per provider"; else t_fail "metrics: tokens and cost per provider" "$why"; fi
hits=$(metric_sum byok_keycache_total 'event="hit"')
fetches=$(metric_sum byok_keycache_total 'event="fetch"')
vreq=$(metric_sum byok_vault_calls_total 'event="request"')
# One fetch per provider (then hits), and at least those fetches went to Vault.
if [ "$fetches" -ge 3 ] && [ "$hits" -ge 1 ] && [ "$vreq" -ge "$fetches" ]; then
    t_ok "metrics: key cache and Vault calls"
else
    t_fail "metrics: key cache and Vault calls" "keycache hit=$hits fetch=$fetches, vault requests=$vreq"
fi
call "$SOCK" GET /v1/byok/usage ""
why=""
for p in "${PROVIDERS[@]}"; do
    got=$(echo "$BODY" | jq -r --arg p "$p" '.by_provider[$p] | "\(.requests)/\(.prompt_tokens)/\(.completion_tokens)"' 2>/dev/null)
    [ "$got" = "${SUM_REQ[$p]}/${SUM_PT[$p]}/${SUM_CT[$p]}" ] ||
        why+="$p $got, want ${SUM_REQ[$p]}/${SUM_PT[$p]}/${SUM_CT[$p]}; "
done
[ "$CODE" = 200 ] || why+="status $CODE; "
if [ -z "$why" ]; then t_ok "agent usage endpoint: totals per provider"; else t_fail "agent usage endpoint: totals per provider" "$why ${BODY:0:300}"; fi

# The agent ships usage in batches (report_interval_s 1); wait a bounded time.
usage_matches() {
    vault_api GET "byok/tenants/$TENANT/usage" "" "$ADMIN_TOKEN"
    USAGE=$VAULT_BODY
    [ "$VAULT_CODE" = 200 ] || return 1
    local p
    for p in "${PROVIDERS[@]}"; do
        [ "$(echo "$USAGE" | jq -r --arg p "$p" '.data.by_provider[$p].requests // 0')" = "${SUM_REQ[$p]}" ] || return 1
    done
}
if lib_wait_for 15 usage_matches; then t_ok "usage reported to Vault"; else
    t_fail "usage reported to Vault" "want requests ${SUM_REQ[*]} (openai azure anthropic), Vault has: ${USAGE:0:400}"
fi
why=""
for p in "${PROVIDERS[@]}"; do
    got=$(echo "$USAGE" | jq -r --arg p "$p" '.data.by_provider[$p] | "\(.prompt_tokens)/\(.completion_tokens)/\(.cost_usd)"' 2>/dev/null)
    want=$(cost_of "$p" "${SUM_PT[$p]}" "${SUM_CT[$p]}")
    if ! [[ $got == "${SUM_PT[$p]}/${SUM_CT[$p]}/"* ]] ||
        ! awk -v a="${got##*/}" -v b="$want" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-9) }'; then
        why+="$p: got $got want ${SUM_PT[$p]}/${SUM_CT[$p]}/$want; "
    fi
done
if [ -z "$why" ]; then t_ok "usage cost per provider"; else t_fail "usage cost per provider" "$why"; fi

t_check "agent alive" kill -0 "$AGENT_PID"
agent_stop_check "agent stops cleanly on SIGTERM, no sanitizer report"
t_eq "proxy variables in the agent's environment ignored: nothing reached the proxy they name" \
    "$(wc -c <"$PROXY_SEEN")" "0"
canary_scan "canary: nowhere but the provider request" "${KEY[@]}"
t_done
[ "$T_FAILED" -eq 0 ]
