// Command dunningd runs the whole pipeline in one process over an embedded
// NATS server with JetStream: the lender API, NATS intake, all five stages,
// dispatch and webhook delivery.
package main

import (
	"github.com/opendunning/dunning/pkg/allinone"
	"github.com/opendunning/dunning/pkg/app"
)

func main() { app.MainOptions(allinone.Options()) }
