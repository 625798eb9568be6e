#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# The Vertex AI adapter (api_style vertex, express mode) through app -> agent
# socket -> Vault -> plugin creds -> mock provider. The catalog's vertex entry
# keeps its built-in path and key rules (AIza..., 39 characters at least);
# only its host is the mock's. Streamed and not: the answer, usage, cost =
# tokens x catalog price, X-BYOK-Provider vertex, the frames in order; the
# exact upstream request (path, no key in the URL, the key in x-goog-api-key
# only, Gemini's body with nothing of OpenAI's). A key Google does not know
# (400 API_KEY_INVALID, read from the error's details) and a refused one (401)
# give the agent's usual 502 provider_auth_failed with no key in them, and the
# refused key leaves the key cache; a 503 fails over to openai; tools: the
# translated request (functionDeclarations, toolConfig, functionCall and
# functionResponse turns, which the mock checks as Vertex does), tool calls
# back in OpenAI's shape streamed and not, tool_choice named / none / required,
# a json_schema response format as responseSchema, and bad tool input refused
# with 400 naming the field and nothing sent; embeddings on a vertex model are
# refused with nothing sent; no canary anywhere but the provider request.
. "$(dirname "$0")/lib.sh"

CASES=()
for s in false true; do
    for c in "HTTP 200" "answer text" "usage tokens" "provider and model headers" "cost" \
        "upstream request"; do
        CASES+=("vertex stream=$s: $c")
    done
done
CASES+=("vertex stream=true: frames in order (role, words, finish stop, usage, [DONE])"
    "system and assistant messages: systemInstruction and role model upstream"
    "a key Google does not know (400 API_KEY_INVALID): 502 provider_auth_failed, no key in the answer"
    "the refused key is dropped from the key cache: the next call fetches it again"
    "a key Google refuses (401): 502 provider_auth_failed"
    "a 503 from vertex: answered by openai, X-BYOK-Attempts 2"
    "a 503 from vertex: the mock saw vertex then openai, each with its key"
    "tools stream=false: the translated request (functionDeclarations, toolConfig ANY)"
    "tools stream=false: tool calls in OpenAI's shape, finish_reason tool_calls"
    "tools stream=true: streamed tool calls reassemble from delta.tool_calls"
    "tools: follow-up turn with the results (mock pairs functionCall and functionResponse)"
    "tools: follow-up turn's translated contents"
    "tool_choice named: ANY limited to it, one call of that function"
    "tool_choice none: mode NONE, a text answer"
    "tool_choice required without tools: 400 naming tool_choice, nothing sent"
    "tools under auto: answered by vertex"
    "json_schema: responseMimeType and responseSchema upstream, answered"
    "bad input: malformed arguments JSON 400 naming the field, nothing sent"
    "bad input: unknown tool_call_id 400 naming the field, nothing sent"
    "bad input: a schema keyword Vertex lacks (oneOf) 400 naming the field, nothing sent"
    "bad input: 129 tools 400 naming tools, nothing sent"
    "embeddings on a vertex model: 400 unsupported, nothing sent"
    "agent alive" "agent stops cleanly on SIGTERM, no sanitizer report"
    "canary: nowhere but the provider request"
    "responses: POST /v1/responses through vertex, a response object with the answer and usage"
    "responses: instructions became systemInstruction, max_output_tokens maxOutputTokens"
    "responses stream: through vertex, the events in order and the text from the deltas"
    "responses stream: tool calls as function_call items with their arguments")

lib_up && lib_require "$AGENT_BIN" || t_block_all

