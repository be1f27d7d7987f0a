package loanlog

import (
	"errors"

	"fmt"
	"github.com/ThreeDotsLabs/watermill/message"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/opendunning/dunning/pkg/bus"
	"github.com/opendunning/dunning/pkg/policy"
	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"
)

// This file is the one place where protobuf and domain types meet.

// ErrUndecodable marks an entry whose body does not match its subject's kind.
// It is permanent: redelivery cannot fix it.
var ErrUndecodable = errors.New("undecodable loan-log entry")

// DecodeMessage decodes a loan-log message as a consumer receives it; every
// error is permanent (redelivery cannot fix it).
func DecodeMessage(msg *message.Message) (bus.LoanAddress, policy.Event, error) {
	addr, err := bus.ParseLoanSubject(msg.Metadata.Get(bus.MetaSubject))
	if err != nil {
		return addr, nil, bus.Permanent(err)
	}
	ev, err := Decode(addr, msg.Payload)
	if err != nil {
		return addr, nil, bus.Permanent(err)
	}
	return addr, ev, nil
}

// Decode turns a loan-log message into a domain event.
func Decode(addr bus.LoanAddress, data []byte) (policy.Event, error) {
	fail := func(err error) (policy.Event, error) {
		return nil, fmt.Errorf("%w: %s: %w", ErrUndecodable, addr.Kind, err)
	}
	switch addr.Kind {
	case bus.KindDue:
		var m dunningv1.InstallmentDue
		if err := proto.Unmarshal(data, &m); err != nil {
			return fail(err)
		}
		return InstallmentFromProto(&m), nil
	case bus.KindRepaid:
		var m dunningv1.RepaymentReceived
		if err := proto.Unmarshal(data, &m); err != nil {
			return fail(err)
		}
		return RepaymentFromProto(&m), nil
	case bus.KindSettled:
		var m dunningv1.LoanSettled
		if err := proto.Unmarshal(data, &m); err != nil {
			return fail(err)
		}
		return policy.Settled{At: m.GetSettledAt().AsTime()}, nil
	case bus.KindOutcome:
		var m dunningv1.ContactOutcome
		if err := proto.Unmarshal(data, &m); err != nil {
			return fail(err)
		}
		return policy.ContactOutcome{ContactID: m.GetContactId(), Outcome: policy.Outcome(m.GetOutcome()),
			At: m.GetOccurredAt().AsTime(), Detail: m.GetDetail()}, nil
	case bus.KindTimer, bus.KindStep:
		var m dunningv1.StepDue
		if err := proto.Unmarshal(data, &m); err != nil {
			return fail(err)
		}
		s := stepFromProto(&m)
		if s.ID == "" {
			return fail(errors.New("step_id is empty"))
		}
		if addr.Kind == bus.KindTimer {
			return policy.TimerSet{Step: s}, nil
		}
		return policy.StepFired{Step: s}, nil
	}
	d, err := decodeDecision(addr.Kind, data)
	if err != nil {
		return fail(err)
	}
	return d, nil
}

