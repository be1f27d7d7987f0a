// Package embedded runs a NATS server with JetStream inside the process: the
// all-in-one dunningd's, and the tests' (through package natstest). Only
// those link nats-server; a stage service connects to an external server.
package embedded

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
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
}

// Server is a running in-process NATS server with JetStream.
type Server struct {
	Server *server.Server
}

// Start starts a NATS server with JetStream and waits until it accepts
// connections.
func Start(cfg Config) (*Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("embedded nats: store directory is required")
	}
	return StartOptions(&server.Options{
		ServerName: "dunningd",
		Host:       cfg.Host,
		Port:       cfg.Port,
		DontListen: cfg.DontListen,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		SyncAlways: cfg.SyncAlways,
		NoSigs:     true,
		NoLog:      true,
	})
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

// Connect opens an in-process client connection.
func (e *Server) Connect(name string) (*nats.Conn, error) {
	nc, err := nats.Connect("", nats.InProcessServer(e.Server), nats.Name(name), nats.MaxReconnects(-1))
	if err != nil {
		return nil, fmt.Errorf("connecting in-process to nats: %w", err)
	}
	return nc, nil
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
