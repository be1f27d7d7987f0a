package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opendunning/dunning/pkg/loanlog"
	"github.com/opendunning/dunning/pkg/packet"
	"github.com/opendunning/dunning/pkg/packet/packettest"
	"github.com/opendunning/dunning/pkg/policy"
)

// sealedLog is a small loan's log as the stream would return it, sealed
// at its end: an installment, a payment, a confirmation and the seal.
func sealedLog(t *testing.T) []loanlog.Raw {
	t.Helper()
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	l := &packettest.Log{T: t, Tenant: "acme", Loan: "L-1", At: at}
	l.Add(policy.InstallmentDue{ID: "1", Amount: policy.Money{Currency: "CNY", Minor: 1000}, DueAt: at, Zone: "UTC", ContactRef: "crm"}, "1")
	l.Add(policy.Repayment{PaymentID: "p1", Amount: policy.Money{Currency: "CNY", Minor: 400}, PaidAt: at}, "p1")
	l.Add(policy.Decision{Kind: policy.KindOverdueConfirmed, Ctx: policy.Context{Case: 1, Stage: policy.StageOverdueConfirmation, Tier: policy.TierLight,
		DPD: 1, Overdue: policy.Money{Currency: "CNY", Minor: 600}, DecidedAt: at, Reason: "due time passed"}, InstallmentIDs: []string{"1"}}, "")
	l.Seal()
	return l.Raws
}

// dunctl legal verify: exit 0 on the packet as built, 1 naming the entry
// when one was altered.
func TestLegalVerify(t *testing.T) {
	p, err := packet.Build("acme", "L-1", sealedLog(t), time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, p packet.Packet) string {
		b, err := json.MarshalIndent(p, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"legal", "verify", write("good.json", p)}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "verified: loan L-1 of tenant acme, 4 entries") {
		t.Fatalf("verify the packet as built: exit %d, %q %q", code, out.String(), errOut.String())
	}
	p.Entries[1].Data[len(p.Entries[1].Data)-1] ^= 1 // a paid amount changed
	out.Reset()
	errOut.Reset()
	if code := run([]string{"legal", "verify", write("bad.json", p)}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "FAILED: entry 2 (seq 5)") {
		t.Errorf("verify an altered packet: exit %d, %q; want 1 naming entry 2", code, errOut.String())
	}
	if code := run([]string{"legal", "verify", filepath.Join(dir, "missing.json")}, &out, &errOut); code != 2 {
		t.Errorf("verify a missing file: exit %d, want 2", code)
	}
}
