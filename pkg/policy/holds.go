package policy

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// HoldRules is how a policy treats holds (policy file: holds).
type HoldRules struct {
	// Pause: the days a loan is held do not count toward its ladder
	// (ladder_clock: pause, as Fineract pauses arrears ageing), so a
	// release resumes it where it stood. Otherwise (calendar) the ladder
	// goes on counting, and a release finds the rungs it passed due at once.
	Pause bool
	// ReviewDays is, per kind, how many days after it was placed a hold's
	// review falls due (absent: none). The deadline replaces the pending
	// step while the hold is open; when it comes the pipeline records
	// hold_deadline and the hold stays until the lender releases it.
	// Breathing space has its own: BreathingSpaceDays, and it ends by itself.
	ReviewDays map[HoldKind]int
}

// BreathingSpaceDays is how long a breathing space lasts (the Debt Respite
// Scheme of England and Wales: 60 days), after which the hold ends by itself.
const BreathingSpaceDays = 60

// ParseHoldKind maps a configuration or API name to a HoldKind.
func ParseHoldKind(s string) (HoldKind, bool) {
	i := slices.Index(holdNames[:], s)
	if i <= 0 {
		return HoldNone, false
	}
	return HoldKind(i), true
}

// HoldKindNames lists the hold kinds by name.
func HoldKindNames() []string { return slices.Clone(holdNames[1:]) }

// AdminRelease reports whether only the admin scope may lift a hold of the
// kind: one that says the borrower died or is bankrupt is never lifted by
// a lender's routine feed, only corrected when it was entered by mistake.
func (k HoldKind) AdminRelease() bool { return k == HoldDeceased || k == HoldBankruptcy }

// FreezesFees reports whether late fees and interest stop accruing while a
// hold of the kind is open (hardship, breathing space).
func (k HoldKind) FreezesFees() bool { return k == HoldHardship || k == HoldBreathingSpace }

// deadline is a hold kind's deadline in days after it was placed (0: none)
// and whether it lifts the hold.
func (r HoldRules) deadline(k HoldKind) (days int, lifts bool) {
	if k == HoldBreathingSpace {
		return BreathingSpaceDays, true
	}
	return r.ReviewDays[k], false
}

// deadlineStepID names a hold's deadline step; rung steps start with "c".
func deadlineStepID(hold string) string { return "hold-" + hold }

// holdStep is the step the loan's timer holds while it is held: the
// earliest deadline of its open holds not yet reached, or nil.
func (l Ladder) holdStep(c *Case) *Step {
	var best *Step
	for _, h := range c.Holds {
		days, _ := l.Policy.Holds.deadline(h.Kind)
		if !h.Released.IsZero() || h.DeadlineDone || days <= 0 {
			continue
		}
		at := l.Calendar.after(h.At, days)
		if best == nil || at.Before(best.At) {
			best = &Step{ID: deadlineStepID(h.ID), Stage: StageOverdueConfirmation, Case: c.Number, DPD: c.DPD, At: at}
		}
	}
	return best
}

// onHoldDeadline decides a hold's deadline step: a breathing space ends,
// any other hold's review is due (and the hold stays).
func (l Ladder) onHoldDeadline(c *Case, s Step, now time.Time) *Decision {
	id := strings.TrimPrefix(s.ID, "hold-")
	i := slices.IndexFunc(c.Holds, func(h Hold) bool { return h.ID == id })
	if i < 0 {
		return nil
	}
	h := c.Holds[i]
	days, lifts := l.Policy.Holds.deadline(h.Kind)
	overdue, _ := c.Overdue(l.Calendar, now)
	ctx := l.context(c, c.Number, c.Stage, l.DPDAt(c, now), overdue, now)
	ctx.StepID, ctx.AsOf = s.ID, s.At
	if lifts {
		ctx.Reason = fmt.Sprintf("%s %s ended after %d days: the hold is lifted", h.Kind, h.ID, days)
	} else {
		ctx.Reason = fmt.Sprintf("%s hold %s placed %d days ago is due for review: it stays until the lender releases it", h.Kind, h.ID, days)
	}
	return &Decision{Kind: KindHoldDeadline, Ctx: ctx, HoldID: h.ID, HoldLifted: lifts}
}

