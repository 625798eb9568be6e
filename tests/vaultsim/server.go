// SPDX-License-Identifier: MPL-2.0

package vaultsim

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/plugin/pb"
)

// Options configure a Server.
type Options struct {
	PluginPath     string
	PluginName     string // default: base name of PluginPath
	PluginVersion  string
	Mount          string // default "byok"
	MountOptions   map[string]string
	Listen         string // "unix:/path", "/path" (unix) or "127.0.0.1:port"; default 127.0.0.1:0
	StorageFile    string // "" = in memory
	RootToken      string // default: random
	LogWriter      io.Writer
	ReadyFile      string
	HostLogger     hclog.Logger // go-plugin's host-side log (nil: discard)
	Config         *FileConfig  // pre-created policies, entities, tokens, roles
	RequestTimeout time.Duration
	// RollbackPeriod: how often the mount gets Vault's periodic
	// {operation: rollback, path: ""} request (Vault: 1 minute; 0 = off).
	RollbackPeriod time.Duration
	// VerbatimTemplates: substitute identity template values containing "*"
	// or "+" into policy paths as they are (Vault before its 2026 releases,
	// where such a value widens the rule); default: drop the path (current Vault).
	VerbatimTemplates bool
	// Namespace: everything (the mount, auth methods, tokens, policies) lives
	// in this Vault Enterprise / HCP Vault / OpenBao namespace ("admin",
	// "team/a"): a request must name it with X-Vault-Namespace, a path
	// prefix or both, else it is refused as Vault refuses a token from
	// another namespace (403). "" = the root namespace, no header needed.
	Namespace string
	// TLSCert and TLSKey: serve HTTPS with this certificate (PEM files) on
	// the listener, asking for a client certificate as Vault does (the cert
	// auth method needs one); TLSClientCA: also verify any client certificate
	// given in the handshake against this CA file. "" = plain HTTP.
	TLSCert, TLSKey, TLSClientCA string
}

// Option modifies Options.
type Option func(*Options)

// WithPlugin sets the plugin binary.
func WithPlugin(path string) Option { return func(o *Options) { o.PluginPath = path } }

// WithStorageFile persists storage to file.
func WithStorageFile(file string) Option { return func(o *Options) { o.StorageFile = file } }

// WithRootToken fixes the root token.
func WithRootToken(tok string) Option { return func(o *Options) { o.RootToken = tok } }

// WithMount sets the mount path (default byok).
func WithMount(m string) Option { return func(o *Options) { o.Mount = m } }

// WithListen sets the HTTP listen address.
func WithListen(addr string) Option { return func(o *Options) { o.Listen = addr } }

// WithLogWriter copies the plugin's stderr to w as well.
func WithLogWriter(w io.Writer) Option { return func(o *Options) { o.LogWriter = w } }

// WithMountOptions adds Setup config entries (vault secrets enable -options).
func WithMountOptions(m map[string]string) Option { return func(o *Options) { o.MountOptions = m } }

// WithPluginVersion sets plugin_version in Setup's config.
func WithPluginVersion(v string) Option { return func(o *Options) { o.PluginVersion = v } }

// WithConfig pre-creates what cfg lists.
func WithConfig(cfg *FileConfig) Option { return func(o *Options) { o.Config = cfg } }

// WithVerbatimTemplates makes templated policies behave as in Vault before its
// 2026 releases: a "*" or "+" in an entity's metadata is substituted as is.
func WithVerbatimTemplates() Option { return func(o *Options) { o.VerbatimTemplates = true } }

// WithNamespace puts everything in namespace ns (Options.Namespace).
func WithNamespace(ns string) Option { return func(o *Options) { o.Namespace = strings.Trim(ns, "/") } }

// Server is the Vault stand-in: one plugin mount plus the HTTP API.
type Server struct {
	opts    Options
	Storage *Storage
	Log     *LogBuffer
	auth    *authState

	pmu    sync.RWMutex
	plugin *Plugin
	uuid   string

	lis      net.Listener
	http     *http.Server
	Addr     string // "unix:/path" or "127.0.0.1:port"
	sockPath string
	tls      bool // the listener serves HTTPS (Options.TLSCert)
	closed   bool

	stopRollback chan struct{}
	// RollbackErrors counts rollback requests the plugin failed (other than
	// unsupported operation, which Vault ignores).
	rollbackMu     sync.Mutex
	rollbackErrors []string

	clientOnce sync.Once
	client     *http.Client
	base       string
}

