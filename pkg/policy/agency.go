package policy

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Agency is one contract in the policy's agency registry: a collection
// agency the lender places severe accounts with.
type Agency struct {
	// ID names the agency in placements, subjects and credentials.
	ID string
	// Name is how the lender's staff know it.
	Name string
	// Regions the agency is licensed for (ISO 3166-2 codes); empty: every
	// region. A loan whose installments name no region goes only to an
	// agency without a region list.
	Regions []string
	// Weight is the agency's share of placements among the agencies that
	// may take an account (>= 1).
	Weight int
	// Capacity is how many open placements the contract allows (0: no
	// limit). The count is kept in NATS, a counter per contract written
	// atomically with each handoff and each closure or recall, guarded so
	// that concurrent handoffs cannot overshoot (stage.Placements).
	Capacity int
	// PlacementDays is how long a placement with the agency lasts before it
	// is recalled (0: until the case ends).
	PlacementDays int
}

// AgencyLoad is one contract's counter: its open placements and the
// counter's last sequence (0: never written), which guards the next write.
type AgencyLoad struct {
	Open int
	Seq  uint64
}

// Share is the part of each contract's capacity a case's placements count
// against: the loans are spread over Parts partitions (streams), and a
// contract's counter moves in one atomic write with the decision that
// opens or ends a placement, which one stream stores; so each partition
// keeps its own counter against its share of the capacity. The zero value
// is the whole capacity (one partition).
type Share struct{ Part, Parts int }

// Of is the share of capacity: split as evenly as whole placements allow,
// the shares adding up to it. A positive capacity smaller than Parts gives
// some partitions a share of 0 (full); 0 (no limit) stays 0.
func (s Share) Of(capacity int) int {
	if capacity <= 0 || s.Parts <= 1 {
		return capacity
	}
	share := capacity / s.Parts
	if s.Part < capacity%s.Parts {
		share++
	}
	return share
}

// Counted reports whether the policy counts placements: it does for a
// registry (Agencies), whose contracts may bound them; a policy naming a
// single agency places without counting. Counting costs an atomic write
// per placement opened or ended, so a lender who sets no registry pays
// nothing for it.
func (p Policy) Counted() bool { return len(p.Agencies) > 0 }

// PlacementChange is how a decision moves an agency's count of open
// placements: a handoff opens one, a recall or the closure of a placed case
// ends it. agency is "" for a decision that moves none.
func PlacementChange(c *Case, d Decision) (agency string, delta int) {
	switch d.Kind {
	case KindHandedOff:
		return d.AgencyID, 1
	case KindPlacementRecalled:
		return d.AgencyID, -1
	case KindCaseClosed:
		if c.PlacementID != "" && c.AgencyID != "" {
			return c.AgencyID, -1
		}
	}
	return "", 0
}

// covers reports whether the agency may take an account in region.
func (a Agency) covers(region string) bool {
	return len(a.Regions) == 0 || slices.Contains(a.Regions, region)
}

// Registry is the policy's agencies: the configured list, or the single
// agency of a policy that names only one (Policy.Agency).
func (p Policy) Registry() []Agency {
	if len(p.Agencies) > 0 {
		return p.Agencies
	}
	return []Agency{{ID: p.Agency, Weight: 1}}
}

// placementNamespace is the UUIDv5 namespace of placement IDs. Stored data:
// never change it.
var placementNamespace = uuid.MustParse("6f1c2b0e-4c5d-5a8e-9b7f-3d2a1e0c9b84")

// PlacementID is the placement of a loan's case numbered n: a UUIDv5 of
// the tenant, loan and case, unique across the system and the same on every
// retry, so a redelivered handoff cannot place twice.
func PlacementID(key string, n int) string {
	return uuid.NewSHA1(placementNamespace, []byte(key+"/c"+strconv.Itoa(n))).String()
}

