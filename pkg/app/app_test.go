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

// The webhook key is the secret file's text with surrounding whitespace
// trimmed, byte for byte: a base64 line is used as is, not decoded.
func TestWebhookKeyIsTrimmedText(t *testing.T) {
	const key = "q3J0cmFuZG9tLWtleS0wMTIzNDU2Nzg5YWJjZGVm+/=="
	tests := []struct {
		name, content, want string
	}{
		{"final newline", key + "\n", key},
		{"surrounding blanks and CRLF", "  " + key + " \r\n", key},
		{"no newline", key, key},
	}
	for _, tt := range tests {
		f := filepath.Join(t.TempDir(), "webhook.key")
		if err := os.WriteFile(f, []byte(tt.content), 0o600); err != nil {
			t.Fatal(err)
		}
		n, err := newNotifier(Config{Webhooks: "sms=http://127.0.0.1:1/hook", SecretFile: f}, nil)
		if err != nil {
			t.Fatalf("%s: newNotifier: %v", tt.name, err)
		}
		if got := string(n.Secret); got != tt.want {
			t.Errorf("%s: key = %q, want %q", tt.name, got, tt.want)
		}
	}
	short := filepath.Join(t.TempDir(), "short.key")
	if err := os.WriteFile(short, []byte("  short-key \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := newNotifier(Config{Webhooks: "sms=http://127.0.0.1:1/hook", SecretFile: short}, nil); err == nil {
		t.Error("newNotifier with a 9-byte key = nil error, want one")
	}
}
