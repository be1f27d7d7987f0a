package policy

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// PaymentReport is a payment an agency reported on a placed account: a
// report, never money. It is confirmed when a lender repayment with the
// report's reference as its payment ID arrives (before or after it). One
// unconfirmed past the policy's AgencyPaymentConfirmDays is recorded
// (KindAgencyPaymentUnconfirmed), which the alert on that decision's
// counter raises: money the agency says it collected that the lender's
// books never show.
type PaymentReport struct {
	AgencyOutcome
	Confirmed bool
	// Flagged: its unconfirmed record is written; it is not watched again.
	Flagged bool
}

// reportStepPrefix names a payment report's confirmation deadline.
const reportStepPrefix = "payrep-"

// applyReport records an agency's payment report (once by its ID).
func (c *Case) applyReport(a AgencyOutcome) {
	if a.Kind != AgencyPaid || slices.ContainsFunc(c.PaymentReports, func(r PaymentReport) bool { return r.ID == a.ID }) {
		return
	}
	confirmed := slices.ContainsFunc(c.Repayments, func(r Repayment) bool { return r.PaymentID == a.Reference })
	c.PaymentReports = append(c.PaymentReports, PaymentReport{AgencyOutcome: a, Confirmed: confirmed})
}

// confirmReports marks the reports a lender repayment confirms.
func (c *Case) confirmReports(r Repayment) {
	for i := range c.PaymentReports {
		if c.PaymentReports[i].Reference == r.PaymentID {
			c.PaymentReports[i].Confirmed = true
		}
	}
}

// reportStep is the earliest confirmation deadline of a payment report
// still unconfirmed on the open case (nil: none, or the policy watches
// none). The handoff stage, which placed the account, decides it.
func (l Ladder) reportStep(c *Case) *Step {
	days := l.Policy.AgencyPaymentConfirmDays
	if days <= 0 || !c.Open {
		return nil
	}
	var next *Step
	for _, r := range c.PaymentReports {
		if r.Confirmed || r.Flagged {
			continue
		}
		at := r.At.Add(time.Duration(days) * l.Calendar.Day)
		if next == nil || at.Before(next.At) {
			next = &Step{ID: reportStepPrefix + r.ID, Stage: StageHandoff, Case: c.Number, At: at}
		}
	}
	return next
}

// onReportDeadline records a payment report still unconfirmed at its
// deadline.
func (l Ladder) onReportDeadline(c *Case, s Step, now time.Time) *Decision {
	id := strings.TrimPrefix(s.ID, reportStepPrefix)
	i := slices.IndexFunc(c.PaymentReports, func(r PaymentReport) bool { return r.ID == id })
	if i < 0 || c.PaymentReports[i].Confirmed || c.PaymentReports[i].Flagged {
		return nil
	}
	r := c.PaymentReports[i]
	overdue, _ := c.Overdue(l.Calendar, now)
	ctx := l.context(c, c.Number, c.Stage, l.DPDAt(c, now), overdue, now)
	ctx.StepID, ctx.AsOf = s.ID, s.At
	ctx.Reason = fmt.Sprintf("agency %s reported a payment of %s (reference %q) on placement %s at %s; no lender repayment with that reference %d days later",
		r.Agency, r.Amount, r.Reference, r.Placement, r.At.UTC().Format(time.RFC3339), l.Policy.AgencyPaymentConfirmDays)
	return &Decision{Kind: KindAgencyPaymentUnconfirmed, Ctx: ctx, AgencyID: r.Agency, PlacementID: r.Placement, ReportID: r.ID,
		Paid: r.Amount, Rule: r.Reference}
}

// flagReport marks a report whose unconfirmed record is written.
func (c *Case) flagReport(id string) {
	for i := range c.PaymentReports {
		if c.PaymentReports[i].ID == id {
			c.PaymentReports[i].Flagged = true
		}
	}
}
