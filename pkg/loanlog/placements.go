package loanlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"

	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/stage"
	"github.com/opendunning/dunning/pkg/topology"
)

var _ stage.Placements = (*Log)(nil)

// maxContracts bounds the counters one read returns: a tenant's contracts
// with agencies (multi_last serves at most 1,024 subjects).
const maxContracts = 1024

// Loads reads every counter of a tenant's contracts in the loan's
// partition, in one multi_last direct get.
func (l *Log) Loads(ctx context.Context, tenant, loan string) (map[string]policy.AgencyLoad, policy.Share, error) {
	ctx, cancel := context.WithTimeout(ctx, l.Timeout)
	defer cancel()
	ref := l.Loan(tenant, loan)
	share := policy.Share{Part: ref.P, Parts: l.Parts.Count()}
	raws, _, err := l.batch(ctx, ref.Stream(), map[string]any{"multi_last": []string{topology.CapacityTenant(ref.P, tenant)}, "batch": maxContracts}, maxContracts)
	if err != nil {
		return nil, share, fmt.Errorf("agency counters of %s: %w", tenant, err)
	}
	out := make(map[string]policy.AgencyLoad, len(raws))
	for _, r := range raws {
		var m dunningv1.AgencyCounter
		if err := proto.Unmarshal(r.Data, &m); err != nil {
			// A counter that cannot be read cannot be trusted to bound
			// placements: retried (and alerted on) rather than read as 0.
			return nil, share, fmt.Errorf("agency counter %s at %d: %w", r.Subject, r.Seq, err)
		}
		out[topology.CapacityAgency(r.Subject)] = policy.AgencyLoad{Open: int(m.GetOpen()), Seq: r.Seq}
	}
	return out, share, nil
}

// AppendPlacement writes the agency's counter and the decision as one
// atomic batch (ADR-50): the counter guarded by its own last sequence, the
// decision by the loan's. Either both are stored or neither. nats.go has no
// batch helper; the protocol is two headers on each message, a commit header
// on the last, and a publish acknowledgement for the commit only.
func (l *Log) AppendPlacement(ctx context.Context, tenant, loan string, expect uint64, d policy.Decision,
	agency string, load policy.AgencyLoad, delta int) (uint64, policy.AgencyLoad, error) {
	ref := l.Loan(tenant, loan)
	dm, err := decisionMsg(ref, expect, d)
	if err != nil {
		return 0, load, err
	}
	open := max(load.Open+delta, 0)
	placement := d.PlacementID
	data, err := proto.Marshal(&dunningv1.AgencyCounter{Open: int64(open), Delta: int32(delta), LoanId: loan, PlacementId: placement})
	if err != nil {
		return 0, load, fmt.Errorf("encoding agency counter: %w", err)
	}
	cm := nats.NewMsg(ref.Capacity(agency))
	cm.Data = data
	cm.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(load.Seq, 10))
	for attempt := 0; ; attempt++ {
		id := uuid.NewString()
		cm.Header.Set(headerBatchID, id)
		cm.Header.Set(headerBatchSeq, "1")
		dm.Header.Set(headerBatchID, id)
		dm.Header.Set(headerBatchSeq, "2")
		dm.Header.Set(headerBatchCommit, "1")
		seq, err := l.commitBatch(ctx, cm, dm)
		if errors.Is(err, errBatchesInflight) && attempt < 50 {
			// The stream admits a bounded number of open batches (50 by
			// default, across every process); this one was refused whole:
			// send it again.
			select {
			case <-time.After(time.Duration(attempt+1) * 2 * time.Millisecond):
				continue
			case <-ctx.Done():
				return 0, load, ctx.Err()
			}
		}
		if err != nil {
			return 0, load, err
		}
		// The counter is the batch's first message, the decision its last.
		return seq, policy.AgencyLoad{Open: open, Seq: seq - 1}, nil
	}
}

// maxOpenBatches bounds the atomic batches one process has open at once.
// The server admits 50 per stream (jetstream.limits.batch.
// max_inflight_per_stream) and drops a batch's first message silently
// beyond that, so its commit then fails as incomplete: with a hundred
// handoffs fired at once, every one failed, again on every redelivery.
const maxOpenBatches = 8

const (
	headerBatchID     = "Nats-Batch-Id"
	headerBatchSeq    = "Nats-Batch-Sequence"
	headerBatchCommit = "Nats-Batch-Commit"
)

// JetStream error codes of atomic batches (nats-server errors.json).
const (
	errCodeBatchIncomplete = 10176 // the commit came without the batch's first message: dropped over the inflight limit
	errCodeBatchDuplicate  = 10201 // a message ID of the batch is a duplicate: a retry of a committed batch
	errCodeBatchInflight   = 10210 // too many open batches on the stream
)

var errBatchesInflight = errors.New("too many atomic batches in flight")

// commitBatch publishes msgs as one atomic batch and returns the last
// message's sequence. A refused guard is stage.ErrConflict, as for a single
// write; so is a duplicate message ID (a batch retried after its ack was
// lost: re-reading finds it committed).
func (l *Log) commitBatch(ctx context.Context, msgs ...*nats.Msg) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, l.Timeout)
	defer cancel()
	select {
	case l.batches <- struct{}{}:
		defer func() { <-l.batches }()
	case <-ctx.Done():
		return 0, fmt.Errorf("committing batch to %s: waiting for an open batch: %w", msgs[len(msgs)-1].Subject, ctx.Err())
	}
	for _, m := range msgs[:len(msgs)-1] {
		if err := l.nc.PublishMsg(m); err != nil {
			return 0, fmt.Errorf("publishing batch to %s: %w", m.Subject, err)
		}
	}
	last := msgs[len(msgs)-1]
	resp, err := l.nc.RequestMsgWithContext(ctx, last)
	if err != nil {
		return 0, fmt.Errorf("committing batch to %s: %w", last.Subject, err)
	}
	var ack struct {
		Seq   uint64 `json:"seq"`
		Error *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return 0, fmt.Errorf("committing batch to %s: bad acknowledgement %q: %w", last.Subject, resp.Data, err)
	}
	if e := ack.Error; e != nil {
		err := fmt.Errorf("committing batch to %s: %s (%d)", last.Subject, e.Description, e.ErrCode)
		switch e.ErrCode {
		case int(jetstream.JSErrCodeStreamWrongLastSequence), int(jetstream.JSErrCodeStreamWrongLastSequenceConstant), errCodeBatchDuplicate:
			return 0, fmt.Errorf("%w: %w", stage.ErrConflict, err)
		case errCodeBatchInflight, errCodeBatchIncomplete:
			return 0, fmt.Errorf("%w: %w", errBatchesInflight, err)
		}
		return 0, err
	}
	if ack.Seq == 0 {
		return 0, fmt.Errorf("committing batch to %s: acknowledged without a sequence: %q", last.Subject, resp.Data)
	}
	return ack.Seq, nil
}
