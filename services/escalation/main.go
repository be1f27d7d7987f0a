// Command escalation runs stage 3, escalation, against an external NATS server.
package main

import (
	"github.com/opendunning/dunning/pkg/app"
	"github.com/opendunning/dunning/pkg/stage"
	"github.com/opendunning/dunning/pkg/stage/escalation"
)

func main() {
	app.Main(app.Options{Name: "escalation", Stages: []stage.Stage{escalation.Stage()}, DefaultHTTP: ":9090"})
}
