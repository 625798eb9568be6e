// SPDX-License-Identifier: MPL-2.0

package vaultsim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// saPEM is a PKCS#8 PEM of a key generated at test time (never a real credential).
func saPEM(t *testing.T, key any) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

func saRSA(t *testing.T, bits int) string {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return saPEM(t, k)
}

// saFile is a key file as `gcloud iam service-accounts keys create` writes it (indented).
func saFile(t *testing.T, fields map[string]any) string {
	t.Helper()
	b, err := json.MarshalIndent(fields, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b) + "\n"
}

func saFields(pemKey, kid string) map[string]any {
	return map[string]any{
		"type": "service_account", "project_id": "byok-sim-project", "private_key_id": kid,
		"private_key": pemKey, "client_email": "agent@byok-sim-project.iam.gserviceaccount.com",
		"client_id": "104242424242424242424", "auth_uri": "https://accounts.google.com/o/oauth2/auth",
		"token_uri":                   "https://oauth2.googleapis.com/token",
		"auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
		"client_x509_cert_url":        "https://www.googleapis.com/robot/v1/metadata/x509/agent",
		"universe_domain":             "googleapis.com",
	}
}

func copyFields(m map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

// pemCanaries: lines of the PEM's base64 (random bytes), the key's secret part.
func pemCanaries(p string) []string {
	var out []string
	for _, l := range strings.Split(p, "\n") {
		if len(l) == 64 {
			out = append(out, l)
		}
	}
	return out[2:6]
}

// TestKeyVertexServiceAccountHTTP: Google service-account key files as Vertex
// key values through Vault's HTTP API. A key file (indented, with newlines) is
// stored compacted (one line, the same JSON), served by creds, masked to its
// client_email and validated as a service-account key; rotate takes one too.
// Each malformed one (write and rotate) is a 400 naming key_value (or
// metadata for a bad region) that quotes none of it, the private_key_id
// included, stores nothing and leaves no trace in the plugin's log; a key
// file for a provider that is not Vertex is refused as before. Express-mode
// API keys keep working.
func TestKeyVertexServiceAccountHTTP(t *testing.T) {
	s := newSim(t)
	root := s.RootToken
	const path = "byok/tenants/acme/keys/vertex/production"
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	kid := hex.EncodeToString(b)
	pemKey := saRSA(t, 2048)
	fields := saFields(pemKey, kid)
	file := saFile(t, fields)
	if len(file) > 8192 || len(file) < 2000 {
		t.Fatalf("test key file is %d bytes", len(file))
	}
	canaries := append(pemCanaries(pemKey), kid)

	m := s.MustCall(t, 200, root, "PUT", path, map[string]any{"key_value": file,
		"metadata": map[string]any{"region": "europe-west4"}})
	out, _ := json.Marshal(m)
	noCanaries(t, "write response", out, canaries)
	d := Data(s.MustCall(t, 200, root, "GET", path, nil))
	v, _ := d["validation"].(map[string]any)
	if jstr(d, "masked_value") != "sa:agent@byok-sim-project.iam.gserviceaccount.com" ||
		v["is_valid"] != true || jnum(v, "strength_score") != 100 || len(v["issues"].([]any)) != 0 ||
		!strings.Contains(fmt.Sprint(v["recommendations"]), "service-account keys do not expire") {
		t.Errorf("SA key read: masked %q validation %v", jstr(d, "masked_value"), v)
	}
	out, _ = json.Marshal(d)
	noCanaries(t, "key read", out, canaries)
	c := Data(s.MustCall(t, 200, root, "GET", "byok/tenants/acme/creds/vertex", nil))
	stored := jstr(c, "api_key")
	if strings.ContainsAny(stored, "\n\r\t") || len(stored) >= len(file) {
		t.Errorf("creds: the key is not compacted (%d bytes, file %d)", len(stored), len(file))
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(stored), &got); err != nil || !reflect.DeepEqual(got, fields) {
		t.Errorf("creds: the compacted key is not the same JSON (%v)", err)
	}

	// rotate takes a key file too (a new key of the same account).
	_, _ = rand.Read(b)
	kid2 := hex.EncodeToString(b)
	pem2 := saRSA(t, 2048)
	f2 := saFields(pem2, kid2)
	canaries = append(append(canaries, pemCanaries(pem2)...), kid2)
	s.MustCall(t, 200, root, "PUT", path+"/rotate", map[string]any{"key_value": saFile(t, f2)})
	c = Data(s.MustCall(t, 200, root, "GET", "byok/tenants/acme/creds/vertex", nil))
	if err := json.Unmarshal([]byte(jstr(c, "api_key")), &got); err != nil || !reflect.DeepEqual(got, f2) {
		t.Errorf("creds after rotate: not the new key (%v)", err)
	}

	with := func(k string, val any) string {
		f := copyFields(fields)
		if val == nil {
			delete(f, k)
		} else {
			f[k] = val
		}
		return saFile(t, f)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	before := s.RawStorage()
	bad := []struct {
		path  string
		body  map[string]any
		field string
	}{
		{path, map[string]any{"key_value": with("type", "authorized_user")}, "key_value"},
		{path, map[string]any{"key_value": with("project_id", nil)}, "key_value"},
		{path, map[string]any{"key_value": with("project_id", "Not_A_Project")}, "key_value"},
		{path, map[string]any{"key_value": with("client_email", "nobody")}, "key_value"},
		{path, map[string]any{"key_value": with("private_key_id", kid+"\"x")}, "key_value"},
		{path, map[string]any{"key_value": with("private_key", nil)}, "key_value"},
		{path, map[string]any{"key_value": with("private_key", pemKey[:len(pemKey)/2])}, "key_value"},
		{path, map[string]any{"key_value": with("private_key", saPEM(t, ec))}, "key_value"},
		{path, map[string]any{"key_value": with("private_key", saRSA(t, 1024))}, "key_value"},
		{path, map[string]any{"key_value": file[:len(file)/2]}, "key_value"},
		{path, map[string]any{"key_value": with("padding", strings.Repeat("x", 8192))}, "key_value"},
		{path + "/rotate", map[string]any{"key_value": with("type", nil)}, "key_value"},
		{path, map[string]any{"key_value": file, "metadata": map[string]any{"region": "Europe West"}}, "metadata"},
		// A key file for any other provider: the usual rule (it would go into a header).
		{"byok/tenants/acme/keys/openai/production", map[string]any{"key_value": file}, "key_value"},
		{"byok/tenants/acme/keys/gemini/production", map[string]any{"key_value": file}, "key_value"},
	}
	for i, c := range bad {
		code, m := s.Call(t, root, "PUT", c.path, c.body)
		if code != 400 || !strings.Contains(Errors(m), "'"+c.field+"'") {
			t.Errorf("case %d: %d %v, want 400 naming %s", i, code, m, c.field)
		}
		out, _ := json.Marshal(m)
		noCanaries(t, "error response", out, canaries)
		if strings.Contains(string(out), "byok-sim-project") || strings.Contains(string(out), "agent@") {
			t.Errorf("case %d: the error quotes the key file", i)
		}
	}
	if after := s.RawStorage(); !reflect.DeepEqual(before, after) {
		t.Errorf("a refused service-account key changed storage")
	}

	// An express-mode API key still goes in, with the usual mask.
	s.MustCall(t, 200, root, "PUT", path, map[string]any{"key_value": "AIzaSy" + strings.Repeat("Qx7mP2vL9kR4", 3)})
	if d = Data(s.MustCall(t, 200, root, "GET", path, nil)); jstr(d, "masked_value") != "AIzaSyQ...kR4" {
		t.Errorf("API key after SA keys: masked %q", jstr(d, "masked_value"))
	}
	noCanaries(t, "plugin log", []byte(s.PluginLog()), canaries)
}
