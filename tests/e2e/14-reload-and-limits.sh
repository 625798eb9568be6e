#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# Reloads (SIGHUP) that fail change nothing, and the limits a config is
# checked against:
#   - a reload whose second listener cannot bind (its directory does not
#     exist) is refused as a whole: the kept socket keeps its mode (0600, not
#     the new config's 0666), the agent keeps serving on it; a reload that
#     succeeds then applies the new mode;
#   - the secure heap for keys is sized at start from keycache.max_entries
#     (8 MiB for the default 10,000); a reload asking for more entries than it
#     holds is refused naming keycache.max_entries, and --check-config refuses
#     a max_entries over the cap (100,000);
#   - a reload keeps an open keep-alive connection serving, and applies
#     log_prompts: the prompt text appears in the log only once it is on;
#   - the agent's scheduler slice (sched_slice_us, Linux 6.12+ custom slices,
#     read back from /proc/PID/sched): 100 us by default, a reload sets
#     another, 0 gives back the kernel's default; under a seccomp filter that
#     refuses sched_setattr with EPERM (what the systemd unit's
#     SystemCallFilter=~@resources would do without its allow line) the agent
#     says so once, keeps the kernel's slice and serves (any kernel);
#   - the plugin's request data limit the agent's usage batches stay under
#     (docs/agent.md "Usage reporting"): a 512 KiB batch (the agent's bound)
#     is counted, a batch over 1 MiB is refused with a 400 saying so.
#   - connections count while open, not after: 20 idle connections the app
#     closes stop counting in /healthz "connections" and byok_connections,
#     and their sockets are closed, by the next request; with
#     limits.max_connections 2, six calls one after the other all get 200;
#   - a listener a reload removed is freed ("retired listener freed") once
#     its kept-alive connection got its last answer (Connection: close), not
#     before; 100 reloads each removing a socket of a 2,000-peer config
#     leave the RSS of a second agent (ASan quarantine off) within 6 MB.
. "$(dirname "$0")/lib.sh"

CASES=("failed reload: the kept socket keeps its mode"
    "failed reload: logged as failed, the agent still answers on the kept socket"
    "successful reload: the new mode applies"
    "the secure heap is sized from keycache.max_entries (8 MiB for 10,000)"
    "reload needing a larger secure heap: refused naming keycache.max_entries, old config kept"
    "--check-config: max_entries over 100,000 refused"
    "a keep-alive connection is served before and after a reload (two answers, no close)"
    "prompts are not logged by default; log_prompts (applied by the reload) logs them"
    "scheduler slice: 100 us by default"
    "scheduler slice: a reload sets 300 us, then 0 gives back the kernel's default"
    "upstream.max_host_connections applied by a reload: 1 queues a second concurrent call, 0 does not"
    "plugin: a 512 KiB usage batch (the agent's bound) is counted"
    "plugin: a usage batch over 1 MiB is refused (400) with a message naming the limit"
    "20 connections the app closed: /healthz and byok_connections stop counting them and their sockets are closed at once"
    "max_connections 2: six calls one after the other (each connection closed before the next) all answered"
    "a socket a reload removed: its listener is freed (logged) once its kept-alive connection got its answer with Connection: close, not before"
    "100 reloads each removing a socket (2,000-peer config): the agent's RSS grows by less than 6 MB"
    "the reloading agent stops cleanly on SIGTERM, no sanitizer report"
    "agent stops cleanly on SIGTERM, no sanitizer report"
    "scheduler slice refused (seccomp EPERM): one warning, the kernel's slice kept, the agent serves, a reload does not warn again")

lib_up && lib_require "$AGENT_BIN" || t_block_all
key_put acme openai "$(lib_canary)" || t_block_all # usage is recorded for tenants with a key
S=$AGENT_DIR/a.sock

