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
# refused key leaves the key cache; a 503 fails over to openai; tools go to openai under
# auto and are refused when vertex is named; embeddings on a vertex model are
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
    "tools under auto: vertex skipped, answered by openai"
    "tools on vertex/<model>: 400 unsupported, nothing sent"
    "embeddings on a vertex model: 400 unsupported, nothing sent"
    "agent alive" "agent stops cleanly on SIGTERM, no sanitizer report"
    "canary: nowhere but the provider request")

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

# Tools are not translated: vertex is skipped under auto, refused when named.
TOOLS='"tools":[{"type":"function","function":{"name":"weather","parameters":{"type":"object"}}}]'
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "{\"model\":\"auto\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],$TOOLS}"
t_eq "tools under auto: vertex skipped, answered by openai" \
    "$CODE $(hdr X-BYOK-Provider) $(mock_requests_since "$since" | jq -c '[.[].style]')" '200 openai ["openai"]'
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "{\"model\":\"vertex/gemini-2.5-flash\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],$TOOLS}"
t_eq "tools on vertex/<model>: 400 unsupported, nothing sent" \
    "$CODE $(echo "$BODY" | jq -r .error.code 2>/dev/null) $(mock_requests_since "$since" | jq length)" "400 unsupported 0"

# Embeddings: the vertex entry lists an embedding model; the adapter does not translate :predict.
since=$(mock_last_seq)
call "$SOCK" POST /v1/embeddings '{"model":"vertex/text-embedding-3-small","input":"alpha beta"}'
t_eq "embeddings on a vertex model: 400 unsupported, nothing sent" \
    "$CODE $(echo "$BODY" | jq -r .error.code 2>/dev/null) $(mock_requests_since "$since" | jq length)" "400 unsupported 0"

t_check "agent alive" kill -0 "$AGENT_PID"
agent_stop_check "agent stops cleanly on SIGTERM, no sanitizer report"
canary_scan "canary: nowhere but the provider request" "${KEY[vertex]}" "${KEY[openai]}" "$BAD_KEY"
t_done
