package stage_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/opendunning/dunning/pkg/codec"
	"github.com/opendunning/dunning/pkg/loanlog"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/timeline"
)

// holdWorld is a Shanghai loan under cn's window, with the policy changed
// by set.
func holdWorld(t *testing.T, set func(*policy.Policy)) *world {
	w := gateWorld(t, "Asia/Shanghai", "cn", 0, 0, func(l *time.Location) time.Time { return time.Date(2026, 3, 2, 18, 0, 0, 0, l) })
	l := w.deps.Ladder("", "")
	set(&l.Policy)
	if err := l.Policy.Validate(); err != nil {
		t.Fatal(err)
	}
	w.deps.Ladder = policy.Fixed(l)
	return w
}

// decided returns the loan's decisions of kind k.
func (w *world) decided(loan string, k policy.DecisionKind) []policy.Decision {
	return w.logged(loan, func(d policy.Decision) bool { return d.Kind == k })
}

// noContactBetween fails if a contact was asked for or released for the
// loan between from and to.
func (w *world) noContactBetween(loan string, from, to time.Time) {
	w.t.Helper()
	for _, d := range w.gated(loan) {
		if at := d.Ctx.DecidedAt; at.After(from) && at.Before(to) && d.Kind != policy.KindContactCancelled {
			w.t.Errorf("%s while held: %s at %s", loan, d.Kind, at.In(w.loc))
		}
	}
}

// Acceptance 1 (borrower's side), ladder_clock: pause. A dispute from DPD
// 12 to DPD 20 holds 8 days, which do not count: the ladder stands at DPD
// 12 on release, and escalation (DPD 16) is entered 4 days later, at the
// start of calendar DPD 24, decided at ladder DPD 16 in the medium tier.
// The calendar mode's counterpart is TestHoldStopsTheLadder.
func TestHoldPausesTheLadder(t *testing.T) {
	w := holdWorld(t, func(p *policy.Policy) { p.Holds.Pause = true })
	w.installment("L-1", 100000)
	w.drain()
	w.until(w.dpd(12, 10*time.Hour))
	w.lender("L-1", "d-1", policy.HoldPlaced{ID: "d-1", Kind: policy.HoldDispute, At: w.clock.Now()})
	w.drain()
	w.until(w.dpd(20, 10*time.Hour))
	w.lender("L-1", "d-1", policy.HoldReleased{ID: "d-1", At: w.clock.Now()})
	w.drain()
	w.until(w.dpd(23, 23*time.Hour))
	if got := w.decided("L-1", policy.KindEscalated); len(got) != 0 {
		t.Fatalf("escalated at %s, before 4 days after the release", got[0].Ctx.DecidedAt.In(w.loc))
	}
	w.until(w.dpd(25, 0))
	w.noContactBetween("L-1", w.dpd(12, 10*time.Hour), w.dpd(20, 10*time.Hour))
	esc := w.decided("L-1", policy.KindEscalated)
	if len(esc) != 1 {
		t.Fatalf("escalations = %d, want 1", len(esc))
	}
	if e := esc[0].Ctx; !e.DecidedAt.Equal(w.dpd(24, 0)) || e.DPD != 16 || e.Tier != policy.TierMedium {
		t.Errorf("escalation decided at %s at DPD %d (%s), want at calendar DPD 24 00:00, ladder DPD 16, medium",
			e.DecidedAt.In(w.loc), e.DPD, e.Tier)
	}
	// The step withdrawn at the hold, put back at the release.
	w.want("L-1", "overdue_confirmed", "contact_requested", "contact_held", "contact_released", "step_cancelled",
		"escalated", "contact_held", "contact_released")
	// The timeline tells it: the hold, its release and the decision.
	var kinds []string
	for _, e := range w.timeline("L-1").Entries {
		if e.Kind == "hold_placed" || e.Kind == "hold_released" || e.Kind == "escalated" {
			kinds = append(kinds, e.Kind)
		}
	}
	if fmt.Sprint(kinds) != "[hold_placed hold_released escalated]" {
		t.Errorf("timeline = %v, want the hold, its release and the escalation in order", kinds)
	}
	// Handoff (DPD 31) comes 15 ladder days after escalation: calendar DPD 39.
	w.until(w.dpd(40, 0))
	if h := w.decided("L-1", policy.KindHandedOff); len(h) != 1 || !h[0].Ctx.DecidedAt.Equal(w.dpd(39, 0)) || h[0].Ctx.DPD != 31 {
		t.Errorf("handoff = %+v, want one at calendar DPD 39, ladder DPD 31", h)
	}
}

