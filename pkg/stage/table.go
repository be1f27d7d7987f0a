package stage

import (
	"fmt"
	"time"

	"github.com/opendunning/dunning/pkg/codec"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/topology"
)

// Stage is one rung of the ladder as a service: every name it goes by, what
// it consumes, and how it decides. Table declares the five; nothing else
// spells a stage's names.
type Stage struct {
	// Policy is the ladder's stage.
	Policy policy.Stage
	// Service is the deployable that runs it alone (services/<Service>).
	Service string
	// Consumer is its durable consumer. Stored data: never rename one.
	Consumer string
	// Step is the subject token of its fired steps
	// (dunning.loan.<p>.<t>.<l>.step.<Step>.s<seq>). Stored data too.
	Step string
	// Consumes lists the loan-log kinds it handles besides its own fired steps.
	Consumes []*codec.Kind
	// Writes lists the decision kinds it may append (besides the loan's
	// timer, which every stage sets). It is its NATS permission too
	// (package access): a stage cannot write another's decisions.
	Writes []*codec.Kind
	// Borrower: the stage reads the borrower's log and appends to it (the
	// release gate, where caps per borrower are decided).
	Borrower bool
	// Placements: the stage opens or ends agency placements, moving the
	// agency's counter of open placements with the decision (handoff, and
	// the closure or recall of a placed case).
	Placements bool
	// Ignore, if set, passes over a consumed trigger without reading the
	// loan's log: one the stage never has anything to do for. The gate
	// consumes contact outcomes only for the calls the caps count, and a
	// loan's log can hold many more (a vendor's delivery receipts).
	Ignore func(policy.Event) bool
	// Decide handles the kinds in Consumes; a fired step of the stage's own
	// is always decided by the ladder (policy.Ladder.OnStep). Nil for
	// stages that only act on their steps.
	Decide Decide
}

// Decide is a stage's policy for a trigger that is not its own fired step:
// given the case folded from the log (which already includes the trigger)
// and the time, what to append, in order. None means nothing to do; an
// error means the trigger can never be decided (it is dead-lettered).
type Decide func(l policy.Ladder, c *policy.Case, trigger policy.Event, now time.Time) ([]policy.Decision, error)

// Table is the five stages in ladder order, then the release gate every
// contact passes before it leaves. The gate is not a rung (a case is never
// in it), but it is a stage of the pipeline like the others: it consumes
// loan-log kinds, decides from the folded case, appends guarded by the
// loan's last sequence, and has timer steps of its own. The notify service
// runs it, beside dispatch: where every task leaves.
var Table = []Stage{
	{Policy: policy.StageOverdueConfirmation, Service: "overdue", Consumer: "overdue-confirmation", Step: "confirm",
		Consumes: []*codec.Kind{codec.Due, codec.Repaid, codec.Settled, codec.Hold, codec.Unhold, codec.Promise, codec.Plan, codec.Unplan},
		Decide:   decideLenderFact,
		Writes: []*codec.Kind{codec.Overdue, codec.Closed, codec.Cancelled, codec.Deadline, codec.Recalled, codec.Kept, codec.Broken,
			codec.PlanMissed, codec.PlanBroken, codec.PlanDone, codec.LegalBlocked, codec.RecallRefused},
		Placements: true},
	{Policy: policy.StageFirstContact, Service: "contact", Consumer: "first-contact", Step: "contact",
		Consumes: []*codec.Kind{codec.Overdue}, Decide: decideFirstContact,
		Writes: []*codec.Kind{codec.Contact, codec.Cancelled}},
	{Policy: policy.StageEscalation, Service: "escalation", Consumer: "escalation", Step: "escalate",
		Writes: []*codec.Kind{codec.Contact, codec.Escalated, codec.Deferred, codec.Cancelled}},
	{Policy: policy.StageHandoff, Service: "handoff", Consumer: "third-party-handoff", Step: "handoff",
		// Unconfirmed and Recalled: an agency's payment report past its
		// confirmation deadline, a placement past its contract's
		// placement_days; steps of the stage that placed the account.
		Writes: []*codec.Kind{codec.HandedOff, codec.Unconfirmed, codec.Recalled, codec.RecallRefused, codec.Deferred, codec.Cancelled}, Placements: true},
	{Policy: policy.StageLegal, Service: "legal", Consumer: "legal-referral", Step: "legal",
		// Contact: the final notice the pre-legal gate sends first.
		Writes: []*codec.Kind{codec.Legal, codec.Contact, codec.LegalBlocked, codec.Deferred, codec.Cancelled}},
	{Policy: policy.StageRelease, Service: "notify", Consumer: "contact-release", Step: "release",
		Consumes: []*codec.Kind{codec.Contact, codec.Escalated, codec.Closed, codec.Outcome, codec.AgencyOutcome}, Decide: decideRelease,
		Writes:   []*codec.Kind{codec.Held, codec.Released, codec.ContactCancelled, codec.Suppressed, codec.Cancelled},
		Borrower: true, Ignore: notACall},
}

