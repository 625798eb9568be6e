// SPDX-License-Identifier: MPL-2.0

// Package vaultsim is a stand-in for HashiCorp Vault's side of the external
// plugin protocol plus a subset of Vault's HTTP API (logical requests, tokens,
// ACL policies, identity entities, AppRole and Kubernetes login). It launches
// the plugin with go-plugin exactly as Vault does (protocol 5, AutoMTLS, the
// backend magic cookie) and serves pb.Storage/pb.SystemView over the broker.
// See README.md for every difference from Vault.
package vaultsim

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"github.com/hashicorp/vault/sdk/helper/pluginutil"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/sdk/plugin/pb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// Handshake values of Vault's backend plugins (sdk/plugin/serve.go).
const (
	MagicCookieKey   = "VAULT_BACKEND_PLUGIN"
	MagicCookieValue = "6669da05-b1c8-4f49-97d9-c8e5bed98e20"
	ProtocolVersion  = 5
	// VaultVersion is what VAULT_VERSION and SystemView.PluginEnv report.
	VaultVersion = "1.17.3"
	// DefaultLeaseTTL is Vault's system default (and max) lease TTL: 768h.
	DefaultLeaseTTL = 768 * time.Hour
)

// errMissingStorage is what Vault's broker answers during registration, when
// the storage and system view implementations are nil.
const errMissingStorage = "missing storage implementation: this method should not be called during plugin Setup, but only during and after Initialize"
const errMissingSystemView = "missing system view implementation: this method should not be called during plugin Setup, but only during and after Initialize"

// PluginConfig describes one plugin process launch.
type PluginConfig struct {
	Path          string
	Name          string            // plugin_name in Setup's config
	Version       string            // plugin_version in Setup's config
	MountOptions  map[string]string // extra Setup config (vault secrets enable -options)
	BackendUUID   string
	Storage       *Storage     // nil: registration mode (every storage call fails)
	System        *SystemView  // nil: registration mode
	Stderr        io.Writer    // receives the plugin's stderr lines (hclog JSON)
	Logger        hclog.Logger // go-plugin's own logger; nil: discard
	ExtraEnv      []string
	StartTimeout  time.Duration
	SkipBrokerTLS bool // testing only: serve the broker like go-plugin 1.0.1 (no client cert required)
}

// backendPlugin is the go-plugin Plugin for dispensing the raw connection and broker.
type backendPlugin struct{ plugin.NetRPCUnsupportedPlugin }

type dispensed struct {
	broker *plugin.GRPCBroker
	conn   *grpc.ClientConn
}

