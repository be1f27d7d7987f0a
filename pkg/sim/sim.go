package sim

import (
	"container/heap"
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/opendunning/dunning/pkg/bus"
	"github.com/opendunning/dunning/pkg/codec"
	"github.com/opendunning/dunning/pkg/loanlog"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/stage"
	"github.com/opendunning/dunning/pkg/topology"
	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"
)

// Config describes a simulation.
type Config struct {
	Loans  int
	Seed   uint64
	Mix    Mix
	Tenant string
	// Ladder is the policy and calendar the pipeline runs with; the oracle uses the same.
	Ladder policy.Ladder
	// Spread staggers due times over this window, starting Lead after the run begins.
	Spread, Lead time.Duration
	// Settle is how long to wait past the last expected decision.
	Settle time.Duration
	// Progress, if set, receives a progress bar.
	Progress io.Writer
	// Malformed is the fraction of loans that also get one malformed lender
	// event (garbage, bad JSON, an invalid field); each must be dead-lettered
	// while the valid events still match the oracle.
	Malformed float64
	// During, if set, runs while lender events are being published and steps
	// are due (fault injection); its context ends when the last step of the
	// ladder is due, and the run checks the logs once it has returned.
	During func(ctx context.Context)
	// Consumers are the ones running, whose backlog must be empty before
	// the logs are compared; nil means the intake and the five stages.
	Consumers []topology.ConsumerSpec
}

// Loan is one simulated loan and what the oracle expects of it.
type Loan struct {
	ID        string
	Behaviour string
	Amount    int64
	DueAt     time.Time
	Payments  []policy.Payment
	Want      Outcome
}

// Outcome is a loan's final state and its decisions by kind.
type Outcome struct {
	Final  string
	Counts map[string]int
	// Repeats counts decisions of a kind already made for the same step.
	Repeats int
	// Tasks counts the contact tasks the gate released (not compared: it
	// follows from the decisions, which are).
	Tasks int
}

func (o Outcome) equal(p Outcome) bool {
	if o.Final != p.Final || o.Repeats != p.Repeats || len(o.Counts) != len(p.Counts) {
		return false
	}
	for k, v := range o.Counts {
		if p.Counts[k] != v {
			return false
		}
	}
	return true
}

// moot reports whether o, the pipeline's outcome, differs from want, the
// oracle's, only by decisions a payment made moot: a loan that paid, with
// the same final state, no decision the oracle does not expect and none
// repeated, some of the oracle's missing. The oracle decides every step on
// time; a pipeline late to a step that a payment reached first rightly
// skips it (contacting a borrower who paid is what must not happen).
func (o Outcome) moot(want Outcome, paid bool) bool {
	if !paid || o.Final != want.Final || o.Repeats != 0 || o.equal(want) {
		return false
	}
	for k, v := range o.Counts {
		if v > want.Counts[k] {
			return false
		}
	}
	return true
}

// compared leaves out step cancellations: the pipeline records them when a
// pending step is withdrawn, the oracle only withdraws it.
func compared(k policy.DecisionKind) bool { return k != policy.KindStepCancelled }

// outcome summarises decisions in order: final state, counts by kind, and
// repeats of a kind for the same step.
func outcome(ds []policy.Decision) Outcome {
	o := Outcome{Final: "never_overdue", Counts: map[string]int{}}
	seen := map[string]bool{}
	for _, d := range ds {
		if !compared(d.Kind) {
			continue
		}
		o.Counts[d.Kind.String()]++
		k := d.Kind.String() + "/" + d.Ctx.StepID
		if d.Kind.Gate() {
			// The gate's records are per task: one task held twice until
			// different times is not a repeat, released twice is.
			for _, t := range d.Tasks {
				k += "/" + t.ID
			}
			if d.Kind == policy.KindContactHeld {
				k += "/" + d.HeldUntil.String()
			}
		}
		if d.Kind == policy.KindContactReleased {
			o.Tasks += len(d.Tasks)
		}
		if seen[k] {
			o.Repeats++
		} else {
			seen[k] = true
		}
		switch {
		case d.Kind.Gate():
			// Where a case stands is the ladder's, not the gate's.
			continue
		}
		switch d.Kind {
		case policy.KindCaseClosed:
			o.Final = "closed_" + d.CloseReason.String()
		case policy.KindLegalReferred:
			o.Final = "legal_referral"
		default:
			o.Final = "open_" + d.Ctx.Stage.String()
		}
	}
	return o
}

