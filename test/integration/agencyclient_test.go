package integration

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opendunning/dunning/pkg/access"
	"github.com/opendunning/dunning/pkg/agency"
	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"
)

// Issue 12, acceptance 8 (its first half): the reference agency client
// (pkg/agency, services/agency) against a running dunningd, as the README
// shows it: the agency's credential created in dunningd's keyring while it
// runs, the client started before the agency's first placement (it waits
// for its consumer), a loan posted over HTTP that is past DPD 31: the
// client is handed the placement, and then its recall when the loan is
// paid.
// lastLines is the end of a log, for a failure's message.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func TestReferenceAgencyClient(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	d := runDunningd(t, data, "--day", "100ms")
	keys := access.Keyring{Dir: filepath.Join(data, "credentials")}
	const id = "agency-default" // the shipped policy's one agency
	if _, _, err := keys.Create(access.Agency(id)); err != nil {
		t.Fatal(err)
	}
	var nc interface{ Close() }
	var c *agency.Client
	waitFor(t, 15*time.Second, func() error { // admitted at dunningd's next keyring reload
		conn, err := agency.Connect(d.nats, id, keys.SeedFile(access.Agency(id)))
		if err != nil {
			return err
		}
		nc, c = conn, &agency.Client{Agency: id, Conn: conn, Wait: 100 * time.Millisecond}
		return nil
	})
	defer nc.Close()
	var mu sync.Mutex
	var got []*dunningv1.AgencyFeed
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- c.Run(ctx, func(_ context.Context, _ string, m *dunningv1.AgencyFeed) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, m)
			return nil
		})
	}()
	post := func(body string) {
		t.Helper()
		resp, err := http.Post(d.base+"/v1/events", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("posting %s: %s", body, resp.Status)
		}
	}
	due := time.Now().Add(-4 * time.Second).UTC().Format(time.RFC3339Nano) // DPD 40 in 100 ms days
	post(`{"installmentDue": {"tenantId": "acme", "loanId": "L-agency", "installmentId": "1", "amount": {"currency": "CNY", "minorUnits": "120000"},
		"dueAt": "` + due + `", "timeZone": "Asia/Shanghai", "contactRef": "crm-77", "region": "CN-31"}}`)
	count := func() (placed, recalled int) {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range got {
			if p := m.GetPlaced(); p != nil && p.LoanId == "L-agency" && p.ContactRef == "crm-77" && p.Region == "CN-31" {
				placed++
			}
			if r := m.GetRecalled(); r != nil && r.LoanId == "L-agency" {
				recalled++
			}
		}
		return placed, recalled
	}
	waitFor(t, 60*time.Second, func() error {
		select {
		case err := <-done:
			t.Fatalf("the client stopped: %v", err)
		default:
		}
		if p, _ := count(); p != 1 {
			return errorf("placements handed to the client: %d (dunningd's log:\n%s)", p, lastLines(d.logs.String(), 15))
		}
		return nil
	})
	post(`{"repaymentReceived": {"tenantId": "acme", "loanId": "L-agency", "paymentId": "pay-1", "amount": {"currency": "CNY", "minorUnits": "120000"},
		"paidAt": "` + time.Now().UTC().Format(time.RFC3339Nano) + `"}}`)
	waitFor(t, 30*time.Second, func() error {
		if p, r := count(); p != 1 || r != 1 {
			return errorf("placed %d, recalled %d; want 1 and 1", p, r)
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Errorf("the client: %v", err)
	}
}
