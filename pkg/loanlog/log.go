// Package loanlog is the NATS implementation of the engine's stage.Log: it
// reads and writes a loan's log, the subjects dunning.loan.<p>.<tenant>.<loan>.>
// of its partition's stream. The log is the loan's state
// (folded on every decision), its timeline, and its lock: a writer that
// decided from the log as of sequence S appends only if S is still the loan's
// last sequence, so a payment racing a step makes the later writer re-read.
package loanlog

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/opendunning/dunning/pkg/codec"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/stage"
	"github.com/opendunning/dunning/pkg/topology"
)

var _ stage.Log = (*Log)(nil)

// ErrDuplicate means an identified lender event (installment, payment,
// settlement) is already in the log.
var ErrDuplicate = errors.New("event already recorded")

// Raw is one stored message of a loan's log.
type Raw struct {
	Seq     uint64
	Subject string
	Time    time.Time
	Header  nats.Header
	Data    []byte
}

// Log reads and writes loans' logs in the loans streams.
type Log struct {
	nc *nats.Conn
	js jetstream.JetStream
	// Timeout bounds one read of a loan's log.
	Timeout time.Duration
	// Parts is how many partitions the loans are spread over (the zero
	// value: one): each loan is read and written in its own.
	Parts topology.Partitions

	// Replies to every read arrive on one wildcard subscription and are
	// routed by their inbox's last token: a subscription per read cost a
	// SUB, an UNSUB and a goroutine each, all under the connection's lock.
	muxOnce   sync.Once
	muxErr    error
	muxPrefix string
	muxMu     sync.Mutex
	muxNext   uint64
	waiting   map[string]func(*nats.Msg)

	// batches bounds this process's open atomic batches (placements.go).
	batches chan struct{}
}

// replies registers h for the replies to one request and returns the
// subject to send them to, and a function that stops routing them.
func (l *Log) replies(h func(*nats.Msg)) (string, func(), error) {
	l.muxOnce.Do(func() {
		l.muxPrefix = l.nc.NewInbox() + "."
		l.waiting = map[string]func(*nats.Msg){}
		sub, err := l.nc.Subscribe(l.muxPrefix+"*", func(m *nats.Msg) {
			l.muxMu.Lock()
			h := l.waiting[m.Subject[len(l.muxPrefix):]]
			l.muxMu.Unlock()
			if h != nil {
				h(m)
			}
		})
		if err == nil {
			// Replies are small and handled quickly; never drop them.
			err = sub.SetPendingLimits(-1, -1)
		}
		l.muxErr = err
	})
	if l.muxErr != nil {
		return "", nil, l.muxErr
	}
	l.muxMu.Lock()
	l.muxNext++
	token := strconv.FormatUint(l.muxNext, 36)
	l.waiting[token] = h
	l.muxMu.Unlock()
	return l.muxPrefix + token, func() {
		l.muxMu.Lock()
		delete(l.waiting, token)
		l.muxMu.Unlock()
	}, nil
}

// New returns a Log over a connection.
func New(nc *nats.Conn, js jetstream.JetStream) *Log {
	return &Log{nc: nc, js: js, Timeout: 10 * time.Second, batches: make(chan struct{}, maxOpenBatches)}
}

// Loan is a tenant's loan in its partition: where its log is.
func (l *Log) Loan(tenant, loan string) topology.LoanRef { return l.Parts.Loan(tenant, loan) }

// namespace for deterministic message identifiers.
var namespace = uuid.MustParse("6f1c2b9e-5d0a-4c43-9a57-2f3e8f1d7c10")

// MsgID is a deterministic message ID: the same logical write always carries
// the same Nats-Msg-Id, so a retried publish is deduplicated by the server.
func MsgID(parts ...string) string {
	s := ""
	for _, p := range parts {
		s += p + "\x00"
	}
	return uuid.NewSHA1(namespace, []byte(s)).String()
}

