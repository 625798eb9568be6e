// SPDX-License-Identifier: MPL-2.0

package vaultsim

// Tenant isolation through Vault's HTTP API with the real policy files
// (policies/byok-*.hcl) loaded into the stand-in's ACL engine: what a tenant
// token, an agent token and an admin token can and cannot do, and that no
// provider key is ever at rest in the clear, in a response other than creds,
// or in the plugin's log.

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

type isoSim struct {
	*Sim
	admin, tenantA, tenantB, agent, nobody string
	canaries                               []string
}

func newIsoSim(t *testing.T, opts ...Option) *isoSim {
	s := &isoSim{Sim: newSim(t, opts...)}
	s.PutPolicyFile(t, "byok-admin", "policies/byok-admin.hcl")
	s.PutPolicyFile(t, "byok-tenant", "policies/byok-tenant.hcl")
	s.PutPolicyFile(t, "byok-agent", "policies/byok-agent.hcl")
	s.admin = s.CreateToken(t, []string{"byok-admin"}, nil)
	s.tenantA = s.CreateToken(t, []string{"byok-tenant"}, map[string]string{"tenant": "acme"})
	s.tenantB = s.CreateToken(t, []string{"byok-tenant"}, map[string]string{"tenant": "globex"})
	s.agent = s.CreateToken(t, []string{"byok-agent"}, nil)
	// A tenant-policy token whose entity has no tenant metadata gets nothing.
	s.nobody = s.CreateToken(t, []string{"byok-tenant"}, map[string]string{"team": "x"})
	s.canaries = []string{
		"sk-CANARYisoA00000000000000000000000000000000000A",
		"sk-CANARYisoB00000000000000000000000000000000000B",
		"sk-ant-CANARYisoC0000000000000000000000000000000C",
	}
	return s
}

// expect calls and checks the status; every non-creds response is scanned for canaries.
func (s *isoSim) expect(t *testing.T, want int, who, token, method, path string, body any) map[string]any {
	t.Helper()
	code, m := checkedCall(t, s.Sim, s.canaries, token, method, path, body)
	if code != want {
		t.Errorf("%s: %s %s: status %d, want %d (%s)", who, method, path, code, want, Errors(m))
	}
	return m
}

