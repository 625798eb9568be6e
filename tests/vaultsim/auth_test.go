// SPDX-License-Identifier: MPL-2.0

package vaultsim

// Tokens, policies, identity, AppRole and Kubernetes login through the
// stand-in's HTTP API, and ACL enforcement on the plugin mount.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func authOf(t *testing.T, m map[string]any) map[string]any {
	t.Helper()
	a, _ := m["auth"].(map[string]any)
	if a == nil {
		t.Fatalf("no auth in %v", m)
	}
	return a
}

func TestTokensAndPolicies(t *testing.T) {
	s := newSim(t)
	s.PutPolicy(t, "cfg-read", `path "byok/config" { capabilities = ["read"] }`)
	m := s.MustCall(t, 200, s.RootToken, "GET", "sys/policies/acl/cfg-read", nil)
	if Data(m)["policy"] == "" {
		t.Errorf("policy read: %v", m)
	}
	tok := s.CreateToken(t, []string{"cfg-read"}, nil)
	s.MustCall(t, 200, tok, "GET", "byok/config", nil)
	s.MustCall(t, 403, tok, "PUT", "byok/config", map[string]any{"max_key_versions": 5})
	// A non-root token cannot manage policies, or read other mounts.
	s.MustCall(t, 403, tok, "PUT", "sys/policies/acl/evil", map[string]any{"policy": `path "*" { capabilities = ["sudo"] }`})
	s.MustCall(t, 403, tok, "GET", "sys/policies/acl/cfg-read", nil)
	// Unknown, missing and Bearer tokens.
	if m := s.MustCall(t, 403, "hvs.nope", "GET", "byok/config", nil); Errors(m) != "permission denied" {
		t.Errorf("unknown token errors = %q", Errors(m))
	}
	s.MustCall(t, 403, "", "GET", "byok/config", nil)
	// lookup-self and renew-self.
	d := Data(s.MustCall(t, 200, tok, "GET", "auth/token/lookup-self", nil))
	if d["id"] != tok || d["renewable"] != true {
		t.Errorf("lookup-self: %v", d)
	}
	pols, _ := d["policies"].([]any)
	if len(pols) != 2 || pols[0] != "cfg-read" || pols[1] != "default" {
		t.Errorf("policies %v, want [cfg-read default]", pols)
	}
	a := authOf(t, s.MustCall(t, 200, tok, "PUT", "auth/token/renew-self", map[string]any{"increment": "2h"}))
	if a["lease_duration"] != float64(7200) {
		t.Errorf("renew-self increment 2h: lease_duration %v", a["lease_duration"])
	}
	// Policy updates apply to existing tokens; deletion revokes access.
	s.PutPolicy(t, "cfg-read", `path "byok/config" { capabilities = ["read", "update"] }`)
	code, _ := s.Call(t, tok, "PUT", "byok/config", map[string]any{"max_key_versions": 5})
	if code != 200 && code != 204 {
		t.Errorf("update after policy change: %d", code)
	}
	s.MustCall(t, 204, s.RootToken, "DELETE", "sys/policies/acl/cfg-read", nil)
	s.MustCall(t, 403, tok, "GET", "byok/config", nil)
	s.MustCall(t, 404, s.RootToken, "GET", "sys/policies/acl/cfg-read", nil)
	// Bad HCL is a 400.
	if code, _ := s.Call(t, s.RootToken, "PUT", "sys/policies/acl/bad", map[string]any{"policy": `path "x" { capabilities = ["fly"] }`}); code != 400 {
		t.Errorf("bad policy: status %d, want 400", code)
	}
}

