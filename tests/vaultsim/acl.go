// SPDX-License-Identifier: MPL-2.0

package vaultsim

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode"
)

// Capabilities as bit flags (Vault's vault/policy.go values).
const (
	CapDeny uint32 = 1 << iota
	CapCreate
	CapRead
	CapUpdate
	CapDelete
	CapList
	CapSudo
	CapPatch
)

var capNames = map[string]uint32{
	"deny": CapDeny, "create": CapCreate, "read": CapRead, "update": CapUpdate,
	"delete": CapDelete, "list": CapList, "sudo": CapSudo, "patch": CapPatch,
	// Accepted by Vault's parser; nothing in the stand-in needs them.
	"subscribe": 0, "recover": 0,
}

// legacy `policy = "..."` values (Vault expands them the same way).
var legacyPolicy = map[string]uint32{
	"deny":  CapDeny,
	"read":  CapRead | CapList,
	"write": CapRead | CapList | CapCreate | CapUpdate | CapDelete,
	"sudo":  CapRead | CapList | CapCreate | CapUpdate | CapDelete | CapSudo,
}

// PathRule is one `path "..." { ... }` block.
type PathRule struct {
	Path         string // as written (after templating)
	Capabilities uint32
	Templated    bool
}

// Policy is a parsed ACL policy.
type Policy struct {
	Name  string
	Raw   string
	Rules []PathRule
}

// ---- HCL subset -------------------------------------------------------------------

type hclTok struct {
	kind byte // 's' string, 'i' ident, 'n' number, or the punctuation itself
	val  string
	line int
}

func hclLex(src string) ([]hclTok, error) {
	var toks []hclTok
	line := 1
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '\n':
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '#' || (c == '/' && i+1 < len(src) && src[i+1] == '/'):
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(src) && src[i+1] == '*':
			end := strings.Index(src[i+2:], "*/")
			if end < 0 {
				return nil, fmt.Errorf("line %d: unterminated comment", line)
			}
			line += strings.Count(src[i:i+2+end], "\n")
			i += end + 4
		case c == '"':
			var sb strings.Builder
			j := i + 1
			for ; j < len(src) && src[j] != '"'; j++ {
				if src[j] == '\n' {
					return nil, fmt.Errorf("line %d: newline in string", line)
				}
				if src[j] == '\\' && j+1 < len(src) {
					j++
					switch src[j] {
					case 'n':
						sb.WriteByte('\n')
					case 't':
						sb.WriteByte('\t')
					default:
						sb.WriteByte(src[j])
					}
					continue
				}
				sb.WriteByte(src[j])
			}
			if j >= len(src) {
				return nil, fmt.Errorf("line %d: unterminated string", line)
			}
			toks = append(toks, hclTok{'s', sb.String(), line})
			i = j + 1
		case strings.IndexByte("{}[]=,:", c) >= 0:
			toks = append(toks, hclTok{c, string(c), line})
			i++
		case unicode.IsLetter(rune(c)) || c == '_':
			j := i
			for j < len(src) && (unicode.IsLetter(rune(src[j])) || unicode.IsDigit(rune(src[j])) || src[j] == '_' || src[j] == '-' || src[j] == '.') {
				j++
			}
			toks = append(toks, hclTok{'i', src[i:j], line})
			i = j
		case unicode.IsDigit(rune(c)) || c == '-':
			j := i + 1
			for j < len(src) && (unicode.IsDigit(rune(src[j])) || src[j] == '.' || unicode.IsLetter(rune(src[j]))) {
				j++
			}
			toks = append(toks, hclTok{'n', src[i:j], line})
			i = j
		default:
			return nil, fmt.Errorf("line %d: unexpected character %q", line, c)
		}
	}
	return toks, nil
}

type hclParser struct {
	toks []hclTok
	pos  int
}

func (p *hclParser) peek() *hclTok {
	if p.pos < len(p.toks) {
		return &p.toks[p.pos]
	}
	return nil
}

func (p *hclParser) next() (*hclTok, error) {
	t := p.peek()
	if t == nil {
		return nil, errors.New("unexpected end of policy")
	}
	p.pos++
	return t, nil
}

func (p *hclParser) expect(k byte) (*hclTok, error) {
	t, err := p.next()
	if err != nil {
		return nil, err
	}
	if t.kind != k {
		return nil, fmt.Errorf("line %d: expected %q, got %q", t.line, k, t.val)
	}
	return t, nil
}

// value parses a string, number, bool/ident, list or object; objects are
// map[string]any, lists []any.
func (p *hclParser) value() (any, error) {
	t, err := p.next()
	if err != nil {
		return nil, err
	}
	switch t.kind {
	case 's', 'n', 'i':
		return t.val, nil
	case '[':
		var list []any
		for {
			if n := p.peek(); n != nil && n.kind == ']' {
				p.pos++
				return list, nil
			}
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			list = append(list, v)
			if n := p.peek(); n != nil && n.kind == ',' {
				p.pos++
			}
		}
	case '{':
		return p.body('}')
	}
	return nil, fmt.Errorf("line %d: unexpected %q", t.line, t.val)
}

