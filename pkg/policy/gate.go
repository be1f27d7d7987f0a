package policy

import (
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	"github.com/opendunning/dunning/pkg/contactrules"
)

// The release gate. A stage decides a contact when the ladder reaches it
// (at the start of a local day, typically 00:00); the gate decides when it
// may leave. Every task passes it: asked for, it is released at once, held
// until its loan's slot in the borrower's window (contact_held, with the
// rule and the time), or cancelled because the case closed meanwhile
// (contact_cancelled). A held task waits on the loan's one timer: the next
// step of a loan is the earlier of its ladder's next rung and its earliest
// held task (NextStep), so a loan still has one pending step, and whoever
// reconciles the timer puts the same one back.

// ContactRules is what a policy says about when contacts leave.
type ContactRules struct {
	// Pack is the jurisdiction's rules (nil: no window, as in tests that
	// build a policy in code).
	Pack *contactrules.Pack
	// Calendar closes days to contact: holidays, weekdays.
	Calendar contactrules.Calendar
	// SendAt is the wall time releases start from (0: the window's
	// opening); SendSpread spreads loans over that much time after it,
	// each loan at an offset of its own.
	SendAt, SendSpread time.Duration
	// DecideSpread spreads the ladder's steps of loans reaching a DPD the
	// same night over that much time from the local day's start, each
	// loan at an offset of its own, the same every night (0: every one at
	// 00:00), so that a portfolio is not decided in one burst at midnight;
	// the decisions only need to be made before contacts may leave in the
	// morning.
	DecideSpread time.Duration
	// MaxAttempts bounds a vendor's tries at one task (0: unbounded but
	// for the window).
	MaxAttempts int
}

// Why the gate cancels a contact, beside the rules of packs and policy.
const (
	RuleCaseClosed     = "case.closed"          // cured, settled, or a new case opened
	RuleNothingOverdue = "case.nothing_overdue" // paid, the closure not yet recorded
	// RuleOptOut suppresses a task on a channel the borrower opted out of.
	RuleOptOut = "borrower.opt_out"
	// RuleHold cancels a task while a hold is open on the loan.
	RuleHold = "case.hold"
	// RuleAgreedHours names the borrower's agreement to contact outside
	// the rules' window (contactHours) where it applied.
	RuleAgreedHours = "borrower.agreed_hours"
)

// DefaultSendSpread spreads a portfolio's releases over the first two hours
// of the window, so that the window's opening is not a new midnight.
const DefaultSendSpread = 2 * time.Hour

// DefaultMaxAttempts bounds a vendor's tries at one task when the policy
// says nothing.
const DefaultMaxAttempts = 6

// GateState is where a contact task stands at the release gate.
type GateState int

// Gate states.
const (
	GateRequested GateState = iota // asked for, not yet looked at by the gate
	GateHeld
	GateReleased
	GateCancelled
	GateSuppressed
)

// GatedTask is one task at the gate, with the decision that asked for it.
type GatedTask struct {
	Task  ContactTask
	Case  int
	Stage Stage // the stage that asked for it
	Tier  Tier
	State GateState
	// RequestedAt is the instant the decision that asked for it belongs to
	// (its AsOf: the step's due time), not when a busy stage made it.
	RequestedAt time.Time
	// Until and Rule say, for a held task, when the gate looks again and why.
	Until time.Time
	Rule  string
}

// Gate reports whether the kind is one of the release gate's records.
func (k DecisionKind) Gate() bool {
	return k == KindContactHeld || k == KindContactReleased || k == KindContactCancelled || k == KindContactSuppressed
}

// request records the tasks a contact decision asks for.
func (c *Case) request(d Decision) {
	for _, t := range d.Tasks {
		at := d.Ctx.AsOf
		if at.IsZero() {
			at = d.Ctx.DecidedAt
		}
		c.Gate = append(c.Gate, GatedTask{Task: t, Case: d.Ctx.Case, Stage: d.Ctx.Stage, Tier: d.Ctx.Tier, RequestedAt: at})
	}
}

