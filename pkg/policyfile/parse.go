// Package policyfile reads a tenant's dunning policy from YAML and validates
// it, reporting every error at once with its file, line, column and field,
// so that a bad policy never starts a service.
package policyfile

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/opendunning/dunning/pkg/policy"
)

// Error is one problem in a policy file.
type Error struct {
	File      string
	Line, Col int
	Field     string
	Msg       string
}

func (e Error) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s: %s", e.File, e.Line, e.Col, e.Field, e.Msg)
}

// Errors is every problem found in a policy file, in file order.
type Errors []Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// AsErrors extracts the list of problems from an error returned by Load or Parse.
func AsErrors(err error) (Errors, bool) {
	var es Errors
	ok := errors.As(err, &es)
	return es, ok
}

// parser walks a YAML node tree, collecting errors with positions.
type parser struct {
	file string
	errs Errors
}

func (p *parser) errf(n *yaml.Node, field, format string, args ...any) {
	line, col := 0, 0
	if n != nil {
		line, col = n.Line, n.Column
	}
	p.errs = append(p.errs, Error{File: p.file, Line: line, Col: col, Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) result() error {
	if len(p.errs) == 0 {
		return nil
	}
	sort.SliceStable(p.errs, func(i, j int) bool {
		if p.errs[i].Line != p.errs[j].Line {
			return p.errs[i].Line < p.errs[j].Line
		}
		return p.errs[i].Col < p.errs[j].Col
	})
	return p.errs
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// mapping returns a mapping's values by key, reporting duplicate keys and
// keys not in allowed (unless allowed is nil).
func (p *parser) mapping(n *yaml.Node, path string, allowed ...string) (map[string]*yaml.Node, map[string]*yaml.Node) {
	vals, keys := map[string]*yaml.Node{}, map[string]*yaml.Node{}
	if n == nil {
		return vals, keys
	}
	if n.Kind != yaml.MappingNode {
		p.errf(n, path, "must be a mapping")
		return vals, keys
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if _, dup := vals[k.Value]; dup {
			p.errf(k, join(path, k.Value), "duplicate key")
			continue
		}
		if allowed != nil && !contains(allowed, k.Value) {
			p.errf(k, join(path, k.Value), "unknown field (known: %s)", strings.Join(allowed, ", "))
			continue
		}
		vals[k.Value], keys[k.Value] = v, k
	}
	return vals, keys
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (p *parser) str(n *yaml.Node, path string) (string, bool) {
	if n == nil {
		return "", false
	}
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.errf(n, path, "must be a string")
		return "", false
	}
	return n.Value, true
}

func (p *parser) integer(n *yaml.Node, path string) (int64, bool) {
	if n == nil {
		return 0, false
	}
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		p.errf(n, path, "must be an integer, got %q", n.Value)
		return 0, false
	}
	v, err := strconv.ParseInt(n.Value, 0, 64)
	if err != nil {
		p.errf(n, path, "must be an integer: %v", err)
		return 0, false
	}
	return v, true
}

// strings returns a sequence of strings with their nodes.
func (p *parser) strings(n *yaml.Node, path string) ([]string, []*yaml.Node) {
	if n == nil {
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		p.errf(n, path, "must be a list")
		return nil, nil
	}
	var out []string
	var nodes []*yaml.Node
	for i, c := range n.Content {
		if s, ok := p.str(c, fmt.Sprintf("%s[%d]", path, i)); ok {
			out = append(out, s)
			nodes = append(nodes, c)
		}
	}
	return out, nodes
}

// document parses data into its root mapping node.
func (p *parser) document(data []byte) *yaml.Node {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		line := 0
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			// yaml.v3 reports "yaml: line N: ..."
			fmt.Sscanf(strings.TrimPrefix(err.Error(), "yaml: line "), "%d", &line)
		}
		p.errs = append(p.errs, Error{File: p.file, Line: line, Field: "(document)", Msg: err.Error()})
		return nil
	}
	if len(doc.Content) == 0 {
		p.errs = append(p.errs, Error{File: p.file, Line: 1, Col: 1, Field: "(document)", Msg: "empty policy file"})
		return nil
	}
	return doc.Content[0]
}

// Load reads and validates the policy file at path.
func Load(path string) (policy.Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return policy.Policy{}, fmt.Errorf("reading policy: %w", err)
	}
	return Parse(path, data)
}
