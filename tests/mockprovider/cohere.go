// SPDX-License-Identifier: MPL-2.0

package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Cohere's native v2 API (https://docs.cohere.com/reference/chat,
// /reference/chat-stream, /reference/embed), as far as the agent's
// translation needs it: the request is checked the way Cohere refuses one
// (400 {"message": ...}), so that an OpenAI field the agent forwarded, or a
// message Cohere would not take, fails the e2e tests.

// cohereTemplateTokens is what tokens.input_tokens counts beyond the billed
// input: Cohere's own prompt template, which it does not bill. The agent must
// bill billed_units, so the two differ.
const cohereTemplateTokens = 7

// cohereOpenAIOnly are OpenAI request fields that Cohere's v2 API does not
// take under that name: the agent must rename them (top_p -> p, stop ->
// stop_sequences, top_k -> k) or leave them out.
var cohereOpenAIOnly = []string{"stream_options", "top_p", "top_k", "stop", "n", "user",
	"max_completion_tokens", "parallel_tool_calls", "metadata", "logit_bias", "input",
	"encoding_format", "dimensions"}

// checkCohere returns why Cohere would refuse the request ("" when it would not).
func checkCohere(kind string, body map[string]interface{}) string {
	for _, f := range cohereOpenAIOnly {
		if _, ok := body[f]; ok {
			return "invalid request: unknown field: parameter " + f + " is not a valid field"
		}
	}
	if kind == "embeddings" {
		texts, ok := body["texts"].([]interface{})
		if !ok || len(texts) == 0 || len(texts) > 96 {
			return "invalid request: texts must be an array of 1 to 96 strings"
		}
		for _, t := range texts {
			if _, ok := t.(string); !ok {
				return "invalid request: texts must be strings"
			}
		}
		if _, ok := body["input_type"].(string); !ok {
			return "invalid request: input_type is required for embed-english-v3.0 and later models"
		}
		if _, ok := body["embedding_types"].([]interface{}); !ok {
			return "invalid request: embedding_types is required"
		}
		return ""
	}
	if tc, ok := body["tool_choice"]; ok && tc != "REQUIRED" && tc != "NONE" {
		return "invalid request: tool_choice must be one of REQUIRED, NONE"
	}
	if rf, ok := body["response_format"].(map[string]interface{}); ok &&
		rf["type"] != "json_object" && rf["type"] != "text" {
		return "invalid request: response_format type must be text or json_object"
	}
	msgs, _ := body["messages"].([]interface{})
	for _, mv := range msgs {
		m, _ := mv.(map[string]interface{})
		switch m["role"] {
		case "system", "user":
			if m["content"] == nil {
				return "invalid request: message content is required"
			}
		case "assistant":
			if m["content"] == nil && m["tool_calls"] == nil {
				return "invalid request: an assistant message needs content or tool_calls"
			}
		case "tool":
			if id, _ := m["tool_call_id"].(string); id == "" || m["content"] == nil {
				return "invalid request: a tool message needs tool_call_id and content"
			}
		default:
			return "invalid request: role must be one of system, user, assistant, tool"
		}
	}
	if tools, ok := body["tools"].([]interface{}); ok {
		for _, tv := range tools {
			t, _ := tv.(map[string]interface{})
			fn, _ := t["function"].(map[string]interface{})
			if name, _ := fn["name"].(string); t["type"] != "function" || name == "" {
				return "invalid request: tools must be {type: function, function: {name, ...}}"
			}
		}
	}
	return ""
}

// cohereUsage is the usage of a Cohere answer: billed_units as the mock's
// deterministic counts, tokens with the unbilled template on top.
func (c *call) cohereUsage() map[string]interface{} {
	return map[string]interface{}{
		"billed_units": map[string]int{"input_tokens": c.prompt, "output_tokens": c.words},
		"tokens": map[string]int{"input_tokens": c.prompt + cohereTemplateTokens,
			"output_tokens": c.words}}
}

// cohereMessageEnd is the last event of a Cohere stream (usage unless nousage).
func (c *call) cohereMessageEnd() map[string]interface{} {
	d := map[string]interface{}{"finish_reason": "COMPLETE"}
	if c.usage {
		d["usage"] = c.cohereUsage()
	}
	return map[string]interface{}{"type": "message-end", "delta": d}
}

// cohereDelta is a content-delta event carrying text.
func cohereDelta(text string) map[string]interface{} {
	return map[string]interface{}{"type": "content-delta", "index": 0,
		"delta": map[string]interface{}{"message": map[string]interface{}{
			"content": map[string]string{"text": text}}}}
}

// cohereStream is the documented event sequence: message-start,
// content-start, a content-delta per word, content-end, message-end.
func (c *call) cohereStream(n int, interval time.Duration) {
	ev := []struct {
		name string
		v    interface{}
	}{
		{"message-start", map[string]interface{}{"id": c.id(), "type": "message-start",
			"delta": map[string]interface{}{"message": map[string]interface{}{"role": "assistant",
				"content": []interface{}{}, "tool_plan": "", "tool_calls": []interface{}{},
				"citations": []interface{}{}}}}},
		{"content-start", map[string]interface{}{"type": "content-start", "index": 0,
			"delta": map[string]interface{}{"message": map[string]interface{}{
				"content": map[string]string{"type": "text", "text": ""}}}}},
	}
	for _, e := range ev {
		if c.sse(e.name, e.v) != nil {
			return
		}
	}
	for i := 0; i < n; i++ {
		if c.pause(interval) != nil {
			return
		}
		if c.sse("content-delta", cohereDelta(piece(i))) != nil {
			return
		}
	}
	if n < c.words {
		return
	}
	if c.sse("content-end", map[string]interface{}{"type": "content-end", "index": 0}) != nil {
		return
	}
	c.sse("message-end", c.cohereMessageEnd())
}

