#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# POST /v1/responses, OpenAI's Responses API bridged onto chat completions,
# end to end: app -> agent socket -> Vault -> plugin creds -> the mock (which
# speaks chat, or Anthropic's Messages API). Non-streamed and streamed through
# the OpenAI style (passthrough) and through Anthropic (a translating
# adapter): the Responses object (output items, usage, echoed fields,
# store false), the chat request the provider received, the Responses events
# in order with their sequence numbers and no [DONE]; usage and
# X-BYOK-Cost-USD equal to the same call through /v1/chat/completions; a
# function-call round trip (tool calls answered, streamed as
# function_call_arguments events, and the follow-up turn with the calls and
# their outputs accepted by the mock's Anthropic checks); each stateful or
# unsupported field refused 400 naming it, nothing sent; max_output_tokens
# reached: incomplete; a stream failing mid-answer ends with response.failed;
# the app leaving a stream; the request log and metrics label the route; the
# canary scan.
. "$(dirname "$0")/lib.sh"

REFUSED=(previous_response_id conversation background prompt include tools tool_choice truncation
    max_tool_calls messages max_tokens "input[0].type")
CASES=("openai: HTTP 200, a response object with the answer"
    "openai: output message item, status completed, store false, echoed fields"
    "openai: usage in the Responses shape"
    "openai: X-BYOK headers, the id from the request id"
    "openai: the chat request the provider received"
    "openai: usage and X-BYOK-Cost-USD equal to the chat path's"
    "openai stream: events in order, sequence numbers 0.., no [DONE]"
    "openai stream: the text from the deltas, the final response"
    "openai stream: usage in response.completed and the cost equal to the chat stream's"
    "openai stream: the provider was asked for its usage"
    "openai stream, the provider ignoring stream: the same events from the whole answer"
    "anthropic: HTTP 200, answer and usage"
    "anthropic: the translated request (system from instructions, max_tokens)"
    "anthropic stream: events in order, text and usage"
    "tools: function_call items with call_id, name and arguments"
    "tools: the tools and tool_choice the provider received"
    "tools streamed: function_call_arguments events, the final items"
    "tools: the follow-up turn with the calls and their outputs, accepted by the provider"
    "max_output_tokens reached: status incomplete, reason max_output_tokens"
    "stream failing mid-answer: response.failed with the agent's code, never completed"
    "app leaves a stream: logged 499 client_closed, the provider sees its client go")
for f in "${REFUSED[@]}"; do
    CASES+=("refused: $f -> 400 naming it, nothing sent")
done
CASES+=("bad JSON type: 400 naming the field"
    "X-BYOK-Route and X-BYOK-Task work as for chat"
    "request log and metrics label the route /v1/responses"
    "agent alive" "agent stops cleanly on SIGTERM, no sanitizer report"
    "canary: nowhere but the provider request")

lib_up && lib_require "$AGENT_BIN" || t_block_all

# The anthropic catalog entry also lists mock-tools (the mock's tools scenario).
vault_api GET byok/providers/anthropic "" "$ADMIN_TOKEN"
vault_api PUT byok/providers/anthropic "$(echo "$VAULT_BODY" | jq -c '.data | del(.name, .builtin, .overridden)
    | .models += [.models[0] + {name: "mock-tools"}]')" "$ADMIN_TOKEN" >/dev/null
[ "$VAULT_CODE" -lt 300 ] || { LIB_BLOCKED_REASON="catalog anthropic: HTTP $VAULT_CODE"; t_block_all; }

TENANT=acme
canary_keys "$TENANT" openai anthropic || { LIB_BLOCKED_REASON="key write failed"; t_block_all; }
SOCK=$AGENT_DIR/acme.sock
agent_config "[{\"path\": \"$SOCK\", \"mode\": \"0660\", \"tenant\": \"$TENANT\", \"app\": \"responses\", \"metrics\": true}]" \
    '.log_level = "info" | .upstream.health_failures = 0'
agent_start || t_block_all

# upstream_one SINCE: the one request the mock saw since SEQ (empty unless exactly one).
upstream_one() {
    local reqs
    reqs=$(mock_requests_since "$1")
    [ "$(echo "$reqs" | jq length)" = 1 ] && echo "$reqs" | jq -c '.[0]'
}
# events: the data of each SSE event of BODY, one JSON a line.
events() { echo "$BODY" | sed -n 's/^data: //p'; }
# event_names: the "event:" lines of BODY, joined by spaces, without "response.".
event_names() { echo "$BODY" | sed -n 's/^event: //p' | sed 's/^response\.//' | tr '\n' ' ' | sed 's/ $//'; }
# usage_comment: the closing ": x-byok-usage" comment of a stream BODY.
usage_comment() { echo "$BODY" | sed -n 's/^: x-byok-usage //p' | tail -1; }