# ---- a failed reload changes no socket ----
agent_config "[{\"path\": \"$S\", \"tenant\": \"acme\", \"mode\": \"0600\"}]"
agent_start || t_block_all
agent_config "[{\"path\": \"$S\", \"tenant\": \"acme\", \"mode\": \"0666\"},
    {\"path\": \"$LIB_TMP/no-such-dir/b.sock\", \"tenant\": \"acme\"}]"
kill -HUP "$AGENT_PID"
lib_wait_for 5 grep -q '"@message":"reload failed; keeping the running config"' "$AGENT_LOG"
t_eq "failed reload: the kept socket keeps its mode" "$(stat -c %a "$S")" 600
call "$S" GET /healthz
t_eq "failed reload: logged as failed, the agent still answers on the kept socket" \
    "$(grep -c '"@message":"reload failed; keeping the running config"' "$AGENT_LOG") $CODE" "1 200"
agent_config "[{\"path\": \"$S\", \"tenant\": \"acme\", \"mode\": \"0660\"}]"
kill -HUP "$AGENT_PID"
lib_wait_for 5 grep -q '"@message":"config reloaded"' "$AGENT_LOG"
t_eq "successful reload: the new mode applies" "$(stat -c %a "$S")" 660

# ---- the secure heap and keycache.max_entries ----
t_eq "the secure heap is sized from keycache.max_entries (8 MiB for 10,000)" \
    "$(grep '"@message":"byok-agent started"' "$AGENT_LOG" | jq -r .secure_heap_bytes)" 8388608
agent_config "[{\"path\": \"$S\", \"tenant\": \"acme\", \"mode\": \"0600\"}]" \
    '.keycache.max_entries = 100000'
kill -HUP "$AGENT_PID"
# reload_failures N: the log holds N failed reloads (grepped again on every try).
reload_failures() { [ "$(grep -c '"@message":"reload failed' "$AGENT_LOG")" = "$1" ]; }
lib_wait_for 5 reload_failures 2
t_match "reload needing a larger secure heap: refused naming keycache.max_entries, old config kept" \
    "$(grep '"@message":"reload failed' "$AGENT_LOG" | tail -n 1 | jq -r .error) mode $(stat -c %a "$S")" \
    '^keycache.max_entries: 100000 needs a 64 MiB secure heap; the running agent has 8 MiB.* mode 660$'
jq '.keycache.max_entries = 100001' "$AGENT_CONFIG" >"$LIB_TMP/big.json"
out=$("$AGENT_BIN" --check-config -c "$LIB_TMP/big.json" 2>&1)
t_match "--check-config: max_entries over 100,000 refused" "$? $out" '^1 .*keycache\.max_entries'

# ---- a connection and the prompt log across a reload ----
agent_config "[{\"path\": \"$S\", \"tenant\": \"acme\", \"mode\": \"0660\"}]"
kill -HUP "$AGENT_PID"
reloads() { [ "$(grep -c '"@message":"config reloaded"' "$AGENT_LOG")" -ge "$1" ]; }
lib_wait_for 5 reloads 2
MARK1=prompt-before-$(lib_random_hex 8)
MARK2=prompt-after-$(lib_random_hex 8)
chat_body openai/gpt-4o-mini false 3 "$MARK1" >"$LIB_TMP/p1.json"
chat_body openai/gpt-4o-mini false 3 "$MARK2" >"$LIB_TMP/p2.json"
agent_config "[{\"path\": \"$S\", \"tenant\": \"acme\", \"mode\": \"0660\"}]" '.log_prompts = true'
# One connection: a request, SIGHUP (applying log_prompts), then a request on the same connection.
ka=$("$PY" - "$S" "$AGENT_PID" "$AGENT_LOG" "$LIB_TMP/p1.json" "$LIB_TMP/p2.json" <<'PYEOF' 2>&1
import os, signal, socket, sys, time
sock_path, pid, log, b1, b2 = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
s = socket.socket(socket.AF_UNIX)
s.settimeout(20)
s.connect(sock_path)
buf = b""
def call(body):
    global buf
    data = open(body, "rb").read()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\n"
              + b"Content-Length: %d\r\n\r\n" % len(data) + data)
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            return "eof"
        buf += chunk
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    hdrs = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip() for l in lines[1:]}
    n = int(hdrs.get("content-length", "0"))
    while len(buf) < n:
        chunk = s.recv(65536)
        if not chunk:
            return "eof"
        buf += chunk
    buf = buf[n:]
    return lines[0].split()[1] + ("/close" if hdrs.get("connection", "").lower() == "close" else "")
first = call(b1)
before = open(log).read().count('"@message":"config reloaded"')
os.kill(pid, signal.SIGHUP)
for _ in range(100):
    if open(log).read().count('"@message":"config reloaded"') > before:
        break
    time.sleep(0.05)
print(first, call(b2))
PYEOF
)
t_eq "a keep-alive connection is served before and after a reload (two answers, no close)" "$ka" "200 200"
t_eq "prompts are not logged by default; log_prompts (applied by the reload) logs them" \
    "$(grep -c "$MARK1" "$AGENT_LOG") $(grep -c "$MARK2" "$AGENT_LOG")" "0 1"

# ---- the scheduler slice ----
slice_of() { awk '$1 == "se.slice" { print $3 }' "/proc/$1/sched" 2>/dev/null; }
kernel_slices() { # custom slices for fair tasks: Linux 6.12+
    local v maj min
    v=$(uname -r)
    maj=${v%%.*}
    min=${v#*.}
    min=${min%%.*}
    [ "$maj" -gt 6 ] || { [ "$maj" -eq 6 ] && [ "$min" -ge 12 ]; }
}
if kernel_slices && [ -n "$(slice_of "$AGENT_PID")" ]; then
    t_eq "scheduler slice: 100 us by default" "$(slice_of "$AGENT_PID")" 100000
    agent_config "[{\"path\": \"$S\", \"tenant\": \"acme\", \"mode\": \"0660\"}]" '.sched_slice_us = 300'
    kill -HUP "$AGENT_PID"
    lib_wait_for 5 reloads 4
    s300=$(slice_of "$AGENT_PID")
    agent_config "[{\"path\": \"$S\", \"tenant\": \"acme\", \"mode\": \"0660\"}]" '.sched_slice_us = 0'
    kill -HUP "$AGENT_PID"
    lib_wait_for 5 reloads 5
    # This shell never set a slice: it has the kernel's default.
    t_eq "scheduler slice: a reload sets 300 us, then 0 gives back the kernel's default" \
        "$s300 $(slice_of "$AGENT_PID")" "300000 $(slice_of "$BASHPID")"
else
    t_skip "scheduler slice: 100 us by default" "kernel $(uname -r) has no per-task slices (6.12+)"
    t_skip "scheduler slice: a reload sets 300 us, then 0 gives back the kernel's default" \
        "kernel $(uname -r) has no per-task slices (6.12+)"
fi

# ---- upstream.max_host_connections, changed by a reload ----
# slow_pair: two concurrent calls the mock answers after -slow (2 s); prints
# the seconds between the mock receiving the first and the second.
slow_pair() {
    local since i
    since=$(mock_last_seq)
    for i in 1 2; do
        curl -s -m 20 --unix-socket "$S" http://localhost/v1/chat/completions \
            -H 'Content-Type: application/json' -d "$(chat_body openai/mock-slow false 3)" >/dev/null &
    done
    wait
    mock_requests_since "$since" | python3 -c '
import json, sys, datetime
def t(s):  # RFC 3339 with up to 9 fraction digits (Go), UTC
    whole, _, frac = s.rstrip("Z").partition(".")
    return datetime.datetime.fromisoformat(whole).timestamp() + float("0." + (frac or "0"))
ts = sorted(t(r["ts"]) for r in json.load(sys.stdin) if r.get("model") == "mock-slow")
print("%.1f" % (ts[1] - ts[0]) if len(ts) == 2 else "n/a")'
}
reload_to() {
    local before
    before=$(grep -c '"@message":"config reloaded"' "$AGENT_LOG")
    agent_config "[{\"path\": \"$S\", \"tenant\": \"acme\", \"mode\": \"0660\"}]" "$1"
    kill -HUP "$AGENT_PID"
    lib_wait_for 5 reloads $((before + 1))
}
reload_to '.upstream.max_host_connections = 1'
gap1=$(slow_pair)
reload_to '.upstream.max_host_connections = 0'
gap0=$(slow_pair)
# With one connection per host the second call waits for the first (2 s); unlimited, both go at once.
t_eq "upstream.max_host_connections applied by a reload: 1 queues a second concurrent call, 0 does not" \
    "$(awk -v a="$gap1" -v b="$gap0" 'BEGIN { print (a >= 1.5 ? "queued" : "parallel " a), (b < 1.5 ? "parallel" : "queued " b) }')" \
    "queued parallel"

# ---- the plugin's request data limit ----
# batch RECORDS ID: a usage batch of RECORDS records of ~250 bytes each.
batch() {
    jq -cn --argjson n "$1" --arg id "$2" --arg ts "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
        '{batch_id: $id, records: [range($n) | {ts: $ts, provider: "openai",
          model: "model-\(. | tostring)", key_type: "production", app: "web", requests: 1,
          prompt_tokens: 1234, completion_tokens: 567, cached_tokens: 0, cost_usd: 0.000123456,
          status: "ok", estimated_requests: 0}]}'
}
batch 2000 "e2e-limit-512k-$$" >"$LIB_TMP/b512.json"
vault_api POST byok/tenants/acme/usage "$(cat "$LIB_TMP/b512.json")" "$ADMIN_TOKEN"
t_eq "plugin: a 512 KiB usage batch (the agent's bound) is counted" \
    "$(($(stat -c %s "$LIB_TMP/b512.json") <= 512 * 1024)) $VAULT_CODE $(echo "$VAULT_BODY" | jq -r .data.accepted)" \
    "1 200 2000"
