// SPDX-License-Identifier: MPL-2.0

package vaultsim

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/plugin/pb"
	"google.golang.org/grpc/status"
)

// maxRequestSize is Vault's default max_request_size (32 MiB).
const maxRequestSize = 32 << 20

// apiError is an error with an HTTP status and Vault's {"errors": [...]} body.
type apiError struct {
	code int
	msgs []string
}

func (e *apiError) Error() string { return strings.Join(e.msgs, "; ") }

func errStatus(code int, msgs ...string) *apiError {
	if msgs == nil {
		msgs = []string{}
	}
	return &apiError{code: code, msgs: msgs}
}

var errPermissionDenied = errStatus(http.StatusForbidden, "permission denied")

// reqCtx is one parsed HTTP request.
type reqCtx struct {
	w      http.ResponseWriter
	r      *http.Request
	path   string // after /v1/
	op     string
	data   map[string]any
	token  string
	tok    *Token // nil when no valid token
	remote string
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, err error) {
	if ae, ok := err.(*apiError); ok {
		writeJSON(w, ae.code, map[string]any{"errors": ae.msgs})
		return
	}
	writeJSON(w, http.StatusInternalServerError, map[string]any{"errors": []string{err.Error()}})
}

// envelope is Vault's response body.
func envelope(data any, warnings []string, auth any) map[string]any {
	var warn any
	if len(warnings) > 0 {
		warn = warnings
	}
	return map[string]any{
		"request_id": newUUID(), "lease_id": "", "renewable": false, "lease_duration": 0,
		"data": data, "wrap_info": nil, "warnings": warn, "auth": auth, "mount_type": "",
	}
}

// ServeHTTP implements the stand-in's subset of Vault's HTTP API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Vault's API sits behind Go's http.ServeMux, which redirects a path with
	// "//", "." or ".." segments to the cleaned path (301) before any handler,
	// and so any ACL check, sees it.
	if p := cleanPath(r.URL.Path); p != r.URL.Path && r.Method != http.MethodConnect {
		u := &url.URL{Path: p, RawQuery: r.URL.RawQuery}
		http.Redirect(w, r, u.String(), http.StatusMovedPermanently)
		return
	}
	if !strings.HasPrefix(r.URL.Path, "/v1/") {
		writeErr(w, errStatus(http.StatusNotFound))
		return
	}
	rc := &reqCtx{w: w, r: r, path: strings.TrimPrefix(r.URL.Path, "/v1/"), remote: r.RemoteAddr}
	if err := s.namespace(rc); err != nil {
		writeErr(w, err)
		return
	}
	if err := s.parse(rc); err != nil {
		writeErr(w, err)
		return
	}
	if err := s.route(rc); err != nil {
		writeErr(w, err)
	}
}

// namespace strips the namespace a request names from its path (Vault
// Enterprise: the X-Vault-Namespace header, prefixed to the path, which may
// name the namespace or the part of it the header left out). With
// Options.Namespace set, a request that does not end up in it is refused
// (sys/health excepted, which Vault answers in any namespace).
func (s *Server) namespace(rc *reqCtx) error {
	ns := s.opts.Namespace
	hdr := strings.Trim(rc.r.Header.Get("X-Vault-Namespace"), "/")
	if hdr == "root" {
		hdr = ""
	}
	if ns == "" {
		if hdr != "" {
			return errStatus(http.StatusNotFound, fmt.Sprintf("namespace %q not found", hdr))
		}
		return nil
	}
	want := ns
	switch {
	case hdr == ns:
		want = ""
	case hdr == "":
	case strings.HasPrefix(ns, hdr+"/"):
		want = strings.TrimPrefix(ns, hdr+"/")
	default:
		return errPermissionDenied
	}
	if want != "" {
		if !strings.HasPrefix(rc.path, want+"/") {
			if rc.path == "sys/health" {
				return nil
			}
			return errPermissionDenied
		}
		rc.path = strings.TrimPrefix(rc.path, want+"/")
	}
	return nil
}

