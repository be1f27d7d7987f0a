package bus_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/opendunning/dunning/pkg/access"
	"github.com/opendunning/dunning/pkg/bus"
	"github.com/opendunning/dunning/pkg/embedded"
	"github.com/opendunning/dunning/pkg/natstest"
	"github.com/opendunning/dunning/pkg/topology"
)

// Issue 13, acceptance 4 (the hang): a handler that hangs on every
// delivery is kept from redelivery only up to the router's MaxKeepAlive;
// then its ack wait runs out, the message is delivered again, hangs again,
// and when its deliveries have run out the server's max-deliveries
// advisory, kept in the advisories stream, is dead-lettered as abandoned
// by the router's consumer of that stream, with the original body and the
// reason. The handler never returns an error: nothing else would notice.
func TestHungHandlerDeadLettered(t *testing.T) {
	srv := natstest.Server(t, embedded.Config{DontListen: true})
	_, js := natstest.Connect(t, srv, "admin")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	topo := topology.DefaultTopology()
	topo.AckWait, topo.MaxDeliver = time.Second, 2
	if err := topo.Provision(ctx, js, topology.WithAbandoned([]topology.ConsumerSpec{topology.Intake})); err != nil {
		t.Fatal(err)
	}
	metrics := bus.NewMetrics(prometheus.NewRegistry())
	rt, err := bus.NewRouter(bus.RouterConfig{Dial: srv.Connect, MaxDeliver: 2, Metrics: metrics, MaxKeepAlive: 1500 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Name: "hang"})
	if err != nil {
		t.Fatal(err)
	}
	deliveries := make(chan struct{}, 10)
	rt.Handle(topology.Intake, func(msg *message.Message) error {
		deliveries <- struct{}{}
		<-msg.Context().Done() // hung until the router stops
		return nil
	})
	rctx, rstop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- rt.Run(rctx) }()
	defer func() {
		rstop()
		<-done
	}()

	m := nats.NewMsg(topology.IntakeSubject("acme", "L-hang"))
	m.Data = []byte(`{"installment_due": {}}`)
	m.Header.Set("X-Lender-Trace", "hang-1")
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	var dl *jetstream.RawStreamMsg
	natstest.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		st, err := js.Stream(ctx, topology.StreamDLQ)
		if err != nil {
			return err
		}
		dl, err = st.GetLastMsgForSubject(ctx, topology.DLQSubject(topology.ConsumerIntake))
		return err
	})
	if got := len(deliveries); got != 2 {
		t.Errorf("the hung handler was given the message %d times, want 2 (MaxDeliver)", got)
	}
	if string(dl.Data) != string(m.Data) || dl.Header.Get(bus.HeaderDLQClass) != bus.ClassAbandoned ||
		dl.Header.Get("Dunning-Orig-X-Lender-Trace") != "hang-1" ||
		!strings.Contains(dl.Header.Get(bus.HeaderDLQReason), "no handler finished it in 2 deliveries") {
		t.Errorf("dead letter %q, headers %v; want the original, class abandoned, the reason", dl.Data, dl.Header)
	}
	// Counted once the dead letter's publish is acknowledged, which can be
	// a moment after the dead letter is readable.
	natstest.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if n := testutil.ToFloat64(metrics.DeadLetters.WithLabelValues(topology.ConsumerIntake, bus.ClassAbandoned)); n != 1 {
			return fmt.Errorf("dunning_dead_letters_total{class=abandoned} = %v, want 1", n)
		}
		return nil
	})
}

// Issue 13, acceptance 4 (the crash): a handler that kills its own
// process (SIGKILL) on every delivery. The test runs the router in a child
// process (this test binary again, as TestCrashChild) over TCP with the
// admin's credential, restarting it each time it dies, as a supervisor
// would. Each child takes the message and dies holding it; once its
// deliveries have run out, the next child's pull brings the server's
// max-deliveries advisory into the advisories stream, and that child's
// consumer of it dead-letters the message as abandoned.
func TestCrashingHandlerDeadLettered(t *testing.T) {
	srv := natstest.Server(t, embedded.Config{})
	_, js := natstest.Connect(t, srv, "admin")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	topo := topology.DefaultTopology()
	topo.AckWait, topo.MaxDeliver = time.Second, 3
	if err := topo.Provision(ctx, js, topology.WithAbandoned([]topology.ConsumerSpec{topology.Intake})); err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(topology.IntakeSubject("acme", "L-crash"))
	m.Data = []byte(`{"installment_due": {}}`)
	m.Header.Set("X-Lender-Trace", "crash-1")
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, topology.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	killed := 0
	var dl *jetstream.RawStreamMsg
	for dl == nil {
		if ctx.Err() != nil {
			t.Fatalf("no dead letter after %d children were killed", killed)
		}
		child := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrashChild$")
		child.Env = append(os.Environ(), "DUNNING_CRASH_CHILD_URL="+srv.ClientURL(), "DUNNING_CRASH_CHILD_KEYS="+srv.Keyring.Dir)
		child.Stdout, child.Stderr = io.Discard, io.Discard
		if err := child.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- child.Wait() }()
		for dl == nil {
			select {
			case err := <-exited:
				if ws, ok := child.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
					t.Fatalf("child ended without being killed: %v", err)
				}
				killed++
			case <-time.After(100 * time.Millisecond):
				if raw, err := st.GetLastMsgForSubject(ctx, topology.DLQSubject(topology.ConsumerIntake)); err == nil {
					dl = raw
					_ = child.Process.Kill()
					<-exited
				}
				continue
			}
			break
		}
	}
	if killed != 3 {
		t.Errorf("%d children killed by their handler, want 3 (MaxDeliver)", killed)
	}
	if string(dl.Data) != string(m.Data) || dl.Header.Get(bus.HeaderDLQClass) != bus.ClassAbandoned ||
		dl.Header.Get("Dunning-Orig-X-Lender-Trace") != "crash-1" ||
		!strings.Contains(dl.Header.Get(bus.HeaderDLQReason), "no handler finished it in 3 deliveries") {
		t.Errorf("dead letter %q, headers %v; want the original, class abandoned, the reason", dl.Data, dl.Header)
	}
}

// TestCrashChild is TestCrashingHandlerDeadLettered's child process: a
// router whose intake handler SIGKILLs its own process.
func TestCrashChild(t *testing.T) {
	url := os.Getenv("DUNNING_CRASH_CHILD_URL")
	if url == "" {
		t.Skip("the child process of TestCrashingHandlerDeadLettered")
	}
	auth, err := access.Keyring{Dir: os.Getenv("DUNNING_CRASH_CHILD_KEYS")}.Option(access.Admin)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := bus.NewRouter(bus.RouterConfig{MaxDeliver: 3, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Name: "crash",
		Dial: func(name string) (*nats.Conn, error) { return nats.Connect(url, auth, nats.Name(name)) }})
	if err != nil {
		t.Fatal(err)
	}
	rt.Handle(topology.Intake, func(*message.Message) error {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	})
	_ = rt.Run(context.Background())
}
