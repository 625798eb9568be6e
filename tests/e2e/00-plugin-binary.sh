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
echo "1..5"

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
