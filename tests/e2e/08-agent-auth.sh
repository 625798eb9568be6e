#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# The agent's other Vault auth methods and the original platform's endpoint.
# AppRole: the agent logs in with role_id/secret_id files and reads creds with
# the token it got; once that token is revoked (by accessor, as an operator
# would), the next creds read gets 403 and the agent logs in again and
# retries; a token renewed up to its max TTL is replaced by a
# background login before it expires, and a non-renewable token in a token
# file is replaced by re-reading the file. Kubernetes: a service-account JWT (RS256, signed here with a
# throwaway key whose public half Vault's kubernetes auth is configured with)
# logs in; a JWT signed by another key is refused and the agent answers 503
# without calling the provider. POST /api/brain/ai/chat answers in the
# platform's shape with the same routing and accounting.
. "$(dirname "$0")/lib.sh"

CASES=("approle: agent logs in and the call succeeds"
    "approle: the provider saw the tenant's key"
    "brain chat: platform shape (response, provider, model, usage, cost_usd)"
    "brain chat: cost is tokens x catalog price"
    "approle: a revoked token is replaced by a new login (403 on creds, then the call succeeds)"
    "approle agent stops cleanly on SIGTERM, no sanitizer report"
    "approle max TTL: calls keep working while the token reaches its max TTL"
    "approle max TTL: a new login before the token expires, no refused renewal"
    "approle max TTL agent stops cleanly on SIGTERM, no sanitizer report"
    "token file, non-renewable token: the file is re-read at 2/3 of the TTL, calls work past the first token's expiry, no renew-self"
    "kubernetes: agent logs in with a service-account JWT and the call succeeds"
    "kubernetes agent stops cleanly on SIGTERM, no sanitizer report"
    "kubernetes: a JWT from another signer is refused (503, nothing sent upstream)"
    "kubernetes (bad signer) agent stops cleanly on SIGTERM, no sanitizer report"
    "--check-config: missing, group-readable or unreadable AppRole files and a missing JWT refused naming the key; an absent token_file passes"
    "approle, wrong secret_id: 5 auto calls get 503 vault_unavailable with at most 3 logins and 3 'login failed' lines"
    "approle, secret_id made group-readable: 5 auto calls log 'credentials unreadable' at most twice"
    "approle, a fixed secret_id file is tried at once: the next call succeeds"
    "approle (backoff) agent stops cleanly on SIGTERM, no sanitizer report"
    "vault.address http:// to a non-loopback host: --check-config warns (exit 0); the loopback agents above never did"
    "vault credentials (role_id, secret_id, JWT, token files): in no agent log line, app answer or provider request"
    "canary: nowhere but the provider request")

lib_up && lib_require "$AGENT_BIN" || t_block_all
KEY=$(lib_canary)
KEY2=$(lib_canary)
key_put acme openai "$KEY"
SOCK=$AGENT_DIR/acme.sock
LISTENERS="[{\"path\": \"$SOCK\", \"mode\": \"0660\", \"tenant\": \"acme\", \"app\": \"auth\"}]"

# approle_agent ROLE ROLE_JSON [JQ_FILTER]: creates the AppRole role, writes its
# role_id and secret_id files (0600) and an agent config that logs in with them.
approle_agent() {
    vault_api POST "auth/approle/role/$1" "$2"
    [ "$VAULT_CODE" -lt 300 ] || t_diag "approle role $1: HTTP $VAULT_CODE $VAULT_BODY"
    vault_api GET "auth/approle/role/$1/role-id"
    local role_id secret_id
    role_id=$(echo "$VAULT_BODY" | jq -r .data.role_id)
    vault_api POST "auth/approle/role/$1/secret-id"
    secret_id=$(echo "$VAULT_BODY" | jq -r .data.secret_id)
    (
        umask 077
        printf '%s' "$role_id" >"$LIB_TMP/$1.role_id"
        printf '%s' "$secret_id" >"$LIB_TMP/$1.secret_id"
    )
    agent_config "$LISTENERS" ".vault |= (del(.token_file) | .approle = {role_id_file: \"$LIB_TMP/$1.role_id\", secret_id_file: \"$LIB_TMP/$1.secret_id\"}) | ${3:-.}"
}

