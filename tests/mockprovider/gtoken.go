// SPDX-License-Identifier: MPL-2.0

package main

// Google's OAuth 2.0 token endpoint for service accounts (the JWT bearer
// grant, https://developers.google.com/identity/protocols/oauth2/service-account#httprest),
// at POST /token, and the bearer tokens it issues, which the Vertex handlers
// take on the regional path .../projects/{project}/locations/{region}/...
//
// The test service accounts come from -google-accounts FILE (re-read when it
// changes): {"accounts": [{"client_email", "private_key_id", "project_id",
// "public_key": PEM}]}, written by the e2e script from a key it generated at
// test time. The mock checks the JWT as Google does: RS256 over
// header.claims with the account's public key (by kid), iss == sub ==
// client_email, aud == the URL posted to, scope cloud-platform, iat within
// five minutes of now, exp == iat + at most one hour.
//
// Control: POST /_mock/google {"fail": status, "fail_count": n (0: every
// call), "delay_ms": n, "expires_in": s} (DELETE resets); GET /_mock/google
// {"token_calls", "ok_calls", "tokens": [issued tokens]} for tests' counts
// and canary scans.

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

type gAccount struct {
	Email     string `json:"client_email"`
	KeyID     string `json:"private_key_id"`
	Project   string `json:"project_id"`
	PublicKey string `json:"public_key"`
}

type gIssued struct {
	email, project string
	expires        time.Time
}

type gControl struct {
	Fail      int `json:"fail"`
	FailCount int `json:"fail_count"`
	DelayMS   int `json:"delay_ms"`
	ExpiresIn int `json:"expires_in"`
}

type gState struct {
	mu      sync.Mutex
	ctl     gControl
	failed  int
	calls   int
	okCalls int
	tokens  map[string]gIssued
	order   []string
}

var google = &gState{tokens: map[string]gIssued{}}

const gScope = "https://www.googleapis.com/auth/cloud-platform"

func (m *mock) googleAccounts() map[string]gAccount {
	out := map[string]gAccount{}
	if m.o.googleAccounts == "" {
		return out
	}
	raw, err := os.ReadFile(m.o.googleAccounts)
	if err != nil {
		return out
	}
	var f struct {
		Accounts []gAccount `json:"accounts"`
	}
	if json.Unmarshal(raw, &f) != nil {
		return out
	}
	for _, a := range f.Accounts {
		out[a.KeyID] = a
	}
	return out
}

