package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/opendunning/dunning/pkg/access"
	"github.com/opendunning/dunning/pkg/codec"
	"github.com/opendunning/dunning/pkg/embedded"
	"github.com/opendunning/dunning/pkg/loanlog"
	"github.com/opendunning/dunning/pkg/natstest"
	"github.com/opendunning/dunning/pkg/pipeline"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/stage"
	"github.com/opendunning/dunning/pkg/topology"
	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"
)

// mode is one durability setting of the embedded server, with work sizes
// that keep each iteration around a second on two cores.
type mode struct {
	name       string
	syncAlways bool
	rawMsgs    int // messages per iteration of the raw consume->publish->ack loop
	syncPubs   int // publishes per iteration of the sync publish loop
	// transports the mode is measured over. TCP is measured only where it is
	// cheap: under fsync=always the disk, not the transport, sets the pace.
	transports []transport
}

// transport is how the measured clients reach the server. The embedded
// server serves both; in-process skips the kernel's loopback.
type transport struct {
	name string
	dial func(srv *embedded.Server, name string) (*nats.Conn, error)
}

var (
	inproc = transport{name: "inproc", dial: func(srv *embedded.Server, name string) (*nats.Conn, error) { return srv.Connect(name) }}
	tcp    = transport{name: "tcp", dial: func(srv *embedded.Server, name string) (*nats.Conn, error) {
		auth, err := srv.Keyring.Option(access.Admin)
		if err != nil {
			return nil, err
		}
		return nats.Connect(srv.ClientURL(), nats.Name(name), nats.MaxReconnects(-1), auth)
	}}
)

var modes = []mode{
	{name: "fsync=always", syncAlways: true, rawMsgs: 4000, syncPubs: 1000, transports: []transport{inproc}},
	{name: "fsync=interval", syncAlways: false, rawMsgs: 40000, syncPubs: 10000, transports: []transport{inproc, tcp}},
}

const (
	// stageLoans is how many loans one iteration of the stage benchmark takes
	// from overdue_confirmed to contact_requested (+ escalation timer).
	stageLoans = 2000
	tenant     = "bench"
	// payloadSize is the raw loop's message size: about a stage decision
	// (the stage benchmark reports the real contact_requested size).
	payloadSize = 300
	// rawStream mirrors the loans stream's configuration under other subjects.
	rawStream = "BENCH_RAW"
	pollEvery = 5 * time.Millisecond
)

// row is one line of the summary: a durability mode over one transport.
type row struct {
	syncPub, rawLoop, stage float64 // per second
	// pipeline is loans per second from a lender event on the NATS intake
	// to the first contact committed (intake, overdue confirmation, first
	// contact: three handled messages, four log writes per loan).
	pipeline      float64
	decisionBytes int
	// CPU per handled message (user and system time of the process, the
	// embedded server included, over the timed part) for the raw loop, the
	// stage and the pipeline; the pipeline's handled messages (deliveries
	// to its consumers) and loans-stream writes per loan.
	rawCPU, stageCPU, pipeCPU      time.Duration
	handledPerLoan, writtenPerLoan float64
	writtenKinds                   string
}

var (
	resultsMu sync.Mutex
	results   = map[string]*row{}
)

func record(k string, f func(r *row)) {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	r := results[k]
	if r == nil {
		r = &row{}
		results[k] = r
	}
	f(r)
}

func key(md mode, tr transport) string { return md.name + "/" + tr.name }

func TestMain(m *testing.M) {
	code := m.Run()
	printSummary(os.Stdout)
	os.Exit(code)
}

