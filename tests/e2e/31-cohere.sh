#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# The Cohere adapter (api_style "cohere", Cohere's native v2 API) end to end:
# app -> agent socket -> Vault -> plugin creds -> the mock's Cohere style. The
# catalog's built-in cohere entry is pointed at the mock, keeping its path
# (/v2), so the agent builds the URLs it would build for api.cohere.com.
# Chat streamed and not: the answer, the usage (Cohere's billed_units, which
# the mock makes differ from its tokens), the cost against the catalog price,
# X-BYOK-Provider; the exact request the mock recorded (path, one Bearer
# header with the tenant's key, fields renamed, OpenAI-only ones absent: the
# mock refuses top_p, stop, stream_options ... with a 400 as Cohere does).
# Tools both ways (a tool turn sent, tool calls answered streamed and not),
# embeddings (/v2/embed and back), a field Cohere cannot take refused
# before anything is sent, a provider 401, a stream ending in Cohere's error,
# a 503 failing over to OpenAI, and the canary scan.
. "$(dirname "$0")/lib.sh"

CASES=("chat: HTTP 200, answer text" "chat: usage from billed_units" "chat: provider and model headers"
    "chat: cost = billed tokens x catalog price" "chat: the upstream request, translated"
    "stream: HTTP 200, answer text and [DONE]" "stream: usage chunk from message-end"
    "stream: cost in the closing usage comment" "stream: the upstream request, no stream_options"
    "stream without include_usage: no usage chunk, usage still counted"
    "tools: tool turn and tool_choice translated, accepted by the mock"
    "tool calls answered: OpenAI tool_calls, finish_reason tool_calls"
    "tool calls streamed: assembled by index, finish_reason tool_calls"
    "embeddings: vectors and usage back in OpenAI's shape" "embeddings: the upstream /v2/embed request"
    "a field Cohere cannot take (n=2): 400 naming it, nothing sent"
    "provider 401: the agent's provider_auth_failed, nothing of Cohere's text"
    "stream ending in Cohere's error echoing the key: the agent's error event, never [DONE]"
    "malformed answer: 502 bad_provider_response"
    "auto, 503 from cohere: answered by the openai fallback"
    "agent alive" "agent stops cleanly on SIGTERM, no sanitizer report"
    "canary: nowhere but the provider request"
    "responses: POST /v1/responses through cohere, a response object with the answer and usage"
    "responses stream: through cohere, the events in order, the text and the usage")

lib_up && lib_require "$AGENT_BIN" || t_block_all

PRICE_IN[cohere]=6000
PRICE_OUT[cohere]=9000
PROVIDER_MODEL[cohere]=command-r-08-2024

# cohere_at_mock: the built-in cohere entry, its scheme and host replaced by
# the mock's (its /v2 path kept), its models priced PRICE_IN/PRICE_OUT[cohere],
# embed-english-v3.0 among them.
cohere_at_mock() {
    local url
    vault_api GET byok/providers/cohere "" "$ADMIN_TOKEN"
    url=$(echo "$VAULT_BODY" | jq -r '.data.base_url // empty' 2>/dev/null)
    [ "$VAULT_CODE" = 200 ] && [ "$(echo "$VAULT_BODY" | jq -r .data.api_style)" = cohere ] || return 1
    url=$MOCK_URL$(echo "$url" | sed -E 's#^https?://[^/]*##')
    vault_api PUT byok/providers/cohere "$(provider_entry cohere cohere "$url" |
        jq '.models += [.models[] | select(.name == "text-embedding-3-small") | .name = "embed-english-v3.0"]')" \
        "$ADMIN_TOKEN" >/dev/null
    [ "$VAULT_CODE" -lt 300 ]
}
cohere_at_mock || { LIB_BLOCKED_REASON="cohere catalog override failed (HTTP $VAULT_CODE)"; t_block_all; }

TENANT=acme
canary_keys "$TENANT" cohere openai || { LIB_BLOCKED_REASON="key write failed"; t_block_all; }
vault_api PUT byok/tenants/acme/settings \
    '{"preferred_providers":["cohere"],"fallback_providers":["openai"],"budget_tier":"HIGH"}' "$ADMIN_TOKEN"
