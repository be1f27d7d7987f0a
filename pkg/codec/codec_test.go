package codec

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/topology"
	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"
)

var at = time.Date(2026, 2, 3, 4, 5, 6, 7, time.UTC)

// events holds one domain event of every kind.
func events() []policy.Event {
	ctx := policy.Context{Case: 2, Stage: policy.StageEscalation, Tier: policy.TierMedium, DPD: 16,
		Overdue: policy.Money{Currency: "CNY", Minor: 600}, DecidedAt: at, Reason: "why", StepID: "c2-escalation", PolicyVersion: "v9", AsOf: at.Add(-time.Hour)}
	task := policy.ContactTask{ID: "c2-escalation-sms", Channel: policy.ChannelSMS, Tone: policy.ToneSerious, ContactRef: "crm",
		Template: "medium.sms", AmountDue: policy.Money{Currency: "CNY", Minor: 600}, DPD: 16,
		RepaymentOptions: []string{"repayment_plan"}, Fees: policy.Money{Currency: "CNY", Minor: 4}, Locale: "zh-CN", Reference: "ABCDEFGHJK", ReplyBy: "2026-05-14"}
	released := task
	released.NotBefore, released.NotAfter, released.MaxAttempts = at, at.Add(14*time.Hour), 6
	items := policy.Itemisation{Principal: policy.Money{Currency: "CNY", Minor: 900}, Interest: policy.Money{Currency: "CNY", Minor: 60},
		Fees: policy.Money{Currency: "CNY", Minor: 40}}
	in := policy.InstallmentDue{ID: "i1", Amount: policy.Money{Currency: "CNY", Minor: 1000}, DueAt: at, Zone: "Asia/Shanghai", ContactRef: "crm", Product: "p", Locale: "en",
		Items: &items, LimitationEnds: at.Add(3 * 365 * 24 * time.Hour)}
	pay := policy.Repayment{PaymentID: "p1", InstallmentID: "i1", Amount: policy.Money{Currency: "CNY", Minor: 400}, PaidAt: at}
	step := policy.Step{ID: "c1-legal_referral", Stage: policy.StageLegal, Case: 1, DPD: 90, At: at}
	return []policy.Event{
		in, pay, policy.Settled{At: at},
		policy.ContactOutcome{ContactID: "c1", Outcome: policy.OutcomeCallConnected, At: at, Detail: "ok"},
		policy.TimerSet{Step: step}, policy.StepFired{Step: step},
		policy.Decision{Kind: policy.KindOverdueConfirmed, Ctx: ctx, InstallmentIDs: []string{"i1", "i2"}},
		policy.Decision{Kind: policy.KindContactRequested, Ctx: ctx, Tasks: []policy.ContactTask{task}},
		policy.Decision{Kind: policy.KindEscalated, Ctx: ctx, Tasks: []policy.ContactTask{task, task}},
		policy.Decision{Kind: policy.KindHandedOff, Ctx: ctx, AgencyID: "ag", PlacementID: "pl-c2"},
		policy.Decision{Kind: policy.KindLegalReferred, Ctx: ctx, Evidence: &policy.Evidence{Installments: []policy.InstallmentDue{in},
			Repayments: []policy.Repayment{pay}, Contacts: []policy.ContactTask{task}, LogSeqs: []uint64{1, 2}, PlacementID: "pl-c2"}},
		policy.Decision{Kind: policy.KindCaseClosed, Ctx: ctx, CloseReason: policy.CloseCured, ClosedAtStage: policy.StageHandoff, PlacementID: "pl-c2"},
		policy.Decision{Kind: policy.KindStepCancelled, Ctx: ctx, CancelledStep: "c2-escalation"},
		policy.Decision{Kind: policy.KindEntryDeferred, Ctx: ctx, DeferredStage: policy.StageLegal},
		policy.Decision{Kind: policy.KindContactHeld, Ctx: ctx, Tasks: []policy.ContactTask{task}, HeldUntil: at.Add(8 * time.Hour), Rule: "cn.hours"},
		policy.Decision{Kind: policy.KindContactReleased, Ctx: ctx, Tasks: []policy.ContactTask{released}},
		policy.ContactPreference{ID: "pref-1", Channel: policy.ChannelSMS, OptedOut: true, At: at},
		policy.ContactHours{ID: "hours-1", From: "07:00", To: "22:30", At: at},
		policy.HoldPlaced{ID: "hold-1", Kind: policy.HoldComplaint, At: at, ContactID: "c1-first_contact-d1-sms"},
		policy.HoldReleased{ID: "hold-1", At: at},
		policy.Decision{Kind: policy.KindContactSuppressed, Ctx: ctx, Tasks: []policy.ContactTask{task}, Rule: policy.RuleOptOut},
		policy.Decision{Kind: policy.KindContactCancelled, Ctx: ctx, Tasks: []policy.ContactTask{task}, Rule: policy.RuleCaseClosed},
		policy.Decision{Kind: policy.KindHoldDeadline, Ctx: ctx, HoldID: "hold-1", HoldLifted: true},
		policy.Decision{Kind: policy.KindPlacementRecalled, Ctx: ctx, AgencyID: "ag", PlacementID: "pl-c2"},
		policy.PromiseToPay{ID: "pr-1", Amount: policy.Money{Currency: "CNY", Minor: 60000}, For: at.Add(96 * time.Hour), At: at},
		policy.Decision{Kind: policy.KindPromiseKept, Ctx: ctx, PromiseID: "pr-1", Paid: policy.Money{Currency: "CNY", Minor: 60000}},
		policy.Decision{Kind: policy.KindPromiseBroken, Ctx: ctx, PromiseID: "pr-1", Paid: policy.Money{Currency: "CNY", Minor: 100}},
		policy.RepaymentPlan{ID: "plan-1", At: at, Installments: []policy.PlanInstallment{
			{DueAt: at.Add(24 * time.Hour), Amount: policy.Money{Currency: "CNY", Minor: 40000}},
			{DueAt: at.Add(48 * time.Hour), Amount: policy.Money{Currency: "CNY", Minor: 40000}}}},
		policy.PlanCancelled{ID: "plan-1", At: at},
		policy.BalanceUpdated{ID: "bal-1", Overdue: items, At: at},
		policy.Decision{Kind: policy.KindPlanMissed, Ctx: ctx, PlanID: "plan-1", PlanInstallment: 1, MovedTo: at.Add(72 * time.Hour),
			Paid: policy.Money{Currency: "CNY", Minor: 40000}},
		policy.Decision{Kind: policy.KindPlanBroken, Ctx: ctx, PlanID: "plan-1", PlanInstallment: 1, Paid: policy.Money{Currency: "CNY", Minor: 40000}},
		policy.Decision{Kind: policy.KindPlanCompleted, Ctx: ctx, PlanID: "plan-1", Paid: policy.Money{Currency: "CNY", Minor: 80000}},
		policy.Decision{Kind: policy.KindLegalBlocked, Ctx: ctx, Rule: policy.BlockedByLimitation},
		policy.Decision{Kind: policy.KindRecallRefused, Ctx: ctx, AgencyID: "collect", PlacementID: "pl-1", PlanID: "agency-o-9", Rule: "hold:h-1"},
		policy.Decision{Kind: policy.KindAgencyPaymentUnconfirmed, Ctx: ctx, AgencyID: "collect", PlacementID: "pl-1", ReportID: "o-3", Rule: "BANK-7", Paid: policy.Money{Currency: "CNY", Minor: 500}},
		policy.LegalOutcome{ID: "lo-1", Status: policy.LegalJudgment, At: at, Reference: "(2026)沪0115民初1234号"},
		policy.Sealed{Through: 41, Chain: []byte{1, 2, 3}, Previous: 12, At: at, By: "apikey:legal-1"},
		policy.AgencyOutcome{ID: "o-1", Placement: "pl-1", Agency: "collect", At: at, Kind: policy.AgencyContacted, Channel: policy.ChannelPhone, Connected: true, RightParty: true},
		policy.AgencyOutcome{ID: "o-9", Placement: "pl-1", Agency: "collect", At: at, Kind: policy.AgencyPlanned,
			Plan: []policy.PlanInstallment{{DueAt: at.Add(24 * time.Hour), Amount: policy.Money{Currency: "CNY", Minor: 500}}}},
		policy.AgencyOutcome{ID: "o-2", Placement: "pl-1", Agency: "collect", At: at, Kind: policy.AgencyPromised, Amount: policy.Money{Currency: "CNY", Minor: 500}, For: at.Add(time.Hour)},
		policy.AgencyOutcome{ID: "o-3", Placement: "pl-1", Agency: "collect", At: at, Kind: policy.AgencyPaid, Amount: policy.Money{Currency: "CNY", Minor: 500}, Reference: "bank-9"},
		policy.AgencyOutcome{ID: "o-4", Placement: "pl-1", Agency: "collect", At: at, Kind: policy.AgencyDisputed, Detail: "not mine"},
		policy.AgencyOutcome{ID: "o-5", Placement: "pl-1", Agency: "collect", At: at, Kind: policy.AgencyReturned, Detail: "unreachable"},
	}
}

