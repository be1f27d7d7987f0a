package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/opendunning/dunning/pkg/access"
	"github.com/opendunning/dunning/pkg/allinone"
	"github.com/opendunning/dunning/pkg/app"
	"github.com/opendunning/dunning/pkg/bus"
	"github.com/opendunning/dunning/pkg/codec"
	"github.com/opendunning/dunning/pkg/embedded"
	"github.com/opendunning/dunning/pkg/ingest"
	"github.com/opendunning/dunning/pkg/loanlog"
	"github.com/opendunning/dunning/pkg/pipeline"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/topology"
	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"
	"github.com/opendunning/dunning/proto/dunning/v1/dunningv1connect"
	"github.com/opendunning/dunning/test/attack"
)

// client is a TCP connection as one identity, with the errors the server
// reports asynchronously (a refused publish or subscription).
type client struct {
	nc   *nats.Conn
	errs <-chan error
}

func (h *harness) target(loan string) attack.Target {
	return attack.Target{URL: h.srv.ClientURL(), Keys: h.srv.Keyring, Tenant: tenant, Loan: loan}
}

func (h *harness) connectAs(id access.Identity) *client {
	h.t.Helper()
	nc, errs := attack.Connect(h.t, h.target(""), id)
	return &client{nc: nc, errs: errs}
}

