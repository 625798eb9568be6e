// SPDX-License-Identifier: MPL-2.0

package vaultsim

// The keys engine through Vault's HTTP API under the stand-in: the key
// lifecycle (create, read masked, creds, rotate, revoke, re-create),
// settings, usage batches, bad input, KEK rotation, and persistence across
// a plugin reload.

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// canaryNeedles returns the canary and its base64 at the three alignments it
// could have inside a longer base64 blob (tails that depend on what follows
// are cut off).
func canaryNeedles(canary string) []string {
	out := []string{canary}
	for shift := 0; shift < 3; shift++ {
		b := base64.StdEncoding.EncodeToString([]byte(canary[shift:]))
		out = append(out, b[:len(b)-4])
		u := base64.RawURLEncoding.EncodeToString([]byte(canary[shift:]))
		out = append(out, u[:len(u)-4])
	}
	return out
}

// noCanaries fails if text holds any canary (or its base64).
func noCanaries(t *testing.T, where string, text []byte, canaries []string) {
	t.Helper()
	for _, c := range canaries {
		for _, n := range canaryNeedles(c) {
			if strings.Contains(string(text), n) {
				t.Errorf("%s contains canary material (%q...)", where, c[:10])
				return
			}
		}
	}
}

// checkedCall is Call plus a canary scan of every response that is not creds.
func checkedCall(t *testing.T, s *Sim, canaries []string, token, method, path string, body any) (int, map[string]any) {
	t.Helper()
	code, m := s.Call(t, token, method, path, body)
	if !strings.Contains(path, "/creds/") {
		b, _ := json.Marshal(m)
		noCanaries(t, fmt.Sprintf("response to %s %s", method, path), b, canaries)
	}
	return code, m
}

func jstr(m map[string]any, k string) string {
	v, _ := m[k].(string)
	return v
}

func jmap(m map[string]any, k string) map[string]any {
	v, _ := m[k].(map[string]any)
	return v
}

func jnum(m map[string]any, k string) int64 {
	switch v := m[k].(type) {
	case float64:
		return int64(v)
	case json.Number:
		n, _ := v.Int64()
		return n
	}
	return -1
}

const (
	kp    = "byok/tenants/acme/keys/openai/production"
	creds = "byok/tenants/acme/creds/openai"
)

