#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# The Amazon Bedrock adapter (api_style "bedrock", the Converse API, a Bedrock
# API key) through app -> agent socket -> Vault -> plugin creds -> mock
# provider: the catalog's bedrock entry is pointed at the mock (a concrete
# host for its {region} placeholder) and the tenant's key is an ABSK-prefixed
# canary. Non-streamed and streamed chat: the answer, the frames in order
# (translated from the binary event stream), usage, cost = tokens x catalog
# price, X-BYOK-Provider bedrock; the exact request the mock recorded (path
# with the model id percent-encoded, the key as a bearer token, the Converse
# body: no OpenAI-only field, which the mock would refuse with a 400). Then a
# refused key (Bedrock answers 403) gives the agent's provider_auth_failed
# with no key anywhere, a 503 fails over to openai, an exception mid-stream
# and a message with a bad CRC end the stream with the agent's error event,
# and the canary scan.
#
# Embeddings (InvokeModel): the built-in catalog's Titan Text Embeddings V2
# and Cohere Embed v3 entries and prices are copied into the mock's entry;
# Titan with an ABSK key and with an IAM key (the exact path, body and
# signature the mock recorded), Cohere on Bedrock with 3 texts (its usage
# estimated), each cost = tokens x catalog price; auto and a bare model name
# reach Bedrock, and 3 texts under auto pass over Titan (one text per call)
# to another provider (the router takes one model per provider); Titan with 2 texts explicitly, bad dimensions, and an embedding
# model the translation does not know are 400s with nothing sent.
#
# IAM keys ("<access key id>:<secret>[:<session token>]"): the agent signs each
# call with SigV4 for the region in the key's metadata (the mock's host names
# none) and the mock re-derives the signature from the secret it was given:
# non-streamed and streamed, with and without a session token; a wrong secret
# is AWS's 403 (InvalidSignatureException), the agent's provider_auth_failed,
# and the key is dropped from the cache (a rotated key works on the next
# call); a clock 20 minutes off is AWS's expired signature; malformed IAM
# values are refused by the plugin with a 400 naming key_value that never
# quotes them. The secret access key is never sent: it
# appears in no file of the run but the mock's key list (its input).
. "$(dirname "$0")/lib.sh"

CASES=("non-streamed: HTTP 200, answer text, usage"
    "non-streamed: provider, model and cost headers"
    "non-streamed: upstream path, bearer key, Converse body"
    "streamed: HTTP 200, frames in order, [DONE]"
    "streamed: usage and cost in the usage comment"
    "streamed: upstream path, Accept and body"
    "system, temperature, stop and tools: translated body"
    "tool call answer comes back as OpenAI tool_calls"
    "tool_choice none: 400 naming the field, nothing sent"
    "refused key: 403 from Bedrock, 502 provider_auth_failed, no key in the reply"
    "503 from bedrock: answered by openai (failover), 2 attempts"
    "exception mid-stream: the agent's provider_stream_error, no provider text"
    "bad message CRC mid-stream: the agent's stream_parse_error"
    "embedding model Bedrock's translation does not know: 400 unsupported, nothing sent"
    "built-in catalog: bedrock lists Titan V2 and Cohere v3 embeddings at \$0.02 and \$0.10 per 1M"
    "Titan embedding, ABSK key: 200, one vector of 256, usage from Bedrock, cost"
    "Titan embedding, ABSK key: upstream path, bearer key, InvokeModel body"
    "Cohere embedding on Bedrock: 3 texts, 3 vectors in order, estimated usage, cost"
    "Cohere embedding on Bedrock: upstream path and body"
    "Titan embedding, IAM key: 200, InvokeModel signed with SigV4"
    "auto and bare model embeddings reach Bedrock"
    "auto, 3 texts: Titan passed over (one text per call), openai answers; Bedrock only: 400"
    "Titan, 2 texts asked by name: 400 unsupported, nothing sent"
    "bad dimensions: 400 naming dimensions, nothing sent"
    "agent alive" "agent stops cleanly on SIGTERM, no sanitizer report"
    "IAM key: non-streamed 200, SigV4 for us-east-1/bedrock, no bearer, no token"
    "IAM key: streamed 200, frames in order, signed"
    "temporary IAM key: session token sent and signed, non-streamed and streamed 200"
    "IAM key, wrong secret: 403 InvalidSignature, 502 provider_auth_failed, no key in the reply"
    "IAM key refused: dropped from the cache, the rotated key answers the next call"
    "IAM key, clock 20 minutes off: AWS's expired signature, 502 provider_auth_failed"
    "IAM key formats: the plugin refuses each with a 400 naming key_value, never quoting it"
    "IAM key read: masked to the access key ID, valid"
    "canary: nowhere but the provider request"
    "canary: no secret access key anywhere (only the mock's key list holds it)")

# An ABSK-prefixed canary (Bedrock API keys start with ABSK); its random part follows the last
# '-', which canary_needles' window form slides over.
bedrock_canary() { echo "ABSK-canary-$(lib_random_hex 16)"; }

