// Package contactrules holds the rules a contact must pass before it leaves,
// one pack per jurisdiction, as versioned data with each rule's citation
// (packs/*.yaml). This package reads the packs and answers, for a moment in
// the borrower's zone, when contact is next permitted (pure functions, the
// time passed in); caps, opt-outs and content rules are declared here and
// enforced where tasks are released.
package contactrules

import (
	"bytes"
	"embed"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

//go:embed packs/*.yaml
var packFiles embed.FS

// Kinds of rule.
const (
	KindWindow  = "window"  // the hours contact is permitted in
	KindCap     = "cap"     // at most so many contacts in so many days
	KindContent = "content" // what a message on some channels must carry
	KindConduct = "conduct" // how collectors behave; recorded, not computed
)

// Pack is one jurisdiction's rules.
type Pack struct {
	ID      string `yaml:"id"`
	Version string `yaml:"version"`
	Rules   []Rule `yaml:"rules"`
	// window is the pack's one window rule, parsed.
	window *Rule
}

// Rule is one rule with its citation.
type Rule struct {
	ID       string      `yaml:"id"`
	Kind     string      `yaml:"kind"`
	Text     string      `yaml:"text"`
	Citation string      `yaml:"citation"`
	Window   *WindowSpec `yaml:"window,omitempty"`
	Cap      *CapSpec    `yaml:"cap,omitempty"`
	Channels []string    `yaml:"channels,omitempty"`
	// Placeholder, for a content rule, is what every template text on its
	// channels must carry (us-regf: {optout}); a policy check refuses a
	// text without it.
	Placeholder string `yaml:"placeholder,omitempty"`
	// Variant, for a content rule, is a text variant every template with
	// a text on its channels must also carry (us-regf: "voicemail", the
	// limited-content message left when a call is not answered).
	Variant string `yaml:"variant,omitempty"`

	from, to int // window bounds in minutes after local midnight
}

// WindowSpec is a daily window in local time, "HH:MM" to "HH:MM" (the end
// excluded).
type WindowSpec struct {
	From string `yaml:"from"`
	To   string `yaml:"to"`
}

// CapSpec bounds contacts on a channel: at most Max of what Counts
// (attempts, connected calls, conversations) per Per (borrower or debt)
// within Days consecutive local days.
type CapSpec struct {
	Channel string `yaml:"channel"`
	Counts  string `yaml:"counts"`
	Max     int    `yaml:"max"`
	Per     string `yaml:"per"`
	Days    int    `yaml:"days"`
}

// Packs returns every shipped pack by ID, parsed once per process; the
// packs are shared, read-only.
func Packs() (map[string]*Pack, error) { return loadPacks() }

var loadPacks = sync.OnceValues(func() (map[string]*Pack, error) {
	entries, err := packFiles.ReadDir("packs")
	if err != nil {
		return nil, err
	}
	out := map[string]*Pack{}
	for _, e := range entries {
		data, err := packFiles.ReadFile(path.Join("packs", e.Name()))
		if err != nil {
			return nil, err
		}
		p, err := Parse(data)
		if err != nil {
			return nil, fmt.Errorf("packs/%s: %w", e.Name(), err)
		}
		if want := strings.TrimSuffix(e.Name(), ".yaml"); p.ID != want {
			return nil, fmt.Errorf("packs/%s: id %q, want the file's name %q", e.Name(), p.ID, want)
		}
		out[p.ID] = p
	}
	return out, nil
})

// IDs lists the shipped packs' IDs, sorted (a policy's jurisdiction is one).
func IDs() []string {
	packs, err := Packs()
	if err != nil {
		panic(err) // the packs are compiled in; TestPacks loads them
	}
	return slices.Sorted(maps.Keys(packs))
}

var kinds = []string{KindWindow, KindCap, KindContent, KindConduct}

// Parse reads one pack, strictly: unknown keys, a rule without text or
// citation, an unknown kind or a malformed window or cap is an error.
func Parse(data []byte) (*Pack, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var p Pack
	if err := dec.Decode(&p); err != nil {
		return nil, err
	}
	if p.ID == "" || p.Version == "" {
		return nil, fmt.Errorf("id and version are required")
	}
	seen := map[string]bool{}
	for i := range p.Rules {
		r := &p.Rules[i]
		where := fmt.Sprintf("rule %d (%s)", i+1, r.ID)
		switch {
		case r.ID == "" || seen[r.ID]:
			return nil, fmt.Errorf("%s: a rule needs an ID of its own", where)
		case !strings.HasPrefix(r.ID, p.ID+"."):
			return nil, fmt.Errorf("%s: the ID must start with the pack's, %q", where, p.ID+".")
		case r.Text == "" || r.Citation == "":
			return nil, fmt.Errorf("%s: text and citation are required", where)
		case !slices.Contains(kinds, r.Kind):
			return nil, fmt.Errorf("%s: kind %q (known: %s)", where, r.Kind, strings.Join(kinds, ", "))
		case (r.Kind == KindWindow) != (r.Window != nil):
			return nil, fmt.Errorf("%s: a window rule, and only one, has a window", where)
		case (r.Kind == KindCap) != (r.Cap != nil):
			return nil, fmt.Errorf("%s: a cap rule, and only one, has a cap", where)
		}
		seen[r.ID] = true
		if r.Window != nil {
			var err error
			if r.from, err = clock(r.Window.From); err != nil {
				return nil, fmt.Errorf("%s: window from: %w", where, err)
			}
			if r.to, err = clock(r.Window.To); err != nil {
				return nil, fmt.Errorf("%s: window to: %w", where, err)
			}
			if r.from >= r.to {
				return nil, fmt.Errorf("%s: the window must end after it starts, the same day", where)
			}
			if p.window != nil {
				return nil, fmt.Errorf("%s: a pack has one window rule", where)
			}
			p.window = r
		}
		if r.Variant != "" && (r.Kind != KindContent || r.Variant != VariantVoicemail) {
			return nil, fmt.Errorf("%s: only a content rule names a variant, and the one known is %q", where, VariantVoicemail)
		}
		if c := r.Cap; c != nil && (c.Max < 1 || c.Days < 1 || c.Channel == "" || c.Counts == "" || (c.Per != "borrower" && c.Per != "debt")) {
			return nil, fmt.Errorf("%s: a cap needs a channel, what it counts, max and days of at least 1, and per borrower or debt", where)
		}
	}
	return &p, nil
}

// VariantVoicemail is the limited-content voicemail a phone template
// carries beside its call script.
const VariantVoicemail = "voicemail"

// clock parses "HH:MM" into minutes after midnight.
func clock(s string) (int, error) {
	w, err := ParseWall(s)
	return int(w / time.Minute), err
}

// ParseWall parses a wall time "HH:MM" into the time since midnight.
func ParseWall(s string) (time.Duration, error) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, fmt.Errorf("%q is not HH:MM", s)
	}
	return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute, nil
}

