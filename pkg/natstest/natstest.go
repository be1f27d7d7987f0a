// Package natstest is the one test helper of the project: a real embedded
// JetStream server per test, and CheckFor, which polls for an outcome
// instead of sleeping for a guess (as nats-server's own tests do).
package natstest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/opendunning/dunning/pkg/access"
	"github.com/opendunning/dunning/pkg/embedded"
	"github.com/opendunning/dunning/pkg/topology"
)

// Server starts an embedded JetStream server for one test or benchmark and
// shuts it down at cleanup. Zero fields of cfg get test defaults: a store
// in tb.TempDir(), a free port on 127.0.0.1 (unless cfg.DontListen), and a
// keyring holding only an admin (Keyring makes one with more). Like a
// deployment's, the server admits no anonymous client.
func Server(tb testing.TB, cfg embedded.Config) *embedded.Server {
	tb.Helper()
	if cfg.StoreDir == "" {
		cfg.StoreDir = tb.TempDir()
	}
	if cfg.Keyring == "" {
		cfg.Keyring = Keyring(tb, nil)
	}
	if !cfg.DontListen && cfg.Port == 0 {
		cfg.Host, cfg.Port = "127.0.0.1", -1
	}
	srv, err := embedded.Start(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(srv.Shutdown)
	return srv
}

// Keyring makes a keyring for a test server in a temporary directory: the
// admin and the given identities, with grants giving each service's grant
// (nil when there is none), and its auth.conf. It returns the directory.
func Keyring(tb testing.TB, grants func(string) (access.Grant, bool), ids ...access.Identity) string {
	tb.Helper()
	k := access.Keyring{Dir: tb.TempDir()}
	for _, id := range append([]access.Identity{access.Admin}, ids...) {
		if _, _, err := k.Create(id); err != nil {
			tb.Fatal(err)
		}
	}
	if grants == nil {
		grants = func(string) (access.Grant, bool) { return access.Grant{}, false }
	}
	if _, err := k.ServerConfig(grants); err != nil {
		tb.Fatal(err)
	}
	return k.Dir
}

// Cluster starts servers from complete options (the nodes of a cluster,
// from their configuration files) for one test: all are launched before
// any is waited for, since a node may wait for its peers. They shut down at
// cleanup.
func Cluster(tb testing.TB, nodes ...*server.Options) []*embedded.Server {
	tb.Helper()
	var out []*embedded.Server
	for _, o := range nodes {
		srv, err := embedded.Launch(o)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(srv.Shutdown)
		out = append(out, srv)
	}
	for _, srv := range out {
		if err := srv.Ready(60 * time.Second); err != nil {
			tb.Fatal(err)
		}
	}
	return out
}

// Connect opens an in-process connection to srv, closed at cleanup, and its
// JetStream context.
func Connect(tb testing.TB, srv *embedded.Server, name string) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	nc, err := srv.Connect(name)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	return nc, js
}

// Provisioned runs an embedded server without a listener, with the
// pipeline's declared streams (no consumers), and connects to it as name.
func Provisioned(tb testing.TB, name string) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	nc, js := Connect(tb, Server(tb, embedded.Config{DontListen: true}), name)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := topology.DefaultTopology().Provision(ctx, js, nil); err != nil {
		tb.Fatal(err)
	}
	return nc, js
}

// CheckFor calls f every `every` until it returns nil, and fails the test
// with f's last error if that has not happened within total.
func CheckFor(tb testing.TB, total, every time.Duration, f func() error) {
	tb.Helper()
	deadline := time.Now().Add(total)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("after %s: %v", total, err)
		}
		time.Sleep(every)
	}
}
