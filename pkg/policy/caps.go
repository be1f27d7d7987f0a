package policy

import (
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
// calls. Caps per borrower count per loan until loans carry a borrower
// key (the borrower's log is the next step of the contact-rules issue).

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
		events := l.capEvents(c, ch, cp.Counts, now, clock)
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

// capEvents are the loan's events a cap counts, on the cap's channel, by
// local day.
func (l Ladder) capEvents(c *Case, ch Channel, counts string, now time.Time, clock contactrules.Clock) []capEvent {
	// The loan's released tasks on the channel, by ID, released at NotBefore.
	released := map[string]time.Time{}
	for _, g := range c.Gate {
		if g.State == GateReleased && g.Task.Channel == ch {
			released[g.Task.ID] = g.Task.NotBefore
		}
	}
	var out []capEvent
	day := func(t time.Time) contactrules.Date { d, _ := clock.Local(t); return d }
	switch counts {
	case countAttempts:
		for _, at := range released {
			out = append(out, capEvent{day: day(at)})
		}
	case countConnected, countConversations:
		resolved := map[string]bool{}
		for _, o := range c.Outcomes {
			if _, ok := released[o.ContactID]; !ok {
				continue
			}
			resolved[o.ContactID] = true
			connected := o.Outcome == OutcomeCallConnected || o.Outcome == OutcomeCallRightParty || o.Outcome == OutcomeCallWrongParty
			conversation := o.Outcome == OutcomeCallConnected || o.Outcome == OutcomeCallRightParty
			if (counts == countConnected && connected) || (counts == countConversations && conversation) {
				out = append(out, capEvent{day: day(o.At)})
			}
		}
		for id, at := range released {
			if resolved[id] {
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