// applyGate moves the tasks a gate record names.
func (c *Case) applyGate(d Decision) {
	for _, t := range d.Tasks {
		for i := range c.Gate {
			g := &c.Gate[i]
			if g.Task.ID != t.ID || g.Case != d.Ctx.Case {
				continue
			}
			switch d.Kind {
			case KindContactHeld:
				g.State, g.Until, g.Rule = GateHeld, d.HeldUntil, d.Rule
			case KindContactReleased:
				g.State, g.Task = GateReleased, t
			case KindContactCancelled:
				g.State = GateCancelled
			case KindContactSuppressed:
				g.State = GateSuppressed
			}
		}
	}
}

// Waiting returns the tasks the gate has not released or cancelled.
func (c *Case) Waiting() []GatedTask {
	var out []GatedTask
	for _, g := range c.Gate {
		if g.State == GateRequested || g.State == GateHeld {
			out = append(out, g)
		}
	}
	return out
}

// releaseStep is the step that wakes the gate for the case's earliest held
// task, or nil.
func (l Ladder) releaseStep(c *Case) *Step {
	if !c.Open {
		return nil
	}
	var at time.Time
	for _, g := range c.Gate {
		if g.State == GateHeld && g.Case == c.Number && (at.IsZero() || g.Until.Before(at)) {
			at = g.Until
		}
	}
	if at.IsZero() {
		return nil
	}
	return &Step{ID: fmt.Sprintf("c%d-release", c.Number), Stage: StageRelease, Case: c.Number, At: at}
}

// Fired decides what a fired step does: the gate's own step looks at the
// held tasks again; a rung's is decided by OnStep.
func (l Ladder) Fired(c *Case, s Step, now time.Time) []Decision {
	if s.Stage != StageRelease {
		if d := l.OnStep(c, s, now); d != nil {
			return []Decision{*d}
		}
		return nil
	}
	if want := l.NextStep(c); want == nil || !want.Same(s) {
		return nil
	}
	// The server fires a step at its time, never before: a service clock
	// a little behind the server's must not hold the task again.
	if s.At.After(now) {
		now = s.At
	}
	return l.Gate(c, s.ID, now)
}