# ---- AppRole ----
# Enabled as an operator would (`vault auth enable approle`): a real Vault in
# dev mode has only token auth, and so has the stand-in.
vault_api POST sys/auth/approle '{"type":"approle"}'
[ "$VAULT_CODE" -lt 300 ] || t_diag "enabling approle: HTTP $VAULT_CODE $VAULT_BODY"
approle_agent byok-agent '{"token_policies":["byok-agent"],"token_ttl":"1h"}'
if agent_start; then
    since=$(mock_last_seq)
    call "$SOCK" POST /v1/chat/completions "$(chat_body "openai/$CHAT_MODEL" false 4)"
    t_eq "approle: agent logs in and the call succeeds" "$CODE $(hdr X-BYOK-Provider)" "200 openai"
    # Compared in jq so that a failure never prints the key.
    seen=$(mock_requests_since "$since" | K="Bearer $KEY" jq -r \
        '"\(length) request(s), \([.[] | select(.headers.Authorization[0] == env.K)] | length) with the tenant key"')
    t_eq "approle: the provider saw the tenant's key" "$seen" "1 request(s), 1 with the tenant key"

    call "$SOCK" POST /api/brain/ai/chat '{"message":"hello platform","task_type":"chat","model_preference":"openai/gpt-4o-mini"}'
    shape=$(echo "$BODY" | jq -r '[(.response|type), .provider, .model, (.usage.prompt_tokens|type), (.usage.completion_tokens|type), (.cost_usd|type)] | join(" ")' 2>/dev/null)
    t_eq "brain chat: platform shape (response, provider, model, usage, cost_usd)" \
        "$CODE $shape" "200 string openai gpt-4o-mini number number number"
    p=$(echo "$BODY" | jq -r .usage.prompt_tokens 2>/dev/null)
    c=$(echo "$BODY" | jq -r .usage.completion_tokens 2>/dev/null)
    want=$(cost_of openai "$p" "$c")
    got=$(echo "$BODY" | jq -r .cost_usd 2>/dev/null)
    t_num_eq "brain chat: cost is tokens x catalog price" "$got" "$want"

    # Revoke the agent's AppRole token by its accessor, then make a call whose
    # key is not cached yet (anthropic): its creds read gets 403. A 403 on a
    # token younger than 10 s is taken for a policy refusal (no login storm),
    # so wait that out first.
    key_put acme anthropic "$KEY2"
    sleep 10
    vault_api LIST auth/token/accessors
    revoked=0
    for acc in $(echo "$VAULT_BODY" | jq -r '.data.keys[]'); do
        vault_api POST auth/token/lookup-accessor "{\"accessor\": \"$acc\"}"
        if [ "$(echo "$VAULT_BODY" | jq -r .data.path)" = auth/approle/login ]; then
            vault_api POST auth/token/revoke-accessor "{\"accessor\": \"$acc\"}"
            [ "$VAULT_CODE" = 204 ] && revoked=$((revoked + 1))
        fi
    done
    logins=$(grep -c '"@message":"vault login ok"' "$AGENT_LOG")
    call "$SOCK" POST /v1/chat/completions "$(chat_body "anthropic/${PROVIDER_MODEL[anthropic]}" false 4)"
    t_eq "approle: a revoked token is replaced by a new login (403 on creds, then the call succeeds)" \
        "revoked $revoked, $CODE $(hdr X-BYOK-Provider), new logins $(($(grep -c '"@message":"vault login ok"' "$AGENT_LOG") - logins))" \
        "revoked 1, 200 anthropic, new logins 1"
    agent_stop_check "approle agent stops cleanly on SIGTERM, no sanitizer report"
