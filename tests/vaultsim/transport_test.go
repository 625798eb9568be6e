// SPDX-License-Identifier: MPL-2.0

package vaultsim

// Transport tests: the plugin as a go-plugin server, seen from the host.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/plugin/pb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// startMounted starts the plugin with in-memory storage and runs the mount
// sequence (Setup, Type, SpecialPaths, Initialize).
func startMounted(t *testing.T) (*Plugin, *Storage, *LogBuffer) {
	t.Helper()
	st, _ := NewStorage("")
	log := NewLogBuffer(nil)
	p, err := StartPlugin(PluginConfig{Path: pluginPath(t), Name: "vault-plugin-secrets-byok",
		BackendUUID: newUUID(), Storage: st, Stderr: log,
		System: &SystemView{DefaultLeaseTTL: DefaultLeaseTTL, MaxLeaseTTL: DefaultLeaseTTL}})
	if err != nil {
		t.Fatalf("StartPlugin: %v", err)
	}
	t.Cleanup(func() {
		p.Kill()
		checkPluginLog(t, log.String())
		if t.Failed() {
			t.Logf("plugin log:\n%s", tail(log.String(), 8000))
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Setup(ctx); err != nil {
		t.Fatalf("mount sequence: %v", err)
	}
	return p, st, log
}

func TestHandshakeLine(t *testing.T) {
	r, err := LaunchRaw(pluginPath(t), nil, 30*time.Second)
	if err != nil {
		t.Fatalf("launch: %v", err)
	}
	defer r.Kill()
	f := strings.Split(r.Line, "|")
	if len(f) != 6 {
		t.Fatalf("handshake line has %d fields, want 6 (no 7th without PLUGIN_MULTIPLEX_GRPC): %q", len(f), r.Line)
	}
	defer os.Remove(f[3])
	if f[0] != "1" || f[1] != "5" || f[2] != "unix" || f[4] != "grpc" {
		t.Fatalf("fields 1,2,3,5 = %q %q %q %q, want 1 5 unix grpc", f[0], f[1], f[2], f[4])
	}
	if !filepath.IsAbs(f[3]) {
		t.Errorf("address %q is not an absolute path", f[3])
	}
	if fi, err := os.Stat(f[3]); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("address %q is not a listening socket when the line is printed: %v", f[3], err)
	}
	if strings.ContainsAny(f[5], "=\n-_") {
		t.Errorf("certificate field is not raw standard base64 (padding or URL alphabet): %.40q...", f[5])
	}
	der, err := base64.RawStdEncoding.DecodeString(f[5])
	if err != nil {
		t.Fatalf("certificate field: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("certificate DER: %v", err)
	}
	hasLocalhost := false
	for _, n := range cert.DNSNames {
		hasLocalhost = hasLocalhost || n == "localhost"
	}
	if !hasLocalhost {
		t.Errorf("certificate has no DNS SAN localhost: %v", cert.DNSNames)
	}
	if len(cert.ExtKeyUsage) > 0 {
		var srv, cli bool
		for _, u := range cert.ExtKeyUsage {
			srv = srv || u == x509.ExtKeyUsageServerAuth
			cli = cli || u == x509.ExtKeyUsageClientAuth
		}
		if !srv || !cli {
			t.Errorf("certificate EKU must include serverAuth and clientAuth: %v", cert.ExtKeyUsage)
		}
	}
	if time.Now().Before(cert.NotBefore) || time.Now().After(cert.NotAfter) {
		t.Errorf("certificate not currently valid: %v..%v", cert.NotBefore, cert.NotAfter)
	}
	if cert.SerialNumber.Sign() <= 0 {
		t.Errorf("certificate serial must be positive")
	}
}

func TestTypeAndSpecialPaths(t *testing.T) {
	p, _, _ := startMounted(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tr, err := p.Backend.Type(ctx, &pb.Empty{})
	if err != nil || tr.Type != 1 {
		t.Fatalf("Type = %v, %v; want 1 (logical)", tr, err)
	}
	sp, err := p.Backend.SpecialPaths(ctx, &pb.Empty{})
	if err != nil || sp.Paths == nil {
		t.Fatalf("SpecialPaths = %v, %v", sp, err)
	}
	found := false
	for _, s := range sp.Paths.SealWrapStorage {
		found = found || s == "kek/"
	}
	if !found {
		t.Errorf("SpecialPaths.seal_wrap_storage = %v, want it to contain kek/", sp.Paths.SealWrapStorage)
	}
	if p.Multiplex != "false" && p.Multiplex != "unimplemented" {
		t.Errorf("MultiplexingSupport answered %q", p.Multiplex)
	}
}

var semverRe = regexp.MustCompile(`^v?\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

func TestRegistrationMode(t *testing.T) {
	log := NewLogBuffer(nil)
	v, err := Register(pluginPath(t), log)
	if err != nil {
		t.Fatalf("registration (Setup with no storage, empty config): %v\nplugin log:\n%s", err, log.String())
	}
	if !semverRe.MatchString(v) {
		t.Errorf("PluginVersion = %q, want a semantic version", v)
	}
}

func TestUnknownMethodUnimplemented(t *testing.T) {
	p, _, _ := startMounted(t)
	for _, m := range []string{"/pb.Backend/Nope", "/no.such.Service/Method", "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := p.Conn.Invoke(ctx, m, &pb.Empty{}, &pb.Empty{})
		cancel()
		if status.Code(err) != codes.Unimplemented {
			t.Errorf("%s: got %v, want Unimplemented (a DeadlineExceeded means the call hung)", m, err)
		}
	}
	// The connection is still usable afterwards.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := p.Backend.Type(ctx, &pb.Empty{}); err != nil {
		t.Errorf("Type after unknown methods: %v", err)
	}
}

func TestShutdownExitsAndRemovesSocket(t *testing.T) {
	p, _, _ := startMounted(t)
	sock := p.Addr.String()
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("plugin socket %s: %v", sock, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil && status.Code(err) != codes.Unavailable {
		t.Fatalf("GRPCController/Shutdown: %v", err)
	}
	// Vault SIGKILLs a plugin that is still alive 2 s after Shutdown: the
	// plugin must be gone by then on its own.
	deadline := time.Now().Add(2 * time.Second)
	for !p.Exited() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !p.Exited() {
		t.Fatalf("plugin still running 2 s after Shutdown (Vault would SIGKILL it)")
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket %s left behind after exit (stat: %v)", sock, err)
	}
}

// runPlugin execs the plugin with exactly env and returns exit code, stdout, stderr.
func runPlugin(t *testing.T, env []string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, pluginPath(t))
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running plugin: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("plugin did not exit within 20 s with env %v", env)
	}
	return code, out.String(), errb.String()
}

func TestRefusesToRunWithoutHost(t *testing.T) {
	certPEM, _, err := GenerateCert()
	if err != nil {
		t.Fatal(err)
	}
	base := []string{"PLUGIN_PROTOCOL_VERSIONS=5", "PLUGIN_CLIENT_CERT=" + string(certPEM), "PATH=/usr/bin:/bin"}
	cases := []struct {
		name string
		env  []string
	}{
		{"wrong cookie", append([]string{MagicCookieKey + "=not-the-cookie"}, base...)},
		{"no cookie", base},
		{"by hand (empty environment)", []string{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runPlugin(t, c.env)
			if code != 1 {
				t.Errorf("exit status %d, want 1", code)
			}
			if out != "" {
				t.Errorf("printed on stdout (a host would read it as a handshake): %q", out)
			}
			msg := strings.ToLower(errOut)
			if !strings.Contains(msg, "plugin") || !(strings.Contains(msg, "vault") || strings.Contains(msg, "directly")) {
				t.Errorf("stderr does not explain that this is a Vault plugin not meant to be run directly: %q", errOut)
			}
		})
	}
}

// tlsRejects dials addr with cert (nil: none) and reports whether the peer
// rejected the TLS handshake (with TLS 1.3 the server's verdict on the
// client certificate arrives with the first read).
func tlsRejects(t *testing.T, addr string, roots *x509.CertPool, cert *tls.Certificate) bool {
	t.Helper()
	cfg := &tls.Config{RootCAs: roots, ServerName: "localhost", NextProtos: []string{"h2"}}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "unix", addr, cfg)
	if err != nil {
		return true
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	_, err = conn.Read(buf)
	if err == nil {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return true
}

func TestPluginRejectsForeignClientCert(t *testing.T) {
	p, _, _ := startMounted(t)
	addr := p.Addr.String()
	roots := p.TLS.RootCAs
	// Control: the certificate sent in PLUGIN_CLIENT_CERT is accepted.
	host := p.TLS.Certificates[0]
	if tlsRejects(t, addr, roots, &host) {
		t.Fatalf("plugin rejected the host's own certificate (control)")
	}
	certPEM, keyPEM, err := GenerateCert()
	if err != nil {
		t.Fatal(err)
	}
	other, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !tlsRejects(t, addr, roots, &other) {
		t.Errorf("plugin accepted a client certificate not issued from PLUGIN_CLIENT_CERT")
	}
	if !tlsRejects(t, addr, roots, nil) {
		t.Errorf("plugin accepted a connection without a client certificate")
	}
}

// The stand-in's broker must be as strict as Vault's: only the plugin's
// handshake certificate is accepted.
func TestBrokerRequiresPluginCert(t *testing.T) {
	p, _, _ := startMounted(t)
	if p.brokerLis == nil {
		t.Fatal("no broker listener")
	}
	certPEM, keyPEM, _ := GenerateCert()
	other, _ := tls.X509KeyPair(certPEM, keyPEM)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM) // trust anything: the server side is under test
	cfg := &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{other}}
	conn, err := tls.Dial("unix", p.brokerLis.Addr().String(), cfg)
	if err == nil {
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = conn.Read(make([]byte, 16))
		conn.Close()
	}
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Errorf("broker accepted a foreign client certificate")
	}
}

// hclogTimestamp is the only @timestamp layout go-plugin parses
// ("2006-01-02T15:04:05.000000Z07:00"); other layouts make the line plain text.
var hclogTimestamp = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)$`)

// Every stderr line is relayed into Vault's log: go-plugin parses it as
// hclog JSON and Vault type-asserts @level and @message to strings.
func TestStderrIsHclogJSON(t *testing.T) {
	s := newSim(t)
	// Some traffic, including bad input and unknown paths, to make it log.
	s.Call(t, s.RootToken, "GET", "byok/config", nil)
	s.Call(t, s.RootToken, "PUT", "byok/config", map[string]any{"max_key_versions": "many"})
	s.Call(t, s.RootToken, "GET", "byok/no/such", nil)
	s.Call(t, s.RootToken, "PUT", "byok/providers/x", "{not json")
	s.ReloadPlugin(t)
	log := s.PluginLog()
	lines := strings.Split(strings.TrimRight(log, "\n"), "\n")
	if len(lines) == 0 || lines[0] == "" {
		t.Fatalf("the plugin logged nothing on stderr (not even its start)")
	}
	levels := map[string]bool{"trace": true, "debug": true, "info": true, "warn": true, "error": true}
	for i, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Errorf("stderr line %d is not a JSON object: %q", i+1, tail(l, 200))
			continue
		}
		lv, ok := m["@level"].(string)
		if !ok || !levels[lv] {
			t.Errorf("line %d: @level %v is not one of trace|debug|info|warn|error", i+1, m["@level"])
		}
		if _, ok := m["@message"].(string); !ok {
			t.Errorf("line %d: @message %v is not a string", i+1, m["@message"])
		}
		if ts, ok := m["@timestamp"]; ok {
			if tss, _ := ts.(string); !hclogTimestamp.MatchString(tss) {
				t.Errorf("line %d: @timestamp %v not in go-plugin's layout", i+1, ts)
			}
		}
	}
}

// Vault sends messages up to MaxInt32; gRPC C core's default receive limit
// is 4 MiB. A request above 4 MiB must reach the plugin's own validation and
// come back as a 4xx: the existence check (which Vault runs first for every
// write) must not fail it, since Vault turns any existence-check error other
// than "unsupported path" into a 500.
func TestLargeRequestPassesTransport(t *testing.T) {
	s := newSim(t)
	pad := strings.Repeat("x", 5<<20)
	data, _ := json.Marshal(map[string]any{"pad": pad})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req := &pb.Request{Id: "big", Operation: "update", Path: "config", Data: string(data), MountPoint: "byok/"}
	ec, err := s.Plugin().Backend.HandleExistenceCheck(ctx, &pb.HandleExistenceCheckArgs{Request: req})
	if err != nil {
		t.Fatalf("HandleExistenceCheck with 5 MiB of data: transport error %v", err)
	}
	if ec.Err != nil && ec.Err.ErrType != 6 {
		t.Errorf("HandleExistenceCheck with 5 MiB of data: error type %d %q (Vault answers 500; "+
			"leave validation to HandleRequest)", ec.Err.ErrType, ec.Err.ErrMsg)
	}
	hr, err := s.Plugin().Backend.HandleRequest(ctx, &pb.HandleRequestArgs{Request: req})
	if err != nil {
		t.Fatalf("HandleRequest with 5 MiB of data: transport error %v", err)
	}
	if hr.Err != nil && hr.Response == nil && hr.Err.ErrType < 4 {
		t.Errorf("HandleRequest with 5 MiB of data: bare error type %d %q (Vault answers 500; use an error response)",
			hr.Err.ErrType, hr.Err.ErrMsg)
	}
	code, m := s.Call(t, s.RootToken, "PUT", "byok/config", map[string]any{"pad": pad})
	if code < 400 || code >= 500 {
		t.Errorf("5 MiB request over HTTP: status %d %q, want a 4xx", code, tail(Errors(m), 300))
	}
	// And the plugin is still serving.
	s.MustCall(t, 200, s.RootToken, "GET", "byok/config", nil)
}

// launchWith starts the plugin by hand with the host environment plus
// overrides and returns the handshake fields (socket removed at cleanup).
func launchWith(t *testing.T, overrides ...string) []string {
	t.Helper()
	certPEM, _, err := GenerateCert()
	if err != nil {
		t.Fatal(err)
	}
	r, err := LaunchRaw(pluginPath(t), RawEnv(certPEM, overrides...), 30*time.Second)
	if err != nil {
		t.Fatalf("launch with %v: %v", overrides, err)
	}
	f := strings.Split(r.Line, "|")
	t.Cleanup(func() {
		r.Kill()
		if len(f) >= 4 {
			_ = os.Remove(f[3])
		}
	})
	return f
}

func TestHandshakeEnvironment(t *testing.T) {
	// go-plugin >= 1.6 hosts that ask for broker multiplexing expect a 7th
	// field; the plugin cannot multiplex and must say so.
	f := launchWith(t, "PLUGIN_MULTIPLEX_GRPC=true")
	if len(f) != 7 || f[6] != "false" {
		t.Errorf("with PLUGIN_MULTIPLEX_GRPC=true: %d fields, last %q; want 7 ending in false", len(f), f[len(f)-1])
	}
	// The version is chosen from the host's list.
	f = launchWith(t, "PLUGIN_PROTOCOL_VERSIONS=4,5")
	if len(f) < 2 || f[1] != "5" {
		t.Errorf("PLUGIN_PROTOCOL_VERSIONS=4,5: version field %v, want 5", f)
	}
	// Containerized hosts choose the socket directory.
	dir, err := os.MkdirTemp("", "vs")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	f = launchWith(t, "PLUGIN_UNIX_SOCKET_DIR="+dir)
	if len(f) < 4 || filepath.Dir(f[3]) != dir {
		t.Errorf("PLUGIN_UNIX_SOCKET_DIR=%s: socket %v not in it", dir, f)
	}
}

func TestRefusesUnsupportedHost(t *testing.T) {
	certPEM, _, err := GenerateCert()
	if err != nil {
		t.Fatal(err)
	}
	for name, env := range map[string][]string{
		"protocol 3,4 only (v4 host)":         RawEnv(certPEM, "PLUGIN_PROTOCOL_VERSIONS=3,4"),
		"no PLUGIN_CLIENT_CERT (no AutoMTLS)": RawEnv(certPEM, "PLUGIN_CLIENT_CERT"),
		"garbage PLUGIN_CLIENT_CERT":          RawEnv(certPEM, "PLUGIN_CLIENT_CERT=-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
	} {
		t.Run(name, func(t *testing.T) {
			code, out, errOut := runPlugin(t, env)
			if code != 1 {
				t.Errorf("exit status %d, want 1", code)
			}
			if out != "" {
				t.Errorf("printed a handshake anyway: %q", out)
			}
			if strings.TrimSpace(errOut) == "" {
				t.Errorf("no explanation on stderr")
			}
		})
	}
}

// On unmount Vault calls Cleanup and stops its broker server; on kill it
// closes the broker stream before GRPCController/Shutdown. The plugin must
// survive both: a storage-backed request fails promptly (no hang, no crash)
// and Shutdown still ends the process.
func TestSurvivesBrokerGoingAway(t *testing.T) {
	p, _, _ := startMounted(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := p.Backend.Cleanup(ctx, &pb.Empty{}); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	p.stopBroker()
	_ = p.Broker.Close()
	data, _ := json.Marshal(map[string]any{"display_name": "X", "api_style": "openai", "base_url": "https://x.example.com/v1"})
	_, err := p.Backend.HandleRequest(ctx, &pb.HandleRequestArgs{Request: &pb.Request{
		Id: "after-cleanup", Operation: "create", Path: "providers/after", Data: string(data), MountPoint: "byok/"}})
	switch status.Code(err) {
	case codes.DeadlineExceeded:
		t.Fatalf("a storage-backed request after the broker went away hung")
	case codes.Unavailable:
		t.Fatalf("the plugin went away with the broker: %v", err)
	}
	// A live plugin answers Shutdown (a crashed one would be Unavailable).
	if err := p.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown after the broker went away: %v", err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for !p.Exited() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !p.Exited() {
		t.Errorf("plugin still running 2 s after Shutdown once the broker was gone")
	}
}

// Vault calls InvalidateKey when replicated storage changes underneath; it
// must answer (no error) for any key, known or not.
func TestInvalidateKeyAnswers(t *testing.T) {
	p, _, _ := startMounted(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, k := range []string{"config", "kek/current", "providers/openai", "no/such/key", ""} {
		if _, err := p.Backend.InvalidateKey(ctx, &pb.InvalidateKeyArgs{Key: k}); err != nil {
			t.Errorf("InvalidateKey(%q): %v", k, err)
		}
	}
	if _, err := p.Backend.Type(ctx, &pb.Empty{}); err != nil {
		t.Errorf("plugin not answering after InvalidateKey: %v", err)
	}
}

// Vault (1.16+, and OpenBao) passes its own environment to the plugin, so
// gRPC core's GRPC_TRACE and GRPC_VERBOSITY set for debugging reach it. The
// secure_endpoint tracer dumps every decrypted byte at INFO: a key write's
// provider key and a creds reply would land in Vault's log. With every
// tracer on, no key material may reach stderr in any encoding.
func TestGrpcTraceNeverDumpsKeys(t *testing.T) {
	t.Setenv("GRPC_TRACE", "all")
	t.Setenv("GRPC_VERBOSITY", "DEBUG")
	s := newSim(t)
	canary := "sk-CANARYgrpctrace0000000000000000000000000001"
	s.MustCall(t, 200, s.RootToken, "PUT", "byok/tenants/acme/keys/openai/production",
		map[string]any{"key_value": canary, "name": "prod", "permissions": []string{"chat"}})
	cr := Data(s.MustCall(t, 200, s.RootToken, "GET", "byok/tenants/acme/creds/openai", nil))
	if jstr(cr, "api_key") != canary {
		t.Fatalf("creds: wrong key")
	}
	log := s.PluginLog()
	if !strings.Contains(log, `"source":"grpc"`) {
		t.Fatalf("GRPC_TRACE did not reach the plugin (no gRPC core line on stderr): the test proves nothing")
	}
	noCanaries(t, "plugin stderr with GRPC_TRACE=all", []byte(log), []string{canary})
	// secure_endpoint prints "73 6b 2d ..." next to the ASCII column.
	hex := make([]string, 0, 16)
	for _, b := range []byte(canary[:16]) {
		hex = append(hex, fmt.Sprintf("%02x", b))
	}
	if strings.Contains(log, strings.Join(hex, " ")) {
		t.Errorf("plugin stderr with GRPC_TRACE=all holds the key as a hex dump")
	}
}

// Setup whose broker connection is never announced must fail, as the Go SDK's
// does (broker.Dial's timeout is Setup's error): Vault then refuses the mount
// with that message instead of mounting an engine whose every request fails
// for want of storage, with nothing to make Vault run Setup again.
func TestSetupFailsWithoutBrokerConnection(t *testing.T) {
	st, _ := NewStorage("")
	p, err := StartPlugin(PluginConfig{Path: pluginPath(t), Name: "vault-plugin-secrets-byok",
		BackendUUID: newUUID(), Storage: st, Stderr: NewLogBuffer(nil)})
	if err != nil {
		t.Fatalf("StartPlugin: %v", err)
	}
	defer p.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// An id the host never accepted: no ConnInfo is sent for it.
	r, err := p.Backend.Setup(ctx, &pb.SetupArgs{BrokerId: 4242, Config: map[string]string{"plugin_name": "byok"}})
	if err == nil && r.Err == "" {
		t.Fatalf("Setup succeeded although no broker connection was announced (storage unreachable)")
	}
	if err == nil && !strings.Contains(r.Err, "broker") {
		t.Errorf("Setup error does not say what is missing: %q", r.Err)
	}
}
