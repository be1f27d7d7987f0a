package stage_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/opendunning/dunning/pkg/contactrules"
	"github.com/opendunning/dunning/pkg/loanlog/memlog"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/stage"
)

// These tests run the release gate with the stages over the in-memory log,
// real 24-hour days in the borrower's zone and an injected clock: the
// contact-rules issue's acceptance 1 and 2 as the engine decides them.

// gateWorld is a world whose loans are due at 18:00 local in zone, under a
// policy with the jurisdiction's pack and the given slot.
func gateWorld(t *testing.T, zone, pack string, sendAt, spread time.Duration, due func(*time.Location) time.Time) *world {
	t.Helper()
	loc, err := policy.LoadZone(zone)
	if err != nil {
		t.Fatal(err)
	}
	packs, err := contactrules.Packs()
	if err != nil {
		t.Fatal(err)
	}
	pol := policy.Default()
	pol.Jurisdiction = pack
	pol.Contact = policy.ContactRules{Pack: packs[pack], SendAt: sendAt, SendSpread: spread, MaxAttempts: 6}
	if err := pol.Validate(); err != nil {
		t.Fatal(err)
	}
	d := due(loc)
	c := memlog.NewClock(d.Add(-time.Hour))
	l := memlog.New(c.Now)
	m := stage.NewMetrics(prometheus.NewRegistry())
	ladder := policy.Fixed(policy.Ladder{Policy: pol, Calendar: policy.Calendar{Day: policy.RealDay}})
	return &world{t: t, clock: c, log: l, metrics: m, due: d, loc: loc,
		deps: stage.Deps{Log: l, Ladder: ladder, Now: c.Now, Metrics: m, Borrowers: &memlog.Borrowers{}, Codes: &memlog.Codes{}, Placements: l}}
}

// gated returns the loan's gate records and contact decisions in order.
func (w *world) gated(loan string) []policy.Decision {
	return w.logged(loan, func(d policy.Decision) bool { return d.Kind.Gate() || len(d.Tasks) > 0 })
}

// logged returns the loan's decisions that keep accepts, in order.
func (w *world) logged(loan string, keep func(policy.Decision) bool) []policy.Decision {
	w.t.Helper()
	es, _, err := w.log.Read(ctx, tenant, loan)
	if err != nil {
		w.t.Fatal(err)
	}
	var out []policy.Decision
	for _, e := range es {
		if d, ok := e.Event.(policy.Decision); ok && keep(d) {
			out = append(out, d)
		}
	}
	return out
}

// Acceptance 1 (contact rules): a loan that never pays is contacted at DPD 1
// and DPD 16, each decided at local midnight and released at 08:00 local,
// never before: in Shanghai under cn, in Los Angeles under us-regf, and in
// New York across the March DST change (2026-03-08, 02:00 -> 03:00), where
// the contact decided at midnight EST leaves at 08:00 EDT.
func TestContactsWaitForTheWindow(t *testing.T) {
	cases := []struct {
		zone, pack, rule string
		due              func(*time.Location) time.Time
	}{
		{"Asia/Shanghai", "cn", "cn.hours", func(l *time.Location) time.Time { return time.Date(2026, 3, 2, 18, 0, 0, 0, l) }},
		{"America/Los_Angeles", "us-regf", "us-regf.hours", func(l *time.Location) time.Time { return time.Date(2026, 3, 2, 18, 0, 0, 0, l) }},
		// Due on 2026-03-07: DPD 1 is the DST day itself.
		{"America/New_York", "us-regf", "us-regf.hours", func(l *time.Location) time.Time { return time.Date(2026, 3, 7, 18, 0, 0, 0, l) }},
	}
	for _, c := range cases {
		t.Run(c.zone, func(t *testing.T) {
			w := gateWorld(t, c.zone, c.pack, 0, 0, c.due)
			w.lender("L-1", "1", policy.InstallmentDue{ID: "1", Amount: policy.Money{Currency: "CNY", Minor: 100000}, DueAt: w.due, Zone: c.zone, ContactRef: "crm"})
			w.drain()
			w.until(w.dpd(17, 0))
			var kinds []string
			for _, d := range w.gated("L-1") {
				kinds = append(kinds, d.Kind.String())
				local := d.Ctx.DecidedAt.In(w.loc)
				switch d.Kind {
				case policy.KindContactRequested, policy.KindEscalated:
					if local.Hour() != 0 || local.Minute() != 0 {
						t.Errorf("%s decided at %s, want local midnight", d.Kind, local)
					}
				case policy.KindContactHeld:
					until := d.HeldUntil.In(w.loc)
					if d.Rule != c.rule || until.Hour() != 8 || until.Minute() != 0 || until.Day() != local.Day() {
						t.Errorf("held by %q until %s (decided %s), want %s until 08:00 the same day", d.Rule, until, local, c.rule)
					}
				case policy.KindContactReleased:
					if local.Hour() != 8 || local.Minute() != 0 {
						t.Errorf("released at %s, want 08:00 local", local)
					}
					for _, task := range d.Tasks {
						if !task.NotBefore.Equal(d.Ctx.DecidedAt) || task.NotAfter.Sub(task.NotBefore) <= 0 || task.MaxAttempts != 6 {
							t.Errorf("task %s: not before %s, not after %s, attempts %d", task.ID, task.NotBefore, task.NotAfter, task.MaxAttempts)
						}
					}
				}
			}
			want := "contact_requested contact_held contact_released escalated contact_held contact_released"
			if got := fmt.Sprint(kinds); got != "["+want+"]" {
				t.Errorf("contact records %s, want [%s]", got, want)
			}
			if c.zone == "America/New_York" {
				released := w.gated("L-1")[2].Ctx.DecidedAt
				if want := time.Date(2026, 3, 8, 12, 0, 0, 0, time.UTC); !released.Equal(want) {
					t.Errorf("released at %s on the DST day, want %s (08:00 EDT)", released.UTC(), want)
				}
			}
		})
	}
}

