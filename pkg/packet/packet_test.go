package packet_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opendunning/dunning/pkg/packet"
	"github.com/opendunning/dunning/pkg/packet/packettest"
	"github.com/opendunning/dunning/pkg/policy"
)

var at = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

func ctx(dpd int) policy.Context {
	return policy.Context{Case: 1, Stage: policy.StageOverdueConfirmation, Tier: policy.TierLight, DPD: dpd,
		Overdue: policy.Money{Currency: "CNY", Minor: 1000}, DecidedAt: at, Reason: "r"}
}

// A log sealed twice: the second seal commits to the first (Previous), the
// timer is outside the chain, and the packet built at the second verifies.
// Removing the first seal, or an entry before it, breaks both the packet
// and the log's chain.
func TestTwoSeals(t *testing.T) {
	l := &packettest.Log{T: t, Tenant: "acme", Loan: "L-1", At: at}
	l.Add(policy.InstallmentDue{ID: "1", Amount: policy.Money{Currency: "CNY", Minor: 1000}, DueAt: at, Zone: "UTC", ContactRef: "crm"}, "1")
	l.Add(policy.TimerSet{Step: policy.Step{ID: "c1-overdue_confirmation", Stage: policy.StageOverdueConfirmation, Case: 1, DPD: 1, At: at}}, "")
	l.Add(policy.Decision{Kind: policy.KindOverdueConfirmed, Ctx: ctx(1), InstallmentIDs: []string{"1"}}, "")
	l.Seal()
	first := l.Raws[len(l.Raws)-1].Seq
	l.Add(policy.Repayment{PaymentID: "p1", Amount: policy.Money{Currency: "CNY", Minor: 300}, PaidAt: at}, "p1")
	if packet.Sealed(l.Raws) {
		t.Fatal("Sealed with a payment after the seal")
	}
	l.Seal()
	if !packet.Sealed(l.Raws) {
		t.Fatal("not Sealed after sealing")
	}
	p, err := packet.Build("acme", "L-1", l.Raws, at)
	if err != nil {
		t.Fatal(err)
	}
	if err := packet.Verify(p); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if p.Seal.Previous != first || len(p.Entries) != len(l.Raws)-1 {
		t.Errorf("seal %+v over %d entries; want after the seal at %d, %d entries (the timer left out)", p.Seal, len(p.Entries), first, len(l.Raws)-1)
	}
	if st := p.Summary.Statement; st.Paid != "3.00 CNY" || st.Outstanding != "7.00 CNY" || len(st.Payments) != 1 || st.Payments[0].Seq != l.Raws[4].Seq {
		t.Errorf("statement %+v", st)
	}
	for i, e := range p.Entries {
		if e.Seq == first {
			q := p
			q.Entries = slices.Delete(slices.Clone(p.Entries), i, i+1)
			if err := packet.Verify(q); err == nil || !strings.Contains(err.Error(), "removed") {
				t.Errorf("Verify without the first seal: %v", err)
			}
		}
	}
	// The log without its first entry no longer matches its first seal.
	if _, _, _, err := packet.Chain("acme", "L-1", l.Raws[1:]); !errors.Is(err, packet.ErrBroken) {
		t.Errorf("Chain without the installment: %v, want ErrBroken", err)
	}
	// A log whose last entry is not a seal makes no packet.
	l.Add(policy.Settled{At: at}, "")
	if _, err := packet.Build("acme", "L-1", l.Raws, at); err == nil {
		t.Error("Build of a log not sealed at its end")
	}
}
