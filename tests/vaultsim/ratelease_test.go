// SPDX-License-Identifier: MPL-2.0

package vaultsim

// Rate leases (tenants/<t>/rate-lease) through Vault's HTTP API: agents take
// slices of the current minute of a tenant's rpm_limit or tpm_limit, or of a
// key's rate_limit (kind "key" with provider and key_type), and the
// plugin counts what every node was granted so that nodes together never get
// more than the limit in one window. The window's rollover to the second is
// tested in tests/unit/test_ratelease.c (fake clock); here the real clock.

import (
	"strings"
	"sync"
	"testing"
	"time"
)

func rateLease(t *testing.T, s *Sim, token, tenant, kind string, amount int, node string) map[string]any {
	t.Helper()
	return Data(s.MustCall(t, 200, token, "PUT", "byok/tenants/"+tenant+"/rate-lease",
		map[string]any{"kind": kind, "amount": amount, "node": node}))
}

// waitWindow returns at least secs seconds before the end of the current minute.
func waitWindow(secs int64) {
	now := time.Now().Unix()
	if 60-now%60 < secs {
		time.Sleep(time.Duration(60-now%60+1) * time.Second)
	}
}

// Several nodes asking at once are granted the limit in total, no more.
func TestRateLeaseGrantsSumToLimit(t *testing.T) {
	s := newSim(t)
	s.MustCall(t, 200, s.RootToken, "PUT", "byok/tenants/acme/settings",
		map[string]any{"rpm_limit": 50, "tpm_limit": 1000})
	waitWindow(20)
	var mu sync.Mutex
	var wg sync.WaitGroup
	sum := map[string]int{}
	ends := map[float64]bool{}
	for n := 0; n < 8; n++ {
		wg.Add(1)
		go func(n int) {
			defer wg.Done()
			node := "node-" + string(rune('a'+n))
			for i := 0; i < 5; i++ {
				for _, kind := range []string{"rpm", "tpm"} {
					amount := 3
					if kind == "tpm" {
						amount = 70
					}
					d := rateLease(t, s, s.RootToken, "acme", kind, amount, node)
					mu.Lock()
					sum[kind] += int(fnum(t, d, "granted"))
					ends[fnum(t, d, "window_end")] = true
					if d["unlimited"] != false || int(fnum(t, d, "limit")) != map[string]int{"rpm": 50, "tpm": 1000}[kind] {
						t.Errorf("%s lease: %v", kind, d)
					}
					mu.Unlock()
				}
			}
		}(n)
	}
	wg.Wait()
	if len(ends) != 1 {
		t.Fatalf("the window changed during the test: %v", ends)
	}
	for end := range ends {
		if now := float64(time.Now().Unix()); end <= now || end > now+60 || int64(end)%60 != 0 {
			t.Errorf("window_end %v: not the end of the current minute (now %v)", end, now)
		}
	}
	if sum["rpm"] != 50 || sum["tpm"] != 1000 {
		t.Errorf("granted rpm %d (want 50), tpm %d (want 1000)", sum["rpm"], sum["tpm"])
	}
	d := rateLease(t, s, s.RootToken, "acme", "rpm", 1, "node-z")
	if fnum(t, d, "granted") != 0 || fnum(t, d, "remaining") != 0 {
		t.Errorf("after the limit: %v", d)
	}
	// Nothing of it is in storage.
	for k := range s.RawStorage() {
		if strings.Contains(k, "rate") {
			t.Errorf("rate-lease left a storage key: %s", k)
		}
	}
}

// A tenant without the limit is "unlimited"; so is one that does not exist (nothing kept).
func TestRateLeaseUnlimited(t *testing.T) {
	s := newSim(t)
	s.MustCall(t, 200, s.RootToken, "PUT", "byok/tenants/acme/settings", map[string]any{"rpm_limit": 5})
	for _, c := range []struct{ tenant, kind string }{{"acme", "tpm"}, {"ghost", "rpm"}} {
		d := rateLease(t, s, s.RootToken, c.tenant, c.kind, 40, "n1")
		if d["unlimited"] != true || fnum(t, d, "granted") != 40 || fnum(t, d, "limit") != 0 {
			t.Errorf("%s %s: %v", c.tenant, c.kind, d)
		}
	}
	if _, ok := s.RawStorage()["tenants/ghost/settings"]; ok {
		t.Errorf("a lease made up a tenant")
	}
}

