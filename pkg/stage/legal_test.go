package stage_test

import (
	"strings"
	"testing"
	"time"

	"github.com/opendunning/dunning/pkg/policy"
)

// preLegal is the shipped pre-legal gate: a final notice by letter and
// e-mail at the legal entry (DPD 90), a 30-day reply window.
func preLegal(p *policy.Policy) {
	p.Legal.FinalNotice = &policy.FinalNotice{ReplyDays: 30, Channels: []policy.Channel{policy.ChannelLetter, policy.ChannelEmail}, Template: "final_notice"}
}

// Issue 12, acceptance 6: a never-paying loan gets its final notice at DPD
// 90, through the release gate (held to the morning, released), carrying
// the last day to reply; it is referred at the start of DPD 120, once the
// reply window has passed, and not before.
func TestFinalNoticeThenReferral(t *testing.T) {
	w := holdWorld(t, preLegal)
	w.installment("L-1", 100000)
	w.drain()
	w.until(w.dpd(119, 23*time.Hour))
	if got := w.decided("L-1", policy.KindLegalReferred); len(got) != 0 {
		t.Fatalf("referred at %s, inside the reply window", got[0].Ctx.DecidedAt.In(w.loc))
	}
	w.until(w.dpd(130, 0))
	var notice *policy.Decision
	for _, d := range w.decided("L-1", policy.KindContactRequested) {
		if d.Ctx.StepID == "c1-final-notice" {
			notice = &d
		}
	}
	if notice == nil {
		t.Fatal("no final notice asked for")
	}
	if !notice.Ctx.DecidedAt.Equal(w.dpd(90, 0)) || notice.Ctx.DPD != 90 || notice.Ctx.Stage != policy.StageHandoff {
		t.Errorf("final notice decided at %s, DPD %d, stage %s; want DPD 90 00:00, still in handoff",
			notice.Ctx.DecidedAt.In(w.loc), notice.Ctx.DPD, notice.Ctx.Stage)
	}
	lastDay := w.dpd(119, 0).Format(time.DateOnly)
	if len(notice.Tasks) != 2 {
		t.Fatalf("final notice tasks = %+v, want a letter and an e-mail", notice.Tasks)
	}
	for _, task := range notice.Tasks {
		if task.ReplyBy != lastDay || task.Template != "final_notice" || task.Tone != policy.ToneFirm {
			t.Errorf("task %s: reply by %q, template %s, tone %s; want reply by %s, final_notice, firm", task.ID, task.ReplyBy, task.Template, task.Tone, lastDay)
		}
	}
	released := 0
	for _, d := range w.decided("L-1", policy.KindContactReleased) {
		for _, task := range d.Tasks {
			if strings.HasPrefix(task.ID, "c1-final_notice-") {
				released++
				if task.NotBefore.Before(w.dpd(90, 8*time.Hour)) {
					t.Errorf("final notice %s released at %s, before the window opened", task.ID, task.NotBefore.In(w.loc))
				}
			}
		}
	}
	if released != 2 {
		t.Errorf("final notice tasks released = %d, want 2", released)
	}
	ref := w.decided("L-1", policy.KindLegalReferred)
	if len(ref) != 1 {
		t.Fatalf("legal referrals = %d, want 1", len(ref))
	}
	if r := ref[0].Ctx; !r.DecidedAt.Equal(w.dpd(120, 0)) || r.DPD != 120 || !strings.Contains(r.Reason, "no reply by "+lastDay) {
		t.Errorf("referred at %s, DPD %d (%q); want DPD 120 00:00, naming the notice", r.DecidedAt.In(w.loc), r.DPD, r.Reason)
	}
	if got := w.decided("L-1", policy.KindLegalBlocked); len(got) != 0 {
		t.Errorf("blocked: %+v", got)
	}
}

// Issue 12, acceptance 6: a dispute placed in the reply window is recorded
// as what blocks the referral (and recalls the placement); no referral while
// it is open, however long. Released, the referral the window put at DPD
// 120 is decided at once (ladder_clock calendar: the days held counted).
func TestOpenDisputeBlocksReferral(t *testing.T) {
	w := holdWorld(t, preLegal)
	w.installment("L-1", 100000)
	w.drain()
	w.until(w.dpd(100, 10*time.Hour))
	w.lender("L-1", "d-1", policy.HoldPlaced{ID: "d-1", Kind: policy.HoldDispute, At: w.clock.Now()})
	w.drain()
	w.until(w.dpd(200, 10*time.Hour))
	if got := w.decided("L-1", policy.KindLegalReferred); len(got) != 0 {
		t.Fatalf("referred at %s with a dispute open", got[0].Ctx.DecidedAt.In(w.loc))
	}
	blocked := w.decided("L-1", policy.KindLegalBlocked)
	if len(blocked) != 1 {
		t.Fatalf("legal_blocked = %d, want 1", len(blocked))
	}
	if b := blocked[0]; b.Rule != policy.BlockedByHold || !strings.Contains(b.Ctx.Reason, "dispute hold d-1") || !b.Ctx.DecidedAt.Equal(w.dpd(100, 10*time.Hour)) {
		t.Errorf("blocked by %q at %s: %q; want the hold, at its placing, naming it", b.Rule, b.Ctx.DecidedAt.In(w.loc), b.Ctx.Reason)
	}
	if got := w.decided("L-1", policy.KindPlacementRecalled); len(got) != 1 {
		t.Errorf("recalls = %d, want 1", len(got))
	}
	w.lender("L-1", "d-1", policy.HoldReleased{ID: "d-1", At: w.clock.Now()})
	w.drain()
	w.until(w.dpd(202, 0))
	ref := w.decided("L-1", policy.KindLegalReferred)
	if len(ref) != 1 || !ref[0].Ctx.DecidedAt.Equal(w.dpd(200, 10*time.Hour)) {
		t.Fatalf("referrals after the release = %+v, want one, at the release", ref)
	}
}

