package readme

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opendunning/dunning/pkg/allinone"
	"github.com/opendunning/dunning/pkg/app"
	"github.com/opendunning/dunning/pkg/natstest"
)

// The README's loan climbs the whole ladder and its text timeline is the one
// the README shows: its own ingest example, posted to the all-in-one process
// with the README's 1 s days, until the legal referral (the final notice at DPD 90, the referral at
// DPD 120: some 122 s).
// Not shorter: the shipped policy holds each contact until the loan's slot
// in the borrower's morning (08:09 local for this loan, 0.34 of a day) and
// the window closes at 22:00 (0.92); the server fires a schedule up to
// 250 ms late, so a day under about 600 ms could hold the contact again to
// the next morning, and the timeline would not be the README's.
func TestReadmeTimeline(t *testing.T) {
	if testing.Short() {
		t.Skip("climbs the whole ladder: about 122 s")
	}
	base, key := dunningd(t, "1s")
	request := func(method, url, body string) (*http.Response, error) {
		req, err := http.NewRequest(method, url, strings.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		return http.DefaultClient.Do(req)
	}

	// The README's `date -u` is up to a second in the past; the test's
	// installment falls due at the next whole second, so that its days
	// start on whole seconds as the README's do.
	due := time.Now().Truncate(time.Second).Add(time.Second)
	resp, err := request(http.MethodPost, base+"/v1/events", Example(t, due))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("README example: %d, want 202", resp.StatusCode)
	}
	timeline := base + "/v1/tenants/acme/loans/L-1001/timeline"
	natstest.CheckFor(t, 150*time.Second, 100*time.Millisecond, func() error {
		resp, err := request(http.MethodGet, timeline, "")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var tl struct {
			Entries []struct{ Kind string } `json:"entries"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&tl); err != nil {
			return err
		}
		var kinds []string
		for _, e := range tl.Entries {
			kinds = append(kinds, e.Kind)
		}
		if !slices.Contains(kinds, "legal_referred") {
			return fmt.Errorf("timeline kinds = %v, want a legal referral", kinds)
		}
		return nil
	})

	resp, err = request(http.MethodGet, timeline+"?format=text", "")
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("timeline?format=text = %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), text)
	}
	got := strings.Split(strings.TrimRight(string(text), "\n"), "\n")
	want := Block(t, "timeline")
	// The seq column is compared only for order: timers are messages in the
	// same log, and whether a stage's timer write or the gate's record lands
	// first is a race both sides of which are correct (the loser re-reads
	// and finds the timer already right), so the gaps between entries may
	// differ by one from the README's run.
	last := 0
	for i := range max(len(got), len(want)) {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if i > 0 {
			var seq int
			seq, g = splitSeq(g)
			_, w = splitSeq(w)
			if seq <= last {
				t.Errorf("line %d of the text timeline: seq %d after %d", i+1, seq, last)
			}
			last = seq
		}
		if i >= len(got) || i >= len(want) || !LineMatches(w, g) {
			t.Errorf("line %d of the text timeline:\n got %q\nREADME %q", i+1, g, w)
		}
	}
	if t.Failed() {
		t.Logf("the text timeline:\n%s", text)
	}

	resp, err = request(http.MethodGet, timeline+"?format=xml", "")
	if err != nil {
		t.Fatal(err)
	}
	var bad struct{ Error, Field string }
	_ = json.NewDecoder(resp.Body).Decode(&bad)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || bad.Field != "format" {
		t.Errorf("timeline?format=xml = %d %+v, want 400 naming the field format", resp.StatusCode, bad)
	}
}

// dunningd runs the all-in-one process in this test process, as make run
// does, and returns its base URL and the development API key it created.
func dunningd(t *testing.T, day string) (base, key string) {
	t.Helper()
	data := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	addr, done := make(chan string, 1), make(chan error, 1)
	o := allinone.Options()
	o.Ready = func(a string) { addr <- a }
	go func() {
		done <- app.Run(ctx, []string{"--nats-listen", "none", "--http", "127.0.0.1:0", "--day", day, "--log-level", "error", "--data-dir", data}, o)
	}()
	select {
	case a := <-addr:
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("dunningd: %v", err)
			}
		})
		b, err := os.ReadFile(filepath.Join(data, "credentials", app.DevAPIKeyFile))
		if err != nil {
			t.Fatal(err)
		}
		return "http://" + a, strings.TrimSpace(string(b))
	case err := <-done:
		cancel()
		t.Fatalf("dunningd exited: %v", err)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("dunningd did not start")
	}
	return "", ""
}

func TestReadmeLineMatches(t *testing.T) {
	tests := []struct {
		readme, got string
		want        bool
	}{
		{"1   installment_due  none", "1    installment_due    none", true},
		{"1 installment_due none", "1 installment_due  light", false},
		{"1  installment_due  due ...", "1    installment_due    due 2026-01-15T04:00:00Z", true},
		{"1  installment_due  due ...", "1    installment_due    paid 2026-01-15T04:00:00Z", false},
		{"4   overdue_confirmed", "4 overdue_confirmed extra", false},
		{"", "", true},
		{"seq kind", "", false},
	}
	for _, tt := range tests {
		if got := LineMatches(tt.readme, tt.got); got != tt.want {
			t.Errorf("LineMatches(%q, %q) = %v, want %v", tt.readme, tt.got, got, tt.want)
		}
	}
}

// splitSeq splits a timeline row into its seq and the rest of the row.
func splitSeq(row string) (int, string) {
	first, rest, _ := strings.Cut(strings.TrimLeft(row, " "), " ")
	seq, err := strconv.Atoi(first)
	if err != nil {
		return 0, row
	}
	return seq, rest
}
