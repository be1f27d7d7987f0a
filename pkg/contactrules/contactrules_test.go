package contactrules

import (
	"strings"
	"testing"
	"time"
)

func TestPacks(t *testing.T) {
	packs, err := Packs()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(IDs(), ","); got != "cn,us-regf" {
		t.Errorf("packs %s, want cn,us-regf", got)
	}
	for id, p := range packs {
		if p.window == nil {
			t.Errorf("%s: no window rule", id)
		}
		for _, r := range p.Rules {
			if r.Citation == "" {
				t.Errorf("%s: %s has no citation", id, r.ID)
			}
		}
	}
}

func load(t *testing.T, id string) *Pack {
	t.Helper()
	packs, err := Packs()
	if err != nil {
		t.Fatal(err)
	}
	return packs[id]
}

func zone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// Acceptance 1 of the contact-rules issue, as pure functions: a contact
// decided at local midnight leaves at 08:00 local, in each pack's zone, and
// across the March DST change in New York (2026-03-08, 02:00 -> 03:00).
func TestRelease(t *testing.T) {
	shanghai, la, ny := zone(t, "Asia/Shanghai"), zone(t, "America/Los_Angeles"), zone(t, "America/New_York")
	var holidays Calendar
	holidays.Blackout(2026, time.October, 1)
	sundays := Calendar{ClosedOn: []time.Weekday{time.Sunday}}
	cases := []struct {
		name   string
		pack   string
		at     time.Time
		cal    Calendar
		want   time.Time
		heldBy string
		loc    *time.Location
	}{
		{"cn: local midnight waits for 08:00", "cn", time.Date(2026, 12, 2, 0, 0, 0, 0, shanghai), Calendar{}, time.Date(2026, 12, 2, 8, 0, 0, 0, shanghai), "cn.hours", shanghai},
		{"cn: 08:00 itself is permitted", "cn", time.Date(2026, 12, 2, 8, 0, 0, 0, shanghai), Calendar{}, time.Date(2026, 12, 2, 8, 0, 0, 0, shanghai), "", shanghai},
		{"cn: 21:59 is permitted", "cn", time.Date(2026, 12, 2, 21, 59, 0, 0, shanghai), Calendar{}, time.Date(2026, 12, 2, 21, 59, 0, 0, shanghai), "", shanghai},
		{"cn: 22:00 waits for the next morning", "cn", time.Date(2026, 12, 2, 22, 0, 0, 0, shanghai), Calendar{}, time.Date(2026, 12, 3, 8, 0, 0, 0, shanghai), "cn.hours", shanghai},
		{"cn: the same instant seen from UTC", "cn", time.Date(2026, 12, 1, 16, 0, 0, 0, time.UTC), Calendar{}, time.Date(2026, 12, 2, 8, 0, 0, 0, shanghai), "cn.hours", shanghai},
		{"us-regf: Los Angeles midnight waits for 08:00", "us-regf", time.Date(2026, 12, 2, 0, 0, 0, 0, la), Calendar{}, time.Date(2026, 12, 2, 8, 0, 0, 0, la), "us-regf.hours", la},
		{"us-regf: 21:00 is past the window", "us-regf", time.Date(2026, 12, 2, 21, 0, 0, 0, la), Calendar{}, time.Date(2026, 12, 3, 8, 0, 0, 0, la), "us-regf.hours", la},
		{"us-regf: New York on the DST day opens at 08:00 EDT", "us-regf", time.Date(2026, 3, 8, 0, 0, 0, 0, ny), Calendar{}, time.Date(2026, 3, 8, 12, 0, 0, 0, time.UTC), "us-regf.hours", ny},
		{"us-regf: New York the evening before DST opens at 08:00 EDT next day", "us-regf", time.Date(2026, 3, 7, 22, 0, 0, 0, ny), Calendar{}, time.Date(2026, 3, 8, 12, 0, 0, 0, time.UTC), "us-regf.hours", ny},
		{"us-regf: New York on the day DST ends opens at 08:00 EST", "us-regf", time.Date(2026, 11, 1, 0, 30, 0, 0, ny), Calendar{}, time.Date(2026, 11, 1, 13, 0, 0, 0, time.UTC), "us-regf.hours", ny},
		{"cn: a holiday is skipped", "cn", time.Date(2026, 9, 30, 23, 0, 0, 0, shanghai), holidays, time.Date(2026, 10, 2, 8, 0, 0, 0, shanghai), "cn.hours", shanghai},
		{"cn: inside the window, but a holiday", "cn", time.Date(2026, 10, 1, 10, 0, 0, 0, shanghai), holidays, time.Date(2026, 10, 2, 8, 0, 0, 0, shanghai), RuleCalendar, shanghai},
		{"cn: closed on Sundays", "cn", time.Date(2026, 12, 6, 10, 0, 0, 0, shanghai), sundays, time.Date(2026, 12, 7, 8, 0, 0, 0, shanghai), RuleCalendar, shanghai},
	}
	for _, c := range cases {
		got, rule, err := load(t, c.pack).Release(c.at, c.loc, c.cal)
		if err != nil || !got.Equal(c.want) || rule != c.heldBy {
			t.Errorf("%s: %s held by %q (%v), want %s held by %q", c.name, got.In(c.loc), rule, err, c.want.In(c.loc), c.heldBy)
		}
	}
	every := Calendar{ClosedOn: []time.Weekday{0, 1, 2, 3, 4, 5, 6}}
	if _, _, err := load(t, "cn").Release(time.Now(), shanghai, every); err == nil {
		t.Error("a calendar closed every day: no error")
	}
}

