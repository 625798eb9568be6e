#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# An app connection while the agent answers it. The agent writes a reply in
# the loop turn it is made and keeps the app socket readable (no timeout) while
# the provider works, so:
#   - an answer slower than limits.client_timeout_s (1 s here; the mock's
#     "slow" scenario takes 2 s) still arrives: that timeout is for apps that
#     do not send, not for providers that think;
#   - an app that leaves during a non-streamed call makes the agent drop the
#     upstream transfer (the mock sees its client go), log a 499 and still
#     report the call to the usage ledger (the provider may bill it);
#   - calls whose usage the provider never reported (the app left, the
#     provider cut the stream, the provider sends none) are counted with estimated tokens: the prompt
#     from the request text, the completion from the frames forwarded;
#   - requests pipelined in one write are answered, in order, on the same
#     connection, including one sent while the previous answer is still slow;
#   - an idle keep-alive connection is still closed after client_timeout_s;
#   - a stream to an HTTP/1.0 app that asked for keep-alive is delimited by
#     closing the connection (1.0 has no chunked coding), never framed as an
#     empty body with the frames left over for the next answer.
. "$(dirname "$0")/lib.sh"

CASES=("slower than client_timeout_s: the answer arrives"
    "app leaves during a non-streamed call: the provider sees its client go"
    "app leaves during a non-streamed call: logged as 499 client_closed"
    "app leaves during a non-streamed call: the call is in the usage ledger"
    "app leaves during a non-streamed call: prompt tokens estimated from the request"
    "app leaves a stream: 499, the provider sees its client go"
    "app leaves a stream: completion tokens between the frames the app got and those the provider sent"
    "provider cuts a stream: the closing usage comment says estimated, one token per frame"
    "provider cuts an Anthropic stream: prompt as reported at its start, completion from the deltas"
    "provider cuts a stream after [DONE]: the stream ends as complete, no error event, logged 200"
    "provider cuts an Anthropic stream after message_stop: the stream ends as complete, no error event, logged 200"
    "provider sends frames after [DONE], then stalls: the app's stream ends at [DONE] at once, the tail unseen, usage and cost as reported before it"
    "provider sends events after message_stop, then stalls: the app's stream ends at [DONE] at once, the tail unseen, usage and cost as reported before it"
    "provider sends frames after [DONE], then stalls: the provider transfer is dropped within a second"
    "provider sends events after message_stop, then stalls: the provider transfer is dropped within a second"
    "a stream ended at [DONE]: the provider connection serves the next call"
    "provider reports no usage: a non-streamed answer is counted with estimated tokens and cost"
    "provider reports no usage: a stream ignoring include_usage is counted with estimated tokens"
    "the ledger holds the tokens of every logged call, estimates included and counted"
    "estimated calls are counted in byok_usage_estimated_total"
    "two pipelined requests: two answers, in order"
    "a request pipelined behind a slow one: both answered, in order"
    "idle keep-alive connection: closed after client_timeout_s"
    "HTTP/1.0 keep-alive stream: no Content-Length, every frame, then the connection closes"
    "agent alive" "agent stops cleanly on SIGTERM, no sanitizer report"
    "canary: nowhere but the provider request")

lib_up && lib_require "$AGENT_BIN" || t_block_all
KEY=$(lib_canary)
key_put acme openai "$KEY"
key_put acme anthropic "$KEY"
SOCK=$AGENT_DIR/acme.sock
agent_config "[{\"path\": \"$SOCK\", \"mode\": \"0660\", \"tenant\": \"acme\", \"app\": \"conn\", \"metrics\": true}]" \
    '.limits.client_timeout_s = 1 | .log_level = "info"'
agent_start || t_block_all

# ---- slower than the client timeout ----
call "$SOCK" POST /v1/chat/completions "$(chat_body openai/mock-slow false 3)"
t_eq "slower than client_timeout_s: the answer arrives" \
    "$CODE $(echo "$BODY" | jq -r '.choices[0].message.content' 2>/dev/null)" "200 $(words 3)"

