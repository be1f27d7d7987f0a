package bus

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Yield puts lender facts first: while the intake consumer has a backlog
// (lender events waiting to reach their loans' logs), a process's own
// pipeline work — the stages, dispatch, the feeds — runs at most Floor
// messages at once, so that the server and the process's cores go to the
// lender's payments before the contacts they may make moot. Overload then
// makes contacts late, never one after a payment that was waiting.
//
// It spans processes: each process watches the intake consumer's backlog on
// the server (Watch), wherever intake runs. Measured without it (make sim,
// 100,000 loans at 2,500 a second, 500 ms days, 2 cores): payments reached
// their loans' logs 22 s late (p50), queued behind the stages' work.
type Yield struct {
	// Floor is how many messages of yielding consumers a process handles at
	// once while lender facts wait (default DefaultYieldFloor): the pipeline slows but does
	// not stop, so an intake stuck on something else does not stall it.
	Floor int
	// Logger, when set, hears (at most once a minute) that the watched
	// consumer cannot be read, and the pipeline does not yield meanwhile.
	Logger *slog.Logger

	mu       sync.Mutex
	inflight int
	busy     bool
	changed  chan struct{} // closed and replaced when inflight or busy changes

	waiting prometheus.Gauge
}

// NewYield returns a Yield whose state is exported on reg (nil: not
// exported) as dunning_lender_facts_waiting.
func NewYield(floor int, reg prometheus.Registerer) *Yield {
	y := &Yield{Floor: floor, changed: make(chan struct{}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "dunning", Name: "lender_facts_waiting",
			Help: "1 while the intake consumer has a backlog and this process holds its own pipeline work to a few messages at once (lender facts first)."})}
	if reg != nil {
		if err := reg.Register(y.waiting); err != nil {
			if are, ok := err.(prometheus.AlreadyRegisteredError); ok {
				y.waiting = are.ExistingCollector.(prometheus.Gauge)
			}
		}
	}
	return y
}

// DefaultYieldFloor is Yield's Floor unless configured.
const DefaultYieldFloor = 8

func (y *Yield) floor() int {
	if y.Floor <= 0 {
		return DefaultYieldFloor
	}
	return y.Floor
}

// enter waits until the process may handle one more yielding message.
func (y *Yield) enter(ctx context.Context) error {
	for {
		y.mu.Lock()
		if !y.busy || y.inflight < y.floor() {
			y.inflight++
			y.mu.Unlock()
			return nil
		}
		ch := y.changed
		y.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// room waits, while lender facts wait, until a subscription holding
// held() messages holds fewer than the floor.
func (y *Yield) room(ctx context.Context, held func() int) {
	for {
		y.mu.Lock()
		if !y.busy || held() < y.floor() {
			y.mu.Unlock()
			return
		}
		ch := y.changed
		y.mu.Unlock()
		// A message ending signals before its subscription lets go of it:
		// look again shortly even without a signal.
		select {
		case <-ch:
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return
		}
	}
}

// over reports whether, while lender facts wait, a subscription holding
// held messages holds more than the floor.
func (y *Yield) over(held int) bool {
	y.mu.Lock()
	defer y.mu.Unlock()
	return y.busy && held > y.floor()
}

// leave ends a message entered.
func (y *Yield) leave() {
	y.mu.Lock()
	y.inflight--
	y.signal()
	y.mu.Unlock()
}

// signal wakes the waiters; y.mu is held.
func (y *Yield) signal() {
	close(y.changed)
	y.changed = make(chan struct{})
}

// Set records whether lender facts are waiting.
func (y *Yield) Set(busy bool) {
	y.mu.Lock()
	defer y.mu.Unlock()
	if y.busy == busy {
		return
	}
	y.busy = busy
	if busy {
		y.waiting.Set(1)
	} else {
		y.waiting.Set(0)
	}
	y.signal()
}

// Waiting is the gauge of dunning_lender_facts_waiting.
func (y *Yield) Waiting() prometheus.Gauge { return y.waiting }

// Busy reports whether lender facts are waiting.
func (y *Yield) Busy() bool {
	y.mu.Lock()
	defer y.mu.Unlock()
	return y.busy
}

// Backlogged is the watched consumer's backlog as Watch reads it: messages
// not yet delivered to it, or as many delivered and unacknowledged as
// its handlers take at once.
func Backlogged(info *jetstream.ConsumerInfo, concurrency int) bool {
	return info.NumPending > 0 || info.NumAckPending >= concurrency
}

// Watch reads the consumers' info (the intake's, one per partition) every
// interval until ctx ends and sets whether lender facts wait: while one
// has a backlog (Backlogged, with the intake's handlers busy at half of
// concurrency). A failed read leaves the pipeline unthrottled by that
// consumer: yielding to a consumer that cannot be seen could stall it for
// nothing.
func (y *Yield) Watch(ctx context.Context, js jetstream.JetStream, stream string, consumers []string, concurrency int, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	defer y.Set(false)
	var told time.Time
	for {
		// Backlogged if any partition's intake is.
		backlog := false
		for _, consumer := range consumers {
			rctx, cancel := context.WithTimeout(ctx, every*4)
			c, err := js.Consumer(rctx, stream, consumer)
			cancel()
			if err != nil {
				if y.Logger != nil && ctx.Err() == nil && time.Since(told) >= time.Minute {
					told = time.Now()
					y.Logger.Warn("cannot read the intake's backlog; the pipeline's own work does not give way to lender facts meanwhile",
						"consumer", consumer, "err", err)
				}
				continue
			}
			if Backlogged(c.CachedInfo(), max(concurrency/2, 1)) {
				backlog = true
				break
			}
		}
		y.Set(backlog)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
