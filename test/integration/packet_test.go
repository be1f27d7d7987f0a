package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opendunning/dunning/pkg/api"
	"github.com/opendunning/dunning/pkg/apikey"
	"github.com/opendunning/dunning/pkg/ingest"
	"github.com/opendunning/dunning/pkg/packet"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/topology"
)

// Issue 12, acceptance 7: the legal packet of a never-paying loan, taken
// through the API from a real pipeline's log, holds every entry of the log
// (but the timer) and verifies; altering, removing or reordering any one
// entry, or the summary, makes it fail. Sealing twice with nothing new
// writes no second seal. An entry deleted from the stream after the seal
// makes the next export refuse (409), naming the seal.
func TestLegalPacket(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 60*time.Millisecond)
	h.startPipeline()
	h.send(dueEvent("L-packet", "1", 120000, time.Now()))
	h.send(payEvent("L-packet", "p-1", 20000))
	h.waitKind("L-packet", policy.KindLegalReferred, 1, 90*h.day+30*time.Second)

	path := filepath.Join(t.TempDir(), "api-keys")
	key := func(tenant string, sc ...apikey.Scope) string {
		k, _, err := apikey.Create(path, tenant, sc)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	legal, read, otherLegal := key(tenant, apikey.ScopeLegal), key(tenant, apikey.ScopeRead), key("globex", apikey.ScopeLegal)
	lender := key(tenant, apikey.ScopeIngest)
	keys, err := apikey.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ladder := func(string, string) policy.Ladder { return h.ladder }
	s := &api.Server{Log: h.log, Now: time.Now, Keys: keys, Ladder: ladder, Ingestor: &ingest.Ingestor{Log: h.log, Ladder: ladder},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()

	// Legal outcomes come back as lender events: accepted for the referred
	// loan (a resend recorded once), refused for a loan never referred
	// (422 naming legal_outcome) and with a bad status (400 naming it).
	postOutcome := func(loan, id, status, ref string) (int, string) {
		t.Helper()
		body := fmt.Sprintf(`{"legal_outcome": {"tenant_id": %q, "loan_id": %q, "outcome_id": %q, "status": %q, "at": %q, "reference": %q}}`,
			tenant, loan, id, status, time.Now().UTC().Format(time.RFC3339), ref)
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/events", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+lender)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	h.send(dueEvent("L-young", "1", 1000, time.Now()))
	h.waitKind("L-young", policy.KindOverdueConfirmed, 1, 10*time.Second)
	if code, body := postOutcome("L-young", "lo-1", "LEGAL_STATUS_FILED", ""); code != http.StatusUnprocessableEntity ||
		!strings.Contains(body, `"legal_outcome"`) || !strings.Contains(body, "never referred") {
		t.Errorf("legal outcome of a loan never referred: %d %s, want 422 naming legal_outcome", code, body)
	}
	if code, body := postOutcome("L-packet", "lo-0", "LEGAL_STATUS_UNSPECIFIED", ""); code != http.StatusBadRequest || !strings.Contains(body, "legal_outcome.status") {
		t.Errorf("legal outcome without a status: %d %s, want 400 naming legal_outcome.status", code, body)
	}
	for _, o := range []struct{ id, status string }{{"lo-1", "LEGAL_STATUS_FILED"}, {"lo-2", "LEGAL_STATUS_JUDGMENT"}, {"lo-2", "LEGAL_STATUS_JUDGMENT"}} {
		if code, body := postOutcome("L-packet", o.id, o.status, "(2026)沪0115民初1234号"); code != http.StatusAccepted && code != http.StatusOK {
			t.Fatalf("legal outcome %s: %d %s", o.id, code, body)
		}
	}
	waitFor(t, 10*time.Second, func() error {
		if n := counts(h.entries("L-packet"))["legalout"]; n != 2 {
			return fmt.Errorf("%d legal outcomes in the log, want 2", n)
		}
		return nil
	})
	get := func(k string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/tenants/"+tenant+"/loans/L-packet/legal-packet", nil)
		req.Header.Set("Authorization", "Bearer "+k)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	if code, _ := get(read); code != http.StatusForbidden {
		t.Errorf("a read-scope key: %d, want 403", code)
	}
	if code, _ := get(otherLegal); code != http.StatusForbidden {
		t.Errorf("another tenant's legal key: %d, want 403", code)
	}
	h.stopAll() // the log stands still from here
	code, body := get(legal)
	if code != http.StatusOK {
		t.Fatalf("legal packet: %d %s", code, body)
	}
	p, err := packet.Read(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if err := packet.Verify(p); err != nil {
		t.Fatalf("the packet as exported does not verify: %v", err)
	}

	// Every entry of the log but the timer, in order, the seal last.
	var want []uint64
	for _, e := range h.entries("L-packet") {
		if e.kind != string(topology.KindTimer) {
			want = append(want, e.seq)
		}
	}
	var got []uint64
	kinds := map[string]int{}
	for _, e := range p.Entries {
		got = append(got, e.Seq)
		kinds[e.Kind]++
	}
	if !slices.Equal(got, want) {
		t.Errorf("packet entries %v, want the log's %v", got, want)
	}
	for _, k := range []string{"due", "repaid", "overdue_confirmed", "contact_requested", "escalated", "handed_off", "legal_referred", "seal", "step"} {
		if kinds[k] == 0 {
			t.Errorf("the packet has no %s entry (kinds %v)", k, kinds)
		}
	}
	if st := p.Summary.Statement; st.Due != "1200.00 CNY" || st.Paid != "200.00 CNY" || st.Outstanding != "1000.00 CNY" {
		t.Errorf("statement due %s, paid %s, outstanding %s; want 1200.00, 200.00, 1000.00 CNY", st.Due, st.Paid, st.Outstanding)
	}
	var legalKinds []string
	for _, l := range p.Summary.Legal {
		legalKinds = append(legalKinds, l.Kind)
	}
	if fmt.Sprint(legalKinds) != "[legal_referred legal_filed legal_judgment]" || len(p.Summary.Agency) != 1 || len(p.Summary.Notices) == 0 {
		t.Errorf("summary: legal %v, %d placements, %d notices; want the referral, then filed and judgment; 1; some",
			legalKinds, len(p.Summary.Agency), len(p.Summary.Notices))
	}
	if kinds["legalout"] != 2 {
		t.Errorf("the packet has %d legal outcome entries, want 2 (kinds %v)", kinds["legalout"], kinds)
	}

	// Sealed already: a second export writes no second seal.
	_, body2 := get(legal)
	p2, err := packet.Read(bytes.NewReader(body2))
	if err != nil || p2.Seal != p.Seal || len(p2.Entries) != len(p.Entries) {
		t.Errorf("second export: seal %+v (%d entries), want the first's %+v (%d): %v", p2.Seal, len(p2.Entries), p.Seal, len(p.Entries), err)
	}

	// Tampering with any one entry, one way after another.
	fails := func(what string, change func(q *packet.Packet)) {
		t.Helper()
		var q packet.Packet
		if err := json.Unmarshal(body, &q); err != nil {
			t.Fatal(err)
		}
		change(&q)
		if err := packet.Verify(q); err == nil {
			t.Errorf("%s: the packet still verifies", what)
		}
	}
	tampered := 0
	for i := range p.Entries {
		fails("entry data altered", func(q *packet.Packet) { q.Entries[i].Data = append(slices.Clone(q.Entries[i].Data), 0x0a, 0x00) })
		fails("entry time altered", func(q *packet.Packet) { q.Entries[i].Time = q.Entries[i].Time.Add(time.Nanosecond) })
		fails("entry principal altered", func(q *packet.Packet) { q.Entries[i].Principal += "x" })
		fails("entry content altered", func(q *packet.Packet) {
			q.Entries[i].Content = json.RawMessage(strings.Replace(string(q.Entries[i].Content), "{", `{"unknownField":1,`, 1))
		})
		fails("entry removed", func(q *packet.Packet) { q.Entries = slices.Delete(q.Entries, i, i+1) })
		if i+1 < len(p.Entries) {
			fails("entries swapped", func(q *packet.Packet) { q.Entries[i], q.Entries[i+1] = q.Entries[i+1], q.Entries[i] })
		}
		tampered++
	}
	fails("summary altered", func(q *packet.Packet) { q.Summary.Statement.Paid = "1200.00 CNY" })
	fails("a notice dropped from the summary", func(q *packet.Packet) { q.Summary.Notices = q.Summary.Notices[1:] })
	fails("seal replaced", func(q *packet.Packet) { q.Seal.Chain = strings.Repeat("0", 64) })
	t.Logf("packet of %d entries (seal at seq %d); %d entries each altered 6 ways: every alteration detected", len(p.Entries), p.Seal.Seq, tampered)

	// The log itself: the stream refuses to delete an entry (deny_delete),
	// and were one gone (a stream restored from an altered copy), the seal
	// would no longer match: the export refuses with 409.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := h.js.Stream(ctx, topology.StreamLoans)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.DeleteMsg(ctx, p.Entries[1].Seq); err == nil {
		t.Error("the loans stream let an entry of a loan's log be deleted")
	}
	raws, _, err := h.log.ReadRaw(ctx, tenant, "L-packet")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := packet.Chain(tenant, "L-packet", raws); err != nil {
		t.Fatalf("the log as it stands: %v", err)
	}
	for i := range raws {
		a, _ := topology.ParseLoanSubject(raws[i].Subject)
		if a.Kind == topology.KindTimer || raws[i].Seq >= p.Seal.Seq {
			continue
		}
		if _, _, _, err := packet.Chain(tenant, "L-packet", slices.Delete(slices.Clone(raws), i, i+1)); !errors.Is(err, packet.ErrBroken) {
			t.Errorf("the log without seq %d: %v, want ErrBroken", raws[i].Seq, err)
		}
	}
}
