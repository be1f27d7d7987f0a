package ingest

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/opendunning/dunning/pkg/bus"
	"github.com/opendunning/dunning/pkg/codec"
	"github.com/opendunning/dunning/pkg/loanlog"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/stage"
	"github.com/opendunning/dunning/pkg/topology"
	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"
)

// ErrConflictingDuplicate: an installment or payment ID already recorded with
// different content. The first one stands; the lender must fix its data.
var ErrConflictingDuplicate = errors.New("conflicts with the event already recorded under the same identifier")

// ErrCurrencyMismatch: money in another currency than the loan's
// installments. It would never be counted, so it is refused at once.
var ErrCurrencyMismatch = errors.New("is not in the loan's currency")

// ErrUnknownTarget: an outcome for a contact, a release of a hold or a
// cancellation of a plan the loan's log does not hold.
// Outcomes are recorded once per contact and outcome, so this bounds what
// any one loan accumulates: a flood of outcomes for made-up contacts is
// refused at the door instead of growing the log.
var ErrUnknownTarget = errors.New("names nothing this loan has")

// ErrAdminOnly: a release of a deceased or bankruptcy hold by a sender
// without the admin scope (HTTP: 403; NATS: dead-lettered).
var ErrAdminOnly = errors.New("only the admin scope may do this")

// Horizon bounds an installment's due time around now: a due date decades
// old would take a loan from overdue to legal referral in one burst, one
// years ahead is a typo.
type Horizon struct {
	Past, Ahead time.Duration
}

// DefaultHorizon accepts due dates from six years ago to two years ahead.
var DefaultHorizon = Horizon{Past: 6 * 365 * 24 * time.Hour, Ahead: 2 * 365 * 24 * time.Hour}

// Result of recording an event.
type Result struct {
	Subject   string `json:"subject"`
	Sequence  uint64 `json:"sequence"`
	Duplicate bool   `json:"duplicate"`
}

// Ingestor records validated lender events in loan logs.
type Ingestor struct {
	Log     *loanlog.Log
	Metrics *Metrics
	// Now is the clock due dates are checked against (nil: time.Now);
	// Horizon the window they must fall in (zero: DefaultHorizon).
	Now     func() time.Time
	Horizon Horizon
	// Ladder chooses a loan's ladder, whose policy decides whether a
	// promise to pay is taken (nil: every promise is, as in tests of
	// intake alone).
	Ladder func(tenant, product string) policy.Ladder
	// Reject tells the lender why an event it published over NATS was
	// refused (nil: nobody is told). An error from it is transient: the
	// event is redelivered, so no refusal goes untold.
	Reject func(ctx context.Context, r Rejection) error
}

func (in *Ingestor) now() time.Time {
	if in.Now != nil {
		return in.Now()
	}
	return time.Now()
}

// Rejection is what a lender reads on dunning.rejected.<tenant>.<loan>
// about an event it published on NATS and intake refused: which publish
// (the intake sequence its PubAck gave it), the field at fault and why;
// never the refused value.
type Rejection struct {
	Time      time.Time `json:"time"`
	Tenant    string    `json:"tenant_id"`
	Loan      string    `json:"loan_id"`
	IntakeSeq uint64    `json:"intake_seq"`
	Field     string    `json:"field,omitempty"`
	Reason    string    `json:"reason"`
}

// at is when ev was received (Event.Received), or now.
func (in *Ingestor) at(ev Event) time.Time {
	if !ev.Received.IsZero() {
		return ev.Received
	}
	return in.now()
}

// Check validates a lender event (Validate) and checks what depends on the
// time: an installment's due date within the horizon.
func (in *Ingestor) Check(pev *dunningv1.LenderEvent) (Event, error) {
	return in.CheckReceived(pev, time.Time{})
}

