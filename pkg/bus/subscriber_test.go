package bus_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/opendunning/dunning/pkg/bus"
	"github.com/opendunning/dunning/pkg/embedded"
	"github.com/opendunning/dunning/pkg/natstest"
	"github.com/opendunning/dunning/pkg/topology"
)

// TestPubSub runs watermill's universal Pub/Sub suite against our Subscriber
// and Publisher on a real embedded JetStream server, twice: with several
// messages in flight per subscription, and with one (which keeps order).
// make test runs the suite's short form (fewer messages and subscribers:
// seconds under -race instead of two minutes, which also starved the
// timing-sensitive tests running beside it); make test-pubsub sets
// DUNNING_PUBSUB_FULL=1 for the full one. TestReconnect is skipped: it
// needs a command that restarts the broker.
func TestPubSub(t *testing.T) {
	// Several messages in flight per subscription: order is not guaranteed.
	t.Run("concurrent", func(t *testing.T) {
		t.Parallel()
		srv := startServer(t)
		tests.TestPubSub(t, tests.Features{
			// A group is a durable consumer: its subscribers share the
			// messages, and each group gets all of them.
			ConsumerGroups: true,
			// At-least-once: a nack, a close or AckWait redelivers.
			ExactlyOnceDelivery: false,
			GuaranteedOrder:     false,
			// The stream keeps messages for the durable across instances.
			Persistent: true,
			// Subscribers without a group share one durable, so a new one
			// resumes where the others are rather than replaying the stream.
			NewSubscriberReceivesOldMessages: false,
			RequireSingleInstance:            false,
			// Only payload and metadata cross the wire.
			ContextPreserved: false,
			ForceShort:       shortSuite,
		}, pubSubConstructor(srv, 8, ""), consumerGroupConstructor(srv, 8))
	})

	// One message in flight per subscription: a subscription delivers in
	// stream order (as long as nothing is nacked or left past AckWait, which
	// redelivers a message after later ones). Subscribers sharing the durable
	// consumer interleave, so order holds only for a single subscriber.
	t.Run("ordered", func(t *testing.T) {
		t.Parallel()
		srv := startServer(t)
		tests.TestPubSub(t, tests.Features{
			ConsumerGroups:                      true,
			ExactlyOnceDelivery:                 false,
			GuaranteedOrder:                     true,
			GuaranteedOrderWithSingleSubscriber: true,
			Persistent:                          true,
			NewSubscriberReceivesOldMessages:    false,
			RequireSingleInstance:               false,
			ContextPreserved:                    false,
			ForceShort:                          shortSuite,
		}, pubSubConstructor(srv, 1, ""), consumerGroupConstructor(srv, 1))
	})
}

// shortSuite is the universal suite's short form, unless DUNNING_PUBSUB_FULL is set.
var shortSuite = os.Getenv("DUNNING_PUBSUB_FULL") == ""

func startServer(t *testing.T) *embedded.Server {
	return natstest.Server(t, embedded.Config{DontListen: true})
}

// intake resolves every topic to the declared intake consumer, as the
// router resolves a topic to the consumer its handler was registered on.
func intake(ctx context.Context, js jetstream.JetStream, topic string) (jetstream.Consumer, error) {
	if topic != topology.ConsumerIntake {
		return nil, fmt.Errorf("topic %q is not the intake consumer", topic)
	}
	return js.Consumer(ctx, topology.StreamIntake, topology.ConsumerIntake)
}

// defaultGroup is the durable consumer of subscribers built without a consumer
// group: like a stage's replicas, they share one durable per topic.
const defaultGroup = "default"

func pubSubConstructor(srv *embedded.Server, concurrency int, group string) tests.PubSubConstructor {
	if group == "" {
		group = defaultGroup
	}
	return func(t *testing.T) (message.Publisher, message.Subscriber) {
		nc, err := srv.Connect("pubsub-test")
		if err != nil {
			t.Fatal(err)
		}
		// Publisher and Subscriber leave the connection to their owner.
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		sub := bus.NewSubscriber(js, concurrency, 50*time.Millisecond)
		sub.Resolve = topicConsumer(group)
		return bus.Publisher{JS: js}, sub
	}
}

