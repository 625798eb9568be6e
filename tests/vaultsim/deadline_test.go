// SPDX-License-Identifier: MPL-2.0

package vaultsim

// Vault's request deadline and cancellation reach the plugin's storage calls.
// Vault sends HandleRequest with the HTTP request's context (its deadline
// travels as grpc-timeout) and answers the client with an error once that
// context ends. The storage calls the plugin makes for the request must end
// with it: a write that landed afterwards would be applied a second time by
// the client's retry (two key rotations for one intent).

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/plugin/pb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// handleWithContext sends one HandleRequest straight to the plugin with ctx,
// as Vault does with a request's context.
func handleWithContext(ctx context.Context, s *Sim, op, path string, data map[string]any) (*pb.HandleRequestReply, error) {
	js, _ := json.Marshal(data)
	return s.Plugin().Backend.HandleRequest(ctx, &pb.HandleRequestArgs{Request: &pb.Request{
		Id: newUUID(), Operation: op, Path: path, Data: string(js),
		MountPoint: s.opts.Mount + "/", MountType: s.opts.PluginName}})
}

// waitUntil polls cond every 10 ms for up to d.
func waitUntil(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); ; time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(end) {
			return false
		}
	}
}

// readKeyVersion reads the key's current_version over HTTP, failing the test
// if the read takes longer than 5 s (a handler Vault gave up on still
// holding the key's lock).
func readKeyVersion(t *testing.T, s *Sim, kp string) int64 {
	t.Helper()
	type result struct {
		code int
		m    map[string]any
		err  error
	}
	got := make(chan result, 1)
	go func() {
		code, m, err := s.Server.Call(s.RootToken, "GET", kp, nil)
		got <- result{code, m, err}
	}()
	select {
	case r := <-got:
		if r.err != nil || r.code != 200 {
			t.Fatalf("read %s: %d %v %v", kp, r.code, r.m, r.err)
		}
		return jnum(Data(r.m), "current_version")
	case <-time.After(5 * time.Second):
		t.Errorf("read of %s hung: the request Vault gave up on still holds the key (its storage write "+
			"did not end with it)", kp)
		return -1
	}
}

const deadlineKP = "byok/tenants/acme/keys/openai/production"

func deadlineKey(n int) string {
	return fmt.Sprintf("sk-deadline%034d", n)
}

// A key rotation whose storage write outlives Vault's 300 ms deadline: the
// write is cancelled at the deadline (it never lands), the handler returns,
// and the client's retry makes version 2, not 3.
func TestStorageWriteEndsAtRequestDeadline(t *testing.T) {
	s := newSim(t)
	s.MustCall(t, 200, s.RootToken, "PUT", deadlineKP,
		map[string]any{"key_value": deadlineKey(1), "name": "prod", "permissions": []string{"chat"}})
	release := s.Storage.HoldWrites()
	defer release()

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := handleWithContext(ctx, s, "update", "tenants/acme/keys/openai/production/rotate",
		map[string]any{"key_value": deadlineKey(2)})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("rotate with a 300 ms deadline against held storage: %v, want DeadlineExceeded", err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("HandleRequest with a 300 ms deadline returned after %v", el)
	}
	if !waitUntil(3*time.Second, func() bool { return s.Storage.PutsDropped() > 0 }) {
		t.Errorf("the rotation's storage Put was still waiting 3 s after Vault's deadline: the " +
			"deadline did not reach it")
	}
	// The handler has returned: the key is readable, still at version 1.
	if v := readKeyVersion(t, s, deadlineKP); v != 1 && v != -1 {
		t.Errorf("after the timed-out rotation the key is at version %v, want 1", v)
	}
	release()
	// The client retries the rotation Vault answered with an error.
	d := Data(s.MustCall(t, 200, s.RootToken, "PUT", deadlineKP+"/rotate",
		map[string]any{"key_value": deadlineKey(3)}))
	if v := jnum(d, "current_version"); v != 2 {
		t.Errorf("the retried rotation made version %v, want 2: the rotation Vault gave up on "+
			"landed after its deadline", v)
	}
	cr := Data(s.MustCall(t, 200, s.RootToken, "GET", "byok/tenants/acme/creds/openai", nil))
	if jstr(cr, "api_key") != deadlineKey(3) {
		t.Errorf("creds after the retried rotation: not the retry's key")
	}
}

