package loanlog_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/opendunning/dunning/pkg/codec"
	"github.com/opendunning/dunning/pkg/loanlog"
	"github.com/opendunning/dunning/pkg/loanlog/logtest"
	"github.com/opendunning/dunning/pkg/natstest"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/stage"
	"github.com/opendunning/dunning/pkg/topology"
)

// The NATS log keeps the rules the engine relies on, on a real server.
func TestConformance(t *testing.T) {
	nc, js := natstest.Provisioned(t, "conformance")
	l := loanlog.New(nc, js)
	n := 0
	logtest.Run(t, func(t *testing.T) logtest.Env {
		// Each case gets tenants of its own on the one server.
		n++
		tenant := "t" + string(rune('a'+n))
		return logtest.Env{
			Log:        tenantLog{l, tenant},
			Placements: tenantPlacements{l, tenant},
			AppendLender: func(ctx context.Context, _, loan, id string, ev policy.Event) (uint64, bool, error) {
				k, m, err := codec.Encode(tenant, loan, ev)
				if err != nil {
					return 0, false, err
				}
				data, err := proto.Marshal(m)
				if err != nil {
					return 0, false, err
				}
				seq, err := l.AppendLender(ctx, topology.LoanRef{Tenant: tenant, Loan: loan}.Subject(k.Token, id), data, "")
				if errors.Is(err, loanlog.ErrDuplicate) {
					return seq, true, nil
				}
				return seq, false, err
			},
			Now:     time.Now,
			Advance: func(time.Duration) {}, // the server fires schedules on its own clock
			Eventually: func(t *testing.T, f func() error) {
				t.Helper()
				natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, f)
			},
		}
	})
}

// The NATS borrowers' logs and verification index keep the same rules.
func TestBorrowersConformance(t *testing.T) {
	nc, js := natstest.Provisioned(t, "conformance")
	n := 0
	logtest.RunBorrowers(t, func(*testing.T) (stage.Borrowers, stage.Codes) {
		// Each case its own tenant; codes are global, so its own code too.
		n++
		l := loanlog.New(nc, js)
		return tenantBorrowers{l, "t" + string(rune('a'+n))}, codeSpace{l, n}
	})
}

type tenantBorrowers struct {
	*loanlog.Log
	tenant string
}

func (b tenantBorrowers) ReadBorrower(ctx context.Context, _, borrower string) ([]policy.BorrowerEntry, uint64, error) {
	return b.Log.ReadBorrower(ctx, b.tenant, borrower)
}

func (b tenantBorrowers) AppendBorrower(ctx context.Context, _, borrower string, expect uint64, e policy.BorrowerEntry) (uint64, error) {
	return b.Log.AppendBorrower(ctx, b.tenant, borrower, expect, e)
}

// codeSpace gives each case codes of its own on the one server.
type codeSpace struct {
	*loanlog.Log
	n int
}

func (c codeSpace) Claim(ctx context.Context, code string, owner policy.CodeOwner) (bool, error) {
	return c.Log.Claim(ctx, code[:9]+string(rune('A'+c.n)), owner)
}

// tenantLog gives each case of the suite its own tenant.
type tenantLog struct {
	*loanlog.Log
	tenant string
}

func (l tenantLog) Read(ctx context.Context, _, loan string) ([]policy.Entry, uint64, error) {
	return l.Log.Read(ctx, l.tenant, loan)
}

func (l tenantLog) AppendDecision(ctx context.Context, _, loan string, expect uint64, d policy.Decision) (uint64, error) {
	return l.Log.AppendDecision(ctx, l.tenant, loan, expect, d)
}

func (l tenantLog) SetTimer(ctx context.Context, _, loan string, expect uint64, s policy.Step) (uint64, error) {
	return l.Log.SetTimer(ctx, l.tenant, loan, expect, s)
}

// tenantPlacements is tenantLog's agency counters.
type tenantPlacements struct {
	*loanlog.Log
	tenant string
}

func (l tenantPlacements) Loads(ctx context.Context, _, loan string) (map[string]policy.AgencyLoad, policy.Share, error) {
	return l.Log.Loads(ctx, l.tenant, loan)
}

func (l tenantPlacements) AppendPlacement(ctx context.Context, _, loan string, expect uint64, d policy.Decision,
	agency string, load policy.AgencyLoad, delta int) (uint64, policy.AgencyLoad, error) {
	return l.Log.AppendPlacement(ctx, l.tenant, loan, expect, d, agency, load, delta)
}
