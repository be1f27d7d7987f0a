package policy

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// LegalRules is the pre-legal gate (policy file: stages.legal_referral):
// what must hold before an account is referred for legal action.
type LegalRules struct {
	// FinalNotice, when set, is sent (through the release gate, like every
	// contact) when the referral falls due, and the referral then waits
	// for its reply window. Nil: referred at the entry DPD.
	FinalNotice *FinalNotice
	// LimitationDays is the debt's limitation period, counted from the due
	// date of the oldest unpaid installment or the last repayment, whichever
	// is later (a part payment acknowledges the debt and restarts it in
	// most jurisdictions: CN Civil Code art. 195, the Limitation Act 1980
	// s. 29(5)). 0: none, unless the lender sends its own date
	// (InstallmentDue.LimitationEnds), which overrides it.
	LimitationDays int
}

// FinalNotice is the letter before action: its channels and template, and
// the days the borrower has to reply (pay, promise, ask for a plan,
// dispute) before the account may be referred.
type FinalNotice struct {
	ReplyDays int
	Channels  []Channel
	Template  string
}

// FinalNoticeSent is the open case's final notice: the DPD it was decided
// at, the date the borrower may reply until, and its tasks.
type FinalNoticeSent struct {
	DPD     int
	ReplyBy string
	Tasks   []string
}

// What blocks a legal referral (legal_blocked's rule).
const (
	// BlockedByLimitation: the debt is past its limitation period. For good.
	BlockedByLimitation = "limitation"
	// BlockedByNotice: no task of the final notice left the release gate
	// (suppressed or cancelled). For good: a referral needs the notice.
	BlockedByNotice = "notice"
	// BlockedByHold: a hold was placed in the final notice's reply window.
	// The referral waits for its release.
	BlockedByHold = "hold"
)

// ReferralDPD is the earliest DPD a legal referral is made: the stage's
// entry, plus the final notice's reply window when the policy sends one.
func (p Policy) ReferralDPD() int {
	if n := p.Legal.FinalNotice; n != nil {
		return p.LegalDPD + n.ReplyDays
	}
	return p.LegalDPD
}

func (r LegalRules) validate(templates map[string]Template) []error {
	var errs []error
	if r.LimitationDays < 0 {
		errs = append(errs, fmt.Errorf("legal_referral.limitation_days: must be >= 0, got %d", r.LimitationDays))
	}
	n := r.FinalNotice
	if n == nil {
		return errs
	}
	if n.ReplyDays < 1 {
		errs = append(errs, fmt.Errorf("legal_referral.final_notice.reply_days: must be >= 1, got %d", n.ReplyDays))
	}
	if len(n.Channels) == 0 {
		errs = append(errs, fmt.Errorf("legal_referral.final_notice.channels: must name at least one channel"))
	}
	if n.Template == "" {
		errs = append(errs, fmt.Errorf("legal_referral.final_notice.template: is required"))
	} else if templates != nil {
		if _, ok := templates[n.Template]; !ok {
			errs = append(errs, fmt.Errorf("legal_referral.final_notice.template: unknown template %q", n.Template))
		}
	}
	return errs
}

// noticeStepID names the final notice's step; it takes the legal rung's
// place until the notice is decided.
func noticeStepID(n int) string { return fmt.Sprintf("c%d-final-notice", n) }

// preLegal is the legal rung's step as the pre-legal gate moves it: the
// final notice first, when the policy sends one and the open case has not
// had it, then the referral at the end of the notice's reply window
// (ladder days: with ladder_clock pause, days held do not count).
func (l Ladder) preLegal(c *Case, id string, dpd int) (string, int) {
	n := l.Policy.Legal.FinalNotice
	switch {
	case n == nil:
		return id, dpd
	case c.FinalNotice == nil:
		return noticeStepID(c.Number), dpd
	default:
		return id, max(dpd, c.FinalNotice.DPD+n.ReplyDays)
	}
}

// onLegalStep decides the legal rung's steps through the pre-legal gate:
// a debt past its limitation period is never referred; the final notice
// goes first; the referral needs the notice to have left the release gate.
func (l Ladder) onLegalStep(c *Case, s Step, ctx Context) *Decision {
	ctx.Stage = c.Stage
	if end, from, ok := l.limitation(c); ok && !ctx.AsOfOrDecided().Before(end) {
		ctx.Reason = fmt.Sprintf("legal referral blocked at DPD %d: the debt's limitation period ended %s (%s); it is never referred",
			ctx.DPD, end.Format(time.DateOnly), from)
		return &Decision{Kind: KindLegalBlocked, Ctx: ctx, Rule: BlockedByLimitation}
	}
	if s.ID == noticeStepID(s.Case) {
		return l.finalNotice(c, ctx)
	}
	if c.FinalNotice != nil {
		released, waiting, rules := c.noticeState()
		switch {
		case released:
		case waiting:
			ctx.Reason = fmt.Sprintf("%s entry deferred at DPD %d: the final notice is still waiting at the release gate; evaluated again tomorrow", StageLegal, ctx.DPD)
			return &Decision{Kind: KindEntryDeferred, Ctx: ctx, DeferredStage: StageLegal}
		default:
			ctx.Reason = fmt.Sprintf("legal referral blocked at DPD %d: the final notice never reached the borrower (%s); it is never referred without one",
				ctx.DPD, strings.Join(rules, "; "))
			return &Decision{Kind: KindLegalBlocked, Ctx: ctx, Rule: BlockedByNotice}
		}
	}
	ctx.Stage = StageLegal
	ctx.Reason = fmt.Sprintf("still unpaid at DPD %d: refer for legal action", ctx.DPD)
	if n := c.FinalNotice; n != nil {
		ctx.Reason += fmt.Sprintf(" (final notice at DPD %d, no reply by %s)", n.DPD, n.ReplyBy)
	}
	return &Decision{Kind: KindLegalReferred, Ctx: ctx, Evidence: &Evidence{
		Installments: c.Installments, Repayments: c.Repayments, Contacts: c.Contacts,
		LogSeqs: c.Seqs, PlacementID: c.PlacementID,
	}}
}