// allocationDraw is a number in [0, 1) fixed by the loan and case: the same
// handoff decided again (a retry, the oracle) chooses the same agency, and
// across loans the draws are uniform, so agencies get placements in the
// proportion of their weights.
func allocationDraw(key string, n int) float64 {
	h := sha256.Sum256([]byte("allocation/" + key + "/c" + strconv.Itoa(n)))
	return float64(binary.BigEndian.Uint64(h[:8])>>11) / (1 << 53)
}

// Region is the borrower's region, from the latest installment that names
// one ("": none named).
func (c *Case) Region() string {
	for i := len(c.Installments) - 1; i >= 0; i-- {
		if r := c.Installments[i].Region; r != "" {
			return r
		}
	}
	return ""
}

// Allocate chooses the agency a case is placed with: among the registry's
// agencies licensed for the borrower's region, by weight, with a draw fixed
// by the loan and case. The reason says what was chosen and why; ok is
// false when no agency may take the account (the reason says why each
// could not).
func (p Policy) Allocate(c *Case, n int) (a Agency, reason string, ok bool) {
	reg := p.Registry()
	region := c.Region()
	var eligible []Agency
	var excluded []string
	total := 0
	for _, a := range reg {
		if !a.covers(region) {
			excluded = append(excluded, fmt.Sprintf("%s is not licensed for %s", a.ID, regionName(region)))
			continue
		}
		if open, limit := c.AgencyLoad[a.ID], c.Share.Of(a.Capacity); a.Capacity > 0 && open >= limit {
			excluded = append(excluded, fmt.Sprintf("%s is full (%d of %d placed%s)", a.ID, open, limit, c.Share.partial()))
			continue
		}
		eligible = append(eligible, a)
		total += a.Weight
	}
	if len(eligible) == 0 {
		return Agency{}, "no agency may take it: " + strings.Join(excluded, "; "), false
	}
	if len(reg) == 1 && eligible[0].Capacity == 0 {
		return eligible[0], "", true
	}
	x := allocationDraw(c.Key, n) * float64(total)
	chosen := eligible[len(eligible)-1]
	for _, e := range eligible {
		if x < float64(e.Weight) {
			chosen = e
			break
		}
		x -= float64(e.Weight)
	}
	ids := make([]string, len(eligible))
	for i, e := range eligible {
		ids[i] = e.ID
	}
	reason = fmt.Sprintf("weight %d of %d among %s for %s", chosen.Weight, total, strings.Join(ids, ", "), regionName(region))
	if chosen.Capacity > 0 {
		reason += fmt.Sprintf(", %d of %d placed%s", c.AgencyLoad[chosen.ID], c.Share.Of(chosen.Capacity), c.Share.partial())
	}
	if len(excluded) > 0 {
		reason += "; " + strings.Join(excluded, "; ")
	}
	return chosen, reason, true
}

// partial says, in a reason, that the counts are one partition's share.
func (s Share) partial() string {
	if s.Parts <= 1 {
		return ""
	}
	return fmt.Sprintf(" in partition %d of %d", s.Part, s.Parts)
}

func regionName(r string) string {
	if r == "" {
		return "a loan with no region"
	}
	return "region " + r
}

func validateAgencies(as []Agency) []error {
	var errs []error
	seen := map[string]bool{}
	for i, a := range as {
		p := fmt.Sprintf("agencies[%d]", i)
		if !ValidID(a.ID) {
			errs = append(errs, fmt.Errorf("%s.id: %q is not a valid identifier", p, a.ID))
		}
		if seen[a.ID] {
			errs = append(errs, fmt.Errorf("%s.id: %q is listed twice", p, a.ID))
		}
		seen[a.ID] = true
		if a.Capacity < 0 {
			errs = append(errs, fmt.Errorf("%s.capacity: must be >= 0 (0: no limit), got %d", p, a.Capacity))
		}
		if a.PlacementDays < 0 {
			errs = append(errs, fmt.Errorf("%s.placement_days: must be >= 0 (0: no expiry), got %d", p, a.PlacementDays))
		}
		if a.Weight < 1 {
			errs = append(errs, fmt.Errorf("%s.weight: must be >= 1, got %d", p, a.Weight))
		}
		for j, r := range a.Regions {
			if !ValidRegion(r) {
				errs = append(errs, fmt.Errorf("%s.regions[%d]: %q is not an ISO 3166-2 code such as \"CN-31\"", p, j, r))
			}
		}
	}
	return errs
}