func TestTokenExpiry(t *testing.T) {
	s := newSim(t)
	s.PutPolicy(t, "cfg-read", `path "byok/config" { capabilities = ["read"] }`)
	a := authOf(t, s.MustCall(t, 200, s.RootToken, "POST", "auth/token/create",
		map[string]any{"policies": []string{"cfg-read"}, "ttl": "1s"}))
	tok := a["client_token"].(string)
	if a["lease_duration"] != float64(1) {
		t.Errorf("ttl 1s: lease_duration %v", a["lease_duration"])
	}
	// (No request before expiry: on a loaded machine it could already be late.)
	time.Sleep(1200 * time.Millisecond)
	if m := s.MustCall(t, 403, tok, "GET", "byok/config", nil); Errors(m) != "permission denied" {
		t.Errorf("expired token: %v", m)
	}
	s.MustCall(t, 403, tok, "GET", "auth/token/lookup-self", nil)
}

func TestBearerHeader(t *testing.T) {
	s := newSim(t)
	c, base := s.HTTPClient()
	req, _ := newRequest("GET", base+"/v1/byok/config", s.RootToken)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("Authorization: Bearer root token: status %d", resp.StatusCode)
	}
}

func TestTemplatedPolicyAndCreateVsUpdate(t *testing.T) {
	s := newSim(t)
	s.PutPolicy(t, "tenant", `
path "byok/tenants/{{identity.entity.metadata.tenant}}/*" { capabilities = ["read", "update", "list"] }
path "byok/config" { capabilities = ["read"] }
`)
	acme := s.CreateToken(t, []string{"tenant"}, map[string]string{"tenant": "acme"})
	// The templated path resolves to acme only; the settings path is a
	// plugin path, so a 403 here is the stand-in's ACL, anything else the plugin's.
	if code, _ := s.Call(t, acme, "GET", "byok/tenants/globex/settings", nil); code != 403 {
		t.Errorf("acme reading globex: status %d, want 403", code)
	}
	if code, _ := s.Call(t, acme, "GET", "byok/tenants/acme/settings", nil); code == 403 {
		t.Errorf("acme reading its own settings: 403")
	}
	// An entity without the metadata key gets nothing from the templated path.
	none := s.CreateToken(t, []string{"tenant"}, map[string]string{"team": "x"})
	if code, _ := s.Call(t, none, "GET", "byok/tenants/acme/settings", nil); code != 403 {
		t.Errorf("entity without tenant metadata: status %d, want 403", code)
	}
	// create vs update: a provider that does not exist needs create.
	s.PutPolicy(t, "prov-update", `path "byok/providers/*" { capabilities = ["update", "read"] }`)
	s.PutPolicy(t, "prov-create", `path "byok/providers/*" { capabilities = ["create", "read"] }`)
	upd := s.CreateToken(t, []string{"prov-update"}, nil)
	cre := s.CreateToken(t, []string{"prov-create"}, nil)
	if code, m := s.Call(t, upd, "PUT", "byok/providers/newone", newProvider("newone")); code != 403 {
		t.Errorf("update-only token creating a provider: %d %v, want 403", code, m)
	}
	code, m := s.Call(t, cre, "PUT", "byok/providers/newone", newProvider("newone"))
	if code != 200 && code != 204 {
		t.Fatalf("create-only token creating a provider: %d %v", code, m)
	}
	if code, m := s.Call(t, cre, "PUT", "byok/providers/newone", newProvider("newone")); code != 403 {
		t.Errorf("create-only token updating an existing provider: %d %v, want 403", code, m)
	}
	if code, m := s.Call(t, upd, "PUT", "byok/providers/newone", newProvider("newone")); code != 200 && code != 204 {
		t.Errorf("update-only token updating an existing provider: %d %v", code, m)
	}
	// list needs list.
	if code, _ := s.Call(t, upd, "LIST", "byok/providers", nil); code != 403 {
		t.Errorf("list without list capability: %d, want 403", code)
	}
}