// CheckReceived is Check for an event received at received (zero: now),
// which the returned Event carries.
func (in *Ingestor) CheckReceived(pev *dunningv1.LenderEvent, received time.Time) (Event, error) {
	ev, err := Validate(pev)
	ev.Received = received
	if err != nil {
		return ev, err
	}
	if d, ok := ev.Msg.(*dunningv1.InstallmentDue); ok {
		now, h := in.at(ev), in.Horizon
		if h == (Horizon{}) {
			h = DefaultHorizon
		}
		switch due := d.GetDueAt().AsTime(); {
		case due.Before(now.Add(-h.Past)):
			return ev, &FieldError{"installment_due.due_at", fmt.Sprintf("must be at most %d days in the past", int(h.Past.Hours()/24))}
		case due.After(now.Add(h.Ahead)):
			return ev, &FieldError{"installment_due.due_at", fmt.Sprintf("must be at most %d days ahead", int(h.Ahead.Hours()/24))}
		}
	}
	return ev, nil
}

// currency checks that money for a loan is in the loan's currency: that of
// its installments (all in one, since this check admits no other), read
// with one direct get of the last of them rather than the whole log. A
// loan with no installment yet has no currency to check against.
func (in *Ingestor) currency(ctx context.Context, ev Event) error {
	var m *dunningv1.Money
	field := ""
	switch e := ev.Msg.(type) {
	case *dunningv1.RepaymentReceived:
		m, field = e.GetAmount(), "repayment_received.amount.currency"
	case *dunningv1.InstallmentDue:
		m, field = e.GetAmount(), "installment_due.amount.currency"
	case *dunningv1.RepaymentPlan:
		m, field = e.GetInstallments()[0].GetAmount(), "repayment_plan.installments[0].amount.currency"
	case *dunningv1.BalanceUpdated:
		m, field = e.GetOverdue().GetPrincipal(), "balance_updated.overdue.principal.currency"
	case *dunningv1.PromiseToPay:
		m, field = e.GetAmount(), "promise_to_pay.amount.currency"
	default:
		return nil
	}
	last, found, err := in.Log.Last(ctx, in.Log.Loan(ev.Tenant, ev.Loan).Subject(codec.Due.Token, "*"))
	if err != nil {
		return fmt.Errorf("reading the loan's currency: %w", err)
	}
	if !found {
		return nil
	}
	var known dunningv1.InstallmentDue
	if err := proto.Unmarshal(last.Data, &known); err != nil {
		return fmt.Errorf("reading the loan's currency: %w", err)
	}
	if cur := known.GetAmount().GetCurrency(); m.GetCurrency() != cur {
		return fmt.Errorf("%w: %w", ErrCurrencyMismatch, &FieldError{field, "must be the loan's currency, " + cur})
	}
	return nil
}

// knownTarget refuses an outcome whose contact the pipeline never made for
// this loan, a release of a hold the loan never had, a cancellation of a
// plan it never had, and a legal outcome of a loan never referred.
func (in *Ingestor) knownTarget(ctx context.Context, ev Event) error {
	if r, ok := ev.Msg.(*dunningv1.HoldReleased); ok {
		return in.knownHold(ctx, ev, r.GetHoldId())
	}
	if r, ok := ev.Msg.(*dunningv1.PlanCancelled); ok {
		_, found, err := in.Log.Last(ctx, in.Log.Loan(ev.Tenant, ev.Loan).Subject(codec.Plan.Token, r.GetPlanId()))
		if err != nil {
			return fmt.Errorf("reading the loan's plans: %w", err)
		}
		if !found {
			return fmt.Errorf("%w: %w", ErrUnknownTarget, &FieldError{"plan_cancelled.plan_id", "names no plan agreed on this loan"})
		}
		return nil
	}
	if _, ok := ev.Msg.(*dunningv1.LegalOutcome); ok {
		_, found, err := in.Log.Last(ctx, in.Log.Loan(ev.Tenant, ev.Loan).Subject(codec.Legal.Token, "*"))
		if err != nil {
			return fmt.Errorf("reading the loan's legal referral: %w", err)
		}
		if !found {
			return fmt.Errorf("%w: %w", ErrUnknownTarget, &FieldError{"legal_outcome", "the pipeline never referred this loan for legal action"})
		}
		return nil
	}
	o, ok := ev.Msg.(*dunningv1.ContactOutcome)
	if !ok {
		return nil
	}
	entries, _, err := in.Log.Read(ctx, ev.Tenant, ev.Loan)
	if err != nil {
		return fmt.Errorf("reading the loan's contacts: %w", err)
	}
	for _, e := range entries {
		if d, ok := e.Event.(policy.Decision); ok {
			for _, t := range d.Tasks {
				if t.ID == o.GetContactId() {
					return nil
				}
			}
		}
	}
	return fmt.Errorf("%w: %w", ErrUnknownTarget, &FieldError{"contact_outcome.contact_id", "names no contact the pipeline made for this loan"})
}

