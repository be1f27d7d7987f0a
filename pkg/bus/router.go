package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/metrics"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/opendunning/dunning/pkg/topology"
)

// Metadata keys the subscriber sets on every message.
const (
	MetaSubject   = "nats_subject"
	MetaStreamSeq = "nats_stream_seq"
	MetaDelivered = "nats_delivered"
	// MetaStreamTime is when the stream stored the message (RFC 3339,
	// nanoseconds): for a lender's event, when the lender published it.
	MetaStreamTime = "nats_stream_time"
)

// Dead-letter headers: why a message was set aside and where it came from.
const (
	HeaderDLQReason   = "Dunning-Dlq-Reason"
	HeaderDLQConsumer = "Dunning-Dlq-Consumer"
	HeaderDLQSubject  = "Dunning-Dlq-Subject"
	HeaderDLQSeq      = "Dunning-Dlq-Stream-Seq"
	HeaderDLQClass    = "Dunning-Dlq-Class"
	origHeaderPrefix  = "Dunning-Orig-"
)

// OrigHeader is the name under which a dead letter keeps the original
// message's header k (e.g. its Content-Type), for inspection and replay.
func OrigHeader(k string) string { return origHeaderPrefix + k }

// PermanentError marks a failure redelivery cannot fix (bad payload,
// impossible transition): the router dead-letters the message at once.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err as permanent.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err, or an error it wraps, is permanent.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// Dead-letter classes (the class label of dunning_dead_letters_total): a
// handler's permanent error, deliveries run out while the handler failed,
// or deliveries run out with no handler ever finishing (its process crashed
// or hung on each: JetStream's max-deliveries advisory, maxdeliveries.go).
const (
	ClassPermanent = "permanent"
	ClassExhausted = "exhausted"
	ClassAbandoned = "abandoned"
)

// Metrics are the router's counters, on the process's private registry.
// Labels are bounded: consumer and class, never a loan or tenant.
type Metrics struct {
	DeadLetters *prometheus.CounterVec
	// Redeliveries counts deliveries after a message's first (a crash, a
	// timeout, a nack, a restart): routine in small numbers, a stuck or
	// overloaded consumer when it climbs.
	Redeliveries *prometheus.CounterVec
}

// NewMetrics registers the router's counters on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		DeadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dunning", Name: "dead_letters_total",
			Help: "Messages dead-lettered, by consumer and class (permanent or exhausted)."}, []string{"consumer", "class"}),
		Redeliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dunning", Name: "redeliveries_total",
			Help: "Deliveries after a message's first (after a crash, an ack timeout, a failure or a restart), by consumer."}, []string{"consumer"}),
	}
	reg.MustRegister(m.DeadLetters, m.Redeliveries)
	return m
}

// DefaultConcurrency is how many messages each consumer handles at once
// unless configured (RouterConfig.Concurrency).
const DefaultConcurrency = 256

// RouterConfig configures the one router a process runs.
type RouterConfig struct {
	// Dial opens a NATS connection; each router owns its connection because
	// the watermill subscriber drains it on close.
	Dial func(name string) (*nats.Conn, error)
	// MaxDeliver is the consumers' redelivery bound: the router
	// dead-letters a failing message on its next-to-last delivery.
	MaxDeliver int
	// Registry receives watermill's handler metrics; nil registers none.
	Registry prometheus.Registerer
	// Metrics, if set, counts dead letters and redeliveries.
	Metrics *Metrics
	Logger  *slog.Logger
	// Name identifies the process in connection names and logs.
	Name string
	// Concurrency is how many messages each consumer handles at once
	// (default 256); the loan log's conditional writes make concurrent
	// handling of one loan safe. Each message waits on a few round trips, so
	// throughput under load is bound by messages in flight: at 64, 10,000
	// loans due within 3 s fell 2.5 s behind (p99); at 256, 0.4 s.
	Concurrency int
	// MaxKeepAlive bounds how long a message is kept from redelivery while
	// its handler runs (default 5 minutes): a handler hung longer lets the
	// ack wait run out, and one hung on every delivery is dead-lettered as
	// abandoned once the deliveries run out.
	MaxKeepAlive time.Duration
	// Yield, when set, holds the router's consumers to a few messages at
	// once while lender facts wait, but for the consumers of lender facts
	// and of advisories (topology.Yields, yield.go).
	Yield *Yield
	// Partitions is how many loans streams the loans are spread over: a
	// handler of a loans-stream consumer runs on each partition's copy of
	// it (topology.Partitions.Spread). The zero value is one.
	Partitions topology.Partitions
}

