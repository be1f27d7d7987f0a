package sim

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/opendunning/dunning/pkg/loanlog"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/topology"
	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"
)

// CalibrationDay is the business day the pipeline must give the
// calibration's tenant: long enough that only confirmation and first
// contact happen while it runs.
const CalibrationDay = time.Hour

// Calibrate measures how quickly the running pipeline turns lender events
// into decisions on this machine, now: it publishes n installments already
// past due for tenant (whose ladder must have a day of CalibrationDay), rate
// a second, and returns the 99th percentile of the time from each
// publication to its first contact in the loan's log (intake, overdue
// confirmation through a server schedule, first contact). A simulation
// sizes its accelerated day from it, so that a machine busy with other
// work gets longer days instead of a failed run.
func Calibrate(ctx context.Context, js jetstream.JetStream, log *loanlog.Log, tenant string, n, rate int) (time.Duration, error) {
	sent := make([]time.Time, n)
	tick := time.Second / time.Duration(max(rate, 1))
	due := time.Now().Add(-CalibrationDay - CalibrationDay/2) // DPD 1 at once
	for i := range n {
		data, err := proto.Marshal(&dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_InstallmentDue{InstallmentDue: &dunningv1.InstallmentDue{
			TenantId: tenant, LoanId: fmt.Sprintf("calib-%d", i), InstallmentId: "1", Amount: &dunningv1.Money{Currency: "CNY", MinorUnits: 1000},
			DueAt: timestamppb.New(due), TimeZone: "Asia/Shanghai", ContactRef: "calibration"}}})
		if err != nil {
			return 0, err
		}
		sent[i] = time.Now()
		if _, err := js.Publish(ctx, topology.IntakeSubject(tenant, fmt.Sprintf("calib-%d", i)), data); err != nil {
			return 0, fmt.Errorf("calibrating: %w", err)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(time.Until(sent[i].Add(tick))):
		}
	}
	lat := make([]time.Duration, 0, n)
	deadline := time.Now().Add(2 * time.Minute)
	for i := 0; i < n; {
		entries, _, err := log.Read(ctx, tenant, fmt.Sprintf("calib-%d", i))
		if err != nil {
			return 0, fmt.Errorf("calibrating: %w", err)
		}
		found := false
		for _, e := range entries {
			if d, ok := e.Event.(policy.Decision); ok && d.Kind == policy.KindContactRequested {
				lat = append(lat, e.Time.Sub(sent[i]))
				found = true
			}
		}
		if found {
			i++
			continue
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("calibrating: loan calib-%d has no first contact after 2 minutes", i)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	slices.Sort(lat)
	return lat[len(lat)*99/100], nil
}

// DayFor is the accelerated day a simulation should use on a machine whose
// calibrated decision latency (p99) is lat: a payment lands half a day into
// a DPD and must be in the loan's log before the next day's step is
// decided, so half a day must be well over the latency. Never shorter than
// floor, rounded up to a tenth of a second.
func DayFor(lat, floor time.Duration) time.Duration {
	return max(floor, (3*lat).Round(100*time.Millisecond)+100*time.Millisecond)
}
