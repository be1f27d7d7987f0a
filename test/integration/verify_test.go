package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Acceptance 6 (contact rules): a borrower checks a real message's code at
// the public GET /v1/verify/{code}, without an API key: genuine, with the
// lender's name, channel and time, and nothing that identifies the borrower
// or the debt; a code no contact carried is 404 with advice; once the loan
// is paid the same code says "nothing due"; a client looking up 100 codes
// a second is refused with 429.
func TestVerifyACode(t *testing.T) {
	t.Parallel()
	base := startDunningd(t, "--day", "2s", "--fsync", "interval")
	// The borrower's lookups carry no key.
	public := &http.Client{Transport: &http.Transport{}}
	lookup := func(code string) (int, string) {
		t.Helper()
		resp, err := public.Get(base + "/v1/verify/" + code)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	post := func(body string) {
		t.Helper()
		resp, err := http.Post(base+"/v1/events", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST /v1/events: %d", resp.StatusCode)
		}
	}
	post(fmt.Sprintf(`{"installmentDue": {"tenantId": "acme", "loanId": "L-verify-7", "installmentId": "inst-1",
		"amount": {"currency": "CNY", "minorUnits": "123456"}, "dueAt": %q, "timeZone": "Asia/Shanghai",
		"contactRef": "crm-ref-4242", "borrowerRef": "brw-9191"}}`, time.Now().UTC().Format(time.RFC3339)))

	// The code of the first contact released, as the admin's timeline shows it.
	var code, contact string
	waitFor(t, 60*time.Second, func() error {
		resp, err := http.Get(base + "/v1/tenants/acme/loans/L-verify-7/timeline")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var tl struct {
			Entries []struct {
				Kind  string          `json:"kind"`
				Event json.RawMessage `json:"event"`
			} `json:"entries"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&tl); err != nil {
			return err
		}
		for _, e := range tl.Entries {
			if e.Kind != "contact_released" {
				continue
			}
			var ev struct {
				Tasks []struct{ Reference, ContactId string } `json:"tasks"`
			}
			if err := json.Unmarshal(e.Event, &ev); err != nil || len(ev.Tasks) == 0 || ev.Tasks[0].Reference == "" {
				return fmt.Errorf("contact_released without a code: %s", e.Event)
			}
			code, contact = ev.Tasks[0].Reference, ev.Tasks[0].ContactId
			return nil
		}
		return fmt.Errorf("no contact released yet")
	})

	status, body := lookup(code)
	var ans struct {
		Genuine    bool
		Lender     string
		Channel    string
		SentAt     time.Time
		NothingDue bool
		Advice     string
	}
	if err := json.Unmarshal([]byte(body), &ans); err != nil || status != http.StatusOK {
		t.Fatalf("verify %s: %d %s", code, status, body)
	}
	if !ans.Genuine || ans.Lender == "" || ans.Channel != "sms" || time.Since(ans.SentAt) > time.Minute || ans.NothingDue {
		t.Errorf("verify %s = %+v, want genuine, a lender, sms, sent just now, something due", code, ans)
	}
	// Nothing in the answer identifies the borrower or the debt.
	for _, secret := range []string{"L-verify-7", "inst-1", "crm-ref-4242", "brw-9191", "1234", "123456", "CNY", "Asia/Shanghai", "c1-"} {
		if strings.Contains(body, secret) {
			t.Errorf("the answer carries %q: %s", secret, body)
		}
	}
	// Typed by hand: lower case and a dash are the same code.
	if s, _ := lookup(strings.ToLower(code[:5]) + "-" + code[5:]); s != http.StatusOK {
		t.Errorf("verify as typed by hand: %d, want 200", s)
	}

	// The lender's side: every rule as it applied to that contact
	// (dunctl rules explain reads this).
	resp, err := http.Get(base + "/v1/tenants/acme/loans/L-verify-7/contacts/" + contact + "/rules?format=text")
	if err != nil {
		t.Fatal(err)
	}
	explained, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(explained), "cn.hours") || !strings.Contains(string(explained), "held, then passed") {
		t.Errorf("rules of contact %s: %d\n%s\nwant cn.hours held, then passed", contact, resp.StatusCode, explained)
	}

	// A code no contact carried.
	unknown := "ZZZZZZZZZZ"
	if code == unknown {
		unknown = "YYYYYYYYYY"
	}
	if s, b := lookup(unknown); s != http.StatusNotFound || !strings.Contains(b, "official app") {
		t.Errorf("verify an unknown code: %d %s, want 404 with advice", s, b)
	}

	// Paid: the same code now says nothing is due.
	post(fmt.Sprintf(`{"repaymentReceived": {"tenantId": "acme", "loanId": "L-verify-7", "paymentId": "pay-1",
		"amount": {"currency": "CNY", "minorUnits": "123456"}, "paidAt": %q}}`, time.Now().UTC().Format(time.RFC3339)))
	waitFor(t, 30*time.Second, func() error {
		s, b := lookup(code)
		if s == http.StatusTooManyRequests {
			return fmt.Errorf("rate-limited; trying again")
		}
		if err := json.Unmarshal([]byte(b), &ans); err != nil || s != http.StatusOK || !ans.Genuine || !ans.NothingDue {
			return fmt.Errorf("verify after payment: %d %s, want genuine and nothing due", s, b)
		}
		return nil
	})

	// 100 lookups in a burst from one client: the client's limit (1 a
	// second after a burst of 5) refuses most with 429.
	start := time.Now()
	allowed, limited := 0, 0
	for range 100 {
		switch s, _ := lookup(code); s {
		case http.StatusOK:
			allowed++
		case http.StatusTooManyRequests:
			limited++
		default:
			t.Fatalf("lookup in a burst: %d", s)
		}
	}
	if most := 5 + int(time.Since(start).Seconds()) + 1; allowed > most || limited == 0 {
		t.Errorf("100 lookups in %s: %d allowed, %d refused with 429; want at most %d allowed", time.Since(start).Round(time.Millisecond), allowed, limited, most)
	}
}
