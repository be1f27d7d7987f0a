// Package access is who may do what on NATS: the parties of a deployment
// (admin, the pipeline's services, one lender per tenant, one agency per
// agency ID), the subjects each may publish and subscribe, and the server
// configuration that enforces them.
//
// The model is nats-server's own: accounts and users with permissions,
// declared in the server's configuration, each user authenticated by an
// nkey (an Ed25519 key pair; the server holds only the public key and
// checks a signature of a nonce it chose, so no secret crosses the wire
// or sits in the configuration). See the README ("Who may do what") for why
// this and not operator/account JWTs.
//
//   - Account DUNNING holds every stream and the pipeline's identities:
//     admin (everything) and one user per service, allowed exactly the
//     consumers it runs and the subjects it writes.
//   - Lenders are users of account LENDERS, which imports one service from
//     DUNNING: the intake subjects, which both accounts map from
//     dunning.in.<tenant>.<loan> to dunning.in.<p>.<tenant>.<loan>, p the
//     loan's partition. Each lender user may publish only its own tenant's,
//     and read only its own inbox. Nothing else of DUNNING exists in LENDERS: no loan
//     log, no task, no $JS.API.
//   - Agencies are users of account AGENCIES; their feed is imported there
//     when the agency integration exists.
package access

import (
	"fmt"
	"slices"
	"strings"

	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/topology"
)

// Role is the kind of party an identity is.
type Role string

const (
	// RoleAdmin provisions and operates: the only role that may create or
	// delete streams and consumers, purge, or read everything.
	RoleAdmin Role = "admin"
	// RoleService is one of the pipeline's deployables (app.Service names).
	RoleService Role = "service"
	// RoleLender publishes one tenant's lender events.
	RoleLender Role = "lender"
	// RoleAgency is a collection agency: it reads its own placements and
	// reports their outcomes (the agency feed builds on it).
	RoleAgency Role = "agency"
)

// The accounts. DUNNING holds the pipeline's streams and identities;
// LENDERS every tenant's lender users, each allowed its own tenant's intake
// subjects only; AGENCIES every agency's users.
const (
	AccountDunning  = "DUNNING"
	AccountLenders  = "LENDERS"
	AccountAgencies = "AGENCIES"
)

// Identity is one party: its role and its name (the service, the tenant,
// the agency; "admin" for the admin).
type Identity struct {
	Role Role
	Name string
}

// Admin is the one admin identity.
var Admin = Identity{RoleAdmin, "admin"}

// Service, Lender and Agency name identities.
func Service(name string) Identity  { return Identity{RoleService, name} }
func Lender(tenant string) Identity { return Identity{RoleLender, tenant} }
func Agency(id string) Identity     { return Identity{RoleAgency, id} }

// String is the identity's ID, "<role>-<name>" ("admin" for the admin):
// its credential files and its inbox prefix are named by it.
func (id Identity) String() string {
	if id.Role == RoleAdmin {
		return "admin"
	}
	return string(id.Role) + "-" + id.Name
}

// ParseIdentity reads an identity ID ("admin", "service-overdue",
// "lender-acme", "agency-collectco").
func ParseIdentity(s string) (Identity, error) {
	if s == "admin" {
		return Admin, nil
	}
	r, name, ok := strings.Cut(s, "-")
	id := Identity{Role(r), name}
	if !ok {
		return Identity{}, fmt.Errorf("identity %q: want admin, service-NAME, lender-TENANT or agency-ID", s)
	}
	return id, id.Validate()
}

// Validate checks the role and that the name can be a subject token.
func (id Identity) Validate() error {
	switch id.Role {
	case RoleAdmin:
		if id != Admin {
			return fmt.Errorf("identity %q: the admin identity is named admin", id.Name)
		}
		return nil
	case RoleService, RoleLender, RoleAgency:
	default:
		return fmt.Errorf("identity role %q: want admin, service, lender or agency", id.Role)
	}
	if !policy.ValidID(id.Name) {
		return fmt.Errorf("identity %s: the name must be 1-64 characters of A-Z, a-z, 0-9, '-' or '_'", id.Role)
	}
	return nil
}

