#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# The agent's own rate limits per node (docs/agent.md, Rate limits), with
# limits.shared_rate_limits false (35-shared-rate-limits.sh covers the limits
# shared across nodes through rate leases), each tenant on its own socket,
# limits small enough that no bucket refills noticeably within the
# few seconds a case takes (the smallest refill counted on is 12 s away):
#   rpm     rpm_limit 3: three calls pass; the fourth is 429 tenant_rpm_exceeded
#           at once (OpenAI's error shape, Retry-After, the limit named) and
#           the mock saw three requests; a reload keeps the bucket (still 429).
#   tpm     tpm_limit 60: calls without max_tokens reserve their prompt
#           estimate (12 tokens) and are counted with what the mock reports
#           (4 prompt + 16 completion): two streams and a plain call use 60,
#           so the fourth is 429 tenant_tpm_exceeded and never sent. Counted
#           by their reservations only (36 of 60), it would have passed;
#           without the streams settled at their end, too.
#   tpmbig  tpm_limit 60: a call whose estimate is far above the limit (a long
#           tool description) reserves one limit, not its estimate, and is
#           settled with what it used (20): two more calls pass, the third is
#           429. Reserving the estimate sank the bucket to its debt bound, and
#           the settlement gave back tokens never taken: the call was free and
#           a third call passed too.
#   keyrl   openai key with rate_limit 1, anthropic fallback: the second call
#           skips openai (X-BYOK-Attempts 2, the mock sees anthropic only); a
#           call pinned to openai is 429 key_rate_limited with Retry-After.
#   single  one key (openai, rate_limit 1): the second call is 429
#           key_rate_limited with Retry-After, nothing sent.
# Refusals are counted in byok_rate_limited_total{tenant,limit} and logged
# (debug) with the limit's name and value; no key anywhere.
. "$(dirname "$0")/lib.sh"

CASES=("rpm_limit 3: three calls answered"
    "rpm_limit 3: the fourth is 429 tenant_rpm_exceeded at once, OpenAI's error shape, Retry-After"
    "rpm_limit 3: the mock saw three requests"
    "rpm_limit 3: after a reload the bucket is kept (still 429, nothing sent)"
    "tpm_limit 60: two streams and a call counted with their usage (60 tokens): answered"
    "tpm_limit 60: the next call is 429 tenant_tpm_exceeded with Retry-After, nothing sent"
    "tpm_limit 60: a call estimated far above the limit costs what it used: two more calls pass, the third is 429"
    "key rate_limit 1: the first call goes to the preferred provider"
    "key rate_limit 1: the second call fails over (X-BYOK-Attempts 2, the mock sees anthropic only)"
    "key rate_limit 1: pinned to the limited provider: 429 key_rate_limited with Retry-After, nothing sent"
    "key rate_limit 1, a single provider: the second call is 429 key_rate_limited with Retry-After, nothing sent"
    "refusals counted: byok_rate_limited_total{tenant,limit}"
    "refusal logged with the limit's name and value"
    "agent stops cleanly on SIGTERM, no sanitizer report"
    "canary: nowhere but the provider request")

lib_up && lib_require "$AGENT_BIN" || t_block_all

declare -A KEYS
# tenant_setup TENANT SETTINGS_JSON PROVIDER...: a canary key per provider, then the settings.
tenant_setup() {
    local t=$1 s=$2 p
    shift 2
    for p in "$@"; do
        KEYS[$t-$p]=$(lib_canary)
        key_put "$t" "$p" "${KEYS[$t-$p]}" || t_diag "$t/$p key not written"
    done
    vault_api PUT "byok/tenants/$t/settings" "$s" "$ADMIN_TOKEN"
    [ "$VAULT_CODE" -lt 300 ] || t_diag "$t settings: HTTP $VAULT_CODE $VAULT_BODY"
}
# key_rate TENANT PROVIDER N: the key's rate_limit (a write without key_value keeps the value).
key_rate() {
    vault_api PUT "byok/tenants/$1/keys/$2/production" "{\"rate_limit\": $3}" "$ADMIN_TOKEN"
    [ "$VAULT_CODE" -lt 300 ] || t_diag "$1/$2 rate_limit: HTTP $VAULT_CODE $VAULT_BODY"
}
tenant_setup rpm '{"preferred_providers":["openai"],"rpm_limit":3}' openai
tenant_setup tpm '{"preferred_providers":["openai"],"tpm_limit":60}' openai
tenant_setup tpmbig '{"preferred_providers":["openai"],"tpm_limit":60}' openai
tenant_setup keyrl '{"preferred_providers":["openai"],"fallback_providers":["anthropic"]}' openai anthropic
tenant_setup single '{"preferred_providers":["openai"]}' openai
key_rate keyrl openai 1
key_rate single openai 1

