package policy

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// handoffCase is a case about to be handed off, of loan i of tenant.
func handoffCase(tenant string, i int, region string) *Case {
	return &Case{Key: LoanKey(tenant, fmt.Sprintf("L-%d", i)), Open: true, Number: 1,
		Installments: []InstallmentDue{{ID: "1", Region: region}}}
}

// Acceptance 2 of the agency issue (the split): 10,000 handoffs over two
// agencies weighted 3:1 fall within 3 points of 75/25, and a region rule
// holds for every one of them.
func TestAllocationByWeight(t *testing.T) {
	p := Default()
	p.Agencies = []Agency{{ID: "agency-a", Weight: 3}, {ID: "agency-b", Weight: 1}}
	const n = 10000
	got := map[string]int{}
	for i := range n {
		a, reason, ok := p.Allocate(handoffCase("acme", i, "CN-31"), 1)
		if !ok {
			t.Fatalf("loan %d: not allocated: %s", i, reason)
		}
		got[a.ID]++
	}
	share := float64(got["agency-a"]) / n
	t.Logf("10,000 handoffs: agency-a %d (%.2f%%), agency-b %d", got["agency-a"], 100*share, got["agency-b"])
	if math.Abs(share-0.75) > 0.03 {
		t.Errorf("agency-a got %.2f%% of placements, want 75%% ± 3", 100*share)
	}
	if got["agency-a"]+got["agency-b"] != n {
		t.Errorf("placements %v, want %d over the two agencies", got, n)
	}
}

func TestAllocationRespectsRegions(t *testing.T) {
	p := Default()
	p.Agencies = []Agency{
		{ID: "agency-sh", Regions: []string{"CN-31"}, Weight: 5},
		{ID: "agency-bj", Regions: []string{"CN-11"}, Weight: 5},
		{ID: "agency-any", Weight: 1},
	}
	for _, tt := range []struct {
		region string
		may    []string
	}{
		{"CN-31", []string{"agency-sh", "agency-any"}},
		{"CN-11", []string{"agency-bj", "agency-any"}},
		{"CN-44", []string{"agency-any"}},
		{"", []string{"agency-any"}},
	} {
		got := map[string]int{}
		for i := range 2000 {
			a, reason, ok := p.Allocate(handoffCase("acme", i, tt.region), 1)
			if !ok {
				t.Fatalf("%q: not allocated: %s", tt.region, reason)
			}
			got[a.ID]++
		}
		for id, k := range got {
			if !strings.Contains(fmt.Sprint(tt.may), id) {
				t.Errorf("region %q: %d placed with %s, which is not licensed for it", tt.region, k, id)
			}
		}
		for _, id := range tt.may {
			if got[id] == 0 {
				t.Errorf("region %q: none placed with %s (got %v)", tt.region, id, got)
			}
		}
	}
	// Nobody covers the account: not allocated, and the reason names
	// every agency and why.
	p.Agencies = p.Agencies[:2]
	_, reason, ok := p.Allocate(handoffCase("acme", 1, "CN-44"), 1)
	if ok || !strings.Contains(reason, "agency-sh is not licensed for region CN-44") || !strings.Contains(reason, "agency-bj is not licensed") {
		t.Errorf("Allocate(CN-44) = %v %q, want refused naming both agencies", ok, reason)
	}
}

