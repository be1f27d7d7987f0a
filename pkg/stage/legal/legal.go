// Package legal is stage 5, legal referral: after long non-payment (DPD 90 by default) the account is referred for legal action with an evidence packet: installments, repayments, every contact and the log sequences behind them.
package legal

import (
	"github.com/opendunning/dunning/pkg/bus"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/stage"
)

// Stage returns the legal stage.
func Stage() stage.Stage {
	return stage.Stage{Consumer: bus.ConsumerLegal, Decide: stage.OnStep(bus.ConsumerLegal, policy.StageLegal)}
}
