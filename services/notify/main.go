// Command notify fans committed contact decisions out to per-channel task
// subjects and delivers them to the lender's webhooks, against an external
// NATS server.
package main

import "github.com/opendunning/dunning/pkg/app"

func main() { app.Main("notify") }
