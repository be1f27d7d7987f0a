// Package packettest builds a loan's log as the loans stream returns it,
// for tests of packets without a server (the stored bytes are the codec's,
// as the stages write them).
package packettest

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/opendunning/dunning/pkg/codec"
	"github.com/opendunning/dunning/pkg/loanlog"
	"github.com/opendunning/dunning/pkg/packet"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/topology"
)

// Log is a loan's log under construction: entries two sequences apart
// (another loan's between), stored a second apart from At.
type Log struct {
	T            testing.TB
	Tenant, Loan string
	At           time.Time
	Raws         []loanlog.Raw
}

// Add appends an event; id is a lender event's identifier ("" for the
// others, which take the sequence token).
func (l *Log) Add(ev policy.Event, id string) {
	l.T.Helper()
	k, m, err := codec.Encode(l.Tenant, l.Loan, ev)
	if err != nil {
		l.T.Fatal(err)
	}
	data, err := proto.Marshal(m)
	if err != nil {
		l.T.Fatal(err)
	}
	seq := uint64(len(l.Raws)*2 + 3)
	if id == "" && k.Token != topology.KindTimer {
		id = topology.SeqToken(seq - 1)
	}
	l.Raws = append(l.Raws, loanlog.Raw{Seq: seq, Subject: topology.LoanRef{Tenant: l.Tenant, Loan: l.Loan}.Subject(k.Token, id),
		Time: l.At.Add(time.Duration(seq) * time.Second), Header: nats.Header{loanlog.HeaderPrincipal: []string{"apikey:k1"}}, Data: data})
}

// Seal appends a seal over the log as it stands, as an export does.
func (l *Log) Seal() {
	l.T.Helper()
	chain, prev, last, err := packet.Chain(l.Tenant, l.Loan, l.Raws)
	if err != nil {
		l.T.Fatal(err)
	}
	l.Add(policy.Sealed{Through: last, Chain: chain, Previous: prev, At: l.At}, "")
}
