// Package stage is the engine every stage service runs, and the table of
// the five stages (table.go). For each trigger it reads the loan's log,
// folds it, lets the stage's policy decide, appends the decision guarded by
// the loan's last sequence, and puts the loan's one timer right. It knows
// the log only through the Log interface: the NATS implementation is
// package loanlog, and an in-memory one (loanlog/memlog) lets the engine be
// tested without a broker. It imports no transport.
package stage

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/opendunning/dunning/pkg/codec"
	"github.com/opendunning/dunning/pkg/policy"
)

// Log is what the engine needs of loans' logs. Every write is conditional:
// it succeeds only while expect is still the loan's last sequence (across
// all of the loan's entries), and otherwise fails with an error wrapping
// ErrConflict and writes nothing.
type Log interface {
	// Read returns a loan's entries in order and its last sequence (0 for
	// an empty log).
	Read(ctx context.Context, tenant, loan string) ([]policy.Entry, uint64, error)
	// AppendDecision appends a decision and returns the new last sequence.
	// A case-closing or step-cancelling decision also removes the loan's
	// pending timer, atomically with its record.
	AppendDecision(ctx context.Context, tenant, loan string, expect uint64, d policy.Decision) (uint64, error)
	// SetTimer stores s as the loan's one pending step, replacing any other.
	SetTimer(ctx context.Context, tenant, loan string, expect uint64, s policy.Step) (uint64, error)
}

// Borrowers is what the release gate needs of borrowers' logs: the
// entries caps per borrower count, across the borrower's loans. Appends are
// conditional as the loan log's are: on the borrower's last sequence
// (across all of the borrower's entries), else ErrConflict and nothing
// written.
type Borrowers interface {
	// ReadBorrower returns a borrower's entries in order and the last
	// sequence (0 for an empty log).
	ReadBorrower(ctx context.Context, tenant, borrower string) ([]policy.BorrowerEntry, uint64, error)
	// AppendBorrower appends one entry and returns the new last sequence.
	AppendBorrower(ctx context.Context, tenant, borrower string, expect uint64, e policy.BorrowerEntry) (uint64, error)
}

// Placements is what handoff and closure need of agencies' capacity: each
// contract's count of open placements, a counter that moves only in the
// same atomic write as the decision that opens or ends a placement, guarded
// by its own last sequence as well as the loan's, so that concurrent
// handoffs to one agency cannot overshoot its capacity.
type Placements interface {
	// Loads returns the counters of a tenant's contracts by agency that a
	// placement of the loan counts against (an agency never written is
	// absent: 0 open, sequence 0), and the share of each contract's
	// capacity they hold (the loan's partition's).
	Loads(ctx context.Context, tenant, loan string) (map[string]policy.AgencyLoad, policy.Share, error)
	// AppendPlacement appends d if the loan's last sequence is still
	// expect and, in the same write, sets agency's counter to
	// load.Open+delta (never below 0) if its last sequence is still
	// load.Seq; otherwise it fails with ErrConflict and writes nothing. It
	// returns the loan's new last sequence and the counter's.
	AppendPlacement(ctx context.Context, tenant, loan string, expect uint64, d policy.Decision, agency string, load policy.AgencyLoad, delta int) (last uint64, counter policy.AgencyLoad, err error)
}

// Turns make one process's placements for a tenant take turns. The
// counters' guard alone keeps capacity (a write from a stale count is
// refused), but a burst of handoffs racing for one counter wastes all but
// one write per round: 150 at once took 10,592 refused writes and 116 s.
// Taking turns inside the process leaves the guard only the races between
// processes (a second handoff replica, intake's closures). Zero value
// ready; nil takes no turns.
type Turns struct{ mu [16]sync.Mutex }

func (t *Turns) take(tenant string) (release func()) {
	if t == nil {
		return func() {}
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(tenant))
	m := &t.mu[h.Sum32()%uint32(len(t.mu))]
	m.Lock()
	return m.Unlock
}