else
    LIB_BLOCKED_REASON="byok-agent with approle did not start (see $AGENT_LOG)"
    t_blocked "${CASES[@]:0:6}"
fi

# ---- AppRole, a token reaching its max TTL ----
# token_ttl 9 s, token_max_ttl 18 s: renewals at ~6 s (back to 9 s) and ~12 s
# (6 s left to the max); the one at ~16 s comes back with ~2 s, less than a
# third of the first lease, so the agent logs in again in the background at
# ~17 s instead of renewing into the max TTL (and into 403s). The key cache
# keeps creds 1 s, so the calls keep reading creds through both tokens.
approle_agent byok-short '{"token_policies":["byok-agent"],"token_ttl":"9s","token_max_ttl":"18s"}' \
    '.keycache.max_ttl_s = 1'
# The log is appended to by every agent of this script: this one's lines come after.
log_from=$(($(wc -l <"$AGENT_LOG") + 1))
if agent_start; then
    ok=0
    codes=""
    for i in $(seq 21); do
        call "$SOCK" POST /v1/chat/completions "$(chat_body "openai/$CHAT_MODEL" false 4)"
        if [ "$CODE" = 200 ]; then ok=$((ok + 1)); else codes="$codes $CODE"; fi
        sleep 1
    done
    t_eq "approle max TTL: calls keep working while the token reaches its max TTL" "$ok$codes" "21"
    # The first two logins' times (seconds since the first), the replacement notice between them.
    timeline=$(tail -n "+$log_from" "$AGENT_LOG" | grep '^{' | jq -s -r '
        def t: ."@timestamp" | (.[0:19] + "Z" | fromdate) + ("0" + .[19:26] | tonumber);
        [.[] | select(."@message" == "vault login ok")] as $l
        | [.[] | select(."@message" | startswith("vault token cannot be renewed further"))] as $r
        | if ($l | length) < 2 or ($r | length) < 1 then "\($l | length) login(s), \($r | length) notice(s)"
          else (($l[1] | t) - ($l[0] | t)) as $d
          | if $d < 17.9 then "new token before the first expired" else "second login after \($d) s" end
          end')
    refused=$(tail -n "+$log_from" "$AGENT_LOG" | grep -c 'renewal refused')
    t_eq "approle max TTL: a new login before the token expires, no refused renewal" \
        "$timeline, $refused refused" "new token before the first expired, 0 refused"
    agent_stop_check "approle max TTL agent stops cleanly on SIGTERM, no sanitizer report"
else
    LIB_BLOCKED_REASON="byok-agent with approle did not start (see $AGENT_LOG)"
    t_blocked "${CASES[@]:5:3}"
fi

# ---- A token file holding a non-renewable token (e.g. a Vault Agent sink) ----
# The first token lasts 9 s and cannot be renewed; right after the first call
# the file is replaced with the next token, as Vault Agent does. The agent's
# renew timer re-reads the file at 2/3 of the TTL (~6 s) instead of asking
# renew-self (which Vault refuses). A request also re-reads a changed file, so
# no call to Vault may happen between the rewrite and the check: only /metrics
# is asked (it never calls Vault), usage reports wait an hour, and the login
# count (a token file load counts as one) must reach 2 before the first
# token's TTL ends.
NR_TTL=9
nr_token() {
    NR_CREATED=$(date +%s.%N)
    vault_api POST auth/token/create "{\"policies\":[\"byok-agent\"],\"ttl\":\"$1\",\"renewable\":false}"
    (
        umask 077
        echo "$VAULT_BODY" | jq -r -j .auth.client_token >"$LIB_TMP/nr-token.new"
    )
    mv "$LIB_TMP/nr-token.new" "$LIB_TMP/nr-token"
}
# nr_logins: the agent's Vault login count (token file loads included), from /metrics.
nr_logins() {
    call "$SOCK" GET /metrics ""
    echo "$BODY" | awk '$1 == "byok_vault_calls_total{event=\"login\"}" { print $2 }'
}
# now_since T: seconds from T (date +%s.%N) to now.
now_since() { awk -v t="$1" -v n="$(date +%s.%N)" 'BEGIN { printf "%.1f", n - t }'; }
nr_token "${NR_TTL}s"
first_created=$NR_CREATED
agent_config "$LISTENERS" ".vault.token_file = \"$LIB_TMP/nr-token\" | .keycache.max_ttl_s = 1 | .usage.report_interval_s = 3600 | .listeners[0].metrics = true"
log_from=$(($(wc -l <"$AGENT_LOG") + 1))
if agent_start; then
    call "$SOCK" POST /v1/chat/completions "$(chat_body "openai/$CHAT_MODEL" false 4)"
    first=$CODE
    logins0=$(nr_logins)
    nr_token 1h
    picked="login count ${logins0:-none} at start"
    while :; do
        n=$(nr_logins)
        at=$(now_since "$first_created")
        if [ "$logins0" = 1 ] && [ "$n" = 2 ]; then
            picked="new token loaded by the timer before the first expired"
            break
        fi
        if awk -v a="$at" -v t="$NR_TTL" 'BEGIN { exit !(a >= t) }'; then
            picked="login count ${n:-none} (from ${logins0:-none}) at $at s, the first token's TTL is $NR_TTL s"
            break
        fi
        sleep 0.2
    done
    # Past the first token's expiry: calls work with the new one.
    sleep "$(awk -v a="$(now_since "$first_created")" -v t="$NR_TTL" 'BEGIN { d = t + 1 - a; print (d > 0 ? d : 0) }')"
    call "$SOCK" POST /v1/chat/completions "$(chat_body "openai/$CHAT_MODEL" false 4)"
    refused=$(tail -n "+$log_from" "$AGENT_LOG" | grep -c 'renewal refused')
    t_eq "token file, non-renewable token: the file is re-read at 2/3 of the TTL, calls work past the first token's expiry, no renew-self" \
        "$first $CODE, $picked, $refused refused" "200 200, new token loaded by the timer before the first expired, 0 refused"
    kill -TERM "$AGENT_PID" 2>/dev/null
    wait "$AGENT_PID" 2>/dev/null
else
    t_fail "token file, non-renewable token: the file is re-read at 2/3 of the TTL, calls work past the first token's expiry, no renew-self" "agent did not start"
fi

# ---- Kubernetes ----
# A real Vault's kubernetes auth checks each JWT with a Kubernetes API server
# (TokenReview) and needs kubernetes_host: there is none here.
if [ "$BYOK_VAULT" = real ]; then
    for c in "kubernetes: agent logs in with a service-account JWT and the call succeeds" \
        "kubernetes agent stops cleanly on SIGTERM, no sanitizer report" \
        "kubernetes: a JWT from another signer is refused (503, nothing sent upstream)" \
        "kubernetes (bad signer) agent stops cleanly on SIGTERM, no sanitizer report"; do
        t_skip "$c" "a real Vault's kubernetes auth needs a Kubernetes API server (TokenReview)"
    done
else
    b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
    make_jwt() { # make_jwt KEYFILE: a service-account token for byok/byok-agent, valid 10 minutes
        local now header payload sig
        now=$(date +%s)
        header=$(printf '{"alg":"RS256","typ":"JWT"}' | b64url)
        payload=$(printf '{"iss":"kubernetes/serviceaccount","sub":"system:serviceaccount:byok:byok-agent","kubernetes.io/serviceaccount/namespace":"byok","kubernetes.io/serviceaccount/service-account.name":"byok-agent","iat":%d,"exp":%d}' \
            "$now" $((now + 600)) | b64url)
        sig=$(printf '%s.%s' "$header" "$payload" | openssl dgst -sha256 -sign "$1" -binary | b64url)
        printf '%s.%s.%s' "$header" "$payload" "$sig"
    }
    vault_api POST sys/auth/kubernetes '{"type":"kubernetes"}'
    [ "$VAULT_CODE" -lt 300 ] || t_diag "enabling kubernetes: HTTP $VAULT_CODE $VAULT_BODY"
    openssl genrsa -out "$LIB_TMP/sa.key" 2048 2>/dev/null
    openssl rsa -in "$LIB_TMP/sa.key" -pubout -out "$LIB_TMP/sa.pub" 2>/dev/null
    openssl genrsa -out "$LIB_TMP/other.key" 2048 2>/dev/null
    vault_api POST auth/kubernetes/config "$(jq -n --rawfile k "$LIB_TMP/sa.pub" '{pem_keys: [$k]}')"
    [ "$VAULT_CODE" -lt 300 ] || t_diag "kubernetes config: HTTP $VAULT_CODE $VAULT_BODY"
    vault_api POST auth/kubernetes/role/byok-agent \
        '{"bound_service_account_names":["byok-agent"],"bound_service_account_namespaces":["byok"],"token_policies":["byok-agent"],"token_ttl":"1h"}'
    [ "$VAULT_CODE" -lt 300 ] || t_diag "kubernetes role: HTTP $VAULT_CODE $VAULT_BODY"
    make_jwt "$LIB_TMP/sa.key" >"$LIB_TMP/sa.jwt"
    cp "$LIB_TMP/sa.jwt" "$LIB_TMP/sa-good.jwt"
    agent_config "$LISTENERS" ".vault |= (del(.token_file) | .kubernetes = {role: \"byok-agent\", jwt_file: \"$LIB_TMP/sa.jwt\"})"
    if agent_start; then
        call "$SOCK" POST /v1/chat/completions "$(chat_body "openai/$CHAT_MODEL" false 4)"
        t_eq "kubernetes: agent logs in with a service-account JWT and the call succeeds" \
            "$CODE $(hdr X-BYOK-Provider)" "200 openai"
        agent_stop_check "kubernetes agent stops cleanly on SIGTERM, no sanitizer report"
    else
        t_fail "kubernetes: agent logs in with a service-account JWT and the call succeeds" "agent did not start"
        t_fail "kubernetes agent stops cleanly on SIGTERM, no sanitizer report" "agent did not start"
    fi

    make_jwt "$LIB_TMP/other.key" >"$LIB_TMP/sa.jwt"
    if agent_start; then
        since=$(mock_last_seq)
        call "$SOCK" POST /v1/chat/completions "$(chat_body "openai/$CHAT_MODEL" false 4)"
        n=$(mock_requests_since "$since" | jq length)
        t_eq "kubernetes: a JWT from another signer is refused (503, nothing sent upstream)" \
            "$CODE $(echo "$BODY" | jq -r '.error | type' 2>/dev/null) $n" "503 object 0"
        agent_stop_check "kubernetes (bad signer) agent stops cleanly on SIGTERM, no sanitizer report"
    else
        t_fail "kubernetes: a JWT from another signer is refused (503, nothing sent upstream)" "agent did not start"
        t_fail "kubernetes (bad signer) agent stops cleanly on SIGTERM, no sanitizer report" "agent did not start"
    fi
fi

# ---- Vault auth files checked before start; login backoff ----
# --check-config (also the systemd unit's ExecStartPre, the start and every
# reload) refuses AppRole files that are missing, group/world accessible or
# not readable by the agent's user, and a missing Kubernetes JWT, naming the
# key and the reason; a token_file may be absent (a Vault Agent sink writes it
# later). Never a file's content in the message.
approle_agent byok-backoff '{"token_policies":["byok-agent"],"token_ttl":"1h"}'
good_secret=$(cat "$LIB_TMP/byok-backoff.secret_id")
cfg_check() { # cfg_check JQ_FILTER: --check-config on AGENT_CONFIG adjusted; "rc message"
    jq "$1" "$AGENT_CONFIG" >"$LIB_TMP/check.json"
    local out rc
    out=$("$AGENT_BIN" --check-config -c "$LIB_TMP/check.json" 2>&1)
    rc=$?
    echo "$rc ${out//$good_secret/SECRET-LEAKED}"
}
checks=()
checks+=("$(cfg_check ".vault.approle.secret_id_file = \"$LIB_TMP/no-such-secret_id\"")")
chmod 0640 "$LIB_TMP/byok-backoff.secret_id"
checks+=("$(cfg_check .)")
chmod 0600 "$LIB_TMP/byok-backoff.secret_id"
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
    # As root every file opens: check as nobody instead (the files stay root's,
    # 0600; the directory is opened to search for that check only).
    mode=$(stat -c %a "$LIB_TMP")
    chmod 0711 "$LIB_TMP"
    jq 'del(.upstream.ca_file)' "$AGENT_CONFIG" >"$LIB_TMP/check.json" && chmod 0644 "$LIB_TMP/check.json"
    out=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$AGENT_BIN" --check-config -c "$LIB_TMP/check.json" 2>&1)
    checks+=("$? ${out//$good_secret/SECRET-LEAKED}")
    chmod "$mode" "$LIB_TMP"
else
    chmod 0000 "$LIB_TMP/byok-backoff.role_id"
    checks+=("$(cfg_check .)")
    chmod 0600 "$LIB_TMP/byok-backoff.role_id"
fi
checks+=("$(cfg_check ".vault |= (del(.approle) | .kubernetes = {role: \"r\", jwt_file: \"$LIB_TMP/no-such-jwt\"})")")
checks+=("$(cfg_check ".vault |= (del(.approle) | .token_file = \"$LIB_TMP/no-token-yet\")")")
want=("1 byok-agent: config: vault.approle.secret_id_file: $LIB_TMP/no-such-secret_id: missing"
    "1 byok-agent: config: vault.approle.secret_id_file: $LIB_TMP/byok-backoff.secret_id: group/world accessible (chmod 600)"
    "1 byok-agent: config: vault.approle.role_id_file: $LIB_TMP/byok-backoff.role_id: not readable by this user (uid "
    "1 byok-agent: config: vault.kubernetes.jwt_file: $LIB_TMP/no-such-jwt: missing"
    "0 byok-agent: $LIB_TMP/check.json: OK")
bad=""
for i in "${!want[@]}"; do
    case "${checks[$i]}" in "${want[$i]}"*) ;; *) bad="$bad [${checks[$i]}] wanted [${want[$i]}...]" ;; esac
done
t_eq "--check-config: missing, group-readable or unreadable AppRole files and a missing JWT refused naming the key; an absent token_file passes" \
    "${bad:-all as expected}" "all as expected"

# A wrong secret_id: Vault refuses the login. Before the backoff every call
# logged in again (6 logins for 5 calls); now a failed login holds further
# ones for 1 s, then 2, 4 ... 30 s, and the calls fail at once. Made
# group-readable, the file is logged once per backoff step (before: once per
# probed provider, 13 a call). Rewritten with the right secret_id, it is
# tried at once. Logins counted from the agent's Vault request counter
# (while no token is held, every Vault request it sends is a login).
(
    umask 077
    printf 'not-the-secret-id' >"$LIB_TMP/byok-backoff.secret_id"
)
agent_config "$LISTENERS" ".vault |= (del(.token_file) | .approle = {role_id_file: \"$LIB_TMP/byok-backoff.role_id\", secret_id_file: \"$LIB_TMP/byok-backoff.secret_id\"}) | .listeners[0].metrics = true"
log_from=$(($(wc -l <"$AGENT_LOG") + 1))
vault_requests() {
    call "$SOCK" GET /metrics ""
    echo "$BODY" | awk '$1 == "byok_vault_calls_total{event=\"request\"}" { print $2 }'
}
log_count() { tail -n "+$log_from" "$AGENT_LOG" | grep -c "\"@message\":\"$1\""; }
if agent_start; then
    codes=""
    for i in 1 2 3 4 5; do
        call "$SOCK" POST /v1/chat/completions "$(chat_body auto false 4)"
        codes="$codes $CODE $(echo "$BODY" | jq -r .error.code 2>/dev/null)"
    done
    n=$(vault_requests)
    failed=$(log_count "vault login failed")
    t_eq "approle, wrong secret_id: 5 auto calls get 503 vault_unavailable with at most 3 logins and 3 'login failed' lines" \
        "$codes, $([ "${n:-99}" -le 3 ] && [ "$failed" -le 3 ] && echo few || echo "$n logins, $failed lines")" \
        "$(printf ' 503 vault_unavailable%.0s' 1 2 3 4 5), few"
    chmod 0640 "$LIB_TMP/byok-backoff.secret_id"
    for i in 1 2 3 4 5; do
        call "$SOCK" POST /v1/chat/completions "$(chat_body auto false 4)"
    done
    unreadable=$(log_count "vault login credentials unreadable")
    t_eq "approle, secret_id made group-readable: 5 auto calls log 'credentials unreadable' at most twice" \
        "$CODE $([ "$unreadable" -ge 1 ] && [ "$unreadable" -le 2 ] && echo "1 or 2" || echo "$unreadable") line(s)" "503 1 or 2 line(s)"
    (
        umask 077
        printf '%s' "$good_secret" >"$LIB_TMP/byok-backoff.secret_id.new"
    )
    mv "$LIB_TMP/byok-backoff.secret_id.new" "$LIB_TMP/byok-backoff.secret_id"
    call "$SOCK" POST /v1/chat/completions "$(chat_body "openai/$CHAT_MODEL" false 4)"
    t_eq "approle, a fixed secret_id file is tried at once: the next call succeeds" \
        "$CODE $(hdr X-BYOK-Provider) $(log_count "vault login ok")" "200 openai 1"
    agent_stop_check "approle (backoff) agent stops cleanly on SIGTERM, no sanitizer report"
else
    LIB_BLOCKED_REASON="byok-agent with approle did not start (see $AGENT_LOG)"
    t_blocked "${CASES[@]:15:4}"
fi

# ---- vault.address over http:// to another host: tokens and keys in clear ----
warn_check=$(cfg_check '.vault.address = "http://vault.example:8200"' | head -n 1)
t_eq "vault.address http:// to a non-loopback host: --check-config warns (exit 0); the loopback agents above never did" \
    "$warn_check; $(grep -c 'host that is not loopback' "$AGENT_LOG") in the agents' log" \
    "0 byok-agent: warning: vault.address is http:// to a host that is not loopback: the Vault token and provider keys cross the network unencrypted; 0 in the agents' log"

# The agents' own Vault credentials are secrets too: the files they were read from hold them,
# nothing the agents wrote or answered may. Needles go to grep through a pipe (never argv);
# a failure names the files only.
vault_creds() { # one per line (the files end without a newline)
    local f
    for f in "$LIB_TMP"/*.role_id "$LIB_TMP"/*.secret_id "$LIB_TMP"/*.jwt "$LIB_TMP"/*token; do
        [ -s "$f" ] && { cat "$f"; echo; }
    done
}
hits=$(grep -laF -f <(vault_creds) -- "$AGENT_LOG" "$LIB_RESP_LOG" "$MOCK_RECORD" 2>/dev/null |
    tr '\n' ' ')
t_eq "vault credentials (role_id, secret_id, JWT, token files): in no agent log line, app answer or provider request" \
    "$hits" ""

canary_scan "canary: nowhere but the provider request" "$KEY" "$KEY2"
t_done
