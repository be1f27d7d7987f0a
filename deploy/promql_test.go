package deploy

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
)

// This file holds two small readers the deployment test needs and the
// module does not otherwise depend on: the PromQL a rule names (metrics,
// labels, functions, range windows), and the Prometheus text exposition of
// a /metrics endpoint. Neither is a full parser; each rejects what it does
// not understand, so a rule it cannot read fails the test instead of
// passing unchecked.

// selector is one vector selector of an expression: metric{label op "value", ...}.
type selector struct {
	Metric string
	// Matchers maps each label name to the value it is compared with.
	Matchers map[string]string
	// Func is the function or aggregation the selector is a direct argument
	// of ("" for none, e.g. an operand of a binary operator).
	Func string
	// Range is the selector's range ([5m]); zero for an instant selector.
	Range time.Duration
}

// promQL is what a rule's expression refers to.
type promQL struct {
	Selectors []selector
	// Grouping holds the label names of by, without, on, ignoring,
	// group_left and group_right clauses.
	Grouping []string
	// Funcs holds every function and aggregation called.
	Funcs []string
	// Offsets holds every offset modifier.
	Offsets []time.Duration
}

var promKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"bool": true, "offset": true, "and": true, "or": true, "unless": true, "atan2": true, "inf": true, "nan": true,
}

var promGroupingKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

var promAggregations = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	"limitk": true, "limit_ratio": true,
}

func isIdentStart(r byte) bool { return r == '_' || r == ':' || unicode.IsLetter(rune(r)) }
func isIdentChar(r byte) bool  { return isIdentStart(r) || (r >= '0' && r <= '9') }

// parsePromQL reads the selectors, grouping labels, functions and offsets
// of a PromQL expression.
func parsePromQL(expr string) (promQL, error) {
	var (
		out     promQL
		i       int
		stack   []string // function (or "") of each open parenthesis
		pending string   // function or aggregation waiting for its '('
		last    = -1     // index in out.Selectors of the selector just read, for '[' and '{'
	)
	skipSpace := func() {
		for i < len(expr) && (expr[i] == ' ' || expr[i] == '\t' || expr[i] == '\n' || expr[i] == '\r') {
			i++
		}
	}
	ident := func() string {
		j := i
		for i < len(expr) && isIdentChar(expr[i]) {
			i++
		}
		return expr[j:i]
	}
	str := func() (string, error) {
		q := expr[i]
		j := i + 1
		var b strings.Builder
		for j < len(expr) && expr[j] != q {
			if expr[j] == '\\' && q != '`' && j+1 < len(expr) {
				j++
			}
			b.WriteByte(expr[j])
			j++
		}
		if j >= len(expr) {
			return "", fmt.Errorf("unterminated string at %d", i)
		}
		i = j + 1
		return b.String(), nil
	}
	labelList := func() ([]string, error) { // after '('
		var names []string
		for {
			skipSpace()
			if i >= len(expr) {
				return nil, fmt.Errorf("unterminated label list")
			}
			switch {
			case expr[i] == ')':
				i++
				return names, nil
			case expr[i] == ',':
				i++
			case isIdentStart(expr[i]):
				names = append(names, ident())
			default:
				return nil, fmt.Errorf("unexpected %q in label list at %d", expr[i], i)
			}
		}
	}
	top := func() string {
		if len(stack) == 0 {
			return ""
		}
		return stack[len(stack)-1]
	}
	for {
		skipSpace()
		if i >= len(expr) {
			break
		}
		c := expr[i]
		switch {
		case c == '#':
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			if _, err := str(); err != nil {
				return out, err
			}
			last = -1
		case c == '{':
			if last < 0 {
				return out, fmt.Errorf("selector without a metric name at %d (not supported here)", i)
			}
			i++
			for {
				skipSpace()
				if i < len(expr) && expr[i] == '}' {
					i++
					break
				}
				if i < len(expr) && expr[i] == ',' {
					i++
					continue
				}
				if i >= len(expr) || !isIdentStart(expr[i]) {
					return out, fmt.Errorf("bad label matcher at %d", i)
				}
				name := ident()
				skipSpace()
				j := i
				for i < len(expr) && strings.ContainsRune("=!~", rune(expr[i])) {
					i++
				}
				if op := expr[j:i]; op != "=" && op != "!=" && op != "=~" && op != "!~" {
					return out, fmt.Errorf("bad matcher operator %q at %d", op, j)
				}
				skipSpace()
				if i >= len(expr) || (expr[i] != '"' && expr[i] != '\'' && expr[i] != '`') {
					return out, fmt.Errorf("matcher value must be a string at %d", i)
				}
				v, err := str()
				if err != nil {
					return out, err
				}
				out.Selectors[last].Matchers[name] = v
			}
		case c == '[':
			j := strings.IndexByte(expr[i:], ']')
			if j < 0 {
				return out, fmt.Errorf("unterminated range at %d", i)
			}
			body := expr[i+1 : i+j]
			i += j + 1
			if strings.Contains(body, ":") {
				return out, fmt.Errorf("subqueries are not supported here: [%s]", body)
			}
			d, err := parsePromDuration(strings.TrimSpace(body))
			if err != nil {
				return out, err
			}
			if last < 0 {
				return out, fmt.Errorf("range [%s] after something other than a selector", body)
			}
			out.Selectors[last].Range = d
		case c == '(':
			i++
			stack = append(stack, pending)
			pending = ""
			last = -1
		case c == ')':
			i++
			if len(stack) == 0 {
				return out, fmt.Errorf("unbalanced ')' at %d", i-1)
			}
			stack = stack[:len(stack)-1]
			last = -1
		case c >= '0' && c <= '9' || c == '.':
			for i < len(expr) && (isIdentChar(expr[i]) || expr[i] == '.') {
				i++
			}
			last = -1
		case isIdentStart(c):
			name := ident()
			lower := strings.ToLower(name)
			skipSpace()
			next := byte(0)
			if i < len(expr) {
				next = expr[i]
			}
			switch {
			case promGroupingKeywords[lower]:
				if next == '(' {
					i++
					names, err := labelList()
					if err != nil {
						return out, err
					}
					out.Grouping = append(out.Grouping, names...)
				} else if lower != "group_left" && lower != "group_right" {
					return out, fmt.Errorf("%s without a label list at %d", name, i)
				}
			case lower == "offset":
				j := i
				for i < len(expr) && isIdentChar(expr[i]) {
					i++
				}
				d, err := parsePromDuration(expr[j:i])
				if err != nil {
					return out, fmt.Errorf("offset: %w", err)
				}
				out.Offsets = append(out.Offsets, d)
			case promKeywords[lower]:
				last = -1
			case promAggregations[lower] || next == '(':
				pending = name
				out.Funcs = append(out.Funcs, name)
				last = -1
			default:
				out.Selectors = append(out.Selectors, selector{Metric: name, Matchers: map[string]string{}, Func: top()})
				last = len(out.Selectors) - 1
			}
		case strings.ContainsRune("+-*/%^=!<>,", rune(c)):
			i++
			last = -1
		default:
			return out, fmt.Errorf("unexpected %q at %d", c, i)
		}
	}
	if len(stack) != 0 {
		return out, fmt.Errorf("unbalanced '('")
	}
	return out, nil
}

