// Package readme holds what tests read from the README: its examples, and
// how a command's output is compared with what the README shows. Its test
// climbs the README's loan through the whole ladder; it is a package of its
// own so that its minute and a half of waiting runs beside the integration
// tests (go test runs packages in parallel), not after them.
package readme

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// path is the README, found from this file, so that tests of any package
// read it.
func path(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller information")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "README.md")
}

// Example returns the JSON body of the README's curl example, with its
// shell-substituted due time filled in.
func Example(t *testing.T, due time.Time) string {
	t.Helper()
	b, err := os.ReadFile(path(t))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	start := strings.Index(s, "<!-- example:ingest -->")
	end := strings.Index(s, "<!-- /example:ingest -->")
	if start < 0 || end < start {
		t.Fatal("README has no ingest example between its markers")
	}
	block := s[start:end]
	if !strings.Contains(block, `-H "Authorization: Bearer $(cat data/credentials/dev-api-key)"`) {
		t.Fatal("README's ingest example does not carry make run's development API key")
	}
	i := strings.Index(block, "-d '")
	j := strings.LastIndex(block, "'")
	if i < 0 || j <= i {
		t.Fatal("README example has no -d '...' body")
	}
	body := block[i+len("-d '") : j]
	return strings.ReplaceAll(body, `'$(date -u +%Y-%m-%dT%H:%M:%SZ)'`, due.UTC().Format(time.RFC3339))
}

// Block returns the lines of the README's fenced block between
// <!-- example:name --> and <!-- /example:name -->, without the fence.
func Block(t *testing.T, name string) []string {
	t.Helper()
	b, err := os.ReadFile(path(t))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	open, closing := "<!-- example:"+name+" -->\n", "<!-- /example:"+name+" -->"
	start, end := strings.Index(s, open), strings.Index(s, closing)
	if start < 0 || end < start {
		t.Fatalf("README has no %s example between its markers", name)
	}
	block := strings.TrimSpace(s[start+len(open) : end])
	lines := strings.Split(block, "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "```") || lines[len(lines)-1] != "```" {
		t.Fatalf("README's %s example is not one fenced block", name)
	}
	return lines[1 : len(lines)-1]
}

// LineMatches reports whether an output line is what a README line
// shows. Runs of spaces count as one in both (the README's columns need not
// be padded exactly as the output's). Then the lines must be equal, or, when
// the README line ends in "..." (it elides volatile text such as a
// timestamp), the output line must start with what precedes the "...".
func LineMatches(readme, got string) bool {
	collapse := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	r, g := collapse(readme), collapse(got)
	if prefix, elided := strings.CutSuffix(r, "..."); elided {
		return strings.HasPrefix(g, prefix)
	}
	return r == g
}