// cohereStreamError ends a Cohere stream the way Cohere reports a failed
// generation: message-end with finish_reason ERROR and an error text, here
// echoing the request's credential.
func (c *call) cohereStreamError() {
	c.sse("message-end", map[string]interface{}{"type": "message-end",
		"delta": map[string]interface{}{"finish_reason": "ERROR",
			"error": "generation failed for token " + c.credential(), "usage": c.cohereUsage()}})
}

// cohereDoneTail is donetail's marker and tail for a Cohere stream: after
// message-end, a word and new usage no client should see.
func (c *call) cohereDoneTail() (marker, tail string) {
	late, _ := json.Marshal(cohereDelta(" LATE"))
	end, _ := json.Marshal(map[string]interface{}{"type": "message-end",
		"delta": map[string]interface{}{"finish_reason": "COMPLETE",
			"usage": map[string]interface{}{"billed_units": map[string]int{
				"input_tokens": 999, "output_tokens": 999}}}})
	return `"type":"message-end"}` + "\n\n",
		"event: content-delta\ndata: " + string(late) + "\n\nevent: message-end\ndata: " +
			strings.TrimSpace(string(end)) + "\n\n"
}

// cohereToolCalls: the "tools" scenario's calls for a Cohere request, one per
// tool (at most two; arguments {"city":"Paris"}, then {}); none when the last
// message is a tool result (the model then answers in text).
func (c *call) cohereToolCalls() []toolCall {
	msgs, _ := c.body["messages"].([]interface{})
	if len(msgs) > 0 {
		if last, _ := msgs[len(msgs)-1].(map[string]interface{}); last["role"] == "tool" {
			return nil
		}
	}
	tools, _ := c.body["tools"].([]interface{})
	var out []toolCall
	for i, t := range tools {
		if i == 2 {
			break
		}
		tm, _ := t.(map[string]interface{})
		fn, _ := tm["function"].(map[string]interface{})
		name, _ := fn["name"].(string)
		in := "{}"
		if i == 0 {
			in = `{"city":"Paris"}`
		}
		out = append(out, toolCall{fmt.Sprintf("%s_mock_%d_%d", name, c.rec.Seq, i), name, in})
	}
	return out
}

// cohereToolsAnswer: a tool_plan and one tool call per request tool,
// finish_reason TOOL_CALL; streamed as tool-plan-delta, then per call
// tool-call-start (empty arguments), two tool-call-delta fragments and
// tool-call-end, then message-end.
func (c *call) cohereToolsAnswer(calls []toolCall) {
	const plan = "I will check the weather."
	if !c.stream {
		var tcs []interface{}
		for _, tc := range calls {
			tcs = append(tcs, map[string]interface{}{"id": tc.id, "type": "function",
				"function": map[string]string{"name": tc.name, "arguments": tc.input}})
		}
		c.status = 200
		writeJSON(c.w, 200, map[string]interface{}{"id": c.id(), "finish_reason": "TOOL_CALL",
			"message": map[string]interface{}{"role": "assistant", "tool_plan": plan, "tool_calls": tcs},
			"usage":   c.cohereUsage()})
		return
	}
	c.startStream()
	type ev struct {
		name string
		v    interface{}
	}
	dm := func(m map[string]interface{}) map[string]interface{} {
		return map[string]interface{}{"message": m}
	}
	evs := []ev{
		{"message-start", map[string]interface{}{"id": c.id(), "type": "message-start",
			"delta": dm(map[string]interface{}{"role": "assistant"})}},
		{"tool-plan-delta", map[string]interface{}{"type": "tool-plan-delta",
			"delta": dm(map[string]interface{}{"tool_plan": plan})}},
	}
	for i, tc := range calls {
		half := len(tc.input) / 2
		delta := func(part string) ev {
			return ev{"tool-call-delta", map[string]interface{}{"type": "tool-call-delta", "index": i,
				"delta": dm(map[string]interface{}{"tool_calls": map[string]interface{}{
					"function": map[string]string{"arguments": part}}})}}
		}
		evs = append(evs,
			ev{"tool-call-start", map[string]interface{}{"type": "tool-call-start", "index": i,
				"delta": dm(map[string]interface{}{"tool_calls": map[string]interface{}{"id": tc.id,
					"type": "function", "function": map[string]string{"name": tc.name, "arguments": ""}}})}},
			delta(tc.input[:half]), delta(tc.input[half:]),
			ev{"tool-call-end", map[string]interface{}{"type": "tool-call-end", "index": i}})
	}
	evs = append(evs, ev{"message-end", map[string]interface{}{"type": "message-end",
		"delta": map[string]interface{}{"finish_reason": "TOOL_CALL", "usage": c.cohereUsage()}}})
	for _, e := range evs {
		if c.sse(e.name, e.v) != nil {
			return
		}
	}
}
