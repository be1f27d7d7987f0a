package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
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

// dunctl timeline prints the API's text rendering as it comes, and fails
// clearly (exit 1) when the API is unreachable or refuses.
func TestTimeline(t *testing.T) {
	const table = "seq  kind             stage  tier  dpd  reason\n1    installment_due  none   none  0    installment 1 of 1200.00 CNY due 2026-01-15T04:00:00Z\n"
	const explained = "rule     kind    result            detail\ncn.hours  window  held, then passed  held at 2026-01-16 00:00 local until 2026-01-16 08:57 local\n"
	t.Setenv("DUNNING_API_KEY", "dk_test_secret")
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Header.Get("Authorization") != "Bearer dk_test_secret":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error": "an API key is required", "field": "Authorization"}`)
		case r.URL.Query().Get("format") != "text":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error": "want format=text", "field": "format"}`)
		case r.URL.Path == "/v1/tenants/acme/loans/L-1001/timeline":
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprint(w, table)
		case r.URL.Path == "/v1/tenants/acme/loans/L-1001/contacts/c1-first_contact-d1-sms/rules":
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprint(w, explained)
		case r.URL.Path == "/v1/tenants/acme/loans/L-json/timeline":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"entries": []}`)
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"error": "no events for this loan", "field": "loan"}`)
		}
	}))
	defer api.Close()
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close() // nothing listens at its address any more

	tests := []struct {
		name      string
		args      []string
		code      int
		stdout    string
		stderrHas []string
	}{
		{"prints the table", []string{"timeline", "--api", api.URL, "acme", "L-1001"}, 0, table, nil},
		{"explains a contact", []string{"rules", "explain", "--api", api.URL, "acme", "L-1001", "c1-first_contact-d1-sms"}, 0, explained, nil},
		{"explain without the contact", []string{"rules", "explain", "--api", api.URL, "acme", "L-1001"}, 2, "", []string{"usage"}},
		{"explain an unknown contact", []string{"rules", "explain", "--api", api.URL, "acme", "L-1001", "c9"}, 1, "", []string{"tenant acme, loan L-1001, contact c9", "HTTP 404"}},
		{"flag after the loan", []string{"timeline", "acme", "L-1001", "--api", api.URL + "/"}, 0, table, nil},
		{"unknown loan", []string{"timeline", "--api", api.URL, "acme", "L-9"}, 1, "", []string{"loan L-9", "HTTP 404", "no events for this loan (field loan)"}},
		{"API down", []string{"timeline", "--api", down.URL, "acme", "L-1001"}, 1, "", []string{"cannot reach the API at " + down.URL, "make run"}},
		{"not the pipeline's API", []string{"timeline", "--api", api.URL, "acme", "L-json"}, 1, "", []string{"not text"}},
		{"one argument", []string{"timeline", "acme"}, 2, "", []string{"usage:"}},
		{"URL without a scheme", []string{"timeline", "--api", "localhost:8080", "acme", "L-1001"}, 2, "", []string{"--api must be an http(s) URL"}},
		{"bad loan ID", []string{"timeline", "--api", api.URL, "acme", "L 1001"}, 2, "", []string{`loan "L 1001"`}},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		code := run(tt.args, &out, &errOut)
		if code != tt.code || out.String() != tt.stdout {
			t.Errorf("%s: run(%q) = %d, stdout %q, want %d, %q (stderr %q)", tt.name, tt.args, code, out.String(), tt.code, tt.stdout, errOut.String())
		}
		for _, want := range tt.stderrHas {
			if !strings.Contains(errOut.String(), want) {
				t.Errorf("%s: stderr %q lacks %q", tt.name, errOut.String(), want)
			}
		}
	}
}

// dunctl rules show prints every shipped pack's rules with their citations;
// an unknown pack is a usage error naming the shipped ones.
func TestRulesShow(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"rules", "show"}, &out, &errOut); code != 0 {
		t.Fatalf("rules show = %d: %s", code, errOut.String())
	}
	for _, want := range []string{"pack cn, version", "cn.hours", "cn.voice-per-day", "pack us-regf", "us-regf.opt-out", "12 CFR 1006.6(e)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("rules show lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if code := run([]string{"rules", "show", "us-regf"}, &out, &errOut); code != 0 || strings.Contains(out.String(), "cn.hours") {
		t.Errorf("rules show us-regf = %d:\n%s", code, out.String())
	}
	errOut.Reset()
	if code := run([]string{"rules", "show", "eu"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "cn, us-regf") {
		t.Errorf("rules show eu = %d: %s", code, errOut.String())
	}
}
