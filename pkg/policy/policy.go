package policy

import (
	"errors"
	"fmt"

	"github.com/opendunning/dunning/pkg/contactrules"
)

// Policy is a tenant's dunning configuration. Default reproduces the shipped
// tiers and thresholds (docs/domain.md).
type Policy struct {
	// Version names this policy in every decision it makes.
	Version string
	// GraceDays delays overdue confirmation past DPD 1.
	GraceDays int
	// LightMax and MediumMax are the last DPD of the light and medium tiers;
	// severe is everything after MediumMax.
	LightMax  int
	MediumMax int
	// HandoffDPD places the account with an agency; LegalDPD refers it for legal action.
	HandoffDPD int
	LegalDPD   int
	// Agency receives handed-off accounts when Agencies is empty.
	Agency string
	// Agencies is the agency registry: handoff allocates among them by
	// region and weight (agency.go). Empty: every account goes to Agency.
	Agencies []Agency
	// AgencyPaymentConfirmDays is how many days a payment an agency reports
	// may wait for the lender's repayment with its reference before it is
	// recorded unconfirmed and alerted on (0: not watched).
	AgencyPaymentConfirmDays int
	// PenaltyBpsPerDay is the late fee accrued per day past due, in basis
	// points of the overdue balance (5 = 0.05% a day).
	PenaltyBpsPerDay int64

	// What a policy file adds (see config.go). Tenant "*" is every tenant
	// without a policy of its own; Product "" every product.
	Tenant, Product string
	// Jurisdiction names the contact-rule profile (cn, us-regf).
	Jurisdiction  string
	Locales       []string
	DefaultLocale string
	Tiers         []TierRange
	// EscalateDPD is the escalation stage's entry DPD (0: the first day
	// after the light tier).
	EscalateDPD int
	Entries     map[Stage]EntryCondition
	Cadence     []CadenceStep
	Templates   map[string]Template
	// LenderName is the lender's name as borrowers know it, which {lender}
	// renders ("" renders the tenant ID). RepayWording, per locale,
	// replaces the shipped wording of {repay} with the lender's own.
	LenderName   string
	RepayWording map[string]string
	// Callback, per locale, is how a borrower calls the lender back, which
	// {callback} renders (a voicemail's callback number); without it the
	// shipped wording points to the number in the borrower's contract.
	Callback map[string]string
	// Contact is when contacts may leave: the jurisdiction's pack, the
	// lender's calendar and send slot (gate.go).
	Contact ContactRules
	// Holds is how holds pause the ladder and when they are reviewed.
	Holds HoldRules
	// Promises is how promises to pay are taken, kept and broken.
	Promises PromiseRules
	// Legal is the pre-legal gate: the final notice and its reply window,
	// and the debt's limitation period (legal.go).
	Legal LegalRules
}

// Default returns the shipped policy: tiers 1-15 / 16-30 / 31+, handoff at
// DPD 31, legal referral at DPD 90, no grace.
func Default() Policy {
	return Policy{
		Version:          "default-v1",
		GraceDays:        0,
		LightMax:         15,
		MediumMax:        30,
		HandoffDPD:       31,
		LegalDPD:         90,
		Agency:           "agency-default",
		PenaltyBpsPerDay: 5,
		Promises:         DefaultPromises,
	}
}