// ReadRaw returns every stored message of one loan in order, and the loan's
// last sequence (0 when the log is empty). Every message of a loan has a
// subject of its own, so one "last message per subject" direct get
// (multi_last) returns the whole log from the stream's subject index: the
// cost grows with the loan's log, not with the stream. Any replica can
// serve it; a stale answer only makes the conditional write that follows
// fail and the caller read again.
func (l *Log) ReadRaw(ctx context.Context, tenant, loan string) ([]Raw, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, l.Timeout)
	defer cancel()
	ref := l.Loan(tenant, loan)
	out, _, err := l.batch(ctx, ref.Stream(), map[string]any{"multi_last": []string{ref.Log()}, "batch": maxLog}, maxLog)
	if errors.Is(err, errTooMany) || (err == nil && len(out) >= maxLog) {
		// A log longer than one read: page through it in stream order.
		out, err = l.pages(ctx, ref)
	}
	if err != nil {
		return nil, 0, err
	}
	slices.SortFunc(out, func(a, b Raw) int { return cmp.Compare(a.Seq, b.Seq) })
	if len(out) == 0 {
		return nil, 0, nil
	}
	return out, out[len(out)-1].Seq, nil
}

// maxLog bounds a loan's log in one read: nats-server answers a multi_last
// request for at most 1024 subjects (413 Too Many Results beyond). A loan
// that outgrows it (years of daily entry deferrals, a flood of writes) is
// read in pages instead, so no loan is ever frozen by its length.
const maxLog = 1024

// errTooMany: the server refused a multi_last read for its number of subjects.
var errTooMany = errors.New("too many subjects for one read")

// pages reads a loan's log in stream order, maxLog messages a request
// ("next by subject" from a sequence). Slower than multi_last, which
// answers from the subject index: the server walks the stream from each
// page's first sequence. Every message of a loan has a subject of its own
// (the timer's schedule replaces the last), so both reads return the same.
func (l *Log) pages(ctx context.Context, ref topology.LoanRef) ([]Raw, error) {
	var out []Raw
	next := uint64(1)
	for {
		page, pending, err := l.batch(ctx, ref.Stream(), map[string]any{"seq": next, "next_by_subj": ref.Log(), "batch": maxLog}, maxLog)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if len(page) == 0 || pending == 0 {
			return out, nil
		}
		next = page[len(page)-1].Seq + 1
	}
}

// batch sends one direct-get request to a stream and collects its replies
// until the end of the batch, or n messages.
func (l *Log) batch(ctx context.Context, stream string, request map[string]any, n int) ([]Raw, uint64, error) {
	var (
		mu      sync.Mutex
		out     []Raw
		pending uint64
		failure error
		done    = make(chan struct{})
		once    sync.Once
	)
	finish := func(err error) {
		once.Do(func() {
			failure = err
			close(done)
		})
	}
	inbox, stop, err := l.replies(func(m *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		if status := m.Header.Get("Status"); len(m.Data) == 0 && status != "" {
			switch status {
			case "204", "404": // end of batch; no message for the loan
				finish(nil)
			case "413":
				finish(fmt.Errorf("reading loan log: %w (%s)", errTooMany, m.Header.Get("Description")))
			default:
				finish(fmt.Errorf("reading loan log: status %s %s", status, m.Header.Get("Description")))
			}
			return
		}
		seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
		if err != nil {
			finish(fmt.Errorf("reading loan log: bad sequence header: %w", err))
			return
		}
		t, _ := time.Parse(time.RFC3339Nano, m.Header.Get(jetstream.TimeStampHeaer))
		out = append(out, Raw{Seq: seq, Subject: m.Header.Get(jetstream.SubjectHeader), Time: t, Header: m.Header, Data: m.Data})
		pending, _ = strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
		if len(out) == n {
			finish(nil)
		}
	})
	if err != nil {
		return nil, 0, fmt.Errorf("reading loan log: %w", err)
	}
	defer stop()
	req, _ := json.Marshal(request)
	if err := l.nc.PublishRequest("$JS.API.DIRECT.GET."+stream, inbox, req); err != nil {
		return nil, 0, fmt.Errorf("reading loan log: %w", err)
	}
	select {
	case <-done:
	case <-ctx.Done():
		return nil, 0, fmt.Errorf("reading loan log: %w", ctx.Err())
	}
	mu.Lock()
	defer mu.Unlock()
	return out, pending, failure
}

