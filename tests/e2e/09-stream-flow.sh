#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# Flow control of streamed answers through the agent.
# Cancellation: an app that leaves in the middle of a slow stream makes the
#   agent drop the upstream transfer: the mock sees its client go away long
#   before the answer would have ended.
# Backpressure: an app that stops reading a fast, large stream (100,000 frames,
#   about 20 MB) makes the agent pause the upstream transfer instead of
#   buffering: while the app sleeps the mock cannot get most of the answer out
#   and the agent's RSS stays far below the answer's size; when the app reads
#   again every frame arrives, in order, ending with [DONE].
# The usage chunk: the agent asks every provider for usage, but the app gets
#   the chunk of empty "choices" that carries it only when it asked
#   (stream_options.include_usage), as from OpenAI: SDK loops that read
#   choices[0] of every chunk break on it. Its usage is still billed.
. "$(dirname "$0")/lib.sh"

CASES=("cancel: app leaves mid-stream, the provider sees its client go"
    "cancel: the provider stopped well before the end of the answer"
    "backpressure: a non-reading app holds back the provider"
    "backpressure: agent RSS stays far below the answer size"
    "backpressure: every frame arrives in order once the app reads, then [DONE]"
    "no include_usage, openai: the whole answer, [DONE] last, no chunk of empty choices"
    "no include_usage, openai: billed with the provider's usage, not an estimate"
    "no include_usage, anthropic: the whole answer, [DONE] last, no chunk of empty choices"
    "include_usage, openai and anthropic: the usage chunk, before [DONE]"
    "agent alive" "agent stops cleanly on SIGTERM, no sanitizer report"
    "canary: nowhere but the provider request")

lib_up && lib_require "$AGENT_BIN" || t_block_all
KEY=$(lib_canary)
key_put acme openai "$KEY"
AKEY=$(lib_canary)
key_put acme anthropic "$AKEY"
SOCK=$AGENT_DIR/acme.sock
agent_config "[{\"path\": \"$SOCK\", \"mode\": \"0660\", \"tenant\": \"acme\", \"app\": \"flow\"}]" \
    '.upstream.idle_timeout_ms = 20000 | .upstream.total_timeout_ms = 60000 | .limits.client_timeout_s = 30'
# Under ASan, RSS also holds the quarantine of freed blocks (up to 256 MB): the
# agent allocates and frees ~1.8 GB over this script (a malloc uprobe, with the
# same total on a normal build), so RSS would measure when that churn happened,
# not what the agent holds. A small quarantine keeps RSS about live memory (no
# effect on a normal build).
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=8"
agent_start || t_block_all

# mock_record SEQ: the mock's record of request SEQ (JSON), or empty.
mock_record() { mock_requests_since $(($1 - 1)) | jq -c --argjson s "$1" '.[] | select(.seq == $s)'; }

# ---- cancellation: 500 frames 20 ms apart (10 s); the app leaves after ~1 s ----
since=$(mock_last_seq)
curl -s -N -m 1 --unix-socket "$SOCK" http://localhost/v1/chat/completions \
    -H 'Content-Type: application/json' -d "$(chat_body openai/mock-slowstream true 500)" \
    >"$LIB_TMP/cancel.out" 2>/dev/null
sleep 1.5
rec=$(mock_record $((since + 1)))
t_eq "cancel: app leaves mid-stream, the provider sees its client go" \
    "$(echo "$rec" | jq -r .client_gone)" "true"
sent=$(echo "$rec" | jq -r .events_sent)
sleep 0.5
later=$(mock_record $((since + 1)) | jq -r .events_sent)
if [ -n "$sent" ] && [ "$sent" != null ] && [ "$sent" -gt 0 ] && [ "$sent" -lt 250 ] && [ "$later" = "$sent" ]; then
    t_ok "cancel: the provider stopped well before the end of the answer ($sent of 500 frames)"
else
    t_fail "cancel: the provider stopped well before the end of the answer" "events sent: $sent, 0.5 s later $later, of 500"
fi

# ---- backpressure ----
WORDS=100000  # the mock's -max-words cap
since=$(mock_last_seq)
SOCK="$SOCK" BODY="$(chat_body openai/mock-normal true $WORDS)" WORDS=$WORDS AGENT_PID=$AGENT_PID \
    python3 - >"$LIB_TMP/flow.out" 2>"$LIB_TMP/flow.err" <<'PY' &
import json, os, socket, sys, time

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1

body = os.environ["BODY"].encode()
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.settimeout(60)  # a stalled agent fails the case instead of hanging the suite
s.connect(os.environ["SOCK"])
s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
          + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
first = s.recv(4096)
rss_before = rss_kib(os.environ["AGENT_PID"])
time.sleep(3)  # the app stops reading
rss_paused = rss_kib(os.environ["AGENT_PID"])
print("status_line", first.split(b"\r\n", 1)[0].decode())
print("rss_before_kib", rss_before)
print("rss_paused_kib", rss_paused)
print("paused_done", 1)
sys.stdout.flush()
# Let the shell read the mock's progress while the app is still not reading.
while not os.path.exists(os.environ["SOCK"] + ".flowgo"):
    time.sleep(0.05)