# ---- the app leaves mid-call ----
since=$(mock_last_seq)
curl -s -m 0.5 --unix-socket "$SOCK" http://localhost/v1/chat/completions \
    -H 'Content-Type: application/json' -d "$(chat_body openai/mock-slow false 3)" >/dev/null 2>&1
gone() { mock_requests_since "$since" | jq -r '.[0].client_gone' 2>/dev/null; }
is_gone() { [ "$(gone)" = true ]; }
lib_wait_for 5 is_gone
t_eq "app leaves during a non-streamed call: the provider sees its client go" "$(gone)" "true"
lib_wait_for 5 grep -q '"status":"499"' "$AGENT_LOG"
t_match "app leaves during a non-streamed call: logged as 499 client_closed" \
    "$(grep '"status":"499"' "$AGENT_LOG" | head -1)" '"provider":"openai","model":"mock-slow".*"error":"client_closed"'
# The provider had the request (and may bill it): the call is reported to the
# plugin like the answered one before it (2 requests; its tokens are unknown).
ledger() { usage_ledger acme '.by_provider.openai.requests // 0'; }
ledger_has_both() { [ "$(ledger)" = 2 ]; }
lib_wait_for 10 ledger_has_both
t_eq "app leaves during a non-streamed call: the call is in the usage ledger" "$(ledger)" "2"
# "one two three four": ceil(18 / 4) = 5, + 4 for the message, + 3 = 12; no completion known.
t_match "app leaves during a non-streamed call: prompt tokens estimated from the request" \
    "$(grep '"status":"499"' "$AGENT_LOG" | head -1)" \
    '"prompt_tokens":"12","completion_tokens":"0".*"usage_estimated":"true"'

# ---- the app leaves a stream (200 frames 20 ms apart; it leaves after ~1 s) ----
since=$(mock_last_seq)
curl -s -N -m 1 --unix-socket "$SOCK" http://localhost/v1/chat/completions \
    -H 'Content-Type: application/json' -d "$(chat_body openai/mock-slowstream true 200)" \
    >"$LIB_TMP/left.out" 2>/dev/null
got=$(sed -n 's/^data: //p' "$LIB_TMP/left.out" | grep -vc '^\[DONE\]$')
rec() { mock_requests_since "$since" | jq -c '.[0]' 2>/dev/null; }
rec_gone() { [ "$(rec | jq -r .client_gone)" = true ]; }
lib_wait_for 5 rec_gone
lib_wait_for 5 grep -q '"model":"mock-slowstream"' "$AGENT_LOG"
line=$(grep '"model":"mock-slowstream"' "$AGENT_LOG" | tail -1)
t_match "app leaves a stream: 499, the provider sees its client go" \
    "$(echo "$line" | jq -r '.status + " " + .error + " " + .usage_estimated') $(rec | jq -r .client_gone)" \
    '^499 client_closed true true$'
sent=$(rec | jq -r .events_sent)
ct=$(echo "$line" | jq -r .completion_tokens)
if [ "$got" -gt 0 ] && [ "$ct" -ge "$got" ] && [ "$ct" -le "$sent" ] && [ "$sent" -lt 150 ]; then
    t_ok "app leaves a stream: completion tokens between the frames the app got and those the provider sent ($got <= $ct <= $sent)"
else
    t_fail "app leaves a stream: completion tokens between the frames the app got and those the provider sent" \
        "app got $got frames, logged $ct tokens, provider sent $sent events"
fi