// Acceptance 5 (contact rules), cured overnight: the contact held at
// midnight is never released; the gate records contact_cancelled.
func TestCuredOvernightCancelsTheHeldContact(t *testing.T) {
	w := gateWorld(t, "Asia/Shanghai", "cn", 0, 0, func(l *time.Location) time.Time { return time.Date(2026, 3, 2, 18, 0, 0, 0, l) })
	w.installment("L-1", 100000)
	w.drain()
	w.until(w.dpd(1, 3*time.Hour))
	w.pay("L-1", "p1", 100000)
	w.drain()
	w.until(w.dpd(3, 0))
	w.want("L-1", "overdue_confirmed", "contact_requested", "contact_held", "case_closed:cured", "contact_cancelled")
	for outcome, rule := range map[string]string{"held": "cn.hours", "cancelled": policy.RuleCaseClosed} {
		if n := testutil.ToFloat64(w.metrics.Contacts.WithLabelValues(outcome, rule)); n != 1 {
			t.Errorf("dunning_contact_tasks_total{outcome=%q,rule=%q} = %v, want 1", outcome, rule, n)
		}
	}
	if n := testutil.ToFloat64(w.metrics.Contacts.WithLabelValues("released", "")); n != 0 {
		t.Errorf("released %v, want 0", n)
	}
}

// A payment overnight lowers what the morning's text says: a released task
// carries the amount overdue when it leaves.
func TestReleaseCarriesTodaysAmount(t *testing.T) {
	w := gateWorld(t, "Asia/Shanghai", "cn", 0, 0, func(l *time.Location) time.Time { return time.Date(2026, 3, 2, 18, 0, 0, 0, l) })
	w.installment("L-1", 100000)
	w.drain()
	w.until(w.dpd(1, 3*time.Hour))
	w.pay("L-1", "p1", 30000)
	w.drain()
	w.until(w.dpd(1, 9*time.Hour))
	ds := w.gated("L-1")
	last := ds[len(ds)-1]
	if last.Kind != policy.KindContactReleased || last.Tasks[0].AmountDue.Minor != 70000 || ds[0].Tasks[0].AmountDue.Minor != 100000 {
		t.Errorf("decided with %d, released %s with %d; want 100000 then 70000", ds[0].Tasks[0].AmountDue.Minor, last.Kind, last.Tasks[0].AmountDue.Minor)
	}
}