func decodeDecision(k bus.Kind, data []byte) (policy.Decision, error) {
	switch k {
	case bus.KindOverdue:
		var m dunningv1.OverdueConfirmed
		if err := proto.Unmarshal(data, &m); err != nil {
			return policy.Decision{}, err
		}
		return policy.Decision{Kind: policy.KindOverdueConfirmed, Ctx: contextFromProto(m.GetCase()), InstallmentIDs: m.GetInstallmentIds()}, nil
	case bus.KindContact:
		var m dunningv1.ContactRequested
		if err := proto.Unmarshal(data, &m); err != nil {
			return policy.Decision{}, err
		}
		return policy.Decision{Kind: policy.KindContactRequested, Ctx: contextFromProto(m.GetCase()), Tasks: tasksFromProto(m.GetTasks())}, nil
	case bus.KindEscalated:
		var m dunningv1.Escalated
		if err := proto.Unmarshal(data, &m); err != nil {
			return policy.Decision{}, err
		}
		return policy.Decision{Kind: policy.KindEscalated, Ctx: contextFromProto(m.GetCase()), Tasks: tasksFromProto(m.GetTasks())}, nil
	case bus.KindHandedOff:
		var m dunningv1.HandedOff
		if err := proto.Unmarshal(data, &m); err != nil {
			return policy.Decision{}, err
		}
		return policy.Decision{Kind: policy.KindHandedOff, Ctx: contextFromProto(m.GetCase()), AgencyID: m.GetAgencyId(), PlacementID: m.GetPlacementId()}, nil
	case bus.KindLegal:
		var m dunningv1.LegalReferred
		if err := proto.Unmarshal(data, &m); err != nil {
			return policy.Decision{}, err
		}
		return policy.Decision{Kind: policy.KindLegalReferred, Ctx: contextFromProto(m.GetCase())}, nil
	case bus.KindClosed:
		var m dunningv1.CaseClosed
		if err := proto.Unmarshal(data, &m); err != nil {
			return policy.Decision{}, err
		}
		return policy.Decision{Kind: policy.KindCaseClosed, Ctx: contextFromProto(m.GetCase()),
			CloseReason: policy.CloseReason(m.GetCloseReason()), ClosedAtStage: policy.Stage(m.GetClosedAtStage()),
			PlacementID: m.GetRecalledPlacementId()}, nil
	case bus.KindDeferred:
		var m dunningv1.EntryDeferred
		if err := proto.Unmarshal(data, &m); err != nil {
			return policy.Decision{}, err
		}
		return policy.Decision{Kind: policy.KindEntryDeferred, Ctx: contextFromProto(m.GetCase()), DeferredStage: policy.Stage(m.GetDeferredStage())}, nil
	case bus.KindCancelled:
		var m dunningv1.StepCancelled
		if err := proto.Unmarshal(data, &m); err != nil {
			return policy.Decision{}, err
		}
		return policy.Decision{Kind: policy.KindStepCancelled, Ctx: contextFromProto(m.GetCase()), CancelledStep: m.GetCancelledStepId()}, nil
	}
	return policy.Decision{}, fmt.Errorf("unknown kind %q", k)
}

// kindOf maps a decision to its loan-log kind.
func kindOf(k policy.DecisionKind) (bus.Kind, error) {
	switch k {
	case policy.KindOverdueConfirmed:
		return bus.KindOverdue, nil
	case policy.KindContactRequested:
		return bus.KindContact, nil
	case policy.KindEscalated:
		return bus.KindEscalated, nil
	case policy.KindHandedOff:
		return bus.KindHandedOff, nil
	case policy.KindLegalReferred:
		return bus.KindLegal, nil
	case policy.KindCaseClosed:
		return bus.KindClosed, nil
	case policy.KindStepCancelled:
		return bus.KindCancelled, nil
	case policy.KindEntryDeferred:
		return bus.KindDeferred, nil
	}
	return "", fmt.Errorf("no loan-log kind for decision %s", k)
}

// EncodeDecision returns the protobuf message of a decision.
func EncodeDecision(tenant, loan string, d policy.Decision) (proto.Message, error) {
	c := contextToProto(tenant, loan, d.Ctx)
	switch d.Kind {
	case policy.KindOverdueConfirmed:
		return &dunningv1.OverdueConfirmed{Case: c, InstallmentIds: d.InstallmentIDs}, nil
	case policy.KindContactRequested:
		return &dunningv1.ContactRequested{Case: c, Tasks: tasksToProto(d.Tasks)}, nil
	case policy.KindEscalated:
		return &dunningv1.Escalated{Case: c, Tasks: tasksToProto(d.Tasks)}, nil
	case policy.KindHandedOff:
		return &dunningv1.HandedOff{Case: c, AgencyId: d.AgencyID, PlacementId: d.PlacementID}, nil
	case policy.KindLegalReferred:
		return &dunningv1.LegalReferred{Case: c, Evidence: evidenceToProto(tenant, loan, d.Evidence)}, nil
	case policy.KindCaseClosed:
		return &dunningv1.CaseClosed{Case: c, CloseReason: dunningv1.CloseReason(d.CloseReason),
			ClosedAtStage: dunningv1.Stage(d.ClosedAtStage), RecalledPlacementId: d.PlacementID}, nil
	case policy.KindStepCancelled:
		return &dunningv1.StepCancelled{Case: c, CancelledStepId: d.CancelledStep}, nil
	case policy.KindEntryDeferred:
		return &dunningv1.EntryDeferred{Case: c, DeferredStage: dunningv1.Stage(d.DeferredStage)}, nil
	}
	return nil, fmt.Errorf("cannot encode decision %s", d.Kind)
}

