package policy

import (
	"slices"
	"sync"
	"time"

	"github.com/opendunning/dunning/pkg/contactrules"
)

// Event is one entry of a loan's log in domain terms. The set is closed: the
// types below are the only implementations.
type Event interface{ event() }

// InstallmentDue is the lender's announcement of an installment.
type InstallmentDue struct {
	ID         string
	Amount     Money
	DueAt      time.Time
	Zone       string
	ContactRef string
	Product    string
	Locale     string // the borrower's language, "" for the policy's default
	// BorrowerRef is the lender's opaque key of the borrower: caps per
	// borrower count across the loans carrying it ("" counts per loan).
	BorrowerRef string
	// Region is the borrower's ISO 3166-2 region ("": not sent), which
	// agency allocation respects.
	Region string
	// Items is the lender's breakdown of Amount (nil: none sent).
	Items *Itemisation
	// LimitationEnds is the day the debt's limitation period ends, as the
	// lender computed it (zero: the policy's limitation_days, if any).
	LimitationEnds time.Time
}

// Itemisation is the lender's breakdown of an amount.
type Itemisation struct {
	Principal, Interest, Fees Money
}

// Charges is what the lender charged beyond principal: interest and fees.
func (i Itemisation) Charges() Money {
	return Money{Currency: i.Principal.Currency, Minor: i.Interest.Minor + i.Fees.Minor}
}

// BalanceUpdated is the lender's itemised overdue balance, as of At.
type BalanceUpdated struct {
	ID      string
	Overdue Itemisation
	At      time.Time
}

// Repayment is money received.
type Repayment struct {
	PaymentID     string
	InstallmentID string // empty: oldest first
	Amount        Money
	PaidAt        time.Time
}

// Outcome is what became of a contact, as its vendor reports it.
type Outcome int

// Outcomes.
const (
	OutcomeNone Outcome = iota
	OutcomeSent
	OutcomeDelivered
	OutcomeFailed
	OutcomeCallConnected
	OutcomeCallRightParty
	OutcomeCallWrongParty
	OutcomeCallNoAnswer
)

var outcomeNames = [...]string{"none", "sent", "delivered", "failed", "call_connected", "call_right_party", "call_wrong_party", "call_no_answer"}

func (o Outcome) String() string { return enumName(outcomeNames[:], int(o), "outcome") }

// Call reports whether the outcome is a call's (connected, by whom, or not).
func (o Outcome) Call() bool { return o >= OutcomeCallConnected && o <= OutcomeCallNoAnswer }

// ContactOutcome records a vendor's report on a contact.
type ContactOutcome struct {
	ContactID string
	Outcome   Outcome
	At        time.Time
	Detail    string
}

// ContactPreference is a borrower's opt-out (or back in) of one channel.
type ContactPreference struct {
	ID       string
	Channel  Channel
	OptedOut bool
	At       time.Time
}

// ContactHours is a borrower's agreement to be contacted outside the
// rules' window, local "HH:MM" From to To (To excluded), or its withdrawal.
type ContactHours struct {
	ID        string
	From, To  string
	Withdrawn bool
	At        time.Time
}

// HoldKind is what a hold is for.
type HoldKind int

// Hold kinds.
const (
	HoldNone HoldKind = iota
	HoldDispute
	HoldHardship
	HoldComplaint
	HoldCeaseAll
	HoldBreathingSpace
	HoldDeceased
	HoldBankruptcy
)

var holdNames = [...]string{"none", "dispute", "hardship", "complaint", "cease_all", "breathing_space", "deceased", "bankruptcy"}

func (k HoldKind) String() string { return enumName(holdNames[:], int(k), "hold") }

// HoldPlaced is a hold on the loan, from At (which may be in the past).
type HoldPlaced struct {
	ID        string
	Kind      HoldKind
	At        time.Time
	ContactID string // a complaint's contact
}

// HoldReleased lifts the hold ID placed.
type HoldReleased struct {
	ID string
	At time.Time
}

// Hold is one hold on the loan and whether it is lifted.
type Hold struct {
	HoldPlaced
	Released time.Time // zero while open
	// DeadlineDone: its deadline step was decided (hold_deadline).
	DeadlineDone bool
}

