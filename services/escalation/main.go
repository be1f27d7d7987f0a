// Command escalation runs stage 3, escalation, against an external NATS server.
package main

import "github.com/opendunning/dunning/pkg/app"

func main() { app.Main("escalation") }
