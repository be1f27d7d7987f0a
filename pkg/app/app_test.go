package app

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opendunning/dunning/pkg/access"
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
	err := Run(context.Background(), []string{"--policies", dir, "--nats", "nats://127.0.0.1:1", "--nats-seed", "unread.nk"}, o)
	if err == nil || !strings.Contains(err.Error(), "acme.yaml:") || !strings.Contains(err.Error(), `unknown channel "fax"`) {
		t.Errorf("Run with a bad policy = %v, want the file:line error", err)
	}
}

// Every bad flag is refused with an error that names it, before anything
// starts: the server starter fails the test if it is reached, and no data
// directory is created.
func TestFlagErrors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	o, _ := Service("dunningd")
	o.StartServer = func(ServerConfig) (Server, error) {
		t.Error("the embedded server was started before the flags were checked")
		return nil, errors.New("not started")
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--http", busy.Addr().String()}, "--http"},
		{[]string{"--metrics-http", busy.Addr().String()}, "--metrics-http"},
		{[]string{"--day", "0s"}, "--day"},
		{[]string{"--day", "48h"}, "--day"},
		{[]string{"--fsync", "sometimes"}, "--fsync"},
		{[]string{"--replicas", "2"}, "--replicas"},
		{[]string{"--ack-wait", "10ms"}, "--ack-wait"},
		{[]string{"--max-deliver", "1"}, "--max-deliver"},
		{[]string{"--http-max-conns-per-ip", "0"}, "--http-max-conns"},
		{[]string{"--http-max-conns", "10", "--http-max-conns-per-ip", "20"}, "--http-max-conns"},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"--nats-listen", "127.0.0.1:99999"}, "--nats-listen"},
		{[]string{"extra"}, "unexpected argument"},
		{[]string{"--webhooks", "fax=http://x"}, "--webhooks"},
		{[]string{"--webhooks", "sms=http://x"}, "--webhook-secret-file"},
		{[]string{"--policies", filepath.Join(t.TempDir(), "missing")}, "loading policies"},
	}
	for _, c := range cases {
		// The last --http wins: the busy-port case overrides this one.
		args := append([]string{"--data-dir", dir, "--http", "127.0.0.1:0"}, c.args...)
		err := Run(context.Background(), args, o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Run(%v) = %v, want an error naming %s", c.args, err, c.want)
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused start left %s behind (stat: %v)", dir, err)
	}
	for _, name := range []string{"dunningd", "gateway", "notify", "overdue", "contact", "escalation", "handoff", "legal"} {
		if _, ok := Service(name); !ok {
			t.Errorf("Service(%q) unknown", name)
		}
	}
	if _, ok := Service("nope"); ok {
		t.Error("Service(nope) known")
	}
	// dunningd without a server starter says so instead of half-starting.
	bare, _ := Service("dunningd")
	if err := Run(context.Background(), []string{"--data-dir", dir}, bare); err == nil || !strings.Contains(err.Error(), "embedded") {
		t.Errorf("Run(dunningd without a server) = %v, want an error about the embedded server", err)
	}
	// A service never connects anonymously.
	svc, _ := Service("escalation")
	if err := Run(context.Background(), []string{"--http", "127.0.0.1:0"}, svc); err == nil || !strings.Contains(err.Error(), "--nats-seed is required") {
		t.Errorf("Run(escalation without a credential) = %v, want an error naming --nats-seed", err)
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
		n, err := newNotifier(Config{Webhooks: "sms=http://127.0.0.1:1/hook", SecretFile: f})
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
	if _, err := newNotifier(Config{Webhooks: "sms=http://127.0.0.1:1/hook", SecretFile: short}); err == nil {
		t.Error("newNotifier with a 9-byte key = nil error, want one")
	}
}

// A stop requested while a service is still starting (SIGTERM while it
// waits for NATS to provision) is a clean stop: Run returns nil, and the
// process exits 0.
func TestStopWhileStarting(t *testing.T) {
	o, _ := Service("overdue")
	keys := access.Keyring{Dir: t.TempDir()}
	seed, _, err := keys.Create(access.Service("overdue"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, []string{"--nats", "nats://127.0.0.1:1", "--nats-seed", seed, "--http", "127.0.0.1:0", "--log-level", "error"}, o)
	}()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run stopped while starting = %v, want nil", err)
		}
	case <-time.After(45 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}
