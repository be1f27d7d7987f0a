package policy

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestTierAt(t *testing.T) {
	p := Default()
	tests := []struct {
		dpd  int
		want Tier
	}{
		{0, TierNone}, {1, TierLight}, {15, TierLight}, {16, TierMedium}, {30, TierMedium}, {31, TierSevere}, {90, TierSevere}, {400, TierSevere},
	}
	for _, tt := range tests {
		if got := p.TierAt(tt.dpd); got != tt.want {
			t.Errorf("TierAt(%d) = %v, want %v", tt.dpd, got, tt.want)
		}
	}
}

func TestDefaultMatchesSpec(t *testing.T) {
	p := Default()
	if err := p.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	if p.ConfirmDPD() != 1 || p.EscalationDPD() != 16 || p.HandoffDPD != 31 || p.LegalDPD != 90 {
		t.Errorf("default ladder = confirm %d, escalate %d, handoff %d, legal %d; want 1, 16, 31, 90",
			p.ConfirmDPD(), p.EscalationDPD(), p.HandoffDPD, p.LegalDPD)
	}
}

func TestValidateReportsEveryError(t *testing.T) {
	p := Default()
	p.Version, p.LightMax, p.LegalDPD, p.Agency = "", 0, 10, "bad agency"
	err := p.Validate()
	if err == nil {
		t.Fatal("Validate() = nil, want errors")
	}
	for _, field := range []string{"version", "light_max", "legal_dpd", "agency"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("Validate() = %q, want it to name %s", err, field)
		}
	}
}

func TestCalendarReal(t *testing.T) {
	sh, _ := time.LoadLocation("Asia/Shanghai")
	ny, _ := time.LoadLocation("America/New_York")
	cal := Calendar{Day: RealDay}
	// Due 2026-03-01 20:00 Shanghai (12:00 UTC).
	due := time.Date(2026, 3, 1, 20, 0, 0, 0, sh)
	tests := []struct {
		name string
		loc  *time.Location
		due  time.Time
		now  time.Time
		want int
	}{
		{"before due", sh, due, due.Add(-time.Hour), 0},
		{"due day, after due time", sh, due, time.Date(2026, 3, 1, 23, 59, 0, 0, sh), 0},
		{"next local midnight", sh, due, time.Date(2026, 3, 2, 0, 0, 0, 0, sh), 1},
		{"day 15 end", sh, due, time.Date(2026, 3, 16, 23, 59, 0, 0, sh), 15},
		{"day 16", sh, due, time.Date(2026, 3, 17, 0, 0, 1, 0, sh), 16},
		// 2026-03-08 is the US spring-forward day: a 23-hour day still counts once.
		{"across DST", ny, time.Date(2026, 3, 7, 12, 0, 0, 0, ny), time.Date(2026, 3, 9, 0, 30, 0, 0, ny), 2},
	}
	for _, tt := range tests {
		if got := cal.DPD(tt.due, tt.loc, tt.now); got != tt.want {
			t.Errorf("%s: DPD = %d, want %d", tt.name, got, tt.want)
		}
	}
	if got, want := cal.DPDStart(due, sh, 1), time.Date(2026, 3, 2, 0, 0, 0, 0, sh); !got.Equal(want) {
		t.Errorf("DPDStart(1) = %v, want %v", got, want)
	}
	if got := cal.DPD(due, sh, cal.DPDStart(due, sh, 31)); got != 31 {
		t.Errorf("DPD(DPDStart(31)) = %d, want 31", got)
	}
}

func TestCalendarAccelerated(t *testing.T) {
	cal, err := NewCalendar(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	due := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		after time.Duration
		want  int
	}{{0, 0}, {999 * time.Millisecond, 0}, {time.Second, 1}, {15 * time.Second, 15}, {16*time.Second + 1, 16}} {
		if got := cal.DPD(due, nil, due.Add(tt.after)); got != tt.want {
			t.Errorf("DPD(due+%v) = %d, want %d", tt.after, got, tt.want)
		}
	}
	if _, err := NewCalendar(0); err == nil {
		t.Error("NewCalendar(0) = nil error, want error")
	}
	if _, err := NewCalendar(48 * time.Hour); err == nil {
		t.Error("NewCalendar(48h) = nil error, want error")
	}
}

