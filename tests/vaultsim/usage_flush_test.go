// SPDX-License-Identifier: MPL-2.0

package vaultsim

import (
	"fmt"
	"strings"
	"testing"
)

// Creds reads count usage in the plugin's memory (no storage write on the hot
// path); Cleanup, which Vault sends before a reload, seal or unmount, must flush
// them so that a reload loses none.
func TestUsageCountSurvivesReload(t *testing.T) {
	s := newSim(t)
	root := s.RootToken
	const key = "byok/tenants/flush/keys/openai/production"
	s.MustCall(t, 200, root, "PUT", key, map[string]any{"key_value": "sk-flushtest0000000000000000000000000000000001"})
	for i := 0; i < 7; i++ {
		s.MustCall(t, 200, root, "GET", "byok/tenants/flush/creds/openai", nil)
	}
	s.ReloadPlugin(t)
	d := Data(s.MustCall(t, 200, root, "GET", key, nil))
	if n, _ := d["usage_count"].(float64); n != 7 {
		t.Fatalf("usage_count after reload = %v, want 7", d["usage_count"])
	}
	if d["last_used_at"] == nil {
		t.Fatalf("last_used_at not set after reload: %v", d)
	}
}

// Failure messages print response bodies: a creds body must come out without its key.
func TestRedactedHidesKey(t *testing.T) {
	resp := map[string]any{"data": map[string]any{"api_key": "sk-canary-redact", "version": 1.0}}
	out := fmt.Sprintf("%v", redacted(resp))
	if strings.Contains(out, "sk-canary-redact") || !strings.Contains(out, "version") {
		t.Fatalf("redacted: %s", out)
	}
	if d := resp["data"].(map[string]any); d["api_key"] != "sk-canary-redact" {
		t.Fatalf("redacted changed the original response")
	}
}