// In calendar mode a release finds every rung it passed due, but stage
// entries still land a day apart: released at DPD 40, the loan is escalated
// at once and placed with the agency a day later, not in the same instant.
func TestStageEntriesADayApart(t *testing.T) {
	w := holdWorld(t, func(p *policy.Policy) {})
	w.installment("L-1", 100000)
	w.drain()
	w.until(w.dpd(12, 10*time.Hour))
	w.lender("L-1", "d-1", policy.HoldPlaced{ID: "d-1", Kind: policy.HoldDispute, At: w.clock.Now()})
	w.drain()
	w.until(w.dpd(40, 10*time.Hour))
	w.lender("L-1", "d-1", policy.HoldReleased{ID: "d-1", At: w.clock.Now()})
	w.drain()
	w.until(w.dpd(43, 0))
	esc, hand := w.decided("L-1", policy.KindEscalated), w.decided("L-1", policy.KindHandedOff)
	if len(esc) != 1 || len(hand) != 1 {
		t.Fatalf("escalations %d, handoffs %d, want 1 each", len(esc), len(hand))
	}
	if at := esc[0].Ctx.DecidedAt; !at.Equal(w.dpd(40, 10*time.Hour)) {
		t.Errorf("escalated at %s, want at the release", at.In(w.loc))
	}
	if at := hand[0].Ctx.DecidedAt; !at.Equal(w.dpd(41, 10*time.Hour)) || hand[0].Ctx.DPD != 41 {
		t.Errorf("handed off at %s (DPD %d), want a day after the escalation (DPD 41, 10:00)", at.In(w.loc), hand[0].Ctx.DPD)
	}
}

// Acceptance 3 (borrower's side): a breathing space from DPD 20 holds every
// contact for 60 days and ends by itself at day 60 (hold_deadline, lifted);
// the text rendered after it carries the fees of DPD 20, not of DPD 80 (no
// fee accrues in a breathing space). Another loan's payment on day 30 of
// its breathing space cures it.
func TestBreathingSpace(t *testing.T) {
	w := holdWorld(t, func(p *policy.Policy) {
		p.Cadence = []policy.CadenceStep{
			{Stage: policy.StageFirstContact, DPD: 1, Channels: []policy.Channel{policy.ChannelSMS}, Template: "light_reminder"},
			{Stage: policy.StageEscalation, DPD: 16, Channels: []policy.Channel{policy.ChannelSMS}, Template: "medium_notice"},
			{Stage: policy.StageEscalation, DPD: 25, Channels: []policy.Channel{policy.ChannelSMS}, Template: "medium_notice"},
		}
	})
	w.installment("L-1", 100000)
	w.installment("L-2", 100000)
	w.drain()
	placed := w.dpd(20, 10*time.Hour)
	w.until(placed)
	for _, loan := range []string{"L-1", "L-2"} {
		w.lender(loan, "bs-1", policy.HoldPlaced{ID: "bs-1", Kind: policy.HoldBreathingSpace, At: placed})
	}
	w.drain()
	w.until(w.dpd(50, 12*time.Hour))
	w.pay("L-2", "p-1", 100000)
	w.drain()
	lifted := placed.Add(policy.BreathingSpaceDays * policy.RealDay)
	w.until(lifted.Add(-time.Second))
	if d := w.decided("L-1", policy.KindHoldDeadline); len(d) != 0 {
		t.Fatalf("breathing space ended at %s, before day 60", d[0].Ctx.DecidedAt.In(w.loc))
	}
	w.until(w.dpd(81, 23*time.Hour))
	w.noContactBetween("L-1", placed, lifted)
	end := w.decided("L-1", policy.KindHoldDeadline)
	if len(end) != 1 || !end[0].HoldLifted || !end[0].Ctx.DecidedAt.Equal(lifted) {
		t.Fatalf("hold deadlines = %+v, want the breathing space lifted at %s", end, lifted.In(w.loc))
	}
	// The DPD-25 contact, passed while held, is decided at the lift at
	// today's DPD (80), with the fees of the 20 days before the space.
	contacts := w.decided("L-1", policy.KindContactRequested)
	last := contacts[len(contacts)-1]
	if last.Ctx.DPD != 80 || !last.Ctx.DecidedAt.Equal(lifted) {
		t.Fatalf("contact after the space at DPD %d, %s; want DPD 80 at the lift", last.Ctx.DPD, last.Ctx.DecidedAt.In(w.loc))
	}
	want := w.deps.Ladder("", "").Policy.Fees(last.Tasks[0].AmountDue, 20)
	if got := last.Tasks[0].Fees; got != want || got.Minor == 0 {
		t.Errorf("fees after the breathing space = %s, want %s (20 days' worth)", got, want)
	}
	after := 0
	for _, d := range w.decided("L-1", policy.KindContactReleased) {
		if !d.Ctx.DecidedAt.Before(lifted) {
			after++
			if d.Tasks[0].Fees != want {
				t.Errorf("released after the space with fees %s, want %s", d.Tasks[0].Fees, want)
			}
		}
	}
	if after == 0 {
		t.Error("no contact released after the breathing space")
	}
	if got := w.decisions("L-2"); !slices.Contains(got, "case_closed:cured") || slices.Contains(got, "handed_off") {
		t.Errorf("L-2, paid on day 30 of its breathing space: %v, want cured, never handed off", got)
	}
}