// parse maps method and query to the logical operation and request data
// (http/logical.go buildLogicalRequestNoAuth).
func (s *Server) parse(rc *reqCtx) error {
	q := rc.r.URL.Query()
	useQuery := true
	switch rc.r.Method {
	case http.MethodGet:
		rc.op = "read"
		if v := q.Get("list"); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return errStatus(http.StatusBadRequest)
			}
			if b {
				q.Del("list")
				rc.op = "list"
			}
		}
	case "LIST":
		rc.op = "list"
	case http.MethodPut, http.MethodPost:
		rc.op, useQuery = "update", false
	case http.MethodDelete:
		rc.op = "delete"
	case http.MethodPatch:
		rc.op, useQuery = "patch", false
		ct, _, err := mime.ParseMediaType(rc.r.Header.Get("Content-Type"))
		if err != nil {
			return errStatus(http.StatusBadRequest, err.Error())
		}
		if ct != "application/merge-patch+json" {
			return errStatus(http.StatusUnsupportedMediaType,
				"PATCH requires Content-Type of application/merge-patch+json, provided "+ct)
		}
	case http.MethodHead:
		rc.op = "header"
	case "HELP":
		rc.op = "help"
	default:
		return errStatus(http.StatusMethodNotAllowed)
	}
	if rc.op == "list" && !strings.HasSuffix(rc.path, "/") {
		rc.path += "/"
	}
	// http/help.go: any non-empty help parameter (or the HELP method).
	if q.Get("help") != "" {
		rc.op = "help"
	}
	if useQuery {
		// http/logical.go parseQuery: single value -> string, repeated ->
		// list, "help" dropped; no parameters -> null.
		for k, v := range q {
			if k == "help" || len(v) == 0 {
				continue
			}
			if rc.data == nil {
				rc.data = map[string]any{}
			}
			if len(v) == 1 {
				rc.data[k] = v[0]
			} else {
				l := make([]any, len(v))
				for i := range v {
					l[i] = v[i]
				}
				rc.data[k] = l
			}
		}
		return s.parseToken(rc)
	}
	body, err := io.ReadAll(io.LimitReader(rc.r.Body, maxRequestSize+1))
	if err != nil {
		return errStatus(http.StatusBadRequest, "error reading data")
	}
	if len(body) > maxRequestSize {
		return errStatus(http.StatusRequestEntityTooLarge, "http: request body too large")
	}
	if len(bytes.TrimSpace(body)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&rc.data); err != nil {
			return errStatus(http.StatusBadRequest, "error parsing JSON")
		}
	}
	return s.parseToken(rc)
}

func (s *Server) parseToken(rc *reqCtx) error {
	rc.token = rc.r.Header.Get("X-Vault-Token")
	if rc.token == "" {
		if a := rc.r.Header.Get("Authorization"); strings.HasPrefix(a, "Bearer ") {
			rc.token = strings.TrimSpace(strings.TrimPrefix(a, "Bearer "))
		}
	}
	return nil
}

// requireToken resolves the token or fails with 403.
func (s *Server) requireToken(rc *reqCtx) error {
	t := s.auth.lookup(rc.token)
	if t == nil {
		return errPermissionDenied
	}
	rc.tok = t
	return nil
}

// authorize checks op on path against the token's ACL.
func (s *Server) authorize(rc *reqCtx, op, path string, sudo bool) error {
	if rc.tok == nil {
		if err := s.requireToken(rc); err != nil {
			return err
		}
	}
	if !s.auth.aclFor(rc.tok).Allowed(op, path, sudo) {
		return errPermissionDenied
	}
	return nil
}

// authorizeOp checks op on path; an update is also allowed by create (the
// stand-in's auth endpoints do not tell a new entry from an existing one).
func (s *Server) authorizeOp(rc *reqCtx, op, path string, sudo bool) error {
	err := s.authorize(rc, op, path, sudo)
	if err != nil && op == "update" && s.authorize(rc, "create", path, sudo) == nil {
		return nil
	}
	return err
}

