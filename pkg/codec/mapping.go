package codec

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/opendunning/dunning/pkg/policy"
	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"
)

// StepToProto is the body of a timer and of the step it fires.
func StepToProto(s policy.Step) *dunningv1.StepDue {
	return &dunningv1.StepDue{StepId: s.ID, Stage: StageToProto(s.Stage), CaseNumber: int32(s.Case), Dpd: int32(s.DPD), DueAt: ts(s.At)}
}

func stepFromProto(m *dunningv1.StepDue) policy.Step {
	return policy.Step{ID: m.GetStepId(), Stage: StageFromProto(m.GetStage()), Case: int(m.GetCaseNumber()), DPD: int(m.GetDpd()), At: m.GetDueAt().AsTime()}
}

// InstallmentFromProto maps a lender installment to the domain.
func InstallmentFromProto(m *dunningv1.InstallmentDue) policy.InstallmentDue {
	in := policy.InstallmentDue{ID: m.GetInstallmentId(), Amount: moneyFromProto(m.GetAmount()), DueAt: m.GetDueAt().AsTime(),
		Zone: m.GetTimeZone(), ContactRef: m.GetContactRef(), Product: m.GetProductId(), Locale: m.GetLocale(), BorrowerRef: m.GetBorrowerRef(),
		Region: m.GetRegion(), LimitationEnds: timeOrZero(m.GetLimitationEndsAt())}
	if it := m.GetItemisation(); it != nil {
		items := itemsFromProto(it)
		in.Items = &items
	}
	return in
}

func installmentToProto(tenant, loan string, in policy.InstallmentDue) *dunningv1.InstallmentDue {
	m := &dunningv1.InstallmentDue{TenantId: tenant, LoanId: loan, InstallmentId: in.ID, Amount: moneyToProto(in.Amount),
		DueAt: ts(in.DueAt), TimeZone: in.Zone, ContactRef: in.ContactRef, ProductId: in.Product, Locale: in.Locale, BorrowerRef: in.BorrowerRef,
		Region: in.Region, LimitationEndsAt: ts(in.LimitationEnds)}
	if in.Items != nil {
		m.Itemisation = itemsToProto(*in.Items)
	}
	return m
}

func itemsFromProto(m *dunningv1.Itemisation) policy.Itemisation {
	return policy.Itemisation{Principal: moneyFromProto(m.GetPrincipal()), Interest: moneyFromProto(m.GetInterest()), Fees: moneyFromProto(m.GetFees())}
}

func itemsToProto(i policy.Itemisation) *dunningv1.Itemisation {
	return &dunningv1.Itemisation{Principal: moneyToProto(i.Principal), Interest: moneyToProto(i.Interest), Fees: moneyToProto(i.Fees)}
}

// RepaymentFromProto maps a lender repayment to the domain.
func RepaymentFromProto(m *dunningv1.RepaymentReceived) policy.Repayment {
	return policy.Repayment{PaymentID: m.GetPaymentId(), InstallmentID: m.GetInstallmentId(), Amount: moneyFromProto(m.GetAmount()), PaidAt: m.GetPaidAt().AsTime()}
}

func repaymentToProto(tenant, loan string, r policy.Repayment) *dunningv1.RepaymentReceived {
	return &dunningv1.RepaymentReceived{TenantId: tenant, LoanId: loan, PaymentId: r.PaymentID, InstallmentId: r.InstallmentID,
		Amount: moneyToProto(r.Amount), PaidAt: ts(r.PaidAt)}
}

func moneyFromProto(m *dunningv1.Money) policy.Money {
	return policy.Money{Currency: m.GetCurrency(), Minor: m.GetMinorUnits()}
}

