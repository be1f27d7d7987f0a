package policy

import (
	"fmt"
	"testing"
	"time"
)

var t0 = time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)

func testLadder() Ladder {
	return Ladder{Policy: Default(), Calendar: Calendar{Day: time.Second}}
}

func due(id string, amount int64, at time.Time) Entry {
	return Entry{Event: InstallmentDue{ID: id, Amount: Money{"CNY", amount}, DueAt: at, Zone: "Asia/Shanghai", ContactRef: "ref-1"}}
}

func paid(id string, amount int64, inst string) Entry {
	return Entry{Event: Repayment{PaymentID: id, InstallmentID: inst, Amount: Money{"CNY", amount}}}
}

func day(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }

// advance plays the pipeline by hand: fire the next step and record each
// decision, as the stages would, until the ladder has nothing due by until.
func advance(t *testing.T, l Ladder, c *Case, until time.Time) []Decision {
	t.Helper()
	var out []Decision
	for range 1000 {
		s := l.NextStep(c)
		if s == nil || s.At.After(until) {
			return out
		}
		c.Apply(Entry{Event: StepFired{Step: *s}})
		d := l.OnStep(c, *s, s.At)
		if d == nil {
			return out
		}
		c.Apply(Entry{Event: *d})
		out = append(out, *d)
		if d.Kind == KindOverdueConfirmed {
			fc := l.FirstContact(c, d.Ctx.Case, s.At)
			if fc == nil {
				t.Fatal("no first contact after confirmation")
			}
			c.Apply(Entry{Event: *fc})
			out = append(out, *fc)
		}
	}
	t.Fatal("ladder did not settle")
	return nil
}

func kinds(ds []Decision) []string {
	var k []string
	for _, d := range ds {
		k = append(k, d.Kind.String()+"@"+itoa(d.Ctx.DPD)+"/"+d.Ctx.Tier.String())
	}
	return k
}

func itoa(n int) string { return time.Duration(n).String()[:len(time.Duration(n).String())-2] }

func TestLadderNeverPaid(t *testing.T) {
	l := testLadder()
	c := Fold([]Entry{due("i1", 1000, t0)})
	got := kinds(advance(t, l, c, day(400)))
	want := []string{"overdue_confirmed@1/light", "contact_requested@1/light", "escalated@16/medium",
		"handed_off@31/severe", "legal_referred@90/severe"}
	if len(got) != len(want) {
		t.Fatalf("decisions = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("decision %d = %s, want %s", i, got[i], want[i])
		}
	}
	if s := l.NextStep(c); s != nil {
		t.Errorf("NextStep after legal referral = %+v, want nil", s)
	}
}

func TestLadderBoundaries(t *testing.T) {
	// The step each stage waits for, and its DPD, at the default boundaries.
	l := testLadder()
	tests := []struct {
		stage     Stage
		wantStage Stage
		wantDPD   int
	}{
		{StageFirstContact, StageEscalation, 16},
		{StageEscalation, StageHandoff, 31},
		{StageHandoff, StageLegal, 90},
	}
	for _, tt := range tests {
		c := Fold([]Entry{due("i1", 1000, t0)})
		c.Open, c.Number, c.Stage, c.DPD = true, 1, tt.stage, 1
		s := l.NextStep(c)
		if s == nil || s.Stage != tt.wantStage || s.DPD != tt.wantDPD || !s.At.Equal(day(tt.wantDPD)) {
			t.Errorf("NextStep(after %s) = %+v, want %s at DPD %d", tt.stage, s, tt.wantStage, tt.wantDPD)
		}
	}
	c := Fold([]Entry{due("i1", 1000, t0)})
	if s := l.NextStep(c); s == nil || s.Stage != StageOverdueConfirmation || s.DPD != 1 {
		t.Errorf("NextStep(new loan) = %+v, want confirmation at DPD 1", s)
	}
	l.Policy.GraceDays = 3
	if s := l.NextStep(c); s == nil || s.DPD != 4 || !s.At.Equal(day(4)) {
		t.Errorf("NextStep(grace 3) = %+v, want confirmation at DPD 4", s)
	}
}

