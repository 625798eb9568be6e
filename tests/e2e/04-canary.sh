#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# Where a provider key may appear: only in the request the provider received.
# This run drives every error path that could leak one (provider 401 with a
# key the provider rejects, upstream 429/5xx/stall/cut/malformed/oversized for
# each provider style, Vault down, metrics, usage) and then scans everything:
# agent log and files, Vault stand-in log and storage, every response header
# and body. A core dump of the agent taken with gcore after the key cache
# expired (creds_ttl 2s) must not hold a key either.
. "$(dirname "$0")/lib.sh"

PROVIDERS=(openai azure anthropic)
FAULTS=(429 500 503 stall cut malformed oversized)
CASES=("provider 401: error to the app" "provider 401: the key in the reply is not echoed")
for p in "${PROVIDERS[@]}"; do
    for f in "${FAULTS[@]}"; do CASES+=("$p upstream $f: clear error"); done
    CASES+=("$p upstream 429 with cooldowns off: the provider's Retry-After passed on")
    CASES+=("$p stream cut after first byte: explicit error, no [DONE]")
    CASES+=("$p stream error event echoing the key: frames before it, the agent's own error, not the provider's text")
    CASES+=("$p upstream redirect: 502 provider_redirect, not followed")
done
for p in "${PROVIDERS[@]}"; do
    CASES+=("$p 200 whose body is an error echoing the key: 502, the agent's own error, not the provider's text")
done
for p in "${PROVIDERS[@]}"; do
    CASES+=("$p stream answered 200 with a JSON error echoing the key: 502, the agent's own error, nothing forwarded")
done
for p in openai azure; do
    CASES+=("$p stream answered 200 with a BOM, a blank line, then a JSON error: 502, nothing forwarded")
done
for p in "${PROVIDERS[@]}"; do
    for iu in true false; do
        CASES+=("$p stream answered with one JSON answer (stream ignored), include_usage $iu: an event stream built from it, counted once")
    done
done
for s in answer stream; do
    CASES+=("openai $s: 200 HTML quoting usage: 502 bad_provider_response")
    CASES+=("openai $s: 200 of two JSON objects (the second a usage block): 502 bad_provider_response")
done
for p in "${PROVIDERS[@]}"; do
    for s in answer stream; do
        CASES+=("$p $s compressed although identity was asked for: 502 upstream_bad_encoding naming the coding, logged, estimated")
    done
done
CASES+=("compressed answers: counted in byok_errors_total{code=\"upstream_bad_encoding\"}")
for p in openai azure; do
    CASES+=("$p stream: frames and an error event in one read, the agent holding the stream back: the error ends it at once")
    CASES+=("$p stream with CR-only line ends: every frame passed through")
    CASES+=("$p stream error as a top-level string echoing the key: the agent's own error event")
    CASES+=("$p stream error as a bare JSON line (no data:) echoing the key: frames before it, the agent's own error event")
    CASES+=("$p stream 'event: error' without an error member, then usage and [DONE]: the agent's own error event, logged")
    CASES+=("$p stream: a frame with a nested content-filter error, then an error event, in one read: frames before the error forwarded and counted")
    CASES+=("$p stream: a line past the SSE line limit: frames before it, then stream_event_too_large, logged")
    CASES+=("$p stream: a frame of comment lines past upstream.max_response_bytes: frames before it, then stream_event_too_large, logged")
    CASES+=("$p stream: one 7.5 MB event in many reads: passed through whole in linear time")
    CASES+=("$p stream with provider comments and id/retry lines: comments without their text, no id or retry, one x-byok-usage line (the agent's)")
done
CASES+=("anthropic stream: an event that is not JSON: frames before it, then stream_parse_error, logged")
for f in streamerrorevent streamerrortext; do
    CASES+=("anthropic stream ($f): an error frame of another shape echoing the key, then message_stop: the agent's own error event, no [DONE], logged")
done
CASES+=("metrics and usage endpoints answer" "usage endpoint: only the caller's tenant"
    "metrics: 404 on a listener without metrics: true" "core dump after key expiry: taken"
    "core dump after key expiry: holds agent memory" "core dump after key expiry: no key"
    "Vault down: clear 5xx error" "Vault down: agent alive" "Vault back: calls succeed again" "agent alive"
    "agent stops cleanly on SIGTERM, no sanitizer report"
    "canary: nowhere but the provider request")

