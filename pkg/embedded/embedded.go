// Package embedded runs a NATS server with JetStream inside the process: the
// all-in-one dunningd's, and the tests' (through package natstest). Only
// those link nats-server; a stage service connects to an external server.
package embedded

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/opendunning/dunning/pkg/access"
)

// Config configures an embedded NATS server.
type Config struct {
	// StoreDir holds JetStream's file store.
	StoreDir string
	// Host and Port to listen on; Port -1 picks a free port, and DontListen
	// serves in-process connections only.
	Host       string
	Port       int
	DontListen bool
	// SyncAlways fsyncs every write before acknowledging it. It is the default
	// for the shipped binary: a lost repayment would chase a paid loan.
	SyncAlways bool
	// Keyring is the directory of the deployment's credentials (package
	// access): the server takes its accounts and users from the keyring's
	// generated auth.conf, so no client is anonymous, and Connect connects
	// as the keyring's admin. Required.
	Keyring string
}

// Server is a running in-process NATS server with JetStream.
type Server struct {
	Server *server.Server
	// Keyring holds the credentials its clients connect with.
	Keyring access.Keyring

	cfg Config
}

// Start starts a NATS server with JetStream and waits until it accepts
// connections.
func Start(cfg Config) (*Server, error) {
	opts, err := cfg.options()
	if err != nil {
		return nil, err
	}
	srv, err := StartOptions(opts)
	if err != nil {
		return nil, err
	}
	srv.Keyring, srv.cfg = access.Keyring{Dir: cfg.Keyring}, cfg
	return srv, nil
}

// options are the server's options: the keyring's accounts and users, and
// the rest from cfg.
func (cfg Config) options() (*server.Options, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("embedded nats: store directory is required")
	}
	if cfg.Keyring == "" {
		return nil, errors.New("embedded nats: a keyring is required (no client is anonymous)")
	}
	auth := filepath.Join(cfg.Keyring, access.ServerConfigFile)
	opts, err := server.ProcessConfigFile(auth)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	opts.ServerName = "dunningd"
	opts.Host, opts.Port, opts.DontListen = cfg.Host, cfg.Port, cfg.DontListen
	opts.JetStream, opts.StoreDir, opts.SyncAlways = true, cfg.StoreDir, cfg.SyncAlways
	opts.NoSigs, opts.NoLog = true, true
	// The listen address is the caller's, not the file's.
	opts.ConfigFile = ""
	return opts, nil
}

// Reload applies the keyring's current auth.conf: new identities and keys
// are accepted, and the connections of revoked ones are closed, without a
// restart.
func (e *Server) Reload() error {
	opts, err := e.cfg.options()
	if err != nil {
		return err
	}
	// The port the server actually listens on (a free one was picked).
	if a, ok := e.Server.Addr().(*net.TCPAddr); ok {
		opts.Port = a.Port
	}
	return e.Server.ReloadOptions(opts)
}

// StartOptions starts a server from complete options and waits until it
// accepts connections.
func StartOptions(opts *server.Options) (*Server, error) {
	srv, err := Launch(opts)
	if err != nil {
		return nil, err
	}
	if err := srv.Ready(30 * time.Second); err != nil {
		srv.Shutdown()
		return nil, err
	}
	return srv, nil
}

// Launch starts a server from complete options without waiting for it: the
// nodes of a cluster (the deployment test's, read from their configuration
// files) are all launched first, then waited for, since a node may wait
// for its peers.
func Launch(opts *server.Options) (*Server, error) {
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("creating embedded nats: %w", err)
	}
	go s.Start()
	return &Server{Server: s}, nil
}

// Ready waits up to d until the server accepts connections.
func (e *Server) Ready(d time.Duration) error {
	if !e.Server.ReadyForConnections(d) {
		return fmt.Errorf("embedded nats: not ready for connections after %s", d)
	}
	return nil
}

// Connect opens an in-process client connection as the keyring's admin.
func (e *Server) Connect(name string) (*nats.Conn, error) {
	return e.ConnectAs(access.Admin, name)
}

// ConnectAs opens an in-process client connection as id, with the seed the
// keyring holds for it.
func (e *Server) ConnectAs(id access.Identity, name string, opts ...nats.Option) (*nats.Conn, error) {
	auth, err := e.Keyring.Option(id)
	if err != nil {
		return nil, err
	}
	opts = append([]nats.Option{nats.InProcessServer(e.Server), nats.Name(name), nats.MaxReconnects(-1), auth}, opts...)
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting in-process to nats as %s: %w", id, err)
	}
	return nc, nil
}

// Dialer connects in-process as id, whatever name it is given.
func (e *Server) Dialer(id access.Identity) func(name string) (*nats.Conn, error) {
	return func(name string) (*nats.Conn, error) { return e.ConnectAs(id, name) }
}

// ClientURL is the server's TCP address, empty when it does not listen.
func (e *Server) ClientURL() string {
	if e.Server.Addr() == nil {
		return ""
	}
	return e.Server.ClientURL()
}

// Shutdown stops the server and waits for it.
func (e *Server) Shutdown() {
	e.Server.Shutdown()
	e.Server.WaitForShutdown()
}
