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
		if c := r.Cap; c != nil && (c.Max < 1 || c.Days < 1 || c.Channel == "" || c.Counts == "" || (c.Per != "borrower" && c.Per != "debt")) {
			return nil, fmt.Errorf("%s: a cap needs a channel, what it counts, max and days of at least 1, and per borrower or debt", where)
		}
	}
	return &p, nil
}

// clock parses "HH:MM" into minutes after midnight.
func clock(s string) (int, error) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, fmt.Errorf("%q is not HH:MM", s)
	}
	return t.Hour()*60 + t.Minute(), nil
}

// Calendar is what a lender configures on top of a pack: days on which no
// contact goes out at all (public holidays, blackout dates), as local
// dates, and weekdays without contact.
type Calendar struct {
	Blackouts []Date
	ClosedOn  []time.Weekday
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

func (c Calendar) closed(y int, m time.Month, d int, wd time.Weekday) bool {
	return slices.Contains(c.Blackouts, Date{y, m, d}) || slices.Contains(c.ClosedOn, wd)
}

// maxSearchDays bounds the search for an open day: a calendar that closes
// every day for a year is a configuration error, reported as one.
const maxSearchDays = 366

// Release returns the first instant at or after at when contact is
// permitted in loc under the pack's window and the calendar, and the rule
// that held it back ("" when at itself is permitted). Local times are
// computed in loc, so a day that is 23 or 25 hours long (a DST change)
// opens at its local hour all the same.
func (p *Pack) Release(at time.Time, loc *time.Location, cal Calendar) (time.Time, string, error) {
	w := p.window
	if w == nil {
		return at, "", nil
	}
	local := at.In(loc)
	for i := range maxSearchDays {
		y, m, d := local.Date()
		day := time.Date(y, m, d+i, 0, 0, 0, 0, loc)
		y, m, d = day.Date()
		if cal.closed(y, m, d, day.Weekday()) {
			continue
		}
		open := time.Date(y, m, d, w.from/60, w.from%60, 0, 0, loc)
		shut := time.Date(y, m, d, w.to/60, w.to%60, 0, 0, loc)
		switch {
		case i == 0 && !local.Before(open) && local.Before(shut):
			return at, "", nil
		case open.After(at) || open.Equal(at):
			return open, w.ID, nil
		}
	}
	return time.Time{}, w.ID, fmt.Errorf("no permitted day within %d days of %s: the calendar closes every day", maxSearchDays, local.Format("2006-01-02"))
}