func agencyOutcomeFromProto(m *dunningv1.AgencyOutcome) policy.AgencyOutcome {
	o := policy.AgencyOutcome{ID: m.GetOutcomeId(), Placement: m.GetPlacementId(), Agency: m.GetAgencyId(), At: timeOrZero(m.GetOccurredAt())}
	switch x := m.GetOutcome().(type) {
	case *dunningv1.AgencyOutcome_Contacted:
		o.Kind, o.Channel, o.Connected, o.RightParty = policy.AgencyContacted, ChannelFromProto(x.Contacted.GetChannel()), x.Contacted.GetConnected(), x.Contacted.GetRightParty()
	case *dunningv1.AgencyOutcome_Promise:
		o.Kind, o.Amount, o.For = policy.AgencyPromised, moneyFromProto(x.Promise.GetAmount()), timeOrZero(x.Promise.GetPromisedFor())
	case *dunningv1.AgencyOutcome_Payment:
		o.Kind, o.Amount, o.Reference = policy.AgencyPaid, moneyFromProto(x.Payment.GetAmount()), x.Payment.GetReference()
	case *dunningv1.AgencyOutcome_Dispute:
		o.Kind, o.Detail = policy.AgencyDisputed, x.Dispute.GetDetail()
	case *dunningv1.AgencyOutcome_Returned:
		o.Kind, o.Detail = policy.AgencyReturned, x.Returned.GetReason()
	case *dunningv1.AgencyOutcome_Plan:
		o.Kind = policy.AgencyPlanned
		for _, in := range x.Plan.GetInstallments() {
			o.Plan = append(o.Plan, policy.PlanInstallment{DueAt: timeOrZero(in.GetDueAt()), Amount: moneyFromProto(in.GetAmount())})
		}
	}
	return o
}

func agencyOutcomeToProto(tenant, loan string, o policy.AgencyOutcome) *dunningv1.AgencyOutcome {
	m := &dunningv1.AgencyOutcome{TenantId: tenant, LoanId: loan, PlacementId: o.Placement, OutcomeId: o.ID, OccurredAt: ts(o.At), AgencyId: o.Agency}
	switch o.Kind {
	case policy.AgencyContacted:
		m.Outcome = &dunningv1.AgencyOutcome_Contacted{Contacted: &dunningv1.AgencyContact{Channel: ChannelToProto(o.Channel), Connected: o.Connected, RightParty: o.RightParty}}
	case policy.AgencyPromised:
		m.Outcome = &dunningv1.AgencyOutcome_Promise{Promise: &dunningv1.AgencyPromise{Amount: moneyToProto(o.Amount), PromisedFor: ts(o.For)}}
	case policy.AgencyPaid:
		m.Outcome = &dunningv1.AgencyOutcome_Payment{Payment: &dunningv1.AgencyPayment{Amount: moneyToProto(o.Amount), Reference: o.Reference}}
	case policy.AgencyDisputed:
		m.Outcome = &dunningv1.AgencyOutcome_Dispute{Dispute: &dunningv1.AgencyDispute{Detail: o.Detail}}
	case policy.AgencyReturned:
		m.Outcome = &dunningv1.AgencyOutcome_Returned{Returned: &dunningv1.AgencyReturn{Reason: o.Detail}}
	case policy.AgencyPlanned:
		p := &dunningv1.AgencyPlan{}
		for _, in := range o.Plan {
			p.Installments = append(p.Installments, &dunningv1.PlanInstallment{DueAt: ts(in.DueAt), Amount: moneyToProto(in.Amount)})
		}
		m.Outcome = &dunningv1.AgencyOutcome_Plan{Plan: p}
	}
	return m
}

// MoneyToProto maps an amount to its protobuf form.
func MoneyToProto(m policy.Money) *dunningv1.Money { return moneyToProto(m) }

