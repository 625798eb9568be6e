// SPDX-License-Identifier: MPL-2.0

package vaultsim

// Vault's TLS certificates auth method (auth/cert): roles at certs/<name>
// hold a PEM CA ("certificate"), token_policies, token_ttl, token_max_ttl
// and allowed_common_names; auth/cert/login (body {"name": role}, optional)
// takes the client certificate the caller presented in the TLS handshake,
// verifies that it chains to a role's CA and is meant for client auth, that
// it is within its validity, and that its CN is allowed, and issues a token.
// A certificate no role accepts is Vault's 400 "invalid certificate or no
// client certificate supplied".
//
// It needs the stand-in to listen with TLS itself (Options.TLSCert, the
// -tls-cert / -tls-key flags): the certificate is read from the verified
// connection, never from a header. Simplifications: no CRLs or OCSP, no
// allowed_dns_sans / allowed_email_sans / required_extensions, no
// non-CA (pinned leaf) roles, the method mounted only at cert/.

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"
)

type certRole struct {
	Name        string
	PEM         string
	Pool        *x509.CertPool
	Policies    []string
	TokenTTL    time.Duration
	TokenMaxTTL time.Duration
	AllowedCNs  []string
	DisplayName string
}

var errBadClientCert = errStatus(http.StatusBadRequest, "invalid certificate or no client certificate supplied")

// parseCAPEM reads every CERTIFICATE block of a role's "certificate".
func parseCAPEM(s string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	rest := []byte(s)
	n := 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, errors.New("failed to parse PEM: no certificate found")
	}
	return pool, nil
}

// globMatch is Vault's glob (go-glob): '*' matches any run of characters, dots included.
func globMatch(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return strings.HasSuffix(s, parts[len(parts)-1])
}

// commaList reads a string ("a,b") or array field.
func commaList(v any) []string {
	if s, ok := v.(string); ok {
		var out []string
		for _, x := range strings.Split(s, ",") {
			if x = strings.TrimSpace(x); x != "" {
				out = append(out, x)
			}
		}
		return out
	}
	return asStrings(v)
}

