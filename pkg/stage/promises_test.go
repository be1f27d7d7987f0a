package stage_test

import (
	"testing"
	"time"

	"github.com/opendunning/dunning/pkg/policy"
)

// Acceptance 5 (borrower's side), in the engine: with grace_days 0, a
// promise of 600.00 of 1,200.00 made at DPD 10 for DPD 14. Paid at DPD 13:
// promise_kept then, and the ladder goes on for the 600.00 left (escalated
// at DPD 16 on 600.00). Not paid: promise_broken at the start of DPD 15,
// escalation at DPD 16. The DPD-12 cadence contact is not made while the
// promise is open. (The third promise after two broken is refused at
// intake: test/integration.)
func TestPromiseToPay(t *testing.T) {
	w := holdWorld(t, func(p *policy.Policy) {
		p.Promises = policy.PromiseRules{GraceDays: 0, ThresholdPct: 100, MaxDays: 30, MaxBroken: 2}
		p.Cadence = []policy.CadenceStep{
			{Stage: policy.StageFirstContact, DPD: 1, Channels: []policy.Channel{policy.ChannelSMS}, Template: "light_reminder"},
			{Stage: policy.StageFirstContact, DPD: 12, Channels: []policy.Channel{policy.ChannelSMS}, Template: "light_reminder"},
			{Stage: policy.StageEscalation, DPD: 16, Channels: []policy.Channel{policy.ChannelSMS}, Template: "medium_notice"},
		}
	})
	for _, loan := range []string{"L-kept", "L-broken"} {
		w.installment(loan, 120000)
	}
	w.drain()
	w.until(w.dpd(10, 11*time.Hour))
	for _, loan := range []string{"L-kept", "L-broken"} {
		w.lender(loan, "pr-1", policy.PromiseToPay{ID: "pr-1", Amount: policy.Money{Currency: "CNY", Minor: 60000},
			For: w.dpd(14, 12*time.Hour), At: w.clock.Now()})
	}
	w.drain()
	w.until(w.dpd(13, 10*time.Hour))
	w.pay("L-kept", "p-1", 60000)
	w.drain()
	w.until(w.dpd(17, 0))

	kept := w.decided("L-kept", policy.KindPromiseKept)
	if len(kept) != 1 || kept[0].Ctx.DPD != 13 || kept[0].Paid.Minor != 60000 {
		t.Errorf("L-kept: promise_kept %+v, want one at DPD 13 with 600.00 paid", kept)
	}
	if b := w.decided("L-kept", policy.KindPromiseBroken); len(b) != 0 {
		t.Errorf("L-kept: promise broken too")
	}
	broken := w.decided("L-broken", policy.KindPromiseBroken)
	if len(broken) != 1 || broken[0].Ctx.DPD != 15 || !broken[0].Ctx.DecidedAt.Equal(w.dpd(15, 0)) {
		t.Errorf("L-broken: promise_broken %+v, want one at the start of DPD 15", broken)
	}
	for loan, overdue := range map[string]int64{"L-kept": 60000, "L-broken": 120000} {
		esc := w.decided(loan, policy.KindEscalated)
		if len(esc) != 1 || esc[0].Ctx.DPD != 16 || esc[0].Ctx.Overdue.Minor != overdue {
			t.Errorf("%s: escalations %+v, want one at DPD 16 on %d", loan, esc, overdue)
		}
		for _, d := range w.decided(loan, policy.KindContactRequested) {
			if d.Ctx.DPD > 1 {
				t.Errorf("%s: a cadence contact at DPD %d while the promise was open", loan, d.Ctx.DPD)
			}
		}
	}
	for loan, state := range map[string]string{"L-kept": "kept", "L-broken": "broken"} {
		if ps := w.timeline(loan).Promises; len(ps) != 1 || ps[0].State != state {
			t.Errorf("%s: timeline promises %+v, want pr-1 %s", loan, ps, state)
		}
	}
}