var promDurationRE = regexp.MustCompile(`^(?:(\d+)(ms|s|m|h|d|w|y))+$`)
var promDurationPartRE = regexp.MustCompile(`(\d+)(ms|s|m|h|d|w|y)`)

// parsePromDuration reads a Prometheus duration (5m, 1h30m, 2d).
func parsePromDuration(s string) (time.Duration, error) {
	if !promDurationRE.MatchString(s) {
		return 0, fmt.Errorf("not a Prometheus duration: %q", s)
	}
	unit := map[string]time.Duration{"ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour,
		"d": 24 * time.Hour, "w": 7 * 24 * time.Hour, "y": 365 * 24 * time.Hour}
	var d time.Duration
	for _, m := range promDurationPartRE.FindAllStringSubmatch(s, -1) {
		n, err := strconv.Atoi(m[1])
		if err != nil {
			return 0, err
		}
		d += time.Duration(n) * unit[m[2]]
	}
	return d, nil
}

// metricInfo is one metric name as exported: its type and label names.
type metricInfo struct {
	Type   string // counter, gauge, histogram, summary, untyped
	Labels map[string]bool
}

// metricSet maps every sample name (a histogram x gives x_bucket, x_sum
// and x_count) to what is known about it.
type metricSet map[string]*metricInfo

func (ms metricSet) add(name, typ string, labels ...string) {
	m := ms[name]
	if m == nil {
		m = &metricInfo{Type: typ, Labels: map[string]bool{}}
		ms[name] = m
	}
	if m.Type == "" || m.Type == "untyped" {
		m.Type = typ
	}
	for _, l := range labels {
		m.Labels[l] = true
	}
}

// addFamily records a family of the given type and the sample names it exports.
func (ms metricSet) addFamily(name, typ string, labels []string) {
	switch typ {
	case "histogram":
		ms.add(name, typ, labels...)
		ms.add(name+"_bucket", "histogram_bucket", append(labels, "le")...)
		ms.add(name+"_sum", "histogram_sum", labels...)
		ms.add(name+"_count", "histogram_count", labels...)
	case "summary":
		ms.add(name, typ, append(labels, "quantile")...)
		ms.add(name+"_sum", "summary_sum", labels...)
		ms.add(name+"_count", "summary_count", labels...)
	default:
		ms.add(name, typ, labels...)
	}
}

