// SPDX-License-Identifier: MPL-2.0

package main

// The Vertex AI style (express mode): Gemini's generateContent and
// streamGenerateContent?alt=sse on .../publishers/google/models/{model}, the
// key in x-goog-api-key. Shapes from
// https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/inference:
// a request {contents, systemInstruction, generationConfig}, an answer
// {candidates, usageMetadata, modelVersion, responseId}, errors
// {"error": {"code", "message", "status"}}. A stream's events are whole
// GenerateContentResponses; only the last carries finishReason and the token
// counts (the others' usageMetadata holds only trafficType), and nothing
// follows it: no [DONE].

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const vertexModels = "/publishers/google/models/"

// vertexMatch matches .../publishers/google/models/{model}:<method>; the model is the "deployment".
func vertexMatch(method string) func(string) (string, bool) {
	return func(p string) (string, bool) {
		i := strings.Index(p, vertexModels)
		if i < 0 || !strings.HasSuffix(p, ":"+method) {
			return "", false
		}
		m := strings.TrimSuffix(p[i+len(vertexModels):], ":"+method)
		if m == "" || strings.ContainsAny(m, "/:") {
			return "", false
		}
		return m, true
	}
}

// vertexOpenAIFields are OpenAI's request fields, which Vertex does not know:
// it refuses the whole request for any of them, so tests prove the agent
// translated rather than forwarded.
var vertexOpenAIFields = []string{"model", "messages", "max_tokens", "max_completion_tokens",
	"stream", "stream_options", "temperature", "top_p", "stop", "n", "user", "tools",
	"tool_choice", "response_format", "seed", "presence_penalty", "frequency_penalty"}

// vertexParseBody checks a GenerateContentRequest and takes the deterministic counts from it.
func (c *call) vertexParseBody() bool {
	c.model = c.deployment
	c.stream = strings.HasSuffix(c.r.URL.Path, ":streamGenerateContent")
	if c.stream && c.r.URL.Query().Get("alt") != "sse" {
		// Without alt=sse Vertex streams one JSON array, not events.
		c.fail(400, "INVALID_ARGUMENT", "", "the mock streams only with alt=sse")
		return false
	}
	// Vertex reports usage in every answer: nousage turns it off.
	c.usage = true
	for _, f := range vertexOpenAIFields {
		if _, ok := c.body[f]; ok {
			c.fail(400, "INVALID_ARGUMENT", "",
				fmt.Sprintf("Invalid JSON payload received. Unknown name %q: Cannot find field.", f))
			return false
		}
	}
	contents, ok := c.body["contents"].([]interface{})
	if !ok || len(contents) == 0 {
		c.fail(400, "INVALID_ARGUMENT", "", "contents is not specified")
		return false
	}
	for i, cv := range contents {
		cm, _ := cv.(map[string]interface{})
		role, _ := cm["role"].(string)
		if role != "user" && role != "model" {
			c.fail(400, "INVALID_ARGUMENT", "",
				fmt.Sprintf("Please use a valid role: user, model. (contents[%d])", i))
			return false
		}
		parts, ok := cm["parts"].([]interface{})
		if !ok || len(parts) == 0 {
			c.fail(400, "INVALID_ARGUMENT", "",
				fmt.Sprintf("contents[%d].parts must not be empty", i))
			return false
		}
		c.prompt += countWords(parts)
	}
	if si, ok := c.body["systemInstruction"]; ok {
		sm, _ := si.(map[string]interface{})
		parts, ok := sm["parts"].([]interface{})
		if !ok {
			c.fail(400, "INVALID_ARGUMENT", "", "systemInstruction.parts must be an array")
			return false
		}
		c.prompt += countWords(parts)
	}
	c.words = c.m.o.defaultWords
	if gv, ok := c.body["generationConfig"]; ok {
		gc, ok := gv.(map[string]interface{})
		if !ok {
			c.fail(400, "INVALID_ARGUMENT", "", "generationConfig must be an object")
			return false
		}
		if v, ok := gc["maxOutputTokens"]; ok {
			n, isNum := v.(json.Number)
			i, err := strconv.Atoi(string(n))
			if !isNum || err != nil || i < 1 {
				c.fail(400, "INVALID_ARGUMENT", "", "maxOutputTokens must be a positive integer")
				return false
			}
			c.words = i
		}
	}
	if c.words > c.m.o.maxWords {
		c.words = c.m.o.maxWords
	}
	return true
}

