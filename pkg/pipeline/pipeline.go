// Package pipeline is the composition root: the one place where the parts
// of the pipeline (intake, the five stages of package stage's table,
// dispatch, webhook delivery) are wired to NATS. The all-in-one dunningd,
// every service, the integration tests, the benchmarks and the chaos run
// all build their processes with New. It takes configuration that is
// already parsed and validated (package app does that for the binaries), so
// nothing connects before everything is known to be right.
package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/opendunning/dunning/pkg/bus"
	"github.com/opendunning/dunning/pkg/dispatch"
	"github.com/opendunning/dunning/pkg/feed"
	"github.com/opendunning/dunning/pkg/ingest"
	"github.com/opendunning/dunning/pkg/loanlog"
	"github.com/opendunning/dunning/pkg/notify"
	"github.com/opendunning/dunning/pkg/outcome"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/policyfile"
	"github.com/opendunning/dunning/pkg/stage"
	"github.com/opendunning/dunning/pkg/topology"
)

// Consumers is every declared durable consumer with the loans spread over
// parts partitions, in a stable order: intake, the five stages, dispatch,
// notify, the agencies' feed (those of the loans streams on each partition,
// topology.Partitions.Spread). Provision creates them all (not the
// agencies' own consumers: the feed creates each).
func Consumers(parts topology.Partitions) []topology.ConsumerSpec {
	out := []topology.ConsumerSpec{topology.Intake}
	for _, s := range stage.Table {
		out = append(out, s.ConsumerSpec())
	}
	return topology.WithAbandoned(parts.Spread(append(out, dispatch.Consumer, topology.Notify, feed.Consumer, outcome.Consumer)))
}

// Parts says what one process runs.
type Parts struct {
	// Stages run here, each on its durable consumer.
	Stages []stage.Stage
	// Intake validates and records lender events published over NATS.
	Intake bool
	// Dispatch fans committed contacts out to per-channel task subjects.
	Dispatch bool
	// Feed writes placements and recalls to the agencies' feeds, and
	// records what the agencies report back (package outcome).
	Feed bool
	// Notifier, if set, delivers tasks to the lender's webhooks.
	Notifier *notify.Notifier
}

// consumes reports whether the process runs any consumer.
func (p Parts) consumes() bool { return len(p.consumers(1)) > 0 }

// consumers are the durable consumers the parts run, the loans spread over
// parts partitions.
func (p Parts) consumers(parts topology.Partitions) []topology.ConsumerSpec {
	var out []topology.ConsumerSpec
	if p.Intake {
		out = append(out, topology.Intake)
	}
	for _, s := range p.Stages {
		out = append(out, s.ConsumerSpec())
	}
	if p.Dispatch {
		out = append(out, dispatch.Consumer)
	}
	if p.Feed {
		out = append(out, feed.Consumer, outcome.Consumer)
	}
	if p.Notifier != nil {
		out = append(out, topology.Notify)
	}
	// Each with the consumer of its max-deliveries advisories, which the
	// router runs beside it (bus.Router.Handle).
	return topology.WithAbandoned(parts.Spread(out))
}

// Config is what New needs, parsed and validated.
type Config struct {
	// Name identifies the process in NATS connection names and logs.
	Name     string
	Topology topology.Topology
	Parts    Parts
	// Ladder chooses a loan's ladder by tenant and product.
	Ladder func(tenant, product string) policy.Ladder
	// Now is the clock; nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
	// Registry receives every metric of the process; nil means a private one.
	Registry prometheus.Registerer
	// Concurrency is how many messages each consumer handles at once (0: the router's default).
	Concurrency int
	// MaxKeepAlive bounds how long a message is kept from redelivery while
	// its handler runs (0: bus.DefaultMaxKeepAlive).
	MaxKeepAlive time.Duration
	// YieldFloor is how many messages the process's own consumers handle at
	// once while the intake has a backlog (lender facts first, bus.Yield):
	// 0 means bus's default, a negative value turns yielding off.
	YieldFloor int
	// Admin, if set, dials as the admin identity, and New provisions the
	// declared topology over it (dunningd, which owns its server). Without
	// it the process may create nothing: New waits until the topology an
	// admin provisioned (dunctl provision) exists, telling Waiting what is
	// missing meanwhile.
	Admin   Dialer
	Waiting func(missing []string)
}

