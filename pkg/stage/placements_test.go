package stage_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/opendunning/dunning/pkg/loanlog/memlog"
	"github.com/opendunning/dunning/pkg/stage"

	"github.com/opendunning/dunning/pkg/policy"
)

// Capacity bounds open placements per agency: handoffs beyond it are
// deferred a day with the reason, closures free places, and the counters
// (kept in the log, moved only with the decisions) match the placements.
func TestCapacityBoundsPlacements(t *testing.T) {
	w := holdWorld(t, func(p *policy.Policy) {
		p.Agencies = []policy.Agency{{ID: "agency-a", Weight: 3, Capacity: 6}, {ID: "agency-b", Weight: 1, Capacity: 2}}
	})
	var loans []string
	for i := range 12 {
		loan := fmt.Sprintf("L-%d", i)
		loans = append(loans, loan)
		w.installment(loan, 100000)
	}
	w.drain()
	w.until(w.dpd(31, 10*time.Hour))
	placed := func() map[string][]string {
		out := map[string][]string{}
		for _, loan := range loans {
			es := w.decided(loan, policy.KindHandedOff)
			closed := len(w.decided(loan, policy.KindCaseClosed)) > 0
			if len(es) > 0 && !closed {
				out[es[len(es)-1].AgencyID] = append(out[es[len(es)-1].AgencyID], loan)
			}
		}
		return out
	}
	counters := func() map[string]int {
		loads, _, err := w.log.Loads(ctx, tenant, "")
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int{}
		for a, l := range loads {
			out[a] = l.Open
		}
		return out
	}
	p := placed()
	if len(p["agency-a"]) != 6 || len(p["agency-b"]) != 2 {
		t.Fatalf("placed at DPD 31: %v, want agency-a full (6) and agency-b full (2)", p)
	}
	if c := counters(); c["agency-a"] != 6 || c["agency-b"] != 2 {
		t.Fatalf("counters at DPD 31 = %v, want 6 and 2", c)
	}
	var waiting []string
	for _, loan := range loans {
		if len(w.decided(loan, policy.KindHandedOff)) == 0 {
			waiting = append(waiting, loan)
			ds := w.decided(loan, policy.KindEntryDeferred)
			if len(ds) == 0 || !strings.Contains(ds[0].Ctx.Reason, "agency-a is full (6 of 6 placed)") || !strings.Contains(ds[0].Ctx.Reason, "agency-b is full (2 of 2 placed)") {
				t.Errorf("%s: deferred %+v, want the reason naming both full agencies", loan, ds)
			}
		}
	}
	if len(waiting) != 4 {
		t.Fatalf("%d loans waiting, want 4", len(waiting))
	}
	// Three of agency-a's borrowers pay in full: their placements end and
	// three waiting loans are placed the next day, with agency-a.
	for _, loan := range p["agency-a"][:3] {
		w.pay(loan, "p1", 100000)
	}
	w.drain()
	w.until(w.dpd(32, 10*time.Hour))
	if c := counters(); c["agency-a"] != 6 || c["agency-b"] != 2 {
		t.Fatalf("counters after 3 closures and the next day's handoffs = %v, want 6 and 2", c)
	}
	p = placed()
	if len(p["agency-a"]) != 6 || len(p["agency-b"]) != 2 {
		t.Fatalf("placed at DPD 32: %v, want 6 and 2", p)
	}
	still := 0
	for _, loan := range waiting {
		if len(w.decided(loan, policy.KindHandedOff)) == 0 {
			still++
		}
	}
	if still != 1 {
		t.Errorf("%d loans still waiting at DPD 32, want 1", still)
	}
}

