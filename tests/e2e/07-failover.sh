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
# Tenant beta prefers openai and falls back to bedrock, a provider this agent
# cannot call (gamma the other way round): the built-in bedrock entry, left as
# shipped, still holds its {region} placeholder in base_url, which the
# adapter refuses as a configuration error (no request leaves the agent).
# Before the agent had a Bedrock adapter this case used bedrock as a style it
# did not speak; the path through the agent is the same (the candidate fails
# as unsupported). That candidate is skipped, and when openai failed first
# its failure (a 503, retriable) decides the reply, not "unsupported" (400).
#
# Retry-After: a 429 (or a 503 with Retry-After) cools the tenant's key for
# that provider for the provider's wait: the next calls skip it (the mock
# sees no request for it) and go to the other candidates; when every
# candidate cools (or the pinned one does) the app gets 429 rate_limited at
# once, with Retry-After, and no request reaches the mock; once the wait has
# passed the provider is called again. Another tenant's key for the same
# provider is not held back. The waits are seconds long and the checks only
# need each back-to-back call to come well within them.
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
    "Retry-After 4 on a 429 from openai: answered by the fallback"
    "within the wait: the next call skips openai (the mock sees anthropic only)"
    "a 503 with Retry-After from anthropic, openai cooling: 502 provider_error with Retry-After"
    "every candidate cooling: 429 rate_limited at once with Retry-After, no request reaches the mock"
    "pinned to a cooling provider/model: 429 rate_limited with Retry-After, no request reaches the mock"
    "another tenant's key for the cooling provider is called as usual"
    "skips are counted: byok_cooldown_skips_total{provider}"
    "cooldown logged with a bounded number, never the header's bytes"
    "after the wait: openai is called again"
    "the last candidate's 429: the app's 429 carries the provider's Retry-After, code and reason"
    "a 429 (Retry-After 6), then a 2 s timeout: the app's Retry-After is what is left of the wait"
    "Retry-After past retry_after_max_s after a reload: capped (HTTP-date)"
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
# Provider health off: the cases below fail openai many times in a row and each expects it
# tried first (27-provider-health.sh covers the demotion that would follow).
agent_config "[{\"path\": \"$SOCK\", \"mode\": \"0660\", \"tenant\": \"acme\", \"app\": \"failover\", \"metrics\": true},
    {\"path\": \"$BSOCK\", \"mode\": \"0660\", \"tenant\": \"beta\", \"app\": \"failover\"},
    {\"path\": \"$GSOCK\", \"mode\": \"0660\", \"tenant\": \"gamma\", \"app\": \"failover\"}]" \
    '.upstream.first_byte_timeout_ms = 2000 | .upstream.health_failures = 0 | .providers = ["openai", "anthropic", "bedrock"]'
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
        # The mock's 429 said Retry-After: 1, so openai's key cools for 1 s: wait it out.
        sleep 2
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

# ---- Retry-After ----------------------------------------------------------------------------
# metric NAME_AND_LABELS: its value on /metrics (0 when absent).
metric() {
    curl -s -m 5 --unix-socket "$SOCK" http://localhost/metrics |
        awk -v k="$1" '$1 == k { print $2; f = 1 } END { if (!f) print 0 }'
}
skips0=$(metric 'byok_cooldown_skips_total{provider="openai"}')
mock_ctl POST /_mock/scenario '{"scenario":"429","count":1,"retry_after":"4"}' >/dev/null
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(chat_body auto false 3)"
t_eq "Retry-After 4 on a 429 from openai: answered by the fallback" \
    "$CODE $(hdr X-BYOK-Provider) $(upstream_trace "$since")" \
    "200 anthropic openai:429:openai-key,anthropic:normal:anthropic-key"
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(chat_body auto false 3)"
t_eq "within the wait: the next call skips openai (the mock sees anthropic only)" \
    "$CODE $(hdr X-BYOK-Provider) $(upstream_trace "$since")" \
    "200 anthropic anthropic:normal:anthropic-key"
# anthropic answers 503 with Retry-After (a 503 without one cools nothing: the
# cases above fail over after a 503 and then use openai at once). The last
# failure decides the reply (a 503 is 502 provider_error); it carries the wait.
mock_ctl POST /_mock/scenario '{"scenario":"503","count":1,"retry_after":"4"}' >/dev/null
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(chat_body auto false 3)"
ra=$(hdr Retry-After)
t_eq "a 503 with Retry-After from anthropic, openai cooling: 502 provider_error with Retry-After" \
    "$CODE $(echo "$BODY" | jq -r .error.code 2>/dev/null) $(upstream_trace "$since") $([[ $ra =~ ^[1-4]$ ]] && echo ra-ok || echo "ra='$ra'")" \
    "502 provider_error anthropic:503:anthropic-key ra-ok"
mock_ctl DELETE /_mock/scenario >/dev/null
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(chat_body auto false 3)"
ra=$(hdr Retry-After)
t_eq "every candidate cooling: 429 rate_limited at once with Retry-After, no request reaches the mock" \
    "$CODE $(echo "$BODY" | jq -r '.error.code + " " + .error.type' 2>/dev/null) $(mock_requests_since "$since" | jq length) $([[ $ra =~ ^[1-4]$ ]] && echo ra-ok || echo "ra='$ra'")" \
    "429 rate_limited rate_limit_error 0 ra-ok"
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini false 3)"
ra2=$(hdr Retry-After)
t_eq "pinned to a cooling provider/model: 429 rate_limited with Retry-After, no request reaches the mock" \
    "$CODE $(echo "$BODY" | jq -r .error.code 2>/dev/null) $(mock_requests_since "$since" | jq length) $([[ $ra2 =~ ^[1-4]$ ]] && echo ra-ok || echo "ra='$ra2'")" \
    "429 rate_limited 0 ra-ok"
# beta's own openai key: acme's cooldown is not beta's.
since=$(mock_last_seq)
call "$BSOCK" POST /v1/chat/completions "$(chat_body auto false 3)"
t_eq "another tenant's key for the cooling provider is called as usual" \
    "$CODE $(hdr X-BYOK-Provider) $(mock_requests_since "$since" | jq -r --arg k "${OTHER[beta-openai]}" \
        'map(.style + ":" + (if .headers.Authorization[0] == "Bearer " + $k then "beta-key" else "other-key" end)) | join(",")')" \
    "200 openai openai:beta-key"
skips1=$(metric 'byok_cooldown_skips_total{provider="openai"}')
t_check "skips are counted: byok_cooldown_skips_total{provider}" \
    awk -v a="$skips0" -v b="$skips1" 'BEGIN { exit !(b - a >= 3) }'
# One line per cooldown started, with the capped wait as a number.
logged=$(jq -r 'select(.["@message"] == "provider asked to wait; the tenant'"'"'s key cools down") |
    "\(.tenant):\(.provider):\(.status):\(.cooldown_s)"' "$AGENT_LOG" 2>/dev/null | tail -n 2 | tr '\n' ' ')
t_eq "cooldown logged with a bounded number, never the header's bytes" "$logged" \
    "acme:openai:429:4.000 acme:anthropic:503:4.000 "
# After the wait the app was told (plus a second), openai is called again.
sleep $((ra + 1))
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(chat_body auto false 3)"
t_eq "after the wait: openai is called again" \
    "$CODE $(hdr X-BYOK-Provider) $(hdr X-BYOK-Attempts) $(upstream_trace "$since")" \
    "200 openai 1 openai:normal:openai-key"
# beta has one callable candidate: its 429 (retry-after-ms wins over Retry-After) is the app's.
mock_ctl POST /_mock/scenario '{"scenario":"429","count":1,"retry_after":"30","retry_after_ms":"1500"}' >/dev/null
call "$BSOCK" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini false 3)"
t_eq "the last candidate's 429: the app's 429 carries the provider's Retry-After, code and reason" \
    "$CODE|$(echo "$BODY" | jq -r '"\(.error.code)|\(.error.message)"' 2>/dev/null)|$(hdr Retry-After)" \
    "429|rate_limit_exceeded|the provider is rate limiting this key: Rate limit reached for requests.|2"
mock_ctl DELETE /_mock/scenario >/dev/null
# The app's Retry-After counts from the answer: openai's 429 asks for 6 s, then anthropic
# stalls until the 2 s first-byte timeout, so about 4 s are left (rounded up: 4 or 5; 3 on a
# slow run), not 6.
sleep 4 # acme's cooldowns from the cases above have ended
mock_ctl POST /_mock/scenario '{"scenario":"429","count":1,"retry_after":"6","then":"stall"}' >/dev/null
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(chat_body auto false 3)"
ra=$(hdr Retry-After)
t_eq "a 429 (Retry-After 6), then a 2 s timeout: the app's Retry-After is what is left of the wait" \
    "$CODE $(echo "$BODY" | jq -r .error.code 2>/dev/null) $(upstream_trace "$since" | cut -d, -f1) $([[ $ra =~ ^[345]$ ]] && echo ra-ok || echo "ra='$ra'")" \
    "504 upstream_timeout openai:429:openai-key ra-ok"
mock_ctl DELETE /_mock/scenario >/dev/null
# A reload lowers the cap to 1 s: an HTTP-date an hour ahead cools gamma's openai key 1 s only.
jq '.upstream.retry_after_max_s = 1' "$AGENT_CONFIG" >"$AGENT_CONFIG.new" && mv "$AGENT_CONFIG.new" "$AGENT_CONFIG"
kill -HUP "$AGENT_PID"
lib_wait_for 5 grep -qs '"config reloaded"' "$AGENT_LOG"
mock_ctl POST /_mock/scenario "{\"scenario\":\"429\",\"count\":1,\"retry_after\":\"$(TZ=GMT date -d '+1 hour' '+%a, %d %b %Y %H:%M:%S GMT')\"}" >/dev/null
call "$GSOCK" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini false 3)"
got="$CODE $(hdr Retry-After)"
mock_ctl DELETE /_mock/scenario >/dev/null
# Cooling 1 s, not the hour (nor the 60 s of the default cap): called again 2 s later.
sleep 2
since=$(mock_last_seq)
call "$GSOCK" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini false 3)"
t_eq "Retry-After past retry_after_max_s after a reload: capped (HTTP-date)" \
    "$got $CODE $(mock_requests_since "$since" | jq length)" "429 1 200 1"

t_check "agent alive" kill -0 "$AGENT_PID"
agent_stop_check "agent stops cleanly on SIGTERM, no sanitizer report"
canary_scan "canary: nowhere but the provider request" "${KEY[@]}" "${OTHER[@]}"
t_done
[ "$T_FAILED" -eq 0 ]
