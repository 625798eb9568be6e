#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# POST /v1/messages and /v1/messages/count_tokens, Anthropic's Messages API
# passed through to Anthropic-style providers, end to end: app -> agent
# socket -> Vault -> plugin creds -> the mock's Anthropic API. Non-streamed
# and streamed with auto, anthropic/<model> and a bare name; the body the
# provider received is the app's, byte for byte, but for the model; the
# tenant's key reached the mock and the app's own x-api-key and
# Authorization did not; usage and X-BYOK-Cost-USD from the mock's usage at
# the catalog price; the stream's events in order and complete, the closing
# usage comment; failover between two Anthropic providers; errors in
# Anthropic's shape (bad JSON, max_tokens, stream, body too big, another
# provider's model, no key, 5xx, 429, an error mid-stream) with nothing of
# the provider's text; anthropic-version and anthropic-beta forwarded, a
# malformed one refused; count_tokens; the route label; the canary scan.
#
# Claude on Amazon Bedrock (InvokeModel; the catalog's bedrock entry pointed
# at the mock, a Claude inference profile its default model): non-streamed
# and streamed with a Bedrock API key (bearer) and an IAM key (SigV4), the
# body the mock received (the app's bytes without model and stream, with
# anthropic_version bedrock-2023-05-31 and the anthropic-beta header as
# anthropic_beta), Anthropic's SSE events re-framed from the binary event
# stream, usage and cost at the catalog price (Bedrock's invocation metrics
# when the events carry no usage), an exception mid-stream, a non-Claude
# Bedrock model and count_tokens refused, failover anthropic -> bedrock.
. "$(dirname "$0")/lib.sh"

CASES=("auto: HTTP 200, Anthropic's message with the answer"
    "auto: X-BYOK headers, an Anthropic model"
    "auto: the provider received the app's body byte for byte but for the model"
    "auto: the tenant's key upstream, not the app's x-api-key or Authorization"
    "auto: usage and X-BYOK-Cost-USD from the mock's usage at the catalog price"
    "auto: anthropic-version 2023-06-01 when the app sent none"
    "anthropic/<model>: HTTP 200, model rewritten upstream"
    "bare model name: HTTP 200 through the Anthropic provider"
    "stream: events in order, message_start to message_stop"
    "stream: the text of the deltas, the provider's frames as they were"
    "stream: the closing usage comment with the mock's usage and cost"
    "app leaves a stream: logged 499 client_closed, usage estimated, the provider sees its client go"
    "failover: a 500 from the first Anthropic provider, the second answers"
    "anthropic-version and anthropic-beta forwarded (and ?beta=true taken)"
    "malformed anthropic-version: 400 in Anthropic's shape, nothing sent"
    "malformed anthropic-beta: 400 in Anthropic's shape, nothing sent"
    "bad JSON: 400 invalid_request_error, nothing sent"
    "missing max_tokens: 400 naming it, nothing sent"
    "max_tokens 0 and stream not a boolean: 400, nothing sent"
    "messages empty: 400, nothing sent"
    "body over limits.max_body_bytes: 413 request_too_large"
    "max_tokens above the model's max_output_tokens: 400"
    "an image block needs vision, stream needs streaming: 403 permission_error, nothing sent"
    "openai/<model>: 404 not_found_error, nothing sent"
    "a bare name only a non-Anthropic provider serves: 404 not_found_error"
    "no Anthropic key: 404 not_found_error"
    "provider 500: 502 api_error in the agent's words"
    "provider 429: 429 rate_limit_error with Retry-After"
    "stream error mid-answer: Anthropic's error event, the provider's text dropped"
    "stream 'event: error' of another type, then message_stop: the agent's error event, nothing of the provider's"
    "stream frame with a top-level error and no type, then message_stop: the agent's error event, nothing of the provider's"
    "count_tokens: the provider's count, its path, no cost"
    "count_tokens: errors in Anthropic's shape"
    "real SDK: the Python anthropic client"
    "bedrock auto: HTTP 200, Anthropic's message, X-BYOK-Provider bedrock and a Claude model"
    "bedrock: InvokeModel's path, the app's bytes without model and stream, anthropic_version added"
    "bedrock: the Bedrock key as a bearer token, not the app's x-api-key"
    "bedrock: usage and X-BYOK-Cost-USD from the mock's usage at the catalog price"
    "bedrock stream: Anthropic's events in order, re-framed from the binary event stream"
    "bedrock stream: the text of the deltas, the closing usage comment with usage and cost"
    "bedrock stream without Anthropic usage: Bedrock's invocation metrics count it"
    "bedrock: anthropic-beta moved into the body's anthropic_beta, no header"
    "bedrock IAM key: SigV4-signed InvokeModel, non-streamed and streamed 200"
    "bedrock exception mid-stream: Anthropic's error event, the provider's text dropped"
    "bedrock/<non-Claude model> and count_tokens on Bedrock: 404 not_found_error, nothing sent"
    "failover: a 500 from Anthropic, Claude on Bedrock answers"
    "request log and metrics label the route /v1/messages"
    "agent alive" "agent stops cleanly on SIGTERM, no sanitizer report"
    "canary: nowhere but the provider request")

