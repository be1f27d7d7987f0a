package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
// yet handed out, are nacked for redelivery once the closing pull has ended.
type Subscriber struct {
	JS          jetstream.JetStream
	Concurrency int
	NakDelay    time.Duration
	// Resolve opens the consumer a topic is read from, and may create it
	// and its stream. The router resolves a topic to the declared durable
	// consumer its handler was registered on, which Provision created.
	Resolve func(ctx context.Context, js jetstream.JetStream, topic string) (jetstream.Consumer, error)
	// Logger, when set, hears of failing pulls (a deleted consumer, a lost
	// connection), at most every 10 s per subscription; they are retried.
	Logger *slog.Logger
	// MaxKeepAlive bounds how long a message is kept from redelivery while
	// its handler runs (0: DefaultMaxKeepAlive).
	MaxKeepAlive time.Duration
	// Yield, when set, holds back the topics Yields names while lender
	// facts wait (yield.go).
	Yield  *Yield
	Yields func(topic string) bool

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
	var yield *Yield
	if s.Yield != nil && s.Yields != nil && s.Yields(topic) {
		yield = s.Yield
	}
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
	out := make(chan *message.Message)
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-ctx.Done():
		case <-closing:
		}
		cancel()
	}()
	limit := s.MaxKeepAlive
	if limit <= 0 {
		limit = DefaultMaxKeepAlive
	}
	keeper := newKeeper(ackWait, limit)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		keeper.run(ctx)
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer cancel()
		// Messages in hand (running, or kept alive waiting for a worker),
		// handed to the workers in the order they arrived.
		held := make(chan struct{}, 2*concurrency)
		type taken struct {
			m    jetstream.Msg
			stop func()
		}
		queue := make(chan taken, 2*concurrency)
		var workers sync.WaitGroup
		for range concurrency {
			workers.Add(1)
			go func() {
				defer workers.Done()
				for t := range queue {
					// A closing subscription's enter fails and deliver
					// gives the message back.
					entered := yield != nil && yield.enter(ctx) == nil
					s.deliver(ctx, t.m, out, t.stop)
					if entered {
						yield.leave()
					}
					t.stop()
					<-held
				}
			}()
		}
		var lastWarn time.Time
		warn := func(err error) {
			if s.Logger != nil && time.Since(lastWarn) >= 10*time.Second && ctx.Err() == nil {
				lastWarn = time.Now()
				s.Logger.Warn("pulling messages failed; retrying", "topic", topic, "err", err)
			}
		}
		for ctx.Err() == nil {
			// While lender facts wait, hold no more than the yield's floor:
			// messages held back would only be kept alive for nothing.
			if yield != nil {
				yield.room(ctx, func() int { return len(held) })
			}
			// Ask for exactly as many messages as can be taken now: none
			// waits in a client buffer where nothing keeps it alive.
			select {
			case held <- struct{}{}:
			case <-ctx.Done():
				continue
			}
			n := 1
		free:
			for n < cap(held) {
				select {
				case held <- struct{}{}:
					n++
				default:
					break free
				}
			}
			if yield != nil {
				for ; n > 1 && yield.over(len(held)); n-- {
					<-held
				}
			}
			// While disconnected a pull would only fill the reconnect buffer
			// (and nats.go leaks a fetch's subscription when sending fails).
			if !s.JS.Conn().IsConnected() {
				for range n {
					<-held
				}
				select {
				case <-time.After(100 * time.Millisecond):
				case <-ctx.Done():
				}
				continue
			}
			// A pull with its own wait, not an open-ended iterator: nats.go's
			// Messages() iterator (v1.55.0) can leave no pull request
			// outstanding and stall until its heartbeat check, seconds later
			// (payments reached loan logs up to 3.6 s late under load). The
			// pull is not cancelled on shutdown: what arrives meanwhile is
			// nacked below for immediate redelivery, not left to the ack wait.
			batch, err := cons.Fetch(n, jetstream.FetchMaxWait(pullWait))
			if err != nil {
				warn(err)
				for range n {
					<-held
				}
				select { // a lost connection must not spin this loop
				case <-time.After(100 * time.Millisecond):
				case <-ctx.Done():
				}
				continue
			}
			got := 0
			for m := range batch.Messages() {
				got++
				if ctx.Err() != nil {
					// Closing: give back what was pulled but not handed out.
					_ = m.NakWithDelay(shutdownNakDelay)
					<-held
					continue
				}
				// From here until it is settled the message is kept alive
				// with in-progress signals, also while it waits for a
				// worker: a busy process's messages are not redelivered to
				// another (more load, the same work twice); only a dead or
				// frozen one's are.
				queue <- taken{m, keeper.add(m)} // never blocks: held bounds it
			}
			for range n - got {
				<-held
			}
			if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
				warn(err)
				select {
				case <-time.After(100 * time.Millisecond):
				case <-ctx.Done():
				}
			}
		}
		// Workers nack what is still queued (deliver sees ctx done); only
		// the owner closes out, after every sender is done.
		close(queue)
		workers.Wait()
		close(out)
	}()
	return out, nil
}

