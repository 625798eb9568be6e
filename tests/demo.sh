#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# What `make demo` runs: the whole system on this machine, one keyless call,
# then everything is stopped. Vault is a real `vault` server in dev mode when
# one is on PATH (the plugin registered by sha256 and enabled at byok/), else
# the stand-in build/vaultsim. The AI provider is the mock (build/mockprovider)
# on loopback with a throw-away CA. Nothing leaves the machine.
set -u
BYOK_ROOT=${BYOK_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
BYOK_BUILD=${BYOK_BUILD:-$BYOK_ROOT/build}
if command -v vault >/dev/null 2>&1; then BYOK_VAULT=${BYOK_VAULT:-real}; fi
. "$BYOK_ROOT/tests/e2e/lib.sh"

B=""
N=""
if [ -t 1 ]; then
    B=$(tput bold 2>/dev/null || true)
    N=$(tput sgr0 2>/dev/null || true)
fi
step() { echo; echo "${B}$*${N}"; }
fail() {
    echo "demo: $*" >&2
    T_FAILED=1 # keep the logs
    exit 1
}
rel() { echo "${1#"$BYOK_ROOT"/}"; }

echo "${B}byok demo${N}: an app calls an AI provider through byok-agent without ever holding the key."

step "1. Vault with the byok plugin"
lib_require "$MOCK_BIN" "$VAULTSIM_BIN" "$PLUGIN_BIN" "$AGENT_BIN" || fail "$LIB_BLOCKED_REASON (run: make tools)"
mock_start || fail "the mock provider did not start"
vault_start || fail "Vault did not start; log: $(rel "$VAULT_DIR")"
if [ "$BYOK_VAULT" = real ]; then
    echo "   $(vault version 2>/dev/null | head -1) in dev mode at $VAULT_ADDR"
    echo "   plugin registered by sha256 and enabled at byok/"
else
    echo "   no 'vault' on PATH: the stand-in $(rel "$VAULTSIM_BIN") at $VAULT_ADDR"
    echo "   (it launches $(rel "$PLUGIN_BIN") the way Vault does: go-plugin, AutoMTLS, broker)"
fi
vault_setup || fail "could not create policies and tokens (HTTP $VAULT_CODE)"
echo "   policies byok-admin and byok-agent written; the agent's token is in a 0600 file"

step "2. The AI provider"
echo "   mock OpenAI-compatible provider at $MOCK_URL (test CA $(rel "$MOCK_CA"))"
# The built-in OpenAI entry (models, prices) with only its base URL pointed at the mock.
vault_api GET byok/providers/openai "" "$ADMIN_TOKEN"
[ "$VAULT_CODE" = 200 ] || fail "reading the built-in openai entry: HTTP $VAULT_CODE"
entry=$(echo "$VAULT_BODY" | jq --arg u "$MOCK_URL/v1" '.data | del(.builtin, .overridden) | .base_url = $u')
vault_api PUT byok/providers/openai "$entry" "$ADMIN_TOKEN"
[ "$VAULT_CODE" -lt 300 ] || fail "catalog override: HTTP $VAULT_CODE $VAULT_BODY"
prices=$(echo "$entry" | jq -r '.models[] | select(.name == "gpt-4o-mini") | "$\(.input_per_1m) in, $\(.output_per_1m) out"')
echo "   admin: PUT byok/providers/openai base_url=$MOCK_URL/v1"
echo "   (the built-in entry otherwise: gpt-4o-mini at $prices per 1M tokens)"

step "3. The tenant stores its key (write-only)"
KEY=sk-demo-$(lib_random_hex 20)
key_put acme openai "$KEY" || fail "key write failed"
vault_api GET byok/tenants/acme/keys/openai/production "" "$ADMIN_TOKEN"
masked=$(echo "$VAULT_BODY" | jq -r '.data.masked_value // "?"')
echo "   PUT byok/tenants/acme/keys/openai/production key_value=<secret>"
echo "   reading it back shows only: $masked"

step "4. The agent"
SOCK=$AGENT_DIR/acme.sock
agent_config "[{\"path\": \"$SOCK\", \"mode\": \"0660\", \"tenant\": \"acme\", \"app\": \"demo\"}]" \
    '.log_level = "info" | .providers = ["openai"]'
agent_start || fail "the agent did not start: $(tail -n 3 "$AGENT_LOG")"
echo "   byok-agent listening on $SOCK (bound to tenant acme); it reads the key from Vault on demand"

step "5. The app's call: no key anywhere"
REQ='{"model": "openai/gpt-4o-mini", "max_tokens": 8, "messages": [{"role": "user", "content": "Say hello to the demo"}]}'
echo "   \$ curl --unix-socket $SOCK http://localhost/v1/chat/completions \\"
echo "       -H 'Content-Type: application/json' -d '$REQ'"
call "$SOCK" POST /v1/chat/completions "$REQ"
echo
echo "   HTTP $CODE"
echo "$HDRS" | grep -i '^x-byok-' | sed 's/^/   /'
if [ "$CODE" = 200 ]; then
    echo "   answer: $(echo "$BODY" | jq -r '.choices[0].message.content')"
    echo "   usage:  $(echo "$BODY" | jq -c '.usage')"
else
    echo "   body: $BODY"
fi
seen=$(mock_requests_since 0 | K=$KEY jq -r '[.[] | select(.headers.Authorization[0] == "Bearer " + env.K)] | length')
echo "   the provider received the tenant's key in $seen request(s); the app never had it"

step "6. Stopping everything"
[ "$CODE" = 200 ] || fail "the call did not succeed (logs kept)"
echo "   done."
