#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# upstream.proxy: provider calls through an HTTP CONNECT proxy
# (connect-proxy.py, which logs every request line and keeps every byte the
# agent sends through it):
#   - an https provider is reached through a CONNECT tunnel to its host and
#     port, and the call is answered;
#   - what crossed the proxy is TLS: neither the key nor the prompt is in it;
#   - a provider marked local (plain http on the node) and Vault are called
#     directly, never through the proxy;
#   - with the proxy gone, a call is a clear 5xx and reaches no provider.
. "$(dirname "$0")/lib.sh"

CASES=("through the proxy: the call is answered"
    "the proxy was asked only to CONNECT to the provider's host and port"
    "what crossed the proxy is TLS: neither the key nor the prompt"
    "a local provider is called directly, not through the proxy"
    "Vault is called directly, not through the proxy"
    "proxy gone: a clear 502, nothing reached the provider"
    "agent stops cleanly on SIGTERM, no sanitizer report"
    "canary: nowhere but the provider request")

lib_up && lib_require "$AGENT_BIN" || t_block_all
KEY=$(lib_canary)
key_put acme openai "$KEY" || t_block_all
local_vllm_at_mock || t_block_all
key_put acme vllm "$KEY" || t_block_all

PX=$(lib_free_port)
PX_LOG=$LIB_TMP/proxy-requests.log
PX_CAP=$LIB_TMP/proxy-capture.bin
: >"$PX_LOG"
: >"$PX_CAP"
lib_spawn "$LIB_TMP/proxy.log" "$PY" "$(dirname "$0")/connect-proxy.py" "$PX" "$PX_LOG" "$PX_CAP"
PROXY_PID=$LIB_LAST_PID
lib_wait_proc "$PROXY_PID" 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PX" 2>/dev/null || t_block_all
: >"$PX_LOG" # the readiness probe's connection is not a request

SOCK=$AGENT_DIR/acme.sock
agent_config "[{\"path\": \"$SOCK\", \"mode\": \"0660\", \"tenant\": \"acme\", \"app\": \"proxy\"}]" \
    ".upstream.proxy = \"http://127.0.0.1:$PX\" | .providers = [\"openai\", \"vllm\"]"
agent_start || t_block_all

PROMPT="prompt-$(lib_random_hex 8)"
call "$SOCK" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini false 5 "$PROMPT")"
t_eq "through the proxy: the call is answered" \
    "$CODE $(echo "$BODY" | jq -r '.choices[0].message.content' 2>/dev/null)" "200 $(words 5)"
t_eq "the proxy was asked only to CONNECT to the provider's host and port" \
    "$(sort -u "$PX_LOG")" "CONNECT 127.0.0.1:$MOCK_HTTPS HTTP/1.1"
# A TLS record starts with its content type: 0x16 (handshake) for the ClientHello.
first=$(head -c 1 "$PX_CAP" | od -An -tx1 | tr -d ' ')
if [ "$first" = 16 ] && ! grep -qaF "$KEY" "$PX_CAP" && ! grep -qaF "$PROMPT" "$PX_CAP" &&
    ! grep -qai "authorization" "$PX_CAP"; then
    t_ok "what crossed the proxy is TLS: neither the key nor the prompt"
else
    t_fail "what crossed the proxy is TLS: neither the key nor the prompt" \
        "first byte $first, $(wc -c <"$PX_CAP") bytes captured"
fi

lines=$(wc -l <"$PX_LOG")
call "$SOCK" POST /v1/chat/completions "$(chat_body vllm/gpt-4o-mini false 3)"
t_eq "a local provider is called directly, not through the proxy" \
    "$CODE $(echo "$BODY" | jq -r '.choices[0].message.content' 2>/dev/null) $(wc -l <"$PX_LOG")" \
    "200 $(words 3) $lines"
# The agent fetched both keys from Vault (creds) and reported usage by now.
VPORT=${VAULT_ADDR##*:}
t_eq "Vault is called directly, not through the proxy" \
    "$(grep -c ":$VPORT" "$PX_LOG")" 0

lib_stop "$PROXY_PID"
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini false 5)"
t_eq "proxy gone: a clear 502, nothing reached the provider" \
    "$CODE $(echo "$BODY" | jq -r '.error.message | length > 0' 2>/dev/null) $(mock_requests_since "$since" | jq length)" \
    "502 true 0"
t_diag "proxy gone: $(echo "$BODY" | jq -c .error 2>/dev/null)"

agent_stop_check "agent stops cleanly on SIGTERM, no sanitizer report"
canary_scan "canary: nowhere but the provider request" "$KEY"
t_done
[ "$T_FAILED" -eq 0 ]
