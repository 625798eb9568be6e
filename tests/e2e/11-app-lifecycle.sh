#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# An app connection over its whole life, at the edges (client_timeout_s is 1 s):
#   - a provider pausing longer than client_timeout_s in the middle of a
#     stream (the mock's "slowstream" scenario, 1.5 s between chunks): the app
#     reading it sends nothing meanwhile and still gets every frame and
#     [DONE]; only a write without progress is bounded by that timeout.
. "$(dirname "$0")/lib.sh"

CASES=("stream pausing longer than client_timeout_s: every frame and [DONE]"
    "stream pausing longer than client_timeout_s: logged 200"
    "agent stops cleanly on SIGTERM, no sanitizer report"
    "canary: nowhere but the provider request")

lib_require "$MOCK_BIN" "$VAULTSIM_BIN" "$PLUGIN_BIN" "$AGENT_BIN" || t_block_all
mock_start -slow-stream-interval 1500ms || {
    LIB_BLOCKED_REASON="mockprovider did not start"
    t_block_all
}
vault_start && vault_setup && providers_point_at_mock || {
    LIB_BLOCKED_REASON="Vault with the plugin did not start or could not be set up"
    t_block_all
}
KEY=$(lib_canary)
key_put acme openai "$KEY"
SOCK=$AGENT_DIR/acme.sock
agent_config "[{\"path\": \"$SOCK\", \"mode\": \"0660\", \"tenant\": \"acme\", \"app\": \"life\"}]" \
    '.limits.client_timeout_s = 1 | .log_level = "info"'
agent_start || t_block_all

# ---- a provider pause mid-stream longer than client_timeout_s ----
call "$SOCK" POST /v1/chat/completions "$(chat_body openai/mock-slowstream true 2)" -N
t_eq "stream pausing longer than client_timeout_s: every frame and [DONE]" \
    "$CODE $(sse_content <"$LIB_TMP/last.body") $(grep -c '^data: \[DONE\]' "$LIB_TMP/last.body")" \
    "200 $(words 2) 1"
t_eq "stream pausing longer than client_timeout_s: logged 200" \
    "$(grep '"model":"mock-slowstream"' "$AGENT_LOG" | tail -1 | jq -r '.status + " " + (.error // "-")')" \
    "200 -"

agent_stop_check "agent stops cleanly on SIGTERM, no sanitizer report"
canary_scan "canary: nowhere but the provider request" "$KEY"
t_done
