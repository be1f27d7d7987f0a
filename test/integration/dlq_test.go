package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/opendunning/dunning/pkg/access"
	"github.com/opendunning/dunning/pkg/bus"
	"github.com/opendunning/dunning/pkg/codec"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/topology"
)

// Acceptance 9: malformed events land in the dead-letter stream with their
// reason, and the stages go on with the next ones.
func TestMalformedEventsDeadLettered(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 100*time.Millisecond)
	h.startPipeline()
	ctx := context.Background()
	pub := func(subj, contentType string, data []byte) {
		t.Helper()
		m := nats.NewMsg(subj)
		m.Data = data
		if contentType != "" {
			m.Header.Set("Content-Type", contentType)
		}
		m.Header.Set("X-Lender-Trace", "trace-"+subj)
		if _, err := h.js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	valid := dueEvent("L-good", "1", 5000, time.Now())
	validJSON, _ := protojson.Marshal(valid)
	mismatched, _ := protojson.Marshal(dueEvent("L-other", "1", 5000, time.Now()))
	noAmount := dueEvent("L-bad", "1", 5000, time.Now())
	noAmount.GetInstallmentDue().Amount = nil
	noAmountJSON, _ := protojson.Marshal(noAmount)

	cases := []struct {
		subj, ct string
		data     []byte
		reason   string
	}{
		{topology.IntakeSubject(tenant, "L-bad"), "", []byte{0xff, 0xff, 0xff}, "invalid protobuf"},
		{topology.IntakeSubject(tenant, "L-bad"), "application/json", []byte(`{"installmentDue":{"tenantId":"acme","amout":1}}`), `unknown field "amout"`},
		{topology.IntakeSubject(tenant, "L-bad"), "application/json", noAmountJSON, "installment_due.amount: is required"},
		{topology.IntakeSubject(tenant, "L-bad"), "application/json", mismatched, "subject names acme/L-bad but the event is for acme/L-other"},
		{topology.LoanRef{Tenant: tenant, Loan: "L-bad"}.Step("escalate", 1), "", []byte("not a step"), "forged loan-log entry: a step the loan's timer did not fire"},
	}
	for _, c := range cases {
		pub(c.subj, c.ct, c.data)
	}
	pub(topology.IntakeSubject(tenant, "L-good"), "application/json", validJSON)

	h.waitKind("L-good", policy.KindContactRequested, 1, 5*time.Second)
	var dl []string
	waitFor(t, 5*time.Second, func() error {
		dl = nil
		for _, m := range h.dlq() {
			dl = append(dl, m.Header.Get(bus.HeaderDLQReason))
		}
		if len(dl) < len(cases) {
			return errorf("%d dead letters, want %d: %q", len(dl), len(cases), dl)
		}
		return nil
	})
	if len(dl) != len(cases) {
		t.Errorf("dead letters = %q, want %d", dl, len(cases))
	}
	// Stages handle messages concurrently, so match dead letters by body.
	byBody := map[string]*jetstream.RawStreamMsg{}
	for _, m := range h.dlq() {
		byBody[string(m.Data)] = m
	}
	for i, c := range cases {
		m, ok := byBody[string(c.data)]
		if !ok {
			t.Errorf("case %d (%s) not dead-lettered with its original body", i, c.reason)
			continue
		}
		if got := m.Header.Get(bus.HeaderDLQReason); !strings.Contains(got, c.reason) {
			t.Errorf("dead letter %d reason = %q, want it to contain %q", i, got, c.reason)
		}
		if got, want := m.Header.Get(bus.HeaderDLQSubject), stored(t, c.subj); got != want {
			t.Errorf("dead letter %d subject = %q, want %q (where the server stored it)", i, got, want)
		}
		if got := m.Header.Get("Dunning-Orig-X-Lender-Trace"); got != "trace-"+c.subj {
			t.Errorf("dead letter %d lost the original headers: %v", i, m.Header)
		}
	}
	if counts(h.entries("L-bad"))["due"] != 0 {
		t.Error("an invalid installment reached the loan log")
	}
}

