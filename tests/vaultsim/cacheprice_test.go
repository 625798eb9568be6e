// SPDX-License-Identifier: MPL-2.0

// Prompt-cache prices in the provider catalog over Vault's HTTP API: the
// built-in entries carry them, an admin override sets them, bad values are
// refused naming the field and store nothing, and creds carry them to agents.
package vaultsim

import (
	"math"
	"strings"
	"testing"
)

func cacheModel(extra map[string]any) map[string]any {
	m := map[string]any{"name": "m1", "context_window": 8192, "max_output_tokens": 1024,
		"capabilities": []string{"chat"}, "tier": "LOW", "input_per_1m": 3.0, "output_per_1m": 15.0}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func modelNamed(entry map[string]any, name string) map[string]any {
	ms, _ := entry["models"].([]any)
	for _, x := range ms {
		if m, _ := x.(map[string]any); m != nil && m["name"] == name {
			return m
		}
	}
	return nil
}

func TestProviderCachePrices(t *testing.T) {
	s := newSim(t)
	root := s.RootToken

	// Built-in: Anthropic reads 0.1x input, 5-minute writes 1.25x.
	b := Data(s.MustCall(t, 200, root, "GET", "byok/providers/anthropic", nil))
	m := modelNamed(b, "claude-sonnet-4-20250514")
	if m == nil || m["cached_input_per_1m"] != 0.3 || m["cache_write_per_1m"] != 3.75 {
		t.Fatalf("built-in claude-sonnet-4 cache prices: %v", m)
	}

	bad := []struct {
		extra map[string]any
		field string
	}{
		{map[string]any{"cached_input_per_1m": -0.5}, "cached_input_per_1m"},
		{map[string]any{"cached_input_per_1m": "0.3"}, "cached_input_per_1m"},
		{map[string]any{"cached_input_per_1m": nil}, "cached_input_per_1m"},
		{map[string]any{"cache_write_per_1m": 1e6}, "cache_write_per_1m"},
		{map[string]any{"cache_write_per_1m": []int{1}}, "cache_write_per_1m"},
	}
	for _, c := range bad {
		code, resp := s.Call(t, root, "PUT", "byok/providers/anthropic",
			map[string]any{"models": []map[string]any{cacheModel(c.extra)}, "default_model": "m1"})
		if code != 400 || !strings.Contains(Errors(resp), c.field) || !strings.Contains(Errors(resp), "item 0") {
			t.Errorf("%v: status %d errors %q, want 400 naming item 0 and %s", c.extra, code, Errors(resp), c.field)
		}
	}
	// Nothing was stored: still the built-in entry.
	if got := Data(s.MustCall(t, 200, root, "GET", "byok/providers/anthropic", nil)); got["overridden"] != false {
		t.Fatalf("a refused write stored an override: %v", got)
	}

	// An override with the prices, and a model without them (left absent: input price).
	code, resp := s.Call(t, root, "PUT", "byok/providers/anthropic", map[string]any{
		"default_model": "m1",
		"models": []map[string]any{
			cacheModel(map[string]any{"cached_input_per_1m": 0.25, "cache_write_per_1m": 4}),
			cacheModel(map[string]any{"name": "m2"}),
		}})
	if code != 200 && code != 204 {
		t.Fatalf("override with cache prices: %d %v", code, resp)
	}
	got := Data(s.MustCall(t, 200, root, "GET", "byok/providers/anthropic", nil))
	m1, m2 := modelNamed(got, "m1"), modelNamed(got, "m2")
	if m1["cached_input_per_1m"] != 0.25 || m1["cache_write_per_1m"] != 4.0 {
		t.Errorf("override m1: %v", m1)
	}
	if _, ok := m2["cached_input_per_1m"]; ok {
		t.Errorf("m2 without cache prices got one: %v", m2)
	}
	if _, ok := m2["cache_write_per_1m"]; ok {
		t.Errorf("m2 without cache prices got one: %v", m2)
	}

	// creds carry them to the agent, in the provider entry.
	s.MustCall(t, 200, root, "PUT", "byok/tenants/acme/keys/anthropic/production",
		map[string]any{"key_value": "sk-ant-api03-" + strings.Repeat("x", 40)})
	cr := Data(s.MustCall(t, 200, root, "GET", "byok/tenants/acme/creds/anthropic", nil))
	p, _ := cr["provider"].(map[string]any)
	cm := modelNamed(p, "m1")
	if v, _ := cm["cached_input_per_1m"].(float64); math.Abs(v-0.25) > 1e-12 || cm["cache_write_per_1m"] != 4.0 {
		t.Errorf("creds provider model m1: %v", cm)
	}
}