# vertex_at_mock: the built-in vertex entry with the mock's host (its path kept,
# so the agent builds the URL it would build for Google), its key rules kept.
PROVIDER_MODEL[vertex]=gemini-2.5-flash
PRICE_IN[vertex]=7000
PRICE_OUT[vertex]=11000
vertex_at_mock() {
    local url builtin
    vault_api GET byok/providers/vertex "" "$ADMIN_TOKEN"
    builtin=$VAULT_BODY
    url=$(echo "$builtin" | jq -r '.data.base_url // empty' 2>/dev/null)
    [ "$VAULT_CODE" = 200 ] && [ -n "$url" ] || return 1
    url=$MOCK_URL$(echo "$url" | sed -E 's#^https?://[^/]*##')
    vault_api PUT byok/providers/vertex "$(provider_entry vertex vertex "$url" |
        jq --argjson b "$builtin" '.key_prefixes = $b.data.key_prefixes
            | .key_min_length = $b.data.key_min_length | .regions = $b.data.regions')" "$ADMIN_TOKEN" >/dev/null
    [ "$VAULT_CODE" -lt 300 ]
}
vertex_at_mock || { LIB_BLOCKED_REASON="vertex catalog override failed (HTTP $VAULT_CODE)"; t_block_all; }

# A Google-shaped canary: the AIza prefix the catalog requires, the random part after the last '-'.
vertex_canary() { echo "AIzaSy-canary-$(lib_random_hex 16)"; }

TENANT=acme
declare -gA KEY
KEY[vertex]=$(vertex_canary)
KEY[openai]=$(lib_canary)
key_put "$TENANT" vertex "${KEY[vertex]}" && key_put "$TENANT" openai "${KEY[openai]}" ||
    { LIB_BLOCKED_REASON="key write failed"; t_block_all; }
vault_api PUT "byok/tenants/$TENANT/settings" \
    '{"preferred_providers":["vertex"],"fallback_providers":["openai"],"budget_tier":"HIGH"}' "$ADMIN_TOKEN"
[ "$VAULT_CODE" -lt 300 ] || t_diag "tenant settings: HTTP $VAULT_CODE"
# badco: a vertex key the mock does not accept (key_put would tell the mock to).
BAD_KEY=$(vertex_canary)
vault_api PUT byok/tenants/badco/keys/vertex/production \
    "$(K=$BAD_KEY jq -n '{key_value: env.K, name: "e2e"}')" "$ADMIN_TOKEN" >/dev/null
[ "$VAULT_CODE" -lt 300 ] || t_diag "badco key write: HTTP $VAULT_CODE"

