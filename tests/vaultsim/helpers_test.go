// SPDX-License-Identifier: MPL-2.0

package vaultsim

// Shared test helpers for every *_test.go in this package (transport,
// HTTP API, ACL, and the isolation/keys tests). The plugin under test comes
// from BYOK_PLUGIN (absolute path); BYOK_ROOT is the repository root.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Sim is a running stand-in (plugin + HTTP API) owned by one test.
type Sim struct {
	*Server
	RootToken string
	t         *testing.T
}

// pluginPath returns BYOK_PLUGIN or skips the test.
func pluginPath(t *testing.T) string {
	t.Helper()
	p := os.Getenv("BYOK_PLUGIN")
	if p == "" {
		t.Skip("BYOK_PLUGIN is not set: set it to the absolute path of the plugin binary (tests/run-all.sh does)")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("BYOK_PLUGIN=%s: %v", p, err)
	}
	return p
}

// repoRoot returns BYOK_ROOT (or the repository root guessed from the
// test's working directory).
func repoRoot(t *testing.T) string {
	if r := os.Getenv("BYOK_ROOT"); r != "" {
		return r
	}
	// The package is reached through build/go/src/byok/vaultsim, a symlink
	// to tests/vaultsim: resolve it before going up.
	wd, _ := os.Getwd()
	if real, err := filepath.EvalSymlinks(wd); err == nil {
		wd = real
	}
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}

// newSim starts the plugin under the stand-in with an HTTP listener on a
// temporary unix socket; everything is stopped with t.Cleanup. Options
// given later override the defaults (e.g. WithStorageFile, WithListen).
func newSim(t *testing.T, opts ...Option) *Sim {
	t.Helper()
	plugin := pluginPath(t)
	dir := t.TempDir()
	all := append([]Option{WithPlugin(plugin), WithListen("unix:" + filepath.Join(dir, "vault.sock"))}, opts...)
	srv, err := New(all...)
	if err != nil {
		t.Fatalf("starting vaultsim: %v", err)
	}
	sim := &Sim{Server: srv, RootToken: srv.RootToken(), t: t}
	t.Cleanup(func() {
		srv.Close()
		checkPluginLog(t, srv.PluginLog())
		if t.Failed() {
			t.Logf("plugin log:\n%s", tail(srv.PluginLog(), 8000))
		}
	})
	return sim
}

// sanitizerMarkers are what ASan, LSan and UBSan print; the ASan build of
// the plugin runs these same tests, and a report at exit (leaks) would
// otherwise go unnoticed.
var sanitizerMarkers = []string{"ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
	"runtime error:", "UndefinedBehaviorSanitizer", "SUMMARY: AddressSanitizer"}

// checkPluginLog fails the test when the plugin's stderr (complete once the
// plugin was killed) holds a sanitizer report.
func checkPluginLog(t *testing.T, log string) {
	t.Helper()
	for _, m := range sanitizerMarkers {
		if i := strings.Index(log, m); i >= 0 {
			end := i + 3000
			if end > len(log) {
				end = len(log)
			}
			t.Errorf("sanitizer report in the plugin's stderr:\n%s", log[i:end])
			return
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// Call sends method to /v1/<path> with token and a JSON body (nil: none;
// string/[]byte: raw) and returns the status and decoded JSON (nil for an
// empty body). Transport errors fail the test.
func (s *Sim) Call(t *testing.T, token, method, path string, body any) (int, map[string]any) {
	t.Helper()
	code, m, err := s.Server.Call(token, method, path, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return code, m
}

// MustCall is Call that fails the test unless the status is want.
func (s *Sim) MustCall(t *testing.T, want int, token, method, path string, body any) map[string]any {
	t.Helper()
	code, m := s.Call(t, token, method, path, body)
	if code != want {
		t.Fatalf("%s %s: status %d, want %d; body %v", method, path, code, want, redacted(m))
	}
	return m
}

// redacted is resp for a failure message: a creds answer that should not have
// been given (an isolation failure) must not put the key in the test output.
func redacted(resp map[string]any) map[string]any {
	d, ok := resp["data"].(map[string]any)
	if !ok {
		return resp
	}
	if _, has := d["api_key"]; !has {
		return resp
	}
	out := map[string]any{}
	for k, v := range resp {
		out[k] = v
	}
	dd := map[string]any{}
	for k, v := range d {
		dd[k] = v
	}
	dd["api_key"] = "<redacted>"
	out["data"] = dd
	return out
}

// RawStorage returns a copy of every storage entry the plugin wrote.
func (s *Sim) RawStorage() map[string][]byte { return s.Storage.Snapshot() }

// PluginLog returns the plugin's stderr so far.
func (s *Sim) PluginLog() string { return s.Server.PluginLog() }

// ReloadPlugin restarts the plugin process as sys/plugins/reload/backend does.
func (s *Sim) ReloadPlugin(t *testing.T) {
	t.Helper()
	if err := s.Server.ReloadPlugin(); err != nil {
		t.Fatalf("reloading plugin: %v", err)
	}
}

// PutPolicy stores an ACL policy through the HTTP API as root.
func (s *Sim) PutPolicy(t *testing.T, name, hcl string) {
	t.Helper()
	s.MustCall(t, 204, s.RootToken, "PUT", "sys/policies/acl/"+name, map[string]any{"policy": hcl})
}

// EnableAuth enables the auth method typ at typ/ (sys/auth), as root.
func (s *Sim) EnableAuth(t *testing.T, typ string) {
	t.Helper()
	s.MustCall(t, 204, s.RootToken, "POST", "sys/auth/"+typ, map[string]any{"type": typ})
}

// PutPolicyFile stores policies/<file> from the repository under name.
func (s *Sim) PutPolicyFile(t *testing.T, name, file string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), file))
	if err != nil {
		t.Fatalf("reading policy: %v", err)
	}
	s.PutPolicy(t, name, string(b))
}

// CreateToken creates a token with policies through the HTTP API as root.
// With entityMetadata non-nil, an identity entity with that metadata is
// created first and the token bound to it (entity_id is a stand-in
// extension of auth/token/create), so templated policies resolve.
func (s *Sim) CreateToken(t *testing.T, policies []string, entityMetadata map[string]string) string {
	t.Helper()
	body := map[string]any{"policies": policies, "ttl": "1h"}
	if entityMetadata != nil {
		e := s.MustCall(t, 200, s.RootToken, "POST", "identity/entity", map[string]any{"metadata": entityMetadata})
		data, _ := e["data"].(map[string]any)
		id, _ := data["id"].(string)
		if id == "" {
			t.Fatalf("identity/entity: no id in %v", e)
		}
		body["entity_id"] = id
	}
	m := s.MustCall(t, 200, s.RootToken, "POST", "auth/token/create", body)
	auth, _ := m["auth"].(map[string]any)
	tok, _ := auth["client_token"].(string)
	if tok == "" {
		t.Fatalf("auth/token/create: no client_token in %v", m)
	}
	return tok
}

// Data returns resp["data"] as a map (nil when absent).
func Data(resp map[string]any) map[string]any {
	d, _ := resp["data"].(map[string]any)
	return d
}

// Errors returns resp["errors"] joined (for messages and assertions).
func Errors(resp map[string]any) string {
	l, _ := resp["errors"].([]any)
	var out []string
	for _, e := range l {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return strings.Join(out, "; ")
}