func printSummary(w io.Writer) {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	if len(results) == 0 {
		return
	}
	fmt.Fprintf(w, "\nsummary: embedded nats-server %s, file store in a temp dir; raw payload %d B; %d loans per stage iteration\n",
		server.VERSION, payloadSize, stageLoans)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tconn\traw loop msgs/s\tstage events/s\tstage/raw\tpipeline loans/s\tpipeline msgs/s\tpipeline/raw\traw sync publish/s\tdecision bytes\t")
	var cpu strings.Builder
	for _, md := range modes {
		for _, tr := range md.transports {
			r, ok := results[key(md, tr)]
			if !ok {
				continue
			}
			// The pipeline's ratio compares the messages it handled (as
			// its consumers counted their deliveries) with the raw loop's.
			msgs := r.handledPerLoan * r.pipeline
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t\n", md.name, tr.name, rate(r.rawLoop), rate(r.stage),
				ratio(r.stage, r.rawLoop), rate(r.pipeline), rate(msgs), ratio(msgs, r.rawLoop), rate(r.syncPub), r.decisionBytes)
			fmt.Fprintf(&cpu, "%s\t%s\t%s\t%s\t%s\t%.2f\t%.2f\t%s\t\n", md.name, tr.name, micros(r.rawCPU), micros(r.stageCPU), micros(r.pipeCPU),
				r.handledPerLoan, r.writtenPerLoan, r.writtenKinds)
		}
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "\nCPU per handled message (the process: measured clients and the embedded server), and the pipeline's work per loan:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "mode\tconn\traw loop µs/msg\tstage µs/msg\tpipeline µs/msg\thandled/loan\twritten/loan\twritten by kind (per loan)\t")
	fmt.Fprint(tw, cpu.String())
	_ = tw.Flush()
}

func micros(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", float64(d.Nanoseconds())/1e3)
}

// cpuTime is the process's user and system CPU time so far: the measured
// clients and the embedded server share the process, so it is both.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func ratio(a, b float64) string {
	if a == 0 || b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.3f", a/b)
}

func rate(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", v)
}

// BenchmarkPipeline measures, per durability mode: the fsync-bound sync
// publish rate, the raw consume->publish->ack loop (the physical limit of a
// stage's shape), and the first-contact stage itself. Every metric is
// "events/s" over the timed part only; ns/op is per iteration (a batch).
// Each benchmark uses b.Loop, so -benchtime=3x runs exactly three timed
// iterations on one server (no extra b.N=1 round).
func BenchmarkPipeline(b *testing.B) {
	for _, md := range modes {
		b.Run(md.name, func(b *testing.B) {
			for _, tr := range md.transports {
				b.Run(tr.name, func(b *testing.B) {
					b.Run("raw_sync_publish", func(b *testing.B) { benchSyncPublish(b, md, tr) })
					b.Run("raw_loop", func(b *testing.B) { benchRawLoop(b, md, tr) })
					b.Run("stage_contact", func(b *testing.B) { benchStage(b, md, tr) })
					b.Run("pipeline", func(b *testing.B) { benchPipelineRun(b, md, tr) })
				})
			}
		})
	}
}

// env is a fresh embedded server (store in b.TempDir, listening on a free
// loopback port) and an in-process control client that seeds and polls.
type env struct {
	srv *embedded.Server
	tr  transport
	nc  *nats.Conn
	js  jetstream.JetStream
}

func newEnv(b *testing.B, md mode, tr transport) *env {
	b.Helper()
	srv := natstest.Server(b, embedded.Config{SyncAlways: md.syncAlways})
	e := &env{srv: srv, tr: tr}
	e.nc, e.js = natstest.Connect(b, srv, "bench-control")
	return e
}

// dial opens a measured client's connection over the benchmark's transport.
func (e *env) dial(name string) (*nats.Conn, error) { return e.tr.dial(e.srv, name) }

// connect opens another measured connection, as a separate service would.
func (e *env) connect(b *testing.B, name string) (*nats.Conn, jetstream.JetStream) {
	b.Helper()
	nc, err := e.dial(name)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	return nc, js
}

// createRawStream makes a stream configured exactly like the loans stream
// (file store, schedules, rollups, direct gets, dedup window) on raw.>.
func (e *env) createRawStream(b *testing.B) {
	b.Helper()
	var sc jetstream.StreamConfig
	for _, c := range topology.DefaultTopology().StreamConfigs() {
		if c.Name == topology.StreamLoans {
			sc = c
		}
	}
	sc.Name, sc.Subjects, sc.Description = rawStream, []string{"raw.>"}, "benchmark baseline"
	if _, err := e.js.CreateStream(context.Background(), sc); err != nil {
		b.Fatal(err)
	}
}