func TestKeysLifecycleHTTP(t *testing.T) {
	s := newSim(t)
	root := s.RootToken
	c := []string{
		"sk-CANARYhttp1acme000000000000000000000000000001",
		"sk-CANARYhttp2acme000000000000000000000000000002",
		"sk-CANARYhttp3acme000000000000000000000000000003",
	}
	call := func(want int, method, path string, body any) map[string]any {
		t.Helper()
		code, m := checkedCall(t, s, c, root, method, path, body)
		if code != want {
			t.Fatalf("%s %s: status %d, want %d: %v", method, path, code, want, redacted(m))
		}
		return m
	}

	d := Data(call(200, "PUT", kp, map[string]any{"key_value": c[0], "name": "prod", "permissions": []string{"chat"}}))
	if jstr(d, "masked_value") != "sk-CANA...001" || jstr(d, "status") != "active" || jnum(d, "current_version") != 1 {
		t.Fatalf("write reply: %v", d)
	}
	keyID := jstr(d, "key_id")
	if !strings.HasPrefix(keyID, "k_") {
		t.Fatalf("key_id %q", keyID)
	}
	d = Data(call(200, "GET", kp, nil))
	if jstr(d, "name") != "prod" || jstr(d, "tenant") != "acme" || d["validation"] == nil {
		t.Fatalf("read: %v", d)
	}
	cr := Data(call(200, "GET", creds, nil))
	if jstr(cr, "api_key") != c[0] || jnum(cr, "version") != 1 || jstr(cr, "key_id") != keyID || jnum(cr, "ttl") != 300 {
		t.Fatalf("creds: version %v key_id %v ttl %v", cr["version"], cr["key_id"], cr["ttl"])
	}
	if p, _ := cr["provider"].(map[string]any); jstr(p, "name") != "openai" {
		t.Errorf("creds provider entry: %v", cr["provider"])
	}
	if st, _ := cr["settings"].(map[string]any); jstr(st, "budget_tier") == "" {
		t.Errorf("creds settings: %v", cr["settings"])
	}

	// Warm creds reads cost at most one storage round trip each (none with the record cache) and write nothing.
	call(200, "GET", creds, nil)
	g0, p0, l0, d0 := s.Storage.OpCounts()
	for i := 0; i < 5; i++ {
		call(200, "GET", creds, nil)
	}
	g1, p1, l1, d1 := s.Storage.OpCounts()
	if g1-g0 > 5 || p1 != p0 || l1 != l0 || d1 != d0 {
		t.Errorf("5 warm creds reads: %d gets, %d puts, %d lists, %d deletes; want <= 5, 0, 0, 0",
			g1-g0, p1-p0, l1-l0, d1-d0)
	}

	// Rotate with a grace period: the old version stays readable by number.
	d = Data(call(200, "PUT", kp+"/rotate", map[string]any{"key_value": c[1], "grace_period": "1h"}))
	if jnum(d, "current_version") != 2 {
		t.Fatalf("rotate: %v", d)
	}
	if got := jstr(Data(call(200, "GET", creds, nil)), "api_key"); got != c[1] {
		t.Fatalf("creds after rotate: wrong key")
	}
	if got := jstr(Data(call(200, "GET", creds+"?version=1", nil)), "api_key"); got != c[0] {
		t.Fatalf("creds version 1 in grace: wrong key")
	}

	// Revoke: creds 404, the record stays as a tombstone.
	call(204, "DELETE", kp, nil)
	code, m := s.Call(t, root, "GET", creds, nil)
	if code != 404 || !strings.Contains(Errors(m), "no active key") || strings.Contains(Errors(m), "unknown provider") {
		t.Fatalf("creds after revoke: %d %v", code, redacted(m))
	}
	// A provider the catalog does not have: the 404 says so.
	code, m = s.Call(t, root, "GET", "byok/tenants/acme/creds/nosuchprovider", nil)
	if code != 404 || !strings.Contains(Errors(m), "unknown provider 'nosuchprovider'") {
		t.Fatalf("creds for an unknown provider: %d %v", code, redacted(m))
	}
	if d = Data(call(200, "GET", kp, nil)); jstr(d, "status") != "revoked" {
		t.Fatalf("revoked read: %v", d)
	}
	// A new write is a new version of the same key.
	d = Data(call(200, "PUT", kp, map[string]any{"key_value": c[2]}))
	if jnum(d, "current_version") != 3 || jstr(d, "key_id") != keyID {
		t.Fatalf("re-create: %v", d)
	}

	// KEK rotation, then a reload: everything still opens.
	d = Data(call(200, "PUT", "byok/config/rotate-root", nil))
	if jnum(d, "kek_version") != 2 || jnum(d, "tenants_rewrapped") != 1 {
		t.Fatalf("rotate-root: %v", d)
	}
	s.ReloadPlugin(t)
	if got := jstr(Data(call(200, "GET", creds, nil)), "api_key"); got != c[2] {
		t.Fatalf("creds after reload: wrong key")
	}
	d = Data(call(200, "GET", kp, nil))
	if jnum(d, "current_version") != 3 || jstr(d, "key_id") != keyID {
		t.Fatalf("read after reload: %v", d)
	}
	if d = Data(call(200, "GET", "byok/config", nil)); jnum(d, "kek_version") != 2 {
		t.Fatalf("config kek_version after reload: %v", d)
	}
	// The KEK is seal-wrapped; nothing else needs to be.
	if !s.Storage.SealWrapped("kek/2") {
		t.Errorf("kek/2 was not written with seal_wrap")
	}

	// Lists and the tenant summary.
	l := Data(call(200, "LIST", "byok/tenants", nil))
	if keys, _ := l["keys"].([]any); len(keys) != 1 || keys[0] != "acme" {
		t.Fatalf("tenants list: %v", l)
	}
	l = Data(call(200, "LIST", "byok/tenants/acme/keys/openai", nil))
	if keys, _ := l["keys"].([]any); len(keys) != 1 || keys[0] != "production" {
		t.Fatalf("keys list: %v", l)
	}
	if d = Data(call(200, "GET", "byok/tenants/acme", nil)); jstr(d, "tenant") != "acme" {
		t.Fatalf("tenant summary: %v", d)
	}

	for _, where := range []string{"raw storage", "plugin log"} {
		var text []byte
		if where == "plugin log" {
			text = []byte(s.PluginLog())
		} else {
			for k, v := range s.RawStorage() {
				text = append(text, k...)
				text = append(text, v...)
			}
		}
		noCanaries(t, where, text, c)
	}
}

