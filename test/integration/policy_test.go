package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/policyfile"
)

// betaPolicy is a second lender's ladder: a call at DPD 3, escalation at DPD
// 8 with a follow-up SMS at DPD 9, handoff at 12, legal referral at 20.
func betaPolicy(version string, escalateAt int) string {
	s := strings.NewReplacer(
		`version: default-v1`, `version: `+version,
		`tenant: "*" `, `tenant: beta`,
		`{name: light, from: 1, to: 15}`, fmt.Sprintf(`{name: light, from: 1, to: %d}`, escalateAt-1),
		`{name: medium, from: 16, to: 30}`, fmt.Sprintf(`{name: medium, from: %d, to: 11}`, escalateAt),
		`{name: severe, from: 31}`, `{name: severe, from: 12}`,
		`      - {dpd: 1, channels: [sms], template: light_reminder}`, "      - {dpd: 1, channels: [sms], template: light_reminder}\n      - {dpd: 3, channels: [phone], template: light_reminder}",
		`entry: {dpd: 16}`, fmt.Sprintf(`entry: {dpd: %d}`, escalateAt),
		`      - {dpd: 16, channels: [phone, sms, email, app_push], template: medium_notice}`,
		fmt.Sprintf("      - {dpd: %d, channels: [phone, sms], template: medium_notice}\n      - {dpd: %d, channels: [sms], template: medium_notice}", escalateAt, escalateAt+1),
		`entry: {dpd: 31}`, `entry: {dpd: 12}`,
		`entry: {dpd: 90}`, `entry: {dpd: 20}`,
	).Replace(string(policyfile.DefaultYAML))
	return s
}

func writePolicy(t *testing.T, dir, name, content string) {
	t.Helper()
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil { // atomic, as an operator's deploy should be
		t.Fatal(err)
	}
}

type decided struct {
	kind    string
	dpd     int
	version string
	chans   string
}

// decisions lists the ladder's decisions of a loan. The release gate's
// records are left out: these tests are about ladders and policies, and
// their days (tens of milliseconds) are shorter than the server's schedule
// tick, so the gate may hold a contact to the next morning several times
// over (the gate's own tests use days it can keep).
func (h *harness) decisions(tenant, loan string) []decided {
	var out []decided
	for _, e := range h.tenantEntries(tenant, loan) {
		if d, ok := e.event.(policy.Decision); ok && !d.Kind.Gate() {
			var chans []string
			for _, task := range d.Tasks {
				chans = append(chans, task.Channel.String())
			}
			out = append(out, decided{d.Kind.String(), d.Ctx.DPD, d.Ctx.PolicyVersion, strings.Join(chans, "+")})
		}
	}
	return out
}

// usePolicies makes the pipeline choose each loan's ladder from the policy
// directory, as --policies does; call before starting routers.
func (h *harness) usePolicies(dir string) *policyfile.Live {
	h.t.Helper()
	live, err := policyfile.NewLive(dir)
	if err != nil {
		h.t.Fatal(err)
	}
	h.ladderFor = func(tenant, product string) policy.Ladder {
		return policy.Ladder{Policy: live.Book().For(tenant, product), Calendar: h.ladder.Calendar}
	}
	return live
}