lib_up && lib_require "$AGENT_BIN" || t_block_all

canary_keys acme "${PROVIDERS[@]}"
# A key the provider will refuse: stored in Vault, not in the mock's list.
KEY_REJECTED=$(lib_canary)
vault_api PUT byok/tenants/rejected/keys/openai/production \
    "$(K=$KEY_REJECTED jq -n '{key_value: env.K}')" "$ADMIN_TOKEN" >/dev/null
vault_api PUT byok/config '{"creds_ttl":"2s"}' "$ADMIN_TOKEN" >/dev/null
[ "$VAULT_CODE" -lt 300 ] || t_diag "config creds_ttl=2s: HTTP $VAULT_CODE"

SOCK=$AGENT_DIR/acme.sock
# Each fault is asked of the same key back to back: no Retry-After cooldown
# (it would answer the call after a 429 without reaching the mock; 07 tests it).
agent_config "$(jq -n --arg d "$AGENT_DIR" '[
    {path: ($d + "/acme.sock"), mode: "0660", tenant: "acme", app: "canary", metrics: true},
    {path: ($d + "/rejected.sock"), mode: "0660", tenant: "rejected", app: "canary"}]')" \
    '.keycache.max_ttl_s = 2 | .upstream.first_byte_timeout_ms = 2000 | .upstream.retry_after_max_s = 0'
agent_start || t_block_all

# is_error_shape: the last body is OpenAI's error object.
is_error_shape() { echo "$BODY" | jq -e '.error.message | type == "string" and length > 0' >/dev/null 2>&1; }

call "$AGENT_DIR/rejected.sock" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini)"
if [[ $CODE =~ ^(401|403|502)$ ]] && is_error_shape; then t_ok "provider 401: error to the app"; else
    t_fail "provider 401: error to the app" "HTTP $CODE body ${BODY:0:200}"
fi
if [[ $BODY$HDRS != *"${KEY_REJECTED:10}"* ]]; then t_ok "provider 401: the key in the reply is not echoed"; else
    t_fail "provider 401: the key in the reply is not echoed" "reply holds the rejected key"
fi

# fault_ok FAULT: the status classes an app may see for each upstream fault
# once the agent's one candidate failed (no other provider to fail over to).
fault_ok() {
    case $1 in
    429) [[ $CODE =~ ^(429|502|503)$ ]] ;;
    500 | 503) [[ $CODE =~ ^(502|503)$ ]] ;;
    stall) [[ $CODE =~ ^(502|504)$ ]] ;;
    cut | malformed | oversized) [[ $CODE =~ ^(502)$ ]] ;;
    *) false ;;
    esac
}

for p in "${PROVIDERS[@]}"; do
    for f in "${FAULTS[@]}"; do
        since=$(mock_last_seq)
        call "$SOCK" POST /v1/chat/completions "$(chat_body "$p/mock-$f" false 4)"
        n=$(mock_requests_since "$since" | jq length)
        if fault_ok "$f" && is_error_shape && [ "$n" -ge 1 ]; then
            t_ok "$p upstream $f: clear error"
        else
            t_fail "$p upstream $f: clear error" "HTTP $CODE, mock saw $n requests, body ${BODY:0:200}"
        fi
        # The mock's 429 says Retry-After: 1; the next fault's request reaches it all the same.
        [ "$f" = 429 ] && t_eq "$p upstream 429 with cooldowns off: the provider's Retry-After passed on" \
            "$CODE $(hdr Retry-After)" "429 1"
    done
    call "$SOCK" POST /v1/chat/completions "$(chat_body "$p/mock-cut" true 8)" -N
    # The mock sends 4 of 8 words and resets: the app must see them end in an error event.
    if [ "$CODE" = 200 ] && [[ $BODY == *w0* ]] && ! grep -qx 'data: \[DONE\]' <<<"$BODY" &&
        grep -q '"error"' <<<"$BODY"; then
        t_ok "$p stream cut after first byte: explicit error, no [DONE]"
    else
        t_fail "$p stream cut after first byte: explicit error, no [DONE]" "HTTP $CODE body ${BODY:0:300}"
    fi
    # The mock streams 2 words, then an error event whose message holds the request's key.
    c="$p stream error event echoing the key: frames before it, the agent's own error, not the provider's text"
    call "$SOCK" POST /v1/chat/completions "$(chat_body "$p/mock-streamerror" true 8)" -N
    if [ "$CODE" = 200 ] && [[ $BODY == *w1* ]] && ! grep -qx 'data: \[DONE\]' <<<"$BODY" &&
        [[ $BODY == *'"code":"provider_stream_error"'* ]] && [[ $BODY != *"API key provided"* ]] &&
        [[ $BODY != *"invalid x-api-key"* ]] && [[ $BODY != *"${KEY[$p]}"* ]]; then
        t_ok "$c"
    else
        t_fail "$c" "HTTP $CODE body ${BODY:0:400}"
    fi
    since=$(mock_last_seq)
    call "$SOCK" POST /v1/chat/completions "$(chat_body "$p/mock-302" false 4)"
    t_eq "$p upstream redirect: 502 provider_redirect, not followed" \
        "$CODE $(echo "$BODY" | jq -r .error.code 2>/dev/null) $(mock_requests_since "$since" | jq length)" \
        "502 provider_redirect 1"
