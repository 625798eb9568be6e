// SPDX-License-Identifier: MPL-2.0

package vaultsim

// Storage (the mount's view) and stand-in lifecycle.

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestStorageListSemantics(t *testing.T) {
	s, err := NewStorage("")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "b/c", "b/d/e", "b/d/f", "bb", "kek/1"} {
		if err := s.Put(k, []byte(k), k == "kek/1"); err != nil {
			t.Fatal(err)
		}
	}
	cases := map[string][]string{
		"":     {"a", "b/", "bb", "kek/"},
		"b/":   {"c", "d/"},
		"b/d/": {"e", "f"},
		"zz/":  {},
	}
	for prefix, want := range cases {
		got, err := s.List(prefix)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("List(%q) = %v, %v; want %v", prefix, got, err, want)
		}
	}
	if !s.SealWrapped("kek/1") || s.SealWrapped("a") {
		t.Errorf("seal_wrap flags not recorded")
	}
	if v, ok, _ := s.Get("b/c"); !ok || string(v) != "b/c" {
		t.Errorf("Get(b/c) = %q %v", v, ok)
	}
	if _, ok, _ := s.Get("nope"); ok {
		t.Errorf("Get of a missing key found something")
	}
	if err := s.Delete("nope"); err != nil {
		t.Errorf("Delete of a missing key: %v", err)
	}
	for _, bad := range []string{"../x", "a/../b", ".."} {
		if err := s.Put(bad, []byte("x"), false); err == nil {
			t.Errorf("Put(%q) accepted a traversal key", bad)
		}
		if _, _, err := s.Get(bad); err == nil {
			t.Errorf("Get(%q) accepted a traversal key", bad)
		}
	}
	if err := s.Put("", []byte("x"), false); err == nil {
		t.Errorf("Put with an empty key accepted")
	}
}

func TestStorageFileRoundTrip(t *testing.T) {
	file := filepath.Join(t.TempDir(), "st.json")
	s, err := NewStorage(file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("file created before the first write")
	}
	bin := []byte{0, 1, 2, 255, '"', '\n'}
	if err := s.Put("bin", bin, false); err != nil {
		t.Fatal(err)
	}
	if err := s.Put("gone", []byte("x"), false); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("gone"); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Entries map[string]string `json:"entries"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatalf("file is not JSON: %v", err)
	}
	if f.Entries["bin"] != base64.StdEncoding.EncodeToString(bin) || len(f.Entries) != 1 {
		t.Errorf("file entries = %v", f.Entries)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
		t.Errorf("storage file mode %v, want 0600", fi.Mode().Perm())
	}
	s2, err := NewStorage(file)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s2.Snapshot(), s.Snapshot()) {
		t.Errorf("reloaded storage differs")
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(file), ".st.json.tmp*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	if err := os.WriteFile(file, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewStorage(file); err == nil {
		t.Errorf("a corrupt storage file loaded")
	}
}

func TestDurations(t *testing.T) {
	for in, want := range map[any]int64{"90": 90, "90s": 90, "20m": 1200, "2h": 7200, "7d": 604800, 3600: 3600, "": 0} {
		d, err := asDuration(in)
		if err != nil || int64(d.Seconds()) != want {
			t.Errorf("asDuration(%v) = %v, %v; want %ds", in, d, err, want)
		}
	}
	for _, bad := range []any{"soon", "1x", "h"} {
		if _, err := asDuration(bad); err == nil {
			t.Errorf("asDuration(%v) accepted", bad)
		}
	}
}

func TestCloseStopsPluginAndCleansUp(t *testing.T) {
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	sock := filepath.Join(dir, "v.sock")
	s := newSim(t, WithListen("unix:"+sock), func(o *Options) { o.ReadyFile = ready })
	b, err := os.ReadFile(ready)
	if err != nil || string(b) != "unix:"+sock+"\n" {
		t.Errorf("ready file = %q, %v", b, err)
	}
	p := s.Plugin()
	s.Close()
	if !p.Exited() {
		t.Errorf("plugin process still running after Close")
	}
	for _, f := range []string{sock, ready, p.Addr.String()} {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind after Close", f)
		}
	}
}