func (s *Server) route(rc *reqCtx) error {
	p := rc.path
	mount := s.opts.Mount + "/"
	switch {
	case p == mount[:len(mount)-1] || strings.HasPrefix(p, mount):
		return s.handleLogical(rc, strings.TrimPrefix(strings.TrimPrefix(p, mount[:len(mount)-1]), "/"))
	case p == "sys/health":
		writeJSON(rc.w, http.StatusOK, map[string]any{
			"initialized": true, "sealed": false, "standby": false,
			"performance_standby": false, "replication_performance_mode": "disabled",
			"replication_dr_mode": "disabled", "server_time_utc": time.Now().Unix(),
			"version": VaultVersion, "cluster_name": "vaultsim", "cluster_id": s.uuid,
		})
		return nil
	case p == "sys/plugins/reload/backend":
		return s.handleReload(rc)
	case p == "sys/internal/specs/openapi":
		return s.handleOpenAPI(rc)
	case strings.HasPrefix(p, "sys/internal/ui/mounts/"):
		// The vault CLI's KV preflight (`vault read byok/...`) asks which
		// mount a path is on.
		if err := s.requireToken(rc); err != nil {
			return err
		}
		rel := strings.TrimPrefix(p, "sys/internal/ui/mounts/")
		if rel != s.opts.Mount && !strings.HasPrefix(rel, mount) {
			return errStatus(http.StatusBadRequest, "cannot find mount for path")
		}
		writeJSON(rc.w, http.StatusOK, envelope(map[string]any{"path": mount, "type": s.opts.PluginName,
			"description": "", "options": nil, "plugin_version": s.opts.PluginVersion}, nil, nil))
		return nil
	case strings.HasPrefix(p, "sys/") || strings.HasPrefix(p, "auth/") || strings.HasPrefix(p, "identity/"):
		return s.handleAuthAPI(rc)
	}
	return errStatus(http.StatusNotFound, fmt.Sprintf("no handler for route %q. route entry not found.", p))
}

func (s *Server) handleReload(rc *reqCtx) error {
	if rc.op != "update" {
		return errStatus(http.StatusMethodNotAllowed, "unsupported operation")
	}
	if err := s.authorize(rc, "update", rc.path, true); err != nil {
		return err
	}
	name, _ := rc.data["plugin"].(string)
	var mounts []string
	switch m := rc.data["mounts"].(type) {
	case []any:
		for _, x := range m {
			if xs, ok := x.(string); ok {
				mounts = append(mounts, strings.Trim(xs, "/"))
			}
		}
	case string:
		for _, x := range strings.Split(m, ",") {
			mounts = append(mounts, strings.Trim(x, "/"))
		}
	}
	if name == "" && len(mounts) == 0 {
		return errStatus(http.StatusBadRequest, "plugin or mounts must be provided")
	}
	if name != "" && len(mounts) > 0 {
		return errStatus(http.StatusBadRequest, "plugin and mounts cannot be set at the same time")
	}
	match := name == s.opts.PluginName
	for _, m := range mounts {
		if m == s.opts.Mount {
			match = true
		}
	}
	if !match {
		return errStatus(http.StatusBadRequest, "no mounts found for the given plugin or mounts")
	}
	if err := s.ReloadPlugin(); err != nil {
		return errStatus(http.StatusInternalServerError, "reload failed: "+err.Error())
	}
	rc.w.WriteHeader(http.StatusNoContent)
	return nil
}

// handleOpenAPI returns the mount's root help OpenAPI document with paths
// prefixed by the mount (Vault merges every mount; the stand-in has one).
func (s *Server) handleOpenAPI(rc *reqCtx) error {
	if err := s.requireToken(rc); err != nil {
		return err
	}
	reply, err := s.backendRequest(rc, "help", "", map[string]any{"requestResponsePrefix": s.opts.PluginName})
	if err != nil {
		return err
	}
	if reply.Err != nil {
		return protoErrToAPI(reply.Err, reply.Response != nil)
	}
	if reply.Response == nil {
		return errStatus(http.StatusInternalServerError, "plugin returned a nil response for root help")
	}
	var data map[string]any
	if err := json.Unmarshal([]byte(reply.Response.Data), &data); err != nil {
		return errStatus(http.StatusInternalServerError, "help response data: "+err.Error())
	}
	doc := map[string]any{"openapi": "3.0.2",
		"info":  map[string]any{"title": "HashiCorp Vault API", "version": VaultVersion},
		"paths": map[string]any{}, "components": map[string]any{"schemas": map[string]any{}}}
	if oas, ok := data["openapi"].(map[string]any); ok {
		if paths, ok := oas["paths"].(map[string]any); ok {
			out := doc["paths"].(map[string]any)
			for k, v := range paths {
				out["/"+s.opts.Mount+"/"+strings.TrimPrefix(k, "/")] = v
			}
		}
		if comp, ok := oas["components"].(map[string]any); ok {
			doc["components"] = comp
		}
	}
	writeJSON(rc.w, http.StatusOK, doc)
	return nil
}

