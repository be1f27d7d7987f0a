// Package contact is stage 2, first contact: as soon as a case is confirmed
// overdue it asks for a gentle first contact (SMS in the light tier) with the
// amount, DPD, ways to repay and repayment options, and schedules escalation.
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
	d, ok := ev.(policy.Decision)
	if !ok || d.Kind != policy.KindOverdueConfirmed {
		return nil, stage.UnexpectedTrigger(bus.ConsumerContact, ev)
	}
	return l.FirstContact(c, d.Ctx.Case, now), nil
}
