// Package bus declares the pipeline's NATS topology once (streams, subjects,
// durable consumers, schedule subjects, dead letters), provisions it, and
// wires stage handlers to it through one watermill router constructor.
package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Subject layout. Tenant and loan are subject tokens (identifiers, never
// personal data), so one loan's events are `dunning.loan.<tenant>.<loan>.>`:
// that wildcard is the loan's log, its timeline and its lock.
//
// Every message of a loan has a subject of its own (lender events carry
// their ID, decisions and steps the loan sequence they were decided from,
// "s<seq>"; the timer is one subject whose schedule replaces the last), so
// that a "last message per subject" read returns the whole log from the
// stream's subject index, without scanning the stream.
const (
	// Lender events over NATS: dunning.in.<tenant>.<loan>, body a LenderEvent.
	intakePrefix = "dunning.in"
	loanPrefix   = "dunning.loan"
	dlqPrefix    = "dunning.dlq"
	taskPrefix   = "dunning.task"
)

// Kind is the last subject token(s) of an event in a loan's log. The set is
// closed; each kind maps to one protobuf message (see package loanlog).
type Kind string

// Kinds of loan-log entries.
const (
	KindDue       Kind = "due"     // + .<installment id>
	KindRepaid    Kind = "repaid"  // + .<payment id>
	KindSettled   Kind = "settled" //
	KindTimer     Kind = "timer"   // the loan's one schedule
	KindStep      Kind = "step"    // + .<stage>.s<seq>: what the schedule publishes
	KindOverdue   Kind = "overdue"
	KindContact   Kind = "contact"
	KindEscalated Kind = "escalated"
	KindHandedOff Kind = "handoff"
	KindLegal     Kind = "legal"
	KindClosed    Kind = "closed"
	KindCancelled Kind = "cancelled"
	KindDeferred  Kind = "deferred"
	KindOutcome   Kind = "outcome" // + .<contact id>_<outcome>
)

// Step subject suffixes, one per timed stage, so each stage consumes only its own.
const (
	StepConfirm  = "confirm"
	StepContact  = "contact" // a later contact of the first-contact cadence
	StepEscalate = "escalate"
	StepHandoff  = "handoff"
	StepLegal    = "legal"
)

// Streams.
const (
	StreamLoans  = "DUNNING_LOANS"
	StreamIntake = "DUNNING_INTAKE"
	StreamDLQ    = "DUNNING_DLQ"
	StreamTasks  = "DUNNING_TASKS"
)

// Durable consumers, one per stage (replicas of a stage share it).
const (
	ConsumerIntake     = "intake"
	ConsumerOverdue    = "overdue-confirmation"
	ConsumerContact    = "first-contact"
	ConsumerEscalation = "escalation"
	ConsumerHandoff    = "third-party-handoff"
	ConsumerLegal      = "legal-referral"
	// ConsumerDispatch fans committed contact decisions out to per-channel task subjects.
	ConsumerDispatch = "dispatch"
	// ConsumerNotify delivers tasks to the lender's webhooks.
	ConsumerNotify = "notify"
)

// IntakeSubject is where a lender publishes one loan's events over NATS.
func IntakeSubject(tenant, loan string) string {
	return intakePrefix + "." + tenant + "." + loan
}

// LoanLog is the wildcard subject of every event of one loan.
func LoanLog(tenant, loan string) string { return loanPrefix + "." + tenant + "." + loan + ".>" }

// LoanSubject is the subject of one event in a loan's log; id is the
// installment, payment or outcome identifier of a lender event.
func LoanSubject(tenant, loan string, k Kind, id string) string {
	s := loanPrefix + "." + tenant + "." + loan + "." + string(k)
	if id != "" {
		s += "." + id
	}
	return s
}

// SeqToken names a write by the loan sequence it was decided from.
func SeqToken(seq uint64) string { return "s" + strconv.FormatUint(seq, 10) }

// DecisionSubject is the subject of a decision decided from the loan's log as
// of sequence seq: unique, since only one write can succeed from it.
func DecisionSubject(tenant, loan string, k Kind, seq uint64) string {
	return LoanSubject(tenant, loan, k, SeqToken(seq))
}

// StepSubject is where a timer set from sequence seq publishes its step.
func StepSubject(tenant, loan, token string, seq uint64) string {
	return LoanSubject(tenant, loan, KindStep, token) + "." + SeqToken(seq)
}

// TimerSubject holds the loan's single pending schedule.
func TimerSubject(tenant, loan string) string { return LoanSubject(tenant, loan, KindTimer, "") }

// TaskSubject is where one contact task waits for its channel's vendor:
// dunning.task.<channel>.<tenant>.<loan>.<contact id>. A vendor integration
// subscribes to dunning.task.<channel>.>.
func TaskSubject(channel, tenant, loan, contactID string) string {
	return taskPrefix + "." + channel + "." + tenant + "." + loan + "." + contactID
}

// DLQSubject is where a consumer dead-letters a message.
func DLQSubject(consumer string) string { return dlqPrefix + "." + consumer }

// ErrNotLoanSubject is returned for a subject outside the loan log layout.
var ErrNotLoanSubject = errors.New("not a loan-log subject")

// LoanAddress is a parsed loan-log subject.
type LoanAddress struct {
	Tenant, Loan string
	Kind         Kind
	// ID is the lender event's identifier, a decision's sequence token, or a
	// step's stage token.
	ID string
	// Seq is a step's sequence token.
	Seq string
}

// ParseLoanSubject splits a loan-log subject into its tokens.
func ParseLoanSubject(subj string) (LoanAddress, error) {
	t := strings.Split(subj, ".")
	if len(t) < 5 || len(t) > 7 || t[0]+"."+t[1] != loanPrefix || (len(t) == 7 && Kind(t[4]) != KindStep) {
		return LoanAddress{}, fmt.Errorf("%w: %q", ErrNotLoanSubject, subj)
	}
	a := LoanAddress{Tenant: t[2], Loan: t[3], Kind: Kind(t[4])}
	if len(t) >= 6 {
		a.ID = t[5]
	}
	if len(t) == 7 {
		a.Seq = t[6]
	}
	return a, nil
}

// ParseIntakeSubject returns the tenant and loan of an intake subject.
func ParseIntakeSubject(subj string) (tenant, loan string, err error) {
	t := strings.Split(subj, ".")
	if len(t) != 4 || t[0]+"."+t[1] != intakePrefix {
		return "", "", fmt.Errorf("intake subject must be %s.<tenant>.<loan>, got %q", intakePrefix, subj)
	}
	return t[2], t[3], nil
}

// ConsumerSpec declares one durable consumer.
type ConsumerSpec struct {
	Name    string
	Stream  string
	Filters []string
}

func loanFilter(k Kind, id string) string { return LoanSubject("*", "*", k, id) }

func stepFilter(token string) string { return LoanSubject("*", "*", KindStep, token) + ".*" }

// Consumers is the declared set of durable consumers.
var Consumers = []ConsumerSpec{
	{ConsumerIntake, StreamIntake, []string{intakePrefix + ".*.*"}},
	{ConsumerOverdue, StreamLoans, []string{
		loanFilter(KindDue, "*"), loanFilter(KindRepaid, "*"), loanFilter(KindSettled, ""), stepFilter(StepConfirm),
	}},
	{ConsumerContact, StreamLoans, []string{loanFilter(KindOverdue, "*"), stepFilter(StepContact)}},
	{ConsumerEscalation, StreamLoans, []string{stepFilter(StepEscalate)}},
	{ConsumerHandoff, StreamLoans, []string{stepFilter(StepHandoff)}},
	{ConsumerLegal, StreamLoans, []string{stepFilter(StepLegal)}},
	{ConsumerDispatch, StreamLoans, []string{loanFilter(KindContact, "*"), loanFilter(KindEscalated, "*")}},
	{ConsumerNotify, StreamTasks, []string{taskPrefix + ".>"}},
}

// ConsumerByName returns a declared consumer.
func ConsumerByName(name string) (ConsumerSpec, bool) {
	for _, c := range Consumers {
		if c.Name == name {
			return c, true
		}
	}
	return ConsumerSpec{}, false
}

// Topology holds the tunables of the declared streams and consumers.
type Topology struct {
	Replicas int
	// AckWait is how long a consumer waits for an ack before redelivering.
	AckWait time.Duration
	// MaxDeliver bounds redeliveries; the router dead-letters on the last one.
	MaxDeliver int
	// MaxAckPending bounds unacked messages in flight per consumer.
	MaxAckPending int
}

// DefaultTopology is single-node with conservative redelivery.
func DefaultTopology() Topology {
	return Topology{Replicas: 1, AckWait: 30 * time.Second, MaxDeliver: 10, MaxAckPending: 1024}
}

// StreamConfigs returns the declared streams.
func (t Topology) StreamConfigs() []jetstream.StreamConfig {
	return []jetstream.StreamConfig{
		{
			Name:        StreamLoans,
			Description: "Every loan's log: lender facts, pipeline decisions, schedules and fired steps.",
			Subjects:    []string{loanPrefix + ".>"},
			Storage:     jetstream.FileStorage,
			Replicas:    t.Replicas,
			// Schedules are the pipeline's timers; they need rollups, and
			// direct gets let any replica serve a loan's log.
			AllowMsgSchedules: true,
			AllowRollup:       true,
			AllowDirect:       true,
			Duplicates:        2 * time.Minute,
		},
		{
			Name:        StreamIntake,
			Description: "Lender events published over NATS, before validation.",
			Subjects:    []string{intakePrefix + ".>"},
			Storage:     jetstream.FileStorage,
			Replicas:    t.Replicas,
			MaxAge:      7 * 24 * time.Hour,
			Duplicates:  2 * time.Minute,
		},
		{
			Name:        StreamTasks,
			Description: "Contact tasks per channel, derived from committed decisions, for vendors and the notify service.",
			Subjects:    []string{taskPrefix + ".>"},
			Storage:     jetstream.FileStorage,
			Replicas:    t.Replicas,
			MaxAge:      30 * 24 * time.Hour,
			Duplicates:  2 * time.Minute,
		},
		{
			Name:        StreamDLQ,
			Description: "Messages a consumer could not process, with the reason in headers.",
			Subjects:    []string{dlqPrefix + ".>"},
			Storage:     jetstream.FileStorage,
			Replicas:    t.Replicas,
			Duplicates:  2 * time.Minute,
		},
	}
}

// ConsumerConfig returns the JetStream config of a declared consumer.
func (t Topology) ConsumerConfig(c ConsumerSpec) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        c.Name,
		FilterSubjects: c.Filters,
		AckPolicy:      jetstream.AckExplicitPolicy,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckWait:        t.AckWait,
		MaxDeliver:     t.MaxDeliver,
		MaxAckPending:  t.MaxAckPending,
		Replicas:       t.Replicas,
	}
}