lib_up && lib_require "$AGENT_BIN" || t_block_all

# A second Anthropic-style provider at the mock, for failover.
PRICE_IN[anthropic2]=6000
PRICE_OUT[anthropic2]=8000
PROVIDER_MODEL[anthropic2]=claude-3-5-haiku
vault_api PUT byok/providers/anthropic2 "$(provider_entry anthropic2 anthropic "$MOCK_URL/v1")" "$ADMIN_TOKEN" >/dev/null
[ "$VAULT_CODE" -lt 300 ] || { LIB_BLOCKED_REASON="catalog anthropic2: HTTP $VAULT_CODE"; t_block_all; }

TENANT=acme
canary_keys "$TENANT" openai anthropic || { LIB_BLOCKED_REASON="key write failed"; t_block_all; }
# The second Anthropic provider's key, for tenant beta only (acme's calls have one candidate each).
KEY[anthropic2]=$(lib_canary)
key_put beta anthropic2 "${KEY[anthropic2]}" || { LIB_BLOCKED_REASON="key write failed"; t_block_all; }
KEY[anthropic_b]=$(lib_canary)
key_put beta anthropic "${KEY[anthropic_b]}" || { LIB_BLOCKED_REASON="key write failed"; t_block_all; }
# Tenant oonly has an OpenAI key.
KEY[openai_o]=$(lib_canary)
key_put oonly openai "${KEY[openai_o]}" || { LIB_BLOCKED_REASON="key write failed"; t_block_all; }
# Tenant perm's Anthropic key permits chat and tools only.
KEY[anthropic_p]=$(lib_canary)
mock_accept "${KEY[anthropic_p]}"
vault_api PUT byok/tenants/perm/keys/anthropic/production \
    "$(K=${KEY[anthropic_p]} jq -n '{key_value: env.K, permissions: ["chat", "tools"]}')" "$ADMIN_TOKEN" >/dev/null
[ "$VAULT_CODE" -lt 300 ] || { LIB_BLOCKED_REASON="key write failed"; t_block_all; }
APP_KEY=$(lib_canary) # what an Anthropic SDK sends as its own key: never forwarded

# Claude on Bedrock: the catalog's bedrock entry at the mock, a Claude inference profile its
# default model (the mock's scenario names are not Claude: Bedrock never serves them here).
BMODEL=us.anthropic.claude-3-5-haiku-20241022-v1:0
BMODEL_PATH=us.anthropic.claude-3-5-haiku-20241022-v1%3A0
PROVIDER_MODEL[bedrock]=$BMODEL
PRICE_IN[bedrock]=7000
PRICE_OUT[bedrock]=11000
vault_api PUT byok/providers/bedrock \
    "$(provider_entry bedrock bedrock "$MOCK_URL" | jq '.key_prefixes = ["ABSK"]')" "$ADMIN_TOKEN" >/dev/null
[ "$VAULT_CODE" -lt 300 ] || { LIB_BLOCKED_REASON="catalog bedrock: HTTP $VAULT_CODE"; t_block_all; }
# Tenant bed: a Bedrock API key only. Tenant bedi: an IAM key (signed for its metadata's region).
# Tenant fo: Anthropic, then Bedrock (the agent's providers order).
KEY[bedrock]="ABSK-canary-$(lib_random_hex 16)"
key_put bed bedrock "${KEY[bedrock]}" || { LIB_BLOCKED_REASON="key write failed"; t_block_all; }
KEY[bedrock_fo]="ABSK-canary-$(lib_random_hex 16)"
KEY[anthropic_fo]=$(lib_canary)
key_put fo bedrock "${KEY[bedrock_fo]}" && key_put fo anthropic "${KEY[anthropic_fo]}" ||
    { LIB_BLOCKED_REASON="key write failed"; t_block_all; }