[ "$VAULT_CODE" -lt 300 ] || t_diag "tenant settings: HTTP $VAULT_CODE $VAULT_BODY"
# A key Cohere will refuse: stored in Vault, not in the mock's list.
KEY_REJECTED=$(lib_canary)
vault_api PUT byok/tenants/rejected/keys/cohere/production \
    "$(K=$KEY_REJECTED jq -n '{key_value: env.K}')" "$ADMIN_TOKEN" >/dev/null
[ "$VAULT_CODE" -lt 300 ] || t_diag "rejected key: HTTP $VAULT_CODE"

SOCK=$AGENT_DIR/acme.sock
RSOCK=$AGENT_DIR/rejected.sock
agent_config "$(jq -n --arg d "$AGENT_DIR" '[
    {path: ($d + "/acme.sock"), mode: "0660", tenant: "acme", app: "cohere", metrics: true},
    {path: ($d + "/rejected.sock"), mode: "0660", tenant: "rejected", app: "cohere"}]')" \
    '.providers = ["openai", "cohere"] | .upstream.health_failures = 0 | .upstream.retry_after_max_s = 0'
agent_start || t_block_all

# upstream_one SINCE: the one request the mock saw since SEQ (empty unless exactly one).
upstream_one() {
    local reqs
    reqs=$(mock_requests_since "$1")
    [ "$(echo "$reqs" | jq length)" = 1 ] && echo "$reqs" | jq -c '.[0]'
}

# check_upstream NAME RECORD PATH STREAM: one Bearer header with the tenant's
# key, style cohere, the path, the stream flag.
upstream_why() {
    local r=$1 path=$2 s=$3 why="" creds
    [ -n "$r" ] || { echo "mock did not see exactly one request"; return; }
    [ "$(echo "$r" | jq -r '.headers.Authorization[0] // ""')" == "Bearer ${KEY[cohere]}" ] ||
        why+="Authorization does not carry the tenant's key as Bearer; "
    creds=$(echo "$r" | jq '[.headers | to_entries[] | select(.key | test("^(authorization|api-key|x-api-key)$"; "i"))] | length')
    [ "$creds" = 1 ] || why+="$creds credential headers; "
    [ "$(echo "$r" | jq -r .auth)/$(echo "$r" | jq -r .style)" = ok/cohere ] ||
        why+="mock auth/style $(echo "$r" | jq -r '"\(.auth)/\(.style)"'); "
    [ "$(echo "$r" | jq -r .path)" = "$path" ] || why+="path $(echo "$r" | jq -r .path); "
    [ -z "$s" ] || [ "$(echo "$r" | jq -r .stream)" = "$s" ] || why+="stream $(echo "$r" | jq -r .stream); "
    echo "$why"
}

PROMPT="one two three four" # 4 words: the mock bills 4 input tokens (tokens says 4 + 7)
NTOK=5
# The app's request carries OpenAI names the agent must translate (top_p,
# stop) or drop (user, logprobs): the mock refuses them under those names.
req() {
    chat_body "cohere/command-r-08-2024" "$1" "$NTOK" "$PROMPT" |
        jq -c '. + {top_p: 0.5, stop: ["ZZZ"], user: "u-1", logprobs: false, seed: 11}'
}

since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(req false)"
t_eq "chat: HTTP 200, answer text" "$CODE $(echo "$BODY" | jq -r '.choices[0].message.content // empty' 2>/dev/null)" \
    "200 $(words $NTOK)"
t_eq "chat: usage from billed_units" "$(echo "$BODY" | jq -r '"\(.usage.prompt_tokens)/\(.usage.completion_tokens)/\(.choices[0].finish_reason)"' 2>/dev/null)" \
    "4/$NTOK/stop"
t_eq "chat: provider and model headers" "$(hdr X-BYOK-Provider) $(hdr X-BYOK-Model)" "cohere command-r-08-2024"
t_num_eq "chat: cost = billed tokens x catalog price" "$(hdr X-BYOK-Cost-USD)" "$(cost_of cohere 4 $NTOK)" 1e-9
r=$(upstream_one "$since")
why=$(upstream_why "$r" /v2/chat false)
b=$(echo "$r" | jq -c '.body | fromjson' 2>/dev/null)
[ "$(echo "$b" | jq -c '[.model, .max_tokens, .p, .stop_sequences, .seed, .stream, .messages]')" = \
    '["command-r-08-2024",5,0.5,["ZZZ"],11,false,[{"role":"user","content":"one two three four"}]]' ] ||
    why+="body $b; "
