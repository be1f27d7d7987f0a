// Command dunningd runs the whole pipeline in one process over an embedded
// NATS server with JetStream: the lender API, NATS intake and all five stages.
package main

import (
	"github.com/opendunning/dunning/pkg/app"
	"github.com/opendunning/dunning/pkg/stage/all"
)

func main() {
	app.Main(app.Options{Name: "dunningd", Stages: all.Stages(), Intake: true, API: true, Embedded: true, DefaultHTTP: "127.0.0.1:8080"})
}
