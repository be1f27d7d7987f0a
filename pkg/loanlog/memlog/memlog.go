// Package memlog is an in-memory stage.Log for tests of the engine without a
// broker. It keeps the rules the NATS log (package loanlog) follows, and
// the conformance suite (package logtest) holds both to them: one sequence
// across all loans, writes guarded by the loan's last sequence, a read
// that returns the last message of each subject, one timer per loan
// replaced by the next and purged by a closing decision, and a timer that,
// once due, is replaced by the step it fires on its target subject.
package memlog

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opendunning/dunning/pkg/codec"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/stage"
	"github.com/opendunning/dunning/pkg/topology"
)

// ErrDuplicate: a lender fact with this identifier is already recorded.
var ErrDuplicate = errors.New("event already recorded")

// Msg is one stored message.
type Msg struct {
	Seq     uint64
	Subject string
	Time    time.Time
	Tenant  string
	Loan    string
	Event   policy.Event
}

type timer struct {
	step   policy.Step
	target string
}

type loan struct {
	msgs  []Msg // in sequence order, every subject's messages
	timer *timer
}

// Log is an in-memory log of every loan.
type Log struct {
	now func() time.Time

	mu    sync.Mutex
	seq   uint64
	all   []Msg // every message ever stored, in order (what consumers see)
	loans map[string]*loan
	// counters are the agencies' counters of open placements, by tenant
	// and agency (placements.go).
	counters map[string]policy.AgencyLoad

	// BeforeWrite, if set, runs before every conditional write (decision or
	// timer), outside the log's lock: a test lands a payment there to race
	// the engine between its read and its write.
	BeforeWrite func(tenant, loan string)
	// StaleReads makes that many of the next reads miss the newest message
	// of the loan, as a read served by a lagging replica would.
	StaleReads int
}

var _ stage.Log = (*Log)(nil)

// New returns an empty log whose messages are stamped, and timers fired,
// by the clock now.
func New(now func() time.Time) *Log {
	return &Log{now: now, loans: map[string]*loan{}}
}

func (l *Log) loan(tenant, id string) *loan {
	k := tenant + "\x00" + id
	ln := l.loans[k]
	if ln == nil {
		ln = &loan{}
		l.loans[k] = ln
	}
	return ln
}

// store appends a message; the caller holds the lock.
func (l *Log) store(tenant, id, subject string, ev policy.Event) uint64 {
	l.seq++
	m := Msg{Seq: l.seq, Subject: subject, Time: l.now(), Tenant: tenant, Loan: id, Event: ev}
	ln := l.loan(tenant, id)
	ln.msgs = append(ln.msgs, m)
	l.all = append(l.all, m)
	return m.Seq
}

// last is the loan's last stored sequence.
func (ln *loan) last() uint64 {
	if len(ln.msgs) == 0 {
		return 0
	}
	return ln.msgs[len(ln.msgs)-1].Seq
}

// removeSubject deletes every message of one subject of the loan.
func (ln *loan) removeSubject(subject string) {
	ln.msgs = slices.DeleteFunc(ln.msgs, func(m Msg) bool { return m.Subject == subject })
}

// Read returns the last message of each of the loan's subjects, in order.
func (l *Log) Read(_ context.Context, tenant, id string) ([]policy.Entry, uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ln := l.loan(tenant, id)
	msgs := ln.msgs
	if l.StaleReads > 0 && len(msgs) > 0 {
		l.StaleReads--
		msgs = msgs[:len(msgs)-1]
	}
	last := map[string]Msg{}
	for _, m := range msgs {
		last[m.Subject] = m
	}
	out := make([]policy.Entry, 0, len(last))
	for _, m := range last {
		out = append(out, policy.Entry{Seq: m.Seq, Time: m.Time, Event: m.Event})
	}
	slices.SortFunc(out, func(a, b policy.Entry) int { return cmp.Compare(a.Seq, b.Seq) })
	if len(out) == 0 {
		return nil, 0, nil
	}
	return out, out[len(out)-1].Seq, nil
}

