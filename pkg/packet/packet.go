// Package packet builds and verifies a loan's legal evidence packet: every
// entry of the loan's log in stream order with its stored bytes and its
// content, chained by SHA-256 and sealed, and a summary derived from them
// (the lender's figures itemised, the notices sent, holds, promises, plans
// and the agency history).
//
// The chain. Fired steps are written by the server and lender events are
// guarded only against repeats, so no writer can extend a chain entry by
// entry as it writes. The chain is computed over the log instead, and
// sealed: a seal is a log entry, written guarded by the loan's last
// sequence (nothing can land between what it hashed and itself), that
// holds the chain over every entry before it. It is itself chained, so
// each seal commits to the one before, and an entry deleted from the
// stream after a seal breaks every later recomputation. The loan's timer
// is left out: the server deletes a schedule once it fires.
//
// What the packet alone proves: that it is internally whole. Altering,
// removing or reordering any entry, or any part of the summary, makes
// Verify fail. Someone who rewrites the packet and recomputes every hash
// is caught only against the log, whose seal at the packet's last
// sequence must hold the same chain (the seal is in JetStream, replicated,
// written once under a guard).
package packet

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/opendunning/dunning/pkg/codec"
	"github.com/opendunning/dunning/pkg/loanlog"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/topology"
)

// Format names the packet's layout and chain.
const Format = "dunning-legal-packet/1"

// Packet is a loan's legal evidence packet.
type Packet struct {
	Format    string    `json:"format"`
	Tenant    string    `json:"tenant_id"`
	Loan      string    `json:"loan_id"`
	Generated time.Time `json:"generated_at"`
	// Summary is derived from Entries alone; Verify derives it again.
	Summary Summary `json:"summary"`
	// Entries is every entry of the loan's log but its timer, in stream
	// order, through the last seal.
	Entries []Entry `json:"entries"`
	// Seal is the last entry's: the chain over every entry before it.
	Seal Seal `json:"seal"`
}

// Entry is one entry of the log: where and when it was stored, who sent
// it, its kind and content (the stored bytes as JSON, for reading), the
// stored bytes themselves, and the chain after it.
type Entry struct {
	Seq       uint64          `json:"seq"`
	Time      time.Time       `json:"time"`
	Subject   string          `json:"subject"`
	Principal string          `json:"principal,omitempty"`
	Kind      string          `json:"kind"`
	Content   json.RawMessage `json:"content"`
	Data      []byte          `json:"data"`
	Chain     string          `json:"chain"`
}

// Seal is a checkpoint of the chain: at log sequence Seq, the chain over
// every entry through Through, after the seal at Previous (0: the first).
type Seal struct {
	Seq      uint64 `json:"seq"`
	Through  uint64 `json:"through_seq"`
	Chain    string `json:"chain"`
	Previous uint64 `json:"previous_seal_seq"`
}

// genesis starts a loan's chain: it binds the chain to the loan.
func genesis(tenant, loan string) []byte {
	h := sha256.Sum256([]byte("dunning legal chain v1\x00" + tenant + "\x00" + loan))
	return h[:]
}

// link extends the chain by one entry: its sequence, its stored time, its
// subject, who sent it and its bytes, each length-prefixed so no two
// different entries hash alike.
func link(prev []byte, seq uint64, at time.Time, subject, principal string, data []byte) []byte {
	h := sha256.New()
	h.Write(prev)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], seq)
	h.Write(n[:])
	binary.BigEndian.PutUint64(n[:], uint64(at.UnixNano()))
	h.Write(n[:])
	for _, part := range [][]byte{[]byte(subject), []byte(principal), data} {
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		h.Write(n[:])
		h.Write(part)
	}
	return h.Sum(nil)
}

// chained reports whether an entry is in the chain: every entry of the
// loan's log but its timer, which the server deletes once it fires.
func chained(a topology.LoanAddress) bool { return a.Kind != topology.KindTimer }

// ErrBroken means the log no longer holds what one of its seals sealed: an
// entry before it was deleted or changed in the stream.
var ErrBroken = errors.New("the loan's log does not match its seal")

// walk is a chain walked entry by entry, as the log, a packet's build and
// its verification all walk it: the hash so far, the last chained
// sequence and the last seal's (0: none).
type walk struct {
	chain          []byte
	last, lastSeal uint64
}

func start(tenant, loan string) *walk { return &walk{chain: genesis(tenant, loan)} }

