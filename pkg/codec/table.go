package codec

import (
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/topology"
	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"
)

// This file is the table of kinds. It sorts after enums.go, whose maps the
// entries use, so the entries are initialized, and added to Kinds, in the
// order they are declared here.

// Kinds is every kind of loan-log entry, in the order declared below: each
// declaration adds itself.
var Kinds []*Kind

func add(k *Kind) *Kind {
	Kinds = append(Kinds, k)
	return k
}

// The kinds. Adding one is one entry here (its token, shape, protobuf
// message and domain mapping) plus its policy.
var (
	Due = add(fact("due", LenderID, true, InstallmentFromProto,
		func(tenant, loan string, e policy.InstallmentDue) *dunningv1.InstallmentDue {
			return installmentToProto(tenant, loan, e)
		}))
	Repaid = add(fact("repaid", LenderID, true, RepaymentFromProto,
		func(tenant, loan string, e policy.Repayment) *dunningv1.RepaymentReceived {
			return repaymentToProto(tenant, loan, e)
		}))
	Settled = add(fact("settled", Bare, true,
		func(m *dunningv1.LoanSettled) policy.Settled { return policy.Settled{At: m.GetSettledAt().AsTime()} },
		func(tenant, loan string, e policy.Settled) *dunningv1.LoanSettled {
			return &dunningv1.LoanSettled{TenantId: tenant, LoanId: loan, SettledAt: ts(e.At)}
		}))
	Outcome = add(fact("outcome", LenderID, true,
		func(m *dunningv1.ContactOutcome) policy.ContactOutcome {
			return policy.ContactOutcome{ContactID: m.GetContactId(), Outcome: OutcomeFromProto(m.GetOutcome()),
				At: m.GetOccurredAt().AsTime(), Detail: m.GetDetail()}
		},
		func(tenant, loan string, e policy.ContactOutcome) *dunningv1.ContactOutcome {
			return &dunningv1.ContactOutcome{TenantId: tenant, LoanId: loan, ContactId: e.ContactID,
				Outcome: OutcomeToProto(e.Outcome), OccurredAt: ts(e.At), Detail: e.Detail}
		}))
	Preference = add(fact("preference", LenderID, true,
		func(m *dunningv1.ContactPreference) policy.ContactPreference {
			return policy.ContactPreference{ID: m.GetPreferenceId(), Channel: ChannelFromProto(m.GetChannel()), OptedOut: m.GetOptedOut(),
				At: m.GetReceivedAt().AsTime()}
		},
		func(tenant, loan string, e policy.ContactPreference) *dunningv1.ContactPreference {
			return &dunningv1.ContactPreference{TenantId: tenant, LoanId: loan, PreferenceId: e.ID, Channel: ChannelToProto(e.Channel),
				OptedOut: e.OptedOut, ReceivedAt: ts(e.At)}
		}))
	Hours = add(fact("hours", LenderID, true,
		func(m *dunningv1.ContactHours) policy.ContactHours {
			return policy.ContactHours{ID: m.GetHoursId(), From: m.GetFrom(), To: m.GetTo(), Withdrawn: m.GetWithdrawn(), At: m.GetReceivedAt().AsTime()}
		},
		func(tenant, loan string, e policy.ContactHours) *dunningv1.ContactHours {
			return &dunningv1.ContactHours{TenantId: tenant, LoanId: loan, HoursId: e.ID, From: e.From, To: e.To, Withdrawn: e.Withdrawn,
				ReceivedAt: ts(e.At)}
		}))
	Hold = add(fact("hold", LenderID, true,
		func(m *dunningv1.HoldPlaced) policy.HoldPlaced {
			return policy.HoldPlaced{ID: m.GetHoldId(), Kind: HoldKindFromProto(m.GetKind()), At: m.GetReceivedAt().AsTime(), ContactID: m.GetContactId()}
		},
		func(tenant, loan string, e policy.HoldPlaced) *dunningv1.HoldPlaced {
			return &dunningv1.HoldPlaced{TenantId: tenant, LoanId: loan, HoldId: e.ID, Kind: HoldKindToProto(e.Kind), ReceivedAt: ts(e.At), ContactId: e.ContactID}
		}))
	Unhold = add(fact("unhold", LenderID, true,
		func(m *dunningv1.HoldReleased) policy.HoldReleased {
			return policy.HoldReleased{ID: m.GetHoldId(), At: m.GetReleasedAt().AsTime()}
		},
		func(tenant, loan string, e policy.HoldReleased) *dunningv1.HoldReleased {
			return &dunningv1.HoldReleased{TenantId: tenant, LoanId: loan, HoldId: e.ID, ReleasedAt: ts(e.At)}
		}))
	Promise = add(fact("promise", LenderID, true,
		func(m *dunningv1.PromiseToPay) policy.PromiseToPay {
			return policy.PromiseToPay{ID: m.GetPromiseId(), Amount: moneyFromProto(m.GetAmount()), For: m.GetPromisedFor().AsTime(), At: m.GetReceivedAt().AsTime()}
		},
		func(tenant, loan string, e policy.PromiseToPay) *dunningv1.PromiseToPay {
			return &dunningv1.PromiseToPay{TenantId: tenant, LoanId: loan, PromiseId: e.ID, Amount: moneyToProto(e.Amount),
				PromisedFor: ts(e.For), ReceivedAt: ts(e.At)}
		}))
	Plan = add(fact("plan", LenderID, true,
		func(m *dunningv1.RepaymentPlan) policy.RepaymentPlan {
			p := policy.RepaymentPlan{ID: m.GetPlanId(), At: m.GetReceivedAt().AsTime()}
			for _, in := range m.GetInstallments() {
				p.Installments = append(p.Installments, policy.PlanInstallment{DueAt: in.GetDueAt().AsTime(), Amount: moneyFromProto(in.GetAmount())})
			}
			return p
		},
		func(tenant, loan string, e policy.RepaymentPlan) *dunningv1.RepaymentPlan {
			m := &dunningv1.RepaymentPlan{TenantId: tenant, LoanId: loan, PlanId: e.ID, ReceivedAt: ts(e.At)}
			for _, in := range e.Installments {
				m.Installments = append(m.Installments, &dunningv1.PlanInstallment{DueAt: ts(in.DueAt), Amount: moneyToProto(in.Amount)})
			}
			return m
		}))
	Unplan = add(fact("unplan", LenderID, true,
		func(m *dunningv1.PlanCancelled) policy.PlanCancelled {
			return policy.PlanCancelled{ID: m.GetPlanId(), At: m.GetCancelledAt().AsTime()}
		},
		func(tenant, loan string, e policy.PlanCancelled) *dunningv1.PlanCancelled {
			return &dunningv1.PlanCancelled{TenantId: tenant, LoanId: loan, PlanId: e.ID, CancelledAt: ts(e.At)}
		}))
	Balance = add(fact("balance", LenderID, true,
		func(m *dunningv1.BalanceUpdated) policy.BalanceUpdated {
			return policy.BalanceUpdated{ID: m.GetBalanceId(), Overdue: itemsFromProto(m.GetOverdue()), At: m.GetAsOf().AsTime()}
		},
		func(tenant, loan string, e policy.BalanceUpdated) *dunningv1.BalanceUpdated {
			return &dunningv1.BalanceUpdated{TenantId: tenant, LoanId: loan, BalanceId: e.ID, Overdue: itemsToProto(e.Overdue), AsOf: ts(e.At)}
		}))
	LegalOutcome = add(fact("legalout", LenderID, true,
		func(m *dunningv1.LegalOutcome) policy.LegalOutcome {
			return policy.LegalOutcome{ID: m.GetOutcomeId(), Status: LegalStatusFromProto(m.GetStatus()), At: m.GetAt().AsTime(), Reference: m.GetReference()}
		},
		func(tenant, loan string, e policy.LegalOutcome) *dunningv1.LegalOutcome {
			return &dunningv1.LegalOutcome{TenantId: tenant, LoanId: loan, OutcomeId: e.ID, Status: LegalStatusToProto(e.Status), At: ts(e.At), Reference: e.Reference}
		}))
	Timer = add(fact(topology.KindTimer, Bare, false,
		func(m *dunningv1.StepDue) policy.TimerSet { return policy.TimerSet{Step: stepFromProto(m)} },
		func(_, _ string, e policy.TimerSet) *dunningv1.StepDue { return StepToProto(e.Step) }))
	Step = add(fact(topology.KindStep, StepSeq, false,
		func(m *dunningv1.StepDue) policy.StepFired { return policy.StepFired{Step: stepFromProto(m)} },
		func(_, _ string, e policy.StepFired) *dunningv1.StepDue { return StepToProto(e.Step) }))

	Overdue = add(decision("overdue", policy.KindOverdueConfirmed,
		func(m *dunningv1.OverdueConfirmed, d *policy.Decision) { d.InstallmentIDs = m.GetInstallmentIds() },
		func(c *dunningv1.CaseContext, _, _ string, d policy.Decision) *dunningv1.OverdueConfirmed {
			return &dunningv1.OverdueConfirmed{Case: c, InstallmentIds: d.InstallmentIDs}
		}))
	Contact = add(decision("contact", policy.KindContactRequested,
		func(m *dunningv1.ContactRequested, d *policy.Decision) { d.Tasks = tasksFromProto(m.GetTasks()) },
		func(c *dunningv1.CaseContext, _, _ string, d policy.Decision) *dunningv1.ContactRequested {
			return &dunningv1.ContactRequested{Case: c, Tasks: tasksToProto(d.Tasks)}
		}))
	Escalated = add(decision("escalated", policy.KindEscalated,
		func(m *dunningv1.Escalated, d *policy.Decision) { d.Tasks = tasksFromProto(m.GetTasks()) },
		func(c *dunningv1.CaseContext, _, _ string, d policy.Decision) *dunningv1.Escalated {
			return &dunningv1.Escalated{Case: c, Tasks: tasksToProto(d.Tasks)}
		}))
	HandedOff = add(decision("handoff", policy.KindHandedOff,
		func(m *dunningv1.HandedOff, d *policy.Decision) {
			d.AgencyID, d.PlacementID = m.GetAgencyId(), m.GetPlacementId()
		},
		func(c *dunningv1.CaseContext, _, _ string, d policy.Decision) *dunningv1.HandedOff {
			return &dunningv1.HandedOff{Case: c, AgencyId: d.AgencyID, PlacementId: d.PlacementID}
		}))
	Legal = add(decision("legal", policy.KindLegalReferred,
		func(m *dunningv1.LegalReferred, d *policy.Decision) { d.Evidence = evidenceFromProto(m.GetEvidence()) },
		func(c *dunningv1.CaseContext, tenant, loan string, d policy.Decision) *dunningv1.LegalReferred {
			return &dunningv1.LegalReferred{Case: c, Evidence: evidenceToProto(tenant, loan, d.Evidence)}
		}))
	Closed = add(decision("closed", policy.KindCaseClosed,
		func(m *dunningv1.CaseClosed, d *policy.Decision) {
			d.CloseReason, d.ClosedAtStage = CloseReasonFromProto(m.GetCloseReason()), StageFromProto(m.GetClosedAtStage())
			d.PlacementID = m.GetRecalledPlacementId()
		},
		func(c *dunningv1.CaseContext, _, _ string, d policy.Decision) *dunningv1.CaseClosed {
			return &dunningv1.CaseClosed{Case: c, CloseReason: CloseReasonToProto(d.CloseReason),
				ClosedAtStage: StageToProto(d.ClosedAtStage), RecalledPlacementId: d.PlacementID}
		}))
	Cancelled = add(decision("cancelled", policy.KindStepCancelled,
		func(m *dunningv1.StepCancelled, d *policy.Decision) { d.CancelledStep = m.GetCancelledStepId() },
		func(c *dunningv1.CaseContext, _, _ string, d policy.Decision) *dunningv1.StepCancelled {
			return &dunningv1.StepCancelled{Case: c, CancelledStepId: d.CancelledStep}
		}))
	Deferred = add(decision("deferred", policy.KindEntryDeferred,
		func(m *dunningv1.EntryDeferred, d *policy.Decision) {
			d.DeferredStage = StageFromProto(m.GetDeferredStage())
		},
		func(c *dunningv1.CaseContext, _, _ string, d policy.Decision) *dunningv1.EntryDeferred {
			return &dunningv1.EntryDeferred{Case: c, DeferredStage: StageToProto(d.DeferredStage)}
		}))
	Held = add(decision("held", policy.KindContactHeld,
		func(m *dunningv1.ContactHeld, d *policy.Decision) {
			d.Tasks, d.HeldUntil, d.Rule = tasksFromProto(m.GetTasks()), m.GetHeldUntil().AsTime(), m.GetRule()
		},
		func(c *dunningv1.CaseContext, _, _ string, d policy.Decision) *dunningv1.ContactHeld {
			return &dunningv1.ContactHeld{Case: c, Tasks: tasksToProto(d.Tasks), HeldUntil: ts(d.HeldUntil), Rule: d.Rule}
		}))
	Released = add(decision("released", policy.KindContactReleased,
		func(m *dunningv1.ContactReleased, d *policy.Decision) { d.Tasks = tasksFromProto(m.GetTasks()) },
		func(c *dunningv1.CaseContext, _, _ string, d policy.Decision) *dunningv1.ContactReleased {
			return &dunningv1.ContactReleased{Case: c, Tasks: tasksToProto(d.Tasks)}
		}))
	Suppressed = add(decision("suppressed", policy.KindContactSuppressed,
		func(m *dunningv1.ContactSuppressed, d *policy.Decision) {
			d.Tasks, d.Rule = tasksFromProto(m.GetTasks()), m.GetRule()
		},
		func(c *dunningv1.CaseContext, _, _ string, d policy.Decision) *dunningv1.ContactSuppressed {
			return &dunningv1.ContactSuppressed{Case: c, Tasks: tasksToProto(d.Tasks), Rule: d.Rule}
		}))
	ContactCancelled = add(decision("unsent", policy.KindContactCancelled,
		func(m *dunningv1.ContactCancelled, d *policy.Decision) {
			d.Tasks, d.Rule = tasksFromProto(m.GetTasks()), m.GetRule()
		},
		func(c *dunningv1.CaseContext, _, _ string, d policy.Decision) *dunningv1.ContactCancelled {
			return &dunningv1.ContactCancelled{Case: c, Tasks: tasksToProto(d.Tasks), Rule: d.Rule}
		}))
	Deadline = add(decision("deadline", policy.KindHoldDeadline,
		func(m *dunningv1.HoldDeadline, d *policy.Decision) {
			d.HoldID, d.HoldLifted = m.GetHoldId(), m.GetLifted()
		},
		func(c *dunningv1.CaseContext, _, _ string, d policy.Decision) *dunningv1.HoldDeadline {
			return &dunningv1.HoldDeadline{Case: c, HoldId: d.HoldID, Lifted: d.HoldLifted}
		}))
	Recalled = add(decision("recall", policy.KindPlacementRecalled,
		func(m *dunningv1.PlacementRecalled, d *policy.Decision) {
			d.AgencyID, d.PlacementID = m.GetAgencyId(), m.GetPlacementId()
		},
		func(c *dunningv1.CaseContext, _, _ string, d policy.Decision) *dunningv1.PlacementRecalled {
			return &dunningv1.PlacementRecalled{Case: c, AgencyId: d.AgencyID, PlacementId: d.PlacementID}
		}))
	Kept         = add(decision("kept", policy.KindPromiseKept, promiseFromProto, promiseToProto))
	Broken       = add(decision("broken", policy.KindPromiseBroken, promiseFromProto, promiseToProto))
	PlanMissed   = add(decision("planmissed", policy.KindPlanMissed, planFromProto, planToProto))
	PlanBroken   = add(decision("planbroken", policy.KindPlanBroken, planFromProto, planToProto))
	PlanDone     = add(decision("plandone", policy.KindPlanCompleted, planFromProto, planToProto))
	LegalBlocked = add(decision("legalblocked", policy.KindLegalBlocked,
		func(m *dunningv1.LegalBlocked, d *policy.Decision) { d.Rule = m.GetBlockedBy() },
		func(c *dunningv1.CaseContext, _, _ string, d policy.Decision) *dunningv1.LegalBlocked {
			return &dunningv1.LegalBlocked{Case: c, BlockedBy: d.Rule}
		}))
	Unconfirmed = add(decision("unconfirmed", policy.KindAgencyPaymentUnconfirmed,
		func(m *dunningv1.AgencyPaymentUnconfirmed, d *policy.Decision) {
			d.AgencyID, d.PlacementID, d.ReportID, d.Rule = m.GetAgencyId(), m.GetPlacementId(), m.GetReportId(), m.GetReference()
			d.Paid = moneyFromProto(m.GetAmount())
		},
		func(c *dunningv1.CaseContext, _, _ string, d policy.Decision) *dunningv1.AgencyPaymentUnconfirmed {
			return &dunningv1.AgencyPaymentUnconfirmed{Case: c, AgencyId: d.AgencyID, PlacementId: d.PlacementID, ReportId: d.ReportID,
				Reference: d.Rule, Amount: moneyToProto(d.Paid)}
		}))
	RecallRefused = add(decision("recallrefused", policy.KindRecallRefused,
		func(m *dunningv1.RecallRefused, d *policy.Decision) {
			d.AgencyID, d.PlacementID, d.Rule, d.PlanID = m.GetAgencyId(), m.GetPlacementId(), m.GetRule(), m.GetPlanId()
		},
		func(c *dunningv1.CaseContext, _, _ string, d policy.Decision) *dunningv1.RecallRefused {
			return &dunningv1.RecallRefused{Case: c, AgencyId: d.AgencyID, PlacementId: d.PlacementID, Rule: d.Rule, PlanId: d.PlanID}
		}))
	AgencyOutcome = add(fact("agency", LenderID, false, agencyOutcomeFromProto, agencyOutcomeToProto))
	Seal          = add(fact("seal", Seq, false,
		func(m *dunningv1.LogSealed) policy.Sealed {
			return policy.Sealed{Through: m.GetThroughSeq(), Chain: m.GetChain(), Previous: m.GetPreviousSealSeq(),
				At: timeOrZero(m.GetSealedAt()), By: m.GetSealedBy()}
		},
		func(_, _ string, e policy.Sealed) *dunningv1.LogSealed {
			return &dunningv1.LogSealed{ThroughSeq: e.Through, Chain: e.Chain, PreviousSealSeq: e.Previous, SealedAt: ts(e.At), SealedBy: e.By}
		}))
)

func promiseFromProto(m *dunningv1.PromiseResolved, d *policy.Decision) {
	d.PromiseID, d.Paid = m.GetPromiseId(), moneyFromProto(m.GetPaid())
}

func promiseToProto(c *dunningv1.CaseContext, _, _ string, d policy.Decision) *dunningv1.PromiseResolved {
	return &dunningv1.PromiseResolved{Case: c, PromiseId: d.PromiseID, Paid: moneyToProto(d.Paid)}
}

func planFromProto(m *dunningv1.PlanProgress, d *policy.Decision) {
	d.PlanID, d.PlanInstallment, d.Paid = m.GetPlanId(), int(m.GetInstallment()), moneyFromProto(m.GetPaid())
	if m.GetMovedTo() != nil {
		d.MovedTo = m.GetMovedTo().AsTime()
	}
}

func planToProto(c *dunningv1.CaseContext, _, _ string, d policy.Decision) *dunningv1.PlanProgress {
	return &dunningv1.PlanProgress{Case: c, PlanId: d.PlanID, Installment: int32(d.PlanInstallment), MovedTo: ts(d.MovedTo), Paid: moneyToProto(d.Paid)}
}
