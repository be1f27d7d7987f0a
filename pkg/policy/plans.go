package policy

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// PlanInstallment is one payment of a repayment plan.
type PlanInstallment struct {
	DueAt  time.Time
	Amount Money
}

// RepaymentPlan is a plan the borrower agreed with the lender, At.
type RepaymentPlan struct {
	ID           string
	Installments []PlanInstallment
	At           time.Time
}

// PlanCancelled ends a plan early.
type PlanCancelled struct {
	ID string
	At time.Time
}

// Plan is a repayment plan and where it stands.
type Plan struct {
	RepaymentPlan
	// Schedule is the plan as it stands: a missed installment moves to
	// its end. The first Next are paid.
	Schedule []PlanInstallment
	Next     int
	// Paid is what was paid toward the plan since it was agreed.
	Paid int64
	// Missed counts the installments missed in a row.
	Missed int
	// Since is when the installment at Next became the next: the plan
	// agreed, or the one before it missed. Its reminder is not sent late.
	Since                        time.Time
	Broken, Cancelled, Completed bool
	// Ended: the case closed (settled, or cured by other money) while the
	// plan was in force.
	Ended bool
}

// Active reports whether the plan still replaces the ladder.
func (p Plan) Active() bool { return !p.Broken && !p.Cancelled && !p.Completed && !p.Ended }

// due is what the plan asks to have been paid through position i.
func (p Plan) due(i int) int64 {
	var n int64
	for _, in := range p.Schedule[:i+1] {
		n += in.Amount.Minor
	}
	return n
}

// advance counts the installments paid.
func (p *Plan) advance() {
	for p.Next < len(p.Schedule) && p.Paid >= p.due(p.Next) {
		p.Next++
		p.Missed = 0
	}
}

// PlanReminderDays: a plan installment's reminder goes this many days
// before its day.
const PlanReminderDays = 2

// PlanReminderTemplate is the template of plan reminders, where the policy
// has one (else its first contact's).
const PlanReminderTemplate = "plan_reminder"

// RulePlan cancels a ladder contact waiting at the gate while a plan is kept.
const RulePlan = "case.plan"

// ActivePlan returns the loan's plan in force.
// AgencyPlanPrefix starts the ID of a plan an agency arranged (the
// outcome Recorder names it agency-<outcome>).
const AgencyPlanPrefix = "agency-"

// AgencyPlan is the plan in force if the placed account's agency arranged
// it: while it is, the placement is recalled only by force (a deceased or
// bankruptcy hold, the case's end, the contract's end).
func (c *Case) AgencyPlan() (*Plan, bool) {
	p, ok := c.ActivePlan()
	if !ok || c.PlacementID == "" || !strings.HasPrefix(p.ID, AgencyPlanPrefix) {
		return nil, false
	}
	return p, true
}

func (c *Case) ActivePlan() (*Plan, bool) {
	for i := range c.Plans {
		if c.Plans[i].Active() {
			return &c.Plans[i], true
		}
	}
	return nil, false
}

func (c *Case) applyPlan(p RepaymentPlan) {
	if !slices.ContainsFunc(c.Plans, func(x Plan) bool { return x.ID == p.ID }) {
		c.Plans = append(c.Plans, Plan{RepaymentPlan: p, Schedule: slices.Clone(p.Installments), Since: p.At})
	}
}

func (c *Case) cancelPlan(e PlanCancelled) {
	for i := range c.Plans {
		if c.Plans[i].ID == e.ID {
			c.Plans[i].Cancelled = true
		}
	}
}

func (c *Case) payTowardPlan(r Repayment) {
	if p, ok := c.ActivePlan(); ok && len(p.Schedule) > 0 && r.Amount.Currency == p.Schedule[0].Amount.Currency {
		p.Paid += r.Amount.Minor
		p.advance()
	}
}

func (c *Case) applyPlanProgress(d Decision) {
	for i := range c.Plans {
		p := &c.Plans[i]
		if p.ID != d.PlanID {
			continue
		}
		switch d.Kind {
		case KindPlanMissed:
			if d.PlanInstallment == p.Next && p.Next < len(p.Schedule) {
				moved := p.Schedule[p.Next]
				moved.DueAt = d.MovedTo
				p.Schedule = append(slices.Delete(p.Schedule, p.Next, p.Next+1), moved)
				p.Missed++
				p.Since = d.Ctx.AsOfOrDecided()
				p.advance()
			}
		case KindPlanBroken:
			p.Broken = true
		case KindPlanCompleted:
			p.Completed = true
		}
	}
}

// planTask reports whether a contact task is a plan's reminder (its ID
// is c<case>-plan-<plan>-<due>-<channel>; a ladder task's names its stage).
func planTask(id string) bool { return strings.Contains(id, "-plan-") }

func planCheckID(p *Plan) string {
	return fmt.Sprintf("plancheck-%s-%d", p.ID, p.Schedule[p.Next].DueAt.Unix())
}

func planReminderID(p *Plan) string {
	return fmt.Sprintf("planrem-%s-%d", p.ID, p.Schedule[p.Next].DueAt.Unix())
}

