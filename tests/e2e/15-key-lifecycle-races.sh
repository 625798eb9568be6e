#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# A cached key's life racing a call. Keys live 2 s (the plugin's creds_ttl),
# the agent sweeps expired keys every 5 s, Vault may take up to 30 s.
# - `auto`, tenant solo (an OpenAI key only): openai's key is cached, Vault is
#   stopped for 8 s while the call's other probe waits on it; openai's key
#   expires and is wiped meanwhile. The call fetches it again and is answered
#   by openai (before: 502 provider_error with no provider called).
# - `auto`, tenant acme (OpenAI and Anthropic keys): the first attempt (openai)
#   stalls until first_byte_timeout_ms (8 s); anthropic's probed key is wiped
#   meanwhile. The failover fetches it again: 200 from anthropic, 2 attempts
#   (before: 502 provider_error).
# - A reload to another key type while a fetch is in flight (Vault stopped):
#   the call waiting on it gets the production key; a call after the reload
#   fetches the staging key (before: it joined the old fetch and got the
#   production key).
# - The secure heap full (64 providers, the most an agent takes, with 8 KiB keys, 1 MiB heap, of which
#   keys leave the last 256 KiB to the Vault token: about 47 keys fit): a call
#   whose key cannot be held is 503 key_memory_full, never 502, and each such
#   call is logged once at error level.
. "$(dirname "$0")/lib.sh"

CASES=("auto: a key wiped while the other probes wait on Vault is fetched again (200 openai, 1 call)"
    "failover: the fallback's key wiped during the first attempt is fetched again (200 anthropic, 2 attempts)"
    "reload to another key type: the call waiting on the old fetch used the production key"
    "reload to another key type: a call after the reload used the staging key"
    "secure heap full: 8 KiB keys cached until the heap is full, then 503 key_memory_full, never 502"
    "secure heap full: one error line per call that could not hold a key"
    "agent stops cleanly on SIGTERM, no sanitizer report (races)"
    "agent stops cleanly on SIGTERM, no sanitizer report (heap full)"
    "canary: nowhere but the provider request")

lib_up && lib_require "$AGENT_BIN" || t_block_all

vault_api PUT byok/config '{"creds_ttl":"2s"}' "$ADMIN_TOKEN"
[ "$VAULT_CODE" -lt 300 ] || t_diag "plugin config: HTTP $VAULT_CODE $VAULT_BODY"
canary_keys acme openai anthropic || t_block_all
KEY[solo]=$(lib_canary)
key_put solo openai "${KEY[solo]}" || t_block_all
KEY[staging]=$(lib_canary)
key_put solo openai "${KEY[staging]}" staging || t_block_all
vault_api PUT byok/tenants/acme/settings \
    '{"preferred_providers":["openai"],"fallback_providers":["anthropic"],"budget_tier":"HIGH"}' "$ADMIN_TOKEN"
[ "$VAULT_CODE" -lt 300 ] || t_diag "tenant settings: HTTP $VAULT_CODE $VAULT_BODY"

SOLO=$AGENT_DIR/solo.sock
ACME=$AGENT_DIR/acme.sock
LISTENERS="[{\"path\":\"$SOLO\",\"tenant\":\"solo\"},{\"path\":\"$ACME\",\"tenant\":\"acme\"}]"
BASE_CFG='.vault.timeout_ms = 30000 | .keycache.negative_ttl_s = 0 | .upstream.first_byte_timeout_ms = 8000
    | .providers = ["openai", "anthropic"]'
agent_config "$LISTENERS" "$BASE_CFG"
agent_start || t_block_all

# key_owner SINCE: the key owners of the requests the mock saw after SINCE, comma-separated.
key_owner() {
    mock_requests_since "$1" | KS=${KEY[solo]} KT=${KEY[staging]} KO=${KEY[openai]} KA=${KEY[anthropic]} jq -r '[.[] |
        ((.headers.Authorization[0] // "" | sub("^Bearer "; "")) + (.headers["X-Api-Key"][0] // "")) as $k |
        if $k == env.KS then "solo" elif $k == env.KT then "staging" elif $k == env.KO then "openai"
        elif $k == env.KA then "anthropic" else "other" end] | join(",")'
}

# 1. auto: openai's key expires and is swept while anthropic's probe waits on a stopped Vault.
call "$SOLO" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini false 3)"
[ "$CODE" = 200 ] || t_diag "warm-up: HTTP $CODE ${BODY:0:200}"
since=$(mock_last_seq)
kill -STOP "$VAULT_PID"
(
    call "$SOLO" POST /v1/chat/completions "$(chat_body auto false 3)"
    echo "$CODE $(hdr X-BYOK-Provider) $(hdr X-BYOK-Attempts) $(echo "$BODY" | jq -r '.error.code // empty' 2>/dev/null)" >"$LIB_TMP/auto.out"
) &
bg=$!
sleep 8
kill -CONT "$VAULT_PID"
wait "$bg"
t_eq "auto: a key wiped while the other probes wait on Vault is fetched again (200 openai, 1 call)" \
    "$(xargs <"$LIB_TMP/auto.out") $(key_owner "$since")" "200 openai 1 solo"

