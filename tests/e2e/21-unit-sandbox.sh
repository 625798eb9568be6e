#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# The agent under its shipped systemd unit's sandbox, as far as it can be built
# without systemd as PID 1. From agent/byok-agent.service this script reads
# and applies:
#   - User=/Group= (a fresh uid and gid, no supplementary groups),
#     CapabilityBoundingSet= and AmbientCapabilities= (setpriv);
#   - LimitCORE=, LimitMEMLOCK=, LimitNOFILE= (prlimit) and UMask=;
#   - SystemCallFilter= with systemd's rules (the first assignment an allow
#     list that starts from @default, then each one adding, or with ~
#     removing, calls and groups in order; groups expanded by this machine's
#     `systemd-analyze syscall-filter`), SystemCallErrorNumber=,
#     SystemCallArchitectures=native, RestrictAddressFamilies= and
#     MemoryDenyWriteExecute= as a seccomp filter (tests/e2e/unit-sandbox.c);
#   - RuntimeDirectory= (the socket directory, owned by the service user).
# Mount namespaces (ProtectSystem=, PrivateTmp=, ...) are not built here;
# 25-systemd-unit.sh runs the unit under a real systemd in a container.
#
# The agent then runs a workload: calls over HTTPS to a provider named by
# host name (curl's resolver thread), streamed and not, embeddings, models,
# metrics, a usage report, a SIGHUP reload, and SIGTERM. It runs twice: with
# refused calls failing with EPERM, as the unit does, and with refused calls
# killing it (SIGSYS), so that a refusal the agent would survive quietly
# still shows. Skipped on the ASan build: the sanitizer runtime needs calls
# the unit forbids (LeakSanitizer stops the process with ptrace).
. "$(dirname "$0")/lib.sh"

UNIT=${BYOK_UNIT:-$BYOK_ROOT/agent/byok-agent.service} # BYOK_UNIT: another unit, to check this script
CASES=("the unit's system-call filter resolved (fchown, mlock, sched_setattr, prlimit64 allowed; setrlimit, chroot, setuid, ptrace refused)"
    "the filter bites: chroot fails with EPERM, and kills under --kill"
    "under the unit: the agent starts as its user with only CAP_CHOWN, no_new_privs and the filter"
    "under the unit: listener chowned to a group the agent is not in, with its mode"
    "under the unit: the secure heap locked within LimitMEMLOCK, no warning"
    "under the unit: the scheduler slice is applied"
    "under the unit: calls answered (HTTPS to a host name, stream, Anthropic stream, embeddings, models, metrics)"
    "under the unit: usage reported to the plugin"
    "under the unit: a SIGHUP reload applies the new socket mode"
    "under the unit: no warning or error logged, clean exit on SIGTERM"
    "strict filter (a refused call kills): the same workload answered"
    "strict filter: clean exit on SIGTERM (no SIGSYS)"
    "mlock refused (the filter without @memlock): one warning that the secure heap is not locked, the agent serves"
    "LimitMEMLOCK below the secure heap: one warning naming RLIMIT_MEMLOCK, the agent serves"
    "canary: nowhere but the provider request")

# block_rest: the cases not yet reported fail as blocked; the script ends.
block_rest() {
    t_blocked "${CASES[@]:$T_N}"
    t_done
    exit 1
}

skip_all() {
    local c
    for c in "${CASES[@]}"; do t_skip "$c" "$1"; done
    t_done
    exit
}

if [[ $(ldd "$AGENT_BIN" 2>/dev/null) == *libasan* ]]; then
    CASES=("the agent under its unit's sandbox") # one skip, not one per case
    skip_all "ASan build: its runtime needs calls the unit forbids (the normal build runs it)"
fi
command -v systemd-analyze >/dev/null || skip_all "systemd-analyze not installed (package systemd)"
[ "$(id -u)" = 0 ] || skip_all "needs root to run the agent as another uid"
if ! command -v setpriv >/dev/null || ! command -v prlimit >/dev/null; then
    skip_all "setpriv/prlimit missing (util-linux)"
fi