func (backendPlugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error {
	return errors.New("vaultsim is a plugin host only")
}

func (backendPlugin) GRPCClient(_ context.Context, b *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return &dispensed{broker: b, conn: c}, nil
}

// Plugin is one running plugin process, connected and (unless in
// registration mode) set up.
type Plugin struct {
	cfg       PluginConfig
	client    *plugin.Client
	Conn      *grpc.ClientConn
	Broker    *plugin.GRPCBroker
	Backend   pb.BackendClient
	Addr      net.Addr
	Pid       int
	TLS       *tls.Config // the host's client TLS config (host cert, plugin cert as root)
	brokerSrv *grpc.Server
	brokerLis net.Listener
	Paths     *pb.Paths
	Multiplex string // "unimplemented" or "false" (what MultiplexingSupport answered)
	// StdioResult is how the GRPCStdio/StreamStdio stream ended (or
	// "open"); Vault logs and ignores it.
	stdioMu     sync.Mutex
	stdioResult string
	stdioCancel context.CancelFunc
	closeOnce   sync.Once
	brokerDone  chan struct{}
}

// hostEnv is the environment Vault adds for a v5 plugin (run_config.go).
func hostEnv(extra []string) []string {
	env := []string{
		"VAULT_VERSION=" + VaultVersion,
		"VAULT_PLUGIN_AUTOMTLS_ENABLED=true",
		"VAULT_PLUGIN_METADATA_MODE=false",
	}
	return append(env, extra...)
}

// StartPlugin launches and connects the plugin (handshake, broker stream,
// MultiplexingSupport) without calling Setup.
func StartPlugin(cfg PluginConfig) (*Plugin, error) {
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = time.Minute
	}
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	stderr := cfg.Stderr
	if stderr == nil {
		stderr = io.Discard
	}
	cmd := exec.Command(cfg.Path)
	cmd.Env = hostEnv(cfg.ExtraEnv)
	ccfg := &plugin.ClientConfig{
		HandshakeConfig: plugin.HandshakeConfig{
			ProtocolVersion:  ProtocolVersion,
			MagicCookieKey:   MagicCookieKey,
			MagicCookieValue: MagicCookieValue,
		},
		VersionedPlugins: map[int]plugin.PluginSet{ProtocolVersion: {"backend": backendPlugin{}}},
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Logger:           logger,
		Stderr:           stderr,
		StartTimeout:     cfg.StartTimeout,
	}
	client := plugin.NewClient(ccfg)
	addr, err := client.Start()
	if err != nil {
		client.Kill()
		return nil, fmt.Errorf("starting plugin: %w", err)
	}
	p := &Plugin{cfg: cfg, client: client, Addr: addr, TLS: ccfg.TLSConfig, brokerDone: make(chan struct{})}
	if rc := client.ReattachConfig(); rc != nil {
		p.Pid = rc.Pid
	}
	rpc, err := client.Client()
	if err != nil {
		client.Kill()
		return nil, fmt.Errorf("connecting to plugin: %w", err)
	}
	raw, err := rpc.Dispense("backend")
	if err != nil {
		client.Kill()
		return nil, fmt.Errorf("dispensing backend: %w", err)
	}
	d := raw.(*dispensed)
	p.Conn, p.Broker, p.Backend = d.conn, d.broker, pb.NewBackendClient(d.conn)

	p.openStdio()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	mr, err := pluginutil.NewPluginMultiplexingClient(p.Conn).MultiplexingSupport(ctx, &pluginutil.MultiplexingSupportRequest{})
	switch {
	case status.Code(err) == codes.Unimplemented:
		p.Multiplex = "unimplemented"
	case err != nil:
		client.Kill()
		return nil, fmt.Errorf("MultiplexingSupport: %w", err)
	case mr.Supported:
		client.Kill()
		return nil, errors.New("plugin claims multiplexing support; vaultsim (like Vault for exec'd plugins) runs one mount per process")
	default:
		p.Multiplex = "false"
	}
	return p, nil
}

// openStdio opens GRPCStdio/StreamStdio as newer go-plugin hosts (Vault)
// do right after connecting; Unimplemented, Unavailable or EOF are fine,
// and so is a stream held open until the plugin goes away.
func (p *Plugin) openStdio() {
	ctx, cancel := context.WithCancel(context.Background())
	p.stdioCancel = cancel
	p.setStdio("open")
	go func() {
		st, err := p.Conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/plugin.GRPCStdio/StreamStdio")
		if err == nil {
			err = st.SendMsg(&pb.Empty{}) // google.protobuf.Empty: same (empty) encoding
		}
		if err == nil {
			err = st.CloseSend()
		}
		for err == nil {
			err = st.RecvMsg(&pb.Empty{})
		}
		if err == io.EOF {
			p.setStdio("EOF")
		} else {
			p.setStdio(status.Code(err).String())
		}
	}()
}

func (p *Plugin) setStdio(s string) {
	p.stdioMu.Lock()
	p.stdioResult = s
	p.stdioMu.Unlock()
}

// StdioResult reports how StreamStdio ended ("open" while it is held open).
func (p *Plugin) StdioResult() string {
	p.stdioMu.Lock()
	defer p.stdioMu.Unlock()
	return p.stdioResult
}

