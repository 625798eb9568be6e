#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# Failover along the router's chain. Tenant acme has OpenAI and Anthropic keys,
# prefers openai and falls back to anthropic; model "auto". The mock's
# /_mock/scenario makes exactly the next upstream request fail (429, 503, a 302
# (never followed), a 503 whose error body never ends (read up to its 64 KiB
# cap, then dropped), a stall before the first byte of a stream, or a 200 whose
# first token never comes), so the second attempt must carry
# the answer: the app sees one clean 200, X-BYOK-Attempts 2, and the provider
# that answered; the mock sees the failed request with the first provider's
# key and the good one with the second's. A bare model every provider lists
# ("mock-503") that fails everywhere ends in one clear error after trying each.
# Tenant beta prefers openai and falls back to bedrock, a catalog style this
# agent does not speak (gamma the other way round): that candidate is skipped,
# and when openai failed first its failure (a 503, retriable) decides the
# reply, not "unsupported" (400).
. "$(dirname "$0")/lib.sh"

CASES=("auto, no fault: preferred provider, 1 attempt"
    "auto, 429 first: answered by the fallback"
    "auto, 429 first: upstream saw openai then anthropic, each with its key"
    "auto, 503 first: answered by the fallback"
    "auto, 302 first: answered by the fallback (the redirect not followed)"
    "auto, 503 whose error body never ends: answered by the fallback"
    "auto, stream stalls before its first byte: complete stream from the fallback"
    "auto, stream answers 200 but its first token never comes: complete stream from the fallback"
    "auto, non-streamed 200 whose body never comes: answered by the fallback"
    "every candidate fails: one clear error after trying each"
    "auto, a provider this agent cannot call first: skipped, answered by the next"
    "auto, 503 then only a provider this agent cannot call: 502 provider_error, not 400"
    "agent alive" "agent stops cleanly on SIGTERM, no sanitizer report"
    "canary: nowhere but the provider request")

lib_up && lib_require "$AGENT_BIN" || t_block_all
canary_keys acme openai anthropic
vault_api PUT byok/tenants/acme/settings \
    '{"preferred_providers":["openai"],"fallback_providers":["anthropic"],"budget_tier":"HIGH"}' "$ADMIN_TOKEN"
[ "$VAULT_CODE" -lt 300 ] || t_diag "tenant settings: HTTP $VAULT_CODE $VAULT_BODY"
declare -A OTHER
for t in beta gamma; do
    OTHER[$t-openai]=$(lib_canary)
    OTHER[$t-bedrock]=$(lib_canary)
    key_put $t openai "${OTHER[$t-openai]}" && key_put $t bedrock "${OTHER[$t-bedrock]}" ||
        t_diag "$t keys not written"
done
vault_api PUT byok/tenants/beta/settings \
    '{"preferred_providers":["openai"],"fallback_providers":["bedrock"],"budget_tier":"HIGH"}' "$ADMIN_TOKEN"
[ "$VAULT_CODE" -lt 300 ] || t_diag "beta settings: HTTP $VAULT_CODE $VAULT_BODY"
vault_api PUT byok/tenants/gamma/settings \
    '{"preferred_providers":["bedrock"],"fallback_providers":["openai"],"budget_tier":"HIGH"}' "$ADMIN_TOKEN"
[ "$VAULT_CODE" -lt 300 ] || t_diag "gamma settings: HTTP $VAULT_CODE $VAULT_BODY"
SOCK=$AGENT_DIR/acme.sock
BSOCK=$AGENT_DIR/beta.sock
GSOCK=$AGENT_DIR/gamma.sock
agent_config "[{\"path\": \"$SOCK\", \"mode\": \"0660\", \"tenant\": \"acme\", \"app\": \"failover\"},
    {\"path\": \"$BSOCK\", \"mode\": \"0660\", \"tenant\": \"beta\", \"app\": \"failover\"},
    {\"path\": \"$GSOCK\", \"mode\": \"0660\", \"tenant\": \"gamma\", \"app\": \"failover\"}]" \
    '.upstream.first_byte_timeout_ms = 2000 | .providers = ["openai", "anthropic", "bedrock"]'
agent_start || t_block_all

# upstream_trace SINCE: "style:scenario:keyowner" per request the mock saw.
upstream_trace() {
    mock_requests_since "$1" | KO=${KEY[openai]} KA=${KEY[anthropic]} jq -r '[.[] |
        ((.headers.Authorization[0] // "" | sub("^Bearer "; "")) + (.headers["X-Api-Key"][0] // "")) as $k |
        "\(.style):\(.scenario):\(if $k == env.KO then "openai-key" elif $k == env.KA then "anthropic-key" else "other-key" end)"]
        | join(",")'
}

since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(chat_body auto false 3)"
t_eq "auto, no fault: preferred provider, 1 attempt" \
    "$CODE $(hdr X-BYOK-Provider) $(hdr X-BYOK-Attempts) $(upstream_trace "$since")" \
    "200 openai 1 openai:normal:openai-key"

for f in 429 503 302 endlesserror; do
    mock_ctl POST /_mock/scenario "{\"scenario\":\"$f\",\"count\":1}" >/dev/null
    since=$(mock_last_seq)
    call "$SOCK" POST /v1/chat/completions "$(chat_body auto false 3)"
    text=$(echo "$BODY" | jq -r '.choices[0].message.content' 2>/dev/null)
    case $f in
    302) c="auto, 302 first: answered by the fallback (the redirect not followed)" ;;
    endlesserror) c="auto, 503 whose error body never ends: answered by the fallback" ;;
    *) c="auto, $f first: answered by the fallback" ;;
    esac
    t_eq "$c" "$CODE $(hdr X-BYOK-Provider) $(hdr X-BYOK-Attempts) $text $(upstream_trace "$since")" \
        "200 anthropic 2 $(words 3) openai:$f:openai-key,anthropic:normal:anthropic-key"
    if [ "$f" = 429 ]; then
        t_eq "auto, 429 first: upstream saw openai then anthropic, each with its key" \
            "$(upstream_trace "$since")" "openai:429:openai-key,anthropic:normal:anthropic-key"
    fi
