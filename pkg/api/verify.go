package api

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/opendunning/dunning/pkg/loanlog"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/stage"
)

// Verification for borrowers. Every message carries a code ({ref}); a
// borrower who doubts a message (fraudsters impersonate collectors) looks
// it up at GET /v1/verify/{code}, without an account. The answer says
// whether a contact really carried the code, from whom, on which channel
// and when, and whether anything is still due; never a name, a phone
// number, an ID number, an amount or a loan ID. Lookups are rate-limited
// per client and in all, so the endpoint cannot be used to enumerate codes
// (49.5 bits each) or to load the pipeline.

// VerifyLimits bound lookups: per client (its remote address) and in all.
type VerifyLimits struct {
	PerClient      rate.Limit
	PerClientBurst int
	Global         rate.Limit
	GlobalBurst    int
	// MaxClients bounds the clients remembered; past it the oldest
	// limiters are forgotten (the global limit still holds).
	MaxClients int
}

// DefaultVerifyLimits: a borrower checks a code or two; one lookup a
// second per client with a burst of 5, and 200 a second in all.
func DefaultVerifyLimits() VerifyLimits {
	return VerifyLimits{PerClient: 1, PerClientBurst: 5, Global: 200, GlobalBurst: 400, MaxClients: 100_000}
}

// Verification results, the label of dunning_verify_lookups_total.
const (
	VerifyGenuine   = "genuine"
	VerifyUnknown   = "unknown"
	VerifyMalformed = "malformed"
	VerifyLimited   = "limited"
	VerifyError     = "error"
)

// Verifier serves GET /v1/verify/{code}.
type Verifier struct {
	Log    *loanlog.Log
	Ladder func(tenant, product string) policy.Ladder
	Now    func() time.Time
	Logger *slog.Logger

	limits  VerifyLimits
	global  *rate.Limiter
	mu      sync.Mutex
	clients map[string]*client
	lookups *prometheus.CounterVec
}

type client struct {
	lim  *rate.Limiter
	seen time.Time
}

// NewVerifier registers the lookup counter on reg, every result at 0, so
// that the unknown-code alert has a baseline from the start.
func NewVerifier(reg prometheus.Registerer, limits VerifyLimits) *Verifier {
	v := &Verifier{limits: limits, global: rate.NewLimiter(limits.Global, limits.GlobalBurst), clients: map[string]*client{},
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dunning", Name: "verify_lookups_total",
			Help: "Verification code lookups by result (genuine, unknown, malformed, limited, error). A surge of unknown codes means someone is sending messages in a lender's name."},
			[]string{"result"})}
	for _, r := range []string{VerifyGenuine, VerifyUnknown, VerifyMalformed, VerifyLimited, VerifyError} {
		v.lookups.WithLabelValues(r)
	}
	reg.MustRegister(v.lookups)
	return v
}

// Verification is the answer for a genuine code. It holds nothing that
// identifies the borrower or the debt.
type Verification struct {
	Genuine bool `json:"genuine"`
	// Lender is the lender's display name; Sender who sent the message (the
	// lender, or a named agency acting for it).
	Lender  string    `json:"lender"`
	Sender  string    `json:"sender"`
	Channel string    `json:"channel"`
	SentAt  time.Time `json:"sentAt"`
	// NothingDue: the case the message was about is closed, or nothing is
	// overdue on it any more.
	NothingDue bool   `json:"nothingDue"`
	Status     string `json:"status"`
	Advice     string `json:"advice"`
}

// unknownAdvice is what a borrower reads for a code no contact carried.
const unknownAdvice = "No message from a lender using this service carried this code. Do not pay, call back, or share details through the message that carried it; contact your lender through the phone number in your contract or its official app, and report the message."

func (v *Verifier) allow(r *http.Request) bool {
	host := clientKey(r.RemoteAddr)
	now := time.Now()
	v.mu.Lock()
	c := v.clients[host]
	if c == nil {
		if len(v.clients) >= v.limits.MaxClients {
			v.forget(now)
		}
		c = &client{lim: rate.NewLimiter(v.limits.PerClient, v.limits.PerClientBurst)}
		v.clients[host] = c
	}
	c.seen = now
	ok := c.lim.AllowN(now, 1)
	v.mu.Unlock()
	// The global limit is spent only by lookups the client's own allowed.
	return ok && v.global.AllowN(now, 1)
}

