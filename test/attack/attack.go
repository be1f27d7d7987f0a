// Package attack is the NATS attack matrix of the trust-boundary tests:
// what no lender, agency or service credential may do to the pipeline,
// each attempt expected to fail as a permissions violation. It runs
// against dunningd's embedded server (test/integration) and against the
// cluster started from the shipped configuration files (deploy).
package attack

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/opendunning/dunning/pkg/access"
	"github.com/opendunning/dunning/pkg/codec"
	"github.com/opendunning/dunning/pkg/loanlog"
	"github.com/opendunning/dunning/pkg/natstest"
	"github.com/opendunning/dunning/pkg/pipeline"
	"github.com/opendunning/dunning/pkg/stage"
	"github.com/opendunning/dunning/pkg/topology"
)

// Target is a server under attack.
type Target struct {
	URL string
	// Keys holds every identity the matrix connects as: the lender of
	// Tenant, the agency "collect", and a service credential for each
	// stage, the gateway and notify.
	Keys access.Keyring
	// Options are added to every connection (e.g. the CA for TLS).
	Options []nats.Option
	// Tenant and Loan name a control loan the forged writes aim at.
	Tenant, Loan string
}

// Agency is the first of the agencies the matrix uses.
const Agency = "collect"

// Agencies are the three agencies whose feeds the matrix keeps apart.
var Agencies = []string{Agency, "collect-b", "collect-c"}

// Identities are the identities Run connects as, for the keyring.
func Identities(tenant string) []access.Identity {
	ids := []access.Identity{access.Lender(tenant), access.Service("gateway"), access.Service("notify")}
	for _, a := range Agencies {
		ids = append(ids, access.Agency(a))
	}
	for _, s := range stage.Table {
		ids = append(ids, access.Service(s.Service))
	}
	return ids
}

