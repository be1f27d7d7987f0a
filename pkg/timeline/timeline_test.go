package timeline

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/opendunning/dunning/pkg/codec"
	"github.com/opendunning/dunning/pkg/loanlog"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/topology"
)

func TestWriteText(t *testing.T) {
	tests := []struct {
		name    string
		entries []Entry
		want    string
	}{
		{
			name: "no entries",
			want: "seq  kind  stage  tier  dpd  reason\n",
		},
		{
			name: "a climbing ladder",
			entries: []Entry{
				{Seq: 1, Kind: "installment_due", Stage: "none", Tier: "none", Reason: "installment 1 of 1200.00 CNY due 2026-01-15T04:00:00Z"},
				{Seq: 3, Kind: "step_fired", Stage: "overdue_confirmation", Tier: "light", DPD: 1, Reason: "c1-overdue_confirmation came due"},
				{Seq: 14, Kind: "legal_referred", Stage: "legal_referral", Tier: "severe", DPD: 90, Reason: "still unpaid at DPD 90: refer for legal action"},
			},
			want: "" +
				"seq  kind             stage                 tier    dpd  reason\n" +
				"1    installment_due  none                  none    0    installment 1 of 1200.00 CNY due 2026-01-15T04:00:00Z\n" +
				"3    step_fired       overdue_confirmation  light   1    c1-overdue_confirmation came due\n" +
				"14   legal_referred   legal_referral        severe  90   still unpaid at DPD 90: refer for legal action\n",
		},
		{
			name: "an undecodable entry and a vendor's detail with tabs and newlines",
			entries: []Entry{
				{Seq: 2, Kind: "invalid", Reason: "unknown subject"},
				{Seq: 7, Kind: "contact_outcome", Stage: "first_contact", Tier: "light", DPD: 3, Reason: "contact c1: failed \tbusy\r\nline"},
			},
			want: "" +
				"seq  kind             stage          tier   dpd  reason\n" +
				"2    invalid          -              -      0    unknown subject\n" +
				"7    contact_outcome  first_contact  light  3    contact c1: failed  busy  line\n",
		},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		if err := (Timeline{Tenant: "acme", Loan: "L-1001", Entries: tt.entries}).WriteText(&b); err != nil {
			t.Fatalf("%s: WriteText: %v", tt.name, err)
		}
		if got := b.String(); got != tt.want {
			t.Errorf("%s: WriteText =\n%s\nwant\n%s", tt.name, got, tt.want)
		}
	}
}

type failingWriter struct{}

var errWrite = errors.New("disk full")

func (failingWriter) Write([]byte) (int, error) { return 0, errWrite }

func TestWriteTextReportsWriteErrors(t *testing.T) {
	tl := Timeline{Entries: []Entry{{Seq: 1, Kind: "installment_due", Stage: "none", Tier: "none"}}}
	if err := tl.WriteText(failingWriter{}); !errors.Is(err, errWrite) {
		t.Errorf("WriteText to a failing writer = %v, want %v", err, errWrite)
	}
}

// A repayment beyond every announced installment is flagged, with the
// surplus, on the repayment's line.
func TestOverpaymentFlagged(t *testing.T) {
	due := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	events := []policy.Event{
		policy.InstallmentDue{ID: "1", Amount: policy.Money{Currency: "CNY", Minor: 100000}, DueAt: due, Zone: "Asia/Shanghai", ContactRef: "crm"},
		policy.Repayment{PaymentID: "p1", Amount: policy.Money{Currency: "CNY", Minor: 150000}, PaidAt: due},
	}
	ids := []string{"1", "p1"}
	var raws []loanlog.Raw
	for i, ev := range events {
		k, m, err := codec.Encode("acme", "L-1", ev)
		if err != nil {
			t.Fatal(err)
		}
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		raws = append(raws, loanlog.Raw{Seq: uint64(i + 1), Subject: topology.LoanRef{Tenant: "acme", Loan: "L-1"}.Subject(k.Token, ids[i]), Time: due, Data: b})
	}
	l := policy.Ladder{Policy: policy.Default(), Calendar: policy.Calendar{Day: policy.RealDay}}
	tl := Build(l, "acme", "L-1", raws, due)
	if len(tl.Entries) != 2 || !strings.Contains(tl.Entries[1].Reason, "OVERPAID: 500.00 CNY") {
		t.Errorf("entries %+v, want the repayment flagged OVERPAID: 500.00 CNY", tl.Entries)
	}
	if strings.Contains(tl.Entries[0].Reason, "OVERPAID") {
		t.Errorf("the installment is flagged: %s", tl.Entries[0].Reason)
	}
}
