// SPDX-License-Identifier: MPL-2.0

package vaultsim

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// Token is a stand-in token (a subset of Vault's TokenEntry).
type Token struct {
	ID              string
	Accessor        string
	Policies        []string // token policies (incl. "default" unless NoDefaultPolicy)
	Meta            map[string]string
	EntityID        string
	DisplayName     string
	Path            string
	TTL             time.Duration // creation TTL; 0 with root: never expires
	Period          time.Duration
	ExplicitMaxTTL  time.Duration
	Renewable       bool
	NoDefaultPolicy bool
	Created         time.Time
	Expires         time.Time // zero: never
}

// Entity is an identity entity.
type Entity struct {
	ID       string
	Name     string
	Metadata map[string]string
	Policies []string
}

type approleRole struct {
	Name         string
	RoleID       string
	Policies     []string
	TokenTTL     time.Duration
	TokenMaxTTL  time.Duration
	SecretIDTTL  time.Duration
	TokenPeriod  time.Duration
	secretIDs    map[string]time.Time // secret id -> expiry (zero: none)
	BindSecretID bool
}

type k8sRole struct {
	Name       string
	SANames    []string
	Namespaces []string
	Policies   []string
	TokenTTL   time.Duration
}

type authState struct {
	mu       sync.RWMutex
	root     string
	policies map[string]*Policy
	tokens   map[string]*Token
	entities map[string]*Entity
	approle  map[string]*approleRole
	k8sKeys  []any // parsed public keys
	k8sPEM   []string
	k8sRoles map[string]*k8sRole
	// certRoles: auth/cert/certs/<name> (certauth.go).
	certRoles map[string]*certRole
	mounts    map[string]*authMount    // enabled auth methods by path (without the slash)
	userpass  map[string]*userpassUser // by user name
	aliases   map[string]*entityAlias  // by alias id
	// verbatimTemplates: Options.VerbatimTemplates.
	verbatimTemplates bool
}

func newAuthState(root string) *authState {
	a := &authState{
		root: root, policies: map[string]*Policy{}, tokens: map[string]*Token{},
		entities: map[string]*Entity{}, approle: map[string]*approleRole{}, k8sRoles: map[string]*k8sRole{},
		certRoles: map[string]*certRole{},
		mounts:    newAuthMounts(), userpass: map[string]*userpassUser{}, aliases: map[string]*entityAlias{},
	}
	a.tokens[root] = &Token{ID: root, Accessor: randHex(12), Policies: []string{"root"},
		DisplayName: "root", Path: "auth/token/root", Created: time.Now(), Meta: map[string]string{}}
	p, err := ParsePolicy("default", defaultPolicy)
	if err != nil {
		panic("vaultsim: the default policy does not parse: " + err.Error())
	}
	a.policies["default"] = p
	return a
}

