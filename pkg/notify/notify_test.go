package notify

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"google.golang.org/protobuf/proto"

	"github.com/opendunning/dunning/pkg/bus"
	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"
)

func delivery(t *testing.T, ch dunningv1.Channel) *message.Message {
	t.Helper()
	b, err := proto.Marshal(&dunningv1.Delivery{TenantId: "acme", LoanId: "L-1", CaseNumber: 1,
		Task: &dunningv1.ContactTask{ContactId: "c1-first_contact-d1-sms", Channel: ch, Reference: "ABCDEFGHJK"}, Text: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	return message.NewMessage("1", b)
}

// The webhook's answer decides what becomes of a task: delivered (2xx, or
// 409 for a repeat the receiver already has), retried (5xx, 408, 429, no
// answer) or dead-lettered at once (another 4xx). Every request is signed
// and carries the same idempotency key.
func TestHandleStatuses(t *testing.T) {
	secret := []byte("0123456789abcdef-secret")
	tests := []struct {
		status    int
		wantErr   bool
		permanent bool
	}{
		{http.StatusOK, false, false},
		{http.StatusAccepted, false, false},
		{http.StatusConflict, false, false},
		{http.StatusInternalServerError, true, false},
		{http.StatusServiceUnavailable, true, false},
		{http.StatusTooManyRequests, true, false},
		{http.StatusRequestTimeout, true, false},
		{http.StatusBadRequest, true, true},
		{http.StatusUnauthorized, true, true},
		{http.StatusNotFound, true, true},
	}
	for _, tt := range tests {
		var mu sync.Mutex
		var got *http.Request
		var body []byte
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			got = r
			body, _ = io.ReadAll(r.Body)
			w.WriteHeader(tt.status)
		}))
		n := &Notifier{Webhooks: Webhooks{"sms": srv.URL}, Secret: secret, Client: srv.Client(),
			Now: func() time.Time { return time.Unix(1_800_000_000, 0) }}
		err := n.Handle(delivery(t, dunningv1.Channel_CHANNEL_SMS))
		srv.Close()
		if (err != nil) != tt.wantErr || bus.IsPermanent(err) != tt.permanent {
			t.Errorf("HTTP %d: Handle = %v (permanent %v), want error %v, permanent %v", tt.status, err, bus.IsPermanent(err), tt.wantErr, tt.permanent)
		}
		mu.Lock()
		if got == nil {
			t.Fatalf("HTTP %d: the webhook was not called", tt.status)
		}
		if k := got.Header.Get(HeaderIdempotencyKey); k != "acme/L-1/c1-first_contact-d1-sms" {
			t.Errorf("idempotency key %q", k)
		}
		if ts := got.Header.Get(HeaderTimestamp); ts != "1800000000" || !Verify(secret, ts, body, got.Header.Get(HeaderSignature)) {
			t.Errorf("HTTP %d: the signature does not verify", tt.status)
		}
		mu.Unlock()
	}
}

// A channel without a webhook is left to the lender's own subscriber; an
// undecodable delivery is dead-lettered; an unreachable webhook is retried.
func TestHandleWithoutWebhook(t *testing.T) {
	n := &Notifier{Webhooks: Webhooks{"email": "http://127.0.0.1:1/hook"}, Secret: []byte("0123456789abcdef"),
		Client: &http.Client{Timeout: time.Second}, Now: time.Now}
	if err := n.Handle(delivery(t, dunningv1.Channel_CHANNEL_SMS)); err != nil {
		t.Errorf("Handle(sms without a webhook) = %v, want nil", err)
	}
	if err := n.Handle(message.NewMessage("2", []byte{0xff, 0xff})); !bus.IsPermanent(err) {
		t.Errorf("Handle(garbage) = %v, want a permanent error", err)
	}
	if err := n.Handle(delivery(t, dunningv1.Channel_CHANNEL_EMAIL)); err == nil || bus.IsPermanent(err) {
		t.Errorf("Handle(unreachable webhook) = %v, want a transient error", err)
	}
}

func TestParseWebhooks(t *testing.T) {
	if w, err := ParseWebhooks(" sms=https://a.example/h, email=http://b.example/h "); err != nil || w["sms"] != "https://a.example/h" || w["email"] != "http://b.example/h" {
		t.Errorf("ParseWebhooks = %v, %v", w, err)
	}
	for _, bad := range []string{"fax=https://a", "sms", "sms=ftp://a", "=https://a"} {
		if _, err := ParseWebhooks(bad); err == nil {
			t.Errorf("ParseWebhooks(%q) = nil error", bad)
		}
	}
}