// Read returns a loan's log decoded into domain entries, and its last
// sequence. Entries that cannot be decoded, or that carry headers their
// kind never has (codec.CheckHeaders), are skipped here (their consumer
// dead-letters them) but still count for the last sequence.
func (l *Log) Read(ctx context.Context, tenant, loan string) ([]policy.Entry, uint64, error) {
	raws, last, err := l.ReadRaw(ctx, tenant, loan)
	if err != nil {
		return nil, 0, err
	}
	entries := make([]policy.Entry, 0, len(raws))
	for _, r := range raws {
		addr, err := topology.ParseLoanSubject(r.Subject)
		if err != nil {
			continue
		}
		ev, err := codec.DecodeStored(addr, r.Header, r.Data)
		if err != nil {
			continue
		}
		entries = append(entries, policy.Entry{Seq: r.Seq, Time: r.Time, Event: ev})
	}
	return entries, last, nil
}

// guard makes a publish conditional on the loan's last sequence.
func guard(m *nats.Msg, ref topology.LoanRef, expect uint64) {
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(expect, 10))
	m.Header.Set(jetstream.ExpectedLastSubjSeqSubjHeader, ref.Log())
}

// publish sends a conditional write.
//
// The loan log's writes carry no Nats-Msg-Id: each is guarded (the loan's
// last sequence, or an empty subject), so a retry after a lost ack is
// refused by the guard and the caller re-reads and finds its write. An ID
// would only add an entry to the stream's duplicate window for each of a
// loan's writes, which the server keeps two minutes (memory and a lookup
// per write: issue 13, less work per loan).
func (l *Log) publish(ctx context.Context, m *nats.Msg) (*jetstream.PubAck, error) {
	ack, err := l.js.PublishMsg(ctx, m)
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
			return nil, fmt.Errorf("%w: %w", stage.ErrConflict, err)
		}
		return nil, fmt.Errorf("publishing to %s: %w", m.Subject, err)
	}
	return ack, nil
}

func seqOf(ack *jetstream.PubAck, err error) (uint64, error) {
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

// AppendDecision appends a decision if the loan's last sequence is still
// expect. A case-closing or step-cancelling decision also cancels the
// loan's pending timer in the same write. It returns the new last sequence.
func (l *Log) AppendDecision(ctx context.Context, tenant, loan string, expect uint64, d policy.Decision) (uint64, error) {
	m, err := decisionMsg(l.Loan(tenant, loan), expect, d)
	if err != nil {
		return 0, err
	}
	return seqOf(l.publish(ctx, m))
}

// decisionMsg is a decision's guarded write.
func decisionMsg(ref topology.LoanRef, expect uint64, d policy.Decision) (*nats.Msg, error) {
	k, pm, err := codec.Encode(ref.Tenant, ref.Loan, d)
	if err != nil {
		return nil, err
	}
	data, err := proto.Marshal(pm)
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", d.Kind, err)
	}
	m := nats.NewMsg(ref.Decision(k.Token, expect))
	m.Data = data
	guard(m, ref, expect)
	if d.Kind == policy.KindCaseClosed || d.Kind == policy.KindStepCancelled {
		// Atomically purge the schedule with recording why.
		m.Header.Set(jetstream.SchedulerHeader, ref.Timer())
		m.Header.Set(jetstream.ScheduleNextHeader, "purge")
	}
	return m, nil
}

// AppendSeal appends a checkpoint of the loan's hash chain (package
// packet) if the loan's last sequence is still expect: the guard is what
// makes the seal hold every entry before it.
func (l *Log) AppendSeal(ctx context.Context, tenant, loan string, expect uint64, s policy.Sealed) (uint64, error) {
	k, pm, err := codec.Encode(tenant, loan, s)
	if err != nil {
		return 0, err
	}
	data, err := proto.Marshal(pm)
	if err != nil {
		return 0, fmt.Errorf("encoding the seal: %w", err)
	}
	ref := l.Loan(tenant, loan)
	m := nats.NewMsg(ref.Decision(k.Token, expect))
	m.Data = data
	guard(m, ref, expect)
	return seqOf(l.publish(ctx, m))
}

