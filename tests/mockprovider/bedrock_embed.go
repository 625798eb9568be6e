// SPDX-License-Identifier: MPL-2.0

package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Bedrock's InvokeModel for the embedding models the agent translates to:
// POST …/model/{modelId}/invoke, the same host and auth (Bearer or SigV4,
// checked before this is reached) as Converse, and each model's own body.
// References: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_InvokeModel.html,
// https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-titan-embed-text.html,
// https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-embed.html
//
// Checked as Bedrock would (400 ValidationException): Titan Text Embeddings
// V2 takes {"inputText", "dimensions" (256, 512, 1024), "normalize",
// "embeddingTypes"}; Cohere Embed v3 takes {"texts" (1..96, each at most
// 2048 characters), "input_type" (required), "truncate", "embedding_types"}.
// Any other member is refused, as Bedrock refuses an extraneous key.
// Answers: Titan {"embedding", "inputTextTokenCount", "embeddingsByType"};
// Cohere {"embeddings", "id", "response_type": "embeddings_floats",
// "texts"}; both with the X-Amzn-Bedrock-Input-Token-Count header. The
// token count is the words of the input, as for every style. Mock
// simplification: a vector has `dimensions` values when the request gives
// them, else 8 (real Titan gives 1024 by default, Cohere always 1024).

func isTitanEmbed(id string) bool  { return strings.Contains(id, "amazon.titan-embed-text") }
func isCohereEmbed(id string) bool { return strings.Contains(id, "cohere.embed-") }

func (c *call) parseBedrockInvoke() bool {
	bad := func(msg string) bool {
		c.fail(400, "ValidationException", "", msg)
		return false
	}
	extraneous := func(allowed map[string]bool) string {
		for k := range c.body {
			if !allowed[k] {
				return k
			}
		}
		return ""
	}
	switch {
	case isTitanEmbed(c.model):
		if k := extraneous(map[string]bool{"inputText": true, "dimensions": true,
			"normalize": true, "embeddingTypes": true}); k != "" {
			return bad("Malformed input request: extraneous key [" + k + "] is not permitted")
		}
		text, ok := c.body["inputText"].(string)
		if !ok || text == "" {
			return bad("Malformed input request: #/inputText: expected minLength: 1")
		}
		if v, ok := c.body["dimensions"]; ok {
			n, _ := v.(json.Number)
			if d, err := n.Int64(); err != nil || (d != 256 && d != 512 && d != 1024) {
				return bad("Malformed input request: #/dimensions: " + string(n) +
					" is not a valid enum value")
			}
		}
		if v, ok := c.body["normalize"]; ok {
			if _, isBool := v.(bool); !isBool {
				return bad("Malformed input request: #/normalize: expected type: Boolean")
			}
		}
		c.prompt = countWords(text)
	case isCohereEmbed(c.model):
		if k := extraneous(map[string]bool{"texts": true, "images": true, "input_type": true,
			"truncate": true, "embedding_types": true}); k != "" {
			return bad("Malformed input request: extraneous key [" + k + "] is not permitted")
		}
		texts, ok := c.body["texts"].([]interface{})
		if !ok || len(texts) == 0 || len(texts) > 96 {
			return bad("Malformed input request: #/texts: expected 1 to 96 items")
		}
		for i, t := range texts {
			s, isStr := t.(string)
			if !isStr || utf8.RuneCountInString(s) > 2048 {
				return bad("Malformed input request: #/texts/" + strconv.Itoa(i) +
					": expected a string of at most 2048 characters")
			}
		}
		it, _ := c.body["input_type"].(string)
		switch it {
		case "search_document", "search_query", "classification", "clustering":
		default:
			return bad("Malformed input request: #/input_type: required, one of search_document, search_query, classification, clustering")
		}
		if v, ok := c.body["truncate"]; ok {
			if s, _ := v.(string); s != "NONE" && s != "START" && s != "END" {
				return bad("Malformed input request: #/truncate: must be NONE, START or END")
			}
		}
		c.prompt = countWords(texts)
	default:
		return bad("The provided model identifier is invalid.")
	}
	return true
}

// bedrockVector is text i's vector of n values.
func bedrockVector(i, n int) []float64 {
	vec := make([]float64, n)
	for j := range vec {
		vec[j] = float64((i+1)*(j+1)) / 100
	}
	return vec
}

func (c *call) bedrockEmbeddingsBody() map[string]interface{} {
	c.w.Header().Set("X-Amzn-Bedrock-Input-Token-Count", strconv.Itoa(c.prompt))
	n := 8
	if v, ok := c.body["dimensions"].(json.Number); ok {
		if d, err := v.Int64(); err == nil {
			n = int(d)
		}
	}
	if isTitanEmbed(c.model) {
		vec := bedrockVector(0, n)
		return map[string]interface{}{"embedding": vec, "inputTextTokenCount": c.prompt,
			"embeddingsByType": map[string]interface{}{"float": vec}}
	}
	texts, _ := c.body["texts"].([]interface{})
	vecs := make([]interface{}, len(texts))
	for i := range vecs {
		vecs[i] = bedrockVector(i, n)
	}
	return map[string]interface{}{"embeddings": vecs, "id": c.id(),
		"response_type": "embeddings_floats", "texts": texts}
}
