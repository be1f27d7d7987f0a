package stage_test

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/opendunning/dunning/pkg/codec"
	"github.com/opendunning/dunning/pkg/loanlog/memlog"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/stage"
	"github.com/opendunning/dunning/pkg/topology"
)

// These tests run the engine of every stage over the in-memory log, with a
// manual clock and real 24-hour days: no broker, no waiting. A world routes
// each stored message to the stages whose declared consumer filters match
// it, in order, as JetStream does.

const tenant = "acme"

var ctx = context.Background()

type world struct {
	t       *testing.T
	clock   *memlog.Clock
	log     *memlog.Log
	deps    stage.Deps
	metrics *stage.Metrics
	seen    uint64
	due     time.Time
	loc     *time.Location
}

func newWorld(t *testing.T) *world {
	loc, err := policy.LoadZone("Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}
	// Due at 18:00 local on 2026-03-02: DPD n starts at local midnight.
	due := time.Date(2026, 3, 2, 18, 0, 0, 0, loc)
	c := memlog.NewClock(due.Add(-time.Hour))
	l := memlog.New(c.Now)
	m := stage.NewMetrics(prometheus.NewRegistry())
	ladder := policy.Fixed(policy.Ladder{Policy: policy.Default(), Calendar: policy.Calendar{Day: policy.RealDay}})
	return &world{t: t, clock: c, log: l, metrics: m, due: due, loc: loc,
		deps: stage.Deps{Log: l, Ladder: ladder, Now: c.Now, Metrics: m, Placements: l}}
}

// dpd is the start of a DPD, plus an offset into that day.
func (w *world) dpd(n int, into time.Duration) time.Time {
	return policy.Calendar{Day: policy.RealDay}.DPDStart(w.due, w.loc, n).Add(into)
}

// tableFilters are each stage's consumer filters, built once: drain
// matches every message against them.
var tableFilters = func() [][]string {
	out := make([][]string, len(stage.Table))
	for i, s := range stage.Table {
		out[i] = s.ConsumerSpec().Filters
	}
	return out
}()

// drain hands every message stored since the last drain to the stages
// that consume it, until nothing new is stored.
func (w *world) drain() {
	w.t.Helper()
	for {
		msgs := w.log.Since(w.seen)
		if len(msgs) == 0 {
			return
		}
		for _, m := range msgs {
			w.seen = m.Seq
			for i, s := range stage.Table {
				for _, f := range tableFilters[i] {
					if topology.Match(f, m.Subject) {
						if err := s.Handle(ctx, w.deps, m.Tenant, m.Loan, m.Seq, m.Event); err != nil {
							w.t.Fatalf("%s on %s: %v", s.Consumer, m.Subject, err)
						}
					}
				}
			}
		}
	}
}

// until lets time pass to t, firing every timer due on the way.
func (w *world) until(t time.Time) {
	w.t.Helper()
	for {
		next, ok := w.log.NextTimer()
		if !ok || next.After(t) {
			break
		}
		// A timer set in the past (a step whose day went by while a hold
		// was open) fires at once, as the server fires it: time does not
		// go back to it.
		if next.After(w.clock.Now()) {
			w.clock.Set(next)
		}
		w.log.Fire()
		w.drain()
	}
	w.clock.Set(t)
	w.drain()
}

func (w *world) lender(loan, id string, ev policy.Event) {
	w.t.Helper()
	if _, err := w.log.AppendLender(tenant, loan, id, ev); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) installment(loan string, minor int64) {
	w.lender(loan, "1", policy.InstallmentDue{ID: "1", Amount: policy.Money{Currency: "CNY", Minor: minor}, DueAt: w.due, Zone: "Asia/Shanghai", ContactRef: "crm"})
}

func (w *world) pay(loan, id string, minor int64) {
	w.lender(loan, id, policy.Repayment{PaymentID: id, Amount: policy.Money{Currency: "CNY", Minor: minor}, PaidAt: w.clock.Now()})
}

// decisions lists the loan's decisions in order, with their DPD.
func (w *world) decisions(loan string) []string {
	w.t.Helper()
	es, _, err := w.log.Read(ctx, tenant, loan)
	if err != nil {
		w.t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		if d, ok := e.Event.(policy.Decision); ok {
			s := d.Kind.String()
			if d.Kind == policy.KindCaseClosed {
				s += ":" + d.CloseReason.String()
			}
			out = append(out, s)
		}
	}
	return out
}

func (w *world) want(loan string, want ...string) {
	w.t.Helper()
	if got := w.decisions(loan); strings.Join(got, " ") != strings.Join(want, " ") {
		w.t.Errorf("decisions of %s = %v\nwant %v", loan, got, want)
	}
}

func TestNeverPaidClimbsTheLadder(t *testing.T) {
	w := newWorld(t)
	w.installment("L-1", 100000)
	w.drain()
	w.until(w.dpd(100, 0))
	w.want("L-1", "overdue_confirmed", "contact_requested", "contact_released", "escalated", "contact_released", "handed_off", "legal_referred")
	es, _, _ := w.log.Read(ctx, tenant, "L-1")
	for _, e := range es {
		if d, ok := e.Event.(policy.Decision); ok {
			want := map[policy.DecisionKind]int{policy.KindOverdueConfirmed: 1, policy.KindContactRequested: 1,
				policy.KindEscalated: 16, policy.KindHandedOff: 31, policy.KindLegalReferred: 90}[d.Kind]
			if d.Kind == policy.KindContactReleased {
				continue // released at once (a policy without a pack), at its decision's DPD
			}
			if d.Ctx.DPD != want {
				t.Errorf("%s at DPD %d, want %d", d.Kind, d.Ctx.DPD, want)
			}
		}
	}
}

// A payment that cures the loan before a step fires: the case closes, the
// pending step is cancelled with it, and nothing follows.
func TestCureBeforeTheStep(t *testing.T) {
	w := newWorld(t)
	w.installment("L-1", 100000)
	w.drain()
	w.until(w.dpd(10, 9*time.Hour))
	w.pay("L-1", "p1", 100000)
	w.drain()
	w.until(w.dpd(100, 0))
	w.want("L-1", "overdue_confirmed", "contact_requested", "contact_released", "case_closed:cured")
	if next, ok := w.log.NextTimer(); ok {
		t.Errorf("a timer is still pending at %s after the cure", next)
	}
}

// The escalation step fires first and is decided; the payment that lands
// after it closes the case and cancels the handoff.
func TestCureAfterTheStep(t *testing.T) {
	w := newWorld(t)
	w.installment("L-1", 100000)
	w.drain()
	w.until(w.dpd(16, time.Minute))
	w.pay("L-1", "p1", 100000)
	w.drain()
	w.until(w.dpd(100, 0))
	w.want("L-1", "overdue_confirmed", "contact_requested", "contact_released", "escalated", "contact_released", "case_closed:cured")
}

// The payment lands between the escalation stage's read and its write:
// the write is refused, the stage reads again, finds the loan cured and
// contacts nobody. The overdue stage then closes the case.
func TestPaymentRacesTheStep(t *testing.T) {
	w := newWorld(t)
	w.installment("L-1", 100000)
	w.drain()
	w.until(w.dpd(15, 0))
	raced := false
	w.log.BeforeWrite = func(_, loan string) {
		if !raced && w.clock.Now().After(w.dpd(16, -time.Nanosecond)) {
			raced = true
			w.pay(loan, "p1", 100000)
		}
	}
	w.until(w.dpd(100, 0))
	if !raced {
		t.Fatal("the payment never raced a write")
	}
	w.want("L-1", "overdue_confirmed", "contact_requested", "contact_released", "case_closed:cured")
	if c := testutil.ToFloat64(w.metrics.Conflicts.WithLabelValues("escalation")); c != 1 {
		t.Errorf("escalation conflicts = %v, want 1", c)
	}
}

// Another fact (a partial payment) lands between read and write several
// times in a row: each refused write is decided again from the new log,
// and the escalation is committed once, on the remaining balance.
func TestConflictsAreRetried(t *testing.T) {
	w := newWorld(t)
	w.installment("L-1", 100000)
	w.drain()
	w.until(w.dpd(15, 0))
	n := 0
	w.log.BeforeWrite = func(_, loan string) {
		if n < 3 && w.clock.Now().After(w.dpd(16, -time.Nanosecond)) {
			n++
			w.pay(loan, "part-"+string(rune('0'+n)), 100)
		}
	}
	w.until(w.dpd(17, 0))
	w.want("L-1", "overdue_confirmed", "contact_requested", "contact_released", "escalated", "contact_released")
	if c := testutil.ToFloat64(w.metrics.Conflicts.WithLabelValues("escalation")); c != 3 {
		t.Errorf("escalation conflicts = %v, want 3", c)
	}
	es, _, _ := w.log.Read(ctx, tenant, "L-1")
	for _, e := range es {
		if d, ok := e.Event.(policy.Decision); ok && d.Kind == policy.KindEscalated && d.Ctx.Overdue.Minor != 100000-300 {
			t.Errorf("escalated on %s, want the balance after the three partial payments", d.Ctx.Overdue)
		}
	}
}

// A read served behind the trigger (a lagging replica) is not decided on:
// the engine reads again until it reaches the trigger.
func TestStaleReadIsReadAgain(t *testing.T) {
	w := newWorld(t)
	w.installment("L-1", 100000)
	w.drain()
	w.log.StaleReads = 3
	w.until(w.dpd(2, 0))
	w.want("L-1", "overdue_confirmed", "contact_requested", "contact_released")
	if w.log.StaleReads != 0 {
		t.Errorf("%d stale reads left unread", w.log.StaleReads)
	}
}

// The same trigger handled twice (a redelivery) adds nothing the second time.
func TestRedeliveryAddsNothing(t *testing.T) {
	w := newWorld(t)
	w.installment("L-1", 100000)
	w.drain()
	w.until(w.dpd(16, time.Minute))
	msgs := w.log.Since(0)
	for _, m := range msgs {
		for _, s := range stage.Table {
			for _, f := range s.ConsumerSpec().Filters {
				if topology.Match(f, m.Subject) {
					if err := s.Handle(ctx, w.deps, m.Tenant, m.Loan, m.Seq, m.Event); err != nil {
						t.Fatalf("redelivered %s: %v", m.Subject, err)
					}
				}
			}
		}
	}
	w.want("L-1", "overdue_confirmed", "contact_requested", "contact_released", "escalated", "contact_released")
}

// Triggers that can never be decided are rejected (dead-lettered), not retried.
func TestRejectedTriggers(t *testing.T) {
	w := newWorld(t)
	w.installment("L-1", 100000)
	w.drain()
	overdue, _ := stage.ByService("overdue")
	escalation, _ := stage.ByService("escalation")
	usd := policy.Repayment{PaymentID: "p-usd", Amount: policy.Money{Currency: "USD", Minor: 100}, PaidAt: w.clock.Now()}
	cases := []struct {
		name string
		s    stage.Stage
		ev   policy.Event
	}{
		{"payment in another currency", overdue, usd},
		{"another stage's step", escalation, policy.StepFired{Step: policy.Step{ID: "c1-legal_referral", Stage: policy.StageLegal}}},
		{"a lender fact on a timed stage", escalation, usd},
		{"a step ahead of its time (forged: the server fires none early)", overdue, policy.StepFired{Step: w.pendingStep("L-1")}},
	}
	for _, c := range cases {
		if err := c.s.Handle(ctx, w.deps, tenant, "L-1", 0, c.ev); !errors.Is(err, stage.ErrRejected) {
			t.Errorf("%s: Handle = %v, want ErrRejected", c.name, err)
		}
	}
}

// The engine links no broker: its tests run without a server, and a stage
// service binary carries no nats-server code.
func TestEngineLinksNoServer(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	for _, args := range [][]string{{"list", "-test", "-deps", "."}, {"list", "-deps", "../../services/escalation"}} {
		out, err := exec.Command("go", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("go %v: %v\n%s", args, err, out)
		}
		for _, p := range strings.Fields(string(out)) {
			if strings.HasPrefix(p, "github.com/nats-io/nats-server") {
				t.Errorf("go %s: depends on %s", strings.Join(args, " "), p)
			}
		}
	}
}

// pendingStep is the step the loan's timer holds.
func (w *world) pendingStep(loan string) policy.Step {
	w.t.Helper()
	es, _, err := w.log.Read(ctx, tenant, loan)
	if err != nil {
		w.t.Fatal(err)
	}
	c := policy.Fold(es)
	if c.Pending == nil {
		w.t.Fatalf("%s has no pending step", loan)
	}
	return c.Pending.Step
}

// A stage writes only the decision kinds its row declares (its NATS
// permission says the same): a decision outside them is refused before
// anything is written.
func TestStageWritesOnlyItsKinds(t *testing.T) {
	w := newWorld(t)
	w.installment("L-1", 100000)
	w.drain()
	overdue, _ := stage.ByService("overdue")
	step, ok := w.log.NextTimer()
	if !ok {
		t.Fatal("no confirmation step scheduled")
	}
	w.clock.Set(step)
	es, _, err := w.log.Read(ctx, tenant, "L-1")
	if err != nil {
		t.Fatal(err)
	}
	c := policy.Fold(es)
	if c.Pending == nil {
		t.Fatal("no pending step in the log")
	}
	narrowed := overdue
	narrowed.Writes = []*codec.Kind{codec.Closed}
	before := len(es)
	err = narrowed.Handle(ctx, w.deps, tenant, "L-1", 0, policy.StepFired{Step: c.Pending.Step})
	if !errors.Is(err, stage.ErrRejected) || !strings.Contains(err.Error(), "may not write overdue") {
		t.Errorf("Handle with overdue left out of the stage's writes = %v, want ErrRejected naming the kind", err)
	}
	if es, _, _ = w.log.Read(ctx, tenant, "L-1"); len(es) != before {
		t.Errorf("the refused decision was written: %d entries, want %d", len(es), before)
	}
	// The table's own row decides it.
	if err := overdue.Handle(ctx, w.deps, tenant, "L-1", 0, policy.StepFired{Step: c.Pending.Step}); err != nil {
		t.Fatal(err)
	}
	w.want("L-1", "overdue_confirmed")
}

// An overpayment is counted once and left in the case as the borrower's
// credit; the case closes as cured.
func TestOverpaymentCounted(t *testing.T) {
	w := newWorld(t)
	w.installment("L-1", 100000)
	w.drain()
	w.until(w.dpd(3, time.Hour))
	w.pay("L-1", "p1", 150000)
	w.drain()
	w.want("L-1", "overdue_confirmed", "contact_requested", "contact_released", "case_closed:cured")
	if got := testutil.ToFloat64(w.metrics.Overpayments); got != 1 {
		t.Errorf("dunning_overpayments_total = %v, want 1", got)
	}
	es, _, _ := w.log.Read(ctx, tenant, "L-1")
	if over := policy.Fold(es).Overpaid(); over.Minor != 50000 {
		t.Errorf("overpaid %s, want 500.00 CNY", over)
	}
}