func TestKeysSettingsUsageHTTP(t *testing.T) {
	s := newSim(t)
	root := s.RootToken
	m := s.MustCall(t, 200, root, "PUT", "byok/tenants/acme/settings", map[string]any{
		"budget_tier": "HIGH", "preferred_providers": []string{"openai"}, "residency": "eu", "rpm_limit": 60,
	})
	if jstr(Data(m), "budget_tier") != "HIGH" {
		t.Fatalf("settings: %v", m)
	}
	code, m := s.Call(t, root, "PUT", "byok/tenants/acme/settings", map[string]any{"preferred_providers": []string{"nosuch"}})
	if code != 400 || !strings.Contains(Errors(m), "preferred_providers") {
		t.Fatalf("unknown provider in settings: %d %v", code, m)
	}
	batch := map[string]any{"batch_id": "node1-000001", "records": []any{
		map[string]any{"ts": "2026-11-25T20:00:00Z", "provider": "openai", "model": "gpt-4o-mini", "requests": 1,
			"prompt_tokens": 12, "completion_tokens": 34, "cost_usd": 0.0000222, "status": "ok"},
	}}
	d := Data(s.MustCall(t, 200, root, "PUT", "byok/tenants/acme/usage", batch))
	if jnum(d, "accepted") != 1 || d["duplicate"] != false {
		t.Fatalf("usage: %v", d)
	}
	d = Data(s.MustCall(t, 200, root, "PUT", "byok/tenants/acme/usage", batch))
	if d["duplicate"] != true {
		t.Fatalf("usage replay: %v", d)
	}
	d = Data(s.MustCall(t, 200, root, "GET", "byok/tenants/acme/usage?month=2026-11", nil))
	if jnum(d, "requests") != 1 || jnum(d, "prompt_tokens") != 12 {
		t.Fatalf("usage read: %v", d)
	}
}

