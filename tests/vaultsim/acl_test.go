// SPDX-License-Identifier: MPL-2.0

package vaultsim

// ACL engine unit tests (no plugin needed): Vault's policy syntax and its
// matching rules from vault/acl.go.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mustPolicy(t *testing.T, name, src string) *Policy {
	t.Helper()
	p, err := ParsePolicy(name, src)
	if err != nil {
		t.Fatalf("ParsePolicy(%s): %v", name, err)
	}
	return p
}

type aclCase struct {
	op, path string
	want     bool
}

func checkACL(t *testing.T, a *ACL, cases []aclCase) {
	t.Helper()
	for _, c := range cases {
		if got := a.Allowed(c.op, c.path, false); got != c.want {
			t.Errorf("%s %s: allowed=%v, want %v", c.op, c.path, got, c.want)
		}
	}
}

func TestPolicyParse(t *testing.T) {
	src := `
# comment
// another
/* block
   comment */
path "byok/config" {
  capabilities = ["read", "update"]
}
path "byok/providers/*" { capabilities = ["list", "read"] }
path "secret/legacy" {
  policy = "write"
}
path "byok/x" {
  capabilities = ["create"]
  allowed_parameters = { "a" = [] }
}
`
	p := mustPolicy(t, "p", src)
	if len(p.Rules) != 4 {
		t.Fatalf("got %d rules, want 4", len(p.Rules))
	}
	if p.Rules[0].Path != "byok/config" || p.Rules[0].Capabilities != CapRead|CapUpdate {
		t.Errorf("rule 0 = %+v", p.Rules[0])
	}
	if p.Rules[2].Capabilities != CapRead|CapList|CapCreate|CapUpdate|CapDelete {
		t.Errorf("legacy write = %b", p.Rules[2].Capabilities)
	}
	bad := []string{
		`path "a" { capabilities = ["read", "fly"] }`,
		`path "a" { capabilities = ["read"] `,
		`path "a" { capabilities = "read" }`,
		`path "a" { colour = "red" }`,
		`paths "a" { capabilities = ["read"] }`,
		`path "a { capabilities = ["read"] }`,
		`/* unterminated`,
		`path "a" { policy = "superuser" }`,
	}
	for _, b := range bad {
		if _, err := ParsePolicy("bad", b); err == nil {
			t.Errorf("ParsePolicy(%q) succeeded, want an error", b)
		}
	}
}

func TestACLExactAndGlob(t *testing.T) {
	a := NewACL([]*Policy{mustPolicy(t, "p", `
path "byok/config" { capabilities = ["read"] }
path "byok/providers/*" { capabilities = ["read", "list"] }
path "byok/providers/openai" { capabilities = ["update"] }
path "byok/tenants/acme/*" { capabilities = ["create", "read", "update", "delete", "list"] }
path "byok/tenants/acme/creds/*" { capabilities = ["deny"] }
`)}, nil)
	checkACL(t, a, []aclCase{
		{"read", "byok/config", true},
		{"update", "byok/config", false},
		{"read", "byok/config/rotate-root", false}, // exact is exact
		{"read", "byok/providers/anthropic", true},
		{"list", "byok/providers/", true},
		{"update", "byok/providers/anthropic", false},
		{"update", "byok/providers/openai", true}, // exact rule wins over the glob
		{"read", "byok/providers/openai", false},  // ... and replaces it entirely
		{"create", "byok/tenants/acme/keys/openai/production", true},
		{"read", "byok/tenants/acme/creds/openai", false}, // longer prefix deny
		{"read", "byok/tenants/acmex/keys/a/b", false},
		{"read", "byok/tenants/other/keys/a/b", false},
		{"list", "byok/tenants/", false},
	})
}

func TestACLDenyWinsAcrossPolicies(t *testing.T) {
	allow := mustPolicy(t, "allow", `path "byok/tenants/*" { capabilities = ["read", "update", "list"] }`)
	deny := mustPolicy(t, "deny", `path "byok/tenants/*" { capabilities = ["deny"] }`)
	union := mustPolicy(t, "more", `path "byok/tenants/*" { capabilities = ["delete"] }`)
	checkACL(t, NewACL([]*Policy{allow, deny}, nil), []aclCase{{"read", "byok/tenants/a/settings", false}})
	checkACL(t, NewACL([]*Policy{deny, allow}, nil), []aclCase{{"read", "byok/tenants/a/settings", false}})
	checkACL(t, NewACL([]*Policy{allow, union}, nil), []aclCase{
		{"read", "byok/tenants/a/settings", true},
		{"delete", "byok/tenants/a/settings", true},
		{"create", "byok/tenants/a/settings", false},
	})
	// deny in the same block wins over other capabilities.
	checkACL(t, NewACL([]*Policy{mustPolicy(t, "x", `path "a/b" { capabilities = ["read", "deny"] }`)}, nil),
		[]aclCase{{"read", "a/b", false}})
}