// parseExposition reads the Prometheus text format: families from # TYPE
// lines, label names from the samples.
func parseExposition(r io.Reader, into metricSet) error {
	types := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "#") {
			f := strings.Fields(line)
			if len(f) >= 4 && f[1] == "TYPE" {
				types[f[2]] = f[3]
				into.addFamily(f[2], f[3], nil)
			}
			continue
		}
		name, rest := line, ""
		if j := strings.IndexAny(line, "{ "); j >= 0 {
			name, rest = line[:j], line[j:]
		}
		var labels []string
		if strings.HasPrefix(rest, "{") {
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				return fmt.Errorf("bad sample line %q", line)
			}
			ls, err := exposedLabelNames(rest[1:end])
			if err != nil {
				return fmt.Errorf("sample line %q: %w", line, err)
			}
			labels = ls
		}
		typ := "untyped"
		for _, suffix := range []string{"", "_bucket", "_sum", "_count"} {
			if t, ok := types[strings.TrimSuffix(name, suffix)]; ok && (suffix == "" || strings.HasSuffix(name, suffix)) {
				typ = t
				if suffix != "" {
					typ = t + suffix
				}
				break
			}
		}
		into.add(name, typ, labels...)
		if base := strings.TrimSuffix(name, "_bucket"); base != name && types[base] == "histogram" {
			into.add(base, "histogram", withoutLabel(labels, "le")...)
		}
	}
	return sc.Err()
}

func exposedLabelNames(s string) ([]string, error) {
	var names []string
	for i := 0; i < len(s); {
		for i < len(s) && (s[i] == ',' || s[i] == ' ') {
			i++
		}
		if i >= len(s) {
			break
		}
		j := strings.IndexByte(s[i:], '=')
		if j < 0 {
			return nil, fmt.Errorf("label without '=' in %q", s)
		}
		names = append(names, s[i:i+j])
		i += j + 1
		if i >= len(s) || s[i] != '"' {
			return nil, fmt.Errorf("label value not quoted in %q", s)
		}
		i++
		for i < len(s) && s[i] != '"' {
			if s[i] == '\\' {
				i++
			}
			i++
		}
		i++
	}
	return names, nil
}

func withoutLabel(labels []string, drop string) []string {
	var out []string
	for _, l := range labels {
		if l != drop {
			out = append(out, l)
		}
	}
	return out
}

func TestParsePromQL(t *testing.T) {
	q, err := parsePromQL(`sum by (consumer, class) (increase(a_total{x="1", y=~"b|c"}[10m]) or (a_total unless a_total offset 10m)) > 0
	  and on (instance) histogram_quantile(0.99, sum(rate(h_bucket[5m])) by (le)) > 0.5 # comment
	  unless label_replace(vector(1), "service", "gw", "", "")`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range q.Selectors {
		got = append(got, fmt.Sprintf("%s %v@%s/%s", s.Metric, s.Matchers, s.Func, s.Range))
	}
	want := []string{"a_total map[x:1 y:b|c]@increase/10m0s", "a_total map[]@/0s", "a_total map[]@/0s", "h_bucket map[]@rate/5m0s"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("selectors: got %q, want %q", got, want)
	}
	if g := strings.Join(q.Grouping, ","); g != "consumer,class,instance,le" {
		t.Errorf("grouping: got %s", g)
	}
	if f := strings.Join(q.Funcs, ","); f != "sum,increase,histogram_quantile,sum,rate,label_replace,vector" {
		t.Errorf("funcs: got %s", f)
	}
	if len(q.Offsets) != 1 || q.Offsets[0] != 10*time.Minute {
		t.Errorf("offsets: got %v", q.Offsets)
	}
	for _, bad := range []string{`sum(x`, `x{a="b"`, `{job="x"}`, `x[5q]`, `rate(x[5m:1m])`} {
		if _, err := parsePromQL(bad); err == nil {
			t.Errorf("parsePromQL(%q) accepted", bad)
		}
	}
}

func TestParseExposition(t *testing.T) {
	ms := metricSet{}
	err := parseExposition(strings.NewReader(`# HELP a_total A.
# TYPE a_total counter
a_total{consumer="x",class="p\"q"} 1
# TYPE h_seconds histogram
h_seconds_bucket{handler_name="h",le="0.5"} 1
h_seconds_sum{handler_name="h"} 0.1
h_seconds_count{handler_name="h"} 1
go_goroutines 7
`), ms)
	if err != nil {
		t.Fatal(err)
	}
	check := func(name, typ string, labels ...string) {
		t.Helper()
		m := ms[name]
		if m == nil {
			t.Fatalf("%s missing", name)
		}
		if m.Type != typ {
			t.Errorf("%s: type %s, want %s", name, m.Type, typ)
		}
		for _, l := range labels {
			if !m.Labels[l] {
				t.Errorf("%s: label %s missing (%v)", name, l, m.Labels)
			}
		}
	}
	check("a_total", "counter", "consumer", "class")
	check("h_seconds", "histogram", "handler_name")
	check("h_seconds_bucket", "histogram_bucket", "handler_name", "le")
	check("h_seconds_count", "histogram_count", "handler_name")
	check("go_goroutines", "untyped")
}
