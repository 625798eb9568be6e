// SPDX-License-Identifier: MPL-2.0

package vaultsim

// Auth methods as Vault mounts them (sys/auth), the userpass method, and
// identity entity aliases: what an operator uses to give a tenant's people an
// identity whose entity carries `tenant` metadata. Tests that use only these
// standard endpoints (not the stand-in's entity_id token extension) run
// unchanged against a real Vault.
//
// Simplifications: an auth method is mounted only at its type's path
// (approle/, kubernetes/, userpass/, cert/), and disabling one forgets its roles
// and users and revokes the tokens it issued, as Vault does.

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"sort"
	"strings"
	"time"
)

// authMount is an enabled auth method.
type authMount struct {
	Type        string
	Accessor    string
	Description string
}

type userpassUser struct {
	Name     string
	Salt     string
	Hash     [32]byte
	Policies []string
	TokenTTL time.Duration
}

// entityAlias ties a login (mount accessor + name) to an entity.
type entityAlias struct {
	ID            string
	Name          string
	CanonicalID   string
	MountAccessor string
	// CustomMetadata is set by an operator on identity/entity-alias. Vault's
	// alias Metadata is set by the auth method at login; the stand-in's
	// methods set none (Vault's userpass sets none either).
	CustomMetadata map[string]string
}

// authTypes are the methods the stand-in implements besides token.
var authTypes = map[string]string{
	"approle":    "AppRole (role_id and secret_id)",
	"cert":       "TLS client certificates",
	"kubernetes": "Kubernetes service-account JWTs",
	"userpass":   "username and password",
}

func newAuthMounts() map[string]*authMount {
	return map[string]*authMount{"token": {Type: "token", Accessor: "auth_token_" + randHex(4),
		Description: "token based credentials"}}
}

// mountConfigured enables typ for a config file that configures it (a.mu not held).
func (a *authState) mountConfigured(typ string) {
	if a.mounts[typ] == nil {
		a.mounts[typ] = &authMount{Type: typ, Accessor: "auth_" + typ + "_" + randHex(4),
			Description: "from the vaultsim config file"}
	}
}

// mounted reports whether the auth method typ is enabled (takes a.mu).
func (a *authState) mounted(typ string) bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.mounts[typ] != nil
}

func (a *authState) accessorOf(typ string) string {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if m := a.mounts[typ]; m != nil {
		return m.Accessor
	}
	return ""
}

func (a *authState) mountView(m *authMount) map[string]any {
	return map[string]any{"type": m.Type, "accessor": m.Accessor, "description": m.Description,
		"config": map[string]any{"default_lease_ttl": 0, "max_lease_ttl": 0, "token_type": "default-service"},
		"local":  false, "seal_wrap": false, "external_entropy_access": false, "options": nil,
		"uuid": "", "plugin_version": "", "running_plugin_version": "", "running_sha256": ""}
}

