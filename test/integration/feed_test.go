package integration

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/opendunning/dunning/pkg/access"
	"github.com/opendunning/dunning/pkg/pipeline"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/stage"
	"github.com/opendunning/dunning/pkg/topology"
	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"
	"github.com/opendunning/dunning/test/attack"
)

// feedEvent is one message an agency read from its feed.
type feedEvent struct {
	subject string
	msg     *dunningv1.AgencyFeed
}

// readFeed reads, as agency a with its own credential, everything on its
// feed until want messages came (or 60 s passed), acking each.
func (h *harness) readFeed(a string, want int) []feedEvent {
	h.t.Helper()
	c := h.connectAs(access.Agency(a))
	js, err := jetstream.NewWithAPIPrefix(c.nc, topology.AgencyAPIPrefix)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var cons jetstream.Consumer
	waitFor(h.t, 30*time.Second, func() error {
		cons, err = js.Consumer(ctx, topology.StreamAgencies, topology.AgencyConsumer(a))
		return err
	})
	var out []feedEvent
	for len(out) < want && ctx.Err() == nil {
		batch, err := cons.Fetch(want-len(out), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			h.t.Fatalf("agency %s fetching its feed: %v", a, err)
		}
		for m := range batch.Messages() {
			var f dunningv1.AgencyFeed
			if err := proto.Unmarshal(m.Data(), &f); err != nil {
				h.t.Fatalf("agency %s: %s: %v", a, m.Subject(), err)
			}
			out = append(out, feedEvent{m.Subject(), &f})
			if err := m.Ack(); err != nil {
				h.t.Fatalf("agency %s acking: %v", a, err)
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			h.t.Fatalf("agency %s: %v", a, err)
		}
	}
	return out
}

// Issue 12, acceptances 1 and 3 (the feed's side): three agencies, each
// placed the accounts of its region, read their own feeds with their own
// credentials (over TCP, as a partner would): the placements with what an
// agency needs and nothing more; a cure recalls its placement and a hold
// recalls another, each exactly once on the feed, even when the closing
// that follows a hold names no placement. (What each agency cannot reach
// is the attack matrix's, TestNATSAttackMatrix.)
func TestAgencyFeeds(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 60*time.Millisecond)
	regions := map[string]string{"CN-31": attack.Agencies[0], "CN-11": attack.Agencies[1], "CN-44": attack.Agencies[2]}
	l := h.ladder
	for region, a := range regions {
		l.Policy.Agencies = append(l.Policy.Agencies, policy.Agency{ID: a, Regions: []string{region}, Weight: 1})
	}
	h.ladderFor = policy.Fixed(l)
	h.startParts("pipeline", access.Service("dunningd"), pipeline.Parts{Stages: stage.Table, Intake: true, Feed: true})

	loans := map[string]string{"L-sh": "CN-31", "L-sh-cured": "CN-31", "L-bj": "CN-11", "L-bj-held": "CN-11", "L-gd": "CN-44"}
	for loan, region := range loans {
		ev := dueEvent(loan, "1", 100000, time.Now())
		ev.GetInstallmentDue().Region = region
		h.send(ev)
	}
	for loan := range loans {
		h.waitKind(loan, policy.KindHandedOff, 1, 31*h.day+30*time.Second)
	}
	h.send(payEvent("L-sh-cured", "p-1", 100000))
	h.send(holdEvent("L-bj-held", "d-1", dunningv1.HoldKind_HOLD_KIND_DISPUTE))
	h.waitKind("L-sh-cured", policy.KindCaseClosed, 1, 30*time.Second)
	h.waitKind("L-bj-held", policy.KindPlacementRecalled, 1, 30*time.Second)
	// The disputed loan's case then closes too (settled): its placement
	// was recalled already, so no second recall.
	h.send(&dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_LoanSettled{LoanSettled: &dunningv1.LoanSettled{
		TenantId: tenant, LoanId: "L-bj-held", SettledAt: timestamppb.Now()}}})
	h.waitKind("L-bj-held", policy.KindCaseClosed, 1, 30*time.Second)

	placements := map[string]policy.Decision{}
	for loan := range loans {
		d, _ := h.decision(loan, policy.KindHandedOff)
		placements[loan] = d
	}
	want := map[string][]string{
		attack.Agencies[0]: {"L-sh placed", "L-sh-cured placed", "L-sh-cured recalled"},
		attack.Agencies[1]: {"L-bj placed", "L-bj-held placed", "L-bj-held recalled"},
		attack.Agencies[2]: {"L-gd placed"},
	}
	for a, events := range want {
		got := h.readFeed(a, len(events))
		seen := map[string]int{}
		for _, e := range got {
			switch x := e.msg.Event.(type) {
			case *dunningv1.AgencyFeed_Placed:
				p := x.Placed
				d := placements[p.LoanId]
				seen[p.LoanId+" placed"]++
				if p.AgencyId != a || p.PlacementId != d.PlacementID || e.subject != topology.AgencyFeedSubject(a, d.PlacementID, topology.FeedPlaced) ||
					p.ContactRef != "contact-"+p.LoanId || p.Region != loans[p.LoanId] || p.TenantId != tenant || p.Overdue.GetMinorUnits() != 100000 || p.Dpd < 31 ||
					p.TimeZone != "Asia/Shanghai" || p.WindowFrom == "" || p.WindowTo == "" || p.RecentContacts["sms"] != 0 {
					t.Errorf("agency %s: placement %+v on %s; want %s's, placement %s, on its own subject", a, p, e.subject, p.LoanId, d.PlacementID)
				}
			case *dunningv1.AgencyFeed_Recalled:
				r := x.Recalled
				seen[r.LoanId+" recalled"]++
				if r.AgencyId != a || r.PlacementId != placements[r.LoanId].PlacementID || r.Reason == "" {
					t.Errorf("agency %s: recall %+v", a, r)
				}
			}
		}
		for _, ev := range events {
			if seen[ev] != 1 {
				t.Errorf("agency %s: %q %d times on its feed, want once (feed: %v)", a, ev, seen[ev], seen)
			}
		}
		if len(got) != len(events) {
			t.Errorf("agency %s read %d messages, want %d: %v", a, len(got), len(events), seen)
		}
	}
	// Nothing more: the stream holds exactly these seven.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := h.js.Stream(ctx, topology.StreamAgencies)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := s.Info(ctx); err != nil || info.State.Msgs != 7 {
		t.Errorf("the feeds hold %v messages (%v), want 7: 5 placements, 2 recalls", info.State.Msgs, err)
	}
}
