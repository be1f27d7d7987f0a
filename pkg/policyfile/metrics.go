package policyfile

import "github.com/prometheus/client_golang/prometheus"

// Metrics count policy reloads by result (ok, failed).
type Metrics struct {
	Reloads *prometheus.CounterVec
}

// NewMetrics registers the reload counter on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{Reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dunning", Name: "policy_reloads_total",
		Help: "Policy reloads by result; a failed one leaves the previous policies in force."}, []string{"result"})}
	reg.MustRegister(m.Reloads)
	return m
}

// Count records one reload attempt; it is what a Live's OnReload calls.
func (m *Metrics) Count(err error) {
	result := "ok"
	if err != nil {
		result = "failed"
	}
	m.Reloads.WithLabelValues(result).Inc()
}
