package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/opendunning/dunning/pkg/topology"
)

// A handler that fails dead-letters its message on the next-to-last
// delivery (deadLetter). A message whose handler never finishes (its
// process SIGKILLed, or hung past the ack wait, on every delivery) reaches
// MaxDeliver with no handler having seen it fail, and JetStream stops
// delivering it: without this it would vanish with no trace but a server
// advisory. Every router listens to its consumers' max-deliveries
// advisories, reads the message back by its stream sequence and
// dead-letters it as abandoned. Each replica of a service hears the same
// advisory; the dead letter's message ID is the one deadLetter uses, so the
// DLQ stream keeps one. An advisory sent while no replica runs is not
// heard (advisories are not stored).

// maxDeliveriesAdvisory is the part of the server's advisory
// (io.nats.jetstream.advisory.v1.max_deliver) read here.
type maxDeliveriesAdvisory struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries int    `json:"deliveries"`
}

func (rt *Router) watchMaxDeliveries() error {
	rt.mu.Lock()
	specs := make([]topology.ConsumerSpec, 0, len(rt.specs))
	for _, s := range rt.specs {
		specs = append(specs, s)
	}
	rt.mu.Unlock()
	for _, s := range specs {
		if _, err := rt.nc.Subscribe(topology.MaxDeliveriesAdvisory(s.Stream, s.Name), rt.onMaxDeliveries); err != nil {
			return fmt.Errorf("listening for %s's max-deliveries advisories: %w", s.Name, err)
		}
	}
	return nil
}

func (rt *Router) onMaxDeliveries(m *nats.Msg) {
	var a maxDeliveriesAdvisory
	if err := json.Unmarshal(m.Data, &a); err != nil || a.StreamSeq == 0 || a.Consumer == "" {
		rt.cfg.Logger.Error("unreadable max-deliveries advisory", "subject", m.Subject, "err", err)
		return
	}
	// Not in the subscription's goroutine: reading the message back and
	// publishing the dead letter are round trips.
	go func() {
		if err := rt.deadLetterAbandoned(a); err != nil {
			rt.cfg.Logger.Error("a message ran out of deliveries and could not be dead-lettered", "consumer", a.Consumer,
				"stream_seq", a.StreamSeq, "err", err)
		}
	}()
}

func (rt *Router) deadLetterAbandoned(a maxDeliveriesAdvisory) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dl := nats.NewMsg("")
	var subject string
	reason := fmt.Sprintf("no handler finished it in %d deliveries (its process crashed or hung on each); JetStream stopped delivering it", a.Deliveries)
	st, err := rt.js.Stream(ctx, a.Stream)
	if err == nil {
		var raw *jetstream.RawStreamMsg
		raw, err = st.GetMsg(ctx, a.StreamSeq)
		if err == nil {
			dl.Data = raw.Data
			for k, vs := range raw.Header {
				for _, v := range vs {
					dl.Header.Add(origHeaderPrefix+k, v)
				}
			}
			subject = raw.Subject
		}
	}
	if err != nil {
		if !errors.Is(err, jetstream.ErrMsgNotFound) {
			return fmt.Errorf("reading message %d of %s: %w", a.StreamSeq, a.Stream, err)
		}
		// Gone already (a purged timer's fired step): the dead letter
		// still says what ran out of deliveries.
		reason += "; the message is no longer in the stream"
	}
	ack, err := rt.sendDLQ(ctx, dl, a.Consumer, ClassAbandoned, subject, strconv.FormatUint(a.StreamSeq, 10), reason)
	if err != nil {
		return err
	}
	if !ack.Duplicate {
		// Counted once, by the replica whose dead letter was stored.
		if rt.cfg.Metrics != nil {
			rt.cfg.Metrics.DeadLetters.WithLabelValues(a.Consumer, ClassAbandoned).Inc()
		}
		rt.cfg.Logger.Warn("message dead-lettered", "consumer", a.Consumer, "class", ClassAbandoned,
			"stream_seq", a.StreamSeq, "reason", reason)
	}
	return nil
}
