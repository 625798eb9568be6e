#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# The usage journal (docs/agent.md, Usage journal): with usage.journal_dir
# set, usage the plugin has not acknowledged survives the agent's death.
#   crash    usage.report_interval_s 3600 (nothing reported): three calls,
#            then SIGKILL. The ledger holds nothing; the agent started again
#            on the same journal reports all three, exactly once, with the
#            tokens and cost the calls were logged with.
#   inflight a call (the key into the new agent's cache), then Vault stopped
#            (SIGSTOP) while the agent reports (interval 1 s):
#            the batch is on its way when the agent is killed; Vault resumes,
#            the agent starts again and sends the batch under its id: the
#            ledger counts those calls once, whichever of the two reached the
#            plugin first.
#   drain    a clean SIGTERM with Vault stopped: the drain gives up
#            (drain_timeout_s 2), the journal keeps the calls, the next start
#            reports them.
#   replay   a batch the plugin has counted, left in a journal as a crash
#            would leave it: sent under its id at the next start, answered as
#            a duplicate, not counted again.
#   lease    with a cap, a restarted agent takes its budget lease under the
#            node name its journal kept: one hold at the plugin, not two.
#   files    mode 0600, no key, no prompt; a second agent on the same
#            directory refuses to start, naming the key; --check-config
#            refuses a missing directory.
. "$(dirname "$0")/lib.sh"

CASES=("crash: three calls answered, nothing reported yet"
    "crash: after SIGKILL and a new start the ledger holds the three calls once, tokens and cost as logged"
    "inflight: a batch on its way when the agent died is counted once after the restart"
    "drain: a drain that gave up (Vault stopped) leaves the calls to the next start, counted once"
    "replay: a batch the plugin already counted, left in the journal, is acknowledged once and not counted again"
    "lease node: restarted on its journal, the agent replaces its own budget hold (one lease, not two)"
    "files: usage.log and usage.snapshot are 0600 and hold no key and no prompt"
    "files: a second agent on the same journal refuses to start, naming usage.journal_dir"
    "files: --check-config refuses a journal_dir that does not exist, naming the key"
    "agent stops cleanly on SIGTERM, no sanitizer report"
    "canary: nowhere but the provider request")

lib_up && lib_require "$AGENT_BIN" || t_block_all

KEY=$(lib_canary)
key_put acme openai "$KEY" || t_diag "key not written"
JDIR=$LIB_TMP/journal
mkdir -p "$JDIR"
SOCK=$AGENT_DIR/acme.sock
PROMPT="journal canary prompt words"
# start_agent INTERVAL: the agent on the journal, usage reported every INTERVAL seconds.
start_agent() {
    agent_config "[{\"path\": \"$SOCK\", \"mode\": \"0660\", \"tenant\": \"acme\", \"app\": \"j\"}]" \
        ".usage.journal_dir = \"$JDIR\" | .usage.report_interval_s = $1 | .drain_timeout_s = 2"
    agent_start
}
kill9() {
    kill -KILL "$AGENT_PID" 2>/dev/null
    wait "$AGENT_PID" 2>/dev/null
}
# calls N: N chat calls; echoes the codes.
calls() {
    local i codes=""
    for ((i = 0; i < $1; i++)); do
        call "$SOCK" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini false 3 "$PROMPT")"
        codes+="$CODE "
    done
    echo "$codes"
}
# ledger_wait N: waits (up to 10 s) until the ledger holds N requests; prints its requests.
ledger_wait() {
    local i
    for i in $(seq 50); do
        [ "$(usage_ledger acme .requests)" = "$1" ] && break
        sleep 0.2
    done
    usage_ledger acme .requests
}

# ---- crash ------------------------------------------------------------------------------------
start_agent 3600 || t_block_all
codes=$(calls 3)
t_eq "crash: three calls answered, nothing reported yet" "$codes$(usage_ledger acme '.requests // 0')" "200 200 200 0"
kill9
cp "$AGENT_LOG" "$LIB_TMP/agent-1.log"
start_agent 1 || t_block_all
n=$(ledger_wait 3)
cost=$(usage_ledger acme .cost_usd)
want_cost=$(cost_of openai 4 3)
t_eq "crash: after SIGKILL and a new start the ledger holds the three calls once, tokens and cost as logged" \
    "$n $(usage_ledger acme '[.prompt_tokens, .completion_tokens]') $(awk -v a="$cost" -v b="$want_cost" 'BEGIN { d = a - 3 * b; print (d < 1e-9 && d > -1e-9) ? "cost-ok" : "cost " a }')" \
    "3 [12,9] cost-ok"
sleep 1.5 # one more report: nothing new

# ---- inflight ---------------------------------------------------------------------------------
calls 1 >/dev/null # the key into the new agent's cache
ledger_wait 4 >/dev/null
kill -STOP "$VAULT_PID"
codes=$(calls 2) # answered: the key is cached
sleep 2.5        # the report has gone out and waits on the stopped Vault
kill9
kill -CONT "$VAULT_PID"
cp "$AGENT_LOG" "$LIB_TMP/agent-2.log"
sleep 1
t_diag "inflight: the ledger before the restart holds $(usage_ledger acme .requests) (6: the first send reached the plugin, and the restart's is a duplicate)"
start_agent 1 || t_block_all
ledger_wait 6 >/dev/null
sleep 2.5 # any second count would show by now
t_eq "inflight: a batch on its way when the agent died is counted once after the restart" \
    "$codes$(usage_ledger acme .requests)" "200 200 6"

