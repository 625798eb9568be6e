// SPDX-License-Identifier: MPL-2.0

package vaultsim

// Budget leases (tenants/<t>/budget-lease) through Vault's HTTP API: agents
// take slices of a tenant's remaining monthly budget (max_monthly_cost less
// the month's reported cost), and the plugin keeps every node's hold so
// that nodes together never get more than the cap.

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

const budgetEps = 1e-9

// budgetTenant creates tenant with settings max_monthly_cost=limit.
func budgetTenant(t *testing.T, s *Sim, tenant string, limit float64) {
	t.Helper()
	s.MustCall(t, 200, s.RootToken, "PUT", "byok/tenants/"+tenant+"/settings",
		map[string]any{"max_monthly_cost": limit})
}

// lease takes a budget lease as root and returns its data (status 200 required).
func lease(t *testing.T, s *Sim, tenant, node string, unreported, request float64) map[string]any {
	t.Helper()
	return Data(s.MustCall(t, 200, s.RootToken, "PUT", "byok/tenants/"+tenant+"/budget-lease",
		map[string]any{"node": node, "unreported_usd": unreported, "request_usd": request}))
}

func fnum(t *testing.T, d map[string]any, k string) float64 {
	t.Helper()
	v, ok := d[k].(float64)
	if !ok {
		t.Fatalf("%s: not a number in %v", k, d)
	}
	return v
}

func wantUSD(t *testing.T, what string, d map[string]any, k string, want float64) {
	t.Helper()
	if got := fnum(t, d, k); math.Abs(got-want) > budgetEps {
		t.Errorf("%s: %s = %v, want %v (%v)", what, k, got, want, d)
	}
}

// holdDoc returns the stored hold document of tenant (nil when absent).
func holdDoc(t *testing.T, s *Sim, tenant string) map[string]any {
	t.Helper()
	raw, ok := s.RawStorage()["tenants/"+tenant+"/budget"]
	if !ok {
		return nil
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("hold document: %v: %q", err, raw)
	}
	return doc
}

func reportCost(t *testing.T, s *Sim, tenant, batch string, cost float64) {
	t.Helper()
	s.MustCall(t, 200, s.RootToken, "PUT", "byok/tenants/"+tenant+"/usage", map[string]any{
		"batch_id": batch, "records": []any{map[string]any{
			"ts": time.Now().UTC().Format(time.RFC3339), "provider": "openai",
			"model": "gpt-4o-mini", "requests": 1, "cost_usd": cost}}})
}

func TestBudgetLeaseUnlimited(t *testing.T) {
	s := newSim(t)
	budgetTenant(t, s, "free", 0)
	d := lease(t, s, "free", "node-1", 2, 5)
	if d["unlimited"] != true || fnum(t, d, "ttl") != 300 || fnum(t, d, "max_monthly_cost") != 0 {
		t.Errorf("no cap: %v", d)
	}
	wantUSD(t, "no cap", d, "granted_usd", 5)
	wantUSD(t, "no cap", d, "spent_usd", 0)
	if m, _ := d["month"].(string); m != time.Now().UTC().Format("2006-01") {
		t.Errorf("month = %q", m)
	}
	if doc := holdDoc(t, s, "free"); doc != nil {
		t.Errorf("no cap, yet a hold document: %v", doc)
	}
	// A hold taken under a cap goes when the cap is lifted.
	budgetTenant(t, s, "free", 10)
	lease(t, s, "free", "node-1", 0, 5)
	if holdDoc(t, s, "free") == nil {
		t.Fatalf("capped lease stored no hold")
	}
	budgetTenant(t, s, "free", 0)
	if d := lease(t, s, "free", "node-1", 0, 5); d["unlimited"] != true {
		t.Errorf("cap lifted: %v", d)
	}
	if doc := holdDoc(t, s, "free"); doc != nil {
		t.Errorf("cap lifted, hold document left: %v", doc)
	}
	sum := Data(s.MustCall(t, 200, s.RootToken, "GET", "byok/tenants/free", nil))
	b, _ := sum["budget"].(map[string]any)
	if b["unlimited"] != true || b["max_monthly_cost"] != float64(0) || b["spent_usd"] != float64(0) {
		t.Errorf("summary budget without cap: %v", sum["budget"])
	}
}

