// Package timeline renders a loan's log as the story of its case: every
// event in order with the stage, tier, DPD and reason at that point.
package timeline

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/opendunning/dunning/pkg/codec"
	"github.com/opendunning/dunning/pkg/loanlog"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/topology"
)

// Entry is one line of a loan's timeline.
type Entry struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Subject string    `json:"subject"`
	Kind    string    `json:"kind"`
	Case    int       `json:"case"`
	Stage   string    `json:"stage"`
	Tier    string    `json:"tier"`
	DPD     int       `json:"dpd"`
	Reason  string    `json:"reason"`
	// Principal is who sent a lender event (an API key, the NATS lender).
	Principal string          `json:"principal,omitempty"`
	Event     json.RawMessage `json:"event,omitempty"`
	// Flags mark what an auditor must see: contact_after_hold on a
	// contact made after a hold took effect but before it was recorded (a
	// hold received late, its receivedAt in the past).
	Flags []string `json:"flags,omitempty"`
}

// FlagContactAfterHold marks a contact made while a hold, recorded only
// later, was already in effect.
const FlagContactAfterHold = "contact_after_hold"

// Promise is one of the loan's promises to pay and where it stands: open,
// kept or broken, and what was paid toward it.
type Promise struct {
	ID          string    `json:"promise_id"`
	Amount      string    `json:"amount"`
	PromisedFor time.Time `json:"promised_for"`
	Paid        string    `json:"paid"`
	State       string    `json:"state"`
}

// Plan is one of the loan's repayment plans and where it stands: kept,
// completed, broken or cancelled, its installments as they stand (a missed
// one moved to the end), how many are paid, and what was paid toward it.
type Plan struct {
	ID           string        `json:"plan_id"`
	State        string        `json:"state"`
	Installments []PlanPayment `json:"installments"`
	PaidCount    int           `json:"installments_paid"`
	Paid         string        `json:"paid"`
}

// PlanPayment is one installment of a plan.
type PlanPayment struct {
	DueAt  time.Time `json:"due_at"`
	Amount string    `json:"amount"`
}

// Hold is one of the loan's holds, open or released.
type Hold struct {
	ID         string     `json:"hold_id"`
	Kind       string     `json:"kind"`
	PlacedAt   time.Time  `json:"placed_at"`
	ReleasedAt *time.Time `json:"released_at,omitempty"`
	ContactID  string     `json:"contact_id,omitempty"`
	Open       bool       `json:"open"`
}

// Timeline is a loan's case history.
type Timeline struct {
	Tenant  string `json:"tenant_id"`
	Loan    string `json:"loan_id"`
	Open    bool   `json:"open"`
	Stage   string `json:"stage"`
	Overdue string `json:"overdue"`
	Pending string `json:"pending_step,omitempty"`
	// Holds are the loan's holds, in the order they were placed;
	// Promises its promises to pay.
	Holds    []Hold    `json:"holds"`
	Promises []Promise `json:"promises"`
	Plans    []Plan    `json:"plans"`
	Entries  []Entry   `json:"entries"`
}

// WriteText renders the timeline as a table with aligned columns, one
// entry a line: seq, kind, stage, tier, DPD and reason. It is what
// `GET .../timeline?format=text` serves and `dunctl timeline` prints.
func (tl Timeline) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	var err error
	row := func(cells ...string) {
		if err == nil {
			_, err = io.WriteString(tw, strings.Join(cells, "\t")+"\n")
		}
	}
	row("seq", "kind", "stage", "tier", "dpd", "reason")
	for _, e := range tl.Entries {
		reason := e.Reason
		for _, f := range e.Flags {
			reason += " [FLAGGED " + f + "]"
		}
		row(fmt.Sprint(e.Seq), cell(e.Kind), cell(e.Stage), cell(e.Tier), fmt.Sprint(e.DPD), cell(reason))
	}
	if err != nil {
		return err
	}
	return tw.Flush()
}

// cell makes s one table cell: "-" when empty, and control characters
// (a vendor's outcome detail may hold tabs or newlines) as spaces, so that
// every entry stays on one line of its columns.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// Read builds a loan's timeline from its log.
func Read(ctx context.Context, log *loanlog.Log, ladder func(tenant, product string) policy.Ladder, tenant, loan string, now time.Time) (Timeline, error) {
	raws, _, err := log.ReadRaw(ctx, tenant, loan)
	if err != nil {
		return Timeline{}, err
	}
	return Build(ladder(tenant, product(raws)), tenant, loan, raws, now), nil
}