// handleSysAuth serves sys/auth (list) and sys/auth/<path> (enable, read, disable).
func (s *Server) handleSysAuth(rc *reqCtx, p string) error {
	a := s.auth
	if p == "sys/auth" {
		if rc.op != "read" {
			return errStatus(http.StatusMethodNotAllowed, "unsupported operation")
		}
		if err := s.authorize(rc, "read", "sys/auth", false); err != nil {
			return err
		}
		data := map[string]any{}
		a.mu.RLock()
		for path, m := range a.mounts {
			data[path+"/"] = a.mountView(m)
		}
		a.mu.RUnlock()
		out := envelope(data, nil, nil)
		for k, v := range data { // Vault repeats the mounts at the top level
			out[k] = v
		}
		writeJSON(rc.w, http.StatusOK, out)
		return nil
	}
	path := strings.Trim(strings.TrimPrefix(p, "sys/auth/"), "/")
	if rc.op == "read" {
		if err := s.authorize(rc, "read", p, true); err != nil {
			return err
		}
		a.mu.RLock()
		m := a.mounts[path]
		a.mu.RUnlock()
		if m == nil {
			return errStatus(http.StatusBadRequest, "No auth engine at "+path+"/")
		}
		writeJSON(rc.w, http.StatusOK, envelope(a.mountView(m), nil, nil))
		return nil
	}
	if rc.op != "update" && rc.op != "delete" {
		return errStatus(http.StatusMethodNotAllowed, "unsupported operation")
	}
	// Vault: sys/auth/* is a root-protected path (sudo).
	if err := s.authorizeOp(rc, rc.op, p, true); err != nil {
		return err
	}
	if rc.op == "delete" {
		if path == "token" {
			return errStatus(http.StatusBadRequest, "token credential backend cannot be disabled")
		}
		a.mu.Lock()
		if m := a.mounts[path]; m != nil {
			delete(a.mounts, path)
			switch path {
			case "approle":
				a.approle = map[string]*approleRole{}
			case "kubernetes":
				a.k8sKeys, a.k8sPEM, a.k8sRoles = nil, nil, map[string]*k8sRole{}
			case "userpass":
				a.userpass = map[string]*userpassUser{}
			case "cert":
				a.certRoles = map[string]*certRole{}
			}
			for id, t := range a.tokens {
				if strings.HasPrefix(t.Path, "auth/"+path+"/") {
					delete(a.tokens, id)
				}
			}
			for id, al := range a.aliases {
				if al.MountAccessor == m.Accessor {
					delete(a.aliases, id)
				}
			}
		}
		a.mu.Unlock()
		rc.w.WriteHeader(http.StatusNoContent)
		return nil
	}
	typ := asString(rc.data["type"])
	if typ == "" {
		return errStatus(http.StatusBadRequest, "plugin not found in the catalog: ")
	}
	if _, ok := authTypes[typ]; !ok {
		return errStatus(http.StatusBadRequest, "plugin not found in the catalog: "+typ)
	}
	if path != typ {
		return errStatus(http.StatusBadRequest,
			"vaultsim mounts an auth method only at its type's path ("+typ+"/), not at "+path+"/")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.mounts[path] != nil {
		return errStatus(http.StatusBadRequest, "path is already in use at "+path+"/")
	}
	desc := asString(rc.data["description"])
	a.mounts[path] = &authMount{Type: typ, Accessor: "auth_" + typ + "_" + randHex(4), Description: desc}
	rc.w.WriteHeader(http.StatusNoContent)
	return nil
}

// ---- userpass ---------------------------------------------------------------------------

func userpassHash(salt, password string) [32]byte {
	return sha256.Sum256([]byte(salt + "\x00" + password))
}

// tokenPolicies reads token_policies, or the older "policies" field.
func tokenPolicies(d map[string]any) ([]string, bool) {
	for _, k := range []string{"token_policies", "policies"} {
		if v, ok := d[k]; ok {
			if s, isStr := v.(string); isStr {
				var out []string
				for _, x := range strings.Split(s, ",") {
					if x = strings.TrimSpace(x); x != "" {
						out = append(out, x)
					}
				}
				return out, true
			}
			return asStrings(v), true
		}
	}
	return nil, false
}

func (s *Server) handleUserpass(rc *reqCtx, p string) error {
	a := s.auth
	switch {
	case strings.HasPrefix(p, "login/"):
		if rc.op != "update" {
			return errStatus(http.StatusMethodNotAllowed, "unsupported operation")
		}
		return s.userpassLogin(rc, strings.ToLower(strings.TrimPrefix(p, "login/")))
	case p == "users":
		if rc.op != "list" {
			return errStatus(http.StatusMethodNotAllowed, "unsupported operation")
		}
		if err := s.authorize(rc, "list", "auth/userpass/users/", false); err != nil {
			return err
		}
		a.mu.RLock()
		keys := []any{}
		for n := range a.userpass {
			keys = append(keys, n)
		}
		a.mu.RUnlock()
		sort.Slice(keys, func(i, j int) bool { return keys[i].(string) < keys[j].(string) })
		writeJSON(rc.w, http.StatusOK, envelope(map[string]any{"keys": keys}, nil, nil))
		return nil
	case strings.HasPrefix(p, "users/"):
		name := strings.ToLower(strings.TrimPrefix(p, "users/"))
		if name == "" || strings.Contains(name, "/") {
			return errStatus(http.StatusNotFound, "unsupported path")
		}
		if err := s.authorizeOp(rc, rc.op, "auth/userpass/"+p, false); err != nil {
			return err
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		u := a.userpass[name]
		switch rc.op {
		case "read":
			if u == nil {
				return errStatus(http.StatusNotFound)
			}
			writeJSON(rc.w, http.StatusOK, envelope(map[string]any{"token_policies": u.Policies,
				"policies": u.Policies, "token_ttl": int(u.TokenTTL / time.Second)}, nil, nil))
			return nil
		case "delete":
			delete(a.userpass, name)
			rc.w.WriteHeader(http.StatusNoContent)
			return nil
		case "update":
			nu := userpassUser{Name: name}
			if u != nil {
				nu = *u
			}
			if pw, ok := rc.data["password"]; ok {
				if asString(pw) == "" {
					return errStatus(http.StatusBadRequest, "missing password")
				}
				nu.Salt = randHex(8)
				nu.Hash = userpassHash(nu.Salt, asString(pw))
			} else if u == nil {
				return errStatus(http.StatusBadRequest, "missing password")
			}
			if pols, ok := tokenPolicies(rc.data); ok {
				nu.Policies = pols
			}
			if v, ok := rc.data["token_ttl"]; ok {
				ttl, err := asDuration(v)
				if err != nil {
					return errStatus(http.StatusBadRequest, err.Error())
				}
				nu.TokenTTL = ttl
			}
			a.userpass[name] = &nu
			rc.w.WriteHeader(http.StatusNoContent)
			return nil
		}
		return errStatus(http.StatusMethodNotAllowed, "unsupported operation")
	}
	return errStatus(http.StatusNotFound, "unsupported path")
}

func (s *Server) userpassLogin(rc *reqCtx, name string) error {
	a := s.auth
	pw := asString(rc.data["password"])
	if pw == "" {
		return errStatus(http.StatusBadRequest, "missing password")
	}
	a.mu.RLock()
	u := a.userpass[name]
	var user userpassUser
	if u != nil {
		user = *u
	}
	a.mu.RUnlock()
	if u == nil {
		return errStatus(http.StatusBadRequest, "invalid username or password")
	}
	h := userpassHash(user.Salt, pw)
	if subtle.ConstantTimeCompare(h[:], user.Hash[:]) != 1 {
		return errStatus(http.StatusBadRequest, "invalid username or password")
	}
	entityID := a.entityForLogin(a.accessorOf("userpass"), name)
	t := a.issue(tokenParams{Policies: user.Policies, TTL: user.TokenTTL, Renewable: true,
		EntityID: entityID, DisplayName: "userpass-" + name, Path: "auth/userpass/login/" + name,
		Meta: map[string]string{"username": name}})
	writeJSON(rc.w, http.StatusOK, s.authEnvelope(t))
	return nil
}

// entityForLogin is the entity of the alias (accessor, name), created with a
// new entity when there is none, as Vault does on a login.
func (a *authState) entityForLogin(accessor, name string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, al := range a.aliases {
		if al.MountAccessor == accessor && al.Name == name && a.entities[al.CanonicalID] != nil {
			return al.CanonicalID
		}
	}
	id := newUUID()
	a.entities[id] = &Entity{ID: id, Name: "entity_" + id[:8], Metadata: map[string]string{}}
	al := &entityAlias{ID: newUUID(), Name: name, CanonicalID: id, MountAccessor: accessor}
	a.aliases[al.ID] = al
	return id
}

// ---- identity/entity-alias --------------------------------------------------------------

func (s *Server) handleEntityAlias(rc *reqCtx, p string) error {
	a := s.auth
	if p == "identity/entity-alias" {
		if rc.op != "update" {
			return errStatus(http.StatusMethodNotAllowed, "unsupported operation")
		}
		if err := s.authorizeOp(rc, "update", p, false); err != nil {
			return err
		}
		name, canonical, accessor := asString(rc.data["name"]), asString(rc.data["canonical_id"]),
			asString(rc.data["mount_accessor"])
		custom, err := asKVPairs(rc.data["custom_metadata"])
		if err != nil {
			return errStatus(http.StatusBadRequest, "invalid custom_metadata: "+err.Error())
		}
		if name == "" {
			return errStatus(http.StatusBadRequest, "missing alias name")
		}
		if accessor == "" {
			return errStatus(http.StatusBadRequest, "missing mount_accessor")
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		found := false
		for _, m := range a.mounts {
			found = found || m.Accessor == accessor
		}
		if !found {
			return errStatus(http.StatusBadRequest, "invalid mount accessor \""+accessor+"\"")
		}
		if canonical == "" || a.entities[canonical] == nil {
			return errStatus(http.StatusBadRequest, "invalid canonical ID")
		}
		for _, al := range a.aliases {
			if al.MountAccessor == accessor && al.Name == name {
				if al.CanonicalID != canonical {
					return errStatus(http.StatusBadRequest, "alias \""+name+"\" of that mount is tied to another entity")
				}
				// Vault updates an existing alias found by (name, mount); there an
				// absent custom_metadata is an empty one, and no change is a 204.
				if custom == nil {
					custom = map[string]string{}
				}
				return aliasUpdated(rc, al, custom)
			}
		}
		// Vault: an entity has at most one alias per auth mount, so each
		// person (each login) needs an entity of their own.
		for _, al := range a.aliases {
			if al.MountAccessor == accessor && al.CanonicalID == canonical {
				return errStatus(http.StatusBadRequest, "Alias already exists for requested entity and mount accessor")
			}
		}
		al := &entityAlias{ID: newUUID(), Name: name, CanonicalID: canonical, MountAccessor: accessor,
			CustomMetadata: custom}
		a.aliases[al.ID] = al
		writeJSON(rc.w, http.StatusOK, envelope(map[string]any{"id": al.ID, "canonical_id": canonical}, nil, nil))
		return nil
	}
	id := strings.TrimPrefix(p, "identity/entity-alias/id/")
	if err := s.authorize(rc, rc.op, p, false); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	al := a.aliases[id]
	switch rc.op {
	case "read":
		if al == nil {
			return errStatus(http.StatusNotFound)
		}
		custom := al.CustomMetadata
		if custom == nil {
			custom = map[string]string{}
		}
		writeJSON(rc.w, http.StatusOK, envelope(map[string]any{"id": al.ID, "name": al.Name,
			"canonical_id": al.CanonicalID, "mount_accessor": al.MountAccessor,
			"metadata": map[string]string{}, "custom_metadata": custom}, nil, nil))
		return nil
	case "update":
		// Vault: an update by id; only custom_metadata is modelled here.
		if al == nil {
			return errStatus(http.StatusBadRequest, "invalid alias ID provided")
		}
		custom, err := asKVPairs(rc.data["custom_metadata"])
		if err != nil {
			return errStatus(http.StatusBadRequest, "invalid custom_metadata: "+err.Error())
		}
		if custom == nil { // by id, an absent custom_metadata is kept
			custom = al.CustomMetadata
		}
		return aliasUpdated(rc, al, custom)
	case "delete":
		delete(a.aliases, id)
		rc.w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return errStatus(http.StatusMethodNotAllowed, "unsupported operation")
}

// aliasUpdated sets an alias's custom_metadata and answers as Vault's
// handleAliasUpdate does: 204 when nothing changed, else {id, canonical_id}.
func aliasUpdated(rc *reqCtx, al *entityAlias, custom map[string]string) error {
	same := len(custom) == len(al.CustomMetadata)
	for k, v := range custom {
		if w, ok := al.CustomMetadata[k]; !ok || w != v {
			same = false
		}
	}
	if same {
		rc.w.WriteHeader(http.StatusNoContent)
		return nil
	}
	al.CustomMetadata = custom
	writeJSON(rc.w, http.StatusOK, envelope(map[string]any{"id": al.ID, "canonical_id": al.CanonicalID}, nil, nil))
	return nil
}
