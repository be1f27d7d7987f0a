// Package api is the pipeline's HTTP surface: lender event ingest, a loan's
// timeline, Prometheus metrics and health. The lender calls are served
// twice from one implementation: as the README's REST routes, and as the
// Connect service dunning.v1.LenderService (proto/dunning/v1/api.proto).
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/opendunning/dunning/pkg/apikey"
	"github.com/opendunning/dunning/pkg/ingest"
	"github.com/opendunning/dunning/pkg/loanlog"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/timeline"
	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"
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
	// Keys authenticates callers of every route but health, metrics and
	// verification; without it those routes refuse everyone.
	Keys *apikey.Store
	// Verifier serves the public GET /v1/verify/{code} (nil: not served).
	Verifier *Verifier
}

// Handler returns the HTTP routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /v1/events", s.authed(apikey.ScopeIngest, s.postEvent))
	mux.Handle("GET /v1/tenants/{tenant}/loans/{loan}/timeline", s.authed(apikey.ScopeRead, s.getTimeline))
	mux.Handle("GET /v1/tenants/{tenant}/loans/{loan}/contacts/{contact}/rules", s.authed(apikey.ScopeRead, s.getContactRules))
	mux.Handle("GET /v1/tenants/{tenant}/loans/{loan}/legal-packet", s.authed(apikey.ScopeLegal, s.getLegalPacket))
	if s.Verifier != nil {
		// Public: a borrower checks a message's code without an account.
		mux.Handle("GET /v1/verify/{code}", s.Verifier)
	}
	// The same calls as a Connect service (gRPC, gRPC-Web, Connect).
	mux.Handle(s.connectHandler())
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

// refusal is a request refused: the HTTP status the REST routes answer,
// which the Connect service maps to its code (connect.go), the message, and
// the field at fault.
type refusal struct {
	status     int
	msg, field string
}

func (r *refusal) Error() string { return r.msg }

// authenticate admits the caller of an Authorization header with an API
// key holding scope (the admin scope holds every scope): 401 without a
// valid key, 403 without the scope. Which tenant a key may act for is
// checked where the tenant is known.
func (s *Server) authenticate(authorization string, scope apikey.Scope) (apikey.Principal, *refusal) {
	token, ok := strings.CutPrefix(authorization, "Bearer ")
	if !ok {
		token = ""
	}
	var p apikey.Principal
	err := apikey.ErrNoKey
	if s.Keys != nil {
		p, err = s.Keys.Authenticate(strings.TrimSpace(token))
	}
	if err != nil {
		return p, &refusal{http.StatusUnauthorized, "an API key is required: Authorization: Bearer <key> (" + err.Error() + ")", "Authorization"}
	}
	if !p.Has(scope) {
		return p, &refusal{http.StatusForbidden, "this API key lacks the " + string(scope) + " scope", "Authorization"}
	}
	return p, nil
}