// product is the loan's product code, from its first installment.
func product(raws []loanlog.Raw) string {
	for _, r := range raws {
		addr, err := topology.ParseLoanSubject(r.Subject)
		if err != nil || addr.Kind != codec.Due.Token {
			continue
		}
		if ev, err := codec.DecodeStored(addr, r.Header, r.Data); err == nil {
			return ev.(policy.InstallmentDue).Product
		}
	}
	return ""
}

// Build folds raw log entries into a timeline.
func Build(l policy.Ladder, tenant, loan string, raws []loanlog.Raw, now time.Time) Timeline {
	tl := Timeline{Tenant: tenant, Loan: loan, Entries: []Entry{}, Holds: []Hold{}, Promises: []Promise{}, Plans: []Plan{}}
	c := &policy.Case{}
	var made []contactMade
	for _, r := range raws {
		e := Entry{Seq: r.Seq, Time: r.Time, Subject: r.Subject, Principal: r.Header.Get(loanlog.HeaderPrincipal)}
		addr, err := topology.ParseLoanSubject(r.Subject)
		if err != nil {
			e.Kind, e.Reason = "invalid", err.Error()
			tl.Entries = append(tl.Entries, e)
			continue
		}
		ev, err := codec.DecodeStored(addr, r.Header, r.Data)
		if err != nil {
			e.Kind, e.Reason = "invalid", err.Error()
			tl.Entries = append(tl.Entries, e)
			continue
		}
		if k, ok := codec.ByToken(addr.Kind); ok {
			if pm := k.NewMessage(); proto.Unmarshal(r.Data, pm) == nil {
				if b, err := protojson.Marshal(pm); err == nil {
					e.Event = b
				}
			}
		}
		c.Apply(policy.Entry{Seq: r.Seq, Time: r.Time, Event: ev})
		describe(&e, l, c, ev, r.Time)
		tl.Entries = append(tl.Entries, e)
		switch x := ev.(type) {
		case policy.Decision:
			if x.Kind == policy.KindContactReleased {
				made = append(made, contactMade{entry: len(tl.Entries) - 1, at: releasedAt(x)})
			}
		case policy.HoldPlaced:
			flagContactsAfter(&tl, made, x)
		}
	}
	for _, h := range c.Holds {
		v := Hold{ID: h.ID, Kind: h.Kind.String(), PlacedAt: h.At, ContactID: h.ContactID, Open: h.Released.IsZero()}
		if !v.Open {
			v.ReleasedAt = &h.Released
		}
		tl.Holds = append(tl.Holds, v)
	}
	for _, p := range c.Promises {
		state := "open"
		switch {
		case p.Kept:
			state = "kept"
		case p.Broken:
			state = "broken"
		case p.Ended:
			state = "ended_with_case"
		}
		tl.Promises = append(tl.Promises, Promise{ID: p.ID, Amount: p.Amount.String(), PromisedFor: p.For,
			Paid: policy.Money{Currency: p.Amount.Currency, Minor: p.Paid}.String(), State: state})
	}
	for _, p := range c.Plans {
		v := Plan{ID: p.ID, State: "kept", PaidCount: p.Next, Installments: []PlanPayment{}}
		switch {
		case p.Completed:
			v.State = "completed"
		case p.Broken:
			v.State = "broken"
		case p.Cancelled:
			v.State = "cancelled"
		case p.Ended:
			v.State = "ended_with_case"
		}
		cur := ""
		for _, in := range p.Schedule {
			v.Installments = append(v.Installments, PlanPayment{DueAt: in.DueAt, Amount: in.Amount.String()})
			cur = in.Amount.Currency
		}
		v.Paid = policy.Money{Currency: cur, Minor: p.Paid}.String()
		tl.Plans = append(tl.Plans, v)
	}
	tl.Open = c.Open
	tl.Stage = c.Stage.String()
	overdue, _ := c.Overdue(l.Calendar, now)
	tl.Overdue = overdue.String()
	if c.Pending != nil {
		s := c.Pending.Step
		tl.Pending = fmt.Sprintf("%s at DPD %d (%s)", s.ID, s.DPD, s.At.UTC().Format(time.RFC3339Nano))
	}
	return tl
}

// contactMade is a released contact: its timeline entry and when it left.
type contactMade struct {
	entry int
	at    time.Time
}