listeners=""
for t in rpm tpm tpmbig keyrl single; do
    listeners+="${listeners:+,}{\"path\": \"$AGENT_DIR/$t.sock\", \"mode\": \"0660\", \"tenant\": \"$t\", \"app\": \"rl\", \"metrics\": true}"
done
agent_config "[$listeners]" '.limits.shared_rate_limits = false'
agent_start || t_block_all

# sent SINCE: the mock's requests since SINCE, as "style" joined by commas.
sent() { mock_requests_since "$1" | jq -r 'map(.style) | join(",")'; }
# error_of: code and type of the last answer's error, and whether it has a message.
error_of() { echo "$BODY" | jq -r '.error | "\(.code) \(.type) \(if (.message | length) > 0 then "msg" else "no-msg" end)"' 2>/dev/null; }
# ra_in LO HI: "ra-ok" when the last answer's Retry-After is a whole number from LO to HI.
ra_in() {
    local ra
    ra=$(hdr Retry-After)
    if [[ $ra =~ ^[0-9]+$ ]] && [ "$ra" -ge "$1" ] && [ "$ra" -le "$2" ]; then echo ra-ok; else echo "ra='$ra'"; fi
}

# ---- rpm_limit ------------------------------------------------------------------------------
SOCK=$AGENT_DIR/rpm.sock
since=$(mock_last_seq)
codes=""
for i in 1 2 3; do
    call "$SOCK" POST /v1/chat/completions "$(chat_body auto false 3)"
    codes+="$CODE "
done
t_eq "rpm_limit 3: three calls answered" "$codes" "200 200 200 "
call "$SOCK" POST /v1/chat/completions "$(chat_body auto false 3)"
# A token is back 20 s after the first call (3 a minute): what is left of it, rounded up.
t_eq "rpm_limit 3: the fourth is 429 tenant_rpm_exceeded at once, OpenAI's error shape, Retry-After" \
    "$CODE $(error_of) $(echo "$BODY" | jq -r '.error.message | test("rpm_limit of 3 requests per minute")' 2>/dev/null) $(ra_in 10 20)" \
    "429 tenant_rpm_exceeded rate_limit_error msg true ra-ok"
t_eq "rpm_limit 3: the mock saw three requests" "$(sent "$since")" "openai,openai,openai"
kill -HUP "$AGENT_PID"
lib_wait_for 5 grep -qs '"config reloaded"' "$AGENT_LOG"
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini true 3)"
t_eq "rpm_limit 3: after a reload the bucket is kept (still 429, nothing sent)" \
    "$CODE $(echo "$BODY" | jq -r .error.code 2>/dev/null) $(ra_in 1 20) $(mock_requests_since "$since" | jq length)" \
    "429 tenant_rpm_exceeded ra-ok 0"

# ---- tpm_limit ------------------------------------------------------------------------------
# No max_tokens: the mock answers 16 words to the 4-word prompt (20 tokens); the
# agent reserves its prompt estimate, 12 (18 characters / 4, 4 per message, 3 for the reply).
SOCK=$AGENT_DIR/tpm.sock
NOMAX='{"model":"auto","messages":[{"role":"user","content":"one two three four"}]}'
NOMAX_STREAM='{"model":"auto","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"one two three four"}]}'
since=$(mock_last_seq)
codes=""
for b in "$NOMAX_STREAM" "$NOMAX_STREAM" "$NOMAX"; do
    call "$SOCK" POST /v1/chat/completions "$b" -N
    codes+="$CODE "
done
t_eq "tpm_limit 60: two streams and a call counted with their usage (60 tokens): answered" \
    "$codes$(sent "$since")" "200 200 200 openai,openai,openai"
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$NOMAX"
# 12 tokens at one a second, less what came back while the calls ran.
t_eq "tpm_limit 60: the next call is 429 tenant_tpm_exceeded with Retry-After, nothing sent" \
    "$CODE $(error_of) $(echo "$BODY" | jq -r '.error.message | test("tpm_limit of 60 tokens per minute")' 2>/dev/null) $(ra_in 5 12) $(mock_requests_since "$since" | jq length)" \
    "429 tenant_tpm_exceeded rate_limit_error msg true ra-ok 0"

