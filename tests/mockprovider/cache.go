// SPDX-License-Identifier: MPL-2.0

package main

import (
	"fmt"
	"strconv"
)

// Prompt caching. Each request's cache hints are recorded (record.Cache) as
// the places they were found, so tests check where the agent put them:
//
//	anthropic: "tools[i]", "system[i]", "messages[i].content[j]" for each
//	           block with a cache_control, "@1h"/"@5m" appended when it has a
//	           ttl; a cache_control Anthropic does not take (on a message, or
//	           not {"type":"ephemeral"} with ttl 5m|1h) is "bad:<path>"
//	bedrock:   "system[i]", "messages[i].content[j]", "toolConfig.tools[i]"
//	           for each cachePoint block
//	openai, azure, others: "leak:<path>" for any cache_control left in
//	           messages, their parts or tools (OpenAI refuses the member)
//
// As Anthropic, more than 4 breakpoints, or a bad one, is a 400.
//
// The "cache" scenario answers as normal with prompt-cache usage: reads and
// writes on top of the uncached prompt (Anthropic's input_tokens, Bedrock's
// inputTokens, which count neither), and for Anthropic the writes split by
// TTL (cache_creation), mockCacheWrite1h of them for one hour when a hint
// asked for "1h".
const (
	mockCacheRead    = 1000
	mockCacheWrite   = 2000
	mockCacheWrite1h = 500
	maxCachePoints   = 4
)

// anthropicCacheControl checks one cache_control as Anthropic's API would.
func anthropicCacheControl(v interface{}) (ttl string, ok bool) {
	cc, isObj := v.(map[string]interface{})
	if !isObj || cc["type"] != "ephemeral" {
		return "", false
	}
	for k := range cc {
		if k != "type" && k != "ttl" {
			return "", false
		}
	}
	if t, has := cc["ttl"]; has {
		s, _ := t.(string)
		if s != "5m" && s != "1h" {
			return "", false
		}
		return s, true
	}
	return "", true
}

func cacheHints(style string, body map[string]interface{}) []string {
	out := []string{}
	list := func(v interface{}) []interface{} { l, _ := v.([]interface{}); return l }
	obj := func(v interface{}) map[string]interface{} { m, _ := v.(map[string]interface{}); return m }
	switch style {
	case "anthropic":
		add := func(path string, holder map[string]interface{}) {
			cc, has := holder["cache_control"]
			if !has {
				return
			}
			ttl, ok := anthropicCacheControl(cc)
			switch {
			case !ok:
				out = append(out, "bad:"+path)
			case ttl != "":
				out = append(out, path+"@"+ttl)
			default:
				out = append(out, path)
			}
		}
		for i, t := range list(body["tools"]) {
			add(fmt.Sprintf("tools[%d]", i), obj(t))
		}
		for i, b := range list(body["system"]) {
			add(fmt.Sprintf("system[%d]", i), obj(b))
		}
		for i, m := range list(body["messages"]) {
			if _, has := obj(m)["cache_control"]; has {
				out = append(out, fmt.Sprintf("bad:messages[%d]", i))
			}
			for j, b := range list(obj(m)["content"]) {
				add(fmt.Sprintf("messages[%d].content[%d]", i, j), obj(b))
			}
		}
	case "bedrock":
		points := func(prefix string, blocks []interface{}) {
			for i, b := range blocks {
				if _, has := obj(b)["cachePoint"]; has {
					out = append(out, prefix+"["+strconv.Itoa(i)+"]")
				}
			}
		}
		points("system", list(body["system"]))
		for i, m := range list(body["messages"]) {
			points(fmt.Sprintf("messages[%d].content", i), list(obj(m)["content"]))
		}
		points("toolConfig.tools", list(obj(body["toolConfig"])["tools"]))
	default:
		leak := func(path string, holder map[string]interface{}) {
			if _, has := holder["cache_control"]; has {
				out = append(out, "leak:"+path)
			}
		}
		for i, t := range list(body["tools"]) {
			leak(fmt.Sprintf("tools[%d]", i), obj(t))
		}
		for i, m := range list(body["messages"]) {
			leak(fmt.Sprintf("messages[%d]", i), obj(m))
			for j, p := range list(obj(m)["content"]) {
				leak(fmt.Sprintf("messages[%d].content[%d]", i, j), obj(p))
			}
		}
	}
	return out
}

// checkCacheHints records the hints and refuses what Anthropic refuses: false
// when the call was answered (400).
func (c *call) checkCacheHints() bool {
	hints := cacheHints(c.style, c.body)
	c.m.mu.Lock()
	c.rec.Cache = hints
	c.m.mu.Unlock()
	if c.style != "anthropic" {
		return true
	}
	for _, h := range hints {
		if len(h) > 4 && h[:4] == "bad:" {
			c.fail(400, "invalid_request_error", "", h[4:]+".cache_control: invalid cache control")
			return false
		}
		if len(h) > 3 && h[len(h)-3:] == "@1h" {
			c.cache1h = true
		}
	}
	if len(hints) > maxCachePoints {
		c.fail(400, "invalid_request_error", "", fmt.Sprintf(
			"A maximum of %d blocks with cache_control may be provided. Found %d.", maxCachePoints, len(hints)))
		return false
	}
	return true
}

// anthropicUsage is an Anthropic answer's usage (message_start's with output 1).
func (c *call) anthropicUsage(output int) map[string]interface{} {
	u := map[string]interface{}{"input_tokens": c.prompt, "output_tokens": output}
	if c.cacheUsage {
		w1h := 0
		if c.cache1h {
			w1h = mockCacheWrite1h
		}
		u["cache_read_input_tokens"] = mockCacheRead
		u["cache_creation_input_tokens"] = mockCacheWrite
		u["cache_creation"] = map[string]int{"ephemeral_5m_input_tokens": mockCacheWrite - w1h,
			"ephemeral_1h_input_tokens": w1h}
	}
	if c.webSearch {
		u["server_tool_use"] = serverToolUse()
	}
	return u
}
