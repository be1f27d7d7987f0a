// Package ingest accepts lender events, over HTTP and over NATS, validates
// them with errors that name the field at fault, and records each exactly
// once in the loan's log.
package ingest

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/opendunning/dunning/pkg/codec"
	"github.com/opendunning/dunning/pkg/contactrules"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/topology"
	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"
)

// FieldError is a validation failure of one field, named by its path in the
// JSON form of a LenderEvent (e.g. "installment_due.amount.minor_units").
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Event is a validated lender event, ready to record.
type Event struct {
	Tenant, Loan string
	Kind         *codec.Kind
	ID           string // installment or payment ID; empty for settlement
	Msg          proto.Message
	// Principal is who sent it, recorded with it and shown in the
	// timeline: an API key ("apikey:<id>") or the tenant's NATS lender.
	Principal string
	// Admin: the sender holds the admin scope, the only one that may lift
	// a deceased or bankruptcy hold (policy.HoldKind.AdminRelease).
	Admin bool
	// Received is when the lender sent it, on the intake's clock: what
	// its dates are checked against (zero: now). An event published over
	// NATS may wait in the intake stream while the pipeline is
	// overloaded; a promise that was in the future when the borrower made
	// it is not refused as past because intake reached it late.
	Received time.Time
}

// newEvent is a validated event, its sender not yet known.
func newEvent(tenant, loan string, kind *codec.Kind, id string, msg proto.Message) Event {
	return Event{Tenant: tenant, Loan: loan, Kind: kind, ID: id, Msg: msg}
}

// Subject is where the event is recorded in the loan's log, the loans
// spread over parts partitions.
func (e Event) Subject(parts topology.Partitions) string {
	return parts.Loan(e.Tenant, e.Loan).Subject(e.Kind.Token, e.ID)
}

// maxAmount bounds amounts to keep sums far from overflow (10^15 minor units).
const maxAmount = 1_000_000_000_000_000

