package api

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/opendunning/dunning/pkg/apikey"
	"github.com/opendunning/dunning/pkg/ingest"
)

// N+500 idle connections from one address cannot starve another: over the
// per-address cap they are closed at once, under it they are cut off at
// the read-header timeout, and meanwhile a client from 127.0.0.2 gets its
// health check answered within a second.
func TestConnectionCaps(t *testing.T) {
	const perAddress, total = 100, 300
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	keys, key := testKeys(t, "acme", apikey.ScopeIngest)
	hs := &http.Server{Handler: (&Server{Keys: keys, Ingestor: &ingest.Ingestor{}}).Handler(), ReadHeaderTimeout: 2 * time.Second}
	go func() { _ = hs.Serve(Limit(ln, total, perAddress)) }()
	t.Cleanup(func() { _ = hs.Close() })

	var idle []net.Conn
	t.Cleanup(func() {
		for _, c := range idle {
			c.Close()
		}
	})
	for range perAddress + 500 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatalf("dialing: %v", err)
		}
		idle = append(idle, c)
	}
	// The connections over the cap are closed by the server: a read ends.
	closed := 0
	for _, c := range idle {
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err) {
			closed++
		}
	}
	if closed < 500 {
		t.Errorf("%d of %d idle connections from one address closed at once, want at least 500", closed, perAddress+500)
	}

	other := &http.Client{Timeout: time.Second, Transport: &http.Transport{DialContext: (&net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).DialContext}}
	start := time.Now()
	resp, err := other.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatalf("/healthz from 127.0.0.2 beside %d idle connections: %v", len(idle), err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || time.Since(start) > time.Second {
		t.Errorf("/healthz from 127.0.0.2 = %d after %s, want 200 within 1s", resp.StatusCode, time.Since(start))
	}
	// An authenticated POST from there reaches the handler, which answers
	// (400: the body is no lender event; a refused key would be 401).
	req, err := http.NewRequest(http.MethodPost, "http://"+ln.Addr().String()+"/v1/events", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	start = time.Now()
	resp, err = other.Do(req)
	if err != nil {
		t.Fatalf("POST from 127.0.0.2 beside %d idle connections: %v", len(idle), err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || time.Since(start) > time.Second {
		t.Errorf("authenticated POST from 127.0.0.2 = %d after %s, want 400 within 1s", resp.StatusCode, time.Since(start))
	}

	// Those under the cap are cut off at the read-header timeout.
	c := idle[0]
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || os.IsTimeout(err) {
		t.Errorf("an idle connection under the cap outlived the read-header timeout: %v", err)
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}