// Issue 12, acceptance 6: a debt past its limitation period is never
// referred, and the timeline says why. The lender's own date, before the
// notice would go: blocked at DPD 90, no notice. The policy's 100 days:
// the notice goes at DPD 90, the referral is blocked at DPD 120. A part
// payment at DPD 50 restarts the policy's count: referred.
func TestLimitationBlocksReferral(t *testing.T) {
	w := holdWorld(t, func(p *policy.Policy) { preLegal(p); p.Legal.LimitationDays = 100 })
	due := func(loan string, ends time.Time) {
		w.lender(loan, "1", policy.InstallmentDue{ID: "1", Amount: policy.Money{Currency: "CNY", Minor: 100000}, DueAt: w.due,
			Zone: "Asia/Shanghai", ContactRef: "crm", LimitationEnds: ends})
	}
	due("L-lender", w.dpd(60, 0))
	due("L-policy", time.Time{})
	due("L-paid", time.Time{})
	w.drain()
	w.until(w.dpd(50, 12*time.Hour))
	w.pay("L-paid", "p-1", 1000)
	w.drain()
	w.until(w.dpd(160, 0))

	b := w.decided("L-lender", policy.KindLegalBlocked)
	if len(b) != 1 || b[0].Rule != policy.BlockedByLimitation || !b[0].Ctx.DecidedAt.Equal(w.dpd(90, 0)) ||
		!strings.Contains(b[0].Ctx.Reason, "the lender's date") {
		t.Errorf("L-lender blocked = %+v, want once at DPD 90 by the lender's date", b)
	}
	for _, d := range w.decided("L-lender", policy.KindContactRequested) {
		if d.Ctx.StepID == "c1-final-notice" {
			t.Errorf("L-lender: a final notice for a time-barred debt")
		}
	}
	b = w.decided("L-policy", policy.KindLegalBlocked)
	if len(b) != 1 || b[0].Rule != policy.BlockedByLimitation || !b[0].Ctx.DecidedAt.Equal(w.dpd(120, 0)) ||
		!strings.Contains(b[0].Ctx.Reason, "100 days from the due date") {
		t.Errorf("L-policy blocked = %+v, want once at DPD 120, 100 days from the due date", b)
	}
	for _, loan := range []string{"L-lender", "L-policy"} {
		if got := w.decided(loan, policy.KindLegalReferred); len(got) != 0 {
			t.Errorf("%s referred past its limitation period", loan)
		}
	}
	if got := w.decided("L-paid", policy.KindLegalReferred); len(got) != 1 || !got[0].Ctx.DecidedAt.Equal(w.dpd(120, 0)) {
		t.Errorf("L-paid referrals = %+v, want one at DPD 120 (its period restarted at DPD 50)", got)
	}
	// Barred for good: no step is left for the legal stage.
	if len(w.decided("L-policy", policy.KindEntryDeferred)) != 0 {
		t.Error("L-policy: the barred referral was tried again")
	}
}

// A final notice that never left the release gate (the borrower opted out
// of both its channels) bars the referral: the notice is the borrower's
// last chance, and a referral needs it to have gone.
func TestSuppressedNoticeBlocksReferral(t *testing.T) {
	w := holdWorld(t, preLegal)
	w.installment("L-1", 100000)
	for _, ch := range []policy.Channel{policy.ChannelLetter, policy.ChannelEmail} {
		id := "pref-" + ch.String()
		w.lender("L-1", id, policy.ContactPreference{ID: id, Channel: ch, OptedOut: true, At: w.clock.Now()})
	}
	w.drain()
	w.until(w.dpd(150, 0))
	if got := w.decided("L-1", policy.KindLegalReferred); len(got) != 0 {
		t.Fatal("referred without a final notice")
	}
	b := w.decided("L-1", policy.KindLegalBlocked)
	if len(b) != 1 || b[0].Rule != policy.BlockedByNotice || !strings.Contains(b[0].Ctx.Reason, "letter suppressed") {
		t.Errorf("blocked = %+v, want once, by the notice, naming the suppressed letter", b)
	}
}