done
# Some gateways answer 200 with the provider's error, whose text echoes the key: the app gets
# a 502 of the agent's own (before, OpenAI and Azure styles forwarded the body as it was).
for p in "${PROVIDERS[@]}"; do
    c="$p 200 whose body is an error echoing the key: 502, the agent's own error, not the provider's text"
    mock_ctl POST /_mock/scenario '{"scenario":"error200","count":1}' >/dev/null
    call "$SOCK" POST /v1/chat/completions "$(chat_body "$p/${PROVIDER_MODEL[$p]}" false 4)"
    if [ "$CODE" = 502 ] && is_error_shape && [[ $BODY != *"API key provided"* ]] &&
        [[ $BODY != *"invalid x-api-key"* ]] && [[ $BODY != *"${KEY[$p]}"* ]]; then
        t_ok "$c"
    else
        t_fail "$c" "HTTP $CODE, code $(echo "$BODY" | jq -r .error.code 2>/dev/null)"
    fi
done
# The same JSON to a stream request, ending in a blank line: passthrough took its line for an SSE
# frame and forwarded it (key included) to the app, then stream_truncated. Anthropic's error
# object was a 502 bad_provider_response: it is the provider's error too.
for p in "${PROVIDERS[@]}"; do
    c="$p stream answered 200 with a JSON error echoing the key: 502, the agent's own error, nothing forwarded"
    mock_ctl POST /_mock/scenario '{"scenario":"error200","count":1}' >/dev/null
    call "$SOCK" POST /v1/chat/completions "$(chat_body "$p/${PROVIDER_MODEL[$p]}" true 4)" -N -m 10
    if [ "$CODE" = 502 ] && [ "$(echo "$BODY" | jq -r .error.code 2>/dev/null)" = provider_error ] &&
        [[ $BODY != *"API key provided"* ]] && [[ $BODY != *"invalid x-api-key"* ]] &&
        [[ $BODY != *"${KEY[$p]}"* ]]; then
        t_ok "$c"
    else
        t_fail "$c" "HTTP $CODE, code $(echo "$BODY" | jq -r .error.code 2>/dev/null)"
    fi
done
# The same under text/event-stream after a BOM and a blank line read on their own: the JSON is
# recognised at its first byte that is not blank (before, the blank read started the app's stream).
for p in openai azure; do
    c="$p stream answered 200 with a BOM, a blank line, then a JSON error: 502, nothing forwarded"
    mock_ctl POST /_mock/scenario '{"scenario":"error200lead","count":1}' >/dev/null
    call "$SOCK" POST /v1/chat/completions "$(chat_body "$p/${PROVIDER_MODEL[$p]}" true 4)" -N -m 10
    if [ "$CODE" = 502 ] && [ "$(echo "$BODY" | jq -r .error.code 2>/dev/null)" = provider_error ] &&
        [[ $BODY != *"API key provided"* ]] && [[ $BODY != *"${KEY[$p]}"* ]]; then
        t_ok "$c"
    else
        t_fail "$c" "HTTP $CODE, code $(echo "$BODY" | jq -r .error.code 2>/dev/null), body ${BODY:0:200}"
    fi
