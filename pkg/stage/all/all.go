// Package all lists the five stages in ladder order, for the all-in-one
// binary and for tests that run the whole pipeline.
package all

import (
	"github.com/opendunning/dunning/pkg/stage"
	"github.com/opendunning/dunning/pkg/stage/contact"
	"github.com/opendunning/dunning/pkg/stage/escalation"
	"github.com/opendunning/dunning/pkg/stage/handoff"
	"github.com/opendunning/dunning/pkg/stage/legal"
	"github.com/opendunning/dunning/pkg/stage/overdue"
)

// Stages returns overdue confirmation, first contact, escalation,
// third-party handoff and legal referral.
func Stages() []stage.Stage {
	return []stage.Stage{overdue.Stage(), contact.Stage(), escalation.Stage(), handoff.Stage(), legal.Stage()}
}

// ByName returns a stage by its service name (overdue, contact, escalation, handoff, legal).
func ByName(name string) (stage.Stage, bool) {
	s, ok := map[string]stage.Stage{"overdue": overdue.Stage(), "contact": contact.Stage(), "escalation": escalation.Stage(),
		"handoff": handoff.Stage(), "legal": legal.Stage()}[name]
	return s, ok
}