// Acceptance 5 (contact rules), opt-out: after the borrower opts out of SMS,
// the escalation's SMS is suppressed (contact_suppressed, borrower.opt_out)
// while its phone, e-mail and push are released.
func TestOptOutSuppressesOneChannel(t *testing.T) {
	w := gateWorld(t, "Asia/Shanghai", "cn", 0, 0, func(l *time.Location) time.Time { return time.Date(2026, 3, 2, 18, 0, 0, 0, l) })
	w.installment("L-1", 100000)
	w.drain()
	w.until(w.dpd(3, 12*time.Hour))
	w.lender("L-1", "pr-1", policy.ContactPreference{ID: "pr-1", Channel: policy.ChannelSMS, OptedOut: true, At: w.clock.Now()})
	w.drain()
	w.until(w.dpd(17, 0))
	var suppressed, released []string
	for _, d := range w.gated("L-1") {
		for _, task := range d.Tasks {
			switch {
			case d.Kind == policy.KindContactSuppressed && d.Rule == policy.RuleOptOut:
				suppressed = append(suppressed, task.Channel.String())
			case d.Kind == policy.KindContactReleased && d.Ctx.Stage == policy.StageEscalation:
				released = append(released, task.Channel.String())
			}
		}
	}
	if fmt.Sprint(suppressed) != "[sms]" || fmt.Sprint(released) != "[phone email app_push]" {
		t.Errorf("escalation: suppressed %v, released %v; want [sms] suppressed, phone, email and app_push released", suppressed, released)
	}
	if n := testutil.ToFloat64(w.metrics.Contacts.WithLabelValues("suppressed", policy.RuleOptOut)); n != 1 {
		t.Errorf("dunning_contact_tasks_total{outcome=suppressed} = %v, want 1", n)
	}
}

