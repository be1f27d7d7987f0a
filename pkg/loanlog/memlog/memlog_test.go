package memlog_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/opendunning/dunning/pkg/loanlog/logtest"
	"github.com/opendunning/dunning/pkg/loanlog/memlog"
	"github.com/opendunning/dunning/pkg/policy"
)

// clock is a manual clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestConformance(t *testing.T) {
	logtest.Run(t, func(t *testing.T) logtest.Env {
		c := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
		l := memlog.New(c.Now)
		return logtest.Env{
			Log: l,
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
