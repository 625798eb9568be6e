#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
# What `make bench` runs: every tests/bench/*.sh benchmark but this one and
# keywrite-segments.sh (a perf diagnosis, not a benchmark), in turn. Figures
# are printed for a person (and copied to README.md by hand); nothing is
# asserted.
set -u
cd "$(dirname "$0")/../.."
rc=0
for b in tests/bench/*.sh; do
    case $b in
    tests/bench/run.sh | tests/bench/keywrite-segments.sh) continue ;; # this one; a diagnosis tool
    esac
    [ -x "$b" ] || continue
    echo "== $b"
    BYOK_ROOT=$(pwd) BYOK_BUILD=${BYOK_BUILD:-$(pwd)/build} "$b" || rc=1
done
exit $rc