func TestIsolationMatrix(t *testing.T) {
	s := newIsoSim(t)
	a, b, c := s.canaries[0], s.canaries[1], s.canaries[2]
	// Each tenant stores its own keys with its own token.
	s.expect(t, 200, "tenant A", s.tenantA, "PUT", "byok/tenants/acme/keys/openai/production", map[string]any{"key_value": a})
	s.expect(t, 200, "tenant A", s.tenantA, "PUT", "byok/tenants/acme/keys/anthropic/production", map[string]any{"key_value": c})
	s.expect(t, 200, "tenant B", s.tenantB, "PUT", "byok/tenants/globex/keys/openai/production", map[string]any{"key_value": b})

	// Tenant A against tenant B: everything is denied.
	bPaths := []struct{ method, path string }{
		{"LIST", "byok/tenants/globex/keys"},
		{"LIST", "byok/tenants/globex/keys/openai"},
		{"GET", "byok/tenants/globex/keys/openai/production"},
		{"PUT", "byok/tenants/globex/keys/openai/production"},
		{"PUT", "byok/tenants/globex/keys/openai/staging"},
		{"PUT", "byok/tenants/globex/keys/openai/production/rotate"},
		{"DELETE", "byok/tenants/globex/keys/openai/production"},
		{"GET", "byok/tenants/globex/settings"},
		{"PUT", "byok/tenants/globex/settings"},
		{"GET", "byok/tenants/globex/usage"},
		{"PUT", "byok/tenants/globex/usage"},
		{"PUT", "byok/tenants/globex/budget-lease"},
		{"PUT", "byok/tenants/globex/rate-lease"},
		{"GET", "byok/tenants/globex"},
		{"DELETE", "byok/tenants/globex"},
		{"GET", "byok/tenants/globex/creds/openai"},
	}
	body := map[string]any{"key_value": "sk-INTRUDER0000000000000000000000000000000000", "rpm_limit": 1}
	for _, p := range bPaths {
		s.expect(t, 403, "tenant A on B", s.tenantA, p.method, p.path, body)
		s.expect(t, 403, "no-metadata token", s.nobody, p.method, p.path, body)
	}
	// Tenant A cannot read creds even for itself, nor touch mount-wide paths.
	for _, p := range []struct{ method, path string }{
		{"GET", "byok/tenants/acme/creds/openai"},
		{"GET", "byok/tenants/acme/creds/anthropic"},
		{"PUT", "byok/tenants/acme/budget-lease"},
		{"PUT", "byok/tenants/acme/rate-lease"},
		{"DELETE", "byok/tenants/acme"},
		{"LIST", "byok/tenants"},
		{"PUT", "byok/config"},
		{"GET", "byok/config"},
		{"PUT", "byok/config/rotate-root"},
		{"PUT", "byok/providers/evil"},
		{"DELETE", "byok/providers/openai"},
	} {
		s.expect(t, 403, "tenant A", s.tenantA, p.method, p.path, map[string]any{"base_url": "https://evil.example"})
	}
	// What tenant A may do on its own paths.
	s.expect(t, 200, "tenant A", s.tenantA, "GET", "byok/tenants/acme/keys/openai/production", nil)
	s.expect(t, 200, "tenant A", s.tenantA, "LIST", "byok/tenants/acme/keys", nil)
	s.expect(t, 200, "tenant A", s.tenantA, "LIST", "byok/tenants/acme/keys/openai", nil)
	s.expect(t, 200, "tenant A", s.tenantA, "PUT", "byok/tenants/acme/settings", map[string]any{"rpm_limit": 30})
	s.expect(t, 200, "tenant A", s.tenantA, "GET", "byok/tenants/acme/settings", nil)
	s.expect(t, 200, "tenant A", s.tenantA, "GET", "byok/tenants/acme/usage", nil)
	s.expect(t, 200, "tenant A", s.tenantA, "GET", "byok/tenants/acme", nil)
	s.expect(t, 200, "tenant A", s.tenantA, "GET", "byok/providers/openai", nil)
	s.expect(t, 200, "tenant A", s.tenantA, "PUT", "byok/tenants/acme/keys/anthropic/production/rotate",
		map[string]any{"key_value": c})
	s.expect(t, 204, "tenant A", s.tenantA, "DELETE", "byok/tenants/acme/keys/anthropic/production", nil)

	// The agent reads creds but writes nothing but usage and budget leases.
	m := s.expect(t, 200, "agent", s.agent, "GET", "byok/tenants/acme/creds/openai", nil)
	if jstr(Data(m), "api_key") != a {
		t.Errorf("agent creds for acme: wrong key")
	}
	m = s.expect(t, 200, "agent", s.agent, "GET", "byok/tenants/globex/creds/openai", nil)
	if jstr(Data(m), "api_key") != b {
		t.Errorf("agent creds for globex: wrong key")
	}
	for _, p := range []struct{ method, path string }{
		{"PUT", "byok/tenants/acme/keys/openai/production"},
		{"PUT", "byok/tenants/acme/keys/openai/new"},
		{"PUT", "byok/tenants/acme/keys/openai/production/rotate"},
		{"DELETE", "byok/tenants/acme/keys/openai/production"},
		{"GET", "byok/tenants/acme/keys/openai/production"},
		{"PUT", "byok/tenants/acme/settings"},
		{"DELETE", "byok/tenants/acme"},
		{"PUT", "byok/config"},
		{"PUT", "byok/config/rotate-root"},
		{"PUT", "byok/providers/openai"},
	} {
		s.expect(t, 403, "agent", s.agent, p.method, p.path, body)
	}
	s.expect(t, 200, "agent", s.agent, "PUT", "byok/tenants/acme/usage", map[string]any{
		"batch_id": "n1-1", "records": []any{map[string]any{"ts": "2026-11-25T20:00:00Z",
			"provider": "openai", "model": "gpt-4o-mini", "requests": 1}}})
	s.expect(t, 200, "agent", s.agent, "GET", "byok/tenants/acme/settings", nil)
	s.expect(t, 200, "agent", s.agent, "LIST", "byok/tenants/acme/keys", nil)
	s.expect(t, 200, "agent", s.agent, "PUT", "byok/tenants/acme/budget-lease", map[string]any{
		"node": "n1", "unreported_usd": 0.5, "request_usd": 2})
	s.expect(t, 200, "agent", s.agent, "PUT", "byok/tenants/acme/rate-lease", map[string]any{
		"kind": "rpm", "amount": 1, "node": "n1"})

	// The admin manages config, providers, tenants; never creds.
	s.expect(t, 204, "admin", s.admin, "PUT", "byok/config", map[string]any{"creds_ttl": "10m"})
	s.expect(t, 200, "admin", s.admin, "GET", "byok/config", nil)
	s.expect(t, 204, "admin", s.admin, "PUT", "byok/providers/custom1", map[string]any{
		"display_name": "Custom", "api_style": "openai", "base_url": "https://llm.example.com/v1",
		"regions": []string{"eu"}, "models": []any{}})
	s.expect(t, 200, "admin", s.admin, "LIST", "byok/tenants", nil)
	s.expect(t, 200, "admin", s.admin, "GET", "byok/tenants/globex/keys/openai/production", nil)
	s.expect(t, 200, "admin", s.admin, "PUT", "byok/config/rotate-root", nil)
	s.expect(t, 403, "admin", s.admin, "GET", "byok/tenants/acme/creds/openai", nil)
	s.expect(t, 200, "admin", s.admin, "PUT", "byok/tenants/doomed/keys/openai/production",
		map[string]any{"key_value": "sk-doomed00000000000000000000000000000000000"})
	s.expect(t, 204, "admin", s.admin, "DELETE", "byok/tenants/doomed", nil)

	// Nothing tenant A tried changed tenant B: B's key is as B wrote it.
	m = s.expect(t, 200, "agent", s.agent, "GET", "byok/tenants/globex/creds/openai", nil)
	if jstr(Data(m), "api_key") != b || jnum(Data(m), "version") != 1 {
		t.Errorf("tenant B's key changed")
	}
	m = s.expect(t, 200, "tenant B", s.tenantB, "GET", "byok/tenants/globex/settings", nil)
	if jnum(Data(m), "rpm_limit") != 0 {
		t.Errorf("tenant B's settings changed: %v", Data(m))
	}
	if _, ok := s.RawStorage()["tenants/globex/keys/openai/staging"]; ok {
		t.Errorf("tenant A created a key for tenant B")
	}
}

