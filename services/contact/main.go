// Command contact runs stage 2, first contact, against an external NATS server.
package main

import (
	"github.com/opendunning/dunning/pkg/app"
	"github.com/opendunning/dunning/pkg/stage"
	"github.com/opendunning/dunning/pkg/stage/contact"
)

func main() {
	app.Main(app.Options{Name: "contact", Stages: []stage.Stage{contact.Stage()}, DefaultHTTP: ":9090"})
}