// Validate reports every inconsistency at once.
func (p Policy) Validate() error {
	var errs []error
	if p.Version == "" {
		errs = append(errs, errors.New("version: must not be empty"))
	}
	if p.GraceDays < 0 {
		errs = append(errs, fmt.Errorf("grace_days: must be >= 0, got %d", p.GraceDays))
	}
	if p.LightMax < 1 {
		errs = append(errs, fmt.Errorf("light_max: must be >= 1, got %d", p.LightMax))
	}
	if p.MediumMax <= p.LightMax {
		errs = append(errs, fmt.Errorf("medium_max: must be > light_max (%d), got %d", p.LightMax, p.MediumMax))
	}
	if p.HandoffDPD <= p.EscalationDPD() {
		errs = append(errs, fmt.Errorf("handoff_dpd: must be > escalation DPD (%d), got %d", p.EscalationDPD(), p.HandoffDPD))
	}
	if p.LegalDPD <= p.HandoffDPD {
		errs = append(errs, fmt.Errorf("legal_dpd: must be > handoff_dpd (%d), got %d", p.HandoffDPD, p.LegalDPD))
	}
	if !ValidID(p.Agency) {
		errs = append(errs, fmt.Errorf("agency: %q is not a valid identifier", p.Agency))
	}
	errs = append(errs, validateAgencies(p.Agencies)...)
	if p.AgencyPaymentConfirmDays < 0 {
		errs = append(errs, fmt.Errorf("confirm_payment_days: must be >= 0 (0: not watched), got %d", p.AgencyPaymentConfirmDays))
	}
	if p.PenaltyBpsPerDay < 0 {
		errs = append(errs, fmt.Errorf("penalty_bps_per_day: must be >= 0, got %d", p.PenaltyBpsPerDay))
	}
	errs = append(errs, p.Contact.validate()...)
	errs = append(errs, p.Legal.validate(p.Templates)...)
	if r := p.Promises; r.GraceDays < 0 || r.ThresholdPct < 1 || r.ThresholdPct > 100 || r.MaxDays < 1 || r.MaxBroken < 0 {
		errs = append(errs, fmt.Errorf("promises: grace_days >= 0, threshold_pct 1-100, max_days >= 1, max_broken >= 0; got %+v", r))
	}
	return errors.Join(errs...)
}

// ConfirmDPD is the DPD at which an unpaid installment is confirmed overdue.
func (p Policy) ConfirmDPD() int { return 1 + p.GraceDays }

// EscalationDPD is the escalation stage's entry DPD: configured, or the
// first day of the medium tier.
func (p Policy) EscalationDPD() int {
	if p.EscalateDPD > 0 {
		return p.EscalateDPD
	}
	return p.LightMax + 1
}

// TierAt returns the tier of an account dpd days past due.
func (p Policy) TierAt(dpd int) Tier {
	switch {
	case dpd <= 0:
		return TierNone
	case dpd <= p.LightMax:
		return TierLight
	case dpd <= p.MediumMax:
		return TierMedium
	default:
		return TierSevere
	}
}

// Fees returns late fees accrued on overdue after dpd days, rounded down.
func (p Policy) Fees(overdue Money, dpd int) Money {
	if dpd <= 0 {
		return Money{Currency: overdue.Currency}
	}
	return Money{Currency: overdue.Currency, Minor: overdue.Minor * p.PenaltyBpsPerDay * int64(dpd) / 10000}
}

// validateContact checks the send slot against the pack's window: releases
// start inside it and the spread ends before it closes.
func (r ContactRules) validate() []error {
	var errs []error
	from, to, rule, _ := r.Pack.Window()
	sendAt := max(r.SendAt, from)
	if r.SendAt != 0 && r.SendAt < from {
		errs = append(errs, fmt.Errorf("send_at: %s is before the window %s opens", contactrules.FormatWall(r.SendAt), rule))
	}
	if r.SendSpread < 0 {
		errs = append(errs, fmt.Errorf("send_spread: must be >= 0, got %s", r.SendSpread))
	}
	if sendAt+r.SendSpread > to {
		errs = append(errs, fmt.Errorf("send_spread: send_at %s plus %s ends after the window closes at %s", contactrules.FormatWall(sendAt), r.SendSpread, contactrules.FormatWall(to)))
	}
	if r.MaxAttempts < 0 {
		errs = append(errs, fmt.Errorf("max_attempts: must be >= 0, got %d", r.MaxAttempts))
	}
	return errs
}