func (l *Log) guarded(tenant, id string, expect uint64, write func(ln *loan) uint64) (uint64, error) {
	if l.BeforeWrite != nil {
		l.BeforeWrite(tenant, id)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	ln := l.loan(tenant, id)
	if got := ln.last(); got != expect {
		return 0, fmt.Errorf("%w: wrong last sequence: %d, expected %d", stage.ErrConflict, got, expect)
	}
	return write(ln), nil
}

// ref is a loan's place in the subject layout: the in-memory log keeps
// every loan in one partition.
func ref(tenant, loan string) topology.LoanRef { return topology.LoanRef{Tenant: tenant, Loan: loan} }

// AppendDecision appends a decision if the loan's last sequence is still expect.
func (l *Log) AppendDecision(_ context.Context, tenant, id string, expect uint64, d policy.Decision) (uint64, error) {
	k, err := codec.Of(d)
	if err != nil {
		return 0, err
	}
	return l.guarded(tenant, id, expect, func(ln *loan) uint64 {
		if d.Kind == policy.KindCaseClosed || d.Kind == policy.KindStepCancelled {
			ln.removeSubject(ref(tenant, id).Timer())
			ln.timer = nil
		}
		return l.store(tenant, id, ref(tenant, id).Decision(k.Token, expect), d)
	})
}

// SetTimer stores s as the loan's one pending step if its last sequence is still expect.
func (l *Log) SetTimer(_ context.Context, tenant, id string, expect uint64, s policy.Step) (uint64, error) {
	st, err := stage.Of(s.Stage)
	if err != nil {
		return 0, err
	}
	return l.guarded(tenant, id, expect, func(ln *loan) uint64 {
		subj := ref(tenant, id).Timer()
		ln.removeSubject(subj)
		ln.timer = &timer{step: s, target: ref(tenant, id).Step(st.Step, expect)}
		return l.store(tenant, id, subj, policy.TimerSet{Step: s})
	})
}

// AppendLender records a lender fact once under its identifier (empty for
// kinds that carry none): a repeat fails with ErrDuplicate.
func (l *Log) AppendLender(tenant, id, eventID string, ev policy.Event) (uint64, error) {
	k, err := codec.Of(ev)
	if err != nil {
		return 0, err
	}
	subj := ref(tenant, id).Subject(k.Token, eventID)
	l.mu.Lock()
	defer l.mu.Unlock()
	ln := l.loan(tenant, id)
	if slices.ContainsFunc(ln.msgs, func(m Msg) bool { return m.Subject == subj }) {
		return 0, fmt.Errorf("%w: %s", ErrDuplicate, subj)
	}
	return l.store(tenant, id, subj, ev), nil
}

// Fire publishes every timer due by the log's clock, as the server does:
// the schedule is removed and its step stored on the target subject. It
// returns how many fired.
func (l *Log) Fire() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	n := 0
	for _, k := range slices.Sorted(maps.Keys(l.loans)) {
		ln := l.loans[k]
		if ln.timer == nil || ln.timer.step.At.After(now) {
			continue
		}
		t := ln.timer
		ln.timer = nil
		tenant, id, _ := strings.Cut(k, "\x00")
		ln.removeSubject(ref(tenant, id).Timer())
		l.store(tenant, id, t.target, policy.StepFired{Step: t.step})
		n++
	}
	return n
}

// Since returns every message stored after sequence seq, in order, as a
// consumer of the whole stream would receive them.
func (l *Log) Since(seq uint64) []Msg {
	l.mu.Lock()
	defer l.mu.Unlock()
	i, _ := slices.BinarySearchFunc(l.all, seq+1, func(m Msg, s uint64) int { return cmp.Compare(m.Seq, s) })
	return slices.Clone(l.all[i:])
}

// NextTimer returns the earliest pending timer's due time.
func (l *Log) NextTimer() (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var next time.Time
	for _, ln := range l.loans {
		if ln.timer != nil && (next.IsZero() || ln.timer.step.At.Before(next)) {
			next = ln.timer.step.At
		}
	}
	return next, !next.IsZero()
}

// Clock is a manual clock for tests: time moves only when told to.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock stopped at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// Add moves the clock on by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
