package outcome

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/opendunning/dunning/pkg/policy"
	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"
)

// A report's fields, each at fault in turn: the error names the field.
func TestValidate(t *testing.T) {
	ok := func() *dunningv1.AgencyOutcome {
		return &dunningv1.AgencyOutcome{TenantId: "acme", LoanId: "L-1", PlacementId: "pl-1", OutcomeId: "o-1", OccurredAt: timestamppb.Now(),
			Outcome: &dunningv1.AgencyOutcome_Payment{Payment: &dunningv1.AgencyPayment{Amount: &dunningv1.Money{Currency: "CNY", MinorUnits: 100}}}}
	}
	for _, tt := range []struct {
		name  string
		edit  func(*dunningv1.AgencyOutcome)
		field string
	}{
		{"valid", func(*dunningv1.AgencyOutcome) {}, ""},
		{"another loan than the subject's", func(m *dunningv1.AgencyOutcome) { m.LoanId = "L-2" }, "tenant_id and loan_id"},
		{"no outcome_id", func(m *dunningv1.AgencyOutcome) { m.OutcomeId = "" }, "outcome_id"},
		{"no placement", func(m *dunningv1.AgencyOutcome) { m.PlacementId = "" }, "placement_id"},
		{"no time", func(m *dunningv1.AgencyOutcome) { m.OccurredAt = nil }, "occurred_at"},
		{"no outcome", func(m *dunningv1.AgencyOutcome) { m.Outcome = nil }, "outcome"},
		{"a payment of nothing", func(m *dunningv1.AgencyOutcome) { m.GetPayment().Amount.MinorUnits = 0 }, "payment.amount"},
		{"a contact without a channel", func(m *dunningv1.AgencyOutcome) {
			m.Outcome = &dunningv1.AgencyOutcome_Contacted{Contacted: &dunningv1.AgencyContact{}}
		}, "contacted.channel"},
		{"a promise without a date", func(m *dunningv1.AgencyOutcome) {
			m.Outcome = &dunningv1.AgencyOutcome_Promise{Promise: &dunningv1.AgencyPromise{Amount: &dunningv1.Money{Currency: "CNY", MinorUnits: 5}}}
		}, "promise.promised_for"},
	} {
		m := ok()
		tt.edit(m)
		err := Validate(m, "acme", "L-1")
		if (err == nil) != (tt.field == "") || (err != nil && !strings.HasPrefix(err.Error(), tt.field)) {
			t.Errorf("%s: %v, want an error naming %q", tt.name, err, tt.field)
		}
	}
}

// Whose placement it is, and whether it is still out.
func TestPlaced(t *testing.T) {
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	handoff := policy.Decision{Kind: policy.KindHandedOff, Ctx: policy.Context{Case: 1, DecidedAt: at}, AgencyID: "a", PlacementID: "pl-1"}
	log := []policy.Entry{{Seq: 1, Event: handoff}}
	if err := Placed(log, "a", "pl-1"); err != nil {
		t.Errorf("its own open placement: %v", err)
	}
	if err := Placed(log, "b", "pl-1"); err == nil || !strings.Contains(err.Error(), "is agency a's, not b's") {
		t.Errorf("another agency's: %v", err)
	}
	if err := Placed(log, "a", "pl-2"); err == nil || !strings.Contains(err.Error(), "unknown placement pl-2") {
		t.Errorf("unknown: %v", err)
	}
	recalled := append(log, policy.Entry{Seq: 2, Event: policy.Decision{Kind: policy.KindPlacementRecalled, Ctx: policy.Context{Case: 1, DecidedAt: at},
		AgencyID: "a", PlacementID: "pl-1"}})
	if err := Placed(recalled, "a", "pl-1"); err == nil || !strings.Contains(err.Error(), "was recalled") {
		t.Errorf("recalled: %v", err)
	}
}
