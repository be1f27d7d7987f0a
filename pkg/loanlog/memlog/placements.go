package memlog

import (
	"context"
	"fmt"
	"strings"

	"github.com/opendunning/dunning/pkg/codec"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/stage"
)

var _ stage.Placements = (*Log)(nil)

// Loads returns the counters of a tenant's contracts.
func (l *Log) Loads(_ context.Context, tenant, _ string) (map[string]policy.AgencyLoad, policy.Share, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]policy.AgencyLoad{}
	for k, c := range l.counters {
		if t, agency, _ := strings.Cut(k, "\x00"); t == tenant {
			out[agency] = c
		}
	}
	return out, policy.Share{}, nil
}

// AppendPlacement stores the agency's counter and the decision together,
// if both the loan's and the counter's last sequences are as expected;
// otherwise neither.
func (l *Log) AppendPlacement(_ context.Context, tenant, id string, expect uint64, d policy.Decision,
	agency string, load policy.AgencyLoad, delta int) (uint64, policy.AgencyLoad, error) {
	k, err := codec.Of(d)
	if err != nil {
		return 0, load, err
	}
	if l.BeforeWrite != nil {
		l.BeforeWrite(tenant, id)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	ln := l.loan(tenant, id)
	if got := ln.last(); got != expect {
		return 0, load, fmt.Errorf("%w: wrong last sequence: %d, expected %d", stage.ErrConflict, got, expect)
	}
	ck := tenant + "\x00" + agency
	if got := l.counters[ck].Seq; got != load.Seq {
		return 0, load, fmt.Errorf("%w: agency %s counter: wrong last sequence: %d, expected %d", stage.ErrConflict, agency, got, load.Seq)
	}
	if l.counters == nil {
		l.counters = map[string]policy.AgencyLoad{}
	}
	// One sequence across the stream: the counter's, then the decision's.
	l.seq++
	c := policy.AgencyLoad{Open: max(load.Open+delta, 0), Seq: l.seq}
	l.counters[ck] = c
	if d.Kind == policy.KindCaseClosed {
		ln.removeSubject(ref(tenant, id).Timer())
		ln.timer = nil
	}
	return l.store(tenant, id, ref(tenant, id).Decision(k.Token, expect), d), c, nil
}
