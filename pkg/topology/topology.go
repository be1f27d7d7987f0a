// Package topology declares the pipeline's NATS names once: the subject
// grammar, the streams, the durable consumers that are not stages (the
// stages declare theirs in package stage's table), and the one function that
// provisions them. These names are data: messages already stored are read
// by them, so they never change (TestNamesArePinned in package pipeline).
package topology

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
)

// Subject layout. Tenant and loan are subject tokens (identifiers, never
// personal data), and each loan lives in one partition p of the loans
// (Partitions), so one loan's events are `dunning.loan.<p>.<tenant>.<loan>.>`:
// that wildcard is the loan's log, its timeline and its lock.
//
// The partition is a token of the subject even with one partition (p = 0):
// the server's conditional writes and schedules use the subjects they are
// sent (an expected-last-subject guard, a schedule's target), which no
// subject mapping rewrites, so every writer computes the partition itself
// (Partitions.Of), as the server's partition() mapping does for the lenders.
//
// Every message of a loan has a subject of its own (lender events carry
// their ID, decisions and steps the loan sequence they were decided from,
// "s<seq>"; the timer is one subject whose schedule replaces the last), so
// that a "last message per subject" read returns the whole log from the
// stream's subject index, without scanning the stream.
const (
	// Lender events over NATS: a lender publishes on
	// dunning.in.<tenant>.<loan>, body a LenderEvent, and the server's
	// subject mapping stores it on dunning.in.<p>.<tenant>.<loan>, p the
	// loan's partition (IntakeMapping).
	intakePrefix = "dunning.in"
	loanPrefix   = "dunning.loan"
	dlqPrefix    = "dunning.dlq"
	taskPrefix   = "dunning.task"
	auditPrefix  = "dunning.audit"
	// rejectedPrefix is where a lender learns why intake refused an event
	// it published: dunning.rejected.<tenant>.<loan>.
	rejectedPrefix = "dunning.rejected"
	// borrowerPrefix is the borrowers' logs, in the loans streams:
	// dunning.borrower.<p>.<tenant>.<borrower>.r<slot> (BorrowerRing), p
	// the borrower's own partition.
	borrowerPrefix = "dunning.borrower"
	// verifyPrefix is the verification index: dunning.verify.<code>.
	verifyPrefix = "dunning.verify"
	// agencyPrefix is the agencies' feed:
	// dunning.agency.<agency>.<placement>.<event>.
	agencyPrefix = "dunning.agency"
	// outcomePrefix is where agencies report:
	// dunning.outcome.<agency>.<tenant>.<loan>.
	outcomePrefix = "dunning.outcome"
	// capacityPrefix is the agencies' counters of open placements, in the
	// loans streams: dunning.capacity.<p>.<tenant>.<agency>, one per
	// partition (CapacitySubject).
	capacityPrefix = "dunning.capacity"
)

// Kind is the subject token that says what a loan-log entry is ("due",
// "escalated", ...). The kinds themselves are declared in one table, in
// package codec, with their protobuf message and domain mapping; the grammar
// here only knows the two kinds the schedule machinery shapes.
type Kind string

const (
	// KindTimer is the loan's one pending schedule: dunning.loan.<p>.<t>.<l>.timer.
	KindTimer Kind = "timer"
	// KindStep is what a schedule publishes when it comes due:
	// dunning.loan.<p>.<t>.<l>.step.<step token>.s<seq>.
	KindStep Kind = "step"
)

// Streams.
const (
	StreamLoans  = "DUNNING_LOANS"
	StreamIntake = "DUNNING_INTAKE"
	StreamDLQ    = "DUNNING_DLQ"
	StreamTasks  = "DUNNING_TASKS"
	// StreamRecord is the protected copy of the loans stream: a copy no
	// service may write, and that nobody can purge or delete messages from.
	// The loans stream needs rollups for its schedules, so an identity that
	// may write any of its subjects could purge it whole (Nats-Rollup: all);
	// the record keeps every message whatever happens to the live log
	// (README, "What a compromised service can still do").
	StreamRecord = "DUNNING_RECORD"
	// StreamAudit records what operators did as admin (provisioning, dead
	// letters replayed): only the admin writes it, nobody deletes from it.
	StreamAudit = "DUNNING_AUDIT"
	// StreamRejections keeps, per loan, why intake refused the events a
	// lender published over NATS; each lender reads its own tenant's
	// (pkg/access: a live subscription, or a direct get of a loan's last).
	StreamRejections = "DUNNING_REJECTIONS"
	// StreamVerify indexes the verification code of every released contact,
	// for the public verification endpoint.
	StreamVerify = "DUNNING_VERIFY"
	// StreamAgencies holds the agencies' feeds (AgencyFeedSubject).
	StreamAgencies = "DUNNING_AGENCIES"
	// StreamOutcomes holds the agencies' reports before they are checked.
	StreamOutcomes = "DUNNING_OUTCOMES"
	// StreamAdvisories keeps JetStream's max-deliveries advisories: a
	// message no handler finished (its process crashed or hung on every
	// delivery) is announced there, and its consumer's service dead-letters
	// it (package bus), even one that was not running when it was sent.
	StreamAdvisories = "DUNNING_ADVISORIES"
)

// AdvisoryMaxAge bounds how long an advisory waits for its service.
const AdvisoryMaxAge = 7 * 24 * time.Hour

// Streams names every declared stream.
func (t Topology) Streams() []string {
	// Derived from the declarations, so a stream added there is provisioned,
	// checked by /readyz and granted STREAM.INFO without a second list.
	var names []string
	for _, sc := range t.StreamConfigs() {
		names = append(names, sc.Name)
	}
	return names
}

// DLQMaxBytes bounds the dead-letter stream; an alert fires at 80 % of it,
// before the oldest dead letter is dropped.
const DLQMaxBytes = 1 << 30

// IntakeMaxBytes bounds the intake stream; when full, publishes are refused
// (nothing stored is dropped), and an alert fires at 80 % of it.
const IntakeMaxBytes = 4 << 30

// Durable consumers that are not stages (each stage's is in its row of
// package stage's table). Replicas of a service share its consumer.
const (
	ConsumerIntake = "intake"
	// ConsumerNotify delivers tasks to the lender's webhooks.
	ConsumerNotify = "notify"
)

// IntakeSubject is where a lender publishes one loan's events over NATS:
// the server maps it to the loan's partition (IntakeMapping, LoanRef.Intake).
func IntakeSubject(tenant, loan string) string {
	return intakePrefix + "." + tenant + "." + loan
}

