#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# Real clients on the agent's socket, used the way an app would use them:
# curl --unix-socket; Python httpx with its UDS transport speaking the OpenAI
# request/response shape (Debian's python3-httpx; the openai Python package is
# not packaged); and, when it was installed under build/npm (`npm install
# --prefix build/npm openai undici`; nothing is downloaded here), the official
# `openai` npm package over an undici Agent with socketPath. Each client sends
# its own placeholder API key, as SDKs insist on one: the provider must get the
# tenant's key, never the app's.
. "$(dirname "$0")/lib.sh"

NPM_DIR=$BYOK_ROOT/build/npm/node_modules
CASES=("curl: chat" "curl: streamed chat" "curl: app's Authorization not forwarded"
    "python httpx uds: chat" "python httpx uds: streamed chat, frames in order"
    "python httpx uds: embeddings" "python httpx uds: error shape on unknown model"
    "node openai sdk: chat" "node openai sdk: streamed chat"
    "agent alive" "agent stops cleanly on SIGTERM, no sanitizer report"
    "canary: nowhere but the provider request")

lib_up && lib_require "$AGENT_BIN" || t_block_all
K=$(lib_canary)
key_put acme openai "$K"
SOCK=$AGENT_DIR/app.sock
agent_config "[{\"path\": \"$SOCK\", \"mode\": \"0660\", \"tenant\": \"acme\", \"app\": \"clients\"}]"
agent_start || t_block_all

# ---- curl ----
since=$(mock_last_seq)
call "$SOCK" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini false 4 "hi from curl")" \
    -H "Authorization: Bearer app-placeholder-key"
t_eq "curl: chat" "$CODE $(echo "$BODY" | jq -r '.choices[0].message.content' 2>/dev/null)" "200 $(words 4)"
# Compared in jq so that a failure never prints the key.
auths=$(mock_requests_since "$since" | T="Bearer $K" jq -r \
    '[.[].headers.Authorization[0] | if . == env.T then "tenant-key" elif . == "Bearer app-placeholder-key" then "app-key" else "other" end] | join(",")')
t_eq "curl: app's Authorization not forwarded" "$auths" "tenant-key"
call "$SOCK" POST /v1/chat/completions "$(chat_body openai/gpt-4o-mini true 6 "hi")" -N
t_eq "curl: streamed chat" "$CODE $(echo "$BODY" | sse_content)" "200 $(words 6)"

# ---- Python httpx over the Unix socket ----
PYOUT=$LIB_TMP/py.json
SOCK=$SOCK timeout 60 "$PY" - >"$PYOUT" 2>"$LIB_TMP/py.err" <<'EOF'
import json, os
import httpx

out = {}
transport = httpx.HTTPTransport(uds=os.environ["SOCK"])
c = httpx.Client(transport=transport, base_url="http://localhost/v1", timeout=30,
                 headers={"Authorization": "Bearer app-placeholder-key"})

def section(name, fn):
    # One failing section must not hide the others' results.
    try:
        out[name] = fn()
    except Exception as ex:
        out[name] = ["exception", repr(ex)[:200]]

def chat():
    r = c.post("/chat/completions", json={"model": "openai/gpt-4o-mini", "max_tokens": 3,
               "messages": [{"role": "user", "content": "hello from python"}]})
    j = r.json()
    return [r.status_code, j["choices"][0]["message"]["content"], j["usage"]["prompt_tokens"],
            j["usage"]["completion_tokens"]]

def sse_events(resp):
    # SSE framing as the openai SDK does it: events end at a blank line, over
    # raw bytes (a chunk boundary may fall anywhere).
    buf = b""
    for chunk in resp.iter_bytes():
        buf += chunk
        while b"\n\n" in buf:
            ev, buf = buf.split(b"\n\n", 1)
            yield ev.decode()

def stream():
    frames, done = [], False
    with c.stream("POST", "/chat/completions", json={"model": "openai/gpt-4o-mini", "stream": True,
                  "max_tokens": 40, "messages": [{"role": "user", "content": "stream please"}]}) as r:
        status = r.status_code
        for ev in sse_events(r):
            lines = [l[6:] for l in ev.split("\n") if l.startswith("data: ")]
            if not lines:
                continue  # comment-only events (": ..."), as SSE readers skip them
            data = "".join(lines)
            if data == "[DONE]":
                done = True
                continue
            ch = json.loads(data).get("choices") or []
            if ch and ch[0].get("delta", {}).get("content"):
                frames.append(ch[0]["delta"]["content"].strip())
    return [status, done, frames == ["w%d" % i for i in range(40)], len(frames)]