# IAM credentials: an access key ID (AKIA/ASIA + 16 of base32), a 40-character secret canary
# (hex after "CANARYsecret"), a session token canary.
iam_id() { echo "$1$(head -c 10 /dev/urandom | base32)"; }
iam_secret() { echo "CANARYsecret$(lib_random_hex 14)"; }
iam_token() { echo "CANARYtoken$(lib_random_hex 40)"; }

MODEL=anthropic.claude-3-5-haiku-20241022-v1:0
MODEL_PATH=anthropic.claude-3-5-haiku-20241022-v1%3A0
PROVIDER_MODEL[bedrock]=$MODEL
PRICE_IN[bedrock]=6000
PRICE_OUT[bedrock]=9000

lib_up && lib_require "$AGENT_BIN" || t_block_all

# The built-in entry's embedding models, with their catalog prices, go into the mock's entry.
vault_api GET byok/providers/bedrock "" "$ADMIN_TOKEN"
EMBED_MODELS=$(echo "$VAULT_BODY" | jq -c '[.data.models[] | select(.capabilities | index("embedding"))]' 2>/dev/null)
[ -n "$EMBED_MODELS" ] || EMBED_MODELS='[]'
# price MODEL: its input price per 1M tokens in the built-in catalog.
price() { echo "$EMBED_MODELS" | jq -r --arg m "$1" '.[] | select(.name == $m) | .input_per_1m'; }
TITAN=amazon.titan-embed-text-v2:0
TITAN_PATH=amazon.titan-embed-text-v2%3A0
COHERE=cohere.embed-english-v3

# The built-in entry's base_url is https://bedrock-runtime.{region}.amazonaws.com: the
# operator replaces the host's region; here the whole host is the mock's.
vault_api PUT byok/providers/bedrock \
    "$(provider_entry bedrock bedrock "$MOCK_URL" | jq --argjson em "$EMBED_MODELS" '.key_prefixes = ["ABSK"] |
        .key_min_length = 20 | .models += [.models[0] + {name: "mock-tools"}] + $em')" \
    "$ADMIN_TOKEN" >/dev/null
[ "$VAULT_CODE" -lt 300 ] || { LIB_BLOCKED_REASON="bedrock catalog override: HTTP $VAULT_CODE"; t_block_all; }

declare -gA KEY
KEY[bedrock]=$(bedrock_canary)
KEY[openai]=$(lib_canary)
key_put acme bedrock "${KEY[bedrock]}" && key_put acme openai "${KEY[openai]}" ||
    { LIB_BLOCKED_REASON="key write failed"; t_block_all; }
# Tenant beta's Bedrock key is stored but the mock does not accept it: Bedrock refuses it.
KEY[refused]=$(bedrock_canary)
vault_api PUT byok/tenants/beta/keys/bedrock/production \
    "$(K=${KEY[refused]} jq -n '{key_value: env.K, name: "e2e"}')" "$ADMIN_TOKEN" >/dev/null
[ "$VAULT_CODE" -lt 300 ] || t_diag "beta key write: HTTP $VAULT_CODE"
# Tenant gamma prefers bedrock and falls back to openai.
KEY[gamma-bedrock]=$(bedrock_canary)
KEY[gamma-openai]=$(lib_canary)
key_put gamma bedrock "${KEY[gamma-bedrock]}" && key_put gamma openai "${KEY[gamma-openai]}" ||
    t_diag "gamma keys not written"
vault_api PUT byok/tenants/gamma/settings \
    '{"preferred_providers":["bedrock"],"fallback_providers":["openai"],"budget_tier":"HIGH"}' "$ADMIN_TOKEN"
[ "$VAULT_CODE" -lt 300 ] || t_diag "gamma settings: HTTP $VAULT_CODE $VAULT_BODY"

# IAM keys. iam_put TENANT VALUE: stored with metadata region us-east-1 (the mock's host names
# no region); the mock is told the value it accepts separately.
iam_put() {
    vault_api PUT "byok/tenants/$1/keys/bedrock/production" \
        "$(K=$2 jq -n '{key_value: env.K, name: "e2e", metadata: {region: "us-east-1"}}')" "$ADMIN_TOKEN" >/dev/null
    [ "$VAULT_CODE" -lt 300 ] || { t_diag "IAM key write $1: HTTP $VAULT_CODE"; return 1; }
}
declare -gA IAM
IAM[delta-id]=$(iam_id AKIA)
IAM[delta-secret]=$(iam_secret)
IAM[delta]="${IAM[delta-id]}:${IAM[delta-secret]}"
IAM[eps-id]=$(iam_id ASIA)
IAM[eps-secret]=$(iam_secret)
IAM[eps-token]=$(iam_token)
IAM[eps]="${IAM[eps-id]}:${IAM[eps-secret]}:${IAM[eps-token]}"
# zeta's stored secret is not the one the mock (AWS) knows for that access key ID.
IAM[zeta-id]=$(iam_id AKIA)
IAM[zeta-secret]=$(iam_secret)
IAM[zeta-aws-secret]=$(iam_secret)
IAM[zeta]="${IAM[zeta-id]}:${IAM[zeta-secret]}"
mock_accept "${IAM[delta]}"
mock_accept "${IAM[eps]}"
mock_accept "${IAM[zeta-id]}:${IAM[zeta-aws-secret]}"
iam_put delta "${IAM[delta]}" && iam_put epsilon "${IAM[eps]}" && iam_put zeta "${IAM[zeta]}" ||
    t_diag "IAM keys not written"

