package policy

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// PromiseToPay is the borrower's promise to pay Amount by For (the local
// day it falls on), as the lender took it At.
type PromiseToPay struct {
	ID     string
	Amount Money
	For    time.Time
	At     time.Time
}

// Promise is a promise to pay and where it stands.
type Promise struct {
	PromiseToPay
	// Paid is what was paid since it was made, while it was open (in
	// minor units of the loan's currency): payments go to the open
	// promise first.
	Paid         int64
	Kept, Broken bool
	// Ended: the case closed (cured or settled) while it was open.
	Ended bool
}

// Open reports whether the promise is neither kept nor broken, and its
// case still open.
func (p Promise) Open() bool { return !p.Kept && !p.Broken && !p.Ended }

// endCommitments ends the open promise and the plan in force with their
// case: nothing is left to pay under them, and neither is broken later.
func (c *Case) endCommitments() {
	for i := range c.Promises {
		if c.Promises[i].Open() {
			c.Promises[i].Ended = true
		}
	}
	for i := range c.Plans {
		if c.Plans[i].Active() {
			c.Plans[i].Ended = true
		}
	}
}

// PromiseRules is how a policy treats promises to pay (policy file:
// promises).
type PromiseRules struct {
	// GraceDays after the promised day before a promise not paid is broken.
	GraceDays int
	// ThresholdPct of the promised amount paid keeps it (1-100).
	ThresholdPct int
	// MaxDays is how far ahead of the day it is made a promise's date may
	// be; MaxBroken how many broken promises a loan may have before no
	// more are taken (0: no limit).
	MaxDays, MaxBroken int
}

// DefaultPromises are the shipped rules: two days' grace, paid in full,
// at most 30 days ahead, no more after two broken.
var DefaultPromises = PromiseRules{GraceDays: 2, ThresholdPct: 100, MaxDays: 30, MaxBroken: 2}

// RulePromise cancels a contact waiting at the gate while a promise is open.
const RulePromise = "case.promise"

// OpenPromise returns the loan's open promise.
func (c *Case) OpenPromise() (Promise, bool) {
	for _, p := range c.Promises {
		if p.Open() {
			return p, true
		}
	}
	return Promise{}, false
}

// BrokenPromises counts the loan's broken promises.
func (c *Case) BrokenPromises() int {
	n := 0
	for _, p := range c.Promises {
		if p.Broken {
			n++
		}
	}
	return n
}

func (c *Case) applyPromise(p PromiseToPay) {
	if !slices.ContainsFunc(c.Promises, func(x Promise) bool { return x.ID == p.ID }) {
		c.Promises = append(c.Promises, Promise{PromiseToPay: p})
	}
}

// payTowardPromise counts a new payment toward the open promise.
func (c *Case) payTowardPromise(r Repayment) {
	for i := range c.Promises {
		if p := &c.Promises[i]; p.Open() && r.Amount.Currency == p.Amount.Currency {
			p.Paid += r.Amount.Minor
			return
		}
	}
}

func (c *Case) resolvePromise(d Decision) {
	for i := range c.Promises {
		if p := &c.Promises[i]; p.ID == d.PromiseID {
			p.Kept, p.Broken = d.Kind == KindPromiseKept, d.Kind == KindPromiseBroken
		}
	}
}

// CheckPromise says why a new promise cannot be taken (the field at fault
// and the reason), or "" when it can: made at now, its date no further
// ahead than the policy's max_days, and the loan not past max_broken.
func (l Ladder) CheckPromise(c *Case, p PromiseToPay, now time.Time) (field, reason string) {
	r := l.Policy.Promises
	if r.MaxBroken > 0 && c.BrokenPromises() >= r.MaxBroken {
		return "promise_to_pay", fmt.Sprintf("the borrower has broken %d promises on this loan (policy promises.max_broken %d): no further promise is taken",
			c.BrokenPromises(), r.MaxBroken)
	}
	if open, ok := c.OpenPromise(); ok && open.ID != p.ID {
		return "promise_to_pay", fmt.Sprintf("promise %s is still open: a loan has one open promise at a time", open.ID)
	}
	if !p.For.After(now) {
		return "promise_to_pay.promised_for", "must be in the future"
	}
	overdue, _ := c.Overdue(l.Calendar, now)
	if overdue.Minor <= 0 {
		return "promise_to_pay", "nothing is overdue on this loan: there is nothing to promise"
	}
	if p.Amount.Currency == overdue.Currency && p.Amount.Minor > overdue.Minor {
		return "promise_to_pay.amount", fmt.Sprintf("must be at most what is overdue, %s", overdue)
	}
	if r.MaxDays > 0 && p.For.After(l.Calendar.after(now, r.MaxDays)) {
		return "promise_to_pay.promised_for", fmt.Sprintf("must be at most %d days ahead (policy promises.max_days)", r.MaxDays)
	}
	if cur := c.Currency(); cur != "" && p.Amount.Currency != cur {
		return "promise_to_pay.amount.currency", "must be the loan's currency, " + cur
	}
	return "", ""
}

