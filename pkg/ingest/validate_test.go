package ingest

import (
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/opendunning/dunning/pkg/bus"
	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"
)

func validDue() *dunningv1.InstallmentDue {
	return &dunningv1.InstallmentDue{TenantId: "acme", LoanId: "L-1", InstallmentId: "i-1",
		Amount: &dunningv1.Money{Currency: "CNY", MinorUnits: 100}, DueAt: timestamppb.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
		TimeZone: "Asia/Shanghai", ContactRef: "crm-1"}
}

func validPay() *dunningv1.RepaymentReceived {
	return &dunningv1.RepaymentReceived{TenantId: "acme", LoanId: "L-1", PaymentId: "p-1",
		Amount: &dunningv1.Money{Currency: "CNY", MinorUnits: 100}, PaidAt: timestamppb.New(time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC))}
}

// due and pay are valid events changed by f.
func due(f func(*dunningv1.InstallmentDue)) *dunningv1.LenderEvent {
	m := validDue()
	f(m)
	return &dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_InstallmentDue{InstallmentDue: m}}
}

func pay(f func(*dunningv1.RepaymentReceived)) *dunningv1.LenderEvent {
	m := validPay()
	f(m)
	return &dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_RepaymentReceived{RepaymentReceived: m}}
}

func pref(f func(*dunningv1.ContactPreference)) *dunningv1.LenderEvent {
	m := &dunningv1.ContactPreference{TenantId: "acme", LoanId: "L-1", PreferenceId: "pr-1", Channel: dunningv1.Channel_CHANNEL_SMS,
		OptedOut: true, ReceivedAt: timestamppb.New(time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC))}
	f(m)
	return &dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_ContactPreference{ContactPreference: m}}
}

func hours(f func(*dunningv1.ContactHours)) *dunningv1.LenderEvent {
	m := &dunningv1.ContactHours{TenantId: "acme", LoanId: "L-1", HoursId: "h-1", From: "07:00", To: "22:30",
		ReceivedAt: timestamppb.New(time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC))}
	f(m)
	return &dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_ContactHours{ContactHours: m}}
}

func hold(f func(*dunningv1.HoldPlaced)) *dunningv1.LenderEvent {
	m := &dunningv1.HoldPlaced{TenantId: "acme", LoanId: "L-1", HoldId: "d-1", Kind: dunningv1.HoldKind_HOLD_KIND_DISPUTE,
		ReceivedAt: timestamppb.New(time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC))}
	f(m)
	return &dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_HoldPlaced{HoldPlaced: m}}
}

func plan(f func(*dunningv1.RepaymentPlan)) *dunningv1.LenderEvent {
	at := func(d int) *timestamppb.Timestamp {
		return timestamppb.New(time.Date(2026, 1, 3+7*d, 0, 0, 0, 0, time.UTC))
	}
	m := &dunningv1.RepaymentPlan{TenantId: "acme", LoanId: "L-1", PlanId: "plan-1", ReceivedAt: at(0)}
	for d := 1; d <= 3; d++ {
		m.Installments = append(m.Installments, &dunningv1.PlanInstallment{DueAt: at(d), Amount: &dunningv1.Money{Currency: "CNY", MinorUnits: 40000}})
	}
	f(m)
	return &dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_RepaymentPlan{RepaymentPlan: m}}
}

func promise(f func(*dunningv1.PromiseToPay)) *dunningv1.LenderEvent {
	m := &dunningv1.PromiseToPay{TenantId: "acme", LoanId: "L-1", PromiseId: "pr-1", Amount: &dunningv1.Money{Currency: "CNY", MinorUnits: 60000},
		PromisedFor: timestamppb.New(time.Date(2026, 1, 7, 0, 0, 0, 0, time.UTC)), ReceivedAt: timestamppb.New(time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC))}
	f(m)
	return &dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_PromiseToPay{PromiseToPay: m}}
}

func items(principal, interest, fees int64) *dunningv1.Itemisation {
	m := func(n int64) *dunningv1.Money { return &dunningv1.Money{Currency: "CNY", MinorUnits: n} }
	return &dunningv1.Itemisation{Principal: m(principal), Interest: m(interest), Fees: m(fees)}
}

