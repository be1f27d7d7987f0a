package api

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/opendunning/dunning/pkg/apikey"
	"github.com/opendunning/dunning/pkg/policy"
	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"
	"github.com/opendunning/dunning/proto/dunning/v1/dunningv1connect"
)

// The lender API as a Connect service, from proto/dunning/v1/api.proto:
// over gRPC (HTTP/2 without TLS, as a lender's back end inside its network
// calls it) and as a plain JSON POST, with the REST routes' authentication
// and refusals as Connect codes naming the field.
func TestConnectLenderService(t *testing.T) {
	s, log := testServer(t)
	path, key := keyFile(t)
	acme, acmeID := key("acme", apikey.ScopeIngest, apikey.ScopeRead)
	acmeRead, _ := key("acme", apikey.ScopeRead)
	globex, _ := key("globex", apikey.ScopeIngest, apikey.ScopeRead)
	admin, _ := key(apikey.AnyTenant, apikey.ScopeAdmin)
	keys, err := apikey.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Keys = keys
	ts := httptest.NewUnstartedServer(s.Handler())
	ts.Config.Protocols = new(http.Protocols)
	ts.Config.Protocols.SetHTTP1(true)
	ts.Config.Protocols.SetUnencryptedHTTP2(true)
	ts.Start()
	defer ts.Close()

	// gRPC needs HTTP/2: this client speaks only that, in the clear.
	h2 := &http.Client{Transport: &http.Transport{Protocols: new(http.Protocols)}}
	h2.Transport.(*http.Transport).Protocols.SetUnencryptedHTTP2(true)
	client := dunningv1connect.NewLenderServiceClient(h2, ts.URL, connect.WithGRPC())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	at := timestamppb.Now()
	due := func(tenant, loan, currency string) *dunningv1.SubmitEventRequest {
		return &dunningv1.SubmitEventRequest{Event: &dunningv1.LenderEvent{Event: &dunningv1.LenderEvent_InstallmentDue{InstallmentDue: &dunningv1.InstallmentDue{
			TenantId: tenant, LoanId: loan, InstallmentId: "1",
			Amount: &dunningv1.Money{Currency: currency, MinorUnits: 120000},
			DueAt:  at, TimeZone: "Asia/Shanghai", ContactRef: "crm-77"}}}}
	}
	submit := func(k string, req *dunningv1.SubmitEventRequest) (*connect.Response[dunningv1.SubmitEventResponse], error) {
		r := connect.NewRequest(req)
		if k != "" {
			r.Header().Set("Authorization", "Bearer "+k)
		}
		return client.SubmitEvent(ctx, r)
	}
	timelineOf := func(k, tenant, loan string) (*connect.Response[dunningv1.GetTimelineResponse], error) {
		r := connect.NewRequest(&dunningv1.GetTimelineRequest{TenantId: tenant, LoanId: loan})
		r.Header().Set("Authorization", "Bearer "+k)
		return client.GetTimeline(ctx, r)
	}

	res, err := submit(acme, due("acme", "L-1", "CNY"))
	if err != nil {
		t.Fatalf("SubmitEvent over gRPC: %v", err)
	}
	if ct := res.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/grpc") {
		t.Errorf("response Content-Type %q: not gRPC", ct)
	}
	if res.Msg.Sequence == 0 || res.Msg.Duplicate || !strings.HasPrefix(res.Msg.Subject, "dunning.loan.0.acme.L-1.due.") {
		t.Errorf("SubmitEvent = %v, want a new entry of acme's L-1", res.Msg)
	}
	if again, err := submit(acme, due("acme", "L-1", "CNY")); err != nil || !again.Msg.Duplicate || again.Msg.Sequence != res.Msg.Sequence {
		t.Errorf("the same event again: %v, %v; want duplicate of sequence %d", again, err, res.Msg.Sequence)
	}

	refused := []struct {
		name  string
		err   error
		code  connect.Code
		field string
	}{
		{"no key", second(submit("", due("acme", "L-2", "CNY"))), connect.CodeUnauthenticated, "Authorization"},
		{"a made-up key", second(submit("dk_nope_secret", due("acme", "L-2", "CNY"))), connect.CodeUnauthenticated, "Authorization"},
		{"a read-only key submits", second(submit(acmeRead, due("acme", "L-2", "CNY"))), connect.CodePermissionDenied, "Authorization"},
		{"another tenant's key", second(submit(globex, due("acme", "L-2", "CNY"))), connect.CodePermissionDenied, "tenant_id"},
		{"no event", second(submit(acme, &dunningv1.SubmitEventRequest{})), connect.CodeInvalidArgument, "event"},
		{"a bad currency", second(submit(acme, due("acme", "L-2", "cny"))), connect.CodeInvalidArgument, "installment_due.amount.currency"},
		{"another tenant's timeline", second(timelineOf(globex, "acme", "L-1")), connect.CodePermissionDenied, "tenant_id"},
		{"a loan with no events", second(timelineOf(acme, "acme", "L-404")), connect.CodeNotFound, "loan_id"},
		{"a loan ID that is not one", second(timelineOf(acme, "acme", "L 1")), connect.CodeInvalidArgument, "loan_id"},
	}
	for _, c := range refused {
		var ce *connect.Error
		if !errors.As(c.err, &ce) || ce.Code() != c.code || ce.Meta().Get(FieldMetadata) != c.field {
			t.Errorf("%s: %v, want %v naming %q", c.name, c.err, c.code, c.field)
		}
	}

	// The timeline: the principal recorded; the verification code shown
	// to the admin scope only.
	if _, err := log.AppendDecision(ctx, "acme", "L-1", 1, policy.Decision{Kind: policy.KindContactRequested,
		Ctx:   policy.Context{Case: 1, Stage: policy.StageFirstContact, DPD: 1},
		Tasks: []policy.ContactTask{{ID: "c1", Channel: policy.ChannelSMS, ContactRef: "crm-77", Reference: "CODE7HK2PX"}}}); err != nil {
		t.Fatal(err)
	}
	tl, err := timelineOf(acmeRead, "acme", "L-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(tl.Msg.Entries) < 2 || tl.Msg.Entries[0].Principal != "apikey:"+acmeID || tl.Msg.Entries[0].Event == nil {
		t.Fatalf("timeline entries %v, want the installment with principal apikey:%s and its event", tl.Msg.Entries, acmeID)
	}
	if strings.Contains(tl.Msg.String(), "CODE7HK2PX") {
		t.Error("the read scope sees a verification code")
	}
	if tl, err := timelineOf(admin, "acme", "L-1"); err != nil || !strings.Contains(tl.Msg.String(), "CODE7HK2PX") {
		t.Errorf("the admin scope does not see the verification code (%v)", err)
	}

	// The Connect protocol from the same definition: a plain JSON POST,
	// as curl sends it.
	post := func(k, body string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, ts.URL+dunningv1connect.LenderServiceSubmitEventProcedure, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+k)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	body := `{"event": {"installmentDue": {"tenantId": "acme", "loanId": "L-3", "installmentId": "1",
		"amount": {"currency": "CNY", "minorUnits": "5000"}, "dueAt": "` + time.Now().UTC().Format(time.RFC3339) + `",
		"timeZone": "Asia/Shanghai", "contactRef": "crm-9"}}}`
	if status, out := post(acme, body); status != http.StatusOK || !strings.Contains(out, `"subject":"dunning.loan.0.acme.L-3.due.1"`) {
		t.Errorf("Connect JSON POST: %d %s", status, out)
	}
	if status, out := post(globex, body); status != http.StatusForbidden || !strings.Contains(out, `"code":"permission_denied"`) {
		t.Errorf("Connect JSON POST with another tenant's key: %d %s, want 403 permission_denied", status, out)
	}
}

func second[T any](_ T, err error) error { return err }
