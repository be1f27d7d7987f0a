package policy

import (
	"fmt"
	"testing"
	"time"

	"github.com/opendunning/dunning/pkg/contactrules"
)

// Acceptance 2 (contact rules): 10,000 loans reaching DPD 1 the same night,
// with send_at 09:30 and send_spread 2h, are held at midnight and released
// between 09:30 and 11:30 local, and no minute holds more than twice the
// average. Each loan goes through the gate as the release gate runs it:
// asked for at local midnight, then looked at again when its hold ends.
func TestReleasesSpreadOverTheMorning(t *testing.T) {
	packs, err := contactrules.Packs()
	if err != nil {
		t.Fatal(err)
	}
	pol := Default()
	pol.Jurisdiction = "cn"
	pol.Contact = ContactRules{Pack: packs["cn"], SendAt: 9*time.Hour + 30*time.Minute, SendSpread: 2 * time.Hour}
	if err := pol.Validate(); err != nil {
		t.Fatal(err)
	}
	l := Ladder{Policy: pol, Calendar: Calendar{Day: RealDay}}
	loc, _ := LoadZone("Asia/Shanghai")
	due := time.Date(2026, 3, 2, 18, 0, 0, 0, loc)
	midnight := l.Calendar.DPDStart(due, loc, 1)
	from, to := midnight.Add(9*time.Hour+30*time.Minute), midnight.Add(11*time.Hour+30*time.Minute)
	const loans = 10000
	perMinute := map[int]int{}
	for i := range loans {
		c := Fold([]Entry{{Event: InstallmentDue{ID: "1", Amount: Money{"CNY", 100000}, DueAt: due, Zone: "Asia/Shanghai"}}})
		c.Key = LoanKey("acme", fmt.Sprintf("L-%d", i))
		step := l.NextStep(c)
		c.Apply(Entry{Event: StepFired{Step: *step}})
		for _, d := range l.Fired(c, *step, midnight) {
			c.Apply(Entry{Event: d})
		}
		first := l.FirstContact(c, 1, midnight)
		c.Apply(Entry{Event: *first})
		held := l.Gate(c, "", midnight)
		if len(held) != 1 || held[0].Kind != KindContactHeld || held[0].Rule != "cn.hours" {
			t.Fatalf("L-%d at midnight: %+v, want held by cn.hours", i, held)
		}
		c.Apply(Entry{Event: held[0]})
		release := l.NextStep(c)
		if release == nil || release.Stage != StageRelease || !release.At.Equal(held[0].HeldUntil) {
			t.Fatalf("L-%d: next step %+v, want the release at %s", i, release, held[0].HeldUntil)
		}
		ds := l.Fired(c, *release, release.At)
		if len(ds) != 1 || ds[0].Kind != KindContactReleased {
			t.Fatalf("L-%d at %s: %+v, want released", i, release.At, ds)
		}
		at := ds[0].Ctx.DecidedAt
		if at.Before(from) || !at.Before(to) {
			t.Errorf("L-%d released at %s, outside 09:30-11:30 local", i, at.In(loc))
		}
		perMinute[int(at.Sub(from)/time.Minute)]++
	}
	average := float64(loans) / 120
	busiest := 0
	for _, n := range perMinute {
		busiest = max(busiest, n)
	}
	if float64(busiest) > 2*average {
		t.Errorf("the busiest minute released %d, more than twice the average %.0f", busiest, average)
	}
	t.Logf("10,000 releases over %d minutes: average %.1f a minute, busiest %d", len(perMinute), average, busiest)
}