// Run tries every attack and reports each one not refused. It returns the
// number of attempts, each refused or reported.
func Run(t testing.TB, tg Target) int {
	t.Helper()
	m := matrix{t: t, tg: tg}
	ctl := tg.Loan
	tenant := tg.Tenant

	// No anonymous client, and no key the server does not know.
	m.refusedAtConnect("anonymous connect", tg.Options...)
	stranger, _ := nkeys.CreateUser()
	pub, _ := stranger.PublicKey()
	m.refusedAtConnect("unknown nkey", append(slices.Clone(tg.Options), nats.Nkey(pub, stranger.Sign))...)

	// What no party but the admin may do to the system of record.
	destructive := func(id access.Identity) {
		for _, s := range topology.DefaultTopology().Streams() {
			m.denied(id, "delete stream "+s, request("$JS.API.STREAM.DELETE."+s))
			m.denied(id, "purge stream "+s, request("$JS.API.STREAM.PURGE."+s))
			m.denied(id, "delete a message of "+s, request("$JS.API.STREAM.MSG.DELETE."+s))
			m.denied(id, "update stream "+s, request("$JS.API.STREAM.UPDATE."+s))
		}
		for _, c := range pipeline.Consumers(1) {
			m.denied(id, "delete consumer "+c.Name, request("$JS.API.CONSUMER.DELETE."+c.Stream+"."+c.Name))
		}
		m.denied(id, "create a consumer", request("$JS.API.CONSUMER.CREATE."+topology.StreamLoans))
		m.denied(id, "subscribe to every loan", subscribe("dunning.loan.>"))
		m.denied(id, "subscribe to every task", subscribe("dunning.task.>"))
		m.denied(id, "subscribe to every inbox", subscribe("_INBOX.>"))
		m.denied(id, "subscribe to a service's inbox", subscribe(access.Service("dunningd").Inbox()+".>"))
		m.denied(id, "subscribe to another lender's inbox", subscribe(access.Lender("globex").Inbox()+".>"))
	}

	// Lenders and agencies: outside parties.
	outside := []access.Identity{access.Lender(tenant)}
	for _, a := range Agencies {
		outside = append(outside, access.Agency(a))
	}
	for _, id := range outside {
		destructive(id)
		m.denied(id, "write a repayment into a loan's log", publish(topology.LoanRef{Tenant: tenant, Loan: ctl}.Subject(codec.Repaid.Token, "forged")))
		m.denied(id, "close a case", publish(topology.LoanRef{Tenant: tenant, Loan: ctl}.Decision(codec.Closed.Token, 1)))
		m.denied(id, "publish to another tenant's intake", publish(topology.IntakeSubject("globex", "L-1")))
		m.denied(id, "read a loan (direct get)", request("$JS.API.DIRECT.GET."+topology.StreamLoans+"."+topology.LoanRef{Tenant: tenant, Loan: ctl}.Subject(codec.Due.Token, "1")))
		m.denied(id, "read a loan's log (batch direct get)", request("$JS.API.DIRECT.GET."+topology.StreamLoans))
		m.denied(id, "stream info", request("$JS.API.STREAM.INFO."+topology.StreamLoans))
		m.denied(id, "account info", request("$JS.API.INFO"))
		m.denied(id, "listen to another tenant's rejections", subscribe(topology.RejectionSubject("globex", "*")))
		m.denied(id, "read another tenant's rejection", request(access.RejectionGet("globex", "L-1")))
		m.denied(id, "read the rejections stream whole", request("$JS.API.DIRECT.GET."+topology.StreamRejections))
	}
	// The agencies' feeds, the full matrix: each agency reaches its own
	// consumer only; no agency creates a consumer, reads the feed's stream
	// or gets a message of it directly; the lender reads no feed.
	feed := topology.StreamAgencies
	for _, a := range Agencies {
		id := access.Agency(a)
		m.denied(id, "publish a lender event", publish(topology.IntakeSubject(tenant, "L-1")))
		for _, api := range []string{topology.AgencyAPIPrefix, "$JS.API"} {
			m.denied(id, "create a consumer on its own feed ("+api+")", request(api+".CONSUMER.CREATE."+feed+"."+topology.AgencyConsumer(a)+"."+topology.AgencyFeedFilter(a)))
			m.denied(id, "delete its own consumer ("+api+")", request(api+".CONSUMER.DELETE."+feed+"."+topology.AgencyConsumer(a)))
		}
		m.denied(id, "create a consumer on the feeds", request("$JS.API.CONSUMER.CREATE."+feed))
		m.denied(id, "list the feeds' consumers", request("$JS.API.CONSUMER.LIST."+feed))
		m.denied(id, "the feeds' stream info", request("$JS.API.STREAM.INFO."+feed))
		m.denied(id, "read the feeds (direct get)", request("$JS.API.DIRECT.GET."+feed))
		m.denied(id, "read a feed message by sequence", request("$JS.API.STREAM.MSG.GET."+feed))
		m.denied(id, "subscribe to its own feed's subjects", subscribe(topology.AgencyFeedFilter(a)))
		m.denied(id, "write to its own feed", publish(topology.AgencyFeedSubject(a, "pl-1", topology.FeedRecalled)))
		m.denied(id, "write its outcome into a loan's log", publish(topology.LoanRef{Tenant: tenant, Loan: ctl}.Subject(codec.AgencyOutcome.Token, "forged")))
		for _, b := range Agencies {
			if b == a {
				continue
			}
			other := topology.AgencyConsumer(b)
			for _, api := range []string{topology.AgencyAPIPrefix, "$JS.API"} {
				m.denied(id, "read agency "+b+"'s feed ("+api+")", request(api+".CONSUMER.MSG.NEXT."+feed+"."+other))
				m.denied(id, "agency "+b+"'s consumer info ("+api+")", request(api+".CONSUMER.INFO."+feed+"."+other))
			}
			m.denied(id, "ack agency "+b+"'s messages", publish("$JS.ACK."+feed+"."+other+".1.1.1.1.0"))
			m.denied(id, "subscribe to agency "+b+"'s feed", subscribe(topology.AgencyFeedFilter(b)))
			m.denied(id, "write to agency "+b+"'s feed", publish(topology.AgencyFeedSubject(b, "pl-1", topology.FeedPlaced)))
			m.denied(id, "post agency "+b+"'s outcomes", publish(topology.OutcomeSubject(b, tenant, ctl)))
		}
	}
	for _, a := range Agencies {
		m.denied(access.Lender(tenant), "read agency "+a+"'s feed", request("$JS.API.CONSUMER.MSG.NEXT."+feed+"."+topology.AgencyConsumer(a)))
		m.denied(access.Lender(tenant), "post agency "+a+"'s outcomes", publish(topology.OutcomeSubject(a, tenant, ctl)))
	}

	// Services: each writes only its own kinds.
	for _, s := range stage.Table {
		id := access.Service(s.Service)
		destructive(id)
		for _, k := range codec.Kinds {
			if k.Decision == 0 || slices.Contains(s.Writes, k) {
				continue
			}
			m.denied(id, "write a "+string(k.Token)+" decision", publish(topology.LoanRef{Tenant: tenant, Loan: ctl}.Decision(k.Token, 1)))
		}
		m.denied(id, "write a repayment", publish(topology.LoanRef{Tenant: tenant, Loan: ctl}.Subject(codec.Repaid.Token, "forged")))
		if s.Service != stage.Release.Service { // notify runs the gate beside dispatch, which publishes tasks
			m.denied(id, "publish a contact task", publish(topology.TaskSubject("sms", tenant, ctl, "c-1")))
		}
		m.denied(id, "publish a lender event", publish(topology.IntakeSubject(tenant, ctl)))
	}
	id := access.Service("gateway")
	destructive(id)
	m.denied(id, "close a case", publish(topology.LoanRef{Tenant: tenant, Loan: ctl}.Decision(codec.Closed.Token, 1)))
	m.denied(id, "set a timer", publish(topology.LoanRef{Tenant: tenant, Loan: ctl}.Timer()))
	m.denied(id, "publish a contact task", publish(topology.TaskSubject("sms", tenant, ctl, "c-1")))
	m.denied(access.Service("notify"), "write a repayment", publish(topology.LoanRef{Tenant: tenant, Loan: ctl}.Subject(codec.Repaid.Token, "forged")))
	return m.attempts
}

