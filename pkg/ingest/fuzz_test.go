package ingest

import (
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"
)

// FuzzDecodeValidate: any body, JSON or binary, decodes and validates to an
// event or a FieldError; nothing panics, and an accepted event names only
// subject-safe identifiers.
func FuzzDecodeValidate(f *testing.F) {
	ev := &dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_InstallmentDue{InstallmentDue: validDue()}}
	js, _ := protojson.Marshal(ev)
	bin, _ := proto.Marshal(ev)
	pay, _ := protojson.Marshal(&dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_RepaymentReceived{RepaymentReceived: validPay()}})
	out, _ := protojson.Marshal(&dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_ContactOutcome{ContactOutcome: &dunningv1.ContactOutcome{
		TenantId: "acme", LoanId: "L-1", ContactId: "c1-x", Outcome: dunningv1.Outcome_OUTCOME_DELIVERED, OccurredAt: timestamppb.Now()}}})
	f.Add(true, js)
	f.Add(false, bin)
	f.Add(true, pay)
	f.Add(true, out)
	f.Add(true, []byte(`{"installmentDue":{"tenantId":"a.b","amount":{"minorUnits":"-1"}}}`))
	f.Fuzz(func(t *testing.T, isJSON bool, body []byte) {
		ct := "application/x-protobuf"
		if isJSON {
			ct = "application/json"
		}
		pev, err := Decode(ct, body)
		if err != nil {
			if _, ok := AsFieldError(err); !ok {
				t.Fatalf("Decode error %v is not a FieldError", err)
			}
			return
		}
		v, err := Validate(pev)
		if err != nil {
			if _, ok := AsFieldError(err); !ok {
				t.Fatalf("Validate error %v is not a FieldError", err)
			}
			return
		}
		for _, tok := range []string{v.Tenant, v.Loan} {
			for _, c := range tok {
				if c == '.' || c == '*' || c == '>' || c == ' ' {
					t.Fatalf("accepted identifier %q is not a safe subject token", tok)
				}
			}
		}
	})
}
