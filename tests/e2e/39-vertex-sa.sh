#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# Vertex AI with a Google service-account key (api_style vertex): app -> agent
# socket -> Vault -> plugin creds -> the agent's JWT bearer grant at the mock's
# token endpoint (upstream.google_token_url) -> the mock's regional Vertex
# path with the access token. The test service account's RSA key is made
# here, at test time, and kept in shell variables only (the mock gets the
# public key). Cases: the key file (indented, newlines) is stored and masked
# to its client_email; plain and streamed calls on
# .../projects/{project_id}/locations/{metadata region}/..., with
# Authorization: Bearer and no x-goog-api-key; the JWT the mock verified
# (RS256 with the public key, iss/sub/aud/scope/iat/exp); one token fetch for
# many calls; concurrent first calls of another tenant share one fetch; a
# token near its expiry is traded again; the token endpoint refusing a key
# (400 invalid_grant) fails over to openai, or is 502 provider_auth_failed
# when nothing is left, and drops the key from the cache; the refusal is
# remembered (no new token request for the same key); a 503 from it fails
# over; Vertex refusing the token (401) drops it; Claude on Vertex through
# /v1/messages (:rawPredict and :streamRawPredict, the app's body without
# model and with anthropic_version vertex-2023-10-16, Anthropic's answer and
# events, usage and cost; an express key and chat to a Claude model send
# nothing); and the private key, the
# key file, the access tokens and the private_key_id appear in no log,
# response or file of the run.
. "$(dirname "$0")/lib.sh"

CASES=("SA key write: 200, masked to its client_email, validation for a service-account key"
    "SA key read and errors never show the key file")
for s in false true; do
    for c in "HTTP 200, answer text, provider vertex" "usage and cost" "regional path and bearer token upstream"; do
        CASES+=("vertex SA stream=$s: $c")
    done
done
CASES+=("the token endpoint: one JWT bearer grant, verified by the mock (RS256, claims)"
    "the token endpoint: form-encoded POST to the configured URL (not the key's token_uri)"
    "token reused: five more calls, no new token fetch"
    "concurrent first calls of another tenant: one token fetch for six calls"
    "concurrent first calls: all six answered 200 by vertex"
    "token near its expiry (expires_in 4): traded again before use"
    "token endpoint refuses the key (400 invalid_grant): failover to openai, X-BYOK-Attempts 2"
    "token endpoint refuses the key, no other candidate: 502 provider_auth_failed, clear message"
    "token endpoint refusal drops the key from the key cache: the next call reads Vault again"
    "token endpoint refusal logged without key material"
    "token endpoint refusal remembered: two more calls 502 provider_auth_failed, no token request, each logged with status 400"
    "token endpoint 503: failover to openai"
    "embeddings text-embedding-005: a batch of two on :predict, vectors in order, usage and cost"
    "embeddings: the :predict body (instances, autoTruncate false) on the regional path with the bearer token"
    "embeddings: dimensions as outputDimensionality, task_type passed on"
    "embeddings: a :predict answer with fewer predictions than inputs is 502 bad_provider_response"
    "embeddings gemini-embedding-001: one text answered"
    "embeddings gemini-embedding-001: a batch is 400 unsupported, nothing sent to vertex"
    "embeddings: encoding_format base64 400 naming it, dimensions out of range 400 naming it, nothing sent"
    "embeddings with an express-mode API key: 400 unsupported, nothing sent"
    "Vertex refuses the access token (401): 502 provider_auth_failed, the next call trades again"
    "an express-mode API key on the same agent still uses x-goog-api-key on the global path"
    "Claude on Vertex: /v1/messages on :rawPredict, the body without model, anthropic_version added"
    "Claude on Vertex: Anthropic's message, the bearer token, usage and cost at the catalog price"
    "Claude on Vertex stream: :streamRawPredict, Anthropic's events passed through, usage comment"
    "Claude on Vertex with an express-mode API key, and chat to vertex/claude-*: nothing sent"
    "agent alive" "agent stops cleanly on SIGTERM, no sanitizer report"
    "canary: private key, key file, access tokens and private_key_id nowhere in the run")