// Intake is where the loan's events published over NATS are stored: the
// lender's subject (IntakeSubject) as the server's mapping leaves it.
func (r LoanRef) Intake() string {
	return intakePrefix + "." + strconv.Itoa(r.P) + "." + r.Tenant + "." + r.Loan
}

// IntakeMapping is the subject mapping, from the subject a lender publishes
// on to the one stored, that the server applies in the lenders' account and
// the pipeline's (package access writes it): the lender's event goes to its
// loan's partition, computed by the server's partition() function with the
// hash Partitions.Of computes (TestIntakeMappingMatchesPartitions). A
// lender need not know K.
func (k Partitions) IntakeMapping() (from, to string) {
	return intakePrefix + ".*.*", fmt.Sprintf("%s.{{partition(%d,1,2)}}.{{wildcard(1)}}.{{wildcard(2)}}", intakePrefix, k.Count())
}

// Partitions is how many loans streams the loans are spread over, K: a
// loan lives in partition Of(tenant, loan), in stream LoansStream(p), so a
// cluster spreads the loans' writes over K stream leaders. Fixed when the
// streams are provisioned (it decides where every stored loan is found) and
// recorded in the first loans stream's metadata, which every service reads
// at start (ReadPartitions). The zero value is one partition.
type Partitions int

// MaxPartitions bounds K: each partition is a stream and a set of
// consumers per stage, and permissions name each partition's stream.
const MaxPartitions = 16

// Count is K (at least 1).
func (k Partitions) Count() int { return max(int(k), 1) }

// Validate checks K is within 1..MaxPartitions.
func (k Partitions) Validate() error {
	if k < 1 || k > MaxPartitions {
		return fmt.Errorf("partitions: must be 1 to %d, got %d", MaxPartitions, int(k))
	}
	return nil
}

// Of is the partition of a tenant's loan (or borrower): FNV-1a (32 bits)
// over the two tokens concatenated, modulo K, exactly as the server's
// subject mapping partition(K,1,2) computes it (getHashPartition in
// nats-server), so a lender's event mapped by the server lands in the
// partition the pipeline writes the loan to (TestPartitionMatchesServer).
func (k Partitions) Of(tenant, key string) int {
	h := fnv.New32a()
	h.Write([]byte(tenant))
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(k.Count()))
}

// Loan is a tenant's loan in its partition.
func (k Partitions) Loan(tenant, loan string) LoanRef {
	return LoanRef{P: k.Of(tenant, loan), Tenant: tenant, Loan: loan}
}

// Borrower is a tenant's borrower in its partition.
func (k Partitions) Borrower(tenant, borrower string) BorrowerRef {
	return BorrowerRef{P: k.Of(tenant, borrower), Tenant: tenant, Borrower: borrower}
}

// Streams names the K loans streams.
func (k Partitions) Streams() []string {
	out := make([]string, k.Count())
	for p := range out {
		out[p] = LoansStream(p)
	}
	return out
}

// LoansStream names partition p's loans stream: DUNNING_LOANS for the
// first (the one stream of a single partition), DUNNING_LOANS_<p> after.
func LoansStream(p int) string {
	if p == 0 {
		return StreamLoans
	}
	return StreamLoans + "_" + strconv.Itoa(p)
}

// LoanRef is one loan and the partition it lives in (Partitions.Loan).
type LoanRef struct {
	P            int
	Tenant, Loan string
}

func (r LoanRef) prefix() string {
	return loanPrefix + "." + strconv.Itoa(r.P) + "." + r.Tenant + "." + r.Loan
}

// Log is the wildcard subject of every event of the loan.
func (r LoanRef) Log() string { return r.prefix() + ".>" }

// Stream is the loans stream the loan lives in.
func (r LoanRef) Stream() string { return LoansStream(r.P) }

// Subject is the subject of one event in the loan's log; id is the
// installment, payment or outcome identifier of a lender event.
func (r LoanRef) Subject(k Kind, id string) string {
	s := r.prefix() + "." + string(k)
	if id != "" {
		s += "." + id
	}
	return s
}

// SeqToken names a write by the loan sequence it was decided from.
func SeqToken(seq uint64) string { return "s" + strconv.FormatUint(seq, 10) }

// Decision is the subject of a decision decided from the loan's log as of
// sequence seq: unique, since only one write can succeed from it.
func (r LoanRef) Decision(k Kind, seq uint64) string { return r.Subject(k, SeqToken(seq)) }

// Step is where a timer set from sequence seq publishes its step.
func (r LoanRef) Step(token string, seq uint64) string {
	return r.Subject(KindStep, token) + "." + SeqToken(seq)
}

// Timer holds the loan's single pending schedule.
func (r LoanRef) Timer() string { return r.Subject(KindTimer, "") }

// Capacity is the counter, in the loan's partition, of the open placements
// of the tenant's contract with agency (CapacitySubject).
func (r LoanRef) Capacity(agency string) string { return CapacitySubject(r.P, r.Tenant, agency) }

// LoanFilter matches one kind of entry in every loan's log, in every
// partition; id is "*" for kinds whose subject carries an identifier, ""
// for those that do not.
func LoanFilter(k Kind, id string) string {
	s := loanPrefix + ".*.*.*." + string(k)
	if id != "" {
		s += "." + id
	}
	return s
}

// StepFilter matches every fired step of one step token.
func StepFilter(token string) string { return LoanFilter(KindStep, token) + ".*" }

// TimerFilter matches every loan's pending schedule.
func TimerFilter() string { return LoanFilter(KindTimer, "") }

// TaskSubject is where one contact task waits for its channel's vendor:
// dunning.task.<channel>.<tenant>.<loan>.<contact id>. A vendor integration
// subscribes to dunning.task.<channel>.>.
func TaskSubject(channel, tenant, loan, contactID string) string {
	return taskPrefix + "." + channel + "." + tenant + "." + loan + "." + contactID
}

// Agency feed events: a placement, and its recall.
const (
	FeedPlaced   = "placed"
	FeedRecalled = "recalled"
)

// FeedRejected is the event token of a report the agency sent that was
// refused: the report's sequence in the outcomes stream makes it unique.
func FeedRejected(reportSeq uint64) string { return "rejected-" + strconv.FormatUint(reportSeq, 10) }

// AgencyFeedSubject is where one event of one placement goes on an
// agency's feed; each is written once (the subject must be empty).
func AgencyFeedSubject(agency, placement, event string) string {
	return agencyPrefix + "." + agency + "." + placement + "." + event
}

// AgencyFeedFilter is every event of one agency's feed.
func AgencyFeedFilter(agency string) string { return agencyPrefix + "." + agency + ".>" }

