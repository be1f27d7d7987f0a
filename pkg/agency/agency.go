// Package agency is the reference agency client: what a collection agency
// partner copies to read its feed. It connects with the agency's own NATS
// credential, reads its one consumer on the feed (created by the pipeline
// before the agency's first placement) and hands each placement and recall
// to the agency's code, acking it only once that code returned without
// error, so nothing is lost if the agency's process dies mid-way; and it
// posts the agency's outcomes (Report).
package agency

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/opendunning/dunning/pkg/access"
	"github.com/opendunning/dunning/pkg/topology"
	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"
)

// Handler is the agency's code for one feed message: a placement to work,
// or a recall to stop working. An error leaves the message unacked: the
// feed delivers it again.
type Handler func(ctx context.Context, subject string, m *dunningv1.AgencyFeed) error

// Client reads one agency's feed.
type Client struct {
	// Agency is the agency's identifier, as the lender's registry names it.
	Agency string
	// Conn is connected with the agency's credential (Connect).
	Conn *nats.Conn
	// Wait is how often to look again for the agency's consumer before its
	// first placement (default 2 s).
	Wait time.Duration
	// Logf, if set, is told why the feed is not read yet.
	Logf func(format string, args ...any)
}

// Connect connects to url as the agency, with its seed file (what `dunctl
// credentials create agency-<id>` made) and any further options (TLS).
func Connect(url, agency, seedFile string, opts ...nats.Option) (*nats.Conn, error) {
	id := access.Agency(agency)
	if err := id.Validate(); err != nil {
		return nil, err
	}
	auth, err := access.ClientOption(id, seedFile)
	if err != nil {
		return nil, fmt.Errorf("the agency's credential: %w", err)
	}
	return nats.Connect(url, append(opts, auth, nats.Name("agency-"+agency), nats.MaxReconnects(-1))...)
}

// Report posts an outcome on a placement the feed handed the agency: it
// names the placement, the tenant and loan from the placement, and the
// agency's own outcome_id (a repeat is recorded once). The pipeline's
// stream acknowledges it; the pipeline then checks it against the loan
// (a recalled or unknown placement is refused, and dead-lettered with the
// reason).
func (c *Client) Report(ctx context.Context, m *dunningv1.AgencyOutcome) error {
	data, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	js, err := jetstream.New(c.Conn)
	if err != nil {
		return err
	}
	_, err = js.Publish(ctx, topology.OutcomeSubject(c.Agency, m.GetTenantId(), m.GetLoanId()), data)
	return err
}

// Run hands every feed message to h until ctx ends.
func (c *Client) Run(ctx context.Context, h Handler) error {
	js, err := jetstream.NewWithAPIPrefix(c.Conn, topology.AgencyAPIPrefix)
	if err != nil {
		return err
	}
	wait := c.Wait
	if wait <= 0 {
		wait = 2 * time.Second
	}
	var cons jetstream.Consumer
	for {
		// Each look has a deadline of its own: a request whose answer is
		// lost (its server died meanwhile) is asked again, not waited on
		// for as long as the caller's context lasts.
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		cons, err = js.Consumer(lctx, topology.StreamAgencies, topology.AgencyConsumer(c.Agency))
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrConsumerNotFound) && !errors.Is(err, context.DeadlineExceeded) &&
			!errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("agency %s's feed: %w", c.Agency, err)
		}
		if c.Logf != nil {
			c.Logf("agency %s: its feed is not there yet (%v); looking again in %s", c.Agency, err, wait)
		}
		// Not created yet (the pipeline creates it with the first
		// placement), or the cluster did not answer.
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var f dunningv1.AgencyFeed
		if err := proto.Unmarshal(m.Data(), &f); err != nil {
			_ = m.Term() // not a feed message: never deliver it again
			return
		}
		if err := h(ctx, m.Subject(), &f); err != nil {
			_ = m.Nak()
			return
		}
		_ = m.Ack()
	})
	if err != nil {
		return err
	}
	<-ctx.Done()
	cc.Stop()
	return nil
}