func (s *Server) handleCert(rc *reqCtx, p string) error {
	a := s.auth
	switch {
	case p == "login":
		if rc.op != "update" {
			return errStatus(http.StatusMethodNotAllowed, "unsupported operation")
		}
		return s.certLogin(rc)
	case p == "certs":
		if rc.op != "list" {
			return errStatus(http.StatusMethodNotAllowed, "unsupported operation")
		}
		if err := s.authorize(rc, "list", "auth/cert/certs/", false); err != nil {
			return err
		}
		a.mu.RLock()
		keys := []any{}
		for n := range a.certRoles {
			keys = append(keys, n)
		}
		a.mu.RUnlock()
		sort.Slice(keys, func(i, j int) bool { return keys[i].(string) < keys[j].(string) })
		writeJSON(rc.w, http.StatusOK, envelope(map[string]any{"keys": keys}, nil, nil))
		return nil
	case strings.HasPrefix(p, "certs/"):
		name := strings.ToLower(strings.TrimPrefix(p, "certs/"))
		if name == "" || strings.Contains(name, "/") {
			return errStatus(http.StatusNotFound, "unsupported path")
		}
		if err := s.authorizeOp(rc, rc.op, "auth/cert/"+p, false); err != nil {
			return err
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		switch rc.op {
		case "update":
			r := &certRole{Name: name}
			if old := a.certRoles[name]; old != nil {
				c := *old
				r = &c
			}
			if v, ok := rc.data["certificate"]; ok || r.PEM == "" {
				pool, err := parseCAPEM(asString(v))
				if err != nil {
					return errStatus(http.StatusBadRequest, "failed to parse certificate: "+err.Error())
				}
				r.PEM, r.Pool = asString(v), pool
			}
			if pols, ok := tokenPolicies(rc.data); ok {
				r.Policies = pols
			}
			for k, dst := range map[string]*time.Duration{"token_ttl": &r.TokenTTL, "token_max_ttl": &r.TokenMaxTTL} {
				if v, ok := rc.data[k]; ok {
					ttl, err := asDuration(v)
					if err != nil {
						return errStatus(http.StatusBadRequest, k+": "+err.Error())
					}
					*dst = ttl
				}
			}
			if v, ok := rc.data["allowed_common_names"]; ok {
				r.AllowedCNs = commaList(v)
			}
			if v, ok := rc.data["display_name"]; ok {
				r.DisplayName = asString(v)
			}
			a.certRoles[name] = r
			rc.w.WriteHeader(http.StatusNoContent)
			return nil
		case "read":
			r := a.certRoles[name]
			if r == nil {
				return errStatus(http.StatusNotFound)
			}
			cns := r.AllowedCNs
			if cns == nil {
				cns = []string{}
			}
			writeJSON(rc.w, http.StatusOK, envelope(map[string]any{"certificate": r.PEM,
				"token_policies": r.Policies, "policies": r.Policies,
				"token_ttl": int(r.TokenTTL / time.Second), "token_max_ttl": int(r.TokenMaxTTL / time.Second),
				"allowed_common_names": cns,
				"display_name":         r.DisplayName}, nil, nil))
			return nil
		case "delete":
			delete(a.certRoles, name)
			rc.w.WriteHeader(http.StatusNoContent)
			return nil
		}
		return errStatus(http.StatusMethodNotAllowed, "unsupported operation")
	}
	return errStatus(http.StatusNotFound, "unsupported path")
}

// certLogin matches the connection's client certificate against the named
// role, or every role (sorted by name, the first that accepts it wins).
func (s *Server) certLogin(rc *reqCtx) error {
	a := s.auth
	if rc.r.TLS == nil || len(rc.r.TLS.PeerCertificates) == 0 {
		return errBadClientCert
	}
	leaf := rc.r.TLS.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range rc.r.TLS.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	name := strings.ToLower(asString(rc.data["name"]))
	a.mu.RLock()
	var roles []certRole
	for n, r := range a.certRoles {
		if name == "" || n == name {
			roles = append(roles, *r)
		}
	}
	a.mu.RUnlock()
	sort.Slice(roles, func(i, j int) bool { return roles[i].Name < roles[j].Name })
	for _, r := range roles {
		_, err := leaf.Verify(x509.VerifyOptions{Roots: r.Pool, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CurrentTime: time.Now()})
		if err != nil {
			continue
		}
		allowed := len(r.AllowedCNs) == 0
		for _, pat := range r.AllowedCNs {
			allowed = allowed || globMatch(pat, leaf.Subject.CommonName)
		}
		if !allowed {
			continue
		}
		disp := r.DisplayName
		if disp == "" {
			disp = r.Name
		}
		t := a.issue(tokenParams{Policies: r.Policies, TTL: r.TokenTTL, MaxTTL: r.TokenMaxTTL, Renewable: true,
			DisplayName: "cert-" + disp, Path: "auth/cert/login",
			Meta: map[string]string{"cert_name": r.Name, "common_name": leaf.Subject.CommonName,
				"serial_number": leaf.SerialNumber.String()}})
		writeJSON(rc.w, http.StatusOK, s.authEnvelope(t))
		return nil
	}
	return errBadClientCert
}

// serverTLS is the listener's TLS config: the server certificate, and a
// request for a client certificate. Like Vault's listener (where
// tls_require_and_verify_client_cert is false), the handshake asks for one
// but does not verify it: the cert auth method does, against its roles.
// clientCA set: the handshake also verifies any certificate given against
// it (Go's VerifyClientCertIfGiven), as a stricter front would.
func serverTLS(certFile, keyFile, clientCA string) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequestClientCert,
		MinVersion: tls.VersionTLS12}
	if clientCA != "" {
		b, err := os.ReadFile(clientCA)
		if err != nil {
			return nil, err
		}
		pool, err := parseCAPEM(string(b))
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.VerifyClientCertIfGiven
	}
	return cfg, nil
}