func TestNoPlaintextAtRest(t *testing.T) {
	s := newIsoSim(t)
	tenants := []string{"acme", "globex", "initech", "umbrella"}
	var all []string
	for i, tn := range tenants {
		for j, p := range []string{"openai", "mistral"} {
			k := fmt.Sprintf("sk-CANARYrest%d%d%s000000000000000000000000000%d%d", i, j, tn, i, j)
			all = append(all, k)
			s.expect(t, 200, "admin", s.admin, "PUT", fmt.Sprintf("byok/tenants/%s/keys/%s/production", tn, p),
				map[string]any{"key_value": k, "name": "n"})
		}
	}
	s.canaries = all
	s.expect(t, 200, "admin", s.admin, "PUT", "byok/config/rotate-root", nil)
	s.expect(t, 200, "admin", s.admin, "PUT", "byok/tenants/acme/keys/openai/production/rotate",
		map[string]any{"key_value": "sk-CANARYrestRotated00000000000000000000000000", "grace_period": "1h"})
	all = append(all, "sk-CANARYrestRotated00000000000000000000000000")
	s.canaries = all
	// Every read-like response other than creds is scanned by expect().
	for _, tn := range tenants {
		s.expect(t, 200, "admin", s.admin, "GET", "byok/tenants/"+tn, nil)
		s.expect(t, 200, "admin", s.admin, "GET", "byok/tenants/"+tn+"/keys/openai/production", nil)
		s.expect(t, 200, "admin", s.admin, "LIST", "byok/tenants/"+tn+"/keys/mistral", nil)
		m := s.expect(t, 200, "agent", s.agent, "GET", "byok/tenants/"+tn+"/creds/mistral", nil)
		if !strings.HasPrefix(jstr(Data(m), "api_key"), "sk-CANARYrest") {
			t.Errorf("creds for %s: no key", tn)
		}
	}
	s.ReloadPlugin(t)
	s.expect(t, 200, "agent", s.agent, "GET", "byok/tenants/acme/creds/openai", nil)

	// Storage is the whole of what a snapshot holds: not even a masked value of
	// a short key. An empty snapshot would pass the scan without holding anything.
	storage := s.RawStorage()
	if len(storage) == 0 {
		t.Fatalf("empty storage snapshot: nothing to scan")
	}
	var raw []byte
	for k, v := range storage {
		raw = append(raw, k...)
		raw = append(raw, v...)
	}
	noCanaries(t, "raw storage", raw, all)
	noCanaries(t, "plugin log", []byte(s.PluginLog()), all)
}

