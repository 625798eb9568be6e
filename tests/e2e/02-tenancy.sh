#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# Tenant isolation. Two tenants, alpha and beta, each with its own OpenAI key.
# Matrix over both binding modes: sockets bound to a tenant (alpha.sock,
# beta.sock) and a socket that maps the caller's SO_PEERCRED uid (peer.sock:
# uid 0 -> alpha, uid 65534 -> beta, gid 12345 -> beta), callers run as those
# uids and gids with setpriv. A listener's owner, group and mode are applied.
# The provider must receive exactly the caller's tenant key, whatever the caller
# claims in headers or query; an unmapped uid gets 403 and reaches no provider.
# The matrix runs twice so the second round is served from the agent's key cache.
. "$(dirname "$0")/lib.sh"

OTHER_UID=$(getent passwd nobody | cut -d: -f3)
UNMAPPED_UID=4242 # no passwd entry needed: setpriv takes numbers
MAPPED_GID=12345  # mapped by gid only

# name | socket | uid | expected tenant ("-" = refused with 403) | extra curl args
MATRIX=(
    "bound alpha, root|alpha.sock|0|alpha|"
    "bound alpha, uid nobody|alpha.sock|$OTHER_UID|alpha|"
    "bound alpha, claims beta by header|alpha.sock|0|alpha|-H X-BYOK-Tenant:beta"
    "bound alpha, claims beta by query|alpha.sock|0|alpha|"
    "bound beta, root|beta.sock|0|beta|"
    "bound beta, claims alpha by header|beta.sock|$OTHER_UID|beta|-H X-BYOK-Tenant:alpha"
    "peercred uid 0 -> alpha|peer.sock|0|alpha|"
    "peercred uid nobody -> beta|peer.sock|$OTHER_UID|beta|"
    "peercred uid nobody, claims alpha by header|peer.sock|$OTHER_UID|beta|-H X-BYOK-Tenant:alpha"
    "peercred uid 0, claims beta by header|peer.sock|0|alpha|-H X-BYOK-Tenant:beta"
    "peercred unmapped uid -> 403|peer.sock|$UNMAPPED_UID|-|"
    "unmapped uid with tenant header -> 403|peer.sock|$UNMAPPED_UID|-|-H X-BYOK-Tenant:alpha"
    "peercred gid $MAPPED_GID, uid unmapped -> beta|peer.sock|$UNMAPPED_UID:$MAPPED_GID|beta|"
)
CASES=()
for round in 1 2; do
    for row in "${MATRIX[@]}"; do CASES+=("round $round: ${row%%|*}"); done
done
CASES+=("listener owner, group and mode applied" "tenant without a key for the provider: refused, nothing sent"
    "403 body is an OpenAI-shaped error" "agent alive" "agent stops cleanly on SIGTERM, no sanitizer report"
    "canary: nowhere but the provider request")

lib_up && lib_require "$AGENT_BIN" || t_block_all

declare -A KEY
for t in alpha beta; do
    KEY[$t]=$(lib_canary)
    key_put "$t" openai "${KEY[$t]}" || { LIB_BLOCKED_REASON="key write failed"; t_block_all; }
done
KEY_GAMMA_ANTHROPIC=$(lib_canary)
key_put gamma anthropic "$KEY_GAMMA_ANTHROPIC"

agent_config "$(jq -n --arg d "$AGENT_DIR" --argjson u "$OTHER_UID" '[
    {path: ($d + "/alpha.sock"), mode: "0666", tenant: "alpha", app: "a"},
    {path: ($d + "/beta.sock"), mode: "0666", tenant: "beta", app: "b"},
    {path: ($d + "/gamma.sock"), mode: "0660", tenant: "gamma", app: "g"},
    {path: ($d + "/peer.sock"), mode: "0666",
     peers: [{uid: 0, tenant: "alpha", app: "root"}, {uid: $u, tenant: "beta", app: "nobody"},
             {gid: '"$MAPPED_GID"', tenant: "beta", app: "bygid"}]},
    {path: ($d + "/owned.sock"), mode: "0640", owner: "nobody", group: "nogroup", tenant: "alpha", app: "o"}]')"
agent_start || t_block_all

BODY_JSON=$(chat_body openai/gpt-4o-mini false 3 "hello tenant")
for round in 1 2; do
    for row in "${MATRIX[@]}"; do
        IFS='|' read -r name sock uid want extra <<<"$row"
        path=/v1/chat/completions
        [[ $name == *"by query"* ]] && path="$path?tenant=beta"
        since=$(mock_last_seq)
        # shellcheck disable=SC2086
        call_as "$uid" "$AGENT_DIR/$sock" POST "$path" "$BODY_JSON" $extra
        reqs=$(mock_requests_since "$since")
        n=$(echo "$reqs" | jq length)
        got=$(echo "$reqs" | jq -r '.[0].headers.Authorization[0] // "" | sub("^Bearer "; "")')
        if [ "$want" = - ]; then
            if [ "$CODE" = 403 ] && [ "$n" = 0 ]; then
                t_ok "round $round: $name"
            else
                t_fail "round $round: $name" "HTTP $CODE, mock saw $n requests (want 403 and none)"
            fi
            continue
        fi
        other=alpha
        [ "$want" = alpha ] && other=beta
        if [ "$CODE" = 200 ] && [ "$n" = 1 ] && [ "$got" == "${KEY[$want]}" ]; then
            t_ok "round $round: $name"
        elif [ "$got" == "${KEY[$other]}" ]; then
            t_fail "round $round: $name" "the provider received tenant $other's key"
        else
            t_fail "round $round: $name" "HTTP $CODE, mock saw $n requests, key matched neither tenant"
        fi
    done
done

t_eq "listener owner, group and mode applied" "$(stat -c '%U %G %a' "$AGENT_DIR/owned.sock")" "nobody nogroup 640"

# gamma has only an Anthropic key: asking for OpenAI must not borrow anyone's key.
since=$(mock_last_seq)
call "$AGENT_DIR/gamma.sock" POST /v1/chat/completions "$BODY_JSON"
n=$(mock_requests_since "$since" | jq length)
if [ "$CODE" != 200 ] && [ "$CODE" -ge 400 ] && [ "$n" = 0 ]; then
    t_ok "tenant without a key for the provider: refused, nothing sent"
else
    t_fail "tenant without a key for the provider: refused, nothing sent" "HTTP $CODE, mock saw $n requests"
fi

call_as "$UNMAPPED_UID" "$AGENT_DIR/peer.sock" POST /v1/chat/completions "$BODY_JSON"
t_match "403 body is an OpenAI-shaped error" \
    "$CODE $(echo "$BODY" | jq -r '(.error.message | length > 0 | tostring) + " " + (.error.type | type)' 2>/dev/null)" \
    "^403 true string$"

t_check "agent alive" kill -0 "$AGENT_PID"
agent_stop_check "agent stops cleanly on SIGTERM, no sanitizer report"
canary_scan "canary: nowhere but the provider request" "${KEY[@]}" "$KEY_GAMMA_ANTHROPIC"
t_done
[ "$T_FAILED" -eq 0 ]
