package bus

import (
	"errors"
	"strings"
	"testing"
)

func TestLoanSubjects(t *testing.T) {
	tests := []struct {
		subj string
		want LoanAddress
	}{
		{LoanSubject("acme", "L-1", KindDue, "i1"), LoanAddress{"acme", "L-1", KindDue, "i1", ""}},
		{LoanSubject("acme", "L-1", KindSettled, ""), LoanAddress{"acme", "L-1", KindSettled, "", ""}},
		{TimerSubject("acme", "L-1"), LoanAddress{"acme", "L-1", KindTimer, "", ""}},
		{DecisionSubject("acme", "L-1", KindOverdue, 12), LoanAddress{"acme", "L-1", KindOverdue, "s12", ""}},
		{StepSubject("acme", "L-1", StepEscalate, 9), LoanAddress{"acme", "L-1", KindStep, StepEscalate, "s9"}},
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

// Every stream subject the consumers filter on lies in their stream, and no
// two consumers of the loans stream share a filter (each event has one owner).
func TestConsumersDeclared(t *testing.T) {
	seen := map[string]string{}
	for _, c := range Consumers {
		if c.Stream != StreamLoans && c.Stream != StreamIntake && c.Stream != StreamTasks {
			t.Errorf("consumer %s on undeclared stream %s", c.Name, c.Stream)
		}
		for _, f := range c.Filters {
			if other, dup := seen[f]; dup {
				t.Errorf("filter %s on both %s and %s", f, other, c.Name)
			}
			seen[f] = c.Name
		}
		if got, ok := ConsumerByName(c.Name); !ok || got.Name != c.Name {
			t.Errorf("ConsumerByName(%q) = %+v, %v", c.Name, got, ok)
		}
	}
}

func TestPermanent(t *testing.T) {
	base := errors.New("bad payload")
	err := Permanent(base)
	if !IsPermanent(err) || !errors.Is(err, base) {
		t.Errorf("Permanent(%v): IsPermanent=%v, Is(base)=%v", base, IsPermanent(err), errors.Is(err, base))
	}
	if IsPermanent(base) || Permanent(nil) != nil {
		t.Error("plain errors must not be permanent; Permanent(nil) must be nil")
	}
}