// FormatWall renders a time since midnight as "HH:MM".
func FormatWall(d time.Duration) string {
	return fmt.Sprintf("%02d:%02d", int(d/time.Hour), int(d%time.Hour/time.Minute))
}

// Calendar is what a lender configures on top of a pack: days on which no
// contact goes out at all (public holidays, blackout dates), as local
// dates, and weekdays without contact.
type Calendar struct {
	Blackouts []Date
	ClosedOn  []time.Weekday
	// Hours narrows the window on some weekdays (a Saturday 10:00-14:00):
	// the lender's own hours, inside the pack's (a policy check refuses
	// hours that would widen it).
	Hours map[time.Weekday]Hours
}

// Date is a local calendar date.
type Date struct {
	Year  int
	Month time.Month
	Day   int
}

// Blackout adds a local date without contact.
func (c *Calendar) Blackout(y int, m time.Month, d int) {
	c.Blackouts = append(c.Blackouts, Date{y, m, d})
}

func (c Calendar) closed(d Date) bool {
	return slices.Contains(c.Blackouts, d) || slices.Contains(c.ClosedOn, d.Weekday())
}

// maxSearchDays bounds the search for an open day: a calendar that closes
// every day for a year is a configuration error, reported as one.
const maxSearchDays = 366

// Clock maps instants to the borrower's local calendar: a date and the
// wall time since that date's midnight. RealClock is a time zone;
// AcceleratedClock is the simulated calendar of --day, where hour h of day
// n after an origin is origin + n·day + h·day/24.
type Clock interface {
	Local(t time.Time) (Date, time.Duration)
	At(d Date, wall time.Duration) time.Time
}

