// Package overdue is stage 1, overdue confirmation. It consumes the lender's
// facts (installments due, repayments, settlements) and the fired
// confirmation step: it confirms a loan overdue when its due time passes
// unpaid, and closes the case as cured or settled, at whatever stage, when
// nothing overdue is left. The timer reconciliation after every fact
// schedules, moves or cancels the pending step.
package overdue

import (
	"fmt"
	"time"

	"github.com/opendunning/dunning/pkg/bus"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/stage"
)

// Stage returns the overdue-confirmation stage.
func Stage() stage.Stage {
	return stage.Stage{Consumer: bus.ConsumerOverdue, Decide: decide}
}

func decide(l policy.Ladder, c *policy.Case, ev policy.Event, now time.Time) (*policy.Decision, error) {
	switch e := ev.(type) {
	case policy.StepFired:
		if e.Step.Stage != policy.StageOverdueConfirmation {
			return nil, stage.UnexpectedTrigger(bus.ConsumerOverdue, ev)
		}
		return l.OnStep(c, e.Step, now), nil
	case policy.Repayment:
		if cur := c.Currency(); cur != "" && e.Amount.Currency != cur {
			return nil, fmt.Errorf("repayment %s is in %s but the loan is in %s: not applied", e.PaymentID, e.Amount.Currency, cur)
		}
		return l.OnLenderEvent(c, now), nil
	case policy.InstallmentDue:
		if cur := c.Currency(); e.Amount.Currency != cur {
			return nil, fmt.Errorf("installment %s is in %s but the loan is in %s: not applied", e.ID, e.Amount.Currency, cur)
		}
		return l.OnLenderEvent(c, now), nil
	case policy.Settled:
		return l.OnLenderEvent(c, now), nil
	}
	return nil, stage.UnexpectedTrigger(bus.ConsumerOverdue, ev)
}
