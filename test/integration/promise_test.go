package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/opendunning/dunning/pkg/bus"
	"github.com/opendunning/dunning/pkg/policy"
	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"
)

func promiseEvent(loan, id string, minor int64, due time.Time) *dunningv1.LenderEvent {
	return &dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_PromiseToPay{PromiseToPay: &dunningv1.PromiseToPay{
		TenantId: tenant, LoanId: loan, PromiseId: id, Amount: money(minor), PromisedFor: timestamppb.New(due), ReceivedAt: timestamppb.Now()}}}
}

// Acceptance 5 (borrower's side), over NATS: two promises broken by the
// pipeline itself (shipped rules: two days' grace, max_broken 2), then a
// third published on the intake subject is dead-lettered with the reason
// and never reaches the loan's log.
func TestThirdPromiseAfterTwoBrokenDeadLettered(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 100*time.Millisecond)
	h.startPipeline()
	const loan = "L-promises"
	h.send(dueEvent(loan, "1", 120000, time.Now().Add(-3*h.day)))
	h.waitKind(loan, policy.KindContactRequested, 1, 10*time.Second)
	for i, id := range []string{"pr-1", "pr-2"} {
		h.send(promiseEvent(loan, id, 60000, time.Now().Add(10*h.day)))
		h.waitKind(loan, policy.KindPromiseBroken, i+1, 10*time.Second)
	}
	h.send(promiseEvent(loan, "pr-3", 60000, time.Now().Add(10*h.day)))
	var reason string
	waitFor(t, 10*time.Second, func() error {
		for _, m := range h.dlq() {
			if r := m.Header.Get(bus.HeaderDLQReason); strings.Contains(r, "promise_to_pay") {
				reason = r
				return nil
			}
		}
		return fmt.Errorf("the third promise is not dead-lettered")
	})
	if !strings.Contains(reason, "max_broken 2") {
		t.Errorf("dead letter reason = %q, want it to name promises.max_broken", reason)
	}
	if n := counts(h.entries(loan))["promise"]; n != 2 {
		t.Errorf("%d promises in the loan's log, want the two broken ones", n)
	}
}
