package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opendunning/dunning/test/readme"
)

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

	example := readme.Example(t, time.Now())
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
		// A hold of no known kind, and the release of a hold never placed.
		{`{"holdPlaced": {"tenantId": "acme", "loanId": "L-1001", "holdId": "d-1", "kind": "HOLD_KIND_UNSPECIFIED",
			"receivedAt": "2026-12-01T00:00:00Z"}}`, "hold_placed.kind", 400},
		{`{"holdReleased": {"tenantId": "acme", "loanId": "L-1001", "holdId": "never-placed",
			"releasedAt": "2026-12-01T00:00:00Z"}}`, "hold_released.hold_id", 422},
		// A plan out of order, and the cancellation of a plan never agreed.
		{`{"repaymentPlan": {"tenantId": "acme", "loanId": "L-1001", "planId": "plan-1", "receivedAt": "2026-12-01T00:00:00Z",
			"installments": [{"dueAt": "2026-12-20T00:00:00Z", "amount": {"currency": "CNY", "minorUnits": "40000"}},
			{"dueAt": "2026-12-10T00:00:00Z", "amount": {"currency": "CNY", "minorUnits": "40000"}}]}}`, "repayment_plan.installments[1].due_at", 400},
		{`{"planCancelled": {"tenantId": "acme", "loanId": "L-1001", "planId": "never-agreed",
			"cancelledAt": "2026-12-01T00:00:00Z"}}`, "plan_cancelled.plan_id", 422},
	}
	for _, b := range bad {
		code, out := post(b.body)
		if code != b.code || (b.field != "" && out["field"] != b.field) || out["error"] == "" {
			t.Errorf("POST %.60q = %d %v, want %d naming %q", b.body, code, out, b.code, b.field)
		}
	}
	// A dispute placed and released: both recorded (202), the release now
	// naming a hold the log holds.
	for _, body := range []string{
		`{"holdPlaced": {"tenantId": "acme", "loanId": "L-1001", "holdId": "d-1", "kind": "HOLD_KIND_DISPUTE", "receivedAt": "2026-12-01T00:00:00Z"}}`,
		`{"holdReleased": {"tenantId": "acme", "loanId": "L-1001", "holdId": "d-1", "releasedAt": "2026-12-01T01:00:00Z"}}`,
	} {
		if code, out := post(body); code != http.StatusAccepted {
			t.Errorf("POST %.40q = %d %v, want 202", body, code, out)
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
	// Accepted: the installment, the dispute and its release.
	for _, want := range []string{`dunning_lender_events_total{result="accepted",source="http"} 3`, `dunning_decisions_total{consumer="first-contact",kind="contact_requested"} 1`} {
		if !bytes.Contains(m, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