// Gate decides, at now, for every task still waiting: cancelled (its case
// is closed, or nothing is overdue any more), released (the borrower's rules
// permit it now), or held until its loan's slot, naming the rule. A task
// already held until the same time is not recorded again.
// stepID is the gate's step that fired, "" for a new decision or a closure.
func (l Ladder) Gate(c *Case, stepID string, now time.Time) []Decision {
	var stale, waiting []GatedTask
	for _, g := range c.Waiting() {
		if !c.Open || g.Case != c.Number {
			stale = append(stale, g)
		} else {
			waiting = append(waiting, g)
		}
	}
	var out []Decision
	overdue, _ := c.Overdue(l.Calendar, now)
	add := func(kind DecisionKind, gs []GatedTask, reason string, edit func(*Decision)) {
		for _, group := range byOrigin(gs) {
			ctx := Context{Case: group[0].Case, Stage: group[0].Stage, Tier: group[0].Tier, DPD: c.DPD, Overdue: overdue, DecidedAt: now,
				Reason: reason, StepID: stepID, PolicyVersion: l.Policy.Version}
			d := Decision{Kind: kind, Ctx: ctx}
			for _, g := range group {
				d.Tasks = append(d.Tasks, g.Task)
			}
			if edit != nil {
				edit(&d)
			}
			out = append(out, d)
		}
	}
	cancel := func(gs []GatedTask, rule, reason string) {
		add(KindContactCancelled, gs, reason, func(d *Decision) { d.Rule = rule })
	}
	hold := func(gs []GatedTask, until time.Time, rule string) {
		add(KindContactHeld, gs, fmt.Sprintf("held by %s until %s", rule, l.LocalTime(c, until)), func(d *Decision) {
			d.HeldUntil, d.Rule = until, rule
		})
	}
	if len(stale) > 0 {
		cancel(stale, RuleCaseClosed, fmt.Sprintf("case %s before the contact left: not delivered", closedAs(c)))
	}
	if len(waiting) == 0 {
		return out
	}
	if h, held := c.OnHold(); held {
		cancel(waiting, RuleHold, fmt.Sprintf("%s hold %s open since %s: not delivered", h.Kind, h.ID, h.At.UTC().Format(time.RFC3339)))
		return out
	}
	if p, open := c.OpenPromise(); open {
		cancel(waiting, RulePromise, fmt.Sprintf("promise %s to pay %s by %s is open: not delivered", p.ID, p.Amount, l.LocalTime(c, p.For)))
		return out
	}
	if p, ok := c.ActivePlan(); ok {
		// The plan replaces the ladder: its own reminders go on, a ladder
		// contact decided before it was agreed does not.
		var ladder, plan []GatedTask
		for _, g := range waiting {
			if planTask(g.Task.ID) {
				plan = append(plan, g)
			} else {
				ladder = append(ladder, g)
			}
		}
		if len(ladder) > 0 {
			cancel(ladder, RulePlan, fmt.Sprintf("repayment plan %s is kept: not delivered", p.ID))
		}
		if waiting = plan; len(waiting) == 0 {
			return out
		}
	}
	// Opted out: never on that channel, whenever the choice came.
	var optedOut, rest []GatedTask
	for _, g := range waiting {
		if c.OptedOut[g.Task.Channel] {
			optedOut = append(optedOut, g)
		} else {
			rest = append(rest, g)
		}
	}
	if len(optedOut) > 0 {
		add(KindContactSuppressed, optedOut, "the borrower opted out of this channel: not delivered", func(d *Decision) { d.Rule = RuleOptOut })
	}
	if waiting = rest; len(waiting) == 0 {
		return out
	}
	if overdue.Minor <= 0 {
		cancel(waiting, RuleNothingOverdue, "nothing overdue when the contact would leave: not delivered")
		return out
	}
	clock := l.clock(c)
	slot := l.slot(c)
	// A task the gate sees for the first time is held if its rules held it
	// when it was asked for, until when they held it then, however late the
	// gate looks (a busy consumer): the record is the same on every replay,
	// and the release step then fires at once and decides at the real time.
	// Only a task that was free to leave when asked for is judged at now.
	type holdAt struct {
		until time.Time
		rule  string
	}
	var holds []holdAt
	byHold := map[holdAt][]GatedTask{}
	rest = waiting[:0:0]
	for _, g := range waiting {
		if g.State == GateRequested && !g.RequestedAt.IsZero() {
			if at, rule, err := slot.Next(g.RequestedAt, clock); err == nil && at.After(g.RequestedAt) {
				h := holdAt{at, rule}
				if byHold[h] == nil {
					holds = append(holds, h)
				}
				byHold[h] = append(byHold[h], g)
				continue
			}
		}
		rest = append(rest, g)
	}
	for _, h := range holds {
		hold(byHold[h], h.until, h.rule)
	}
	if waiting = rest; len(waiting) == 0 {
		return out
	}
	at, rule, err := slot.Next(now, clock)
	if err != nil {
		cancel(waiting, rule, fmt.Sprintf("no day to contact on (%s): %v", rule, err))
		return out
	}
	if !at.After(now) {
		// The window permits it; the pack's caps may still hold a task,
		// counting the ones released here before it.
		counted := *c
		counted.Gate = slices.Clone(c.Gate)
		var free []GatedTask
		for _, g := range waiting {
			until, rule := l.capHold(&counted, g.Task.Channel, now, clock, slot)
			if rule == "" {
				free = append(free, g)
				t := g.Task
				t.NotBefore = now
				counted.Gate = append(counted.Gate, GatedTask{Task: t, Case: g.Case, State: GateReleased})
				continue
			}
			if g.State == GateHeld && g.Until.Equal(until) {
				continue // already held until then (the first rule recorded stands)
			}
			hold([]GatedTask{g}, until, rule)
		}
		if waiting = free; len(waiting) == 0 {
			return out
		}
		dpd := max(l.DPDAt(c, now), c.DPD)
		notAfter := slot.Closes(now, clock)
		add(KindContactReleased, waiting, "released: the borrower's contact rules permit it now", func(d *Decision) {
			d.Ctx.DPD = dpd
			// One figure for every task of the release: the same as of now.
			fc := d.Ctx
			fc.DPD, fc.Overdue, fc.AsOf = dpd, overdue, now
			fees := l.charges(c, fc)
			for i := range d.Tasks {
				t := &d.Tasks[i]
				// The text a borrower reads is true when it leaves: what
				// is overdue now, at today's DPD, with today's charges
				// (the lender's, else the policy's fee as it stands, never
				// grown in hardship or a breathing space). A plan's
				// reminder keeps its installment's amount.
				t.DPD = dpd
				if !planTask(t.ID) {
					t.AmountDue, t.Fees = overdue, fees
				}
				t.NotBefore, t.NotAfter, t.MaxAttempts = now, notAfter, l.Policy.Contact.MaxAttempts
			}
		})
		return out
	}
	// A task already held until the same time is not recorded again, even
	// if another rule would now name that time: a redelivered trigger
	// looking at 08:05 at a task held by the window until its 08:09 slot
	// would otherwise record the slot's rule as a second hold.
	var again []GatedTask
	for _, g := range waiting {
		if g.State != GateHeld || !g.Until.Equal(at) {
			again = append(again, g)
		}
	}
	if len(again) > 0 {
		hold(again, at, rule)
	}
	return out
}

