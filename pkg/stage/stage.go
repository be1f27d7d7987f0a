// Package stage is the shared engine of the five stage services: read the
// loan's log, fold it, let the stage's policy decide, append the decision
// guarded by the loan's last sequence, and put the loan's one timer right.
// A stage package only supplies its consumer and its decide function.
package stage

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/opendunning/dunning/pkg/bus"
	"github.com/opendunning/dunning/pkg/loanlog"
	"github.com/opendunning/dunning/pkg/policy"
)

// Deps are what every stage handler needs. They hold no per-loan state.
type Deps struct {
	Log *loanlog.Log
	// Ladder chooses a loan's ladder by tenant and product; a reloaded
	// policy governs the next decision.
	Ladder  func(tenant, product string) policy.Ladder
	Now     func() time.Time
	Metrics *bus.Metrics
}

// Decide is a stage's policy: given the case folded from the log (which
// already includes the trigger), the trigger and the time, what to append.
// A nil decision means nothing to do; an error is permanent.
type Decide func(l policy.Ladder, c *policy.Case, trigger policy.Event, now time.Time) (*policy.Decision, error)

// Stage binds a decide function to its durable consumer.
type Stage struct {
	Consumer string
	Decide   Decide
}

// Register adds the stage's handler to a router.
func (s Stage) Register(rt *bus.Router, d Deps) {
	rt.Handle(s.Consumer, s.Handler(d))
}

// Handler decodes a loan-log message and processes it.
func (s Stage) Handler(d Deps) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		addr, ev, err := loanlog.DecodeMessage(msg)
		if err != nil {
			return err
		}
		// The trigger is in the loan's log: a read that does not reach it
		// came from a lagging replica and must not be decided on.
		trigger, _ := strconv.ParseUint(msg.Metadata.Get(bus.MetaStreamSeq), 10, 64)
		return d.Process(msg.Context(), s.Consumer, addr.Tenant, addr.Loan, trigger, func(l policy.Ladder, c *policy.Case, now time.Time) (*policy.Decision, error) {
			return s.Decide(l, c, ev, now)
		})
	}
}

// maxAttempts bounds re-reads after conflicting writes in one delivery; the
// message is redelivered after that.
const maxAttempts = 50

// Process runs one decision for one loan until it commits without conflict.
// Every write is conditional on the sequence the decision was made from, so
// a payment that lands meanwhile makes this re-read and decide again; a
// cured loan then decides nothing. Repeating Process for the same trigger
// (redelivery) finds its decision already in the log and adds nothing.
func (d Deps) Process(ctx context.Context, consumer, tenant, loan string, trigger uint64,
	decide func(policy.Ladder, *policy.Case, time.Time) (*policy.Decision, error)) error {
	for attempt := range maxAttempts {
		err := d.once(ctx, consumer, tenant, loan, trigger, decide)
		if errors.Is(err, errStale) {
			time.Sleep(time.Duration(attempt+1) * 10 * time.Millisecond)
			continue
		}
		if errors.Is(err, loanlog.ErrConflict) {
			if d.Metrics != nil {
				d.Metrics.Conflicts.WithLabelValues(consumer).Inc()
			}
			continue
		}
		return err
	}
	return fmt.Errorf("loan %s/%s: still conflicting after %d attempts", tenant, loan, maxAttempts)
}

// errStale: the read did not reach the message being handled.
var errStale = errors.New("loan log read is behind the trigger")

func (d Deps) once(ctx context.Context, consumer, tenant, loan string, trigger uint64,
	decide func(policy.Ladder, *policy.Case, time.Time) (*policy.Decision, error)) error {
	entries, last, err := d.Log.Read(ctx, tenant, loan)
	if err != nil {
		return err
	}
	if last < trigger {
		return errStale
	}
	c := policy.Fold(entries)
	now := d.Now()
	l := d.Ladder(tenant, c.Product())
	dec, err := decide(l, c, now)
	if err != nil {
		return bus.Permanent(err)
	}
	if dec != nil {
		for i := range dec.Tasks {
			if dec.Tasks[i].Reference == "" {
				dec.Tasks[i].Reference = newReference()
			}
		}
		if last, err = d.append(ctx, consumer, tenant, loan, last, *dec); err != nil {
			return err
		}
		c.Apply(policy.Entry{Seq: last, Event: *dec})
	}
	step, cancel := l.Reconcile(c, now)
	if cancel != nil {
		if _, err = d.append(ctx, consumer, tenant, loan, last, *cancel); err != nil {
			return err
		}
	}
	if step != nil {
		if _, err = d.Log.SetTimer(ctx, tenant, loan, last, *step); err != nil {
			return err
		}
	}
	return nil
}

func (d Deps) append(ctx context.Context, consumer, tenant, loan string, last uint64, dec policy.Decision) (uint64, error) {
	seq, err := d.Log.AppendDecision(ctx, tenant, loan, last, dec)
	if err != nil {
		return 0, err
	}
	if d.Metrics != nil {
		d.Metrics.Decisions.WithLabelValues(consumer, dec.Kind.String()).Inc()
	}
	return seq, nil
}

// referenceAlphabet leaves out look-alikes (0/O, 1/I/L) so a borrower can
// read a code out over the phone.
const referenceAlphabet = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"

// newReference returns a random 10-character verification code (~49 bits).
// It need not be deterministic: a contact exists only once it is committed,
// and the committed event holds its code.
func newReference() string {
	b := make([]byte, 10)
	_, _ = rand.Read(b) // never fails: crypto/rand crashes the program rather than return an error
	for i := range b {
		b[i] = referenceAlphabet[int(b[i])%len(referenceAlphabet)]
	}
	return string(b)
}

// UnexpectedTrigger is the error for an event a stage's consumer should never receive.
func UnexpectedTrigger(consumer string, ev policy.Event) error {
	return fmt.Errorf("%s: unexpected trigger %T", consumer, ev)
}

// OnStep is the decide function of the timed stages: a fired step of the
// expected stage is decided by the ladder.
func OnStep(consumer string, want policy.Stage) Decide {
	return func(l policy.Ladder, c *policy.Case, ev policy.Event, now time.Time) (*policy.Decision, error) {
		s, ok := ev.(policy.StepFired)
		if !ok || s.Step.Stage != want {
			return nil, UnexpectedTrigger(consumer, ev)
		}
		return l.OnStep(c, s.Step, now), nil
	}
}