# 2. failover: openai stalls 8 s; anthropic's probed key (2 s) is swept meanwhile.
mock_ctl POST /_mock/scenario '{"scenario":"stall","count":1}' >/dev/null
since=$(mock_last_seq)
call "$ACME" POST /v1/chat/completions "$(chat_body auto false 3)"
mock_ctl DELETE /_mock/scenario >/dev/null
t_eq "failover: the fallback's key wiped during the first attempt is fetched again (200 anthropic, 2 attempts)" \
    "$CODE $(hdr X-BYOK-Provider) $(hdr X-BYOK-Attempts) $(key_owner "$since")" \
    "200 anthropic 2 openai,anthropic"

# 3. A reload to key type staging while solo's openai fetch (production) waits on a stopped Vault.
sleep 3 # solo's openai key from case 1 has expired
since=$(mock_last_seq)
kill -STOP "$VAULT_PID"
(
    call "$SOLO" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini false 3)"
    echo "$CODE" >"$LIB_TMP/before.out"
) &
bg=$!
sleep 1
agent_config "$LISTENERS" "$BASE_CFG | .vault.key_type = \"staging\""
kill -HUP "$AGENT_PID"
lib_wait_for 5 grep -q '"@message":"config reloaded"' "$AGENT_LOG" || t_diag "no 'config reloaded' line"
(
    call "$SOLO" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini false 3)"
    echo "$CODE" >"$LIB_TMP/after.out"
) &
bg2=$!
sleep 1
kill -CONT "$VAULT_PID"
wait "$bg" "$bg2"
owners=$(key_owner "$since")
t_eq "reload to another key type: the call waiting on the old fetch used the production key" \
    "$(cat "$LIB_TMP/before.out") $(echo "$owners" | tr , '\n' | grep -c '^solo$')" "200 1"
t_eq "reload to another key type: a call after the reload used the staging key" \
    "$(cat "$LIB_TMP/after.out") $(echo "$owners" | tr , '\n' | grep -c '^staging$')" "200 1"

agent_stop_check "agent stops cleanly on SIGTERM, no sanitizer report (races)"

# 4. The secure heap full: 64 providers (copies of the mock openai entry), each with an 8 KiB
#    key for tenant heap; a key takes a 16 KiB block of the 1 MiB heap, whose last 256 KiB are
#    left to the Vault token, so 47 fit and 17 calls are 503 (2026-11-27).
vault_api PUT byok/config '{"creds_ttl":"300s"}' "$ADMIN_TOKEN" # held until the heap is full
[ "$VAULT_CODE" -lt 300 ] || t_diag "plugin config: HTTP $VAULT_CODE $VAULT_BODY"
vault_api GET byok/providers/openai "" "$ADMIN_TOKEN"
entry=$(echo "$VAULT_BODY" | jq -c '.data | del(.name, .builtin, .overridden)')
HEAP_PROVIDERS=()
big_keys=()
for i in $(seq -w 0 63); do
    p=h$i
    HEAP_PROVIDERS+=("$p")
    vault_api PUT "byok/providers/$p" "$(echo "$entry" | jq -c --arg p "$p" '.display_name = ("Heap " + $p)')" "$ADMIN_TOKEN" >/dev/null
    [ "$VAULT_CODE" -lt 300 ] || { t_diag "provider $p: HTTP $VAULT_CODE $VAULT_BODY"; break; }
    k=sk-$(lib_random_hex 4095)
    k=${k:0:8192}
    big_keys+=("$k")
    key_put heap "$p" "$k" || break
done
HEAP=$AGENT_DIR/heap.sock
agent_config "[{\"path\":\"$HEAP\",\"tenant\":\"heap\"}]" \
    ".keycache.max_entries = 200 | .providers = $(printf '%s\n' "${HEAP_PROVIDERS[@]}" | jq -R . | jq -sc .)"
AGENT_LOG=$AGENT_DIR/agent-heap.log
agent_start || t_block_all
call "$HEAP" GET /v1/models # probes every provider at once: fills the heap
models_code=$CODE
codes=""
for p in "${HEAP_PROVIDERS[@]}"; do
    call "$HEAP" POST /v1/chat/completions "$(chat_body "$p/gpt-4o-mini" false 3)"
    codes+="$CODE:$(echo "$BODY" | jq -r '.error.code // "ok"' 2>/dev/null) "
done
n_ok=$(echo "$codes" | tr ' ' '\n' | grep -c '^200:ok$')
n_full=$(echo "$codes" | tr ' ' '\n' | grep -c '^503:key_memory_full$')
n_other=$(echo "$codes" | tr ' ' '\n' | grep -v -e '^200:ok$' -e '^503:key_memory_full$' -e '^$' | sort | uniq -c | xargs)
if [ "$models_code" = 200 ] && [ "$n_ok" -ge 40 ] && [ "$n_full" -ge 1 ] && [ -z "$n_other" ]; then
    t_ok "secure heap full: 8 KiB keys cached until the heap is full, then 503 key_memory_full, never 502"
else
    t_fail "secure heap full: 8 KiB keys cached until the heap is full, then 503 key_memory_full, never 502" \
        "models HTTP $models_code; $n_ok answered, $n_full key_memory_full, others: ${n_other:-none}"
fi
# The /v1/models call (several probes failed) logs once, and so does each 503.
n_logged=$(grep '"@level":"error"' "$AGENT_LOG" | grep -c 'the secure heap is full')
t_eq "secure heap full: one error line per call that could not hold a key" "$n_logged" "$((n_full + 1))"

agent_stop_check "agent stops cleanly on SIGTERM, no sanitizer report (heap full)"
canary_scan "canary: nowhere but the provider request" "${KEY[@]}" "${big_keys[@]:0:3}"
t_done
[ "$T_FAILED" -eq 0 ]