func TestACLSegmentWildcard(t *testing.T) {
	a := NewACL([]*Policy{mustPolicy(t, "p", `
path "byok/tenants/+/usage" { capabilities = ["update"] }
path "byok/tenants/+/creds/*" { capabilities = ["read"] }
path "byok/tenants/+/keys/+/production" { capabilities = ["read"] }
`)}, nil)
	checkACL(t, a, []aclCase{
		{"update", "byok/tenants/acme/usage", true},
		{"update", "byok/tenants/acme/usage/x", false}, // + path without * needs the same segment count
		{"update", "byok/tenants/usage", false},
		{"read", "byok/tenants/acme/creds/openai", true},
		{"read", "byok/tenants/acme/creds/", true},
		{"read", "byok/tenants/acme/keys/openai/production", true},
		{"read", "byok/tenants/acme/keys/openai/staging", false},
		{"read", "byok/tenants/a/b/keys/openai/production", false},
	})
}

func TestACLPriority(t *testing.T) {
	// Vault's order: later first wildcard wins; then non-glob over glob;
	// then fewer '+'; then longer.
	cases := []struct {
		policy, path string
		want         uint32
	}{
		{`path "a/b*" { capabilities = ["read"] }
		  path "a/+" { capabilities = ["update"] }`, "a/bc", CapRead},
		{`path "a/+/c" { capabilities = ["read"] }
		  path "a/+/c*" { capabilities = ["update"] }`, "a/b/c", CapRead},
		{`path "a/b/+/d" { capabilities = ["read"] }
		  path "a/+/+/d" { capabilities = ["update"] }`, "a/b/c/d", CapRead},
		{`path "a/+/c/d*" { capabilities = ["read"] }
		  path "a/+/c/*" { capabilities = ["update"] }`, "a/b/c/dd", CapRead},
		{`path "a/*" { capabilities = ["update"] }
		  path "a/b/*" { capabilities = ["read"] }`, "a/b/c", CapRead},
		{`path "a/+" { capabilities = ["read"] }
		  path "a/*" { capabilities = ["update"] }`, "a/b", CapRead},
	}
	for i, c := range cases {
		a := NewACL([]*Policy{mustPolicy(t, "p", c.policy)}, nil)
		if got := a.Capabilities(c.path, false); got != c.want {
			t.Errorf("case %d (%s): caps %v, want %v", i, c.path, CapabilityNames(got), CapabilityNames(c.want))
		}
	}
}

func TestACLTemplating(t *testing.T) {
	p := mustPolicy(t, "tenant", `
path "byok/tenants/{{identity.entity.metadata.tenant}}/keys/*" { capabilities = ["create", "read", "update", "list"] }
path "byok/tenants/{{identity.entity.metadata.tenant}}/settings" { capabilities = ["read"] }
path "byok/users/{{identity.entity.id}}" { capabilities = ["read"] }
path "byok/names/{{identity.entity.name}}" { capabilities = ["read"] }
path "byok/team/{{identity.entity.metadata.team}}/*" { capabilities = ["read"] }
`)
	e := &EntityView{ID: "e-123", Name: "alice", Metadata: map[string]string{"tenant": "acme"}}
	a := NewACL([]*Policy{p}, e)
	checkACL(t, a, []aclCase{
		{"create", "byok/tenants/acme/keys/openai/production", true},
		{"read", "byok/tenants/acme/settings", true},
		{"read", "byok/tenants/globex/keys/openai/production", false},
		{"read", "byok/tenants/globex/settings", false},
		{"read", "byok/users/e-123", true},
		{"read", "byok/names/alice", true},
		// metadata.team is missing: the path is dropped, not matched literally.
		{"read", "byok/team/{{identity.entity.metadata.team}}/x", false},
		{"read", "byok/team//x", false},
	})
	// No entity: every templated path is dropped.
	none := NewACL([]*Policy{p}, nil)
	checkACL(t, none, []aclCase{
		{"read", "byok/tenants/acme/settings", false},
		{"read", "byok/tenants//settings", false},
	})
}

