// Package codec is the one place where protobuf and domain types meet. Its
// table of kinds (Kinds) declares every kind of loan-log entry once: the
// subject token it is stored under, the protobuf message of its body, and
// how that maps to the domain event the policy folds. The domain ↔ protobuf
// enums are mapped explicitly in enums.go, and a test fails when they drift.
package codec

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/topology"
	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"
)

// ErrUndecodable marks an entry whose body does not match its subject's kind.
// It is permanent: redelivery cannot fix it.
var ErrUndecodable = errors.New("undecodable loan-log entry")

// Shape says what follows a kind's token in its subject.
type Shape int

// Shapes of loan-log subjects.
const (
	// Bare: nothing (….settled, ….timer).
	Bare Shape = iota
	// LenderID: the lender's identifier of the event (….due.<installment>),
	// so a repeat is refused however late it comes.
	LenderID
	// Seq: the loan sequence the decision was made from (….escalated.s<seq>),
	// unique because only one write can succeed from a given sequence.
	Seq
	// StepSeq: the step's token and the sequence its timer was set from
	// (….step.escalate.s<seq>).
	StepSeq
)

// Kind is one kind of loan-log entry.
type Kind struct {
	// Token is the subject token. It is stored data: never rename one.
	Token topology.Kind
	Shape Shape
	// Decision is the decision kind for decisions, policy.KindNone otherwise.
	Decision policy.DecisionKind
	// Lender marks facts the lender reports (recorded once, by identifier).
	Lender bool

	newMsg  func() proto.Message
	decode  func(proto.Message) policy.Event
	encode  func(tenant, loan string, ev policy.Event) proto.Message
	matches func(policy.Event) bool
}

// Name is the kind's name in timelines and metrics: the decision kind's
// name for decisions, the token otherwise.
func (k *Kind) Name() string {
	if k.Decision != policy.KindNone {
		return k.Decision.String()
	}
	return string(k.Token)
}

// NewMessage returns an empty protobuf message of the kind's body.
func (k *Kind) NewMessage() proto.Message { return k.newMsg() }

// fact declares a kind whose domain event is its own type E.
func fact[M proto.Message, E policy.Event](token topology.Kind, shape Shape, lender bool,
	decode func(M) E, encode func(tenant, loan string, e E) M) *Kind {
	var zero M
	mt := zero.ProtoReflect().Type()
	return &Kind{Token: token, Shape: shape, Lender: lender,
		newMsg:  func() proto.Message { return mt.New().Interface() },
		decode:  func(m proto.Message) policy.Event { return decode(m.(M)) },
		encode:  func(tenant, loan string, ev policy.Event) proto.Message { return encode(tenant, loan, ev.(E)) },
		matches: func(ev policy.Event) bool { _, ok := ev.(E); return ok },
	}
}

// decisionMsg is the protobuf message of a decision: its case context and
// what is particular to it.
type decisionMsg interface {
	proto.Message
	GetCase() *dunningv1.CaseContext
}

// decision declares a decision kind: decode fills what is particular to it
// into d (whose Kind and Ctx are set), encode builds the message around c.
func decision[M decisionMsg](token topology.Kind, dk policy.DecisionKind,
	decode func(m M, d *policy.Decision), encode func(c *dunningv1.CaseContext, tenant, loan string, d policy.Decision) M) *Kind {
	var zero M
	mt := zero.ProtoReflect().Type()
	return &Kind{Token: token, Shape: Seq, Decision: dk,
		newMsg: func() proto.Message { return mt.New().Interface() },
		decode: func(m proto.Message) policy.Event {
			d := policy.Decision{Kind: dk, Ctx: contextFromProto(m.(M).GetCase())}
			decode(m.(M), &d)
			return d
		},
		encode: func(tenant, loan string, ev policy.Event) proto.Message {
			d := ev.(policy.Decision)
			return encode(contextToProto(tenant, loan, d.Ctx), tenant, loan, d)
		},
		matches: func(ev policy.Event) bool { d, ok := ev.(policy.Decision); return ok && d.Kind == dk },
	}
}

// ByToken returns the kind stored under a subject token.
func ByToken(token topology.Kind) (*Kind, bool) {
	for _, k := range Kinds {
		if k.Token == token {
			return k, true
		}
	}
	return nil, false
}

// Of returns the kind of a domain event.
func Of(ev policy.Event) (*Kind, error) {
	for _, k := range Kinds {
		if k.matches(ev) {
			return k, nil
		}
	}
	return nil, fmt.Errorf("no loan-log kind for %T %v", ev, ev)
}

// Decode turns a loan-log message body into a domain event.
func Decode(addr topology.LoanAddress, data []byte) (policy.Event, error) {
	k, ok := ByToken(addr.Kind)
	if !ok {
		return nil, fmt.Errorf("%w: unknown kind %q", ErrUndecodable, addr.Kind)
	}
	m := k.newMsg()
	if err := proto.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrUndecodable, addr.Kind, err)
	}
	if err := verify(addr, m); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrUndecodable, addr.Kind, err)
	}
	ev := k.decode(m)
	switch e := ev.(type) {
	case policy.TimerSet:
		if e.Step.ID == "" {
			return nil, fmt.Errorf("%w: %s: step_id is empty", ErrUndecodable, addr.Kind)
		}
	case policy.StepFired:
		if e.Step.ID == "" {
			return nil, fmt.Errorf("%w: %s: step_id is empty", ErrUndecodable, addr.Kind)
		}
	}
	return ev, nil
}

