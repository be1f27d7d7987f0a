package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opendunning/dunning/pkg/policyfile"
)

func TestPolicyCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(good, policyfile.DefaultYAML, 0o600); err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(strings.Replace(string(policyfile.DefaultYAML), "[sms]", "[fax]", 1), "from: 31}", "from: 40}", 1)
	if err := os.WriteFile(bad, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"policy", "check", good}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "good.yaml: ok (version default-v1") {
		t.Errorf("check good = %d, %q %q", code, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	code := run([]string{"policy", "check", good, bad}, &out, &errOut)
	if code != 1 {
		t.Errorf("check bad = %d, want 1", code)
	}
	for _, want := range []string{bad + ":", `unknown channel "fax"`, "gap between medium (to 30) and severe (from 40)"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("stderr %q lacks %q", errOut.String(), want)
		}
	}
	if code := run([]string{"policy", "check", filepath.Join(dir, "missing.yaml")}, &out, &errOut); code != 1 {
		t.Errorf("check missing file = %d, want 1", code)
	}
	if code := run([]string{"nonsense"}, &out, &errOut); code != 2 {
		t.Errorf("unknown command = %d, want 2", code)
	}
}

// The README shows the dry run of the shipped policy; it must be the real output.
func TestDryRunMatchesReadme(t *testing.T) {
	var out bytes.Buffer
	if err := dryrun(nil, &out); err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(readme)
	start := strings.Index(s, "<!-- example:dryrun -->\n```text\n")
	end := strings.Index(s, "\n```\n<!-- /example:dryrun -->")
	if start < 0 || end < start {
		t.Fatal("README has no dry-run example between its markers")
	}
	got := strings.TrimSpace(out.String())
	want := strings.TrimSpace(s[start+len("<!-- example:dryrun -->\n```text\n") : end])
	if got != want {
		t.Errorf("dry run output:\n%s\nREADME shows:\n%s", got, want)
	}
	for _, k := range []string{"overdue_confirmed", "contact_requested", "escalated", "handed_off", "legal_referred"} {
		if !strings.Contains(got, k) {
			t.Errorf("dry run of a loan that never pays lacks %s", k)
		}
	}
}

func TestDryRunFlags(t *testing.T) {
	var out bytes.Buffer
	if err := dryrun([]string{"--pay", "10:100000", "--texts", "--locale", "en"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "case_closed") || strings.Contains(out.String(), "escalated") || !strings.Contains(out.String(), "REF0000000") {
		t.Errorf("dry run paying at DPD 10:\n%s", out.String())
	}
	if err := dryrun([]string{"--pay", "ten"}, &out); err == nil {
		t.Error("--pay ten accepted")
	}
}
