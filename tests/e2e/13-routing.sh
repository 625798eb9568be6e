#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# The tenant's settings bind every way of naming a model. Tenant acme has
# OpenAI and Anthropic keys and prefers anthropic; the catalog says openai
# serves from the EU and anthropic from the US only, and lists a HIGH-tier
# model and a model with a 50-token context window. With residency eu, budget
# tier MEDIUM and chat as the only allowed task: "auto" goes to openai; an
# explicit or bare anthropic model is 403 residency_not_allowed; the HIGH model
# is 403 tier_not_allowed whether named explicitly or bare; a disallowed task
# or an unknown hint on an explicit model is refused; a bare model whose
# context window cannot hold the prompt is 400 context_length_exceeded; a chat
# model on /v1/embeddings is 400 model_not_supported; a model name with a space
# is 400 invalid_model. Nothing refused is sent upstream. GET /v1/models lists
# only what the tenant may use.
# A key's permissions bind the same way. Tenant globex has an OpenAI key that
# permits only embedding and an Anthropic key that permits only chat: "auto"
# chat goes past its preferred openai to anthropic; a stream (no key permits
# streaming) and an explicit openai chat are 403 key_not_permitted; embeddings
# go to openai; nothing refused is sent; GET /v1/models lists what each key
# permits.
. "$(dirname "$0")/lib.sh"

CASES=("auto with residency eu: the EU provider answers, not the preferred US one"
    "explicit US model with residency eu: 403 residency_not_allowed"
    "bare US-only model with residency eu: 403 residency_not_allowed"
    "explicit HIGH model, tenant MEDIUM: 403 tier_not_allowed"
    "bare HIGH model, tenant MEDIUM: 403 tier_not_allowed"
    "explicit model within the tier (max_tokens at its bound, 100000000): 200"
    "explicit model, X-BYOK-Tier FREE below the model's LOW: 403 tier_not_allowed"
    "explicit model, task outside allowed_task_types: 403 task_not_allowed"
    "explicit model, unknown X-BYOK-Task: 400 invalid_hint"
    "bare model whose context window cannot hold the prompt: 400 context_length_exceeded"
    "chat model on /v1/embeddings: 400 model_not_supported"
    "model name with a space: 400 invalid_model"
    "auto, max_tokens 9223372036854775807: 400 invalid_type naming max_tokens"
    "max_completion_tokens one past 100000000: 400 invalid_type naming it"
    "nothing refused reached the provider"
    "GET /v1/models: only what the tenant may use (no US provider, nothing above its tier)"
    "GET /v1/models/{model}: a listed model, by provider/model, percent-encoded and bare"
    "GET /v1/models/{model}: a model the tenant may not use, or unknown: 404 model_not_found"
    "GET /v1/models/{model}: a malformed id is 400 invalid_model; POST is 405; one metrics label"
    "key permissions: auto chat passes the preferred provider's embedding-only key for one that permits chat"
    "key permissions: a stream no key permits: 403 key_not_permitted naming what the request uses"
    "key permissions: explicit chat model with an embedding-only key: 403 key_not_permitted"
    "key permissions: embeddings with the embedding-only key: 200"
    "key permissions: nothing refused reached the provider"
    "key permissions: GET /v1/models lists only what each key permits"
    "agent stops cleanly on SIGTERM, no sanitizer report"
    "canary: nowhere but the provider request")

lib_up && lib_require "$AGENT_BIN" || t_block_all

# catalog_edit PROVIDER JQ: rewrites the provider's catalog entry with a jq filter.
catalog_edit() {
    vault_api GET "byok/providers/$1" "" "$ADMIN_TOKEN"
    local entry
    entry=$(echo "$VAULT_BODY" | jq -c ".data | del(.name, .builtin, .overridden) | $2")
    vault_api PUT "byok/providers/$1" "$entry" "$ADMIN_TOKEN" >/dev/null
    [ "$VAULT_CODE" -lt 300 ] || t_diag "catalog $1: HTTP $VAULT_CODE $VAULT_BODY"
}
catalog_edit openai '.regions = ["eu"]
    | .models += [{name: "mock-premium", tier: "HIGH", capabilities: ["chat"], context_window: 128000,
                   input_per_1m: 1000, output_per_1m: 2000},
                  {name: "mock-tiny", tier: "LOW", capabilities: ["chat"], context_window: 50,
                   input_per_1m: 1000, output_per_1m: 2000}]'
catalog_edit anthropic '.regions = ["us"]'

canary_keys acme openai anthropic
vault_api PUT byok/tenants/acme/settings \
    '{"preferred_providers":["anthropic"],"budget_tier":"MEDIUM","residency":"eu","allowed_task_types":["chat"]}' \
    "$ADMIN_TOKEN"
