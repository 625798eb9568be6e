#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# The same scenarios against a real Vault: when a `vault` binary is on PATH,
# the other scenarios (01..05, 07..) run again with BYOK_VAULT=real (Vault in dev mode, the
# plugin copied to its plugin directory, registered by sha256 and enabled at
# byok/, as an administrator would). Their TAP lines are renumbered here, each
# prefixed with "real vault:". Without a vault binary this is one SKIP.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
if ! command -v vault >/dev/null 2>&1; then
    echo "ok 1 - real Vault # SKIP no vault binary on PATH (the stand-in ran every scenario)"
    echo "1..1"
    exit 0
fi
n=0
failed=0
for t in "$HERE"/[0-9]*.sh; do
    case $(basename "$t") in 00-* | 06-*) continue ;; esac
    [ -x "$t" ] || continue
    name=$(basename "$t" .sh)
    while IFS= read -r line; do
        if [[ $line =~ ^(not ok|ok)\ [0-9]+\ -\ (.*)$ ]]; then
            n=$((n + 1))
            [ "${BASH_REMATCH[1]}" = "not ok" ] && failed=$((failed + 1))
            echo "${BASH_REMATCH[1]} $n - real vault: $name: ${BASH_REMATCH[2]}"
        elif [[ $line == \#* ]]; then
            echo "$line"
        fi
    done < <(BYOK_VAULT=real timeout 900 "$t" 2>&1)
done
echo "1..$n"
[ "$failed" -eq 0 ]