// The intake stream takes exactly dunning.in.<tenant>.<loan> and at most 64
// KiB: a publish to a longer subject, or a bigger one, is refused at once
// (the publisher gets an error) instead of being stored and never consumed.
func TestIntakeRefusesAtPublish(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 100*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := h.js.Publish(ctx, topology.IntakeSubject(tenant, "L-x")+".extra", []byte("{}")); err == nil {
		t.Error("a publish to dunning.in.<tenant>.<loan>.extra was acknowledged")
	}
	if _, err := h.js.Publish(ctx, topology.IntakeSubject(tenant, "L-x"), make([]byte, 1<<20-1024)); err == nil {
		t.Error("a 1 MB lender event was acknowledged")
	}
	if _, err := h.js.Publish(ctx, topology.IntakeSubject(tenant, "L-x"), make([]byte, topology.MaxIntakeMessage+1)); err == nil {
		t.Error("a lender event one byte over the limit was acknowledged")
	}
	s, err := h.js.Stream(ctx, topology.StreamIntake)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 {
		t.Errorf("the intake stream stored %d messages, want 0", info.State.Msgs)
	}
}

// A message written straight onto a loan's log by someone other than intake
// (a forged negative repayment, a body naming another loan) is refused by
// the stage that consumes it and by every read of the log: dead-lettered
// with its reason, never folded into the case. The real payment still cures
// the loan.
func TestForgedFactsAreNeverApplied(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 200*time.Millisecond)
	h.startPipeline()
	h.send(dueEvent("L-forged", "1", 1000, time.Now()))
	h.waitKind("L-forged", policy.KindContactRequested, 1, 10*time.Second)
	ctx := context.Background()
	// Written straight into the loan's log, past intake's validation, with
	// the one service credential that may write repayments: the gateway's.
	gw := h.connectAs(access.Service("gateway"))
	js, err := jetstream.New(gw.nc)
	if err != nil {
		t.Fatal(err)
	}
	forge := func(id string, m proto.Message, headers map[string]string) {
		t.Helper()
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		msg := nats.NewMsg(topology.LoanRef{Tenant: tenant, Loan: "L-forged"}.Subject(codec.Repaid.Token, id))
		msg.Data = b
		for k, v := range headers {
			msg.Header.Set(k, v)
		}
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	negative := payEvent("L-forged", "x-neg", -500_000_000).GetRepaymentReceived()
	forge("x-neg", negative, nil)
	otherLoan := payEvent("L-other", "x-other", 1000).GetRepaymentReceived()
	forge("x-other", otherLoan, nil)
	// A full repayment that also cancels the loan's timer: the server
	// purges the timer (schedule headers are not a subject permission), and
	// the stage refuses the fact it came with.
	purging := payEvent("L-forged", "x-sched", 1000).GetRepaymentReceived()
	forge("x-sched", purging, map[string]string{"Nats-Scheduler": topology.LoanRef{Tenant: tenant, Loan: "L-forged"}.Timer(), "Nats-Schedule-Next": "purge"})
	waitFor(t, 10*time.Second, func() error {
		reasons := map[string]string{}
		for _, m := range h.dlq() {
			if subj := m.Header.Get(bus.HeaderDLQSubject); strings.HasPrefix(subj, topology.LoanRef{Tenant: tenant, Loan: "L-forged"}.Subject(codec.Repaid.Token, "x-")) {
				reasons[subj] = m.Header.Get(bus.HeaderDLQReason)
			}
		}
		for id, want := range map[string]string{"x-neg": "undecodable", "x-other": "undecodable", "x-sched": "forged"} {
			if r := reasons[topology.LoanRef{Tenant: tenant, Loan: "L-forged"}.Subject(codec.Repaid.Token, id)]; !strings.Contains(r, want) {
				return fmt.Errorf("repayment %s: dead-letter reason %q, want %q (all: %v)", id, r, want, reasons)
			}
		}
		return nil
	})
	for _, e := range h.entries("L-forged") {
		if e.kind == "repaid" {
			t.Errorf("a forged repayment was folded into the case: %+v", e.event)
		}
	}
	if _, closed := h.decision("L-forged", policy.KindCaseClosed); closed {
		t.Error("the forged repayments closed the case")
	}
	h.send(payEvent("L-forged", "p-real", 1000))
	h.waitKind("L-forged", policy.KindCaseClosed, 1, 10*time.Second)
	// What the forged purge removed from the live log, the record keeps.
	if _, err := h.recordHas(topology.LoanRef{Tenant: tenant, Loan: "L-forged"}.Timer()); err != nil {
		t.Errorf("the purged timer: %v", err)
	}
	if d, _ := h.decision("L-forged", policy.KindCaseClosed); d.CloseReason != policy.CloseCured {
		t.Errorf("closed as %s, want cured", d.CloseReason)
	}
}