# A tool description of 2,000 characters: an estimate of about 500 tokens, above the
# bucket plus its debt bound (120). It reserves 60, uses 20 (4 + 16): 40 left; each
# plain call reserves 12 and uses 20: 40 -> 20 -> 0 (plus a token a second of refill).
SOCK=$AGENT_DIR/tpmbig.sock
BIG=$(printf '{"model":"auto","messages":[{"role":"user","content":"one two three four"}],"tools":[{"type":"function","function":{"name":"f","description":"%s","parameters":{"type":"object","properties":{}}}}]}' "$(head -c 2000 /dev/zero | tr '\0' x)")
since=$(mock_last_seq)
codes=""
for b in "$BIG" "$NOMAX" "$NOMAX" "$NOMAX"; do
    call "$SOCK" POST /v1/chat/completions "$b"
    codes+="$CODE "
done
t_eq "tpm_limit 60: a call estimated far above the limit costs what it used: two more calls pass, the third is 429" \
    "$codes$(sent "$since")" "200 200 200 429 openai,openai,openai"

# ---- a key's rate_limit -----------------------------------------------------------------------
SOCK=$AGENT_DIR/keyrl.sock
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(chat_body auto false 3)"
t_eq "key rate_limit 1: the first call goes to the preferred provider" \
    "$CODE $(hdr X-BYOK-Provider) $(hdr X-BYOK-Attempts) $(sent "$since")" "200 openai 1 openai"
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(chat_body auto false 3)"
t_eq "key rate_limit 1: the second call fails over (X-BYOK-Attempts 2, the mock sees anthropic only)" \
    "$CODE $(hdr X-BYOK-Provider) $(hdr X-BYOK-Attempts) $(sent "$since")" "200 anthropic 2 anthropic"
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini false 3)"
t_eq "key rate_limit 1: pinned to the limited provider: 429 key_rate_limited with Retry-After, nothing sent" \
    "$CODE $(error_of) $(ra_in 50 60) $(mock_requests_since "$since" | jq length)" \
    "429 key_rate_limited rate_limit_error msg ra-ok 0"
SOCK=$AGENT_DIR/single.sock
call "$SOCK" POST /v1/chat/completions "$(chat_body auto false 3)"
first=$CODE
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(chat_body auto false 3)"
t_eq "key rate_limit 1, a single provider: the second call is 429 key_rate_limited with Retry-After, nothing sent" \
    "$first $CODE $(error_of) $(ra_in 50 60) $(mock_requests_since "$since" | jq length)" \
    "200 429 key_rate_limited rate_limit_error msg ra-ok 0"

# ---- metrics and logs ---------------------------------------------------------------------------
metrics=$(curl -s -m 5 --unix-socket "$AGENT_DIR/rpm.sock" http://localhost/metrics | grep '^byok_rate_limited_total' | sort | tr '\n' ' ')
t_eq "refusals counted: byok_rate_limited_total{tenant,limit}" "$metrics" \
    'byok_rate_limited_total{tenant="keyrl",limit="rate_limit"} 2 byok_rate_limited_total{tenant="rpm",limit="rpm_limit"} 2 byok_rate_limited_total{tenant="single",limit="rate_limit"} 1 byok_rate_limited_total{tenant="tpm",limit="tpm_limit"} 1 byok_rate_limited_total{tenant="tpmbig",limit="tpm_limit"} 1 '
logged=$(jq -r 'select(.["@message"] == "call refused: the tenant'"'"'s rate limit is reached") |
    "\(.tenant):\(.limit):\(.value)"' "$AGENT_LOG" 2>/dev/null | sort -u | tr '\n' ' ')
t_eq "refusal logged with the limit's name and value" "$logged" "rpm:rpm_limit:3 tpm:tpm_limit:60 tpmbig:tpm_limit:60 "

agent_stop_check "agent stops cleanly on SIGTERM, no sanitizer report"
canary_scan "canary: nowhere but the provider request" "${KEYS[@]}"
t_done
[ "$T_FAILED" -eq 0 ]