// Inbox is the identity's reply-subject prefix. Each identity may subscribe
// only below its own, so no party reads another's replies; its clients set
// it with nats.CustomInboxPrefix.
func (id Identity) Inbox() string { return "_INBOX_" + id.String() }

// Account is the NATS account the identity's users belong to.
func (id Identity) Account() string {
	switch id.Role {
	case RoleLender:
		return AccountLenders
	case RoleAgency:
		return AccountAgencies
	}
	return AccountDunning
}

// Permissions are the subjects one identity may publish and subscribe to;
// anything not allowed is refused by the server.
type Permissions struct {
	Publish   []string
	Subscribe []string
}

// Grant is what a service does on NATS, in the pipeline's terms: the
// durable consumers it runs, the data subjects it writes, and whether it
// reads loan logs. Package pipeline computes it from the parts a process
// runs, so permissions follow the tables that declare those parts.
type Grant struct {
	Consumers []topology.ConsumerSpec
	// Publish lists the data subjects (filters) it may write.
	Publish []string
	// ReadLog allows direct gets on the loans streams (reading a loan's log).
	ReadLog bool
	// ReadCodes allows direct gets on the verification index.
	ReadCodes bool
	// WatchIntake allows reading the intake consumer's info: a process whose
	// work gives way to lender facts watches its backlog (bus.Yield).
	WatchIntake bool
	// ReadIntake allows direct gets on the intake stream and reading the
	// intake consumer's info: the release gate waits for a loan's lender
	// events still there (loanlog.Intake).
	ReadIntake bool
}

// ServicePermissions turns a service's grant into subjects, with the loans
// spread over parts partitions (each loans-stream consumer on each
// partition's stream). Every service may also look up the declared
// streams' and its consumers' info (to check the topology at start and for
// /readyz) and dead-letter what its consumers cannot process; it may
// create, update or delete nothing.
func ServicePermissions(id Identity, g Grant, parts topology.Partitions) Permissions {
	p := Permissions{Subscribe: []string{id.Inbox() + ".>"}}
	for _, s := range (topology.Topology{Partitions: parts}).Streams() {
		p.Publish = append(p.Publish, "$JS.API.STREAM.INFO."+s)
	}
	// Each consumer with the consumer of its max-deliveries advisories: a
	// message it ran out of deliveries for without an ack is announced
	// there, and the service dead-letters it (bus).
	for _, c := range topology.WithAbandoned(parts.Spread(g.Consumers)) {
		p.Publish = append(p.Publish,
			"$JS.API.CONSUMER.INFO."+c.Stream+"."+c.Name,
			"$JS.API.CONSUMER.MSG.NEXT."+c.Stream+"."+c.Name,
			"$JS.ACK."+c.Stream+"."+c.Name+".>",
			// Reading such a message back by its sequence, to dead-letter it
			// (nats.go sends it as a direct get where the stream allows those).
			"$JS.API.STREAM.MSG.GET."+c.Stream, "$JS.API.DIRECT.GET."+c.Stream,
			topology.DLQSubject(c.Name))
	}
	if g.ReadLog {
		for _, s := range parts.Streams() {
			p.Publish = append(p.Publish, "$JS.API.DIRECT.GET."+s, "$JS.API.DIRECT.GET."+s+".>")
		}
	}
	if g.ReadCodes {
		p.Publish = append(p.Publish, "$JS.API.DIRECT.GET."+topology.StreamVerify, "$JS.API.DIRECT.GET."+topology.StreamVerify+".>")
	}
	if g.WatchIntake || g.ReadIntake {
		for _, c := range parts.Spread([]topology.ConsumerSpec{topology.Intake}) {
			p.Publish = append(p.Publish, "$JS.API.CONSUMER.INFO."+c.Stream+"."+c.Name)
		}
	}
	if g.ReadIntake {
		p.Publish = append(p.Publish, "$JS.API.DIRECT.GET."+topology.StreamIntake)
	}
	p.Publish = append(p.Publish, g.Publish...)
	p.Publish = dedupe(p.Publish)
	return p
}

