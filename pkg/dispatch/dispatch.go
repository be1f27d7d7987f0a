// Package dispatch turns contacts the release gate released into tasks on
// per-channel subjects (dunning.task.<channel>.<tenant>.<loan>.<contact id>),
// each with its text rendered from the tenant's policy. Vendor integrations
// subscribe to their channel; the notify service delivers to webhooks. A task
// is published once: its subject carries the contact ID and must be empty.
package dispatch

import (
	"context"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/opendunning/dunning/pkg/bus"
	"github.com/opendunning/dunning/pkg/codec"
	"github.com/opendunning/dunning/pkg/loanlog"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/topology"
	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"
)

// Dispatcher publishes contact tasks.
type Dispatcher struct {
	JS bus.JSPublisher
	// Ladder gives the tenant's policy, whose templates render the text.
	Ladder func(tenant, product string) policy.Ladder
}

// Consumer is the dispatcher's durable consumer: every release of contact
// tasks by the release gate (stage.Release), which checked the borrower's
// rules at the moment they leave.
var Consumer = topology.ConsumerSpec{Name: "dispatch", Stream: topology.StreamLoans, Filters: []string{
	topology.LoanFilter(codec.Released.Token, "*")}}

// Register adds the dispatcher to a router.
func (d *Dispatcher) Register(rt *bus.Router) { rt.Handle(Consumer, d.Handle) }

// Handle fans one committed decision out to its tasks.
func (d *Dispatcher) Handle(msg *message.Message) error {
	addr, ev, err := bus.DecodeLoan(msg)
	if err != nil {
		return err
	}
	dec, ok := ev.(policy.Decision)
	if !ok || dec.Kind != policy.KindContactReleased {
		return bus.Permanent(fmt.Errorf("dispatch: unexpected %T on %s", ev, addr.Kind))
	}
	// The policy in force renders the text; the product is not in the
	// decision, so a product-specific template falls back to the tenant's.
	pol := d.Ladder(addr.Tenant, "").Policy
	for _, t := range dec.Tasks {
		text, err := pol.Render(t, addr.Tenant)
		if err != nil {
			text = "" // the vendor renders from the template key; the policy may have changed
		}
		del := &dunningv1.Delivery{TenantId: addr.Tenant, LoanId: addr.Loan, CaseNumber: int32(dec.Ctx.Case),
			Stage: codec.StageToProto(dec.Ctx.Stage), Tier: codec.TierToProto(dec.Ctx.Tier), Task: codec.TaskToProto(t),
			Text: text, PolicyVersion: dec.Ctx.PolicyVersion}
		if vm, ok := pol.RenderVoicemail(t, addr.Tenant); ok {
			del.VoicemailText = vm
		}
		if err := d.publish(msg.Context(), t, addr, del); err != nil {
			return err
		}
	}
	return nil
}

func (d *Dispatcher) publish(ctx context.Context, t policy.ContactTask, addr topology.LoanAddress, del *dunningv1.Delivery) error {
	data, err := proto.Marshal(del)
	if err != nil {
		return bus.Permanent(fmt.Errorf("encoding delivery: %w", err))
	}
	m := nats.NewMsg(topology.TaskSubject(t.Channel.String(), addr.Tenant, addr.Loan, t.ID))
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, loanlog.MsgID("task", addr.Tenant, addr.Loan, t.ID))
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return bus.PublishOnce(ctx, d.JS, m) // a redelivered decision finds its tasks dispatched
}
