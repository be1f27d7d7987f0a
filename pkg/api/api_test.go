package api

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/opendunning/dunning/pkg/apikey"
	"github.com/opendunning/dunning/pkg/ingest"
	"github.com/opendunning/dunning/pkg/loanlog"
	"github.com/opendunning/dunning/pkg/natstest"
	"github.com/opendunning/dunning/pkg/policy"
)

// testKeys is a key file with one key for tenant with scopes.
func testKeys(tb testing.TB, tenant string, scopes ...apikey.Scope) (*apikey.Store, string) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "api-keys")
	key, _, err := apikey.Create(path, tenant, scopes)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := apikey.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	return s, key
}

// An unknown timeline format is refused before the loan's log is read,
// naming the field at fault.
func TestTimelineUnknownFormat(t *testing.T) {
	keys, key := testKeys(t, "acme", apikey.ScopeRead)
	h := (&Server{Keys: keys}).Handler()
	for _, format := range []string{"xml", "TEXT", "table"} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/v1/tenants/acme/loans/L-1001/timeline?format="+format, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		h.ServeHTTP(rec, req)
		var body errorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("format %q: body %q is not JSON: %v", format, rec.Body, err)
		}
		if rec.Code != http.StatusBadRequest || body.Field != "format" || body.Error == "" {
			t.Errorf("GET timeline?format=%s = %d %+v, want 400 naming the field format", format, rec.Code, body)
		}
	}
}

// testServer is the API over a real embedded JetStream server with the
// declared streams.
func testServer(tb testing.TB) (*Server, *loanlog.Log) {
	tb.Helper()
	nc, js := natstest.Provisioned(tb, "api-test")
	log := loanlog.New(nc, js)
	return &Server{Ingestor: &ingest.Ingestor{Log: log, Now: time.Now}, Log: log, Now: time.Now,
		Ladder: policy.Fixed(policy.Ladder{Policy: policy.Default(), Calendar: policy.Calendar{Day: policy.RealDay}}),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, log
}