// A case no agency may take is deferred to the next day with the reason,
// not skipped: a reloaded registry may cover it.
func TestHandoffDeferredWhenNoAgencyCovers(t *testing.T) {
	p := Default()
	p.Agencies = []Agency{{ID: "agency-sh", Regions: []string{"CN-31"}, Weight: 1}}
	l := Ladder{Policy: p, Calendar: Calendar{Day: RealDay}}
	in := InstallmentDue{ID: "1", Amount: Money{Currency: "CNY", Minor: 1000}, DueAt: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC), Zone: "UTC", Region: "CN-44"}
	var handoff []Decision
	for _, d := range l.Simulate(in, nil, 33) {
		if d.Kind == KindHandedOff || d.Kind == KindEntryDeferred {
			handoff = append(handoff, d)
		}
	}
	if len(handoff) != 3 || handoff[0].Kind != KindEntryDeferred || handoff[0].Ctx.DPD != 31 || handoff[2].Ctx.DPD != 33 ||
		!strings.Contains(handoff[0].Ctx.Reason, "agency-sh is not licensed for region CN-44") {
		t.Fatalf("handoff decisions to DPD 33 = %+v, want deferred at DPD 31, 32, 33 naming the region", handoff)
	}
	// Registry reloaded with an agency for the region: placed.
	in.Region = "CN-31"
	ds := l.Simulate(in, nil, 31)
	last := ds[len(ds)-1]
	if last.Kind != KindHandedOff || last.AgencyID != "agency-sh" {
		t.Fatalf("last decision = %+v, want handed off to agency-sh", last)
	}
}

// Placement IDs are UUIDv5 of tenant, loan and case: the same on every
// retry, different for every other tenant, loan or case.
func TestPlacementIDs(t *testing.T) {
	seen := map[string]string{}
	for _, tenant := range []string{"acme", "bolt"} {
		for i := range 100 {
			for n := 1; n <= 3; n++ {
				key := LoanKey(tenant, fmt.Sprintf("L-%d", i))
				id := PlacementID(key, n)
				if id != PlacementID(key, n) {
					t.Fatalf("%s case %d: placement ID not deterministic", key, n)
				}
				u, err := uuid.Parse(id)
				if err != nil || u.Version() != 5 {
					t.Fatalf("%s: %q is not a UUIDv5 (%v)", key, id, err)
				}
				what := fmt.Sprintf("%s case %d", key, n)
				if other, dup := seen[id]; dup {
					t.Fatalf("%s and %s share placement %s", what, other, id)
				}
				seen[id] = what
			}
		}
	}
}

// A contract's capacity split over the loans' partitions: as even as whole
// placements allow, the shares adding up to the capacity, no limit staying
// no limit; a partition whose share is 0 finds the agency full.
func TestCapacityShares(t *testing.T) {
	tests := []struct {
		capacity, parts int
		want            []int
	}{
		{10, 1, []int{10}},
		{10, 3, []int{4, 3, 3}},
		{3, 3, []int{1, 1, 1}},
		{2, 3, []int{1, 1, 0}},
		{0, 3, []int{0, 0, 0}},
		{7, 0, []int{7}}, // the zero value: one partition
	}
	for _, tt := range tests {
		sum := 0
		for p, want := range tt.want {
			got := Share{Part: p, Parts: tt.parts}.Of(tt.capacity)
			if got != want {
				t.Errorf("capacity %d over %d partitions: partition %d's share = %d, want %d", tt.capacity, tt.parts, p, got, want)
			}
			sum += got
		}
		if sum != tt.capacity {
			t.Errorf("capacity %d over %d partitions: shares add up to %d", tt.capacity, tt.parts, sum)
		}
	}
	p := Default()
	p.Agencies = []Agency{{ID: "agency-a", Weight: 1, Capacity: 2}, {ID: "agency-b", Weight: 1, Capacity: 3}}
	c := handoffCase("acme", 1, "CN-31")
	c.Share = Share{Part: 2, Parts: 3}
	c.AgencyLoad = map[string]int{"agency-b": 0}
	a, reason, ok := p.Allocate(c, 1)
	if !ok || a.ID != "agency-b" || !strings.Contains(reason, "agency-a is full (0 of 0 placed in partition 2 of 3)") ||
		!strings.Contains(reason, "0 of 1 placed in partition 2 of 3") {
		t.Errorf("Allocate in partition 2 of 3 = %s, %q, %v; want agency-b, agency-a named full at its share of 0", a.ID, reason, ok)
	}
}
