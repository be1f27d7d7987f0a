package logtest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/stage"
	"github.com/opendunning/dunning/pkg/topology"
)

// RunBorrowers is the conformance suite of stage.Borrowers and stage.Codes:
// a borrower's log is read whole, in order; an append guarded by a
// sequence that is no longer the borrower's last is refused with
// ErrConflict and writes nothing, whichever loan it is for; the guard is per
// borrower; a verification code is one owner's. Each case gets fresh
// implementations from newEnv.
func RunBorrowers(t *testing.T, newEnv func(t *testing.T) (stage.Borrowers, stage.Codes)) {
	at := time.Date(2026, 3, 18, 0, 0, 0, 0, time.UTC)
	call := func(loan, task string) policy.BorrowerEntry {
		return policy.BorrowerEntry{Loan: loan, Task: task, Channel: policy.ChannelPhone, At: at}
	}
	t.Run("GuardedAppend", func(t *testing.T) {
		b, _ := newEnv(t)
		es, last, err := b.ReadBorrower(ctx, tenant, "B-1")
		if err != nil || len(es) != 0 || last != 0 {
			t.Fatalf("empty borrower log = %v, %d, %v", es, last, err)
		}
		s1, err := b.AppendBorrower(ctx, tenant, "B-1", 0, call("L-1", "c1-phone"))
		if err != nil {
			t.Fatal(err)
		}
		// Another loan decided from the same (empty) log loses the race.
		if _, err := b.AppendBorrower(ctx, tenant, "B-1", 0, call("L-2", "c1-phone")); !errors.Is(err, stage.ErrConflict) {
			t.Fatalf("stale append for another loan: %v, want ErrConflict", err)
		}
		o := call("L-1", "c1-phone")
		o.Outcome, o.At = policy.OutcomeCallConnected, at.Add(time.Minute)
		s2, err := b.AppendBorrower(ctx, tenant, "B-1", s1, o)
		if err != nil || s2 <= s1 {
			t.Fatalf("append from the last sequence: %d, %v", s2, err)
		}
		// The guard is the borrower's: another borrower's log is apart.
		if _, err := b.AppendBorrower(ctx, tenant, "B-2", 0, call("L-3", "c1-phone")); err != nil {
			t.Fatalf("another borrower's first append: %v", err)
		}
		es, last, err = b.ReadBorrower(ctx, tenant, "B-1")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := fmt.Sprint(es), fmt.Sprint([]policy.BorrowerEntry{call("L-1", "c1-phone"), o}); got != want || last != s2 {
			t.Errorf("borrower log = %s at %d\nwant %s at %d", got, last, want, s2)
		}
	})
	t.Run("ReadsTheLatestRing", func(t *testing.T) {
		b, _ := newEnv(t)
		var last uint64
		n := topology.BorrowerRing + 44
		for i := range n {
			var err error
			if last, err = b.AppendBorrower(ctx, tenant, "B-9", last, call("L-1", fmt.Sprintf("c%d-phone", i))); err != nil {
				t.Fatal(err)
			}
		}
		es, got, err := b.ReadBorrower(ctx, tenant, "B-9")
		if err != nil || got != last || len(es) != topology.BorrowerRing {
			t.Fatalf("after %d appends: %d entries, last %d (want %d), %v", n, len(es), got, last, err)
		}
		for i, e := range es {
			if want := fmt.Sprintf("c%d-phone", n-topology.BorrowerRing+i); e.Task != want {
				t.Fatalf("entry %d is %s, want %s: the latest, in order", i, e.Task, want)
			}
		}
	})
	t.Run("CodeHasOneOwner", func(t *testing.T) {
		_, c := newEnv(t)
		a := policy.CodeOwner{Tenant: tenant, Loan: "L-1", Task: "c1-phone", Case: 1}
		b := policy.CodeOwner{Tenant: tenant, Loan: "L-2", Task: "c1-phone", Case: 1}
		for i, step := range []struct {
			owner policy.CodeOwner
			want  bool
		}{{a, true}, {a, true}, {b, false}} {
			ok, err := c.Claim(ctx, "ABCDEFGHJK", step.owner)
			if err != nil || ok != step.want {
				t.Errorf("claim %d by %s: %v, %v; want %v", i, step.owner.Loan, ok, err, step.want)
			}
		}
	})
}