// routing_strategy through the HTTP API with the real policies: ordered for a
// fresh tenant, written by the tenant's own token (folded to lower case), read
// back, carried by the creds reply an agent token gets; values outside the set
// are 400s naming the field that leave storage byte-for-byte as it was.
func TestSettingsRoutingStrategyHTTP(t *testing.T) {
	s := newIsoSim(t)
	a := s.canaries[0]
	const settings = "byok/tenants/acme/settings"
	if d := Data(s.expect(t, 200, "tenant A", s.tenantA, "GET", settings, nil)); jstr(d, "routing_strategy") != "ordered" {
		t.Errorf("fresh tenant: routing_strategy %v, want ordered", d["routing_strategy"])
	}
	s.expect(t, 200, "tenant A", s.tenantA, "PUT", "byok/tenants/acme/keys/openai/production", map[string]any{"key_value": a})
	d := Data(s.expect(t, 200, "tenant A", s.tenantA, "PUT", settings, map[string]any{"routing_strategy": "cheapest", "rpm_limit": 9}))
	if jstr(d, "routing_strategy") != "cheapest" {
		t.Errorf("write reply: %v", d)
	}
	if d = Data(s.expect(t, 200, "agent", s.agent, "GET", settings, nil)); jstr(d, "routing_strategy") != "cheapest" {
		t.Errorf("read back: %v", d)
	}
	m := s.expect(t, 200, "agent", s.agent, "GET", "byok/tenants/acme/creds/openai", nil)
	cs, _ := Data(m)["settings"].(map[string]any)
	if jstr(cs, "routing_strategy") != "cheapest" || jnum(cs, "rpm_limit") != 9 {
		t.Errorf("creds settings: %v", cs)
	}
	s.expect(t, 200, "tenant A", s.tenantA, "PUT", settings, map[string]any{"routing_strategy": "FASTEST"})
	if d = Data(s.expect(t, 200, "tenant A", s.tenantA, "GET", settings, nil)); jstr(d, "routing_strategy") != "fastest" || jnum(d, "rpm_limit") != 9 {
		t.Errorf("folded: %v", d)
	}
	// A tenant that never set it (nor anything else) reads the default, in creds too.
	s.expect(t, 200, "tenant B", s.tenantB, "PUT", "byok/tenants/globex/keys/openai/production", map[string]any{"key_value": s.canaries[1]})
	m = s.expect(t, 200, "agent", s.agent, "GET", "byok/tenants/globex/creds/openai", nil)
	if cs, _ = Data(m)["settings"].(map[string]any); jstr(cs, "routing_strategy") != "ordered" {
		t.Errorf("globex creds settings: %v", cs)
	}

	const why = "invalid value for field 'routing_strategy': must be one of ordered, cheapest, fastest, weighted, balanced"
	before := s.RawStorage()
	for _, c := range []struct {
		value any
		exact bool // the set's message (else the framework's, still naming the field)
	}{
		{"random", true},
		{"", true},
		{"Ordered!", true},
		{17, true},
		{strings.Repeat("f", 16), true},
		{strings.Repeat("f", 17), false},
		{"cheapest" + strings.Repeat(" ", 64), false},
		{[]string{"cheapest"}, false},
	} {
		for _, who := range []struct{ name, token string }{{"tenant A", s.tenantA}, {"root", s.RootToken}} {
			code, m := checkedCall(t, s.Sim, s.canaries, who.token, "PUT", settings, map[string]any{"routing_strategy": c.value})
			msg := Errors(m)
			if code != 400 || !strings.Contains(msg, "'routing_strategy'") || (c.exact && msg != why) {
				t.Errorf("%s: routing_strategy %#v: %d %q, want 400 naming the field", who.name, c.value, code, msg)
			}
		}
	}
	// With a valid field beside it: still nothing stored.
	code, m := s.Call(t, s.RootToken, "PUT", settings, map[string]any{"routing_strategy": "random", "rpm_limit": 1})
	if code != 400 || Errors(m) != why {
		t.Errorf("bad value beside a good one: %d %v", code, m)
	}
	if after := s.RawStorage(); !reflect.DeepEqual(before, after) {
		t.Errorf("a refused routing_strategy changed storage")
	}
	if d = Data(s.expect(t, 200, "agent", s.agent, "GET", settings, nil)); jstr(d, "routing_strategy") != "fastest" || jnum(d, "rpm_limit") != 9 {
		t.Errorf("after refusals: %v", d)
	}
}