func balance(it *dunningv1.Itemisation) *dunningv1.LenderEvent {
	return &dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_BalanceUpdated{BalanceUpdated: &dunningv1.BalanceUpdated{
		TenantId: "acme", LoanId: "L-1", BalanceId: "bal-1", Overdue: it, AsOf: timestamppb.New(time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC))}}}
}

func legalOutcome(set func(*dunningv1.LegalOutcome)) *dunningv1.LenderEvent {
	m := &dunningv1.LegalOutcome{TenantId: "acme", LoanId: "L-1", OutcomeId: "lo-1", Status: dunningv1.LegalStatus_LEGAL_STATUS_FILED,
		At: timestamppb.New(time.Date(2026, 6, 3, 0, 0, 0, 0, time.UTC))}
	set(m)
	return &dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_LegalOutcome{LegalOutcome: m}}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name      string
		ev        *dunningv1.LenderEvent
		wantField string // "" means valid
	}{
		{"valid due", due(func(*dunningv1.InstallmentDue) {}), ""},
		{"valid payment", pay(func(*dunningv1.RepaymentReceived) {}), ""},
		{"valid payment for an installment", pay(func(m *dunningv1.RepaymentReceived) { m.InstallmentId = "i-1" }), ""},
		{"valid settlement", &dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_LoanSettled{LoanSettled: &dunningv1.LoanSettled{
			TenantId: "acme", LoanId: "L-1", SettledAt: timestamppb.Now()}}}, ""},
		{"empty envelope", &dunningv1.LenderEvent{}, "event"},
		{"nil installment", &dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_InstallmentDue{}}, "installment_due"},
		{"no tenant", due(func(m *dunningv1.InstallmentDue) { m.TenantId = "" }), "installment_due.tenant_id"},
		{"tenant with a dot", due(func(m *dunningv1.InstallmentDue) { m.TenantId = "a.b" }), "installment_due.tenant_id"},
		{"loan with a wildcard", due(func(m *dunningv1.InstallmentDue) { m.LoanId = "L*" }), "installment_due.loan_id"},
		{"loan too long", due(func(m *dunningv1.InstallmentDue) { m.LoanId = string(make([]byte, 65)) }), "installment_due.loan_id"},
		{"no installment", due(func(m *dunningv1.InstallmentDue) { m.InstallmentId = "" }), "installment_due.installment_id"},
		{"no amount", due(func(m *dunningv1.InstallmentDue) { m.Amount = nil }), "installment_due.amount"},
		{"zero amount", due(func(m *dunningv1.InstallmentDue) { m.Amount.MinorUnits = 0 }), "installment_due.amount.minor_units"},
		{"negative amount", due(func(m *dunningv1.InstallmentDue) { m.Amount.MinorUnits = -1 }), "installment_due.amount.minor_units"},
		{"huge amount", due(func(m *dunningv1.InstallmentDue) { m.Amount.MinorUnits = 1 << 62 }), "installment_due.amount.minor_units"},
		{"lower-case currency", due(func(m *dunningv1.InstallmentDue) { m.Amount.Currency = "cny" }), "installment_due.amount.currency"},
		{"no due time", due(func(m *dunningv1.InstallmentDue) { m.DueAt = nil }), "installment_due.due_at"},
		{"due in 1970", due(func(m *dunningv1.InstallmentDue) { m.DueAt = timestamppb.New(time.Unix(0, 0)) }), "installment_due.due_at"},
		{"no zone", due(func(m *dunningv1.InstallmentDue) { m.TimeZone = "" }), "installment_due.time_zone"},
		{"unknown zone", due(func(m *dunningv1.InstallmentDue) { m.TimeZone = "Mars/Olympus" }), "installment_due.time_zone"},
		{"no contact ref", due(func(m *dunningv1.InstallmentDue) { m.ContactRef = "" }), "installment_due.contact_ref"},
		{"a borrower's locale", due(func(m *dunningv1.InstallmentDue) { m.Locale = "en" }), ""},
		{"a locale that is not a tag", due(func(m *dunningv1.InstallmentDue) { m.Locale = "English" }), "installment_due.locale"},
		{"a region", due(func(m *dunningv1.InstallmentDue) { m.Region = "CN-31" }), ""},
		{"a region that is a city", due(func(m *dunningv1.InstallmentDue) { m.Region = "Shanghai" }), "installment_due.region"},
		{"a region in lower case", due(func(m *dunningv1.InstallmentDue) { m.Region = "cn-31" }), "installment_due.region"},
		{"a limitation date", due(func(m *dunningv1.InstallmentDue) {
			m.LimitationEndsAt = timestamppb.New(m.DueAt.AsTime().AddDate(3, 0, 0))
		}), ""},
		{"a limitation date before the due date", due(func(m *dunningv1.InstallmentDue) {
			m.LimitationEndsAt = timestamppb.New(m.DueAt.AsTime().AddDate(0, 0, -1))
		}), "installment_due.limitation_ends_at"},
		{"a limitation date out of range", due(func(m *dunningv1.InstallmentDue) {
			m.LimitationEndsAt = timestamppb.New(time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC))
		}), "installment_due.limitation_ends_at"},
		{"no payment id", pay(func(m *dunningv1.RepaymentReceived) { m.PaymentId = "" }), "repayment_received.payment_id"},
		{"bad installment ref", pay(func(m *dunningv1.RepaymentReceived) { m.InstallmentId = "a b" }), "repayment_received.installment_id"},
		{"no paid time", pay(func(m *dunningv1.RepaymentReceived) { m.PaidAt = nil }), "repayment_received.paid_at"},
		{"settlement without time", &dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_LoanSettled{LoanSettled: &dunningv1.LoanSettled{
			TenantId: "acme", LoanId: "L-1"}}}, "loan_settled.settled_at"},
		{"valid opt-out", pref(func(*dunningv1.ContactPreference) {}), ""},
		{"opt-out without a channel", pref(func(m *dunningv1.ContactPreference) { m.Channel = 0 }), "contact_preference.channel"},
		{"opt-out of an unknown channel", pref(func(m *dunningv1.ContactPreference) { m.Channel = 99 }), "contact_preference.channel"},
		{"opt-out without an id", pref(func(m *dunningv1.ContactPreference) { m.PreferenceId = "" }), "contact_preference.preference_id"},
		{"opt-out without a time", pref(func(m *dunningv1.ContactPreference) { m.ReceivedAt = nil }), "contact_preference.received_at"},
		{"valid agreed hours", hours(func(*dunningv1.ContactHours) {}), ""},
		{"valid dispute", hold(func(*dunningv1.HoldPlaced) {}), ""},
		{"hold without a kind", hold(func(m *dunningv1.HoldPlaced) { m.Kind = 0 }), "hold_placed.kind"},
		{"hold of an unknown kind", hold(func(m *dunningv1.HoldPlaced) { m.Kind = 99 }), "hold_placed.kind"},
		{"complaint naming no contact", hold(func(m *dunningv1.HoldPlaced) { m.Kind = dunningv1.HoldKind_HOLD_KIND_COMPLAINT }), "hold_placed.contact_id"},
		{"hold without an id", hold(func(m *dunningv1.HoldPlaced) { m.HoldId = "" }), "hold_placed.hold_id"},
		{"hold without a time", hold(func(m *dunningv1.HoldPlaced) { m.ReceivedAt = nil }), "hold_placed.received_at"},
		{"release without a time", &dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_HoldReleased{HoldReleased: &dunningv1.HoldReleased{
			TenantId: "acme", LoanId: "L-1", HoldId: "d-1"}}}, "hold_released.released_at"},
		{"agreed hours withdrawn", hours(func(m *dunningv1.ContactHours) { m.From, m.To, m.Withdrawn = "", "", true }), ""},
		{"agreed hours without a start", hours(func(m *dunningv1.ContactHours) { m.From = "" }), "contact_hours.from"},
		{"agreed hours not a time", hours(func(m *dunningv1.ContactHours) { m.To = "25:00" }), "contact_hours.to"},
		{"agreed hours backwards", hours(func(m *dunningv1.ContactHours) { m.From, m.To = "22:00", "07:00" }), "contact_hours.to"},
		{"agreed hours without an id", hours(func(m *dunningv1.ContactHours) { m.HoursId = "" }), "contact_hours.hours_id"},
		{"itemised installment", due(func(m *dunningv1.InstallmentDue) { m.Itemisation = items(m.Amount.MinorUnits-30, 20, 10) }), ""},
		{"itemisation not adding up", due(func(m *dunningv1.InstallmentDue) { m.Itemisation = items(m.Amount.MinorUnits, 20, 10) }),
			"installment_due.itemisation"},
		{"itemisation without fees", due(func(m *dunningv1.InstallmentDue) {
			m.Itemisation = items(m.Amount.MinorUnits, 0, 0)
			m.Itemisation.Fees = nil
		}), "installment_due.itemisation.fees"},
		{"negative interest", due(func(m *dunningv1.InstallmentDue) { m.Itemisation = items(m.Amount.MinorUnits+5, -5, 0) }),
			"installment_due.itemisation.interest.minor_units"},
		{"valid balance", balance(items(1000, 20, 10)), ""},
		{"balance without its figures", balance(nil), "balance_updated.overdue"},
		{"a legal outcome", legalOutcome(func(*dunningv1.LegalOutcome) {}), ""},
		{"a legal outcome with a court's reference", legalOutcome(func(m *dunningv1.LegalOutcome) { m.Reference = "(2026)沪0115民初1234号" }), ""},
		{"a legal outcome without a status", legalOutcome(func(m *dunningv1.LegalOutcome) { m.Status = 0 }), "legal_outcome.status"},
		{"a legal outcome with an unknown status", legalOutcome(func(m *dunningv1.LegalOutcome) { m.Status = 99 }), "legal_outcome.status"},
		{"a legal outcome without a time", legalOutcome(func(m *dunningv1.LegalOutcome) { m.At = nil }), "legal_outcome.at"},
		{"a legal outcome without an ID", legalOutcome(func(m *dunningv1.LegalOutcome) { m.OutcomeId = "" }), "legal_outcome.outcome_id"},
		{"a legal reference with a line break", legalOutcome(func(m *dunningv1.LegalOutcome) { m.Reference = "case\n12" }), "legal_outcome.reference"},
		{"a legal reference that is a phone number", legalOutcome(func(m *dunningv1.LegalOutcome) { m.Reference = "+8613812345678" }), "legal_outcome.reference"},
		{"valid promise", promise(func(*dunningv1.PromiseToPay) {}), ""},
		{"promise without an amount", promise(func(m *dunningv1.PromiseToPay) { m.Amount = nil }), "promise_to_pay.amount"},
		{"promise without a day", promise(func(m *dunningv1.PromiseToPay) { m.PromisedFor = nil }), "promise_to_pay.promised_for"},
		{"valid plan", plan(func(*dunningv1.RepaymentPlan) {}), ""},
		{"plan without installments", plan(func(m *dunningv1.RepaymentPlan) { m.Installments = nil }), "repayment_plan.installments"},
		{"plan out of order", plan(func(m *dunningv1.RepaymentPlan) { m.Installments[2].DueAt = m.Installments[0].DueAt }),
			"repayment_plan.installments[2].due_at"},
		{"plan in two currencies", plan(func(m *dunningv1.RepaymentPlan) { m.Installments[1].Amount.Currency = "USD" }),
			"repayment_plan.installments[1].amount.currency"},
		{"plan installment of nothing", plan(func(m *dunningv1.RepaymentPlan) { m.Installments[0].Amount.MinorUnits = 0 }),
			"repayment_plan.installments[0].amount.minor_units"},
		{"plan without an id", plan(func(m *dunningv1.RepaymentPlan) { m.PlanId = "" }), "repayment_plan.plan_id"},
		{"cancellation without a time", &dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_PlanCancelled{PlanCancelled: &dunningv1.PlanCancelled{
			TenantId: "acme", LoanId: "L-1", PlanId: "plan-1"}}}, "plan_cancelled.cancelled_at"},
	}
	for _, tt := range tests {
		_, err := Validate(tt.ev)
		if tt.wantField == "" {
			if err != nil {
				t.Errorf("%s: Validate = %v, want nil", tt.name, err)
			}
			continue
		}
		fe, ok := AsFieldError(err)
		if !ok {
			t.Errorf("%s: Validate = %v, want a FieldError on %s", tt.name, err, tt.wantField)
			continue
		}
		if fe.Field != tt.wantField {
			t.Errorf("%s: field = %q, want %q (%v)", tt.name, fe.Field, tt.wantField, fe)
		}
	}
}