type hclBlock struct {
	typ, label string
	body       map[string]any
	line       int
}

// body parses attributes and blocks until end (0: EOF). Blocks are
// collected under the key "\x00blocks" as []hclBlock.
func (p *hclParser) body(end byte) (map[string]any, error) {
	m := map[string]any{}
	var blocks []hclBlock
	for {
		t := p.peek()
		if t == nil {
			if end != 0 {
				return nil, errors.New("unexpected end of policy: missing '}'")
			}
			break
		}
		if t.kind == end {
			p.pos++
			break
		}
		if t.kind == ',' {
			p.pos++
			continue
		}
		if t.kind != 'i' && t.kind != 's' {
			return nil, fmt.Errorf("line %d: unexpected %q", t.line, t.val)
		}
		p.pos++
		n := p.peek()
		if n == nil {
			return nil, fmt.Errorf("line %d: unexpected end after %q", t.line, t.val)
		}
		switch n.kind {
		case '=', ':':
			p.pos++
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			m[t.val] = v
		case 's':
			p.pos++
			if _, err := p.expect('{'); err != nil {
				return nil, err
			}
			b, err := p.body('}')
			if err != nil {
				return nil, err
			}
			blocks = append(blocks, hclBlock{typ: t.val, label: n.val, body: b, line: t.line})
		case '{':
			p.pos++
			b, err := p.body('}')
			if err != nil {
				return nil, err
			}
			m[t.val] = b
		default:
			return nil, fmt.Errorf("line %d: unexpected %q after %q", n.line, n.val, t.val)
		}
	}
	if blocks != nil {
		m["\x00blocks"] = blocks
	}
	return m, nil
}

// ParsePolicy parses Vault ACL policy HCL (path blocks with capabilities or
// the legacy policy attribute; parameter constraints are accepted and not
// enforced). Templated paths are kept with Templated set; Resolve applies them.
func ParsePolicy(name, src string) (*Policy, error) {
	toks, err := hclLex(src)
	if err != nil {
		return nil, fmt.Errorf("failed to parse policy: %w", err)
	}
	p := &hclParser{toks: toks}
	root, err := p.body(0)
	if err != nil {
		return nil, fmt.Errorf("failed to parse policy: %w", err)
	}
	pol := &Policy{Name: name, Raw: src}
	for k := range root {
		if k != "\x00blocks" && k != "name" {
			return nil, fmt.Errorf("failed to parse policy: invalid key %q", k)
		}
	}
	blocks, _ := root["\x00blocks"].([]hclBlock)
	for _, b := range blocks {
		if b.typ != "path" {
			return nil, fmt.Errorf("failed to parse policy: line %d: invalid key %q", b.line, b.typ)
		}
		r := PathRule{Path: strings.TrimPrefix(b.label, "/"), Templated: strings.Contains(b.label, "{{")}
		if strings.Contains(r.Path, "+*") {
			return nil, fmt.Errorf("failed to parse policy: path %q: invalid use of wildcards ('+*' is forbidden)", r.Path)
		}
		for k, v := range b.body {
			switch k {
			case "capabilities":
				list, ok := v.([]any)
				if !ok {
					return nil, fmt.Errorf("failed to parse policy: path %q: capabilities must be a list", b.label)
				}
				for _, c := range list {
					cs, _ := c.(string)
					bit, ok := capNames[cs]
					if !ok {
						return nil, fmt.Errorf("failed to parse policy: path %q: invalid capability %q", b.label, cs)
					}
					r.Capabilities |= bit
				}
			case "policy":
				s, _ := v.(string)
				bit, ok := legacyPolicy[s]
				if !ok {
					return nil, fmt.Errorf("failed to parse policy: path %q: invalid policy %q", b.label, s)
				}
				r.Capabilities |= bit
			case "allowed_parameters", "denied_parameters", "required_parameters",
				"min_wrapping_ttl", "max_wrapping_ttl", "control_group", "mfa_methods":
				// accepted, not enforced by the stand-in (README)
			default:
				return nil, fmt.Errorf("failed to parse policy: path %q: invalid key %q", b.label, k)
			}
		}
		if r.Capabilities&CapDeny != 0 {
			r.Capabilities = CapDeny
		}
		pol.Rules = append(pol.Rules, r)
	}
	return pol, nil
}

// AliasView is what policy templates can see of one of the entity's aliases.
type AliasView struct {
	ID, Name, MountAccessor  string
	Metadata, CustomMetadata map[string]string
}

