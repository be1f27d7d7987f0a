package bus

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// JSPublisher is what PublishOnce needs of JetStream.
type JSPublisher interface {
	PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// PublishOnce writes m only if its subject is empty: a message whose
// subject names what it is (a task's contact, a placement's event) is
// written once however often the decision behind it is redelivered. A
// subject already taken is success: it was written before.
func PublishOnce(ctx context.Context, js JSPublisher, m *nats.Msg) error {
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
	_, err := js.PublishMsg(ctx, m)
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return nil
	}
	return err
}
