package loanlog

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/opendunning/dunning/pkg/stage"
	"github.com/opendunning/dunning/pkg/topology"
)

var _ stage.Facts = (*Intake)(nil)

// Intake tells the release gate whether a lender event for a loan is still
// waiting in the NATS intake: the intake stream's last message on the
// loan's subject (one direct get) lies past the intake consumer's ack floor
// (everything at or below it is recorded or refused). The floor is read at
// most every FloorEvery and shared by every check: an older floor is lower,
// which only makes a release wait longer, never go out before a payment
// that was waiting.
type Intake struct {
	Log *Log
	// FloorEvery bounds how often the intake consumer's info is read
	// (default 100 ms).
	FloorEvery time.Duration

	mu    sync.Mutex
	floor uint64
	read  time.Time
}

// Waiting reports whether an event published for tenant's loan on the
// intake is not yet past the intake consumer.
func (in *Intake) Waiting(ctx context.Context, tenant, loan string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, in.Log.Timeout)
	defer cancel()
	out, _, err := in.Log.batch(ctx, topology.StreamIntake, map[string]any{"last_by_subj": topology.IntakeSubject(tenant, loan)}, 1)
	if err != nil {
		return false, fmt.Errorf("reading the intake of %s/%s: %w", tenant, loan, err)
	}
	if len(out) == 0 {
		return false, nil // the lender never published for it over NATS
	}
	floor, err := in.ackFloor(ctx)
	if err != nil {
		return false, err
	}
	return out[0].Seq > floor, nil
}

func (in *Intake) ackFloor(ctx context.Context) (uint64, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	every := in.FloorEvery
	if every <= 0 {
		every = 100 * time.Millisecond
	}
	if time.Since(in.read) < every {
		return in.floor, nil
	}
	c, err := in.Log.js.Consumer(ctx, topology.Intake.Stream, topology.Intake.Name)
	if err != nil {
		return 0, fmt.Errorf("reading the intake consumer: %w", err)
	}
	in.floor, in.read = c.CachedInfo().AckFloor.Stream, time.Now()
	return in.floor, nil
}
