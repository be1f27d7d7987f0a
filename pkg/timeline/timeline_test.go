package timeline

import (
	"bytes"
	"errors"
	"testing"
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
