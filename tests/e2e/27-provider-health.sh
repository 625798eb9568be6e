#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# Provider health (docs/agent.md, Provider health). Tenant acme has OpenAI and
# Anthropic keys, prefers openai and falls back to anthropic; model "auto".
# The mock's /_mock/scenario makes exactly the next upstream request answer
# 503 (set before a call, it hits openai, the first candidate), so a call
# fails over to anthropic.
#   demote  upstream.health_failures 2, health_demote_s 2: two calls go
#           openai (503) -> anthropic (X-BYOK-Attempts 2); openai is then
#           demoted: the next calls go to anthropic first (X-BYOK-Attempts 1,
#           the mock sees no openai request). After the period openai is
#           tried first again; its 503 demotes it again at once (half-open);
#           after the next period it answers and stays first, and its count
#           starts again (one 503 does not demote it).
#   reload  health_demote_s 60: a reload keeps a demotion; a call pinned to
#           the demoted provider still calls it; when anthropic fails the
#           demoted openai is still tried (never skipped) and its answer
#           puts it back first at once. A reload to health_failures 0 drops
#           the demotion, and then every call tries openai first however
#           often it fails.
#   refused openai pointed at a closed port (connection refused) for tenant
#           beta, whose creds are fetched after the change: two failed
#           connects demote openai for every tenant (the outage is the
#           provider's): beta's and acme's calls go to anthropic first.
# Demotions are counted in byok_provider_demotions_total{provider} and
# logged at warn (provider, failures, demote_s, the kind of the last failure),
# a recovery at info; no key anywhere. Every wait is well past the period,
# and no case needs a call to take less than the 2 s period.
. "$(dirname "$0")/lib.sh"

CASES=("503 from openai (1 of 2): answered by anthropic, X-BYOK-Attempts 2"
    "503 from openai (2 of 2): answered by anthropic, X-BYOK-Attempts 2"
    "openai demoted: anthropic first, X-BYOK-Attempts 1, the mock sees no openai request"
    "openai demoted: a stream goes to anthropic first too"
    "demotion logged at warn: provider, failures, demote_s, last_failure, status"
    "after the period openai is tried first again; its 503 fails over (X-BYOK-Attempts 2)"
    "half-open: one failure after the period demotes it again at once (anthropic first)"
    "after the next period openai answers: first again, X-BYOK-Attempts 1"
    "openai answering again is logged at info"
    "it stays first, and its count starts again: one 503 fails over, the next call tries openai first"
    "demotions counted: byok_provider_demotions_total{provider=\"openai\"} 2"
    "a reload keeps the demotion: anthropic first, X-BYOK-Attempts 1"
    "pinned to the demoted provider/model: it is still called"
    "anthropic fails while openai is demoted: openai is still tried and answers (X-BYOK-Attempts 2)"
    "its answer puts openai back first at once"
    "reload to health_failures 0: the demotion is dropped, openai is tried first"
    "health_failures 0: after four 503s in a row every call still tries openai first"
    "connection refused twice (tenant beta): answered by anthropic, X-BYOK-Attempts 2"
    "then openai is demoted for every tenant: beta and acme go to anthropic first"
    "a connect error is logged as such: last_failure connect_error, status 0"
    "agent alive" "agent stops cleanly on SIGTERM, no sanitizer report"
    "canary: nowhere but the provider request")

lib_up && lib_require "$AGENT_BIN" || t_block_all
canary_keys acme openai anthropic
SETTINGS='{"preferred_providers":["openai"],"fallback_providers":["anthropic"],"budget_tier":"HIGH"}'
vault_api PUT byok/tenants/acme/settings "$SETTINGS" "$ADMIN_TOKEN"
[ "$VAULT_CODE" -lt 300 ] || t_diag "acme settings: HTTP $VAULT_CODE $VAULT_BODY"
declare -A BETA
for p in openai anthropic; do
    BETA[$p]=$(lib_canary)
    key_put beta "$p" "${BETA[$p]}" || t_diag "beta/$p key not written"
