package stage_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/opendunning/dunning/pkg/loanlog/memlog"
	"github.com/opendunning/dunning/pkg/policy"
)

// Issue 12, acceptance 5: the agency's connected calls count toward the
// borrower's caps. A borrower has two loans: L-1, fifteen days older, is
// placed with the agency at the start of the day L-2 escalates. The agency
// reports three connected calls on L-1 that morning; at 10:00, L-2's own
// phone task is held to the next day by cn's three connected calls a day,
// while its SMS, e-mail and push leave. With only two agency calls, it
// leaves too.
func TestAgencyCallsCountTowardCaps(t *testing.T) {
	for _, calls := range []int{3, 2} {
		t.Run(fmt.Sprintf("%d agency calls", calls), func(t *testing.T) {
			w := gateWorld(t, "Asia/Shanghai", "cn", 10*time.Hour, 0, func(l *time.Location) time.Time { return time.Date(2026, 3, 2, 18, 0, 0, 0, l) })
			for loan, due := range map[string]time.Time{"L-1": w.dpd(-15, 18*time.Hour), "L-2": w.due} {
				w.lender(loan, "1", policy.InstallmentDue{ID: "1", Amount: policy.Money{Currency: "CNY", Minor: 100000}, DueAt: due,
					Zone: "Asia/Shanghai", ContactRef: "crm", BorrowerRef: "B-1"})
			}
			w.drain()
			w.until(w.dpd(16, 9*time.Hour))
			placed := w.decided("L-1", policy.KindHandedOff)
			if len(placed) != 1 || !placed[0].Ctx.DecidedAt.Before(w.dpd(16, time.Hour)) {
				t.Fatalf("L-1 placements %+v, want one at the start of the day", placed)
			}
			for i := range calls {
				id := fmt.Sprintf("o-%d", i)
				w.lender("L-1", id, policy.AgencyOutcome{ID: id, Placement: placed[0].PlacementID, Agency: placed[0].AgencyID,
					At: w.dpd(16, 9*time.Hour+time.Duration(i)*10*time.Minute), Kind: policy.AgencyContacted,
					Channel: policy.ChannelPhone, Connected: true, RightParty: true})
			}
			w.drain()
			w.until(w.dpd(16, 11*time.Hour))
			chs, held := w.releasedAt("L-2", policy.StageEscalation)
			if calls < 3 {
				if fmt.Sprint(chs) != "[phone sms email app_push]" || held != nil {
					t.Errorf("L-2: released %v, phone held %v; want all four released", chs, held)
				}
				return
			}
			if fmt.Sprint(chs) != "[sms email app_push]" || held == nil {
				t.Fatalf("L-2: released %v, phone held %v; want sms, email and app_push released, phone held", chs, held)
			}
			if want := w.dpd(17, 10*time.Hour); held.Rule != "cn.voice-per-day" || !held.HeldUntil.Equal(want) {
				t.Errorf("L-2's phone held by %q until %s, want cn.voice-per-day until %s", held.Rule, held.HeldUntil.In(w.loc), want.In(w.loc))
			}
			es, _, _ := w.deps.Borrowers.(*memlog.Borrowers).ReadBorrower(ctx, tenant, "B-1")
			agency := 0
			for _, e := range es {
				if e.Loan == "L-1" && e.Outcome == policy.OutcomeCallRightParty {
					agency++
				}
			}
			if agency != 3 {
				t.Errorf("borrower log holds %d of the agency's connected calls, want 3: %+v", agency, es)
			}
		})
	}
}