[ "$VAULT_CODE" -lt 300 ] || t_diag "tenant settings: HTTP $VAULT_CODE $VAULT_BODY"
# globex: keys with permissions (no residency: both providers serve it).
declare -A GKEY=([openai]=$(lib_canary) [anthropic]=$(lib_canary))
declare -A GPERMS=([openai]='["embedding"]' [anthropic]='["chat"]')
for p in openai anthropic; do
    mock_accept "${GKEY[$p]}"
    vault_api PUT "byok/tenants/globex/keys/$p/production" \
        "$(K=${GKEY[$p]} jq -n --argjson perms "${GPERMS[$p]}" '{key_value: env.K, permissions: $perms}')" \
        "$ADMIN_TOKEN" >/dev/null
    [ "$VAULT_CODE" -lt 300 ] || t_diag "globex key $p: HTTP $VAULT_CODE"
done
vault_api PUT byok/tenants/globex/settings '{"preferred_providers":["openai"],"budget_tier":"MEDIUM"}' \
    "$ADMIN_TOKEN"
[ "$VAULT_CODE" -lt 300 ] || t_diag "globex settings: HTTP $VAULT_CODE $VAULT_BODY"
SOCK=$AGENT_DIR/acme.sock
GSOCK=$AGENT_DIR/globex.sock
agent_config "[{\"path\": \"$SOCK\", \"mode\": \"0660\", \"tenant\": \"acme\", \"app\": \"routing\", \"metrics\": true},
               {\"path\": \"$GSOCK\", \"mode\": \"0660\", \"tenant\": \"globex\", \"app\": \"routing\"}]" \
    '.providers = ["openai", "anthropic"]'
agent_start || t_block_all

# refused NAME WANT_STATUS WANT_CODE: the last call's status and error code.
refused() { t_eq "$1" "$CODE $(echo "$BODY" | jq -r '.error.code' 2>/dev/null)" "$2 $3"; }

call "$SOCK" POST /v1/chat/completions "$(chat_body auto false 3)"
t_eq "auto with residency eu: the EU provider answers, not the preferred US one" \
    "$CODE $(hdr X-BYOK-Provider)" "200 openai"

since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(chat_body anthropic/claude-3-5-haiku false 3)"
refused "explicit US model with residency eu: 403 residency_not_allowed" 403 residency_not_allowed
call "$SOCK" POST /v1/chat/completions "$(chat_body claude-3-5-haiku false 3)"
refused "bare US-only model with residency eu: 403 residency_not_allowed" 403 residency_not_allowed
call "$SOCK" POST /v1/chat/completions "$(chat_body openai/mock-premium false 3)"
refused "explicit HIGH model, tenant MEDIUM: 403 tier_not_allowed" 403 tier_not_allowed
call "$SOCK" POST /v1/chat/completions "$(chat_body mock-premium false 3)"
refused "bare HIGH model, tenant MEDIUM: 403 tier_not_allowed" 403 tier_not_allowed
n_refused=$(mock_requests_since "$since" | jq length)
call "$SOCK" POST /v1/chat/completions \
    "$(chat_body openai/gpt-4o-mini false 3 | jq -c '.max_tokens = 100000000 | .max_completion_tokens = 3')"
t_eq "explicit model within the tier (max_tokens at its bound, 100000000): 200" \
    "$CODE $(hdr X-BYOK-Provider)" "200 openai"
since2=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini false 3)" -H 'X-BYOK-Tier: FREE'
refused "explicit model, X-BYOK-Tier FREE below the model's LOW: 403 tier_not_allowed" 403 tier_not_allowed
call "$SOCK" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini false 3)" -H 'X-BYOK-Task: reasoning'
refused "explicit model, task outside allowed_task_types: 403 task_not_allowed" 403 task_not_allowed
call "$SOCK" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini false 3)" -H 'X-BYOK-Task: juggling'
refused "explicit model, unknown X-BYOK-Task: 400 invalid_hint" 400 invalid_hint
# About 100 tokens by the agent's estimate (characters / 4) against a 50-token window.
long=$(printf 'word %.0s' $(seq 80))
call "$SOCK" POST /v1/chat/completions "$(chat_body mock-tiny false 3 "$long")"
refused "bare model whose context window cannot hold the prompt: 400 context_length_exceeded" \
    400 context_length_exceeded
call "$SOCK" POST /v1/embeddings '{"model":"openai/gpt-4o-mini","input":"hello"}'
refused "chat model on /v1/embeddings: 400 model_not_supported" 400 model_not_supported
call "$SOCK" POST /v1/chat/completions "$(chat_body 'openai/my model' false 3)"
refused "model name with a space: 400 invalid_model" 400 invalid_model
# Token counts past PROVIDER_MAX_TOKENS (the catalog's bound on max_output_tokens) are refused
# at the edge: the router adds max_tokens to the prompt estimate, which overflowed before.
call "$SOCK" POST /v1/chat/completions \
    '{"model":"auto","max_tokens":9223372036854775807,"messages":[{"role":"user","content":"x"}]}'
t_eq "auto, max_tokens 9223372036854775807: 400 invalid_type naming max_tokens" \
    "$CODE $(echo "$BODY" | jq -r '"\(.error.code) \(.error.param)"' 2>/dev/null)" \
    "400 invalid_type max_tokens"