// The rendered per-tenant policy grants what the templated one does, for one tenant only.
func TestRenderedTenantPolicy(t *testing.T) {
	root := repoRoot(t)
	script := filepath.Join(root, "policies", "render-tenant-policy.sh")
	out, err := exec.Command(script, "acme").Output()
	if err != nil {
		t.Fatalf("render-tenant-policy.sh acme: %v", err)
	}
	if strings.Contains(string(out), "{{") {
		t.Fatalf("template left in rendered policy")
	}
	for _, bad := range []string{"ACME", "a*", "a+b", "acme/../globex", "", "-x", strings.Repeat("a", 64)} {
		cmd := exec.Command(script, bad)
		cmd.Stderr = nil
		if err := cmd.Run(); err == nil {
			t.Errorf("render-tenant-policy.sh %q: accepted", bad)
		}
	}
	s := newIsoSim(t)
	s.PutPolicy(t, "byok-tenant-acme", string(out))
	tok := s.CreateToken(t, []string{"byok-tenant-acme"}, nil)
	s.expect(t, 200, "rendered", tok, "PUT", "byok/tenants/acme/keys/openai/production",
		map[string]any{"key_value": s.canaries[0]})
	s.expect(t, 200, "rendered", tok, "GET", "byok/tenants/acme/keys/openai/production", nil)
	s.expect(t, 403, "rendered", tok, "GET", "byok/tenants/acme/creds/openai", nil)
	s.expect(t, 403, "rendered", tok, "PUT", "byok/tenants/globex/keys/openai/production",
		map[string]any{"key_value": s.canaries[1]})
	s.expect(t, 403, "rendered", tok, "GET", "byok/tenants/globex/settings", nil)
}

