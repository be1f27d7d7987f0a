package app

import (
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/stage"
)

// Service returns what the named deployable runs: dunningd (everything, on
// an embedded server), gateway (lender API and NATS intake), notify
// (the release gate, dispatch and webhooks), or one stage by its service name in the stage
// table (overdue, contact, escalation, handoff with the agencies' feed,
// legal). Every main, and
// every test that runs a service, takes its options from here.
func Service(name string) (Options, bool) {
	switch name {
	case "dunningd":
		return Options{Name: name, Stages: stage.Table, Intake: true, Dispatch: true, Notify: true, Feed: true, API: true,
			Embedded: true, DefaultHTTP: "127.0.0.1:8080"}, true
	case "gateway":
		return Options{Name: name, Intake: true, API: true, DefaultHTTP: ":8080"}, true
	case "notify":
		return Options{Name: name, Stages: []stage.Stage{stage.Release}, Dispatch: true, Notify: true, DefaultHTTP: ":9090"}, true
	}
	s, ok := stage.ByService(name)
	if !ok {
		return Options{}, false
	}
	// The handoff service writes the agencies' feeds beside its placements.
	return Options{Name: name, Stages: []stage.Stage{s}, Feed: s.Policy == policy.StageHandoff, DefaultHTTP: ":9090"}, true
}