// authed admits a REST route's callers (authenticate).
func (s *Server) authed(scope apikey.Scope, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ref := s.authenticate(r.Header.Get("Authorization"), scope)
		if ref != nil {
			if ref.status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="dunning"`)
			}
			writeRefusal(w, ref)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

func principalOf(ctx context.Context) apikey.Principal {
	p, _ := ctx.Value(principalKey{}).(apikey.Principal)
	return p
}

// notForTenant refuses a tenant the caller's key does not serve.
func notForTenant(field string) *refusal {
	return &refusal{http.StatusForbidden, "this API key is not for this tenant", field}
}

type errorBody struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

func writeRefusal(w http.ResponseWriter, r *refusal) {
	writeJSON(w, r.status, errorBody{Error: r.msg, Field: r.field})
}

func (s *Server) count(result string) { s.Ingestor.Count("http", result) }

func (s *Server) postEvent(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		s.count("invalid")
		writeRefusal(w, &refusal{http.StatusRequestEntityTooLarge, "body must be at most 64 KiB", "body"})
		return
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		ct = "application/json"
	}
	if mt, _, perr := mime.ParseMediaType(ct); perr != nil || !acceptedTypes[mt] {
		s.count("invalid")
		writeRefusal(w, &refusal{http.StatusUnsupportedMediaType, "Content-Type must be application/json or application/x-protobuf", "Content-Type"})
		return
	}
	ev, err := ingest.Decode(ct, body)
	if err != nil {
		s.count("invalid")
		writeRefusal(w, eventRefusal(err))
		return
	}
	res, ref := s.submit(r.Context(), principalOf(r.Context()), ev)
	if ref != nil {
		writeRefusal(w, ref)
		return
	}
	status := http.StatusAccepted
	if res.Duplicate {
		status = http.StatusOK
	}
	writeJSON(w, status, res)
}

// submit checks and records one lender event for principal p: the REST
// route and the Connect service both end here.
func (s *Server) submit(ctx context.Context, p apikey.Principal, ev *dunningv1.LenderEvent) (ingest.Result, *refusal) {
	v, err := s.Ingestor.Check(ev)
	if err != nil {
		s.count("invalid")
		return ingest.Result{}, eventRefusal(err)
	}
	if !p.Serves(v.Tenant) {
		s.count("invalid")
		return ingest.Result{}, notForTenant("tenant_id")
	}
	v.Principal, v.Admin = p.String(), p.Has(apikey.ScopeAdmin)
	res, err := s.Ingestor.Record(ctx, v)
	if err != nil {
		if ref := eventRefusal(err); ref.status != http.StatusServiceUnavailable {
			s.count("invalid")
			return res, ref
		}
		s.Logger.Error("recording lender event", "err", err)
		return res, &refusal{http.StatusServiceUnavailable, "could not record the event; retry with the same body", ""}
	}
	if res.Duplicate {
		s.count("duplicate")
	} else {
		s.count("accepted")
	}
	return res, nil
}

// eventRefusal classifies why an event was not recorded: a field at fault
// (400, or 422 when well-formed but not this loan's money or contact, or
// 403 when only the admin scope may do it), an
// ID reused for another body (409), or the log unavailable (503).
func eventRefusal(err error) *refusal {
	if fe, ok := ingest.AsFieldError(err); ok {
		status := http.StatusBadRequest
		switch {
		case errors.Is(err, ingest.ErrCurrencyMismatch) || errors.Is(err, ingest.ErrUnknownTarget):
			status = http.StatusUnprocessableEntity
		case errors.Is(err, ingest.ErrAdminOnly):
			status = http.StatusForbidden
		}
		return &refusal{status, fe.Error(), fe.Field}
	}
	if errors.Is(err, ingest.ErrConflictingDuplicate) {
		return &refusal{http.StatusConflict, err.Error(), ""}
	}
	return &refusal{http.StatusServiceUnavailable, err.Error(), ""}
}

// getTimeline serves a loan's timeline as JSON, or with ?format=text as the
// aligned table the README shows (errors are JSON either way).
func (s *Server) getTimeline(w http.ResponseWriter, r *http.Request) {
	text, ref := textFormat(r)
	if ref != nil {
		writeRefusal(w, ref)
		return
	}
	tl, ref := s.timeline(r.Context(), principalOf(r.Context()), r.PathValue("tenant"), r.PathValue("loan"), "tenant", "loan")
	if ref != nil {
		writeRefusal(w, ref)
		return
	}
	if text {
		var b bytes.Buffer
		_ = tl.WriteText(&b) // a buffer does not fail
		writeText(w, b.Bytes())
		return
	}
	writeJSON(w, http.StatusOK, tl)
}

// textFormat reads a read route's ?format: JSON (the default) or text.
func textFormat(r *http.Request) (bool, *refusal) {
	switch r.URL.Query().Get("format") {
	case "", "json":
		return false, nil
	case "text":
		return true, nil
	}
	return false, &refusal{http.StatusBadRequest, `format must be "json" (the default) or "text"`, "format"}
}

func writeText(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// invalidID refuses the first of the request's identifiers (name, value
// pairs) that is not one.
func invalidID(pairs ...string) *refusal {
	for i := 0; i+1 < len(pairs); i += 2 {
		if !policy.ValidID(pairs[i+1]) {
			return &refusal{http.StatusBadRequest, pairs[i] + " must be 1-64 characters of A-Z, a-z, 0-9, '-' or '_'", pairs[i]}
		}
	}
	return nil
}

// getContactRules explains one contact: every rule of the loan's policy
// and of the release gate, and how it applied (policy.Ladder.Explain), as
// JSON or, with ?format=text, as the table dunctl rules explain prints.
func (s *Server) getContactRules(w http.ResponseWriter, r *http.Request) {
	text, ref := textFormat(r)
	tenant, loan, contact := r.PathValue("tenant"), r.PathValue("loan"), r.PathValue("contact")
	if ref == nil {
		ref = invalidID("tenant", tenant, "loan", loan, "contact", contact)
	}
	if ref != nil {
		writeRefusal(w, ref)
		return
	}
	if !principalOf(r.Context()).Serves(tenant) {
		writeRefusal(w, notForTenant("tenant"))
		return
	}
	entries, _, err := s.Log.Read(r.Context(), tenant, loan)
	if err != nil {
		s.Logger.Error("reading a loan's log", "err", err)
		writeRefusal(w, &refusal{http.StatusServiceUnavailable, "could not read the loan's log", ""})
		return
	}
	checks, err := s.Ladder(tenant, policy.Fold(entries).Product()).Explain(entries, contact)
	if err != nil {
		writeRefusal(w, &refusal{http.StatusNotFound, err.Error(), "contact"})
		return
	}
	if text {
		var b bytes.Buffer
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "rule\tkind\tresult\tdetail")
		for _, c := range checks {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Rule, c.Kind, c.Result, c.Detail)
		}
		_ = tw.Flush()
		writeText(w, b.Bytes())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"tenant_id": tenant, "loan_id": loan, "contact_id": contact, "rules": checks})
}

// timeline reads a loan's timeline for principal p; tenantField and
// loanField name the request's fields in a refusal.
func (s *Server) timeline(ctx context.Context, p apikey.Principal, tenant, loan, tenantField, loanField string) (timeline.Timeline, *refusal) {
	if ref := invalidID(tenantField, tenant, loanField, loan); ref != nil {
		return timeline.Timeline{}, ref
	}
	if !p.Serves(tenant) {
		return timeline.Timeline{}, notForTenant(tenantField)
	}
	tl, err := timeline.Read(ctx, s.Log, s.Ladder, tenant, loan, s.Now())
	if err != nil {
		s.Logger.Error("reading timeline", "err", err)
		return tl, &refusal{http.StatusServiceUnavailable, "could not read the loan's log", ""}
	}
	if len(tl.Entries) == 0 {
		return tl, &refusal{http.StatusNotFound, "no events for this loan", loanField}
	}
	// Verification codes let a borrower tell a genuine collector from a
	// fraudster: only the admin scope sees them.
	if !p.Has(apikey.ScopeAdmin) {
		tl.HideCodes()
	}
	return tl, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
