// Command dunctl is the operator's tool: check a policy file before
// deploying it, print the shipped policy.
//
//	dunctl policy check FILE...   report every problem of each file, exit 1 if any
//	dunctl policy default         print the shipped policy (SPEC.md §1)
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/opendunning/dunning/pkg/policyfile"
)

const usage = `usage:
  dunctl policy check FILE...   report every problem of each policy file; exit 1 if any
  dunctl policy default         print the shipped policy file
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) < 2 || args[0] != "policy" {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[1] {
	case "check":
		if len(args) < 3 {
			fmt.Fprint(stderr, usage)
			return 2
		}
		bad := false
		for _, f := range args[2:] {
			p, err := policyfile.Load(f)
			if err != nil {
				bad = true
				fmt.Fprintln(stderr, err)
				continue
			}
			fmt.Fprintf(stdout, "%s: ok (version %s, tenant %s, %d cadence steps, %d templates)\n", f, p.Version, p.Tenant, len(p.Cadence), len(p.Templates))
		}
		if bad {
			return 1
		}
		return 0
	case "default":
		_, _ = stdout.Write(policyfile.DefaultYAML)
		return 0
	}
	fmt.Fprint(stderr, usage)
	return 2
}
