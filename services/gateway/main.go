// Command gateway serves the lender HTTP API (events in, timelines out) and
// validates lender events published over NATS, against an external NATS server.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/opendunning/dunning/pkg/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app.Run(ctx, os.Args[1:], app.Options{Name: "gateway", Intake: true, API: true, DefaultHTTP: ":8080"}); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}