// Plan draws the portfolio from the seed and computes the oracle.
func Plan(cfg Config, start time.Time) []Loan {
	r := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	loans := make([]Loan, cfg.Loans)
	horizon := cfg.Ladder.Policy.ReferralDPD() + 1
	for i := range loans {
		b := cfg.Mix.pick(r)
		amount := int64(10000 + r.IntN(490000))
		due := start.Add(cfg.Lead)
		if cfg.Spread > 0 {
			due = due.Add(time.Duration(r.Int64N(int64(cfg.Spread))))
		}
		at := func(dpd int) time.Time {
			return cfg.Ladder.Calendar.DPDStart(due, nil, dpd).Add(cfg.Ladder.Calendar.Day / 2)
		}
		l := Loan{ID: fmt.Sprintf("sim-%d-%d", cfg.Seed, i), Behaviour: b.Name(), Amount: amount, DueAt: due,
			Payments: b.Payments(r, amount, cfg.Ladder.Policy, at)}
		in := policy.InstallmentDue{ID: "1", Amount: policy.Money{Currency: "CNY", Minor: amount}, DueAt: due, Zone: "Asia/Shanghai"}
		l.Want = outcome(cfg.Ladder.SimulateLoan(policy.LoanKey(cfg.Tenant, l.ID), in, l.Payments, horizon))
		loans[i] = l
	}
	return loans
}

// Report is what a run measured.
type Report struct {
	Loans   int
	Matched int
	// Moot counts loans that differ from the oracle only by steps a payment
	// made moot (Outcome.moot): the pipeline reached the step after the
	// payment and rightly skipped it. Not among Matched nor Mismatches.
	Moot            int
	Mismatches      []string
	ByFinal         map[string][2]int // final state -> expected, actual
	Decisions       int
	Elapsed         time.Duration
	DecisionsPerSec float64
	LatencyP50      time.Duration
	LatencyP99      time.Duration
	// FireP50/P99: how late the server published steps after their due time.
	FireP50, FireP99 time.Duration
	MessagesPerLoan  float64
	PeakRSSBytes     int64
	PublishedEvents  int
	// MalformedSent bad events were published; DeadLettered of them reached
	// the dead-letter stream.
	MalformedSent, DeadLettered int
	// Tasks counts the contact tasks the gate released in the logs: what
	// dispatch must have sent on.
	Tasks int
	// Lost counts decisions the oracle expects and no log holds, Unexpected
	// decisions it does not expect, by kind; Duplicates, decisions a log
	// holds twice for the same step or trigger (a contact made twice).
	Lost, Unexpected, Duplicates int
	// PublishRetries counts lender-event publishes retried (the server was
	// unreachable); the retries carry the same message ID.
	PublishRetries int
	// PublishP50/P99: how long a lender event took to be acknowledged;
	// RecordedP50/P99: from a payment's time to its place in the loan's log.
	PublishP50, PublishP99, RecordedP50, RecordedP99 time.Duration
	// SentLateP50/P99: how long after its time the simulated lender had a
	// lender event acknowledged (the simulator's own lag on an overloaded
	// machine, and the publish); AfterAckP50/P99: from a payment's
	// acknowledgement to its place in the loan's log (the pipeline's part
	// of RecordedP50/P99; 0 when the log had it before the ack arrived).
	SentLateP50, SentLateP99, AfterAckP50, AfterAckP99 time.Duration
	// RecordedMax and FireMax are the worst payment recording and step
	// firing delays of any loan, matching or not (see Overloaded).
	RecordedMax, FireMax time.Duration
	// OutsideWindow counts released tasks released outside the borrower's
	// window, in local time computed here from the due time and the day
	// (hour h of day n is due + n·day + h·day/24), not with the gate's
	// code. It must be 0.
	OutsideWindow int
	// ContactsAfterPayment counts contacts released in a loan's log after a
	// payment the lender had published (the intake acknowledged it) before
	// the release, but which stands after it in the log: a payment that
	// waited behind the pipeline's own work. It must be 0.
	ContactsAfterPayment int
	// AfterPaymentMax is the longest a contact counted there was released
	// after the payment's acknowledgement: a gate that saw the intake
	// just before the payment came leaves milliseconds; a payment that
	// waited behind the pipeline's work, seconds.
	AfterPaymentMax time.Duration
	// DeadLetterReasons counts the run's dead letters by consumer, class
	// and reason: the malformed events, and anything else.
	DeadLetterReasons map[string]int
	// CapViolations counts loan-days with more calls released than the
	// pack's per-day cap on connected calls allows (cn: 3): the simulation
	// reports no outcomes, so every released call counts as connected. It
	// must be 0.
	CapViolations int
}

