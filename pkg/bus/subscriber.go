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
// the handler nacks it. Messages still in flight at Close, or pulled but not
// yet handed out, are nacked for immediate redelivery.
type Subscriber struct {
	JS          jetstream.JetStream
	Concurrency int
	NakDelay    time.Duration
	// Resolve, when set, opens the consumer a topic is read from, and may
	// create it and its stream. When nil the topic must name a consumer
	// declared in the topology (see Consumers), which Provision creates.
	Resolve func(ctx context.Context, js jetstream.JetStream, topic string) (jetstream.Consumer, error)

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

// Subscribe consumes the consumer of topic: by default the declared durable
// consumer named topic, or whatever Resolve returns.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if s.isClosed() {
		return nil, errSubscriberClosed
	}
	// Resolving may create streams and consumers: not under the lock, so
	// that it neither serializes subscriptions nor holds up Close.
	cons, err := s.consumer(ctx, topic)
	if err != nil {
		return nil, err
	}
	concurrency := max(s.Concurrency, 1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errSubscriberClosed
	}
	closing := s.closingCh()
	ackWait := 30 * time.Second
	if info := cons.CachedInfo(); info != nil && info.Config.AckWait > 0 {
		ackWait = info.Config.AckWait
	}
	// The iterator's own buffer (pulled, not yet taken) is not kept alive:
	// keep it small, and take messages only while fewer than twice the
	// concurrency are in hand.
	it, err := cons.Messages(jetstream.PullMaxMessages(concurrency))
	if err != nil {
		return nil, fmt.Errorf("consuming %s: %w", topic, err)
	}
	out := make(chan *message.Message)
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-ctx.Done():
		case <-closing:
		}
		// Drain, not Stop: Stop discards the messages the iterator has
		// already pulled, and the server would only redeliver them after
		// AckWait. Draining hands them to the loop below, which nacks them.
		it.Drain()
		cancel()
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer cancel()
		var inflight sync.WaitGroup
		sem := make(chan struct{}, concurrency)
		held := make(chan struct{}, 2*concurrency)
		for {
			held <- struct{}{} // never blocks past shutdown: every holder ends once ctx does
			m, err := it.Next(jetstream.NextMaxWait(pullRecheck))
			if err != nil {
				<-held
				if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					break
				}
				// A recheck timeout, a heartbeat or a transient error: the
				// iterator keeps pulling (or, once draining, ends with
				// ErrMsgIteratorClosed). Pause on anything but a timeout so
				// a lost connection does not spin this loop.
				if !errors.Is(err, nats.ErrTimeout) {
					select {
					case <-time.After(100 * time.Millisecond):
					case <-ctx.Done():
					}
				}
				continue
			}
			if ctx.Err() != nil {
				// Closing: give back what was pulled but not handed out.
				_ = m.Nak()
				<-held
				continue
			}
			// From here until it is acked the message is kept alive with
			// in-progress signals, also while it waits for a free slot: a
			// busy process's messages are not redelivered to another (more
			// load, the same work twice); only a dead or frozen one's are.
			inflight.Add(1)
			go func() {
				defer inflight.Done()
				defer func() { <-held }()
				stop := s.keepAlive(m, ackWait)
				defer stop()
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					stop()
					_ = m.Nak()
					return
				}
				defer func() { <-sem }()
				s.deliver(ctx, m, out, stop)
			}()
		}
		// Only the owner closes out, after every sender is done.
		inflight.Wait()
		close(out)
	}()
	return out, nil
}

// pullRecheck bounds each wait in the iterator's Next. nats.go (v1.55.0)
// decides whether to send the next pull request only when Next is called,
// and skips it while the previous request is still being sent; if the whole
// previous batch has already arrived and been consumed by then, Next waits
// with no pull request outstanding until its missing-heartbeat check fires,
// 30 seconds later. Calling Next again re-runs that decision, so a stalled
// subscription resumes within pullRecheck. It never sends extra requests.
const pullRecheck = time.Second