func moneyToProto(m policy.Money) *dunningv1.Money {
	return &dunningv1.Money{Currency: m.Currency, MinorUnits: m.Minor}
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func contextToProto(tenant, loan string, c policy.Context) *dunningv1.CaseContext {
	return &dunningv1.CaseContext{TenantId: tenant, LoanId: loan, CaseNumber: int32(c.Case), Stage: StageToProto(c.Stage),
		Tier: TierToProto(c.Tier), Dpd: int32(c.DPD), Overdue: moneyToProto(c.Overdue), DecidedAt: ts(c.DecidedAt),
		Reason: c.Reason, StepId: c.StepID, PolicyVersion: c.PolicyVersion, AsOf: ts(c.AsOf)}
}

func contextFromProto(m *dunningv1.CaseContext) policy.Context {
	return policy.Context{Case: int(m.GetCaseNumber()), Stage: StageFromProto(m.GetStage()), Tier: TierFromProto(m.GetTier()),
		DPD: int(m.GetDpd()), Overdue: moneyFromProto(m.GetOverdue()), DecidedAt: m.GetDecidedAt().AsTime(),
		Reason: m.GetReason(), StepID: m.GetStepId(), PolicyVersion: m.GetPolicyVersion(), AsOf: timeOrZero(m.GetAsOf())}
}

// TaskToProto maps one contact task.
func TaskToProto(t policy.ContactTask) *dunningv1.ContactTask {
	return &dunningv1.ContactTask{ContactId: t.ID, Channel: ChannelToProto(t.Channel), Tone: ToneToProto(t.Tone),
		ContactRef: t.ContactRef, Template: t.Template, AmountDue: moneyToProto(t.AmountDue), Dpd: int32(t.DPD),
		RepaymentOptions: t.RepaymentOptions, Fees: moneyToProto(t.Fees), Locale: t.Locale, Reference: t.Reference,
		NotBefore: ts(t.NotBefore), NotAfter: ts(t.NotAfter), MaxAttempts: int32(t.MaxAttempts), ReplyBy: t.ReplyBy}
}

// timeOrZero decodes an unset timestamp (ts of the zero time) as the zero time.
func timeOrZero(t *timestamppb.Timestamp) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.AsTime()
}

func tasksToProto(ts []policy.ContactTask) []*dunningv1.ContactTask {
	out := make([]*dunningv1.ContactTask, 0, len(ts))
	for _, t := range ts {
		out = append(out, TaskToProto(t))
	}
	return out
}

func tasksFromProto(ts []*dunningv1.ContactTask) []policy.ContactTask {
	out := make([]policy.ContactTask, 0, len(ts))
	for _, t := range ts {
		out = append(out, policy.ContactTask{ID: t.GetContactId(), Channel: ChannelFromProto(t.GetChannel()), Tone: ToneFromProto(t.GetTone()),
			ContactRef: t.GetContactRef(), Template: t.GetTemplate(), AmountDue: moneyFromProto(t.GetAmountDue()), DPD: int(t.GetDpd()),
			RepaymentOptions: t.GetRepaymentOptions(), Fees: moneyFromProto(t.GetFees()), Locale: t.GetLocale(), Reference: t.GetReference(),
			NotBefore: timeOrZero(t.GetNotBefore()), NotAfter: timeOrZero(t.GetNotAfter()), MaxAttempts: int(t.GetMaxAttempts()),
			ReplyBy: t.GetReplyBy()})
	}
	return out
}

func evidenceToProto(tenant, loan string, e *policy.Evidence) *dunningv1.Evidence {
	if e == nil {
		return nil
	}
	out := &dunningv1.Evidence{Contacts: tasksToProto(e.Contacts), LogSequences: e.LogSeqs, AgencyPlacementId: e.PlacementID}
	for _, in := range e.Installments {
		out.Installments = append(out.Installments, installmentToProto(tenant, loan, in))
	}
	for _, r := range e.Repayments {
		out.Repayments = append(out.Repayments, repaymentToProto(tenant, loan, r))
	}
	return out
}

func evidenceFromProto(m *dunningv1.Evidence) *policy.Evidence {
	if m == nil {
		return nil
	}
	e := &policy.Evidence{Contacts: tasksFromProto(m.GetContacts()), LogSeqs: m.GetLogSequences(), PlacementID: m.GetAgencyPlacementId()}
	for _, in := range m.GetInstallments() {
		e.Installments = append(e.Installments, InstallmentFromProto(in))
	}
	for _, r := range m.GetRepayments() {
		e.Repayments = append(e.Repayments, RepaymentFromProto(r))
	}
	return e
}
