package policy

import (
	"fmt"
	"slices"
	"strings"

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
		task  *ContactTask
		holds []Decision
		final *Decision // the record that released, cancelled or suppressed it
		c     = &Case{}
		// agreed are the borrower's agreed hours when the contact's
		// fate was recorded (or now, while it waits).
		agreed *contactrules.Hours
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
			final, task, agreed = &d, &t, c.AgreedHours
		}
	}
	if task == nil {
		return nil, fmt.Errorf("the loan's log holds no contact %q", taskID)
	}
	if final == nil {
		agreed = c.AgreedHours
	}
	released := ""
	if final != nil && final.Kind == KindContactReleased {
		released = "released " + l.LocalTime(c, final.Ctx.DecidedAt)
	}
	// timed is how a rule that can hold a contact applied: the holds it
	// recorded, then whether the contact left.
	timed := func(rule string) (result, detail string) {
		var held []string
		for _, h := range holds {
			if h.Rule == rule {
				held = append(held, fmt.Sprintf("held at %s until %s", l.LocalTime(c, h.Ctx.DecidedAt), l.LocalTime(c, h.HeldUntil)))
			}
		}
		switch {
		case released != "" && len(held) > 0:
			return "held, then passed", strings.Join(append(held, released), "; ")
		case released != "":
			return "passed", released
		case len(held) > 0:
			return "held", strings.Join(held, "; ")
		case final != nil:
			return "not reached", ""
		}
		return "pending", ""
	}
	var out []RuleCheck
	// The gate's own rules: they stop a contact or let it pass.
	for _, r := range []struct{ id, text string }{
		{RuleCaseClosed, "a contact never leaves after its case closed"},
		{RuleNothingOverdue, "a contact never leaves when nothing is overdue"},
		{RuleOptOut, "a contact never leaves on a channel the borrower opted out of"},
		{RuleHold, "a contact never leaves while a hold is open"},
	} {
		rc := RuleCheck{Rule: r.id, Kind: "gate", Result: "pending", Detail: r.text}
		switch {
		case final != nil && final.Rule == r.id:
			rc.Result, rc.Detail = final.Kind.String(), final.Ctx.Reason
		case released != "":
			rc.Result = "passed"
		case final != nil:
			rc.Result = "not reached"
		}
		out = append(out, rc)
	}
	// The lender's own rules: the send slot, the calendar, the hours.
	for _, r := range []struct{ id, text string }{
		{contactrules.RuleSendAt, "a contact leaves at its loan's slot: send_at plus its offset in send_spread"},
		{contactrules.RuleCalendar, "no contact on the days the lender's calendar closes (closed_on, blackouts)"},
		{contactrules.RuleHours, "contact on some weekdays only within the lender's own hours (contact.hours)"},
	} {
		rc := RuleCheck{Rule: r.id, Kind: "policy", Detail: r.text}
		rc.timed(timed(r.id))
		out = append(out, rc)
	}
	if agreed != nil {
		out = append(out, RuleCheck{Rule: RuleAgreedHours, Kind: "borrower", Result: "applied",
			Detail: fmt.Sprintf("the borrower agreed to contact %s-%s local: the window is widened to meet it", contactrules.FormatWall(agreed.From), contactrules.FormatWall(agreed.To))})
	}
	pack := l.Policy.Contact.Pack
	if pack == nil {
		return out, nil
	}
	ch := task.Channel.String()
	for _, r := range pack.Rules {
		rc := RuleCheck{Rule: r.ID, Kind: r.Kind, Citation: r.Citation, Detail: r.Text, Result: "applies"}
		switch {
		case r.Cap != nil && r.Cap.Channel != ch:
			rc.Result, rc.Detail = "not applicable", "counts "+r.Cap.Channel+" only"
		case r.Kind == contactrules.KindWindow || r.Kind == contactrules.KindCap:
			rc.timed(timed(r.ID))
		case r.Kind == contactrules.KindContent && len(r.Channels) > 0 && !slices.Contains(r.Channels, ch):
			rc.Result, rc.Detail = "not applicable", "applies to "+strings.Join(r.Channels, ", ")
		case r.Kind == contactrules.KindContent:
			rc.Result, rc.Detail = "checked", "template "+task.Template+" was checked for it when the policy was loaded: "+r.Text
		}
		out = append(out, rc)
	}
	return out, nil
}

// timed sets how a rule applied, keeping the rule's own text when there is
// nothing more particular to say.
func (rc *RuleCheck) timed(result, detail string) {
	rc.Result = result
	if detail != "" {
		rc.Detail = detail
	}
}
