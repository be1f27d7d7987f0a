package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opendunning/dunning/pkg/apikey"
	"github.com/opendunning/dunning/pkg/policy"
)

// Acceptance 5 (borrower's side), over HTTP: a promise is refused with 400
// naming the field when its day is beyond promises.max_days, while another
// is open, and after max_broken (2) broken ones; the check reads the loan's
// log, and the promise is written guarded by the log's last sequence. A
// plan is refused the same way when it pays less than is overdue, has
// begun already, or another is in force.
func TestPromiseAndPlanRefusals(t *testing.T) {
	s, log := testServer(t)
	s.Ingestor.Ladder = s.Ladder
	path, key := keyFile(t)
	acme, _ := key("acme", apikey.ScopeIngest)
	keys, err := apikey.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Keys = keys
	api := httptest.NewServer(s.Handler())
	defer api.Close()
	ctx := context.Background()

	post := func(body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, api.URL+"/v1/events", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+acme)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var out map[string]any
		_ = json.Unmarshal(b, &out)
		return resp.StatusCode, out
	}
	now := time.Now().UTC()
	day := func(n int) string { return now.Add(time.Duration(n) * 24 * time.Hour).Format(time.RFC3339) }
	promise := func(loan, id string, forDays int) string {
		return `{"promiseToPay": {"tenantId": "acme", "loanId": "` + loan + `", "promiseId": "` + id + `",
			"amount": {"currency": "CNY", "minorUnits": "60000"}, "promisedFor": "` + day(forDays) + `", "receivedAt": "` + day(0) + `"}}`
	}
	// plan is three installments of minor, the first in first days, every step days.
	plan := func(id string, first, step int, minor int) string {
		var ins []string
		for i := range 3 {
			ins = append(ins, `{"dueAt": "`+day(first+step*i)+`", "amount": {"currency": "CNY", "minorUnits": "`+strconv.Itoa(minor)+`"}}`)
		}
		return `{"repaymentPlan": {"tenantId": "acme", "loanId": "L-1", "planId": "` + id + `", "receivedAt": "` + day(0) +
			`", "installments": [` + strings.Join(ins, ", ") + `]}}`
	}
	due := `{"installmentDue": {"tenantId": "acme", "loanId": "L-1", "installmentId": "1",
		"amount": {"currency": "CNY", "minorUnits": "120000"}, "dueAt": "` + day(-10) + `", "timeZone": "Asia/Shanghai", "contactRef": "crm-1"}}`
	if code, out := post(due); code != http.StatusAccepted {
		t.Fatalf("installment: %d %v", code, out)
	}
	// breaks records the promise broken, as overdue confirmation would.
	breaks := func(id string) {
		t.Helper()
		_, last, err := log.Read(ctx, "acme", "L-1")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := log.AppendDecision(ctx, "acme", "L-1", last, policy.Decision{Kind: policy.KindPromiseBroken,
			Ctx: policy.Context{Case: 1, Stage: policy.StageFirstContact, DPD: 14, Reason: "broken"}, PromiseID: id}); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		name, body string
		code       int
		field      string
		then       func()
	}{
		{"a promise 31 days ahead", promise("L-1", "pr-far", 31), 400, "promise_to_pay.promised_for", nil},
		{"a promise in the past", promise("L-1", "pr-past", -1), 400, "promise_to_pay.promised_for", nil},
		{"a promise of more than is overdue", strings.Replace(promise("L-1", "pr-big", 4), `"60000"`, `"130000"`, 1), 400, "promise_to_pay.amount", nil},
		{"a promise on a loan with nothing overdue", promise("L-none", "pr-0", 4), 400, "promise_to_pay", nil},
		{"the first promise", promise("L-1", "pr-1", 4), 202, "", nil},
		{"its repeat", promise("L-1", "pr-1", 4), 200, "", nil},
		{"a second while it is open", promise("L-1", "pr-2", 5), 400, "promise_to_pay", func() { breaks("pr-1") }},
		{"a second after it broke", promise("L-1", "pr-2", 5), 202, "", func() { breaks("pr-2") }},
		{"a third after two broken", promise("L-1", "pr-3", 5), 400, "promise_to_pay", nil},
		{"a plan paying less than is overdue", plan("plan-short", 3, 4, 30000), 400, "repayment_plan.installments", nil},
		{"a plan already under way", plan("plan-past", -1, 4, 40000), 400, "repayment_plan.installments[0].due_at", nil},
		{"a plan paying it all", plan("plan-1", 3, 4, 40000), 202, "", nil},
		{"a second plan beside it", plan("plan-2", 3, 4, 40000), 400, "repayment_plan", nil},
	}
	for _, st := range steps {
		code, out := post(st.body)
		if code != st.code || (st.field != "" && out["field"] != st.field) {
			t.Errorf("%s: %d %v, want %d naming %q", st.name, code, out, st.code, st.field)
		}
		if st.then != nil {
			st.then()
		}
	}
	if _, out := post(promise("L-1", "pr-3", 5)); !strings.Contains(out["error"].(string), "max_broken 2") {
		t.Errorf("refusal after two broken = %v, want it to name promises.max_broken", out)
	}
}
