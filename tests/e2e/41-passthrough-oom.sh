#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# A provider's answer passed through to the app (OpenAI's chat answer on
# /v1/chat/completions, Anthropic's message on /v1/messages) that the agent
# cannot hand to evhttp: libevent's evbuffer_add_reference fails for it, as
# when out of memory (tests/e2e/fail-addref.c, preloaded into the agent,
# fails it for buffers holding the mock's answers and for nothing else).
#   - the app gets a 500 in its route's error shape, never a 200 with an
#     empty body: OpenAI's error JSON (server_error, code internal), and on
#     /v1/messages Anthropic's {"type":"error","error":{"type":"api_error"}};
#   - the call is still logged (500, internal, the provider that answered)
#     and counted with the answer's usage in the plugin's ledger: the
#     provider answered and may bill it.
# Skipped on the ASan build, whose runtime must come first among the
# preloaded libraries (the normal build runs it).
. "$(dirname "$0")/lib.sh"

CASES=("openai passthrough, answer not held: HTTP 500, OpenAI's error JSON (server_error, internal)"
    "/v1/messages, answer not held: HTTP 500, Anthropic's error (error, api_error)"
    "both logged 500 internal under the provider that answered, with the answer's usage"
    "both in the plugin's ledger with the logged tokens"
    "other replies unaffected: /healthz 200"
    "agent stops cleanly on SIGTERM, no sanitizer report"
    "canary: nowhere but the provider request")

skip_all() {
    local c
    for c in "${CASES[@]}"; do t_skip "$c" "$1"; done
    t_done
    exit
}

lib_require "$AGENT_BIN" || t_block_all
if [[ $(ldd "$AGENT_BIN" 2>/dev/null) == *libasan* ]]; then
    CASES=("a passthrough answer the agent cannot hold") # one skip, not one per case
    skip_all "ASan build: its runtime must be the first preloaded library (the normal build runs it)"
fi
SHIM=$LIB_TMP/fail-addref.so
if ! ${CC:-cc} -O1 -shared -fPIC -o "$SHIM" "$BYOK_ROOT/tests/e2e/fail-addref.c" -ldl 2>"$LIB_TMP/cc.err"; then
    LIB_BLOCKED_REASON="fail-addref.c did not build: $(head -c 300 "$LIB_TMP/cc.err")"
    t_block_all
fi
# The agent with the shim: the needles are in the mock's OpenAI answer (its
# system_fingerprint) and Anthropic message (its stop_reason), in no error reply.
REAL_AGENT=$AGENT_BIN
AGENT_BIN=$LIB_TMP/agent-preload
printf '#!/bin/bash\nLD_PRELOAD=%q FAIL_ADDREF_NEEDLES=%q exec %q "$@"\n' \
    "$SHIM" '"fp_mock"|"end_turn"' "$REAL_AGENT" >"$AGENT_BIN"
chmod 0755 "$AGENT_BIN"

lib_up || t_block_all
canary_keys acme openai anthropic || { LIB_BLOCKED_REASON="key write failed"; t_block_all; }
SOCK=$AGENT_DIR/acme.sock
agent_config "[{\"path\": \"$SOCK\", \"mode\": \"0660\", \"tenant\": \"acme\", \"app\": \"oom\"}]" \
    '.log_level = "info" | .providers = ["openai", "anthropic"]'
agent_start || t_block_all

# line ROUTE: the agent's log line of the last call on ROUTE.
line() { grep '"@message":"request"' "$AGENT_LOG" | grep "\"route\":\"$1\"" | tail -1; }
# fields LINE: status error provider prompt completion estimated
fields() {
    echo "$1" | jq -r '[.status, .error, .provider, .prompt_tokens, .completion_tokens, (.usage_estimated // false)] | join(" ")'
}

call "$SOCK" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini false 3)"
t_eq "openai passthrough, answer not held: HTTP 500, OpenAI's error JSON (server_error, internal)" \
    "$CODE $(echo "$BODY" | jq -c '[.error.type, .error.code, .error.message]' 2>/dev/null)" \
    '500 ["server_error","internal","out of memory"]'
CHAT=$(fields "$(line /v1/chat/completions)")

MSG='{"model": "anthropic/claude-3-5-haiku", "max_tokens": 5, "messages": [{"role": "user", "content": "one two three"}]}'
call "$SOCK" POST /v1/messages "$MSG"
t_eq "/v1/messages, answer not held: HTTP 500, Anthropic's error (error, api_error)" \
    "$CODE $(echo "$BODY" | jq -c '[.type, .error.type, .error.message, (.request_id | startswith("req_"))]' 2>/dev/null)" \
    '500 ["error","api_error","out of memory",true]'
MSGS=$(fields "$(line /v1/messages)")

# The mock answers max_tokens words; the prompt is its own count (more than none).
read -r cs ce cp cpt cct cest <<<"$CHAT"
read -r ms me mp mpt mct mest <<<"$MSGS"
t_eq "both logged 500 internal under the provider that answered, with the answer's usage" \
    "$cs $ce $cp $((cpt > 0)) $cct $cest | $ms $me $mp $((mpt > 0)) $mct $mest" \
    "500 internal openai 1 3 false | 500 internal anthropic 1 5 false"

ledger() { usage_ledger acme '[.requests, .prompt_tokens, .completion_tokens]'; }
want="[2,$((cpt + mpt)),$((cct + mct))]"
counted() { [ "$(ledger)" = "$want" ]; }
lib_wait_for 10 counted
t_eq "both in the plugin's ledger with the logged tokens" "$(ledger)" "$want"

call "$SOCK" GET /healthz
t_eq "other replies unaffected: /healthz 200" "$CODE $(echo "$BODY" | jq -r .status 2>/dev/null)" "200 ok"

agent_stop_check "agent stops cleanly on SIGTERM, no sanitizer report"
canary_scan "canary: nowhere but the provider request" "${KEY[@]}"
t_done
[ "$T_FAILED" -eq 0 ]