var errSubscriberClosed = errors.New("subscriber closed")

func (s *Subscriber) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// closingCh returns the channel Close closes, making it for a Subscriber
// built without NewSubscriber. Callers hold s.mu.
func (s *Subscriber) closingCh() chan struct{} {
	if s.closing == nil {
		s.closing = make(chan struct{})
	}
	return s.closing
}

// consumer opens the consumer of topic.
func (s *Subscriber) consumer(ctx context.Context, topic string) (jetstream.Consumer, error) {
	if s.Resolve != nil {
		cons, err := s.Resolve(ctx, s.JS, topic)
		if err != nil {
			return nil, fmt.Errorf("resolving consumer of topic %q: %w", topic, err)
		}
		return cons, nil
	}
	spec, ok := ConsumerByName(topic)
	if !ok {
		return nil, fmt.Errorf("consumer %q is not declared in the topology", topic)
	}
	cons, err := s.JS.Consumer(ctx, spec.Stream, spec.Name)
	if err != nil {
		return nil, fmt.Errorf("opening consumer %s: %w", spec.Name, err)
	}
	return cons, nil
}

var _ message.SubscribeInitializer = (*Subscriber)(nil)

// SubscribeInitialize makes sure the consumer of topic exists, so that
// messages published before the first Subscribe are kept for it. With
// Resolve it resolves the topic (which may create the stream and consumer);
// otherwise it checks that the declared consumer has been provisioned.
func (s *Subscriber) SubscribeInitialize(topic string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := s.consumer(ctx, topic)
	return err
}

// maxKeepAlive bounds how long a message is kept from redelivery while its
// handler runs: a handler stuck longer than this lets another process try.
const maxKeepAlive = 5 * time.Minute

// keepAlive tells the server the message is being worked on, at a third of
// the ack wait, until stop is called or maxKeepAlive passes. stop returns
// once no more signals can be sent, so a message is settled (ack or nak)
// only after its last in-progress signal: a late one would turn a nak's
// short delay into a full ack wait. stop may be called more than once.
func (s *Subscriber) keepAlive(m jetstream.Msg, ackWait time.Duration) (stop func()) {
	done, exited := make(chan struct{}), make(chan struct{})
	var once sync.Once
	go func() {
		defer close(exited)
		t := time.NewTicker(ackWait / 3)
		defer t.Stop()
		deadline := time.After(maxKeepAlive)
		for {
			select {
			case <-done:
				return
			case <-deadline:
				return
			case <-t.C:
				_ = m.InProgress()
			}
		}
	}()
	return func() {
		once.Do(func() { close(done) })
		<-exited
	}
}

func (s *Subscriber) deliver(ctx context.Context, m jetstream.Msg, out chan<- *message.Message, stopKeepAlive func()) {
	wm := toWatermill(m)
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wm.SetContext(mctx)
	// A closing subscription hands out nothing more, even to a ready reader.
	if ctx.Err() != nil {
		stopKeepAlive()
		_ = m.Nak()
		return
	}
	select {
	case out <- wm:
	case <-ctx.Done():
		stopKeepAlive()
		_ = m.Nak()
		return
	}
	select {
	case <-wm.Acked():
		stopKeepAlive()
		_ = m.Ack()
	case <-wm.Nacked():
		stopKeepAlive()
		_ = m.NakWithDelay(s.NakDelay)
	case <-ctx.Done():
		stopKeepAlive()
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
	close(s.closingCh())
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// toWatermill never fails: a body that cannot be decoded must reach the
// handler, which dead-letters it with a reason. Headers become metadata; the
// subject, stream sequence and delivery count are added. The UUID is the one
// the Publisher sent in HeaderUUID; a message published by other means (a
// lender's intake event) is named after its stream and sequence.
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
	if u := m.Headers().Get(HeaderUUID); u != "" {
		id = u
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
