// Package outcome records what agencies report on the accounts placed with
// them (dunningv1.AgencyOutcome: a contact, a promise, a payment, a
// dispute, the account returned). An agency publishes to its own subjects
// (dunning.outcome.<agency>.<tenant>.<loan>); the recorder checks each
// report against the loan's log — the placement must be the loan's, this
// agency's, and still out — and records it there once, by the agency's
// identifier of the report. Anything else is refused with the reason and
// dead-lettered: an outcome for an unknown, another agency's or a
// recalled placement changes nothing.
package outcome

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/opendunning/dunning/pkg/bus"
	"github.com/opendunning/dunning/pkg/codec"
	"github.com/opendunning/dunning/pkg/feed"
	"github.com/opendunning/dunning/pkg/ingest"
	"github.com/opendunning/dunning/pkg/loanlog"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/topology"
	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"
)

// Log is what the recorder needs of the loans' logs.
type Log interface {
	Read(ctx context.Context, tenant, loan string) ([]policy.Entry, uint64, error)
	AppendLender(ctx context.Context, subject string, data []byte, principal string) (uint64, error)
	// Loan is where a tenant's loan's log is.
	Loan(tenant, loan string) topology.LoanRef
}

// Recorder validates and records agencies' outcomes.
type Recorder struct {
	Log Log
	// Lender records what an outcome means on the borrower's side, as the
	// lender's own event would: a promise the agency took is the
	// borrower's promise (the policy's checks and all), a dispute the
	// agency heard is a dispute hold (which recalls the placement).
	Lender *ingest.Ingestor
	// Feed tells the agency, on its own feed, why a report was refused
	// (nil: nobody is told). Telling it failing is transient: the report
	// is redelivered, so no refusal goes untold.
	Feed *feed.Feed
}

// Consumer is the recorder's durable consumer: every agency's reports.
var Consumer = topology.ConsumerSpec{Name: "agency-outcomes", Stream: topology.StreamOutcomes, Filters: []string{topology.OutcomeSubject("*", "*", "*")}}

// Register adds the recorder to a router.
func (r *Recorder) Register(rt *bus.Router) { rt.Handle(Consumer, r.Handle) }

// Handle records one report, or refuses it for good, telling the agency.
func (r *Recorder) Handle(msg *message.Message) error {
	agency, tenant, loan, err := topology.ParseOutcomeSubject(msg.Metadata.Get(bus.MetaSubject))
	if err != nil {
		return bus.Permanent(err)
	}
	var m dunningv1.AgencyOutcome
	err = r.record(msg, agency, tenant, loan, &m)
	if !bus.IsPermanent(err) || r.Feed == nil {
		return err
	}
	seq, _ := strconv.ParseUint(msg.Metadata.Get(bus.MetaStreamSeq), 10, 64)
	placement := m.GetPlacementId()
	if !policy.ValidID(placement) {
		placement = "unknown"
	}
	rej := &dunningv1.AgencyRejection{ReportSeq: seq, OutcomeId: m.GetOutcomeId(), PlacementId: m.GetPlacementId(), TenantId: tenant, LoanId: loan,
		Reason: err.Error(), RejectedAt: timestamppb.Now()}
	ctx, cancel := context.WithTimeout(msg.Context(), 10*time.Second)
	defer cancel()
	if terr := r.Feed.Publish(ctx, agency, placement, topology.FeedRejected(seq),
		&dunningv1.AgencyFeed{Event: &dunningv1.AgencyFeed_Rejected{Rejected: rej}}); terr != nil && !bus.IsPermanent(terr) {
		return fmt.Errorf("telling agency %s its report was refused: %w", agency, terr)
	}
	return err
}

// record checks one report into m and records it.
func (r *Recorder) record(msg *message.Message, agency, tenant, loan string, m *dunningv1.AgencyOutcome) error {
	if err := proto.Unmarshal(msg.Payload, m); err != nil {
		return bus.Permanent(fmt.Errorf("not an agency outcome: %w", err))
	}
	if err := Validate(m, tenant, loan); err != nil {
		return bus.Permanent(err)
	}
	ctx, cancel := context.WithTimeout(msg.Context(), 10*time.Second)
	defer cancel()
	entries, _, err := r.Log.Read(ctx, tenant, loan)
	if err != nil {
		return err
	}
	if err := Placed(entries, agency, m.GetPlacementId()); err != nil {
		return bus.Permanent(err)
	}
	m.AgencyId = agency
	data, err := proto.Marshal(m)
	if err != nil {
		return bus.Permanent(err)
	}
	_, err = r.Log.AppendLender(ctx, r.Log.Loan(tenant, loan).Subject(codec.AgencyOutcome.Token, m.GetOutcomeId()), data, "nats:agency-"+agency)
	if err != nil && !errors.Is(err, loanlog.ErrDuplicate) { // a duplicate was recorded before
		return err
	}
	return r.onBorrowersSide(ctx, agency, m)
}