done
vault_api PUT byok/tenants/beta/settings "$SETTINGS" "$ADMIN_TOKEN"
[ "$VAULT_CODE" -lt 300 ] || t_diag "beta settings: HTTP $VAULT_CODE $VAULT_BODY"
SOCK=$AGENT_DIR/acme.sock
BSOCK=$AGENT_DIR/beta.sock
agent_config "[{\"path\": \"$SOCK\", \"mode\": \"0660\", \"tenant\": \"acme\", \"app\": \"health\", \"metrics\": true},
    {\"path\": \"$BSOCK\", \"mode\": \"0660\", \"tenant\": \"beta\", \"app\": \"health\"}]" \
    '.upstream.health_failures = 2 | .upstream.health_demote_s = 2'
agent_start || t_block_all

# attempt SCENARIO SOCKET [MODEL] [STREAM]: one call; unless SCENARIO is "-", the
# mock answers its next request (the call's first attempt) with SCENARIO. GOT:
# "status provider attempts style:scenario,..." (the requests the mock saw).
attempt() {
    local sc=$1 sock=$2 model=${3:-auto} stream=${4:-false} since
    [ "$sc" = - ] || mock_ctl POST /_mock/scenario "{\"scenario\":\"$sc\",\"count\":1}" >/dev/null
    since=$(mock_last_seq)
    call "$sock" POST /v1/chat/completions "$(chat_body "$model" "$stream" 3)" -N
    [ "$sc" = - ] || mock_ctl DELETE /_mock/scenario >/dev/null
    GOT="$CODE $(hdr X-BYOK-Provider) $(hdr X-BYOK-Attempts) $(mock_requests_since "$since" |
        jq -r 'map(.style + ":" + .scenario) | join(",")')"
}
# reload JQ_FILTER: applies the filter to the agent's config and reloads it.
reload() {
    local n
    jq "$1" "$AGENT_CONFIG" >"$AGENT_CONFIG.new" && mv "$AGENT_CONFIG.new" "$AGENT_CONFIG"
    n=$(grep -c '"config reloaded"' "$AGENT_LOG")
    kill -HUP "$AGENT_PID"
    lib_wait_for 5 reloaded_since "$n" || t_diag "reload not logged"
}
# recovered REQUEST_ID: the info line of openai answering again, logged by that request.
recovered() {
    jq -c --arg id "$1" 'select(.["@message"] == "provider answers again; back in its place" and
        .["@level"] == "info" and .provider == "openai" and .request_id == $id)' "$AGENT_LOG" 2>/dev/null |
        grep -q .
}
reloaded_since() { [ "$(grep -c '"config reloaded"' "$AGENT_LOG")" -gt "$1" ]; }
# demotions: "provider:failures:demote_s:last_failure:status" per demotion logged, space-separated.
demotions() {
    jq -r 'select(.["@message"] == "provider demoted: tried after the healthy candidates" and .["@level"] == "warn") |
        "\(.provider):\(.failures):\(.demote_s):\(.last_failure):\(.status)"' "$AGENT_LOG" 2>/dev/null | tr '\n' ' '
}

# ---- demote ---------------------------------------------------------------------------------
attempt 503 "$SOCK"
t_eq "503 from openai (1 of 2): answered by anthropic, X-BYOK-Attempts 2" "$GOT" \
    "200 anthropic 2 openai:503,anthropic:normal"
attempt 503 "$SOCK"
t_eq "503 from openai (2 of 2): answered by anthropic, X-BYOK-Attempts 2" "$GOT" \
    "200 anthropic 2 openai:503,anthropic:normal"
attempt - "$SOCK"
t_eq "openai demoted: anthropic first, X-BYOK-Attempts 1, the mock sees no openai request" "$GOT" \
    "200 anthropic 1 anthropic:normal"
attempt - "$SOCK" auto true
t_eq "openai demoted: a stream goes to anthropic first too" \
    "$GOT $(echo "$BODY" | sse_content)" "200 anthropic 1 anthropic:normal $(words 3)"
t_eq "demotion logged at warn: provider, failures, demote_s, last_failure, status" "$(demotions)" \
    "openai:2:2:status_5xx:503 "
sleep 4 # twice the period
attempt 503 "$SOCK"
t_eq "after the period openai is tried first again; its 503 fails over (X-BYOK-Attempts 2)" "$GOT" \
    "200 anthropic 2 openai:503,anthropic:normal"
attempt - "$SOCK"
t_eq "half-open: one failure after the period demotes it again at once (anthropic first)" \
    "$GOT $(demotions)" "200 anthropic 1 anthropic:normal openai:2:2:status_5xx:503 openai:3:2:status_5xx:503 "
sleep 4
attempt - "$SOCK"
t_eq "after the next period openai answers: first again, X-BYOK-Attempts 1" "$GOT" \
    "200 openai 1 openai:normal"