// benchSyncPublish: one publish at a time, each waiting for its ack.
func benchSyncPublish(b *testing.B, md mode, tr transport) {
	e := newEnv(b, md, tr)
	e.createRawStream(b)
	_, pjs := e.connect(b, "raw-publisher")
	ctx := context.Background()
	payload := make([]byte, payloadSize)
	i := 0
	for b.Loop() {
		for k := range md.syncPubs {
			if _, err := pjs.Publish(ctx, fmt.Sprintf("raw.sync.%d.%d", i, k), payload); err != nil {
				b.Fatal(err)
			}
		}
		i++
	}
	r := float64(md.syncPubs*i) / b.Elapsed().Seconds()
	b.ReportMetric(r, "events/s")
	record(key(md, tr), func(x *row) { x.syncPub = r })
}

// benchRawLoop: a durable pull consumer on raw.in.<iter>.* (the same ack
// wait, max deliver and max ack pending as a stage's consumer), each message
// answered by one async publish to raw.out.<iter>.<k> and acked once that
// publish's ack arrives. Input is stored before the timer starts; the
// consumer is created fresh per iteration, so it has consumed nothing.
func benchRawLoop(b *testing.B, md mode, tr transport) {
	e := newEnv(b, md, tr)
	e.createRawStream(b)
	_, wjs := e.connect(b, "raw-worker")
	ctx := context.Background()
	topo := topology.DefaultTopology()
	payload := make([]byte, payloadSize)
	n := md.rawMsgs
	i := 0
	var cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		for k := range n {
			if _, err := e.js.PublishAsync(fmt.Sprintf("raw.in.%d.%d", i, k), payload); err != nil {
				b.Fatal(err)
			}
		}
		select {
		case <-e.js.PublishAsyncComplete():
		case <-time.After(time.Minute):
			b.Fatal("populating the raw stream timed out")
		}
		name := fmt.Sprintf("raw-%d", i)
		cons, err := e.js.CreateConsumer(ctx, rawStream, jetstream.ConsumerConfig{
			Durable: name, FilterSubject: fmt.Sprintf("raw.in.%d.*", i),
			AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverAllPolicy,
			AckWait: topo.AckWait, MaxDeliver: topo.MaxDeliver, MaxAckPending: topo.MaxAckPending,
		})
		if err != nil {
			b.Fatal(err)
		}
		if got := cons.CachedInfo().NumPending; got != uint64(n) {
			b.Fatalf("raw input: %d pending, want %d", got, n)
		}
		wcons, err := wjs.Consumer(ctx, rawStream, name)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		c0 := cpuTime()
		if err := rawLoop(wjs, wcons, n, payload); err != nil {
			b.Fatal(err)
		}
		natstest.CheckFor(b, time.Minute, pollEvery, holding(ctx, cons, 0))
		cpu += cpuTime() - c0
		b.StopTimer()
		if got := countSubjects(b, e.js, rawStream, fmt.Sprintf("raw.out.%d.*", i), ""); got != n {
			b.Fatalf("raw loop wrote %d outputs, want %d", got, n)
		}
		if err := e.js.DeleteConsumer(ctx, rawStream, name); err != nil {
			b.Fatal(err)
		}
		i++
		b.StartTimer() // b.Loop must be called with the timer running
	}
	r := float64(n*i) / b.Elapsed().Seconds()
	b.ReportMetric(r, "events/s")
	perMsg := cpu / time.Duration(n*i)
	b.ReportMetric(float64(perMsg.Nanoseconds())/1e3, "cpu-µs/msg")
	record(key(md, tr), func(x *row) { x.rawLoop, x.rawCPU = r, perMsg })
}

// rawLoop consumes n messages; each is answered by an async publish, and
// acked in order as the publish acks arrive. Publishing never waits for an
// ack; the consumer's MaxAckPending bounds what is in flight.
func rawLoop(js jetstream.JetStream, cons jetstream.Consumer, n int, payload []byte) error {
	it, err := cons.Messages(jetstream.PullMaxMessages(512))
	if err != nil {
		return err
	}
	defer it.Stop()
	type inflight struct {
		m jetstream.Msg
		f jetstream.PubAckFuture
	}
	q := make(chan inflight, 4096)
	ackErr := make(chan error, 1)
	go func() {
		for range n {
			p := <-q
			var err error
			select {
			case <-p.f.Ok():
				err = p.m.Ack()
			case err = <-p.f.Err():
			}
			if err != nil {
				ackErr <- err
				it.Stop() // unblocks Next
				return
			}
		}
		ackErr <- nil
	}()
	for range n {
		m, err := it.Next()
		if err != nil {
			select {
			case aerr := <-ackErr:
				if aerr != nil {
					return aerr
				}
			default:
			}
			return fmt.Errorf("raw loop: next: %w", err)
		}
		out := nats.NewMsg("raw.out." + strings.TrimPrefix(m.Subject(), "raw.in."))
		out.Data = payload
		f, err := js.PublishMsgAsync(out)
		if err != nil {
			return fmt.Errorf("raw loop: publish: %w", err)
		}
		q <- inflight{m, f}
	}
	return <-ackErr
}

