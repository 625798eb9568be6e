// SPDX-License-Identifier: MPL-2.0

package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Amazon Bedrock's Converse API, as the agent's "bedrock" adapter calls it:
// POST …/model/{modelId}/converse and …/converse-stream (and InvokeModel's
// …/invoke for the embedding models: bedrock_embed.go), a Bedrock API key as
// Authorization: Bearer or a Signature Version 4 made with IAM credentials
// (verified: sigv4.go), JSON errors {"message": ...} typed by the
// x-amzn-ErrorType header, and streams in AWS's binary event stream framing
// (application/vnd.amazon.eventstream), not SSE.
// References: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html,
// API_runtime_ConverseStream.html, and the event stream encoding of the
// Transcribe and Lex developer guides.

const bedrockStreamType = "application/vnd.amazon.eventstream"

// bedrockMatch matches …/model/{id}/<op>; the id (decoded: "%3A" is ":") is
// the call's model.
func bedrockMatch(op string) func(string) (string, bool) {
	return func(p string) (string, bool) {
		i := strings.LastIndex(p, "/model/")
		if i < 0 || !strings.HasSuffix(p, "/"+op) {
			return "", false
		}
		id := strings.TrimSuffix(p[i+len("/model/"):], "/"+op)
		if id == "" || strings.Contains(id, "/") {
			return "", false
		}
		return id, true
	}
}

// bedrockFields are the Converse request's top-level members; Bedrock refuses any other.
var bedrockFields = map[string]bool{"messages": true, "system": true, "inferenceConfig": true,
	"toolConfig": true, "guardrailConfig": true, "additionalModelRequestFields": true,
	"additionalModelResponseFieldPaths": true, "promptVariables": true, "requestMetadata": true,
	"performanceConfig": true}

// bedrockBlockKinds are the members a content block may have (exactly one).
var bedrockBlockKinds = map[string]bool{"text": true, "image": true, "document": true,
	"toolUse": true, "toolResult": true, "guardContent": true, "cachePoint": true,
	"reasoningContent": true, "video": true}

// parseBedrock checks a Converse body as Bedrock would (400 ValidationException
// for what is not Converse, such as OpenAI's fields) and takes the deterministic
// counts from it: the model from the path, words from inferenceConfig.maxTokens.
func (c *call) parseBedrock() bool {
	bad := func(msg string) bool {
		c.fail(400, "ValidationException", "", msg)
		return false
	}
	c.model = c.deployment
	c.stream = c.kind == "converse-stream"
	// Recorded as sent (the model id's ":" as %3A), so tests see the agent's encoding.
	c.m.mu.Lock()
	c.rec.Path = c.r.URL.EscapedPath()
	c.m.mu.Unlock()
	c.usage = true
	if (c.kind == "embeddings" || c.kind == "invoke-stream") && isBedrockClaude(c.model) {
		return c.parseBedrockClaude()
	}
	if c.kind == "invoke-stream" {
		c.bedrockFail(400, "The model does not support streaming through InvokeModelWithResponseStream.")
		return false
	}
	if c.kind == "embeddings" {
		return c.parseBedrockInvoke()
	}
	for k := range c.body {
		if !bedrockFields[k] {
			// Real Bedrock: "Malformed input request: extraneous key [max_tokens] is not permitted".
			return bad("Malformed input request: extraneous key [" + k + "] is not permitted")
		}
	}
	msgs, ok := c.body["messages"].([]interface{})
	if !ok || len(msgs) == 0 {
		return bad("The messages field must be a non-empty list.")
	}
	last := ""
	for i, mv := range msgs {
		m, _ := mv.(map[string]interface{})
		role, _ := m["role"].(string)
		if role != "user" && role != "assistant" {
			return bad("messages." + strconv.Itoa(i) + ".role must be user or assistant")
		}
		if role == last {
			return bad("A conversation must alternate between user and assistant roles.")
		}
		last = role
		blocks, ok := m["content"].([]interface{})
		if !ok {
			return bad("messages." + strconv.Itoa(i) + ".content must be a list of content blocks")
		}
		for _, bv := range blocks {
			b, _ := bv.(map[string]interface{})
			if len(b) != 1 {
				return bad("A content block must have exactly one member.")
			}
			for k, v := range b {
				if !bedrockBlockKinds[k] {
					return bad("Unknown content block member: " + k)
				}
				if t, isStr := v.(string); k == "text" && (!isStr || strings.TrimSpace(t) == "") {
					return bad("The text field in the ContentBlock object is blank.")
				}
			}
		}
		c.prompt += countWords(m["content"])
	}
	if sys, ok := c.body["system"]; ok {
		if _, isList := sys.([]interface{}); !isList {
			return bad("system must be a list of system content blocks")
		}
		c.prompt += countWords(sys)
	}
	c.words = c.m.o.defaultWords
	if ic, ok := c.body["inferenceConfig"].(map[string]interface{}); ok {
		if v, ok := ic["maxTokens"]; ok {
			n, isNum := v.(json.Number)
			i, err := n.Int64()
			if !isNum || err != nil || i < 1 {
				return bad("inferenceConfig.maxTokens must be a positive integer")
			}
			c.words = int(i)
		}
	}
	if c.words > c.m.o.maxWords {
		c.words = c.m.o.maxWords
	}
	return true
}