// OnHold returns the loan's first open hold.
func (c *Case) OnHold() (Hold, bool) {
	for _, h := range c.Holds {
		if h.Released.IsZero() {
			return h, true
		}
	}
	return Hold{}, false
}

// AgencyOutcome is what an agency reported on an account placed with it
// (package outcome checked the placement is its, and still out). A report,
// never money: a payment it names counts only when the lender's repayment
// arrives.
type AgencyOutcome struct {
	ID, Placement, Agency string
	At                    time.Time
	Kind                  string // AgencyContacted, AgencyPromised, AgencyPaid, AgencyDisputed, AgencyReturned
	// Contacted: the channel, and whether the call reached the borrower.
	Channel               Channel
	Connected, RightParty bool
	// Promised and paid: the amount; promised: by when; paid: the
	// payment's reference as the lender will report it.
	Amount    Money
	For       time.Time
	Reference string
	// Disputed and returned: what the agency said.
	Detail string
	// Planned: the plan's installments (the Recorder records it as the
	// borrower's plan agency-<ID>).
	Plan []PlanInstallment
}

// CallOutcome is a reported call's result as the caps count it: connected
// to the borrower, to someone else, or not.
func (a AgencyOutcome) CallOutcome() Outcome {
	switch {
	case a.Connected && a.RightParty:
		return OutcomeCallRightParty
	case a.Connected:
		return OutcomeCallWrongParty
	}
	return OutcomeCallNoAnswer
}

// Task names a reported call where the caps count it beside the loan's
// own tasks.
func (a AgencyOutcome) Task() string { return "agency-" + a.ID }

// Agency outcome kinds.
const (
	AgencyContacted = "contacted"
	AgencyPromised  = "promise"
	AgencyPaid      = "payment"
	AgencyDisputed  = "dispute"
	AgencyReturned  = "returned"
	AgencyPlanned   = "plan"
)

// Sealed is a checkpoint of the loan's hash chain (package packet): the
// chain over every entry before it through sequence Through, after the
// seal at Previous. No case folds it.
type Sealed struct {
	Through  uint64
	Chain    []byte
	Previous uint64
	At       time.Time
	By       string
}

// Settled says the loan owes nothing more.
type Settled struct{ At time.Time }

// Step is a scheduled rung of the ladder: the decision that Stage will take
// at At unless the case changes first.
type Step struct {
	ID    string
	Stage Stage
	Case  int
	DPD   int
	At    time.Time
}

// Same reports whether two steps are the same schedule.
func (s Step) Same(o Step) bool {
	return s.ID == o.ID && s.Stage == o.Stage && s.Case == o.Case && s.DPD == o.DPD && s.At.Equal(o.At)
}

// TimerSet is a pending schedule stored in the log.
type TimerSet struct{ Step Step }

// StepFired is the message the server publishes when a timer comes due.
type StepFired struct{ Step Step }

// DecisionKind names what a stage decided.
type DecisionKind int

// Decision kinds.
const (
	KindNone DecisionKind = iota
	KindOverdueConfirmed
	KindContactRequested
	KindEscalated
	KindHandedOff
	KindLegalReferred
	KindCaseClosed
	KindStepCancelled
	KindEntryDeferred
	// KindContactHeld, KindContactReleased and KindContactCancelled are the
	// release gate's records (gate.go): a contact waits, leaves, or never
	// leaves, with the rule and the time.
	KindContactHeld
	KindContactReleased
	KindContactCancelled
	KindContactSuppressed
	// KindHoldDeadline is a hold's deadline: a breathing space ends, any
	// other hold's review is due (holds.go).
	KindHoldDeadline
	// KindPlacementRecalled takes a placed account back from its agency.
	KindPlacementRecalled
	// KindPromiseKept and KindPromiseBroken resolve a promise to pay
	// (promises.go).
	KindPromiseKept
	KindPromiseBroken
	// KindPlanMissed, KindPlanBroken and KindPlanCompleted move a
	// repayment plan (plans.go).
	KindPlanMissed
	KindPlanBroken
	KindPlanCompleted
	// KindLegalBlocked is a legal referral the pre-legal gate stopped,
	// with what stopped it (legal.go).
	KindLegalBlocked
	// KindAgencyPaymentUnconfirmed is an agency's payment report that no
	// lender repayment confirmed in time (reports.go).
	KindAgencyPaymentUnconfirmed
	// KindRecallRefused is a recall an agency-arranged plan in force
	// stopped (agency.go).
	KindRecallRefused
)