# ---- drain ------------------------------------------------------------------------------------
calls 1 >/dev/null
ledger_wait 7 >/dev/null
kill -STOP "$VAULT_PID"
codes=$(calls 1)
kill -TERM "$AGENT_PID"
for _ in $(seq 100); do
    kill -0 "$AGENT_PID" 2>/dev/null || break
    sleep 0.1
done
wait "$AGENT_PID" 2>/dev/null
kill -CONT "$VAULT_PID"
cp "$AGENT_LOG" "$LIB_TMP/agent-3.log"
start_agent 1 || t_block_all
ledger_wait 8 >/dev/null
sleep 2.5
t_eq "drain: a drain that gave up (Vault stopped) leaves the calls to the next start, counted once" \
    "$codes$(usage_ledger acme .requests)" "200 8"

# ---- replay -----------------------------------------------------------------------------------
# A batch the plugin already counted but whose answer the agent never read, as
# the journal of a crashed agent holds it: the next start sends it under its id,
# the plugin answers duplicate, and the ledger does not change.
kill -TERM "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null
ROW=$(jq -cn --arg ts "$(date -u +%Y-%m-%dT%H:%M:%SZ)" '{ts: $ts, provider: "openai",
    model: "gpt-4o-mini", key_type: "production", app: "j", requests: 2, prompt_tokens: 8,
    completion_tokens: 6, cached_tokens: 0, cost_usd: 0.02, status: "ok", estimated_requests: 0}')
vault_api PUT byok/tenants/acme/usage "{\"batch_id\": \"e2e-replayed-1\", \"records\": [$ROW]}" "$ADMIN_TOKEN" >/dev/null
before=$(usage_ledger acme .requests)
jq -cn --argjson r "$ROW" '{v: 1, rec_seq: 1000, tenants: [{name: "acme", open: [],
    sealed: [{id: "e2e-replayed-1", root_len: 14, node: 1, rows: [$r]}]}]}' >"$JDIR/usage.snapshot"
: >"$JDIR/usage.log"
start_agent 1 || t_block_all
for _ in $(seq 50); do
    [ "$(jq '.tenants | length' "$JDIR/usage.snapshot" 2>/dev/null)" = 0 ] && break
    sleep 0.2
done
loaded=$(jq -r 'select(.["@message"] == "usage journal loaded: unacknowledged usage will be sent") | .batches' "$AGENT_LOG" 2>/dev/null | tail -n 1)
refused=$(grep -c 'usage batch refused' "$AGENT_LOG")
t_eq "replay: a batch the plugin already counted, left in the journal, is acknowledged once and not counted again" \
    "$before $(usage_ledger acme .requests) loaded=$loaded refused=$refused $(jq -c .tenants "$JDIR/usage.snapshot")" \
    "10 10 loaded=1 refused=0 []"

# ---- lease node --------------------------------------------------------------------------------
# With a cap the agent takes budget leases under a node name the journal keeps:
# restarted, it replaces its own hold rather than leave the old one to expire.
vault_api PUT byok/tenants/acme/settings '{"max_monthly_cost": 100}' "$ADMIN_TOKEN" >/dev/null
restart() {
    kill -TERM "$AGENT_PID"
    wait "$AGENT_PID" 2>/dev/null
    start_agent 1
}
leases() {
    vault_api GET byok/tenants/acme "" "$ADMIN_TOKEN"
    echo "$VAULT_BODY" | jq -r '.data.budget.leases' 2>/dev/null
}
restart || t_block_all # a new key cache: the cap comes with the next creds
c1=$(calls 1)
l1=$(leases)
restart || t_block_all
c2=$(calls 1)
t_eq "lease node: restarted on its journal, the agent replaces its own budget hold (one lease, not two)" \
    "$c1$c2$l1 $(leases)" "200 200 1 1"

# ---- files ------------------------------------------------------------------------------------
modes=$(stat -c '%a' "$JDIR/usage.log" "$JDIR/usage.snapshot" 2>&1 | tr '\n' ' ')
leak=$(grep -l -F -e "$KEY" -e "$PROMPT" "$JDIR"/* 2>/dev/null | wc -l)
t_eq "files: usage.log and usage.snapshot are 0600 and hold no key and no prompt" "$modes$leak" "600 600 0"
jq ".listeners[0].path = \"$AGENT_DIR/second.sock\"" "$AGENT_CONFIG" >"$LIB_TMP/second.json"
out=$(cd "$AGENT_DIR" && timeout 10 "$AGENT_BIN" -c "$LIB_TMP/second.json" 2>&1)
rc=$?
t_eq "files: a second agent on the same journal refuses to start, naming usage.journal_dir" \
    "$rc $(echo "$out" | grep -c 'usage.journal_dir: .* is in use by another process')" "1 1"
jq '.usage.journal_dir = "/nonexistent/journal"' "$AGENT_CONFIG" >"$LIB_TMP/nodir.json"
out=$("$AGENT_BIN" --check-config -c "$LIB_TMP/nodir.json" 2>&1)
rc=$?
t_eq "files: --check-config refuses a journal_dir that does not exist, naming the key" \
    "$rc $(echo "$out" | grep -c 'usage.journal_dir: /nonexistent/journal: No such file or directory')" "1 1"

agent_stop_check "agent stops cleanly on SIGTERM, no sanitizer report"
canary_scan "canary: nowhere but the provider request" "$KEY"
t_done
[ "$T_FAILED" -eq 0 ]