// The same when Vault cancels the request (the client went away) while its
// storage write is in flight.
func TestStorageWriteEndsWhenRequestCancelled(t *testing.T) {
	s := newSim(t)
	s.MustCall(t, 200, s.RootToken, "PUT", deadlineKP,
		map[string]any{"key_value": deadlineKey(1), "name": "prod", "permissions": []string{"chat"}})
	_, puts0, _, _ := s.Storage.OpCounts()
	release := s.Storage.HoldWrites()
	defer release()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := handleWithContext(ctx, s, "update", "tenants/acme/keys/openai/production/rotate",
			map[string]any{"key_value": deadlineKey(2)})
		done <- err
	}()
	if !waitUntil(10*time.Second, func() bool { _, p, _, _ := s.Storage.OpCounts(); return p > puts0 }) {
		t.Fatal("the rotation's storage Put never arrived")
	}
	cancel()
	if err := <-done; status.Code(err) != codes.Canceled {
		t.Fatalf("cancelled rotate: %v, want Canceled", err)
	}
	if !waitUntil(3*time.Second, func() bool { return s.Storage.PutsDropped() > 0 }) {
		t.Errorf("the rotation's storage Put was still waiting 3 s after Vault cancelled the request: " +
			"the cancellation did not reach it")
	}
	if v := readKeyVersion(t, s, deadlineKP); v != 1 && v != -1 {
		t.Errorf("after the cancelled rotation the key is at version %v, want 1", v)
	}
	release()
	d := Data(s.MustCall(t, 200, s.RootToken, "PUT", deadlineKP+"/rotate",
		map[string]any{"key_value": deadlineKey(3)}))
	if v := jnum(d, "current_version"); v != 2 {
		t.Errorf("the retried rotation made version %v, want 2: the cancelled rotation landed", v)
	}
}

// checkKEKState reads byok/config and checks what it says of the KEKs:
// kek_version, kek_versions (the versions in storage) and rotation_incomplete.
func checkKEKState(t *testing.T, s *Sim, when string, current int64, versions []int64, incomplete bool) {
	t.Helper()
	d := Data(s.MustCall(t, 200, s.RootToken, "GET", "byok/config", nil))
	var got []int64
	if list, ok := d["kek_versions"].([]any); ok {
		for _, v := range list {
			if f, ok := v.(float64); ok {
				got = append(got, int64(f))
			}
		}
	}
	if jnum(d, "kek_version") != current || fmt.Sprint(got) != fmt.Sprint(versions) ||
		d["rotation_incomplete"] != incomplete {
		t.Errorf("config after the %s: kek_version %v, kek_versions %v, rotation_incomplete %v; "+
			"want %v, %v, %v", when, d["kek_version"], d["kek_versions"], d["rotation_incomplete"],
			current, versions, incomplete)
	}
}

// kekVersionOf is the KEK version that wraps the tenant's stored DEK (0: none).
func kekVersionOf(t *testing.T, s *Sim, tenant string) int64 {
	t.Helper()
	raw, ok := s.RawStorage()["tenants/"+tenant+"/dek"]
	if !ok {
		return 0
	}
	var rec map[string]any
	if err := json.Unmarshal(raw, &rec); err != nil {
		t.Fatalf("tenants/%s/dek: %v", tenant, err)
	}
	return jnum(rec, "kek_version")
}