def emb():
    r = c.post("/embeddings", json={"model": "openai/text-embedding-3-small", "input": "a b c d"})
    j = r.json()
    return [r.status_code, len(j["data"][0]["embedding"]), j["usage"]["prompt_tokens"]]

def err():
    r = c.post("/chat/completions", json={"model": "openai/no-such-model",
               "messages": [{"role": "user", "content": "x"}]})
    if "error" not in r.json():
        return [r.status_code, r.text[:200]]
    e = r.json()["error"]
    return [r.status_code, isinstance(e.get("message"), str) and len(e["message"]) > 0,
            isinstance(e.get("type"), str)]

section("chat", chat)
section("stream", stream)
section("emb", emb)
section("err", err)
print(json.dumps(out))
EOF
t_diag "python: $(head -c 300 "$LIB_TMP/py.err")"
cat "$PYOUT" >>"$LIB_RESP_LOG"
t_eq "python httpx uds: chat" "$(jq -c .chat "$PYOUT" 2>/dev/null)" '[200,"w0 w1 w2",3,3]'
t_eq "python httpx uds: streamed chat, frames in order" "$(jq -c .stream "$PYOUT" 2>/dev/null)" '[200,true,true,40]'
t_eq "python httpx uds: embeddings" "$(jq -c .emb "$PYOUT" 2>/dev/null)" '[200,8,4]'
t_match "python httpx uds: error shape on unknown model" "$(jq -c .err "$PYOUT" 2>/dev/null)" '^\[4[0-9][0-9],true,true\]$'

# ---- the openai npm package over undici's socketPath ----
if [ -d "$NPM_DIR/openai" ] && [ -d "$NPM_DIR/undici" ]; then
    NODEOUT=$LIB_TMP/node.json
    SOCK=$SOCK NM=$NPM_DIR timeout 60 node - >"$NODEOUT" 2>"$LIB_TMP/node.err" <<'EOF'
const NM = process.env.NM;
const undici = require(NM + "/undici");
const OpenAIMod = require(NM + "/openai");
const OpenAI = OpenAIMod.default || OpenAIMod.OpenAI || OpenAIMod;
const dispatcher = new undici.Agent({ connect: { socketPath: process.env.SOCK } });
const client = new OpenAI({
  apiKey: "app-placeholder-key", baseURL: "http://localhost/v1", maxRetries: 0,
  fetch: (url, init) => undici.fetch(url, { ...init, dispatcher }),
});
(async () => {
  const out = {};
  const r = await client.chat.completions.create({
    model: "openai/gpt-4o-mini", max_tokens: 2, messages: [{ role: "user", content: "hi node" }] });
  out.chat = [r.choices[0].message.content, r.usage.prompt_tokens, r.usage.completion_tokens];
  const s = await client.chat.completions.create({
    model: "openai/gpt-4o-mini", max_tokens: 12, stream: true,
    stream_options: { include_usage: true }, messages: [{ role: "user", content: "stream" }] });
  let text = "", usage = null;
  for await (const ch of s) {
    if (ch.choices && ch.choices[0] && ch.choices[0].delta.content) text += ch.choices[0].delta.content;
    if (ch.usage) usage = ch.usage.completion_tokens;
  }
  out.stream = [text, usage];
  console.log(JSON.stringify(out));
})().catch((e) => { console.log(JSON.stringify({ error: String(e && e.message) })); });
EOF
    t_diag "node: $(head -c 300 "$LIB_TMP/node.err")"
    cat "$NODEOUT" >>"$LIB_RESP_LOG"
    t_eq "node openai sdk: chat" "$(jq -c .chat "$NODEOUT" 2>/dev/null)" '["w0 w1",2,2]'
    t_eq "node openai sdk: streamed chat" "$(jq -c .stream "$NODEOUT" 2>/dev/null)" "[\"$(words 12)\",12]"
else
    t_skip "node openai sdk: chat" "openai/undici not installed under build/npm"
    t_skip "node openai sdk: streamed chat" "openai/undici not installed under build/npm"
fi

t_check "agent alive" kill -0 "$AGENT_PID"
agent_stop_check "agent stops cleanly on SIGTERM, no sanitizer report"
canary_scan "canary: nowhere but the provider request" "$K"
t_done
[ "$T_FAILED" -eq 0 ]
