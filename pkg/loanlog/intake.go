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
// loan's subject (one direct get) lies past the ack floor of the intake
// consumer of the loan's partition (everything at or below it is recorded
// or refused). Each partition's floor is read at most every FloorEvery and
// shared by every check: an older floor is lower, which only makes a
// release wait longer, never go out before a payment that was waiting.
type Intake struct {
	Log *Log
	// FloorEvery bounds how often an intake consumer's info is read
	// (default 100 ms).
	FloorEvery time.Duration

	mu     sync.Mutex
	floors map[int]floor
}

// floor is one partition's intake consumer's ack floor, and when it was read.
type floor struct {
	seq  uint64
	read time.Time
}

// Waiting reports whether an event published for tenant's loan on the
// intake is not yet past the intake consumer.
func (in *Intake) Waiting(ctx context.Context, tenant, loan string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, in.Log.Timeout)
	defer cancel()
	ref := in.Log.Loan(tenant, loan)
	out, _, err := in.Log.batch(ctx, topology.StreamIntake, map[string]any{"last_by_subj": ref.Intake()}, 1)
	if err != nil {
		return false, fmt.Errorf("reading the intake of %s/%s: %w", tenant, loan, err)
	}
	if len(out) == 0 {
		return false, nil // the lender never published for it over NATS
	}
	floor, err := in.ackFloor(ctx, ref.P)
	if err != nil {
		return false, err
	}
	return out[0].Seq > floor, nil
}

func (in *Intake) ackFloor(ctx context.Context, p int) (uint64, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	every := in.FloorEvery
	if every <= 0 {
		every = 100 * time.Millisecond
	}
	if f := in.floors[p]; time.Since(f.read) < every {
		return f.seq, nil
	}
	name := topology.PartitionConsumer(topology.Intake.Name, p)
	c, err := in.Log.js.Consumer(ctx, topology.Intake.Stream, name)
	if err != nil {
		return 0, fmt.Errorf("reading the intake consumer %s: %w", name, err)
	}
	if in.floors == nil {
		in.floors = map[int]floor{}
	}
	f := floor{c.CachedInfo().AckFloor.Stream, time.Now()}
	in.floors[p] = f
	return f.seq, nil
}
