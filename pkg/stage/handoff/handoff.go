// Package handoff is stage 4, third-party handoff: still unpaid in the severe tier (DPD 31 by default), the account is placed with the configured agency under a deterministic placement ID, and legal referral is scheduled.
package handoff

import (
	"github.com/opendunning/dunning/pkg/bus"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/stage"
)

// Stage returns the handoff stage.
func Stage() stage.Stage {
	return stage.Stage{Consumer: bus.ConsumerHandoff, Decide: stage.OnStep(bus.ConsumerHandoff, policy.StageHandoff)}
}
