package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/opendunning/dunning/pkg/apikey"
	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"
	"github.com/opendunning/dunning/proto/dunning/v1/dunningv1connect"
)

// FieldMetadata is the Connect error metadata key naming the request field
// at fault (the REST routes' "field").
const FieldMetadata = "Dunning-Field"

// procedureScopes is the scope each Connect procedure needs. A procedure
// missing here is refused to everyone, so a method added to the schema is
// closed until it is given a scope.
var procedureScopes = map[string]apikey.Scope{
	dunningv1connect.LenderServiceSubmitEventProcedure: apikey.ScopeIngest,
	dunningv1connect.LenderServiceGetTimelineProcedure: apikey.ScopeRead,
}

// connectHandler serves dunning.v1.LenderService, authenticated by an
// interceptor with the REST routes' rules.
func (s *Server) connectHandler() (string, http.Handler) {
	return dunningv1connect.NewLenderServiceHandler(lenderService{s},
		connect.WithInterceptors(s.authInterceptor()),
		connect.WithReadMaxBytes(maxBody))
}

// authInterceptor admits a call with an API key holding its procedure's
// scope, and hands the principal to the handler in the context. It wraps
// streaming handlers too, so a streaming method added later is closed the
// same way, not open because only unary calls were checked.
func (s *Server) authInterceptor() connect.Interceptor { return authInterceptor{s} }

type authInterceptor struct{ s *Server }

func (a authInterceptor) admit(ctx context.Context, procedure, authorization string) (context.Context, error) {
	scope, ok := procedureScopes[procedure]
	if !ok {
		return ctx, connect.NewError(connect.CodePermissionDenied, errors.New("no API key may call this procedure"))
	}
	p, ref := a.s.authenticate(authorization, scope)
	if ref != nil {
		return ctx, ref.connectError()
	}
	return context.WithValue(ctx, principalKey{}, p), nil
}

func (a authInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		ctx, err := a.admit(ctx, req.Spec().Procedure, req.Header().Get("Authorization"))
		if err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

func (a authInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (a authInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		ctx, err := a.admit(ctx, conn.Spec().Procedure, conn.RequestHeader().Get("Authorization"))
		if err != nil {
			return err
		}
		return next(ctx, conn)
	}
}

// connectError is the refusal as a Connect error: the code for the HTTP
// status, the message, and the field in metadata.
func (r *refusal) connectError() error {
	code := connect.CodeUnknown
	switch r.status {
	case http.StatusBadRequest, http.StatusUnsupportedMediaType:
		code = connect.CodeInvalidArgument
	case http.StatusUnauthorized:
		code = connect.CodeUnauthenticated
	case http.StatusForbidden:
		code = connect.CodePermissionDenied
	case http.StatusNotFound:
		code = connect.CodeNotFound
	case http.StatusConflict:
		code = connect.CodeAlreadyExists
	case http.StatusRequestEntityTooLarge:
		code = connect.CodeResourceExhausted
	case http.StatusUnprocessableEntity:
		code = connect.CodeFailedPrecondition
	case http.StatusServiceUnavailable:
		code = connect.CodeUnavailable
	}
	err := connect.NewError(code, errors.New(r.msg))
	if r.field != "" {
		err.Meta().Set(FieldMetadata, r.field)
	}
	return err
}

// lenderService implements dunningv1connect.LenderServiceHandler on the
// Server's shared calls.
type lenderService struct{ s *Server }

func (l lenderService) SubmitEvent(ctx context.Context, req *connect.Request[dunningv1.SubmitEventRequest]) (*connect.Response[dunningv1.SubmitEventResponse], error) {
	if req.Msg.GetEvent() == nil {
		l.s.count("invalid")
		return nil, (&refusal{http.StatusBadRequest, "event is required", "event"}).connectError()
	}
	res, ref := l.s.submit(ctx, principalOf(ctx), req.Msg.GetEvent())
	if ref != nil {
		return nil, ref.connectError()
	}
	return connect.NewResponse(&dunningv1.SubmitEventResponse{Subject: res.Subject, Sequence: res.Sequence, Duplicate: res.Duplicate}), nil
}

func (l lenderService) GetTimeline(ctx context.Context, req *connect.Request[dunningv1.GetTimelineRequest]) (*connect.Response[dunningv1.GetTimelineResponse], error) {
	tl, ref := l.s.timeline(ctx, principalOf(ctx), req.Msg.GetTenantId(), req.Msg.GetLoanId(), "tenant_id", "loan_id")
	if ref != nil {
		return nil, ref.connectError()
	}
	out := &dunningv1.GetTimelineResponse{TenantId: tl.Tenant, LoanId: tl.Loan, Open: tl.Open, Stage: tl.Stage,
		Overdue: tl.Overdue, PendingStep: tl.Pending}
	for _, e := range tl.Entries {
		pe := &dunningv1.TimelineEntry{Seq: e.Seq, Time: timestamppb.New(e.Time), Subject: e.Subject, Kind: e.Kind,
			Case: int32(e.Case), Stage: e.Stage, Tier: e.Tier, Dpd: int32(e.DPD), Reason: e.Reason, Principal: e.Principal}
		if len(e.Event) > 0 {
			// The entry's event is the JSON the REST route shows; as a
			// Struct it keeps that shape for any client.
			var m map[string]any
			if err := json.Unmarshal(e.Event, &m); err == nil {
				if st, err := structpb.NewStruct(m); err == nil {
					pe.Event = st
				}
			}
		}
		out.Entries = append(out.Entries, pe)
	}
	return connect.NewResponse(out), nil
}