// Router runs stage handlers against their durable consumers with one
// middleware chain: recover panics, retry transient errors briefly, then
// dead-letter permanent or exhausted failures with their reason.
type Router struct {
	cfg RouterConfig
	r   *message.Router
	sub *Subscriber
	nc  *nats.Conn
	js  jetstream.JetStream

	mu    sync.Mutex
	specs map[string]topology.ConsumerSpec
	// maxDeliver is each consumer's redelivery bound as provisioned: the
	// admin provisions, so the consumer's own configuration, not this
	// process's flags, says which delivery is the last.
	maxDeliver map[string]int
}

// NewRouter is the one router constructor every service uses.
func NewRouter(cfg RouterConfig) (*Router, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	nc, err := cfg.Dial(cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("connecting router %s: %w", cfg.Name, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream context: %w", err)
	}
	// watermill logs every message at Info; keep only its warnings and errors.
	wlog := watermill.NewSlogLoggerWithLevelMapping(cfg.Logger, map[slog.Level]slog.Level{
		slog.LevelInfo: slog.LevelDebug - 4, slog.LevelDebug: slog.LevelDebug - 4,
	})
	sub := NewSubscriber(js, cfg.Concurrency, 250*time.Millisecond)
	sub.Logger = cfg.Logger
	sub.MaxKeepAlive = cfg.MaxKeepAlive
	sub.Yield = cfg.Yield
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, wlog)
	if err != nil {
		return nil, fmt.Errorf("creating router: %w", err)
	}
	if cfg.Registry != nil {
		metrics.NewPrometheusMetricsBuilder(cfg.Registry, "dunning", "router").AddPrometheusRouterMetrics(r)
	}
	rt := &Router{cfg: cfg, r: r, sub: sub, nc: nc, js: js, specs: map[string]topology.ConsumerSpec{}, maxDeliver: map[string]int{}}
	sub.Resolve = rt.resolve
	sub.Yields = rt.yields
	// The first middleware is the outermost: dead-lettering sees every
	// failure, a recovered panic included.
	r.AddMiddleware(
		rt.deadLetter,
		middleware.Retry{
			MaxRetries:      3,
			InitialInterval: 20 * time.Millisecond,
			MaxInterval:     500 * time.Millisecond,
			Multiplier:      2,
			// No logger: a retry is routine; deadLetter logs what is left after the retries.
			ShouldRetry: func(p middleware.RetryParams) bool { return !IsPermanent(p.Err) },
		}.Middleware,
		middleware.Recoverer,
	)
	return rt, nil
}

// JetStream is the router's JetStream context.
func (rt *Router) JetStream() jetstream.JetStream { return rt.js }

// Handle registers a handler on a declared durable consumer, and beside it
// the handler of that consumer's max-deliveries advisories
// (topology.Abandoned, maxdeliveries.go).
func (rt *Router) Handle(c topology.ConsumerSpec, h message.NoPublishHandlerFunc) {
	for _, c := range rt.cfg.Partitions.Spread([]topology.ConsumerSpec{c}) {
		rt.handle(c, h)
		if c.Stream != topology.StreamAdvisories {
			rt.handle(topology.Abandoned(c), rt.onAbandoned)
		}
	}
}

func (rt *Router) handle(c topology.ConsumerSpec, h message.NoPublishHandlerFunc) {
	rt.mu.Lock()
	rt.specs[c.Name] = c
	rt.mu.Unlock()
	rt.r.AddConsumerHandler(c.Name, c.Name, rt.sub, h)
}

// yields reports whether a topic's consumer gives way to lender facts.
func (rt *Router) yields(topic string) bool {
	rt.mu.Lock()
	spec, ok := rt.specs[topic]
	rt.mu.Unlock()
	return ok && topology.Yields(spec)
}

// resolve opens the provisioned durable consumer a handler was registered on.
func (rt *Router) resolve(ctx context.Context, js jetstream.JetStream, topic string) (jetstream.Consumer, error) {
	rt.mu.Lock()
	spec, ok := rt.specs[topic]
	rt.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("consumer %q has no handler on this router", topic)
	}
	cons, err := js.Consumer(ctx, spec.Stream, spec.Name)
	if err != nil {
		return nil, fmt.Errorf("opening consumer %s: %w", spec.Name, err)
	}
	if md := cons.CachedInfo().Config.MaxDeliver; md > 0 {
		rt.mu.Lock()
		rt.maxDeliver[spec.Name] = md
		rt.mu.Unlock()
	}
	return cons, nil
}

