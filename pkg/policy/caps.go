package policy

import (
	"slices"
	"time"

	"github.com/opendunning/dunning/pkg/contactrules"
)

// Caps: a pack's cap rules bound how often a channel is used, counted over
// consecutive local days (cn: 3 connected calls a day; us-regf: 7 call
// attempts in 7 days, and none in the 7 days that start with a
// conversation's day). They are checked when a task would be released: a
// task over a cap is held until the first day with room, at its slot.
//
// Counts come from the loan's own log: its released tasks (attempts), and
// its vendors' outcomes (connected calls, conversations). A released call
// whose outcome has not come yet counts as connected until ReservationTTL
// has passed, so calls in flight cannot overshoot a cap on connected
// calls. A cap per borrower also counts the borrower's other loans, from
// the borrower's log (BorrowerEntries); a loan without a borrower key
// counts alone.

// ReservationTTL is how long a released call without an outcome holds its
// place under a cap on connected calls, in the borrower's wall time.
const ReservationTTL = 2 * time.Hour

// What a cap counts (contactrules.CapSpec.Counts).
const (
	countAttempts      = "attempts"
	countConnected     = "connected"
	countConversations = "conversations"
)

// capHold is the first instant a task on channel may leave under the
// pack's caps, as of now, and the cap rule that holds it ("" and now when
// no cap does).
func (l Ladder) capHold(c *Case, ch Channel, now time.Time, clock contactrules.Clock, slot contactrules.Slot) (time.Time, string) {
	pack := l.Policy.Contact.Pack
	if pack == nil {
		return now, ""
	}
	today, _ := clock.Local(now)
	at, rule := now, ""
	for _, r := range pack.Rules {
		cp := r.Cap
		if cp == nil || cp.Channel != ch.String() {
			continue
		}
		events := l.capEvents(c, cp, ch, now, clock)
		count := func(last contactrules.Date, reserved bool) int {
			n := 0
			for _, e := range events {
				if (e.reservation && !reserved) || e.day.DaysSince(last) > 0 || last.DaysSince(e.day) >= cp.Days {
					continue
				}
				n++
			}
			return n
		}
		if count(today, true) < cp.Max {
			continue
		}
		// The first later day whose window has room; reservations will
		// have resolved by then.
		for i := 1; i <= cp.Days+1; i++ {
			d := today.AddDays(i)
			if count(d, false) < cp.Max {
				open, _, err := slot.Next(clock.At(d, 0), clock)
				if err == nil && open.After(at) {
					at, rule = open, r.ID
				}
				break
			}
		}
	}
	return at, rule
}

type capEvent struct {
	day         contactrules.Date
	reservation bool
}

// capEvents are the events a cap counts, on the cap's channel, by local
// day: the loan's own (from its log) and, for a cap per borrower, those of
// the borrower's other loans (from the borrower's log, c.Borrower).
func (l Ladder) capEvents(c *Case, cp *contactrules.CapSpec, ch Channel, now time.Time, clock contactrules.Clock) []capEvent {
	// Released tasks on the channel, by loan and task, released at
	// NotBefore; and their outcomes. The loan's own are keyed by "".
	released := map[[2]string]time.Time{}
	type outcome struct {
		key [2]string
		o   Outcome
		at  time.Time
	}
	var outcomes []outcome
	for _, g := range c.Gate {
		if g.State == GateReleased && g.Task.Channel == ch {
			released[[2]string{"", g.Task.ID}] = g.Task.NotBefore
		}
	}
	for _, o := range c.Outcomes {
		outcomes = append(outcomes, outcome{[2]string{"", o.ContactID}, o.Outcome, o.At})
	}
	// The agency's calls on a placed account count like the lender's own:
	// each report is the attempt and its result.
	for _, a := range c.AgencyCalls {
		if a.Channel == ch {
			k := [2]string{"", a.Task()}
			released[k] = a.At
			outcomes = append(outcomes, outcome{k, a.CallOutcome(), a.At})
		}
	}
	if cp.Per == perBorrower {
		for _, e := range c.Borrower {
			if e.Channel != ch {
				continue
			}
			k := [2]string{e.Loan, e.Task}
			if e.Outcome == OutcomeNone {
				released[k] = e.At
			} else {
				outcomes = append(outcomes, outcome{k, e.Outcome, e.At})
			}
		}
	}
	var out []capEvent
	day := func(t time.Time) contactrules.Date { d, _ := clock.Local(t); return d }
	switch cp.Counts {
	case countAttempts:
		for _, at := range released {
			out = append(out, capEvent{day: day(at)})
		}
	case countConnected, countConversations:
		resolved := map[[2]string]bool{}
		for _, o := range outcomes {
			if _, ok := released[o.key]; !ok {
				continue
			}
			resolved[o.key] = true
			connected := o.o == OutcomeCallConnected || o.o == OutcomeCallRightParty || o.o == OutcomeCallWrongParty
			conversation := o.o == OutcomeCallConnected || o.o == OutcomeCallRightParty
			if (cp.Counts == countConnected && connected) || (cp.Counts == countConversations && conversation) {
				out = append(out, capEvent{day: day(o.at)})
			}
		}
		for k, at := range released {
			if resolved[k] {
				continue
			}
			d, wall := clock.Local(at)
			if clock.At(d, wall+ReservationTTL).After(now) {
				out = append(out, capEvent{day: d, reservation: true})
			}
		}
	}
	return out
}