// config/rotate-root cut by Vault's deadline half-way through the tenants
// (docs/internals/keys-engine.md): it stops there. The new KEK is current,
// the tenants done so far use it, the rest keep the old KEK, which is not
// pruned, so every key still opens. The next call resumes it: no new version,
// only the tenants still on the old KEK are rewrapped, the old KEK is pruned.
// The call after that is a new rotation.
func TestRotateRootCutByDeadline(t *testing.T) {
	s := newSim(t)
	tenants := []string{"t1", "t2", "t3"}
	for i, tn := range tenants {
		s.MustCall(t, 200, s.RootToken, "PUT", "byok/tenants/"+tn+"/keys/openai/production",
			map[string]any{"key_value": deadlineKey(10 + i), "name": "prod", "permissions": []string{"chat"}})
	}
	release := s.Storage.HoldWritesTo("tenants/t2/dek")
	defer release()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := handleWithContext(ctx, s, "update", "config/rotate-root", nil)
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("rotate-root with a 1 s deadline, t2's write held: %v, want DeadlineExceeded", err)
	}
	if !waitUntil(3*time.Second, func() bool { return s.Storage.PutsDropped() > 0 }) {
		t.Errorf("rotate-root's held write for t2 was still waiting 3 s after Vault's deadline")
	}
	release()
	time.Sleep(500 * time.Millisecond) // a rotation still running would finish now
	raw := s.RawStorage()
	if _, ok := raw["kek/1"]; !ok {
		t.Errorf("kek/1 pruned although t2 and t3 were never rewrapped")
	}
	for tn, want := range map[string]int64{"t1": 2, "t2": 1, "t3": 1} {
		if got := kekVersionOf(t, s, tn); got != want {
			t.Errorf("after the cut rotation %s's DEK is wrapped by KEK %v, want %v", tn, got, want)
		}
	}
	for i, tn := range tenants {
		cr := Data(s.MustCall(t, 200, s.RootToken, "GET", "byok/tenants/"+tn+"/creds/openai", nil))
		if jstr(cr, "api_key") != deadlineKey(10+i) {
			t.Errorf("creds of %s after the cut rotation: wrong key", tn)
		}
	}
	// An admin sees the cut without calling rotate-root.
	checkKEKState(t, s, "cut rotation", 2, []int64{1, 2}, true)

	d := Data(s.MustCall(t, 200, s.RootToken, "PUT", "byok/config/rotate-root", nil))
	if jnum(d, "kek_version") != 2 || jnum(d, "tenants_rewrapped") != 2 ||
		jnum(d, "tenants_already_current") != 1 || d["resumed"] != true || d["complete"] != true {
		t.Errorf("rotate-root after the cut one: %v, want it resumed and complete: kek_version 2, "+
			"2 tenants rewrapped (t2, t3), 1 already current (t1)", d)
	}
	raw = s.RawStorage()
	if _, ok := raw["kek/1"]; ok {
		t.Errorf("kek/1 kept after the resumed rotation completed")
	}
	for _, k := range []string{"kek/2", "kek/current"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("%s missing after the resumed rotation", k)
		}
	}
	if _, ok := raw["kek/3"]; ok {
		t.Errorf("kek/3 created: the call made a new rotation instead of resuming")
	}
	checkTenants := func(when string, want int64) {
		t.Helper()
		for i, tn := range tenants {
			if got := kekVersionOf(t, s, tn); got != want {
				t.Errorf("%s's DEK wrapped by KEK %v after the %s, want %v", tn, got, when, want)
			}
			cr := Data(s.MustCall(t, 200, s.RootToken, "GET", "byok/tenants/"+tn+"/creds/openai", nil))
			if jstr(cr, "api_key") != deadlineKey(10+i) {
				t.Errorf("creds of %s after the %s: wrong key", tn, when)
			}
		}
	}
	checkTenants("resumed rotation", 2)
	checkKEKState(t, s, "resumed rotation", 2, []int64{2}, false)

	d = Data(s.MustCall(t, 200, s.RootToken, "PUT", "byok/config/rotate-root", nil))
	if jnum(d, "kek_version") != 3 || jnum(d, "tenants_rewrapped") != 3 ||
		jnum(d, "tenants_already_current") != 0 || d["resumed"] != false || d["complete"] != true {
		t.Errorf("rotate-root after the completed one: %v, want a new rotation: kek_version 3, "+
			"3 tenants rewrapped, resumed false", d)
	}
	raw = s.RawStorage()
	for _, k := range []string{"kek/1", "kek/2"} {
		if _, ok := raw[k]; ok {
			t.Errorf("%s kept after a complete rotation", k)
		}
	}
	checkTenants("new rotation", 3)
	checkKEKState(t, s, "new rotation", 3, []int64{3}, false)
}

