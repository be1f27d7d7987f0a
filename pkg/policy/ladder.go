package policy

import (
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"
)

// Ladder makes every decision of the pipeline from a case, a trigger and the
// current time. It is a value: stages build one from configuration and share it.
type Ladder struct {
	Policy   Policy
	Calendar Calendar
}

// Fixed returns a ladder chooser that gives every loan the same ladder.
func Fixed(l Ladder) func(tenant, product string) Ladder {
	return func(string, string) Ladder { return l }
}

// rung is a timed step of an open case: a stage's entry (escalation,
// handoff, legal referral) or one more contact of a stage's cadence.
type rung struct {
	stage   Stage
	dpd     int
	entry   bool
	cadence *CadenceStep
}

func (r rung) id(n int) string { return fmt.Sprintf("c%d-%s-d%d", n, r.stage, r.dpd) }

// cadence returns the policy's cadence, or the shipped one when the
// policy has none: an SMS at confirmation, four channels at escalation.
func (l Ladder) cadence() []CadenceStep {
	if len(l.Policy.Cadence) > 0 {
		return l.Policy.Cadence
	}
	return []CadenceStep{
		{Stage: StageFirstContact, DPD: l.Policy.ConfirmDPD(), Channels: []Channel{ChannelSMS}, Template: "light_reminder"},
		{Stage: StageEscalation, DPD: l.Policy.EscalationDPD(), Channels: []Channel{ChannelPhone, ChannelSMS, ChannelEmail, ChannelAppPush}, Template: "medium_notice"},
	}
}

// rungs lists the timed steps of a case in order. The first contact at
// confirmation is not among them: it follows the confirmation event at once.
func (l Ladder) rungs() []rung {
	var out []rung
	escalationEntry := false
	cadence := l.cadence()
	for i, cs := range cadence {
		if cs.Stage == StageFirstContact && cs.DPD <= l.Policy.ConfirmDPD() {
			continue
		}
		entry := cs.Stage == StageEscalation && cs.DPD == l.Policy.EscalationDPD()
		escalationEntry = escalationEntry || entry
		out = append(out, rung{stage: cs.Stage, dpd: cs.DPD, entry: entry, cadence: &cadence[i]})
	}
	if !escalationEntry {
		out = append(out, rung{stage: StageEscalation, dpd: l.Policy.EscalationDPD(), entry: true})
	}
	out = append(out, rung{stage: StageHandoff, dpd: l.Policy.HandoffDPD, entry: true}, rung{stage: StageLegal, dpd: l.Policy.LegalDPD, entry: true})
	slices.SortStableFunc(out, func(a, b rung) int {
		if a.dpd != b.dpd {
			return a.dpd - b.dpd
		}
		return int(a.stage) - int(b.stage)
	})
	return out
}

// NextStep is the one step the loan's timer should hold, or nil: the
// earlier of the ladder's next rung and the release gate's next look at a
// held contact. It depends only on the case, so any stage can recompute it
// after any event and put the timer right (replace it, or cancel it).
func (l Ladder) NextStep(c *Case) *Step {
	next := l.nextRungStep(c)
	// The gate's release, a payment report's deadline and a placement's
	// expiry come before a rung due at the same instant.
	for _, s := range []*Step{l.releaseStep(c), l.reportStep(c), l.expiryStep(c)} {
		if s != nil && (next == nil || !s.At.After(next.At)) {
			next = s
		}
	}
	return next
}

