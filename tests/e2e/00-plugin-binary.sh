#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
# The plugin is one file an administrator copies to a Vault server that has none
# of the build's libraries: check its dynamic dependencies are glibc only, and
# run it in a chroot that holds nothing but the binary and glibc.
set -u
BUILD=${BYOK_BUILD:-$(cd "$(dirname "$0")/../.." && pwd)/build}
PLUGIN=$BUILD/vault-plugin-secrets-byok
n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
notok() { n=$((n + 1)); echo "not ok $n - $1"; [ $# -gt 1 ] && echo "# $2"; }
skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }
echo "1..9"

if [ ! -x "$PLUGIN" ]; then
    notok "plugin binary exists" "$PLUGIN missing"
    exit 1
fi
ok "plugin binary exists"

deps=$(ldd "$PLUGIN" 2>&1)
if [[ $deps == *libasan* ]]; then
    skip "only glibc is linked dynamically" "sanitizer build links its runtimes dynamically"
    skip "runs in a chroot holding only glibc" "sanitizer build"
else
    extra=$(echo "$deps" | grep -vE 'linux-vdso|libc\.so|libm\.so|ld-linux' || true)
    if [ -z "$extra" ]; then
        ok "only glibc is linked dynamically"
    else
        notok "only glibc is linked dynamically" "$(echo "$extra" | tr '\n' ' ')"
    fi
    root=$(mktemp -d)
    trap 'rm -rf "$root"' EXIT
    mkdir -p "$root/lib64" "$root/lib/x86_64-linux-gnu" "$root/tmp"
    for lib in $(echo "$deps" | grep -oE '/[^ ]+\.so[^ ]*'); do
        cp -L "$lib" "$root$lib" 2>/dev/null || { mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"; }
    done
    cp "$PLUGIN" "$root/plugin"
    out=$(chroot "$root" /plugin --version 2>&1)
    if [[ $out == *"vault-plugin-secrets-byok v"* ]]; then
        ok "runs in a chroot holding only glibc ($out)"
    else
        notok "runs in a chroot holding only glibc" "$out"
    fi
fi

# Started by hand: a clear message on stderr and exit status 1, nothing on stdout.
out=$(env -i "$PLUGIN" 2>/tmp/byok-plugin-hand.$$)
rc=$?
err=$(cat /tmp/byok-plugin-hand.$$)
rm -f /tmp/byok-plugin-hand.$$
if [ "$rc" -eq 1 ] && [ -z "$out" ] && [[ $err == *"not started by Vault"* ]]; then
    ok "started by hand: exit 1 with a clear message"
else
    notok "started by hand: exit 1 with a clear message" "rc=$rc stdout='$out' stderr='$err'"
fi

v=$("$PLUGIN" --version)
if [[ $v =~ ^vault-plugin-secrets-byok\ v[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
    ok "--version prints a semantic version"
else
    notok "--version prints a semantic version" "$v"
fi

# ---- memory locking, as Vault starts the plugin (go-plugin's environment) ----
# plugin_run [ENV=V...] [-- WRAPPER...]: starts the plugin with the handshake
# environment, waits for its handshake line, reads VmLck and VmRSS, stops it.
# Prints "handshake|no-handshake exit=RC locked=yes|no all=yes|no warned=N
# error=MESSAGE" (locked: VmLck of 1 MiB or more; all: VmLck at least 90 % of VmRSS).
T=$(mktemp -d)
trap 'rm -rf "$T" ${root:+"$root"}' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/client.key" \
    -out "$T/client.pem" -days 1 -subj /CN=vault-client >/dev/null 2>&1
plugin_run() {
    local envs=() wrap=() pid rc lck="" rss=""
    while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
    [ "${1:-}" = -- ] && { shift; wrap=("$@"); }
    : >"$T/out"
    : >"$T/err"
    env VAULT_BACKEND_PLUGIN=6669da05-b1c8-4f49-97d9-c8e5bed98e20 PLUGIN_PROTOCOL_VERSIONS=5 \
        PLUGIN_CLIENT_CERT="$(cat "$T/client.pem")" TMPDIR="$T" "${envs[@]}" \
        "${wrap[@]}" "$PLUGIN" >"$T/out" 2>"$T/err" &
    pid=$!
    for _ in $(seq 200); do
        grep -q '^1|5|unix|' "$T/out" && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if grep -q '^1|5|unix|' "$T/out"; then
        lck=$(awk '$1 == "VmLck:" { print $2 }' "/proc/$pid/status")
        rss=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$pid/status")
        kill -TERM "$pid"
    fi
    wait "$pid"
    rc=$?
    echo "$(grep -q '^1|5|unix|' "$T/out" && echo handshake || echo no-handshake) exit=$rc" \
        "locked=$([ "${lck:-0}" -ge 1024 ] && echo yes || echo no)" \
        "all=$([ -n "$lck" ] && [ "$lck" -ge $((rss * 9 / 10)) ] && echo yes || echo no)" \
        "warned=$(grep -c 'secure heap not locked in memory' "$T/err")" \
        "error=$(grep -o '"@level":"error","@message":"[^"]*"' "$T/err" | head -n 1 | sed 's/.*"@message"://')"
}
NOLOCK=(-- setpriv --inh-caps=-ipc_lock --bounding-set=-ipc_lock -- prlimit --memlock=65536 --)

got=$(plugin_run)
if [ "$(id -u)" != 0 ]; then
    skip "memory: the secure heap locked, no warning" "not root"
elif [[ $got == "handshake exit=0 locked=yes "*" warned=0 error=" ]]; then
    ok "memory: the secure heap locked, no warning"
else
    notok "memory: the secure heap locked, no warning" "$got"
fi

if ! command -v setpriv >/dev/null || ! command -v prlimit >/dev/null || [ "$(id -u)" != 0 ]; then
    skip "memory: RLIMIT_MEMLOCK 64 KiB, no CAP_IPC_LOCK: one warning, the heap unlocked, the plugin serves" "needs root, setpriv and prlimit"
    skip "memory: VAULT_PLUGIN_MLOCK_ENABLED=true that cannot lock: exit 1, 'mlockall failed', no handshake" "needs root, setpriv and prlimit"
else
    # (OpenSSL locks its heap with the mlock2 system call, which ASan leaves alone.)
    got=$(plugin_run "${NOLOCK[@]}")
    if [ "$got" = "handshake exit=0 locked=no all=no warned=1 error=" ]; then
        ok "memory: RLIMIT_MEMLOCK 64 KiB, no CAP_IPC_LOCK: one warning, the heap unlocked, the plugin serves"
    else
        notok "memory: RLIMIT_MEMLOCK 64 KiB, no CAP_IPC_LOCK: one warning, the heap unlocked, the plugin serves" "$got"
    fi
    if [[ $deps == *libasan* ]]; then
        skip "memory: VAULT_PLUGIN_MLOCK_ENABLED=true that cannot lock: exit 1, 'mlockall failed', no handshake" "sanitizer build (ASan turns mlockall into a no-op)"
    elif got=$(plugin_run VAULT_PLUGIN_MLOCK_ENABLED=true "${NOLOCK[@]}") &&
        [ "$got" = 'no-handshake exit=1 locked=no all=no warned=0 error="mlockall failed"' ]; then
        ok "memory: VAULT_PLUGIN_MLOCK_ENABLED=true that cannot lock: exit 1, 'mlockall failed', no handshake"
    else
        notok "memory: VAULT_PLUGIN_MLOCK_ENABLED=true that cannot lock: exit 1, 'mlockall failed', no handshake" "$got"
    fi
fi

if [[ $deps == *libasan* ]]; then
    skip "memory: VAULT_PLUGIN_MLOCK_ENABLED=true: all of the plugin's memory locked" "sanitizer build (ASan turns mlockall into a no-op)"
elif [ "$(id -u)" != 0 ]; then
    skip "memory: VAULT_PLUGIN_MLOCK_ENABLED=true: all of the plugin's memory locked" "not root"
else
    got=$(plugin_run VAULT_PLUGIN_MLOCK_ENABLED=true)
    if [ "$got" = "handshake exit=0 locked=yes all=yes warned=0 error=" ]; then
        ok "memory: VAULT_PLUGIN_MLOCK_ENABLED=true: all of the plugin's memory locked"
    else
        notok "memory: VAULT_PLUGIN_MLOCK_ENABLED=true: all of the plugin's memory locked" "$got"
    fi
fi
