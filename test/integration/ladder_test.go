package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/opendunning/dunning/pkg/policy"
)

// Acceptance 1: a loan never paid climbs the whole ladder, each event once.
func TestNeverPaidClimbsTheLadder(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 40*time.Millisecond)
	day := h.day
	h.startPipeline()
	h.send(dueEvent("L-never", "1", 100000, time.Now()))
	h.waitKind("L-never", policy.KindLegalReferred, 1, 90*day+15*time.Second)

	es := h.entries("L-never")
	c := counts(es)
	for _, k := range []policy.DecisionKind{policy.KindOverdueConfirmed, policy.KindContactRequested, policy.KindEscalated,
		policy.KindHandedOff, policy.KindLegalReferred} {
		if c[k.String()] != 1 {
			t.Errorf("%s recorded %d times, want 1; log: %s", k, c[k.String()], summary(es))
		}
	}
	// Nothing else was decided: no closure, cancellation or deferral.
	var decided []string
	for _, e := range es {
		if d, ok := e.event.(policy.Decision); ok {
			decided = append(decided, d.Kind.String())
		}
		if e.kind == "invalid" {
			t.Errorf("undecodable entry %d in the log: %s", e.seq, summary(es))
		}
	}
	// The harness's policy has no jurisdiction: the gate releases each
	// contact at once.
	if got, want := strings.Join(decided, " "), "overdue_confirmed contact_requested contact_released escalated contact_released handed_off legal_referred"; got != want {
		t.Errorf("decisions = %s\nwant %s; log: %s", got, want, summary(es))
	}
	want := []struct {
		kind  policy.DecisionKind
		stage policy.Stage
		tier  policy.Tier
		dpd   int
		chans []policy.Channel
		tone  policy.Tone
	}{
		{policy.KindOverdueConfirmed, policy.StageOverdueConfirmation, policy.TierLight, 1, nil, 0},
		{policy.KindContactRequested, policy.StageFirstContact, policy.TierLight, 1, []policy.Channel{policy.ChannelSMS}, policy.ToneGentle},
		{policy.KindEscalated, policy.StageEscalation, policy.TierMedium, 16,
			[]policy.Channel{policy.ChannelPhone, policy.ChannelSMS, policy.ChannelEmail, policy.ChannelAppPush}, policy.ToneSerious},
		{policy.KindHandedOff, policy.StageHandoff, policy.TierSevere, 31, nil, 0},
		{policy.KindLegalReferred, policy.StageLegal, policy.TierSevere, 90, nil, 0},
	}
	var got []policy.Decision
	for _, e := range es {
		if d, ok := e.event.(policy.Decision); ok && !d.Kind.Gate() {
			got = append(got, d)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("decisions = %s, want %d", summary(es), len(want))
	}
	for i, w := range want {
		d := got[i]
		if d.Kind != w.kind || d.Ctx.Stage != w.stage || d.Ctx.Tier != w.tier || d.Ctx.DPD != w.dpd {
			t.Errorf("decision %d = %s %s %s DPD %d, want %s %s %s DPD %d", i, d.Kind, d.Ctx.Stage, d.Ctx.Tier, d.Ctx.DPD,
				w.kind, w.stage, w.tier, w.dpd)
		}
		if len(d.Tasks) != len(w.chans) {
			t.Errorf("%s tasks = %d, want %d", d.Kind, len(d.Tasks), len(w.chans))
			continue
		}
		for j, task := range d.Tasks {
			if task.Channel != w.chans[j] || task.Tone != w.tone || task.AmountDue.Minor != 100000 || task.DPD != w.dpd {
				t.Errorf("%s task %d = %+v, want %s %s 100000 DPD %d", d.Kind, j, task, w.chans[j], w.tone, w.dpd)
			}
		}
	}
	if d := got[1]; len(d.Tasks) == 1 && len(d.Tasks[0].RepaymentOptions) == 0 {
		t.Error("first contact offers no repayment options")
	}
	if d := got[2]; len(d.Tasks) > 0 && d.Tasks[0].Fees.Minor == 0 {
		t.Error("escalation states no late fees")
	}
	if h.timerPending("L-never") {
		t.Error("a step is still pending after legal referral")
	}
}

// Acceptance 2: paid in full at DPD 10, the case closes as cured, the pending
// step is cancelled and nothing more happens.
func TestPaidInFullAtDPD10(t *testing.T) {
	t.Parallel()
	// The payment lands half a day into DPD 10: a day this long leaves room
	// for a loaded CI machine.
	h := newHarness(t, 250*time.Millisecond)
	day := h.day
	h.startPipeline()
	due := time.Now()
	h.send(dueEvent("L-cure", "1", 50000, due))
	h.waitKind("L-cure", policy.KindContactRequested, 1, 5*time.Second)
	time.Sleep(time.Until(due.Add(10*day + day/2)))
	h.send(payEvent("L-cure", "p1", 50000))
	h.waitKind("L-cure", policy.KindCaseClosed, 1, 5*time.Second)

	d, _ := h.decision("L-cure", policy.KindCaseClosed)
	if d.CloseReason != policy.CloseCured || d.Ctx.DPD != 10 || d.ClosedAtStage != policy.StageFirstContact {
		t.Errorf("closed = %s at DPD %d in %s, want cured at DPD 10 in first_contact", d.CloseReason, d.Ctx.DPD, d.ClosedAtStage)
	}
	if h.timerPending("L-cure") {
		t.Error("escalation step still pending after cure")
	}
	// Past the time escalation would have fired, nothing follows the closure.
	time.Sleep(time.Until(due.Add(17 * day)))
	es := h.entries("L-cure")
	if last := es[len(es)-1]; last.kind != policy.KindCaseClosed.String() {
		t.Errorf("last entry = %s, want case_closed; log: %s", last.kind, summary(es))
	}
	if n := counts(es)[policy.KindEscalated.String()]; n != 0 {
		t.Errorf("escalated %d times after cure", n)
	}
}