// Dialer opens a NATS connection with the given name. Each router owns its
// connection (the subscriber drains it on close), so a process dials twice.
type Dialer func(name string) (*nats.Conn, error)

// Metrics are every metric of the pipeline, each owned and registered by
// its package.
type Metrics struct {
	Stage  *stage.Metrics
	Ingest *ingest.Metrics
	Router *bus.Metrics
	Policy *policyfile.Metrics
}

// NewMetrics registers every pipeline metric on reg.
func NewMetrics(reg prometheus.Registerer) Metrics {
	return Metrics{Stage: stage.NewMetrics(reg), Ingest: ingest.NewMetrics(reg), Router: bus.NewMetrics(reg),
		Policy: policyfile.NewMetrics(reg)}
}

// initSeries starts at 0 every series the process's parts can count, so
// that a dashboard or an alert sees it before its first event: a rate over
// a series that appears with its first increment misses that increment,
// and a panel with no series reads as "no data", not as none.
func (m Metrics) initSeries(parts Parts, k topology.Partitions) {
	for _, c := range parts.consumers(k) {
		if c.Stream == topology.StreamAdvisories {
			continue // what they dead-letter is counted under the consumer the advisory names
		}
		m.Router.DeadLetters.WithLabelValues(c.Name, bus.ClassPermanent)
		m.Router.DeadLetters.WithLabelValues(c.Name, bus.ClassExhausted)
		m.Router.DeadLetters.WithLabelValues(c.Name, bus.ClassAbandoned)
		m.Router.Redeliveries.WithLabelValues(c.Name)
	}
	for _, s := range parts.Stages {
		m.Stage.Conflicts.WithLabelValues(s.Consumer)
		m.Stage.StepLateness.WithLabelValues(s.Consumer)
		for _, k := range s.Writes {
			m.Stage.Decisions.WithLabelValues(s.Consumer, k.Name())
		}
	}
	for _, source := range []string{"http", "nats"} {
		for _, result := range []string{"accepted", "duplicate", "invalid"} {
			m.Ingest.Ingested.WithLabelValues(source, result)
		}
	}
}

// Pipeline is one process's share of the pipeline, connected and provisioned.
type Pipeline struct {
	Conn     *nats.Conn
	Log      *loanlog.Log
	Ingestor *ingest.Ingestor
	Metrics  Metrics

	router     *bus.Router // nil when the process runs no consumer
	yield      *bus.Yield  // nil when the process yields to no one
	lenderConn *nats.Conn  // lender facts' own connection, if any
	intakeC    int         // the intake's concurrency, for reading its backlog
	js         jetstream.JetStream
	topo       topology.Topology
	parts      Parts
	consumers  []topology.ConsumerSpec
}

// yielding reports whether the process runs any of the pipeline's own
// consumers: work that gives way to lender facts (bus.Yield).
func (p *Pipeline) yielding() bool {
	return slices.ContainsFunc(p.consumers, topology.Yields)
}