// OnHoldPlaced decides what a new hold does beyond stopping the ladder: an
// account placed with an agency is recalled (the agency stops collecting
// on a loan that is disputed, in hardship, or whose borrower died).
func (l Ladder) OnHoldPlaced(c *Case, h HoldPlaced, now time.Time) *Decision {
	if !c.Open || c.PlacementID == "" {
		return nil
	}
	overdue, _ := c.Overdue(l.Calendar, now)
	ctx := l.context(c, c.Number, c.Stage, l.DPDAt(c, now), overdue, now)
	if p, ok := c.AgencyPlan(); ok && h.Kind != HoldDeceased && h.Kind != HoldBankruptcy {
		if slices.Contains(c.RecallsRefused, "hold:"+h.ID+"/"+c.PlacementID) {
			return nil // recorded already (a redelivered hold)
		}
		ctx.Reason = fmt.Sprintf("%s hold %s on a placed account: recall of placement %s refused, agency %s's plan %s is in force (only a deceased or bankruptcy hold forces it)",
			h.Kind, h.ID, c.PlacementID, c.AgencyID, p.ID)
		return &Decision{Kind: KindRecallRefused, Ctx: ctx, AgencyID: c.AgencyID, PlacementID: c.PlacementID, PlanID: p.ID, Rule: "hold:" + h.ID}
	}
	ctx.Reason = fmt.Sprintf("%s hold %s on a placed account: placement %s recalled from agency %s", h.Kind, h.ID, c.PlacementID, c.AgencyID)
	return &Decision{Kind: KindPlacementRecalled, Ctx: ctx, AgencyID: c.AgencyID, PlacementID: c.PlacementID}
}

// span is a stretch of time with at least one hold open.
type span struct{ from, to time.Time }

// heldSpans returns the stretches, merged where holds overlap, during which
// a hold whose kind passes keep was open, from a's due time (nothing
// before it is overdue) up to now (zero: up to each release; an open hold
// then has no end and counts nothing).
func heldSpans(c *Case, a InstallmentDue, now time.Time, keep func(HoldKind) bool) []span {
	var spans []span
	for _, h := range c.Holds {
		if keep != nil && !keep(h.Kind) {
			continue
		}
		to := h.Released
		if !now.IsZero() && (to.IsZero() || to.After(now)) {
			to = now
		}
		from := h.At
		if from.Before(a.DueAt) {
			from = a.DueAt
		}
		if !to.IsZero() && to.After(from) {
			spans = append(spans, span{from, to})
		}
	}
	slices.SortFunc(spans, func(x, y span) int { return x.from.Compare(y.from) })
	var merged []span
	for _, s := range spans {
		if n := len(merged); n > 0 && !s.from.After(merged[n-1].to) {
			if s.to.After(merged[n-1].to) {
				merged[n-1].to = s.to
			}
			continue
		}
		merged = append(merged, s)
	}
	return merged
}

// heldDays counts the days of a's overdue the loan was held: for each
// stretch, the calendar days it spans (a dispute from DPD 12 to DPD 20 is
// 8 days, whatever the hours).
func (l Ladder) heldDays(c *Case, a InstallmentDue, now time.Time, keep func(HoldKind) bool) int {
	n, loc := 0, zone(a.Zone)
	for _, s := range heldSpans(c, a, now, keep) {
		n += l.Calendar.DPD(a.DueAt, loc, s.to) - l.Calendar.DPD(a.DueAt, loc, s.from)
	}
	return n
}

// ladderClock is the installment the ladder counts days from: the anchor, whose
// due time moves on by the days held when the policy pauses the ladder
// while held. now bounds an open hold (zero: open holds count nothing;
// the ladder has no rung while one is open).
func (l Ladder) ladderClock(c *Case, now time.Time) (InstallmentDue, bool) {
	a, ok := c.anchor()
	if !ok || !l.Policy.Holds.Pause {
		return a, ok
	}
	if n := l.heldDays(c, a, now, nil); n > 0 {
		a.DueAt = l.Calendar.DPDStart(a.DueAt, zone(a.Zone), n)
	}
	return a, true
}

// feeDPD is the DPD late fees are computed at: the decision's, less the
// days fees were frozen (hardship, breathing space). When the ladder
// pauses while held, the decision's DPD already leaves every held day out.
func (l Ladder) feeDPD(c *Case, ctx Context) int {
	if l.Policy.Holds.Pause {
		return ctx.DPD
	}
	a, ok := c.anchor()
	if !ok {
		return ctx.DPD
	}
	return max(ctx.DPD-l.heldDays(c, a, ctx.AsOfOrDecided(), HoldKind.FreezesFees), 0)
}

// AsOfOrDecided is the instant the decision belongs to.
func (x Context) AsOfOrDecided() time.Time {
	if x.AsOf.IsZero() {
		return x.DecidedAt
	}
	return x.AsOf
}

// after is the instant days days after t.
func (c Calendar) after(t time.Time, days int) time.Time {
	return t.Add(time.Duration(days) * c.Day)
}