[ "$(echo "$b" | jq -c '[has("top_p"), has("stop"), has("user"), has("logprobs"), has("stream_options")]')" = \
    '[false,false,false,false,false]' ] || why+="OpenAI-only fields forwarded: $b; "
if [ -z "$why" ]; then t_ok "chat: the upstream request, translated"; else t_fail "chat: the upstream request, translated" "$why"; fi

since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(req true)" -N
text=$(echo "$BODY" | sse_content)
grep -qx 'data: \[DONE\]' <<<"$BODY" || text+=" (no [DONE])"
t_eq "stream: HTTP 200, answer text and [DONE]" "$CODE $text" "200 $(words $NTOK)"
usage=$(echo "$BODY" | sed -n 's/^data: //p' | grep -v '^\[DONE\]$' | jq -c 'select(.usage != null) | [(.choices | length), .usage.prompt_tokens, .usage.completion_tokens]' 2>/dev/null)
t_eq "stream: usage chunk from message-end" "$usage" "[0,4,$NTOK]"
u=$(echo "$BODY" | sed -n 's/^: x-byok-usage //p' | tail -1)
if [ "$(echo "$u" | jq -r '"\(.provider)/\(.prompt_tokens)/\(.completion_tokens)"' 2>/dev/null)" = "cohere/4/$NTOK" ]; then
    t_num_eq "stream: cost in the closing usage comment" "$(echo "$u" | jq -r .cost_usd)" "$(cost_of cohere 4 $NTOK)" 1e-9
else
    t_fail "stream: cost in the closing usage comment" "usage comment '$u'"
fi
r=$(upstream_one "$since")
why=$(upstream_why "$r" /v2/chat true)
[ "$(echo "$r" | jq -r '.body | fromjson | has("stream_options")')" = false ] || why+="stream_options forwarded; "
[ "$(echo "$r" | jq -r '.headers.Accept[0]')" = text/event-stream ] || why+="Accept $(echo "$r" | jq -r '.headers.Accept[0]'); "
if [ -z "$why" ]; then t_ok "stream: the upstream request, no stream_options"; else t_fail "stream: the upstream request, no stream_options" "$why"; fi

call "$SOCK" POST /v1/chat/completions "$(req true | jq -c 'del(.stream_options)')" -N
n_usage=$(echo "$BODY" | sed -n 's/^data: //p' | grep -v '^\[DONE\]$' | jq -c 'select(.usage != null)' 2>/dev/null | wc -l)
u=$(echo "$BODY" | sed -n 's/^: x-byok-usage //p' | tail -1)
t_eq "stream without include_usage: no usage chunk, usage still counted" \
    "$CODE $(echo "$BODY" | sse_content) $n_usage $(echo "$u" | jq -r '"\(.prompt_tokens)/\(.completion_tokens)/\(.estimated // false)"' 2>/dev/null)" \
    "200 $(words $NTOK) 0 4/$NTOK/false"

# A tool turn: the assistant's call and the tool's result go to Cohere as its
# own tool_calls / tool messages; the mock refuses a shape Cohere would.
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(jq -cn '{model: "cohere/command-r-08-2024", max_tokens: 3,
    messages: [{role: "system", content: "be brief"}, {role: "user", content: "weather in Paris"},
        {role: "assistant", content: null, tool_calls: [{id: "call_1", type: "function",
            function: {name: "get_weather", arguments: "{\"city\":\"Paris\"}"}}]},
        {role: "tool", tool_call_id: "call_1", content: "sunny"}],
    tools: [{type: "function", function: {name: "get_weather", description: "weather",
        parameters: {type: "object", properties: {city: {type: "string"}}}}}],
    tool_choice: "required", parallel_tool_calls: true}')"
b=$(upstream_one "$since" | jq -c '.body | fromjson' 2>/dev/null)
t_eq "tools: tool turn and tool_choice translated, accepted by the mock" \
    "$CODE $(echo "$b" | jq -c '[.tool_choice, (.messages | map(.role)), .messages[2].tool_calls[0].function.arguments, .messages[3].tool_call_id, .tools[0].function.name, has("parallel_tool_calls")]' 2>/dev/null)" \
    '200 ["REQUIRED",["system","user","assistant","tool"],"{\"city\":\"Paris\"}","call_1","get_weather",false]'

# Cohere's tool calls back as OpenAI's: the mock's "tools" scenario answers
# the next request with a tool plan and one call per tool (streamed: start,
# two argument fragments, end), finish_reason TOOL_CALL.
TOOLS_REQ=$(jq -cn '{model: "cohere/command-r-08-2024", messages: [{role: "user", content: "weather in Paris"}],
    tools: [{type: "function", function: {name: "get_weather", parameters: {type: "object"}}}]}')
mock_ctl POST /_mock/scenario '{"scenario":"tools","count":1}' >/dev/null
call "$SOCK" POST /v1/chat/completions "$TOOLS_REQ"
t_eq "tool calls answered: OpenAI tool_calls, finish_reason tool_calls" \
    "$CODE $(echo "$BODY" | jq -c '.choices[0] | [.finish_reason, .message.content,
        (.message.tool_calls | map([(.id | length > 0), .type, .function.name, .function.arguments]))]' 2>/dev/null)" \
    '200 ["tool_calls",null,[[true,"function","get_weather","{\"city\":\"Paris\"}"]]]'