func TestFees(t *testing.T) {
	p := Default() // 5 bps a day
	got := p.Fees(Money{"CNY", 100000}, 16)
	if want := (Money{"CNY", 800}); got != want {
		t.Errorf("Fees(100000, 16) = %v, want %v", got, want)
	}
}

// The policy package must stay pure: no messaging, broker or wire-format imports.
func TestPolicyIsPure(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"nats-io", "watermill", "google.golang.org/protobuf", "prometheus"} {
			if strings.Contains(dep, banned) {
				t.Errorf("policy depends on %s", dep)
			}
		}
	}
}

func TestFormatMoney(t *testing.T) {
	for _, tt := range []struct {
		m    Money
		want string
	}{{Money{"CNY", 120000}, "1200.00 CNY"}, {Money{"CNY", 5}, "0.05 CNY"}, {Money{"JPY", 5000}, "5000 JPY"},
		{Money{"KWD", 1234}, "1.234 KWD"}, {Money{"USD", -250}, "-2.50 USD"}} {
		if got := FormatMoney(tt.m); got != tt.want {
			t.Errorf("FormatMoney(%v) = %q, want %q", tt.m, got, tt.want)
		}
	}
}

// Charges in proportion to what is owed stay exact at the largest amounts
// intake accepts (10^15 minor units), where a*b overflows int64.
func TestMulDiv(t *testing.T) {
	for _, c := range []struct{ a, b, d, want int64 }{
		{20000, 60000, 120000, 10000},
		{1_000_000_000_000_000, 999_999_999_999_999, 1_000_000_000_000_000, 999_999_999_999_999},
		{7, 1, 2, 3},
	} {
		if got := mulDiv(c.a, c.b, c.d); got != c.want {
			t.Errorf("mulDiv(%d, %d, %d) = %d, want %d", c.a, c.b, c.d, got, c.want)
		}
	}
}

// Money the lender earmarked for an installment not yet due when it was
// paid goes to that installment, not toward the open promise or plan.
func TestEarmarkedPaymentNotTowardAPromise(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	cny := func(m int64) Money { return Money{"CNY", m} }
	c := Fold([]Entry{
		{Event: InstallmentDue{ID: "1", Amount: cny(1000), DueAt: t0}},
		{Event: InstallmentDue{ID: "2", Amount: cny(1000), DueAt: t0.AddDate(0, 1, 0)}},
		{Event: PromiseToPay{ID: "pr-1", Amount: cny(1000), For: t0.AddDate(0, 0, 14), At: t0.AddDate(0, 0, 10)}},
		{Event: Repayment{PaymentID: "p-early", InstallmentID: "2", Amount: cny(1000), PaidAt: t0.AddDate(0, 0, 11)}},
		{Event: Repayment{PaymentID: "p-arrears", Amount: cny(400), PaidAt: t0.AddDate(0, 0, 12)}},
	})
	if p, ok := c.OpenPromise(); !ok || p.Paid != 400 {
		t.Errorf("paid toward the promise = %d (open %v), want 400: the payment earmarked for installment 2 is not", p.Paid, ok)
	}
}

// An open promise ends with its case (settled here): it is never broken
// later, and the next case does not wait for it.
func TestPromiseEndsWithTheCase(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	c := Fold([]Entry{
		{Event: InstallmentDue{ID: "1", Amount: Money{"CNY", 1000}, DueAt: t0}},
		{Event: Decision{Kind: KindOverdueConfirmed, Ctx: Context{Case: 1, DPD: 1}}},
		{Event: PromiseToPay{ID: "pr-1", Amount: Money{"CNY", 1000}, For: t0.AddDate(0, 0, 14), At: t0.AddDate(0, 0, 10)}},
		{Event: Decision{Kind: KindCaseClosed, Ctx: Context{Case: 1}, CloseReason: CloseSettled}},
	})
	if _, open := c.OpenPromise(); open || !c.Promises[0].Ended {
		t.Errorf("promise after the case closed: %+v, want ended", c.Promises[0])
	}
}