// Codes is the verification index: every released contact's code, unique.
type Codes interface {
	// Claim records code as owner's. It reports false, writing nothing,
	// when the code is already another contact's; claiming a code again
	// for the same owner (a retry) succeeds.
	Claim(ctx context.Context, code string, owner policy.CodeOwner) (bool, error)
}

// ErrConflict means the loan's log moved since it was read: re-read and decide again.
var ErrConflict = errors.New("loan log changed since it was read")

// ErrRejected marks a trigger that can never be decided (a payment in
// another currency, a trigger the stage does not consume): redelivery
// cannot fix it, so its consumer dead-letters it.
var ErrRejected = errors.New("trigger rejected")

// Deps are what the engine needs. They hold no per-loan state.
type Deps struct {
	Log Log
	// Ladder chooses a loan's ladder by tenant and product; a reloaded
	// policy governs the next decision.
	Ladder  func(tenant, product string) policy.Ladder
	Now     func() time.Time
	Metrics *Metrics
	// Borrowers and Codes serve the release gate (nil: caps count per loan
	// only, and codes are not indexed, as in tests of other stages).
	Borrowers Borrowers
	Codes     Codes
	// Placements serves handoff and the closure or recall of a placed
	// case under a policy that counts placements (nil: not counted, as in
	// tests of other stages); Turns orders this process's placements.
	Placements Placements
	Turns      *Turns
	// Facts, if set, tells the release gate whether a lender event for the
	// loan still waits in the NATS intake (package loanlog reads it): no
	// contact is released meanwhile, so none goes out after a payment the
	// lender had already published (nil: not checked, as in tests of the
	// stages alone, which have no intake).
	Facts Facts
}

// Facts knows whether lender events wait to reach a loan's log.
type Facts interface {
	Waiting(ctx context.Context, tenant, loan string) (bool, error)
}

// Metrics are the engine's counters. Labels are bounded: consumer and kind,
// never a tenant or loan.
type Metrics struct {
	Decisions *prometheus.CounterVec
	Conflicts *prometheus.CounterVec
	// Overpayments counts repayments after which the loan's repayments
	// exceed every announced installment (the timeline flags each).
	Overpayments prometheus.Counter
	// Contacts counts contact tasks at the release gate by outcome (held,
	// released, cancelled) and the rule that held or stopped them.
	Contacts *prometheus.CounterVec
	// StepLateness is how long after its due time a fired step reached its
	// stage: the server's schedule tick plus the consumer's backlog.
	StepLateness *prometheus.HistogramVec
}

// NewMetrics registers the engine's counters on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dunning", Name: "decisions_total",
			Help: "Decisions appended to loan logs, by consumer and kind."}, []string{"consumer", "kind"}),
		Conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dunning", Name: "log_conflicts_total",
			Help: "Writes refused because the loan's log moved; each is re-read and decided again."}, []string{"consumer"}),
		Overpayments: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "dunning", Name: "overpayments_total",
			Help: "Repayments after which a loan's repayments exceed every announced installment (flagged in its timeline)."}),
		Contacts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dunning", Name: "contact_tasks_total",
			Help: "Contact tasks at the release gate, by outcome (held, released, cancelled) and the rule that held or stopped them (\"\" when released)."},
			[]string{"outcome", "rule"}),
	}
	m.StepLateness = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "dunning", Name: "step_lateness_seconds",
		Help:    "How long after its due time a fired step reached its stage (each delivery, redeliveries included), by consumer.",
		Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600}}, []string{"consumer"})
	reg.MustRegister(m.Decisions, m.Conflicts, m.Overpayments, m.Contacts, m.StepLateness)
	return m
}