// A trigger redelivered while a contact is held (here the escalation,
// looked at again at 08:05, between the window's opening and the loan's
// 08:09 slot) records nothing new: the task is already held until 08:09.
func TestRedeliveredTriggerDoesNotHoldAgain(t *testing.T) {
	w := gateWorld(t, "Asia/Shanghai", "cn", 0, 2*time.Hour, func(l *time.Location) time.Time { return time.Date(2026, 3, 2, 18, 0, 0, 0, l) })
	w.installment("L-1", 100000)
	w.drain()
	w.until(w.dpd(1, time.Hour))
	var held policy.Decision
	var seq uint64
	es, _, _ := w.log.Read(ctx, tenant, "L-1")
	for _, e := range es {
		if d, ok := e.Event.(policy.Decision); ok && d.Kind == policy.KindContactRequested {
			seq = e.Seq
			for _, e2 := range es {
				if h, ok := e2.Event.(policy.Decision); ok && h.Kind == policy.KindContactHeld {
					held = h
				}
			}
			w.clock.Set(held.HeldUntil.Add(-time.Minute))
			if local := w.clock.Now().In(w.loc); local.Hour() < 8 {
				t.Skipf("this loan's slot is at %s: no room between 08:00 and it", held.HeldUntil.In(w.loc))
			}
			if err := stage.Release.Handle(ctx, w.deps, tenant, "L-1", seq, d); err != nil {
				t.Fatal(err)
			}
		}
	}
	if held.Rule != "cn.hours" {
		t.Fatalf("held %+v, want by cn.hours", held)
	}
	n := 0
	for _, d := range w.gated("L-1") {
		if d.Kind == policy.KindContactHeld {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d contact_held records after the redelivery, want 1", n)
	}
}

// borrowerLoans gives the borrower B-1 n loans L-1..L-n, due together.
func (w *world) borrowerLoans(n int) []string { return w.borrowerLoansOf("B-1", n) }

// borrowerLoansOf gives a borrower n loans L-1..L-n, due together.
func (w *world) borrowerLoansOf(borrower string, n int) []string {
	var loans []string
	for i := 1; i <= n; i++ {
		loan := fmt.Sprintf("L-%d", i)
		w.lender(loan, "1", policy.InstallmentDue{ID: "1", Amount: policy.Money{Currency: "CNY", Minor: 100000}, DueAt: w.due,
			Zone: "Asia/Shanghai", ContactRef: "crm", BorrowerRef: borrower})
		loans = append(loans, loan)
	}
	return loans
}

// releasedAt lists the channels of a loan's released tasks at a stage, and
// its phone task's hold by a cap (not by the window), if any.
func (w *world) releasedAt(loan string, st policy.Stage) (channels []string, phoneHeld *policy.Decision) {
	for _, d := range w.gated(loan) {
		if d.Ctx.Stage != st {
			continue
		}
		for _, task := range d.Tasks {
			switch {
			case d.Kind == policy.KindContactReleased:
				channels = append(channels, task.Channel.String())
			case d.Kind == policy.KindContactHeld && task.Channel == policy.ChannelPhone && d.Rule != "cn.hours":
				phoneHeld = &d
			}
		}
	}
	return channels, phoneHeld
}

// Acceptance 3 (contact rules), cn: a borrower with 4 loans escalating the
// same day. The first three phone tasks are released at 08:00 and their
// calls connect; the fourth is held until 08:00 the next day naming the
// per-day cap, while that loan's SMS, e-mail and push leave at 08:00. The
// next morning it is released.
func TestBorrowerCapAcrossLoans(t *testing.T) {
	w := gateWorld(t, "Asia/Shanghai", "cn", 0, 0, func(l *time.Location) time.Time { return time.Date(2026, 3, 2, 18, 0, 0, 0, l) })
	loans := w.borrowerLoans(4)
	w.drain()
	w.until(w.dpd(16, 8*time.Hour+30*time.Minute))
	for _, loan := range loans[:3] {
		chs, held := w.releasedAt(loan, policy.StageEscalation)
		if fmt.Sprint(chs) != "[phone sms email app_push]" || held != nil {
			t.Fatalf("%s: released %v, phone held %v; want all four released", loan, chs, held)
		}
		id := "c1-escalation-d16-phone"
		w.lender(loan, id+"_connected", policy.ContactOutcome{ContactID: id, Outcome: policy.OutcomeCallConnected, At: w.clock.Now()})
	}
	w.drain()
	chs, held := w.releasedAt("L-4", policy.StageEscalation)
	if fmt.Sprint(chs) != "[sms email app_push]" || held == nil {
		t.Fatalf("L-4: released %v, phone held %v; want sms, email and app_push released, phone held", chs, held)
	}
	if want := w.dpd(17, 8*time.Hour); held.Rule != "cn.voice-per-day" || !held.HeldUntil.Equal(want) {
		t.Errorf("L-4's phone held by %q until %s, want cn.voice-per-day until %s", held.Rule, held.HeldUntil.In(w.loc), want.In(w.loc))
	}
	b := w.deps.Borrowers.(*memlog.Borrowers)
	es, _, _ := b.ReadBorrower(ctx, tenant, "B-1")
	var log []string
	for _, e := range es {
		log = append(log, fmt.Sprintf("%s/%s/%s", e.Loan, e.Channel, e.Outcome))
	}
	if want := "[L-1/phone/none L-2/phone/none L-3/phone/none L-1/phone/call_connected L-2/phone/call_connected L-3/phone/call_connected]"; fmt.Sprint(log) != want {
		t.Errorf("borrower log %v\nwant %s", log, want)
	}
	w.until(w.dpd(17, 9*time.Hour))
	chs, _ = w.releasedAt("L-4", policy.StageEscalation)
	if fmt.Sprint(chs) != "[sms email app_push phone]" {
		t.Errorf("L-4 the next morning: released %v, want its phone too", chs)
	}

	// dunctl rules explain: the phone task was held by the window, then
	// by the cap, and passed both the next morning; the SMS task is not
	// counted by the voice cap.
	logged, _, err := w.log.Read(ctx, tenant, "L-4")
	if err != nil {
		t.Fatal(err)
	}
	ladder := w.deps.Ladder(tenant, "")
	got := map[string]policy.RuleCheck{}
	checks, err := ladder.Explain(logged, "c1-escalation-d16-phone")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range checks {
		got[c.Rule] = c
	}
	for rule, want := range map[string]string{"cn.hours": "held, then passed", "cn.voice-per-day": "held, then passed",
		"cn.debtor-only": "applies", policy.RuleOptOut: "passed", policy.RuleCaseClosed: "passed", "policy.send_at": "passed", "policy.calendar": "passed"} {
		if got[rule].Result != want {
			t.Errorf("explain the phone task: %s %q (%s), want %q", rule, got[rule].Result, got[rule].Detail, want)
		}
	}
	if d := got["cn.voice-per-day"].Detail; !strings.Contains(d, "until 2026-03-19 08:00 local") || !strings.Contains(d, "released 2026-03-19 08:00 local") {
		t.Errorf("explain the cap: %q, want the hold until and the release at 2026-03-19 08:00", d)
	}
	checks, _ = ladder.Explain(logged, "c1-escalation-d16-sms")
	for _, c := range checks {
		if c.Rule == "cn.voice-per-day" && c.Result != "not applicable" {
			t.Errorf("explain the SMS task: the voice cap %q, want not applicable", c.Result)
		}
	}
	if _, err := ladder.Explain(logged, "c9-nothing"); err == nil {
		t.Error("explain an unknown contact: no error")
	}
}

// Acceptance 3 (contact rules), the race: two loans of one borrower whose
// phone tasks are released at the same instant, with two of the borrower's
// three connected calls of the day already made. Both read the borrower's
// log before either writes; exactly one is released, the other held to
// the next morning. Looped 200 times on the in-memory borrower log here,
// and 200 times on the NATS one in package loanlog
// (TestTwoLoansRaceForTheLastSlotOnNATS: a real server's guard decides).
func TestTwoLoansRaceForTheLastSlot(t *testing.T) {
	raceForTheLastSlot(t, func() stage.Borrowers { return &memlog.Borrowers{} })
}

// hookedBorrowers runs before ahead of every append.
type hookedBorrowers struct {
	stage.Borrowers
	before func()
}

func (h hookedBorrowers) AppendBorrower(ctx context.Context, tenant, borrower string, expect uint64, e policy.BorrowerEntry) (uint64, error) {
	h.before()
	return h.Borrowers.AppendBorrower(ctx, tenant, borrower, expect, e)
}

func raceForTheLastSlot(t *testing.T, borrowers func() stage.Borrowers) {
	for i := range 200 {
		w := gateWorld(t, "Asia/Shanghai", "cn", 0, 0, func(l *time.Location) time.Time { return time.Date(2026, 3, 2, 18, 0, 0, 0, l) })
		b := borrowers()
		w.deps.Borrowers = b
		borrower := fmt.Sprintf("B-%d", i) // a borrower of its own on a shared server
		w.borrowerLoansOf(borrower, 2)
		w.drain()
		w.until(w.dpd(16, 7*time.Hour))
		// Two calls connected this morning, on another of the borrower's loans.
		var last uint64
		for _, task := range []string{"c1-a", "c1-b"} {
			for _, o := range []policy.Outcome{policy.OutcomeNone, policy.OutcomeCallConnected} {
				var err error
				e := policy.BorrowerEntry{Loan: "L-0", Task: task, Channel: policy.ChannelPhone, At: w.dpd(16, 7*time.Hour), Outcome: o}
				if last, err = b.AppendBorrower(ctx, tenant, borrower, last, e); err != nil {
					t.Fatal(err)
				}
			}
		}
		w.clock.Set(w.dpd(16, 8*time.Hour))
		steps := []policy.Step{w.pendingStep("L-1"), w.pendingStep("L-2")}
		// The first write of each waits until both have read and decided
		// (a bounded wait: a loan that decided not to write never comes).
		var calls atomic.Int32
		bothDecided := make(chan struct{})
		w.deps.Borrowers = hookedBorrowers{b, func() {
			switch calls.Add(1) {
			case 1:
				select {
				case <-bothDecided:
				case <-time.After(5 * time.Second):
				}
			case 2:
				close(bothDecided)
			}
		}}
		errs := make(chan error, 2)
		for j, loan := range []string{"L-1", "L-2"} {
			go func() { errs <- stage.Release.Handle(ctx, w.deps, tenant, loan, 0, policy.StepFired{Step: steps[j]}) }()
		}
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		if calls.Load() < 2 {
			t.Fatalf("iteration %d: %d appends: the two loans did not race", i, calls.Load())
		}
		phones := 0
		for _, loan := range []string{"L-1", "L-2"} {
			chs, _ := w.releasedAt(loan, policy.StageEscalation)
			for _, ch := range chs {
				if ch == "phone" {
					phones++
				}
			}
		}
		if phones != 1 {
			t.Fatalf("iteration %d: %d phone tasks released for the borrower's last slot, want exactly 1", i, phones)
		}
	}
}

// Every released code is indexed as its contact's; a code already another
// contact's is replaced at release by a new one, which the released record
// carries (the text the borrower reads is rendered from it).
func TestReleasedCodesAreIndexedUnique(t *testing.T) {
	w := gateWorld(t, "Asia/Shanghai", "cn", 0, 0, func(l *time.Location) time.Time { return time.Date(2026, 3, 2, 18, 0, 0, 0, l) })
	codes := w.deps.Codes.(*memlog.Codes)
	w.installment("L-1", 100000)
	w.drain()
	w.until(w.dpd(1, time.Hour))
	held := w.gated("L-1")[1]
	if held.Kind != policy.KindContactHeld {
		t.Fatalf("second record %s, want contact_held", held.Kind)
	}
	taken := held.Tasks[0].Reference
	codes.Take(taken)
	w.until(w.dpd(1, 9*time.Hour))
	ds := w.gated("L-1")
	rel := ds[len(ds)-1]
	if rel.Kind != policy.KindContactReleased {
		t.Fatalf("last record %s, want contact_released", rel.Kind)
	}
	code := rel.Tasks[0].Reference
	owner, ok := codes.Owner(code)
	want := policy.CodeOwner{Tenant: tenant, Loan: "L-1", Task: rel.Tasks[0].ID, Case: 1}
	if code == taken || !stage.ValidReference(code) || !ok || owner != want {
		t.Errorf("released with code %q (the taken one was %q), indexed as %+v, %v; want a new code indexed as %+v", code, taken, owner, ok, want)
	}
}

// A borrower's agreement to contact outside the rules' hours (cn: "unless
// the borrower agreed otherwise") widens that loan's window: a held contact
// whose release step fires late, at 22:30, leaves when the borrower agreed
// to 07:00-23:00, with not_after at 23:00; without the agreement it is held
// to the next morning. Withdrawn, the window is the rules' again.
func TestAgreedHoursWidenTheWindow(t *testing.T) {
	w := gateWorld(t, "Asia/Shanghai", "cn", 0, 0, func(l *time.Location) time.Time { return time.Date(2026, 3, 2, 18, 0, 0, 0, l) })
	w.installment("L-1", 100000)
	w.installment("L-2", 100000)
	w.installment("L-3", 100000)
	w.lender("L-1", "h-1", policy.ContactHours{ID: "h-1", From: "07:00", To: "23:00", At: w.clock.Now()})
	w.lender("L-3", "h-1", policy.ContactHours{ID: "h-1", From: "07:00", To: "23:00", At: w.clock.Now()})
	w.lender("L-3", "h-2", policy.ContactHours{ID: "h-2", Withdrawn: true, At: w.clock.Now()})
	w.drain()
	w.until(w.dpd(1, 7*time.Hour))
	// The 08:00 release steps fire late, at 22:30.
	w.clock.Set(w.dpd(1, 22*time.Hour+30*time.Minute))
	w.log.Fire()
	w.drain()
	for loan, agreed := range map[string]bool{"L-1": true, "L-2": false, "L-3": false} {
		ds := w.gated(loan)
		last := ds[len(ds)-1]
		switch {
		case agreed && (last.Kind != policy.KindContactReleased || !last.Tasks[0].NotAfter.Equal(w.dpd(1, 23*time.Hour))):
			t.Errorf("%s, agreed to 07:00-23:00: %s, not after %s; want released at 22:30, not after 23:00", loan, last.Kind, last.Tasks[0].NotAfter.In(w.loc))
		case !agreed && (last.Kind != policy.KindContactHeld || last.Rule != "cn.hours" || !last.HeldUntil.Equal(w.dpd(2, 8*time.Hour))):
			t.Errorf("%s, no agreement: %s by %q until %s; want held by cn.hours until 08:00 the next day", loan, last.Kind, last.Rule, last.HeldUntil.In(w.loc))
		}
	}
	// dunctl rules explain names the agreement the contact left under.
	logged, _, _ := w.log.Read(ctx, tenant, "L-1")
	checks, err := w.deps.Ladder(tenant, "").Explain(logged, "c1-first_contact-d1-sms")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(checks, func(c policy.RuleCheck) bool {
		return c.Rule == policy.RuleAgreedHours && c.Result == "applied" && strings.Contains(c.Detail, "07:00-23:00")
	}) {
		t.Errorf("explain L-1's contact: %+v, want the agreed hours 07:00-23:00 applied", checks)
	}
}

// Issue 11, first increment: a dispute at DPD 12 stops the ladder (no
// task, no stage) until its release at DPD 20, when escalation (due at
// DPD 16) is decided at once: the calendar went on while held. A contact
// the gate still holds when a hold lands is cancelled (case.hold) when its
// release step comes.
func TestHoldStopsTheLadder(t *testing.T) {
	w := gateWorld(t, "Asia/Shanghai", "cn", 0, 0, func(l *time.Location) time.Time { return time.Date(2026, 3, 2, 18, 0, 0, 0, l) })
	w.installment("L-1", 100000)
	w.installment("L-2", 100000)
	w.drain()
	w.until(w.dpd(12, 10*time.Hour))
	w.lender("L-1", "d-1", policy.HoldPlaced{ID: "d-1", Kind: policy.HoldDispute, At: w.clock.Now()})
	w.drain()
	w.until(w.dpd(16, 3*time.Hour))
	// L-2's escalation, decided at midnight and held to 08:00, meets a hold.
	w.lender("L-2", "h-1", policy.HoldPlaced{ID: "h-1", Kind: policy.HoldHardship, At: w.clock.Now()})
	w.drain()
	w.until(w.dpd(20, 10*time.Hour))
	for _, d := range w.gated("L-1") {
		if d.Ctx.DecidedAt.After(w.dpd(12, 10*time.Hour)) {
			t.Errorf("L-1 while held: %s at %s", d.Kind, d.Ctx.DecidedAt.In(w.loc))
		}
	}
	w.lender("L-1", "d-1", policy.HoldReleased{ID: "d-1", At: w.clock.Now()})
	w.drain()
	w.until(w.dpd(21, 9*time.Hour))
	// The hold withdrew the pending escalation step (step_cancelled); the
	// escalation, decided at 10:00, leaves at once.
	w.want("L-1", "overdue_confirmed", "contact_requested", "contact_held", "contact_released", "step_cancelled",
		"escalated", "contact_released")
	ds := w.gated("L-1")
	if esc := ds[3]; esc.Kind != policy.KindEscalated || !esc.Ctx.DecidedAt.Equal(w.dpd(20, 10*time.Hour)) || esc.Ctx.DPD != 20 {
		t.Errorf("escalation %s decided at %s at DPD %d, want at the release (DPD 20, 10:00)", esc.Kind, esc.Ctx.DecidedAt.In(w.loc), esc.Ctx.DPD)
	}
	ds2 := w.gated("L-2")
	last := ds2[len(ds2)-1]
	if last.Kind != policy.KindContactCancelled || last.Rule != policy.RuleHold || last.Ctx.Stage != policy.StageEscalation {
		t.Errorf("L-2's held escalation contact: %s %q, want contact_cancelled by %s", last.Kind, last.Rule, policy.RuleHold)
	}
}

// pendingFacts stands for the NATS intake (loanlog.Intake): the first time
// the gate asks, the lender's payment is still waiting there; it is then
// recorded, and nothing waits any more.
type pendingFacts struct {
	asked   atomic.Int32
	arrives func()
}

func (p *pendingFacts) Waiting(context.Context, string, string) (bool, error) {
	if p.asked.Add(1) == 1 {
		p.arrives()
		return true, nil
	}
	return false, nil
}

// Lender facts first, at the gate (issue 13, acceptance 3): a contact due
// for release while the lender's payment in full still waits in the intake
// is not released; the gate waits for it to be recorded, decides again,
// and the paid loan's contact is cancelled, not sent. Without the check the
// contact leaves before the payment is in the log.
func TestReleaseWaitsForLenderFacts(t *testing.T) {
	for _, check := range []bool{true, false} {
		w := gateWorld(t, "Asia/Shanghai", "cn", 0, 0, func(l *time.Location) time.Time { return time.Date(2026, 3, 2, 18, 0, 0, 0, l) })
		facts := &pendingFacts{arrives: func() { w.pay("L-1", "p1", 100000) }}
		if check {
			w.deps.Facts = facts
		}
		w.installment("L-1", 100000)
		w.drain()
		w.until(w.dpd(1, 3*time.Hour)) // decided at midnight, held to 08:00
		if !check {
			// Recorded only after the release, as an intake far behind.
			w.until(w.dpd(1, 9*time.Hour))
			w.pay("L-1", "p1", 100000)
		}
		w.drain()
		w.until(w.dpd(2, 0))
		var released, cancelled int
		for _, d := range w.gated("L-1") {
			switch d.Kind {
			case policy.KindContactReleased:
				released++
			case policy.KindContactCancelled:
				cancelled++
			}
		}
		if check && (facts.asked.Load() < 1 || released != 0 || cancelled != 1) {
			t.Errorf("with the intake checked: asked %d times, %d released, %d cancelled; want at least 1, 0 and 1", facts.asked.Load(), released, cancelled)
		}
		if !check && released != 1 {
			t.Errorf("without the check: %d released, want 1 (the payment was not yet recorded)", released)
		}
	}
}

// countingCodes counts the verification codes claimed.
type countingCodes struct {
	stage.Codes
	claimed atomic.Int32
}

func (c *countingCodes) Claim(ctx context.Context, code string, owner policy.CodeOwner) (bool, error) {
	c.claimed.Add(1)
	return c.Codes.Claim(ctx, code, owner)
}

// askedAt notes, each time the gate asks the intake, how many codes were
// claimed, how many entries the borrower's log held, and how many
// releases the loan's log held.
type askedAt struct {
	w     *world
	codes *countingCodes
	asks  []ask
}

type ask struct {
	claims, borrower, released int
}

func (a *askedAt) Waiting(ctx context.Context, tenant, loan string) (bool, error) {
	es, _, err := a.w.deps.Borrowers.ReadBorrower(ctx, tenant, "B-1")
	if err != nil {
		return false, err
	}
	released := 0
	for _, d := range a.w.gated(loan) {
		if d.Kind == policy.KindContactReleased {
			released++
		}
	}
	a.asks = append(a.asks, ask{int(a.codes.claimed.Load()), len(es), released})
	return false, nil
}

// The gate asks the intake before a release's other writes (its codes
// claimed, its borrower's entry: written while a payment waits, they
// would count against the borrower's other loans for nothing) and again
// last, just before the release's own write: a payment the intake takes
// after the question is not seen, so the last question is put as late as
// it can be (issue 13, acceptance 3).
func TestReleaseAsksTheIntakeLast(t *testing.T) {
	w := gateWorld(t, "Asia/Shanghai", "cn", 0, 0, func(l *time.Location) time.Time { return time.Date(2026, 3, 2, 18, 0, 0, 0, l) })
	codes := &countingCodes{Codes: w.deps.Codes}
	facts := &askedAt{w: w, codes: codes}
	w.deps.Codes, w.deps.Facts = codes, facts
	w.borrowerLoans(1)
	w.drain()
	w.until(w.dpd(16, 12*time.Hour)) // the escalation's phone call is capped per borrower
	w.drain()
	entries, _, err := w.deps.Borrowers.ReadBorrower(ctx, tenant, "B-1")
	if err != nil {
		t.Fatal(err)
	}
	released := 0
	for _, d := range w.gated("L-1") {
		if d.Kind == policy.KindContactReleased {
			released++
		}
	}
	if released == 0 || len(facts.asks) != 2*released || len(entries) == 0 {
		t.Fatalf("%d released, the intake asked %d times, %d borrower entries; want 2 questions a release, and an entry", released, len(facts.asks), len(entries))
	}
	first, last := facts.asks[len(facts.asks)-2], facts.asks[len(facts.asks)-1]
	if first.released != released-1 || last.released != released-1 {
		t.Errorf("the last release's questions saw %d and %d releases in the log: want it asked before it was written (%d before it)", first.released, last.released, released-1)
	}
	if first.claims == last.claims || first.borrower == last.borrower {
		t.Errorf("the last release's questions saw %+v, then %+v: want its codes and its borrower's entry written between them", first, last)
	}
	if last.claims != int(codes.claimed.Load()) || last.borrower != len(entries) {
		t.Errorf("last asked with %d of %d codes claimed and %d of %d borrower entries: want it asked after every other write", last.claims, codes.claimed.Load(), last.borrower, len(entries))
	}
}
