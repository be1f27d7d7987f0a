package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opendunning/dunning/pkg/apikey"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/timeline"
)

// Acceptance 2 (HTTP matrix): over real HTTP and a real JetStream server,
// every protected route refuses a caller without a valid key (401), a key
// of another tenant or without the route's scope (403); a lender event
// records its principal, shown in the timeline; and the borrowers'
// verification codes are shown to the admin scope only.
func TestHTTPAuthMatrix(t *testing.T) {
	s, log := testServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	path, key := keyFile(t)
	acme, acmeID := key("acme", apikey.ScopeIngest, apikey.ScopeRead)
	acmeRead, _ := key("acme", apikey.ScopeRead)
	globexIngest, _ := key("globex", apikey.ScopeIngest)
	admin, _ := key(apikey.AnyTenant, apikey.ScopeAdmin)
	revoked, revokedID := key("acme", apikey.ScopeIngest)
	if err := apikey.Revoke(path, revokedID); err != nil {
		t.Fatal(err)
	}
	keys, err := apikey.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Keys = keys
	api := httptest.NewServer(s.Handler())
	defer api.Close()

	due := func(tenant, loan string) string {
		return `{"installmentDue": {"tenantId": "` + tenant + `", "loanId": "` + loan + `", "installmentId": "1",
			"amount": {"currency": "CNY", "minorUnits": "120000"}, "dueAt": "` + time.Now().UTC().Format(time.RFC3339) + `",
			"timeZone": "Asia/Shanghai", "contactRef": "crm-77"}}`
	}
	hold := func(kind string) string {
		return `{"holdPlaced": {"tenantId": "acme", "loanId": "L-2", "holdId": "dec-1", "kind": "` + kind + `", "receivedAt": "2026-12-01T00:00:00Z"}}`
	}
	const unhold = `{"holdReleased": {"tenantId": "acme", "loanId": "L-2", "holdId": "dec-1", "releasedAt": "2026-12-01T01:00:00Z"}}`
	call := func(method, path, key, body string) (int, map[string]any, string) {
		t.Helper()
		req, err := http.NewRequest(method, api.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var out map[string]any
		_ = json.Unmarshal(b, &out)
		return resp.StatusCode, out, string(b)
	}
	const acmeTimeline = "/v1/tenants/acme/loans/L-1/timeline"
	cases := []struct {
		name, method, path, key, body string
		status                        int
		field                         string
	}{
		{"post without a key", "POST", "/v1/events", "", due("acme", "L-1"), 401, "Authorization"},
		{"post with a made-up key", "POST", "/v1/events", "dk_nope_secret", due("acme", "L-1"), 401, "Authorization"},
		{"post with a revoked key", "POST", "/v1/events", revoked, due("acme", "L-1"), 401, "Authorization"},
		{"post with not a bearer key", "POST", "/v1/events", "Basic YWNtZTpwdw==", due("acme", "L-1"), 401, "Authorization"},
		{"timeline without a key", "GET", acmeTimeline, "", "", 401, "Authorization"},
		{"post with a read-only key", "POST", "/v1/events", acmeRead, due("acme", "L-1"), 403, "Authorization"},
		{"post for another tenant", "POST", "/v1/events", globexIngest, due("acme", "L-1"), 403, "tenant_id"},
		{"timeline with an ingest-only key", "GET", acmeTimeline, globexIngest, "", 403, "Authorization"},
		{"timeline of another tenant", "GET", "/v1/tenants/globex/loans/L-1/timeline", acmeRead, "", 403, "tenant"},
		{"post with the tenant's key", "POST", "/v1/events", acme, due("acme", "L-1"), 202, ""},
		{"admin posts for any tenant", "POST", "/v1/events", admin, due("globex", "L-1"), 202, ""},
		// A deceased hold is lifted only by the admin scope (one entered by
		// mistake); the tenant's own key is refused, naming the hold.
		{"the tenant's key places a deceased hold", "POST", "/v1/events", acme, hold("HOLD_KIND_DECEASED"), 202, ""},
		{"the tenant's key lifts it", "POST", "/v1/events", acme, unhold, 403, "hold_released.hold_id"},
		{"the admin lifts it", "POST", "/v1/events", admin, unhold, 202, ""},
	}
	for _, c := range cases {
		status, out, raw := call(c.method, c.path, c.key, c.body)
		if status != c.status || (c.field != "" && out["field"] != c.field) {
			t.Errorf("%s: %d %s, want %d naming %q", c.name, status, raw, c.status, c.field)
		}
	}
	for _, open := range []string{"/healthz", "/readyz"} {
		if status, _, raw := call("GET", open, "", ""); status != http.StatusOK {
			t.Errorf("%s without a key: %d %s, want 200", open, status, raw)
		}
	}

	// A contact with its verification code, as a stage would record it.
	if _, err := log.AppendDecision(ctx, "acme", "L-1", 1, policy.Decision{Kind: policy.KindContactRequested,
		Ctx:   policy.Context{Case: 1, Stage: policy.StageFirstContact, DPD: 1},
		Tasks: []policy.ContactTask{{ID: "c1", Channel: policy.ChannelSMS, ContactRef: "crm-77", Reference: "CODE7HK2PX"}}}); err != nil {
		t.Fatal(err)
	}
	read := func(key string) (timeline.Timeline, string) {
		t.Helper()
		status, _, raw := call("GET", acmeTimeline, key, "")
		if status != http.StatusOK {
			t.Fatalf("timeline: %d %s", status, raw)
		}
		var tl timeline.Timeline
		if err := json.Unmarshal([]byte(raw), &tl); err != nil {
			t.Fatal(err)
		}
		return tl, raw
	}
	tl, raw := read(acmeRead)
	if tl.Entries[0].Principal != "apikey:"+acmeID {
		t.Errorf("the installment's principal = %q, want apikey:%s", tl.Entries[0].Principal, acmeID)
	}
	if strings.Contains(raw, "CODE7HK2PX") {
		t.Error("the read scope sees a verification code")
	}
	if !strings.Contains(raw, "crm-77") {
		t.Error("the timeline lost the rest of the contact")
	}
	if _, raw := read(admin); !strings.Contains(raw, "CODE7HK2PX") {
		t.Error("the admin scope does not see the verification code")
	}
}

// keyFile is an API keys file for a test, and a function that adds a key
// to it, returning the key and its ID.
func keyFile(t *testing.T) (string, func(tenant string, sc ...apikey.Scope) (string, string)) {
	path := filepath.Join(t.TempDir(), "api-keys")
	return path, func(tenant string, sc ...apikey.Scope) (string, string) {
		t.Helper()
		k, id, err := apikey.Create(path, tenant, sc)
		if err != nil {
			t.Fatal(err)
		}
		return k, id
	}
}