// benchStage runs the first-contact stage through the shared router and
// engine, as services/contact does, over N loans confirmed overdue before
// the timer starts. Each loan costs the stage: one delivery, one log read
// (batched direct get), the policy, a conditional contact_requested append,
// a conditional escalation-timer write, one ack.
func benchStage(b *testing.B, md mode, tr transport) {
	e := newEnv(b, md, tr)
	ctx := context.Background()
	topo := topology.DefaultTopology()
	if err := topo.Provision(ctx, e.js, pipeline.Consumers(1)); err != nil {
		b.Fatal(err)
	}
	seedLog := loanlog.New(e.nc, e.js)
	ladder := policy.Ladder{Policy: policy.Default(), Calendar: policy.Calendar{Day: time.Hour}}
	contact, _ := stage.ByService("contact")
	contactCons, err := e.js.Consumer(ctx, topology.StreamLoans, contact.Consumer)
	if err != nil {
		b.Fatal(err)
	}
	i := 0
	var cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		prefix := fmt.Sprintf("i%d-", i)
		// DPD 1 under a one-hour day: the contact is due at once, and the
		// escalation step (DPD 16) lies 14.5 h ahead, so nothing else fires.
		if err := seed(ctx, seedLog, prefix, stageLoans, time.Now().Add(-90*time.Minute), ladder.Policy.Version); err != nil {
			b.Fatal(err)
		}
		// The server counts a consumer's pending messages asynchronously.
		natstest.CheckFor(b, 10*time.Second, pollEvery, holding(ctx, contactCons, stageLoans))
		metrics, c := e.timedPipeline(b, "bench-contact", topo, ladder, pipeline.Parts{Stages: []stage.Stage{contact}},
			func(pipeline.Metrics) { natstest.CheckFor(b, 2*time.Minute, pollEvery, holding(ctx, contactCons, 0)) })
		cpu += c
		verifyStage(b, e, seedLog, metrics, prefix, key(md, tr))
		i++
		b.StartTimer() // b.Loop must be called with the timer running
	}
	r := float64(stageLoans*i) / b.Elapsed().Seconds()
	b.ReportMetric(r, "events/s")
	perMsg := cpu / time.Duration(stageLoans*i)
	b.ReportMetric(float64(perMsg.Nanoseconds())/1e3, "cpu-µs/msg")
	record(key(md, tr), func(x *row) { x.stage, x.stageCPU = r, perMsg })
}

// timedPipeline runs one process's parts, built by pipeline.New as a
// service builds them, and times it from its start (subscribing included)
// until done returns (done fails the benchmark if its condition never
// holds); then stops it. It returns the process's metrics.
func (e *env) timedPipeline(b *testing.B, name string, topo topology.Topology, ladder policy.Ladder, parts pipeline.Parts,
	done func(pipeline.Metrics)) (pipeline.Metrics, time.Duration) {
	b.Helper()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := pipeline.New(ctx, pipeline.Config{Name: name, Topology: topo, Ladder: policy.Fixed(ladder), Logger: logger, Parts: parts,
		Admin: e.dial}, e.dial)
	if err != nil {
		b.Fatal(err)
	}
	exited := make(chan error, 1)
	b.StartTimer()
	c0 := cpuTime()
	go func() { exited <- p.Run(ctx) }()
	done(p.Metrics)
	cpu := cpuTime() - c0
	b.StopTimer()
	cancel()
	if err := <-exited; err != nil {
		b.Fatal(err)
	}
	return p.Metrics, cpu
}