// A pack is data a reviewer reads: every malformed one is refused with the
// rule at fault.
func TestParseRefuses(t *testing.T) {
	base := "id: x\nversion: \"1\"\nrules:\n"
	cases := map[string]string{
		"no citation":       base + "  - {id: x.a, kind: conduct, text: t}\n",
		"unknown kind":      base + "  - {id: x.a, kind: mood, text: t, citation: c}\n",
		"foreign id":        base + "  - {id: y.a, kind: conduct, text: t, citation: c}\n",
		"window backwards":  base + "  - {id: x.a, kind: window, text: t, citation: c, window: {from: \"22:00\", to: \"08:00\"}}\n",
		"window not a time": base + "  - {id: x.a, kind: window, text: t, citation: c, window: {from: \"8am\", to: \"22:00\"}}\n",
		"two windows":       base + "  - {id: x.a, kind: window, text: t, citation: c, window: {from: \"08:00\", to: \"22:00\"}}\n  - {id: x.b, kind: window, text: t, citation: c, window: {from: \"08:00\", to: \"21:00\"}}\n",
		"cap without max":   base + "  - {id: x.a, kind: cap, text: t, citation: c, cap: {channel: phone, counts: attempts, per: debt, days: 7}}\n",
		"unknown key":       base + "  - {id: x.a, kind: conduct, text: t, citation: c, colour: red}\n",
		"no version":        "id: x\nrules: []\n",
	}
	for name, doc := range cases {
		if _, err := Parse([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// The policy's slot: send_at plus the loan's offset, inside the window;
// decided after the slot but inside the window, a contact leaves at once.
func TestSlot(t *testing.T) {
	shanghai := zone(t, "Asia/Shanghai")
	s := Slot{Pack: load(t, "cn"), SendAt: 9*time.Hour + 30*time.Minute, Offset: 17 * time.Minute}
	day := func(h, m int) time.Time { return time.Date(2026, 12, 2, h, m, 0, 0, shanghai) }
	cases := []struct {
		at, want time.Time
		rule     string
	}{
		{day(0, 0), day(9, 47), "cn.hours"},
		{day(8, 30), day(9, 47), RuleSendAt},
		{day(9, 47), day(9, 47), ""},
		{day(15, 0), day(15, 0), ""},
		{day(22, 0), day(24+9, 47), "cn.hours"},
	}
	for _, c := range cases {
		got, rule, err := s.Next(c.at, RealClock{shanghai})
		if err != nil || !got.Equal(c.want) || rule != c.rule {
			t.Errorf("at %s: %s held by %q (%v), want %s by %q", c.at.Format("15:04"), got.In(shanghai), rule, err, c.want.In(shanghai), c.rule)
		}
	}
	if got, want := s.Closes(day(10, 0), RealClock{shanghai}), day(22, 0); !got.Equal(want) {
		t.Errorf("window closes %s, want %s", got, want)
	}
	// A pack without a window still waits for the slot.
	if got, rule, _ := (Slot{SendAt: 9 * time.Hour}).Next(day(3, 0), RealClock{shanghai}); !got.Equal(day(9, 0)) || rule != RuleSendAt {
		t.Errorf("no window: %s by %q", got, rule)
	}
}

// Under an accelerated day, hour h of day n after the origin is
// origin + n·day + h·day/24, and calendar rules apply to the simulated dates.
func TestAcceleratedClock(t *testing.T) {
	origin := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	c := AcceleratedClock{Origin: origin, OriginDate: Date{2026, 12, 1}, Day: 6 * time.Second}
	at := c.At(Date{2026, 12, 3}, 8*time.Hour)
	if want := origin.Add(12*time.Second + 2*time.Second); !at.Equal(want) {
		t.Fatalf("08:00 of day 2: %s, want %s", at, want)
	}
	d, wall := c.Local(at.Add(time.Second)) // 1 s of a 6 s day is 4 h
	if d != (Date{2026, 12, 3}) || wall != 12*time.Hour {
		t.Errorf("local %s %s, want 2026-12-03 12h", d, wall)
	}
	if d, _ := c.Local(origin.Add(-time.Second)); d != (Date{2026, 11, 30}) {
		t.Errorf("before the origin: %s, want the day before", d)
	}
	s := Slot{Pack: load(t, "cn"), Calendar: Calendar{Blackouts: []Date{{2026, 12, 2}}}}
	got, rule, err := s.Next(origin.Add(6*time.Second), c) // midnight of a blackout day
	if want := c.At(Date{2026, 12, 3}, 8*time.Hour); err != nil || !got.Equal(want) || rule != RuleCalendar {
		t.Errorf("blackout under an accelerated day: %s by %q (%v), want %s", got, rule, err, want)
	}
}

// A borrower's agreed hours widen the window only where they meet it.
func TestAgreedHours(t *testing.T) {
	packs, err := Packs()
	if err != nil {
		t.Fatal(err)
	}
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}
	h := func(from, to int) *Hours {
		return &Hours{time.Duration(from) * time.Hour, time.Duration(to) * time.Hour}
	}
	at := time.Date(2026, 3, 3, 22, 30, 0, 0, loc)
	nextMorning := time.Date(2026, 3, 4, 8, 0, 0, 0, loc)
	cases := []struct {
		name   string
		agreed *Hours
		want   time.Time
	}{
		{"none", nil, nextMorning},
		{"until 23:00", h(21, 23), at},
		{"07:00 to 23:00", h(7, 23), at},
		{"disjoint, 23:00 to 24:00 less a minute", &Hours{23 * time.Hour, 23*time.Hour + 59*time.Minute}, nextMorning},
	}
	for _, c := range cases {
		s := Slot{Pack: packs["cn"], Agreed: c.agreed}
		got, _, err := s.Next(at, RealClock{loc})
		if err != nil || !got.Equal(c.want) {
			t.Errorf("%s: Next(22:30) = %s, %v; want %s", c.name, got, err, c.want)
		}
	}
}

// The lender's hours narrow a weekday's window: on a Saturday open
// 10:00-14:00 a contact asked for at 09:00 waits until 10:00 (policy.hours),
// one at 14:30 waits for Monday's slot (Sunday is closed), and its not_after
// that Saturday is 14:00. Weekdays without hours keep the pack's window.
func TestLenderHours(t *testing.T) {
	packs, err := Packs()
	if err != nil {
		t.Fatal(err)
	}
	loc, _ := time.LoadLocation("Asia/Shanghai")
	cal := Calendar{ClosedOn: []time.Weekday{time.Sunday}, Hours: map[time.Weekday]Hours{time.Saturday: {10 * time.Hour, 14 * time.Hour}}}
	s := Slot{Pack: packs["cn"], Calendar: cal}
	sat := func(h, m int) time.Time { return time.Date(2026, 3, 7, h, m, 0, 0, loc) } // a Saturday
	cases := []struct {
		at   time.Time
		want time.Time
		rule string
	}{
		{sat(9, 0), sat(10, 0), RuleHours},
		{sat(12, 0), sat(12, 0), ""},
		{sat(14, 30), time.Date(2026, 3, 9, 8, 0, 0, 0, loc), RuleHours},
		{time.Date(2026, 3, 6, 21, 0, 0, 0, loc), time.Date(2026, 3, 6, 21, 0, 0, 0, loc), ""}, // a Friday: the pack's window
	}
	for _, c := range cases {
		got, rule, err := s.Next(c.at, RealClock{loc})
		if err != nil || !got.Equal(c.want) || rule != c.rule {
			t.Errorf("Next(%s) = %s %q %v, want %s %q", c.at, got, rule, err, c.want, c.rule)
		}
	}
	if got := s.Closes(sat(12, 0), RealClock{loc}); !got.Equal(sat(14, 0)) {
		t.Errorf("Closes on the Saturday = %s, want 14:00", got)
	}
}
