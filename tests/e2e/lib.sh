# SPDX-License-Identifier: MPL-2.0
# shellcheck shell=bash
#
# Shared helpers for the end-to-end scenarios (tests/e2e/*.sh), the demo and
# the agent benchmark. Sourced, never run. Everything runs on loopback or Unix
# sockets, under one temporary directory, with bounded waits; an EXIT trap
# stops every process this script started (by pid) and removes the directory
# (kept when KEEP_TMP=1 or a test failed).
#
# Environment:
#   BYOK_ROOT   the repository (default: two levels up from this file)
#   BYOK_BUILD  directory holding vault-plugin-secrets-byok and byok-agent
#               (build or build/asan); vaultsim and mockprovider are always
#               taken from $BYOK_ROOT/build
#   BYOK_VAULT  "sim" (default) or "real": run a real `vault` in dev mode
#               (needs `vault` on PATH)
#
# Output is TAP: t_ok/t_fail/t_check print "ok N - name" / "not ok N - name";
# t_done prints the plan "1..N" at the end.

set -u
set -o pipefail

BYOK_ROOT=${BYOK_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BYOK_BUILD=${BYOK_BUILD:-$BYOK_ROOT/build}
BYOK_VAULT=${BYOK_VAULT:-sim}
VAULTSIM_BIN=$BYOK_ROOT/build/vaultsim
MOCK_BIN=$BYOK_ROOT/build/mockprovider
PLUGIN_BIN=$BYOK_BUILD/vault-plugin-secrets-byok
AGENT_BIN=$BYOK_BUILD/byok-agent
PY=/usr/bin/python3

# Bounded waits (seconds). Nothing in the suite waits forever.
LIB_WAIT_START=${LIB_WAIT_START:-30}
LIB_CURL_MAX=${LIB_CURL_MAX:-30}

T_N=0
T_FAILED=0
LIB_PIDS=()
LIB_TMP=$(mktemp -d "${TMPDIR:-/tmp}/byok-e2e.XXXXXX")
# Other uids (SO_PEERCRED tests) must reach sockets below it.
chmod 0711 "$LIB_TMP"
LIB_RESP_LOG=$LIB_TMP/responses.log # every response header and body, for the canary scan

# ---- TAP ----------------------------------------------------------------------------

t_ok() {
    T_N=$((T_N + 1))
    echo "ok $T_N - $1"
}

# t_fail NAME REASON...
t_fail() {
    T_N=$((T_N + 1))
    T_FAILED=$((T_FAILED + 1))
    echo "not ok $T_N - $1"
    shift
    [ $# -gt 0 ] && echo "#   $*"
    return 0
}

t_skip() {
    T_N=$((T_N + 1))
    echo "ok $T_N - $1 # SKIP $2"
}

t_diag() { echo "# $*"; }

# t_check NAME CMD...: ok when CMD succeeds.
t_check() {
    local name=$1
    shift
    if "$@"; then t_ok "$name"; else t_fail "$name" "command failed: $*"; fi
}

# t_eq NAME GOT WANT
t_eq() {
    if [ "$2" == "$3" ]; then
        t_ok "$1"
    else
        t_fail "$1" "got '$2', want '$3'"
    fi
}

# t_match NAME STRING REGEX
t_match() {
    if [[ $2 =~ $3 ]]; then
        t_ok "$1"
    else
        t_fail "$1" "'${2:0:300}' does not match /$3/"
    fi
}

# t_num_eq NAME GOT WANT [TOLERANCE]: numeric comparison (costs are floats).
t_num_eq() {
    local tol=${4:-1e-9}
    if [ -n "$2" ] && awk -v a="$2" -v b="$3" -v t="$tol" \
        'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a == a + 0 && d <= t) }'; then
        t_ok "$1"
    else
        t_fail "$1" "got '$2', want $3 (tolerance $tol)"
    fi
}

# t_blocked NAME...: the piece a case depends on is missing: report, never pass.
LIB_BLOCKED_REASON=""
t_blocked() {
    local n
    for n in "$@"; do t_fail "$n" "blocked: $LIB_BLOCKED_REASON"; done
}

# t_done: the end of a script. Every case the script names in CASES must have
# been reported (a script that stopped early fails); the plugin under the
# stand-in is stopped and its log checked for sanitizer reports (each fails
# as one more case); then the plan. Returns non-zero when anything failed, so
# a script ending in t_done exits with its result.
t_done() {
    if [ "${CASES+set}" = set ] && [ "$T_N" -ne "${#CASES[@]}" ]; then
        t_fail "every case named in CASES reported" "$T_N reported, ${#CASES[@]} named"
    fi
    lib_vault_stop_check
    echo "1..$T_N"
    if [ "$T_FAILED" -gt 0 ]; then
        echo "# $T_FAILED of $T_N failed; artifacts kept in $LIB_TMP"
    fi
    [ "$T_FAILED" -eq 0 ]
}

# t_block_all: every case named in the script's CASES fails as blocked
# (LIB_BLOCKED_REASON says why), the plan is printed, and the script ends.
t_block_all() {
    t_blocked "${CASES[@]}"
    t_done
    exit 1
}

# ---- process management -------------------------------------------------------------

LIB_MAIN_PID=$BASHPID
lib_cleanup() {
    local p
    # A subshell (command substitution) exiting must not tear the run down.
    [ "$BASHPID" = "$LIB_MAIN_PID" ] || return 0
    for p in "${LIB_PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null
    done
    for p in "${LIB_PIDS[@]}"; do
        local i
        for i in $(seq 50); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    if [ "${KEEP_TMP:-0}" = 1 ] || [ "$T_FAILED" -gt 0 ]; then
        # Failed runs keep their logs; the key files are removed all the same.
        rm -f "$LIB_TMP"/keys.txt
        echo "# artifacts: $LIB_TMP"
    else
        rm -rf "$LIB_TMP"
    fi
}
trap lib_cleanup EXIT
# A run stopped by a signal (the suite's timeout) keeps its artifacts like a failed one.
trap 'T_FAILED=$((T_FAILED + 1)); exit 130' INT TERM

# lib_spawn LOGFILE CMD...: runs CMD in the background, remembers its pid in LIB_LAST_PID.
lib_spawn() {
    local log=$1
    shift
    "$@" >>"$log" 2>&1 &
    LIB_LAST_PID=$!
    LIB_PIDS+=("$LIB_LAST_PID")
}

# lib_stop PID: stops one process we started.
lib_stop() {
    local p=$1 i
    kill -TERM "$p" 2>/dev/null || return 0
    for i in $(seq 50); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
    return 0
}

# lib_wait_for SECONDS CMD...: polls CMD every 50 ms until it succeeds or SECONDS of
# wall time have passed (however long each try takes).
lib_wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    while [ "$SECONDS" -lt "$deadline" ]; do
        "$@" && return 0
        sleep 0.05
    done
    return 1
}

# lib_wait_proc PID SECONDS CMD...: like lib_wait_for, but gives up at once if PID exits.
lib_wait_proc() {
    local pid=$1 deadline=$((SECONDS + $2))
    shift 2
    while [ "$SECONDS" -lt "$deadline" ]; do
        "$@" && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

lib_free_port() {
    $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# lib_require FILE...: sets LIB_BLOCKED_REASON and fails when a binary is missing.
lib_require() {
    local f
    for f in "$@"; do
        if [ ! -x "$f" ]; then
            LIB_BLOCKED_REASON="${f#"$BYOK_ROOT"/} is not built"
            return 1
        fi
    done
    return 0
}

# pki_init: PKI=$LIB_TMP/pki (0700) for mk_ca and mk_cert.
pki_init() {
    PKI=$LIB_TMP/pki
    mkdir -p "$PKI"
    chmod 0700 "$PKI"
}

# mk_ca NAME: a self-signed CA (EC P-256) in $PKI/NAME.pem, its key NAME.key.
mk_ca() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
        -subj "/CN=$1" -keyout "$PKI/$1.key" -out "$PKI/$1.pem" 2>/dev/null
}

# mk_cert CA NAME CN EXT: a certificate signed by CA in $PKI/NAME.pem; key 0600.
mk_cert() {
    (
        umask 077
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$3" \
            -keyout "$PKI/$2.key" -out "$PKI/$2.csr" 2>/dev/null
    )
    printf '%s\n' "$4" >"$PKI/$2.ext"
    openssl x509 -req -in "$PKI/$2.csr" -CA "$PKI/$1.pem" -CAkey "$PKI/$1.key" -CAcreateserial \
        -days 1 -extfile "$PKI/$2.ext" -out "$PKI/$2.pem" 2>/dev/null
}

lib_random_hex() { openssl rand -hex "${1:-16}"; }

# A canary key: unique, valid for every overridden catalog entry (prefix sk-, >= 20 chars).
lib_canary() { echo "sk-canary-$(lib_random_hex 16)"; }

# ---- mock provider ------------------------------------------------------------------

MOCK_DIR=$LIB_TMP/mock
MOCK_CA=$MOCK_DIR/certs/ca.pem
MOCK_RECORD=$MOCK_DIR/requests.jsonl
MOCK_KEYS=$LIB_TMP/keys.txt

# mock_start [EXTRA FLAGS...]: starts the mock; sets MOCK_HTTPS, MOCK_HTTP (ports).
mock_start() {
    mkdir -p "$MOCK_DIR"
    touch "$MOCK_KEYS"
    chmod 600 "$MOCK_KEYS"
    # Benchmarks set MOCK_BENCH=1: no request log (it costs the mock time and memory).
    local rec=(-record "$MOCK_RECORD")
    [ "${MOCK_BENCH:-0}" = 1 ] && rec=(-keep 0)
    lib_spawn "$MOCK_DIR/stderr.log" "$MOCK_BIN" -cert-dir "$MOCK_DIR/certs" \
        -ports-file "$MOCK_DIR/ports.json" -keys-file "$MOCK_KEYS" "${rec[@]}" \
        -log "$MOCK_DIR/mock.log" -slow 2s -stall-max 60s \
        -google-accounts "$MOCK_DIR/google-accounts.json" "$@"
    MOCK_PID=$LIB_LAST_PID
    if ! lib_wait_proc "$MOCK_PID" "$LIB_WAIT_START" test -s "$MOCK_DIR/ports.json"; then
        echo "# mockprovider did not start: $(tail -q -n 3 "$MOCK_DIR/stderr.log" "$MOCK_DIR/mock.log" 2>/dev/null)"
        return 1
    fi
    MOCK_HTTPS=$(jq -r .https "$MOCK_DIR/ports.json")
    MOCK_HTTP=$(jq -r .http "$MOCK_DIR/ports.json")
    MOCK_URL=https://127.0.0.1:$MOCK_HTTPS
}

# mock_accept KEY: the mock accepts KEY from now on.
mock_accept() { echo "$1" >>"$MOCK_KEYS"; }

# mock_ctl METHOD PATH [JSON]: the mock's control API.
mock_ctl() {
    curl -sS -m 10 -X "$1" "http://127.0.0.1:$MOCK_HTTP$2" ${3:+-H 'Content-Type: application/json' -d "$3"}
}

mock_last_seq() { mock_ctl GET /_mock/requests | jq -r .last_seq; }

# mock_requests_since SEQ: JSON array of the requests the mock received after SEQ.
mock_requests_since() { mock_ctl GET "/_mock/requests?since=$1" | jq -c .requests; }

# ---- Vault (the stand-in, or a real dev server) ------------------------------------

VAULT_DIR=$LIB_TMP/vault
ROOT_TOKEN=root-$(lib_random_hex 8)

vault_start() {
    mkdir -p "$VAULT_DIR"
    local port
    # A restart (vault_start again) keeps the port: the agent's config names it.
    port=${VAULT_PORT:-$(lib_free_port)}
    VAULT_PORT=$port
    # VAULT_SCHEME=https: a script that starts the stand-in with its own TLS
    # listener (VAULTSIM_FLAGS -tls-cert/-tls-key; curl trusts CURL_CA_BUNDLE).
    VAULT_ADDR=${VAULT_SCHEME:-http}://127.0.0.1:$port
    export VAULT_ADDR
    if [ "$BYOK_VAULT" = real ]; then
        vault_start_real "$port"
        return
    fi
    rm -f "$VAULT_DIR/ready"
    lib_spawn "$VAULT_DIR/stderr.log" "$VAULTSIM_BIN" -plugin "$PLUGIN_BIN" -listen "127.0.0.1:$port" \
        -mount byok -storage "$VAULT_DIR/storage.json" -root-token "$ROOT_TOKEN" \
        -ready-file "$VAULT_DIR/ready" -log "$VAULT_DIR/vaultsim.log" ${VAULTSIM_FLAGS:-}
    VAULT_PID=$LIB_LAST_PID
    if ! lib_wait_proc "$VAULT_PID" "$LIB_WAIT_START" test -e "$VAULT_DIR/ready"; then
        echo "# vaultsim did not become ready: $(tail -q -n 5 "$VAULT_DIR/stderr.log" "$VAULT_DIR/vaultsim.log" 2>/dev/null)"
        return 1
    fi
    lib_wait_for 10 vault_up
}

vault_up() { curl -s -m 2 -o /dev/null "$VAULT_ADDR/v1/sys/health"; }

# lib_vault_stop_check: stops the stand-in (it shuts the plugin down as Vault
# does, so an ASan plugin runs its leak check) and fails one case if the
# plugin's log, over every start of this run, holds a sanitizer report.
lib_vault_stop_check() {
    [ "$BYOK_VAULT" = sim ] && [ -n "${VAULT_PID:-}" ] || return 0
    local i san
    if kill -0 "$VAULT_PID" 2>/dev/null; then
        kill -CONT "$VAULT_PID" 2>/dev/null
        kill -TERM "$VAULT_PID" 2>/dev/null
        for i in $(seq 200); do
            kill -0 "$VAULT_PID" 2>/dev/null || break
            sleep 0.1
        done
    fi
    san=$(grep -h -m1 -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' \
        "$VAULT_DIR/vaultsim.log" "$VAULT_DIR/stderr.log" 2>/dev/null | head -n 1)
    [ -z "$san" ] || t_fail "plugin under the stand-in: no sanitizer report" "$san (see $VAULT_DIR/vaultsim.log)"
}

# A real Vault in dev mode: the plugin copied to its plugin directory, registered
# by sha256 and enabled at byok/, exactly as an administrator would.
vault_start_real() {
    local port=$1 sum
    mkdir -p "$VAULT_DIR/plugins"
    cp "$PLUGIN_BIN" "$VAULT_DIR/plugins/vault-plugin-secrets-byok"
    lib_spawn "$VAULT_DIR/vault.log" vault server -dev -dev-root-token-id="$ROOT_TOKEN" \
        -dev-listen-address="127.0.0.1:$port" -dev-plugin-dir="$VAULT_DIR/plugins" -dev-no-store-token
    VAULT_PID=$LIB_LAST_PID
    lib_wait_proc "$VAULT_PID" "$LIB_WAIT_START" vault_up || return 1
    sum=$(sha256sum "$VAULT_DIR/plugins/vault-plugin-secrets-byok" | cut -d' ' -f1)
    vault_api PUT sys/plugins/catalog/secret/vault-plugin-secrets-byok \
        "{\"sha256\":\"$sum\",\"command\":\"vault-plugin-secrets-byok\"}" >/dev/null
    [ "$VAULT_CODE" -lt 300 ] || return 1
    vault_api POST sys/mounts/byok '{"type":"vault-plugin-secrets-byok"}' >/dev/null
    [ "$VAULT_CODE" -lt 300 ] || { vault_api GET sys/mounts/byok/tune >/dev/null; [ "$VAULT_CODE" = 200 ]; }
}

# vault_api METHOD PATH [JSON] [TOKEN]: sets VAULT_BODY and VAULT_CODE (never
# call it in $(...): the variables would stay in the subshell).
# Bodies go through stdin so a key value never appears in argv.
# VAULT_NAMESPACE (set by a script whose stand-in runs in a namespace) is sent
# as X-Vault-Namespace on every call.
vault_api() {
    local method=$1 path=$2 body=${3:-} token=${4:-$ROOT_TOKEN} out
    out=$(printf '%s' "$body" | curl -sS -m "$LIB_CURL_MAX" -X "$method" -H "X-Vault-Token: $token" \
        ${VAULT_NAMESPACE:+-H "X-Vault-Namespace: $VAULT_NAMESPACE"} \
        ${body:+-H 'Content-Type: application/json' --data-binary @-} \
        -w '\n%{http_code}' "$VAULT_ADDR/v1/$path")
    VAULT_CODE=${out##*$'\n'}
    VAULT_BODY=${out%$'\n'*}
}

AGENT_POLICY='path "byok/tenants/+/creds/*" { capabilities = ["read"] }
path "byok/tenants/+/usage" { capabilities = ["update"] }
path "byok/tenants/+/budget-lease" { capabilities = ["update"] }
path "byok/tenants/+/rate-lease" { capabilities = ["update"] }
path "auth/token/renew-self" { capabilities = ["update"] }
path "auth/token/lookup-self" { capabilities = ["read"] }'

ADMIN_POLICY='path "byok/*" { capabilities = ["create", "read", "update", "delete", "list"] }'

# vault_setup: policies byok-agent and byok-admin, an admin token, and the
# agent's token in a 0600 file (as Vault Agent's sink would write it).
vault_setup() {
    local p
    p=$(jq -n --arg p "$AGENT_POLICY" '{policy: $p}')
    vault_api PUT sys/policies/acl/byok-agent "$p" >/dev/null
    [ "$VAULT_CODE" -lt 300 ] || { echo "# policy write: $VAULT_CODE"; return 1; }
    p=$(jq -n --arg p "$ADMIN_POLICY" '{policy: $p}')
    vault_api PUT sys/policies/acl/byok-admin "$p" >/dev/null
    [ "$VAULT_CODE" -lt 300 ] || return 1
    vault_api POST auth/token/create '{"policies":["byok-admin"],"ttl":"2h"}'
    [ "$VAULT_CODE" = 200 ] || return 1
    ADMIN_TOKEN=$(echo "$VAULT_BODY" | jq -r .auth.client_token)
    vault_api POST auth/token/create '{"policies":["byok-agent"],"ttl":"2h","renewable":true}'
    [ "$VAULT_CODE" = 200 ] || return 1
    local out=$VAULT_BODY
    AGENT_TOKEN_FILE=$LIB_TMP/agent-token
    (
        umask 077
        echo "$out" | jq -r -j .auth.client_token >"$AGENT_TOKEN_FILE"
    )
    [ -s "$AGENT_TOKEN_FILE" ]
}

# Catalog prices per 1M tokens, chosen so that each provider has its own
# and a swapped catalog or a swapped input/output price shows in the cost.
declare -A PRICE_IN=([openai]=1000 [azure]=3000 [anthropic]=5000)
declare -A PRICE_OUT=([openai]=2000 [azure]=4000 [anthropic]=7000)
MOCK_MODELS=(mock-normal mock-slow mock-slowstream mock-429 mock-500 mock-502 mock-503 mock-529
    mock-401 mock-stall mock-stallbody mock-cut mock-malformed mock-oversized mock-nousage
    mock-302 mock-streamerror mock-htmlusage mock-bursterror mock-crstream mock-stallmid
    mock-streamerrortext mock-streamerrorevent mock-concatjson mock-filtererror mock-bigevent
    mock-hugeline mock-badevent mock-bigframe mock-donecut mock-donetail mock-gzip mock-streamnoise)
CHAT_MODEL=gpt-4o-mini
declare -A PROVIDER_MODEL=([openai]=gpt-4o-mini [azure]=gpt-4o-mini [anthropic]=claude-3-5-haiku)

# provider_entry NAME STYLE BASE_URL: a catalog entry whose models all cost PRICE_IN/PRICE_OUT.
provider_entry() {
    local name=$1 style=$2 url=$3 models
    models=$(printf '%s\n' "${PROVIDER_MODEL[$name]}" "${MOCK_MODELS[@]}" text-embedding-3-small |
        jq -R . | jq -s --argjson pi "${PRICE_IN[$name]}" --argjson po "${PRICE_OUT[$name]}" \
            'map({name: ., context_window: 128000, max_output_tokens: 100000,
                  capabilities: (if test("embedding") then ["embedding"]
                                 else ["chat","streaming","json","tools","code"] end),
                  tier: "LOW", input_per_1m: $pi, output_per_1m: $po})')
    jq -n --arg name "$name" --arg style "$style" --arg url "$url" --argjson models "$models" \
        --arg dm "${PROVIDER_MODEL[$name]}" \
        '{display_name: ("Mock " + $name), api_style: $style, base_url: $url, local: false,
          regions: ["us", "eu", "global"], key_prefixes: ["sk-"], key_min_length: 20,
          default_model: $dm, models: $models}'
}

# providers_point_at_mock: override openai, azure and anthropic to reach the mock.
# The base URL keeps the path of the built-in entry (only scheme and host are
# replaced), so the agent builds its URLs exactly as it would for the real
# provider and the mock sees the real paths.
providers_point_at_mock() {
    local p style url
    for p in openai azure anthropic; do
        style=$p
        vault_api GET "byok/providers/$p" "" "$ADMIN_TOKEN"
        url=$(echo "$VAULT_BODY" | jq -r '.data.base_url // empty' 2>/dev/null)
        if [ "$VAULT_CODE" != 200 ] || [ -z "$url" ]; then
            echo "# built-in provider $p: HTTP $VAULT_CODE"
            return 1
        fi
        url=$MOCK_URL$(echo "$url" | sed -E 's#^https?://[^/]*##')
        vault_api PUT "byok/providers/$p" "$(provider_entry $p $style "$url")" "$ADMIN_TOKEN" >/dev/null
        if [ "$VAULT_CODE" -ge 300 ]; then
            echo "# provider override $p: HTTP $VAULT_CODE"
            return 1
        fi
    done
}

# local_vllm_at_mock: points the catalog's vllm (a "local" provider: plain http,
# never through upstream.proxy) at the mock's HTTP port. Returns 1 on failure.
local_vllm_at_mock() {
    PROVIDER_MODEL[vllm]=gpt-4o-mini
    PRICE_IN[vllm]=1000
    PRICE_OUT[vllm]=2000
    vault_api PUT byok/providers/vllm \
        "$(provider_entry vllm openai "http://127.0.0.1:$MOCK_HTTP/v1" | jq '.local = true | .key_prefixes = []')" \
        "$ADMIN_TOKEN" >/dev/null
    [ "$VAULT_CODE" -lt 300 ]
}

# key_put TENANT PROVIDER KEY [KEY_TYPE]: stores a key (Azure keys get their
# deployment map and api_version as metadata) and tells the mock to accept it.
key_put() {
    local t=$1 p=$2 k=$3 kt=${4:-production} body
    # The key reaches jq through the environment, not argv.
    body=$(K=$k jq -n '{key_value: env.K, name: "e2e"}')
    if [ "$p" = azure ]; then
        # A model missing from the map is its own deployment (mock-*: the mock's scenario); the
        # map holds the others only, as it must fit one metadata value (1024 bytes).
        local deps
        deps=$(printf '%s\n' "${PROVIDER_MODEL[azure]}" text-embedding-3-small |
            jq -R . | jq -rs 'map({key: ., value: ("dep-" + .)}) | from_entries | tojson')
        body=$(echo "$body" | jq --arg d "$deps" '.metadata = {api_version: "2024-10-21", deployment: $d}')
    fi
    mock_accept "$k"
    vault_api PUT "byok/tenants/$t/keys/$p/$kt" "$body" "$ADMIN_TOKEN" >/dev/null
    [ "$VAULT_CODE" -lt 300 ] || { echo "# key write $t/$p: HTTP $VAULT_CODE"; return 1; }
}

# usage_ledger TENANT JQ_FILTER: the filter applied to the tenant's month-to-date
# usage ledger (the plugin's `data`), compact; empty when the read fails.
usage_ledger() {
    vault_api GET "byok/tenants/$1/usage" "" "$ADMIN_TOKEN"
    echo "$VAULT_BODY" | jq -c ".data | $2" 2>/dev/null
}

# canary_keys TENANT PROVIDER...: a fresh canary key per provider, stored for
# TENANT; KEY[provider] holds each. 1 when a key write fails.
canary_keys() {
    local t=$1 p
    shift
    declare -gA KEY
    for p in "$@"; do
        KEY[$p]=$(lib_canary)
        key_put "$t" "$p" "${KEY[$p]}" || return 1
    done
}

# lib_up_tls [STAND_IN_FLAG...]: lib_up with the stand-in listening with TLS
# itself (40-vault-cert-auth.sh, 45-vault-cert-trouble.sh): a CA server-ca
# and its certificate "server" for 127.0.0.1 in $PKI (pki_init first),
# vault_api's curl trusting that CA, the extra flags given to the stand-in
# (e.g. -tls-client-ca FILE), and Vault's cert auth method enabled at
# auth/cert. Returns 1 with LIB_BLOCKED_REASON.
lib_up_tls() {
    if ! mk_ca server-ca || ! mk_cert server-ca server vault "subjectAltName=IP:127.0.0.1
extendedKeyUsage=serverAuth"; then
        LIB_BLOCKED_REASON="openssl could not make the test certificates"
        return 1
    fi
    export CURL_CA_BUNDLE=$PKI/server-ca.pem
    VAULT_SCHEME=https
    VAULTSIM_FLAGS="-tls-cert $PKI/server.pem -tls-key $PKI/server.key${1:+ $*}"
    lib_up || return 1
    vault_api POST sys/auth/cert '{"type":"cert"}'
    [ "$VAULT_CODE" -lt 300 ] || {
        LIB_BLOCKED_REASON="enabling cert auth failed (HTTP $VAULT_CODE)"
        return 1
    }
}

# ---- the agent ------------------------------------------------------------------------

AGENT_DIR=$LIB_TMP/agent
AGENT_CONFIG=$AGENT_DIR/agent.json
AGENT_LOG=$AGENT_DIR/agent.log

# agent_config LISTENERS_JSON [JQ_FILTER]: writes the agent config; the filter adjusts it.
agent_config() {
    mkdir -p "$AGENT_DIR"
    chmod 0711 "$AGENT_DIR"
    jq -n --argjson l "$1" --arg va "$VAULT_ADDR" --arg tf "$AGENT_TOKEN_FILE" --arg ca "$MOCK_CA" \
        '{listeners: $l,
          vault: {address: $va, mount: "byok", token_file: $tf, timeout_ms: 5000},
          upstream: {ca_file: $ca, connect_timeout_ms: 2000, first_byte_timeout_ms: 5000,
                     idle_timeout_ms: 5000, total_timeout_ms: 30000,
                     max_response_bytes: 8388608},
          limits: {max_body_bytes: 1048576, max_header_bytes: 65536, max_connections: 4096,
                   client_timeout_s: 3},
          keycache: {max_ttl_s: 300},
          usage: {report_interval_s: 1, node_id: "e2e"},
          providers: ["openai", "azure", "anthropic"],
          log_level: "debug"}' | jq "${2:-.}" >"$AGENT_CONFIG"
}

# agent_start: runs the agent on AGENT_CONFIG and waits for every listener socket.
agent_start() {
    # The agent runs in its own directory so any file it writes (journal,
    # state) is inside the run's directory and covered by the canary scan.
    lib_spawn "$AGENT_LOG" bash -c 'cd "$1" && exec "$2" "$3" "$4"' agent "$AGENT_DIR" "$AGENT_BIN" \
        ${AGENT_CONFIG_FLAG:--c} "$AGENT_CONFIG"
    AGENT_PID=$LIB_LAST_PID
    local s
    for s in $(jq -r '.listeners[].path' "$AGENT_CONFIG"); do
        if ! lib_wait_proc "$AGENT_PID" "$LIB_WAIT_START" test -S "$s"; then
            echo "# agent socket $s did not appear: $(tail -n 5 "$AGENT_LOG")"
            LIB_BLOCKED_REASON="byok-agent did not start (see $AGENT_LOG)"
            return 1
        fi
    done
    kill -0 "$AGENT_PID" 2>/dev/null || {
        LIB_BLOCKED_REASON="byok-agent did not start (see $AGENT_LOG)"
        return 1
    }
}

# agent_stop_check NAME: SIGTERM, then the agent must exit 0 within its drain
# time, with no sanitizer report (ASan/UBSan/LeakSanitizer) in its log.
agent_stop_check() {
    local name=$1 rc i
    kill -TERM "$AGENT_PID" 2>/dev/null
    for i in $(seq 400); do
        kill -0 "$AGENT_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$AGENT_PID" 2>/dev/null; then
        t_fail "$name" "still running 40 s after SIGTERM"
        kill -KILL "$AGENT_PID" 2>/dev/null
        return
    fi
    wait "$AGENT_PID"
    rc=$?
    local san
    san=$(grep -m1 -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$AGENT_LOG")
    if [ "$rc" = 0 ] && [ -z "$san" ]; then t_ok "$name"; else
        t_fail "$name" "exit status $rc${san:+; $san}"
    fi
}

# agent_core_check PREFIX MEMORY_NEEDLE KEY...: dumps the running agent with gcore
# and reports three cases, "PREFIX: taken", "PREFIX: holds agent memory" (the
# core holds MEMORY_NEEDLE, e.g. a listener path from the config, so it really
# is the agent's memory) and "PREFIX: no key" (none of the KEYs is in it).
# Skipped under ASan, whose terabytes of shadow memory make gcore neither
# quick nor meaningful.
agent_core_check() {
    local prefix=$1 needle=$2 core=$LIB_TMP/agent-core k hits=""
    shift 2
    # (no "| grep -q" under pipefail: ldd would die of SIGPIPE and the test read false)
    if [[ $(ldd "$AGENT_BIN" 2>/dev/null) == *libasan* ]]; then
        for k in taken "holds agent memory" "no key"; do
            t_skip "$prefix: $k" "ASan build (the normal build runs it)"
        done
        return
    fi
    # A core is bounded to 2 GiB (ulimit -f, in KiB) so a runaway mapping cannot fill the disk.
    if ! (ulimit -f 2097152 && timeout 120 gcore -o "$core" "$AGENT_PID") >"$LIB_TMP/gcore.log" 2>&1 ||
        [ ! -s "$core.$AGENT_PID" ]; then
        t_fail "$prefix: taken" "$(tail -n 3 "$LIB_TMP/gcore.log")"
        t_fail "$prefix: holds agent memory" "no core"
        t_fail "$prefix: no key" "no core"
        return
    fi
    t_ok "$prefix: taken"
    # The memory only, not the notes: see core-memory.py (a key in the thread
    # registers' saved vector state is reported, not failed).
    if ! "$PY" "$(dirname "${BASH_SOURCE[0]}")/core-memory.py" "$core.$AGENT_PID" "$core.mem"; then
        t_fail "$prefix: holds agent memory" "cannot read the core's segments"
        t_fail "$prefix: no key" "cannot read the core's segments"
        rm -f "$core.$AGENT_PID" "$core.mem"
        return
    fi
    for k in "$@"; do
        grep -qaF "$k" "$core.$AGENT_PID" && ! grep -qaF "$k" "$core.mem" &&
            t_diag "$prefix: ${k:0:13}... is in the core's notes (saved registers), not in memory"
    done
    mv "$core.mem" "$core.$AGENT_PID"
    if grep -qaF "$needle" "$core.$AGENT_PID"; then t_ok "$prefix: holds agent memory"; else
        t_fail "$prefix: holds agent memory" "$needle not found in the core"
    fi
    for k in "$@"; do
        # What precedes a hit says which copy it is (e.g. "Authorization: Bearer "): 24
        # bytes before it, printable ASCII only, runs of 16+ key characters masked
        # (another key could precede it); never the key itself.
        grep -qaF "$k" "$core.$AGENT_PID" && hits+="${k:0:13}... after '$(grep -aoF -b "$k" "$core.$AGENT_PID" |
            head -n 3 | cut -d: -f1 | while read -r off; do
                dd if="$core.$AGENT_PID" bs=1 skip=$((off > 24 ? off - 24 : 0)) count=$((off > 24 ? 24 : off)) 2>/dev/null |
                    tr -c '[:print:]' '.' | sed -E 's/[A-Za-z0-9_-]{16,}/<masked>/g'
                printf ' | '
            done)' "
    done
    if [ -z "$hits" ]; then t_ok "$prefix: no key"; else t_fail "$prefix: no key" "found: $hits"; fi
    rm -f "$core.$AGENT_PID"
}

# call SOCKET METHOD PATH [BODY] [CURL ARGS...]: one request to the agent.
# Sets CODE, BODY, HDRS (raw header block); logs both for the canary scan.
call() {
    local sock=$1 method=$2 path=$3 body=${4:-} out
    shift 4 2>/dev/null || shift $#
    out=$(printf '%s' "$body" | curl -sS -m "$LIB_CURL_MAX" --unix-socket "$sock" -X "$method" \
        ${body:+-H 'Content-Type: application/json' --data-binary @-} -D "$LIB_TMP/last.hdrs" \
        -o "$LIB_TMP/last.body" -w '%{http_code}' "$@" "http://localhost$path" 2>"$LIB_TMP/last.err")
    CODE=$out
    BODY=$(cat "$LIB_TMP/last.body" 2>/dev/null)
    HDRS=$(tr -d '\r' <"$LIB_TMP/last.hdrs" 2>/dev/null)
    {
        echo "=== $method $path -> $CODE"
        echo "$HDRS"
        echo "$BODY"
        cat "$LIB_TMP/last.err"
    } >>"$LIB_RESP_LOG"
}

# call_as UID[:GID] SOCKET METHOD PATH [BODY] [CURL ARGS...]: call, as another
# uid and gid (the gid defaults to the uid; setpriv, no supplementary groups) so
# the agent sees them in SO_PEERCRED. The output comes back through a pipe: the
# other uid writes no file.
call_as() {
    local uid=${1%%:*} gid=${1#*:} sock=$2 method=$3 path=$4 body=${5:-} out
    shift 5 2>/dev/null || shift $#
    out=$(printf '%s' "$body" | setpriv --reuid="$uid" --regid="$gid" --clear-groups -- \
        curl -sS -m "$LIB_CURL_MAX" --unix-socket "$sock" -X "$method" \
        ${body:+-H 'Content-Type: application/json' --data-binary @-} -i -w '\n%{http_code}' \
        "$@" "http://localhost$path" 2>&1)
    CODE=${out##*$'\n'}
    out=${out%$'\n'*}
    out=$(printf '%s' "$out" | tr -d '\r')
    HDRS=${out%%$'\n\n'*}
    BODY=${out#*$'\n\n'}
    {
        echo "=== uid $uid gid $gid $method $path -> $CODE"
        echo "$out"
    } >>"$LIB_RESP_LOG"
}

# hdr NAME: a response header of the last call (case-insensitive), trimmed.
hdr() { echo "$HDRS" | awk -v n="$(echo "$1" | tr 'A-Z' 'a-z')" -F': ' 'tolower($1) == n { sub(/^[^:]*: /, ""); print; exit }'; }

# chat_body MODEL [STREAM] [MAX_TOKENS] [TEXT]
chat_body() {
    jq -cn --arg m "$1" --argjson s "${2:-false}" --argjson n "${3:-5}" --arg t "${4:-one two three four}" \
        '{model: $m, stream: $s, max_tokens: $n, messages: [{role: "user", content: $t}]}
         + (if $s then {stream_options: {include_usage: true}} else {} end)'
}

# words N: the mock's reply text for N completion tokens.
words() { local i s=""; for ((i = 0; i < $1; i++)); do s+="${s:+ }w$i"; done; echo "$s"; }

# sse_content: concatenated delta contents of an OpenAI-shaped SSE body on stdin.
sse_content() { sed -n 's/^data: //p' | grep -v '^\[DONE\]$' | jq -rj '.choices[0].delta.content // empty' 2>/dev/null; }

# cost_of PROVIDER PROMPT COMPLETION: tokens x catalog price.
cost_of() { awk -v p="$2" -v c="$3" -v pi="${PRICE_IN[$1]}" -v po="${PRICE_OUT[$1]}" 'BEGIN { printf "%.10f", (p * pi + c * po) / 1e6 }'; }

# unit_workload SOCKET METRICS_SOCKET: the calls 21-unit-sandbox.sh and
# 25-systemd-unit.sh make through an agent run as its unit runs it (tenant
# acme, canary keys KEY[openai] and KEY[anthropic]): a chat checked to carry
# the tenant's key upstream, an OpenAI and an Anthropic stream, embeddings,
# models, metrics. Prints one line of what came back, to match against
# unit_workload_want.
unit_workload() {
    local sock=$1 msock=$2 out="" since got
    since=$(mock_last_seq)
    call "$sock" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini false 3 "unit")"
    got=$(mock_requests_since "$since" | jq -r '.[0].headers.Authorization[0] // "" | sub("^Bearer "; "")')
    out+="chat $CODE $([ "$got" == "${KEY[openai]}" ] && echo key-ok || echo key-wrong)"
    call "$sock" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini true 4)"
    out+=" | stream $CODE $(echo "$BODY" | sse_content)"
    call "$sock" POST /v1/chat/completions "$(chat_body anthropic/claude-3-5-haiku true 2)"
    out+=" | anthropic $CODE $(echo "$BODY" | sse_content)"
    call "$sock" POST /v1/embeddings '{"model": "openai/text-embedding-3-small", "input": "unit"}'
    out+=" | embeddings $CODE"
    call "$sock" GET /v1/models
    out+=" | models $CODE"
    call "$msock" GET /metrics
    out+=" | metrics $CODE $(echo "$BODY" | grep -c '^byok_requests_total')"
    echo "$out"
}

# unit_workload_want: the regular expression (unanchored) unit_workload's line must match.
unit_workload_want() {
    echo "chat 200 key-ok \\| stream 200 $(words 4) \\| anthropic 200 $(words 2) \\| embeddings 200 \\| models 200 \\| metrics 200 [1-9][0-9]*"
}

# ---- the canary scan --------------------------------------------------------------------

# canary_needles FORM CANARY...: the strings that betray each canary, one a line
# (FORM: all, or one of key b64 b64url hex window). b64/b64url: the key's base64
# at the three byte shifts it can have inside any longer base64 text, without
# the last quantum (it depends on what follows; as canaryNeedles in
# tests/vaultsim/keys_test.go); hex: the key's bytes in lower and upper case hex;
# window: every 16 characters of the random part (after the last '-': what
# lib_canary draws), so a long prefix or any slice of the key is found too.
# Keys go through pipes only, never argv.
canary_needles() {
    local form=$1 k s b
    shift
    for k in "$@"; do
        case $form in all | key) printf '%s\n' "$k" ;; esac
        for s in 0 1 2; do
            b=$(printf '%s' "${k:s}" | base64 -w0)
            [ "${#b}" -gt 8 ] || continue
            case $form in all | b64) printf '%s\n' "${b:0:${#b}-4}" ;; esac
            b=$(printf '%s' "${b%%=*}" | tr '+/' '-_')
            case $form in all | b64url) printf '%s\n' "${b:0:${#b}-4}" ;; esac
        done
        case $form in all | hex)
            b=$(printf '%s' "$k" | od -An -v -tx1 | tr -d ' \n')
            printf '%s\n%s\n' "$b" "$(printf '%s' "$b" | tr a-f A-F)"
            ;;
        esac
        case $form in all | window)
            printf '%s\n' "${k##*-}" | awk '{ for (i = 1; i + 15 <= length($0); i++) print substr($0, i, 16) }'
            ;;
        esac
    done
}