// knownHold refuses a release of a hold the loan's log does not hold, and
// of a deceased or bankruptcy hold unless the sender is an admin (lifting
// one entered by mistake; the release records who did it).
func (in *Ingestor) knownHold(ctx context.Context, ev Event, id string) error {
	subj := in.Log.Loan(ev.Tenant, ev.Loan).Subject(codec.Hold.Token, id)
	raw, found, err := in.Log.Last(ctx, subj)
	if err != nil {
		return fmt.Errorf("reading the loan's holds: %w", err)
	}
	if !found {
		return fmt.Errorf("%w: %w", ErrUnknownTarget, &FieldError{"hold_released.hold_id", "names no hold placed on this loan"})
	}
	addr, err := topology.ParseLoanSubject(subj)
	if err != nil {
		return err
	}
	placed, err := codec.DecodeStored(addr, raw.Header, raw.Data)
	if err != nil {
		return fmt.Errorf("reading hold %s: %w", id, err)
	}
	if k := placed.(policy.HoldPlaced).Kind; k.AdminRelease() && !ev.Admin {
		return fmt.Errorf("%w: %w", ErrAdminOnly, &FieldError{"hold_released.hold_id",
			fmt.Sprintf("names a %s hold: only the admin scope lifts one (entered by mistake); the release is recorded with who made it", k)})
	}
	return nil
}

// Metrics count lender events by source (http, nats) and result (accepted,
// duplicate, invalid).
type Metrics struct {
	Ingested *prometheus.CounterVec
}

// NewMetrics registers the ingest counters on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{Ingested: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dunning", Name: "lender_events_total",
		Help: "Lender events by source and result (accepted, duplicate, invalid)."}, []string{"source", "result"})}
	reg.MustRegister(m.Ingested)
	return m
}

// Decode parses a LenderEvent body: JSON (protojson, which names an unknown
// or mistyped field) when contentType says so, binary protobuf otherwise.
func Decode(contentType string, body []byte) (*dunningv1.LenderEvent, error) {
	ev := &dunningv1.LenderEvent{}
	if strings.Contains(contentType, "json") {
		if err := protojson.Unmarshal(body, ev); err != nil {
			return nil, &FieldError{"body", "invalid JSON LenderEvent: " + jsonProblem(err)}
		}
		return ev, nil
	}
	if err := proto.Unmarshal(body, ev); err != nil {
		return nil, &FieldError{"body", "invalid protobuf LenderEvent: " + err.Error()}
	}
	return ev, nil
}

var (
	unknownField = regexp.MustCompile(`unknown field "([A-Za-z_][A-Za-z0-9_]{0,63})"`)
	badValue     = regexp.MustCompile(`invalid value for \w+ (?:type|field) ?([A-Za-z_][A-Za-z0-9_.]{0,63})?`)
	position     = regexp.MustCompile(`\(line \d+:\d+\)`)
)

// jsonProblem says what is wrong with a JSON body without repeating any of
// its values (protojson quotes the offending token, which may be personal
// data): the position, and the field's name when it is a plain name.
func jsonProblem(err error) string {
	msg := err.Error()
	where := position.FindString(msg)
	if where != "" {
		where = " " + where
	}
	switch {
	case unknownField.MatchString(msg):
		return unknownField.FindString(msg) + where
	case badValue.MatchString(msg):
		if m := badValue.FindStringSubmatch(msg); m[1] != "" {
			return "invalid value for field " + m[1] + where
		}
		return "invalid value" + where
	case strings.Contains(msg, "unexpected EOF"):
		return "unexpected end of input" + where
	}
	return "not a LenderEvent in JSON" + where
}

