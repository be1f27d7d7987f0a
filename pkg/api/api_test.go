package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// An unknown timeline format is refused before the loan's log is read,
// naming the field at fault.
func TestTimelineUnknownFormat(t *testing.T) {
	h := (&Server{}).Handler()
	for _, format := range []string{"xml", "TEXT", "table"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/tenants/acme/loans/L-1001/timeline?format="+format, nil))
		var body errorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("format %q: body %q is not JSON: %v", format, rec.Body, err)
		}
		if rec.Code != http.StatusBadRequest || body.Field != "format" || body.Error == "" {
			t.Errorf("GET timeline?format=%s = %d %+v, want 400 naming the field format", format, rec.Code, body)
		}
	}
}
