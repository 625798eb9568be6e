#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
# Runs the whole suite (what `make check` runs after building) and ends with
# one line "N passed, N failed, N skipped". Every suite speaks TAP or `go test -v`;
# each test case counts once. Logs go to build/test-logs/. Exit status 1 on any failure.
#
# Suites, in order:
#   lint      `make lint` (clang-tidy with .clang-tidy): one case, passes with no findings;
#             skipped, and said so, when clang-tidy is not installed
#   unit      tests/unit/test_* (cmocka, TAP output), normal build then ASan/UBSan build
#   vaultsim  Go tests of the plugin under the Vault stand-in, normal then ASan plugin
#   e2e       tests/e2e/*.sh (TAP), normal build then ASan build (BYOK_BUILD selects)
#   fuzz      tests/fuzz corpora replayed through the fuzz targets
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
LOGS=$ROOT/build/test-logs
mkdir -p "$LOGS"
pass=0
fail=0
skip=0
failed_names=()
skipped_names=()

# count_tap NAME LOGFILE: adds the TAP results in LOGFILE to the totals. A
# missing plan, plans that do not add up to the cases reported (a suite that
# stopped early) or a "Bail out!" counts as one more failure.
count_tap() {
    local name=$1 log=$2 p f s plan
    p=$(grep -Ec '^ok [0-9]+' "$log" | head -1)
    s=$(grep -Ec '^ok [0-9]+.*# *(SKIP|skip)' "$log" | head -1)
    f=$(grep -Ec '^not ok [0-9]+' "$log" | head -1)
    # A binary may run several cmocka groups, each with its own plan: they add up.
    plan=$(grep -E '^1\.\.[0-9]+$' "$log" | cut -d. -f3 | awk '{ n += $1 } END { if (NR) print n }')
    local lines=$((p + f))
    p=$((p - s))
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
    while IFS= read -r l; do failed_names+=("$name: $l"); done < <(grep -E '^not ok [0-9]+' "$log")
    while IFS= read -r l; do skipped_names+=("$name: $l"); done < <(grep -E '^ok [0-9]+.*# *(SKIP|skip)' "$log")
    printf '  %-44s %4d passed %3d failed %3d skipped\n' "$name" "$p" "$f" "$s"
    local why=""
    if grep -q '^Bail out!' "$log"; then
        why="bailed out"
    elif [ -z "$plan" ]; then
        why="no TAP plan"
    elif [ "$plan" -ne "$lines" ]; then
        why="plan 1..$plan but $lines cases reported"
    fi
    if [ -n "$why" ]; then
        fail=$((fail + 1))
        failed_names+=("$name: $why (see $log)")
        printf '  %-44s %s\n' "$name" "$why"
    fi
}

# missing NAME WHAT: a suite that should exist and does not counts as a failure.
missing() {
    fail=$((fail + 1))
    failed_names+=("$1: $2")
    printf '  %-44s %s\n' "$1" "$2"
}

# count_go NAME LOGFILE
count_go() {
    local name=$1 log=$2 p f s
    p=$(grep -Ec '^\s*--- PASS' "$log")
    f=$(grep -Ec '^\s*--- FAIL' "$log")
    s=$(grep -Ec '^\s*--- SKIP' "$log")
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
    while IFS= read -r l; do failed_names+=("$name: $l"); done < <(grep -E '^\s*--- FAIL' "$log")
    printf '  %-44s %4d passed %3d failed %3d skipped\n' "$name" "$p" "$f" "$s"
}

# A suite that crashes or times out without reporting a failure still fails once.
suite_status() {
    local name=$1 rc=$2 log=$3
    if [ "$rc" -ne 0 ] && ! grep -qE '^not ok|--- FAIL' "$log"; then
        fail=$((fail + 1))
        failed_names+=("$name: exited with status $rc (see $log)")
        printf '  %-44s exited with status %d\n' "$name" "$rc"
    fi
}

run_unit() {
    local variant=$1 dir=$2 src
    # Every test source has its binary: a missing one (a build that failed) fails.
    for src in tests/unit/test_*.c; do
        [ -x "$dir/tests/unit/$(basename "$src" .c)" ] ||
            missing "unit/$variant/$(basename "$src" .c)" "not built in $dir"
    done
    for t in "$dir"/tests/unit/test_*; do
        [ -x "$t" ] || continue
        local n log
        n="unit/$variant/$(basename "$t")"
        log="$LOGS/$(echo "$n" | tr / _).log"
        CMOCKA_MESSAGE_OUTPUT=TAP ASAN_OPTIONS=detect_leaks=1 timeout 300 "$t" >"$log" 2>&1
        local rc=$?
        count_tap "$n" "$log"
        suite_status "$n" "$rc" "$log"
    done
}