// Record stores a validated event once. A repeat with identical content is
// reported as a duplicate, not an error; a repeat with different content is
// ErrConflictingDuplicate.
func (in *Ingestor) Record(ctx context.Context, ev Event) (Result, error) {
	if err := in.currency(ctx, ev); err != nil {
		return Result{}, err
	}
	if err := in.knownTarget(ctx, ev); err != nil {
		return Result{}, err
	}
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(ev.Msg)
	if err != nil {
		return Result{}, fmt.Errorf("encoding event: %w", err)
	}
	subj := ev.Subject(in.Log.Parts)
	seq, err := in.append(ctx, ev, subj, data)
	if errors.Is(err, loanlog.ErrDuplicate) {
		prev, found, gerr := in.Log.Last(ctx, subj)
		if gerr != nil {
			return Result{}, fmt.Errorf("reading recorded event %s: %w", subj, gerr)
		}
		if !found {
			return Result{}, fmt.Errorf("recorded event %s refused as a duplicate but not found", subj)
		}
		old := ev.Msg.ProtoReflect().New().Interface()
		if uerr := proto.Unmarshal(prev.Data, old); uerr != nil || !proto.Equal(old, ev.Msg) {
			return Result{}, fmt.Errorf("%s %s: %w", ev.Kind.Name(), subj, ErrConflictingDuplicate)
		}
		return Result{Subject: subj, Sequence: prev.Seq, Duplicate: true}, nil
	}
	if err != nil {
		return Result{}, err
	}
	return Result{Subject: subj, Sequence: seq}, nil
}

// append writes the event. A promise to pay or a repayment plan is taken
// only if the loan's policy allows it given the loan's log (how many
// promises were broken, one already open, what is overdue): it is checked
// against the log and written guarded by the log's last sequence, so it
// cannot slip in beside one the check did not see.
func (in *Ingestor) append(ctx context.Context, ev Event, subj string, data []byte) (uint64, error) {
	guarded := false
	switch ev.Msg.(type) {
	case *dunningv1.PromiseToPay, *dunningv1.RepaymentPlan:
		guarded = in.Ladder != nil
	}
	if !guarded {
		return in.Log.AppendLender(ctx, subj, data, ev.Principal)
	}
	addr, err := topology.ParseLoanSubject(subj)
	if err != nil {
		return 0, err
	}
	pe, err := codec.Decode(addr, data)
	if err != nil {
		return 0, err
	}
	for range 8 {
		if _, found, err := in.Log.Last(ctx, subj); err != nil {
			return 0, fmt.Errorf("reading %s: %w", subj, err)
		} else if found {
			return 0, fmt.Errorf("%w: %s", loanlog.ErrDuplicate, subj)
		}
		entries, last, err := in.Log.Read(ctx, ev.Tenant, ev.Loan)
		if err != nil {
			return 0, fmt.Errorf("reading the loan's log: %w", err)
		}
		c := policy.Fold(entries)
		l := in.Ladder(ev.Tenant, c.Product())
		var field, reason string
		switch e := pe.(type) {
		case policy.PromiseToPay:
			field, reason = l.CheckPromise(c, e, in.at(ev))
		case policy.RepaymentPlan:
			field, reason = l.CheckPlan(c, e, in.at(ev))
		}
		if field != "" {
			return 0, &FieldError{field, reason}
		}
		seq, err := in.Log.AppendLenderAfter(ctx, ev.Tenant, ev.Loan, subj, data, ev.Principal, last)
		if errors.Is(err, stage.ErrConflict) {
			continue // the loan moved since the check: check again
		}
		return seq, err
	}
	return 0, fmt.Errorf("the loan's log kept moving while %s was checked; retry", subj)
}

// Count records one lender event's result.
func (in *Ingestor) Count(source, result string) {
	if in.Metrics != nil {
		in.Metrics.Ingested.WithLabelValues(source, result).Inc()
	}
}

