// Command overdue runs stage 1, overdue confirmation, against an external NATS server.
package main

import "github.com/opendunning/dunning/pkg/app"

func main() { app.Main("overdue") }