func TestConfiguredThresholds(t *testing.T) {
	l := testLadder()
	l.Policy.HandoffDPD, l.Policy.LegalDPD = 45, 120
	c := Fold([]Entry{due("i1", 1000, t0)})
	got := kinds(advance(t, l, c, day(400)))
	if got[3] != "handed_off@45/severe" || got[4] != "legal_referred@120/severe" {
		t.Errorf("decisions = %v, want handoff at 45 and legal at 120", got)
	}
}

func TestPaidInFullClosesAtAnyStage(t *testing.T) {
	l := testLadder()
	for _, dpd := range []int{1, 10, 15, 16, 30, 31, 89, 90, 200} {
		c := Fold([]Entry{due("i1", 1000, t0)})
		advance(t, l, c, day(dpd))
		c.Apply(paid("p1", 1000, ""))
		d := l.OnLenderEvent(c, day(dpd).Add(500*time.Millisecond))
		if d == nil || d.Kind != KindCaseClosed || d.CloseReason != CloseCured {
			t.Fatalf("paid at DPD %d: decision = %+v, want case closed as cured", dpd, d)
		}
		if d.Ctx.DPD != dpd {
			t.Errorf("paid at DPD %d: closed at DPD %d", dpd, d.Ctx.DPD)
		}
		c.Apply(Entry{Event: *d})
		if s := l.NextStep(c); s != nil {
			t.Errorf("paid at DPD %d: next step %+v, want none", dpd, s)
		}
	}
}

func TestPartialPaymentKeepsLadder(t *testing.T) {
	l := testLadder()
	c := Fold([]Entry{due("i1", 1000, t0)})
	advance(t, l, c, day(5))
	c.Apply(paid("p1", 400, "i1"))
	if d := l.OnLenderEvent(c, day(5)); d != nil {
		t.Fatalf("partial payment decided %+v, want nothing", d)
	}
	ds := advance(t, l, c, day(16))
	if len(ds) != 1 || ds[0].Kind != KindEscalated || ds[0].Ctx.Overdue.Minor != 600 {
		t.Fatalf("after partial payment = %+v, want escalation on 600", ds)
	}
	if ds[0].Tasks[0].Fees.Minor != 600*5*16/10000 {
		t.Errorf("escalation fees = %v, want %d", ds[0].Tasks[0].Fees, 600*5*16/10000)
	}
}

func TestPaymentBeforeInstallment(t *testing.T) {
	l := testLadder()
	c := Fold([]Entry{paid("p1", 1000, "i1"), due("i1", 1000, t0)})
	if s := l.NextStep(c); s != nil {
		t.Errorf("prepaid installment: NextStep = %+v, want none", s)
	}
}

func TestDuplicateLenderEventsFoldOnce(t *testing.T) {
	c := Fold([]Entry{due("i1", 1000, t0), due("i1", 1000, t0), paid("p1", 300, ""), paid("p1", 300, "")})
	if got := c.Outstanding(); len(got) != 1 || got[0] != 700 {
		t.Errorf("Outstanding = %v, want [700]", got)
	}
}

func TestStaleStepDecidesNothing(t *testing.T) {
	l := testLadder()
	c := Fold([]Entry{due("i1", 1000, t0)})
	s := *l.NextStep(c)
	c.Apply(Entry{Event: StepFired{Step: s}})
	c.Apply(paid("p1", 1000, ""))
	if d := l.OnStep(c, s, s.At); d != nil {
		t.Errorf("step after payment decided %+v, want nothing", d)
	}
	// A step the case no longer expects (another case number) is ignored too.
	c2 := Fold([]Entry{due("i1", 1000, t0)})
	other := s
	other.ID, other.Case = "c7-overdue_confirmation", 7
	if d := l.OnStep(c2, other, s.At); d != nil {
		t.Errorf("foreign step decided %+v, want nothing", d)
	}
}

func TestReconcile(t *testing.T) {
	l := testLadder()
	c := Fold([]Entry{due("i1", 1000, t0)})
	step, cancel := l.Reconcile(c, t0)
	if step == nil || cancel != nil {
		t.Fatalf("Reconcile(new loan) = %+v, %+v; want a step", step, cancel)
	}
	c.Apply(Entry{Event: TimerSet{Step: *step}})
	if s, d := l.Reconcile(c, t0); s != nil || d != nil {
		t.Errorf("Reconcile(timer set) = %+v, %+v; want nothing", s, d)
	}
	c.Apply(paid("p1", 1000, ""))
	s, d := l.Reconcile(c, t0)
	if s != nil || d == nil || d.Kind != KindStepCancelled || d.CancelledStep != step.ID {
		t.Errorf("Reconcile(paid before due) = %+v, %+v; want the step cancelled", s, d)
	}
}