var kindNames = [...]string{"none", "overdue_confirmed", "contact_requested", "escalated", "handed_off", "legal_referred", "case_closed", "step_cancelled", "entry_deferred",
	"contact_held", "contact_released", "contact_cancelled", "contact_suppressed", "hold_deadline", "placement_recalled", "promise_kept", "promise_broken",
	"plan_installment_missed", "plan_broken", "plan_completed", "legal_blocked", "agency_payment_unconfirmed", "recall_refused"}

func (k DecisionKind) String() string { return enumName(kindNames[:], int(k), "decision_kind") }

// Context is where the case stood when a decision was made.
type Context struct {
	Case          int
	Stage         Stage
	Tier          Tier
	DPD           int
	Overdue       Money
	DecidedAt     time.Time
	Reason        string
	StepID        string
	PolicyVersion string
	// AsOf is the instant the decision belongs to: the due time of the
	// step that triggered it, or of the step behind its trigger (zero:
	// DecidedAt). A step that fires late is still decided as of its time
	// by the release gate, so its records are the same however busy the
	// stages were.
	AsOf time.Time
}

// ContactTask is one outbound contact to make.
type ContactTask struct {
	ID         string
	Channel    Channel
	Tone       Tone
	ContactRef string
	Template   string
	Locale     string
	// Reference is the unguessable code a borrower can check with the
	// lender to tell a genuine collector from a fake; the engine fills it.
	Reference        string
	AmountDue        Money
	DPD              int
	RepaymentOptions []string
	Fees             Money
	// NotBefore and NotAfter bound delivery: set when the gate releases
	// the task, to the release instant and the close of the borrower's
	// window. MaxAttempts bounds a vendor's tries (0: no bound of its own).
	NotBefore, NotAfter time.Time
	MaxAttempts         int
	// ReplyBy is a final notice's reply deadline, the borrower's local
	// date (YYYY-MM-DD), which {reply_by} renders.
	ReplyBy string
}

// Decision is a pipeline event: what a stage decided and why.
type Decision struct {
	Kind            DecisionKind
	Ctx             Context
	InstallmentIDs  []string      // OverdueConfirmed
	Tasks           []ContactTask // ContactRequested, Escalated
	AgencyID        string        // HandedOff, PlacementRecalled
	PlacementID     string        // HandedOff, CaseClosed and PlacementRecalled (recalled)
	CloseReason     CloseReason   // CaseClosed
	ClosedAtStage   Stage         // CaseClosed
	CancelledStep   string        // StepCancelled
	DeferredStage   Stage         // EntryDeferred
	Evidence        *Evidence     // LegalReferred
	HeldUntil       time.Time     // ContactHeld: when the gate looks again
	Rule            string        // ContactHeld, ContactCancelled, ContactSuppressed: the rule that holds or stops the tasks; LegalBlocked: what blocks the referral; AgencyPaymentUnconfirmed: the report's reference
	HoldID          string        // HoldDeadline
	HoldLifted      bool          // HoldDeadline: the hold ended with it (breathing space)
	PromiseID       string        // PromiseKept, PromiseBroken
	Paid            Money         // PromiseKept, PromiseBroken, Plan*: paid toward the promise or plan; AgencyPaymentUnconfirmed: the amount reported
	ReportID        string        // AgencyPaymentUnconfirmed: the agency's report
	PlanID          string        // Plan*; RecallRefused: the agency's plan in force
	PlanInstallment int           // PlanMissed, PlanBroken: its position in the plan as it stood
	MovedTo         time.Time     // PlanMissed: the missed installment's new day, at the plan's end
}

// Evidence is the packet that accompanies a legal referral.
type Evidence struct {
	Installments []InstallmentDue
	Repayments   []Repayment
	Contacts     []ContactTask
	LogSeqs      []uint64
	PlacementID  string
}

