// Package integration runs the pipeline's acceptance tests against a real
// embedded JetStream server (and, for crash tests, real child processes).
package integration

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/opendunning/dunning/pkg/access"
	"github.com/opendunning/dunning/pkg/app"
	"github.com/opendunning/dunning/pkg/codec"
	"github.com/opendunning/dunning/pkg/embedded"
	"github.com/opendunning/dunning/pkg/ingest"
	"github.com/opendunning/dunning/pkg/loanlog"
	"github.com/opendunning/dunning/pkg/natstest"
	"github.com/opendunning/dunning/pkg/pipeline"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/sim"
	"github.com/opendunning/dunning/pkg/stage"
	"github.com/opendunning/dunning/pkg/topology"
	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"
	"github.com/opendunning/dunning/test/attack"
)

const tenant = "acme"

// testAckWait keeps redelivery after a crash quick.
const testAckWait = 2 * time.Second

type harness struct {
	t      *testing.T
	srv    *embedded.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	log    *loanlog.Log
	ladder policy.Ladder
	topo   topology.Topology
	// day is the test's business day: its base day scaled to the machine's
	// load (see loadFactor).
	day time.Duration

	// yieldFloor is pipeline.Config's (0: the default; negative: off).
	yieldFloor int

	// ladderFor, when set before start, chooses each loan's ladder (per-tenant policies).
	ladderFor func(tenant, product string) policy.Ladder

	mu      sync.Mutex
	routers map[string]func()
	metrics map[string]pipeline.Metrics
}

func (h *harness) metricsOf(name string) pipeline.Metrics {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.metrics[name]
}

// newHarness starts a server for one test whose business day, on an idle
// machine, is base; the harness's day is base stretched by loadFactor.
func newHarness(t *testing.T, base time.Duration) *harness {
	t.Helper()
	return newPartitionedHarness(t, base, 1)
}

// newPartitionedHarness is newHarness with the loans spread over k
// partitions (the server's configuration and the streams provisioned so).
func newPartitionedHarness(t *testing.T, base time.Duration, k topology.Partitions) *harness {
	t.Helper()
	day := time.Duration(float64(base) * loadFactor(t))
	srv := natstest.Server(t, embedded.Config{Keyring: keyring(t, k)})
	nc, js := natstest.Connect(t, srv, "test")
	topo := topology.DefaultTopology()
	topo.AckWait, topo.MaxDeliver, topo.Partitions = testAckWait, 5, k
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := topo.Provision(ctx, js, pipeline.Consumers(k)); err != nil {
		t.Fatal(err)
	}
	log := loanlog.New(nc, js)
	log.Parts = k
	h := &harness{t: t, srv: srv, nc: nc, js: js, log: log, topo: topo, day: day,
		ladder:  policy.Ladder{Policy: policy.Default(), Calendar: policy.Calendar{Day: day}},
		routers: map[string]func(){}, metrics: map[string]pipeline.Metrics{}}
	t.Cleanup(h.stopAll)
	return h
}

// idleLatency is the calibration's result (lender event to first contact,
// p99) on an idle machine of ours (2 cores, race detector): most of it is
// the server's schedule tick of up to 250 ms.
const idleLatency = 400 * time.Millisecond

var load struct {
	once   sync.Once
	factor float64
}

