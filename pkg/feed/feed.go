// Package feed writes the agencies' feeds: each placement with an agency,
// and its recall, projected to what the agency needs to collect
// (dunningv1.AgencyFeed), on the agency's own subjects in the agencies'
// stream. Each event of a placement is written once, however often its
// decision is redelivered: its subject names the placement and the event,
// and must be empty. The agency reads its feed through the one consumer
// the feed creates for it, with its own credential (package access).
package feed

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/opendunning/dunning/pkg/bus"
	"github.com/opendunning/dunning/pkg/codec"
	"github.com/opendunning/dunning/pkg/loanlog"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/topology"
	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"
)

// JetStream is what the feed needs of JetStream: publishing, and creating
// an agency's consumer before its first placement.
type JetStream interface {
	bus.JSPublisher
	CreateOrUpdateConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error)
}

// Reader reads a loan's log: a placement's projection needs the loan's
// installments, a recall by a case's closing the placement's agency.
type Reader interface {
	Read(ctx context.Context, tenant, loan string) ([]policy.Entry, uint64, error)
}

// Feed publishes placements and recalls.
type Feed struct {
	JS       JetStream
	Log      Reader
	Topology topology.Topology
	// Ladder gives the loan's policy, whose contact rules the placement
	// tells the agency (nil: none told).
	Ladder func(tenant, product string) policy.Ladder
	// ensured holds the agencies whose consumer this process has created.
	ensured sync.Map
}

// Consumer is the feed's durable consumer: placements, recalls, and the
// closing of cases (which recalls an open placement).
var Consumer = topology.ConsumerSpec{Name: "agency-feed", Stream: topology.StreamLoans, Filters: []string{
	topology.LoanFilter(codec.HandedOff.Token, "*"), topology.LoanFilter(codec.Recalled.Token, "*"), topology.LoanFilter(codec.Closed.Token, "*")}}

// Register adds the feed to a router.
func (f *Feed) Register(rt *bus.Router) { rt.Handle(Consumer, f.Handle) }

// Handle projects one committed decision onto its agency's feed.
func (f *Feed) Handle(msg *message.Message) error {
	addr, ev, err := bus.DecodeLoan(msg)
	if err != nil {
		return err
	}
	d, ok := ev.(policy.Decision)
	if !ok {
		return bus.Permanent(fmt.Errorf("feed: unexpected %T on %s", ev, addr.Kind))
	}
	switch d.Kind {
	case policy.KindHandedOff, policy.KindPlacementRecalled:
	case policy.KindCaseClosed:
		if d.PlacementID == "" {
			return nil // nothing was placed
		}
	default:
		return bus.Permanent(fmt.Errorf("feed: unexpected %s on %s", d.Kind, addr.Kind))
	}
	ctx := msg.Context()
	entries, _, err := f.Log.Read(ctx, addr.Tenant, addr.Loan)
	if err != nil {
		return err
	}
	out, agency, event, err := project(addr, d, entries, f.Ladder)
	if err != nil {
		return bus.Permanent(err)
	}
	return f.Publish(ctx, agency, d.PlacementID, event, out)
}

// project builds the feed message of a decision from the loan's log.
func project(addr topology.LoanAddress, d policy.Decision, entries []policy.Entry, ladder func(tenant, product string) policy.Ladder) (*dunningv1.AgencyFeed, string, string, error) {
	c := policy.Fold(entries)
	c.Key = policy.LoanKey(addr.Tenant, addr.Loan)
	if d.Kind == policy.KindHandedOff {
		p := &dunningv1.AgencyPlacement{PlacementId: d.PlacementID, AgencyId: d.AgencyID, TenantId: addr.Tenant, LoanId: addr.Loan,
			CaseNumber: int32(d.Ctx.Case), Overdue: codec.MoneyToProto(d.Ctx.Overdue), Dpd: int32(d.Ctx.DPD), Tier: codec.TierToProto(d.Ctx.Tier),
			PlacedAt: timestamppb.New(d.Ctx.AsOfOrDecided()), Reason: d.Ctx.Reason}
		// The borrower's references, from the oldest installment of the
		// case: the one its DPD counts from.
		if len(c.Installments) > 0 {
			in := c.Installments[0]
			p.ContactRef, p.Locale, p.Region, p.TimeZone = in.ContactRef, in.Locale, in.Region, in.Zone
		}
		// The rules the agency collects under, as of the placement.
		for ch, out := range c.OptedOut {
			if out {
				p.OptedOut = append(p.OptedOut, codec.ChannelToProto(ch))
			}
		}
		slices.Sort(p.OptedOut)
		if ladder != nil {
			l := ladder(addr.Tenant, c.Product())
			p.WindowFrom, p.WindowTo = l.ContactWindow(c)
			p.RecentContacts = map[string]int32{}
			for ch, n := range l.RecentContacts(c, d.Ctx.AsOfOrDecided()) {
				p.RecentContacts[ch.String()] = int32(n)
			}
		}
		return &dunningv1.AgencyFeed{Event: &dunningv1.AgencyFeed_Placed{Placed: p}}, d.AgencyID, topology.FeedPlaced, nil
	}
	agency := d.AgencyID
	if agency == "" {
		// A closing names the placement it recalls, not its agency: the
		// handoff that made it does.
		for _, e := range entries {
			if h, ok := e.Event.(policy.Decision); ok && h.Kind == policy.KindHandedOff && h.PlacementID == d.PlacementID {
				agency = h.AgencyID
			}
		}
	}
	if agency == "" {
		return nil, "", "", fmt.Errorf("recall of placement %s: no handoff in the loan's log names it", d.PlacementID)
	}
	reason := d.Ctx.Reason
	if d.Kind == policy.KindCaseClosed {
		reason = "case closed: " + d.CloseReason.String()
	}
	r := &dunningv1.AgencyRecall{PlacementId: d.PlacementID, AgencyId: agency, TenantId: addr.Tenant, LoanId: addr.Loan,
		CaseNumber: int32(d.Ctx.Case), Reason: reason, RecalledAt: timestamppb.New(d.Ctx.AsOfOrDecided())}
	return &dunningv1.AgencyFeed{Event: &dunningv1.AgencyFeed_Recalled{Recalled: r}}, agency, topology.FeedRecalled, nil
}

// Publish writes one event of a placement once: a repeat (a redelivered
// decision, or a closing after the hold that already recalled it) finds
// its subject taken and is done.
func (f *Feed) Publish(ctx context.Context, agency, placement, event string, m *dunningv1.AgencyFeed) error {
	if !policy.ValidID(agency) {
		return bus.Permanent(fmt.Errorf("agency %q is not a valid identifier", agency))
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := f.ensure(ctx, agency); err != nil {
		return err
	}
	data, err := proto.Marshal(m)
	if err != nil {
		return bus.Permanent(fmt.Errorf("encoding the feed message: %w", err))
	}
	msg := nats.NewMsg(topology.AgencyFeedSubject(agency, placement, event))
	msg.Data = data
	msg.Header.Set(jetstream.MsgIDHeader, loanlog.MsgID("feed", agency, placement, event))
	return bus.PublishOnce(ctx, f.JS, msg)
}

// ensure creates the agency's consumer, once per process.
func (f *Feed) ensure(ctx context.Context, agency string) error {
	if _, ok := f.ensured.Load(agency); ok {
		return nil
	}
	if _, err := f.JS.CreateOrUpdateConsumer(ctx, topology.StreamAgencies, f.Topology.AgencyConsumerConfig(agency)); err != nil {
		return fmt.Errorf("creating agency %s's consumer: %w", agency, err)
	}
	f.ensured.Store(agency, true)
	return nil
}