// EntityView is what policy templates can see.
type EntityView struct {
	ID       string
	Name     string
	Metadata map[string]string
	Aliases  []AliasView // at most one per mount accessor
	// VerbatimTemplates: a value with "*" or "+" is substituted as is (Vault
	// before its 2026 releases); otherwise such a path is dropped, as current
	// Vault refuses a wildcard or glob in a template's rendered value.
	VerbatimTemplates bool
}

// resolveTemplate substitutes {{identity.entity.*}} parameters; ok=false when
// one cannot be resolved (Vault then drops the path).
func resolveTemplate(path string, e *EntityView) (string, bool) {
	var sb strings.Builder
	for {
		i := strings.Index(path, "{{")
		if i < 0 {
			sb.WriteString(path)
			return sb.String(), true
		}
		j := strings.Index(path[i:], "}}")
		if j < 0 {
			return "", false
		}
		sb.WriteString(path[:i])
		param := strings.TrimSpace(path[i+2 : i+j])
		if e == nil {
			return "", false
		}
		// sdk/helper/identitytpl simpleTemplateHandler: an empty id or name
		// is "not found", but a metadata key that is present renders as its
		// value even when that is "" (only a missing key fails).
		var v string
		switch {
		case param == "identity.entity.id", param == "identity.entity.name":
			if v = e.ID; param == "identity.entity.name" {
				v = e.Name
			}
			if v == "" {
				return "", false
			}
		case strings.HasPrefix(param, "identity.entity.metadata."):
			var ok bool
			v, ok = e.Metadata[strings.TrimPrefix(param, "identity.entity.metadata.")]
			if !ok {
				return "", false
			}
		case strings.HasPrefix(param, "identity.entity.aliases."):
			var ok bool
			if v, ok = resolveAlias(strings.TrimPrefix(param, "identity.entity.aliases."), e); !ok {
				return "", false
			}
		default:
			return "", false
		}
		if !e.VerbatimTemplates && strings.ContainsAny(v, "*+") {
			return "", false
		}
		sb.WriteString(v)
		path = path[i+j+2:]
	}
}

// resolveAlias renders "<mount accessor>.<id|name|metadata.K|custom_metadata.K>"
// as sdk/helper/identitytpl does in ACL mode: the entity's alias on that mount
// must exist; an empty id or name, or a missing key, does not resolve; a
// present key renders its value even when that is "".
func resolveAlias(sel string, e *EntityView) (string, bool) {
	acc, field, ok := strings.Cut(sel, ".")
	if !ok {
		return "", false
	}
	var al *AliasView
	for i := range e.Aliases {
		if e.Aliases[i].MountAccessor == acc {
			al = &e.Aliases[i]
			break
		}
	}
	if al == nil {
		return "", false
	}
	var v string
	switch {
	case field == "id":
		v = al.ID
	case field == "name":
		v = al.Name
	case strings.HasPrefix(field, "metadata."):
		v, ok = al.Metadata[strings.TrimPrefix(field, "metadata.")]
		return v, ok
	case strings.HasPrefix(field, "custom_metadata."):
		v, ok = al.CustomMetadata[strings.TrimPrefix(field, "custom_metadata.")]
		return v, ok
	}
	return v, v != ""
}

// ACL is the merged set of rules of a token's policies (vault/acl.go NewACL).
type ACL struct {
	root     bool
	exact    map[string]uint32
	prefix   map[string]uint32
	segments map[string]uint32
}

// NewACL merges policies for a token bound to entity (may be nil). A policy
// named "root" grants everything.
func NewACL(policies []*Policy, entity *EntityView) *ACL {
	a := &ACL{exact: map[string]uint32{}, prefix: map[string]uint32{}, segments: map[string]uint32{}}
	for _, p := range policies {
		if p == nil {
			continue
		}
		if p.Name == "root" {
			a.root = true
			continue
		}
		for _, r := range p.Rules {
			path := r.Path
			if r.Templated {
				var ok bool
				if path, ok = resolveTemplate(path, entity); !ok {
					continue
				}
			}
			var tree map[string]uint32
			key := path
			switch {
			case hasSegmentWildcards(path):
				tree = a.segments
			case strings.HasSuffix(path, "*"):
				tree = a.prefix
				key = strings.TrimSuffix(path, "*")
			default:
				tree = a.exact
			}
			old, seen := tree[key]
			switch {
			case !seen:
				tree[key] = r.Capabilities
			case old&CapDeny != 0:
			case r.Capabilities&CapDeny != 0:
				tree[key] = CapDeny
			default:
				tree[key] = old | r.Capabilities
			}
		}
	}
	return a
}

