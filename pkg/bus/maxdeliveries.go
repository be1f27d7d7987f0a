package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A handler that fails dead-letters its message on the next-to-last
// delivery (deadLetter). A message whose handler never finishes (its
// process SIGKILLed, or hung past the keep-alive limit, on every delivery)
// reaches MaxDeliver with no handler having seen it fail, and JetStream
// stops delivering it: without this it would vanish with no trace but a
// server advisory. The advisories are kept in a stream
// (topology.StreamAdvisories), and each consumer's service runs, beside
// it, the consumer of its advisories (topology.Abandoned): it reads the
// message back by its stream sequence and dead-letters it as abandoned.
// One replica takes each advisory (a durable pull consumer), and one sent
// while no replica ran waits in the stream for the next to start. The
// dead letter's message ID is the one deadLetter uses, so the DLQ stream
// keeps one however often an advisory is redelivered.

// maxDeliveriesAdvisory is the part of the server's advisory
// (io.nats.jetstream.advisory.v1.max_deliver) read here.
type maxDeliveriesAdvisory struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries int    `json:"deliveries"`
}

// onAbandoned handles one advisory from the advisories stream.
func (rt *Router) onAbandoned(msg *message.Message) error {
	var a maxDeliveriesAdvisory
	if err := json.Unmarshal(msg.Payload, &a); err != nil || a.StreamSeq == 0 || a.Consumer == "" || a.Stream == "" {
		return Permanent(fmt.Errorf("unreadable max-deliveries advisory %q: %v", msg.Payload, err))
	}
	return rt.deadLetterAbandoned(msg.Context(), a)
}

func (rt *Router) deadLetterAbandoned(ctx context.Context, a maxDeliveriesAdvisory) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
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