// forget drops clients idle long enough for their bucket to be full again
// (they lose nothing); if that frees less than a tenth of the room, it
// drops them all, so that a full map costs one scan per tenth of
// MaxClients new clients, not one per client. The caller holds mu.
func (v *Verifier) forget(now time.Time) {
	refill := time.Duration(float64(v.limits.PerClientBurst) / float64(v.limits.PerClient) * float64(time.Second))
	for k, c := range v.clients {
		if now.Sub(c.seen) > refill {
			delete(v.clients, k)
		}
	}
	if len(v.clients) > v.limits.MaxClients-v.limits.MaxClients/10 {
		clear(v.clients)
	}
}

// clientKey is whom a lookup is counted against: its IPv4 address, or its
// IPv6 /64 (one subscriber's network: an address per lookup within it
// would otherwise be a fresh client each time).
func clientKey(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.To4() != nil {
		return host
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// ServeHTTP answers one lookup: 200 with the verification, 404 with advice
// for an unknown code, 400 naming the field for a malformed one, 429 over
// the limits.
func (v *Verifier) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !v.allow(r) {
		v.lookups.WithLabelValues(VerifyLimited).Inc()
		w.Header().Set("Retry-After", "1")
		writeRefusal(w, &refusal{http.StatusTooManyRequests, "too many lookups; try again in a few seconds", ""})
		return
	}
	// Codes are read out and typed: accept lower case, spaces and dashes.
	code := strings.ToUpper(strings.NewReplacer(" ", "", "-", "").Replace(r.PathValue("code")))
	if !stage.ValidReference(code) {
		v.lookups.WithLabelValues(VerifyMalformed).Inc()
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "code must be the 10 letters and digits printed after the verification prompt", "field": "code", "advice": unknownAdvice})
		return
	}
	ans, found, err := v.verify(r.Context(), code)
	switch {
	case err != nil:
		v.lookups.WithLabelValues(VerifyError).Inc()
		v.Logger.Error("verifying a code", "err", err)
		writeRefusal(w, &refusal{http.StatusServiceUnavailable, "could not check the code now; try again later", ""})
	case !found:
		v.lookups.WithLabelValues(VerifyUnknown).Inc()
		writeJSON(w, http.StatusNotFound, map[string]any{"genuine": false, "error": "unknown code", "advice": unknownAdvice})
	default:
		v.lookups.WithLabelValues(VerifyGenuine).Inc()
		writeJSON(w, http.StatusOK, ans)
	}
}

// verify looks a code up: the index names its contact, and the loan's log
// must hold that contact released with that code (a code claimed by a
// release that was then not recorded was never sent).
func (v *Verifier) verify(ctx context.Context, code string) (Verification, bool, error) {
	owner, found, err := v.Log.Code(ctx, code)
	if err != nil || !found {
		return Verification{}, false, err
	}
	entries, _, err := v.Log.Read(ctx, owner.Tenant, owner.Loan)
	if err != nil {
		return Verification{}, false, err
	}
	c := policy.Fold(entries)
	var sent *policy.ContactTask
	for _, g := range c.Gate {
		if g.State == policy.GateReleased && g.Case == owner.Case && g.Task.ID == owner.Task && g.Task.Reference == code {
			sent = &g.Task
		}
	}
	if sent == nil {
		return Verification{}, false, nil
	}
	l := v.Ladder(owner.Tenant, c.Product())
	lender := l.Policy.LenderName
	if lender == "" {
		lender = owner.Tenant
	}
	overdue, _ := c.Overdue(l.Calendar, v.Now())
	ans := Verification{Genuine: true, Lender: lender, Sender: lender, Channel: sent.Channel.String(), SentAt: sent.NotBefore.UTC().Truncate(time.Second),
		NothingDue: !c.Open || c.Number != owner.Case || overdue.Minor <= 0}
	if ans.NothingDue {
		ans.Status = "nothing due: this account has nothing overdue now"
		ans.Advice = "The message was genuine, but there is nothing to pay now. Ignore any request to pay that refers to it."
	} else {
		ans.Status = "genuine"
		ans.Advice = "The message is genuine. Pay only through " + lender + "'s official app or the bank details in your contract, never to an account given in a call or message."
	}
	return ans, true, nil
}