func (l Ladder) nextRungStep(c *Case) *Step {
	if c.Settled {
		return nil
	}
	// While a hold is open no stage is entered: the loan's step is the
	// hold's deadline, if it has one, and its release puts the next rung
	// back (holds.go: with the days held counted or not, as the policy says).
	if _, held := c.OnHold(); held {
		return l.holdStep(c)
	}
	// While a promise to pay is open the next stage waits and no cadence
	// contact is made: the loan's step is the promise's deadline.
	if p, open := c.OpenPromise(); open {
		return l.promiseStep(c, p)
	}
	// A repayment plan replaces the ladder while it is kept.
	if p, ok := c.ActivePlan(); ok {
		return l.planStep(c, p)
	}
	a, ok := l.ladderClock(c, time.Time{})
	if !ok {
		return nil
	}
	loc := zone(a.Zone)
	if !c.Open {
		n := c.Number + 1
		d := l.Policy.ConfirmDPD()
		id := stepID(n, StageOverdueConfirmation)
		return &Step{ID: id, Stage: StageOverdueConfirmation, Case: n, DPD: d,
			At: l.Calendar.DPDStart(a.DueAt, loc, d).Add(l.decideOffset(c))}
	}
	if c.Stage == StageOverdueConfirmation {
		// First contact comes first, on the confirmation event; if a hold
		// stopped it, it is this step, due when the last hold was lifted.
		if !c.firstContactHeld {
			return nil
		}
		var at time.Time
		for _, h := range c.Holds {
			if h.Released.After(at) {
				at = h.Released
			}
		}
		return &Step{ID: stepID(c.Number, StageFirstContact), Stage: StageFirstContact, Case: c.Number,
			DPD: max(c.DPD, l.Calendar.DPD(a.DueAt, loc, at)), At: at}
	}
	r, ok := l.nextRung(c)
	if !ok {
		return nil
	}
	// A case confirmed late (say at DPD 20) enters the stage it missed at once;
	// cadence contacts it missed are skipped. An entry deferred for its
	// condition is evaluated again the next day.
	id, d := r.id(c.Number), max(r.dpd, c.DPD)
	if r.stage == StageLegal {
		id, d = l.preLegal(c, id, d)
	}
	if last, deferred := c.Deferred[id]; deferred {
		d = max(d, last+1)
	}
	s := &Step{ID: id, Stage: r.stage, Case: c.Number, DPD: d, At: l.Calendar.DPDStart(a.DueAt, loc, d).Add(l.decideOffset(c))}
	if r.entry {
		return l.spaced(c, a, s)
	}
	return s
}

// decideOffset is where in the night a loan's ladder step falls: an offset
// within the policy's DecideSpread fixed by the loan, the same every night,
// scaled to the calendar's day (a 24 h day's 6 h spread is a quarter of any
// day). The same for every step, not drawn per step: a step's timer is
// written when the step before it is decided, at the loan's offset in an
// earlier night, so a night's timers stand in the loans stream in the order
// they fall due, and the server, which reads each due schedule from its
// message block, walks the stream's blocks once, in order, instead of
// holding every block in its cache while the night fires (make bench-open,
// 300,000 loans due over 300 s: a 1,162 MiB peak in that order, 1,653 MiB
// shuffled).
func (l Ladder) decideOffset(c *Case) time.Duration {
	spread := l.Policy.Contact.DecideSpread
	if spread <= 0 {
		return 0
	}
	off := SpreadOffset(c.Key+"/decide", spread)
	if l.Calendar.Day == RealDay {
		return off
	}
	return time.Duration(float64(off) * float64(l.Calendar.Day) / float64(RealDay))
}

// spaced puts a stage entry a day after the case's last one at the
// earliest: a release, or a case confirmed late, may find several rungs
// passed, and a borrower is not confirmed overdue, escalated and placed
// with an agency within the same hour.
func (l Ladder) spaced(c *Case, a InstallmentDue, s *Step) *Step {
	if !c.Entered.IsZero() {
		if next := c.Entered.Add(l.Calendar.Day); s.At.Before(next) {
			s.At, s.DPD = next, max(s.DPD, l.Calendar.DPD(a.DueAt, zone(a.Zone), next))
		}
	}
	return s
}