// matchSpecial reports whether path matches one of Vault's special-path
// patterns: exact, '*' suffix (prefix) or '+' (one segment).
func matchSpecial(patterns []string, path string) bool {
	for _, p := range patterns {
		if p == path {
			return true
		}
		if strings.Contains(p, "+") {
			pp := strings.TrimSuffix(p, "*")
			prefix := strings.HasSuffix(p, "*")
			ps, xs := strings.Split(pp, "/"), strings.Split(path, "/")
			if len(xs) < len(ps) || (!prefix && len(xs) != len(ps)) {
				continue
			}
			ok := true
			for i, seg := range ps {
				switch {
				case seg == "+":
				case seg == xs[i]:
				case prefix && i == len(ps)-1 && strings.HasPrefix(xs[i], seg):
				default:
					ok = false
				}
			}
			if ok {
				return true
			}
			continue
		}
		if strings.HasSuffix(p, "*") && strings.HasPrefix(path, strings.TrimSuffix(p, "*")) {
			return true
		}
	}
	return false
}

// salted is what the plugin sees as client_token: not the real token.
func (s *Server) salted(tok string) string {
	if tok == "" {
		return ""
	}
	return "hmac-sha256:" + sha256Hex(s.uuid+"|"+tok)
}

func (s *Server) buildRequest(rc *reqCtx, op, path string, data map[string]any) *pb.Request {
	js := []byte("null")
	if data != nil {
		js, _ = json.Marshal(data)
	}
	req := &pb.Request{
		Id: newUUID(), Operation: op, Path: path, Data: string(js),
		MountPoint: s.opts.Mount + "/", MountType: s.opts.PluginName,
		MountAccessor: s.opts.PluginName + "_" + s.uuid[:8],
	}
	if rc.tok != nil {
		req.ClientToken = s.salted(rc.tok.ID)
		req.ClientTokenAccessor = rc.tok.Accessor
		req.DisplayName = rc.tok.DisplayName
		req.EntityId = rc.tok.EntityID
	} else {
		req.Unauthenticated = true
	}
	if host, port, err := net.SplitHostPort(rc.remote); err == nil {
		pn, _ := strconv.Atoi(port)
		req.Connection = &pb.Connection{RemoteAddr: host, RemotePort: int32(pn)}
	} else {
		req.Connection = &pb.Connection{} // unix socket: Vault leaves it empty
	}
	return req
}

func (s *Server) backendRequest(rc *reqCtx, op, path string, data map[string]any) (*pb.HandleRequestReply, error) {
	s.pmu.RLock()
	defer s.pmu.RUnlock()
	if s.plugin == nil {
		return nil, errStatus(http.StatusServiceUnavailable, "plugin not running")
	}
	ctx, cancel := context.WithTimeout(rc.r.Context(), s.opts.RequestTimeout)
	defer cancel()
	reply, err := s.plugin.Backend.HandleRequest(ctx, &pb.HandleRequestArgs{Request: s.buildRequest(rc, op, path, data)})
	if err != nil {
		return nil, errStatus(http.StatusInternalServerError, grpcErrText(err))
	}
	return reply, nil
}

func grpcErrText(err error) string {
	if st, ok := status.FromError(err); ok {
		return fmt.Sprintf("rpc error: code = %s desc = %s", st.Code(), st.Message())
	}
	return err.Error()
}

