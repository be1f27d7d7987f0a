package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opendunning/dunning/pkg/allinone"
	"github.com/opendunning/dunning/pkg/app"
	"github.com/opendunning/dunning/pkg/notify"
)

type hookCall struct {
	key, sig, ts string
	body         []byte
	status       int
}

// Issue 3, acceptance 7: contact tasks delivered to a real local webhook:
// the signature verifies; a receiver that fails twice then succeeds gets the
// task once, always under the same idempotency key; the vendor's outcome
// flows back into the case timeline.
func TestWebhookDelivery(t *testing.T) {
	t.Parallel()
	secret := "test-secret-0123456789abcdef"
	var mu sync.Mutex
	var calls []hookCall
	failures := map[string]int{}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		c := hookCall{key: r.Header.Get(notify.HeaderIdempotencyKey), sig: r.Header.Get(notify.HeaderSignature),
			ts: r.Header.Get(notify.HeaderTimestamp), body: body, status: http.StatusOK}
		if failures[c.key] < 2 {
			failures[c.key]++
			c.status = http.StatusServiceUnavailable
		}
		calls = append(calls, c)
		w.WriteHeader(c.status)
	}))
	t.Cleanup(hook.Close)
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The shipped policy releases a contact only inside the borrower's
	// window (cn: 08:00-22:00) and the notifier never delivers after it
	// closes. With 20 s days the window lasts some 11 s, room for the
	// receiver's two failures and the retries; the installment fell due a
	// day and 9 hours ago, so the first contact is decided at 09:00 local
	// on DPD 1, inside the window, and released at once or at its slot.
	day := 20 * time.Second
	base := startDunningd(t, "--webhooks", "sms="+hook.URL, "--webhook-secret-file", secretFile, "--data-dir", filepath.Join(dir, "data"),
		"--day", day.String())

	post := func(body string) int {
		resp, err := http.Post(base+"/v1/events", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	due := time.Now().Add(-day - 9*day/24).UTC().Format(time.RFC3339Nano)
	if code := post(`{"installmentDue": {"tenantId": "acme", "loanId": "L-hook", "installmentId": "1",
		"amount": {"currency": "CNY", "minorUnits": "88000"}, "dueAt": "` + due + `", "timeZone": "Asia/Shanghai", "contactRef": "crm-9"}}`); code != 202 {
		t.Fatalf("installment: %d", code)
	}
	var ok []hookCall
	waitFor(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		ok = nil
		for _, c := range calls {
			if c.status == http.StatusOK {
				ok = append(ok, c)
			}
		}
		if len(ok) == 0 {
			return fmt.Errorf("%d webhook calls, none succeeded yet", len(calls))
		}
		return nil
	})
	mu.Lock()
	seen := slices.Clone(calls)
	mu.Unlock()
	var delivery struct {
		TenantID string `json:"tenantId"`
		LoanID   string `json:"loanId"`
		Text     string `json:"text"`
		Task     struct {
			ContactID string `json:"contactId"`
			Channel   string `json:"channel"`
			Reference string `json:"reference"`
		} `json:"task"`
	}
	if err := json.Unmarshal(ok[0].body, &delivery); err != nil {
		t.Fatal(err)
	}
	wantKey := "acme/L-hook/" + delivery.Task.ContactID
	for i, c := range seen {
		if c.key != wantKey {
			t.Errorf("call %d idempotency key %q, want %q", i, c.key, wantKey)
		}
		if !notify.Verify([]byte(secret), c.ts, c.body, c.sig) {
			t.Errorf("call %d: signature %q does not verify", i, c.sig)
		}
		if notify.Verify([]byte("wrong-secret-0123456789"), c.ts, c.body, c.sig) {
			t.Errorf("call %d: signature verifies under another key", i)
		}
	}
	if len(ok) != 1 || delivery.Task.Channel != "CHANNEL_SMS" || delivery.Task.Reference == "" ||
		!strings.Contains(delivery.Text, "880.00 CNY") || !strings.Contains(delivery.Text, delivery.Task.Reference) {
		t.Errorf("delivered %d times: %+v", len(ok), delivery)
	}

	// The vendor reports the outcome; it lands in the timeline.
	if code := post(`{"contactOutcome": {"tenantId": "acme", "loanId": "L-hook", "contactId": "` + delivery.Task.ContactID +
		`", "outcome": "OUTCOME_DELIVERED", "occurredAt": "` + time.Now().UTC().Format(time.RFC3339) + `", "detail": "dlr-ok"}}`); code != 202 {
		t.Fatalf("outcome: %d", code)
	}
	if code := post(`{"contactOutcome": {"tenantId": "acme", "loanId": "L-hook", "contactId": "x", "outcome": "OUTCOME_UNSPECIFIED", "occurredAt": "2026-01-01T00:00:00Z"}}`); code != 400 {
		t.Errorf("outcome without a value: %d, want 400", code)
	}
	waitFor(t, 5*time.Second, func() error {
		resp, err := http.Get(base + "/v1/tenants/acme/loans/L-hook/timeline")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(b), `"kind": "contact_outcome"`) || !strings.Contains(string(b), "delivered dlr-ok") {
			return fmt.Errorf("timeline has no outcome: %s", b)
		}
		return nil
	})
	// Counted once the outcome has gone through the pipeline: a call after
	// the success (a retry of a delivered task) would have arrived by now.
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 3 {
		t.Errorf("webhook called %d times, want 3 (two failures, one success)", len(calls))
	}
}

// startDunningd runs the all-in-one process with extra flags and returns its base URL.
func startDunningd(t *testing.T, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrCh := make(chan string, 1)
	done := make(chan error, 1)
	data := ""
	for i, a := range extra {
		if a == "--data-dir" && i+1 < len(extra) {
			data = extra[i+1]
		}
	}
	if data == "" {
		data = t.TempDir()
		extra = append(extra, "--data-dir", data)
	}
	args := append([]string{"--nats-listen", "none", "--http", "127.0.0.1:0", "--day", "100ms", "--log-level", "error"}, extra...)
	o := allinone.Options()
	o.Ready = func(a string) { addrCh <- a }
	go func() { done <- app.Run(ctx, args, o) }()
	select {
	case a := <-addrCh:
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("dunningd: %v", err)
			}
		})
		useDevKey(t, "http://"+a, data)
		return "http://" + a
	case err := <-done:
		cancel()
		t.Fatalf("dunningd exited: %v", err)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("dunningd did not start")
	}
	return ""
}
