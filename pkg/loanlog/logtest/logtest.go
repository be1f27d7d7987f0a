// Package logtest is the conformance suite of stage.Log: the rules the
// engine relies on, which the NATS log (package loanlog) and the in-memory
// one (package memlog) must both keep. Each implementation's tests call Run.
package logtest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/stage"
)

// Env is one implementation under test, fresh for each case.
type Env struct {
	Log stage.Log
	// AppendLender records a lender fact once under its identifier (empty
	// for a settlement); dup is true for a repeat, which writes nothing.
	AppendLender func(ctx context.Context, tenant, loan, id string, ev policy.Event) (seq uint64, dup bool, err error)
	// Now is the clock the log's timers fire by.
	Now func() time.Time
	// Advance lets d pass on that clock (the in-memory log fires what is
	// due; a real server fires on its own and Advance may do nothing).
	Advance func(d time.Duration)
	// Eventually checks f after Advance: at once for a log that fires
	// synchronously, by polling (natstest.CheckFor) for a real server.
	Eventually func(t *testing.T, f func() error)
	// Placements is the same log's agency counters.
	Placements stage.Placements
}

// Run runs every case of the suite on envs made by newEnv.
func Run(t *testing.T, newEnv func(t *testing.T) Env) {
	cases := []struct {
		name string
		f    func(t *testing.T, e Env)
	}{
		{"EmptyLog", emptyLog},
		{"AppendAndRead", appendAndRead},
		{"StaleWriteRefused", staleWriteRefused},
		{"GuardIsPerLoan", guardIsPerLoan},
		{"TimerReplaced", timerReplaced},
		{"TimerPurgedByClosingDecisions", timerPurged},
		{"TimerFiresItsStep", timerFires},
		{"LenderFactOnce", lenderFactOnce},
		{"LogLongerThanOneRead", logLongerThanOneRead},
		{"PlacementMovesItsCounterAtomically", placementAtomic},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.f(t, newEnv(t)) })
	}
}

const tenant = "acme"

var ctx = context.Background()

func due(id string, at time.Time) policy.InstallmentDue {
	return policy.InstallmentDue{ID: id, Amount: policy.Money{Currency: "CNY", Minor: 1000}, DueAt: at.UTC(), Zone: "Asia/Shanghai", ContactRef: "crm"}
}

func decision(k policy.DecisionKind, step string) policy.Decision {
	return policy.Decision{Kind: k, Ctx: policy.Context{Case: 1, Stage: policy.StageFirstContact, Tier: policy.TierLight, DPD: 1,
		Overdue: policy.Money{Currency: "CNY", Minor: 1000}, DecidedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Reason: "test", StepID: step}}
}

func step(at time.Time) policy.Step {
	return policy.Step{ID: "c1-escalation-d16", Stage: policy.StageEscalation, Case: 1, DPD: 16, At: at.UTC()}
}

func read(t *testing.T, e Env, loan string) ([]policy.Entry, uint64) {
	t.Helper()
	es, last, err := e.Log.Read(ctx, tenant, loan)
	if err != nil {
		t.Fatalf("Read(%s) = %v", loan, err)
	}
	return es, last
}

func mustLender(t *testing.T, e Env, loan, id string, ev policy.Event) uint64 {
	t.Helper()
	seq, dup, err := e.AppendLender(ctx, tenant, loan, id, ev)
	if err != nil || dup {
		t.Fatalf("AppendLender(%s, %s) = %d, dup %v, %v", loan, id, seq, dup, err)
	}
	return seq
}

func emptyLog(t *testing.T, e Env) {
	es, last := read(t, e, "L-0")
	if len(es) != 0 || last != 0 {
		t.Errorf("Read(empty) = %v, %d; want nothing, 0", es, last)
	}
}