// releasedAt is when a release's contacts left: the release instant its
// tasks carry, or when it was decided.
func releasedAt(d policy.Decision) time.Time {
	if len(d.Tasks) > 0 && !d.Tasks[0].NotBefore.IsZero() {
		return d.Tasks[0].NotBefore
	}
	return d.Ctx.DecidedAt
}

// flagContactsAfter flags the contacts made from a hold's receivedAt until
// it was recorded: the borrower had disputed (or died, or asked for
// breathing space) before them, and the lender told the pipeline late.
func flagContactsAfter(tl *Timeline, made []contactMade, h policy.HoldPlaced) {
	n := 0
	for _, m := range made {
		if e := &tl.Entries[m.entry]; !m.at.Before(h.At) && !slices.Contains(e.Flags, FlagContactAfterHold) {
			e.Flags = append(e.Flags, FlagContactAfterHold)
			e.Reason += fmt.Sprintf("; made after %s hold %s took effect (%s), recorded later", h.Kind, h.ID, h.At.UTC().Format(time.RFC3339))
			n++
		}
	}
	if n > 0 {
		e := &tl.Entries[len(tl.Entries)-1]
		e.Reason += fmt.Sprintf("; received late: %d contact release(s) made since it took effect are flagged %s", n, FlagContactAfterHold)
	}
}