// Release is the release gate's row.
var Release = Table[len(Table)-1]

// ByService returns the stage a service runs.
func ByService(name string) (Stage, bool) {
	for _, s := range Table {
		if s.Service == name {
			return s, true
		}
	}
	return Stage{}, false
}

// Of returns the stage of a ladder stage.
func Of(p policy.Stage) (Stage, error) {
	for _, s := range Table {
		if s.Policy == p {
			return s, nil
		}
	}
	return Stage{}, fmt.Errorf("stage %s has no row in the stage table", p)
}

// ConsumerSpec is the stage's durable consumer: its consumed kinds and its
// fired steps, in every loan's log.
func (s Stage) ConsumerSpec() topology.ConsumerSpec {
	var filters []string
	for _, k := range s.Consumes {
		id := "*"
		if k.Shape == codec.Bare {
			id = ""
		}
		filters = append(filters, topology.LoanFilter(k.Token, id))
	}
	filters = append(filters, topology.StepFilter(s.Step))
	return topology.ConsumerSpec{Name: s.Consumer, Stream: topology.StreamLoans, Filters: filters}
}

// Publishes is every loan-log subject the stage may write: its decision
// kinds and the loan's timer.
func (s Stage) Publishes() []string {
	out := []string{topology.TimerFilter()}
	for _, k := range s.Writes {
		out = append(out, topology.LoanFilter(k.Token, "*"))
		if k == codec.Released {
			// A released contact's verification code is indexed first.
			out = append(out, topology.VerifyFilter())
		}
	}
	if s.Borrower {
		out = append(out, topology.BorrowerFilter())
	}
	if s.Placements {
		out = append(out, topology.CapacityFilter())
	}
	return out
}

// decideLenderFact is overdue confirmation's policy for the lender's
// facts (policy.Ladder.OnLenderFact, which the simulator's oracle plays
// too); the timer reconciliation that follows every fact schedules, moves
// or cancels the pending step.
func decideLenderFact(l policy.Ladder, c *policy.Case, ev policy.Event, now time.Time) ([]policy.Decision, error) {
	return l.OnLenderFact(c, ev, now)
}

func one(d *policy.Decision) []policy.Decision {
	if d == nil {
		return nil
	}
	return []policy.Decision{*d}
}

// decideRelease runs the gate when contacts are asked for (release, or hold
// until the borrower's window and the loan's slot) and when a case closes
// (cancel what it still holds).
func decideRelease(l policy.Ladder, c *policy.Case, ev policy.Event, now time.Time) ([]policy.Decision, error) {
	switch e := ev.(type) {
	case policy.Decision:
		switch e.Kind {
		case policy.KindContactRequested, policy.KindEscalated, policy.KindCaseClosed:
			return l.Gate(c, "", now), nil
		}
	case policy.ContactOutcome, policy.AgencyOutcome:
		// Nothing to decide for the loan: the engine copies a capped
		// call's outcome (the lender's vendor's, or the agency's call)
		// into the borrower's log, where the borrower's other loans count it.
		return nil, nil
	}
	return nil, fmt.Errorf("unexpected trigger %T", ev)
}

// notACall: an outcome that is not a call's (sent, delivered, failed), or
// an agency's report that is not a contact, counts under no cap. An
// agency's payment report is taken all the same: nothing is decided on it,
// but the engine's timer reconciliation after it gives the loan's timer
// the report's confirmation deadline (policy.PaymentReport).
func notACall(ev policy.Event) bool {
	switch o := ev.(type) {
	case policy.ContactOutcome:
		return !o.Outcome.Call()
	case policy.AgencyOutcome:
		return o.Kind != policy.AgencyContacted && o.Kind != policy.AgencyPaid
	}
	return false
}

// decideFirstContact asks for the gentle first contact as soon as a case is
// confirmed overdue.
func decideFirstContact(l policy.Ladder, c *policy.Case, ev policy.Event, now time.Time) ([]policy.Decision, error) {
	if e, ok := ev.(policy.Decision); ok && e.Kind == policy.KindOverdueConfirmed {
		return one(l.FirstContact(c, e.Ctx.Case, now)), nil
	}
	return nil, fmt.Errorf("unexpected trigger %T", ev)
}