func TestAppRoleLogin(t *testing.T) {
	s := newSim(t)
	s.PutPolicy(t, "agent", `path "byok/config" { capabilities = ["read"] }`)
	s.EnableAuth(t, "approle")
	s.MustCall(t, 204, s.RootToken, "POST", "auth/approle/role/agent",
		map[string]any{"token_policies": []string{"agent"}, "token_ttl": "20m", "token_max_ttl": "1h", "secret_id_ttl": "10m"})
	roleID, _ := Data(s.MustCall(t, 200, s.RootToken, "GET", "auth/approle/role/agent/role-id", nil))["role_id"].(string)
	secretID, _ := Data(s.MustCall(t, 200, s.RootToken, "POST", "auth/approle/role/agent/secret-id", nil))["secret_id"].(string)
	if roleID == "" || secretID == "" {
		t.Fatalf("role_id %q secret_id %q", roleID, secretID)
	}
	a := authOf(t, s.MustCall(t, 200, "", "POST", "auth/approle/login", map[string]any{"role_id": roleID, "secret_id": secretID}))
	if a["lease_duration"] != float64(1200) || a["renewable"] != true {
		t.Errorf("login auth: %v", a)
	}
	tp, _ := a["token_policies"].([]any)
	if len(tp) != 2 {
		t.Errorf("token_policies %v, want [agent default]", tp)
	}
	tok := a["client_token"].(string)
	s.MustCall(t, 200, tok, "GET", "byok/config", nil)
	s.MustCall(t, 403, tok, "PUT", "byok/config", map[string]any{"max_key_versions": 2})
	s.MustCall(t, 400, "", "POST", "auth/approle/login", map[string]any{"role_id": roleID, "secret_id": "wrong"})
	s.MustCall(t, 400, "", "POST", "auth/approle/login", map[string]any{"role_id": "wrong", "secret_id": secretID})
	// Role management needs a token.
	s.MustCall(t, 403, "", "POST", "auth/approle/role/x", map[string]any{"token_policies": []string{"root"}})
}

