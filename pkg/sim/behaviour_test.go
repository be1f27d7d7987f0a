package sim

import (
	"testing"
	"time"

	"github.com/opendunning/dunning/pkg/policy"
)

// The borrower's-side behaviours, through the oracle alone, on the shipped
// ladder and on the short one the integration tests run: each ends as it
// says (a kept promise or plan cures, a broken one goes back to the ladder
// and on to legal referral, a resolved dispute is paid in the medium
// tier), and every act falls inside the ladder the run covers.
func TestBorrowersSideBehaviours(t *testing.T) {
	short := policy.Default()
	short.LightMax, short.MediumMax, short.HandoffDPD, short.LegalDPD = 4, 7, 8, 12
	want := map[string]struct {
		final string
		kinds []policy.DecisionKind
	}{
		"promise_kept":     {"closed_cured", []policy.DecisionKind{policy.KindPromiseKept}},
		"promise_broken":   {"legal_referral", []policy.DecisionKind{policy.KindPromiseBroken}},
		"plan_kept":        {"closed_cured", []policy.DecisionKind{policy.KindPlanCompleted}},
		"plan_broken":      {"legal_referral", []policy.DecisionKind{policy.KindPlanMissed, policy.KindPlanBroken}},
		"dispute_resolved": {"closed_cured", nil},
	}
	for name, pol := range map[string]policy.Policy{"shipped": policy.Default(), "short": short} {
		for b, w := range want {
			mix, err := ParseMix(b + "=1")
			if err != nil {
				t.Fatal(err)
			}
			cfg := Config{Loans: 40, Seed: 3, Mix: mix, Tenant: "acme", Ladder: policy.Ladder{Policy: pol, Calendar: policy.Calendar{Day: time.Second}}}
			for _, l := range Plan(cfg, time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)) {
				if l.Want.Final != w.final {
					t.Errorf("%s ladder, %s: %s ends %s, want %s (%v)", name, b, l.ID, l.Want.Final, w.final, l.Payments)
				}
				for _, k := range w.kinds {
					if l.Want.Counts[k.String()] != 1 {
						t.Errorf("%s ladder, %s: %s has %d %s, want 1", name, b, l.ID, l.Want.Counts[k.String()], k)
					}
				}
				for _, p := range l.Payments {
					if p.DPD > pol.LegalDPD {
						t.Errorf("%s ladder, %s: %s acts on DPD %d, past the ladder", name, b, l.ID, p.DPD)
					}
				}
			}
		}
	}
}
