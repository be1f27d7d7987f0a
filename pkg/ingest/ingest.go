package ingest

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/opendunning/dunning/pkg/bus"
	"github.com/opendunning/dunning/pkg/loanlog"
	"github.com/opendunning/dunning/pkg/topology"
	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"
)

// ErrConflictingDuplicate: an installment or payment ID already recorded with
// different content. The first one stands; the lender must fix its data.
var ErrConflictingDuplicate = errors.New("conflicts with the event already recorded under the same identifier")

// Result of recording an event.
type Result struct {
	Subject   string `json:"subject"`
	Sequence  uint64 `json:"sequence"`
	Duplicate bool   `json:"duplicate"`
}

// Ingestor records validated lender events in loan logs.
type Ingestor struct {
	Log     *loanlog.Log
	Metrics *Metrics
}

// Metrics count lender events by source (http, nats) and result (accepted,
// duplicate, invalid).
type Metrics struct {
	Ingested *prometheus.CounterVec
}

// NewMetrics registers the ingest counters on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{Ingested: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dunning", Name: "lender_events_total",
		Help: "Lender events by source and result (accepted, duplicate, invalid)."}, []string{"source", "result"})}
	reg.MustRegister(m.Ingested)
	return m
}

// Decode parses a LenderEvent body: JSON (protojson, which names an unknown
// or mistyped field) when contentType says so, binary protobuf otherwise.
func Decode(contentType string, body []byte) (*dunningv1.LenderEvent, error) {
	ev := &dunningv1.LenderEvent{}
	if strings.Contains(contentType, "json") {
		if err := protojson.Unmarshal(body, ev); err != nil {
			return nil, &FieldError{"body", "invalid JSON LenderEvent: " + strings.TrimPrefix(err.Error(), "proto: ")}
		}
		return ev, nil
	}
	if err := proto.Unmarshal(body, ev); err != nil {
		return nil, &FieldError{"body", "invalid protobuf LenderEvent: " + err.Error()}
	}
	return ev, nil
}

// Record stores a validated event once. A repeat with identical content is
// reported as a duplicate, not an error; a repeat with different content is
// ErrConflictingDuplicate.
func (in *Ingestor) Record(ctx context.Context, ev Event) (Result, error) {
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(ev.Msg)
	if err != nil {
		return Result{}, fmt.Errorf("encoding event: %w", err)
	}
	subj := ev.Subject()
	seq, err := in.Log.AppendLender(ctx, subj, data)
	if errors.Is(err, loanlog.ErrDuplicate) {
		prev, found, gerr := in.Log.Last(ctx, subj)
		if gerr != nil {
			return Result{}, fmt.Errorf("reading recorded event %s: %w", subj, gerr)
		}
		if !found {
			return Result{}, fmt.Errorf("recorded event %s refused as a duplicate but not found", subj)
		}
		old := ev.Msg.ProtoReflect().New().Interface()
		if uerr := proto.Unmarshal(prev.Data, old); uerr != nil || !proto.Equal(old, ev.Msg) {
			return Result{}, fmt.Errorf("%s %s: %w", ev.Kind.Name(), subj, ErrConflictingDuplicate)
		}
		return Result{Subject: subj, Sequence: prev.Seq, Duplicate: true}, nil
	}
	if err != nil {
		return Result{}, err
	}
	return Result{Subject: subj, Sequence: seq}, nil
}

// Count records one lender event's result.
func (in *Ingestor) Count(source, result string) {
	if in.Metrics != nil {
		in.Metrics.Ingested.WithLabelValues(source, result).Inc()
	}
}

// Intake is the NATS path: lenders publish a LenderEvent on
// dunning.in.<tenant>.<loan> (binary, or JSON with Content-Type
// application/json). Invalid events are dead-lettered with their reason.
func (in *Ingestor) Intake() message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		tenant, loan, err := topology.ParseIntakeSubject(msg.Metadata.Get(bus.MetaSubject))
		if err != nil {
			in.Count("nats", "invalid")
			return bus.Permanent(err)
		}
		pev, err := Decode(msg.Metadata.Get("Content-Type"), msg.Payload)
		if err != nil {
			in.Count("nats", "invalid")
			return bus.Permanent(err)
		}
		ev, err := Validate(pev)
		if err != nil {
			in.Count("nats", "invalid")
			return bus.Permanent(err)
		}
		if ev.Tenant != tenant || ev.Loan != loan {
			in.Count("nats", "invalid")
			return bus.Permanent(fmt.Errorf("subject names %s/%s but the event is for %s/%s", tenant, loan, ev.Tenant, ev.Loan))
		}
		res, err := in.Record(msg.Context(), ev)
		switch {
		case errors.Is(err, ErrConflictingDuplicate):
			in.Count("nats", "invalid")
			return bus.Permanent(err)
		case err != nil:
			return err
		case res.Duplicate:
			in.Count("nats", "duplicate")
		default:
			in.Count("nats", "accepted")
		}
		return nil
	}
}

// Register adds the intake handler to a router.
func (in *Ingestor) Register(rt *bus.Router) { rt.Handle(topology.Intake, in.Intake()) }
