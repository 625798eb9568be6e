#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# vault.cert logins when the network or the configuration changes under them
# (40-vault-cert-auth.sh covers the logins themselves). The stand-in listens
# with TLS and verifies client certificates in the handshake
# (-tls-client-ca: the two node CAs), as a strict front of Vault would; the
# agent reaches it through a small TCP relay of this script's that either
# forwards connections or resets them after the ClientHello:
#   - a handshake reset (Vault restarting, a load balancer dropping the
#     connection) is Vault unreachable, not a refused login: no "vault login
#     failed" line, no login backoff, and the first call after the relay
#     forwards again succeeds at once;
#   - a reload that changes the certificate and key files (and the role
#     name), or only the role name, logs in again at once with them, without
#     waiting for a call or for the token to need renewing; the next call
#     succeeds;
#   - a certificate the handshake refuses (a fatal TLS alert: a CA the
#     stand-in's listener does not trust) is still a refused login: "tls
#     handshake failed", backoff, few logins for many calls;
#   - Vault's own certificate not trusted (vault.ca_file names another CA):
#     the agent's side aborts the handshake, a configuration error and not an
#     outage: /healthz says login_failed with the reason, the log line names
#     it, the login backoff holds the handshakes to a few (counted at the
#     relay) for many calls; a reload with the right CA file logs in at once
#     and /healthz is ok again without a call.
. "$(dirname "$0")/lib.sh"

CASES=("handshake reset: 4 calls get 503 vault_unavailable, 'vault unreachable' logged, no 'vault login failed' line"
    "handshake reset: the first call after Vault is reachable again succeeds (no login backoff)"
    "reload with a new certificate, key and role: a login with them at once (no call), a token of role nodes2"
    "reload with a new certificate: the next call succeeds"
    "reload changing only cert.name: a login at once, a second token of role nodes, the next call succeeds"
    "cert agent stops cleanly on SIGTERM, no sanitizer report"
    "handshake refusal (TLS alert): 5 calls get 503 vault_unavailable, at most 3 logins, 'tls handshake failed' logged, 'vault unreachable' at most once"
    "refused-cert agent stops cleanly on SIGTERM, no sanitizer report"
    "Vault's certificate not trusted: /healthz vault login_failed, vault_reason 'tls: Vault's certificate not trusted', 'vault login failed' names it, no 'vault unreachable'"
    "Vault's certificate not trusted: 16 calls over 4 s get 503 vault_unavailable, at most 4 handshakes reach the relay (login backoff, no storm)"
    "vault.ca_file fixed and SIGHUP: a login at once, /healthz vault ok without vault_reason (no call needed), the next call succeeds"
    "untrusted-CA agent stops cleanly on SIGTERM, no sanitizer report"
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
mk_cert node-ca2 node2 node-2.e2e "$CLIENT_EXT" || pki_ok=0
mk_cert other-ca intruder node-1.e2e "$CLIENT_EXT" || pki_ok=0
cat "$PKI/node-ca.pem" "$PKI/node-ca2.pem" >"$PKI/client-cas.pem" || pki_ok=0
if [ "$pki_ok" != 1 ]; then
    LIB_BLOCKED_REASON="openssl could not make the test certificates"
    t_block_all
fi
lib_up_tls -tls-client-ca "$PKI/client-cas.pem" && lib_require "$AGENT_BIN" || t_block_all
TKEY=$(lib_canary)
key_put acme openai "$TKEY" || t_block_all
SOCK=$AGENT_DIR/acme.sock
LISTENERS="[{\"path\": \"$SOCK\", \"mode\": \"0660\", \"tenant\": \"acme\", \"app\": \"cert\", \"metrics\": true}]"
BODY_JSON=$(chat_body "openai/$CHAT_MODEL" false 4 "cert trouble")

# cert_role NAME CA_NAME CN_GLOB: a role trusting that CA for those CNs, policy byok-agent.
cert_role() {
    vault_api POST "auth/cert/certs/$1" "$(jq -n --rawfile ca "$PKI/$2.pem" --arg cn "$3" \
        '{certificate: $ca, token_policies: ["byok-agent"], token_ttl: "1h", token_max_ttl: "1h",
          allowed_common_names: [$cn]}')"
    [ "$VAULT_CODE" -lt 300 ] || t_diag "cert role: HTTP $VAULT_CODE $VAULT_BODY"
}
cert_role nodes node-ca "node-1.*"
cert_role nodes2 node-ca2 "node-2.*"
# How many tokens auth/cert/login issued per role: "nodes:1 nodes2:1".
cert_token_roles() {
    local acc
    vault_api LIST auth/token/accessors
    for acc in $(echo "$VAULT_BODY" | jq -r '.data.keys[]'); do
        vault_api POST auth/token/lookup-accessor "{\"accessor\": \"$acc\"}"
        [ "$(echo "$VAULT_BODY" | jq -r .data.path)" = auth/cert/login ] || continue
        echo "$VAULT_BODY" | jq -r '.data.meta.cert_name'
    done | sort | uniq -c | awk '{ printf "%s%s:%s", sep, $2, $1; sep = " " }'
}

