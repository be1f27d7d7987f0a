// Package overdue is stage 1, overdue confirmation. It consumes the lender's
// facts (installments due, repayments, settlements) and the fired
// confirmation step: it confirms a loan overdue when its due time passes
// unpaid, and closes the case as cured or settled, at whatever stage, when
// nothing overdue is left. The timer reconciliation after every fact
// schedules, moves or cancels the pending step.
package overdue

import (
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
	case policy.InstallmentDue, policy.Repayment, policy.Settled:
		return l.OnLenderEvent(c, now), nil
	}
	return nil, stage.UnexpectedTrigger(bus.ConsumerOverdue, ev)
}
