// SPDX-License-Identifier: MPL-2.0

package vaultsim

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Storage is the mount's storage view: a map of key -> value, optionally
// persisted to a JSON file (values base64) rewritten atomically on every
// change, so state outlives plugin and stand-in restarts.
type Storage struct {
	mu       sync.RWMutex
	data     map[string][]byte
	sealWrap map[string]bool
	file     string
	// readOnly makes Put and Delete fail as a standby's storage does
	// (logical.ErrReadOnly), for tests.
	readOnly atomic.Bool
	// inSetup makes Put and Delete fail while the plugin runs Setup, as
	// Vault's mount does (vault/mount.go: the view is read-only until then).
	inSetup atomic.Bool
	// hold, when set, is what Puts wait on until it is released: a slow
	// storage backend, for tests of what the plugin does meanwhile.
	hold atomic.Pointer[writeHold]
	// Ops counts storage RPCs served (for tests and benchmarks); putDropped
	// counts Puts refused because their caller's context ended first.
	ops struct {
		sync.Mutex
		get, put, list, del, putDropped int
	}
}

type storageFile struct {
	Entries map[string][]byte `json:"entries"`
}

// NewStorage returns an empty in-memory storage, or one loaded from file
// (created on first write) when file is not empty.
func NewStorage(file string) (*Storage, error) {
	s := &Storage{data: map[string][]byte{}, sealWrap: map[string]bool{}, file: file}
	if file == "" {
		return s, nil
	}
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	var sf storageFile
	if err := json.Unmarshal(b, &sf); err != nil {
		return nil, fmt.Errorf("storage file %s: %w", file, err)
	}
	if sf.Entries != nil {
		s.data = sf.Entries
	}
	return s, nil
}

func checkKey(k string) error {
	if strings.Contains(k, "..") {
		return errors.New("invalid key: path traversal")
	}
	return nil
}

// Get returns the value of key.
func (s *Storage) Get(key string) ([]byte, bool, error) {
	s.count(&s.ops.get)
	if err := checkKey(key); err != nil {
		return nil, false, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.data[key]
	if !ok {
		return nil, false, nil
	}
	return append([]byte(nil), v...), true, nil
}

// ErrReadOnly is Vault's logical.ErrReadOnly text: what a standby's storage
// answers to a write, and what Vault matches to forward the request.
var ErrReadOnly = errors.New("cannot write to readonly storage")

// SetReadOnly makes writes fail with ErrReadOnly (true) or work again.
func (s *Storage) SetReadOnly(ro bool) { s.readOnly.Store(ro) }

// writeHold holds the Puts to keys starting with prefix until ch is closed.
type writeHold struct {
	ch     chan struct{}
	prefix string
}

// HoldWrites makes every Put wait (as a slow backend would) until the
// returned release function is called; Puts already waiting then proceed.
func (s *Storage) HoldWrites() (release func()) { return s.HoldWritesTo("") }

// HoldWritesTo is HoldWrites for the Puts to keys starting with prefix only.
func (s *Storage) HoldWritesTo(prefix string) (release func()) {
	h := &writeHold{ch: make(chan struct{}), prefix: prefix}
	s.hold.Store(h)
	var once sync.Once
	return func() {
		once.Do(func() {
			s.hold.CompareAndSwap(h, nil)
			close(h.ch)
		})
	}
}

// errDuringSetup is what Vault's storage view answers a write during Setup.
var errDuringSetup = errors.New("cannot write to storage during setup")

// writeErr is the error a write gets now, or nil.
func (s *Storage) writeErr() error {
	if s.inSetup.Load() {
		return errDuringSetup
	}
	if s.readOnly.Load() {
		return ErrReadOnly
	}
	return nil
}

// Put stores key.
func (s *Storage) Put(key string, value []byte, sealWrap bool) error {
	return s.PutContext(context.Background(), key, value, sealWrap)
}

// PutContext stores key unless ctx ends first. The broker's Storage server
// passes the gRPC call's context, which ends at the plugin's deadline for
// the call or when the plugin cancels it. Like Vault's physical backends
// (inmem checks ctx before it applies a write), a Put whose context has
// ended by the time it would apply is refused and counted (PutsDropped):
// a held Put (HoldWrites) gives up as soon as its context ends.
func (s *Storage) PutContext(ctx context.Context, key string, value []byte, sealWrap bool) error {
	s.count(&s.ops.put)
	if h := s.hold.Load(); h != nil && strings.HasPrefix(key, h.prefix) {
		select {
		case <-h.ch:
		case <-ctx.Done():
		}
	}
	if err := ctx.Err(); err != nil {
		s.count(&s.ops.putDropped)
		return err
	}
	if err := checkKey(key); err != nil {
		return err
	}
	if err := s.writeErr(); err != nil {
		return err
	}
	if key == "" {
		return errors.New("missing key")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data[key] = append([]byte(nil), value...)
	if sealWrap {
		s.sealWrap[key] = true
	} else {
		delete(s.sealWrap, key)
	}
	return s.persistLocked()
}

// Delete removes key (no error when absent).
func (s *Storage) Delete(key string) error {
	s.count(&s.ops.del)
	if err := checkKey(key); err != nil {
		return err
	}
	if err := s.writeErr(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.data[key]; !ok {
		return nil
	}
	delete(s.data, key)
	delete(s.sealWrap, key)
	return s.persistLocked()
}

// List returns the immediate children of prefix, sub-trees suffixed by "/".
func (s *Storage) List(prefix string) ([]string, error) {
	s.count(&s.ops.list)
	if err := checkKey(prefix); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	seen := map[string]bool{}
	for k := range s.data {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		rest := k[len(prefix):]
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			rest = rest[:i+1]
		}
		seen[rest] = true
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys, nil
}

// Snapshot returns a copy of every entry.
func (s *Storage) Snapshot() map[string][]byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	m := make(map[string][]byte, len(s.data))
	for k, v := range s.data {
		m[k] = append([]byte(nil), v...)
	}
	return m
}

// SealWrapped reports whether the last Put of key asked for seal wrapping.
func (s *Storage) SealWrapped(key string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.sealWrap[key]
}

// PutsDropped returns how many Puts were refused because their context
// ended before they applied (see PutContext).
func (s *Storage) PutsDropped() int {
	s.ops.Lock()
	defer s.ops.Unlock()
	return s.ops.putDropped
}

// OpCounts returns the number of Get, Put, List and Delete calls served.
func (s *Storage) OpCounts() (get, put, list, del int) {
	s.ops.Lock()
	defer s.ops.Unlock()
	return s.ops.get, s.ops.put, s.ops.list, s.ops.del
}

func (s *Storage) count(n *int) {
	s.ops.Lock()
	*n++
	s.ops.Unlock()
}

func (s *Storage) persistLocked() error {
	if s.file == "" {
		return nil
	}
	b, err := json.Marshal(storageFile{Entries: s.data})
	if err != nil {
		return err
	}
	return writeFileAtomic(s.file, b, 0o600)
}

func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(name, mode)
	}
	if err == nil {
		err = os.Rename(name, path)
	}
	if err != nil {
		_ = os.Remove(name)
	}
	return err
}

// GenerateCert makes a one-time certificate like go-plugin's AutoMTLS host
// certificate: ECDSA P-521, CN and DNS SAN localhost, client+server auth.
func GenerateCert() (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "localhost", Organization: []string{"HashiCorp"}},
		DNSNames:              []string{"localhost"},
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SerialNumber:          sn,
		NotBefore:             time.Now().Add(-30 * time.Second),
		NotAfter:              time.Now().Add(262980 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), nil
}
