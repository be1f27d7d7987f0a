// Command handoff runs stage 4, third-party handoff, against an external NATS server.
package main

import (
	"github.com/opendunning/dunning/pkg/app"
	"github.com/opendunning/dunning/pkg/stage"
	"github.com/opendunning/dunning/pkg/stage/handoff"
)

func main() {
	app.Main(app.Options{Name: "handoff", Stages: []stage.Stage{handoff.Stage()}, DefaultHTTP: ":9090"})
}
