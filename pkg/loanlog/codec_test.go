package loanlog

import (
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/opendunning/dunning/pkg/bus"
	"github.com/opendunning/dunning/pkg/policy"
)

// Every decision survives the trip through its protobuf form.
func TestDecisionRoundTrip(t *testing.T) {
	at := time.Date(2026, 2, 3, 4, 5, 6, 7, time.UTC)
	ctx := policy.Context{Case: 2, Stage: policy.StageEscalation, Tier: policy.TierMedium, DPD: 16,
		Overdue: policy.Money{Currency: "CNY", Minor: 600}, DecidedAt: at, Reason: "why", StepID: "c2-escalation", PolicyVersion: "v9"}
	task := policy.ContactTask{ID: "c2-escalation-sms", Channel: policy.ChannelSMS, Tone: policy.ToneSerious, ContactRef: "crm",
		Template: "medium.sms", AmountDue: policy.Money{Currency: "CNY", Minor: 600}, DPD: 16,
		RepaymentOptions: []string{"repayment_plan"}, Fees: policy.Money{Currency: "CNY", Minor: 4}}
	decisions := []policy.Decision{
		{Kind: policy.KindOverdueConfirmed, Ctx: ctx, InstallmentIDs: []string{"i1", "i2"}},
		{Kind: policy.KindContactRequested, Ctx: ctx, Tasks: []policy.ContactTask{task}},
		{Kind: policy.KindEscalated, Ctx: ctx, Tasks: []policy.ContactTask{task, task}},
		{Kind: policy.KindHandedOff, Ctx: ctx, AgencyID: "ag", PlacementID: "pl-c2"},
		{Kind: policy.KindLegalReferred, Ctx: ctx},
		{Kind: policy.KindCaseClosed, Ctx: ctx, CloseReason: policy.CloseCured, ClosedAtStage: policy.StageHandoff, PlacementID: "pl-c2"},
		{Kind: policy.KindStepCancelled, Ctx: ctx, CancelledStep: "c2-escalation"},
		{Kind: policy.KindEntryDeferred, Ctx: ctx, DeferredStage: policy.StageLegal},
	}
	for _, d := range decisions {
		k, err := kindOf(d.Kind)
		if err != nil {
			t.Fatal(err)
		}
		pm, err := EncodeDecision("acme", "L-1", d)
		if err != nil {
			t.Fatal(err)
		}
		data, err := proto.Marshal(pm)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(bus.LoanAddress{Tenant: "acme", Loan: "L-1", Kind: k}, data)
		if err != nil {
			t.Fatalf("Decode(%s) = %v", d.Kind, err)
		}
		if !reflect.DeepEqual(got, d) {
			t.Errorf("round trip of %s:\n got %+v\nwant %+v", d.Kind, got, d)
		}
	}
}

func TestStepRoundTrip(t *testing.T) {
	s := policy.Step{ID: "c1-legal_referral", Stage: policy.StageLegal, Case: 1, DPD: 90, At: time.Date(2026, 5, 1, 0, 0, 0, 123, time.UTC)}
	data, err := proto.Marshal(stepToProto(s))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(bus.LoanAddress{Kind: bus.KindTimer}, data)
	if err != nil || !got.(policy.TimerSet).Step.Same(s) {
		t.Errorf("timer round trip = %+v, %v; want %+v", got, err, s)
	}
	if _, err := Decode(bus.LoanAddress{Kind: bus.KindStep}, []byte("junk")); err == nil {
		t.Error("Decode(junk step) = nil error")
	}
	if _, err := Decode(bus.LoanAddress{Kind: "nonsense"}, nil); err == nil {
		t.Error("Decode(unknown kind) = nil error")
	}
}