// stepToProto and stepFromProto map timer bodies.
func stepToProto(s policy.Step) *dunningv1.StepDue {
	return &dunningv1.StepDue{StepId: s.ID, Stage: dunningv1.Stage(s.Stage), CaseNumber: int32(s.Case), Dpd: int32(s.DPD), DueAt: ts(s.At)}
}

func stepFromProto(m *dunningv1.StepDue) policy.Step {
	return policy.Step{ID: m.GetStepId(), Stage: policy.Stage(m.GetStage()), Case: int(m.GetCaseNumber()), DPD: int(m.GetDpd()), At: m.GetDueAt().AsTime()}
}

// StepToken is the step subject suffix of a timed stage.
func StepToken(s policy.Stage) (string, error) {
	switch s {
	case policy.StageOverdueConfirmation:
		return bus.StepConfirm, nil
	case policy.StageFirstContact:
		return bus.StepContact, nil
	case policy.StageEscalation:
		return bus.StepEscalate, nil
	case policy.StageHandoff:
		return bus.StepHandoff, nil
	case policy.StageLegal:
		return bus.StepLegal, nil
	}
	return "", fmt.Errorf("stage %s is not timed", s)
}

// InstallmentFromProto maps a lender installment to the domain.
func InstallmentFromProto(m *dunningv1.InstallmentDue) policy.InstallmentDue {
	return policy.InstallmentDue{ID: m.GetInstallmentId(), Amount: moneyFromProto(m.GetAmount()), DueAt: m.GetDueAt().AsTime(),
		Zone: m.GetTimeZone(), ContactRef: m.GetContactRef(), Product: m.GetProductId()}
}

// RepaymentFromProto maps a lender repayment to the domain.
func RepaymentFromProto(m *dunningv1.RepaymentReceived) policy.Repayment {
	return policy.Repayment{PaymentID: m.GetPaymentId(), InstallmentID: m.GetInstallmentId(), Amount: moneyFromProto(m.GetAmount()), PaidAt: m.GetPaidAt().AsTime()}
}

func moneyFromProto(m *dunningv1.Money) policy.Money {
	return policy.Money{Currency: m.GetCurrency(), Minor: m.GetMinorUnits()}
}

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
	return &dunningv1.CaseContext{TenantId: tenant, LoanId: loan, CaseNumber: int32(c.Case), Stage: dunningv1.Stage(c.Stage),
		Tier: dunningv1.Tier(c.Tier), Dpd: int32(c.DPD), Overdue: moneyToProto(c.Overdue), DecidedAt: ts(c.DecidedAt),
		Reason: c.Reason, StepId: c.StepID, PolicyVersion: c.PolicyVersion}
}

func contextFromProto(m *dunningv1.CaseContext) policy.Context {
	return policy.Context{Case: int(m.GetCaseNumber()), Stage: policy.Stage(m.GetStage()), Tier: policy.Tier(m.GetTier()),
		DPD: int(m.GetDpd()), Overdue: moneyFromProto(m.GetOverdue()), DecidedAt: m.GetDecidedAt().AsTime(),
		Reason: m.GetReason(), StepID: m.GetStepId(), PolicyVersion: m.GetPolicyVersion()}
}

