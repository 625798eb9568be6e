#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# The agent installed and run by a real systemd, as docs/admin-guide.md tells
# an administrator to do it. A container boots systemd as its PID 1
# (systemd-nspawn: the host's /usr read-only, /etc and /usr/local
# copy-on-write over the host's, the host's network so that the Vault stand-in
# and the mock provider on loopback are reachable; mlock allowed, which
# nspawn's own filter refuses unless told). Inside it the guide's
# install block runs as written (system user, binary, man page, unit file,
# config), then its start (`--check-config`, `systemctl enable --now`).
#
# Where 21-unit-sandbox.sh rebuilds the unit's user, limits and seccomp
# filter by hand, here systemd itself applies every line of
# agent/byok-agent.service, the mount-namespace options included
# (ProtectSystem=strict, ProtectHome=, PrivateTmp=, ProcSubset=, ...), which
# nothing else in the suite exercises. The agent then answers calls, reports
# usage, is reloaded with `systemctl reload`, restarted by systemd after a
# SIGKILL (Restart=on-failure) and stopped with a stream in flight (the stream
# completes inside TimeoutStopSec=). Its journal holds no warning and no key.
#
# Skipped on the ASan build (its runtime needs calls the unit forbids), when
# not root, without systemd-nspawn (package systemd-container, which make deps
# installs), and when this machine cannot boot a systemd container (the
# reason is printed).
. "$(dirname "$0")/lib.sh"

UNIT_SRC=$BYOK_ROOT/agent/byok-agent.service
GUIDE=$BYOK_ROOT/docs/admin-guide.md
CASES=("a systemd container boots (systemd-nspawn; the host's /usr, a copy-on-write /etc)"
    "the admin guide's install steps run as written (system user, binary, man page, unit, config)"
    "the guide's start: --check-config passes; systemctl enable --now returns once both listeners accept (Type=notify): active, status line"
    "as byok-agent with only CAP_CHOWN, no_new_privs, a seccomp filter, no core file"
    "the unit's file-system sandbox: /usr and /etc/byok read-only, /home inaccessible, a private /tmp, /run/byok writable, /proc of pids only"
    "listener in /run/byok with the config's mode and group: an app in that group is answered, another user cannot connect"
    "secure heap locked within LimitMEMLOCK, scheduler slice applied"
    "calls answered (chat with the tenant's key, stream, Anthropic stream, embeddings, models, metrics)"
    "usage reported to the plugin"
    "systemctl reload applies a new socket mode in the same process"
    "killed with SIGKILL: systemd starts it again (Restart=on-failure) and it answers"
    "systemctl stop with a stream in flight: the stream completes, the unit stops cleanly, /run/byok removed"
    "journal: two starts, a reload, a drained exit, no warning or error from the agent"
    "a listener that cannot be bound: systemctl start fails (not active then dead), the journal says why"
    "canary: nowhere but the provider request (the container's journal included)")

block_rest() {
    t_blocked "${CASES[@]:$T_N}"
    t_done
    exit 1
}

skip_all() {
    CASES=("the agent installed and run by systemd") # one skip, not one per case
    t_skip "${CASES[0]}" "$1"
    t_done
    exit
}

if [[ $(ldd "$AGENT_BIN" 2>/dev/null) == *libasan* ]]; then
    skip_all "ASan build: its runtime needs calls the unit forbids (the normal build runs it)"
fi
[ "$(id -u)" = 0 ] || skip_all "needs root to boot a container"
command -v systemd-nspawn >/dev/null || skip_all "systemd-nspawn not installed (package systemd-container)"
[ -x /usr/lib/systemd/systemd ] || skip_all "systemd not installed (package systemd)"
command -v nsenter >/dev/null || skip_all "nsenter missing (util-linux)"

lib_up && lib_require "$AGENT_BIN" || block_rest
canary_keys acme openai anthropic || block_rest

