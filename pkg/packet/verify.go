package packet

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/opendunning/dunning/pkg/codec"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/topology"
)

// Read decodes a packet, refusing fields it does not know (an added field
// is an alteration too).
func Read(r io.Reader) (Packet, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var p Packet
	if err := dec.Decode(&p); err != nil {
		return Packet{}, fmt.Errorf("not a legal packet: %w", err)
	}
	if dec.More() {
		return Packet{}, errors.New("not a legal packet: data after the packet")
	}
	return p, nil
}

// Verify checks that a packet is whole: each entry belongs to the loan, in
// strictly increasing sequence, its content is its stored bytes, the chain
// recomputed entry by entry matches every entry's and every seal's, the
// packet ends with the seal it names, and the summary is what its entries
// give. The first failure is returned, naming the entry.
func Verify(p Packet) error {
	if p.Format != Format {
		return fmt.Errorf("format %q, want %q", p.Format, Format)
	}
	if len(p.Entries) == 0 {
		return errors.New("the packet has no entries")
	}
	w := start(p.Tenant, p.Loan)
	entries := make([]policy.Entry, 0, len(p.Entries))
	for i, e := range p.Entries {
		at := fmt.Sprintf("entry %d (seq %d)", i+1, e.Seq)
		if e.Seq <= w.last {
			return fmt.Errorf("%s: out of order after seq %d (an entry moved or repeated)", at, w.last)
		}
		a, err := topology.ParseLoanSubject(e.Subject)
		if err != nil {
			// A packet exported before the loans had partitions.
			a, err = topology.ParseEarlierLoanSubject(e.Subject)
		}
		if err != nil || a.Tenant != p.Tenant || a.Loan != p.Loan || !chained(a) {
			return fmt.Errorf("%s: subject %q is not an entry of %s/%s's log", at, e.Subject, p.Tenant, p.Loan)
		}
		k, ok := codec.ByToken(a.Kind)
		if !ok || k.Name() != e.Kind {
			return fmt.Errorf("%s: kind %q does not match its subject %q", at, e.Kind, e.Subject)
		}
		ev, err := codec.Decode(a, e.Data)
		if err != nil {
			return fmt.Errorf("%s: stored bytes: %w", at, err)
		}
		if err := sameContent(k, e); err != nil {
			return fmt.Errorf("%s: %w", at, err)
		}
		var seal *policy.Sealed
		if s, ok := ev.(policy.Sealed); ok {
			seal = &s
		}
		if err := w.add(e.Seq, e.Time, e.Subject, e.Principal, e.Data, seal); err != nil {
			return fmt.Errorf("%s: %w (an entry before it was altered, removed or moved)", at, err)
		}
		if e.Chain != hex.EncodeToString(w.chain) {
			return fmt.Errorf("%s: chain %s, recomputed %x (this entry or one before it was altered, removed or moved)", at, e.Chain, w.chain)
		}
		entries = append(entries, policy.Entry{Seq: e.Seq, Time: e.Time, Event: ev})
	}
	if w.lastSeal != w.last {
		return fmt.Errorf("the packet ends at seq %d, which is not a seal (the last seal is at seq %d): entries were added after it or it was removed", w.last, w.lastSeal)
	}
	end := p.Entries[len(p.Entries)-1]
	s, _ := entries[len(entries)-1].Event.(policy.Sealed)
	want := Seal{Seq: end.Seq, Through: s.Through, Chain: hex.EncodeToString(s.Chain), Previous: s.Previous}
	if p.Seal != want {
		return fmt.Errorf("the packet's seal %+v is not its last entry's %+v", p.Seal, want)
	}
	got, err := json.Marshal(p.Summary)
	if err != nil {
		return err
	}
	derived, err := json.Marshal(Summarize(entries))
	if err != nil {
		return err
	}
	if !bytes.Equal(got, derived) {
		return errors.New("the summary is not what the entries give (it was altered)")
	}
	return nil
}

// sameContent checks an entry's readable content says what its stored
// bytes say.
func sameContent(k *codec.Kind, e Entry) error {
	stored, shown := k.NewMessage(), k.NewMessage()
	if err := proto.Unmarshal(e.Data, stored); err != nil {
		return fmt.Errorf("stored bytes: %w", err)
	}
	if err := protojson.Unmarshal(e.Content, shown); err != nil {
		return fmt.Errorf("content: %w", err)
	}
	if !proto.Equal(stored, shown) {
		return errors.New("its content is not its stored bytes (the content was altered)")
	}
	return nil
}