SOCK=$AGENT_DIR/acme.sock
BADSOCK=$AGENT_DIR/badco.sock
agent_config "[{\"path\": \"$SOCK\", \"mode\": \"0660\", \"tenant\": \"$TENANT\", \"app\": \"e2e\"},
    {\"path\": \"$BADSOCK\", \"mode\": \"0660\", \"tenant\": \"badco\", \"app\": \"e2e\", \"metrics\": true}]" \
    '.providers += ["vertex"]'
agent_start || t_block_all

# check_upstream STREAM SEQ: the one request the mock got since SEQ, as Vertex wants it.
check_upstream() {
    local s=$1 since=$2 reqs n r why="" body want_path=/v1/publishers/google/models/gemini-2.5-flash
    reqs=$(mock_requests_since "$since")
    n=$(echo "$reqs" | jq length)
    if [ "$n" != 1 ]; then
        t_fail "vertex stream=$s: upstream request" "mock saw $n requests, want 1"
        return
    fi
    r=$(echo "$reqs" | jq -c '.[0]')
    if [ "$s" = true ]; then
        want_path+=:streamGenerateContent
        [ "$(echo "$r" | jq -r .query)" = alt=sse ] || why+="query '$(echo "$r" | jq -r .query)'; "
    else
        want_path+=:generateContent
        [ "$(echo "$r" | jq -r .query)" = "" ] || why+="query '$(echo "$r" | jq -r .query)'; "
    fi
    [ "$(echo "$r" | jq -r .path)" = "$want_path" ] || why+="path $(echo "$r" | jq -r .path); "
    [ "$(echo "$r" | jq -r '.headers["X-Goog-Api-Key"][0] // ""')" == "${KEY[vertex]}" ] ||
        why+="x-goog-api-key does not carry the tenant's key; "
    [ "$(echo "$r" | jq -r .auth)/$(echo "$r" | jq -r .style)" = ok/vertex ] ||
        why+="mock auth/style $(echo "$r" | jq -r '"\(.auth)/\(.style)"'); "
    local creds
    creds=$(echo "$r" | jq '[.headers | to_entries[] | select(.key | test("^(authorization|api-key|x-api-key|x-goog-api-key)$"; "i"))] | length')
    [ "$creds" = 1 ] || why+="$creds credential headers; "
    body=$(echo "$r" | jq -c '.body | fromjson')
    [ "$(echo "$body" | jq -c 'keys')" = '["contents","generationConfig"]' ] ||
        why+="body keys $(echo "$body" | jq -c keys); "
    [ "$(echo "$body" | jq -c '.contents')" = '[{"role":"user","parts":[{"text":"one two three four"}]}]' ] ||
        why+="contents $(echo "$body" | jq -c .contents); "
    [ "$(echo "$body" | jq -c '.generationConfig')" = '{"maxOutputTokens":5}' ] ||
        why+="generationConfig $(echo "$body" | jq -c .generationConfig); "
    if [ -z "$why" ]; then t_ok "vertex stream=$s: upstream request"; else t_fail "vertex stream=$s: upstream request" "$why"; fi
}

PROMPT="one two three four"
NTOK=5
for s in false true; do
    since=$(mock_last_seq)
    call "$SOCK" POST /v1/chat/completions "$(chat_body "vertex/gemini-2.5-flash" "$s" "$NTOK" "$PROMPT")"
    t_eq "vertex stream=$s: HTTP 200" "$CODE" 200
    if [ "$s" = false ]; then
        text=$(echo "$BODY" | jq -r '.choices[0].message.content // empty' 2>/dev/null)
        pt=$(echo "$BODY" | jq -r '.usage.prompt_tokens // empty' 2>/dev/null)
        ct=$(echo "$BODY" | jq -r '.usage.completion_tokens // empty' 2>/dev/null)
    else
        text=$(echo "$BODY" | sse_content)
        usage=$(echo "$BODY" | sed -n 's/^data: //p' | grep -v '^\[DONE\]$' | jq -c 'select(.usage != null) | .usage' 2>/dev/null | tail -1)
        pt=$(echo "$usage" | jq -r '.prompt_tokens // empty' 2>/dev/null)
        ct=$(echo "$usage" | jq -r '.completion_tokens // empty' 2>/dev/null)
        # role, w0..w4, finish, usage, [DONE]
        frames=$(echo "$BODY" | sed -n 's/^data: //p' | while read -r f; do
            if [ "$f" = "[DONE]" ]; then echo DONE; else
                echo "$f" | jq -r 'if (.choices | length) == 0 then "usage"
                    elif .choices[0].finish_reason != null then "finish:" + .choices[0].finish_reason
                    elif .choices[0].delta.role != null then "role"
                    else .choices[0].delta.content end'
            fi
        done | tr '\n' ',')
        t_eq "vertex stream=true: frames in order (role, words, finish stop, usage, [DONE])" "$frames" \
            "role,w0, w1, w2, w3, w4,finish:stop,usage,DONE,"
    fi
    t_eq "vertex stream=$s: answer text" "$text" "$(words $NTOK)"
    t_eq "vertex stream=$s: usage tokens" "$pt/$ct" "4/$NTOK"
    t_eq "vertex stream=$s: provider and model headers" "$(hdr X-BYOK-Provider) $(hdr X-BYOK-Model)" \
        "vertex gemini-2.5-flash"
    want=$(cost_of vertex 4 "$NTOK")
    if [ "$s" = false ]; then
        t_num_eq "vertex stream=$s: cost" "$(hdr X-BYOK-Cost-USD)" "$want" 1e-9
    else
        u=$(echo "$BODY" | sed -n 's/^: x-byok-usage //p' | tail -1)
        t_num_eq "vertex stream=$s: cost" "$(echo "$u" | jq -r '.cost_usd // empty' 2>/dev/null)" "$want" 1e-9
    fi
    check_upstream "$s" "$since"
done

# A conversation: system -> systemInstruction, assistant -> role model.
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions '{"model":"vertex/gemini-2.5-flash","messages":[
    {"role":"system","content":"be brief"},{"role":"user","content":"hi"},
    {"role":"assistant","content":"yo"},{"role":"user","content":"again"}]}'