PROMPT="one two three four" # 4 words: the mock counts 4 prompt tokens (+1 for the instructions)
NTOK=5
rbody() { # MODEL STREAM [MAX]
    jq -cn --arg m "$1" --argjson s "$2" --argjson n "${3:-$NTOK}" --arg t "$PROMPT" \
        '{model: $m, stream: $s, max_output_tokens: $n, instructions: "brief",
          input: [{role: "user", content: [{type: "input_text", text: $t}]}],
          metadata: {ticket: "t-1"}, temperature: 0.5, store: true}'
}

# ---- OpenAI style, non-streamed --------------------------------------------------------------
since=$(mock_last_seq)
call "$SOCK" POST /v1/responses "$(rbody openai/gpt-4o-mini false)"
RESP=$BODY RHDRS=$HDRS
t_eq "openai: HTTP 200, a response object with the answer" \
    "$CODE $(echo "$BODY" | jq -r '"\(.object) \(.status) \(.output[0].content[0].text)"' 2>/dev/null)" \
    "200 response completed $(words $NTOK)"
t_eq "openai: output message item, status completed, store false, echoed fields" \
    "$(echo "$BODY" | jq -c '{o: [.output[] | {type, role, status, id: (.id | startswith("msg_")),
        parts: [.content[] | .type], ann: .content[0].annotations}], store, error, incomplete_details,
        instructions, max_output_tokens, metadata, temperature, tools, tool_choice, text,
        parallel_tool_calls, model}' 2>/dev/null)" \
    '{"o":[{"type":"message","role":"assistant","status":"completed","id":true,"parts":["output_text"],"ann":[]}],"store":false,"error":null,"incomplete_details":null,"instructions":"brief","max_output_tokens":5,"metadata":{"ticket":"t-1"},"temperature":0.5,"tools":[],"tool_choice":"auto","text":{"format":{"type":"text"}},"parallel_tool_calls":true,"model":"gpt-4o-mini"}'
t_eq "openai: usage in the Responses shape" "$(echo "$BODY" | jq -c .usage 2>/dev/null)" \
    "{\"input_tokens\":5,\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":$NTOK,\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":$((5 + NTOK))}"
rid=$(hdr X-BYOK-Request-Id)
t_eq "openai: X-BYOK headers, the id from the request id" \
    "$(hdr X-BYOK-Provider) $(hdr X-BYOK-Model) $(hdr X-BYOK-Attempts) $(echo "$BODY" | jq -r .id)" \
    "openai gpt-4o-mini 1 resp_${rid#req_}"
r=$(upstream_one "$since")
t_eq "openai: the chat request the provider received" \
    "$(echo "$r" | jq -cS '{path, stream, auth, body: (.body | fromjson)}' 2>/dev/null)" \
    "$(jq -cnS --arg t "$PROMPT" --argjson n $NTOK '{path: "/v1/chat/completions", stream: false, auth: "ok",
        body: {model: "gpt-4o-mini", messages: [{role: "system", content: "brief"},
        {role: "user", content: [{type: "text", text: $t}]}], max_completion_tokens: $n, temperature: 0.5}}')"
COST=$(hdr X-BYOK-Cost-USD)
# The same call through the chat path.
call "$SOCK" POST /v1/chat/completions "$(jq -cn --arg t "$PROMPT" --argjson n $NTOK '{model: "openai/gpt-4o-mini",
    max_completion_tokens: $n, temperature: 0.5, messages: [{role: "system", content: "brief"},
    {role: "user", content: [{type: "text", text: $t}]}]}')"
t_eq "openai: usage and X-BYOK-Cost-USD equal to the chat path's" \
    "$(echo "$RESP" | jq -r '"\(.usage.input_tokens)/\(.usage.output_tokens)"') $COST" \
    "$(echo "$BODY" | jq -r '"\(.usage.prompt_tokens)/\(.usage.completion_tokens)"') $(hdr X-BYOK-Cost-USD)"

# ---- OpenAI style, streamed ------------------------------------------------------------------
since=$(mock_last_seq)
call "$SOCK" POST /v1/responses "$(rbody openai/gpt-4o-mini true)"
want_events="created in_progress output_item.added content_part.added"
for ((i = 0; i < NTOK; i++)); do want_events+=" output_text.delta"; done
want_events+=" output_text.done content_part.done output_item.done completed"
seqs=$(events | jq -s -c '[.[] | .sequence_number] == [range(length)] and ([.[] | .type] | all(startswith("response.")))' 2>/dev/null)
t_eq "openai stream: events in order, sequence numbers 0.., no [DONE]" \
    "$CODE $(hdr Content-Type) $(event_names) $seqs $(echo "$BODY" | grep -c '\[DONE\]')" \
    "200 text/event-stream $want_events true 0"