# ---- the provider resets the connection after the stream's end marker ----
# The app has every frame and [DONE]: the stream is complete, whatever the transport did next.
for p in openai anthropic; do
    c="provider cuts a stream after [DONE]: the stream ends as complete, no error event, logged 200"
    [ $p = anthropic ] && c="provider cuts an Anthropic stream after message_stop: the stream ends as complete, no error event, logged 200"
    call "$SOCK" POST /v1/chat/completions "$(chat_body $p/mock-donecut true 3)" -N
    sleep 0.3
    logged=$(grep '"@message":"request"' "$AGENT_LOG" | grep '"model":"mock-donecut"' | tail -1 |
        jq -r '"\(.status) \(.error)"')
    usage=$(sed -n 's/^: x-byok-usage //p' "$LIB_TMP/last.body" | jq -c '[.estimated, .completion_tokens]')
    if [ "$CODE" = 200 ] && [ "$(echo "$BODY" | sse_content)" = "w0 w1 w2" ] &&
        grep -qx 'data: \[DONE\]' <<<"$BODY" && [[ $BODY != *"event: error"* ]] &&
        [ "$logged" = "200 null" ] && [ "$usage" = "[false,3]" ]; then
        t_ok "$c"
    else
        t_fail "$c" "HTTP $CODE logged '$logged' usage $usage body ${BODY: -400}"
    fi
done

# ---- the provider sends more after the stream's end marker, then stalls ----
# In the same write as [DONE] (message_stop) the mock sends a word " LATE" and usage of 999
# tokens, then nothing for 60 s. The app's stream ends at the marker, at once (not after the 5 s
# idle timeout), with the usage the provider reported before it (mock: 4 prompt, 3 completion).
up200() {
    call "$SOCK" GET /metrics ""
    sed -n "s/^byok_upstream_requests_total{provider=\"$1\",status=\"200\"} //p" "$LIB_TMP/last.body"
}
for p in openai anthropic; do
    c="provider sends frames after [DONE], then stalls: the app's stream ends at [DONE] at once, the tail unseen, usage and cost as reported before it"
    g="provider sends frames after [DONE], then stalls: the provider transfer is dropped within a second"
    if [ $p = anthropic ]; then
        c="provider sends events after message_stop, then stalls: the app's stream ends at [DONE] at once, the tail unseen, usage and cost as reported before it"
        g="provider sends events after message_stop, then stalls: the provider transfer is dropped within a second"
    fi
    n200=$(up200 $p)
    since=$(mock_last_seq)
    t0=$(date +%s%N)
    call "$SOCK" POST /v1/chat/completions "$(chat_body $p/mock-donetail true 3)" -N
    ms=$((($(date +%s%N) - t0) / 1000000))
    body=$BODY code=$CODE
    sleep 0.3
    logged=$(grep '"@message":"request"' "$AGENT_LOG" | grep '"model":"mock-donetail"' | tail -1 |
        jq -r '"\(.status) \(.error) \(.prompt_tokens) \(.completion_tokens)"')
    usage=$(sed -n 's/^: x-byok-usage //p' <<<"$body" | jq -c '[.estimated, .prompt_tokens, .completion_tokens, .cost_usd]')
    cost_ok=$(jq -r --arg want "$(cost_of $p 4 3)" '(.[3] - ($want | tonumber)) | fabs < 1e-12' <<<"$usage" 2>/dev/null)
    n200b=$(up200 $p)
    if [ "$code" = 200 ] && [ "$ms" -lt 4000 ] && [ "$(echo "$body" | sse_content)" = "w0 w1 w2" ] &&
        [[ $body != *LATE* ]] && [ "$(grep -c '^data: \[DONE\]' <<<"$body")" = 1 ] &&
        [[ $body != *"event: error"* ]] && [ "$logged" = "200 null 4 3" ] &&
        [ "$(jq -c '.[0:3]' <<<"$usage")" = "[false,4,3]" ] && [ "$cost_ok" = true ] &&
        [ "$((n200b - ${n200:-0}))" = 1 ]; then
        t_ok "$c ($ms ms)"
    else
        t_fail "$c" "HTTP $code in $ms ms, logged '$logged', usage $usage (cost ok: $cost_ok), upstream 200s $n200 -> $n200b, body ${body: -600}"
    fi
    rec_gone() { [ "$(mock_requests_since "$since" | jq -r '.[0].client_gone')" = true ]; }
    if lib_wait_for 3 rec_gone; then t_ok "$g"; else t_fail "$g" "the mock still holds the request"; fi