// Overloaded reports whether the run's timing, rather than the pipeline's
// decisions, can explain a mismatch: a payment half a day into a DPD that
// reached the loan's log half a day late or more may have landed after the
// next day's step, and a release step that fired half a day late (the
// slack between a slot at 08:00-10:00 and a window closing at 22:00) holds
// its contact again to the next morning. A run that is not overloaded and
// still differs from the oracle has a wrong decision.
func (r Report) Overloaded(day time.Duration) bool {
	return r.RecordedMax >= day/2 || r.FireMax >= day/2
}

// String renders the report as a table.
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "loans %d, matching the oracle %d, differing only by steps a payment made moot %d, mismatches %d\n", r.Loans, r.Matched, r.Moot, len(r.Mismatches))
	finals := make([]string, 0, len(r.ByFinal))
	for k := range r.ByFinal {
		finals = append(finals, k)
	}
	slices.Sort(finals)
	fmt.Fprintf(&b, "%-32s %10s %10s\n", "final state", "oracle", "pipeline")
	for _, k := range finals {
		fmt.Fprintf(&b, "%-32s %10d %10d\n", k, r.ByFinal[k][0], r.ByFinal[k][1])
	}
	fmt.Fprintf(&b, "decisions %d in %s: %.0f/s; steps fired late by p50 %s, p99 %s; decided after due p50 %s, p99 %s; %.1f messages per loan; peak RSS %d MiB\n",
		r.Decisions, r.Elapsed.Round(time.Millisecond), r.DecisionsPerSec, r.FireP50, r.FireP99, r.LatencyP50, r.LatencyP99, r.MessagesPerLoan, r.PeakRSSBytes>>20)
	fmt.Fprintf(&b, "lender events published %d (acknowledged in p50 %s, p99 %s; retried %d); payments in the loan log after their time p50 %s, p99 %s\n",
		r.PublishedEvents, r.PublishP50.Round(time.Microsecond), r.PublishP99.Round(time.Microsecond), r.PublishRetries,
		r.RecordedP50.Round(time.Microsecond), r.RecordedP99.Round(time.Microsecond))
	fmt.Fprintf(&b, "lender events acknowledged after their time p50 %s, p99 %s; payments in the loan log after their acknowledgement p50 %s, p99 %s\n",
		r.SentLateP50.Round(time.Microsecond), r.SentLateP99.Round(time.Microsecond), r.AfterAckP50.Round(time.Microsecond), r.AfterAckP99.Round(time.Microsecond))
	fmt.Fprintf(&b, "worst delays: a payment reached its loan's log %s after its time, a step fired %s after its due time\n",
		r.RecordedMax.Round(time.Millisecond), r.FireMax.Round(time.Millisecond))
	fmt.Fprintf(&b, "decisions lost %d, unexpected %d, duplicated %d\n", r.Lost, r.Unexpected, r.Duplicates)
	fmt.Fprintf(&b, "contact tasks released %d, outside the borrower's window %d; loan-days over the daily call cap %d; contacts released after a payment the lender had published %d (the latest %s after its acknowledgement)\n",
		r.Tasks, r.OutsideWindow, r.CapViolations, r.ContactsAfterPayment, r.AfterPaymentMax.Round(time.Microsecond))
	if r.MalformedSent > 0 {
		fmt.Fprintf(&b, "malformed events sent %d, dead-lettered %d\n", r.MalformedSent, r.DeadLettered)
	}
	reasons := slices.Collect(maps.Keys(r.DeadLetterReasons))
	slices.SortFunc(reasons, func(a, b string) int { return r.DeadLetterReasons[b] - r.DeadLetterReasons[a] })
	for i, k := range reasons {
		if i == 6 {
			fmt.Fprintf(&b, "dead letters: ... %d more reasons\n", len(reasons)-6)
			break
		}
		fmt.Fprintf(&b, "dead letters: %d %s\n", r.DeadLetterReasons[k], k)
	}
	for i, m := range r.Mismatches {
		if i == 10 {
			fmt.Fprintf(&b, "... %d more\n", len(r.Mismatches)-10)
			break
		}
		fmt.Fprintln(&b, "mismatch:", m)
	}
	return b.String()
}

