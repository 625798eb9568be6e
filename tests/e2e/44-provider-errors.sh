#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# A provider's refusal in its own words reaches the app: app -> agent socket ->
# Vault -> plugin creds -> mock provider answering 400 (the mock's "400"
# scenario) in each style's error shape with a context-length reason that
# quotes the request's key and carries a CR LF. The app gets a 400 with the
# agent's message followed by the provider's reason (OpenAI's shape also the
# provider's code and param, as SDKs test error.code ==
# "context_length_exceeded"; Anthropic's shape on /v1/messages the reason as
# it is, for Claude Code's "prompt is too long"), the key replaced by
# [redacted], no CR or LF. A 401 keeps the agent's words only (a provider's
# 401 text may quote the key). The agent's log keeps its own code and never
# the provider's text. Canary: the keys are nowhere but the provider request.
. "$(dirname "$0")/lib.sh"

CASES=("openai: 400 context_length_exceeded, param messages, the provider's reason after the agent's"
    "openai: the key redacted, no CR/LF, nothing injected"
    "openai stream: the same 400 before any event"
    "azure: 400 with the provider's code and reason, key redacted"
    "anthropic (chat): 400 provider_rejected_request with Anthropic's reason, key redacted"
    "anthropic /v1/messages: Anthropic's error shape, the reason as the provider gave it"
    "openai 401: the agent's words only, none of the provider's"
    "log: the agent's code, never the provider's text"
    "agent stops cleanly on SIGTERM, no sanitizer report"
    "canary: nowhere but the provider request")

lib_up && lib_require "$AGENT_BIN" || t_block_all
canary_keys acme openai azure anthropic || { LIB_BLOCKED_REASON="key write failed"; t_block_all; }

SOCK=$AGENT_DIR/acme.sock
agent_config "[{\"path\": \"$SOCK\", \"mode\": \"0660\", \"tenant\": \"acme\", \"app\": \"e2e\"}]" \
    '.upstream.health_failures = 0'
agent_start || t_block_all

# scenario NAME: the mock's next answer.
scenario() { mock_ctl POST /_mock/scenario "{\"scenario\":\"$1\",\"count\":1}" >/dev/null; }
# err FIELD: a field of the last answer's OpenAI error object.
err() { echo "$BODY" | jq -r ".error.$1 // \"null\"" 2>/dev/null; }

WANT_OPENAI="the provider rejected the request: This model's maximum context length is 8 tokens. However, your messages resulted in 9 tokens (key [redacted]). X-Injected: 1"

scenario 400
call "$SOCK" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini)"
t_eq "openai: 400 context_length_exceeded, param messages, the provider's reason after the agent's" \
    "$CODE|$(err type)|$(err code)|$(err param)|$(err message)" \
    "400|invalid_request_error|context_length_exceeded|messages|$WANT_OPENAI"
# The raw body: no CR or LF inside the message (the JSON encodes none), no header line made.
if printf '%s' "$BODY" | grep -q $'\r' || [ "$(printf '%s' "$BODY" | wc -l)" -gt 0 ] ||
    [ -n "$(hdr X-Injected)" ] || printf '%s' "$BODY" | grep -qF '\r\n'; then
    t_fail "openai: the key redacted, no CR/LF, nothing injected" "body: $(printf '%s' "$BODY" | head -c 400)"
elif printf '%s' "$BODY" | grep -qF "${KEY[openai]:0:12}"; then
    t_fail "openai: the key redacted, no CR/LF, nothing injected" "the key's start is in the body"
else
    t_ok "openai: the key redacted, no CR/LF, nothing injected"
fi

scenario 400
call "$SOCK" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini true)"
t_eq "openai stream: the same 400 before any event" \
    "$CODE|$(hdr Content-Type)|$(err code)|$(err message)" \
    "400|application/json|context_length_exceeded|$WANT_OPENAI"

scenario 400
call "$SOCK" POST /v1/chat/completions "$(chat_body azure/gpt-4o-mini)"
t_eq "azure: 400 with the provider's code and reason, key redacted" \
    "$CODE|$(err code)|$(err message)" "400|context_length_exceeded|$WANT_OPENAI"

scenario 400
call "$SOCK" POST /v1/chat/completions "$(chat_body anthropic/claude-3-5-haiku)"
t_eq "anthropic (chat): 400 provider_rejected_request with Anthropic's reason, key redacted" \
    "$CODE|$(err code)|$(err param)|$(err message)" \
    "400|provider_rejected_request|null|the provider rejected the request: prompt is too long: 9 tokens > 8 maximum (key [redacted]) X-Injected: 1"

scenario 400
call "$SOCK" POST /v1/messages \
    '{"model": "anthropic/claude-3-5-haiku", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}'
t_eq "anthropic /v1/messages: Anthropic's error shape, the reason as the provider gave it" \
    "$CODE|$(echo "$BODY" | jq -r '"\(.type)|\(.error.type)|\(.error.message)"' 2>/dev/null)" \
    "400|error|invalid_request_error|prompt is too long: 9 tokens > 8 maximum (key [redacted]) X-Injected: 1"

scenario 401
call "$SOCK" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini)"
t_eq "openai 401: the agent's words only, none of the provider's" \
    "$CODE|$(err code)|$(err message)" "502|provider_auth_failed|the provider refused the tenant's key"

# The request log lines of the refused calls: the agent's code; the provider's words nowhere.
codes=$(grep -F '"status":"400"' "$AGENT_LOG" | grep -o '"error":"[a-z_]*"' | sort | uniq -c | awk '{ print $1 " " $2 }' | tr '\n' ' ')
if grep -qiF -e "maximum context length" -e "prompt is too long" -e "X-Injected" "$AGENT_LOG"; then
    t_fail "log: the agent's code, never the provider's text" "the provider's text is in the agent's log"
else
    t_eq "log: the agent's code, never the provider's text" "$codes" \
        '5 "error":"provider_rejected_request" '
fi

agent_stop_check "agent stops cleanly on SIGTERM, no sanitizer report"
canary_scan "canary: nowhere but the provider request" "${KEY[@]}"
t_done
