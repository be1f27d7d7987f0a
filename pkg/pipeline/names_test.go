package pipeline

import (
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/opendunning/dunning/pkg/codec"
	"github.com/opendunning/dunning/pkg/feed"
	"github.com/opendunning/dunning/pkg/stage"
	"github.com/opendunning/dunning/pkg/topology"
)

// Streams, subjects, durable consumers and kind tokens are stored data:
// messages already in a stream are found by them, and a durable consumer's
// position is kept under its name. This test pins them, so that a refactor
// that renames one fails here instead of orphaning data.
func TestNamesArePinned(t *testing.T) {
	var streams []string
	for _, sc := range topology.DefaultTopology().StreamConfigs() {
		from := sc.Subjects
		for _, src := range sc.Sources {
			from = append(from, "<"+src.Name)
		}
		streams = append(streams, sc.Name+" "+strings.Join(from, ","))
	}
	wantStreams := []string{"DUNNING_LOANS dunning.loan.0.*.*.*,dunning.loan.0.*.*.*.*,dunning.loan.0.*.*.*.*.*,dunning.borrower.0.*.*.*,dunning.capacity.0.*.*", "DUNNING_RECORD <DUNNING_LOANS", "DUNNING_INTAKE dunning.in.0.*.*",
		"DUNNING_TASKS dunning.task.>", "DUNNING_DLQ dunning.dlq.>", "DUNNING_REJECTIONS dunning.rejected.*.*", "DUNNING_VERIFY dunning.verify.*", "DUNNING_AGENCIES dunning.agency.*.*.*", "DUNNING_OUTCOMES dunning.outcome.*.*.*",
		"DUNNING_ADVISORIES $JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.*.*", "DUNNING_AUDIT dunning.audit.*"}
	if !reflect.DeepEqual(streams, wantStreams) {
		t.Errorf("streams = %q\nwant %q", streams, wantStreams)
	}

	got := map[string][]string{}
	var names []string
	for _, c := range Consumers(1) {
		names = append(names, c.Name)
		got[c.Name] = append([]string{c.Stream}, c.Filters...)
	}
	want := map[string][]string{
		"intake": {"DUNNING_INTAKE", "dunning.in.0.*.*"},
		"overdue-confirmation": {"DUNNING_LOANS", "dunning.loan.0.*.*.due.*", "dunning.loan.0.*.*.repaid.*",
			"dunning.loan.0.*.*.settled", "dunning.loan.0.*.*.hold.*", "dunning.loan.0.*.*.unhold.*", "dunning.loan.0.*.*.promise.*", "dunning.loan.0.*.*.plan.*", "dunning.loan.0.*.*.unplan.*", "dunning.loan.0.*.*.step.confirm.*"},
		"first-contact":       {"DUNNING_LOANS", "dunning.loan.0.*.*.overdue.*", "dunning.loan.0.*.*.step.contact.*"},
		"escalation":          {"DUNNING_LOANS", "dunning.loan.0.*.*.step.escalate.*"},
		"third-party-handoff": {"DUNNING_LOANS", "dunning.loan.0.*.*.step.handoff.*"},
		"legal-referral":      {"DUNNING_LOANS", "dunning.loan.0.*.*.step.legal.*"},
		"contact-release": {"DUNNING_LOANS", "dunning.loan.0.*.*.contact.*", "dunning.loan.0.*.*.escalated.*",
			"dunning.loan.0.*.*.closed.*", "dunning.loan.0.*.*.outcome.*", "dunning.loan.0.*.*.agency.*", "dunning.loan.0.*.*.step.release.*"},
		"dispatch":        {"DUNNING_LOANS", "dunning.loan.0.*.*.released.*"},
		"notify":          {"DUNNING_TASKS", "dunning.task.>"},
		"agency-feed":     {"DUNNING_LOANS", "dunning.loan.0.*.*.handoff.*", "dunning.loan.0.*.*.recall.*", "dunning.loan.0.*.*.closed.*"},
		"agency-outcomes": {"DUNNING_OUTCOMES", "dunning.outcome.*.*.*"},
	}
	// Each with the consumer of its max-deliveries advisories.
	for name, w := range maps.Clone(want) {
		want["abandoned-"+name] = []string{"DUNNING_ADVISORIES", "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + w[0] + "." + name}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("consumers = %q\nwant %q", got, want)
	}
	if len(names) != len(want) {
		t.Errorf("consumer names %q are not unique", names)
	}

	var tokens []string
	for _, k := range codec.Kinds {
		tokens = append(tokens, string(k.Token))
	}
	wantTokens := []string{"due", "repaid", "settled", "outcome", "preference", "hours", "hold", "unhold", "promise", "plan", "unplan", "balance", "legalout", "timer", "step",
		"overdue", "contact", "escalated", "handoff", "legal", "closed", "cancelled", "deferred",
		"held", "released", "suppressed", "unsent", "deadline", "recall", "kept", "broken", "planmissed", "planbroken", "plandone", "legalblocked", "unconfirmed", "recallrefused", "agency", "seal"}
	if !reflect.DeepEqual(tokens, wantTokens) {
		t.Errorf("kind tokens = %q\nwant %q", tokens, wantTokens)
	}

	subjects := []string{
		topology.LoanRef{Tenant: "acme", Loan: "L-1"}.Subject(codec.Due.Token, "i1"),
		topology.LoanRef{Tenant: "acme", Loan: "L-1"}.Decision(codec.Escalated.Token, 7),
		topology.LoanRef{Tenant: "acme", Loan: "L-1"}.Timer(),
		topology.LoanRef{Tenant: "acme", Loan: "L-1"}.Step("legal", 9),
		topology.IntakeSubject("acme", "L-1"),
		topology.TaskSubject("sms", "acme", "L-1", "c1"),
		topology.DLQSubject("intake"),
	}
	wantSubjects := []string{"dunning.loan.0.acme.L-1.due.i1", "dunning.loan.0.acme.L-1.escalated.s7", "dunning.loan.0.acme.L-1.timer",
		"dunning.loan.0.acme.L-1.step.legal.s9", "dunning.in.acme.L-1", "dunning.task.sms.acme.L-1.c1", "dunning.dlq.intake"}
	if !reflect.DeepEqual(subjects, wantSubjects) {
		t.Errorf("subjects = %q\nwant %q", subjects, wantSubjects)
	}
}

// Every stream subject the consumers filter on lies in their stream, and no
// two consumers share a filter (each event has one owner), but for the
// agencies' feed: a projection that decides nothing, it reads the closings
// the release gate owns (a cure recalls the placement).
func TestConsumersDeclared(t *testing.T) {
	for _, k := range []topology.Partitions{1, 3} {
		consumersDeclared(t, k)
	}
}

func consumersDeclared(t *testing.T, k topology.Partitions) {
	streams := map[string][]string{}
	for _, sc := range (topology.Topology{Partitions: k}).StreamConfigs() {
		streams[sc.Name] = sc.Subjects
	}
	seen := map[string]string{}
	for _, c := range Consumers(k) {
		subjects, ok := streams[c.Stream]
		if !ok {
			t.Errorf("consumer %s on undeclared stream %s", c.Name, c.Stream)
		}
		for _, f := range c.Filters {
			if other, dup := seen[f]; dup && !strings.HasPrefix(c.Name, feed.Consumer.Name) {
				t.Errorf("filter %s on both %s and %s", f, other, c.Name)
			}
			if !strings.HasPrefix(c.Name, feed.Consumer.Name) {
				seen[f] = c.Name
			}
			if !slices.ContainsFunc(subjects, func(s string) bool { return topology.Match(s, f) }) {
				t.Errorf("%d partitions: consumer %s filters %s, outside its stream's %s", k, c.Name, f, subjects)
			}
		}
	}
}

// Every series a process's parts can count is exported at 0 before its
// first event: the escalation service's escalations, conflicts and dead
// letters, and intake's results by source.
func TestSeriesStartAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.initSeries(Parts{Stages: []stage.Stage{stage.Table[2]}, Intake: true}, 1)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := map[string]int{}
	for _, mf := range mfs {
		series[mf.GetName()] = len(mf.GetMetric())
	}
	for name, want := range map[string]int{
		"dunning_decisions_total":       len(stage.Table[2].Writes), // escalation's kinds
		"dunning_log_conflicts_total":   1,
		"dunning_dead_letters_total":    2 * 3, // escalation and intake: permanent, exhausted and abandoned
		"dunning_redeliveries_total":    2,
		"dunning_lender_events_total":   2 * 3,
		"dunning_step_lateness_seconds": 1,
	} {
		if series[name] != want {
			t.Errorf("%s: %d series before any event, want %d", name, series[name], want)
		}
	}
	if v := testutil.ToFloat64(m.Stage.Decisions.WithLabelValues("escalation", "escalated")); v != 0 {
		t.Errorf("escalations before any = %v", v)
	}
}