# The relay: forwards 127.0.0.1:RELAY_PORT to the stand-in, or (while the
# mode file says "reset") reads the ClientHello and resets the connection.
RELAY_PORT=$(lib_free_port)
RELAY_MODE=$LIB_TMP/relay.mode
echo reset >"$RELAY_MODE"
cat >"$LIB_TMP/relay.py" <<'EOF'
import socket, struct, sys, threading
port, backend, mode_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
def serve(c):
    with open(mode_file + ".conns", "a") as f:
        f.write("c\n")
    if open(mode_file).read().strip() == "reset":
        try:
            c.recv(4096)
        except OSError:
            pass
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
        return
    u = socket.create_connection(("127.0.0.1", backend))
    threading.Thread(target=pipe, args=(u, c), daemon=True).start()
    pipe(c, u)
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", port))
l.listen(64)
while True:
    c, _ = l.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
EOF
lib_spawn "$LIB_TMP/relay.log" "$PY" "$LIB_TMP/relay.py" "$RELAY_PORT" "$VAULT_PORT" "$RELAY_MODE"
lib_wait_for 10 bash -c "echo >/dev/tcp/127.0.0.1/$RELAY_PORT" 2>/dev/null || t_diag "relay did not start"

# use_pair NAME: the agent's cert/key files become NAME's (key 0600).
use_pair() {
    cp "$PKI/$1.pem" "$LIB_TMP/$1.crt"
    (
        umask 077
        cp "$PKI/$1.key" "$LIB_TMP/$1.agent.key"
    )
}
# cert_filter NAME ROLE [CA]: the agent's vault settings for pair NAME, role ROLE,
# through the relay, trusting CA (default server-ca, the one that signed Vault's).
cert_filter() {
    echo ".vault |= (del(.token_file) | .ca_file = \"$PKI/${3:-server-ca}.pem\"
        | .address = \"https://127.0.0.1:$RELAY_PORT\"
        | .cert = {cert_file: \"$LIB_TMP/$1.crt\", key_file: \"$LIB_TMP/$1.agent.key\", name: \"$2\"})"
}
log_count() { tail -n "+$log_from" "$AGENT_LOG" | grep -c "\"@message\":\"$1\""; }
calls() { # calls N: N calls; their codes and error codes
    local i out=""
    for ((i = 0; i < $1; i++)); do
        call "$SOCK" POST /v1/chat/completions "$BODY_JSON"
        out="$out $CODE $(echo "$BODY" | jq -r '.error.code // "ok"' 2>/dev/null)"
    done
    echo "$out"
}

# ---- a handshake reset, then Vault back; then reloads with a new certificate ----
use_pair node1
use_pair node2
agent_config "$LISTENERS" "$(cert_filter node1 nodes)"
log_from=1
if agent_start; then
    codes=$(calls 4)
    t_eq "${CASES[0]}" \
        "$codes, $([ "$(log_count "vault unreachable")" -ge 1 ] && echo unreachable-logged), $(log_count "vault login failed") failed" \
        "$(printf ' 503 vault_unavailable%.0s' 1 2 3 4), unreachable-logged, 0 failed"
    echo pass >"$RELAY_MODE"
    codes=$(calls 1)
    t_eq "${CASES[1]}" "$codes, $(log_count "vault login ok") login ok" " 200 ok, 1 login ok"

    # A reload to node2's pair and role nodes2: a login with them at once.
    jq "$(cert_filter node2 nodes2)" "$AGENT_CONFIG" >"$AGENT_CONFIG.new" && mv "$AGENT_CONFIG.new" "$AGENT_CONFIG"
    kill -HUP "$AGENT_PID"
    lib_wait_for 10 bash -c "[ \$(tail -n +$log_from '$AGENT_LOG' | grep -c '\"@message\":\"vault login ok\"') -ge 2 ]"
    t_eq "${CASES[2]}" "$(log_count "vault login ok") login ok, $(log_count "vault login failed") failed, tokens: $(cert_token_roles)" \
        "2 login ok, 0 failed, tokens: nodes:1 nodes2:1"
    codes=$(calls 1)
    t_eq "${CASES[3]}" "$codes" " 200 ok"

    # Only the role name changes (node1's pair is trusted by role nodes alone).
    jq "$(cert_filter node1 nodes)" "$AGENT_CONFIG" >"$AGENT_CONFIG.new" && mv "$AGENT_CONFIG.new" "$AGENT_CONFIG"
    kill -HUP "$AGENT_PID"
    lib_wait_for 10 bash -c "[ \$(tail -n +$log_from '$AGENT_LOG' | grep -c '\"@message\":\"vault login ok\"') -ge 3 ]"
    codes=$(calls 1)
    t_eq "${CASES[4]}" "$(log_count "vault login ok") login ok, tokens: $(cert_token_roles),$codes" \
        "3 login ok, tokens: nodes:2 nodes2:1, 200 ok"
    agent_stop_check "${CASES[5]}"
else
    t_blocked "${CASES[@]:0:6}"
fi

# ---- a certificate the handshake refuses (its CA is not in -tls-client-ca) ----
use_pair intruder
cert_role intruders other-ca "node-1.*" # Vault would take it: only the handshake refuses it
agent_config "$LISTENERS" "$(cert_filter intruder intruders)"
log_from=$(($(wc -l <"$AGENT_LOG") + 1))
if agent_start; then
    codes=$(calls 5)
    call "$SOCK" GET /metrics ""
    n=$(echo "$BODY" | awk '$1 == "byok_vault_calls_total{event=\"request\"}" { print $2 }')
    hs=$(tail -n "+$log_from" "$AGENT_LOG" | grep '"@message":"vault login failed"' | grep -c '"status":"tls handshake failed')
    # Under TLS 1.3 the server refuses the certificate after the client has sent its request:
    # its alert can be lost to the reset of the unread request, and that login then reads as
    # Vault unreachable (the client cannot tell it from a restarting Vault). Once at most.
    un=$(log_count "vault unreachable")
    t_eq "${CASES[6]}" \
        "$codes, $([ "${n:-99}" -le 3 ] && echo few || echo "$n") logins, $([ "$hs" -ge 1 ] && echo handshake-logged), $([ "$un" -le 1 ] && echo "at most once" || echo "$un") unreachable" \
        "$(printf ' 503 vault_unavailable%.0s' 1 2 3 4 5), few logins, handshake-logged, at most once unreachable"
    agent_stop_check "${CASES[7]}"
else
    t_blocked "${CASES[@]:6:2}"
fi

# ---- Vault's certificate not trusted (the agent's CA file names another CA) ----
# healthz_vault: "VAULT REASON" from /healthz (REASON "-" when absent).
healthz_vault() {
    call "$SOCK" GET /healthz ""
    echo "$BODY" | jq -r '"\(.vault) \(.vault_reason // "-")"'
}
relay_conns() { wc -l <"$RELAY_MODE.conns" 2>/dev/null || echo 0; }
echo pass >"$RELAY_MODE"
use_pair node1
agent_config "$LISTENERS" "$(cert_filter node1 nodes node-ca)"
log_from=$(($(wc -l <"$AGENT_LOG") + 1))
if agent_start; then
    conns0=$(relay_conns)
    codes=$(calls 1)
    hz=$(healthz_vault)
    nt=$(tail -n "+$log_from" "$AGENT_LOG" | grep '"@message":"vault login failed"' |
        grep -c "\"status\":\"tls handshake failed (Vault's certificate not trusted)\"")
    t_eq "${CASES[8]}" "$codes, $hz, $([ "$nt" -ge 1 ] && echo named), $(log_count "vault unreachable") unreachable" \
        " 503 vault_unavailable, login_failed tls: Vault's certificate not trusted, named, 0 unreachable"
    out=""
    for ((i = 0; i < 16; i++)); do
        out="$out$(calls 1)"
        sleep 0.25
    done
    n=$(($(relay_conns) - conns0))
    t_eq "${CASES[9]}" "$(echo "$out" | xargs -n1 | sort | uniq -c | awk '{ printf "%s %s;", $1, $2 }'), $([ "$n" -le 4 ] && echo few || echo "$n") handshakes" \
        "16 503;16 vault_unavailable;, few handshakes"
    jq "$(cert_filter node1 nodes)" "$AGENT_CONFIG" >"$AGENT_CONFIG.new" && mv "$AGENT_CONFIG.new" "$AGENT_CONFIG"
    kill -HUP "$AGENT_PID"
    lib_wait_for 10 bash -c "[ \$(tail -n +$log_from '$AGENT_LOG' | grep -c '\"@message\":\"vault login ok\"') -ge 1 ]"
    hz=$(healthz_vault)
    codes=$(calls 1)
    t_eq "${CASES[10]}" "$(log_count "vault login ok") login ok, $hz,$codes" "1 login ok, ok -, 200 ok"
    agent_stop_check "${CASES[11]}"
else
    t_blocked "${CASES[@]:8:4}"
fi

canary_scan "${CASES[12]}" "$TKEY"
t_done
[ "$T_FAILED" -eq 0 ]
