package loanlog

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"

	"github.com/opendunning/dunning/pkg/codec"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/stage"
	"github.com/opendunning/dunning/pkg/topology"
)

var (
	_ stage.Borrowers = (*Log)(nil)
	_ stage.Codes     = (*Log)(nil)
)

// ReadBorrower returns a borrower's latest entries (topology.BorrowerRing
// of them at most), read as a loan's log is (one multi_last direct get,
// from the subject index), and its last sequence.
func (l *Log) ReadBorrower(ctx context.Context, tenant, borrower string) ([]policy.BorrowerEntry, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, l.Timeout)
	defer cancel()
	ref := l.Parts.Borrower(tenant, borrower)
	raws, _, err := l.batch(ctx, ref.Stream(), map[string]any{"multi_last": []string{ref.Log()}, "batch": topology.BorrowerRing + 1}, topology.BorrowerRing+1)
	if err == nil && len(raws) > topology.BorrowerRing {
		err = fmt.Errorf("borrower %s/%s: more than %d subjects in its log: not written by this pipeline", tenant, borrower, topology.BorrowerRing)
	}
	if err != nil {
		return nil, 0, err
	}
	slices.SortFunc(raws, func(a, b Raw) int { return cmp.Compare(a.Seq, b.Seq) })
	var out []policy.BorrowerEntry
	var last uint64
	for _, r := range raws {
		last = r.Seq
		var m dunningv1.BorrowerContact
		if err := proto.Unmarshal(r.Data, &m); err != nil {
			continue // not ours to decide on; it still counts for the sequence
		}
		out = append(out, policy.BorrowerEntry{Loan: m.GetLoanId(), Task: m.GetContactId(), Channel: codec.ChannelFromProto(m.GetChannel()),
			At: m.GetAt().AsTime(), Outcome: codec.OutcomeFromProto(m.GetOutcome())})
	}
	return out, last, nil
}

// AppendBorrower appends one entry to a borrower's log if its last sequence
// is still expect, on the ring's subject after the last entry's.
func (l *Log) AppendBorrower(ctx context.Context, tenant, borrower string, expect uint64, e policy.BorrowerEntry) (uint64, error) {
	ref := l.Parts.Borrower(tenant, borrower)
	slot := 0
	if expect > 0 {
		last, found, err := l.Last(ctx, ref.Log())
		if err != nil {
			return 0, err
		}
		if !found || last.Seq != expect {
			return 0, fmt.Errorf("%w: borrower %s/%s moved since it was read", stage.ErrConflict, tenant, borrower)
		}
		slot = (topology.BorrowerSlot(last.Subject) + 1) % topology.BorrowerRing
	}
	data, err := proto.Marshal(&dunningv1.BorrowerContact{LoanId: e.Loan, ContactId: e.Task, Channel: codec.ChannelToProto(e.Channel),
		At: timestamppb.New(e.At), Outcome: codec.OutcomeToProto(e.Outcome)})
	if err != nil {
		return 0, fmt.Errorf("encoding borrower entry: %w", err)
	}
	m := nats.NewMsg(ref.Slot(slot))
	m.Data = data
	// No message ID: a retried publish whose first went through meets the
	// guard and fails, and the caller re-reads and finds its entry.
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(expect, 10))
	m.Header.Set(jetstream.ExpectedLastSubjSeqSubjHeader, ref.Log())
	return seqOf(l.publish(ctx, m))
}

// Claim records a verification code as owner's: written only if the code's
// subject is empty. On a refusal it reads whose the code is: the same
// owner's (a retry) is a success, another's is false.
func (l *Log) Claim(ctx context.Context, code string, owner policy.CodeOwner) (bool, error) {
	data, err := proto.Marshal(&dunningv1.VerificationCode{TenantId: owner.Tenant, LoanId: owner.Loan, ContactId: owner.Task, Case: int32(owner.Case)})
	if err != nil {
		return false, err
	}
	m := nats.NewMsg(topology.VerifySubject(code))
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, MsgID("verify", code, owner.Tenant, owner.Loan, owner.Task, strconv.Itoa(owner.Case)))
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
	_, err = l.publish(ctx, m)
	if !errors.Is(err, stage.ErrConflict) {
		return err == nil, err
	}
	got, found, err := l.Code(ctx, code)
	if err != nil {
		return false, err
	}
	return found && got == owner, nil
}

// Code returns whose released contact carried a verification code; found
// is false for a code never indexed.
func (l *Log) Code(ctx context.Context, code string) (owner policy.CodeOwner, found bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, l.Timeout)
	defer cancel()
	out, _, err := l.batch(ctx, topology.StreamVerify, map[string]any{"last_by_subj": topology.VerifySubject(code)}, 1)
	if err != nil || len(out) == 0 {
		return policy.CodeOwner{}, false, err
	}
	var m dunningv1.VerificationCode
	if err := proto.Unmarshal(out[0].Data, &m); err != nil {
		// The code is not named: a lookup's error is logged, and codes are
		// not (they would let a log reader check messages).
		return policy.CodeOwner{}, false, fmt.Errorf("decoding a verification code's entry: %w", err)
	}
	return policy.CodeOwner{Tenant: m.GetTenantId(), Loan: m.GetLoanId(), Task: m.GetContactId(), Case: int(m.GetCase())}, true, nil
}