// RealClock is the borrower's time zone.
type RealClock struct{ Loc *time.Location }

// Local returns t's date and wall time in the zone.
func (c RealClock) Local(t time.Time) (Date, time.Duration) {
	l := t.In(c.Loc)
	y, m, d := l.Date()
	return Date{y, m, d}, time.Duration(l.Hour())*time.Hour + time.Duration(l.Minute())*time.Minute +
		time.Duration(l.Second())*time.Second + time.Duration(l.Nanosecond())
}

// At returns the instant of wall time on date d. The wall time is normalised
// as a wall clock, so 08:00 on a 23-hour DST day is still 08:00.
func (c RealClock) At(d Date, wall time.Duration) time.Time {
	h, rest := wall/time.Hour, wall%time.Hour
	return time.Date(d.Year, d.Month, d.Day, int(h), 0, 0, int(rest), c.Loc)
}

// AcceleratedClock is a calendar whose days last Day from Origin (a due
// time), Origin falling at midnight of OriginDate. Dates after it are
// OriginDate plus whole days, so weekday and blackout rules apply to the
// simulated days as well.
type AcceleratedClock struct {
	Origin     time.Time
	OriginDate Date
	Day        time.Duration
}

// Local returns the simulated date and wall time of t.
func (c AcceleratedClock) Local(t time.Time) (Date, time.Duration) {
	since := t.Sub(c.Origin)
	n := since / c.Day
	if since < 0 && since%c.Day != 0 {
		n--
	}
	within := since - n*c.Day
	wall := time.Duration(float64(within) * float64(24*time.Hour) / float64(c.Day))
	return c.OriginDate.AddDays(int(n)), wall
}

// At returns the instant of a simulated date's wall time.
func (c AcceleratedClock) At(d Date, wall time.Duration) time.Time {
	n := d.DaysSince(c.OriginDate)
	return c.Origin.Add(time.Duration(n)*c.Day + time.Duration(float64(wall)*float64(c.Day)/float64(24*time.Hour)))
}

// AddDays returns the date n days after d.
func (d Date) AddDays(n int) Date {
	y, m, dd := time.Date(d.Year, d.Month, d.Day+n, 0, 0, 0, 0, time.UTC).Date()
	return Date{y, m, dd}
}

// DaysSince counts the days from o to d.
func (d Date) DaysSince(o Date) int {
	a := time.Date(d.Year, d.Month, d.Day, 0, 0, 0, 0, time.UTC)
	b := time.Date(o.Year, o.Month, o.Day, 0, 0, 0, 0, time.UTC)
	return int(a.Sub(b).Round(24*time.Hour) / (24 * time.Hour))
}

// Weekday is d's day of the week.
func (d Date) Weekday() time.Weekday {
	return time.Date(d.Year, d.Month, d.Day, 0, 0, 0, 0, time.UTC).Weekday()
}

func (d Date) String() string { return fmt.Sprintf("%04d-%02d-%02d", d.Year, d.Month, d.Day) }

// ContentRules returns the pack's content rules.
func (p *Pack) ContentRules() []Rule {
	var out []Rule
	for _, r := range p.Rules {
		if r.Kind == KindContent {
			out = append(out, r)
		}
	}
	return out
}

// Window is the pack's daily window as wall times (From included, To
// excluded), and its rule's ID; ok is false for a pack without one.
func (p *Pack) Window() (from, to time.Duration, rule string, ok bool) {
	if p == nil || p.window == nil {
		return 0, 24 * time.Hour, "", false
	}
	return time.Duration(p.window.from) * time.Minute, time.Duration(p.window.to) * time.Minute, p.window.ID, true
}

// Release returns the first instant at or after at when contact is
// permitted in loc under the pack's window and the calendar, and the rule
// that held it back ("" when at itself is permitted). Local times are
// computed in loc, so a day that is 23 or 25 hours long (a DST change)
// opens at its local hour all the same.
func (p *Pack) Release(at time.Time, loc *time.Location, cal Calendar) (time.Time, string, error) {
	s := Slot{Pack: p, Calendar: cal}
	return s.Next(at, RealClock{loc})
}

