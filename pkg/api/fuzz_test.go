package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/opendunning/dunning/pkg/apikey"
)

// FuzzIngest posts arbitrary bodies to the real HTTP handler, backed by a
// real embedded JetStream server: every answer is 200, 202, 400, 409, 413,
// 415 or 422 with a JSON body, and a 4xx names its error.
func FuzzIngest(f *testing.F) {
	s, _ := testServer(f)
	var key string
	s.Keys, key = testKeys(f, "*", apikey.ScopeAdmin)
	h := s.Handler()
	f.Add("application/json", []byte(`{"installmentDue":{"tenantId":"acme","loanId":"L-1","installmentId":"1","amount":{"currency":"CNY","minorUnits":"100"},"dueAt":"2026-12-01T00:00:00Z","timeZone":"Asia/Shanghai","contactRef":"c"}}`))
	f.Add("application/json", []byte(`{"repaymentReceived":{"tenantId":"acme","loanId":"L-1","paymentId":"p","amount":{"currency":"CNY","minorUnits":"100"},"paidAt":"2026-12-01T00:00:00Z"}}`))
	f.Add("application/x-protobuf", []byte{0x0a, 0x00})
	f.Add("", []byte(`not json`))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/v1/events", bytes.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("Authorization", "Bearer "+key)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var out map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("status %d with a non-JSON body %q", rec.Code, rec.Body.String())
		}
		switch rec.Code {
		case http.StatusOK, http.StatusAccepted:
		case http.StatusBadRequest, http.StatusConflict, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity:
			if out["error"] == "" || out["error"] == nil {
				t.Fatalf("status %d without an error: %v", rec.Code, out)
			}
		default:
			t.Fatalf("status %d for %q: %v", rec.Code, body, out)
		}
	})
}
