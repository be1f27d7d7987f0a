// Package escalation is stage 3, escalation: still unpaid at the start of the medium tier (DPD 16 by default), it contacts over more channels (phone, SMS, e-mail, app push) in a serious tone with fees and credit-record consequences, and schedules the handoff.
package escalation

import (
	"github.com/opendunning/dunning/pkg/bus"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/stage"
)

// Stage returns the escalation stage.
func Stage() stage.Stage {
	return stage.Stage{Consumer: bus.ConsumerEscalation, Decide: stage.OnStep(bus.ConsumerEscalation, policy.StageEscalation)}
}