done
# A stream request answered with the whole answer as one JSON document (a server that ignores
# "stream"; Anthropic's answer is a Messages object): the app gets the stream it asked for, built
# from the answer as a real stream through the agent looks (chunks, the usage chunk when the app
# asked for it, [DONE], the closing x-byok-usage comment), counted once with the usage the
# provider reported (4 words). Before, a 502 bad_provider_response.
usage_of() {
    call "$SOCK" GET /v1/byok/usage ""
    jq -c --arg p "$1" '.by_provider[$p] // {} | [.requests // 0, .prompt_tokens // 0, .completion_tokens // 0, .cost_usd // 0]' <<<"$BODY"
}
for p in "${PROVIDERS[@]}"; do
    for iu in true false; do
        c="$p stream answered with one JSON answer (stream ignored), include_usage $iu: an event stream built from it, counted once"
        before=$(usage_of "$p")
        body=$(chat_body "$p/${PROVIDER_MODEL[$p]}" true 4)
        [ "$iu" = true ] || body=$(jq -c 'del(.stream_options)' <<<"$body")
        mock_ctl POST /_mock/scenario '{"scenario":"nostream","count":1}' >/dev/null
        call "$SOCK" POST /v1/chat/completions "$body" -N -m 10
        code=$CODE sse=$BODY
        heads="$(hdr Content-Type) $(hdr X-BYOK-Provider) $(hdr X-BYOK-Model) $([ -n "$(hdr X-BYOK-Request-Id)" ] && echo id)"
        chunks=$(sed -n 's/^data: //p' <<<"$sse" | grep -v '^\[DONE\]$' | jq -cs . 2>/dev/null)
        shape=$(jq -r '[length,
            all(.[]; .object == "chat.completion.chunk" and (.id | type) == "string" and .model != null),
            (map(select(.choices[0].delta.role == "assistant")) | length),
            (map(.choices[0].finish_reason // empty) | join(",")),
            (map(select(.choices == [])) | map(.usage.completion_tokens | tostring) | join(","))] | join(" ")' \
            <<<"${chunks:-null}" 2>/dev/null)
        last=$(sed -n 's/^data: //p' <<<"$sse" | tail -1)
        comment=$(sed -n 's/^: x-byok-usage //p' <<<"$sse" | jq -r '"\(.completion_tokens) \(.estimated) \(.cost_usd)"' 2>/dev/null)
        sleep 0.2
        logged=$(grep '"@message":"request"' "$AGENT_LOG" | tail -1 |
            jq -r '"\(.status) \(.error) \(.completion_tokens) \(.usage_estimated)"')
        after=$(usage_of "$p")
        # requests, prompt and completion tokens added; the cost added is the catalog's price of them
        delta=$(jq -rn --argjson a "$after" --argjson b "$before" '"\($a[0] - $b[0]) \($a[1] - $b[1]) \($a[2] - $b[2])"')
        dcost=$(jq -rn --argjson a "$after" --argjson b "$before" '$a[3] - $b[3]')
        want_cost=$(cost_of "$p" "$(cut -d' ' -f2 <<<"$delta")" 4)
        usage_chunk=$([ "$iu" = true ] && echo 4)
        if [ "$code" = 200 ] && [ "$heads" = "text/event-stream $p ${PROVIDER_MODEL[$p]} id" ] &&
            [ "$(sse_content <<<"$sse")" = "$(words 4)" ] &&
            [ "$shape" = "$([ "$iu" = true ] && echo 3 || echo 2) true 1 stop $usage_chunk" ] &&
            [ "$last" = "[DONE]" ] && [ "${comment% *}" = "4 false" ] &&
            [ "$logged" = "200 null 4 null" ] && [[ $delta =~ ^1\ [1-9][0-9]*\ 4$ ]] &&
            awk -v a="$dcost" -v b="$want_cost" -v c="${comment##* }" \
                'BEGIN { exit !(a > 0 && a - b < 1e-12 && b - a < 1e-12 && a - c < 1e-12 && c - a < 1e-12) }' &&
            [[ $sse != *"${KEY[$p]}"* ]]; then
            t_ok "$c"
        else
            t_fail "$c" "HTTP $code headers '$heads' shape '$shape' last '$last' comment '$comment' logged '$logged' usage +'$delta' cost +$dcost (want $want_cost) body ${sse:0:400}"
        fi
    done
done
# Neither is an answer to stream either: the stream request gets the same 502.
for s in answer stream; do
    st=$([ $s = stream ] && echo true || echo false)
    call "$SOCK" POST /v1/chat/completions "$(chat_body "openai/mock-htmlusage" $st 4)" -N -m 10
    t_eq "openai $s: 200 HTML quoting usage: 502 bad_provider_response" \
        "$CODE $(echo "$BODY" | jq -r .error.code 2>/dev/null)" "502 bad_provider_response"
    call "$SOCK" POST /v1/chat/completions "$(chat_body "openai/mock-concatjson" $st 4)" -N -m 10
    t_eq "openai $s: 200 of two JSON objects (the second a usage block): 502 bad_provider_response" \
        "$CODE $(echo "$BODY" | jq -r .error.code 2>/dev/null)" "502 bad_provider_response"
done
# The mock gzips its answer (Content-Encoding: gzip) whatever the request asked for; the agent
# asks for identity and decodes nothing: a 502 of its own, before any byte reaches the app.
for p in "${PROVIDERS[@]}"; do
    for s in answer stream; do
        c="$p $s compressed although identity was asked for: 502 upstream_bad_encoding naming the coding, logged, estimated"
        since=$(mock_last_seq)
        call "$SOCK" POST /v1/chat/completions "$(chat_body "$p/mock-gzip" "$([ $s = stream ] && echo true || echo false)" 4)" -N -m 10
        ae=$(mock_requests_since "$since" | jq -r '(.[0].headers["Accept-Encoding"] // []) | join(",")')
        sleep 0.2
        logged=$(grep '"@message":"request"' "$AGENT_LOG" | grep '"model":"mock-gzip"' | tail -1 |
            jq -r '"\(.status) \(.error) \(.usage_estimated)"')
        if [ "$CODE" = 502 ] && [ "$(jq -r .error.code <<<"$BODY")" = upstream_bad_encoding ] &&
            [ "$(jq -r .error.message <<<"$BODY")" = "the provider replied with Content-Encoding: gzip, which was not requested" ] &&
            [ "$ae" = identity ] && [ "$logged" = "502 upstream_bad_encoding true" ]; then
            t_ok "$c"
        else
            t_fail "$c" "HTTP $CODE, Accept-Encoding sent '$ae', logged '$logged', body ${BODY:0:300}"
        fi
    done
done
call "$SOCK" GET /metrics ""
t_eq "compressed answers: counted in byok_errors_total{code=\"upstream_bad_encoding\"}" \
    "$(sed -n 's/^byok_errors_total{code="upstream_bad_encoding"} //p' "$LIB_TMP/last.body")" "6"
for p in openai azure; do
    # The agent sends the first frame alone and holds the rest of curl's read:
    # the error event comes back inside the resume. Bounded by -m 10 (the
    # provider idle timeout is 60 s): the stream must end on the error itself.
    c="$p stream: frames and an error event in one read, the agent holding the stream back: the error ends it at once"
    call "$SOCK" POST /v1/chat/completions "$(chat_body "$p/mock-bursterror" true 8)" -N -m 10
    if [ "$CODE" = 200 ] && [ "$(echo "$BODY" | sse_content)" = "w0 w1" ] &&
        [[ $BODY == *'"code":"provider_stream_error"'* ]] && [[ $BODY != *"had an error"* ]]; then
        t_ok "$c"
    else
        t_fail "$c" "HTTP $CODE body ${BODY:0:300}"
    fi
    call "$SOCK" POST /v1/chat/completions "$(chat_body "$p/mock-crstream" true 6)" -N -m 10
    t_eq "$p stream with CR-only line ends: every frame passed through" \
        "$CODE $(printf '%s' "$BODY" | tr '\r' '\n' | sse_content) $(printf '%s' "$BODY" | tr '\r' '\n' | grep -c '^data: \[DONE\]')" \
        "200 $(words 6) 1"
    # Error events in the shapes other servers use: each must end the stream with the agent's own
    # event, never the provider's text (it echoes the key), never [DONE].
    for f in streamerrortext streamerrorevent; do
        [ $f = streamerrortext ] &&
            c="$p stream error as a top-level string echoing the key: the agent's own error event" ||
            c="$p stream 'event: error' without an error member, then usage and [DONE]: the agent's own error event, logged"
        call "$SOCK" POST /v1/chat/completions "$(chat_body "$p/mock-$f" true 8)" -N -m 10
        sleep 0.3 # the request's log line is written at the end of the loop turn
        logged=$(grep '"@message":"request"' "$AGENT_LOG" | grep "\"model\":\"mock-$f\"" | tail -1 |
            jq -r '"\(.status) \(.error)"')
        if [ "$CODE" = 200 ] && [ "$(echo "$BODY" | sse_content)" = "w0 w1" ] &&
            ! grep -qx 'data: \[DONE\]' <<<"$BODY" && [[ $BODY == *'"code":"provider_stream_error"'* ]] &&
            [[ $BODY != *"failed for key"* ]] && [[ $BODY != *"${KEY[$p]}"* ]] &&
            [ "$logged" = "200 provider_stream_error" ]; then
            t_ok "$c"
        else
            t_fail "$c" "HTTP $CODE logged '$logged' body ${BODY:0:400}"
        fi
    done
    # The provider's error as a bare JSON line mid-stream: SSE would ignore it as an unknown
    # field, and passthrough forwarded it (key included); it now ends the stream.
    c="$p stream error as a bare JSON line (no data:) echoing the key: frames before it, the agent's own error event"
    mock_ctl POST /_mock/scenario '{"scenario":"streamrawerror","count":1}' >/dev/null
    call "$SOCK" POST /v1/chat/completions "$(chat_body "$p/${PROVIDER_MODEL[$p]}" true 8)" -N -m 10
    if [ "$CODE" = 200 ] && [ "$(echo "$BODY" | sse_content)" = "w0 w1" ] &&
        ! grep -qx 'data: \[DONE\]' <<<"$BODY" && [[ $BODY == *'"code":"stream_parse_error"'* ]] &&
        [[ $BODY != *"API key provided"* ]] && [[ $BODY != *"${KEY[$p]}"* ]]; then
        t_ok "$c"
    else
        t_fail "$c" "HTTP $CODE, content '$(echo "$BODY" | sse_content)', key echoed: $([[ $BODY == *"${KEY[$p]}"* ]] && echo yes || echo no)"
    fi
    # A legitimate frame holding "error" (Azure content_filter_results) before the provider's
    # error event, all in one read: the frames before the error event reach the app, and the
    # estimated completion counts exactly the frames it received (role, w0, w1).
    c="$p stream: a frame with a nested content-filter error, then an error event, in one read: frames before the error forwarded and counted"
    call "$SOCK" POST /v1/chat/completions "$(chat_body "$p/mock-filtererror" true 8)" -N -m 10
    frames=$(grep -c '^data: {"choices"' <<<"$BODY")
    counted=$(sed -n 's/^: x-byok-usage //p' <<<"$BODY" | jq -r '"\(.completion_tokens) \(.estimated)"' 2>/dev/null)
    if [ "$CODE" = 200 ] && [ "$(echo "$BODY" | sse_content)" = "w0 w1" ] && [ "$frames" = 3 ] &&
        [[ $BODY == *content_filter_error* ]] && [[ $BODY == *'"code":"provider_stream_error"'* ]] &&
        [[ $BODY != *"had an error"* ]] && [ "$counted" = "3 true" ]; then
        t_ok "$c"
    else
        t_fail "$c" "HTTP $CODE frames $frames counted '$counted' body ${BODY:0:600}"
    fi
    for f in hugeline:stream_event_too_large:"$p stream: a line past the SSE line limit: frames before it, then stream_event_too_large, logged" \
        bigframe:stream_event_too_large:"$p stream: a frame of comment lines past upstream.max_response_bytes: frames before it, then stream_event_too_large, logged"; do
        m=${f%%:*}; rest=${f#*:}; want=${rest%%:*}; c=${rest#*:}
        call "$SOCK" POST /v1/chat/completions "$(chat_body "$p/mock-$m" true 8)" -N -m 10
        sleep 0.3
        logged=$(grep '"@message":"request"' "$AGENT_LOG" | grep "\"model\":\"mock-$m\"" | tail -1 |
            jq -r '"\(.status) \(.error)"')
        if [ "$CODE" = 200 ] && [ "$(echo "$BODY" | sse_content)" = "w0 w1" ] &&
            [[ $BODY == *"\"code\":\"$want\""* ]] && [[ $BODY != *yyyyyyyy* ]] &&
            [ "$logged" = "200 $want" ]; then
            t_ok "$c"
        else
            t_fail "$c" "HTTP $CODE logged '$logged' body ${BODY:0:400}"
        fi
    done
    # One 7.5 MB event that curl hands over in ~16 KB reads: before, every read rescanned the
    # whole held event for its end (quadratic, seconds of CPU); now the parser's frame position
    # is used. Agent CPU (utime+stime, clock ticks) for the call is bounded well below that.
    c="$p stream: one 7.5 MB event in many reads: passed through whole in linear time"
    cpu0=$(awk '{print $14+$15}' "/proc/$AGENT_PID/stat")
    call "$SOCK" POST /v1/chat/completions "$(chat_body "$p/mock-bigevent" true 1)" -N -m 60
    cpu1=$(awk '{print $14+$15}' "/proc/$AGENT_PID/stat")
    ticks=$((cpu1 - cpu0)) hz=$(getconf CLK_TCK)
    if [ "$CODE" = 200 ] && [ "${#BODY}" -gt 7500000 ] &&
        [ "$(echo "$BODY" | grep -v '^data: xxxx' | sse_content)" = "w0" ] &&
        grep -qx 'data: \[DONE\]' <<<"$BODY" && [ "$ticks" -lt "$hz" ]; then
        t_ok "$c"
    else
        t_fail "$c" "HTTP $CODE ${#BODY} bytes, agent CPU $ticks ticks (limit $hz) body ${BODY:0:200}"
    fi
done
for p in openai azure; do
    c="$p stream with provider comments and id/retry lines: comments without their text, no id or retry, one x-byok-usage line (the agent's)"
    call "$SOCK" POST /v1/chat/completions "$(chat_body "$p/mock-streamnoise" true 4)" -N -m 10
    if [ "$CODE" = 200 ] && [ "$(echo "$BODY" | sse_content)" = "$(words 4)" ] &&
        [ "$(grep -c '^data: \[DONE\]' <<<"$BODY")" = 1 ] && [ "$(grep -c 'x-byok-usage' <<<"$BODY")" = 1 ] &&
        [ "$(tail -2 <<<"$BODY" | grep -c '^: x-byok-usage {"')" = 1 ] && ! grep -q spoofed <<<"$BODY" &&
        ! grep -q -e '^id' -e '^retry' <<<"$BODY" && [ "$(grep -cx ':' <<<"$BODY")" = 2 ] &&
        [[ $BODY != *"${KEY[$p]}"* ]]; then
        t_ok "$c"
    else
        t_fail "$c" "HTTP $CODE body ${BODY:0:600}"
    fi
done
c="anthropic stream: an event that is not JSON: frames before it, then stream_parse_error, logged"
call "$SOCK" POST /v1/chat/completions "$(chat_body "anthropic/mock-badevent" true 8)" -N -m 10
sleep 0.3
logged=$(grep '"@message":"request"' "$AGENT_LOG" | grep '"model":"mock-badevent"' | tail -1 |
    jq -r '"\(.status) \(.error)"')
if [ "$CODE" = 200 ] && [ "$(echo "$BODY" | sse_content)" = "w0 w1" ] &&
    [[ $BODY == *'"code":"stream_parse_error"'* ]] && [ "$logged" = "200 stream_parse_error" ]; then
    t_ok "$c"
else
    t_fail "$c" "HTTP $CODE logged '$logged' body ${BODY:0:400}"
fi
# Anthropic error frames in other shapes ("event: error" with another type, a top-level error
# without a type): they end the translated stream too, the provider's message_stop after them
# is not read (it would have made a clean end with [DONE]).
for f in streamerrorevent streamerrortext; do
    c="anthropic stream ($f): an error frame of another shape echoing the key, then message_stop: the agent's own error event, no [DONE], logged"
    call "$SOCK" POST /v1/chat/completions "$(chat_body "anthropic/mock-$f" true 8)" -N -m 10
    sleep 0.3
    logged=$(grep '"@message":"request"' "$AGENT_LOG" | grep "\"model\":\"mock-$f\"" | tail -1 |
        jq -r '"\(.status) \(.error)"')
    if [ "$CODE" = 200 ] && [ "$(echo "$BODY" | sse_content)" = "w0 w1" ] &&
        ! grep -qx 'data: \[DONE\]' <<<"$BODY" && [[ $BODY == *'"code":"provider_stream_error"'* ]] &&
        [[ $BODY != *"failed for key"* ]] && [[ $BODY != *"${KEY[anthropic]}"* ]] &&
        [ "$logged" = "200 provider_stream_error" ]; then
        t_ok "$c"
    else
        t_fail "$c" "HTTP $CODE logged '$logged' body ${BODY:0:400}"
    fi
done

call "$SOCK" GET /metrics ""
m=$CODE
call "$SOCK" GET /v1/byok/usage ""
t_eq "metrics and usage endpoints answer" "$m $CODE" "200 200"
t_eq "usage endpoint: only the caller's tenant" "$(echo "$BODY" | jq -r .tenant 2>/dev/null)" "acme"
# /metrics shows every tenant's counters: only on listeners configured with metrics: true.
call "$AGENT_DIR/rejected.sock" GET /metrics ""
t_eq "metrics: 404 on a listener without metrics: true" "$CODE" "404"

# One good call per provider loads every key into the cache; then it must expire.
for p in "${PROVIDERS[@]}"; do call "$SOCK" POST /v1/chat/completions "$(chat_body "$p/mock-normal")"; done
sleep 5 # creds_ttl 2s and keycache.max_ttl_s 2: every key is past its expiry
agent_core_check "core dump after key expiry" "$AGENT_DIR/rejected.sock" "${KEY[@]}" "$KEY_REJECTED"
kill -CONT "$AGENT_PID" 2>/dev/null

# Vault down: the key expired, so the agent must ask Vault, which is gone.
lib_stop "$VAULT_PID"
call "$SOCK" POST /v1/chat/completions "$(chat_body openai/mock-normal)"
if [[ $CODE =~ ^(502|503|504)$ ]] && is_error_shape; then t_ok "Vault down: clear 5xx error"; else
    t_fail "Vault down: clear 5xx error" "HTTP $CODE body ${BODY:0:200}"
fi
t_check "Vault down: agent alive" kill -0 "$AGENT_PID"
call "$SOCK" GET /metrics ""

# Vault back on the same address with the same storage (keys, KEK): the stand-in
# keeps tokens in memory, so policies and tokens are made again and the new
# agent token lands in the token file, which the agent re-reads. A real Vault
# in dev mode keeps nothing (in-memory storage): the catalog overrides and the
# tenant's key are written again too.
vault_back() {
    vault_start && vault_setup || return 1
    [ "$BYOK_VAULT" = real ] || return 0
    providers_point_at_mock && key_put acme openai "${KEY[openai]}"
}
if vault_back; then
    recovered() {
        call "$SOCK" POST /v1/chat/completions "$(chat_body openai/mock-normal)"
        [ "$CODE" = 200 ]
    }
    if lib_wait_for 30 recovered; then t_ok "Vault back: calls succeed again"; else
        t_fail "Vault back: calls succeed again" "last HTTP $CODE body ${BODY:0:200}"
    fi
else
    t_fail "Vault back: calls succeed again" "Vault did not restart: $LIB_BLOCKED_REASON"
fi

t_check "agent alive" kill -0 "$AGENT_PID"
agent_stop_check "agent stops cleanly on SIGTERM, no sanitizer report"
canary_scan "canary: nowhere but the provider request" "${KEY[@]}" "$KEY_REJECTED"
t_done
[ "$T_FAILED" -eq 0 ]
