#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# The agent logging in to Vault with a TLS client certificate (vault.cert,
# Vault's cert auth method). The stand-in listens with TLS itself
# (-tls-cert/-tls-key) and reads the certificate from the verified
# connection; the CAs and certificates are made here with openssl:
#   - node-1's certificate (node CA, CN node-1.e2e) logs in through
#     auth/cert/login (role "nodes": that CA, CNs node-*) and a call is answered;
#   - a renewed pair written over the files (from a new CA the role now trusts
#     alone, as after a CA rotation) is read at the next login: the agent's
#     token revoked (by accessor, as an operator would), the next creds read
#     gets 403, lookup-self says the token is gone, the agent logs in again
#     with the new pair and the call succeeds;
#   - a certificate from a CA no role trusts is refused (400): calls are 503
#     vault_unavailable, nothing is sent upstream, the failed logins are few
#     (backoff) and logged with method and status; a good pair written over
#     the files is tried at once; so are an expired certificate of the
#     trusted CA (refused 400) and a key that does not match its
#     certificate (curl cannot load the pair: "tls handshake failed");
#   - --check-config refuses a group-readable key, an http:// address and a
#     missing certificate file, naming the key;
#   - no line of any private key in any file of the run but the key files.
. "$(dirname "$0")/lib.sh"

CASES=("cert: agent logs in with its client certificate and the call succeeds"
    "cert: the token came from auth/cert/login"
    "cert renewed: after a revoked token the next login reads the new pair (role trusts only the new CA) and the call succeeds"
    "cert agent stops cleanly on SIGTERM, no sanitizer report"
    "cert from another CA: 5 calls get 503 vault_unavailable, nothing sent upstream, at most 3 logins and 3 'login failed' lines (method cert, status 400)"
    "cert expired (trusted CA): the changed files are tried at once, refused 400 (one more 'login failed' line), 503 vault_unavailable, nothing sent"
    "cert whose key does not match: the changed files are tried at once, 'tls handshake failed' logged once for 3 calls, 503 vault_unavailable, nothing sent"
    "cert from another CA: a good pair written over the files is tried at once, the next call succeeds"
    "cert (refused) agent stops cleanly on SIGTERM, no sanitizer report"
    "--check-config: group-readable key, http:// address and missing certificate refused naming the key; the good config passes"
    "private keys: no line of any in the agent log, app answers, provider requests or Vault logs"
    "canary: nowhere but the provider request")
if [ "${BYOK_VAULT:-sim}" = real ]; then
    for c in "${CASES[@]}"; do t_skip "$c" "needs the stand-in's TLS listener (a dev-mode Vault serves plain http)"; done
    t_done
    exit 0
fi

pki_init
CLIENT_EXT="extendedKeyUsage=clientAuth"
pki_ok=1
mk_ca node-ca && mk_ca node-ca2 && mk_ca other-ca || pki_ok=0
mk_cert node-ca node1 node-1.e2e "$CLIENT_EXT" || pki_ok=0
mk_cert node-ca2 node1-renewed node-1.e2e "$CLIENT_EXT" || pki_ok=0
mk_cert other-ca intruder node-1.e2e "$CLIENT_EXT" || pki_ok=0
mk_cert node-ca2 node1-fixed node-1.e2e "$CLIENT_EXT" || pki_ok=0
# mk_cert with -days -1: not after the day before (an expired certificate of the trusted CA).
mk_expired() {
    (
        umask 077
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$2" \
            -keyout "$PKI/$1.key" -out "$PKI/$1.csr" 2>/dev/null
    )
    printf '%s\n' "$CLIENT_EXT" >"$PKI/$1.ext"
    openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/node-ca2.pem" -CAkey "$PKI/node-ca2.key" \
        -CAcreateserial -days -1 -extfile "$PKI/$1.ext" -out "$PKI/$1.pem" 2>/dev/null
}
mk_expired node1-expired node-1.e2e || pki_ok=0
if [ "$pki_ok" != 1 ]; then
    LIB_BLOCKED_REASON="openssl could not make the test certificates"
    t_block_all
fi
lib_up_tls && lib_require "$AGENT_BIN" || t_block_all
TKEY=$(lib_canary)
key_put acme openai "$TKEY" || t_block_all
SOCK=$AGENT_DIR/acme.sock
LISTENERS="[{\"path\": \"$SOCK\", \"mode\": \"0660\", \"tenant\": \"acme\", \"app\": \"cert\", \"metrics\": true}]"
BODY_JSON=$(chat_body "openai/$CHAT_MODEL" false 4 "cert auth")