done

# Ending the app's stream at [DONE] leaves the provider transfer to end by itself (the body's
# last chunk follows [DONE] at once): its connection stays open for the next call.
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini true 3)" -N
sleep 0.2
call "$SOCK" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini true 3)" -N
t_eq "a stream ended at [DONE]: the provider connection serves the next call" \
    "$(mock_requests_since "$since" | jq -r '[.[].remote] | "\(length) \(unique | length)"')" "2 1"

# ---- the provider cuts a stream after the role chunk and 4 of 8 words ----
call "$SOCK" POST /v1/chat/completions "$(chat_body openai/mock-cut true 8)" -N
t_eq "provider cuts a stream: the closing usage comment says estimated, one token per frame" \
    "$(sed -n 's/^: x-byok-usage //p' "$LIB_TMP/last.body" | jq -c '[.estimated, .prompt_tokens, .completion_tokens]')" \
    '[true,12,5]'

# Anthropic reports input tokens in message_start (the mock: 4 words, 4 tokens); the 4 deltas
# before the cut ("w0", " w1", " w2", " w3") are 1 token each by text bytes / 4.
call "$SOCK" POST /v1/chat/completions "$(chat_body anthropic/mock-cut true 8)" -N
t_eq "provider cuts an Anthropic stream: prompt as reported at its start, completion from the deltas" \
    "$(sed -n 's/^: x-byok-usage //p' "$LIB_TMP/last.body" | jq -c '[.estimated, .prompt_tokens, .completion_tokens]')" \
    '[true,4,4]'

# ---- a provider that reports no usage (some local servers) ----
# Answer "w0 … w7": 23 characters -> 6 tokens; prompt 12 as above.
call "$SOCK" POST /v1/chat/completions "$(chat_body openai/mock-nousage false 8)"
cost=$(grep -i '^x-byok-cost-usd:' "$LIB_TMP/last.hdrs" | tr -d '\r' | awk '{print $2}')
line=$(grep '"model":"mock-nousage"' "$AGENT_LOG" | tail -1)
t_eq "provider reports no usage: a non-streamed answer is counted with estimated tokens and cost" \
    "$CODE $(echo "$line" | jq -r '[.prompt_tokens, .completion_tokens, .usage_estimated] | join(" ")') $cost" \
    "200 12 6 true $(awk -v c="$(cost_of openai 12 6)" 'BEGIN { printf "%.8f", c }')"
# Role chunk, 8 words, finish chunk: 10 chunks -> 10 tokens, at most max_tokens (8).
call "$SOCK" POST /v1/chat/completions "$(chat_body openai/mock-nousage true 8)" -N
t_eq "provider reports no usage: a stream ignoring include_usage is counted with estimated tokens" \
    "$CODE $(sed -n 's/^: x-byok-usage //p' "$LIB_TMP/last.body" | jq -c '[.estimated, .prompt_tokens, .completion_tokens]')" \
    '200 [true,12,8]'

# Every provider call so far is in the ledger with the tokens its log line shows.
logged() {
    grep '^{' "$AGENT_LOG" | jq -s -c '[.[] | select(."@message" == "request" and .provider == "openai")
        | {p: (.prompt_tokens | tonumber), c: (.completion_tokens | tonumber), e: (.usage_estimated == "true")}]
        | [length, (map(.p) | add), (map(.c) | add), (map(select(.e)) | length)]'
}
ledger_tokens() {
    usage_ledger acme '.by_provider.openai | [.requests, .prompt_tokens, .completion_tokens, .estimated_requests]'
}
ledger_caught_up() { [ "$(ledger_tokens)" = "$(logged)" ]; }
lib_wait_for 10 ledger_caught_up
t_eq "the ledger holds the tokens of every logged call, estimates included and counted" "$(ledger_tokens)" "$(logged)"
call "$SOCK" GET /metrics ""
t_eq "estimated calls are counted in byok_usage_estimated_total" \
    "$(grep '^byok_usage_estimated_total' "$LIB_TMP/last.body" | sort | tr '\n' ';')" \
    'byok_usage_estimated_total{tenant="acme",provider="anthropic"} 1;byok_usage_estimated_total{tenant="acme",provider="openai"} 5;'

