// Package sim is the portfolio simulator: it creates N loans with a mix of
// borrower behaviours, plays them through the real pipeline (lender events
// published on the NATS intake, accelerated days), and checks every loan's
// log against an oracle computed from the same seed with the stages' own
// pure policy (policy.Ladder.Simulate).
package sim

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/opendunning/dunning/pkg/policy"
)

// Behaviour decides when and how much a borrower pays. A new behaviour
// (promises kept or broken, disputes, agency collections) is one more
// implementation.
type Behaviour interface {
	Name() string
	// Payments plans the borrower's repayments of an installment of amount.
	// DPD -1 means the day before the due date. Payment days avoid the day
	// before a ladder step, so that a loaded machine's latency cannot move a
	// payment across a step and make the oracle wrong.
	Payments(r *rand.Rand, amount int64, p policy.Policy) []policy.Payment
}

// between returns a day in [lo, hi] that is not the day before a step.
func between(r *rand.Rand, lo, hi int, p policy.Policy) int {
	steps := map[int]bool{p.ConfirmDPD(): true, p.EscalationDPD(): true, p.HandoffDPD: true, p.LegalDPD: true}
	for _, cs := range p.Cadence {
		steps[cs.DPD] = true
	}
	for range 100 {
		d := lo + r.IntN(hi-lo+1)
		if !steps[d+1] && !steps[d] {
			return d
		}
	}
	return lo
}

type onTime struct{}

func (onTime) Name() string { return "pays_on_time" }
func (onTime) Payments(_ *rand.Rand, amount int64, _ policy.Policy) []policy.Payment {
	return []policy.Payment{{DPD: -1, Amount: amount}}
}

type curesLight struct{}

func (curesLight) Name() string { return "cures_light" }
func (curesLight) Payments(r *rand.Rand, amount int64, p policy.Policy) []policy.Payment {
	return []policy.Payment{{DPD: between(r, p.ConfirmDPD()+1, p.LightMax, p), Amount: amount}}
}

type curesMedium struct{}

func (curesMedium) Name() string { return "cures_medium" }
func (curesMedium) Payments(r *rand.Rand, amount int64, p policy.Policy) []policy.Payment {
	return []policy.Payment{{DPD: between(r, p.EscalationDPD()+1, p.MediumMax, p), Amount: amount}}
}

type paysInParts struct{}

func (paysInParts) Name() string { return "pays_in_parts" }
func (paysInParts) Payments(r *rand.Rand, amount int64, p policy.Policy) []policy.Payment {
	first := amount * int64(30+r.IntN(40)) / 100
	return []policy.Payment{
		{DPD: between(r, p.ConfirmDPD()+1, p.LightMax, p), Amount: first},
		{DPD: between(r, p.EscalationDPD()+1, p.HandoffDPD-1, p), Amount: amount - first},
	}
}

type neverPays struct{}

func (neverPays) Name() string                                               { return "never_pays" }
func (neverPays) Payments(*rand.Rand, int64, policy.Policy) []policy.Payment { return nil }

// Behaviours are the shipped behaviours by name.
var Behaviours = map[string]Behaviour{
	"pays_on_time": onTime{}, "cures_light": curesLight{}, "cures_medium": curesMedium{},
	"pays_in_parts": paysInParts{}, "never_pays": neverPays{},
}

// Mix is a weighted choice of behaviours.
type Mix []struct {
	Behaviour Behaviour
	Weight    int
}

// DefaultMix: 40 % pay on time, 20 % cure in the light tier after first
// contact, 15 % cure in medium, 10 % pay in parts, 15 % never pay.
func DefaultMix() Mix {
	m, _ := ParseMix("pays_on_time=40,cures_light=20,cures_medium=15,pays_in_parts=10,never_pays=15")
	return m
}

// ParseMix reads "name=weight,...".
func ParseMix(s string) (Mix, error) {
	var m Mix
	for _, part := range strings.Split(s, ",") {
		name, w, ok := strings.Cut(strings.TrimSpace(part), "=")
		b, known := Behaviours[name]
		var weight int
		if _, err := fmt.Sscanf(w, "%d", &weight); !ok || !known || err != nil || weight < 0 {
			return nil, fmt.Errorf("mix %q: want name=weight with a known behaviour and a weight >= 0", part)
		}
		m = append(m, struct {
			Behaviour Behaviour
			Weight    int
		}{b, weight})
	}
	return m, nil
}

func (m Mix) pick(r *rand.Rand) Behaviour {
	total := 0
	for _, e := range m {
		total += e.Weight
	}
	n := r.IntN(max(total, 1))
	for _, e := range m {
		if n < e.Weight {
			return e.Behaviour
		}
		n -= e.Weight
	}
	return m[len(m)-1].Behaviour
}
