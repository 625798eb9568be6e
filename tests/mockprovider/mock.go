// SPDX-License-Identifier: MPL-2.0

package main

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxRecords bounds the in-memory request log served by /_mock/requests (-keep
// lowers it); the JSONL file (-record) keeps everything.
const maxRecords = 100000

type record struct {
	Seq      int64               `json:"seq"`
	TS       string              `json:"ts"`
	Listener string              `json:"listener"`
	Method   string              `json:"method"`
	Path     string              `json:"path"`
	Query    string              `json:"query"`
	Headers  map[string][]string `json:"headers"`
	Body     string              `json:"body"`
	BodyLen  int                 `json:"body_len"`
	Style    string              `json:"style"`
	Kind     string              `json:"kind"`
	Model    string              `json:"model"`
	Stream   bool                `json:"stream"`
	Scenario string              `json:"scenario"`
	Auth     string              `json:"auth"`
	Status   int                 `json:"status"`
	// Remote is the client's address: two requests with the same one came
	// over one (kept-alive) connection.
	Remote string `json:"remote"`
	// Stream progress, for backpressure and cancellation tests: SSE events
	// fully written, and whether the client left before the answer ended.
	EventsSent int  `json:"events_sent"`
	ClientGone bool `json:"client_gone"`
	// Cache lists where the request carried prompt-cache hints (cache.go).
	Cache []string `json:"cache,omitempty"`
}

type control struct {
	Scenario string `json:"scenario"`
	// Count is how many more requests get Scenario; -1 means until reset.
	Count int `json:"count"`
	// RetryAfter and RetryAfterMs, when set, are the raw Retry-After and
	// retry-after-ms values of every 429 and 503 until reset (an empty
	// string sends no such header); unset, a 429 sends -retry-after.
	RetryAfter   *string `json:"retry_after,omitempty"`
	RetryAfterMs *string `json:"retry_after_ms,omitempty"`
	// Then, when set, is the scenario of the ThenCount (default 1)
	// requests after Count ran out (a 429, then a stall: two candidates of
	// one call). The Retry-After settings stay.
	Then      string `json:"then,omitempty"`
	ThenCount int    `json:"then_count,omitempty"`
	// ClockOffsetS moves the clock SigV4 signatures are checked against
	// (seconds ahead; negative: behind), as a signer with a skewed clock
	// would see AWS. It stays until the next scenario POST or DELETE.
	ClockOffsetS int `json:"clock_offset_s,omitempty"`
}

type mock struct {
	o *options

	mu        sync.Mutex
	seq       int64
	records   []*record
	recFile   *os.File
	ctl       control
	keys      map[string]bool
	keysStamp string
}

func newMock(o *options) (*mock, error) {
	m := &mock{o: o, keys: map[string]bool{}}
	if o.recordFile != "" {
		f, err := os.OpenFile(o.recordFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, err
		}
		m.recFile = f
	}
	return m, nil
}

func (m *mock) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.recFile != nil {
		m.recFile.Close()
	}
}

// acceptedKeys returns the current key set: -keys, MOCK_KEYS and -keys-file,
// the file re-read whenever its size or mtime changes so a test can add a
// tenant's key after the mock started.
func (m *mock) acceptedKeys() map[string]bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	stamp := ""
	if m.o.keysFile != "" {
		if st, err := os.Stat(m.o.keysFile); err == nil {
			stamp = fmt.Sprintf("%d/%d", st.Size(), st.ModTime().UnixNano())
		}
	}
	if stamp == m.keysStamp && len(m.keys) > 0 {
		return m.keys
	}
	keys := map[string]bool{}
	for _, src := range []string{m.o.keys, os.Getenv("MOCK_KEYS")} {
		for _, k := range strings.Split(src, ",") {
			if k = strings.TrimSpace(k); k != "" {
				keys[k] = true
			}
		}
	}
	if m.o.keysFile != "" {
		if b, err := os.ReadFile(m.o.keysFile); err == nil {
			for _, k := range strings.Split(string(b), "\n") {
				if k = strings.TrimSpace(k); k != "" {
					keys[k] = true
				}
			}
		}
	}
	m.keys, m.keysStamp = keys, stamp
	return keys
}

func (m *mock) addRecord(r *record) {
	m.mu.Lock()
	defer m.mu.Unlock()
	limit := m.o.keepRecords
	if limit > maxRecords {
		limit = maxRecords
	}
	if limit <= 0 {
		return
	}
	if len(m.records) >= limit {
		m.records = m.records[1:]
	}
	m.records = append(m.records, r)
}

// finishRecord writes the record to the JSONL file once its status is known.
func (m *mock) finishRecord(r *record, status int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r.Status = status
	if m.recFile != nil {
		b, _ := json.Marshal(r)
		m.recFile.Write(append(b, '\n'))
	}
}

// nextControlled consumes one request's worth of the /_mock/scenario setting.
func (m *mock) nextControlled() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ctl.Scenario == "" || m.ctl.Count == 0 {
		return ""
	}
	s := m.ctl.Scenario
	if m.ctl.Count > 0 {
		m.ctl.Count--
		if m.ctl.Count == 0 && m.ctl.Then != "" {
			m.ctl.Scenario, m.ctl.Count, m.ctl.Then = m.ctl.Then, m.ctl.ThenCount, ""
			if m.ctl.Count == 0 {
				m.ctl.Count = 1
			}
		}
	}
	return s
}

func writeJSON(w http.ResponseWriter, status int, v interface{}) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

// controlHandler serves /_mock/*: the test's side door (never used by the agent).
func (m *mock) controlHandler(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/_mock/health":
		writeJSON(w, 200, map[string]string{"status": "ok"})
	case r.URL.Path == "/_mock/requests" && r.Method == http.MethodGet:
		since, _ := strconv.ParseInt(r.URL.Query().Get("since"), 10, 64)
		m.mu.Lock()
		out := []*record{}
		for _, rec := range m.records {
			if rec.Seq > since {
				out = append(out, rec)
			}
		}
		b, _ := json.Marshal(map[string]interface{}{"requests": out, "last_seq": m.seq})
		m.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	case r.URL.Path == "/_mock/requests" && r.Method == http.MethodDelete:
		m.mu.Lock()
		m.records = nil
		m.mu.Unlock()
		w.WriteHeader(204)
	case r.URL.Path == "/_mock/scenario" && r.Method == http.MethodGet:
		m.mu.Lock()
		c := m.ctl
		m.mu.Unlock()
		writeJSON(w, 200, c)
	case r.URL.Path == "/_mock/scenario" && (r.Method == http.MethodPost || r.Method == http.MethodPut):
		var c control
		c.Count = -1
		if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&c); err != nil {
			writeJSON(w, 400, map[string]string{"error": "bad JSON: " + err.Error()})
			return
		}
		if _, ok := scenarios[c.Scenario]; !ok {
			writeJSON(w, 400, map[string]string{"error": "unknown scenario " + strconv.Quote(c.Scenario)})
			return
		}
		if _, ok := scenarios[c.Then]; c.Then != "" && !ok {
			writeJSON(w, 400, map[string]string{"error": "unknown scenario " + strconv.Quote(c.Then)})
			return
		}
		m.mu.Lock()
		m.ctl = c
		m.mu.Unlock()
		writeJSON(w, 200, c)
	case r.URL.Path == "/_mock/scenario" && r.Method == http.MethodDelete:
		m.mu.Lock()
		m.ctl = control{}
		m.mu.Unlock()
		w.WriteHeader(204)
	default:
		writeJSON(w, 404, map[string]string{"error": "unknown control path"})
	}
}

// route is one upstream endpoint the mock imitates. Paths are matched by
// suffix so the agent may keep any prefix in a provider's base_url.
type route struct {
	method string
	style  string // openai | azure | anthropic | cohere | vertex | bedrock
	kind   string // chat | embeddings | models | messages
	match  func(path string) (deployment string, ok bool)
}

func suffix(s string) func(string) (string, bool) {
	return func(p string) (string, bool) { return "", strings.HasSuffix(p, s) }
}