// LocalTime renders an instant as the borrower's local time, or, under an
// accelerated day, as the simulated day and hour.
func (l Ladder) LocalTime(c *Case, t time.Time) string {
	d, wall := l.clock(c).Local(t)
	return fmt.Sprintf("%s %s local", d, contactrules.FormatWall(wall))
}

func closedAs(c *Case) string {
	switch {
	case c.Open:
		return "moved on to a new case"
	case c.LastReason == CloseSettled:
		return "settled"
	default:
		return "cured"
	}
}

// byOrigin groups tasks by the case, stage and tier that asked for them, in
// order, so each record carries its tasks' own context.
func byOrigin(gs []GatedTask) [][]GatedTask {
	var out [][]GatedTask
	for _, g := range gs {
		n := len(out)
		if n > 0 && out[n-1][0].Case == g.Case && out[n-1][0].Stage == g.Stage && out[n-1][0].Tier == g.Tier {
			out[n-1] = append(out[n-1], g)
			continue
		}
		out = append(out, []GatedTask{g})
	}
	return out
}

// clock is the borrower's calendar: the anchor installment's zone, or the
// accelerated days counted from its due time.
func (l Ladder) clock(c *Case) contactrules.Clock {
	a, ok := c.anchor()
	if !ok && len(c.Installments) > 0 {
		a = c.Installments[0]
	}
	loc := zone(a.Zone)
	if l.Calendar.real() {
		return contactrules.RealClock{Loc: loc}
	}
	y, m, d := a.DueAt.In(loc).Date()
	return contactrules.AcceleratedClock{Origin: a.DueAt, OriginDate: contactrules.Date{Year: y, Month: m, Day: d}, Day: l.Calendar.Day}
}

// ContactWindow is the borrower's local contact window ("HH:MM"), as the
// gate keeps to it: the jurisdiction's, widened where the borrower agreed.
func (l Ladder) ContactWindow(c *Case) (from, to string) {
	f, t := l.slot(c).Hours()
	return contactrules.FormatWall(f), contactrules.FormatWall(t)
}

// RecentContacts counts, per channel, the contacts released for the loan in
// the seven days before at.
func (l Ladder) RecentContacts(c *Case, at time.Time) map[Channel]int {
	out := map[Channel]int{}
	since := at.Add(-7 * l.Calendar.Day)
	for _, g := range c.Gate {
		if g.State == GateReleased && g.Task.NotBefore.After(since) && !g.Task.NotBefore.After(at) {
			out[g.Task.Channel]++
		}
	}
	return out
}

// slot is the case's loan's place in the policy's send window.
func (l Ladder) slot(c *Case) contactrules.Slot {
	r := l.Policy.Contact
	return contactrules.Slot{Pack: r.Pack, Calendar: r.Calendar, SendAt: r.SendAt, Offset: SpreadOffset(c.Key, r.SendSpread), Agreed: c.AgreedHours}
}

// SpreadOffset is a loan's deterministic place in a spread: FNV-1a of its
// key, modulo the spread. The same loan leaves at the same offset every
// day; a portfolio spreads evenly over it.
func SpreadOffset(key string, spread time.Duration) time.Duration {
	if spread <= 0 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(key))
	return time.Duration(h.Sum64() % uint64(spread))
}

// LoanKey is the key a loan's spread offset is drawn from.
func LoanKey(tenant, loan string) string { return tenant + "/" + loan }