got=$(mock_requests_since "$since" | jq -c '.[0].body | fromjson | [.systemInstruction, [.contents[].role]]' 2>/dev/null)
t_eq "system and assistant messages: systemInstruction and role model upstream" "$CODE $got" \
    '200 [{"parts":[{"text":"be brief"}]},["user","model","user"]]'

# Keys Google refuses.
# keycache_fetches: the agent's Vault reads of creds so far (byok_keycache_total{event="fetch"}).
keycache_fetches() {
    call "$BADSOCK" GET /metrics
    echo "$BODY" | awk '$1 == "byok_keycache_total{event=\"fetch\"}" { print $2 }'
}
call "$BADSOCK" POST /v1/chat/completions "$(chat_body vertex/gemini-2.5-flash false 5)"
if [ "$CODE" = 502 ] && [ "$(echo "$BODY" | jq -r .error.code 2>/dev/null)" = provider_auth_failed ] &&
    [[ $BODY != *AIza* ]]; then
    t_ok "a key Google does not know (400 API_KEY_INVALID): 502 provider_auth_failed, no key in the answer"
else
    t_fail "a key Google does not know (400 API_KEY_INVALID): 502 provider_auth_failed, no key in the answer" "HTTP $CODE $(echo "$BODY" | jq -c .error 2>/dev/null)"
fi
# A key the provider refused is wiped: each call reads it from Vault again (a cached one would not).
f1=$(keycache_fetches)
call "$BADSOCK" POST /v1/chat/completions "$(chat_body vertex/gemini-2.5-flash false 5)"
f2=$(keycache_fetches)
t_check "the refused key is dropped from the key cache: the next call fetches it again" \
    test "$CODE ${f1:-x} $((${f2:-0} - ${f1:-0}))" = "502 ${f1:-x} 1"
mock_ctl POST /_mock/scenario '{"scenario":"401","count":1}' >/dev/null
call "$SOCK" POST /v1/chat/completions "$(chat_body vertex/gemini-2.5-flash false 5)"
t_eq "a key Google refuses (401): 502 provider_auth_failed" \
    "$CODE $(echo "$BODY" | jq -r .error.code 2>/dev/null)" "502 provider_auth_failed"
mock_ctl DELETE /_mock/scenario >/dev/null

# Failover: a 503 from vertex (preferred), then openai answers.
since=$(mock_last_seq)
mock_ctl POST /_mock/scenario '{"scenario":"503","count":1}' >/dev/null
call "$SOCK" POST /v1/chat/completions "$(chat_body auto false 5)"
t_eq "a 503 from vertex: answered by openai, X-BYOK-Attempts 2" \
    "$CODE $(hdr X-BYOK-Provider) $(hdr X-BYOK-Attempts)" "200 openai 2"
seen=$(mock_requests_since "$since" | jq -r '.[] | "\(.style):\(.status):\(.headers["X-Goog-Api-Key"][0] // .headers["Authorization"][0] // "")"')
want=$(printf 'vertex:503:%s\nopenai:200:Bearer %s' "${KEY[vertex]}" "${KEY[openai]}")
if [ "$seen" == "$want" ]; then
    t_ok "a 503 from vertex: the mock saw vertex then openai, each with its key"
else
    t_fail "a 503 from vertex: the mock saw vertex then openai, each with its key" \
        "saw $(mock_requests_since "$since" | jq -c '[.[] | "\(.style):\(.status)"]')"
fi
mock_ctl DELETE /_mock/scenario >/dev/null

# Tools. upstream_body SEQ: the one request the mock got since SEQ, its body parsed.
upstream_body() { mock_requests_since "$1" | jq -c 'if length == 1 then .[0].body | fromjson else empty end' 2>/dev/null; }
# sent_since SEQ: how many requests the mock got since SEQ.
sent_since() { mock_requests_since "$1" | jq length; }
# err_of: "HTTP code param sent=N" of the last call, for the 400 cases.
err_of() { echo "$CODE $(echo "$BODY" | jq -r '.error | "\(.code) \(.param)"' 2>/dev/null) sent=$(sent_since "$1")"; }
tools_scenario() { mock_ctl POST /_mock/scenario '{"scenario":"tools","count":1}' >/dev/null; }

