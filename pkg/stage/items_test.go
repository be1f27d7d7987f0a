package stage_test

import (
	"testing"
	"time"

	"github.com/opendunning/dunning/pkg/policy"
)

// The amounts a borrower is told come from the lender: an installment's
// itemisation (its interest and fees, reduced in proportion after a
// partial payment) or the lender's latest itemised balance; the policy's
// computed late fee only where the lender sent neither.
func TestTextsShowTheLendersCharges(t *testing.T) {
	w := holdWorld(t, func(p *policy.Policy) {})
	cny := func(m int64) policy.Money { return policy.Money{Currency: "CNY", Minor: m} }
	items := policy.Itemisation{Principal: cny(100000), Interest: cny(15000), Fees: cny(5000)}
	for _, loan := range []string{"L-items", "L-part", "L-balance"} {
		w.lender(loan, "1", policy.InstallmentDue{ID: "1", Amount: cny(120000), DueAt: w.due, Zone: "Asia/Shanghai", ContactRef: "crm", Items: &items})
	}
	w.installment("L-computed", 120000)
	w.drain()
	w.until(w.dpd(10, 12*time.Hour))
	w.pay("L-part", "p-1", 60000)
	w.lender("L-balance", "bal-1", policy.BalanceUpdated{ID: "bal-1", At: w.clock.Now(),
		Overdue: policy.Itemisation{Principal: cny(100000), Interest: cny(30000), Fees: cny(10000)}})
	w.drain()
	w.until(w.dpd(17, 0))
	for loan, want := range map[string]int64{
		"L-items":    20000,                   // the installment's interest and fees
		"L-part":     10000,                   // half of them, half being paid
		"L-balance":  40000,                   // the lender's balance of DPD 10
		"L-computed": 120000 * 5 * 16 / 10000, // the policy's 0.05 % a day, 16 days
	} {
		esc := w.decided(loan, policy.KindEscalated)
		if len(esc) != 1 {
			t.Fatalf("%s: %d escalations", loan, len(esc))
		}
		// What is decided, and what is released: the text that leaves.
		rel := w.decided(loan, policy.KindContactReleased)
		for _, task := range append(esc[0].Tasks, rel[len(rel)-1].Tasks...) {
			if task.Fees != cny(want) {
				t.Errorf("%s: %s text carries fees %s, want %s", loan, task.Channel, task.Fees, cny(want))
			}
		}
	}
}