// brokerTLS is the broker server's TLS config: the host certificate, and the
// plugin certificate from the handshake as the only accepted client cert (as
// newer go-plugin, and so Vault, does).
func (p *Plugin) brokerTLS() *tls.Config {
	c := p.TLS.Clone()
	if !p.cfg.SkipBrokerTLS {
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.ClientCAs = p.TLS.RootCAs
	}
	c.MinVersion = tls.VersionTLS12
	return c
}

// serveBroker opens the broker listener for id and serves Storage,
// SystemView and Events on it.
func (p *Plugin) serveBroker(id uint32) error {
	lis, err := p.Broker.Accept(id)
	if err != nil {
		return fmt.Errorf("broker accept: %w", err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(p.brokerTLS())),
		grpc.MaxRecvMsgSize(1<<31-1), grpc.MaxSendMsgSize(1<<31-1))
	if p.cfg.Storage != nil {
		pb.RegisterStorageServer(srv, &storageServer{s: p.cfg.Storage})
	} else {
		pb.RegisterStorageServer(srv, missingStorage{})
	}
	if p.cfg.System != nil {
		pb.RegisterSystemViewServer(srv, &systemServer{v: p.cfg.System})
	} else {
		pb.RegisterSystemViewServer(srv, missingSystem{})
	}
	pb.RegisterEventsServer(srv, pb.UnimplementedEventsServer{})
	p.brokerSrv, p.brokerLis = srv, lis
	go func() {
		_ = srv.Serve(lis)
		close(p.brokerDone)
	}()
	return nil
}

// Setup runs Vault's mount sequence: Setup, Type, SpecialPaths, Initialize.
// In registration mode (cfg.Storage == nil) it only runs Setup with an empty
// config, as `vault plugin register` does.
func (p *Plugin) Setup(ctx context.Context) error {
	id := p.Broker.NextId()
	if err := p.serveBroker(id); err != nil {
		return err
	}
	args := &pb.SetupArgs{BrokerId: id, Config: map[string]string{}}
	if p.cfg.Storage != nil {
		for k, v := range p.cfg.MountOptions {
			args.Config[k] = v
		}
		args.Config["plugin_name"] = p.cfg.Name
		args.Config["plugin_type"] = "secret"
		args.Config["plugin_version"] = p.cfg.Version
		args.BackendUUID = p.cfg.BackendUUID
	}
	if p.cfg.Storage != nil {
		p.cfg.Storage.inSetup.Store(true)
	}
	r, err := p.Backend.Setup(ctx, args)
	if p.cfg.Storage != nil {
		p.cfg.Storage.inSetup.Store(false)
	}
	if err != nil {
		return fmt.Errorf("Setup: %w", err)
	}
	if r.Err != "" {
		return fmt.Errorf("Setup: %s", r.Err)
	}
	if p.cfg.Storage == nil {
		return nil
	}
	t, err := p.Backend.Type(ctx, &pb.Empty{})
	if err != nil {
		return fmt.Errorf("Type: %w", err)
	}
	if t.Type != 1 {
		return fmt.Errorf("Type: plugin answered %d, a secrets engine must answer 1 (logical)", t.Type)
	}
	sp, err := p.Backend.SpecialPaths(ctx, &pb.Empty{})
	if err != nil {
		return fmt.Errorf("SpecialPaths: %w", err)
	}
	p.Paths = sp.Paths
	if p.Paths == nil {
		p.Paths = &pb.Paths{}
	}
	ir, err := p.Backend.Initialize(ctx, &pb.InitializeArgs{})
	if status.Code(err) == codes.Unimplemented {
		return nil // Vault tolerates it
	}
	if err != nil {
		return fmt.Errorf("Initialize: %w", err)
	}
	if ir.Err != nil {
		return fmt.Errorf("Initialize: %s", ir.Err.ErrMsg)
	}
	return nil
}

