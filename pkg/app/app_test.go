package app

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opendunning/dunning/pkg/policyfile"
)

// A bad policy never starts a service: Run fails before connecting anywhere,
// naming the file, line and field.
func TestBadPolicyDoesNotStart(t *testing.T) {
	dir := t.TempDir()
	bad := strings.Replace(string(policyfile.DefaultYAML), "[sms]", "[fax]", 1)
	if err := os.WriteFile(filepath.Join(dir, "acme.yaml"), []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	o, _ := Service("overdue")
	err := Run(context.Background(), []string{"--policies", dir, "--nats", "nats://127.0.0.1:1"}, o)
	if err == nil || !strings.Contains(err.Error(), "acme.yaml:") || !strings.Contains(err.Error(), `unknown channel "fax"`) {
		t.Errorf("Run with a bad policy = %v, want the file:line error", err)
	}
}

func TestFlagErrors(t *testing.T) {
	o, _ := Service("dunningd")
	for _, args := range [][]string{{"--day", "0s"}, {"--fsync", "sometimes"}, {"--replicas", "2"}, {"--ack-wait", "10ms"}, {"extra"},
		{"--webhooks", "fax=http://x"}, {"--webhooks", "sms=http://x"}} {
		if err := Run(context.Background(), args, o); err == nil {
			t.Errorf("Run(%v) = nil, want an error", args)
		}
	}
	for _, name := range []string{"dunningd", "gateway", "notify", "overdue", "contact", "escalation", "handoff", "legal"} {
		if _, ok := Service(name); !ok {
			t.Errorf("Service(%q) unknown", name)
		}
	}
	if _, ok := Service("nope"); ok {
		t.Error("Service(nope) known")
	}
}
