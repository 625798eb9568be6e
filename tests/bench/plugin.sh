#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
# Plugin benchmark under the Vault stand-in's host code (go-plugin, AutoMTLS,
# broker storage), in one run: exec -> handshake median, Health/Check floor,
# HandleRequest read of config, idle RSS, a tenant key write and a creds read,
# then 10,000 tenants x 3 keys written by 8 clients and one config/rotate-root
# (BENCH_TENANTS=N for another count, 0 to skip).
# Prints a table and a JSON summary (also in build/bench/plugin.json).
#
#   tests/bench/plugin.sh                     default cases
#   tests/bench/plugin.sh -d 5s -clients 16   longer runs, more clients
#   tests/bench/plugin.sh -spec 'read:tenants/t1/settings'   extra cases
#   BYOK_PLUGIN=build/asan/vault-plugin-secrets-byok tests/bench/plugin.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
if [ -n "${BYOK_PLUGIN:-}" ]; then
    make --no-print-directory build/vaultbench >/dev/null
    PLUGIN=$BYOK_PLUGIN
else
    make --no-print-directory plugin build/vaultbench >/dev/null
    PLUGIN=$ROOT/build/vault-plugin-secrets-byok
fi
mkdir -p build/bench
# A fake key in OpenAI's documented shape; never a real one.
KEY="sk-bench$(printf 'x%.0s' $(seq 1 48))"
exec "$ROOT/build/vaultbench" -plugin "$PLUGIN" -json build/bench/plugin.json \
    -setup "update:tenants/t1/keys/openai/production:{\"key_value\":\"$KEY\"}" \
    -spec "read:tenants/t1/creds/openai" \
    -spec "update:tenants/t2/keys/openai/production:{\"key_value\":\"$KEY\"}" \
    -bulk "${BENCH_TENANTS:-10000}" \
    "$@"