func (l Ladder) nextRung(c *Case) (rung, bool) {
	for _, r := range l.rungs() {
		switch {
		case r.stage < c.Stage, c.Done[r.id(c.Number)], r.entry && r.stage == c.Stage:
		case r.stage == StageLegal && c.LegalBarred != "":
			// The pre-legal gate barred the referral for good (legal.go).
		case !r.entry && (r.stage != c.Stage || r.dpd <= c.DPD):
			// A contact of a stage the case is not in, or one it has passed.
		default:
			return r, true
		}
	}
	return rung{}, false
}

func (l Ladder) rungOf(c *Case, s Step) (rung, bool) {
	for _, r := range l.rungs() {
		if r.id(s.Case) == s.ID {
			return r, true
		}
	}
	return rung{}, false
}

func stepID(n int, s Stage) string { return fmt.Sprintf("c%d-%s", n, s) }

// OnStep decides what a fired step does. A step that is no longer the case's
// next step (the loan was paid, the timer was replaced) decides nothing.
func (l Ladder) OnStep(c *Case, s Step, now time.Time) *Decision {
	want := l.NextStep(c)
	if want == nil || !want.Same(s) {
		return nil
	}
	if strings.HasPrefix(s.ID, "hold-") {
		return l.onHoldDeadline(c, s, now)
	}
	if strings.HasPrefix(s.ID, "promise-") {
		return l.onPromiseDeadline(c, s, now)
	}
	if strings.HasPrefix(s.ID, "plan") {
		return l.onPlanStep(c, s, now)
	}
	if strings.HasPrefix(s.ID, reportStepPrefix) {
		return l.onReportDeadline(c, s, now)
	}
	if strings.HasPrefix(s.ID, expiryStepPrefix) {
		return l.onPlacementExpiry(c, s, now)
	}
	// A step that fires a day or more late (an outage, an installment
	// announced after its due date) is decided at today's DPD, so that the
	// tier, fees and the contacts it skips are today's.
	dpd, at := s.DPD, s.At
	if late := now.Sub(s.At); late >= l.Calendar.Day && late >= time.Minute {
		dpd, at = max(dpd, l.DPDAt(c, now)), now
	}
	overdue, ids := c.Overdue(l.Calendar, at)
	if overdue.Minor <= 0 {
		return nil
	}
	ctx := l.context(c, s.Case, s.Stage, dpd, overdue, now)
	ctx.StepID, ctx.AsOf = s.ID, at
	switch s.Stage {
	case StageOverdueConfirmation:
		ctx.Reason = fmt.Sprintf("due time passed with %s unpaid", overdue)
		return &Decision{Kind: KindOverdueConfirmed, Ctx: ctx, InstallmentIDs: ids}
	case StageFirstContact, StageEscalation:
		if s.ID == stepID(s.Case, StageFirstContact) {
			ctx.Reason = fmt.Sprintf("overdue confirmed at DPD %d, first contact held until the hold was lifted: first contact at DPD %d", c.DPD, ctx.DPD)
			return &Decision{Kind: KindContactRequested, Ctx: ctx, Tasks: l.tasks(c, ctx, l.firstContactStep(ctx.DPD, ctx.Tier))}
		}
		r, ok := l.rungOf(c, s)
		if !ok {
			return nil
		}
		if !r.entry {
			ctx.Reason = fmt.Sprintf("still unpaid at DPD %d: %s contact of the %s cadence", ctx.DPD, ordinal(r), s.Stage)
			return &Decision{Kind: KindContactRequested, Ctx: ctx, Tasks: l.tasks(c, ctx, r.cadence)}
		}
		if d := l.deferral(c, s, ctx, ids); d != nil {
			return d
		}
		ctx.Reason = fmt.Sprintf("still unpaid at DPD %d: escalate to %s tier", ctx.DPD, ctx.Tier)
		cs := r.cadence
		if cs == nil {
			cs = &CadenceStep{Stage: StageEscalation, DPD: ctx.DPD, Channels: escalationChannels(ctx.Tier), Template: ctx.Tier.String() + "_notice"}
		}
		return &Decision{Kind: KindEscalated, Ctx: ctx, Tasks: l.tasks(c, ctx, cs)}
	case StageHandoff:
		if d := l.deferral(c, s, ctx, ids); d != nil {
			return d
		}
		a, why, ok := l.Policy.Allocate(c, s.Case)
		if !ok {
			// Deferred, not skipped: a reloaded registry may cover the
			// account tomorrow.
			ctx.Stage = c.Stage
			ctx.Reason = fmt.Sprintf("%s entry deferred at DPD %d: %s; evaluated again tomorrow", s.Stage, ctx.DPD, why)
			return &Decision{Kind: KindEntryDeferred, Ctx: ctx, DeferredStage: s.Stage}
		}
		ctx.Reason = fmt.Sprintf("still unpaid at DPD %d: place with agency %s", ctx.DPD, a.ID)
		if why != "" {
			ctx.Reason += " (" + why + ")"
		}
		return &Decision{Kind: KindHandedOff, Ctx: ctx, AgencyID: a.ID, PlacementID: PlacementID(c.Key, s.Case)}
	case StageLegal:
		if d := l.deferral(c, s, ctx, ids); d != nil {
			return d
		}
		return l.onLegalStep(c, s, ctx)
	}
	return nil
}