// TaskToProto maps one contact task.
func TaskToProto(t policy.ContactTask) *dunningv1.ContactTask {
	return tasksToProto([]policy.ContactTask{t})[0]
}

func tasksToProto(ts []policy.ContactTask) []*dunningv1.ContactTask {
	out := make([]*dunningv1.ContactTask, 0, len(ts))
	for _, t := range ts {
		out = append(out, &dunningv1.ContactTask{ContactId: t.ID, Channel: dunningv1.Channel(t.Channel), Tone: dunningv1.Tone(t.Tone),
			ContactRef: t.ContactRef, Template: t.Template, AmountDue: moneyToProto(t.AmountDue), Dpd: int32(t.DPD),
			RepaymentOptions: t.RepaymentOptions, Fees: moneyToProto(t.Fees), Locale: t.Locale, Reference: t.Reference})
	}
	return out
}

func tasksFromProto(ts []*dunningv1.ContactTask) []policy.ContactTask {
	out := make([]policy.ContactTask, 0, len(ts))
	for _, t := range ts {
		out = append(out, policy.ContactTask{ID: t.GetContactId(), Channel: policy.Channel(t.GetChannel()), Tone: policy.Tone(t.GetTone()),
			ContactRef: t.GetContactRef(), Template: t.GetTemplate(), AmountDue: moneyFromProto(t.GetAmountDue()), DPD: int(t.GetDpd()),
			RepaymentOptions: t.GetRepaymentOptions(), Fees: moneyFromProto(t.GetFees()), Locale: t.GetLocale(), Reference: t.GetReference()})
	}
	return out
}

func evidenceToProto(tenant, loan string, e *policy.Evidence) *dunningv1.Evidence {
	if e == nil {
		return nil
	}
	out := &dunningv1.Evidence{Contacts: tasksToProto(e.Contacts), LogSequences: e.LogSeqs, AgencyPlacementId: e.PlacementID}
	for _, in := range e.Installments {
		out.Installments = append(out.Installments, &dunningv1.InstallmentDue{TenantId: tenant, LoanId: loan, InstallmentId: in.ID,
			Amount: moneyToProto(in.Amount), DueAt: ts(in.DueAt), TimeZone: in.Zone, ContactRef: in.ContactRef, ProductId: in.Product})
	}
	for _, r := range e.Repayments {
		out.Repayments = append(out.Repayments, &dunningv1.RepaymentReceived{TenantId: tenant, LoanId: loan, PaymentId: r.PaymentID,
			InstallmentId: r.InstallmentID, Amount: moneyToProto(r.Amount), PaidAt: ts(r.PaidAt)})
	}
	return out
}

// NewProto returns an empty protobuf message of a loan-log kind, for
// rendering entries as JSON.
func NewProto(k bus.Kind) (proto.Message, bool) {
	switch k {
	case bus.KindDue:
		return &dunningv1.InstallmentDue{}, true
	case bus.KindRepaid:
		return &dunningv1.RepaymentReceived{}, true
	case bus.KindSettled:
		return &dunningv1.LoanSettled{}, true
	case bus.KindOutcome:
		return &dunningv1.ContactOutcome{}, true
	case bus.KindTimer, bus.KindStep:
		return &dunningv1.StepDue{}, true
	case bus.KindOverdue:
		return &dunningv1.OverdueConfirmed{}, true
	case bus.KindContact:
		return &dunningv1.ContactRequested{}, true
	case bus.KindEscalated:
		return &dunningv1.Escalated{}, true
	case bus.KindHandedOff:
		return &dunningv1.HandedOff{}, true
	case bus.KindLegal:
		return &dunningv1.LegalReferred{}, true
	case bus.KindClosed:
		return &dunningv1.CaseClosed{}, true
	case bus.KindCancelled:
		return &dunningv1.StepCancelled{}, true
	case bus.KindDeferred:
		return &dunningv1.EntryDeferred{}, true
	}
	return nil, false
}
