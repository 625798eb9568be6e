// SPDX-License-Identifier: MPL-2.0

package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"sort"
	"strings"
	"time"
)

// AWS Signature Version 4, checked as AWS checks it, for Bedrock requests
// signed with IAM credentials. Written from AWS's documentation ("Create a
// signed AWS API request", "Elements of an AWS API request signature" in the
// IAM User Guide), independently of the agent's agent/sigv4.c: the two must
// agree for a call to pass. The accepted keys (-keys, MOCK_KEYS,
// -keys-file) hold IAM credentials as the tenant stores them,
// "<access key id>:<secret access key>[:<session token>]"; the secret never
// leaves this process: it is neither logged nor recorded, and the 403s say
// only what AWS says.

// sigv4MaxSkew is how far X-Amz-Date may be from the mock's clock (AWS: 15 minutes).
const sigv4MaxSkew = 15 * time.Minute

// sigv4Result is the outcome of a check, as the record's "auth": ok,
// bad_key (AWS: UnrecognizedClientException), bad_signature
// (InvalidSignatureException), bad_token, expired (a skewed clock), or
// bad_scheme (a malformed Authorization header).
type sigv4Result string

// sigv4Cred is one accepted IAM credential.
type sigv4Cred struct{ secret, token string }

func sigv4Creds(keys map[string]bool, akid string) (sigv4Cred, bool) {
	for k := range keys {
		parts := strings.SplitN(k, ":", 3)
		if len(parts) >= 2 && parts[0] == akid {
			c := sigv4Cred{secret: parts[1]}
			if len(parts) == 3 {
				c.token = parts[2]
			}
			return c, true
		}
	}
	return sigv4Cred{}, false
}

// sigv4Encode is RFC 3986 percent-encoding of everything but the unreserved
// characters (and '/' when keepSlash), upper-case hex, as SigV4 requires.
func sigv4Encode(s string, keepSlash bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch >= 'A' && ch <= 'Z' || ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' ||
			ch == '-' || ch == '_' || ch == '.' || ch == '~' || keepSlash && ch == '/' {
			b.WriteByte(ch)
		} else {
			b.WriteString("%" + strings.ToUpper(hex.EncodeToString([]byte{ch})))
		}
	}
	return b.String()
}

// sigv4Query is the canonical query string: each name and value encoded, sorted by name then value.
func sigv4Query(raw string) string {
	if raw == "" {
		return ""
	}
	q, err := url.ParseQuery(raw)
	if err != nil {
		return raw
	}
	var pairs []string
	for k, vs := range q {
		for _, v := range vs {
			pairs = append(pairs, sigv4Encode(k, false)+"="+sigv4Encode(v, false))
		}
	}
	sort.Strings(pairs)
	return strings.Join(pairs, "&")
}

// sigv4HeaderValue: values of a header joined by commas, trimmed, inner runs of spaces as one.
func sigv4HeaderValue(vals []string) string {
	out := make([]string, 0, len(vals))
	for _, v := range vals {
		out = append(out, strings.Join(strings.Fields(v), " "))
	}
	return strings.Join(out, ",")
}

func hmacSHA256(key []byte, data string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(data))
	return h.Sum(nil)
}

// checkSigV4 verifies the request's "AWS4-HMAC-SHA256 Credential=…,
// SignedHeaders=…, Signature=…" against the accepted keys, the exact body
// bytes received, and the request target as sent (the path is URI-encoded
// once more for the canonical request: every service but S3 does this).
func (c *call) checkSigV4(keys map[string]bool, raw []byte) sigv4Result {
	auth := c.r.Header.Get("Authorization")
	fields := map[string]string{}
	for _, f := range strings.Split(strings.TrimPrefix(auth, "AWS4-HMAC-SHA256 "), ",") {
		kv := strings.SplitN(strings.TrimSpace(f), "=", 2)
		if len(kv) != 2 {
			return "bad_scheme"
		}
		fields[kv[0]] = kv[1]
	}
	scope := strings.Split(fields["Credential"], "/")
	signed := strings.Split(fields["SignedHeaders"], ";")
	if len(scope) != 5 || scope[3] != "bedrock" || scope[4] != "aws4_request" ||
		len(fields["Signature"]) != 64 || fields["SignedHeaders"] == "" {
		return "bad_scheme"
	}
	cred, ok := sigv4Creds(keys, scope[0])
	if !ok {
		return "bad_key"
	}
	amzDate := c.r.Header.Get("X-Amz-Date")
	t, err := time.Parse("20060102T150405Z", amzDate)
	if err != nil || amzDate[:8] != scope[1] {
		return "bad_scheme"
	}
	c.m.mu.Lock()
	offset := time.Duration(c.m.ctl.ClockOffsetS) * time.Second
	c.m.mu.Unlock()
	if d := time.Since(t) + offset; d > sigv4MaxSkew || d < -sigv4MaxSkew {
		return "expired"
	}
	// The token must be the key's, and signed when sent.
	tok := c.r.Header.Get("X-Amz-Security-Token")
	if tok != cred.token {
		return "bad_token"
	}
	has := map[string]bool{}
	for _, h := range signed {
		has[h] = true
	}
	if !has["host"] || !has["x-amz-date"] || tok != "" && !has["x-amz-security-token"] ||
		!sort.StringsAreSorted(signed) {
		return "bad_signature"
	}

	target := c.r.RequestURI
	rawQuery := ""
	if i := strings.IndexByte(target, '?'); i >= 0 {
		target, rawQuery = target[:i], target[i+1:]
	}
	var ch strings.Builder
	for _, h := range signed {
		var v string
		if h == "host" {
			v = c.r.Host
		} else {
			v = sigv4HeaderValue(c.r.Header.Values(h))
		}
		ch.WriteString(h + ":" + v + "\n")
	}
	payload := sha256.Sum256(raw)
	creq := strings.Join([]string{c.r.Method, sigv4Encode(target, true), sigv4Query(rawQuery),
		ch.String(), fields["SignedHeaders"], hex.EncodeToString(payload[:])}, "\n")
	creqHash := sha256.Sum256([]byte(creq))
	sts := strings.Join([]string{"AWS4-HMAC-SHA256", amzDate,
		strings.Join(scope[1:], "/"), hex.EncodeToString(creqHash[:])}, "\n")
	k := hmacSHA256([]byte("AWS4"+cred.secret), scope[1])
	k = hmacSHA256(k, scope[2])
	k = hmacSHA256(k, scope[3])
	k = hmacSHA256(k, "aws4_request")
	want := hex.EncodeToString(hmacSHA256(k, sts))
	if !hmac.Equal([]byte(want), []byte(fields["Signature"])) {
		return "bad_signature"
	}
	return "ok"
}