// Intake is the NATS path: lenders publish a LenderEvent on
// dunning.in.<tenant>.<loan> (binary, or JSON with Content-Type
// application/json), which the server stores on the loan's partition's
// dunning.in.<p>.<tenant>.<loan>. Invalid events are dead-lettered with
// their reason.
func (in *Ingestor) Intake() message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		ref, err := topology.ParseStoredIntake(msg.Metadata.Get(bus.MetaSubject))
		if err != nil {
			in.Count("nats", "invalid")
			return bus.Permanent(err)
		}
		tenant, loan := ref.Tenant, ref.Loan
		// refuse dead-letters the event, once its lender has been told. If
		// telling fails the message is redelivered (counted once, when it
		// is finally refused); should it run out of deliveries, its dead
		// letter still names the refusal's own reason.
		refuse := func(err error) error {
			if in.Reject != nil {
				r := Rejection{Time: in.now().UTC(), Tenant: tenant, Loan: loan, Reason: err.Error()}
				r.IntakeSeq, _ = strconv.ParseUint(msg.Metadata.Get(bus.MetaStreamSeq), 10, 64)
				if fe, ok := AsFieldError(err); ok {
					r.Field = fe.Field
				}
				if rerr := in.Reject(msg.Context(), r); rerr != nil {
					return fmt.Errorf("refused (%s), and telling the lender failed: %w", err.Error(), rerr)
				}
			}
			in.Count("nats", "invalid")
			return bus.Permanent(err)
		}
		pev, err := Decode(msg.Metadata.Get("Content-Type"), msg.Payload)
		if err != nil {
			return refuse(err)
		}
		ev, err := in.CheckReceived(pev, in.received(msg))
		if err != nil {
			return refuse(err)
		}
		if ev.Tenant != tenant || ev.Loan != loan {
			return refuse(&FieldError{"tenant_id", fmt.Sprintf("the subject names %s/%s but the event is for %s/%s", tenant, loan, ev.Tenant, ev.Loan)})
		}
		// The server's mapping puts an event in its loan's partition; one
		// published straight on a stored subject of another partition
		// would pass beside the loan's other events (and the release
		// gate's look for them), so it is refused. So is every event a
		// server maps with another K than the loans streams were
		// provisioned with (its auth.conf written from a keyring that
		// records another): the reason says which to check.
		if want := in.Log.Loan(tenant, loan); ref.P != want.P {
			return refuse(fmt.Errorf("stored on %s, partition %d, but the loan is in partition %d of %d: publish on %s; if it was published there, "+
				"the server maps it to %d partitions or more, another number than the loans streams were provisioned with "+
				"(an operator's fix: dunctl credentials config --partitions %d, then reload the server)", msg.Metadata.Get(bus.MetaSubject),
				ref.P, want.P, in.Log.Parts.Count(), topology.IntakeSubject(tenant, loan), ref.P+1, in.Log.Parts.Count()))
		}
		// Only the tenant's lender identity (and the admin) may publish on
		// its intake subjects: the server's permission is the principal.
		ev.Principal = "nats:lender-" + tenant
		res, err := in.Record(msg.Context(), ev)
		_, invalid := AsFieldError(err)
		switch {
		case errors.Is(err, ErrConflictingDuplicate) || invalid:
			return refuse(err)
		case err != nil:
			return err
		case res.Duplicate:
			in.Count("nats", "duplicate")
		default:
			in.Count("nats", "accepted")
		}
		return nil
	}
}

// received is when the intake stream stored msg (the lender's publish), on
// the intake's clock: now, less how long it waited.
func (in *Ingestor) received(msg *message.Message) time.Time {
	now := in.now()
	stored, err := time.Parse(time.RFC3339Nano, msg.Metadata.Get(bus.MetaStreamTime))
	if err != nil {
		return now
	}
	if waited := time.Since(stored); waited > 0 {
		return now.Add(-waited)
	}
	return now
}

// Register adds the intake handler to a router.
func (in *Ingestor) Register(rt *bus.Router) { rt.Handle(topology.Intake, in.Intake()) }