// pullWait is how long one pull request waits for messages. Messages are
// handed out as they arrive; a longer wait means fewer empty requests on an
// idle consumer and a slower shutdown (a process waits out its pulls).
const pullWait = time.Second

// shutdownNakDelay: a closing subscription gives its messages back with this
// delay, so they are not redelivered into its own pull request, still open
// on the server until pullWait ends. Given back at once, a message bounced
// between the closing pull and the nak until it ran out of deliveries
// (MaxDeliver), and JetStream drops such a message without a dead letter.
const shutdownNakDelay = pullWait + 500*time.Millisecond

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
	if s.Resolve == nil {
		return nil, fmt.Errorf("subscriber has no Resolve for topic %q", topic)
	}
	cons, err := s.Resolve(ctx, s.JS, topic)
	if err != nil {
		return nil, fmt.Errorf("resolving consumer of topic %q: %w", topic, err)
	}
	return cons, nil
}

var _ message.SubscribeInitializer = (*Subscriber)(nil)

// SubscribeInitialize makes sure the consumer of topic exists, so that
// messages published before the first Subscribe are kept for it (Resolve
// may create the stream and consumer, or check that they were provisioned).
func (s *Subscriber) SubscribeInitialize(topic string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := s.consumer(ctx, topic)
	return err
}

// DefaultMaxKeepAlive bounds how long a message is kept from redelivery
// while its handler runs: a handler stuck longer than this lets another
// process try, and one stuck on every delivery is dead-lettered as
// abandoned when its deliveries run out.
const DefaultMaxKeepAlive = 5 * time.Minute

// keeper tells the server, at a third of the ack wait, that the messages in
// hand are being worked on. One goroutine per subscription, not per message:
// with hundreds in flight that matters. A message is settled (ack or nak)
// only after it leaves the keeper, under the keeper's lock, so no signal
// follows its settlement (a late one would turn a nak's short delay into a
// full ack wait).
type keeper struct {
	every time.Duration
	limit time.Duration
	mu    sync.Mutex
	msgs  map[jetstream.Msg]time.Time // message -> when it was taken
}

func newKeeper(ackWait, limit time.Duration) *keeper {
	return &keeper{every: max(ackWait/3, 10*time.Millisecond), limit: limit, msgs: map[jetstream.Msg]time.Time{}}
}

// add keeps m alive until the returned stop is called; stop may be called
// more than once.
func (k *keeper) add(m jetstream.Msg) (stop func()) {
	k.mu.Lock()
	k.msgs[m] = time.Now()
	k.mu.Unlock()
	return func() {
		k.mu.Lock()
		delete(k.msgs, m)
		k.mu.Unlock()
	}
}

func (k *keeper) run(ctx context.Context) {
	t := time.NewTicker(k.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			k.mu.Lock()
			for m, since := range k.msgs {
				// Every tick, however young the message: its ack wait began
				// when the server sent it, maybe a while before it was taken.
				// A stuck one gets no more.
				if now.Sub(since) < k.limit {
					_ = m.InProgress() // a buffered publish: cheap under the lock
				}
			}
			k.mu.Unlock()
		}
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
		_ = m.NakWithDelay(shutdownNakDelay)
		return
	}
	select {
	case out <- wm:
	case <-ctx.Done():
		stopKeepAlive()
		_ = m.NakWithDelay(shutdownNakDelay)
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
		select {
		case <-wm.Acked(): // done just as the subscription closed: keep it done
			_ = m.Ack()
		default:
			_ = m.NakWithDelay(shutdownNakDelay)
		}
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
		md.Set(MetaStreamTime, meta.Timestamp.UTC().Format(time.RFC3339Nano))
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
