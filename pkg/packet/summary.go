package packet

import (
	"fmt"
	"slices"
	"time"

	"github.com/opendunning/dunning/pkg/policy"
)

// Summary is what a reader of the packet looks for first, derived from its
// entries alone (the lender's figures, never the policy's): the statement,
// the notices that left, the holds, promises and plans, the agency history
// and the legal decisions, each naming the entries it comes from.
type Summary struct {
	Statement Statement   `json:"statement"`
	Notices   []Notice    `json:"notices_sent"`
	Holds     []Hold      `json:"holds"`
	Promises  []Promise   `json:"promises"`
	Plans     []Plan      `json:"plans"`
	Agency    []Placement `json:"agency_history"`
	Legal     []Legal     `json:"legal"`
}

// Statement itemises the loan from the lender's events: each installment
// (with principal, interest and fees where the lender sent them), each
// payment, the lender's latest itemised overdue balance, and the totals.
type Statement struct {
	Currency     string        `json:"currency"`
	Installments []Installment `json:"installments"`
	Payments     []Payment     `json:"payments"`
	// Balance is the lender's latest itemised overdue balance (absent:
	// none sent, or money came in since).
	Balance     *Itemised `json:"lender_balance,omitempty"`
	Due         string    `json:"total_due"`
	Paid        string    `json:"total_paid"`
	Outstanding string    `json:"outstanding"`
	Settled     bool      `json:"settled"`
}

// Installment is one installment as the lender announced it.
type Installment struct {
	Seq         uint64    `json:"seq"`
	ID          string    `json:"installment_id"`
	DueAt       time.Time `json:"due_at"`
	Amount      string    `json:"amount"`
	Items       *Itemised `json:"itemised,omitempty"`
	Outstanding string    `json:"outstanding"`
}

// Itemised is the lender's breakdown of an amount.
type Itemised struct {
	Principal string `json:"principal"`
	Interest  string `json:"interest"`
	Fees      string `json:"fees"`
}

// Payment is one repayment the lender reported.
type Payment struct {
	Seq         uint64    `json:"seq"`
	ID          string    `json:"payment_id"`
	PaidAt      time.Time `json:"paid_at"`
	Amount      string    `json:"amount"`
	Installment string    `json:"installment_id,omitempty"`
}

// Notice is one contact that left the release gate.
type Notice struct {
	Seq      uint64    `json:"seq"`
	Contact  string    `json:"contact_id"`
	Channel  string    `json:"channel"`
	Template string    `json:"template"`
	Released time.Time `json:"released_at"`
	Amount   string    `json:"amount_due"`
	Fees     string    `json:"fees"`
	ReplyBy  string    `json:"reply_by,omitempty"`
}

// Hold is one hold, open or lifted.
type Hold struct {
	ID       string     `json:"hold_id"`
	Kind     string     `json:"kind"`
	Placed   time.Time  `json:"placed_at"`
	Released *time.Time `json:"released_at,omitempty"`
}

// Promise is one promise to pay and how it ended.
type Promise struct {
	ID     string    `json:"promise_id"`
	Amount string    `json:"amount"`
	For    time.Time `json:"promised_for"`
	State  string    `json:"state"`
}

// Plan is one repayment plan and how it ended.
type Plan struct {
	ID           string `json:"plan_id"`
	Installments int    `json:"installments"`
	Paid         int    `json:"installments_paid"`
	State        string `json:"state"`
}

// Placement is one placement with an agency.
type Placement struct {
	Seq       uint64 `json:"seq"`
	Placement string `json:"placement_id"`
	Agency    string `json:"agency_id"`
	Recalled  uint64 `json:"recalled_seq,omitempty"`
	Reason    string `json:"reason"`
}

// Legal is a legal referral, or what blocked one.
type Legal struct {
	Seq    uint64 `json:"seq"`
	Kind   string `json:"kind"`
	DPD    int    `json:"dpd"`
	Rule   string `json:"blocked_by,omitempty"`
	Reason string `json:"reason"`
}