// Run plays the portfolio through a running pipeline: installments and
// payments are published on the NATS intake as a lender would, at their
// accelerated times; then every loan's log is compared with the oracle.
func Run(ctx context.Context, cfg Config, js jetstream.JetStream, log *loanlog.Log) (Report, error) {
	start := time.Now()
	loans := Plan(cfg, start)
	var published, retries atomic.Int64
	var pubMu sync.Mutex
	var pubLat []time.Duration      // how long each lender event took to publish, retries included
	var sentLate []time.Duration    // how long after its time each was acknowledged
	acked := map[string]time.Time{} // loan and payment ID -> when the intake acknowledged the repayment
	// A lender retries a publish that got no acknowledgement (the server
	// restarting) with the same message ID, which the intake stream dedupes.
	send := func(ev *dunningv1.LenderEvent, tenant, loan, id string, at time.Time) error {
		data, err := proto.Marshal(ev)
		if err != nil {
			return err
		}
		// Retry only within the intake's 2-minute dedup window.
		t0 := time.Now()
		giveUp := t0.Add(90 * time.Second)
		for {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err = js.Publish(pctx, topology.IntakeSubject(tenant, loan), data, jetstream.WithMsgID("sim-"+tenant+"-"+loan+"-"+id))
			cancel()
			if err == nil {
				break
			}
			if ctx.Err() != nil || time.Now().After(giveUp) {
				return fmt.Errorf("publishing for %s: %w", loan, err)
			}
			retries.Add(1)
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
		published.Add(1)
		pubMu.Lock()
		pubLat = append(pubLat, time.Since(t0))
		sentLate = append(sentLate, max(time.Since(at), 0))
		if r := ev.GetRepaymentReceived(); r != nil {
			acked[loan+"/"+r.GetPaymentId()] = time.Now()
		}
		pubMu.Unlock()
		return nil
	}
	// Malformed events first; then each installment a day before it falls
	// due (as a lender announces its schedule) and each payment at its time,
	// from one timer heap. Announcing all installments at once would queue
	// early payments behind the burst on the intake.
	dlqBefore, err := deadLettered(ctx, js, log.Parts)
	if err != nil {
		return Report{}, err
	}
	dlqSeq, err := lastSeq(ctx, js, topology.StreamDLQ)
	if err != nil {
		return Report{}, err
	}
	malformed, err := sendMalformed(ctx, cfg, loans, js)
	if err != nil {
		return Report{}, err
	}
	cal := cfg.Ladder.Calendar
	h := &events{}
	for i, l := range loans {
		heap.Push(h, event{at: l.DueAt.Add(-cal.Day), loan: i, pay: -1})
		for j, p := range l.Payments {
			at := cal.DPDStart(l.DueAt, nil, p.DPD).Add(cal.Day / 2)
			heap.Push(h, event{at: at, loan: i, pay: j})
		}
	}
	last := start
	for _, l := range loans {
		end := cal.DPDStart(l.DueAt, nil, cfg.Ladder.Policy.ReferralDPD())
		if end.After(last) {
			last = end
		}
	}
	duringDone := make(chan struct{})
	if cfg.During != nil {
		dctx, cancel := context.WithDeadline(ctx, last)
		go func() {
			defer close(duringDone)
			defer cancel()
			cfg.During(dctx)
		}()
		// On every return, faults have stopped: nothing is killed after Run.
		defer func() { cancel(); <-duringDone }()
	} else {
		close(duringDone)
	}
	// Up to 1,024 publishes in flight, as a lender platform's many
	// producers would have. With 64, at 2,500 loans a second on two
	// overloaded cores the simulated lender itself had its events
	// acknowledged 3.6 s (p50) after their time, which the report counted
	// as the pipeline's lateness and which made promises arrive after the
	// date they promised (2026-12-03).
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(1024)
	total := h.Len()
	done := 0
	for h.Len() > 0 {
		e := heap.Pop(h).(event)
		select {
		case <-gctx.Done():
			return Report{}, gctx.Err()
		case <-time.After(time.Until(e.at)):
		}
		done++
		progress(cfg.Progress, "events", done, total)
		l := loans[e.loan]
		if e.pay < 0 {
			g.Go(func() error {
				return send(&dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_InstallmentDue{InstallmentDue: &dunningv1.InstallmentDue{
					TenantId: cfg.Tenant, LoanId: l.ID, InstallmentId: "1", Amount: &dunningv1.Money{Currency: "CNY", MinorUnits: l.Amount},
					DueAt: timestamppb.New(l.DueAt), TimeZone: "Asia/Shanghai", ContactRef: "sim"}}}, cfg.Tenant, l.ID, "due", e.at)
			})
			continue
		}
		p := l.Payments[e.pay]
		if p.Event != nil {
			ev, err := lenderEvent(cfg.Tenant, l.ID, p.Event)
			if err != nil {
				return Report{}, err
			}
			g.Go(func() error { return send(ev, cfg.Tenant, l.ID, fmt.Sprintf("e%d", e.pay), e.at) })
			continue
		}
		g.Go(func() error {
			return send(&dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_RepaymentReceived{RepaymentReceived: &dunningv1.RepaymentReceived{
				TenantId: cfg.Tenant, LoanId: l.ID, PaymentId: fmt.Sprintf("p%d", e.pay), Amount: &dunningv1.Money{Currency: "CNY", MinorUnits: p.Amount},
				PaidAt: timestamppb.New(e.at)}}}, cfg.Tenant, l.ID, fmt.Sprintf("p%d", e.pay), e.at)
		})
	}
	if err := g.Wait(); err != nil {
		return Report{}, err
	}
	// The last step is due at last; the server fires it within its 250 ms
	// tick. Then wait until the pipeline has nothing left to do, so that a
	// decision made late (a redelivery after a fault) is in the logs before
	// they are compared.
	select {
	case <-ctx.Done():
		return Report{}, ctx.Err()
	case <-time.After(time.Until(last.Add(500 * time.Millisecond))):
	}
	<-duringDone
	consumers := cfg.Consumers
	if consumers == nil {
		consumers = []topology.ConsumerSpec{topology.Intake}
		for _, st := range stage.Table {
			consumers = append(consumers, st.ConsumerSpec())
		}
		consumers = log.Parts.Spread(consumers)
	}
	if err := waitQuiet(ctx, js, consumers, last.Add(cfg.Settle), cfg.Progress); err != nil {
		return Report{}, err
	}
	r, err := check(ctx, cfg, loans, log, start, last.Add(cfg.Settle), int(published.Load()), acked)
	if err != nil {
		return r, err
	}
	r.MalformedSent, r.PublishRetries = malformed, int(retries.Load())
	r.PublishP50, r.PublishP99, _ = percentiles(pubLat)
	r.SentLateP50, r.SentLateP99, _ = percentiles(sentLate)
	if malformed > 0 {
		deadline := time.Now().Add(cfg.Settle)
		for {
			if r.DeadLettered, err = deadLettered(ctx, js, log.Parts); err != nil || r.DeadLettered-dlqBefore >= malformed || time.Now().After(deadline) {
				r.DeadLettered -= dlqBefore
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if err == nil {
		r.DeadLetterReasons, err = deadLetterReasons(ctx, js, dlqSeq)
	}
	return r, err
}

// deadLetterReasons groups the dead letters written after seq by consumer,
// class and reason (its first 100 characters).
func deadLetterReasons(ctx context.Context, js jetstream.JetStream, seq uint64) (map[string]int, error) {
	s, err := js.Stream(ctx, topology.StreamDLQ)
	if err != nil {
		return nil, err
	}
	last := s.CachedInfo().State.LastSeq
	out := map[string]int{}
	if last <= seq {
		return out, nil
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: seq + 1})
	if err != nil {
		return nil, err
	}
	for {
		m, err := c.Next(jetstream.FetchMaxWait(2 * time.Second))
		if err != nil {
			return out, fmt.Errorf("reading the dead letters: %w", err)
		}
		h := m.Headers()
		reason := h.Get(bus.HeaderDLQReason)
		if len(reason) > 100 {
			reason = reason[:100]
		}
		out[h.Get(bus.HeaderDLQConsumer)+" "+h.Get(bus.HeaderDLQClass)+": "+reason]++
		md, err := m.Metadata()
		if err != nil || md.Sequence.Stream >= last {
			return out, err
		}
	}
}

// lenderEvent wraps a borrower's-side event (a promise, a plan, a hold
// placed or released) in the envelope a lender publishes.
func lenderEvent(tenant, loan string, ev policy.Event) (*dunningv1.LenderEvent, error) {
	_, m, err := codec.Encode(tenant, loan, ev)
	if err != nil {
		return nil, err
	}
	switch m := m.(type) {
	case *dunningv1.PromiseToPay:
		return &dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_PromiseToPay{PromiseToPay: m}}, nil
	case *dunningv1.RepaymentPlan:
		return &dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_RepaymentPlan{RepaymentPlan: m}}, nil
	case *dunningv1.HoldPlaced:
		return &dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_HoldPlaced{HoldPlaced: m}}, nil
	case *dunningv1.HoldReleased:
		return &dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_HoldReleased{HoldReleased: m}}, nil
	}
	return nil, fmt.Errorf("the simulation does not publish %T", ev)
}

