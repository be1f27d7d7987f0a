package policyfile

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opendunning/dunning/pkg/policy"
)

func TestDefaultReproducesSpec(t *testing.T) {
	p, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	want := policy.Default()
	if p.LightMax != want.LightMax || p.MediumMax != want.MediumMax || p.EscalationDPD() != 16 || p.HandoffDPD != want.HandoffDPD ||
		p.LegalDPD != want.LegalDPD || p.GraceDays != 0 || p.Agency != want.Agency || p.PenaltyBpsPerDay != want.PenaltyBpsPerDay || p.Version != want.Version {
		t.Errorf("default policy file = %+v, want the thresholds of policy.Default()", p)
	}
	if err := p.Validate(); err != nil {
		t.Errorf("Validate() = %v", err)
	}
	for dpd, tier := range map[int]policy.Tier{0: policy.TierNone, 1: policy.TierLight, 15: policy.TierLight, 16: policy.TierMedium,
		30: policy.TierMedium, 31: policy.TierSevere} {
		if got := p.TierAt(dpd); got != tier {
			t.Errorf("TierAt(%d) = %s, want %s", dpd, got, tier)
		}
	}
	if len(p.Cadence) != 2 || p.Cadence[0].Channels[0] != policy.ChannelSMS || len(p.Cadence[1].Channels) != 4 {
		t.Errorf("cadence = %+v, want SMS at DPD 1 and four channels at DPD 16", p.Cadence)
	}
}

// mutate applies replacements to the shipped file, failing if one does not apply.
func mutate(t *testing.T, repl ...string) []byte {
	t.Helper()
	s := string(DefaultYAML)
	for i := 0; i+1 < len(repl); i += 2 {
		if !strings.Contains(s, repl[i]) {
			t.Fatalf("default.yaml has no %q", repl[i])
		}
		s = strings.Replace(s, repl[i], repl[i+1], 1)
	}
	return []byte(s)
}

// lineOf is the 1-based line of the first occurrence of needle in data.
func lineOf(t *testing.T, data []byte, needle string) int {
	t.Helper()
	i := strings.Index(string(data), needle)
	if i < 0 {
		t.Fatalf("no %q in the file", needle)
	}
	return 1 + strings.Count(string(data[:i]), "\n")
}