// Summarize derives the summary from the log's entries in order.
func Summarize(entries []policy.Entry) Summary {
	s := Summary{Notices: []Notice{}, Holds: []Hold{}, Promises: []Promise{}, Plans: []Plan{}, Agency: []Placement{}, Legal: []Legal{},
		Statement: Statement{Installments: []Installment{}, Payments: []Payment{}}}
	c := &policy.Case{}
	seqOf := map[string]uint64{}
	for _, e := range entries {
		c.Apply(e)
		switch x := e.Event.(type) {
		case policy.InstallmentDue:
			if _, seen := seqOf["due/"+x.ID]; !seen {
				seqOf["due/"+x.ID] = e.Seq
			}
		case policy.LegalOutcome:
			s.Legal = append(s.Legal, Legal{Seq: e.Seq, Kind: "legal_" + x.Status.String(), Reason: legalOutcomeReason(x)})
		case policy.Repayment:
			s.Statement.Payments = append(s.Statement.Payments, Payment{Seq: e.Seq, ID: x.PaymentID, PaidAt: x.PaidAt.UTC(),
				Amount: x.Amount.String(), Installment: x.InstallmentID})
		case policy.Decision:
			switch x.Kind {
			case policy.KindContactReleased:
				for _, t := range x.Tasks {
					s.Notices = append(s.Notices, Notice{Seq: e.Seq, Contact: t.ID, Channel: t.Channel.String(), Template: t.Template,
						Released: t.NotBefore.UTC(), Amount: t.AmountDue.String(), Fees: t.Fees.String(), ReplyBy: t.ReplyBy})
				}
			case policy.KindHandedOff:
				s.Agency = append(s.Agency, Placement{Seq: e.Seq, Placement: x.PlacementID, Agency: x.AgencyID, Reason: x.Ctx.Reason})
			case policy.KindPlacementRecalled, policy.KindCaseClosed:
				for i := range s.Agency {
					if a := &s.Agency[i]; a.Placement == x.PlacementID && x.PlacementID != "" && a.Recalled == 0 {
						a.Recalled = e.Seq
					}
				}
			case policy.KindLegalReferred, policy.KindLegalBlocked:
				s.Legal = append(s.Legal, Legal{Seq: e.Seq, Kind: x.Kind.String(), DPD: x.Ctx.DPD, Rule: x.Rule, Reason: x.Ctx.Reason})
			}
		}
	}
	st := &s.Statement
	st.Currency, st.Settled = c.Currency(), c.Settled
	owed := c.Outstanding()
	var due, paid, left int64
	for i, in := range c.Installments {
		line := Installment{Seq: seqOf["due/"+in.ID], ID: in.ID, DueAt: in.DueAt.UTC(), Amount: in.Amount.String(),
			Outstanding: policy.Money{Currency: in.Amount.Currency, Minor: owed[i]}.String()}
		if it := in.Items; it != nil {
			line.Items = itemised(*it)
		}
		st.Installments = append(st.Installments, line)
		due += in.Amount.Minor
		left += owed[i]
	}
	for _, r := range c.Repayments {
		if r.Amount.Currency == st.Currency {
			paid += r.Amount.Minor
		}
	}
	if b := c.Balance; b != nil {
		st.Balance = itemised(b.Overdue)
	}
	st.Due = policy.Money{Currency: st.Currency, Minor: due}.String()
	st.Paid = policy.Money{Currency: st.Currency, Minor: paid}.String()
	st.Outstanding = policy.Money{Currency: st.Currency, Minor: left}.String()
	for _, h := range c.Holds {
		v := Hold{ID: h.ID, Kind: h.Kind.String(), Placed: h.At.UTC()}
		if !h.Released.IsZero() {
			r := h.Released.UTC()
			v.Released = &r
		}
		s.Holds = append(s.Holds, v)
	}
	for _, p := range c.Promises {
		s.Promises = append(s.Promises, Promise{ID: p.ID, Amount: p.Amount.String(), For: p.For.UTC(), State: promiseState(p)})
	}
	for _, p := range c.Plans {
		s.Plans = append(s.Plans, Plan{ID: p.ID, Installments: len(p.Schedule), Paid: p.Next, State: planState(p)})
	}
	slices.SortStableFunc(s.Statement.Installments, func(a, b Installment) int { return a.DueAt.Compare(b.DueAt) })
	return s
}

func itemised(i policy.Itemisation) *Itemised {
	return &Itemised{Principal: i.Principal.String(), Interest: i.Interest.String(), Fees: i.Fees.String()}
}

func promiseState(p policy.Promise) string {
	switch {
	case p.Kept:
		return "kept"
	case p.Broken:
		return "broken"
	case p.Ended:
		return "ended"
	}
	return "open"
}

func planState(p policy.Plan) string {
	switch {
	case p.Completed:
		return "completed"
	case p.Broken:
		return "broken"
	case p.Cancelled:
		return "cancelled"
	case p.Ended:
		return "ended"
	}
	return "in force"
}

func legalOutcomeReason(o policy.LegalOutcome) string {
	r := fmt.Sprintf("the lender reported the referral %s at %s", o.Status, o.At.UTC().Format(time.RFC3339))
	if o.Reference != "" {
		r += " (case " + o.Reference + ")"
	}
	return r
}