// Alias parameters, as sdk/helper/identitytpl renders them in ACL mode.
func TestACLAliasTemplating(t *testing.T) {
	p := mustPolicy(t, "alias", `
path "c/{{identity.entity.aliases.auth_up.custom_metadata.tenant}}" { capabilities = ["read"] }
path "m/{{identity.entity.aliases.auth_up.metadata.tenant}}" { capabilities = ["read"] }
path "n/{{identity.entity.aliases.auth_up.name}}" { capabilities = ["read"] }
path "i/{{identity.entity.aliases.auth_up.id}}" { capabilities = ["read"] }
path "o/{{identity.entity.aliases.auth_oidc.name}}" { capabilities = ["read"] }
path "e/{{identity.entity.aliases.auth_up.custom_metadata.empty}}/x" { capabilities = ["read"] }
path "bad/{{identity.entity.aliases.auth_up}}" { capabilities = ["read"] }
`)
	e := &EntityView{ID: "e-1", Name: "alice", Aliases: []AliasView{{ID: "al-1", Name: "alice",
		MountAccessor: "auth_up", Metadata: map[string]string{"tenant": "globex"},
		CustomMetadata: map[string]string{"tenant": "acme", "empty": ""}}}}
	checkACL(t, NewACL([]*Policy{p}, e), []aclCase{
		{"read", "c/acme", true},
		{"read", "m/globex", true},
		{"read", "n/alice", true},
		{"read", "i/al-1", true},
		{"read", "o/alice", false}, // no alias on that mount: dropped
		{"read", "e//x", true},     // a present key renders "" (as for entity metadata)
		{"read", "bad/", false},
		{"read", "bad/{{identity.entity.aliases.auth_up}}", false},
	})
	// A missing key drops the rule.
	e.Aliases[0].CustomMetadata = nil
	checkACL(t, NewACL([]*Policy{p}, e), []aclCase{{"read", "c/acme", false}, {"read", "c/", false}})
}

func TestACLOperations(t *testing.T) {
	a := NewACL([]*Policy{mustPolicy(t, "p", `
path "k/create-only" { capabilities = ["create"] }
path "k/update-only" { capabilities = ["update"] }
path "k/dir/*" { capabilities = ["read"] }
path "k/listable/" { capabilities = ["list"] }
path "k/sudo" { capabilities = ["update", "sudo"] }
path "k/nosudo" { capabilities = ["update"] }
`)}, nil)
	checkACL(t, a, []aclCase{
		{"create", "k/create-only", true},
		{"update", "k/create-only", false},
		{"update", "k/update-only", true},
		{"create", "k/update-only", false},
		{"list", "k/dir/", false}, // read does not grant list
		{"list", "k/listable/", true},
		{"read", "k/listable/", false},
		{"delete", "k/dir/x", false},
		{"help", "k/anything", true},
	})
	if !a.Allowed("update", "k/sudo", true) {
		t.Errorf("sudo path with sudo capability denied")
	}
	if a.Allowed("update", "k/nosudo", true) {
		t.Errorf("sudo path without sudo capability allowed")
	}
	root := NewACL([]*Policy{{Name: "root"}}, nil)
	if !root.Allowed("delete", "anything/at/all", true) {
		t.Errorf("root denied")
	}
	empty := NewACL(nil, nil)
	if empty.Allowed("read", "k/dir/x", false) {
		t.Errorf("no policies allowed a read")
	}
}

func TestMatchSpecialPaths(t *testing.T) {
	pats := []string{"login", "public/*", "t/+/pub"}
	for _, c := range []struct {
		path string
		want bool
	}{
		{"login", true}, {"login/x", false}, {"public/a/b", true}, {"publicx", false},
		{"t/a/pub", true}, {"t/a/b/pub", false}, {"x", false},
	} {
		if got := matchSpecial(pats, c.path); got != c.want {
			t.Errorf("matchSpecial(%q) = %v, want %v", c.path, got, c.want)
		}
	}
}