func TestBudgetLeaseSharesCap(t *testing.T) {
	s := newSim(t)
	budgetTenant(t, s, "acme", 10)

	a := lease(t, s, "acme", "node-a", 0, 4)
	wantUSD(t, "a", a, "granted_usd", 4)
	wantUSD(t, "a", a, "hold_usd", 4)
	wantUSD(t, "a", a, "held_usd", 0)
	wantUSD(t, "a", a, "remaining_usd", 6)
	if a["unlimited"] != false || fnum(t, a, "ttl") != 300 {
		t.Errorf("a: %v", a)
	}
	exp, err := time.Parse(time.RFC3339, fmt.Sprint(a["expires_at"]))
	if err != nil || exp.Before(time.Now().Add(290*time.Second)) || exp.After(time.Now().Add(310*time.Second)) {
		t.Errorf("expires_at = %v (%v)", a["expires_at"], err)
	}

	// The second node gets what is left, not what it asks for.
	b := lease(t, s, "acme", "node-b", 0, 10)
	wantUSD(t, "b", b, "granted_usd", 6)
	wantUSD(t, "b", b, "held_usd", 4)
	wantUSD(t, "b", b, "remaining_usd", 0)
	c := lease(t, s, "acme", "node-c", 0, 1)
	wantUSD(t, "c", c, "granted_usd", 0)
	wantUSD(t, "c", c, "hold_usd", 0)

	// A renewal replaces the node's own hold: asking for 4 again is granted in full.
	a = lease(t, s, "acme", "node-a", 0, 4)
	wantUSD(t, "a renewed", a, "granted_usd", 4)
	wantUSD(t, "a renewed", a, "hold_usd", 4)
	wantUSD(t, "a renewed", a, "held_usd", 6)
	a = lease(t, s, "acme", "node-a", 0, 1)
	wantUSD(t, "a smaller", a, "hold_usd", 1)
	wantUSD(t, "a smaller", a, "remaining_usd", 3)

	// The summary shows the holds.
	sum := Data(s.MustCall(t, 200, s.RootToken, "GET", "byok/tenants/acme", nil))
	bud, _ := sum["budget"].(map[string]any)
	if bud == nil {
		t.Fatalf("summary has no budget: %v", sum)
	}
	wantUSD(t, "summary", bud, "max_monthly_cost", 10)
	wantUSD(t, "summary", bud, "held_usd", 7)
	wantUSD(t, "summary", bud, "remaining_usd", 3)
	if bud["leases"] != float64(2) || bud["unlimited"] != false {
		t.Errorf("summary budget: %v", bud)
	}

	// Releases: a hold of 0 removes the node; the last one removes the document.
	lease(t, s, "acme", "node-a", 0, 0)
	doc := holdDoc(t, s, "acme")
	holds, _ := doc["holds"].(map[string]any)
	if _, ok := holds["node-a"]; ok || len(holds) != 1 {
		t.Errorf("after node-a's release: %v", doc)
	}
	lease(t, s, "acme", "node-b", 0, 0)
	if doc := holdDoc(t, s, "acme"); doc != nil {
		t.Errorf("every hold released, document left: %v", doc)
	}
}

func TestBudgetLeaseUnreportedAndUsage(t *testing.T) {
	s := newSim(t)
	budgetTenant(t, s, "acme", 10)
	// Unreported cost counts against what is available, and is held.
	d := lease(t, s, "acme", "node-a", 3, 10)
	wantUSD(t, "unreported", d, "granted_usd", 7)
	wantUSD(t, "unreported", d, "hold_usd", 10)
	wantUSD(t, "unreported", d, "remaining_usd", 0)
	// Once reported, the cost is in the ledger: the node reports 0 unreported.
	reportCost(t, s, "acme", "b1", 3)
	d = lease(t, s, "acme", "node-a", 0, 10)
	wantUSD(t, "reported", d, "spent_usd", 3)
	wantUSD(t, "reported", d, "granted_usd", 7)
	wantUSD(t, "reported", d, "hold_usd", 7)
	// Another node finds nothing left; after more usage and a renewal, a has less.
	wantUSD(t, "other", lease(t, s, "acme", "node-b", 0, 1), "granted_usd", 0)
	reportCost(t, s, "acme", "b2", 2.5)
	d = lease(t, s, "acme", "node-a", 0, 10)
	wantUSD(t, "more usage", d, "spent_usd", 5.5)
	wantUSD(t, "more usage", d, "granted_usd", 4.5)
	// Spent past the cap: nothing is granted, remaining is 0, never negative.
	reportCost(t, s, "acme", "b3", 20)
	d = lease(t, s, "acme", "node-a", 1, 10)
	wantUSD(t, "over", d, "granted_usd", 0)
	wantUSD(t, "over", d, "hold_usd", 1)
	wantUSD(t, "over", d, "remaining_usd", 0)
	bud, _ := Data(s.MustCall(t, 200, s.RootToken, "GET", "byok/tenants/acme", nil))["budget"].(map[string]any)
	wantUSD(t, "summary over", bud, "remaining_usd", 0)
	wantUSD(t, "summary over", bud, "spent_usd", 25.5)
}

