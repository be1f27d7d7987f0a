// Command handoff runs stage 4, third-party handoff, against an external NATS server.
package main

import "github.com/opendunning/dunning/pkg/app"

func main() { app.Main("handoff") }
