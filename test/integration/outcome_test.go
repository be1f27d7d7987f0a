package integration

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/opendunning/dunning/pkg/access"
	"github.com/opendunning/dunning/pkg/agency"
	"github.com/opendunning/dunning/pkg/bus"
	"github.com/opendunning/dunning/pkg/codec"
	"github.com/opendunning/dunning/pkg/pipeline"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/stage"
	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"
	"github.com/opendunning/dunning/test/attack"
)

// Issue 12, acceptance 4: agency A, with its own credential over TCP,
// reports on its placements. A contact on its open placement is recorded
// in the loan's log once however often it is sent; a report naming a
// placement the loan never had, agency B's placement, or A's placement
// after the cure recalled it, is refused with its reason and
// dead-lettered, and nothing of it reaches the loan's log. And (acceptance
// 3) a payment the agency reports is not money until the lender's
// repayment comes, which pays the balance once.
func TestAgencyOutcomes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 60*time.Millisecond)
	a, b := attack.Agencies[0], attack.Agencies[1]
	l := h.ladder
	l.Policy.Agencies = []policy.Agency{{ID: a, Regions: []string{"CN-31"}, Weight: 1}, {ID: b, Regions: []string{"CN-11"}, Weight: 1}}
	h.ladderFor = policy.Fixed(l)
	h.startParts("pipeline", access.Service("dunningd"), pipeline.Parts{Stages: stage.Table, Intake: true, Feed: true})
	for loan, region := range map[string]string{"L-a": "CN-31", "L-a-cured": "CN-31", "L-b": "CN-11", "L-a-paid": "CN-31", "L-a-promise": "CN-31", "L-a-plan": "CN-31"} {
		ev := dueEvent(loan, "1", 100000, time.Now())
		ev.GetInstallmentDue().Region = region
		h.send(ev)
	}
	placement := map[string]string{}
	for _, loan := range []string{"L-a", "L-a-cured", "L-b", "L-a-paid", "L-a-promise", "L-a-plan"} {
		h.waitKind(loan, policy.KindHandedOff, 1, 31*h.day+30*time.Second)
		d, _ := h.decision(loan, policy.KindHandedOff)
		placement[loan] = d.PlacementID
	}
	h.send(payEvent("L-a-cured", "p-1", 100000))
	h.waitKind("L-a-cured", policy.KindCaseClosed, 1, 30*time.Second)

	// The reference client's Report, as a partner posts.
	client := &agency.Client{Agency: a, Conn: h.connectAs(access.Agency(a)).nc}
	report := func(loan, id, pl string) {
		t.Helper()
		m := &dunningv1.AgencyOutcome{TenantId: tenant, LoanId: loan, PlacementId: pl, OutcomeId: id, OccurredAt: timestamppb.Now(),
			Outcome: &dunningv1.AgencyOutcome_Contacted{Contacted: &dunningv1.AgencyContact{Channel: dunningv1.Channel_CHANNEL_PHONE, Connected: true, RightParty: true}}}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := client.Report(ctx, m); err != nil {
			t.Fatalf("agency %s reporting on %s: %v", a, loan, err)
		}
	}
	report("L-a", "o-1", placement["L-a"])
	report("L-a", "o-1", placement["L-a"]) // the same report again
	report("L-a", "o-2", "00000000-0000-5000-8000-000000000000")
	report("L-b", "o-3", placement["L-b"])
	report("L-a-cured", "o-4", placement["L-a-cured"])

	waitFor(t, 30*time.Second, func() error {
		if n := counts(h.entries("L-a"))[string(codec.AgencyOutcome.Token)]; n != 1 {
			return errorf("L-a has %d agency outcomes", n)
		}
		if n := len(h.dlq()); n < 3 {
			return errorf("%d dead letters", n)
		}
		return nil
	})
	var reasons []string
	for _, m := range h.dlq() {
		if m.Header.Get(bus.HeaderDLQConsumer) == "agency-outcomes" {
			reasons = append(reasons, m.Header.Get(bus.HeaderDLQReason))
		}
	}
	for _, want := range []string{"unknown placement", "placement " + placement["L-b"] + " is agency " + b + "'s, not " + a + "'s",
		"placement " + placement["L-a-cured"] + " was recalled"} {
		found := false
		for _, r := range reasons {
			found = found || strings.Contains(r, want)
		}
		if !found {
			t.Errorf("no dead letter saying %q (dead letters: %q)", want, reasons)
		}
	}
	if len(reasons) != 3 {
		t.Errorf("%d outcome dead letters, want 3: %q", len(reasons), reasons)
	}
	for _, loan := range []string{"L-a-cured", "L-b"} {
		if n := counts(h.entries(loan))[string(codec.AgencyOutcome.Token)]; n != 0 {
			t.Errorf("%s's log holds %d agency outcomes after refused reports", loan, n)
		}
	}
	// Acceptance 3: a payment the agency reports is recorded, not money;
	// the lender's repayment then pays the balance once and closes the
	// case (and with it the placement).
	pay := &dunningv1.AgencyOutcome{TenantId: tenant, LoanId: "L-a-paid", PlacementId: placement["L-a-paid"], OutcomeId: "o-5", OccurredAt: timestamppb.Now(),
		Outcome: &dunningv1.AgencyOutcome_Payment{Payment: &dunningv1.AgencyPayment{Amount: money(100000), Reference: "bank-1"}}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := client.Report(ctx, pay); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, func() error {
		if n := counts(h.entries("L-a-paid"))[string(codec.AgencyOutcome.Token)]; n != 1 {
			return errorf("L-a-paid has %d agency outcomes", n)
		}
		return nil
	})
	if _, closed := h.decision("L-a-paid", policy.KindCaseClosed); closed {
		t.Fatal("an agency's reported payment closed the case: it is not money")
	}
	h.send(payEvent("L-a-paid", "bank-1", 100000))
	h.waitKind("L-a-paid", policy.KindCaseClosed, 1, 30*time.Second)
	var fold []policy.Entry
	for _, e := range h.entries("L-a-paid") {
		fold = append(fold, policy.Entry{Seq: e.seq, Event: e.event})
	}
	c := policy.Fold(fold)
	if closed, _ := h.decision("L-a-paid", policy.KindCaseClosed); closed.CloseReason != policy.CloseCured || closed.PlacementID != placement["L-a-paid"] ||
		c.Outstanding()[0] != 0 || c.Overpaid().Minor != 0 || len(c.Repayments) != 1 {
		t.Errorf("after the lender's repayment: closed %s recalling %q, outstanding %v, overpaid %s, %d repayments; want cured, the placement recalled, paid once",
			closed.CloseReason, closed.PlacementID, c.Outstanding(), c.Overpaid(), len(c.Repayments))
	}

	// A promise the agency took is the borrower's promise, recorded as the
	// lender's would be (through the same checks), sent by the agency; a
	// dispute it heard is a dispute hold, which recalls its placement.
	promise := &dunningv1.AgencyOutcome{TenantId: tenant, LoanId: "L-a", PlacementId: placement["L-a"], OutcomeId: "o-6", OccurredAt: timestamppb.Now(),
		Outcome: &dunningv1.AgencyOutcome_Promise{Promise: &dunningv1.AgencyPromise{Amount: money(50000), PromisedFor: timestamppb.New(time.Now().Add(10 * h.day))}}}
	dispute := &dunningv1.AgencyOutcome{TenantId: tenant, LoanId: "L-a", PlacementId: placement["L-a"], OutcomeId: "o-7", OccurredAt: timestamppb.Now(),
		Outcome: &dunningv1.AgencyOutcome_Dispute{Dispute: &dunningv1.AgencyDispute{Detail: "the borrower says the loan was repaid in cash"}}}
	for _, m := range []*dunningv1.AgencyOutcome{promise, dispute} {
		rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := client.Report(rctx, m)
		rcancel()
		if err != nil {
			t.Fatal(err)
		}
		// In order: the dispute recalls the placement the promise names.
		waitFor(t, 30*time.Second, func() error {
			for _, e := range h.entries("L-a") {
				switch x := e.event.(type) {
				case policy.PromiseToPay:
					if m == promise && x.ID == "agency-o-6" && x.Amount.Minor == 50000 {
						return nil
					}
				case policy.HoldPlaced:
					if m == dispute && x.ID == "agency-o-7" && x.Kind == policy.HoldDispute {
						return nil
					}
				}
			}
			return errorf("%s not recorded on the borrower's side", m.GetOutcomeId())
		})
	}
	h.waitKind("L-a", policy.KindPlacementRecalled, 1, 30*time.Second)
	// A plan the agency arranged is the borrower's plan (agency-<outcome>);
	// while it is in force, the lender's dispute hold does not recall the
	// placement: the refusal is recorded, the placement stays.
	var installments []*dunningv1.PlanInstallment
	for _, d := range []int{5, 10} {
		installments = append(installments, &dunningv1.PlanInstallment{Amount: money(50000), DueAt: timestamppb.New(time.Now().Add(time.Duration(d) * h.day))})
	}
	plan := &dunningv1.AgencyOutcome{TenantId: tenant, LoanId: "L-a-plan", PlacementId: placement["L-a-plan"], OutcomeId: "o-10", OccurredAt: timestamppb.Now(),
		Outcome: &dunningv1.AgencyOutcome_Plan{Plan: &dunningv1.AgencyPlan{Installments: installments}}}
	pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := client.Report(pctx, plan)
	pcancel()
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, func() error {
		for _, e := range h.entries("L-a-plan") {
			if x, ok := e.event.(policy.RepaymentPlan); ok && x.ID == "agency-o-10" && len(x.Installments) == 2 {
				return nil
			}
		}
		return errorf("the agency's plan is not the borrower's plan")
	})
	h.send(holdEvent("L-a-plan", "h-plan", dunningv1.HoldKind_HOLD_KIND_DISPUTE))
	h.waitKind("L-a-plan", policy.KindRecallRefused, 1, 30*time.Second)
	if refused, _ := h.decision("L-a-plan", policy.KindRecallRefused); refused.PlanID != "agency-o-10" || refused.Rule != "hold:h-plan" {
		t.Errorf("recall refused %+v, want the agency's plan and the hold named", refused)
	}
	if c := counts(h.entries("L-a-plan")); c[policy.KindPlacementRecalled.String()] != 0 {
		t.Errorf("L-a-plan recalled while the agency's plan is in force")
	}
	// A promise the borrower's side refuses (more than is overdue): the
	// report stays recorded, the refusal is dead-lettered with the reason.
	big := &dunningv1.AgencyOutcome{TenantId: tenant, LoanId: "L-a-promise", PlacementId: placement["L-a-promise"], OutcomeId: "o-8", OccurredAt: timestamppb.Now(),
		Outcome: &dunningv1.AgencyOutcome_Promise{Promise: &dunningv1.AgencyPromise{Amount: money(900000), PromisedFor: timestamppb.New(time.Now().Add(10 * h.day))}}}
	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer rcancel()
	if err := client.Report(rctx, big); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, func() error {
		for _, m := range h.dlq() {
			if r := m.Header.Get(bus.HeaderDLQReason); strings.Contains(r, "outcome o-8 recorded, but its promise refused: promise_to_pay.amount") {
				return nil
			}
		}
		var rs []string
		for _, m := range h.dlq() {
			rs = append(rs, m.Header.Get(bus.HeaderDLQReason))
		}
		return errorf("no dead letter for the refused promise: %q", rs)
	})
	for _, e := range h.entries("L-a-promise") {
		if _, ok := e.event.(policy.PromiseToPay); ok {
			t.Error("a refused promise reached the loan's log")
		}
	}

	// The agency learns why, on its own feed: each refused report once,
	// with its reason, beside its 5 placements and 3 recalls.
	var rejected []string
	for _, e := range h.readFeed(a, 12) {
		if r := e.msg.GetRejected(); r != nil {
			rejected = append(rejected, r.GetOutcomeId()+": "+r.GetReason())
		}
	}
	slices.Sort(rejected)
	want := []string{"o-2: unknown placement", "o-3: placement " + placement["L-b"] + " is agency " + b + "'s", "o-4: placement " + placement["L-a-cured"] + " was recalled",
		"o-8: outcome o-8 recorded, but its promise refused"}
	if len(rejected) != len(want) {
		t.Errorf("refusals on the agency's feed: %q, want %d", rejected, len(want))
	}
	for i := range min(len(rejected), len(want)) {
		if !strings.HasPrefix(rejected[i], want[i]) {
			t.Errorf("refusal %d on the agency's feed: %q, want %q...", i, rejected[i], want[i])
		}
	}

	var rec policy.AgencyOutcome
	for _, e := range h.entries("L-a") {
		if o, ok := e.event.(policy.AgencyOutcome); ok && o.ID == "o-1" {
			rec = o
		}
	}
	if rec.Agency != a || rec.Placement != placement["L-a"] || rec.Kind != policy.AgencyContacted || rec.Channel != policy.ChannelPhone || !rec.RightParty {
		t.Errorf("recorded outcome %+v", rec)
	}
}