// OutcomeSubject is where agency reports on tenant's loan.
func OutcomeSubject(agency, tenant, loan string) string {
	return outcomePrefix + "." + agency + "." + tenant + "." + loan
}

// ParseOutcomeSubject splits an outcome subject into agency, tenant, loan.
func ParseOutcomeSubject(subj string) (agency, tenant, loan string, err error) {
	t := strings.Split(subj, ".")
	if len(t) != 5 || t[0]+"."+t[1] != outcomePrefix {
		return "", "", "", fmt.Errorf("not an outcome subject: %q", subj)
	}
	return t[2], t[3], t[4], nil
}

// AgencyAPIPrefix is where an agency's client finds the JetStream API of
// its feed (jetstream.NewWithAPIPrefix): the agencies' account imports its
// consumer's info and pull requests from the pipeline's account under it.
const AgencyAPIPrefix = "dunning.feed.api"

// AgencyConsumer names an agency's durable pull consumer on its feed: the
// only consumer it may read, which the pipeline creates (an agency creates
// none: a consumer's deliver subject is in the stream's account, so an
// agency allowed to create one could push the feed onto the pipeline's own
// subjects).
func AgencyConsumer(agency string) string { return "agency-" + agency }

// BorrowerRef is one borrower of a tenant and the partition its log lives
// in (Partitions.Borrower): the borrower's own, whatever its loans'. Its
// log is written on its own guard, never in a loan's batch, so it need not
// share a stream with them.
type BorrowerRef struct {
	P                int
	Tenant, Borrower string
}

// Log is the wildcard subject of a borrower's log: the contacts released
// for the borrower's loans on channels capped per borrower, and their
// outcomes. Like a loan's log, it is its own lock.
func (b BorrowerRef) Log() string { return b.prefix() + ".>" }

func (b BorrowerRef) prefix() string {
	return borrowerPrefix + "." + strconv.Itoa(b.P) + "." + b.Tenant + "." + b.Borrower
}

// Stream is the loans stream the borrower's log lives in.
func (b BorrowerRef) Stream() string { return LoansStream(b.P) }

// BorrowerRing is how many of a borrower's latest entries a read returns.
// Entries go round a ring of that many subjects, each new one on the
// subject after the last's, so a "last per subject" read returns the
// latest BorrowerRing entries, however long the borrower's history (the
// older ones stay in the stream and its record). A cap looks back days:
// 256 entries are weeks of a borrower's capped calls and their outcomes.
const BorrowerRing = 256

// Slot is the subject of slot i of the borrower's ring.
func (b BorrowerRef) Slot(i int) string { return b.prefix() + ".r" + strconv.Itoa(i) }

// BorrowerSlot is the ring slot of a borrower-log subject (-1 if none).
func BorrowerSlot(subject string) int {
	i := strings.LastIndex(subject, ".r")
	if i < 0 {
		return -1
	}
	n, err := strconv.Atoi(subject[i+2:])
	if err != nil || n < 0 || n >= BorrowerRing {
		return -1
	}
	return n
}

// BorrowerFilter matches every borrower's log.
func BorrowerFilter() string { return borrowerPrefix + ".>" }

// CapacitySubject is partition p's counter of open placements of a
// tenant's contract with an agency: dunning.capacity.<p>.<tenant>.<agency>.
// Each message holds the count after one placement opened or ended,
// written in one atomic batch with that decision; an atomic batch is
// stored by one stream, so each partition counts its own loans' placements
// against its share of the contract's capacity (policy.Share).
func CapacitySubject(p int, tenant, agency string) string {
	return capacityPrefix + "." + strconv.Itoa(p) + "." + tenant + "." + agency
}

// CapacityTenant matches every counter of a tenant's contracts in
// partition p.
func CapacityTenant(p int, tenant string) string { return CapacitySubject(p, tenant, "*") }

// CapacityFilter matches every contract's counter.
func CapacityFilter() string { return capacityPrefix + ".>" }

// CapacityAgency is the agency of a counter's subject ("" if none).
func CapacityAgency(subject string) string {
	parts := strings.Split(subject, ".")
	if len(parts) != 5 || parts[0]+"."+parts[1] != capacityPrefix {
		return ""
	}
	return parts[4]
}

// VerifySubject is one verification code's entry in the index.
func VerifySubject(code string) string { return verifyPrefix + "." + code }

// VerifyFilter matches every entry of the verification index.
func VerifyFilter() string { return verifyPrefix + ".*" }

// MaxDeliveriesAdvisory is where the server announces that a message of
// the consumer ran out of deliveries without an ack.
func MaxDeliveriesAdvisory(stream, consumer string) string {
	return "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + stream + "." + consumer
}

// DLQSubject is where a consumer dead-letters a message.
func DLQSubject(consumer string) string { return dlqPrefix + "." + consumer }

// RejectionSubject is where intake tells tenant's lender why an event for
// loan was refused.
func RejectionSubject(tenant, loan string) string { return rejectedPrefix + "." + tenant + "." + loan }

// AuditSubject is where an admin action of kind action is recorded, e.g.
// dunning.audit.provision, dunning.audit.deadletter_replay.
func AuditSubject(action string) string { return auditPrefix + "." + action }

// StreamOf is the loans stream that holds a subject of a loan's log, a
// borrower's log or a capacity counter (by its partition token), "" for
// any other subject.
func StreamOf(subject string) string {
	t := strings.SplitN(subject, ".", 4)
	if len(t) < 4 || t[0] != "dunning" || (t[1] != "loan" && t[1] != "borrower" && t[1] != "capacity") {
		return ""
	}
	p, ok := parsePartition(t[2])
	if !ok {
		return ""
	}
	return LoansStream(p)
}

// parsePartition reads a subject's partition token: a number below
// MaxPartitions, written as Itoa writes it (so each partition has one
// token).
func parsePartition(tok string) (int, bool) {
	p, err := strconv.Atoi(tok)
	return p, err == nil && p >= 0 && p < MaxPartitions && strconv.Itoa(p) == tok
}

// ErrNotLoanSubject is returned for a subject outside the loan log layout.
var ErrNotLoanSubject = errors.New("not a loan-log subject")

// LoanAddress is a parsed loan-log subject.
type LoanAddress struct {
	// P is the loan's partition.
	P            int
	Tenant, Loan string
	Kind         Kind
	// ID is the lender event's identifier, a decision's sequence token, or a
	// step's stage token.
	ID string
	// Seq is a step's sequence token.
	Seq string
}

// Ref is the loan the subject belongs to.
func (a LoanAddress) Ref() LoanRef { return LoanRef{P: a.P, Tenant: a.Tenant, Loan: a.Loan} }