// Issue 3, acceptance 2: two tenants with different ladders run side by side
// in one pipeline; each loan follows its own tenant's ladder.
func TestTwoTenantsSideBySide(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 60*time.Millisecond)
	day := h.day
	dir := t.TempDir()
	writePolicy(t, dir, "beta.yaml", betaPolicy("beta-v1", 8))
	h.usePolicies(dir)
	h.startPipeline()
	due := time.Now()
	h.send(tenantDue("acme", "L-a", "1", 1000, due))
	h.send(tenantDue("beta", "L-b", "1", 1000, due))
	// Until beta's ladder has reached the legal entry: its final notice,
	// then a decision on the referral (below). Not until the referral
	// itself: with 60 ms days, shorter than the server's schedule tick, a
	// gate lagging under load can hold the notice morning after morning,
	// and the referral waits for it (the legal tests and the README's
	// timeline, on days the gate keeps, show the referral).
	waitFor(t, 60*day+10*time.Second, func() error {
		a, b := h.decisions("acme", "L-a"), h.decisions("beta", "L-b")
		if len(a) < 4 || len(b) < 8 {
			return fmt.Errorf("acme %v; beta %v", a, b)
		}
		return nil
	})
	wantA := []decided{{"overdue_confirmed", 1, "default-v1", ""}, {"contact_requested", 1, "default-v1", "sms"},
		{"escalated", 16, "default-v1", "phone+sms+email+app_push"}, {"handed_off", 31, "default-v1", ""}}
	wantB := []decided{{"overdue_confirmed", 1, "beta-v1", ""}, {"contact_requested", 1, "beta-v1", "sms"},
		{"contact_requested", 3, "beta-v1", "phone"}, {"escalated", 8, "beta-v1", "phone+sms"},
		{"contact_requested", 9, "beta-v1", "sms"}, {"handed_off", 12, "beta-v1", ""},
		// The shipped pre-legal gate: the final notice at the legal entry.
		{"contact_requested", 20, "beta-v1", "letter+email"}}
	b := h.decisions("beta", "L-b")
	for name, c := range map[string]struct {
		got, want []decided
	}{"acme": {h.decisions("acme", "L-a")[:4], wantA}, "beta": {b[:7], wantB}} {
		for i := range c.want {
			if c.got[i] != c.want[i] {
				t.Errorf("%s decision %d = %+v, want %+v", name, i, c.got[i], c.want[i])
			}
		}
	}
	// Then, when the notice's 30-day reply window has passed (DPD 50),
	// the referral, or a deferral for each day the notice still waited at
	// the release gate (a gate lagging under load): never a referral
	// before DPD 50, nor anything else. The wait above ends at the first of
	// these, so a referral deferred every day passes here too.
	for _, d := range b[7:] {
		switch {
		case d.kind == "entry_deferred" && d.dpd >= 50:
		case d.kind == "legal_referred" && d.dpd >= 50:
			return
		default:
			t.Errorf("beta after the final notice: %+v, want the referral at DPD 50 or later (decisions %v)", d, b)
			return
		}
	}
}

// Issue 3, acceptance 5: a policy changed while a loan is in the ladder
// governs the loan's next decision, and that decision names the new version.
func TestPolicyChangeGovernsNextDecision(t *testing.T) {
	t.Parallel()
	// The change must land between the first contact (DPD 1) and the next
	// step (DPD 3): two days of room. With 300 ms days that was 600 ms,
	// which a busy machine (the release gate's work beside the stages')
	// once missed; 1 s days leave 2 s.
	h := newHarness(t, time.Second)
	day := h.day
	dir := t.TempDir()
	writePolicy(t, dir, "beta.yaml", betaPolicy("beta-v1", 8))
	live := h.usePolicies(dir)
	h.startPipeline()
	due := time.Now()
	h.send(tenantDue("beta", "L-chg", "1", 1000, due))
	waitFor(t, 5*time.Second, func() error {
		if n := len(h.decisions("beta", "L-chg")); n < 2 {
			return fmt.Errorf("%d decisions", n)
		}
		return nil
	})
	// In the light tier under v1; v2 moves escalation from DPD 8 to DPD 6.
	// What was decided before the reload began is v1's, what is decided
	// after it returned is v2's; a decision made while it ran may be
	// either. Counting them by log position, not by the calendar, keeps
	// the test true on a machine too busy to reload before DPD 3.
	writePolicy(t, dir, "beta.yaml", betaPolicy("beta-v2", 6))
	before := len(h.decisions("beta", "L-chg"))
	if err := live.Reload(); err != nil {
		t.Fatal(err)
	}
	after := len(h.decisions("beta", "L-chg"))
	waitFor(t, 12*day+5*time.Second, func() error {
		for _, d := range h.decisions("beta", "L-chg") {
			if d.kind == "escalated" {
				return nil
			}
		}
		return fmt.Errorf("not escalated: %v", h.decisions("beta", "L-chg"))
	})
	ds := h.decisions("beta", "L-chg")
	for _, d := range ds[:before] {
		if d.version != "beta-v1" {
			t.Errorf("decision before the change %+v, want beta-v1", d)
		}
	}
	if len(ds) == after {
		t.Fatalf("no decision after the change: %+v", ds)
	}
	for _, d := range ds[after:] {
		if d.version != "beta-v2" {
			t.Errorf("decision after the change %+v, want beta-v2", d)
		}
		if d.kind == "escalated" && d.dpd != 6 {
			t.Errorf("escalated at DPD %d, want 6 (v2)", d.dpd)
		}
	}
	// A broken edit is refused and v2 stays in force.
	writePolicy(t, dir, "beta.yaml", strings.Replace(betaPolicy("beta-v3", 6), "[sms]", "[fax]", 1))
	if err := live.Reload(); err == nil || !strings.Contains(err.Error(), `unknown channel "fax"`) {
		t.Errorf("reload of a broken policy = %v, want the channel error", err)
	}
	if v := live.Book().For("beta", "").Version; v != "beta-v2" {
		t.Errorf("policy in force after a failed reload = %s, want beta-v2", v)
	}
}