lib_up && lib_require "$AGENT_BIN" && command -v openssl >/dev/null || t_block_all

PROVIDER_MODEL[vertex]=gemini-2.5-flash
PRICE_IN[vertex]=7000
PRICE_OUT[vertex]=11000
# The built-in vertex entry with the mock's host, its path and key rules kept.
vertex_at_mock() {
    local url builtin
    vault_api GET byok/providers/vertex "" "$ADMIN_TOKEN"
    builtin=$VAULT_BODY
    url=$(echo "$builtin" | jq -r '.data.base_url // empty' 2>/dev/null)
    [ "$VAULT_CODE" = 200 ] && [ -n "$url" ] || return 1
    url=$MOCK_URL$(echo "$url" | sed -E 's#^https?://[^/]*##')
    vault_api PUT byok/providers/vertex "$(provider_entry vertex vertex "$url" |
        jq --argjson b "$builtin" '.key_prefixes = $b.data.key_prefixes
            | .key_min_length = $b.data.key_min_length | .regions = $b.data.regions
            | .models += [$b.data.models[] | select((.capabilities | index("embedding")) or (.name | startswith("claude-")))]')" "$ADMIN_TOKEN" >/dev/null
    [ "$VAULT_CODE" -lt 300 ]
}
vertex_at_mock || { LIB_BLOCKED_REASON="vertex catalog override failed (HTTP $VAULT_CODE)"; t_block_all; }

PROJECT=byok-e2e-project
EMAIL=e2e-agent@$PROJECT.iam.gserviceaccount.com
ACCOUNTS=$MOCK_DIR/google-accounts.json
# sa_new: a fresh test key; sets SA (the key file, indented as gcloud writes
# it), SA_PK (its private key PEM) and SA_KID. Variables only: no file holds
# a private key. register=1 adds its public key to the mock's accounts.
declare -a SA_PEMS=() SA_KIDS=()
sa_new() {
    SA_PK=$(openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 2>/dev/null)
    SA_KID=$(lib_random_hex 20)
    SA=$(PK=$SA_PK KID=$SA_KID jq -n --arg p "$PROJECT" --arg e "$EMAIL" '{type: "service_account",
        project_id: $p, private_key_id: env.KID, private_key: env.PK, client_email: $e,
        client_id: "104242424242424242424", auth_uri: "https://accounts.google.com/o/oauth2/auth",
        token_uri: "http://169.254.169.254/computeMetadata/v1/not-this",
        auth_provider_x509_cert_url: "https://www.googleapis.com/oauth2/v1/certs",
        client_x509_cert_url: "https://www.googleapis.com/robot/v1/metadata/x509/e2e-agent",
        universe_domain: "googleapis.com"}')
    SA_PEMS+=("$SA_PK")
    SA_KIDS+=("$SA_KID")
    if [ "${1:-1}" = 1 ]; then
        local pub
        pub=$(printf '%s\n' "$SA_PK" | openssl pkey -pubout 2>/dev/null)
        [ -s "$ACCOUNTS" ] || echo '{"accounts": []}' >"$ACCOUNTS"
        PUB=$pub KID=$SA_KID jq --arg p "$PROJECT" --arg e "$EMAIL" '.accounts += [{client_email: $e,
            private_key_id: env.KID, project_id: $p, public_key: env.PUB}]' "$ACCOUNTS" >"$ACCOUNTS.new" &&
            mv "$ACCOUNTS.new" "$ACCOUNTS"
    fi
}
# sa_put TENANT [REGION]: stores SA as TENANT's vertex key.
sa_put() {
    vault_api PUT "byok/tenants/$1/keys/vertex/production" \
        "$(K=$SA jq -n --arg r "${2:-europe-west4}" '{key_value: env.K, name: "e2e", metadata: {region: $r}}')" "$ADMIN_TOKEN"
}
google_calls() { mock_ctl GET /_mock/google | jq -r .token_calls; }

