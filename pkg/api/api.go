// Package api is the pipeline's HTTP surface: lender event ingest, a loan's
// timeline, Prometheus metrics and health.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/opendunning/dunning/pkg/apikey"
	"github.com/opendunning/dunning/pkg/ingest"
	"github.com/opendunning/dunning/pkg/loanlog"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/timeline"
)

// maxBody bounds a lender event body.
const maxBody = 64 << 10

// acceptedTypes are the media types of a lender event body.
var acceptedTypes = map[string]bool{"application/json": true, "application/x-protobuf": true, "application/protobuf": true}

// Server holds what the handlers need.
type Server struct {
	Ingestor *ingest.Ingestor
	Log      *loanlog.Log
	Ladder   func(tenant, product string) policy.Ladder
	Now      func() time.Time
	Gatherer prometheus.Gatherer
	Logger   *slog.Logger
	// Ready reports whether the process can serve (NATS connected, topology provisioned).
	Ready func() error
	// Keys authenticates callers of every route but health and metrics;
	// without it those routes refuse everyone.
	Keys *apikey.Store
}

// Handler returns the HTTP routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /v1/events", s.authed(apikey.ScopeIngest, s.postEvent))
	mux.Handle("GET /v1/tenants/{tenant}/loans/{loan}/timeline", s.authed(apikey.ScopeRead, s.getTimeline))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if s.Ready != nil {
			if err := s.Ready(); err != nil {
				writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "error": err.Error()})
				return
			}
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	if s.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.Gatherer, promhttp.HandlerOpts{}))
	}
	return mux
}

type principalKey struct{}

// authed admits callers with an API key holding scope (the admin scope
// holds every scope): 401 without a valid key, 403 without the scope.
// Which tenant a key may act for is checked by the handler, which knows
// the tenant.
func (s *Server) authed(scope apikey.Scope, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			token = ""
		}
		var p apikey.Principal
		err := apikey.ErrNoKey
		if s.Keys != nil {
			p, err = s.Keys.Authenticate(strings.TrimSpace(token))
		}
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="dunning"`)
			writeJSON(w, http.StatusUnauthorized, errorBody{Error: "an API key is required: Authorization: Bearer <key> (" + err.Error() + ")", Field: "Authorization"})
			return
		}
		if !p.Has(scope) {
			writeJSON(w, http.StatusForbidden, errorBody{Error: "this API key lacks the " + string(scope) + " scope", Field: "Authorization"})
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

func principal(r *http.Request) apikey.Principal {
	p, _ := r.Context().Value(principalKey{}).(apikey.Principal)
	return p
}

// forbidden answers 403 for a tenant the caller's key does not serve.
func forbidden(w http.ResponseWriter, field string) {
	writeJSON(w, http.StatusForbidden, errorBody{Error: "this API key is not for this tenant", Field: field})
}

type errorBody struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

func (s *Server) count(result string) { s.Ingestor.Count("http", result) }

func (s *Server) postEvent(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		s.count("invalid")
		writeJSON(w, http.StatusRequestEntityTooLarge, errorBody{Error: "body must be at most 64 KiB", Field: "body"})
		return
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		ct = "application/json"
	}
	if mt, _, perr := mime.ParseMediaType(ct); perr != nil || !acceptedTypes[mt] {
		s.count("invalid")
		writeJSON(w, http.StatusUnsupportedMediaType, errorBody{Error: "Content-Type must be application/json or application/x-protobuf", Field: "Content-Type"})
		return
	}
	ev, err := ingest.Decode(ct, body)
	if err == nil {
		var v ingest.Event
		if v, err = s.Ingestor.Check(ev); err == nil {
			p := principal(r)
			if !p.Serves(v.Tenant) {
				s.count("invalid")
				forbidden(w, "tenant_id")
				return
			}
			v.Principal = p.String()
			var res ingest.Result
			res, err = s.Ingestor.Record(r.Context(), v)
			if err == nil {
				status := http.StatusAccepted
				if res.Duplicate {
					s.count("duplicate")
					status = http.StatusOK
				} else {
					s.count("accepted")
				}
				writeJSON(w, status, res)
				return
			}
		}
	}
	if fe, ok := ingest.AsFieldError(err); ok {
		s.count("invalid")
		status := http.StatusBadRequest
		if errors.Is(err, ingest.ErrCurrencyMismatch) || errors.Is(err, ingest.ErrUnknownContact) {
			status = http.StatusUnprocessableEntity // well-formed, but not this loan's money
		}
		writeJSON(w, status, errorBody{Error: fe.Error(), Field: fe.Field})
		return
	}
	if errors.Is(err, ingest.ErrConflictingDuplicate) {
		s.count("invalid")
		writeJSON(w, http.StatusConflict, errorBody{Error: err.Error()})
		return
	}
	s.Logger.Error("recording lender event", "err", err)
	writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "could not record the event; retry with the same body"})
}

// getTimeline serves a loan's timeline as JSON, or with ?format=text as the
// aligned table the README shows (errors are JSON either way).
func (s *Server) getTimeline(w http.ResponseWriter, r *http.Request) {
	tenant, loan := r.PathValue("tenant"), r.PathValue("loan")
	for field, v := range map[string]string{"tenant": tenant, "loan": loan} {
		if !policy.ValidID(v) {
			writeJSON(w, http.StatusBadRequest, errorBody{Error: field + " must be 1-64 characters of A-Z, a-z, 0-9, '-' or '_'", Field: field})
			return
		}
	}
	p := principal(r)
	if !p.Serves(tenant) {
		forbidden(w, "tenant")
		return
	}
	format := r.URL.Query().Get("format")
	if format != "" && format != "json" && format != "text" {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: `format must be "json" (the default) or "text"`, Field: "format"})
		return
	}
	tl, err := timeline.Read(r.Context(), s.Log, s.Ladder, tenant, loan, s.Now())
	if err != nil {
		s.Logger.Error("reading timeline", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "could not read the loan's log"})
		return
	}
	if len(tl.Entries) == 0 {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "no events for this loan", Field: "loan"})
		return
	}
	// Verification codes let a borrower tell a genuine collector from a
	// fraudster: only the admin scope sees them.
	if !p.Has(apikey.ScopeAdmin) {
		tl.HideCodes()
	}
	if format == "text" {
		var b bytes.Buffer
		_ = tl.WriteText(&b) // a buffer does not fail
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(b.Bytes())
		return
	}
	writeJSON(w, http.StatusOK, tl)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