// min_usd: less than it available grants nothing (the hold keeps only the
// unreported cost), so one dear call does not take the rest of the budget.
func TestBudgetLeaseMin(t *testing.T) {
	s := newSim(t)
	budgetTenant(t, s, "acme", 10)
	call := func(node string, unreported, request, min float64) map[string]any {
		return Data(s.MustCall(t, 200, s.RootToken, "PUT", "byok/tenants/acme/budget-lease",
			map[string]any{"node": node, "unreported_usd": unreported, "request_usd": request,
				"min_usd": min}))
	}
	// 10 available: a call estimated at 20 gets nothing; only its unreported 1 is held.
	d := call("node-a", 1, 20, 20)
	wantUSD(t, "over min", d, "granted_usd", 0)
	wantUSD(t, "over min", d, "hold_usd", 1)
	wantUSD(t, "over min", d, "remaining_usd", 9)
	// Another node still gets what is left.
	wantUSD(t, "other node", call("node-b", 0, 5, 0.5), "granted_usd", 5)
	// min equal to what is available: granted (up to request).
	wantUSD(t, "at min", call("node-a", 1, 6, 4), "granted_usd", 4)
	// Bad min_usd: 400 naming the field.
	for _, bad := range []any{-1, "x", 2e9} {
		code, m := s.Call(t, s.RootToken, "PUT", "byok/tenants/acme/budget-lease",
			map[string]any{"node": "node-c", "min_usd": bad})
		if code != 400 || !strings.Contains(Errors(m), "min_usd") {
			t.Errorf("min_usd %v: status %d %q", bad, code, Errors(m))
		}
	}
}

// A hold counts until it expires (budget_lease_ttl, at least 10 s), then no more.
func TestBudgetLeaseExpiry(t *testing.T) {
	s := newSim(t)
	s.MustCall(t, 204, s.RootToken, "PUT", "byok/config", map[string]any{"budget_lease_ttl": "10s"})
	if d := Data(s.MustCall(t, 200, s.RootToken, "GET", "byok/config", nil)); d["budget_lease_ttl"] != float64(10) {
		t.Fatalf("config budget_lease_ttl = %v", d["budget_lease_ttl"])
	}
	budgetTenant(t, s, "acme", 10)
	d := lease(t, s, "acme", "node-a", 0, 10)
	if fnum(t, d, "ttl") != 10 {
		t.Errorf("ttl = %v", d["ttl"])
	}
	wantUSD(t, "b before", lease(t, s, "acme", "node-b", 0, 10), "granted_usd", 0)
	time.Sleep(11 * time.Second)
	d = lease(t, s, "acme", "node-b", 0, 10)
	wantUSD(t, "b after a expired", d, "granted_usd", 10)
	wantUSD(t, "b after a expired", d, "held_usd", 0)
	holds, _ := holdDoc(t, s, "acme")["holds"].(map[string]any)
	if _, ok := holds["node-a"]; ok || len(holds) != 1 {
		t.Errorf("expired hold still stored: %v", holds)
	}
	for _, bad := range []string{"9s", "61m", "forever"} {
		code, m := s.Call(t, s.RootToken, "PUT", "byok/config", map[string]any{"budget_lease_ttl": bad})
		if code != 400 || !strings.Contains(Errors(m), "budget_lease_ttl") {
			t.Errorf("budget_lease_ttl=%s: status %d %q", bad, code, Errors(m))
		}
	}
}

