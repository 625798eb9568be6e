#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# Agent benchmark. In one run, interleaved round by round so that machine noise
# hits every target alike, the same load generator (build/tests/bench/loadgen)
# drives:
#   direct       loadgen -> mock provider (TCP loopback, plain HTTP)
#   nginx-http   loadgen -> nginx (Unix socket) -> mock (plain HTTP, upstream keep-alive)
#   agent-http   loadgen -> byok-agent (Unix socket) -> mock (plain HTTP: a "local" provider)
#   nginx-https  loadgen -> nginx -> mock (HTTPS, upstream keep-alive, verified)
#   agent-https  loadgen -> byok-agent -> mock (HTTPS, verified against the test CA)
# nginx is Debian's nginx-light, one worker, configured in a temp dir as a
# plain reverse proxy that adds the Authorization header (what the agent does,
# minus everything else). The agent's upstream timeouts are set to nginx's
# defaults (60 s) so that overload shows as latency in both, not as 504s in one.
# Reported:
#   - added latency (p50, p99) vs direct at BENCH_RATE req/s open loop (2,000)
#   - saturation throughput (closed loop, BENCH_CONNS connections)
#   - streaming: added time to first byte at BENCH_STREAM_RATE req/s open loop
#   - 1,000 concurrent streams: agent RSS peak, lost/reordered frames (loadgen
#     checks the mock's w0..wN sequence in every stream), same for nginx
#   - idle agent RSS
# and the ratios to nginx. Nothing is asserted: timings are for reading.
#
# Env: BYOK_BUILD (default build), BENCH_ROUNDS (3), BENCH_SECS (5), BENCH_RATE
# (2000), BENCH_CONNS (16), BENCH_STREAM_RATE (200), BENCH_STREAMS (1000),
# BENCH_STREAM_TARGETS (which targets run the 1,000 streams: "agent-http
# nginx-http agent-https nginx-https"),
# BENCH_TESTS (the round's tests: "open closed stream"; a subset runs faster
# when only one figure is being investigated).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
BYOK_ROOT=${BYOK_ROOT:-$(cd "$HERE/../.." && pwd)}
BYOK_BUILD=${BYOK_BUILD:-$BYOK_ROOT/build}
MOCK_BENCH=1
. "$BYOK_ROOT/tests/e2e/lib.sh"

LOADGEN=${LOADGEN:-$BYOK_BUILD/tests/bench/loadgen}
ROUNDS=${BENCH_ROUNDS:-3}
SECS=${BENCH_SECS:-5}
RATE=${BENCH_RATE:-2000}
CONNS=${BENCH_CONNS:-16}
SRATE=${BENCH_STREAM_RATE:-200}
NSTREAMS=${BENCH_STREAMS:-1000}
NGINX=${NGINX:-/usr/sbin/nginx}
TESTS=" ${BENCH_TESTS:-open closed stream} "

say() { echo "bench: $*" >&2; }

for b in "$LOADGEN" "$NGINX"; do
    [ -x "$b" ] || { say "missing $b (make tools; apt-get install nginx-light)"; exit 1; }
done
if ! lib_up || ! lib_require "$AGENT_BIN"; then
    say "cannot start the system: $LIB_BLOCKED_REASON"
    exit 1
fi

# The plain-HTTP path needs a "local" provider: vllm pointed at the mock's HTTP port.
local_vllm_at_mock || { say "vllm override: HTTP $VAULT_CODE"; exit 1; }
BENCH_KEY=sk-bench-$(lib_random_hex 16)
key_put bench openai "$BENCH_KEY" || exit 1
key_put bench vllm "$BENCH_KEY" || exit 1

# Both proxies trust what a production node trusts, the system CA bundle, plus
# the test CA: a new TLS connection then costs what it costs in production.
CA_BUNDLE=$LIB_TMP/ca-bundle.pem
cat /etc/ssl/certs/ca-certificates.crt "$MOCK_CA" >"$CA_BUNDLE"
ASOCK=$AGENT_DIR/bench.sock
agent_config "[{\"path\": \"$ASOCK\", \"mode\": \"0660\", \"tenant\": \"bench\", \"app\": \"bench\"}]" \
    '.providers = ["openai", "vllm"] | .log_level = "warn" | .limits.max_connections = 20000
     | .upstream.ca_file = "'"$CA_BUNDLE"'"
     | .limits.client_timeout_s = 60 | .keycache.max_ttl_s = 3600 | .usage.report_interval_s = 5
     | .upstream.connect_timeout_ms = 60000 | .upstream.first_byte_timeout_ms = 60000
     | .upstream.idle_timeout_ms = 60000'