TOOLS='[{"type":"function","function":{"name":"get_weather","description":"Weather now","strict":true,
  "parameters":{"type":"object","properties":{"city":{"type":"string"},"unit":{"type":["string","null"],
  "enum":["C","F"]}},"required":["city","unit"],"additionalProperties":false}}},
 {"type":"function","function":{"name":"now","parameters":{"type":"object","properties":{}}}}]'
ask() { # STREAM [TOOL_CHOICE]
    jq -cn --argjson s "$1" --argjson t "$TOOLS" --argjson c "${2:-\"required\"}" '{model: "vertex/gemini-2.5-flash",
        stream: $s, max_tokens: 7, messages: [{role: "user", content: "weather in Paris?"}], tools: $t,
        tool_choice: $c} + (if $s then {stream_options: {include_usage: true}} else {} end)'
}

since=$(mock_last_seq)
tools_scenario
call "$SOCK" POST /v1/chat/completions "$(ask false)"
t_eq "tools stream=false: the translated request (functionDeclarations, toolConfig ANY)" \
    "$(upstream_body "$since" | jq -c '{tools, toolConfig}')" \
    '{"tools":[{"functionDeclarations":[{"name":"get_weather","description":"Weather now","parameters":{"type":"OBJECT","properties":{"city":{"type":"STRING"},"unit":{"type":"STRING","nullable":true,"enum":["C","F"]}},"required":["city","unit"],"additionalProperties":false}},{"name":"now"}]}],"toolConfig":{"functionCallingConfig":{"mode":"ANY"}}}'
GOT=$(echo "$BODY" | jq -c '.choices[0] | {finish_reason, content: .message.content,
    calls: [.message.tool_calls[] | {type, name: .function.name, args: (.function.arguments | fromjson)}],
    ids: [.message.tool_calls[].id | test("^call_")]}' 2>/dev/null)
t_eq "tools stream=false: tool calls in OpenAI's shape, finish_reason tool_calls" "$CODE $GOT" \
    '200 {"finish_reason":"tool_calls","content":"Let me check.","calls":[{"type":"function","name":"get_weather","args":{"city":"Paris"}},{"type":"function","name":"now","args":{}}],"ids":[true,true]}'
ASSISTANT=$(echo "$BODY" | jq -c '.choices[0].message | {role, content: null, tool_calls}')