// Grants that would reach a tenant's creds if added to a tenant token by
// another policy. Vault lets one rule win by priority (the longest "*" prefix
// against "+" patterns: later first wildcard, then fewer "+"); "deny wins" only
// for the same pattern, so byok-tenant denies creds at the tenant's own id.
var credsGrants = []string{
	`path "byok/*" { capabilities = ["read"] }`,
	`path "byok/tenants/*" { capabilities = ["read"] }`,
	`path "byok/tenants/acme/*" { capabilities = ["read", "list"] }`,
	`path "byok/tenants/acme/cr*" { capabilities = ["read"] }`,
	`path "byok/tenants/acme/creds/*" { capabilities = ["read"] }`,
	`path "byok/tenants/acme/creds/+" { capabilities = ["read"] }`,
	`path "byok/tenants/+/creds/*" { capabilities = ["read"] }`,
	`path "byok/tenants/+/creds/+" { capabilities = ["read"] }`,
	`path "byok/tenants/+/*" { capabilities = ["read"] }`,
	`path "byok/+/acme/creds/*" { capabilities = ["read"] }`,
	`path "byok/+/+/creds/+" { capabilities = ["read"] }`,
}

func TestTenantCredsDenyNotOutranked(t *testing.T) {
	s := newIsoSim(t)
	s.expect(t, 200, "A", s.tenantA, "PUT", "byok/tenants/acme/keys/openai/production", map[string]any{"key_value": s.canaries[0]})
	out, err := exec.Command(filepath.Join(repoRoot(t), "policies", "render-tenant-policy.sh"), "acme").Output()
	if err != nil {
		t.Fatalf("render-tenant-policy.sh acme: %v", err)
	}
	s.PutPolicy(t, "byok-tenant-acme", string(out))
	for _, extra := range credsGrants {
		s.PutPolicy(t, "extra", extra)
		for _, tc := range []struct {
			name string
			tok  string
		}{
			{"templated", s.CreateToken(t, []string{"byok-tenant", "extra"}, map[string]string{"tenant": "acme"})},
			{"rendered", s.CreateToken(t, []string{"byok-tenant-acme", "extra"}, nil)},
		} {
			if code, _ := s.Call(t, tc.tok, "GET", "byok/tenants/acme/creds/openai", nil); code != 403 {
				t.Errorf("%s byok-tenant + %s: creds status %d, want 403", tc.name, extra, code)
			}
			// The tenant's own grants still apply.
			s.expect(t, 200, tc.name+" + extra", tc.tok, "GET", "byok/tenants/acme/keys/openai/production", nil)
		}
	}
	// The agent policy is untouched by the tenant's denies.
	s.expect(t, 200, "agent", s.agent, "GET", "byok/tenants/acme/creds/openai", nil)
}

// A tenant entity whose metadata is not a tenant id. Current Vault drops a
// templated path whose rendered value holds "*" or "+" (the stand-in's
// default), so such a token gets nothing; older Vaults substitute it as is and
// the token reaches other tenants, which is why docs/SECURITY.md requires the
// metadata to match the tenant-name rule. A valid id is confined on both.
func TestTenantMetadataInjection(t *testing.T) {
	globex := []struct{ method, path string }{
		{"GET", "byok/tenants/globex"},
		{"GET", "byok/tenants/globex/keys/openai/production"},
		{"LIST", "byok/tenants/globex/keys"},
		{"GET", "byok/tenants/globex/settings"},
		{"PUT", "byok/tenants/globex/settings"},
		{"GET", "byok/tenants/globex/creds/openai"},
	}
	body := map[string]any{"rpm_limit": 3}
	for _, verbatim := range []bool{false, true} {
		var opts []Option
		if verbatim {
			opts = append(opts, WithVerbatimTemplates())
		}
		s := newIsoSim(t, opts...)
		s.expect(t, 200, "B", s.tenantB, "PUT", "byok/tenants/globex/keys/openai/production", map[string]any{"key_value": s.canaries[1]})
		// Valid ids at the edges of the rule are confined to themselves.
		for _, md := range []string{"a", "acme_1-x", strings.Repeat("z", 63)} {
			tok := s.CreateToken(t, []string{"byok-tenant"}, map[string]string{"tenant": md})
			for _, p := range globex {
				s.expect(t, 403, fmt.Sprintf("verbatim=%v tenant=%q", verbatim, md), tok, p.method, p.path, body)
			}
			s.expect(t, 403, "own creds", tok, "GET", "byok/tenants/"+md+"/creds/openai", nil)
		}
		for _, md := range []string{"*", "glob*", "+", "g+x", "a*b"} {
			tok := s.CreateToken(t, []string{"byok-tenant"}, map[string]string{"tenant": md})
			reached := 0
			for _, p := range globex {
				code, _ := checkedCall(t, s.Sim, s.canaries, tok, p.method, p.path, body)
				if code != 403 {
					reached++
				}
			}
			if !verbatim && reached > 0 {
				t.Errorf("tenant=%q: %d of globex's paths allowed, want none", md, reached)
			}
			if verbatim && (md == "+" || md == "glob*") && reached == 0 {
				// If this starts failing the policy no longer depends on valid
				// metadata: update docs/SECURITY.md and policies/README.md.
				t.Errorf("verbatim tenant=%q reached nothing (docs say it does)", md)
			}
		}
	}
}

