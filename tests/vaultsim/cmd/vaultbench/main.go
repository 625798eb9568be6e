// SPDX-License-Identifier: MPL-2.0

// Command vaultbench measures the plugin as Vault drives it, in one run:
// exec -> handshake line time, Health/Check round trip (the transport
// floor), HandleRequest read of config, idle RSS, and any number of
// request specs (-spec op:path[:json]) such as creds reads and key writes.
// It prints a table and a JSON summary. Timings are measured, never asserted.
//
// The one-client cases (the floor, the config read and every spec) run in
// -rounds interleaved rounds, so that a slow spell of the machine hits the
// floor and the cases alike: each one-client row is the median over rounds,
// and its "x floor" is the median of the per-round ratios of its p50 to the
// floor's p50 in the same round. The multi-client cases run once, after.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/plugin/pb"
	"google.golang.org/grpc/health/grpc_health_v1"

	"byok/vaultsim"
)

type specList []string

func (s *specList) String() string     { return strings.Join(*s, ",") }
func (s *specList) Set(v string) error { *s = append(*s, v); return nil }

type spec struct {
	raw  string
	op   string
	path string
	data string
}

func parseSpec(s string) (spec, error) {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) < 2 {
		return spec{}, fmt.Errorf("spec %q: want op:path[:json]", s)
	}
	sp := spec{raw: s, op: parts[0], path: parts[1], data: "null"}
	switch sp.op {
	case "read", "update", "create", "delete", "list":
	default:
		return spec{}, fmt.Errorf("spec %q: unknown operation %q", s, sp.op)
	}
	if len(parts) == 3 {
		var m map[string]any
		if err := json.Unmarshal([]byte(parts[2]), &m); err != nil {
			return spec{}, fmt.Errorf("spec %q: data is not a JSON object: %v", s, err)
		}
		sp.data = parts[2]
	}
	return sp, nil
}

// Result is one measured row.
type Result struct {
	Name     string  `json:"name"`
	Clients  int     `json:"clients"`
	Requests int     `json:"requests"`
	Errors   int     `json:"errors"`
	ReqPerS  float64 `json:"req_per_s"`
	P50us    float64 `json:"p50_us"`
	P99us    float64 `json:"p99_us"`
	// One-client cases: median of the per-round p50 ratios to the floor, and each round's p50.
	XFloor    float64   `json:"x_floor,omitempty"`
	P50Rounds []float64 `json:"p50_us_rounds,omitempty"`
}

// median of xs (the lower middle for an even count); 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[(len(s)-1)/2]
}

// combine folds one case's per-round results into one row: medians of p50,
// p99 and rate, summed counts, and the median ratio to the floor's rounds.
func combine(rounds, floor []Result) Result {
	out := Result{Name: rounds[0].Name, Clients: rounds[0].Clients}
	var p50, p99, rps, x []float64
	for i, r := range rounds {
		out.Requests += r.Requests
		out.Errors += r.Errors
		p50 = append(p50, r.P50us)
		p99 = append(p99, r.P99us)
		rps = append(rps, r.ReqPerS)
		if floor[i].P50us > 0 {
			x = append(x, r.P50us/floor[i].P50us)
		}
	}
	out.P50us, out.P99us, out.ReqPerS, out.XFloor = median(p50), median(p99), median(rps), median(x)
	out.P50Rounds = p50
	return out
}

// Summary is the JSON output.
type Summary struct {
	Plugin          string   `json:"plugin"`
	Launches        int      `json:"launches"`
	HandshakeMedMs  float64  `json:"handshake_median_ms"`
	HandshakeMinMs  float64  `json:"handshake_min_ms"`
	HandshakeMaxMs  float64  `json:"handshake_max_ms"`
	MountMs         float64  `json:"mount_sequence_ms"`
	RSSIdleKiB      int      `json:"rss_idle_kib"`
	RSSAfterKiB     int      `json:"rss_after_kib"`
	Rounds          int      `json:"rounds"`
	Results         []Result `json:"results"`
	DurationPerCase string   `json:"duration_per_case"`
	Bulk            *Bulk    `json:"bulk,omitempty"`
}

// Bulk is the -bulk case: many tenants' keys written through the plugin's
// gRPC interface (existence check + update, storage over the broker), then
// one config/rotate-root rewrapping every tenant's data key.
type Bulk struct {
	Tenants       int     `json:"tenants"`
	KeysPerTenant int     `json:"keys_per_tenant"`
	Clients       int     `json:"clients"`
	CreateS       float64 `json:"create_s"`
	RotateS       float64 `json:"rotate_s"`
	Rewrapped     float64 `json:"tenants_rewrapped"`
}

