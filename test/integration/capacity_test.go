package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"

	"github.com/opendunning/dunning/pkg/access"
	"github.com/opendunning/dunning/pkg/bus"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/stage"
	"github.com/opendunning/dunning/pkg/topology"
	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"
)

// Acceptance 2 of the agency issue (capacity, on the real server): forty
// loans fall due at the same instant, so their handoff steps fire together
// and two handoff replicas decide them concurrently, racing for two agencies'
// places (capacity 10 and 3). Each placement moves its agency's counter in
// one atomic batch with the handed_off record, guarded by the counter's
// last sequence: exactly 13 are placed, never more, and every other handoff
// is deferred with the reason; the counters equal the placements.
//
// With the loans over three partitions (acceptance 1 of issue 13), each
// partition counts its own loans' placements against its share of each
// capacity (4, 3, 3 of agency-a's 10; 1 of agency-b's 3 each): no
// partition's counter passes its share, and with every partition holding
// more loans than its shares, all 13 places are still taken. Its loans are
// published as their lender does, through the lenders' account, where the
// server maps each to its loan's partition.
func TestCapacityUnderConcurrentHandoffs(t *testing.T) {
	t.Parallel()
	for _, k := range []topology.Partitions{1, 3} {
		t.Run(fmt.Sprintf("partitions=%d", k), func(t *testing.T) {
			t.Parallel()
			capacityUnderConcurrentHandoffs(t, k)
		})
	}
}

func capacityUnderConcurrentHandoffs(t *testing.T, k topology.Partitions) {
	h := newPartitionedHarness(t, 200*time.Millisecond, k)
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
	send := h.send
	if k > 1 {
		lender := h.connectAs(access.Lender(tenant))
		ljs, err := jetstream.New(lender.nc)
		if err != nil {
			t.Fatal(err)
		}
		// An event published straight on another partition's stored
		// subject (the lender's permission allows that form, which the
		// mapping produces) is refused and dead-lettered, never recorded.
		forged := topology.LoanRef{P: (k.Of(tenant, "L-forged") + 1) % k.Count(), Tenant: tenant, Loan: "L-forged"}
		data, err := proto.Marshal(dueEvent("L-forged", "1", 100000, time.Now()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ljs.Publish(context.Background(), forged.Intake(), data); err != nil {
			t.Fatalf("publishing on %s: %v", forged.Intake(), err)
		}
		defer func() {
			waitFor(t, 10*time.Second, func() error {
				for _, m := range h.dlq() {
					if m.Header.Get(bus.HeaderDLQSubject) == forged.Intake() {
						if r := m.Header.Get(bus.HeaderDLQReason); !strings.Contains(r, fmt.Sprintf("but the loan is in partition %d of %d", k.Of(tenant, "L-forged"), k.Count())) {
							t.Errorf("dead letter of %s: %q", forged.Intake(), r)
						}
						return nil
					}
				}
				return fmt.Errorf("no dead letter of %s", forged.Intake())
			})
			if es := h.entries("L-forged"); len(es) != 0 {
				t.Errorf("L-forged recorded: %s", summary(es))
			}
		}()
		send = func(ev *dunningv1.LenderEvent) {
			data, err := proto.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ljs.Publish(context.Background(), topology.IntakeSubject(tenant, ev.GetInstallmentDue().GetLoanId()), data); err != nil {
				t.Fatalf("the lender's publish: %v", err)
			}
		}
	}
	due := time.Now().Add(time.Second)
	const n = 40
	loans := make([]string, n)
	perPartition := map[int]int{}
	for i := range n {
		loans[i] = fmt.Sprintf("L-cap-%d", i)
		perPartition[k.Of(tenant, loans[i])]++
		send(dueEvent(loans[i], "1", 100000, due))
	}
	for p := range k.Count() {
		// Enough loans in each partition to fill both its shares.
		if share := (policy.Share{Part: p, Parts: k.Count()}); perPartition[p] <= share.Of(10)+share.Of(3) {
			t.Fatalf("partition %d holds %d loans: the test needs more", p, perPartition[p])
		}
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
	// Each partition's counters equal its placements, at its shares.
	loads := map[string]int{}
	for p := range k.Count() {
		var loan string // any loan of partition p
		for _, l := range loans {
			if k.Of(tenant, l) == p {
				loan = l
				break
			}
		}
		pl, share, err := h.log.Loads(context.Background(), tenant, loan)
		if err != nil {
			t.Fatal(err)
		}
		if share.Part != p || share.Parts != k.Count() || pl["agency-a"].Open != share.Of(10) || pl["agency-b"].Open != share.Of(3) {
			t.Errorf("partition %d: counters %+v (share %+v), want %d and %d open", p, pl, share, share.Of(10), share.Of(3))
		}
		for a, l := range pl {
			loads[a] += l.Open
		}
	}
	if loads["agency-a"] != 10 || loads["agency-b"] != 3 {
		t.Errorf("counters %+v, want 10 and 3 open in all", loads)
	}
	deferred := 0
	for _, loan := range loans {
		if d, ok := h.decision(loan, policy.KindEntryDeferred); ok {
			deferred++
			share := policy.Share{Part: k.Of(tenant, loan), Parts: k.Count()}
			in := ""
			if k > 1 {
				in = fmt.Sprintf(" in partition %d of %d", share.Part, share.Parts)
			}
			a := fmt.Sprintf("agency-a is full (%d of %d placed%s)", share.Of(10), share.Of(10), in)
			b := fmt.Sprintf("agency-b is full (%d of %d placed%s)", share.Of(3), share.Of(3), in)
			if !strings.Contains(d.Ctx.Reason, a) || !strings.Contains(d.Ctx.Reason, b) {
				t.Errorf("%s deferred: %q, want %q and %q", loan, d.Ctx.Reason, a, b)
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
	// Each partition's consumers did their partition's work.
	for _, c := range k.Spread([]topology.ConsumerSpec{handoff.ConsumerSpec()}) {
		cons, err := h.js.Consumer(context.Background(), c.Stream, c.Name)
		if err != nil {
			t.Fatal(err)
		}
		if info := cons.CachedInfo(); info.Delivered.Stream == 0 {
			t.Errorf("consumer %s on %s delivered nothing", c.Name, c.Stream)
		}
	}
	t.Logf("placed %v; %d deferred; counters %+v; handoff conflicts re-decided: %v", placed, deferred, loads, conflicts)
}