// An entity whose tenant metadata is present but empty: Vault renders the
// template as "" (it drops a rule only for a missing key), so byok-tenant's
// rules land on byok/tenants/ and byok/tenants//..., which name no tenant.
func TestEmptyTenantMetadata(t *testing.T) {
	s := newIsoSim(t)
	s.expect(t, 200, "B", s.tenantB, "PUT", "byok/tenants/globex/keys/openai/production", map[string]any{"key_value": s.canaries[1]})
	tok := s.CreateToken(t, []string{"byok-tenant"}, map[string]string{"tenant": ""})
	for _, p := range []struct{ method, path string }{
		{"GET", "byok/tenants/globex"},
		{"GET", "byok/tenants/globex/keys/openai/production"},
		{"LIST", "byok/tenants/globex/keys"},
		{"GET", "byok/tenants/globex/settings"},
		{"PUT", "byok/tenants/globex/settings"},
		{"GET", "byok/tenants/globex/creds/openai"},
		{"LIST", "byok/tenants"},
	} {
		s.expect(t, 403, "tenant=\"\"", tok, p.method, p.path, map[string]any{"rpm_limit": 3})
	}
	// The one rule that renders to a real path, read on byok/tenants/, is
	// let through by the ACL and refused by the plugin (tenants/ lists only).
	if code, _ := checkedCall(t, s.Sim, s.canaries, tok, "GET", "byok/tenants/", nil); code == 200 || code == 403 {
		t.Errorf("tenant=\"\": GET byok/tenants/: status %d, want the plugin's refusal", code)
	}
}

