package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/stage"
)

// Acceptance 2 of the agency issue (capacity, on the real server): forty
// loans fall due at the same instant, so their handoff steps fire together
// and two handoff replicas decide them concurrently, racing for two agencies'
// places (capacity 10 and 3). Each placement moves its agency's counter in
// one atomic batch with the handed_off record, guarded by the counter's
// last sequence: exactly 13 are placed, never more, and every other handoff
// is deferred with the reason; the counters equal the placements.
func TestCapacityUnderConcurrentHandoffs(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 200*time.Millisecond)
	p := &h.ladder.Policy
	p.Agencies = []policy.Agency{{ID: "agency-a", Weight: 3, Capacity: 10}, {ID: "agency-b", Weight: 1, Capacity: 3}}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	h.startPipeline()
	// A second handoff replica, a process of its own: the two race for
	// the same counters, which only the guard keeps (turns are taken
	// within a process).
	handoff, err := stage.Of(policy.StageHandoff)
	if err != nil {
		t.Fatal(err)
	}
	h.start("handoff-2", false, handoff)
	due := time.Now().Add(time.Second)
	const n = 40
	loans := make([]string, n)
	for i := range n {
		loans[i] = fmt.Sprintf("L-cap-%d", i)
		h.send(dueEvent(loans[i], "1", 100000, due))
	}
	// Every loan has reached its handoff: placed, or deferred at least once.
	placed := map[string]int{}
	waitFor(t, 60*time.Second, func() error {
		clear(placed)
		for _, loan := range loans {
			c := counts(h.entries(loan))
			switch {
			case c[policy.KindHandedOff.String()] > 1:
				return fmt.Errorf("%s handed off %d times", loan, c[policy.KindHandedOff.String()])
			case c[policy.KindHandedOff.String()] == 1:
				d, _ := h.decision(loan, policy.KindHandedOff)
				placed[d.AgencyID]++
			case c[policy.KindEntryDeferred.String()] == 0:
				return fmt.Errorf("%s: not yet at its handoff", loan)
			}
		}
		return nil
	})
	if placed["agency-a"] != 10 || placed["agency-b"] != 3 {
		t.Errorf("placed %v, want agency-a 10 and agency-b 3 (their capacities)", placed)
	}
	loads, _, err := h.log.Loads(context.Background(), tenant, "")
	if err != nil {
		t.Fatal(err)
	}
	if loads["agency-a"].Open != 10 || loads["agency-b"].Open != 3 {
		t.Errorf("counters %+v, want 10 and 3 open", loads)
	}
	deferred := 0
	for _, loan := range loans {
		if d, ok := h.decision(loan, policy.KindEntryDeferred); ok {
			deferred++
			if !strings.Contains(d.Ctx.Reason, "agency-a is full (10 of 10 placed)") || !strings.Contains(d.Ctx.Reason, "agency-b is full (3 of 3 placed)") {
				t.Errorf("%s deferred: %q, want both agencies named full", loan, d.Ctx.Reason)
			}
		}
	}
	if deferred != n-13 {
		t.Errorf("%d loans deferred, want %d", deferred, n-13)
	}
	var conflicts float64
	for _, p := range []string{"pipeline", "handoff-2"} {
		conflicts += testutil.ToFloat64(h.metricsOf(p).Stage.Conflicts.WithLabelValues("third-party-handoff"))
	}
	t.Logf("placed %v; %d deferred; counters %+v; handoff conflicts re-decided: %v", placed, deferred, loads, conflicts)
}