done

mock_ctl POST /_mock/scenario '{"scenario":"stall","count":1}' >/dev/null
call "$SOCK" POST /v1/chat/completions "$(chat_body auto true 6)" -N
if [ "$CODE" = 200 ] && [ "$(echo "$BODY" | sse_content)" = "$(words 6)" ] &&
    grep -qx 'data: \[DONE\]' <<<"$BODY" && [ "$(hdr X-BYOK-Provider)" = anthropic ]; then
    t_ok "auto, stream stalls before its first byte: complete stream from the fallback"
else
    t_fail "auto, stream stalls before its first byte: complete stream from the fallback" \
        "HTTP $CODE provider '$(hdr X-BYOK-Provider)' body ${BODY:0:300}"
fi
mock_ctl DELETE /_mock/scenario >/dev/null

# A 200 with its headers, then no body byte: the time-to-first-token deadline
# (first_byte_timeout_ms) moves the call on, streamed or not. (Once body bytes
# of a 2xx have come, the provider has done the work: no failover, see 12.)
mock_ctl POST /_mock/scenario '{"scenario":"stallbody","count":1}' >/dev/null
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(chat_body auto true 6)" -N
t_eq "auto, stream answers 200 but its first token never comes: complete stream from the fallback" \
    "$CODE $(hdr X-BYOK-Provider) $(hdr X-BYOK-Attempts) $(echo "$BODY" | sse_content) $(upstream_trace "$since")" \
    "200 anthropic 2 $(words 6) openai:stallbody:openai-key,anthropic:normal:anthropic-key"
mock_ctl POST /_mock/scenario '{"scenario":"stallbody","count":1}' >/dev/null
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(chat_body auto false 3)"
t_eq "auto, non-streamed 200 whose body never comes: answered by the fallback" \
    "$CODE $(hdr X-BYOK-Provider) $(upstream_trace "$since")" \
    "200 anthropic openai:stallbody:openai-key,anthropic:normal:anthropic-key"
mock_ctl DELETE /_mock/scenario >/dev/null

since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(chat_body mock-503 false 3)"
trace=$(upstream_trace "$since")
if [[ $CODE =~ ^(502|503)$ ]] && echo "$BODY" | jq -e '.error.message | length > 0' >/dev/null 2>&1 &&
    [[ $trace == *openai:503:openai-key* ]] && [[ $trace == *anthropic:503:anthropic-key* ]]; then
    t_ok "every candidate fails: one clear error after trying each"
else
    t_fail "every candidate fails: one clear error after trying each" "HTTP $CODE, upstream: $trace, body ${BODY:0:200}"
fi

# gamma: bedrock first, then openai answers.
since=$(mock_last_seq)
call "$GSOCK" POST /v1/chat/completions "$(chat_body auto false 3)"
t_eq "auto, a provider this agent cannot call first: skipped, answered by the next" \
    "$CODE $(hdr X-BYOK-Provider) $(mock_requests_since "$since" | jq -r 'map(.style) | join(",")')" \
    "200 openai openai"
# beta: openai first answers 503, then bedrock cannot be called.
mock_ctl POST /_mock/scenario '{"scenario":"503","count":1}' >/dev/null
since=$(mock_last_seq)
call "$BSOCK" POST /v1/chat/completions "$(chat_body auto false 3)"
# The request's log line names the provider whose failure decided the reply.
rid=$(hdr X-BYOK-Request-Id)
lib_wait_for 3 grep -qs "\"request_id\":\"$rid\"" "$AGENT_LOG"
logged=$(jq -r --arg id "$rid" 'select(.["@message"] == "request" and .request_id == $id) | .provider' "$AGENT_LOG" 2>/dev/null)
t_eq "auto, 503 then only a provider this agent cannot call: 502 provider_error, not 400" \
    "$CODE $(echo "$BODY" | jq -r .error.code 2>/dev/null) $(mock_requests_since "$since" | jq -r 'map(.style + ":" + .scenario) | join(",")') logged ${logged:-none}" \
    "502 provider_error openai:503 logged openai"
mock_ctl DELETE /_mock/scenario >/dev/null

t_check "agent alive" kill -0 "$AGENT_PID"
agent_stop_check "agent stops cleanly on SIGTERM, no sanitizer report"
canary_scan "canary: nowhere but the provider request" "${KEY[@]}" "${OTHER[@]}"
t_done
[ "$T_FAILED" -eq 0 ]