mock_ctl POST /_mock/scenario '{"scenario":"tools","count":1}' >/dev/null
call "$SOCK" POST /v1/chat/completions "$(echo "$TOOLS_REQ" | jq -c '.stream = true')" -N
got=$(echo "$BODY" | sed -n 's/^data: //p' | grep -v '^\[DONE\]$' | jq -s -c '[
    ([.[].choices[0].delta.tool_calls // [] | .[]] | group_by(.index)
        | map([.[0].index, (map(.id // empty) | join("") | length > 0), (map(.function.name // empty) | join("")),
               (map(.function.arguments // "") | join(""))])),
    [.[].choices[0].finish_reason // empty]]' 2>/dev/null)
grep -qx 'data: \[DONE\]' <<<"$BODY" || got+=" (no [DONE])"
t_eq "tool calls streamed: assembled by index, finish_reason tool_calls" "$CODE $got" \
    '200 [[[0,true,"get_weather","{\"city\":\"Paris\"}"]],["tool_calls"]]'
mock_ctl DELETE /_mock/scenario >/dev/null

# Embeddings: 3 words in two inputs -> 2 vectors, 3 billed input tokens.
since=$(mock_last_seq)
call "$SOCK" POST /v1/embeddings '{"model":"cohere/embed-english-v3.0","input":["alpha beta","gamma"],"encoding_format":"float"}'
t_eq "embeddings: vectors and usage back in OpenAI's shape" \
    "$CODE $(echo "$BODY" | jq -c '[.object, (.data | length), .data[1].index, (.data[0].embedding | length), .usage.prompt_tokens]' 2>/dev/null) $(hdr X-BYOK-Provider)" \
    '200 ["list",2,1,8,3] cohere'
r=$(upstream_one "$since")
why=$(upstream_why "$r" /v2/embed "")
[ "$(echo "$r" | jq -c '.body | fromjson | [.model, .texts, .input_type, .embedding_types, has("input"), has("encoding_format")]' 2>/dev/null)" = \
    '["embed-english-v3.0",["alpha beta","gamma"],"search_document",["float"],false,false]' ] || why+="body $(echo "$r" | jq -r .body); "
if [ -z "$why" ]; then t_ok "embeddings: the upstream /v2/embed request"; else t_fail "embeddings: the upstream /v2/embed request" "$why"; fi

since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(req false | jq -c '.n = 2')"
t_eq "a field Cohere cannot take (n=2): 400 naming it, nothing sent" \
    "$CODE $(echo "$BODY" | jq -r '.error.param' 2>/dev/null) $(mock_requests_since "$since" | jq length)" "400 n 0"

since=$(mock_last_seq)
call "$RSOCK" POST /v1/chat/completions "$(chat_body cohere/command-r-08-2024)"
seen=$(mock_requests_since "$since" | jq -r '[.[] | "\(.style):\(.auth):\(.status)"] | join(",")')
if [ "$CODE" = 502 ] && [ "$(echo "$BODY" | jq -r .error.code 2>/dev/null)" = provider_auth_failed ] &&
    [[ $BODY != *"invalid api token"* ]] && [[ $BODY$HDRS != *"${KEY_REJECTED:10}"* ]] && [ "$seen" = cohere:bad_key:401 ]; then
    t_ok "provider 401: the agent's provider_auth_failed, nothing of Cohere's text"
else
    t_fail "provider 401: the agent's provider_auth_failed, nothing of Cohere's text" "HTTP $CODE upstream $seen body ${BODY:0:200}"
fi

call "$SOCK" POST /v1/chat/completions "$(chat_body cohere/mock-streamerror true 6)" -N
if [ "$CODE" = 200 ] && [ "$(echo "$BODY" | sse_content)" = "w0 w1" ] && ! grep -qx 'data: \[DONE\]' <<<"$BODY" &&
    [[ $BODY == *'"code":"provider_stream_error"'* ]] && [[ $BODY != *"generation failed"* ]]; then
    t_ok "stream ending in Cohere's error echoing the key: the agent's error event, never [DONE]"
else
    t_fail "stream ending in Cohere's error echoing the key: the agent's error event, never [DONE]" "HTTP $CODE body ${BODY:0:400}"
fi

call "$SOCK" POST /v1/chat/completions "$(chat_body cohere/mock-malformed false 3)"
t_eq "malformed answer: 502 bad_provider_response" "$CODE $(echo "$BODY" | jq -r .error.code 2>/dev/null)" \
    "502 bad_provider_response"

# auto: cohere is preferred; its 503 moves the call to openai.
mock_ctl POST /_mock/scenario '{"scenario":"503","count":1}' >/dev/null
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(chat_body auto false 3)"
trace=$(mock_requests_since "$since" | KC=${KEY[cohere]} KO=${KEY[openai]} jq -r '[.[] |
    (.headers.Authorization[0] // "" | sub("^Bearer "; "")) as $k |
    "\(.style):\(.scenario):\(if $k == env.KC then "cohere-key" elif $k == env.KO then "openai-key" else "other-key" end)"] | join(",")')
mock_ctl DELETE /_mock/scenario >/dev/null
t_eq "auto, 503 from cohere: answered by the openai fallback" \
    "$CODE $(hdr X-BYOK-Provider) $(hdr X-BYOK-Attempts) $(echo "$BODY" | jq -r '.choices[0].message.content' 2>/dev/null) $trace" \
    "200 openai 2 $(words 3) cohere:503:cohere-key,openai:normal:openai-key"

t_check "agent alive" kill -0 "$AGENT_PID"
# The Responses API through this translating adapter (docs/agent.md, Responses API).
call "$SOCK" POST /v1/responses "{\"model\":\"cohere/command-r-08-2024\",\"input\":\"$PROMPT\",\"max_output_tokens\":$NTOK}"
t_eq "responses: POST /v1/responses through cohere, a response object with the answer and usage" \
    "$CODE $(echo "$BODY" | jq -c '[.object, .status, [.output[].type], .output[0].content[0].text,
        .usage.input_tokens, .usage.output_tokens]' 2>/dev/null) $(hdr X-BYOK-Provider)" \
    "200 [\"response\",\"completed\",[\"message\"],\"$(words $NTOK)\",4,$NTOK] cohere"
call "$SOCK" POST /v1/responses "{\"model\":\"cohere/command-r-08-2024\",\"input\":\"$PROMPT\",
    \"max_output_tokens\":$NTOK,\"stream\":true}"
t_eq "responses stream: through cohere, the events in order, the text and the usage" \
    "$CODE $(echo "$BODY" | sed -n 's/^data: //p' | jq -sc '[.[0].type, (map(.sequence_number) == [range(length)]),
        (map(select(.type == "response.output_text.delta") | .delta) | join("")), .[-1].type,
        .[-1].response.usage.input_tokens, .[-1].response.usage.output_tokens]' 2>/dev/null)" \
    "200 [\"response.created\",true,\"$(words $NTOK)\",\"response.completed\",4,$NTOK]"

agent_stop_check "agent stops cleanly on SIGTERM, no sanitizer report"
canary_scan "canary: nowhere but the provider request" "${KEY[@]}" "$KEY_REJECTED"
t_done
[ "$T_FAILED" -eq 0 ]
