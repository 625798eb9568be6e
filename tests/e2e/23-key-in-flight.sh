#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# While calls are in flight, the tenant's key is only in memory a core dump
# leaves out. Three streams (OpenAI, Azure and Anthropic styles: a Bearer
# token, an api-key header, an x-api-key header) run at once; once each has
# delivered its first words, gcore dumps the agent. The key cache is in
# OpenSSL's secure heap (MADV_DONTDUMP). What used to stay in the ordinary heap
# for the whole stream, and must not any more:
#   - libcurl's copy of the request for TLS (its upload buffer), freed as
#     soon as the request is sent;
#   - the header list with the key, freed when the answer begins (curl sends
#     a request again only when a reused connection returned nothing).
# Both are wiped on free by the agent's allocator hooks. The scan looks at the
# core's memory segments: its notes also hold each thread's saved vector
# registers, where the last bytes a vector copy moved (part of a request,
# the key included) can linger until the next one (core-memory.py).
. "$(dirname "$0")/lib.sh"

PROVIDERS=(openai azure anthropic)
CASES=()
for p in "${PROVIDERS[@]}"; do CASES+=("$p stream under way when the core is taken"); done
CASES+=("core dump mid-stream: taken" "core dump mid-stream: holds agent memory"
    "core dump mid-stream: no key"
    "the streams end complete after the dump")
for p in "${PROVIDERS[@]}"; do CASES+=("$p: the key was sent to the provider"); done
CASES+=("agent stops cleanly on SIGTERM, no sanitizer report"
    "canary: nowhere but the provider request")

lib_up && lib_require "$AGENT_BIN" || t_block_all
command -v gcore >/dev/null || { LIB_BLOCKED_REASON="gdb not installed (make deps installs it)"; t_block_all; }
canary_keys acme "${PROVIDERS[@]}" || t_block_all
SOCK=$AGENT_DIR/acme.sock
agent_config "[{\"path\": \"$SOCK\", \"mode\": \"0660\", \"tenant\": \"acme\", \"app\": \"inflight\"}]" \
    '.log_level = "info"'
agent_start || t_block_all

since=$(mock_last_seq)
declare -A SPID
for p in "${PROVIDERS[@]}"; do
    # 100 words, 20 ms apart: about 2 s.
    chat_body "$p/mock-slowstream" true 100 | curl -sS -m 20 --unix-socket "$SOCK" -N \
        -H 'Content-Type: application/json' --data-binary @- -o "$LIB_TMP/$p.out" \
        -w '%{http_code}' http://localhost/v1/chat/completions >"$LIB_TMP/$p.code" 2>&1 &
    SPID[$p]=$!
done
# First words of each stream: the answers have begun (OpenAI/Azure "w3", Anthropic "w3" too).
for p in "${PROVIDERS[@]}"; do
    lib_wait_for 10 grep -q 'w3' "$LIB_TMP/$p.out"
done
for p in "${PROVIDERS[@]}"; do
    if grep -q 'w3' "$LIB_TMP/$p.out" && ! grep -q 'w99' "$LIB_TMP/$p.out"; then
        t_ok "$p stream under way when the core is taken"
    else
        t_fail "$p stream under way when the core is taken" "$(head -c 200 "$LIB_TMP/$p.out")"
    fi
done

agent_core_check "core dump mid-stream" "$SOCK" "${KEY[@]}"

wait "${SPID[@]}"
ok=0
for p in "${PROVIDERS[@]}"; do
    cat "$LIB_TMP/$p.out" >>"$LIB_RESP_LOG"
    [ "$(cat "$LIB_TMP/$p.code")" = 200 ] && grep -q 'w99' "$LIB_TMP/$p.out" && ok=$((ok + 1))
done
t_eq "the streams end complete after the dump" "$ok" 3
reqs=$(mock_requests_since "$since")
for p in "${PROVIDERS[@]}"; do
    # The mock records which key each request carried; the agent really sent it.
    t_eq "$p: the key was sent to the provider" \
        "$(jq -r --arg k "${KEY[$p]}" 'any(.[]; tostring | contains($k))' <<<"$reqs")" true
done
agent_stop_check "agent stops cleanly on SIGTERM, no sanitizer report"
canary_scan "canary: nowhere but the provider request" "${KEY[@]}"
t_done
[ "$T_FAILED" -eq 0 ]