tools_scenario
call "$SOCK" POST /v1/chat/completions "$(ask true)"
GOT=$(echo "$BODY" | sed -n 's/^data: //p' | grep -v '^\[DONE\]$' | jq -sc '
    [.[].choices[0].delta.tool_calls // empty | .[]] as $d
    | {text: ([.[].choices[0].delta.content // empty] | join("")),
       finish: ([.[].choices[0].finish_reason // empty] | join(",")),
       calls: [$d | group_by(.index)[] | {index: .[0].index, id_ok: (.[0].id | test("^call_")),
               type: .[0].type, name: .[0].function.name, args: ([.[].function.arguments] | join(""))}]}' 2>/dev/null)
grep -qx 'data: \[DONE\]' <<<"$BODY" || GOT+=" (no [DONE])"
t_eq "tools stream=true: streamed tool calls reassemble from delta.tool_calls" "$CODE $GOT" \
    '200 {"text":"Let me check.","finish":"tool_calls","calls":[{"index":0,"id_ok":true,"type":"function","name":"get_weather","args":"{\"city\":\"Paris\"}"},{"index":1,"id_ok":true,"type":"function","name":"now","args":"{}"}]}'

# The follow-up: the assistant's turn as received, then one result per call (in another order).
FOLLOW=$(jq -cn --argjson a "$ASSISTANT" --argjson t "$TOOLS" '{model: "vertex/gemini-2.5-flash", max_tokens: 3,
    messages: [{role: "user", content: "weather in Paris?"}, $a,
               {role: "tool", tool_call_id: $a.tool_calls[1].id, content: "noon"},
               {role: "tool", tool_call_id: $a.tool_calls[0].id, content: [{type: "text", text: "sunny"}]}],
    tools: $t}')
since=$(mock_last_seq)
tools_scenario
call "$SOCK" POST /v1/chat/completions "$FOLLOW"
t_eq "tools: follow-up turn with the results (mock pairs functionCall and functionResponse)" \
    "$CODE $(echo "$BODY" | jq -c '[.choices[0].finish_reason, .choices[0].message.content]' 2>/dev/null)" \
    "200 [\"stop\",\"$(words 3)\"]"
t_eq "tools: follow-up turn's translated contents" "$(upstream_body "$since" | jq -c '.contents[1:]')" \
    '[{"role":"model","parts":[{"functionCall":{"name":"get_weather","args":{"city":"Paris"}}},{"functionCall":{"name":"now","args":{}}}]},{"role":"user","parts":[{"functionResponse":{"name":"now","response":{"output":"noon"}}},{"functionResponse":{"name":"get_weather","response":{"output":"sunny"}}}]}]'

since=$(mock_last_seq)
tools_scenario
call "$SOCK" POST /v1/chat/completions "$(ask false '{"type":"function","function":{"name":"now"}}')"
t_eq "tool_choice named: ANY limited to it, one call of that function" \
    "$CODE $(upstream_body "$since" | jq -c .toolConfig) $(echo "$BODY" | jq -c '[.choices[0].message.tool_calls[].function.name]' 2>/dev/null)" \
    '200 {"functionCallingConfig":{"mode":"ANY","allowedFunctionNames":["now"]}} ["now"]'
since=$(mock_last_seq)
tools_scenario
call "$SOCK" POST /v1/chat/completions "$(ask false '"none"')"
t_eq "tool_choice none: mode NONE, a text answer" \
    "$CODE $(upstream_body "$since" | jq -c .toolConfig) $(echo "$BODY" | jq -c '.choices[0] | [.finish_reason, .message.content, .message.tool_calls]' 2>/dev/null)" \
    "200 {\"functionCallingConfig\":{\"mode\":\"NONE\"}} [\"stop\",\"$(words 7)\",null]"
mock_ctl DELETE /_mock/scenario >/dev/null
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions '{"model":"vertex/gemini-2.5-flash","messages":[{"role":"user","content":"x"}],"tool_choice":"required"}'
t_match "tool_choice required without tools: 400 naming tool_choice, nothing sent" "$(err_of "$since")" \
    '^400 invalid_messages tool_choice sent=0$'

# Vertex is the tenant's preferred provider and now takes tools.
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(ask false '"auto"' | jq -c '.model = "auto"')"
t_eq "tools under auto: answered by vertex" \
    "$CODE $(hdr X-BYOK-Provider) $(mock_requests_since "$since" | jq -c '[.[].style]')" '200 vertex ["vertex"]'

since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions '{"model":"vertex/gemini-2.5-flash","max_tokens":4,
    "messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{
    "name":"r","strict":true,"schema":{"type":"object","properties":{"n":{"type":"integer"}},
    "required":["n"],"additionalProperties":false}}}}'
t_eq "json_schema: responseMimeType and responseSchema upstream, answered" \
    "$CODE $(upstream_body "$since" | jq -cS .generationConfig)" \
    '200 {"maxOutputTokens":4,"responseMimeType":"application/json","responseSchema":{"additionalProperties":false,"properties":{"n":{"type":"INTEGER"}},"required":["n"],"type":"OBJECT"}}'

since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(echo "$FOLLOW" | jq -c '.messages[1].tool_calls[0].function.arguments = "{city: Paris"')"
t_match "bad input: malformed arguments JSON 400 naming the field, nothing sent" "$(err_of "$since")" \
    '^400 invalid_messages messages\[1\]\.tool_calls\[0\]\.function\.arguments sent=0$'
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(echo "$FOLLOW" | jq -c '.messages[2].tool_call_id = "call_nobody"')"
t_match "bad input: unknown tool_call_id 400 naming the field, nothing sent" "$(err_of "$since")" \
    '^400 invalid_messages messages\[2\]\.tool_call_id sent=0$'
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(ask false | jq -c '.tools[0].function.parameters.properties.city = {oneOf: [{type: "string"}, {type: "integer"}]}')"
t_match "bad input: a schema keyword Vertex lacks (oneOf) 400 naming the field, nothing sent" "$(err_of "$since")" \
    '^400 invalid_messages tools\[0\]\.function\.parameters\.properties\[0\]\.oneOf sent=0$'
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(jq -cn '{model: "vertex/gemini-2.5-flash", messages: [{role: "user", content: "x"}],
    tools: [range(129) | {type: "function", function: {name: "f\(.)"}}]}')"
t_match "bad input: 129 tools 400 naming tools, nothing sent" "$(err_of "$since")" '^400 invalid_messages tools sent=0$'

# Embeddings: the vertex entry lists an embedding model; the adapter does not translate :predict.
since=$(mock_last_seq)
call "$SOCK" POST /v1/embeddings '{"model":"vertex/text-embedding-3-small","input":"alpha beta"}'
t_eq "embeddings on a vertex model: 400 unsupported, nothing sent" \
    "$CODE $(echo "$BODY" | jq -r .error.code 2>/dev/null) $(mock_requests_since "$since" | jq length)" "400 unsupported 0"

t_check "agent alive" kill -0 "$AGENT_PID"
# The Responses API through this translating adapter (docs/agent.md, Responses API).
since=$(mock_last_seq)
call "$SOCK" POST /v1/responses "{\"model\":\"vertex/gemini-2.5-flash\",\"instructions\":\"be brief\",
    \"input\":\"$PROMPT\",\"max_output_tokens\":$NTOK}"
t_eq "responses: POST /v1/responses through vertex, a response object with the answer and usage" \
    "$CODE $(echo "$BODY" | jq -c '[.object, .status, [.output[].type], .output[0].content[0].text,
        .usage.input_tokens, .usage.output_tokens, .usage.total_tokens]' 2>/dev/null) $(hdr X-BYOK-Provider)" \
    "200 [\"response\",\"completed\",[\"message\"],\"$(words $NTOK)\",6,$NTOK,$((6 + NTOK))] vertex"
t_eq "responses: instructions became systemInstruction, max_output_tokens maxOutputTokens" \
    "$(upstream_body "$since" | jq -c '[.systemInstruction.parts[0].text, .generationConfig.maxOutputTokens]')" \
    "[\"be brief\",$NTOK]"
call "$SOCK" POST /v1/responses "{\"model\":\"vertex/gemini-2.5-flash\",\"input\":\"$PROMPT\",
    \"max_output_tokens\":$NTOK,\"stream\":true}"
GOT=$(echo "$BODY" | sed -n 's/^data: //p' | jq -sc '[(map(.type) | unique | map(select(. == "response.created"
    or . == "response.output_text.delta" or . == "response.completed")) | length),
    (map(.sequence_number) == [range(length)]), (map(select(.type == "response.output_text.delta") | .delta) | join("")),
    (.[-1].type), (.[-1].response.usage.output_tokens)]' 2>/dev/null)
t_eq "responses stream: through vertex, the events in order and the text from the deltas" \
    "$CODE $GOT $(grep -c '^data: \[DONE\]' <<<"$BODY")" "200 [3,true,\"$(words $NTOK)\",\"response.completed\",$NTOK] 0"
tools_scenario
call "$SOCK" POST /v1/responses "$(jq -cn --argjson t "$TOOLS" '{model: "vertex/gemini-2.5-flash", stream: true,
    input: "weather in Paris?", tool_choice: "required",
    tools: [$t[] | {type: "function", name: .function.name, description: .function.description,
                    parameters: .function.parameters}]}')"
mock_ctl DELETE /_mock/scenario >/dev/null
t_eq "responses stream: tool calls as function_call items with their arguments" \
    "$CODE $(echo "$BODY" | sed -n 's/^data: //p' | jq -sc '.[-1].response.output | map(select(.type == "function_call")
        | [.name, (.arguments | fromjson)])' 2>/dev/null)" \
    '200 [["get_weather",{"city":"Paris"}],["now",{}]]'

agent_stop_check "agent stops cleanly on SIGTERM, no sanitizer report"
canary_scan "canary: nowhere but the provider request" "${KEY[vertex]}" "${KEY[openai]}" "$BAD_KEY"
t_done