// ParseLoanSubject splits a loan-log subject into its tokens.
func ParseLoanSubject(subj string) (LoanAddress, error) {
	t := strings.Split(subj, ".")
	if len(t) < 3 {
		return LoanAddress{}, fmt.Errorf("%w: %q", ErrNotLoanSubject, subj)
	}
	p, ok := parsePartition(t[2])
	if !ok {
		return LoanAddress{}, fmt.Errorf("%w: partition %q: %q", ErrNotLoanSubject, t[2], subj)
	}
	a, err := loanTokens(subj, t[:2], t[3:])
	a.P = p
	return a, err
}

// ParseEarlierLoanSubject parses a loan-log subject in the layout of the
// releases before partitions (dunning.loan.<tenant>.<loan>.…, no partition
// token), as partition 0: a legal packet exported then carries such
// subjects, and must still verify (package packet). Nothing reads a live
// log by it.
func ParseEarlierLoanSubject(subj string) (LoanAddress, error) {
	t := strings.Split(subj, ".")
	if len(t) < 2 {
		return LoanAddress{}, fmt.Errorf("%w: %q", ErrNotLoanSubject, subj)
	}
	return loanTokens(subj, t[:2], t[2:])
}

// loanTokens reads a loan-log subject's tokens after its partition (if
// any): <tenant>.<loan>.<kind>[.<id>[.<seq>]], the last only for a step.
func loanTokens(subj string, prefix, t []string) (LoanAddress, error) {
	if len(t) < 3 || len(t) > 5 || prefix[0]+"."+prefix[1] != loanPrefix || (len(t) == 5 && Kind(t[2]) != KindStep) {
		return LoanAddress{}, fmt.Errorf("%w: %q", ErrNotLoanSubject, subj)
	}
	a := LoanAddress{Tenant: t[0], Loan: t[1], Kind: Kind(t[2])}
	if len(t) >= 4 {
		a.ID = t[3]
	}
	if len(t) == 5 {
		a.Seq = t[4]
	}
	return a, nil
}

// ParseIntakeSubject returns the tenant and loan of a subject a lender
// publishes on (IntakeSubject).
func ParseIntakeSubject(subj string) (tenant, loan string, err error) {
	t := strings.Split(subj, ".")
	if len(t) != 4 || t[0]+"."+t[1] != intakePrefix {
		return "", "", fmt.Errorf("intake subject must be %s.<tenant>.<loan>, got %q", intakePrefix, subj)
	}
	return t[2], t[3], nil
}

// ParseStoredIntake returns the loan of a stored intake subject
// (LoanRef.Intake): its partition as the server's mapping computed it.
func ParseStoredIntake(subj string) (LoanRef, error) {
	t := strings.Split(subj, ".")
	if len(t) != 5 || t[0]+"."+t[1] != intakePrefix {
		return LoanRef{}, fmt.Errorf("stored intake subject must be %s.<partition>.<tenant>.<loan>, got %q", intakePrefix, subj)
	}
	p, ok := parsePartition(t[2])
	if !ok {
		return LoanRef{}, fmt.Errorf("stored intake subject %q: bad partition %q", subj, t[2])
	}
	return LoanRef{P: p, Tenant: t[3], Loan: t[4]}, nil
}

// ConsumerSpec declares one durable consumer.
type ConsumerSpec struct {
	Name    string
	Stream  string
	Filters []string
}

// Abandoned is the consumer of c's max-deliveries advisories in
// StreamAdvisories, which c's service runs beside c (package bus).
func Abandoned(c ConsumerSpec) ConsumerSpec {
	return ConsumerSpec{Name: "abandoned-" + c.Name, Stream: StreamAdvisories, Filters: []string{MaxDeliveriesAdvisory(c.Stream, c.Name)}}
}

// Spread is cs with each consumer of the loans stream repeated on every
// partition's stream, and the intake's on every partition's intake
// subjects, its filters narrowed to that partition's subjects:
// the first keeps its name, the one on partition p is named <name>-p<p>, so
// that every durable (and its advisories' consumer, its metrics and its
// handler) has a name of its own.
func (k Partitions) Spread(cs []ConsumerSpec) []ConsumerSpec {
	out := make([]ConsumerSpec, 0, len(cs))
	for _, c := range cs {
		if c.Stream != StreamLoans && c.Stream != StreamIntake {
			out = append(out, c)
			continue
		}
		for p := range k.Count() {
			filters := make([]string, len(c.Filters))
			for i, f := range c.Filters {
				filters[i] = inPartition(f, p)
			}
			stream := c.Stream
			if stream == StreamLoans {
				stream = LoansStream(p)
			}
			out = append(out, ConsumerSpec{Name: PartitionConsumer(c.Name, p), Stream: stream, Filters: filters})
		}
	}
	return out
}

// inPartition narrows a filter of every partition's loan or intake
// subjects (LoanFilter, Intake's) to partition p's.
func inPartition(filter string, p int) string {
	for _, prefix := range []string{loanPrefix, intakePrefix} {
		if rest, ok := strings.CutPrefix(filter, prefix+".*."); ok {
			return prefix + "." + strconv.Itoa(p) + "." + rest
		}
	}
	return filter
}

// PartitionConsumer names consumer name's copy on partition p.
func PartitionConsumer(name string, p int) string {
	if p == 0 {
		return name
	}
	return name + "-p" + strconv.Itoa(p)
}

// OnPartition reports whether name is consumer base's copy on some
// partition p > 0 (base-p<p>).
func OnPartition(name, base string) bool {
	n, ok := strings.CutPrefix(name, base+"-p")
	if !ok {
		return false
	}
	p, err := strconv.Atoi(n)
	return err == nil && p > 0 && p < MaxPartitions && strconv.Itoa(p) == n
}

// IsIntakeConsumer reports whether name is the intake's consumer on one of
// the partitions (intake, intake-p1, ...).
func IsIntakeConsumer(name string) bool {
	return name == ConsumerIntake || OnPartition(name, ConsumerIntake)
}

// IntakeFilter is every stored intake subject, of every partition.
func IntakeFilter() string { return intakePrefix + ".*.*.*" }

// LenderIntake is every intake subject of a tenant's loans as stored (any
// partition): what the tenant's lender may publish once the server has
// mapped its subject (a permission is checked on the mapped subject).
func LenderIntake(tenant string) string { return intakePrefix + ".*." + tenant + ".*" }

// WithAbandoned is cs and, after each, its advisories' consumer.
func WithAbandoned(cs []ConsumerSpec) []ConsumerSpec {
	out := make([]ConsumerSpec, 0, 2*len(cs))
	for _, c := range cs {
		out = append(out, c)
		if c.Stream != StreamAdvisories {
			out = append(out, Abandoned(c))
		}
	}
	return out
}