// A tenant's first key write whose record Put outlives the deadline, after its
// data key was stored: the write's clean-up (read the record back, shred the
// DEK if absent) runs after the request ended, so its storage calls are
// children of a finished call. They fail at once (no hang, no crash), the DEK
// is kept as when storage cannot answer (transport.md, "ambiguous writes"),
// and the tenant's next key write uses it. Both for a deadline and for a
// cancellation.
func TestCallsAfterRequestEndedFailAtOnce(t *testing.T) {
	for _, how := range []string{"deadline", "cancel"} {
		t.Run(how, func(t *testing.T) {
			s := newSim(t)
			const tenant = "fresh"
			kp := "tenants/" + tenant + "/keys/openai/production"
			release := s.Storage.HoldWritesTo(kp)
			defer release()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if how == "deadline" {
				ctx, cancel = context.WithTimeout(context.Background(), 500*time.Millisecond)
			}
			defer cancel()
			_, puts0, _, _ := s.Storage.OpCounts()
			done := make(chan error, 1)
			go func() {
				_, err := handleWithContext(ctx, s, "update", kp,
					map[string]any{"key_value": deadlineKey(20), "name": "prod", "permissions": []string{"chat"}})
				done <- err
			}()
			if how == "cancel" {
				// The DEK's Put and then the record's (held).
				if !waitUntil(10*time.Second, func() bool { _, p, _, _ := s.Storage.OpCounts(); return p >= puts0+2 }) {
					t.Fatal("the key record's Put never arrived")
				}
				cancel()
			}
			want := map[string]codes.Code{"deadline": codes.DeadlineExceeded, "cancel": codes.Canceled}[how]
			if err := <-done; status.Code(err) != want {
				t.Fatalf("first key write: %v, want %v", err, want)
			}
			if !waitUntil(3*time.Second, func() bool {
				return strings.Contains(s.PluginLog(), "storage cannot say whether its record was saved")
			}) {
				t.Errorf("the failed write's clean-up did not end at once after the request ended")
			}
			if _, ok := s.RawStorage()["tenants/"+tenant+"/dek"]; !ok {
				t.Errorf("the tenant's data key was shredded although storage could not say whether its record was saved")
			}
			// The plugin gives up at its deadline a moment before storage sees
			// the cancellation arrive: release only once the held Put is gone.
			if !waitUntil(3*time.Second, func() bool { return s.Storage.PutsDropped() > 0 }) {
				t.Errorf("the held record Put was still waiting 3 s after the request ended")
			}
			release()
			s.MustCall(t, 200, s.RootToken, "PUT", "byok/"+kp,
				map[string]any{"key_value": deadlineKey(21), "name": "prod", "permissions": []string{"chat"}})
			cr := Data(s.MustCall(t, 200, s.RootToken, "GET", "byok/tenants/"+tenant+"/creds/openai", nil))
			if jstr(cr, "api_key") != deadlineKey(21) || jnum(cr, "version") != 1 {
				t.Errorf("creds after the retried first write: version %v", cr["version"])
			}
		})
	}
}