# ---- pipelining: N requests in one write, answers read back in order ----
# pipeline MODEL...: one request per model, written at once; prints each
# answer's status and content, one line each, in the order they arrive.
pipeline() {
    SOCK="$SOCK" python3 - "$@" <<'PY'
import json, os, socket, sys
reqs = b""
for m in sys.argv[1:]:
    body = json.dumps({"model": m, "max_tokens": 2,
                       "messages": [{"role": "user", "content": "one two"}]}).encode()
    reqs += (b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
             b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(15)
s.connect(os.environ["SOCK"])
s.sendall(reqs)
f = s.makefile("rb")
for _ in sys.argv[1:]:
    status = f.readline().split()[1].decode()
    length = 0
    while True:
        line = f.readline().strip()
        if not line:
            break
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    answer = json.loads(f.read(length))
    print(status, answer["choices"][0]["message"]["content"], answer["model"])
PY
}
out=$(pipeline openai/gpt-4o-mini openai/mock-normal 2>&1 | tr '\n' ';')
t_eq "two pipelined requests: two answers, in order" "$out" "200 w0 w1 gpt-4o-mini;200 w0 w1 mock-normal;"
out=$(pipeline openai/mock-slow openai/gpt-4o-mini 2>&1 | tr '\n' ';')
t_eq "a request pipelined behind a slow one: both answered, in order" "$out" \
    "200 w0 w1 mock-slow;200 w0 w1 gpt-4o-mini;"

# ---- an idle keep-alive connection is closed ----
idle=$(SOCK="$SOCK" python3 - <<'PY'
import os, socket, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(os.environ["SOCK"])
s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
t0 = time.monotonic()
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print("closed" if data.startswith(b"HTTP/1.1 200") else "no answer", round(time.monotonic() - t0))
PY
)
case $idle in
"closed 1" | "closed 2" | "closed 3") t_ok "idle keep-alive connection: closed after client_timeout_s ($idle s)" ;;
*) t_fail "idle keep-alive connection: closed after client_timeout_s" "got: $idle" ;;
esac

# ---- HTTP/1.0 with keep-alive: a stream ends with the connection ----
h10=$(SOCK="$SOCK" BODY="$(chat_body openai/gpt-4o-mini true 3)" python3 - <<'PY'
import os, re, socket
body = os.environ["BODY"].encode()
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(os.environ["SOCK"])
s.sendall(b"POST /v1/chat/completions HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\n"
          b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
data = b""
try:
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    end = "closed"
except socket.timeout:
    end = "open"
head, _, rest = data.partition(b"\r\n\r\n")
lines = head.decode().split("\r\n")
cl = [l for l in lines if l.lower().startswith("content-length")]
words = len(re.findall(r'"content":" ?w[0-9]', rest.decode()))
print(lines[0].split()[1], "content-length" if cl else "no-length", words, b"data: [DONE]" in rest, end)
PY
)
t_eq "HTTP/1.0 keep-alive stream: no Content-Length, every frame, then the connection closes" \
    "$h10" "200 no-length 3 True closed"

if kill -0 "$AGENT_PID" 2>/dev/null; then t_ok "agent alive"; else t_fail "agent alive" "agent exited"; fi
agent_stop_check "agent stops cleanly on SIGTERM, no sanitizer report"
canary_scan "canary: nowhere but the provider request" "$KEY"
t_done