// ValidRegion reports whether r is an ISO 3166-2 subdivision code: two
// upper-case letters, '-', then 1-3 upper-case letters or digits.
func ValidRegion(r string) bool {
	if len(r) < 4 || len(r) > 6 || r[2] != '-' {
		return false
	}
	for i := range len(r) {
		c := r[i]
		switch {
		case i == 2:
		case i < 2 && c >= 'A' && c <= 'Z':
		case i > 2 && (c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'):
		default:
			return false
		}
	}
	return true
}

// expiryStepPrefix names a placement's expiry.
const expiryStepPrefix = "expire-"

// expiryStep is the open placement's expiry, if its agency's contract
// limits placements, or at once if the contract has ended (the agency is
// no longer in the registry) (nil: none). The handoff stage, which placed
// it, recalls it then. A registry reload touches no loan: a placement of
// an ended contract is recalled when its loan's timer is next put right
// (its next event or step).
func (l Ladder) expiryStep(c *Case) *Step {
	if !c.Open || c.PlacementID == "" || c.PlacedAt.IsZero() {
		return nil
	}
	reg := l.Policy.Registry()
	i := slices.IndexFunc(reg, func(a Agency) bool { return a.ID == c.AgencyID })
	var at time.Time
	switch {
	case i < 0:
		at = c.PlacedAt
	case reg[i].PlacementDays > 0:
		at = c.PlacedAt.Add(time.Duration(reg[i].PlacementDays) * l.Calendar.Day)
		// An agency's plan in force stops the expiry: refused once
		// (recorded), then not looked at again until the plan ends.
		if _, ok := c.AgencyPlan(); ok && slices.Contains(c.RecallsRefused, "expiry/"+c.PlacementID) {
			return nil
		}
	default:
		return nil
	}
	return &Step{ID: expiryStepPrefix + c.PlacementID, Stage: StageHandoff, Case: c.Number, At: at}
}

// onPlacementExpiry recalls a placement whose time is up, or whose
// agency's contract has ended.
func (l Ladder) onPlacementExpiry(c *Case, s Step, now time.Time) *Decision {
	if c.PlacementID == "" || s.ID != expiryStepPrefix+c.PlacementID {
		return nil
	}
	overdue, _ := c.Overdue(l.Calendar, now)
	ctx := l.context(c, c.Number, c.Stage, l.DPDAt(c, now), overdue, now)
	ctx.StepID, ctx.AsOf = s.ID, s.At
	if !slices.ContainsFunc(l.Policy.Registry(), func(a Agency) bool { return a.ID == c.AgencyID }) {
		ctx.AsOf = now
		ctx.Reason = fmt.Sprintf("the contract with agency %s has ended (it is no longer in the policy's registry): placement %s recalled", c.AgencyID, c.PlacementID)
	} else if p, ok := c.AgencyPlan(); ok {
		ctx.Reason = fmt.Sprintf("placement %s with agency %s is due to expire, but the agency's plan %s is in force: recall refused until the plan ends",
			c.PlacementID, c.AgencyID, p.ID)
		return &Decision{Kind: KindRecallRefused, Ctx: ctx, AgencyID: c.AgencyID, PlacementID: c.PlacementID, PlanID: p.ID, Rule: "expiry"}
	} else {
		days := int(s.At.Sub(c.PlacedAt) / l.Calendar.Day)
		ctx.Reason = fmt.Sprintf("placement %s with agency %s expired after %d days (the contract's placement_days): recalled", c.PlacementID, c.AgencyID, days)
	}
	return &Decision{Kind: KindPlacementRecalled, Ctx: ctx, AgencyID: c.AgencyID, PlacementID: c.PlacementID}
}
