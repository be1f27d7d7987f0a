package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Subscriber is a watermill Subscriber over the topology's durable pull
// consumers: the topic is the consumer's name. It is ours rather than
// watermill-nats' beta JetStream subscriber, which panics with "send on
// closed channel" when closed under load, drops messages it cannot
// unmarshal, and handles one message at a time.
//
// Up to Concurrency messages per subscription are in flight at once; each is
// acked when its handler acks it and nacked (redelivered after NakDelay) when
// the handler nacks it. Messages still in flight at Close are nacked.
type Subscriber struct {
	JS          jetstream.JetStream
	Concurrency int
	NakDelay    time.Duration

	mu      sync.Mutex
	closed  bool
	closing chan struct{}
	wg      sync.WaitGroup
}

// NewSubscriber returns a subscriber over js.
func NewSubscriber(js jetstream.JetStream, concurrency int, nakDelay time.Duration) *Subscriber {
	if concurrency < 1 {
		concurrency = 1
	}
	return &Subscriber{JS: js, Concurrency: concurrency, NakDelay: nakDelay, closing: make(chan struct{})}
}

var _ message.Subscriber = (*Subscriber)(nil)

// Subscribe consumes the declared durable consumer named topic.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("subscriber closed")
	}
	spec, ok := ConsumerByName(topic)
	if !ok {
		return nil, fmt.Errorf("consumer %q is not declared in the topology", topic)
	}
	cons, err := s.JS.Consumer(ctx, spec.Stream, spec.Name)
	if err != nil {
		return nil, fmt.Errorf("opening consumer %s: %w", spec.Name, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(2 * s.Concurrency))
	if err != nil {
		return nil, fmt.Errorf("consuming %s: %w", spec.Name, err)
	}
	out := make(chan *message.Message)
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-ctx.Done():
		case <-s.closing:
		}
		it.Stop()
		cancel()
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer cancel()
		var inflight sync.WaitGroup
		sem := make(chan struct{}, s.Concurrency)
		for {
			m, err := it.Next()
			if err != nil {
				if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
					break
				}
				// Heartbeat or transient errors: the iterator keeps pulling.
				continue
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				_ = m.Nak()
				continue
			}
			inflight.Add(1)
			go func() {
				defer inflight.Done()
				defer func() { <-sem }()
				s.deliver(ctx, m, out)
			}()
		}
		// Only the owner closes out, after every sender is done.
		inflight.Wait()
		close(out)
	}()
	return out, nil
}

func (s *Subscriber) deliver(ctx context.Context, m jetstream.Msg, out chan<- *message.Message) {
	wm := toWatermill(m)
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wm.SetContext(mctx)
	select {
	case out <- wm:
	case <-ctx.Done():
		_ = m.Nak()
		return
	}
	select {
	case <-wm.Acked():
		_ = m.Ack()
	case <-wm.Nacked():
		_ = m.NakWithDelay(s.NakDelay)
	case <-ctx.Done():
		_ = m.Nak()
	}
}

// Close stops every subscription and waits for them.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closing)
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// toWatermill never fails: a body that cannot be decoded must reach the
// handler, which dead-letters it with a reason. Headers become metadata; the
// subject, stream sequence and delivery count are added.
func toWatermill(m jetstream.Msg) *message.Message {
	md := make(message.Metadata)
	for k, v := range m.Headers() {
		if len(v) > 0 {
			md.Set(k, v[len(v)-1])
		}
	}
	md.Set(MetaSubject, m.Subject())
	id := ""
	if meta, err := m.Metadata(); err == nil {
		md.Set(MetaStreamSeq, strconv.FormatUint(meta.Sequence.Stream, 10))
		md.Set(MetaDelivered, strconv.FormatUint(meta.NumDelivered, 10))
		id = meta.Stream + "-" + strconv.FormatUint(meta.Sequence.Stream, 10)
	}
	wm := message.NewMessage(id, m.Data())
	wm.Metadata = md
	return wm
}

// Publisher is a watermill Publisher onto JetStream: the topic is the
// subject, metadata become headers, and each publish waits for its ack.
type Publisher struct {
	JS jetstream.JetStream
}

var _ message.Publisher = Publisher{}

// Publish stores each message, in order.
func (p Publisher) Publish(topic string, msgs ...*message.Message) error {
	for _, wm := range msgs {
		m := nats.NewMsg(topic)
		m.Data = wm.Payload
		for k, v := range wm.Metadata {
			m.Header.Set(k, v)
		}
		m.Header.Set(HeaderUUID, wm.UUID)
		ctx := wm.Context()
		if _, err := p.JS.PublishMsg(ctx, m); err != nil {
			return fmt.Errorf("publishing to %s: %w", topic, err)
		}
	}
	return nil
}

// Close does nothing: the connection belongs to the caller.
func (Publisher) Close() error { return nil }

// HeaderUUID carries a watermill message's UUID.
const HeaderUUID = "Dunning-Msg-Uuid"