// Version calls logical.PluginVersion/Version ("" when unimplemented).
func (p *Plugin) Version(ctx context.Context) (string, error) {
	r, err := logical.NewPluginVersionClient(p.Conn).Version(ctx, &logical.Empty{})
	if status.Code(err) == codes.Unimplemented {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return r.PluginVersion, nil
}

// Cleanup calls Backend.Cleanup and stops the broker server (unmount order).
func (p *Plugin) Cleanup(ctx context.Context) error {
	_, err := p.Backend.Cleanup(ctx, &pb.Empty{})
	p.stopBroker()
	return err
}

func (p *Plugin) stopBroker() {
	if p.brokerSrv != nil {
		p.brokerSrv.Stop()
	}
}

// Kill shuts the plugin down as Vault does: close the broker stream,
// GRPCController/Shutdown, close the connection, SIGKILL after 2 s.
func (p *Plugin) Kill() {
	p.closeOnce.Do(func() {
		if p.stdioCancel != nil {
			p.stdioCancel()
		}
		p.client.Kill()
		p.stopBroker()
	})
}

// Exited reports whether the plugin process has exited.
func (p *Plugin) Exited() bool { return p.client.Exited() }

// Ping is go-plugin's health check (grpc.health.v1.Health/Check "plugin").
func (p *Plugin) Ping() error {
	rp, err := p.client.Client()
	if err != nil {
		return err
	}
	return rp.Ping()
}

// Shutdown sends GRPCController/Shutdown itself (without the kill that
// follows in Kill), for tests that check the plugin exits on its own.
func (p *Plugin) Shutdown(ctx context.Context) error {
	return p.Conn.Invoke(ctx, "/plugin.GRPCController/Shutdown", &pb.Empty{}, &pb.Empty{})
}

// ---- broker services -----------------------------------------------------------

type storageServer struct {
	pb.UnimplementedStorageServer
	s *Storage
}

func (s *storageServer) List(_ context.Context, a *pb.StorageListArgs) (*pb.StorageListReply, error) {
	keys, err := s.s.List(a.Prefix)
	if err != nil {
		return &pb.StorageListReply{Err: err.Error()}, nil
	}
	return &pb.StorageListReply{Keys: keys}, nil
}

func (s *storageServer) Get(_ context.Context, a *pb.StorageGetArgs) (*pb.StorageGetReply, error) {
	v, ok, err := s.s.Get(a.Key)
	if err != nil {
		return &pb.StorageGetReply{Err: err.Error()}, nil
	}
	if !ok {
		return &pb.StorageGetReply{}, nil
	}
	return &pb.StorageGetReply{Entry: &pb.StorageEntry{Key: a.Key, Value: v}}, nil
}

func (s *storageServer) Put(ctx context.Context, a *pb.StoragePutArgs) (*pb.StoragePutReply, error) {
	if a.Entry == nil {
		return &pb.StoragePutReply{Err: "missing entry"}, nil
	}
	if err := s.s.PutContext(ctx, a.Entry.Key, a.Entry.Value, a.Entry.SealWrap); err != nil {
		if ctx.Err() != nil {
			// The plugin's call is over (its deadline, or it cancelled):
			// grpc-go has already answered it with that status.
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		return &pb.StoragePutReply{Err: err.Error()}, nil
	}
	return &pb.StoragePutReply{}, nil
}

func (s *storageServer) Delete(_ context.Context, a *pb.StorageDeleteArgs) (*pb.StorageDeleteReply, error) {
	if err := s.s.Delete(a.Key); err != nil {
		return &pb.StorageDeleteReply{Err: err.Error()}, nil
	}
	return &pb.StorageDeleteReply{}, nil
}

type missingStorage struct{ pb.UnimplementedStorageServer }

func (missingStorage) List(context.Context, *pb.StorageListArgs) (*pb.StorageListReply, error) {
	return nil, errors.New(errMissingStorage)
}
func (missingStorage) Get(context.Context, *pb.StorageGetArgs) (*pb.StorageGetReply, error) {
	return nil, errors.New(errMissingStorage)
}
func (missingStorage) Put(context.Context, *pb.StoragePutArgs) (*pb.StoragePutReply, error) {
	return nil, errors.New(errMissingStorage)
}
func (missingStorage) Delete(context.Context, *pb.StorageDeleteArgs) (*pb.StorageDeleteReply, error) {
	return nil, errors.New(errMissingStorage)
}

// SystemView is what the plugin learns about its mount.
type SystemView struct {
	DefaultLeaseTTL time.Duration
	MaxLeaseTTL     time.Duration
	MlockEnabled    bool
	LocalMount      bool
	// EntityInfo looks up an identity entity (nil: none).
	EntityInfo func(id string) *logical.Entity
}

type systemServer struct {
	pb.UnimplementedSystemViewServer
	v *SystemView
}

func (s *systemServer) DefaultLeaseTTL(context.Context, *pb.Empty) (*pb.TTLReply, error) {
	return &pb.TTLReply{TTL: int64(s.v.DefaultLeaseTTL)}, nil
}
func (s *systemServer) MaxLeaseTTL(context.Context, *pb.Empty) (*pb.TTLReply, error) {
	return &pb.TTLReply{TTL: int64(s.v.MaxLeaseTTL)}, nil
}
func (s *systemServer) Tainted(context.Context, *pb.Empty) (*pb.TaintedReply, error) {
	return &pb.TaintedReply{Tainted: false}, nil
}
func (s *systemServer) CachingDisabled(context.Context, *pb.Empty) (*pb.CachingDisabledReply, error) {
	return &pb.CachingDisabledReply{Disabled: false}, nil
}
func (s *systemServer) ReplicationState(context.Context, *pb.Empty) (*pb.ReplicationStateReply, error) {
	return &pb.ReplicationStateReply{State: 0}, nil
}
func (s *systemServer) MlockEnabled(context.Context, *pb.Empty) (*pb.MlockEnabledReply, error) {
	return &pb.MlockEnabledReply{Enabled: s.v.MlockEnabled}, nil
}
func (s *systemServer) LocalMount(context.Context, *pb.Empty) (*pb.LocalMountReply, error) {
	return &pb.LocalMountReply{Local: s.v.LocalMount}, nil
}
func (s *systemServer) PluginEnv(context.Context, *pb.Empty) (*pb.PluginEnvReply, error) {
	return &pb.PluginEnvReply{PluginEnvironment: &logical.PluginEnvironment{VaultVersion: VaultVersion}}, nil
}
func (s *systemServer) EntityInfo(_ context.Context, a *pb.EntityInfoArgs) (*pb.EntityInfoReply, error) {
	if s.v.EntityInfo == nil {
		return &pb.EntityInfoReply{}, nil
	}
	return &pb.EntityInfoReply{Entity: s.v.EntityInfo(a.EntityId)}, nil
}

type missingSystem struct {
	pb.UnimplementedSystemViewServer
}

func (missingSystem) DefaultLeaseTTL(context.Context, *pb.Empty) (*pb.TTLReply, error) {
	return nil, errors.New(errMissingSystemView)
}
func (missingSystem) MaxLeaseTTL(context.Context, *pb.Empty) (*pb.TTLReply, error) {
	return nil, errors.New(errMissingSystemView)
}
func (missingSystem) Tainted(context.Context, *pb.Empty) (*pb.TaintedReply, error) {
	return nil, errors.New(errMissingSystemView)
}
func (missingSystem) MlockEnabled(context.Context, *pb.Empty) (*pb.MlockEnabledReply, error) {
	return nil, errors.New(errMissingSystemView)
}
func (missingSystem) LocalMount(context.Context, *pb.Empty) (*pb.LocalMountReply, error) {
	return nil, errors.New(errMissingSystemView)
}
func (missingSystem) PluginEnv(context.Context, *pb.Empty) (*pb.PluginEnvReply, error) {
	return nil, errors.New(errMissingSystemView)
}

// ---- stderr capture -----------------------------------------------------------

// LogBuffer collects the plugin's stderr (one hclog JSON line per line) and
// optionally copies it to a file. Safe for concurrent use.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	out io.Writer
}

// NewLogBuffer returns a buffer that also copies to out when non-nil.
func NewLogBuffer(out io.Writer) *LogBuffer { return &LogBuffer{out: out} }

func (l *LogBuffer) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(b)
	if l.out != nil {
		_, _ = l.out.Write(b)
	}
	return len(b), nil
}

