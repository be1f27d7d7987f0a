package pipeline

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/opendunning/dunning/pkg/topology"
)

// LagCollector exports, at each scrape, how far behind each of the
// process's durable consumers is: messages not yet delivered (pending) and
// delivered but not yet acknowledged (ack pending), read from the server's
// consumer info, which every service may read for its own consumers. A
// consumer whose info cannot be read within the timeout is left out of
// that scrape (dunning_consumer_info_errors_total counts it) rather than
// reported as zero.
type LagCollector struct {
	js        jetstream.JetStream
	consumers []topology.ConsumerSpec
	timeout   time.Duration

	pending, ackPending, redelivered *prometheus.Desc
	errors                           prometheus.Counter
}

// NewLagCollector returns the collector of consumers' lag.
func NewLagCollector(js jetstream.JetStream, consumers []topology.ConsumerSpec) *LagCollector {
	label := []string{"consumer"}
	return &LagCollector{js: js, consumers: consumers, timeout: 2 * time.Second,
		pending: prometheus.NewDesc("dunning_consumer_pending",
			"Messages of the durable consumer's stream not yet delivered to it (its backlog).", label, nil),
		ackPending: prometheus.NewDesc("dunning_consumer_ack_pending",
			"Messages delivered to the durable consumer and not yet acknowledged (being handled, or lost with a process until redelivered).", label, nil),
		redelivered: prometheus.NewDesc("dunning_consumer_redelivered",
			"Messages delivered to the durable consumer more than once and not yet acknowledged.", label, nil),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "dunning", Name: "consumer_info_errors_total",
			Help: "Scrapes that could not read a consumer's info from the server (that consumer's lag is missing from them)."}),
	}
}

// Describe implements prometheus.Collector.
func (c *LagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.ackPending
	ch <- c.redelivered
	c.errors.Describe(ch)
}

// lagReaders bounds the consumer-info requests one scrape has in flight:
// with K partitions a process has about ten consumers per partition, and
// read one after another on a loaded cluster the last of K = 16 would not
// fit in the scrape's timeout.
const lagReaders = 8

// Collect implements prometheus.Collector.
func (c *LagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	infos := make([]*jetstream.ConsumerInfo, len(c.consumers))
	var g errgroup.Group
	g.SetLimit(lagReaders)
	for i, spec := range c.consumers {
		g.Go(func() error {
			// Opening the consumer fetches its info: one round trip,
			// read from the cache, not a second. A failure is counted
			// below, per consumer left out.
			if cons, err := c.js.Consumer(ctx, spec.Stream, spec.Name); err == nil {
				infos[i] = cons.CachedInfo()
			}
			return nil
		})
	}
	_ = g.Wait() // every function returns nil
	for i, spec := range c.consumers {
		info := infos[i]
		if info == nil {
			c.errors.Inc()
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(info.NumPending), spec.Name)
		ch <- prometheus.MustNewConstMetric(c.ackPending, prometheus.GaugeValue, float64(info.NumAckPending), spec.Name)
		ch <- prometheus.MustNewConstMetric(c.redelivered, prometheus.GaugeValue, float64(info.NumRedelivered), spec.Name)
	}
	c.errors.Collect(ch)
}