// bedrockFail is Bedrock's error: {"message": ...}, its type in x-amzn-ErrorType.
func (c *call) bedrockFail(status int, msg string) {
	typ := map[int]string{400: "ValidationException", 403: "AccessDeniedException",
		404: "ResourceNotFoundException", 405: "ValidationException", 413: "ValidationException",
		429: "ThrottlingException", 500: "InternalServerException",
		503: "ServiceUnavailableException"}[status]
	if typ == "" {
		typ = "InternalServerException"
	}
	c.w.Header().Set("x-amzn-ErrorType", typ+":http://internal.amazon.com/coral/com.amazon.bedrock/")
	c.status = status
	writeJSON(c.w, status, map[string]string{"message": msg})
}

// bedrockAuthFail: Bedrock answers a bad or missing API key 403 (never 401);
// the key is not echoed.
func (c *call) bedrockAuthFail() {
	// IAM credentials (SigV4): AWS's own words and types for each refusal.
	sig := map[string][2]string{
		"bad_signature": {"InvalidSignatureException", "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."},
		"bad_key":       {"UnrecognizedClientException", "The security token included in the request is invalid."},
		"bad_token":     {"UnrecognizedClientException", "The security token included in the request is invalid."},
		"expired":       {"InvalidSignatureException", "Signature expired: the request's X-Amz-Date is more than 15 minutes from the server's time."},
	}
	if strings.HasPrefix(c.r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ") {
		if e, ok := sig[c.rec.Auth]; ok {
			c.w.Header().Set("x-amzn-ErrorType", e[0]+":http://internal.amazon.com/coral/com.amazon.coral.service/")
			c.status = 403
			writeJSON(c.w, 403, map[string]string{"message": e[1]})
			return
		}
	}
	c.bedrockFail(403, "Authentication failed: Please make sure your API Key is valid.")
}

func (c *call) bedrockUsage() map[string]int {
	if c.cacheUsage {
		// inputTokens counts neither reads nor writes; totalTokens all of them.
		return map[string]int{"inputTokens": c.prompt, "outputTokens": c.words,
			"cacheReadInputTokens": mockCacheRead, "cacheWriteInputTokens": mockCacheWrite,
			"totalTokens": c.prompt + c.words + mockCacheRead + mockCacheWrite}
	}
	return map[string]int{"inputTokens": c.prompt, "outputTokens": c.words,
		"totalTokens": c.prompt + c.words}
}

// bedrockBody is a Converse answer.
func (c *call) bedrockBody(text string) map[string]interface{} {
	return map[string]interface{}{
		"output": map[string]interface{}{"message": map[string]interface{}{"role": "assistant",
			"content": []interface{}{map[string]string{"text": text}}}},
		"stopReason": "end_turn", "usage": c.bedrockUsage(),
		"metrics": map[string]int{"latencyMs": 1}}
}

// eventFrame is one event stream message: string headers, then payload,
// with both CRC32s (IEEE).
func eventFrame(headers [][2]string, payload []byte) []byte {
	var h bytes.Buffer
	for _, kv := range headers {
		h.WriteByte(byte(len(kv[0])))
		h.WriteString(kv[0])
		h.WriteByte(7) // string
		binary.Write(&h, binary.BigEndian, uint16(len(kv[1])))
		h.WriteString(kv[1])
	}
	total := 16 + h.Len() + len(payload)
	msg := make([]byte, 12, total)
	binary.BigEndian.PutUint32(msg[0:], uint32(total))
	binary.BigEndian.PutUint32(msg[4:], uint32(h.Len()))
	binary.BigEndian.PutUint32(msg[8:], crc32.ChecksumIEEE(msg[:8]))
	msg = append(msg, h.Bytes()...)
	msg = append(msg, payload...)
	return binary.BigEndian.AppendUint32(msg, crc32.ChecksumIEEE(msg))
}

