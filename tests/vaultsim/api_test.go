// SPDX-License-Identifier: MPL-2.0

package vaultsim

// The plugin's config and providers paths through Vault's HTTP API:
// CRUD, validation, persistence across plugin and stand-in restarts,
// help/OpenAPI, and concurrency.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/plugin/pb"
)

func keysOf(t *testing.T, resp map[string]any) []string {
	t.Helper()
	raw, _ := Data(resp)["keys"].([]any)
	out := make([]string, 0, len(raw))
	for _, k := range raw {
		s, ok := k.(string)
		if !ok {
			t.Fatalf("non-string key %v", k)
		}
		out = append(out, s)
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestHealth(t *testing.T) {
	s := newSim(t)
	m := s.MustCall(t, 200, "", "GET", "sys/health", nil)
	if m["initialized"] != true || m["sealed"] != false || m["standby"] != false {
		t.Errorf("sys/health = %v", m)
	}
}

func TestConfigReadUpdate(t *testing.T) {
	s := newSim(t)
	m := s.MustCall(t, 200, s.RootToken, "GET", "byok/config", nil)
	d := Data(m)
	for _, f := range []string{"creds_ttl", "max_key_versions", "default_budget_tier", "default_routing_strategy", "allowed_providers", "local_hosts", "budget_lease_ttl", "kek_version", "kek_versions", "rotation_incomplete"} {
		if _, ok := d[f]; !ok {
			t.Errorf("config read lacks %q: %v", f, d)
		}
	}
	if d["max_key_versions"] != float64(10) || d["default_budget_tier"] != "MEDIUM" || d["default_routing_strategy"] != "ordered" {
		t.Errorf("defaults: max_key_versions=%v default_budget_tier=%v default_routing_strategy=%v", d["max_key_versions"], d["default_budget_tier"], d["default_routing_strategy"])
	}
	code, _ := s.Call(t, s.RootToken, "PUT", "byok/config", map[string]any{"max_key_versions": 7, "default_budget_tier": "HIGH", "default_routing_strategy": "Fastest"})
	if code != 200 && code != 204 {
		t.Fatalf("config update: status %d", code)
	}
	d = Data(s.MustCall(t, 200, s.RootToken, "GET", "byok/config", nil))
	if d["max_key_versions"] != float64(7) || d["default_budget_tier"] != "HIGH" || d["default_routing_strategy"] != "fastest" {
		t.Errorf("after update: %v", d)
	}
	// A tenant that set no routing_strategy reads the mount's default.
	if st := Data(s.MustCall(t, 200, s.RootToken, "GET", "byok/tenants/nobody/settings", nil)); st["routing_strategy"] != "fastest" {
		t.Errorf("tenant without routing_strategy: %v, want the mount's default fastest", st["routing_strategy"])
	}
	for field, bad := range map[string]any{"max_key_versions": 101, "default_budget_tier": "PLATINUM", "creds_ttl": "48h", "default_routing_strategy": "round-robin"} {
		code, m := s.Call(t, s.RootToken, "PUT", "byok/config", map[string]any{field: bad})
		if code != 400 || !strings.Contains(Errors(m), field) {
			t.Errorf("config %s=%v: status %d errors %q, want 400 naming the field", field, bad, code, Errors(m))
		}
	}
	// A failed update changes nothing.
	d = Data(s.MustCall(t, 200, s.RootToken, "GET", "byok/config", nil))
	if d["max_key_versions"] != float64(7) || d["default_routing_strategy"] != "fastest" {
		t.Errorf("a rejected update changed config: %v", d)
	}
	// Query parameters become request data: an unknown one is ignored with
	// the framework's warning.
	m = s.MustCall(t, 200, s.RootToken, "GET", "byok/config?colour=red", nil)
	if w, _ := m["warnings"].([]any); len(w) == 0 || !strings.Contains(fmt.Sprint(w), "colour") {
		t.Errorf("unknown query parameter: warnings %v", m["warnings"])
	}
	if code, _ := s.Call(t, s.RootToken, "GET", "byok/providers?list=maybe", nil); code != 400 {
		t.Errorf("?list=maybe: status %d, want 400 (as Vault)", code)
	}
	// Unknown path and unsupported operation.
	if code, _ := s.Call(t, s.RootToken, "GET", "byok/no/such/path", nil); code != 404 {
		t.Errorf("unknown path: status %d, want 404", code)
	}
	if code, _ := s.Call(t, s.RootToken, "DELETE", "byok/config", nil); code != 405 {
		t.Errorf("delete on config: status %d, want 405", code)
	}
}

func newProvider(name string) map[string]any {
	return map[string]any{
		"display_name": "Custom " + name, "api_style": "openai",
		"base_url": "https://" + name + ".example.com/v1", "regions": []string{"eu"},
		"models": []map[string]any{{"name": "m1", "context_window": 8192, "max_output_tokens": 1024,
			"capabilities": []string{"chat"}, "tier": "LOW", "input_per_1m": 0.1, "output_per_1m": 0.2}},
	}
}

func TestProvidersCatalog(t *testing.T) {
	s := newSim(t)
	list := s.MustCall(t, 200, s.RootToken, "LIST", "byok/providers", nil)
	keys := keysOf(t, list)
	for _, p := range []string{"openai", "anthropic"} {
		if !contains(keys, p) {
			t.Errorf("built-in %q not listed: %v", p, keys)
		}
	}
	if !sort.StringsAreSorted(keys) {
		t.Errorf("keys not sorted: %v", keys)
	}
	info, _ := Data(list)["key_info"].(map[string]any)
	if oi, _ := info["openai"].(map[string]any); oi == nil || oi["builtin"] != true {
		t.Errorf("key_info.openai = %v", info["openai"])
	}
	// GET ?list=true is the same operation.
	if k2 := keysOf(t, s.MustCall(t, 200, s.RootToken, "GET", "byok/providers?list=true", nil)); !reflect.DeepEqual(k2, keys) {
		t.Errorf("GET ?list=true keys %v != LIST keys %v", k2, keys)
	}

	orig := Data(s.MustCall(t, 200, s.RootToken, "GET", "byok/providers/openai", nil))
	if orig["builtin"] != true || orig["overridden"] != false || orig["name"] != "openai" {
		t.Fatalf("built-in openai: %v", orig)
	}
	// Override the built-in entry.
	over := newProvider("openai")
	over["display_name"] = "OpenAI via proxy"
	code, m := s.Call(t, s.RootToken, "PUT", "byok/providers/openai", over)
	if code != 200 && code != 204 {
		t.Fatalf("override: %d %v", code, m)
	}
	got := Data(s.MustCall(t, 200, s.RootToken, "GET", "byok/providers/openai", nil))
	if got["overridden"] != true || got["base_url"] != "https://openai.example.com/v1" || got["display_name"] != "OpenAI via proxy" {
		t.Errorf("after override: %v", got)
	}
	// Delete restores the built-in entry.
	if code, _ := s.Call(t, s.RootToken, "DELETE", "byok/providers/openai", nil); code != 204 && code != 200 {
		t.Fatalf("delete override: %d", code)
	}
	got = Data(s.MustCall(t, 200, s.RootToken, "GET", "byok/providers/openai", nil))
	if got["overridden"] != false || got["base_url"] != orig["base_url"] {
		t.Errorf("after deleting the override: %v (built-in base_url %v)", got, orig["base_url"])
	}
	// A built-in entry without override cannot be deleted.
	if code, m := s.Call(t, s.RootToken, "DELETE", "byok/providers/openai", nil); code != 400 {
		t.Errorf("delete built-in: %d %v, want 400", code, m)
	}

	// A new provider.
	code, m = s.Call(t, s.RootToken, "PUT", "byok/providers/custom1", newProvider("custom1"))
	if code != 200 && code != 204 {
		t.Fatalf("create custom1: %d %v", code, m)
	}
	if !contains(keysOf(t, s.MustCall(t, 200, s.RootToken, "LIST", "byok/providers", nil)), "custom1") {
		t.Errorf("custom1 not listed")
	}
	got = Data(s.MustCall(t, 200, s.RootToken, "GET", "byok/providers/custom1", nil))
	if got["builtin"] != false || got["display_name"] != "Custom custom1" {
		t.Errorf("custom1: %v", got)
	}
	s.MustCall(t, 204, s.RootToken, "DELETE", "byok/providers/custom1", nil)
	if code, _ := s.Call(t, s.RootToken, "GET", "byok/providers/custom1", nil); code != 404 {
		t.Errorf("deleted custom1: status %d, want 404", code)
	}

	// Validation: bad base_url and bad names are 400s naming the field.
	for _, u := range []string{"http://evil.example.com/v1", "ftp://x.example.com", "https://", "not a url"} {
		p := newProvider("bad")
		p["base_url"] = u
		code, m := s.Call(t, s.RootToken, "PUT", "byok/providers/bad", p)
		if code != 400 || !strings.Contains(Errors(m), "base_url") {
			t.Errorf("base_url %q: %d %q, want 400 naming base_url", u, code, Errors(m))
		}
	}
	if code, _ := s.Call(t, s.RootToken, "GET", "byok/providers/bad", nil); code != 404 {
		t.Errorf("rejected provider was stored (status %d)", code)
	}
	code, m = s.Call(t, s.RootToken, "PUT", "byok/providers/Bad.Name", newProvider("x"))
	if code != 400 && code != 404 {
		t.Errorf("invalid provider name: %d %v, want 400 (or 404 when the path pattern rejects it)", code, m)
	}
}

// state written through the API that must survive restarts.
func writeState(t *testing.T, s *Sim) {
	t.Helper()
	code, m := s.Call(t, s.RootToken, "PUT", "byok/config", map[string]any{"max_key_versions": 3})
	if code != 200 && code != 204 {
		t.Fatalf("config write: %d %v", code, m)
	}
	code, m = s.Call(t, s.RootToken, "PUT", "byok/providers/persist1", newProvider("persist1"))
	if code != 200 && code != 204 {
		t.Fatalf("provider write: %d %v", code, m)
	}
}

func checkState(t *testing.T, s *Sim, when string) {
	t.Helper()
	if d := Data(s.MustCall(t, 200, s.RootToken, "GET", "byok/config", nil)); d["max_key_versions"] != float64(3) {
		t.Errorf("%s: config max_key_versions = %v, want 3", when, d["max_key_versions"])
	}
	if d := Data(s.MustCall(t, 200, s.RootToken, "GET", "byok/providers/persist1", nil)); d["base_url"] != "https://persist1.example.com/v1" {
		t.Errorf("%s: provider = %v", when, d)
	}
}

func TestPersistenceAcrossPluginReload(t *testing.T) {
	s := newSim(t)
	writeState(t, s)
	pid := s.Plugin().Pid
	s.ReloadPlugin(t)
	if s.Plugin().Pid == pid {
		t.Fatalf("reload did not start a new process")
	}
	checkState(t, s, "after ReloadPlugin")
	// The HTTP endpoint does the same.
	s.MustCall(t, 204, s.RootToken, "PUT", "sys/plugins/reload/backend", map[string]any{"mounts": []string{"byok"}})
	checkState(t, s, "after sys/plugins/reload/backend")
	if code, _ := s.Call(t, s.RootToken, "PUT", "sys/plugins/reload/backend", map[string]any{"plugin": "nope"}); code != 400 {
		t.Errorf("reload of an unknown plugin: status %d, want 400", code)
	}
}

func TestPersistenceAcrossStandInRestart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "storage.json")
	s1 := newSim(t, WithStorageFile(file))
	writeState(t, s1)
	before := s1.RawStorage()
	s1.Close()
	s2 := newSim(t, WithStorageFile(file))
	if !reflect.DeepEqual(s2.RawStorage(), before) {
		t.Errorf("storage file did not round-trip: %d entries before, %d after", len(before), len(s2.RawStorage()))
	}
	checkState(t, s2, "after stand-in restart")
}