// Vault serves its API through Go's http.ServeMux, which answers a path with
// "//", "." or ".." segments with a 301 to the cleaned path before any
// handler or ACL sees it (hashicorp/vault#18573). The ACL is never asked about
// tenants/acme/keys/../../globex/...: only the cleaned path is checked.
func TestUncleanPathRedirected(t *testing.T) {
	s := newIsoSim(t)
	s.expect(t, 200, "A", s.tenantA, "PUT", "byok/tenants/acme/keys/openai/production", map[string]any{"key_value": s.canaries[0]})
	s.expect(t, 200, "B", s.tenantB, "PUT", "byok/tenants/globex/keys/openai/production", map[string]any{"key_value": s.canaries[1]})
	c, base := s.Server.HTTPClient()
	nc := *c
	nc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for _, p := range []struct{ method, path, clean string }{
		{"GET", "byok/tenants/acme/keys/../../globex/settings", "/v1/byok/tenants/globex/settings"},
		{"GET", "byok/tenants/acme/keys/openai/../../../globex/keys/openai/production", "/v1/byok/tenants/globex/keys/openai/production"},
		{"PUT", "byok/tenants/acme/keys/./openai/production", "/v1/byok/tenants/acme/keys/openai/production"},
		{"GET", "byok/tenants/acme//keys/openai/production?version=1", "/v1/byok/tenants/acme/keys/openai/production?version=1"},
		{"LIST", "byok/tenants/acme/keys/../../globex/keys/", "/v1/byok/tenants/globex/keys/"},
	} {
		req, err := http.NewRequest(p.method, base+"/v1/"+p.path, strings.NewReader(`{"rpm_limit": 3}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Vault-Token", s.tenantA)
		resp, err := nc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != p.clean {
			t.Errorf("%s %s: %d Location %q, want 301 to %q", p.method, p.path, resp.StatusCode, resp.Header.Get("Location"), p.clean)
		}
	}
	// Followed, the cleaned path is checked like any other.
	s.expect(t, 403, "A via ..", s.tenantA, "GET", "byok/tenants/acme/keys/../../globex/settings", nil)
	s.expect(t, 200, "A via //", s.tenantA, "GET", "byok/tenants/acme//keys/openai/../openai/production", nil)
}

// The alias-metadata variant of byok-tenant that policies/README.md suggests
// (the tenant read from the login's alias on one auth mount, not from the
// entity): the same isolation, with the tenant set as the alias's
// custom_metadata. The `metadata.` form reads what the auth method sets at
// login; userpass sets none, so it resolves for nobody (fails closed).
func TestAliasMetadataTenantPolicy(t *testing.T) {
	s := newIsoSim(t)
	s.EnableAuth(t, "userpass")
	up, _ := Data(s.MustCall(t, 200, s.RootToken, "GET", "sys/auth", nil))["userpass/"].(map[string]any)
	acc, _ := up["accessor"].(string)
	if acc == "" {
		t.Fatalf("no userpass accessor")
	}
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "policies/byok-tenant.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	entityTpl := "{{identity.entity.metadata.tenant}}"
	if !strings.Contains(string(b), entityTpl) {
		t.Fatalf("byok-tenant.hcl no longer uses %s", entityTpl)
	}
	custom := strings.ReplaceAll(string(b), entityTpl, "{{identity.entity.aliases."+acc+".custom_metadata.tenant}}")
	s.PutPolicy(t, "byok-tenant-alias", custom)
	s.PutPolicy(t, "byok-tenant-authmeta",
		strings.ReplaceAll(string(b), entityTpl, "{{identity.entity.aliases."+acc+".metadata.tenant}}"))
	for _, u := range []string{"alice", "bob", "carol"} {
		s.MustCall(t, 204, s.RootToken, "POST", "auth/userpass/users/"+u,
			map[string]any{"password": "pw-" + u, "token_policies": "byok-tenant-alias,byok-tenant-authmeta"})
	}
	login := func(u string) (tok, entity string) {
		a := authOf(t, s.MustCall(t, 200, "", "POST", "auth/userpass/login/"+u, map[string]any{"password": "pw-" + u}))
		tok, _ = a["client_token"].(string)
		entity, _ = a["entity_id"].(string)
		return tok, entity
	}
	alice, aliceEnt := login("alice")
	bob, _ := login("bob")
	carol, carolEnt := login("carol")
	// alice: tenant acme on her userpass alias (found by name and mount, as Vault updates it).
	s.MustCall(t, 200, s.RootToken, "POST", "identity/entity-alias", map[string]any{
		"name": "alice", "canonical_id": aliceEnt, "mount_accessor": acc, "custom_metadata": "tenant=acme"})
	s.MustCall(t, 204, s.RootToken, "POST", "identity/entity-alias", map[string]any{
		"name": "alice", "canonical_id": aliceEnt, "mount_accessor": acc, "custom_metadata": "tenant=acme"})
	s.MustCall(t, 400, s.RootToken, "POST", "identity/entity-alias", map[string]any{
		"name": "alice", "canonical_id": aliceEnt, "mount_accessor": acc, "custom_metadata": "tenant"})
	// carol: entity metadata only; the alias policies do not read it.
	s.MustCall(t, 200, s.RootToken, "POST", "identity/entity/id/"+carolEnt, map[string]any{"metadata": "tenant=acme"})

	s.expect(t, 200, "B", s.tenantB, "PUT", "byok/tenants/globex/keys/openai/production", map[string]any{"key_value": s.canaries[1]})
	s.expect(t, 200, "alice", alice, "PUT", "byok/tenants/acme/keys/openai/production", map[string]any{"key_value": s.canaries[0]})
	s.expect(t, 200, "alice", alice, "GET", "byok/tenants/acme/keys/openai/production", nil)
	s.expect(t, 200, "alice", alice, "LIST", "byok/tenants/acme/keys", nil)
	s.expect(t, 200, "alice", alice, "GET", "byok/tenants/acme", nil)
	s.expect(t, 200, "alice", alice, "PUT", "byok/tenants/acme/settings", map[string]any{"rpm_limit": 30})
	body := map[string]any{"key_value": "sk-INTRUDER0000000000000000000000000000000000", "rpm_limit": 1}
	for _, p := range []struct{ method, path string }{
		{"GET", "byok/tenants/acme/creds/openai"},
		{"LIST", "byok/tenants"},
		{"GET", "byok/tenants/globex"},
		{"GET", "byok/tenants/globex/keys/openai/production"},
		{"PUT", "byok/tenants/globex/keys/openai/production"},
		{"LIST", "byok/tenants/globex/keys"},
		{"GET", "byok/tenants/globex/settings"},
		{"GET", "byok/tenants/globex/creds/openai"},
	} {
		s.expect(t, 403, "alice", alice, p.method, p.path, body)
	}
	for who, tok := range map[string]string{"bob (no alias metadata)": bob, "carol (entity metadata only)": carol} {
		for _, p := range []struct{ method, path string }{
			{"GET", "byok/tenants/acme"},
			{"GET", "byok/tenants/acme/keys/openai/production"},
			{"LIST", "byok/tenants/acme/keys"},
			{"GET", "byok/tenants/acme/settings"},
		} {
			s.expect(t, 403, who, tok, p.method, p.path, nil)
		}
	}
	// An update by id moves alice to globex at once (the ACL is rebuilt per request).
	var aliasID string
	ent := Data(s.MustCall(t, 200, s.RootToken, "GET", "identity/entity/id/"+aliceEnt, nil))
	if als, _ := ent["aliases"].([]any); len(als) == 1 {
		if m, _ := als[0].(map[string]any); m != nil {
			aliasID, _ = m["id"].(string)
		}
	}
	if aliasID == "" {
		t.Fatalf("alice's entity lists no alias: %v", ent)
	}
	s.MustCall(t, 200, s.RootToken, "POST", "identity/entity-alias/id/"+aliasID,
		map[string]any{"custom_metadata": map[string]any{"tenant": "globex"}})
	s.MustCall(t, 204, s.RootToken, "POST", "identity/entity-alias/id/"+aliasID, map[string]any{}) // kept
	if cm, _ := Data(s.MustCall(t, 200, s.RootToken, "GET", "identity/entity-alias/id/"+aliasID, nil))["custom_metadata"].(map[string]any); cm["tenant"] != "globex" {
		t.Errorf("alias custom_metadata %v", cm)
	}
	s.expect(t, 403, "alice moved", alice, "GET", "byok/tenants/acme", nil)
	s.expect(t, 200, "alice moved", alice, "GET", "byok/tenants/globex", nil)
	// By name and mount, an absent custom_metadata clears it (as in Vault): alice has nothing.
	s.MustCall(t, 200, s.RootToken, "POST", "identity/entity-alias", map[string]any{
		"name": "alice", "canonical_id": aliceEnt, "mount_accessor": acc})
	s.expect(t, 403, "alice cleared", alice, "GET", "byok/tenants/globex", nil)
}
