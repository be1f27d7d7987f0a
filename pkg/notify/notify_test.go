package notify

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

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

// A task's delivery window bounds every try: after not_after (the borrower's
// window closed) or past max_attempts deliveries the webhook is not called
// and the task is dead-lettered with the reason; before not_before it waits.
// The contact-rules issue's acceptance 5: a webhook failing from 21:55 to
// 22:05 (cn) delivers nothing after 22:00.
func TestDeliveryWindow(t *testing.T) {
	shanghai, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}
	at := func(h, m int) time.Time { return time.Date(2026, 12, 2, h, m, 0, 0, shanghai) }
	var mu sync.Mutex
	var calls []time.Time
	now := at(21, 55)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, now)
		if now.Before(at(22, 5)) {
			w.WriteHeader(http.StatusServiceUnavailable) // failing from 21:55 to 22:05
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	n := &Notifier{Webhooks: Webhooks{"sms": srv.URL}, Secret: []byte("0123456789abcdef-secret"), Client: srv.Client(),
		Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }}
	b, err := proto.Marshal(&dunningv1.Delivery{TenantId: "acme", LoanId: "L-1", CaseNumber: 1, Text: "hello",
		Task: &dunningv1.ContactTask{ContactId: "c1-first_contact-d1-sms", Channel: dunningv1.Channel_CHANNEL_SMS,
			NotBefore: timestamppb.New(at(21, 50)), NotAfter: timestamppb.New(at(22, 0)), MaxAttempts: 6}})
	if err != nil {
		t.Fatal(err)
	}
	var last error
	for i, minute := range []int{55, 57, 59, 60, 62, 64, 66} {
		mu.Lock()
		now = at(21, minute)
		mu.Unlock()
		msg := message.NewMessage("1", b)
		msg.Metadata.Set(bus.MetaDelivered, strconv.Itoa(i+1))
		last = n.Handle(msg)
		if minute < 60 && (last == nil || bus.IsPermanent(last)) {
			t.Errorf("at 21:%d: %v, want a retry", minute, last)
		}
		if minute >= 60 && (!errors.Is(last, ErrExpired) || !bus.IsPermanent(last)) {
			t.Errorf("at 22:%02d: %v, want expired and dead-lettered", minute-60, last)
		}
	}
	for _, c := range calls {
		if !c.Before(at(22, 0)) {
			t.Errorf("the webhook was called at %s, after the window closed", c.Format("15:04"))
		}
	}
	if len(calls) != 3 {
		t.Errorf("%d calls, want the 3 before 22:00", len(calls))
	}
	// Attempts: the 7th delivery of a task allowed 6 is not made.
	mu.Lock()
	now = at(21, 51)
	mu.Unlock()
	msg := message.NewMessage("1", b)
	msg.Metadata.Set(bus.MetaDelivered, "7")
	if err := n.Handle(msg); !errors.Is(err, ErrExpired) {
		t.Errorf("7th delivery of 6: %v, want expired", err)
	}
	if len(calls) != 3 {
		t.Errorf("%d calls after the attempts ran out, want still 3", len(calls))
	}
}