// SetTimer stores step as the loan's one pending schedule (replacing any
// other) if the loan's last sequence is still expect.
func (l *Log) SetTimer(ctx context.Context, tenant, loan string, expect uint64, s policy.Step) (uint64, error) {
	st, err := stage.Of(s.Stage)
	if err != nil {
		return 0, err
	}
	data, err := proto.Marshal(codec.StepToProto(s))
	if err != nil {
		return 0, fmt.Errorf("encoding step: %w", err)
	}
	ref := l.Loan(tenant, loan)
	m := nats.NewMsg(ref.Timer())
	m.Data = data
	// The raw header keeps sub-second precision; WithScheduleAt drops it and
	// could fire up to a second early, which matters under an accelerated day.
	m.Header.Set(jetstream.ScheduleHeader, "@at "+s.At.UTC().Format(time.RFC3339Nano))
	m.Header.Set(jetstream.ScheduleTargetHeader, ref.Step(st.Step, expect))
	guard(m, ref, expect)
	return seqOf(l.publish(ctx, m))
}

// HeaderPrincipal records who sent a lender event.
const HeaderPrincipal = "Dunning-Principal"

// AppendLender records an identified lender event exactly once: the subject
// carries the installment or payment ID and the write requires the subject to
// be empty, so a repeat at any distance in time is refused with ErrDuplicate.
// principal, when set, is recorded with it (HeaderPrincipal).
func (l *Log) AppendLender(ctx context.Context, subject string, data []byte, principal string) (uint64, error) {
	m := nats.NewMsg(subject)
	m.Data = data
	if principal != "" {
		m.Header.Set(HeaderPrincipal, principal)
	}
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
	ack, err := l.publish(ctx, m)
	switch {
	case errors.Is(err, stage.ErrConflict):
		return 0, fmt.Errorf("%w: %s", ErrDuplicate, subject)
	case err != nil:
		return 0, err
	}
	return ack.Sequence, nil
}

// AppendLenderAfter records a lender event as AppendLender does, and only
// while expect is still the loan's last sequence: an event whose
// acceptance depends on the loan's log (a promise to pay, refused after
// too many broken ones) is checked against the log it is written after.
// A refusal (the loan moved, or the subject is taken) is stage.ErrConflict:
// re-read, and check again.
func (l *Log) AppendLenderAfter(ctx context.Context, tenant, loan, subject string, data []byte, principal string, expect uint64) (uint64, error) {
	m := nats.NewMsg(subject)
	m.Data = data
	if principal != "" {
		m.Header.Set(HeaderPrincipal, principal)
	}
	m.Header.Set(jetstream.MsgIDHeader, MsgID(subject))
	guard(m, l.Loan(tenant, loan), expect)
	ack, err := l.publish(ctx, m)
	switch {
	case err != nil:
		return 0, err
	case ack.Duplicate:
		return ack.Sequence, fmt.Errorf("%w: %s", ErrDuplicate, subject)
	}
	return ack.Sequence, nil
}

// Last returns the stored message on one subject of a loan's or a
// borrower's log (or the last of a filter with wildcards, within one
// partition); found is false when the subject holds none. One direct get,
// as reads of the log are.
func (l *Log) Last(ctx context.Context, subject string) (msg Raw, found bool, err error) {
	stream := topology.StreamOf(subject)
	if stream == "" {
		return Raw{}, false, fmt.Errorf("reading %q: not a subject of a loans stream", subject)
	}
	ctx, cancel := context.WithTimeout(ctx, l.Timeout)
	defer cancel()
	out, _, err := l.batch(ctx, stream, map[string]any{"last_by_subj": subject}, 1)
	if err != nil || len(out) == 0 {
		return Raw{}, false, err
	}
	return out[0], true, nil
}