// deferral checks the entry condition of the stage s enters; when it does not
// hold, the case stays where it is and the entry is evaluated again tomorrow.
func (l Ladder) deferral(c *Case, s Step, ctx Context, overdueIDs []string) *Decision {
	e := l.Policy.Entries[s.Stage]
	var unmet []string
	if e.MinOverdue > 0 && ctx.Overdue.Minor < e.MinOverdue {
		unmet = append(unmet, fmt.Sprintf("overdue %s below the minimum %s", ctx.Overdue, Money{Currency: ctx.Overdue.Currency, Minor: e.MinOverdue}))
	}
	if e.MissedInstallments > 0 && len(overdueIDs) < e.MissedInstallments {
		unmet = append(unmet, fmt.Sprintf("%d missed installments, %d required", len(overdueIDs), e.MissedInstallments))
	}
	if len(unmet) == 0 {
		return nil
	}
	ctx.Stage = c.Stage
	ctx.Reason = fmt.Sprintf("%s entry deferred at DPD %d: %s; evaluated again tomorrow", s.Stage, ctx.DPD, strings.Join(unmet, "; "))
	return &Decision{Kind: KindEntryDeferred, Ctx: ctx, DeferredStage: s.Stage}
}

// FirstContact decides the first contact after the case numbered n was
// confirmed overdue. It decides once per case.
func (l Ladder) FirstContact(c *Case, n int, now time.Time) *Decision {
	if !c.Open || c.Number != n || c.Stage != StageOverdueConfirmation {
		return nil
	}
	// A hold placed since the confirmation: no contact now; the release
	// puts a first-contact step in its place (nextRungStep).
	if _, held := c.OnHold(); held || c.firstContactHeld {
		return nil
	}
	overdue, _ := c.Overdue(l.Calendar, now)
	if overdue.Minor <= 0 {
		return nil
	}
	ctx := l.context(c, n, StageFirstContact, c.DPD, overdue, now)
	ctx.AsOf = c.confirmedAsOf
	ctx.Reason = fmt.Sprintf("overdue confirmed at DPD %d: first contact", c.DPD)
	return &Decision{Kind: KindContactRequested, Ctx: ctx, Tasks: l.tasks(c, ctx, l.firstContactStep(c.DPD, ctx.Tier))}
}