func consumerGroupConstructor(srv *embedded.Server, concurrency int) tests.ConsumerGroupPubSubConstructor {
	return func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		return pubSubConstructor(srv, concurrency, group)(t)
	}
}

// topicConsumer resolves a watermill topic to the durable consumer group of
// the topic's own stream, creating both if needed. The stream captures the
// subject the Publisher publishes to, which is the topic itself.
func topicConsumer(group string) func(ctx context.Context, js jetstream.JetStream, topic string) (jetstream.Consumer, error) {
	return func(ctx context.Context, js jetstream.JetStream, topic string) (jetstream.Consumer, error) {
		if !validSubject(topic) {
			return nil, fmt.Errorf("topic %q is not a literal NATS subject", topic)
		}
		stream := "WM_" + hashName(topic)
		durable := group
		if !validName.MatchString(durable) {
			durable = "G_" + hashName(group)
		}
		if cons, err := js.Consumer(ctx, stream, durable); err == nil {
			return cons, nil
		} else if !errors.Is(err, jetstream.ErrStreamNotFound) && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, err
		}
		if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name:     stream,
			Subjects: []string{topic},
			Storage:  jetstream.FileStorage,
		}); err != nil {
			return nil, fmt.Errorf("creating stream %s: %w", stream, err)
		}
		// The topology's AckWait (30s) is kept on purpose: longer than the
		// suite's timeouts, so a message the Subscriber loses (rather than
		// nacks) on close fails the suite instead of coming back in time.
		cfg := topology.DefaultTopology().ConsumerConfig(topology.ConsumerSpec{Name: durable, Stream: stream})
		// Redelivery limits are the router's business (it dead-letters on
		// the last delivery); the suite nacks some messages many times.
		cfg.MaxDeliver = -1
		return js.CreateOrUpdateConsumer(ctx, stream, cfg)
	}
}

// validName is what we accept as a stream or consumer name unchanged.
var validName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func hashName(s string) string {
	h := sha256.Sum256([]byte(s))
	return strings.ToUpper(hex.EncodeToString(h[:16]))
}

// validSubject reports whether s is a literal subject: non-empty tokens, no
// wildcards, no whitespace.
func validSubject(s string) bool {
	if s == "" || strings.ContainsAny(s, " \t\r\n") {
		return false
	}
	for _, tok := range strings.Split(s, ".") {
		if tok == "" || tok == "*" || tok == ">" {
			return false
		}
	}
	return true
}

// provisioned starts a server with topo's streams and consumers, and returns
// a client and a context that ends with the test (30 s at most).
func provisioned(t *testing.T, name string, topo topology.Topology) (jetstream.JetStream, context.Context) {
	t.Helper()
	_, js := natstest.Connect(t, startServer(t), name)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	if err := topo.Provision(ctx, js, []topology.ConsumerSpec{topology.Intake}); err != nil {
		t.Fatal(err)
	}
	return js, ctx
}

