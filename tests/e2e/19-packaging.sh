#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# What ships for deployment, checked as far as this machine allows:
#   - agent/byok-agent.service passes `systemd-analyze verify` (every directive
#     and value known to this systemd), with ExecStart pointing at the built
#     agent (skipped where systemd-analyze is not installed; make deps
#     installs the systemd package for it), and `systemd-analyze security`
#     rates its exposure at most 2.0;
#   - agent/example-config.json parses (`--check-config`), once its host
#     specifics (listener groups, the Vault CA file, the AppRole credential
#     files, which --check-config requires to exist, 0600) are replaced by ones
#     that exist here;
#   - agent/k8s-daemonset.yaml: its parts agree with each other and with the
#     agent (tests/e2e/check-daemonset.py: config file and sockets in the
#     mounted volumes, the probe on a listener, non-root with no
#     capabilities, the grace period above the drain time, ...), and the
#     agent.json its ConfigMap holds passes --check-config once the CA and
#     service-account token files it names are replaced by ones that exist.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BYOK_BUILD:-$ROOT/build}
AGENT=$BUILD/byok-agent
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
notok() { n=$((n + 1)); echo "not ok $n - $1"; [ $# -gt 1 ] && echo "# $2"; }
skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }
echo "1..5"

if command -v systemd-analyze >/dev/null; then
    sed "s|/usr/local/bin/byok-agent|$AGENT|g" "$ROOT/agent/byok-agent.service" >"$T/byok-agent.service"
    out=$(systemd-analyze verify --man=no "$T/byok-agent.service" 2>&1)
    if [ -z "$out" ]; then ok "systemd unit verifies"; else notok "systemd unit verifies" "$(echo "$out" | tr '\n' ' ')"; fi
else
    skip "systemd unit verifies" "systemd-analyze not installed"
fi

# systemd's own rating of the unit's sandbox (0 = locked down, 10 = none): a
# regression guard, 2.0 at most (1.7 on 2026-11-27).
name="systemd-analyze security: exposure at most 2.0"
if command -v systemd-analyze >/dev/null; then
    out=$(systemd-analyze security --offline=true --no-pager "$T/byok-agent.service" 2>&1)
    level=$(echo "$out" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
    if [ -n "$level" ] && awk -v l="$level" 'BEGIN { exit !(l <= 2.0) }'; then
        ok "$name ($level)"
    else
        notok "$name" "${level:-no level}: $(echo "$out" | grep '✗' | head -n 5 | tr -s ' ' | tr '\n' ';')"
    fi
else
    skip "$name" "systemd-analyze not installed"
fi

(
    umask 077
    printf 'role-id' >"$T/role_id"
    printf 'secret-id' >"$T/secret_id"
)
jq --arg ca /dev/null --arg d "$T" '.listeners |= map(.group = "0") | .vault.ca_file = $ca
    | .vault.approle = {role_id_file: ($d + "/role_id"), secret_id_file: ($d + "/secret_id")}
    | .usage.journal_dir = $d' \
    "$ROOT/agent/example-config.json" >"$T/agent.json"
out=$("$AGENT" --check-config -c "$T/agent.json" 2>&1)
if [ $? = 0 ]; then ok "example config passes --check-config"; else notok "example config passes --check-config" "$out"; fi

if python3 -c 'import yaml' 2>/dev/null; then
    out=$(python3 "$ROOT/tests/e2e/check-daemonset.py" "$ROOT/agent/k8s-daemonset.yaml" "$T/ds.json" 2>&1)
    if [ $? = 0 ]; then ok "DaemonSet manifest: its parts agree"; else notok "DaemonSet manifest: its parts agree" "$(echo "$out" | tr '\n' ';')"; fi
    printf 'header.payload.signature' >"$T/sa-token"
    if [ -s "$T/ds.json" ] && jq --arg ca /dev/null --arg jwt "$T/sa-token" --arg d "$T" \
        '.vault.ca_file = $ca | .vault.kubernetes.jwt_file = $jwt | .usage.journal_dir = $d' \
        "$T/ds.json" >"$T/ds-agent.json"; then
        out=$("$AGENT" --check-config -c "$T/ds-agent.json" 2>&1)
        if [ $? = 0 ]; then ok "DaemonSet's agent.json passes --check-config"; else notok "DaemonSet's agent.json passes --check-config" "$out"; fi
    else
        notok "DaemonSet's agent.json passes --check-config" "the ConfigMap's agent.json could not be read"
    fi
else
    skip "DaemonSet manifest: its parts agree" "python3-yaml not installed"
    skip "DaemonSet's agent.json passes --check-config" "python3-yaml not installed"
fi
