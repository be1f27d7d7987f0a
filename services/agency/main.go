// Command agency is the reference agency client: it reads one agency's feed
// of placements and recalls with the agency's own credential and prints
// each as a line of JSON. A partner copies it and puts its own work where
// it prints (pkg/agency).
//
//	go run ./services/agency --agency collect [--nats nats://127.0.0.1:4222] [--seed FILE]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/opendunning/dunning/pkg/agency"
	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"
)

func main() {
	url := flag.String("nats", "nats://127.0.0.1:4222", "NATS URL of the pipeline")
	id := flag.String("agency", "", "the agency's identifier in the lender's registry (required)")
	seed := flag.String("seed", "", "the agency's nkey seed (default ./data/credentials/agency-<id>.nk, what dunctl credentials create made)")
	flag.Parse()
	if *id == "" {
		fmt.Fprintln(os.Stderr, "agency: --agency is required")
		os.Exit(2)
	}
	if *seed == "" {
		*seed = "./data/credentials/agency-" + *id + ".nk"
	}
	nc, err := agency.Connect(*url, *id, *seed)
	if err != nil {
		fmt.Fprintln(os.Stderr, "agency:", err)
		os.Exit(1)
	}
	defer nc.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(os.Stderr, "agency %s: reading its feed (Ctrl-C to stop)\n", *id)
	c := &agency.Client{Agency: *id, Conn: nc}
	if err := c.Run(ctx, func(_ context.Context, subject string, m *dunningv1.AgencyFeed) error {
		b, err := protojson.Marshal(m)
		if err != nil {
			return err
		}
		fmt.Printf("%s %s\n", subject, b)
		return nil
	}); err != nil {
		fmt.Fprintln(os.Stderr, "agency:", err)
		os.Exit(1)
	}
}
