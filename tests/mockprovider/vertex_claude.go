// SPDX-License-Identifier: MPL-2.0

package main

import "strings"

// Claude on Vertex AI, as the agent's /v1/messages calls it: POST
// …/publishers/anthropic/models/{model}:rawPredict and :streamRawPredict on
// a service-account key's regional path, its access token as a bearer token
// (an express-mode API key cannot call partner models: refused). The body is
// Anthropic's Messages body with "anthropic_version": "vertex-2023-10-16" and
// without "model" (the model is in the path); the answer is Anthropic's
// message or SSE stream, as the Anthropic style's.
// Reference: https://cloud.google.com/vertex-ai/generative-ai/docs/partner-models/claude/use-claude

const vertexClaudeModels = "/publishers/anthropic/models/"

// vertexClaudeMatch matches …/publishers/anthropic/models/{model}:<method>.
func vertexClaudeMatch(method string) func(string) (string, bool) {
	return func(p string) (string, bool) {
		i := strings.Index(p, vertexClaudeModels)
		if i < 0 || !strings.HasSuffix(p, ":"+method) {
			return "", false
		}
		m := strings.TrimSuffix(p[i+len(vertexClaudeModels):], ":"+method)
		if m == "" || strings.ContainsAny(m, "/:") {
			return "", false
		}
		return m, true
	}
}

// vertexParseClaude checks a rawPredict body for Claude and then reads it as
// the Anthropic style does; the call answers in Anthropic's shapes from here.
func (c *call) vertexParseClaude() bool {
	if c.r.Header.Get("x-goog-api-key") != "" {
		c.vertexFail(400, "Partner models are not available in express mode: use service-account credentials.")
		return false
	}
	if v, _ := c.body["anthropic_version"].(string); v != "vertex-2023-10-16" {
		c.vertexFail(400, "anthropic_version: vertex-2023-10-16 is required")
		return false
	}
	if _, ok := c.body["model"]; ok {
		c.vertexFail(400, "model: Extra inputs are not permitted")
		return false
	}
	if !strings.HasPrefix(c.deployment, "claude-") {
		c.vertexFail(404, "Publisher model not found.")
		return false
	}
	c.style, c.kind = "anthropic", "messages"
	c.stream = strings.HasSuffix(c.r.URL.Path, ":streamRawPredict")
	return c.parseBody()
}