// Intake and Notify are the declared consumers outside the loans stream.
var (
	Intake = ConsumerSpec{ConsumerIntake, StreamIntake, []string{IntakeFilter()}}
	Notify = ConsumerSpec{ConsumerNotify, StreamTasks, []string{taskPrefix + ".>"}}
)

// LenderFacts reports whether c carries the lender's facts to the loans'
// logs (intake): the pipeline's own consumers give way to it while it has a
// backlog (bus.Yield), so a payment never waits behind the contacts it may
// make moot.
func LenderFacts(c ConsumerSpec) bool { return c.Stream == StreamIntake }

// Yields reports whether c is the pipeline's own work, which gives way to
// lender facts: neither their consumer nor an advisories' consumer.
func Yields(c ConsumerSpec) bool { return !LenderFacts(c) && c.Stream != StreamAdvisories }

// MaxIntakeMessage bounds a lender event published over NATS, as the HTTP
// API bounds a body.
const MaxIntakeMessage = 64 << 10

// Topology holds the tunables of the declared streams and consumers.
type Topology struct {
	Replicas int
	// AckWait is how long a consumer waits for an ack before redelivering.
	AckWait time.Duration
	// MaxDeliver bounds redeliveries; the router dead-letters on the last one.
	MaxDeliver int
	// MaxAckPending bounds unacked messages in flight per consumer.
	MaxAckPending int
	// RecreateLoans lets Provision create an empty loans stream where one
	// existed (see ErrLoansMissing).
	RecreateLoans bool
	// Partitions is K, how many loans streams the loans are spread over.
	Partitions Partitions
}

// DefaultTopology is single-node with conservative redelivery.
func DefaultTopology() Topology {
	return Topology{Replicas: 1, AckWait: 30 * time.Second, MaxDeliver: 10, MaxAckPending: 1024, Partitions: 1}
}

// StreamConfigs returns the declared streams.
func (t Topology) StreamConfigs() []jetstream.StreamConfig {
	var loans []jetstream.StreamConfig
	var sources []*jetstream.StreamSource
	for p := range t.Partitions.Count() {
		loans = append(loans, t.loansStream(p))
		sources = append(sources, recordSource(p))
	}
	return append(loans, []jetstream.StreamConfig{
		{
			Name:        StreamRecord,
			Description: "The loans streams' protected copy: every message ever written to them, whatever is later purged there.",
			// Sourced, not mirrored: a mirror in the origin's account
			// inherits its direct gets (nats-server stream.go, "inheriting
			// direct gets") and would answer reads of the live log with
			// messages the live log no longer holds. Each copy carries its
			// origin stream and sequence in the Nats-Stream-Source header,
			// and its origin subject (RecordOrigin): each loan's copies
			// are kept on one subject (recordSource).
			Sources:  sources,
			Storage:  jetstream.FileStorage,
			Replicas: t.Replicas,
			// No rollups: a copied Nats-Rollup is stored, never applied.
			DenyDelete: true,
			DenyPurge:  true,
		},
		{
			Name:        StreamIntake,
			Description: "Lender events published over NATS, before validation.",
			// Exactly dunning.in.<p>.<tenant>.<loan>, where the server's
			// mapping puts dunning.in.<tenant>.<loan>: a publish to any
			// other subject finds no stream and is refused, instead of
			// being stored and never consumed.
			// One subject per partition, not dunning.in.*.*.*, so that
			// dunning.in.<tenant>.<loan>.<extra> is not stored either.
			Subjects: t.intakeSubjects(),
			Storage:  jetstream.FileStorage,
			Replicas: t.Replicas,
			MaxAge:   7 * 24 * time.Hour,
			// Bounded, and full means a publish refused (the lender sees
			// the error and retries), never a stored event dropped.
			MaxBytes: IntakeMaxBytes,
			Discard:  jetstream.DiscardNew,
			// A lender event is a few hundred bytes; the server refuses a
			// bigger publish before storing it.
			MaxMsgSize: MaxIntakeMessage,
			// The release gate reads a loan's last event here to know
			// whether one still waits (loanlog.Intake).
			AllowDirect: true,
			Duplicates:  2 * time.Minute,
			DenyDelete:  true,
			DenyPurge:   true,
		},
		{
			Name:        StreamTasks,
			Description: "Contact tasks per channel, derived from committed decisions, for vendors and the notify service.",
			Subjects:    []string{taskPrefix + ".>"},
			Storage:     jetstream.FileStorage,
			Replicas:    t.Replicas,
			MaxAge:      30 * 24 * time.Hour,
			MaxBytes:    4 << 30,
			Duplicates:  2 * time.Minute,
			DenyDelete:  true,
			DenyPurge:   true,
		},
		{
			Name:        StreamDLQ,
			Description: "Messages a consumer could not process, with the reason in headers.",
			Subjects:    []string{dlqPrefix + ".>"},
			Storage:     jetstream.FileStorage,
			Replicas:    t.Replicas,
			// Bounded: a flood of bad input cannot fill the disk. The
			// oldest go first, after the alert at 80 % (deploy/prometheus).
			MaxBytes:   DLQMaxBytes,
			MaxAge:     90 * 24 * time.Hour,
			Duplicates: 2 * time.Minute,
			DenyDelete: true,
			DenyPurge:  true,
		},
		{
			Name:        StreamRejections,
			Description: "Why intake refused an event a lender published over NATS, per loan; readable by that tenant's lender.",
			Subjects:    []string{rejectedPrefix + ".*.*"},
			Storage:     jetstream.FileStorage,
			Replicas:    t.Replicas,
			// A lender reads a loan's latest (direct get by subject) or
			// listens live; a few per loan and a month are plenty.
			MaxAge:            30 * 24 * time.Hour,
			MaxBytes:          1 << 30,
			MaxMsgsPerSubject: 16,
			AllowDirect:       true,
			Duplicates:        2 * time.Minute,
			DenyDelete:        true,
			DenyPurge:         true,
		},
		{
			Name:        StreamVerify,
			Description: "Every released contact's verification code, and whose contact it is: what the public verification endpoint looks up.",
			Subjects:    []string{verifyPrefix + ".*"},
			Storage:     jetstream.FileStorage,
			Replicas:    t.Replicas,
			// A borrower may check a letter's code long after it came;
			// thirteen months covers a year of dunning and its disputes.
			// Bounded by age, not bytes (an entry is some 80 bytes): a
			// byte limit is reserved from the node's max_file_store, and a
			// full index would refuse releases.
			MaxAge:      400 * 24 * time.Hour,
			AllowDirect: true,
			Duplicates:  2 * time.Minute,
			DenyDelete:  true,
			DenyPurge:   true,
		},
		{
			Name:        StreamAgencies,
			Description: "The agencies' feeds: placements and recalls, each agency reading its own through its own consumer.",
			Subjects:    []string{agencyPrefix + ".*.*.*"},
			Storage:     jetstream.FileStorage,
			Replicas:    t.Replicas,
			// A placement lasts months; a feed read late still finds it.
			MaxAge:     400 * 24 * time.Hour,
			Duplicates: 2 * time.Minute,
			DenyDelete: true,
			DenyPurge:  true,
		},
		{
			Name:        StreamOutcomes,
			Description: "What agencies report on their placements, before it is checked and recorded in the loan's log.",
			Subjects:    []string{outcomePrefix + ".*.*.*"},
			Storage:     jetstream.FileStorage,
			Replicas:    t.Replicas,
			MaxAge:      7 * 24 * time.Hour,
			// Bounded by age and per loan, not bytes (a byte limit is
			// reserved from the node's max_file_store, which the other
			// streams' limits already fill): a flood of reports on one
			// loan is refused, never stored over what came before.
			MaxMsgsPerSubject:    1000,
			Discard:              jetstream.DiscardNew,
			DiscardNewPerSubject: true,
			MaxMsgSize:           MaxIntakeMessage,
			Duplicates:           2 * time.Minute,
			DenyDelete:           true,
			DenyPurge:            true,
		},
		{
			Name: StreamAdvisories,
			Description: "JetStream's max-deliveries advisories of every consumer: each pipeline consumer's service turns those of its " +
				"consumer into dead letters (its abandoned-<consumer> consumer), even after a restart.",
			Subjects:  []string{MaxDeliveriesAdvisory("*", "*")},
			Storage:   jetstream.FileStorage,
			Replicas:  t.Replicas,
			MaxAge:    AdvisoryMaxAge,
			Discard:   jetstream.DiscardOld,
			Retention: jetstream.LimitsPolicy,
		},
		{
			Name:        StreamAudit,
			Description: "What operators did as admin: provisioning, dead letters replayed. Kept like the loans: no limit, nothing deleted.",
			Subjects:    []string{auditPrefix + ".*"},
			Storage:     jetstream.FileStorage,
			Replicas:    t.Replicas,
			DenyDelete:  true,
			DenyPurge:   true,
		},
	}...)
}

