// SPDX-License-Identifier: MPL-2.0

package main

import (
	"encoding/json"
	"fmt"
	"regexp"
)

// Tool use, Anthropic style: the request shape the Messages API insists on,
// checked on every /messages request, and the "tools" scenario's answer.
// Reference: https://docs.anthropic.com/en/docs/build-with-claude/tool-use

// azureBeforeStreamOptions: an api-version older than 2024-09-01(-preview),
// which Azure answers 400 when the body has stream_options. Versions that do
// not start with a date (the v1 API's "preview", "latest") are newer.
var azureDate = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}`)

func azureBeforeStreamOptions(v string) bool {
	return azureDate.MatchString(v) && v[:10] < "2024-09-01"
}

func blocksOf(m map[string]interface{}) []map[string]interface{} {
	arr, _ := m["content"].([]interface{})
	var out []map[string]interface{}
	for _, b := range arr {
		if bm, ok := b.(map[string]interface{}); ok {
			out = append(out, bm)
		}
	}
	return out
}

// checkAnthropicTools returns what Anthropic would refuse in the request's
// tools, tool_choice and tool_use/tool_result blocks ("" when nothing): an
// OpenAI-shaped leftover (a "function" wrapper, a "tool" role, content null,
// arguments as a string), a tool without input_schema (but for server
// tools, which have a type and none), a tool_use not
// answered by a tool_result in the very next (user) message, a tool_result
// answering no tool_use of the message just before.
func checkAnthropicTools(body map[string]interface{}) string {
	if tv, ok := body["tools"]; ok {
		tools, isArr := tv.([]interface{})
		if !isArr {
			return "tools: Input should be a valid list"
		}
		for i, t := range tools {
			tm, _ := t.(map[string]interface{})
			if name, _ := tm["name"].(string); name == "" {
				return fmt.Sprintf("tools.%d.name: Field required", i)
			}
			// Server tools (web_search_20250305, web_fetch_...) are typed and have no schema.
			typ, _ := tm["type"].(string)
			if _, isObj := tm["input_schema"].(map[string]interface{}); !isObj && (typ == "" || typ == "custom") {
				return fmt.Sprintf("tools.%d.input_schema: Field required", i)
			}
			if _, ok := tm["function"]; ok {
				return fmt.Sprintf("tools.%d.function: Extra inputs are not permitted", i)
			}
		}
	}
	if tc, ok := body["tool_choice"]; ok {
		tcm, _ := tc.(map[string]interface{})
		switch tcm["type"] {
		case "auto", "any", "none":
		case "tool":
			if name, _ := tcm["name"].(string); name == "" {
				return "tool_choice.name: Field required"
			}
		default:
			return "tool_choice: Input tag does not match any of the expected tags: 'auto', 'any', 'tool', 'none'"
		}
		if _, ok := body["tools"]; !ok {
			return "tool_choice: tool_choice may only be specified while providing tools"
		}
	}
	msgs, _ := body["messages"].([]interface{})
	pending := map[string]bool{} // tool_use ids of the message before, to be answered now
	for i, mv := range msgs {
		m, _ := mv.(map[string]interface{})
		role, _ := m["role"].(string)
		if role != "user" && role != "assistant" {
			return fmt.Sprintf("messages.%d.role: Input should be 'user' or 'assistant'", i)
		}
		if _, isStr := m["content"].(string); !isStr {
			if _, isArr := m["content"].([]interface{}); !isArr {
				return fmt.Sprintf("messages.%d.content: Input should be a valid list", i)
			}
		}
		answered := map[string]bool{}
		uses := map[string]bool{}
		for j, b := range blocksOf(m) {
			switch b["type"] {
			case "tool_use":
				id, _ := b["id"].(string)
				name, _ := b["name"].(string)
				if role != "assistant" || id == "" || name == "" {
					return fmt.Sprintf("messages.%d.content.%d: tool_use needs an assistant message, an id and a name", i, j)
				}
				if _, isObj := b["input"].(map[string]interface{}); !isObj {
					return fmt.Sprintf("messages.%d.content.%d.input: Input should be a valid dictionary", i, j)
				}
				uses[id] = true
			case "tool_result":
				id, _ := b["tool_use_id"].(string)
				if role != "user" || !pending[id] {
					return fmt.Sprintf("messages.%d.content.%d: unexpected `tool_use_id` found in `tool_result` blocks: %s. Each `tool_result` block must have a corresponding `tool_use` block in the previous message.", i, j, id)
				}
				answered[id] = true
			}
		}
		for id := range pending {
			if !answered[id] {
				return fmt.Sprintf("messages.%d: `tool_use` ids were found without `tool_result` blocks immediately after: %s. Each `tool_use` block must have a corresponding `tool_result` block in the next message.", i-1, id)
			}
		}
		pending = uses
	}
	return ""
}

// toolCall is one tool_use block of the "tools" scenario's answer.
type toolCall struct {
	id, name string
	input    string // JSON object text
}

// toolCalls: one call per tool of the request (at most two), with input
// {"city":"Paris"} for the first and {} for the second; none when the last
// message carries tool results (the model then answers in text).
func (c *call) toolCalls() []toolCall {
	msgs, _ := c.body["messages"].([]interface{})
	if len(msgs) > 0 {
		last, _ := msgs[len(msgs)-1].(map[string]interface{})
		for _, b := range blocksOf(last) {
			if b["type"] == "tool_result" {
				return nil
			}
		}
	}
	tools, _ := c.body["tools"].([]interface{})
	var out []toolCall
	for i, t := range tools {
		if i == 2 {
			break
		}
		tm, _ := t.(map[string]interface{})
		name, _ := tm["name"].(string)
		in := "{}"
		if i == 0 {
			in = `{"city":"Paris"}`
		}
		out = append(out, toolCall{fmt.Sprintf("toolu_mock_%d_%d", c.rec.Seq, i), name, in})
	}
	return out
}

// toolsAnswer: "Let me check." and a tool_use block per call, stop_reason
// tool_use; streamed as the documented events (input in two input_json_delta
// fragments after an empty one). Without calls to make, the normal answer.
func (c *call) toolsAnswer() {
	if calls := c.cohereToolCalls(); c.style == "cohere" && c.kind == "chat" && len(calls) > 0 {
		c.cohereToolsAnswer(calls)
		return
	}
	if c.style == "vertex" {
		if calls := c.vertexToolCalls(); len(calls) > 0 {
			c.vertexToolsAnswer(calls)
			return
		}
	}
	calls := c.toolCalls()
	if c.style != "anthropic" || c.kind != "messages" || len(calls) == 0 {
		c.normal(c.m.o.streamInterval)
		return
	}
	const text = "Let me check."
	if !c.stream {
		content := []interface{}{map[string]string{"type": "text", "text": text}}
		for _, tc := range calls {
			content = append(content, map[string]interface{}{"type": "tool_use", "id": tc.id,
				"name": tc.name, "input": json.RawMessage(tc.input)})
		}
		b := c.chatBody(text)
		b["content"], b["stop_reason"] = content, "tool_use"
		c.status = 200
		writeJSON(c.w, 200, b)
		return
	}
	c.startStream()
	type ev struct {
		name string
		v    interface{}
	}
	evs := []ev{
		{"message_start", c.anthropicMessageStart()},
		{"content_block_start", textBlockStart},
		{"content_block_delta", map[string]interface{}{"type": "content_block_delta", "index": 0,
			"delta": map[string]string{"type": "text_delta", "text": text}}},
		{"content_block_stop", map[string]interface{}{"type": "content_block_stop", "index": 0}},
	}
	for i, tc := range calls {
		idx := i + 1
		delta := func(part string) ev {
			return ev{"content_block_delta", map[string]interface{}{"type": "content_block_delta",
				"index": idx, "delta": map[string]string{"type": "input_json_delta", "partial_json": part}}}
		}
		half := len(tc.input) / 2
		evs = append(evs,
			ev{"content_block_start", map[string]interface{}{"type": "content_block_start", "index": idx,
				"content_block": map[string]interface{}{"type": "tool_use", "id": tc.id, "name": tc.name,
					"input": map[string]interface{}{}}}},
			delta(""), ev{"ping", map[string]string{"type": "ping"}},
			delta(tc.input[:half]), delta(tc.input[half:]),
			ev{"content_block_stop", map[string]interface{}{"type": "content_block_stop", "index": idx}})
	}
	evs = append(evs,
		ev{"message_delta", map[string]interface{}{"type": "message_delta",
			"delta": map[string]interface{}{"stop_reason": "tool_use", "stop_sequence": nil},
			"usage": map[string]int{"output_tokens": c.words}}},
		ev{"message_stop", map[string]string{"type": "message_stop"}})
	for _, e := range evs {
		if c.sse(e.name, e.v) != nil {
			return
		}
	}
}
