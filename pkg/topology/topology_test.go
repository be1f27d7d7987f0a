package topology

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

func TestLoanSubjects(t *testing.T) {
	r := Partitions(3).Loan("acme", "L-1")
	tests := []struct {
		subj string
		want LoanAddress
	}{
		{r.Subject("due", "i1"), LoanAddress{r.P, "acme", "L-1", "due", "i1", ""}},
		{r.Subject("settled", ""), LoanAddress{r.P, "acme", "L-1", "settled", "", ""}},
		{r.Timer(), LoanAddress{r.P, "acme", "L-1", KindTimer, "", ""}},
		{r.Decision("overdue", 12), LoanAddress{r.P, "acme", "L-1", "overdue", "s12", ""}},
		{r.Step("escalate", 9), LoanAddress{r.P, "acme", "L-1", KindStep, "escalate", "s9"}},
	}
	for _, tt := range tests {
		got, err := ParseLoanSubject(tt.subj)
		if err != nil || got != tt.want {
			t.Errorf("ParseLoanSubject(%q) = %+v, %v; want %+v", tt.subj, got, err, tt.want)
		}
		if got.Ref() != r {
			t.Errorf("ParseLoanSubject(%q).Ref() = %+v, want %+v", tt.subj, got.Ref(), r)
		}
		if !Match(r.Log(), tt.subj) {
			t.Errorf("%q is outside the loan's log %q", tt.subj, r.Log())
		}
		if got := StreamOf(tt.subj); got != r.Stream() {
			t.Errorf("StreamOf(%q) = %q, want %q", tt.subj, got, r.Stream())
		}
	}
	for _, bad := range []string{"", "dunning.loan.acme", "dunning.loan.0.acme", "dunning.in.acme.L-1.due", "dunning.loan.0.a.b.c.d.e", "dunning.loan.0.a.b.step.c.d.e",
		"dunning.loan.acme.L-1.due.i1", "dunning.loan.x.a.b.due.i1", "dunning.loan.01.a.b.due.i1", "dunning.loan.16.a.b.due.i1", "dunning.loan.-1.a.b.due.i1"} {
		if _, err := ParseLoanSubject(bad); !errors.Is(err, ErrNotLoanSubject) {
			t.Errorf("ParseLoanSubject(%q) = %v, want ErrNotLoanSubject", bad, err)
		}
	}
	if tn, ln, err := ParseIntakeSubject(IntakeSubject("acme", "L-1")); err != nil || tn != "acme" || ln != "L-1" {
		t.Errorf("ParseIntakeSubject = %q %q %v", tn, ln, err)
	}
	// A subject of the layout before partitions, in a legal packet of then.
	if a, err := ParseEarlierLoanSubject("dunning.loan.acme.L-1.step.escalate.s9"); err != nil || a != (LoanAddress{0, "acme", "L-1", KindStep, "escalate", "s9"}) {
		t.Errorf("ParseEarlierLoanSubject = %+v, %v", a, err)
	}
	b := Partitions(3).Borrower("acme", "B-1")
	if got := StreamOf(b.Slot(7)); got != b.Stream() || BorrowerSlot(b.Slot(7)) != 7 || !Match(b.Log(), b.Slot(7)) {
		t.Errorf("borrower slot %q: stream %q (want %q), slot %d", b.Slot(7), got, b.Stream(), BorrowerSlot(b.Slot(7)))
	}
	if c := r.Capacity("ag-1"); StreamOf(c) != r.Stream() || CapacityAgency(c) != "ag-1" || !Match(CapacityTenant(r.P, "acme"), c) {
		t.Errorf("capacity counter %q: stream %q, agency %q", c, StreamOf(c), CapacityAgency(c))
	}
	if got := StreamOf("dunning.verify.abc"); got != "" {
		t.Errorf("StreamOf(a verification subject) = %q, want none", got)
	}
}