func (InstallmentDue) event()    {}
func (Repayment) event()         {}
func (Settled) event()           {}
func (ContactOutcome) event()    {}
func (ContactPreference) event() {}
func (ContactHours) event()      {}
func (HoldPlaced) event()        {}
func (HoldReleased) event()      {}
func (PromiseToPay) event()      {}
func (BalanceUpdated) event()    {}
func (RepaymentPlan) event()     {}
func (PlanCancelled) event()     {}
func (TimerSet) event()          {}
func (StepFired) event()         {}
func (Decision) event()          {}
func (Sealed) event()            {}
func (AgencyOutcome) event()     {}

// Entry is an event with its position in the loan's log.
type Entry struct {
	Seq   uint64
	Time  time.Time
	Event Event
}

// Pending is the step the loan's timer holds, or the step that fired and
// awaits its stage.
type Pending struct {
	Step  Step
	Fired bool
}

// Case is a loan's state, folded from its log. It is rebuilt for every
// decision; no service keeps it between messages.
type Case struct {
	Installments []InstallmentDue // in due order
	Repayments   []Repayment
	Settled      bool

	Number      int // current (open) or last case number; 0 before the first
	Open        bool
	Stage       Stage
	DPD         int    // DPD of the last decision
	PlacementID string // the open case's placement with an agency, until recalled
	AgencyID    string
	PlacedAt    time.Time // when the open placement was made (its expiry counts from it)
	// RecallsRefused are the recalls an agency's plan stopped, as
	// "<rule>/<placement>": each is recorded once.
	RecallsRefused []string
	// Entered is when the open case last entered a stage (confirmation,
	// escalation, handoff, legal referral): the next entry comes a day
	// after it at the earliest.
	Entered    time.Time
	Contacts   []ContactTask
	Pending    *Pending
	Seqs       []uint64
	LastReason CloseReason
	// Done holds the steps the open case has decided.
	Done map[string]bool
	// Deferred holds, per entry step of the open case, the DPD its entry
	// condition last failed on.
	Deferred map[string]int
	// CaseInstallments were overdue when the open case was confirmed; the
	// case's DPD counts from the oldest of them once everything is paid.
	CaseInstallments []string
	// Gate is every contact task asked for, in order, and where it stands
	// at the release gate.
	Gate []GatedTask
	// confirmedAsOf is the open case's confirmation's AsOf, which its first
	// contact takes.
	confirmedAsOf time.Time
	// firstContactHeld: a hold came between the open case's confirmation
	// and its first contact.
	firstContactHeld bool
	// Outcomes are the vendors' reports on the loan's contacts, in order.
	Outcomes []ContactOutcome
	// OptedOut holds the channels the borrower opted out of (the latest
	// preference per channel, in log order).
	OptedOut map[Channel]bool
	// Key identifies the loan (LoanKey) for what is drawn per loan, such as
	// its place in the send spread. The engine sets it; Fold cannot.
	Key string
	// Holds are the loan's holds, open and lifted, in log order.
	Holds []Hold
	// Promises are the borrower's promises to pay, in log order; Plans
	// its repayment plans.
	Promises []Promise
	Plans    []Plan
	// Balance is the lender's latest itemised overdue balance (nil: none).
	Balance *BalanceUpdated
	// AgreedHours widens the contact window, as the borrower agreed (the
	// latest agreement; nil when none or withdrawn).
	AgreedHours *contactrules.Hours
	// FinalNotice is the open case's final notice before legal referral
	// (nil: none yet); LegalBarred, what bars the referral for good
	// ("": nothing).
	FinalNotice *FinalNoticeSent
	LegalBarred string
	// AgencyCalls are the calls the agency reported on the loan (its
	// contacted outcomes), which the caps count like the lender's own.
	AgencyCalls []AgencyOutcome
	// Borrower holds the entries of the borrower's log written for the
	// borrower's other loans (caps per borrower count them). The engine
	// reads them for the release gate when the loan has a borrower key.
	Borrower []BorrowerEntry
	// AgencyLoad is each agency's open placements under the tenant's
	// contracts, which allocation weighs against capacity. The engine reads
	// the counters for handoff (stage.Placements); nil: none read.
	AgencyLoad map[string]int
	// Share is the part of each contract's capacity AgencyLoad counts
	// against: the loan's partition's (Share).
	Share Share
	// LegalOutcomes are what the lender reported of the loan's legal
	// referral, in order (recorded once each).
	LegalOutcomes []LegalOutcome
	// PaymentReports are the payments agencies reported on the loan, each
	// watched until a lender repayment confirms it (reports.go).
	PaymentReports []PaymentReport
}