// Acceptance 2 of the agency issue, through the engine: 10,000 loans reach
// their handoff at the same instant and sixteen workers decide the fired
// steps at once (no turns taken: the counters' guard alone keeps capacity),
// over two agencies weighted 3:1 with room for 7,600 and 2,400. Every loan
// is placed; agency-b fills, so the split is 76/24, within 3 points of
// 75/25; neither agency ever holds more than its capacity (checked after
// every counter write); the counters equal the placements. A hundred more
// loans find both full: deferred, the reason naming both. Region rules hold
// for every placement (a third agency licensed only for CN-11 takes none of
// these CN-31 accounts).
func TestTenThousandHandoffs(t *testing.T) {
	const n, more = 10000, 100
	w := holdWorld(t, func(p *policy.Policy) {
		p.Agencies = []policy.Agency{{ID: "agency-a", Weight: 3, Capacity: 7600}, {ID: "agency-b", Weight: 1, Capacity: 2400},
			{ID: "agency-bj", Regions: []string{"CN-11"}, Weight: 50}}
		// A short ladder: the loans reach their handoff at DPD 3, after
		// fewer contacts to decide on the way (10,100 loans).
		p.EscalateDPD, p.HandoffDPD = 2, 3
	})
	// The counters as written, checked against capacity at every write.
	limit := map[string]int{"agency-a": 7600, "agency-b": 2400, "agency-bj": 0}
	var mu sync.Mutex
	var over []string
	w.deps.Placements = watchedPlacements{w.log, func(agency string, open int) {
		mu.Lock()
		defer mu.Unlock()
		if open > limit[agency] {
			over = append(over, fmt.Sprintf("%s at %d", agency, open))
		}
	}}
	loans := make([]string, n+more)
	for i := range loans {
		loans[i] = fmt.Sprintf("L-%d", i)
		w.lender(loans[i], "1", policy.InstallmentDue{ID: "1", Amount: policy.Money{Currency: "CNY", Minor: 100000}, DueAt: w.due,
			Zone: "Asia/Shanghai", ContactRef: "crm", Region: "CN-31"})
	}
	w.drain()
	w.until(w.dpd(2, 23*time.Hour))
	// The handoff steps fire together; sixteen workers take them.
	w.clock.Set(w.dpd(3, 0))
	if fired := w.log.Fire(); fired != n+more {
		t.Fatalf("%d timers fired at DPD 3, want %d", fired, n+more)
	}
	msgs := w.log.Since(w.seen)
	w.seen = msgs[len(msgs)-1].Seq
	handoff, err := stage.Of(policy.StageHandoff)
	if err != nil {
		t.Fatal(err)
	}
	work := make(chan memlog.Msg)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for m := range work {
				if err := handoff.Handle(ctx, w.deps, m.Tenant, m.Loan, m.Seq, m.Event); err != nil {
					t.Errorf("handoff of %s: %v", m.Loan, err)
				}
			}
		})
	}
	// The first 10,000 loans' steps at once; the last hundred after them.
	for _, m := range msgs {
		if idx(m.Loan) < n {
			work <- m
		}
	}
	close(work)
	wg.Wait()
	for _, m := range msgs {
		if idx(m.Loan) >= n {
			if err := handoff.Handle(ctx, w.deps, m.Tenant, m.Loan, m.Seq, m.Event); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(over) > 0 {
		t.Fatalf("capacity exceeded: %v", over[:min(len(over), 5)])
	}
	placed := map[string]int{}
	for i, loan := range loans {
		ds := w.decided(loan, policy.KindHandedOff)
		switch {
		case len(ds) > 1:
			t.Fatalf("%s handed off %d times", loan, len(ds))
		case len(ds) == 1 && i < n:
			placed[ds[0].AgencyID]++
		case len(ds) == 1:
			t.Errorf("%s (after the first %d) placed with %s, want deferred", loan, n, ds[0].AgencyID)
		case i < n:
			t.Errorf("%s not placed: %+v", loan, w.decided(loan, policy.KindEntryDeferred))
		default:
			ds := w.decided(loan, policy.KindEntryDeferred)
			if len(ds) != 1 || !strings.Contains(ds[0].Ctx.Reason, "agency-a is full (7600 of 7600 placed)") ||
				!strings.Contains(ds[0].Ctx.Reason, "agency-b is full (2400 of 2400 placed)") ||
				!strings.Contains(ds[0].Ctx.Reason, "agency-bj is not licensed for region CN-31") {
				t.Errorf("%s deferred %+v, want the reason naming both full agencies and the unlicensed one", loan, ds)
			}
		}
	}
	loads, _, err := w.log.Loads(ctx, tenant, "")
	if err != nil {
		t.Fatal(err)
	}
	share := float64(placed["agency-a"]) / n
	t.Logf("%d handoffs at once: agency-a %d (%.2f%%), agency-b %d, agency-bj %d; counters a=%d b=%d; conflicts re-decided: %v",
		n, placed["agency-a"], 100*share, placed["agency-b"], placed["agency-bj"], loads["agency-a"].Open, loads["agency-b"].Open,
		testutil.ToFloat64(w.metrics.Conflicts.WithLabelValues(handoff.Consumer)))
	if placed["agency-a"]+placed["agency-b"] != n || placed["agency-bj"] != 0 {
		t.Errorf("placed %v, want all %d over agency-a and agency-b", placed, n)
	}
	if math.Abs(share-0.75) > 0.03 {
		t.Errorf("agency-a got %.2f%% of placements, want 75%% ± 3", 100*share)
	}
	if loads["agency-a"].Open != placed["agency-a"] || loads["agency-b"].Open != placed["agency-b"] {
		t.Errorf("counters %+v, want the placements %v", loads, placed)
	}
}

func idx(loan string) int {
	i, _ := strconv.Atoi(strings.TrimPrefix(loan, "L-"))
	return i
}

// watchedPlacements reports every counter it writes.
type watchedPlacements struct {
	*memlog.Log
	wrote func(agency string, open int)
}

func (p watchedPlacements) AppendPlacement(ctx context.Context, tenant, loan string, expect uint64, d policy.Decision,
	agency string, load policy.AgencyLoad, delta int) (uint64, policy.AgencyLoad, error) {
	last, c, err := p.Log.AppendPlacement(ctx, tenant, loan, expect, d, agency, load, delta)
	if err == nil {
		p.wrote(agency, c.Open)
	}
	return last, c, err
}

// A contract's placement_days: the placement is recalled when its time is
// up, once, by the handoff stage, which frees its place under the
// capacity; the case goes on up the ladder.
func TestPlacementExpires(t *testing.T) {
	w := holdWorld(t, func(p *policy.Policy) {
		p.Agencies = []policy.Agency{{ID: "agency-a", Weight: 1, Capacity: 5, PlacementDays: 30}}
	})
	w.installment("L-1", 100000)
	w.drain()
	w.until(w.dpd(60, 23*time.Hour))
	placed := w.decided("L-1", policy.KindHandedOff)
	if len(placed) != 1 {
		t.Fatalf("placements %+v, want one", placed)
	}
	if r := w.decided("L-1", policy.KindPlacementRecalled); len(r) != 0 {
		t.Fatalf("recalled before its 30 days: %+v", r)
	}
	w.until(w.dpd(100, 0))
	recalls := w.decided("L-1", policy.KindPlacementRecalled)
	if len(recalls) != 1 {
		t.Fatalf("recalls %+v, want one", recalls)
	}
	r := recalls[0]
	if want := placed[0].Ctx.AsOfOrDecided().Add(30 * policy.RealDay); !r.Ctx.AsOf.Equal(want) || r.PlacementID != placed[0].PlacementID ||
		r.AgencyID != "agency-a" || !strings.Contains(r.Ctx.Reason, "expired after 30 days") {
		t.Errorf("recall %+v at %s, want placement %s recalled at %s for expiry", r, r.Ctx.AsOf.In(w.loc), placed[0].PlacementID, want.In(w.loc))
	}
	loads, _, err := w.log.Loads(ctx, tenant, "")
	if err != nil {
		t.Fatal(err)
	}
	if loads["agency-a"].Open != 0 {
		t.Errorf("agency-a's counter after the expiry = %+v, want 0 open", loads["agency-a"])
	}
	if len(w.decided("L-1", policy.KindLegalReferred)) != 1 {
		t.Errorf("no legal referral after the expiry: the case must go on up the ladder")
	}
}

// Ending a contract: an agency taken out of the registry (a reloaded
// policy) has its open placement recalled when the loan's timer is next
// put right, here by a part payment; the recall names the ended contract.
func TestEndedContractRecallsPlacements(t *testing.T) {
	w := holdWorld(t, func(p *policy.Policy) {
		p.Agencies = []policy.Agency{{ID: "agency-a", Weight: 1}, {ID: "agency-b", Weight: 1}}
	})
	w.installment("L-1", 100000)
	w.drain()
	w.until(w.dpd(40, 0))
	placed := w.decided("L-1", policy.KindHandedOff)
	if len(placed) != 1 {
		t.Fatalf("placements %+v, want one", placed)
	}
	// The contract with the loan's agency ends: the registry keeps the other.
	l := w.deps.Ladder("", "")
	l.Policy.Agencies = slices.DeleteFunc(slices.Clone(l.Policy.Agencies), func(a policy.Agency) bool { return a.ID == placed[0].AgencyID })
	w.deps.Ladder = policy.Fixed(l)
	w.until(w.dpd(41, 10*time.Hour))
	if r := w.decided("L-1", policy.KindPlacementRecalled); len(r) != 0 {
		t.Fatalf("recalled before anything happened to the loan: %+v", r)
	}
	w.pay("L-1", "p-1", 1000)
	w.drain()
	w.until(w.dpd(42, 0))
	recalls := w.decided("L-1", policy.KindPlacementRecalled)
	if len(recalls) != 1 || recalls[0].PlacementID != placed[0].PlacementID || !strings.Contains(recalls[0].Ctx.Reason, "has ended") {
		t.Fatalf("recalls %+v, want one naming the ended contract", recalls)
	}
}

// Recall refused while an agency-arranged plan is in force: the agency's
// plan (the borrower's plan agency-<outcome>) keeps the placement through a
// dispute hold and past the contract's placement_days, each refusal
// recorded once; a deceased hold forces the recall.
func TestAgencyPlanRefusesRecall(t *testing.T) {
	w := holdWorld(t, func(p *policy.Policy) {
		p.Agencies = []policy.Agency{{ID: "agency-a", Weight: 1, PlacementDays: 20}}
	})
	loans := []string{"L-dispute", "L-deceased"}
	for _, loan := range loans {
		w.installment(loan, 120000)
	}
	w.drain()
	w.until(w.dpd(32, 10*time.Hour))
	plan := policy.RepaymentPlan{ID: policy.AgencyPlanPrefix + "o-1", At: w.clock.Now()}
	for _, d := range []int{45, 60, 75} {
		plan.Installments = append(plan.Installments, policy.PlanInstallment{DueAt: w.dpd(d, 12*time.Hour), Amount: policy.Money{Currency: "CNY", Minor: 40000}})
	}
	for _, loan := range loans {
		if len(w.decided(loan, policy.KindHandedOff)) != 1 {
			t.Fatalf("%s not placed", loan)
		}
		w.lender(loan, plan.ID, plan)
	}
	w.drain()
	w.until(w.dpd(33, 10*time.Hour))
	w.lender("L-dispute", "h-1", policy.HoldPlaced{ID: "h-1", Kind: policy.HoldDispute, At: w.clock.Now()})
	w.lender("L-deceased", "h-2", policy.HoldPlaced{ID: "h-2", Kind: policy.HoldDeceased, At: w.clock.Now()})
	w.drain()
	w.until(w.dpd(35, 10*time.Hour))
	w.lender("L-dispute", "h-1-release", policy.HoldReleased{ID: "h-1", At: w.clock.Now()})
	w.drain()
	// The borrower keeps the agency's plan; its placement outlives its 20 days.
	for d := 36; d <= 62; d++ {
		w.until(w.dpd(d, 15*time.Hour))
		if d == 45 || d == 60 {
			w.pay("L-dispute", "p-"+strconv.Itoa(d), 40000)
			w.drain()
		}
	}
	refused := w.decided("L-dispute", policy.KindRecallRefused)
	var rules []string
	for _, r := range refused {
		rules = append(rules, r.Rule)
		if r.PlanID != plan.ID || !strings.Contains(r.Ctx.Reason, "refused") {
			t.Errorf("refusal %+v, want it naming the agency's plan", r)
		}
	}
	if fmt.Sprint(rules) != "[hold:h-1 expiry]" {
		t.Errorf("L-dispute's refused recalls %v, want the dispute hold's, then the expiry's, once each", rules)
	}
	if r := w.decided("L-dispute", policy.KindPlacementRecalled); len(r) != 0 {
		t.Errorf("L-dispute recalled while the agency's plan was in force: %+v", r)
	}
	if at := refused[len(refused)-1].Ctx.AsOf; !at.Equal(w.decided("L-dispute", policy.KindHandedOff)[0].Ctx.AsOfOrDecided().Add(20 * policy.RealDay)) {
		t.Errorf("expiry refused at %s, want the placement's 20th day", at.In(w.loc))
	}
	if r := w.decided("L-deceased", policy.KindPlacementRecalled); len(r) != 1 || len(w.decided("L-deceased", policy.KindRecallRefused)) != 0 {
		t.Errorf("L-deceased: recalls %+v, want one, forced by the deceased hold", r)
	}
	// The borrower stops paying: once the plan is broken, the placement,
	// long past its 20 days, is recalled.
	w.until(w.dpd(120, 0))
	broken := w.decided("L-dispute", policy.KindPlanBroken)
	recalls := w.decided("L-dispute", policy.KindPlacementRecalled)
	if len(broken) != 1 || len(recalls) != 1 || recalls[0].Ctx.DecidedAt.Before(broken[0].Ctx.DecidedAt) ||
		!strings.Contains(recalls[0].Ctx.Reason, "expired") {
		t.Errorf("L-dispute after the plan: broken %d, recalls %+v; want the expiry's recall once the plan broke", len(broken), recalls)
	}
}