// hasSegmentWildcards is vault/policy.go's test: only a "+" that starts a
// segment is a wildcard; any other "+" is a literal character.
func hasSegmentWildcards(path string) bool {
	return path == "+" || strings.Contains(path, "/+") || strings.HasPrefix(path, "+/")
}

// IsRoot reports whether the ACL came from the root policy.
func (a *ACL) IsRoot() bool { return a.root }

// Capabilities returns the capability bits that apply to path (0: none).
func (a *ACL) Capabilities(path string, list bool) uint32 {
	if a.root {
		return ^CapDeny
	}
	if c, ok := a.exact[path]; ok {
		return c
	}
	if list {
		if c, ok := a.exact[strings.TrimSuffix(path, "/")]; ok {
			return c
		}
		// Vault's AllowOperation: a list path ending in "/" is checked without
		// the slash first, so that glob and "+" rules ending at the listed
		// directory's name match it.
		if strings.HasSuffix(path, "/") {
			if c, ok := a.nonExactFound(strings.TrimSuffix(path, "/")); ok {
				return c
			}
		}
	}
	return a.nonExact(path)
}

type wcDescr struct {
	firstWC   int
	wildcards int
	isPrefix  bool
	path      string
	caps      uint32
}

func (a *ACL) nonExact(path string) uint32 {
	c, _ := a.nonExactFound(path)
	return c
}

// nonExactFound is Vault's CheckAllowedFromNonExactPaths: the winning glob or
// "+" rule's capabilities, ok=false when none matches.
func (a *ACL) nonExactFound(path string) (uint32, bool) {
	var cands []wcDescr
	// Longest prefix among glob rules.
	best, found := "", false
	for k := range a.prefix {
		if strings.HasPrefix(path, k) && (!found || len(k) > len(best)) {
			best, found = k, true
		}
	}
	if found {
		if len(a.segments) == 0 {
			return a.prefix[best], true
		}
		cands = append(cands, wcDescr{firstWC: len(best), isPrefix: true, path: best, caps: a.prefix[best]})
	}
	parts := strings.Split(path, "/")
outer:
	for full, caps := range a.segments {
		d := wcDescr{firstWC: strings.Index(full, "+"), caps: caps}
		cur := full
		if strings.HasSuffix(cur, "*") {
			d.isPrefix = true
			cur = strings.TrimSuffix(cur, "*")
		}
		d.path = cur
		segs := strings.Split(cur, "/")
		if len(parts) < len(segs) || (!d.isPrefix && len(parts) != len(segs)) {
			continue
		}
		for i, s := range segs {
			switch {
			case s == "+":
				d.wildcards++
			case s == parts[i]:
			case d.isPrefix && i == len(segs)-1 && strings.HasPrefix(parts[i], s):
			default:
				continue outer
			}
		}
		cands = append(cands, d)
	}
	if len(cands) == 0 {
		return 0, false
	}
	sort.Slice(cands, func(i, j int) bool { return wcLess(cands[i], cands[j]) })
	return cands[len(cands)-1].caps, true
}

// wcLess reports whether x has lower priority than y (Vault's order: later
// first wildcard, not a glob, fewer '+', longer, lexicographically larger).
func wcLess(x, y wcDescr) bool {
	if x.firstWC != y.firstWC {
		return x.firstWC < y.firstWC
	}
	if x.isPrefix != y.isPrefix {
		return x.isPrefix
	}
	if x.wildcards != y.wildcards {
		return x.wildcards > y.wildcards
	}
	if len(x.path) != len(y.path) {
		return len(x.path) < len(y.path)
	}
	return x.path < y.path
}

// opCap maps a logical operation to the capability it needs.
func opCap(op string) uint32 {
	switch op {
	case "create":
		return CapCreate
	case "read":
		return CapRead
	case "update":
		return CapUpdate
	case "delete":
		return CapDelete
	case "list":
		return CapList
	case "patch":
		return CapPatch
	}
	return 0
}

// Allowed reports whether op on path is allowed; sudo additionally
// requires the sudo capability (root-protected paths). help is always
// allowed to a valid token, as in Vault.
func (a *ACL) Allowed(op, path string, sudo bool) bool {
	if a.root {
		return true
	}
	if op == "help" {
		return true
	}
	c := a.Capabilities(path, op == "list")
	if c&CapDeny != 0 {
		return false
	}
	need := opCap(op)
	if need == 0 || c&need == 0 {
		return false
	}
	if sudo && c&CapSudo == 0 {
		return false
	}
	return true
}

// CapabilityNames lists the names of the bits in c (for sys/capabilities-self).
func CapabilityNames(c uint32) []string {
	if c&CapDeny != 0 {
		return []string{"deny"}
	}
	var out []string
	for _, n := range []string{"create", "delete", "list", "patch", "read", "sudo", "update"} {
		if c&capNames[n] != 0 {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return []string{"deny"}
	}
	return out
}