// Validate checks a lender event and returns it ready to record.
func Validate(ev *dunningv1.LenderEvent) (Event, error) {
	switch e := ev.GetEvent().(type) {
	case *dunningv1.LenderEvent_InstallmentDue:
		m, p := e.InstallmentDue, "installment_due."
		if m == nil {
			return Event{}, &FieldError{"installment_due", "is required"}
		}
		if err := firstErr(
			id(p+"tenant_id", m.TenantId), id(p+"loan_id", m.LoanId), id(p+"installment_id", m.InstallmentId),
			money(p+"amount", m.Amount), timestamp(p+"due_at", m.DueAt), tz(p+"time_zone", m.TimeZone),
			ref(p+"contact_ref", m.ContactRef), optionalID(p+"product_id", m.ProductId), locale(p+"locale", m.Locale),
			optionalID(p+"borrower_ref", m.BorrowerRef), region(p+"region", m.Region), itemisation(p+"itemisation", m.Itemisation, m.Amount, false),
			limitation(p+"limitation_ends_at", m.LimitationEndsAt, m.DueAt),
		); err != nil {
			return Event{}, err
		}
		return newEvent(m.TenantId, m.LoanId, codec.Due, m.InstallmentId, m), nil
	case *dunningv1.LenderEvent_RepaymentReceived:
		m, p := e.RepaymentReceived, "repayment_received."
		if m == nil {
			return Event{}, &FieldError{"repayment_received", "is required"}
		}
		var inst error
		if m.InstallmentId != "" {
			inst = id(p+"installment_id", m.InstallmentId)
		}
		if err := firstErr(
			id(p+"tenant_id", m.TenantId), id(p+"loan_id", m.LoanId), id(p+"payment_id", m.PaymentId), inst,
			money(p+"amount", m.Amount), timestamp(p+"paid_at", m.PaidAt),
		); err != nil {
			return Event{}, err
		}
		return newEvent(m.TenantId, m.LoanId, codec.Repaid, m.PaymentId, m), nil
	case *dunningv1.LenderEvent_LoanSettled:
		m, p := e.LoanSettled, "loan_settled."
		if m == nil {
			return Event{}, &FieldError{"loan_settled", "is required"}
		}
		if err := firstErr(id(p+"tenant_id", m.TenantId), id(p+"loan_id", m.LoanId), timestamp(p+"settled_at", m.SettledAt)); err != nil {
			return Event{}, err
		}
		return newEvent(m.TenantId, m.LoanId, codec.Settled, "", m), nil
	case *dunningv1.LenderEvent_ContactOutcome:
		m, p := e.ContactOutcome, "contact_outcome."
		if m == nil {
			return Event{}, &FieldError{"contact_outcome", "is required"}
		}
		var outcome error
		if !codec.KnownOutcome(m.Outcome) {
			outcome = &FieldError{p + "outcome", "must be one of OUTCOME_SENT, OUTCOME_DELIVERED, OUTCOME_FAILED, OUTCOME_CALL_CONNECTED, " +
				"OUTCOME_CALL_RIGHT_PARTY, OUTCOME_CALL_WRONG_PARTY, OUTCOME_CALL_NO_ANSWER"}
		}
		var detail error
		if len(m.Detail) > 256 {
			detail = &FieldError{p + "detail", "must be at most 256 characters"}
		}
		if err := firstErr(id(p+"tenant_id", m.TenantId), id(p+"loan_id", m.LoanId), id(p+"contact_id", m.ContactId),
			outcome, timestamp(p+"occurred_at", m.OccurredAt), detail); err != nil {
			return Event{}, err
		}
		return newEvent(m.TenantId, m.LoanId, codec.Outcome, m.ContactId+"_"+codec.OutcomeFromProto(m.Outcome).String(), m), nil
	case *dunningv1.LenderEvent_ContactPreference:
		m, p := e.ContactPreference, "contact_preference."
		if m == nil {
			return Event{}, &FieldError{"contact_preference", "is required"}
		}
		var channel error
		if codec.ChannelFromProto(m.Channel) == policy.ChannelNone {
			channel = &FieldError{p + "channel", "must be one of CHANNEL_SMS, CHANNEL_PHONE, CHANNEL_EMAIL, CHANNEL_APP_PUSH, CHANNEL_LETTER"}
		}
		if err := firstErr(id(p+"tenant_id", m.TenantId), id(p+"loan_id", m.LoanId), id(p+"preference_id", m.PreferenceId),
			channel, timestamp(p+"received_at", m.ReceivedAt)); err != nil {
			return Event{}, err
		}
		return newEvent(m.TenantId, m.LoanId, codec.Preference, m.PreferenceId, m), nil
	case *dunningv1.LenderEvent_ContactHours:
		m, p := e.ContactHours, "contact_hours."
		if m == nil {
			return Event{}, &FieldError{"contact_hours", "is required"}
		}
		var hours error
		if !m.Withdrawn {
			from, ferr := contactrules.ParseWall(m.From)
			to, terr := contactrules.ParseWall(m.To)
			switch {
			case ferr != nil:
				hours = &FieldError{p + "from", "must be the borrower's local time as HH:MM"}
			case terr != nil:
				hours = &FieldError{p + "to", "must be the borrower's local time as HH:MM"}
			case from >= to:
				hours = &FieldError{p + "to", "must be after from (the same local day)"}
			}
		}
		if err := firstErr(id(p+"tenant_id", m.TenantId), id(p+"loan_id", m.LoanId), id(p+"hours_id", m.HoursId),
			hours, timestamp(p+"received_at", m.ReceivedAt)); err != nil {
			return Event{}, err
		}
		return newEvent(m.TenantId, m.LoanId, codec.Hours, m.HoursId, m), nil
	case *dunningv1.LenderEvent_HoldPlaced:
		m, p := e.HoldPlaced, "hold_placed."
		if m == nil {
			return Event{}, &FieldError{"hold_placed", "is required"}
		}
		var kind, contact error
		switch k := codec.HoldKindFromProto(m.Kind); {
		case k == policy.HoldNone:
			kind = &FieldError{p + "kind", "must be one of HOLD_KIND_DISPUTE, HOLD_KIND_HARDSHIP, HOLD_KIND_COMPLAINT, HOLD_KIND_CEASE_ALL, " +
				"HOLD_KIND_BREATHING_SPACE, HOLD_KIND_DECEASED, HOLD_KIND_BANKRUPTCY"}
		case k == policy.HoldComplaint:
			contact = id(p+"contact_id", m.ContactId) // a complaint names the contact that caused it
		default:
			contact = optionalID(p+"contact_id", m.ContactId)
		}
		if err := firstErr(id(p+"tenant_id", m.TenantId), id(p+"loan_id", m.LoanId), id(p+"hold_id", m.HoldId),
			kind, contact, timestamp(p+"received_at", m.ReceivedAt)); err != nil {
			return Event{}, err
		}
		return newEvent(m.TenantId, m.LoanId, codec.Hold, m.HoldId, m), nil
	case *dunningv1.LenderEvent_HoldReleased:
		m, p := e.HoldReleased, "hold_released."
		if m == nil {
			return Event{}, &FieldError{"hold_released", "is required"}
		}
		if err := firstErr(id(p+"tenant_id", m.TenantId), id(p+"loan_id", m.LoanId), id(p+"hold_id", m.HoldId),
			timestamp(p+"released_at", m.ReleasedAt)); err != nil {
			return Event{}, err
		}
		return newEvent(m.TenantId, m.LoanId, codec.Unhold, m.HoldId, m), nil
	case *dunningv1.LenderEvent_PromiseToPay:
		m, p := e.PromiseToPay, "promise_to_pay."
		if m == nil {
			return Event{}, &FieldError{"promise_to_pay", "is required"}
		}
		if err := firstErr(id(p+"tenant_id", m.TenantId), id(p+"loan_id", m.LoanId), id(p+"promise_id", m.PromiseId),
			money(p+"amount", m.Amount), timestamp(p+"promised_for", m.PromisedFor), timestamp(p+"received_at", m.ReceivedAt)); err != nil {
			return Event{}, err
		}
		return newEvent(m.TenantId, m.LoanId, codec.Promise, m.PromiseId, m), nil
	case *dunningv1.LenderEvent_RepaymentPlan:
		m, p := e.RepaymentPlan, "repayment_plan."
		if m == nil {
			return Event{}, &FieldError{"repayment_plan", "is required"}
		}
		if err := firstErr(id(p+"tenant_id", m.TenantId), id(p+"loan_id", m.LoanId), id(p+"plan_id", m.PlanId),
			planInstallments(p+"installments", m.Installments), timestamp(p+"received_at", m.ReceivedAt)); err != nil {
			return Event{}, err
		}
		return newEvent(m.TenantId, m.LoanId, codec.Plan, m.PlanId, m), nil
	case *dunningv1.LenderEvent_PlanCancelled:
		m, p := e.PlanCancelled, "plan_cancelled."
		if m == nil {
			return Event{}, &FieldError{"plan_cancelled", "is required"}
		}
		if err := firstErr(id(p+"tenant_id", m.TenantId), id(p+"loan_id", m.LoanId), id(p+"plan_id", m.PlanId),
			timestamp(p+"cancelled_at", m.CancelledAt)); err != nil {
			return Event{}, err
		}
		return newEvent(m.TenantId, m.LoanId, codec.Unplan, m.PlanId, m), nil
	case *dunningv1.LenderEvent_BalanceUpdated:
		m, p := e.BalanceUpdated, "balance_updated."
		if m == nil {
			return Event{}, &FieldError{"balance_updated", "is required"}
		}
		if err := firstErr(id(p+"tenant_id", m.TenantId), id(p+"loan_id", m.LoanId), id(p+"balance_id", m.BalanceId),
			itemisation(p+"overdue", m.Overdue, nil, true), timestamp(p+"as_of", m.AsOf)); err != nil {
			return Event{}, err
		}
		return newEvent(m.TenantId, m.LoanId, codec.Balance, m.BalanceId, m), nil
	case *dunningv1.LenderEvent_LegalOutcome:
		m, p := e.LegalOutcome, "legal_outcome."
		if m == nil {
			return Event{}, &FieldError{"legal_outcome", "is required"}
		}
		if err := firstErr(id(p+"tenant_id", m.TenantId), id(p+"loan_id", m.LoanId), id(p+"outcome_id", m.OutcomeId),
			legalStatus(p+"status", m.Status), timestamp(p+"at", m.At), caseReference(p+"reference", m.Reference)); err != nil {
			return Event{}, err
		}
		return newEvent(m.TenantId, m.LoanId, codec.LegalOutcome, m.OutcomeId, m), nil
	}
	return Event{}, &FieldError{"event", "one of installment_due, repayment_received, loan_settled, contact_outcome, contact_preference, contact_hours, " +
		"hold_placed, hold_released, promise_to_pay, repayment_plan, plan_cancelled, balance_updated, legal_outcome is required"}
}