// maxMinor bounds an amount, as intake does (10^15 minor units).
const maxMinor = 1_000_000_000_000_000

// verify checks a stored body against its subject, as intake checked it
// before storing: a message written by anyone else (a forged repayment, a
// decision copied onto another loan) is refused by every reader and never
// folded into a case. Errors name fields, never values.
func verify(addr topology.LoanAddress, m proto.Message) error {
	type owned interface {
		GetTenantId() string
		GetLoanId() string
	}
	if d, ok := m.(decisionMsg); ok {
		m = d.GetCase()
	}
	if o, ok := m.(owned); ok && (o.GetTenantId() != addr.Tenant || o.GetLoanId() != addr.Loan) {
		return errors.New("tenant_id and loan_id do not match the subject")
	}
	money := func(a *dunningv1.Money) error {
		if a.GetMinorUnits() <= 0 || a.GetMinorUnits() > maxMinor || len(a.GetCurrency()) != 3 {
			return errors.New("amount must be positive, bounded and in an ISO 4217 currency")
		}
		return nil
	}
	switch e := m.(type) {
	case *dunningv1.AgencyOutcome:
		if e.GetOutcomeId() != addr.ID {
			return errors.New("outcome_id does not match the subject")
		}
		return nil
	case *dunningv1.InstallmentDue:
		if e.GetInstallmentId() != addr.ID {
			return errors.New("installment_id does not match the subject")
		}
		if it := e.GetItemisation(); it != nil && !itemised(it, e.GetAmount()) {
			return errors.New("itemisation must add up to amount, in its currency")
		}
		return money(e.GetAmount())
	case *dunningv1.LegalOutcome:
		if e.GetOutcomeId() != addr.ID {
			return errors.New("outcome_id does not match the subject")
		}
	case *dunningv1.BalanceUpdated:
		if e.GetBalanceId() != addr.ID {
			return errors.New("balance_id does not match the subject")
		}
		if !itemised(e.GetOverdue(), nil) {
			return errors.New("overdue must be itemised in one currency, each part >= 0")
		}
	case *dunningv1.RepaymentReceived:
		if e.GetPaymentId() != addr.ID {
			return errors.New("payment_id does not match the subject")
		}
		return money(e.GetAmount())
	case *dunningv1.ContactOutcome:
		if e.GetContactId()+"_"+OutcomeFromProto(e.GetOutcome()).String() != addr.ID {
			return errors.New("contact_id and outcome do not match the subject")
		}
	case *dunningv1.HoldPlaced:
		if e.GetHoldId() != addr.ID {
			return errors.New("hold_id does not match the subject")
		}
	case *dunningv1.HoldReleased:
		if e.GetHoldId() != addr.ID {
			return errors.New("hold_id does not match the subject")
		}
	case *dunningv1.RepaymentPlan:
		if e.GetPlanId() != addr.ID {
			return errors.New("plan_id does not match the subject")
		}
		if len(e.GetInstallments()) == 0 {
			return errors.New("a plan has installments")
		}
		for _, in := range e.GetInstallments() {
			if err := money(in.GetAmount()); err != nil {
				return err
			}
		}
	case *dunningv1.PlanCancelled:
		if e.GetPlanId() != addr.ID {
			return errors.New("plan_id does not match the subject")
		}
	case *dunningv1.PromiseToPay:
		if e.GetPromiseId() != addr.ID {
			return errors.New("promise_id does not match the subject")
		}
		return money(e.GetAmount())
	case *dunningv1.ContactHours:
		if e.GetHoursId() != addr.ID {
			return errors.New("hours_id does not match the subject")
		}
	case *dunningv1.ContactPreference:
		if e.GetPreferenceId() != addr.ID {
			return errors.New("preference_id does not match the subject")
		}
		if ChannelFromProto(e.GetChannel()) == policy.ChannelNone {
			return errors.New("channel must be a known channel")
		}
	case *dunningv1.LoanSettled:
		if addr.ID != "" {
			return errors.New("a settlement's subject carries no identifier")
		}
	}
	return nil
}

// itemised checks a breakdown: each part present, >= 0 and bounded, in one
// currency, adding up to amount when one is given.
func itemised(it *dunningv1.Itemisation, amount *dunningv1.Money) bool {
	parts := []*dunningv1.Money{it.GetPrincipal(), it.GetInterest(), it.GetFees()}
	cur := parts[0].GetCurrency()
	var sum int64
	for _, p := range parts {
		if p == nil || p.GetCurrency() != cur || len(cur) != 3 || p.GetMinorUnits() < 0 || p.GetMinorUnits() > maxMinor {
			return false
		}
		sum += p.GetMinorUnits()
	}
	return amount == nil || (amount.GetCurrency() == cur && amount.GetMinorUnits() == sum)
}

// Encode returns a domain event's kind and protobuf message.
func Encode(tenant, loan string, ev policy.Event) (*Kind, proto.Message, error) {
	k, err := Of(ev)
	if err != nil {
		return nil, nil, err
	}
	return k, k.encode(tenant, loan, ev), nil
}