// String returns everything captured so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// ---- raw launch (no go-plugin) for handshake tests and benchmarks --------------

// RawLaunch is a plugin started by hand with the host's env, for reading
// the handshake line directly.
type RawLaunch struct {
	Cmd      *exec.Cmd
	Line     string
	Elapsed  time.Duration // exec to first stdout line
	HostCert tls.Certificate
	Stderr   *LogBuffer
}

// LaunchRaw execs path with env (nil: a v5 AutoMTLS env with a fresh host
// certificate, as go-plugin builds it) and waits for the first stdout line.
func LaunchRaw(path string, env []string, timeout time.Duration) (*RawLaunch, error) {
	r := &RawLaunch{Stderr: NewLogBuffer(nil)}
	if env == nil {
		certPEM, keyPEM, err := GenerateCert()
		if err != nil {
			return nil, err
		}
		r.HostCert, err = tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, err
		}
		env = RawEnv(certPEM)
	}
	cmd := exec.Command(path)
	cmd.Env = env
	cmd.Stderr = r.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	r.Cmd = cmd
	lineCh := make(chan string, 1)
	go func() {
		var b []byte
		one := make([]byte, 1)
		for {
			n, err := out.Read(one)
			if n == 1 {
				if one[0] == '\n' {
					break
				}
				b = append(b, one[0])
			}
			if err != nil {
				break
			}
		}
		lineCh <- string(b)
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case l := <-lineCh:
		r.Elapsed = time.Since(start)
		r.Line = strings.TrimRight(l, "\r")
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, errors.New("timeout waiting for the handshake line")
	}
	return r, nil
}

