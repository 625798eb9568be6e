#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# Tool calling through the Anthropic translation, and Azure's stream_options
# by api-version. The mock's "tools" scenario (model mock-tools) answers an
# Anthropic request with a tool_use block per tool, and the mock refuses, as
# Anthropic does, a request whose tools lack input_schema or whose tool_use
# blocks are not answered by tool_result blocks in the next message. An
# OpenAI-shaped tool conversation goes app -> agent -> mock (Anthropic style)
# and back: the tools and tool_choice the mock received, the tool calls the
# app gets (non-streamed, and streamed as delta.tool_calls fragments), the
# follow-up turn with the assistant's tool_calls and two tool results, and a
# non-JSON arguments string refused before anything is sent. Azure: a stream
# on api-version 2024-06-01 is sent without stream_options (which that version
# refuses with a 400) and counted with estimated usage; on 2024-10-21 it asks
# for usage and reports the provider's.
. "$(dirname "$0")/lib.sh"

CASES=("anthropic tools: the translated request (tools with input_schema, tool_choice any)"
    "anthropic tools: non-streamed tool calls in OpenAI's shape"
    "anthropic tools: streamed tool calls reassemble from delta.tool_calls"
    "anthropic tools: follow-up turn pairs tool_use and tool_result (mock accepts it)"
    "anthropic tools: follow-up turn's translated messages"
    "anthropic tools: non-JSON arguments refused with 400 naming the field, nothing sent"
    "azure 2024-06-01 stream: 200, the whole answer, [DONE]"
    "azure 2024-06-01 stream: no stream_options sent, usage estimated"
    "azure 2024-10-21 stream: include_usage sent, the provider's usage"
    "agent stops cleanly on SIGTERM, no sanitizer report"
    "canary: nowhere but the provider request")

lib_up && lib_require "$AGENT_BIN" || t_block_all

# The anthropic catalog entry also lists mock-tools (the mock's tools scenario).
vault_api GET byok/providers/anthropic "" "$ADMIN_TOKEN"
vault_api PUT byok/providers/anthropic "$(echo "$VAULT_BODY" | jq -c '.data | del(.name, .builtin, .overridden)
    | .models += [.models[0] + {name: "mock-tools"}]')" "$ADMIN_TOKEN" >/dev/null
[ "$VAULT_CODE" -lt 300 ] || { LIB_BLOCKED_REASON="catalog anthropic: HTTP $VAULT_CODE"; t_block_all; }

canary_keys acme anthropic || { LIB_BLOCKED_REASON="key write failed"; t_block_all; }
# azure_key TENANT API_VERSION: an Azure key naming its api_version (the model name is the deployment).
azure_key() {
    KEY[azure_$1]=$(lib_canary)
    mock_accept "${KEY[azure_$1]}"
    vault_api PUT "byok/tenants/$1/keys/azure/production" \
        "$(K=${KEY[azure_$1]} jq -n --arg v "$2" '{key_value: env.K, name: "e2e", metadata: {api_version: $v}}')" \
        "$ADMIN_TOKEN" >/dev/null
    [ "$VAULT_CODE" -lt 300 ] || { LIB_BLOCKED_REASON="key write $1/azure: HTTP $VAULT_CODE"; t_block_all; }
}
azure_key acme 2024-06-01
azure_key beta 2024-10-21

SOCK=$AGENT_DIR/acme.sock
SOCK_B=$AGENT_DIR/beta.sock
agent_config "[{\"path\": \"$SOCK\", \"mode\": \"0660\", \"tenant\": \"acme\", \"app\": \"tools\"},
    {\"path\": \"$SOCK_B\", \"mode\": \"0660\", \"tenant\": \"beta\", \"app\": \"tools\"}]" \
    '.providers = ["anthropic", "azure"]'
agent_start || t_block_all

# upstream_body SEQ: the body of the one request the mock received after SEQ ("" if not one).
upstream_body() { mock_requests_since "$1" | jq -c 'if length == 1 then .[0].body | fromjson else empty end' 2>/dev/null; }

TOOLS='[{"type":"function","function":{"name":"get_weather","description":"Weather now",
  "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}},
 {"type":"function","function":{"name":"now"}}]'
ask() { # STREAM
    jq -cn --argjson s "$1" --argjson t "$TOOLS" '{model: "anthropic/mock-tools", stream: $s, max_tokens: 7,
        messages: [{role: "user", content: "weather in Paris?"}], tools: $t, tool_choice: "required"}'
}

since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(ask false)"
up=$(upstream_body "$since")
t_eq "anthropic tools: the translated request (tools with input_schema, tool_choice any)" \
    "$(echo "$up" | jq -c '{tools: [.tools[] | {name, description, input_schema, function}], tool_choice}')" \
    '{"tools":[{"name":"get_weather","description":"Weather now","input_schema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]},"function":null},{"name":"now","description":null,"input_schema":{"type":"object","properties":{}},"function":null}],"tool_choice":{"type":"any"}}'

GOT=$(echo "$BODY" | jq -c '.choices[0] | {finish_reason, content: .message.content,
    calls: [.message.tool_calls[] | {type, name: .function.name, args: (.function.arguments | fromjson)}],
    ids: [.message.tool_calls[].id | test("^toolu_mock_")]}' 2>/dev/null)
t_eq "anthropic tools: non-streamed tool calls in OpenAI's shape" "$CODE $GOT" \
    '200 {"finish_reason":"tool_calls","content":"Let me check.","calls":[{"type":"function","name":"get_weather","args":{"city":"Paris"}},{"type":"function","name":"now","args":{}}],"ids":[true,true]}'
