package bus_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/opendunning/dunning/pkg/bus"
	"github.com/opendunning/dunning/pkg/embedded"
	"github.com/opendunning/dunning/pkg/natstest"
	"github.com/opendunning/dunning/pkg/topology"
)

// Lender facts first (issue 13, acceptance 3): while the intake consumer has
// a backlog, the process's other consumers handle at most Floor messages at
// once; once the backlog is gone they run at their full concurrency again.
// The intake's handler is held to make its backlog; the other consumer
// (notify, on the tasks stream) counts how many of its handlers run at once.
func TestPipelineWorkYieldsToLenderFacts(t *testing.T) {
	srv := natstest.Server(t, embedded.Config{DontListen: true})
	_, js := natstest.Connect(t, srv, "admin")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	topo := topology.DefaultTopology()
	if err := topo.Provision(ctx, js, topology.WithAbandoned([]topology.ConsumerSpec{topology.Intake, topology.Notify})); err != nil {
		t.Fatal(err)
	}
	const concurrency, floor = 8, 2
	reg := prometheus.NewRegistry()
	y := bus.NewYield(floor, reg)
	rt, err := bus.NewRouter(bus.RouterConfig{Dial: srv.Connect, MaxDeliver: topo.MaxDeliver, Concurrency: concurrency, Yield: y,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Name: "yield"})
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var intakeHandled sync.WaitGroup
	rt.Handle(topology.Intake, func(msg *message.Message) error {
		defer intakeHandled.Done()
		select {
		case <-release:
		case <-msg.Context().Done():
		}
		return nil
	})
	var mu sync.Mutex
	running, most, handled := 0, 0, 0
	want := 0 // handlers to wait for before returning (phase 2)
	rt.Handle(topology.Notify, func(msg *message.Message) error {
		mu.Lock()
		running++
		most = max(most, running)
		w := want
		mu.Unlock()
		// Phase 1 returns after a moment; phase 2 waits until w handlers
		// run together, which only full concurrency allows.
		deadline := time.After(20 * time.Second)
		for w > 0 {
			mu.Lock()
			n := most // once reached, every one of them goes on
			mu.Unlock()
			if n >= w {
				break
			}
			select {
			case <-deadline:
				w = 0
			case <-time.After(5 * time.Millisecond):
			}
		}
		if w == 0 {
			time.Sleep(20 * time.Millisecond)
		}
		mu.Lock()
		running--
		handled++
		mu.Unlock()
		return nil
	})
	rctx, rstop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- rt.Run(rctx) }()
	defer func() {
		rstop()
		<-done
	}()
	<-rt.Running()
	go y.Watch(rctx, js, topology.Intake.Stream, []string{topology.Intake.Name}, concurrency, 20*time.Millisecond)

	// A backlog of lender events: more than the intake's handlers take.
	const events = 3 * concurrency
	intakeHandled.Add(events)
	for i := range events {
		if _, err := js.Publish(ctx, topology.IntakeSubject("acme", fmt.Sprintf("L-%d", i)), []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	natstest.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if !y.Busy() {
			return fmt.Errorf("lender facts not seen waiting")
		}
		return nil
	})
	if g := testutil.ToFloat64(y.Waiting()); g != 1 {
		t.Errorf("dunning_lender_facts_waiting = %v while the intake has a backlog, want 1", g)
	}
	// run publishes n tasks and returns, once they are handled, how many
	// ran at once.
	run := func(n int, prefix string) int {
		for i := range n {
			if _, err := js.Publish(ctx, topology.TaskSubject("sms", "acme", prefix, fmt.Sprint(i)), []byte(`{}`)); err != nil {
				t.Fatal(err)
			}
		}
		natstest.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
			mu.Lock()
			defer mu.Unlock()
			if handled < n {
				return fmt.Errorf("%d of %d tasks handled", handled, n)
			}
			return nil
		})
		mu.Lock()
		defer mu.Unlock()
		return most
	}
	busyMost := run(24, "busy")
	if busyMost > floor {
		t.Errorf("while lender facts waited, %d of the pipeline's own messages were handled at once, want at most %d", busyMost, floor)
	}
	if !y.Busy() {
		t.Fatal("the intake's backlog ended before the tasks were handled: the check above proved nothing")
	}

	// The backlog drains; the pipeline's work runs at full concurrency.
	close(release)
	intakeHandled.Wait()
	natstest.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if y.Busy() {
			return fmt.Errorf("still yielding after the intake drained")
		}
		return nil
	})
	if g := testutil.ToFloat64(y.Waiting()); g != 0 {
		t.Errorf("dunning_lender_facts_waiting = %v with no backlog, want 0", g)
	}
	mu.Lock()
	most, handled, want = 0, 0, concurrency
	mu.Unlock()
	freeMost := run(concurrency, "free")
	if freeMost != concurrency {
		t.Errorf("with no backlog %d messages were handled at once, want %d (the consumer's concurrency)", freeMost, concurrency)
	}
	t.Logf("at once: %d while lender facts waited (floor %d), %d after (concurrency %d)", busyMost, floor, freeMost, concurrency)
}
