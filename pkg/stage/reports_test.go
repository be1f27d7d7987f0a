package stage_test

import (
	"strings"
	"testing"
	"time"

	"github.com/opendunning/dunning/pkg/policy"
)

// Issue 12, outcomes back: a payment an agency reports is not money until
// the lender's repayment with its reference arrives, and one still
// unconfirmed after the policy's confirm_payment_days is recorded, once,
// by the handoff stage (the alert DunningAgencyPaymentUnconfirmed counts
// those records). L-1's report is confirmed by the lender two days later:
// the balance falls once, the case closes, nothing is flagged. L-2's
// report is never confirmed: flagged at the report's time plus five days,
// and not again.
func TestAgencyPaymentReportsConfirmed(t *testing.T) {
	w := holdWorld(t, func(p *policy.Policy) { p.AgencyPaymentConfirmDays = 5 })
	for _, loan := range []string{"L-1", "L-2"} {
		w.installment(loan, 100000)
	}
	w.drain()
	w.until(w.dpd(32, 10*time.Hour))
	for _, loan := range []string{"L-1", "L-2"} {
		placed := w.decided(loan, policy.KindHandedOff)
		if len(placed) != 1 {
			t.Fatalf("%s placements %+v, want one", loan, placed)
		}
		w.lender(loan, "r-1", policy.AgencyOutcome{ID: "r-1", Placement: placed[0].PlacementID, Agency: placed[0].AgencyID,
			At: w.clock.Now(), Kind: policy.AgencyPaid, Amount: policy.Money{Currency: "CNY", Minor: 100000}, Reference: "BANK-" + loan})
	}
	w.drain()
	// A report is not money: both cases stay open.
	for _, loan := range []string{"L-1", "L-2"} {
		if len(w.decided(loan, policy.KindCaseClosed)) != 0 {
			t.Fatalf("%s closed on the agency's report alone", loan)
		}
	}
	w.until(w.dpd(34, 10*time.Hour))
	w.lender("L-1", "BANK-L-1", policy.Repayment{PaymentID: "BANK-L-1", Amount: policy.Money{Currency: "CNY", Minor: 100000}, PaidAt: w.clock.Now()})
	w.drain()
	w.until(w.dpd(45, 0))
	if closed := w.decided("L-1", policy.KindCaseClosed); len(closed) != 1 || closed[0].CloseReason != policy.CloseCured {
		t.Errorf("L-1 closings %+v, want one, cured", closed)
	}
	if got := w.decided("L-1", policy.KindAgencyPaymentUnconfirmed); len(got) != 0 {
		t.Errorf("L-1, confirmed by the lender: flagged %+v", got)
	}
	flagged := w.decided("L-2", policy.KindAgencyPaymentUnconfirmed)
	if len(flagged) != 1 {
		t.Fatalf("L-2 flagged %d times, want once: %+v", len(flagged), flagged)
	}
	f := flagged[0]
	if want := w.dpd(37, 10*time.Hour); !f.Ctx.AsOf.Equal(want) || f.ReportID != "r-1" || f.Rule != "BANK-L-2" || f.Paid.Minor != 100000 ||
		!strings.Contains(f.Ctx.Reason, "no lender repayment with that reference 5 days later") {
		t.Errorf("L-2 flagged %+v at %s, want report r-1 (BANK-L-2, 1000.00) at %s", f, f.Ctx.AsOf.In(w.loc), want.In(w.loc))
	}
	if len(w.decided("L-2", policy.KindCaseClosed)) != 0 {
		t.Errorf("L-2 closed: an unconfirmed report must not count as money")
	}
}