declare -gA KEY
KEY[openai]=$(lib_canary)
sa_new
sa_put acme
WRITE_CODE=$VAULT_CODE
WRITE_BODY=$VAULT_BODY
vault_api GET byok/tenants/acme/keys/vertex/production "" "$ADMIN_TOKEN"
READ_BODY=$VAULT_BODY
t_eq "SA key write: 200, masked to its client_email, validation for a service-account key" \
    "$WRITE_CODE $(echo "$READ_BODY" | jq -c '[.data.masked_value, .data.validation.is_valid, .data.validation.strength_score]' 2>/dev/null)" \
    "200 [\"sa:$EMAIL\",true,100]"
if grep -qaF -e "$SA_KID" -e "$(printf '%s\n' "$SA_PK" | sed -n 5p)" <<<"$WRITE_BODY$READ_BODY"; then
    t_fail "SA key read and errors never show the key file" "the write or read answer holds key material"
else
    # A malformed one: 400 naming key_value, no key material in it.
    vault_api PUT byok/tenants/acme/keys/vertex/production \
        "$(K=$(echo "$SA" | jq -c '.type = "user"') jq -n '{key_value: env.K}')" "$ADMIN_TOKEN"
    if [ "$VAULT_CODE" = 400 ] && [[ $VAULT_BODY == *key_value* ]] &&
        ! grep -qaF -e "$SA_KID" -e "$PROJECT" <<<"$VAULT_BODY"; then
        t_ok "SA key read and errors never show the key file"
    else
        t_fail "SA key read and errors never show the key file" "HTTP $VAULT_CODE"
    fi
fi
key_put acme openai "${KEY[openai]}" || t_diag "openai key write failed"
vault_api PUT "byok/tenants/acme/settings" \
    '{"preferred_providers":["vertex"],"fallback_providers":["openai"],"budget_tier":"HIGH"}' "$ADMIN_TOKEN"

# beta: the same account for concurrent first calls; badco: a key the mock
# does not know (invalid_grant), with openai to fail over to; solo: such a key
# and nothing else; delta: a good key, for the token endpoint's 503.
sa_put beta us-east5
sa_new 0
BAD_KID=$SA_KID
sa_put badco
key_put badco openai "$(lib_canary)" >/dev/null
vault_api PUT "byok/tenants/badco/settings" '{"preferred_providers":["vertex"],"fallback_providers":["openai"]}' "$ADMIN_TOKEN"
sa_put solo
sa_new
sa_put delta
key_put delta openai "$(lib_canary)" >/dev/null
vault_api PUT "byok/tenants/delta/settings" '{"preferred_providers":["vertex"],"fallback_providers":["openai"]}' "$ADMIN_TOKEN"
EXPRESS_KEY="AIzaSy-canary-$(lib_random_hex 16)"
key_put express vertex "$EXPRESS_KEY" >/dev/null

TOKEN_URL="https://127.0.0.1:$MOCK_HTTPS/token"
listeners="["
for t in acme beta badco solo delta express; do
    listeners+="{\"path\": \"$AGENT_DIR/$t.sock\", \"mode\": \"0660\", \"tenant\": \"$t\", \"app\": \"e2e\", \"metrics\": true},"
done
listeners="${listeners%,}]"
agent_config "$listeners" ".providers += [\"vertex\"] | .upstream.google_token_url = \"$TOKEN_URL\""
agent_start || t_block_all
SOCK=$AGENT_DIR/acme.sock