# ---- the container ----
# XFER: what the container is handed (read-only at /byok-e2e): the agent's
# config, its Vault token, the providers' CA. No key is ever in it.
XFER=$LIB_TMP/xfer
mkdir -p "$XFER" "$LIB_TMP/etc-upper" "$LIB_TMP/usr-local-upper"
cp "$AGENT_TOKEN_FILE" "$XFER/token"
cp "$MOCK_CA" "$XFER/provider-ca.pem"
MACHINE=byok-e2e-$$
cat >"$XFER/byok-e2e.target" <<'EOF'
[Unit]
Description=byok e2e: the basic system and nothing the host enables
Requires=basic.target
After=basic.target
AllowIsolate=yes
EOF
BINDS=(--bind-ro="$BYOK_ROOT" --bind-ro="$XFER:/byok-e2e")
# The build directory, when it is not inside the repository.
case $BYOK_BUILD/ in "$BYOK_ROOT"/*) ;; *) BINDS+=(--bind-ro="$BYOK_BUILD") ;; esac
NSPAWN_LOG=$LIB_TMP/nspawn.log
lib_spawn "$NSPAWN_LOG" systemd-nspawn --quiet --directory=/ --volatile=yes --boot \
    --register=no --keep-unit --machine="$MACHINE" --console=read-only --system-call-filter=@memlock \
    --overlay="/etc:$LIB_TMP/etc-upper:/etc" --overlay="/usr/local:$LIB_TMP/usr-local-upper:/usr/local" "${BINDS[@]}" \
    --bind-ro="$XFER/byok-e2e.target:/etc/systemd/system/byok-e2e.target" \
    -- --unit=byok-e2e.target
NSPAWN_PID=$LIB_LAST_PID
CPID=""
container_pid() {
    CPID=$(pgrep -P "$NSPAWN_PID" -x systemd | head -n 1)
    [ -n "$CPID" ]
}
# ctr CMD...: runs CMD inside the container (all its namespaces).
ctr() { nsenter -t "$CPID" -a -- "$@"; }
booted() {
    local st
    st=$(ctr systemctl is-system-running 2>/dev/null)
    [ "$st" = running ] || [ "$st" = degraded ]
}
if ! lib_wait_proc "$NSPAWN_PID" 60 container_pid || ! lib_wait_proc "$NSPAWN_PID" 60 booted; then
    why=$(sed 's/\x1b\[[0-9;]*m//g' "$NSPAWN_LOG" | grep -v '^\s*$' | tail -n 3 | tr '\n' ' ')
    skip_all "cannot boot a systemd container here: ${why:-no output}"
fi
t_eq "${CASES[0]}" "$(ctr systemctl is-system-running 2>&1) $(ctr readlink /proc/1/exe)" \
    "running /usr/lib/systemd/systemd"
ROOTFS=/proc/$CPID/root # the container's tree, seen from here

# ---- the admin guide's install block ----
# The ```sh block after "**Installing the agent on a node**": the lines
# before its "# the Vault credentials" comment install; the lines after it
# check the config and start the unit.
block=$(awk '/^\*\*Installing the agent on a node\*\*/ { f = 1 }
             f && /^```sh/ { g = 1; next }
             g && /^```/ { exit }
             g { print }' "$GUIDE")
INSTALL=$(echo "$block" | sed '/^# the Vault credentials/,$d' | sed "s|build/byok-agent|$AGENT_BIN|g")
START=$(echo "$block" | sed -n '/^# the Vault credentials/,$p' | sed 1d)
if [ "$(echo "$INSTALL" | grep -c .)" -lt 5 ] || [ -z "$START" ]; then
    LIB_BLOCKED_REASON="the install block of docs/admin-guide.md was not found"
    block_rest