func TestHelpAndOpenAPI(t *testing.T) {
	s := newSim(t)
	m := s.MustCall(t, 200, s.RootToken, "GET", "byok/config?help=1", nil)
	if h, _ := m["help"].(string); h == "" {
		t.Errorf("config help: no help text: %v", m)
	}
	root := s.MustCall(t, 200, s.RootToken, "GET", "byok/?help=1", nil)
	if h, _ := root["help"].(string); !strings.Contains(h, "config") {
		t.Errorf("root help does not list config: %q", h)
	}
	oas, _ := root["openapi"].(map[string]any)
	paths, _ := oas["paths"].(map[string]any)
	if _, ok := paths["/config"]; !ok {
		t.Errorf("root help openapi paths lack /config: %v", keysOfMap(paths))
	}
	spec := s.MustCall(t, 200, s.RootToken, "GET", "sys/internal/specs/openapi", nil)
	sp, _ := spec["paths"].(map[string]any)
	for _, want := range []string{"/byok/config", "/byok/providers/{name}"} {
		if _, ok := sp[want]; !ok {
			t.Errorf("OpenAPI document lacks %s: %v", want, keysOfMap(sp))
		}
	}
	// help on an unknown path is a 404, as any operation there.
	if code, _ := s.Call(t, s.RootToken, "GET", "byok/no/such?help=1", nil); code != 404 {
		t.Errorf("help on unknown path: status %d, want 404", code)
	}
}