// defaultPolicy is the part of Vault's built-in "default" policy that covers
// what the stand-in serves: a token may look itself up, renew and revoke
// itself and ask its own capabilities only through it (or a policy granting
// the same), so a token made with no_default_policy gets 403 there, as on
// Vault. Like Vault, it may be rewritten but not deleted.
const defaultPolicy = `
# Allow tokens to look up their own properties
path "auth/token/lookup-self" {
    capabilities = ["read"]
}

# Allow tokens to renew themselves
path "auth/token/renew-self" {
    capabilities = ["update"]
}

# Allow tokens to revoke themselves
path "auth/token/revoke-self" {
    capabilities = ["update"]
}

# Allow a token to look up its own capabilities on a path
path "sys/capabilities-self" {
    capabilities = ["update"]
}
`

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// lookup returns a live token or nil.
func (a *authState) lookup(id string) *Token {
	if id == "" {
		return nil
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	t := a.tokens[id]
	if t == nil || (!t.Expires.IsZero() && time.Now().After(t.Expires)) {
		return nil
	}
	c := *t // a snapshot: renew-self changes the stored entry under the lock
	return &c
}

// effectivePolicies is the token's policies plus its entity's policies.
func (a *authState) effectivePolicies(t *Token) []string {
	pols := append([]string(nil), t.Policies...)
	if e := a.entities[t.EntityID]; e != nil {
		pols = append(pols, e.Policies...)
	}
	return pols
}

// aclFor builds the token's ACL (policies re-read on every request, entity
// templates resolved, as Vault does).
func (a *authState) aclFor(t *Token) *ACL {
	a.mu.RLock()
	defer a.mu.RUnlock()
	var pols []*Policy
	for _, n := range a.effectivePolicies(t) {
		if n == "root" {
			pols = append(pols, &Policy{Name: "root"})
			continue
		}
		if p := a.policies[n]; p != nil {
			pols = append(pols, p)
		}
	}
	var ev *EntityView
	if e := a.entities[t.EntityID]; e != nil {
		ev = &EntityView{ID: e.ID, Name: e.Name, Metadata: e.Metadata, VerbatimTemplates: a.verbatimTemplates}
		for _, al := range a.aliases {
			if al.CanonicalID == e.ID {
				ev.Aliases = append(ev.Aliases, AliasView{ID: al.ID, Name: al.Name,
					MountAccessor: al.MountAccessor, CustomMetadata: al.CustomMetadata})
			}
		}
	}
	return NewACL(pols, ev)
}

func (a *authState) entityInfo(id string) *logical.Entity {
	a.mu.RLock()
	defer a.mu.RUnlock()
	e := a.entities[id]
	if e == nil {
		return nil
	}
	md := map[string]string{}
	for k, v := range e.Metadata {
		md[k] = v
	}
	return &logical.Entity{ID: e.ID, Name: e.Name, Metadata: md}
}

// PutPolicy stores a policy after parsing it.
func (a *authState) putPolicy(name, hcl string) error {
	name = strings.ToLower(strings.TrimSpace(name))
	if name == "" {
		return errStatus(http.StatusBadRequest, "policy name must be provided")
	}
	if name == "root" {
		return errStatus(http.StatusBadRequest, "cannot update \"root\" policy")
	}
	p, err := ParsePolicy(name, hcl)
	if err != nil {
		return errStatus(http.StatusBadRequest, err.Error())
	}
	a.mu.Lock()
	a.policies[name] = p
	a.mu.Unlock()
	return nil
}

type tokenParams struct {
	ID              string
	Policies        []string
	Meta            map[string]string
	TTL             time.Duration
	MaxTTL          time.Duration
	Period          time.Duration
	Renewable       bool
	NoDefaultPolicy bool
	EntityID        string
	DisplayName     string
	Path            string
}

func (a *authState) issue(p tokenParams) *Token {
	pols := map[string]bool{}
	for _, x := range p.Policies {
		x = strings.ToLower(strings.TrimSpace(x))
		if x != "" {
			pols[x] = true
		}
	}
	if !p.NoDefaultPolicy && !pols["root"] {
		pols["default"] = true
	}
	list := make([]string, 0, len(pols))
	for x := range pols {
		list = append(list, x)
	}
	sort.Strings(list)
	if p.ID == "" {
		p.ID = "hvs." + randHex(16)
	}
	ttl := p.TTL
	if p.Period > 0 {
		ttl = p.Period
	}
	if ttl == 0 && !pols["root"] {
		ttl = DefaultLeaseTTL
	}
	if p.MaxTTL > 0 && ttl > p.MaxTTL {
		ttl = p.MaxTTL
	}
	now := time.Now()
	t := &Token{ID: p.ID, Accessor: randHex(12), Policies: list, Meta: p.Meta, EntityID: p.EntityID,
		DisplayName: p.DisplayName, Path: p.Path, TTL: ttl, Period: p.Period, ExplicitMaxTTL: p.MaxTTL,
		Renewable: p.Renewable, NoDefaultPolicy: p.NoDefaultPolicy, Created: now}
	if t.Meta == nil {
		t.Meta = map[string]string{}
	}
	if ttl > 0 {
		t.Expires = now.Add(ttl)
	}
	a.mu.Lock()
	a.tokens[t.ID] = t
	a.mu.Unlock()
	return t
}

func (a *authState) createEntity(id, name string, md map[string]string, pols []string) *Entity {
	if id == "" {
		id = newUUID()
	}
	if name == "" {
		name = "entity_" + id[:8]
	}
	if md == nil {
		md = map[string]string{}
	}
	e := &Entity{ID: id, Name: name, Metadata: md, Policies: pols}
	a.mu.Lock()
	a.entities[id] = e
	a.mu.Unlock()
	return e
}

// ---- value coercion (the Go framework's FieldData rules, simplified) ----------------

func asString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

func asStrings(v any) []string {
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		var out []string
		for _, s := range strings.Split(x, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		return out
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			out = append(out, asString(e))
		}
		return out
	}
	return []string{asString(v)}
}