// Acceptance 3: paid in full on the due date, never confirmed overdue.
func TestPaidOnDueDate(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 200*time.Millisecond)
	day := h.day
	h.startPipeline()
	due := time.Now().Add(time.Second) // due later today: the payment comes well before the due day ends
	h.send(dueEvent("L-ontime", "1", 30000, due))
	waitFor(t, 5*time.Second, func() error {
		if !h.timerPending("L-ontime") {
			return fmt.Errorf("confirmation step not scheduled; log %s", summary(h.entries("L-ontime")))
		}
		return nil
	})
	h.send(payEvent("L-ontime", "p1", 30000))
	h.waitKind("L-ontime", policy.KindStepCancelled, 1, 5*time.Second)
	time.Sleep(time.Until(due.Add(3 * day)))
	es := h.entries("L-ontime")
	if n := counts(es)[policy.KindOverdueConfirmed.String()]; n != 0 {
		t.Errorf("confirmed overdue %d times though paid on the due date; log: %s", n, summary(es))
	}
	if h.timerPending("L-ontime") {
		t.Error("confirmation step still pending")
	}
}

// Acceptance 4: a partial payment at DPD 5 keeps the ladder running with the
// remaining balance.
func TestPartialPaymentAtDPD5(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 80*time.Millisecond)
	day := h.day
	h.startPipeline()
	due := time.Now()
	h.send(dueEvent("L-part", "1", 100000, due))
	time.Sleep(time.Until(due.Add(5*day + day/2)))
	h.send(payEvent("L-part", "p1", 40000))
	h.waitKind("L-part", policy.KindEscalated, 1, 16*day+5*time.Second)
	d, _ := h.decision("L-part", policy.KindEscalated)
	if d.Ctx.Overdue.Minor != 60000 || d.Ctx.DPD != 16 {
		t.Errorf("escalated on %v at DPD %d, want 60000 at DPD 16", d.Ctx.Overdue, d.Ctx.DPD)
	}
	for _, task := range d.Tasks {
		if task.AmountDue.Minor != 60000 {
			t.Errorf("task %s asks for %v, want 60000", task.ID, task.AmountDue)
		}
	}
	if _, closed := h.decision("L-part", policy.KindCaseClosed); closed {
		t.Error("case closed by a partial payment")
	}
}

// Acceptance 5: every lender event published twice has each effect once.
func TestLenderEventsTwice(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 60*time.Millisecond)
	day := h.day
	h.startPipeline()
	due := time.Now()
	for range 2 {
		h.send(dueEvent("L-twice", "1", 90000, due))
		h.send(dueEvent("L-twice-b", "1", 90000, due))
	}
	h.waitKind("L-twice", policy.KindContactRequested, 1, 5*time.Second)
	time.Sleep(time.Until(due.Add(3*day + day/2)))
	for range 2 {
		h.send(payEvent("L-twice", "p1", 20000))
	}
	time.Sleep(time.Until(due.Add(6*day + day/2)))
	for range 2 {
		h.send(payEvent("L-twice", "p2", 70000))
	}
	h.waitKind("L-twice", policy.KindCaseClosed, 1, 5*time.Second)
	h.waitKind("L-twice-b", policy.KindEscalated, 1, 16*day+5*time.Second)
	// Let the duplicates drain through intake, then count.
	waitFor(t, 5*time.Second, func() error { return h.intakeDrained() })
	es := h.entries("L-twice")
	c := counts(es)
	for k, want := range map[string]int{"due": 1, "repaid": 2, policy.KindOverdueConfirmed.String(): 1,
		policy.KindContactRequested.String(): 1, policy.KindCaseClosed.String(): 1, policy.KindEscalated.String(): 0} {
		if c[k] != want {
			t.Errorf("%s = %d, want %d; log: %s", k, c[k], want, summary(es))
		}
	}
	cb := counts(h.entries("L-twice-b"))
	if cb["due"] != 1 || cb[policy.KindOverdueConfirmed.String()] != 1 || cb[policy.KindContactRequested.String()] != 1 || cb[policy.KindEscalated.String()] != 1 {
		t.Errorf("L-twice-b counts = %v, want one of each", cb)
	}
}

// Acceptance 6: a repayment that arrives before its installment-due event
// (out of order) means the installment is never overdue.
func TestRepaymentBeforeInstallment(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 100*time.Millisecond)
	day := h.day
	h.startPipeline()
	due := time.Now()
	p := payEvent("L-ooo", "p1", 45000)
	p.GetRepaymentReceived().InstallmentId = "1"
	h.send(p)
	waitFor(t, 5*time.Second, func() error {
		if counts(h.entries("L-ooo"))["repaid"] != 1 {
			return fmt.Errorf("repayment not recorded")
		}
		return nil
	})
	h.send(dueEvent("L-ooo", "1", 45000, due))
	waitFor(t, 5*time.Second, func() error {
		if counts(h.entries("L-ooo"))["due"] != 1 {
			return fmt.Errorf("installment not recorded")
		}
		return nil
	})
	time.Sleep(time.Until(due.Add(3 * day)))
	es := h.entries("L-ooo")
	if n := counts(es)[policy.KindOverdueConfirmed.String()]; n != 0 {
		t.Errorf("prepaid installment confirmed overdue; log: %s", summary(es))
	}
	if h.timerPending("L-ooo") {
		t.Error("a step is pending for a prepaid installment")
	}
}
