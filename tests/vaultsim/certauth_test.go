// SPDX-License-Identifier: MPL-2.0

package vaultsim

// The TLS certificates auth method (certauth.go) over the stand-in's own
// TLS listener: a certificate from the role's CA logs in; one from another
// CA, an expired one, a server-only one, a CN not allowed, none at all and
// one on a plain-HTTP listener are refused with Vault's 400.

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  string
}

func newTestCA(t *testing.T, cn string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{cert: c, key: key, pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
}

// issue signs a leaf: cn, the usage, and a validity ending at notAfter.
func (ca *testCA) issue(t *testing.T, cn string, usage x509.ExtKeyUsage, notAfter time.Time) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func writePair(t *testing.T, dir, name string, c tls.Certificate) (string, string) {
	t.Helper()
	kd, err := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	cf, kf := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(cf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kf, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cf, kf
}

// certSim is a stand-in on 127.0.0.1 with TLS, cert auth enabled and a
// role "nodes" trusting ca for CNs node-*; it returns the server CA.
func certSim(t *testing.T, ca *testCA, extra ...Option) (*Sim, *testCA) {
	t.Helper()
	srvCA := newTestCA(t, "server-ca")
	cf, kf := writePair(t, t.TempDir(), "server", srvCA.issue(t, "vault", x509.ExtKeyUsageServerAuth, time.Now().Add(time.Hour)))
	s := newSim(t, append([]Option{WithListen("127.0.0.1:0"), func(o *Options) { o.TLSCert, o.TLSKey = cf, kf }}, extra...)...)
	s.EnableAuth(t, "cert")
	s.PutPolicy(t, "node", `path "byok/config" { capabilities = ["read"] }`)
	s.MustCall(t, 204, s.RootToken, "POST", "auth/cert/certs/nodes", map[string]any{"certificate": ca.pem,
		"token_policies": "node", "token_ttl": "1h", "allowed_common_names": []any{"node-*"}})
	return s, srvCA
}

// certLogin posts body to auth/cert/login presenting c (nil: no certificate).
func certLogin(t *testing.T, s *Sim, srvCA *testCA, c *tls.Certificate, body string) (int, map[string]any, error) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(srvCA.cert)
	cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if c != nil {
		// Always sent, even when the server's CA list does not name its
		// issuer (Go's client would then send none).
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return c, nil }
	}
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
	defer cl.CloseIdleConnections()
	resp, err := cl.Post("https://"+s.Server.Addr+"/v1/auth/cert/login", "application/json", bytes.NewBufferString(body))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m, nil
}

func TestCertAuth(t *testing.T) {
	ca := newTestCA(t, "node-ca")
	s, srvCA := certSim(t, ca)
	good := ca.issue(t, "node-1.example", x509.ExtKeyUsageClientAuth, time.Now().Add(time.Hour))
	for _, body := range []string{`{"name":"nodes"}`, `{}`, ``} {
		code, m, err := certLogin(t, s, srvCA, &good, body)
		if err != nil || code != 200 {
			t.Fatalf("login %q: %d %v %v", body, code, err, m)
		}
		a := authOf(t, m)
		tok, _ := a["client_token"].(string)
		if a["lease_duration"] != float64(3600) || a["renewable"] != true {
			t.Errorf("auth: %v", a)
		}
		md, _ := a["metadata"].(map[string]any)
		if md != nil && md["common_name"] != "node-1.example" {
			t.Errorf("metadata: %v", md)
		}
		s.MustCall(t, 200, tok, "GET", "byok/config", nil)
		s.MustCall(t, 403, tok, "PUT", "byok/config", map[string]any{"max_key_versions": 5})
	}
	refused := func(what string, c *tls.Certificate, body string) {
		t.Helper()
		code, m, err := certLogin(t, s, srvCA, c, body)
		if err != nil || code != 400 || Errors(m) != "invalid certificate or no client certificate supplied" {
			t.Errorf("%s: %d %v %v, want 400", what, code, err, m)
		}
	}
	other := newTestCA(t, "other-ca").issue(t, "node-1.example", x509.ExtKeyUsageClientAuth, time.Now().Add(time.Hour))
	refused("another CA", &other, `{"name":"nodes"}`)
	refused("another CA, no name", &other, `{}`)
	expired := ca.issue(t, "node-1.example", x509.ExtKeyUsageClientAuth, time.Now().Add(-time.Minute))
	refused("expired", &expired, `{}`)
	serverOnly := ca.issue(t, "node-1.example", x509.ExtKeyUsageServerAuth, time.Now().Add(time.Hour))
	refused("server auth only", &serverOnly, `{}`)
	wrongCN := ca.issue(t, "laptop-1", x509.ExtKeyUsageClientAuth, time.Now().Add(time.Hour))
	refused("CN not allowed", &wrongCN, `{}`)
	refused("no certificate", nil, `{}`)
	refused("unknown role", &good, `{"name":"other"}`)

	// Read back, a bad PEM, delete.
	d := Data(s.MustCall(t, 200, s.RootToken, "GET", "auth/cert/certs/nodes", nil))
	if d["certificate"] != ca.pem || d["token_ttl"] != float64(3600) {
		t.Errorf("role read: %v", d)
	}
	if cns, _ := d["allowed_common_names"].([]any); len(cns) != 1 || cns[0] != "node-*" {
		t.Errorf("allowed_common_names: %v", d["allowed_common_names"])
	}
	m := s.MustCall(t, 400, s.RootToken, "POST", "auth/cert/certs/bad", map[string]any{"certificate": "not a pem"})
	if !strings.Contains(Errors(m), "failed to parse") {
		t.Errorf("bad pem: %v", m)
	}
	s.MustCall(t, 200, s.RootToken, "LIST", "auth/cert/certs", nil)
	s.MustCall(t, 204, s.RootToken, "DELETE", "auth/cert/certs/nodes", nil)
	s.MustCall(t, 404, s.RootToken, "GET", "auth/cert/certs/nodes", nil)
	refused("role deleted", &good, `{}`)
}

// With -tls-client-ca the handshake itself refuses a certificate from another CA.
func TestCertAuthClientCA(t *testing.T) {
	ca := newTestCA(t, "node-ca")
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, []byte(ca.pem), 0o644); err != nil {
		t.Fatal(err)
	}
	s, srvCA := certSim(t, ca, func(o *Options) { o.TLSClientCA = caFile })
	good := ca.issue(t, "node-2", x509.ExtKeyUsageClientAuth, time.Now().Add(time.Hour))
	if code, m, err := certLogin(t, s, srvCA, &good, `{}`); err != nil || code != 200 {
		t.Fatalf("login: %d %v %v", code, err, m)
	}
	other := newTestCA(t, "other-ca").issue(t, "node-2", x509.ExtKeyUsageClientAuth, time.Now().Add(time.Hour))
	if code, _, err := certLogin(t, s, srvCA, &other, `{}`); err == nil {
		t.Errorf("another CA's certificate passed the handshake: %d", code)
	}
}

// On a plain-HTTP listener there is no client certificate: a login is refused.
func TestCertAuthNeedsTLS(t *testing.T) {
	s := newSim(t)
	s.EnableAuth(t, "cert")
	s.MustCall(t, 204, s.RootToken, "POST", "auth/cert/certs/nodes",
		map[string]any{"certificate": newTestCA(t, "ca").pem, "token_policies": []any{"default"}})
	m := s.MustCall(t, 400, "", "POST", "auth/cert/login", map[string]any{"name": "nodes"})
	if Errors(m) != "invalid certificate or no client certificate supplied" {
		t.Errorf("errors: %v", m)
	}
}
