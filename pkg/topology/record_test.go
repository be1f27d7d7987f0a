package topology_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/opendunning/dunning/pkg/natstest"
	"github.com/opendunning/dunning/pkg/topology"
)

// recordCopies reads every copy in the record, in order.
func recordCopies(t *testing.T, js jetstream.JetStream) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, topology.StreamRecord)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := uint64(1); ; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
}

// waitRecord waits until the record holds n copies.
func waitRecord(t *testing.T, js jetstream.JetStream, n uint64) {
	t.Helper()
	natstest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		s, err := js.Stream(context.Background(), topology.StreamRecord)
		if err != nil {
			return err
		}
		if got := s.CachedInfo().State.Msgs; got != n {
			return fmt.Errorf("the record holds %d copies, want %d", got, n)
		}
		return nil
	})
}

// The record keeps every message the pipeline writes, each loan's and each
// borrower's on one subject (the server's subject index then holds one
// entry per loan, not one per message: issue 13, acceptance 2), each copy
// naming the subject it was written on, in the order written.
func TestRecordKeepsOneSubjectPerLoan(t *testing.T) {
	_, js := natstest.Provisioned(t, "admin")
	ctx := context.Background()
	k := topology.Partitions(1)
	l1, l2 := k.Loan("acme", "L-1"), k.Loan("acme", "L-2")
	written := []string{
		l1.Subject("due", "1"), l1.Timer(), l1.Decision("overdue", 2), l2.Subject("due", "7"),
		l1.Step("escalate", 3), k.Borrower("acme", "B-1").Slot(0), topology.CapacitySubject(0, "acme", "collect"), l1.Timer(),
	}
	for _, subj := range written {
		if _, err := js.Publish(ctx, subj, []byte("x")); err != nil {
			t.Fatalf("%s: %v", subj, err)
		}
	}
	waitRecord(t, js, uint64(len(written)))
	var origins []string
	for _, m := range recordCopies(t, js) {
		origin := topology.RecordOrigin(m.Header)
		origins = append(origins, origin)
		if m.Subject != topology.RecordSubject(origin) {
			t.Errorf("the copy of %s is on %s, RecordSubject says %s", origin, m.Subject, topology.RecordSubject(origin))
		}
	}
	if !slices.Equal(origins, written) {
		t.Errorf("the record's copies name\n%q\nwant, in order,\n%q", origins, written)
	}
	s, err := js.Stream(ctx, topology.StreamRecord)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(">"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{"dunning.loan.0.acme.L-1": 5, "dunning.loan.0.acme.L-2": 1, "dunning.borrower.0.acme.B-1": 1, "dunning.capacity.0.acme.collect": 1}
	if !maps.Equal(info.State.Subjects, want) {
		t.Errorf("the record's subjects %v, want %v", info.State.Subjects, want)
	}
}

// A record an earlier release installed copies every subject as it is. The
// server keys a source's progress by its transforms: given the new ones,
// it copies every loans stream into the record again from the start (shown
// here), so provisioning keeps the installed record's sources.
func TestProvisionKeepsAnInstalledRecord(t *testing.T) {
	_, js := natstest.Provisioned(t, "admin")
	ctx := context.Background()
	old := jetstream.StreamConfig{}
	for _, sc := range topology.DefaultTopology().StreamConfigs() {
		if sc.Name == topology.StreamRecord {
			old = sc
		}
	}
	if len(old.Sources) != 1 || len(old.Sources[0].SubjectTransforms) == 0 {
		t.Fatalf("the declared record's sources %+v: want one, with transforms", old.Sources)
	}
	declared := old.Sources
	// As an earlier release installed it.
	if err := js.DeleteStream(ctx, topology.StreamRecord); err != nil {
		t.Fatal(err)
	}
	old.Sources = []*jetstream.StreamSource{{Name: topology.StreamLoans}}
	if _, err := js.CreateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	l := topology.Partitions(1).Loan("acme", "L-1")
	for _, subj := range []string{l.Subject("due", "1"), l.Decision("overdue", 2), l.Timer()} {
		if _, err := js.Publish(ctx, subj, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	waitRecord(t, js, 3)

	if err := topology.DefaultTopology().Provision(ctx, js, nil); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, topology.StreamRecord)
	if err != nil {
		t.Fatal(err)
	}
	if src := s.CachedInfo().Config.Sources; len(src) != 1 || len(src[0].SubjectTransforms) != 0 {
		t.Fatalf("after provisioning, the installed record's sources are %+v: want them kept", src)
	}
	if _, err := js.Publish(ctx, l.Step("escalate", 4), []byte("x")); err != nil {
		t.Fatal(err)
	}
	waitRecord(t, js, 4)
	if got := topology.RecordOrigin(recordCopies(t, js)[3].Header); got != l.Step("escalate", 4) {
		t.Errorf("the fourth copy is of %s", got)
	}

	// What provisioning avoids: the declared transforms on the installed
	// record copy the loans stream into it again.
	cfg := s.CachedInfo().Config
	cfg.Sources = declared
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	waitRecord(t, js, 8)
}

// A loans stream stores only the shapes the record copies: a message of
// any other subject, and a schedule aimed at one, are refused when
// published, so nothing reaches the live log that the record does not
// keep (the record is what survives a rollup sent with a stolen service
// credential).
func TestLoansStreamStoresOnlyWhatTheRecordCopies(t *testing.T) {
	_, js := natstest.Provisioned(t, "admin")
	ctx := context.Background()
	l := topology.Partitions(1).Loan("acme", "L-1")
	for _, subj := range []string{
		"dunning.loan.0.acme", "dunning.loan.0.acme.L-1", l.Step("escalate", 3) + ".extra",
		topology.Partitions(1).Borrower("acme", "B-1").Slot(0) + ".extra", topology.CapacitySubject(0, "acme", "collect") + ".extra",
	} {
		if _, err := js.Publish(ctx, subj, []byte("x")); err == nil {
			t.Errorf("%s was stored", subj)
		}
	}
	forged := nats.NewMsg(l.Timer())
	forged.Header.Set(jetstream.ScheduleHeader, "@at "+time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	forged.Header.Set(jetstream.ScheduleTargetHeader, l.Step("escalate", 3)+".extra")
	if _, err := js.PublishMsg(ctx, forged); err == nil {
		t.Error("a schedule aimed at a subject the stream does not store was stored")
	}
	if _, err := js.Publish(ctx, l.Timer(), []byte("x")); err != nil {
		t.Fatal(err)
	}
	waitRecord(t, js, 1)
	s, err := js.Stream(ctx, topology.StreamLoans)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 1 {
		t.Errorf("the loans stream holds %d messages, the record 1", n)
	}
}