final=$(events | jq -c 'select(.type == "response.completed") | .response' 2>/dev/null)
t_eq "openai stream: the text from the deltas, the final response" \
    "$(events | jq -rj 'select(.type == "response.output_text.delta") | .delta' 2>/dev/null)|$(echo "$final" | jq -r '"\(.status) \(.output[0].content[0].text) \(.store) \(.metadata.ticket)"')" \
    "$(words $NTOK)|completed $(words $NTOK) false t-1"
SCOST=$(usage_comment | jq -r .cost_usd)
SUSAGE=$(echo "$final" | jq -r '"\(.usage.input_tokens)/\(.usage.output_tokens)"')
r=$(upstream_one "$since")
t_eq "openai stream: the provider was asked for its usage" \
    "$(echo "$r" | jq -c '.body | fromjson | {stream, stream_options}' 2>/dev/null)" \
    '{"stream":true,"stream_options":{"include_usage":true}}'
call "$SOCK" POST /v1/chat/completions "$(jq -cn --arg t "$PROMPT" --argjson n $NTOK '{model: "openai/gpt-4o-mini",
    stream: true, max_completion_tokens: $n, temperature: 0.5, messages: [{role: "system", content: "brief"},
    {role: "user", content: [{type: "text", text: $t}]}]}')"
t_eq "openai stream: usage in response.completed and the cost equal to the chat stream's" \
    "$SUSAGE $SCOST" "$(usage_comment | jq -r '"\(.prompt_tokens)/\(.completion_tokens) \(.cost_usd)"')"
mock_ctl POST /_mock/scenario '{"scenario":"nostream","count":1}' >/dev/null
call "$SOCK" POST /v1/responses "$(rbody openai/gpt-4o-mini true)"
mock_ctl DELETE /_mock/scenario >/dev/null
final=$(events | jq -c 'select(.type == "response.completed") | .response' 2>/dev/null)
t_eq "openai stream, the provider ignoring stream: the same events from the whole answer" \
    "$CODE $(event_names | sed 's/\(output_text.delta \)*output_text.delta/output_text.delta/') | $(echo "$final" | jq -r '"\(.output[0].content[0].text) \(.usage.input_tokens)/\(.usage.output_tokens)"')" \
    "200 created in_progress output_item.added content_part.added output_text.delta output_text.done content_part.done output_item.done completed | $(words $NTOK) 5/$NTOK"

# ---- Anthropic (translated) ------------------------------------------------------------------
since=$(mock_last_seq)
call "$SOCK" POST /v1/responses "$(rbody anthropic/claude-3-5-haiku false)"
t_eq "anthropic: HTTP 200, answer and usage" \
    "$CODE $(hdr X-BYOK-Provider) $(echo "$BODY" | jq -r '"\(.output[0].content[0].text)|\(.usage.input_tokens)/\(.usage.output_tokens)|\(.model)"' 2>/dev/null)" \
    "200 anthropic $(words $NTOK)|5/$NTOK|claude-3-5-haiku"
r=$(upstream_one "$since")
t_eq "anthropic: the translated request (system from instructions, max_tokens)" \
    "$(echo "$r" | jq -c '{path, body: (.body | fromjson | {system, max_tokens, temperature, messages})}' 2>/dev/null)" \
    "{\"path\":\"/v1/messages\",\"body\":{\"system\":\"brief\",\"max_tokens\":$NTOK,\"temperature\":0.5,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"$PROMPT\"}]}]}}"
call "$SOCK" POST /v1/responses "$(rbody anthropic/claude-3-5-haiku true)"
final=$(events | jq -c 'select(.type == "response.completed") | .response' 2>/dev/null)
t_eq "anthropic stream: events in order, text and usage" \
    "$CODE $(event_names) | $(events | jq -rj 'select(.type == "response.output_text.delta") | .delta' 2>/dev/null) | $(echo "$final" | jq -r '"\(.usage.input_tokens)/\(.usage.output_tokens)"')" \
    "200 $want_events | $(words $NTOK) | 5/$NTOK"

# ---- function calls (the mock's Anthropic tools scenario) -----------------------------------
TOOLS='[{"type":"function","name":"get_weather","description":"Weather now","strict":false,
  "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}},
 {"type":"function","name":"now"}]'