GOENV=(env GO111MODULE=off "GOPATH=$ROOT/build/go:/usr/share/gocode" "GOCACHE=$ROOT/build/go-cache")

run_vaultsim() {
    local variant=$1 plugin=$2 n log
    n="vaultsim/$variant"
    log="$LOGS/vaultsim_$variant.log"
    [ -d tests/vaultsim ] && ls tests/vaultsim/*_test.go >/dev/null 2>&1 || return 0
    BYOK_PLUGIN="$ROOT/$plugin" BYOK_ROOT="$ROOT" timeout 900 "${GOENV[@]}" \
        go test -count=1 -v -timeout 850s byok/vaultsim >"$log" 2>&1
    local rc=$?
    count_go "$n" "$log"
    suite_status "$n" "$rc" "$log"
}

run_e2e() {
    local variant=$1 build=$2
    for t in tests/e2e/[0-9]*.sh; do
        local n log
        if [ ! -x "$t" ]; then
            missing "e2e/$variant/$(basename "$t" .sh)" "not executable"
            continue
        fi
        n="e2e/$variant/$(basename "$t" .sh)"
        log="$LOGS/$(echo "$n" | tr / _).log"
        BYOK_ROOT="$ROOT" BYOK_BUILD="$ROOT/$build" timeout 900 "$t" >"$log" 2>&1
        local rc=$?
        count_tap "$n" "$log"
        suite_status "$n" "$rc" "$log"
    done
}

run_fuzz() {
    [ -x tests/fuzz/replay.sh ] || return 0
    local log="$LOGS/fuzz_replay.log"
    BYOK_ROOT="$ROOT" timeout 600 tests/fuzz/replay.sh >"$log" 2>&1
    local rc=$?
    count_tap "fuzz/replay" "$log"
    suite_status "fuzz/replay" "$rc" "$log"
}

run_lint() {
    local n=lint log="$LOGS/lint.log"
    if ! command -v clang-tidy >/dev/null 2>&1; then
        skip=$((skip + 1))
        printf '  %-44s skipped: clang-tidy is not installed (make deps installs it)\n' "$n"
        return 0
    fi
    timeout 900 make --no-print-directory lint >"$log" 2>&1
    local rc=$?
    if [ "$rc" -eq 0 ]; then
        pass=$((pass + 1))
        printf '  %-44s %4d passed %3d failed %3d skipped\n' "$n" 1 0 0
        return 0
    fi
    fail=$((fail + 1))
    local summary
    summary=$(grep -E '^lint: [0-9]+ findings' "$log" | sed 's/^lint: //')
    failed_names+=("$n: ${summary:-exited with status $rc} (see $log)")
    printf '  %-44s %4d passed %3d failed %3d skipped\n' "$n" 0 1 0
    # The findings themselves (their note trails are in the log).
    grep -E '^[^ ]+:[0-9]+:[0-9]+: (warning|error): |^lint: ' "$log" | sed 's/^/    /'
}

echo "== lint"
run_lint
echo "== unit"
run_unit normal build
run_unit asan build/asan
echo "== plugin under the Vault stand-in"
run_vaultsim normal build/vault-plugin-secrets-byok
run_vaultsim asan build/asan/vault-plugin-secrets-byok
echo "== end to end"
run_e2e normal build
run_e2e asan build/asan
echo "== fuzz corpora"
run_fuzz

if command -v vault >/dev/null 2>&1; then
    echo "== real Vault: $(command -v vault) (scenarios run inside the e2e suites)"
else
    echo "== real Vault: skipped (no 'vault' binary on PATH); the stand-in ran every scenario"
fi

if [ ${#skipped_names[@]} -gt 0 ]; then
    echo
    echo "skipped (with their reasons):"
    printf '  %s\n' "${skipped_names[@]}"
fi
if [ ${#failed_names[@]} -gt 0 ]; then
    echo
    echo "failures:"
    printf '  %s\n' "${failed_names[@]}"
fi
echo
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