func TestFirstContactOncePerCase(t *testing.T) {
	l := testLadder()
	c := Fold([]Entry{due("i1", 1000, t0)})
	advance(t, l, c, day(2))
	if d := l.FirstContact(c, 1, day(2)); d != nil {
		t.Errorf("second first contact = %+v, want nothing", d)
	}
}

func TestSettledClosesCase(t *testing.T) {
	l := testLadder()
	c := Fold([]Entry{due("i1", 1000, t0)})
	advance(t, l, c, day(40))
	c.Apply(Entry{Event: Settled{}})
	d := l.OnLenderEvent(c, day(40))
	if want := PlacementID(c.Key, 1); d == nil || d.CloseReason != CloseSettled || d.PlacementID != want {
		t.Errorf("settled = %+v, want closed as settled recalling %s", d, want)
	}
}

func cadenceLadder() Ladder {
	l := testLadder()
	sms, phone, email := []Channel{ChannelSMS}, []Channel{ChannelPhone}, []Channel{ChannelEmail}
	l.Policy.Cadence = []CadenceStep{
		{StageFirstContact, 1, sms, "light_reminder"},
		{StageFirstContact, 3, phone, "light_reminder"},
		{StageFirstContact, 7, sms, "light_reminder"},
		{StageEscalation, 16, []Channel{ChannelPhone, ChannelSMS}, "medium_notice"},
		{StageEscalation, 17, sms, "medium_notice"},
		{StageEscalation, 18, phone, "medium_notice"},
		{StageEscalation, 20, email, "medium_notice"},
	}
	return l
}

func TestCadence(t *testing.T) {
	l := cadenceLadder()
	c := Fold([]Entry{due("i1", 1000, t0)})
	var got []string
	for _, d := range advance(t, l, c, day(100)) {
		s := d.Kind.String() + "@" + itoa(d.Ctx.DPD)
		for _, task := range d.Tasks {
			s += "/" + task.Channel.String()
		}
		got = append(got, s)
	}
	want := []string{"overdue_confirmed@1", "contact_requested@1/sms", "contact_requested@3/phone", "contact_requested@7/sms",
		"escalated@16/phone/sms", "contact_requested@17/sms", "contact_requested@18/phone", "contact_requested@20/email",
		"handed_off@31", "legal_referred@90"}
	if len(got) != len(want) {
		t.Fatalf("decisions = %v\nwant %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("decision %d = %s, want %s", i, got[i], want[i])
		}
	}
}

// A case confirmed late (grace 20 days) skips the light cadence, opens with
// the medium tier's channels and enters escalation a day later: no two
// stage entries within a day.
func TestLateConfirmationSkipsMissedCadence(t *testing.T) {
	l := cadenceLadder()
	l.Policy.GraceDays = 19 // confirmed at DPD 20
	c := Fold([]Entry{due("i1", 1000, t0)})
	ds := advance(t, l, c, day(32))
	var got []string
	for _, d := range ds {
		got = append(got, d.Kind.String()+"@"+itoa(d.Ctx.DPD)+"/"+d.Ctx.Tier.String())
	}
	want := []string{"overdue_confirmed@20/medium", "contact_requested@20/medium", "escalated@21/medium", "handed_off@31/severe"}
	if len(got) != len(want) {
		t.Fatalf("decisions = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("decision %d = %s, want %s", i, got[i], want[i])
		}
	}
	if ds[1].Tasks[0].Template != "medium_notice" {
		t.Errorf("late first contact uses %q, want the medium template", ds[1].Tasks[0].Template)
	}
}

func TestCadencePaidMidStage(t *testing.T) {
	l := cadenceLadder()
	c := Fold([]Entry{due("i1", 1000, t0)})
	advance(t, l, c, day(4))
	if s := l.NextStep(c); s == nil || s.Stage != StageFirstContact || s.DPD != 7 {
		t.Errorf("NextStep at DPD 4 = %+v, want the DPD 7 contact", s)
	}
	c.Apply(paid("p1", 1000, ""))
	d := l.OnLenderEvent(c, day(4))
	if d == nil || d.Kind != KindCaseClosed {
		t.Fatalf("payment decided %+v, want case closed", d)
	}
	c.Apply(Entry{Event: *d})
	if s := l.NextStep(c); s != nil {
		t.Errorf("NextStep after cure = %+v, want none", s)
	}
}

