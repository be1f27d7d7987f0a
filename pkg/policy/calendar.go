package policy

import (
	"fmt"
	"time"
)

// Calendar maps days past due to wall time. With a Day of 24h it counts whole
// calendar days in the borrower's time zone, so an installment paid on its due
// date is never overdue and DPD 1 starts at the next local midnight. With a
// shorter Day (demos, simulations, tests) a "day" is that duration, counted
// from the due time itself; time zones are then irrelevant.
type Calendar struct {
	Day time.Duration
}

// RealDay is the length of a business day in production.
const RealDay = 24 * time.Hour

// NewCalendar returns a calendar with the given day length.
func NewCalendar(day time.Duration) (Calendar, error) {
	if day <= 0 {
		return Calendar{}, fmt.Errorf("day length must be positive, got %s", day)
	}
	if day > RealDay {
		return Calendar{}, fmt.Errorf("day length must be at most %s, got %s", RealDay, day)
	}
	return Calendar{Day: day}, nil
}

func (c Calendar) real() bool { return c.Day == RealDay }

// DPDStart returns the instant at which an installment due at dueAt (borrower
// zone loc) reaches dpd days past due. DPD 0 is the due day itself.
func (c Calendar) DPDStart(dueAt time.Time, loc *time.Location, dpd int) time.Time {
	if c.real() {
		if loc == nil {
			loc = time.UTC
		}
		l := dueAt.In(loc)
		return time.Date(l.Year(), l.Month(), l.Day()+dpd, 0, 0, 0, 0, loc)
	}
	return dueAt.Add(time.Duration(dpd) * c.Day)
}

// DPD returns the days past due at now of an installment due at dueAt; 0 on
// or before the due day.
func (c Calendar) DPD(dueAt time.Time, loc *time.Location, now time.Time) int {
	if c.real() {
		if loc == nil {
			loc = time.UTC
		}
		d := dateOf(now.In(loc)).Sub(dateOf(dueAt.In(loc)))
		n := int((d + 12*time.Hour) / RealDay) // round: DST days are 23 or 25 hours
		return max(n, 0)
	}
	if !now.After(dueAt) {
		return 0
	}
	return int(now.Sub(dueAt) / c.Day)
}

func dateOf(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}