# cert_role CA_NAME [TTLS]: role "nodes" trusting that CA for CNs node-*, policy byok-agent.
cert_role() {
    vault_api POST auth/cert/certs/nodes "$(jq -n --rawfile ca "$PKI/$1.pem" --arg ttl "${2:-1h}" \
        '{certificate: $ca, token_policies: ["byok-agent"], token_ttl: $ttl, token_max_ttl: $ttl,
          allowed_common_names: ["node-*"]}')"
    [ "$VAULT_CODE" -lt 300 ] || t_diag "cert role: HTTP $VAULT_CODE $VAULT_BODY"
}
# use_pair NAME: the agent's cert/key files become NAME's (renamed into place, key 0600).
use_pair() {
    cp "$PKI/$1.pem" "$LIB_TMP/agent.crt.new" && mv "$LIB_TMP/agent.crt.new" "$LIB_TMP/agent.crt"
    (
        umask 077
        cp "$PKI/$1.key" "$LIB_TMP/agent.key.new"
    )
    mv "$LIB_TMP/agent.key.new" "$LIB_TMP/agent.key"
}
CERT_FILTER=".vault |= (del(.token_file) | .ca_file = \"$PKI/server-ca.pem\"
    | .cert = {cert_file: \"$LIB_TMP/agent.crt\", key_file: \"$LIB_TMP/agent.key\", name: \"nodes\"})"
log_count() { tail -n "+$log_from" "$AGENT_LOG" | grep -c "\"@message\":\"$1\""; }

# ---- a good certificate, then a renewed one ----
cert_role node-ca
use_pair node1
agent_config "$LISTENERS" "$CERT_FILTER | .keycache.max_ttl_s = 1"
log_from=1
if agent_start; then
    started=$SECONDS
    since=$(mock_last_seq)
    call "$SOCK" POST /v1/chat/completions "$BODY_JSON"
    got=$(mock_requests_since "$since" | jq -r '.[0].headers.Authorization[0] // "" | sub("^Bearer "; "")')
    t_eq "cert: agent logs in with its client certificate and the call succeeds" \
        "$CODE $([ "$got" == "$TKEY" ] && echo key-ok || echo key-wrong)" "200 key-ok"
    # cert_tokens [revoke]: the accessors of tokens issued by auth/cert/login (revoked with "revoke").
    cert_tokens() {
        local acc
        vault_api LIST auth/token/accessors
        for acc in $(echo "$VAULT_BODY" | jq -r '.data.keys[]'); do
            vault_api POST auth/token/lookup-accessor "{\"accessor\": \"$acc\"}"
            [ "$(echo "$VAULT_BODY" | jq -r .data.path)" = auth/cert/login ] || continue
            echo "$acc"
            [ "${1:-}" = revoke ] && vault_api POST auth/token/revoke-accessor "{\"accessor\": \"$acc\"}"
        done
    }
    t_eq "cert: the token came from auth/cert/login" "$(cert_tokens | wc -l)" 1
    # cert-manager renews the pair (here under a new CA, which the role now
    # trusts alone): the old certificate could not log in any more.
    cert_role node-ca2
    use_pair node1-renewed
    # A 403 on a token younger than 10 s is taken for a policy refusal (no
    # login storm): wait that out, then revoke the agent's token.
    sleep $((11 - (SECONDS - started)))
    revoked=$(cert_tokens revoke | wc -l)
    sleep 1.1 # the key cache keeps creds 1 s: the next call reads them
    call "$SOCK" POST /v1/chat/completions "$BODY_JSON"
    t_eq "cert renewed: after a revoked token the next login reads the new pair (role trusts only the new CA) and the call succeeds" \
        "revoked $revoked, $CODE, $(log_count "vault login ok") logins, $(log_count "vault login failed") failed" \
        "revoked 1, 200, 2 logins, 0 failed"
    agent_stop_check "cert agent stops cleanly on SIGTERM, no sanitizer report"
else
    t_blocked "${CASES[@]:0:4}"
fi

# ---- a certificate from a CA no role trusts; then a good pair ----
cert_role node-ca2 1h
use_pair intruder
agent_config "$LISTENERS" "$CERT_FILTER"
log_from=$(($(wc -l <"$AGENT_LOG") + 1))
vault_requests() {
    call "$SOCK" GET /metrics ""
    echo "$BODY" | awk '$1 == "byok_vault_calls_total{event=\"request\"}" { print $2 }'
}
if agent_start; then
    since=$(mock_last_seq)
    codes=""
    for i in 1 2 3 4 5; do
        call "$SOCK" POST /v1/chat/completions "$BODY_JSON"
        codes="$codes $CODE $(echo "$BODY" | jq -r .error.code 2>/dev/null)"
    done
    n=$(vault_requests)
    sent=$(mock_requests_since "$since" | jq length)
    failed=$(log_count "vault login failed")
    line=$(tail -n "+$log_from" "$AGENT_LOG" | grep -m1 '"@message":"vault login failed"' |
        jq -r '"\(.method) \(.status)"' 2>/dev/null)
    t_eq "cert from another CA: 5 calls get 503 vault_unavailable, nothing sent upstream, at most 3 logins and 3 'login failed' lines (method cert, status 400)" \
        "$codes, $sent sent, $([ "${n:-99}" -le 3 ] && [ "$failed" -ge 1 ] && [ "$failed" -le 3 ] && echo few || echo "$n logins, $failed lines"), $line" \
        "$(printf ' 503 vault_unavailable%.0s' 1 2 3 4 5), 0 sent, few, cert 400"
    # cert-manager failed to renew in time: the pair from the trusted CA, expired.
    use_pair node1-expired
    failed0=$(log_count "vault login failed")
    since=$(mock_last_seq)
    call "$SOCK" POST /v1/chat/completions "$BODY_JSON"
    line=$(tail -n "+$log_from" "$AGENT_LOG" | grep '"@message":"vault login failed"' | tail -n 1 |
        jq -r '"\(.method) \(.status)"' 2>/dev/null)
    t_eq "cert expired (trusted CA): the changed files are tried at once, refused 400 (one more 'login failed' line), 503 vault_unavailable, nothing sent" \
        "$CODE $(echo "$BODY" | jq -r .error.code 2>/dev/null), $(mock_requests_since "$since" | jq length) sent, $(($(log_count "vault login failed") - failed0)) new: $line" \
        "503 vault_unavailable, 0 sent, 1 new: cert 400"
    # The certificate from the right CA, but another certificate's key: curl
    # cannot load the pair, the handshake never starts. A file change ends the
    # backoff (one new login), then the backoff holds the next calls.
    cp "$PKI/node1-fixed.pem" "$LIB_TMP/agent.crt.new" && mv "$LIB_TMP/agent.crt.new" "$LIB_TMP/agent.crt"
    failed0=$(log_count "vault login failed")
    since=$(mock_last_seq)
    codes=""
    for i in 1 2 3; do
        call "$SOCK" POST /v1/chat/completions "$BODY_JSON"
        codes="$codes $CODE $(echo "$BODY" | jq -r .error.code 2>/dev/null)"
    done
    hs=$(tail -n "+$log_from" "$AGENT_LOG" | grep '"@message":"vault login failed"' | grep -c '"status":"tls handshake failed')
    t_eq "cert whose key does not match: the changed files are tried at once, 'tls handshake failed' logged once for 3 calls, 503 vault_unavailable, nothing sent" \
        "$codes, $(mock_requests_since "$since" | jq length) sent, $hs handshake line(s), $(($(log_count "vault login failed") - failed0)) new" \
        "$(printf ' 503 vault_unavailable%.0s' 1 2 3), 0 sent, 1 handshake line(s), 1 new"
    use_pair node1-fixed
    call "$SOCK" POST /v1/chat/completions "$BODY_JSON"
    t_eq "cert from another CA: a good pair written over the files is tried at once, the next call succeeds" \
        "$CODE $(log_count "vault login ok")" "200 1"
    agent_stop_check "cert (refused) agent stops cleanly on SIGTERM, no sanitizer report"
else
    t_blocked "${CASES[@]:4:5}"
fi

# ---- --check-config ----
cfg_check() { # cfg_check JQ_FILTER: --check-config on AGENT_CONFIG adjusted; "rc message"
    jq "$1" "$AGENT_CONFIG" >"$LIB_TMP/check.json"
    "$AGENT_BIN" --check-config -c "$LIB_TMP/check.json" 2>&1 | head -n 1
    echo "rc ${PIPESTATUS[0]}"
}
checks=()
chmod 0640 "$LIB_TMP/agent.key"
checks+=("$(cfg_check .)")
chmod 0600 "$LIB_TMP/agent.key"
checks+=("$(cfg_check ".vault.address = \"http://127.0.0.1:$VAULT_PORT\"")")
checks+=("$(cfg_check ".vault.cert.cert_file = \"$LIB_TMP/no-such.crt\"")")
checks+=("$(cfg_check .)")
want=("byok-agent: config: vault.cert.key_file: $LIB_TMP/agent.key: group/world accessible (chmod 600)"$'\n'"rc 1"
    "byok-agent: config: vault.address: must be https:// with vault.cert"
    "byok-agent: config: vault.cert.cert_file: $LIB_TMP/no-such.crt: missing"$'\n'"rc 1"
    "byok-agent: $LIB_TMP/check.json: OK"$'\n'"rc 0")
bad=""
for i in "${!want[@]}"; do
    case "${checks[$i]}" in "${want[$i]}"*) ;; *) bad="$bad [${checks[$i]}] wanted [${want[$i]}...]" ;; esac
done
t_eq "--check-config: group-readable key, http:// address and missing certificate refused naming the key; the good config passes" \
    "${bad:-all as expected}" "all as expected"

# ---- no private key material outside the key files ----
# One base64 line from the middle of each private key (the agent's, the CAs',
# the stand-in's); grep reads them through a pipe, a failure names files only.
key_lines() {
    local f
    for f in "$PKI"/*.key; do
        grep -v -- '-----' "$f" | sed -n 2p
    done
}
hits=$(grep -rlaF -f <(key_lines) -- "$LIB_TMP" 2>/dev/null |
    grep -v -e "^$PKI/" -e "^$LIB_TMP/agent.key" | tr '\n' ' ')
t_eq "private keys: no line of any in the agent log, app answers, provider requests or Vault logs" "$hits" ""

canary_scan "canary: nowhere but the provider request" "$TKEY"
t_done
[ "$T_FAILED" -eq 0 ]