// Holds of an earlier month count nothing: the cap is per month.
func TestBudgetLeaseMonthRollover(t *testing.T) {
	s := newSim(t)
	budgetTenant(t, s, "acme", 10)
	old := fmt.Sprintf(`{"month":"2000-01","holds":{"node-z":{"usd":10,"expires":%d}}}`,
		time.Now().Add(time.Hour).Unix())
	if err := s.Storage.Put("tenants/acme/budget", []byte(old), false); err != nil {
		t.Fatal(err)
	}
	d := lease(t, s, "acme", "node-a", 0, 4)
	wantUSD(t, "new month", d, "granted_usd", 4)
	wantUSD(t, "new month", d, "held_usd", 0)
	doc := holdDoc(t, s, "acme")
	holds, _ := doc["holds"].(map[string]any)
	if doc["month"] != time.Now().UTC().Format("2006-01") || len(holds) != 1 || holds["node-a"] == nil {
		t.Errorf("document after the new month's lease: %v", doc)
	}
}

func TestBudgetLeaseBadInput(t *testing.T) {
	s := newSim(t)
	budgetTenant(t, s, "acme", 10)
	before := s.RawStorage()
	cases := []struct {
		field string
		body  any
	}{
		{"node", map[string]any{"request_usd": 1}},
		{"node", map[string]any{"node": "", "request_usd": 1}},
		{"node", map[string]any{"node": strings.Repeat("n", 129), "request_usd": 1}},
		{"node", map[string]any{"node": "node 1", "request_usd": 1}},
		{"node", map[string]any{"node": "node/1", "request_usd": 1}},
		{"node", map[string]any{"node": "nöde", "request_usd": 1}},
		{"request_usd", map[string]any{"node": "n1", "request_usd": -1}},
		{"request_usd", map[string]any{"node": "n1", "request_usd": "NaN"}},
		{"request_usd", map[string]any{"node": "n1", "request_usd": "inf"}},
		{"request_usd", map[string]any{"node": "n1", "request_usd": "lots"}},
		{"request_usd", map[string]any{"node": "n1", "request_usd": true}},
		{"request_usd", map[string]any{"node": "n1", "request_usd": 1e10}},
		{"unreported_usd", map[string]any{"node": "n1", "unreported_usd": -0.01}},
		{"unreported_usd", map[string]any{"node": "n1", "unreported_usd": "nan"}},
		{"unreported_usd", map[string]any{"node": "n1", "unreported_usd": []any{1}}},
		{"unreported_usd", map[string]any{"node": "n1", "unreported_usd": 1.5e9}},
		{"unreported_usd", `{"node": "n1", "unreported_usd": "1e999"}`},
	}
	for _, c := range cases {
		code, m := s.Call(t, s.RootToken, "PUT", "byok/tenants/acme/budget-lease", c.body)
		if code != 400 || !strings.Contains(Errors(m), "'"+c.field+"'") {
			t.Errorf("%v: status %d errors %q, want 400 naming %s", c.body, code, Errors(m), c.field)
		}
	}
	// The longest valid node name is fine.
	lease(t, s, "acme", strings.Repeat("n", 128), 0, 0)
	if after := s.RawStorage(); !reflect.DeepEqual(before, after) {
		t.Errorf("refused leases (and a release of nothing) wrote storage")
	}

	// A tenant that does not exist gets a 400 and no tree under tenants/<t>/.
	code, m := s.Call(t, s.RootToken, "PUT", "byok/tenants/ghost/budget-lease", map[string]any{"node": "n1", "request_usd": 1})
	if code != 400 || !strings.Contains(Errors(m), "'tenant'") || !strings.Contains(Errors(m), "ghost") {
		t.Errorf("unknown tenant: status %d errors %q", code, Errors(m))
	}
	for k := range s.RawStorage() {
		if strings.HasPrefix(k, "tenants/ghost/") {
			t.Errorf("lease for an unknown tenant stored %s", k)
		}
	}
}