// provider_weights: the weighted strategy's map, in each form Vault's
// TypeKVPairs takes, stored with integer values, carried in creds; bad
// entries are a 400 naming the field and store nothing.
func TestSettingsProviderWeightsHTTP(t *testing.T) {
	s := newIsoSim(t)
	const settings = "byok/tenants/acme/settings"
	if d := Data(s.expect(t, 200, "tenant A", s.tenantA, "GET", settings, nil)); len(jmap(d, "provider_weights")) != 0 {
		t.Errorf("fresh tenant: provider_weights %v, want {}", d["provider_weights"])
	}
	s.expect(t, 200, "tenant A", s.tenantA, "PUT", "byok/tenants/acme/keys/openai/production", map[string]any{"key_value": s.canaries[0]})
	for _, form := range []any{
		map[string]any{"openai": 3, "anthropic": "1", "mistral": 0},
		"openai=3,anthropic=1,mistral=0",                 // the CLI's provider_weights=openai=3,...
		[]string{"openai=3", "anthropic=1", "mistral=0"}, // repeated provider_weights=k=v
	} {
		d := Data(s.expect(t, 200, "tenant A", s.tenantA, "PUT", settings, map[string]any{"routing_strategy": "Weighted", "provider_weights": form}))
		w := jmap(d, "provider_weights")
		if jstr(d, "routing_strategy") != "weighted" || len(w) != 3 || jnum(w, "openai") != 3 || jnum(w, "anthropic") != 1 || jnum(w, "mistral") != 0 {
			t.Errorf("%#v: reply %v", form, d)
		}
	}
	m := s.expect(t, 200, "agent", s.agent, "GET", "byok/tenants/acme/creds/openai", nil)
	cs, _ := Data(m)["settings"].(map[string]any)
	if w := jmap(cs, "provider_weights"); jstr(cs, "routing_strategy") != "weighted" || jnum(w, "openai") != 3 || jnum(w, "anthropic") != 1 {
		t.Errorf("creds settings: %v", cs)
	}

	before := s.RawStorage()
	for _, bad := range []any{
		map[string]any{"openai": -1},
		map[string]any{"openai": 1001},
		map[string]any{"openai": "3x"},
		map[string]any{"openai": "", "anthropic": 1},
		map[string]any{"openai": 1.5},
		map[string]any{"openai": true},
		map[string]any{"nosuchprovider": 1},
		map[string]any{"Bad Name": 1},
		"openai",
		"openai=99999999999",
		17,
		[]any{1, 2},
	} {
		code, m := checkedCall(t, s.Sim, s.canaries, s.tenantA, "PUT", settings, map[string]any{"provider_weights": bad, "rpm_limit": 5})
		if msg := Errors(m); code != 400 || !strings.Contains(msg, "'provider_weights'") {
			t.Errorf("provider_weights %#v: %d %q, want 400 naming the field", bad, code, msg)
		}
	}
	if after := s.RawStorage(); !reflect.DeepEqual(before, after) {
		t.Errorf("a refused provider_weights changed storage")
	}
	// An empty map clears the weights.
	d := Data(s.expect(t, 200, "tenant A", s.tenantA, "PUT", settings, map[string]any{"provider_weights": map[string]any{}}))
	if len(jmap(d, "provider_weights")) != 0 || jstr(d, "routing_strategy") != "weighted" {
		t.Errorf("cleared: %v", d)
	}
	// Tenant B cannot set tenant A's weights.
	if code, _ := s.Call(t, s.tenantB, "PUT", settings, map[string]any{"provider_weights": map[string]any{"openai": 1}}); code != 403 {
		t.Errorf("tenant B wrote A's provider_weights: %d", code)
	}
}