// OnLenderFact decides what one of the lender's facts (already folded into
// c) does, in order: a payment keeps the open promise and moves the plan in
// force, a hold recalls a placed account, and any of them closes the case,
// cured or settled, at whatever stage, when nothing overdue is left.
// Promises, plans, holds and their ends otherwise only move the loan's
// step. Money in another currency than the loan's is an error: refused,
// never counted.
func (l Ladder) OnLenderFact(c *Case, ev Event, now time.Time) ([]Decision, error) {
	var out []Decision
	switch e := ev.(type) {
	case Repayment:
		if cur := c.Currency(); cur != "" && e.Amount.Currency != cur {
			return nil, fmt.Errorf("repayment %s is in %s but the loan is in %s: not applied", e.PaymentID, e.Amount.Currency, cur)
		}
		out = l.OnPayment(c, now)
	case InstallmentDue:
		if cur := c.Currency(); e.Amount.Currency != cur {
			return nil, fmt.Errorf("installment %s is in %s but the loan is in %s: not applied", e.ID, e.Amount.Currency, cur)
		}
	case HoldPlaced:
		// A hold changes nothing owed: it recalls, it stops a referral in
		// its reply window, it closes nothing.
		if d := l.OnHoldPlaced(c, e, now); d != nil {
			out = append(out, *d)
		}
		if d := l.holdInReplyWindow(c, e, now); d != nil {
			out = append(out, *d)
		}
		if len(out) > 0 {
			return out, nil
		}
	case Settled, HoldReleased, PromiseToPay, RepaymentPlan, PlanCancelled:
	default:
		return nil, fmt.Errorf("unexpected trigger %T", ev)
	}
	if d := l.OnLenderEvent(c, now); d != nil {
		out = append(out, *d)
	}
	return out, nil
}

// OnLenderEvent decides what a repayment, settlement or new installment does
// to an open case: it closes the case when nothing overdue is left.
func (l Ladder) OnLenderEvent(c *Case, now time.Time) *Decision {
	if !c.Open {
		return nil
	}
	overdue, _ := c.Overdue(l.Calendar, now)
	if !c.Settled && overdue.Minor > 0 {
		return nil
	}
	ctx := l.context(c, c.Number, c.Stage, l.DPDAt(c, now), overdue, now)
	d := &Decision{Kind: KindCaseClosed, Ctx: ctx, ClosedAtStage: c.Stage, PlacementID: c.PlacementID}
	if c.Settled {
		d.CloseReason = CloseSettled
		ctx.Reason = "loan settled by the lender"
	} else {
		d.CloseReason = CloseCured
		ctx.Reason = "overdue balance repaid in full"
	}
	d.Ctx = ctx
	return d
}

// Reconcile compares the loan's timer with NextStep. It returns the step to
// schedule (replacing whatever is pending), or a StepCancelled decision that
// withdraws a pending step nothing needs any more, or neither.
func (l Ladder) Reconcile(c *Case, now time.Time) (*Step, *Decision) {
	want := l.NextStep(c)
	p := c.Pending
	switch {
	case want == nil && (p == nil || p.Fired):
		return nil, nil
	case want == nil:
		overdue, _ := c.Overdue(l.Calendar, now)
		ctx := l.context(c, c.Number, c.Stage, l.DPDAt(c, now), overdue, now)
		ctx.Reason = "pending step no longer applies"
		return nil, &Decision{Kind: KindStepCancelled, Ctx: ctx, CancelledStep: p.Step.ID}
	case p != nil && p.Step.Same(*want):
		return nil, nil
	default:
		return want, nil
	}
}

// DPDAt is the loan's DPD at now, counted from its oldest unpaid installment.
func (l Ladder) DPDAt(c *Case, now time.Time) int {
	a, ok := l.ladderClock(c, now)
	if !ok && len(c.CaseInstallments) > 0 {
		for _, in := range c.Installments {
			if in.ID == c.CaseInstallments[0] {
				a, ok = in, true
				break
			}
		}
	}
	if !ok {
		return c.DPD
	}
	return l.Calendar.DPD(a.DueAt, zone(a.Zone), now)
}

func (l Ladder) context(c *Case, n int, s Stage, dpd int, overdue Money, now time.Time) Context {
	return Context{Case: n, Stage: s, Tier: l.Policy.TierAt(dpd), DPD: dpd, Overdue: overdue,
		DecidedAt: now, PolicyVersion: l.Policy.Version}
}