// azureMatch matches .../openai/deployments/{d}/<op>.
func azureMatch(op string) func(string) (string, bool) {
	return func(p string) (string, bool) {
		i := strings.Index(p, "/openai/deployments/")
		if i < 0 || !strings.HasSuffix(p, "/"+op) {
			return "", false
		}
		d := strings.TrimSuffix(p[i+len("/openai/deployments/"):], "/"+op)
		if d == "" || strings.Contains(d, "/") {
			return "", false
		}
		return d, true
	}
}

// Order matters: Azure paths also end in /chat/completions.
var routes = []route{
	{"POST", "vertex", "chat", vertexMatch("generateContent")},
	{"POST", "vertex", "chat", vertexMatch("streamGenerateContent")},
	{"POST", "vertex", "embeddings", vertexMatch("predict")},
	{"POST", "vertex", "claude", vertexClaudeMatch("rawPredict")},
	{"POST", "vertex", "claude", vertexClaudeMatch("streamRawPredict")},
	{"POST", "bedrock", "converse", bedrockMatch("converse")},
	{"POST", "bedrock", "converse-stream", bedrockMatch("converse-stream")},
	{"POST", "bedrock", "invoke-stream", bedrockMatch("invoke-with-response-stream")},
	{"POST", "bedrock", "embeddings", bedrockMatch("invoke")},
	{"POST", "azure", "chat", azureMatch("chat/completions")},
	{"POST", "azure", "embeddings", azureMatch("embeddings")},
	{"POST", "openai", "chat", suffix("/chat/completions")},
	{"POST", "openai", "embeddings", suffix("/embeddings")},
	{"GET", "openai", "models", suffix("/models")},
	{"POST", "anthropic", "messages", suffix("/messages")},
	// Anthropic's token counting: the prompt's words as input_tokens.
	{"POST", "anthropic", "count_tokens", suffix("/messages/count_tokens")},
	// Cohere's native v2 API: chat and embed (its base URL ends in /v2).
	{"POST", "cohere", "chat", suffix("/v2/chat")},
	{"POST", "cohere", "embeddings", suffix("/v2/embed")},
}

// call is one upstream request being answered.
type call struct {
	m          *mock
	w          http.ResponseWriter
	r          *http.Request
	rec        *record
	style      string
	kind       string
	deployment string
	body       map[string]interface{}
	model      string
	stream     bool
	usage      bool   // OpenAI stream_options.include_usage
	claude     bool   // Bedrock InvokeModel for Claude (bedrock_claude.go)
	raw        []byte // the request body as received (Bedrock SigV4 signs it)
	prompt     int
	words      int
	status     int
	cacheUsage bool // the "cache" scenario: prompt-cache reads and writes in the usage
	cache1h    bool // an Anthropic hint asked for the 1-hour TTL
	webSearch  bool // the "websearch" scenario: server_tool_use in Anthropic's usage (pricing.go)
	// fewerEmbeddings: the "fewerembeddings" scenario, a Vertex :predict
	// answer with one prediction fewer than the instances.
	fewerEmbeddings bool
}

func (m *mock) handler(listener string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/_mock/google" {
			m.googleControl(w, r)
			return
		}
		if strings.HasPrefix(r.URL.Path, "/_mock/") {
			m.controlHandler(w, r)
			return
		}
		if r.URL.Path == "/token" {
			m.googleToken(listener, w, r)
			return
		}
		m.serveUpstream(listener, w, r)
	})
}

func (m *mock) serveUpstream(listener string, w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, m.o.maxRequestBody+1))
	m.mu.Lock()
	m.seq++
	seq := m.seq
	m.mu.Unlock()
	rec := &record{
		Seq: seq, TS: time.Now().UTC().Format(time.RFC3339Nano), Listener: listener,
		Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
		Headers: map[string][]string(r.Header.Clone()), BodyLen: len(raw), Remote: r.RemoteAddr,
	}
	if len(raw) > m.o.maxRecordedBody {
		rec.Body = string(raw[:m.o.maxRecordedBody])
	} else {
		rec.Body = string(raw)
	}
	m.addRecord(rec)
	c := &call{m: m, w: w, r: r, rec: rec, raw: raw}
	defer func() { m.finishRecord(rec, c.status) }()

	var rt *route
	for i := range routes {
		if d, ok := routes[i].match(r.URL.Path); ok {
			rt = &routes[i]
			c.deployment = d
			break
		}
	}
	if rt == nil {
		c.style = "openai"
		c.fail(404, "not_found_error", "unknown_url", "Unknown request URL: "+r.Method+" "+r.URL.Path)
		return
	}
	c.style, c.kind = rt.style, rt.kind
	rec.Style, rec.Kind = c.style, c.kind
	if r.Method != rt.method {
		c.fail(405, "invalid_request_error", "method_not_allowed", "method "+r.Method+" not allowed")
		return
	}
	if err != nil {
		c.fail(400, "invalid_request_error", "bad_body", "could not read body")
		return
	}
	if int64(len(raw)) > m.o.maxRequestBody {
		c.fail(413, "invalid_request_error", "request_too_large", "request body too large")
		return
	}

	rec.Auth = c.checkAuth()
	if c.style == "azure" && r.URL.Query().Get("api-version") == "" {
		// Azure answers a missing api-version before looking at the key.
		c.status = 404
		writeJSON(w, 404, map[string]interface{}{"error": map[string]string{
			"code": "404", "message": "Resource not found"}})
		return
	}
	if c.style == "anthropic" && r.Header.Get("anthropic-version") == "" {
		c.fail(400, "invalid_request_error", "", "anthropic-version: header is required")
		return
	}
	if c.style == "anthropic" && m.o.anthropicVersion != "" && r.Header.Get("anthropic-version") != m.o.anthropicVersion {
		c.fail(400, "invalid_request_error", "", "unsupported anthropic-version")
		return
	}
	if rec.Auth != "ok" {
		c.authFail()
		return
	}

	if c.kind != "models" {
		dec := json.NewDecoder(strings.NewReader(string(raw)))
		dec.UseNumber()
		if err := dec.Decode(&c.body); err != nil || c.body == nil {
			c.fail(400, "invalid_request_error", "invalid_json",
				"We could not parse the JSON body of your request.")
			return
		}
		if c.style == "bedrock" && !c.parseBedrock() || c.style != "bedrock" && !c.parseBody() {
			return
		}
		if c.kind != "embeddings" && !c.checkCacheHints() {
			return
		}
	}
	if _, ok := c.body["stream_options"]; ok && c.style == "azure" &&
		azureBeforeStreamOptions(r.URL.Query().Get("api-version")) {
		// As Azure: api-versions before 2024-09-01-preview refuse stream_options.
		c.fail(400, "invalid_request_error", "",
			"Unrecognized request argument supplied: stream_options")
		return
	}
	rec.Model, rec.Stream = c.model, c.stream

	sc := c.chooseScenario()
	rec.Scenario = sc
	if c.style == "bedrock" && bedrockScenario(c, sc) {
		return
	}
	scenarios[sc](c)
}

// checkAuth reports "ok", "missing", "bad_scheme" or "bad_key" for the style's auth header.
func (c *call) checkAuth() string {
	keys := c.m.acceptedKeys()
	var got string
	switch c.style {
	case "openai", "cohere", "bedrock":
		h := c.r.Header.Get("Authorization")
		if h == "" {
			return "missing"
		}
		if c.style == "bedrock" && strings.HasPrefix(h, "AWS4-HMAC-SHA256 ") {
			if len(c.r.Header.Values("Authorization")) > 1 {
				return "bad_scheme"
			}
			return string(c.checkSigV4(keys, c.raw))
		}
		if !strings.HasPrefix(h, "Bearer ") {
			return "bad_scheme"
		}
		got = strings.TrimPrefix(h, "Bearer ")
	case "azure":
		got = c.r.Header.Get("api-key")
	case "anthropic":
		got = c.r.Header.Get("x-api-key")
	case "vertex":
		got = c.r.Header.Get("x-goog-api-key")
		if c.r.URL.Query().Get("key") != "" {
			return "bad_scheme" // the agent keeps keys out of URLs
		}
		if h := c.r.Header.Get("Authorization"); h != "" {
			// A service-account key's access token (gtoken.go), on the regional path.
			if got != "" || len(c.r.Header.Values("Authorization")) > 1 || !strings.HasPrefix(h, "Bearer ") {
				return "bad_scheme"
			}
			return googleBearer(c.r, strings.TrimPrefix(h, "Bearer "))
		}

	}
	if got == "" {
		return "missing"
	}
	if len(c.r.Header.Values("Authorization"))+len(c.r.Header.Values("api-key"))+len(c.r.Header.Values("x-api-key"))+vertexKeyCount(c.r) > 1 {
		// More than one credential header: the agent should send exactly one.
		return "bad_scheme"
	}
	if len(keys) == 0 || keys[got] {
		return "ok"
	}
	return "bad_key"
}