// Fold builds a case from a loan's log in order.
func Fold(entries []Entry) *Case {
	c := &Case{}
	for _, e := range entries {
		c.Apply(e)
	}
	return c
}

// Apply folds one entry into the case. Lender events are idempotent by
// identifier: a repeated installment or payment changes nothing.
func (c *Case) Apply(e Entry) {
	if e.Seq != 0 {
		c.Seqs = append(c.Seqs, e.Seq)
	}
	switch ev := e.Event.(type) {
	case InstallmentDue:
		if slices.ContainsFunc(c.Installments, func(i InstallmentDue) bool { return i.ID == ev.ID }) {
			return
		}
		c.Installments = append(c.Installments, ev)
		slices.SortStableFunc(c.Installments, func(a, b InstallmentDue) int { return a.DueAt.Compare(b.DueAt) })
	case Repayment:
		if slices.ContainsFunc(c.Repayments, func(r Repayment) bool { return r.PaymentID == ev.PaymentID }) {
			return
		}
		c.Repayments = append(c.Repayments, ev)
		c.confirmReports(ev)
		// The lender's itemised balance is stale once money comes in:
		// texts go back to the itemisation until it sends a new one.
		c.Balance = nil
		if c.towardArrears(ev) {
			c.payTowardPromise(ev)
			c.payTowardPlan(ev)
		}
	case PromiseToPay:
		c.applyPromise(ev)
	case RepaymentPlan:
		c.applyPlan(ev)
	case BalanceUpdated:
		c.Balance = &ev
	case PlanCancelled:
		c.cancelPlan(ev)
	case Settled:
		c.Settled = true
	case ContactOutcome:
		c.Outcomes = append(c.Outcomes, ev)
	case LegalOutcome:
		if !slices.ContainsFunc(c.LegalOutcomes, func(o LegalOutcome) bool { return o.ID == ev.ID }) {
			c.LegalOutcomes = append(c.LegalOutcomes, ev)
		}
	case AgencyOutcome:
		c.applyReport(ev)
		if ev.Kind == AgencyContacted && !slices.ContainsFunc(c.AgencyCalls, func(a AgencyOutcome) bool { return a.ID == ev.ID }) {
			c.AgencyCalls = append(c.AgencyCalls, ev)
		}
	case ContactPreference:
		if c.OptedOut == nil {
			c.OptedOut = map[Channel]bool{}
		}
		c.OptedOut[ev.Channel] = ev.OptedOut
	case HoldPlaced:
		if !slices.ContainsFunc(c.Holds, func(h Hold) bool { return h.ID == ev.ID }) {
			c.Holds = append(c.Holds, Hold{HoldPlaced: ev})
			// Held between the confirmation and its first contact: the
			// first contact waits for the release (FirstContactHeld).
			c.firstContactHeld = c.firstContactHeld || (c.Open && c.Stage == StageOverdueConfirmation)
		}
	case HoldReleased:
		for i := range c.Holds {
			if c.Holds[i].ID == ev.ID && c.Holds[i].Released.IsZero() {
				c.Holds[i].Released = ev.At
			}
		}
	case ContactHours:
		c.AgreedHours = nil
		if !ev.Withdrawn {
			from, ferr := contactrules.ParseWall(ev.From)
			to, terr := contactrules.ParseWall(ev.To)
			if ferr == nil && terr == nil && from < to {
				c.AgreedHours = &contactrules.Hours{From: from, To: to}
			}
		}
	case TimerSet:
		c.Pending = &Pending{Step: ev.Step}
	case StepFired:
		c.Pending = &Pending{Step: ev.Step, Fired: true}
	case Decision:
		c.applyDecision(ev)
	}
}

