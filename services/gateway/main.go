// Command gateway serves the lender HTTP API (events in, timelines out) and
// validates lender events published over NATS, against an external NATS server.
package main

import "github.com/opendunning/dunning/pkg/app"

func main() { app.Main("gateway") }