vault_api PUT byok/config '{"creds_ttl":"1h"}' "$ADMIN_TOKEN" >/dev/null
# As agent/byok-agent.service and the DaemonSet run it (gnutls is never used; ~0.5 MB).
export GNUTLS_NO_IMPLICIT_INIT=1
agent_start || { say "agent did not start: $(tail -n 5 "$AGENT_LOG")"; exit 1; }

# ---- nginx ----
NG=$LIB_TMP/nginx
mkdir -p "$NG/tmp"
cat >"$NG/nginx.conf" <<EOF
user root root;
worker_processes 1;
daemon off;
pid $NG/nginx.pid;
error_log $NG/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $NG/tmp/body;
    proxy_temp_path $NG/tmp/proxy;
    fastcgi_temp_path $NG/tmp/fastcgi;
    uwsgi_temp_path $NG/tmp/uwsgi;
    scgi_temp_path $NG/tmp/scgi;
    client_max_body_size 1m;
    keepalive_requests 1000000;
    upstream mock_http { server 127.0.0.1:$MOCK_HTTP; keepalive 512; keepalive_requests 1000000; }
    upstream mock_https { server 127.0.0.1:$MOCK_HTTPS; keepalive 512; keepalive_requests 1000000; }
    server {
        listen unix:$NG/http.sock backlog=4096;
        location / {
            proxy_pass http://mock_http;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "Bearer $BENCH_KEY";
            proxy_buffering off;
        }
    }
    server {
        listen unix:$NG/https.sock backlog=4096;
        location / {
            proxy_pass https://mock_https;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "Bearer $BENCH_KEY";
            proxy_buffering off;
            proxy_ssl_trusted_certificate $CA_BUNDLE;
            proxy_ssl_verify on;
            proxy_ssl_name localhost;
            proxy_ssl_server_name on;
            proxy_ssl_session_reuse on;
        }
    }
}
EOF
lib_spawn "$NG/stderr.log" "$NGINX" -p "$NG" -c "$NG/nginx.conf" -e "$NG/error.log"
NGINX_PID=$LIB_LAST_PID
lib_wait_proc "$NGINX_PID" 10 test -S "$NG/https.sock" || { say "nginx did not start: $(cat "$NG/error.log" "$NG/stderr.log")"; exit 1; }

# ---- targets ----
body() { jq -cn --arg m "$1" --argjson s "$2" --argjson n "$3" \
    '{model: $m, stream: $s, max_tokens: $n, messages: [{role: "user", content: "benchmark prompt of six words"}]}
     + (if $s then {stream_options: {include_usage: true}} else {} end)'; }
declare -A SOCKOF MODEL
SOCKOF[nginx-http]=$NG/http.sock
SOCKOF[agent-http]=$ASOCK
SOCKOF[nginx-https]=$NG/https.sock
SOCKOF[agent-https]=$ASOCK
MODEL[direct]=gpt-4o-mini
MODEL[nginx-http]=gpt-4o-mini
MODEL[agent-http]=vllm/gpt-4o-mini
MODEL[nginx-https]=gpt-4o-mini
MODEL[agent-https]=openai/gpt-4o-mini
ORDER=(direct nginx-http agent-http nginx-https agent-https)
# A/B: BENCH_AGENT_B=/path/to/another/byok-agent runs a second agent, same
# config on its own socket, as targets agentB-http and agentB-https, interleaved
# with the others (the 1,000-stream and RSS figures are the first agent's only).
VARIANTS=(agent)
if [ -n "${BENCH_AGENT_B:-}" ]; then
    BSOCK=$AGENT_DIR/bench-b.sock
    jq --arg p "$BSOCK" '.listeners[0].path = $p' "$AGENT_CONFIG" >"$AGENT_DIR/agent-b.json"
    lib_spawn "$AGENT_DIR/agent-b.log" bash -c 'cd "$1" && exec "$2" -c "$3"' agent "$AGENT_DIR" \
        "$BENCH_AGENT_B" "$AGENT_DIR/agent-b.json"
    lib_wait_proc "$LIB_LAST_PID" 10 test -S "$BSOCK" || { say "agent B did not start: $(tail -n 5 "$AGENT_DIR/agent-b.log")"; exit 1; }
    SOCKOF[agentB-http]=$BSOCK
    SOCKOF[agentB-https]=$BSOCK
    MODEL[agentB-http]=${MODEL[agent-http]}
    MODEL[agentB-https]=${MODEL[agent-https]}
    ORDER+=(agentB-http agentB-https)
    VARIANTS+=(agentB)
fi
RES=$LIB_TMP/results.txt
: >"$RES"

# run TARGET TEST LOADGEN-ARGS...: one loadgen run, RESULT line tagged and kept.
run() {
    local t=$1 test=$2
    shift 2
    local -a a
    case $t in
    direct) a=(-t "127.0.0.1:$MOCK_HTTP" -H "Authorization: Bearer $BENCH_KEY") ;;
    *) a=(-u "${SOCKOF[$t]}") ;;
    esac
    "$LOADGEN" "${a[@]}" -p /v1/chat/completions -n "$test/$t" "$@" >"$LIB_TMP/lg.out" 2>&1
    grep '^RESULT' "$LIB_TMP/lg.out" | sed "s|^RESULT |RESULT target=$t test=$test |" >>"$RES"
    local e
    e=$(grep -o 'http_err=[0-9]* io_err=[0-9]* timeouts=[0-9]* verify_err=[0-9]*' "$LIB_TMP/lg.out")
    [[ $e == "http_err=0 io_err=0 timeouts=0 verify_err=0" ]] ||
        say "$test/$t: $e $(grep -o 'non-2xx:.*' "$LIB_TMP/lg.out")"
}

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null; }
# Idle RSS of an agent that has served its first calls (key fetched, upstream
# connections and TLS sessions up) but no load yet: what a quiet node holds.
for t in agent-http agent-https ${BENCH_AGENT_B:+agentB-http agentB-https}; do
    body "${MODEL[$t]}" false 16 >"$LIB_TMP/first-$t.json"
    run "$t" first -b "$LIB_TMP/first-$t.json" -c 1 -r 20 -d 1
