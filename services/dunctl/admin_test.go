package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/opendunning/dunning/pkg/access"
	"github.com/opendunning/dunning/pkg/bus"
	"github.com/opendunning/dunning/pkg/embedded"
	"github.com/opendunning/dunning/pkg/natstest"
	"github.com/opendunning/dunning/pkg/pipeline"
	"github.com/opendunning/dunning/pkg/topology"
	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"
)

// dunctl provision creates the topology as the admin; dunctl status shows
// it with each consumer's lag, and names what is missing (exit 1); dunctl
// deadletters list shows why messages were set aside.
func TestProvisionAndStatus(t *testing.T) {
	srv := natstest.Server(t, embedded.Config{})
	seed := srv.Keyring.SeedFile(access.Admin)
	flags := []string{"--nats", srv.ClientURL(), "--nats-seed", seed}
	var out, errOut bytes.Buffer
	if code := run(append([]string{"provision", "--replicas", "1"}, flags...), &out, &errOut); code != 0 {
		t.Fatalf("provision = %d: %s", code, errOut.String())
	}
	// Something for the intake consumer to be behind on.
	_, js := natstest.Connect(t, srv, "status-test")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 3 {
		if _, err := js.Publish(ctx, topology.IntakeSubject("acme", "L-1"), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	// A consumer's pending count follows the stream's writes a moment
	// later on a busy machine: read the status until it does.
	natstest.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		out.Reset()
		if code := run(append([]string{"status"}, flags...), &out, &errOut); code != 0 {
			t.Fatalf("status = %d: %s", code, errOut.String())
		}
		if !regexpMatch(`(?m)^intake\s+DUNNING_INTAKE\s+3\s`, out.String()) {
			return fmt.Errorf("status does not show intake 3 behind:\n%s", out.String())
		}
		return nil
	})
	for _, c := range pipeline.Consumers(1) {
		if !strings.Contains(out.String(), c.Name) {
			t.Errorf("status lacks consumer %s:\n%s", c.Name, out.String())
		}
	}
	// Dead letters, newest first, filtered by consumer, with their reason.
	for i, c := range []string{"intake", "escalation", "intake"} {
		m := nats.NewMsg(topology.DLQSubject(c))
		m.Data = []byte("the original body " + c)
		m.Header.Set(bus.HeaderDLQConsumer, c)
		m.Header.Set(bus.HeaderDLQClass, "permanent")
		m.Header.Set(bus.HeaderDLQSubject, topology.IntakeSubject("acme", "L-1"))
		m.Header.Set(bus.HeaderDLQReason, fmt.Sprintf("reason %d", i))
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	out.Reset()
	if code := run(append([]string{"deadletters", "list", "--consumer", "intake"}, flags...), &out, &errOut); code != 0 {
		t.Fatalf("deadletters list = %d: %s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "reason 2") || !strings.Contains(lines[2], "reason 0") || strings.Contains(out.String(), "original body") {
		t.Errorf("deadletters list --consumer intake:\n%s\nwant the two intake dead letters, newest first, without their bodies", out.String())
	}
	if err := js.DeleteStream(ctx, topology.StreamDLQ); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := run(append([]string{"status"}, flags...), &out, &errOut); code != 1 || !regexpMatch(`DUNNING_DLQ\s+MISSING`, out.String()) {
		t.Errorf("status with the dead letters deleted = %d:\n%s", code, out.String())
	}
	// A wrong credential is refused with the server's word for it.
	errOut.Reset()
	if code := run([]string{"status", "--nats", srv.ClientURL(), "--nats-seed", "/nonexistent.nk"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "nonexistent.nk") {
		t.Errorf("status with a missing seed = %d: %s", code, errOut.String())
	}
}

func regexpMatch(pattern, s string) bool { return regexp.MustCompile(pattern).MatchString(s) }

// dunctl credentials tls makes the CA once and a certificate per node; an
// admin command given a CA file that is not one fails naming --nats-ca.
func TestCredentialsTLS(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	if code := run([]string{"credentials", "tls", "--dir", dir, "n1", "n2"}, &out, &errOut); code != 0 {
		t.Fatalf("credentials tls = %d: %s", code, errOut.String())
	}
	k := access.Keyring{Dir: dir}
	for _, want := range []string{k.TLS("n1").Cert, k.TLS("n2").Key, k.CAFile()} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %s:\n%s", want, out.String())
		}
	}
	out.Reset()
	if code := run([]string{"credentials", "tls", "--dir", dir, "n1"}, &out, &errOut); code != 0 || strings.Contains(out.String(), "n1:") {
		t.Errorf("second run = %d, issued again without --renew:\n%s", code, out.String())
	}
	if code := run([]string{"credentials", "tls", "--dir", dir}, &out, &errOut); code != 2 {
		t.Errorf("no node named = %d, want 2", code)
	}
	errOut.Reset()
	if code := run([]string{"status", "--nats-ca", k.TLS("n1").Key, "--nats-seed", "nope.nk"}, &out, &errOut); code != 1 {
		t.Errorf("status with a bad seed and CA = %d, want 1", code)
	}
	seed := filepath.Join(dir, "admin.nk")
	if _, _, err := k.Create(access.Admin); err != nil {
		t.Fatal(err)
	}
	errOut.Reset()
	if code := run([]string{"status", "--nats-ca", k.TLS("n1").Key, "--nats-seed", seed}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "--nats-ca") {
		t.Errorf("status with a key as CA = %d: %s; want 1 naming --nats-ca", code, errOut.String())
	}
}

// An intake dead letter is inspected (its body only when asked) and
// replayed to its intake subject once, recorded on the audit stream with
// the provisioning; a stage's dead letter is not replayed.
func TestDeadLetterReplayAndAudit(t *testing.T) {
	srv := natstest.Server(t, embedded.Config{})
	flags := []string{"--nats", srv.ClientURL(), "--nats-seed", srv.Keyring.SeedFile(access.Admin)}
	var out, errOut bytes.Buffer
	if code := run(append([]string{"provision", "--replicas", "1"}, flags...), &out, &errOut); code != 0 {
		t.Fatalf("provision = %d: %s", code, errOut.String())
	}
	_, js := natstest.Connect(t, srv, "replay-test")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	event, err := proto.Marshal(&dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_LoanSettled{LoanSettled: &dunningv1.LoanSettled{TenantId: "acme", LoanId: "L-7"}}})
	if err != nil {
		t.Fatal(err)
	}
	deadLetter := func(consumer, subject string, body []byte) uint64 {
		m := nats.NewMsg(topology.DLQSubject(consumer))
		m.Data = body
		m.Header.Set(bus.HeaderDLQConsumer, consumer)
		m.Header.Set(bus.HeaderDLQClass, "permanent")
		m.Header.Set(bus.HeaderDLQSubject, subject)
		m.Header.Set(bus.HeaderDLQReason, "loan_settled: no installment recorded yet")
		ack, err := js.PublishMsg(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	intakeDL := deadLetter("intake", storedIntake("acme", "L-7"), event)
	stageDL := deadLetter("escalation", topology.LoanRef{Tenant: "acme", Loan: "L-7"}.Decision("escalated", 3), []byte("x"))
	// A lender's JSON event keeps its Content-Type through the replay.
	jsonEvent := []byte(`{"loanSettled": {"tenantId": "acme", "loanId": "L-8"}}`)
	jm := nats.NewMsg(topology.DLQSubject("intake"))
	jm.Data = jsonEvent
	jm.Header.Set(bus.HeaderDLQConsumer, "intake")
	jm.Header.Set(bus.HeaderDLQSubject, storedIntake("acme", "L-8"))
	jm.Header.Set(bus.OrigHeader("Content-Type"), "application/json")
	jack, err := js.PublishMsg(ctx, jm)
	if err != nil {
		t.Fatal(err)
	}
	// A message dressed as intake's on another consumer's dead-letter
	// subject (what a compromised other service could write).
	forged := nats.NewMsg(topology.DLQSubject("notify"))
	forged.Data = event
	forged.Header.Set(bus.HeaderDLQConsumer, "intake")
	forged.Header.Set(bus.HeaderDLQSubject, storedIntake("victim", "L-7"))
	fack, err := js.PublishMsg(ctx, forged)
	if err != nil {
		t.Fatal(err)
	}
	dl := func(args ...string) (int, string, string) {
		out.Reset()
		errOut.Reset()
		code := run(append(append([]string{"deadletters"}, args[:len(args)-1]...), append(flags, args[len(args)-1])...), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	n := strconv.FormatUint(intakeDL, 10)
	if code, o, e := dl("inspect", n); code != 0 || !strings.Contains(o, "no installment recorded yet") || strings.Contains(o, "L-7\"") {
		t.Errorf("inspect = %d:\n%s%s\nwant the headers without the body", code, o, e)
	}
	// protojson varies its whitespace on purpose: match around it.
	if code, o, e := dl("inspect", "--body", n); code != 0 || !regexpMatch(`"loanId":\s+"L-7"`, o) {
		t.Errorf("inspect --body = %d:\n%s%s\nwant the lender event as JSON", code, o, e)
	}
	if code, o, e := dl("replay", n); code != 0 || !strings.Contains(o, "replayed to dunning.in.0.acme.L-7") {
		t.Fatalf("replay = %d:\n%s%s", code, o, e)
	}
	if code, o, e := dl("replay", n); code != 0 || !strings.Contains(o, "not sent again") {
		t.Errorf("replay again = %d:\n%s%s\nwant it deduplicated", code, o, e)
	}
	intake, err := js.Stream(ctx, topology.StreamIntake)
	if err != nil {
		t.Fatal(err)
	}
	m, err := intake.GetLastMsgForSubject(ctx, storedIntake("acme", "L-7"))
	if err != nil || !bytes.Equal(m.Data, event) {
		t.Fatalf("intake holds %v (%v), want the replayed event", m, err)
	}
	if code, o, e := dl("replay", strconv.FormatUint(jack.Sequence, 10)); code != 0 {
		t.Fatalf("replaying a JSON event = %d:\n%s%s", code, o, e)
	}
	jsonReplay, err := intake.GetLastMsgForSubject(ctx, storedIntake("acme", "L-8"))
	if err != nil || !bytes.Equal(jsonReplay.Data, jsonEvent) || jsonReplay.Header.Get("Content-Type") != "application/json" {
		t.Errorf("the JSON replay: %v (%v), want the body with Content-Type application/json", jsonReplay, err)
	}
	if code, _, e := dl("replay", strconv.FormatUint(fack.Sequence, 10)); code != 1 || !strings.Contains(e, "not replayed") {
		t.Errorf("replaying a dead letter stored on another consumer's subject = %d: %s", code, e)
	}
	if info, _ := intake.Info(ctx); info.State.Msgs != 2 {
		t.Errorf("intake holds %d messages, want the two replays", info.State.Msgs)
	}
	if code, _, e := dl("replay", strconv.FormatUint(stageDL, 10)); code != 1 || !strings.Contains(e, "only intake's dead letters") {
		t.Errorf("replaying a stage's dead letter = %d: %s", code, e)
	}
	if code, _, e := dl("replay", "999"); code != 1 || !strings.Contains(e, "no dead letter 999") {
		t.Errorf("replaying a missing dead letter = %d: %s", code, e)
	}

	// The audit: provisioning and both replays, newest first, who and where.
	out.Reset()
	if code := run(append([]string{"audit", "list"}, flags...), &out, &errOut); code != 0 {
		t.Fatalf("audit list = %d: %s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 || !strings.Contains(lines[1], "deadletter_replay") || !strings.Contains(lines[1], "dlq_seq="+n) ||
		!strings.Contains(lines[3], "provision") || !strings.Contains(lines[3], "replicas=1") || !strings.Contains(lines[0], "@") {
		t.Errorf("audit list:\n%s\nwant the three replays and the provisioning, newest first, with user@host", out.String())
	}
}

// storedIntake is where the server stores a lender's event for a loan (one
// partition here): the subject a dead letter of intake names.
func storedIntake(tenant, loan string) string {
	return topology.Partitions(1).Loan(tenant, loan).Intake()
}
