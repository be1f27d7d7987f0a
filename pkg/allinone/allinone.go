// Package allinone is the all-in-one dunningd: every part of the pipeline
// in one process, over an in-process NATS server. It is the only package
// that joins the services' startup (package app) to the embedded server,
// so that the stage binaries do not link nats-server.
package allinone

import (
	"github.com/opendunning/dunning/pkg/app"
	"github.com/opendunning/dunning/pkg/embedded"
)

// Options are dunningd's: app.Service("dunningd") with the embedded server.
func Options() app.Options {
	o, _ := app.Service("dunningd")
	o.StartServer = func(c app.ServerConfig) (app.Server, error) { return embedded.Start(embedded.Config(c)) }
	return o
}
