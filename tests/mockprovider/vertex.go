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
	"regexp"
	"sort"
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
	"stream", "stream_options", "temperature", "top_p", "stop", "n", "user",
	"tool_choice", "parallel_tool_calls", "functions", "response_format", "seed",
	"presence_penalty", "frequency_penalty"}

// vertexParseBody checks a GenerateContentRequest and takes the deterministic counts from it.
func (c *call) vertexParseBody() bool {
	c.model = c.deployment
	if c.kind == "embeddings" {
		return c.vertexParsePredict()
	}
	if c.kind == "claude" {
		return c.vertexParseClaude()
	}
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
	if why := vertexCheckTools(c.body); why != "" {
		c.fail(400, "INVALID_ARGUMENT", "", why)
		return false
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
	if c.r.Header.Get("Authorization") != "" {
		// A bearer token: Google answers 401 UNAUTHENTICATED, or 403 for another project's path.
		if c.rec.Auth == "bad_path" {
			c.vertexFail(403, "Permission denied on resource project.")
		} else {
			c.vertexFail(401, "Request had invalid authentication credentials.")
		}
		return
	}
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

// Function calling, as Vertex checks it
// (https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/function-calling):
// tools is [{functionDeclarations: [{name, description, parameters}]}], at
// most 128 declarations; parameters and responseSchema are Schema objects
// (an OpenAPI subset, types spelled as the Type enum); toolConfig's
// functionCallingConfig has a mode and, with ANY only, allowedFunctionNames
// that are declared; a functionCall part belongs to a model turn and the
// next turn (a user one) answers each of its calls with a functionResponse
// of the same name. OpenAI's shapes (a "function" wrapper, "strict",
// lower-case types, JSON Schema keywords outside the subset, a role "tool")
// are refused as Vertex refuses unknown fields.

var vertexSchemaFields = map[string]bool{"type": true, "format": true, "title": true,
	"description": true, "nullable": true, "enum": true, "items": true, "minItems": true,
	"maxItems": true, "properties": true, "required": true, "propertyOrdering": true,
	"minimum": true, "maximum": true, "minLength": true, "maxLength": true, "pattern": true,
	"anyOf": true, "default": true, "example": true, "additionalProperties": true,
	"minProperties": true, "maxProperties": true}

var vertexTypes = map[string]bool{"STRING": true, "NUMBER": true, "INTEGER": true,
	"BOOLEAN": true, "ARRAY": true, "OBJECT": true}

var vertexFunctionName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$`)

// vertexCheckSchema returns what Vertex would refuse in a Schema at path ("" when nothing).
func vertexCheckSchema(v interface{}, path string) string {
	s, ok := v.(map[string]interface{})
	if !ok {
		return path + ": Invalid value (a Schema object is expected)"
	}
	for k, f := range s {
		if !vertexSchemaFields[k] {
			return fmt.Sprintf("Invalid JSON payload received. Unknown name %q at '%s': Cannot find field.", k, path)
		}
		switch k {
		case "type":
			if t, _ := f.(string); !vertexTypes[t] {
				return fmt.Sprintf("Invalid value at '%s.type' (type.googleapis.com/google.cloud.aiplatform.v1.Type), %v", path, f)
			}
		case "enum", "required", "propertyOrdering":
			arr, isArr := f.([]interface{})
			if !isArr {
				return path + "." + k + ": a list of strings is expected"
			}
			for _, e := range arr {
				if _, isStr := e.(string); !isStr {
					return fmt.Sprintf("Invalid value at '%s.%s': a string is expected", path, k)
				}
			}
		case "items":
			if why := vertexCheckSchema(f, path+".items"); why != "" {
				return why
			}
		case "anyOf":
			arr, _ := f.([]interface{})
			for i, e := range arr {
				if why := vertexCheckSchema(e, fmt.Sprintf("%s.anyOf[%d]", path, i)); why != "" {
					return why
				}
			}
		case "properties":
			m, isMap := f.(map[string]interface{})
			if !isMap {
				return path + ".properties: a map is expected"
			}
			for name, e := range m {
				if why := vertexCheckSchema(e, path+".properties."+name); why != "" {
					return why
				}
			}
		case "additionalProperties":
			if _, isBool := f.(bool); !isBool {
				if why := vertexCheckSchema(f, path+".additionalProperties"); why != "" {
					return why
				}
			}
		}
	}
	return ""
}

// vertexDeclared: the function names of the request's declarations.
func vertexDeclared(body map[string]interface{}) map[string]bool {
	names := map[string]bool{}
	tools, _ := body["tools"].([]interface{})
	for _, t := range tools {
		tm, _ := t.(map[string]interface{})
		decls, _ := tm["functionDeclarations"].([]interface{})
		for _, d := range decls {
			dm, _ := d.(map[string]interface{})
			if n, ok := dm["name"].(string); ok {
				names[n] = true
			}
		}
	}
	return names
}

// vertexCheckTools returns what Vertex would refuse in tools, toolConfig,
// the function call turns and responseSchema ("" when nothing).
func vertexCheckTools(body map[string]interface{}) string {
	ndecl := 0
	if tv, ok := body["tools"]; ok {
		tools, isArr := tv.([]interface{})
		if !isArr {
			return "tools: a list is expected"
		}
		for i, t := range tools {
			tm, _ := t.(map[string]interface{})
			for k := range tm {
				if k != "functionDeclarations" {
					return fmt.Sprintf("Invalid JSON payload received. Unknown name %q at 'tools[%d]': Cannot find field.", k, i)
				}
			}
			decls, _ := tm["functionDeclarations"].([]interface{})
			for j, d := range decls {
				ndecl++
				dm, _ := d.(map[string]interface{})
				path := fmt.Sprintf("tools[%d].function_declarations[%d]", i, j)
				for k := range dm {
					if k != "name" && k != "description" && k != "parameters" {
						return fmt.Sprintf("Invalid JSON payload received. Unknown name %q at '%s': Cannot find field.", k, path)
					}
				}
				if n, _ := dm["name"].(string); !vertexFunctionName.MatchString(n) {
					return path + ".name: Invalid function name"
				}
				if p, ok := dm["parameters"]; ok {
					if why := vertexCheckSchema(p, path+".parameters"); why != "" {
						return why
					}
					pm, _ := p.(map[string]interface{})
					props, _ := pm["properties"].(map[string]interface{})
					if pm["type"] != "OBJECT" || len(props) == 0 {
						return path + ".parameters.properties: should be non-empty for OBJECT type"
					}
				}
			}
		}
		if ndecl > 128 {
			return "tools: at most 128 function declarations can be provided"
		}
	}
	if tc, ok := body["toolConfig"]; ok {
		tcm, _ := tc.(map[string]interface{})
		fcc, _ := tcm["functionCallingConfig"].(map[string]interface{})
		mode, _ := fcc["mode"].(string)
		if mode != "AUTO" && mode != "ANY" && mode != "NONE" {
			return "toolConfig.functionCallingConfig.mode: Invalid value"
		}
		if allowed, ok := fcc["allowedFunctionNames"].([]interface{}); ok {
			declared := vertexDeclared(body)
			if mode != "ANY" {
				return "toolConfig.functionCallingConfig.allowedFunctionNames: only set when the Mode is ANY"
			}
			for _, a := range allowed {
				if n, _ := a.(string); !declared[n] {
					return "toolConfig.functionCallingConfig.allowedFunctionNames: names no declared function"
				}
			}
		}
		if ndecl == 0 {
			return "toolConfig: function calling config is set but no function declarations"
		}
	}
	contents, _ := body["contents"].([]interface{})
	var pending []string // the function calls of the turn before, to be answered now
	for i, cv := range contents {
		cm, _ := cv.(map[string]interface{})
		role, _ := cm["role"].(string)
		parts, _ := cm["parts"].([]interface{})
		var calls, answers []string
		for j, pv := range parts {
			pm, _ := pv.(map[string]interface{})
			if fc, ok := pm["functionCall"].(map[string]interface{}); ok {
				name, _ := fc["name"].(string)
				if _, isObj := fc["args"].(map[string]interface{}); role != "model" || name == "" || !isObj {
					return fmt.Sprintf("contents[%d].parts[%d].function_call: a model turn's, with a name and args (an object)", i, j)
				}
				calls = append(calls, name)
			}
			if fr, ok := pm["functionResponse"].(map[string]interface{}); ok {
				name, _ := fr["name"].(string)
				if _, isObj := fr["response"].(map[string]interface{}); role != "user" || name == "" || !isObj {
					return fmt.Sprintf("contents[%d].parts[%d].function_response: a user turn's, with a name and response (an object)", i, j)
				}
				answers = append(answers, name)
			}
		}
		if len(pending) > 0 || len(answers) > 0 {
			sort.Strings(pending)
			sort.Strings(answers)
			if strings.Join(pending, ",") != strings.Join(answers, ",") {
				return fmt.Sprintf("Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn (contents[%d])", i)
			}
		}
		pending = calls
	}
	if gc, ok := body["generationConfig"].(map[string]interface{}); ok {
		if rs, ok := gc["responseSchema"]; ok {
			if gc["responseMimeType"] != "application/json" {
				return "generation_config.response_schema: responseMimeType must be application/json"
			}
			if why := vertexCheckSchema(rs, "generation_config.response_schema"); why != "" {
				return why
			}
		}
	}
	return ""
}

// vertexToolCalls: the "tools" scenario's calls for a Vertex request: with
// mode NONE or when the last turn answers calls, none (the model then answers
// in text); with allowedFunctionNames, the first of them; else one call per
// declared function (at most two), args {"city":"Paris"} for the first and {}
// for the second.
func (c *call) vertexToolCalls() []toolCall {
	contents, _ := c.body["contents"].([]interface{})
	if len(contents) > 0 {
		last, _ := contents[len(contents)-1].(map[string]interface{})
		parts, _ := last["parts"].([]interface{})
		for _, p := range parts {
			if _, ok := p.(map[string]interface{})["functionResponse"]; ok {
				return nil
			}
		}
	}
	tc, _ := c.body["toolConfig"].(map[string]interface{})
	fcc, _ := tc["functionCallingConfig"].(map[string]interface{})
	if fcc["mode"] == "NONE" {
		return nil
	}
	var names []string
	if allowed, ok := fcc["allowedFunctionNames"].([]interface{}); ok && len(allowed) > 0 {
		n, _ := allowed[0].(string)
		names = []string{n}
	} else {
		tools, _ := c.body["tools"].([]interface{})
		for _, t := range tools {
			decls, _ := t.(map[string]interface{})["functionDeclarations"].([]interface{})
			for _, d := range decls {
				if n, _ := d.(map[string]interface{})["name"].(string); n != "" && len(names) < 2 {
					names = append(names, n)
				}
			}
		}
	}
	var out []toolCall
	for i, n := range names {
		in := "{}"
		if i == 0 {
			in = `{"city":"Paris"}`
		}
		out = append(out, toolCall{"", n, in})
	}
	return out
}

// vertexToolsAnswer: "Let me check." and a functionCall part per call,
// finishReason STOP (Gemini has no tool-use reason); streamed, the text in
// one event and the whole calls with the finish and the counts in the last.
func (c *call) vertexToolsAnswer(calls []toolCall) {
	const text = "Let me check."
	var fcs []interface{}
	for _, tc := range calls {
		fcs = append(fcs, map[string]interface{}{"functionCall": map[string]interface{}{
			"name": tc.name, "args": json.RawMessage(tc.input)}})
	}
	withParts := func(r map[string]interface{}, parts []interface{}) map[string]interface{} {
		cand := r["candidates"].([]interface{})[0].(map[string]interface{})
		cand["content"] = map[string]interface{}{"role": "model", "parts": parts}
		return r
	}
	if !c.stream {
		r := c.vertexResponse(text, "STOP", true)
		c.status = 200
		writeJSON(c.w, 200, withParts(r, append([]interface{}{map[string]string{"text": text}}, fcs...)))
		return
	}
	c.startStream()
	if c.sse("", c.vertexResponse(text, "", false)) != nil {
		return
	}
	c.sse("", withParts(c.vertexResponse("", "STOP", true), fcs))
}

// Text embeddings, :predict on the regional path
// (https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/text-embeddings-api):
// {"instances": [{"content", "task_type"?, "title"?}], "parameters":
// {"autoTruncate"?, "outputDimensionality"?}} -> {"predictions": [{"embeddings":
// {"values", "statistics": {"token_count", "truncated"}}}], "metadata":
// {"billableCharacterCount"}}. Express mode has no :predict: a request
// without a bearer token is 404. gemini-embedding-* takes one instance, the
// others at most 250; outputDimensionality 1..3072 for gemini-embedding,
// 1..768 for the others. Mock simplification: a vector has
// outputDimensionality values when given, else 8.

var vertexTaskTypes = map[string]bool{"RETRIEVAL_QUERY": true, "RETRIEVAL_DOCUMENT": true,
	"SEMANTIC_SIMILARITY": true, "CLASSIFICATION": true, "CLUSTERING": true,
	"QUESTION_ANSWERING": true, "FACT_VERIFICATION": true, "CODE_RETRIEVAL_QUERY": true}

func (c *call) vertexParsePredict() bool {
	bad := func(msg string) bool {
		c.vertexFail(400, msg)
		return false
	}
	if c.r.Header.Get("Authorization") == "" {
		c.vertexFail(404, "The requested URL was not found on this server.")
		return false
	}
	for k := range c.body {
		if k != "instances" && k != "parameters" {
			return bad(fmt.Sprintf("Invalid JSON payload received. Unknown name %q: Cannot find field.", k))
		}
	}
	inst, ok := c.body["instances"].([]interface{})
	max := 250
	if strings.HasPrefix(c.model, "gemini-embedding") {
		max = 1
	}
	if !ok || len(inst) == 0 || len(inst) > max {
		return bad(fmt.Sprintf("instances: 1 to %d instances per request", max))
	}
	var texts []interface{}
	for i, x := range inst {
		o, isObj := x.(map[string]interface{})
		s, isStr := o["content"].(string)
		if !isObj || !isStr || s == "" {
			return bad(fmt.Sprintf("instances[%d].content: a non-empty string is required", i))
		}
		for k, v := range o {
			switch k {
			case "content", "title":
			case "task_type":
				if t, _ := v.(string); !vertexTaskTypes[t] {
					return bad(fmt.Sprintf("instances[%d].task_type: unknown task type", i))
				}
			default:
				return bad(fmt.Sprintf("instances[%d]: unknown field %q", i, k))
			}
		}
		texts = append(texts, s)
	}
	if p, ok := c.body["parameters"]; ok {
		pm, isObj := p.(map[string]interface{})
		if !isObj {
			return bad("parameters: must be an object")
		}
		for k, v := range pm {
			switch k {
			case "autoTruncate":
				if _, isBool := v.(bool); !isBool {
					return bad("parameters.autoTruncate: must be a boolean")
				}
			case "outputDimensionality":
				n, _ := v.(json.Number)
				d, err := n.Int64()
				lim := int64(768)
				if max == 1 {
					lim = 3072
				}
				if err != nil || d < 1 || d > lim {
					return bad("parameters.outputDimensionality: unsupported dimension")
				}
			default:
				return bad(fmt.Sprintf("parameters: unknown field %q", k))
			}
		}
	}
	c.prompt = countWords(texts)
	return true
}

func (c *call) vertexPredictBody() map[string]interface{} {
	n := 8
	if pm, ok := c.body["parameters"].(map[string]interface{}); ok {
		if v, ok := pm["outputDimensionality"].(json.Number); ok {
			if d, err := v.Int64(); err == nil {
				n = int(d)
			}
		}
	}
	inst, _ := c.body["instances"].([]interface{})
	preds := make([]interface{}, len(inst))
	chars := 0
	for i, x := range inst {
		s, _ := x.(map[string]interface{})["content"].(string)
		chars += len(s)
		vec := make([]float64, n)
		for j := range vec {
			vec[j] = float64((i+1)*(j+1)) / 100
		}
		preds[i] = map[string]interface{}{"embeddings": map[string]interface{}{"values": vec,
			"statistics": map[string]interface{}{"token_count": countWords(s), "truncated": false}}}
	}
	if c.fewerEmbeddings && len(preds) > 0 {
		preds = preds[:len(preds)-1]
	}
	return map[string]interface{}{"predictions": preds,
		"metadata": map[string]interface{}{"billableCharacterCount": chars}}
}