// protoErrToAPI maps a ProtoError to the HTTP status Vault answers
// (logical/response_util.go RespondErrorCommon).
func protoErrToAPI(pe *pb.ProtoError, haveResp bool) *apiError {
	code := http.StatusInternalServerError
	if haveResp {
		code = http.StatusBadRequest
	}
	msg := pe.ErrMsg
	switch pe.ErrType {
	case 3:
		if pe.ErrCode != 0 {
			code = int(pe.ErrCode)
		}
	case 4, 7:
		code = http.StatusBadRequest
		if pe.ErrType == 7 {
			msg = "invalid request"
		}
	case 5:
		code, msg = http.StatusMethodNotAllowed, "unsupported operation"
	case 6:
		code, msg = http.StatusNotFound, "unsupported path"
	case 8:
		code, msg = http.StatusForbidden, "permission denied"
	case 9:
		msg = "request needs further approval"
	case 10:
		msg = "unrecoverable error"
	}
	if pe.ErrType < 3 {
		// errwrap.Contains: a plain error whose whole message is a
		// sentinel's maps like the sentinel.
		switch msg {
		case "permission denied":
			code = http.StatusForbidden
		case "unsupported operation":
			code = http.StatusMethodNotAllowed
		case "unsupported path":
			code = http.StatusNotFound
		case "invalid request":
			code = http.StatusBadRequest
		case "upstream rate limited":
			code = http.StatusBadGateway
		}
	}
	return errStatus(code, msg)
}

// handleLogical sends a request to the plugin mount (vault/request_handling.go).
func (s *Server) handleLogical(rc *reqCtx, rel string) error {
	paths := s.specialPaths()
	unauth := matchSpecial(paths.Unauthenticated, rel)
	if !unauth || rc.token != "" {
		if err := s.requireToken(rc); err != nil && !unauth {
			return err
		}
	}
	full := s.opts.Mount + "/" + rel
	op := rc.op
	if op == "help" {
		if rc.tok == nil && !unauth {
			return errPermissionDenied
		}
		reply, err := s.backendRequest(rc, "help", rel, nil)
		if err != nil {
			return err
		}
		if reply.Err != nil {
			return protoErrToAPI(reply.Err, reply.Response != nil)
		}
		if reply.Response == nil {
			return errStatus(http.StatusNotFound)
		}
		var data any
		if err := json.Unmarshal([]byte(reply.Response.Data), &data); err != nil {
			return errStatus(http.StatusInternalServerError, "help response data: "+err.Error())
		}
		writeJSON(rc.w, http.StatusOK, data)
		return nil
	}
	if op == "update" && strings.HasSuffix(rel, "/") {
		// vault/request_handling.go refuses these before any backend sees them.
		return errStatus(http.StatusBadRequest, "cannot write to a path ending in '/'")
	}
	if op == "update" {
		found, exists, err := s.existenceCheck(rc, rel)
		if err != nil {
			return err
		}
		if found && !exists {
			op = "create"
		}
	}
	if !unauth {
		sudo := matchSpecial(paths.Root, rel)
		if !s.auth.aclFor(rc.tok).Allowed(op, full, sudo) {
			return errPermissionDenied
		}
	}
	reply, err := s.backendRequest(rc, op, rel, rc.data)
	if err != nil {
		return err
	}
	return s.respond(rc, op, rel, reply)
}

func (s *Server) specialPaths() *pb.Paths {
	s.pmu.RLock()
	defer s.pmu.RUnlock()
	if s.plugin == nil || s.plugin.Paths == nil {
		return &pb.Paths{}
	}
	return s.plugin.Paths
}

func (s *Server) existenceCheck(rc *reqCtx, rel string) (found, exists bool, err error) {
	s.pmu.RLock()
	defer s.pmu.RUnlock()
	if s.plugin == nil {
		return false, false, errStatus(http.StatusServiceUnavailable, "plugin not running")
	}
	ctx, cancel := context.WithTimeout(rc.r.Context(), s.opts.RequestTimeout)
	defer cancel()
	r, gerr := s.plugin.Backend.HandleExistenceCheck(ctx, &pb.HandleExistenceCheckArgs{Request: s.buildRequest(rc, "update", rel, rc.data)})
	if gerr != nil {
		return false, false, errStatus(http.StatusInternalServerError, grpcErrText(gerr))
	}
	if r.Err != nil {
		if r.Err.ErrType == 6 {
			return false, false, nil // no check: stays update
		}
		if r.Err.ErrType == 1 {
			return false, false, errStatus(http.StatusInternalServerError, r.Err.ErrMsg)
		}
		return false, false, errStatus(http.StatusInternalServerError, "internal error")
	}
	return r.CheckFound, r.Exists, nil
}

