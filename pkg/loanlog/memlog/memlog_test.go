package memlog_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/opendunning/dunning/pkg/loanlog/logtest"
	"github.com/opendunning/dunning/pkg/loanlog/memlog"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/stage"
)

func TestBorrowersConformance(t *testing.T) {
	logtest.RunBorrowers(t, func(*testing.T) (stage.Borrowers, stage.Codes) { return &memlog.Borrowers{}, &memlog.Codes{} })
}

func TestConformance(t *testing.T) {
	logtest.Run(t, func(t *testing.T) logtest.Env {
		c := memlog.NewClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
		l := memlog.New(c.Now)
		return logtest.Env{
			Log:        l,
			Placements: l,
			AppendLender: func(_ context.Context, tenant, loan, id string, ev policy.Event) (uint64, bool, error) {
				seq, err := l.AppendLender(tenant, loan, id, ev)
				if errors.Is(err, memlog.ErrDuplicate) {
					return 0, true, nil
				}
				return seq, false, err
			},
			Now:     c.Now,
			Advance: func(d time.Duration) { c.Add(d); l.Fire() },
			Eventually: func(t *testing.T, f func() error) {
				t.Helper()
				if err := f(); err != nil {
					t.Fatal(err)
				}
			},
		}
	})
}