// loadFactor is how much slower than an idle machine this one turns lender
// events into decisions now, measured once per test binary: the tests'
// accelerated days are stretched by it, so that a payment half a day into
// a DPD still lands before the next day's step when another build or test
// suite shares the machine. Never below 1.
func loadFactor(t *testing.T) float64 {
	load.once.Do(func() {
		srv := natstest.Server(t, embedded.Config{DontListen: true})
		defer srv.Shutdown()
		nc, js := natstest.Connect(t, srv, "calibration")
		defer nc.Close()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
		topo := topology.DefaultTopology()
		p, err := pipeline.New(ctx, pipeline.Config{Name: "calibration", Topology: topo, Logger: logger,
			Ladder: policy.Fixed(policy.Ladder{Policy: policy.Default(), Calendar: policy.Calendar{Day: sim.CalibrationDay}}),
			Parts:  pipeline.Parts{Stages: stage.Table, Intake: true}, Admin: srv.Connect}, srv.Connect)
		if err != nil {
			t.Fatalf("calibrating: %v", err)
		}
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		<-p.Running()
		lat, err := sim.Calibrate(ctx, js, loanlog.New(nc, js), "calib", 50, 50)
		cancel()
		<-done
		if err != nil {
			t.Fatalf("calibrating: %v", err)
		}
		load.factor = max(1, float64(lat)/float64(idleLatency))
		t.Logf("calibration: lender event to first contact p99 %s; accelerated days stretched %.2f times", lat.Round(time.Millisecond), load.factor)
	})
	if load.factor == 0 {
		t.Fatal("calibration failed in an earlier test")
	}
	return load.factor
}

// start runs a process named name with the given stages (and the NATS
// intake when intake is true), built by pipeline.New as the services are,
// until stop(name).
func (h *harness) start(name string, intake bool, stages ...stage.Stage) {
	h.t.Helper()
	h.startParts(name, identityOf(intake, stages), pipeline.Parts{Stages: stages, Intake: intake})
}

// startParts runs a process named name with the given parts, connected as
// id, until stop(name).
func (h *harness) startParts(name string, id access.Identity, parts pipeline.Parts) {
	h.t.Helper()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	ladder := h.ladderFor
	if ladder == nil {
		ladder = policy.Fixed(h.ladder)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p, err := pipeline.New(ctx, pipeline.Config{Name: name, Topology: h.topo, Ladder: ladder, Logger: logger,
		Parts: parts, YieldFloor: h.yieldFloor}, h.srv.Dialer(id))
	if err != nil {
		cancel()
		h.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	select {
	case <-p.Running():
	case err := <-done:
		cancel()
		h.t.Fatalf("process %s: %v", name, err)
	case <-time.After(10 * time.Second):
		cancel()
		h.t.Fatalf("process %s did not start", name)
	}
	h.mu.Lock()
	h.metrics[name] = p.Metrics
	h.routers[name] = func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("process %s: %v", name, err)
		}
	}
	h.mu.Unlock()
}

