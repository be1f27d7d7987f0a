package policy

import (
	"fmt"
	"time"
)

// Ladder makes every decision of the pipeline from a case, a trigger and the
// current time. It is a value: stages build one from configuration and share it.
type Ladder struct {
	Policy   Policy
	Calendar Calendar
}

// rung is a timed stage of an open case.
type rung struct {
	stage Stage
	dpd   int
}

// after returns the timed rung that follows stage, if any. First contact is
// not timed: it follows overdue confirmation as soon as that is recorded.
func (l Ladder) after(s Stage) (rung, bool) {
	switch s {
	case StageFirstContact:
		return rung{StageEscalation, l.Policy.EscalationDPD()}, true
	case StageEscalation:
		return rung{StageHandoff, l.Policy.HandoffDPD}, true
	case StageHandoff:
		return rung{StageLegal, l.Policy.LegalDPD}, true
	default:
		return rung{}, false
	}
}

// NextStep is the one step the loan's timer should hold, or nil. It depends
// only on the case, so any stage can recompute it after any event and put the
// timer right (replace it, or cancel it).
func (l Ladder) NextStep(c *Case) *Step {
	if c.Settled {
		return nil
	}
	a, ok := c.anchor()
	if !ok {
		return nil
	}
	loc := zone(a.Zone)
	if !c.Open {
		n := c.Number + 1
		d := l.Policy.ConfirmDPD()
		return &Step{ID: stepID(n, StageOverdueConfirmation), Stage: StageOverdueConfirmation, Case: n, DPD: d,
			At: l.Calendar.DPDStart(a.DueAt, loc, d)}
	}
	r, ok := l.after(c.Stage)
	if !ok {
		return nil
	}
	// A case confirmed late (say at DPD 20) takes its next rung at once.
	d := max(r.dpd, c.DPD)
	return &Step{ID: stepID(c.Number, r.stage), Stage: r.stage, Case: c.Number, DPD: d,
		At: l.Calendar.DPDStart(a.DueAt, loc, d)}
}

func stepID(n int, s Stage) string { return fmt.Sprintf("c%d-%s", n, s) }

// OnStep decides what a fired step does. A step that is no longer the case's
// next step (the loan was paid, the timer was replaced) decides nothing.
func (l Ladder) OnStep(c *Case, s Step, now time.Time) *Decision {
	want := l.NextStep(c)
	if want == nil || !want.Same(s) {
		return nil
	}
	overdue, ids := c.Overdue(l.Calendar, s.At)
	if overdue.Minor <= 0 {
		return nil
	}
	ctx := l.context(c, s.Case, s.Stage, s.DPD, overdue, now)
	ctx.StepID = s.ID
	switch s.Stage {
	case StageOverdueConfirmation:
		ctx.Reason = fmt.Sprintf("due time passed with %s unpaid", overdue)
		return &Decision{Kind: KindOverdueConfirmed, Ctx: ctx, InstallmentIDs: ids}
	case StageEscalation:
		ctx.Reason = fmt.Sprintf("still unpaid at DPD %d: escalate to %s tier", s.DPD, ctx.Tier)
		return &Decision{Kind: KindEscalated, Ctx: ctx, Tasks: l.tasks(c, ctx, escalationChannels(ctx.Tier))}
	case StageHandoff:
		ctx.Reason = fmt.Sprintf("still unpaid at DPD %d: place with agency %s", s.DPD, l.Policy.Agency)
		return &Decision{Kind: KindHandedOff, Ctx: ctx, AgencyID: l.Policy.Agency, PlacementID: fmt.Sprintf("pl-c%d", s.Case)}
	case StageLegal:
		ctx.Reason = fmt.Sprintf("still unpaid at DPD %d: refer for legal action", s.DPD)
		return &Decision{Kind: KindLegalReferred, Ctx: ctx, Evidence: &Evidence{
			Installments: c.Installments, Repayments: c.Repayments, Contacts: c.Contacts,
			LogSeqs: c.Seqs, PlacementID: c.PlacementID,
		}}
	}
	return nil
}

// FirstContact decides the first contact after the case numbered n was
// confirmed overdue. It decides once per case.
func (l Ladder) FirstContact(c *Case, n int, now time.Time) *Decision {
	if !c.Open || c.Number != n || c.Stage != StageOverdueConfirmation {
		return nil
	}
	overdue, _ := c.Overdue(l.Calendar, now)
	if overdue.Minor <= 0 {
		return nil
	}
	ctx := l.context(c, n, StageFirstContact, c.DPD, overdue, now)
	ctx.Reason = fmt.Sprintf("overdue confirmed at DPD %d: first contact", c.DPD)
	return &Decision{Kind: KindContactRequested, Ctx: ctx, Tasks: l.tasks(c, ctx, firstContactChannels(ctx.Tier))}
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
	a, ok := c.anchor()
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

// firstContactChannels: the light tier starts with a text message; a case
// confirmed late starts with the channels of its tier.
func firstContactChannels(t Tier) []Channel {
	switch t {
	case TierLight:
		return []Channel{ChannelSMS}
	case TierMedium:
		return []Channel{ChannelSMS, ChannelPhone}
	default:
		return []Channel{ChannelPhone, ChannelLetter}
	}
}

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

func (l Ladder) tasks(c *Case, ctx Context, chans []Channel) []ContactTask {
	ref := ""
	if a, ok := c.anchor(); ok {
		ref = a.ContactRef
	}
	var fees Money
	if ctx.Tier >= TierMedium {
		fees = l.Policy.Fees(ctx.Overdue, ctx.DPD)
	}
	out := make([]ContactTask, 0, len(chans))
	for _, ch := range chans {
		out = append(out, ContactTask{
			ID:               fmt.Sprintf("c%d-%s-%s", ctx.Case, ctx.Stage, ch),
			Channel:          ch,
			Tone:             ToneFor(ctx.Tier),
			ContactRef:       ref,
			Template:         fmt.Sprintf("%s.%s", ctx.Tier, ch),
			AmountDue:        ctx.Overdue,
			DPD:              ctx.DPD,
			RepaymentOptions: []string{"pay_in_app", "bank_transfer", "repayment_plan", "short_deferral"},
			Fees:             fees,
		})
	}
	return out
}