// perBorrower is a cap counted across every loan of the borrower.
const perBorrower = "borrower"

// BorrowerEntry is one entry of a borrower's log: a contact released for
// one of the borrower's loans on a channel a cap counts per borrower
// (Outcome none: it holds its place until its outcome comes, or
// ReservationTTL), or that contact's outcome.
type BorrowerEntry struct {
	Loan    string // the loan it was released for
	Task    string
	Channel Channel
	At      time.Time
	Outcome Outcome
}

// BorrowerRef is the borrower's key at the lender, from the latest
// installment that carries one ("": caps count per loan).
func (c *Case) BorrowerRef() string {
	for i := len(c.Installments) - 1; i >= 0; i-- {
		if r := c.Installments[i].BorrowerRef; r != "" {
			return r
		}
	}
	return ""
}

// BorrowerCapped reports whether the policy's pack counts any cap per
// borrower: only then does the gate read and write the borrower's log.
func (l Ladder) BorrowerCapped() bool {
	return len(l.borrowerChannels()) > 0
}

func (l Ladder) borrowerChannels() map[Channel]bool {
	out := map[Channel]bool{}
	if p := l.Policy.Contact.Pack; p != nil {
		for _, r := range p.Rules {
			if r.Cap != nil && r.Cap.Per == perBorrower {
				if ch, ok := ParseChannel(r.Cap.Channel); ok {
					out[ch] = true
				}
			}
		}
	}
	return out
}

// BorrowerAppends is what the gate must append to the borrower's log for
// this loan, given the loan's own entries there (own) and the decisions
// about to be committed: every release on a channel capped per borrower
// gets an entry of its own, and each of their call outcomes one (Loan left
// empty: the caller knows the loan). The gate appends them before the
// release they stand for, guarded by the borrower's last sequence, so two
// loans racing for a borrower's last slot cannot both take it.
//
// A release decided again after its loan's write failed (a redelivery)
// reuses the entry its first attempt left, while that is still a live
// reservation (the same local day, under ReservationTTL): a retry loop
// does not pile up reservations. Any later release appends anew, so every
// release that counts today was a guarded append today.
func (l Ladder) BorrowerAppends(c *Case, decs []Decision, own []BorrowerEntry, now time.Time) []BorrowerEntry {
	capped := l.borrowerChannels()
	if len(capped) == 0 {
		return nil
	}
	clock := l.clock(c)
	today, _ := clock.Local(now)
	called := map[string][]time.Time{} // task -> its release entries
	outcome := map[[2]string]bool{}
	for _, e := range own {
		if e.Outcome == OutcomeNone {
			called[e.Task] = append(called[e.Task], e.At)
		} else {
			outcome[[2]string{e.Task, e.Outcome.String()}] = true
		}
	}
	var out []BorrowerEntry
	channel := map[string]Channel{}
	for _, g := range c.Gate {
		if g.State == GateReleased && capped[g.Task.Channel] {
			channel[g.Task.ID] = g.Task.Channel
			// A release committed without its entry (the loan had no
			// borrower key then): record it, at its time.
			if len(called[g.Task.ID]) == 0 {
				out = append(out, BorrowerEntry{Task: g.Task.ID, Channel: g.Task.Channel, At: g.Task.NotBefore})
				called[g.Task.ID] = append(called[g.Task.ID], g.Task.NotBefore)
			}
		}
	}
	live := func(at time.Time) bool {
		d, _ := clock.Local(at)
		return d == today && !at.After(now) && now.Sub(at) < ReservationTTL
	}
	for _, d := range decs {
		if d.Kind != KindContactReleased {
			continue
		}
		for _, t := range d.Tasks {
			if !capped[t.Channel] {
				continue
			}
			channel[t.ID] = t.Channel
			if slices.ContainsFunc(called[t.ID], live) {
				continue
			}
			out = append(out, BorrowerEntry{Task: t.ID, Channel: t.Channel, At: t.NotBefore})
		}
	}
	for _, o := range c.Outcomes {
		ch, ok := channel[o.ContactID]
		if ok && o.Outcome.Call() && !outcome[[2]string{o.ContactID, o.Outcome.String()}] {
			outcome[[2]string{o.ContactID, o.Outcome.String()}] = true
			out = append(out, BorrowerEntry{Task: o.ContactID, Channel: ch, At: o.At, Outcome: o.Outcome})
		}
	}
	// The agency's calls: the attempt and its result, for the borrower's
	// other loans to count.
	for _, a := range c.AgencyCalls {
		if !capped[a.Channel] {
			continue
		}
		if len(called[a.Task()]) == 0 {
			out = append(out, BorrowerEntry{Task: a.Task(), Channel: a.Channel, At: a.At})
		}
		if o := a.CallOutcome(); !outcome[[2]string{a.Task(), o.String()}] {
			out = append(out, BorrowerEntry{Task: a.Task(), Channel: a.Channel, At: a.At, Outcome: o})
		}
	}
	return out
}

// CodeOwner is whose released contact a verification code is.
type CodeOwner struct {
	Tenant, Loan, Task string
	Case               int
}