func TestInvalidPolicies(t *testing.T) {
	tests := []struct {
		name      string
		repl      []string
		lineOf    string // the error's line holds this text
		wantField string
		wantMsg   string
	}{
		{"overlapping ranges", []string{"{name: medium, from: 16, to: 30}", "{name: medium, from: 14, to: 30}"},
			"{name: medium, from: 14", "tiers[1].from", "light (1-15) and medium (from 14) overlap on DPD 14-15"},
		{"gapped ranges", []string{"{name: severe, from: 31}", "{name: severe, from: 35}"},
			"{name: severe, from: 35}", "tiers[2].from", "gap between medium (to 30) and severe (from 35): DPD 31-34 have no tier"},
		{"first tier not at DPD 1", []string{"{name: light, from: 1, to: 15}", "{name: light, from: 2, to: 15}"},
			"{name: light, from: 2", "tiers", "the first tier must start at DPD 1"},
		{"closed last tier", []string{"{name: severe, from: 31}", "{name: severe, from: 31, to: 400}"},
			"{name: severe, from: 31, to: 400}", "tiers[2].to", "must be open-ended"},
		{"unknown tier", []string{"{name: medium, from: 16, to: 30}", "{name: moderate, from: 16, to: 30}"},
			"{name: moderate", "tiers[1].name", `unknown tier "moderate"`},
		{"unknown channel", []string{"channels: [sms], template: light_reminder", "channels: [fax], template: light_reminder"},
			"channels: [fax]", "stages.first_contact.steps[0].channels[0]", `unknown channel "fax"`},
		{"unknown template", []string{"template: medium_notice}", "template: medium_notise}"},
			"template: medium_notise}", "stages.escalation.steps[0].template", `unknown template "medium_notise"`},
		{"step outside its stage", []string{"      - {dpd: 16, channels: [phone, sms, email, app_push], template: medium_notice}",
			"      - {dpd: 16, channels: [phone, sms, email, app_push], template: medium_notice}\n      - {dpd: 35, channels: [sms], template: medium_notice}"},
			"{dpd: 35", "stages.escalation.steps[1].dpd", "step at DPD 35 is outside its stage escalation (DPD 16-30)"},
		{"template missing for a locale", []string{`      en: "{lender}: your loan is {dpd} days past due. {amount} is outstanding and {fees} in interest and late fees has accrued. {credit} Please repay via {repay}, or contact us to agree {options}. Verification code {ref}."` + "\n", ""},
			"    sms:\n      zh-CN: \"【{lender}】您的借款已逾期{dpd}天，待还{amount}", "templates.medium_notice.sms", `template missing for locale "en"`},
		{"template channel missing for a step", []string{"channels: [sms], template: light_reminder", "channels: [email], template: light_reminder"},
			"channels: [email]", "stages.first_contact.steps[0].channels[0]", `template "light_reminder" has no email text`},
		{"stages out of order", []string{"entry: {dpd: 90}", "entry: {dpd: 20}"},
			"entry: {dpd: 20}", "stages.legal_referral.entry.dpd", "must be after third_party_handoff (DPD 31), got 20"},
		{"unknown field", []string{"grace_days: 0 ", "grace_dayz: 0 "},
			"grace_dayz", "grace_dayz", "unknown field"},
		{"wrong type", []string{"penalty_bps_per_day: 5", "penalty_bps_per_day: five"},
			"penalty_bps_per_day: five", "penalty_bps_per_day", "must be an integer"},
		{"missing placeholder", []string{"或联系我们商议{options}。核验码{ref}。", "或联系我们商议{options}。"},
			"或联系我们商议{options}。\"", "templates.medium_notice.sms.zh-CN", "must include {ref}"},
		{"unknown placeholder", []string{"your payment of {amount} is {dpd} days past due. You can", "your payment of {amount} is {dpd} days past due {name}. You can"},
			"{dpd} days past due {name}", "templates.light_reminder.sms.en", "unknown placeholder {name}"},
		{"bad default locale", []string{"default_locale: zh-CN", "default_locale: fr"},
			"default_locale: fr", "default_locale", `"fr" is not in locales`},
		{"bad agency", []string{"agency: agency-default", "agency: agency default"},
			"agency: agency default", "stages.third_party_handoff.agency", "not a valid identifier"},
		{"agency and registry", []string{"agency: agency-default", "agency: agency-default\n    agencies: [{id: agency-a}]"},
			"agency: agency-default", "stages.third_party_handoff.agency", "not both"},
		{"bad agency region", []string{"agency: agency-default", "agencies:\n      - {id: agency-a, regions: [shanghai]}"},
			"regions: [shanghai]", "stages.third_party_handoff.agencies[0].regions[0]", `"shanghai" is not an ISO 3166-2 code`},
		{"agency listed twice", []string{"agency: agency-default", "agencies:\n      - {id: agency-a}\n      - {id: agency-a, weight: 2}"},
			"{id: agency-a, weight: 2}", "stages.third_party_handoff.agencies[1].id", `agency "agency-a" listed twice`},
		{"agency weight zero", []string{"agency: agency-default", "agencies:\n      - {id: agency-a, weight: 0}"},
			"{id: agency-a, weight: 0}", "stages.third_party_handoff.agencies[0].weight", "must be 1-1000, got 0"},
		{"agency without id", []string{"agency: agency-default", "agencies:\n      - {name: A}"},
			"{name: A}", "stages.third_party_handoff.agencies[0].id", "is required"},
		{"agency unknown field", []string{"agency: agency-default", "agencies:\n      - {id: agency-a, capacty: 10}"},
			"capacty: 10", "stages.third_party_handoff.agencies[0].capacty", "unknown field"},
		{"agency negative capacity", []string{"agency: agency-default", "agencies:\n      - {id: agency-a, capacity: -1}"},
			"capacity: -1", "stages.third_party_handoff.agencies[0].capacity", "must be >= 0"},
		{"decide spread into the window", []string{"decide_spread: 6h", "decide_spread: 9h"},
			"decide_spread: 9h", "contact.decide_spread", "ends after cn's window"},
		{"decide spread not a duration", []string{"decide_spread: 6h", "decide_spread: six hours"},
			"decide_spread: six hours", "contact.decide_spread", "is not a duration"},
		{"agency negative placement days", []string{"agency: agency-default", "agencies:\n      - {id: agency-a, placement_days: -30}"},
			"placement_days: -30", "stages.third_party_handoff.agencies[0].placement_days", "must be 0-3650"},
		{"confirm payment days outside the handoff", []string{"limitation_days: 1095", "limitation_days: 1095\n    confirm_payment_days: 7"},
			"confirm_payment_days: 7", "stages.legal_referral.confirm_payment_days", "only third_party_handoff"},
		{"bad ladder clock", []string{"ladder_clock: calendar", "ladder_clock: stop"},
			"ladder_clock: stop", "holds.ladder_clock", `"stop" is neither pause`},
		{"unknown hold kind", []string{"review_days: {dispute: 30,", "review_days: {disputes: 30,"},
			"review_days: {disputes", "holds.review_days.disputes", "not a hold kind"},
		{"breathing space review", []string{"review_days: {dispute: 30,", "review_days: {breathing_space: 30, dispute: 30,"},
			"review_days: {breathing_space", "holds.review_days.breathing_space", "ends by itself"},
		{"promise threshold out of range", []string{"threshold_pct: 100", "threshold_pct: 0"},
			"threshold_pct: 0", "promises.threshold_pct", "must be 1-100"},
		{"unknown promise rule", []string{"max_broken: 2", "max_broke: 2"},
			"max_broke", "promises.max_broke", "unknown field"},
		{"review out of range", []string{"complaint: 14,", "complaint: 0,"},
			"complaint: 0", "holds.review_days.complaint", "must be 1-365 days"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := mutate(t, tt.repl...)
			_, err := Parse("acme.yaml", data)
			es, ok := AsErrors(err)
			if !ok {
				t.Fatalf("Parse = %v, want policy errors", err)
			}
			want := lineOf(t, data, tt.lineOf)
			for _, e := range es {
				if e.Field == tt.wantField && strings.Contains(e.Msg, tt.wantMsg) {
					if e.File != "acme.yaml" || e.Line != want {
						t.Errorf("error %v at %s:%d, want acme.yaml:%d", e, e.File, e.Line, want)
					}
					return
				}
			}
			t.Errorf("errors:\n%v\nwant %s: ...%s... on line %d", err, tt.wantField, tt.wantMsg, want)
		})
	}
}