// Acceptance 4 (borrower's side): the borrower of a placed account dies.
// The placement is recalled at once; no contact and no stage follow, and
// legal referral is never entered, well past DPD 90; the lender's
// settlement still closes the case. A loan whose borrower died at DPD 5 is
// never escalated.
func TestDeceased(t *testing.T) {
	w := holdWorld(t, func(p *policy.Policy) {})
	w.installment("L-1", 100000)
	w.installment("L-2", 100000)
	w.drain()
	w.until(w.dpd(5, 9*time.Hour))
	w.lender("L-2", "dec-1", policy.HoldPlaced{ID: "dec-1", Kind: policy.HoldDeceased, At: w.clock.Now()})
	w.drain()
	died := w.dpd(40, 9*time.Hour)
	w.until(died)
	w.lender("L-1", "dec-1", policy.HoldPlaced{ID: "dec-1", Kind: policy.HoldDeceased, At: died})
	w.drain()
	w.until(w.dpd(150, 0))
	rec := w.decided("L-1", policy.KindPlacementRecalled)
	hand := w.decided("L-1", policy.KindHandedOff)
	if len(hand) != 1 || len(rec) != 1 || rec[0].PlacementID != hand[0].PlacementID || rec[0].AgencyID != hand[0].AgencyID {
		t.Fatalf("handoffs %+v, recalls %+v: want the placement recalled once", hand, rec)
	}
	w.noContactBetween("L-1", died, w.dpd(150, 0))
	w.noContactBetween("L-2", w.dpd(5, 9*time.Hour), w.dpd(150, 0))
	for _, loan := range []string{"L-1", "L-2"} {
		if l := w.decided(loan, policy.KindLegalReferred); len(l) != 0 {
			t.Errorf("%s referred for legal action at DPD %d after the borrower died", loan, l[0].Ctx.DPD)
		}
	}
	if e := w.decided("L-2", policy.KindEscalated); len(e) != 0 {
		t.Errorf("L-2 escalated at DPD %d after the borrower died", e[0].Ctx.DPD)
	}
	w.lender("L-1", "", policy.Settled{At: w.clock.Now()})
	w.drain()
	got := w.decisions("L-1")
	if got[len(got)-1] != "case_closed:settled" {
		t.Errorf("L-1 after the settlement: %v, want the case closed", got)
	}
	if c := w.decided("L-1", policy.KindCaseClosed); c[0].PlacementID != "" {
		t.Errorf("the closure recalls %q again", c[0].PlacementID)
	}
}

// A review deadline replaces the pending step while a hold is open: a
// dispute with a 30-day review records hold_deadline on day 30 and stays
// open; the ladder does not move.
func TestHoldReviewDeadline(t *testing.T) {
	w := holdWorld(t, func(p *policy.Policy) { p.Holds.ReviewDays = map[policy.HoldKind]int{policy.HoldDispute: 30} })
	w.installment("L-1", 100000)
	w.drain()
	placed := w.dpd(3, 10*time.Hour)
	w.until(placed)
	w.lender("L-1", "d-1", policy.HoldPlaced{ID: "d-1", Kind: policy.HoldDispute, At: placed})
	w.drain()
	if s := w.pendingStep("L-1"); s.ID != "hold-d-1" || !s.At.Equal(placed.Add(30*policy.RealDay)) {
		t.Errorf("pending step while disputed = %s at %s, want the review at day 30", s.ID, s.At.In(w.loc))
	}
	w.until(w.dpd(60, 0))
	d := w.decided("L-1", policy.KindHoldDeadline)
	if len(d) != 1 || d[0].HoldLifted || !d[0].Ctx.DecidedAt.Equal(placed.Add(30*policy.RealDay)) {
		t.Fatalf("hold deadlines = %+v, want one review due, not lifted", d)
	}
	if e := w.decided("L-1", policy.KindEscalated); len(e) != 0 {
		t.Errorf("escalated while disputed (after the review date)")
	}
}