rid=$(hdr X-BYOK-Request-Id)
t_check "openai answering again is logged at info" lib_wait_for 3 recovered "$rid"
attempt 503 "$SOCK"
got=$GOT
attempt - "$SOCK"
t_eq "it stays first, and its count starts again: one 503 fails over, the next call tries openai first" \
    "$got / $GOT" "200 anthropic 2 openai:503,anthropic:normal / 200 openai 1 openai:normal"
t_eq "demotions counted: byok_provider_demotions_total{provider=\"openai\"} 2" \
    "$(curl -s -m 5 --unix-socket "$SOCK" http://localhost/metrics | grep '^byok_provider_demotions_total' | tr '\n' ' ')" \
    'byok_provider_demotions_total{provider="openai"} 2 '

# ---- reload ---------------------------------------------------------------------------------
# A minute's demotion: nothing below waits for it to pass.
reload '.upstream.health_demote_s = 60'
attempt 503 "$SOCK"
attempt 503 "$SOCK"
reload '.'
attempt - "$SOCK"
t_eq "a reload keeps the demotion: anthropic first, X-BYOK-Attempts 1" "$GOT" \
    "200 anthropic 1 anthropic:normal"
# Pinned: a single candidate, demoted or not (its 503 is the answer: 502, nothing else tried).
attempt 503 "$SOCK" openai/gpt-4o-mini
t_eq "pinned to the demoted provider/model: it is still called" \
    "$CODE $(echo "$BODY" | jq -r .error.code 2>/dev/null) ${GOT##* }" "502 provider_error openai:503"
attempt 503 "$SOCK"
t_eq "anthropic fails while openai is demoted: openai is still tried and answers (X-BYOK-Attempts 2)" \
    "$GOT" "200 openai 2 anthropic:503,openai:normal"
attempt - "$SOCK"
t_eq "its answer puts openai back first at once" "$GOT" "200 openai 1 openai:normal"
attempt 503 "$SOCK"
attempt 503 "$SOCK"
attempt - "$SOCK"
demoted=$GOT
reload '.upstream.health_failures = 0'
attempt 503 "$SOCK"
t_eq "reload to health_failures 0: the demotion is dropped, openai is tried first" \
    "$demoted / $GOT" "200 anthropic 1 anthropic:normal / 200 anthropic 2 openai:503,anthropic:normal"
all=""
for i in 1 2 3 4; do
    attempt 503 "$SOCK"
    all+="$GOT / "
done
attempt - "$SOCK"
t_eq "health_failures 0: after four 503s in a row every call still tries openai first" "$all$GOT" \
    "$(for i in 1 2 3 4; do echo -n "200 anthropic 2 openai:503,anthropic:normal / "; done)200 openai 1 openai:normal"

# ---- refused --------------------------------------------------------------------------------
reload '.upstream.health_failures = 2'
# beta's creds are fetched after this: its catalog entry for openai names a port nobody listens on.
closed=$(lib_free_port)
vault_api GET byok/providers/openai "" "$ADMIN_TOKEN"
url=$(echo "$VAULT_BODY" | jq -r '.data.base_url // empty' 2>/dev/null | sed -E "s#^https?://[^/]*#https://127.0.0.1:$closed#")
vault_api PUT byok/providers/openai "$(provider_entry openai openai "$url")" "$ADMIN_TOKEN" >/dev/null
[ "$VAULT_CODE" -lt 300 ] || t_diag "openai at a closed port: HTTP $VAULT_CODE $VAULT_BODY"
attempt - "$BSOCK"
got=$GOT
attempt - "$BSOCK"
t_eq "connection refused twice (tenant beta): answered by anthropic, X-BYOK-Attempts 2" \
    "$got / $GOT" "200 anthropic 2 anthropic:normal / 200 anthropic 2 anthropic:normal"
attempt - "$BSOCK"
got=$GOT
attempt - "$SOCK"
t_eq "then openai is demoted for every tenant: beta and acme go to anthropic first" \
    "$got / $GOT" "200 anthropic 1 anthropic:normal / 200 anthropic 1 anthropic:normal"
t_eq "a connect error is logged as such: last_failure connect_error, status 0" \
    "$(demotions | awk '{ print $NF }')" "openai:2:60:connect_error:0"

t_check "agent alive" kill -0 "$AGENT_PID"
agent_stop_check "agent stops cleanly on SIGTERM, no sanitizer report"
canary_scan "canary: nowhere but the provider request" "${KEY[@]}" "${BETA[@]}"
t_done
[ "$T_FAILED" -eq 0 ]