// onBorrowersSide records, after the report itself, what a promise, a plan
// or a dispute means for the borrower: the lender's event of the same kind,
// through the lender's own checks, named after the report so a redelivery
// records it once. Refused (a third promise after two broken, one already
// open), the report stays recorded and the refusal is dead-lettered with
// its reason.
func (r *Recorder) onBorrowersSide(ctx context.Context, agency string, m *dunningv1.AgencyOutcome) error {
	if r.Lender == nil {
		return nil
	}
	id := policy.AgencyPlanPrefix + m.GetOutcomeId()
	var ev *dunningv1.LenderEvent
	switch o := m.GetOutcome().(type) {
	case *dunningv1.AgencyOutcome_Promise:
		ev = &dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_PromiseToPay{PromiseToPay: &dunningv1.PromiseToPay{
			TenantId: m.GetTenantId(), LoanId: m.GetLoanId(), PromiseId: id, Amount: o.Promise.GetAmount(),
			PromisedFor: o.Promise.GetPromisedFor(), ReceivedAt: m.GetOccurredAt()}}}
	case *dunningv1.AgencyOutcome_Plan:
		ev = &dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_RepaymentPlan{RepaymentPlan: &dunningv1.RepaymentPlan{
			TenantId: m.GetTenantId(), LoanId: m.GetLoanId(), PlanId: policy.AgencyPlanPrefix + m.GetOutcomeId(),
			Installments: o.Plan.GetInstallments(), ReceivedAt: m.GetOccurredAt()}}}
	case *dunningv1.AgencyOutcome_Dispute:
		ev = &dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_HoldPlaced{HoldPlaced: &dunningv1.HoldPlaced{
			TenantId: m.GetTenantId(), LoanId: m.GetLoanId(), HoldId: id, Kind: dunningv1.HoldKind_HOLD_KIND_DISPUTE,
			ReceivedAt: m.GetOccurredAt()}}}
	default:
		return nil
	}
	le, err := r.Lender.Check(ev)
	if err == nil {
		le.Principal = "nats:agency-" + agency
		_, err = r.Lender.Record(ctx, le)
	}
	var fe *ingest.FieldError
	if errors.As(err, &fe) || errors.Is(err, ingest.ErrConflictingDuplicate) {
		return bus.Permanent(fmt.Errorf("outcome %s recorded, but its %s refused: %w", m.GetOutcomeId(), le.Kind.Name(), err))
	}
	return err
}

// Validate checks a report's fields, naming the first at fault.
func Validate(m *dunningv1.AgencyOutcome, tenant, loan string) error {
	switch {
	case m.GetTenantId() != tenant || m.GetLoanId() != loan:
		return errors.New("tenant_id and loan_id: must be the subject's")
	case !policy.ValidID(m.GetOutcomeId()):
		return errors.New("outcome_id: 1-64 characters of A-Z, a-z, 0-9, '-' or '_'")
	case m.GetPlacementId() == "" || len(m.GetPlacementId()) > 64:
		return errors.New("placement_id: required, as the feed named it")
	case m.GetOccurredAt() == nil || m.GetOccurredAt().CheckValid() != nil:
		return errors.New("occurred_at: required, a valid timestamp")
	}
	money := func(field string, a *dunningv1.Money) error {
		if a.GetMinorUnits() <= 0 || !policy.ValidCurrency(a.GetCurrency()) {
			return fmt.Errorf("%s: a positive amount in an ISO 4217 currency", field)
		}
		return nil
	}
	switch o := m.GetOutcome().(type) {
	case *dunningv1.AgencyOutcome_Contacted:
		if o.Contacted.GetChannel() == dunningv1.Channel_CHANNEL_UNSPECIFIED {
			return errors.New("contacted.channel: required")
		}
	case *dunningv1.AgencyOutcome_Promise:
		if err := money("promise.amount", o.Promise.GetAmount()); err != nil {
			return err
		}
		if o.Promise.GetPromisedFor() == nil || o.Promise.GetPromisedFor().CheckValid() != nil {
			return errors.New("promise.promised_for: required, a valid timestamp")
		}
	case *dunningv1.AgencyOutcome_Payment:
		return money("payment.amount", o.Payment.GetAmount())
	case *dunningv1.AgencyOutcome_Plan:
		if len(o.Plan.GetInstallments()) == 0 {
			return errors.New("plan.installments: at least one")
		}
		for i, in := range o.Plan.GetInstallments() {
			if err := money(fmt.Sprintf("plan.installments[%d].amount", i), in.GetAmount()); err != nil {
				return err
			}
			if in.GetDueAt() == nil || in.GetDueAt().CheckValid() != nil {
				return fmt.Errorf("plan.installments[%d].due_at: required, a valid timestamp", i)
			}
		}
	case *dunningv1.AgencyOutcome_Dispute, *dunningv1.AgencyOutcome_Returned:
	default:
		return errors.New("outcome: one of contacted, promise, payment, dispute, returned, plan is required")
	}
	return nil
}

// Placed checks that placement is the loan's open placement with agency.
func Placed(entries []policy.Entry, agency, placement string) error {
	holder := ""
	for _, e := range entries {
		if d, ok := e.Event.(policy.Decision); ok && d.Kind == policy.KindHandedOff && d.PlacementID == placement {
			holder = d.AgencyID
		}
	}
	switch {
	case holder == "":
		return fmt.Errorf("unknown placement %s: the loan was never placed under it", placement)
	case holder != agency:
		return fmt.Errorf("placement %s is agency %s's, not %s's", placement, holder, agency)
	}
	if c := policy.Fold(entries); c.PlacementID != placement {
		return fmt.Errorf("placement %s was recalled: the agency no longer holds the account", placement)
	}
	return nil
}