// timeline builds the loan's timeline from the world's log, as the API
// does from the stream's.
func (w *world) timeline(loan string) timeline.Timeline {
	w.t.Helper()
	var raws []loanlog.Raw
	for _, m := range w.log.Since(0) {
		if m.Loan != loan {
			continue
		}
		_, pm, err := codec.Encode(tenant, loan, m.Event)
		if err != nil {
			w.t.Fatal(err)
		}
		b, err := proto.Marshal(pm)
		if err != nil {
			w.t.Fatal(err)
		}
		raws = append(raws, loanlog.Raw{Seq: m.Seq, Subject: m.Subject, Time: m.Time, Data: b})
	}
	return timeline.Build(w.deps.Ladder("", ""), tenant, loan, raws, w.clock.Now())
}

// Acceptance 2 (borrower's side): a dispute recorded at DPD 12 10:00 that
// the borrower raised two days before: the contacts made in those two days
// (DPD 11 and DPD 12, at 08:00) are flagged contact_after_hold in the
// timeline; the one made before it (DPD 10) is not. The timeline lists
// the hold.
func TestLateHoldFlagsContacts(t *testing.T) {
	w := holdWorld(t, func(p *policy.Policy) {
		p.Cadence = []policy.CadenceStep{{Stage: policy.StageFirstContact, DPD: 1, Channels: []policy.Channel{policy.ChannelSMS}, Template: "light_reminder"}}
		for d := 9; d <= 15; d++ {
			p.Cadence = append(p.Cadence, policy.CadenceStep{Stage: policy.StageFirstContact, DPD: d, Channels: []policy.Channel{policy.ChannelSMS}, Template: "light_reminder"})
		}
	})
	w.installment("L-1", 100000)
	w.drain()
	recorded := w.dpd(12, 10*time.Hour)
	w.until(recorded)
	w.lender("L-1", "d-1", policy.HoldPlaced{ID: "d-1", Kind: policy.HoldDispute, At: recorded.Add(-2 * policy.RealDay)})
	w.drain()
	w.until(w.dpd(16, 0))
	tl := w.timeline("L-1")
	var flagged []int
	released := 0
	for _, e := range tl.Entries {
		if e.Kind != "contact_released" {
			if len(e.Flags) > 0 {
				t.Errorf("%s flagged %v", e.Kind, e.Flags)
			}
			continue
		}
		released++
		if slices.Contains(e.Flags, timeline.FlagContactAfterHold) {
			flagged = append(flagged, e.DPD)
		}
	}
	if fmt.Sprint(flagged) != "[11 12]" || released != 5 {
		t.Errorf("flagged releases at DPD %v of %d, want DPD 11 and 12 of 5 (DPD 1, 9-12)", flagged, released)
	}
	if len(tl.Holds) != 1 || tl.Holds[0].ID != "d-1" || tl.Holds[0].Kind != "dispute" || !tl.Holds[0].Open {
		t.Errorf("timeline holds = %+v, want the open dispute d-1", tl.Holds)
	}
	var b strings.Builder
	if err := tl.WriteText(&b); err != nil || strings.Count(b.String(), "[FLAGGED contact_after_hold]") != 2 {
		t.Errorf("text timeline (%v):\n%s\nwant two flagged lines", err, b.String())
	}
}

// A hold that lands between the confirmation and its first contact (the
// first-contact stage's read and write): no contact while held, and the
// first contact is made when the hold is lifted, at that day's DPD.
func TestHoldBetweenConfirmationAndFirstContact(t *testing.T) {
	w := holdWorld(t, func(p *policy.Policy) {})
	w.installment("L-1", 100000)
	w.drain()
	placed := false
	w.log.BeforeWrite = func(_, loan string) {
		if !placed && len(w.decided(loan, policy.KindOverdueConfirmed)) == 1 {
			placed = true
			w.lender(loan, "h-1", policy.HoldPlaced{ID: "h-1", Kind: policy.HoldCeaseAll, At: w.clock.Now()})
		}
	}
	w.until(w.dpd(3, 10*time.Hour))
	if !placed {
		t.Fatal("the hold never landed")
	}
	if g := w.gated("L-1"); len(g) != 0 {
		t.Fatalf("contact while held: %s", g[0].Kind)
	}
	w.lender("L-1", "h-1", policy.HoldReleased{ID: "h-1", At: w.clock.Now()})
	w.drain()
	w.until(w.dpd(4, 0))
	w.want("L-1", "overdue_confirmed", "contact_requested", "contact_released")
	if fc := w.decided("L-1", policy.KindContactRequested); len(fc) != 1 || fc[0].Ctx.DPD != 3 || !fc[0].Ctx.DecidedAt.Equal(w.dpd(3, 10*time.Hour)) {
		t.Errorf("first contact = %+v, want one at the release (DPD 3, 10:00)", fc)
	}
}