// waitQuiet waits until none of the consumers has a message to deliver or
// one delivered and not yet acknowledged, on two looks 200 ms apart (a step
// the server publishes between them shows on the second), or until deadline.
func waitQuiet(ctx context.Context, js jetstream.JetStream, consumers []topology.ConsumerSpec, deadline time.Time, out io.Writer) error {
	quietBefore := false
	var told time.Time
	for {
		busy, err := backlog(ctx, js, consumers)
		if out != nil && busy != "" && time.Since(told) >= 5*time.Second {
			told = time.Now()
			fmt.Fprintf(out, "waiting for the pipeline: %s\n", busy)
		}
		if err == nil && busy == "" {
			if quietBefore {
				return nil
			}
			quietBefore = true
		} else {
			quietBefore = false
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("waiting for the pipeline to finish: %w", err)
			}
			return nil // compared as it stands: the mismatches will say what is missing
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// backlog names the first consumer with work outstanding, "" when none has.
func backlog(ctx context.Context, js jetstream.JetStream, consumers []topology.ConsumerSpec) (string, error) {
	for _, c := range consumers {
		// Looking a consumer up fetches its info: no second request.
		cons, err := js.Consumer(ctx, c.Stream, c.Name)
		if err != nil {
			return "", err
		}
		if ci := cons.CachedInfo(); ci.NumPending > 0 || ci.NumAckPending > 0 {
			return fmt.Sprintf("%s (%d pending, %d unacknowledged)", c.Name, ci.NumPending, ci.NumAckPending), nil
		}
	}
	return "", nil
}

// sendMalformed publishes one bad lender event for cfg.Malformed of the loans.
func sendMalformed(ctx context.Context, cfg Config, loans []Loan, js jetstream.JetStream) (int, error) {
	if cfg.Malformed <= 0 {
		return 0, nil
	}
	r := rand.New(rand.NewPCG(cfg.Seed+1, cfg.Seed))
	bad := []struct {
		ct   string
		body []byte
	}{
		{"", []byte{0xff, 0xfe, 0x01}},
		{"application/json", []byte(`{"installmentDue": {"tenantId": `)},
		{"application/json", []byte(`{"repaymentReceived": {"tenantId": "x", "paymentId": "p", "amount": {"currency": "CNY", "minorUnits": "-5"}}}`)},
		{"application/json", []byte(`{"installmentDue": {"amout": 1}}`)},
	}
	n := 0
	for _, l := range loans {
		if r.Float64() >= cfg.Malformed {
			continue
		}
		b := bad[r.IntN(len(bad))]
		m := nats.NewMsg(topology.IntakeSubject(cfg.Tenant, l.ID))
		m.Data = b.body
		if b.ct != "" {
			m.Header.Set("Content-Type", b.ct)
		}
		if _, err := js.PublishMsg(ctx, m); err != nil {
			return n, fmt.Errorf("publishing a malformed event: %w", err)
		}
		n++
	}
	return n, nil
}

// deadLettered counts the intake's dead letters.
func lastSeq(ctx context.Context, js jetstream.JetStream, stream string) (uint64, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, err
	}
	return s.CachedInfo().State.LastSeq, nil
}

func deadLettered(ctx context.Context, js jetstream.JetStream, parts topology.Partitions) (int, error) {
	s, err := js.Stream(ctx, topology.StreamDLQ)
	if err != nil {
		return 0, err
	}
	// Each partition's intake consumer dead-letters on its own subject.
	n := 0
	for _, c := range parts.Spread([]topology.ConsumerSpec{topology.Intake}) {
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(topology.DLQSubject(c.Name)))
		if err != nil {
			return 0, err
		}
		n += int(info.State.Subjects[topology.DLQSubject(c.Name)])
	}
	return n, nil
}

