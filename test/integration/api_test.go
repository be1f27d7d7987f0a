package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
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
	i := strings.Index(block, "-d '")
	j := strings.LastIndex(block, "'")
	if i < 0 || j <= i {
		t.Fatal("README example has no -d '...' body")
	}
	body := block[i+len("-d '") : j]
	return strings.ReplaceAll(body, `'$(date -u +%Y-%m-%dT%H:%M:%SZ)'`, due.UTC().Format(time.RFC3339))
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
	}
	for _, b := range bad {
		code, out := post(b.body)
		if code != b.code || (b.field != "" && out["field"] != b.field) || out["error"] == "" {
			t.Errorf("POST %.60q = %d %v, want %d naming %q", b.body, code, out, b.code, b.field)
		}
	}
	resp, err := http.Get(base + "/v1/tenants/acme/loans/bad%20id/timeline")
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