type matrix struct {
	t        testing.TB
	tg       Target
	attempts int
}

func (m *matrix) refusedAtConnect(what string, opts ...nats.Option) {
	m.t.Helper()
	m.attempts++
	nc, err := nats.Connect(m.tg.URL, append(opts, nats.Name("attacker"))...)
	if err == nil {
		nc.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "Authorization Violation") {
		m.t.Errorf("%s: %v, want an authorization violation", what, err)
	}
}

// Connect connects as id with the target's options, reporting the errors
// the server sends asynchronously (a refused publish or subscription) on
// the returned channel.
func Connect(t testing.TB, tg Target, id access.Identity) (*nats.Conn, <-chan error) {
	t.Helper()
	auth, err := tg.Keys.Option(id)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 16)
	opts := append(slices.Clone(tg.Options), auth, nats.Name("attacker-"+id.String()),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case errs <- err:
			default:
			}
		}))
	nc, err := nats.Connect(tg.URL, opts...)
	if err != nil {
		t.Fatalf("connecting as %s: %v", id, err)
	}
	t.Cleanup(nc.Close)
	return nc, errs
}

// Denied runs one attempt as id on the target and reports it unless the
// server refuses it with a permissions violation.
func Denied(t testing.TB, tg Target, id access.Identity, what string, attempt func(nc *nats.Conn) error) {
	t.Helper()
	m := matrix{t: t, tg: tg}
	m.denied(id, what, attempt)
}

// Publish, Request and Subscribe are attempts for Denied.
var (
	Publish   = publish
	Request   = request
	Subscribe = subscribe
)

// denied runs one attempt on a fresh connection as id and reports it
// unless the server refuses it with a permissions violation.
func (m *matrix) denied(id access.Identity, what string, attempt func(nc *nats.Conn) error) {
	m.t.Helper()
	m.attempts++
	nc, errs := Connect(m.t, m.tg, id)
	defer nc.Close()
	err := attempt(nc)
	if err == nil {
		err = nc.Flush()
	}
	if IsPermission(err) {
		return
	}
	// A refusal arrives at once; an allowed attempt is known only by
	// none arriving, so this wait bounds only the failing case.
	select {
	case async := <-errs:
		if IsPermission(async) {
			return
		}
		m.t.Errorf("%s: %s: %v (then %v), want a permissions violation", id, what, err, async)
	case <-time.After(3 * time.Second):
		m.t.Errorf("%s: %s: %v and no permissions violation reported", id, what, err)
	}
}

// IsPermission reports whether err is the server refusing a permission.
func IsPermission(err error) bool {
	return err != nil && (errors.Is(err, nats.ErrPermissionViolation) || strings.Contains(strings.ToLower(err.Error()), "permissions violation"))
}

func publish(subject string) func(*nats.Conn) error {
	return func(nc *nats.Conn) error { return nc.Publish(subject, []byte("forged")) }
}

// request sends a request without waiting for its answer: a refused one
// never gets any (the server reports the violation asynchronously, at
// once), and an allowed one is seen by no violation within denied's wait.
func request(subject string) func(*nats.Conn) error {
	return func(nc *nats.Conn) error { return nc.PublishRequest(subject, nc.NewRespInbox(), []byte("{}")) }
}

func subscribe(subject string) func(*nats.Conn) error {
	return func(nc *nats.Conn) error {
		_, err := nc.SubscribeSync(subject)
		return err
	}
}

// Reader reads a loan's log as stored (loanlog.Log, as admin).
type Reader interface {
	ReadRaw(ctx context.Context, tenant, loan string) ([]loanlog.Raw, uint64, error)
}

// Snapshot is the control loans' logs before the attacks.
type Snapshot map[string][]loanlog.Raw

// Take reads the control loans' logs, each once it holds at least
// minEntries entries (within 30 s).
func Take(t testing.TB, r Reader, tenant string, loans []string, minEntries int) Snapshot {
	t.Helper()
	s := Snapshot{}
	for _, l := range loans {
		natstest.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
			raw, _, err := r.ReadRaw(context.Background(), tenant, l)
			if err != nil || len(raw) < minEntries {
				return fmt.Errorf("control loan %s: %d entries (%v), want %d", l, len(raw), err, minEntries)
			}
			s[l] = raw
			return nil
		})
	}
	return s
}

// Unchanged reports every control loan whose log differs from the
// snapshot: an entry added, removed or altered.
func (s Snapshot) Unchanged(t testing.TB, r Reader, tenant string) {
	t.Helper()
	for l, before := range s {
		after, _, err := r.ReadRaw(context.Background(), tenant, l)
		if err != nil {
			t.Fatal(err)
		}
		if len(after) != len(before) {
			t.Errorf("%s: %d entries after the attacks, %d before", l, len(after), len(before))
			continue
		}
		for i := range after {
			if after[i].Seq != before[i].Seq || after[i].Subject != before[i].Subject || string(after[i].Data) != string(before[i].Data) {
				t.Errorf("%s: entry %d changed: %s@%d, was %s@%d", l, i, after[i].Subject, after[i].Seq, before[i].Subject, before[i].Seq)
			}
		}
	}
}