// parseBody pulls model, stream flags and deterministic token counts out of the body.
func (c *call) parseBody() bool {
	if c.style == "vertex" {
		return c.vertexParseBody()
	}
	if v, ok := c.body["model"]; ok {
		s, isStr := v.(string)
		if !isStr {
			c.fail(400, "invalid_request_error", "invalid_type", "model must be a string")
			return false
		}
		c.model = s
	}
	if c.model == "" {
		c.model = c.deployment
	}
	if c.model == "" && (c.kind != "embeddings" || c.style == "cohere") {
		c.fail(400, "invalid_request_error", "missing_required_parameter", "you must provide a model parameter")
		return false
	}
	if v, ok := c.body["stream"]; ok {
		b, isBool := v.(bool)
		if !isBool {
			c.fail(400, "invalid_request_error", "invalid_type", "stream must be a boolean")
			return false
		}
		c.stream = b
	}
	if so, ok := c.body["stream_options"].(map[string]interface{}); ok {
		c.usage, _ = so["include_usage"].(bool)
	}
	if c.style == "cohere" {
		if msg := checkCohere(c.kind, c.body); msg != "" {
			c.fail(400, "invalid_request_error", "", msg)
			return false
		}
		// Cohere always reports usage in message-end (nousage clears this).
		c.usage = true
	}
	c.words = c.m.o.defaultWords
	for _, f := range []string{"max_tokens", "max_completion_tokens"} {
		if v, ok := c.body[f]; ok {
			n, isNum := v.(json.Number)
			i, err := strconv.Atoi(string(n))
			if !isNum || err != nil || i < 1 {
				c.fail(400, "invalid_request_error", "invalid_value", f+" must be a positive integer")
				return false
			}
			c.words = i
		}
	}
	if c.words > c.m.o.maxWords {
		c.words = c.m.o.maxWords
	}
	switch c.kind {
	case "chat", "messages", "count_tokens":
		msgs, ok := c.body["messages"].([]interface{})
		if !ok || len(msgs) == 0 {
			c.fail(400, "invalid_request_error", "invalid_value", "messages must be a non-empty array")
			return false
		}
		for _, mv := range msgs {
			mm, _ := mv.(map[string]interface{})
			c.prompt += countWords(mm["content"])
		}
		if c.kind == "count_tokens" {
			c.prompt += countWords(c.body["system"])
		}
		if c.kind == "messages" {
			c.prompt += countWords(c.body["system"])
			if _, ok := c.body["max_tokens"]; !ok {
				c.fail(400, "invalid_request_error", "", "max_tokens: Field required")
				return false
			}
			if msg := checkAnthropicTools(c.body); msg != "" {
				c.fail(400, "invalid_request_error", "", msg)
				return false
			}
		}
	case "embeddings":
		if c.style == "cohere" {
			c.prompt = countWords(c.body["texts"])
			break
		}
		in, ok := c.body["input"]
		if !ok {
			c.fail(400, "invalid_request_error", "missing_required_parameter", "you must provide an input parameter")
			return false
		}
		c.prompt = countWords(in)
	}
	return true
}

// countWords counts whitespace-separated words in a string, in an array of
// strings, and in content parts {"type":"text","text":...}; token arrays count
// one per element.
func countWords(v interface{}) int {
	switch t := v.(type) {
	case string:
		return len(strings.Fields(t))
	case []interface{}:
		n := 0
		for _, e := range t {
			switch p := e.(type) {
			case map[string]interface{}:
				n += countWords(p["text"])
			case json.Number:
				n++
			default:
				n += countWords(p)
			}
		}
		return n
	}
	return 0
}

func (c *call) chooseScenario() string {
	if h := c.r.Header.Get("X-Mock-Scenario"); h != "" {
		if _, ok := scenarios[h]; ok {
			return h
		}
	}
	if name := strings.TrimPrefix(c.model, "mock-"); name != c.model {
		if _, ok := scenarios[name]; ok {
			return name
		}
	}
	if s := c.m.nextControlled(); s != "" {
		return s
	}
	return c.m.o.defaultScenario
}

// fail answers with the error shape of the call's provider style.
func (c *call) fail(status int, typ, code, msg string) {
	c.status = status
	if c.style == "vertex" {
		c.vertexFail(status, msg)
		return
	}
	if c.style == "bedrock" {
		c.bedrockFail(status, msg)
		return
	}
	if c.style == "anthropic" {
		writeJSON(c.w, status, map[string]interface{}{"type": "error",
			"error": map[string]string{"type": typ, "message": msg}})
		return
	}
	if c.style == "cohere" {
		writeJSON(c.w, status, map[string]interface{}{"message": msg})
		return
	}
	var codeV interface{}
	if code != "" {
		codeV = code
	}
	writeJSON(c.w, status, map[string]interface{}{"error": map[string]interface{}{
		"message": msg, "type": typ, "param": nil, "code": codeV}})
}

// authFail never echoes the presented key (real providers echo a masked form;
// the mock echoes nothing so the canary check stays simple).
func (c *call) authFail() {
	switch c.style {
	case "openai":
		c.fail(401, "invalid_request_error", "invalid_api_key", "Incorrect API key provided.")
	case "azure":
		c.status = 401
		writeJSON(c.w, 401, map[string]interface{}{"error": map[string]string{"code": "401",
			"message": "Access denied due to invalid subscription key or wrong API endpoint."}})
	case "anthropic":
		c.fail(401, "authentication_error", "", "invalid x-api-key")
	case "cohere":
		c.fail(401, "", "", "invalid api token")
	case "vertex":
		c.vertexAuthFail()
	case "bedrock":
		c.bedrockAuthFail()
	}
}

// replyText is "w0 w1 ... w<n-1>"; piece i is what stream chunk i carries.
func piece(i int) string {
	if i == 0 {
		return "w0"
	}
	return " w" + strconv.Itoa(i)
}

func replyText(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString(piece(i))
	}
	return b.String()
}

// sse writes and flushes one server-sent event; errors mean the client left.
func (c *call) sse(event string, v interface{}) error {
	var b strings.Builder
	if event != "" {
		b.WriteString("event: " + event + "\n")
	}
	switch d := v.(type) {
	case string:
		b.WriteString("data: " + d + "\n\n")
	default:
		j, _ := json.Marshal(d)
		b.WriteString("data: " + string(j) + "\n\n")
	}
	if _, err := io.WriteString(c.w, b.String()); err != nil {
		c.progress(false)
		return err
	}
	if f, ok := c.w.(http.Flusher); ok {
		f.Flush()
	}
	err := c.r.Context().Err()
	c.progress(err == nil)
	return err
}

// progress counts one SSE event written, or marks the client gone.
func (c *call) progress(sent bool) {
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	if sent {
		c.rec.EventsSent++
	} else {
		c.rec.ClientGone = true
	}
}

func (c *call) startStream() {
	c.status = 200
	h := c.w.Header()
	h.Set("Content-Type", "text/event-stream")
	if c.style == "bedrock" {
		h.Set("Content-Type", bedrockStreamType)
	}
	h.Set("Cache-Control", "no-cache")
	c.w.WriteHeader(200)
	if f, ok := c.w.(http.Flusher); ok {
		f.Flush()
	}
}