func TestValidateSubjects(t *testing.T) {
	ev, err := Validate(&dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_InstallmentDue{InstallmentDue: validDue()}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ev.Subject(1), "dunning.loan.0.acme.L-1.due.i-1"; got != want {
		t.Errorf("Subject() = %q, want %q", got, want)
	}
	pev, err := Validate(&dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_RepaymentReceived{RepaymentReceived: validPay()}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := pev.Subject(1), "dunning.loan.0.acme.L-1.repaid.p-1"; got != want {
		t.Errorf("Subject() = %q, want %q", got, want)
	}
}

func TestDecode(t *testing.T) {
	if _, err := Decode("application/json", []byte(`{"installmentDue":{"tenantId":"acme"}}`)); err != nil {
		t.Errorf("Decode(valid JSON) = %v", err)
	}
	_, err := Decode("application/json", []byte(`{"installmentDue":{"tenantID":"acme"}}`))
	if fe, ok := AsFieldError(err); !ok || fe.Field != "body" {
		t.Errorf("Decode(unknown field) = %v, want a body FieldError", err)
	}
	if _, err := Decode("application/x-protobuf", []byte{0xff}); err == nil {
		t.Error("Decode(bad protobuf) = nil error")
	}
}

// Identifiers and contact references are opaque tokens: values shaped like
// personal data are refused by the field's name, and the error never
// repeats the value. Long digit strings that are not such shapes pass.
func TestPersonalDataShapes(t *testing.T) {
	const (
		residentID   = "11010519491231002X"
		residentID2  = "440304199003071230" // the same shape with a wrong check digit: not a resident ID
		mobile       = "8613812345678"
		mobileZeroes = "008613912345678"
	)
	rejected := []struct {
		value, field string
		ev           *dunningv1.LenderEvent
	}{
		{mobile, "installment_due.tenant_id", due(func(m *dunningv1.InstallmentDue) { m.TenantId = mobile })},
		{mobileZeroes, "installment_due.loan_id", due(func(m *dunningv1.InstallmentDue) { m.LoanId = mobileZeroes })},
		{residentID, "installment_due.installment_id", due(func(m *dunningv1.InstallmentDue) { m.InstallmentId = residentID })},
		{"11010519491231002x", "installment_due.product_id", due(func(m *dunningv1.InstallmentDue) { m.ProductId = "11010519491231002x" })},
		{residentID, "installment_due.contact_ref", due(func(m *dunningv1.InstallmentDue) { m.ContactRef = residentID })},
		{mobile, "installment_due.contact_ref", due(func(m *dunningv1.InstallmentDue) { m.ContactRef = mobile })},
		{"wang.fang@example.com", "installment_due.contact_ref", due(func(m *dunningv1.InstallmentDue) { m.ContactRef = "wang.fang@example.com" })},
		{"+8613812345678", "installment_due.contact_ref", due(func(m *dunningv1.InstallmentDue) { m.ContactRef = "+8613812345678" })},
		{"Wang Fang", "installment_due.contact_ref", due(func(m *dunningv1.InstallmentDue) { m.ContactRef = "Wang Fang" })},
		{"wang.fang@example.com", "installment_due.loan_id", due(func(m *dunningv1.InstallmentDue) { m.LoanId = "wang.fang@example.com" })},
		{mobile, "repayment_received.payment_id", pay(func(m *dunningv1.RepaymentReceived) { m.PaymentId = mobile })},
		{residentID, "repayment_received.installment_id", pay(func(m *dunningv1.RepaymentReceived) { m.InstallmentId = residentID })},
		{"Local", "installment_due.time_zone", due(func(m *dunningv1.InstallmentDue) { m.TimeZone = "Local" })},
		{"Mars/Olympus", "installment_due.time_zone", due(func(m *dunningv1.InstallmentDue) { m.TimeZone = "Mars/Olympus" })},
	}
	for _, c := range rejected {
		_, err := Validate(c.ev)
		fe, ok := AsFieldError(err)
		if !ok || fe.Field != c.field {
			t.Errorf("%q in %s: Validate = %v, want a FieldError on that field", c.value, c.field, err)
			continue
		}
		if strings.Contains(err.Error(), c.value) {
			t.Errorf("%q in %s: the error repeats the value: %v", c.value, c.field, err)
		}
	}
	// Loan and payment numbers are often long digit strings: these pass.
	for _, v := range []string{"6222021234567890123", "20261201000012345678", residentID2, "110105000000000000", "13812345678", "86123", "LN-2026-000123"} {
		if _, err := Validate(due(func(m *dunningv1.InstallmentDue) { m.LoanId, m.ContactRef = v, "crm:contact/"+v })); err != nil {
			t.Errorf("loan %q: Validate = %v, want nil", v, err)
		}
	}
}

// A JSON body's problem is reported by position and field name, never by
// repeating the offending value.
func TestJSONErrorsRepeatNoValue(t *testing.T) {
	cases := []struct{ body, must, mustNot string }{
		{`{"installmentDue": {"tenantId": 8613812345678}}`, "tenantId", "8613812345678"},
		{`{"8613812345678": 1}`, "LenderEvent", "8613812345678"},
		{`{"installmentDue": {"amout": 1}}`, `unknown field "amout"`, ""},
		{`{"installmentDue": {"amount": {"minorUnits": "wang.fang@example.com"}}}`, "minorUnits", "wang.fang"},
		{`{"installmentDue": {"tenantId": "x"`, "unexpected end", "x\""},
	}
	for _, c := range cases {
		_, err := Decode("application/json", []byte(c.body))
		if err == nil || !strings.Contains(err.Error(), c.must) || (c.mustNot != "" && strings.Contains(err.Error(), c.mustNot)) {
			t.Errorf("Decode(%s) = %v; want it to name %q and not repeat %q", c.body, err, c.must, c.mustNot)
		}
	}
}

// Due dates outside the horizon (six years back, two ahead by default) are
// refused by name.
func TestDueDateHorizon(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	in := &Ingestor{Now: func() time.Time { return now }}
	for _, c := range []struct {
		due time.Time
		ok  bool
	}{
		{now, true},
		{now.AddDate(-5, 0, 0), true},
		{now.AddDate(1, 0, 0), true},
		{time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), false},
		{now.AddDate(-7, 0, 0), false},
		{now.AddDate(3, 0, 0), false},
	} {
		m := validDue()
		m.DueAt = timestamppb.New(c.due)
		_, err := in.Check(&dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_InstallmentDue{InstallmentDue: m}})
		fe, isField := AsFieldError(err)
		if c.ok != (err == nil) || (!c.ok && (!isField || fe.Field != "installment_due.due_at")) {
			t.Errorf("due %s: Check = %v, want ok %v", c.due.Format(time.DateOnly), err, c.ok)
		}
	}
}

