// SPDX-License-Identifier: MPL-2.0

package vaultsim

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// FileConfig is the -config file: everything a script needs to start a
// fully set-up stand-in with one command. Relative paths are relative to
// the config file's directory.
type FileConfig struct {
	Plugin        string            `json:"plugin"`
	Mount         string            `json:"mount"`
	Namespace     string            `json:"namespace"`
	Listen        string            `json:"listen"`
	Storage       string            `json:"storage"`
	RootToken     string            `json:"root_token"`
	Log           string            `json:"log"`
	ReadyFile     string            `json:"ready_file"`
	PluginVersion string            `json:"plugin_version"`
	MountOptions  map[string]string `json:"mount_options"`
	// Policies: name -> HCL text.
	Policies map[string]string `json:"policies"`
	// PolicyFiles: name -> file; PolicyGlobs: files named <name>.hcl.
	PolicyFiles map[string]string `json:"policy_files"`
	PolicyGlobs []string          `json:"policy_globs"`
	Entities    []ConfigEntity    `json:"entities"`
	Tokens      []ConfigToken     `json:"tokens"`
	AppRoles    []ConfigAppRole   `json:"approle_roles"`
	Kubernetes  *ConfigKubernetes `json:"kubernetes"`
	dir         string
}

// ConfigEntity pre-creates an identity entity.
type ConfigEntity struct {
	ID       string            `json:"id"`
	Name     string            `json:"name"`
	Metadata map[string]string `json:"metadata"`
	Policies []string          `json:"policies"`
}

// ConfigToken pre-creates a token with a fixed value.
type ConfigToken struct {
	ID              string            `json:"id"`
	Policies        []string          `json:"policies"`
	EntityID        string            `json:"entity_id"`
	Meta            map[string]string `json:"meta"`
	TTL             string            `json:"ttl"`
	Period          string            `json:"period"`
	Renewable       *bool             `json:"renewable"`
	NoDefaultPolicy bool              `json:"no_default_policy"`
}

// ConfigAppRole pre-creates an AppRole role with fixed role and secret ids.
type ConfigAppRole struct {
	Name          string   `json:"name"`
	RoleID        string   `json:"role_id"`
	SecretID      string   `json:"secret_id"`
	TokenPolicies []string `json:"token_policies"`
	TokenTTL      string   `json:"token_ttl"`
	TokenMaxTTL   string   `json:"token_max_ttl"`
}

// ConfigKubernetes configures the kubernetes auth method.
type ConfigKubernetes struct {
	PEMKeys     []string        `json:"pem_keys"`
	PEMKeyFiles []string        `json:"pem_key_files"`
	Roles       []ConfigK8sRole `json:"roles"`
}

// ConfigK8sRole is a kubernetes auth role.
type ConfigK8sRole struct {
	Name                          string   `json:"name"`
	BoundServiceAccountNames      []string `json:"bound_service_account_names"`
	BoundServiceAccountNamespaces []string `json:"bound_service_account_namespaces"`
	TokenPolicies                 []string `json:"token_policies"`
	TokenTTL                      string   `json:"token_ttl"`
}

// LoadConfig reads a -config file.
func LoadConfig(path string) (*FileConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c FileConfig
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.dir = filepath.Dir(path)
	return &c, nil
}

// Resolve makes p absolute relative to the config file.
func (c *FileConfig) Resolve(p string) string {
	if p == "" || filepath.IsAbs(p) || strings.HasPrefix(p, "unix:") || c.dir == "" {
		return p
	}
	return filepath.Join(c.dir, p)
}

func durOrZero(field, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := asDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", field, err)
	}
	return d, nil
}

// apply creates the configured objects.
func (a *authState) apply(c *FileConfig) error {
	names := make([]string, 0, len(c.Policies))
	for n := range c.Policies {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := a.putPolicy(n, c.Policies[n]); err != nil {
			return fmt.Errorf("policy %s: %v", n, err)
		}
	}
	for n, f := range c.PolicyFiles {
		b, err := os.ReadFile(c.Resolve(f))
		if err != nil {
			return err
		}
		if err := a.putPolicy(n, string(b)); err != nil {
			return fmt.Errorf("policy %s (%s): %v", n, f, err)
		}
	}
	for _, g := range c.PolicyGlobs {
		files, err := filepath.Glob(c.Resolve(g))
		if err != nil {
			return err
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			n := strings.TrimSuffix(filepath.Base(f), filepath.Ext(f))
			if err := a.putPolicy(n, string(b)); err != nil {
				return fmt.Errorf("policy %s (%s): %v", n, f, err)
			}
		}
	}
	for _, e := range c.Entities {
		a.createEntity(e.ID, e.Name, e.Metadata, e.Policies)
	}
	for i, t := range c.Tokens {
		if t.ID == "" {
			return fmt.Errorf("tokens[%d]: id is required", i)
		}
		ttl, err := durOrZero("ttl", t.TTL)
		if err != nil {
			return err
		}
		period, err := durOrZero("period", t.Period)
		if err != nil {
			return err
		}
		if t.EntityID != "" {
			if _, ok := a.entities[t.EntityID]; !ok {
				return fmt.Errorf("tokens[%d]: entity %q not defined", i, t.EntityID)
			}
		}
		ren := true
		if t.Renewable != nil {
			ren = *t.Renewable
		}
		a.issue(tokenParams{ID: t.ID, Policies: t.Policies, EntityID: t.EntityID, Meta: t.Meta, TTL: ttl,
			Period: period, Renewable: ren, NoDefaultPolicy: t.NoDefaultPolicy, DisplayName: "token",
			Path: "auth/token/create"})
	}
	for i, r := range c.AppRoles {
		if r.Name == "" || r.RoleID == "" {
			return fmt.Errorf("approle_roles[%d]: name and role_id are required", i)
		}
		ttl, err := durOrZero("token_ttl", r.TokenTTL)
		if err != nil {
			return err
		}
		maxTTL, err := durOrZero("token_max_ttl", r.TokenMaxTTL)
		if err != nil {
			return err
		}
		role := &approleRole{Name: r.Name, RoleID: r.RoleID, Policies: r.TokenPolicies, TokenTTL: ttl,
			TokenMaxTTL: maxTTL, secretIDs: map[string]time.Time{}, BindSecretID: true}
		if r.SecretID != "" {
			role.secretIDs[r.SecretID] = time.Time{}
		}
		a.approle[strings.ToLower(r.Name)] = role
		a.mountConfigured("approle")
	}
	if k := c.Kubernetes; k != nil {
		a.mountConfigured("kubernetes")
		pems := append([]string(nil), k.PEMKeys...)
		for _, f := range k.PEMKeyFiles {
			b, err := os.ReadFile(c.Resolve(f))
			if err != nil {
				return err
			}
			pems = append(pems, string(b))
		}
		keys, err := parsePublicKeys(pems)
		if err != nil {
			return err
		}
		a.k8sKeys, a.k8sPEM = keys, pems
		for _, r := range k.Roles {
			ttl, err := durOrZero("token_ttl", r.TokenTTL)
			if err != nil {
				return err
			}
			a.k8sRoles[strings.ToLower(r.Name)] = &k8sRole{Name: r.Name, SANames: r.BoundServiceAccountNames,
				Namespaces: r.BoundServiceAccountNamespaces, Policies: r.TokenPolicies, TokenTTL: ttl}
		}
	}
	return nil
}