func appendAndRead(t *testing.T, e Env) {
	in := due("1", e.Now())
	s1 := mustLender(t, e, "L-1", "1", in)
	d := decision(policy.KindOverdueConfirmed, "c1-overdue_confirmation")
	d.InstallmentIDs = []string{"1"}
	s2, err := e.Log.AppendDecision(ctx, tenant, "L-1", s1, d)
	if err != nil || s2 <= s1 {
		t.Fatalf("AppendDecision = %d, %v; want a sequence after %d", s2, err, s1)
	}
	es, last := read(t, e, "L-1")
	if last != s2 || len(es) != 2 || es[0].Seq != s1 || es[1].Seq != s2 {
		t.Fatalf("Read = %+v, last %d; want entries %d and %d", es, last, s1, s2)
	}
	if !reflect.DeepEqual(es[0].Event, in) || !reflect.DeepEqual(es[1].Event, d) {
		t.Errorf("Read events = %+v, %+v; want %+v, %+v", es[0].Event, es[1].Event, in, d)
	}
}

func staleWriteRefused(t *testing.T, e Env) {
	s1 := mustLender(t, e, "L-1", "1", due("1", e.Now()))
	s2 := mustLender(t, e, "L-1", "2", due("2", e.Now()))
	for _, expect := range []uint64{0, s1, s2 + 1000} {
		if _, err := e.Log.AppendDecision(ctx, tenant, "L-1", expect, decision(policy.KindOverdueConfirmed, "x")); !errors.Is(err, stage.ErrConflict) {
			t.Errorf("AppendDecision(expect %d, last %d) = %v, want ErrConflict", expect, s2, err)
		}
		if _, err := e.Log.SetTimer(ctx, tenant, "L-1", expect, step(e.Now().Add(time.Hour))); !errors.Is(err, stage.ErrConflict) {
			t.Errorf("SetTimer(expect %d, last %d) = %v, want ErrConflict", expect, s2, err)
		}
	}
	if es, last := read(t, e, "L-1"); len(es) != 2 || last != s2 {
		t.Errorf("after refused writes: %d entries, last %d; want 2, %d", len(es), last, s2)
	}
}

// The guard covers the loan's whole log (every subject under
// dunning.loan.<p>.<tenant>.<loan>.>) and nothing else: not another loan, not a
// loan whose ID merely starts with this one's.
func guardIsPerLoan(t *testing.T, e Env) {
	s1 := mustLender(t, e, "L-1", "1", due("1", e.Now()))
	mustLender(t, e, "L-2", "1", due("1", e.Now()))
	mustLender(t, e, "L-10", "1", due("1", e.Now()))
	if _, err := e.Log.AppendDecision(ctx, tenant, "L-10", 0, decision(policy.KindOverdueConfirmed, "x")); !errors.Is(err, stage.ErrConflict) {
		t.Errorf("AppendDecision on L-10 expecting an empty log = %v, want ErrConflict", err)
	}
	if _, err := e.Log.AppendDecision(ctx, tenant, "L-1", s1, decision(policy.KindOverdueConfirmed, "x")); err != nil {
		t.Errorf("AppendDecision on L-1 after writes to L-2 and L-10 = %v, want success", err)
	}
	// A lender fact on another subject of the loan moves the guard.
	_, last := read(t, e, "L-1")
	mustLender(t, e, "L-1", "pay-1", policy.Repayment{PaymentID: "pay-1", Amount: policy.Money{Currency: "CNY", Minor: 1}, PaidAt: e.Now().UTC()})
	if _, err := e.Log.AppendDecision(ctx, tenant, "L-1", last, decision(policy.KindContactRequested, "y")); !errors.Is(err, stage.ErrConflict) {
		t.Errorf("AppendDecision after a payment landed = %v, want ErrConflict", err)
	}
}

func timers(es []policy.Entry) (set []policy.TimerSet, fired []policy.StepFired) {
	for _, en := range es {
		switch ev := en.Event.(type) {
		case policy.TimerSet:
			set = append(set, ev)
		case policy.StepFired:
			fired = append(fired, ev)
		}
	}
	return set, fired
}