// Slot is when, within the permitted window, a borrower's contacts leave: at
// SendAt plus Offset (a per-loan share of the policy's spread) every open
// day. A contact decided before its day's slot waits for it; one decided
// after it, inside the window, leaves at once; one decided after the window
// closed waits for the next open day's slot.
type Slot struct {
	Pack     *Pack
	Calendar Calendar
	// SendAt is the wall time the policy sends from; zero means the
	// window's opening.
	SendAt time.Duration
	// Offset is this loan's place in the spread, added to SendAt.
	Offset time.Duration
	// Agreed widens the window to hours the borrower agreed to (nil:
	// none). The slot stays where the policy puts it: the agreement lets a
	// contact decided or retried late leave, it does not move contacts.
	Agreed *Hours
}

// Hours is a daily local period, From to To (To excluded).
// An agreement that does not meet the window (23:00-23:30 with a window
// ending at 22:00) widens nothing.
type Hours struct{ From, To time.Duration }

// Hours is the borrower's local contact window: the pack's, widened by the
// borrower's agreement (what an agency placed with the account must keep to).
func (s Slot) Hours() (from, to time.Duration) {
	from, to, _, _ = s.window()
	return from, to
}

// window is the pack's window, widened by the borrower's agreement, and
// the pack's own opening (where the slot is counted from).
func (s Slot) window() (from, to, opening time.Duration, rule string) {
	from, to, rule, _ = s.Pack.Window()
	opening = from
	// Only hours that meet the window widen it: the window stays one
	// period a day, and the hours between a disjoint agreement and the
	// window were not agreed to.
	if a := s.Agreed; a != nil && a.To >= from && a.From <= to {
		from, to = min(from, a.From), max(to, a.To)
	}
	return from, to, opening, rule
}

// Next returns the first instant at or after at when a contact may leave,
// and the rule that held it back: the pack's window rule when at is outside
// the window or on a closed day, RuleSendAt when it only waits for its slot,
// "" when it may leave at once.
func (s Slot) Next(at time.Time, clock Clock) (time.Time, string, error) {
	today, wall := clock.Local(at)
	// Why a contact waits past today: today is closed, or its window has
	// passed (or not opened).
	_, _, _, why := s.day(today)
	for i := range maxSearchDays {
		d := today.AddDays(i)
		if s.Calendar.closed(d) {
			if i == 0 {
				why = RuleCalendar
			}
			continue
		}
		from, to, slot, rule := s.day(d)
		if i > 0 {
			if why == "" {
				why = RuleCalendar
			}
			return clock.At(d, slot), why, nil
		}
		switch {
		case wall < from:
			return clock.At(d, slot), rule, nil
		case wall < slot:
			return clock.At(d, slot), RuleSendAt, nil
		case wall < to:
			return at, "", nil
		}
	}
	return time.Time{}, RuleCalendar, fmt.Errorf("no permitted day within %d days of %s: the calendar closes every day", maxSearchDays, today)
}

// day is one local day's window (the pack's, widened by the borrower's
// agreement, narrowed by the lender's hours for its weekday), the loan's
// slot in it, and the rule that bounds it.
func (s Slot) day(d Date) (from, to, slot time.Duration, rule string) {
	from, to, opening, rule := s.window()
	if h, ok := s.Calendar.Hours[d.Weekday()]; ok {
		if h.From > from {
			from, opening, rule = h.From, max(opening, h.From), RuleHours
		}
		if h.To < to {
			to, rule = h.To, RuleHours
		}
	}
	slot = max(s.SendAt, opening) + s.Offset
	if slot >= to {
		slot = to - time.Minute // a policy check refuses this on full days; never send after the window
	}
	return from, to, slot, rule
}

// Closes returns when the window that at falls in closes (the end of the
// local day for a pack without a window): a contact released at at must
// not be delivered after it.
func (s Slot) Closes(at time.Time, clock Clock) time.Time {
	d, _ := clock.Local(at)
	_, to, _, _ := s.day(d)
	return clock.At(d, to)
}

// Rules that are the lender's policy rather than a pack's.
const (
	// RuleSendAt holds a contact until its loan's slot in the policy's
	// send_at and send_spread.
	RuleSendAt = "policy.send_at"
	// RuleCalendar holds a contact on a day the lender's calendar closes.
	RuleCalendar = "policy.calendar"
	// RuleHours holds a contact outside the lender's hours for a weekday.
	RuleHours = "policy.hours"
)