done
sleep 2
FIRST_RSS=$(rss_kb "$AGENT_PID")
for t in "${ORDER[@]}"; do
    body "${MODEL[$t]}" false 16 >"$LIB_TMP/body-$t.json"
    body "${MODEL[$t]}" true 20 >"$LIB_TMP/sbody-$t.json"
    body "${MODEL[$t]/gpt-4o-mini/mock-slowstream}" true 50 >"$LIB_TMP/slow-$t.json"
    # Warm every path (connections, key cache, TLS sessions) at the concurrency of
    # the measured runs: otherwise round 1 pays for growing the upstream connection
    # pools (TLS handshakes), which showed as the agent's HTTPS p99.
    run "$t" warm -b "$LIB_TMP/body-$t.json" -c 64 -r "$RATE" -d 1
done
: >"$RES"
# Upstream connections (to the mock's HTTP and HTTPS ports) per proxy, from ss:
# a growth during the measured rounds means new connects (and TLS handshakes).
upconns() { # PROCESS-NAME PORT
    ss -tnpH state established "( dport = :$2 )" 2>/dev/null | grep -c "\"$1\""
}
conns_line() {
    echo "agent $(upconns byok-agent "$MOCK_HTTP")/$(upconns byok-agent "$MOCK_HTTPS")," \
        "nginx $(upconns nginx "$MOCK_HTTP")/$(upconns nginx "$MOCK_HTTPS")"
}
CONNS_WARM=$(conns_line)
IDLE_RSS=$(rss_kb "$AGENT_PID")

for r in $(seq "$ROUNDS"); do
    say "round $r/$ROUNDS: open loop $RATE req/s, closed loop $CONNS conns, streams $SRATE req/s"
    for t in "${ORDER[@]}"; do
        [[ $TESTS == *" open "* ]] || break
        run "$t" open -b "$LIB_TMP/body-$t.json" -c 64 -r "$RATE" -d "$SECS" -w 1
    done
    for t in "${ORDER[@]}"; do
        [[ $TESTS == *" closed "* ]] || break
        run "$t" closed -b "$LIB_TMP/body-$t.json" -c "$CONNS" -d "$SECS" -w 1
    done
    for t in "${ORDER[@]}"; do
        [[ $TESTS == *" stream "* ]] || break
        run "$t" stream -b "$LIB_TMP/sbody-$t.json" -c 64 -r "$SRATE" -d "$SECS" -w 1 -S -e 20
    done
done

CONNS_ROUNDS=$(conns_line)

# 1,000 concurrent streams (mock-slowstream: 50 words, 20 ms apart: ~1 s each).
peak_rss() { # PIDS... -> samples the sum every 100 ms into $LIB_TMP/peak until killed
    local peak=0 s p
    while :; do
        s=0
        for p in "$@"; do s=$((s + $(rss_kb "$p" || echo 0))); done
        [ "$s" -gt "$peak" ] && peak=$s && echo "$peak" >"$LIB_TMP/peak"
        sleep 0.1
    done
}
declare -A PEAK
# HTTP first: glibc keeps the heap a run of 1,000 TLS streams grew (malloc_trim
# returns only wholly free pages), so an HTTP run after it would report the
# HTTPS run's heap rather than what HTTP streams cost.
STREAM_TARGETS=(${BENCH_STREAM_TARGETS:-agent-http nginx-http agent-https nginx-https})
[ "$NSTREAMS" -gt 0 ] || STREAM_TARGETS=() # BENCH_STREAMS=0: skip this part
for t in "${STREAM_TARGETS[@]}"; do
    case $t in
    agent-*) pids=("$AGENT_PID") ;;
    nginx-*) mapfile -t pids < <(pgrep -P "$NGINX_PID"; echo "$NGINX_PID") ;;
    esac
    echo 0 >"$LIB_TMP/peak"
    peak_rss "${pids[@]}" &
    SAMPLER=$!
    run "$t" streams1000 -b "$LIB_TMP/slow-$t.json" -c "$NSTREAMS" -d $((SECS * 2)) -w 2 -S -e 50 -T 60
    kill "$SAMPLER"
    wait "$SAMPLER" 2>/dev/null
    PEAK[$t]=$(cat "$LIB_TMP/peak")
