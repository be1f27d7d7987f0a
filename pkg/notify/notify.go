// Package notify delivers contact tasks to the lender's vendors: one webhook
// per channel, the body signed with HMAC-SHA256, an idempotency key that is
// the same on every retry, retries with backoff, and a dead letter after the
// last try.
package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/opendunning/dunning/pkg/bus"
	"github.com/opendunning/dunning/pkg/codec"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/topology"
	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"
)

// Headers of a webhook request.
const (
	HeaderSignature      = "X-Dunning-Signature" // "sha256=" + hex HMAC-SHA256(secret, timestamp + "." + body)
	HeaderTimestamp      = "X-Dunning-Timestamp" // Unix seconds, signed with the body against replays
	HeaderIdempotencyKey = "Idempotency-Key"     // <tenant>/<loan>/<contact id>: the same on every retry
)

// Webhooks maps a channel name (sms, phone, email, app_push, letter) to its URL.
type Webhooks map[string]string

// ParseWebhooks reads "sms=https://...,email=https://..." pairs.
func ParseWebhooks(s string) (Webhooks, error) {
	w := Webhooks{}
	if strings.TrimSpace(s) == "" {
		return w, nil
	}
	for _, pair := range strings.Split(s, ",") {
		ch, url, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if _, known := policy.ParseChannel(ch); !ok || !known {
			return nil, fmt.Errorf("webhook %q: want CHANNEL=URL with CHANNEL one of %s", pair, strings.Join(policy.ChannelNames(), ", "))
		}
		if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
			return nil, fmt.Errorf("webhook for %s: %q is not an http(s) URL", ch, url)
		}
		w[ch] = url
	}
	return w, nil
}

// Sign returns the signature header value of a body sent at ts.
func Sign(secret []byte, ts string, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts))
	mac.Write([]byte("."))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify checks a signature in constant time; receivers use it (or its
// equivalent in their language).
func Verify(secret []byte, ts string, body []byte, signature string) bool {
	return hmac.Equal([]byte(Sign(secret, ts, body)), []byte(signature))
}

// Notifier posts tasks to webhooks.
type Notifier struct {
	Webhooks Webhooks
	Secret   []byte
	Client   *http.Client
	Now      func() time.Time
}

// Register adds the notifier to a router.
func (n *Notifier) Register(rt *bus.Router) { rt.Handle(topology.Notify, n.Handle) }

// ErrExpired marks a task not delivered because its delivery window closed
// or its attempts ran out: it is dead-lettered with the reason, never sent
// late.
var ErrExpired = errors.New("not delivered")

// Handle delivers one task. A channel without a webhook is left to the
// lender's own subscriber and acked; a failed delivery is retried (the
// router's retries, then redelivery with backoff) and dead-lettered after
// the last try. Every try first checks the task's window: none is made
// after its not_after (the borrower's window closed: a webhook failing
// until 22:05 never delivers at 22:05) or after its max_attempts
// deliveries.
func (n *Notifier) Handle(msg *message.Message) error {
	var del dunningv1.Delivery
	if err := proto.Unmarshal(msg.Payload, &del); err != nil {
		return bus.Permanent(fmt.Errorf("decoding delivery: %w", err))
	}
	ch := codec.ChannelFromProto(del.GetTask().GetChannel()).String()
	url, ok := n.Webhooks[ch]
	if !ok {
		return nil
	}
	task := del.GetTask()
	if na := task.GetNotAfter(); na != nil && !n.Now().Before(na.AsTime()) {
		return bus.Permanent(fmt.Errorf("%w: %s task %s: the borrower's window closed at %s (not_after)", ErrExpired, ch,
			task.GetContactId(), na.AsTime().UTC().Format(time.RFC3339)))
	}
	if nb := task.GetNotBefore(); nb != nil && n.Now().Before(nb.AsTime().Add(-time.Second)) {
		return fmt.Errorf("%s task %s: not before %s", ch, task.GetContactId(), nb.AsTime().UTC().Format(time.RFC3339))
	}
	if limit := task.GetMaxAttempts(); limit > 0 {
		if delivered, _ := strconv.Atoi(msg.Metadata.Get(bus.MetaDelivered)); delivered > int(limit) {
			return bus.Permanent(fmt.Errorf("%w: %s task %s: %d deliveries, max_attempts %d", ErrExpired, ch, task.GetContactId(), delivered-1, limit))
		}
	}
	body, err := protojson.Marshal(&del)
	if err != nil {
		return bus.Permanent(fmt.Errorf("encoding delivery: %w", err))
	}
	ctx, cancel := context.WithTimeout(msg.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return bus.Permanent(fmt.Errorf("webhook request: %w", err))
	}
	ts := strconv.FormatInt(n.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign(n.Secret, ts, body))
	req.Header.Set(HeaderIdempotencyKey, del.GetTenantId()+"/"+del.GetLoanId()+"/"+del.GetTask().GetContactId())
	resp, err := n.Client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook %s: %w", ch, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusConflict:
		return nil // the receiver already has it under this idempotency key
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusRequestTimeout:
		return bus.Permanent(fmt.Errorf("webhook %s refused the task: HTTP %d", ch, resp.StatusCode))
	default:
		return fmt.Errorf("webhook %s: HTTP %d", ch, resp.StatusCode)
	}
}
