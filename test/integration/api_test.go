package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// readmeExample returns the JSON body of the README's curl example, with its
// shell-substituted due time filled in.
func readmeExample(t *testing.T, due time.Time) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
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

// waitReady waits until the process at base answers /readyz with 200.
func waitReady(t *testing.T, base string) {
	t.Helper()
	waitFor(t, 10*time.Second, func() error {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz = %d", resp.StatusCode)
		}
		return nil
	})
}

// readmeBlock returns the lines of the README's fenced block between
// <!-- example:name --> and <!-- /example:name -->, without the fence.
func readmeBlock(t *testing.T, name string) []string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
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

// readmeLineMatches reports whether an output line is what a README line
// shows. Runs of spaces count as one in both (the README's columns need not
// be padded exactly as the output's). Then the lines must be equal, or, when
// the README line ends in "..." (it elides volatile text such as a
// timestamp), the output line must start with what precedes the "...".
func readmeLineMatches(readme, got string) bool {
	collapse := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	r, g := collapse(readme), collapse(got)
	if prefix, elided := strings.CutSuffix(r, "..."); elided {
		return strings.HasPrefix(g, prefix)
	}
	return r == g
}

// The README's loan climbs the whole ladder and its text timeline is the one
// the README shows: its own ingest example, posted to the all-in-one process
// with 200 ms days, until the legal referral (DPD 90, some 18 s).
func TestReadmeTimeline(t *testing.T) {
	if testing.Short() {
		t.Skip("climbs the whole ladder: about 20 s")
	}
	t.Parallel()
	base := startDunningd(t, "--data-dir", t.TempDir(), "--day", "200ms")
	waitReady(t, base)

	// The README's `date -u` is up to a second in the past, which the
	// README's 1 s day counts as DPD 0; a 200 ms day would not, so the
	// installment falls due at the next whole second instead.
	due := time.Now().Truncate(time.Second).Add(time.Second)
	resp, err := http.Post(base+"/v1/events", "application/json", strings.NewReader(readmeExample(t, due)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("README example: %d, want 202", resp.StatusCode)
	}
	timeline := base + "/v1/tenants/acme/loans/L-1001/timeline"
	waitFor(t, 60*time.Second, func() error {
		resp, err := http.Get(timeline)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var tl struct {
			Entries []struct{ Kind string } `json:"entries"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&tl); err != nil {
			return err
		}
		var kinds []string
		for _, e := range tl.Entries {
			kinds = append(kinds, e.Kind)
		}
		if !slices.Contains(kinds, "legal_referred") {
			return fmt.Errorf("timeline kinds = %v, want a legal referral", kinds)
		}
		return nil
	})

	resp, err = http.Get(timeline + "?format=text")
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("timeline?format=text = %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), text)
	}
	got := strings.Split(strings.TrimRight(string(text), "\n"), "\n")
	want := readmeBlock(t, "timeline")
	for i := range max(len(got), len(want)) {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if i >= len(got) || i >= len(want) || !readmeLineMatches(w, g) {
			t.Errorf("line %d of the text timeline:\n got %q\nREADME %q", i+1, g, w)
		}
	}
	if t.Failed() {
		t.Logf("the text timeline:\n%s", text)
	}

	resp, err = http.Get(timeline + "?format=xml")
	if err != nil {
		t.Fatal(err)
	}
	var bad struct{ Error, Field string }
	_ = json.NewDecoder(resp.Body).Decode(&bad)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || bad.Field != "format" {
		t.Errorf("timeline?format=xml = %d %+v, want 400 naming the field format", resp.StatusCode, bad)
	}
}

// Acceptance 10 (in process): the all-in-one binary's run function, with its
// embedded server and HTTP API, accepts the README's example, shows it in the
// timeline, and answers bad input with the field at fault.
func TestAllInOneHTTP(t *testing.T) {
	t.Parallel()
	base := startDunningd(t, "--data-dir", t.TempDir())
	post := func(body string) (int, map[string]any) {
		t.Helper()
		resp, err := http.Post(base+"/v1/events", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		b, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("response %q is not JSON: %v", b, err)
		}
		return resp.StatusCode, out
	}
	waitReady(t, base)

	example := readmeExample(t, time.Now())
	if code, out := post(example); code != http.StatusAccepted {
		t.Fatalf("README example: %d %v, want 202", code, out)
	}
	if code, out := post(example); code != http.StatusOK || out["duplicate"] != true {
		t.Errorf("README example again: %d %v, want 200 duplicate", code, out)
	}
	var tl struct {
		Stage   string `json:"stage"`
		Entries []struct {
			Kind, Stage, Tier, Reason string
			DPD                       int
		} `json:"entries"`
	}
	waitFor(t, 10*time.Second, func() error {
		resp, err := http.Get(base + "/v1/tenants/acme/loans/L-1001/timeline")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("timeline = %d", resp.StatusCode)
		}
		if err := json.NewDecoder(resp.Body).Decode(&tl); err != nil {
			return err
		}
		kinds := []string{}
		for _, e := range tl.Entries {
			kinds = append(kinds, e.Kind)
		}
		if !strings.Contains(strings.Join(kinds, ","), "installment_due") || !strings.Contains(strings.Join(kinds, ","), "contact_requested") {
			return fmt.Errorf("timeline kinds = %v, want the installment and the first contact", kinds)
		}
		return nil
	})
	for _, e := range tl.Entries {
		if e.Kind == "contact_requested" && (e.Tier != "light" || e.DPD != 1 || e.Reason == "") {
			t.Errorf("first contact entry = %+v, want light tier at DPD 1 with a reason", e)
		}
	}

	// Bad input: 4xx naming the field.
	bad := []struct {
		body, field string
		code        int
	}{
		{strings.Replace(example, `"minorUnits": "120000"`, `"minorUnits": "-5"`, 1), "installment_due.amount.minor_units", 400},
		{strings.Replace(example, `"timeZone": "Asia/Shanghai"`, `"timeZone": "Mars/Olympus"`, 1), "installment_due.time_zone", 400},
		{strings.Replace(example, `"loanId": "L-1001"`, `"loanId": "L 1001"`, 1), "installment_due.loan_id", 400},
		{strings.Replace(example, `"currency": "CNY"`, `"currency": "yuan"`, 1), "installment_due.amount.currency", 400},
		{`{"installmentDue": {"tenantId": "acme", "amout": 5}}`, "body", 400},
		{`{}`, "event", 400},
		{`not json`, "body", 400},
		{strings.Replace(example, `"minorUnits": "120000"`, `"minorUnits": "99"`, 1), "", 409},
		{strings.Replace(example, `"timeZone": "Asia/Shanghai"`, `"timeZone": "Local"`, 1), "installment_due.time_zone", 400},
		{strings.Replace(strings.Replace(example, `"installmentId": "1"`, `"installmentId": "2"`, 1),
			time.Now().UTC().Format("2006"), "2000", 1), "installment_due.due_at", 400},
		{strings.Replace(example, `"contactRef": "crm-77"`, `"contactRef": "wang.fang@example.com"`, 1), "installment_due.contact_ref", 400},
		{strings.Replace(example, `"loanId": "L-1001"`, `"loanId": "11010519491231002X"`, 1), "installment_due.loan_id", 400},
		// A repayment in another currency than the loan's is refused at once.
		{`{"repaymentReceived": {"tenantId": "acme", "loanId": "L-1001", "paymentId": "usd-1",
			"amount": {"currency": "USD", "minorUnits": "100"}, "paidAt": "2026-12-01T00:00:00Z"}}`, "repayment_received.amount.currency", 422},
	}
	for _, b := range bad {
		code, out := post(b.body)
		if code != b.code || (b.field != "" && out["field"] != b.field) || out["error"] == "" {
			t.Errorf("POST %.60q = %d %v, want %d naming %q", b.body, code, out, b.code, b.field)
		}
	}
	// A body of a type the API does not read: 415.
	resp, err := http.Post(base+"/v1/events", "text/plain", strings.NewReader(example))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("POST as text/plain = %d, want 415", resp.StatusCode)
	}
	resp, err = http.Get(base + "/v1/tenants/acme/loans/bad%20id/timeline")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("timeline with a bad loan ID = %d, want 400", resp.StatusCode)
	}
	resp, err = http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`dunning_lender_events_total{result="accepted",source="http"} 1`, `dunning_decisions_total{consumer="first-contact",kind="contact_requested"} 1`} {
		if !bytes.Contains(m, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestReadmeLineMatches(t *testing.T) {
	tests := []struct {
		readme, got string
		want        bool
	}{
		{"1   installment_due  none", "1    installment_due    none", true},
		{"1 installment_due none", "1 installment_due  light", false},
		{"1  installment_due  due ...", "1    installment_due    due 2026-01-15T04:00:00Z", true},
		{"1  installment_due  due ...", "1    installment_due    paid 2026-01-15T04:00:00Z", false},
		{"4   overdue_confirmed", "4 overdue_confirmed extra", false},
		{"", "", true},
		{"seq kind", "", false},
	}
	for _, tt := range tests {
		if got := readmeLineMatches(tt.readme, tt.got); got != tt.want {
			t.Errorf("readmeLineMatches(%q, %q) = %v, want %v", tt.readme, tt.got, got, tt.want)
		}
	}
}