// asKVPairs reads a TypeKVPairs field as Vault does: an object, or key=value
// pairs (a list, or one comma-separated string, as `vault write ... metadata=k=v`
// sends). nil when absent.
func asKVPairs(v any) (map[string]string, error) {
	var items []string
	switch x := v.(type) {
	case nil:
		return nil, nil
	case map[string]any:
		return asStringMap(x), nil
	case string:
		for _, it := range strings.Split(x, ",") {
			if it = strings.TrimSpace(it); it != "" {
				items = append(items, it)
			}
		}
	case []any:
		for _, it := range x {
			s, ok := it.(string)
			if !ok {
				return nil, fmt.Errorf("expected key=value strings")
			}
			items = append(items, s)
		}
	default:
		return nil, fmt.Errorf("expected a map or key=value pairs")
	}
	out := make(map[string]string, len(items))
	for _, it := range items {
		k, val, ok := strings.Cut(it, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not key=value", it)
		}
		out[k] = val
	}
	return out, nil
}

func asStringMap(v any) map[string]string {
	m, ok := v.(map[string]any)
	if !ok {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, x := range m {
		out[k] = asString(x)
	}
	return out
}

func asBool(v any) bool {
	switch x := v.(type) {
	case bool:
		return x
	case string:
		b, _ := strconv.ParseBool(x)
		return b
	}
	return false
}

// asDuration accepts 3600, "3600", "1h", "30m".
func asDuration(v any) (time.Duration, error) {
	s := asString(v)
	if s == "" {
		return 0, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Duration(f * float64(time.Second)), nil
	}
	if strings.HasSuffix(s, "d") {
		if n, err := strconv.ParseInt(strings.TrimSuffix(s, "d"), 10, 64); err == nil {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q", s)
	}
	return d, nil
}

// ---- HTTP: sys/, auth/, identity/ -------------------------------------------------------

func (s *Server) handleAuthAPI(rc *reqCtx) error {
	p := strings.TrimSuffix(rc.path, "/")
	a := s.auth
	switch {
	case p == "sys/policies/acl" || p == "sys/policy":
		if rc.op != "list" && rc.op != "read" {
			return errStatus(http.StatusMethodNotAllowed, "unsupported operation")
		}
		if err := s.authorize(rc, "list", "sys/policies/acl/", false); err != nil {
			return err
		}
		a.mu.RLock()
		keys := []any{"root"}
		for n := range a.policies {
			keys = append(keys, n)
		}
		a.mu.RUnlock()
		sort.Slice(keys, func(i, j int) bool { return keys[i].(string) < keys[j].(string) })
		writeJSON(rc.w, http.StatusOK, envelope(map[string]any{"keys": keys, "policies": keys}, nil, nil))
		return nil
	case strings.HasPrefix(p, "sys/policies/acl/") || strings.HasPrefix(p, "sys/policy/"):
		name := strings.ToLower(p[strings.LastIndex(p, "/")+1:])
		return s.handlePolicy(rc, p, name)
	case p == "sys/capabilities-self":
		if err := s.authorize(rc, "update", p, false); err != nil { // the default policy grants it
			return err
		}
		acl := a.aclFor(rc.tok)
		out := map[string]any{}
		var all []string
		for _, path := range asStrings(rc.data["paths"]) {
			// Vault evaluates capabilities as a list operation.
			caps := CapabilityNames(acl.Capabilities(path, true))
			if acl.IsRoot() {
				caps = []string{"root"}
			}
			out[path] = caps
			all = caps
		}
		out["capabilities"] = all
		writeJSON(rc.w, http.StatusOK, envelope(out, nil, nil))
		return nil
	case p == "identity/entity":
		if rc.op != "update" {
			return errStatus(http.StatusMethodNotAllowed, "unsupported operation")
		}
		if err := s.authorizeOp(rc, "update", "identity/entity", false); err != nil {
			return err
		}
		md, err := asKVPairs(rc.data["metadata"])
		if err != nil {
			return errStatus(http.StatusBadRequest, "invalid metadata: "+err.Error())
		}
		e := a.createEntity(asString(rc.data["id"]), asString(rc.data["name"]), md, asStrings(rc.data["policies"]))
		writeJSON(rc.w, http.StatusOK, envelope(map[string]any{"id": e.ID, "name": e.Name, "aliases": nil}, nil, nil))
		return nil
	case strings.HasPrefix(p, "identity/entity/id/"):
		id := strings.TrimPrefix(p, "identity/entity/id/")
		if err := s.authorize(rc, rc.op, p, false); err != nil {
			return err
		}
		md, err := asKVPairs(rc.data["metadata"])
		if err != nil {
			return errStatus(http.StatusBadRequest, "invalid metadata: "+err.Error())
		}
		a.mu.Lock()
		e := a.entities[id]
		switch rc.op {
		case "read":
		case "update":
			if e != nil {
				if md != nil {
					e.Metadata = md
				}
				if v, ok := rc.data["policies"]; ok {
					e.Policies = asStrings(v)
				}
			}
		case "delete":
			delete(a.entities, id)
			a.mu.Unlock()
			rc.w.WriteHeader(http.StatusNoContent)
			return nil
		}
		aliases := []any{}
		for _, al := range a.aliases {
			if e != nil && al.CanonicalID == e.ID {
				custom := al.CustomMetadata
				if custom == nil {
					custom = map[string]string{}
				}
				aliases = append(aliases, map[string]any{"id": al.ID, "name": al.Name,
					"canonical_id": al.CanonicalID, "mount_accessor": al.MountAccessor,
					"metadata": map[string]string{}, "custom_metadata": custom})
			}
		}
		a.mu.Unlock()
		if e == nil {
			return errStatus(http.StatusNotFound)
		}
		writeJSON(rc.w, http.StatusOK, envelope(map[string]any{"id": e.ID, "name": e.Name,
			"metadata": e.Metadata, "policies": e.Policies, "aliases": aliases}, nil, nil))
		return nil
	case p == "auth/token/create" || p == "auth/token/create-orphan":
		return s.handleTokenCreate(rc, p)
	case p == "auth/token/lookup-self":
		// Granted by the default policy (read); a POST needs update.
		if err := s.authorize(rc, rc.op, p, false); err != nil {
			return err
		}
		writeJSON(rc.w, http.StatusOK, envelope(s.tokenData(rc.tok), nil, nil))
		return nil
	case p == "auth/token/renew-self":
		if err := s.authorize(rc, "update", p, false); err != nil {
			return err
		}
		return s.handleRenew(rc)
	case p == "auth/token/accessors":
		// Vault: LIST with sudo; the accessors of every token.
		if rc.op != "list" {
			return errStatus(http.StatusMethodNotAllowed, "unsupported operation")
		}
		if err := s.authorize(rc, "list", p, true); err != nil {
			return err
		}
		a.mu.RLock()
		keys := []any{}
		for _, t := range a.tokens {
			keys = append(keys, t.Accessor)
		}
		a.mu.RUnlock()
		sort.Slice(keys, func(i, j int) bool { return keys[i].(string) < keys[j].(string) })
		writeJSON(rc.w, http.StatusOK, envelope(map[string]any{"keys": keys}, nil, nil))
		return nil
	case p == "auth/token/lookup-accessor" || p == "auth/token/revoke-accessor":
		if rc.op != "update" {
			return errStatus(http.StatusMethodNotAllowed, "unsupported operation")
		}
		if err := s.authorize(rc, "update", p, false); err != nil {
			return err
		}
		acc, _ := rc.data["accessor"].(string)
		a.mu.Lock()
		var found *Token
		for _, t := range a.tokens {
			if acc != "" && t.Accessor == acc {
				found = t
			}
		}
		if found != nil && p == "auth/token/revoke-accessor" {
			delete(a.tokens, found.ID)
		}
		a.mu.Unlock()
		if found == nil {
			return errStatus(http.StatusBadRequest, "invalid accessor")
		}
		if p == "auth/token/revoke-accessor" {
			rc.w.WriteHeader(http.StatusNoContent)
			return nil
		}
		d := s.tokenData(found)
		d["id"] = "" // Vault never returns the token itself for an accessor lookup
		writeJSON(rc.w, http.StatusOK, envelope(d, nil, nil))
		return nil
	case p == "auth/token/revoke-self":
		if err := s.authorize(rc, "update", p, false); err != nil { // the default policy grants it
			return err
		}
		a.mu.Lock()
		delete(a.tokens, rc.tok.ID)
		a.mu.Unlock()
		rc.w.WriteHeader(http.StatusNoContent)
		return nil
	case p == "sys/auth" || strings.HasPrefix(p, "sys/auth/"):
		return s.handleSysAuth(rc, p)
	case p == "identity/entity-alias" || strings.HasPrefix(p, "identity/entity-alias/id/"):
		return s.handleEntityAlias(rc, p)
	case strings.HasPrefix(p, "auth/approle/") && a.mounted("approle"):
		return s.handleAppRole(rc, strings.TrimPrefix(p, "auth/approle/"))
	case strings.HasPrefix(p, "auth/kubernetes/") && a.mounted("kubernetes"):
		return s.handleKubernetes(rc, strings.TrimPrefix(p, "auth/kubernetes/"))
	case strings.HasPrefix(p, "auth/cert/") && a.mounted("cert"):
		return s.handleCert(rc, strings.TrimPrefix(p, "auth/cert/"))
	case strings.HasPrefix(p, "auth/userpass/") && a.mounted("userpass"):
		return s.handleUserpass(rc, strings.TrimPrefix(p, "auth/userpass/"))
	}
	return errStatus(http.StatusNotFound, fmt.Sprintf("no handler for route %q. route entry not found.", rc.path))
}

func (s *Server) handlePolicy(rc *reqCtx, path, name string) error {
	a := s.auth
	switch rc.op {
	case "read":
		if err := s.authorize(rc, "read", path, false); err != nil {
			return err
		}
		a.mu.RLock()
		pol := a.policies[name]
		a.mu.RUnlock()
		if name == "root" {
			writeJSON(rc.w, http.StatusOK, envelope(map[string]any{"name": "root", "policy": "", "rules": ""}, nil, nil))
			return nil
		}
		if pol == nil {
			return errStatus(http.StatusNotFound)
		}
		writeJSON(rc.w, http.StatusOK, envelope(map[string]any{"name": name, "policy": pol.Raw, "rules": pol.Raw}, nil, nil))
		return nil
	case "update":
		a.mu.RLock()
		_, exists := a.policies[name]
		a.mu.RUnlock()
		op := "update"
		if !exists {
			op = "create"
		}
		if err := s.authorize(rc, op, path, false); err != nil {
			return err
		}
		text := asString(rc.data["policy"])
		if text == "" {
			text = asString(rc.data["rules"])
		}
		if err := a.putPolicy(name, text); err != nil {
			return err
		}
		rc.w.WriteHeader(http.StatusNoContent)
		return nil
	case "delete":
		if err := s.authorize(rc, "delete", path, false); err != nil {
			return err
		}
		if name == "root" || name == "default" {
			return errStatus(http.StatusBadRequest, fmt.Sprintf("cannot delete %q policy", name))
		}
		a.mu.Lock()
		delete(a.policies, name)
		a.mu.Unlock()
		rc.w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return errStatus(http.StatusMethodNotAllowed, "unsupported operation")
}

func (s *Server) tokenData(t *Token) map[string]any {
	ttl := 0
	var expire any
	if !t.Expires.IsZero() {
		ttl = int(time.Until(t.Expires) / time.Second)
		if ttl < 0 {
			ttl = 0
		}
		expire = t.Expires.UTC().Format(time.RFC3339Nano)
	}
	s.auth.mu.RLock()
	var idp []string
	if e := s.auth.entities[t.EntityID]; e != nil {
		idp = e.Policies
	}
	s.auth.mu.RUnlock()
	return map[string]any{
		"accessor": t.Accessor, "creation_time": t.Created.Unix(), "creation_ttl": int(t.TTL / time.Second),
		"display_name": t.DisplayName, "entity_id": t.EntityID, "expire_time": expire,
		"explicit_max_ttl": int(t.ExplicitMaxTTL / time.Second), "id": t.ID,
		"issue_time": t.Created.UTC().Format(time.RFC3339Nano), "meta": t.Meta, "num_uses": 0,
		"orphan": true, "path": t.Path, "policies": t.Policies, "identity_policies": idp,
		"renewable": t.Renewable, "ttl": ttl, "period": int(t.Period / time.Second), "type": "service",
	}
}

func (s *Server) authEnvelope(t *Token) map[string]any {
	s.auth.mu.RLock()
	var idp []string
	if e := s.auth.entities[t.EntityID]; e != nil {
		idp = e.Policies
	}
	pols := s.auth.effectivePolicies(t)
	s.auth.mu.RUnlock()
	sort.Strings(pols)
	return envelope(nil, nil, map[string]any{
		"client_token": t.ID, "accessor": t.Accessor, "policies": pols, "token_policies": t.Policies,
		"identity_policies": idp, "metadata": t.Meta, "lease_duration": int(t.TTL / time.Second),
		"renewable": t.Renewable, "entity_id": t.EntityID, "token_type": "service", "orphan": true,
		"mfa_requirement": nil, "num_uses": 0,
	})
}

func (s *Server) handleTokenCreate(rc *reqCtx, path string) error {
	if rc.op != "update" {
		return errStatus(http.StatusMethodNotAllowed, "unsupported operation")
	}
	if err := s.authorizeOp(rc, "update", path, false); err != nil {
		return err
	}
	d := rc.data
	pols := asStrings(d["policies"])
	parentRoot := s.auth.aclFor(rc.tok).IsRoot()
	if !parentRoot {
		// Vault: a non-root parent can only hand out a subset of its policies.
		have := map[string]bool{}
		for _, x := range rc.tok.Policies {
			have[x] = true
		}
		for _, x := range pols {
			if !have[strings.ToLower(x)] && strings.ToLower(x) != "default" {
				return errStatus(http.StatusBadRequest, "child policies must be subset of parent")
			}
		}
		if len(pols) == 0 {
			for _, x := range rc.tok.Policies {
				if x != "default" {
					pols = append(pols, x)
				}
			}
		}
	}
	ttl, err := asDuration(d["ttl"])
	if err != nil {
		return errStatus(http.StatusBadRequest, err.Error())
	}
	maxTTL, err := asDuration(d["explicit_max_ttl"])
	if err != nil {
		return errStatus(http.StatusBadRequest, err.Error())
	}
	period, err := asDuration(d["period"])
	if err != nil {
		return errStatus(http.StatusBadRequest, err.Error())
	}
	renewable := true
	if v, ok := d["renewable"]; ok {
		renewable = asBool(v)
	}
	entityID := asString(d["entity_id"])
	if entityID != "" {
		if !parentRoot {
			return errStatus(http.StatusBadRequest, "entity_id (a vaultsim extension) requires a root token")
		}
		s.auth.mu.RLock()
		_, ok := s.auth.entities[entityID]
		s.auth.mu.RUnlock()
		if !ok {
			return errStatus(http.StatusBadRequest, "entity_id: no such entity")
		}
	}
	t := s.auth.issue(tokenParams{ID: asString(d["id"]), Policies: pols, Meta: asStringMap(d["meta"]),
		TTL: ttl, MaxTTL: maxTTL, Period: period, Renewable: renewable,
		NoDefaultPolicy: asBool(d["no_default_policy"]), EntityID: entityID,
		DisplayName: "token-" + asString(d["display_name"]), Path: "auth/token/create"})
	writeJSON(rc.w, http.StatusOK, s.authEnvelope(t))
	return nil
}

func (s *Server) handleRenew(rc *reqCtx) error {
	t := rc.tok
	if t.Expires.IsZero() {
		writeJSON(rc.w, http.StatusOK, s.authEnvelope(t))
		return nil
	}
	if !t.Renewable {
		return errStatus(http.StatusBadRequest, "lease is not renewable")
	}
	inc, err := asDuration(rc.data["increment"])
	if err != nil {
		return errStatus(http.StatusBadRequest, err.Error())
	}
	if t.Period > 0 {
		inc = t.Period
	}
	if inc <= 0 {
		inc = t.TTL
	}
	now := time.Now()
	exp := now.Add(inc)
	if t.ExplicitMaxTTL > 0 && exp.After(t.Created.Add(t.ExplicitMaxTTL)) {
		exp = t.Created.Add(t.ExplicitMaxTTL)
	}
	if max := t.Created.Add(DefaultLeaseTTL); t.Period == 0 && exp.After(max) {
		exp = max
	}
	s.auth.mu.Lock()
	stored := s.auth.tokens[t.ID]
	if stored == nil {
		s.auth.mu.Unlock()
		return errPermissionDenied
	}
	stored.Expires = exp
	stored.TTL = exp.Sub(now).Round(time.Second)
	c := *stored
	s.auth.mu.Unlock()
	writeJSON(rc.w, http.StatusOK, s.authEnvelope(&c))
	return nil
}

// ---- AppRole --------------------------------------------------------------------------

func (s *Server) handleAppRole(rc *reqCtx, p string) error {
	a := s.auth
	if p == "login" {
		if rc.op != "update" {
			return errStatus(http.StatusMethodNotAllowed, "unsupported operation")
		}
		roleID, secretID := asString(rc.data["role_id"]), asString(rc.data["secret_id"])
		if roleID == "" {
			return errStatus(http.StatusBadRequest, "missing role_id")
		}
		a.mu.Lock()
		var role *approleRole
		for _, r := range a.approle {
			if r.RoleID == roleID {
				role = r
			}
		}
		if role == nil {
			a.mu.Unlock()
			return errStatus(http.StatusBadRequest, "invalid role or secret ID")
		}
		if role.BindSecretID {
			exp, ok := role.secretIDs[secretID]
			if secretID == "" || !ok || (!exp.IsZero() && time.Now().After(exp)) {
				a.mu.Unlock()
				return errStatus(http.StatusBadRequest, "invalid role or secret ID")
			}
		}
		a.mu.Unlock()
		t := a.issue(tokenParams{Policies: role.Policies, TTL: role.TokenTTL, MaxTTL: role.TokenMaxTTL,
			Period: role.TokenPeriod, Renewable: true, DisplayName: "approle",
			Path: "auth/approle/login", Meta: map[string]string{"role_name": role.Name}})
		writeJSON(rc.w, http.StatusOK, s.authEnvelope(t))
		return nil
	}
	if !strings.HasPrefix(p, "role/") {
		return errStatus(http.StatusNotFound, "unsupported path")
	}
	rest := strings.TrimPrefix(p, "role/")
	parts := strings.SplitN(rest, "/", 2)
	name := strings.ToLower(parts[0])
	sub := ""
	if len(parts) == 2 {
		sub = parts[1]
	}
	op := rc.op
	if err := s.authorizeOp(rc, op, "auth/approle/"+p, false); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	role := a.approle[name]
	switch {
	case sub == "" && op == "update":
		if role == nil {
			role = &approleRole{Name: name, RoleID: newUUID(), secretIDs: map[string]time.Time{}, BindSecretID: true}
		}
		d := rc.data
		if v, ok := d["token_policies"]; ok {
			role.Policies = asStrings(v)
		} else if v, ok := d["policies"]; ok {
			role.Policies = asStrings(v)
		}
		var err error
		for k, dst := range map[string]*time.Duration{"token_ttl": &role.TokenTTL, "token_max_ttl": &role.TokenMaxTTL,
			"secret_id_ttl": &role.SecretIDTTL, "token_period": &role.TokenPeriod} {
			if v, ok := d[k]; ok {
				if *dst, err = asDuration(v); err != nil {
					return errStatus(http.StatusBadRequest, k+": "+err.Error())
				}
			}
		}
		if v, ok := d["bind_secret_id"]; ok {
			role.BindSecretID = asBool(v)
		}
		if v := asString(d["role_id"]); v != "" {
			role.RoleID = v
		}
		a.approle[name] = role
		rc.w.WriteHeader(http.StatusNoContent)
		return nil
	case sub == "" && op == "read":
		if role == nil {
			return errStatus(http.StatusNotFound)
		}
		writeJSON(rc.w, http.StatusOK, envelope(map[string]any{"token_policies": role.Policies,
			"token_ttl": int(role.TokenTTL / time.Second), "token_max_ttl": int(role.TokenMaxTTL / time.Second),
			"secret_id_ttl": int(role.SecretIDTTL / time.Second), "bind_secret_id": role.BindSecretID}, nil, nil))
		return nil
	case sub == "" && op == "delete":
		delete(a.approle, name)
		rc.w.WriteHeader(http.StatusNoContent)
		return nil
	case sub == "role-id" && op == "read":
		if role == nil {
			return errStatus(http.StatusNotFound)
		}
		writeJSON(rc.w, http.StatusOK, envelope(map[string]any{"role_id": role.RoleID}, nil, nil))
		return nil
	case sub == "secret-id" && op == "update":
		if role == nil {
			return errStatus(http.StatusBadRequest, fmt.Sprintf("role %q does not exist", name))
		}
		sid := newUUID()
		var exp time.Time
		if role.SecretIDTTL > 0 {
			exp = time.Now().Add(role.SecretIDTTL)
		}
		role.secretIDs[sid] = exp
		writeJSON(rc.w, http.StatusOK, envelope(map[string]any{"secret_id": sid, "secret_id_accessor": randHex(16),
			"secret_id_ttl": int(role.SecretIDTTL / time.Second), "secret_id_num_uses": 0}, nil, nil))
		return nil
	}
	return errStatus(http.StatusMethodNotAllowed, "unsupported operation")
}

// ---- Kubernetes -------------------------------------------------------------------------

func (s *Server) handleKubernetes(rc *reqCtx, p string) error {
	a := s.auth
	switch {
	case p == "login":
		if rc.op != "update" {
			return errStatus(http.StatusMethodNotAllowed, "unsupported operation")
		}
		return s.k8sLogin(rc)
	case p == "config":
		if err := s.authorizeOp(rc, rc.op, "auth/kubernetes/config", false); err != nil {
			return err
		}
		if rc.op == "read" {
			a.mu.RLock()
			defer a.mu.RUnlock()
			writeJSON(rc.w, http.StatusOK, envelope(map[string]any{"pem_keys": a.k8sPEM}, nil, nil))
			return nil
		}
		if rc.op != "update" {
			return errStatus(http.StatusMethodNotAllowed, "unsupported operation")
		}
		pems := asStrings(rc.data["pem_keys"])
		if l, ok := rc.data["pem_keys"].([]any); ok {
			pems = nil
			for _, x := range l {
				pems = append(pems, asString(x))
			}
		}
		keys, err := parsePublicKeys(pems)
		if err != nil {
			return errStatus(http.StatusBadRequest, err.Error())
		}
		a.mu.Lock()
		a.k8sKeys, a.k8sPEM = keys, pems
		a.mu.Unlock()
		rc.w.WriteHeader(http.StatusNoContent)
		return nil
	case strings.HasPrefix(p, "role/"):
		name := strings.ToLower(strings.TrimPrefix(p, "role/"))
		if err := s.authorizeOp(rc, rc.op, "auth/kubernetes/"+p, false); err != nil {
			return err
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		switch rc.op {
		case "update":
			r := &k8sRole{Name: name, SANames: asStrings(rc.data["bound_service_account_names"]),
				Namespaces: asStrings(rc.data["bound_service_account_namespaces"]),
				Policies:   asStrings(rc.data["token_policies"])}
			if r.Policies == nil {
				r.Policies = asStrings(rc.data["policies"])
			}
			var err error
			if r.TokenTTL, err = asDuration(rc.data["token_ttl"]); err != nil {
				return errStatus(http.StatusBadRequest, "token_ttl: "+err.Error())
			}
			if len(r.SANames) == 0 || len(r.Namespaces) == 0 {
				return errStatus(http.StatusBadRequest, "bound_service_account_names and bound_service_account_namespaces must be set")
			}
			a.k8sRoles[name] = r
			rc.w.WriteHeader(http.StatusNoContent)
			return nil
		case "read":
			r := a.k8sRoles[name]
			if r == nil {
				return errStatus(http.StatusNotFound)
			}
			writeJSON(rc.w, http.StatusOK, envelope(map[string]any{"bound_service_account_names": r.SANames,
				"bound_service_account_namespaces": r.Namespaces, "token_policies": r.Policies,
				"token_ttl": int(r.TokenTTL / time.Second)}, nil, nil))
			return nil
		case "delete":
			delete(a.k8sRoles, name)
			rc.w.WriteHeader(http.StatusNoContent)
			return nil
		}
		return errStatus(http.StatusMethodNotAllowed, "unsupported operation")
	}
	return errStatus(http.StatusNotFound, "unsupported path")
}

func (s *Server) k8sLogin(rc *reqCtx) error {
	a := s.auth
	roleName, jwt := strings.ToLower(asString(rc.data["role"])), asString(rc.data["jwt"])
	if roleName == "" {
		return errStatus(http.StatusBadRequest, "missing role")
	}
	if jwt == "" {
		return errStatus(http.StatusBadRequest, "missing jwt")
	}
	a.mu.RLock()
	role := a.k8sRoles[roleName]
	keys := a.k8sKeys
	a.mu.RUnlock()
	if role == nil {
		return errStatus(http.StatusBadRequest, fmt.Sprintf("invalid role name %q", roleName))
	}
	claims, err := verifyJWT(jwt, keys, time.Now())
	if err != nil {
		return errPermissionDenied
	}
	ns, sa := k8sIdentity(claims)
	if ns == "" || sa == "" {
		return errPermissionDenied
	}
	if !boundMatch(role.SANames, sa) {
		return errStatus(http.StatusForbidden, "service account name not authorized")
	}
	if !boundMatch(role.Namespaces, ns) {
		return errStatus(http.StatusForbidden, "namespace not authorized")
	}
	t := a.issue(tokenParams{Policies: role.Policies, TTL: role.TokenTTL, Renewable: true,
		DisplayName: "kubernetes-" + ns + "-" + sa, Path: "auth/kubernetes/login",
		Meta: map[string]string{"role": roleName, "service_account_name": sa, "service_account_namespace": ns}})
	writeJSON(rc.w, http.StatusOK, s.authEnvelope(t))
	return nil
}

func boundMatch(list []string, v string) bool {
	for _, x := range list {
		if x == "*" || x == v {
			return true
		}
	}
	return false
}