IAM_ID="AKIA$(head -c 10 /dev/urandom | base32)"
IAM_SECRET="CANARYsecret$(lib_random_hex 14)"
mock_accept "$IAM_ID:$IAM_SECRET"
vault_api PUT byok/tenants/bedi/keys/bedrock/production \
    "$(K="$IAM_ID:$IAM_SECRET" jq -n '{key_value: env.K, name: "e2e", metadata: {region: "us-east-1"}}')" \
    "$ADMIN_TOKEN" >/dev/null
[ "$VAULT_CODE" -lt 300 ] || { LIB_BLOCKED_REASON="IAM key write: HTTP $VAULT_CODE"; t_block_all; }

SOCK=$AGENT_DIR/acme.sock
SOCK_B=$AGENT_DIR/beta.sock
SOCK_O=$AGENT_DIR/oonly.sock
SOCK_P=$AGENT_DIR/perm.sock
SOCK_BED=$AGENT_DIR/bed.sock
SOCK_BEDI=$AGENT_DIR/bedi.sock
SOCK_FO=$AGENT_DIR/fo.sock
agent_config "[{\"path\": \"$SOCK\", \"mode\": \"0660\", \"tenant\": \"$TENANT\", \"app\": \"messages\", \"metrics\": true},
    {\"path\": \"$SOCK_B\", \"mode\": \"0660\", \"tenant\": \"beta\", \"app\": \"messages\"},
    {\"path\": \"$SOCK_O\", \"mode\": \"0660\", \"tenant\": \"oonly\", \"app\": \"messages\"},
    {\"path\": \"$SOCK_P\", \"mode\": \"0660\", \"tenant\": \"perm\", \"app\": \"messages\"},
    {\"path\": \"$SOCK_BED\", \"mode\": \"0660\", \"tenant\": \"bed\", \"app\": \"messages\"},
    {\"path\": \"$SOCK_BEDI\", \"mode\": \"0660\", \"tenant\": \"bedi\", \"app\": \"messages\"},
    {\"path\": \"$SOCK_FO\", \"mode\": \"0660\", \"tenant\": \"fo\", \"app\": \"messages\"}]" \
    '.log_level = "info" | .upstream.health_failures = 0 | .limits.max_body_bytes = 65536
     | .providers = ["openai", "azure", "anthropic", "anthropic2", "bedrock"]'
agent_start || t_block_all

upstream_one() {
    local reqs
    reqs=$(mock_requests_since "$1")
    [ "$(echo "$reqs" | jq length)" = 1 ] && echo "$reqs" | jq -c '.[0]'
}
sent_since() { mock_requests_since "$1" | jq length; }
# anth_err: "STATUS type error.type" of the last call.
anth_err() { echo "$CODE $(echo "$BODY" | jq -r '"\(.type) \(.error.type)"' 2>/dev/null)"; }
event_names() { echo "$BODY" | sed -n 's/^event: //p' | tr '\n' ' ' | sed 's/ $//'; }
usage_comment() { echo "$BODY" | sed -n 's/^: x-byok-usage //p' | tail -1; }

NTOK=5
# The app's body as an SDK would write it: spacing, an escape, a float, a field the agent does not
# know, system, tools, metadata. The mock counts 4 prompt words + 2 of system.
mbody() { # MODEL [STREAM]
    printf '{"model": "%s", "max_tokens": %d,\n  "system": "be brief", "stream": %s,\n  "messages": [{"role": "user", "content": [{"type": "text", "text": "one two three caf\\u00e9"}]}],\n  "tools": [{"name": "get_time", "description": "the time", "input_schema": {"type": "object"}}],\n  "metadata": {"user_id": "u-1"}, "temperature": 0.50, "x_future_field": {"n": 1e2}}' \
        "$1" "$NTOK" "${2:-false}"
}
PROMPT_TOKENS=6

# ---- non-streamed, auto --------------------------------------------------------------------------
since=$(mock_last_seq)
APP=$(mbody auto)
call "$SOCK" POST /v1/messages "$APP" -H "x-api-key: $APP_KEY" -H "Authorization: Bearer $APP_KEY"
t_eq "auto: HTTP 200, Anthropic's message with the answer" \
    "$CODE $(echo "$BODY" | jq -r '"\(.type) \(.role) \(.content[0].text)"' 2>/dev/null)" \
    "200 message assistant $(words $NTOK)"
MODEL=$(hdr X-BYOK-Model)
t_eq "auto: X-BYOK headers, an Anthropic model" "$(hdr X-BYOK-Provider) $(hdr X-BYOK-Attempts) ${MODEL:+set}" \
    "anthropic 1 set"
r=$(upstream_one "$since")
want=$(printf '%s' "$APP" | sed "s/\"model\": \"auto\"/\"model\": \"$MODEL\"/")
t_eq "auto: the provider received the app's body byte for byte but for the model" \
    "$(echo "$r" | jq -r '"\(.path)|\(.body)"')" "/v1/messages|$want"
t_eq "auto: the tenant's key upstream, not the app's x-api-key or Authorization" \
    "$(echo "$r" | jq -c '[.auth, (.headers["X-Api-Key"] | length), (.headers.Authorization // [] | length)]')" \
    '["ok",1,0]'
cost=$(awk -v c="$(cost_of anthropic $PROMPT_TOKENS $NTOK)" 'BEGIN { printf "%.8f", c }')
t_eq "auto: usage and X-BYOK-Cost-USD from the mock's usage at the catalog price" \
    "$(echo "$BODY" | jq -c .usage) $(hdr X-BYOK-Cost-USD)" \
    "{\"input_tokens\":$PROMPT_TOKENS,\"output_tokens\":$NTOK} $cost"
t_eq "auto: anthropic-version 2023-06-01 when the app sent none" \
    "$(echo "$r" | jq -c '[.headers["Anthropic-Version"], .headers["Anthropic-Beta"]]')" '[["2023-06-01"],null]'

# ---- explicit and bare -----------------------------------------------------------------------------
since=$(mock_last_seq)
call "$SOCK" POST /v1/messages "$(mbody anthropic/claude-3-5-haiku)"
t_eq "anthropic/<model>: HTTP 200, model rewritten upstream" \
    "$CODE $(hdr X-BYOK-Model) $(upstream_one "$since" | jq -r '.body | fromjson | .model')" \
    "200 claude-3-5-haiku claude-3-5-haiku"
since=$(mock_last_seq)
call "$SOCK" POST /v1/messages "$(mbody mock-normal)"
t_eq "bare model name: HTTP 200 through the Anthropic provider" \
    "$CODE $(hdr X-BYOK-Provider) $(upstream_one "$since" | jq -r '"\(.style) \(.body | fromjson | .model)"')" \
    "200 anthropic anthropic mock-normal"

# ---- streamed ---------------------------------------------------------------------------------------
since=$(mock_last_seq)
call "$SOCK" POST /v1/messages "$(mbody auto true)"
evs="message_start content_block_start ping"
for ((i = 0; i < NTOK; i++)); do evs+=" content_block_delta"; done
evs+=" content_block_stop message_delta message_stop"
t_eq "stream: events in order, message_start to message_stop" \
    "$CODE $(hdr Content-Type) $(event_names)" "200 text/event-stream $evs"
text=$(echo "$BODY" | sed -n 's/^data: //p' | jq -rj 'select(.type == "content_block_delta") | .delta.text' 2>/dev/null)
frames=$(echo "$BODY" | grep -c '^data: {')
t_eq "stream: the text of the deltas, the provider's frames as they were" \
    "$text|$frames $(upstream_one "$since" | jq -r .stream)" "$(words $NTOK)|$((NTOK + 6)) true"
u=$(usage_comment)
t_eq "stream: the closing usage comment with the mock's usage and cost" \
    "$(echo "$u" | jq -c '[.provider, .prompt_tokens, .completion_tokens, .estimated]' 2>/dev/null) $(echo "$u" | jq -r '.cost_usd * 1e8 | round' 2>/dev/null)" \
    "[\"anthropic\",$PROMPT_TOKENS,$NTOK,false] $(awk -v c="$cost" 'BEGIN { printf "%d", c * 1e8 + 0.5 }')"

since=$(mock_last_seq)
curl -s -N -m 1 --unix-socket "$SOCK" http://localhost/v1/messages -H 'Content-Type: application/json' \
    -d "$(NTOK=200 mbody anthropic/mock-slowstream true)" >"$LIB_TMP/left.out" 2>/dev/null
rec() { mock_requests_since "$since" | jq -c '.[0]' 2>/dev/null; }
rec_gone() { [ "$(rec | jq -r .client_gone)" = true ]; }
lib_wait_for 5 rec_gone
lib_wait_for 5 grep -q '"model":"mock-slowstream"' "$AGENT_LOG"
line=$(grep '"model":"mock-slowstream"' "$AGENT_LOG" | tail -1)
t_eq "app leaves a stream: logged 499 client_closed, usage estimated, the provider sees its client go" \
    "$(echo "$line" | jq -c '[.route, .status, .error, .usage_estimated]' 2>/dev/null) $(rec | jq -r .client_gone) $(grep -c '^event: message_start' "$LIB_TMP/left.out")" \
    '["/v1/messages","499","client_closed","true"] true 1'

# ---- failover between two Anthropic providers (tenant beta) ------------------------------------------
since=$(mock_last_seq)
mock_ctl POST /_mock/scenario '{"scenario":"500","count":1}' >/dev/null
call "$SOCK_B" POST /v1/messages "$(mbody claude-3-5-haiku)"
mock_ctl DELETE /_mock/scenario >/dev/null
t_eq "failover: a 500 from the first Anthropic provider, the second answers" \
    "$CODE $(hdr X-BYOK-Attempts) $(sent_since "$since") $(echo "$BODY" | jq -r .type 2>/dev/null)" \
    "200 2 2 message"

# ---- headers ------------------------------------------------------------------------------------------
since=$(mock_last_seq)
# Claude Code calls /v1/messages?beta=true: the query is the SDK's marker, not sent on.
call "$SOCK" POST '/v1/messages?beta=true' "$(mbody anthropic/claude-3-5-haiku)" -H 'anthropic-version: 2023-06-01' \
    -H 'anthropic-beta: prompt-caching-2024-07-31, token-efficient-tools-2025-02-19'
t_eq "anthropic-version and anthropic-beta forwarded (and ?beta=true taken)" \
    "$CODE $(upstream_one "$since" | jq -c '[.path, .query, .headers["Anthropic-Version"], .headers["Anthropic-Beta"]]')" \
    '200 ["/v1/messages","",["2023-06-01"],["prompt-caching-2024-07-31, token-efficient-tools-2025-02-19"]]'
since=$(mock_last_seq)
call "$SOCK" POST /v1/messages "$(mbody auto)" -H 'anthropic-version: 2023-6-1'
t_eq "malformed anthropic-version: 400 in Anthropic's shape, nothing sent" \
    "$(anth_err) $(sent_since "$since")" "400 error invalid_request_error 0"
since=$(mock_last_seq)
call "$SOCK" POST /v1/messages "$(mbody auto)" -H 'anthropic-beta: a;b'
t_eq "malformed anthropic-beta: 400 in Anthropic's shape, nothing sent" \
    "$(anth_err) $(sent_since "$since")" "400 error invalid_request_error 0"

# ---- refusals -------------------------------------------------------------------------------------------
since=$(mock_last_seq)
call "$SOCK" POST /v1/messages '{"model": "auto", "max_tokens": 5, "messages": ['
t_eq "bad JSON: 400 invalid_request_error, nothing sent" \
    "$(anth_err) $(echo "$BODY" | jq -r '.request_id | startswith("req_")') $(sent_since "$since")" \
    "400 error invalid_request_error true 0"
call "$SOCK" POST /v1/messages '{"model": "auto", "messages": [{"role": "user", "content": "hi"}]}'
t_eq "missing max_tokens: 400 naming it, nothing sent" \
    "$(anth_err) $(echo "$BODY" | jq -r .error.message) $(sent_since "$since")" \
    "400 error invalid_request_error max_tokens is required 0"
call "$SOCK" POST /v1/messages '{"model": "auto", "max_tokens": 0, "messages": [{"role": "user", "content": "hi"}]}'
a=$(anth_err)
call "$SOCK" POST /v1/messages '{"model": "auto", "max_tokens": 5, "stream": "yes", "messages": [{"role": "user", "content": "hi"}]}'
t_eq "max_tokens 0 and stream not a boolean: 400, nothing sent" "$a | $(anth_err) $(sent_since "$since")" \
    "400 error invalid_request_error | 400 error invalid_request_error 0"
call "$SOCK" POST /v1/messages '{"model": "auto", "max_tokens": 5, "messages": []}'
t_eq "messages empty: 400, nothing sent" "$(anth_err) $(sent_since "$since")" "400 error invalid_request_error 0"
big=$(head -c 70000 /dev/zero | tr '\0' a)
call "$SOCK" POST /v1/messages "{\"model\": \"auto\", \"max_tokens\": 5, \"messages\": [{\"role\": \"user\", \"content\": \"$big\"}]}"
t_eq "body over limits.max_body_bytes: 413 request_too_large" "$(anth_err) $(sent_since "$since")" \
    "413 error request_too_large 0"
call "$SOCK" POST /v1/messages '{"model": "anthropic/claude-3-5-haiku", "max_tokens": 100001, "messages": [{"role": "user", "content": "hi"}]}'
t_eq "max_tokens above the model's max_output_tokens: 400" "$(anth_err) $(sent_since "$since")" \
    "400 error invalid_request_error 0"
since=$(mock_last_seq)
call "$SOCK_P" POST /v1/messages '{"model": "auto", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text", "text": "what is it"}, {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]}]}]}'
a="$(anth_err) $(echo "$BODY" | jq -r .error.message | grep -o 'vision$')"
call "$SOCK_P" POST /v1/messages "$(mbody auto true)"
t_eq "an image block needs vision, stream needs streaming: 403 permission_error, nothing sent" \
    "$a | $(anth_err) $(echo "$BODY" | jq -r .error.message | grep -o 'streaming tools$') $(sent_since "$since")" \
    "403 error permission_error vision | 403 error permission_error streaming tools 0"
since=$(mock_last_seq)
call "$SOCK" POST /v1/messages "$(mbody openai/gpt-4o-mini)"
t_eq "openai/<model>: 404 not_found_error, nothing sent" "$(anth_err) $(sent_since "$since")" \
    "404 error not_found_error 0"
since=$(mock_last_seq)
call "$SOCK" POST /v1/messages "$(mbody gpt-4o-mini)"
t_eq "a bare name only a non-Anthropic provider serves: 404 not_found_error" \
    "$(anth_err) $(sent_since "$since")" "404 error not_found_error 0"
since=$(mock_last_seq)
call "$SOCK_O" POST /v1/messages "$(mbody auto)"
t_eq "no Anthropic key: 404 not_found_error" "$(anth_err) $(sent_since "$since")" "404 error not_found_error 0"

# ---- provider failures ------------------------------------------------------------------------------------
since=$(mock_last_seq)
call "$SOCK" POST /v1/messages "$(mbody anthropic/mock-500)"
t_eq "provider 500: 502 api_error in the agent's words" \
    "$(anth_err) $(echo "$BODY" | jq -r .error.message) $(sent_since "$since")" \
    "502 error api_error the provider call failed 1"
call "$SOCK_B" POST /v1/messages "$(mbody anthropic/mock-429)"
t_eq "provider 429: 429 rate_limit_error with Retry-After" "$(anth_err) $(hdr Retry-After | grep -c '^[0-9]')" \
    "429 error rate_limit_error 1"
call "$SOCK" POST /v1/messages "$(mbody anthropic/mock-streamerror true)"
last=$(echo "$BODY" | sed -n 's/^data: //p' | tail -1)
t_eq "stream error mid-answer: Anthropic's error event, the provider's text dropped" \
    "$CODE $(event_names | awk '{ print $NF }') $(echo "$last" | jq -r '"\(.type) \(.error.type)"' 2>/dev/null) $(echo "$BODY" | grep -c 'x-api-key')" \
    "200 error error api_error 0"
# Error frames in the shapes gateways and other servers use: never forwarded (they echo the
# key), the stream ends with the agent's error event, not the provider's message_stop after them.
for f in streamerrorevent streamerrortext; do
    [ $f = streamerrorevent ] &&
        c="stream 'event: error' of another type, then message_stop: the agent's error event, nothing of the provider's" ||
        c="stream frame with a top-level error and no type, then message_stop: the agent's error event, nothing of the provider's"
    call "$SOCK" POST /v1/messages "$(mbody anthropic/mock-$f true)"
    last=$(echo "$BODY" | sed -n 's/^data: //p' | tail -1)
    t_eq "$c" \
        "$CODE $(event_names | awk '{ print $NF }') $(echo "$last" | jq -r '"\(.type) \(.error.type)"' 2>/dev/null) $(echo "$BODY" | grep -c -e 'failed for key' -e overloaded) $(echo "$BODY" | grep -c message_stop)" \
        "200 error error api_error 0 0"
done

# ---- count_tokens ---------------------------------------------------------------------------------------
since=$(mock_last_seq)
call "$SOCK" POST /v1/messages/count_tokens '{"model": "anthropic/claude-3-5-haiku", "system": "be brief", "messages": [{"role": "user", "content": "one two three four"}]}' \
    -H "x-api-key: $APP_KEY"
r=$(upstream_one "$since")
t_eq "count_tokens: the provider's count, its path, no cost" \
    "$CODE $(echo "$BODY" | jq -c .) $(echo "$r" | jq -r '"\(.path) \(.auth) \(.body | fromjson | .model)"') $(hdr X-BYOK-Cost-USD)" \
    '200 {"input_tokens":6} /v1/messages/count_tokens ok claude-3-5-haiku 0.00000000'
since=$(mock_last_seq)
call "$SOCK" POST /v1/messages/count_tokens '{"model": "auto", "messages": "hi"}'
a=$(anth_err)
call "$SOCK" POST /v1/messages/count_tokens '{"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'
t_eq "count_tokens: errors in Anthropic's shape" "$a | $(anth_err) $(sent_since "$since")" \
    "400 error invalid_request_error | 404 error not_found_error 0"

# ---- a real SDK ------------------------------------------------------------------------------------------
if python3 -c 'import anthropic, httpx' 2>/dev/null; then
    out=$(SOCK=$SOCK timeout 30 python3 - 2>&1 <<'EOF'
import os, httpx, anthropic
c = anthropic.Anthropic(api_key="sk-ant-unused", base_url="http://localhost",
                        http_client=httpx.Client(transport=httpx.HTTPTransport(uds=os.environ["SOCK"])))
m = c.messages.create(model="auto", max_tokens=3, messages=[{"role": "user", "content": "hi"}])
text = "".join(b.text for b in m.content)
with c.messages.stream(model="auto", max_tokens=3, messages=[{"role": "user", "content": "hi"}]) as s:
    st = "".join(s.text_stream)
    fin = s.get_final_message()
print(text == st, fin.usage.output_tokens)
EOF
    )
    t_eq "real SDK: the Python anthropic client" "$out" "True 3"
else
    t_skip "real SDK: the Python anthropic client" "python3-anthropic is not packaged for this Debian"
fi

# ---- Claude on Bedrock ------------------------------------------------------------------------------------
# The app's body without the field the agent does not know (Bedrock refuses an extraneous key).
bbody() { mbody "$@" | sed 's/, "x_future_field": {"n": 1e2}//'; }
since=$(mock_last_seq)
APP=$(bbody auto)
call "$SOCK_BED" POST /v1/messages "$APP" -H "x-api-key: $APP_KEY"
t_eq "bedrock auto: HTTP 200, Anthropic's message, X-BYOK-Provider bedrock and a Claude model" \
    "$CODE $(echo "$BODY" | jq -r '"\(.type) \(.role) \(.content[0].text)"' 2>/dev/null) $(hdr X-BYOK-Provider) $(hdr X-BYOK-Model)" \
    "200 message assistant $(words $NTOK) bedrock $BMODEL"
r=$(upstream_one "$since")
want=$(printf '%s' "$APP" | sed 's/"model": "auto",/"anthropic_version":"bedrock-2023-05-31",/; s/ "stream": false,//')
t_eq "bedrock: InvokeModel's path, the app's bytes without model and stream, anthropic_version added" \
    "$(echo "$r" | jq -r '"\(.kind) \(.path)|\(.body)"')" "bedrock-claude /model/$BMODEL_PATH/invoke|$want"
t_eq "bedrock: the Bedrock key as a bearer token, not the app's x-api-key" \
    "$(echo "$r" | jq -c '[.auth, (.headers.Authorization[0] | startswith("Bearer ABSK-")), (.headers["X-Api-Key"] // [] | length)]')" \
    '["ok",true,0]'
bcost=$(awk -v c="$(cost_of bedrock $PROMPT_TOKENS $NTOK)" 'BEGIN { printf "%.8f", c }')
t_eq "bedrock: usage and X-BYOK-Cost-USD from the mock's usage at the catalog price" \
    "$(echo "$BODY" | jq -c .usage) $(hdr X-BYOK-Cost-USD)" \
    "{\"input_tokens\":$PROMPT_TOKENS,\"output_tokens\":$NTOK} $bcost"

since=$(mock_last_seq)
call "$SOCK_BED" POST /v1/messages "$(bbody "bedrock/$BMODEL" true)"
evs="message_start content_block_start"
for ((i = 0; i < NTOK; i++)); do evs+=" content_block_delta"; done
evs+=" content_block_stop message_delta message_stop"
r=$(upstream_one "$since")
t_eq "bedrock stream: Anthropic's events in order, re-framed from the binary event stream" \
    "$CODE $(hdr Content-Type) $(event_names) $(echo "$r" | jq -r '"\(.path) \(.body | fromjson | has("stream"))"')" \
    "200 text/event-stream $evs /model/$BMODEL_PATH/invoke-with-response-stream false"
text=$(echo "$BODY" | sed -n 's/^data: //p' | jq -rj 'select(.type == "content_block_delta") | .delta.text' 2>/dev/null)
u=$(usage_comment)
t_eq "bedrock stream: the text of the deltas, the closing usage comment with usage and cost" \
    "$text|$(echo "$u" | jq -c '[.provider, .prompt_tokens, .completion_tokens, .estimated]' 2>/dev/null) $(echo "$u" | jq -r '.cost_usd * 1e8 | round' 2>/dev/null)" \
    "$(words $NTOK)|[\"bedrock\",$PROMPT_TOKENS,$NTOK,false] $(awk -v c="$bcost" 'BEGIN { printf "%d", c * 1e8 + 0.5 }')"

mock_ctl POST /_mock/scenario '{"scenario":"nousage","count":1}' >/dev/null
call "$SOCK_BED" POST /v1/messages "$(bbody auto true)"
mock_ctl DELETE /_mock/scenario >/dev/null
u=$(usage_comment)
t_eq "bedrock stream without Anthropic usage: Bedrock's invocation metrics count it" \
    "$CODE $(echo "$BODY" | grep -c '"input_tokens"') $(echo "$u" | jq -c '[.prompt_tokens, .completion_tokens, .estimated]' 2>/dev/null)" \
    "200 0 [$PROMPT_TOKENS,$NTOK,false]"

since=$(mock_last_seq)
call "$SOCK_BED" POST /v1/messages "$(bbody auto)" -H 'anthropic-beta: prompt-caching-2024-07-31, token-efficient-tools-2025-02-19'
t_eq "bedrock: anthropic-beta moved into the body's anthropic_beta, no header" \
    "$CODE $(upstream_one "$since" | jq -c '[(.body | fromjson | .anthropic_beta), .headers["Anthropic-Beta"], .headers["Anthropic-Version"]]')" \
    '200 [["prompt-caching-2024-07-31","token-efficient-tools-2025-02-19"],null,null]'

since=$(mock_last_seq)
call "$SOCK_BEDI" POST /v1/messages "$(bbody auto)"
a="$CODE $(echo "$BODY" | jq -r .type 2>/dev/null)"
call "$SOCK_BEDI" POST /v1/messages "$(bbody auto true)"
t_eq "bedrock IAM key: SigV4-signed InvokeModel, non-streamed and streamed 200" \
    "$a $CODE $(event_names | awk '{ print $NF }') $(mock_requests_since "$since" | jq -c '[.[] | [.auth, (.headers.Authorization[0] | test("^AWS4-HMAC-SHA256 Credential=[A-Z0-9]+/[0-9]+/us-east-1/bedrock/aws4_request"))]]')" \
    '200 message 200 message_stop [["ok",true],["ok",true]]'

mock_ctl POST /_mock/scenario '{"scenario":"streamerror","count":1}' >/dev/null
call "$SOCK_BED" POST /v1/messages "$(bbody auto true)"
mock_ctl DELETE /_mock/scenario >/dev/null
last=$(echo "$BODY" | sed -n 's/^data: //p' | tail -1)
t_eq "bedrock exception mid-stream: Anthropic's error event, the provider's text dropped" \
    "$CODE $(event_names | awk '{ print $NF }') $(echo "$last" | jq -r '"\(.type) \(.error.type)"' 2>/dev/null) $(echo "$BODY" | grep -c 'ABSK')" \
    "200 error error api_error 0"

since=$(mock_last_seq)
call "$SOCK_BED" POST /v1/messages "$(bbody bedrock/mock-normal)"
a=$(anth_err)
call "$SOCK_BED" POST /v1/messages/count_tokens '{"model": "auto", "messages": [{"role": "user", "content": "hi"}]}'
t_eq "bedrock/<non-Claude model> and count_tokens on Bedrock: 404 not_found_error, nothing sent" \
    "$a | $(anth_err) $(sent_since "$since")" "404 error not_found_error | 404 error not_found_error 0"

since=$(mock_last_seq)
mock_ctl POST /_mock/scenario '{"scenario":"500","count":1}' >/dev/null
call "$SOCK_FO" POST /v1/messages "$(bbody auto)"
mock_ctl DELETE /_mock/scenario >/dev/null
t_eq "failover: a 500 from Anthropic, Claude on Bedrock answers" \
    "$CODE $(hdr X-BYOK-Attempts) $(hdr X-BYOK-Provider) $(mock_requests_since "$since" | jq -r '[.[].style] | join(",")') $(echo "$BODY" | jq -r .type 2>/dev/null)" \
    "200 2 bedrock anthropic,bedrock message"

call "$SOCK" GET /metrics
n=$(echo "$BODY" | grep '^byok_requests_total{' | grep 'route="/v1/messages"' | grep -c 'status="200"')
t_check "request log and metrics label the route /v1/messages" \
    test "$n" -ge 1 -a "$(grep -c '"route":"/v1/messages"' "$AGENT_LOG")" -ge 10

t_check "agent alive" kill -0 "$AGENT_PID"
agent_stop_check "agent stops cleanly on SIGTERM, no sanitizer report"
canary_scan "canary: nowhere but the provider request" "${KEY[@]}" "$APP_KEY" "$IAM_SECRET"
t_done
[ "$T_FAILED" -eq 0 ]