// provision creates or updates the declared topology as the admin.
func provision(ctx context.Context, topo topology.Topology, admin Dialer) error {
	nc, err := admin("provisioning")
	if err != nil {
		return fmt.Errorf("connecting to nats as admin: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return topo.Provision(pctx, js, Consumers(topo.Partitions))
}

// Missing names what of the declared streams and of this process's
// consumers does not exist ("stream DUNNING_LOANS", "consumer escalation"),
// and what exists as an older release provisioned it (topology.Stale).
func (p *Pipeline) Missing(ctx context.Context) ([]string, error) {
	missing, err := p.topo.Missing(ctx, p.js, p.consumers)
	if err != nil {
		return nil, err
	}
	stale, err := p.topo.Stale(ctx, p.js)
	return append(missing, stale...), err
}

// waitTopology returns once the declared topology exists, checking every
// second and telling waiting what is missing whenever that changes. It
// first reads how many partitions the loans were provisioned with (the
// first loans stream's metadata): the process's consumers are its parts'
// on every partition.
func (p *Pipeline) waitTopology(ctx context.Context, waiting func([]string)) error {
	var last string
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		k, err := topology.ReadPartitions(cctx, p.js)
		if errors.Is(err, topology.ErrUnprovisioned) {
			k, err = 1, nil // Missing or Stale names what is wrong
		}
		var missing []string
		if err == nil {
			p.topo.Partitions, p.consumers = k, p.parts.consumers(k)
			missing, err = p.Missing(cctx)
		}
		cancel()
		if err == nil && len(missing) == 0 {
			if waiting != nil && last != "" {
				waiting(nil)
			}
			return nil
		}
		if err != nil {
			missing = []string{err.Error()}
		}
		if now := fmt.Sprint(missing); now != last && waiting != nil {
			waiting(missing)
			last = now
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the topology (missing: %v): %w", missing, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// New connects, provisions the declared topology, and registers the
// process's parts on one router. Run runs them.
func New(ctx context.Context, cfg Config, dial Dialer) (*Pipeline, error) {
	if cfg.Ladder == nil {
		return nil, errors.New("pipeline: no ladder")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	nc, err := dial(cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("connecting to nats: %w", err)
	}
	p, err := build(ctx, cfg, dial, nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return p, nil
}

func build(ctx context.Context, cfg Config, dial Dialer, nc *nats.Conn) (_ *Pipeline, err error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if cfg.Admin != nil {
		if err := provision(ctx, cfg.Topology, cfg.Admin); err != nil {
			return nil, err
		}
	}
	p := &Pipeline{Conn: nc, js: js, topo: cfg.Topology, parts: cfg.Parts}
	if err := p.waitTopology(ctx, cfg.Waiting); err != nil {
		return nil, err
	}
	metrics := NewMetrics(cfg.Registry)
	metrics.initSeries(cfg.Parts, p.topo.Partitions)
	log := loanlog.New(nc, js)
	log.Parts = p.topo.Partitions
	p.Log, p.Metrics = log, metrics
	// Lender facts first: where intake shares the process with the
	// pipeline's own work, the facts it records (and the API's) go out on
	// a connection of their own, not queued behind the stages' writes on
	// one connection's lock and buffer.
	lenderLog := log
	if cfg.Parts.Intake && p.yielding() {
		lnc, derr := dial(cfg.Name + "-lender-facts")
		if derr != nil {
			return nil, fmt.Errorf("connecting for lender facts: %w", derr)
		}
		ljs, jerr := jetstream.New(lnc)
		if jerr != nil {
			lnc.Close()
			return nil, fmt.Errorf("jetstream: %w", jerr)
		}
		p.lenderConn, lenderLog = lnc, loanlog.New(lnc, ljs)
		lenderLog.Parts = p.topo.Partitions
		// Closed if build fails after this: err is build's named result.
		defer func() {
			if err != nil {
				lnc.Close()
			}
		}()
	}
	p.Ingestor = &ingest.Ingestor{Log: lenderLog, Metrics: metrics.Ingest, Now: cfg.Now, Ladder: cfg.Ladder, Reject: rejecter(js)}
	if !cfg.Parts.consumes() {
		return p, nil
	}
	// The process's own consumers' lag, read at each scrape. A registry
	// shared by two pipelines (tests) keeps the first's.
	if err := cfg.Registry.Register(NewLagCollector(js, p.consumers)); err != nil {
		var dup prometheus.AlreadyRegisteredError
		if !errors.As(err, &dup) {
			return nil, fmt.Errorf("registering the consumer lag collector: %w", err)
		}
	}
	// Lender facts first: the process's own work gives way while the
	// intake, in this process or another, has a backlog.
	if cfg.YieldFloor >= 0 && p.yielding() {
		p.yield = bus.NewYield(cfg.YieldFloor, cfg.Registry)
		p.yield.Logger = cfg.Logger
		p.intakeC = cfg.Concurrency
		if p.intakeC == 0 {
			p.intakeC = bus.DefaultConcurrency
		}
	}
	rt, err := bus.NewRouter(bus.RouterConfig{Dial: dial, MaxDeliver: cfg.Topology.MaxDeliver, Registry: cfg.Registry,
		Metrics: metrics.Router, Logger: cfg.Logger, Name: cfg.Name + "-router", Concurrency: cfg.Concurrency, MaxKeepAlive: cfg.MaxKeepAlive,
		Yield: p.yield, Partitions: p.topo.Partitions})
	if err != nil {
		return nil, err
	}
	deps := stage.Deps{Log: log, Ladder: cfg.Ladder, Now: cfg.Now, Metrics: metrics.Stage, Borrowers: log, Codes: log,
		Placements: log, Turns: &stage.Turns{}, Facts: &loanlog.Intake{Log: log}}
	for _, s := range cfg.Parts.Stages {
		rt.Handle(s.ConsumerSpec(), stageHandler(s, deps))
	}
	if cfg.Parts.Intake {
		p.Ingestor.Register(rt)
	}
	if cfg.Parts.Dispatch {
		(&dispatch.Dispatcher{JS: rt.JetStream(), Ladder: cfg.Ladder}).Register(rt)
	}
	if cfg.Parts.Feed {
		f := &feed.Feed{JS: rt.JetStream(), Log: log, Topology: cfg.Topology, Ladder: cfg.Ladder}
		f.Register(rt)
		(&outcome.Recorder{Log: log, Lender: p.Ingestor, Feed: f}).Register(rt)
	}
	if cfg.Parts.Notifier != nil {
		cfg.Parts.Notifier.Register(rt)
	}
	p.router = rt
	return p, nil
}

// stageHandler is the transport side of a stage: decode the loan-log
// message and hand it to the engine; a rejected trigger is dead-lettered.
func stageHandler(s stage.Stage, d stage.Deps) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		addr, ev, err := bus.DecodeLoan(msg)
		if err != nil {
			return err
		}
		// The trigger is in the loan's log: a read that does not reach it
		// came from a lagging replica and must not be decided on.
		seq, _ := strconv.ParseUint(msg.Metadata.Get(bus.MetaStreamSeq), 10, 64)
		err = s.Handle(msg.Context(), d, addr.Tenant, addr.Loan, seq, ev)
		if errors.Is(err, stage.ErrRejected) {
			return bus.Permanent(err)
		}
		return err
	}
}

// Run runs the process's consumers until ctx ends, then closes its connections.
func (p *Pipeline) Run(ctx context.Context) error {
	defer p.Conn.Close()
	if p.lenderConn != nil {
		defer p.lenderConn.Close()
	}
	if p.router == nil {
		<-ctx.Done()
		return nil
	}
	if p.yield != nil {
		var intake []string
		for _, c := range p.topo.Partitions.Spread([]topology.ConsumerSpec{topology.Intake}) {
			intake = append(intake, c.Name)
		}
		go p.yield.Watch(ctx, p.js, topology.Intake.Stream, intake, p.intakeC, 100*time.Millisecond)
	}
	return p.router.Run(ctx)
}

// Running is closed once every consumer is subscribed (at once for a
// process without consumers).
func (p *Pipeline) Running() <-chan struct{} {
	if p.router == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return p.router.Running()
}

// rejecter records on the rejections stream why intake refused a lender's
// event, once per intake message (a redelivery is a duplicate there).
func rejecter(js jetstream.JetStream) func(context.Context, ingest.Rejection) error {
	return func(ctx context.Context, r ingest.Rejection) error {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		m := nats.NewMsg(topology.RejectionSubject(r.Tenant, r.Loan))
		m.Data = b
		m.Header.Set(jetstream.MsgIDHeader, "rejected-"+strconv.FormatUint(r.IntakeSeq, 10))
		_, err = js.PublishMsg(ctx, m)
		return err
	}
}