// A threatening template is rejected at load, in zh and in en, naming the
// phrase and its line.
func TestLanguageCheck(t *testing.T) {
	tests := []struct {
		name, from, to, phrase string
	}{
		{"en", "To check this message is genuine", "We know where you live. To check this message is genuine", "we know where you live"},
		{"zh", "如暂时有困难，可申请{options}。如需核实本消息", "如不还款我们将上门催收。如需核实本消息", "上门"},
		{"zh 通讯录", "如需协商还款方案，请通过{repay}", "否则将联系你的通讯录。如需协商还款方案，请通过{repay}", "通讯录"},
		{"en false legal claim", "If you have already paid, please disregard", "You will be arrested. If you have already paid, please disregard", "you will be arrested"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := mutate(t, tt.from, tt.to)
			_, err := Parse("p.yaml", data)
			es, _ := AsErrors(err)
			want := lineOf(t, data, tt.to)
			for _, e := range es {
				if strings.Contains(e.Msg, "threatening") && strings.Contains(strings.ToLower(e.Msg), tt.phrase) {
					if e.Line != want {
						t.Errorf("%v: line %d, want %d", e, e.Line, want)
					}
					return
				}
			}
			t.Errorf("Parse = %v, want the phrase %q rejected", err, tt.phrase)
		})
	}
	// A lender's own banned phrase.
	data := mutate(t, "extra_banned: []", "extra_banned: [\"bank transfer now\"]",
		"You can repay via {repay}.", "You can repay via {repay}. Bank transfer NOW.")
	if _, err := Parse("p.yaml", data); err == nil || !strings.Contains(strings.ToLower(err.Error()), "bank transfer now") {
		t.Errorf("extra banned phrase: Parse = %v, want it rejected", err)
	}
}