func keysOfMap(m map[string]any) []string {
	var k []string
	for x := range m {
		k = append(k, x)
	}
	sort.Strings(k)
	return k
}

func TestConcurrentRequests(t *testing.T) {
	s := newSim(t)
	const n = 64
	var wg sync.WaitGroup
	errs := make(chan string, n*8)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			name := fmt.Sprintf("conc%02d", i)
			check := func(step string, code int, m map[string]any, err error, ok ...int) bool {
				if err != nil {
					errs <- fmt.Sprintf("%s %s: %v", name, step, err)
					return false
				}
				for _, c := range ok {
					if c == code {
						return true
					}
				}
				errs <- fmt.Sprintf("%s %s: status %d %v", name, step, code, m)
				return false
			}
			p := newProvider(name)
			code, m, err := s.Server.Call(s.RootToken, "PUT", "byok/providers/"+name, p)
			if !check("create", code, m, err, 200, 204) {
				return
			}
			for r := 0; r < 3; r++ {
				code, m, err = s.Server.Call(s.RootToken, "GET", "byok/providers/"+name, nil)
				if !check("read", code, m, err, 200) {
					return
				}
				if Data(m)["display_name"] != p["display_name"] {
					errs <- fmt.Sprintf("%s: read back %v", name, Data(m)["display_name"])
				}
				p["display_name"] = fmt.Sprintf("round %d", r)
				code, m, err = s.Server.Call(s.RootToken, "PUT", "byok/providers/"+name, p)
				if !check("update", code, m, err, 200, 204) {
					return
				}
			}
			code, m, err = s.Server.Call(s.RootToken, "GET", "byok/config", nil)
			check("config read", code, m, err, 200)
		}(i)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	keys := keysOf(t, s.MustCall(t, 200, s.RootToken, "LIST", "byok/providers", nil))
	for i := 0; i < n; i++ {
		if !contains(keys, fmt.Sprintf("conc%02d", i)) {
			t.Errorf("conc%02d missing from the list", i)
		}
	}
}