func TestPolicyNamesLowercased(t *testing.T) {
	a := newAuthState("root")
	if err := a.putPolicy("Mixed", `path "x" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.policies["mixed"]; !ok {
		t.Errorf("policy names are case-insensitive in Vault (stored lower case)")
	}
	if err := a.putPolicy("root", `path "x" { capabilities = ["read"] }`); err == nil || !strings.Contains(err.Error(), "root") {
		t.Errorf("overwriting root policy: %v", err)
	}
}

// Vault checks a LIST path ending in "/" against the glob and "+" rules
// without the slash first (AllowOperation), so "+" and "*" rules that end
// where the listed directory's name ends grant its listing.
func TestACLListWithoutTrailingSlash(t *testing.T) {
	a := NewACL([]*Policy{mustPolicy(t, "p", `
path "byok/tenants/+/keys/+" { capabilities = ["list"] }
path "k/pre*" { capabilities = ["list"] }
path "k/prefix/*" { capabilities = ["deny"] }
`)}, nil)
	checkACL(t, a, []aclCase{
		{"list", "byok/tenants/acme/keys/openai/", true},
		{"list", "byok/tenants/acme/keys/", true}, // "+" matches the empty segment after "/", as in Vault
		{"read", "byok/tenants/acme/keys/openai", false},
		{"list", "k/prefix/", true}, // "k/pre*" matches "k/prefix" before "k/prefix/*" is tried
		{"list", "k/prefix/x/", false},
	})
	// sys/capabilities-self evaluates as a list, like Vault.
	if got := a.Capabilities("byok/tenants/acme/keys/openai/", true); got&CapList == 0 {
		t.Errorf("capabilities of keys/openai/: %b", got)
	}
	src, err := os.ReadFile(filepath.Join(repoRoot(t), "policies", "byok-agent.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	agent := NewACL([]*Policy{mustPolicy(t, "byok-agent", string(src))}, nil)
	checkACL(t, agent, []aclCase{
		{"list", "byok/tenants/acme/keys/openai/", true},
		{"list", "byok/tenants/acme/keys/", true},
	})
}

// Through the HTTP API: the agent lists one provider's key types.
func TestAgentListsProviderKeys(t *testing.T) {
	s := newIsoSim(t)
	s.expect(t, 200, "admin", s.admin, "PUT", "byok/tenants/acme/keys/openai/production", map[string]any{"key_value": s.canaries[0]})
	m := s.expect(t, 200, "agent", s.agent, "LIST", "byok/tenants/acme/keys/openai", nil)
	if keys, _ := Data(m)["keys"].([]any); len(keys) != 1 {
		t.Errorf("agent LIST keys/openai: %v", Data(m))
	}
	s.expect(t, 403, "agent", s.agent, "GET", "byok/tenants/acme/keys/openai/production", nil)
}

// Vault's identitytpl (simpleTemplateHandler) fails only a missing metadata
// key or an empty id/name: a metadata key present with an empty value renders
// as "" and the rule stays, with an empty segment where the value was.
func TestACLTemplateEmptyMetadataValue(t *testing.T) {
	p := mustPolicy(t, "p", `
path "k/{{identity.entity.metadata.team}}/x" { capabilities = ["read"] }
path "k/n/{{identity.entity.name}}" { capabilities = ["read"] }
`)
	a := NewACL([]*Policy{p}, &EntityView{ID: "e-1", Metadata: map[string]string{"team": ""}})
	checkACL(t, a, []aclCase{
		{"read", "k//x", true},
		{"read", "k/n/", false}, // an empty name is not found: the rule is dropped
	})
	// The real tenant policy with tenant="": its rules land on byok/tenants/
	// and byok/tenants//..., none of which is a tenant's path.
	src, err := os.ReadFile(filepath.Join(repoRoot(t), "policies", "byok-tenant.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	ten := NewACL([]*Policy{mustPolicy(t, "byok-tenant", string(src))},
		&EntityView{ID: "e-2", Metadata: map[string]string{"tenant": ""}})
	checkACL(t, ten, []aclCase{
		{"read", "byok/tenants/", true},
		{"list", "byok/tenants/", false},
		{"create", "byok/tenants//keys/openai/production", true},
		{"read", "byok/tenants//creds/openai", false},
		{"read", "byok/tenants/acme", false},
		{"read", "byok/tenants/acme/keys/openai/production", false},
		{"list", "byok/tenants/acme/keys/", false},
		{"read", "byok/tenants/acme/settings", false},
		{"read", "byok/tenants/acme/creds/openai", false},
	})
}

// vault/policy.go parsePaths: "+*" anywhere in a path is refused, and only a
// "+" that starts a segment ("+", "+/...", ".../+...") makes a "+" path; any
// other "+" is literal, so "a/b+c" is an exact path and "a/b+c*" a prefix.
func TestPolicyPlusRules(t *testing.T) {
	for _, b := range []string{
		`path "a/+*" { capabilities = ["read"] }`,
		`path "a/b+*" { capabilities = ["read"] }`,
		`path "a/{{identity.entity.id}}+*" { capabilities = ["read"] }`,
	} {
		if _, err := ParsePolicy("bad", b); err == nil {
			t.Errorf("ParsePolicy(%q) succeeded, want an error", b)
		}
	}
	a := NewACL([]*Policy{mustPolicy(t, "p", `
path "a/b+c" { capabilities = ["read"] }
path "p/q+r*" { capabilities = ["update"] }
`)}, nil)
	if len(a.segments) != 0 || a.exact["a/b+c"] != CapRead || a.prefix["p/q+r"] != CapUpdate {
		t.Errorf("literal '+': exact %v prefix %v segments %v", a.exact, a.prefix, a.segments)
	}
	checkACL(t, a, []aclCase{
		{"read", "a/b+c", true},
		{"read", "a/bxc", false},
		{"update", "p/q+rs/t", true},
		{"update", "p/qxr", false},
	})
}
