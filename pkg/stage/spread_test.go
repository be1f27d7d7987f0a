package stage_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/opendunning/dunning/pkg/policy"
)

// Issue 13 (no cliff at midnight), with the real 24 h calendar: 600 loans
// fall due at the same instant, and with decide_spread 6h their overdue
// confirmations (DPD 1) and escalations (DPD 16) are decided each at the
// loan's own offset in the first six hours of the local day, spread over
// every hour of it, never before midnight nor after 06:00, each loan at the
// same offset both nights (so the timers of a night stand in the stream in
// the order they fire); their contacts still leave only from the window's
// 08:00.
func TestStepsSpreadOverTheNight(t *testing.T) {
	const n = 600
	w := holdWorld(t, func(p *policy.Policy) { p.Contact.DecideSpread = 6 * time.Hour })
	loans := make([]string, n)
	for i := range loans {
		loans[i] = fmt.Sprintf("L-%d", i)
		w.installment(loans[i], 100000)
	}
	w.drain()
	w.until(w.dpd(16, 12*time.Hour))
	offsets := map[string]time.Duration{} // each loan's offset at DPD 1
	for _, c := range []struct {
		kind policy.DecisionKind
		dpd  int
	}{{policy.KindOverdueConfirmed, 1}, {policy.KindEscalated, 16}} {
		night := w.dpd(c.dpd, 0)
		hours := make([]int, 6)
		for _, loan := range loans {
			ds := w.decided(loan, c.kind)
			if len(ds) != 1 {
				t.Fatalf("%s: %d %s, want 1", loan, len(ds), c.kind)
			}
			off := ds[0].Ctx.AsOfOrDecided().Sub(night)
			if off < 0 || off >= 6*time.Hour {
				t.Fatalf("%s: %s at %s, want within 00:00-06:00 of DPD %d", loan, c.kind, ds[0].Ctx.AsOfOrDecided().In(w.loc), c.dpd)
			}
			hours[off/time.Hour]++
			if first, ok := offsets[loan]; !ok {
				offsets[loan] = off
			} else if off != first {
				t.Errorf("%s: %s at %s into the night of DPD %d, at %s on DPD 1's: want the loan's one offset", loan, c.kind, off, c.dpd, first)
			}
		}
		for h, k := range hours {
			// 100 a hour if even; a fixed hash of 600 keys: at least 70.
			if k < 70 {
				t.Errorf("%s: %d loans decided in hour %d of the night, want about 100 each: %v", c.kind, k, h, hours)
			}
		}
		t.Logf("%s at DPD %d, loans per hour of the night: %v", c.kind, c.dpd, hours)
	}
	for _, loan := range loans[:50] {
		for _, d := range w.decided(loan, policy.KindContactReleased) {
			if local := d.Ctx.DecidedAt.In(w.loc); local.Hour() < 8 {
				t.Errorf("%s: contact released at %s, before the window opens", loan, local)
			}
		}
	}
}
