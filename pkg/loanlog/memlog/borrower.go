package memlog

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/stage"
	"github.com/opendunning/dunning/pkg/topology"
)

// Borrowers is an in-memory stage.Borrowers: each borrower's latest
// topology.BorrowerRing entries, and an append guarded by the borrower's
// last sequence.
type Borrowers struct {
	mu   sync.Mutex
	seq  uint64
	logs map[string][]borrowerMsg
}

type borrowerMsg struct {
	seq   uint64
	entry policy.BorrowerEntry
}

var _ stage.Borrowers = (*Borrowers)(nil)

// ReadBorrower returns the borrower's entries in order, and its last sequence.
func (b *Borrowers) ReadBorrower(_ context.Context, tenant, borrower string) ([]policy.BorrowerEntry, uint64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	msgs := b.logs[tenant+"\x00"+borrower]
	var out []policy.BorrowerEntry
	var last uint64
	for _, m := range msgs {
		out, last = append(out, m.entry), m.seq
	}
	return out, last, nil
}

// AppendBorrower appends an entry if the borrower's last sequence is still
// expect.
func (b *Borrowers) AppendBorrower(_ context.Context, tenant, borrower string, expect uint64, e policy.BorrowerEntry) (uint64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.logs == nil {
		b.logs = map[string][]borrowerMsg{}
	}
	k := tenant + "\x00" + borrower
	msgs := b.logs[k]
	var last uint64
	if n := len(msgs); n > 0 {
		last = msgs[n-1].seq
	}
	if last != expect {
		return 0, fmt.Errorf("%w: borrower %s: wrong last sequence %d, expected %d", stage.ErrConflict, borrower, last, expect)
	}
	// A ring of topology.BorrowerRing subjects: a read returns the latest
	// that many.
	b.seq++
	msgs = append(msgs, borrowerMsg{b.seq, e})
	if n := len(msgs); n > topology.BorrowerRing {
		msgs = slices.Clone(msgs[n-topology.BorrowerRing:])
	}
	b.logs[k] = msgs
	return b.seq, nil
}

// Codes is an in-memory verification index.
type Codes struct {
	mu     sync.Mutex
	owners map[string]policy.CodeOwner
}

var _ stage.Codes = (*Codes)(nil)

// Claim records code as owner's unless it is another's.
func (c *Codes) Claim(_ context.Context, code string, owner policy.CodeOwner) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.owners == nil {
		c.owners = map[string]policy.CodeOwner{}
	}
	if got, ok := c.owners[code]; ok {
		return got == owner, nil
	}
	c.owners[code] = owner
	return true, nil
}

// Owner returns whose a code is.
func (c *Codes) Owner(code string) (policy.CodeOwner, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	o, ok := c.owners[code]
	return o, ok
}

// Take marks code as an unrelated contact's, so that a test can make a
// release collide with it.
func (c *Codes) Take(code string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.owners == nil {
		c.owners = map[string]policy.CodeOwner{}
	}
	c.owners[code] = policy.CodeOwner{Tenant: "someone-else"}
}
