package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/opendunning/dunning/pkg/access"
	"github.com/opendunning/dunning/pkg/allinone"
	"github.com/opendunning/dunning/pkg/app"
	"github.com/opendunning/dunning/pkg/topology"
)

// lockedBuffer is a log destination tests can read while the process writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Personal data in any field of a lender event is refused by the field's
// name, over HTTP and over NATS, and the value appears nowhere the pipeline
// keeps or shows: not in its log (at debug level), not in a dead letter's
// headers, not in any stored subject, not in /metrics.
func TestPersonalDataGoesNowhere(t *testing.T) {
	t.Parallel()
	logs := &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	o := allinone.Options()
	o.Log = logs
	addr := make(chan string, 1)
	o.Ready = func(a string) { addr <- a }
	done := make(chan error, 1)
	// The lender publishes with its own credential; the test reads the
	// streams as admin (dunningd creates the admin's on its first start).
	data := t.TempDir()
	keys := access.Keyring{Dir: filepath.Join(data, "credentials")}
	if _, _, err := keys.Create(access.Lender("acme")); err != nil {
		t.Fatal(err)
	}
	go func() {
		done <- app.Run(ctx, []string{"--data-dir", data, "--nats-listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
			"--day", "1s", "--log-level", "debug", "--fsync", "interval"}, o)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dunningd: %v", err)
		}
	})
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
		useDevKey(t, base, data)
	case err := <-done:
		t.Fatalf("dunningd exited: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("dunningd did not start")
	}
	url := regexp.MustCompile(`listen=(nats://[0-9.:]+)`).FindStringSubmatch(logs.String())
	if url == nil {
		t.Fatalf("no NATS address in the log:\n%s", logs.String())
	}
	connect := func(id access.Identity) jetstream.JetStream {
		auth, err := keys.Option(id)
		if err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect(url[1], auth)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
	lender, js := connect(access.Lender("acme")), connect(access.Admin)

	values := []string{"11010519491231002X", "8613812345678", "wang.fang@example.com", "Wang Fang"}
	due := func(field, v string) string {
		f := map[string]string{"tenantId": "acme", "loanId": "L-pii", "installmentId": "1", "contactRef": "crm-1", "productId": "p1"}
		f[field] = v
		return fmt.Sprintf(`{"installmentDue": {"tenantId": %q, "loanId": %q, "installmentId": %q, "productId": %q,
			"amount": {"currency": "CNY", "minorUnits": "1000"}, "dueAt": %q, "timeZone": "Asia/Shanghai", "contactRef": %q}}`,
			f["tenantId"], f["loanId"], f["installmentId"], f["productId"], time.Now().UTC().Format(time.RFC3339), f["contactRef"])
	}
	pay := func(field, v string) string {
		f := map[string]string{"paymentId": "p-1", "installmentId": "1"}
		f[field] = v
		return fmt.Sprintf(`{"repaymentReceived": {"tenantId": "acme", "loanId": "L-pii", "paymentId": %q, "installmentId": %q,
			"amount": {"currency": "CNY", "minorUnits": "100"}, "paidAt": %q}}`, f["paymentId"], f["installmentId"], time.Now().UTC().Format(time.RFC3339))
	}
	outcome := func(field, v string) string {
		return fmt.Sprintf(`{"contactOutcome": {"tenantId": "acme", "loanId": "L-pii", "contactId": %q, "outcome": "OUTCOME_SENT", "occurredAt": %q}}`,
			v, time.Now().UTC().Format(time.RFC3339))
	}
	cases := []struct {
		body  func(field, v string) string
		field string
		want  string
	}{
		{due, "tenantId", "installment_due.tenant_id"},
		{due, "loanId", "installment_due.loan_id"},
		{due, "installmentId", "installment_due.installment_id"},
		{due, "productId", "installment_due.product_id"},
		{due, "contactRef", "installment_due.contact_ref"},
		{pay, "paymentId", "repayment_received.payment_id"},
		{pay, "installmentId", "repayment_received.installment_id"},
		{outcome, "contactId", "contact_outcome.contact_id"},
	}
	published := 0
	for _, c := range cases {
		for _, v := range values {
			body := c.body(c.field, v)
			resp, err := http.Post(base+"/v1/events", "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			var out struct{ Error, Field string }
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			_ = json.Unmarshal(b, &out)
			if resp.StatusCode != http.StatusBadRequest || out.Field != c.want {
				t.Errorf("%s = %q over HTTP: %d %s, want 400 naming %s", c.field, v, resp.StatusCode, b, c.want)
			}
			if bytes.Contains(b, []byte(v)) {
				t.Errorf("%s = %q: the HTTP answer repeats the value: %s", c.field, v, b)
			}
			m := nats.NewMsg(topology.IntakeSubject("acme", "L-pii"))
			m.Data = []byte(body)
			m.Header.Set("Content-Type", "application/json")
			if _, err := lender.PublishMsg(ctx, m); err != nil {
				t.Fatal(err)
			}
			published++
		}
	}
	// Every refusal dead-lettered, and told to the lender (the rejections
	// stream keeps a loan's latest 16: its last sequence counts them all).
	dlq := storedOnce(t, js, topology.StreamDLQ, published)
	rejections := storedOnce(t, js, topology.StreamRejections, published)

	// Everywhere the pipeline keeps or shows something.
	var kept strings.Builder
	kept.WriteString(logs.String())
	for _, m := range rejections {
		kept.Write(m.Data)
		kept.WriteString("\n")
	}
	for _, m := range dlq {
		for k, vs := range m.Header {
			fmt.Fprintf(&kept, "%s: %s\n", k, strings.Join(vs, ","))
		}
		kept.WriteString(m.Subject + "\n")
	}
	for _, name := range []string{topology.StreamLoans, topology.StreamIntake, topology.StreamTasks, topology.StreamDLQ, topology.StreamRejections} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(">"))
		if err != nil {
			t.Fatal(err)
		}
		for subj := range info.State.Subjects {
			kept.WriteString(subj + "\n")
		}
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	kept.Write(metrics)
	for _, v := range values {
		if n := strings.Count(kept.String(), v); n != 0 {
			t.Errorf("%q appears %d times in the log, dead-letter headers, rejections, subjects or /metrics", v, n)
		}
	}
	if !strings.Contains(kept.String(), "must be an opaque") {
		t.Error("the dead letters do not say why the events were refused")
	}
}

// storedOnce waits until stream has stored at least n messages (its last
// sequence), then returns those it still holds.
func storedOnce(t *testing.T, js jetstream.JetStream, stream string, n int) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	var out []*jetstream.RawStreamMsg
	waitFor(t, 20*time.Second, func() error {
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if int(info.State.LastSeq) < n {
			return fmt.Errorf("%s: %d stored, want %d", stream, info.State.LastSeq, n)
		}
		out = nil
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
			if m, err := s.GetMsg(ctx, seq); err == nil {
				out = append(out, m)
			}
		}
		return nil
	})
	return out
}