// Provision creates or updates every declared stream and consumer. It is the
// only place the pipeline creates NATS resources. Every service calls it at
// start; the declarations are the same, so the calls agree.
//
// Each request gets its own short timeout and is retried until ctx ends: when
// several services create the same replicated stream at once, a NATS cluster
// may answer none of the racing requests (nats-server#3677), though the
// stream was created; the retry then finds it.
func (t Topology) Provision(ctx context.Context, js jetstream.JetStream) error {
	for _, sc := range t.StreamConfigs() {
		if err := retry(ctx, func(rctx context.Context) error {
			_, err := js.CreateOrUpdateStream(rctx, sc)
			return err
		}); err != nil {
			return fmt.Errorf("provisioning stream %s: %w", sc.Name, err)
		}
	}
	for _, c := range Consumers {
		if err := retry(ctx, func(rctx context.Context) error {
			_, err := js.CreateOrUpdateConsumer(rctx, c.Stream, t.ConsumerConfig(c))
			return err
		}); err != nil {
			return fmt.Errorf("provisioning consumer %s: %w", c.Name, err)
		}
	}
	return nil
}

// retry runs f with a 5s timeout per attempt until it succeeds or ctx ends.
// Only time-outs and unavailability are retried; a refused configuration is not.
func retry(ctx context.Context, f func(context.Context) error) error {
	backoff := 100 * time.Millisecond
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := f(rctx)
		cancel()
		if err == nil {
			return nil
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.Code != 503 {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}