// holdThenAbort sends nothing more until the client leaves (or -stall-max
// passes), then drops the connection.
func (c *call) holdThenAbort() {
	t := time.NewTimer(c.m.o.stallMax)
	defer t.Stop()
	select {
	case <-t.C:
	case <-c.r.Context().Done():
	}
	panic(http.ErrAbortHandler)
}

func (c *call) pause(d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-c.r.Context().Done():
		c.progress(false)
		return c.r.Context().Err()
	}
}

// openaiStream: the call's stream is OpenAI's format (OpenAI, Azure), which
// the scenarios that write raw OpenAI frames imitate; Anthropic and Cohere
// streams get the normal answer from those.
func (c *call) openaiStream() bool { return c.style == "openai" || c.style == "azure" }

// credential is the request's key, whichever header carried it.
func (c *call) credential() string {
	cred := strings.TrimPrefix(c.r.Header.Get("Authorization"), "Bearer ")
	if cred == "" {
		cred = c.r.Header.Get("api-key") + c.r.Header.Get("x-api-key") + c.r.Header.Get("x-goog-api-key")
	}
	return cred
}

func (c *call) id() string {
	switch c.style {
	case "anthropic":
		return fmt.Sprintf("msg_mock_%d", c.rec.Seq)
	case "azure":
		return fmt.Sprintf("chatcmpl-azmock-%d", c.rec.Seq)
	case "cohere":
		return fmt.Sprintf("cohere-mock-%d", c.rec.Seq)
	}
	return fmt.Sprintf("chatcmpl-mock-%d", c.rec.Seq)
}

func (c *call) openaiUsage() map[string]interface{} {
	return map[string]interface{}{"prompt_tokens": c.prompt, "completion_tokens": c.words,
		"total_tokens": c.prompt + c.words}
}

// chatBody is the complete non-streamed reply of chat/messages.
func (c *call) chatBody(text string) map[string]interface{} {
	if c.style == "cohere" {
		return map[string]interface{}{"id": c.id(), "finish_reason": "COMPLETE",
			"message": map[string]interface{}{"role": "assistant",
				"content": []interface{}{map[string]string{"type": "text", "text": text}}},
			"usage": c.cohereUsage()}
	}
	if c.style == "vertex" {
		return c.vertexBody(text)
	}
	if c.claude {
		return c.bedrockClaudeBody(text)
	}
	if c.style == "bedrock" {
		return c.bedrockBody(text)
	}
	if c.style == "anthropic" {
		return map[string]interface{}{"id": c.id(), "type": "message", "role": "assistant",
			"model": c.model, "content": []interface{}{map[string]string{"type": "text", "text": text}},
			"stop_reason": "end_turn", "stop_sequence": nil,
			"usage": c.anthropicUsage(c.words)}
	}
	return map[string]interface{}{"id": c.id(), "object": "chat.completion",
		"created": time.Now().Unix(), "model": c.model, "system_fingerprint": "fp_mock",
		"choices": []interface{}{map[string]interface{}{"index": 0,
			"message":       map[string]interface{}{"role": "assistant", "content": text},
			"logprobs":      nil,
			"finish_reason": "stop"}},
		"usage": c.openaiUsage()}
}

func (c *call) embeddingsBody() map[string]interface{} {
	if c.style == "bedrock" {
		return c.bedrockEmbeddingsBody()
	}
	if c.style == "vertex" {
		return c.vertexPredictBody()
	}
	if c.style == "cohere" {
		texts, _ := c.body["texts"].([]interface{})
		vecs := make([]interface{}, len(texts))
		for i := range vecs {
			vec := make([]float64, 8)
			for j := range vec {
				vec[j] = float64((i+1)*(j+1)) / 100
			}
			vecs[i] = vec
		}
		return map[string]interface{}{"id": c.id(), "response_type": "embeddings_by_type",
			"embeddings": map[string]interface{}{"float": vecs}, "texts": texts,
			"meta": map[string]interface{}{"api_version": map[string]string{"version": "2"},
				"billed_units": map[string]int{"input_tokens": c.prompt}}}
	}
	n := 1
	if arr, ok := c.body["input"].([]interface{}); ok && len(arr) > 0 {
		if _, isNum := arr[0].(json.Number); !isNum {
			n = len(arr)
		}
	}
	data := make([]interface{}, n)
	for i := range data {
		vec := make([]float64, 8)
		for j := range vec {
			vec[j] = float64((i+1)*(j+1)) / 100
		}
		data[i] = map[string]interface{}{"object": "embedding", "index": i, "embedding": vec}
	}
	return map[string]interface{}{"object": "list", "data": data, "model": c.model,
		"usage": map[string]int{"prompt_tokens": c.prompt, "total_tokens": c.prompt}}
}

func modelsBody() map[string]interface{} {
	var data []interface{}
	for _, name := range scenarioNames() {
		data = append(data, map[string]interface{}{"id": "mock-" + name, "object": "model",
			"created": 1700000000, "owned_by": "mock"})
	}
	return map[string]interface{}{"object": "list", "data": data}
}

// normal answers in full: JSON, or a stream with one word per chunk.
func (c *call) normal(interval time.Duration) {
	switch c.kind {
	case "models":
		c.status = 200
		writeJSON(c.w, 200, modelsBody())
		return
	case "embeddings":
		c.status = 200
		writeJSON(c.w, 200, c.embeddingsBody())
		return
	case "count_tokens":
		c.status = 200
		writeJSON(c.w, 200, map[string]int{"input_tokens": c.prompt})
		return
	}
	if !c.stream {
		c.status = 200
		writeJSON(c.w, 200, c.chatBody(replyText(c.words)))
		return
	}
	c.streamWords(c.words, interval)
}

// streamWords streams the first n words (n < c.words cuts the stream short:
// the caller then aborts the connection).
func (c *call) streamWords(n int, interval time.Duration) {
	c.startStream()
	if c.claude {
		c.bedrockClaudeStream(n, interval)
		return
	}
	if c.style == "bedrock" {
		c.bedrockStream(n, interval)
		return
	}
	if c.style == "anthropic" {
		c.anthropicStream(n, interval)
		return
	}
	if c.style == "cohere" {
		c.cohereStream(n, interval)
		return
	}
	if c.style == "vertex" {
		c.vertexStream(n, interval)
		return
	}
	created := time.Now().Unix()
	chunk := func(delta map[string]interface{}, finish interface{}) map[string]interface{} {
		ch := map[string]interface{}{"id": c.id(), "object": "chat.completion.chunk",
			"created": created, "model": c.model, "system_fingerprint": "fp_mock",
			"choices": []interface{}{map[string]interface{}{"index": 0, "delta": delta,
				"logprobs": nil, "finish_reason": finish}}}
		if c.usage {
			// As OpenAI: with include_usage every chunk but the last has "usage": null.
			ch["usage"] = nil
		}
		return ch
	}
	if c.style == "azure" {
		// Azure opens with a content-filter chunk that has no choices.
		if c.sse("", map[string]interface{}{"id": "", "object": "", "created": 0, "model": "",
			"choices": []interface{}{}, "prompt_filter_results": []interface{}{map[string]interface{}{
				"prompt_index": 0, "content_filter_results": map[string]interface{}{}}}}) != nil {
			return
		}
	}
	if c.sse("", chunk(map[string]interface{}{"role": "assistant", "content": ""}, nil)) != nil {
		return
	}
	for i := 0; i < n; i++ {
		if c.pause(interval) != nil {
			return
		}
		if c.sse("", chunk(map[string]interface{}{"content": piece(i)}, nil)) != nil {
			return
		}
	}
	if n < c.words {
		return
	}
	if c.sse("", chunk(map[string]interface{}{}, "stop")) != nil {
		return
	}
	if c.usage {
		u := map[string]interface{}{"id": c.id(), "object": "chat.completion.chunk", "created": created,
			"model": c.model, "choices": []interface{}{}, "usage": c.openaiUsage()}
		if c.sse("", u) != nil {
			return
		}
	}
	c.sse("", "[DONE]")
}