// Every kind survives the trip through its protobuf form and its subject.
func TestRoundTrip(t *testing.T) {
	seen := map[*Kind]bool{}
	for _, ev := range events() {
		k, m, err := Encode("acme", "L-1", ev)
		if err != nil {
			t.Fatal(err)
		}
		seen[k] = true
		data, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(address(k, ev), data)
		if err != nil {
			t.Fatalf("Decode(%s) = %v", k.Name(), err)
		}
		if !reflect.DeepEqual(got, ev) {
			t.Errorf("round trip of %s:\n got %+v\nwant %+v", k.Name(), got, ev)
		}
	}
	for _, k := range Kinds {
		if !seen[k] {
			t.Errorf("kind %s has no round-trip case", k.Name())
		}
	}
}

// address is where an event is stored in loan L-1's log.
func address(k *Kind, ev policy.Event) topology.LoanAddress {
	a := topology.LoanAddress{Tenant: "acme", Loan: "L-1", Kind: k.Token}
	switch e := ev.(type) {
	case policy.InstallmentDue:
		a.ID = e.ID
	case policy.Repayment:
		a.ID = e.PaymentID
	case policy.ContactOutcome:
		a.ID = e.ContactID + "_" + e.Outcome.String()
	case policy.ContactPreference:
		a.ID = e.ID
	case policy.ContactHours:
		a.ID = e.ID
	case policy.HoldPlaced:
		a.ID = e.ID
	case policy.HoldReleased:
		a.ID = e.ID
	case policy.PromiseToPay:
		a.ID = e.ID
	case policy.RepaymentPlan:
		a.ID = e.ID
	case policy.PlanCancelled:
		a.ID = e.ID
	case policy.BalanceUpdated:
		a.ID = e.ID
	case policy.LegalOutcome:
		a.ID = e.ID
	case policy.AgencyOutcome:
		a.ID = e.ID
	case policy.StepFired:
		a.ID, a.Seq = "legal", "s9"
	case policy.Decision, policy.Sealed:
		a.ID = "s7"
	}
	return a
}

