#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# Bad input on the agent's socket: malformed JSON, wrong types, bodies at and
# past the configured limit (1 MiB here) and 10 MiB, unknown models and
# providers, header injection and request smuggling attempts, oversized
# headers, slowloris clients (closed after client_timeout_s), 1,000 idle
# connections. Every answer must be a clear error in OpenAI's shape; nothing
# bad reaches the provider; the agent stays up.
. "$(dirname "$0")/lib.sh"

LIMIT=1048576
CASES=("malformed JSON: 400" "truncated JSON: 400" "empty body: 400" "JSON array instead of object: 400"
    "model is a number: 400" "messages is a string: 400" "stream is a string: 400"
    "max_tokens is a string: 400" "no messages: 400"
    "brain chat: unknown task_type: 400 naming task_type, not the headers" "bad input reached no provider"
    "body at the limit: accepted" "body one past the limit: 413" "10 MiB body: 413"
    "unknown model: 4xx, nothing sent" "unknown provider: 4xx, nothing sent"
    "CRLF in model: refused or harmless" "obs-fold header line: no injected header upstream"
    "bare LF header injection: no injected header upstream" "NUL in header: no crash, nothing injected"
    "Content-Length and Transfer-Encoding together: refused" "two different Content-Length: 400"
    "header block past the limit: 4xx" "forward_headers: listed headers reach the provider, first of repeats wins"
    "forward_headers: unlisted headers and the app's Authorization stay behind"
    "forward_headers: a listed value with bytes past ASCII (obs-text) reaches the provider"
    "forward_headers: an over-long listed value: 400 naming the header, nothing sent" "slowloris headers: closed by the agent"
    "slowloris body: closed by the agent" "1000 idle connections: held"
    "1000 idle connections: a new call still succeeds" "agent alive" "healthz after all" "agent stops cleanly on SIGTERM, no sanitizer report"
    "canary: nowhere but the provider request")

lib_up && lib_require "$AGENT_BIN" || t_block_all
K=$(lib_canary)
key_put acme openai "$K"
SOCK=$AGENT_DIR/acme.sock
agent_config "[{\"path\": \"$SOCK\", \"mode\": \"0660\", \"tenant\": \"acme\", \"app\": \"bad\"}]" \
    ".limits.max_body_bytes = $LIMIT | .limits.client_timeout_s = 3 | .forward_headers = [\"OpenAI-Beta\", \"X-Trace-Id\"]"
agent_start || t_block_all

is_error_shape() { echo "$BODY" | jq -e '.error.message | type == "string" and length > 0' >/dev/null 2>&1; }

# bad NAME WANT_CODE BODY
bad() {
    call "$SOCK" POST /v1/chat/completions "$3"
    if [ "$CODE" = "$2" ] && is_error_shape; then t_ok "$1"; else
        t_fail "$1" "HTTP $CODE body ${BODY:0:200}"
    fi
}

since=$(mock_last_seq)
bad "malformed JSON: 400" 400 '{"model": "openai/gpt-4o-mini", "messages": [}'
bad "truncated JSON: 400" 400 '{"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "x"}'
# An empty body cannot go through call's stdin; send it explicitly.
call "$SOCK" POST /v1/chat/completions "" -H 'Content-Type: application/json' --data-binary ''
if [ "$CODE" = 400 ] && is_error_shape; then t_ok "empty body: 400"; else t_fail "empty body: 400" "HTTP $CODE"; fi
bad "JSON array instead of object: 400" 400 '[1, 2, 3]'
bad "model is a number: 400" 400 '{"model": 42, "messages": [{"role": "user", "content": "x"}]}'
bad "messages is a string: 400" 400 '{"model": "openai/gpt-4o-mini", "messages": "hello"}'
bad "stream is a string: 400" 400 '{"model": "openai/gpt-4o-mini", "stream": "yes", "messages": [{"role": "user", "content": "x"}]}'
bad "max_tokens is a string: 400" 400 '{"model": "openai/gpt-4o-mini", "max_tokens": "ten", "messages": [{"role": "user", "content": "x"}]}'
bad "no messages: 400" 400 '{"model": "openai/gpt-4o-mini"}'
call "$SOCK" POST /api/brain/ai/chat '{"message": "hi", "task_type": "bogus"}'
t_eq "brain chat: unknown task_type: 400 naming task_type, not the headers" \
    "$CODE $(echo "$BODY" | jq -r '[.error.code, .error.param, (.error.message | test("X-BYOK"))] | join(" ")' 2>/dev/null)" \
    "400 invalid_task task_type false"
