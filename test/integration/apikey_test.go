package integration

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/opendunning/dunning/pkg/app"
)

// apiKeys holds, by host, the key the tests' HTTP requests to a dunningd
// carry (its development admin key): the tests that are not about
// authentication call the API as the README does, with a key.
var apiKeys sync.Map

// keyTransport adds the host's key to a request that has none.
type keyTransport struct{ base http.RoundTripper }

func (k keyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("Authorization") == "" {
		if key, ok := apiKeys.Load(r.URL.Host); ok {
			r = r.Clone(r.Context())
			r.Header.Set("Authorization", "Bearer "+key.(string))
		}
	}
	return k.base.RoundTrip(r)
}

func init() { http.DefaultTransport = keyTransport{http.DefaultTransport} }

// useDevKey makes requests to base carry the development key that dunningd
// created under dataDir.
func useDevKey(t *testing.T, base, dataDir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "credentials", app.DevAPIKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	key := strings.TrimSpace(string(b))
	apiKeys.Store(u.Host, key)
	return key
}
