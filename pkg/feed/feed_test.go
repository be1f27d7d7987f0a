package feed

import (
	"strings"
	"testing"
	"time"

	"github.com/opendunning/dunning/pkg/contactrules"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/topology"
	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"
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
	packs, err := contactrules.Packs()
	if err != nil {
		t.Fatal(err)
	}
	pol := policy.Default()
	pol.Contact = policy.ContactRules{Pack: packs["cn"], MaxAttempts: 6}
	ladder := policy.Fixed(policy.Ladder{Policy: pol, Calendar: policy.Calendar{Day: policy.RealDay}})
	sms := policy.ContactTask{ID: "c1-first_contact-d1-sms", Channel: policy.ChannelSMS, NotBefore: at.Add(-3 * 24 * time.Hour)}
	old := policy.ContactTask{ID: "c1-escalation-d16-sms", Channel: policy.ChannelSMS, NotBefore: at.Add(-20 * 24 * time.Hour)}
	entries = []policy.Entry{entries[0],
		{Seq: 2, Event: policy.ContactPreference{ID: "p-1", Channel: policy.ChannelEmail, OptedOut: true, At: at}},
		{Seq: 3, Event: policy.ContactHours{ID: "h-1", From: "07:00", To: "21:00", At: at}},
		{Seq: 4, Event: policy.Decision{Kind: policy.KindContactRequested, Ctx: policy.Context{Case: 1, Stage: policy.StageFirstContact}, Tasks: []policy.ContactTask{sms, old}}},
		{Seq: 5, Event: policy.Decision{Kind: policy.KindContactReleased, Ctx: policy.Context{Case: 1, Stage: policy.StageFirstContact}, Tasks: []policy.ContactTask{sms, old}}},
		entries[1]}
	m, agency, event, err := project(addr, placed, entries, ladder)
	p := m.GetPlaced()
	if err != nil || agency != "a" || event != topology.FeedPlaced || p.GetPlacementId() != "pl-1" || p.GetContactRef() != "crm-1" ||
		p.GetRegion() != "CN-31" || p.GetLocale() != "en" || p.GetDpd() != 31 || p.GetOverdue().GetMinorUnits() != 90000 || p.GetReason() != ctx.Reason {
		t.Errorf("placement: %v %s %s %v", m, agency, event, err)
	}
	// What the agency must respect: the window cn's 08:00-22:00 widened
	// by the borrower's agreement to 07:00, the opt-out, the week's SMS.
	if p.GetWindowFrom() != "07:00" || p.GetWindowTo() != "22:00" || len(p.GetOptedOut()) != 1 || p.GetOptedOut()[0] != dunningv1.Channel_CHANNEL_EMAIL ||
		p.GetRecentContacts()["sms"] != 1 || len(p.GetRecentContacts()) != 1 {
		t.Errorf("the rules the placement carries: window %s-%s, opted out %v, recent %v; want 07:00-22:00, email, one sms",
			p.GetWindowFrom(), p.GetWindowTo(), p.GetOptedOut(), p.GetRecentContacts())
	}
	closed := policy.Decision{Kind: policy.KindCaseClosed, Ctx: ctx, CloseReason: policy.CloseCured, PlacementID: "pl-1"}
	m, agency, event, err = project(addr, closed, entries, ladder)
	if r := m.GetRecalled(); err != nil || agency != "a" || event != topology.FeedRecalled || r.GetPlacementId() != "pl-1" || r.GetReason() != "case closed: cured" {
		t.Errorf("recall on closing: %v %s %s %v", m, agency, event, err)
	}
	closed.PlacementID = "pl-unknown"
	if _, _, _, err := project(addr, closed, entries, ladder); err == nil || !strings.Contains(err.Error(), "no handoff") {
		t.Errorf("recall of an unknown placement: %v, want refused", err)
	}
}