func gFail(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

// googleCheckJWT returns the account the assertion is from, or a reason.
func googleCheckJWT(accounts map[string]gAccount, jwt, aud string) (gAccount, string) {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return gAccount{}, "not a JWT"
	}
	dec := base64.RawURLEncoding
	hb, err1 := dec.DecodeString(parts[0])
	cb, err2 := dec.DecodeString(parts[1])
	sig, err3 := dec.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil {
		return gAccount{}, "bad base64url"
	}
	var hdr map[string]interface{}
	var cl map[string]interface{}
	if json.Unmarshal(hb, &hdr) != nil || json.Unmarshal(cb, &cl) != nil {
		return gAccount{}, "bad JSON"
	}
	if hdr["alg"] != "RS256" || hdr["typ"] != "JWT" {
		return gAccount{}, "header alg/typ"
	}
	kid, _ := hdr["kid"].(string)
	a, ok := accounts[kid]
	if !ok {
		return gAccount{}, "unknown kid"
	}
	blk, _ := pem.Decode([]byte(a.PublicKey))
	if blk == nil {
		return gAccount{}, "account public key"
	}
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	rk, ok := pub.(*rsa.PublicKey)
	if err != nil || !ok {
		return gAccount{}, "account public key"
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if rsa.VerifyPKCS1v15(rk, crypto.SHA256, sum[:], sig) != nil {
		return gAccount{}, "signature"
	}
	iat, _ := cl["iat"].(float64)
	exp, _ := cl["exp"].(float64)
	now := float64(time.Now().Unix())
	switch {
	case cl["iss"] != a.Email || cl["sub"] != a.Email:
		return gAccount{}, "iss/sub"
	case cl["aud"] != aud:
		return gAccount{}, "aud"
	case cl["scope"] != gScope:
		return gAccount{}, "scope"
	case iat < now-300 || iat > now+300:
		return gAccount{}, "iat"
	case exp <= iat || exp > iat+3600:
		return gAccount{}, "exp"
	}
	return a, ""
}

// googleToken serves POST /token.
func (m *mock) googleToken(listener string, w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	m.mu.Lock()
	m.seq++
	seq := m.seq
	m.mu.Unlock()
	// The body (the signed assertion) is not recorded: only that a call came.
	rec := &record{Seq: seq, TS: time.Now().UTC().Format(time.RFC3339Nano), Listener: listener,
		Method: r.Method, Path: r.URL.Path, BodyLen: len(raw), Remote: r.RemoteAddr,
		Style: "google", Kind: "token",
		Headers: map[string][]string{"Content-Type": r.Header.Values("Content-Type")}}
	m.addRecord(rec)
	status := 200
	defer func() { m.finishRecord(rec, status) }()

	google.mu.Lock()
	google.calls++
	ctl := google.ctl
	fail := ctl.Fail != 0 && (ctl.FailCount == 0 || google.failed < ctl.FailCount)
	if fail {
		google.failed++
	}
	google.mu.Unlock()
	if ctl.DelayMS > 0 {
		time.Sleep(time.Duration(ctl.DelayMS) * time.Millisecond)
	}
	if fail {
		status = ctl.Fail
		rec.Auth = "scripted_failure"
		gFail(w, status, "invalid_grant", "Invalid JWT Signature.")
		return
	}
	if r.Method != http.MethodPost || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		status = 400
		rec.Auth = "bad_request"
		gFail(w, 400, "invalid_request", "POST a form")
		return
	}
	form, err := url.ParseQuery(string(raw))
	if err != nil || form.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		status = 400
		rec.Auth = "bad_grant_type"
		gFail(w, 400, "unsupported_grant_type", "Invalid grant_type")
		return
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	a, why := googleCheckJWT(m.googleAccounts(), form.Get("assertion"), scheme+"://"+r.Host+r.URL.Path)
	if why != "" {
		status = 400
		rec.Auth = "bad_jwt: " + why
		gFail(w, 400, "invalid_grant", "Invalid JWT: "+why)
		return
	}
	rec.Auth = "ok"
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	tok := "ya29.mock-canary-" + hex.EncodeToString(b)
	exp := ctl.ExpiresIn
	if exp <= 0 {
		exp = 3599
	}
	google.mu.Lock()
	google.okCalls++
	google.tokens[tok] = gIssued{a.Email, a.Project, time.Now().Add(time.Duration(exp) * time.Second)}
	google.order = append(google.order, tok)
	google.mu.Unlock()
	writeJSON(w, 200, map[string]interface{}{"access_token": tok, "expires_in": exp, "token_type": "Bearer"})
}

// googleBearer checks a Vertex call's bearer token: "ok", "bad_key" (not
// issued, or expired) or "bad_path" (not the regional path of the token's
// project).
func googleBearer(r *http.Request, tok string) string {
	google.mu.Lock()
	is, ok := google.tokens[tok]
	google.mu.Unlock()
	if !ok || time.Now().After(is.expires) {
		return "bad_key"
	}
	p := r.URL.Path
	i := strings.Index(p, "/projects/")
	if i < 0 {
		return "bad_path"
	}
	seg := strings.Split(p[i+1:], "/")
	// projects/{project}/locations/{region}/publishers/{google|anthropic}/models/{model}:method
	if len(seg) != 8 || seg[1] != is.project || seg[2] != "locations" || seg[3] == "" ||
		seg[4] != "publishers" || (seg[5] != "google" && seg[5] != "anthropic") || seg[6] != "models" {
		return "bad_path"
	}
	return "ok"
}

func (m *mock) googleControl(w http.ResponseWriter, r *http.Request) {
	google.mu.Lock()
	defer google.mu.Unlock()
	switch r.Method {
	case http.MethodPost:
		var c gControl
		if err := json.NewDecoder(r.Body).Decode(&c); err != nil {
			writeJSON(w, 400, map[string]string{"error": "bad control JSON"})
			return
		}
		google.ctl = c
		google.failed = 0
		w.WriteHeader(204)
	case http.MethodDelete:
		google.ctl = gControl{}
		google.failed = 0
		w.WriteHeader(204)
	default:
		writeJSON(w, 200, map[string]interface{}{"token_calls": google.calls,
			"ok_calls": google.okCalls, "tokens": append([]string{}, google.order...)})
	}
}