// bedrockWrite writes and flushes raw event stream bytes, counting one event.
func (c *call) bedrockWrite(b []byte) error {
	if _, err := c.w.Write(b); err != nil {
		c.progress(false)
		return err
	}
	if f, ok := c.w.(http.Flusher); ok {
		f.Flush()
	}
	err := c.r.Context().Err()
	c.progress(err == nil)
	return err
}

// bedrockEvent is one event message. Its JSON carries a "p" member of padding, as
// Bedrock's events do (it hides the payload's length); clients ignore it.
func bedrockEvent(name string, v map[string]interface{}) []byte {
	v["p"] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"[:len(name)%26+4]
	j, _ := json.Marshal(v)
	return eventFrame([][2]string{{":event-type", name}, {":content-type", "application/json"},
		{":message-type", "event"}}, j)
}

// bedrockException is an exception message (payload {"message": msg}).
func bedrockException(typ, msg string) []byte {
	j, _ := json.Marshal(map[string]string{"message": msg})
	return eventFrame([][2]string{{":exception-type", typ}, {":content-type", "application/json"},
		{":message-type", "exception"}}, j)
}

// bedrockStream streams the first n words as ConverseStream events (the stream
// was started); n < c.words cuts it short (the caller then aborts).
func (c *call) bedrockStream(n int, interval time.Duration) {
	if c.bedrockWrite(bedrockEvent("messageStart", map[string]interface{}{"role": "assistant"})) != nil {
		return
	}
	for i := 0; i < n; i++ {
		if c.pause(interval) != nil {
			return
		}
		if c.bedrockWrite(bedrockEvent("contentBlockDelta", map[string]interface{}{
			"contentBlockIndex": 0, "delta": map[string]string{"text": piece(i)}})) != nil {
			return
		}
	}
	if n < c.words {
		return
	}
	meta := map[string]interface{}{"metrics": map[string]int{"latencyMs": 1}}
	if c.usage {
		meta["usage"] = c.bedrockUsage()
	}
	for _, ev := range [][]byte{
		bedrockEvent("contentBlockStop", map[string]interface{}{"contentBlockIndex": 0}),
		bedrockEvent("messageStop", map[string]interface{}{"stopReason": "end_turn"}),
		bedrockEvent("metadata", meta),
	} {
		if c.bedrockWrite(ev) != nil {
			return
		}
	}
}

// bedrockScenario runs the Bedrock form of a scenario whose generic form is
// another style's wire format; false when the generic one applies (normal,
// errors, stalls, cut, donecut, gzip, nousage, nostream ... go through the
// style hooks in mock.go).
func bedrockScenario(c *call, sc string) bool {
	if c.claude && sc != "streamerror" && sc != "error200" {
		return false // Anthropic's events in chunks: the generic scenarios apply
	}
	if c.kind == "embeddings" && sc != "error200" {
		return false // InvokeModel answers are not streams: the generic scenarios apply
	}
	switch sc {
	// streamerror: two words, then an exception message echoing the request's
	// credential (as streamerror does for the other styles).
	case "streamerror":
		if !c.stream {
			return false
		}
		c.streamWords(2, c.m.o.streamInterval)
		c.bedrockWrite(bedrockException("validationException",
			"The provided key "+c.credential()+" is not valid for this model."))
		return true
	// badevent: two words, then a contentBlockDelta event whose payload is not JSON.
	case "badevent":
		if !c.stream {
			return false
		}
		c.streamWords(2, c.m.o.streamInterval)
		c.bedrockWrite(eventFrame([][2]string{{":event-type", "contentBlockDelta"},
			{":message-type", "event"}}, []byte("{not json")))
		return true
	// malformed: streamed, two words, then a message whose CRC is wrong.
	case "malformed":
		if !c.stream {
			return false
		}
		c.streamWords(2, c.m.o.streamInterval)
		f := bedrockEvent("contentBlockDelta", map[string]interface{}{"contentBlockIndex": 0,
			"delta": map[string]string{"text": " w2"}})
		f[len(f)-1] ^= 0xFF
		c.bedrockWrite(f)
		return true
	// error200: a 200 whose body is Bedrock's error echoing the credential.
	case "error200":
		c.status = 200
		writeJSON(c.w, 200, map[string]string{"message": "The security token " + c.credential() +
			" included in the request is invalid."})
		return true
	// The scenarios about SSE framing (and tools, Anthropic-shaped) have no
	// Bedrock form: the normal answer.
	case "bursterror", "crstream", "error200lead", "streamrawerror", "streamerrortext",
		"streamerrorevent", "filtererror", "bigevent", "hugeline", "bigframe", "donetail":
		c.normal(c.m.o.streamInterval)
		return true
	case "tools":
		c.bedrockTools()
		return true
	// oversized: streamed, one contentBlockDelta event of -oversized-bytes (at
	// most the format's own 16 MiB limit plus one byte: refused from its prelude).
	case "oversized":
		if !c.stream {
			return false
		}
		n := c.m.o.oversizedBytes
		if n > 16<<20+1 {
			n = 16<<20 + 1
		}
		c.startStream()
		c.bedrockWrite(bedrockEvent("messageStart", map[string]interface{}{"role": "assistant"}))
		c.bedrockWrite(bedrockEvent("contentBlockDelta", map[string]interface{}{"contentBlockIndex": 0,
			"delta": map[string]string{"text": strings.Repeat("x", int(n))}}))
		return true
	}
	return false
}

