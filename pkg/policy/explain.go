package policy

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/opendunning/dunning/pkg/contactrules"
)

// RuleCheck is one rule as it applied to one contact: what `dunctl rules
// explain` prints.
type RuleCheck struct {
	Rule     string `json:"rule"`
	Kind     string `json:"kind"`
	Result   string `json:"result"` // held, passed, cancelled, suppressed, checked, applies, not applicable
	Detail   string `json:"detail"`
	Citation string `json:"citation,omitempty"`
}

// Explain shows, for one contact task of a loan, every rule of the
// policy's pack and of the gate as it applied: the holds the gate
// recorded (rule and time), the rule that stopped it, and the rules it
// passed when it left. entries is the loan's log in order.
func (l Ladder) Explain(entries []Entry, taskID string) ([]RuleCheck, error) {
	var (
		task     *ContactTask
		holds    []Decision
		final    *Decision
		c        = &Case{}
		atFinal  *Case
		released time.Time
	)
	for _, e := range entries {
		c.Apply(e)
		d, ok := e.Event.(Decision)
		if !ok {
			continue
		}
		i := slices.IndexFunc(d.Tasks, func(t ContactTask) bool { return t.ID == taskID })
		if i < 0 {
			continue
		}
		t := d.Tasks[i]
		switch d.Kind {
		case KindContactRequested, KindEscalated:
			task = &t
		case KindContactHeld:
			holds = append(holds, d)
		case KindContactReleased, KindContactCancelled, KindContactSuppressed:
			dd := d
			final, task = &dd, &t
			snapshot := *c
			atFinal = &snapshot
			if d.Kind == KindContactReleased {
				released = d.Ctx.DecidedAt
			}
		}
	}
	if task == nil {
		return nil, fmt.Errorf("the loan's log holds no contact %q", taskID)
	}
	var out []RuleCheck
	heldBy := func(rule string) []string {
		var s []string
		for _, h := range holds {
			if h.Rule == rule {
				s = append(s, fmt.Sprintf("held at %s until %s", l.LocalTime(c, h.Ctx.DecidedAt), l.LocalTime(c, h.HeldUntil)))
			}
		}
		return s
	}
	// The gate's own rules.
	for _, r := range []struct{ id, text string }{
		{RuleCaseClosed, "a contact never leaves after its case closed"},
		{RuleNothingOverdue, "a contact never leaves when nothing is overdue"},
		{RuleOptOut, "a contact never leaves on a channel the borrower opted out of"},
	} {
		rc := RuleCheck{Rule: r.id, Kind: "gate", Detail: r.text}
		switch {
		case final != nil && final.Rule == r.id:
			rc.Result = final.Kind.String()
			rc.Detail = final.Ctx.Reason
		case final != nil && final.Kind == KindContactReleased:
			rc.Result = "passed"
		default:
			rc.Result = "pending"
		}
		out = append(out, rc)
	}
	// The lender's own rules: the send slot and the calendar.
	for _, r := range []struct{ id, text string }{
		{contactrules.RuleSendAt, "a contact leaves at its loan's slot: send_at plus its offset in send_spread"},
		{contactrules.RuleCalendar, "no contact on the days the lender's calendar closes (closed_on, blackouts)"},
		{contactrules.RuleHours, "contact on some weekdays only within the lender's own hours (contact.hours)"},
	} {
		rc := RuleCheck{Rule: r.id, Kind: "policy", Detail: r.text}
		held := heldBy(r.id)
		switch {
		case final != nil && final.Kind == KindContactReleased && len(held) > 0:
			rc.Result, rc.Detail = "held, then passed", strings.Join(held, "; ")+"; released "+l.LocalTime(atFinal, released)
		case len(held) > 0:
			rc.Result, rc.Detail = "held", strings.Join(held, "; ")
		case final != nil && final.Kind == KindContactReleased:
			rc.Result = "passed"
		default:
			rc.Result = "pending"
		}
		out = append(out, rc)
	}
	// The borrower's agreement, as it stood when the contact left.
	h := c.AgreedHours
	if atFinal != nil {
		h = atFinal.AgreedHours
	}
	if h != nil {
		out = append(out, RuleCheck{Rule: RuleAgreedHours, Kind: "borrower", Result: "applied",
			Detail: fmt.Sprintf("the borrower agreed to contact %s-%s local: the window is widened to meet it", contactrules.FormatWall(h.From), contactrules.FormatWall(h.To))})
	}
	pack := l.Policy.Contact.Pack
	if pack == nil {
		return out, nil
	}
	for _, r := range pack.Rules {
		rc := RuleCheck{Rule: r.ID, Kind: r.Kind, Citation: r.Citation, Detail: r.Text}
		held := heldBy(r.ID)
		switch r.Kind {
		case "window", "cap":
			if r.Cap != nil && r.Cap.Channel != task.Channel.String() {
				rc.Result, rc.Detail = "not applicable", "counts "+r.Cap.Channel+" only"
				break
			}
			switch {
			case final != nil && final.Kind == KindContactReleased && len(held) > 0:
				rc.Result, rc.Detail = "held, then passed", strings.Join(held, "; ")+"; released "+l.LocalTime(atFinal, released)
			case final != nil && final.Kind == KindContactReleased:
				rc.Result, rc.Detail = "passed", "released "+l.LocalTime(atFinal, released)
			case len(held) > 0:
				rc.Result, rc.Detail = "held", strings.Join(held, "; ")
			case final != nil:
				rc.Result = "not reached"
			default:
				rc.Result = "pending"
			}
		case "content":
			if len(r.Channels) > 0 && !slices.Contains(r.Channels, task.Channel.String()) {
				rc.Result, rc.Detail = "not applicable", "applies to "+strings.Join(r.Channels, ", ")
			} else {
				rc.Result = "checked"
				rc.Detail = "template " + task.Template + " was checked for it when the policy was loaded: " + r.Text
			}
		default:
			rc.Result = "applies"
		}
		out = append(out, rc)
	}
	return out, nil
}