// TestSubscriberDeclaredConsumer covers a declared, provisioned durable
// consumer, as the router subscribes to it.
func TestSubscriberDeclaredConsumer(t *testing.T) {
	js, ctx := provisioned(t, "declared-test", topology.DefaultTopology())
	sub := bus.NewSubscriber(js, 4, 10*time.Millisecond)
	sub.Resolve = intake
	defer sub.Close()

	if _, err := sub.Subscribe(ctx, "undeclared"); err == nil {
		t.Fatal("subscribing to an undeclared consumer succeeded")
	}
	if err := sub.SubscribeInitialize("undeclared"); err == nil {
		t.Fatal("initializing an undeclared consumer succeeded")
	}
	if err := sub.SubscribeInitialize(topology.ConsumerIntake); err != nil {
		t.Fatal(err)
	}

	subject := topology.IntakeSubject("t1", "l1")
	sent := message.NewMessage("uuid-1", []byte("body"))
	sent.Metadata.Set("k", "v")
	if err := (bus.Publisher{JS: js}).Publish(subject, sent); err != nil {
		t.Fatal(err)
	}
	// A message published by other means is named after its stream position.
	if _, err := js.Publish(ctx, subject, []byte("raw")); err != nil {
		t.Fatal(err)
	}

	msgs, err := sub.Subscribe(ctx, topology.ConsumerIntake)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*message.Message{}
	for len(got) < 2 {
		select {
		case m := <-msgs:
			got[string(m.Payload)] = m
			m.Ack()
		case <-ctx.Done():
			t.Fatalf("received %d of 2 messages", len(got))
		}
	}
	m := got["body"]
	if m.UUID != "uuid-1" || m.Metadata.Get("k") != "v" || m.Metadata.Get(bus.MetaSubject) != topology.Partitions(1).Loan("t1", "l1").Intake() ||
		m.Metadata.Get(bus.MetaStreamSeq) != "1" || m.Metadata.Get(bus.MetaDelivered) != "1" {
		t.Errorf("published message arrived as UUID %q, metadata %v", m.UUID, m.Metadata)
	}
	if raw := got["raw"]; raw.UUID != topology.StreamIntake+"-2" {
		t.Errorf("raw message UUID = %q, want %s-2", raw.UUID, topology.StreamIntake)
	}

	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	if _, open := <-msgs; open {
		t.Error("messages channel still open after Close")
	}
	if _, err := sub.Subscribe(ctx, topology.ConsumerIntake); err == nil {
		t.Error("subscribing after Close succeeded")
	}
}

// A message whose handler runs past the ack wait, or that waits past it for
// a free slot behind a slow one, is kept alive and not redelivered: a busy
// process's work does not go to another while it is still being done.
func TestSubscriberKeepsSlowMessagesAlive(t *testing.T) {
	topo := topology.DefaultTopology()
	topo.AckWait = time.Second
	js, ctx := provisioned(t, "keepalive-test", topo)
	// One slot: the second message waits for the first's 2.5 s handler.
	sub := bus.NewSubscriber(js, 1, 10*time.Millisecond)
	sub.Resolve = intake
	defer sub.Close()
	for _, loan := range []string{"l1", "l2"} {
		if _, err := js.Publish(ctx, topology.IntakeSubject("t1", loan), []byte(loan)); err != nil {
			t.Fatal(err)
		}
	}
	msgs, err := sub.Subscribe(ctx, topology.ConsumerIntake)
	if err != nil {
		t.Fatal(err)
	}
	deliveries := map[string][]string{}
	deadline := time.After(8 * time.Second)
	for done := false; !done; {
		select {
		case m := <-msgs:
			deliveries[string(m.Payload)] = append(deliveries[string(m.Payload)], m.Metadata.Get(bus.MetaDelivered))
			time.Sleep(2500 * time.Millisecond) // the handler: 2.5 ack waits
			m.Ack()
		case <-deadline:
			done = true
		}
	}
	for _, loan := range []string{"l1", "l2"} {
		if d := deliveries[loan]; len(d) != 1 || d[0] != "1" {
			t.Errorf("%s: deliveries (their delivery counts) %v, want one first delivery", loan, d)
		}
	}
}

// A pull that keeps failing (here: the consumer was deleted under the
// subscription) is retried and reported in the log, not spun on silently.
func TestSubscriberReportsFailingPulls(t *testing.T) {
	js, ctx := provisioned(t, "failing-pull-test", topology.DefaultTopology())
	var logs syncBuffer
	sub := bus.NewSubscriber(js, 4, 10*time.Millisecond)
	sub.Resolve = intake
	sub.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	defer sub.Close()
	if _, err := sub.Subscribe(ctx, topology.ConsumerIntake); err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteConsumer(ctx, topology.StreamIntake, topology.ConsumerIntake); err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(logs.String(), "pulling messages failed") {
		select {
		case <-ctx.Done():
			t.Fatalf("no warning logged after the consumer was deleted; log: %q", logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