// recordSource is how the record copies partition p's loans stream: every
// message of a loan's log onto the loan's own subject (RecordSubject),
// every entry of a borrower's log onto the borrower's, and the agency
// counters as they are. Each subject costs the server an entry in the
// stream's subject index, and every message of a live log has a subject
// of its own: copied under those, the record doubled the server's memory
// per open case (README, "Open cases"). Nothing reads the record by a live
// subject: it is read per loan, in order, each copy naming its origin
// subject in its Nats-Stream-Source header.
//
// An installed record keeps the sources it was installed with
// (Provision): the server keys a source's progress by its transforms, and
// a changed transform would copy every loans stream into it again.
func recordSource(p int) *jetstream.StreamSource {
	return &jetstream.StreamSource{Name: LoansStream(p), SubjectTransforms: partitionShapes(p)}
}

// partitionShapes are the subjects of partition p's loans stream, each
// with where the record copies it ("" for as it is): a loan's log entries
// (one to recordDepth tokens after the loan: its timer; a kind and an
// identifier or sequence; a fired step's name and sequence), a borrower's
// ring slots, the agency counters. They are the stream's subjects too
// (loansStream), so nothing else can be stored there, not even the target
// of a forged schedule (the server checks a target against the stream's
// subjects), and the record copies every message stored.
//
// The server maps a subject ending in ">" only to one ending in ">", so
// each length is listed. "$1" is the server's older spelling of
// {{wildcard(1)}}: every copy's Nats-Stream-Source header carries the
// source's filters and destinations, and a copy is kept forever.
func partitionShapes(p int) []jetstream.SubjectTransformConfig {
	part := "." + strconv.Itoa(p)
	var trs []jetstream.SubjectTransformConfig
	for n := 1; n <= recordDepth; n++ {
		trs = append(trs, jetstream.SubjectTransformConfig{Source: loanPrefix + part + ".*.*" + strings.Repeat(".*", n), Destination: loanPrefix + part + ".$1.$2"})
	}
	return append(trs,
		jetstream.SubjectTransformConfig{Source: borrowerPrefix + part + ".*.*.*", Destination: borrowerPrefix + part + ".$1.$2"},
		jetstream.SubjectTransformConfig{Source: capacityPrefix + part + ".*.*"})
}

// recordDepth is how many tokens the pipeline's subjects have after a
// loan's (a step's three: step.<name>.<seq>).
const recordDepth = 3

// RecordSubject is the record's subject holding the copies of a message
// of a loans stream: the loan's or the borrower's subject prefix (a
// subject no live message has), an agency counter's own. In a record an
// earlier release installed (which Provision keeps), every copy is on the
// subject it was written on instead.
func RecordSubject(subject string) string {
	t := strings.Split(subject, ".")
	if n := len(t) - 5; n >= 1 && (n <= recordDepth && t[0]+"."+t[1] == loanPrefix || n == 1 && t[0]+"."+t[1] == borrowerPrefix) {
		return strings.Join(t[:5], ".")
	}
	return subject
}

// RecordOrigin is the subject a copy in the record was written on in its
// loans stream, from its Nats-Stream-Source header ("<stream> <seq>
// <filter> <transform> <subject>", nats-server's genSourceHeader), or ""
// when the header has none.
func RecordOrigin(h nats.Header) string {
	// Split on spaces only: the filters and destinations are joined by
	// form feeds, which strings.Fields would split too.
	f := strings.Split(h.Get("Nats-Stream-Source"), " ")
	if len(f) < 5 {
		return ""
	}
	return f[4]
}

// intakeSubjects are the intake stream's subjects: each partition's.
func (t Topology) intakeSubjects() []string {
	out := make([]string, t.Partitions.Count())
	for p := range out {
		out[p] = inPartition(IntakeFilter(), p)
	}
	return out
}

// MetaPartitions is the first loans stream's metadata key that records K
// (ReadPartitions). A loans stream without it was provisioned by a release
// whose subjects carried no partition token (Stale).
const MetaPartitions = "dunning_partitions"