done
AFTER_RSS=$(rss_kb "$AGENT_PID")

# ---- report: medians over rounds ----
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else print v[int((NR + 1) / 2)] }'; }
m() { grep "target=$1 test=$2 " "$RES" | field "$3" | median; }
sum() { grep "target=$1 test=$2 " "$RES" | field "$3" | awk '{ s += $1 } END { print s + 0 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 <= 0 || a != a + 0) print "n/a"; else printf "%.2fx", a / b }'; }
minus() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != a + 0 || b != b + 0) print "nan"; else printf "%.0f", a - b }'; }

D50=$(m direct open p50_us)
D99=$(m direct open p99_us)
echo
echo "byok-agent benchmark: $(nproc) CPUs, $ROUNDS interleaved rounds of ${SECS}s, medians; loadgen, mock, proxy on the same machine"
echo
printf '%-12s | %10s %10s | %10s %10s | %12s | %10s %10s\n' target "p50 us" "p99 us" "+p50 us" "+p99 us" "sat. req/s" "ttfb p50" "+ttfb p50"
printf '%s\n' "-------------+-----------------------+-----------------------+--------------+----------------------"
DT=$(m direct stream ttfb_p50_us)
for t in "${ORDER[@]}"; do
    p50=$(m "$t" open p50_us)
    p99=$(m "$t" open p99_us)
    tt=$(m "$t" stream ttfb_p50_us)
    printf '%-12s | %10s %10s | %10s %10s | %12s | %10s %10s\n' "$t" "$p50" "$p99" \
        "$(minus "$p50" "$D50")" "$(minus "$p99" "$D99")" "$(m "$t" closed rps)" "$tt" \
        "$( [ "$tt" = nan ] && echo - || minus "$tt" "$DT")"
done
echo
echo "open loop at $RATE req/s (latency from the intended send time), closed loop with $CONNS connections,"
echo "streams at $SRATE req/s (20 words; ttfb = first body byte)."
echo
for a in "${VARIANTS[@]}"; do
    for v in http https; do
        a50=$(minus "$(m $a-$v open p50_us)" "$D50")
        n50=$(minus "$(m nginx-$v open p50_us)" "$D50")
        a99=$(minus "$(m $a-$v open p99_us)" "$D99")
        n99=$(minus "$(m nginx-$v open p99_us)" "$D99")
        at=$(minus "$(m $a-$v stream ttfb_p50_us)" "$DT")
        nt=$(minus "$(m nginx-$v stream ttfb_p50_us)" "$DT")
        echo "$a/nginx ($v upstream): added p50 $(ratio "$a50" "$n50"), added p99 $(ratio "$a99" "$n99"), saturation $(ratio "$(m $a-$v closed rps)" "$(m nginx-$v closed rps)"), stream added ttfb $(ratio "$at" "$nt")"
    done
done
echo "upstream connections (HTTP/HTTPS) after warm-up: $CONNS_WARM; after the rounds: $CONNS_ROUNDS"
echo
[ "$NSTREAMS" -gt 0 ] && echo "$NSTREAMS concurrent streams (50 frames each, 20 ms apart, $((SECS * 2)) s):"
for t in agent-https nginx-https agent-http nginx-http; do
    [ -n "${PEAK[$t]:-}" ] || continue
    printf '  %-12s streams ok %6s  lost/reordered/cut %4s  errors %4s  peak RSS %7s kB\n' "$t" \
        "$(sum "$t" streams1000 ok)" "$(sum "$t" streams1000 verify_err)" \
        "$(($(sum "$t" streams1000 http_err) + $(sum "$t" streams1000 io_err) + $(sum "$t" streams1000 timeouts)))" "${PEAK[$t]}"
done
echo
echo "agent RSS: idle after its first calls $FIRST_RSS kB, idle after the 64-connection warm-up $IDLE_RSS kB, after the run $AFTER_RSS kB"
echo
cp "$RES" "$BYOK_ROOT/build/bench-agent-results.txt"
echo "raw RESULT lines (one per loadgen run): build/bench-agent-results.txt"
T_FAILED=0