// respond converts the plugin's reply as Vault's HTTP layer does.
func (s *Server) respond(rc *reqCtx, op, rel string, reply *pb.HandleRequestReply) error {
	resp := reply.Response
	if reply.Err != nil {
		return protoErrToAPI(reply.Err, resp != nil)
	}
	if resp == nil {
		if op == "read" || op == "patch" || op == "list" {
			return errStatus(http.StatusNotFound)
		}
		rc.w.WriteHeader(http.StatusNoContent)
		return nil
	}
	var data map[string]any
	// Vault: json.Unmarshal into a map; "" and non-objects fail the request.
	if err := json.Unmarshal([]byte(resp.Data), &data); err != nil {
		return errStatus(http.StatusInternalServerError, err.Error())
	}
	if e, ok := data["error"]; ok && e != nil {
		msg, ok := e.(string)
		if !ok {
			return errStatus(http.StatusInternalServerError, "plugin error response: error is not a string")
		}
		return errStatus(http.StatusBadRequest, msg)
	}
	if _, ok := data["http_status_code"]; ok {
		return s.respondRaw(rc, data)
	}
	if op == "list" {
		raw, ok := data["keys"]
		if !ok || raw == nil {
			if len(data) == 0 && len(resp.Warnings) == 0 {
				return errStatus(http.StatusNotFound)
			}
		} else {
			keys, ok := raw.([]any)
			if !ok {
				return errStatus(http.StatusInternalServerError, "list keys must be a list of strings")
			}
			for _, k := range keys {
				if _, ok := k.(string); !ok {
					return errStatus(http.StatusInternalServerError, "list keys must be strings")
				}
			}
			if len(keys) == 0 {
				return errStatus(http.StatusNotFound)
			}
		}
	}
	env := envelope(data, resp.Warnings, nil)
	env["mount_type"] = s.opts.PluginName
	if sec := resp.Secret; sec != nil {
		ttl := time.Duration(0)
		if sec.LeaseOptions != nil {
			ttl = time.Duration(sec.LeaseOptions.TTL)
			env["renewable"] = sec.LeaseOptions.Renewable
		}
		if ttl <= 0 || ttl > DefaultLeaseTTL {
			ttl = DefaultLeaseTTL
		}
		env["lease_id"] = s.opts.Mount + "/" + rel + "/" + randHex(12)
		env["lease_duration"] = int(ttl / time.Second)
	}
	// A non-nil response is always a 200 with the envelope, even with no
	// data (http/logical.go respondLogical -> respondOk).
	writeJSON(rc.w, http.StatusOK, env)
	return nil
}

// respondRaw writes a raw response (http/logical.go respondRaw).
func (s *Server) respondRaw(rc *reqCtx, data map[string]any) error {
	var code int
	switch v := data["http_status_code"].(type) {
	case float64:
		code = int(v)
	case string:
		code, _ = strconv.Atoi(v)
	}
	if code == 0 {
		return errStatus(http.StatusInternalServerError, "invalid http_status_code")
	}
	ct, _ := data["http_content_type"].(string)
	if ct == "" && code != http.StatusNoContent {
		return errStatus(http.StatusInternalServerError, "missing content type")
	}
	var body []byte
	if b, ok := data["http_raw_body"].(string); ok {
		if dec, err := base64.StdEncoding.DecodeString(b); err == nil {
			body = dec
		} else {
			body = []byte(b)
		}
	}
	if ct != "" {
		rc.w.Header().Set("Content-Type", ct)
	}
	rc.w.WriteHeader(code)
	_, _ = rc.w.Write(body)
	return nil
}

// cleanPath is net/http's (ServeMux): path.Clean, keeping a trailing slash.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	np := path.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		np += "/"
	}
	return np
}