// New starts the plugin, mounts it and starts the HTTP listener.
func New(opts ...Option) (*Server, error) {
	o := Options{Mount: "byok", Listen: "127.0.0.1:0", RequestTimeout: 60 * time.Second, RollbackPeriod: time.Minute}
	for _, f := range opts {
		f(&o)
	}
	if o.PluginPath == "" {
		return nil, errors.New("no plugin path")
	}
	if o.PluginName == "" {
		o.PluginName = filepath.Base(o.PluginPath)
	}
	o.Mount = strings.Trim(o.Mount, "/")
	if o.RootToken == "" {
		o.RootToken = "hvs.root-" + randHex(12)
	}
	st, err := NewStorage(o.StorageFile)
	if err != nil {
		return nil, err
	}
	s := &Server{opts: o, Storage: st, Log: NewLogBuffer(o.LogWriter), uuid: newUUID()}
	s.auth = newAuthState(o.RootToken)
	s.auth.verbatimTemplates = o.VerbatimTemplates
	if o.Config != nil {
		if err := s.auth.apply(o.Config); err != nil {
			return nil, err
		}
	}
	if err := s.startPlugin(); err != nil {
		return nil, err
	}
	if err := s.listen(); err != nil {
		s.killPlugin()
		return nil, err
	}
	if o.RollbackPeriod > 0 {
		s.stopRollback = make(chan struct{})
		go s.rollbackLoop(o.RollbackPeriod)
	}
	if o.ReadyFile != "" {
		if err := writeFileAtomic(o.ReadyFile, []byte(s.Addr+"\n"), 0o644); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

func (s *Server) pluginConfig() PluginConfig {
	return PluginConfig{
		Path: s.opts.PluginPath, Name: s.opts.PluginName, Version: s.opts.PluginVersion,
		MountOptions: s.opts.MountOptions, BackendUUID: s.uuid, Storage: s.Storage,
		System: &SystemView{DefaultLeaseTTL: DefaultLeaseTTL, MaxLeaseTTL: DefaultLeaseTTL,
			EntityInfo: s.auth.entityInfo},
		Stderr: s.Log, Logger: s.opts.HostLogger,
	}
}

func (s *Server) startPlugin() error {
	p, err := StartPlugin(s.pluginConfig())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Setup(ctx); err != nil {
		p.Kill()
		return err
	}
	s.plugin = p
	return nil
}

func (s *Server) killPlugin() {
	if s.plugin != nil {
		s.plugin.Kill()
	}
}

// Plugin returns the running plugin (changes on reload).
func (s *Server) Plugin() *Plugin {
	s.pmu.RLock()
	defer s.pmu.RUnlock()
	return s.plugin
}

// ReloadPlugin does what sys/plugins/reload/backend does: Cleanup, kill,
// start a new process, Setup, Type, SpecialPaths, Initialize.
func (s *Server) ReloadPlugin() error {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	if s.plugin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = s.plugin.Cleanup(ctx)
		cancel()
		s.plugin.Kill()
		s.plugin = nil
	}
	return s.startPlugin()
}

// RootToken returns the root token.
func (s *Server) RootToken() string { return s.opts.RootToken }

// Mount returns the mount path (without slashes).
func (s *Server) Mount() string { return s.opts.Mount }

// PluginLog returns the plugin's stderr so far.
func (s *Server) PluginLog() string { return s.Log.String() }

func (s *Server) listen() error {
	var lis net.Listener
	var err error
	l := s.opts.Listen
	if strings.HasPrefix(l, "unix:") || strings.HasPrefix(l, "/") || strings.HasPrefix(l, ".") {
		path := strings.TrimPrefix(l, "unix:")
		_ = os.Remove(path)
		lis, err = net.Listen("unix", path)
		if err == nil {
			s.sockPath = path
			s.Addr = "unix:" + path
			_ = os.Chmod(path, 0o660)
		}
	} else {
		lis, err = net.Listen("tcp", l)
		if err == nil {
			s.Addr = lis.Addr().String()
		}
	}
	if err != nil {
		return err
	}
	if s.opts.TLSCert != "" {
		cfg, err := serverTLS(s.opts.TLSCert, s.opts.TLSKey, s.opts.TLSClientCA)
		if err != nil {
			_ = lis.Close()
			return err
		}
		lis = tls.NewListener(lis, cfg)
		s.tls = true
	}
	s.lis = lis
	s.http = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.http.Serve(lis) }()
	return nil
}