// TestPartitions: every loan has one partition, within K, the same for the
// same loan; loans spread over every partition; each partition's stream
// holds exactly its own subjects.
func TestPartitions(t *testing.T) {
	if got := (Partitions(0)).Count(); got != 1 {
		t.Errorf("the zero value's count = %d, want 1", got)
	}
	for _, k := range []Partitions{0, 17, -1} {
		if k.Validate() == nil {
			t.Errorf("Partitions(%d).Validate() = nil, want an error", k)
		}
	}
	k := Partitions(3)
	topo := Topology{Partitions: k}
	seen := map[int]int{}
	for i := range 3000 {
		loan := "L-" + strconv.Itoa(i)
		r := k.Loan("acme", loan)
		if r.P < 0 || r.P >= 3 || r != k.Loan("acme", loan) {
			t.Fatalf("Loan(acme, %s) = %+v", loan, r)
		}
		seen[r.P]++
		for _, sc := range topo.StreamConfigs() {
			if !strings.HasPrefix(sc.Name, StreamLoans) || sc.Name == StreamRecord {
				continue
			}
			holds := slices.ContainsFunc(sc.Subjects, func(f string) bool { return Match(f, r.Timer()) })
			if holds != (sc.Name == r.Stream()) {
				t.Fatalf("stream %s holds %s: %v", sc.Name, r.Timer(), holds)
			}
		}
	}
	for p := range 3 {
		if seen[p] < 800 {
			t.Errorf("partition %d holds %d of 3000 loans: %v", p, seen[p], seen)
		}
	}
	if got := Partitions(1).Loan("acme", "L-1").P; got != 0 {
		t.Errorf("one partition: loan in partition %d", got)
	}
	var record []string
	for _, sc := range topo.StreamConfigs() {
		if sc.Name == StreamRecord {
			for _, src := range sc.Sources {
				record = append(record, src.Name)
			}
		}
	}
	if want := []string{"DUNNING_LOANS", "DUNNING_LOANS_1", "DUNNING_LOANS_2"}; !slices.Equal(record, want) || !slices.Equal(k.Streams(), want) {
		t.Errorf("record sources %q, streams %q; want %q", record, k.Streams(), want)
	}
	spread := k.Spread([]ConsumerSpec{{Name: "escalation", Stream: StreamLoans, Filters: []string{StepFilter("escalate")}}, Intake})
	var names []string
	for _, c := range spread {
		names = append(names, c.Stream+"/"+c.Name+"/"+strings.Join(c.Filters, ","))
	}
	for name, want := range map[string]bool{"intake": true, "intake-p1": true, "intake-p15": true, "intake-p16": false, "intake-p01": false, "intake-p0": false, "intakes": false, "escalation-p1": false} {
		if IsIntakeConsumer(name) != want {
			t.Errorf("IsIntakeConsumer(%q) = %v, want %v", name, !want, want)
		}
	}
	if want := []string{"DUNNING_LOANS/escalation/dunning.loan.0.*.*.step.escalate.*", "DUNNING_LOANS_1/escalation-p1/dunning.loan.1.*.*.step.escalate.*",
		"DUNNING_LOANS_2/escalation-p2/dunning.loan.2.*.*.step.escalate.*",
		"DUNNING_INTAKE/intake/dunning.in.0.*.*", "DUNNING_INTAKE/intake-p1/dunning.in.1.*.*", "DUNNING_INTAKE/intake-p2/dunning.in.2.*.*"}; !slices.Equal(names, want) {
		t.Errorf("Spread = %q, want %q", names, want)
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
		{LoanRef{0, "acme", "L-1"}.Log(), LoanRef{0, "acme", "L-1"}.Subject("due", "1"), true},
		{LoanRef{0, "acme", "L-1"}.Log(), LoanRef{0, "acme", "L-10"}.Subject("due", "1"), false},
		{LoanRef{1, "acme", "L-1"}.Log(), LoanRef{0, "acme", "L-1"}.Subject("due", "1"), false},
		{StepFilter("escalate"), LoanRef{2, "acme", "L-1"}.Step("escalate", 4), true},
		{StepFilter("escalate"), LoanRef{0, "acme", "L-1"}.Step("legal", 4), false},
		{LoanFilter("due", "*"), LoanRef{5, "acme", "L-1"}.Subject("due", "1"), true},
		{TimerFilter(), LoanRef{5, "acme", "L-1"}.Timer(), true},
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
