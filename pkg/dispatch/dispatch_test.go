package dispatch

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/opendunning/dunning/pkg/bus"
	"github.com/opendunning/dunning/pkg/codec"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/policyfile"
	"github.com/opendunning/dunning/pkg/topology"
	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"
)

// stream stands in for the tasks stream: it keeps what is published and,
// like a publish guarded by Nats-Expected-Last-Subject-Sequence: 0, refuses
// a second message on a subject.
type stream struct {
	mu   sync.Mutex
	msgs map[string]*nats.Msg
}

func (s *stream) PublishMsg(_ context.Context, m *nats.Msg, _ ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m.Header.Get(jetstream.ExpectedLastSubjSeqHeader) == "0" && s.msgs[m.Subject] != nil {
		return nil, &jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequence, Description: "wrong last sequence"}
	}
	s.msgs[m.Subject] = m
	return &jetstream.PubAck{Stream: topology.StreamTasks, Sequence: uint64(len(s.msgs))}, nil
}

func loanMessage(t *testing.T, subject string, ev policy.Event) *message.Message {
	t.Helper()
	_, pm, err := codec.Encode("acme", "L-1", ev)
	if err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(pm)
	if err != nil {
		t.Fatal(err)
	}
	m := message.NewMessage("1", b)
	m.Metadata.Set(bus.MetaSubject, subject)
	return m
}

// An escalation's tasks the gate released become one task per channel on
// its channel's subject, rendered from the tenant's templates with the
// verification code and the delivery window; the same release delivered
// again publishes nothing new.
func TestEscalationFansOut(t *testing.T) {
	pol, err := policyfile.Default()
	if err != nil {
		t.Fatal(err)
	}
	ladder := policy.Ladder{Policy: pol, Calendar: policy.Calendar{Day: policy.RealDay}}
	d := &Dispatcher{JS: &stream{msgs: map[string]*nats.Msg{}}, Ladder: policy.Fixed(ladder)}
	amount := policy.Money{Currency: "CNY", Minor: 120000}
	var tasks []policy.ContactTask
	for _, ch := range []policy.Channel{policy.ChannelPhone, policy.ChannelSMS, policy.ChannelEmail, policy.ChannelAppPush} {
		tasks = append(tasks, policy.ContactTask{ID: "c1-escalation-d16-" + ch.String(), Channel: ch, Tone: policy.ToneSerious,
			ContactRef: "crm-77", Template: "medium_notice", Locale: "zh-CN", Reference: "ABCDEFGHJK", AmountDue: amount, DPD: 16,
			Fees: policy.Money{Currency: "CNY", Minor: 960}, NotBefore: time.Unix(1_800_000_000, 0), NotAfter: time.Unix(1_800_030_000, 0), MaxAttempts: 6})
	}
	dec := policy.Decision{Kind: policy.KindContactReleased, Tasks: tasks, Ctx: policy.Context{Case: 1, Stage: policy.StageEscalation,
		Tier: policy.TierMedium, DPD: 16, Overdue: amount, DecidedAt: time.Now(), PolicyVersion: "default-v1"}}
	msg := loanMessage(t, topology.LoanRef{Tenant: "acme", Loan: "L-1"}.Decision(codec.Released.Token, 7), dec)
	for range 2 {
		if err := d.Handle(msg); err != nil {
			t.Fatalf("Handle = %v", err)
		}
	}
	msgs := d.JS.(*stream).msgs
	if len(msgs) != len(tasks) {
		t.Fatalf("%d tasks published, want %d", len(msgs), len(tasks))
	}
	for _, task := range tasks {
		m := msgs[topology.TaskSubject(task.Channel.String(), "acme", "L-1", task.ID)]
		if m == nil {
			t.Fatalf("no task on %s's subject", task.Channel)
		}
		var del dunningv1.Delivery
		if err := proto.Unmarshal(m.Data, &del); err != nil {
			t.Fatal(err)
		}
		if del.GetTask().GetContactId() != task.ID || codec.ChannelFromProto(del.GetTask().GetChannel()) != task.Channel ||
			codec.StageFromProto(del.GetStage()) != policy.StageEscalation || !strings.Contains(del.GetText(), "1200.00") ||
			!strings.Contains(del.GetText(), "ABCDEFGHJK") || del.GetTask().GetNotAfter().AsTime().Unix() != 1_800_030_000 ||
			del.GetTask().GetMaxAttempts() != 6 {
			t.Errorf("%s task: %v", task.Channel, &del)
		}
		if m.Header.Get(jetstream.MsgIDHeader) == "" {
			t.Errorf("%s task has no message ID", task.Channel)
		}
		// Only the phone task carries a voicemail, and it says nothing of
		// the debt: not the amount, not the fees, not the days overdue.
		vm := del.GetVoicemailText()
		switch {
		case task.Channel != policy.ChannelPhone && vm != "":
			t.Errorf("%s task carries a voicemail: %q", task.Channel, vm)
		case task.Channel == policy.ChannelPhone && (!strings.Contains(vm, "合同上的官方客服电话") || strings.Contains(vm, "ABCDEFGHJK") ||
			strings.Contains(vm, "1200") || strings.Contains(vm, "9.60") || strings.Contains(vm, "16") || strings.Contains(vm, "逾期")):
			t.Errorf("phone task's voicemail %q: want the number to call back and nothing of the debt", vm)
		}
	}
}

// Anything but a release on dispatch's consumer is dead-lettered: a contact
// decision included, since the gate has not looked at it.
func TestUnexpectedEntriesAreRejected(t *testing.T) {
	d := &Dispatcher{JS: &stream{msgs: map[string]*nats.Msg{}},
		Ladder: policy.Fixed(policy.Ladder{Policy: policy.Default(), Calendar: policy.Calendar{Day: policy.RealDay}})}
	cases := []*message.Message{
		loanMessage(t, topology.LoanRef{Tenant: "acme", Loan: "L-1"}.Decision(codec.HandedOff.Token, 9), policy.Decision{Kind: policy.KindHandedOff}),
		loanMessage(t, topology.LoanRef{Tenant: "acme", Loan: "L-1"}.Decision(codec.Escalated.Token, 9), policy.Decision{Kind: policy.KindEscalated}),
		loanMessage(t, topology.LoanRef{Tenant: "acme", Loan: "L-1"}.Subject(codec.Due.Token, "1"), policy.InstallmentDue{ID: "1"}),
		func() *message.Message {
			m := message.NewMessage("x", []byte("junk"))
			m.Metadata.Set(bus.MetaSubject, topology.LoanRef{Tenant: "acme", Loan: "L-1"}.Decision(codec.Contact.Token, 3))
			return m
		}(),
	}
	for i, m := range cases {
		if err := d.Handle(m); !bus.IsPermanent(err) {
			t.Errorf("case %d: Handle = %v, want a permanent error", i, err)
		}
	}
}