// Concurrent leases are serialised: together they never get more than the cap.
func TestBudgetLeaseConcurrent(t *testing.T) {
	s := newSim(t)
	budgetTenant(t, s, "acme", 10)
	reportCost(t, s, "acme", "b1", 1)
	const workers, rounds = 8, 5
	var mu sync.Mutex
	held := map[string]float64{} // each node's hold after its last lease
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			node := fmt.Sprintf("node-%d", w)
			for r := 0; r < rounds; r++ {
				code, m, err := s.Server.Call(s.RootToken, "PUT", "byok/tenants/acme/budget-lease",
					map[string]any{"node": node, "request_usd": 1.7})
				if err != nil || code != 200 {
					t.Errorf("%s: status %d err %v %v", node, code, err, m)
					return
				}
				d := Data(m)
				g, _ := d["granted_usd"].(float64)
				h, _ := d["hold_usd"].(float64)
				if g < 0 || g > 1.7+budgetEps || math.Abs(h-g) > budgetEps {
					t.Errorf("%s: %v", node, d)
				}
				mu.Lock()
				held[node] = h
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	total := 0.0
	for _, h := range held {
		total += h
	}
	if total > 9+budgetEps {
		t.Errorf("nodes hold %v in total, cap less spent is 9: %v", total, held)
	}
	if total < 9-budgetEps {
		t.Errorf("nodes hold only %v of 9 after asking for more: %v", total, held)
	}
	bud, _ := Data(s.MustCall(t, 200, s.RootToken, "GET", "byok/tenants/acme", nil))["budget"].(map[string]any)
	wantUSD(t, "summary", bud, "held_usd", total)
	wantUSD(t, "summary", bud, "remaining_usd", 0)
}

// Tenant delete takes the hold document with it.
func TestBudgetLeaseTenantDelete(t *testing.T) {
	s := newSim(t)
	budgetTenant(t, s, "doomed", 10)
	lease(t, s, "doomed", "node-a", 1, 2)
	if holdDoc(t, s, "doomed") == nil {
		t.Fatalf("no hold document stored")
	}
	s.MustCall(t, 204, s.RootToken, "DELETE", "byok/tenants/doomed", nil)
	for k := range s.RawStorage() {
		if strings.HasPrefix(k, "tenants/doomed/") {
			t.Errorf("after tenant delete: %s left", k)
		}
	}
	// A lease after the delete does not bring the tenant back.
	code, _ := s.Call(t, s.RootToken, "PUT", "byok/tenants/doomed/budget-lease", map[string]any{"node": "node-a", "request_usd": 1})
	if code != 400 || holdDoc(t, s, "doomed") != nil {
		t.Errorf("lease after delete: status %d, document %v", code, holdDoc(t, s, "doomed"))
	}
}

// The shipped policies: agents lease, tenants cannot, admins read the summary's budget.
func TestBudgetLeasePolicies(t *testing.T) {
	s := newIsoSim(t)
	s.MustCall(t, 200, s.RootToken, "PUT", "byok/tenants/acme/settings", map[string]any{"max_monthly_cost": 10})
	body := map[string]any{"node": "node-1", "request_usd": 3}
	m := s.expect(t, 200, "agent", s.agent, "PUT", "byok/tenants/acme/budget-lease", body)
	wantUSD(t, "agent", Data(m), "granted_usd", 3)
	s.expect(t, 200, "agent", s.agent, "POST", "byok/tenants/acme/budget-lease", body)
	for _, who := range []struct{ name, token string }{{"tenant A", s.tenantA}, {"tenant B", s.tenantB}, {"no-metadata token", s.nobody}, {"admin", s.admin}} {
		s.expect(t, 403, who.name, who.token, "PUT", "byok/tenants/acme/budget-lease", map[string]any{"node": "evil", "request_usd": 7})
	}
	bud, _ := Data(s.expect(t, 200, "admin", s.admin, "GET", "byok/tenants/acme", nil))["budget"].(map[string]any)
	wantUSD(t, "admin summary", bud, "held_usd", 3)
	wantUSD(t, "admin summary", bud, "remaining_usd", 7)
	bud, _ = Data(s.expect(t, 200, "tenant A", s.tenantA, "GET", "byok/tenants/acme", nil))["budget"].(map[string]any)
	if bud["leases"] != float64(1) {
		t.Errorf("tenant A's summary budget: %v", bud)
	}
	s.expect(t, 403, "tenant B", s.tenantB, "GET", "byok/tenants/acme", nil)
}