// seed stores, for each of n loans, an installment due at dueAt and the
// overdue_confirmed decision that first contact consumes.
func seed(ctx context.Context, l *loanlog.Log, prefix string, n int, dueAt time.Time, version string) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(64)
	for k := range n {
		loan := fmt.Sprintf("%s%05d", prefix, k)
		g.Go(func() error { return seedLoan(gctx, l, loan, dueAt, version) })
	}
	return g.Wait()
}

func seedLoan(ctx context.Context, l *loanlog.Log, loan string, dueAt time.Time, version string) error {
	amount := policy.Money{Currency: "CNY", Minor: 120000}
	data, err := proto.Marshal(&dunningv1.InstallmentDue{
		TenantId: tenant, LoanId: loan, InstallmentId: "1",
		Amount: &dunningv1.Money{Currency: amount.Currency, MinorUnits: amount.Minor},
		DueAt:  timestamppb.New(dueAt), TimeZone: "Asia/Shanghai", ContactRef: "crm-" + loan,
	})
	if err != nil {
		return err
	}
	seq, err := l.AppendLender(ctx, topology.LoanRef{Tenant: tenant, Loan: loan}.Subject(codec.Due.Token, "1"), data, "bench")
	if err != nil {
		return fmt.Errorf("seeding %s: %w", loan, err)
	}
	d := policy.Decision{Kind: policy.KindOverdueConfirmed, InstallmentIDs: []string{"1"}, Ctx: policy.Context{
		Case: 1, Stage: policy.StageOverdueConfirmation, Tier: policy.TierLight, DPD: 1, Overdue: amount,
		DecidedAt: time.Now(), Reason: "due time passed with 120000 CNY unpaid",
		StepID: "c1-overdue_confirmation", PolicyVersion: version,
	}}
	if _, err := l.AppendDecision(ctx, tenant, loan, seq, d); err != nil {
		return fmt.Errorf("seeding %s: %w", loan, err)
	}
	return nil
}

// verifyStage fails the benchmark unless every loan of the iteration has its
// contact_requested decision and its escalation timer in the store, with no
// dead letter.
func verifyStage(b *testing.B, e *env, l *loanlog.Log, m pipeline.Metrics, prefix, rowKey string) {
	b.Helper()
	if got := testutil.ToFloat64(m.Stage.Decisions.WithLabelValues("first-contact", policy.KindContactRequested.String())); got != stageLoans {
		b.Fatalf("%s: %v contact_requested decisions counted, want %d", prefix, got, stageLoans)
	}
	if n := deadLetters(m); n != 0 {
		b.Fatalf("%s: %v dead letters were written", prefix, n)
	}
	if c := testutil.ToFloat64(m.Stage.Conflicts.WithLabelValues("first-contact")); c != 0 {
		b.Logf("%s: %v log conflicts (re-read and decided again)", prefix, c)
	}
	contactSubj := "dunning.loan.*." + tenant + ".*." + string(codec.Contact.Token) + ".*"
	if got := countSubjects(b, e.js, topology.StreamLoans, contactSubj, prefix); got != stageLoans {
		b.Fatalf("%s: %d loans have a contact_requested in the store, want %d", prefix, got, stageLoans)
	}
	timerSubj := "dunning.loan.*." + tenant + ".*." + string(topology.KindTimer)
	if got := countSubjects(b, e.js, topology.StreamLoans, timerSubj, prefix); got != stageLoans {
		b.Fatalf("%s: %d loans have an escalation timer, want %d", prefix, got, stageLoans)
	}
	// One loan, read back and decoded the way the timeline does.
	loan := prefix + "00000"
	raws, _, err := l.ReadRaw(context.Background(), tenant, loan)
	if err != nil {
		b.Fatal(err)
	}
	var kinds []string
	for _, r := range raws {
		addr, err := topology.ParseLoanSubject(r.Subject)
		if err != nil {
			b.Fatal(err)
		}
		ev, err := codec.Decode(addr, r.Data)
		if err != nil {
			b.Fatal(err)
		}
		k := string(addr.Kind)
		if d, ok := ev.(policy.Decision); ok {
			k = d.Kind.String()
			if d.Kind == policy.KindContactRequested {
				record(rowKey, func(x *row) { x.decisionBytes = len(r.Data) })
			}
		}
		if t, ok := ev.(policy.TimerSet); ok && t.Step.Stage != policy.StageEscalation {
			b.Fatalf("%s: timer holds %s, want escalation", loan, t.Step.Stage)
		}
		kinds = append(kinds, k)
	}
	if want := "due overdue_confirmed contact_requested timer"; strings.Join(kinds, " ") != want {
		b.Fatalf("%s: log is %q, want %q", loan, strings.Join(kinds, " "), want)
	}
}