// A stored body that does not match its subject, or carries money intake
// would have refused, is undecodable for every reader: a forged or copied
// message is never folded into a case.
func TestForgedEntriesAreRefused(t *testing.T) {
	enc := func(ev policy.Event, tenant string) []byte {
		_, m, err := Encode(tenant, "L-1", ev)
		if err != nil {
			t.Fatal(err)
		}
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	pay := policy.Repayment{PaymentID: "p1", Amount: policy.Money{Currency: "CNY", Minor: 100}, PaidAt: at}
	negative := pay
	negative.Amount.Minor = -500_000_000
	cases := []struct {
		name string
		addr topology.LoanAddress
		data []byte
	}{
		{"negative repayment", address(Repaid, negative), enc(negative, "acme")},
		{"another tenant's body", address(Repaid, pay), enc(pay, "beta")},
		{"payment ID not the subject's", topology.LoanAddress{Tenant: "acme", Loan: "L-1", Kind: Repaid.Token, ID: "p2"}, enc(pay, "acme")},
		{"decision copied from another loan", address(Closed, policy.Decision{Kind: policy.KindCaseClosed}),
			enc(policy.Decision{Kind: policy.KindCaseClosed, Ctx: policy.Context{Case: 1}}, "beta")},
		{"settlement with an identifier", topology.LoanAddress{Tenant: "acme", Loan: "L-1", Kind: Settled.Token, ID: "x"}, enc(policy.Settled{At: at}, "acme")},
	}
	for _, c := range cases {
		if _, err := Decode(c.addr, c.data); !errors.Is(err, ErrUndecodable) {
			t.Errorf("%s: Decode = %v, want ErrUndecodable", c.name, err)
		}
	}
	if _, err := Decode(address(Repaid, pay), enc(pay, "acme")); err != nil {
		t.Errorf("the genuine repayment: Decode = %v", err)
	}
}

// The table is consistent: tokens are unique subject tokens, every decision
// kind of the domain has exactly one loan-log kind, and Of finds each.
func TestKindsTable(t *testing.T) {
	tokens := map[topology.Kind]bool{}
	decisions := map[policy.DecisionKind]bool{}
	for _, k := range Kinds {
		if k.Token == "" || strings.ContainsAny(string(k.Token), ".*> ") || tokens[k.Token] {
			t.Errorf("kind token %q is empty, not a subject token, or declared twice", k.Token)
		}
		tokens[k.Token] = true
		if got, ok := ByToken(k.Token); !ok || got != k {
			t.Errorf("ByToken(%q) = %v, %v", k.Token, got, ok)
		}
		if k.Decision != policy.KindNone {
			if decisions[k.Decision] {
				t.Errorf("decision %s has two kinds", k.Decision)
			}
			decisions[k.Decision] = true
		}
	}
	for dk := policy.DecisionKind(1); !strings.Contains(dk.String(), "("); dk++ {
		if !decisions[dk] {
			t.Errorf("decision kind %s has no loan-log kind in Kinds", dk)
		}
	}
	if _, err := Decode(topology.LoanAddress{Kind: "nonsense"}, nil); err == nil {
		t.Error("Decode(unknown kind) = nil error")
	}
	if _, err := Decode(topology.LoanAddress{Kind: Step.Token}, []byte("junk")); err == nil {
		t.Error("Decode(junk step) = nil error")
	}
}

// enumCase checks one domain enum against its protobuf enum: every domain
// value maps to the protobuf value of the same name and back, and every
// protobuf value maps to a domain value. Adding a value on one side only,
// or reordering one side, fails here.
func enumCase[D ~int, P protoreflect.Enum](t *testing.T, prefix string, toProto func(D) P, fromProto func(P) D, names map[int32]string) {
	t.Helper()
	n := 0
	for d := D(0); !strings.Contains(stringOf(d), "("); d++ {
		n++
		want := prefix + strings.ToUpper(stringOf(d))
		if d == 0 {
			want = prefix + "UNSPECIFIED"
		}
		p := toProto(d)
		if got := names[int32(p.Number())]; got != want {
			t.Errorf("%s: domain %q maps to %s, want %s", prefix, stringOf(d), got, want)
		}
		if back := fromProto(p); back != d {
			t.Errorf("%s: %s maps back to %q, want %q", prefix, names[int32(p.Number())], stringOf(back), stringOf(d))
		}
	}
	if n != len(names) {
		t.Errorf("%s: the domain has %d values, the protobuf enum %d: %v", prefix, n, len(names), names)
	}
}

func stringOf[D ~int](d D) string { return any(d).(interface{ String() string }).String() }

func TestEnumsAgree(t *testing.T) {
	enumCase(t, "STAGE_", StageToProto, StageFromProto, dunningv1.Stage_name)
	enumCase(t, "TIER_", TierToProto, TierFromProto, dunningv1.Tier_name)
	enumCase(t, "CHANNEL_", ChannelToProto, ChannelFromProto, dunningv1.Channel_name)
	enumCase(t, "TONE_", ToneToProto, ToneFromProto, dunningv1.Tone_name)
	enumCase(t, "CLOSE_REASON_", CloseReasonToProto, CloseReasonFromProto, dunningv1.CloseReason_name)
	enumCase(t, "OUTCOME_", OutcomeToProto, OutcomeFromProto, dunningv1.Outcome_name)
	enumCase(t, "LEGAL_STATUS_", LegalStatusToProto, LegalStatusFromProto, dunningv1.LegalStatus_name)
}
