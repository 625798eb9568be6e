// SPDX-License-Identifier: MPL-2.0

// Command vaultsim runs the Vault stand-in: it launches the plugin as Vault
// does, mounts it and serves a subset of Vault's HTTP API. See
// tests/vaultsim/README.md.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	hclog "github.com/hashicorp/go-hclog"

	"byok/vaultsim"
)

func main() {
	var (
		cfgFile   = flag.String("config", "", "JSON config file (policies, entities, tokens, roles; flags override its settings)")
		plugin    = flag.String("plugin", "", "plugin binary")
		mount     = flag.String("mount", "", "mount path (default byok)")
		namespace = flag.String("namespace", "", "put everything in this namespace (requests must name it: X-Vault-Namespace or a path prefix)")
		listen    = flag.String("listen", "", "listen address: unix:/path, /path or 127.0.0.1:port (default 127.0.0.1:8200)")
		storage   = flag.String("storage", "", "persist storage to this JSON file (default: in memory)")
		root      = flag.String("root-token", "", "root token (default: random, printed)")
		logFile   = flag.String("log", "", "append the plugin's stderr to this file")
		ready     = flag.String("ready-file", "", "write the listen address to this file once serving")
		version   = flag.String("plugin-version", "", "plugin_version in Setup's config")
		hostDebug = flag.Bool("debug", false, "log go-plugin's host-side messages to stderr")
		tlsCert   = flag.String("tls-cert", "", "serve HTTPS with this certificate (PEM; with -tls-key); asks clients for a certificate, as Vault does, for the cert auth method")
		tlsKey    = flag.String("tls-key", "", "the private key of -tls-cert (PEM)")
		tlsCA     = flag.String("tls-client-ca", "", "with -tls-cert: also verify a client certificate given in the handshake against this CA file")
		register  = flag.Bool("register", false, "registration mode: Setup with no storage, print PluginVersion, exit (like vault plugin register)")
	)
	flag.Parse()
	cfg := &vaultsim.FileConfig{}
	if *cfgFile != "" {
		var err error
		if cfg, err = vaultsim.LoadConfig(*cfgFile); err != nil {
			fatal(err)
		}
	}
	pick := func(flagV, cfgV, def string) string {
		if flagV != "" {
			return flagV
		}
		if cfgV != "" {
			return cfgV
		}
		return def
	}
	pluginPath := pick(*plugin, cfg.Resolve(cfg.Plugin), "")
	if pluginPath == "" {
		fatal(fmt.Errorf("-plugin (or \"plugin\" in -config) is required"))
	}
	if *register {
		v, err := vaultsim.Register(pluginPath, os.Stderr)
		if err != nil {
			fatal(err)
		}
		fmt.Printf("registered %s version=%q\n", pluginPath, v)
		return
	}
	var logW io.Writer
	if lf := pick(*logFile, cfg.Resolve(cfg.Log), ""); lf != "" {
		f, err := os.OpenFile(lf, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			fatal(err)
		}
		defer f.Close()
		logW = f
	}
	opts := []vaultsim.Option{
		vaultsim.WithPlugin(pluginPath),
		vaultsim.WithMount(pick(*mount, cfg.Mount, "byok")),
		vaultsim.WithNamespace(pick(*namespace, cfg.Namespace, "")),
		vaultsim.WithListen(pick(*listen, cfg.Resolve(cfg.Listen), "127.0.0.1:8200")),
		vaultsim.WithStorageFile(pick(*storage, cfg.Resolve(cfg.Storage), "")),
		vaultsim.WithRootToken(pick(*root, cfg.RootToken, "")),
		vaultsim.WithLogWriter(logW),
		vaultsim.WithPluginVersion(pick(*version, cfg.PluginVersion, "")),
		vaultsim.WithMountOptions(cfg.MountOptions),
		vaultsim.WithConfig(cfg),
		func(o *vaultsim.Options) { o.ReadyFile = pick(*ready, cfg.Resolve(cfg.ReadyFile), "") },
		func(o *vaultsim.Options) { o.TLSCert, o.TLSKey, o.TLSClientCA = *tlsCert, *tlsKey, *tlsCA },
	}
	if *hostDebug {
		opts = append(opts, func(o *vaultsim.Options) {
			o.HostLogger = hclog.New(&hclog.LoggerOptions{Name: "vaultsim", Level: hclog.Debug, Output: os.Stderr})
		})
	}
	if (*tlsCert == "") != (*tlsKey == "") || (*tlsCA != "" && *tlsCert == "") {
		fatal(fmt.Errorf("-tls-cert and -tls-key go together; -tls-client-ca needs them"))
	}
	srv, err := vaultsim.New(opts...)
	if err != nil {
		fatal(err)
	}
	fmt.Fprintf(os.Stderr, "vaultsim: listening on %s, mount %s/, root token %s\n", srv.Addr, srv.Mount(), srv.RootToken())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	fmt.Fprintln(os.Stderr, "vaultsim: shutting down")
	srv.Close()
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "vaultsim: %v\n", err)
	os.Exit(1)
}
