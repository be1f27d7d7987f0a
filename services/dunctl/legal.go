package main

import (
	"fmt"
	"io"
	"os"

	"github.com/opendunning/dunning/pkg/packet"
)

// legal exports a loan's legal evidence packet from the API, or verifies
// one offline: the chain over its entries, its seals, its content and its
// summary (package packet).
func legal(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "packet":
		return apiText("legal packet", []string{"tenant", "loan"}, func(p []string) []string {
			return []string{"v1", "tenants", p[0], "loans", p[1], "legal-packet"}
		}, args[1:], stdout, stderr)
	case "verify":
		if len(args) != 2 {
			fmt.Fprint(stderr, usage)
			return 2
		}
		f, err := os.Open(args[1])
		if err != nil {
			fmt.Fprintf(stderr, "dunctl legal verify: %v\n", err)
			return 2
		}
		defer f.Close()
		p, err := packet.Read(f)
		if err == nil {
			err = packet.Verify(p)
		}
		if err != nil {
			fmt.Fprintf(stderr, "dunctl legal verify %s: FAILED: %v\n", args[1], err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: verified: loan %s of tenant %s, %d entries, sealed at seq %d (through seq %d), chain %s\n",
			args[1], p.Loan, p.Tenant, len(p.Entries), p.Seal.Seq, p.Seal.Through, p.Seal.Chain)
		return 0
	}
	fmt.Fprint(stderr, usage)
	return 2
}
