package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/opendunning/dunning/pkg/access"
	"github.com/opendunning/dunning/pkg/bus"
	"github.com/opendunning/dunning/pkg/embedded"
	"github.com/opendunning/dunning/pkg/natstest"
	"github.com/opendunning/dunning/pkg/pipeline"
	"github.com/opendunning/dunning/pkg/topology"
)

// dunctl provision creates the topology as the admin; dunctl status shows
// it with each consumer's lag, and names what is missing (exit 1); dunctl
// deadletters list shows why messages were set aside.
func TestProvisionAndStatus(t *testing.T) {
	srv := natstest.Server(t, embedded.Config{})
	seed := srv.Keyring.SeedFile(access.Admin)
	flags := []string{"--nats", srv.ClientURL(), "--nats-seed", seed}
	var out, errOut bytes.Buffer
	if code := run(append([]string{"provision", "--replicas", "1"}, flags...), &out, &errOut); code != 0 {
		t.Fatalf("provision = %d: %s", code, errOut.String())
	}
	// Something for the intake consumer to be behind on.
	_, js := natstest.Connect(t, srv, "status-test")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 3 {
		if _, err := js.Publish(ctx, topology.IntakeSubject("acme", "L-1"), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	out.Reset()
	if code := run(append([]string{"status"}, flags...), &out, &errOut); code != 0 {
		t.Fatalf("status = %d: %s", code, errOut.String())
	}
	for _, c := range pipeline.Consumers() {
		if !strings.Contains(out.String(), c.Name) {
			t.Errorf("status lacks consumer %s:\n%s", c.Name, out.String())
		}
	}
	if !regexpMatch(`(?m)^intake\s+DUNNING_INTAKE\s+3\s`, out.String()) {
		t.Errorf("status does not show intake 3 behind:\n%s", out.String())
	}
	// Dead letters, newest first, filtered by consumer, with their reason.
	for i, c := range []string{"intake", "escalation", "intake"} {
		m := nats.NewMsg(topology.DLQSubject(c))
		m.Data = []byte("the original body " + c)
		m.Header.Set(bus.HeaderDLQConsumer, c)
		m.Header.Set(bus.HeaderDLQClass, "permanent")
		m.Header.Set(bus.HeaderDLQSubject, topology.IntakeSubject("acme", "L-1"))
		m.Header.Set(bus.HeaderDLQReason, fmt.Sprintf("reason %d", i))
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	out.Reset()
	if code := run(append([]string{"deadletters", "list", "--consumer", "intake"}, flags...), &out, &errOut); code != 0 {
		t.Fatalf("deadletters list = %d: %s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "reason 2") || !strings.Contains(lines[2], "reason 0") || strings.Contains(out.String(), "original body") {
		t.Errorf("deadletters list --consumer intake:\n%s\nwant the two intake dead letters, newest first, without their bodies", out.String())
	}
	if err := js.DeleteStream(ctx, topology.StreamDLQ); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := run(append([]string{"status"}, flags...), &out, &errOut); code != 1 || !regexpMatch(`DUNNING_DLQ\s+MISSING`, out.String()) {
		t.Errorf("status with the dead letters deleted = %d:\n%s", code, out.String())
	}
	// A wrong credential is refused with the server's word for it.
	errOut.Reset()
	if code := run([]string{"status", "--nats", srv.ClientURL(), "--nats-seed", "/nonexistent.nk"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "nonexistent.nk") {
		t.Errorf("status with a missing seed = %d: %s", code, errOut.String())
	}
}

func regexpMatch(pattern, s string) bool { return regexp.MustCompile(pattern).MatchString(s) }

// dunctl credentials tls makes the CA once and a certificate per node; an
// admin command given a CA file that is not one fails naming --nats-ca.
func TestCredentialsTLS(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	if code := run([]string{"credentials", "tls", "--dir", dir, "n1", "n2"}, &out, &errOut); code != 0 {
		t.Fatalf("credentials tls = %d: %s", code, errOut.String())
	}
	k := access.Keyring{Dir: dir}
	for _, want := range []string{k.TLS("n1").Cert, k.TLS("n2").Key, k.CAFile()} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %s:\n%s", want, out.String())
		}
	}
	out.Reset()
	if code := run([]string{"credentials", "tls", "--dir", dir, "n1"}, &out, &errOut); code != 0 || strings.Contains(out.String(), "n1:") {
		t.Errorf("second run = %d, issued again without --renew:\n%s", code, out.String())
	}
	if code := run([]string{"credentials", "tls", "--dir", dir}, &out, &errOut); code != 2 {
		t.Errorf("no node named = %d, want 2", code)
	}
	errOut.Reset()
	if code := run([]string{"status", "--nats-ca", k.TLS("n1").Key, "--nats-seed", "nope.nk"}, &out, &errOut); code != 1 {
		t.Errorf("status with a bad seed and CA = %d, want 1", code)
	}
	seed := filepath.Join(dir, "admin.nk")
	if _, _, err := k.Create(access.Admin); err != nil {
		t.Fatal(err)
	}
	errOut.Reset()
	if code := run([]string{"status", "--nats-ca", k.TLS("n1").Key, "--nats-seed", seed}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "--nats-ca") {
		t.Errorf("status with a key as CA = %d: %s; want 1 naming --nats-ca", code, errOut.String())
	}
}
