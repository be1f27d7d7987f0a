package integration

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/opendunning/dunning/pkg/policy"
	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"
)

// Acceptance 7: a full payment racing the firing of a step, over and over:
// never a contact after the cure. Half the loans race overdue confirmation
// (whose first contact follows at once), half race escalation. And
// (acceptance 7 of the borrower's side) a hold racing it the same way:
// a third of the loans get a cease-all hold instead of the payment, and
// none has a contact asked for or released after its hold.
func TestPaymentRacingStep(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 100*time.Millisecond)
	day := h.day
	h.startPipeline()
	// Rounds go on until each race has been seen both ways (at least three
	// rounds, at most ten): how late a step fires depends on the machine's
	// load, and on a busy one (make test with -p 4) every hold of one run
	// landed before its step. A racer kind seen on one side only in a round
	// is sent 250 ms earlier or later in the next.
	const minRounds, maxRounds, perRound = 3, 10, 120
	var before, after int // loans where the step won, and where the payment (or hold) won
	var holdsBefore, holdsAfter int
	var payShift, holdShift time.Duration
	rounds := 0
	for round := 0; round < maxRounds && (round < minRounds || before == 0 || after == 0 || holdsBefore == 0 || holdsAfter == 0); round++ {
		rounds++
		b0, a0, hb0, ha0 := before, after, holdsBefore, holdsAfter
		fire := time.Now().Add(2 * time.Second) // the instant the raced steps fire
		var wg sync.WaitGroup
		loans := make([]string, perRound)
		raced := map[string]string{} // loan -> the decision of the step it races
		holders := map[string]bool{} // loans raced by a hold, not a payment
		for i := range perRound {
			loan := fmt.Sprintf("L-race-%d-%d", round, i)
			loans[i] = loan
			racesEscalation := i%2 == 0
			raced[loan] = policy.KindOverdueConfirmed.String()
			if racesEscalation {
				raced[loan] = policy.KindEscalated.String()
			}
			due := fire.Add(-day) // confirmation fires at `fire`
			if racesEscalation {
				due = fire.Add(-16 * day)
			}
			h.send(dueEvent(loan, "1", 10000, due))
			// nats-server fires a due schedule up to 250 ms late (its timer
			// runs at most every 250 ms), so the payments spread from 100 ms
			// before to 300 ms after the nominal instant to meet the step on
			// both sides whatever this round's lateness.
			jitter := time.Duration(rand.Int64N(int64(400*time.Millisecond))) - 100*time.Millisecond
			held := i%3 == 1
			holders[loan] = held
			if held {
				jitter += holdShift
			} else {
				jitter += payShift
			}
			wg.Go(func() {
				time.Sleep(time.Until(fire.Add(jitter)))
				// Built when sent: a hold's receivedAt is the instant it lands.
				racer := payEvent(loan, "p1", 10000)
				if held {
					racer = holdEvent(loan, "h1", dunningv1.HoldKind_HOLD_KIND_CEASE_ALL)
				}
				h.send(racer)
			})
		}
		wg.Wait()
		for _, loan := range loans {
			var es []logEntry
			if holders[loan] {
				waitFor(t, 10*time.Second, func() error {
					es = h.entries(loan)
					if counts(es)["hold"] != 1 {
						return fmt.Errorf("%s: hold not recorded", loan)
					}
					if h.timerPending(loan) {
						return fmt.Errorf("%s: step still pending while held: %s", loan, summary(es))
					}
					return nil
				})
				heldAt, won := -1, false
				for i, e := range es {
					switch e.kind {
					case "hold":
						heldAt = i
					case policy.KindContactRequested.String(), policy.KindEscalated.String(), policy.KindContactReleased.String():
						if heldAt >= 0 {
							t.Errorf("%s: %s after the hold: %s", loan, e.kind, summary(es))
						}
					}
					won = won || (e.kind == raced[loan] && heldAt < 0)
				}
				if won {
					holdsBefore++
				} else {
					holdsAfter++
				}
				continue
			}
			waitFor(t, 10*time.Second, func() error {
				es = h.entries(loan)
				c := counts(es)
				if c["repaid"] != 1 {
					return fmt.Errorf("%s: payment not recorded", loan)
				}
				if c[policy.KindOverdueConfirmed.String()] > 0 && c[policy.KindCaseClosed.String()] == 0 {
					return fmt.Errorf("%s: confirmed but not closed: %s", loan, summary(es))
				}
				if h.timerPending(loan) {
					return fmt.Errorf("%s: step still pending: %s", loan, summary(es))
				}
				return nil
			})
			paidAt := -1
			won := false
			for i, e := range es {
				switch e.kind {
				case "repaid":
					paidAt = i
				case policy.KindContactRequested.String(), policy.KindEscalated.String():
					if paidAt >= 0 {
						t.Errorf("%s: %s after the payment that cured it: %s", loan, e.kind, summary(es))
					}
				}
				if e.kind == raced[loan] && paidAt < 0 {
					won = true
				}
			}
			c := counts(es)
			for _, k := range []policy.DecisionKind{policy.KindOverdueConfirmed, policy.KindContactRequested, policy.KindEscalated, policy.KindCaseClosed} {
				if c[k.String()] > 1 {
					t.Errorf("%s: %s %d times: %s", loan, k, c[k.String()], summary(es))
				}
			}
			if won {
				before++
			} else {
				after++
			}
		}
		shift := func(d *time.Duration, stepFirst, racerFirst int) {
			switch {
			case stepFirst == 0 && racerFirst > 0:
				*d += 250 * time.Millisecond
			case racerFirst == 0 && stepFirst > 0:
				*d -= 250 * time.Millisecond
			}
		}
		shift(&payShift, before-b0, after-a0)
		shift(&holdShift, holdsBefore-hb0, holdsAfter-ha0)
		t.Logf("round %d: with a payment, step first in %d, payment first in %d; with a hold, %d and %d",
			round+1, before-b0, after-a0, holdsBefore-hb0, holdsAfter-ha0)
	}
	conflicts := testutil.ToFloat64(h.metricsOf("pipeline").Stage.Conflicts.WithLabelValues("overdue-confirmation")) +
		testutil.ToFloat64(h.metricsOf("pipeline").Stage.Conflicts.WithLabelValues("first-contact")) +
		testutil.ToFloat64(h.metricsOf("pipeline").Stage.Conflicts.WithLabelValues("escalation"))
	t.Logf("%d races: with a payment, step first in %d, payment first in %d; with a hold, step first in %d, hold first in %d; %v refused writes re-decided",
		rounds*perRound, before, after, holdsBefore, holdsAfter, conflicts)
	if before == 0 || after == 0 || holdsBefore == 0 || holdsAfter == 0 {
		t.Errorf("the race was one-sided (payment: step first %d, payment first %d; hold: %d, %d); widen the jitter", before, after, holdsBefore, holdsAfter)
	}
}
