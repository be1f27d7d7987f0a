package topology

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

func TestLoanSubjects(t *testing.T) {
	tests := []struct {
		subj string
		want LoanAddress
	}{
		{LoanSubject("acme", "L-1", "due", "i1"), LoanAddress{"acme", "L-1", "due", "i1", ""}},
		{LoanSubject("acme", "L-1", "settled", ""), LoanAddress{"acme", "L-1", "settled", "", ""}},
		{TimerSubject("acme", "L-1"), LoanAddress{"acme", "L-1", KindTimer, "", ""}},
		{DecisionSubject("acme", "L-1", "overdue", 12), LoanAddress{"acme", "L-1", "overdue", "s12", ""}},
		{StepSubject("acme", "L-1", "escalate", 9), LoanAddress{"acme", "L-1", KindStep, "escalate", "s9"}},
	}
	for _, tt := range tests {
		got, err := ParseLoanSubject(tt.subj)
		if err != nil || got != tt.want {
			t.Errorf("ParseLoanSubject(%q) = %+v, %v; want %+v", tt.subj, got, err, tt.want)
		}
		if !strings.HasPrefix(tt.subj, strings.TrimSuffix(LoanLog("acme", "L-1"), ">")) {
			t.Errorf("%q is outside the loan's log %q", tt.subj, LoanLog("acme", "L-1"))
		}
	}
	for _, bad := range []string{"", "dunning.loan.acme", "dunning.in.acme.L-1.due", "dunning.loan.a.b.c.d.e", "dunning.loan.a.b.step.c.d.e"} {
		if _, err := ParseLoanSubject(bad); !errors.Is(err, ErrNotLoanSubject) {
			t.Errorf("ParseLoanSubject(%q) = %v, want ErrNotLoanSubject", bad, err)
		}
	}
	if tn, ln, err := ParseIntakeSubject(IntakeSubject("acme", "L-1")); err != nil || tn != "acme" || ln != "L-1" {
		t.Errorf("ParseIntakeSubject = %q %q %v", tn, ln, err)
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		filter, subject string
		want            bool
	}{
		{"a.b", "a.b", true},
		{"a.*", "a.b", true},
		{"a.*", "a.b.c", false},
		{"a.>", "a.b.c", true},
		{"a.>", "a", false},
		{"a.*.c", "a.b.d", false},
		{LoanLog("acme", "L-1"), LoanSubject("acme", "L-1", "due", "1"), true},
		{LoanLog("acme", "L-1"), LoanSubject("acme", "L-10", "due", "1"), false},
		{StepFilter("escalate"), StepSubject("acme", "L-1", "escalate", 4), true},
		{StepFilter("escalate"), StepSubject("acme", "L-1", "legal", 4), false},
	}
	for _, tt := range tests {
		if got := Match(tt.filter, tt.subject); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.filter, tt.subject, got, tt.want)
		}
	}
}

// TestRetryWaitsForPeers: a placement without peers (a cluster just started)
// and unavailability are tried again; a refused configuration is not.
func TestRetryWaitsForPeers(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		wantCalls int
	}{
		{"no peers yet", &jetstream.APIError{Code: 400, ErrorCode: errNoPeers, Description: "no suitable peers for placement, peer offline"}, 3},
		{"unavailable", &jetstream.APIError{Code: 503, Description: "JetStream system temporarily unavailable"}, 3},
		{"refused", &jetstream.APIError{Code: 400, ErrorCode: 10058, Description: "stream name already in use"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			err := retry(context.Background(), func(context.Context) error {
				calls++
				if calls < 3 {
					return tt.err
				}
				return nil
			})
			if calls != tt.wantCalls {
				t.Fatalf("%d calls, want %d", calls, tt.wantCalls)
			}
			if (err != nil) != (tt.wantCalls == 1) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}