// check reads every loan's log until it matches the oracle or the deadline passes.
func check(ctx context.Context, cfg Config, loans []Loan, log *loanlog.Log, start, deadline time.Time, published int, acked map[string]time.Time) (Report, error) {
	got := make([]Outcome, len(loans))
	msgs := make([]int, len(loans))
	outside, overCap, afterPay := make([]int, len(loans)), make([]int, len(loans)), make([]int, len(loans))
	afterPayMax := make([]time.Duration, len(loans))
	from, to, _, _ := cfg.Ladder.Policy.Contact.Pack.Window()
	callsPerDay := 0 // no cap
	if p := cfg.Ladder.Policy.Contact.Pack; p != nil {
		for _, r := range p.Rules {
			if r.Cap != nil && r.Cap.Channel == policy.ChannelPhone.String() && r.Cap.Days == 1 {
				callsPerDay = r.Cap.Max
			}
		}
	}
	var lat, fire []time.Duration
	recs := make([][]time.Duration, len(loans))
	afterAck := make([][]time.Duration, len(loans))
	fires := make([][]time.Duration, len(loans))
	var latMu sync.Mutex
	var lastDecision time.Time
	pending := make([]int, len(loans))
	for i := range pending {
		pending[i] = i
	}
	gates := make([]string, len(loans)) // each loan's gate records, for a mismatch's line
	var readErr error
	for {
		var next []int
		var mu sync.Mutex
		readErr = nil
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(32)
		for _, i := range pending {
			g.Go(func() error {
				entries, _, err := log.Read(gctx, cfg.Tenant, loans[i].ID)
				if err != nil {
					// The server may be restarting: read again next round,
					// and report the error if the deadline passes.
					mu.Lock()
					next = append(next, i)
					readErr = fmt.Errorf("reading %s: %w", loans[i].ID, err)
					mu.Unlock()
					return nil
				}
				var ds []policy.Decision
				fired := map[string]time.Time{}
				var l, f, rec, aa []time.Duration
				var lastAt time.Time
				var out, late int
				var lateBy time.Duration
				calls := map[int]int{}   // released calls per simulated day
				var releases []time.Time // when each contact so far was released
				for _, e := range entries {
					switch ev := e.Event.(type) {
					case policy.Repayment:
						rec = append(rec, e.Time.Sub(ev.PaidAt))
						// A contact released before this payment in the log
						// but after the lender had it acknowledged.
						if at, ok := acked[loans[i].ID+"/"+ev.PaymentID]; ok {
							aa = append(aa, max(e.Time.Sub(at), 0))
							for _, r := range releases {
								if r.After(at) {
									late++
									lateBy = max(lateBy, r.Sub(at))
								}
							}
						}
					case policy.StepFired:
						fired[ev.Step.ID] = ev.Step.At
						f = append(f, e.Time.Sub(ev.Step.At))
					case policy.Decision:
						ds = append(ds, ev)
						if ev.Kind == policy.KindContactReleased {
							releases = append(releases, e.Time)
							for _, t := range ev.Tasks {
								if t.Channel == policy.ChannelPhone {
									calls[int(ev.Ctx.DecidedAt.Sub(loans[i].DueAt)/cfg.Ladder.Calendar.Day)]++
								}
							}
							if wall := localWall(loans[i].DueAt, cfg.Ladder.Calendar.Day, ev.Ctx.DecidedAt); wall < from || wall >= to {
								out += len(ev.Tasks)
							}
						}
						if at, ok := fired[ev.Ctx.StepID]; ok {
							l = append(l, ev.Ctx.DecidedAt.Sub(at))
						}
						lastAt = ev.Ctx.DecidedAt
					}
				}
				o := outcome(ds)
				mu.Lock()
				defer mu.Unlock()
				got[i], msgs[i], recs[i], fires[i], afterAck[i] = o, len(entries), rec, f, aa
				gates[i] = gateRecords(ds, loans[i].DueAt, cfg.Ladder.Calendar.Day)
				outside[i], afterPay[i], afterPayMax[i] = out, late, lateBy
				overCap[i] = 0
				for _, n := range calls {
					if callsPerDay > 0 && n > callsPerDay {
						overCap[i]++
					}
				}
				if !o.equal(loans[i].Want) {
					next = append(next, i)
					return nil
				}
				latMu.Lock()
				lat = append(lat, l...)
				fire = append(fire, f...)
				if lastAt.After(lastDecision) {
					lastDecision = lastAt
				}
				latMu.Unlock()
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return Report{}, err
		}
		progress(cfg.Progress, "checked", len(loans)-len(next), len(loans))
		pending = next
		if len(pending) == 0 || time.Now().After(deadline) {
			break
		}
		if ctx.Err() != nil {
			return Report{}, ctx.Err()
		}
		time.Sleep(200 * time.Millisecond)
	}
	if readErr != nil {
		return Report{}, readErr
	}
	r := Report{Loans: len(loans), ByFinal: map[string][2]int{}, PublishedEvents: published}
	for i, l := range loans {
		e := r.ByFinal[l.Want.Final]
		e[0]++
		r.ByFinal[l.Want.Final] = e
		a := r.ByFinal[got[i].Final]
		a[1]++
		r.ByFinal[got[i].Final] = a
		for _, n := range got[i].Counts {
			r.Decisions += n
		}
		for k, want := range l.Want.Counts {
			r.Lost += max(want-got[i].Counts[k], 0)
		}
		for k, n := range got[i].Counts {
			r.Unexpected += max(n-l.Want.Counts[k], 0)
		}
		r.Duplicates += got[i].Repeats
		r.OutsideWindow += outside[i]
		r.ContactsAfterPayment += afterPay[i]
		r.AfterPaymentMax = max(r.AfterPaymentMax, afterPayMax[i])
		r.CapViolations += overCap[i]
		r.Tasks += got[i].Tasks
		if got[i].equal(l.Want) {
			r.Matched++
		} else if got[i].moot(l.Want, len(recs[i]) > 0) {
			r.Moot++
		} else {
			r.Mismatches = append(r.Mismatches, fmt.Sprintf("%s (%s, pays %v): want %v, got %v; gate: %s", l.ID, l.Behaviour, l.Payments, l.Want, got[i], gates[i]))
		}
	}
	total := 0
	for _, m := range msgs {
		total += m
	}
	r.MessagesPerLoan = float64(total) / float64(max(len(loans), 1))
	if !lastDecision.IsZero() {
		r.Elapsed = lastDecision.Sub(start)
	}
	if r.Elapsed > 0 {
		r.DecisionsPerSec = float64(r.Decisions) / r.Elapsed.Seconds()
	}
	r.LatencyP50, r.LatencyP99, _ = percentiles(lat)
	r.FireP50, r.FireP99, _ = percentiles(fire)
	r.RecordedP50, r.RecordedP99, r.RecordedMax = percentiles(slices.Concat(recs...))
	r.AfterAckP50, r.AfterAckP99, _ = percentiles(slices.Concat(afterAck...))
	for _, f := range fires {
		if len(f) > 0 {
			r.FireMax = max(r.FireMax, slices.Max(f))
		}
	}
	_, r.PeakRSSBytes = Resident()
	return r, nil
}

// localWall is the borrower's local wall time at t under an accelerated
// day: hour h of DPD n is due + n·day + h·day/24. (The simulation's loans
// are all under accelerated days; a real day is the zone's wall clock.)
func localWall(due time.Time, day time.Duration, t time.Time) time.Duration {
	since := t.Sub(due) % day
	if since < 0 {
		since += day
	}
	return time.Duration(float64(since) * float64(24*time.Hour) / float64(day))
}

// Resident returns this process's resident set now and at its high-water
// mark, in bytes (the embedded server's memory included when it runs in
// process), from /proc; zeros where /proc is not available.
func Resident() (now, peak int64) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		field, v, _ := strings.Cut(line, ":")
		var kb int64
		fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
		switch field {
		case "VmRSS":
			now = kb << 10
		case "VmHWM":
			peak = kb << 10
		}
	}
	return now, peak
}