// planStep is the loan's step while a plan is kept: the reminder of its
// next installment (once, and never late: none when its day passed before
// the installment became the next, as when the plan was agreed the day
// before it), then the check at the start of the day after that
// installment's day.
func (l Ladder) planStep(c *Case, p *Plan) *Step {
	a, ok := c.anchor()
	if !ok || p.Next >= len(p.Schedule) {
		return nil
	}
	loc := zone(a.Zone)
	// A hold since the plan was agreed moves its days on by the days held:
	// a borrower in hardship or in dispute does not miss an installment.
	from := a
	if p.At.After(from.DueAt) {
		from.DueAt = p.At
	}
	day := l.Calendar.DPD(a.DueAt, loc, p.Schedule[p.Next].DueAt) + l.heldDays(c, from, time.Time{}, nil)
	if rem := l.Calendar.DPDStart(a.DueAt, loc, day-PlanReminderDays); !c.Done[planReminderID(p)] && !rem.Before(p.Since) {
		return &Step{ID: planReminderID(p), Stage: StageFirstContact, Case: c.Number, DPD: day - PlanReminderDays, At: rem}
	}
	return &Step{ID: planCheckID(p), Stage: StageOverdueConfirmation, Case: c.Number, DPD: day + 1, At: l.Calendar.DPDStart(a.DueAt, loc, day+1)}
}

// onPlanStep decides a plan's step: the reminder before an installment,
// or the check after it (missed: moved to the end; missed twice in a row:
// broken, and the ladder resumes).
func (l Ladder) onPlanStep(c *Case, s Step, now time.Time) *Decision {
	p, ok := c.ActivePlan()
	if !ok || p.Next >= len(p.Schedule) {
		return nil
	}
	in := p.Schedule[p.Next]
	overdue, _ := c.Overdue(l.Calendar, now)
	dpd := l.DPDAt(c, now)
	ctx := l.context(c, c.Number, c.Stage, dpd, overdue, now)
	ctx.StepID, ctx.AsOf = s.ID, s.At
	paid := Money{Currency: in.Amount.Currency, Minor: p.Paid}
	if strings.HasPrefix(s.ID, "planrem-") {
		ctx.Tier = TierLight // a reminder is gentle whatever the DPD
		ctx.Reason = fmt.Sprintf("plan %s: reminder of installment %d of %s due %s", p.ID, p.Next+1, in.Amount, l.LocalTime(c, in.DueAt))
		tmpl := PlanReminderTemplate
		if _, ok := l.Policy.Templates[tmpl]; !ok {
			tmpl = l.firstContactStep(1, TierLight).Template
		}
		tasks := l.tasks(c, ctx, &CadenceStep{Stage: c.Stage, DPD: dpd, Channels: []Channel{ChannelSMS}, Template: tmpl})
		for i := range tasks {
			tasks[i].ID = fmt.Sprintf("c%d-plan-%s-%d-%s", c.Number, p.ID, in.DueAt.Unix(), tasks[i].Channel)
			tasks[i].AmountDue, tasks[i].Fees = in.Amount, Money{Currency: in.Amount.Currency}
		}
		return &Decision{Kind: KindContactRequested, Ctx: ctx, Tasks: tasks}
	}
	d := &Decision{Ctx: ctx, PlanID: p.ID, PlanInstallment: p.Next, Paid: paid}
	if p.Missed >= 1 {
		d.Kind = KindPlanBroken
		d.Ctx.Reason = fmt.Sprintf("plan %s broken: installment %d of %s due %s missed, the second in a row; the ladder resumes",
			p.ID, p.Next+1, in.Amount, l.LocalTime(c, in.DueAt))
		return d
	}
	last := p.Schedule[len(p.Schedule)-1].DueAt
	step := 30 * l.Calendar.Day
	if n := len(p.Schedule); n > 1 {
		step = last.Sub(p.Schedule[n-2].DueAt)
	}
	d.Kind, d.MovedTo = KindPlanMissed, last.Add(step)
	d.Ctx.Reason = fmt.Sprintf("plan %s: installment %d of %s due %s missed; moved to the end of the plan, due %s",
		p.ID, p.Next+1, in.Amount, l.LocalTime(c, in.DueAt), l.LocalTime(c, d.MovedTo))
	return d
}

// onPlanPayment: the payment that pays the plan's last installment
// completes it.
func (l Ladder) onPlanPayment(c *Case, now time.Time) *Decision {
	p, ok := c.ActivePlan()
	if !ok || p.Next < len(p.Schedule) {
		return nil
	}
	overdue, _ := c.Overdue(l.Calendar, now)
	ctx := l.context(c, c.Number, c.Stage, l.DPDAt(c, now), overdue, now)
	ctx.Reason = fmt.Sprintf("plan %s completed: every installment paid (%s)", p.ID, Money{Currency: p.Schedule[0].Amount.Currency, Minor: p.Paid})
	return &Decision{Kind: KindPlanCompleted, Ctx: ctx, PlanID: p.ID, Paid: Money{Currency: p.Schedule[0].Amount.Currency, Minor: p.Paid}}
}

// CheckPlan says why a new plan cannot be agreed (the field at fault and
// the reason), or "" when it can: something is overdue, no other plan is
// in force, its first installment is still to come, and it pays all that
// is overdue now (a plan that pays less would end, all paid, with the
// ladder resuming on the rest at once).
func (l Ladder) CheckPlan(c *Case, p RepaymentPlan, now time.Time) (field, reason string) {
	overdue, _ := c.Overdue(l.Calendar, now)
	if overdue.Minor <= 0 {
		return "repayment_plan", "nothing is overdue on this loan: there is nothing to plan"
	}
	if in, ok := c.ActivePlan(); ok && in.ID != p.ID {
		return "repayment_plan", fmt.Sprintf("plan %s is in force: cancel it first (planCancelled)", in.ID)
	}
	if !p.Installments[0].DueAt.After(now) {
		return "repayment_plan.installments[0].due_at", "must be in the future"
	}
	var total int64
	for _, in := range p.Installments {
		total += in.Amount.Minor
	}
	if cur := p.Installments[0].Amount.Currency; cur == overdue.Currency && total < overdue.Minor {
		return "repayment_plan.installments", fmt.Sprintf("add up to %s, less than the %s overdue: a plan pays all that is overdue",
			Money{Currency: cur, Minor: total}, overdue)
	}
	return "", ""
}
