package policy

import (
	"fmt"
	"slices"
	"time"
)

// Payment is what the lender reports on day DPD of a simulation (half-way
// through the day): a repayment of Amount minor units or, when Event is
// set, that event (a promise, a plan, a hold placed or released).
type Payment struct {
	DPD    int
	Amount int64
	Event  Event
}

// String names the act and its day, for a simulation's mismatch report.
func (p Payment) String() string {
	switch e := p.Event.(type) {
	case nil:
		return fmt.Sprintf("pays %d on DPD %d", p.Amount, p.DPD)
	case PromiseToPay:
		return fmt.Sprintf("promises %d on DPD %d", e.Amount.Minor, p.DPD)
	case RepaymentPlan:
		return fmt.Sprintf("agrees a %d-installment plan on DPD %d", len(e.Installments), p.DPD)
	case HoldPlaced:
		return fmt.Sprintf("%s hold on DPD %d", e.Kind, p.DPD)
	case HoldReleased:
		return fmt.Sprintf("hold released on DPD %d", p.DPD)
	default:
		return fmt.Sprintf("%T on DPD %d", e, p.DPD)
	}
}

// Simulate plays one installment's case through the ladder exactly as the
// stages would — the same NextStep, Fired, FirstContact, OnLenderEvent, Gate
// and Reconcile — with the given payments, until day until. It returns every
// decision in order. It is the dry run of a policy, and the oracle a
// simulation's results are checked against.
func (l Ladder) Simulate(in InstallmentDue, payments []Payment, until int) []Decision {
	return l.SimulateLoan("", in, payments, until)
}

// SimulateLoan is Simulate for the loan with key (LoanKey), which places it
// in the send spread.
func (l Ladder) SimulateLoan(key string, in InstallmentDue, payments []Payment, until int) []Decision {
	c := Fold([]Entry{{Event: in}})
	c.Key = key
	loc := zone(in.Zone)
	end := l.Calendar.DPDStart(in.DueAt, loc, until+1)
	pays := slices.Clone(payments)
	slices.SortStableFunc(pays, func(a, b Payment) int { return a.DPD - b.DPD })
	var out []Decision
	var record func(d *Decision, now time.Time)
	record = func(d *Decision, now time.Time) {
		if d == nil {
			return
		}
		c.Apply(Entry{Event: *d})
		out = append(out, *d)
		// The release gate consumes contact decisions and closures.
		if d.Kind == KindContactRequested || d.Kind == KindEscalated || d.Kind == KindCaseClosed {
			for _, g := range l.Gate(c, "", now) {
				record(&g, now)
			}
		}
	}
	reconcile := func(now time.Time) {
		step, cancel := l.Reconcile(c, now)
		if cancel != nil {
			c.Apply(Entry{Event: *cancel})
		}
		if step != nil {
			c.Apply(Entry{Event: TimerSet{Step: *step}})
		}
	}
	reconcile(in.DueAt)
	clock := in.DueAt
	for i := 0; ; i++ {
		var payAt time.Time
		if len(pays) > 0 {
			payAt = l.Calendar.DPDStart(in.DueAt, loc, pays[0].DPD).Add(l.Calendar.Day / 2)
		}
		var step *Step
		if c.Pending != nil && !c.Pending.Fired {
			s := c.Pending.Step
			step = &s
		}
		switch {
		case len(pays) > 0 && (step == nil || payAt.Before(step.At)) && payAt.Before(end):
			p := pays[0]
			pays = pays[1:]
			ev := p.Event
			if ev == nil {
				ev = Repayment{PaymentID: fmt.Sprintf("sim-%d", i), Amount: Money{Currency: in.Amount.Currency, Minor: p.Amount}, PaidAt: payAt}
			}
			c.Apply(Entry{Event: ev})
			ds, _ := l.OnLenderFact(c, ev, payAt)
			for _, d := range ds {
				record(&d, payAt)
			}
			reconcile(payAt)
			clock = payAt
		case step != nil && step.At.Before(end):
			// A step already past when it was set (a release finding the
			// rungs it passed) fires at once, as the server fires it: time
			// does not go back to it.
			at := maxTime(step.At, clock)
			c.Apply(Entry{Event: StepFired{Step: *step}})
			for _, d := range l.Fired(c, *step, at) {
				record(&d, at)
				if d.Kind == KindOverdueConfirmed {
					record(l.FirstContact(c, d.Ctx.Case, at), at)
				}
			}
			reconcile(at)
			clock = at
		default:
			return out
		}
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
