package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/opendunning/dunning/pkg/pipeline"
	"github.com/opendunning/dunning/pkg/policy"
)

// What an SRE opens first: every durable consumer's lag as metrics, read
// from the server at each scrape, and how late fired steps reach their
// stage. Five lender events published while nothing consumes show as the
// intake's backlog of 5; once the pipeline has handled them the backlog is
// 0 and nothing is unacknowledged; the confirmations' steps were observed
// by the step-lateness histogram.
func TestLagAndLatenessMetrics(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 100*time.Millisecond)
	reg := prometheus.NewRegistry()
	reg.MustRegister(pipeline.NewLagCollector(h.js, pipeline.Consumers(1)))
	gauge := func(name, consumer string) (float64, bool) {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "consumer" && l.GetValue() == consumer {
						return m.GetGauge().GetValue(), true
					}
				}
			}
		}
		return 0, false
	}
	const n = 5
	for i := range n {
		h.send(dueEvent(fmt.Sprintf("L-lag-%d", i), "1", 10000, time.Now().Add(-2*h.day)))
	}
	// The consumer's count follows the stream's writes a moment later.
	waitFor(t, 10*time.Second, func() error {
		if v, ok := gauge("dunning_consumer_pending", "intake"); !ok || v != n {
			return fmt.Errorf("intake backlog = %v (reported %v), want %d", v, ok, n)
		}
		return nil
	})
	for _, c := range pipeline.Consumers(1) {
		if _, ok := gauge("dunning_consumer_ack_pending", c.Name); !ok {
			t.Errorf("no dunning_consumer_ack_pending for %s", c.Name)
		}
	}
	h.startPipeline()
	for i := range n {
		h.waitKind(fmt.Sprintf("L-lag-%d", i), policy.KindContactRequested, 1, 10*time.Second)
	}
	waitFor(t, 10*time.Second, func() error {
		p, _ := gauge("dunning_consumer_pending", "intake")
		a, _ := gauge("dunning_consumer_ack_pending", "intake")
		if p != 0 || a != 0 {
			return fmt.Errorf("intake pending %v, ack pending %v; want 0", p, a)
		}
		return nil
	})
	var m dto.Metric
	if err := h.metricsOf("pipeline").Stage.StepLateness.WithLabelValues("overdue-confirmation").(prometheus.Histogram).Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetHistogram().GetSampleCount(); got < n {
		t.Errorf("step lateness observed %d confirmation steps, want at least %d", got, n)
	}
}