t_eq "bad input reached no provider" "$(mock_requests_since "$since" | jq length)" 0

# padded_body SIZE: a valid chat request of exactly SIZE bytes (padding is JSON whitespace).
padded_body() {
    "$PY" -c '
import json, sys
size = int(sys.argv[1])
b = json.dumps({"model": "openai/gpt-4o-mini", "max_tokens": 2, "messages": [{"role": "user", "content": "pad"}]})
sys.stdout.write(b[:-1] + " " * (size - len(b)) + "}")' "$1"
}
padded_body "$LIMIT" >"$LIB_TMP/at-limit.json"
padded_body $((LIMIT + 1)) >"$LIB_TMP/past-limit.json"
padded_body $((10 * 1024 * 1024)) >"$LIB_TMP/10mib.json"
t_diag "body sizes: $(stat -c %s "$LIB_TMP/at-limit.json" "$LIB_TMP/past-limit.json" "$LIB_TMP/10mib.json" | tr '\n' ' ')"
call "$SOCK" POST /v1/chat/completions "" -H 'Content-Type: application/json' --data-binary "@$LIB_TMP/at-limit.json"
t_eq "body at the limit: accepted" "$CODE" 200
call "$SOCK" POST /v1/chat/completions "" -H 'Content-Type: application/json' --data-binary "@$LIB_TMP/past-limit.json"
if [ "$CODE" = 413 ] && is_error_shape; then t_ok "body one past the limit: 413"; else t_fail "body one past the limit: 413" "HTTP $CODE ${BODY:0:200}"; fi
call "$SOCK" POST /v1/chat/completions "" -H 'Content-Type: application/json' --data-binary "@$LIB_TMP/10mib.json"
if [ "$CODE" = 413 ]; then t_ok "10 MiB body: 413"; else t_fail "10 MiB body: 413" "HTTP $CODE ${BODY:0:200}"; fi
rm -f "$LIB_TMP/at-limit.json" "$LIB_TMP/past-limit.json" "$LIB_TMP/10mib.json" # kept runs stay small

since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(chat_body openai/no-such-model)"
n=$(mock_requests_since "$since" | jq length)
if [[ $CODE =~ ^4[0-9][0-9]$ ]] && is_error_shape && [ "$n" = 0 ]; then t_ok "unknown model: 4xx, nothing sent"; else
    t_fail "unknown model: 4xx, nothing sent" "HTTP $CODE, mock saw $n"
fi
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(chat_body nosuchprovider/model-x)"
n=$(mock_requests_since "$since" | jq length)
if [[ $CODE =~ ^4[0-9][0-9]$ ]] && is_error_shape && [ "$n" = 0 ]; then t_ok "unknown provider: 4xx, nothing sent"; else
    t_fail "unknown provider: 4xx, nothing sent" "HTTP $CODE, mock saw $n"
fi

