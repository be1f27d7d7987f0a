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
	"time"

	"github.com/opendunning/dunning/pkg/policy"
)

// Behaviour decides what a borrower does: when and how much they pay, and
// what they tell the lender (a promise, a plan, a dispute). A new behaviour
// (agency collections) is one more implementation.
type Behaviour interface {
	Name() string
	// Payments plans what the lender reports for a borrower with an
	// installment of amount: repayments, and promises, plans and holds
	// (policy.Payment.Event). DPD -1 means the day before the due date; at
	// is the instant half-way through a DPD, when the simulation reports
	// the day's act (for the times events carry). Days avoid the day
	// before a ladder step, so that a loaded machine's latency cannot move
	// an act across a step and make the oracle wrong.
	Payments(r *rand.Rand, amount int64, p policy.Policy, at func(dpd int) time.Time) []policy.Payment
}

// between returns a day in [lo, hi] that is not the day before a step
// (lo when hi < lo: a short test ladder).
func between(r *rand.Rand, lo, hi int, p policy.Policy) int {
	hi = max(hi, lo)
	steps := map[int]bool{p.ConfirmDPD(): true, p.EscalationDPD(): true, p.HandoffDPD: true, p.LegalDPD: true, p.ReferralDPD(): true}
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
func (onTime) Payments(_ *rand.Rand, amount int64, _ policy.Policy, _ func(int) time.Time) []policy.Payment {
	return []policy.Payment{{DPD: -1, Amount: amount}}
}

type curesLight struct{}

func (curesLight) Name() string { return "cures_light" }
func (curesLight) Payments(r *rand.Rand, amount int64, p policy.Policy, _ func(int) time.Time) []policy.Payment {
	return []policy.Payment{{DPD: between(r, p.ConfirmDPD()+1, p.LightMax, p), Amount: amount}}
}

type curesMedium struct{}

func (curesMedium) Name() string { return "cures_medium" }
func (curesMedium) Payments(r *rand.Rand, amount int64, p policy.Policy, _ func(int) time.Time) []policy.Payment {
	return []policy.Payment{{DPD: between(r, p.EscalationDPD()+1, p.MediumMax, p), Amount: amount}}
}

type paysInParts struct{}

func (paysInParts) Name() string { return "pays_in_parts" }
func (paysInParts) Payments(r *rand.Rand, amount int64, p policy.Policy, _ func(int) time.Time) []policy.Payment {
	first := amount * int64(30+r.IntN(40)) / 100
	return []policy.Payment{
		{DPD: between(r, p.ConfirmDPD()+1, p.LightMax, p), Amount: first},
		{DPD: between(r, p.EscalationDPD()+1, p.HandoffDPD-1, p), Amount: amount - first},
	}
}

type neverPays struct{}

func (neverPays) Name() string { return "never_pays" }
func (neverPays) Payments(*rand.Rand, int64, policy.Policy, func(int) time.Time) []policy.Payment {
	return nil
}

func cny(minor int64) policy.Money { return policy.Money{Currency: "CNY", Minor: minor} }

// gap is the days between a borrower's acts (a week on the shipped ladder,
// two days on a test's short one), so that they all fall well inside it.
func gap(p policy.Policy) int { return max(2, (p.LegalDPD-p.ConfirmDPD())/12) }

// promises: in the light tier the borrower promises to pay it all half a
// gap later (three days); kept, they pay the day before.
type promises struct{ kept bool }

func (b promises) Name() string {
	if b.kept {
		return "promise_kept"
	}
	return "promise_broken"
}

func (b promises) Payments(r *rand.Rand, amount int64, p policy.Policy, at func(int) time.Time) []policy.Payment {
	lead := max(2, gap(p)/2)
	d := between(r, p.ConfirmDPD()+1, p.LightMax-lead-1, p)
	out := []policy.Payment{{DPD: d, Event: policy.PromiseToPay{ID: "pr-1", Amount: cny(amount), For: at(d + lead), At: at(d)}}}
	if b.kept {
		out = append(out, policy.Payment{DPD: d + lead - 1, Amount: amount})
	}
	return out
}

// plans: in the light tier the borrower agrees a plan of three
// installments a gap apart (weekly), the first a gap later; kept, each is
// paid the day before it; broken, only the first is.
type plans struct{ kept bool }

func (b plans) Name() string {
	if b.kept {
		return "plan_kept"
	}
	return "plan_broken"
}

func (b plans) Payments(r *rand.Rand, amount int64, p policy.Policy, at func(int) time.Time) []policy.Payment {
	g := gap(p)
	d := between(r, p.ConfirmDPD()+1, p.LightMax-4, p)
	part := amount / 3
	plan := policy.RepaymentPlan{ID: "plan-1", At: at(d)}
	var pays []policy.Payment
	for i := range 3 {
		amt := part
		if i == 2 {
			amt = amount - 2*part
		}
		plan.Installments = append(plan.Installments, policy.PlanInstallment{DueAt: at(d + g*(i+1)), Amount: cny(amt)})
		if b.kept || i == 0 {
			pays = append(pays, policy.Payment{DPD: d + g*(i+1) - 1, Amount: amt})
		}
	}
	return append([]policy.Payment{{DPD: d, Event: plan}}, pays...)
}

// disputeResolved: in the light tier the borrower disputes the debt; the
// lender resolves it days later (five on the shipped ladder), and the
// borrower pays in the medium tier.
type disputeResolved struct{}

func (disputeResolved) Name() string { return "dispute_resolved" }
func (disputeResolved) Payments(r *rand.Rand, amount int64, p policy.Policy, at func(int) time.Time) []policy.Payment {
	held := max(2, gap(p)-2)
	d := between(r, p.ConfirmDPD()+1, p.LightMax-held-1, p)
	return []policy.Payment{
		{DPD: d, Event: policy.HoldPlaced{ID: "dispute-1", Kind: policy.HoldDispute, At: at(d)}},
		{DPD: d + held, Event: policy.HoldReleased{ID: "dispute-1", At: at(d + held)}},
		{DPD: between(r, p.EscalationDPD()+1, p.MediumMax, p), Amount: amount},
	}
}

// Behaviours are the shipped behaviours by name.
var Behaviours = map[string]Behaviour{
	"pays_on_time": onTime{}, "cures_light": curesLight{}, "cures_medium": curesMedium{},
	"pays_in_parts": paysInParts{}, "never_pays": neverPays{},
	"promise_kept": promises{kept: true}, "promise_broken": promises{}, "plan_kept": plans{kept: true}, "plan_broken": plans{},
	"dispute_resolved": disputeResolved{},
}

// Mix is a weighted choice of behaviours.
type Mix []struct {
	Behaviour Behaviour
	Weight    int
}

// DefaultMix: 35 % pay on time, 15 % cure in the light tier after first
// contact, 10 % cure in medium, 10 % pay in parts, 10 % never pay, and 4 %
// each keep a promise, break one, keep a plan, break one, and dispute the
// debt (resolved, then paid).
func DefaultMix() Mix {
	m, _ := ParseMix("pays_on_time=35,cures_light=15,cures_medium=10,pays_in_parts=10,never_pays=10," +
		"promise_kept=4,promise_broken=4,plan_kept=4,plan_broken=4,dispute_resolved=4")
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
