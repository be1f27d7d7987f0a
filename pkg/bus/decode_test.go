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
	timer := topology.LoanRef{Tenant: "acme", Loan: "L-1"}.Timer()
	step := topology.LoanRef{Tenant: "acme", Loan: "L-1"}.Step("escalate", 7)
	cases := []struct {
		name    string
		subject string
		headers map[string]string
		forged  bool
	}{
		{"a plain repayment", topology.LoanRef{Tenant: "acme", Loan: "L-1"}.Subject("repaid", "p1"), nil, false},
		{"a repayment that rolls the stream up", topology.LoanRef{Tenant: "acme", Loan: "L-1"}.Subject("repaid", "p1"), map[string]string{"Nats-Rollup": "all"}, true},
		{"in lower case", topology.LoanRef{Tenant: "acme", Loan: "L-1"}.Subject("repaid", "p1"), map[string]string{"nats-rollup": "sub"}, true},
		{"a repayment that purges the timer", topology.LoanRef{Tenant: "acme", Loan: "L-1"}.Subject("repaid", "p1"),
			map[string]string{"Nats-Scheduler": timer, "Nats-Schedule-Next": "purge"}, true},
		{"a decision that schedules", topology.LoanRef{Tenant: "acme", Loan: "L-1"}.Decision("escalated", 3), map[string]string{"Nats-Schedule": "@at 2026-01-01T00:00:00Z"}, true},
		{"the closing decision purging the timer", topology.LoanRef{Tenant: "acme", Loan: "L-1"}.Decision("closed", 3),
			map[string]string{"Nats-Scheduler": timer, "Nats-Schedule-Next": "purge"}, false},
		{"a closing decision that rolls up", topology.LoanRef{Tenant: "acme", Loan: "L-1"}.Decision("closed", 3), map[string]string{"Nats-Rollup": "all"}, true},
		{"a step the timer fired", step, map[string]string{"Nats-Scheduler": timer, "Nats-Schedule-Next": "purge"}, false},
		{"a step without its scheduler", step, nil, true},
		{"a step naming another loan's timer", step, map[string]string{"Nats-Scheduler": topology.LoanRef{Tenant: "acme", Loan: "L-2"}.Timer()}, true},
		{"the loan's timer", timer, map[string]string{"Nats-Schedule": "@at 2026-01-01T00:00:00Z", "Nats-Schedule-Target": step, "Nats-Rollup": "sub"}, false},
		{"a timer that rolls the stream up", timer, map[string]string{"Nats-Schedule": "@at 2026-01-01T00:00:00Z", "Nats-Rollup": "all"}, true},
		{"a timer aimed at a repayment", timer, map[string]string{"Nats-Schedule": "@at 2026-01-01T00:00:00Z",
			"Nats-Schedule-Target": topology.LoanRef{Tenant: "acme", Loan: "L-1"}.Subject("repaid", "p9")}, true},
		{"a timer aimed at another loan", timer, map[string]string{"Nats-Schedule-Target": topology.LoanRef{Tenant: "acme", Loan: "L-2"}.Step("escalate", 7)}, true},
		{"a timer copying another subject", timer, map[string]string{"Nats-Schedule-Source": topology.LoanRef{Tenant: "acme", Loan: "L-1"}.Subject("repaid", "p1")}, true},
		{"a cancellation purging the timer", topology.LoanRef{Tenant: "acme", Loan: "L-1"}.Decision("cancelled", 3),
			map[string]string{"Nats-Scheduler": timer, "Nats-Schedule-Next": "purge"}, false},
		{"a repayment the timer fired", topology.LoanRef{Tenant: "acme", Loan: "L-1"}.Subject("repaid", "p1"), map[string]string{"Nats-Scheduler": timer}, true},
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
