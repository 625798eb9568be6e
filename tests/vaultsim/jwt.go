// SPDX-License-Identifier: MPL-2.0

package vaultsim

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// parsePublicKeys parses PEM public keys (PKIX "PUBLIC KEY", PKCS#1
// "RSA PUBLIC KEY", or a certificate) as Vault's kubernetes auth pem_keys.
func parsePublicKeys(pems []string) ([]any, error) {
	var keys []any
	for i, p := range pems {
		rest := []byte(p)
		n := 0
		for {
			var blk *pem.Block
			blk, rest = pem.Decode(rest)
			if blk == nil {
				break
			}
			n++
			var k any
			var err error
			switch blk.Type {
			case "PUBLIC KEY":
				k, err = x509.ParsePKIXPublicKey(blk.Bytes)
			case "RSA PUBLIC KEY":
				k, err = x509.ParsePKCS1PublicKey(blk.Bytes)
			case "CERTIFICATE":
				var c *x509.Certificate
				if c, err = x509.ParseCertificate(blk.Bytes); err == nil {
					k = c.PublicKey
				}
			default:
				err = fmt.Errorf("unsupported PEM block %q", blk.Type)
			}
			if err != nil {
				return nil, fmt.Errorf("pem_keys[%d]: %v", i, err)
			}
			keys = append(keys, k)
		}
		if n == 0 {
			return nil, fmt.Errorf("pem_keys[%d]: no PEM data found", i)
		}
	}
	return keys, nil
}

// verifyJWT checks a compact JWS (RS256 or ES256) against keys and the exp
// and nbf claims, returning the claims.
func verifyJWT(tok string, keys []any, now time.Time) (map[string]any, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, errors.New("malformed jwt")
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, err
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(hb, &hdr); err != nil {
		return nil, err
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, err
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	ok := false
	for _, k := range keys {
		switch pk := k.(type) {
		case *rsa.PublicKey:
			if hdr.Alg == "RS256" && rsa.VerifyPKCS1v15(pk, crypto.SHA256, digest[:], sig) == nil {
				ok = true
			}
		case *ecdsa.PublicKey:
			if hdr.Alg == "ES256" && len(sig) == 64 {
				r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
				if ecdsa.Verify(pk, digest[:], r, s) {
					ok = true
				}
			}
		}
	}
	if !ok {
		return nil, errors.New("signature verification failed")
	}
	pb, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, err
	}
	var claims map[string]any
	if err := json.Unmarshal(pb, &claims); err != nil {
		return nil, err
	}
	if exp, ok := claims["exp"].(float64); ok {
		if now.Unix() >= int64(exp) {
			return nil, errors.New("token expired")
		}
	}
	if nbf, ok := claims["nbf"].(float64); ok && now.Unix() < int64(nbf) {
		return nil, errors.New("token not yet valid")
	}
	return claims, nil
}

// k8sIdentity extracts namespace and service account name from legacy
// service-account claims, projected-token claims or sub.
func k8sIdentity(c map[string]any) (ns, sa string) {
	ns, _ = c["kubernetes.io/serviceaccount/namespace"].(string)
	sa, _ = c["kubernetes.io/serviceaccount/service-account.name"].(string)
	if ns != "" && sa != "" {
		return
	}
	if k, ok := c["kubernetes.io"].(map[string]any); ok {
		ns, _ = k["namespace"].(string)
		if s, ok := k["serviceaccount"].(map[string]any); ok {
			sa, _ = s["name"].(string)
		}
		if ns != "" && sa != "" {
			return
		}
	}
	if sub, ok := c["sub"].(string); ok {
		p := strings.Split(sub, ":")
		if len(p) == 4 && p[0] == "system" && p[1] == "serviceaccount" {
			return p[2], p[3]
		}
	}
	return "", ""
}