func TestSimulate(t *testing.T) {
	l := Ladder{Policy: Default(), Calendar: Calendar{Day: RealDay}}
	in := InstallmentDue{ID: "1", Amount: Money{"CNY", 100000}, DueAt: time.Date(2026, 1, 10, 12, 0, 0, 0, time.UTC), Zone: "Asia/Shanghai"}
	never := kinds(l.Simulate(in, nil, 120))
	// Without a jurisdiction's pack the gate releases every contact at once.
	want := []string{"overdue_confirmed@1/light", "contact_requested@1/light", "contact_released@1/light", "escalated@16/medium",
		"contact_released@16/medium", "handed_off@31/severe", "legal_referred@90/severe"}
	if fmt.Sprint(never) != fmt.Sprint(want) {
		t.Errorf("never pays: %v, want %v", never, want)
	}
	cured := kinds(l.Simulate(in, []Payment{{DPD: 10, Amount: 100000}}, 120))
	if fmt.Sprint(cured) != fmt.Sprint([]string{"overdue_confirmed@1/light", "contact_requested@1/light", "contact_released@1/light", "case_closed@10/light"}) {
		t.Errorf("pays at DPD 10: %v", cured)
	}
	onTime := l.Simulate(in, []Payment{{DPD: 0, Amount: 100000}}, 120)
	if len(onTime) != 0 {
		t.Errorf("pays on the due date: %v, want no decisions", kinds(onTime))
	}
	partial := kinds(l.Simulate(in, []Payment{{DPD: 5, Amount: 40000}, {DPD: 20, Amount: 60000}}, 120))
	if fmt.Sprint(partial) != fmt.Sprint([]string{"overdue_confirmed@1/light", "contact_requested@1/light", "contact_released@1/light", "escalated@16/medium", "contact_released@16/medium", "case_closed@20/medium"}) {
		t.Errorf("pays in parts: %v", partial)
	}
}

// A stage's entry condition that does not hold defers the entry, which is
// evaluated again every day until it holds.
func TestEntryConditionDefers(t *testing.T) {
	l := testLadder()
	l.Policy.Entries = map[Stage]EntryCondition{StageHandoff: {DPD: 31, MissedInstallments: 2}, StageLegal: {DPD: 90, MinOverdue: 5000}}
	c := Fold([]Entry{due("i1", 1000, t0), due("i2", 1000, day(30))})
	ds := advance(t, l, c, day(120))
	var got []string
	for _, d := range ds {
		if d.Kind == KindEntryDeferred {
			continue
		}
		got = append(got, d.Kind.String()+"@"+itoa(d.Ctx.DPD))
	}
	// i2 is due on day 30 and overdue from day 31: two missed installments at DPD 31.
	want := []string{"overdue_confirmed@1", "contact_requested@1", "escalated@16", "handed_off@31"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("decisions = %v, want %v", got, want)
	}
	// Legal needs 5000 overdue but only 2000 is: deferred daily from DPD 90.
	deferred := 0
	for _, d := range ds {
		if d.Kind == KindEntryDeferred {
			deferred++
			if d.DeferredStage != StageLegal || d.Ctx.Stage != StageHandoff {
				t.Errorf("deferral %+v, want legal deferred while in handoff", d)
			}
		}
	}
	if deferred != 120-90+1 {
		t.Errorf("legal deferred %d times, want once a day from DPD 90 to 120 (31)", deferred)
	}

	// With only one installment the handoff waits for the second to be missed.
	c = Fold([]Entry{due("i1", 1000, t0), due("i2", 1000, day(35))})
	ds = advance(t, l, c, day(40))
	for _, d := range ds {
		if d.Kind == KindHandedOff && d.Ctx.DPD != 36 {
			t.Errorf("handed off at DPD %d, want 36 (when i2 is missed)", d.Ctx.DPD)
		}
	}
	if last := ds[len(ds)-1]; last.Kind != KindHandedOff {
		t.Errorf("last decision %s, want handed_off", last.Kind)
	}
}