func TestEveryErrorAtOnce(t *testing.T) {
	data := mutate(t, "{name: severe, from: 31}", "{name: severe, from: 35}", "channels: [sms], template: light_reminder", "channels: [fax], template: light_reminder",
		"agency: agency-default", "agency: \"a b\"")
	_, err := Parse("p.yaml", data)
	es, _ := AsErrors(err)
	if len(es) < 3 {
		t.Errorf("Parse reported %d errors, want all 3:\n%v", len(es), err)
	}
	for i := 1; i < len(es); i++ {
		if es[i].Line < es[i-1].Line {
			t.Errorf("errors not in file order: %v", err)
		}
	}
}

func TestMalformedYAML(t *testing.T) {
	_, err := Parse("p.yaml", []byte("version: [unclosed\n"))
	if es, ok := AsErrors(err); !ok || len(es) != 1 || es[0].Line == 0 {
		t.Errorf("Parse(bad yaml) = %v, want one positioned error", err)
	}
	if _, err := Parse("p.yaml", nil); err == nil {
		t.Error("Parse(empty) = nil error")
	}
}

// Table tests at every configured boundary of a non-default policy: tiers,
// the stage each DPD falls in, and the day each step comes due.
func TestConfiguredBoundaries(t *testing.T) {
	data := mutate(t,
		"{name: light, from: 1, to: 15}", "{name: light, from: 1, to: 9}",
		"{name: medium, from: 16, to: 30}", "{name: medium, from: 10, to: 20}",
		"{name: severe, from: 31}", "{name: severe, from: 21}",
		"grace_days: 0 ", "grace_days: 2 ",
		"- {dpd: 1, channels: [sms], template: light_reminder}", "- {dpd: 3, channels: [sms], template: light_reminder}\n      - {dpd: 5, channels: [phone], template: light_reminder}",
		"entry: {dpd: 16}", "entry: {dpd: 10}",
		"- {dpd: 16, channels: [phone, sms, email, app_push], template: medium_notice}", "- {dpd: 10, channels: [phone, sms], template: medium_notice}",
		"entry: {dpd: 31}", "entry: {dpd: 25}",
		"entry: {dpd: 90}", "entry: {dpd: 60}",
	)
	p, err := Parse("acme.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		dpd  int
		want policy.Tier
	}{{0, policy.TierNone}, {1, policy.TierLight}, {9, policy.TierLight}, {10, policy.TierMedium}, {20, policy.TierMedium}, {21, policy.TierSevere}, {60, policy.TierSevere}} {
		if got := p.TierAt(tt.dpd); got != tt.want {
			t.Errorf("TierAt(%d) = %s, want %s", tt.dpd, got, tt.want)
		}
	}
	l := policy.Ladder{Policy: p, Calendar: policy.Calendar{Day: policy.RealDay}}
	in := policy.InstallmentDue{ID: "1", Amount: policy.Money{Currency: "CNY", Minor: 1000}, DueAt: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC), Zone: "UTC"}
	var got []string
	for _, d := range l.Simulate(in, nil, 100) {
		got = append(got, fmt.Sprintf("%s@%d/%s", d.Kind, d.Ctx.DPD, d.Ctx.Tier))
	}
	// Every contact is decided at local midnight, held by the cn pack's
	// window and released at the loan's slot the same morning. The final
	// notice at the legal entry (DPD 60), referral 30 days later.
	want := []string{"overdue_confirmed@3/light", "contact_requested@3/light", "contact_held@3/light", "contact_released@3/light",
		"contact_requested@5/light", "contact_held@5/light", "contact_released@5/light",
		"escalated@10/medium", "contact_held@10/medium", "contact_released@10/medium", "handed_off@25/severe",
		"contact_requested@60/severe", "contact_held@60/severe", "contact_released@60/severe", "legal_referred@90/severe"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ladder = %v\nwant %v", got, want)
	}
	// Paid on the last day of grace: never confirmed; a day later: confirmed.
	if ds := l.Simulate(in, []policy.Payment{{DPD: 2, Amount: 1000}}, 70); len(ds) != 0 {
		t.Errorf("paid at DPD 2 with grace 2: %d decisions, want none", len(ds))
	}
	if ds := l.Simulate(in, []policy.Payment{{DPD: 3, Amount: 1000}}, 70); len(ds) != 5 || ds[4].Kind != policy.KindCaseClosed {
		t.Errorf("paid at DPD 3 with grace 2: %v, want confirmed, contacted, held, released, closed", ds)
	}
}