// LenderPermissions: a tenant's lender publishes that tenant's intake
// subjects, reads why intake refused its events (live on its tenant's
// rejection subjects, or a loan's latest by direct get), all imported from
// DUNNING, and reads its own replies. The server checks a publish on the
// subject its mapping made of it, dunning.in.<p>.<tenant>.<loan>
// (topology.IntakeMapping), so that is what is allowed; an event published
// there straight with another partition than the loan's is refused by
// intake.
func LenderPermissions(id Identity) Permissions {
	return Permissions{
		Publish:   []string{topology.LenderIntake(id.Name), RejectionGet(id.Name, "*")},
		Subscribe: []string{id.Inbox() + ".>", topology.RejectionSubject(id.Name, "*")},
	}
}

// RejectionGet is the request subject a lender sends (with an empty body)
// to read why intake last refused an event of tenant's loan: a direct get
// of the rejections stream's last message on that loan's subject.
func RejectionGet(tenant, loan string) string {
	return "$JS.API.DIRECT.GET." + topology.StreamRejections + "." + topology.RejectionSubject(tenant, loan)
}

// AgencyPermissions: an agency reads its own feed through its own consumer
// (the consumer's info and pull requests under the feed's API prefix, and
// acks; imported from DUNNING), and its own replies. It creates no
// consumer, gets no stream info and no direct get: the other agencies'
// subjects stay out of its reach.
func AgencyPermissions(id Identity) Permissions {
	c := topology.AgencyConsumer(id.Name)
	return Permissions{
		Publish: []string{
			topology.AgencyAPIPrefix + ".CONSUMER.INFO." + topology.StreamAgencies + "." + c,
			topology.AgencyAPIPrefix + ".CONSUMER.MSG.NEXT." + topology.StreamAgencies + "." + c,
			"$JS.ACK." + topology.StreamAgencies + "." + c + ".>",
			// Its reports, on its own subjects (the stream's ack comes back
			// through the import).
			topology.OutcomeSubject(id.Name, "*", "*"),
		},
		Subscribe: []string{id.Inbox() + ".>"},
	}
}

// AgencyImport is one subject the agencies' account imports from the
// pipeline's: exported as Subject, seen by the agencies as To, and how it
// answers.
type AgencyImport struct{ Subject, To, Response string }

// AgencyImports are the JetStream API subjects the pipeline's account
// exports to the agencies' account; an agency's user permissions narrow
// them to its own consumer. The API subjects are imported under the feed's
// own prefix (topology.AgencyAPIPrefix), not as $JS.API: every account has
// $JS.API of its own, which answers "JetStream not enabled" for one without
// JetStream, and would race the import.
func AgencyImports() []AgencyImport {
	api := func(op string) (string, string) {
		return "$JS.API." + op + "." + topology.StreamAgencies + ".*", topology.AgencyAPIPrefix + "." + op + "." + topology.StreamAgencies + ".*"
	}
	info, infoTo := api("CONSUMER.INFO")
	next, nextTo := api("CONSUMER.MSG.NEXT")
	ack := "$JS.ACK." + topology.StreamAgencies + ".>"
	return []AgencyImport{
		{info, infoTo, "singleton"},
		// A pull request is answered by many messages.
		{next, nextTo, "stream"},
		{ack, ack, "singleton"},
		{topology.OutcomeSubject("*", "*", "*"), topology.OutcomeSubject("*", "*", "*"), "singleton"},
	}
}

func dedupe(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}
