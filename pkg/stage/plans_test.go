package stage_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opendunning/dunning/pkg/policy"
)

// Acceptance 6 (borrower's side): a plan of 3 x 400.00 on 1,200.00 overdue,
// agreed at DPD 10, due at DPD 14, 21 and 28. All paid: a gentle reminder
// before each, no ladder meanwhile, plan_completed and the case cured. One
// missed: moved to the end of the plan (due DPD 35) and the plan goes on to
// completion. Two missed in a row: plan_broken, and the ladder resumes
// (escalation, its day passed, decided at once at today's DPD).
func TestRepaymentPlan(t *testing.T) {
	w := holdWorld(t, func(p *policy.Policy) {})
	loans := []string{"L-paid", "L-missed", "L-broken"}
	for _, loan := range loans {
		w.installment(loan, 120000)
	}
	w.drain()
	w.until(w.dpd(10, 10*time.Hour))
	plan := policy.RepaymentPlan{ID: "plan-1", At: w.clock.Now()}
	for _, d := range []int{14, 21, 28} {
		plan.Installments = append(plan.Installments, policy.PlanInstallment{DueAt: w.dpd(d, 12*time.Hour), Amount: policy.Money{Currency: "CNY", Minor: 40000}})
	}
	for _, loan := range loans {
		w.lender(loan, "plan-1", plan)
	}
	w.drain()
	pays := map[string][]int{"L-paid": {13, 20, 27}, "L-missed": {13, 27, 34}, "L-broken": {13}}
	for d := 11; d <= 40; d++ {
		w.until(w.dpd(d, 15*time.Hour))
		for loan, days := range pays {
			for _, pd := range days {
				if pd == d {
					w.pay(loan, "p-"+strconv.Itoa(d), 40000)
				}
			}
		}
		w.drain()
	}

	for _, loan := range []string{"L-paid", "L-missed"} {
		got := w.decisions(loan)
		if got[len(got)-1] != "case_closed:cured" || len(w.decided(loan, policy.KindPlanCompleted)) != 1 {
			t.Errorf("%s: %v, want the plan completed and the case cured", loan, got)
		}
		if e := w.decided(loan, policy.KindEscalated); len(e) != 0 {
			t.Errorf("%s escalated at DPD %d while its plan was kept", loan, e[0].Ctx.DPD)
		}
	}
	var reminders []int
	for _, d := range w.decided("L-paid", policy.KindContactRequested) {
		if strings.Contains(d.Tasks[0].ID, "-plan-") {
			reminders = append(reminders, d.Ctx.DPD)
			if d.Tasks[0].Tone != policy.ToneGentle || d.Tasks[0].AmountDue.Minor != 40000 {
				t.Errorf("reminder %+v, want gentle, for 400.00", d.Tasks[0])
			}
		}
	}
	if itoas(reminders) != "12 19 26" {
		t.Errorf("L-paid reminders at DPD %v, want 12, 19 and 26", reminders)
	}
	released := w.decided("L-paid", policy.KindContactReleased)
	if len(released) != 4 {
		t.Fatalf("L-paid: %d releases, want the first contact and 3 reminders", len(released))
	}
	for _, d := range released[1:] {
		if task := d.Tasks[0]; !strings.Contains(task.ID, "-plan-") || task.AmountDue.Minor != 40000 || task.Fees.Minor != 0 {
			t.Errorf("released reminder %s for %s (fees %s), want the installment's 400.00", task.ID, task.AmountDue, task.Fees)
		}
	}
	missed := w.decided("L-missed", policy.KindPlanMissed)
	if len(missed) != 1 || missed[0].Ctx.DPD != 22 || !missed[0].MovedTo.Equal(w.dpd(35, 12*time.Hour)) {
		t.Errorf("L-missed: %+v, want the DPD-21 installment missed at DPD 22 and moved to DPD 35", missed)
	}
	if b := w.decided("L-missed", policy.KindPlanBroken); len(b) != 0 {
		t.Errorf("L-missed: plan broken after one miss")
	}
	broken := w.decided("L-broken", policy.KindPlanBroken)
	if len(broken) != 1 || broken[0].Ctx.DPD != 29 || len(w.decided("L-broken", policy.KindPlanMissed)) != 1 {
		t.Fatalf("L-broken: broken %+v, want one miss then broken at DPD 29", broken)
	}
	if e := w.decided("L-broken", policy.KindEscalated); len(e) != 1 || e[0].Ctx.DPD != 29 || e[0].Ctx.Overdue.Minor != 80000 {
		t.Errorf("L-broken: escalations %+v, want one at DPD 29 on the 800.00 left", e)
	}
	for loan, want := range map[string]string{"L-paid": "completed 3", "L-missed": "completed 3", "L-broken": "broken 1"} {
		ps := w.timeline(loan).Plans
		if len(ps) != 1 || ps[0].State+" "+strconv.Itoa(ps[0].PaidCount) != want {
			t.Errorf("%s: timeline plans %+v, want %s paid", loan, ps, want)
		}
	}
	if ps := w.timeline("L-missed").Plans; len(ps) == 1 && !ps[0].Installments[2].DueAt.Equal(w.dpd(35, 12*time.Hour)) {
		t.Errorf("L-missed: the plan's last installment is due %s, want the missed one at DPD 35", ps[0].Installments[2].DueAt)
	}
}

func itoas(xs []int) string {
	var s []string
	for _, x := range xs {
		s = append(s, strconv.Itoa(x))
	}
	return strings.Join(s, " ")
}

// A hold while a plan is kept moves the plan's days on by the days held:
// hardship from DPD 13 to DPD 20 (7 days) moves the installment of DPD 14
// to DPD 21, so paying it at DPD 20 misses nothing, and the next reminder
// comes two days before the next installment's moved day (DPD 26).
func TestHoldMovesThePlan(t *testing.T) {
	w := holdWorld(t, func(p *policy.Policy) {})
	w.installment("L-1", 120000)
	w.drain()
	w.until(w.dpd(10, 10*time.Hour))
	plan := policy.RepaymentPlan{ID: "plan-1", At: w.clock.Now()}
	for _, d := range []int{14, 21, 28} {
		plan.Installments = append(plan.Installments, policy.PlanInstallment{DueAt: w.dpd(d, 12*time.Hour), Amount: policy.Money{Currency: "CNY", Minor: 40000}})
	}
	w.lender("L-1", "plan-1", plan)
	w.drain()
	w.until(w.dpd(13, 12*time.Hour))
	w.lender("L-1", "h-1", policy.HoldPlaced{ID: "h-1", Kind: policy.HoldHardship, At: w.clock.Now()})
	w.drain()
	w.until(w.dpd(20, 12*time.Hour))
	w.lender("L-1", "h-1", policy.HoldReleased{ID: "h-1", At: w.clock.Now()})
	w.drain()
	w.until(w.dpd(20, 15*time.Hour))
	w.pay("L-1", "p-1", 40000)
	w.drain()
	w.until(w.dpd(23, 0))
	if m := w.decided("L-1", policy.KindPlanMissed); len(m) != 0 {
		t.Errorf("installment missed at DPD %d though the hold moved it", m[0].Ctx.DPD)
	}
	if s := w.pendingStep("L-1"); !strings.HasPrefix(s.ID, "planrem-") || !s.At.Equal(w.dpd(26, 0)) {
		t.Errorf("pending step %s at %s, want the next reminder at DPD 26", s.ID, s.At.In(w.loc))
	}
}
