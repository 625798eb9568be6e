#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
# In-process benchmarks of the keys engine (no transport): envelope seal+open
# per key size, and 10,000 tenants x 3 keys created, read and KEK-rotated
# through fw_handle on in-memory storage. Prints figures; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BYOK_BUILD:-$(pwd)/build}
make --no-print-directory O="${BUILD#"$(pwd)"/}" "${BUILD#"$(pwd)"/}/tests/bench/bench_envelope" \
    "${BUILD#"$(pwd)"/}/tests/bench/bench_keystore" >/dev/null
"$BUILD/tests/bench/bench_envelope"
"$BUILD/tests/bench/bench_keystore" "${TENANTS:-10000}" "${KEYS:-3}"