batch 4500 "e2e-limit-1m-$$" >"$LIB_TMP/b1m.json"
vault_api POST byok/tenants/acme/usage "$(cat "$LIB_TMP/b1m.json")" "$ADMIN_TOKEN"
t_match "plugin: a usage batch over 1 MiB is refused (400) with a message naming the limit" \
    "$(stat -c %s "$LIB_TMP/b1m.json") $VAULT_CODE $(echo "$VAULT_BODY" | jq -r '.errors[0]')" \
    '^1[0-9]{6} 400 .*too large'

# ---- connections are counted while open, and closed at once ----
# reload: SIGHUP with AGENT_CONFIG written, waited for (one more "config reloaded").
reload() {
    local n
    n=$(grep -c '"@message":"config reloaded"' "$AGENT_LOG")
    kill -HUP "$AGENT_PID"
    lib_wait_for 5 reloads $((n + 1))
}
agent_config "[{\"path\": \"$S\", \"tenant\": \"acme\", \"mode\": \"0660\", \"metrics\": true}]"
reload
# 20 idle connections opened, then closed by the app; on a new connection each
# time: /healthz "connections", byok_connections and the agent's open fds.
conns=$("$PY" - "$S" "$AGENT_PID" <<'PYEOF' 2>&1
import os, socket, sys
sock_path, pid = sys.argv[1], int(sys.argv[2])
def get(s, path):
    s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: agent\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, body = buf.split(b"\r\n\r\n", 1)
    n = int([l.split(b":", 1)[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0])
    while len(body) < n:
        body += s.recv(65536)
    return body.decode()
def probe():
    """connections per /healthz and per byok_connections, and the agent's fds, on a new connection"""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(20)
    s.connect(sock_path)
    h = get(s, "/healthz").split('"connections":')[1].rstrip("}")
    m = [l.split()[1] for l in get(s, "/metrics").splitlines() if l.startswith("byok_connections ")][0]
    fds = len(os.listdir("/proc/%d/fd" % pid))
    s.close()
    return h, m, fds
_, _, base = probe()
held = []
for _ in range(20):
    c = socket.socket(socket.AF_UNIX)
    c.connect(sock_path)
    held.append(c)
h1, m1, fds1 = probe()
for c in held:
    c.close()
h2, m2, fds2 = probe()
print("open %s %s fds%+d closed %s %s fds%+d" % (h1, m1, fds1 - base, h2, m2, fds2 - base))
PYEOF
)
t_match "20 connections the app closed: /healthz and byok_connections stop counting them and their sockets are closed at once" \
    "$conns" '^open 21 21 fds\+(2[0-9]) closed 1 1 fds(-[0-9]+|\+[0-3])$'
agent_config "[{\"path\": \"$S\", \"tenant\": \"acme\", \"mode\": \"0660\"}]" '.limits.max_connections = 2'
reload
codes=""
for i in 1 2 3 4 5 6; do
    call "$S" GET /healthz
    codes+="$CODE "
done
t_eq "max_connections 2: six calls one after the other (each connection closed before the next) all answered" \
    "$codes" "200 200 200 200 200 200 "

# ---- a retired listener is freed once its last connection has closed ----
B=$AGENT_DIR/b.sock
agent_config "[{\"path\": \"$S\", \"tenant\": \"acme\", \"mode\": \"0660\"}, {\"path\": \"$B\", \"tenant\": \"acme\"}]"
reload
agent_config "[{\"path\": \"$S\", \"tenant\": \"acme\", \"mode\": \"0660\"}]"
FREED='"@message":"retired listener freed"'
# A kept-alive connection on B across the reload that removes B: B is freed
# only after that connection's next answer (Connection: close).
retire=$("$PY" - "$B" "$AGENT_PID" "$AGENT_LOG" "$FREED" <<'PYEOF' 2>&1
import os, signal, socket, sys, time
sock_path, pid, log, freed = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
base = open(log).read().count(freed)
s = socket.socket(socket.AF_UNIX)
s.settimeout(20)
s.connect(sock_path)
def get():
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: agent\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            return "eof"
        buf += chunk
    lines = buf.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
    close = any(l.lower().replace(" ", "") == "connection:close" for l in lines[1:])
    return lines[0].split()[1] + ("/close" if close else "")
first = get()
before = open(log).read().count('"@message":"config reloaded"')
os.kill(pid, signal.SIGHUP)
for _ in range(200):
    if open(log).read().count('"@message":"config reloaded"') > before:
        break
    time.sleep(0.05)
time.sleep(0.6)  # more than a sweep (500 ms): nothing but this connection holds B
held = open(log).read().count(freed) - base
second = get()
for _ in range(200):
    if open(log).read().count(freed) - base > held:
        break
    time.sleep(0.05)
print(first, held, second, open(log).read().count(freed) - base)
PYEOF
)
t_eq "a socket a reload removed: its listener is freed (logged) once its kept-alive connection got its answer with Connection: close, not before" \
    "$retire" "200 0 200/close 1"

# ---- reloads that remove a socket do not add up in memory ----
# A second agent (its own sockets and log), with ASan's quarantine off so that
# freed memory is reused on the ASan build too. Each "two" config maps 2,000
# peers on a second socket that the next reload removes: before retired
# listeners were freed, each such reload kept its whole config (~100 KB).
R1=$LIB_TMP/r1.sock R2=$LIB_TMP/r2.sock
MAIN_CONFIG=$AGENT_CONFIG MAIN_LOG=$AGENT_LOG MAIN_PID=$AGENT_PID
AGENT_CONFIG=$LIB_TMP/r.json AGENT_LOG=$LIB_TMP/r-agent.log
agent_config "[{\"path\": \"$R1\", \"tenant\": \"acme\"}]" '.log_level = "info"'
cp "$AGENT_CONFIG" "$LIB_TMP/r-one.json"
agent_config "[{\"path\": \"$R1\", \"tenant\": \"acme\"}, {\"path\": \"$R2\", \"peers\": []}]" \
    '.log_level = "info" | .listeners[1].peers = [range(2000) | {uid: (100000 + .), tenant: "acme"}]'
cp "$AGENT_CONFIG" "$LIB_TMP/r-two.json"
cp "$LIB_TMP/r-one.json" "$AGENT_CONFIG"
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$AGENT_PID/status"; }
# cycles N: N reloads to "two" and back to "one", each waited for.
RELOADS=0
cycles() {
    local i f t
    for ((i = 0; i < $1; i++)); do
        for f in two one; do
            cp "$LIB_TMP/r-$f.json" "$AGENT_CONFIG"
            kill -HUP "$AGENT_PID"
            RELOADS=$((RELOADS + 1))
            for ((t = 0; t < 1000; t++)); do
                [ "$(grep -c '"@message":"config reloaded"' "$AGENT_LOG")" -ge "$RELOADS" ] && break
                sleep 0.01
            done
        done
    done
}
NAME="100 reloads each removing a socket (2,000-peer config): the agent's RSS grows by less than 6 MB"
if ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0" agent_start; then
    cycles 10 # the allocator's steady state
    rss0=$(rss_kb)
    cycles 100
    rss1=$(rss_kb)
    t_diag "RSS ${rss0} kB -> ${rss1} kB over $RELOADS reloads"
    t_eq "$NAME" "$(grep -c '"@message":"config reloaded"' "$AGENT_LOG") $(grep -c "$FREED" "$AGENT_LOG") $(((rss1 - rss0) < 6 * 1024))" \
        "220 110 1"
    agent_stop_check "the reloading agent stops cleanly on SIGTERM, no sanitizer report"
else
    t_fail "$NAME" "$LIB_BLOCKED_REASON"
    t_fail "the reloading agent stops cleanly on SIGTERM, no sanitizer report" "$LIB_BLOCKED_REASON"
fi
AGENT_CONFIG=$MAIN_CONFIG AGENT_LOG=$MAIN_LOG AGENT_PID=$MAIN_PID

agent_stop_check "agent stops cleanly on SIGTERM, no sanitizer report"

# ---- the slice refused by a seccomp filter ----
NAME="scheduler slice refused (seccomp EPERM): one warning, the kernel's slice kept, the agent serves, a reload does not warn again"
WARN='"@message":"cannot set the scheduler slice; sched_slice_us not applied"'
# Kernel-independent: an older kernel has no se.slice line (both sides empty),
# and the refusal and its one warning are the same.
if ! ${CC:-cc} -O1 -o "$LIB_TMP/deny-sched-setattr" "$BYOK_ROOT/tests/e2e/deny-sched-setattr.c" 2>"$LIB_TMP/cc.err"; then
    t_skip "$NAME" "cannot build the seccomp helper: $(head -c 200 "$LIB_TMP/cc.err")"
elif ! "$LIB_TMP/deny-sched-setattr" /bin/true 2>"$LIB_TMP/seccomp.err"; then
    t_skip "$NAME" "cannot install a seccomp filter here: $(head -c 200 "$LIB_TMP/seccomp.err")"
else
    printf '#!/bin/bash\nexec "%s" "%s" "$@"\n' "$LIB_TMP/deny-sched-setattr" "$AGENT_BIN" >"$LIB_TMP/agent-denied"
    chmod +x "$LIB_TMP/agent-denied"
    REAL_AGENT_BIN=$AGENT_BIN
    AGENT_BIN=$LIB_TMP/agent-denied
    AGENT_LOG=$AGENT_DIR/agent-denied.log
    agent_config "[{\"path\": \"$S\", \"tenant\": \"acme\", \"mode\": \"0660\"}]"
    if agent_start; then
        call "$S" GET /healthz
        warned=$(grep -c "$WARN" "$AGENT_LOG")
        err=$(grep "$WARN" "$AGENT_LOG" | head -n 1 | jq -r .error)
        kill -HUP "$AGENT_PID"
        lib_wait_for 5 reloads 1
        t_eq "$NAME" \
            "$warned $err | $(slice_of "$AGENT_PID") | $CODE | $(grep -c "$WARN" "$AGENT_LOG")" \
            "1 Operation not permitted | $(slice_of "$BASHPID") | 200 | 1"
        kill -TERM "$AGENT_PID"
        wait "$AGENT_PID" 2>/dev/null
    else
        t_fail "$NAME" "the agent did not start under the filter: $(tail -n 3 "$AGENT_LOG")"
    fi
    AGENT_BIN=$REAL_AGENT_BIN
fi
t_done