// speed_weight: the balanced strategy's share of speed, 50 by default,
// an integer 0..100 (Vault's CLI sends strings), carried in creds; anything
// else is a 400 naming the field and stores nothing.
func TestSettingsSpeedWeightHTTP(t *testing.T) {
	s := newIsoSim(t)
	const settings = "byok/tenants/acme/settings"
	if d := Data(s.expect(t, 200, "tenant A", s.tenantA, "GET", settings, nil)); jnum(d, "speed_weight") != 50 {
		t.Errorf("fresh tenant: speed_weight %v, want 50", d["speed_weight"])
	}
	s.expect(t, 200, "tenant A", s.tenantA, "PUT", "byok/tenants/acme/keys/openai/production", map[string]any{"key_value": s.canaries[0]})
	for _, c := range []struct {
		in   any
		want int64
	}{{0, 0}, {"100", 100}, {25, 25}} {
		d := Data(s.expect(t, 200, "tenant A", s.tenantA, "PUT", settings, map[string]any{"routing_strategy": "Balanced", "speed_weight": c.in}))
		if jstr(d, "routing_strategy") != "balanced" || jnum(d, "speed_weight") != c.want {
			t.Errorf("speed_weight %#v: reply %v", c.in, d)
		}
	}
	m := s.expect(t, 200, "agent", s.agent, "GET", "byok/tenants/acme/creds/openai", nil)
	cs, _ := Data(m)["settings"].(map[string]any)
	if jstr(cs, "routing_strategy") != "balanced" || jnum(cs, "speed_weight") != 25 {
		t.Errorf("creds settings: %v", cs)
	}
	before := s.RawStorage()
	for _, bad := range []any{-1, 101, "fast", 1.5, true, []any{1}, map[string]any{"a": 1}, "99999999999999999999"} {
		code, m := checkedCall(t, s.Sim, s.canaries, s.tenantA, "PUT", settings, map[string]any{"speed_weight": bad, "rpm_limit": 5})
		if msg := Errors(m); code != 400 || !strings.Contains(msg, "'speed_weight'") {
			t.Errorf("speed_weight %#v: %d %q, want 400 naming the field", bad, code, msg)
		}
	}
	if after := s.RawStorage(); !reflect.DeepEqual(before, after) {
		t.Errorf("a refused speed_weight changed storage")
	}
	// The mount's default strategy may be balanced too.
	s.expect(t, 204, "admin", s.RootToken, "PUT", "byok/config", map[string]any{"default_routing_strategy": "balanced"})
	if d := Data(s.expect(t, 200, "admin", s.RootToken, "GET", "byok/tenants/other/settings", nil)); jstr(d, "routing_strategy") != "balanced" || jnum(d, "speed_weight") != 50 {
		t.Errorf("default strategy: %v", d)
	}
}

func TestKeysBadInputHTTP(t *testing.T) {
	s := newSim(t)
	root := s.RootToken
	canary := "sk-CANARYbad00000000000000000000000000000000000"
	cases := []struct {
		path  string
		body  map[string]any
		field string
	}{
		{kp, map[string]any{"key_value": "sk-abc def ghijklmnop"}, "key_value"},
		{kp, map[string]any{"key_value": "sk-abc\ndefghijklmnop"}, "key_value"},
		{kp, map[string]any{"key_value": ""}, "key_value"},
		{kp, map[string]any{"key_value": strings.Repeat("k", 8193)}, "key_value"},
		{kp, map[string]any{"key_value": canary, "expires_in": "soon"}, "expires_in"},
		{kp, map[string]any{"key_value": canary, "rate_limit": -1}, "rate_limit"},
		{"byok/tenants/acme/keys/nosuch/production", map[string]any{"key_value": canary}, "provider"},
		{"byok/tenants/ACME/keys/openai/production", map[string]any{"key_value": canary}, "tenant"},
		{"byok/tenants/acme/settings", map[string]any{"tpm_limit": -1}, "tpm_limit"},
	}
	for _, c := range cases {
		code, m := s.Call(t, root, "PUT", c.path, c.body)
		if code != 400 || !strings.Contains(Errors(m), "'"+c.field+"'") {
			t.Errorf("PUT %s %v: %d %v, want 400 naming %s", c.path, c.field, code, m, c.field)
		}
		b, _ := json.Marshal(m)
		noCanaries(t, "error response", b, []string{canary})
	}
	if n := len(s.RawStorage()); n > 3 { // config-free mount: kek/1, kek/current only
		t.Errorf("bad input stored something: %d entries", n)
	}
	for k := range s.RawStorage() {
		if strings.HasPrefix(k, "tenants/") {
			t.Errorf("bad input stored %s", k)
		}
	}
	noCanaries(t, "plugin log", []byte(s.PluginLog()), []string{canary})
}