# canary_scan NAME CANARY...: no canary (in any form canary_needles lists)
# anywhere in the run's artifacts except the mock's request record and the
# mock's key list (the two places a key must be). The needles go to grep
# through a pipe: no file holds them.
canary_scan() {
    local name=$1 hits form forms=""
    shift
    hits=$(grep -rlaF -f <(canary_needles all "$@") -- "$LIB_TMP" 2>/dev/null |
        grep -vxF -e "$MOCK_RECORD" -e "$MOCK_KEYS" | tr '\n' ' ')
    if [ -n "$hits" ]; then
        # Which forms, by name only: the failure message never holds key material.
        for form in key b64 b64url hex window; do
            # shellcheck disable=SC2086 # $hits: the file list, split on spaces
            grep -qaF -f <(canary_needles "$form" "$@") -- $hits 2>/dev/null && forms+="$form "
        done
        t_fail "$name" "canary ($forms) found in: $hits"
    else
        t_ok "$name"
    fi
}

# lib_up: mock + Vault + policies + catalog overrides; returns 1 (with
# LIB_BLOCKED_REASON) when a piece is missing or does not start.
lib_up() {
    lib_require "$MOCK_BIN" "$VAULTSIM_BIN" "$PLUGIN_BIN" || return 1
    if [ "$BYOK_VAULT" = real ] && ! command -v vault >/dev/null; then
        LIB_BLOCKED_REASON="BYOK_VAULT=real but no vault binary on PATH"
        return 1
    fi
    mock_start || { LIB_BLOCKED_REASON="mockprovider did not start"; return 1; }
    vault_start || { LIB_BLOCKED_REASON="Vault ($BYOK_VAULT) with the plugin did not start"; return 1; }
    vault_setup || { LIB_BLOCKED_REASON="Vault policies/tokens could not be created (HTTP $VAULT_CODE)"; return 1; }
    providers_point_at_mock || { LIB_BLOCKED_REASON="provider catalog override failed (HTTP $VAULT_CODE)"; return 1; }
}