func timerReplaced(t *testing.T, e Env) {
	last := mustLender(t, e, "L-1", "1", due("1", e.Now()))
	a, b := step(e.Now().Add(time.Hour)), step(e.Now().Add(2*time.Hour))
	b.ID, b.Stage = "c1-third_party_handoff", policy.StageHandoff
	var err error
	if last, err = e.Log.SetTimer(ctx, tenant, "L-1", last, a); err != nil {
		t.Fatal(err)
	}
	if last, err = e.Log.SetTimer(ctx, tenant, "L-1", last, b); err != nil {
		t.Fatal(err)
	}
	es, got := read(t, e, "L-1")
	set, _ := timers(es)
	if got != last || len(set) != 1 || !set[0].Step.Same(b) {
		t.Errorf("after two SetTimer: timers %+v, last %d; want only %+v, last %d", set, got, b, last)
	}
}

func timerPurged(t *testing.T, e Env) {
	for _, k := range []policy.DecisionKind{policy.KindCaseClosed, policy.KindStepCancelled} {
		loan := "L-" + k.String()
		last := mustLender(t, e, loan, "1", due("1", e.Now()))
		last, err := e.Log.SetTimer(ctx, tenant, loan, last, step(e.Now().Add(time.Hour)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.Log.AppendDecision(ctx, tenant, loan, last, decision(k, "")); err != nil {
			t.Fatal(err)
		}
		es, _ := read(t, e, loan)
		if set, _ := timers(es); len(set) != 0 {
			t.Errorf("after %s the timer is still pending: %+v", k, set)
		}
		// Nothing fires later either.
		e.Advance(2 * time.Hour)
		if es, _ := read(t, e, loan); len(es) != 2 {
			t.Errorf("after %s and two hours: %d entries, want 2 (the fact and the decision)", k, len(es))
		}
	}
}

func timerFires(t *testing.T, e Env) {
	last := mustLender(t, e, "L-1", "1", due("1", e.Now()))
	s := step(e.Now().Add(300 * time.Millisecond))
	last, err := e.Log.SetTimer(ctx, tenant, "L-1", last, s)
	if err != nil {
		t.Fatal(err)
	}
	e.Advance(400 * time.Millisecond)
	e.Eventually(t, func() error {
		es, got := read(t, e, "L-1")
		set, fired := timers(es)
		if len(set) != 0 || len(fired) != 1 || !fired[0].Step.Same(s) || got <= last {
			return fmt.Errorf("timers %+v, fired %+v, last %d (was %d); want one fired %+v and none pending", set, fired, got, last, s)
		}
		return nil
	})
}

func lenderFactOnce(t *testing.T, e Env) {
	in := due("1", e.Now())
	s := mustLender(t, e, "L-1", "1", in)
	if _, dup, err := e.AppendLender(ctx, tenant, "L-1", "1", in); err != nil || !dup {
		t.Errorf("second AppendLender of installment 1 = dup %v, %v; want a duplicate", dup, err)
	}
	if es, last := read(t, e, "L-1"); len(es) != 1 || last != s {
		t.Errorf("after a duplicate: %d entries, last %d; want 1, %d", len(es), last, s)
	}
}

// A loan whose log has more subjects than nats-server's multi_last answers
// at once (1,024) is read whole all the same: no loan is frozen by length.
func logLongerThanOneRead(t *testing.T, e Env) {
	var last uint64
	for i := range 1100 {
		last = mustLender(t, e, "L-long", strconv.Itoa(i), due(strconv.Itoa(i), e.Now()))
	}
	es, got, err := e.Log.Read(ctx, tenant, "L-long")
	if err != nil || len(es) != 1100 || got != last {
		t.Errorf("Read of a 1,100-entry log = %d entries, last %d, %v; want 1100, %d", len(es), got, err, last)
	}
	for i := 1; i < len(es); i++ {
		if es[i].Seq <= es[i-1].Seq {
			t.Fatalf("entries out of order at %d: %d after %d", i, es[i].Seq, es[i-1].Seq)
		}
	}
	// Other loans are unaffected.
	mustLender(t, e, "L-short", "1", due("1", e.Now()))
	if es, _ := read(t, e, "L-short"); len(es) != 1 {
		t.Errorf("Read(L-short) = %d entries, want 1", len(es))
	}
}

// A placement's decision and its agency's counter are written together or
// not at all: a stale counter refuses the decision, a stale loan refuses
// the counter, and a counter never goes below 0.
func placementAtomic(t *testing.T, e Env) {
	p := e.Placements
	loads := func() map[string]policy.AgencyLoad {
		t.Helper()
		l, _, err := p.Loads(ctx, tenant, "L-1")
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	if l := loads(); len(l) != 0 {
		t.Fatalf("Loads of a new tenant = %v, want none", l)
	}
	s1 := mustLender(t, e, "L-1", "1", due("1", e.Now()))
	s2 := mustLender(t, e, "L-2", "1", due("1", e.Now()))
	placed := policy.Decision{Kind: policy.KindHandedOff, Ctx: policy.Context{Case: 1, StepID: "c1-third_party_handoff"}, AgencyID: "ag-a", PlacementID: "p-1"}
	last, c, err := p.AppendPlacement(ctx, tenant, "L-1", s1, placed, "ag-a", policy.AgencyLoad{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if c.Open != 1 || c.Seq == 0 || c.Seq >= last {
		t.Errorf("counter after the first placement = %+v (decision at %d), want 1 open, written just before it", c, last)
	}
	if got := loads()["ag-a"]; got != c {
		t.Errorf("Loads = %+v, want %+v", got, c)
	}
	// A stale counter: L-2's handoff read the counter before L-1's. Neither
	// written.
	placed2 := placed
	placed2.PlacementID = "p-2"
	if _, _, err := p.AppendPlacement(ctx, tenant, "L-2", s2, placed2, "ag-a", policy.AgencyLoad{}, 1); !errors.Is(err, stage.ErrConflict) {
		t.Fatalf("AppendPlacement with a stale counter = %v, want ErrConflict", err)
	}
	if es, l := read(t, e, "L-2"); len(es) != 1 || l != s2 {
		t.Errorf("L-2 after the refused placement: %d entries, last %d; want its installment alone", len(es), l)
	}
	// A stale loan: the counter is not moved either.
	if _, _, err := p.AppendPlacement(ctx, tenant, "L-2", s2+1000, placed2, "ag-a", c, 1); !errors.Is(err, stage.ErrConflict) {
		t.Fatalf("AppendPlacement on a stale loan = %v, want ErrConflict", err)
	}
	if got := loads()["ag-a"]; got != c {
		t.Errorf("counter after refused writes = %+v, want %+v", got, c)
	}
	// With both current: written.
	if _, c2, err := p.AppendPlacement(ctx, tenant, "L-2", s2, placed2, "ag-a", c, 1); err != nil || c2.Open != 2 {
		t.Fatalf("AppendPlacement = %+v, %v; want 2 open", c2, err)
	} else {
		c = c2
	}
	// Closures end placements; a counter never goes below 0.
	_, l1 := read(t, e, "L-1")
	closed := policy.Decision{Kind: policy.KindCaseClosed, Ctx: policy.Context{Case: 1}, CloseReason: policy.CloseCured, PlacementID: "p-1"}
	if _, c, err = p.AppendPlacement(ctx, tenant, "L-1", l1, closed, "ag-a", policy.AgencyLoad{Open: 0, Seq: c.Seq}, -1); err != nil || c.Open != 0 {
		t.Fatalf("closing from 0 open = %+v, %v; want 0 open", c, err)
	}
	if got := loads()["ag-a"]; got.Open != 0 {
		t.Errorf("Loads after the closure = %+v, want 0 open", got)
	}
	if es, _ := read(t, e, "L-1"); len(es) != 3 {
		t.Errorf("L-1 has %d entries, want installment, handed_off, case_closed", len(es))
	}
}