// anthropicMessageStart is the message_start event of an Anthropic stream.
func (c *call) anthropicMessageStart() map[string]interface{} {
	return map[string]interface{}{"type": "message_start", "message": map[string]interface{}{
		"id": c.id(), "type": "message", "role": "assistant", "model": c.model,
		"content": []interface{}{}, "stop_reason": nil, "stop_sequence": nil,
		"usage": c.anthropicUsage(1)}}
}

// textBlockStart opens an Anthropic stream's text block (index 0).
var textBlockStart = map[string]interface{}{"type": "content_block_start", "index": 0,
	"content_block": map[string]string{"type": "text", "text": ""}}

func (c *call) anthropicStream(n int, interval time.Duration) {
	ev := []struct {
		name string
		v    interface{}
	}{
		{"message_start", c.anthropicMessageStart()},
		{"content_block_start", textBlockStart},
		{"ping", map[string]string{"type": "ping"}},
	}
	for _, e := range ev {
		if c.sse(e.name, e.v) != nil {
			return
		}
	}
	for i := 0; i < n; i++ {
		if c.pause(interval) != nil {
			return
		}
		if c.sse("content_block_delta", map[string]interface{}{"type": "content_block_delta", "index": 0,
			"delta": map[string]string{"type": "text_delta", "text": piece(i)}}) != nil {
			return
		}
	}
	if n < c.words {
		return
	}
	delta := map[string]interface{}{"output_tokens": c.words}
	if c.webSearch {
		delta["server_tool_use"] = serverToolUse()
	}
	tail := []struct {
		name string
		v    interface{}
	}{
		{"content_block_stop", map[string]interface{}{"type": "content_block_stop", "index": 0}},
		{"message_delta", map[string]interface{}{"type": "message_delta",
			"delta": map[string]interface{}{"stop_reason": "end_turn", "stop_sequence": nil},
			"usage": delta}},
		{"message_stop", map[string]string{"type": "message_stop"}},
	}
	for _, e := range tail {
		if c.sse(e.name, e.v) != nil {
			return
		}
	}
}

// tailWriter adds tail to the write that ends with marker (a stream's end
// marker), so that both reach the client in one piece.
type tailWriter struct {
	http.ResponseWriter
	marker, tail string
}