// An installment announced 20 days after its due date (or a confirmation
// step processed after an outage) is decided at today's DPD: medium tier,
// no burst of the light tier's missed contacts.
func TestLateStepDecidedAtTodaysDPD(t *testing.T) {
	l := cadenceLadder()
	l.Calendar = Calendar{Day: RealDay}
	due0 := time.Date(2026, 4, 1, 10, 0, 0, 0, time.UTC)
	c := Fold([]Entry{{Event: InstallmentDue{ID: "i1", Amount: Money{"CNY", 100000}, DueAt: due0, Zone: "UTC"}}})
	now := due0.Add(20 * RealDay)
	var ds []Decision
	for range 10 {
		s := l.NextStep(c)
		if s == nil || s.At.After(now) {
			break
		}
		c.Apply(Entry{Event: StepFired{Step: *s}})
		d := l.OnStep(c, *s, now)
		if d == nil {
			break
		}
		c.Apply(Entry{Event: *d})
		ds = append(ds, *d)
		if d.Kind == KindOverdueConfirmed {
			fc := l.FirstContact(c, d.Ctx.Case, now)
			c.Apply(Entry{Event: *fc})
			ds = append(ds, *fc)
		}
	}
	var got []string
	for _, d := range ds {
		got = append(got, fmt.Sprintf("%s@%d/%s", d.Kind, d.Ctx.DPD, d.Ctx.Tier))
	}
	// Escalation, passed too, waits a day after the confirmation: a
	// borrower is not confirmed overdue and escalated within the hour.
	want := []string{"overdue_confirmed@20/medium", "contact_requested@20/medium"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("late decisions = %v, want %v", got, want)
	}
	if ds[1].Tasks[0].Fees.Minor != 100000*5*20/10000 {
		t.Errorf("first contact's fees = %v, want 20 days' worth", ds[1].Tasks[0].Fees)
	}
	if s := l.NextStep(c); s == nil || s.Stage != StageEscalation || !s.At.Equal(now.Add(RealDay)) || s.DPD != 21 {
		t.Errorf("next step = %+v, want escalation a day after the confirmation (DPD 21, %s)", s, now.Add(RealDay))
	}
}

func TestForeignCurrencyPaymentNotCounted(t *testing.T) {
	l := testLadder()
	c := Fold([]Entry{due("i1", 50000, t0)})
	advance(t, l, c, day(2))
	c.Apply(Entry{Event: Repayment{PaymentID: "p1", Amount: Money{"JPY", 50000}}})
	if d := l.OnLenderEvent(c, day(2)); d != nil {
		t.Errorf("a JPY payment on a CNY loan decided %+v, want nothing", d)
	}
	if o, _ := c.Overdue(l.Calendar, day(2)); o.Minor != 50000 {
		t.Errorf("overdue after a foreign payment = %v, want 500.00 CNY", o)
	}
}

// The oracle fires a step set in the past (a release finding the rungs it
// passed) at once, as the server does: a dispute from DPD 12 to DPD 40
// escalates at DPD 40 and hands off a day later, not inside the hold.
func TestSimulateFiresPastStepsAtOnce(t *testing.T) {
	l := Ladder{Policy: Default(), Calendar: Calendar{Day: RealDay}}
	due0 := time.Date(2026, 4, 1, 10, 0, 0, 0, time.UTC)
	in := InstallmentDue{ID: "i1", Amount: Money{"CNY", 100000}, DueAt: due0, Zone: "UTC"}
	mid := func(d int) time.Time { return l.Calendar.DPDStart(due0, time.UTC, d).Add(12 * time.Hour) }
	ds := l.Simulate(in, []Payment{
		{DPD: 12, Event: HoldPlaced{ID: "d-1", Kind: HoldDispute, At: mid(12)}},
		{DPD: 40, Event: HoldReleased{ID: "d-1", At: mid(40)}},
	}, 45)
	got := map[DecisionKind]int{}
	for _, d := range ds {
		if d.Kind == KindEscalated || d.Kind == KindHandedOff {
			got[d.Kind] = d.Ctx.DPD
		}
	}
	if got[KindEscalated] != 40 || got[KindHandedOff] != 41 {
		t.Errorf("escalated at DPD %d, handed off at DPD %d; want 40 and 41", got[KindEscalated], got[KindHandedOff])
	}
}
