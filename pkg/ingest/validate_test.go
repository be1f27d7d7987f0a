package ingest

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

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

func TestValidate(t *testing.T) {
	due := func(f func(*dunningv1.InstallmentDue)) *dunningv1.LenderEvent {
		m := validDue()
		f(m)
		return &dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_InstallmentDue{InstallmentDue: m}}
	}
	pay := func(f func(*dunningv1.RepaymentReceived)) *dunningv1.LenderEvent {
		m := validPay()
		f(m)
		return &dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_RepaymentReceived{RepaymentReceived: m}}
	}
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
		{"no payment id", pay(func(m *dunningv1.RepaymentReceived) { m.PaymentId = "" }), "repayment_received.payment_id"},
		{"bad installment ref", pay(func(m *dunningv1.RepaymentReceived) { m.InstallmentId = "a b" }), "repayment_received.installment_id"},
		{"no paid time", pay(func(m *dunningv1.RepaymentReceived) { m.PaidAt = nil }), "repayment_received.paid_at"},
		{"settlement without time", &dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_LoanSettled{LoanSettled: &dunningv1.LoanSettled{
			TenantId: "acme", LoanId: "L-1"}}}, "loan_settled.settled_at"},
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
	if got, want := ev.Subject(), "dunning.loan.acme.L-1.due.i-1"; got != want {
		t.Errorf("Subject() = %q, want %q", got, want)
	}
	pev, err := Validate(&dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_RepaymentReceived{RepaymentReceived: validPay()}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := pev.Subject(), "dunning.loan.acme.L-1.repaid.p-1"; got != want {
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