// Handle decides one trigger of one loan: ev, stored at loan-log sequence
// seq (0 when unknown). It returns nil once the outcome is committed (or
// nothing was to be done), an error wrapping ErrRejected for a trigger that
// can never be decided, and any other error for a failure worth retrying.
// Handling the same trigger again (a redelivery) finds its decision already
// in the log and adds nothing.
func (s Stage) Handle(ctx context.Context, d Deps, tenant, loan string, seq uint64, ev policy.Event) error {
	if s.Ignore != nil && s.Ignore(ev) {
		return nil
	}
	if f, ok := ev.(policy.StepFired); ok && d.Metrics != nil && d.Now != nil {
		d.Metrics.StepLateness.WithLabelValues(s.Consumer).Observe(max(d.Now().Sub(f.Step.At), 0).Seconds())
	}
	overpaid := false // as of the read the committed decision was made from
	decide := func(l policy.Ladder, c *policy.Case, now time.Time) ([]policy.Decision, error) {
		if f, ok := ev.(policy.StepFired); ok {
			if f.Step.Stage != s.Policy {
				return nil, fmt.Errorf("%s: step of stage %s", s.Consumer, f.Step.Stage)
			}
			// The server fires a schedule at its time, never before: a
			// step ahead of it was forged to act early.
			if early := f.Step.At.Sub(now); early > StepClockSkew {
				return nil, fmt.Errorf("%w: %s: step %s arrived %s before its time", errEarlyStep, s.Consumer, f.Step.ID, early.Round(time.Millisecond))
			}
			return l.Fired(c, f.Step, now), nil
		}
		if s.Decide == nil {
			return nil, fmt.Errorf("%s: unexpected trigger %T", s.Consumer, ev)
		}
		_, isRepayment := ev.(policy.Repayment)
		overpaid = isRepayment && c.Overpaid().Minor > 0
		return s.Decide(l, c, ev, now)
	}
	err := d.process(ctx, s, tenant, loan, seq, decide)
	if err == nil && overpaid && d.Metrics != nil {
		d.Metrics.Overpayments.Inc()
	}
	return err
}

// errEarlyStep: a step before its time, which the server never fires.
var errEarlyStep = errors.New("forged step: not fired by the loan's timer")

// StepClockSkew is how far a service's clock may run behind the NATS
// server's that fires the schedules: a step seemingly earlier than that
// before its time is refused as forged.
const StepClockSkew = time.Second

// maxAttempts bounds re-reads after conflicting writes in one delivery; the
// message is redelivered after that.
const maxAttempts = 50

