// Command overdue runs stage 1, overdue confirmation, against an external NATS server.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/opendunning/dunning/pkg/app"
	"github.com/opendunning/dunning/pkg/stage"
	"github.com/opendunning/dunning/pkg/stage/overdue"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app.Run(ctx, os.Args[1:], app.Options{Name: "overdue", Stages: []stage.Stage{overdue.Stage()}, DefaultHTTP: ":9090"}); err != nil {
		fmt.Fprintln(os.Stderr, "overdue:", err)
		os.Exit(1)
	}
}