SOCK=$AGENT_DIR/acme.sock
BSOCK=$AGENT_DIR/beta.sock
GSOCK=$AGENT_DIR/gamma.sock
DSOCK=$AGENT_DIR/delta.sock
ESOCK=$AGENT_DIR/epsilon.sock
ZSOCK=$AGENT_DIR/zeta.sock
agent_config "[{\"path\": \"$SOCK\", \"mode\": \"0660\", \"tenant\": \"acme\", \"app\": \"e2e\"},
    {\"path\": \"$BSOCK\", \"mode\": \"0660\", \"tenant\": \"beta\", \"app\": \"e2e\"},
    {\"path\": \"$GSOCK\", \"mode\": \"0660\", \"tenant\": \"gamma\", \"app\": \"e2e\"},
    {\"path\": \"$DSOCK\", \"mode\": \"0660\", \"tenant\": \"delta\", \"app\": \"e2e\"},
    {\"path\": \"$ESOCK\", \"mode\": \"0660\", \"tenant\": \"epsilon\", \"app\": \"e2e\"},
    {\"path\": \"$ZSOCK\", \"mode\": \"0660\", \"tenant\": \"zeta\", \"app\": \"e2e\"}]" \
    '.providers = ["openai", "anthropic", "bedrock"] | .upstream.health_failures = 0'
agent_start || t_block_all

PROMPT="one two three four" # 4 words: the mock counts 4 prompt tokens
NTOK=5

# upstream_one SINCE: the one request the mock saw since SINCE (compact JSON), or "".
upstream_one() {
    local reqs
    reqs=$(mock_requests_since "$1")
    [ "$(echo "$reqs" | jq length)" = 1 ] && echo "$reqs" | jq -c '.[0]'
}

# check_upstream NAME REQ PATH_SUFFIX STREAM WANT_BODY: what the mock recorded.
check_upstream() {
    local name=$1 r=$2 op=$3 s=$4 want=$5 why=""
    if [ -z "$r" ]; then
        t_fail "$name" "the mock did not see exactly one request"
        return
    fi
    [ "$(echo "$r" | jq -r .path)" = "/model/$MODEL_PATH/$op" ] || why+="path $(echo "$r" | jq -r .path); "
    [ "$(echo "$r" | jq -r '.style + "/" + .auth + "/" + (.stream | tostring)')" = "bedrock/ok/$s" ] ||
        why+="style/auth/stream $(echo "$r" | jq -r '.style + "/" + .auth + "/" + (.stream | tostring)'); "
    got_key=$(echo "$r" | jq -r '.headers.Authorization[0] // ""')
    [ "$got_key" == "Bearer ${KEY[bedrock]}" ] || why+="Authorization is not Bearer and the tenant's key; "
    creds=$(echo "$r" | jq '[.headers | to_entries[] | select(.key | test("^(authorization|api-key|x-api-key)$"; "i"))] | length')
    [ "$creds" = 1 ] || why+="$creds credential headers; "
    if [ "$s" = true ]; then
        [ "$(echo "$r" | jq -r '.headers.Accept[0] // ""')" = application/vnd.amazon.eventstream ] ||
            why+="Accept $(echo "$r" | jq -r '.headers.Accept[0] // ""'); "
    fi
    body=$(echo "$r" | jq -cS '.body | fromjson' 2>/dev/null)
    [ "$body" = "$(echo "$want" | jq -cS .)" ] || why+="body $body; "
    if [ -z "$why" ]; then t_ok "$name"; else t_fail "$name" "$why"; fi
}

# check_signed REQ ID TOKEN: why the recorded request is not signed as it should be ("" if it is).
check_signed() {
    local r=$1 id=$2 token=$3 why="" auth want_sh="content-type;host;x-amz-date"
    [ -n "$token" ] && want_sh+=";x-amz-security-token"
    [ -n "$r" ] || { echo "the mock did not see exactly one request; "; return; }
    [ "$(echo "$r" | jq -r '.style + "/" + .auth')" = bedrock/ok ] ||
        why+="style/auth $(echo "$r" | jq -r '.style + "/" + .auth'); "
    auth=$(echo "$r" | jq -r '.headers.Authorization[0] // ""')
    [[ $auth =~ ^AWS4-HMAC-SHA256\ Credential=$id/$(date -u +%Y%m%d)/us-east-1/bedrock/aws4_request,\ SignedHeaders=$want_sh,\ Signature=[0-9a-f]{64}$ ]] ||
        why+="Authorization not a SigV4 for $id/us-east-1/bedrock with $want_sh; "
    [[ $(echo "$r" | jq -r '.headers["X-Amz-Date"][0] // ""') =~ ^[0-9]{8}T[0-9]{6}Z$ ]] || why+="no X-Amz-Date; "
    [ "$(echo "$r" | jq -r '.headers["X-Amz-Security-Token"][0] // ""')" = "$token" ] || why+="X-Amz-Security-Token; "
    [ "$(echo "$r" | jq '[.headers | to_entries[] | select(.key | test("^(authorization|api-key|x-api-key)$"; "i"))] | length')" = 1 ] ||
        why+="not one credential header; "
    echo "$why"
}

BASIC_BODY="{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"$PROMPT\"}]}],\"inferenceConfig\":{\"maxTokens\":$NTOK}}"

# ---- non-streamed -------------------------------------------------------------------------
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(chat_body "bedrock/$MODEL" false "$NTOK" "$PROMPT")"
t_eq "non-streamed: HTTP 200, answer text, usage" \
    "$CODE $(echo "$BODY" | jq -r '"\(.choices[0].message.content)/\(.choices[0].finish_reason)/\(.usage.prompt_tokens)/\(.usage.completion_tokens)"' 2>/dev/null)" \
    "200 $(words $NTOK)/stop/4/$NTOK"
if [ "$(hdr X-BYOK-Provider)" = bedrock ] && [[ $(hdr X-BYOK-Model) =~ ^(bedrock/)?$MODEL$ ]]; then
    t_num_eq "non-streamed: provider, model and cost headers" "$(hdr X-BYOK-Cost-USD)" \
        "$(cost_of bedrock 4 $NTOK)" 1e-9
else
    t_fail "non-streamed: provider, model and cost headers" \
        "X-BYOK-Provider='$(hdr X-BYOK-Provider)' X-BYOK-Model='$(hdr X-BYOK-Model)'"
fi
check_upstream "non-streamed: upstream path, bearer key, Converse body" "$(upstream_one "$since")" \
    converse false "$BASIC_BODY"

# ---- streamed -----------------------------------------------------------------------------
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(chat_body "bedrock/$MODEL" true "$NTOK" "$PROMPT")"
# The frames as one line each: role, each word in order, finish, usage, [DONE].
frames=$(echo "$BODY" | sed -n 's/^data: //p' | while read -r l; do
    if [ "$l" = "[DONE]" ]; then echo DONE; else
        echo "$l" | jq -r 'if (.choices | length) == 0 then "usage"
            elif .choices[0].finish_reason != null then "finish:" + .choices[0].finish_reason
            elif .choices[0].delta.role != null then "role"
            else "text:" + .choices[0].delta.content end' 2>/dev/null || echo BAD
    fi
done | paste -sd' ')
want_frames="role"
for ((i = 0; i < NTOK; i++)); do want_frames+=" text:$([ $i = 0 ] && echo w0 || echo " w$i")"; done
t_eq "streamed: HTTP 200, frames in order, [DONE]" \
    "$CODE $(hdr Content-Type) $(hdr X-BYOK-Provider) $frames" \
    "200 text/event-stream bedrock $want_frames finish:stop usage DONE"
usage=$(echo "$BODY" | sed -n 's/^data: //p' | grep -v '^\[DONE\]$' | jq -c 'select(.usage != null) | .usage' 2>/dev/null | tail -1)
u=$(echo "$BODY" | sed -n 's/^: x-byok-usage //p' | tail -1)
got=$(echo "$u" | jq -r '"\(.provider)/\(.prompt_tokens)/\(.completion_tokens)/\(.estimated)"' 2>/dev/null)
if [ "$got" = "bedrock/4/$NTOK/false" ] && [ "$(echo "$usage" | jq -r '"\(.prompt_tokens)/\(.completion_tokens)"')" = "4/$NTOK" ]; then
    t_num_eq "streamed: usage and cost in the usage comment" "$(echo "$u" | jq -r .cost_usd)" \
        "$(cost_of bedrock 4 $NTOK)" 1e-9
else
    t_fail "streamed: usage and cost in the usage comment" "usage chunk '$usage', comment '$u'"
fi
check_upstream "streamed: upstream path, Accept and body" "$(upstream_one "$since")" \
    converse-stream true "$BASIC_BODY"

# ---- a richer request: system, sampling, stop, tools ----------------------------------------
since=$(mock_last_seq)
REQ=$(jq -cn --arg m "bedrock/$MODEL" '{model: $m, max_tokens: 3, temperature: 0.5, top_p: 0.9,
    stop: ["END"], user: "u1", seed: 7, parallel_tool_calls: false,
    messages: [{role: "system", content: "Be brief."}, {role: "user", content: "weather in Oslo"},
        {role: "assistant", content: null, tool_calls: [{id: "t1", type: "function",
            function: {name: "wx", arguments: "{\"city\":\"Oslo\"}"}}]},
        {role: "tool", tool_call_id: "t1", content: "rain"}],
    tools: [{type: "function", function: {name: "wx", description: "weather",
        parameters: {type: "object", properties: {city: {type: "string"}}}}}],
    tool_choice: "required"}')
call "$SOCK" POST /v1/chat/completions "$REQ"
WANT=$(jq -cn '{system: [{text: "Be brief."}],
    messages: [{role: "user", content: [{text: "weather in Oslo"}]},
        {role: "assistant", content: [{toolUse: {toolUseId: "t1", name: "wx", input: {city: "Oslo"}}}]},
        {role: "user", content: [{toolResult: {toolUseId: "t1", content: [{text: "rain"}]}}]}],
    inferenceConfig: {maxTokens: 3, temperature: 0.5, topP: 0.9, stopSequences: ["END"]},
    toolConfig: {tools: [{toolSpec: {name: "wx", description: "weather",
        inputSchema: {json: {type: "object", properties: {city: {type: "string"}}}}}}],
        toolChoice: {any: {}}}}')
r=$(upstream_one "$since")
if [ "$CODE" = 200 ]; then
    check_upstream "system, temperature, stop and tools: translated body" "$r" converse false "$WANT"
else
    t_fail "system, temperature, stop and tools: translated body" "HTTP $CODE ${BODY:0:300}"
fi

# The mock's tools scenario: Bedrock answers with a toolUse block (streamed: contentBlockStart
# and input fragments); the app gets OpenAI's tool_calls.
TREQ=$(jq -cn '{model: "bedrock/mock-tools", messages: [{role: "user", content: "weather?"}],
    tools: [{type: "function", function: {name: "wx", parameters: {type: "object"}}}]}')
call "$SOCK" POST /v1/chat/completions "$TREQ"
plain=$(echo "$BODY" | jq -r '.choices[0] | "\(.finish_reason)/\(.message.content)/\(.message.tool_calls[0].function.name)/\(.message.tool_calls[0].function.arguments)"' 2>/dev/null)
call "$SOCK" POST /v1/chat/completions "$(echo "$TREQ" | jq -c '.stream = true')"
streamed=$(echo "$BODY" | sed -n 's/^data: //p' | grep -v '^\[DONE\]$' | jq -rj '.choices[0].delta.tool_calls[0].function.arguments // empty' 2>/dev/null)
fin=$(echo "$BODY" | sed -n 's/^data: //p' | grep -v '^\[DONE\]$' | jq -r '.choices[0].finish_reason // empty' 2>/dev/null | tail -1)
t_eq "tool call answer comes back as OpenAI tool_calls" "$plain | $streamed $fin" \
    'tool_calls/Let me check./wx/{"city":"Paris"} | {"city":"Paris"} tool_calls'
call "$SOCK" POST /v1/chat/completions "$(echo "$REQ" | jq -c '.tool_choice = "none"')"
t_eq "tool_choice none: 400 naming the field, nothing sent" \
    "$CODE $(echo "$BODY" | jq -r .error.param 2>/dev/null)" "400 tool_choice"

# ---- errors ---------------------------------------------------------------------------------
since=$(mock_last_seq)
call "$BSOCK" POST /v1/chat/completions "$(chat_body "bedrock/$MODEL" false 3)"
r=$(upstream_one "$since")
t_eq "refused key: 403 from Bedrock, 502 provider_auth_failed, no key in the reply" \
    "$CODE $(echo "$BODY" | jq -r .error.code 2>/dev/null) $(echo "$r" | jq -r '"\(.status)/\(.auth)"') $(grep -cF -- "${KEY[refused]##*-}" <<<"$HDRS$BODY")" \
    "502 provider_auth_failed 403/bad_key 0"

mock_ctl POST /_mock/scenario '{"scenario":"503","count":1}' >/dev/null
since=$(mock_last_seq)
call "$GSOCK" POST /v1/chat/completions "$(chat_body auto false 3)"
trace=$(mock_requests_since "$since" | jq -r 'map(.style + ":" + .scenario + ":" + (.status | tostring)) | join(",")')
t_eq "503 from bedrock: answered by openai (failover), 2 attempts" \
    "$CODE $(hdr X-BYOK-Provider) $(hdr X-BYOK-Attempts) $trace" \
    "200 openai 2 bedrock:503:503,openai:normal:200"
mock_ctl DELETE /_mock/scenario >/dev/null

call "$SOCK" POST /v1/chat/completions "$(chat_body bedrock/mock-streamerror true 6)"
err=$(echo "$BODY" | grep -A1 '^event: error' | sed -n 's/^data: //p' | jq -r .error.code 2>/dev/null)
t_eq "exception mid-stream: the agent's provider_stream_error, no provider text" \
    "$CODE $(echo "$BODY" | sse_content) $err $(grep -c 'not valid for this model' <<<"$BODY")" \
    "200 w0 w1 provider_stream_error 0"

call "$SOCK" POST /v1/chat/completions "$(chat_body bedrock/mock-malformed true 6)"
err=$(echo "$BODY" | grep -A1 '^event: error' | sed -n 's/^data: //p' | jq -r .error.code 2>/dev/null)
t_eq "bad message CRC mid-stream: the agent's stream_parse_error" \
    "$CODE $(echo "$BODY" | sse_content) $err" "200 w0 w1 stream_parse_error"

since=$(mock_last_seq)
call "$SOCK" POST /v1/embeddings '{"model":"bedrock/text-embedding-3-small","input":"alpha beta"}'
t_eq "embedding model Bedrock's translation does not know: 400 unsupported, nothing sent" \
    "$CODE $(echo "$BODY" | jq -r .error.code 2>/dev/null) $(mock_requests_since "$since" | jq length)" \
    "400 unsupported 0"

# ---- embeddings (InvokeModel) -------------------------------------------------------------
t_eq "built-in catalog: bedrock lists Titan V2 and Cohere v3 embeddings at \$0.02 and \$0.10 per 1M" \
    "$(echo "$EMBED_MODELS" | jq -c 'map([.name, .input_per_1m, .context_window])')" \
    '[["amazon.titan-embed-text-v2:0",0.02,8192],["cohere.embed-english-v3",0.1,512],["cohere.embed-multilingual-v3",0.1,512]]'

# embed_cost TOKENS MODEL: the cost of TOKENS input tokens at MODEL's catalog price.
embed_cost() { awk -v t="$1" -v p="$(price "$2")" 'BEGIN { printf "%.10f", t * p / 1e6 }'; }

since=$(mock_last_seq)
call "$SOCK" POST /v1/embeddings "{\"model\":\"bedrock/$TITAN\",\"input\":\"alpha beta gamma\",\"dimensions\":256}"
got="$CODE $(echo "$BODY" | jq -r '"\(.object)/\(.data | length)/\(.data[0].index)/\(.data[0].embedding | length)/\(.usage.prompt_tokens)/\(.usage.total_tokens)"' 2>/dev/null) $(hdr X-BYOK-Provider)"
if [ "$got" = "200 list/1/0/256/3/3 bedrock" ]; then
    t_num_eq "Titan embedding, ABSK key: 200, one vector of 256, usage from Bedrock, cost" \
        "$(hdr X-BYOK-Cost-USD)" "$(embed_cost 3 "$TITAN")" 1e-9
else
    t_fail "Titan embedding, ABSK key: 200, one vector of 256, usage from Bedrock, cost" "$got ${BODY:0:200}"
fi
MODEL_PATH=$TITAN_PATH check_upstream "Titan embedding, ABSK key: upstream path, bearer key, InvokeModel body" \
    "$(upstream_one "$since")" invoke false '{"inputText":"alpha beta gamma","normalize":true,"dimensions":256}'

since=$(mock_last_seq)
call "$SOCK" POST /v1/embeddings "{\"model\":\"bedrock/$COHERE\",\"input\":[\"alpha beta\",\"gamma\",\"delta epsilon zeta\"]}"
got="$CODE $(echo "$BODY" | jq -r '"\(.data | map(.index) | join(","))/\(.data | map(.embedding[0]) | join(","))"' 2>/dev/null)"
ptok=$(echo "$BODY" | jq -r '.usage.prompt_tokens' 2>/dev/null)
if [ "$got" = "200 0,1,2/0.01,0.02,0.03" ] && [ "${ptok:-0}" -gt 0 ] 2>/dev/null; then
    t_num_eq "Cohere embedding on Bedrock: 3 texts, 3 vectors in order, estimated usage, cost" \
        "$(hdr X-BYOK-Cost-USD)" "$(embed_cost "$ptok" "$COHERE")" 1e-9
else
    t_fail "Cohere embedding on Bedrock: 3 texts, 3 vectors in order, estimated usage, cost" "$got tokens=$ptok ${BODY:0:200}"
fi
MODEL_PATH=$COHERE check_upstream "Cohere embedding on Bedrock: upstream path and body" \
    "$(upstream_one "$since")" invoke false \
    '{"texts":["alpha beta","gamma","delta epsilon zeta"],"input_type":"search_document","truncate":"NONE"}'

since=$(mock_last_seq)
call "$DSOCK" POST /v1/embeddings "{\"model\":\"bedrock/$TITAN\",\"input\":[\"alpha beta\"]}"
r=$(upstream_one "$since")
why=$(check_signed "$r" "${IAM[delta-id]}" "")
[ "$(echo "$r" | jq -r .path)" = "/model/$TITAN_PATH/invoke" ] || why+="path $(echo "$r" | jq -r .path); "
got="$CODE $(echo "$BODY" | jq -r '"\(.data | length)/\(.usage.prompt_tokens)"' 2>/dev/null) $(hdr X-BYOK-Provider)"
if [ "$got" = "200 1/2 bedrock" ] && [ -z "$why" ]; then
    t_ok "Titan embedding, IAM key: 200, InvokeModel signed with SigV4"
else
    t_fail "Titan embedding, IAM key: 200, InvokeModel signed with SigV4" "$got; $why ${BODY:0:200}"
fi

# Tenant delta has a Bedrock key only: auto and a bare model name have Bedrock's models to pick.
got=""
for m in auto "$TITAN" "$COHERE"; do
    call "$DSOCK" POST /v1/embeddings "{\"model\":\"$m\",\"input\":\"alpha\"}"
    got+="$CODE $(hdr X-BYOK-Provider) $(echo "$BODY" | jq -r '.data | length' 2>/dev/null); "
done
t_eq "auto and bare model embeddings reach Bedrock" "$got" \
    "200 bedrock 1; 200 bedrock 1; 200 bedrock 1; "

# 3 texts under auto: Bedrock's pick is Titan, its cheapest embedding model (the router takes
# one model per provider), which refuses them as unsupported. Tenant gamma (bedrock first, then
# openai): openai answers, nothing went to Bedrock. Tenant delta (Bedrock only): a 400.
since=$(mock_last_seq)
call "$GSOCK" POST /v1/embeddings '{"model":"auto","input":["alpha","beta","gamma"]}'
got="$CODE $(hdr X-BYOK-Provider) $(echo "$BODY" | jq -r '.data | length' 2>/dev/null) $(mock_requests_since "$since" | jq -r 'map(.style) | join(",")')"
call "$DSOCK" POST /v1/embeddings '{"model":"auto","input":["alpha","beta","gamma"]}'
got+="; $CODE $(echo "$BODY" | jq -r .error.code 2>/dev/null) $(mock_requests_since "$since" | jq -r 'map(.style) | join(",")')"
t_eq "auto, 3 texts: Titan passed over (one text per call), openai answers; Bedrock only: 400" \
    "$got" "200 openai 3 openai; 400 unsupported openai"

since=$(mock_last_seq)
call "$SOCK" POST /v1/embeddings "{\"model\":\"bedrock/$TITAN\",\"input\":[\"alpha\",\"beta\"]}"
t_eq "Titan, 2 texts asked by name: 400 unsupported, nothing sent" \
    "$CODE $(echo "$BODY" | jq -r .error.code 2>/dev/null) $(mock_requests_since "$since" | jq length)" \
    "400 unsupported 0"

since=$(mock_last_seq)
got=""
for b in "{\"model\":\"bedrock/$TITAN\",\"input\":\"a\",\"dimensions\":300}" \
    "{\"model\":\"bedrock/$COHERE\",\"input\":\"a\",\"dimensions\":256}" \
    "{\"model\":\"$TITAN\",\"input\":\"a\",\"dimensions\":100}"; do
    call "$SOCK" POST /v1/embeddings "$b"
    got+="$CODE $(echo "$BODY" | jq -r .error.param 2>/dev/null); "
done
t_eq "bad dimensions: 400 naming dimensions, nothing sent" \
    "$got$(mock_requests_since "$since" | jq length)" "400 dimensions; 400 dimensions; 400 dimensions; 0"

# ---- IAM keys (SigV4) ---------------------------------------------------------------------

since=$(mock_last_seq)
call "$DSOCK" POST /v1/chat/completions "$(chat_body "bedrock/$MODEL" false "$NTOK" "$PROMPT")"
got="$CODE $(echo "$BODY" | jq -r '.choices[0].message.content' 2>/dev/null) $(hdr X-BYOK-Provider)"
why=$(check_signed "$(upstream_one "$since")" "${IAM[delta-id]}" "")
if [ "$got" = "200 $(words $NTOK) bedrock" ] && [ -z "$why" ]; then
    t_ok "IAM key: non-streamed 200, SigV4 for us-east-1/bedrock, no bearer, no token"
else
    t_fail "IAM key: non-streamed 200, SigV4 for us-east-1/bedrock, no bearer, no token" "$got; $why ${BODY:0:200}"
fi

since=$(mock_last_seq)
call "$DSOCK" POST /v1/chat/completions "$(chat_body "bedrock/$MODEL" true "$NTOK" "$PROMPT")"
got="$CODE $(echo "$BODY" | sse_content) $(echo "$BODY" | grep -c '^data: \[DONE\]')"
r=$(upstream_one "$since")
why=$(check_signed "$r" "${IAM[delta-id]}" "")
[ "$(echo "$r" | jq -r .path)" = "/model/$MODEL_PATH/converse-stream" ] || why+="path; "
if [ "$got" = "200 $(words $NTOK) 1" ] && [ -z "$why" ]; then
    t_ok "IAM key: streamed 200, frames in order, signed"
else
    t_fail "IAM key: streamed 200, frames in order, signed" "$got; $why"
fi

since=$(mock_last_seq)
call "$ESOCK" POST /v1/chat/completions "$(chat_body "bedrock/$MODEL" false "$NTOK" "$PROMPT")"
got="$CODE $(echo "$BODY" | jq -r '.choices[0].message.content' 2>/dev/null)"
why=$(check_signed "$(upstream_one "$since")" "${IAM[eps-id]}" "${IAM[eps-token]}")
since=$(mock_last_seq)
call "$ESOCK" POST /v1/chat/completions "$(chat_body "bedrock/$MODEL" true "$NTOK" "$PROMPT")"
got+=" $CODE $(echo "$BODY" | sse_content)"
why+=$(check_signed "$(upstream_one "$since")" "${IAM[eps-id]}" "${IAM[eps-token]}")
if [ "$got" = "200 $(words $NTOK) 200 $(words $NTOK)" ] && [ -z "$why" ]; then
    t_ok "temporary IAM key: session token sent and signed, non-streamed and streamed 200"
else
    t_fail "temporary IAM key: session token sent and signed, non-streamed and streamed 200" "$got; $why"
fi

since=$(mock_last_seq)
call "$ZSOCK" POST /v1/chat/completions "$(chat_body "bedrock/$MODEL" false 3)"
r=$(upstream_one "$since")
t_eq "IAM key, wrong secret: 403 InvalidSignature, 502 provider_auth_failed, no key in the reply" \
    "$CODE $(echo "$BODY" | jq -r .error.code 2>/dev/null) $(echo "$r" | jq -r '"\(.status)/\(.auth)"') $(grep -cF -e "${IAM[zeta-secret]}" -e "${IAM[zeta-id]}" <<<"$HDRS$BODY")" \
    "502 provider_auth_failed 403/bad_signature 0"
# The refused key was dropped: after a rotation to the secret AWS knows, the next call fetches it.
IAM[zeta2]="${IAM[zeta-id]}:${IAM[zeta-aws-secret]}"
vault_api PUT byok/tenants/zeta/keys/bedrock/production/rotate \
    "$(K=${IAM[zeta2]} jq -n '{key_value: env.K}')" "$ADMIN_TOKEN" >/dev/null
rot=$VAULT_CODE
call "$ZSOCK" POST /v1/chat/completions "$(chat_body "bedrock/$MODEL" false 3)"
t_eq "IAM key refused: dropped from the cache, the rotated key answers the next call" \
    "$rot $CODE $(hdr X-BYOK-Provider)" "200 200 bedrock"

# AWS refuses a signature more than 15 minutes from its clock: the mock's clock 20 minutes ahead.
mock_ctl POST /_mock/scenario '{"scenario":"normal","count":-1,"clock_offset_s":1200}' >/dev/null
since=$(mock_last_seq)
call "$DSOCK" POST /v1/chat/completions "$(chat_body "bedrock/$MODEL" false 3)"
r=$(upstream_one "$since")
mock_ctl DELETE /_mock/scenario >/dev/null
t_eq "IAM key, clock 20 minutes off: AWS's expired signature, 502 provider_auth_failed" \
    "$CODE $(echo "$BODY" | jq -r .error.code 2>/dev/null) $(echo "$r" | jq -r '"\(.status)/\(.auth)"')" \
    "502 provider_auth_failed 403/expired"

# Malformed IAM values: each a 400 naming key_value; the message never quotes the value.
why=""
S40=$(iam_secret)
for v in "$(iam_id AKIA)" "$(iam_id AKIA | cut -c1-19):$S40" "$(iam_id AKIA)x:$S40" \
    "$(iam_id AKIA):${S40}x" "$(iam_id AKIA):${S40:0:39}-" "$(iam_id ASIA):$S40" \
    "$(iam_id AKIA):$S40:$(iam_token)" "$(iam_id ASIA):$S40:short" "$(iam_id ASIA):$S40:$(iam_token)-x" \
    "sk-canary:$S40"; do
    vault_api PUT byok/tenants/delta/keys/bedrock/production "$(K=$v jq -n '{key_value: env.K}')" "$ADMIN_TOKEN"
    msg=$(echo "$VAULT_BODY" | jq -r '.errors | join(" ")' 2>/dev/null)
    [ "$VAULT_CODE" = 400 ] && [[ $msg == *"'key_value'"* ]] || why+="HTTP $VAULT_CODE ($msg); "
    grep -qF -e "${S40:12:16}" -e "${v:4:16}" <<<"$VAULT_BODY" && why+="value quoted; "
done
vault_api PUT byok/tenants/delta/keys/bedrock/production/rotate \
    "$(K="$(iam_id ASIA):$S40" jq -n '{key_value: env.K}')" "$ADMIN_TOKEN"
[ "$VAULT_CODE" = 400 ] || why+="rotate: HTTP $VAULT_CODE; "
vault_api PUT byok/tenants/delta/keys/bedrock/production \
    "$(K=${IAM[delta]} jq -n '{key_value: env.K, metadata: {region: "US_EAST"}}')" "$ADMIN_TOKEN"
[ "$VAULT_CODE" = 400 ] && [[ $VAULT_BODY == *"'metadata'"* ]] || why+="bad region: HTTP $VAULT_CODE; "
if [ -z "$why" ]; then
    t_ok "IAM key formats: the plugin refuses each with a 400 naming key_value, never quoting it"
else
    t_fail "IAM key formats: the plugin refuses each with a 400 naming key_value, never quoting it" "$why"
fi

vault_api GET byok/tenants/delta/keys/bedrock/production "" "$ADMIN_TOKEN"
t_eq "IAM key read: masked to the access key ID, valid" \
    "$VAULT_CODE $(echo "$VAULT_BODY" | jq -r '"\(.data.masked_value) \(.data.validation.is_valid)"')" \
    "200 ${IAM[delta-id]}:... true"

t_check "agent alive" kill -0 "$AGENT_PID"
agent_stop_check "agent stops cleanly on SIGTERM, no sanitizer report"
canary_scan "canary: nowhere but the provider request" "${KEY[@]}" "${IAM[delta]}" "${IAM[eps]}" \
    "${IAM[zeta]}" "${IAM[eps-token]}"
# The secret access keys are never sent (only signatures made with them): not even the mock's
# request record holds one. Only the mock's key list does, which is its input, as AWS's IAM holds
# the secret it checks signatures with.
hits=$(grep -rlaF -f <(canary_needles all "${IAM[delta-secret]}" "${IAM[eps-secret]}" \
    "${IAM[zeta-secret]}" "${IAM[zeta-aws-secret]}") -- "$LIB_TMP" 2>/dev/null | grep -vxF -e "$MOCK_KEYS" | tr '\n' ' ')
if [ -z "$hits" ]; then
    t_ok "canary: no secret access key anywhere (only the mock's key list holds it)"
else
    t_fail "canary: no secret access key anywhere (only the mock's key list holds it)" "found in: $hits"
fi
t_done
[ "$T_FAILED" -eq 0 ]
