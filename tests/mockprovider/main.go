// SPDX-License-Identifier: MPL-2.0

// Command mockprovider is a scripted AI-provider upstream for byok's end-to-end
// tests and benchmarks. It speaks enough of OpenAI (chat completions,
// embeddings, models), Azure OpenAI (deployments), Anthropic (messages),
// Cohere (v2 chat, embed), Vertex AI (generateContent, express mode) and
// Bedrock (Converse, its binary event stream) to check what byok-agent sends: it verifies each style's auth header against
// the expected keys, records every request, and replies according to a
// scenario (normal, streamed, slow, 429, 5xx, stalled, cut, malformed,
// oversized) chosen per request by the model name or by /_mock/scenario.
//
// Replies are deterministic so tests can check usage and cost:
//
//	prompt_tokens     = number of whitespace-separated words in the request's
//	                    text (message contents, Anthropic "system", embedding input)
//	completion_tokens = max_tokens (or max_completion_tokens) when given, else 16
//	reply text        = "w0 w1 ... w<completion_tokens-1>" (one word per stream chunk)
//
// It listens on loopback only (HTTPS with a test CA it creates, and plain HTTP)
// and uses the Go standard library only.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

type options struct {
	httpsListen      string
	httpListen       string
	certDir          string
	portsFile        string
	keysFile         string
	keys             string
	recordFile       string
	slow             time.Duration
	streamInterval   time.Duration
	slowStream       time.Duration
	stallMax         time.Duration
	oversizedBytes   int64
	defaultWords     int
	maxWords         int
	retryAfter       int
	maxRecordedBody  int
	keepRecords      int
	maxRequestBody   int64
	disableHTTP2     bool
	logFile          string
	defaultScenario  string
	anthropicVersion string
	googleAccounts   string
}

func parseFlags() *options {
	o := &options{}
	flag.StringVar(&o.httpsListen, "https", "127.0.0.1:0", "HTTPS listen address (loopback only); empty disables")
	flag.StringVar(&o.httpListen, "http", "127.0.0.1:0", "plain HTTP listen address (loopback only); empty disables")
	flag.StringVar(&o.certDir, "cert-dir", "", "directory for ca.pem, server.pem, server.key (created when missing)")
	flag.StringVar(&o.portsFile, "ports-file", "", "write {\"https\":N,\"http\":N} here once listening")
	flag.StringVar(&o.keysFile, "keys-file", "", "accepted API keys, one per line (re-read when it changes)")
	flag.StringVar(&o.keys, "keys", "", "accepted API keys, comma separated (env MOCK_KEYS is also read)")
	flag.StringVar(&o.recordFile, "record", "", "append every request as one JSON line to this file")
	flag.DurationVar(&o.slow, "slow", time.Second, "delay of the 'slow' scenario")
	flag.DurationVar(&o.streamInterval, "stream-interval", 0, "pause between stream chunks (normal streams)")
	flag.DurationVar(&o.slowStream, "slow-stream-interval", 20*time.Millisecond, "pause between chunks of the 'slowstream' scenario")
	flag.DurationVar(&o.stallMax, "stall-max", 5*time.Minute, "longest a 'stall' request is held before the mock gives up")
	flag.Int64Var(&o.oversizedBytes, "oversized-bytes", 32<<20, "body size of the 'oversized' scenario")
	flag.IntVar(&o.defaultWords, "words", 16, "completion tokens when the request gives no max_tokens")
	flag.IntVar(&o.maxWords, "max-words", 100000, "cap on completion tokens")
	flag.IntVar(&o.retryAfter, "retry-after", 1, "Retry-After seconds of the '429' scenario")
	flag.IntVar(&o.maxRecordedBody, "max-recorded-body", 1<<20, "bytes of each request body kept in the record")
	flag.IntVar(&o.keepRecords, "keep", 20000, "requests kept in memory for /_mock/requests (0: none, for benchmarks)")
	flag.Int64Var(&o.maxRequestBody, "max-request-body", 64<<20, "request bodies larger than this get a 413")
	flag.BoolVar(&o.disableHTTP2, "no-http2", false, "offer HTTP/1.1 only over TLS")
	flag.StringVar(&o.logFile, "log", "", "log file (default stderr)")
	flag.StringVar(&o.defaultScenario, "scenario", "normal", "scenario when neither model nor /_mock/scenario chooses one")
	flag.StringVar(&o.anthropicVersion, "anthropic-version", "", "required anthropic-version value (empty: any non-empty value)")
	flag.StringVar(&o.googleAccounts, "google-accounts", "", "test service accounts for POST /token (JSON, see gtoken.go; re-read on each call)")
	flag.Parse()
	return o
}

// loopbackOnly refuses any listen address that is not a loopback IP: the mock
// must never be reachable from outside the machine.
func loopbackOnly(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("listen address %q is not a loopback IP", addr)
	}
	return nil
}

func main() {
	o := parseFlags()
	if o.logFile != "" {
		f, err := os.OpenFile(o.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			log.Fatalf("mockprovider: %v", err)
		}
		log.SetOutput(f)
	}
	log.SetPrefix("mockprovider: ")
	if _, ok := scenarios[o.defaultScenario]; !ok {
		log.Fatalf("unknown -scenario %q", o.defaultScenario)
	}
	m, err := newMock(o)
	if err != nil {
		log.Fatal(err)
	}

	ports := map[string]int{}
	var servers []*http.Server
	serve := func(name, addr string, tlsConf *tls.Config) {
		if addr == "" {
			return
		}
		if err := loopbackOnly(addr); err != nil {
			log.Fatal(err)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			log.Fatal(err)
		}
		ports[name] = ln.Addr().(*net.TCPAddr).Port
		srv := &http.Server{
			Handler:           m.handler(name),
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       120 * time.Second,
			ErrorLog:          log.Default(),
		}
		if tlsConf != nil {
			srv.TLSConfig = tlsConf
			if o.disableHTTP2 {
				srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
			}
			ln = tls.NewListener(ln, tlsConf)
		}
		servers = append(servers, srv)
		go func() {
			if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
				log.Fatal(err)
			}
		}()
	}

	if o.httpsListen != "" {
		if o.certDir == "" {
			log.Fatal("-cert-dir is required for the HTTPS listener")
		}
		tlsConf, err := loadOrMakeCerts(o.certDir)
		if err != nil {
			log.Fatal(err)
		}
		if !o.disableHTTP2 {
			tlsConf.NextProtos = []string{"h2", "http/1.1"}
		} else {
			tlsConf.NextProtos = []string{"http/1.1"}
		}
		serve("https", o.httpsListen, tlsConf)
	}
	serve("http", o.httpListen, nil)

	if o.portsFile != "" {
		b, _ := json.Marshal(ports)
		tmp := o.portsFile + ".tmp"
		if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
			log.Fatal(err)
		}
		if err := os.Rename(tmp, o.portsFile); err != nil {
			log.Fatal(err)
		}
	}
	log.Printf("listening %v (cert dir %s)", ports, filepath.Clean(o.certDir))

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, s := range servers {
		_ = s.Shutdown(ctx)
	}
	m.close()
}