call "$SOCK" POST /v1/chat/completions \
    '{"model":"mock-tiny","max_completion_tokens":100000001,"messages":[{"role":"user","content":"x"}]}'
t_eq "max_completion_tokens one past 100000000: 400 invalid_type naming it" \
    "$CODE $(echo "$BODY" | jq -r '"\(.error.code) \(.error.param)"' 2>/dev/null)" \
    "400 invalid_type max_completion_tokens"
t_eq "nothing refused reached the provider" \
    "$n_refused $(mock_requests_since "$since2" | jq length)" "0 0"

call "$SOCK" GET /v1/models
t_eq "GET /v1/models: only what the tenant may use (no US provider, nothing above its tier)" \
    "$CODE $(echo "$BODY" | jq -r '[.data[].id] | "\(map(select(startswith("anthropic/") or . == "openai/mock-premium")) | length) \(index("openai/gpt-4o-mini") != null)"')" \
    "200 0 true"

# models.retrieve: the list's entry, or 404 (anthropic is outside the residency, mock-premium above the tier).
call "$SOCK" GET /v1/models
want=$(echo "$BODY" | jq -c '.data[] | select(.id == "openai/gpt-4o-mini")')
got=""
for id in openai/gpt-4o-mini openai%2Fgpt-4o-mini gpt-4o-mini; do
    call "$SOCK" GET "/v1/models/$id"
    got+="$CODE $(echo "$BODY" | jq -c . 2>/dev/null) | "
done
t_eq "GET /v1/models/{model}: a listed model, by provider/model, percent-encoded and bare" "$got" \
    "200 $want | 200 $want | 200 $want | "
got=""
for id in "anthropic/${PROVIDER_MODEL[anthropic]}" openai/mock-premium mock-premium openai/no-such-model \
    no-such-model nosuchprovider%2Fgpt-4o-mini; do
    call "$SOCK" GET "/v1/models/$id"
    got+="$CODE $(echo "$BODY" | jq -r .error.code 2>/dev/null) "
done
t_eq "GET /v1/models/{model}: a model the tenant may not use, or unknown: 404 model_not_found" "$got" \
    "$(printf '404 model_not_found %.0s' 1 2 3 4 5 6)"
got=""
for id in 'gpt%20x' 'gpt%00x' 'auto' "$(printf 'm%.0s' $(seq 200))"; do
    call "$SOCK" GET "/v1/models/$id"
    got+="$CODE $(echo "$BODY" | jq -r '.error.code + ":" + .error.param' 2>/dev/null) "
done
call "$SOCK" POST /v1/models/gpt-4o-mini '{}'
got+="$CODE $(hdr Allow) "
call "$SOCK" GET /metrics
got+=$(echo "$BODY" | grep -c '^byok_requests_total{route="/v1/models/{model}"')
t_eq "GET /v1/models/{model}: a malformed id is 400 invalid_model; POST is 405; one metrics label" "$got" \
    "$(printf '400 invalid_model:model %.0s' 1 2 3 4)405 GET 3"

# ---- key permissions (globex) ----
call "$GSOCK" POST /v1/chat/completions "$(chat_body auto false 3)"
t_eq "key permissions: auto chat passes the preferred provider's embedding-only key for one that permits chat" \
    "$CODE $(hdr X-BYOK-Provider)" "200 anthropic"
since3=$(mock_last_seq)
call "$GSOCK" POST /v1/chat/completions "$(chat_body auto true 3)"
t_eq "key permissions: a stream no key permits: 403 key_not_permitted naming what the request uses" \
    "$CODE $(echo "$BODY" | jq -r '"\(.error.code) \(.error.message | test("uses: chat streaming$"))"' 2>/dev/null)" \
    "403 key_not_permitted true"
call "$GSOCK" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini false 3)"
refused "key permissions: explicit chat model with an embedding-only key: 403 key_not_permitted" \
    403 key_not_permitted
n_refused3=$(mock_requests_since "$since3" | jq length)
call "$GSOCK" POST /v1/embeddings '{"model":"openai/text-embedding-3-small","input":"hello"}'
t_eq "key permissions: embeddings with the embedding-only key: 200" "$CODE $(hdr X-BYOK-Provider)" "200 openai"
t_eq "key permissions: nothing refused reached the provider" "$n_refused3" 0
call "$GSOCK" GET /v1/models
t_eq "key permissions: GET /v1/models lists only what each key permits" \
    "$CODE $(echo "$BODY" | jq -c '[.data[].id] | [(map(select(startswith("openai/"))) | sort), (map(select(startswith("anthropic/"))) | length > 0)]')" \
    '200 [["openai/text-embedding-3-small"],true]'

agent_stop_check "agent stops cleanly on SIGTERM, no sanitizer report"
canary_scan "canary: nowhere but the provider request" "${KEY[openai]}" "${KEY[anthropic]}" \
    "${GKEY[openai]}" "${GKEY[anthropic]}"
t_done