func progress(w io.Writer, what string, done, total int) {
	if w == nil || total == 0 {
		return
	}
	// A terminal gets a bar redrawn in place every 1 %; a log file a line every 10 %.
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	step := max(total/100, 1)
	if !tty {
		step = max(total/10, 1)
	}
	if done != total && done%step != 0 {
		return
	}
	const width = 40
	n := done * width / total
	bar := fmt.Sprintf("%-9s [%s%s] %d/%d", what, strings.Repeat("#", n), strings.Repeat(".", width-n), done, total)
	switch {
	case !tty:
		fmt.Fprintln(w, bar)
	case done == total:
		fmt.Fprintf(w, "\r%s\n", bar)
	default:
		fmt.Fprintf(w, "\r%s", bar)
	}
}

// event is a payment due at a time.
type event struct {
	at        time.Time
	loan, pay int
}

type events []event

func (h events) Len() int           { return len(h) }
func (h events) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h events) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *events) Push(x any)        { *h = append(*h, x.(event)) }
func (h *events) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// gateRecords renders a loan's gate records compactly, times in simulated
// days after the due time: what a mismatch needs to be explained.
func gateRecords(ds []policy.Decision, due time.Time, day time.Duration) string {
	days := func(t time.Time) string { return fmt.Sprintf("%.3f", float64(t.Sub(due))/float64(day)) }
	var parts []string
	for _, d := range ds {
		if !d.Kind.Gate() {
			continue
		}
		p := fmt.Sprintf("%s@%s", d.Kind, days(d.Ctx.DecidedAt))
		if d.Kind == policy.KindContactHeld {
			p += fmt.Sprintf("(%s→%s)", d.Rule, days(d.HeldUntil))
		}
		if d.Ctx.StepID != "" {
			p += "[" + d.Ctx.StepID + "]"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, " ")
}

// percentiles sorts ds and returns its median, 99th percentile and maximum
// (zeros when it is empty).
func percentiles(ds []time.Duration) (p50, p99, most time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	slices.Sort(ds)
	return ds[len(ds)/2], ds[len(ds)*99/100], ds[len(ds)-1]
}
