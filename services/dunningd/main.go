// Command dunningd runs the whole pipeline in one process over an embedded NATS
// server with JetStream: the lender API, NATS intake and all five stages.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/opendunning/dunning/pkg/app"
	"github.com/opendunning/dunning/pkg/stage"
	"github.com/opendunning/dunning/pkg/stage/contact"
	"github.com/opendunning/dunning/pkg/stage/escalation"
	"github.com/opendunning/dunning/pkg/stage/handoff"
	"github.com/opendunning/dunning/pkg/stage/legal"
	"github.com/opendunning/dunning/pkg/stage/overdue"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app.Run(ctx, os.Args[1:], app.Options{
		Name:        "dunningd",
		Stages:      []stage.Stage{overdue.Stage(), contact.Stage(), escalation.Stage(), handoff.Stage(), legal.Stage()},
		Intake:      true,
		API:         true,
		Embedded:    true,
		DefaultHTTP: "127.0.0.1:8080",
	}); err != nil {
		fmt.Fprintln(os.Stderr, "dunningd:", err)
		os.Exit(1)
	}
}
