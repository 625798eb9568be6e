#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# The upstream deadlines other than the first byte (07 covers that one):
#   - upstream.idle_timeout_ms bounds the gap between two body chunks: a
#     stream that sends two words and then nothing ends with the agent's
#     upstream_timeout event; a JSON answer that stops part-way is a 504
#     upstream_timeout;
#   - upstream.total_timeout_ms bounds the whole transfer: a stream whose
#     chunks keep coming every 20 ms (never idle) but would take 10 s is cut
#     with upstream_timeout; a non-streamed answer that has not begun by then
#     is a 504.
# The mock holds a stalled answer until its -stall-max (60 s) and then drops
# the connection, which the agent would report as upstream_stream_error or
# provider_error: each case below tells a deadline that fired from that.
. "$(dirname "$0")/lib.sh"

CASES=("idle: a stream that stalls after two words ends with upstream_timeout"
    "idle: a JSON answer that stalls part-way is a 504 upstream_timeout"
    "total: a stream that keeps trickling is cut with upstream_timeout"
    "total: a non-streamed answer that has not begun is a 504 upstream_timeout"
    "agent alive" "agent stops cleanly on SIGTERM, no sanitizer report"
    "canary: nowhere but the provider request")

lib_up && lib_require "$AGENT_BIN" || t_block_all
KEY=$(lib_canary)
key_put acme openai "$KEY" || t_block_all
SOCK=$AGENT_DIR/acme.sock
agent_config "[{\"path\": \"$SOCK\", \"mode\": \"0660\", \"tenant\": \"acme\", \"app\": \"timeouts\"}]" \
    '.upstream.idle_timeout_ms = 500 | .upstream.total_timeout_ms = 1500
     | .upstream.first_byte_timeout_ms = 60000 | .providers = ["openai"]'
agent_start || t_block_all

# stream_error: the error code of the agent's closing error event, or "none".
stream_error() { sed -n 's/^data: //p' | grep -v '^\[DONE\]$' | jq -r 'select(.error) | .error.code' 2>/dev/null | tail -n 1 | grep . || echo none; }

call "$SOCK" POST /v1/chat/completions "$(chat_body openai/mock-stallmid true 20)" -N
t_eq "idle: a stream that stalls after two words ends with upstream_timeout" \
    "$CODE $(echo "$BODY" | sse_content) $(echo "$BODY" | stream_error)" "200 w0 w1 upstream_timeout"

call "$SOCK" POST /v1/chat/completions "$(chat_body openai/mock-stallmid false 20)"
t_eq "idle: a JSON answer that stalls part-way is a 504 upstream_timeout" \
    "$CODE $(echo "$BODY" | jq -r .error.code 2>/dev/null)" "504 upstream_timeout"

call "$SOCK" POST /v1/chat/completions "$(chat_body openai/mock-slowstream true 500)" -N
n=$(echo "$BODY" | sse_content | wc -w)
t_eq "total: a stream that keeps trickling is cut with upstream_timeout" \
    "$CODE $((n > 2 && n < 500)) $(echo "$BODY" | stream_error)" "200 1 upstream_timeout"

call "$SOCK" POST /v1/chat/completions "$(chat_body openai/mock-slow false 3)"
t_eq "total: a non-streamed answer that has not begun is a 504 upstream_timeout" \
    "$CODE $(echo "$BODY" | jq -r .error.code 2>/dev/null)" "504 upstream_timeout"

t_check "agent alive" kill -0 "$AGENT_PID"
agent_stop_check "agent stops cleanly on SIGTERM, no sanitizer report"
canary_scan "canary: nowhere but the provider request" "$KEY"
t_done
[ "$T_FAILED" -eq 0 ]