// keyring holds a credential for every deployable and the test tenants'
// lenders, the loans spread over k partitions: the harness's processes
// connect as the service they stand for.
func keyring(t *testing.T, k topology.Partitions) string {
	ids := []access.Identity{access.Lender(tenant), access.Lender("globex")}
	for _, a := range attack.Agencies {
		ids = append(ids, access.Agency(a))
	}
	for _, name := range []string{"dunningd", "gateway", "notify"} {
		ids = append(ids, access.Service(name))
	}
	for _, s := range stage.Table {
		ids = append(ids, access.Service(s.Service))
	}
	dir := natstest.Keyring(t, app.Grants, ids...)
	if k > 1 {
		kr := access.Keyring{Dir: dir}
		if err := kr.SetPartitions(k); err != nil {
			t.Fatal(err)
		}
		if _, err := kr.ServerConfig(app.Grants); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// identityOf is the service a harness process stands for: one stage's
// service, the gateway (intake alone), or dunningd (anything else).
func identityOf(intake bool, stages []stage.Stage) access.Identity {
	switch {
	case intake && len(stages) == 0:
		return access.Service("gateway")
	case !intake && len(stages) == 1:
		return access.Service(stages[0].Service)
	}
	return access.Service("dunningd")
}

// stages returns the stages of the table with the given service names.
func stages(t *testing.T, names ...string) []stage.Stage {
	t.Helper()
	var out []stage.Stage
	for _, n := range names {
		s, ok := stage.ByService(n)
		if !ok {
			t.Fatalf("no stage %q", n)
		}
		out = append(out, s)
	}
	return out
}

func (h *harness) startPipeline() { h.start("pipeline", true, stage.Table...) }

func (h *harness) stop(name string) {
	h.mu.Lock()
	f := h.routers[name]
	delete(h.routers, name)
	h.mu.Unlock()
	if f != nil {
		f()
	}
}

func (h *harness) stopAll() {
	h.mu.Lock()
	names := make([]string, 0, len(h.routers))
	for n := range h.routers {
		names = append(names, n)
	}
	h.mu.Unlock()
	for _, n := range names {
		h.stop(n)
	}
}

// send publishes a lender event on the NATS intake, as a lender would.
func (h *harness) send(ev *dunningv1.LenderEvent) {
	h.t.Helper()
	v, err := ingest.Validate(ev)
	if err != nil {
		h.t.Fatalf("test event invalid: %v", err)
	}
	data, err := proto.Marshal(ev)
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := h.js.Publish(context.Background(), topology.IntakeSubject(v.Tenant, v.Loan), data); err != nil {
		h.t.Fatalf("publishing lender event: %v", err)
	}
}

func money(minor int64) *dunningv1.Money { return &dunningv1.Money{Currency: "CNY", MinorUnits: minor} }

func dueEvent(loan, inst string, minor int64, at time.Time) *dunningv1.LenderEvent {
	return tenantDue(tenant, loan, inst, minor, at)
}

func tenantDue(tenant, loan, inst string, minor int64, at time.Time) *dunningv1.LenderEvent {
	return &dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_InstallmentDue{InstallmentDue: &dunningv1.InstallmentDue{
		TenantId: tenant, LoanId: loan, InstallmentId: inst, Amount: money(minor), DueAt: timestamppb.New(at),
		TimeZone: "Asia/Shanghai", ContactRef: "contact-" + loan}}}
}

func payEvent(loan, pid string, minor int64) *dunningv1.LenderEvent {
	return &dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_RepaymentReceived{RepaymentReceived: &dunningv1.RepaymentReceived{
		TenantId: tenant, LoanId: loan, PaymentId: pid, Amount: money(minor), PaidAt: timestamppb.Now()}}}
}

func holdEvent(loan, id string, kind dunningv1.HoldKind) *dunningv1.LenderEvent {
	return &dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_HoldPlaced{HoldPlaced: &dunningv1.HoldPlaced{
		TenantId: tenant, LoanId: loan, HoldId: id, Kind: kind, ReceivedAt: timestamppb.Now()}}}
}

// logEntry is a decoded loan-log entry with its subject kind.
type logEntry struct {
	seq   uint64
	kind  string // decision kind, or the subject kind for lender events and steps
	event policy.Event
}

func (h *harness) entries(loan string) []logEntry { return h.tenantEntries(tenant, loan) }

func (h *harness) tenantEntries(tenant, loan string) []logEntry {
	h.t.Helper()
	raws, _, err := h.log.ReadRaw(context.Background(), tenant, loan)
	if err != nil {
		h.t.Fatalf("reading log of %s: %v", loan, err)
	}
	var out []logEntry
	for _, r := range raws {
		addr, err := topology.ParseLoanSubject(r.Subject)
		if err != nil {
			h.t.Fatalf("bad subject in log: %v", err)
		}
		ev, err := codec.DecodeStored(addr, r.Header, r.Data)
		if err != nil {
			out = append(out, logEntry{seq: r.Seq, kind: "invalid"})
			continue
		}
		k := string(addr.Kind)
		if d, ok := ev.(policy.Decision); ok {
			k = d.Kind.String()
		}
		out = append(out, logEntry{seq: r.Seq, kind: k, event: ev})
	}
	return out
}

func counts(es []logEntry) map[string]int {
	m := map[string]int{}
	for _, e := range es {
		m[e.kind]++
	}
	return m
}

