#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# How the agent reads its CA file (upstream.c): the file alone, without
# Debian's default CA directory, so that curl parses it once and shares the
# store with every new connection instead of parsing it (the whole system
# bundle: ~20 ms and ~830 KB) per connection:
#   - with upstream.ca_file = the system bundle plus the test CA, eight
#     concurrent streams over eight new TLS connections are answered, and the
#     agent opened the CA file once for all of them (strace);
#   - a CA file changed in place is read again by the next new connection
#     at once after SIGHUP, and without SIGHUP within about a second (a new
#     transfer looks at the file's identity at most once a second; before,
#     the parsed store was kept for an hour).
. "$(dirname "$0")/lib.sh"

CASES=("8 concurrent streams over new TLS connections are answered"
    "the agent held 8 upstream TLS connections at once"
    "the CA file was read once for all of them"
    "agent stops cleanly on SIGTERM, no sanitizer report"
    "CA file without the test CA: the call fails at TLS verification (502), nothing answered"
    "after SIGHUP: the next new connection reads the CA file again and is answered"
    "agent stops cleanly on SIGTERM (after the reload), no sanitizer report"
    "a fresh agent, CA file without the test CA: 502"
    "the CA file rewritten in place, no SIGHUP: a new connection 1.5 s later reads it and is answered"
    "the change is logged with the file's path"
    "agent stops cleanly on SIGTERM (after the change), no sanitizer report"
    "canary: nowhere but the provider request")

lib_up && lib_require "$AGENT_BIN" || t_block_all
command -v strace >/dev/null || { LIB_BLOCKED_REASON="strace not installed (make deps installs it)"; t_block_all; }
SYSTEM_BUNDLE=/etc/ssl/certs/ca-certificates.crt
[ -s "$SYSTEM_BUNDLE" ] || { LIB_BLOCKED_REASON="no $SYSTEM_BUNDLE (ca-certificates)"; t_block_all; }
KEY=$(lib_canary)
key_put acme openai "$KEY" || t_block_all
SOCK=$AGENT_DIR/acme.sock
BUNDLE=$LIB_TMP/ca-bundle.pem
cat "$SYSTEM_BUNDLE" "$MOCK_CA" >"$BUNDLE"
ca_config() {
    agent_config "[{\"path\": \"$SOCK\", \"mode\": \"0660\", \"tenant\": \"acme\", \"app\": \"ca\"}]" \
        ".upstream.ca_file = \"$BUNDLE\" | .providers = [\"openai\"] | .log_level = \"info\""
}
ca_config
agent_start || t_block_all

# strace on the running agent: every openat of any thread, from before the first call.
STRACE_OUT=$LIB_TMP/strace.txt
strace -f -e trace=openat -e signal=none -o "$STRACE_OUT" -p "$AGENT_PID" 2>"$LIB_TMP/strace.err" &
STRACE_PID=$!
lib_wait_for 10 grep -q attached "$LIB_TMP/strace.err"

# Eight slow streams at once: each needs its own connection (~0.6 s each).
SPIDS=()
for i in $(seq 8); do
    chat_body openai/mock-slowstream true 30 | curl -sS -m 20 --unix-socket "$SOCK" -N \
        -H 'Content-Type: application/json' --data-binary @- -o "$LIB_TMP/s$i.out" \
        -w '%{http_code}' http://localhost/v1/chat/completions >"$LIB_TMP/s$i.code" 2>&1 &
    SPIDS+=($!)
done
PEAK=0
for _ in $(seq 30); do
    n=$(ss -tnH state established "( dport = :$MOCK_HTTPS )" 2>/dev/null | wc -l)
    [ "$n" -gt "$PEAK" ] && PEAK=$n
    sleep 0.05
done
wait "${SPIDS[@]}"
ok=0
for i in $(seq 8); do
    [ "$(cat "$LIB_TMP/s$i.code")" = 200 ] && [ "$(sse_content <"$LIB_TMP/s$i.out" | wc -w)" = 30 ] && ok=$((ok + 1))
    cat "$LIB_TMP/s$i.out" >>"$LIB_RESP_LOG"
done
t_eq "8 concurrent streams over new TLS connections are answered" "$ok" 8
t_check "the agent held 8 upstream TLS connections at once" test "$PEAK" -ge 8
kill "$STRACE_PID" 2>/dev/null
wait "$STRACE_PID" 2>/dev/null
reads=$(grep -c "openat(.*\"$BUNDLE\"" "$STRACE_OUT")
t_eq "the CA file was read once for all of them" "$reads" 1
[ "$reads" = 1 ] || t_diag "openat of the CA file: $reads; strace: $(head -c 300 "$LIB_TMP/strace.err")"
agent_stop_check "agent stops cleanly on SIGTERM, no sanitizer report"

# A fresh agent whose CA file does not hold the test CA.
cp "$SYSTEM_BUNDLE" "$BUNDLE"
agent_start || t_block_all
call "$SOCK" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini)"
t_eq "CA file without the test CA: the call fails at TLS verification (502), nothing answered" \
    "$CODE $(echo "$BODY" | jq -r '.choices[0].message.content // "none"')" "502 none"
# The same file, now with the test CA, written in place (same inode), and SIGHUP at once.
cat "$SYSTEM_BUNDLE" "$MOCK_CA" >"$BUNDLE"
kill -HUP "$AGENT_PID"
lib_wait_for 10 grep -q '"config reloaded"' "$AGENT_LOG"
call "$SOCK" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini)"
t_eq "after SIGHUP: the next new connection reads the CA file again and is answered" \
    "$CODE $(echo "$BODY" | jq -r '.choices[0].message.content')" "200 $(words 5)"
agent_stop_check "agent stops cleanly on SIGTERM (after the reload), no sanitizer report"

# No SIGHUP: the agent notices the rewritten file by itself (the old code kept
# the first parsed store for an hour and answered 502 here).
cp "$SYSTEM_BUNDLE" "$BUNDLE"
agent_start || t_block_all
call "$SOCK" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini)"
t_eq "a fresh agent, CA file without the test CA: 502" "$CODE" 502
cat "$SYSTEM_BUNDLE" "$MOCK_CA" >"$BUNDLE"
sleep 1.5
call "$SOCK" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini)"
t_eq "the CA file rewritten in place, no SIGHUP: a new connection 1.5 s later reads it and is answered" \
    "$CODE $(echo "$BODY" | jq -r '.choices[0].message.content')" "200 $(words 5)"
t_check "the change is logged with the file's path" \
    grep -q "\"CA file changed; new connections read it again\".*\"path\":\"$BUNDLE\"" "$AGENT_LOG"
agent_stop_check "agent stops cleanly on SIGTERM (after the change), no sanitizer report"
canary_scan "canary: nowhere but the provider request" "$KEY"
t_done
[ "$T_FAILED" -eq 0 ]
