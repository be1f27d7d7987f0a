package policy

import (
	"fmt"
	"testing"
	"time"

	"github.com/opendunning/dunning/pkg/contactrules"
)

// capsCase is an open case of a loan due in zone under pack, and a ladder
// that releases at the window's opening (no spread).
func capsCase(t *testing.T, pack, zone string) (Ladder, *Case, *time.Location) {
	t.Helper()
	packs, err := contactrules.Packs()
	if err != nil {
		t.Fatal(err)
	}
	pol := Default()
	pol.Jurisdiction, pol.Contact = pack, ContactRules{Pack: packs[pack]}
	l := Ladder{Policy: pol, Calendar: Calendar{Day: RealDay}}
	loc, _ := LoadZone(zone)
	due := time.Date(2026, 3, 2, 18, 0, 0, 0, loc)
	c := Fold([]Entry{{Event: InstallmentDue{ID: "1", Amount: Money{"USD", 100000}, DueAt: due, Zone: zone}}})
	c.Apply(Entry{Event: Decision{Kind: KindOverdueConfirmed, Ctx: Context{Case: 1, Stage: StageOverdueConfirmation, DPD: 1}}})
	return l, c, loc
}

// call records a phone task asked for and released at at.
func call(c *Case, id string, at time.Time) {
	task := ContactTask{ID: id, Channel: ChannelPhone}
	c.Apply(Entry{Event: Decision{Kind: KindContactRequested, Ctx: Context{Case: 1, Stage: StageFirstContact, DecidedAt: at}, Tasks: []ContactTask{task}}})
	task.NotBefore = at
	c.Apply(Entry{Event: Decision{Kind: KindContactReleased, Ctx: Context{Case: 1, Stage: StageFirstContact, DecidedAt: at}, Tasks: []ContactTask{task}}})
}

// ask records tasks asked for at at, on the given channels.
func ask(c *Case, id string, at time.Time, chans ...Channel) {
	var tasks []ContactTask
	for _, ch := range chans {
		tasks = append(tasks, ContactTask{ID: id + "-" + ch.String(), Channel: ch})
	}
	c.Apply(Entry{Event: Decision{Kind: KindContactRequested, Ctx: Context{Case: 1, Stage: StageEscalation, DecidedAt: at}, Tasks: tasks}})
}

func gateSummary(ds []Decision, loc *time.Location) string {
	var s string
	for _, d := range ds {
		for _, t := range d.Tasks {
			s += fmt.Sprintf("%s %s", d.Kind, t.Channel)
			if d.Kind == KindContactHeld {
				s += fmt.Sprintf(" by %s until %s", d.Rule, d.HeldUntil.In(loc).Format("01-02 15:04"))
			}
			s += "; "
		}
	}
	return s
}

// Acceptance 4 (contact rules), us-regf: the 8th call attempt within 7
// consecutive days is held until the first day the 7-day window has room,
// at 08:00 local; the SMS asked for with it leaves.
func TestUSRegFEighthCallAttemptIsHeld(t *testing.T) {
	l, c, ny := capsCase(t, "us-regf", "America/New_York")
	day := func(d, h int) time.Time { return time.Date(2026, 3, 10+d, h, 0, 0, 0, ny) }
	for i, at := range []time.Time{day(0, 9), day(0, 12), day(0, 15), day(1, 9), day(1, 15), day(2, 9), day(2, 15)} {
		call(c, fmt.Sprintf("call-%d", i), at)
	}
	ask(c, "eighth", day(3, 10), ChannelPhone, ChannelSMS)
	got := gateSummary(l.Gate(c, "", day(3, 10)), ny)
	// Day 0 holds 3 attempts: the window ending day 6 still has 7; the one
	// ending day 7 (days 1-7) has 4.
	if want := "contact_held phone by us-regf.call-frequency until 03-17 08:00; contact_released sms; "; got != want {
		t.Errorf("gate: %s\nwant %s", got, want)
	}
}

// Acceptance 4 (contact rules), us-regf: after a conversation on day 1 no
// call goes out before day 8 (the conversation's day is day 1 of 7): a call
// asked for on days 2 to 7 is held until day 8, 08:00 local; on day 8 it
// leaves.
func TestUSRegFNoCallWithinSevenDaysOfAConversation(t *testing.T) {
	for d := 1; d <= 7; d++ {
		l, c, ny := capsCase(t, "us-regf", "America/New_York")
		day := func(d, h int) time.Time { return time.Date(2026, 3, 10+d, h, 0, 0, 0, ny) }
		call(c, "call-1", day(0, 9))
		c.Apply(Entry{Event: ContactOutcome{ContactID: "call-1", Outcome: OutcomeCallRightParty, At: day(0, 9).Add(time.Minute)}})
		ask(c, "next", day(d, 10), ChannelPhone)
		want := "contact_held phone by us-regf.after-conversation until 03-17 08:00; "
		if d == 7 {
			want = "contact_released phone; "
		}
		if got := gateSummary(l.Gate(c, "", day(d, 10)), ny); got != want {
			t.Errorf("day %d: %s\nwant %s", d+1, got, want)
		}
	}
}