// firstContactStep is the cadence step a first contact at dpd follows: the
// latest one due by then, so a case confirmed late (say in the medium tier)
// opens with its tier's channels and template, not the light tier's.
func (l Ladder) firstContactStep(dpd int, t Tier) *CadenceStep {
	var best *CadenceStep
	cadence := l.cadence()
	for i, cs := range cadence {
		if (cs.Stage == StageFirstContact || cs.Stage == StageEscalation) && cs.DPD <= dpd {
			best = &cadence[i]
		}
	}
	if best == nil || (t == TierSevere && best.Stage != StageEscalation) {
		return &CadenceStep{Stage: StageFirstContact, DPD: dpd, Channels: []Channel{ChannelPhone, ChannelLetter}, Template: t.String() + "_notice"}
	}
	return best
}

func ordinal(r rung) string { return fmt.Sprintf("DPD-%d", r.dpd) }

func escalationChannels(t Tier) []Channel {
	if t == TierSevere {
		return []Channel{ChannelPhone, ChannelSMS, ChannelEmail, ChannelAppPush, ChannelLetter}
	}
	return []Channel{ChannelPhone, ChannelSMS, ChannelEmail, ChannelAppPush}
}

// ToneFor returns the tone of a tier: gentle, serious, firm; never threatening.
func ToneFor(t Tier) Tone {
	switch t {
	case TierLight:
		return ToneGentle
	case TierMedium:
		return ToneSerious
	default:
		return ToneFirm
	}
}

// charges is the interest and fees a text tells the borrower: the lender's
// when it sent them (its latest itemised balance, else the itemisation of
// the overdue installments, reduced in proportion to what a partial payment
// left owing, rounded down), and only where it sent none the policy's
// computed late fee, from the medium tier, over the days no hardship or
// breathing space froze it.
func (l Ladder) charges(c *Case, ctx Context) Money {
	if c.Balance != nil {
		return c.Balance.Overdue.Charges()
	}
	owed := c.Outstanding()
	itemised := false
	total := Money{Currency: ctx.Overdue.Currency}
	for i, in := range c.Installments {
		if in.Items == nil || owed[i] <= 0 || l.Calendar.DPD(in.DueAt, zone(in.Zone), ctx.AsOfOrDecided()) < 1 {
			continue
		}
		itemised = true
		total.Minor += mulDiv(in.Items.Charges().Minor, owed[i], in.Amount.Minor)
	}
	if itemised {
		return total
	}
	if ctx.Tier >= TierMedium {
		return l.Policy.Fees(ctx.Overdue, l.feeDPD(c, ctx))
	}
	return Money{Currency: ctx.Overdue.Currency}
}

// mulDiv is a*b/c rounded down, exact where a*b overflows int64 (amounts
// go up to 10^15 minor units).
func mulDiv(a, b, c int64) int64 {
	var x big.Int
	return x.Quo(x.Mul(big.NewInt(a), big.NewInt(b)), big.NewInt(c)).Int64()
}

func (l Ladder) tasks(c *Case, ctx Context, cs *CadenceStep) []ContactTask {
	ref, locale := "", l.Policy.DefaultLocale
	if a, ok := c.anchor(); ok {
		ref = a.ContactRef
		if slices.Contains(l.Policy.Locales, a.Locale) {
			locale = a.Locale
		}
	}
	fees := l.charges(c, ctx)
	out := make([]ContactTask, 0, len(cs.Channels))
	for _, ch := range cs.Channels {
		out = append(out, ContactTask{
			ID:               fmt.Sprintf("c%d-%s-d%d-%s", ctx.Case, ctx.Stage, ctx.DPD, ch),
			Channel:          ch,
			Tone:             ToneFor(ctx.Tier),
			ContactRef:       ref,
			Template:         cs.Template,
			Locale:           locale,
			AmountDue:        ctx.Overdue,
			DPD:              ctx.DPD,
			RepaymentOptions: []string{"pay_in_app", "bank_transfer", "repayment_plan", "short_deferral"},
			Fees:             fees,
		})
	}
	return out
}
