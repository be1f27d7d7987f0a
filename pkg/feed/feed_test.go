package feed

import (
	"strings"
	"testing"
	"time"

	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/topology"
)

// The projection of each decision the feed consumes, from the loan's log:
// a placement carries the borrower's references and the case as placed; a
// closing's recall finds its agency in the handoff; a recall of a
// placement no handoff made is refused.
func TestProject(t *testing.T) {
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	addr := topology.LoanAddress{Tenant: "acme", Loan: "L-1"}
	ctx := policy.Context{Case: 1, Stage: policy.StageHandoff, Tier: policy.TierSevere, DPD: 31,
		Overdue: policy.Money{Currency: "CNY", Minor: 90000}, DecidedAt: at, Reason: "place with agency a"}
	placed := policy.Decision{Kind: policy.KindHandedOff, Ctx: ctx, AgencyID: "a", PlacementID: "pl-1"}
	entries := []policy.Entry{
		{Seq: 1, Event: policy.InstallmentDue{ID: "1", Amount: policy.Money{Currency: "CNY", Minor: 90000}, DueAt: at,
			ContactRef: "crm-1", Locale: "en", Region: "CN-31"}},
		{Seq: 9, Event: placed},
	}
	m, agency, event, err := project(addr, placed, entries)
	p := m.GetPlaced()
	if err != nil || agency != "a" || event != topology.FeedPlaced || p.GetPlacementId() != "pl-1" || p.GetContactRef() != "crm-1" ||
		p.GetRegion() != "CN-31" || p.GetLocale() != "en" || p.GetDpd() != 31 || p.GetOverdue().GetMinorUnits() != 90000 || p.GetReason() != ctx.Reason {
		t.Errorf("placement: %v %s %s %v", m, agency, event, err)
	}
	closed := policy.Decision{Kind: policy.KindCaseClosed, Ctx: ctx, CloseReason: policy.CloseCured, PlacementID: "pl-1"}
	m, agency, event, err = project(addr, closed, entries)
	if r := m.GetRecalled(); err != nil || agency != "a" || event != topology.FeedRecalled || r.GetPlacementId() != "pl-1" || r.GetReason() != "case closed: cured" {
		t.Errorf("recall on closing: %v %s %s %v", m, agency, event, err)
	}
	closed.PlacementID = "pl-unknown"
	if _, _, _, err := project(addr, closed, entries); err == nil || !strings.Contains(err.Error(), "no handoff") {
		t.Errorf("recall of an unknown placement: %v, want refused", err)
	}
}