// Kind "key": a key's rate_limit is shared like the tenant's limits, per
// provider × key_type; a key without one (or no key) is "unlimited".
func TestRateLeaseKey(t *testing.T) {
	s := newSim(t)
	s.MustCall(t, 200, s.RootToken, "PUT", "byok/tenants/acme/keys/openai/production",
		map[string]any{"key_value": "sk-ratelease-test-0001", "rate_limit": 6})
	s.MustCall(t, 200, s.RootToken, "PUT", "byok/tenants/acme/keys/openai/batch",
		map[string]any{"key_value": "sk-ratelease-test-0002"})
	keyLease := func(keyType string, amount int, node string) map[string]any {
		return Data(s.MustCall(t, 200, s.RootToken, "PUT", "byok/tenants/acme/rate-lease",
			map[string]any{"kind": "key", "provider": "openai", "key_type": keyType,
				"amount": amount, "node": node}))
	}
	waitWindow(20)
	var mu sync.Mutex
	var wg sync.WaitGroup
	sum := 0
	for n := 0; n < 4; n++ {
		wg.Add(1)
		go func(n int) {
			defer wg.Done()
			for i := 0; i < 3; i++ {
				d := keyLease("production", 1, "node-"+string(rune('a'+n)))
				mu.Lock()
				sum += int(fnum(t, d, "granted"))
				if d["unlimited"] != false || fnum(t, d, "limit") != 6 || d["kind"] != "key" {
					t.Errorf("key lease: %v", d)
				}
				mu.Unlock()
			}
		}(n)
	}
	wg.Wait()
	if sum != 6 {
		t.Errorf("granted %d of the key's rate_limit 6 across four nodes", sum)
	}
	// The tenant's rpm (no rpm_limit) and the key without a rate_limit are unlimited.
	if d := rateLease(t, s, s.RootToken, "acme", "rpm", 9, "n1"); d["unlimited"] != true {
		t.Errorf("rpm of a tenant without rpm_limit: %v", d)
	}
	for _, kt := range []string{"batch", "absent"} {
		if d := keyLease(kt, 9, "n1"); d["unlimited"] != true || fnum(t, d, "granted") != 9 {
			t.Errorf("key %s: %v", kt, d)
		}
	}
	for k := range s.RawStorage() {
		if strings.Contains(k, "rate") {
			t.Errorf("rate-lease left a storage key: %s", k)
		}
	}
}

// Every bad field is a 400 naming it; nothing is counted.
func TestRateLeaseValidation(t *testing.T) {
	s := newSim(t)
	s.MustCall(t, 200, s.RootToken, "PUT", "byok/tenants/acme/settings", map[string]any{"rpm_limit": 3})
	waitWindow(10)
	for _, c := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{"kind": "rpd", "amount": 1, "node": "n1"}, "'kind'"},
		{map[string]any{"amount": 1, "node": "n1"}, "'kind'"},
		{map[string]any{"kind": "rpm", "amount": 0, "node": "n1"}, "'amount'"},
		{map[string]any{"kind": "rpm", "amount": 1000000001, "node": "n1"}, "'amount'"},
		{map[string]any{"kind": "rpm", "amount": "many", "node": "n1"}, "'amount'"},
		{map[string]any{"kind": "rpm", "node": "n1"}, "'amount'"},
		{map[string]any{"kind": "rpm", "amount": 1, "node": "n 1"}, "'node'"},
		{map[string]any{"kind": "rpm", "amount": 1, "node": strings.Repeat("n", 129)}, "'node'"},
		{map[string]any{"kind": "rpm", "amount": 1}, "'node'"},
		{map[string]any{"kind": "key", "key_type": "production", "amount": 1, "node": "n1"}, "'provider'"},
		{map[string]any{"kind": "key", "provider": "Open AI", "key_type": "production", "amount": 1, "node": "n1"}, "'provider'"},
		{map[string]any{"kind": "key", "provider": "openai", "amount": 1, "node": "n1"}, "'key_type'"},
		{map[string]any{"kind": "key", "provider": "openai", "key_type": strings.Repeat("k", 64), "amount": 1, "node": "n1"}, "'key_type'"},
		{map[string]any{"kind": "rpm", "provider": "openai", "amount": 1, "node": "n1"}, "'provider'"},
	} {
		code, m := s.Call(t, s.RootToken, "PUT", "byok/tenants/acme/rate-lease", c.body)
		if code != 400 || !strings.Contains(Errors(m), c.field) {
			t.Errorf("%v: %d %q, want 400 naming %s", c.body, code, Errors(m), c.field)
		}
	}
	if code, _ := s.Call(t, s.RootToken, "PUT", "byok/tenants/Bad!/rate-lease",
		map[string]any{"kind": "rpm", "amount": 1, "node": "n1"}); code != 400 && code != 404 {
		t.Errorf("bad tenant name: %d", code)
	}
	if d := rateLease(t, s, s.RootToken, "acme", "rpm", 9, "n1"); fnum(t, d, "granted") != 3 {
		t.Errorf("after bad requests: %v", d)
	}
}

// The agent policy may take rate leases; a tenant (even for itself) may not.
func TestRateLeasePolicies(t *testing.T) {
	s := newIsoSim(t)
	s.MustCall(t, 200, s.RootToken, "PUT", "byok/tenants/acme/settings", map[string]any{"rpm_limit": 3})
	waitWindow(10)
	rateLease(t, s.Sim, s.agent, "acme", "rpm", 1, "n1")
	body := map[string]any{"kind": "rpm", "amount": 1, "node": "n1"}
	for _, tok := range []struct{ who, token string }{{"tenant A", s.tenantA}, {"tenant B", s.tenantB}, {"no-metadata", s.nobody}} {
		if code, _ := s.Call(t, tok.token, "PUT", "byok/tenants/acme/rate-lease", body); code != 403 {
			t.Errorf("%s on acme's rate-lease: %d, want 403", tok.who, code)
		}
	}
	// The refused ones took nothing.
	if d := rateLease(t, s.Sim, s.agent, "acme", "rpm", 5, "n1"); fnum(t, d, "granted") != 2 {
		t.Errorf("after refused requests: %v", d)
	}
}
