package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/opendunning/dunning/pkg/codec"
	"github.com/opendunning/dunning/pkg/embedded"
	"github.com/opendunning/dunning/pkg/natstest"
	"github.com/opendunning/dunning/pkg/pipeline"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/sim"
	"github.com/opendunning/dunning/pkg/topology"
	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"
)

// BenchmarkOpenCases measures what open cases cost NATS, which holds all of
// the pipeline's state: N loans each with an installment, an overdue
// confirmation, a first contact and a pending escalation schedule (the
// messages an open light-tier case has), all scheduled for the same instant.
// It reports the resident memory of this process (embedded server included)
// holding them, and how fast the server fires the N schedules into step
// messages. DUNNING_OPEN_CASES sets N (default 100,000; make bench-open
// runs 1,000,000), DUNNING_OPEN_SPREAD how long after the first they fall
// due (default: all at once), in the order they were written
// (DUNNING_OPEN_SHUFFLED=1: in an order unrelated to it, as when each step
// drew its own offset). Default sync interval, in-process client.
func BenchmarkOpenCases(b *testing.B) {
	n := 100_000
	if v, err := strconv.Atoi(os.Getenv("DUNNING_OPEN_CASES")); err == nil && v > 0 {
		n = v
	}
	// DUNNING_OPEN_SPREAD spreads the schedules over that long after the
	// fire time, each loan at its own offset, as contact.decide_spread
	// spreads a night's steps (0: all at once, the midnight cliff).
	var spread time.Duration
	if v, err := time.ParseDuration(os.Getenv("DUNNING_OPEN_SPREAD")); err == nil && v > 0 {
		spread = v
	}
	for b.Loop() {
		b.StopTimer()
		srv := natstest.Server(b, embedded.Config{})
		nc, err := srv.Connect("open-cases")
		if err != nil {
			b.Fatal(err)
		}
		js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		if err := topology.DefaultTopology().Provision(ctx, js, pipeline.Consumers(1)); err != nil {
			b.Fatal(err)
		}
		// DUNNING_OPEN_NORECORD=1: without the record (the loans stream's
		// protected copy), to measure what it costs the server; the
		// pipeline always has it.
		if os.Getenv("DUNNING_OPEN_NORECORD") != "" {
			if err := js.DeleteStream(ctx, topology.StreamRecord); err != nil {
				b.Fatal(err)
			}
		}
		// Fire far enough ahead that seeding finishes first, and then
		// that the blocks it wrote lie idle past the server's per-block
		// subject-state expiry (its SubjectStateExpire, 2 minutes): the
		// pipeline writes a night's timers during the night before, so
		// when they fire their blocks have long been idle. Fired right
		// after seeding, the server would still hold the subject state
		// of every block seeding wrote, which no real night does.
		fireAt := time.Now().Add(time.Duration(n/5_000+30)*time.Second + openIdle + openMeasure)
		seedStart := time.Now()
		if err := seedOpen(js, n, fireAt, spread); err != nil {
			b.Fatal(err)
		}
		seeded := time.Since(seedStart)
		// What holds the open cases is measured in the last openMeasure
		// before the fire time (a collection of a heap of gigabytes).
		idle := time.Until(fireAt) - openMeasure
		if idle < 0 {
			b.Fatalf("seeding %d cases took %s, past the fire time: raise the lead", n, seeded)
		}
		if idle < openIdle {
			fmt.Printf("seeding ended %s before the fire time, less than the %s the blocks need to lie idle: the open figure below includes their subject state\n",
				idle.Round(time.Second), openIdle)
		}
		time.Sleep(idle)
		runtime.GC()
		debug.FreeOSMemory()
		// The peak from here on is the firing's, not the seeding's:
		// writing 5 to clear_refs resets VmHWM (Linux).
		_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
		rss, _ := sim.Resident()
		if path := os.Getenv("DUNNING_OPEN_HEAPPROFILE"); path != "" {
			writeHeap(path + ".open") // what holds the open cases
		}
		steps, err := js.CreateConsumer(ctx, topology.StreamLoans, jetstream.ConsumerConfig{
			Durable: "open-steps", FilterSubject: "dunning.loan.*." + tenant + ".*.step.>", AckPolicy: jetstream.AckNonePolicy})
		if err != nil {
			b.Fatal(err)
		}
		if time.Now().After(fireAt) {
			b.Fatalf("measuring the open cases ran past the fire time (%s before it): raise openMeasure", openMeasure)
		}
		time.Sleep(time.Until(fireAt))
		b.StartTimer()
		var fired uint64
		infoTimeouts := 0
		deadline := fireAt.Add(spread + 10*time.Minute)
		heap := heapAtPeak(os.Getenv("DUNNING_OPEN_HEAPPROFILE"))
		for fired < uint64(n) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			heap()
			// While the server collects a million due schedules it holds
			// the stream's lock and API requests time out: ask again.
			ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
			info, err := steps.Info(ictx)
			cancel()
			if err != nil {
				infoTimeouts++
				continue
			}
			fired = info.NumPending
		}
		b.StopTimer()
		_, peak := sim.Resident()
		if fired != uint64(n) {
			b.Fatalf("%d of %d schedules fired within 10 minutes of the last one's time; RSS holding them %d MiB, peak %d MiB while firing", fired, n, rss>>20, peak>>20)
		}
		elapsed := time.Since(fireAt)
		nc.Close()
		srv.Shutdown()
		b.ReportMetric(float64(n)/elapsed.Seconds(), "steps/s")
		b.ReportMetric(float64(rss>>20), "MiB-rss-open")
		b.ReportMetric(float64(peak>>20), "MiB-rss-peak-firing")
		fmt.Printf("\nopen cases: %d loans (4 messages and a pending schedule each) seeded in %s; RSS holding them %d MiB (peak %d MiB while firing); "+
			"all %d schedules, due over %s, fired in %s after the first was due: %.0f steps/s (consumer-info requests that timed out meanwhile: %d)\n",
			n, seeded.Round(time.Millisecond), rss>>20, peak>>20, n, spread, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), infoTimeouts)
		b.StartTimer()
	}
}

