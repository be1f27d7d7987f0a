package app

import (
	"slices"

	"github.com/opendunning/dunning/pkg/access"
	"github.com/opendunning/dunning/pkg/codec"
	"github.com/opendunning/dunning/pkg/dispatch"
	"github.com/opendunning/dunning/pkg/feed"
	"github.com/opendunning/dunning/pkg/outcome"
	"github.com/opendunning/dunning/pkg/topology"
)

// Grant is what a process with these options does on NATS, derived from
// the tables that declare its parts (the stage table's consumers and
// writes, the kind table's lender facts, the declared consumers): it
// becomes the process's NATS permissions (package access), so a service
// may do exactly its own work.
func Grant(o Options) access.Grant {
	var g access.Grant
	for _, s := range o.Stages {
		g.Consumers = append(g.Consumers, s.ConsumerSpec())
		g.Publish = append(g.Publish, s.Publishes()...)
		g.ReadLog = true
		// Claiming a verification code reads whose it is on a collision.
		g.ReadCodes = g.ReadCodes || slices.Contains(s.Writes, codec.Released)
		// Releasing a contact waits for lender events still in the intake.
		g.ReadIntake = g.ReadIntake || slices.Contains(s.Writes, codec.Released)
	}
	if o.Intake || o.API {
		// Recording lender events, and reading logs for timelines and
		// the currency check.
		for _, k := range codec.Kinds {
			if !k.Lender {
				continue
			}
			id := "*"
			if k.Shape == codec.Bare {
				id = ""
			}
			g.Publish = append(g.Publish, topology.LoanFilter(k.Token, id))
		}
		g.ReadLog = true
	}
	if o.API {
		// The public verification endpoint looks codes up.
		g.ReadCodes = true
		// A legal packet seals the loan's log.
		g.Publish = append(g.Publish, topology.LoanFilter(codec.Seal.Token, "*"))
	}
	if o.Intake {
		g.Consumers = append(g.Consumers, topology.Intake)
		// Telling a lender why its event was refused.
		g.Publish = append(g.Publish, topology.RejectionSubject("*", "*"))
	}
	if o.Dispatch {
		g.Consumers = append(g.Consumers, dispatch.Consumer)
		g.Publish = append(g.Publish, topology.TaskSubject("*", "*", "*", "*"))
	}
	if o.Notify {
		g.Consumers = append(g.Consumers, topology.Notify)
	}
	if o.Feed {
		// Reading the loan's log for the projection, writing the feeds,
		// and creating each agency's consumer on its first placement.
		g.Consumers = append(g.Consumers, feed.Consumer, outcome.Consumer)
		g.ReadLog = true
		// Recording the agencies' reports in the loans' logs, and the
		// promises, plans and disputes they carry as the lender's would be.
		g.Publish = append(g.Publish, topology.LoanFilter(codec.AgencyOutcome.Token, "*"),
			topology.LoanFilter(codec.Promise.Token, "*"), topology.LoanFilter(codec.Hold.Token, "*"), topology.LoanFilter(codec.Plan.Token, "*"))
		g.Publish = append(g.Publish, topology.AgencyFeedSubject("*", "*", "*"),
			"$JS.API.CONSUMER.CREATE."+topology.StreamAgencies+".*."+topology.AgencyFeedFilter("*"))
	}
	// Its own work gives way while lender facts wait (pipeline, bus.Yield).
	g.WatchIntake = slices.ContainsFunc(g.Consumers, topology.Yields)
	return g
}

// Grants is every deployable's grant by service name (package access
// writes them into the server's configuration).
func Grants(name string) (access.Grant, bool) {
	o, ok := Service(name)
	if !ok {
		return access.Grant{}, false
	}
	return Grant(o), true
}
