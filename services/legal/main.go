// Command legal runs stage 5, legal referral, against an external NATS server.
package main

import (
	"github.com/opendunning/dunning/pkg/app"
	"github.com/opendunning/dunning/pkg/stage"
	"github.com/opendunning/dunning/pkg/stage/legal"
)

func main() {
	app.Main(app.Options{Name: "legal", Stages: []stage.Stage{legal.Stage()}, DefaultHTTP: ":9090"})
}