PROMPT="one two three four"
NTOK=5
G0=$(google_calls)
for s in false true; do
    since=$(mock_last_seq)
    call "$SOCK" POST /v1/chat/completions "$(chat_body "vertex/gemini-2.5-flash" "$s" "$NTOK" "$PROMPT")"
    if [ "$s" = false ]; then
        text=$(echo "$BODY" | jq -r '.choices[0].message.content // empty' 2>/dev/null)
        pt=$(echo "$BODY" | jq -r '.usage.prompt_tokens // empty' 2>/dev/null)
        ct=$(echo "$BODY" | jq -r '.usage.completion_tokens // empty' 2>/dev/null)
        cost=$(hdr X-BYOK-Cost-USD)
        FIRST=$(mock_requests_since "$since")
    else
        text=$(echo "$BODY" | sse_content)
        usage=$(echo "$BODY" | sed -n 's/^data: //p' | grep -v '^\[DONE\]$' | jq -c 'select(.usage != null) | .usage' 2>/dev/null | tail -1)
        pt=$(echo "$usage" | jq -r '.prompt_tokens // empty' 2>/dev/null)
        ct=$(echo "$usage" | jq -r '.completion_tokens // empty' 2>/dev/null)
        cost=$(echo "$BODY" | sed -n 's/^: x-byok-usage //p' | tail -1 | jq -r '.cost_usd // empty' 2>/dev/null)
    fi
    t_eq "vertex SA stream=$s: HTTP 200, answer text, provider vertex" "$CODE $text $(hdr X-BYOK-Provider)" \
        "200 $(words $NTOK) vertex"
    t_eq "vertex SA stream=$s: usage and cost" "$pt/$ct $(awk -v c="$cost" -v w="$(cost_of vertex 4 $NTOK)" 'BEGIN { d = c - w; print (d < 1e-9 && d > -1e-9) ? "ok" : c }')" "4/$NTOK ok"
    r=$(mock_requests_since "$since" | jq -c '[.[] | select(.style == "vertex")][0]')
    want=/v1/projects/$PROJECT/locations/europe-west4/publishers/google/models/gemini-2.5-flash
    if [ "$s" = true ]; then want+=":streamGenerateContent ?alt=sse"; else want+=":generateContent ?"; fi
    got="$(echo "$r" | jq -r '"\(.path) ?\(.query) \(.auth) \(.headers["X-Goog-Api-Key"] // [] | length) \(.headers.Authorization // [] | length)"')"
    bearer=$(echo "$r" | jq -r '.headers.Authorization[0] // ""')
    t_eq "vertex SA stream=$s: regional path and bearer token upstream" "$got ${bearer%% *}" "$want ok 0 1 Bearer"
done
REQS=$(echo "$FIRST" | jq -c '[.[] | {style, kind, auth, path, ct: (.headers["Content-Type"][0] // "")}]')
t_eq "the token endpoint: one JWT bearer grant, verified by the mock (RS256, claims)" \
    "$(($(google_calls) - G0)) $(echo "$REQS" | jq -c '[.[] | "\(.style)/\(.auth)"]')" '1 ["google/ok","vertex/ok"]'
t_eq "the token endpoint: form-encoded POST to the configured URL (not the key's token_uri)" \
    "$(echo "$REQS" | jq -r '.[0] | "\(.path) \(.ct)"')" "/token application/x-www-form-urlencoded"

G1=$(google_calls)
ok=0
for i in 1 2 3 4 5; do
    call "$SOCK" POST /v1/chat/completions "$(chat_body "vertex/gemini-2.5-flash" false 3)"
    [ "$CODE $(hdr X-BYOK-Provider)" = "200 vertex" ] && ok=$((ok + 1))
done
t_eq "token reused: five more calls, no new token fetch" "$ok $(($(google_calls) - G1))" "5 0"

# Concurrent first calls: beta has no token yet; the endpoint answers slowly
# so that all six calls wait on the one trade. Its tokens expire in 4 s (used 2 s).
mock_ctl POST /_mock/google '{"delay_ms": 700, "expires_in": 4}' >/dev/null
G2=$(google_calls)
pids=()
for i in 1 2 3 4 5 6; do
    (printf '%s' "$(chat_body "vertex/gemini-2.5-flash" false 3)" | curl -sS -m 20 --unix-socket "$AGENT_DIR/beta.sock" \
        -H 'Content-Type: application/json' --data-binary @- -D "$LIB_TMP/conc.$i.h" -o "$LIB_TMP/conc.$i.b" \
        -w '%{http_code}' http://localhost/v1/chat/completions >"$LIB_TMP/conc.$i.code" 2>/dev/null) &
    pids+=($!)
done
wait "${pids[@]}"
t_eq "concurrent first calls of another tenant: one token fetch for six calls" \
    "$(($(google_calls) - G2)) $(call "$AGENT_DIR/beta.sock" GET /metrics; echo "$BODY" | awk '$1 == "byok_google_token_total{event=\"shared\"}" { print $2 }')" "1 5"
codes=$(for i in 1 2 3 4 5 6; do printf '%s:%s ' "$(cat "$LIB_TMP/conc.$i.code")" \
    "$(tr -d '\r' <"$LIB_TMP/conc.$i.h" | awk -F': ' 'tolower($1) == "x-byok-provider" { print $2 }')"; done)
t_eq "concurrent first calls: all six answered 200 by vertex" "$codes" "200:vertex 200:vertex 200:vertex 200:vertex 200:vertex 200:vertex "
mock_ctl POST /_mock/google '{"expires_in": 4}' >/dev/null
sleep 2.5
G3=$(google_calls)
since=$(mock_last_seq)
call "$AGENT_DIR/beta.sock" POST /v1/chat/completions "$(chat_body "vertex/gemini-2.5-flash" false 3)"
t_eq "token near its expiry (expires_in 4): traded again before use" \
    "$CODE $(($(google_calls) - G3)) $(mock_requests_since "$since" | jq -c '[.[] | "\(.style)/\(.auth)"]')" \
    '200 1 ["google/ok","vertex/ok"]'
mock_ctl DELETE /_mock/google >/dev/null

# keycache_fetches SOCK: the agent's Vault reads of creds so far.
keycache_fetches() {
    call "$1" GET /metrics
    echo "$BODY" | awk '$1 == "byok_keycache_total{event=\"fetch\"}" { print $2 }'
}
since=$(mock_last_seq)
call "$AGENT_DIR/badco.sock" POST /v1/chat/completions "$(chat_body auto false 3)"
t_eq "token endpoint refuses the key (400 invalid_grant): failover to openai, X-BYOK-Attempts 2" \
    "$CODE $(hdr X-BYOK-Provider) $(hdr X-BYOK-Attempts) $(mock_requests_since "$since" | jq -c '[.[] | "\(.style)/\(.status)"]')" \
    '200 openai 2 ["google/400","openai/200"]'
call "$AGENT_DIR/solo.sock" POST /v1/chat/completions "$(chat_body vertex/gemini-2.5-flash false 3)"
t_eq "token endpoint refuses the key, no other candidate: 502 provider_auth_failed, clear message" \
    "$CODE $(echo "$BODY" | jq -r '"\(.error.code): \(.error.message)"' 2>/dev/null)" \
    "502 provider_auth_failed: the token endpoint refused the tenant's service-account key"
f1=$(keycache_fetches "$AGENT_DIR/solo.sock")
call "$AGENT_DIR/solo.sock" POST /v1/chat/completions "$(chat_body vertex/gemini-2.5-flash false 3)"
f2=$(keycache_fetches "$AGENT_DIR/solo.sock")
t_check "token endpoint refusal drops the key from the key cache: the next call reads Vault again" \
    test "$CODE ${f1:-x} $((${f2:-0} - ${f1:-0}))" = "502 ${f1:-x} 1"
lines=$(grep -c 'the token endpoint refused a service-account key' "$AGENT_LOG")
if [ "${lines:-0}" -ge 2 ] && ! grep -qaF -e "$BAD_KID" -e "$PROJECT" -e "BEGIN" "$AGENT_LOG"; then
    t_ok "token endpoint refusal logged without key material"
else
    t_fail "token endpoint refusal logged without key material" "$lines log lines"
fi
# The refusal is remembered (GCPTOKEN_REFUSED_S): the same key, read from
# Vault again, is refused without another JWT or token request.
G4=$(google_calls)
l0=$(grep -c '"@message":"the token endpoint refused a service-account key".*"status":"400"' "$AGENT_LOG")
codes=""
for i in 1 2; do
    call "$AGENT_DIR/solo.sock" POST /v1/chat/completions "$(chat_body vertex/gemini-2.5-flash false 3)"
    codes="$codes $CODE $(echo "$BODY" | jq -r .error.code 2>/dev/null)"
done
l1=$(grep -c '"@message":"the token endpoint refused a service-account key".*"status":"400"' "$AGENT_LOG")
t_eq "token endpoint refusal remembered: two more calls 502 provider_auth_failed, no token request, each logged with status 400" \
    "$codes, $(($(google_calls) - G4)) token calls, $((l1 - l0)) lines" \
    " 502 provider_auth_failed 502 provider_auth_failed, 0 token calls, 2 lines"

mock_ctl POST /_mock/google '{"fail": 503, "fail_count": 1}' >/dev/null
since=$(mock_last_seq)
call "$AGENT_DIR/delta.sock" POST /v1/chat/completions "$(chat_body auto false 3)"
t_eq "token endpoint 503: failover to openai" \
    "$CODE $(hdr X-BYOK-Provider) $(mock_requests_since "$since" | jq -c '[.[] | "\(.style)/\(.status)"]')" \
    '200 openai ["google/503","openai/200"]'
mock_ctl DELETE /_mock/google >/dev/null

# Embeddings (:predict) with the service-account key.
since=$(mock_last_seq)
call "$SOCK" POST /v1/embeddings '{"model":"vertex/text-embedding-005","input":["alpha beta gamma","delta"]}'
t_eq "embeddings text-embedding-005: a batch of two on :predict, vectors in order, usage and cost" \
    "$CODE $(echo "$BODY" | jq -c '[.object, [.data[] | [.index, (.embedding | length), .embedding[0]]], .usage.prompt_tokens]' 2>/dev/null) $(hdr X-BYOK-Provider) $(awk -v c="$(hdr X-BYOK-Cost-USD)" 'BEGIN { d = c - 4 * 0.1 / 1e6; print (d < 1e-12 && d > -1e-12) ? "cost-ok" : c }')" \
    '200 ["list",[[0,8,0.01],[1,8,0.02]],4] vertex cost-ok'
r=$(mock_requests_since "$since" | jq -c '[.[] | select(.style == "vertex")]')
t_eq "embeddings: the :predict body (instances, autoTruncate false) on the regional path with the bearer token" \
    "$(echo "$r" | jq -c '[length, .[0].path, .[0].auth, (.[0].headers.Authorization[0] | split(" ")[0]), (.[0].body | fromjson)]')" \
    "[1,\"/v1/projects/$PROJECT/locations/europe-west4/publishers/google/models/text-embedding-005:predict\",\"ok\",\"Bearer\",{\"instances\":[{\"content\":\"alpha beta gamma\"},{\"content\":\"delta\"}],\"parameters\":{\"autoTruncate\":false}}]"
since=$(mock_last_seq)
call "$SOCK" POST /v1/embeddings '{"model":"vertex/text-multilingual-embedding-002","input":"uno dos","dimensions":16,"task_type":"RETRIEVAL_QUERY"}'
t_eq "embeddings: dimensions as outputDimensionality, task_type passed on" \
    "$CODE $(echo "$BODY" | jq -c '[(.data[0].embedding | length), .usage.prompt_tokens]' 2>/dev/null) $(mock_requests_since "$since" | jq -c '.[0].body | fromjson')" \
    '200 [16,2] {"instances":[{"content":"uno dos","task_type":"RETRIEVAL_QUERY"}],"parameters":{"autoTruncate":false,"outputDimensionality":16}}'
# A :predict answer with fewer predictions than the texts sent (the mock's
# fewerembeddings scenario): 502 bad_provider_response, never a short list.
mock_ctl POST /_mock/scenario '{"scenario":"fewerembeddings","count":1}' >/dev/null
call "$SOCK" POST /v1/embeddings '{"model":"vertex/text-embedding-005","input":["alpha beta","gamma","delta"]}'
t_eq "embeddings: a :predict answer with fewer predictions than inputs is 502 bad_provider_response" \
    "$CODE $(echo "$BODY" | jq -r .error.code 2>/dev/null)" "502 bad_provider_response"
mock_ctl DELETE /_mock/scenario >/dev/null
call "$SOCK" POST /v1/embeddings '{"model":"vertex/gemini-embedding-001","input":["just one text"],"dimensions":3072}'
t_eq "embeddings gemini-embedding-001: one text answered" \
    "$CODE $(echo "$BODY" | jq -c '[(.data | length), (.data[0].embedding | length), .usage.prompt_tokens]' 2>/dev/null)" '200 [1,3072,3]'
since=$(mock_last_seq)
call "$SOCK" POST /v1/embeddings '{"model":"vertex/gemini-embedding-001","input":["one","two"]}'
t_eq "embeddings gemini-embedding-001: a batch is 400 unsupported, nothing sent to vertex" \
    "$CODE $(echo "$BODY" | jq -r .error.code 2>/dev/null) $(mock_requests_since "$since" | jq '[.[] | select(.style == "vertex")] | length')" \
    "400 unsupported 0"
since=$(mock_last_seq)
call "$SOCK" POST /v1/embeddings '{"model":"vertex/text-embedding-005","input":"x","encoding_format":"base64"}'
got="$CODE $(echo "$BODY" | jq -r .error.param 2>/dev/null)"
call "$SOCK" POST /v1/embeddings '{"model":"vertex/text-embedding-005","input":"x","dimensions":769}'
t_eq "embeddings: encoding_format base64 400 naming it, dimensions out of range 400 naming it, nothing sent" \
    "$got / $CODE $(echo "$BODY" | jq -r .error.param 2>/dev/null) $(mock_requests_since "$since" | jq length)" \
    "400 encoding_format / 400 dimensions 0"
since=$(mock_last_seq)
call "$AGENT_DIR/express.sock" POST /v1/embeddings '{"model":"vertex/text-embedding-005","input":"x"}'
t_eq "embeddings with an express-mode API key: 400 unsupported, nothing sent" \
    "$CODE $(echo "$BODY" | jq -r .error.code 2>/dev/null) $(mock_requests_since "$since" | jq length)" "400 unsupported 0"

# Vertex refuses the token (the mock's 401 scenario): key and token dropped, traded again next time.
mock_ctl POST /_mock/scenario '{"scenario":"401","count":1}' >/dev/null
call "$SOCK" POST /v1/chat/completions "$(chat_body vertex/gemini-2.5-flash false 3)"
c1="$CODE $(echo "$BODY" | jq -r .error.code 2>/dev/null)"
mock_ctl DELETE /_mock/scenario >/dev/null
G4=$(google_calls)
call "$SOCK" POST /v1/chat/completions "$(chat_body vertex/gemini-2.5-flash false 3)"
t_eq "Vertex refuses the access token (401): 502 provider_auth_failed, the next call trades again" \
    "$c1 / $CODE $(($(google_calls) - G4))" "502 provider_auth_failed / 200 1"

since=$(mock_last_seq)
mock_accept "$EXPRESS_KEY"
call "$AGENT_DIR/express.sock" POST /v1/chat/completions "$(chat_body vertex/gemini-2.5-flash false 3)"
t_eq "an express-mode API key on the same agent still uses x-goog-api-key on the global path" \
    "$CODE $(mock_requests_since "$since" | jq -r '.[] | "\(.style) \(.path) \(.auth) \(.headers.Authorization // [] | length)"')" \
    "200 vertex /v1/publishers/google/models/gemini-2.5-flash:generateContent ok 0"

# Claude on Vertex (/v1/messages): acme's service-account key, the built-in catalog's Claude
# models (auto: the cheapest, claude-haiku-5-5 at $0.10/$0.50 per 1M).
VCLAUDE=claude-haiku-5-5
APP='{"model": "auto", "max_tokens": 5, "stream": false,
  "messages": [{"role": "user", "content": "one two three four"}]}'
since=$(mock_last_seq)
call "$SOCK" POST /v1/messages "$APP" -H 'anthropic-beta: b-1'
r=$(mock_requests_since "$since" | jq -c '[.[] | select(.style == "vertex")][0]')
want=$(printf '%s' "$APP" | sed 's/"model": "auto",/"anthropic_version":"vertex-2023-10-16",/')
t_eq "Claude on Vertex: /v1/messages on :rawPredict, the body without model, anthropic_version added" \
    "$(echo "$r" | jq -r '"\(.kind) \(.path)|\(.body)|\(.headers["Anthropic-Beta"][0])"')" \
    "claude /v1/projects/$PROJECT/locations/europe-west4/publishers/anthropic/models/$VCLAUDE:rawPredict|$want|b-1"
t_eq "Claude on Vertex: Anthropic's message, the bearer token, usage and cost at the catalog price" \
    "$CODE $(echo "$BODY" | jq -r '"\(.type) \(.content[0].text)"' 2>/dev/null) $(hdr X-BYOK-Provider) $(hdr X-BYOK-Model) $(echo "$r" | jq -r '"\(.auth) \(.headers.Authorization[0] | split(" ")[0]) \(.headers["X-Goog-Api-Key"] // [] | length)"') $(echo "$BODY" | jq -c .usage) $(hdr X-BYOK-Cost-USD)" \
    "200 message $(words 5) vertex $VCLAUDE ok Bearer 0 {\"input_tokens\":4,\"output_tokens\":5} 0.00000290"
since=$(mock_last_seq)
call "$SOCK" POST /v1/messages "$(echo "$APP" | sed 's/"stream": false/"stream": true/')"
evs=$(echo "$BODY" | sed -n 's/^event: //p' | tr '\n' ' ')
u=$(echo "$BODY" | sed -n 's/^: x-byok-usage //p' | tail -1)
t_eq "Claude on Vertex stream: :streamRawPredict, Anthropic's events passed through, usage comment" \
    "$CODE $(echo "$evs" | awk '{ print $1, $NF }') $(mock_requests_since "$since" | jq -r '[.[] | select(.style == "vertex")][0] | "\(.path | split(":")[1]) \(.body | fromjson | .stream)"') $(echo "$u" | jq -c '[.provider, .prompt_tokens, .completion_tokens, .estimated]' 2>/dev/null)" \
    '200 message_start message_stop streamRawPredict true ["vertex",4,5,false]'
since=$(mock_last_seq)
call "$AGENT_DIR/express.sock" POST /v1/messages "$APP"
a="$CODE $(echo "$BODY" | jq -r .type 2>/dev/null)"
call "$SOCK" POST /v1/chat/completions "$(chat_body "vertex/$VCLAUDE" false 3)"
t_eq "Claude on Vertex with an express-mode API key, and chat to vertex/claude-*: nothing sent" \
    "$a $(echo "$BODY" | jq -r '.error.code // .error.type' 2>/dev/null) $(mock_requests_since "$since" | jq '[.[] | select(.style == "vertex")] | length')" \
    "400 error unsupported 0"

t_check "agent alive" kill -0 "$AGENT_PID"
agent_stop_check "agent stops cleanly on SIGTERM, no sanitizer report"
# Canaries: each private key's base64 lines, every access token the mock
# issued, the express key and openai's, anywhere in the run; the
# private_key_ids (which the mock's account list holds) in the agent's log
# and every answer.
TOKENS=$(mock_ctl GET /_mock/google | jq -r '.tokens[]')
mapfile -t NEEDLES < <(
    for p in "${SA_PEMS[@]}"; do printf '%s\n' "$p" | awk 'length($0) == 64' | sed -n '2,6p'; done
    printf '%s\n' $TOKENS
)
if [ "${#NEEDLES[@]}" -lt 10 ] || grep -qaF -f <(printf '%s\n' "${SA_KIDS[@]}") -- "$AGENT_LOG" "$LIB_RESP_LOG"; then
    t_fail "canary: private key, key file, access tokens and private_key_id nowhere in the run" \
        "${#NEEDLES[@]} needles; or a private_key_id in the agent log or an answer"
else
    canary_scan "canary: private key, key file, access tokens and private_key_id nowhere in the run" \
        "${NEEDLES[@]}" "$EXPRESS_KEY" "${KEY[openai]}"
fi
t_done
