package api

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The verification endpoint's limits: one client is held to its own rate
// (429 with Retry-After), and many clients together to the global one,
// however many there are; the lookups refused are counted as "limited".
// Malformed codes are used so that no log is needed: the limits come first.
func TestVerifyLimits(t *testing.T) {
	l := DefaultVerifyLimits()
	cases := []struct {
		name         string
		clients, per int // clients, and lookups each, as fast as they go
		burst        int
		rate         float64 // what may refill each second meanwhile
	}{
		// 100 lookups from one client: its burst of 5, and what its own
		// rate refills while they run.
		{"one client", 1, 100, l.PerClientBurst, float64(l.PerClient)},
		// 2,000 clients, 2 lookups each: each within its own limit, but
		// the global burst of 400 and rate of 200 a second hold.
		{"many clients", 2000, 2, l.GlobalBurst, float64(l.Global)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			v := NewVerifier(reg, l)
			h := (&Server{Verifier: v}).Handler()
			allowed, limited := 0, 0
			start := time.Now()
			for i := range c.clients * c.per {
				r := httptest.NewRequest(http.MethodGet, "/v1/verify/not-a-code", nil)
				r.RemoteAddr = fmt.Sprintf("10.%d.%d.%d:40000", i%c.clients/65536, i%c.clients/256%256, i%c.clients%256)
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				switch w.Code {
				case http.StatusBadRequest:
					allowed++
				case http.StatusTooManyRequests:
					limited++
					if w.Header().Get("Retry-After") == "" {
						t.Fatal("429 without Retry-After")
					}
				default:
					t.Fatalf("lookup: %d %s", w.Code, w.Body)
				}
			}
			most := c.burst + int(c.rate*time.Since(start).Seconds()) + 1
			if allowed > most || limited == 0 {
				t.Errorf("%d allowed, %d limited in %s; want at most %d allowed", allowed, limited, time.Since(start), most)
			}
			if n := testutil.ToFloat64(v.lookups.WithLabelValues(VerifyLimited)); int(n) != limited {
				t.Errorf("dunning_verify_lookups_total{result=limited} = %v, want %d", n, limited)
			}
		})
	}
}

// A client remembered is forgotten once its bucket would be full again, so
// the memory the limits take is bounded by MaxClients.
func TestVerifyForgetsIdleClients(t *testing.T) {
	l := DefaultVerifyLimits()
	l.MaxClients = 100
	v := NewVerifier(prometheus.NewRegistry(), l)
	h := (&Server{Verifier: v}).Handler()
	for i := range 1000 {
		r := httptest.NewRequest(http.MethodGet, "/v1/verify/x", nil)
		r.RemoteAddr = fmt.Sprintf("10.0.%d.%d:1", i/256, i%256)
		h.ServeHTTP(httptest.NewRecorder(), r)
		if n := len(v.clients); n > l.MaxClients {
			t.Fatalf("%d clients remembered, want at most %d", n, l.MaxClients)
		}
	}
}

// Clients are counted by IPv4 address or IPv6 /64.
func TestVerifyClientKey(t *testing.T) {
	for remote, want := range map[string]string{
		"10.1.2.3:4000":                     "10.1.2.3",
		"[2001:db8:1:2:aaaa::1]:4000":       "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff:ffff:1:2]:4000": "2001:db8:1:2::/64",
		"[2001:db8:1:3::1]:4000":            "2001:db8:1:3::/64",
		"[::ffff:10.1.2.3]:4000":            "::ffff:10.1.2.3",
	} {
		if got := clientKey(remote); got != want {
			t.Errorf("clientKey(%s) = %s, want %s", remote, got, want)
		}
	}
}
