// SPDX-License-Identifier: MPL-2.0

package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// Claude on Amazon Bedrock through InvokeModel, as the agent's /v1/messages
// calls it: POST …/model/{modelId}/invoke and …/invoke-with-response-stream
// for a Claude model id (anthropic.claude… or an inference profile
// <geo>.anthropic.claude…), the same host and auth (Bearer or SigV4, checked
// before this is reached) as Converse. The body is Anthropic's Messages body
// with "anthropic_version": "bedrock-2023-05-31" and without "model" or
// "stream" (Bedrock refuses an extraneous key); the answer is Anthropic's
// message, and a stream is the binary event stream whose "chunk" events carry
// {"bytes": base64 of one Anthropic event's JSON}, the last one (message_stop)
// with "amazon-bedrock-invocationMetrics". The body received is recorded as
// for every call, so that tests can check what the agent sent.
// References: https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-anthropic-claude-messages.html,
// https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_InvokeModelWithResponseStream.html

// bedrockClaudeVersion is the only anthropic_version Bedrock takes for Claude.
const bedrockClaudeVersion = "bedrock-2023-05-31"

// bedrockClaudeFields are the Messages body's members Bedrock takes (its
// request page); "model" and "stream" are not among them.
var bedrockClaudeFields = map[string]bool{"anthropic_version": true, "anthropic_beta": true,
	"max_tokens": true, "messages": true, "system": true, "temperature": true, "top_p": true,
	"top_k": true, "stop_sequences": true, "tools": true, "tool_choice": true, "thinking": true,
	"metadata": true}

// isBedrockClaude: a Claude model id or inference profile.
func isBedrockClaude(id string) bool {
	i := strings.Index(id, "anthropic.claude")
	return i == 0 || (i > 0 && i <= 9 && id[i-1] == '.' && !strings.Contains(id[:i-1], "."))
}

// parseBedrockClaude checks an InvokeModel body for Claude as Bedrock would
// (400 ValidationException) and takes the counts from it as the Anthropic
// style does: the prompt's words, max_tokens words of answer.
func (c *call) parseBedrockClaude() bool {
	bad := func(msg string) bool {
		c.fail(400, "ValidationException", "", msg)
		return false
	}
	c.stream = c.kind == "invoke-stream"
	c.kind = "messages"
	c.claude = true
	c.m.mu.Lock()
	c.rec.Kind = "bedrock-claude"
	c.m.mu.Unlock()
	for k := range c.body {
		if !bedrockClaudeFields[k] {
			return bad("Malformed input request: extraneous key [" + k + "] is not permitted")
		}
	}
	if v, _ := c.body["anthropic_version"].(string); v != bedrockClaudeVersion {
		return bad("Malformed input request: #/anthropic_version: " + bedrockClaudeVersion + " expected")
	}
	if b, ok := c.body["anthropic_beta"]; ok {
		list, isList := b.([]interface{})
		for _, e := range list {
			if _, isStr := e.(string); !isStr {
				isList = false
			}
		}
		if !isList {
			return bad("Malformed input request: #/anthropic_beta: expected type: JSONArray")
		}
	}
	msgs, ok := c.body["messages"].([]interface{})
	if !ok || len(msgs) == 0 {
		return bad("Malformed input request: #/messages: expected minimum item count: 1")
	}
	for _, mv := range msgs {
		mm, _ := mv.(map[string]interface{})
		c.prompt += countWords(mm["content"])
	}
	c.prompt += countWords(c.body["system"])
	n, isNum := c.body["max_tokens"].(json.Number)
	i, err := n.Int64()
	if !isNum || err != nil || i < 1 {
		return bad("Malformed input request: #/max_tokens: expected a positive integer")
	}
	c.words = int(i)
	if c.words > c.m.o.maxWords {
		c.words = c.m.o.maxWords
	}
	return true
}

// bedrockClaudeBody is InvokeModel's answer for Claude: Anthropic's message.
func (c *call) bedrockClaudeBody(text string) map[string]interface{} {
	return map[string]interface{}{"id": "msg_bdrk_mock_" + strconv.FormatInt(c.rec.Seq, 10),
		"type": "message", "role": "assistant", "model": c.model,
		"content":     []interface{}{map[string]string{"type": "text", "text": text}},
		"stop_reason": "end_turn", "stop_sequence": nil, "usage": c.anthropicUsage(c.words)}
}

// bedrockChunk is one chunk event carrying an Anthropic event (json.Marshal
// writes []byte as base64).
func bedrockChunk(ev map[string]interface{}) []byte {
	j, _ := json.Marshal(ev)
	return bedrockEvent("chunk", map[string]interface{}{"bytes": j})
}

// bedrockClaudeStream streams the first n words as Anthropic's events in
// chunk events (the stream was started); n < c.words cuts it short. Without
// c.usage (the nousage scenario) message_start and message_delta carry no
// usage and only the invocation metrics count the call.
func (c *call) bedrockClaudeStream(n int, interval time.Duration) {
	start := map[string]interface{}{"id": "msg_bdrk_mock_" + strconv.FormatInt(c.rec.Seq, 10),
		"type": "message", "role": "assistant", "model": c.model, "content": []interface{}{},
		"stop_reason": nil, "stop_sequence": nil}
	if c.usage {
		start["usage"] = c.anthropicUsage(1)
	}
	for _, ev := range []map[string]interface{}{
		{"type": "message_start", "message": start},
		{"type": "content_block_start", "index": 0,
			"content_block": map[string]string{"type": "text", "text": ""}},
	} {
		if c.bedrockWrite(bedrockChunk(ev)) != nil {
			return
		}
	}
	for i := 0; i < n; i++ {
		if c.pause(interval) != nil {
			return
		}
		if c.bedrockWrite(bedrockChunk(map[string]interface{}{"type": "content_block_delta",
			"index": 0, "delta": map[string]string{"type": "text_delta", "text": piece(i)}})) != nil {
			return
		}
	}
	if n < c.words {
		return
	}
	delta := map[string]interface{}{"type": "message_delta",
		"delta": map[string]interface{}{"stop_reason": "end_turn", "stop_sequence": nil}}
	if c.usage {
		delta["usage"] = map[string]int{"output_tokens": c.words}
	}
	for _, ev := range []map[string]interface{}{
		{"type": "content_block_stop", "index": 0},
		delta,
		{"type": "message_stop", "amazon-bedrock-invocationMetrics": map[string]int{
			"inputTokenCount": c.prompt, "outputTokenCount": c.words,
			"invocationLatency": 1, "firstByteLatency": 1}},
	} {
		if c.bedrockWrite(bedrockChunk(ev)) != nil {
			return
		}
	}
}