SB=$LIB_TMP/unit-sandbox
if ! ${CC:-cc} -O1 -Wall -o "$SB" "$BYOK_ROOT/tests/e2e/unit-sandbox.c" 2>"$LIB_TMP/cc.err"; then
    LIB_BLOCKED_REASON="cannot build tests/e2e/unit-sandbox.c: $(head -c 300 "$LIB_TMP/cc.err")"
    t_block_all
fi

# unit_values KEY: every value of KEY= in the unit, one a line, in order.
unit_values() { sed -n "s/^$1=//p" "$UNIT"; }
unit_value() { unit_values "$1" | tail -n 1; }

# ---- the unit's system-call filter ----
# sf_expand WORD...: system-call names; @groups expanded recursively.
sf_expand() {
    local w m
    for w in "$@"; do
        if [[ $w == @* ]]; then
            m=$(systemd-analyze syscall-filter --no-pager "$w" 2>&1) || {
                echo "unknown group $w: $m" >&2
                return 1
            }
            # First line: the group's name; then comments and members.
            # shellcheck disable=SC2046 # members are single words
            sf_expand $(echo "$m" | sed '1d; s/#.*//') || return 1
        else
            echo "$w"
        fi
    done
}

declare -A ALLOW=()
FILTER_ERR=""
first=1
while read -r v; do
    inv=0
    if [[ $v == "~"* ]]; then
        inv=1
        v=${v#\~}
    fi
    if [ "$first" = 1 ]; then
        first=0
        [ "$inv" = 1 ] && FILTER_ERR="the unit's first SystemCallFilter= is a deny list (this script builds allow lists)"
        # systemd: an allow list always holds @default.
        for s in $(sf_expand @default); do ALLOW[$s]=1; done
    fi
    # shellcheck disable=SC2086 # the value is a space-separated list
    names=$(sf_expand $v) || FILTER_ERR="cannot expand SystemCallFilter=$v"
    for s in $names; do
        if [ "$inv" = 1 ]; then unset "ALLOW[$s]"; else ALLOW[$s]=1; fi
    done
done < <(unit_values SystemCallFilter)
[ "${#ALLOW[@]}" -gt 0 ] || FILTER_ERR=${FILTER_ERR:-"no SystemCallFilter= in the unit"}
[ "$(unit_value SystemCallErrorNumber)" = EPERM ] ||
    FILTER_ERR=${FILTER_ERR:-"SystemCallErrorNumber= is not EPERM (unit-sandbox fails refused calls with EPERM)"}
[ "$(unit_value SystemCallArchitectures)" = native ] ||
    FILTER_ERR=${FILTER_ERR:-"SystemCallArchitectures= is not native"}
[ -z "$FILTER_ERR" ] || {
    LIB_BLOCKED_REASON=$FILTER_ERR
    t_block_all
}

# Names to this machine's numbers (<asm/unistd.h>); a name this architecture
# does not have is left out, as systemd does.
{
    echo '#include <asm/unistd.h>'
    echo '#include <stdio.h>'
    echo 'int main(void) {'
    for s in "${!ALLOW[@]}"; do
        printf '#ifdef __NR_%s\nprintf("%%d %%s\\n", __NR_%s, "%s");\n#endif\n' "$s" "$s" "$s"
    done
    echo 'return 0; }'
} >"$LIB_TMP/resolve.c"
if ! ${CC:-cc} -o "$LIB_TMP/resolve" "$LIB_TMP/resolve.c" 2>"$LIB_TMP/cc.err" ||
    ! "$LIB_TMP/resolve" | sort -n >"$LIB_TMP/allowed.txt"; then
    LIB_BLOCKED_REASON="cannot resolve system-call names: $(head -c 300 "$LIB_TMP/cc.err")"
    t_block_all
fi
cut -d' ' -f1 "$LIB_TMP/allowed.txt" >"$LIB_TMP/allowed.nr"
allowed() { grep -qx "[0-9]* $1" "$LIB_TMP/allowed.txt"; }
verdict=""
for s in fchown mlock sched_setattr prlimit64 clone3 epoll_wait; do allowed "$s" || verdict+="$s refused; "; done
for s in setrlimit chroot setuid ptrace setpriority; do allowed "$s" && verdict+="$s allowed; "; done
t_eq "${CASES[0]}" "${verdict:-as expected} ($(wc -l <"$LIB_TMP/allowed.nr") calls)" \
    "as expected ($(wc -l <"$LIB_TMP/allowed.nr") calls)"

# shellcheck disable=SC2046 # the families are space-separated words
FAMILIES=$($PY -c 'import socket, sys; print(",".join(str(int(getattr(socket, a))) for a in sys.argv[1:]))' \
    $(unit_value RestrictAddressFamilies)) || {
    LIB_BLOCKED_REASON="RestrictAddressFamilies= names a family Python does not know"
    t_block_all
}
# The unit's filter other than its allow list (given with --allow on each use).
SB_FLAGS=(--families "$FAMILIES")
[ "$(unit_value MemoryDenyWriteExecute)" = yes ] && SB_FLAGS+=(--mdwe)

# The filter must really refuse: chroot(2) is in @privileged, which the unit removes.
out=$("$SB" --allow "$LIB_TMP/allowed.nr" "${SB_FLAGS[@]}" -- /usr/sbin/chroot / /bin/true 2>&1)
rc1=$?
# (in a subshell whose stderr is dropped: bash reports the SIGSYS death)
rc2=$( { "$SB" --kill --allow "$LIB_TMP/allowed.nr" "${SB_FLAGS[@]}" -- /usr/sbin/chroot / /bin/true >/dev/null 2>&1; echo $?; } 2>/dev/null)
"$SB" --kill --allow "$LIB_TMP/allowed.nr" "${SB_FLAGS[@]}" -- /bin/true
rc3=$?
t_match "${CASES[1]}" "$rc1 $rc2 $rc3 $out" "^125 159 0 .*Operation not permitted"

# ---- credentials, limits and the wrapper that applies them ----
AGENT_UID=61234
APPS_GID=61235 # the listener's group: the agent is not a member, so chown needs CAP_CHOWN
caps=$(unit_value AmbientCapabilities | tr 'A-Z ' 'a-z\n' | sed -n 's/^cap_//p' | paste -sd, -)
bcaps=$(unit_value CapabilityBoundingSet | tr 'A-Z ' 'a-z\n' | sed -n 's/^cap_//p' | paste -sd, -)
MEMLOCK=$(numfmt --from=iec "$(unit_value LimitMEMLOCK)")
NOFILE=$(unit_value LimitNOFILE)
# Raising a hard limit needs CAP_SYS_RESOURCE, which this test's root may lack:
# past the current hard limit, the current one is used (and said).
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$NOFILE" ]; then
    t_diag "LimitNOFILE=$NOFILE is over this shell's hard limit; $hard used"
    NOFILE=$hard
fi
hard=$(ulimit -Hl)
if [ "$hard" != unlimited ] && [ $((hard * 1024)) -lt "$MEMLOCK" ]; then
    t_diag "LimitMEMLOCK=$MEMLOCK is over this shell's hard limit; $((hard * 1024)) used"
    MEMLOCK=$((hard * 1024))
fi
CORE_LIMIT=$(unit_value LimitCORE)
UMASK=$(unit_value UMask)
RUNDIR=$LIB_TMP/run-byok # RuntimeDirectory=byok
mkdir -p "$RUNDIR"
chown "$AGENT_UID:$AGENT_UID" "$RUNDIR"
chmod "$(unit_value RuntimeDirectoryMode)" "$RUNDIR"

# agent_wrapper NAME [--kill] [ALLOW_FILE] [MEMLOCK]: AGENT_BIN for agent_start,
# running the real agent as the unit would (with the unit's filter and
# LimitMEMLOCK unless given).
REAL_AGENT_BIN=$AGENT_BIN
agent_wrapper() {
    local name=$1 kill=${2:-} allow=${3:-$LIB_TMP/allowed.nr} memlock=${4:-$MEMLOCK}
    cat >"$LIB_TMP/agent-unit-$name" <<EOF
#!/bin/bash
umask $UMASK
exec prlimit --core=$CORE_LIMIT --memlock=$memlock --nofile=$NOFILE -- \\
    setpriv --reuid=$AGENT_UID --regid=$AGENT_UID --clear-groups \\
    --inh-caps=-all${caps:+,+$caps} --ambient-caps=-all${caps:+,+$caps} --bounding-set=-all${bcaps:+,+$bcaps} -- \\
    "$SB" $kill --allow "$allow" ${SB_FLAGS[*]} -- "$REAL_AGENT_BIN" "\$@"
EOF
    chmod 0755 "$LIB_TMP/agent-unit-$name"
    echo "$LIB_TMP/agent-unit-$name"
}

lib_up && lib_require "$AGENT_BIN" || block_rest
# The providers named by this machine's host name (in the mock's certificate)
# where it resolves to 127.0.0.1, so that curl resolves it in its resolver
# thread (clone3 and the thread's calls under the filter too); curl answers
# "localhost" itself.
HOST=$(hostname)
if [ "$(getent ahostsv4 "$HOST" 2>/dev/null | awk 'NR == 1 { print $1 }')" = 127.0.0.1 ]; then
    MOCK_URL=https://$HOST:$MOCK_HTTPS
else
    t_diag "the host name does not resolve to 127.0.0.1: providers named localhost (no resolver thread)"
    MOCK_URL=https://localhost:$MOCK_HTTPS
fi
providers_point_at_mock || block_rest
canary_keys acme openai anthropic || block_rest
# The agent reads its token file as its own user (0600, as the unit's notes say).
chown "$AGENT_UID" "$AGENT_TOKEN_FILE"

SOCK=$RUNDIR/acme.sock
MSOCK=$RUNDIR/metrics.sock
agent_config "[{\"path\": \"$SOCK\", \"mode\": \"0660\", \"group\": \"$APPS_GID\", \"tenant\": \"acme\", \"app\": \"unit\"},
               {\"path\": \"$MSOCK\", \"mode\": \"0600\", \"tenant\": \"ops\", \"metrics\": true}]" \
    '.providers = ["openai", "anthropic"] | .log_level = "info"'
# /etc/byok/agent.json: owner root, group byok-agent, mode 0640.
chgrp "$AGENT_UID" "$AGENT_CONFIG"
chmod 0640 "$AGENT_CONFIG"

# workload: lib.sh's calls on this script's sockets; WANT_WORK the pattern they must match.
workload() { unit_workload "$SOCK" "$MSOCK"; }
WANT_WORK=$(unit_workload_want)

slice_of() { awk '$1 == "se.slice" { print $3 }' "/proc/$1/sched" 2>/dev/null; }
# ledger: calls in the plugin's usage ledger for acme (openai, anthropic).
ledger() { usage_ledger acme '[.by_provider.openai.requests // 0, .by_provider.anthropic.requests // 0]'; }
ledger_is() { [ "$(ledger)" = "$1" ]; }
mode_is() { [ "$(stat -c %a "$SOCK" 2>/dev/null)" = "$1" ]; }

# ---- the unit as written: refused calls fail with EPERM ----
AGENT_BIN=$(agent_wrapper eperm)
AGENT_LOG=$AGENT_DIR/agent-unit.log
agent_start || block_rest
st=$(grep -E '^(Uid|CapEff|CapPrm|CapAmb|CapBnd|NoNewPrivs|Seccomp):' "/proc/$AGENT_PID/status" | awk '{ print $1 $2 }' | paste -sd' ' -)
t_eq "${CASES[2]}" "$st" \
    "Uid:$AGENT_UID CapPrm:0000000000000001 CapEff:0000000000000001 CapBnd:0000000000000001 CapAmb:0000000000000001 NoNewPrivs:1 Seccomp:2"
t_eq "${CASES[3]}" "$(stat -c '%u:%g %a' "$SOCK")" "$AGENT_UID:$APPS_GID 660"
lck=$(awk '$1 == "VmLck:" { print $2 * 1024 }' "/proc/$AGENT_PID/status")
within=$([ "${lck:-0}" -gt 0 ] && [ "${lck:-0}" -le "$MEMLOCK" ] && echo yes || echo no)
t_eq "${CASES[4]}" "VmLck $lck within $MEMLOCK: $within; warnings: $(grep -c 'secure heap' "$AGENT_LOG")" \
    "VmLck $lck within $MEMLOCK: yes; warnings: 0"
want_slice=100000
[ -n "$(slice_of "$BASHPID")" ] || want_slice="" # a kernel without custom slices
t_eq "${CASES[5]}" "$(slice_of "$AGENT_PID") $(grep -c 'scheduler slice' "$AGENT_LOG")" "$want_slice 0"
got=$(workload)
t_match "${CASES[6]}" "$got" "^$WANT_WORK\$"
# 2 OpenAI chats and an embedding, 1 Anthropic stream
lib_wait_for 10 ledger_is "[3,1]"
t_eq "${CASES[7]}" "$(ledger)" "[3,1]"
jq '.listeners[0].mode = "0640"' "$AGENT_CONFIG" >"$AGENT_CONFIG.new" && cat "$AGENT_CONFIG.new" >"$AGENT_CONFIG"
kill -HUP "$AGENT_PID"
lib_wait_for 10 mode_is 640
call "$SOCK" GET /v1/models
t_eq "${CASES[8]}" "$(stat -c '%u:%g %a' "$SOCK") $CODE" "$AGENT_UID:$APPS_GID 640 200"
kill -TERM "$AGENT_PID"
wait "$AGENT_PID"
rc=$?
bad=$(grep -E '"@level":"(warn|error)"' "$AGENT_LOG" | head -n 3)
t_eq "${CASES[9]}" "exit $rc${bad:+; $bad}" "exit 0"

# ---- strict: any refused call kills the agent ----
jq '.listeners[0].mode = "0660"' "$AGENT_CONFIG" >"$AGENT_CONFIG.new" && cat "$AGENT_CONFIG.new" >"$AGENT_CONFIG"
AGENT_BIN=$(agent_wrapper strict --kill)
AGENT_LOG=$AGENT_DIR/agent-strict.log
agent_start || block_rest
got=$(workload)
kill -HUP "$AGENT_PID"
lib_wait_for 10 grep -q '"@message":"config reloaded"' "$AGENT_LOG"
call "$SOCK" GET /v1/models
lib_wait_for 10 ledger_is "[6,2]"
t_match "${CASES[10]}" "$got | after reload $CODE | ledger $(ledger)" \
    "^$WANT_WORK \\| after reload 200 \\| ledger \\[6,2\\]\$"
kill -TERM "$AGENT_PID"
wait "$AGENT_PID"
rc=$?
t_eq "${CASES[11]}" "exit $rc" "exit 0"

# ---- a secure heap left unlocked is said ----
# unlocked_run NAME ALLOW_FILE MEMLOCK WARNING: one agent, one call, its warnings.
unlocked_run() {
    AGENT_BIN=$(agent_wrapper "$1" "" "$2" "$3")
    AGENT_LOG=$AGENT_DIR/agent-$1.log
    agent_start || {
        echo "did not start: $(tail -n 2 "$AGENT_LOG")"
        return
    }
    call "$SOCK" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini false 3 "unlocked")"
    local lck rc
    lck=$(awk '$1 == "VmLck:" { print $2 }' "/proc/$AGENT_PID/status")
    kill -TERM "$AGENT_PID"
    wait "$AGENT_PID"
    rc=$?
    echo "$CODE VmLck $lck exit $rc warnings $(grep -c '"@level":"warn"' "$AGENT_LOG")" \
        "$(grep -c "\"@message\":\"$4" "$AGENT_LOG")"
}
grep -vE ' (mlock|mlock2|mlockall)$' "$LIB_TMP/allowed.txt" | cut -d' ' -f1 >"$LIB_TMP/allowed-nomlock.nr"
t_eq "${CASES[12]}" "$(unlocked_run nomlock "$LIB_TMP/allowed-nomlock.nr" "$MEMLOCK" "secure heap not locked in memory")" \
    "200 VmLck 0 exit 0 warnings 1 1"
t_eq "${CASES[13]}" "$(unlocked_run lowmemlock "$LIB_TMP/allowed.nr" 1048576 "secure heap larger than RLIMIT_MEMLOCK")" \
    "200 VmLck 0 exit 0 warnings 1 1"
AGENT_BIN=$REAL_AGENT_BIN

canary_scan "${CASES[14]}" "${KEY[openai]}" "${KEY[anthropic]}"
t_done