// bulk writes tenants x providers keys with clients workers, then rotates the KEK.
func bulk(p *vaultsim.Plugin, tenants, clients int, key string) (*Bulk, error) {
	providers := []string{"openai", "mistral", "deepseek"}
	b := &Bulk{Tenants: tenants, KeysPerTenant: len(providers), Clients: clients}
	jobs := make(chan int)
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	t0 := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				for _, pr := range providers {
					sp := spec{op: "update", path: fmt.Sprintf("tenants/bulk%d/keys/%s/production", i, pr),
						data: fmt.Sprintf(`{"key_value":%q}`, key)}
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					err := request(ctx, p, sp)
					cancel()
					if err != nil {
						select {
						case errs <- err:
						default:
						}
						return
					}
				}
			}
		}()
	}
	for i := 0; i < tenants; i++ {
		select {
		case err := <-errs:
			close(jobs)
			wg.Wait()
			return nil, err
		case jobs <- i:
		}
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errs:
		return nil, err
	default:
	}
	b.CreateS = time.Since(t0).Seconds()
	t0 = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	reply, err := p.Backend.HandleRequest(ctx, &pb.HandleRequestArgs{Request: &pb.Request{
		Id: "bench", Operation: "update", Path: "config/rotate-root", Data: "{}", MountPoint: "byok/",
		MountType: "vault-plugin-secrets-byok", ClientToken: "bench"}})
	if err != nil {
		return nil, err
	}
	if reply.Err != nil || reply.Response == nil {
		return nil, fmt.Errorf("rotate-root: %v", reply.Err)
	}
	b.RotateS = time.Since(t0).Seconds()
	var m map[string]any
	if json.Unmarshal([]byte(reply.Response.Data), &m) == nil {
		b.Rewrapped, _ = m["tenants_rewrapped"].(float64)
	}
	return b, nil
}

func pct(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	i := int(float64(len(d)-1) * p)
	return float64(d[i].Nanoseconds()) / 1e3
}

// run calls fn from clients goroutines for dur and collects latencies.
func run(name string, clients int, dur time.Duration, fn func(ctx context.Context) error) Result {
	// warm-up
	for i := 0; i < 20; i++ {
		_ = fn(context.Background())
	}
	var mu sync.Mutex
	var all []time.Duration
	errs := 0
	var wg sync.WaitGroup
	start := time.Now()
	stop := start.Add(dur)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 4096)
			e := 0
			for time.Now().Before(stop) {
				t0 := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				err := fn(ctx)
				cancel()
				lat = append(lat, time.Since(t0))
				if err != nil {
					e++
				}
			}
			mu.Lock()
			all = append(all, lat...)
			errs += e
			mu.Unlock()
		}()
	}
	wg.Wait()
	el := time.Since(start)
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	return Result{Name: name, Clients: clients, Requests: len(all), Errors: errs,
		ReqPerS: float64(len(all)) / el.Seconds(), P50us: pct(all, 0.50), P99us: pct(all, 0.99)}
}

func vmRSS(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				n, _ := strconv.Atoi(f[1])
				return n
			}
		}
	}
	return -1
}

// request runs one spec the way Vault does: the existence check first for
// writes, then HandleRequest with create or update.
func request(ctx context.Context, p *vaultsim.Plugin, sp spec) error {
	op := sp.op
	if op == "update" || op == "create" {
		r, err := p.Backend.HandleExistenceCheck(ctx, &pb.HandleExistenceCheckArgs{Request: &pb.Request{
			Operation: "update", Path: sp.path, Data: sp.data, MountPoint: "byok/"}})
		if err != nil {
			return err
		}
		if r.Err != nil && r.Err.ErrType != 6 {
			return fmt.Errorf("existence check: %s", r.Err.ErrMsg)
		}
		op = "update"
		if r.CheckFound && !r.Exists {
			op = "create"
		}
	}
	reply, err := p.Backend.HandleRequest(ctx, &pb.HandleRequestArgs{Request: &pb.Request{
		Id: "bench", Operation: op, Path: sp.path, Data: sp.data, MountPoint: "byok/",
		MountType: "vault-plugin-secrets-byok", ClientToken: "bench"}})
	if err != nil {
		return err
	}
	if reply.Err != nil {
		return fmt.Errorf("%s %s: error type %d %s", op, sp.path, reply.Err.ErrType, reply.Err.ErrMsg)
	}
	if reply.Response == nil {
		if op == "read" {
			return fmt.Errorf("read %s: not found", sp.path)
		}
		return nil
	}
	if strings.Contains(reply.Response.Data, `"error":`) {
		var m map[string]any
		if json.Unmarshal([]byte(reply.Response.Data), &m) == nil {
			if e, ok := m["error"].(string); ok {
				return fmt.Errorf("%s %s: %s", op, sp.path, e)
			}
		}
	}
	return nil
}