// A call in flight (released, no outcome yet) counts as a conversation
// under us-regf until its outcome comes or ReservationTTL passes: a second
// call released at the same instant could otherwise make two
// conversations within the 7 days.
func TestUSRegFCallInFlightHoldsTheNext(t *testing.T) {
	l, c, ny := capsCase(t, "us-regf", "America/New_York")
	at := time.Date(2026, 3, 10, 9, 0, 0, 0, ny)
	call(c, "call-1", at)
	ask(c, "second", at, ChannelPhone)
	if got, want := gateSummary(l.Gate(c, "", at), ny), "contact_held phone by us-regf.after-conversation until 03-11 08:00; "; got != want {
		t.Errorf("with a call in flight: %s\nwant %s", got, want)
	}
	c.Apply(Entry{Event: ContactOutcome{ContactID: "call-1", Outcome: OutcomeCallNoAnswer, At: at.Add(time.Minute)}})
	if got, want := gateSummary(l.Gate(c, "", at.Add(2*time.Minute)), ny), "contact_released phone; "; got != want {
		t.Errorf("after no answer: %s\nwant %s", got, want)
	}
}

// cn: at most 3 connected calls a borrower-local day. A released call whose
// outcome has not come yet holds its place, so a call in flight cannot
// make a 4th; its outcome (no answer) frees the place, and so does the
// reservation's time limit.
func TestCNConnectedCallsPerDay(t *testing.T) {
	l, c, sh := capsCase(t, "cn", "Asia/Shanghai")
	at := func(h, m int) time.Time { return time.Date(2026, 3, 10, h, m, 0, 0, sh) }
	for i, h := range []int{9, 10} {
		id := fmt.Sprintf("call-%d", i)
		call(c, id, at(h, 0))
		c.Apply(Entry{Event: ContactOutcome{ContactID: id, Outcome: OutcomeCallConnected, At: at(h, 5)}})
	}
	call(c, "in-flight", at(11, 0)) // no outcome yet
	ask(c, "fourth", at(11, 30), ChannelPhone)
	if got, want := gateSummary(l.Gate(c, "", at(11, 30)), sh), "contact_held phone by cn.voice-per-day until 03-11 08:00; "; got != want {
		t.Errorf("with a call in flight: %s\nwant %s", got, want)
	}
	if got, want := gateSummary(l.Gate(c, "", at(13, 1)), sh), "contact_released phone; "; got != want {
		t.Errorf("the reservation expired (2 h): %s\nwant %s", got, want)
	}
	c.Apply(Entry{Event: ContactOutcome{ContactID: "in-flight", Outcome: OutcomeCallNoAnswer, At: at(11, 10)}})
	if got, want := gateSummary(l.Gate(c, "", at(11, 30)), sh), "contact_released phone; "; got != want {
		t.Errorf("the call in flight was not answered: %s\nwant %s", got, want)
	}
	c.Apply(Entry{Event: ContactOutcome{ContactID: "in-flight", Outcome: OutcomeCallRightParty, At: at(11, 10)}})
	if got, want := gateSummary(l.Gate(c, "", at(11, 30)), sh), "contact_held phone by cn.voice-per-day until 03-11 08:00; "; got != want {
		t.Errorf("3 connected: %s\nwant %s", got, want)
	}
}

// Every release on a channel capped per borrower is an append of its own
// to the borrower's log, but for a retry of the same release while its
// first entry is still a live reservation: an entry left on day 1 by a
// release whose loan write failed does not stand in for the release the
// next morning, which must be a guarded append that day.
func TestBorrowerAppends(t *testing.T) {
	l, c, loc := capsCase(t, "cn", "Asia/Shanghai")
	task := ContactTask{ID: "c1-escalation-d16-phone", Channel: ChannelPhone}
	sms := ContactTask{ID: "c1-escalation-d16-sms", Channel: ChannelSMS}
	release := func(at time.Time) []Decision {
		tk := task
		tk.NotBefore = at
		s := sms
		s.NotBefore = at
		return []Decision{{Kind: KindContactReleased, Tasks: []ContactTask{tk, s}}}
	}
	day1Late := time.Date(2026, 3, 18, 21, 59, 0, 0, loc)
	day2 := time.Date(2026, 3, 19, 8, 0, 0, 0, loc)
	cases := []struct {
		name string
		own  []BorrowerEntry
		now  time.Time
		want int
	}{
		{"first release", nil, day2, 1},
		{"retried within the reservation", []BorrowerEntry{{Task: task.ID, Channel: ChannelPhone, At: day2.Add(-time.Minute)}}, day2, 0},
		{"entry left the evening before", []BorrowerEntry{{Task: task.ID, Channel: ChannelPhone, At: day1Late}}, day2, 1},
		{"entry older than the reservation", []BorrowerEntry{{Task: task.ID, Channel: ChannelPhone, At: day2.Add(-3 * time.Hour)}}, day2, 1},
	}
	for _, tc := range cases {
		got := l.BorrowerAppends(c, release(tc.now), tc.own, tc.now)
		if len(got) != tc.want || (len(got) == 1 && (got[0].Task != task.ID || !got[0].At.Equal(tc.now))) {
			t.Errorf("%s: appends %+v, want %d for the phone task at %s (the SMS is not capped)", tc.name, got, tc.want, tc.now)
		}
	}
	// Its outcome is appended once.
	call(c, task.ID, day2)
	c.Apply(Entry{Event: ContactOutcome{ContactID: task.ID, Outcome: OutcomeCallConnected, At: day2.Add(time.Minute)}})
	own := []BorrowerEntry{{Task: task.ID, Channel: ChannelPhone, At: day2}}
	got := l.BorrowerAppends(c, nil, own, day2.Add(2*time.Minute))
	if len(got) != 1 || got[0].Outcome != OutcomeCallConnected {
		t.Fatalf("after the outcome: %+v, want the outcome appended", got)
	}
	if again := l.BorrowerAppends(c, nil, append(own, got[0]), day2.Add(3*time.Minute)); len(again) != 0 {
		t.Errorf("outcome appended again: %+v", again)
	}
}