fi
out=$(ctr bash -euc "cd '$BYOK_ROOT'; $INSTALL" 2>&1)
rc=$?
got=$(ctr bash -c 'id -u byok-agent >/dev/null && echo user;
    test -x /usr/local/bin/byok-agent && echo binary;
    test -s /usr/local/share/man/man8/byok-agent.8 && echo man;
    cmp -s /etc/systemd/system/byok-agent.service "$1" && echo unit;
    stat -c "config %U:%G %a" /etc/byok/agent.json' _ "$UNIT_SRC" 2>&1 | paste -sd' ' -)
t_eq "${CASES[1]}" "exit $rc: $got${out:+ ($out)}" "exit 0: user binary man unit config root:byok-agent 640"
AGENT_UID=$(ctr id -u byok-agent)

# The node's own parts: the apps' group and two app users, the Vault token
# (0600, byok-agent, as the guide says), the providers' CA, the config.
ctr bash -euc 'groupadd --system byok-apps
    useradd --system --no-create-home --gid byok-apps app-in
    useradd --system --no-create-home app-out
    install -m 0600 -o byok-agent -g byok-agent /byok-e2e/token /etc/byok/token
    install -m 0644 /byok-e2e/provider-ca.pem /etc/byok/provider-ca.pem' || {
    LIB_BLOCKED_REASON="the apps' group, users, token or CA could not be set up in the container"
    block_rest
}
SOCK_IN=/run/byok/acme.sock    # the path inside the container
MSOCK_IN=/run/byok/metrics.sock
agent_config "[{\"path\": \"$SOCK_IN\", \"mode\": \"0660\", \"group\": \"byok-apps\", \"tenant\": \"acme\", \"app\": \"unit\"},
               {\"path\": \"$MSOCK_IN\", \"mode\": \"0600\", \"tenant\": \"ops\", \"metrics\": true}]" \
    '.providers = ["openai", "anthropic"] | .log_level = "info"
     | .vault.token_file = "/etc/byok/token" | .upstream.ca_file = "/etc/byok/provider-ca.pem"
     | .usage.journal_dir = "/var/lib/byok-agent"'
# Written over the guide's example, keeping its owner and mode.
ctr bash -c 'cat >/etc/byok/agent.json' <"$AGENT_CONFIG" || {
    LIB_BLOCKED_REASON="/etc/byok/agent.json could not be written in the container"
    block_rest
}

SOCK=$ROOTFS$SOCK_IN
MSOCK=$ROOTFS$MSOCK_IN
sock_up() { [ -S "$SOCK" ] && [ -S "$MSOCK" ]; }
out=$(ctr bash -euc "$START" 2>&1)
rc=$?
# Looked at the moment systemctl returns: no wait.
socks=$(sock_up && echo "sockets there" || echo "sockets missing")
t_eq "${CASES[2]}" "exit $rc, $socks, $(ctr systemctl is-active byok-agent 2>&1), restarts $(ctr systemctl show -P NRestarts byok-agent), status '$(ctr systemctl show -P StatusText byok-agent)'" \
    "exit 0, sockets there, active, restarts 0, status 'serving 2 listeners'"
[ "$rc" = 0 ] || {
    t_diag "$(echo "$out" | tail -n 3)"
    t_diag "$(ctr journalctl -u byok-agent --no-pager -n 5 -o cat 2>&1)"
    LIB_BLOCKED_REASON="byok-agent.service did not start"
    block_rest
}

MP=$(ctr systemctl show -P MainPID byok-agent)

# ---- what systemd applied ----
st=$(ctr grep -E '^(Uid|CapEff|CapPrm|CapAmb|CapBnd|NoNewPrivs|Seccomp):' "/proc/$MP/status" |
    awk '{ print $1 $2 }' | paste -sd' ' -)
core=$(ctr awk '/^Max core file size/ { print $5 "/" $6 }' "/proc/$MP/limits")
t_eq "${CASES[3]}" "$st core $core" \
    "Uid:$AGENT_UID CapPrm:0000000000000001 CapEff:0000000000000001 CapBnd:0000000000000001 CapAmb:0000000000000001 NoNewPrivs:1 Seccomp:2 core 0/0"

# The file system as the agent sees it: its own mount namespace, entered as root
# (a read-only mount refuses root too).
ctr touch /tmp/byok-e2e-outside
sandbox=$(ctr nsenter -t "$MP" -m -- bash -c '
    w() { if touch "$1" 2>/dev/null; then rm -f "$1"; echo rw; else echo ro; fi; }
    echo "usr:$(w /usr/byok-e2e) etc-byok:$(w /etc/byok/byok-e2e) home:$(stat -c %a /home)" \
        "tmp:$(test -e /tmp/byok-e2e-outside && echo shared || echo private)-$(w /tmp/byok-e2e)" \
        "run-byok:$(w /run/byok/byok-e2e) proc-meminfo:$(test -e /proc/meminfo && echo yes || echo no)"' 2>&1)
t_eq "${CASES[4]}" "$sandbox" "usr:ro etc-byok:ro home:0 tmp:private-rw run-byok:rw proc-meminfo:no"

# as_app USER: an app user's call to /v1/models inside the container (curl's exit and HTTP code).
as_app() {
    ctr setpriv --reuid="$1" --regid="$(ctr id -g "$1")" --init-groups -- curl -sS -m 10 -o /dev/null -w '%{http_code}' \
        --unix-socket "$SOCK_IN" http://localhost/v1/models 2>/dev/null
    echo " exit $?"
}
t_eq "${CASES[5]}" "$(ctr stat -c '%U:%G %a' "$SOCK_IN") | app-in $(as_app app-in) | app-out $(as_app app-out)" \
    "byok-agent:byok-apps 660 | app-in 200 exit 0 | app-out 000 exit 7"

MEMLOCK=$(numfmt --from=iec "$(sed -n 's/^LimitMEMLOCK=//p' "$UNIT_SRC")")
lck=$(ctr awk '$1 == "VmLck:" { print $2 * 1024 }' "/proc/$MP/status")
within=$([ "${lck:-0}" -gt 0 ] && [ "${lck:-0}" -le "$MEMLOCK" ] && echo yes || echo no)
slice_of() { awk '$1 == "se.slice" { print $3 }' "$1" 2>/dev/null; }
want_slice=100000
[ -n "$(slice_of "/proc/$BASHPID/sched")" ] || want_slice="" # a kernel without custom slices
t_eq "${CASES[6]}" "VmLck within $MEMLOCK: $within; slice $(ctr cat "/proc/$MP/sched" | slice_of /dev/stdin)" \
    "VmLck within $MEMLOCK: yes; slice $want_slice"

# ---- the agent at work ----
t_match "${CASES[7]}" "$(unit_workload "$SOCK" "$MSOCK")" "^$(unit_workload_want)\$"

ledger() { usage_ledger acme '[.by_provider.openai.requests // 0, .by_provider.anthropic.requests // 0]'; }
ledger_is() { [ "$(ledger)" = "$1" ]; }
lib_wait_for 10 ledger_is "[3,1]" # 2 OpenAI chats and an embedding, 1 Anthropic stream
t_eq "${CASES[8]}" "$(ledger)" "[3,1]"

ctr bash -c 'jq ".listeners[0].mode = \"0640\"" /etc/byok/agent.json >/tmp/agent.json &&
    cat /tmp/agent.json >/etc/byok/agent.json && systemctl reload byok-agent'
mode_is() { [ "$(stat -c %a "$SOCK" 2>/dev/null)" = "$1" ]; }
lib_wait_for 10 mode_is 640
call "$SOCK" GET /v1/models
t_eq "${CASES[9]}" "$(stat -c %a "$SOCK") $CODE, pid $([ "$(ctr systemctl show -P MainPID byok-agent)" = "$MP" ] && echo same || echo changed)" \
    "640 200, pid same"

ctr systemctl kill -s KILL byok-agent
restarted() {
    local p
    p=$(ctr systemctl show -P MainPID byok-agent)
    [ -n "$p" ] && [ "$p" != 0 ] && [ "$p" != "$MP" ] && [ "$(ctr systemctl is-active byok-agent)" = active ] && sock_up
}
lib_wait_for 20 restarted
call "$SOCK" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini false 2 "again")"
t_eq "${CASES[10]}" "restarts $(ctr systemctl show -P NRestarts byok-agent), $(ctr systemctl is-active byok-agent), call $CODE" \
    "restarts 1, active, call 200"

# A stream of 40 words at 20 ms a word (the mock's slowstream) is in flight when the unit stops.
curl -sS -m 30 --unix-socket "$SOCK" -H 'Content-Type: application/json' \
    -d "$(chat_body openai/mock-slowstream true 40)" -o "$LIB_TMP/drain.body" \
    -w '%{http_code}' http://localhost/v1/chat/completions >"$LIB_TMP/drain.code" 2>&1 &
CURL_PID=$!
begun() { [ -s "$LIB_TMP/drain.body" ]; }
lib_wait_for 10 begun
ctr systemctl stop byok-agent
wait "$CURL_PID"
drained="$(cat "$LIB_TMP/drain.code") $(sse_content <"$LIB_TMP/drain.body" | wc -w) words$(grep -q '^data: \[DONE\]' "$LIB_TMP/drain.body" && echo ' [DONE]')"
cat "$LIB_TMP/drain.body" >>"$LIB_RESP_LOG"
stopped=$(ctr systemctl show -P Result byok-agent)/$(ctr systemctl show -P ExecMainStatus byok-agent)
t_eq "${CASES[11]}" "$drained; $(ctr systemctl is-active byok-agent) $stopped; /run/byok $(ctr test -e /run/byok && echo kept || echo removed)" \
    "200 40 words [DONE]; inactive success/0; /run/byok removed"

ctr journalctl -u byok-agent --no-pager -o cat >"$LIB_TMP/journal-agent.log" 2>&1
ctr journalctl --no-pager -o short >"$LIB_TMP/journal.log" 2>&1
# Two starts (the second after the SIGKILL), one reload, one drained exit, nothing else said.
said() { grep -c "\"@message\":\"$1\"" "$LIB_TMP/journal-agent.log"; }
bad=$(grep -E '"@level":"(warn|error)"' "$LIB_TMP/journal-agent.log" | head -n 3)
t_eq "${CASES[12]}" "started $(said "byok-agent started"), reloaded $(said "config reloaded"), drained $(said "drained; exiting")${bad:+; $bad}" \
    "started 2, reloaded 1, drained 1"

# A listener in a directory that does not exist passes --check-config (the
# directory may be made later) but cannot be bound: with Type=notify the start
# itself fails, where Type=exec would have said "active" and failed after.
ctr bash -c 'jq ".listeners[1].path = \"/run/byok-missing/metrics.sock\"" /etc/byok/agent.json >/tmp/agent.json &&
    cat /tmp/agent.json >/etc/byok/agent.json'
out=$(ctr systemctl start byok-agent 2>&1)
rc=$?
state=$(ctr systemctl show -P Result byok-agent) # restarting by now (Restart=on-failure)
ctr systemctl stop byok-agent 2>/dev/null
ctr systemctl reset-failed byok-agent 2>/dev/null
why=$(ctr journalctl -u byok-agent --no-pager -o cat | grep -c '"@message":"cannot listen".*byok-missing')
t_eq "${CASES[13]}" "exit $rc, result $state, said $([ "$why" -gt 0 ] && echo yes || echo no)" "exit 1, result exit-code, said yes"
ctr journalctl --no-pager -o short >"$LIB_TMP/journal-end.log" 2>&1

canary_scan "${CASES[14]}" "${KEY[openai]}" "${KEY[anthropic]}"
t_done
