package policyfile

import (
	_ "embed" // the shipped policy
	"fmt"

	"github.com/opendunning/dunning/pkg/policy"
)

// DefaultYAML is the shipped policy file: the ladder of docs/domain.md.
//
//go:embed default.yaml
var DefaultYAML []byte

// Default parses the shipped policy file.
func Default() (policy.Policy, error) {
	p, err := Parse("default.yaml", DefaultYAML)
	if err != nil {
		return policy.Policy{}, fmt.Errorf("shipped policy is invalid: %w", err)
	}
	return p, nil
}
