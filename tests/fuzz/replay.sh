#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
# Replays every committed corpus (tests/fuzz/corpus/<target>/) through its
# target, built with ASan/UBSan (build/asan/tests/fuzz/<target>). One TAP line
# per target. A crash or sanitizer report fails that target.
set -u
ROOT=${BYOK_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$ROOT"
n=0
targets=(tests/fuzz/fuzz_*.c)
echo "1..${#targets[@]}"
for src in "${targets[@]}"; do
    [ -e "$src" ] || continue
    t=$(basename "$src" .c)
    n=$((n + 1))
    bin=build/asan/tests/fuzz/$t
    corpus=tests/fuzz/corpus/$t
    if [ ! -x "$bin" ]; then
        echo "not ok $n - $t: $bin not built"
        continue
    fi
    if [ ! -d "$corpus" ]; then
        echo "not ok $n - $t: no corpus at $corpus"
        continue
    fi
    if out=$(ASAN_OPTIONS=detect_leaks=1 timeout 300 "$bin" "$corpus" 2>&1); then
        echo "ok $n - $t ($(echo "$out" | tail -1))"
    else
        echo "not ok $n - $t"
        echo "$out" | tail -30 | sed 's/^/# /'
    fi
done