// process runs one decision for one loan until it commits without conflict.
// Every write is conditional on the sequence the decision was made from, so
// a payment that lands meanwhile makes this re-read and decide again; a
// cured loan then decides nothing.
func (d Deps) process(ctx context.Context, s Stage, tenant, loan string, trigger uint64,
	decide func(policy.Ladder, *policy.Case, time.Time) ([]policy.Decision, error)) error {
	for attempt := range maxAttempts {
		err := d.once(ctx, s, tenant, loan, trigger, decide)
		if errors.Is(err, errStale) {
			select {
			case <-time.After(time.Duration(attempt+1) * 10 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		if errors.Is(err, errFactsWaiting) {
			// Wait for intake to record it, then decide again from the
			// log that holds it (a payment then cancels the contact).
			// Past maxAttempts (about 20 s) the message is redelivered.
			select {
			case <-time.After(min(time.Duration(attempt+1)*50*time.Millisecond, 500*time.Millisecond)):
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		if errors.Is(err, ErrConflict) {
			if d.Metrics != nil {
				d.Metrics.Conflicts.WithLabelValues(s.Consumer).Inc()
			}
			continue
		}
		return err
	}
	return fmt.Errorf("loan %s/%s: still conflicting after %d attempts", tenant, loan, maxAttempts)
}

// factsWaiting is errFactsWaiting while a lender event for the loan
// waits in the intake (Deps.Facts), nil otherwise.
func (d Deps) factsWaiting(ctx context.Context, tenant, loan string) error {
	if d.Facts == nil {
		return nil
	}
	waiting, err := d.Facts.Waiting(ctx, tenant, loan)
	switch {
	case err != nil:
		return err
	case waiting:
		return errFactsWaiting
	}
	return nil
}

// errFactsWaiting: a contact would be released while a lender event for
// the loan waits in the intake.
var errFactsWaiting = errors.New("a lender event for the loan waits in the intake")

// errStale: the read did not reach the message being handled (it came from
// a lagging replica) and must not be decided on.
var errStale = errors.New("loan log read is behind the trigger")

func (d Deps) once(ctx context.Context, s Stage, tenant, loan string, trigger uint64,
	decide func(policy.Ladder, *policy.Case, time.Time) ([]policy.Decision, error)) error {
	entries, last, err := d.Log.Read(ctx, tenant, loan)
	if err != nil {
		return err
	}
	if last < trigger {
		return errStale
	}
	c := policy.Fold(entries)
	c.Key = policy.LoanKey(tenant, loan)
	now := d.Now()
	l := d.Ladder(tenant, c.Product())
	b, err := d.readBorrower(ctx, s, l, c, tenant, loan)
	if err != nil {
		return err
	}
	// Handoff allocates by free capacity, so it reads the counters before
	// deciding; any other stage only when one of its decisions ends a
	// placement (below): a lender's payment on a placed loan that closes
	// nothing reads no counter and waits for no turn.
	var loads map[string]policy.AgencyLoad
	release := func() {}
	defer func() { release() }()
	if s.Policy == policy.StageHandoff {
		if loads, release, err = d.readLoads(ctx, s, l, c, tenant, loan); err != nil {
			return err
		}
	}
	decs, err := decide(l, c, now)
	if errors.Is(err, errEarlyStep) {
		// A forged step carries the purge of the loan's timer, which the
		// server applied: the timer is gone from the log, whatever the
		// fold makes of the forgery. Put it back, then refuse the step.
		c.Pending = nil
		if err := d.reconcile(ctx, s, l, c, tenant, loan, last, now); err != nil {
			return err
		}
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	// No contact goes out while a lender event for the loan waits to be
	// recorded: it may be the payment that makes the contact moot. Asked
	// before the release's other writes (its borrower's entry would count
	// against the borrower's other loans until it expires, and its codes
	// be claimed for nothing), and again just before its own (below).
	if slices.ContainsFunc(decs, func(dec policy.Decision) bool { return dec.Kind == policy.KindContactReleased }) {
		if err := d.factsWaiting(ctx, tenant, loan); err != nil {
			return err
		}
	}
	if b.ref != "" {
		// The borrower's log first: the release of a capped contact is
		// decided there, where the borrower's other loans race for the
		// same slots. If the loan's own write then fails, the entry stays
		// (it counts, conservatively, until ReservationTTL), and a retry
		// within it reuses the entry (policy.Ladder.BorrowerAppends).
		for _, e := range l.BorrowerAppends(c, decs, b.own, now) {
			e.Loan = loan
			if b.last, err = d.Borrowers.AppendBorrower(ctx, tenant, b.ref, b.last, e); err != nil {
				return err
			}
		}
	}
	// Several decisions (the gate's hold, release and cancellation of one
	// look) are appended one after the other, each guarded by the last: a
	// crash between them leaves the first committed, and the redelivered
	// trigger decides the rest again from the log.
	for _, dec := range decs {
		for i := range dec.Tasks {
			if dec.Tasks[i].Reference == "" {
				dec.Tasks[i].Reference = newReference()
			}
		}
		if dec.Kind == policy.KindContactReleased && d.Codes != nil {
			if err := d.claimCodes(ctx, tenant, loan, dec); err != nil {
				return err
			}
		}
		// Asked again last, just before the release's own write: a
		// payment the intake takes after the question is not seen (the
		// question and the write are in two streams, and the write is
		// guarded by the loan's log only), so the window is kept to that
		// one question.
		if dec.Kind == policy.KindContactReleased {
			if err := d.factsWaiting(ctx, tenant, loan); err != nil {
				return err
			}
		}
		agency, delta := policy.PlacementChange(c, dec)
		if agency != "" && loads == nil {
			if loads, release, err = d.readLoads(ctx, s, l, c, tenant, loan); err != nil {
				return err
			}
		}
		if agency != "" && loads != nil {
			var load policy.AgencyLoad
			if last, load, err = d.appendPlacement(ctx, s, tenant, loan, last, dec, agency, loads[agency], delta); err != nil {
				return err
			}
			loads[agency] = load
		} else if last, err = d.append(ctx, s, tenant, loan, last, dec); err != nil {
			return err
		}
		c.Apply(policy.Entry{Seq: last, Event: dec})
	}
	return d.reconcile(ctx, s, l, c, tenant, loan, last, now)
}

// readLoads reads the tenant's agency counters when the stage counts
// placements (its row's Placements), the policy keeps a registry, and the
// stage may open or end a placement: handoff, or a decision on a case that
// is placed. nil: not read, and the decision moves no counter. While they
// are read and until the decisions are written, this process's other
// placements for the tenant wait their turn (release).
func (d Deps) readLoads(ctx context.Context, s Stage, l policy.Ladder, c *policy.Case, tenant, loan string) (map[string]policy.AgencyLoad, func(), error) {
	if !s.Placements || d.Placements == nil || !l.Policy.Counted() || (s.Policy != policy.StageHandoff && c.PlacementID == "") {
		return nil, func() {}, nil
	}
	release := d.Turns.take(tenant)
	loads, share, err := d.Placements.Loads(ctx, tenant, loan)
	if err != nil {
		release()
		return nil, nil, err
	}
	c.Share = share
	if loads == nil {
		loads = map[string]policy.AgencyLoad{}
	}
	c.AgencyLoad = make(map[string]int, len(loads))
	for a, l := range loads {
		c.AgencyLoad[a] = l.Open
	}
	return loads, release, nil
}

// borrowerLog is what the engine read of a loan's borrower's log: the
// borrower's key ("" when the log is not read), this loan's own entries,
// and the last sequence the appends are guarded by. The other loans'
// entries go into the case (Case.Borrower), where the caps count them.
type borrowerLog struct {
	ref  string
	own  []policy.BorrowerEntry
	last uint64
}

// readBorrower reads the borrower's log when the stage keeps it (the
// release gate), the loan names its borrower and the policy caps a channel
// per borrower; otherwise it reads nothing.
func (d Deps) readBorrower(ctx context.Context, s Stage, l policy.Ladder, c *policy.Case, tenant, loan string) (borrowerLog, error) {
	ref := c.BorrowerRef()
	if !s.Borrower || d.Borrowers == nil || ref == "" || !l.BorrowerCapped() {
		return borrowerLog{}, nil
	}
	all, last, err := d.Borrowers.ReadBorrower(ctx, tenant, ref)
	if err != nil {
		return borrowerLog{}, err
	}
	b := borrowerLog{ref: ref, last: last}
	for _, e := range all {
		if e.Loan == loan {
			b.own = append(b.own, e)
		} else {
			c.Borrower = append(c.Borrower, e)
		}
	}
	return b, nil
}

// maxCodeDraws bounds new codes drawn for one task when its code is taken:
// with 31^10 codes, a second collision in a row means something is wrong.
const maxCodeDraws = 5

// claimCodes indexes each released task's verification code before the
// release is recorded; a code already another contact's is replaced by a
// new one (the released record carries the code the borrower reads).
func (d Deps) claimCodes(ctx context.Context, tenant, loan string, dec policy.Decision) error {
	// The tasks' claims go out together: one round trip for an
	// escalation's four channels, not four.
	errs := make([]error, len(dec.Tasks))
	var wg sync.WaitGroup
	for i := range dec.Tasks {
		wg.Go(func() { errs[i] = d.claimCode(ctx, tenant, loan, dec.Ctx.Case, &dec.Tasks[i]) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// claimCode claims one task's code, drawing a new one while it is taken.
func (d Deps) claimCode(ctx context.Context, tenant, loan string, n int, t *policy.ContactTask) error {
	owner := policy.CodeOwner{Tenant: tenant, Loan: loan, Task: t.ID, Case: n}
	for draw := 0; ; draw++ {
		ok, err := d.Codes.Claim(ctx, t.Reference, owner)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if draw == maxCodeDraws {
			return fmt.Errorf("verification codes: %d codes in a row already taken for %s/%s %s", maxCodeDraws+1, tenant, loan, t.ID)
		}
		t.Reference = newReference()
	}
}

// reconcile puts the loan's timer right: the step the case needs next, or
// none (a cancellation).
func (d Deps) reconcile(ctx context.Context, s Stage, l policy.Ladder, c *policy.Case, tenant, loan string, last uint64, now time.Time) error {
	step, cancel := l.Reconcile(c, now)
	if cancel != nil {
		if _, err := d.append(ctx, s, tenant, loan, last, *cancel); err != nil {
			return err
		}
	}
	if step != nil {
		if _, err := d.Log.SetTimer(ctx, tenant, loan, last, *step); err != nil {
			return err
		}
	}
	return nil
}

func (d Deps) append(ctx context.Context, s Stage, tenant, loan string, last uint64, dec policy.Decision) (uint64, error) {
	if err := s.mayWrite(dec); err != nil {
		return 0, err
	}
	seq, err := d.Log.AppendDecision(ctx, tenant, loan, last, dec)
	if err != nil {
		return 0, err
	}
	d.count(s, dec)
	return seq, nil
}

// appendPlacement appends a decision that opens or ends a placement,
// moving the agency's counter in the same write.
func (d Deps) appendPlacement(ctx context.Context, s Stage, tenant, loan string, last uint64, dec policy.Decision,
	agency string, load policy.AgencyLoad, delta int) (uint64, policy.AgencyLoad, error) {
	if err := s.mayWrite(dec); err != nil {
		return 0, load, err
	}
	seq, load, err := d.Placements.AppendPlacement(ctx, tenant, loan, last, dec, agency, load, delta)
	if err != nil {
		return 0, load, err
	}
	d.count(s, dec)
	return seq, load, nil
}

// mayWrite: a stage writes only the kinds its row declares. The same list
// is its NATS permission, so a decision outside it would be refused there
// too.
func (s Stage) mayWrite(dec policy.Decision) error {
	k, err := codec.Of(dec)
	if err != nil {
		return err
	}
	if !slices.Contains(s.Writes, k) {
		return fmt.Errorf("%w: %s may not write %s decisions (stage table)", ErrRejected, s.Consumer, k.Token)
	}
	return nil
}

func (d Deps) count(s Stage, dec policy.Decision) {
	if d.Metrics == nil {
		return
	}
	d.Metrics.Decisions.WithLabelValues(s.Consumer, dec.Kind.String()).Inc()
	switch dec.Kind {
	case policy.KindContactHeld:
		d.Metrics.Contacts.WithLabelValues("held", dec.Rule).Add(float64(len(dec.Tasks)))
	case policy.KindContactReleased:
		d.Metrics.Contacts.WithLabelValues("released", "").Add(float64(len(dec.Tasks)))
	case policy.KindContactCancelled:
		d.Metrics.Contacts.WithLabelValues("cancelled", dec.Rule).Add(float64(len(dec.Tasks)))
	case policy.KindContactSuppressed:
		d.Metrics.Contacts.WithLabelValues("suppressed", dec.Rule).Add(float64(len(dec.Tasks)))
	}
}

// referenceAlphabet leaves out look-alikes (0/O, 1/I/L) so a borrower can
// read a code out over the phone.
const referenceAlphabet = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"

// newReference returns a random 10-character verification code (49.5 bits).
// It need not be deterministic: a contact exists only once it is committed,
// and the committed event holds its code.
func newReference() string {
	out := make([]byte, 0, ReferenceLength)
	b := make([]byte, 16)
	for len(out) < ReferenceLength {
		_, _ = rand.Read(b) // never fails: crypto/rand crashes the program rather than return an error
		for _, x := range b {
			// Bytes from 248 up are dropped, so that each symbol is
			// equally likely (248 = 8 x 31): a code carries its full
			// 10 x log2(31) = 49.5 bits.
			if x < 248 && len(out) < ReferenceLength {
				out = append(out, referenceAlphabet[int(x)%len(referenceAlphabet)])
			}
		}
	}
	return string(out)
}

// ReferenceLength is the length of a verification code.
const ReferenceLength = 10

// ValidReference reports whether s could be a verification code: its
// length, from the code alphabet (upper case).
func ValidReference(s string) bool {
	if len(s) != ReferenceLength {
		return false
	}
	for i := range len(s) {
		if !strings.ContainsRune(referenceAlphabet, rune(s[i])) {
			return false
		}
	}
	return true
}