// lastDelivery is the consumer's redelivery bound: as provisioned, or the
// configured one before the consumer was opened.
func (rt *Router) lastDelivery(consumer string) int {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if md, ok := rt.maxDeliver[consumer]; ok {
		return md
	}
	return rt.cfg.MaxDeliver
}

// Run runs the handlers until ctx ends.
func (rt *Router) Run(ctx context.Context) error {
	defer rt.nc.Close()
	if err := rt.r.Run(ctx); err != nil {
		return fmt.Errorf("router %s: %w", rt.cfg.Name, err)
	}
	return nil
}

// Running is closed when every handler is subscribed.
func (rt *Router) Running() chan struct{} { return rt.r.Running() }

// deadLetter sets aside a message whose handler failed permanently, or
// transiently on its last allowed delivery, and acks it, so that nothing is
// lost and nothing blocks the consumer. Other failures are nacked for redelivery.
func (rt *Router) deadLetter(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		consumer := message.HandlerNameFromCtx(msg.Context())
		delivered, _ := strconv.Atoi(msg.Metadata.Get(MetaDelivered))
		if delivered > 1 && rt.cfg.Metrics != nil {
			rt.cfg.Metrics.Redeliveries.WithLabelValues(consumer).Inc()
		}
		out, err := h(msg)
		if err == nil {
			return out, nil
		}
		class := ClassPermanent
		if !IsPermanent(err) {
			// Dead-letter one delivery before the last, so that if publishing
			// the dead letter fails, the last delivery can try again.
			if delivered < rt.lastDelivery(consumer)-1 {
				rt.cfg.Logger.Warn("handler failed; will be redelivered", "consumer", consumer,
					"stream_seq", msg.Metadata.Get(MetaStreamSeq), "delivered", delivered, "err", err)
				return nil, err
			}
			class = ClassExhausted
		}
		if dlqErr := rt.publishDLQ(msg, consumer, class, err); dlqErr != nil {
			return nil, errors.Join(err, dlqErr)
		}
		if rt.cfg.Metrics != nil {
			rt.cfg.Metrics.DeadLetters.WithLabelValues(consumer, class).Inc()
		}
		rt.cfg.Logger.Warn("message dead-lettered", "consumer", consumer, "class", class,
			"stream_seq", msg.Metadata.Get(MetaStreamSeq), "reason", err)
		return nil, nil
	}
}

func (rt *Router) publishDLQ(msg *message.Message, consumer, class string, cause error) error {
	m := nats.NewMsg("")
	m.Data = msg.Payload
	for k, v := range msg.Metadata {
		switch k {
		case MetaSubject, MetaStreamSeq, MetaDelivered, MetaStreamTime:
		default:
			m.Header.Set(origHeaderPrefix+k, v)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := rt.sendDLQ(ctx, m, consumer, class, msg.Metadata.Get(MetaSubject), msg.Metadata.Get(MetaStreamSeq), cause.Error())
	return err
}

// sendDLQ publishes m, which holds the original body and Dunning-Orig-*
// headers, as consumer's dead letter of the message at stream sequence seq
// on subject, with its class and reason. Its message ID is the consumer's
// and the sequence's: one dead letter per original message, however often
// it is redelivered and whichever replica sends it.
func (rt *Router) sendDLQ(ctx context.Context, m *nats.Msg, consumer, class, subject, seq, reason string) (*jetstream.PubAck, error) {
	m.Subject = topology.DLQSubject(consumer)
	m.Header.Set(HeaderDLQReason, reason)
	m.Header.Set(HeaderDLQClass, class)
	m.Header.Set(HeaderDLQConsumer, consumer)
	m.Header.Set(HeaderDLQSubject, subject)
	m.Header.Set(HeaderDLQSeq, seq)
	m.Header.Set(jetstream.MsgIDHeader, "dlq-"+consumer+"-"+seq)
	ack, err := rt.js.PublishMsg(ctx, m)
	if err != nil {
		return nil, fmt.Errorf("dead-lettering: %w", err)
	}
	return ack, nil
}