// Vault sends {operation: rollback, path: ""} to every mount each minute;
// the plugin must answer with no error or unsupported operation (anything
// else is logged by Vault every minute), and keep working.
func TestRollbackTolerated(t *testing.T) {
	s := newSim(t)
	for i := 0; i < 3; i++ {
		if err := s.Rollback(); err != nil {
			t.Fatalf("rollback %d: %v", i, err)
		}
	}
	s.MustCall(t, 200, s.RootToken, "GET", "byok/config", nil)
	t.Logf("GRPCStdio/StreamStdio: %s", s.Plugin().StdioResult())
}

// A plugin killed underneath the stand-in makes requests fail (500, never a
// hang); a reload brings the mount back with its stored state.
func TestPluginKilledThenReloaded(t *testing.T) {
	s := newSim(t)
	writeState(t, s)
	p := s.Plugin()
	proc, err := os.FindProcess(p.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 500 && !p.Exited(); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	_ = os.Remove(p.Addr.String()) // a SIGKILLed plugin cannot remove its socket
	if code, m := s.Call(t, s.RootToken, "GET", "byok/config", nil); code != 500 {
		t.Errorf("request to a dead plugin: %d %v, want 500", code, m)
	}
	s.MustCall(t, 204, s.RootToken, "PUT", "sys/plugins/reload/backend", map[string]any{"plugin": s.Plugin().cfg.Name})
	checkState(t, s, "after crash and reload")
}

// InvalidateKey("config") after storage changed underneath (what Vault does
// on replicated writes) makes the plugin read the new value.
func TestInvalidateKeyDropsCachedConfig(t *testing.T) {
	s := newSim(t)
	code, m := s.Call(t, s.RootToken, "PUT", "byok/config", map[string]any{"max_key_versions": 7})
	if code != 200 && code != 204 {
		t.Fatalf("config write: %d %v", code, m)
	}
	s.MustCall(t, 200, s.RootToken, "GET", "byok/config", nil) // warm any cache
	raw, ok, _ := s.Storage.Get("config")
	var stored map[string]any
	if !ok || json.Unmarshal(raw, &stored) != nil || stored["max_key_versions"] == nil {
		t.Fatalf("config is not stored as a JSON object under \"config\" with max_key_versions: %q", raw)
	}
	stored["max_key_versions"] = 9
	b, _ := json.Marshal(stored)
	if err := s.Storage.Put("config", b, false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.Plugin().Backend.InvalidateKey(ctx, &pb.InvalidateKeyArgs{Key: "config"}); err != nil {
		t.Fatalf("InvalidateKey: %v", err)
	}
	if d := Data(s.MustCall(t, 200, s.RootToken, "GET", "byok/config", nil)); d["max_key_versions"] != float64(9) {
		t.Errorf("after InvalidateKey(config): max_key_versions %v, want the replicated 9", d["max_key_versions"])
	}
}

// A request that ends in a 500 leaves one log line naming the path pattern,
// the operation and the error (never data); rotate-root also names the
// tenant it could not rewrap. Other tenants keep working.
func TestInternalErrorsLogged(t *testing.T) {
	s := newIsoSim(t)
	s.expect(t, 200, "admin", s.admin, "PUT", "byok/tenants/acme/keys/openai/production", map[string]any{"key_value": s.canaries[0]})
	s.expect(t, 200, "admin", s.admin, "PUT", "byok/tenants/globex/keys/openai/production", map[string]any{"key_value": s.canaries[1]})
	if err := s.Storage.Put("tenants/acme/dek", []byte(`{"kek_version":1,"wrapped":"AAAA"}`), false); err != nil {
		t.Fatal(err)
	}
	s.expect(t, 500, "admin", s.admin, "PUT", "byok/config/rotate-root", nil)
	s.ReloadPlugin(t) // drops the cached data key: creds must unwrap the bad one
	s.expect(t, 500, "agent", s.agent, "GET", "byok/tenants/acme/creds/openai", nil)
	s.expect(t, 200, "agent", s.agent, "GET", "byok/tenants/globex/creds/openai", nil)
	var rotate, rewrap, creds bool
	for _, l := range strings.Split(s.PluginLog(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) != nil || m["@level"] != "error" {
			continue
		}
		switch m["@message"] {
		case "request failed":
			if m["path"] == "config/rotate-root" && m["operation"] == "update" && m["error"] != "" {
				rotate = true
			}
			if m["path"] == "tenants/{tenant}/creds/{provider}" && m["operation"] == "read" {
				creds = true
			}
		case "rotate-root: cannot rewrap the tenant's data key":
			rewrap = m["tenant"] == "acme" && m["error"] != ""
		}
	}
	if !rotate || !rewrap || !creds {
		t.Errorf("log lines: rotate-root %v, rewrap of acme %v, creds %v; log:\n%s", rotate, rewrap, creds, s.PluginLog())
	}
	noCanaries(t, "plugin log", []byte(s.PluginLog()), s.canaries)
}

// On a standby (OpenBao HA reads, Vault performance standbys) storage refuses
// writes with logical.ErrReadOnly, and Vault forwards the request to the
// active node only if the plugin's error says exactly that. The plugin must
// pass the text on (not "internal error"), and reads keep working.
func TestReadOnlyStorageErrorPassedOn(t *testing.T) {
	s := newSim(t)
	s.MustCall(t, 200, s.RootToken, "GET", "byok/config", nil)
	s.Storage.SetReadOnly(true)
	for _, w := range []struct {
		path string
		body map[string]any
	}{
		{"byok/config", map[string]any{"max_key_versions": 7}},
		{"byok/tenants/acme/keys/openai/production", map[string]any{"key_value": "sk-" + strings.Repeat("r", 48)}},
		{"byok/tenants/acme/settings", map[string]any{"rpm_limit": 5}},
		// Writes nothing, but a grant on a standby would split the count: refused the same way.
		{"byok/tenants/acme/rate-lease", map[string]any{"kind": "rpm", "amount": 1, "node": "n1"}},
	} {
		code, m := s.Call(t, s.RootToken, "PUT", w.path, w.body)
		if code != 500 || Errors(m) != ErrReadOnly.Error() {
			t.Errorf("PUT %s on read-only storage: %d %q, want 500 %q", w.path, code, Errors(m), ErrReadOnly.Error())
		}
	}
	s.MustCall(t, 200, s.RootToken, "GET", "byok/config", nil)
	if log := s.PluginLog(); strings.Contains(log, "internal error") || strings.Contains(log, "request failed") {
		t.Errorf("a read-only refusal was logged as a failure:\n%s", log)
	}
	s.Storage.SetReadOnly(false)
	if code, m := s.Call(t, s.RootToken, "PUT", "byok/config", map[string]any{"max_key_versions": 7}); code != 200 && code != 204 {
		t.Errorf("write after read-only: %d %v", code, m)
	}
}

// Vault refuses a write to a path ending in "/" before any backend sees it
// (request_handling.go); reads and lists of such paths still reach the plugin.
func TestWriteToTrailingSlashRefused(t *testing.T) {
	s := newSim(t)
	code, m := s.Call(t, s.RootToken, "PUT", "byok/tenants/", map[string]any{"x": 1})
	if code != 400 || Errors(m) != "cannot write to a path ending in '/'" {
		t.Errorf("PUT byok/tenants/: %d %q, want 400 \"cannot write to a path ending in '/'\"", code, Errors(m))
	}
	if code, m := s.Call(t, s.RootToken, "LIST", "byok/providers/", nil); code != 200 {
		t.Errorf("LIST byok/providers/: %d %v", code, m)
	}
}

// A slow storage backend holds only the calls that wait for it. Twelve
// settings writes are held in storage at once (one in its Put, the others
// queued behind the engine's write lock): more than the eight workers the
// plugin starts with, so its pool must grow, and a read served from memory
// and the health check must still answer meanwhile. On a plugin that lets
// waiting handlers keep the only thread draining its queue, the reads hang.
func TestSlowStorageDoesNotStallOtherCalls(t *testing.T) {
	s := newSim(t)
	s.MustCall(t, 200, s.RootToken, "GET", "byok/config", nil) // cached from now on
	_, puts0, _, _ := s.Storage.OpCounts()
	release := s.Storage.HoldWrites()
	defer release()
	const writers = 12
	done := make(chan error, writers)
	for i := 0; i < writers; i++ {
		go func(i int) {
			code, m, err := s.Server.Call(s.RootToken, "PUT", fmt.Sprintf("byok/tenants/slow%d/settings", i),
				map[string]any{"rpm_limit": 5})
			if err == nil && code != 200 && code != 204 {
				err = fmt.Errorf("status %d: %v", code, m)
			}
			done <- err
		}(i)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, puts, _, _ := s.Storage.OpCounts(); puts > puts0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no settings write reached storage")
		}
	}
	time.Sleep(300 * time.Millisecond) // let the other writers queue behind the lock
	for i := 0; i < 3; i++ {
		got := make(chan error, 1)
		go func() {
			code, m, err := s.Server.Call(s.RootToken, "GET", "byok/config", nil)
			if err == nil && code != 200 {
				err = fmt.Errorf("status %d: %v", code, m)
			}
			got <- err
		}()
		select {
		case err := <-got:
			if err != nil {
				t.Fatalf("config read while writes are held: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a config read served from memory hung while storage writes were held")
		}
	}
	if err := s.Plugin().Ping(); err != nil {
		t.Fatalf("health check while storage writes were held: %v", err)
	}
	release()
	for i := 0; i < writers; i++ {
		if err := <-done; err != nil {
			t.Errorf("held settings write: %v", err)
		}
	}
}

// nsCall is Server.Call with an X-Vault-Namespace header (none when ns is "").
func nsCall(t *testing.T, s *Sim, ns, token, method, path string) int {
	t.Helper()
	c, base := s.HTTPClient()
	req, err := http.NewRequest(method, base+"/v1/"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Vault-Token", token)
	if ns != "" {
		req.Header.Set("X-Vault-Namespace", ns)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// A stand-in in a namespace answers only requests that name it, as Vault
// Enterprise, HCP Vault and OpenBao do: the X-Vault-Namespace header, a path
// prefix, or the header's namespace plus the rest of it in the path.
func TestNamespaceHTTP(t *testing.T) {
	s := newSim(t, WithNamespace("/admin/team/"))
	root := s.RootToken
	for _, c := range []struct {
		ns, path string
		want     int
	}{
		{"", "byok/config", 403},
		{"admin/team", "byok/config", 200},
		{"admin/team/", "byok/config", 200},
		{"", "admin/team/byok/config", 200},
		{"admin", "team/byok/config", 200},
		{"admin", "byok/config", 403},
		{"other", "byok/config", 403},
		{"admin/teams", "byok/config", 403},
		{"admin/team", "auth/token/lookup-self", 200},
		{"", "auth/token/lookup-self", 403},
		{"", "sys/health", 200},
	} {
		if got := nsCall(t, s, c.ns, root, "GET", c.path); got != c.want {
			t.Errorf("namespace %q, path %q: %d, want %d", c.ns, c.path, got, c.want)
		}
	}
	// Without a namespace, one named in a request does not exist.
	plain := newSim(t)
	if got := nsCall(t, plain, "admin", plain.RootToken, "GET", "byok/config"); got != 404 {
		t.Errorf("root-namespace stand-in, X-Vault-Namespace admin: %d, want 404", got)
	}
	if got := nsCall(t, plain, "", plain.RootToken, "GET", "byok/config"); got != 200 {
		t.Errorf("root-namespace stand-in, no namespace: %d, want 200", got)
	}
}