// loansStream is partition p's loans stream.
func (t Topology) loansStream(p int) jetstream.StreamConfig {
	var shapes []string
	for _, tr := range partitionShapes(p) {
		shapes = append(shapes, tr.Source)
	}
	sc := jetstream.StreamConfig{
		Name:        LoansStream(p),
		Description: "Every loan's log: lender facts, pipeline decisions, schedules and fired steps.",
		// Borrowers' logs live beside the loans': written and kept the
		// same way, and copied to the record with them (the evidence
		// that a cap per borrower held).
		// So do the agencies' counters of open placements, which move
		// in one atomic batch with the decision that opens or ends a
		// placement (AllowAtomicPublish).
		Subjects: shapes,
		Storage:  jetstream.FileStorage,
		Replicas: t.Replicas,
		// Schedules are the pipeline's timers; they need rollups (and
		// the server forbids deny_purge with them), and direct gets let
		// any replica serve a loan's log. No age or size limit: a
		// collection record is kept for years, and a full store refuses
		// writes rather than drop one (alerted at 80 %).
		AllowMsgSchedules:  true,
		AllowAtomicPublish: true,
		AllowRollup:        true,
		AllowDirect:        true,
		DenyDelete:         true,
		Duplicates:         2 * time.Minute,
	}
	if p == 0 {
		sc.Metadata = map[string]string{MetaPartitions: strconv.Itoa(t.Partitions.Count())}
	}
	if t.Partitions.Count() > 1 {
		sc.Description = fmt.Sprintf("Partition %d of %d of the loans' logs: lender facts, pipeline decisions, schedules and fired steps.", p, t.Partitions.Count())
	}
	return sc
}

// AgencyConsumerConfig is an agency's consumer on its feed: pull, explicit
// acks, only its own subjects, from the start of its feed.
func (t Topology) AgencyConsumerConfig(agency string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       AgencyConsumer(agency),
		Description:   "agency " + agency + "'s feed",
		FilterSubject: AgencyFeedFilter(agency),
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckWait:       t.AckWait,
		MaxAckPending: t.MaxAckPending,
		// 0: as many as the stream has. The feed service creates this
		// consumer with the first placement, and a service is not told the
		// replicas the admin provisioned: given its default of 1, an
		// agency's consumer on a cluster lived on one node, and its client
		// found none while that node was down (make test-cluster).
		Replicas: 0,
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

// Provision creates or updates every declared stream and the given
// consumers (the pipeline's whole declared set, pipeline.Consumers). It is
// the only place the pipeline creates NATS resources, and only the admin
// identity may: dunningd with its embedded server, or `dunctl provision`
// before a cluster's services start (they only check, with Missing).
//
// The loans stream is created only on a fresh install, when none of the
// declared streams exists: if it is missing while others exist, its data
// was there and has been removed, and an empty one would silently stand in
// for every loan. That is ErrLoansMissing, unless RecreateLoans says an
// operator chose it (`dunctl provision --recreate-loans`).
//
// Each request gets its own short timeout and is retried until ctx ends: when
// several services create the same replicated stream at once, a NATS cluster
// may answer none of the racing requests (nats-server#3677), though the
// stream was created; the retry then finds it.
//
// K, the loans' partitions, is fixed by the first provisioning: a loan is
// found in the partition its ID hashes to, so provisioning another K over
// stored loans is refused (ErrPartitionsFixed), as is provisioning over a
// loans stream an earlier release wrote without partition tokens
// (ErrOldLayout).
func (t Topology) Provision(ctx context.Context, js jetstream.JetStream, consumers []ConsumerSpec) error {
	if err := t.Partitions.Validate(); t.Partitions != 0 && err != nil {
		return err // 0 is one partition
	}
	info, err := loansInfo(ctx, js)
	if err != nil {
		return err
	}
	if info != nil {
		k, set := info.Config.Metadata[MetaPartitions]
		switch {
		case !set && info.State.Msgs > 0:
			return ErrOldLayout
		case set && k != strconv.Itoa(t.Partitions.Count()):
			return fmt.Errorf("%w: the loans are in %s partitions, asked for %d", ErrPartitionsFixed, k, t.Partitions.Count())
		}
	}
	missing, err := t.Missing(ctx, js, nil)
	if err != nil {
		return err
	}
	for _, loans := range t.Partitions.Streams() {
		if slices.Contains(missing, "stream "+loans) && len(missing) < len(t.Streams()) && !t.RecreateLoans {
			return fmt.Errorf("%w (missing: %s)", ErrLoansMissing, strings.Join(missing, ", "))
		}
	}
	for _, sc := range t.StreamConfigs() {
		if sc.Name == StreamRecord {
			if sc.Sources, err = keptSources(ctx, js, sc.Sources); err != nil {
				return err
			}
		}
		if err := retry(ctx, func(rctx context.Context) error {
			_, err := js.CreateOrUpdateStream(rctx, sc)
			return err
		}); err != nil {
			return fmt.Errorf("provisioning stream %s: %w", sc.Name, err)
		}
	}
	for _, c := range consumers {
		if err := retry(ctx, func(rctx context.Context) error {
			_, err := js.CreateOrUpdateConsumer(rctx, c.Stream, t.ConsumerConfig(c))
			return err
		}); err != nil {
			return fmt.Errorf("provisioning consumer %s: %w", c.Name, err)
		}
	}
	return nil
}

// keptSources are the record's sources to provision: an installed
// record's own, whatever this release declares (the server keys a
// source's progress by its transforms, and would copy every loans stream
// into the record again from the start: TestProvisionKeepsAnInstalledRecord),
// the declared ones (recordSource) for a record created now. K is fixed at
// provisioning, so the sources' streams are the same.
func keptSources(ctx context.Context, js jetstream.JetStream, declared []*jetstream.StreamSource) ([]*jetstream.StreamSource, error) {
	info, err := streamInfo(ctx, js, StreamRecord)
	if err != nil || info == nil || len(info.Config.Sources) == 0 {
		return declared, err
	}
	return info.Config.Sources, nil
}

// ErrPartitionsFixed: provisioning asked for another K than the stored
// loans' (Topology.Partitions).
var ErrPartitionsFixed = errors.New("the number of partitions is fixed when the loans streams are first provisioned")

// ErrOldLayout: the loans stream holds loans an earlier release wrote, in
// subjects without the partition token this release reads them by.
var ErrOldLayout = errors.New("stream " + StreamLoans + " holds loans written by an earlier release, whose subjects carry no partition token: " +
	"this release cannot read them; keep the earlier release for them (README, \"Partitions\")")

// loansInfo is the first loans stream's info, nil if it does not exist.
func loansInfo(ctx context.Context, js jetstream.JetStream) (*jetstream.StreamInfo, error) {
	return streamInfo(ctx, js, StreamLoans)
}

// streamInfo is a stream's info, nil if it does not exist.
func streamInfo(ctx context.Context, js jetstream.JetStream, name string) (*jetstream.StreamInfo, error) {
	var info *jetstream.StreamInfo
	err := retry(ctx, func(rctx context.Context) error {
		s, err := js.Stream(rctx, name)
		if err == nil {
			info = s.CachedInfo()
		}
		return err
	})
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("checking stream %s: %w", name, err)
	}
	return info, nil
}