// TestKeyWritePlaceholderWarning: a key stored (or rotated) for a provider whose
// catalog base_url still holds a placeholder (the built-in bedrock and azure
// entries) is stored, with a warning that agents will not call it until an
// operator sets base_url; no warning once base_url is set, nor for a provider
// without one. The warning never holds the key.
func TestKeyWritePlaceholderWarning(t *testing.T) {
	s := newSim(t)
	warnings := func(m map[string]any) string {
		w, _ := m["warnings"].([]any)
		return fmt.Sprint(w)
	}
	bedrock := "ABSK" + strings.Repeat("Qx7mP2vL9kR4", 4)
	m := s.MustCall(t, 200, s.RootToken, "PUT", "byok/tenants/acme/keys/bedrock/production",
		map[string]any{"key_value": bedrock})
	if w := warnings(m); !strings.Contains(w, "provider 'bedrock'") || !strings.Contains(w, "placeholder") {
		t.Errorf("bedrock key write with {region} in base_url: warnings %q, want the placeholder warning", w)
	}
	if strings.Contains(warnings(m), bedrock[:12]) {
		t.Errorf("the warning holds the key")
	}
	rotated := "ABSK" + strings.Repeat("Zt3wN8cF5hJ1", 4)
	m = s.MustCall(t, 200, s.RootToken, "PUT", "byok/tenants/acme/keys/bedrock/production/rotate",
		map[string]any{"key_value": rotated})
	if w := warnings(m); !strings.Contains(w, "placeholder") {
		t.Errorf("bedrock rotate with {region} in base_url: warnings %q, want the placeholder warning", w)
	}
	m = s.MustCall(t, 200, s.RootToken, "PUT", "byok/tenants/acme/keys/openai/production",
		map[string]any{"key_value": "sk-proj-" + strings.Repeat("Hq4rT8yU2iO6", 4)})
	if w, _ := m["warnings"].([]any); len(w) != 0 {
		t.Errorf("openai key write: warnings %v, want none", w)
	}
	entry := Data(s.MustCall(t, 200, s.RootToken, "GET", "byok/providers/bedrock", nil))
	for _, k := range []string{"name", "builtin", "overridden"} {
		delete(entry, k)
	}
	entry["base_url"] = "https://bedrock-runtime.eu-central-1.amazonaws.com"
	if code, m := s.Call(t, s.RootToken, "PUT", "byok/providers/bedrock", entry); code >= 300 {
		t.Fatalf("bedrock base_url override: status %d %v", code, m)
	}
	m = s.MustCall(t, 200, s.RootToken, "PUT", "byok/tenants/acme/keys/bedrock/production",
		map[string]any{"key_value": "ABSK" + strings.Repeat("Mb6nV1xC9zA5", 4)})
	if w, _ := m["warnings"].([]any); len(w) != 0 {
		t.Errorf("bedrock key write once base_url is set: warnings %v, want none", w)
	}
}