func main() {
	var specs, setups specList
	plugin := flag.String("plugin", "", "plugin binary (required)")
	launches := flag.Int("launches", 20, "launches for the exec -> handshake median")
	dur := flag.Duration("d", 2*time.Second, "duration of each measured case (per round)")
	rounds := flag.Int("rounds", 3, "interleaved rounds of the one-client cases")
	clients := flag.Int("clients", 8, "concurrent clients for the throughput cases")
	jsonOut := flag.String("json", "", "also write the JSON summary to this file")
	httpCase := flag.Bool("http", true, "also measure a config read through the stand-in's HTTP API")
	bulkTenants := flag.Int("bulk", 0, "also create this many tenants x 3 keys with -clients workers, then rotate the KEK (0: skip)")
	bulkKey := flag.String("bulk-key", "sk-bench"+strings.Repeat("x", 48), "key value the -bulk case writes")
	flag.Var(&specs, "spec", "measured request op:path[:json] (repeatable, run in order), e.g. read:tenants/t1/creds/openai")
	flag.Var(&setups, "setup", "request op:path[:json] run once before measuring (repeatable)")
	flag.Parse()
	if *plugin == "" {
		fmt.Fprintln(os.Stderr, "vaultbench: -plugin is required")
		os.Exit(2)
	}
	var parsed, parsedSetup []spec
	for _, s := range specs {
		sp, err := parseSpec(s)
		if err != nil {
			fatal(err)
		}
		parsed = append(parsed, sp)
	}
	for _, s := range setups {
		sp, err := parseSpec(s)
		if err != nil {
			fatal(err)
		}
		parsedSetup = append(parsedSetup, sp)
	}
	if *rounds < 1 {
		fatal(fmt.Errorf("-rounds must be at least 1"))
	}
	sum := Summary{Plugin: *plugin, Launches: *launches, DurationPerCase: dur.String(), Rounds: *rounds}

	// 1. exec -> first stdout line.
	var hs []time.Duration
	for i := 0; i < *launches; i++ {
		r, err := vaultsim.LaunchRaw(*plugin, nil, time.Minute)
		if err != nil {
			fatal(fmt.Errorf("launch %d: %v", i, err))
		}
		hs = append(hs, r.Elapsed)
		r.Kill()
		if f := strings.Split(r.Line, "|"); len(f) >= 4 {
			_ = os.Remove(f[3])
		}
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i] < hs[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }
	sum.HandshakeMedMs, sum.HandshakeMinMs, sum.HandshakeMaxMs = ms(hs[len(hs)/2]), ms(hs[0]), ms(hs[len(hs)-1])

	// 2. mount as Vault does.
	st, _ := vaultsim.NewStorage("")
	logs := vaultsim.NewLogBuffer(nil)
	t0 := time.Now()
	p, err := vaultsim.StartPlugin(vaultsim.PluginConfig{Path: *plugin, Name: "vault-plugin-secrets-byok",
		BackendUUID: "00000000-0000-4000-8000-000000000000", Storage: st, Stderr: logs,
		System: &vaultsim.SystemView{DefaultLeaseTTL: vaultsim.DefaultLeaseTTL, MaxLeaseTTL: vaultsim.DefaultLeaseTTL}})
	if err != nil {
		fatal(err)
	}
	defer p.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	if err := p.Setup(ctx); err != nil {
		cancel()
		fatal(fmt.Errorf("mount: %v\n%s", err, logs.String()))
	}
	cancel()
	sum.MountMs = ms(time.Since(t0))
	time.Sleep(time.Second)
	sum.RSSIdleKiB = vmRSS(p.Pid)

	for _, sp := range parsedSetup {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := request(ctx, p, sp); err != nil {
			fmt.Fprintf(os.Stderr, "vaultbench: warning: setup %s: %v\n", sp.raw, err)
		}
		cancel()
	}

	health := grpc_health_v1.NewHealthClient(p.Conn)
	healthFn := func(ctx context.Context) error {
		_, err := health.Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: "plugin"})
		return err
	}
	cfg := spec{op: "read", path: "config", data: "null"}
	type bcase struct {
		name string
		fn   func(ctx context.Context) error
	}
	cases := []bcase{{"Health/Check", healthFn},
		{"read config", func(ctx context.Context) error { return request(ctx, p, cfg) }}}
	for _, sp := range parsed {
		sp := sp
		fn := func(ctx context.Context) error { return request(ctx, p, sp) }
		if err := fn(context.Background()); err != nil {
			fmt.Fprintf(os.Stderr, "vaultbench: warning: %s: %v\n", sp.raw, err)
		}
		cases = append(cases, bcase{sp.op + " " + sp.path, fn})
	}
	per := make([][]Result, len(cases))
	for r := 0; r < *rounds; r++ {
		for i, c := range cases {
			per[i] = append(per[i], run(c.name, 1, *dur, c.fn))
		}
	}
	for i := range cases {
		sum.Results = append(sum.Results, combine(per[i], per[0]))
	}
	for _, c := range cases {
		sum.Results = append(sum.Results, run(c.name, *clients, *dur, c.fn))
	}
	sum.RSSAfterKiB = vmRSS(p.Pid)
	if *bulkTenants > 0 {
		b, err := bulk(p, *bulkTenants, *clients, *bulkKey)
		if err != nil {
			fatal(fmt.Errorf("bulk: %v", err))
		}
		sum.Bulk = b
	}

	if *httpCase {
		// The same read through the stand-in's HTTP API (token lookup, ACL,
		// JSON envelope): what an agent sees, minus Vault's own costs.
		dir, err := os.MkdirTemp("", "vaultbench")
		if err != nil {
			fatal(err)
		}
		defer os.RemoveAll(dir)
		srv, err := vaultsim.New(vaultsim.WithPlugin(*plugin), vaultsim.WithListen("unix:"+dir+"/v.sock"))
		if err != nil {
			fatal(fmt.Errorf("stand-in: %v", err))
		}
		defer srv.Close()
		c, base := srv.HTTPClient()
		root := srv.RootToken()
		httpFn := func(ctx context.Context) error {
			req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/byok/config", nil)
			req.Header.Set("X-Vault-Token", root)
			resp, err := c.Do(req)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("status %d", resp.StatusCode)
			}
			return nil
		}
		sum.Results = append(sum.Results,
			run("HTTP GET /v1/byok/config (stand-in)", 1, *dur, httpFn),
			run("HTTP GET /v1/byok/config (stand-in)", *clients, *dur, httpFn))
	}

	fmt.Printf("plugin: %s\n", *plugin)
	fmt.Printf("exec -> handshake line: median %.2f ms (min %.2f, max %.2f, %d launches)\n",
		sum.HandshakeMedMs, sum.HandshakeMinMs, sum.HandshakeMaxMs, *launches)
	fmt.Printf("mount sequence (start, Setup, Type, SpecialPaths, Initialize): %.2f ms\n", sum.MountMs)
	fmt.Printf("VmRSS idle after setup: %.1f MiB; after the run: %.1f MiB\n\n",
		float64(sum.RSSIdleKiB)/1024, float64(sum.RSSAfterKiB)/1024)
	fmt.Printf("one-client rows: medians over %d interleaved rounds of %s; x floor: median of the per-round p50 ratios\n",
		*rounds, dur.String())
	fmt.Printf("%-52s %7s %9s %7s %10s %9s %9s %8s\n", "case", "clients", "requests", "errors", "req/s", "p50 us", "p99 us", "x floor")
	for _, r := range sum.Results {
		name := r.Name
		if len(name) > 52 {
			name = name[:49] + "..."
		}
		x := ""
		if r.XFloor > 0 {
			x = fmt.Sprintf("%.2f", r.XFloor)
		}
		fmt.Printf("%-52s %7d %9d %7d %10.0f %9.0f %9.0f %8s\n", name, r.Clients, r.Requests, r.Errors, r.ReqPerS, r.P50us, r.P99us, x)
	}
	if b := sum.Bulk; b != nil {
		fmt.Printf("\nbulk: %d tenants x %d keys written by %d clients in %.2f s (%.0f writes/s); "+
			"config/rotate-root rewrapped %.0f tenant data keys in %.2f s; together %.2f s\n",
			b.Tenants, b.KeysPerTenant, b.Clients, b.CreateS, float64(b.Tenants*b.KeysPerTenant)/b.CreateS,
			b.Rewrapped, b.RotateS, b.CreateS+b.RotateS)
	}
	js, _ := json.Marshal(sum)
	fmt.Printf("\nJSON %s\n", js)
	if *jsonOut != "" {
		if err := os.WriteFile(*jsonOut, append(js, '\n'), 0o644); err != nil {
			fatal(err)
		}
	}
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "vaultbench: %v\n", err)
	os.Exit(1)
}