// itemisation checks the lender's breakdown of an amount: principal,
// interest and fees, each >= 0, in one currency, adding up to amount when
// there is one (an installment's). Optional unless required.
func itemisation(field string, it *dunningv1.Itemisation, amount *dunningv1.Money, required bool) error {
	if it == nil {
		if required {
			return &FieldError{field, "is required"}
		}
		return nil
	}
	var sum int64
	cur := it.GetPrincipal().GetCurrency()
	for _, part := range []struct {
		name string
		m    *dunningv1.Money
	}{{"principal", it.Principal}, {"interest", it.Interest}, {"fees", it.Fees}} {
		f := field + "." + part.name
		switch {
		case part.m == nil:
			return &FieldError{f, "is required (0 when there is none)"}
		case !policy.ValidCurrency(part.m.Currency):
			return &FieldError{f + ".currency", "must be an ISO 4217 code of three upper-case letters"}
		case part.m.Currency != cur:
			return &FieldError{f + ".currency", "must be the principal's currency, " + cur}
		case part.m.MinorUnits < 0 || part.m.MinorUnits > maxAmount:
			return &FieldError{f + ".minor_units", fmt.Sprintf("must be 0-%d", int64(maxAmount))}
		}
		sum += part.m.MinorUnits
	}
	if amount != nil && (amount.Currency != cur || amount.MinorUnits != sum) {
		return &FieldError{field, "principal, interest and fees must add up to the amount, in its currency"}
	}
	return nil
}