// bedrockTools is the "tools" scenario: "Let me check." and a toolUse block
// calling the request's first tool with {"city":"Paris"}, stopReason
// tool_use; streamed as contentBlockStart (toolUse) and input fragments. A
// request without tools, or whose last message carries toolResult blocks, gets
// the normal answer.
func (c *call) bedrockTools() {
	tc, _ := c.body["toolConfig"].(map[string]interface{})
	tools, _ := tc["tools"].([]interface{})
	var name string
	if len(tools) > 0 {
		spec, _ := tools[0].(map[string]interface{})["toolSpec"].(map[string]interface{})
		name, _ = spec["name"].(string)
	}
	msgs, _ := c.body["messages"].([]interface{})
	last, _ := msgs[len(msgs)-1].(map[string]interface{})
	answered := false
	for _, b := range blocksOf(last) {
		if _, ok := b["toolResult"]; ok {
			answered = true
		}
	}
	if name == "" || answered {
		c.normal(c.m.o.streamInterval)
		return
	}
	id := "tooluse_mock_" + strconv.FormatInt(c.rec.Seq, 10)
	if !c.stream {
		c.status = 200
		writeJSON(c.w, 200, map[string]interface{}{
			"output": map[string]interface{}{"message": map[string]interface{}{"role": "assistant",
				"content": []interface{}{map[string]string{"text": "Let me check."},
					map[string]interface{}{"toolUse": map[string]interface{}{"toolUseId": id,
						"name": name, "input": map[string]string{"city": "Paris"}}}}}},
			"stopReason": "tool_use", "usage": c.bedrockUsage()})
		return
	}
	c.startStream()
	for _, ev := range [][]byte{
		bedrockEvent("messageStart", map[string]interface{}{"role": "assistant"}),
		bedrockEvent("contentBlockDelta", map[string]interface{}{"contentBlockIndex": 0,
			"delta": map[string]string{"text": "Let me check."}}),
		bedrockEvent("contentBlockStop", map[string]interface{}{"contentBlockIndex": 0}),
		bedrockEvent("contentBlockStart", map[string]interface{}{"contentBlockIndex": 1,
			"start": map[string]interface{}{"toolUse": map[string]string{"toolUseId": id, "name": name}}}),
		bedrockEvent("contentBlockDelta", map[string]interface{}{"contentBlockIndex": 1,
			"delta": map[string]interface{}{"toolUse": map[string]string{"input": `{"city":`}}}),
		bedrockEvent("contentBlockDelta", map[string]interface{}{"contentBlockIndex": 1,
			"delta": map[string]interface{}{"toolUse": map[string]string{"input": `"Paris"}`}}}),
		bedrockEvent("contentBlockStop", map[string]interface{}{"contentBlockIndex": 1}),
		bedrockEvent("messageStop", map[string]interface{}{"stopReason": "tool_use"}),
		bedrockEvent("metadata", map[string]interface{}{"usage": c.bedrockUsage(),
			"metrics": map[string]int{"latencyMs": 1}}),
	} {
		if c.bedrockWrite(ev) != nil {
			return
		}
	}
}