// A message no handler ever finishes (its process killed, or hung past the
// ack wait, on every delivery) runs out of deliveries without the handler
// seeing it fail, so the router's own dead-lettering never runs: the
// server's max-deliveries advisory is turned into a dead letter instead
// (issue 13). Here a process that takes the lender event twice and dies
// each time is played by raw pulls that never ack. The advisory is kept in
// the advisories stream while no service runs; the gateway, started after
// it, with its own credential, reads it through its abandoned-intake
// consumer and dead-letters the event with its body, its headers and the
// reason.
func TestAbandonedMessageDeadLettered(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 100*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := h.topo.ConsumerConfig(topology.Intake)
	cfg.MaxDeliver, cfg.AckWait = 2, time.Second
	if _, err := h.js.CreateOrUpdateConsumer(ctx, topology.StreamIntake, cfg); err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(topology.IntakeSubject(tenant, "L-crash"))
	m.Data, _ = protojson.Marshal(dueEvent("L-crash", "1", 5000, time.Now()))
	m.Header.Set("Content-Type", "application/json")
	m.Header.Set("X-Lender-Trace", "crash-1")
	if _, err := h.js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	cons, err := h.js.Consumer(ctx, topology.StreamIntake, topology.ConsumerIntake)
	if err != nil {
		t.Fatal(err)
	}
	for delivery := 1; delivery <= 2; delivery++ {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for msg := range batch.Messages() {
			md, _ := msg.Metadata()
			if md.NumDelivered != uint64(delivery) {
				t.Fatalf("delivery %d arrived as %d", delivery, md.NumDelivered)
			}
			got++ // never acked: the process "dies" holding it
		}
		if got != 1 {
			t.Fatalf("delivery %d: %d messages fetched, want 1 (%v)", delivery, got, batch.Error())
		}
	}
	// The server announces the message when a pull finds its deliveries
	// run out, after the last one's ack wait: here a third pull, while no
	// service runs. The advisories stream keeps the advisory.
	advisory := topology.MaxDeliveriesAdvisory(topology.StreamIntake, topology.ConsumerIntake)
	st, err := h.js.Stream(ctx, topology.StreamAdvisories)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, func() error {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(500*time.Millisecond))
		if err != nil {
			return err
		}
		for msg := range batch.Messages() {
			t.Fatalf("a third delivery of a message allowed two: %s", msg.Subject())
		}
		if _, err := st.GetLastMsgForSubject(ctx, advisory); err != nil {
			return errorf("no advisory in %s yet: %v", topology.StreamAdvisories, err)
		}
		return nil
	})
	if d := h.dlq(); len(d) != 0 {
		t.Fatalf("dead letters before any service ran: %d", len(d))
	}
	// The gateway starts after it was sent, and dead-letters the event.
	h.start("gateway", true)
	var dl *jetstream.RawStreamMsg
	waitFor(t, 20*time.Second, func() error {
		for _, d := range h.dlq() {
			if d.Header.Get(bus.HeaderDLQClass) == bus.ClassAbandoned {
				dl = d
				return nil
			}
		}
		return errorf("no abandoned dead letter yet")
	})
	if string(dl.Data) != string(m.Data) || dl.Header.Get("Dunning-Orig-X-Lender-Trace") != "crash-1" ||
		dl.Header.Get(bus.HeaderDLQSubject) != stored(t, m.Subject) || dl.Header.Get(bus.HeaderDLQConsumer) != topology.ConsumerIntake {
		t.Errorf("dead letter = %q with headers %v, want the original body, headers and subject", dl.Data, dl.Header)
	}
	if r := dl.Header.Get(bus.HeaderDLQReason); !strings.Contains(r, "no handler finished it in 2 deliveries") {
		t.Errorf("reason = %q", r)
	}
	if n := testutil.ToFloat64(h.metricsOf("gateway").Router.DeadLetters.WithLabelValues(topology.ConsumerIntake, bus.ClassAbandoned)); n != 1 {
		t.Errorf("dunning_dead_letters_total{class=abandoned} = %v, want 1", n)
	}
	if counts(h.entries("L-crash"))["due"] != 0 {
		t.Error("the abandoned event reached the loan log")
	}
}

// stored is where the server stores what is published on an intake
// subject: its loan's partition's (one partition here); any other subject
// is stored as published.
func stored(t *testing.T, subject string) string {
	t.Helper()
	tenant, loan, err := topology.ParseIntakeSubject(subject)
	if err != nil {
		return subject
	}
	return topology.Partitions(1).Loan(tenant, loan).Intake()
}
