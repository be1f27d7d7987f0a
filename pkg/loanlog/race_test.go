package loanlog_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opendunning/dunning/pkg/contactrules"
	"github.com/opendunning/dunning/pkg/loanlog"
	"github.com/opendunning/dunning/pkg/loanlog/memlog"
	"github.com/opendunning/dunning/pkg/natstest"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/stage"
	"github.com/opendunning/dunning/pkg/topology"
)

// Acceptance 3 (contact rules), the race, with the NATS borrower log: two
// loans of one borrower, two of whose three connected calls of the day are
// made, release their phone tasks at the same instant; both read the
// borrower's log before either appends, and the server's guard lets one
// through. Exactly one phone task is released, 200 times in a row. (The
// loans' own logs are in memory: the race is decided in the borrower's.)
func TestTwoLoansRaceForTheLastSlotOnNATS(t *testing.T) {
	nc, js := natstest.Provisioned(t, "race")
	ctx := context.Background()
	borrowers := loanlog.New(nc, js)
	packs, err := contactrules.Packs()
	if err != nil {
		t.Fatal(err)
	}
	pol := policy.Default()
	pol.Jurisdiction, pol.Contact = "cn", policy.ContactRules{Pack: packs["cn"], MaxAttempts: 6}
	ladder := policy.Fixed(policy.Ladder{Policy: pol, Calendar: policy.Calendar{Day: policy.RealDay}})
	loc, _ := policy.LoadZone("Asia/Shanghai")
	due := time.Date(2026, 3, 2, 18, 0, 0, 0, loc)
	dpd := func(n int, into time.Duration) time.Time {
		return policy.Calendar{Day: policy.RealDay}.DPDStart(due, loc, n).Add(into)
	}
	const tenant = "acme"
	loans := []string{"L-1", "L-2"}

	for i := range 200 {
		borrower := fmt.Sprintf("B-%d", i)
		clock := memlog.NewClock(due.Add(-time.Hour))
		log := memlog.New(clock.Now)
		deps := stage.Deps{Log: log, Ladder: ladder, Now: clock.Now, Borrowers: borrowers, Codes: &memlog.Codes{}}
		var seen uint64
		drain := func() {
			for {
				msgs := log.Since(seen)
				if len(msgs) == 0 {
					return
				}
				for _, m := range msgs {
					seen = m.Seq
					for _, s := range stage.Table {
						for _, f := range s.ConsumerSpec().Filters {
							if topology.Match(f, m.Subject) {
								if err := s.Handle(ctx, deps, m.Tenant, m.Loan, m.Seq, m.Event); err != nil {
									t.Fatalf("%s on %s: %v", s.Consumer, m.Subject, err)
								}
							}
						}
					}
				}
			}
		}
		for _, loan := range loans {
			if _, err := log.AppendLender(tenant, loan, "1", policy.InstallmentDue{ID: "1", Amount: policy.Money{Currency: "CNY", Minor: 100000},
				DueAt: due, Zone: "Asia/Shanghai", ContactRef: "crm", BorrowerRef: borrower}); err != nil {
				t.Fatal(err)
			}
		}
		drain()
		for {
			next, ok := log.NextTimer()
			if !ok || next.After(dpd(16, 7*time.Hour)) {
				break
			}
			clock.Set(next)
			log.Fire()
			drain()
		}
		// Two calls connected this morning, on another of the borrower's loans.
		var last uint64
		for _, task := range []string{"c1-a", "c1-b"} {
			for _, o := range []policy.Outcome{policy.OutcomeNone, policy.OutcomeCallConnected} {
				e := policy.BorrowerEntry{Loan: "L-0", Task: task, Channel: policy.ChannelPhone, At: dpd(16, 7*time.Hour), Outcome: o}
				if last, err = borrowers.AppendBorrower(ctx, tenant, borrower, last, e); err != nil {
					t.Fatal(err)
				}
			}
		}
		clock.Set(dpd(16, 8*time.Hour))
		var steps []policy.Step
		for _, loan := range loans {
			es, _, err := log.Read(ctx, tenant, loan)
			if err != nil {
				t.Fatal(err)
			}
			c := policy.Fold(es)
			if c.Pending == nil || c.Pending.Step.Stage != policy.StageRelease {
				t.Fatalf("%s: pending %+v, want its release step", loan, c.Pending)
			}
			steps = append(steps, c.Pending.Step)
		}
		// The first append of each waits until both have read and decided.
		var calls atomic.Int32
		bothDecided := make(chan struct{})
		deps.Borrowers = hooked{borrowers, func() {
			switch calls.Add(1) {
			case 1:
				select {
				case <-bothDecided:
				case <-time.After(5 * time.Second):
				}
			case 2:
				close(bothDecided)
			}
		}}
		errs := make(chan error, len(loans))
		for j, loan := range loans {
			go func() { errs <- stage.Release.Handle(ctx, deps, tenant, loan, 0, policy.StepFired{Step: steps[j]}) }()
		}
		for range loans {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		if calls.Load() < 2 {
			t.Fatalf("iteration %d: %d appends: the two loans did not race", i, calls.Load())
		}
		phones := 0
		for _, loan := range loans {
			es, _, _ := log.Read(ctx, tenant, loan)
			for _, e := range es {
				if d, ok := e.Event.(policy.Decision); ok && d.Kind == policy.KindContactReleased && d.Ctx.Stage == policy.StageEscalation {
					for _, task := range d.Tasks {
						if task.Channel == policy.ChannelPhone {
							phones++
						}
					}
				}
			}
		}
		if phones != 1 {
			t.Fatalf("iteration %d: %d phone tasks released for the borrower's last slot, want exactly 1", i, phones)
		}
	}
}

// hooked runs before ahead of every append to a borrower's log.
type hooked struct {
	stage.Borrowers
	before func()
}

func (h hooked) AppendBorrower(ctx context.Context, tenant, borrower string, expect uint64, e policy.BorrowerEntry) (uint64, error) {
	h.before()
	return h.Borrowers.AppendBorrower(ctx, tenant, borrower, expect, e)
}