func (c *Case) applyDecision(d Decision) {
	if c.Pending != nil && d.Ctx.StepID != "" && c.Pending.Step.ID == d.Ctx.StepID {
		c.Pending = nil
	}
	if d.Kind.Gate() {
		// The gate's records move tasks, never the case: its DPD, stage
		// and decided steps are the ladder's.
		c.applyGate(d)
		return
	}
	if d.Kind != KindStepCancelled && d.Kind != KindHoldDeadline && d.Kind != KindPlacementRecalled && d.Kind != KindLegalBlocked &&
		d.Kind != KindAgencyPaymentUnconfirmed && d.Kind != KindRecallRefused {
		c.DPD = d.Ctx.DPD
	}
	if d.Kind == KindOverdueConfirmed {
		c.Done = map[string]bool{}
		c.Deferred = map[string]int{}
	}
	if d.Kind == KindEntryDeferred {
		if c.Deferred == nil {
			c.Deferred = map[string]int{}
		}
		c.Deferred[d.Ctx.StepID] = d.Ctx.DPD
	} else if d.Kind != KindStepCancelled && d.Ctx.StepID != "" {
		if c.Done == nil {
			c.Done = map[string]bool{}
		}
		c.Done[d.Ctx.StepID] = true
	}
	switch d.Kind {
	case KindOverdueConfirmed:
		c.confirmedAsOf = d.Ctx.AsOf
		c.firstContactHeld = false
		c.CaseInstallments = d.InstallmentIDs
		c.Number = d.Ctx.Case
		c.Open = true
		c.Stage = StageOverdueConfirmation
		c.PlacementID, c.AgencyID = "", ""
		c.Entered = d.Ctx.AsOfOrDecided()
		c.FinalNotice, c.LegalBarred = nil, ""
	case KindContactRequested:
		c.Stage = max(c.Stage, d.Ctx.Stage, StageFirstContact)
		c.Contacts = append(c.Contacts, d.Tasks...)
		c.request(d)
		c.noticeSent(d)
	case KindAgencyPaymentUnconfirmed:
		c.flagReport(d.ReportID)
	case KindRecallRefused:
		c.RecallsRefused = append(c.RecallsRefused, d.Rule+"/"+d.PlacementID)
	case KindLegalBlocked:
		if d.Rule != BlockedByHold {
			c.LegalBarred = d.Rule
		}
	case KindEscalated:
		c.Stage = StageEscalation
		c.Contacts = append(c.Contacts, d.Tasks...)
		c.request(d)
		c.Entered = d.Ctx.AsOfOrDecided()
	case KindHandedOff:
		c.Stage = StageHandoff
		c.PlacementID, c.AgencyID = d.PlacementID, d.AgencyID
		c.Entered = d.Ctx.AsOfOrDecided()
		c.PlacedAt = c.Entered
	case KindLegalReferred:
		c.Stage = StageLegal
		c.Entered = d.Ctx.AsOfOrDecided()
	case KindPromiseKept, KindPromiseBroken:
		c.resolvePromise(d)
	case KindPlanMissed, KindPlanBroken, KindPlanCompleted:
		c.applyPlanProgress(d)
	case KindPlacementRecalled:
		if c.PlacementID == d.PlacementID {
			c.PlacementID, c.AgencyID = "", ""
		}
	case KindHoldDeadline:
		for i := range c.Holds {
			if h := &c.Holds[i]; h.ID == d.HoldID {
				h.DeadlineDone = true
				if d.HoldLifted && h.Released.IsZero() {
					h.Released = d.Ctx.AsOfOrDecided()
				}
			}
		}
	case KindCaseClosed:
		c.endCommitments()
		c.Balance = nil
		c.Open = false
		c.Stage = StageNone
		c.LastReason = d.CloseReason
		c.Pending = nil
		c.PlacementID, c.AgencyID = "", ""
	case KindStepCancelled:
		if c.Pending != nil && c.Pending.Step.ID == d.CancelledStep {
			c.Pending = nil
		}
	}
}