// Acceptance 1 (NATS attack matrix, embedded server): no anonymous or
// unknown client; a lender or agency credential reaches nothing of the
// pipeline but its own tenant's intake; each service credential publishes
// no kind it does not own and deletes or purges nothing. Every denial is a
// permissions violation, and the control loans are unchanged afterwards.
// (deploy's TestDeployment runs the same matrix on the cluster started
// from the shipped configuration files.)
func TestNATSAttackMatrix(t *testing.T) {
	t.Parallel()
	h := newHarness(t, time.Second)
	h.startPipeline()
	// Control loans due in a year: nothing of theirs moves during the test.
	controls := []string{"L-ctl-1", "L-ctl-2"}
	for _, l := range controls {
		h.send(dueEvent(l, "1", 100000, time.Now().Add(365*24*time.Hour)))
	}
	before := attack.Take(t, h.log, tenant, controls, 2) // its installment and timer

	n := attack.Run(t, h.target(controls[0]))
	t.Logf("%d attacks", n)

	// The lender's one right works, and answers with the intake stream's ack.
	lender := h.connectAs(access.Lender(tenant))
	ljs, err := jetstream.New(lender.nc)
	if err != nil {
		t.Fatal(err)
	}
	data, err := proto.Marshal(dueEvent("L-lender", "1", 5000, time.Now().Add(365*24*time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	if ack, err := ljs.Publish(context.Background(), topology.IntakeSubject(tenant, "L-lender"), data); err != nil || ack.Stream != topology.StreamIntake {
		t.Errorf("the lender's own intake: %v, %v; want an ack from %s", ack, err, topology.StreamIntake)
	}

	// Afterwards: the control loans exactly as they were, and every stream
	// and consumer still there.
	before.Unchanged(t, h.log, tenant)
	missing, err := h.topo.Missing(context.Background(), h.js, pipeline.Consumers(1))
	if err != nil || len(missing) > 0 {
		t.Errorf("after the attacks: missing %v (%v)", missing, err)
	}
}

// dunningd is an all-in-one process run by a test.
type dunningd struct {
	base, nats string // HTTP base URL, NATS URL
	logs       *lockedBuffer
	stop       func() error
}

// runDunningd starts dunningd on data with its NATS server listening, and
// stops it at cleanup unless the test did.
func runDunningd(t *testing.T, data string, extra ...string) *dunningd {
	t.Helper()
	d := &dunningd{logs: &lockedBuffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	o := allinone.Options()
	o.Log = d.logs
	ready := make(chan string, 1)
	o.Ready = func(a string) { ready <- a }
	done := make(chan error, 1)
	args := append([]string{"--data-dir", data, "--nats-listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--day", "1s", "--fsync", "interval"}, extra...)
	go func() { done <- app.Run(ctx, args, o) }()
	var once sync.Once
	var stopErr error
	d.stop = func() error {
		once.Do(func() {
			cancel()
			stopErr = <-done
		})
		return stopErr
	}
	t.Cleanup(func() {
		if err := d.stop(); err != nil {
			t.Errorf("dunningd: %v", err)
		}
	})
	select {
	case a := <-ready:
		d.base = "http://" + a
		useDevKey(t, d.base, data)
	case err := <-done:
		t.Fatalf("dunningd exited: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("dunningd did not start")
	}
	url := regexp.MustCompile(`listen=(nats://[0-9.:]+)`).FindStringSubmatch(d.logs.String())
	if url == nil {
		t.Fatalf("no NATS address in the log:\n%s", d.logs.String())
	}
	d.nats = url[1]
	return d
}

// Credentials have a life: on a running dunningd, a lender credential
// created in its keyring (what dunctl credentials create does) is admitted
// within seconds, and revoking it closes the lender's connection; no
// restart either way.
func TestCredentialsWithoutRestart(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	d := runDunningd(t, data)
	url, ctx, logs := []string{"", d.nats}, context.Background(), d.logs
	keys := access.Keyring{Dir: filepath.Join(data, "credentials")}
	lender := access.Lender("newbank")
	connect := func() (*nats.Conn, error) {
		auth, err := keys.Option(lender)
		if err != nil {
			return nil, err
		}
		return nats.Connect(url[1], auth, nats.MaxReconnects(0))
	}
	if nc, err := connect(); err == nil {
		nc.Close()
		t.Fatal("a lender with no credential yet connected")
	}
	if _, _, err := keys.Create(lender); err != nil {
		t.Fatal(err)
	}
	var nc *nats.Conn
	waitFor(t, 15*time.Second, func() error {
		var err error
		nc, err = connect()
		return err
	})
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	data2, _ := proto.Marshal(tenantDue("newbank", "L-1", "1", 1000, time.Now().Add(24*time.Hour)))
	if _, err := js.Publish(ctx, topology.IntakeSubject("newbank", "L-1"), data2); err != nil {
		t.Errorf("the new lender's first event: %v", err)
	}
	if err := keys.Revoke(lender, ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, func() error {
		if !nc.IsClosed() && nc.IsConnected() {
			return errors.New("the revoked lender is still connected")
		}
		return nil
	})
	if nc2, err := connect(); err == nil {
		nc2.Close()
		t.Error("a revoked lender connected again")
	}
	if !strings.Contains(logs.String(), "nats credentials reloaded") {
		t.Error("no reload in the log")
	}
}

// Acceptance 1 (what subject permissions cannot stop): a stolen stage
// credential may write its decisions and the loan's timer, and the server
// honours schedule and rollup headers on those subjects. Shown with the
// escalation service's credential: a step forged ahead of its time
// (through a schedule the server fires at once, so it has every header of
// a real step) is dead-lettered and the timer put back, and the loan still escalates on
// time; a rollup that purges the whole live log leaves every message in
// the protected record.
func TestCompromisedStageCredential(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 400*time.Millisecond)
	day := h.day
	h.startPipeline()
	due := time.Now()
	h.send(dueEvent("L-victim", "1", 100000, due))
	h.waitKind("L-victim", policy.KindContactRequested, 1, 10*time.Second)
	ctx := context.Background()
	// The escalation timer follows the first contact (and its release by
	// the gate, whose write may make the stage's timer write read again).
	var timer loanlog.Raw
	waitFor(t, 10*time.Second, func() error {
		m, found, err := h.log.Last(ctx, topology.LoanRef{Tenant: tenant, Loan: "L-victim"}.Timer())
		if err != nil || !found {
			return fmt.Errorf("no escalation timer (%v)", err)
		}
		timer = m
		return nil
	})
	ev, err := codec.DecodeStored(topology.LoanAddress{Tenant: tenant, Loan: "L-victim", Kind: topology.KindTimer}, timer.Header, timer.Data)
	if err != nil {
		t.Fatal(err)
	}
	pending := ev.(policy.TimerSet).Step

	esc := h.connectAs(access.Service("escalation"))
	js, err := jetstream.New(esc.nc)
	if err != nil {
		t.Fatal(err)
	}
	// The credential may not write a step, but it may write the loan's
	// timer: a schedule due at once, aimed at a step subject, with the
	// pending step's own body. The server fires it at once, as a step with
	// every header of a real one, and purges the real timer.
	stepSubject := topology.LoanRef{Tenant: tenant, Loan: "L-victim"}.Step("escalate", 999)
	forged := nats.NewMsg(topology.LoanRef{Tenant: tenant, Loan: "L-victim"}.Timer())
	forged.Data = timer.Data
	forged.Header.Set("Nats-Schedule", "@at "+time.Now().UTC().Format(time.RFC3339Nano))
	forged.Header.Set("Nats-Schedule-Target", stepSubject)
	if _, err := js.PublishMsg(ctx, forged); err != nil {
		t.Fatalf("publishing the forged schedule: %v", err)
	}
	forged.Subject = stepSubject
	waitFor(t, 10*time.Second, func() error {
		for _, m := range h.dlq() {
			if m.Header.Get(bus.HeaderDLQSubject) == forged.Subject && strings.Contains(m.Header.Get(bus.HeaderDLQReason), "before its time") {
				return nil
			}
		}
		return errors.New("the forged step is not dead-lettered")
	})
	if _, esc := h.decision("L-victim", policy.KindEscalated); esc {
		t.Fatal("the forged step escalated the loan early")
	}
	// The timer is back, for the same step, and the loan escalates when it
	// is due, not before.
	waitFor(t, 10*time.Second, func() error {
		m, found, err := h.log.Last(ctx, topology.LoanRef{Tenant: tenant, Loan: "L-victim"}.Timer())
		if err != nil || !found {
			return fmt.Errorf("no timer (%v)", err)
		}
		ev, err := codec.DecodeStored(topology.LoanAddress{Tenant: tenant, Loan: "L-victim", Kind: topology.KindTimer}, m.Header, m.Data)
		if err != nil || !ev.(policy.TimerSet).Step.Same(pending) {
			return fmt.Errorf("timer %v (%v), want %v", ev, err, pending)
		}
		return nil
	})
	h.waitKind("L-victim", policy.KindEscalated, 1, time.Until(pending.At)+10*day)
	if d, _ := h.decision("L-victim", policy.KindEscalated); d.Ctx.DPD < pending.DPD {
		t.Errorf("escalated at DPD %d, before its step's DPD %d", d.Ctx.DPD, pending.DPD)
	}

	// The rollup: one publish on the loan's timer subject, which the
	// credential may write, purges the whole live log...
	s, err := h.js.Stream(ctx, topology.StreamLoans)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	written := info.State.LastSeq
	roll := nats.NewMsg(topology.LoanRef{Tenant: tenant, Loan: "L-victim"}.Timer())
	roll.Data = []byte("wipe")
	roll.Header.Set("Nats-Rollup", "all")
	if _, err := js.PublishMsg(ctx, roll); err != nil {
		t.Fatalf("the rollup: %v", err)
	}
	if info, err = s.Info(ctx); err != nil || info.State.Msgs != 1 {
		t.Fatalf("after the rollup the live log holds %d messages (%v): the attack this test shows did not happen", info.State.Msgs, err)
	}
	// ...and the record still holds every message ever written to it.
	rec, err := h.js.Stream(ctx, topology.StreamRecord)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() error {
		ri, err := rec.Info(ctx)
		if err != nil {
			return err
		}
		if ri.State.Msgs < written {
			return fmt.Errorf("the record holds %d messages, %d were written to the live log", ri.State.Msgs, written)
		}
		return nil
	})
	for _, subj := range []string{topology.LoanRef{Tenant: tenant, Loan: "L-victim"}.Subject(codec.Due.Token, "1"), forged.Subject} {
		if _, err := h.recordHas(subj); err != nil {
			t.Errorf("%s is not in the record: %v", subj, err)
		}
	}
}

// Acceptance 3: the system of record is the admin's to remove, nobody
// else's; a stream removed under running services makes /readyz name it,
// and no service recreates it; a loans stream removed where data existed
// is never replaced by an empty one at the next start.
func TestTopologyRemovedByAdmin(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	d := runDunningd(t, data)
	// Every handler subscribed before anything is removed.
	waitReady(t, d.base)
	keys := access.Keyring{Dir: filepath.Join(data, "credentials")}
	violations := make(chan error, 16)
	connect := func(id access.Identity) (*nats.Conn, jetstream.JetStream) {
		auth, err := keys.Option(id)
		if err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect(d.nats, auth, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if attack.IsPermission(err) {
				violations <- err
			}
		}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return nc, js
	}
	ctx := context.Background()
	// The process's own credential may neither delete nor purge, through
	// the API or with a rollup on a subject it writes.
	svc, svcJS := connect(access.Service("dunningd"))
	for _, s := range []string{topology.StreamLoans, topology.StreamDLQ} {
		for _, api := range []string{"STREAM.DELETE", "STREAM.PURGE"} {
			if err := svc.PublishRequest("$JS.API."+api+"."+s, svc.NewRespInbox(), nil); err != nil {
				t.Fatal(err)
			}
			select {
			case <-violations:
			case <-time.After(3 * time.Second):
				t.Errorf("service-dunningd: %s %s: no permissions violation", api, s)
			}
		}
	}
	roll := nats.NewMsg(topology.DLQSubject("intake"))
	roll.Header.Set("Nats-Rollup", "all")
	if _, err := svcJS.PublishMsg(ctx, roll); err == nil || !strings.Contains(err.Error(), "rollup") {
		t.Errorf("a rollup on the dead-letter stream: %v, want it refused", err)
	}
	_, admin := connect(access.Admin)
	for _, s := range topology.DefaultTopology().Streams() {
		if _, err := admin.Stream(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}

	// The admin removes the dead letters and the loans: /readyz names both.
	for _, s := range []string{topology.StreamDLQ, topology.StreamLoans} {
		if err := admin.DeleteStream(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	readyz := func() (int, string) {
		resp, err := http.Get(d.base + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := readyz()
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "stream "+topology.StreamLoans) || !strings.Contains(body, "stream "+topology.StreamDLQ) {
		t.Errorf("/readyz = %d %s, want 503 naming both streams", code, body)
	}
	// Nothing recreates them while the process runs (a second of its
	// checks and handlers).
	time.Sleep(time.Second)
	for _, s := range []string{topology.StreamDLQ, topology.StreamLoans} {
		if _, err := admin.Stream(ctx, s); !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("%s after a second: %v, want still missing", s, err)
		}
	}
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	// Started again on the same data: it refuses to stand an empty loans
	// stream in for the deleted one.
	o := allinone.Options()
	o.Log = io.Discard
	err := app.Run(ctx, []string{"--data-dir", data, "--nats-listen", "none", "--http", "127.0.0.1:0", "--fsync", "interval"}, o)
	if !errors.Is(err, topology.ErrLoansMissing) {
		t.Errorf("restart without the loans stream: %v, want ErrLoansMissing", err)
	}
}

// A data directory written before the pipeline had NATS accounts keeps its
// streams in the global account: dunningd adopts them into DUNNING on its
// next start, and the loan is still there.
func TestDataFromBeforeAccounts(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	old, err := embedded.StartOptions(&server.Options{JetStream: true, StoreDir: data, DontListen: true, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect("", nats.InProcessServer(old.Server))
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	topo := topology.DefaultTopology()
	for _, sc := range topo.StreamConfigs() {
		if sc.Name == topology.StreamRecord {
			continue // older versions had no record
		}
		if _, err := js.CreateStream(ctx, sc); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := proto.Marshal(dueEvent("L-old", "1", 5000, time.Now().Add(24*time.Hour)).GetInstallmentDue())
	if _, err := loanlog.New(nc, js).AppendLender(ctx, topology.LoanRef{Tenant: tenant, Loan: "L-old"}.Subject(codec.Due.Token, "1"), b, ""); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	old.Shutdown()

	d := runDunningd(t, data)
	if !strings.Contains(d.logs.String(), "moved the pipeline's streams from the global account") {
		t.Error("no word of the move in the log")
	}
	resp, err := http.Get(d.base + "/v1/tenants/" + tenant + "/loans/L-old/timeline")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "installment_due") {
		t.Errorf("the old loan's timeline: %d %s", resp.StatusCode, body)
	}
}

// Acceptance 5 (volume): no loan is frozen by what is written to it. A
// flood of 1,030 outcomes for made-up contacts is refused at intake (an
// outcome must name a contact the pipeline made for the loan, so outcomes
// are bounded per contact); and a log grown past the 1,024 subjects one
// multi_last read returns (here 1,100 outcomes written straight into it
// with the gateway's credential, past intake) is read in pages: the
// loan's real repayment still cures it.
func TestVolumeNeverFreezesALoan(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 500*time.Millisecond)
	h.startPipeline()
	h.send(dueEvent("L-flood", "1", 1000, time.Now()))
	h.waitKind("L-flood", policy.KindContactRequested, 1, 10*time.Second)

	const flood = 1030
	lender := h.connectAs(access.Lender(tenant))
	ljs, err := jetstream.New(lender.nc)
	if err != nil {
		t.Fatal(err)
	}
	for i := range flood {
		body := fmt.Sprintf(`{"contactOutcome": {"tenantId": %q, "loanId": "L-flood", "contactId": "made-up-%d", "outcome": "OUTCOME_DELIVERED", "occurredAt": %q}}`,
			tenant, i, time.Now().UTC().Format(time.RFC3339))
		m := nats.NewMsg(topology.IntakeSubject(tenant, "L-flood"))
		m.Data = []byte(body)
		m.Header.Set("Content-Type", "application/json")
		if _, err := ljs.PublishMsgAsync(m); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-ljs.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("the flood was not acknowledged")
	}
	waitFor(t, 60*time.Second, func() error {
		n := 0
		for _, m := range h.dlq() {
			if strings.Contains(m.Header.Get(bus.HeaderDLQReason), "names no contact") {
				n++
			}
		}
		if n < flood {
			return fmt.Errorf("%d of %d made-up outcomes refused", n, flood)
		}
		return nil
	})
	if n := counts(h.entries("L-flood"))["outcome"]; n != 0 {
		t.Errorf("%d made-up outcomes recorded", n)
	}

	// Past intake: 1,100 outcome entries written into the log.
	gw := h.connectAs(access.Service("gateway"))
	gjs, err := jetstream.New(gw.nc)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1100 {
		o := &dunningv1.ContactOutcome{TenantId: tenant, LoanId: "L-flood", ContactId: fmt.Sprintf("w%d", i),
			Outcome: dunningv1.Outcome_OUTCOME_DELIVERED, OccurredAt: timestamppb.Now()}
		b, _ := proto.Marshal(o)
		if _, err := gjs.PublishAsync(topology.LoanRef{Tenant: tenant, Loan: "L-flood"}.Subject(codec.Outcome.Token, fmt.Sprintf("w%d_delivered", i)), b); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-gjs.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("the written outcomes were not acknowledged")
	}
	if n := len(h.entries("L-flood")); n < 1100 {
		t.Fatalf("the log reads %d entries, want more than 1,100", n)
	}
	h.send(payEvent("L-flood", "p-real", 1000))
	h.waitKind("L-flood", policy.KindCaseClosed, 1, 20*time.Second)
	if d, _ := h.decision("L-flood", policy.KindCaseClosed); d.CloseReason != policy.CloseCured {
		t.Errorf("closed as %s, want cured", d.CloseReason)
	}
}

// With --metrics-http, /metrics is served on that address only: the API's
// address, which lenders reach, answers 404 for it.
func TestMetricsOnTheirOwnAddress(t *testing.T) {
	t.Parallel()
	d := runDunningd(t, t.TempDir(), "--metrics-http", "127.0.0.1:0")
	m := regexp.MustCompile(`msg="serving metrics" \S+ http=(127\.0\.0\.1:\d+)`).FindStringSubmatch(d.logs.String())
	if m == nil {
		t.Fatalf("no metrics address in the log:\n%s", d.logs.String())
	}
	get := func(url string) (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("http://" + m[1] + "/metrics"); code != http.StatusOK || !strings.Contains(body, "dunning_overpayments_total") {
		t.Errorf("/metrics on its own address: %d, want 200 with the pipeline's metrics", code)
	}
	if code, _ := get(d.base + "/metrics"); code != http.StatusNotFound {
		t.Errorf("/metrics on the API's address: %d, want 404", code)
	}
	if code, _ := get("http://" + m[1] + "/v1/tenants/acme/loans/L-1/timeline"); code != http.StatusNotFound {
		t.Errorf("the API on the metrics address: %d, want 404", code)
	}
	if code, _ := get(d.base + "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d", code)
	}
}

// The lender API over gRPC on dunningd's own HTTP address (HTTP/2 in the
// clear, as a lender's back end inside its network calls it): the dev
// key records an event; no key is Unauthenticated.
func TestLenderServiceOverGRPC(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	d := runDunningd(t, data)
	key := useDevKey(t, d.base, data)
	h2 := &http.Client{Transport: &http.Transport{Protocols: new(http.Protocols)}}
	h2.Transport.(*http.Transport).Protocols.SetUnencryptedHTTP2(true)
	client := dunningv1connect.NewLenderServiceClient(h2, d.base, connect.WithGRPC())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req := connect.NewRequest(&dunningv1.SubmitEventRequest{Event: dueEvent("L-grpc", "1", 120000, time.Now().Add(time.Hour))})
	if _, err := client.SubmitEvent(ctx, req); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("without a key: %v, want unauthenticated", err)
	}
	req.Header().Set("Authorization", "Bearer "+key)
	res, err := client.SubmitEvent(ctx, req)
	if err != nil {
		t.Fatalf("SubmitEvent over gRPC: %v", err)
	}
	if res.Msg.Sequence == 0 || !strings.HasPrefix(res.Header().Get("Content-Type"), "application/grpc") {
		t.Errorf("SubmitEvent = %v (Content-Type %q), want a gRPC answer with the entry's sequence", res.Msg, res.Header().Get("Content-Type"))
	}
}

// A lender publishing over NATS learns why intake refused an event, with
// its own credential only: live on dunning.rejected.<tenant>.<loan>, and
// afterwards as that loan's latest (a direct get). The notice names the
// publish (its PubAck's intake sequence) and the field, never the value;
// another tenant's lender can neither listen nor read it.
func TestLenderLearnsWhyOverNATS(t *testing.T) {
	t.Parallel()
	h := newHarness(t, time.Second)
	h.startPipeline()
	lender := h.connectAs(access.Lender(tenant))
	live, err := lender.nc.SubscribeSync(topology.RejectionSubject(tenant, "*"))
	if err != nil {
		t.Fatal(err)
	}
	if err := lender.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	ljs, err := jetstream.New(lender.nc)
	if err != nil {
		t.Fatal(err)
	}
	bad := dueEvent("L-why", "1", 5000, time.Now())
	bad.GetInstallmentDue().Amount.Currency = "yuan"
	data, err := proto.Marshal(bad)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ack, err := ljs.Publish(ctx, topology.IntakeSubject(tenant, "L-why"), data)
	if err != nil {
		t.Fatal(err)
	}
	check := func(how string, body []byte) {
		t.Helper()
		var r ingest.Rejection
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatalf("%s: %v in %s", how, err, body)
		}
		if r.IntakeSeq != ack.Sequence || r.Tenant != tenant || r.Loan != "L-why" || r.Field != "installment_due.amount.currency" ||
			!strings.Contains(r.Reason, "ISO 4217") || strings.Contains(string(body), "yuan") {
			t.Errorf("%s: %s; want intake sequence %d, the field and why, without the value", how, body, ack.Sequence)
		}
	}
	m, err := live.NextMsg(15 * time.Second)
	if err != nil {
		t.Fatalf("no live rejection: %v", err)
	}
	check("live", m.Data)
	// The live copy can arrive a moment before the stream has stored it
	// (the server delivers to subscribers and stores concurrently): ask
	// until it is there.
	var reply *nats.Msg
	waitFor(t, 5*time.Second, func() error {
		reply, err = lender.nc.Request(access.RejectionGet(tenant, "L-why"), nil, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if len(reply.Data) == 0 {
			return fmt.Errorf("the loan's latest: an empty reply, headers %v", reply.Header)
		}
		return nil
	})
	check("the loan's latest", reply.Data)

	// Another tenant's lender: neither live nor by request.
	attack.Denied(t, h.target(""), access.Lender("globex"), "listen to another tenant's rejections", attack.Subscribe(topology.RejectionSubject(tenant, "*")))
	attack.Denied(t, h.target(""), access.Lender("globex"), "read another tenant's rejection", attack.Request(access.RejectionGet(tenant, "L-why")))
}

// A stream an older release provisioned without direct gets (the intake,
// which the release gate reads) is named by the check every service runs at
// start and in /readyz, until dunctl provision updates it.
func TestStaleStreamNamedUntilProvisioned(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 100*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := h.js.Stream(ctx, topology.StreamIntake)
	if err != nil {
		t.Fatal(err)
	}
	old := s.CachedInfo().Config
	old.AllowDirect = false
	if _, err := h.js.UpdateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	stale, err := h.topo.Stale(ctx, h.js)
	if err != nil {
		t.Fatal(err)
	}
	if len(stale) != 1 || !strings.Contains(stale[0], topology.StreamIntake) || !strings.Contains(stale[0], "dunctl provision") {
		t.Fatalf("Stale = %q, want the intake stream named, and what to run", stale)
	}
	if err := h.topo.Provision(ctx, h.js, pipeline.Consumers(1)); err != nil {
		t.Fatal(err)
	}
	if stale, err := h.topo.Stale(ctx, h.js); err != nil || len(stale) != 0 {
		t.Fatalf("after provisioning: Stale = %q, %v; want none", stale, err)
	}
}