ASSISTANT=$(echo "$BODY" | jq -c '.choices[0].message | {role, content: null, tool_calls}')

# The stream: tool calls reassembled by index from their fragments, as an OpenAI client does.
call "$SOCK" POST /v1/chat/completions "$(ask true)"
GOT=$(echo "$BODY" | sed -n 's/^data: //p' | grep -v '^\[DONE\]$' | jq -sc '
    [.[].choices[0].delta.tool_calls // empty | .[]] as $d
    | {text: ([.[].choices[0].delta.content // empty] | join("")),
       finish: ([.[].choices[0].finish_reason // empty] | join(",")),
       calls: [$d | group_by(.index)[] | {index: .[0].index, id_ok: (.[0].id | test("^toolu_mock_")),
               type: .[0].type, name: .[0].function.name, args: ([.[].function.arguments] | join(""))}]}' 2>/dev/null)
grep -qx 'data: \[DONE\]' <<<"$BODY" || GOT+=" (no [DONE])"
t_eq "anthropic tools: streamed tool calls reassemble from delta.tool_calls" "$CODE $GOT" \
    '200 {"text":"Let me check.","finish":"tool_calls","calls":[{"index":0,"id_ok":true,"type":"function","name":"get_weather","args":"{\"city\":\"Paris\"}"},{"index":1,"id_ok":true,"type":"function","name":"now","args":"{}"}]}'

# The follow-up: the assistant's turn as received (content null), then one result per call.
FOLLOW=$(jq -cn --argjson a "$ASSISTANT" --argjson t "$TOOLS" '{model: "anthropic/mock-tools", max_tokens: 3,
    messages: [{role: "user", content: "weather in Paris?"}, $a,
               {role: "tool", tool_call_id: $a.tool_calls[0].id, content: "sunny"},
               {role: "tool", tool_call_id: $a.tool_calls[1].id, content: [{type: "text", text: "noon"}]}],
    tools: $t}')
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$FOLLOW"
t_eq "anthropic tools: follow-up turn pairs tool_use and tool_result (mock accepts it)" \
    "$CODE $(echo "$BODY" | jq -c '[.choices[0].finish_reason, .choices[0].message.content]' 2>/dev/null)" \
    "200 [\"stop\",\"$(words 3)\"]"
IDS=$(echo "$ASSISTANT" | jq -c '[.tool_calls[].id]')
t_eq "anthropic tools: follow-up turn's translated messages" \
    "$(upstream_body "$since" | jq -c --argjson ids "$IDS" '.messages[1:] | [.[] | {role, content: [.content[] |
        {type, id: ((.id // .tool_use_id) as $i | $ids | index($i)), name, input, content}]}]')" \
    '[{"role":"assistant","content":[{"type":"tool_use","id":0,"name":"get_weather","input":{"city":"Paris"},"content":null},{"type":"tool_use","id":1,"name":"now","input":{},"content":null}]},{"role":"user","content":[{"type":"tool_result","id":0,"name":null,"input":null,"content":"sunny"},{"type":"tool_result","id":1,"name":null,"input":null,"content":"noon"}]}]'

since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(echo "$FOLLOW" | jq -c '.messages[1].tool_calls[0].function.arguments = "{city: Paris"')"
t_match "anthropic tools: non-JSON arguments refused with 400 naming the field, nothing sent" \
    "$CODE $(echo "$BODY" | jq -r '.error | "\(.code) \(.param)"' 2>/dev/null) sent=$(mock_requests_since "$since" | jq length)" \
    '^400 invalid_messages messages\[1\]\.tool_calls\[0\]\.function\.arguments sent=0$'

# Azure: tenant acme's key names api_version 2024-06-01, tenant beta's 2024-10-21.
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(chat_body azure/gpt-4o-mini true 5)"
text=$(echo "$BODY" | sse_content)
grep -qx 'data: \[DONE\]' <<<"$BODY" || text+=" (no [DONE])"
t_eq "azure 2024-06-01 stream: 200, the whole answer, [DONE]" "$CODE $text" "200 $(words 5)"
u=$(echo "$BODY" | sed -n 's/^: x-byok-usage //p' | tail -1)
t_eq "azure 2024-06-01 stream: no stream_options sent, usage estimated" \
    "$(mock_requests_since "$since" | jq -c '[.[] | {q: .query, so: (.body | fromjson | .stream_options)}]') $(echo "$u" | jq -c '{estimated, counted: (.completion_tokens >= 5)}')" \
    '[{"q":"api-version=2024-06-01","so":null}] {"estimated":true,"counted":true}'
since=$(mock_last_seq)
call "$SOCK_B" POST /v1/chat/completions "$(chat_body azure/gpt-4o-mini true 5)"
u=$(echo "$BODY" | sed -n 's/^: x-byok-usage //p' | tail -1)
t_eq "azure 2024-10-21 stream: include_usage sent, the provider's usage" \
    "$CODE $(mock_requests_since "$since" | jq -c '[.[] | {q: .query, so: (.body | fromjson | .stream_options)}]') $(echo "$u" | jq -c '{estimated, prompt_tokens, completion_tokens}')" \
    '200 [{"q":"api-version=2024-10-21","so":{"include_usage":true}}] {"estimated":false,"prompt_tokens":4,"completion_tokens":5}'

agent_stop_check "agent stops cleanly on SIGTERM, no sanitizer report"
canary_scan "canary: nowhere but the provider request" "${KEY[anthropic]}" "${KEY[azure_acme]}" "${KEY[azure_beta]}"
t_done
