// Package contact is stage 2, first contact: as soon as a case is confirmed
// overdue it asks for a gentle first contact (SMS in the light tier) with the
// amount, DPD, ways to repay and repayment options; then it makes the later
// contacts of the stage's cadence (e.g. a call at DPD 3, an SMS at DPD 7)
// until escalation.
package contact

import (
	"time"

	"github.com/opendunning/dunning/pkg/bus"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/stage"
)

// Stage returns the first-contact stage.
func Stage() stage.Stage {
	return stage.Stage{Consumer: bus.ConsumerContact, Decide: decide}
}

func decide(l policy.Ladder, c *policy.Case, ev policy.Event, now time.Time) (*policy.Decision, error) {
	switch e := ev.(type) {
	case policy.Decision:
		if e.Kind == policy.KindOverdueConfirmed {
			return l.FirstContact(c, e.Ctx.Case, now), nil
		}
	case policy.StepFired:
		// A later contact of the first-contact cadence (e.g. a call at DPD 3).
		if e.Step.Stage == policy.StageFirstContact {
			return l.OnStep(c, e.Step, now), nil
		}
	}
	return nil, stage.UnexpectedTrigger(bus.ConsumerContact, ev)
}
