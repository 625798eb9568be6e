#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# The agent reaching Vault over https, verified against vault.ca_file (every
# other script uses plain http to the stand-in). nginx terminates TLS in
# front of the stand-in with a certificate from the mock provider's throw-away
# CA:
#   - with vault.ca_file naming that CA, a keyless call gets the tenant's key
#     from creds over TLS and is answered;
#   - with vault.ca_file naming a CA that did not sign the certificate (the
#     system bundle), verification fails: the call is a 503
#     vault_unavailable and nothing reaches the provider; the log names the
#     configuration error ("vault tls handshake failed", Vault's certificate
#     not trusted), not an outage ("vault unreachable"), and /healthz says
#     why.
. "$(dirname "$0")/lib.sh"

CASES=("trusted CA: a call gets the key from Vault over TLS and is answered"
    "trusted CA: the agent talked to Vault through the TLS front"
    "agent stops cleanly on SIGTERM, no sanitizer report"
    "untrusted CA: 503 vault_unavailable, nothing sent to the provider"
    "untrusted CA: 'vault tls handshake failed' (Vault's certificate not trusted), no 'vault unreachable'; /healthz vault unavailable with that reason"
    "agent stops cleanly on SIGTERM (untrusted CA), no sanitizer report"
    "canary: nowhere but the provider request")

lib_up && lib_require "$AGENT_BIN" || t_block_all
NGINX=${NGINX:-/usr/sbin/nginx}
[ -x "$NGINX" ] || { LIB_BLOCKED_REASON="nginx not installed (make deps installs nginx-light)"; t_block_all; }
declare -A KEY
for t in acme globex; do
    KEY[$t]=$(lib_canary)
    key_put "$t" openai "${KEY[$t]}" || t_block_all
done

NG=$LIB_TMP/nginx-vault
mkdir -p "$NG/tmp"
TLS_PORT=$(lib_free_port)
cat >"$NG/nginx.conf" <<NGEOF
user root root;
worker_processes 1;
daemon off;
pid $NG/nginx.pid;
error_log $NG/error.log warn;
events { worker_connections 64; }
http {
    access_log $NG/access.log;
    client_body_temp_path $NG/tmp/body;
    proxy_temp_path $NG/tmp/proxy;
    fastcgi_temp_path $NG/tmp/fastcgi;
    uwsgi_temp_path $NG/tmp/uwsgi;
    scgi_temp_path $NG/tmp/scgi;
    client_max_body_size 2m;
    server {
        listen 127.0.0.1:$TLS_PORT ssl;
        ssl_certificate $MOCK_DIR/certs/server.pem;
        ssl_certificate_key $MOCK_DIR/certs/server.key;
        location / {
            proxy_pass $VAULT_ADDR;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
NGEOF
lib_spawn "$NG/stderr.log" "$NGINX" -p "$NG" -c "$NG/nginx.conf" -e "$NG/error.log"
NGINX_PID=$LIB_LAST_PID
tls_up() { curl -s -o /dev/null --cacert "$MOCK_CA" "https://127.0.0.1:$TLS_PORT/v1/sys/health"; }
lib_wait_proc "$NGINX_PID" 10 tls_up || { LIB_BLOCKED_REASON="nginx did not start: $(cat "$NG/error.log")"; t_block_all; }

SOCK=$AGENT_DIR/acme.sock
BODY_JSON=$(chat_body openai/gpt-4o-mini false 3 "over tls")

# ---- trusted CA ----
agent_config "[{\"path\": \"$SOCK\", \"mode\": \"0660\", \"tenant\": \"acme\", \"app\": \"tls\"}]" \
    ".vault.address = \"https://127.0.0.1:$TLS_PORT\" | .vault.ca_file = \"$MOCK_CA\" | .providers = [\"openai\"]"
agent_start || t_block_all
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$BODY_JSON"
got=$(mock_requests_since "$since" | jq -r '.[0].headers.Authorization[0] // "" | sub("^Bearer "; "")')
t_eq "trusted CA: a call gets the key from Vault over TLS and is answered" \
    "$CODE $([ "$got" == "${KEY[acme]}" ] && echo key-ok || echo key-wrong)" "200 key-ok"
t_match "trusted CA: the agent talked to Vault through the TLS front" \
    "$(grep -c 'creds/openai' "$NG/access.log")" '^[1-9]'
agent_stop_check "agent stops cleanly on SIGTERM, no sanitizer report"

# ---- a CA that did not sign Vault's certificate ----
GSOCK=$AGENT_DIR/globex.sock
agent_config "[{\"path\": \"$GSOCK\", \"mode\": \"0660\", \"tenant\": \"globex\", \"app\": \"tls\"}]" \
    ".vault.address = \"https://127.0.0.1:$TLS_PORT\" | .vault.ca_file = \"/etc/ssl/certs/ca-certificates.crt\"
     | .vault.timeout_ms = 2000 | .providers = [\"openai\"]"
agent_start || t_block_all
since=$(mock_last_seq)
call "$GSOCK" POST /v1/chat/completions "$BODY_JSON"
n=$(mock_requests_since "$since" | jq length)
t_eq "untrusted CA: 503 vault_unavailable, nothing sent to the provider" \
    "$CODE $(echo "$BODY" | jq -r .error.code 2>/dev/null) $n" "503 vault_unavailable 0"
call "$GSOCK" GET /healthz ""
t_eq "${CASES[4]}" \
    "$(grep '"@message":"vault tls handshake failed"' "$AGENT_LOG" | grep -c '"status":"Vault'"'"'s certificate not trusted"' | sed 's/^[1-9][0-9]*$/logged/'), $(grep -c '"@message":"vault unreachable' "$AGENT_LOG") unreachable, $(echo "$BODY" | jq -r '"\(.vault) \(.vault_reason)"')" \
    "logged, 0 unreachable, unavailable tls: Vault's certificate not trusted"
agent_stop_check "agent stops cleanly on SIGTERM (untrusted CA), no sanitizer report"
canary_scan "canary: nowhere but the provider request" "${KEY[@]}"
t_done
[ "$T_FAILED" -eq 0 ]