func signJWT(t *testing.T, alg string, key crypto.Signer, claims map[string]any) string {
	t.Helper()
	h, _ := json.Marshal(map[string]string{"alg": alg, "typ": "JWT"})
	c, _ := json.Marshal(claims)
	in := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	d := sha256.Sum256([]byte(in))
	var sig []byte
	switch k := key.(type) {
	case *rsa.PrivateKey:
		var err error
		if sig, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, d[:]); err != nil {
			t.Fatal(err)
		}
	case *ecdsa.PrivateKey:
		r, s, err := ecdsa.Sign(rand.Reader, k, d[:])
		if err != nil {
			t.Fatal(err)
		}
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	}
	return in + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func pubPEM(t *testing.T, k crypto.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func TestKubernetesLogin(t *testing.T) {
	s := newSim(t)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	s.PutPolicy(t, "agent", `path "byok/config" { capabilities = ["read"] }`)
	s.EnableAuth(t, "kubernetes")
	s.MustCall(t, 204, s.RootToken, "POST", "auth/kubernetes/config",
		map[string]any{"pem_keys": []string{pubPEM(t, rsaKey.Public()), pubPEM(t, ecKey.Public())}})
	s.MustCall(t, 204, s.RootToken, "POST", "auth/kubernetes/role/agent", map[string]any{
		"bound_service_account_names": []string{"byok-agent"}, "bound_service_account_namespaces": []string{"byok"},
		"token_policies": []string{"agent"}, "token_ttl": "15m"})
	exp := float64(time.Now().Add(time.Hour).Unix())
	legacy := map[string]any{"iss": "kubernetes/serviceaccount", "kubernetes.io/serviceaccount/namespace": "byok",
		"kubernetes.io/serviceaccount/service-account.name": "byok-agent", "exp": exp}
	projected := map[string]any{"iss": "https://kubernetes.default.svc", "sub": "system:serviceaccount:byok:byok-agent",
		"kubernetes.io": map[string]any{"namespace": "byok", "serviceaccount": map[string]any{"name": "byok-agent"}}, "exp": exp}
	for name, jwt := range map[string]string{
		"RS256 legacy":    signJWT(t, "RS256", rsaKey, legacy),
		"ES256 projected": signJWT(t, "ES256", ecKey, projected),
	} {
		a := authOf(t, s.MustCall(t, 200, "", "POST", "auth/kubernetes/login", map[string]any{"role": "agent", "jwt": jwt}))
		if a["lease_duration"] != float64(900) {
			t.Errorf("%s: lease_duration %v", name, a["lease_duration"])
		}
		s.MustCall(t, 200, a["client_token"].(string), "GET", "byok/config", nil)
	}
	wrongNS := map[string]any{"sub": "system:serviceaccount:other:byok-agent", "exp": exp}
	expired := map[string]any{"sub": "system:serviceaccount:byok:byok-agent", "exp": float64(time.Now().Add(-time.Minute).Unix())}
	for name, jwt := range map[string]string{
		"unknown signer":  signJWT(t, "RS256", otherKey, legacy),
		"wrong namespace": signJWT(t, "RS256", rsaKey, wrongNS),
		"expired":         signJWT(t, "ES256", ecKey, expired),
		"alg mismatch":    signJWT(t, "ES256", rsaKey, legacy),
		"garbage":         "a.b.c",
	} {
		if code, m := s.Call(t, "", "POST", "auth/kubernetes/login", map[string]any{"role": "agent", "jwt": jwt}); code != 403 && code != 400 {
			t.Errorf("%s: status %d %v, want 403", name, code, m)
		}
	}
	if code, _ := s.Call(t, "", "POST", "auth/kubernetes/login", map[string]any{"role": "nope", "jwt": signJWT(t, "RS256", rsaKey, legacy)}); code != 400 {
		t.Errorf("unknown role: status %d, want 400", code)
	}
}

func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "cfg-read.hcl")
	if err := os.WriteFile(pol, []byte(`path "byok/config" { capabilities = ["read"] }`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "vaultsim.json")
	cfgJSON := `{
	  "root_token": "root-fixed",
	  "policy_globs": ["*.hcl"],
	  "policies": {"tenant": "path \"byok/tenants/{{identity.entity.metadata.tenant}}/*\" { capabilities = [\"read\"] }"},
	  "entities": [{"id": "ent-acme", "name": "acme-admin", "metadata": {"tenant": "acme"}}],
	  "tokens": [{"id": "tok-reader", "policies": ["cfg-read"]},
	             {"id": "tok-acme", "policies": ["tenant"], "entity_id": "ent-acme"}],
	  "approle_roles": [{"name": "agent", "role_id": "rid-1", "secret_id": "sid-1", "token_policies": ["cfg-read"]}]
	}`
	if err := os.WriteFile(cfgPath, []byte(cfgJSON), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	s := newSim(t, WithConfig(cfg), WithRootToken(cfg.RootToken))
	if s.RootToken != "root-fixed" {
		t.Errorf("root token %q", s.RootToken)
	}
	s.MustCall(t, 200, "tok-reader", "GET", "byok/config", nil)
	s.MustCall(t, 403, "tok-reader", "PUT", "byok/config", map[string]any{"max_key_versions": 2})
	s.MustCall(t, 403, "tok-acme", "GET", "byok/tenants/globex/settings", nil)
	a := authOf(t, s.MustCall(t, 200, "", "POST", "auth/approle/login", map[string]any{"role_id": "rid-1", "secret_id": "sid-1"}))
	s.MustCall(t, 200, a["client_token"].(string), "GET", "byok/config", nil)
	// Unknown keys in the config file are errors, not silently ignored.
	if err := os.WriteFile(cfgPath, []byte(`{"polices": {}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(cfgPath); err == nil {
		t.Errorf("config with a misspelt key loaded")
	}
}

func newRequest(method, url, bearer string) (*http.Request, error) {
	r, err := http.NewRequest(method, url, nil)
	if err != nil {
		return nil, err
	}
	r.Header.Set("Authorization", "Bearer "+bearer)
	return r, nil
}

// Tenant identities the way an operator sets them up on a real Vault: an
// entity with tenant metadata and the byok-tenant policy, a userpass user
// attached to it by an entity alias, and a login.
func TestUserpassEntityAliasLogin(t *testing.T) {
	s := newSim(t)
	s.PutPolicyFile(t, "byok-tenant", "policies/byok-tenant.hcl")
	// Not mounted yet: Vault has no route for it.
	s.MustCall(t, 404, s.RootToken, "POST", "auth/userpass/users/alice", map[string]any{"password": "pw-a"})
	s.MustCall(t, 403, "", "POST", "sys/auth/userpass", map[string]any{"type": "userpass"})
	s.EnableAuth(t, "userpass")
	s.MustCall(t, 400, s.RootToken, "POST", "sys/auth/userpass", map[string]any{"type": "userpass"})
	s.MustCall(t, 400, s.RootToken, "POST", "sys/auth/ldap", map[string]any{"type": "ldap"})
	mounts := s.MustCall(t, 200, s.RootToken, "GET", "sys/auth", nil)
	up, _ := Data(mounts)["userpass/"].(map[string]any)
	acc, _ := up["accessor"].(string)
	top, _ := mounts["userpass/"].(map[string]any)
	if acc == "" || top == nil || top["accessor"] != acc || Data(mounts)["token/"] == nil {
		t.Fatalf("sys/auth: %v", mounts)
	}
	// metadata as the CLI sends metadata=tenant=acme (key=value pairs).
	ent := Data(s.MustCall(t, 200, s.RootToken, "POST", "identity/entity", map[string]any{
		"name": "alice", "metadata": "tenant=acme", "policies": []string{"byok-tenant"}}))
	s.MustCall(t, 400, s.RootToken, "POST", "identity/entity", map[string]any{"name": "x", "metadata": "tenant"})
	id, _ := ent["id"].(string)
	s.MustCall(t, 400, s.RootToken, "POST", "identity/entity-alias",
		map[string]any{"name": "alice", "canonical_id": id, "mount_accessor": "auth_nope"})
	s.MustCall(t, 400, s.RootToken, "POST", "identity/entity-alias",
		map[string]any{"name": "alice", "canonical_id": "no-such-entity", "mount_accessor": acc})
	al := Data(s.MustCall(t, 200, s.RootToken, "POST", "identity/entity-alias",
		map[string]any{"name": "alice", "canonical_id": id, "mount_accessor": acc}))
	if al["canonical_id"] != id || al["id"] == "" {
		t.Errorf("alias: %v", al)
	}
	// One alias per auth mount per entity, as in Vault: bob needs an entity of his own.
	s.MustCall(t, 400, s.RootToken, "POST", "identity/entity-alias",
		map[string]any{"name": "bob", "canonical_id": id, "mount_accessor": acc})
	s.MustCall(t, 204, s.RootToken, "POST", "auth/userpass/users/alice", map[string]any{"password": "pw-a"})
	s.MustCall(t, 204, s.RootToken, "POST", "auth/userpass/users/bob", map[string]any{"password": "pw-b", "token_policies": "byok-tenant"})
	s.MustCall(t, 400, "", "POST", "auth/userpass/login/alice", map[string]any{"password": "wrong"})
	s.MustCall(t, 400, "", "POST", "auth/userpass/login/nobody", map[string]any{"password": "pw-a"})
	a := authOf(t, s.MustCall(t, 200, "", "POST", "auth/userpass/login/alice", map[string]any{"password": "pw-a"}))
	if a["entity_id"] != id {
		t.Errorf("alice's login entity %v, want %s", a["entity_id"], id)
	}
	alice := a["client_token"].(string)
	s.MustCall(t, 200, alice, "GET", "byok/tenants/acme/settings", nil)
	s.MustCall(t, 403, alice, "GET", "byok/tenants/globex/settings", nil)
	// bob has the policy but no alias: a fresh entity without metadata, so nothing.
	b := authOf(t, s.MustCall(t, 200, "", "POST", "auth/userpass/login/bob", map[string]any{"password": "pw-b"}))
	if b["entity_id"] == "" || b["entity_id"] == id {
		t.Errorf("bob's entity %v", b["entity_id"])
	}
	s.MustCall(t, 403, b["client_token"].(string), "GET", "byok/tenants/acme/settings", nil)
	// Disabling the method revokes its tokens and forgets its users.
	s.MustCall(t, 204, s.RootToken, "DELETE", "sys/auth/userpass", nil)
	s.MustCall(t, 403, alice, "GET", "byok/tenants/acme/settings", nil)
	s.MustCall(t, 404, "", "POST", "auth/userpass/login/alice", map[string]any{"password": "pw-a"})
}

// The token's own endpoints are granted by the default policy, as on Vault: a
// token made with no_default_policy gets 403 there unless one of its policies
// grants them, as byok-agent.hcl does for the agent's lookup-self and renew-self.
func TestDefaultPolicyGrantsSelf(t *testing.T) {
	s := newSim(t)
	s.MustCall(t, 204, s.RootToken, "PUT", "sys/policies/acl/cfg-read",
		map[string]any{"policy": `path "byok/config" { capabilities = ["read"] }`})
	with := authOf(t, s.MustCall(t, 200, s.RootToken, "POST", "auth/token/create",
		map[string]any{"policies": []string{"cfg-read"}, "ttl": "1h"}))["client_token"].(string)
	without := authOf(t, s.MustCall(t, 200, s.RootToken, "POST", "auth/token/create",
		map[string]any{"policies": []string{"cfg-read"}, "ttl": "1h", "no_default_policy": true}))["client_token"].(string)
	s.MustCall(t, 200, with, "GET", "auth/token/lookup-self", nil)
	s.MustCall(t, 200, with, "PUT", "auth/token/renew-self", map[string]any{})
	s.MustCall(t, 200, with, "PUT", "sys/capabilities-self", map[string]any{"paths": []string{"byok/config"}})
	s.MustCall(t, 403, without, "GET", "auth/token/lookup-self", nil)
	s.MustCall(t, 403, without, "PUT", "auth/token/renew-self", map[string]any{})
	s.MustCall(t, 403, without, "PUT", "sys/capabilities-self", map[string]any{"paths": []string{"byok/config"}})
	s.MustCall(t, 403, without, "PUT", "auth/token/revoke-self", map[string]any{})
	s.MustCall(t, 200, without, "GET", "byok/config", nil)

	agentPolicy, err := os.ReadFile(filepath.Join(repoRoot(t), "policies", "byok-agent.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	s.MustCall(t, 204, s.RootToken, "PUT", "sys/policies/acl/byok-agent", map[string]any{"policy": string(agentPolicy)})
	agent := authOf(t, s.MustCall(t, 200, s.RootToken, "POST", "auth/token/create",
		map[string]any{"policies": []string{"byok-agent"}, "ttl": "1h", "renewable": true, "no_default_policy": true}))["client_token"].(string)
	s.MustCall(t, 200, agent, "GET", "auth/token/lookup-self", nil)
	s.MustCall(t, 200, agent, "PUT", "auth/token/renew-self", map[string]any{})
	s.MustCall(t, 403, agent, "PUT", "auth/token/revoke-self", map[string]any{})
	// The default policy itself can be read, and not deleted.
	s.MustCall(t, 200, s.RootToken, "GET", "sys/policies/acl/default", nil)
	s.MustCall(t, 400, s.RootToken, "DELETE", "sys/policies/acl/default", nil)
}
