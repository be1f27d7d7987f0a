package access_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/opendunning/dunning/pkg/access"
	"github.com/opendunning/dunning/pkg/topology"
)

func TestParseIdentity(t *testing.T) {
	good := map[string]access.Identity{
		"admin":           access.Admin,
		"service-overdue": access.Service("overdue"),
		"lender-acme":     access.Lender("acme"),
		"lender-a-b_c":    access.Lender("a-b_c"),
		"agency-collect":  access.Agency("collect"),
	}
	for s, want := range good {
		got, err := access.ParseIdentity(s)
		if err != nil || got != want || got.String() != s {
			t.Errorf("ParseIdentity(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "root", "lender-", "lender-a.b", "lender-a>", "bank-acme", "lender-" + strings.Repeat("x", 65)} {
		if _, err := access.ParseIdentity(s); err == nil {
			t.Errorf("ParseIdentity(%q) = nil error", s)
		}
	}
}

// The keyring's auth.conf is a configuration nats-server accepts: the
// admin and services in DUNNING (the only account with JetStream), each
// lender in its own account importing its tenant's intake subjects, no
// anonymous user, and each identity allowed exactly its grant.
func TestServerConfig(t *testing.T) {
	k := access.Keyring{Dir: t.TempDir()}
	ids := []access.Identity{access.Admin, access.Service("escalation"), access.Lender("acme"), access.Agency("collect")}
	keys := map[access.Identity]string{}
	for _, id := range ids {
		_, pub, err := k.Create(id)
		if err != nil {
			t.Fatal(err)
		}
		keys[id] = pub
	}
	// A second key for the lender: rotation keeps both until one is revoked.
	_, second, err := k.Create(access.Lender("acme"))
	if err != nil {
		t.Fatal(err)
	}
	grant := access.Grant{Consumers: []topology.ConsumerSpec{{Name: "escalation", Stream: topology.StreamLoans}},
		Publish: []string{"dunning.loan.*.*.escalated.*"}, ReadLog: true}
	conf, err := k.ServerConfig(func(name string) (access.Grant, bool) { return grant, name == "escalation" })
	if err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("nats-server refuses the generated configuration: %v", err)
	}
	if opts.NoAuthUser != "" || len(opts.Users) != 0 {
		t.Errorf("anonymous or password users: no_auth_user %q, users %d", opts.NoAuthUser, len(opts.Users))
	}
	users := map[string]*server.NkeyUser{}
	for _, u := range opts.Nkeys {
		users[u.Nkey] = u
	}
	if len(users) != 5 {
		t.Fatalf("%d users, want 5 (admin, escalation, two lender keys, agency)", len(users))
	}
	if u := users[keys[access.Admin]]; u.Account.Name != access.AccountDunning || u.Permissions != nil {
		t.Errorf("admin: account %s, permissions %+v; want DUNNING, unrestricted", u.Account.Name, u.Permissions)
	}
	svc := users[keys[access.Service("escalation")]]
	if svc.Account.Name != access.AccountDunning {
		t.Errorf("escalation in account %s", svc.Account.Name)
	}
	pub := svc.Permissions.Publish.Allow
	for _, want := range []string{"dunning.loan.*.*.escalated.*", "$JS.API.CONSUMER.MSG.NEXT.DUNNING_LOANS.escalation",
		"$JS.ACK.DUNNING_LOANS.escalation.>", "$JS.API.DIRECT.GET.DUNNING_LOANS.>", "dunning.dlq.escalation"} {
		if !slices.Contains(pub, want) {
			t.Errorf("escalation may not publish %s; allowed: %v", want, pub)
		}
	}
	for _, s := range pub {
		if strings.Contains(s, "DELETE") || strings.Contains(s, "PURGE") || strings.Contains(s, "CREATE") || s == ">" {
			t.Errorf("escalation may publish %s", s)
		}
	}
	// Its inbox only: the advisories of its consumer's messages that ran
	// out of deliveries (which it dead-letters) it pulls from their stream,
	// through its own consumer there.
	if sub := svc.Permissions.Subscribe.Allow; !slices.Equal(sub, []string{"_INBOX_service-escalation.>"}) {
		t.Errorf("escalation may subscribe %v, want only its inbox", sub)
	}
	for _, want := range []string{"$JS.API.CONSUMER.MSG.NEXT.DUNNING_ADVISORIES.abandoned-escalation", "$JS.ACK.DUNNING_ADVISORIES.abandoned-escalation.>"} {
		if !slices.Contains(pub, want) {
			t.Errorf("escalation may not publish %s (its advisories' consumer); allowed: %v", want, pub)
		}
	}
	for _, key := range []string{keys[access.Lender("acme")], second} {
		u := users[key]
		if u.Account.Name != access.AccountLenders || !slices.Equal(u.Permissions.Publish.Allow,
			[]string{"dunning.in.*.acme.*", "$JS.API.DIRECT.GET.DUNNING_REJECTIONS.dunning.rejected.acme.*"}) ||
			!slices.Equal(u.Permissions.Subscribe.Allow, []string{"_INBOX_lender-acme.>", "dunning.rejected.acme.*"}) {
			t.Errorf("lender key: account %s, publish %v, subscribe %v; want its own intake and rejections only",
				u.Account.Name, u.Permissions.Publish.Allow, u.Permissions.Subscribe.Allow)
		}
	}
	if u := users[keys[access.Agency("collect")]]; u.Account.Name != access.AccountAgencies || !slices.Equal(u.Permissions.Publish.Allow, []string{
		"dunning.feed.api.CONSUMER.INFO.DUNNING_AGENCIES.agency-collect", "dunning.feed.api.CONSUMER.MSG.NEXT.DUNNING_AGENCIES.agency-collect",
		"$JS.ACK.DUNNING_AGENCIES.agency-collect.>", "dunning.outcome.collect.*.*"}) || !slices.Equal(u.Permissions.Subscribe.Allow, []string{"_INBOX_agency-collect.>"}) {
		t.Errorf("agency: account %s, publish %v, subscribe %v; want its own feed's consumer, its own outcomes and its inbox only",
			u.Account.Name, u.Permissions.Publish.Allow, u.Permissions.Subscribe.Allow)
	}

	// Revoking one key keeps the other; revoking the identity removes it.
	if err := k.Revoke(access.Lender("acme"), keys[access.Lender("acme")]); err != nil {
		t.Fatal(err)
	}
	if got, _ := k.Keys(access.Lender("acme")); !slices.Equal(got, []string{second}) {
		t.Errorf("after revoking the first key: %v, want [%s]", got, second)
	}
	if err := k.Revoke(access.Agency("collect"), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Keys(access.Agency("collect")); !errors.Is(err, access.ErrUnknownIdentity) {
		t.Errorf("revoked agency: %v, want ErrUnknownIdentity", err)
	}
	// A service the grants do not know is an error, not an unrestricted user.
	if _, _, err := k.Create(access.Service("nosuch")); err != nil {
		t.Fatal(err)
	}
	if _, err := k.ServerConfig(func(string) (access.Grant, bool) { return access.Grant{}, false }); err == nil {
		t.Error("ServerConfig with an unknown service = nil error")
	}
}