// ErrUnprovisioned: the first loans stream does not exist, or does not say
// how many partitions there are (Missing and Stale name it).
var ErrUnprovisioned = errors.New("the loans' partitions are not provisioned")

// ReadPartitions is the K the loans streams were provisioned with, from
// the first loans stream's metadata: every service reads it at start, and
// writes each loan to the partition it hashes to.
func ReadPartitions(ctx context.Context, js jetstream.JetStream) (Partitions, error) {
	info, err := loansInfo(ctx, js)
	if err != nil {
		return 0, err
	}
	if info == nil {
		return 0, fmt.Errorf("%w: stream %s does not exist: run dunctl provision", ErrUnprovisioned, StreamLoans)
	}
	v, set := info.Config.Metadata[MetaPartitions]
	if !set {
		return 0, fmt.Errorf("%w: stream %s does not say how many partitions the loans have (provisioned by an earlier release): run dunctl provision", ErrUnprovisioned, StreamLoans)
	}
	k, err := strconv.Atoi(v)
	if err == nil {
		err = Partitions(k).Validate()
	}
	if err != nil {
		return 0, fmt.Errorf("stream %s metadata %s=%q: %w", StreamLoans, MetaPartitions, v, err)
	}
	return Partitions(k), nil
}

// ErrLoansMissing: the loans stream is gone while the rest of the
// pipeline's streams exist.
var ErrLoansMissing = errors.New("stream " + StreamLoans + " is missing while other pipeline streams exist: its loans were deleted; " +
	"restore it (README, \"Restoring the loans stream\") or, to start it empty on purpose, run dunctl provision --recreate-loans")

// Missing names, as "stream NAME" and "consumer NAME", the declared streams
// and the given consumers that do not exist. It needs only read access.
func (t Topology) Missing(ctx context.Context, js jetstream.JetStream, consumers []ConsumerSpec) ([]string, error) {
	streams := t.Streams()
	gone := make([]bool, len(streams)+len(consumers))
	// Read concurrently (at most infoReaders at once): /readyz makes
	// these requests within one 2 s timeout, and with K partitions a
	// process has about ten consumers per partition. The first error
	// only: with the server slow or unreachable every read fails alike.
	var g errgroup.Group
	g.SetLimit(infoReaders)
	check := func(i int, what string, look func(context.Context) error, notFound ...error) {
		g.Go(func() error {
			err := retry(ctx, look)
			switch {
			case slices.ContainsFunc(notFound, func(nf error) bool { return errors.Is(err, nf) }):
				gone[i] = true
			case err != nil:
				return fmt.Errorf("checking %s: %w", what, err)
			}
			return nil
		})
	}
	for i, name := range streams {
		check(i, "stream "+name, func(rctx context.Context) error {
			_, err := js.Stream(rctx, name)
			return err
		}, jetstream.ErrStreamNotFound)
	}
	for i, c := range consumers {
		// The consumer of a missing stream: "stream not found".
		check(len(streams)+i, "consumer "+c.Name, func(rctx context.Context) error {
			_, err := js.Consumer(rctx, c.Stream, c.Name)
			return err
		}, jetstream.ErrConsumerNotFound, jetstream.ErrStreamNotFound)
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var missing []string
	for i, name := range streams {
		if gone[i] {
			missing = append(missing, "stream "+name)
		}
	}
	for i, c := range consumers {
		if gone[len(streams)+i] {
			missing = append(missing, "consumer "+c.Name)
		}
	}
	return missing, nil
}

// infoReaders bounds the info requests Missing has in flight at once.
const infoReaders = 8

// Stale names the declared streams that exist without a property this
// release's services rely on: provisioned by an older release, and not yet
// updated by `dunctl provision` (which does). Today that is direct gets (the
// release gate reads a loan's last intake event with one, and without them
// every release would fail its check until dead-lettered) and the loans'
// partitions recorded in the first loans stream. A service reports
// these as missing (it waits for them at start, and /readyz names them)
// instead of failing message by message.
func (t Topology) Stale(ctx context.Context, js jetstream.JetStream) ([]string, error) {
	var stale []string
	for _, sc := range t.StreamConfigs() {
		if !sc.AllowDirect {
			continue
		}
		info, err := streamInfo(ctx, js, sc.Name)
		switch {
		case err != nil:
			return nil, err
		case info == nil:
			continue // Missing names it
		}
		if !info.Config.AllowDirect {
			stale = append(stale, "direct gets on stream "+sc.Name+" (provisioned by an older release: run dunctl provision)")
		}
		if k, ok := sc.Metadata[MetaPartitions]; ok && info.Config.Metadata[MetaPartitions] != k {
			stale = append(stale, "partitions of stream "+sc.Name+" (provisioned by an older release: run dunctl provision)")
		}
	}
	return stale, nil
}

// errNoPeers is JetStream's "no suitable peers for placement" (nats-server's
// JSClusterNoPeersErrF): on a cluster just started it answers until every
// node's statistics have reached the meta leader, which can be a moment after
// the meta group agrees on its peers (seen in CI: "peer offline" for the
// fourth stream of a provisioning). On a running cluster it means too few
// nodes for the replicas, and the deadline ends the wait.
const errNoPeers jetstream.ErrorCode = 10005

// retry runs f with a 5s timeout per attempt until it succeeds or ctx ends.
// Only time-outs and unavailability (and a placement without peers yet) are retried; a refused configuration is not.
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
		if errors.As(err, &apiErr) && apiErr.Code != 503 && apiErr.ErrorCode != errNoPeers {
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

// Match reports whether a subject matches a filter with NATS wildcards
// ("*" one token, ">" one or more trailing tokens).
func Match(filter, subject string) bool {
	// Token by token without splitting: tests route every stored message
	// through it for each stage's filters.
	for {
		ft, frest, fmore := strings.Cut(filter, ".")
		if ft == ">" {
			return subject != ""
		}
		if subject == "" {
			return false
		}
		st, srest, smore := strings.Cut(subject, ".")
		if ft != "*" && ft != st {
			return false
		}
		if !fmore || !smore {
			return fmore == smore
		}
		filter, subject = frest, srest
	}
}
