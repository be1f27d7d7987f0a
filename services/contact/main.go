// Command contact runs stage 2, first contact, against an external NATS server.
package main

import "github.com/opendunning/dunning/pkg/app"

func main() { app.Main("contact") }