// countSubjects counts the stream's subjects matching filter whose loan (or
// iteration) token starts with prefix.
func countSubjects(b *testing.B, js jetstream.JetStream, stream, filter, prefix string) int {
	b.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		b.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for subj := range info.State.Subjects {
		if prefix == "" {
			n++
			continue
		}
		if addr, err := topology.ParseLoanSubject(subj); err == nil && strings.HasPrefix(addr.Loan, prefix) {
			n++
		}
	}
	return n
}

// holding is a condition for natstest.CheckFor: the consumer has n
// messages to deliver and none delivered and unacked (n 0: drained).
func holding(ctx context.Context, c jetstream.Consumer, n uint64) func() error {
	return func() error {
		info, err := c.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumPending != n || info.NumAckPending != 0 {
			return fmt.Errorf("consumer %s: %d pending, %d unacked; want %d, 0", info.Name, info.NumPending, info.NumAckPending, n)
		}
		return nil
	}
}

// benchPipelineRun times the pipeline's front half end to end: N lender
// events (installments already a day overdue) stored on the NATS intake
// before the timer starts; then the whole pipeline (intake and all five
// stages, on one router, as dunningd runs them) until every loan's first
// contact is committed. Per loan: the intake records the installment, the
// overdue stage confirms it (its step fires from a server schedule), the
// contact stage contacts and sets the escalation timer.
func benchPipelineRun(b *testing.B, md mode, tr transport) {
	e := newEnv(b, md, tr)
	ctx := context.Background()
	topo := topology.DefaultTopology()
	if err := topo.Provision(ctx, e.js, pipeline.Consumers(1)); err != nil {
		b.Fatal(err)
	}
	ladder := policy.Ladder{Policy: policy.Default(), Calendar: policy.Calendar{Day: time.Hour}}
	intake, err := e.js.Consumer(ctx, topology.StreamIntake, topology.ConsumerIntake)
	if err != nil {
		b.Fatal(err)
	}
	n := pipelineLoans(md)
	i := 0
	var cpu time.Duration
	var handled, written uint64
	var kinds string
	for b.Loop() {
		b.StopTimer()
		prefix := fmt.Sprintf("p%d-", i)
		due := time.Now().Add(-90 * time.Minute) // DPD 1 under a one-hour day
		for k := range n {
			loan := fmt.Sprintf("%s%05d", prefix, k)
			data, err := proto.Marshal(&dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_InstallmentDue{InstallmentDue: &dunningv1.InstallmentDue{
				TenantId: tenant, LoanId: loan, InstallmentId: "1", Amount: &dunningv1.Money{Currency: "CNY", MinorUnits: 120000},
				DueAt: timestamppb.New(due), TimeZone: "Asia/Shanghai", ContactRef: "crm-" + loan}}})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := e.js.PublishAsync(topology.IntakeSubject(tenant, loan), data); err != nil {
				b.Fatal(err)
			}
		}
		select {
		case <-e.js.PublishAsyncComplete():
		case <-time.After(time.Minute):
			b.Fatal("publishing lender events timed out")
		}
		natstest.CheckFor(b, 10*time.Second, pollEvery, holding(ctx, intake, uint64(n)))
		contactsOf := func(m pipeline.Metrics) float64 {
			return testutil.ToFloat64(m.Stage.Decisions.WithLabelValues("first-contact", policy.KindContactRequested.String()))
		}
		delivered0, written0 := deliveries(b, e.js), lastSeq(b, e.js, topology.StreamLoans)
		metrics, c := e.timedPipeline(b, "bench-pipeline", topo, ladder, pipeline.Parts{Stages: stage.Table, Intake: true}, func(m pipeline.Metrics) {
			natstest.CheckFor(b, 2*time.Minute, pollEvery, func() error {
				if got := contactsOf(m); got != float64(n) {
					return fmt.Errorf("%s: %v first contacts, want %d", prefix, got, n)
				}
				return nil
			})
		})
		cpu += c
		handled += deliveries(b, e.js) - delivered0
		written += lastSeq(b, e.js, topology.StreamLoans) - written0
		kinds = keptByKind(b, e.js, prefix, n)
		if got := testutil.ToFloat64(metrics.Stage.Decisions.WithLabelValues("overdue-confirmation", policy.KindOverdueConfirmed.String())); got != float64(n) {
			b.Fatalf("%s: %v overdue confirmations, want %d", prefix, got, n)
		}
		if c := deadLetters(metrics); c != 0 {
			b.Fatalf("%s: %v dead letters were written", prefix, c)
		}
		contactSubj := "dunning.loan.*." + tenant + ".*." + string(codec.Contact.Token) + ".*"
		if got := countSubjects(b, e.js, topology.StreamLoans, contactSubj, prefix); got != n {
			b.Fatalf("%s: %d loans have a contact_requested in the store, want %d", prefix, got, n)
		}
		i++
		b.StartTimer()
	}
	r := float64(n*i) / b.Elapsed().Seconds()
	b.ReportMetric(r, "loans/s")
	perMsg := cpu / time.Duration(max(handled, 1))
	perLoanHandled, perLoanWritten := float64(handled)/float64(n*i), float64(written)/float64(n*i)
	b.ReportMetric(float64(perMsg.Nanoseconds())/1e3, "cpu-µs/msg")
	b.ReportMetric(perLoanHandled, "handled/loan")
	b.ReportMetric(perLoanWritten, "written/loan")
	record(key(md, tr), func(x *row) {
		x.pipeline, x.pipeCPU, x.handledPerLoan, x.writtenPerLoan, x.writtenKinds = r, perMsg, perLoanHandled, perLoanWritten, kinds
	})
}