// finalNotice asks for the final notice: a contact like the ladder's, in
// the firm tone of the severe tier, its tasks carrying the reply date.
func (l Ladder) finalNotice(c *Case, ctx Context) *Decision {
	n := l.Policy.Legal.FinalNotice
	a, _ := l.ladderClock(c, time.Time{})
	loc := zone(a.Zone)
	// The referral is decided at the start of DPD +ReplyDays: the borrower
	// has until the end of the day before.
	// Under an accelerated day, the simulated date, as the gate's times.
	last, _ := l.clock(c).Local(l.Calendar.DPDStart(a.DueAt, loc, ctx.DPD+n.ReplyDays).Add(-time.Nanosecond))
	by := last.String()
	ctx.Reason = fmt.Sprintf("still unpaid at DPD %d: final notice before legal referral; the borrower may reply until %s (%d days)", ctx.DPD, by, n.ReplyDays)
	tasks := l.tasks(c, ctx, &CadenceStep{Stage: StageLegal, DPD: ctx.DPD, Channels: n.Channels, Template: n.Template})
	for i := range tasks {
		tasks[i].ID = fmt.Sprintf("c%d-final_notice-d%d-%s", ctx.Case, ctx.DPD, tasks[i].Channel)
		tasks[i].ReplyBy = by
	}
	return &Decision{Kind: KindContactRequested, Ctx: ctx, Tasks: tasks}
}

// noticeSent records the open case's final notice when d asked for it.
func (c *Case) noticeSent(d Decision) {
	if d.Ctx.StepID != noticeStepID(d.Ctx.Case) {
		return
	}
	n := &FinalNoticeSent{DPD: d.Ctx.DPD}
	for _, t := range d.Tasks {
		n.Tasks = append(n.Tasks, t.ID)
		n.ReplyBy = t.ReplyBy
	}
	c.FinalNotice = n
}

// noticeState is where the final notice's tasks stand at the release gate:
// any released, any still waiting, and the rules that stopped the others.
func (c *Case) noticeState() (released, waiting bool, rules []string) {
	for _, g := range c.Gate {
		if g.Case != c.Number || !slices.Contains(c.FinalNotice.Tasks, g.Task.ID) {
			continue
		}
		switch g.State {
		case GateReleased:
			released = true
		case GateRequested, GateHeld:
			waiting = true
		case GateSuppressed:
			rules = append(rules, fmt.Sprintf("%s suppressed", g.Task.Channel))
		default:
			rules = append(rules, fmt.Sprintf("%s cancelled", g.Task.Channel))
		}
	}
	return released, waiting, rules
}

// limitation is when the debt's limitation period ends and what it counts
// from; ok is false when neither the lender nor the policy sets one.
func (l Ladder) limitation(c *Case) (end time.Time, from string, ok bool) {
	a, owed := c.anchor()
	if !owed {
		return time.Time{}, "", false
	}
	if !a.LimitationEnds.IsZero() {
		return a.LimitationEnds, fmt.Sprintf("the lender's date for installment %s", a.ID), true
	}
	days := l.Policy.Legal.LimitationDays
	if days <= 0 {
		return time.Time{}, "", false
	}
	start := a.DueAt
	from = fmt.Sprintf("%d days from the due date of installment %s", days, a.ID)
	for _, r := range c.Repayments {
		if r.PaidAt.After(start) {
			start = r.PaidAt
			from = fmt.Sprintf("%d days from the last payment, %s", days, r.PaymentID)
		}
	}
	return l.Calendar.after(start, days), from, true
}

// holdInReplyWindow records, when a hold is placed in the final notice's
// reply window, that the referral waits for its release.
func (l Ladder) holdInReplyWindow(c *Case, h HoldPlaced, now time.Time) *Decision {
	n := c.FinalNotice
	if !c.Open || n == nil || c.Stage >= StageLegal || c.LegalBarred != "" {
		return nil
	}
	overdue, _ := c.Overdue(l.Calendar, now)
	ctx := l.context(c, c.Number, c.Stage, l.DPDAt(c, now), overdue, now)
	ctx.Reason = fmt.Sprintf("%s hold %s placed in the final notice's reply window (notice at DPD %d, reply by %s): legal referral waits until it is released",
		h.Kind, h.ID, n.DPD, n.ReplyBy)
	return &Decision{Kind: KindLegalBlocked, Ctx: ctx, Rule: BlockedByHold}
}

// LegalOutcome is what became of a legal referral, as the lender reports
// it. A record: money moves only by the lender's repayments and
// settlement.
type LegalOutcome struct {
	ID        string
	Status    LegalStatus
	At        time.Time
	Reference string
}

func (LegalOutcome) event() {}

// LegalStatus is where a legal referral stands.
type LegalStatus int

// Legal statuses.
const (
	LegalStatusNone LegalStatus = iota
	LegalFiled
	LegalJudgment
	LegalSettled
	LegalWithdrawn
)

var legalStatusNames = [...]string{"none", "filed", "judgment", "settled", "withdrawn"}

func (s LegalStatus) String() string { return enumName(legalStatusNames[:], int(s), "legal_status") }