// A changed file is picked up by the watcher; a broken edit leaves the
// previous policies in force and is not retried until the file changes again.
func TestWatchReloads(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "acme.yaml")
	// Each write gets a modification time a second after the last, so the
	// watcher sees every change whatever the file system's time granularity.
	mtime := time.Now().Add(-time.Hour)
	write := func(content string) {
		t.Helper()
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		mtime = mtime.Add(time.Second)
		if err := os.Chtimes(tmp, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	v := func(version string) string {
		return strings.Replace(strings.Replace(string(DefaultYAML), "version: default-v1", "version: "+version, 1), `tenant: "*" `, "tenant: acme ", 1)
	}
	write(v("acme-v1"))
	live, err := NewLive(dir)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var results []error
	live.OnReload = func(err error) { mu.Lock(); results = append(results, err); mu.Unlock() }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go live.Watch(ctx, 20*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
	waitVersion := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for live.Book().For("acme", "").Version != want {
			if time.Now().After(deadline) {
				t.Fatalf("version %s, want %s", live.Book().For("acme", "").Version, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	write(v("acme-v2"))
	waitVersion("acme-v2")
	write(strings.Replace(v("acme-v3"), "[sms]", "[fax]", 1))
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(results)
		mu.Unlock()
		if n >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // a few more ticks: the bad file must not be retried
	mu.Lock()
	defer mu.Unlock()
	if len(results) != 2 || results[0] != nil || results[1] == nil {
		t.Errorf("reload results = %v, want ok then one failure", results)
	}
	if got := live.Book().For("acme", "").Version; got != "acme-v2" {
		t.Errorf("after a broken edit the policy in force is %s, want acme-v2", got)
	}
	if got := live.Book().For("other", "").Version; got != "default-v1" {
		t.Errorf("a tenant without a policy gets %s, want the shipped default", got)
	}
}

func TestLoadDirRejectsDuplicates(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"a.yaml", "b.yaml"} {
		if err := os.WriteFile(filepath.Join(dir, n), DefaultYAML, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := LoadDir(dir); err == nil || !strings.Contains(err.Error(), "already has a policy in") {
		t.Errorf("LoadDir(two defaults) = %v, want a duplicate error", err)
	}
	if _, err := LoadDir(filepath.Join(dir, "missing")); err == nil {
		t.Error("LoadDir(missing) = nil error")
	}
}

// SIGHUP reloads even when no modification time changed (an operator's
// deploy that preserves mtimes).
func TestSIGHUPReloads(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "acme.yaml")
	v := func(version string) []byte {
		return []byte(strings.Replace(strings.Replace(string(DefaultYAML), "version: default-v1", "version: "+version, 1), `tenant: "*" `, "tenant: acme ", 1))
	}
	if err := os.WriteFile(path, v("acme-v1"), 0o600); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	live, err := NewLive(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go live.Watch(ctx, time.Hour, slog.New(slog.NewTextHandler(io.Discard, nil))) // no polling within the test
	if err := os.WriteFile(path, v("acme-v2"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	// This test's own handler keeps a SIGHUP that arrives before Watch has
	// installed its handler from ending the process; send until it is seen.
	own := make(chan os.Signal, 1)
	signal.Notify(own, syscall.SIGHUP)
	defer signal.Stop(own)
	deadline := time.Now().Add(5 * time.Second)
	for live.Book().For("acme", "").Version != "acme-v2" {
		if time.Now().After(deadline) {
			t.Fatalf("after SIGHUP the policy is %s, want acme-v2", live.Book().For("acme", "").Version)
		}
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Acceptance 7 (contact rules): under us-regf every SMS and e-mail text
// carries {optout} (12 CFR 1006.6(e)); a policy whose texts lack it is
// refused with file:line:col, naming the rule; phone and push are not
// concerned, and with {optout} added the policy loads.
func TestUSRegFRequiresOptOut(t *testing.T) {
	data := mutate(t, "jurisdiction: cn ", "jurisdiction: us-regf ")
	_, err := Parse("us.yaml", data)
	es, ok := AsErrors(err)
	if !ok || len(es) == 0 {
		t.Fatalf("Parse = %v, want {optout} errors", err)
	}
	channels := map[string]bool{}
	for _, e := range es {
		if !strings.Contains(e.Msg, "must include {optout}") || !strings.Contains(e.Msg, "us-regf.opt-out") || e.Line == 0 || e.Col == 0 {
			t.Errorf("unexpected error %v", e)
			continue
		}
		channels[strings.Split(e.Field, ".")[2]] = true
		if got := e.Error(); !strings.HasPrefix(got, fmt.Sprintf("us.yaml:%d:%d: ", e.Line, e.Col)) {
			t.Errorf("error %q is not file:line:col", got)
		}
	}
	if !channels["sms"] || !channels["email"] || channels["phone"] || channels["app_push"] || channels["letter"] {
		t.Errorf("channels refused %v, want sms and email only", channels)
	}
	// Every sms and email text with {optout}: the policy loads.
	fixed := regexp.MustCompile(`(?m)^(\s+(?:zh-CN|en): ")(.*)("\s*)$`)
	var out []string
	channel := ""
	for _, line := range strings.Split(string(data), "\n") {
		if m := regexp.MustCompile(`^\s+(sms|phone|email|app_push|letter):\s*$`).FindStringSubmatch(line); m != nil {
			channel = m[1]
		}
		if (channel == "sms" || channel == "email") && fixed.MatchString(line) {
			line = fixed.ReplaceAllString(line, "${1}${2} {optout}${3}")
		}
		out = append(out, line)
	}
	if _, err := Parse("us.yaml", []byte(strings.Join(out, "\n"))); err != nil {
		t.Errorf("with {optout} in every sms and email text: %v", err)
	}
}

// The borrower's language and the lender's name: a task is in the
// installment's locale when the policy has it (else the default), {lender}
// renders the policy's lender_name (not the tenant ID) and {repay} the
// lender's own wording; wording in a locale the policy lacks is refused.
func TestLenderNameLocaleAndWording(t *testing.T) {
	data := mutate(t, "grace_days: 0 ", "lender_name: \"Acme Finance\"\nrepay_wording: {zh-CN: \"Acme金融App\", en: \"the Acme app\"}\ngrace_days: 0 ")
	pol, err := Parse("acme.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	l := policy.Ladder{Policy: pol, Calendar: policy.Calendar{Day: policy.RealDay}}
	for _, tt := range []struct{ locale, want, repay string }{{"en", "en", "the Acme app"}, {"zh-CN", "zh-CN", "Acme金融App"}, {"fr", "zh-CN", "Acme金融App"}, {"", "zh-CN", "Acme金融App"}} {
		in := policy.InstallmentDue{ID: "1", Amount: policy.Money{Currency: "CNY", Minor: 1000}, DueAt: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC),
			Zone: "UTC", Locale: tt.locale}
		var task policy.ContactTask
		for _, d := range l.Simulate(in, nil, 2) {
			if d.Kind == policy.KindContactRequested {
				task = d.Tasks[0]
			}
		}
		if task.Locale != tt.want {
			t.Errorf("installment in %q: task in %q, want %q", tt.locale, task.Locale, tt.want)
		}
		text, err := pol.Render(task, "acme")
		if err != nil || !strings.Contains(text, "Acme Finance") || strings.Contains(text, "acme") || !strings.Contains(text, tt.repay) {
			t.Errorf("installment in %q: %q (%v), want Acme Finance and %q", tt.locale, text, err, tt.repay)
		}
	}
	bad := mutate(t, "grace_days: 0 ", "repay_wording: {fr: \"virement\"}\ngrace_days: 0 ")
	if _, err := Parse("acme.yaml", bad); err == nil || !strings.Contains(err.Error(), "repay_wording.fr") {
		t.Errorf("wording in a locale the policy lacks: %v", err)
	}
}

// us-regf's limited-content voicemail: a voicemail that says there is a
// debt ({amount}) is refused at its file:line:col under any jurisdiction,
// and under us-regf a template with a phone text but no voicemail is
// refused naming the rule and its citation.
func TestVoicemailIsLimitedContent(t *testing.T) {
	vm := `en: "Hello, this is {lender}. Please call us back on {callback}."`
	for _, c := range []struct{ text, want string }{
		{`en: "Hello, this is {lender}. It is about {amount}. Please call us back on {callback}."`, "may not carry {amount}"},
		{`en: "Hello, this is {lender}. Your code is {ref}. Please call us back on {callback}."`, "may not carry {ref}"},
		{`en: "Hello, this is {lender}. Please call us back about your overdue account on {callback}."`, `may not say there is a debt: "overdue"`},
		{`en: "Hello, this is {lender}. Please call us back."`, "must carry {callback}"},
	} {
		data := mutate(t, vm, c.text)
		_, err := Parse("vm.yaml", data)
		es, _ := AsErrors(err)
		if len(es) != 1 || !strings.Contains(es[0].Msg, c.want) || es[0].Line != lineOf(t, data, c.text) ||
			es[0].Field != "templates.light_reminder.voicemail.en" {
			t.Errorf("voicemail %s: %v, want one error %q at line %d", c.text, err, c.want, lineOf(t, data, c.text))
		}
	}
	zh := `zh-CN: "您好，这里是{lender}，有事与您联系，请回电{callback}。"`
	if _, err := Parse("vm.yaml", mutate(t, zh, `zh-CN: "您好，这里是{lender}，关于您的逾期借款，请回电{callback}。"`)); err == nil || !strings.Contains(err.Error(), `"逾期"`) {
		t.Errorf("zh-CN voicemail about an overdue loan: %v, want it refused", err)
	}
	// The lender's callback number, per locale, is checked the same way.
	if _, err := Parse("vm.yaml", mutate(t, "grace_days: 0 ", "callback: {en: \"+1 555 0100 (collections)\"}\ngrace_days: 0 ")); err == nil ||
		!strings.Contains(err.Error(), "callback.en") {
		t.Errorf("a callback naming collections: %v, want it refused", err)
	}

	// Under us-regf (with {optout} where that rule wants it), drop the
	// light reminder's voicemail.
	us := string(mutate(t, "jurisdiction: cn ", "jurisdiction: us-regf "))
	us = regexp.MustCompile(`(?m)^(\s+en: ".*\{ref\}[^"]*)("\s*)$`).ReplaceAllString(us, "${1} {optout}${2}")
	start := strings.Index(us, "    # Left when a call is not answered")
	end := strings.Index(us, "  medium_notice:")
	us = us[:start] + us[end:]
	_, err := Parse("us.yaml", []byte(us))
	es, _ := AsErrors(err)
	var found bool
	for _, e := range es {
		if e.Field == "templates.light_reminder.voicemail" && strings.Contains(e.Msg, "us-regf.voicemail") && strings.Contains(e.Msg, "1006.2(j)") && e.Line > 0 {
			found = true
		} else if !strings.Contains(e.Msg, "{optout}") {
			t.Errorf("unexpected error %v", e)
		}
	}
	if !found {
		t.Errorf("us-regf without a voicemail: %v, want the light reminder's refused by us-regf.voicemail", err)
	}
}

// A lender's hours per weekday narrow the pack's window and never widen
// it: a Saturday of 10:00-14:00 loads; 07:00 under cn (08:00-22:00), a
// backwards range and an unknown day are refused at their lines.
func TestWeekdayHours(t *testing.T) {
	ok := mutate(t, "  hours: {}", `  hours: {saturday: {from: "10:00", to: "14:00"}}`)
	pol, err := Parse("hours.yaml", ok)
	if err != nil {
		t.Fatal(err)
	}
	if h := pol.Contact.Calendar.Hours[time.Saturday]; h.From != 10*time.Hour || h.To != 14*time.Hour || len(pol.Contact.Calendar.Hours) != 1 {
		t.Errorf("hours = %v, want saturday 10:00-14:00", pol.Contact.Calendar.Hours)
	}
	for _, c := range []struct{ yaml, field, msg string }{
		{`  hours: {saturday: {from: "07:00", to: "14:00"}}`, "contact.hours.saturday", "not inside cn's window 08:00-22:00"},
		{`  hours: {saturday: {from: "14:00", to: "10:00"}}`, "contact.hours.saturday.to", "must be after from"},
		{`  hours: {caturday: {from: "10:00", to: "14:00"}}`, "contact.hours.caturday", "not a weekday"},
	} {
		data := mutate(t, "  hours: {}", c.yaml)
		_, err := Parse("hours.yaml", data)
		es, _ := AsErrors(err)
		if len(es) != 1 || es[0].Field != c.field || !strings.Contains(es[0].Msg, c.msg) || es[0].Line != lineOf(t, data, c.yaml) {
			t.Errorf("%s: %v, want one error on %s (%q) at line %d", c.yaml, err, c.field, c.msg, lineOf(t, data, c.yaml))
		}
	}
}

// The agency registry is read from the handoff stage: ids, names, regions
// weights and capacities, a weight defaulting to 1, a capacity to none.
func TestAgencyRegistry(t *testing.T) {
	data := mutate(t, "agency: agency-default",
		"agencies:\n      - {id: agency-a, name: \"Agency A\", regions: [CN-31, CN-11], weight: 3, capacity: 500, placement_days: 90}\n      - {id: agency-b}")
	p, err := Parse("acme.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	want := []policy.Agency{{ID: "agency-a", Name: "Agency A", Regions: []string{"CN-31", "CN-11"}, Weight: 3, Capacity: 500, PlacementDays: 90}, {ID: "agency-b", Weight: 1}}
	if fmt.Sprint(p.Agencies) != fmt.Sprint(want) {
		t.Errorf("agencies = %+v, want %+v", p.Agencies, want)
	}
	if fmt.Sprint(p.Registry()) != fmt.Sprint(want) {
		t.Errorf("registry = %+v, want the listed agencies", p.Registry())
	}
	def, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	if r := def.Registry(); len(r) != 1 || r[0].ID != "agency-default" || r[0].Weight != 1 {
		t.Errorf("the shipped policy's registry = %+v, want agency-default alone", r)
	}
}