func describe(e *Entry, l policy.Ladder, c *policy.Case, ev policy.Event, at time.Time) {
	lender := func(kind, reason string) {
		e.Kind, e.Reason = kind, reason
		e.Case, e.Stage = c.Number, c.Stage.String()
		e.DPD = l.DPDAt(c, at)
		if c.Open {
			e.Tier = l.Policy.TierAt(e.DPD).String()
		} else {
			e.Tier = policy.TierNone.String()
		}
	}
	switch x := ev.(type) {
	case policy.InstallmentDue:
		reason := fmt.Sprintf("installment %s of %s due %s", x.ID, x.Amount, x.DueAt.UTC().Format(time.RFC3339))
		if it := x.Items; it != nil {
			reason += fmt.Sprintf(" (principal %s, interest %s, fees %s)", it.Principal, it.Interest, it.Fees)
		}
		lender("installment_due", reason)
	case policy.Repayment:
		o, _ := c.Overdue(l.Calendar, at)
		reason := fmt.Sprintf("payment %s of %s; overdue now %s", x.PaymentID, x.Amount, o)
		if over := c.Overpaid(); over.Minor > 0 {
			reason += fmt.Sprintf("; OVERPAID: %s more than every announced installment (the borrower's credit)", over)
		}
		lender("repayment_received", reason)
	case policy.Settled:
		lender("loan_settled", "lender reported the loan settled")
	case policy.ContactOutcome:
		lender("contact_outcome", fmt.Sprintf("contact %s: %s %s", x.ContactID, x.Outcome, x.Detail))
	case policy.ContactPreference:
		choice := "opted out of"
		if !x.OptedOut {
			choice = "opted back in to"
		}
		lender("contact_preference", fmt.Sprintf("the borrower %s %s", choice, x.Channel))
	case policy.HoldPlaced:
		reason := fmt.Sprintf("%s hold %s from %s: no contact, no stage entered until it is released", x.Kind, x.ID, x.At.UTC().Format(time.RFC3339))
		if x.ContactID != "" {
			reason += "; about contact " + x.ContactID
		}
		lender("hold_placed", reason)
	case policy.HoldReleased:
		lender("hold_released", fmt.Sprintf("hold %s released at %s: the ladder resumes", x.ID, x.At.UTC().Format(time.RFC3339)))
	case policy.PromiseToPay:
		lender("promise_to_pay", fmt.Sprintf("the borrower promised to pay %s by %s: no cadence contact and no stage until it is kept or broken",
			x.Amount, x.For.UTC().Format(time.RFC3339)))
	case policy.RepaymentPlan:
		var total int64
		cur := ""
		for _, in := range x.Installments {
			total, cur = total+in.Amount.Minor, in.Amount.Currency
		}
		lender("repayment_plan", fmt.Sprintf("repayment plan %s agreed: %d installments, %s in all, the first due %s; it replaces the ladder while kept",
			x.ID, len(x.Installments), policy.Money{Currency: cur, Minor: total}, x.Installments[0].DueAt.UTC().Format(time.RFC3339)))
	case policy.BalanceUpdated:
		lender("balance_updated", fmt.Sprintf("the lender's overdue balance as of %s: principal %s, interest %s, fees %s (texts show these charges)",
			x.At.UTC().Format(time.RFC3339), x.Overdue.Principal, x.Overdue.Interest, x.Overdue.Fees))
	case policy.LegalOutcome:
		reason := fmt.Sprintf("legal referral %s at %s", x.Status, x.At.UTC().Format(time.RFC3339))
		if x.Reference != "" {
			reason += " (case " + x.Reference + ")"
		}
		lender("legal_outcome", reason)
	case policy.PlanCancelled:
		lender("plan_cancelled", fmt.Sprintf("repayment plan %s cancelled by the lender: the ladder resumes", x.ID))
	case policy.ContactHours:
		if x.Withdrawn {
			lender("contact_hours", "the borrower withdrew the agreement to contact outside the rules' hours")
		} else {
			lender("contact_hours", fmt.Sprintf("the borrower agreed to contact %s-%s local", x.From, x.To))
		}
	case policy.TimerSet:
		e.Kind, e.Case, e.Stage, e.DPD = "step_scheduled", x.Step.Case, x.Step.Stage.String(), x.Step.DPD
		e.Tier = l.Policy.TierAt(x.Step.DPD).String()
		e.Reason = fmt.Sprintf("%s scheduled for DPD %d at %s", x.Step.ID, x.Step.DPD, x.Step.At.UTC().Format(time.RFC3339Nano))
	case policy.StepFired:
		e.Kind, e.Case, e.Stage, e.DPD = "step_fired", x.Step.Case, x.Step.Stage.String(), x.Step.DPD
		e.Tier = l.Policy.TierAt(x.Step.DPD).String()
		e.Reason = fmt.Sprintf("%s came due", x.Step.ID)
	case policy.Decision:
		e.Kind, e.Case, e.Stage, e.Tier, e.DPD = x.Kind.String(), x.Ctx.Case, x.Ctx.Stage.String(), x.Ctx.Tier.String(), x.Ctx.DPD
		e.Reason = x.Ctx.Reason
	case policy.AgencyOutcome:
		e.Kind, e.Stage, e.Tier = "agency_outcome", c.Stage.String(), policy.TierNone.String()
		what := x.Kind
		switch x.Kind {
		case policy.AgencyContacted:
			what = fmt.Sprintf("contacted by %s (connected %t, right party %t)", x.Channel, x.Connected, x.RightParty)
		case policy.AgencyPromised:
			what = fmt.Sprintf("the borrower promised %s by %s", x.Amount, x.For.UTC().Format(time.RFC3339))
		case policy.AgencyPaid:
			what = fmt.Sprintf("the borrower says it paid %s (reference %s): not money until the lender reports it", x.Amount, x.Reference)
		case policy.AgencyDisputed, policy.AgencyReturned:
			what = x.Kind + ": " + x.Detail
		case policy.AgencyPlanned:
			what = fmt.Sprintf("the borrower agreed a plan of %d installments (the borrower's plan %s%s)", len(x.Plan), policy.AgencyPlanPrefix, x.ID)
		}
		e.Reason = fmt.Sprintf("agency %s reported on placement %s: %s", x.Agency, x.Placement, what)
	case policy.Sealed:
		e.Kind, e.Stage, e.Tier = "log_sealed", policy.StageNone.String(), policy.TierNone.String()
		e.Reason = fmt.Sprintf("the log sealed through seq %d for a legal packet (chain %x), by %s", x.Through, x.Chain, x.By)
	}
}

// HideCodes removes the borrowers' verification codes (each contact's
// "reference") from the entries' events.
func (tl *Timeline) HideCodes() {
	for i, e := range tl.Entries {
		if len(e.Event) == 0 {
			continue
		}
		var v any
		if json.Unmarshal(e.Event, &v) != nil {
			tl.Entries[i].Event = nil
			continue
		}
		if b, err := json.Marshal(dropKey(v, "reference")); err == nil {
			tl.Entries[i].Event = b
		}
	}
}

func dropKey(v any, key string) any {
	switch t := v.(type) {
	case map[string]any:
		delete(t, key)
		for k, c := range t {
			t[k] = dropKey(c, key)
		}
	case []any:
		for i, c := range t {
			t[i] = dropKey(c, key)
		}
	}
	return v
}
