package bus

import (
	"errors"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/opendunning/dunning/pkg/codec"
	"github.com/opendunning/dunning/pkg/topology"
)

// Headers only the server or the closing decision set are refused on any
// other loan-log entry, before its body is decoded.
func TestForgedHeaders(t *testing.T) {
	timer := topology.TimerSubject("acme", "L-1")
	step := topology.StepSubject("acme", "L-1", "escalate", 7)
	cases := []struct {
		name    string
		subject string
		headers map[string]string
		forged  bool
	}{
		{"a plain repayment", topology.LoanSubject("acme", "L-1", "repaid", "p1"), nil, false},
		{"a repayment that rolls the stream up", topology.LoanSubject("acme", "L-1", "repaid", "p1"), map[string]string{"Nats-Rollup": "all"}, true},
		{"in lower case", topology.LoanSubject("acme", "L-1", "repaid", "p1"), map[string]string{"nats-rollup": "sub"}, true},
		{"a repayment that purges the timer", topology.LoanSubject("acme", "L-1", "repaid", "p1"),
			map[string]string{"Nats-Scheduler": timer, "Nats-Schedule-Next": "purge"}, true},
		{"a decision that schedules", topology.DecisionSubject("acme", "L-1", "escalated", 3), map[string]string{"Nats-Schedule": "@at 2026-01-01T00:00:00Z"}, true},
		{"the closing decision purging the timer", topology.DecisionSubject("acme", "L-1", "closed", 3),
			map[string]string{"Nats-Scheduler": timer, "Nats-Schedule-Next": "purge"}, false},
		{"a closing decision that rolls up", topology.DecisionSubject("acme", "L-1", "closed", 3), map[string]string{"Nats-Rollup": "all"}, true},
		{"a step the timer fired", step, map[string]string{"Nats-Scheduler": timer, "Nats-Schedule-Next": "purge"}, false},
		{"a step without its scheduler", step, nil, true},
		{"a step naming another loan's timer", step, map[string]string{"Nats-Scheduler": topology.TimerSubject("acme", "L-2")}, true},
		{"the loan's timer", timer, map[string]string{"Nats-Schedule": "@at 2026-01-01T00:00:00Z", "Nats-Schedule-Target": step, "Nats-Rollup": "sub"}, false},
		{"a timer that rolls the stream up", timer, map[string]string{"Nats-Schedule": "@at 2026-01-01T00:00:00Z", "Nats-Rollup": "all"}, true},
		{"a timer aimed at a repayment", timer, map[string]string{"Nats-Schedule": "@at 2026-01-01T00:00:00Z",
			"Nats-Schedule-Target": topology.LoanSubject("acme", "L-1", "repaid", "p9")}, true},
		{"a timer aimed at another loan", timer, map[string]string{"Nats-Schedule-Target": topology.StepSubject("acme", "L-2", "escalate", 7)}, true},
		{"a timer copying another subject", timer, map[string]string{"Nats-Schedule-Source": topology.LoanSubject("acme", "L-1", "repaid", "p1")}, true},
		{"a cancellation purging the timer", topology.DecisionSubject("acme", "L-1", "cancelled", 3),
			map[string]string{"Nats-Scheduler": timer, "Nats-Schedule-Next": "purge"}, false},
		{"a repayment the timer fired", topology.LoanSubject("acme", "L-1", "repaid", "p1"), map[string]string{"Nats-Scheduler": timer}, true},
	}
	for _, c := range cases {
		msg := message.NewMessage("x", []byte("not decoded when forged"))
		msg.Metadata.Set(MetaSubject, c.subject)
		for k, v := range c.headers {
			msg.Metadata.Set(k, v)
		}
		_, _, err := DecodeLoan(msg)
		if forged := errors.Is(err, codec.ErrForgedHeaders); forged != c.forged {
			t.Errorf("%s: %v, forged %v, want %v", c.name, err, forged, c.forged)
		}
		if c.forged && !IsPermanent(err) {
			t.Errorf("%s: %v is not permanent: it would be redelivered instead of dead-lettered", c.name, err)
		}
	}
}
