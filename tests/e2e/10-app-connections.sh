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
#   - requests pipelined in one write are answered, in order, on the same
#     connection, including one sent while the previous answer is still slow;
#   - an idle keep-alive connection is still closed after client_timeout_s.
. "$(dirname "$0")/lib.sh"

CASES=("slower than client_timeout_s: the answer arrives"
    "app leaves during a non-streamed call: the provider sees its client go"
    "app leaves during a non-streamed call: logged as 499 client_closed"
    "app leaves during a non-streamed call: the call is in the usage ledger"
    "two pipelined requests: two answers, in order"
    "a request pipelined behind a slow one: both answered, in order"
    "idle keep-alive connection: closed after client_timeout_s"
    "agent alive" "agent stops cleanly on SIGTERM, no sanitizer report"
    "canary: nowhere but the provider request")

lib_up && lib_require "$AGENT_BIN" || t_block_all
KEY=$(lib_canary)
key_put acme openai "$KEY"
SOCK=$AGENT_DIR/acme.sock
agent_config "[{\"path\": \"$SOCK\", \"mode\": \"0660\", \"tenant\": \"acme\", \"app\": \"conn\"}]" \
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
ledger() {
    vault_api GET byok/tenants/acme/usage "" "$ADMIN_TOKEN"
    echo "$VAULT_BODY" | jq -r '.data.by_provider.openai.requests // 0' 2>/dev/null
}
ledger_has_both() { [ "$(ledger)" = 2 ]; }
lib_wait_for 10 ledger_has_both
t_eq "app leaves during a non-streamed call: the call is in the usage ledger" "$(ledger)" "2"

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

if kill -0 "$AGENT_PID" 2>/dev/null; then t_ok "agent alive"; else t_fail "agent alive" "agent exited"; fi
agent_stop_check "agent stops cleanly on SIGTERM, no sanitizer report"
canary_scan "canary: nowhere but the provider request" "$KEY"
t_done