// vertexStatus is google.rpc.Code's name for an HTTP status, as Google's errors carry it.
func vertexStatus(status int) string {
	switch status {
	case 400:
		return "INVALID_ARGUMENT"
	case 401:
		return "UNAUTHENTICATED"
	case 403:
		return "PERMISSION_DENIED"
	case 404:
		return "NOT_FOUND"
	case 429:
		return "RESOURCE_EXHAUSTED"
	case 503:
		return "UNAVAILABLE"
	case 504:
		return "DEADLINE_EXCEEDED"
	}
	return "INTERNAL"
}

// vertexFail answers Google's error shape; an OpenAI-style call's type is ignored.
func (c *call) vertexFail(status int, msg string) {
	c.status = status
	writeJSON(c.w, status, map[string]interface{}{"error": map[string]interface{}{
		"code": status, "message": msg, "status": vertexStatus(status)}})
}

// vertexAuthFail: Google answers a key it does not know with 400 INVALID_ARGUMENT
// (reason API_KEY_INVALID); anything else (no credential, two of them, the
// 401 scenario's refusal of a good key) with 401 UNAUTHENTICATED. The key is
// never echoed.
func (c *call) vertexAuthFail() {
	if c.rec.Auth != "bad_key" {
		c.vertexFail(401, "Request is missing required authentication credential.")
		return
	}
	c.status = 400
	writeJSON(c.w, 400, map[string]interface{}{"error": map[string]interface{}{
		"code": 400, "message": "API key not valid. Please pass a valid API key.",
		"status": "INVALID_ARGUMENT",
		"details": []interface{}{map[string]interface{}{
			"@type":  "type.googleapis.com/google.rpc.ErrorInfo",
			"reason": "API_KEY_INVALID", "domain": "googleapis.com"}}}})
}

func (c *call) vertexUsage() map[string]interface{} {
	return map[string]interface{}{"promptTokenCount": c.prompt, "candidatesTokenCount": c.words,
		"totalTokenCount": c.prompt + c.words, "trafficType": "ON_DEMAND"}
}

// vertexResponse is one GenerateContentResponse: text, finishReason ("" for none), usage when set.
func (c *call) vertexResponse(text, finish string, usage bool) map[string]interface{} {
	cand := map[string]interface{}{"content": map[string]interface{}{"role": "model",
		"parts": []interface{}{map[string]string{"text": text}}}}
	if finish != "" {
		cand["finishReason"] = finish
	}
	r := map[string]interface{}{"candidates": []interface{}{cand}, "modelVersion": c.model,
		"createTime": time.Now().UTC().Format(time.RFC3339Nano),
		"responseId": fmt.Sprintf("vxmock%d", c.rec.Seq)}
	if usage && c.usage {
		r["usageMetadata"] = c.vertexUsage()
	} else {
		r["usageMetadata"] = map[string]string{"trafficType": "ON_DEMAND"}
	}
	return r
}

// vertexBody is the complete non-streamed answer.
func (c *call) vertexBody(text string) map[string]interface{} {
	return c.vertexResponse(text, "STOP", true)
}

// vertexStream streams the first n words, one per event; the last event (when
// n is all of them) has finishReason STOP and the token counts.
func (c *call) vertexStream(n int, interval time.Duration) {
	for i := 0; i < n; i++ {
		if i > 0 && c.pause(interval) != nil {
			return
		}
		last := n == c.words && i == n-1
		finish := ""
		if last {
			finish = "STOP"
		}
		if c.sse("", c.vertexResponse(piece(i), finish, last)) != nil {
			return
		}
	}
	if n == 0 && c.words == 0 {
		c.sse("", c.vertexResponse("", "STOP", true))
	}
}

// vertexKeyCount counts the credentials a Vertex request carries (header and ?key=).
func vertexKeyCount(r *http.Request) int {
	n := len(r.Header.Values("x-goog-api-key"))
	if r.URL.Query().Get("key") != "" {
		n++
	}
	return n
}