// HTTPClient returns a (shared, keep-alive) client that reaches the server
// (unix or tcp) and the base URL to use with it.
func (s *Server) HTTPClient() (*http.Client, string) {
	s.clientOnce.Do(func() { s.client, s.base = s.newHTTPClient() })
	return s.client, s.base
}

func (s *Server) newHTTPClient() (*http.Client, string) {
	tr := &http.Transport{MaxIdleConnsPerHost: 128}
	scheme := "http://"
	if s.tls {
		// The stand-in's own helper client, talking to itself: the server
		// certificate is the test's, not checked here (the agent checks it).
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec
		scheme = "https://"
	}
	if s.sockPath != "" {
		path := s.sockPath
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
		return &http.Client{Transport: tr, Timeout: 2 * time.Minute}, scheme + "vaultsim"
	}
	return &http.Client{Transport: tr, Timeout: 2 * time.Minute}, scheme + s.Addr
}

// Close stops HTTP and kills the plugin (GRPCController/Shutdown, SIGKILL
// after 2 s).
func (s *Server) Close() {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	if s.stopRollback != nil {
		close(s.stopRollback)
	}
	if s.client != nil {
		s.client.CloseIdleConnections()
	}
	if s.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = s.http.Shutdown(ctx)
		cancel()
	}
	if s.plugin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.plugin.Cleanup(ctx)
		cancel()
		s.plugin.Kill()
	}
	if s.sockPath != "" {
		_ = os.Remove(s.sockPath)
	}
	if s.opts.ReadyFile != "" {
		_ = os.Remove(s.opts.ReadyFile)
	}
}

// Call performs an HTTP request against the server as a client would and
// decodes the JSON body (nil for 204).
func (s *Server) Call(token, method, path string, body any) (int, map[string]any, error) {
	c, base := s.HTTPClient()
	var rd io.Reader
	if body != nil {
		switch b := body.(type) {
		case string:
			rd = strings.NewReader(b)
		case []byte:
			rd = bytes.NewReader(b)
		default:
			j, err := json.Marshal(body)
			if err != nil {
				return 0, nil, err
			}
			rd = bytes.NewReader(j)
		}
	}
	req, err := http.NewRequest(method, base+"/v1/"+strings.TrimPrefix(path, "/"), rd)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("X-Vault-Token", token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return resp.StatusCode, nil, nil
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return resp.StatusCode, map[string]any{"_raw": string(raw)}, nil
	}
	return resp.StatusCode, m, nil
}

// ---- small helpers -------------------------------------------------------------------

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func newUUID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Rollback sends Vault's periodic rollback request to the mount and returns
// the plugin's error, if any (unsupported operation is not an error: Vault
// ignores it).
func (s *Server) Rollback() error {
	s.pmu.RLock()
	defer s.pmu.RUnlock()
	if s.closed {
		return nil
	}
	if s.plugin == nil {
		return errors.New("plugin not running")
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.RequestTimeout)
	defer cancel()
	r, err := s.plugin.Backend.HandleRequest(ctx, &pb.HandleRequestArgs{Request: &pb.Request{
		Id: newUUID(), Operation: "rollback", Path: "", Data: `{"immediate":false}`,
		MountPoint: s.opts.Mount + "/", MountType: s.opts.PluginName}})
	if err != nil {
		return err
	}
	if r.Err != nil && r.Err.ErrType != 5 {
		return fmt.Errorf("rollback: error type %d: %s", r.Err.ErrType, r.Err.ErrMsg)
	}
	return nil
}

// RollbackErrors returns the errors of periodic rollbacks so far.
func (s *Server) RollbackErrors() []string {
	s.rollbackMu.Lock()
	defer s.rollbackMu.Unlock()
	return append([]string(nil), s.rollbackErrors...)
}

func (s *Server) rollbackLoop(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stopRollback:
			return
		case <-t.C:
			if err := s.Rollback(); err != nil {
				s.rollbackMu.Lock()
				s.rollbackErrors = append(s.rollbackErrors, err.Error())
				s.rollbackMu.Unlock()
				if s.opts.HostLogger != nil {
					s.opts.HostLogger.Error("rollback failed", "error", err)
				}
			}
		}
	}
}