// RawEnv is the environment go-plugin gives a v5 AutoMTLS plugin (host
// environment first, then Vault's and go-plugin's variables); overrides
// ("K=V", or "K" alone to drop K) replace entries with the same key.
func RawEnv(certPEM []byte, overrides ...string) []string {
	env := append(os.Environ(), hostEnv(nil)...)
	env = append(env,
		MagicCookieKey+"="+MagicCookieValue,
		"PLUGIN_MIN_PORT=10000", "PLUGIN_MAX_PORT=25000",
		"PLUGIN_PROTOCOL_VERSIONS=5",
		"PLUGIN_CLIENT_CERT="+string(certPEM))
	for _, o := range overrides {
		key := o
		if i := strings.IndexByte(o, '='); i >= 0 {
			key = o[:i]
		}
		out := env[:0]
		for _, e := range env {
			if !strings.HasPrefix(e, key+"=") {
				out = append(out, e)
			}
		}
		env = out
		if strings.Contains(o, "=") {
			env = append(env, o)
		}
	}
	return env
}

// Kill kills a raw launch and reaps it.
func (r *RawLaunch) Kill() {
	_ = r.Cmd.Process.Kill()
	_ = r.Cmd.Wait()
}

// Register does what `vault plugin register` does with a v5 plugin: start
// it, Setup with an empty config and storage/system view that fail every
// call, read PluginVersion, kill it. It returns the reported version.
func Register(path string, stderr io.Writer) (string, error) {
	p, err := StartPlugin(PluginConfig{Path: path, Stderr: stderr})
	if err != nil {
		return "", err
	}
	defer p.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Setup(ctx); err != nil {
		return "", err
	}
	return p.Version(ctx)
}