// promiseStepID names a promise's deadline step; rung steps start with "c".
func promiseStepID(promise string) string { return "promise-" + promise }

// promiseStep is the loan's step while a promise is open: the start of the
// day after its date and grace, when a promise not kept is broken. Days
// are the borrower's, counted from the loan's first installment (any fixed
// one: the promised day does not move when the oldest unpaid one does).
func (l Ladder) promiseStep(c *Case, p Promise) *Step {
	if len(c.Installments) == 0 {
		return nil
	}
	a := c.Installments[0]
	loc := zone(a.Zone)
	d := l.Calendar.DPD(a.DueAt, loc, p.For) + l.Policy.Promises.GraceDays + 1
	return &Step{ID: promiseStepID(p.ID), Stage: StageOverdueConfirmation, Case: c.Number, DPD: d, At: l.Calendar.DPDStart(a.DueAt, loc, d)}
}

func (l Ladder) promiseKept(p Promise) bool {
	return p.Paid*100 >= p.Amount.Minor*int64(max(l.Policy.Promises.ThresholdPct, 1))
}

// OnPayment decides what a payment does to the open promise (kept once
// what was paid toward it reaches the threshold) and to the plan in force
// (completed once every installment is paid).
func (l Ladder) OnPayment(c *Case, now time.Time) []Decision {
	var out []Decision
	if d := l.onPromisePayment(c, now); d != nil {
		out = append(out, *d)
	}
	if d := l.onPlanPayment(c, now); d != nil {
		out = append(out, *d)
	}
	return out
}

func (l Ladder) onPromisePayment(c *Case, now time.Time) *Decision {
	p, ok := c.OpenPromise()
	if !ok || !l.promiseKept(p) {
		return nil
	}
	return l.promiseDecision(c, p, KindPromiseKept, fmt.Sprintf("promise %s kept: %s paid of %s promised for %s",
		p.ID, Money{Currency: p.Amount.Currency, Minor: p.Paid}, p.Amount, l.LocalTime(c, p.For)), now, time.Time{}, "")
}

// onPromiseDeadline decides a promise's deadline step: broken unless paid.
func (l Ladder) onPromiseDeadline(c *Case, s Step, now time.Time) *Decision {
	id := strings.TrimPrefix(s.ID, "promise-")
	i := slices.IndexFunc(c.Promises, func(p Promise) bool { return p.ID == id })
	if i < 0 || !c.Promises[i].Open() {
		return nil
	}
	p := c.Promises[i]
	if l.promiseKept(p) {
		return l.promiseDecision(c, p, KindPromiseKept, fmt.Sprintf("promise %s kept: %s paid of %s", p.ID,
			Money{Currency: p.Amount.Currency, Minor: p.Paid}, p.Amount), now, s.At, s.ID)
	}
	return l.promiseDecision(c, p, KindPromiseBroken, fmt.Sprintf("promise %s broken: %s paid of %s promised for %s (%d days' grace); the ladder resumes",
		p.ID, Money{Currency: p.Amount.Currency, Minor: p.Paid}, p.Amount, l.LocalTime(c, p.For), l.Policy.Promises.GraceDays), now, s.At, s.ID)
}

func (l Ladder) promiseDecision(c *Case, p Promise, k DecisionKind, reason string, now, asOf time.Time, step string) *Decision {
	overdue, _ := c.Overdue(l.Calendar, now)
	ctx := l.context(c, c.Number, c.Stage, l.DPDAt(c, now), overdue, now)
	ctx.Reason, ctx.AsOf, ctx.StepID = reason, asOf, step
	return &Decision{Kind: k, Ctx: ctx, PromiseID: p.ID, Paid: Money{Currency: p.Amount.Currency, Minor: p.Paid}}
}
