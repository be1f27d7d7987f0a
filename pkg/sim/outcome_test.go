package sim

import "testing"

// A loan differs "only by steps a payment made moot" when the pipeline,
// late to a step, met the payment first and skipped it: the same end, fewer
// of the oracle's decisions, none it does not expect, none repeated.
func TestMoot(t *testing.T) {
	want := Outcome{Final: "closed_cured", Counts: map[string]int{"overdue_confirmed": 1, "contact_requested": 1, "contact_released": 2, "case_closed": 1}}
	tests := []struct {
		name string
		got  Outcome
		paid bool
		moot bool
	}{
		{"a contact skipped", Outcome{Final: "closed_cured", Counts: map[string]int{"overdue_confirmed": 1, "contact_requested": 1, "contact_released": 1, "case_closed": 1}}, true, true},
		{"every contact skipped", Outcome{Final: "closed_cured", Counts: map[string]int{"overdue_confirmed": 1, "case_closed": 1}}, true, true},
		{"equal is a match, not moot", want, true, false},
		{"never paid", Outcome{Final: "closed_cured", Counts: map[string]int{"overdue_confirmed": 1, "case_closed": 1}}, false, false},
		{"another end", Outcome{Final: "legal_referral", Counts: map[string]int{"overdue_confirmed": 1}}, true, false},
		{"a decision the oracle does not expect", Outcome{Final: "closed_cured", Counts: map[string]int{"overdue_confirmed": 1, "escalated": 1, "case_closed": 1}}, true, false},
		{"one too many", Outcome{Final: "closed_cured", Counts: map[string]int{"overdue_confirmed": 1, "contact_released": 3, "case_closed": 1}}, true, false},
		{"a repeat", Outcome{Final: "closed_cured", Counts: map[string]int{"overdue_confirmed": 1, "case_closed": 1}, Repeats: 1}, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.got.moot(want, tt.paid); got != tt.moot {
				t.Errorf("moot = %v, want %v", got, tt.moot)
			}
		})
	}
}