// openIdle is how long the seeded blocks lie idle before the first step
// is due: past nats-server's default SubjectStateExpire (2 minutes).
// openMeasure is the time left before it to measure the open cases.
const (
	openIdle    = 2*time.Minute + 15*time.Second
	openMeasure = 30 * time.Second
)

// seedOpen publishes, asynchronously and without conditions (seeding, not
// the pipeline's path), each loan's open-case messages and its schedule.
func seedOpen(js jetstream.JetStream, n int, fireAt time.Time, spread time.Duration) error {
	due := &dunningv1.InstallmentDue{TenantId: tenant, InstallmentId: "1", Amount: &dunningv1.Money{Currency: "CNY", MinorUnits: 120000},
		DueAt: timestamppb.New(fireAt.Add(-48 * time.Hour)), TimeZone: "Asia/Shanghai", ContactRef: "crm"}
	decision := make([]byte, 320) // about a contact_requested decision
	// The pipeline writes a loan's next step's timer when it decides the
	// step before, at the loan's offset in an earlier night's spread; the
	// offset is the loan's own, the same every night, so the timers of a
	// night's steps stand in the stream in the order they fall due. Seeded
	// so: in the order of their offsets.
	order := make([]int, n)
	offsets := make([]time.Duration, n)
	for k := range n {
		order[k] = k
		offsets[k] = policy.SpreadOffset(policy.LoanKey(tenant, fmt.Sprintf("o%07d", k)), spread)
	}
	if os.Getenv("DUNNING_OPEN_SHUFFLED") == "" {
		slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(offsets[a], offsets[b]) })
	}
	for _, k := range order {
		loan := fmt.Sprintf("o%07d", k)
		due.LoanId = loan
		data, err := proto.Marshal(due)
		if err != nil {
			return err
		}
		msgs := []*nats.Msg{
			{Subject: topology.LoanRef{Tenant: tenant, Loan: loan}.Subject(codec.Due.Token, "1"), Data: data},
			{Subject: topology.LoanRef{Tenant: tenant, Loan: loan}.Subject(codec.Overdue.Token, "s2"), Data: decision[:200]},
			{Subject: topology.LoanRef{Tenant: tenant, Loan: loan}.Subject(codec.Contact.Token, "s3"), Data: decision},
		}
		timer := nats.NewMsg(topology.LoanRef{Tenant: tenant, Loan: loan}.Timer())
		timer.Data = decision[:80]
		at := fireAt.Add(offsets[k])
		timer.Header.Set(jetstream.ScheduleHeader, "@at "+at.UTC().Format(time.RFC3339Nano))
		timer.Header.Set(jetstream.ScheduleTargetHeader, topology.LoanRef{Tenant: tenant, Loan: loan}.Step("escalate", 4))
		msgs = append(msgs, timer)
		for _, m := range msgs {
			for {
				_, err := js.PublishMsgAsync(m)
				if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
					if err != nil {
						return err
					}
					break
				}
				// The server's acks fell behind (a garbage collection
				// under a memory limit, a disk flush): let them catch up.
				select {
				case <-js.PublishAsyncComplete():
				case <-time.After(time.Minute):
					return fmt.Errorf("seeding: no acknowledgements for a minute")
				}
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
		return nil
	case <-time.After(5 * time.Minute):
		return fmt.Errorf("seeding %d open cases did not complete", n)
	}
}

// heapAtPeak returns a function to call while the schedules fire: when
// path is set, it writes a heap profile there each time the heap in use is
// the largest seen so far (at most every 500 ms), so that what holds the
// peak can be read with go tool pprof (path.open: what holds the open
// cases before they fire).
func heapAtPeak(path string) func() {
	if path == "" {
		return func() {}
	}
	var most uint64
	var last time.Time
	return func() {
		if time.Since(last) < 500*time.Millisecond {
			return
		}
		last = time.Now()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		if ms.HeapInuse <= most {
			return
		}
		most = ms.HeapInuse
		writeHeap(path)
		fmt.Printf("heap in use %d MiB: profile written to %s\n", most>>20, path)
	}
}

func writeHeap(path string) {
	f, err := os.Create(path)
	if err != nil {
		return
	}
	defer f.Close()
	_ = pprof.Lookup("heap").WriteTo(f, 0)
}