// towardArrears reports whether a payment goes to what is overdue, and so
// toward the open promise and the plan in force: not one the lender
// earmarked for an installment not yet due when it was paid.
func (c *Case) towardArrears(r Repayment) bool {
	if r.InstallmentID == "" {
		return true
	}
	i := slices.IndexFunc(c.Installments, func(in InstallmentDue) bool { return in.ID == r.InstallmentID })
	return i < 0 || c.Installments[i].DueAt.Before(r.PaidAt)
}

// Outstanding returns what is still owed on each installment, in due order.
// Payments for a named installment go to it first; the rest, and payments
// naming no installment or one not yet announced, pay the oldest first. A
// payment that arrives before its installment (out of order) is therefore
// applied as soon as the installment is known.
func (c *Case) Outstanding() []int64 {
	owed, _ := c.allocate()
	return owed
}

// Overpaid is what the loan's repayments exceed every announced installment
// by: money the lender holds as the borrower's credit, flagged in the
// timeline and counted (dunning_overpayments_total), never silently
// absorbed. A later installment takes it first.
func (c *Case) Overpaid() Money {
	_, surplus := c.allocate()
	return Money{Currency: c.currency(), Minor: surplus}
}

// allocate applies the repayments to the installments: what is still owed
// on each, and what is left over.
func (c *Case) allocate() ([]int64, int64) {
	owed := make([]int64, len(c.Installments))
	for i, in := range c.Installments {
		if in.Amount.Currency == c.currency() {
			owed[i] = in.Amount.Minor
		}
	}
	if c.Settled {
		return make([]int64, len(owed)), 0
	}
	var pool int64
	cur := c.currency()
	for _, r := range c.Repayments {
		if r.Amount.Currency != cur {
			continue // not this loan's money: the overdue stage dead-letters it
		}
		amt := r.Amount.Minor
		if r.InstallmentID != "" {
			if i := slices.IndexFunc(c.Installments, func(in InstallmentDue) bool { return in.ID == r.InstallmentID }); i >= 0 {
				take := min(amt, owed[i])
				owed[i] -= take
				amt -= take
			}
		}
		pool += amt
	}
	for i := range owed {
		take := min(pool, owed[i])
		owed[i] -= take
		pool -= take
	}
	return owed, pool
}

// Product is the loan's product code (from its first installment), "" if none.
func (c *Case) Product() string {
	if len(c.Installments) == 0 {
		return ""
	}
	return c.Installments[0].Product
}

// anchor is the oldest installment with something still owed: DPD counts from it.
func (c *Case) anchor() (InstallmentDue, bool) {
	for i, o := range c.Outstanding() {
		if o > 0 {
			return c.Installments[i], true
		}
	}
	return InstallmentDue{}, false
}

// Overdue returns the balance overdue at now (installments at DPD >= 1) and
// the overdue installments' identifiers.
func (c *Case) Overdue(cal Calendar, now time.Time) (Money, []string) {
	m := Money{Currency: c.currency()}
	var ids []string
	for i, o := range c.Outstanding() {
		in := c.Installments[i]
		if o > 0 && cal.DPD(in.DueAt, zone(in.Zone), now) >= 1 {
			m.Minor += o
			ids = append(ids, in.ID)
		}
	}
	return m, ids
}

// Currency is the loan's currency: its first installment's. Money in any
// other currency is not counted.
func (c *Case) Currency() string { return c.currency() }

func (c *Case) currency() string {
	if len(c.Installments) > 0 {
		return c.Installments[0].Amount.Currency
	}
	if len(c.Repayments) > 0 {
		return c.Repayments[0].Amount.Currency
	}
	return ""
}

// zone resolves an IANA zone name; unknown names were rejected at ingest, so
// UTC here is only a fallback for logs written by older versions.
func zone(name string) *time.Location {
	if name == "" {
		return time.UTC
	}
	if l, ok := zones.Load(name); ok {
		return l.(*time.Location)
	}
	loc, err := LoadZone(name)
	if err != nil {
		return time.UTC
	}
	return loc
}

// zones caches loaded time zones: time.LoadLocation reads the zone database
// on every call.
var zones sync.Map

// LoadZone resolves an IANA time zone name, caching the result.
func LoadZone(name string) (*time.Location, error) {
	if l, ok := zones.Load(name); ok {
		return l.(*time.Location), nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, err
	}
	zones.Store(name, loc)
	return loc, nil
}