func (t *tailWriter) Write(b []byte) (int, error) {
	if t.tail == "" || !strings.HasSuffix(string(b), t.marker) {
		return t.ResponseWriter.Write(b)
	}
	tail := t.tail
	t.tail = ""
	if _, err := t.ResponseWriter.Write(append(append([]byte{}, b...), tail...)); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (t *tailWriter) Flush() {
	if f, ok := t.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// gzipWriter compresses what is written; Flush sends what is compressed so far.
type gzipWriter struct {
	http.ResponseWriter
	gz *gzip.Writer
}

func (g *gzipWriter) WriteHeader(status int) {
	g.Header().Del("Content-Length") // the uncompressed length
	g.ResponseWriter.WriteHeader(status)
}

func (g *gzipWriter) Write(b []byte) (int, error) { return g.gz.Write(b) }

func (g *gzipWriter) Flush() {
	g.gz.Flush()
	if f, ok := g.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Scenarios, by name. A request picks one with model "mock-<name>", the
// X-Mock-Scenario header, or POST /_mock/scenario {"scenario":..., "count":N}.
var scenarios map[string]func(*call)

func scenarioNames() []string {
	return []string{"normal", "slow", "slowstream", "429", "500", "502", "503", "529", "401",
		"stall", "stallbody", "cut", "malformed", "oversized", "nousage", "tools", "302",
		"streamerror", "htmlusage", "endlesserror", "bursterror", "crstream", "stallmid",
		"streamerrortext", "streamerrorevent", "concatjson", "filtererror", "bigevent", "hugeline",
		"badevent", "bigframe", "donecut", "donetail", "gzip", "error200", "error200lead", "streamrawerror",
		"nostream", "length", "cache", "400", "websearch", "longprompt", "hugeusage", "fewerembeddings"}
}

// retryHeaders sets Retry-After (and retry-after-ms) on a 429 or 503: the
// control's values when set, else -retry-after on a 429 only.
// keyEchoError is OpenAI's error body for a refused key, echoing the
// request's credential as OpenAI's own message does (error200,
// error200lead, streamrawerror).
func (c *call) keyEchoError() map[string]interface{} {
	return map[string]interface{}{"error": map[string]interface{}{
		"message": "Incorrect API key provided: " + c.credential(),
		"type":    "invalid_request_error", "param": nil, "code": "invalid_api_key"}}
}

func (c *call) retryHeaders(status int) {
	c.m.mu.Lock()
	ra, ms := c.m.ctl.RetryAfter, c.m.ctl.RetryAfterMs
	c.m.mu.Unlock()
	if ra == nil && status == 429 {
		s := strconv.Itoa(c.m.o.retryAfter)
		ra = &s
	}
	if ra != nil && *ra != "" {
		c.w.Header().Set("Retry-After", *ra)
	}
	if ms != nil && *ms != "" {
		c.w.Header().Set("retry-after-ms", *ms)
	}
}

func errorScenario(status int) func(*call) {
	return func(c *call) {
		if status == 429 || status == 503 {
			c.retryHeaders(status)
		}
		switch {
		case status == 429:
			if c.style == "anthropic" {
				c.fail(429, "rate_limit_error", "", "Number of requests has exceeded your rate limit.")
			} else {
				c.fail(429, "requests", "rate_limit_exceeded", "Rate limit reached for requests.")
			}
		case status == 529 && c.style == "anthropic":
			c.fail(529, "overloaded_error", "", "Overloaded")
		case c.style == "anthropic":
			c.fail(status, "api_error", "", "Internal server error")
		default:
			c.fail(status, "server_error", "", "The server had an error while processing your request.")
		}
	}
}

func init() {
	scenarios = map[string]func(*call){
		"normal": func(c *call) { c.normal(c.m.o.streamInterval) },
		// cache: as normal, with prompt-cache reads and writes in the usage (cache.go).
		"cache": func(c *call) {
			c.cacheUsage = true
			c.normal(c.m.o.streamInterval)
		},
		// websearch, longprompt: as normal, billed beyond flat tokens (pricing.go).
		"websearch": func(c *call) {
			c.webSearch = true
			c.normal(c.m.o.streamInterval)
		},
		"longprompt": func(c *call) {
			c.prompt = mockLongPrompt
			c.normal(c.m.o.streamInterval)
		},
		"hugeusage": func(c *call) {
			c.prompt = mockHugePrompt
			c.normal(c.m.o.streamInterval)
		},
		"slow": func(c *call) {
			if c.pause(c.m.o.slow) == nil {
				c.normal(c.m.o.streamInterval)
			}
		},
		// fewerembeddings: as normal, but a Vertex :predict answer has one
		// prediction fewer than the instances sent (a malformed reply).
		"fewerembeddings": func(c *call) {
			c.fewerEmbeddings = true
			c.normal(c.m.o.streamInterval)
		},
		"slowstream": func(c *call) { c.normal(c.m.o.slowStream) },
		"429":        errorScenario(429),
		"500":        errorScenario(500),
		"502":        errorScenario(502),
		"503":        errorScenario(503),
		"529":        errorScenario(529),
		"401":        func(c *call) { c.authFail() },
		// 400: the provider refuses the request in its own words, in its
		// style's error shape: a context-length refusal (OpenAI's code and
		// param where the style has them) that quotes the request's
		// credential in the middle and carries a CR LF, as no real provider
		// should but one might.
		"400": func(c *call) {
			if c.style == "anthropic" {
				c.fail(400, "invalid_request_error", "",
					"prompt is too long: 9 tokens > 8 maximum (key "+c.credential()+")\r\nX-Injected: 1")
				return
			}
			c.status = 400
			if c.style == "openai" || c.style == "azure" {
				writeJSON(c.w, 400, map[string]interface{}{"error": map[string]interface{}{
					"message": "This model's maximum context length is 8 tokens. However, your messages " +
						"resulted in 9 tokens (key " + c.credential() + ").\r\nX-Injected: 1",
					"type": "invalid_request_error", "param": "messages",
					"code": "context_length_exceeded"}})
				return
			}
			c.fail(400, "invalid_request_error", "",
				"input is too long for the model (key "+c.credential()+")\r\nX-Injected: 1")
		},
		// stall: headers never come; the mock holds the request until the
		// client gives up (or -stall-max passes).
		"stall": func(c *call) {
			c.status = 0
			c.holdThenAbort()
		},
		// stallbody: 200 and its headers (a stream's, or JSON's), then no
		// byte of the body until the client leaves (or -stall-max passes):
		// a first token that never comes.
		"stallbody": func(c *call) {
			if c.stream {
				c.startStream()
			} else {
				c.status = 200
				c.w.Header().Set("Content-Type", "application/json")
				c.w.WriteHeader(200)
				if f, ok := c.w.(http.Flusher); ok {
					f.Flush()
				}
			}
			c.holdThenAbort()
		},
		// stallmid: 200, then the first two words of a stream (or the first
		// bytes of a JSON answer), then nothing until the client leaves (or
		// -stall-max passes): a gap between two body chunks, which the client's
		// idle timeout bounds.
		"stallmid": func(c *call) {
			if c.stream && c.words > 2 {
				c.streamWords(2, 0)
			} else {
				c.status = 200
				c.w.Header().Set("Content-Type", "application/json")
				c.w.WriteHeader(200)
				_, _ = c.w.Write([]byte(`{"id": "chatcmpl-mock", "object": "chat.completion", `))
				if f, ok := c.w.(http.Flusher); ok {
					f.Flush()
				}
			}
			c.holdThenAbort()
		},
		// nousage: a server that reports no usage (some local ones): no
		// "usage" in an answer, include_usage ignored in a stream.
		"nousage": func(c *call) {
			c.usage = false
			if !c.stream && (c.kind == "chat" || c.kind == "messages") {
				b := c.chatBody(replyText(c.words))
				delete(b, "usage")
				delete(b, "usageMetadata")
				c.status = 200
				writeJSON(c.w, 200, b)
				return
			}
			c.normal(c.m.o.streamInterval)
		},
		// length: the answer cut by the output cap (OpenAI finish_reason
		// "length", Anthropic stop_reason "max_tokens"); streams as normal.
		"length": func(c *call) {
			if c.stream || (c.kind != "chat" && c.kind != "messages") {
				c.normal(c.m.o.streamInterval)
				return
			}
			b := c.chatBody(replyText(c.words))
			if ch, ok := b["choices"].([]interface{}); ok && len(ch) > 0 {
				ch[0].(map[string]interface{})["finish_reason"] = "length"
			}
			if _, ok := b["stop_reason"]; ok {
				b["stop_reason"] = "max_tokens"
			}
			c.status = 200
			writeJSON(c.w, 200, b)
		},
		// 302: a redirect (to a port nothing listens on); the agent never follows one.
		"302": func(c *call) {
			c.status = 302
			c.w.Header().Set("Location", "https://127.0.0.1:1/v1/elsewhere")
			c.w.WriteHeader(302)
		},
		// streamerror: a stream that begins, then sends an error event in its
		// data whose message echoes the request's credential, as some
		// providers' error texts echo key fragments (non-streamed: the same
		// as a 200 answer, the scenario is about streams).
		"streamerror": func(c *call) {
			if !c.stream {
				c.normal(c.m.o.streamInterval)
				return
			}
			c.streamWords(2, c.m.o.streamInterval)
			cred := c.credential()
			if c.style == "cohere" {
				c.cohereStreamError()
				return
			}
			if c.style == "anthropic" {
				c.sse("error", map[string]interface{}{"type": "error", "error": map[string]interface{}{
					"type": "authentication_error", "message": "invalid x-api-key " + cred}})
				return
			}
			c.sse("", map[string]interface{}{"error": map[string]interface{}{
				"message": "Incorrect API key provided: " + cred, "type": "invalid_request_error",
				"code": "invalid_api_key"}})
		},
		// bursterror: a stream's first frames and an error event written as
		// separate HTTP chunks in one flush (one TCP write): a client reads
		// them in one go, after holding the stream back at its first frame.
		"bursterror": func(c *call) {
			if !c.stream || !c.openaiStream() {
				c.normal(c.m.o.streamInterval)
				return
			}
			c.status = 200
			c.w.Header().Set("Content-Type", "text/event-stream")
			c.w.Header().Set("Cache-Control", "no-cache")
			c.w.WriteHeader(200)
			chunk := func(content string) string {
				j, _ := json.Marshal(map[string]interface{}{"id": c.id(), "object": "chat.completion.chunk",
					"model": c.model, "choices": []interface{}{map[string]interface{}{"index": 0,
						"delta": map[string]interface{}{"content": content}, "finish_reason": nil}}})
				return "data: " + string(j) + "\n\n"
			}
			for _, part := range []string{chunk(""), chunk(piece(0)), chunk(piece(1)),
				`data: {"error":{"message":"The server had an error while processing your request.","type":"server_error"}}` + "\n\n"} {
				io.WriteString(c.w, part) // one HTTP chunk each, not flushed yet
			}
			if f, ok := c.w.(http.Flusher); ok {
				f.Flush()
			}
		},
		// crstream: a complete OpenAI-style stream whose lines end in CR only
		// (allowed by the SSE format).
		"crstream": func(c *call) {
			if !c.stream || !c.openaiStream() {
				c.normal(c.m.o.streamInterval)
				return
			}
			c.status = 200
			c.w.Header().Set("Content-Type", "text/event-stream")
			c.w.WriteHeader(200)
			write := func(v interface{}) {
				j, _ := json.Marshal(v)
				io.WriteString(c.w, "data: "+string(j)+"\r\r")
				if f, ok := c.w.(http.Flusher); ok {
					f.Flush()
				}
			}
			delta := func(d map[string]interface{}, finish interface{}) map[string]interface{} {
				return map[string]interface{}{"id": c.id(), "object": "chat.completion.chunk", "model": c.model,
					"choices": []interface{}{map[string]interface{}{"index": 0, "delta": d, "finish_reason": finish}}}
			}
			write(delta(map[string]interface{}{"role": "assistant", "content": ""}, nil))
			for i := 0; i < c.words; i++ {
				write(delta(map[string]interface{}{"content": piece(i)}, nil))
			}
			write(delta(map[string]interface{}{}, "stop"))
			if c.usage {
				write(map[string]interface{}{"id": c.id(), "object": "chat.completion.chunk", "model": c.model,
					"choices": []interface{}{}, "usage": c.openaiUsage()})
			}
			io.WriteString(c.w, "data: [DONE]\r\r")
		},
		// endlesserror: a 503 whose body (JSON padding, 4 KiB every 50 ms, never
		// idle) never ends until the client leaves (or -stall-max passes).
		"endlesserror": func(c *call) {
			c.status = 503
			c.w.Header().Set("Content-Type", "application/json")
			c.w.WriteHeader(503)
			io.WriteString(c.w, `{"error":{"message":"`)
			pad := strings.Repeat("x", 4<<10)
			deadline := time.Now().Add(c.m.o.stallMax)
			for time.Now().Before(deadline) {
				if _, err := io.WriteString(c.w, pad); err != nil {
					return
				}
				if f, ok := c.w.(http.Flusher); ok {
					f.Flush()
				}
				if c.pause(50*time.Millisecond) != nil {
					return
				}
			}
			panic(http.ErrAbortHandler)
		},
		// error200: a 200 whose body is the provider's error echoing the
		// request's credential, as some gateways and OpenAI-compatible servers
		// answer. Streamed too: the same JSON (not an event stream), ending in
		// a blank line, which an SSE reader takes for the end of a frame;
		// labelled application/json (OpenAI style) or, as if the server had
		// set a stream's headers before it failed, text/event-stream (Azure).
		"error200": func(c *call) {
			if c.stream && c.openaiStream() {
				c.status = 200
				ct := "application/json"
				if c.style == "azure" {
					ct = "text/event-stream"
				}
				c.w.Header().Set("Content-Type", ct)
				c.w.WriteHeader(200)
				b, _ := json.Marshal(c.keyEchoError())
				c.w.Write(append(b, '\n', '\n'))
				return
			}
			c.status = 200
			if c.style == "anthropic" {
				writeJSON(c.w, 200, map[string]interface{}{"type": "error", "error": map[string]interface{}{
					"type": "authentication_error", "message": "invalid x-api-key " + c.credential()}})
				return
			}
			if c.style == "cohere" {
				writeJSON(c.w, 200, map[string]interface{}{"message": "invalid api token " + c.credential()})
				return
			}
			writeJSON(c.w, 200, c.keyEchoError())
		},
		// error200lead: error200's stream answer, labelled text/event-stream,
		// after a UTF-8 BOM and a blank line sent on their own (a separate
		// read for the client).
		"error200lead": func(c *call) {
			if !c.stream || !c.openaiStream() {
				c.normal(c.m.o.streamInterval)
				return
			}
			c.status = 200
			c.w.Header().Set("Content-Type", "text/event-stream")
			c.w.WriteHeader(200)
			c.w.Write([]byte("\xEF\xBB\xBF\n"))
			if f, ok := c.w.(http.Flusher); ok {
				f.Flush()
			}
			if c.pause(50*time.Millisecond) != nil {
				return
			}
			b, _ := json.Marshal(c.keyEchoError())
			c.w.Write(append(b, '\n', '\n'))
		},
		// nostream: the normal answer as if "stream" had not been asked for
		// (one JSON document, application/json, with its usage), as a server
		// that ignores the field answers.
		"nostream": func(c *call) {
			c.stream = false
			c.normal(c.m.o.streamInterval)
		},
		// streamrawerror: a stream of two words, then the provider's error as
		// a bare JSON line echoing the credential (no "data:" field), ended by
		// a blank line, as a server that fails mid-stream may write it.
		"streamrawerror": func(c *call) {
			if !c.stream || !c.openaiStream() {
				c.normal(c.m.o.streamInterval)
				return
			}
			c.streamWords(2, c.m.o.streamInterval)
			b, _ := json.Marshal(c.keyEchoError())
			c.w.Write(append(b, '\n', '\n'))
			if f, ok := c.w.(http.Flusher); ok {
				f.Flush()
			}
		},
		// streamerrortext: as streamerror, in the shape of older servers
		// (TGI): a top-level "error" that is a string, echoing the credential.
		// Anthropic style: a data-only frame {"error": {...}} without a type
		// (a gateway's shape), then the stream's end as if nothing happened.
		"streamerrortext": func(c *call) {
			if c.stream && c.style == "anthropic" {
				c.streamWords(2, c.m.o.streamInterval)
				c.sse("", map[string]interface{}{"error": map[string]interface{}{
					"message": "upstream failed for key " + c.credential()}})
				c.sse("message_stop", map[string]string{"type": "message_stop"})
				return
			}
			if !c.stream || !c.openaiStream() {
				c.normal(c.m.o.streamInterval)
				return
			}
			c.streamWords(2, c.m.o.streamInterval)
			c.sse("", map[string]interface{}{"error": "upstream failed for key " + c.credential()})
		},
		// streamerrorevent: an "event: error" whose data has no "error" member
		// ({"message": ...} echoing the credential), then a usage chunk and
		// [DONE] as if nothing had happened. Anthropic style: "event: error"
		// whose data's type is not "error" ({"type": "overloaded", "error":
		// {...}} echoing the credential), then message_stop.
		"streamerrorevent": func(c *call) {
			if c.stream && c.style == "anthropic" {
				c.streamWords(2, c.m.o.streamInterval)
				c.sse("error", map[string]interface{}{"type": "overloaded", "error": map[string]interface{}{
					"message": "failed for key " + c.credential()}})
				c.sse("message_stop", map[string]string{"type": "message_stop"})
				return
			}
			if !c.stream || !c.openaiStream() {
				c.normal(c.m.o.streamInterval)
				return
			}
			c.streamWords(2, c.m.o.streamInterval)
			c.sse("error", map[string]interface{}{"message": "failed for key " + c.credential(),
				"type": "server_error"})
			c.sse("", map[string]interface{}{"id": c.id(), "object": "chat.completion.chunk",
				"model": c.model, "choices": []interface{}{}, "usage": c.openaiUsage()})
			c.sse("", "[DONE]")
		},
		// streamnoise: a normal stream with, after its first frame, comment
		// lines (one posing as the agent's ": x-byok-usage" line, one quoting
		// the credential) and id and retry lines (the id the credential).
		"streamnoise": func(c *call) {
			if !c.stream || !c.openaiStream() {
				c.normal(c.m.o.streamInterval)
				return
			}
			cred := c.credential()
			c.w = &tailWriter{ResponseWriter: c.w, marker: "\n\n",
				tail: `: x-byok-usage {"cost_usd":0,"note":"spoofed"}` + "\n: key " + cred + "\n\n" +
					"id: " + cred + "\nretry: 5\n\n"}
			c.streamWords(c.words, c.m.o.streamInterval)
		},
		// concatjson: a 200 whose body is two JSON objects back to back, the
		// second a usage block: starts with '{', ends with '}', not one document.
		"concatjson": func(c *call) {
			c.status = 200
			c.w.Header().Set("Content-Type", "application/json")
			c.w.WriteHeader(200)
			io.WriteString(c.w, `{"id":"x","object":"chat.completion","choices":[]}`+
				`{"usage":{"prompt_tokens":3,"completion_tokens":2}}`)
		},
		// filtererror: as bursterror, but the frame before the error event
		// carries Azure's content_filter_results with a nested "error" object
		// (the filter could not run): a legitimate frame, to be forwarded.
		"filtererror": func(c *call) {
			if !c.stream || !c.openaiStream() {
				c.normal(c.m.o.streamInterval)
				return
			}
			c.startStream()
			c.sse("", map[string]interface{}{"id": c.id(), "object": "chat.completion.chunk",
				"model": c.model, "choices": []interface{}{map[string]interface{}{"index": 0,
					"delta": map[string]interface{}{"role": "assistant", "content": ""}}}})
			c.pause(50 * time.Millisecond)
			filtered := map[string]interface{}{"id": c.id(), "object": "chat.completion.chunk",
				"model": c.model, "choices": []interface{}{map[string]interface{}{"index": 0,
					"delta": map[string]interface{}{"content": piece(0)},
					"content_filter_results": map[string]interface{}{"error": map[string]interface{}{
						"code": "content_filter_error", "message": "filter unavailable"}}}}}
			j, _ := json.Marshal(filtered)
			chunk := func(content string) string {
				j, _ := json.Marshal(map[string]interface{}{"id": c.id(), "object": "chat.completion.chunk",
					"model": c.model, "choices": []interface{}{map[string]interface{}{"index": 0,
						"delta": map[string]interface{}{"content": content}, "finish_reason": nil}}})
				return "data: " + string(j) + "\n\n"
			}
			io.WriteString(c.w, "data: "+string(j)+"\n\n"+chunk(piece(1))+
				`data: {"error":{"message":"The server had an error while processing your request.","type":"server_error"}}`+"\n\n")
			if f, ok := c.w.(http.Flusher); ok {
				f.Flush()
			}
		},
		// bigevent: one 7.5 MB SSE event (7,500 data lines of 1,000 bytes;
		// the agent's client reads it in pieces of ~16 KB), then a word, the
		// usage chunk and [DONE]: a large event must cost linear time.
		"bigevent": func(c *call) {
			if !c.stream || !c.openaiStream() {
				c.normal(c.m.o.streamInterval)
				return
			}
			c.startStream()
			line := "data: " + strings.Repeat("x", 993) + "\n"
			for i := 0; i < 7500; i++ {
				if _, err := io.WriteString(c.w, line); err != nil {
					return
				}
			}
			io.WriteString(c.w, "\n")
			c.sse("", map[string]interface{}{"id": c.id(), "object": "chat.completion.chunk",
				"model": c.model, "choices": []interface{}{map[string]interface{}{"index": 0,
					"delta": map[string]interface{}{"content": piece(0)}, "finish_reason": "stop"}}})
			c.sse("", map[string]interface{}{"id": c.id(), "object": "chat.completion.chunk",
				"model": c.model, "choices": []interface{}{}, "usage": c.openaiUsage()})
			c.sse("", "[DONE]")
		},
		// hugeline: two words, then a data line of 1.5 MB (past the agent's
		// SSE line limit).
		"hugeline": func(c *call) {
			if !c.stream || !c.openaiStream() {
				c.normal(c.m.o.streamInterval)
				return
			}
			c.streamWords(2, c.m.o.streamInterval)
			io.WriteString(c.w, "data: "+strings.Repeat("y", 1536*1024)+"\n\n")
		},
		// bigframe: two words, then one frame of 9 MB of comment lines (1 KB
		// each) that never ends: no event, no long line, but a frame larger
		// than the agent's upstream.max_response_bytes in the e2e config.
		"bigframe": func(c *call) {
			if !c.stream || !c.openaiStream() {
				c.normal(c.m.o.streamInterval)
				return
			}
			c.streamWords(2, c.m.o.streamInterval)
			line := ": " + strings.Repeat("y", 1021) + "\n"
			for i := 0; i < 9*1024; i++ {
				if _, err := io.WriteString(c.w, line); err != nil {
					return
				}
			}
			io.WriteString(c.w, "\n")
		},
		// badevent: an Anthropic stream whose second event's data is not JSON.
		"badevent": func(c *call) {
			if !c.stream || c.openaiStream() {
				c.normal(c.m.o.streamInterval)
				return
			}
			c.streamWords(2, c.m.o.streamInterval)
			if c.style == "cohere" {
				c.sse("content-delta", "{not json")
				return
			}
			c.sse("content_block_delta", "{not json")
		},
		// htmlusage: a 200 whose body is not JSON (an HTML error page from a
		// proxy in front of the provider) but holds a usage-like pattern.
		"htmlusage": func(c *call) {
			c.status = 200
			c.w.Header().Set("Content-Type", "application/json")
			c.w.WriteHeader(200)
			io.WriteString(c.w, `<html><body><pre>{"usage":{"prompt_tokens":1,"completion_tokens":1}}</pre></body></html>`)
		},
		// tools: an Anthropic answer calling the request's tools (see tools.go).
		"tools": func(c *call) { c.toolsAnswer() },
		// donecut: the whole stream, its end marker ([DONE], message_stop)
		// included, then the connection is reset instead of the body's end.
		"donecut": func(c *call) {
			c.normal(c.m.o.streamInterval)
			if f, ok := c.w.(http.Flusher); ok {
				f.Flush()
			}
			if c.stream {
				panic(http.ErrAbortHandler)
			}
		},
		// donetail: the whole stream, then, in the same write as its end
		// marker ([DONE], message_stop), frames that no client should see: a
		// word, new usage (OpenAI: a usage chunk, then [DONE] again;
		// Anthropic: message_delta); then nothing until the client leaves
		// (or -stall-max). Non-streamed: the normal answer.
		"donetail": func(c *call) {
			if !c.stream {
				c.normal(c.m.o.streamInterval)
				return
			}
			tw := &tailWriter{ResponseWriter: c.w, marker: "data: [DONE]\n\n",
				tail: `data: {"id":"` + c.id() + `","object":"chat.completion.chunk","model":"` + c.model +
					`","choices":[{"index":0,"delta":{"content":" LATE"},"finish_reason":null}]}` + "\n\n" +
					`data: {"id":"` + c.id() + `","object":"chat.completion.chunk","model":"` + c.model +
					`","choices":[],"usage":{"prompt_tokens":999,"completion_tokens":999,"total_tokens":1998}}` + "\n\n" +
					"data: [DONE]\n\n"}
			if c.style == "cohere" {
				tw.marker, tw.tail = c.cohereDoneTail()
			}
			if c.style == "anthropic" {
				tw.marker = `{"type":"message_stop"}` + "\n\n"
				tw.tail = "event: content_block_delta\n" +
					`data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" LATE"}}` + "\n\n" +
					"event: message_delta\n" +
					`data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":999}}` + "\n\n"
			}
			c.w = tw
			c.normal(c.m.o.streamInterval)
			c.pause(c.m.o.stallMax)
		},
		// gzip: the normal answer (JSON or stream, each event flushed),
		// gzip-compressed and labelled Content-Encoding: gzip, whatever the
		// request's Accept-Encoding.
		"gzip": func(c *call) {
			c.w.Header().Set("Content-Encoding", "gzip")
			gw := &gzipWriter{ResponseWriter: c.w, gz: gzip.NewWriter(c.w)}
			c.w = gw
			c.normal(c.m.o.streamInterval)
			gw.gz.Close()
		},
		// cut: half the answer, then the connection is reset.
		"cut": func(c *call) {
			if c.stream && (c.kind == "chat" || c.kind == "messages") {
				c.streamWords(c.words/2, c.m.o.streamInterval)
				panic(http.ErrAbortHandler)
			}
			b, _ := json.Marshal(c.chatBody(replyText(c.words)))
			c.status = 200
			c.w.Header().Set("Content-Type", "application/json")
			c.w.Header().Set("Content-Length", strconv.Itoa(len(b)))
			c.w.WriteHeader(200)
			c.w.Write(b[:len(b)/2])
			if f, ok := c.w.(http.Flusher); ok {
				f.Flush()
			}
			panic(http.ErrAbortHandler)
		},
		// malformed: a 200 whose JSON (or SSE data) does not parse.
		"malformed": func(c *call) {
			c.status = 200
			if c.stream {
				c.startStream()
				c.sse("", `{"id":"chatcmpl-broken","choices":[{"delta":{"content":"w0"`)
				c.sse("", "[DONE]")
				return
			}
			c.w.Header().Set("Content-Type", "application/json")
			c.w.WriteHeader(200)
			io.WriteString(c.w, `{"id":"chatcmpl-broken","object":"chat.completion","choices":[{"message":{"content":`)
		},
		// oversized: a well-formed reply of -oversized-bytes.
		"oversized": func(c *call) {
			c.status = 200
			total := c.m.o.oversizedBytes
			if c.stream {
				c.startStream()
				bw := bufio.NewWriterSize(c.w, 64<<10)
				pad := strings.Repeat("x", 4000)
				line := `data: {"id":"` + c.id() + `","object":"chat.completion.chunk","model":"` + c.model +
					`","choices":[{"index":0,"delta":{"content":"` + pad + `"},"finish_reason":null}]}` + "\n\n"
				for sent := int64(0); sent < total; sent += int64(len(line)) {
					if _, err := bw.WriteString(line); err != nil {
						return
					}
				}
				bw.WriteString("data: [DONE]\n\n")
				bw.Flush()
				return
			}
			head := `{"id":"` + c.id() + `","object":"chat.completion","model":"` + c.model +
				`","choices":[{"index":0,"message":{"role":"assistant","content":"`
			tailS := `"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`
			padN := total - int64(len(head)+len(tailS))
			if padN < 0 {
				padN = 0
			}
			c.w.Header().Set("Content-Type", "application/json")
			c.w.Header().Set("Content-Length", strconv.FormatInt(int64(len(head)+len(tailS))+padN, 10))
			c.w.WriteHeader(200)
			bw := bufio.NewWriterSize(c.w, 64<<10)
			bw.WriteString(head)
			chunk := strings.Repeat("x", 64<<10)
			for left := padN; left > 0; {
				n := int64(len(chunk))
				if left < n {
					n = left
				}
				if _, err := bw.WriteString(chunk[:n]); err != nil {
					return
				}
				left -= n
			}
			bw.WriteString(tailS)
			bw.Flush()
		},
	}
	for _, n := range scenarioNames() {
		if _, ok := scenarios[n]; !ok {
			log.Fatalf("scenario %s listed but not defined", n)
		}
	}
}
