package ingest

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/opendunning/dunning/pkg/bus"
	"github.com/opendunning/dunning/pkg/topology"
)

// An event intake refuses is dead-lettered (a permanent error) only once
// its lender has been told why; while telling fails the message is retried
// (a transient error that still names the refusal), and a retried refusal
// is told again under the same intake sequence.
func TestIntakeTellsBeforeRefusing(t *testing.T) {
	var told []Rejection
	fail := true
	in := &Ingestor{Reject: func(_ context.Context, r Rejection) error {
		told = append(told, r)
		if fail {
			return errors.New("rejections stream unavailable")
		}
		return nil
	}}
	h := in.Intake()
	msg := message.NewMessage("1", []byte(`{"loanSettled": {"tenantId": "acme", "loanId": "L-1", "unknown": 1}}`))
	msg.Metadata.Set(bus.MetaSubject, topology.LoanRef{Tenant: "acme", Loan: "L-1"}.Intake())
	msg.Metadata.Set(bus.MetaStreamSeq, "42")
	msg.Metadata.Set("Content-Type", "application/json")

	err := h(msg)
	var perm *bus.PermanentError
	if err == nil || errors.As(err, &perm) || !strings.Contains(err.Error(), `unknown field "unknown"`) {
		t.Fatalf("while telling fails: %v, want a transient error naming the refusal", err)
	}
	fail = false
	if err := h(msg); !errors.As(err, &perm) {
		t.Fatalf("once told: %v, want a permanent error (dead-lettered)", err)
	}
	if len(told) != 2 || told[1].IntakeSeq != 42 || told[1].Tenant != "acme" || told[1].Loan != "L-1" || told[1].Field != "body" {
		t.Errorf("told %+v, want twice for intake sequence 42 of acme/L-1, naming the body", told)
	}
}