# injected_upstream SINCE: how many upstream requests carry an injected header
# or a credential other than the tenant's key.
injected_upstream() {
    mock_requests_since "$1" | K=$K jq '[.[] | select((.headers | has("X-Injected")) or
        ((.headers.Authorization // ["Bearer " + env.K]) != ["Bearer " + env.K]))] | length'
}

since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions '{"model": "openai/gpt-4o-mini\r\nX-Injected: 1", "messages": [{"role": "user", "content": "x"}]}'
inj=$(injected_upstream "$since")
if [ "$inj" = 0 ] && [[ $CODE =~ ^(200|400|404)$ ]]; then t_ok "CRLF in model: refused or harmless"; else
    t_fail "CRLF in model: refused or harmless" "HTTP $CODE, $inj upstream requests with injected headers"
fi

# raw REQUEST_BYTES (python escapes): sends raw bytes, prints the status code
# (or "closed") of the reply. The reply (its header block and a body of the
# length it names) goes to the responses log for the canary scan.
# RAW_ALL=1: reads on until the agent closes (10 s at most) and prints
# "CODE, N replies, closed" ("open" when the agent did not close).
raw() {
    SOCK=$SOCK REQ=$1 RESP_LOG=$LIB_RESP_LOG RAW_ALL=${RAW_ALL:-0} timeout 30 "$PY" -c '
import os, re, socket
s = socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(os.environ["SOCK"])
req = os.environ["REQ"].encode().decode("unicode_escape").encode("latin-1")
s.sendall(req)
data = b""
try:
    while b"\r\n\r\n" not in data:
        c = s.recv(65536)
        if not c: break
        data += c
    m = re.search(rb"\r\ncontent-length: *([0-9]+)\r\n", data.split(b"\r\n\r\n")[0] + b"\r\n", re.I)
    want = len(data.split(b"\r\n\r\n")[0]) + 4 + int(m.group(1)) if m else 0
    while len(data) < want:
        c = s.recv(65536)
        if not c: break
        data += c
except Exception: pass
code = data.split(b" ")[1].decode() if data.startswith(b"HTTP/1.") else "closed"
state = "open"
if os.environ["RAW_ALL"] == "1":
    try:
        while True:
            c = s.recv(65536)
            if not c:
                state = "closed"; break
            data += c
    except socket.timeout: pass
    except OSError: state = "closed"
    code = "%s, %d replies, %s" % (code, len(re.findall(rb"(?:^|\r\n)HTTP/1\.[01] [0-9]{3} ", data)), state)
with open(os.environ["RESP_LOG"], "ab") as f:
    f.write(b"=== raw " + req.split(b"\r\n")[0] + b" -> " + code.encode() + b"\n" + data + b"\n")
print(code)' 2>>"$LIB_TMP/raw.err"
}
BODY1='{"model":"openai/gpt-4o-mini","max_tokens":2,"messages":[{"role":"user","content":"x"}]}'
LEN1=${#BODY1}
since=$(mock_last_seq)
r=$(raw "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-BYOK-Task: chat\r\n X-Injected: 1\r\nContent-Length: $LEN1\r\n\r\n$BODY1")
inj=$(injected_upstream "$since")
if [ "$inj" = 0 ] && [[ $r =~ ^(200|400|closed)$ ]]; then t_ok "obs-fold header line: no injected header upstream"; else
    t_fail "obs-fold header line: no injected header upstream" "reply $r, $inj injected"
fi
since=$(mock_last_seq)
r=$(raw "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-BYOK-Task: chat\nX-Injected: 1\nAuthorization: Bearer stolen\r\nContent-Length: $LEN1\r\n\r\n$BODY1")
inj=$(injected_upstream "$since")
if [ "$inj" = 0 ] && [[ $r =~ ^(200|400|closed)$ ]]; then t_ok "bare LF header injection: no injected header upstream"; else
    t_fail "bare LF header injection: no injected header upstream" "reply $r, $inj injected"
fi
# RFC 9110 5.5: reject, or replace NUL with SP. libevent cuts the value at the
# NUL, which the agent cannot see; what matters is that nothing after it is
# used upstream and the agent survives.
since=$(mock_last_seq)
r=$(raw "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-BYOK-Task: ch\x00\r\nX-Injected: 1\r\nContent-Length: $LEN1\r\n\r\n$BODY1")
inj=$(mock_requests_since "$since" | jq '[.[] | select(.headers | has("X-Injected"))] | length')
if [[ $r =~ ^(200|400|closed)$ ]] && [ "$inj" = 0 ] && kill -0 "$AGENT_PID"; then t_ok "NUL in header: no crash, nothing injected"; else
    t_fail "NUL in header: no crash, nothing injected" "reply $r, $inj upstream requests with X-Injected"
fi
# RFC 9112 6.1 and 6.3: a request with both, or with differing
# Content-Lengths, is refused and the connection closed, so the request
# smuggled behind it is never answered.
since=$(mock_last_seq)
r=$(RAW_ALL=1 raw "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
t_eq "Content-Length and Transfer-Encoding together: refused" "$r, $(mock_requests_since "$since" | jq length) upstream" \
    "400, 1 replies, closed, 0 upstream"
since=$(mock_last_seq)
r=$(RAW_ALL=1 raw "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: $LEN1\r\nContent-Length: 5\r\n\r\n$BODY1")
t_eq "two different Content-Length: 400" "$r, $(mock_requests_since "$since" | jq length) upstream" \
    "400, 1 replies, closed, 0 upstream"
# forward_headers (the allow-list): listed headers are copied to the provider,
# the first of repeated ones counts; nothing else of the app's goes along.
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$BODY1" -H 'OpenAI-Beta: assistants=v2' -H 'x-trace-id: t-1' \
    -H 'X-Trace-Id: t-2' -H 'X-Other: no' -H 'Authorization: Bearer app-token'
fw=$(mock_requests_since "$since" | jq -c '[.[] | .headers] | last // {}')
if [ "$CODE" = 200 ] && [ "$(echo "$fw" | jq -c '[.["Openai-Beta"], .["X-Trace-Id"]]')" = '[["assistants=v2"],["t-1"]]' ]; then
    t_ok "forward_headers: listed headers reach the provider, first of repeats wins"
else
    t_fail "forward_headers: listed headers reach the provider, first of repeats wins" "HTTP $CODE, upstream headers $(echo "$fw" | jq -c 'del(.Authorization)')"
fi
if [ "$CODE" = 200 ] && echo "$fw" | K=$K jq -e 'has("X-Other") | not' >/dev/null &&
    echo "$fw" | K=$K jq -e '.Authorization == ["Bearer " + env.K]' >/dev/null; then
    t_ok "forward_headers: unlisted headers and the app's Authorization stay behind"
else
    t_fail "forward_headers: unlisted headers and the app's Authorization stay behind" "HTTP $CODE, X-Other or a foreign Authorization upstream"
fi
# RFC 9110 field values may hold obs-text (bytes 0x80-0xFF, e.g. Latin-1): forwarded as they
# are, not dropped (the mock's record shows the byte that is not UTF-8 as U+FFFD).
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$BODY1" -H $'X-Trace-Id: caf\xe9'
got=$(mock_requests_since "$since" | jq -r '[.[] | .headers] | last // {} | .["X-Trace-Id"] // [] |
    map(explode | map(tostring) | join(",")) | join(";")')
if [ "$CODE" = 200 ] && [ "$got" = "99,97,102,65533" ]; then
    t_ok "forward_headers: a listed value with bytes past ASCII (obs-text) reaches the provider"
else
    t_fail "forward_headers: a listed value with bytes past ASCII (obs-text) reaches the provider" "HTTP $CODE, upstream $got"
fi
since=$(mock_last_seq)
LONGV=$("$PY" -c 'print("v" * 1100)')
call "$SOCK" POST /v1/chat/completions "$BODY1" -H "X-Trace-Id: $LONGV"
sent=$(mock_requests_since "$since" | jq length)
if [ "$CODE" = 400 ] && echo "$BODY" | jq -e '.error.message | test("X-Trace-Id")' >/dev/null && [ "$sent" = 0 ]; then
    t_ok "forward_headers: an over-long listed value: 400 naming the header, nothing sent"
else
    t_fail "forward_headers: an over-long listed value: 400 naming the header, nothing sent" "HTTP $CODE, ${BODY:0:200}, $sent sent"
fi
BIGH=$("$PY" -c 'print("X-Pad: " + "a" * 70000)')
call "$SOCK" GET /v1/models "" -H "$BIGH"
t_match "header block past the limit: 4xx" "$CODE" '^(400|413|431)$'

# slow SECONDS MODE: a client that trickles one byte per second; prints how
# long the agent took to close the connection ("open" if it never did).
slow() {
    SOCK=$SOCK MODE=$2 LIMIT_S=$1 timeout 60 "$PY" -c '
import os, socket, time
s = socket.socket(socket.AF_UNIX); s.connect(os.environ["SOCK"]); s.settimeout(1)
if os.environ["MODE"] == "headers":
    head, drip = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n", b"X-Slow: " + b"a" * 100
else:
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    drip = b" " * 100
t0 = time.monotonic(); s.sendall(head); i = 0
while time.monotonic() - t0 < float(os.environ["LIMIT_S"]):
    try:
        if s.recv(4096) == b"":
            print("%.1f" % (time.monotonic() - t0)); raise SystemExit
    except socket.timeout: pass
    except OSError:
        print("%.1f" % (time.monotonic() - t0)); raise SystemExit
    try: s.sendall(drip[i:i+1]); i += 1
    except OSError:
        print("%.1f" % (time.monotonic() - t0)); raise SystemExit
print("open")'
}
# closed_at_timeout NAME SECONDS: closed by the agent, and not before
# client_timeout_s (3 here) less the sweep's second.
closed_at_timeout() {
    if [[ $2 =~ ^[0-9]+\.[0-9]$ ]] && awk -v r="$2" 'BEGIN { exit !(r >= 2) }'; then t_ok "$1"; else
        t_fail "$1" "closed after: $2 (s; client_timeout_s 3: want at least 2)"
    fi
}
r=$(slow 20 headers)
closed_at_timeout "slowloris headers: closed by the agent" "$r"
t_diag "slowloris headers: closed after: ${r} (s; client_timeout_s 3)"
r=$(slow 20 body)
closed_at_timeout "slowloris body: closed by the agent" "$r"
t_diag "slowloris body: closed after: ${r} (s; client_timeout_s 3)"

# 1000 idle connections, held while one normal call is made on a new connection.
# Held: the agent's own open sockets (/proc/PID/fd), not the client's connects
# (the kernel queues those whether or not the agent accepts them); the agent
# closes idle connections after client_timeout_s (3 s), so counted at once.
agent_sockets() { find "/proc/$AGENT_PID/fd" -lname 'socket:*' 2>/dev/null | wc -l; }
base_sockets=$(agent_sockets)
holds_idle() { [ $(($(agent_sockets) - base_sockets)) -ge 1000 ]; }
IDLE_READY=$LIB_TMP/idle.ready
SOCK=$SOCK READY=$IDLE_READY timeout 60 "$PY" -c '
import os, socket, time, resource
resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
conns = []
for i in range(1000):
    s = socket.socket(socket.AF_UNIX); s.connect(os.environ["SOCK"]); conns.append(s)
open(os.environ["READY"], "w").write("%d\n" % len(conns))
time.sleep(8)
' >"$LIB_TMP/idle.out" 2>&1 &
IDLE_PID=$!
if lib_wait_for 30 test -s "$IDLE_READY"; then
    lib_wait_for 2 holds_idle
    t_eq "1000 idle connections: held" "client $(cat "$IDLE_READY"), agent $(($(agent_sockets) - base_sockets >= 1000))" "client 1000, agent 1"
    t_diag "agent sockets with the idle connections: $(agent_sockets) (before: $base_sockets)"
    call "$SOCK" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini false 2 "still there")"
    t_eq "1000 idle connections: a new call still succeeds" "$CODE" 200
    t_diag "agent RSS with 1000 idle connections: $(awk '/VmRSS/ {print $2 " kB"}' /proc/"$AGENT_PID"/status)"
else
    t_fail "1000 idle connections: held" "$(tail -n 3 "$LIB_TMP/idle.out")"
    t_fail "1000 idle connections: a new call still succeeds" "connections not held"
fi
kill "$IDLE_PID" 2>/dev/null
wait "$IDLE_PID" 2>/dev/null

t_check "agent alive" kill -0 "$AGENT_PID"
call "$SOCK" GET /healthz ""
t_eq "healthz after all" "$CODE" 200
agent_stop_check "agent stops cleanly on SIGTERM, no sanitizer report"
canary_scan "canary: nowhere but the provider request" "$K"
t_done
[ "$T_FAILED" -eq 0 ]
