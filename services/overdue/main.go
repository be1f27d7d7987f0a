// Command overdue runs stage 1, overdue confirmation, against an external NATS server.
package main

import (
	"github.com/opendunning/dunning/pkg/app"
	"github.com/opendunning/dunning/pkg/stage"
	"github.com/opendunning/dunning/pkg/stage/overdue"
)

func main() {
	app.Main(app.Options{Name: "overdue", Stages: []stage.Stage{overdue.Stage()}, DefaultHTTP: ":9090"})
}