tbody() { # STREAM
    jq -cn --argjson s "$1" --argjson t "$TOOLS" '{model: "anthropic/mock-tools", stream: $s,
        max_output_tokens: 7, input: "weather in Paris?", tools: $t, tool_choice: "required"}'
}
since=$(mock_last_seq)
call "$SOCK" POST /v1/responses "$(tbody false)"
TOUT=$(echo "$BODY" | jq -c .output 2>/dev/null)
t_eq "tools: function_call items with call_id, name and arguments" \
    "$CODE $(echo "$TOUT" | jq -c '[.[] | {type, status, name, args: (.arguments // null | if . then fromjson else null end),
        call: ((.call_id // "") | startswith("toolu_mock_")), fc: (.id | test("^(fc|msg)_"))}]' 2>/dev/null)" \
    '200 [{"type":"message","status":"completed","name":null,"args":null,"call":false,"fc":true},{"type":"function_call","status":"completed","name":"get_weather","args":{"city":"Paris"},"call":true,"fc":true},{"type":"function_call","status":"completed","name":"now","args":{},"call":true,"fc":true}]'
r=$(upstream_one "$since")
t_eq "tools: the tools and tool_choice the provider received" \
    "$(echo "$r" | jq -c '.body | fromjson | {tools: [.tools[] | {name, input_schema}], tool_choice}' 2>/dev/null)" \
    '{"tools":[{"name":"get_weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}},{"name":"now","input_schema":{"type":"object","properties":{}}}],"tool_choice":{"type":"any"}}'
call "$SOCK" POST /v1/responses "$(tbody true)"
names=$(event_names)
final=$(events | jq -c 'select(.type == "response.completed") | .response' 2>/dev/null)
argsd=$(events | jq -r 'select(.type == "response.function_call_arguments.done") | "\(.output_index):\(.name):\(.arguments)"' 2>/dev/null | tr '\n' ' ')
if [ "$CODE" = 200 ] && [[ $names == *"output_item.added function_call_arguments.delta"* ]] &&
    [ "$(echo "$final" | jq -c '[.output[] | .type]')" = '["message","function_call","function_call"]' ] &&
    [ "$argsd" = '1:get_weather:{"city":"Paris"} 2:now:{} ' ] &&
    [ "$(events | jq -s -c '[.[] | .sequence_number] == [range(length)]')" = true ]; then
    t_ok "tools streamed: function_call_arguments events, the final items"
else
    t_fail "tools streamed: function_call_arguments events, the final items" "HTTP $CODE events: $names args: $argsd"
fi
# The follow-up turn: the conversation so far (the answer's items as they came) and the outputs.
since=$(mock_last_seq)
call "$SOCK" POST /v1/responses "$(jq -cn --argjson t "$TOOLS" --argjson out "$TOUT" '{model: "anthropic/mock-tools",
    max_output_tokens: 3, tools: $t, input: ([{role: "user", content: "weather in Paris?"}] + $out
    + [$out[] | select(.type == "function_call") | {type: "function_call_output", call_id, output: "sunny"}])}')"
r=$(upstream_one "$since")
t_eq "tools: the follow-up turn with the calls and their outputs, accepted by the provider" \
    "$CODE $(echo "$BODY" | jq -r '.output[0].content[0].text' 2>/dev/null) $(echo "$r" | jq -c '.body | fromjson | [.messages[] | {role, types: (.content | if type == "string" then ["string"] else [.[] | .type] end)}]' 2>/dev/null)" \
    "200 $(words 3) [{\"role\":\"user\",\"types\":[\"string\"]},{\"role\":\"assistant\",\"types\":[\"text\",\"tool_use\",\"tool_use\"]},{\"role\":\"user\",\"types\":[\"tool_result\",\"tool_result\"]}]"

# ---- incomplete, failure mid-stream, the app leaving -----------------------------------------
got=""
for m in openai/gpt-4o-mini anthropic/claude-3-5-haiku; do
    mock_ctl POST /_mock/scenario '{"scenario":"length","count":1}' >/dev/null
    call "$SOCK" POST /v1/responses "$(rbody "$m" false 3)"
    got+="$CODE $(echo "$BODY" | jq -r '"\(.status) \(.incomplete_details.reason) \(.output[0].status)"' 2>/dev/null); "
done
mock_ctl DELETE /_mock/scenario >/dev/null
t_eq "max_output_tokens reached: status incomplete, reason max_output_tokens" "$got" \
    "200 incomplete max_output_tokens incomplete; 200 incomplete max_output_tokens incomplete; "
call "$SOCK" POST /v1/responses "$(rbody openai/mock-streamerror true)"
last=$(events | tail -1)
t_eq "stream failing mid-answer: response.failed with the agent's code, never completed" \
    "$CODE $(echo "$last" | jq -r '"\(.type) \(.response.status) \(.response.error.code)"' 2>/dev/null) $(echo "$BODY" | grep -c 'response.completed')" \
    "200 response.failed failed provider_stream_error 0"

since=$(mock_last_seq)
curl -s -N -m 1 --unix-socket "$SOCK" http://localhost/v1/responses -H 'Content-Type: application/json' \
    -d "$(rbody openai/mock-slowstream true 200)" >"$LIB_TMP/left.out" 2>/dev/null
rec() { mock_requests_since "$since" | jq -c '.[0]' 2>/dev/null; }
rec_gone() { [ "$(rec | jq -r .client_gone)" = true ]; }
lib_wait_for 5 rec_gone
lib_wait_for 5 grep -q '"model":"mock-slowstream"' "$AGENT_LOG"
line=$(grep '"model":"mock-slowstream"' "$AGENT_LOG" | tail -1)
t_match "app leaves a stream: logged 499 client_closed, the provider sees its client go" \
    "$(echo "$line" | jq -r '.status + " " + .error + " " + .route') $(rec | jq -r .client_gone) $(grep -c 'response.output_text.delta' "$LIB_TMP/left.out")" \
    '^499 client_closed /v1/responses true [1-9][0-9]*$'

# ---- refusals: each names its field, nothing reaches the provider ----------------------------
declare -A BAD=(
    [previous_response_id]='{"previous_response_id": "resp_1"}'
    [conversation]='{"conversation": "conv_1"}'
    [background]='{"background": true}'
    [prompt]='{"prompt": {"id": "pmpt_1"}}'
    [include]='{"include": ["reasoning.encrypted_content"]}'
    [tools]='{"tools": [{"type": "web_search"}]}'
    [tool_choice]='{"tools": [{"type": "function", "name": "f"}], "tool_choice": {"type": "file_search"}}'
    [truncation]='{"truncation": "auto"}'
    [max_tool_calls]='{"max_tool_calls": 2}'
    [messages]='{"messages": [{"role": "user", "content": "x"}]}'
    [max_tokens]='{"max_tokens": 5}'
    ["input[0].type"]='{"input": [{"type": "item_reference", "id": "msg_1"}]}'
)
for f in "${REFUSED[@]}"; do
    since=$(mock_last_seq)
    call "$SOCK" POST /v1/responses "$(echo "${BAD[$f]}" | jq -c '{model: "openai/gpt-4o-mini", input: "hi"} + .')"
    t_eq "refused: $f -> 400 naming it, nothing sent" \
        "$CODE $(echo "$BODY" | jq -r '"\(.error.param) \(.error.type)"' 2>/dev/null) $(mock_requests_since "$since" | jq length)" \
        "400 $f invalid_request_error 0"
done
call "$SOCK" POST /v1/responses '{"model": "openai/gpt-4o-mini", "input": [{"role": "user", "content": 5}]}'
t_eq "bad JSON type: 400 naming the field" \
    "$CODE $(echo "$BODY" | jq -r '"\(.error.param) \(.error.code)"' 2>/dev/null)" "400 input[0].content invalid_type"

call "$SOCK" POST /v1/responses "$(rbody auto false 2)" -H 'X-BYOK-Route: cheapest'
got="$CODE $(hdr X-BYOK-Route) $(echo "$BODY" | jq -r .status 2>/dev/null)"
call "$SOCK" POST /v1/responses "$(rbody auto false 2)" -H 'X-BYOK-Task: juggling'
t_eq "X-BYOK-Route and X-BYOK-Task work as for chat" "$got | $CODE $(echo "$BODY" | jq -r .error.code 2>/dev/null)" \
    "200 cheapest completed | 400 invalid_hint"

call "$SOCK" GET /metrics
n=$(echo "$BODY" | grep '^byok_requests_total{' | grep 'route="/v1/responses"' | grep -c 'status="200"')
t_check "request log and metrics label the route /v1/responses" \
    test "$n" -ge 1 -a "$(grep -c '"route":"/v1/responses"' "$AGENT_LOG")" -ge 10

t_check "agent alive" kill -0 "$AGENT_PID"
agent_stop_check "agent stops cleanly on SIGTERM, no sanitizer report"
canary_scan "canary: nowhere but the provider request" "${KEY[@]}"
t_done
[ "$T_FAILED" -eq 0 ]