// maxPlanInstallments bounds a plan (five years of monthly payments).
const maxPlanInstallments = 60

// planInstallments checks a plan's installments: 1-60, each with a day
// and an amount, in due order, in one currency.
func planInstallments(field string, ins []*dunningv1.PlanInstallment) error {
	if len(ins) == 0 || len(ins) > maxPlanInstallments {
		return &FieldError{field, fmt.Sprintf("must list 1-%d installments", maxPlanInstallments)}
	}
	for i, in := range ins {
		f := fmt.Sprintf("%s[%d].", field, i)
		if in == nil {
			return &FieldError{f[:len(f)-1], "is required"}
		}
		if err := firstErr(timestamp(f+"due_at", in.DueAt), money(f+"amount", in.Amount)); err != nil {
			return err
		}
		if i > 0 && !in.DueAt.AsTime().After(ins[i-1].DueAt.AsTime()) {
			return &FieldError{f + "due_at", "must be after the installment before it"}
		}
		if in.Amount.Currency != ins[0].Amount.Currency {
			return &FieldError{f + "amount.currency", "must be the plan's currency, " + ins[0].Amount.Currency}
		}
	}
	return nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// id checks an identifier. Errors name the field, never its value: a
// rejected value may be exactly the personal data that must not be logged.
func id(field, v string) error {
	if v == "" {
		return &FieldError{field, "is required"}
	}
	if !policy.ValidID(v) {
		return &FieldError{field, "must be 1-64 characters of A-Z, a-z, 0-9, '-' or '_'"}
	}
	if shape := personalShape(v); shape != "" {
		return &FieldError{field, "must be an opaque identifier, not personal data (it has the shape of " + shape + ")"}
	}
	return nil
}

func region(field, v string) error {
	if v != "" && !policy.ValidRegion(v) {
		return &FieldError{field, "must be an ISO 3166-2 code such as \"CN-31\" (country, '-', 1-3 letters or digits, upper case)"}
	}
	return nil
}

func optionalID(field, v string) error {
	if v == "" {
		return nil
	}
	return id(field, v)
}

func ref(field, v string) error {
	if v == "" {
		return &FieldError{field, "is required (the lender's reference to the borrower's contact record)"}
	}
	if !refPattern.MatchString(v) {
		return &FieldError{field, "must be 1-128 characters of A-Z, a-z, 0-9, '.', ':', '/', '-' or '_' (an opaque reference, never an address, a phone number or a name)"}
	}
	if shape := personalShape(v); shape != "" {
		return &FieldError{field, "must be an opaque reference, not personal data (it has the shape of " + shape + ")"}
	}
	return nil
}

func money(field string, m *dunningv1.Money) error {
	if m == nil {
		return &FieldError{field, "is required"}
	}
	if !policy.ValidCurrency(m.Currency) {
		return &FieldError{field + ".currency", "must be an ISO 4217 code of three upper-case letters"}
	}
	if m.MinorUnits <= 0 {
		return &FieldError{field + ".minor_units", "must be positive"}
	}
	if m.MinorUnits > maxAmount {
		return &FieldError{field + ".minor_units", fmt.Sprintf("must be at most %d", int64(maxAmount))}
	}
	return nil
}

func legalStatus(field string, v dunningv1.LegalStatus) error {
	if codec.LegalStatusFromProto(v) == policy.LegalStatusNone {
		return &FieldError{field, "must be one of LEGAL_STATUS_FILED, LEGAL_STATUS_JUDGMENT, LEGAL_STATUS_SETTLED, LEGAL_STATUS_WITHDRAWN"}
	}
	return nil
}

// caseReference checks a court's or law firm's case reference: optional,
// free text as courts write it (a Chinese court's "(2026)沪0115民初1234号"),
// but short, printable, and never personal data.
func caseReference(field, v string) error {
	if v == "" {
		return nil
	}
	if !utf8.ValidString(v) || utf8.RuneCountInString(v) > 128 || strings.IndexFunc(v, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return &FieldError{field, "must be at most 128 printable characters"}
	}
	if shape := personalShape(strings.TrimPrefix(v, "+")); shape != "" {
		return &FieldError{field, "must be the case's reference, not personal data (it has the shape of " + shape + ")"}
	}
	return nil
}

func timestamp(field string, t *timestamppb.Timestamp) error {
	if t == nil {
		return &FieldError{field, "is required"}
	}
	if err := t.CheckValid(); err != nil {
		return &FieldError{field, "is not a valid timestamp"}
	}
	if tt := t.AsTime(); tt.Year() < 2000 || tt.Year() > 2200 {
		return &FieldError{field, "must be between the years 2000 and 2200"}
	}
	return nil
}

// limitation checks a lender's limitation date: optional, and after the
// installment's due date (a debt cannot be time-barred before it is owed).
func limitation(field string, t, due *timestamppb.Timestamp) error {
	if t == nil {
		return nil
	}
	if err := timestamp(field, t); err != nil {
		return err
	}
	if due != nil && !t.AsTime().After(due.AsTime()) {
		return &FieldError{field, "must be after due_at"}
	}
	return nil
}

// localePattern is a language tag as policies write them: "zh-CN", "en".
var localePattern = regexp.MustCompile(`^[a-z]{2}(-[A-Z]{2})?$`)

func locale(field, v string) error {
	if v != "" && !localePattern.MatchString(v) {
		return &FieldError{field, "must be a language tag such as zh-CN or en"}
	}
	return nil
}

func tz(field, v string) error {
	if v == "" {
		return &FieldError{field, "is required (IANA zone, e.g. Asia/Shanghai)"}
	}
	if v == "Local" {
		return &FieldError{field, "must be an IANA zone name such as Asia/Shanghai, not the server's own zone"}
	}
	if _, err := policy.LoadZone(v); err != nil {
		return &FieldError{field, "is not a known IANA zone name (e.g. Asia/Shanghai)"}
	}
	return nil
}

// AsFieldError extracts a FieldError.
func AsFieldError(err error) (*FieldError, bool) {
	var fe *FieldError
	ok := errors.As(err, &fe)
	return fe, ok
}
