package integration

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/opendunning/dunning/pkg/access"
	"github.com/opendunning/dunning/pkg/app"
	"github.com/opendunning/dunning/pkg/embedded"
	"github.com/opendunning/dunning/pkg/natstest"
	"github.com/opendunning/dunning/pkg/pipeline"
	"github.com/opendunning/dunning/pkg/topology"
)

// K is fixed by the first provisioning and read back by every service; an
// earlier release's loans stream (no partition token, no K) is refused
// rather than left unread, and named as stale until provisioned.
func TestPartitionsFixedAtProvisioning(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := natstest.Server(t, embedded.Config{})
	_, js := natstest.Connect(t, srv, "partitions")
	three := topology.DefaultTopology()
	three.Partitions = 3
	if err := three.Provision(ctx, js, pipeline.Consumers(3)); err != nil {
		t.Fatal(err)
	}
	if k, err := topology.ReadPartitions(ctx, js); err != nil || k != 3 {
		t.Fatalf("ReadPartitions = %d, %v; want 3", k, err)
	}
	for _, name := range []string{"DUNNING_LOANS_1", "DUNNING_LOANS_2"} {
		if _, err := js.Stream(ctx, name); err != nil {
			t.Errorf("stream %s: %v", name, err)
		}
	}
	if _, err := js.Consumer(ctx, "DUNNING_LOANS_2", "escalation-p2"); err != nil {
		t.Errorf("consumer escalation-p2: %v", err)
	}
	if missing, err := three.Missing(ctx, js, pipeline.Consumers(3)); err != nil || len(missing) != 0 {
		t.Errorf("Missing after provisioning = %v, %v", missing, err)
	}
	// Provisioning again with the same K is an update; with another, refused.
	if err := three.Provision(ctx, js, pipeline.Consumers(3)); err != nil {
		t.Errorf("provisioning again: %v", err)
	}
	one := topology.DefaultTopology()
	if err := one.Provision(ctx, js, pipeline.Consumers(1)); !errors.Is(err, topology.ErrPartitionsFixed) {
		t.Errorf("provisioning 1 partition over 3: %v, want ErrPartitionsFixed", err)
	}
	// Each partition's stream holds its own subjects; one beyond K has none,
	// and a write there is refused, not stored where no reader looks.
	r := three.Partitions.Loan("acme", "L-1")
	if ack, err := js.Publish(ctx, r.Subject("due", "1"), nil); err != nil || ack.Stream != r.Stream() {
		t.Errorf("a write to the loan's subject: %v, %v; want it in %s", ack, err, r.Stream())
	}
	beyond := topology.LoanRef{P: 3, Tenant: "acme", Loan: "L-1"}
	if _, err := js.Publish(ctx, beyond.Subject("due", "1"), nil); !errors.Is(err, jetstream.ErrNoStreamResponse) {
		t.Errorf("a write to partition 3 of 3: %v, want no stream", err)
	}

	// A consumer and a partition's stream removed under the services:
	// Missing (what /readyz reports) names them, and every consumer of the
	// stream, whatever order its concurrent reads come back in.
	if err := js.DeleteConsumer(ctx, "DUNNING_LOANS_1", "escalation-p1"); err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(ctx, "DUNNING_LOANS_2"); err != nil {
		t.Fatal(err)
	}
	want := []string{"stream DUNNING_LOANS_2"}
	for _, c := range pipeline.Consumers(3) {
		if c.Stream == "DUNNING_LOANS_2" || c.Name == "escalation-p1" {
			want = append(want, "consumer "+c.Name)
		}
	}
	if missing, err := three.Missing(ctx, js, pipeline.Consumers(3)); err != nil || !slices.Equal(missing, want) {
		t.Errorf("Missing after removing a consumer and a stream = %v, %v; want %v", missing, err, want)
	}

	// An earlier release's loans stream: subjects without the partition
	// token, and a loan in it.
	old := natstest.Server(t, embedded.Config{})
	_, ojs := natstest.Connect(t, old, "old-layout")
	if _, err := ojs.CreateStream(ctx, jetstream.StreamConfig{Name: topology.StreamLoans, Subjects: []string{"dunning.loan.>", "dunning.borrower.>", "dunning.capacity.>"},
		AllowMsgSchedules: true, AllowRollup: true, AllowDirect: true, AllowAtomicPublish: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := ojs.Publish(ctx, "dunning.loan.acme.L-1.due.1", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := topology.ReadPartitions(ctx, ojs); !errors.Is(err, topology.ErrUnprovisioned) {
		t.Errorf("ReadPartitions of an earlier release's stream: %v, want ErrUnprovisioned", err)
	}
	stale, err := one.Stale(ctx, ojs)
	if err != nil || !slices.ContainsFunc(stale, func(s string) bool { return strings.Contains(s, "partitions of stream DUNNING_LOANS") }) {
		t.Errorf("Stale = %q, %v; want the loans stream's partitions named", stale, err)
	}
	if err := one.Provision(ctx, ojs, pipeline.Consumers(1)); !errors.Is(err, topology.ErrOldLayout) {
		t.Errorf("provisioning over an earlier release's loans: %v, want ErrOldLayout", err)
	}
}

// The server's partition() mapping, which puts what a lender publishes in
// its loan's partition, and the partition every writer of the pipeline
// computes (topology.Partitions.Of) agree: for lenders (their account's
// mapping) and the pipeline's own tools (its account's), for every loan.
func TestIntakeMappingMatchesPartitions(t *testing.T) {
	const k = topology.Partitions(5)
	dir := natstest.Keyring(t, app.Grants, access.Lender("acme"))
	kr := access.Keyring{Dir: dir}
	if err := kr.SetPartitions(k); err != nil {
		t.Fatal(err)
	}
	if _, err := kr.ServerConfig(app.Grants); err != nil {
		t.Fatal(err)
	}
	srv := natstest.Server(t, embedded.Config{Keyring: dir})
	_, js := natstest.Connect(t, srv, "mapping")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	topo := topology.DefaultTopology()
	topo.Partitions = k
	if err := topo.Provision(ctx, js, nil); err != nil {
		t.Fatal(err)
	}
	lender, err := srv.Dialer(access.Lender("acme"))("lender")
	if err != nil {
		t.Fatal(err)
	}
	defer lender.Close()
	ljs, err := jetstream.New(lender)
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	for i := range n {
		pub := js // the admin, in the pipeline's account
		if i%2 == 1 {
			pub = ljs // the lender, in the lenders' account
		}
		loan := "L-" + strconv.Itoa(i)
		ack, err := pub.Publish(ctx, topology.IntakeSubject("acme", loan), []byte(loan))
		if err != nil || ack.Stream != topology.StreamIntake {
			t.Fatalf("publishing for %s: %v, %v", loan, ack, err)
		}
	}
	intake, err := js.Stream(ctx, topology.StreamIntake)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]int{}
	for i := range n {
		loan := "L-" + strconv.Itoa(i)
		r := k.Loan("acme", loan)
		m, err := intake.GetLastMsgForSubject(ctx, r.Intake())
		if err != nil || string(m.Data) != loan {
			t.Fatalf("%s (partition %d): not stored on %s: %v", loan, r.P, r.Intake(), err)
		}
		seen[r.P]++
	}
	if info, err := intake.Info(ctx); err != nil || info.State.Msgs != n {
		t.Errorf("intake holds %v messages (%v), want %d", info.State.Msgs, err, n)
	}
	if len(seen) != k.Count() {
		t.Errorf("loans in partitions %v, want all %d used", seen, k.Count())
	}
}