// TestKeyBedrockIAMHTTP: Bedrock IAM keys ("<access key id>:<secret access
// key>[:<session token>]") through Vault's HTTP API. Well-formed ones are
// stored, served whole by creds, masked to the access key ID alone and
// validated; temporary ones get the expiry recommendation. Each malformed
// one (write and rotate) is a 400 naming key_value that quotes none of it,
// stores nothing, and leaves no trace in the plugin's log; so is a metadata
// region that is not a region name. Bedrock API keys keep working.
func TestKeyBedrockIAMHTTP(t *testing.T) {
	s := newSim(t)
	root := s.RootToken
	const path = "byok/tenants/acme/keys/bedrock/production"
	id := "AKIAIOSFODNN7EXAMPLE"
	secret := "CANARYiamGo0123456789abcdefghijklmnopqrs" // 40 characters
	token := "CANARYtokenGo" + strings.Repeat("Zm9vYmFy", 12) + "=="
	if len(secret) != 40 {
		t.Fatalf("test secret is %d characters", len(secret))
	}
	canaries := []string{secret, token}

	m := s.MustCall(t, 200, root, "PUT", path, map[string]any{"key_value": id + ":" + secret,
		"metadata": map[string]any{"region": "eu-west-1"}})
	b, _ := json.Marshal(m)
	noCanaries(t, "write response", b, canaries)
	d := Data(s.MustCall(t, 200, root, "GET", path, nil))
	v, _ := d["validation"].(map[string]any)
	if jstr(d, "masked_value") != id+":..." || v["is_valid"] != true || jnum(v, "strength_score") < 90 {
		t.Errorf("IAM key read: masked %q validation %v", jstr(d, "masked_value"), v)
	}
	b, _ = json.Marshal(d)
	noCanaries(t, "key read", b, canaries)
	c := Data(s.MustCall(t, 200, root, "GET", "byok/tenants/acme/creds/bedrock", nil))
	if jstr(c, "api_key") != id+":"+secret {
		t.Errorf("creds does not serve the IAM key whole")
	}

	temp := "ASIAIOSFODNN7EXAMPLE:" + secret + ":" + token
	s.MustCall(t, 200, root, "PUT", path+"/rotate", map[string]any{"key_value": temp})
	d = Data(s.MustCall(t, 200, root, "GET", path, nil))
	v, _ = d["validation"].(map[string]any)
	if jstr(d, "masked_value") != "ASIAIOSFODNN7EXAMPLE:..." || v["is_valid"] != true ||
		!strings.Contains(fmt.Sprint(v["recommendations"]), "temporary credentials") {
		t.Errorf("temporary IAM key read: masked %q validation %v", jstr(d, "masked_value"), v)
	}
	if c = Data(s.MustCall(t, 200, root, "GET", "byok/tenants/acme/creds/bedrock", nil)); jstr(c, "api_key") != temp {
		t.Errorf("creds does not serve the temporary IAM key whole")
	}

	before := s.RawStorage()
	bad := []struct {
		path  string
		body  map[string]any
		field string
	}{
		{path, map[string]any{"key_value": id}, "key_value"},
		{path, map[string]any{"key_value": id[:19] + ":" + secret}, "key_value"},
		{path, map[string]any{"key_value": "AKIAIOSFODNN7EXAMP1E:" + secret}, "key_value"},
		{path, map[string]any{"key_value": id + ":" + secret + "x"}, "key_value"},
		{path, map[string]any{"key_value": id + ":" + secret[:39] + "-"}, "key_value"},
		{path, map[string]any{"key_value": id + ":" + secret + ":" + token}, "key_value"},
		{path, map[string]any{"key_value": "ASIAIOSFODNN7EXAMPLE:" + secret}, "key_value"},
		{path, map[string]any{"key_value": "ASIAIOSFODNN7EXAMPLE:" + secret + ":" + token + "-"}, "key_value"},
		{path, map[string]any{"key_value": "ABSKCANARY:" + secret}, "key_value"},
		{path + "/rotate", map[string]any{"key_value": id + ":" + secret[:20]}, "key_value"},
		{path, map[string]any{"key_value": id + ":" + secret, "metadata": map[string]any{"region": "EU_WEST"}}, "metadata"},
	}
	for i, c := range bad {
		code, m := s.Call(t, root, "PUT", c.path, c.body)
		if code != 400 || !strings.Contains(Errors(m), "'"+c.field+"'") {
			t.Errorf("case %d: %d %v, want 400 naming %s", i, code, m, c.field)
		}
		b, _ := json.Marshal(m)
		noCanaries(t, "error response", b, canaries)
	}
	if after := s.RawStorage(); !reflect.DeepEqual(before, after) {
		t.Errorf("a refused IAM key changed storage")
	}

	// A Bedrock API key still goes in, with the usual mask.
	s.MustCall(t, 200, root, "PUT", path, map[string]any{"key_value": "ABSK" + strings.Repeat("Qx7mP2vL9kR4", 4)})
	if d = Data(s.MustCall(t, 200, root, "GET", path, nil)); jstr(d, "masked_value") != "ABSKQx7...kR4" {
		t.Errorf("ABSK key after IAM keys: masked %q", jstr(d, "masked_value"))
	}
	noCanaries(t, "plugin log", []byte(s.PluginLog()), canaries)
}