data = bytearray(first)
while True:
    chunk = s.recv(1 << 16)
    if not chunk:
        break
    data += chunk
    if data.endswith(b"0\r\n\r\n"):
        break
s.close()
# De-chunk (HTTP/1.1 chunked) and check the SSE frames. An offset walks the
# body: slicing off each chunk copied the ~20 MB rest every time, and with one
# chunk per frame (100,000 chunks) that took longer than the suite's timeout.
data = bytes(data)
pos = data.index(b"\r\n\r\n") + 4
out = bytearray()
nchunks = 0
while pos < len(data):
    nchunks += 1
    eol = data.index(b"\r\n", pos)
    n = int(data[pos:eol].split(b";")[0], 16)
    if n == 0:
        break
    out += data[eol + 2:eol + 2 + n]
    pos = eol + 2 + n + 2
words = []
done = False
for ev in out.decode().split("\n\n"):
    if not ev.startswith("data: "):
        continue
    d = ev[6:]
    if d == "[DONE]":
        done = True
        continue
    j = json.loads(d)
    for c in j.get("choices", []):
        t = c.get("delta", {}).get("content")
        if t:
            words.append(t.strip())
want = [f"w{i}" for i in range(int(os.environ["WORDS"]))]
print("frames_ok", 1 if words == want else 0)
print("frames", len(words))
print("chunks", nchunks)
print("done", 1 if done else 0)
PY
PYPID=$!
FLOW_OUT=$LIB_TMP/flow.out
lib_wait_for 15 grep -qs paused_done "$FLOW_OUT"
rec=$(mock_record $((since + 1)))
sent=$(echo "$rec" | jq -r .events_sent)
touch "$SOCK.flowgo"
wait $PYPID 2>/dev/null
val() { awk -v k="$1" '$1 == k { print $2 }' "$FLOW_OUT"; }
if [ -n "$sent" ] && [ "$sent" != null ] && [ "$sent" -lt $((WORDS / 2)) ]; then
    t_ok "backpressure: a non-reading app holds back the provider ($sent of $WORDS frames out)"
else
    t_fail "backpressure: a non-reading app holds back the provider" "events sent while paused: $sent of $WORDS; $(head -c 300 "$LIB_TMP/flow.err")"
fi
grow=$(($(val rss_paused_kib) - $(val rss_before_kib)))
if [ -n "$(val rss_paused_kib)" ] && [ "$grow" -lt 16384 ]; then
    t_ok "backpressure: agent RSS stays far below the answer size (grew $grow KiB)"
else
    t_fail "backpressure: agent RSS stays far below the answer size" "grew $grow KiB; $(head -c 300 "$LIB_TMP/flow.err")"
fi
t_eq "backpressure: every frame arrives in order once the app reads, then [DONE]" \
    "$(val frames_ok) $(val frames) $(val done)" "1 $WORDS 1"
rm -f "$SOCK.flowgo"

# ---- the usage chunk ----
# stream_shape: "<content>|<chunks of empty choices>|<last data line>" of the last call's body.
stream_shape() {
    echo "$(echo "$BODY" | sse_content)|$(echo "$BODY" | sed -n 's/^data: //p' | grep -v '^\[DONE\]$' |
        jq -c 'select(.choices == [])' | wc -l)|$(echo "$BODY" | sed -n 's/^data: //p' | tail -1)"
}
call "$SOCK" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini true 6 | jq -c 'del(.stream_options)')"
t_eq "no include_usage, openai: the whole answer, [DONE] last, no chunk of empty choices" \
    "$CODE $(stream_shape)" "200 $(words 6)|0|[DONE]"
t_eq "no include_usage, openai: billed with the provider's usage, not an estimate" \
    "$(echo "$BODY" | sed -n 's/^: x-byok-usage //p' | jq -c '[.completion_tokens, .estimated]')" "[6,false]"
call "$SOCK" POST /v1/chat/completions "$(chat_body anthropic/claude-3-5-haiku true 6 | jq -c 'del(.stream_options)')"
t_eq "no include_usage, anthropic: the whole answer, [DONE] last, no chunk of empty choices" \
    "$CODE $(stream_shape)" "200 $(words 6)|0|[DONE]"
call "$SOCK" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini true 6)"
o=$(stream_shape)
call "$SOCK" POST /v1/chat/completions "$(chat_body anthropic/claude-3-5-haiku true 6)"
t_eq "include_usage, openai and anthropic: the usage chunk, before [DONE]" \
    "$o $(stream_shape)" "$(words 6)|1|[DONE] $(words 6)|1|[DONE]"

if kill -0 "$AGENT_PID" 2>/dev/null; then t_ok "agent alive"; else t_fail "agent alive" "agent exited"; fi
agent_stop_check "agent stops cleanly on SIGTERM, no sanitizer report"
canary_scan "canary: nowhere but the provider request" "$KEY" "$AKEY"
t_done