func (h *harness) decision(loan string, k policy.DecisionKind) (policy.Decision, bool) {
	for _, e := range h.entries(loan) {
		if d, ok := e.event.(policy.Decision); ok && d.Kind == k {
			return d, true
		}
	}
	return policy.Decision{}, false
}

// waitFor polls f until it returns nil or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	natstest.CheckFor(t, timeout, 20*time.Millisecond, f)
}

// waitKind waits until a loan's log holds n decisions of kind k.
func (h *harness) waitKind(loan string, k policy.DecisionKind, n int, timeout time.Duration) {
	h.t.Helper()
	waitFor(h.t, timeout, func() error {
		if got := counts(h.entries(loan))[k.String()]; got < n {
			return fmt.Errorf("loan %s: %d %s, want %d; log: %s; timer pending %v; consumers: %s", loan, got, k, n, summary(h.entries(loan)),
				h.timerPending(loan), h.consumerStates())
		}
		return nil
	})
}

func summary(es []logEntry) string {
	var b strings.Builder
	for _, e := range es {
		fmt.Fprintf(&b, "%d:%s ", e.seq, e.kind)
	}
	return b.String()
}

// consumerStates summarises every declared consumer's backlog, for failure messages.
func (h *harness) consumerStates() string {
	var b strings.Builder
	for _, c := range pipeline.Consumers(1) {
		info, err := h.js.Consumer(context.Background(), c.Stream, c.Name)
		if err != nil {
			continue
		}
		ci := info.CachedInfo()
		if fresh, err := info.Info(context.Background()); err == nil {
			ci = fresh
		}
		fmt.Fprintf(&b, "%s pending %d unacked %d redelivered %d waiting %d; ", c.Name, ci.NumPending, ci.NumAckPending, ci.NumRedelivered, ci.NumWaiting)
	}
	return b.String()
}

// timerPending reports whether the loan's schedule subject holds a message.
func (h *harness) timerPending(loan string) bool {
	_, found, err := h.log.Last(context.Background(), topology.LoanRef{Tenant: tenant, Loan: loan}.Timer())
	if err != nil {
		h.t.Fatalf("reading the timer of %s: %v", loan, err)
	}
	return found
}

// recordHas finds the last copy of subject in the protected record.
func (h *harness) recordHas(subject string) (*jetstream.RawStreamMsg, error) {
	ctx := context.Background()
	s, err := h.js.Stream(ctx, topology.StreamRecord)
	if err != nil {
		return nil, err
	}
	// The record keeps a loan's copies on the loan's subject, each naming
	// its origin: read them in order. It copies asynchronously: give it a
	// moment.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var last *jetstream.RawStreamMsg
		for seq := uint64(1); ; {
			m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(topology.RecordSubject(subject)))
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				break
			}
			if err != nil {
				return nil, err
			}
			if topology.RecordOrigin(m.Header) == subject {
				last = m
			}
			seq = m.Sequence + 1
		}
		if last != nil {
			return last, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s: no copy in the record", subject)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dlq returns the dead letters, in order.
func (h *harness) dlq() []*jetstream.RawStreamMsg {
	h.t.Helper()
	ctx := context.Background()
	s, err := h.js.Stream(ctx, topology.StreamDLQ)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err == nil {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Sequence < out[j].Sequence })
	return out
}

// intakeDrained reports whether the intake consumers (one per partition)
// have processed everything.
func (h *harness) intakeDrained() error {
	for _, spec := range h.topo.Partitions.Spread([]topology.ConsumerSpec{topology.Intake}) {
		c, err := h.js.Consumer(context.Background(), spec.Stream, spec.Name)
		if err != nil {
			return err
		}
		info, err := c.Info(context.Background())
		if err != nil {
			return err
		}
		if info.NumPending > 0 || info.NumAckPending > 0 {
			return fmt.Errorf("%s: %d pending, %d unacked", spec.Name, info.NumPending, info.NumAckPending)
		}
	}
	return nil
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