// add checks an entry that is a seal (seal non-nil) against the chain so
// far, then extends the chain by the entry.
func (w *walk) add(seq uint64, at time.Time, subject, principal string, data []byte, seal *policy.Sealed) error {
	if seal != nil {
		if !bytes.Equal(seal.Chain, w.chain) || seal.Through != w.last || seal.Previous != w.lastSeal {
			return fmt.Errorf("the seal at seq %d holds the chain through seq %d after seal %d; the entries before it give seq %d after seal %d",
				seq, seal.Through, seal.Previous, w.last, w.lastSeal)
		}
		w.lastSeal = seq
	}
	w.chain = link(w.chain, seq, at, subject, principal, data)
	w.last = seq
	return nil
}

// Chain walks a loan's log: the chain over it, the last seal's sequence
// (0: none), and the sequence of the last chained entry. Every seal on the
// way must hold the chain before it (ErrBroken otherwise).
func Chain(tenant, loan string, raws []loanlog.Raw) (chain []byte, lastSeal, last uint64, err error) {
	w := start(tenant, loan)
	for _, r := range raws {
		a, perr := topology.ParseLoanSubject(r.Subject)
		if perr != nil || !chained(a) {
			continue
		}
		var seal *policy.Sealed
		if a.Kind == codec.Seal.Token {
			s, derr := decodeSeal(r.Data)
			if derr != nil {
				return nil, 0, 0, fmt.Errorf("seal at seq %d: %w", r.Seq, derr)
			}
			seal = &s
		}
		if err := w.add(r.Seq, r.Time, r.Subject, r.Header.Get(loanlog.HeaderPrincipal), r.Data, seal); err != nil {
			return nil, 0, 0, fmt.Errorf("%w: %w", ErrBroken, err)
		}
	}
	return w.chain, w.lastSeal, w.last, nil
}

func decodeSeal(data []byte) (policy.Sealed, error) {
	ev, err := codec.Decode(topology.LoanAddress{Kind: codec.Seal.Token}, data)
	if err != nil {
		return policy.Sealed{}, err
	}
	return ev.(policy.Sealed), nil
}

// Sealed reports whether the log's last chained entry is a seal: the
// packet can be built without sealing again.
func Sealed(raws []loanlog.Raw) bool {
	for i := len(raws) - 1; i >= 0; i-- {
		a, err := topology.ParseLoanSubject(raws[i].Subject)
		if err != nil || !chained(a) {
			continue
		}
		return a.Kind == codec.Seal.Token
	}
	return false
}

// Build makes the packet of a sealed log (its last chained entry a seal),
// checking every seal on the way as Chain does (ErrBroken).
func Build(tenant, loan string, raws []loanlog.Raw, now time.Time) (Packet, error) {
	p := Packet{Format: Format, Tenant: tenant, Loan: loan, Generated: now, Entries: []Entry{}}
	w := start(tenant, loan)
	var entries []policy.Entry
	for _, r := range raws {
		a, err := topology.ParseLoanSubject(r.Subject)
		if err != nil || !chained(a) {
			continue
		}
		e, ev, err := entry(r, a)
		if err != nil {
			return Packet{}, fmt.Errorf("seq %d: %w", r.Seq, err)
		}
		s, isSeal := ev.(policy.Sealed)
		var seal *policy.Sealed
		if isSeal {
			seal = &s
			p.Seal = Seal{Seq: r.Seq, Through: s.Through, Chain: hex.EncodeToString(s.Chain), Previous: s.Previous}
		}
		if err := w.add(r.Seq, r.Time, r.Subject, e.Principal, r.Data, seal); err != nil {
			return Packet{}, fmt.Errorf("%w: %w", ErrBroken, err)
		}
		e.Chain = hex.EncodeToString(w.chain)
		p.Entries = append(p.Entries, e)
		entries = append(entries, policy.Entry{Seq: r.Seq, Time: r.Time, Event: ev})
	}
	if n := len(p.Entries); n == 0 || p.Seal.Seq != p.Entries[n-1].Seq {
		return Packet{}, errors.New("the log is not sealed at its last entry")
	}
	p.Summary = Summarize(entries)
	return p, nil
}

// entry renders one stored message: its kind, its content as JSON, and
// its domain event.
func entry(r loanlog.Raw, a topology.LoanAddress) (Entry, policy.Event, error) {
	k, ok := codec.ByToken(a.Kind)
	if !ok {
		return Entry{}, nil, fmt.Errorf("unknown kind %q", a.Kind)
	}
	ev, err := codec.Decode(a, r.Data)
	if err != nil {
		return Entry{}, nil, err
	}
	m := k.NewMessage()
	if err := proto.Unmarshal(r.Data, m); err != nil {
		return Entry{}, nil, err
	}
	content, err := protojson.Marshal(m)
	if err != nil {
		return Entry{}, nil, err
	}
	return Entry{Seq: r.Seq, Time: r.Time, Subject: r.Subject, Principal: r.Header.Get(loanlog.HeaderPrincipal),
		Kind: k.Name(), Content: content, Data: r.Data}, ev, nil
}