// deadLetters sums the process's dead-letter counter over its series
// (every series exists from the start, at 0).
func deadLetters(m pipeline.Metrics) float64 {
	ch := make(chan prometheus.Metric, 64)
	go func() {
		m.Router.DeadLetters.Collect(ch)
		close(ch)
	}()
	var sum float64
	for c := range ch {
		var pb dto.Metric
		if err := c.Write(&pb); err == nil {
			sum += pb.GetCounter().GetValue()
		}
	}
	return sum
}

// deliveries is how many messages the pipeline's consumers have been
// given, redeliveries included: the messages it handled.
func deliveries(b *testing.B, js jetstream.JetStream) uint64 {
	b.Helper()
	var n uint64
	for _, c := range pipeline.Consumers(1) {
		if c.Stream == topology.StreamAdvisories {
			continue
		}
		cons, err := js.Consumer(context.Background(), c.Stream, c.Name)
		if err != nil {
			b.Fatal(err)
		}
		n += cons.CachedInfo().Delivered.Consumer
	}
	return n
}

// lastSeq is the stream's last sequence: what was written to it so far.
func lastSeq(b *testing.B, js jetstream.JetStream, stream string) uint64 {
	b.Helper()
	s, err := js.Stream(context.Background(), stream)
	if err != nil {
		b.Fatal(err)
	}
	return s.CachedInfo().State.LastSeq
}

// keptByKind is what the iteration's loans' logs hold, per loan and kind
// (a timer's rollup keeps one of its writes).
func keptByKind(b *testing.B, js jetstream.JetStream, prefix string, n int) string {
	b.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, topology.StreamLoans)
	if err != nil {
		b.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter("dunning.loan.*."+tenant+".>"))
	if err != nil {
		b.Fatal(err)
	}
	byKind := map[string]uint64{}
	for subj, c := range info.State.Subjects {
		if addr, err := topology.ParseLoanSubject(subj); err == nil && strings.HasPrefix(addr.Loan, prefix) {
			byKind[string(addr.Kind)] += c
		}
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(byKind)) {
		parts = append(parts, fmt.Sprintf("%s %.2f", k, float64(byKind[k])/float64(n)))
	}
	return strings.Join(parts, ", ")
}

// pipelineLoans keeps an iteration near a few seconds in each mode.
func pipelineLoans(md mode) int {
	if md.syncAlways {
		return 1000
	}
	return 4000
}