// An event's dates are judged when it was received: an installment within
// the horizon when the lender sent it is accepted however late intake
// reaches it, and received is the intake's clock less the time the event
// waited in the stream.
func TestDatesJudgedWhenReceived(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	in := &Ingestor{Now: func() time.Time { return now }}
	m := validDue()
	m.DueAt = timestamppb.New(now.AddDate(-6, 0, -1)) // past the six-year horizon now, not a week ago
	ev := &dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_InstallmentDue{InstallmentDue: m}}
	if _, err := in.Check(ev); err == nil {
		t.Fatal("Check accepted a due date past the horizon")
	}
	got, err := in.CheckReceived(ev, now.AddDate(0, 0, -7))
	if err != nil {
		t.Fatalf("received a week ago, within the horizon then: %v", err)
	}
	if !got.Received.Equal(now.AddDate(0, 0, -7)) {
		t.Errorf("Received = %s", got.Received)
	}

	msg := message.NewMessage("1", nil)
	msg.Metadata.Set(bus.MetaStreamTime, time.Now().Add(-90*time.Second).UTC().Format(time.RFC3339Nano))
	if d := now.Sub(in.received(msg)); d < 90*time.Second || d > 100*time.Second {
		t.Errorf("stored 90 s ago: received %s before the intake's now", d)
	}
	msg.Metadata.Set(bus.MetaStreamTime, "")
	if r := in.received(msg); !r.Equal(now) {
		t.Errorf("no stream time: received %s, want now", r)
	}
}
